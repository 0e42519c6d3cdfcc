"""SIGTERM drains: every client gets close 1001, the access log says
shutdown, and the daemon exits 0 within shutdown_timeout."""

import asyncio
import re
import signal
import subprocess
import time

import pytest
import websockets

import rawclient
import wsproto
from rawclient import build_request
from conftest import run


def test_sigterm_closes_clients_1001_and_exits_0(echo_gateway):
    gw, be = echo_gateway, echo_gateway.backend

    async def go():
        async with gw.connect("/echo") as a, gw.connect("/echo") as b:
            ports = [a.local_address[1], b.local_address[1]]
            for ws in (a, b):
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            gw.proc.send_signal(signal.SIGTERM)
            codes = []
            for ws in (a, b):
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 8)
                codes.append(ws.close_code)
            return ports, codes
    ports, codes = run(go())
    assert codes == [1001, 1001]
    t0 = time.monotonic()
    try:
        rc = gw.proc.wait(8)
    except subprocess.TimeoutExpired:
        pytest.fail("wsgate still running %.0fs after SIGTERM" %
                    (time.monotonic() - t0))
    assert rc == 0
    for p in ports:
        e = gw.wait_entry(client_port=p)
        assert e["reason"] == "shutdown" and e["close_code"] == 1001, e
    closes = be.wait_event("close", n=2, timeout=5)
    assert sorted(ev["code"] for ev in closes) == [1001, 1001], closes


def test_sigterm_stops_accepting(echo_gateway):
    gw = echo_gateway
    c = gw.raw()
    c.upgrade("/echo")
    gw.proc.send_signal(signal.SIGTERM)
    f, _ = c.read_close(5)
    assert f.close_code == 1001
    # while draining (our close not answered yet) no new upgrade succeeds:
    # the connection is refused or reset, or gets no 101 (an upgraded one
    # stays open, so a read that times out is judged by what came)
    data = b""
    try:
        n = gw.raw(timeout=3)
    except OSError:
        pass
    else:
        try:
            n.send(build_request("/echo"))
            data = n.read_to_eof(3)
        except rawclient.Timeout:
            data = bytes(n.buf)
        except OSError:
            pass
        finally:
            n.close()
    assert not data.startswith(b"HTTP/1.1 101"), \
        "gateway upgraded a new connection while draining: %r" % data[:200]
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1001))
    c.close()
    assert gw.proc.wait(8) == 0


def test_unresponsive_client_does_not_block_exit(factory):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"shutdown_timeout": "2s"})
    c = gw.raw()
    try:
        c.upgrade("/echo")
        gw.proc.send_signal(signal.SIGTERM)
        f, _ = c.read_close(5)
        assert f.close_code == 1001
        # never answer the close: the daemon must still exit by itself
        try:
            rc = gw.proc.wait(8)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate did not exit after shutdown_timeout 2s")
        assert rc == 0
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "shutdown", e


@pytest.mark.parametrize("workers,second",
                         [(1, signal.SIGTERM), (2, signal.SIGINT)])
