"""Policy `origin`: exact origins, look-alikes, `null`, a missing header,
regular expressions, and a backtracking pattern that must not stall the
gateway.

One gateway for the module.  Every refusal is checked on the raw recording
upstream: no connection may have been opened for it.
"""

import asyncio

import pytest

import rawclient
from conftest import http_refusal, http_upgrade, policy, run

B = rawclient.build_request
EVIL_RE = r"^(https?://)?(a+)+$"


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream()
    free = module_factory.raw_upstream()
    pols = {
        "exact": policy(origin={"allow": ["https://app.example.com"],
                                "allow_missing": False}),
        "nullok": policy(origin={"allow": ["https://app.example.com",
                                           "null"],
                                 "allow_missing": True}),
        "regex": policy(origin={
            "allow_regex": [r"^https://[a-z0-9-]+\.tenants\.example\.com$"],
            "allow_missing": False}),
        "evil": policy(origin={"allow_regex": [EVIL_RE],
                               "allow_missing": False}),
    }
    routes = [("/free", "free")] + [("/" + n, "rec", n) for n in pols]
    g = module_factory.gateway(routes=routes, upstreams={"rec": [up.addr],
                                                    "free": [free.addr]},
                               policies=pols)
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def accepted(gw, path, origin=None):
    extra = [("Origin", origin)] if origin is not None else []
    c, _ = http_upgrade(gw, B(path, extra=extra))
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101, e
    return e


def denied(gw, up, path, origin=None):
    extra = [("Origin", origin)] if origin is not None else []
    up.clear()
    _, e = http_refusal(gw, B(path, extra=extra), 403, "origin_denied", up=up)
    return e


@pytest.mark.parametrize("origin", [
    "https://app.example.com", "https://APP.example.COM",
    "https://app.example.com:443"])
def test_allowed_exact_origin(gw, up, origin):
    e = accepted(gw, "/exact", origin)
    assert e["origin"] is not None, e


@pytest.mark.parametrize("origin", [
    "https://evil.example",
    "https://app.example.com.evil.example",
    "https://evilapp.example.com",
    "https://app.example.co",
    "http://app.example.com",
    "wss://app.example.com",
    "https://app.example.com:444",
    "https://app.example.com:8443",
    "https://app.example.com/",
    "https://user@app.example.com",
    "https://app.example.com, https://evil.example",
    "null",
    "",
])
def test_foreign_and_look_alike_origins_are_denied(gw, up, origin):
    denied(gw, up, "/exact", origin)


def test_null_origin_allowed_when_listed(gw, up):
    accepted(gw, "/nullok", "null")
    denied(gw, up, "/nullok", "https://evil.example")


def test_missing_origin_with_allow_missing_false_is_denied(gw, up):
    denied(gw, up, "/exact")
    denied(gw, up, "/regex")


def test_missing_origin_with_allow_missing_true_is_accepted(gw, up):
    e = accepted(gw, "/nullok")
    assert e["origin"] is None, e


def test_two_origin_headers_are_not_accepted(gw, up):
    # A second Origin header must not smuggle an allowed value past the
    # check: either the request is malformed or the origin is denied.
    c = gw.raw()
    try:
        c.send(B("/exact", extra=[("Origin", "https://evil.example"),
                                  ("Origin", "https://app.example.com")]))
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == 400, resp     # a repeated Origin is malformed
    assert up.connections() == []


@pytest.mark.parametrize("origin", [
    "https://acme.tenants.example.com", "https://x-1.tenants.example.com",
    "HTTPS://Acme.Tenants.Example.com:443"])
def test_regex_allowed(gw, up, origin):
    accepted(gw, "/regex", origin)


@pytest.mark.parametrize("origin", [
    "https://acme.tenants.example.com.evil.example",
    "https://tenants.example.com",
    "http://acme.tenants.example.com",
    "https://a.b.tenants.example.com",
    "https://acme.tenants.example.com:8443",
])
def test_regex_look_alikes_denied(gw, up, origin):
    denied(gw, up, "/regex", origin)


@pytest.mark.parametrize("origin", [
    "a" * 40 + "!",                               # as in the brief
    "https://" + "a" * 48 + ".example",           # a well-formed origin
    "http://" + "a" * 64 + ".evil",
])
def test_backtracking_allow_regex_is_refused_without_stalling(gw, up, origin):
    # Open a session first: the gateway has one worker, so a stalled regex
    # would stall this session too.
    async def go():
        async with gw.connect("/free") as ws:
            await ws.send("before")
            assert await asyncio.wait_for(ws.recv(), 5) == "before"
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(None, denied, gw, up, "/evil", origin)
            await ws.send("meanwhile")
            assert await asyncio.wait_for(ws.recv(), 5) == "meanwhile"
            e = await asyncio.wait_for(fut, 10)
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 5) == "after"
            return e
    e = run(go(), timeout=25)
    assert e["origin"] is not None, e
    # and a new client is served normally right after
    accepted(gw, "/free")
    accepted(gw, "/evil", "https://aaaa")


def test_zz_gateway_still_relays(gw):
    async def go():
        async with gw.connect("/free") as ws:
            await ws.send("still here")
            return await asyncio.wait_for(ws.recv(), 5)
    assert run(go()) == "still here"
    assert gw.alive()
