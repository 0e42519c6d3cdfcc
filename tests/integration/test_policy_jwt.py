"""Policy `auth`: JSON Web Tokens at the handshake and during the session.

Real keys from the openssl CLI (RSA 2048, EC P-256, Ed25519, an HMAC secret
file), real tokens from Debian's python3-jwt.  One gateway for the module:
routes under /ok/ go to the websockets echo backend (which records the
request path and headers), routes under /no/ go to a raw recording upstream
so "a refused handshake opens no upstream connection" is checked on the
connections it accepted.  No token ever appears in a log.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.parse

import jwt
import pytest
import websockets

import rawclient
from conftest import (assert_not_logged, headers_of, http_refusal,
                      http_upgrade, openssl, policy, run, wait_for)

B = rawclient.build_request
ISS, AUD = "https://issuer.wsgate.test", "chat-api"
HMAC_SECRET = b"wsgate-policy-tests-hmac-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwtkeys")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
            "rsa_keygen_bits:2048", "-out", d / "rsa.key")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
            "rsa_keygen_bits:2048", "-out", d / "rsa-other.key")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-out", d / "ec.key")
    openssl("genpkey", "-algorithm", "ED25519", "-out", d / "ed.key")
    for k in ("rsa", "ec", "ed"):
        openssl("pkey", "-in", d / (k + ".key"), "-pubout",
                "-out", d / (k + ".pub"))
    (d / "hmac.secret").write_bytes(HMAC_SECRET)
    assert len(HMAC_SECRET) >= 32
    return d


def auth(alg, key_file, leeway="0s", on_expiry="close"):
    return policy(auth={
        "header": "Authorization",
        "query_param": "access_token",
        "jwt": {"algorithms": [alg], "key_file": str(key_file),
                "issuer": ISS, "audience": AUD, "leeway": leeway,
                "required_claims": ["sub"],
                "forward_claims": {"sub": "X-Wsgate-User"}},
        "on_expiry": on_expiry})


@pytest.fixture(scope="module")
def gw(module_factory, keys):
    be = module_factory.echo()
    up = module_factory.raw_upstream()
    pols = {
        "rs": auth("RS256", keys / "rsa.pub"),
        "es": auth("ES256", keys / "ec.pub"),
        "ed": auth("EdDSA", keys / "ed.pub"),
        "hs": auth("HS256", keys / "hmac.secret"),
        "lw": auth("RS256", keys / "rsa.pub", leeway="30s"),
        "multi": policy(auth={
            "header": "X-Token", "query_param": "t",
            "jwt": {"algorithms": ["HS256"],
                    "key_file": str(keys / "hmac.secret"),
                    "forward_claims": {"sub": "X-Wsgate-User",
                                       "role": "X-Wsgate-Role",
                                       "n": "X-Wsgate-N",
                                       "admin": "X-Wsgate-Admin",
                                       "obj": "X-Wsgate-Obj",
                                       "absent": "X-Wsgate-Absent"}},
            "on_expiry": "ignore"}),
        # no query_param: the query is the upstream's, untouched
        "hdr": policy(auth={"jwt": {
            "algorithms": ["HS256"], "key_file": str(keys / "hmac.secret")}}),
        # the header named as a client might write it
        "lc": policy(auth={"header": "authorization", "jwt": {
            "algorithms": ["HS256"], "key_file": str(keys / "hmac.secret")}}),
        # a query_param with a 'z', the last letter case folding covers
        "z": policy(auth={"query_param": "zone_token", "jwt": {
            "algorithms": ["HS256"], "key_file": str(keys / "hmac.secret")}}),
    }
    routes = []
    for name in pols:
        routes.append(("/ok/" + name, "echo", name))
        routes.append(("/no/" + name, "rec", name))
    g = module_factory.gateway(routes=routes,
                               upstreams={"echo": [be.addr],
                                          "rec": [up.addr]},
                               policies=pols)
    g.backend = be
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def key_for(keys, alg):
    if alg == "HS256":
        return HMAC_SECRET
    name = {"RS256": "rsa", "ES256": "ec", "EdDSA": "ed"}[alg]
    return (keys / (name + ".key")).read_bytes()


def claims(**over):
    now = int(time.time())
    c = {"sub": "alice", "iss": ISS, "aud": AUD, "iat": now, "exp": now + 300}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def make_token(keys, alg="RS256", key=None, **over):
    return jwt.encode(claims(**over), key or key_for(keys, alg),
                      algorithm=alg)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hand_built(header, body, sign=None):
    """A compact JWS from parts; sign(signing_input) -> signature bytes."""
    si = b64(json.dumps(header).encode()) + b"." + \
        b64(json.dumps(body).encode())
    sig = sign(si) if sign else b""
    return (si + b"." + b64(sig)).decode()


def bearer(tok):
    return [("Authorization", "Bearer " + tok)]


def refused_401(gw, up, data, reason, token=None):
    resp, e = http_refusal(gw, data, 401, reason, up=up)
    www = resp.header("WWW-Authenticate")
    assert len(www) == 1 and www[0].lower().startswith("bearer"), resp
    assert e["user"] is None, e
    if token:
        assert_not_logged(gw, token)
    return resp, e


def accepted(gw, data, token=None, sub="alice"):
    """101 on an /ok/ route; the access-log user is sub; returns the
    backend's open event."""
    be = gw.backend
    n = len(be.events("open"))
    c, _ = http_upgrade(gw, data)
    try:
        ev = be.wait_event("open", n + 1)[n]
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["user"] == sub, e
    if token:
        assert_not_logged(gw, token)
    return ev


