"""`rate_limit_store`: connections_per_ip and concurrent_per_ip counted in a
real Debian redis-server shared by two wsgate processes (issue 4).

The Redis server is started by the test on a free loopback port, without
persistence, and killed by PID; it can be restarted on the same port.
Redis down: on_failure deny refuses with 503 store_unavailable, allow
admits, local counts in the process; Redis back: sharing resumes.  A
gateway killed with SIGKILL stops counting once its leases expire.
"""

import copy
import shutil
import signal
import socket
import subprocess
import time

import pytest

import rawclient
import wsproto
from conftest import (free_port, http_refusal, http_upgrade, metric,
                      policy, stop_process, tail, wait_for)

B = rawclient.build_request
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
LEASE_TTL = 5.0


class RedisServer:
    """redis-server on 127.0.0.1:<port>, no RDB, no AOF."""

    def __init__(self, tmp, port=None):
        from conftest import free_port
        self.tmp = tmp
        self.port = port or free_port()
        self.proc = None
        self.log = tmp / ("redis-%d.log" % self.port)
        self.starts = 0

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self, timeout=10.0):
        self.starts += 1
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--save", "", "--appendonly",
             "no", "--bind", "127.0.0.1", "--dir", str(self.tmp)],
            stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail("redis-server exited with %s:\n%s" %
                            (self.proc.returncode, tail(self.log, 40)))
            if self.ping():
                return self
            if time.monotonic() > deadline:
                pytest.fail("redis-server did not answer on port %d:\n%s" %
                            (self.port, tail(self.log, 40)))
            time.sleep(0.05)

    def command(self, *args, timeout=2.0):
        """One RESP command; the raw reply bytes (None when unreachable)."""
        req = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            req += b"$%d\r\n%s\r\n" % (len(a), a)
        try:
            with socket.create_connection(("127.0.0.1", self.port),
                                          timeout=timeout) as s:
                s.sendall(req)
                return s.recv(65536)
        except OSError:
            return None

    def ping(self):
        return self.command("PING", timeout=0.5) == b"+PONG\r\n"

    def kill(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)
            self._out.close()
            self.proc = None

    def restart(self):
        self.kill()
        return self.start()


@pytest.fixture
def redis(tmp_path):
    r = RedisServer(tmp_path).start()
    yield r
    r.kill()


def store_gateway(factory, redis, pol, on_failure="local", admin=False,
                  url=None):
    up = factory.raw_upstream()
    gw = factory.gateway(
        routes=[("/r", "rec", "shared")],
        upstreams={"rec": [up.addr]},
        policies={"shared": policy(rate_limit=pol)},
        top={"rate_limit_store": {"redis": url or redis.url,
                                  "on_failure": on_failure,
                                  "lease_ttl": "%ds" % LEASE_TTL}},
        admin=admin)
    gw.up = up
    # The store connects in the background: wait until it says so.
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to Redis")
    return gw


def echo_ok(c, payload=b"hello"):
    c.send_frame(wsproto.OP_TEXT, payload)
    f = c.read_frame(5)
    assert f is not None and f.payload == payload, f


def opened(gw, held):
    c, _ = http_upgrade(gw, B("/r"))
    held.append(c)
    echo_ok(c)
    return c


def open_one_each(*gws):
    """Each gateway in turn lets one WebSocket through and echoes on it;
    all of them are closed after, also when a later one fails."""
    held = []
    try:
        for gw in gws:
            opened(gw, held)
    finally:
        for c in held:
            c.close()


def close_ws(c):
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
    try:
        c.read_close(5)
    finally:
        c.close()


def try_upgrade(gw):
    """One handshake: (status, client or None, response)."""
    c = gw.raw()
    c.send(B("/r"))
    head = c.read_until(b"\r\n\r\n", 5)
    resp = rawclient.HTTPResponse(head[:-4], b"")
    if resp.status == 101:
        return 101, c, resp
    c.close()
    return resp.status, None, resp


def count(gw, text):
    return gw.error_text().count(text)


# -- sharing -----------------------------------------------------------------

