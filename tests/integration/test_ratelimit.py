"""Policy `rate_limit` counted in this process, and the main config's
`max_connections` (issue 4).

connections_per_ip and concurrent_per_ip refuse handshakes with 429 and a
Retry-After header (reasons rate_connections / rate_concurrent);
messages_per_connection and bytes_per_connection close an upgraded session
with 1008 (rate_messages / rate_bytes) without forwarding the offending
frame; max_connections refuses with 503 overloaded.  Every refusal is in the
access log and in wsgate_rejections_total{reason}.

Each policy is used by one test only, so the per-address buckets of one
test never leak into another (all clients are 127.0.0.1).
"""

import struct
import time

import pytest

import rawclient
import rawup
import wsproto
from conftest import (PreClient, http_refusal, http_upgrade, metric, policy,
                      wait_for)

B = rawclient.build_request
T, BIN, PING = wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_PING
DATA = (wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_CONT)


def rl(**limits):
    return policy(rate_limit=limits)


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/conn", "rec", "conn"), ("/slow", "rec", "slow"),
                ("/conc", "rec", "conc"), ("/msgs", "rec", "msgs"),
                ("/ping", "rec", "ping"), ("/bytes", "rec", "bytes"),
                ("/free", "rec")],
        upstreams={"rec": [up.addr]},
        policies={
            "conn": rl(connections_per_ip={"rate": "2/s", "burst": 2}),
            "slow": rl(connections_per_ip={"rate": "6/m", "burst": 1}),
            "conc": rl(concurrent_per_ip=2),
            "msgs": rl(messages_per_connection={"rate": "5/s",
                                                "burst": 5}),
            "ping": rl(messages_per_connection={"rate": "5/s",
                                                "burst": 5}),
            "bytes": rl(bytes_per_connection={"rate": "1KiB/s",
                                              "burst": "1KiB"}),
        },
        admin=True)
    g.up = up
    g.settle_probes()
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def rejections(gw, reason):
    return metric(gw.metrics(), "wsgate_rejections_total", reason=reason)


def closes(gw, reason):
    return metric(gw.metrics(), "wsgate_closes_total", reason=reason)


def echo_ok(c, payload=b"ping?"):
    c.send_frame(T, payload)
    f = c.read_frame(5)
    assert f is not None and f.opcode == T and f.payload == payload, f


def retry_after(resp):
    v = resp.one("Retry-After")
    assert v.isdigit(), "Retry-After is not whole seconds: %r" % v
    return int(v)


