"""Floods closed by policy (issue 7): a ping flood against
messages_per_connection, and a flood of thousands of 1-byte continuation
fragments against max_message_size and against the byte rate.

Each flood is sent in one burst from a raw client; the test checks the
close code and reason the client gets, the access-log line, that the
upstream received only a bounded part of the flood, and that the daemon is
back at its descriptor baseline and still relays.
"""


import pytest

import rawup
import wsproto
from conftest import echo_works, fd_count, policy, wait_fds_at_most

PING, CONT, BIN, PONG = (wsproto.OP_PING, wsproto.OP_CONT,
                         wsproto.OP_BINARY, wsproto.OP_PONG)
FD_SLACK = 2


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream(rawup.ws_echo)
    echo = module_factory.raw_upstream(rawup.ws_echo)
    g = module_factory.gateway(
        routes=[("/ping", "rec", "ping"), ("/frag", "rec", "frag"),
                ("/fragrate", "rec", "fragrate"), ("/echo", "echo")],
        upstreams={"rec": [up.addr], "echo": [echo.addr]},
        policies={
            "ping": policy(rate_limit={"messages_per_connection":
                                       {"rate": "100/s", "burst": 100}}),
            "frag": policy(frames={"max_message_size": "4KiB"}),
            "fragrate": policy(rate_limit={
                "messages_per_connection": {"rate": "100/s", "burst": 100},
                "bytes_per_connection": {"rate": "4KiB/s",
                                         "burst": "4KiB"}}),
        }, tls=False)
    g.up = up
    echo_works(g)
    g.wait_entries(1)
    g.base_fds = fd_count(g.pid)
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def after_flood(gw, up, c, code, reasons):
    """The flooding client gets `code` with one of `reasons` (within the
    read's bound, not timed: machines here are shared), the log says so,
    the upstream connection is closed, the daemon is back at its baseline
    and relays.  Returns (frames before the close, upstream connection)."""
    close, others = c.read_close(10)
    assert close.close_code == code, close
    assert close.close_reason.decode() in reasons, close
    c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["close_code"]) == (101, code), e
    assert e["reason"] == close.close_reason.decode(), e
    (uc,) = up.wait_conns(1)
    assert uc.done.wait(5), "upstream connection left open after the flood"
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
    assert gw.alive()
    echo_works(gw)
    return others, uc


def test_ping_flood_closed_by_messages_per_connection(gw, up):
    n = 2000
    c = gw.raw()
    c.upgrade("/ping")
    c.send(b"".join(wsproto.encode_frame(PING, b"%04d" % (i % 10000))
                    for i in range(n)))
    others, uc = after_flood(gw, up, c, 1008, ("rate_messages",))
    pongs = [f for f in others if f.opcode == PONG]
    pings_up = [f for f in uc.frames if f.opcode == PING]
    print("%d pings sent: %d reached the upstream, %d pongs came back" % (
        n, len(pings_up), len(pongs)))
    # burst 100 at 100/s: the flood lasts well under a second
    assert len(pings_up) <= 150, len(pings_up)
    assert len(pongs) <= len(pings_up), (len(pongs), len(pings_up))


def fragment_flood(n):
    """A binary message of n 1-byte frames: a first frame, then n - 1
    continuations, never finished."""
    frames = [wsproto.encode_frame(BIN, b"a", fin=False)]
    frames += [wsproto.encode_frame(CONT, b"b", fin=False)
               for _ in range(n - 1)]
    return b"".join(frames)


def up_payload(uc):
    return sum(len(f.payload) for f in uc.frames
               if f.opcode in (BIN, CONT))


def test_tiny_fragment_flood_closed_by_max_message_size(gw, up):
    n = 6000                            # 6000 bytes in 42 KB of frames
    c = gw.raw()
    c.upgrade("/frag")
    assert c.try_send(fragment_flood(n))
    others, uc = after_flood(gw, up, c, 1009, ("message_too_large",))
    got = up_payload(uc)
    print("%d one-byte fragments sent; the upstream got %d payload bytes "
          "in %d frames" % (n, got, len(uc.frames)))
    assert got <= 4096, "upstream got %d bytes of a message over 4KiB" % got
    assert not any(f.fin and f.opcode in (BIN, CONT) for f in uc.frames), \
        "the refused message was completed upstream"


def test_tiny_fragment_flood_closed_by_byte_rate(gw, up):
    # one message (messages are counted at their first frame), so the
    # byte bucket (4KiB burst, 4KiB/s) is the one that runs out
    n = 6000
    c = gw.raw()
    c.upgrade("/fragrate")
    assert c.try_send(fragment_flood(n))
    others, uc = after_flood(gw, up, c, 1008, ("rate_bytes",))
    got = up_payload(uc)
    print("%d one-byte fragments sent; the upstream got %d payload bytes "
          "in %d frames" % (n, got, len(uc.frames)))
    assert got <= 4096 + 512, got
    assert not any(f.fin and f.opcode in (BIN, CONT) for f in uc.frames)


def test_zz_gateway_still_relays(gw):
    assert gw.alive()
    c = gw.raw()
    try:
        c.upgrade("/echo")
        for i in range(3):
            c.send_frame(wsproto.OP_TEXT, b"after floods %d" % i)
            f = c.read_frame(5)
            assert f is not None and f.payload == b"after floods %d" % i, f
    finally:
        c.close()
    wait_fds_at_most(gw, gw.base_fds + FD_SLACK)