# -- happy paths ---------------------------------------------------------------------

@pytest.mark.parametrize("alg,route", [
    ("RS256", "rs"), ("ES256", "es"), ("EdDSA", "ed"), ("HS256", "hs")])
def test_valid_token_is_accepted_and_user_is_sub(gw, keys, alg, route):
    tok = make_token(keys, alg, sub="user-" + route)
    ev = accepted(gw, B("/ok/" + route, extra=bearer(tok)), tok,
                  sub="user-" + route)
    assert headers_of(ev, "X-Wsgate-User") == ["user-" + route], \
        ev["headers"]
    # the token itself is the gateway's business, not the backend's
    assert headers_of(ev, "Authorization") in ([], ["Bearer " + tok])


def test_leeway_accepts_token_expired_5s_ago(gw, keys):
    tok = make_token(keys, exp=int(time.time()) - 5)
    accepted(gw, B("/ok/lw", extra=bearer(tok)), tok)


def test_leeway_does_not_accept_token_expired_long_ago(gw, keys, up):
    tok = make_token(keys, exp=int(time.time()) - 120)
    refused_401(gw, up, B("/no/lw", extra=bearer(tok)), "auth_expired", tok)


def test_list_audience_containing_ours_is_accepted(gw, keys):
    tok = make_token(keys, aud=["other", AUD])
    accepted(gw, B("/ok/rs", extra=bearer(tok)), tok)


# -- refusals ------------------------------------------------------------------------

def test_missing_token_is_401_auth_missing(gw, up):
    refused_401(gw, up, B("/no/rs"), "auth_missing")


BASIC = "Basic " + base64.b64encode(b"alice:secret").decode()


@pytest.mark.parametrize("route", ["rs", "hdr"])
def test_basic_authorization_alone_is_auth_invalid(gw, up, route):
    """Basic credentials with no token in the query beside them are what
    the request offered for a token, and not a bearer token: auth_invalid,
    on a route with a query_param and on one without."""
    refused_401(gw, up, B("/no/" + route, extra=[("Authorization", BASIC)]),
                "auth_invalid")


def test_expired_token_is_auth_expired(gw, keys, up):
    tok = make_token(keys, exp=int(time.time()) - 5)
    resp, _ = refused_401(gw, up, B("/no/rs", extra=bearer(tok)),
                          "auth_expired", tok)
    assert 'error="invalid_token"' in resp.header("WWW-Authenticate")[0], \
        resp


INVALID = ["nbf_in_future", "wrong_issuer", "wrong_audience",
           "audience_list_with_a_prefix_of_ours", "audience_list_empty_string",
           "missing_required_claim", "bad_signature", "alg_none",
           "alg_none_unsigned_claims_of_valid_token", "es256_on_rs_route",
           "garbage", "empty_bearer"]


@pytest.mark.parametrize("case", INVALID)
def test_invalid_token_is_auth_invalid(gw, keys, up, case):
    if case == "nbf_in_future":
        tok = make_token(keys, nbf=int(time.time()) + 3600)
    elif case == "wrong_issuer":
        tok = make_token(keys, iss="https://evil.example")
    elif case == "wrong_audience":
        tok = make_token(keys, aud="another-api")
    elif case == "audience_list_with_a_prefix_of_ours":
        tok = make_token(keys, aud=["other", AUD[:-1]])
    elif case == "audience_list_empty_string":
        tok = make_token(keys, aud=[""])
    elif case == "missing_required_claim":
        tok = make_token(keys, sub=None)
    elif case == "bad_signature":
        tok = make_token(keys, key=(keys / "rsa-other.key").read_bytes())
    elif case == "alg_none":
        tok = hand_built({"alg": "none", "typ": "JWT"}, claims())
    elif case == "alg_none_unsigned_claims_of_valid_token":
        # a valid token with its header swapped for alg none, no signature
        good = make_token(keys)
        _, payload, _ = good.split(".")
        tok = "%s.%s." % (b64(b'{"alg":"none","typ":"JWT"}').decode(),
                          payload)
    elif case == "es256_on_rs_route":
        tok = make_token(keys, "ES256")
    elif case == "garbage":
        tok = "not.a.jwt"
    elif case == "empty_bearer":
        tok = ""
    resp, _ = refused_401(gw, up, B("/no/rs", extra=bearer(tok)),
                          "auth_invalid", tok if len(tok) > 10 else None)
    # RFC 6750 3.1: a token that fails its checks is invalid_token; a
    # "Bearer" with nothing after it is a malformed request
    want = "invalid_request" if case == "empty_bearer" else "invalid_token"
    assert 'error="%s"' % want in resp.header("WWW-Authenticate")[0], resp


