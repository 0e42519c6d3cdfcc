"""Bytes a client sends before the 101, and pipelined requests: none of it
may reach the upstream.  The upstream is a raw WebSocket server that records
every byte and waits 0.6s before its 101, so early bytes land while the
gateway is still waiting for it.

One gateway for the module; the last test checks it still relays.
"""

import asyncio
import time

import pytest

import rawup
import wsproto
from conftest import run
from rawclient import build_request as B


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream(lambda c: rawup.ws_echo(c, delay=0.6))
    g = module_factory.gateway(routes=[("/echo", "rec")],
                               upstreams={"rec": [up.addr]})
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"


def expect_400(gw, c):
    resp = c.http_response(timeout=5)
    assert resp.status == 400, resp
    assert b"bad_request" in resp.body, resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "bad_request" and e["status"] == 400, e


def no_smuggled_bytes(up):
    time.sleep(0.3)
    for uc in up.connections():
        uc.done.wait(3)
        assert b"/smuggled" not in uc.data, bytes(uc.data)
        assert b"EARLY" not in uc.payloads(), uc.frames


def test_bytes_in_same_write_as_head(gw, up):
    c = gw.raw()
    try:
        c.send(B("/echo") + SMUGGLED)
        expect_400(gw, c)
    finally:
        c.close()
    no_smuggled_bytes(up)


def test_one_byte_in_same_write_as_head(gw, up):
    # a single byte behind the head (a frame's first byte) is as early as
    # a whole request: refused, and no upstream connection is made for it
    c = gw.raw()
    try:
        c.send(B("/echo") + b"\x81")
        expect_400(gw, c)
    finally:
        c.close()
    assert up.connections() == [], up.all_bytes()[:200]


def test_bytes_after_head_while_upstream_pending(gw, up):
    c = gw.raw()
    try:
        c.send(B("/echo"))
        up.wait_conns(1)            # the gateway is talking to the upstream
        time.sleep(0.1)
        c.send(SMUGGLED)
        expect_400(gw, c)
    finally:
        c.close()
    no_smuggled_bytes(up)


def test_early_websocket_frame_before_101(gw, up):
    c = gw.raw()
    try:
        c.send(B("/echo"))
        up.wait_conns(1)
        c.send(wsproto.encode_frame(wsproto.OP_TEXT, b"EARLY frame"))
        expect_400(gw, c)
    finally:
        c.close()
    no_smuggled_bytes(up)


@pytest.mark.parametrize("first", [
    B("/echo", method="POST"),
    B("/echo", version="8"),
    B("/nowhere"),
    B("/echo", extra=[("Content-Length", "%d" % len(B("/echo")))]),
    B("/echo", extra=[("Transfer-Encoding", "chunked")]),
], ids=["post", "version8", "no_route", "content_length",
        "transfer_encoding"])
def test_refused_then_pipelined_upgrade(gw, up, first):
    c = gw.raw()
    try:
        c.send(first + B("/echo") + SMUGGLED)
        resp = c.http_response(timeout=5)
        assert resp.status in (400, 404, 405, 426), resp
        assert b"101" not in resp.body and \
            b"Switching" not in resp.body, resp
    finally:
        c.close()
    gw.wait_entry(client_port=c.local_port)
    time.sleep(0.5)
    assert up.connections() == [], \
        "the upstream received: %r" % up.all_bytes()[:500]


@pytest.mark.parametrize("split", [5, -3, -1], ids=["early", "mid_crlfcrlf",
                                                   "last_byte"])
def test_head_split_across_writes_is_not_smuggling(gw, up, split):
    data = B("/echo")
    c = gw.raw()
    try:
        c.send(data[:split])
        time.sleep(0.2)
        c.send(data[split:])
        head = c.read_until(b"\r\n\r\n", 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
        c.send_frame(wsproto.OP_TEXT, b"after split")
        f = c.read_frame(5)
        assert f is not None and f.payload == b"after split", f
    finally:
        c.close()


def test_normal_echo_still_works(gw, up):
    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("still alive")
            assert await asyncio.wait_for(ws.recv(), 5) == "still alive"
    run(go())
    assert gw.alive()
