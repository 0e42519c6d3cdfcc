"""TLS session tickets: one key ring for the process.

A ticket stays good across a reload (each reload builds new TLS contexts;
with OpenSSL's own per-context keys every returning client would make a
full handshake), in TLS 1.3 and TLS 1.2.  What a ticket may resume is
bound to what its session was authenticated with: a new certificate
starts afresh, and a ticket from a listener without client certificates
does not resume on one that requires them (that would let a client in
without a certificate).  A client certificate's subject is still logged
on a resumed session.  Gateways given the same tls_ticket_secret resume
each other's tickets, and their own after a restart.
"""

import os
import re
import shutil
import ssl
import subprocess

import pytest

import rawclient
from conftest import WSGATE, PreClient, free_port, metric, openssl
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
    # wsgate(8): tickets, TLS 1.2's as well, live two hours
    assert sess.ticket_lifetime_hint == 7200, sess.ticket_lifetime_hint
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


# -- tls_ticket_secret: gateways that share a secret share ticket keys ------

def secret_file(path, data=None, mode=0o600):
    path.write_bytes(os.urandom(48) if data is None else data)
    os.chmod(path, mode)
    return path


def secret_gateway(factory, be, secret, start=True):
    top = {} if secret is None else {"tls_ticket_secret": str(secret)}
    return factory.gateway(routes=[("/echo", "echo")],
                           upstreams={"echo": [be.addr]}, top=top,
                           start=start)


@pytest.mark.parametrize("version", VERSIONS)
def test_shared_secret_resumes_on_another_gateway(factory, certs, tmp_path,
                                                  version):
    """Two gateways with the same tls_ticket_secret (and certificate):
    a ticket from one resumes on the other, both ways.  A third without
    the secret makes a full handshake with it."""
    secret = secret_file(tmp_path / "ticket.secret")
    be = factory.echo()
    gw1 = secret_gateway(factory, be, secret)
    gw2 = secret_gateway(factory, be, secret)
    gw3 = secret_gateway(factory, be, None)
    ctx = client_ctx(certs, version)
    st, reused, sess1, _ = upgrade(gw1, ctx)
    assert (st, reused) == (OK, False) and sess1.has_ticket
    st, reused, sess2, port = upgrade(gw2, ctx, sess1)
    assert (st, reused) == (OK, True), "gw2 did not resume gw1's ticket"
    assert gw2.wait_entry(client_port=port)["status"] == 101
    st, reused, _, _ = upgrade(gw1, ctx, sess2)
    assert (st, reused) == (OK, True), "gw1 did not resume gw2's ticket"
    st, reused, _, _ = upgrade(gw3, ctx, sess1)
    assert (st, reused) == (OK, False)


def test_shared_secret_survives_a_restart(factory, certs, tmp_path):
    """With the secret a ticket resumes after the process restarts;
    without one the keys die with the process."""
    be = factory.echo()
    ctx = client_ctx(certs, None)
    for secret, after in ((secret_file(tmp_path / "s"), True),
                          (None, False)):
        gw = secret_gateway(factory, be, secret)
        st, reused, sess, _ = upgrade(gw, ctx)
        assert (st, reused) == (OK, False) and sess.has_ticket
        gw.stop()
        gw.start()
        st, reused, _, _ = upgrade(gw, ctx, sess)
        assert (st, reused) == (OK, after), (secret, reused)


def test_new_secret_at_a_reload(factory, certs, tmp_path):
    """A changed secret retires the tickets out (logged); a bad one fails
    the reload and the running keys stay."""
    secret = secret_file(tmp_path / "ticket.secret")
    be = factory.echo()
    gw = secret_gateway(factory, be, secret)
    ctx = client_ctx(certs, None)
    st, reused, old, _ = upgrade(gw, ctx)
    assert (st, reused) == (OK, False)

    # Too short: the reload fails, the old ticket still resumes.
    good = secret.read_bytes()
    secret_file(secret, b"x" * 31)
    gw.reload(expect="failed")
    assert "holds 31 bytes, needs 32 to 1024" in gw.error_text()
    st, reused, _, _ = upgrade(gw, ctx, old)
    assert (st, reused) == (OK, True)

    # The same secret again: nothing changes.
    secret_file(secret, good)
    gw.reload()
    assert "new TLS ticket keys" not in gw.error_text()
    st, reused, _, _ = upgrade(gw, ctx, old)
    assert (st, reused) == (OK, True)

    # Another secret: old tickets make a full handshake, new ones resume.
    secret_file(secret)
    gw.reload()
    assert "reload: new TLS ticket keys (tls_ticket_secret changed): " \
        "tickets issued before no longer resume" in gw.error_text()
    st, reused, new, _ = upgrade(gw, ctx, old)
    assert (st, reused) == (OK, False)
    st, reused, _, _ = upgrade(gw, ctx, new)
    assert (st, reused) == (OK, True)

    # No secret any more: random keys, and the log says it was removed.
    del gw.config["tls_ticket_secret"]
    gw.write_config()
    gw.reload()
    assert "reload: new TLS ticket keys (tls_ticket_secret removed): " \
        "tickets issued before no longer resume" in gw.error_text()
    st, reused, _, _ = upgrade(gw, ctx, new)
    assert (st, reused) == (OK, False)


