"""Who the client is: trusted_proxies (X-Forwarded-For), the PROXY
protocol, and client certificates (mTLS)."""

import socket
import ssl
import subprocess

import pytest

import rawclient
from conftest import headers_of, policy

B = rawclient.build_request


def allow10(factory, listener=None, tls=True):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo", "only10")],
                         upstreams={"echo": [be.addr]},
                         policies={"only10": policy(
                             ip={"allow": ["10.0.0.0/8"]})},
                         listener=listener, tls=tls)
    gw.backend = be
    return gw


def status_of(gw, data, pre=b""):
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    port = s.getsockname()[1]
    if pre:
        s.sendall(pre)
    if gw.tls:
        s = gw.ssl.wrap_socket(s, server_hostname="localhost")
    c = rawclient.RawClient.__new__(rawclient.RawClient)
    c.sock, c.buf, c.eof, c.local_port, c.key = s, bytearray(), False, \
        port, None
    try:
        c.send(data)
        head = c.read_until(b"\r\n\r\n", 5)
    finally:
        c.close()
    return rawclient.HTTPResponse(head[:-4], b"").status, port


def test_xff_believed_only_from_trusted_proxy(factory):
    gw = allow10(factory, listener={"trusted_proxies": ["127.0.0.1/32"]})
    st, port = status_of(gw, B("/echo",
                               extra=[("X-Forwarded-For", "10.1.2.3")]))
    assert st == 101
    e = gw.wait_entry(pred=lambda e: e["status"] == 101)
    assert e["client"] == "10.1.2.3", e
    (ev,) = gw.backend.wait_event("open")
    xff = ",".join(headers_of(ev, "X-Forwarded-For"))
    assert [x.strip() for x in xff.split(",")][0] == "10.1.2.3", ev["headers"]
    assert headers_of(ev, "X-Real-IP") == ["10.1.2.3"], ev["headers"]
    st, _ = status_of(gw, B("/echo"))
    assert st == 403


def test_xff_ignored_without_trusted_proxies(factory):
    gw = allow10(factory)
    st, port = status_of(gw, B("/echo",
                               extra=[("X-Forwarded-For", "10.1.2.3")]))
    assert st == 403
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "ip_denied" and e["client"] == "127.0.0.1", e


def test_proxy_protocol_v1_sets_client(factory):
    gw = allow10(factory, listener={"proxy_protocol": True})
    st, port = status_of(gw, B("/echo"),
                         pre=b"PROXY TCP4 10.9.8.7 127.0.0.1 5555 443\r\n")
    assert st == 101
    e = gw.wait_entry(pred=lambda e: e["status"] == 101)
    assert e["client"] == "10.9.8.7", e


def test_trusted_proxies_behind_proxy_protocol(factory):
    # The load balancer (127.0.0.1, trusted too) speaks PROXY; whose
    # X-Forwarded-For is believed is decided by the address its header
    # gives, not by the load balancer's own.
    gw = allow10(factory, listener={
        "proxy_protocol": True,
        "trusted_proxies": ["198.51.100.0/24", "127.0.0.1/32"]})
    xff = B("/echo", extra=[("X-Forwarded-For", "10.1.2.3")])
    st, _ = status_of(gw, xff,
                      pre=b"PROXY TCP4 198.51.100.7 127.0.0.1 5601 443\r\n")
    assert st == 101
    e = gw.wait_entry(pred=lambda e: e["status"] == 101)
    assert e["client"] == "10.1.2.3", e
    st, _ = status_of(gw, xff,
                      pre=b"PROXY TCP4 203.0.113.5 127.0.0.1 5602 443\r\n")
    assert st == 403
    e = gw.wait_entry(client_port=5602)
    assert e["reason"] == "ip_denied" and e["client"] == "203.0.113.5", e


def test_proxy_protocol_required_when_enabled(factory):
    gw = allow10(factory, listener={"proxy_protocol": True})
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    port = s.getsockname()[1]
    try:
        s.sendall(B("/echo"))           # no PROXY header, not even TLS
        data = b""
        try:
            while len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        assert b" 101 " not in data
    finally:
        s.close()
    # No 101 proves nothing here (no TLS, and 127.0.0.1 is outside the
    # policy): the log must say the missing header is why.
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "bad_proxy_header" and e["status"] is None, e
    assert e["client"] == "127.0.0.1", e
    assert gw.backend.events("open") == []
    assert gw.alive()


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")

    def ossl(*args):
        subprocess.run(["openssl"] + list(args), check=True,
                       capture_output=True, timeout=60, cwd=str(d))
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "2", "-subj", "/CN=test client CA")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "client.key", "-out", "client.csr",
         "-subj", "/CN=client-one")
    ossl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey",
         "ca.key", "-CAcreateserial", "-out", "client.pem", "-days", "2")
    return d


def test_mtls_requires_client_certificate(factory, certs, client_pki):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         listener={"tls": {
                             "certificate": certs["cert"],
                             "key": certs["key"],
                             "client_ca": str(client_pki / "ca.pem")}})
    # without a certificate: no upgrade
    ok = True
    try:
        c = gw.raw()
        try:
            c.send(B("/echo"))
            data = c.read_to_eof(5)
            ok = data.startswith(b"HTTP/1.1 101")
        finally:
            c.close()
    except (ssl.SSLError, OSError):
        ok = False
    assert not ok, "upgraded without a client certificate"
    # with one: upgraded, and the subject is logged
    ctx = ssl.create_default_context(cafile=certs["cert"])
    ctx.load_cert_chain(str(client_pki / "client.pem"),
                        str(client_pki / "client.key"))
    c = rawclient.RawClient(gw.port, ctx)
    try:
        c.upgrade("/echo")
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101, e
    assert "client-one" in (e.get("tls_subject") or ""), e