def test_two_gateways_share_concurrent_per_ip(factory, redis):
    a = store_gateway(factory, redis, {"concurrent_per_ip": 3})
    b = store_gateway(factory, redis, {"concurrent_per_ip": 3})
    held = []
    try:
        opened(a, held)
        a2 = opened(a, held)
        opened(b, held)
        resp, _ = http_refusal(b, B("/r"), 429, "rate_concurrent")
        assert resp.one("Retry-After") == "1", resp
        http_refusal(a, B("/r"), 429, "rate_concurrent")
        assert len(b.up.connections()) == 1
        for c in held:
            echo_ok(c, b"still open")
        # One closed on A frees a slot for B.
        close_ws(a2)
        held.remove(a2)
        deadline = time.monotonic() + 5
        while True:
            st, c, resp = try_upgrade(b)
            if st == 101:
                held.append(c)
                break
            assert st == 429, resp
            assert time.monotonic() < deadline, \
                "B still refused after A closed one: %r" % resp
            time.sleep(0.1)
        http_refusal(a, B("/r"), 429, "rate_concurrent")
    finally:
        for c in held:
            c.close()


def test_same_rate_written_with_another_period_shares_the_tokens(factory,
                                                                  redis):
    # A fleet half way through a rollout writes one limit two ways: a
    # client that spent one of its two tokens on A still has the other
    # on B, rather than being refused for a minute's worth of tokens.
    a = store_gateway(factory, redis, {"connections_per_ip": {
        "rate": "60/m", "burst": 2}})
    b = store_gateway(factory, redis, {"connections_per_ip": {
        "rate": "1/s", "burst": 2}})
    open_one_each(a, b)


def test_a_bucket_written_without_its_period_keeps_its_tokens(factory,
                                                             redis):
    # A bucket an older gateway of the fleet wrote (debt and time, no
    # period) was written under the same rate: the one of two tokens it
    # spent leaves the other, not a debt scaled a thousandfold.
    gw = store_gateway(factory, redis, {"connections_per_ip": {
        "rate": "1/s", "burst": 2}})
    t = redis.command("TIME").split(b"\r\n")
    now = int(t[2]) * 1000 + int(t[4]) // 1000
    assert redis.command("HSET", "wsgate:conn:shared:127.0.0.1", "debt",
                         1000, "last", now) == b":2\r\n"
    open_one_each(gw)


def test_the_last_token_of_the_burst_is_there_exactly(factory, redis):
    # Redis' clock stepped back (a failover to a replica behind it): the
    # bucket's last spend is in its future, so nothing refills and one of
    # the two tokens is owed exactly.  The other is still there, and only
    # then is the client refused.  Without the step back, refills between
    # handshakes hide an off-by-one at the burst's edge.
    gw = store_gateway(factory, redis, {"connections_per_ip": {
        "rate": "1/m", "burst": 2}})
    t = redis.command("TIME").split(b"\r\n")
    now = int(t[2]) * 1000 + int(t[4]) // 1000
    assert redis.command("HSET", "wsgate:conn:shared:127.0.0.1", "debt",
                         60000, "last", now + 600000, "per", 60000) == \
        b":3\r\n"
    st, c, resp = try_upgrade(gw)
    assert st == 101, resp
    c.close()
    http_refusal(gw, B("/r"), 429, "rate_connections")


def test_a_spent_bucket_refills_at_its_rate_not_faster(factory, redis):
    # Both tokens of a 1/m bucket were spent 30 s ago (by Redis' clock):
    # half a token is back, not one, so the client is refused, and told
    # to come back within 30 s, not 60.
    gw = store_gateway(factory, redis, {"connections_per_ip": {
        "rate": "1/m", "burst": 2}})
    t = redis.command("TIME").split(b"\r\n")
    now = int(t[2]) * 1000 + int(t[4]) // 1000
    assert redis.command("HSET", "wsgate:conn:shared:127.0.0.1", "debt",
                         120000, "last", now - 30000, "per", 60000) == \
        b":3\r\n"
    resp, _ = http_refusal(gw, B("/r"), 429, "rate_connections")
    assert 1 <= int(resp.one("Retry-After")) <= 30, resp


