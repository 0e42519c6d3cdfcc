"""SPEC second table, edges the other frame tests leave out, both ways:
every class of invalid close code, valid ones relayed, UTF-8 errors split
across fragments, max_frame_size / max_message_size exactly at and one byte
over on the inspected (text) path, frames after a close frame, and control
frames inside a fragmented message from the upstream.
"""


import pytest

import rawup
import wsproto
from conftest import policy

MARK = b"EDGE-OFFENDING"
enc = wsproto.encode_frame
T, BIN, C, CONT = wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_CLOSE, \
    wsproto.OP_CONT
PING, PONG = wsproto.OP_PING, wsproto.OP_PONG


def echo_client(gw):
    """A raw client upgraded on /c, the recording upstream echoing."""
    gw.rec.clear()
    gw.rec.behavior = rawup.ws_echo
    c = gw.raw()
    try:
        c.upgrade("/c")
    except BaseException:
        c.close()
        raise
    return c


@pytest.fixture(scope="module")
def gw(module_factory):
    rec = module_factory.raw_upstream()
    broken = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/c", "rec", "limits"), ("/u/*", "broken", "limits")],
        upstreams={"rec": [rec.addr], "broken": [broken.addr]},
        policies={"limits": policy(frames={"max_frame_size": "1KiB",
                                           "max_message_size": "4KiB"})})
    g.rec = rec
    g.broken = broken
    return g


def client_violation(gw, data, code, reason, mark=MARK):
    up = gw.rec
    up.clear()
    c = gw.raw()
    try:
        c.upgrade("/c")
        (uc,) = up.wait_conns(1)
        c.send(data)
        f, others = c.read_close(timeout=5)
        assert f.close_code == code, (f, others)
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == (reason, code), e
    assert uc.done.wait(5)
    assert [cf.close_code for cf in uc.close_frames()] == [1001], uc.frames
    if mark:
        # the gateway masks with keys of its own: the payloads, unmasked,
        # are where a relayed mark would show
        assert mark not in uc.payloads(), uc.frames
        assert mark not in uc.data
    return uc


def upstream_violation(gw, after, code, reason, mark=MARK):
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(after)
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        f, others = c.read_close(timeout=5)
        assert f.close_code == 1014, (f, others)
        if mark:
            for o in others:
                assert mark not in o.payload, others
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == (reason, code), e
    (uc,) = gw.broken.connections()
    assert uc.done.wait(5)
    assert [(cf.close_code, cf.masked) for cf in uc.close_frames()] == \
        [(code, True)], uc.frames
    return others


BAD_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
             65535]
GOOD_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
              1013, 1014, 3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", BAD_CODES)
def test_client_bad_close_code(gw, code):
    client_violation(gw, enc(C, wsproto.close_payload(code, b"r")), 1002,
                     "protocol_error", mark=None)


@pytest.mark.parametrize("code", BAD_CODES)
def test_upstream_bad_close_code(gw, code):
    upstream_violation(gw, enc(C, wsproto.close_payload(code, b"r"),
                               mask=False), 1002, "protocol_error",
                       mark=None)


# A one-byte close payload holds half a code: 1002, whatever that byte
# would make of a code (0x0f.. would be in 3000-4999).
@pytest.mark.parametrize("byte", [b"\x03", b"\x0f"])
def test_client_one_byte_close_payload(gw, byte):
    client_violation(gw, enc(C, byte), 1002, "protocol_error", mark=None)


@pytest.mark.parametrize("byte", [b"\x03", b"\x0f"])
def test_upstream_one_byte_close_payload(gw, byte):
    upstream_violation(gw, enc(C, byte, mask=False), 1002, "protocol_error",
                       mark=None)


@pytest.mark.parametrize("code", GOOD_CODES)
def test_client_good_close_code_relayed(gw, code):
    c = echo_client(gw)
    try:
        c.send(enc(C, wsproto.close_payload(code, "bye \u2713")))
        f, _ = c.read_close(5)
        assert f.close_code == code, f
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", code), e


@pytest.mark.parametrize("code", GOOD_CODES)
def test_upstream_good_close_code_relayed(gw, code):
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(
        enc(C, wsproto.close_payload(code, "bye \u2713"), mask=False))
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        f, _ = c.read_close(5)
        assert f.close_code == code, f
        c.send(enc(C, f.payload))
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("upstream_closed", code), e


CLOSE_125 = wsproto.close_payload(4000, ("r" * 120 + "\u2713").encode())


def test_client_close_of_125_bytes_relayed_whole(gw):
    """RFC 6455 5.5: a control frame carries up to 125 bytes.  A close
    frame of exactly that, a code and a reason ending in a multi-byte
    character, reaches the upstream byte for byte, and its answer the
    client."""
    assert len(CLOSE_125) == 125
    c = echo_client(gw)
    try:
        c.send(enc(C, CLOSE_125))
        f, _ = c.read_close(5)
        assert f.payload == CLOSE_125, f
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 4000), e
    (uc,) = gw.rec.connections()
    assert [cf.payload for cf in uc.close_frames()] == [CLOSE_125], uc.frames


@pytest.mark.parametrize("payload", [b"", CLOSE_125],
                         ids=["empty", "125_bytes"])
def test_upstream_close_at_the_payload_limits_relayed_whole(gw, payload):
    """The upstream's close frame at either end of RFC 6455's range, no
    code at all (1005 in the log, RFC 6455 7.1.5) or 125 bytes, reaches
    the client unmasked and unchanged, and the client's answer the
    upstream."""
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(enc(C, payload, mask=False))
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        f, _ = c.read_close(5)
        assert (f.payload, f.masked) == (payload, False), f
        c.send(enc(C, payload))
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    code = 4000 if payload else 1005
    assert (e["reason"], e["close_code"]) == ("upstream_closed", code), e
    (uc,) = gw.broken.connections()
    assert uc.done.wait(5)
    assert [(cf.payload, cf.masked) for cf in uc.close_frames()] == \
        [(payload, True)], uc.frames


BAD_SPLIT = {
    "overlong_e0": (b"ab\xe0", b"\x80\x80" + MARK),
    "overlong_f0": (b"ab\xf0\x80", b"\x80\x80" + MARK),
    "surrogate": (b"ab\xed", b"\xa0\x80" + MARK),
    "above_10ffff": (b"ab\xf4\x90", b"\x80\x80" + MARK),
    "f5": (b"ab", b"\xf5\x80\x80\x80" + MARK),
    "lone_continuation": (b"ab\xc3\xa9", b"\xa9" + MARK),
    "truncated_then_ascii": (b"ab\xf0\x9f\x98", b"A" + MARK),
}


@pytest.mark.parametrize("case", sorted(BAD_SPLIT))
def test_client_bad_utf8_split(gw, case):
    a, b = BAD_SPLIT[case]
    client_violation(gw, enc(T, a, fin=False) + enc(CONT, b), 1007,
                     "invalid_utf8")


@pytest.mark.parametrize("case", sorted(BAD_SPLIT))
def test_upstream_bad_utf8_split(gw, case):
    a, b = BAD_SPLIT[case]
    upstream_violation(gw, enc(T, a, fin=False, mask=False) +
                       enc(CONT, b, mask=False), 1007, "invalid_utf8")


def test_code_point_split_three_ways_both_ways(gw):
    s = "x\U0001F600y\u00e9".encode()
    pieces = [s[:2], s[2:3], s[3:5], s[5:7], s[7:]]
    frames_c = b"".join(enc(T if i == 0 else CONT, p,
                            fin=i == len(pieces) - 1)
                        for i, p in enumerate(pieces))
    frames_u = b"".join(enc(T if i == 0 else CONT, p,
                            fin=i == len(pieces) - 1, mask=False)
                        for i, p in enumerate(pieces))
    c = echo_client(gw)
    try:
        c.send(frames_c)
        got = b"".join(c.read_frame(5).payload for _ in pieces)
        assert got == s
    finally:
        c.close()
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(frames_u)
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        got = b"".join(c.read_frame(5).payload for _ in pieces)
        assert got == s
    finally:
        c.close()


def test_client_text_frame_exactly_max_and_one_over(gw):
    c = echo_client(gw)
    try:
        c.send(enc(T, "\u00e9".encode() * 512))
        assert c.read_frame(5).payload == "\u00e9".encode() * 512
    finally:
        c.close()
    client_violation(gw, enc(T, MARK + b"a" * (1025 - len(MARK))), 1009,
                     "frame_too_large")


def test_client_binary_one_over(gw):
    client_violation(gw, enc(BIN, MARK + b"a" * (1025 - len(MARK))), 1009,
                     "frame_too_large")


def test_client_text_message_exactly_max_and_one_over(gw):
    gw.rec.clear()
    gw.rec.behavior = rawup.ws_echo
    part = b"t" * 1024
    c = gw.raw()
    try:
        c.upgrade("/c")
        c.send(enc(T, part, fin=False) + enc(CONT, part, fin=False) +
               enc(CONT, part, fin=False) + enc(CONT, part))
        got = b"".join(c.read_frame(5).payload for _ in range(4))
        assert got == part * 4
    finally:
        c.close()
    client_violation(gw, enc(T, part, fin=False) + enc(CONT, part, fin=False)
                     + enc(CONT, part, fin=False) + enc(CONT, part, fin=False)
                     + enc(CONT, MARK), 1009, "message_too_large")


def test_upstream_text_frame_exactly_max_and_one_over(gw):
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(enc(T, b"k" * 1024, mask=False))
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        assert c.read_frame(5).payload == b"k" * 1024
    finally:
        c.close()
    upstream_violation(gw, enc(T, MARK + b"k" * (1025 - len(MARK)),
                               mask=False), 1009, "frame_too_large")


def test_upstream_message_exactly_max_and_one_over(gw):
    part = b"m" * 1024
    ok = enc(T, part, fin=False, mask=False) + \
        enc(CONT, part, fin=False, mask=False) + \
        enc(CONT, part, fin=False, mask=False) + enc(CONT, part, mask=False)
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(ok)
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        got = b"".join(c.read_frame(5).payload for _ in range(4))
        assert got == part * 4
    finally:
        c.close()
    upstream_violation(gw, ok[:-len(enc(CONT, part, mask=False))] +
                       enc(CONT, part, fin=False, mask=False) +
                       enc(CONT, MARK, mask=False), 1009,
                       "message_too_large")


UP_PROTO = {
    "pong_fragmented": enc(PONG, MARK, fin=False, mask=False),
    "close_fragmented": enc(C, wsproto.close_payload(1000), fin=False,
                            mask=False),
    "close_126": enc(C, wsproto.close_payload(1000, MARK + b"x" * 110),
                     mask=False),
    "non_minimal_64": enc(BIN, MARK, mask=False, length_form=64),
    "rsv3": enc(T, MARK, mask=False, rsv=1),
    "opcode_0xF": enc(0xF, MARK, mask=False),
    "masked_ping": enc(PING, MARK, mask=True),
    "masked_close": enc(C, wsproto.close_payload(1000), mask=True),
    "new_binary_mid_text": enc(T, b"a", fin=False, mask=False) +
    enc(BIN, MARK, mask=False),
}


@pytest.mark.parametrize("case", sorted(UP_PROTO))
def test_upstream_more_protocol_errors(gw, case):
    upstream_violation(gw, UP_PROTO[case], 1002, "protocol_error",
                       mark=None if case == "masked_close" else MARK)


def test_client_frames_after_its_close_are_dropped(gw):
    c = echo_client(gw)
    try:
        (uc,) = gw.rec.wait_conns(1)
        c.send(enc(C, wsproto.close_payload(1000)) + enc(T, MARK) +
               enc(T, b"\xff") + enc(T, MARK, mask=False))
        f, others = c.read_close(5)
        assert f.close_code == 1000
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 1000), e
    assert uc.done.wait(5)
    assert MARK not in uc.data
    assert [f.opcode for f in uc.frames] == [C], uc.frames


def test_upstream_frames_after_its_close_are_dropped(gw):
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(
        enc(C, wsproto.close_payload(1000), mask=False) +
        enc(T, MARK, mask=False) + enc(T, MARK, mask=True))
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        f, others = c.read_close(5)
        assert f.close_code == 1000 and others == [], others
        c.send(enc(C, wsproto.close_payload(1000)))
        assert c.wait_closed(5)
        assert MARK not in bytes(c.buf)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("upstream_closed", 1000), e


def test_upstream_control_frames_inside_a_fragmented_message(gw):
    frames = [enc(T, b"one ", fin=False, mask=False),
              enc(PING, b"p1", mask=False),
              enc(CONT, "tw\u00e9".encode()[:3], fin=False, mask=False),
              enc(PONG, b"p2", mask=False),
              enc(CONT, "tw\u00e9".encode()[3:], mask=False),
              enc(T, b"after", mask=False)]
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(b"".join(frames))
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        got = [(f.opcode, f.payload) for f in
               (c.read_frame(5) for _ in frames)]
    finally:
        c.close()
    assert got == [(T, b"one "), (PING, b"p1"), (CONT, b"tw\xc3"),
                   (PONG, b"p2"), (CONT, b"\xa9"), (T, b"after")], got


def test_client_close_inside_fragmented_message(gw):
    c = echo_client(gw)
    try:
        (uc,) = gw.rec.wait_conns(1)
        c.send(enc(T, b"half", fin=False) + enc(PING, b"x") +
               enc(C, wsproto.close_payload(1000)))
        f, others = c.read_close(5)
        assert f.close_code == 1000
    finally:
        c.close()
    assert uc.done.wait(5)
    assert [(f.opcode, f.payload) for f in uc.frames][:2] == \
        [(T, b"half"), (PING, b"x")], uc.frames


@pytest.mark.parametrize("case", ["masked", "utf8", "good_then_bad",
                                  "close"])
def test_violation_right_behind_the_101(gw, case):
    after = {"masked": enc(T, MARK, mask=True),
             "utf8": enc(T, b"\xff" + MARK, mask=False),
             "good_then_bad": enc(T, b"hello", mask=False) +
             enc(T, MARK, mask=False, rsv=2),
             "close": enc(C, wsproto.close_payload(1000, b"bye"),
                          mask=False)}[case]
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(after, delay=None)
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        f, others = c.read_close(5)
        if case == "close":
            assert f.close_code == 1000
            c.send(enc(C, f.payload))
        else:
            assert f.close_code == 1014, (f, others)
        if case == "good_then_bad":
            assert [o.payload for o in others] == [b"hello"], others
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    want = {"masked": "protocol_error", "utf8": "invalid_utf8",
            "good_then_bad": "protocol_error",
            "close": "upstream_closed"}[case]
    assert e["reason"] == want, e


def test_client_split_code_point_with_ping_between(gw):
    c = echo_client(gw)
    try:
        c.send(enc(T, b"a\xe2\x82", fin=False) + enc(PING, b"pp") +
               enc(CONT, b"\xac"))
        got = [(f.opcode, f.payload) for f in
               (c.read_frame(5) for _ in range(3))]
        assert sorted(got) == sorted([(T, b"a\xe2\x82"), (PONG, b"pp"),
                                      (CONT, b"\xac")]), got
    finally:
        c.close()


def test_client_empty_close(gw):
    c = echo_client(gw)
    try:
        c.send(enc(C, b""))
        f, _ = c.read_close(5)
        assert f.payload == b""
        assert c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 1005), e


@pytest.mark.parametrize("tls", [True, False])
def test_big_text_frames_checked_whole(factory, tls):
    rec = factory.raw_upstream()
    broken = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/c", "rec", "big"), ("/u/*", "broken", "big")],
        upstreams={"rec": [rec.addr], "broken": [broken.addr]},
        policies={"big": policy(frames={"max_frame_size": "1MiB",
                                        "max_message_size": "2MiB"})},
        tls=tls)
    good = "\u00e9".encode() * (1 << 19)          # exactly 1 MiB
    bad = good[:-1] + b"\xff"
    # client -> backend
    rec.behavior = rawup.ws_echo
    c = g.raw()
    try:
        c.upgrade("/c")
        c.send(enc(T, good))
        assert c.read_frame(10).payload == good
        c.send(enc(T, bad[:-len(MARK) - 1] + MARK + b"\xff"))
        f, others = c.read_close(10)
        assert f.close_code == 1007 and others == [], (f, others)
    finally:
        c.close()
    e = g.wait_entry(client_port=c.local_port)
    assert e["reason"] == "invalid_utf8", e
    (uc,) = rec.connections()
    assert uc.done.wait(5)
    assert MARK not in uc.payloads()
    assert MARK not in uc.data
    # backend -> client
    broken.behavior = rawup.ws_then(enc(T, good, mask=False) +
                                    enc(T, bad[:-len(MARK) - 1] + MARK +
                                        b"\xff", mask=False))
    c = g.raw()
    try:
        c.upgrade("/u/x")
        f, others = c.read_close(10)
        assert f.close_code == 1014, f
        assert [o.payload for o in others] == [good]
    finally:
        c.close()
    e = g.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("invalid_utf8", 1007), e


def test_empty_text_frames_alone(gw):
    c = echo_client(gw)
    try:
        c.send(enc(T, b""))
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (T, b""), f
        c.send(enc(T, b"ab", fin=False))
        c.read_frame(5)
        c.send(enc(CONT, b""))
        f = c.read_frame(5)
        assert (f.opcode, f.payload, f.fin) == (CONT, b"", True), f
    finally:
        c.close()
    gw.broken.clear()
    gw.broken.behavior = rawup.ws_then(enc(T, b"", mask=False))
    c = gw.raw()
    try:
        c.upgrade("/u/x")
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (T, b""), f
    finally:
        c.close()


def test_control_frames_are_not_held_to_a_small_max_frame_size(factory):
    """max_frame_size limits data frames; control frames keep RFC 6455's
    125 bytes, or a small limit would leave no clean close (wsgate-policy.5
    says so)."""
    rec = factory.raw_upstream()
    g = factory.gateway(routes=[("/c", "rec", "tiny")],
                        upstreams={"rec": [rec.addr]},
                        policies={"tiny": policy(frames={
                            "max_frame_size": 16})})
    c = g.raw()
    try:
        c.upgrade("/c")
        c.send(enc(PING, b"p" * 100))
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (PONG, b"p" * 100), f
        c.send(enc(C, wsproto.close_payload(1000, b"r" * 60)))
        f, _ = c.read_close(5)
        assert (f.close_code, f.payload[2:]) == (1000, b"r" * 60), f
    finally:
        c.close()
    e = g.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 1000), e
    c = g.raw()
    try:
        c.upgrade("/c")
        c.send(enc(T, b"t" * 17))
        f, _ = c.read_close(5)
        assert f.close_code == 1009, f
    finally:
        c.close()
    e = g.wait_entry(client_port=c.local_port)
    assert e["reason"] == "frame_too_large", e