@pytest.mark.parametrize("claim,value", [("sub", 42), ("exp", "soon")])
def test_a_claim_of_the_wrong_type_is_named_in_the_log(gw, keys, up, claim,
                                                       value):
    """A well-signed token whose sub is not a string (RFC 7519 4.1.2), or
    whose exp is not a number, is auth_invalid; the error log said only
    "malformed token", as for bytes that are no JWT at all, and left the
    operator to guess what the issuer got wrong."""
    tok = make_token(keys, **{claim: value})
    _, e = refused_401(gw, up, B("/no/rs", extra=bearer(tok)),
                       "auth_invalid", tok)
    want = "a claim has the wrong type (exp, nbf, iat: numbers; sub: a " \
        "string)"
    wait_for(lambda: [ln for ln in gw.error_text().splitlines()
                      if "conn %d:" % e["id"] in ln and want in ln], 5,
             what="the refusal's detail in the error log")


def test_hs256_signed_with_rsa_public_key_is_auth_invalid(gw, keys, up):
    # The classic confusion: an RS256 route must never verify an HS256 token
    # using the RSA public key's PEM bytes as the HMAC secret.
    pub = (keys / "rsa.pub").read_bytes()
    for secret in (pub, pub.rstrip(b"\n")):
        tok = hand_built({"alg": "HS256", "typ": "JWT"}, claims(),
                         lambda si: hmac.new(secret, si,
                                             hashlib.sha256).digest())
        refused_401(gw, up, B("/no/rs", extra=bearer(tok)), "auth_invalid",
                    tok)
        up.clear()


# -- token in the query string ---------------------------------------------------------

def test_query_param_token_works_and_is_removed_upstream(gw, keys):
    tok = make_token(keys, sub="qbob")
    path = "/ok/rs?room=42&access_token=%s&lang=de" % urllib.parse.quote(tok)
    ev = accepted(gw, B(path), tok, sub="qbob")
    got = ev["path"]
    assert "access_token" not in got, got
    assert tok not in got, got
    assert urllib.parse.urlsplit(got).path == "/ok/rs", got
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(got).query)
    assert q == [("room", "42"), ("lang", "de")], got
    assert headers_of(ev, "X-Wsgate-User") == ["qbob"], ev["headers"]


def test_query_param_only_token_is_removed(gw, keys):
    tok = make_token(keys, sub="qcarol")
    ev = accepted(gw, B("/ok/rs?access_token=" + tok), tok, sub="qcarol")
    assert "access_token" not in ev["path"] and tok not in ev["path"], ev
    assert urllib.parse.urlsplit(ev["path"]).path == "/ok/rs", ev


def test_query_param_bad_token_is_refused(gw, keys, up):
    tok = make_token(keys, iss="https://evil.example")
    refused_401(gw, up, B("/no/rs?access_token=" + tok), "auth_invalid", tok)


# Browsers send the Basic (or Digest) credentials they hold for a site on
# its WebSocket handshakes too, and cannot send a Bearer header at all.
OTHER_SCHEMES = [
    BASIC,
    "basic " + base64.b64encode(b"bob:pw").decode(),
    'Digest username="alice", realm="staging", nonce="abc", uri="/ok/rs", '
    'response="6629fae49393a05397450978507c4ef1"',
]


@pytest.mark.parametrize("cred", OTHER_SCHEMES)
def test_other_scheme_authorization_with_query_token_is_accepted(gw, keys,
                                                                 cred):
    """The token comes from the query; the Authorization field reaches the
    upstream as sent, the access_token does not."""
    tok = make_token(keys, sub="qdave")
    path = "/ok/rs?room=7&access_token=%s" % urllib.parse.quote(tok)
    ev = accepted(gw, B(path, extra=[("Authorization", cred)]), tok,
                  sub="qdave")
    assert headers_of(ev, "Authorization") == [cred], ev["headers"]
    assert "access_token" not in ev["path"] and tok not in ev["path"], ev
    assert urllib.parse.parse_qsl(
        urllib.parse.urlsplit(ev["path"]).query) == [("room", "7")], ev
    assert headers_of(ev, "X-Wsgate-User") == ["qdave"], ev["headers"]


