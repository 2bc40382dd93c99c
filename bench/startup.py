"""Start-up time and idle memory of ``python -m rero`` (fake auth, fresh SQLite file).

Time from spawning the process to the first healthy ``GET /health``, and the resident
memory of the idle server then, median over ``--runs``; loopback only.

    python -m bench.startup --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import free_port, rss_kib, serve_rero


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds, memory = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        with serve_rero(free_port(), 3, {"LOG_LEVEL": "error"}) as proc:
            seconds.append(time.perf_counter() - started)
            time.sleep(0.5)
            memory.append(rss_kib(proc.pid))
    print(f"start-up to healthy: median {statistics.median(seconds) * 1000:.0f} ms")
    print(f"idle resident memory: median {statistics.median(memory) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
