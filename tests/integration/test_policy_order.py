"""The order of the handshake checks: ip, geoip, origin, auth, subprotocols.

Each route below has every check on and lets one more of them pass than
the route before; a request that fails all of the remaining checks must be
refused for the first of them, and never reach the upstream.
"""

import time

import jwt
import pytest

import rawclient
from conftest import http_refusal, http_upgrade, make_mmdb, policy

B = rawclient.build_request
SECRET = b"order-test-hmac-secret-0123456789abcdefghij"
GOOD_ORIGIN, BAD_ORIGIN = "https://app.example.com", "https://evil.example"


def full(mmdb, secret, ip, countries):
    return policy(
        ip=ip,
        geoip={"database": mmdb, **countries},
        origin={"allow": [GOOD_ORIGIN], "allow_missing": False},
        auth={"jwt": {"algorithms": ["HS256"], "key_file": secret}},
        subprotocols=["chat.v2"])


@pytest.fixture(scope="module")
def gw(module_factory, tmp_path_factory):
    d = tmp_path_factory.mktemp("order")
    mmdb = make_mmdb(d / "local.mmdb", "127.0.0.0/24=DE")
    (d / "hmac.secret").write_bytes(SECRET)
    secret = str(d / "hmac.secret")
    up = module_factory.raw_upstream()
    pols = {
        # everything fails
        "p_ip": full(mmdb, secret, {"deny": ["127.0.0.0/8"]},
                     {"deny_countries": ["DE"]}),
        # ip passes, geoip and the rest fail
        "p_geo": full(mmdb, secret, {"allow": ["127.0.0.0/8"]},
                      {"deny_countries": ["DE"]}),
        # ip and geoip pass
        "p_rest": full(mmdb, secret, {"allow": ["127.0.0.0/8"]},
                       {"allow_countries": ["DE"]}),
        # ip deny wins over ip allow, before anything else
        "p_ipboth": full(mmdb, secret, {"allow": ["127.0.0.0/8"],
                                        "deny": ["127.0.0.1"]},
                         {"allow_countries": ["DE"]}),
    }
    routes = [("/" + n, "rec", n) for n in pols]
    g = module_factory.gateway(routes=routes, upstreams={"rec": [up.addr]},
                               policies=pols)
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def tok():
    return jwt.encode({"sub": "olga", "exp": int(time.time()) + 300},
                      SECRET, algorithm="HS256")


@pytest.mark.parametrize("route,origin,token,protos,status,reason", [
    ("p_ip", BAD_ORIGIN, None, "a", 403, "ip_denied"),
    ("p_ipboth", BAD_ORIGIN, None, "a", 403, "ip_denied"),
    ("p_geo", BAD_ORIGIN, None, "a", 403, "geo_denied"),
    ("p_rest", BAD_ORIGIN, None, "a", 403, "origin_denied"),
    ("p_rest", None, None, "a", 403, "origin_denied"),
    ("p_rest", GOOD_ORIGIN, None, "a", 401, "auth_missing"),
    ("p_rest", GOOD_ORIGIN, "garbage", "a", 401, "auth_invalid"),
    ("p_rest", GOOD_ORIGIN, "good", "a", 400, "subprotocol_denied"),
])
def test_first_failing_check_decides(gw, up, route, origin, token, protos,
                                     status, reason):
    extra = []
    if origin:
        extra.append(("Origin", origin))
    if token:
        extra.append(("Authorization", "Bearer " +
                      (tok() if token == "good" else "not.a.jwt")))
    http_refusal(gw, B("/" + route, protocols=protos, extra=extra), status,
                 reason, up=up)


def test_all_checks_passing_upgrades(gw, up):
    c, resp = http_upgrade(gw, B("/p_rest", protocols="a, chat.v2",
                                 extra=[("Origin", GOOD_ORIGIN),
                                        ("Authorization",
                                         "Bearer " + tok())]))
    c.close()
    assert resp.header("Sec-WebSocket-Protocol") == ["chat.v2"], resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["user"] == "olga", e
    assert e["country"] == "DE" and e["origin"] == GOOD_ORIGIN, e
