#!/usr/bin/python3
"""
Demo WebSocket echo backend for wsgate.

A plaintext WebSocket server that sends every text and binary message
back as it came.  It logs each connection to stderr and exits cleanly on
SIGTERM or SIGINT; on a port it cannot listen on it exits with status 1
and one line on stderr.  Uses Debian 12's python3-websockets (10.4, asyncio
API).

    /usr/bin/python3 contrib/demo-backend.py --host 127.0.0.1 --port 9001
"""

import argparse
import asyncio
import logging
import os
import signal
import sys

import websockets

log = logging.getLogger("demo-backend")


async def echo(ws, path=None):
    """Echo every message on one connection until it closes."""
    # websockets 10.4 still passes the request path as a second argument.
    if path is None:
        path = getattr(ws, "path", "?")
    peer = ws.remote_address
    peer = "%s:%s" % (peer[0], peer[1]) if peer else "?"
    fwd = ws.request_headers.get("X-Forwarded-For", "-")
    log.info("open %s path=%s forwarded_for=%s subprotocol=%s",
             peer, path, fwd, ws.subprotocol)
    count = 0
    try:
        async for message in ws:
            count += 1
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    log.info("close %s messages=%d code=%s reason=%r",
             peer, count, ws.close_code, ws.close_reason)


async def serve(host, port, subprotocols, max_size):
    """Serve until SIGTERM or SIGINT: 0, or 1 if the port cannot be had."""
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_signal(sig):
        # Ctrl-C on quickstart.sh sends SIGINT and then SIGTERM.
        if not stop.done():
            stop.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        server = await websockets.serve(echo, host, port,
                                        subprotocols=subprotocols or None,
                                        max_size=max_size,
                                        compression=None)
    except OSError as e:
        # A port in use is no bug of ours: one line, not a traceback.
        print("demo-backend: cannot listen on %s:%d: %s" %
              (host, port, os.strerror(e.errno) if e.errno else e),
              file=sys.stderr)
        return 1
    async with server:
        log.info("listening on ws://%s:%d/", host, port)
        sig = await stop
        # A second signal may come after asyncio.run() has closed the loop
        # and put back the default action, which would kill the process
        # on SIGTERM.  Held from here, it stays pending until exit.
        signal.pthread_sigmask(signal.SIG_BLOCK,
                               {signal.SIGTERM, signal.SIGINT})
        log.info("got %s, stopping", signal.Signals(sig).name)
    return 0


def main():
    ap = argparse.ArgumentParser(description="WebSocket echo backend")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--subprotocol", action="append", default=[],
                    help="accept this subprotocol (repeatable)")
    ap.add_argument("--max-size", type=int, default=64 * 1024 * 1024,
                    help="largest message accepted, in bytes")
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s demo-backend: %(message)s")
    # Keep websockets' own per-frame chatter out of the log.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    return asyncio.run(serve(args.host, args.port, args.subprotocol,
                             args.max_size))


if __name__ == "__main__":
    sys.exit(main())
