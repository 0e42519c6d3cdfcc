"""Policy `messages.deny_regex` (client text messages, matched whole after
reassembly) and policy `subprotocols` (filtering the client's offer).

The upstream is a raw recording WebSocket echo server, so "the upstream
never receives that message" is checked on the frames it decoded, and
"the backend gets close 1001" on its close frames.
"""

import asyncio
import os

import pytest

import rawclient
import rawup
import wsproto
from conftest import http_refusal, http_upgrade, policy, run, wait_for

B = rawclient.build_request
T, C, BIN = wsproto.OP_TEXT, wsproto.OP_CONT, wsproto.OP_BINARY


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream()
    free = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/c", "rec", "content"), ("/sub", "rec", "sub"),
                ("/nosub", "rec", "nosub"), ("/free", "free")],
        upstreams={"rec": [up.addr], "free": [free.addr]},
        policies={
            "content": policy(messages={"deny_regex": [
                "(?i)<script", r"\bDROP\s+TABLE\b", "^(a+)+$"]}),
            "sub": policy(subprotocols=["chat.v2"]),
            "nosub": policy(subprotocols=[]),
        })
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def echo_ok(c, payload, opcode=T):
    c.send_frame(opcode, payload)
    got = b""
    while True:
        f = c.read_frame(5)
        assert f is not None, "connection ended; wanted echo of %r" % payload
        assert f.opcode in (opcode, C), f
        got += f.payload
        if f.fin:
            break
    assert got == payload


def expect_content_denied(gw, up, c, forbidden):
    """Client gets close 1008 content_denied; the upstream never saw any
    piece of the forbidden message and got close 1001."""
    close, others = c.read_close(5)
    assert close.close_code == 1008, (close, others)
    assert close.close_reason == b"content_denied", close
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "content_denied" and e["close_code"] == 1008, e
    conn = up.wait_conns(1)[0]
    wait_for(lambda: conn.close_frames(), 5, what="upstream close frame")
    assert conn.close_frames()[0].close_code == 1001, conn.frames
    for f in conn.frames:
        if f.opcode in (T, C, BIN):
            for piece in forbidden:
                assert piece not in f.payload, \
                    "upstream received %r" % f.payload


def test_non_matching_messages_pass(gw, up):
    c, _ = http_upgrade(gw, B("/c"))
    try:
        for msg in (b"hello", b"scripting is fun", b"drop the table",
                    b"aaaa!", "gr\u00fc\u00dfe <scr ipt>".encode()):
            echo_ok(c, msg)
        # binary messages are not matched
        echo_ok(c, b"<script>alert(1)</script>", BIN)
    finally:
        c.close()


@pytest.mark.parametrize("msg", [
    b"x <SCRIPT>alert(1)</script>", b"please DROP   TABLE users",
    b"aaaaaaaa"])
def test_matching_message_closes_1008_and_is_not_forwarded(gw, up, msg):
    c, _ = http_upgrade(gw, B("/c"))
    echo_ok(c, b"harmless first")
    c.send_frame(T, msg)
    expect_content_denied(gw, up, c, [msg])


def test_match_split_across_fragments(gw, up):
    c, _ = http_upgrade(gw, B("/c"))
    echo_ok(c, b"harmless first")
    c.send_frame(T, b"hello <scr", fin=False)
    c.send_frame(C, b"ipt", fin=False)
    c.send_frame(C, b">alert(1)", fin=True)
    expect_content_denied(gw, up, c, [b"hello <scr", b"ipt", b">alert(1)"])


def test_fragmented_non_matching_message_passes_whole(gw, up):
    c, _ = http_upgrade(gw, B("/c"))
    try:
        c.send_frame(T, b"hello <scr", fin=False)
        c.send_frame(C, b"ibble> ok", fin=True)
        got = b""
        while True:
            f = c.read_frame(5)
            assert f is not None
            got += f.payload
            if f.fin:
                break
        assert got == b"hello <scribble> ok"
    finally:
        c.close()