def test_second_signal_while_draining_forces_the_stop(factory, workers,
                                                      second):
    """A second SIGTERM/SIGINT during a drain cuts the sessions that have
    not answered their 1001 and exits at once, as shutdown_timeout would."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"shutdown_timeout": "30s",
                              "workers": workers})
    clients = []
    try:
        for _ in range(4):
            c = gw.raw()
            clients.append(c)
            c.upgrade("/echo")
        gw.proc.send_signal(signal.SIGTERM)
        for c in clients:
            f, _ = c.read_close(8)
            assert f.close_code == 1001
        # nobody answers the close: the drain waits for them (each one
        # lingers 2s after its close frame, so a short look)
        with pytest.raises(subprocess.TimeoutExpired):
            gw.proc.wait(0.5)
        gw.proc.send_signal(second)
        try:
            rc = gw.proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate still running after a second signal "
                        "during the drain")
        assert rc == 0
    finally:
        for c in clients:
            c.close()
    for c in clients:
        e = gw.wait_entry(client_port=c.local_port)
        assert e["reason"] == "shutdown" and e["close_code"] == 1001, e
    # one warn line; those that had lingered out already are not counted
    lines = [m for m in (re.search(r" (warn|notice): signal %d .*forced the "
                                   r"stop: (\d+) sessions? cut" % second, ln)
                         for ln in gw.error_text().splitlines()) if m]
    assert len(lines) == 1, gw.error_text()
    assert 1 <= int(lines[0].group(2)) <= 4, lines[0].group(0)


def test_sighup_reload_new_config_for_new_connections(factory):
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [a.addr]})

    async def tag(ws):
        await ws.send("who")
        return (await asyncio.wait_for(ws.recv(), 5)).split(":")[0]

    async def go():
        async with gw.connect("/echo") as old:
            assert await tag(old) == "a"
            text = gw.cfg_path.read_text()
            gw.cfg_path.write_text(text.replace(a.addr, b.addr))
            gw.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            new_tag = None
            while time.monotonic() < deadline:
                async with gw.connect("/echo") as new:
                    new_tag = await tag(new)
                if new_tag == "b":
                    break
                await asyncio.sleep(0.2)
            assert new_tag == "b", "reload not applied to new connections"
            # the established session keeps its upstream
            assert await tag(old) == "a"

            # a broken config is refused and the running one stays
            gw.cfg_path.write_text(gw.cfg_path.read_text() +
                                   "bogus_option: 1\n")
            gw.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.0)
            assert gw.alive()
            async with gw.connect("/echo") as new:
                assert await tag(new) == "b"
    run(go(), timeout=30)
    assert "bogus_option" in gw.error_text()


def test_sigusr1_reopens_logs(echo_gateway):
    gw = echo_gateway

    async def once():
        async with gw.connect("/echo") as ws:
            port = ws.local_address[1]
            await ws.send("x")
            await asyncio.wait_for(ws.recv(), 5)
        return port
    p1 = run(once())
    gw.wait_entry(client_port=p1)
    rotated = gw.access_log.with_name("access.log.1")
    gw.access_log.rename(rotated)
    gw.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    p2 = run(once())
    e = gw.wait_entry(client_port=p2)      # read from the new access.log
    assert e["status"] == 101
    assert str(p2) not in rotated.read_text()


def test_version_flag():
    from conftest import WSGATE
    p = subprocess.run([WSGATE, "-V"], capture_output=True, text=True,
                       timeout=10, stdin=subprocess.DEVNULL)
    assert p.returncode == 0
    # the version is the one configure.ac gives the package
    import pathlib
    import re
    ac = (pathlib.Path(__file__).resolve().parents[2] /
          "configure.ac").read_text()
    version = re.search(r"AC_INIT\(\[wsgate\], \[([^]]+)\]", ac).group(1)
    assert re.match(r"wsgate %s( |$)" % re.escape(version),
                    p.stdout.strip()), (p.stdout, p.stderr)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_with_handshake_in_progress(echo_gateway, sig):
    gw = echo_gateway
    c = gw.raw()
    try:
        c.send(b"GET /echo HTTP/1.1\r\nHost: local")     # half a request
        time.sleep(0.2)
        gw.proc.send_signal(sig)
        try:
            rc = gw.proc.wait(8)
        except subprocess.TimeoutExpired:
            pytest.fail("wsgate did not exit with a handshake in progress")
        assert rc == 0
        assert c.wait_closed(3)
    finally:
        c.close()


def test_sighup_and_sigusr1_during_startup_do_not_kill(factory, tmp_path):
    """A reload or a log reopen that comes while the daemon is still
    loading its configuration (systemctl reload, logrotate's SIGUSR1 as it
    restarts) must not kill it: it is done once the daemon serves.  The
    tls_ticket_secret is a FIFO, so the daemon waits inside its
    configuration load until the test has sent the signals."""
    import os
    import threading
    from conftest import echo_works, wait_for

    secret = tmp_path / "ticket.key"
    real = tmp_path / "ticket.key.real"
    real.write_bytes(b"s" * 48)
    os.chmod(real, 0o600)
    os.mkfifo(secret, 0o600)
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"tls_ticket_secret": str(secret)},
                         start=False)
    sent = []

    def feed():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                fd = os.open(secret, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                time.sleep(0.01)
        else:
            return
        try:
            # The daemon is now opening or reading the FIFO.
            gw.proc.send_signal(signal.SIGHUP)
            gw.proc.send_signal(signal.SIGUSR1)
            sent.append(True)
            time.sleep(0.2)
            os.write(fd, real.read_bytes())
            os.rename(real, secret)         # what a reload reads
        finally:
            os.close(fd)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    gw.start(timeout=15)
    t.join(15)
    assert sent
    echo_works(gw)
    wait_for(lambda: "reload done" in gw.error_text() and
             "log files reopened" in gw.error_text(), timeout=5,
             what="the reload and the reopen asked for during startup")
    echo_works(gw)
    gw.stop()
    assert gw.proc.returncode == 0


def time_wait_on(port):
    """Whether a TCP connection on local port `port` is in TIME_WAIT."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and \
                        cols[3] == "06":
                    return True
    return False


def test_a_restart_binds_a_port_its_last_connections_left_in_time_wait(
        factory):
    """The gateway closes a refused connection first, which leaves it in
    TIME_WAIT on the listening port for a minute: a restart right after
    (systemctl restart) must bind that port again, not call it in use."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, tls=False)
    resp, _ = gw.raw_request("/no-such-route")
    assert resp.status == 404, resp
    assert time_wait_on(gw.port), "no TIME_WAIT left on the listening port"
    assert gw.stop() == 0
    gw.start()
    assert gw.alive()
    resp, _ = gw.raw_request("/no-such-route")
    assert resp.status == 404, resp
    assert "in use" not in gw.error_text()
