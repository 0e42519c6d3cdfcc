"""Listener `proxy_protocol: true`: HAProxy PROXY v1 (text) and v2 (binary)
headers sent on the raw socket before the TLS handshake.

The address in the header becomes `client` / `client_port` in the access
log, the upstream's X-Forwarded-For, and the address every `ip` check
sees.  A bad header, or none, closes the connection with reason
bad_proxy_header and never reaches the upstream.
"""

import socket
import ssl
import struct
import time

import pytest

import rawclient
import wsproto
from conftest import PreClient, http_refusal, http_upgrade, policy

B = rawclient.build_request
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, dst, sport, dport, command=1, tlvs=b""):
    if ":" in src:
        fam, af = 0x21, socket.AF_INET6
    else:
        fam, af = 0x11, socket.AF_INET
    addrs = socket.inet_pton(af, src) + socket.inet_pton(af, dst) + \
        struct.pack("!HH", sport, dport)
    body = addrs + tlvs
    return V2_SIG + bytes([0x20 | command, fam]) + \
        struct.pack("!H", len(body)) + body


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/p", "rec"), ("/pdeny", "rec", "pdeny")],
        upstreams={"rec": [up.addr]},
        policies={"pdeny": policy(ip={"deny": ["192.0.2.0/24",
                                               "2001:db8:bad::/48"]})},
        listener={"proxy_protocol": True})
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def proxied(gw, header, split=None):
    """Connect, send the PROXY header (optionally in two pieces), start
    TLS; returns the client."""
    c = PreClient(gw.port)
    if split:
        c.send(header[:split])
        time.sleep(0.2)
        c.send(header[split:])
    else:
        c.send(header)
    return c.start_tls(gw.ssl)


def upstream_xff(up):
    conn = up.wait_conns(1)[0]
    deadline = time.monotonic() + 5
    while conn.head is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert conn.head is not None, "upstream got no request head"
    return conn.header("X-Forwarded-For")


CASES = {
    "v1_tcp4": (v1("198.51.100.20", "127.0.0.1", 1111, 443), None,
                "198.51.100.20", 1111),
    "v1_tcp6": (v1("2001:db8::20", "::1", 1112, 443), None,
                "2001:db8::20", 1112),
    "v1_split": (v1("198.51.100.23", "127.0.0.1", 1115, 443), 14,
                 "198.51.100.23", 1115),
    "v2_tcp4": (v2("198.51.100.21", "127.0.0.1", 1113, 443), None,
                "198.51.100.21", 1113),
    "v2_tcp6": (v2("2001:db8::21", "::1", 1114, 443), None,
                "2001:db8::21", 1114),
    "v2_with_tlvs": (v2("198.51.100.24", "127.0.0.1", 1116, 443,
                        tlvs=b"\x04\x00\x03abc" + b"\x02\x00\x09localhost"),
                     None, "198.51.100.24", 1116),
    "v2_split": (v2("198.51.100.25", "127.0.0.1", 1117, 443), 10,
                 "198.51.100.25", 1117),
    # An IPv4 client behind a dual-stack load balancer arrives as
    # ::ffff:a.b.c.d; it is the IPv4 client everywhere, as the same client
    # named in X-Forwarded-For is: in the log and toward the upstream.
    "v1_v4_mapped": (v1("::ffff:198.51.100.50", "::1", 1141, 443), None,
                     "198.51.100.50", 1141),
    "v2_v4_mapped": (v2("::ffff:198.51.100.51", "::1", 1142, 443), None,
                     "198.51.100.51", 1142),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_proxy_header_moves_client_address(gw, up, case):
    header, split, addr, port = CASES[case]
    c = proxied(gw, header, split)
    c, _ = http_upgrade(gw, B("/p"), client=c)
    try:
        assert upstream_xff(up) == [addr]
    finally:
        c.close()
    e = gw.wait_entry(client_port=port)
    assert e["client"] == addr and e["status"] == 101, e


class BioClient:
    """TLS over memory BIOs, so the PROXY header and the ClientHello can
    leave in one write, as a load balancer forwarding at once sends them."""

    def __init__(self, port, ctx, header):
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.local_port = self.sock.getsockname()[1]
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out,
                                server_hostname="localhost")
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.sock.sendall(header + self.out.read())
        deadline = time.monotonic() + 5
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump(deadline)
        self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pump(self, deadline):
        self._flush()
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("EOF during TLS")
        self.inc.write(data)

    def send(self, data):
        self.tls.write(data)
        self._flush()

    def read_until(self, marker, timeout=5.0):
        deadline = time.monotonic() + timeout
        buf = b""
        while marker not in buf:
            try:
                buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._pump(deadline)
        return buf

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("header,addr,port", [
    (v1("198.51.100.40", "127.0.0.1", 1131, 443), "198.51.100.40", 1131),
    (v2("198.51.100.41", "127.0.0.1", 1132, 443), "198.51.100.41", 1132)])
