"""deny_regex matched in slices: a held message whose match takes long
(a backtracking pattern an operator wrote, fed crafted text, up to its
whole CPU budget) no longer holds up the worker's other sessions until it
is judged.  The match stops between windows of start positions once it
has had a slice of CPU time and goes on in a later turn of the event loop;
the verdict and the budget are those of one pass.

Every test here uses one worker (and a plaintext listener unless it says
otherwise), and waits until the gateway has read all of the held message
(the kernel's receive queue of its socket is empty) before going on: from
then on the old code matched with the worker blocked.  The assertions are
on the order of events, never on times.
"""

import select
import socket
import threading

import pytest

import rawup
import wsproto
from conftest import http_upgrade, policy, wait_for
from test_policy_messages import B, T, echo_ok

# 1 MiB against this costs some 4 ms of CPU per window of 4096 start
# positions, more than the budget (about 150 ms) in all: refused.
EVIL_PATTERN = "a{1,10}a{1,10}a{1,10}[bc]"
EVIL = b"a" * (1024 * 1024)
BIG = {"max_frame_size": "1MiB", "max_message_size": "1MiB"}


def gateway(factory, up, tls=False):
    return factory.gateway(
        routes=[("/c", "rec", "c")], upstreams={"rec": [up.addr]},
        policies={"c": policy(frames=BIG,
                              messages={"deny_regex": [EVIL_PATTERN]})},
        tls=tls)


def unread(gw_port, client_port):
    """Bytes the gateway has not read yet from the client at client_port:
    the receive queue of its socket, from /proc/net/tcp.  None while the
    socket is not found."""
    local = "0100007F:%04X" % gw_port
    remote = "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[1], 16)
    return None


def send_held(gw, c, payload):
    """Send a text message and wait until the gateway has all of it."""
    c.send_frame(T, payload)
    wait_for(lambda: unread(gw.port, c.local_port) == 0, 10,
             what="the gateway to read the whole message")


def pending(c):
    """Has c anything to read (a frame, a close, EOF) right now?"""
    if c.buf:
        return True
    r, _, _ = select.select([c.sock], [], [], 0)
    return bool(r)


def log_lines(gw, port):
    return len([e for e in gw.entries() if e.get("client_port") == port])


def expect_refused(gw, c):
    close, others = c.read_close(15)
    assert close.close_code == 1008, (close, others)
    assert close.close_reason == b"content_denied", close
    return others


def test_other_sessions_go_on_while_a_match_is_long(factory):
    """Session B's message is relayed, and its echo back, while A's
    message is still being matched: before, the worker was blocked until
    A's verdict, which therefore always came first."""
    up = factory.raw_upstream()
    g = gateway(factory, up)
    a, _ = http_upgrade(g, B("/c"))
    b, _ = http_upgrade(g, B("/c"))
    try:
        echo_ok(a, b"aab")
        echo_ok(b, b"aab")
        send_held(g, a, EVIL)
        b.send_frame(T, b"hello")
        f = b.read_frame(10)
        assert f is not None and f.payload == b"hello", f
        assert not pending(a), "A's verdict came before B's echo"
        assert expect_refused(g, a) == []
        e = g.wait_entry(client_port=a.local_port)
        assert e["reason"] == "content_denied", e
        assert e["close_code"] == 1008, e
        echo_ok(b, b"after")
    finally:
        a.close()
        b.close()
    text = g.error_text()
    assert "(match limit)" in text, text[-2000:]
    assert "a long match, done in slices" in text, text[-2000:]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_message_passed_in_slices_then_reading_goes_on(factory, tls):
    """A message that passes after a match in slices is forwarded whole,
    and what the client sent right behind it, already buffered (TLS
    records read ahead too), is relayed once reading goes on."""
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/c", "rec", "c")], upstreams={"rec": [up.addr]},
        policies={"c": policy(frames=BIG, messages={"deny_regex": [
            "a{1,8}a{1,8}[bc]"]})},
        tls=tls)
    c, _ = http_upgrade(g, B("/c"))
    try:
        echo_ok(c, b"hello")
        c.send(wsproto.encode_frame(T, EVIL) +
               wsproto.encode_frame(T, b"next"))
        got = b""
        while True:
            f = c.read_frame(15)
            assert f is not None and f.opcode in (T, wsproto.OP_CONT), f
            got += f.payload
            if f.fin:
                break
        assert got == EVIL
        f = c.read_frame(10)
        assert f is not None and f.payload == b"next", f
    finally:
        c.close()
    text = g.error_text()
    assert "a long match, done in slices" in text, text[-2000:]


