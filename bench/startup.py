"""Start-up time and idle memory of ``python -m rero`` (fake auth, fresh SQLite file).

Time from spawning the process to the first healthy ``GET /health``, and the resident
memory of the idle server then, median over ``--runs``; loopback only.

    python bench/startup.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash import start_server
from fanout import free_port, rss_kib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds, memory = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            proc = start_server(Path(tmp), free_port(), users=3)
            seconds.append(time.perf_counter() - started)
            time.sleep(0.5)
            memory.append(rss_kib(proc.pid))
            proc.terminate()
            proc.wait(10)
    print(f"start-up to healthy: median {statistics.median(seconds) * 1000:.0f} ms")
    print(f"idle resident memory: median {statistics.median(memory) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
