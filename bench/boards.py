"""``GET /resources/{id}/slots?date=`` against a bare aiohttp GET of the same bytes,
interleaved in one run (wrk, loopback, one worker).

rero serves a lab of three resources (bench/lab.py); two boards are measured: the default
resource's tomorrow and the last resource's last bookable date, each with one booking so
``booked_by`` and ``booked_at`` are filled. The bare server (bench/bare.py) answers each
board's exact bytes, fetched from rero first and read once, as ``GET /body/NAME``: the
ceiling for serving that body. ``GET /slots`` is measured too, beside the same bare
``GET /json`` as bench/throughput.py and beside a bare GET of its own bytes. Each figure is
measured next to its ceiling, ``--repeat`` times; the table gives the median ratio and its
range. wrk shares the 2 cores with the server, so each figure also gives the server's CPU
time per request (bench/common.py's ``cpu_seconds`` over the run, divided by the requests
wrk counted), and the ratio of the bare server's to rero's.

``--layers`` then serves the same application with its middleware and its response hook
taken away in turn (bench/layers.py's variants), all up at once, and measures each on the
first board and on ``GET /slots`` beside the bare GET of the same bytes, interleaved.

    python -m bench.boards --seconds 5 --repeat 3 [--layers]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import aiohttp

from bench.common import cpu_seconds, free_port, rero_env, serve, serve_bare, serve_rero
from bench.lab import RESOURCE_IDS, board_path, book, first_date, lab_profile, login_all
from bench.layers import VARIANTS
from bench.throughput import ratios, wrk

WINDOW_DAYS = 7


async def prepare(base: str, slots_only: bool = False) -> dict[str, str]:
    """Book one slot on each measured board; the paths to measure, by name."""
    if slots_only:
        return {"slots": "/slots"}
    async with aiohttp.ClientSession() as http:
        today = await first_date(http, base)
        boards = {
            "board-default": (RESOURCE_IDS[0], today + timedelta(days=1)),
            "board-last": (RESOURCE_IDS[-1], today + timedelta(days=WINDOW_DAYS)),
        }
        tokens = await login_all(http, base, range(2))
        for token, (resource, day) in zip(tokens, boards.values(), strict=True):
            await book(http, base, token, resource, day, 9)
        return {name: board_path(r, d) for name, (r, d) in boards.items()} | {"slots": "/slots"}


async def fetch(base: str, paths: dict[str, str], folder: Path) -> None:
    """Write each path's body to ``folder/NAME``: what the bare server will answer."""
    async with aiohttp.ClientSession() as http:
        for name, path in paths.items():
            async with http.get(base + path) as resp:
                assert resp.status == 200, await resp.text()
                (folder / name).write_bytes(await resp.read())


def variant_server(
    stack: contextlib.ExitStack, variant: str, profile: str, measured: list[str]
) -> tuple[str, dict[str, str], int]:
    """Serve rero with ``variant``'s layers removed, prepared like the main server."""
    port = free_port()
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    code = f"from bench.layers import run_variant; run_variant({variant!r}, {port})"
    argv = [sys.executable, "-c", code]
    pid = stack.enter_context(serve(argv, rero_env(port, folder, 2, profile), port)).pid
    base = f"http://127.0.0.1:{port}"
    return base, asyncio.run(prepare(base, "board-default" not in measured)), pid


def served(url: str, seconds: int, pid: int) -> tuple[float, float]:
    """wrk on ``url``: requests per second, and the server's CPU microseconds per request."""
    cpu = cpu_seconds(pid)
    run = wrk(url, seconds)
    return run["rps"], (cpu_seconds(pid) - cpu) * 1e6 / run["requests"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layers", action="store_true", help="also measure layer by layer")
    parser.add_argument("--slots-only", action="store_true", help="GET /slots alone")
    args = parser.parse_args()
    # The original service (no [[resources]]) for --slots-only.
    profile = "" if args.slots_only else lab_profile(booking_window_days=WINDOW_DAYS)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        bodies = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        rero = stack.enter_context(serve_rero(port, 2, {"WORKERS": "1"}, profile=profile)).pid
        paths = asyncio.run(prepare(base, args.slots_only))
        asyncio.run(fetch(base, paths, bodies))
        bare_port = free_port()
        bare = f"http://127.0.0.1:{bare_port}"
        bare_pid = stack.enter_context(serve_bare(bare_port, bodies)).pid
        sizes = {name: (bodies / name).stat().st_size for name in paths}
        pairs: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
        pairs["slots / bare /json"] = []
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
        for _ in range(args.repeat):
            for name, path in [*paths.items(), ("slots / bare /json", "/slots")]:
                rps, us = served(base + path, args.seconds, rero)
                ceiling_path = "/json" if name not in paths else f"/body/{name}"
                bare_rps, bare_us = served(bare + ceiling_path, args.seconds, bare_pid)
                pairs[name].append((rps, bare_rps))
                cpu[name].append((bare_us, us))  # bare / rero: higher is better
        print(
            f"| what | bytes | rero req/s | bare req/s | / bare (median, range of {args.repeat}) |"
            " rero CPU us/req | bare CPU us/req | bare CPU / rero CPU |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for name, pair in pairs.items():
            path = paths.get(name, "/slots")
            label = f"`GET {path}`" + (" vs bare `GET /json`" if name not in paths else "")
            cells = [
                label,
                f"{sizes.get(name, sizes['slots']):,}",
                f"{statistics.median(x for x, _ in pair):,.0f}",
                f"{statistics.median(c for _, c in pair):,.0f}",
                ratios(pair),
                f"{statistics.median(r for _, r in cpu[name]):.1f}",
                f"{statistics.median(b for b, _ in cpu[name]):.1f}",
                ratios(cpu[name]),
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
        if not args.layers:
            return
        measured: list[str] = [name for name in ("board-default", "slots") if name in paths]
        servers = {v: variant_server(stack, v, profile, measured) for v in VARIANTS}
        layer_pairs: dict[tuple[str, str], list[tuple[float, float]]] = {
            (v, name): [] for v in VARIANTS for name in measured
        }
        layer_cpu: dict[tuple[str, str], list[float]] = {key: [] for key in layer_pairs}
        for _ in range(args.repeat):
            for v, (vbase, vpaths, pid) in servers.items():
                for name in measured:
                    rps, us = served(vbase + vpaths[name], args.seconds, pid)
                    ceiling = wrk(f"{bare}/body/{name}", args.seconds)["rps"]
                    layer_pairs[(v, name)].append((rps, ceiling))
                    layer_cpu[(v, name)].append(us)
        heads = [f"`{paths[name]}` req/s | / bare, same body | CPU us/req" for name in measured]
        print("\n| variant | " + " | ".join(heads) + " |")
        print("| --- " * (1 + 3 * len(measured)) + "|")
        for v in VARIANTS:
            cells = [v]
            for name in measured:
                pair = layer_pairs[(v, name)]
                cells += [
                    f"{statistics.median(x for x, _ in pair):,.0f}",
                    ratios(pair),
                    f"{statistics.median(layer_cpu[(v, name)]):.1f}",
                ]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
