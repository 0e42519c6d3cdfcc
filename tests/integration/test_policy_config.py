"""Policy sections that must not load: `wsgate -t` reports each mistake as
FILE:LINE:COL: message and exits non-zero (wsgate-policy(5)), and the
risky-but-legal settings only warn.
"""

import os
import re
import subprocess

import pytest

from conftest import WSGATE, Gateway, make_mmdb, openssl, policy


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfgkeys")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
            "rsa_keygen_bits:2048", "-out", d / "rsa.key")
    openssl("pkey", "-in", d / "rsa.key", "-pubout", "-out", d / "rsa.pub")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
            "rsa_keygen_bits:1024", "-out", d / "rsa1024.key")
    openssl("pkey", "-in", d / "rsa1024.key", "-pubout",
            "-out", d / "rsa1024.pub")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-out", d / "ec.key")
    openssl("pkey", "-in", d / "ec.key", "-pubout", "-out", d / "ec.pub")
    (d / "two.pub").write_bytes((d / "rsa.pub").read_bytes() +
                                (d / "ec.pub").read_bytes())
    # two self-signed certificates, as for a rotation; and a real chain:
    # a leaf the CA signed, then the CA
    for name in ("rsa", "ec"):
        openssl("req", "-x509", "-key", d / ("%s.key" % name), "-subj",
                "/CN=jwt-%s" % name, "-days", "2", "-out",
                d / ("%s.crt" % name))
    (d / "two.crt").write_bytes((d / "rsa.crt").read_bytes() +
                                (d / "ec.crt").read_bytes())
    openssl("req", "-new", "-key", d / "rsa.key", "-subj", "/CN=jwt-leaf",
            "-out", d / "leaf.csr")
    openssl("x509", "-req", "-in", d / "leaf.csr", "-CA", d / "ec.crt",
            "-CAkey", d / "ec.key", "-set_serial", "2", "-days", "2",
            "-out", d / "leaf.crt")
    (d / "chain.crt").write_bytes((d / "leaf.crt").read_bytes() +
                                  (d / "ec.crt").read_bytes())
    (d / "short.secret").write_bytes(b"x" * 31)
    (d / "good.secret").write_bytes(b"y" * 32 + b"\n")
    (d / "short384.secret").write_bytes(b"z" * 47 + b"\n")
    make_mmdb(d / "geo.mmdb", "127.0.0.0/24=DE")
    make_mmdb(d / "geo4.mmdb", "127.0.0.0/24=DE", ipv4_only=True)
    # the first node of the search tree points past the end of the file
    data = bytearray((d / "geo.mmdb").read_bytes())
    data[0:6] = b"\xff" * 6
    (d / "corrupt.mmdb").write_bytes(bytes(data))
    return d