def test_a_spent_bucket_outlives_its_first_second(factory, redis):
    # The bucket's key expires only once its debt is paid: a 1/m client
    # that spent its one token is still refused well after a second.
    gw = store_gateway(factory, redis, {"connections_per_ip": {
        "rate": "1/m", "burst": 1}})
    st, c, resp = try_upgrade(gw)
    assert st == 101, resp
    c.close()
    http_refusal(gw, B("/r"), 429, "rate_connections")
    time.sleep(1.5)
    http_refusal(gw, B("/r"), 429, "rate_connections")


def test_two_gateways_share_connections_per_ip(factory, redis):
    pol = {"connections_per_ip": {"rate": "2/m", "burst": 3}}
    a = store_gateway(factory, redis, pol)
    b = store_gateway(factory, redis, pol)
    held = []
    try:
        opened(a, held)
        opened(a, held)
        opened(b, held)
        resp, _ = http_refusal(b, B("/r"), 429, "rate_connections")
        ra = int(resp.one("Retry-After"))
        assert 20 <= ra <= 31, resp     # 2/m: a token every 30 s
        resp, _ = http_refusal(a, B("/r"), 429, "rate_connections")
        assert 20 <= int(resp.one("Retry-After")) <= 31, resp
        for c in held:
            echo_ok(c, b"untouched")
    finally:
        for c in held:
            c.close()


# -- Redis goes away, and comes back -------------------------------------------

@pytest.mark.parametrize("mode", ["deny", "allow", "local"])
def test_redis_outage_on_failure_and_recovery(factory, redis, mode):
    a = store_gateway(factory, redis, {"concurrent_per_ip": 2}, mode,
                      admin=True)
    b = store_gateway(factory, redis, {"concurrent_per_ip": 2}, mode)
    held = []
    try:
        opened(a, held)
        opened(b, held)
        http_refusal(b, B("/r"), 429, "rate_concurrent")

        redis.kill()
        for gw in (a, b):
            wait_for(lambda: count(gw, "is unavailable") >= 1, 5,
                     what="the store-down log line")
        outage = []
        if mode == "deny":
            before = metric(a.metrics(), "wsgate_rejections_total",
                            reason="store_unavailable")
            for gw in (a, b, b):
                resp, _ = http_refusal(gw, B("/r"), 503, "store_unavailable")
            assert len(a.up.connections()) == 1
            assert len(b.up.connections()) == 1
            wait_for(lambda: metric(a.metrics(), "wsgate_rejections_total",
                                    reason="store_unavailable") == before + 1,
                     3, what="wsgate_rejections_total{store_unavailable}")
        elif mode == "allow":
            # Beyond the combined limit of 2 (and beyond a local 2 too).
            for gw in (a, a, b, b):
                outage.append(opened(gw, held))
        else:
            # In-process limits: B's table is empty (its open connection
            # was counted in Redis), so it admits 2 more, then refuses.
            outage.append(opened(b, held))
            outage.append(opened(b, held))
            http_refusal(b, B("/r"), 429, "rate_concurrent")
        for c in held:
            echo_ok(c, b"open through the outage")
        time.sleep(1.0)         # a few reconnect attempts fail meanwhile
        for c in outage:
            close_ws(c)
            held.remove(c)

        redis.start()
        for gw in (a, b):
            wait_for(lambda: count(gw, "rate_limit_store: connected") >= 2,
                     10, what="the reconnection to Redis")
            # Each transition logged once, however many attempts failed.
            assert count(gw, "is unavailable") == 1, tail(gw.error_log, 60)
            assert count(gw, "rate_limit_store: connected") == 2, \
                tail(gw.error_log, 60)
        # Sharing resumes: the combined limit of 2 holds again.
        for c in held:
            close_ws(c)
        held.clear()
        time.sleep(0.3)
        opened(a, held)
        opened(b, held)
        http_refusal(b, B("/r"), 429, "rate_concurrent")
        http_refusal(a, B("/r"), 429, "rate_concurrent")
    finally:
        for c in held:
            c.close()


