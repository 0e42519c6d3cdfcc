"""TLS posture (issue 7) of a default-style TLS listener (no min_version, so
TLS 1.2 and up) with an RSA-2048 self-signed certificate, as the sample
configuration ships.

testssl.sh (Debian's package, command `testssl`) checks protocols, server
defaults and the known vulnerabilities: nothing below TLS 1.2, no
client-initiated renegotiation, no TLS compression, and no HIGH or
CRITICAL finding except those that come from the test certificate being
self-signed (no chain of trust, no CRL or OCSP URI in it).  A direct
`openssl s_client` renegotiation attempt is checked too.
"""

import json
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from conftest import echo_works, openssl

# Findings that come from the self-signed test certificate, not from the
# gateway: the chain cannot be trusted, and a self-signed certificate has
# neither a CRL distribution point nor an OCSP URI.
CERT_TRUST_IDS = {"cert_chain_of_trust", "cert_revocation"}


@pytest.fixture(scope="module")
def rsa_cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("rsa")
    cert, key = d / "server.pem", d / "server.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", key, "-out", cert, "-days", "365",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    return {"cert": str(cert), "key": str(key)}


@pytest.fixture
def tls_gw(factory, rsa_cert):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         listener={"tls": {"certificate": rsa_cert["cert"],
                                           "key": rsa_cert["key"]},
                                   "handshake_timeout": "5s"})
    ctx = ssl.create_default_context(cafile=rsa_cert["cert"])
    gw.ssl = ctx
    gw.ssl_cafile = rsa_cert["cert"]
    echo_works(gw)
    return gw


def test_client_initiated_renegotiation_is_refused(tls_gw):
    gw = tls_gw
    # s_client reads "R" from stdin: renegotiate over TLS 1.2
    p = subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.port,
         "-servername", "localhost", "-tls1_2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)                 # the handshake
        p.stdin.write(b"R\n")
        p.stdin.flush()
        time.sleep(1.0)
        out = p.communicate(timeout=10)[0].decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert "Protocol  : TLSv1.2" in out or "TLSv1.2" in out, out[-2000:]
    assert "RENEGOTIATING" in out, out[-2000:]
    assert "no renegotiation" in out, \
        "renegotiation was not refused:\n" + out[-2000:]
    assert gw.alive()
    echo_works(gw)


def test_tls13_prefers_aes128_and_still_takes_the_others(tls_gw):
    """The server's order (AES-128-GCM first, as Mozilla's configurations
    have it) wins over a client that lists AES-256 first, as OpenSSL's
    default does; a client that offers only one of the other suites gets
    it."""
    gw = tls_gw
    ctx = ssl.create_default_context(cafile=gw.ssl_cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with ctx.wrap_socket(socket.create_connection(
            ("127.0.0.1", gw.port), timeout=5),
            server_hostname="localhost") as s:
        assert s.version() == "TLSv1.3"
        assert s.cipher()[0] == "TLS_AES_128_GCM_SHA256", s.cipher()
    for only in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
        p = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.port,
             "-servername", "localhost", "-tls1_3", "-brief",
             "-ciphersuites", only],
            input=b"", capture_output=True, timeout=20)
        out = (p.stdout + p.stderr).decode(errors="replace")
        assert "Ciphersuite: %s" % only in out, out[-2000:]
    assert gw.alive()
    echo_works(gw)


@pytest.mark.slow
def test_testssl_reports_no_high_findings(tls_gw, tmp_path):
    gw = tls_gw
    tool = shutil.which("testssl") or shutil.which("testssl.sh")
    assert tool, "testssl.sh is not installed (contrib/install-deps.sh)"
    out = tmp_path / "testssl.json"
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [tool, "--quiet", "--color", "0", "--warnings", "off",
             "--protocols", "--server-defaults", "--vulnerable",
             "--jsonfile", str(out), "127.0.0.1:%d" % gw.port],
            capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("testssl.sh did not finish within 120s")
    took = time.monotonic() - t0
    text = p.stdout.decode(errors="replace")
    assert out.exists(), "testssl.sh wrote no JSON (rc %d):\n%s" % (
        p.returncode, text[-3000:])
    findings = json.loads(out.read_text())
    by_id = {}
    for f in findings:
        by_id.setdefault(f["id"], []).append(f)
    notable = ["%s %s: %s" % (f["id"], f["severity"], f["finding"])
               for f in findings if f["severity"] not in ("OK", "INFO")]
    print("testssl.sh took %.0fs, rc %d, %d findings; not OK/INFO:\n  %s" % (
        took, p.returncode, len(findings), "\n  ".join(notable)))
    assert not [f for f in findings if f["severity"] == "FATAL" or
                f["id"] == "scanProblem"], notable

    def one(fid):
        assert fid in by_id, "testssl.sh did not report %s:\n%s" % (
            fid, text[-3000:])
        return by_id[fid][0]

    # protocols: nothing below TLS 1.2
    for fid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert one(fid)["finding"].startswith("not offered"), one(fid)
    assert one("TLS1_2")["finding"].startswith("offered"), one("TLS1_2")
    # no client-initiated renegotiation; the secure renegotiation
    # indication (RFC 5746) is fine
    assert one("secure_client_renego")["finding"] == "not vulnerable", \
        one("secure_client_renego")
    assert one("secure_client_renego")["severity"] == "OK"
    # no TLS compression
    assert one("CRIME_TLS")["finding"] == "not vulnerable", one("CRIME_TLS")
    # no CBC cipher suites in TLS 1.2, so nothing for Lucky13
    assert one("LUCKY13")["severity"] == "OK", one("LUCKY13")
    # no HIGH or CRITICAL finding but the self-signed certificate's
    bad = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL") and
           f["id"] not in CERT_TRUST_IDS]
    assert not bad, "HIGH/CRITICAL findings:\n%s" % "\n".join(
        "%s %s: %s" % (f["id"], f["severity"], f["finding"]) for f in bad)
    assert gw.alive()
    echo_works(gw)