def check_config(gw):
    p = subprocess.run([WSGATE, "-t", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def test_secret_file_errors(factory, certs, tmp_path):
    """Missing, short and long files are errors at their line; a file
    others can read is a warning."""
    be = factory.echo()
    cases = [
        (tmp_path / "missing", None,
         r"tls_ticket_secret: cannot open \S*missing: No such file"),
        (tmp_path / "short", b"k" * 20,
         r"tls_ticket_secret: \S*short holds 20 bytes, needs 32 to 1024 "
         r"\(openssl rand 48 > \S*short\)"),
        (tmp_path / "long", b"k" * 1025,
         r"tls_ticket_secret: \S*long holds more than 1024 bytes"),
    ]
    for path, data, want in cases:
        if data is not None:
            secret_file(path, data)
        gw = secret_gateway(factory, be, path, start=False)
        rc, out = check_config(gw)
        assert rc != 0, out
        line = [i for i, t in enumerate(gw.cfg_path.read_text()
                                        .splitlines(), 1)
                if t.startswith("tls_ticket_secret:")][0]
        assert re.search(r"wsgate.yaml:%d:\d+: %s" % (line, want), out), out
    path = secret_file(tmp_path / "open", mode=0o644)
    gw = secret_gateway(factory, be, path, start=False)
    rc, out = check_config(gw)
    assert rc == 0, out
    assert "can be read by other users (mode 644)" in out, out
    path.chmod(0o640)               # the file's group counts too
    rc, out = check_config(gw)
    assert rc == 0, out
    assert "can be read by other users (mode 640)" in out, out
    path.chmod(0o600)
    rc, out = check_config(gw)
    assert rc == 0 and "other users" not in out, out


# -- a changed client CA ends the sessions of the old one ---------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_rekeyed_ca_at_reload_refuses_old_tickets(factory, certs, tmp_path,
                                                  version):
    """The CA is replaced by a new one (new key, same name) at a reload, so
    that certificates of the old one no longer get in.  A full handshake
    with an old certificate is refused; a ticket from before the reload
    must be refused too."""
    d = tmp_path
    make_ca(d, "old", "Internal Client CA")
    make_ca(d, "new", "Internal Client CA")
    oldcert = make_client(d, "oldclient", "old", "svc-old")
    ca = d / "clientca.pem"
    shutil.copy(d / "old.pem", ca)
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         listener={"tls": {"certificate": certs["cert"],
                                           "key": certs["key"],
                                           "client_ca": str(ca)}})
    ctx = client_ctx(certs, version, oldcert)
    st, reused, sess, _ = upgrade(gw, ctx)
    assert (st, reused) == (OK, False) and sess.has_ticket
    shutil.copy(d / "new.pem", ca)
    gw.reload()
    # a full handshake with the old CA's certificate: refused
    st, reused, _, _ = upgrade(gw, ctx)
    assert st != OK, st
    # the ticket from before the reload
    st, reused, _, port = upgrade(gw, ctx, sess)
    e = gw.wait_entry(client_port=port)
    assert st != OK, "old-CA session resumed after the CA changed: %s %s" % (
        reused, e)