def test_basic_authorization_with_bad_query_token_is_auth_invalid(gw, keys,
                                                                  up):
    tok = make_token(keys, iss="https://evil.example")
    refused_401(gw, up, B("/no/rs?access_token=" + tok,
                          extra=[("Authorization", BASIC)]),
                "auth_invalid", tok)


@pytest.mark.parametrize("fields", [
    [("Authorization", BASIC), ("Authorization", BASIC)],
    [("Authorization", "")],
    [("Authorization", "Bearer")],
    [("Authorization", "Basic\tYWxpY2U6c2VjcmV0")],
    [("Authorization", "Ba/sic YWxpY2U6c2VjcmV0")],
])
def test_malformed_or_repeated_authorization_stays_auth_invalid(gw, keys, up,
                                                                fields):
    """A valid query token does not save a request whose Authorization is
    repeated, empty or not a credential of any scheme."""
    tok = make_token(keys)
    refused_401(gw, up, B("/no/rs?access_token=" + tok, extra=fields),
                "auth_invalid", tok)


def test_bearer_header_wins_over_query_token(gw, keys, up):
    """A Bearer field is the carrier: it alone is checked, and a query
    token beside it is dropped unchecked either way."""
    good = make_token(keys, sub="hdr-erin")
    path = "/ok/rs?access_token=not.a.jwt&x=1"
    ev = accepted(gw, B(path, extra=bearer(good)), good, sub="hdr-erin")
    assert "access_token" not in ev["path"], ev
    bad = make_token(keys, iss="https://evil.example")
    refused_401(gw, up, B("/no/rs?access_token=" + good,
                          extra=bearer(bad)), "auth_invalid", bad)


# -- forward_claims --------------------------------------------------------------------

def test_forward_claims_replace_client_sent_copies(gw, keys):
    tok = make_token(keys, sub="alice")
    ev = accepted(gw, B("/ok/rs", extra=[("X-Wsgate-User", "admin")] +
                        bearer(tok) + [("x-wsgate-user", "root")]), tok)
    assert headers_of(ev, "X-Wsgate-User") == ["alice"], ev["headers"]


# -- expiry during the session ----------------------------------------------------------

def test_token_expiring_mid_session_closes_1008_token_expired(gw, keys):
    tok = make_token(keys, exp=int(time.time()) + 2)
    be = gw.backend
    nclose = len(be.events("close"))

    async def go():
        async with gw.connect("/ok/rs", extra_headers=bearer(tok)) as ws:
            port = ws.local_address[1]
            await ws.send("before expiry")
            assert await asyncio.wait_for(ws.recv(), 5) == "before expiry"
            # the session stays open on its own; the gateway ends it
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 6)
            except websockets.ConnectionClosed:
                pass
            return port, ws.close_code
    port, code = run(go(), timeout=15)
    assert code == 1008
    e = gw.wait_entry(client_port=port)
    assert e["status"] == 101 and e["close_code"] == 1008, e
    assert e["reason"] == "token_expired" and e["user"] == "alice", e
    be.wait_event("close", nclose + 1)
    assert_not_logged(gw, tok)


def test_leeway_and_on_expiry_ignore_keep_session_open(gw, keys):
    # exp passes 1 to 2 seconds in; one route allows 30s of skew, the
    # other ignores expiry mid-session: both sessions must still be open
    # well after exp.
    exp = int(time.time()) + 2
    lw = make_token(keys, exp=exp)
    ign = make_token(keys, "HS256", exp=exp)

    async def session(path, headers):
        async with gw.connect(path, extra_headers=headers) as ws:
            await ws.send("one")
            assert await asyncio.wait_for(ws.recv(), 5) == "one"
            await asyncio.sleep(3.5)
            await ws.send("two")
            assert await asyncio.wait_for(ws.recv(), 5) == "two"

    async def go():
        await asyncio.gather(session("/ok/lw", bearer(lw)),
                             session("/ok/multi", [("X-Token", ign)]))
    run(go(), timeout=15)


# -- a custom header, more claims, hostile claims -------------------------------------

def test_custom_header_carries_bare_token(gw, keys, up):
    tok = make_token(keys, "HS256", sub="hdr")
    accepted(gw, B("/ok/multi", extra=[("X-Token", tok)]), tok, sub="hdr")
    # on this route Authorization is not where the token is looked for
    refused_401(gw, up, B("/no/multi", extra=bearer(tok)), "auth_missing",
                tok)
    up.clear()
    refused_401(gw, up, B("/no/multi", extra=[("X-Token", "Bearer " + tok)]),
                "auth_invalid", tok)


