"""Policy `ip` (CIDR allow/deny, IPv4 and IPv6) and listener
`trusted_proxies` (who the client is behind a reverse proxy).

A trusted peer's X-Forwarded-For names the client (the right-most entry not
itself trusted; client_port is then null) and that address is what `ip`
checks and what the upstream's X-Forwarded-For says.  An untrusted peer's
X-Forwarded-For changes nothing.
"""

import copy
import itertools
import socket
import subprocess
import time

import pytest
import yaml

import rawclient
from conftest import (WSGATE, PreClient, http_refusal, http_upgrade,
                      ipv6_loopback_available, policy)

B = rawclient.build_request
HAVE_V6 = ipv6_loopback_available()
SEQ = itertools.count(1)

XFF_ROUTES = [("/t/*", "rec"), ("/td/*", "rec", "deny203")]
XFF_POLICIES = {"deny203": policy(ip={"deny": ["203.0.113.0/24"]})}


@pytest.fixture(scope="module")
def trusted(module_factory):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(routes=XFF_ROUTES,
                               upstreams={"rec": [up.addr]},
                               policies=XFF_POLICIES,
                               listener={"trusted_proxies": ["127.0.0.1"]})
    g.up = up
    return g


@pytest.fixture(scope="module")
def untrusted(module_factory):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(routes=XFF_ROUTES,
                               upstreams={"rec": [up.addr]},
                               policies=XFF_POLICIES)
    g.up = up
    return g


@pytest.fixture(scope="module")
def elsewhere(module_factory):
    """trusted_proxies set, but the peer (127.0.0.1) is not one of them."""
    up = module_factory.raw_upstream()
    g = module_factory.gateway(routes=XFF_ROUTES,
                               upstreams={"rec": [up.addr]},
                               policies=XFF_POLICIES,
                               listener={"trusted_proxies": ["10.0.0.0/8"]})
    g.up = up
    return g


def unique(prefix):
    return "%s/r%d" % (prefix, next(SEQ))


def by_path(path):
    return lambda e: e.get("path") == path


def upstream_xff(up):
    conn = up.wait_conns(1)[0]
    deadline = time.monotonic() + 5
    while conn.head is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert conn.head is not None, "upstream got no request head"
    return conn.header("X-Forwarded-For")


def through(gw, path, xff_lines):
    """Upgrade with these X-Forwarded-For lines; returns (access-log entry,
    the X-Forwarded-For the upstream got)."""
    gw.up.clear()
    c, _ = http_upgrade(gw, B(path, extra=[("X-Forwarded-For", v)
                                           for v in xff_lines]))
    try:
        xff = upstream_xff(gw.up)
    finally:
        c.close()
    e = gw.wait_entry(pred=by_path(path))
    assert e["status"] == 101, e
    return e, xff, c.local_port


# -- trusted_proxies ---------------------------------------------------------------

@pytest.mark.parametrize("lines,client", [
    (["203.0.113.9, 127.0.0.1"], "203.0.113.9"),
    (["203.0.113.9"], "203.0.113.9"),
    (["198.51.100.1, 203.0.113.9"], "203.0.113.9"),       # left is spoofable
    (["198.51.100.1", "203.0.113.9, 127.0.0.1"], "203.0.113.9"),  # 2 lines
    (["2001:db8::5"], "2001:db8::5"),
])
def test_trusted_peer_xff_names_the_client(trusted, lines, client):
    e, xff, _ = through(trusted, unique("/t"), lines)
    assert e["client"] == client and e["client_port"] is None, e
    assert xff == [client], xff


@pytest.mark.parametrize("lines,client,port", [
    (["203.0.113.9:5555, 127.0.0.1:80"], "203.0.113.9", 5555),
    (["[2001:db8::5]:443"], "2001:db8::5", 443),
])
def test_trusted_peer_xff_with_ports_names_the_client(trusted, lines, client,
                                                      port):
    """A proxy that writes each hop as address:port (RFC 3986's form, which
    nginx's realip module reads too) still names the client: its port is
    logged, and the backend gets the address alone."""
    e, xff, _ = through(trusted, unique("/t"), lines)
    assert e["client"] == client and e["client_port"] == port, e
    assert xff == [client], xff


def test_trusted_peer_malformed_xff_leaves_peer_address(trusted):
    e, xff, port = through(trusted, unique("/t"), ["not-an-address"])
    assert e["client"] == "127.0.0.1" and e["client_port"] == port, e
    assert xff == ["127.0.0.1"], xff