def upgrade_when_allowed(gw, path, timeout=5.0):
    """Try the handshake until it is accepted (an earlier close is
    released asynchronously); returns the open client."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        c = gw.raw()
        c.send(B(path))
        head = c.read_until(b"\r\n\r\n", 5)
        resp = rawclient.HTTPResponse(head[:-4], b"")
        if resp.status == 101:
            return c
        c.close()
        last = resp
        if time.monotonic() > deadline:
            raise AssertionError("%s still refused after %.0fs: %r" %
                                 (path, timeout, last))
        time.sleep(0.1)


# -- connections_per_ip -------------------------------------------------------

def test_connections_per_ip_refuses_then_recovers(gw, up):
    before = rejections(gw, "rate_connections")
    first, _ = http_upgrade(gw, B("/conn"))
    second, _ = http_upgrade(gw, B("/conn"))
    try:
        resp, e = http_refusal(gw, B("/conn"), 429, "rate_connections")
        ra = retry_after(resp)
        # 2/s: a token is back within 0.5 s, rounded up to whole seconds.
        assert 1 <= ra <= 2, resp
        # Refused handshakes spend no token, and the gateway never
        # connected upstream for them.
        resp2, _ = http_refusal(gw, B("/conn"), 429, "rate_connections")
        assert 1 <= retry_after(resp2) <= 2, resp2
        assert len(up.connections()) == 2, up.connections()
        # The sessions already open are untouched.
        echo_ok(first, b"still here 1")
        echo_ok(second, b"still here 2")
        wait_for(lambda: rejections(gw, "rate_connections") >= before + 2,
                 3, what="wsgate_rejections_total{rate_connections} += 2")
        assert rejections(gw, "rate_connections") == before + 2
        # Retry-After is honest: after it, a handshake is accepted.
        time.sleep(ra + 0.2)
        third, _ = http_upgrade(gw, B("/conn"))
        echo_ok(third, b"after the window")
        third.close()
        echo_ok(first, b"still here 3")
    finally:
        first.close()
        second.close()


def test_retry_after_is_computed_from_the_bucket(gw, up):
    # 6/m with a burst of 1: the next token is about 10 s away.
    c, _ = http_upgrade(gw, B("/slow"))
    try:
        resp, _ = http_refusal(gw, B("/slow"), 429, "rate_connections")
        ra = retry_after(resp)
        assert 8 <= ra <= 11, resp
        echo_ok(c)
    finally:
        c.close()


def test_reload_rewriting_the_period_keeps_the_tokens_spent(factory):
    # "60/m" and "1/s" are the same rate: a client that has spent one of
    # its two tokens still has the other after the reload, rather than
    # being refused for a minute's worth of tokens it never spent.
    up = factory.raw_upstream()
    gw = factory.gateway(
        routes=[("/conn", "rec", "conn")], upstreams={"rec": [up.addr]},
        policies={"conn": rl(connections_per_ip={"rate": "60/m",
                                                 "burst": 2})})
    a, _ = http_upgrade(gw, B("/conn"))
    a.close()
    gw.write_policy("conn", rl(connections_per_ip={"rate": "1/s",
                                                   "burst": 2}))
    gw.reload()
    b, _ = http_upgrade(gw, B("/conn"))
    echo_ok(b, b"second token")
    b.close()


# -- concurrent_per_ip --------------------------------------------------------

def test_concurrent_per_ip_refuses_then_recovers(gw, up):
    before = rejections(gw, "rate_concurrent")
    a, _ = http_upgrade(gw, B("/conc"))
    b, _ = http_upgrade(gw, B("/conc"))
    try:
        resp, e = http_refusal(gw, B("/conc"), 429, "rate_concurrent")
        assert resp.one("Retry-After") == "1", resp
        assert len(up.connections()) == 2
        echo_ok(a, b"a lives")
        echo_ok(b, b"b lives")
        wait_for(lambda: rejections(gw, "rate_concurrent") == before + 1,
                 3, what="wsgate_rejections_total{rate_concurrent} += 1")
        # Other routes (other policies) are not limited by this one.
        f, _ = http_upgrade(gw, B("/free"))
        f.close()
        # Close one: a new connection is accepted, and only one.
        b.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
        b.read_close(5)
        b.close()
        c = upgrade_when_allowed(gw, "/conc")
        try:
            echo_ok(c, b"c replaces b")
            http_refusal(gw, B("/conc"), 429, "rate_concurrent")
        finally:
            c.close()
        echo_ok(a, b"a still lives")
    finally:
        a.close()
        b.close()


# -- messages_per_connection / bytes_per_connection ---------------------------

def data_frames(conn):
    return [f for f in conn.frames if f.opcode in DATA]


def expect_rate_close(gw, up, c, reason):
    close, _ = c.read_close(5)
    assert close.close_code == 1008, close
    assert close.close_reason == reason.encode(), close
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason and e["close_code"] == 1008, e
    conn = up.wait_conns(1)[0]
    wait_for(lambda: conn.close_frames(), 5, what="upstream close frame")
    assert conn.close_frames()[0].close_code == 1001, conn.frames
    return conn


def test_messages_per_connection_closes_sixth_message(gw, up):
    before = closes(gw, "rate_messages")
    c, _ = http_upgrade(gw, B("/msgs"))
    try:
        burst = b"".join(wsproto.encode_frame(T, b"m%d" % i)
                         for i in range(1, 7))
        c.send(burst)
        conn = expect_rate_close(gw, up, c, "rate_messages")
    finally:
        c.close()
    got = [f.payload for f in data_frames(conn)]
    assert got == [b"m1", b"m2", b"m3", b"m4", b"m5"], got
    wait_for(lambda: closes(gw, "rate_messages") == before + 1, 3,
             what="wsgate_closes_total{rate_messages} += 1")


def test_messages_per_connection_refills(gw, up):
    c, _ = http_upgrade(gw, B("/msgs"))
    try:
        for rnd in range(2):
            c.send(b"".join(wsproto.encode_frame(T, b"r%d-%d" % (rnd, i))
                            for i in range(5)))
            for i in range(5):
                f = c.read_frame(5)
                assert f is not None and f.payload == b"r%d-%d" % (rnd, i), f
            time.sleep(1.2)         # 5/s: the bucket is full again
        c.send(b"".join(wsproto.encode_frame(T, b"x%d" % i)
                        for i in range(8)))
        conn = expect_rate_close(gw, up, c, "rate_messages")
    finally:
        c.close()
    assert len(data_frames(conn)) == 15, [f.payload for f in conn.frames]


def test_messages_per_connection_does_not_limit_the_upstream(gw, up):
    """The rate limits are on what the client sends: twelve messages from
    the upstream under a 5/s burst of 5 all reach the client."""
    sent = [b"u%d" % i for i in range(12)]
    up.behavior = rawup.ws_then(b"".join(
        wsproto.encode_frame(T, m, mask=False) for m in sent), delay=None)
    try:
        c, _ = http_upgrade(gw, B("/msgs"))
        try:
            got = [c.read_frame(5) for _ in sent]
            assert [(f.opcode, f.payload) for f in got if f] == \
                [(T, m) for m in sent], got
            c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                        wsproto.close_payload(1000)))
        finally:
            c.close()
        e = gw.wait_entry(client_port=c.local_port)
        assert e["reason"] in ("client_closed", "client_dropped"), e
        assert e["frames_out"] == len(sent), e
    finally:
        up.behavior = rawup.ws_echo


def test_messages_per_connection_counts_a_fragmented_message_once(gw, up):
    """A message is one message however many fragments carry it: one in
    eight fragments, then four whole ones, is five messages under a
    burst of five, and all of them reach the backend; the client's own
    close ends the session."""
    CONT = wsproto.OP_CONT
    c, _ = http_upgrade(gw, B("/msgs"))
    try:
        frags = [wsproto.encode_frame(T, b"f0", fin=False)]
        frags += [wsproto.encode_frame(CONT, b"f%d" % i, fin=False)
                  for i in range(1, 7)]
        frags.append(wsproto.encode_frame(CONT, b"f7"))
        c.send(b"".join(frags) +
               b"".join(wsproto.encode_frame(T, b"w%d" % i)
                        for i in range(4)))
        got = []
        while len(got) < 12:
            f = c.read_frame(5)
            assert f is not None and f.opcode in DATA, (f, got)
            got.append(f.payload)
        assert got == [b"f%d" % i for i in range(8)] + \
            [b"w%d" % i for i in range(4)], got
        c.send(wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(1000)))
        close, _ = c.read_close(5)
        assert close.close_code == 1000, close
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 1000), e
    conn = up.wait_conns(1)[0]
    assert len(data_frames(conn)) == 12, conn.frames


def test_ping_flood_closed_by_messages_per_connection(gw, up):
    c, _ = http_upgrade(gw, B("/ping"))
    try:
        c.send(b"".join(wsproto.encode_frame(PING, b"p%d" % i)
                        for i in range(50)))
        close, others = c.read_close(5)
        assert close.close_code == 1008, close
        assert close.close_reason == b"rate_messages", close
        assert len([f for f in others if f.opcode == wsproto.OP_PONG]) <= 5
        e = gw.wait_entry(client_port=c.local_port)
        assert e["reason"] == "rate_messages", e
    finally:
        c.close()
    for conn in up.connections():
        pings = [f for f in conn.frames if f.opcode == PING]
        assert len(pings) <= 5, pings


def test_bytes_per_connection_closes_frame_over_the_burst(gw, up):
    before = closes(gw, "rate_bytes")
    c, _ = http_upgrade(gw, B("/bytes"))
    try:
        # 1 KiB burst: five 200-byte frames fit (1000 bytes), the sixth
        # does not.
        c.send(b"".join(wsproto.encode_frame(BIN, bytes([i]) * 200)
                        for i in range(1, 7)))
        conn = expect_rate_close(gw, up, c, "rate_bytes")
    finally:
        c.close()
    frames = data_frames(conn)
    assert [f.payload for f in frames] == \
        [bytes([i]) * 200 for i in range(1, 6)], \
        [(f.opcode, len(f.payload)) for f in frames]
    wait_for(lambda: closes(gw, "rate_bytes") == before + 1, 3,
             what="wsgate_closes_total{rate_bytes} += 1")


def test_bytes_per_connection_lets_a_spent_client_close(gw, up):
    """A client that has spent its whole byte burst can still close: its
    close frame is not counted (messages_per_connection does not count it
    either, and a client sends only one), so the backend gets the
    client's own code, not 1001 for a rate_bytes close."""
    c, _ = http_upgrade(gw, B("/bytes"))
    try:
        c.send(wsproto.encode_frame(BIN, b"s" * 1024) +
               wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(4001, "done")))
        close, _ = c.read_close(5)
        assert (close.close_code, close.close_reason) == (4001, b"done"), \
            close
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 4001), e
    conn = up.wait_conns(1)[0]
    wait_for(lambda: conn.close_frames(), 5, what="upstream close frame")
    assert [len(f.payload) for f in data_frames(conn)] == [1024]
    assert conn.close_frames()[0].close_code == 4001, conn.frames


