"""A listener's max_pending_per_ip: connections of one client address
that have not yet sent their request head (TLS handshake included).

One client may no longer hold every such connection until
handshake_timeout: over the cap it is refused as it is accepted, reason
rate_concurrent (closed on TLS, 429 on plaintext), while another address
gets in.  A slot comes back when the head is read, the connection closes
or times out, and is counted once: the cap admits exactly that many again
afterwards.  Addresses are told apart with a second loopback address
(127.0.0.2) and with PROXY protocol headers.

Accepts are taken in order by the one worker thread: once the extra
connection's refusal is logged, the connections made before it, which
have no line of their own, were admitted.
"""

import copy
import socket
import subprocess

import pytest

import rawclient
import wsproto
from conftest import WSGATE, free_port, metric

B = rawclient.build_request


class Conn(rawclient.RawClient):
    """A raw client from a chosen source address, TLS started later (or
    never): a silent connection stays in its handshake."""

    def __init__(self, gw, src="127.0.0.1", timeout=5.0):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.bind((src, 0))
        except OSError as e:
            s.close()
            pytest.skip("cannot bind %s: %s" % (src, e))
        # Its port is known once bound: a refusal may be logged before
        # connect() returns.
        self.local_port = s.getsockname()[1]
        gw.port_floor[self.local_port] = gw._log_lines()
        s.connect((gw.host, gw.port))
        self.sock = s
        self.buf = bytearray()
        self.eof = False
        self.key = None
        self.gw = gw

    def tls(self):
        if self.gw.tls:
            self.sock = self.gw.ssl.wrap_socket(self.sock,
                                                server_hostname="localhost")
        return self


def gateway(factory, cap, tls=True, admin=False, **listener):
    up = factory.raw_upstream()
    lst = {"max_pending_per_ip": cap}
    lst.update(listener)
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]}, tls=tls,
                         listener=lst, admin=admin)
    gw.up = up
    # The readiness probe is pending until its close is seen.
    gw.settle_probes()
    return gw


def assert_refused(gw, c, client="127.0.0.1", port=None):
    """c was refused on accept: closed (TLS) or answered 429
    (plaintext), and logged as rate_concurrent for its address (and
    port, when a PROXY header gave another)."""
    if gw.tls:
        assert c.wait_closed(5), "over the cap, but left open"
        assert bytes(c.buf) == b""
        status = None
    else:
        resp = c.http_response(timeout=5)
        assert resp.status == 429, resp
        assert resp.one("Retry-After") == "1", resp
        assert b"rate_concurrent" in resp.body, resp
        status = 429
    if port is None:
        e = gw.wait_entry(client_port=c.local_port)
    else:
        e = gw.wait_entry(pred=lambda e: e["client_port"] == port)
    assert e["reason"] == "rate_concurrent", e
    assert e["status"] == status and e["client"] == client, e
    assert e["route"] is None, e
    return e


def assert_pending(gw, conns):
    """None of conns has been closed or logged.  The kernel hands a port
    out again: a line logged before a client took its port (a refused
    connection of an earlier round) is not that client's."""
    floor = {c.local_port: gw.port_floor.get(c.local_port, 0)
             for c in conns}
    mine = [e for i, e in gw._entries()
            if e["client_port"] in floor and i >= floor[e["client_port"]]]
    assert not mine, mine


def fill(gw, n, src="127.0.0.1"):
    """n silent connections from src are all taken, the next one is
    refused; returns the n, still open."""
    held = [Conn(gw, src) for _ in range(n)]
    extra = Conn(gw, src)
    try:
        assert_refused(gw, extra, src)
    finally:
        extra.close()
    assert_pending(gw, held)
    return held


def upgrade(gw, src="127.0.0.1", path="/echo"):
    """A whole upgrade from src; returns the open client."""
    c = Conn(gw, src).tls()
    c.upgrade(path)
    return c