def test_upstream_messages_are_not_matched(factory):
    """deny_regex is on what the client sends: the upstream's text that
    matches a pattern, whole or in fragments, reaches the client as the
    upstream framed it, and the session goes on."""
    sent = [(T, b"<script>one</script>", True),
            (T, b"x <scr", False), (C, b"ipt>", True),
            (T, b"DROP TABLE t", True)]
    up = factory.raw_upstream()
    up.behavior = rawup.ws_then(b"".join(
        wsproto.encode_frame(op, pl, fin=fin, mask=False)
        for op, pl, fin in sent))
    gw = factory.gateway(
        routes=[("/c", "rec", "c")], upstreams={"rec": [up.addr]},
        policies={"c": policy(messages={"deny_regex": [
            "(?i)<script", r"\bDROP\s+TABLE\b"]})})
    c, _ = http_upgrade(gw, B("/c"))
    try:
        got = [c.read_frame(5) for _ in sent]
        assert [(f.opcode, f.payload, f.fin) for f in got if f] == sent, got
        assert not any(f.masked for f in got), got
        c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(1000)))
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] in ("client_closed", "client_dropped"), e
    assert e["frames_out"] == len(sent), e


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_held_message_keeps_only_its_payload(gw, up):
    """A held text message costs its payload, not its frames: 48 MB of
    empty continuations (8 million frames) must not grow the gateway by
    their headers, which neither max_message_size nor a rate limit
    counts.  The message leaves as one frame, refragmented at
    max_frame_size (RFC 6455 5.4)."""
    c, _ = http_upgrade(gw, B("/c"))
    try:
        echo_ok(c, b"warm up")
        before = rss_kib(gw.pid)
        c.send_frame(T, b"held ", fin=False)
        empty = wsproto.encode_frame(C, b"", fin=False)
        for _ in range(160):
            c.send(empty * 50000)
        # the pong comes back once every frame before the ping was read
        c.send_frame(wsproto.OP_PING, b"sync")
        f = c.read_frame(120)
        assert f is not None and f.opcode == wsproto.OP_PONG, f
        # held as received, the headers alone would be 48 MB
        grown = rss_kib(gw.pid) - before
        assert grown < 24 * 1024, "RSS grew by %d KiB" % grown
        c.send_frame(C, b"tail", fin=True)
        f = c.read_frame(10)
        assert f is not None and f.opcode == T and f.fin, f
        assert f.payload == b"held tail", f
        conn = up.wait_conns(1)[0]
        data = [x for x in conn.frames if x.opcode in (T, C, BIN)]
        assert [(x.opcode, x.fin, x.payload) for x in data][-1] == \
            (T, True, b"held tail"), data[-3:]
    finally:
        c.close()


def test_held_message_leaves_in_frames_of_max_frame_size(factory):
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/c", "rec", "content")], upstreams={"rec": [up.addr]},
        policies={"content": policy(
            frames={"max_frame_size": "100", "max_message_size": "1KiB"},
            messages={"deny_regex": ["forbidden"]})})
    c, _ = http_upgrade(g, B("/c"))
    try:
        msg = bytes(range(48, 48 + 70)) * 3      # 210 bytes of text
        c.send_frame(T, msg[:7], fin=False)
        for i in range(7, 203, 49):
            c.send_frame(C, msg[i:i + 49], fin=False)
        c.send_frame(C, msg[203:], fin=True)
        got = []
        while True:
            f = c.read_frame(5)
            assert f is not None
            got.append(f)
            if f.fin:
                break
        assert b"".join(f.payload for f in got) == msg
        conn = up.wait_conns(1)[0]
        data = [x for x in conn.frames if x.opcode in (T, C, BIN)]
        assert [(x.opcode, x.fin, len(x.payload)) for x in data] == \
            [(T, False, 100), (C, False, 100), (C, True, 10)], data
        assert all(x.masked for x in data), data
    finally:
        c.close()


def test_pathological_message_is_refused_without_stalling(gw, up):
    evil = b"a" * 40 + b"!"

    async def go():
        # another session on the same (single-worker) gateway
        async with gw.connect("/free") as ws:
            await ws.send("before")
            assert await asyncio.wait_for(ws.recv(), 5) == "before"
            c, _ = http_upgrade(gw, B("/c"))
            c.send_frame(T, evil)
            await ws.send("meanwhile")
            assert await asyncio.wait_for(ws.recv(), 5) == "meanwhile"
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(
                None, expect_content_denied, gw, up, c, [evil]), 15)
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 5) == "after"
    run(go(), timeout=30)


def test_long_message_cannot_stall_the_worker(factory):
    """The match limit counts afresh at each start position, so a long
    message against a backtracking pattern that stays under it at every
    position cost up to a million of them (9 s for 1 MiB).  It is refused
    as a match limit would be, and the worker's other sessions go on."""
    up = factory.raw_upstream()
    free = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/c", "rec", "c"), ("/free", "free")],
        upstreams={"rec": [up.addr], "free": [free.addr]},
        policies={"c": policy(
            frames={"max_frame_size": "1MiB", "max_message_size": "1MiB"},
            messages={"deny_regex": ["a{1,20}a{1,20}a{1,20}[bc]"]})})
    evil = b"a" * (1024 * 1024)

    async def go():
        async with g.connect("/free") as ws:
            c, _ = http_upgrade(g, B("/c"))
            echo_ok(c, b"aab")
            c.send_frame(T, evil)
            await ws.send("meanwhile")
            assert await asyncio.wait_for(ws.recv(), 5) == "meanwhile"
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(
                None, expect_content_denied, g, up, c, [evil[:64]]), 15)
    run(go(), timeout=30)
    text = g.error_text()
    assert "(match limit)" in text, text[-2000:]


