"""A close frame relayed to a side that never answers it: the session ends a
few seconds after the frame has gone out, not at the idle timeout, the side
that closed first gets its own code back, and the access log names that
side with its code.  A side that hangs up
on the relayed close instead of answering it ends the close the other side
asked for: that side gets its own code back, and the log says it closed.
A ws:// client that half-closes TCP, or a TLS 1.3 client that ends TLS
(close_notify, FIN), right behind its close frame still gets the close
answered, before the gateway's close_notify."""

import socket
import ssl
import time

import jwt
import pytest

import rawclient
import wsproto
from conftest import policy, wait_for
from test_tls13_crafted import Sealer
from test_tls_records import RecordClient, frames_in, upgrade

# Far above the gateway's wait for a close answer, far below the test bound
# of the other side's idle timeout: reaching it means no bound was applied.
IDLE = "120s"
BOUND = 30.0


def mute_after_101(c):
    """A 101, then record every frame and never answer, not even a close."""
    if not c.read_head():
        return
    c.accept_101()
    c.drain(BOUND + 30)


def close_then_wait(code, reason):
    """A 101, a close frame, then keep the connection open and read."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        time.sleep(0.3)
        c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(code, reason),
                                    mask=False))
        c.drain(BOUND + 30)
    return behavior


def gateway(factory, behavior, tls=True):
    up = factory.raw_upstream(behavior)
    gw = factory.gateway(routes=[("/c", "c", "slow")],
                         upstreams={"c": [up.addr]},
                         policies={"slow": policy(
                             timeouts={"idle": IDLE})},
                         tls=tls)
    gw.up = up
    return gw


def test_client_close_unanswered_by_upstream(factory):
    gw = gateway(factory, mute_after_101)
    c = gw.raw()
    c.upgrade("/c")
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(4000, b"bye"))
    (uc,) = gw.up.wait_conns(1)
    wait_for(lambda: uc.frames or wsproto.decode_frame(uc.buf)[0],
             timeout=5, what="the close frame upstream")
    # the client keeps its socket open, waiting for an answer
    assert c.wait_closed(BOUND), "session still open after the relayed close"
    # the close it asked for is done: its own code back, not a cut
    # connection (1006 to a browser), as when the upstream hangs up
    f, _ = wsproto.decode_frame(c.buf)
    assert f is not None and f.opcode == wsproto.OP_CLOSE and \
        f.close_code == 4000, bytes(c.buf)
    assert uc.done.wait(10), "upstream connection still open"
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "client_closed" and e["close_code"] == 4000, e
    f, _ = wsproto.decode_frame(uc.data[uc.data.index(b"\r\n\r\n") + 4:])
    assert f.opcode == wsproto.OP_CLOSE and f.close_code == 4000, f
    c.close()


def test_frames_after_a_close_do_not_hold_the_session_open(factory):
    """What a client sends after its close frame is thrown away and is no
    activity either: a client that keeps sending after its close still
    has the session ended once the wait for the mute upstream's answer
    runs out, with its own code back, and none of it reaches the
    upstream."""
    gw = gateway(factory, mute_after_101, tls=False)
    c = gw.raw()
    c.upgrade("/c")
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(4000, b"bye"))
    deadline = time.monotonic() + BOUND
    closed = False
    while not closed and time.monotonic() < deadline:
        if wsproto.decode_frame(c.buf)[0] is not None:
            # the answer is here: stop sending, the end follows
            closed = c.wait_closed(5)
            break
        if not c.try_send(wsproto.encode_frame(wsproto.OP_TEXT, b"junk")):
            break
        closed = c.wait_closed(0.25)
    f, _ = wsproto.decode_frame(c.buf)
    assert f is not None and f.opcode == wsproto.OP_CLOSE and \
        f.close_code == 4000, "no close answer while frames kept coming"
    assert closed, "session still open after the close answer"
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "client_closed" and e["close_code"] == 4000, e
    (uc,) = gw.up.wait_conns(1)
    assert uc.done.wait(10), "upstream connection still open"
    got, rest = frames_to_upstream(uc)
    assert got == [(wsproto.OP_CLOSE, 4000)] and not rest, (got, rest)
    c.close()

def test_client_close_without_a_code_unanswered_gets_1000(factory):
    """A close frame without a code, left unanswered, is answered with
    1000: 1005 only stands for "no code" and is never sent in a close
    frame (RFC 6455 7.4.1)."""
    gw = gateway(factory, mute_after_101)
    c = gw.raw()
    c.upgrade("/c")
    c.send_frame(wsproto.OP_CLOSE, b"")
    assert c.wait_closed(BOUND), "session still open after the relayed close"
    f, _ = wsproto.decode_frame(c.buf)
    assert f is not None and f.opcode == wsproto.OP_CLOSE and \
        f.close_code == 1000, bytes(c.buf)
    c.close()


def upstream_closed_first(factory):
    """A plaintext gateway whose upstream sends close 4001 after the 101;
    the client has read that close and not answered: (gateway, client)."""
    gw = gateway(factory, close_then_wait(4001, b"later"), tls=False)
    c = gw.raw()
    c.upgrade("/c")
    f, _ = c.read_close(5)
    assert f.close_code == 4001
    return gw, c


def frames_to_upstream(uc):
    """(opcode, close code) of each frame (up to 8) the upstream read
    after the request head, and the bytes left that make no frame."""
    rest = bytes(uc.data[uc.data.index(b"\r\n\r\n") + 4:])
    got = []
    for _ in range(8):
        g, n = wsproto.decode_frame(rest)
        if g is None:
            break
        rest = rest[n:]
        got.append((g.opcode, g.close_code))
    return got, rest


def test_upstream_close_unanswered_by_client(factory):
    gw, c = upstream_closed_first(factory)
    # never answer, keep reading: the gateway ends it by itself
    assert c.wait_closed(BOUND), "session still open after the relayed close"
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "upstream_closed" and e["close_code"] == 4001, e
    (uc,) = gw.up.connections()
    assert uc.done.wait(10), "upstream connection still open"
    # the upstream's close is answered with its own code, once
    got, rest = frames_to_upstream(uc)
    assert got == [(wsproto.OP_CLOSE, 4001)] and not rest, (got, rest)
    c.close()


def burst_close_then_wait(c):
    """A 101, 4 MiB of binary frames and a close frame, then keep reading."""
    if not c.read_head():
        return
    c.accept_101()
    frame = wsproto.encode_frame(wsproto.OP_BINARY, b"\x07" * (32 << 10),
                                 mask=False)
    for _ in range(128):
        c.send(frame)
    c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                wsproto.close_payload(1000), mask=False))
    c.drain(BOUND + 30)


def test_slow_reader_still_gets_everything_before_the_close(factory):
    gw = gateway(factory, burst_close_then_wait)
    c = rawclient.RawClient(gw.port, gw.ssl, rcvbuf=16 * 1024)
    c.upgrade("/c")
    # not reading for longer than the wait for a close answer
    time.sleep(8)
    got = 0
    close = None
    for _ in range(1000):           # 128 data frames, then the close
        f = c.read_frame(10)
        if f is None or f.opcode == wsproto.OP_CLOSE:
            close = f
            break
        got += len(f.payload)
    assert got == 128 * (32 << 10) and close is not None and \
        close.close_code == 1000, (got, close)
    e = gw.wait_entry(client_port=c.local_port, timeout=BOUND)
    assert e["reason"] == "upstream_closed" and e["close_code"] == 1000, e
    c.close()


def hang_up_on_close(c):
    """A 101, then read until a close frame and hang up without answering."""
    if not c.read_head():
        return
    c.accept_101()
    f = c.read_frame(10)
    while f is not None and f.opcode != wsproto.OP_CLOSE:
        f = c.read_frame(10)


def test_upstream_hanging_up_on_a_client_close(factory):
    gw = gateway(factory, hang_up_on_close)
    c = gw.raw()
    c.upgrade("/c")
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(4000, b"bye"))
    f = c.read_frame(10)
    assert f is not None and f.opcode == wsproto.OP_CLOSE and \
        f.close_code == 4000, f
    assert c.wait_closed(10)
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "client_closed" and e["close_code"] == 4000, e
    c.close()


def test_client_hanging_up_on_an_upstream_close(factory):
    gw, c = upstream_closed_first(factory)
    c.sock.close()
    (uc,) = gw.up.connections()
    assert uc.done.wait(BOUND + 40), "upstream connection still open"
    closes = [f for f in uc.frames if f.opcode == wsproto.OP_CLOSE]
    if not closes:
        g, _ = wsproto.decode_frame(uc.buf)
        closes = [g] if g is not None else []
    assert [g.close_code for g in closes] == [4001], closes
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "upstream_closed" and e["close_code"] == 4001, e


def finish_then_answer(c):
    """A 101; on a close frame, go on sending a frame a second for 8
    seconds (finishing what it was sending), then answer the close."""
    if not c.read_head():
        return
    c.accept_101()
    f = c.read_frame(10)
    while f is not None and f.opcode != wsproto.OP_CLOSE:
        f = c.read_frame(10)
    if f is None:
        return
    for i in range(8):
        c.send(wsproto.encode_frame(wsproto.OP_TEXT, b"part %d" % i,
                                    mask=False))
        time.sleep(1)
    c.send(wsproto.encode_frame(wsproto.OP_CLOSE, f.payload, mask=False))
    c.drain(10)


def test_a_side_still_sending_before_its_answer_is_not_cut_off(factory):
    gw = gateway(factory, finish_then_answer)
    c = gw.raw()
    c.upgrade("/c")
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(4000, b"bye"))
    f, others = c.read_close(BOUND)
    assert [g.payload for g in others] == \
        [b"part %d" % i for i in range(8)], others
    assert f.close_code == 4000, f
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "client_closed" and e["close_code"] == 4000, e
    c.close()


SECRET = b"wsgate-close-wait-tests-hmac-secret-0123456789ab"


def test_token_expiring_while_a_client_close_waits(factory, tmp_path):
    """The token runs out while the client's close waits for the
    upstream's answer: the client gets 1008, the upstream no second close
    frame, and the log says token_expired."""
    key = tmp_path / "hmac.secret"
    key.write_bytes(SECRET)
    up = factory.raw_upstream(mute_after_101)
    gw = factory.gateway(
        routes=[("/c", "c", "jwt")], upstreams={"c": [up.addr]},
        policies={"jwt": policy(
            timeouts={"idle": IDLE},
            auth={"header": "Authorization", "on_expiry": "close",
                  "jwt": {"algorithms": ["HS256"], "key_file": str(key),
                          "leeway": "0s"}})})
    tok = jwt.encode({"sub": "eve", "exp": int(time.time()) + 2}, SECRET,
                     algorithm="HS256")
    c = gw.raw()
    c.upgrade("/c", extra=[("Authorization", "Bearer " + tok)])
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(4000, b"bye"))
    (uc,) = up.wait_conns(1)
    f, others = c.read_close(BOUND)
    assert f.close_code == 1008 and not others, (f, others)
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("token_expired", 1008), e
    assert uc.done.wait(10), "upstream connection still open"
    got, rest = frames_to_upstream(uc)
    assert got == [(wsproto.OP_CLOSE, 4000)] and not rest, (got, rest)
    c.close()


def answer_close(code, reason):
    """A 101; on a close frame, answer with a close of code, keep reading."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        f = c.read_frame(10)
        while f is not None and f.opcode != wsproto.OP_CLOSE:
            f = c.read_frame(10)
        if f is None:
            return
        c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(code, reason),
                                    mask=False))
        c.drain(BOUND + 30)
    return behavior