def echo_once_then(factory, then):
    """A raw upstream that echoes the client's first frame and, once the
    event returned with it is set, calls then(c)."""
    go = threading.Event()

    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        f = c.read_frame(10)
        if f is not None:
            c.send(wsproto.encode_frame(f.opcode, f.payload, mask=False))
        if go.wait(15):
            then(c)

    return factory.raw_upstream(behavior), go


def test_upstream_frames_reach_the_client_while_it_is_matched(factory):
    """The upstream's frames toward a client whose message is being
    matched go on meanwhile; the verdict follows them."""
    def then(c):
        c.send(wsproto.encode_frame(T, b"from upstream", mask=False))
        rawup.ws_echo_frames(c, 15.0)

    up, go = echo_once_then(factory, then)
    g = gateway(factory, up)
    a, _ = http_upgrade(g, B("/c"))
    try:
        echo_ok(a, b"aab")
        send_held(g, a, EVIL)
        go.set()
        others = expect_refused(g, a)
        assert [f.payload for f in others] == [b"from upstream"], others
    finally:
        a.close()
    e = g.wait_entry(client_port=a.local_port)
    assert e["reason"] == "content_denied", e


def test_upstream_gone_while_a_match_is_pending(factory):
    """The session ends (the upstream drops) while a message is being
    matched: the match ends with it, one access-log line, nothing kept
    (the sanitizer build's leak check at exit)."""
    def reset(c):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.sock.close()

    up, drop = echo_once_then(factory, reset)
    g = gateway(factory, up)
    a, _ = http_upgrade(g, B("/c"))
    try:
        echo_ok(a, b"aab")
        send_held(g, a, EVIL)
        drop.set()
        close, _ = a.read_close(15)
        assert close.close_code == 1014, close
    finally:
        a.close()
    e = g.wait_entry(client_port=a.local_port)
    assert e["reason"] == "upstream_error", e
    # the worker goes on
    b, _ = http_upgrade(g, B("/c"))
    try:
        echo_ok(b, b"hello")
    finally:
        b.close()
    g.wait_entry(client_port=b.local_port)
    assert g.stop() == 0
    assert log_lines(g, a.local_port) == 1


def test_client_gone_while_its_match_is_pending(factory):
    """The client sends its message and hangs up at once: the message is
    judged as before (refused), then the end is seen, one access-log
    line, nothing kept."""
    up = factory.raw_upstream()
    g = gateway(factory, up)
    a, _ = http_upgrade(g, B("/c"))
    port = a.local_port
    b, _ = http_upgrade(g, B("/c"))
    try:
        echo_ok(a, b"aab")
        a.send_frame(T, EVIL)
        a.sock.shutdown(socket.SHUT_WR)
        wait_for(lambda: unread(g.port, port) in (0, None), 10,
                 what="the gateway to read the whole message")
        a.close()
        echo_ok(b, b"meanwhile")
    finally:
        a.close()
        b.close()
    e = g.wait_entry(client_port=port)
    assert e["reason"] == "content_denied", e
    assert e["close_code"] == 1008, e
    conn = up.wait_conns(2)[0]
    wait_for(lambda: conn.close_frames() or conn.eof, 5,
             what="the upstream to be closed")
    for f in conn.frames:
        assert EVIL[:64] not in f.payload
    g.wait_entry(client_port=b.local_port)
    assert g.stop() == 0
    assert log_lines(g, port) == 1