def test_messages_per_connection_lets_a_spent_client_close(gw, up):
    """A client that has sent its whole message burst can still close:
    the close frame is not a message, so the backend gets the client's
    own code, not 1001 for a rate_messages close."""
    c, _ = http_upgrade(gw, B("/msgs"))
    try:
        c.send(b"".join(wsproto.encode_frame(T, b"m%d" % i)
                        for i in range(5)) +
               wsproto.encode_frame(wsproto.OP_CLOSE,
                                    wsproto.close_payload(4002, "bye")))
        close, _ = c.read_close(5)
        assert (close.close_code, close.close_reason) == (4002, b"bye"), \
            close
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("client_closed", 4002), e
    conn = up.wait_conns(1)[0]
    wait_for(lambda: conn.close_frames(), 5, what="upstream close frame")
    assert len(data_frames(conn)) == 5, conn.frames
    assert conn.close_frames()[0].close_code == 4002, conn.frames


def test_bytes_per_connection_refills(gw, up):
    c, _ = http_upgrade(gw, B("/bytes"))
    try:
        for rnd in range(2):
            c.send_frame(BIN, b"z" * 1000)
            f = c.read_frame(5)
            assert f is not None and len(f.payload) == 1000, f
            time.sleep(1.2)         # 1 KiB/s: the bucket is full again
        c.send_frame(BIN, b"y" * 1000)
        f = c.read_frame(5)
        assert f is not None and len(f.payload) == 1000, f
        c.send_frame(BIN, b"w" * 200)
        conn = expect_rate_close(gw, up, c, "rate_bytes")
    finally:
        c.close()
    assert [len(f.payload) for f in data_frames(conn)] == [1000] * 3