@pytest.mark.parametrize("version", VERSIONS)
def test_trusted_format_ca_listeners_do_not_share_sessions(factory, certs,
                                                           tmp_path, version):
    """Two mTLS listeners, same server certificate, different client CAs
    written as TRUSTED CERTIFICATE PEM (openssl x509 -trustout), which
    SSL_CTX_load_verify_locations() reads.  A certificate of CA A is
    refused on listener B; its ticket from A must be refused on B too."""
    d = tmp_path
    make_ca(d, "caA", "CA A")
    make_ca(d, "caB", "CA B")
    for n in ("caA", "caB"):
        openssl("x509", "-in", d / (n + ".pem"), "-trustout",
                "-addtrust", "clientAuth", "-out", d / (n + ".trusted.pem"))
    certA = make_client(d, "clientA", "caA", "svc-a")
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False,
                         listener={"tls": {"certificate": certs["cert"],
                                           "key": certs["key"],
                                           "client_ca": str(
                                               d / "caA.trusted.pem")}})
    b = dict(gw.config["listeners"][0])
    b["name"] = "b"
    gw.b_port = free_port()
    b["listen"] = "127.0.0.1:%d" % gw.b_port
    b["tls"] = dict(b["tls"], client_ca=str(d / "caB.trusted.pem"))
    gw.config["listeners"].append(b)
    gw.write_config()
    gw.start()
    ctx = client_ctx(certs, version, certA)
    st, reused, sess, _ = upgrade(gw, ctx)
    assert (st, reused) == (OK, False) and sess.has_ticket, st
    st, reused, _, _ = upgrade(gw, ctx, port=gw.b_port)
    assert st != OK, "CA A's certificate accepted on B in a full handshake"
    st, reused, _, port = upgrade(gw, ctx, sess, port=gw.b_port)
    e = gw.wait_entry(client_port=port)
    assert st != OK, "A's session resumed on B: %s %s" % (reused, e)


# -- a ticket does not outlive its client certificate ------------------------

def test_expired_client_cert_does_not_resume(factory, certs, tmp_path):
    """A session whose client certificate, or an authority above it, was
    valid at its handshake is not resumed once that certificate is past
    its notAfter (its ticket is good for hours more): the client makes a
    full handshake, refused as a fresh one with that chain is, with the
    same log line.  Before then it resumes, in TLS 1.3 and TLS 1.2."""
    import datetime
    import time
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from test_policy_mtls import _cg_cert
    pem = serialization.Encoding.PEM
    day = datetime.timedelta(days=1)
    rkey = ec.generate_private_key(ec.SECP256R1())
    root = _cg_cert("exp-root", rkey, "exp-root", rkey, True, -day, day)
    (tmp_path / "root.pem").write_bytes(root.public_bytes(pem))
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         listener={"tls": {"certificate": certs["cert"],
                                           "key": certs["key"],
                                           "client_ca": str(
                                               tmp_path / "root.pem")}})
    # Made once the gateway runs: a leaf that expires 4 s from now, and
    # a leaf valid for a day under an intermediate that expires then.
    soon = datetime.timedelta(seconds=4)
    ikey = ec.generate_private_key(ec.SECP256R1())
    inter = _cg_cert("exp-int", ikey, "exp-root", rkey, True, -day, soon)
    expiry = inter.not_valid_after.replace(
        tzinfo=datetime.timezone.utc).timestamp()
    ctxs = []
    for name, icn, issuer, end, chain in (
            ("leaf", "exp-root", rkey, soon, []),
            ("under", "exp-int", ikey, day, [inter])):
        lkey = ec.generate_private_key(ec.SECP256R1())
        leaf = _cg_cert("exp-" + name, lkey, icn, issuer, False, -day, end)
        (tmp_path / "c.pem").write_bytes(b"".join(
            c.public_bytes(pem) for c in [leaf] + chain))
        (tmp_path / "c.key").write_bytes(lkey.private_bytes(
            pem, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        cert = (tmp_path / "c.pem", tmp_path / "c.key")
        ctxs += [client_ctx(certs, v, cert) for v in
                 (None, ssl.TLSVersion.TLSv1_2)]
    sessions = []
    for ctx in ctxs:
        st, reused, sess, _ = upgrade(gw, ctx)
        assert (st, reused) == (OK, False) and sess.has_ticket, st
        st, reused, sess, _ = upgrade(gw, ctx, sess)
        assert (st, reused) == (OK, True), st
        sessions.append(sess)
    if time.time() >= expiry:
        pytest.skip("too slow: the certificates expired before resuming")
    time.sleep(max(0, expiry - time.time()) + 1.2)
    for ctx, sess in zip(ctxs, sessions):
        st, reused, _, port = upgrade(gw, ctx, sess)
        e = gw.wait_entry(client_port=port)
        assert st != OK, "resumed with an expired certificate: %s" % e
        assert e["reason"] == "handshake_failed" and e["status"] != 101, e
    fails = [l for l in gw.error_text().splitlines()
             if "TLS handshake failed: certificate verify" in l]
    assert len(fails) == 4, gw.error_text()[-2000:]
    assert all("certificate has expired" in l for l in fails), fails
