"""IPv6 end to end on ::1: listeners (TLS and plain, beside IPv4 ones),
upstream servers written [::1]:port (connect, 502/504, balancing, the
server label of the metrics and the access log), the admin listener on
[::1], the client address in the access log and the upstream's
X-Forwarded-For, X-Forwarded-For entries from an IPv6 proxy, the rate-limit
key of an IPv6 client, IPv6 origins, and config errors for malformed IPv6
addresses.  Skipped where ::1 cannot be bound.
"""

import copy
import itertools
import socket
import subprocess
import time

import pytest
import yaml

import rawclient
import rawup
from conftest import (WSGATE, hostport, http_refusal, http_upgrade,
                      ipv6_loopback_available, metric, policy, run,
                      wait_for)

B = rawclient.build_request
SEQ = itertools.count(1)
pytestmark = pytest.mark.skipif(not ipv6_loopback_available(),
                                reason="::1 is not available here")


def request_of(up, n=1):
    """The n-th connection of a raw upstream, once its head is in."""
    conn = up.wait_conns(n)[n - 1]
    deadline = time.monotonic() + 5
    while conn.head is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert conn.head is not None, "upstream got no request head"
    return conn


def upgrade(gw, path, extra=()):
    """A 101 on a new raw client; returns the (open) client."""
    c, _ = http_upgrade(gw, B(path, extra=list(extra)))
    return c


def status_of(gw, path, extra=()):
    """The status a request gets; the connection is closed after it."""
    c = gw.raw()
    try:
        c.send(B(path, extra=list(extra)))
        head = c.read_until(b"\r\n\r\n", 5)
    finally:
        c.close()
    return rawclient.HTTPResponse(head[:-4], b"").status


def by_path(path):
    return lambda e: e.get("path") == path


def add_listener(gw, name, listen):
    """A copy of gw's listener named name on listen ("%d" for gw's
    port), written into its configuration."""
    lst = copy.deepcopy(gw.config["listeners"][0])
    lst["name"] = name
    lst["listen"] = listen % gw.port
    gw.config["listeners"].append(lst)
    gw.write_config()


# -- listener, upstream and admin on ::1 -------------------------------------

@pytest.mark.parametrize("tls", [True, False], ids=["wss", "ws"])
def test_ipv6_listener_upstream_and_admin(factory, tls):
    """Everything on ::1: the client is "::1" with its port in the access
    log, the upstream server is named as written, "[::1]:P", in the log
    and in wsgate_upstream_server_up; the backend gets X-Forwarded-For
    ::1 and the client's bracketed Host untouched."""
    up = factory.raw_upstream(host="::1")
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         tls=tls, admin=True, host="::1")
    host = "[::1]:%d" % gw.port
    c, _ = http_upgrade(gw, B("/e", host=host))
    conn = request_of(up)
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["listener"] == "public", e
    assert e["client"] == "::1" and e["client_port"] == c.local_port, e
    assert e["upstream_server"] == "[::1]:%d" % up.port, e
    assert conn.header("X-Forwarded-For") == ["::1"], conn.headers
    assert conn.header("Host") == [host], conn.headers
    assert conn.header("X-Forwarded-Host") == [host], conn.headers
    assert conn.header("X-Forwarded-Proto") == \
        ["https" if tls else "http"], conn.headers
    m = gw.metrics()
    assert metric(m, "wsgate_upstream_server_up", upstream="rec",
                  server="[::1]:%d" % up.port) == 1, m
    text = gw.error_text()
    assert "listening on [::1]:%d" % gw.port in text, text
    assert "admin: listening on [::1]:%d" % gw.admin_port in text, text


