"""SPEC second table, client side: raw invalid frames over TLS after a
proper handshake.  The client must get the close code, the access log the
reason, and the backend a close 1001 without the offending payload.

One gateway for the module; the last test checks it still relays.
"""

import asyncio

import pytest

import wsproto
from conftest import policy, run

MARK = b"OFFENDING-PAYLOAD"
T, BIN, C, CONT = wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_CLOSE, \
    wsproto.OP_CONT
enc = wsproto.encode_frame


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/echo", "rec", "limits"), ("/nobin", "rec", "nobin"),
                ("/anytext", "rec", "anytext")],
        upstreams={"rec": [up.addr]},
        policies={
            "limits": policy(frames={"max_frame_size": "1KiB",
                                     "max_message_size": "4KiB"}),
            "nobin": policy(frames={"allow_binary": False}),
            "anytext": policy(frames={"validate_utf8": False}),
        })
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def violation(gw, up, data, code, reason, path="/echo", mark=MARK):
    """Upgrade, send data raw, expect close `code` and log `reason`."""
    up.clear()
    c = gw.raw()
    try:
        c.upgrade(path)
        (uc,) = up.wait_conns(1)
        c.send(data)
        f, others = c.read_close(timeout=5)
        assert f.close_code == code, (f, others)
        assert not f.masked, "gateway masked a frame to the client"
        assert c.wait_closed(5), "TCP left open after the close frame"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason, e
    assert e["close_code"] == code, e
    assert e["status"] == 101, e
    # the backend is told the client went away, and never sees the payload
    assert uc.done.wait(5), "gateway left the upstream connection open"
    closes = uc.close_frames()
    assert [cf.close_code for cf in closes] == [1001], uc.frames
    if mark:
        assert mark not in uc.payloads(), uc.frames
        assert mark not in uc.data
    return uc


