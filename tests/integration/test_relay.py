"""Relaying after the upgrade: echo, fragments, ping/pong, close codes,
drops, idle timeout and the access-log line of a normal session."""

import asyncio
import datetime
import socket

import pytest
import websockets

import rawup
import wsproto
from conftest import policy, run


def test_text_and_binary_echo(echo_gateway):
    gw = echo_gateway

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("hello ✓")
            assert await asyncio.wait_for(ws.recv(), 5) == "hello ✓"
            blob = bytes(range(256)) * 300        # 76800 bytes, > 64KiB
            await ws.send(blob[:60000])
            assert await asyncio.wait_for(ws.recv(), 5) == blob[:60000]
            await ws.send(b"")
            assert await asyncio.wait_for(ws.recv(), 5) == b""
            return ws.local_address[1]
    port = run(go())
    e = gw.wait_entry(client_port=port)
    assert e["status"] == 101 and e["reason"] == "client_closed", e
    assert e["close_code"] == 1000, e
    assert e["frames_in"] >= 4 and e["frames_out"] >= 4, e
    assert e["bytes_in"] > 60000 and e["bytes_out"] > 60000, e


def test_fragmented_messages_arrive_whole(echo_gateway):
    gw = echo_gateway

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send(["frag", "mented ", "text ✓"])
            assert await asyncio.wait_for(ws.recv(), 5) == \
                "fragmented text ✓"
            await ws.send([b"\x00\x01", b"\x02" * 1000, b"\x03"])
            assert await asyncio.wait_for(ws.recv(), 5) == \
                b"\x00\x01" + b"\x02" * 1000 + b"\x03"
    run(go())


def test_ping_is_answered_by_backend_through_gateway(factory):
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]})

    async def go():
        async with gw.connect("/echo") as ws:
            waiter = await ws.ping(b"ping-123")
            await asyncio.wait_for(waiter, 5)
    run(go())
    (uc,) = up.wait_conns(1)
    pings = [f for f in uc.frames if f.opcode == wsproto.OP_PING]
    assert [f.payload for f in pings] == [b"ping-123"], uc.frames
    assert all(f.masked for f in uc.frames), "gateway sent unmasked frames"


def test_pong_from_backend_reaches_client(factory):
    # the backend's unsolicited pong is relayed like any frame
    up = factory.raw_upstream(rawup.ws_then(
        wsproto.encode_frame(wsproto.OP_PONG, b"from-backend", mask=False)))
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]})
    c = gw.raw()
    try:
        c.upgrade("/echo")
        f = c.read_frame(5)
        assert f is not None and f.opcode == wsproto.OP_PONG, f
        assert f.payload == b"from-backend" and not f.masked, f
    finally:
        c.close()


def test_client_close_code_reaches_backend(echo_gateway):
    gw, be = echo_gateway, echo_gateway.backend

    async def go():
        async with gw.connect("/echo") as ws:
            port = ws.local_address[1]
            await ws.send("x")
            await asyncio.wait_for(ws.recv(), 5)
            await ws.close(4000, "bye")
            return port, ws.close_code
    port, code = run(go())
    assert code == 4000
    (ev,) = be.wait_event("close")
    assert (ev["code"], ev["reason"]) == (4000, "bye"), ev
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "client_closed" and e["close_code"] == 4000, e


def test_backend_close_code_reaches_client(echo_gateway):
    gw = echo_gateway

    async def go():
        async with gw.connect("/echo") as ws:
            port = ws.local_address[1]
            await ws.send("cmd:close:4001:done here")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return port, ws.close_code, ws.close_reason
    port, code, reason = run(go())
    assert (code, reason) == (4001, "done here")
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "upstream_closed" and e["close_code"] == 4001, e


def test_client_drop_sends_1001_to_backend(echo_gateway):
    gw, be = echo_gateway, echo_gateway.backend
    c = gw.raw()
    c.upgrade("/echo")
    c.send_frame(wsproto.OP_TEXT, b"before drop")
    f = c.read_frame(5)
    assert f.payload == b"before drop"
    port = c.local_port
    c.sock.close()                      # no close frame
    (ev,) = be.wait_event("close", timeout=8)
    assert ev["code"] == 1001, ev
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "client_dropped", e


def test_client_rst_sends_1001_to_backend(echo_gateway):
    import struct
    gw, be = echo_gateway, echo_gateway.backend
    c = gw.raw()
    c.upgrade("/echo")
    port = c.local_port
    raw = c.sock
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                   struct.pack("ii", 1, 0))
    raw.close()                         # RST
    (ev,) = be.wait_event("close", timeout=8)
    assert ev["code"] == 1001, ev
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "client_dropped", e


def test_idle_timeout_closes_1001(factory):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo", "idle")],
                         upstreams={"echo": [be.addr]},
                         policies={"idle": policy(timeouts={"idle": "1s"})})

    async def go():
        async with gw.connect("/echo") as ws:
            port = ws.local_address[1]
            await ws.send("one")
            await asyncio.wait_for(ws.recv(), 5)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 8)
            return port, ws.close_code
    port, code = run(go())
    assert code == 1001
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "idle_timeout" and e["close_code"] == 1001, e
    (ev,) = be.wait_event("close", timeout=8)
    assert ev["code"] == 1001, ev


def test_traffic_keeps_idle_timer_away(factory):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo", "idle")],
                         upstreams={"echo": [be.addr]},
                         policies={"idle": policy(timeouts={"idle": "1s"})})

    async def go():
        async with gw.connect("/echo") as ws:
            for i in range(8):          # 2.4s of traffic, gaps of 0.3s
                await ws.send("m%d" % i)
                assert await asyncio.wait_for(ws.recv(), 5) == "m%d" % i
                await asyncio.sleep(0.3)
    run(go())


def test_access_log_fields_of_a_session(echo_gateway):
    gw = echo_gateway

    async def go():
        async with gw.connect("/echo",
                              origin="https://app.example.com") as ws:
            for i in range(3):
                await ws.send("msg %d" % i)
                await asyncio.wait_for(ws.recv(), 5)
            return ws.local_address[1]
    port = run(go())
    e = gw.wait_entry(client_port=port)
    for k in ("time", "id", "client", "client_port", "listener", "route",
              "upstream", "origin", "user", "country", "status", "reason",
              "close_code", "duration_ms", "frames_in", "frames_out",
              "bytes_in", "bytes_out"):
        assert k in e, "access log lacks %r: %r" % (k, e)
    t = datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
    assert t.utcoffset() == datetime.timedelta(0), e
    assert e["client"] == "127.0.0.1"
    assert e["listener"] == "public"
    assert e["route"] == "/echo"
    assert e["upstream"] == "echo"
    assert e["origin"] == "https://app.example.com"
    assert e["user"] is None and e["country"] is None
    assert e["status"] == 101
    assert e["reason"] == "client_closed" and e["close_code"] == 1000
    assert isinstance(e["duration_ms"], (int, float)) and \
        e["duration_ms"] >= 0
    assert e["frames_in"] >= 4 and e["frames_out"] >= 4, e  # 3 msgs + close
    assert e["bytes_in"] >= len("msg 0") * 3, e
    assert e["bytes_out"] >= len("msg 0") * 3, e
    # ids are distinct per connection
    port2 = run(go())
    e2 = gw.wait_entry(client_port=port2)
    assert e2["id"] != e["id"]
