"""Upstream faults (issue 7): a server that refuses, resets in the middle of
a message, stops reading, hangs before its 101 or sends its 101 one byte at
a time.

Each test checks what the client sees (status or close code), the
access-log reason, that the daemon still relays for others afterwards and,
where it matters, that its descriptors come back to their baseline.
test_upstream.py already covers a single refusal (502) and a single silent
server (504); the tests here add the repeated, timed and leak-checked forms.
"""

import socket
import struct
import threading
import time

import rawup
import wsproto
from conftest import (echo_works, fd_count, policy, rss_bytes,
                      wait_fds_at_most)

MiB = 1 << 20
FD_SLACK = 2


def gateway_with(factory, behavior, connect_timeout="1s", **kw):
    """A plaintext gateway: /fault -> the faulty upstream, /echo -> a
    correct echo server.  Warmed up, with its descriptor baseline."""
    up = factory.raw_upstream(behavior)
    echo = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/fault", "fault", "big"),
                                 ("/echo", "echo")],
                         upstreams={"fault": {"servers": [up.addr],
                                              "connect_timeout":
                                              connect_timeout},
                                    "echo": [echo.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "2MiB",
                             "max_message_size": "4MiB"})},
                         tls=False, **kw)
    echo_works(gw)
    gw.wait_entries(1)
    gw.base_fds = fd_count(gw.pid)
    return gw, up


def refusal(gw, path="/fault", timeout=8.0):
    """Send an upgrade request; return (response, seconds, client)."""
    c = gw.raw()
    t0 = time.monotonic()
    resp, c = gw.raw_request(path, timeout, client=c)
    return resp, time.monotonic() - t0, c


def rst(sock):
    """Close with SO_LINGER 0: the peer gets a TCP RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


# -- nothing listening --------------------------------------------------------

def test_refusing_upstream_repeatedly_costs_nothing(factory):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()                        # bound then closed: refuses
    echo = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/fault", "dead"), ("/echo", "echo")],
                         upstreams={"dead": ["127.0.0.1:%d" % port],
                                    "echo": [echo.addr]}, tls=False)
    echo_works(gw)
    gw.wait_entries(1)
    base = fd_count(gw.pid)
    ports = []
    for _ in range(10):
        resp, _, c = refusal(gw)
        assert resp.status == 502, resp
        assert b"upstream_unavailable" in resp.body, resp
        ports.append(c.local_port)
    for p in ports:
        e = gw.wait_entry(client_port=p)
        assert (e["status"], e["reason"]) == (502, "upstream_unavailable"), e
        assert e["upstream"] == "dead", e
    wait_fds_at_most(gw, base + FD_SLACK)
    assert gw.alive()
    echo_works(gw)


# -- reset in the middle of a message -----------------------------------------

def reset_mid_frame(opcode):
    """After a correct 101: a frame header announcing 1000 bytes, 10 bytes
    of it, then a TCP RST."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        time.sleep(0.2)
        c.send(wsproto.encode_frame(opcode, b"", mask=False,
                                    declared_len=1000) + b"0123456789")
        time.sleep(0.3)
        rst(c.sock)
    return behavior


def check_reset_mid_frame(factory, opcode):
    gw, up = gateway_with(factory, reset_mid_frame(opcode))
    c = gw.raw()
    try:
        c.upgrade("/fault")
        t0 = time.monotonic()
        try:
            close, others = c.read_close(5)
        except AssertionError as e:
            raise AssertionError(
                "SPEC: upstream dropped without a close frame -> the client "
                "gets 1014 upstream_error; after the upstream reset in the "
                "middle of a %d-byte frame (10 bytes sent), the client got "
                "no close frame (%s); unparsed bytes it received: %r; "
                "access log: %r" % (1000, e, bytes(c.buf[:40]),
                                    gw.entries()[-1:]))
        took = time.monotonic() - t0
        assert close.close_code == 1014, close
        assert close.close_reason == b"upstream_error", close
        # the 10 bytes of an unfinished frame are not a message
        assert not any(f.opcode in (wsproto.OP_TEXT, wsproto.OP_BINARY)
                       for f in others), others
        assert c.wait_closed(5), "client left open after the 1014"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"], e["close_code"]) == \
        (101, "upstream_error", 1014), e
    assert took < 5
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    assert gw.alive()
    echo_works(gw)


