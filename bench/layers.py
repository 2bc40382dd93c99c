"""What each layer costs on ``GET /slots``: the same app with its middleware and its
response hook taken away in turn, beside the bare ceiling, in one run (wrk, loopback).

    python -m bench.layers --seconds 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.common import free_port, rero_env, serve, serve_bare
from bench.throughput import wrk

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
    port = free_port()
    with serve_bare(port):
        ceiling = wrk(f"http://127.0.0.1:{port}/json", args.seconds)["rps"]
    print("| variant | req/s | / bare |\n| --- | --- | --- |")
    print(f"| bare aiohttp | {ceiling:,.0f} | 1.00 |")
    for variant in VARIANTS:
        port = free_port()
        # Run from the project root by serve(), so the child finds the bench package.
        code = f"from bench.layers import run_variant; run_variant({variant!r}, {port})"
        with (
            tempfile.TemporaryDirectory() as tmp,
            serve([sys.executable, "-c", code], rero_env(port, Path(tmp), 1), port),
        ):
            rps = wrk(f"http://127.0.0.1:{port}/slots", args.seconds)["rps"]
        print(f"| {variant} | {rps:,.0f} | {rps / ceiling:.2f} |", flush=True)


if __name__ == "__main__":
    main()