def close_all(gw, conns, reason="handshake_failed"):
    for c in conns:
        c.close()
    for c in conns:
        e = gw.wait_entry(client_port=c.local_port)
        assert e["reason"] == reason, e


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
def test_over_the_cap_is_refused_another_address_gets_in(factory, tls):
    gw = gateway(factory, 3, tls=tls, admin=True)
    m0 = gw.metrics()
    held = fill(gw, 3)
    # Another client is not held back by the first one's connections.
    other = fill(gw, 3, "127.0.0.2")
    c = upgrade(gw, "127.0.0.3")
    c.send_frame(wsproto.OP_TEXT, b"hello", mask=True)
    f = c.read_frame()
    assert f is not None and f.payload == b"hello", f
    c.close()
    assert_pending(gw, held + other)
    m = gw.metrics()
    for name, labels, want in (
            ("wsgate_rejections_total", {"reason": "rate_concurrent"}, 2),
            ("wsgate_handshakes_total", {"result": "rejected"}, 2)):
        assert (metric(m, name, **labels) or 0) - \
            (metric(m0, name, **labels) or 0) == want, name
    assert "refused: rate_concurrent: 127.0.0.1 has 3 connections " \
        "without a request head on public" in gw.error_text()
    close_all(gw, held + other)


def test_a_slot_comes_back_on_close_head_refusal_and_timeout(factory):
    gw = gateway(factory, 2, handshake_timeout="1s")
    # Closed by the client, as a TLS handshake that fails is.
    held = fill(gw, 2)
    close_all(gw, held)
    held = fill(gw, 2)
    # A head that is read: routed and open, it no longer counts here.
    held[0].tls().upgrade()
    # ... and refused by the route's check (no route): neither.
    held[1].tls().send(B("/nowhere"))
    assert held[1].http_response().status == 404
    e = gw.wait_entry(client_port=held[1].local_port)
    assert e["reason"] == "no_route", e
    more = fill(gw, 2)
    # Timed out: each slot is back, once.
    for c in more:
        e = gw.wait_entry(client_port=c.local_port, timeout=10)
        assert e["reason"] == "handshake_timeout", e
    again = fill(gw, 2)
    held[0].close()
    close_all(gw, again)


def test_a_head_read_in_pieces_keeps_its_slot_until_it_is_whole(factory):
    gw = gateway(factory, 1, tls=False)
    c = Conn(gw)
    req = B("/echo")
    c.send(req[:20])
    extra = Conn(gw)
    assert_refused(gw, extra)
    extra.close()
    c.send(req[20:])
    head = c.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    upgrade(gw).close()
    c.close()


def test_a_slot_comes_back_at_the_timeout_not_after_the_linger(factory):
    # A half-sent head times out; its client keeps the connection open,
    # so the closed session lingers for the client's EOF.  The slot is
    # back as the session closes, not once the linger ends.
    gw = gateway(factory, 1, tls=False, handshake_timeout="1s")
    c = Conn(gw)
    c.send(B("/echo")[:20])
    e = gw.wait_entry(client_port=c.local_port, timeout=10)
    assert e["reason"] == "handshake_timeout", e
    nxt = Conn(gw)
    nxt.send(B("/echo"))
    head = nxt.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    nxt.close()
    c.close()


