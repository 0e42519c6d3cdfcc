"""Relaying after the upgrade: echo, fragments, ping/pong, close codes,
drops, idle timeout and the access-log line of a normal session."""

import asyncio
import datetime
import socket
import time

import pytest
import websockets

import rawclient
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


def _answer_close_with_1000(c):
    """A 101, then every close frame answered with 1000, whatever its code."""
    if not c.read_head():
        return
    c.accept_101()
    deadline = time.monotonic() + 10.0
    while True:
        f = c.read_frame(max(0.01, deadline - time.monotonic()))
        if f is None:
            return
        if f.opcode == wsproto.OP_CLOSE:
            c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                        wsproto.close_payload(1000),
                                        mask=False))
            c.drain(2.0)
            return


@pytest.mark.parametrize("first", ["client", "upstream"])
def test_close_answered_with_another_code_logs_the_first(factory, first):
    """Each side answers the other's close with a code of its own: the
    access log keeps the code of the side that closed first."""
    if first == "client":
        up = factory.raw_upstream(_answer_close_with_1000)
    else:
        up = factory.raw_upstream(rawup.ws_then(wsproto.encode_frame(
            wsproto.OP_CLOSE, wsproto.close_payload(4001), mask=False)))
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]})
    c = gw.raw()
    try:
        c.upgrade("/echo")
        if first == "client":
            c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                        wsproto.close_payload(4000)))
            f, _ = c.read_close(5)
            assert f.close_code == 1000, f
        else:
            f, _ = c.read_close(5)
            assert f.close_code == 4001, f
            c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                        wsproto.close_payload(1000)))
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    want = ("client_closed", 4000) if first == "client" else \
        ("upstream_closed", 4001)
    assert (e["reason"], e["close_code"]) == want, e


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


CLOCKSTEP_C = r"""
/* gettimeofday() plus the seconds in $CLOCKSTEP_FILE: a wall-clock step. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	static int (*real)(struct timeval *, void *);
	const char *f = getenv("CLOCKSTEP_FILE");
	FILE *fp;
	long off = 0;
	int r;

	if (real == NULL)
		real = (int (*)(struct timeval *, void *))dlsym(RTLD_NEXT,
		    "gettimeofday");
	r = real(tv, tz);
	if (r == 0 && tv != NULL && f != NULL && (fp = fopen(f, "r")) != NULL) {
		if (fscanf(fp, "%ld", &off) == 1)
			tv->tv_sec += off;
		fclose(fp);
	}
	return r;
}
"""


def test_wall_clock_step_does_not_close_a_session_early(factory, tmp_path):
    """The idle timeout runs on the monotonic clock.  On libevent's cached
    time, which is the wall clock, a step back (NTP, an operator) made
    now - last_active wrap, and a session quiet for less than its idle
    timeout was closed as idle_timeout.  The step comes from a shim in
    front of gettimeofday(), which libevent reads every 5 s."""
    import os
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the clock shim")
    (tmp_path / "clockstep.c").write_text(CLOCKSTEP_C)
    shim = tmp_path / "clockstep.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(shim),
                    str(tmp_path / "clockstep.c"), "-ldl"], check=True)
    step = tmp_path / "offset"
    step.write_text("0")
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/echo", "echo", "idle")],
                         upstreams={"echo": [up.addr]},
                         policies={"idle": policy(timeouts={"idle": "10s"})},
                         start=False)
    env = dict(os.environ, LD_PRELOAD=str(shim), CLOCKSTEP_FILE=str(step))
    # an ASan build wants its runtime first; the shim only wraps one call
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + \
        ":verify_asan_link_order=0"
    gw.start(env=env)
    c = gw.raw(timeout=30)
    try:
        c.upgrade("/echo")
        for _ in range(6):
            c.send_frame(wsproto.OP_TEXT, b"hi", mask=True)
            f = c.read_frame(5)
            assert f is not None and f.payload == b"hi", f
            time.sleep(0.5)
        quiet = time.monotonic()
        step.write_text("-1000")        # the wall clock steps back 1000 s
        f = c.read_frame(timeout=25)
        closed = time.monotonic() - quiet
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port, timeout=10)
    assert e["reason"] == "idle_timeout", e
    # closed after its 10 s of quiet, not at the next timer after the step
    assert closed >= 9.0, "idle close after %.1f s quiet" % closed