def test_proxy_header_and_client_hello_in_one_segment(gw, up, header, addr,
                                                      port):
    c = BioClient(gw.port, gw.ssl, header)
    try:
        c.send(B("/p"))
        head = c.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert upstream_xff(up) == [addr]
    finally:
        c.close()
    e = gw.wait_entry(client_port=port)
    assert e["client"] == addr and e["status"] == 101, e


def test_v1_unknown_keeps_peer_address(gw, up):
    c = proxied(gw, b"PROXY UNKNOWN\r\n")
    c, _ = http_upgrade(gw, B("/p"), client=c)
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["client"] == "127.0.0.1" and e["status"] == 101, e


def test_v2_local_keeps_peer_address(gw, up):
    c = proxied(gw, v2("198.51.100.26", "127.0.0.1", 1118, 443, command=0))
    c, _ = http_upgrade(gw, B("/p"), client=c)
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["client"] == "127.0.0.1" and e["status"] == 101, e


@pytest.mark.parametrize("header,addr,port", [
    (v1("192.0.2.7", "127.0.0.1", 1121, 443), "192.0.2.7", 1121),
    (v2("192.0.2.8", "127.0.0.1", 1122, 443), "192.0.2.8", 1122),
    (v2("2001:db8:bad::1", "::1", 1123, 443), "2001:db8:bad::1", 1123),
])
def test_proxy_address_is_what_ip_deny_sees(gw, up, header, addr, port):
    c = proxied(gw, header)
    _, e = http_refusal(gw, B("/pdeny"), 403, "ip_denied", client=c, up=up,
                        log_port=port)
    assert e["client"] == addr, e


def test_proxy_address_outside_deny_is_accepted(gw, up):
    c = proxied(gw, v1("198.51.100.30", "127.0.0.1", 1124, 443))
    c, _ = http_upgrade(gw, B("/pdeny"), client=c)
    c.close()
    e = gw.wait_entry(client_port=1124)
    assert e["client"] == "198.51.100.30" and e["status"] == 101, e


BAD = {
    "garbage": b"GARBAGE HEADER\r\n",
    "v1_bad_address": b"PROXY TCP4 999.1.1.1 127.0.0.1 1000 443\r\n",
    "v1_bad_port": b"PROXY TCP4 198.51.100.1 127.0.0.1 99999 443\r\n",
    "v1_family_mismatch": b"PROXY TCP4 2001:db8::1 127.0.0.1 1000 443\r\n",
    "v1_no_crlf_and_too_long": b"PROXY TCP4 " + b"1" * 120,
    "v1_lowercase": b"proxy TCP4 198.51.100.1 127.0.0.1 1000 443\r\n",
    "v2_bad_version": V2_SIG + b"\x31\x11\x00\x0c" + b"\0" * 12,
    "v2_short_length": V2_SIG + b"\x21\x11\x00\x04" + b"\0" * 4,
    "http_request": B("/p"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_proxy_header_closes_connection(gw, up, case):
    c = PreClient(gw.port)
    try:
        c.send(BAD[case])
        assert c.wait_closed(5), "gateway kept a bad PROXY connection open"
        assert b"HTTP/1.1 101" not in c.buf, bytes(c.buf)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "bad_proxy_header", e
    assert e["status"] != 101, e
    assert up.connections() == []


# A peer that sends part of a header and then its FIN will send no more:
# the connection is closed for that at once, as handshake_failed, not held
# until handshake_timeout (10s here) with only a peek to look at.
PARTIAL = {
    "v1_half": b"PROXY TCP4 198.51.100.60 127.0",
    "v2_signature_only": V2_SIG,
    "v2_block_short": v2("198.51.100.61", "127.0.0.1", 1161, 443)[:20],
}


@pytest.mark.parametrize("case", sorted(PARTIAL))
def test_partial_proxy_header_then_fin(gw, up, case):
    c = PreClient(gw.port)
    try:
        c.send(PARTIAL[case])
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(5), "a half-sent PROXY header was kept open"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port, timeout=15)
    assert e["reason"] == "handshake_failed" and e["status"] is None, e
    assert up.connections() == []


def test_client_without_proxy_header_gets_nothing_upgraded(gw, up):
    c = PreClient(gw.port)
    upgraded = False
    try:
        try:
            c.start_tls(gw.ssl)
            c.send(B("/p"))
            c.read_until(b"\r\n\r\n", 5)
            upgraded = True
        except (ssl.SSLError, OSError, AssertionError):
            pass
    finally:
        c.close()
    assert not upgraded
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "bad_proxy_header", e
    assert up.connections() == []


def test_zz_gateway_still_relays(gw, up):
    c = proxied(gw, v1("198.51.100.99", "127.0.0.1", 1199, 443))
    c, _ = http_upgrade(gw, B("/p"), client=c)
    try:
        c.send_frame(wsproto.OP_TEXT, b"still here")
        f = c.read_frame(5)
        assert f is not None and f.payload == b"still here", f
    finally:
        c.close()
    assert gw.alive()
