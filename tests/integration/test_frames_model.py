"""Seeded random frame sequences from the client, checked against a small
reference model of RFC 6455 and the policy's limits: the close code the
client gets, the access-log reason, and exactly the frames the backend got.
"""

import codecs
import random
import time

import pytest

import rawup
import wsproto
from conftest import policy

enc = wsproto.encode_frame
T, BIN, C, CONT = wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_CLOSE, \
    wsproto.OP_CONT
PING, PONG = wsproto.OP_PING, wsproto.OP_PONG
MAXF, MAXM = 300, 1000
VALID_CODES = set(range(1000, 1004)) | set(range(1007, 1015)) | \
    set(range(3000, 5000))
SNIPS = ["abc", "\u00e9", "\u20ac", "\U0001F600", "x" * 50, "\u00ff\u0100"]
BAD = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
       b"\x80", b"\xe2\x82"]


@pytest.fixture(scope="module")
def gw(module_factory):
    rec = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/c", "rec", "p")], upstreams={"rec": [rec.addr]},
        policies={"p": policy(frames={"max_frame_size": MAXF,
                                      "max_message_size": MAXM})})
    g.rec = rec
    return g


def text_bytes(rng, n):
    s = "".join(rng.choice(SNIPS) for _ in range(n)).encode()
    if rng.random() < 0.1:
        i = rng.randrange(len(s) + 1)
        s = s[:i] + rng.choice(BAD) + s[i:]
    return s


def gen(rng):
    """A list of (opcode, payload, fin, rsv, mask) ending with a close."""
    out = []
    in_msg = False
    for _ in range(rng.randrange(1, 12)):
        r = rng.random()
        if r < 0.02:
            out.append((rng.choice([3, 4, 0xB, 0xF]), b"x", True, 0, True))
        elif r < 0.04:
            out.append((T, b"x", True, rng.choice([1, 2, 4]), True))
        elif r < 0.05:
            out.append((T, b"x", True, 0, False))
        elif r < 0.15:
            op = rng.choice([PING, PONG])
            n = rng.choice([0, 5, 125, 126]) if rng.random() < 0.3 else 3
            out.append((op, b"p" * n, rng.random() > 0.05, 0, True))
        elif r < 0.2:
            code = rng.choice([1000, 1001, 1004, 1005, 1012, 1015, 2999,
                               3000, 4999, 5000])
            reason = rng.choice([b"", b"ok", b"\xff", "\u00e9".encode()])
            pl = wsproto.close_payload(code, reason)
            if rng.random() < 0.1:
                pl = b"\x03"
            out.append((C, pl, True, 0, True))
        else:
            cont = in_msg if rng.random() > 0.05 else not in_msg
            op = CONT if cont else rng.choice([T, T, BIN])
            n = rng.choice([0, 1, 3, 10, 40, 80])
            if rng.random() < 0.5:
                pl = text_bytes(rng, n)
            else:
                pl = bytes(rng.randrange(256) for _ in range(n * 3))
            fin = rng.random() < 0.5
            out.append((op, pl, fin, 0, True))
            if op != CONT or in_msg:
                in_msg = not fin
    out.append((C, wsproto.close_payload(1000), True, 0, True))
    return out


def model(frames):
    """(forwarded [(op, payload, fin)], client close code, reason)."""
    fwd = []
    msg_op, msg_len, dec = None, 0, None
    for op, pl, fin, rsv, mask in frames:
        if rsv or op not in (0, 1, 2, 8, 9, 10) or not mask:
            return fwd, 1002, "protocol_error"
        if op >= 8:
            if not fin or len(pl) > 125:
                return fwd, 1002, "protocol_error"
            if op == C:
                if len(pl) == 1:
                    return fwd, 1002, "protocol_error"
                if pl:
                    code = int.from_bytes(pl[:2], "big")
                    if code not in VALID_CODES:
                        return fwd, 1002, "protocol_error"
                    try:
                        pl[2:].decode()
                    except UnicodeDecodeError:
                        return fwd, 1007, "invalid_utf8"
                fwd.append((op, pl, fin))
                return fwd, int.from_bytes(pl[:2], "big") if pl else None, \
                    "client_closed"
            fwd.append((op, pl, fin))
            continue
        if op == CONT:
            if msg_op is None:
                return fwd, 1002, "protocol_error"
            sofar = msg_len
        else:
            if msg_op is not None:
                return fwd, 1002, "protocol_error"
            sofar = 0
        if len(pl) > MAXF:
            return fwd, 1009, "frame_too_large"
        if sofar + len(pl) > MAXM:
            return fwd, 1009, "message_too_large"
        if op != CONT:
            msg_op = op
            dec = codecs.getincrementaldecoder("utf-8")()
        msg_len = sofar + len(pl)
        if msg_op == T:
            try:
                dec.decode(pl, final=fin)
            except UnicodeDecodeError:
                return fwd, 1007, "invalid_utf8"
        fwd.append((op, pl, fin))
        if fin:
            msg_op, msg_len = None, 0
    raise AssertionError("no end")


def wait_close_frame(uc, timeout=5.0):
    """Until the backend has read a close frame (bounded)."""
    deadline = time.monotonic() + timeout
    while not any(f.opcode == C for f in uc.frames) and \
            time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("seed", range(100))