def test_two_workers_share_one_count(factory):
    """With two worker threads, each with its own listening socket, an
    address's connections count together whichever worker took them.
    Each slot comes back once: a session whose head was read gave its
    slot back then, and closing it later while others hold the cap gives
    back nothing more."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]}, top={"workers": 2},
                         listener={"max_pending_per_ip": 4})
    gw.settle_probes()
    opened = []
    for _ in range(2):
        # A finished TLS handshake: the worker has counted it.
        held = [Conn(gw).tls() for _ in range(4)]
        for c in opened:
            c.close()
        for c in opened:
            gw.wait_entry(client_port=c.local_port)
        for _ in range(6):
            extra = Conn(gw)
            assert_refused(gw, extra)
            extra.close()
        assert_pending(gw, held)
        opened = held[:2]
        for c in opened:
            c.upgrade()
        for c in held[2:]:
            c.close()
        for c in held[2:]:
            gw.wait_entry(client_port=c.local_port)
    for c in opened:
        c.close()


def v1(src, sport):
    fam, dst = ("TCP6", "2001:db8::443") if ":" in src else \
        ("TCP4", "198.51.100.1")
    return ("PROXY %s %s %s %d 443\r\n" % (fam, src, dst, sport)).encode()


def test_proxy_protocol_counts_the_address_of_the_header(factory):
    """Before its header a connection is the load balancer's and does not
    count, so several wait for theirs under a cap of 1.  From its header
    on, it counts for the client the header names."""
    gw = gateway(factory, 1, proxy_protocol=True)
    lb = [Conn(gw) for _ in range(3)]
    lb[0].send(v1("192.0.2.1", 40000))
    lb[1].send(v1("192.0.2.1", 40001))
    assert_refused(gw, lb[1], "192.0.2.1", 40001)
    lb[2].send(v1("192.0.2.2", 40002))
    lb[2].tls().upgrade()
    lb[0].tls().upgrade()
    for c in lb:
        c.close()
    for port, client in ((40000, "192.0.2.1"), (40002, "192.0.2.2")):
        e = gw.wait_entry(pred=lambda e: e["client_port"] == port)
        assert e["status"] == 101 and e["client"] == client, e


def test_each_listener_counts_its_own(factory):
    """The cap is per listener: a client that holds its cap of silent
    connections on one listener still gets in on another, which counts
    its own."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": [up.addr]}, tls=False,
                         listener={"max_pending_per_ip": 1}, start=False)
    port2 = free_port("127.0.0.1")
    second = copy.deepcopy(gw.config["listeners"][0])
    second["name"] = "second"
    second["listen"] = "127.0.0.1:%d" % port2
    gw.config["listeners"].append(second)
    gw.write_config()
    gw.start()
    gw.settle_probes()
    held = fill(gw, 1)
    c = rawclient.RawClient(port2, None)
    try:
        c.upgrade("/echo")
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["listener"], e["status"]) == ("second", 101), e
    # The second listener's cap holds there, the first one's slot stays.
    s2 = rawclient.RawClient(port2, None)
    gw.port_floor[s2.local_port] = gw._log_lines()
    s3 = rawclient.RawClient(port2, None)
    try:
        resp = s3.http_response(timeout=5)
        assert resp.status == 429, resp
        e = gw.wait_entry(client_port=s3.local_port)
        assert (e["listener"], e["reason"]) == \
            ("second", "rate_concurrent"), e
        assert_pending(gw, held + [s2])
    finally:
        s2.close()
        s3.close()
    close_all(gw, held)


def test_ipv6_clients_count_by_their_64(factory):
    """As the policies' rate limits key them by default: one host holds a
    whole /64."""
    gw = gateway(factory, 1, tls=False, proxy_protocol=True)
    a, b, c = Conn(gw), Conn(gw), Conn(gw)
    a.send(v1("2001:db8:1:2::1", 40000))
    b.send(v1("2001:db8:1:2:ffff::2", 40001))
    assert_refused(gw, b, "2001:db8:1:2:ffff::2", 40001)
    c.send(v1("2001:db8:1:3::1", 40002))
    for x in (c, a):
        x.upgrade()
        x.close()