def test_leases_of_open_connections_come_back_after_redis_restart(
        factory, redis):
    """Redis restarted empty: the live gateways renew their leases, so
    connections that stayed open count again within lease_ttl / 3."""
    a = store_gateway(factory, redis, {"concurrent_per_ip": 2}, "deny")
    b = store_gateway(factory, redis, {"concurrent_per_ip": 2}, "deny")
    held = []
    try:
        opened(a, held)
        opened(b, held)
        redis.restart()
        for gw in (a, b):
            wait_for(lambda: count(gw, "rate_limit_store: connected") >= 2,
                     10, what="the reconnection to Redis")
        # Within a renewal period (lease_ttl / 3, generously bounded) both
        # open connections are counted again.
        deadline = time.monotonic() + LEASE_TTL
        while True:
            st, c, resp = try_upgrade(b)
            if st == 429:
                break
            if c is not None:
                close_ws(c)
            assert time.monotonic() < deadline, \
                "open connections not counted after the restart: %r" % resp
            time.sleep(0.3)
        for c in held:
            echo_ok(c, b"survived the restart")
    finally:
        for c in held:
            c.close()


# -- a crashed gateway's leases expire ---------------------------------------------

def test_sigkilled_gateway_stops_counting_after_lease_ttl(factory, redis):
    a = store_gateway(factory, redis, {"concurrent_per_ip": 2})
    b = store_gateway(factory, redis, {"concurrent_per_ip": 2})
    held = []
    try:
        opened(a, held)
        opened(a, held)
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        http_refusal(b, B("/r"), 429, "rate_concurrent")
        deadline = killed + 12
        while True:
            st, c, resp = try_upgrade(b)
            if st == 101:
                held.append(c)
                break
            assert st == 429 and resp.one("Retry-After") == "1", resp
            assert time.monotonic() < deadline, \
                "the killed gateway's leases still count after 12 s"
            time.sleep(0.25)
        waited = time.monotonic() - killed
        # A lease is renewed every lease_ttl / 3, so it outlives its
        # gateway by at least 2/3 of lease_ttl (a loose lower bound).
        assert waited >= LEASE_TTL * 2 / 3 - 1.0, waited
        echo_ok(held[-1])
        opened(b, held)
        http_refusal(b, B("/r"), 429, "rate_concurrent")
        # B's own leases are renewed: still counted after lease_ttl.
        time.sleep(LEASE_TTL + 1.5)
        http_refusal(b, B("/r"), 429, "rate_concurrent")
        for c in held[-2:]:
            echo_ok(c, b"B's sessions live on")
    finally:
        for c in held:
            c.close()


def test_renewed_leases_keep_a_healthy_store_up(factory, redis):
    """Open connections' leases are renewed every lease_ttl / 3 and Redis
    answers each renewal: the store stays up however many periods pass
    (a renewal taken for unanswered would drop the connection every
    other period, and say so each time)."""
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 2}, "deny",
                       admin=True)
    held = []
    try:
        opened(gw, held)
        opened(gw, held)
        time.sleep(LEASE_TTL + 1.0)     # three renewal periods
        http_refusal(gw, B("/r"), 429, "rate_concurrent")
        assert count(gw, "is unavailable") == 0, tail(gw.error_log, 30)
        m = gw.metrics()
        assert metric(m, "wsgate_store_transitions_total", to="down") == 0
        assert metric(m, "wsgate_store_transitions_total", to="up") == 1
        for c in held:
            echo_ok(c, b"still open")
    finally:
        for c in held:
            c.close()


# -- exact across gateways ----------------------------------------------------------

def test_racing_gateways_never_both_take_the_last_slot(factory, redis):
    import threading
    a = store_gateway(factory, redis, {"concurrent_per_ip": 4})
    b = store_gateway(factory, redis, {"concurrent_per_ip": 4})
    clients = [g.raw() for g in (a, b) for _ in range(12)]
    for c in clients:
        c.sock.do_handshake()
    go = threading.Barrier(len(clients))
    statuses = [None] * len(clients)

    def one(i):
        try:
            go.wait(10)
            clients[i].send(B("/r"))
            head = clients[i].read_until(b"\r\n\r\n", 10)
            statuses[i] = rawclient.HTTPResponse(head[:-4], b"").status
        except Exception as e:
            statuses[i] = repr(e)
    ts = [threading.Thread(target=one, args=(i,))
          for i in range(len(clients))]
    try:
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        assert sorted(statuses, key=str) == [101] * 4 + [429] * 20, statuses
    finally:
        for c in clients:
            c.close()