def test_min_version_13_refuses_a_tls12_client(factory):
    """min_version "1.3": a client that offers at most TLS 1.2 gets a
    protocol_version alert and the access log says handshake_failed; a
    TLS 1.3 client still gets through."""
    be = factory.echo()
    gw = factory.gateway(
        routes=[("/echo", "echo")], upstreams={"echo": [be.addr]},
        listener={"tls": {"certificate": factory.certs["cert"],
                          "key": factory.certs["key"],
                          "min_version": "1.3"}})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        port = raw.getsockname()[1]
        with pytest.raises(ssl.SSLError) as err:
            ctx.wrap_socket(raw, server_hostname="localhost")
    assert "PROTOCOL_VERSION" in str(err.value), err.value
    e = gw.wait_entry(client_port=port)
    assert (e["status"], e["reason"], e["path"]) == \
        (None, "handshake_failed", None), e
    echo_works(gw)


@pytest.mark.parametrize("group", ["ffdhe2048", "ffdhe8192"])
def test_no_finite_field_groups(factory, certs, group):
    """A client that offers only a finite-field group (each ffdhe8192
    ClientHello, replayed, costs the gateway ~150 ms of CPU) gets no
    handshake; one that also offers X25519 gets X25519."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})

    def s_client(groups):
        p = subprocess.run(["openssl", "s_client", "-connect",
                            "127.0.0.1:%d" % gw.port, "-tls1_3",
                            "-groups", groups], input=b"",
                           capture_output=True, timeout=20)
        return p.stdout.decode(errors="replace")
    out = s_client(group)
    assert "Server Temp Key: DH" not in out and \
        "Cipher is (NONE)" in out, out
    out = s_client(group + ":X25519")
    assert "Server Temp Key: X25519" in out, out


@pytest.mark.parametrize("offer,want", [
    (["h2", "http/1.1"], "http/1.1"), (["http/1.1"], "http/1.1"),
    (["h2"], None), (None, None)])
def test_alpn_never_selects_h2(tls_gw, offer, want):
    """ALPN: http/1.1 when offered, whatever else is; a client offering
    only h2 gets the no_application_protocol alert, never h2; a client
    without ALPN is served."""
    gw = tls_gw
    for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=gw.ssl_cafile)
        ctx.maximum_version = ver
        if offer is not None:
            ctx.set_alpn_protocols(offer)
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        try:
            if offer == ["h2"]:
                with pytest.raises(ssl.SSLError) as ei:
                    ctx.wrap_socket(sock, server_hostname="localhost")
                assert "no application protocol" in str(ei.value).lower(), ei.value
                continue
            with ctx.wrap_socket(sock, server_hostname="localhost") as s:
                assert s.selected_alpn_protocol() == want
        finally:
            sock.close()
    assert gw.alive()
    echo_works(gw)


@pytest.mark.parametrize("cipher,ok", [
    ("ECDHE-RSA-AES128-GCM-SHA256", True),
    ("ECDHE-RSA-CHACHA20-POLY1305", True),
    ("DHE-RSA-AES128-GCM-SHA256", False),
    ("DHE-RSA-CHACHA20-POLY1305", False),
    ("ECDHE-RSA-AES128-SHA", False)])
def test_tls12_key_exchange_is_ecdhe_only(tls_gw, cipher, ok):
    """TLS 1.2 with the RSA certificate: the ECDHE AEAD suites only, as
    wsgate.yaml(5) says.  No DH parameters are set, so a client that
    offers only DHE suites gets a handshake_failure alert, as one offering
    only CBC does."""
    gw = tls_gw
    ctx = ssl.create_default_context(cafile=gw.ssl_cafile)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        if not ok:
            with pytest.raises(ssl.SSLError) as ei:
                ctx.wrap_socket(sock, server_hostname="localhost")
            assert "handshake failure" in str(ei.value).lower(), ei.value
        else:
            with ctx.wrap_socket(sock, server_hostname="localhost") as s:
                assert s.cipher()[0] == cipher, s.cipher()
    finally:
        sock.close()
    assert gw.alive()