def test_upstream_reset_mid_text_frame_is_1014(factory):
    check_reset_mid_frame(factory, wsproto.OP_TEXT)


def test_upstream_reset_mid_binary_frame_is_1014(factory):
    check_reset_mid_frame(factory, wsproto.OP_BINARY)


# -- an upstream that stops reading -------------------------------------------

def flood_until_blocked(gw, path, n, seconds=15):
    """n clients upgrade on path and each floods 1 MiB binary frames from a
    thread.  Returns (clients, sent counters, stop event, threads)."""
    frame = wsproto.encode_frame(wsproto.OP_BINARY, b"\0" * MiB,
                                 mask_key=b"\0\0\0\0")
    clients = []
    sent = [0] * n
    stop = threading.Event()

    def pump(i, c):
        view = memoryview(frame)
        off = 0
        c.sock.settimeout(0.3)
        deadline = time.monotonic() + seconds
        while not stop.is_set() and sent[i] < 400 * MiB and \
                time.monotonic() < deadline:
            try:
                k = c.sock.send(view[off:off + 256 * 1024])
            except socket.timeout:
                continue
            except OSError:
                return
            sent[i] += k
            off = (off + k) % len(frame)

    threads = []
    for i in range(n):
        c = gw.raw()
        c.upgrade(path)
        clients.append(c)
    for i, c in enumerate(clients):
        t = threading.Thread(target=pump, args=(i, c), daemon=True)
        t.start()
        threads.append(t)
    return clients, sent, stop, threads