def run_check(tmp_path, certs, client_ssl, pol, listener=None):
    gw = Gateway(tmp_path / "gw", certs, client_ssl,
                 routes=[("/echo", "echo", "p")],
                 upstreams={"echo": ["127.0.0.1:9"]},
                 policies={"p": pol}, listener=listener)
    p = subprocess.run([WSGATE, "-t", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    return gw, p.returncode, p.stdout + p.stderr


def jwt_pol(keys, algs, key):
    return policy(auth={"jwt": {"algorithms": algs,
                                "key_file": str(keys / key)}})


BAD_POLICIES = {
    "alg_none": (lambda k: jwt_pol(k, ["none"], "good.secret"),
                 r"algorithm 'none' is never accepted"),
    "alg_NONE": (lambda k: jwt_pol(k, ["RS256", "NONE"], "rsa.pub"),
                 r"never accepted"),
    "hs256_with_rsa_key": (lambda k: jwt_pol(k, ["RS256", "HS256"],
                                             "rsa.pub"),
                           r"HS256 cannot be used with an RSA public key"),
    "es256_with_rsa_key": (lambda k: jwt_pol(k, ["ES256"], "rsa.pub"),
                           r"ES256"),
    "rs256_with_ec_key": (lambda k: jwt_pol(k, ["RS256"], "ec.pub"),
                          r"RS256"),
    "private_key": (lambda k: jwt_pol(k, ["RS256"], "rsa.key"),
                    r"private"),
    "rsa_1024": (lambda k: jwt_pol(k, ["RS256"], "rsa1024.pub"),
                 r"2048|bits|short|small|weak"),
    # one key is used: tokens signed with the other would all fail
    "two_public_keys": (lambda k: jwt_pol(k, ["RS256"], "two.pub"),
                        r"key_file: .*two\.pub: file holds more than one "
                        r"key; give one public key or one certificate"),
    # a second certificate that did not sign the first is another key,
    # not its chain
    "two_certificates": (lambda k: jwt_pol(k, ["RS256"], "two.crt"),
                         r"key_file: .*two\.crt: file holds more than one "
                         r"key; give one public key or one certificate"),
    "hmac_31_bytes": (lambda k: jwt_pol(k, ["HS256"], "short.secret"),
                      r"32|short"),
    "missing_key_file": (lambda k: jwt_pol(k, ["HS256"], "nope.secret"),
                         r"nope\.secret"),
    "origin_with_path": (lambda k: policy(origin={
        "allow": ["https://x/path"]}),
        r"not a scheme://host\[:port\] origin"),
    # a DNS label, the last one too, does not end with a hyphen
    "origin_last_label_hyphen": (lambda k: policy(origin={
        "allow": ["https://app.example-"]}),
        r"not a scheme://host\[:port\] origin"),
    "origin_bad_regex": (lambda k: policy(origin={
        "allow_regex": ["^(https://"]}), r"\^\(https://"),
    "deny_regex_bad": (lambda k: policy(messages={
        "deny_regex": ["a{2,1}"]}), r"a\{2,1\}"),
    # the pattern is not quoted whole: at 4097 bytes it filled the line
    # and cut off the reason
    "deny_regex_too_long": (lambda k: policy(messages={
        "deny_regex": ["a" * 4097]}),
        r"deny_regex: a pattern is at most 4096 bytes, got 4097$"),
    "allow_regex_too_long": (lambda k: policy(origin={
        "allow_regex": ["^" + "b" * 4095 + "$"]}),
        r"allow_regex: a pattern is at most 4096 bytes, got 4097$"),
    # quoted whole, and PCRE2's message after it
    "deny_regex_long_and_bad": (lambda k: policy(messages={
        "deny_regex": ["c" * 2000 + "["]}),
        r"deny_regex: invalid regex 'c{2000}\[': offset 2001: missing "
        r"terminating \] for character class$"),
    "bad_cidr": (lambda k: policy(ip={"deny": ["300.0.0.0/8"]}),
                 r"300\.0\.0\.0"),
    "bad_prefix": (lambda k: policy(ip={"allow": ["10.0.0.0/33"]}),
                   r"10\.0\.0\.0/33"),
    "geoip_missing_db": (lambda k: policy(geoip={
        "database": str(k / "none.mmdb")}), r"none\.mmdb"),
    "geoip_corrupt_tree": (lambda k: policy(geoip={
        "database": str(k / "corrupt.mmdb")}), r"corrupt\.mmdb: corrupt"),
    "geoip_no_database_key": (lambda k: policy(geoip={
        "allow_countries": ["DE"]}), r"database"),
    "geoip_not_a_db": (lambda k: policy(geoip={
        "database": str(k / "rsa.pub")}), r"rsa\.pub|database|mmdb"),
    "leeway_over_1h": (lambda k: policy(auth={"jwt": {
        "algorithms": ["HS256"], "key_file": str(k / "good.secret"),
        "leeway": "2h"}}), r"leeway"),
    "forward_to_reserved_header": (lambda k: policy(auth={"jwt": {
        "algorithms": ["HS256"], "key_file": str(k / "good.secret"),
        "forward_claims": {"sub": "X-Forwarded-For"}}}),
        r"X-Forwarded-For"),
    # a header name of 129 characters is a token, but over the limit
    "header_over_128": (lambda k: policy(auth={
        "header": "X" * 129, "jwt": {
            "algorithms": ["HS256"], "key_file": str(k / "good.secret")}}),
        r"header: 'X{129}' is not an HTTP header name of 1 to 128 "
        r"characters$"),
    "forward_header_over_128": (lambda k: policy(auth={"jwt": {
        "algorithms": ["HS256"], "key_file": str(k / "good.secret"),
        "forward_claims": {"sub": "X" * 129}}}),
        r"forward_claims: 'X{129}' is not an HTTP header name of 1 to 128 "
        r"characters$"),
    "bad_query_param": (lambda k: policy(auth={
        "query_param": "a b", "jwt": {
            "algorithms": ["HS256"], "key_file": str(k / "good.secret")}}),
        r"query_param"),
    "rate_limit_unsupported": (lambda k: policy(rate_limit={
        "messages_per_second": 10}), r"rate_limit"),
    # a size is for bytes_per_connection; 1KiB/s of handshakes was 1024/s
    "events_rate_with_a_size": (lambda k: policy(rate_limit={
        "connections_per_ip": {"rate": "1KiB/s"}}),
        r"rate: invalid rate '1KiB/s': the amount is a number of events, "
        r"without a unit$"),
    "messages_rate_with_a_size": (lambda k: policy(rate_limit={
        "messages_per_connection": {"rate": "1MiB/m", "burst": 10}}),
        r"rate: invalid rate '1MiB/m': the amount is a number of events, "
        r"without a unit$"),
    "unknown_on_expiry": (lambda k: policy(auth={
        "on_expiry": "explode", "jwt": {
            "algorithms": ["HS256"], "key_file": str(k / "good.secret")}}),
        r"on_expiry|explode"),
}


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_bad_policy_is_reported_with_position(tmp_path, certs, client_ssl,
                                              keys, case):
    make, want = BAD_POLICIES[case]
    gw, rc, out = run_check(tmp_path, certs, client_ssl, make(keys))
    assert rc != 0, out
    pol = re.escape(str(gw.tmp / "policies" / "p.yaml"))
    assert re.search(r"^%s:\d+:\d+: .*(%s)" % (pol, want), out,
                     re.M | re.I), out
    assert ": ok" not in out, out


@pytest.mark.parametrize("listener,want", [
    ({"trusted_proxies": ["not-a-cidr"]}, r"not-a-cidr"),
    ({"proxy_protocol": "sometimes"}, r"proxy_protocol|sometimes"),
])
def test_bad_listener_policy_keys_are_reported(tmp_path, certs, client_ssl,
                                               listener, want):
    gw, rc, out = run_check(tmp_path, certs, client_ssl, policy(),
                            listener=listener)
    assert rc != 0, out
    assert re.search(r"^%s:\d+:\d+: .*(%s)" % (re.escape(str(gw.cfg_path)),
                                               want), out, re.M | re.I), out


def test_unreadable_client_ca_is_reported(tmp_path, certs, client_ssl):
    tls = {"certificate": certs["cert"], "key": certs["key"],
           "client_ca": str(tmp_path / "no-such-ca.pem")}
    gw, rc, out = run_check(tmp_path, certs, client_ssl, policy(),
                            listener={"tls": tls})
    assert rc != 0, out
    assert "no-such-ca.pem" in out, out


@pytest.mark.parametrize("pol,want", [
    (lambda k: policy(origin={"allow": []}), r"origin"),
    (lambda k: policy(ip={"allow": ["10.1.2.3/8"]}), r"10\.1\.2\.3/8"),
    (lambda k: policy(geoip={"database": str(k / "geo4.mmdb"),
                             "allow_countries": ["DE"]}),
     r"database: .*geo4\.mmdb has IPv4 networks only"),
    # RFC 7518 3.2: a key at least as long as the hash output
    (lambda k: jwt_pol(k, ["HS256", "HS512"], "good.secret"),
     r"algorithms: HS512 wants an HMAC secret of at least 64 bytes "
     r"\(RFC 7518 3\.2\); key_file has 32$"),
    (lambda k: jwt_pol(k, ["HS384"], "good.secret"),
     r"algorithms: HS384 wants an HMAC secret of at least 48 bytes "
     r"\(RFC 7518 3\.2\); key_file has 32$"),
    # one byte short is short
    (lambda k: jwt_pol(k, ["HS384"], "short384.secret"),
     r"algorithms: HS384 wants an HMAC secret of at least 48 bytes "
     r"\(RFC 7518 3\.2\); key_file has 47$"),
])
def test_risky_settings_warn_but_load(tmp_path, certs, client_ssl, keys, pol,
                                      want):
    gw, rc, out = run_check(tmp_path, certs, client_ssl, pol(keys))
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    pf = re.escape(str(gw.tmp / "policies" / "p.yaml"))
    assert re.search(r"^%s:\d+:\d+: .*(%s)" % (pf, want), out, re.M | re.I), \
        out


def test_good_policy_sections_load(tmp_path, certs, client_ssl, keys):
    pol = policy(
        ip={"allow": ["127.0.0.0/8", "::1"], "deny": ["10.66.0.0/16"]},
        geoip={"database": str(keys / "geo.mmdb"),
               "allow_countries": ["de"], "unknown": "deny"},
        origin={"allow": ["https://a.example", "null"],
                "allow_regex": [r"^https://[a-z]+\.example$"],
                "allow_missing": True},
        auth={"header": "X" * 128, "query_param": "t",
              "jwt": {"algorithms": ["HS256", "HS512"],
                      "key_file": str(keys / "good.secret"),
                      "leeway": "1h", "required_claims": ["sub"],
                      "forward_claims": {"sub": "X-User",
                                         "iss": "Y" * 128}},
              "on_expiry": "ignore"},
        subprotocols=["chat.v2"],
        messages={"deny_regex": ["(?i)<script"]})
    gw, rc, out = run_check(tmp_path, certs, client_ssl, pol)
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out


def test_an_hmac_secret_every_user_can_read_warns(tmp_path, certs,
                                                  client_ssl, keys,
                                                  open_folder):
    """An HMAC secret key_file that every local user could read drew no
    word: whoever reads it can sign tokens of their own.  Mode o+r warns
    at key_file, unless others may not enter its folder; a public key
    may be read by anyone."""
    secret = open_folder / "s.secret"
    secret.write_bytes(b"z" * 40)
    pub = open_folder / "rsa.pub"
    pub.write_bytes((keys / "rsa.pub").read_bytes())
    for path, algs, mode, folder, warned in (
            (secret, ["HS256"], 0o644, 0o755, True),
            (secret, ["HS256"], 0o640, 0o755, False),
            (secret, ["HS256"], 0o644, 0o700, False),
            (pub, ["RS256"], 0o644, 0o755, False)):
        os.chmod(open_folder, folder)
        os.chmod(path, mode)
        gw, rc, out = run_check(tmp_path, certs, client_ssl,
                                jwt_pol(open_folder, algs, path.name))
        assert rc == 0, out
        assert "%s: ok" % gw.cfg_path in out.splitlines(), out
        pf = re.escape(str(gw.tmp / "policies" / "p.yaml"))
        hits = re.findall(r"^%s:\d+:\d+: warning: key_file: %s can be read "
                          r"by every user \(mode %03o\): whoever reads it "
                          r"can sign tokens$" % (pf, re.escape(str(path)),
                                                mode), out, re.M)
        assert len(hits) == (1 if warned else 0), (path, oct(mode), out)


@pytest.mark.parametrize("key,codes,want", [
    ("allow_countries", ["DE", "UK"], r"allow_countries: 'UK' is not an "
     r"ISO 3166-1 country code: no address is ever in it \(the United "
     r"Kingdom is GB\)$"),
    ("deny_countries", ["zz", "GB"], r"deny_countries: 'ZZ' is not an "
     r"ISO 3166-1 country code: no address is ever in it$"),
    ("deny_countries", ["gb", "XK", "AQ"], None),
    ("allow_countries", ["AD", "ZW"], None),
])
def test_a_country_code_no_one_has_warns(tmp_path, certs, client_ssl, keys,
                                        key, codes, want):
    """allow_countries: [UK] loaded without a word, and the United Kingdom
    is GB: the rule silently never matched.  A well-formed code that ISO
    3166-1 does not assign warns at its place; XK, Kosovo's code in the
    country databases, does not."""
    gw, rc, out = run_check(tmp_path, certs, client_ssl, policy(geoip={
        "database": str(keys / "geo.mmdb"), key: codes}))
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    pf = re.escape(str(gw.tmp / "policies" / "p.yaml"))
    hits = re.findall(r"^%s:\d+:\d+: warning: .*country.*$" % pf, out, re.M)
    if want is None:
        assert hits == [], out
    else:
        assert len(hits) == 1 and re.search(want, hits[0]), out


@pytest.mark.parametrize("db_type", ["GeoIP2-Enterprise", "GeoLite2-City",
                                     "DBIP-Country-Lite"])
def test_country_carrying_database_types_load(tmp_path, certs, client_ssl,
                                              db_type):
    """Country, City and Enterprise databases, MaxMind's and DB-IP's, all
    carry country.iso_code: -t says ok and nothing about the database."""
    db = make_mmdb(tmp_path / "t.mmdb", "127.0.0.0/24=DE", db_type=db_type)
    gw, rc, out = run_check(tmp_path, certs, client_ssl, policy(geoip={
        "database": db, "deny_countries": ["KP"]}))
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    assert "database: " not in out and "t.mmdb" not in out, out


def test_a_certificate_followed_by_its_chain_loads(tmp_path, certs,
                                                   client_ssl, keys):
    gw, rc, out = run_check(tmp_path, certs, client_ssl,
                            jwt_pol(keys, ["RS256"], "chain.crt"))
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