CASES = {
    "unmasked": enc(T, MARK, mask=False),
    "rsv1": enc(T, MARK, rsv=4),
    "rsv3": enc(T, MARK, rsv=1),
    "opcode_3": enc(3, MARK),
    "opcode_0xB": enc(0xB, MARK),
    "ping_126": enc(wsproto.OP_PING, MARK + b"p" * (126 - len(MARK))),
    "ping_fragmented": enc(wsproto.OP_PING, MARK, fin=False),
    "pong_fragmented": enc(wsproto.OP_PONG, MARK, fin=False),
    "continuation_without_message": enc(CONT, MARK),
    "new_text_mid_message": enc(T, b"first", fin=False) + enc(T, MARK),
    "new_binary_mid_message": enc(BIN, b"first", fin=False) + enc(BIN, MARK),
    "non_minimal_16": enc(T, MARK, length_form=16),
    "non_minimal_64": enc(T, MARK + b"x" * 200, length_form=64),
    "length_top_bit": enc(BIN, MARK, length_form=64,
                          declared_len=1 << 63)[:14] + MARK,
    "close_1005": enc(C, wsproto.close_payload(1005)),
    "close_1006": enc(C, wsproto.close_payload(1006)),
    "close_999": enc(C, wsproto.close_payload(999)),
    "close_5000": enc(C, wsproto.close_payload(5000)),
    "close_1_byte": enc(C, b"\x03"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_protocol_error_1002(gw, up, case):
    mark = None if case.startswith("close") else MARK
    violation(gw, up, CASES[case], 1002, "protocol_error", mark=mark)


def test_frame_too_large_from_header_alone(gw, up):
    # 2 KiB announced with a 1 KiB limit; only 16 payload bytes are sent,
    # so the close must come from the header alone.
    data = enc(BIN, MARK, declared_len=2048)
    violation(gw, up, data[:6 + len(MARK)], 1009, "frame_too_large")


def test_frame_too_large_whole(gw, up):
    violation(gw, up, enc(T, MARK + b"a" * 2048), 1009, "frame_too_large")


def test_message_too_large_via_fragments(gw, up):
    part = b"b" * 1000
    data = enc(BIN, part, fin=False)
    for _ in range(3):
        data += enc(CONT, part, fin=False)
    data += enc(CONT, MARK + part[len(MARK):], fin=True)     # 5000 > 4 KiB
    violation(gw, up, data, 1009, "message_too_large")


def test_invalid_utf8_text(gw, up):
    violation(gw, up, enc(T, b"\xc3\x28" + MARK), 1007, "invalid_utf8")


def test_validate_utf8_false_relays_invalid_text(gw, up):
    """With validate_utf8: false text is not checked, either way."""
    bad = b"\xc3\x28" + MARK + b"\xed\xa0\x80"
    c = gw.raw()
    try:
        c.upgrade("/anytext")
        (uc,) = up.wait_conns(1)
        c.send(enc(T, bad))
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (T, bad), f
        c.send(enc(C, wsproto.close_payload(1000)))
        f, _ = c.read_close(5)
        assert f.close_code == 1000, f
    finally:
        c.close()
    assert bad in uc.payloads(), uc.frames
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (101, "client_closed"), e


def test_frames_before_a_violation_reach_the_backend(gw, up):
    """Whole frames that arrive in the same read as a bad one are relayed
    first, in order and intact; the bad one never is."""
    good = [b"one", b"two" * 100, "thr\u00e9e".encode(), b"", b"5" * 125]
    data = b"".join(enc(T, g) for g in good) + enc(T, b"\xc3\x28" + MARK)
    uc = violation(gw, up, data, 1007, "invalid_utf8")
    got = [f.payload for f in uc.frames if f.opcode == T]
    assert got == good, uc.frames


def test_invalid_utf8_split_across_fragments(gw, up):
    # a valid start of a 3-byte sequence, then a bad continuation byte
    data = enc(T, b"ok\xe2\x82", fin=False) + enc(CONT, b"\x28" + MARK)
    violation(gw, up, data, 1007, "invalid_utf8")


def test_truncated_utf8_at_message_end(gw, up):
    violation(gw, up, enc(T, b"abc\xe2\x82"), 1007, "invalid_utf8",
              mark=None)


def test_overlong_and_surrogate_utf8(gw, up):
    violation(gw, up, enc(T, b"\xc0\xaf" + MARK), 1007, "invalid_utf8")
    violation(gw, up, enc(T, b"\xed\xa0\x80" + MARK), 1007, "invalid_utf8")


def test_invalid_utf8_close_reason(gw, up):
    violation(gw, up, enc(C, wsproto.close_payload(1000, b"\xff" + MARK)),
              1007, "invalid_utf8")


def test_binary_denied(gw, up):
    violation(gw, up, enc(BIN, MARK), 1003, "binary_denied", path="/nobin")


def test_binary_denied_even_fragmented(gw, up):
    violation(gw, up, enc(BIN, MARK, fin=False), 1003, "binary_denied",
              path="/nobin")


def test_valid_frames_pass_on_limited_route(gw, up):
    # the edge values are allowed: a 1 KiB frame, a 4 KiB message in
    # fragments, valid UTF-8 split inside a code point, ping of 125 bytes
    c = gw.raw()
    try:
        c.upgrade("/echo")
        c.send(enc(BIN, b"z" * 1024))
        assert c.read_frame(5).payload == b"z" * 1024
        frags = [enc(BIN, b"q" * 1024, fin=False),
                 enc(CONT, b"q" * 1024, fin=False),
                 enc(CONT, b"q" * 1024, fin=False),
                 enc(CONT, b"q" * 1024, fin=True)]
        c.send(b"".join(frags))
        got = b""
        for _ in range(4):
            got += c.read_frame(5).payload
        assert got == b"q" * 4096
        c.send(enc(T, "h\u00e9".encode()[:2], fin=False) +
               enc(CONT, "h\u00e9".encode()[2:], fin=True))
        got = c.read_frame(5).payload + c.read_frame(5).payload
        assert got.decode() == "h\u00e9"
        c.send(enc(wsproto.OP_PING, b"p" * 125))
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (wsproto.OP_PONG, b"p" * 125)
        c.send(enc(C, wsproto.close_payload(1000, "done \u2713")))
        f, _ = c.read_close(5)
        assert f.close_code == 1000
    finally:
        c.close()


def test_normal_echo_still_works(gw, up):
    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("still alive")
            assert await asyncio.wait_for(ws.recv(), 5) == "still alive"
    run(go())
    assert gw.alive()
