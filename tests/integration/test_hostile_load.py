"""Hostile load on loopback (issue 7): slowloris with Debian's slowhttptest
and a crowd of half-open TLS handshakes, each while 16 legitimate clients
keep echoing; and the memory a crowd of silent connections holds.

The legitimate clients reconnect every few round trips, so both new
handshakes and open sessions are exercised under load.  The tests assert
outcomes only: every legitimate client succeeds, the attackers' connections
end with handshake_timeout and never reach the upstream.  Throughput
against an unloaded run is printed, never asserted.
"""

import asyncio
import collections
import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

import rawclient
import rawup
from conftest import (echo_works, fd_count, rss_bytes, run,
                      wait_fds_at_most, wait_for)

LEGIT = 16
ROUNDS_PER_SESSION = 20


class LegitLoad:
    """LEGIT asyncio clients in a thread, each echoing in sessions of
    ROUNDS_PER_SESSION round trips until stopped.  Counts round trips,
    sessions and errors; records each session's local port."""

    def __init__(self, gw, n=LEGIT):
        self.gw = gw
        self.n = n
        self.rounds = [0] * n
        self.sessions = [0] * n
        self.errors = []
        self.ports = set()
        self.stop = threading.Event()
        self.thread = None

    async def client(self, i):
        seq = 0
        while not self.stop.is_set():
            try:
                async with self.gw.connect("/echo", open_timeout=5) as ws:
                    self.ports.add(ws.local_address[1])
                    for _ in range(ROUNDS_PER_SESSION):
                        if self.stop.is_set():
                            break
                        msg = "legit %d #%d" % (i, seq)
                        seq += 1
                        await ws.send(msg)
                        got = await asyncio.wait_for(ws.recv(), 5)
                        if got != msg:
                            raise AssertionError("echo %r for %r" % (got, msg))
                        self.rounds[i] += 1
                self.sessions[i] += 1
            except Exception as e:          # counted, asserted by the test
                self.errors.append("client %d: %r" % (i, e))
                await asyncio.sleep(0.1)

    async def main(self, seconds):
        tasks = [asyncio.ensure_future(self.client(i))
                 for i in range(self.n)]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop.is_set():
            await asyncio.sleep(0.05)
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)

    def start(self, seconds):
        self.thread = threading.Thread(
            target=lambda: run(self.main(seconds), seconds + 20),
            daemon=True)
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def join(self):
        self.thread.join(40)
        assert not self.thread.is_alive(), "legitimate clients hung"
        self.elapsed = time.monotonic() - self.t0
        return self

    def rate(self):
        return sum(self.rounds) / self.elapsed

    def check(self, what):
        assert not self.errors, "%d legitimate client failures %s: %s" % (
            len(self.errors), what, self.errors[:5])
        assert all(r > 0 for r in self.rounds), \
            "a legitimate client made no round trip %s: %r" % (
                what, self.rounds)
        assert all(s > 0 for s in self.sessions), \
            "a legitimate client finished no session %s: %r" % (
                what, self.sessions)


def log_lines(gw):
    """Every complete access-log line, the readiness probe's included:
    with thousands of connections client ports are reused, so these tests
    tell connections apart by their id, not their port."""
    try:
        text = gw.access_log.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [json.loads(l) for l in text.split("\n")[:-1] if l.strip()]


def last_id(gw):
    return max([e["id"] for e in log_lines(gw)] or [0])


def legit_run(gw, seconds):
    return LegitLoad(gw).start(seconds).join()


@pytest.fixture
def load_gw(factory, request):
    tls = request.param
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, tls=tls,
                         listener={"handshake_timeout": "2s"})
    gw.backend = be
    echo_works(gw)
    gw.wait_entries(1)
    gw.base_fds = fd_count(gw.pid)
    return gw


# -- slowloris ----------------------------------------------------------------

class Slowloris:
    """slowhttptest -H in a thread, run after run for about `seconds`
    (at most `max_runs` runs): 200 connections opened at 200/s, each
    sending a 10-byte header line every second.  The gateway cuts them at
    handshake_timeout, which ends a run, so runs are repeated to keep
    about 200 slow connections open through the window."""

    def __init__(self, tool, port, out_dir, seconds=10.0, max_runs=6):
        self.cmd = [tool, "-H", "-c", "200", "-r", "200", "-i", "1",
                    "-x", "10", "-l", "10", "-p", "3", "-t", "GET",
                    "-u", "http://127.0.0.1:%d/echo" % port]
        self.out_dir = out_dir
        self.seconds = seconds
        self.max_runs = max_runs
        self.results = []           # (rc, output tail)
        self.proc = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        end = time.monotonic() + self.seconds
        while len(self.results) < self.max_runs and \
                time.monotonic() < end and not self.halt.is_set():
            path = self.out_dir / ("slowhttptest-%d.out" % len(self.results))
            with open(path, "wb") as out:
                self.proc = subprocess.Popen(
                    self.cmd, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL)
                try:
                    rc = self.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    rc = self.proc.wait(5)
            self.results.append((rc, path.read_text(errors="replace")))

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.thread.join(40)
        if self.thread.is_alive():      # never expected: bounded above
            self.halt.set()
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            self.thread.join(10)
        assert not self.thread.is_alive(), "slowhttptest runs did not end"