def test_ipv6_client_through_the_websockets_library(factory):
    """A real client library on wss://[::1]:P echoes through."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/e", "echo")],
                         upstreams={"echo": [be.addr]}, host="::1")

    async def go():
        async with gw.connect("/e") as ws:
            await ws.send("over six")
            return await ws.recv()
    assert "over six" in run(go())
    e = gw.wait_entry(pred=by_path("/e"))
    assert e["client"] == "::1" and e["close_code"] == 1000, e


def test_ipv6_upstream_refused_is_502_and_marked_down(factory):
    up = factory.raw_upstream(host="::1")
    port = up.port
    up.close()
    server = "[::1]:%d" % port
    gw = factory.gateway(routes=[("/e", "rec")],
                         upstreams={"rec": [server]}, admin=True, host="::1")
    _, e = http_refusal(gw, B("/e"), 502, "upstream_unavailable")
    assert e["upstream_server"] == server and e["client"] == "::1", e
    m = gw.metrics()
    assert metric(m, "wsgate_upstream_server_up", upstream="rec",
                  server=server) == 0, m
    assert metric(m, "wsgate_upstream_connect_failures_total",
                  upstream="rec") == 1, m
    assert "upstream rec server %s: down" % server in gw.error_text()


def test_ipv6_upstream_silent_is_504(factory):
    up = factory.raw_upstream(behavior=rawup.silent, host="::1")
    gw = factory.gateway(routes=[("/e", "rec")],
                         upstreams={"rec": {"servers": [up.addr],
                                            "connect_timeout": "300ms"}},
                         tls=False, host="::1")
    _, e = http_refusal(gw, B("/e"), 504, "upstream_unavailable")
    assert e["upstream_server"] == up.addr, e


def test_ipv6_upstreams_round_robin(factory):
    ups = [factory.raw_upstream(host="::1") for _ in range(2)]
    gw = factory.gateway(routes=[("/e", "rec")],
                         upstreams={"rec": [u.addr for u in ups]},
                         tls=False, host="::1")
    seen = []
    for _ in range(4):
        c = upgrade(gw, "/e")
        c.close()
        seen.append(gw.wait_entry(client_port=c.local_port)
                    ["upstream_server"])
    assert seen == [ups[0].addr, ups[1].addr] * 2, seen
    assert [len(u.connections()) for u in ups] == [2, 2]


def test_ipv6_and_ipv4_listeners_on_one_port(factory):
    """[::1]:P and 127.0.0.1:P in one configuration: each family reaches
    its own listener and is logged with its own address."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         start=False)
    add_listener(gw, "six", "[::1]:%d")
    gw.start()
    for host, name in (("127.0.0.1", "public"), ("::1", "six")):
        c = rawclient.RawClient(gw.port, gw.ssl, host=host)
        gw.port_floor[c.local_port] = gw._log_lines()
        c, _ = http_upgrade(gw, B("/e"), client=c)
        c.close()
        e = gw.wait_entry(client_port=c.local_port)
        assert (e["client"], e["listener"], e["status"]) == \
            (host, name, 101), e


@pytest.mark.parametrize("host", ["[::1", "::1", "::1:8443", "[::1]x",
                                  "[::1]:84a3", "[::g]:8443", "a]b:1"])
def test_ipv6_malformed_host_is_400(factory, host):
    """A Host that is not host[:port] with an IPv6 address in brackets is
    refused (RFC 7230 5.4) and never reaches the upstream as Host and
    X-Forwarded-Host; [::1]:P passes (test above)."""
    up = factory.raw_upstream(host="::1")
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         tls=False, host="::1")
    _, e = http_refusal(gw, B("/e", host=host), 400, "bad_request", up=up)
    assert e["client"] == "::1", e
    assert "malformed Host" in gw.error_text()


# -- X-Forwarded-For from an IPv6 proxy, ip policy ---------------------------

XFF_POLICIES = {"deny": policy(ip={"deny": ["2001:DB8::/32",
                                            "198.51.100.0/24"]})}


@pytest.fixture(scope="module")
def proxied(module_factory):
    up = module_factory.raw_upstream(host="::1")
    g = module_factory.gateway(routes=[("/a/*", "rec"),
                                       ("/d/*", "rec", "deny")],
                               upstreams={"rec": [up.addr]},
                               policies=XFF_POLICIES, tls=False,
                               listener={"trusted_proxies": ["::1"]},
                               host="::1")
    g.up = up
    return g