def test_reload_dropping_the_store_while_redis_is_down(factory):
    """A reload removes rate_limit_store while Redis is unreachable.  The
    worker keeps its store until a restart, as the log says, but new
    sessions run on the new configuration, which has no on_failure: they
    are counted locally, and the daemon stays up."""
    up = factory.raw_upstream()
    dead = "redis://127.0.0.1:%d/0" % free_port()     # nothing listens
    gw = factory.gateway(
        routes=[("/r", "rec", "shared")],
        upstreams={"rec": [up.addr]},
        policies={"shared": policy(rate_limit={"concurrent_per_ip": 1})},
        top={"rate_limit_store": {"redis": dead, "on_failure": "allow"}})
    wait_for(lambda: "is unavailable" in gw.error_text(), 10,
             what="the store to be down")
    st, c, resp = try_upgrade(gw)
    assert st == 101, resp
    c.close()
    cfg = copy.deepcopy(gw.config)
    del cfg["rate_limit_store"]
    gw.write_config(cfg)
    gw.reload()
    held = []
    try:
        st, c, resp = try_upgrade(gw)
        assert gw.alive(), tail(gw.stderr_path, 30)
        assert st == 101, resp
        held.append(c)
        # counted in the local table: the second concurrent one is refused
        st, c, resp = try_upgrade(gw)
        if c is not None:
            held.append(c)
        assert st == 429, resp
    finally:
        for c in held:
            c.close()
    assert gw.alive(), tail(gw.stderr_path, 30)


def test_leases_keep_counting_after_script_flush(factory, redis):
    """Redis loses its script cache while connected (SCRIPT FLUSH).
    Admissions fall back to EVAL; lease refreshes must too, or the leases
    of open connections expire after lease_ttl and stop counting."""
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 1}, "deny")
    held = []
    try:
        opened(gw, held)
        st, c, resp = try_upgrade(gw)
        assert st == 429, resp
        assert redis.command("SCRIPT", "FLUSH") == b"+OK\r\n"
        time.sleep(LEASE_TTL + 2.0)
        echo_ok(held[0], b"still open")
        st, c, resp = try_upgrade(gw)
        if c is not None:
            held.append(c)
        assert st == 429, \
            "a second connection got in while the first is open: %r" % resp
    finally:
        for c in held:
            c.close()


def test_a_redis_that_stops_answering_is_dropped_without_admissions(
        factory, redis):
    """Redis stops reading and answering (here: SIGSTOP) while no new
    connection comes to be admitted, so no request timer runs.  The lease
    refreshes of a whole period go unanswered: the gateway drops the
    connection instead of queueing refreshes without end, and connects
    again once Redis is back."""
    import os
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 4})
    held = []
    try:
        opened(gw, held)
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: "no reply to lease refreshes" in
                     gw.error_text(), 3 * LEASE_TTL,
                     what="the store dropped for unanswered refreshes")
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        wait_for(lambda: gw.error_text().count(
            "rate_limit_store: connected") >= 2, 20,
            what="the store connected again")
        echo_ok(held[0], b"still open")
        assert gw.alive()
    finally:
        for c in held:
            c.close()


def test_a_stalled_redis_is_noticed_when_every_client_gives_up_first(
        factory, redis):
    """Redis stops answering (SIGSTOP) and every client that asks for a
    connection leaves before the store's reply timeout.  The requests they
    leave behind still wait on Redis: their timeout must still drop the
    connection (and free them), not let requests pile up in the gateway
    while it goes on reporting Redis as available."""
    import os
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 10}, "deny",
                       admin=True)
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(5):
            c = gw.raw()
            c.send(B("/r"))
            time.sleep(0.05)
            c.close()
        wait_for(lambda: metric(gw.metrics(),
                                "wsgate_store_transitions_total",
                                to="down") == 1, 5,
                 what="the store reported down")
        assert count(gw, "is unavailable (no reply in time)") == 1, \
            tail(gw.error_log, 30)
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    wait_for(lambda: count(gw, "rate_limit_store: connected") >= 2, 10,
             what="the store connected again")
    open_one_each(gw)


