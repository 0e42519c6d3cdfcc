"""error_log: syslog sends the error log to the local syslog socket.

The test plays the syslog daemon: it binds /dev/log itself (a unix datagram
socket), which it can only do where no system logger owns that path (these
test machines have none).  Where one does, the test is skipped rather than
steal the system's log socket."""

import asyncio
import os
import socket
import time

import pytest

from conftest import run

DEVLOG = "/dev/log"


@pytest.fixture
def devlog():
    if os.path.exists(DEVLOG):
        pytest.skip("%s belongs to a running system logger" % DEVLOG)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.bind(DEVLOG)
    except OSError as e:
        s.close()
        pytest.skip("cannot bind %s: %s" % (DEVLOG, e))
    s.settimeout(0.2)
    yield s
    s.close()
    os.unlink(DEVLOG)


def receive(s, want, deadline):
    got = []
    while time.monotonic() < deadline:
        try:
            got.append(s.recv(4096).decode(errors="replace"))
        except socket.timeout:
            continue
        if any(want in g for g in got):
            break
    return got


def test_error_log_to_syslog(factory, devlog, tmp_path):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"log": {"level": "debug",
                                      "error_log": "syslog",
                                      "access_log": str(tmp_path /
                                                        "access.log")}})

    async def once():
        async with gw.connect("/echo") as ws:
            await ws.send("x")
            assert await asyncio.wait_for(ws.recv(), 5) == "x"
    run(once())
    got = receive(devlog, "closed: client_closed", time.monotonic() + 5)
    # RFC 3164 framing from syslog(3): "<PRI>... wsgate[PID]: message",
    # facility daemon (3): PRI = 3 * 8 + severity.
    lines = [g for g in got if "wsgate[%d]:" % gw.proc.pid in g]
    assert any("started with" in g for g in lines), got
    assert any("closed: client_closed" in g for g in lines), got
    pris = [int(g[1:g.index(">")]) for g in lines]
    assert all(p // 8 == 3 for p in pris), pris
    assert {p % 8 for p in pris} >= {6, 7}, pris     # info and debug
    assert gw.alive()