@pytest.mark.parametrize("load_gw", [False], indirect=True, ids=["plain"])
def test_slowloris_does_not_starve_legitimate_clients(load_gw, tmp_path):
    gw = load_gw
    tool = shutil.which("slowhttptest")
    assert tool, "slowhttptest is not installed (contrib/install-deps.sh)"
    base = legit_run(gw, 3)
    base.check("without load")
    opens_before = len(gw.backend.events("open"))
    wait_for(lambda: len([e for e in log_lines(gw) if e["status"] == 101])
             >= sum(base.sessions) + 1, 5, what="the unloaded run's lines")
    before = last_id(gw)
    attack = Slowloris(tool, gw.port, tmp_path, seconds=10).start()
    try:
        time.sleep(1.0)                     # let the attack ramp up
        loaded = legit_run(gw, 8)
    finally:
        attack.join()
    runs = len(attack.results)
    print("slowhttptest: %d runs of 200 connections; last run ends:\n%s" % (
        runs, "\n".join(attack.results[-1][1].splitlines()[-4:])))
    print("legitimate clients: unloaded %.0f round trips/s (%d in %.1fs), "
          "under slowloris %.0f round trips/s (%d in %.1fs, %d sessions)" % (
              base.rate(), sum(base.rounds), base.elapsed, loaded.rate(),
              sum(loaded.rounds), loaded.elapsed, sum(loaded.sessions)))
    for rc, text in attack.results:
        assert rc == 0, "slowhttptest failed (%s):\n%s" % (rc, text[-2000:])
    assert runs >= 2, "the attack did not last: %d run(s)" % runs
    loaded.check("under slowloris")
    assert gw.alive()
    # Every upgraded session was a legitimate one; every other connection
    # (200 slow ones per run, plus slowhttptest's probe, a complete plain
    # GET) was cut by the handshake timeout or refused, never upgraded.

    def during():
        return [e for e in log_lines(gw) if e["id"] > before]

    def attackers():
        return collections.Counter(e["reason"] for e in during()
                                   if e["status"] != 101)
    wait_for(lambda: attackers()["handshake_timeout"] >= 200 * runs and
             len([e for e in during() if e["status"] == 101]) >=
             sum(loaded.sessions), 10,
             what="%d slow connections in the access log" % (200 * runs))
    reasons = attackers()
    print("attack connections by access-log reason: %r" % dict(reasons))
    assert set(reasons) <= {"handshake_timeout", "bad_request"}, reasons
    assert reasons["handshake_timeout"] == 200 * runs, reasons
    upgraded = [e for e in during() if e["status"] == 101]
    assert len(upgraded) == sum(loaded.sessions), \
        "%d sessions upgraded, %d legitimate" % (len(upgraded),
                                                 sum(loaded.sessions))
    # only the legitimate sessions reached the upstream
    opens = len(gw.backend.events("open")) - opens_before
    assert opens == sum(loaded.sessions), \
        "upstream got %d sessions for %d legitimate ones" % (
            opens, sum(loaded.sessions))
    wait_fds_at_most(gw, gw.base_fds + 2)
    echo_works(gw)


# -- half-open TLS handshakes -------------------------------------------------