def test_bytes_per_connection_counts_empty_frames(gw, up):
    """Empty continuations are no message and carry no payload; each
    costs a byte, or no per-connection limit would ever stop a flood of
    them.  The 1 KiB burst lets about a thousand through."""
    c, _ = http_upgrade(gw, B("/bytes"))
    try:
        c.send_frame(T, b"x", fin=False)
        c.send(wsproto.encode_frame(wsproto.OP_CONT, b"", fin=False) * 5000)
        conn = expect_rate_close(gw, up, c, "rate_bytes")
    finally:
        c.close()
    assert 1000 <= len(data_frames(conn)) <= 1100, len(data_frames(conn))


def test_zz_gateway_still_relays(gw, up):
    c, _ = http_upgrade(gw, B("/free"))
    try:
        for i in range(20):
            echo_ok(c, b"free %d" % i)
    finally:
        c.close()


# -- max_connections ------------------------------------------------------------

def test_max_connections_refuses_with_503_overloaded(factory):
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/echo", "rec")],
                         upstreams={"rec": [up.addr]},
                         top={"max_connections": 2}, admin=True)
    gw.settle_probes()
    before = rejections(gw, "overloaded")
    a, _ = http_upgrade(gw, B("/echo"))
    b, _ = http_upgrade(gw, B("/echo"))
    try:
        resp, _ = http_refusal(gw, B("/echo"), 503, "overloaded")
        assert len(up.connections()) == 2
        echo_ok(a, b"a")
        echo_ok(b, b"b")
        wait_for(lambda: rejections(gw, "overloaded") == before + 1, 3,
                 what="wsgate_rejections_total{overloaded} += 1")
        a.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
        a.read_close(5)
        a.close()
        c = upgrade_when_allowed(gw, "/echo")
        try:
            echo_ok(c, b"c")
            http_refusal(gw, B("/echo"), 503, "overloaded")
        finally:
            c.close()
        echo_ok(b, b"b again")
    finally:
        a.close()
        b.close()