def cpu_seconds(pid):
    """User and system CPU time of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_many_patterns_share_one_time_limit(factory):
    """The CPU time limit was per pattern, and looked at between windows
    of start positions only: a 12 KiB message (three windows) cost each
    of 32 backtracking patterns some 70 ms, passed them all after more
    than 2 s of the worker, and its client could send the next one.  The
    limit is now the message's, across its patterns, and the message is
    refused as a match limit would be."""
    letters = "cdefghijklmnopqrstuvwxyzCDEFGHIJ"
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/c", "rec", "c")], upstreams={"rec": [up.addr]},
        policies={"c": policy(messages={"deny_regex": [
            "a{1,20}a{1,20}a{1,20}[b%s]" % x for x in letters]})})
    evil = b"a" * 12288
    c, _ = http_upgrade(g, B("/c"))
    echo_ok(c, b"aab")
    t0 = cpu_seconds(g.pid)
    c.send_frame(T, evil)
    expect_content_denied(g, up, c, [evil[:64]])
    spent = cpu_seconds(g.pid) - t0
    print("12 KiB against %d patterns: %.2f s of CPU" % (len(letters),
                                                        spent))
    assert spent < 1.0, "%.2f s of CPU for one message" % spent
    text = g.error_text()
    assert "(match limit)" in text, text[-2000:]


# -- subprotocols ------------------------------------------------------------------

def test_offer_is_filtered_to_the_policy(gw, up):
    c, resp = http_upgrade(gw, B("/sub", protocols="a, chat.v2"))
    try:
        assert resp.header("Sec-WebSocket-Protocol") == ["chat.v2"], resp
        conn = up.wait_conns(1)[0]
        wait_for(lambda: conn.head is not None, 5, what="upstream head")
        offered = [p.strip() for v in conn.header("Sec-WebSocket-Protocol")
                   for p in v.split(",")]
        assert offered == ["chat.v2"], conn.headers
        echo_ok(c, b"v2 talk")
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["subprotocol"] == "chat.v2", e


@pytest.mark.parametrize("offer", ["a", "a, b", "CHAT.V2", "chat.v1",
                                   "chat", "chat.v", "chat.v22"])
def test_offer_with_nothing_allowed_is_400(gw, up, offer):
    http_refusal(gw, B("/sub", protocols=offer), 400, "subprotocol_denied",
                 up=up)


def test_empty_list_refuses_every_offer(gw, up):
    """subprotocols: [] is a list with nothing in it, not a missing key:
    any offer is refused, no offer passes."""
    for offer in ("a", "chat.v2"):
        http_refusal(gw, B("/nosub", protocols=offer), 400,
                     "subprotocol_denied", up=up)
    c, resp = http_upgrade(gw, B("/nosub"))
    c.close()
    assert resp.status == 101, resp


def test_no_offer_is_not_affected(gw, up):
    c, resp = http_upgrade(gw, B("/sub"))
    c.close()
    assert resp.header("Sec-WebSocket-Protocol") == [], resp


def test_zz_gateway_still_relays(gw, up):
    c, _ = http_upgrade(gw, B("/c"))
    try:
        echo_ok(c, b"still here")
    finally:
        c.close()
    assert gw.alive()


def test_invalid_utf8_unchecked_is_refused_not_passed(factory):
    """With validate_utf8 off, text that is not UTF-8 cannot be matched by
    the UTF-8-mode patterns: it is refused (one bad byte must not carry
    anything past deny_regex), and the log says why, not "match limit"."""
    up = factory.raw_upstream()
    gw = factory.gateway(
        routes=[("/c", "rec", "c")], upstreams={"rec": [up.addr]},
        policies={"c": policy(frames={"validate_utf8": False},
                              messages={"deny_regex": ["(?i)<script"]})})
    c, _ = http_upgrade(gw, B("/c"))
    echo_ok(c, b"harmless first")
    c.send_frame(T, b"\xff <script>alert(1)</script>")
    expect_content_denied(gw, up, c, [b"<script>"])
    text = gw.error_text()
    assert "not valid UTF-8" in text, text[-2000:]
    assert "match limit" not in text, text[-2000:]
