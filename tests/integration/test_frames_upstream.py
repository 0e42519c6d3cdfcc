"""SPEC second table, upstream side: a deliberately broken upstream that
completes a correct 101 and then misbehaves.  The client gets close 1014,
the upstream (the side concerned) gets the table's close code, the access
log names the violation and that code, and the offending bytes never reach
the client.

One gateway for the module; its "broken" upstream's behaviour is swapped
per test.  The last test checks the gateway still relays.
"""

import asyncio

import pytest

import rawup
import wsproto
from conftest import policy, run

MARK = b"UPSTREAM-OFFENDING"
enc = wsproto.encode_frame
T, BIN = wsproto.OP_TEXT, wsproto.OP_BINARY


@pytest.fixture(scope="module")
def gw(module_factory):
    broken = module_factory.raw_upstream()
    echo = module_factory.raw_upstream(rawup.ws_echo)
    g = module_factory.gateway(
        routes=[("/echo", "echo"), ("/broken/*", "broken", "limits"),
                ("/nobin/*", "broken", "nobin")],
        upstreams={"echo": [echo.addr], "broken": [broken.addr]},
        policies={"limits": policy(frames={"max_frame_size": "1KiB",
                                           "max_message_size": "4KiB"}),
                  "nobin": policy(frames={"allow_binary": False})})
    g.broken = broken
    return g


# SPEC second table: the close code of each violation, sent to the upstream
# that broke the rule and written to the access log.
UP_CODES = {"protocol_error": 1002, "frame_too_large": 1009,
            "message_too_large": 1009, "invalid_utf8": 1007,
            "binary_denied": 1003}


def upstream_violation(gw, after, reason, then="read", code=1014,
                       path="/broken/x"):
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(after, then=then)
    c = gw.raw()
    try:
        c.upgrade(path)
        f, others = c.read_close(timeout=5)
        assert f.close_code == code, (f, others)
        for o in others:
            assert MARK not in o.payload, others
        assert c.wait_closed(5), "TCP left open after the close frame"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason, e
    assert e["status"] == 101, e
    assert e["upstream"] == "broken", e
    (uc,) = gw.broken.connections()
    assert uc.done.wait(5), "gateway left the broken upstream open"
    if reason in UP_CODES:
        assert e["close_code"] == UP_CODES[reason], e
        sent = [(cf.close_code, cf.masked) for cf in uc.close_frames()]
        assert sent == [(UP_CODES[reason], True)], uc.frames
    return e, uc


CASES = {
    "masked_frame": enc(T, MARK, mask=True),
    "rsv1": enc(T, MARK, mask=False, rsv=4),
    "rsv2": enc(BIN, MARK, mask=False, rsv=2),
    "opcode_3": enc(3, MARK, mask=False),
    "opcode_0xC": enc(0xC, MARK, mask=False),
    "ping_126": enc(wsproto.OP_PING, MARK + b"x" * (126 - len(MARK)),
                    mask=False),
    "ping_fragmented": enc(wsproto.OP_PING, MARK, fin=False, mask=False),
    "continuation_without_message": enc(wsproto.OP_CONT, MARK, mask=False),
    "non_minimal_length": enc(T, MARK, mask=False, length_form=16),
    "close_1005": enc(wsproto.OP_CLOSE, wsproto.close_payload(1005),
                      mask=False),
    "close_1_byte": enc(wsproto.OP_CLOSE, b"\x03", mask=False),
    "new_text_mid_message": enc(T, b"first", fin=False, mask=False) +
    enc(T, MARK, mask=False),
    "length_top_bit": enc(BIN, b"", mask=False, length_form=64,
                          declared_len=1 << 63) + MARK,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_upstream_protocol_error(gw, case):
    upstream_violation(gw, CASES[case], "protocol_error")


def test_upstream_frame_too_large_from_header(gw):
    data = enc(BIN, MARK, mask=False, declared_len=4096)
    upstream_violation(gw, data, "frame_too_large")


def test_upstream_invalid_utf8(gw):
    upstream_violation(gw, enc(T, b"\xff\xfe" + MARK, mask=False),
                       "invalid_utf8")


def test_upstream_invalid_utf8_split_across_fragments(gw):
    upstream_violation(gw, enc(T, b"ok\xe2\x82", fin=False, mask=False) +
                       enc(wsproto.OP_CONT, b"\x28" + MARK, mask=False),
                       "invalid_utf8")


def test_upstream_invalid_utf8_close_reason(gw):
    upstream_violation(gw, enc(wsproto.OP_CLOSE,
                               wsproto.close_payload(1000, b"\xff" + MARK),
                               mask=False), "invalid_utf8")


def test_upstream_message_too_large(gw):
    part = b"u" * 1000
    data = enc(BIN, part, fin=False, mask=False)
    for _ in range(3):
        data += enc(wsproto.OP_CONT, part, fin=False, mask=False)
    data += enc(wsproto.OP_CONT, MARK + part[len(MARK):], mask=False)
    upstream_violation(gw, data, "message_too_large")


def test_upstream_binary_denied(gw):
    """allow_binary: false holds for a binary message from the upstream
    too (wsgate-policy.5 names no direction): the text before it reaches
    the client, then 1014; the upstream gets 1003 binary_denied."""
    e, _ = upstream_violation(gw, enc(T, b"text is fine", mask=False) +
                              enc(BIN, MARK, fin=False, mask=False),
                              "binary_denied", path="/nobin/x")
    assert e["frames_out"] == 1, e


def test_upstream_drop_without_close(gw):
    e, _ = upstream_violation(gw, b"", "upstream_error", then="drop")
    assert e["close_code"] == 1014, e


def test_upstream_drop_after_data(gw):
    # data already sent is delivered, then 1014
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(enc(T, b"last words", mask=False),
                                       then="drop")
    c = gw.raw()
    try:
        c.upgrade("/broken/y")
        f, others = c.read_close(timeout=5)
    finally:
        c.close()
    assert [o.payload for o in others] == [b"last words"], others
    assert f.close_code == 1014, f
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "upstream_error", e


def test_normal_echo_still_works(gw):
    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("still alive")
            assert await asyncio.wait_for(ws.recv(), 5) == "still alive"
    run(go())
    assert gw.alive()