def test_random_sequence_matches_model(gw, seed):
    rng = random.Random(seed)
    frames = gen(rng)
    want_fwd, want_code, want_reason = model(frames)
    data = b"".join(enc(op, pl, fin=fin, rsv=rsv, mask=mask)
                    for op, pl, fin, rsv, mask in frames)
    gw.rec.clear()
    gw.rec.behavior = rawup.ws_then(b"", delay=0)
    c = gw.raw()
    try:
        c.upgrade("/c")
        (uc,) = gw.rec.wait_conns(1)
        # in random pieces: one byte, a few, or all that is left
        i = 0
        while i < len(data):
            n = rng.choice([1, 7, 50, 1 << 20])
            c.send(data[i:i + n])
            i += n
            if rng.random() < 0.2:
                time.sleep(0.002)
        if want_reason != "client_closed":
            f, _ = c.read_close(5)
            assert f.close_code == want_code, (f, frames)
            e = gw.wait_entry(client_port=c.local_port)
            assert e["reason"] == want_reason, (e, frames)
        wait_close_frame(uc)
    finally:
        c.close()
    got = [(f.opcode, f.payload, f.fin) for f in uc.frames]
    if want_reason != "client_closed":
        assert got[-1][0] == C and \
            int.from_bytes(got[-1][1][:2], "big") == 1001, got
        got = got[:-1]
    assert got == want_fwd, (got, frames)


@pytest.fixture(scope="module")
def ugw(module_factory):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/u", "up", "p")], upstreams={"up": [up.addr]},
        policies={"p": policy(frames={"max_frame_size": MAXF,
                                      "max_message_size": MAXM})})
    g.up = up
    return g


@pytest.mark.parametrize("seed", range(100))
def test_random_upstream_sequence_matches_model(ugw, seed):
    rng = random.Random(1000 + seed)
    frames = gen(rng)
    want_fwd, want_code, want_reason = model(frames)
    data = b"".join(enc(op, pl, fin=fin, rsv=rsv, mask=not mask)
                    for op, pl, fin, rsv, mask in frames)
    ugw.up.clear()
    ugw.up.behavior = rawup.ws_then(data, delay=0)
    c = ugw.raw()
    try:
        c.upgrade("/u")
        f, others = c.read_close(5)
    finally:
        c.close()
    got = [(o.opcode, o.payload, o.fin) for o in others]
    if want_reason == "client_closed":
        assert got + [(f.opcode, f.payload, f.fin)] == want_fwd, \
            (got, frames)
    else:
        assert f.close_code == 1014, (f, frames)
        assert got == want_fwd, (got, frames)
        e = ugw.wait_entry(client_port=c.local_port)
        assert (e["reason"], e["close_code"]) == (want_reason, want_code), e
        (uc,) = ugw.up.connections()
        assert uc.done.wait(5)
        assert [cf.close_code for cf in uc.close_frames()] == [want_code]


@pytest.fixture(scope="module")
def hgw(module_factory):
    rec = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/h", "rec", "p")], upstreams={"rec": [rec.addr]},
        policies={"p": policy(frames={"max_frame_size": MAXF,
                                      "max_message_size": MAXM},
                              messages={"deny_regex": ["NEVER-SENT"]})})
    g.rec = rec
    return g


def messages(frames):
    """Control frames in order, and data messages reassembled (a message
    without its last frame as ('partial', op, bytes))."""
    ctl, msgs, cur = [], [], None
    for op, pl, fin in frames:
        if op >= 8:
            ctl.append((op, pl))
            continue
        if op != CONT:
            cur = [op, b""]
        cur[1] += pl
        if fin:
            msgs.append(tuple(cur))
            cur = None
    if cur is not None and cur[0] == BIN:
        msgs.append(("partial",) + tuple(cur))
    return ctl, msgs


@pytest.mark.parametrize("seed", range(80))
def test_random_held_sequence_matches_model(hgw, seed):
    rng = random.Random(5000 + seed)
    frames = gen(rng)
    want_fwd, want_code, want_reason = model(frames)
    data = b"".join(enc(op, pl, fin=fin, rsv=rsv, mask=mask)
                    for op, pl, fin, rsv, mask in frames)
    hgw.rec.clear()
    hgw.rec.behavior = rawup.ws_then(b"", delay=0)
    c = hgw.raw()
    try:
        c.upgrade("/h")
        (uc,) = hgw.rec.wait_conns(1)
        c.send(data)
        if want_reason != "client_closed":
            f, _ = c.read_close(5)
            assert f.close_code == want_code, (f, frames)
            e = hgw.wait_entry(client_port=c.local_port)
            assert e["reason"] == want_reason, (e, frames)
            assert uc.done.wait(10)
        else:
            wait_close_frame(uc)
    finally:
        c.close()
    got = [(f.opcode, f.payload, f.fin) for f in uc.frames]
    if want_reason != "client_closed":
        assert int.from_bytes(got[-1][1][:2], "big") == 1001, got
        got = got[:-1]
    assert messages(got) == messages(want_fwd), (got, want_fwd, frames)