TAKEN_OVER = "TLS records now sealed and opened by wsgate"


def tls_close_then_notify(gw, layer, fin, keylog):
    """Open /c over TLS 1.3 on the record layer asked for ("wsgate" or
    "openssl"), or over TLS 1.2; send a close frame (4002) and the
    close_notify behind it in one segment, then FIN if fin; read until
    the gateway's close_notify.  Returns (client, frames read, whether
    the close_notify came, whether the TCP connection ended after it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = \
        ssl.TLSVersion.TLSv1_2 if layer == "tls12" else \
        ssl.TLSVersion.TLSv1_3
    ctx.keylog_filename = str(keylog)
    c = RecordClient(gw.port, ctx)
    c.handshake()
    req = rawclient.build_request("/c")
    close = wsproto.encode_frame(wsproto.OP_CLOSE,
                                 wsproto.close_payload(4002, b"bye"))
    if layer == "openssl":
        # A KeyUpdate before the request keeps the session with OpenSSL
        # (tls13_takeover()); the client's records are sealed by hand.
        s = Sealer(keylog, 0)
        ku = s.seal(b"\x18\x00\x00\x01\x00", 22)
        s.update()
        c.sock.sendall(c.out.read() + ku + s.seal(req, 23))
    else:
        c.write(req)
        c.flush()
    assert upgrade(c).status == 101
    if layer == "wsgate":
        wait_for(lambda: TAKEN_OVER in gw.error_text(),
                 what="the record layer's takeover")
    if layer == "openssl":
        c.sock.sendall(s.seal(close, 23) + s.seal(b"\x01\x00", 21))
    else:
        c.write(close)
        try:
            c.tls.unwrap()
        except ssl.SSLWantReadError:
            pass
        c.flush()
    if fin:
        c.sock.shutdown(socket.SHUT_WR)
    notified = c.read_to_close_notify(BOUND)
    ended = False
    if notified:
        c.sock.settimeout(10)
        try:
            ended = c.sock.recv(1) == b""
        except OSError:
            pass
    if layer == "openssl":
        assert TAKEN_OVER not in gw.error_text()
    return c, frames_in(c.buf)[0], notified, ended


def client_closed_4002(gw, c):
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 4002), e
    (uc,) = gw.up.connections()
    assert uc.done.wait(10), "upstream connection still open"
    got, rest = frames_to_upstream(uc)
    assert got[-1:] == [(wsproto.OP_CLOSE, 4002)] and not rest, (got, rest)


@pytest.mark.parametrize("fin", [False, True], ids=["notify", "notify_fin"])
@pytest.mark.parametrize("layer", ["wsgate", "openssl"])
def test_tls13_close_then_close_notify_gets_the_answer(factory, tmp_path,
                                                      layer, fin):
    """RFC 8446 6.1 lets a TLS 1.3 client end its side and go on reading:
    the upstream's answer (4100) reaches it before our close_notify, and
    the connection closes after that."""
    gw = gateway(factory, answer_close(4100, b"up"))
    c, got, notified, ended = tls_close_then_notify(gw, layer, fin,
                                                   tmp_path / "keylog")
    try:
        assert [(f.opcode, f.close_code) for f in got] == \
            [(wsproto.OP_CLOSE, 4100)], got
        assert notified and ended, (notified, ended)
        client_closed_4002(gw, c)
    finally:
        c.close()


@pytest.mark.parametrize("layer", ["wsgate", "openssl"])
def test_tls13_close_then_close_notify_unanswered(factory, tmp_path,
                                                  layer):
    """The upstream never answers: once the close wait is over the client
    gets its own code back, then our close_notify."""
    gw = gateway(factory, mute_after_101)
    c, got, notified, ended = tls_close_then_notify(gw, layer, True,
                                                   tmp_path / "keylog")
    try:
        assert [(f.opcode, f.close_code) for f in got] == \
            [(wsproto.OP_CLOSE, 4002)], got
        assert notified and ended, (notified, ended)
        client_closed_4002(gw, c)
    finally:
        c.close()


def test_tls12_close_then_close_notify_is_answered_at_once(factory,
                                                          tmp_path):
    """TLS 1.2 has the close_notify answered at once, pending writes
    dropped (RFC 5246 7.2.1): no close frame before it."""
    gw = gateway(factory, answer_close(4100, b"up"))
    c, got, notified, ended = tls_close_then_notify(gw, "tls12", False,
                                                   tmp_path / "keylog")
    try:
        assert got == [] and notified, (got, notified)
        client_closed_4002(gw, c)
    finally:
        c.close()


@pytest.mark.parametrize("answered", [True, False],
                         ids=["answered", "unanswered"])
def test_plain_close_then_fin_gets_the_answer(factory, answered):
    """A ws:// client that half-closes TCP (shutdown(SHUT_WR)) right
    behind its close frame still reads: the upstream's answer (4100), or
    its own code once the close wait is over, reaches it before the
    gateway's FIN, as over TLS 1.3 after a close_notify."""
    gw = gateway(factory, answer_close(4100, b"up") if answered else
                 mute_after_101, tls=False)
    c = gw.raw()
    try:
        c.upgrade("/c")
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(4002, b"bye"))
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(BOUND), "session still open after the close"
        got = frames_in(c.buf)[0]
        assert [(f.opcode, f.close_code) for f in got] == \
            [(wsproto.OP_CLOSE, 4100 if answered else 4002)], bytes(c.buf)
        client_closed_4002(gw, c)
    finally:
        c.close()
