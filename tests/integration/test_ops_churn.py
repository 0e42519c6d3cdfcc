"""What the daemon holds as it lives through churn: descriptors, memory and
threads read from /proc/PID after a warm-up round and again after many
more rounds, never a time.

A TLS 1.2 client that refuses session tickets leaves no session behind in
the gateway's memory.  A sanitizer build is held to the descriptors and
threads, and to LeakSanitizer at exit.
"""

import socket
import ssl

import rawclient
from conftest import fd_count, wait_for

B = rawclient.build_request


def grown(gw, before, after, bound, what):
    """RssAnon grew by less than bound KiB.  Not asserted on a sanitizer
    build: its allocator's own bookkeeping grows with the work done (some
    1.7 KiB per TLS 1.2 handshake here, where the plain build stays
    flat), and LeakSanitizer checks that build's memory at exit."""
    with open("/proc/%d/maps" % gw.pid) as f:
        if "libasan" in f.read():
            return
    kib = after["RssAnon"] - before["RssAnon"]
    assert kib < bound, "RssAnon grew %d KiB over %s: %r -> %r" % (
        kib, what, before, after)


def held(pid):
    """What a process holds now: descriptors, anonymous resident memory
    (KiB) and threads, from /proc/PID."""
    out = {"fds": fd_count(pid)}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "Threads"):
                out[key] = int(value.split()[0])
    return out


def settled(gw, fds=None):
    """held() once the last connections of a round have closed: the same
    descriptor count three times 100 ms apart, or, given fds, once it is
    back to fds (a leak never gets there: the assertion says so)."""
    seen = []

    def steady():
        seen.append(fd_count(gw.pid))
        if fds is not None:
            return seen[-1] == fds
        return len(seen) >= 3 and len(set(seen[-3:])) == 1
    try:
        wait_for(steady, 5, interval=0.1)
    except AssertionError:
        raise AssertionError("wsgate holds %d descriptors, %s" % (
            seen[-1], "not %d as before" % fds if fds is not None
            else "never steady"))
    return held(gw.pid)


def tls_refused(gw, ctx, session=None):
    """A full TLS connection and a request the gateway refuses (404, which
    it follows with its close_notify): whether the session was resumed
    and the session the client got."""
    s = socket.create_connection((gw.host, gw.port), timeout=5)
    t = ctx.wrap_socket(s, server_hostname="localhost", session=session)
    try:
        t.sendall(B("/nowhere"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = t.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 404 "), head
        return t.session_reused, t.session
    finally:
        t.close()


def test_tls12_sessions_without_tickets_are_not_kept(factory, certs):
    """OpenSSL's server-side session cache would keep every TLS 1.2
    session the gateway closed cleanly, for a client that refuses tickets:
    about 1.2 KiB each, up to 20480 per listener and generation, for two
    hours.  Nothing is kept: 700 such handshakes leave RssAnon within
    300 KiB (the cache took some 840 KiB), and a session ID the gateway
    handed out does not resume."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:1"]})
    ctx = ssl.create_default_context(cafile=certs["cert"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    for _ in range(100):
        tls_refused(gw, ctx)
    before = settled(gw)
    for _ in range(700):
        _, sess = tls_refused(gw, ctx)
    after = settled(gw, before["fds"])
    grown(gw, before, after, 300, "700 handshakes")
    assert not sess.has_ticket
    reused, _ = tls_refused(gw, ctx, session=sess)
    assert not reused, "a TLS 1.2 session was kept for its session ID"

