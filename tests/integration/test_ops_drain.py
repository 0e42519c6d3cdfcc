"""SIGTERM drain seen from operations: /healthz turns 503 "draining" (and
wsgate_draining 1) as soon as the drain starts, every open session gets
close 1001 "shutdown", and the process exits 0 within shutdown_timeout."""

import signal
import time
import subprocess

import pytest

import wsproto
from conftest import metric


def test_drain_healthz_and_1001(factory):
    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, admin=True,
                         top={"shutdown_timeout": "4s"})
    status, body, hdrs = gw.admin("/healthz")
    assert (status, body.strip()) == (200, "ok")
    m = gw.metrics()
    assert metric(m, "wsgate_draining") == 0
    assert metric(m, "wsgate_active_connections") == 0

    # "deaf" never answers the close frame, so its session lingers and the
    # process is still draining when /healthz is asked; "polite" answers.
    deaf, polite = gw.raw(), gw.raw()
    try:
        for c in (deaf, polite):
            c.upgrade("/echo")
            c.send_frame(wsproto.OP_TEXT, b"hi")
            f = c.read_frame(5)
            assert (f.opcode, f.payload) == (wsproto.OP_TEXT, b"a:hi"), f
        assert metric(gw.metrics(), "wsgate_active_connections") == 2

        gw.proc.send_signal(signal.SIGTERM)
        # The signal is handled by the same loop that answers /healthz: a
        # request that gets there first is still answered "ok".  Ask until
        # the drain has begun (bounded), then it must say so.
        deadline = time.monotonic() + 2
        while True:
            status, body, _ = gw.admin("/healthz")
            if status != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert (status, body.strip()) == (503, "draining")
        assert metric(gw.metrics(), "wsgate_draining") == 1

        for c in (deaf, polite):
            f, others = c.read_close(5)
            assert (f.close_code, f.close_reason) == (1001, b"shutdown"), f
            assert others == []
        polite.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1001))
        assert polite.wait_closed(5)
        try:
            rc = gw.proc.wait(4 + 4)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate still running after shutdown_timeout 4s")
        assert rc == 0
    finally:
        deaf.close()
        polite.close()
    for c in (deaf, polite):
        e = gw.wait_entry(client_port=c.local_port)
        assert (e["reason"], e["close_code"]) == ("shutdown", 1001), e
    closes = be.wait_event("close", n=2)
    assert [ev["code"] for ev in closes] == [1001, 1001], closes