@pytest.mark.parametrize("xff,client", [
    ("2001:db8::5", "2001:db8::5"),
    ("[2001:db8::6]", "2001:db8::6"),                  # bracketed
    ("2001:0DB8:0::7", "2001:db8::7"),                 # written as inet_ntop
    ("2001:db8::8, ::1", "2001:db8::8"),               # ::1 is the proxy
    ("::ffff:198.51.100.9", "198.51.100.9"),           # IPv4-mapped
    ("[::ffff:198.51.100.10]", "198.51.100.10"),
    ("203.0.113.1, ::ffff:127.0.0.1", "127.0.0.1"),    # 127.0.0.1: untrusted
])
def test_ipv6_proxy_xff_names_the_client(proxied, xff, client):
    """The client a trusted IPv6 proxy names is logged, sent upstream and
    checked by ip deny (2001:DB8::/32 written in capitals, an IPv4 block
    for mapped clients) in its canonical form."""
    n = next(SEQ)
    proxied.up.clear()
    c = upgrade(proxied, "/a/%d" % n, [("X-Forwarded-For", xff)])
    conn = request_of(proxied.up)
    c.close()
    e = proxied.wait_entry(pred=by_path("/a/%d" % n))
    assert e["client"] == client and e["client_port"] is None, e
    assert conn.header("X-Forwarded-For") == [client], conn.headers
    denied = client.startswith("2001:db8:") or \
        client.startswith("198.51.100.")
    status = status_of(proxied, "/d/%d" % n, [("X-Forwarded-For", xff)])
    assert status == (403 if denied else 101), (xff, status)
    e = proxied.wait_entry(pred=by_path("/d/%d" % n))
    assert e["client"] == client, e


@pytest.mark.parametrize("xff", ["fe80::1%eth0", "[2001:db8::8]:0",
                                 "[198.51.100.1]", "2001:db8::g",
                                 "2001:db8::1, fe80::1%25eth0"])
def test_ipv6_proxy_malformed_xff_keeps_the_peer(proxied, xff):
    """Zone ids, port 0 and bracketed IPv4 are not addresses: the header
    is malformed and the proxy itself stays the client, as for IPv4."""
    n = next(SEQ)
    for pre in ("/a", "/d"):
        proxied.up.clear()
        c = upgrade(proxied, "%s/%d" % (pre, n), [("X-Forwarded-For", xff)])
        conn = request_of(proxied.up)
        c.close()
        e = proxied.wait_entry(pred=by_path("%s/%d" % (pre, n)))
        assert e["client"] == "::1" and e["client_port"] == c.local_port, e
        assert conn.header("X-Forwarded-For") == ["::1"], conn.headers


# -- rate-limit key of an IPv6 client ----------------------------------------

RL_POLICIES = {
    "p64": policy(rate_limit={"concurrent_per_ip": 1}),
    "p128": policy(rate_limit={"concurrent_per_ip": 1, "ipv6_prefix": 128}),
    "p48": policy(rate_limit={"concurrent_per_ip": 1, "ipv6_prefix": 48}),
}


@pytest.mark.parametrize("pol,expect", [
    ("p64", [101, 429, 101, 429, 101, 101, 429]),
    ("p128", [101, 429, 101, 101, 101, 101, 429]),
    ("p48", [101, 429, 101, 429, 429, 101, 429]),
])
def test_ipv6_rate_limit_key_is_the_prefix(factory, pol, expect):
    """concurrent_per_ip 1 counts an IPv6 client by its first ipv6_prefix
    bits (64 by default) and an IPv4-mapped one as its IPv4 address."""
    up = factory.raw_upstream(host="::1")
    gw = factory.gateway(routes=[("/r/*", "rec", pol)],
                         upstreams={"rec": [up.addr]}, policies=RL_POLICIES,
                         listener={"trusted_proxies": ["::1"]}, tls=False,
                         host="::1")
    clients = [None, None,                      # ::1 itself, twice
               "2001:db8:1:1::1", "2001:db8:1:1::2",     # one /64
               "2001:db8:1:2::1",                        # same /48
               "198.51.100.9", "::ffff:198.51.100.9"]
    got, held = [], []
    try:
        for i, xff in enumerate(clients):
            c = gw.raw()
            held.append(c)
            c.send(B("/r/%d" % i, extra=[("X-Forwarded-For", xff)]
                     if xff else []))
            head = c.read_until(b"\r\n\r\n", 5)
            got.append(rawclient.HTTPResponse(head[:-4], b"").status)
    finally:
        for c in held:
            c.close()
    assert got == expect, got


# -- Origin with an IPv6 literal ---------------------------------------------