@pytest.mark.parametrize("size", [100 * 1024, 600 * 1024],
                         ids=["buffered", "streamed"])
def test_a_frame_still_arriving_is_not_idle(factory, size):
    """A frame whose bytes trickle in for longer than the idle timeout is
    traffic: buffered whole (up to 256 KiB) or streamed (above), it is
    relayed, not cut off as idle_timeout."""
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(
        routes=[("/echo", "echo", "slow")], upstreams={"echo": [up.addr]},
        policies={"slow": policy(timeouts={"idle": "1s"},
                                 frames={"max_frame_size": "1MiB",
                                         "max_message_size": "1MiB",
                                         "allow_binary": True})})
    payload = bytes(range(256)) * (size // 256)
    data = wsproto.encode_frame(wsproto.OP_BINARY, payload, mask=True)
    c = gw.raw(timeout=15)
    try:
        c.upgrade("/echo")
        step = len(data) // 12 + 1
        for i in range(0, len(data), step):
            c.send(data[i:i + step])
            time.sleep(0.25)            # 3 s in all, the timeout is 1 s
        got = b""
        while len(got) < len(payload):
            f = c.read_frame(10)
            assert f is not None and f.opcode in (
                wsproto.OP_BINARY, wsproto.OP_CONT), f
            got += f.payload
        assert got == payload
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port, timeout=10)
    assert e["bytes_in"] > size, e