def test_forward_claims_types(gw, keys):
    tok = make_token(keys, "HS256", sub="typed", role="editor", n=42,
                     admin=True, obj={"a": 1})
    ev = accepted(gw, B("/ok/multi", extra=[
        ("X-Token", tok), ("X-Wsgate-Obj", "forged"),
        ("X-Wsgate-Absent", "forged"), ("X-Wsgate-Role", "owner")]),
        tok, sub="typed")
    h = lambda n: headers_of(ev, n)  # noqa: E731
    assert h("X-Wsgate-User") == ["typed"], ev["headers"]
    assert h("X-Wsgate-Role") == ["editor"], ev["headers"]
    assert h("X-Wsgate-N") == ["42"], ev["headers"]
    assert h("X-Wsgate-Admin") == ["true"], ev["headers"]
    # not a string, number or boolean / absent: no header, and the
    # client's copies are still removed
    assert h("X-Wsgate-Obj") == [], ev["headers"]
    assert h("X-Wsgate-Absent") == [], ev["headers"]


@pytest.mark.parametrize("sub", ["evil\r\nX-Injected: 1",
                                 "evil\nX-Injected: 1",
                                 "evil\r\n\r\nGET / HTTP/1.1"])
def test_claim_with_line_breaks_is_not_injected_upstream(gw, keys, sub):
    """wsgate-policy(5): a claim with a control character adds no header;
    the token is still good, so the upgrade goes through without it."""
    tok = make_token(keys, "HS256", sub=sub, role="ops")
    be = gw.backend
    n = len(be.events("open"))
    c = gw.raw()
    try:
        c.send(B("/ok/multi", extra=[("X-Token", tok)]))
        head = c.read_until(b"\r\n\r\n", 5)
    finally:
        c.close()
    assert head.startswith(b"HTTP/1.1 101 "), head
    e = gw.wait_entry(client_port=c.local_port)     # the log is still JSON
    assert e["status"] == 101, e
    ev = be.wait_event("open", n + 1)[n]
    assert headers_of(ev, "X-Injected") == [], ev["headers"]
    assert headers_of(ev, "X-Wsgate-User") == [], ev["headers"]
    # the other claims are still forwarded
    assert headers_of(ev, "X-Wsgate-Role") == ["ops"], ev["headers"]


def test_bearer_scheme_is_case_insensitive_and_spaces_may_follow(gw, keys):
    """RFC 7235: the scheme is case-insensitive; RFC 6750: "Bearer"
    1*SP token."""
    tok = make_token(keys, sub="alice")
    for value in ("bearer " + tok, "BEARER " + tok, "Bearer   " + tok):
        ev = accepted(gw, B("/ok/rs", extra=[("Authorization", value)]), tok)
        assert headers_of(ev, "X-Wsgate-User") == ["alice"], (value, ev)


def test_authorization_header_named_in_lower_case_takes_bearer(gw, keys):
    """header: authorization is the Authorization header, with its
    "Bearer" scheme, not a header carrying a bare token."""
    tok = make_token(keys, "HS256", sub="alice")
    accepted(gw, B("/ok/lc", extra=bearer(tok)), tok)


def test_empty_query_token_is_auth_invalid(gw, up):
    """access_token= is a token that is there but unusable, as an empty
    header is: auth_invalid with error="invalid_request", not
    auth_missing."""
    resp, _ = refused_401(gw, up, B("/no/rs?x=1&access_token=&y=2"),
                          "auth_invalid")
    assert 'error="invalid_request"' in resp.header("WWW-Authenticate")[0], \
        resp


# -- header and query parameter together ------------------------------------------------

def test_query_param_removed_even_when_header_carries_the_token(gw, keys):
    tok = make_token(keys, sub="hdr-user")
    other = make_token(keys, sub="someone-else")
    ev = accepted(gw, B("/ok/rs?access_token=%s&keep=1" % other,
                        extra=bearer(tok)), tok, sub="hdr-user")
    assert "access_token" not in ev["path"] and other not in ev["path"], ev
    assert_not_logged(gw, other)


def test_bare_query_param_name_is_removed_too(gw, keys):
    """A bare "access_token" (no '=') is an empty token to PHP and most
    query parsers; with the token in the header it is not passed on
    either, however it is spelt, and the rest keeps its separators."""
    tok = make_token(keys, sub="bare")
    for q, want in (("access_token&keep=1", "keep=1"),
                    ("keep=1&access_token", "keep=1"),
                    ("a=1;access%5Ftoken;b=2", "a=1;b=2"),
                    ("a=1&ACCESS_TOKEN&b=2", "a=1&b=2")):
        ev = accepted(gw, B("/ok/rs?" + q, extra=bearer(tok)), tok,
                      sub="bare")
        assert ev["path"] == "/ok/rs?" + want, (q, ev["path"])


def test_query_param_look_alike_names_are_kept(gw, keys):
    tok = make_token(keys, sub="qdave")
    path = ("/ok/rs?xaccess_token=1&access_token=%s&access_tokens=2"
            "&access_token_x=3" % tok)
    ev = accepted(gw, B(path), tok, sub="qdave")
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
    assert q == [("xaccess_token", "1"), ("access_tokens", "2"),
                 ("access_token_x", "3")], ev["path"]


