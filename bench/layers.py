"""What each layer costs on ``GET /slots``: the same app with its middleware and its
response hook taken away in turn, beside the bare ceiling, in one run (wrk, loopback).

    python bench/layers.py --seconds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import ROOT, free_port
from throughput import serve, wrk

VARIANTS = ("as built", "no middleware", "no response hook", "neither")


def run_variant(variant: str, port: int) -> None:
    """Serve rero with ``variant``'s layers removed (runs in the server process)."""
    from aiohttp import web

    from rero.app import create_app
    from rero.logs import AccessLogger, setup_logging
    from rero.settings import load_settings

    setup_logging("warning")
    app = create_app(load_settings())
    if variant in ("no middleware", "neither"):
        app.middlewares.clear()
    if variant in ("no response hook", "neither"):
        app.on_response_prepare.clear()
    web.run_app(app, host="127.0.0.1", port=port, access_log_class=AccessLogger, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users.toml"
        users.write_text('[[users]]\nusername = "u"\npassword = "p"\nname = "U"\nsrn = "S"\n')
        port = free_port()
        bare = serve([sys.executable, str(ROOT / "bench" / "bare.py"), str(port)], {}, port)
        try:
            ceiling = wrk(f"http://127.0.0.1:{port}/json", args.seconds)["rps"]
        finally:
            bare.terminate()
            bare.wait()
        print("| variant | req/s | / bare |\n| --- | --- | --- |")
        print(f"| bare aiohttp | {ceiling:,.0f} | 1.00 |")
        for variant in VARIANTS:
            port = free_port()
            env = {"AUTH_BACKEND": "fake", "FAKE_USERS_FILE": str(users),
                   "DATABASE_PATH": str(Path(tmp) / f"{port}.db"),
                   "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")])}  # fmt: skip
            code = f"import layers; layers.run_variant({variant!r}, {port})"
            proc = serve([sys.executable, "-c", code], env, port)
            try:
                rps = wrk(f"http://127.0.0.1:{port}/slots", args.seconds)["rps"]
            finally:
                proc.terminate()
                proc.wait()
            print(f"| {variant} | {rps:,.0f} | {rps / ceiling:.2f} |", flush=True)


if __name__ == "__main__":
    main()
