"""Features that are each tested alone, meeting in one open session:
what the client gets (close code), the access-log reason, and the bytes
that reached the backend when a refusal, an expiry, a drain or a reload
comes in the middle of something else.
"""

import signal
import time

import jwt
import pytest

import rawclient
import wsproto
from conftest import policy

B = rawclient.build_request
T, C, BIN = wsproto.OP_TEXT, wsproto.OP_CONT, wsproto.OP_BINARY
PING, PONG, CLOSE = wsproto.OP_PING, wsproto.OP_PONG, wsproto.OP_CLOSE
SECRET = b"wsgate-interplay-tests-hmac-secret-0123456789abcdef"


def echo_reading_on(c):
    """ws_echo, but an echo the gateway no longer takes does not stop it
    reading (and recording) what the gateway sent it, to EOF."""
    if not c.read_head():
        return
    c.accept_101()
    end = time.monotonic() + 10.0
    while True:
        f = c.read_frame(max(0.01, end - time.monotonic()))
        if f is None:
            return
        if f.opcode in (BIN, T, C):
            try:
                c.send(wsproto.encode_frame(f.opcode, f.payload, fin=f.fin,
                                            mask=False))
            except OSError:
                pass


def test_refusal_while_backend_sends_still_reaches_backend(factory):
    """The client breaks a rule while the backend, busy echoing a large
    message, is not reading: the gateway closes, and what it still owes
    the backend (the frames before the violation, then close 1001) must
    not be lost to a reset when it stops lingering on the backend's echo
    (a close(2) with unread input resets, and the kernel drops what it
    had yet to send)."""
    up = factory.raw_upstream(echo_reading_on)
    gw = factory.gateway(routes=[("/echo", "rec", "big")],
                         upstreams={"rec": [up.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "1MiB",
                             "max_message_size": "4MiB"})})
    c = gw.raw()
    msg = b"m" * (1 << 20)
    try:
        c.upgrade("/echo")
        (uc,) = up.wait_conns(1)
        c.send(wsproto.encode_frame(BIN, msg) * 4 +
               wsproto.encode_frame(T, b"bad", rsv=4))
        f, _ = c.read_close(10)
        assert f.close_code == 1002, f
        assert uc.done.wait(10), "gateway left the upstream connection open"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("protocol_error", 1002), e
    got = [(fr.opcode, len(fr.payload)) for fr in uc.frames]
    assert got[:4] == [(BIN, len(msg))] * 4, got
    assert [fr.close_code for fr in uc.close_frames()] == [1001], got


# -- one gateway: deny_regex, small limits, JWT, message rate ---------------

