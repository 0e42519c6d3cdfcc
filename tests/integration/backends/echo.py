"""A websockets echo backend for the integration tests.

Prints "PORT <n>" once listening.  Records one JSON line per event to the
--record file: "open" (path, request headers, chosen subprotocol) and
"close" (close code and reason as seen by this server).

Messages:
  "cmd:close:<code>:<reason>"  close with that code and reason
  "cmd:count"                  reply with the number of open connections
  anything else                echoed, prefixed "<name>:" when --name is set
"""

import argparse
import asyncio
import itertools
import json

import websockets

ap = argparse.ArgumentParser()
ap.add_argument("--name", default="")
ap.add_argument("--record", required=True)
ap.add_argument("--subprotocols", default="")
args = ap.parse_args()

ids = itertools.count(1)
active = 0


def record(ev):
    with open(args.record, "a") as f:
        f.write(json.dumps(ev) + "\n")
        f.flush()


async def handler(ws, path):
    global active
    cid = next(ids)
    active += 1
    record({"event": "open", "conn": cid, "path": path,
            "headers": [[k, v] for k, v in ws.request_headers.raw_items()],
            "subprotocol": ws.subprotocol})
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("cmd:close:"):
                _, _, code, reason = msg.split(":", 3)
                await ws.close(int(code), reason)
                break
            if msg == "cmd:count":
                await ws.send(str(active))
                continue
            if args.name:
                if isinstance(msg, str):
                    msg = args.name + ":" + msg
                else:
                    msg = args.name.encode() + b":" + msg
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    finally:
        active -= 1
        await ws.wait_closed()
        record({"event": "close", "conn": cid, "code": ws.close_code,
                "reason": ws.close_reason})


async def main():
    protos = [p for p in args.subprotocols.split(",") if p] or None
    async with websockets.serve(handler, "127.0.0.1", 0,
                                subprotocols=protos, ping_interval=None,
                                close_timeout=2) as server:
        port = server.sockets[0].getsockname()[1]
        print("PORT %d" % port, flush=True)
        await asyncio.Future()


asyncio.run(main())
