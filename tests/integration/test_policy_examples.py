"""The example policies shipped in policies/ load in a real daemon.

The files (and their keys/) are copied as they are into the test's policies
dir, one route per policy; `wsgate -t` must say ok, the daemon must start
and serve the default route, and each example must do what its comments
say on a request or two.
"""

import asyncio
import shutil
import subprocess

import pytest
import websockets

import rawclient
from conftest import REPO, WSGATE, http_refusal, http_upgrade, run

B = rawclient.build_request
EXAMPLES = ["default", "public-chat", "internal-service", "strict"]


@pytest.fixture(scope="module")
def gw(module_factory):
    be = module_factory.echo()
    routes = [("/echo", "echo")] + \
        [("/" + n, "echo", n) for n in EXAMPLES if n != "default"]
    # Loopback may vouch for other addresses, so the examples' address
    # checks can be seen from here (X-Forwarded-For).
    g = module_factory.gateway(routes=routes, upstreams={"echo": [be.addr]},
                               listener={"trusted_proxies": ["127.0.0.1"]},
                               start=False)
    pol_dir = g.tmp / "policies"
    src = REPO / "policies"
    for n in EXAMPLES:
        shutil.copyfile(src / (n + ".yaml"), pol_dir / (n + ".yaml"))
    shutil.copytree(src / "keys", pol_dir / "keys")
    p = subprocess.run([WSGATE, "-t", "-c", str(g.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    g.check_output = p.stdout + p.stderr
    g.check_rc = p.returncode
    g.start()
    g.backend = be
    return g


def test_config_check_says_ok(gw):
    assert gw.check_rc == 0, gw.check_output
    assert "%s: ok" % gw.cfg_path in gw.check_output.splitlines(), \
        gw.check_output


def test_default_route_serves(gw):
    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("hello default")
            return await asyncio.wait_for(ws.recv(), 5)
    assert run(go()) == "hello default"


def test_public_chat_checks_origin_then_token(gw):
    http_refusal(gw, B("/public-chat", protocols="chat.v2",
                       extra=[("Origin", "https://evil.example")]),
                 403, "origin_denied")
    resp, _ = http_refusal(gw, B("/public-chat", protocols="chat.v2",
                                 extra=[("Origin",
                                         "https://chat.example.com")]),
                           401, "auth_missing")
    assert any(v.lower().startswith("bearer")
               for v in resp.header("WWW-Authenticate")), resp


def test_internal_service_allows_loopback(gw):
    c, _ = http_upgrade(gw, B("/internal-service"))
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101, e


def test_strict_checks_origin_and_content(gw):
    http_refusal(gw, B("/strict"), 403, "origin_denied")

    async def go():
        async with gw.connect("/strict",
                              origin="https://app.example.com") as ws:
            await ws.send("fine")
            assert await asyncio.wait_for(ws.recv(), 5) == "fine"
            await ws.send("1 UNION  SELECT password")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code
    assert run(go()) == 1008


def test_default_refuses_browsers_not_programs(gw):
    """default.yaml: with no page listed every browser (Origin sent) is
    refused, while a client that sends no Origin is let through."""
    http_refusal(gw, B("/echo", extra=[("Origin", "https://app.example.com")]),
                 403, "origin_denied")
    c, _ = http_upgrade(gw, B("/echo"))
    c.close()


@pytest.mark.parametrize("addr,ok", [("10.1.2.3", True),
                                     ("192.168.7.7", True),
                                     ("10.66.1.1", False),
                                     ("203.0.113.9", False)])
def test_internal_service_networks(gw, addr, ok):
    """internal-service.yaml: only the private networks may connect, and
    the guest network inside 10/8 is kept out (deny wins over allow)."""
    req = B("/internal-service", extra=[("X-Forwarded-For", addr)])
    if not ok:
        http_refusal(gw, req, 403, "ip_denied",
                     pred=lambda e: e["client"] == addr)
        return
    c, _ = http_upgrade(gw, req)
    c.close()
    e = gw.wait_entry(pred=lambda e: e["client"] == addr)
    assert e["status"] == 101, e


@pytest.mark.parametrize("origin,reason", [
    (None, "origin_denied"),
    ("https://acme.chat.example.com", "auth_missing"),
    ("https://x.chat.example.com.evil.io", "origin_denied"),
    ("https://a.b.chat.example.com", "origin_denied"),
])
def test_public_chat_origins(gw, origin, reason):
    """public-chat.yaml: a request without Origin is no browser and is
    refused; a tenant's subdomain passes the Origin check (and then needs
    a token); the anchored pattern keeps look-alikes out."""
    extra = [("Origin", origin)] if origin else []
    http_refusal(gw, B("/public-chat", protocols="chat.v2", extra=extra),
                 401 if reason.startswith("auth") else 403, reason)


def test_public_chat_reads_the_query_token(gw):
    """public-chat.yaml: browsers may send ?access_token=<jwt>; a token
    there is checked (here one that is no JWT: auth_invalid)."""
    http_refusal(gw, B("/public-chat?access_token=not.a.jwt",
                       protocols="chat.v2",
                       extra=[("Origin", "https://chat.example.com")]),
                 401, "auth_invalid")


@pytest.mark.parametrize("kind,code,reason", [
    ("binary", 1003, "binary_denied"),
    ("script", 1008, "content_denied"),
    ("frame", 1009, "frame_too_large"),
])
def test_strict_limits(gw, kind, code, reason):
    """strict.yaml: text only (binary 1003), '<script' in any case is
    denied (1008), and a frame over 4KiB closes with 1009."""
    msg = {"binary": b"\x00\x01", "script": "a <SCRIPT>x",
           "frame": "x" * (4096 + 1)}[kind]

    async def go():
        async with gw.connect("/strict",
                              origin="https://app.example.com") as ws:
            port = ws.local_address[1]
            await ws.send("fine")
            assert await asyncio.wait_for(ws.recv(), 5) == "fine"
            await ws.send(msg)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code, port
    got, port = run(go())
    assert got == code, got
    e = gw.wait_entry(client_port=port)
    assert e["reason"] == reason and e["close_code"] == code, e