def test_trusted_peer_xff_client_is_checked_by_ip_deny(trusted):
    trusted.up.clear()
    path = unique("/td")
    _, e = http_refusal(trusted, B(path, extra=[
        ("X-Forwarded-For", "203.0.113.9, 127.0.0.1")]), 403, "ip_denied",
        up=trusted.up, pred=by_path(path))
    assert e["client"] == "203.0.113.9" and e["client_port"] is None, e


def test_trusted_peer_xff_outside_deny_is_accepted(trusted):
    e, xff, _ = through(trusted, unique("/td"), ["198.51.100.7, 127.0.0.1"])
    assert e["client"] == "198.51.100.7", e
    assert xff == ["198.51.100.7"], xff


@pytest.mark.parametrize("prefix,kw,status,reason", [
    ("/nowhere", {}, 404, "no_route"),
    ("/t", {"method": "POST"}, 405, "bad_method"),
    ("/t", {"version": "8"}, 426, "bad_version"),
    ("/t", {"upgrade": None}, 400, "bad_request")])
def test_trusted_peer_xff_names_the_client_of_a_refusal(trusted, prefix, kw,
                                                         status, reason):
    """Refused before any policy check, the request is still logged with
    the client a trusted proxy named, not with the proxy."""
    path = unique(prefix)
    _, e = http_refusal(trusted, B(path, extra=[
        ("X-Forwarded-For", "203.0.113.9, 127.0.0.1")], **kw), status,
        reason, pred=by_path(path))
    assert e["client"] == "203.0.113.9" and e["client_port"] is None, e


@pytest.mark.parametrize("lines", [
    ["203.0.113.9, 127.0.0.1"], ["203.0.113.9"],
    ["203.0.113.9", "203.0.113.10"]])
def test_untrusted_peer_xff_changes_nothing(untrusted, lines):
    e, xff, port = through(untrusted, unique("/td"), lines)
    assert e["client"] == "127.0.0.1" and e["client_port"] == port, e
    assert xff == ["127.0.0.1"], xff


@pytest.mark.parametrize("lines", [
    ["203.0.113.9, 127.0.0.1"], ["203.0.113.9"], ["203.0.113.9, 10.0.0.1"]])
def test_peer_outside_trusted_proxies_xff_changes_nothing(elsewhere, lines):
    """A listener with trusted_proxies believes X-Forwarded-For only from
    a peer in them: a direct client cannot name itself as another address
    (here one that ip.deny would refuse, or that the log would show)."""
    e, xff, port = through(elsewhere, unique("/td"), lines)
    assert e["client"] == "127.0.0.1" and e["client_port"] == port, e
    assert xff == ["127.0.0.1"], xff


# -- CIDR allow/deny, IPv4 and IPv6 -------------------------------------------------

CIDR_POLICIES = {
    "d4": policy(ip={"deny": ["127.0.0.0/8"]}),
    "a4": policy(ip={"allow": ["127.0.0.1/32"]}),
    "a4bare": policy(ip={"allow": ["127.0.0.1"]}),
    "a4other": policy(ip={"allow": ["10.0.0.0/8", "2001:db8::/32"]}),
    "denywins": policy(ip={"allow": ["127.0.0.0/8", "::1/128"],
                           "deny": ["127.0.0.1/32", "::1"]}),
    "d6": policy(ip={"deny": ["::1/128"]}),
    "a6": policy(ip={"allow": ["::1"]}),
    "a6net": policy(ip={"allow": ["::/127"]}),
    "d4only": policy(ip={"deny": ["0.0.0.0/0"]}),
    # both lists, the client in neither: allow still applies
    "neither": policy(ip={"allow": ["10.0.0.0/8", "2001:db8::/32"],
                          "deny": ["203.0.113.0/24", "2001:db8:dead::/48"]}),
}


@pytest.fixture(scope="module")
def cidr(module_factory):
    up = module_factory.raw_upstream()
    routes = [("/" + n, "rec", n) for n in CIDR_POLICIES]
    g = module_factory.gateway(routes=routes, upstreams={"rec": [up.addr]},
                               policies=CIDR_POLICIES, start=False)
    g.port6 = None
    if HAVE_V6:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        g.port6 = s.getsockname()[1]
        s.close()
        lst = copy.deepcopy(g.config["listeners"][0])
        lst["name"] = "public6"
        lst["listen"] = "[::1]:%d" % g.port6
        g.config["listeners"].append(lst)
        g.cfg_path.write_text(yaml.safe_dump(g.config, sort_keys=False))
    g.start()
    g.up = up
    return g


