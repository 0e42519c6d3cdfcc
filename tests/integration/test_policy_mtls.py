"""Listener `tls.client_ca`: mutual TLS.

A CA and client certificates made with the openssl CLI.  No client
certificate, or one from another CA, fails the TLS handshake (access-log
reason handshake_failed, no upstream connection); a certificate from the
CA works and its subject is the access-log field `tls_subject`.
"""

import ssl
import subprocess

import pytest

import rawclient
import wsproto
from conftest import PreClient, http_upgrade, openssl

B = rawclient.build_request


def make_ca(d, name, cn=None):
    """A CA in d/name.pem and d/name.key, named CN=cn (default: name)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-keyout", d / (name + ".key"), "-out", d / (name + ".pem"),
            "-subj", "/CN=%s" % (cn or name),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_client(d, name, ca, cn, dn="/O=wsgate tests"):
    ext = d / (name + ".ext")
    ext.write_text("basicConstraints=CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", d / (name + ".key"), "-out", d / (name + ".csr"),
            "-subj", "%s/CN=%s" % (dn, cn))
    openssl("x509", "-req", "-in", d / (name + ".csr"), "-CA",
            d / (ca + ".pem"), "-CAkey", d / (ca + ".key"),
            "-CAcreateserial", "-days", "2", "-extfile", ext,
            "-out", d / (name + ".pem"))
    return d / (name + ".pem"), d / (name + ".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "clientca")
    make_ca(d, "rogueca")
    return {"dir": d,
            "good": make_client(d, "good", "clientca", "svc-alpha"),
            "rogue": make_client(d, "rogue", "rogueca", "svc-rogue")}


@pytest.fixture(scope="module")
def gw(module_factory, pki, certs):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/m", "rec")], upstreams={"rec": [up.addr]},
        listener={"tls": {"certificate": certs["cert"], "key": certs["key"],
                          "client_ca": str(pki["dir"] / "clientca.pem")}})
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def ctx_with(certs, cert=None, max_version=None):
    ctx = ssl.create_default_context(cafile=certs["cert"])
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


@pytest.mark.parametrize("who,tls", [
    ("none", None), ("none", ssl.TLSVersion.TLSv1_2),
    ("rogue", None), ("rogue", ssl.TLSVersion.TLSv1_2)])
def test_without_a_cert_from_the_ca_the_handshake_fails(gw, up, pki, certs,
                                                         who, tls):
    ctx = ctx_with(certs, None if who == "none" else pki[who], tls)
    upgraded, e = try_upgrade(gw, ctx)
    assert not upgraded
    assert e["reason"] == "handshake_failed", e
    assert e["status"] != 101 and e["tls_subject"] is None, e
    assert up.connections() == []


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_the_certificate_request_names_the_client_ca(gw, pki, version):
    """The server's certificate request lists the subject of client_ca, so
    that a client holding several certificates (a browser) offers the one
    that CA issued."""
    good = pki["good"]
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.port,
         "-servername", "localhost", version, "-cert", str(good[0]),
         "-key", str(good[1])],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    assert "Acceptable client certificate CA names" in out, out[-2000:]
    names = out.split("Acceptable client certificate CA names", 1)[1]
    assert names.split("\n")[1].strip() == "CN = clientca", out[-2000:]


@pytest.mark.parametrize("tls", [None, ssl.TLSVersion.TLSv1_2])
def test_cert_from_the_ca_works_and_subject_is_logged(gw, up, pki, certs,
                                                      tls):
    c = PreClient(gw.port).start_tls(ctx_with(certs, pki["good"], tls))
    c, _ = http_upgrade(gw, B("/m"), client=c)
    try:
        c.send_frame(wsproto.OP_TEXT, b"hello mtls")
        f = c.read_frame(5)
        assert f is not None and f.payload == b"hello mtls", f
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101, e
    assert e["tls_subject"] and "svc-alpha" in e["tls_subject"], e
    assert len(up.connections()) == 1


# -- validity and chain depth (certificates made with python3-cryptography) --

def _cg_name(cn):
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cg_cert(cn, key, issuer_cn, issuer_key, ca, start, end):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    b = (x509.CertificateBuilder().subject_name(_cg_name(cn))
         .issuer_name(_cg_name(issuer_cn)).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(datetime.datetime.utcnow() + start)
         .not_valid_after(datetime.datetime.utcnow() + end)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                        critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False,
            key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_chain(d, name, intermediates, start_days=-1, end_days=2):
    """Root d/name-root.pem; a client leaf signed through that many
    intermediates, valid from start_days to end_days from now, written
    with its intermediates to d/name.pem and its key to d/name.key."""
    import datetime
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    day = datetime.timedelta(days=1)
    pem = serialization.Encoding.PEM
    rkey = ec.generate_private_key(ec.SECP256R1())
    root = _cg_cert(name + "-root", rkey, name + "-root", rkey, True,
                    -day, 2 * day)
    (d / (name + "-root.pem")).write_bytes(root.public_bytes(pem))
    ikey, icn, chain = rkey, name + "-root", []
    for i in range(intermediates):
        k = ec.generate_private_key(ec.SECP256R1())
        cn = "%s-int%d" % (name, i)
        chain.insert(0, _cg_cert(cn, k, icn, ikey, True, -day, 2 * day))
        ikey, icn = k, cn
    lkey = ec.generate_private_key(ec.SECP256R1())
    leaf = _cg_cert(name + "-leaf", lkey, icn, ikey, False,
                    start_days * day, end_days * day)
    (d / (name + ".pem")).write_bytes(b"".join(
        c.public_bytes(pem) for c in [leaf] + chain))
    (d / (name + ".key")).write_bytes(lkey.private_bytes(
        pem, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return d / (name + ".pem"), d / (name + ".key")


def try_upgrade(g, ctx):
    """Upgrade over TLS with ctx: (upgraded?, the access-log entry).  With
    TLS 1.3 the client may only learn of a refusal when it reads."""
    c = PreClient(g.port)
    upgraded = False
    try:
        try:
            c.start_tls(ctx)
            c.send(B("/m"))
            head = c.read_until(b"\r\n\r\n", 5)
            upgraded = head.startswith(b"HTTP/1.1 101")
        except (ssl.SSLError, OSError, AssertionError):
            pass
    finally:
        c.close()
    return upgraded, g.wait_entry(client_port=c.local_port)


@pytest.mark.parametrize("case,ok", [
    ("valid", True), ("expired", False), ("notyet", False),
    ("deep2", True), ("deep8", True), ("deep9", False)])
def test_client_cert_validity_and_depth(factory, certs, tmp_path, case, ok):
    """A client certificate past its notAfter or before its notBefore, or
    one more than eight intermediates below the client CA, fails the
    handshake; up to eight intermediates are fine."""
    d = tmp_path
    kw = {"valid": {}, "expired": {"start_days": -3, "end_days": -1},
          "notyet": {"start_days": 1, "end_days": 3}}.get(case, {})
    n = int(case[4:]) if case.startswith("deep") else 0
    cert = make_chain(d, "c", n, **kw)
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/m", "rec")], upstreams={"rec": [up.addr]},
        listener={"tls": {"certificate": certs["cert"], "key": certs["key"],
                          "client_ca": str(d / "c-root.pem")}})
    for tls in (None, ssl.TLSVersion.TLSv1_2):
        upgraded, e = try_upgrade(g, ctx_with(certs, cert, tls))
        assert upgraded == ok, e
        if ok:
            assert e["status"] == 101 and "c-leaf" in e["tls_subject"], e
        else:
            assert e["reason"] == "handshake_failed", e
            assert e["tls_subject"] is None, e
    assert len(up.connections()) == (2 if ok else 0)
    # the error log says why, in OpenSSL's words for the verify result
    why = {"expired": "certificate has expired",
           "notyet": "certificate is not yet valid",
           "deep9": "certificate chain too long"}.get(case)
    if why is not None:
        fails = [l for l in g.error_text().splitlines()
                 if "TLS handshake failed: certificate verify" in l]
        assert len(fails) == 2 and all(why in l for l in fails), fails


@pytest.mark.parametrize("what", ["too_large", "garbage", "timeout",
                                  "nothing"])
def test_subject_is_logged_when_the_request_is_not(factory, certs, pki,
                                                   what):
    """The client certificate is known when the TLS handshake ends, not
    when a request head has been read: a client that authenticated and
    then sent a head over max_header_bytes (431), bytes that are no head
    at all (400), nothing before handshake_timeout, or hung up, still has
    its subject in the access log."""
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/m", "rec")], upstreams={"rec": [up.addr]},
        listener={"tls": {"certificate": certs["cert"], "key": certs["key"],
                          "client_ca": str(pki["dir"] / "clientca.pem")},
                  "handshake_timeout": "1s"})
    c = PreClient(g.port).start_tls(ctx_with(certs, pki["good"]))
    try:
        if what == "too_large":
            c.send(b"GET /m HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 +
                   b"\r\n\r\n")
        elif what == "garbage":
            c.send(b"\x00\x01 not http\r\n\r\n")
        if what != "nothing":
            c.read_to_eof(5)
    except (ssl.SSLError, OSError):
        pass
    finally:
        c.close()
    e = g.wait_entry(client_port=c.local_port)
    want = {"too_large": (431, "headers_too_large"),
            "garbage": (400, "bad_request"),
            "timeout": (None, "handshake_timeout"),
            "nothing": (None, "handshake_failed")}[what]
    assert (e["status"], e["reason"]) == want, e
    assert e["tls_subject"] and "svc-alpha" in e["tls_subject"], e
    assert up.connections() == []


def test_a_long_subject_is_logged_whole(factory, certs, pki):
    """A subject longer than 255 characters in its one-line form (four
    organizational units of 60 characters, then the CN): the whole of it
    is logged, the CN included, not the first RDNs that fit."""
    d = pki["dir"]
    ous = "".join("/OU=%s" % (c * 60) for c in "abcd")
    cert = make_client(d, "long", "clientca", "svc-long", dn=ous)
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/m", "rec")], upstreams={"rec": [up.addr]},
        listener={"tls": {"certificate": certs["cert"], "key": certs["key"],
                          "client_ca": str(d / "clientca.pem")}})
    upgraded, e = try_upgrade(g, ctx_with(certs, cert))
    assert upgraded and e["status"] == 101, e
    assert e["tls_subject"] == ous + "/CN=svc-long", e