@pytest.mark.parametrize("origin,ok", [
    ("http://[::1]:8080", True),
    ("HTTP://[0:0::1]:8080", True),
    ("http://[::1]", False),                   # another port
    ("http://[::1]:08080", False),
    ("http://::1:8080", False),                # no brackets
    ("http://[::1%25lo]:8080", False),         # zone id
    ("https://[2001:db8::1]:443", True),       # default port, case
    ("https://[2001:db8:0::1]", True),
    ("http://[::ffff:127.0.0.1]", True),       # allowed as [::ffff:7f00:1]
])
def test_ipv6_origin(factory, origin, ok):
    up = factory.raw_upstream(host="::1")
    pol = policy(origin={"allow": ["http://[::1]:8080",
                                   "https://[2001:DB8::1]",
                                   "http://[::ffff:7f00:1]"]})
    gw = factory.gateway(routes=[("/o", "rec", "o")],
                         upstreams={"rec": [up.addr]}, policies={"o": pol},
                         tls=False, host="::1")
    assert status_of(gw, "/o", [("Origin", origin)]) == \
        (101 if ok else 403), origin


# -- config errors ------------------------------------------------------------

def scalar_mark(node, value):
    """Where the scalar holding value starts in a composed YAML document."""
    if isinstance(node, yaml.ScalarNode):
        return node.start_mark if node.value == value else None
    items = node.value if isinstance(node, yaml.SequenceNode) else \
        [n for kv in node.value for n in kv]
    for n in items:
        m = scalar_mark(n, value)
        if m is not None:
            return m
    return None


