"""A close due while a large frame (over 256 KiB, streamed in pieces) is
on its way to a side: that side gets the rest of the frame, then a close
frame with the code SPEC.md gives (token expiry 1008, drain 1001, message
rate 1008), not a bare TCP close (1006 for a client).  A feeding side that
stops mid-frame does not keep the session: it ends within the linger time.
"""

import signal
import socket
import struct
import ssl
import time

import jwt
import pytest

import rawclient
import wsproto
from conftest import metric, policy, wait_for

B = rawclient.build_request
BIN, PING, CLOSE = wsproto.OP_BINARY, wsproto.OP_PING, wsproto.OP_CLOSE
SECRET = b"wsgate-streamed-close-tests-hmac-secret-0123456789"
BIG = bytes(range(256)) * 4096          # 1 MiB: streamed, not moved whole
FIRST = 64 * 1024                       # sent before the close is due
PIECE = 64 * 1024


def token(seconds):
    return jwt.encode({"sub": "bob", "exp": int(time.time()) + seconds},
                      SECRET, algorithm="HS256")


def wait_close(c, timeout=10.0):
    """Read until the gateway's close frame; False on EOF or timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        f = c.read_frame(max(0.01, end - time.monotonic()))
        if f is None:
            return False
        if f.opcode == CLOSE:
            return True
    return False


def streaming(finish=True):
    """A backend that starts a 1 MiB frame toward the client and, once the
    gateway sent it a close frame, sends the rest in pieces over about a
    second and answers the close (finish), or sends nothing more."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        data = wsproto.encode_frame(BIN, BIG, mask=False)
        c.send(data[:FIRST])
        c.started = True
        if not wait_close(c):
            return
        if finish:
            for i in range(FIRST, len(data), PIECE):
                time.sleep(0.04)
                c.send(data[i:i + PIECE])
            c.send(wsproto.encode_frame(CLOSE, wsproto.close_payload(1001),
                                        mask=False))
        c.drain(10)
    return behavior


def reading(c):
    """A backend that records frames until a close, answers it, reads on."""
    if not c.read_head():
        return
    c.accept_101()
    if wait_close(c):
        c.send(wsproto.encode_frame(CLOSE, wsproto.close_payload(1001),
                                    mask=False))
    c.drain(5)


def gateway(factory, up, top=None, mode="tls13", admin=False):
    auth = {"header": "Authorization",
            "jwt": {"algorithms": ["HS256"], "key_file": str(factory.key),
                    "leeway": "0s"},
            "on_expiry": "close"}
    big = {"max_frame_size": "2MiB", "max_message_size": "2MiB"}
    gw = factory.gateway(
        routes=[("/jwt", "up", "jwt"), ("/rate", "up", "rate"),
                ("/plain", "up", "plain")],
        upstreams={"up": [up.addr]},
        policies={"jwt": policy(frames=big, auth=auth),
                  "rate": policy(frames=big, rate_limit={
                      "messages_per_connection": {"rate": "1/s",
                                                  "burst": 3}}),
                  "plain": policy(frames=big)},
        top=top, tls=(mode != "plain"), admin=admin)
    gw.cafile = factory.cafile
    return gw


@pytest.fixture
def key(factory, tmp_path, certs):
    factory.key = tmp_path / "hmac.secret"
    factory.key.write_bytes(SECRET)
    factory.cafile = certs["cert"]


