"""HTTP throughput with wrk: rero with 1, 2 and 4 workers (and PostgreSQL), beside a bare
aiohttp ceiling measured in the same run.

* ``GET /slots`` against the bare ``GET /json`` (a small dict);
* book-then-cancel pairs over ``POST /book-slot`` / ``POST /cancel-slot`` with cached
  credentials against the bare ``POST /echo``. Each wrk thread books and cancels its own
  slot as its own user, so most requests are real, durable writes;
* logins with a warm auth cache: ``POST /auth/login`` (each opens a session, a durable
  write) and ``POST /my-bookings`` with a password (the cached check alone, no write),
  against the same echo.

The bare server stays up beside each rero setup, and every rero figure is measured next to
its own ceiling, ``--repeat`` times over, so a machine whose speed drifts between runs
bears on both sides of each ratio alike. The table gives each ratio's median and its
range over the repeats (per-run figures go to stderr as JSON).

Needs wrk (Debian package). Loopback only, ``--seconds`` per measurement.

    python -m bench.throughput --seconds 5 --repeat 3 [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import free_port, serve_bare, serve_rero

LUA_POST = """
local n = 0
local thread_id = 0
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  user = string.format('"username":"u%d","password":"p%d"', id, id)
  slot = 3 + (id % 12)
end
function request()
  n = n + 1
  local path = (n % 2 == 1) and "/book-slot" or "/cancel-slot"
  if ECHO then path = "/echo" end
  if PATH then path = PATH end
  local body = string.format('{"slot_id":%d,%s}', slot, user)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
"""


def wrk(url: str, seconds: int, script: Path | None = None, echo: bool = False) -> dict[str, float]:
    argv = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "rps": round(rps),
        "requests": total,
        "non_2xx_share": round(int(non2xx.group(1)) / total, 3) if non2xx else 0.0,
    }


def ratios(pairs: list[tuple[float, float]]) -> str:
    """``median (min-max)`` of rero / ceiling over the repeats."""
    r = sorted(x / ceiling for x, ceiling in pairs)
    spread = f" ({r[0]:.2f}-{r[-1]:.2f})" if len(r) > 1 else ""
    return f"{statistics.median(r):.2f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    print("| server | GET /slots req/s | / bare GET | book+cancel req/s | / bare echo | non-2xx |"
          " logins/s | / echo | cached auth checks/s | / echo |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {}
        for name, prefix in (("post", ""), ("echo", "ECHO = true\n"),
                             ("login", 'PATH = "/auth/login"\n'),
                             ("mine", 'PATH = "/my-bookings"\n')):  # fmt: skip
            scripts[name] = Path(tmp) / f"{name}.lua"
            scripts[name].write_text(prefix + LUA_POST)

        bare_port = free_port()
        bare = f"http://127.0.0.1:{bare_port}"
        setups = [(f"rero, {n} worker(s), SQLite", {"WORKERS": str(n)}) for n in args.workers]
        if args.database_url:
            setups.append(("rero, 1 worker, PostgreSQL", {"DATABASE_URL": args.database_url}))
        with serve_bare(bare_port):
            for name, extra in setups:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                pairs: dict[str, list[tuple[float, float]]] = {
                    k: [] for k in ("get", "post", "login", "auth")
                }
                non2xx = []
                with serve_rero(port, 64, extra):
                    wrk(base + "/slots", 1, scripts["post"])  # warm every worker's auth cache
                    for _ in range(args.repeat):
                        get = wrk(base + "/slots", args.seconds)["rps"]
                        pairs["get"].append((get, wrk(bare + "/json", args.seconds)["rps"]))
                        for key, script in (("post", "post"), ("login", "login"),
                                            ("auth", "mine")):  # fmt: skip
                            ours = wrk(base, args.seconds, scripts[script])
                            echo = wrk(bare, args.seconds, scripts["echo"])["rps"]
                            pairs[key].append((ours["rps"], echo))
                            if key == "post":
                                non2xx.append(ours["non_2xx_share"])
                row = {k: statistics.median(x for x, _ in v) for k, v in pairs.items()}
                print(json.dumps({"server": name, "pairs": pairs}), file=sys.stderr)
                cells = [name]
                for key in ("get", "post", "login", "auth"):
                    cells += [f"{row[key]:,.0f}", ratios(pairs[key])]
                    if key == "post":
                        cells.append(f"{max(non2xx):.3f}")
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