@pytest.mark.parametrize("addr,msg", [
    ("::1:8443", "an IPv6 address needs brackets"),
    ("[::1]", "expected ':' and a port after ']'"),
    ("[::1]:", "missing port after ':'"),
    ("[::1]:70000", "the port must be a number from 1 to 65535"),
    ("[::1]:0", "the port must be a number from 1 to 65535"),
    ("[fe80::1%eth0]:8443", "invalid IPv6 address"),
    ("[::1:8443", "unterminated '['"),
    ("[1.2.3.4]:8443", "invalid IPv6 address"),
    ("[::g]:8443", "invalid IPv6 address"),
])
@pytest.mark.parametrize("key", ["listen", "servers", "admin"])
def test_ipv6_malformed_address_is_file_line_col(factory, addr, msg, key):
    gw = factory.gateway(routes=[("/e", "rec")],
                         upstreams={"rec": ["[::1]:9"]}, start=False,
                         admin=True)
    cfg = gw.config
    if key == "listen":
        cfg["listeners"][0]["listen"] = addr
    elif key == "servers":
        cfg["upstreams"]["rec"]["servers"] = ["[::1]:9", addr]
    else:
        cfg["admin"]["listen"] = addr
    gw.write_config()
    mark = scalar_mark(yaml.compose(gw.cfg_path.read_text()), addr)
    want = "%s:%d:%d: " % (gw.cfg_path, mark.line + 1, mark.column + 1)
    p = subprocess.run([WSGATE, "-t", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    errs = [t for t in p.stderr.splitlines() if t.startswith(want)]
    assert errs and msg in errs[0] and addr in errs[0], p.stderr


@pytest.mark.parametrize("first,second", [
    ("127.0.0.1:9", "[::ffff:127.0.0.1]:9"),
    ("[::ffff:7f00:1]:9", "127.0.0.1:9"),
    ("[::1]:9", "[0:0::1]:9")])
def test_ipv6_server_listed_twice(factory, first, second):
    """One server written two ways is listed twice: an IPv4-mapped address
    is the IPv4 address it holds, as in listen, so that it cannot get two
    wsgate_upstream_server_up series, two fail_timeout states and twice
    its share of round robin."""
    gw = factory.gateway(routes=[("/e", "rec")],
                         upstreams={"rec": [first, second]}, start=False)
    mark = scalar_mark(yaml.compose(gw.cfg_path.read_text()), second)
    p = subprocess.run([WSGATE, "-t", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "%s:%d:%d: servers: '%s' is listed twice" % (
        gw.cfg_path, mark.line + 1, mark.column + 1, second) in p.stderr, \
        p.stderr


def test_ipv6_mapped_server_is_reached_over_ipv4(factory):
    """servers: [::ffff:127.0.0.1]:P reaches 127.0.0.1:P and keeps its name
    as written in the log and the metrics."""
    up = factory.raw_upstream()
    server = "[::ffff:127.0.0.1]:%d" % up.port
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [server]},
                         tls=False, admin=True)
    c = upgrade(gw, "/e")
    conn = request_of(up)
    c.close()
    assert conn.header("X-Forwarded-For") == ["127.0.0.1"], conn.headers
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["upstream_server"] == server, e
    assert metric(gw.metrics(), "wsgate_upstream_server_up", upstream="rec",
                  server=server) == 1


def test_ipv6_unquoted_listen_is_a_syntax_error_at_its_place(factory):
    """listen: [::1]:P unquoted is a YAML list: wsgate.yaml(5) names the
    error an operator gets, with its line and column."""
    gw = factory.gateway(routes=[("/e", "rec")],
                         upstreams={"rec": ["[::1]:9"]}, start=False)
    text = gw.cfg_path.read_text()
    written = "listen: 127.0.0.1:%d" % gw.port
    assert written in text
    text = text.replace(written, "listen: [::1]:%d" % gw.port)
    gw.cfg_path.write_text(text)
    row = [i + 1 for i, t in enumerate(text.splitlines()) if "[::1]:%d" %
           gw.port in t][0]
    p = subprocess.run([WSGATE, "-t", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stderr.startswith("%s:%d:" % (gw.cfg_path, row)), p.stderr
    assert "syntax error: did not find expected node content" in p.stderr


# -- reload: a listener's address changes on its port -------------------------

def served_by(gw, name):
    """A client gets 101 from listener name.  The worker takes the new
    sockets just after "reload done": a connection the old socket took
    meanwhile may be refused or served by the old listener, so retry."""
    def once():
        try:
            c = upgrade(gw, "/e")
        except (OSError, AssertionError, rawclient.Timeout):
            return None
        c.close()
        e = gw.wait_entry(client_port=c.local_port)
        return e if e["status"] == 101 and e["listener"] == name else None
    return wait_for(once, 5.0, what="a 101 from listener %s" % name)


@pytest.mark.parametrize("frm,to", [
    ("::", "::1"), ("::1", "::"), ("0.0.0.0", "127.0.0.1"),
    ("127.0.0.1", "0.0.0.0")])
def test_reload_moves_a_listener_between_wildcard_and_address(factory, frm,
                                                               to):
    """[::]:P to [::1]:P (or back, or the same in IPv4) on SIGHUP: the
    port is the gateway's own, so the new address is bound beside the old
    one and takes over, as the same file would at start-up; it used to
    fail with "[::1]:P is in use"."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         tls=False, host="::1" if ":" in to else "127.0.0.1",
                         start=False)
    gw.config["listeners"][0]["listen"] = hostport(frm, gw.port)
    gw.write_config()
    gw.start()
    gw.config["listeners"][0]["name"] = "moved"
    gw.config["listeners"][0]["listen"] = hostport(to, gw.port)
    gw.write_config()
    gw.reload()
    assert "listener moved: listening on %s" % hostport(to, gw.port) in \
        gw.error_text()
    served_by(gw, "moved")


def test_reload_adds_a_wildcard_beside_an_address(factory):
    """[::]:P added by a reload beside a running [::1]:P, as a file with
    both starts: ::1 clients stay with [::1]:P."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         tls=False, host="::1")
    add_listener(gw, "any6", "[::]:%d")
    gw.reload()
    served_by(gw, "public")


def test_a_wildcard_ipv6_listener_takes_no_ipv4_client(factory):
    """wsgate.yaml(5): [::]:P takes IPv6 connections only; an IPv4 client
    of port P is refused, not served by it."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         tls=False, host="::1", start=False)
    gw.config["listeners"][0]["listen"] = "[::]:%d" % gw.port
    gw.write_config()
    gw.start()
    served_by(gw, "public")
    with pytest.raises(ConnectionRefusedError):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.close()


def test_reload_adds_an_ipv6_wildcard_beside_an_ipv4_address(factory):
    """[::]:P added by a reload beside a running 127.0.0.1:P: the IPv6
    socket does not take IPv4, so the two do not clash, as the man page
    suggests for serving both; each family gets its own listener."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         tls=False)
    add_listener(gw, "any6", "[::]:%d")
    gw.reload()
    assert "in use" not in gw.error_text()
    served_by(gw, "public")
    gw.host = "::1"
    served_by(gw, "any6")


def test_an_ipv4_mapped_listen_address_is_the_ipv4_address(factory):
    """wsgate.yaml(5): [::ffff:127.0.0.1]:P is 127.0.0.1:P; the listener
    starts and IPv4 clients of 127.0.0.1:P are served by it."""
    up = factory.raw_upstream()
    gw = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                         tls=False, start=False)
    gw.config["listeners"][0]["listen"] = "[::ffff:127.0.0.1]:%d" % gw.port
    gw.write_config()
    gw.start()
    served_by(gw, "public")
