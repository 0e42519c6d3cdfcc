"""SIGTERM drain seen from operations: /healthz turns 503 "draining" (and
wsgate_draining 1) as soon as the drain starts, every open session gets
close 1001 "shutdown", and the process exits 0 within shutdown_timeout."""

import os
import socket
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
        # A reload asked for now is not done, and the log says so.
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "SIGHUP while draining: no reload" not in gw.error_text() \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "SIGHUP while draining: no reload" in gw.error_text()
        assert metric(gw.metrics(), "wsgate_config_reloads_total",
                      result="ok") == 0

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


def test_a_draining_gateway_no_longer_listens(factory):
    """The drain closes the listening sockets before it sends a single
    close frame: a new connection is refused by the kernel, so that a load
    balancer's TCP check fails over and a new instance sharing the port
    gets every new client, rather than being accepted and dropped."""
    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"shutdown_timeout": "5s"})
    deaf = gw.raw()
    try:
        deaf.upgrade("/echo")
        gw.proc.send_signal(signal.SIGTERM)
        f, _ = deaf.read_close(5)
        assert (f.close_code, f.close_reason) == (1001, b"shutdown"), f
        # Still draining: "deaf" has not answered its close frame.
        s = socket.socket(socket.AF_INET6 if ":" in gw.host else
                          socket.AF_INET)
        s.settimeout(3)
        try:
            with pytest.raises(ConnectionRefusedError):
                s.connect((gw.host, gw.port))
        finally:
            s.close()
        assert gw.proc.poll() is None, "the drain ended before the check"
    finally:
        deaf.close()
    assert gw.proc.wait(10) == 0


def test_drain_right_after_a_reload_uses_the_new_shutdown_timeout(factory):
    """SIGHUP then SIGTERM while both workers are busy (blocked writing the
    access log to a pipe nobody reads yet): each worker finds the new
    generation and the drain in its messages at once.  The drain must run
    with the shutdown_timeout of the reload that was logged "done" (0
    here, exit at once: a "shutdown timeout" line from each worker), not
    with the old one (30s, where the deaf sessions simply linger out)."""
    from conftest import StalledAccessLog, wait_for

    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, tls=False,
                         admin=True,
                         top={"workers": 2, "shutdown_timeout": "30s"},
                         start=False)
    log = StalledAccessLog(gw)
    deaf = []
    try:
        gw.start()
        # Deaf sessions on both workers (the kernel spreads them by port).
        for _ in range(40):
            c = gw.raw()
            deaf.append(c)
            c.upgrade("/echo")
            g = [metric(gw.metrics(), "wsgate_worker_connections",
                        worker=w) for w in ("0", "1")]
            if min(g) >= 1 and len(deaf) >= 4:
                break
        assert min(g) >= 1, g
        # Far more access-log lines than a page holds, from both workers:
        # each blocks on its next line.
        log.fill(200)
        cfg = dict(gw.config, shutdown_timeout=0)
        gw.write_config(cfg)
        gw.reload("done")
        gw.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "draining" in gw.error_text(), what="the drain")
        log.release()
        try:
            rc = gw.proc.wait(15)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate still running after the drain")
        assert rc == 0
    finally:
        log.release()
        for c in deaf:
            c.close()
        gw.stop()
        log.close()
    lines = [ln for ln in gw.error_text().splitlines()
             if "shutdown timeout:" in ln]
    assert len(lines) == 2, gw.error_text()[-3000:]


def _stuck_drain(factory, error_log_too, timeout=1, before=()):
    """A gateway of two workers whose access log (and error log, if
    error_log_too) is a pipe nobody reads: both workers block writing it.
    The signals before, then SIGTERM, must still end the process soon
    after shutdown_timeout."""
    from conftest import StalledAccessLog

    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, tls=False,
                         top={"workers": 2,
                              "shutdown_timeout": "%ds" % timeout},
                         start=False)
    log = StalledAccessLog(gw)
    if error_log_too:
        cfg = dict(gw.config)
        cfg["log"] = dict(cfg["log"], error_log=str(gw.access_log))
        gw.write_config(cfg)
    try:
        gw.start()
        # Far more log lines than a page holds, from both workers: each
        # blocks on its next line and never returns from write(2).
        log.fill(200)
        for sig in before:
            gw.proc.send_signal(sig)
            time.sleep(0.5)
        gw.proc.send_signal(signal.SIGTERM)
        try:
            rc = gw.proc.wait(timeout + 20)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate still running 20s after shutdown_timeout "
                        "with its workers blocked on the log")
    finally:
        # What the pipe still holds: the last line, when it had room.
        gw.pipe_left = b""
        try:
            for _ in range(64):
                chunk = os.read(log.fd, 65536)
                if not chunk:
                    break
                gw.pipe_left += chunk
        except BlockingIOError:
            pass
        gw.stop()
        log.close()
    return gw, rc