# -- IPv6 clients are keyed by their /64 (addresses from a PROXY v2 header) -----

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, dst, sport=40000, dport=443):
    import socket
    af, fam = (socket.AF_INET6, 0x21) if ":" in src else \
        (socket.AF_INET, 0x11)
    body = socket.inet_pton(af, src) + socket.inet_pton(af, dst) + \
        struct.pack("!HH", sport, dport)
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def test_ipv6_clients_are_keyed_by_prefix(factory):
    up = factory.raw_upstream()
    gw = factory.gateway(
        routes=[("/v6", "rec", "v6"), ("/v6w", "rec", "v6w")],
        upstreams={"rec": [up.addr]},
        policies={"v6": rl(concurrent_per_ip=1),
                  "v6w": rl(concurrent_per_ip=1, ipv6_prefix=48)},
        listener={"proxy_protocol": True})

    ports = iter(range(41000, 42000))

    def proxied(src):
        dst = "2001:db8::ffff" if ":" in src else "192.0.2.254"
        c = PreClient(gw.port)
        c.sport = next(ports)
        c.send(v2(src, dst, sport=c.sport))
        return c.start_tls(gw.ssl)

    def refused(path, src):
        c = proxied(src)
        http_refusal(gw, B(path), 429, "rate_concurrent", client=c,
                     log_port=c.sport)

    held = []
    try:
        c, _ = http_upgrade(gw, B("/v6"), client=proxied("2001:db8:1:1::1"))
        held.append(c)
        # Same /64, another host: the same client.
        refused("/v6", "2001:db8:1:1:ffff::2")
        # Another /64 and an IPv4 client are counted apart.
        for src in ("2001:db8:1:2::1", "198.51.100.7"):
            c, _ = http_upgrade(gw, B("/v6"), client=proxied(src))
            held.append(c)
        # ipv6_prefix: 48 puts 2001:db8:1:1::/64 and 2001:db8:1:2::/64
        # together.
        c, _ = http_upgrade(gw, B("/v6w"), client=proxied("2001:db8:1:1::1"))
        held.append(c)
        refused("/v6w", "2001:db8:1:2::1")
        c, _ = http_upgrade(gw, B("/v6w"), client=proxied("2001:db8:2::1"))
        held.append(c)
    finally:
        for c in held:
            c.close()


# -- exact across worker threads ------------------------------------------------

def race(gw, path, n):
    """n handshakes at once, each on its own thread, all sent together
    once every TLS connection is up.  Returns (accepted clients, statuses)."""
    import threading
    clients = [gw.raw() for _ in range(n)]
    for c in clients:
        c.sock.do_handshake()
    go = threading.Barrier(n)
    statuses = [None] * n

    def one(i):
        c = clients[i]
        try:
            go.wait(10)
            c.send(B(path))
            head = c.read_until(b"\r\n\r\n", 10)
            statuses[i] = rawclient.HTTPResponse(head[:-4], b"").status
        except Exception as e:     # reported through statuses
            statuses[i] = repr(e)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    ok = [c for c, st in zip(clients, statuses) if st == 101]
    for c, st in zip(clients, statuses):
        if st != 101:
            c.close()
    return ok, statuses


@pytest.mark.parametrize("pol,reason", [
    ({"concurrent_per_ip": 5}, "rate_concurrent"),
    ({"connections_per_ip": {"rate": "1/m", "burst": 5}}, "rate_connections"),
])
def test_limits_are_exact_across_worker_threads(factory, pol, reason):
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/race", "rec", "race")],
                         upstreams={"rec": [up.addr]},
                         policies={"race": rl(**pol)},
                         top={"workers": 4})
    ok, statuses = race(gw, "/race", 40)
    try:
        assert sorted(statuses, key=str) == [101] * 5 + [429] * 35, statuses
        def refusals():
            r = [e for e in gw.entries() if e["status"] == 429]
            return len(r) >= 35 and r
        refused = wait_for(refusals, 10, what="35 refusals in the log")
        assert len(refused) == 35 and \
            all(e["reason"] == reason for e in refused), refused[:3]
        for c in ok:
            echo_ok(c, b"one of five")
    finally:
        for c in ok:
            c.close()


