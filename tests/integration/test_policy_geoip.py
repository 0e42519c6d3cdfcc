"""Policy `geoip`: country allow/deny lists and unknown addresses, against
small MaxMind DB files written by tests/geoip/make-mmdb.pl (Debian's
libmaxmind-db-writer-perl; a missing writer is a failure, not a skip).

The country found goes to the access-log field `country`.
"""

import re

import pytest

import rawclient
from conftest import http_refusal, http_upgrade, make_mmdb, policy

B = rawclient.build_request


@pytest.fixture(scope="module")
def gw(module_factory, tmp_path_factory):
    d = tmp_path_factory.mktemp("mmdb")
    local = make_mmdb(d / "local.mmdb", "127.0.0.0/24=DE", "::1/128=FR")
    other = make_mmdb(d / "other.mmdb", "10.0.0.0/8=KP", "::1/128=FR")
    reg = make_mmdb(d / "reg.mmdb", "127.0.0.0/24=registered:AT")
    nocc = make_mmdb(d / "nocc.mmdb", "127.0.0.0/24=none")
    badcc = make_mmdb(d / "badcc.mmdb", "127.0.0.0/24=D1")
    up = module_factory.raw_upstream()
    pols = {
        "allow_de": policy(geoip={"database": local,
                                  "allow_countries": ["DE"]}),
        "allow_de_lc": policy(geoip={"database": local,
                                     "allow_countries": ["fr", "de"]}),
        "allow_fr": policy(geoip={"database": local,
                                  "allow_countries": ["FR"]}),
        "deny_de": policy(geoip={"database": local,
                                 "deny_countries": ["DE"]}),
        "deny_wins": policy(geoip={"database": local,
                                   "allow_countries": ["DE"],
                                   "deny_countries": ["DE"]}),
        "unk_deny": policy(geoip={"database": other, "unknown": "deny"}),
        "unk_allow": policy(geoip={"database": other, "unknown": "allow"}),
        "unk_default": policy(geoip={"database": other,
                                     "allow_countries": ["KP"]}),
        "unk_default_open": policy(geoip={"database": other}),
        "registered": policy(geoip={"database": reg,
                                    "allow_countries": ["AT"]}),
        "nocc_deny": policy(geoip={"database": nocc, "unknown": "deny"}),
        "nocc_allow": policy(geoip={"database": nocc, "unknown": "allow"}),
        "badcc_allow": policy(geoip={"database": badcc,
                                     "deny_countries": ["KP"],
                                     "unknown": "allow"}),
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


def accepted(gw, route):
    c, _ = http_upgrade(gw, B("/" + route))
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101, e
    return e


@pytest.mark.parametrize("route", ["allow_de", "allow_de_lc"])
def test_allowed_country_passes_and_is_logged(gw, up, route):
    e = accepted(gw, route)
    assert e["country"] == "DE", e


@pytest.mark.parametrize("route", ["allow_fr", "deny_de", "deny_wins"])
def test_country_refused_is_403_geo_denied(gw, up, route):
    _, e = http_refusal(gw, B("/" + route), 403, "geo_denied", up=up)
    assert e["country"] == "DE", e


def test_unknown_address_denied_when_unknown_deny(gw, up):
    _, e = http_refusal(gw, B("/unk_deny"), 403, "geo_denied", up=up)
    assert e["country"] is None, e


def test_unknown_address_allowed_when_unknown_allow(gw, up):
    e = accepted(gw, "unk_allow")
    assert e["country"] is None, e


def test_unknown_default_is_allow(gw, up):
    # unknown defaults to allow: it passes even an allow_countries list
    e = accepted(gw, "unk_default")
    assert e["country"] is None, e
    e = accepted(gw, "unk_default_open")
    assert e["country"] is None, e


def test_registered_country_is_the_fallback(gw, up):
    e = accepted(gw, "registered")
    assert e["country"] == "AT", e


def test_a_failing_lookup_is_refused_even_with_unknown_allow(gw, up):
    """A record whose code is not a country ("D1") is a database that
    fails, not an unknown address: the client is refused, whatever
    unknown says, and the error log says why."""
    _, e = http_refusal(gw, B("/badcc_allow"), 403, "geo_denied", up=up)
    assert e["country"] is None, e
    assert "country lookup failed" in gw.error_text()


def test_record_without_country_is_unknown(gw, up):
    """Unknown, not a failing lookup: unknown: allow lets it through, which
    a lookup failure would not."""
    _, e = http_refusal(gw, B("/nocc_deny"), 403, "geo_denied", up=up)
    assert e["country"] is None, e
    e = accepted(gw, "nocc_allow")
    assert e["country"] is None, e


def test_database_written_in_place_is_used_after_a_reload_only(factory,
                                                                tmp_path):
    """The database is the file as it was when the policy was loaded:
    truncating it in place (as `cp` or `curl -o` do before they write)
    changes nothing and costs nobody anything until a SIGHUP, which
    refuses the truncated file and keeps the old one, then picks the new
    content up once it is whole."""
    db = make_mmdb(tmp_path / "geo.mmdb", "127.0.0.0/24=DE")
    fr = make_mmdb(tmp_path / "fr.mmdb", "127.0.0.0/24=FR")
    up = factory.raw_upstream()
    gw = factory.gateway(
        routes=[("/g", "rec", "g")], upstreams={"rec": [up.addr]},
        policies={"g": policy(geoip={"database": db,
                                     "allow_countries": ["DE"]})})
    assert accepted(gw, "g")["country"] == "DE"

    with open(db, "r+b") as f:
        f.truncate(0)
    for _ in range(3):
        e = accepted(gw, "g")
        assert e["country"] == "DE", e
    assert gw.alive()
    gw.reload(expect="failed")
    assert re.search(r"reload: \S+/g\.yaml:\d+:\d+: database: \S+/geo\.mmdb: "
                     r"empty file", gw.error_text()), gw.error_text()
    assert accepted(gw, "g")["country"] == "DE"

    with open(db, "r+b") as f:
        f.write(open(fr, "rb").read())
    gw.reload()
    up.clear()
    _, e = http_refusal(gw, B("/g"), 403, "geo_denied", up=up)
    assert e["country"] == "FR", e