@pytest.mark.parametrize("proxy", [False, True], ids=["peer", "header"])
def test_a_trusted_proxy_is_not_counted_before_the_head(factory, proxy):
    """A trusted proxy's connections are its clients', each known by its
    X-Forwarded-For only once the head is read: before that they do not
    count, as a load balancer's before its PROXY header do not, or one
    slow client behind it (or a burst of them) would refuse all the
    others.  Another address is still held to the cap."""
    gw = gateway(factory, 1, tls=False, proxy_protocol=proxy,
                 trusted_proxies=["127.0.0.1", "192.0.2.9"])
    lb = [Conn(gw) for _ in range(3)]
    if proxy:
        # An L4 balancer in front of the trusted L7 one.
        for i, c in enumerate(lb):
            c.send(v1("192.0.2.9", 40000 + i))
    if proxy:
        held = [Conn(gw), Conn(gw)]
        held[0].send(v1("192.0.2.1", 41000))
        held[1].send(v1("192.0.2.1", 41001))
        assert_refused(gw, held.pop(), "192.0.2.1", 41001)
    else:
        held = fill(gw, 1, "127.0.0.2")
    assert_pending(gw, lb)
    for i, c in enumerate(reversed(lb)):
        c.upgrade(extra=[("X-Forwarded-For", "198.51.100.%d" % (i + 1))])
    for c in lb:
        c.close()
    # X-Forwarded-For names the client, without a port.
    for i in range(len(lb)):
        client = "198.51.100.%d" % (i + 1)
        e = gw.wait_entry(pred=lambda e: e["client"] == client)
        assert e["status"] == 101, e
    for c in held:
        c.close()


def reload(gw, cap):
    """Reload with a new cap; return once the worker has it: "reload done"
    comes as it is posted to the worker, a request answered after that has
    been through its loop."""
    gw.config["listeners"][0]["max_pending_per_ip"] = cap
    gw.write_config()
    gw.reload()
    c = Conn(gw, "127.0.0.9").tls()
    c.send(B("/sync"))
    assert c.http_response().status == 404
    c.close()


def test_a_reload_changes_the_cap_for_new_connections(factory):
    gw = gateway(factory, 1)
    held = fill(gw, 1)
    reload(gw, 3)
    # The connection from before the reload still counts.
    held += fill(gw, 2)
    reload(gw, 0)
    free = [Conn(gw) for _ in range(8)]
    upgrade(gw).close()
    assert_pending(gw, held + free)
    close_all(gw, free)
    reload(gw, 2)
    # Released once each: two of the three counted under 3 are closed.
    close_all(gw, held[1:])
    fill(gw, 1)
    close_all(gw, held[:1])


def test_drain_gives_every_pending_connection_its_way_out(factory):
    gw = gateway(factory, 2)
    held = fill(gw, 2)
    assert gw.stop() == 0
    for c in held:
        assert c.wait_closed(5)
    reasons = {e["client_port"]: e["reason"] for e in gw.entries()}
    assert [reasons.get(c.local_port) for c in held] == ["shutdown"] * 2


def test_default_is_off(factory):
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/echo", "up")], upstreams={"up": [up.addr]})
    held = [Conn(gw) for _ in range(20)]
    upgrade(gw).close()
    assert_pending(gw, held)
    close_all(gw, held)
    assert not [e for e in gw.entries() if e["reason"] == "rate_concurrent"]


@pytest.mark.parametrize("value,want", [
    ("0", None), ("1", None), ("1000000", None),
    ("1000001", "max_pending_per_ip: 1000001 is above the maximum 1000000"),
    ("-1", "max_pending_per_ip: expected a number from 0 to 1000000, "
     "got '-1'"),
    ("ten", "max_pending_per_ip: expected a number from 0 to 1000000, "
     "got 'ten'"),
])
def test_configcheck(tmp_path, value, want):
    cfg = tmp_path / "wsgate.yaml"
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yaml").write_text("")
    cfg.write_text(
        "listeners:\n  - name: only\n    listen: 127.0.0.1:%d\n"
        "    max_pending_per_ip: %s\n"
        "    routes:\n      - path: /ws\n        upstream: up\n"
        "upstreams:\n  up:\n    servers: [127.0.0.1:9]\n"
        "policies_dir: policies\n" % (free_port(), value))
    p = subprocess.run([WSGATE, "-t", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=20)
    out = p.stdout + p.stderr
    if want is None:
        assert p.returncode == 0 and "%s: ok" % cfg in out, out
        return
    assert p.returncode == 1, out
    assert "%s:4:25: %s" % (cfg, want) in out, out