def test_deaf_upstream_blocks_flooding_clients(factory):
    """Three clients flood 1 MiB binary frames at upstreams that never read:
    the gateway stops reading them (their sends block), its RSS stays
    bounded and its descriptors constant, and it still serves others.  When
    the deaf upstreams finally drop, each client gets 1014 and the daemon
    is back to its baseline."""
    n = 3
    gw, up = gateway_with(factory, rawup.deaf(seconds=25))
    base_rss = rss_bytes(gw.pid)
    clients, sent, stop, threads = flood_until_blocked(gw, "/fault", n)
    try:
        up.wait_conns(n)
        time.sleep(3)
        s1, r1, f1 = list(sent), rss_bytes(gw.pid), fd_count(gw.pid)
        time.sleep(2)
        s2, r2, f2 = list(sent), rss_bytes(gw.pid), fd_count(gw.pid)
        print("clients sent %s -> %s MiB; gateway RSS %d -> %d -> %d KiB; "
              "fds %d -> %d -> %d" % (
                  [x // MiB for x in s1], [x // MiB for x in s2],
                  base_rss >> 10, r1 >> 10, r2 >> 10, gw.base_fds, f1, f2))
        for i in range(n):
            assert s2[i] > 0, "client %d never sent" % i
            assert s2[i] < 200 * MiB, \
                "client %d pushed %d MiB into a deaf upstream" % (
                    i, s2[i] // MiB)
            assert s2[i] - s1[i] < 8 * MiB, \
                "client %d still sending (%d -> %d MiB): not blocked" % (
                    i, s1[i] // MiB, s2[i] // MiB)
        assert max(r1, r2) < 64 * MiB, \
            "gateway RSS %d MiB with %d deaf upstreams" % (
                max(r1, r2) // MiB, n)
        assert f1 == f2, "descriptor count moved while blocked: %d -> %d" % (
            f1, f2)
        assert f2 <= gw.base_fds + 2 * n + FD_SLACK, (gw.base_fds, f2)
        assert gw.alive()
        echo_works(gw, msg="while blocked")      # others are still served
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    # the deaf upstreams hang up (with unread data: a reset)
    up.close()
    try:
        for c in clients:
            close, others = c.read_close(8)
            assert close.close_code == 1014, close
            assert close.close_reason == b"upstream_error", close
            assert not others, others
    finally:
        for c in clients:
            c.close()
    for c in clients:
        e = gw.wait_entry(client_port=c.local_port, timeout=10)
        assert (e["status"], e["reason"], e["close_code"]) == \
            (101, "upstream_error", 1014), e
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK, timeout=10)
    assert gw.alive()
    echo_works(gw)


# -- an upstream that hangs before its 101 ------------------------------------

def test_upstream_hanging_before_101_is_504_at_connect_timeout(factory):
    gw, up = gateway_with(factory, rawup.silent, connect_timeout="1s")
    resp, took, c = refusal(gw)
    assert resp.status == 504, resp
    assert b"upstream_unavailable" in resp.body, resp
    assert [v.lower() for v in resp.header("Connection")] == ["close"], resp
    # the deadline is connect_timeout (1s): not before it, and not long after
    assert 0.9 <= took < 5.0, "504 after %.2fs with connect_timeout 1s" % took
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (504, "upstream_unavailable"), e
    (uc,) = up.connections()
    assert uc.data.startswith(b"GET /fault HTTP/1.1\r\n"), bytes(uc.data)
    assert uc.done.wait(5) and uc.eof, \
        "gateway kept the silent upstream connection open"
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    assert gw.alive()
    echo_works(gw)


# -- an upstream that answers one byte at a time ------------------------------

def trickled_101(pause=0.02):
    def behavior(c):
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not c.read_head():
            return
        key = c.header("Sec-WebSocket-Key")[0]
        resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                wsproto.accept_for(key).encode() + b"\r\n\r\n")
        for i in range(len(resp)):
            if c.up.stopping.is_set():
                return
            try:
                c.send(resp[i:i + 1])
            except OSError:
                return
            time.sleep(pause)
        rawup.ws_echo_frames(c, lifetime=20)
    return behavior


def test_upstream_101_one_byte_per_20ms_is_a_working_session(factory):
    # about 130 bytes at 20 ms: ~2.6 s, inside connect_timeout 5s (which
    # covers the 101) and the listener's handshake_timeout 10s
    gw, up = gateway_with(factory, trickled_101(), connect_timeout="5s")
    c = gw.raw()
    try:
        c.upgrade("/fault", timeout=8)
        for i in range(5):
            c.send_frame(wsproto.OP_TEXT, b"slow upstream %d" % i)
            f = c.read_frame(5)
            assert f is not None and f.opcode == wsproto.OP_TEXT and \
                f.payload == b"slow upstream %d" % i, f
        c.send_frame(wsproto.OP_BINARY, b"\x01\x02" * 1000)
        f = c.read_frame(5)
        assert f.opcode == wsproto.OP_BINARY and \
            f.payload == b"\x01\x02" * 1000, f
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000, "done"))
        close, _ = c.read_close(5)
        assert close.close_code == 1000, close
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"], e["close_code"]) == \
        (101, "client_closed", 1000), e
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    echo_works(gw)


def test_upstream_101_trickled_past_connect_timeout_is_504(factory):
    # the same trickle with connect_timeout 1s: the 101 is part of what
    # connect_timeout bounds (wsgate.yaml(5)), so a trickling upstream
    # cannot hold the client past it
    gw, up = gateway_with(factory, trickled_101(), connect_timeout="1s")
    resp, took, c = refusal(gw)
    assert resp.status == 504, resp
    assert took < 5.0, took
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (504, "upstream_unavailable"), e
    (uc,) = up.connections()
    assert uc.done.wait(5), "trickling upstream connection left open"
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    echo_works(gw)