def test_query_token_removal_leaves_no_empty_parameters(gw, keys):
    """Taking the token out of "?access_token=T&&x=1" sends "?x=1", not
    "?&x=1": empty parameters are not passed on."""
    tok = make_token(keys, sub="alice")
    for q in ("access_token=%s&&x=1", "&access_token=%s&x=1&",
              "x=1&&access_token=%s;"):
        ev = accepted(gw, B("/ok/rs?" + q % tok), tok)
        assert ev["path"] == "/ok/rs?x=1", (q, ev["path"])
    ev = accepted(gw, B("/ok/rs?access_token=%s&&" % tok), tok)
    assert ev["path"] == "/ok/rs", ev["path"]


def test_query_is_untouched_without_query_param(gw, keys):
    """With the token in the header and no query_param, the query goes
    upstream as the client sent it, parameters named like a token, empty
    ones and separators included."""
    tok = make_token(keys, "HS256", sub="alice")
    for q in ("access_token=abc&&x=1;y", "x=1", "&", "t=%41"):
        ev = accepted(gw, B("/ok/hdr?" + q, extra=bearer(tok)), tok)
        assert ev["path"] == "/ok/hdr?" + q, (q, ev["path"])


# -- a second token the gateway did not check ---------------------------------------------
#
# Every copy of a header goes upstream, and an upstream may read another
# copy than the one the gateway verified: two copies of the token header,
# or one under a name that CGI-style servers (WSGI, PHP) take for the same
# variable, are refused.  A query parameter is matched as the upstream's
# query parser decodes it.

def forged_token():
    return jwt.encode(claims(sub="admin"), b"f" * 32, algorithm="HS256")


def test_two_authorization_headers_are_refused(gw, keys, up):
    good = make_token(keys, sub="alice")
    refused_401(gw, up, B("/no/rs", extra=bearer(good) + bearer(
        forged_token())), "auth_invalid", good)
    wait_for(lambda: "more than one token header" in gw.error_text(), 5,
             what="the refusal's detail in the error log")
    # the same token twice is no better
    refused_401(gw, up, B("/no/rs", extra=bearer(good) + bearer(good)),
                "auth_invalid", good)


def test_token_header_with_an_underscore_twin_is_refused(gw, up):
    good = jwt.encode(claims(sub="alice"), HMAC_SECRET, algorithm="HS256")
    for twin in ("X_Token", "x_token", "x-token"):
        refused_401(gw, up, B("/no/multi", extra=[
            ("X-Token", good), (twin, forged_token())]), "auth_invalid", good)
        up.clear()


def test_percent_encoded_query_param_name_is_the_param(gw, keys):
    good = make_token(keys, sub="alice")
    forged = forged_token()
    # the forged copy under an encoded name is removed like the plain one
    ev = accepted(gw, B("/ok/rs?access_token=%s&access%%5Ftoken=%s&keep=1"
                        % (good, forged)), good)
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
    assert q == [("keep", "1")], ev["path"]
    assert forged not in ev["path"], ev["path"]
    # and a token under an encoded name is the token
    ev = accepted(gw, B("/ok/rs?%%61ccess%%5ftoken=%s&keep=2" % good), good)
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
    assert q == [("keep", "2")], ev["path"]


def test_query_param_name_as_php_reads_it_is_the_param(gw, keys):
    # PHP fills $_GET after turning ' ' (also from '+'), '.' and a lone
    # '[' in a name into '_' and dropping leading spaces: each of these is
    # access_token there, so a forged copy under it must not reach the
    # upstream beside the token the gateway checked
    good = make_token(keys, sub="alice")
    forged = forged_token()
    for twin in ("access.token", "access+token", "access%20token",
                 "access[token", "+access_token", "%20access.token",
                 "access%2Etoken",
                 # PHP takes the name as a C string: it ends at a NUL
                 "access_token%00", "access_token%00x", "access.token%00["):
        ev = accepted(gw, B("/ok/rs?access_token=%s&%s=%s&keep=1"
                            % (good, twin, forged)), good)
        assert forged not in ev["path"], (twin, ev["path"])
        q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
        assert q == [("keep", "1")], (twin, ev["path"])
    # and a token under such a name is the token
    ev = accepted(gw, B("/ok/rs?access.token=%s&keep=2" % good), good)
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
    assert q == [("keep", "2")], ev["path"]
    # "%2B" is a '+', not a space; an array is another name
    for other in ("access%2Btoken", "access[token]", "access-token"):
        ev = accepted(gw, B("/ok/rs?access_token=%s&%s=1" % (good, other)),
                      good)
        assert urllib.parse.urlsplit(ev["path"]).query == other + "=1", \
            ev["path"]


