"""TLS session tickets: one key ring for the process.

A ticket stays good across a reload (each reload builds new TLS contexts;
with OpenSSL's own per-context keys every returning client would make a
full handshake), in TLS 1.3 and TLS 1.2.  What a ticket may resume is
bound to what its session was authenticated with: a new certificate
starts afresh, and a ticket from a listener without client certificates
does not resume on one that requires them (that would let a client in
without a certificate).  A client certificate's subject is still logged
on a resumed session.
"""

import shutil
import ssl

import pytest

import rawclient
from conftest import PreClient, metric, openssl
from test_policy_mtls import make_ca, make_client

B = rawclient.build_request
VERSIONS = [pytest.param(None, id="tls13"),
            pytest.param(ssl.TLSVersion.TLSv1_2, id="tls12")]


def client_ctx(certs, max_version, cert=None):
    ctx = ssl.create_default_context(cafile=certs["cert"])
    if max_version is not None:
        ctx.maximum_version = max_version
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def upgrade(gw, ctx, session=None, port=None, path="/echo"):
    """One TLS connection and upgrade: (status line or the error, whether
    the session was resumed, the session with its new ticket, the client's
    port).  The ticket comes with the 101, so it is read first."""
    c = PreClient(port or gw.port)
    try:
        try:
            c.start_tls(ctx, session=session)
            c.send(B(path))
            head = c.read_until(b"\r\n\r\n", 5)
            status = head.split(b"\r\n", 1)[0].decode()
        except (ssl.SSLError, OSError, AssertionError) as e:
            return repr(e), None, None, c.local_port
        return status, c.sock.session_reused, c.sock.session, c.local_port
    finally:
        c.close()


OK = "HTTP/1.1 101 Switching Protocols"


def tls_counts(gw):
    m = gw.metrics()
    return tuple(metric(m, "wsgate_tls_handshakes_total", resumed=r)
                 for r in ("no", "yes"))


@pytest.mark.parametrize("version", VERSIONS)
def test_tickets_survive_a_reload(factory, certs, version):
    """...and wsgate_tls_handshakes_total counts full and resumed
    handshakes apart."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, admin=True)
    gw.settle_probes()
    full0, resumed0 = tls_counts(gw)
    ctx = client_ctx(certs, version)
    st, reused, sess, _ = upgrade(gw, ctx)
    assert (st, reused) == (OK, False)
    assert sess.has_ticket
    st, reused, _, _ = upgrade(gw, ctx, sess)
    assert (st, reused) == (OK, True)
    gw.reload()
    st, reused, _, port = upgrade(gw, ctx, sess)
    assert (st, reused) == (OK, True), "the reload lost the ticket keys"
    assert gw.wait_entry(client_port=port)["status"] == 101
    full, resumed = tls_counts(gw)
    assert (full - full0, resumed - resumed0) == (1, 2)


def test_a_new_certificate_starts_afresh(factory, certs, tmp_path):
    """The same key and name, a new certificate, at a reload: the old
    ticket is not resumed (the session was authenticated with the old
    certificate), the full handshake works."""
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    shutil.copy(certs["cert"], cert)
    shutil.copy(certs["key"], key)
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         listener={"tls": {"certificate": str(cert),
                                           "key": str(key)}})
    ctx = client_ctx(certs, None)
    st, reused, sess, _ = upgrade(gw, ctx)
    assert (st, reused) == (OK, False) and sess.has_ticket
    new = tmp_path / "new.pem"
    openssl("req", "-x509", "-new", "-key", key, "-out", new, "-days", "2",
            "-subj", "/CN=localhost again",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    shutil.copy(new, cert)
    gw.reload()
    # A session belongs to its context in Python: that one offers it,
    # trusting the new certificate too.
    ctx.load_verify_locations(str(cert))
    st, reused, _, _ = upgrade(gw, ctx, sess)
    assert (st, reused) == (OK, False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "clientca")
    return {"dir": d, "good": make_client(d, "good", "clientca", "svc-t")}


@pytest.fixture
def two(factory, certs, pki):
    """Listener "public" (no client certificates) and "mtls" (client_ca),
    with the same server certificate and routes."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False)
    from conftest import free_port
    mtls = dict(gw.config["listeners"][0])
    mtls["name"] = "mtls"
    gw.mtls_port = free_port()
    mtls["listen"] = "127.0.0.1:%d" % gw.mtls_port
    mtls["tls"] = dict(mtls["tls"],
                       client_ca=str(pki["dir"] / "clientca.pem"))
    gw.config["listeners"].append(mtls)
    gw.write_config()
    gw.start()
    return gw


@pytest.mark.parametrize("version", VERSIONS)
def test_a_ticket_does_not_skip_a_client_certificate(two, certs, pki,
                                                     version):
    gw = two
    ctx = client_ctx(certs, version)
    st, reused, sess, _ = upgrade(gw, ctx)
    assert (st, reused) == (OK, False) and sess.has_ticket
    # The public listener's ticket, offered where a certificate is
    # required, without one: refused as any client without one is.
    st, reused, _, port = upgrade(gw, ctx, sess, port=gw.mtls_port)
    assert st != OK, "resumed past client_ca: %s" % st
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "handshake_failed" and e["status"] != 101, e


@pytest.mark.parametrize("version", VERSIONS)
def test_mtls_sessions_resume_and_keep_their_subject(two, certs, pki,
                                                     version):
    gw = two
    ctx = client_ctx(certs, version, pki["good"])
    st, reused, sess, port = upgrade(gw, ctx, port=gw.mtls_port)
    assert (st, reused) == (OK, False) and sess.has_ticket
    subject = gw.wait_entry(client_port=port)["tls_subject"]
    assert "svc-t" in subject, subject
    st, reused, _, port = upgrade(gw, ctx, sess, port=gw.mtls_port)
    assert (st, reused) == (OK, True)
    e = gw.wait_entry(client_port=port)
    assert e["status"] == 101 and e["tls_subject"] == subject, e
    # Its ticket does not resume on the public listener either: a full
    # handshake there, which works.
    st, reused, _, _ = upgrade(gw, ctx, sess)
    assert (st, reused) == (OK, False)