def _last_line_text(gw):
    """Where the last line may be once the error log is the stuck pipe:
    the pipe, if it had room for the line, else stderr."""
    return (gw.stderr_path.read_text(errors="replace") +
            gw.pipe_left.decode(errors="replace"))


def test_drain_ends_with_workers_blocked_on_the_access_log(factory):
    """wsgate(8) SIGTERM: a worker blocked writing a log line (a stuck log
    shipper) cannot be waited for; the process exits 2 shortly after
    shutdown_timeout all the same, and the error log says why."""
    gw, rc = _stuck_drain(factory, False)
    assert rc == 2
    text = gw.error_text()
    assert "draining" in text
    assert "not done 5s after shutdown_timeout" in text, text[-3000:]


def test_drain_ends_with_the_error_log_blocked_too(factory):
    """The error log is the same stuck pipe: the main thread must not
    block on its own lines either.  Its last line goes to stderr, a
    different file, when the pipe cannot take it."""
    gw, rc = _stuck_drain(factory, True)
    assert rc == 2
    err = _last_line_text(gw)
    assert "not done 5s after shutdown_timeout" in err, err[-3000:]


def test_a_second_sigterm_ends_a_drain_blocked_on_the_log(factory):
    """A reload and a log reopen while the workers and the error log are
    stuck do not block the main thread, and a second SIGTERM bounds the
    stop to the grace (shutdown_timeout is 60s here, the wait 20s)."""
    gw, rc = _stuck_drain(factory, True, timeout=60,
                          before=(signal.SIGHUP, signal.SIGUSR1,
                                  signal.SIGTERM))
    assert rc == 2
    err = _last_line_text(gw)
    assert "not done 5s after signal 15" in err, err[-3000:]


def test_a_worker_back_from_a_stuck_log_cuts_off_at_the_deadline(factory):
    """shutdown_timeout counts from the signal, for a worker too that was
    blocked on its log when the drain began: back from it 5.5s later,
    past the 3s, it cuts off what is open at once ("shutdown timeout")
    rather than give it 3s more, which could outlast the main thread's
    3s + 5s of patience; the process exits 0."""
    from conftest import StalledAccessLog

    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, tls=False,
                         top={"shutdown_timeout": "3s"}, start=False)
    log = StalledAccessLog(gw)
    deaf = None
    try:
        gw.start()
        deaf = gw.raw()
        deaf.upgrade("/echo")
        # More lines than a page, fewer than the listen backlog holds.
        log.fill(40)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(5.5)
        assert gw.proc.poll() is None
        log.release()
        try:
            rc = gw.proc.wait(3 + 20)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate still running after the drain")
    finally:
        log.release()
        if deaf is not None:
            deaf.close()
        gw.stop()
        log.close()
    assert rc == 0, gw.error_text()[-3000:]
    text = gw.error_text()
    assert "shutdown timeout:" in text
    assert "cut off at shutdown_timeout" in text


def test_sigterm_while_starting_up_ends_it_cleanly(factory):
    """A SIGTERM sent as soon as the listener takes connections, while the
    gateway still sets up its workers and signal handlers, is a shutdown
    like any other once it can be taken: exit 0, not death by the
    signal.  Tried a few times, as the window is short."""
    from conftest import WSGATE, stop_process
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [factory.echo().addr]},
                         tls=False, start=False, top={"workers": 2})
    gw.write_config()
    for _ in range(5):
        proc = subprocess.Popen([WSGATE, "-c", str(gw.cfg_path)],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, cwd=str(gw.tmp))
        try:
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection((gw.host, gw.port), 1).close()
                    break
                except OSError:
                    time.sleep(0.0005)
            assert proc.poll() is None, proc.returncode
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(10) == 0, proc.returncode
        finally:
            stop_process(proc, signal.SIGKILL)