def v6client(gw):
    return PreClient(gw.port6, host="::1").start_tls(gw.ssl)


def check(gw, route, v6, ok):
    gw.up.clear()
    client = v6client(gw) if v6 else None
    if ok:
        c, _ = http_upgrade(gw, B("/" + route), client=client)
        c.close()
        e = gw.wait_entry(client_port=c.local_port)
        assert e["status"] == 101, e
    else:
        _, e = http_refusal(gw, B("/" + route), 403, "ip_denied",
                            client=client, up=gw.up)
    assert e["client"] == ("::1" if v6 else "127.0.0.1"), e


@pytest.mark.parametrize("route,ok", [
    ("d4", False), ("a4", True), ("a4bare", True), ("a4other", False),
    ("denywins", False), ("d6", True), ("a6", False), ("a6net", False),
    ("d4only", False), ("neither", False)])
def test_ipv4_client(cidr, route, ok):
    check(cidr, route, False, ok)


@pytest.mark.skipif(not HAVE_V6, reason="::1 is not available here")
@pytest.mark.parametrize("route,ok", [
    ("d4", True), ("a4", False), ("a4bare", False), ("a4other", False),
    ("denywins", False), ("d6", False), ("a6", True), ("a6net", True),
    ("d4only", True), ("neither", False)])
def test_ipv6_client(cidr, route, ok):
    check(cidr, route, True, ok)


# -- listen addresses ---------------------------------------------------------

def test_v4_mapped_listen_address_serves_ipv4(factory):
    """listen: [::ffff:127.0.0.1]:P names an IPv4 address, as ::ffff:a.b.c.d
    does in every CIDR rule and PROXY header: the listener takes IPv4
    connections to 127.0.0.1:P (an IPv6-only socket could not bind it),
    the client is 127.0.0.1 and IPv4 rules match it."""
    up = factory.raw_upstream()
    g = factory.gateway(routes=[("/a4", "rec", "a4")],
                        upstreams={"rec": [up.addr]},
                        policies={"a4": CIDR_POLICIES["a4"]}, start=False)
    g.config["listeners"][0]["listen"] = "[::ffff:127.0.0.1]:%d" % g.port
    g.cfg_path.write_text(yaml.safe_dump(g.config, sort_keys=False))
    g.start()
    c, _ = http_upgrade(g, B("/a4"))
    c.close()
    e = g.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["client"] == "127.0.0.1", e


def test_v4_mapped_listen_address_clashes_with_its_ipv4_twin(factory):
    """127.0.0.1:P and [::ffff:127.0.0.1]:P are one address: -t says so."""
    g = factory.gateway(routes=[("/e", "rec")],
                        upstreams={"rec": ["127.0.0.1:9"]}, start=False)
    twin = copy.deepcopy(g.config["listeners"][0])
    twin["name"] = "twin"
    twin["listen"] = "[::ffff:127.0.0.1]:%d" % g.port
    g.config["listeners"].append(twin)
    g.cfg_path.write_text(yaml.safe_dump(g.config, sort_keys=False))
    p = subprocess.run([WSGATE, "-t", "-c", str(g.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "is already used by listener 'public'" in p.stderr, p.stderr


@pytest.mark.skipif(not HAVE_V6, reason="::1 is not available here")
def test_ipv6_wildcard_listener_is_ipv6_only(factory):
    """listen: [::]:P takes IPv6 connections only, as nginx's [::]:P
    does, so 0.0.0.0:P can be a listener of its own beside it; an IPv4
    client reaches 0.0.0.0:P and is 127.0.0.1 there, an IPv6 one ::1."""
    up = factory.raw_upstream()
    g = factory.gateway(routes=[("/e", "rec")], upstreams={"rec": [up.addr]},
                        start=False)
    g.config["listeners"][0]["listen"] = "0.0.0.0:%d" % g.port
    six = copy.deepcopy(g.config["listeners"][0])
    six["name"] = "six"
    six["listen"] = "[::]:%d" % g.port
    g.config["listeners"].append(six)
    g.cfg_path.write_text(yaml.safe_dump(g.config, sort_keys=False))
    g.start()
    g.port6 = g.port
    for v6 in (False, True):
        client = v6client(g) if v6 else None
        c, _ = http_upgrade(g, B("/e"), client=client)
        c.close()
        e = g.wait_entry(client_port=c.local_port)
        assert e["status"] == 101, e
        assert e["client"] == ("::1" if v6 else "127.0.0.1"), e
        assert e["listener"] == ("six" if v6 else "public"), e