def upgrade_soon(gw, tries=10):
    """A 101 within a few tries (Redis may take a turn to see a ZREM);
    far less than LEASE_TTL, after which a stale lease would expire."""
    for _ in range(tries):
        st, c, resp = try_upgrade(gw)
        if st == 101:
            return c
        assert st == 429, resp
        time.sleep(0.1)
    raise AssertionError("still refused: %r" % resp)


def lease_given_back(gw):
    """Once the store is connected again, the address holds one lease: a
    new connection is admitted, and a second is 429 rate_concurrent."""
    wait_for(lambda: count(gw, "rate_limit_store: connected") >= 2, 10,
             what="the store connected again")
    c = upgrade_soon(gw)
    try:
        echo_ok(c)
        http_refusal(gw, B("/r"), 429, "rate_concurrent")
    finally:
        c.close()


def test_a_lease_granted_after_its_admission_was_given_up_is_removed(
        factory, redis):
    """Redis stalls (SIGSTOP) past the reply timeout: the handshake goes on
    without it (on_failure allow), and the connection to Redis is dropped.
    When Redis resumes it still runs the admission it had received and
    grants a lease nobody holds; once connected again the gateway removes
    it, so that the address is not refused for lease_ttl."""
    import os
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 1}, "allow")
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        st, c, resp = try_upgrade(gw)
        assert st == 101, resp
        close_ws(c)
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    lease_given_back(gw)


def test_a_lease_granted_after_a_503_is_removed(factory, redis):
    """on_failure deny: Redis stalls (SIGSTOP) past the reply timeout, the
    handshake is refused with 503, and the connection to Redis dropped.
    Resumed, Redis still runs the admission and grants a lease that no
    connection holds (none was admitted, so none adopts it): once
    connected again the gateway removes it."""
    import os
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 1}, "deny")
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        http_refusal(gw, B("/r"), 503, "store_unavailable")
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    lease_given_back(gw)


def test_a_connection_closed_while_redis_is_away_gives_its_lease_back(
        factory, redis):
    """An open connection holds a lease; Redis stops answering (CLIENT
    PAUSE), the store is dropped, and the connection closes meanwhile.
    Its lease is removed once the store is connected again, not left to
    count until lease_ttl."""
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 1}, "deny")
    held = []
    a = opened(gw, held)
    assert redis.command("CLIENT", "PAUSE", "1500", "ALL") == b"+OK\r\n"
    http_refusal(gw, B("/r"), 503, "store_unavailable")
    assert count(gw, "is unavailable (no reply in time)") == 1
    close_ws(a)
    held.remove(a)
    lease_given_back(gw)


@pytest.mark.parametrize("key,value,db", [
    ("key_prefix", "other:", 3),
    ("lease_ttl", "7s", 0),
    ("redis", "unix:///nonexistent", 0),
    # the host, the port, the database: each one is another store
    ("redis", "redis://127.0.0.2:{port}/0", 0),
    ("redis", "redis://127.0.0.1:{other}/0", 0),
    ("redis", "redis://127.0.0.1:{port}/1", 0),
])
def test_reload_changing_the_store_says_it_needs_a_restart(
        factory, redis, key, value, db):
    """A reload keeps each worker's store as it was made; a changed key
    (not just a changed address) is logged as needing a restart, and the
    store goes on as before.  wsgate_config_restart_pending says so
    until a reload back to the store that runs."""
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 1}, "deny",
                       admin=True,
                       url="redis://127.0.0.1:%d/%d" % (redis.port, db))
    pending = "wsgate_config_restart_pending"
    first = copy.deepcopy(gw.config)
    cfg = copy.deepcopy(first)
    cfg["rate_limit_store"][key] = value.format(port=redis.port,
                                                other=redis.port + 1)
    gw.write_config(cfg)
    gw.reload()
    assert count(gw, "a new rate_limit_store needs a restart") == 1, \
        tail(gw.error_log, 20)
    assert metric(gw.metrics(), pending) == 1
    held = []
    try:
        opened(gw, held)
        http_refusal(gw, B("/r"), 429, "rate_concurrent")
    finally:
        for c in held:
            c.close()
    # on_failure alone changes without a warning (the warning compares
    # with the store the process started with).
    # Nor does the same store written another way: the address is
    # compared, not the URL's text.
    cfg = copy.deepcopy(first)
    cfg["rate_limit_store"]["on_failure"] = "allow"
    cfg["rate_limit_store"]["redis"] = "redis://127.0.0.1:%d%s" % (
        redis.port, "/%d" % db if db else "")
    gw.write_config(cfg)
    gw.reload()
    assert count(gw, "a new rate_limit_store needs a restart") == 1, \
        tail(gw.error_log, 20)
    assert metric(gw.metrics(), pending) == 0