def test_query_param_name_in_another_case_is_the_param(gw, keys, up):
    # ASP.NET matches query names without case (SignalR reads its
    # access_token there): a forged "ACCESS_TOKEN" beside the token the
    # gateway checked went upstream untouched, the only copy left there
    good = make_token(keys, sub="alice")
    forged = forged_token()
    for twin in ("ACCESS_TOKEN", "Access_Token", "access%5FTOKEN",
                 "ACCESS.TOKEN"):
        ev = accepted(gw, B("/ok/rs?access_token=%s&%s=%s&keep=1"
                            % (good, twin, forged)), good)
        assert forged not in ev["path"], (twin, ev["path"])
        q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
        assert q == [("keep", "1")], (twin, ev["path"])
    # and a token under such a name is the token, checked and removed
    ev = accepted(gw, B("/ok/rs?Access_Token=%s&keep=2" % good), good)
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
    assert q == [("keep", "2")], ev["path"]
    refused_401(gw, up, B("/no/rs?ACCESS_TOKEN=" + forged), "auth_invalid",
                forged)


def test_query_param_name_with_a_z_in_another_case_is_the_param(gw, keys):
    # every letter folds, 'Z' as well as 'A': "ZONE_TOKEN" is the
    # upstream's "zone_token", so a forged copy under it is removed
    good = make_token(keys, alg="HS256", sub="alice")
    ev = accepted(gw, B("/ok/z?zone_token=%s&ZONE_TOKEN=%s&keep=1"
                        % (good, forged_token())), good)
    q = urllib.parse.parse_qsl(urllib.parse.urlsplit(ev["path"]).query)
    assert q == [("keep", "1")], ev["path"]


def test_semicolon_separates_query_params_like_ampersand(gw, keys, up):
    good = make_token(keys, sub="alice")
    forged = forged_token()
    # a token behind ';' is removed, whatever separator comes after it
    ev = accepted(gw, B("/ok/rs?access_token=%s&x=1;access_token=%s;y=2&z=3"
                        % (good, forged)), good)
    assert forged not in ev["path"] and "access_token" not in ev["path"], ev
    assert urllib.parse.urlsplit(ev["path"]).query == "x=1;y=2&z=3", ev
    # and a token behind ';' is the token the gateway checks
    refused_401(gw, up, B("/no/rs?x=1;access_token=" + forged),
                "auth_invalid", forged)
    ev = accepted(gw, B("/ok/rs?x=1;access_token=" + good), good)
    assert urllib.parse.urlsplit(ev["path"]).query == "x=1", ev


def test_underscore_twins_of_gateway_headers_are_dropped(gw, keys):
    tok = make_token(keys, sub="alice")
    ev = accepted(gw, B("/ok/rs", extra=[
        ("X_Wsgate_User", "admin"), ("x-wsgate_user", "root"),
        ("X_Forwarded_For", "10.9.9.9"), ("X-Forwarded_Proto", "gopher"),
        ("X_Other_Header", "kept")] + bearer(tok)), tok)
    names = [k.lower().replace("_", "-") for k, _ in ev["headers"]]
    assert names.count("x-wsgate-user") == 1, ev["headers"]
    assert headers_of(ev, "X-Wsgate-User") == ["alice"], ev["headers"]
    assert names.count("x-forwarded-for") == 1, ev["headers"]
    assert headers_of(ev, "X-Forwarded-For") == ["127.0.0.1"], ev["headers"]
    assert names.count("x-forwarded-proto") == 1, ev["headers"]
    assert headers_of(ev, "X_Other_Header") == ["kept"], ev["headers"]


def test_nbf_within_leeway_is_accepted(gw, keys):
    tok = make_token(keys, nbf=int(time.time()) + 10)
    accepted(gw, B("/ok/lw", extra=bearer(tok)), tok)


def test_zz_gateway_still_relays(gw, keys):
    tok = make_token(keys, "HS256")

    async def go():
        async with gw.connect("/ok/hs", extra_headers=bearer(tok)) as ws:
            await ws.send("still here")
            return await asyncio.wait_for(ws.recv(), 5)
    assert run(go()) == "still here"
    assert gw.alive()
    assert_not_logged(gw, tok)


def test_lone_underscore_twin_beside_a_query_token_is_refused(gw, up):
    # The token comes from the query; the only token header is a twin the
    # gateway never reads, but a CGI-style upstream reads it as X-Token.
    good = jwt.encode(claims(sub="alice"), HMAC_SECRET, algorithm="HS256")
    for twin in ("X_Token", "x_token"):
        refused_401(gw, up, B("/no/multi?t=" + good, extra=[
            (twin, forged_token())]), "auth_invalid", good)
        up.clear()


@pytest.mark.parametrize("target", [
    "http://localhost/no/rs?access_token=%s", "*?access_token=%s",
    "localhost:80?access_token=%s"])
