"""SIGTERM drains: every client gets close 1001, the access log says
shutdown, and the daemon exits 0 within shutdown_timeout."""

import asyncio
import signal
import subprocess
import time

import pytest
import websockets

import wsproto
from rawclient import build_request
from conftest import run


def test_sigterm_closes_clients_1001_and_exits_0(echo_gateway):
    gw, be = echo_gateway, echo_gateway.backend

    async def go():
        async with gw.connect("/echo") as a, gw.connect("/echo") as b:
            ports = [a.local_address[1], b.local_address[1]]
            for ws in (a, b):
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            gw.proc.send_signal(signal.SIGTERM)
            codes = []
            for ws in (a, b):
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 8)
                codes.append(ws.close_code)
            return ports, codes
    ports, codes = run(go())
    assert codes == [1001, 1001]
    t0 = time.monotonic()
    try:
        rc = gw.proc.wait(8)
    except subprocess.TimeoutExpired:
        pytest.fail("wsgate still running %.0fs after SIGTERM" %
                    (time.monotonic() - t0))
    assert rc == 0
    for p in ports:
        e = gw.wait_entry(client_port=p)
        assert e["reason"] == "shutdown" and e["close_code"] == 1001, e
    closes = be.wait_event("close", n=2, timeout=5)
    assert sorted(ev["code"] for ev in closes) == [1001, 1001], closes


def test_sigterm_stops_accepting(echo_gateway):
    gw = echo_gateway
    c = gw.raw()
    c.upgrade("/echo")
    gw.proc.send_signal(signal.SIGTERM)
    f, _ = c.read_close(5)
    assert f.close_code == 1001
    # while draining (our close not answered yet) no new upgrade succeeds
    import socket
    refused = False
    try:
        n = gw.raw(timeout=3)
        try:
            n.send(build_request("/echo"))
            data = n.read_to_eof(3)
            refused = not data.startswith(b"HTTP/1.1 101")
        finally:
            n.close()
    except (OSError, AssertionError):
        refused = True
    assert refused, "gateway upgraded a new connection while draining"
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1001))
    c.close()
    assert gw.proc.wait(8) == 0


def test_unresponsive_client_does_not_block_exit(factory):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"shutdown_timeout": "2s"})
    c = gw.raw()
    try:
        c.upgrade("/echo")
        gw.proc.send_signal(signal.SIGTERM)
        f, _ = c.read_close(5)
        assert f.close_code == 1001
        # never answer the close: the daemon must still exit by itself
        try:
            rc = gw.proc.wait(8)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate did not exit after shutdown_timeout 2s")
        assert rc == 0
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "shutdown", e