@pytest.mark.parametrize("load_gw", [True], indirect=True, ids=["tls"])
def test_half_open_tls_handshakes_do_not_starve_legitimate_clients(load_gw):
    gw = load_gw
    base = legit_run(gw, 2)
    base.check("without load")
    opens_before = len(gw.backend.events("open"))
    wait_for(lambda: len([e for e in log_lines(gw) if e["status"] == 101])
             >= sum(base.sessions) + 1, 5, what="the unloaded run's lines")
    before = last_id(gw)
    n = 200
    socks = []
    t0 = time.monotonic()
    load = LegitLoad(gw)
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", gw.port),
                                                  timeout=2))
        load.start(3)                   # the closes are watched meanwhile
        for s in socks:
            s.setblocking(False)
        closed = {}
        deadline = time.monotonic() + 8
        while len(closed) < n and time.monotonic() < deadline:
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                try:
                    got = s.recv(4096)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    got = b""
                assert not got, "gateway sent %r to a silent client" % got
                closed[i] = time.monotonic() - t0
            time.sleep(0.02)
        load.join()
    finally:
        load.stop.set()
        for s in socks:
            s.close()
    print("legitimate clients: unloaded %.0f round trips/s, with %d half-open"
          " TLS handshakes %.0f round trips/s (%d sessions)" % (
              base.rate(), n, load.rate(), sum(load.sessions)))
    load.check("with %d half-open TLS handshakes" % n)
    assert len(closed) == n, "%d half-open handshakes still open after " \
        "%.0fs" % (n - len(closed), time.monotonic() - t0)
    times = sorted(closed.values())
    print("half-open handshakes closed after %.2f .. %.2f s" % (
        times[0], times[-1]))
    # handshake_timeout is 2s: none cut early, none kept much longer
    assert times[0] >= 1.8 and times[-1] <= 6.0, (times[0], times[-1])
    def others():
        return collections.Counter(e["reason"] for e in log_lines(gw)
                                   if e["id"] > before and
                                   e["status"] != 101)
    wait_for(lambda: sum(others().values()) >= n, 10,
             what="access-log lines of the half-open handshakes")
    assert others() == {"handshake_timeout": n}, others()
    opens = len(gw.backend.events("open")) - opens_before
    assert opens == sum(load.sessions), (opens, sum(load.sessions))
    assert gw.alive()
    wait_fds_at_most(gw, gw.base_fds + 2)
    echo_works(gw)


# -- silent connections -------------------------------------------------------

@pytest.mark.parametrize("proxy", [False, True], ids=["direct", "proxy"])
def test_silent_tls_connections_hold_no_tls_state(factory, proxy):
    """A TCP connection to a TLS listener that sends nothing costs the
    gateway its session, not a TLS handshake's buffers: OpenSSL's state
    for a handshake it has started is about 50 KiB, fifteen times what a
    silent plaintext connection costs, and such connections cost their
    client nothing.  They are still closed at handshake_timeout, and a
    client that waits a while before its ClientHello is served.  Behind
    proxy_protocol the same holds after the PROXY header: a load balancer
    sends it as it connects, the client's ClientHello when that comes."""
    hdr = b"PROXY TCP4 192.0.2.1 192.0.2.2 40000 443\r\n" if proxy else b""
    be = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, tls=True,
                         listener={"handshake_timeout": "10s",
                                   "proxy_protocol": proxy})

    def silent():
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=2)
        if hdr:
            s.sendall(hdr)
        return s

    def upgrade(delay):
        """A client whose ClientHello comes delay seconds late gets its
        101."""
        s = silent()
        time.sleep(delay)
        tls = gw.ssl.wrap_socket(s, server_hostname="localhost")
        try:
            tls.settimeout(5)
            tls.sendall(rawclient.build_request("/echo"))
            head = b""
            while b"\r\n\r\n" not in head:
                got = tls.recv(4096)
                assert got, "EOF before the 101: %r" % head
                head += got
            assert head.startswith(b"HTTP/1.1 101 "), head
        finally:
            tls.close()

    upgrade(0)
    socks = []
    try:
        # The first connections grow the heap whatever they hold.
        for _ in range(50):
            socks.append(silent())
        wait_for(lambda: fd_count(gw.pid) >= 50, 5,
                 what="50 silent connections accepted")
        time.sleep(0.5)
        base, fds = rss_bytes(gw.pid), fd_count(gw.pid)
        n = 200
        for _ in range(n):
            socks.append(silent())
        wait_for(lambda: fd_count(gw.pid) >= fds + n, 5,
                 what="%d more silent connections accepted" % n)
        time.sleep(0.5)
        per = (rss_bytes(gw.pid) - base) / n
        print("%d silent TLS connections: %.1f KiB of RSS each" % (
            n, per / 1024))
        assert per < 16 * 1024, \
            "%.1f KiB per silent connection" % (per / 1024)
        # One that speaks late is served all the same.
        upgrade(0.5)
        upgrade(0)
        # Gone before a byte, all at once: their EOFs make no TLS state
        # either (the sessions linger a while, without it).
        for s in socks:
            s.close()
        wait_fds_at_most(gw, fds - 50 + 2, timeout=10)
        per = (rss_bytes(gw.pid) - base) / len(socks)
        assert per < 8 * 1024, \
            "%.1f KiB per connection closed before a byte" % (per / 1024)
    finally:
        for s in socks:
            s.close()
    assert len(be.connections()) == 3, "a silent connection reached upstream"
    assert gw.error_text().count(
        "TLS handshake failed: closed before sending anything") >= len(socks)