@pytest.mark.parametrize("mode", ["local", "allow"])
def test_connections_admitted_during_an_outage_count_once_redis_is_back(
        factory, redis, mode):
    """Connections admitted while Redis is down (on_failure local or
    allow) are still open when it comes back.  They must count against
    concurrent_per_ip from then on, as the leases of the others do, or
    an address keeps them on top of a full limit counted afresh."""
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 2}, mode)
    held = []
    try:
        redis.kill()
        wait_for(lambda: count(gw, "is unavailable") >= 1, 5,
                 what="the store-down log line")
        opened(gw, held)
        opened(gw, held)
        redis.start()
        wait_for(lambda: count(gw, "rate_limit_store: connected") >= 2, 10,
                 what="the reconnection to Redis")
        st, c, resp = try_upgrade(gw)
        if c is not None:
            held.append(c)
        assert st == 429, \
            "a third connection got in beside two open ones: %r" % resp
        for c in held[:2]:
            echo_ok(c, b"open through the outage")
        # Closing one gives its slot back.
        close_ws(held.pop(0))
        c = upgrade_soon(gw)
        held.append(c)
        http_refusal(gw, B("/r"), 429, "rate_concurrent")
    finally:
        for c in held:
            c.close()


@pytest.mark.parametrize("mode", ["allow", "local"])
def test_handshakes_waiting_together_on_a_stalled_redis(factory, redis,
                                                        mode):
    """Two handshakes wait on Redis together when it stalls (SIGSTOP).
    The first one's reply timeout drops the connection to Redis, which
    ends the other one too: on_failure admits both, the second one's
    lease waits for the next connection (it was sent on the connection
    just dropped, and the worker crashed), and once Redis is back both
    count against concurrent_per_ip."""
    import os
    gw = store_gateway(factory, redis, {"concurrent_per_ip": 2}, mode)
    clients = [gw.raw() for _ in range(2)]
    for c in clients:
        c.sock.do_handshake()
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        for c in clients:
            c.send(B("/r"))
        for c in clients:
            head = c.read_until(b"\r\n\r\n", 5)
            assert head.startswith(b"HTTP/1.1 101"), head
        assert gw.alive(), tail(gw.stderr_path, 30)
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    try:
        wait_for(lambda: count(gw, "rate_limit_store: connected") >= 2, 10,
                 what="the store connected again")
        for c in clients:
            echo_ok(c, b"admitted through the stall")
        http_refusal(gw, B("/r"), 429, "rate_concurrent")
    finally:
        for c in clients:
            c.close()
    assert gw.alive(), tail(gw.stderr_path, 30)


def test_reload_to_another_unix_socket_needs_a_restart(factory, tmp_path):
    """Two unix:// stores differ by their path alone: a reload to
    another one says it needs a restart; the same path written with
    ?db=0 is the same store.  (No Redis is needed for either.)"""
    sock = tmp_path / "a.sock"
    gw = factory.gateway(routes=[("/r", "rec")],
                         upstreams={"rec": ["127.0.0.1:9"]},
                         top={"rate_limit_store": {
                             "redis": "unix://%s" % sock,
                             "on_failure": "allow"}})
    warning = "a new rate_limit_store needs a restart"
    cfg = copy.deepcopy(gw.config)
    cfg["rate_limit_store"]["redis"] = "unix://%s?db=0" % sock
    gw.write_config(cfg)
    gw.reload()
    assert count(gw, warning) == 0, tail(gw.error_log, 20)
    cfg["rate_limit_store"]["redis"] = "unix://%s" % (tmp_path / "b.sock")
    gw.write_config(cfg)
    gw.reload()
    assert count(gw, warning) == 1, tail(gw.error_log, 20)
