"""busy_poll: after relaying, a worker polls without sleeping for that
long, then sleeps again.  Seen from outside as the process's CPU time
(/proc/PID/stat), never as a latency: the daemon spends CPU after a
message with busy_poll and none without, stops spending it when traffic
stops, and still drains and reloads as usual."""

import copy
import os
import signal
import subprocess
import time

import pytest

import wsproto

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of the whole process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_over(pid, seconds):
    """The process's CPU time over the next few seconds."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def one_echo(gw):
    c = gw.raw()
    try:
        c.upgrade("/echo")
        c.send_frame(wsproto.OP_TEXT, b"hi")
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (wsproto.OP_TEXT, b"a:hi"), f
        return c
    except BaseException:
        c.close()
        raise


@pytest.mark.parametrize("busy_poll", ["0", "1s"])
def test_busy_poll_spends_cpu_after_traffic_only(factory, busy_poll):
    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"busy_poll": busy_poll})
    one_echo(gw).close()
    # Quiet: whatever the first echo and its close set off has ended (a
    # second of polling after the last read, with room to spare).
    time.sleep(1.5)
    assert cpu_over(gw.pid, 1.0) < 0.1
    # One message, then a pause: with busy_poll the worker polls for the
    # first second of it (on a core it may share with others, so only a
    # tenth is asked for), without it next to nothing.
    c = one_echo(gw)
    try:
        used = cpu_over(gw.pid, 1.0)
        if busy_poll == "0":
            assert used < 0.1, used
        else:
            assert used >= 0.1, used
        # And then it sleeps again, the session still open.
        time.sleep(0.3)
        assert cpu_over(gw.pid, 1.0) < 0.1
        c.send_frame(wsproto.OP_TEXT, b"hi")
        f = c.read_frame(5)
        assert (f.opcode, f.payload) == (wsproto.OP_TEXT, b"a:hi"), f
    finally:
        c.close()


def test_busy_poll_worker_still_drains_and_exits(factory):
    """The stop flags are seen between the polling passes: SIGTERM while
    it polls still sends 1001 and the process exits 0."""
    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"busy_poll": "1s", "shutdown_timeout": "4s"})
    c = one_echo(gw)
    try:
        gw.proc.send_signal(signal.SIGTERM)
        f, _ = c.read_close(5)
        assert (f.close_code, f.close_reason) == (1001, b"shutdown"), f
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1001))
        assert c.wait_closed(5)
        try:
            rc = gw.proc.wait(4 + 4)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate still running after shutdown_timeout 4s")
        assert rc == 0
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("shutdown", 1001), e


def test_reload_with_a_new_busy_poll_warns_that_it_needs_a_restart(factory):
    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    cfg = copy.deepcopy(gw.config)
    cfg["busy_poll"] = "5ms"
    gw.write_config(cfg)
    gw.reload("done")
    assert "reload: a new busy_poll needs a restart" in gw.error_text()
    # Still the old one: no polling after traffic.
    c = one_echo(gw)
    try:
        assert cpu_over(gw.pid, 0.5) < 0.1
    finally:
        c.close()