def test_token_in_query_of_a_refused_non_get_is_not_logged(gw, keys, up,
                                                             target):
    # A 405 for another method takes any target form; its "path" in the
    # access log must lose the query, token and all, as a GET's does.
    tok = make_token(keys, sub="abs")
    resp, e = http_refusal(gw, B(target % tok, method="POST"), 405,
                           "bad_method", up=up)
    assert e["path"] is not None and "?" not in e["path"], e
    assert_not_logged(gw, tok)


def test_percent_encoded_query_token_is_the_token(gw, keys, up):
    # The query is form-encoded (RFC 6750 2.3): a token whose characters
    # a client library escaped is the same token, as its name already is.
    tok = make_token(keys, sub="pct")
    enc = "".join("%%%02X" % ord(ch) if ch in ".-_" else ch for ch in tok)
    assert enc != tok
    accepted(gw, B("/ok/rs?access_token=" + enc), tok, sub="pct")
    # an escape that decodes to something outside base64url stays refused
    refused_401(gw, up, B("/no/rs?access_token=" + tok.replace(".", "%2B",
                                                                1)),
                "auth_invalid", tok)


def test_query_token_with_its_last_character_escaped_is_the_token(gw, keys):
    # A "%XX" that ends the value, at the end of the query or before the
    # next parameter, is decoded like any other.
    tok = make_token(keys, sub="pctend")
    enc = tok[:-1] + "%%%02X" % ord(tok[-1])
    accepted(gw, B("/ok/rs?access_token=" + enc), tok, sub="pctend")
    ev = accepted(gw, B("/ok/rs?access_token=" + enc + "&room=7"), tok,
                  sub="pctend")
    assert urllib.parse.urlsplit(ev["path"]).query == "room=7", ev


def padded_token(length):
    """An HS256 token of exactly length bytes, padded with a claim."""
    base = claims(sub="big")
    short = len(jwt.encode(dict(base, pad=""), HMAC_SECRET,
                           algorithm="HS256"))
    guess = (length - short) * 3 // 4
    for n in range(max(guess - 8, 0), guess + 8):
        tok = jwt.encode(dict(base, pad="x" * n), HMAC_SECRET,
                         algorithm="HS256")
        if len(tok) == length:
            return tok
    raise AssertionError("no padding gives %d bytes" % length)


def test_query_token_of_the_longest_size_is_read(factory):
    """A query token of WSG_JWT_MAX_TOKEN (8192) bytes is checked and
    accepted; one byte more is auth_invalid.  The head limit is raised
    so that the request line fits."""
    up = factory.raw_upstream()
    d = factory.tmpdir / "big"
    d.mkdir(parents=True, exist_ok=True)
    (d / "hmac.secret").write_bytes(HMAC_SECRET)
    pol = policy(auth={"query_param": "access_token", "jwt": {
        "algorithms": ["HS256"], "key_file": str(d / "hmac.secret")}})
    g = factory.gateway(routes=[("/big", "rec", "big")],
                        upstreams={"rec": [up.addr]}, policies={"big": pol},
                        listener={"max_header_bytes": "16KiB"})
    tok = padded_token(8192)
    c, _ = http_upgrade(g, B("/big?access_token=" + tok))
    c.close()
    e = g.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["user"] == "big", e
    up.clear()
    refused_401(g, up, B("/big?access_token=" + padded_token(8193)),
                "auth_invalid")


def test_no_session_outlives_the_gateways_own_refusal_of_its_token(gw, keys):
    # The gateway's two judgements of one token must agree: once it
    # refuses a new handshake with the token as auth_expired, a session
    # opened with that token relays nothing more.  The session opens late
    # in a second, so an expiry timer counted in whole seconds from that
    # second's start would fire most of a second after exp.
    deadline = time.time() + 3
    while not 0.65 <= time.time() % 1 < 0.85 and time.time() < deadline:
        time.sleep(0.01)
    exp = int(time.time()) + 2
    tok = make_token(keys, exp=exp)

    def probe_until_expired():
        for _ in range(400):
            c = gw.raw()
            try:
                c.send(B("/ok/rs", extra=bearer(tok)))
                # a 101 has no end: its head is the whole answer here
                resp = c.http_response(timeout=5, to_eof=False)
                body = c.read_to_eof(5) if resp.status == 401 else b""
            finally:
                c.close()
            if resp.status == 401:
                assert b"auth_expired" in body, (resp, body)
                return
            assert resp.status == 101, resp
            time.sleep(0.01)
        raise AssertionError("the token was never refused")

    async def go():
        async with gw.connect("/ok/rs", extra_headers=bearer(tok)) as ws:
            await ws.send("before")
            assert await asyncio.wait_for(ws.recv(), 5) == "before"
            await asyncio.get_running_loop().run_in_executor(
                None, probe_until_expired)
            await asyncio.sleep(0.25)
            got = []
            try:
                await ws.send("after")
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 5))
            except websockets.ConnectionClosed:
                pass
            return got, ws.close_code
    got, code = run(go(), timeout=20)
    assert got == [] and code == 1008, (got, code)