def _send_then_wait(total, chunk=64 * 1024):
    """After a correct 101, send total bytes in unmasked binary frames of
    chunk bytes as fast as the socket takes them (c.sent counts what the
    kernel accepted), then keep reading."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        frame = wsproto.encode_frame(wsproto.OP_BINARY, b"\x5a" * chunk,
                                     mask=False)
        if not c.send_counted(frame * (total // chunk)):
            return
        deadline = time.monotonic() + 30
        while c.read_frame(max(0.01, deadline - time.monotonic())):
            pass
    return behavior


def _read_slowly(gw, c, pause, slow_for, limit=40):
    """Read data frames, sleeping pause before each for the first slow_for
    seconds (a slow reader), until a frame that is not binary data, within
    limit seconds.  Returns (bytes, frames, that last frame)."""
    got = frames = 0
    f = None
    slow = time.monotonic() + slow_for
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if time.monotonic() < slow:
            time.sleep(pause)
        f = c.read_frame(10)
        assert f is not None, "EOF after %d bytes in %d frames; %r" % (
            got, frames, gw.entries())
        if f.opcode != wsproto.OP_BINARY:
            break
        got += len(f.payload)
        frames += 1
    return got, frames, f


def test_a_side_paused_for_a_slow_reader_is_not_idle(factory):
    """The upstream sends more than the kernel and the gateway hold for a
    client that reads steadily but slowly for 4 s, so the gateway stops
    reading the upstream for longer than the idle timeout at a time.  The
    upstream is not idle, it is held back: every byte it sent reaches the
    client, which reads fast from then on, and only then the idle close.
    The session was closed as idle_timeout a second in, and the client
    never got what the upstream still had to send."""
    total = 6 << 20
    up = factory.raw_upstream(_send_then_wait(total))
    gw = factory.gateway(routes=[("/echo", "echo", "idle")],
                         upstreams={"echo": [up.addr]},
                         policies={"idle": policy(timeouts={"idle": "1s"})},
                         tls=False)
    c = gw.raw(rcvbuf=64 * 1024, timeout=30)
    try:
        c.upgrade("/echo")
        # about 640 KiB/s for 4 s, then as fast as it comes
        got, _, f = _read_slowly(gw, c, 0.1, 4)
    finally:
        c.close()
    assert got == total, "%r after %d of %d bytes; %r" % (
        f, got, total, gw.entries())
    assert (f.opcode, f.close_code, f.close_reason) == \
        (wsproto.OP_CLOSE, 1001, b"idle_timeout"), f
    e = gw.wait_entry(client_port=c.local_port, timeout=10)
    assert (e["reason"], e["close_code"]) == ("idle_timeout", 1001), e
    assert e["frames_out"] == total // (64 * 1024), e
    (uc,) = up.connections()
    assert uc.done.wait(10)
    assert [x.close_code for x in uc.close_frames()] == [1001], uc.frames


def test_close_wait_spares_an_upstream_held_back_for_a_slow_reader(factory):
    """The client closes, then reads slowly what the upstream still sends
    before its answering close (RFC 6455 5.5.1).  The gateway stops
    reading the upstream meanwhile, which is not the upstream keeping
    silent: the 5 s wait for the answer must not run out while the client
    takes bytes.  It did, and the client got part of the data and no
    close frame."""
    total = 6 << 20
    chunk = 64 * 1024

    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        f = c.read_frame(10)
        if f is None or f.opcode != wsproto.OP_CLOSE:
            return
        frame = wsproto.encode_frame(wsproto.OP_BINARY, b"\x5a" * chunk,
                                     mask=False)
        if c.send_counted(frame * (total // chunk) + wsproto.encode_frame(
                wsproto.OP_CLOSE, f.payload, mask=False)):
            c.drain(10)

    up = factory.raw_upstream(behavior)
    gw = factory.gateway(routes=[("/echo", "echo", "idle")],
                         upstreams={"echo": [up.addr]},
                         policies={"idle": policy(timeouts={"idle": "60s"})},
                         tls=False)
    c = gw.raw(rcvbuf=64 * 1024, timeout=30)
    try:
        c.upgrade("/echo")
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000, "bye"),
                     mask=True)
        # a 64 KiB frame each 0.8 s (80 KiB/s) for 8 s
        got, _, f = _read_slowly(gw, c, 0.8, 8)
    finally:
        c.close()
    assert got == total, "%r after %d of %d bytes" % (f, got, total)
    assert (f.opcode, f.close_code, f.close_reason) == \
        (wsproto.OP_CLOSE, 1000, b"bye"), f
    e = gw.wait_entry(client_port=c.local_port, timeout=10)
    assert (e["reason"], e["close_code"]) == ("client_closed", 1000), e
    assert "did not answer" not in gw.error_text()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_slow_reader_gets_its_close_frame_after_the_backlog(factory, tls):
    """The gateway closes a session (here rate_messages) while megabytes
    it relayed from the upstream wait for a client that reads slowly.
    The client takes them all, then gets 1008 rate_messages.  After 2 s
    of lingering the connection was cut: the client lost the last of the
    data and the close frame, and saw an abnormal closure."""
    up = factory.raw_upstream(_send_then_wait(6 << 20))
    gw = factory.gateway(routes=[("/echo", "echo", "rl")],
                         upstreams={"echo": [up.addr]},
                         policies={"rl": policy(rate_limit={
                             "messages_per_connection": {
                                 "rate": "1/m", "burst": 1}})},
                         tls=tls)
    c = gw.raw(rcvbuf=64 * 1024, timeout=30)
    try:
        c.upgrade("/echo")
        time.sleep(0.5)                 # the gateway holds a backlog
        c.send_frame(wsproto.OP_TEXT, b"one", mask=True)
        c.send_frame(wsproto.OP_TEXT, b"two", mask=True)
        # about 640 KiB/s at most
        _, frames, f = _read_slowly(gw, c, 0.1, 30, limit=30)
    finally:
        c.close()
    assert (f.opcode, f.close_code, f.close_reason) == \
        (wsproto.OP_CLOSE, 1008, b"rate_messages"), f
    e = gw.wait_entry(client_port=c.local_port, timeout=10)
    assert (e["reason"], e["close_code"]) == ("rate_messages", 1008), e
    assert frames == e["frames_out"], (frames, e)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_side_paused_for_a_reader_that_takes_nothing_idles(factory, tls):
    """The other half of the rule above: a client that takes nothing at
    all holds the upstream back for good, and the session ends after the
    idle timeout, 1001 idle_timeout to the upstream."""
    total = 6 << 20
    up = factory.raw_upstream(_send_then_wait(total))
    gw = factory.gateway(routes=[("/echo", "echo", "idle")],
                         upstreams={"echo": [up.addr]},
                         policies={"idle": policy(timeouts={"idle": "1s"})},
                         tls=tls)
    c = gw.raw(rcvbuf=64 * 1024, timeout=30)
    try:
        c.upgrade("/echo")
        e = gw.wait_entry(client_port=c.local_port, timeout=15)
    finally:
        c.close()
    assert e["reason"] == "idle_timeout" and e["close_code"] == 1001, e
    (uc,) = up.wait_conns(1)
    assert uc.done.wait(10)
    codes = [x.close_code for x in uc.close_frames()]
    assert codes == [1001], codes


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


def test_upstream_traffic_alone_keeps_idle_timer_away(factory):
    """timeouts.idle is no frame either way: a backend that pushes a
    message every 0.3s to a client that sends nothing is not idle."""
    def push(c):
        if not c.read_head():
            return
        c.accept_101()
        for i in range(8):              # 2.4s of pushes, idle is 1s
            time.sleep(0.3)
            c.send(wsproto.encode_frame(wsproto.OP_TEXT, b"p%d" % i,
                                        mask=False))
        c.drain(5.0)
    up = factory.raw_upstream(push)
    gw = factory.gateway(routes=[("/echo", "up", "idle")],
                         upstreams={"up": [up.addr]},
                         policies={"idle": policy(timeouts={"idle": "1s"})})

    async def go():
        async with gw.connect("/echo") as ws:
            for i in range(8):
                assert await asyncio.wait_for(ws.recv(), 5) == "p%d" % i
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


def test_compression_offer_is_stripped(echo_gateway):
    gw, be = echo_gateway, echo_gateway.backend

    async def go():
        # the websockets client offers permessage-deflate by default
        async with gw.connect("/echo") as ws:
            assert ws.extensions == [], ws.extensions
            assert ws.response_headers.get_all(
                "Sec-WebSocket-Extensions") == []
            await ws.send("x" * 5000)
            assert await asyncio.wait_for(ws.recv(), 5) == "x" * 5000
    run(go())
    (ev,) = be.wait_event("open")
    assert [k for k, v in ev["headers"]
            if k.lower() == "sec-websocket-extensions"] == []


def test_control_frames_between_fragments(factory):
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]})
    enc = wsproto.encode_frame
    c = gw.raw()
    try:
        c.upgrade("/echo")
        c.send(enc(wsproto.OP_TEXT, b"part1-", fin=False) +
               enc(wsproto.OP_PING, b"mid") +
               enc(wsproto.OP_CONT, b"part2", fin=True))
        got, pong = b"", None
        for _ in range(3):
            f = c.read_frame(5)
            assert f is not None
            if f.opcode == wsproto.OP_PONG:
                pong = f.payload
            else:
                got += f.payload
        assert got == b"part1-part2" and pong == b"mid"
        c.send(enc(wsproto.OP_CLOSE, b""))     # close without a code
        f, _ = c.read_close(5)
        assert f.payload in (b"", wsproto.close_payload(1000)), f
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "client_closed", e


def test_large_message_near_limit(factory):
    # the echo backend answers with one frame, so frames may be big here
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo", "big")],
                         upstreams={"echo": [be.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "1MiB"})})

    async def go():
        async with gw.connect("/echo") as ws:
            blob = bytes(range(256)) * 4000           # ~1000 KiB
            await ws.send([blob[i:i + 60000]
                           for i in range(0, len(blob), 60000)])
            assert await asyncio.wait_for(ws.recv(), 10) == blob
    run(go())


def test_messages_after_a_streamed_frame_both_ways(factory):
    """A frame over 256 KiB is streamed rather than held whole, and the
    message it ends is over all the same: the messages after it, either
    way, are relayed, not refused as a new message in the middle of one."""
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(
        routes=[("/echo", "echo", "big")], upstreams={"echo": [up.addr]},
        policies={"big": policy(frames={"max_frame_size": "1MiB",
                                        "max_message_size": "1MiB"})})
    big = bytes(range(256)) * 1200                  # 300 KiB
    msgs = [(wsproto.OP_BINARY, big), (wsproto.OP_TEXT, b"after one"),
            (wsproto.OP_TEXT, b"t" * 300000), (wsproto.OP_TEXT, b"two")]
    c = gw.raw(timeout=15)
    try:
        c.upgrade("/echo")
        c.send(b"".join(wsproto.encode_frame(op, pl) for op, pl in msgs))
        for op, pl in msgs:
            f = c.read_frame(10)
            assert f is not None, gw.entries()
            assert (f.opcode, f.fin, len(f.payload), f.payload == pl) == \
                (op, True, len(pl), True), (f.opcode, f.fin, len(f.payload))
        c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(1000)))
        f, _ = c.read_close(5)
        assert f.close_code == 1000, f
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 1000), e
    (uc,) = up.connections()
    got = [(f.opcode, f.payload) for f in uc.frames
           if f.opcode in (wsproto.OP_TEXT, wsproto.OP_BINARY)]
    assert got == msgs, [(op, len(pl)) for op, pl in got]


def test_many_concurrent_sessions(echo_gateway):
    gw = echo_gateway

    async def one(i):
        async with gw.connect("/echo") as ws:
            for j in range(5):
                await ws.send("s%d-%d" % (i, j))
                assert await asyncio.wait_for(ws.recv(), 10) == \
                    "s%d-%d" % (i, j)

    async def go():
        await asyncio.gather(*(one(i) for i in range(40)))
    run(go(), timeout=40)
    entries = gw.wait_entries(40, timeout=10)
    ok = [e for e in entries if e["status"] == 101 and
          e["reason"] == "client_closed"]
    assert len(ok) == 40, entries


def test_backend_ping_reaches_client_and_pong_returns(factory):
    up = factory.raw_upstream(rawup.ws_then(
        wsproto.encode_frame(wsproto.OP_PING, b"srv-ping", mask=False)))
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]})
    c = gw.raw()
    try:
        c.upgrade("/echo")
        f = c.read_frame(5)
        assert f.opcode == wsproto.OP_PING and f.payload == b"srv-ping", f
        c.send_frame(wsproto.OP_PONG, b"srv-ping")
        (uc,) = up.wait_conns(1)
        from conftest import wait_for
        wait_for(lambda: any(x.opcode == wsproto.OP_PONG and
                             x.payload == b"srv-ping" for x in uc.frames),
                 5, what="pong at the backend")
    finally:
        c.close()


def test_pings_keep_idle_timer_away(factory):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo", "idle")],
                         upstreams={"echo": [be.addr]},
                         policies={"idle": policy(timeouts={"idle": "1s"})})

    async def go():
        async with gw.connect("/echo") as ws:
            for i in range(8):          # 2.4s of pings only
                w = await ws.ping(b"k%d" % i)
                await asyncio.wait_for(w, 5)
                await asyncio.sleep(0.3)
            await ws.send("after pings")
            assert await asyncio.wait_for(ws.recv(), 5) == "after pings"
    run(go())


def test_data_then_close_in_one_write_keeps_order(factory):
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]})
    enc = wsproto.encode_frame
    c = gw.raw()
    try:
        c.upgrade("/echo")
        c.send(b"".join(enc(wsproto.OP_TEXT, b"m%03d" % i)
                        for i in range(50)) +
               enc(wsproto.OP_BINARY, b"") +
               enc(wsproto.OP_CLOSE, wsproto.close_payload(1000, "end")))
        f, others = c.read_close(5)
        assert f.close_code == 1000
        assert [o.payload for o in others] == \
            [b"m%03d" % i for i in range(50)] + [b""], others
    finally:
        c.close()
    (uc,) = up.wait_conns(1)
    uc.done.wait(5)
    got = [(f.opcode, f.payload) for f in uc.frames]
    assert got[:51] == [(1, b"m%03d" % i) for i in range(50)] + [(2, b"")]
    assert got[51][0] == wsproto.OP_CLOSE and \
        wsproto.parse_close(got[51][1]) == (1000, b"end"), got[51:]


def test_gateway_does_not_answer_pings_itself(factory):
    # a backend that never answers pings: the client gets no pong, which
    # shows that pongs come from the backend and not from the gateway
    up = factory.raw_upstream(rawup.ws_then(b"", delay=0))
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]})
    c = gw.raw()
    try:
        c.upgrade("/echo")
        c.send_frame(wsproto.OP_PING, b"anyone?")
        (uc,) = up.wait_conns(1)
        from conftest import wait_for
        wait_for(lambda: any(f.opcode == wsproto.OP_PING and
                             f.payload == b"anyone?" for f in uc.frames),
                 5, what="ping at the backend")
        import rawclient
        try:
            got = c.read_frame(1.0)     # None would mean EOF: also wrong
            what = "frame %r" % got if got else "EOF"
        except rawclient.Timeout:       # nothing came: right
            what = None
        assert what is None, \
            "client got %s from a backend that sent nothing" % what
    finally:
        c.close()


def test_no_descriptor_leak_over_many_sessions(factory):
    import os
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    fds = lambda: len(os.listdir("/proc/%d/fd" % gw.pid))  # noqa: E731

    async def normal():
        async with gw.connect("/echo") as ws:
            await ws.send("x")
            await asyncio.wait_for(ws.recv(), 5)

    run(normal())                       # warm-up (log files, TLS, ...)
    from conftest import wait_for
    wait_for(lambda: len(gw.entries()) >= 1, 5)
    base = fds()
    n = 0
    for i in range(10):
        run(normal())
        n += 1
        c = gw.raw()                    # dropped mid-session
        c.upgrade("/echo")
        c.close()
        n += 1
        c = gw.raw()                    # refused
        c.send(rawclient.build_request("/nope"))
        c.read_to_eof(5)
        c.close()
        n += 1
    wait_for(lambda: len(gw.entries()) >= n + 1, 10,
             what="%d access-log lines" % (n + 1))
    wait_for(lambda: fds() <= base, 5,
             what="descriptors back to %d (now %d)" % (base, fds()))


def test_client_masking_keys_are_not_passed_upstream(factory):
    """RFC 6455 5.3 and 10.3: the gateway is the client of the upstream
    connection and masks with keys of its own.  A client that masks with
    zeros must not get its bytes onto the upstream's wire as they are:
    whole frames, held text, control frames, a streamed frame (over 256
    KiB) and its close all arrive intact, under other keys."""
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/echo", "up", "big")],
                         upstreams={"up": [up.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "1MiB"})})
    zero = b"\0\0\0\0"
    plain = b"GET /poison HTTP/1.1\r\nHost: cache.example\r\n\r\n"
    big = plain * (300 * 1024 // len(plain))
    sent = [(wsproto.OP_BINARY, True, plain),
            (wsproto.OP_TEXT, True, plain),
            (wsproto.OP_TEXT, False, plain),
            (wsproto.OP_PING, True, plain),
            (wsproto.OP_CONT, True, plain),
            (wsproto.OP_BINARY, True, big)]
    c = gw.raw()
    try:
        c.upgrade("/echo")
        (uc,) = up.wait_conns(1)
        for op, fin, p in sent:
            c.send(wsproto.encode_frame(op, p, fin=fin, mask_key=zero))
        c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(1000, plain[:100]),
                                    mask_key=zero))
        f, others = c.read_close(10)
        assert f.close_code == 1000, f
    finally:
        c.close()
    assert uc.done.wait(5)
    got = [(f.opcode, f.fin, f.payload) for f in uc.frames]
    assert got[:-1] == sent, uc.frames
    assert uc.frames[-1].payload == wsproto.close_payload(1000, plain[:100])
    assert all(f.masked for f in uc.frames), uc.frames
    wire = bytes(uc.data)
    assert plain not in wire, "client-chosen masking key reached upstream"
    assert zero + plain[:16] not in wire
