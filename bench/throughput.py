"""HTTP throughput with wrk: rero with 1, 2 and 4 workers (and PostgreSQL), beside a bare
aiohttp ceiling measured in the same run.

* ``GET /slots`` against the bare ``GET /json`` (a small dict);
* book-then-cancel pairs over ``POST /book-slot`` / ``POST /cancel-slot`` with cached
  credentials against the bare ``POST /echo``. Each wrk thread books and cancels its own
  slot as its own user, so most requests are real, durable writes;
* logins with a warm auth cache: ``POST /auth/login`` (each opens a session, a durable
  write) and ``POST /my-bookings`` with a password (the cached check alone, no write),
  against the same echo.

Needs wrk (Debian package). Loopback only, ``--seconds`` per measurement.

    python bench/throughput.py --seconds 10 [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import ROOT, free_port, wait_ready

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
        "non_2xx_share": round(int(non2xx.group(1)) / total, 3) if non2xx else 0.0,
    }


def serve(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users.toml"
        users.write_text("".join(
            f'[[users]]\nusername = "u{i}"\npassword = "p{i}"\nname = "U{i}"\nsrn = "S{i}"\n'
            for i in range(64)
        ))  # fmt: skip
        post = Path(tmp) / "post.lua"
        post.write_text(LUA_POST)
        echo = Path(tmp) / "echo.lua"
        echo.write_text("ECHO = true\n" + LUA_POST)
        login = Path(tmp) / "login.lua"
        login.write_text('PATH = "/auth/login"\n' + LUA_POST)
        mine = Path(tmp) / "mine.lua"
        mine.write_text('PATH = "/my-bookings"\n' + LUA_POST)

        port = free_port()
        proc = serve([sys.executable, str(ROOT / "bench" / "bare.py"), str(port)], {}, port)
        try:
            base = f"http://127.0.0.1:{port}"
            rows.append({"server": "bare aiohttp", "get": wrk(base + "/json", args.seconds),
                         "post": wrk(base, args.seconds, echo)})  # fmt: skip
        finally:
            proc.terminate()
            proc.wait()

        setups = [(f"rero, {n} worker(s), SQLite", {"WORKERS": str(n)}) for n in args.workers]
        if args.database_url:
            setups.append(("rero, 1 worker, PostgreSQL", {"DATABASE_URL": args.database_url}))
        for name, extra in setups:
            port = free_port()
            env = {"HOST": "127.0.0.1", "PORT": str(port), "AUTH_BACKEND": "fake",
                   "FAKE_USERS_FILE": str(users), "LOG_LEVEL": "warning",
                   "DATABASE_PATH": str(Path(tmp) / f"rero-{port}.db"), **extra}  # fmt: skip
            proc = serve([sys.executable, "-m", "rero"], env, port)
            try:
                base = f"http://127.0.0.1:{port}"
                # Warm the auth cache of every worker.
                wrk(base + "/slots", 1, post)
                rows.append({"server": name, "get": wrk(base + "/slots", args.seconds),
                             "post": wrk(base, args.seconds, post),
                             "login": wrk(base, args.seconds, login),
                             "auth": wrk(base, args.seconds, mine)})  # fmt: skip
            finally:
                proc.terminate()
                proc.wait()
    for row in rows:
        print(json.dumps(row))
    bare = rows[0]
    print("\n| server | GET req/s | GET / bare | book+cancel req/s | POST / bare echo | non-2xx |"
          " logins/s | / echo | cached auth checks/s | / echo |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    echo = bare["post"]["rps"]
    for row in rows:
        get, post = row["get"], row["post"]
        cells = [row["server"], get["rps"], f"{get['rps'] / bare['get']['rps']:.2f}",
                 post["rps"], f"{post['rps'] / echo:.2f}", post["non_2xx_share"]]  # fmt: skip
        for key in ("login", "auth"):
            rps = row[key]["rps"] if key in row else ""
            cells += [rps, f"{rps / echo:.2f}" if rps else ""]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