@pytest.fixture(scope="module")
def gw(module_factory, tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "hmac.secret"
    key.write_bytes(SECRET)
    up = module_factory.raw_upstream()
    auth = {"header": "Authorization",
            "jwt": {"algorithms": ["HS256"], "key_file": str(key),
                    "leeway": "0s"},
            "on_expiry": "close"}
    small = {"max_frame_size": "1KiB", "max_message_size": "1KiB"}
    deny = {"deny_regex": ["forbidden"]}
    g = module_factory.gateway(
        routes=[("/held", "rec", "held"), ("/plain", "rec", "plain"),
                ("/jwt-held", "rec", "jh"), ("/jwt", "rec", "jp"),
                ("/rate-held", "rec", "rh")],
        upstreams={"rec": [up.addr]},
        policies={
            "held": policy(frames=small, messages=deny),
            "plain": policy(frames=small),
            "jh": policy(auth=auth, messages=deny),
            "jp": policy(auth=auth),
            "rh": policy(messages=deny, rate_limit={
                "messages_per_connection": {"rate": "1/s", "burst": 3}}),
        })
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def token(seconds):
    return jwt.encode({"sub": "bob", "exp": int(time.time()) + seconds},
                      SECRET, algorithm="HS256")


def opened(gw, up, path, token=None):
    """An upgraded raw client on path and its upstream connection."""
    extra = [("Authorization", "Bearer " + token)] if token else []
    c = gw.raw()
    c.send(B(path, extra=extra))
    head = c.read_until(b"\r\n\r\n", 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    (uc,) = up.wait_conns(1)
    return c, uc


def closed(gw, c, uc, code, reason, up_code=1001, never=()):
    """The client gets close code, the log says reason, the backend gets
    close up_code and none of the never pieces."""
    f, others = c.read_close(8)
    assert f.close_code == code, (f, others)
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == (reason, code), e
    assert uc.done.wait(5), "upstream connection left open"
    assert [x.close_code for x in uc.close_frames()] == [up_code], uc.frames
    for piece in never:
        assert piece not in uc.payloads(), uc.frames


def message(c, timeout=5):
    """The next data message the client gets, reassembled."""
    got = b""
    while True:
        f = c.read_frame(timeout)
        assert f is not None, "connection ended"
        if f.opcode in (PING, PONG):
            continue
        got += f.payload
        if f.fin:
            return got


def test_token_expiring_while_a_message_is_held(gw, up):
    c, uc = opened(gw, up, "/jwt-held", token(2))
    c.send_frame(T, b"HELD-PART", fin=False)
    closed(gw, c, uc, 1008, "token_expired", never=[b"HELD-PART"])


def test_token_expiring_while_a_message_is_half_relayed(gw, up):
    c, uc = opened(gw, up, "/jwt", token(2))
    c.send_frame(T, b"first half", fin=False)
    closed(gw, c, uc, 1008, "token_expired")
    assert uc.frames[0].payload == b"first half" and not uc.frames[0].fin


def test_message_rate_hit_by_pings_inside_a_held_message(gw, up):
    c, uc = opened(gw, up, "/rate-held")
    c.send_frame(T, b"HELD-RATE", fin=False)
    for p in (b"p1", b"p2", b"p3"):
        c.send_frame(PING, p)
    closed(gw, c, uc, 1008, "rate_messages", never=[b"HELD-RATE"])


def test_ping_between_held_fragments_goes_first(gw, up):
    c, uc = opened(gw, up, "/held")
    try:
        c.send_frame(T, b"x\xe2\x82", fin=False)
        c.send_frame(PING, b"pp")
        c.send_frame(C, b"", fin=False)
        c.send_frame(C, b"\xacy", fin=True)
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (PONG, b"pp"), f
        assert message(c) == "x\u20acy".encode()
    finally:
        c.close()


def test_close_between_held_fragments_drops_the_message(gw, up):
    c, uc = opened(gw, up, "/held")
    c.send_frame(T, b"HELD-CLOSE", fin=False)
    c.send_frame(CLOSE, wsproto.close_payload(1000))
    closed(gw, c, uc, 1000, "client_closed", up_code=1000,
           never=[b"HELD-CLOSE"])


def test_bad_close_reason_between_held_fragments(gw, up):
    c, uc = opened(gw, up, "/held")
    c.send_frame(T, b"HELD-BAD", fin=False)
    c.send_frame(CLOSE, wsproto.close_payload(1000) + b"\xff")
    closed(gw, c, uc, 1007, "invalid_utf8", never=[b"HELD-BAD"])


@pytest.mark.parametrize("path", ["/held", "/plain"])
def test_fragments_summing_to_max_message_size(gw, up, path):
    c, uc = opened(gw, up, path)
    try:
        c.send_frame(T, b"a" * 512, fin=False)
        c.send_frame(PING, b"pp")
        c.send_frame(C, b"b" * 512, fin=True)
        assert message(c) == b"a" * 512 + b"b" * 512
    finally:
        c.close()


@pytest.mark.parametrize("path", ["/held", "/plain"])
def test_fragments_one_byte_over_max_message_size(gw, up, path):
    c, uc = opened(gw, up, path)
    c.send_frame(T, b"a" * 512, fin=False)
    c.send_frame(C, b"b" * 513, fin=True)
    # a held message never reaches the backend; a relayed one has its
    # first fragment there already, and never the refused one
    closed(gw, c, uc, 1009, "message_too_large",
           never=[b"a" * 512] if path == "/held" else [b"b" * 64])


@pytest.mark.parametrize("last", [b"(", b""])
def test_code_point_split_across_held_fragments_is_checked(gw, up, last):
    c, uc = opened(gw, up, "/held")
    c.send_frame(T, b"HELD-UTF\xc3", fin=False)
    c.send_frame(C, last, fin=True)
    closed(gw, c, uc, 1007, "invalid_utf8", never=[b"HELD-UTF"])


def test_refusal_leaves_other_sessions_alone(gw, up):
    a, _ = opened(gw, up, "/held")
    up.clear()
    b, _ = opened(gw, up, "/held")
    try:
        a.send_frame(T, b"forbidden")
        b.send_frame(T, b"fine")
        assert message(b) == b"fine"
        assert a.read_close(5)[0].close_code == 1008
        b.send_frame(T, b"still fine")
        assert message(b) == b"still fine"
    finally:
        a.close()
        b.close()


# -- drain and reload under open sessions ------------------------------------

def test_drain_while_a_message_is_held(factory):
    up = factory.raw_upstream()
    g = factory.gateway(routes=[("/held", "rec", "held")],
                        upstreams={"rec": [up.addr]},
                        policies={"held": policy(
                            messages={"deny_regex": ["zzz"]})},
                        top={"shutdown_timeout": "3s"})
    c, uc = opened(g, up, "/held")
    c.send_frame(T, b"HELD-DRAIN", fin=False)
    time.sleep(0.3)         # the gateway holds it by now
    g.proc.send_signal(signal.SIGTERM)
    f, _ = c.read_close(8)
    assert (f.close_code, f.close_reason) == (1001, b"shutdown"), f
    c.send_frame(CLOSE, wsproto.close_payload(1001))
    assert c.wait_closed(5)
    c.close()
    assert g.proc.wait(8) == 0
    e = g.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("shutdown", 1001), e
    assert uc.done.wait(5)
    assert [x.close_code for x in uc.close_frames()] == [1001], uc.frames
    assert b"HELD-DRAIN" not in uc.payloads()


def test_reload_keeps_the_policy_of_open_sessions(factory):
    up = factory.raw_upstream()
    old = policy(frames={"max_message_size": "1KiB"},
                 messages={"deny_regex": ["forbidden"]})
    new = policy(frames={"max_message_size": "4KiB"},
                 messages={"deny_regex": ["allowed"]})
    g = factory.gateway(routes=[("/p", "rec", "p")],
                        upstreams={"rec": [up.addr]}, policies={"p": old})
    c, uc = opened(g, up, "/p")
    c.send_frame(T, b"hello")
    assert message(c) == b"hello"
    g.write_policy("p", new)
    g.reload()
    # the open session keeps the old policy
    c.send_frame(T, b"allowed")
    assert message(c) == b"allowed"
    c.send_frame(T, b"x" * 2000)
    closed(g, c, uc, 1009, "message_too_large")
    # a new one has the new one
    up.clear()
    c, uc = opened(g, up, "/p")
    c.send_frame(T, b"x" * 2000)
    assert message(c) == b"x" * 2000
    c.send_frame(T, b"forbidden")
    assert message(c) == b"forbidden"
    c.send_frame(T, b"allowed")
    closed(g, c, uc, 1008, "content_denied", never=[b"allowed"])
