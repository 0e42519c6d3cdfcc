"""Seeded random garbage at the gateway from both sides: whatever comes in,
the process keeps running and keeps relaying.  (The parsers have their own
fuzzers in tests/fuzz; this checks the daemon around them.)"""

import asyncio
import random
import socket
import ssl
import time

import pytest

import rawclient
import rawup
from conftest import policy, run

SEED = 20261122


@pytest.fixture(scope="module")
def gw(module_factory):
    rng = random.Random(SEED + 1)

    def garbage_after_101(c):
        if not c.read_head():
            return
        c.accept_101()
        n = rng.randrange(1, 400)
        c.send(bytes(rng.randrange(256) for _ in range(n)))
        c.drain(1.0)

    echo = module_factory.raw_upstream(rawup.ws_echo)
    bad = module_factory.raw_upstream(garbage_after_101)
    g = module_factory.gateway(
        routes=[("/echo", "echo", "small"), ("/bad", "bad", "small")],
        upstreams={"echo": [echo.addr], "bad": [bad.addr]},
        policies={"small": policy(frames={"max_frame_size": "1KiB",
                                          "max_message_size": "4KiB"})})
    return g


def settle(c, seconds):
    """Read whatever comes back for a short while, then drop it."""
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            c.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not c.sock.recv(65536):
                    break
            except socket.timeout:
                break
    except (OSError, ssl.SSLError):
        pass
    finally:
        c.close()


def test_random_frames_from_clients(gw):
    rng = random.Random(SEED)
    for i in range(120):
        c = gw.raw()
        c.upgrade("/echo")
        data = bytearray(rng.randrange(256) for _ in range(rng.randrange(1,
                                                                         300)))
        if i % 2:
            data[1] |= 0x80             # mostly masked, to get further in
        c.try_send(bytes(data))
        settle(c, 0.05)
        assert gw.alive(), "wsgate died on client bytes %r" % bytes(data)


def test_mutated_upgrade_requests(gw):
    rng = random.Random(SEED + 2)
    base = bytearray(rawclient.build_request(
        "/echo?q=1", extra=[("Origin", "https://a.example"),
                            ("Sec-WebSocket-Protocol", "a, b")]))
    for _ in range(120):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data))
            if op == 0:
                data[pos] = rng.randrange(256)
            elif op == 1:
                del data[pos]
            else:
                data[pos:pos] = bytes([rng.choice(b"\r\n:, \t\x00\xff")])
        c = gw.raw()
        c.try_send(bytes(data))
        settle(c, 0.05)
        assert gw.alive(), "wsgate died on request %r" % bytes(data)


def test_random_bytes_from_upstream(gw):
    for _ in range(60):
        c = gw.raw()
        try:
            c.upgrade("/bad")
        except AssertionError:
            c.close()
            continue
        settle(c, 0.1)
        assert gw.alive()


def test_zz_still_relays(gw):
    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("survived")
            assert await asyncio.wait_for(ws.recv(), 5) == "survived"
    run(go())
    assert gw.alive()
    text = gw.error_text().lower()
    for bad in ("assert", "abort", "sanitizer", "double free"):
        assert bad not in text, gw.error_text()[-3000:]
