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
    g = module_factory.gateway(routes=routes, upstreams={"echo": [be.addr]},
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
