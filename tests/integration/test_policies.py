"""SPEC first table, policy rows: Origin, JWT auth, IP lists, deny_regex,
max_connections; and the admin listener (/metrics, /healthz).

One gateway for the module (the last test checks it still relays); the
backend is the websockets echo server, which records the request headers.
"""

import asyncio
import http.client
import subprocess
import time
import urllib.parse

import jwt
import pytest
import websockets

import rawclient
from conftest import headers_of, policy, run, wait_for

B = rawclient.build_request
SECRET = b"integration-test-hmac-secret-0123456789"
ISS, AUD = "https://auth.example.test", "chat"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwtkeys")
    (d / "hmac.secret").write_bytes(SECRET)
    subprocess.run(["openssl", "genrsa", "-out", str(d / "rsa.key"), "2048"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "rsa", "-in", str(d / "rsa.key"), "-pubout",
                    "-out", str(d / "rsa.pub")],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "genrsa", "-out", str(d / "other.key"),
                    "2048"], check=True, capture_output=True, timeout=60)
    return d


def auth_policy(alg, key_file):
    return policy(auth={
        "header": "Authorization",
        "query_param": "access_token",
        "jwt": {"algorithms": [alg], "key_file": str(key_file),
                "issuer": ISS, "audience": AUD, "leeway": "0s",
                "required_claims": ["sub"],
                "forward_claims": {"sub": "X-Wsgate-User"}},
        "on_expiry": "close"})


@pytest.fixture(scope="module")
def gw(module_factory, keys):
    be = module_factory.echo()
    g = module_factory.gateway(
        routes=[("/echo", "echo"),
                ("/origin", "echo", "origin"),
                ("/auth", "echo", "hs"),
                ("/rs", "echo", "rs"),
                ("/ipdeny", "echo", "ipdeny"),
                ("/ipallow", "echo", "ipallow"),
                ("/content", "echo", "content")],
        upstreams={"echo": [be.addr]},
        policies={
            "origin": policy(origin={
                "allow": ["https://App.Example.com:443"],
                "allow_regex": [r"^https://[a-z0-9-]+\.example\.org$"],
                "allow_missing": False}),
            "hs": auth_policy("HS256", keys / "hmac.secret"),
            "rs": auth_policy("RS256", keys / "rsa.pub"),
            "ipdeny": policy(ip={"deny": ["127.0.0.0/8"]}),
            "ipallow": policy(ip={"allow": ["10.0.0.0/8"]}),
            "content": policy(messages={"deny_regex": ["(?i)<script"]}),
        })
    g.backend = be
    return g


def token(alg="HS256", key=SECRET, **claims):
    now = int(time.time())
    body = {"sub": "alice", "iss": ISS, "aud": AUD, "iat": now,
            "exp": now + 300}
    body.update(claims)
    for k in [k for k, v in body.items() if v is None]:
        del body[k]
    return jwt.encode(body, key, algorithm=alg)


def refused(gw, data, status, reason):
    c = gw.raw()
    try:
        c.send(data)
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == status, resp
    assert [v.lower() for v in resp.header("Connection")] == ["close"], resp
    assert reason.encode() in resp.body, resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason and e["status"] == status, e
    return resp, e