def opened(gw, up, path, tok=None, mode="tls13"):
    extra = [("Authorization", "Bearer " + tok)] if tok else []
    ctx = None
    if mode != "plain":
        ctx = ssl.create_default_context(cafile=gw.cafile)
        if mode == "tls12":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = rawclient.RawClient(gw.port, ctx, timeout=10.0)
    c.send(B(path, extra=extra))
    head = c.read_until(b"\r\n\r\n", 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    (uc,) = up.wait_conns(1)
    return c, uc


def expired(gw):
    """Until the session has closed on its token's expiry.  Its frames may
    still be finishing, and its access-log line waits for them."""
    wait_for(lambda: "closed: token_expired" in gw.error_text(), 8,
             what="token expiry")


def frame_then_close(c):
    """The whole streamed frame, then the close frame that was due."""
    f = c.read_frame(15)
    assert f is not None, "connection ended in the middle of the frame"
    assert (f.opcode, len(f.payload)) == (BIN, len(BIG)), f
    assert f.payload == BIG
    cf = c.read_frame(5)
    assert cf is not None and cf.opcode == CLOSE, cf
    return cf


@pytest.mark.parametrize("why,mode", [
    ("token_expired", "tls13"), ("token_expired", "tls12"),
    ("token_expired", "plain"), ("rate_messages", "tls13"),
    ("shutdown", "tls13")])
def test_close_due_waits_for_the_frame_toward_the_client(factory, key, why,
                                                         mode):
    up = factory.raw_upstream(streaming())
    gw = gateway(factory, up, top={"shutdown_timeout": "8s"}, mode=mode)
    path = {"token_expired": "/jwt", "rate_messages": "/rate",
            "shutdown": "/plain"}[why]
    c, uc = opened(gw, up, path, token(2) if why == "token_expired" else None,
                   mode)
    try:
        wait_for(lambda: getattr(uc, "started", False), 5, what="frame")
        time.sleep(0.3)         # its header and first piece are relayed
        if why == "rate_messages":
            for p in (b"p1", b"p2", b"p3", b"p4"):
                c.send_frame(PING, p)
        elif why == "shutdown":
            gw.proc.send_signal(signal.SIGTERM)
        cf = frame_then_close(c)
        code = 1001 if why == "shutdown" else 1008
        assert (cf.close_code, cf.close_reason) == (code, why.encode()), cf
        c.send_frame(CLOSE, wsproto.close_payload(code))
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == (why, code), e
    # The rest of the frame, relayed after the close, counts: the whole
    # frame and the backend's close answer came from the upstream.
    assert e["bytes_out"] >= len(BIG) + 10, e
    assert uc.done.wait(10)
    assert [x.close_code for x in uc.close_frames()] == [1001], uc.frames
    if why == "shutdown":
        assert gw.proc.wait(10) == 0


@pytest.mark.parametrize("mode", ["tls13", "tls12", "plain"])
def test_close_due_waits_for_the_frame_toward_the_backend(factory, key,
                                                          mode):
    up = factory.raw_upstream(reading)
    gw = gateway(factory, up, mode=mode)
    c, uc = opened(gw, up, "/jwt", token(2), mode)
    data = wsproto.encode_frame(BIN, BIG)
    try:
        c.send(data[:FIRST])
        f, _ = c.read_close(8)
        assert (f.close_code, f.close_reason) == (1008, b"token_expired"), f
        for i in range(FIRST, len(data), PIECE):
            time.sleep(0.05)
            c.send(data[i:i + PIECE])
        c.send_frame(CLOSE, wsproto.close_payload(1008))
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("token_expired", 1008), e
    assert e["bytes_in"] >= len(data), e
    assert uc.done.wait(10)
    got = [(x.opcode, len(x.payload)) for x in uc.frames[:1]]
    assert got == [(BIN, len(BIG))], got
    assert uc.frames[0].payload == BIG
    assert [x.close_code for x in uc.frames[1:]] == [1001], uc.frames


def test_backend_stalling_mid_frame_does_not_hold_the_session(factory, key):
    up = factory.raw_upstream(streaming(finish=False))
    gw = gateway(factory, up)
    c, uc = opened(gw, up, "/jwt", token(2))
    try:
        wait_for(lambda: getattr(uc, "started", False), 5, what="frame")
        # the frame never ends: the client is let go after the linger
        # time, as before, with the connection closed
        assert c.wait_closed(12), "client connection left open"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("token_expired", 1008), e
    assert uc.done.wait(12), "upstream connection left open"
    assert [x.close_code for x in uc.close_frames()] == [1001], uc.frames


# -- hostile cases of the same finish -----------------------------------------

ODD = 33333                             # pieces off the mask's 4-byte period


def test_close_due_both_ways_at_once_odd_pieces(factory, key):
    """A frame streaming each way when the token expires: each side gets
    the rest of the other's frame, byte for byte (the client's remasked
    afresh at odd offsets), then its close frame."""
    other = bytes(reversed(BIG))

    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        data = wsproto.encode_frame(BIN, other, mask=False)
        c.send(data[:FIRST + 1])
        c.started = True
        # the client's frame, then the close due after it
        f = c.read_frame(15)
        if f is None or f.opcode != BIN:
            return
        if c.read_frame(5) is None:
            return
        for i in range(FIRST + 1, len(data), ODD):
            c.send(data[i:i + ODD])
        c.send(wsproto.encode_frame(CLOSE, wsproto.close_payload(1001),
                                    mask=False))
        c.drain(10)
    up = factory.raw_upstream(behavior)
    gw = gateway(factory, up)
    c, uc = opened(gw, up, "/jwt", token(2))
    data = wsproto.encode_frame(BIN, BIG)
    try:
        wait_for(lambda: getattr(uc, "started", False), 5, what="frame")
        c.send(data[:FIRST + 3])
        expired(gw)
        for i in range(FIRST + 3, len(data), ODD):
            time.sleep(0.01)
            c.send(data[i:i + ODD])
        f = c.read_frame(15)
        assert f is not None, "connection ended in the middle of the frame"
        assert (f.opcode, len(f.payload)) == (BIN, len(other)), f
        assert f.payload == other
        cf = c.read_frame(5)
        assert cf is not None and cf.opcode == CLOSE, cf
        assert (cf.close_code, cf.close_reason) == (1008, b"token_expired")
        c.send_frame(CLOSE, wsproto.close_payload(1008))
        assert c.wait_closed(5)
    finally:
        c.close()
    assert uc.done.wait(10)
    assert uc.frames[0].payload == BIG
    assert [x.close_code for x in uc.frames[1:]] == [1001], uc.frames
    assert gw.alive()


def test_close_due_toward_a_slow_reader_resumes(factory, key):
    """The client reads slowly while the rest of the frame comes: the
    gateway stops taking it at the high-water mark and goes on as the
    client drains, and the frame is whole, then the close."""
    big = bytes(range(251)) * ((2 << 20) // 251 - 1)  # max_frame_size
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        data = wsproto.encode_frame(BIN, big, mask=False)
        c.send(data[:FIRST])
        c.started = True
        if not wait_close(c):
            return
        c.send(data[FIRST:])
        c.send(wsproto.encode_frame(CLOSE, wsproto.close_payload(1001),
                                    mask=False))
        c.drain(10)
    up = factory.raw_upstream(behavior)
    gw = gateway(factory, up, mode="plain")
    c = rawclient.RawClient(gw.port, None, timeout=10.0, rcvbuf=8192)
    c.send(B("/jwt", extra=[("Authorization", "Bearer " + token(2))]))
    assert c.read_until(b"\r\n\r\n", 5).startswith(b"HTTP/1.1 101")
    (uc,) = up.wait_conns(1)
    try:
        wait_for(lambda: getattr(uc, "started", False), 5, what="frame")
        expired(gw)
        time.sleep(0.5)         # the gateway's output fills meanwhile
        f = c.read_frame(15)
        assert f is not None, "connection ended in the middle of the frame"
        assert (f.opcode, len(f.payload)) == (BIN, len(big)), f
        assert f.payload == big
        cf = c.read_frame(5)
        assert cf is not None and cf.close_code == 1008, cf
    finally:
        c.close()
    assert uc.done.wait(10)


@pytest.mark.parametrize("who", ["client", "backend"])
def test_reset_during_the_finish(factory, key, who):
    """Either side reset while the rest of a frame is on its way to the
    client: no crash, no leak, both connections end within the linger."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        data = wsproto.encode_frame(BIN, BIG, mask=False)
        c.send(data[:FIRST])
        c.started = True
        if not wait_close(c):
            return
        c.send(data[FIRST:FIRST + 3 * PIECE + 1])
        if who == "backend":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
            c.sock.close()
            return
        c.drain(10)
    up = factory.raw_upstream(behavior)
    gw = gateway(factory, up)
    c, uc = opened(gw, up, "/jwt", token(2))
    try:
        wait_for(lambda: getattr(uc, "started", False), 5, what="frame")
        expired(gw)
        if who == "client":
            time.sleep(0.2)
            raw = c.sock
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                           struct.pack("ii", 1, 0))
        else:
            assert c.wait_closed(8), "client connection left open"
    finally:
        c.close()
    assert uc.done.wait(8), "upstream connection left open"
    assert gw.alive()
    gw.stop()
    assert gw.proc.returncode == 0


def test_second_signal_during_the_finish_busy_poll(factory, key):
    """SIGTERM with a frame half-way to the client (its backend stalls),
    then SIGTERM again: the daemon stops at once, busy_poll on, and exits
    0 with nothing leaked."""
    up = factory.raw_upstream(streaming(finish=False))
    gw = gateway(factory, up, top={"shutdown_timeout": "30s",
                                   "busy_poll": "1ms", "workers": 2})
    c, uc = opened(gw, up, "/plain")
    try:
        wait_for(lambda: getattr(uc, "started", False), 5, what="frame")
        time.sleep(0.2)
        gw.proc.send_signal(signal.SIGTERM)
        gw.wait_entry(client_port=c.local_port, timeout=8)
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(5) == 0
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("shutdown", 1001), e


def test_rest_of_the_frame_is_counted_in_the_metrics(factory, key):
    """The rest of a frame relayed after the close counts in
    wsgate_bytes_total like the rest of what the gateway relays."""
    up = factory.raw_upstream(reading)
    gw = gateway(factory, up, mode="plain", admin=True)
    c, uc = opened(gw, up, "/jwt", token(2), "plain")
    data = wsproto.encode_frame(BIN, BIG)
    try:
        c.send(data[:FIRST])
        f, _ = c.read_close(8)
        assert f.close_code == 1008, f
        c.send(data[FIRST:])
        assert uc.done.wait(10)
    finally:
        c.close()
    assert uc.frames[0].payload == BIG
    m = gw.metrics()
    assert metric(m, "wsgate_bytes_total",
                  direction="client_to_upstream") == len(data)
    assert metric(m, "wsgate_frames_total",
                  direction="client_to_upstream") == 1
