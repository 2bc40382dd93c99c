"""The ceiling: a bare aiohttp WebSocket server, for comparison with rero in the same run.

``GET /json`` answers a small JSON dict and ``POST /echo`` echoes a JSON body: the HTTP
ceilings; ``GET /body/NAME`` answers the bytes of the file ``NAME`` in the folder given as
the second argument, read once (the ceiling for serving a prebuilt board). ``POST /change``
serializes a board of the same shape and size as rero's once and sends it to each client in
turn (awaiting each send), then answers. Each text message a client sends is echoed back,
and the first one of a round also triggers one broadcast: the ceiling for a booking rush.

    python -m bench.bare PORT [FOLDER]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiohttp import web

clients: set[web.WebSocketResponse] = set()
state = {"seq": 0, "rush_broadcast": False}
BODIES = web.AppKey("bodies", dict[str, bytes])


def board(seq: int) -> str:
    slots = [
        {"id": h, "start_time": f"{h:02d}:00", "end_time": f"{h + 1:02d}:00",
         "is_booked": h == 9 and seq % 2 == 1, "booked_by": None, "booked_at": None}
        for h in range(3, 15)
    ]  # fmt: skip
    data = {"slots": slots, "available_slots": [], "booked_slots": []}
    return json.dumps({"type": "slots_update", "seq": seq, "data": data})


async def broadcast() -> None:
    state["seq"] += 1
    text = board(state["seq"])
    for ws in list(clients):
        await ws.send_str(text)


async def change(request: web.Request) -> web.Response:
    await broadcast()
    return web.json_response({"seq": state["seq"]})


async def reset(request: web.Request) -> web.Response:
    state["rush_broadcast"] = False
    return web.json_response({})


async def socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    clients.add(ws)
    await ws.send_str(board(state["seq"]))
    try:
        async for _msg in ws:
            await ws.send_str('{"type":"booking_response","success":false}')
            if not state["rush_broadcast"]:
                state["rush_broadcast"] = True
                await broadcast()
    finally:
        clients.discard(ws)
    return ws


async def small_json(request: web.Request) -> web.Response:
    return web.json_response({"message": "ok", "active_connections": len(clients)})


async def echo(request: web.Request) -> web.Response:
    return web.json_response(await request.json())


async def prebuilt(request: web.Request) -> web.Response:
    body = request.app[BODIES].get(request.match_info["name"])
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"active_connections": len(clients)})


def main() -> None:
    app = web.Application()
    app.router.add_post("/change", change)
    app.router.add_post("/reset", reset)
    app.router.add_get("/slot-booking", socket)
    app.router.add_get("/health", health)
    app.router.add_get("/json", small_json)
    app.router.add_post("/echo", echo)
    app.router.add_get("/body/{name}", prebuilt)
    folder = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    app[BODIES] = {f.name: f.read_bytes() for f in folder.iterdir()} if folder else {}
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
