"""A thousand clients that never read while their upstreams flood (issue 7).

Each of N TLS clients (receive buffer 4 KiB) completes its upgrade and
then never reads again, while its upstream sends 64 KiB binary frames as
fast as the gateway takes them.  The gateway stops reading an upstream once
the client's side holds its high-water mark (256 KiB, WSG_HIGH_WATER), so
what one such session can cost is bounded.  The stated bound: the
gateway's RSS stays under its baseline plus N x 768 KiB, that is twice the
high-water mark plus one frame of the policy's max_frame_size (128 KiB),
twice because libevent rounds each buffer chain up to a power of two.
Measured on a 2-core machine: about 375 KiB per session for the plain
build, 530 KiB under ASan; without backpressure the upstreams here would
push several MiB each.  Meanwhile a normal client still gets its echo;
when the readers leave, every session is logged as client_dropped and
descriptors return to the baseline.

Under ASan the freed buffers wait in ASan's quarantine (256 MiB by
default) before their memory is reused, which is not memory the gateway
holds; the test starts the daemon with a quarantine of 16 MiB so the RSS
it reads is the gateway's own.
"""

import os
import resource
import time

import rawup
from conftest import echo_works, fd_count, policy, rss_bytes, wait_fds_at_most

KiB = 1024
MiB = 1024 * KiB
N = 1000
PER_SESSION_BOUND = 2 * (256 + 128) * KiB
FD_SLACK = 2


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_thousand_clients_never_read_while_upstreams_flood(factory):
    # the test holds 2N sockets (clients and upstream ends), the daemon 2N
    nofile = raise_nofile(4 * N + 512)
    assert nofile >= 2 * N + 256, "RLIMIT_NOFILE %d too low" % nofile
    flooder = factory.raw_upstream(rawup.flood(total=16 * MiB, seconds=90,
                                               chunk=64 * KiB))
    echo = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/flood", "flood", "flood"),
                                 ("/echo", "echo")],
                         upstreams={"flood": [flooder.addr],
                                    "echo": [echo.addr]},
                         policies={"flood": policy(frames={
                             "max_frame_size": "128KiB",
                             "max_message_size": "1MiB"})},
                         top={"max_connections": 4 * N}, start=False)
    asan = os.environ.get("ASAN_OPTIONS", "")
    gw.start(env=dict(os.environ, ASAN_OPTIONS=(
        asan + ":" if asan else "") + "quarantine_size_mb=16"))
    echo_works(gw)
    gw.wait_entries(1)
    base_fds = fd_count(gw.pid)
    base_rss = rss_bytes(gw.pid)

    clients = []
    t0 = time.monotonic()
    try:
        for _ in range(N):
            c = gw.raw(rcvbuf=4 * KiB, timeout=20)
            c.upgrade("/flood", timeout=20)
            clients.append(c)
        conns = flooder.wait_conns(N, timeout=30)
        opened = time.monotonic() - t0
        # wait until every upstream is blocked: nothing more taken in 1 s
        deadline = time.monotonic() + 90
        prev = sum(u.sent for u in conns)
        while time.monotonic() < deadline:
            time.sleep(1.0)
            cur = sum(u.sent for u in conns)
            if cur - prev < MiB:
                break
            prev = cur
        settled = time.monotonic() - t0
        sent = [u.sent for u in conns]
        rss = rss_bytes(gw.pid)
        fds = fd_count(gw.pid)
        bound = base_rss + N * PER_SESSION_BOUND
        print("%d readers opened in %.1f s, upstreams blocked after %.1f s; "
              "they sent %d MiB in all (%d..%d KiB each); gateway RSS %d "
              "MiB (baseline %d MiB, bound %d MiB), fds %d (baseline %d)" % (
                  N, opened, settled, sum(sent) // MiB, min(sent) // KiB,
                  max(sent) // KiB, rss // MiB, base_rss // MiB,
                  bound // MiB, fds, base_fds))
        assert cur - prev < MiB, \
            "the upstreams were still sending after 90 s: not blocked"
        assert rss < bound, \
            "gateway RSS %d MiB over the bound %d MiB with %d clients " \
            "that never read" % (rss // MiB, bound // MiB, N)
        # no upstream was allowed to send without limit
        assert max(sent) < 16 * MiB, max(sent)
        for i, u in enumerate(conns):
            assert not u.done.is_set(), "flooded session %d ended early" % i
        assert fds <= base_fds + 2 * N + FD_SLACK, (base_fds, fds)
        assert gw.alive()
        echo_works(gw, msg="during the flood")
    finally:
        for c in clients:
            c.close()
    ports = {c.local_port for c in clients}
    entries = gw.wait_entries(2 + N, timeout=60)
    # the echo clients' ports may be reused by readers: match the route too
    mine = [e for e in entries
            if e["route"] == "/flood" and e["client_port"] in ports]
    assert len(mine) == N, (len(mine), N)
    bad = [e for e in mine
           if e["status"] != 101 or e["reason"] != "client_dropped"]
    assert not bad, bad[:3]
    for u in conns:
        assert u.done.wait(20), "a flooding upstream connection left open"
    wait_fds_at_most(gw, base_fds + FD_SLACK, timeout=20)
    echo_works(gw)
