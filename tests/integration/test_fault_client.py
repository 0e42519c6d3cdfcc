"""Client faults (issue 7): a client that resets in the middle of a frame or
while the gateway has stopped reading it, trickles its request one byte
per second, never finishes its TLS handshake, or never reads while the
upstream floods.

Each test checks what the peers see (close codes, the handshake_timeout
close), the access-log reason, that nothing reached the upstream that
should not have, that the daemon's descriptors (and for the flood, its
memory) come back near their baseline, and that it still relays.
"""

import socket
import ssl
import struct
import time

import pytest

import rawclient
import rawup
import wsproto
from conftest import (echo_works, fd_count, policy, rss_bytes,
                      wait_fds_at_most)

MiB = 1 << 20
FD_SLACK = 2


def rst(sock):
    """Close with SO_LINGER 0: the peer gets a TCP RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def warm(gw):
    """A first session (log files, TLS state), then the fd baseline."""
    echo_works(gw)
    gw.wait_entries(1)
    gw.base_fds = fd_count(gw.pid)
    return gw


def make_gateway(factory, up_behavior=rawup.ws_echo, tls=True,
                 listener=None, pol=None):
    up = factory.raw_upstream(up_behavior)
    echo = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/fault", "fault", "fault"),
                                 ("/echo", "echo")],
                         upstreams={"fault": [up.addr], "echo": [echo.addr]},
                         policies={"fault": pol or policy(frames={
                             "max_frame_size": "2MiB",
                             "max_message_size": "4MiB"})},
                         tls=tls, listener=listener)
    gw.up = up
    return warm(gw)


# -- a client that resets in the middle of a frame ----------------------------

def check_client_reset_mid_frame(factory, opcode):
    gw = make_gateway(factory)
    c = gw.raw()
    c.upgrade("/fault")
    c.send_frame(wsproto.OP_TEXT, b"complete one")
    f = c.read_frame(5)
    assert f is not None and f.payload == b"complete one", f
    (uc,) = gw.up.wait_conns(1)
    # a frame header announcing 1000 bytes, 10 of them, then RST
    c.send(wsproto.encode_frame(opcode, b"", declared_len=1000,
                                mask_key=b"\0\0\0\0") + b"0123456789")
    time.sleep(0.3)
    port = c.local_port
    rst(c.sock)
    assert uc.done.wait(8), "upstream connection left open after the reset"
    closes = uc.close_frames()
    assert len(closes) == 1, \
        "SPEC: client dropped -> the upstream gets 1001 client_dropped; " \
        "after the client reset in the middle of a 1000-byte frame (10 " \
        "bytes sent) the upstream got no close frame; frames: %r, " \
        "unparsed bytes: %r; access log: %r" % (
            uc.frames, bytes(uc.buf[:40]), gw.entries()[-1:])
    assert closes[0].close_code == 1001, closes[0]
    assert closes[0].close_reason == b"client_dropped", closes[0]
    data = [f for f in uc.frames if f.opcode != wsproto.OP_CLOSE]
    assert [f.payload for f in data] == [b"complete one"], data
    e = gw.wait_entry(client_port=port)
    assert (e["status"], e["reason"]) == (101, "client_dropped"), e
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    assert gw.alive()
    echo_works(gw)


def test_client_reset_mid_text_frame_upstream_gets_1001(factory):
    check_client_reset_mid_frame(factory, wsproto.OP_TEXT)


def test_client_reset_mid_binary_frame_upstream_gets_1001(factory):
    check_client_reset_mid_frame(factory, wsproto.OP_BINARY)


def test_client_reset_while_paused_by_deaf_upstream_is_noticed(factory):
    """A client floods an upstream that never reads until the gateway stops
    reading it, then resets.  The gateway must notice the drop (access-log
    client_dropped, both descriptors released) without waiting for the
    policy's idle timeout (300s here)."""
    gw = make_gateway(factory, rawup.deaf(seconds=25), tls=False)
    c = gw.raw()
    c.upgrade("/fault")
    gw.up.wait_conns(1)
    frame = wsproto.encode_frame(wsproto.OP_BINARY, b"\0" * MiB,
                                 mask_key=b"\0\0\0\0")
    view = memoryview(frame)
    c.sock.settimeout(0.3)
    sent, off, stalls = 0, 0, 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and stalls < 5 and sent < 200 * MiB:
        try:
            k = c.sock.send(view[off:off + 256 * 1024])
        except socket.timeout:
            stalls += 1             # 5 x 0.3s with nothing taken: blocked
            continue
        stalls = 0
        sent += k
        off = (off + k) % len(frame)
    assert stalls >= 5, "client never blocked (sent %d MiB)" % (sent // MiB)
    blocked_fds = fd_count(gw.pid)
    port = c.local_port
    rst(c.sock)
    try:
        e = gw.wait_entry(client_port=port, timeout=8)
    except AssertionError:
        raise AssertionError(
            "a client that reset while its reads were paused (upstream not "
            "reading, %d MiB sent) was not noticed within 8s: no access-log "
            "line, descriptors %d -> %d (baseline %d)" % (
                sent // MiB, blocked_fds, fd_count(gw.pid), gw.base_fds))
    assert (e["status"], e["reason"]) == (101, "client_dropped"), e
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    echo_works(gw)


# -- a client that trickles its request ---------------------------------------

@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_request_one_byte_per_second_hits_handshake_timeout(factory, tls):
    gw = make_gateway(factory, tls=tls,
                      listener={"handshake_timeout": "2s"})
    data = rawclient.build_request("/fault")
    t0 = time.monotonic()
    c = gw.raw()
    closed_at = None
    try:
        for b in data[:8]:                  # at most 8 bytes, 8 seconds
            if not c.try_send(bytes([b])):
                closed_at = time.monotonic()
                break
            if c.wait_closed(1.0):
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "trickling client never cut off"
        assert not c.buf.startswith(b"HTTP/1.1 101"), bytes(c.buf)
    finally:
        c.close()
    took = closed_at - t0
    # one deadline for the whole handshake, counted from the connection
    assert 1.8 <= took <= 4.0, \
        "closed after %.2fs with handshake_timeout 2s" % took
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "handshake_timeout", e
    assert gw.up.connections() == [], "a trickled request reached upstream"
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    echo_works(gw)


# -- a client that never completes TLS ----------------------------------------

def client_hello():
    """The bytes of a real TLS ClientHello for localhost."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]
    return hello


@pytest.mark.parametrize("what", ["nothing", "half_client_hello"])
def test_unfinished_tls_closed_at_handshake_timeout(factory, what):
    gw = make_gateway(factory, tls=True,
                      listener={"handshake_timeout": "2s"})
    hello = client_hello()
    socks = []
    t0 = time.monotonic()
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=1)
            if what == "half_client_hello":
                s.sendall(hello[:len(hello) // 2])
            s.setblocking(False)
            socks.append(s)
        closed = {}
        deadline = time.monotonic() + 8
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    got = s.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    got = b""
                assert not got, "gateway answered a half handshake: %r" % got
                closed[i] = time.monotonic() - t0
            time.sleep(0.02)
        assert len(closed) == len(socks), \
            "%d of %d unfinished TLS handshakes still open after 8s" % (
                len(socks) - len(closed), len(socks))
        assert all(1.8 <= t <= 4.5 for t in closed.values()), \
            "closed after %r s with handshake_timeout 2s" % sorted(
                closed.values())
        ports = [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    for p in ports:
        e = gw.wait_entry(client_port=p)
        assert e["reason"] == "handshake_timeout", e
        assert e["status"] is None and e["upstream"] is None, e
    assert gw.up.connections() == [], \
        "an unfinished handshake reached upstream"
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    echo_works(gw)


# -- clients that never read while the upstream floods ------------------------

def test_twenty_clients_never_read_while_upstream_floods(factory):
    """20 TLS clients with small receive buffers never read while their
    upstreams flood 1 MiB frames: every flooding upstream is blocked, the
    gateway's RSS stays under 100 MiB, and once the clients leave its
    descriptors are back at the baseline and it still relays.  A second
    round must not leave the RSS higher than the first did (allocator
    caches aside, nothing is kept per finished session)."""
    n = 20
    flooder = factory.raw_upstream(rawup.flood(total=64 * MiB, seconds=15))
    echo = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/flood", "flood", "big"),
                                 ("/echo", "echo")],
                         upstreams={"flood": [flooder.addr],
                                    "echo": [echo.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "2MiB",
                             "max_message_size": "4MiB"})})
    warm(gw)
    base_rss = rss_bytes(gw.pid)

    def flood_round(label, settle, watch):
        flooder.clear()
        clients = []
        try:
            for _ in range(n):
                c = gw.raw(rcvbuf=64 * 1024)
                c.upgrade("/flood")
                clients.append(c)
            conns = flooder.wait_conns(n)
            time.sleep(settle)
            s1, r1, f1 = [u.sent for u in conns], rss_bytes(gw.pid), \
                fd_count(gw.pid)
            time.sleep(watch)
            s2, r2, f2 = [u.sent for u in conns], rss_bytes(gw.pid), \
                fd_count(gw.pid)
            print("%s: %d flooding upstreams sent %d -> %d MiB in all; "
                  "gateway RSS %d -> %d -> %d KiB; fds %d -> %d -> %d" % (
                      label, n, sum(s1) // MiB, sum(s2) // MiB,
                      base_rss >> 10, r1 >> 10, r2 >> 10, gw.base_fds,
                      f1, f2))
            assert max(r1, r2) < 100 * MiB, \
                "gateway RSS %d MiB with %d clients that never read" % (
                    max(r1, r2) // MiB, n)
            for i in range(n):
                assert not conns[i].done.is_set(), \
                    "flooded session %d ended early" % i
                assert s2[i] - s1[i] < 8 * MiB, \
                    "upstream %d still sending (%d -> %d MiB): not " \
                    "blocked" % (i, s1[i] // MiB, s2[i] // MiB)
            assert f2 <= gw.base_fds + 2 * n + FD_SLACK, (gw.base_fds, f2)
            assert gw.alive()
            echo_works(gw, msg="during the flood")
        finally:
            for c in clients:
                c.close()
        for c in clients:
            e = gw.wait_entry(client_port=c.local_port, timeout=10)
            assert e["status"] == 101 and e["reason"] == "client_dropped", e
        for u in conns:
            assert u.done.wait(10), "a flooding upstream connection left open"
        after = wait_fds_at_most(gw, gw.base_fds + FD_SLACK, timeout=10)
        rss = rss_bytes(gw.pid)
        print("%s, after: fds %d (baseline %d); RSS %d KiB (baseline %d "
              "KiB)" % (label, after, gw.base_fds, rss >> 10,
                        base_rss >> 10))
        assert rss < 100 * MiB
        echo_works(gw)
        return rss

    after1 = flood_round("round 1", 3, 2)
    after2 = flood_round("round 2", 2, 1)
    assert after2 <= after1 + 4 * MiB, \
        "RSS grew from %d to %d KiB over a second identical round" % (
            after1 >> 10, after2 >> 10)
    assert gw.alive()