def test_max_connections_is_exact_across_worker_threads(factory):
    # session_admit_rest() reads the admitted count, then adds to it later:
    # two workers can both take the last slot (seen as 6 of 5 in about one
    # run in 40).  The assertion stays exact.
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/echo", "rec")],
                         upstreams={"rec": [up.addr]},
                         top={"workers": 4, "max_connections": 5})
    ok, statuses = race(gw, "/echo", 40)
    try:
        assert sorted(statuses, key=str) == [101] * 5 + [503] * 35, statuses
    finally:
        for c in ok:
            c.close()


# -- the per-address table, full of addresses with open connections -----------

def test_full_table_refuses_rather_than_admit_uncounted(factory):
    # With max_entries 1000 each of the 64 parts of the table holds 15 or
    # 16 addresses; 1000 addresses with an open connection each overflow
    # some parts.  An address that cannot be counted used to be admitted
    # anyway, uncounted: concurrent_per_ip did not hold for it.  Now it is
    # refused with 503 overloaded and counted in the metrics.
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/one", "rec", "one")],
                         upstreams={"rec": [up.addr]},
                         policies={"one": rl(concurrent_per_ip=1)},
                         listener={"proxy_protocol": True}, tls=False,
                         top={"rate_limit_table": {"max_entries": 1000}},
                         admin=True)

    def attempt(i):
        src = "198.18.%d.%d" % (i >> 8, i & 0xff)
        c = gw.raw()
        c.send(v2(src, "192.0.2.254") + B("/one"))
        head = c.read_until(b"\r\n\r\n", 10)
        st = rawclient.HTTPResponse(head[:-4], b"").status
        if st != 101:
            c.close()
            return st, None
        return st, c

    held, first, twice = [], {}, []
    try:
        for i in range(1000):
            st, c = attempt(i)
            first[i] = st
            if c is not None:
                held.append(c)
        assert set(first.values()) <= {101, 503}, \
            sorted(set(first.values()))
        # A second connection of an address is never admitted.
        for i in range(900, 1000):
            st, c = attempt(i)
            if c is not None:
                held.append(c)
                twice.append(i)
        assert twice == [], "%d addresses admitted twice under " \
            "concurrent_per_ip 1: %r" % (len(twice), twice[:5])
        refused = [i for i, st in first.items() if st == 503]
        assert refused, "1000 addresses fit 1000/64 a part"
        e = gw.wait_entry(pred=lambda e: e["status"] == 503)
        assert e["reason"] == "overloaded", e
        assert metric(gw.metrics(), "wsgate_ratelimit_table_full_total") \
            >= len(refused)
    finally:
        for c in held:
            c.close()


def test_flood_of_idle_addresses_does_not_reset_a_limited_one(factory):
    # A full table evicts the least recently used address with no open
    # connection.  Addresses whose bucket is full lose nothing when
    # dropped; one whose tokens are spent loses its limit.  A flood of
    # fresh addresses on a route that only counts open connections used
    # to evict the limited address of another route, which then got a
    # fresh burst.
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/strict", "rec", "strict"),
                                 ("/open", "rec", "open")],
                         upstreams={"rec": [up.addr]},
                         policies={"strict": rl(connections_per_ip={
                                       "rate": "1/h", "burst": 1}),
                                   "open": rl(concurrent_per_ip=100)},
                         listener={"proxy_protocol": True}, tls=False,
                         top={"rate_limit_table": {"max_entries": 1000}},
                         admin=True)

    def status(src, path):
        c = gw.raw()
        try:
            c.send(v2(src, "192.0.2.254") + B(path))
            head = c.read_until(b"\r\n\r\n", 10)
            return rawclient.HTTPResponse(head[:-4], b"").status
        finally:
            c.close()

    target = "203.0.113.9"
    assert status(target, "/strict") == 101
    assert status(target, "/strict") == 429
    for i in range(3000):
        assert status("198.18.%d.%d" % (i >> 8, i & 0xff), "/open") == 101
    evicted = metric(gw.metrics(), "wsgate_ratelimit_table_evictions_total")
    assert evicted >= 1000, evicted
    assert status(target, "/strict") == 429, \
        "the flood reset the limited address"