def upgraded(gw, data):
    c = gw.raw()
    try:
        c.send(data)
        head = c.read_until(b"\r\n\r\n", 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
    finally:
        c.close()
    return c.local_port


# -- origin -----------------------------------------------------------------------

@pytest.mark.parametrize("origin", [
    "https://app.example.com", "HTTPS://APP.EXAMPLE.COM",
    "https://app.example.com:443", "https://tenant-1.example.org"])
def test_origin_allowed(gw, origin):
    upgraded(gw, B("/origin", extra=[("Origin", origin)]))


@pytest.mark.parametrize("origin", [
    "https://evil.example", "http://app.example.com",
    "https://app.example.com:8443", "https://app.example.com.evil.io",
    "https://x.example.org.evil.io", "null"])
def test_origin_denied(gw, origin):
    _, e = refused(gw, B("/origin", extra=[("Origin", origin)]), 403,
                   "origin_denied")
    assert e["origin"] == origin, e


def test_origin_missing_denied(gw):
    refused(gw, B("/origin"), 403, "origin_denied")


# -- auth ---------------------------------------------------------------------------

def bearer(tok):
    return [("Authorization", "Bearer " + tok)]


def test_auth_missing_is_401(gw):
    resp, _ = refused(gw, B("/auth"), 401, "auth_missing")
    assert any(v.lower().startswith("bearer")
               for v in resp.header("WWW-Authenticate")), resp


@pytest.mark.parametrize("case", [
    "bad_signature", "alg_none", "wrong_issuer", "wrong_audience",
    "missing_sub", "garbage", "hs256_on_rs_route", "not_yet_valid"])
def test_auth_invalid_is_401(gw, keys, case):
    path = "/auth"
    if case == "bad_signature":
        tok = token(key=b"some-other-secret-of-enough-length")
    elif case == "alg_none":
        tok = jwt.encode({"sub": "alice", "iss": ISS, "aud": AUD,
                          "exp": int(time.time()) + 300}, None,
                         algorithm="none")
    elif case == "wrong_issuer":
        tok = token(iss="https://evil.example")
    elif case == "wrong_audience":
        tok = token(aud="other")
    elif case == "missing_sub":
        tok = token(sub=None)
    elif case == "garbage":
        tok = "not.a.jwt"
    elif case == "hs256_on_rs_route":
        # HMAC signed with the RSA public key's bytes: the classic confusion
        path = "/rs"
        pub = (keys / "rsa.pub").read_bytes()
        import hmac
        import hashlib
        import base64
        import json
        h = base64.urlsafe_b64encode(json.dumps(
            {"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
        p = base64.urlsafe_b64encode(json.dumps(
            {"sub": "alice", "iss": ISS, "aud": AUD,
             "exp": int(time.time()) + 300}).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.new(
            pub, h + b"." + p, hashlib.sha256).digest()).rstrip(b"=")
        tok = (h + b"." + p + b"." + sig).decode()
    elif case == "not_yet_valid":
        tok = token(nbf=int(time.time()) + 3600)
    resp, e = refused(gw, B(path, extra=bearer(tok)), 401, "auth_invalid")
    assert resp.header("WWW-Authenticate"), resp
    assert e["user"] is None, e


def test_auth_expired_is_401(gw):
    tok = token(exp=int(time.time()) - 60)
    refused(gw, B("/auth", extra=bearer(tok)), 401, "auth_expired")


def test_auth_rs256_accepted_and_wrong_key_refused(gw, keys):
    good = token(alg="RS256", key=(keys / "rsa.key").read_bytes())
    upgraded(gw, B("/rs", extra=bearer(good)))
    bad = token(alg="RS256", key=(keys / "other.key").read_bytes())
    refused(gw, B("/rs", extra=bearer(bad)), 401, "auth_invalid")


def test_auth_ok_forwards_claim_and_logs_user(gw):
    be = gw.backend
    n = len(be.events("open"))
    port = upgraded(gw, B("/auth", extra=bearer(token(sub="alice")) +
                          [("X-Wsgate-User", "mallory")]))
    ev = be.wait_event("open", n + 1)[-1]
    assert headers_of(ev, "X-Wsgate-User") == ["alice"], ev["headers"]
    e = gw.wait_entry(client_port=port)
    assert e["user"] == "alice", e


def test_auth_query_param_is_stripped_upstream(gw):
    be = gw.backend
    n = len(be.events("open"))
    tok = token(sub="bob")
    path = "/auth?room=1&access_token=%s&x=y" % urllib.parse.quote(tok)
    upgraded(gw, B(path))
    ev = be.wait_event("open", n + 1)[-1]
    assert "access_token" not in ev["path"], ev["path"]
    assert tok not in ev["path"]
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(ev["path"]).query)
    assert q == {"room": ["1"], "x": ["y"]}, ev["path"]
    assert headers_of(ev, "X-Wsgate-User") == ["bob"], ev["headers"]


def test_token_expiry_mid_session_closes_1008(gw):
    tok = token(exp=int(time.time()) + 2)

    async def go():
        async with gw.connect("/auth", extra_headers=bearer(tok)) as ws:
            port = ws.local_address[1]
            await ws.send("before expiry")
            assert await asyncio.wait_for(ws.recv(), 5) == "before expiry"
            with pytest.raises(websockets.ConnectionClosed):
                for _ in range(10):
                    await asyncio.wait_for(ws.recv(), 8)
            return port, ws.close_code
    port, code = run(go())
    assert code == 1008
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "token_expired" and e["close_code"] == 1008, e


# -- ip ----------------------------------------------------------------------------------

def test_ip_denied(gw):
    refused(gw, B("/ipdeny"), 403, "ip_denied")


def test_ip_not_in_allow_list(gw):
    refused(gw, B("/ipallow"), 403, "ip_denied")


def test_forwarded_for_is_not_believed_from_untrusted_peer(gw):
    # trusted_proxies is empty: a client-sent X-Forwarded-For must not let
    # 127.0.0.1 pass as 10.1.2.3
    refused(gw, B("/ipallow", extra=[("X-Forwarded-For", "10.1.2.3")]), 403,
            "ip_denied")


# -- messages ------------------------------------------------------------------------------

def test_deny_regex_closes_1008_and_message_not_forwarded(gw):
    be = gw.backend

    async def go():
        async with gw.connect("/content") as ws:
            port = ws.local_address[1]
            await ws.send("harmless")
            assert await asyncio.wait_for(ws.recv(), 5) == "harmless"
            await ws.send("x <SCRIPT>alert(1)</script>")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return port, ws.close_code
    port, code = run(go())
    assert code == 1008
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == "content_denied" and e["close_code"] == 1008, e
    # the echo backend would have echoed it back; it must never have seen it
    wait_for(lambda: any(ev.get("code") == 1001 for ev in be.events("close")),
             5, what="backend close 1001")


def test_deny_regex_across_fragments(gw):
    # the message is checked whole: a match split over fragments counts,
    # and no fragment of it reaches the backend
    import wsproto
    c = gw.raw()
    try:
        c.upgrade("/content")
        c.send(wsproto.encode_frame(wsproto.OP_TEXT, b"hello <scr",
                                    fin=False) +
               wsproto.encode_frame(wsproto.OP_CONT, b"IPT>x", fin=True))
        f, others = c.read_close(5)
        assert f.close_code == 1008, (f, others)
        assert others == [], others
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "content_denied", e


def test_zz_normal_echo_still_works(gw):
    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("still alive")
            assert await asyncio.wait_for(ws.recv(), 5) == "still alive"
    run(go())
    assert gw.alive()


# -- max_connections and the admin listener: their own gateways ----------------------------

def test_max_connections_is_503_overloaded(factory):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"max_connections": 2})
    a, b = gw.raw(), gw.raw()
    try:
        a.upgrade("/echo")
        b.upgrade("/echo")
        c = gw.raw()
        try:
            c.send(B("/echo"))
            resp = c.http_response(timeout=5, to_eof=False)
            assert resp.status == 503, \
                "third connection with max_connections 2: %r" % resp
            assert b"overloaded" in c.read_to_eof(5)
        finally:
            c.close()
        e = gw.wait_entry(client_port=c.local_port)
        assert e["reason"] == "overloaded", e
    finally:
        a.close()
        b.close()
    gw.wait_entry(client_port=a.local_port)
    gw.wait_entry(client_port=b.local_port)
    d = gw.raw()
    try:
        d.upgrade("/echo")              # room again
    finally:
        d.close()


def admin_get(port, path, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def test_admin_metrics_and_healthz(factory):
    from conftest import free_port
    be = factory.echo()
    aport = free_port()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"admin": {"listen": "127.0.0.1:%d" % aport}})
    st, body = admin_get(aport, "/healthz")
    assert st == 200 and body.strip() == "ok", (st, body)

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("count me")
            await asyncio.wait_for(ws.recv(), 5)
    run(go())
    refused(gw, B("/nope"), 404, "no_route")
    st, body = admin_get(aport, "/metrics")
    assert st == 200, (st, body)
    for name in ("wsgate_handshakes_total", "wsgate_rejections_total",
                 "wsgate_closes_total", "wsgate_active_connections",
                 "wsgate_frames_total", "wsgate_bytes_total",
                 "wsgate_upstream_connect_failures_total",
                 "wsgate_config_reloads_total",
                 "wsgate_handshake_duration_seconds"):
        assert name in body, "metric %s missing:\n%s" % (name, body)
    assert 'reason="no_route"' in body, body
    assert 'result="accepted"' in body, body
    assert admin_get(aport, "/nope")[0] == 404
    assert admin_get(aport, "/metrics", "POST")[0] == 405


def metric(body, name, labels=""):
    import re
    m = re.search(r"^%s%s\s+([0-9.e+-]+)$" % (re.escape(name),
                                              re.escape(labels)),
                  body, re.M)
    return float(m.group(1)) if m else None


def test_admin_metric_values_and_healthz_while_draining(factory):
    import signal
    from conftest import free_port
    be = factory.echo()
    aport = free_port()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"admin": {"listen": "127.0.0.1:%d" % aport},
                              "shutdown_timeout": "3s"})
    refused(gw, B("/nope"), 404, "no_route")
    refused(gw, B("/nope"), 404, "no_route")
    c = gw.raw()
    try:
        c.upgrade("/echo")
        body = admin_get(aport, "/metrics")[1]
        assert metric(body, "wsgate_active_connections") == 1, body
        assert metric(body, "wsgate_rejections_total",
                      '{reason="no_route"}') == 2, body
        gw.proc.send_signal(signal.SIGTERM)
        f, _ = c.read_close(5)
        assert f.close_code == 1001
        # our close is not answered: the gateway is draining
        st, body = admin_get(aport, "/healthz")
        assert st == 503, (st, body)
    finally:
        c.close()
    assert gw.proc.wait(8) == 0
