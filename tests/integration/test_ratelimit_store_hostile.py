"""`rate_limit_store` against a Redis that misbehaves in ways a real
redis-server does not: a small RESP server in a thread of the test, on a
free loopback port, that answers each command as the test says (an extra
reply nobody asked for, garbage, a reply cut short).  Whatever it sends,
the gateway stays up, says in its error log what happened (once, not once
per handshake) and on_failure decides the handshakes meanwhile.
"""

import socket
import threading
import time

import pytest

from conftest import http_refusal, metric, policy, tail, wait_for
from test_ratelimit_store import B, count, redis, try_upgrade  # noqa: F401

SHA = b"$40\r\n" + b"0" * 40 + b"\r\n"
ADMITTED = b"*2\r\n:0\r\n:0\r\n"
CLOSE = "close"     # an answer: close the connection instead


def commands(buf):
    """The complete RESP commands at the start of buf: (list, rest)."""
    out = []
    while buf.startswith(b"*"):
        end = buf.find(b"\r\n")
        if end < 0:
            break
        pos, args = end + 2, []
        for _ in range(int(buf[1:end])):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return out, buf
            n = int(buf[pos + 1:end])
            if len(buf) < end + 2 + n + 2:
                return out, buf
            args.append(buf[end + 2:end + 2 + n])
            pos = end + 2 + n + 2
        else:
            out.append(args)
            buf = buf[pos:]
            continue
        break
    return out, buf


def proper(args):
    """What Redis would answer to the gateway's commands."""
    name = args[0].upper()
    if name == b"SCRIPT":
        return SHA
    if name in (b"EVALSHA", b"EVAL"):
        return ADMITTED
    if name == b"ZREM":
        return b":1\r\n"
    return b"+OK\r\n"


class FakeRedis:
    """A RESP server: answer(args) gives the bytes sent back to a command
    (None: nothing; CLOSE: close the connection; a function: called with
    the socket, to write what it likes).  Bounded: a few
    connections, each read with a timeout, everything closed by stop()."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.conns = []
        self.seen = []
        self.done = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            c.settimeout(0.2)
        except OSError:         # stop() closed it before this thread ran
            return
        while not self.done:
            try:
                data = c.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            cmds, buf = commands(buf + data)
            for args in cmds:
                self.seen.append(args[0].upper())
                out = self.answer(args)
                if out == CLOSE:
                    c.close()
                    return
                if callable(out):
                    out(c)
                    continue
                if out:
                    try:
                        c.sendall(out)
                    except OSError:
                        return

    def drop(self):
        """Close the connections made so far (the gateway reconnects)."""
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.done = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def fake():
    made = []

    def make(answer):
        f = FakeRedis(answer)
        made.append(f)
        return f
    yield make
    for f in made:
        f.stop()


def fake_gateway(factory, store, on_failure, lease_ttl=None):
    up = factory.raw_upstream()
    rls = {"redis": store.url, "on_failure": on_failure}
    if lease_ttl is not None:
        rls["lease_ttl"] = lease_ttl
    gw = factory.gateway(
        routes=[("/r", "rec", "shared")],
        upstreams={"rec": [up.addr]},
        policies={"shared": policy(rate_limit={"concurrent_per_ip": 5})},
        top={"rate_limit_store": rls})
    return gw


# -- a reply to no command ---------------------------------------------------

@pytest.mark.parametrize("when", ["setup", "admission"])
def test_a_reply_to_no_command_does_not_bring_the_gateway_down(
        factory, fake, when):
    """The store answers a command twice (a proxy or another service on
    Redis' port).  hiredis asserts on a reply it has no command for; the
    gateway must drop that connection instead, say why, and go on."""
    def answer(args):
        out = proper(args)
        name = args[0].upper()
        if (when == "setup" and name == b"SCRIPT") or \
                (when == "admission" and name == b"EVALSHA"):
            out += b"+OK\r\n"
        return out
    store = fake(answer)
    gw = fake_gateway(factory, store, "deny")
    if when == "admission":
        wait_for(lambda: "rate_limit_store: connected" in gw.error_text(),
                 10, what="the gateway's connection to the store")
        st, c, resp = try_upgrade(gw)
        assert st == 101, resp
        c.close()
    wait_for(lambda: "a reply to no command" in gw.error_text() or
             not gw.alive(), 10, what="the extra reply to be noticed")
    assert gw.alive(), tail(gw.stderr_path, 20)
    for _ in range(3):
        st, c, resp = try_upgrade(gw)
        if c is not None:
            c.close()
        assert st in (101, 503), resp
        time.sleep(0.2)
    assert gw.alive(), tail(gw.stderr_path, 20)
    if when == "setup":
        # Never usable: every handshake meets on_failure deny.
        http_refusal(gw, B("/r"), 503, "store_unavailable")
    assert "is unavailable (it sent a reply to no command)" in \
        gw.error_text(), tail(gw.error_log, 30)


def test_an_error_sent_to_no_command_is_logged_as_redis_said(factory,
                                                             fake):
    """After the reply to an admission the store sends an error reply no
    command asked for (Redis sends one before it closes a connection it
    refuses).  hiredis drops the connection; the log gives the error's
    text, not just that a reply came to no command."""
    def answer(args):
        out = proper(args)
        if args[0].upper() == b"EVALSHA":
            out += b"-ERR closing this connection for a test\r\n"
        return out
    store = fake(answer)
    gw = fake_gateway(factory, store, "deny")
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    st, c, resp = try_upgrade(gw)
    assert st == 101, resp
    c.close()
    wait_for(lambda: "is unavailable" in gw.error_text(), 5,
             what="the store dropped")
    assert "is unavailable (ERR closing this connection for a test)" in \
        gw.error_text(), tail(gw.error_log, 30)
    assert gw.alive()


def test_a_store_that_never_answers_its_setup_is_given_up(factory, fake):
    """The store accepts the connection and never answers SCRIPT LOAD (a
    hung Redis, a port that swallows everything).  With no handshake to
    time out, the connect timeout still gives the connection up: the
    error log says the store is unavailable, once, and the gateway goes
    on trying."""
    store = fake(lambda args: None)
    gw = fake_gateway(factory, store, "deny")
    wait_for(lambda: "is unavailable (connect timed out)" in
             gw.error_text(), 10, what="the connect timeout")
    wait_for(lambda: len(store.conns) >= 2, 10, what="a new attempt")
    assert "rate_limit_store: connected" not in gw.error_text()
    http_refusal(gw, B("/r"), 503, "store_unavailable")
    assert count(gw, "is unavailable") == 1, tail(gw.error_log, 30)
    assert gw.alive()


def test_handshake_timeout_while_the_store_decides(factory, fake):
    """handshake_timeout bounds the whole handshake, the wait for the
    store's verdict included: a handshake_timeout shorter than the store's
    reply timeout ends a handshake the store has not decided yet as any
    other that ran out of time (the connection closed, no answer, reason
    handshake_timeout), not as an upstream that timed out: no upstream
    was asked, and none is blamed."""
    def answer(args):
        if args[0].upper() in (b"EVALSHA", b"EVAL"):
            return None
        return proper(args)
    store = fake(answer)
    up = factory.raw_upstream()
    gw = factory.gateway(
        routes=[("/r", "rec", "shared")],
        upstreams={"rec": [up.addr]},
        policies={"shared": policy(rate_limit={"concurrent_per_ip": 5})},
        listener={"handshake_timeout": "300ms"}, admin=True,
        top={"rate_limit_store": {"redis": store.url,
                                  "on_failure": "deny"}})
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    gw.settle_probes()
    before = metric(gw.metrics(), "wsgate_rejections_total",
                    reason="handshake_timeout")
    c = gw.raw()
    try:
        c.send(B("/r"))
        got = c.read_to_eof(5)
    finally:
        c.close()
    assert got == b"", got[:200]
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["status"]) == ("handshake_timeout", None), e
    assert up.connections() == [], up.connections()
    m = gw.metrics()
    assert metric(m, "wsgate_upstream_connect_failures_total",
                  upstream="rec") == 0, m
    assert metric(m, "wsgate_rejections_total",
                  reason="handshake_timeout") == before + 1, m


def test_a_distant_store_comes_back_while_handshakes_go_on(factory, fake):
    """A store 0.35 s away (each SCRIPT LOAD answered that late): setting
    up a connection takes 0.7 s, within the connect timeout, and each
    admission well under the reply timeout.  Once the connection went,
    every new one was given up at the reply timeout of a handshake that
    came meanwhile, so under steady traffic the store never came back and
    on_failure decided every handshake from then on."""
    def answer(args):
        if args[0].upper() == b"SCRIPT":
            time.sleep(0.35)
        return proper(args)
    store = fake(answer)
    gw = fake_gateway(factory, store, "local")
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    admitted = store.seen.count(b"EVALSHA")
    store.drop()
    wait_for(lambda: "is unavailable" in gw.error_text(), 5,
             what="the store gone")
    # A handshake every 0.1 s (on_failure local admits each one) until the
    # store is back, for at most 8 s: several connection attempts' worth.
    for _ in range(80):
        st, c, resp = try_upgrade(gw)
        assert st == 101, resp
        c.close()
        if count(gw, "rate_limit_store: connected") >= 2:
            break
        time.sleep(0.1)
    assert count(gw, "rate_limit_store: connected") >= 2, \
        [ln for ln in gw.error_text().splitlines() if "store" in ln]
    assert "no reply in time" not in gw.error_text(), tail(gw.error_log, 30)
    # and the store decides handshakes again
    st, c, resp = try_upgrade(gw)
    assert st == 101, resp
    c.close()
    wait_for(lambda: store.seen.count(b"EVALSHA") > admitted, 5,
             what="an admission asked of the store")
    assert gw.alive()


# -- a store that drops every connection -------------------------------------

def test_a_store_that_drops_each_connection_is_retried_with_backoff(
        factory, fake):
    """The store takes each connection, answers its setup, and closes it
    at the first admission (a proxy whose Redis is gone, a middlebox).
    Each such connection was counted a success that started the backoff
    afresh: a reconnect and two log lines per handshake, 10 a second
    without handshakes when it closes by itself, for as long as it
    lasts.  A connection that did not last keeps backing off."""
    def answer(args):
        if args[0].upper() in (b"EVALSHA", b"EVAL"):
            return CLOSE
        return proper(args)
    store = fake(answer)
    gw = fake_gateway(factory, store, "local")
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    held = []
    try:
        # A handshake every 0.1 s for 3 s: each one meets the store up if
        # it has connected again meanwhile, and brings it down.
        for _ in range(30):
            st, c, resp = try_upgrade(gw)
            assert st == 101, resp      # on_failure local, 5 allowed
            c.close()
            time.sleep(0.1)
        # Backing off from 100 ms and doubling, about 5 attempts fit in
        # 3 s; starting afresh each time, one per handshake.
        ups = count(gw, "rate_limit_store: connected")
        assert ups <= 10, "%d connections made in 3 s" % ups
        assert count(gw, "is unavailable") <= 10, tail(gw.error_log, 40)
    finally:
        for c in held:
            c.close()
    assert gw.alive()


# -- replies that are not what Redis would send ------------------------------

@pytest.mark.parametrize("reply,why", [
    (b"hello\r\n", "Protocol error"),
    (b"*2\r\n:0\r\n", "no reply in time"),
    (b"*2\r\n:7\r\n:0\r\n", "admission script failed: unexpected reply"),
    (b"*2\r\n:-1\r\n:0\r\n", "admission script failed: unexpected reply"),
    (b"*3\r\n:0\r\n:0\r\n:0\r\n",
     "admission script failed: unexpected reply"),
    (b":0\r\n", "admission script failed: unexpected reply"),
    (b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
     "admission script failed: OOM command not allowed"),
])
@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_a_wrong_admission_reply_meets_on_failure(factory, fake, reply, why,
                                                  mode):
    """An admission answered with garbage, half a reply, a reply of the
    wrong shape or with a code the script never returns, or an error: the
    store
    did not answer, so on_failure decides (deny: 503 store_unavailable,
    allow: 101), never a 429 made up from it; the error log says what
    was wrong, once however many handshakes meet it."""
    # Half a reply is a stall: nothing follows it on that connection, or
    # the reply to a command sent behind it (a lease given back) would
    # complete it, as no Redis would.
    stalled = set()

    def send(out):
        def write(c):
            if c in stalled:
                return
            if out == b"*2\r\n:0\r\n":
                stalled.add(c)
            try:
                c.sendall(out)
            except OSError:
                pass
        return write

    def answer(args):
        if args[0].upper() in (b"EVALSHA", b"EVAL"):
            return send(reply)
        return send(proper(args))
    store = fake(answer)
    gw = fake_gateway(factory, store, mode)
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    for _ in range(4):
        if mode == "deny":
            http_refusal(gw, B("/r"), 503, "store_unavailable")
        else:
            st, c, resp = try_upgrade(gw)
            assert st == 101, resp
            c.close()
    text = gw.error_text()
    assert why in text, tail(gw.error_log, 30)
    # A reply of the wrong shape leaves the connection up: said once.
    # Garbage or silence drops it: said once per connection, which the
    # backoff spaces out (4 handshakes meet at most 4 connections).
    most = 1 if "admission script failed" in why else 4
    assert text.count(why) <= most, tail(gw.error_log, 30)
    assert gw.alive()


# -- a real Redis that answers with errors -----------------------------------

def redis_gateway(factory, redis, on_failure):
    up = factory.raw_upstream()
    return factory.gateway(
        routes=[("/r", "rec", "shared")],
        upstreams={"rec": [up.addr]},
        policies={"shared": policy(rate_limit={"concurrent_per_ip": 5})},
        top={"rate_limit_store": {"redis": redis.url,
                                  "on_failure": on_failure}})


@pytest.mark.parametrize("case", ["requirepass", "maxclients"])
def test_redis_error_replies_meet_on_failure_and_are_logged_once(
        factory, redis, case):
    """Redis refuses the gateway's connection: a password is required
    (the URL cannot carry one), or its maxclients is reached.  Handshakes
    meet on_failure deny; the error log names Redis' error, once, however
    many handshakes and reconnects."""
    hold = None
    if case == "maxclients":
        hold = socket.create_connection(("127.0.0.1", redis.port), 2)
        assert redis.command("CONFIG", "SET", "maxclients", "1") == \
            b"+OK\r\n"
        gw = redis_gateway(factory, redis, "deny")
        why = "max number of clients reached"
    else:
        assert redis.command("CONFIG", "SET", "requirepass", "s3cret") == \
            b"+OK\r\n"
        gw = redis_gateway(factory, redis, "deny")
        why = "NOAUTH"
    try:
        for _ in range(4):
            http_refusal(gw, B("/r"), 503, "store_unavailable")
            time.sleep(0.3)
        wait_for(lambda: why in gw.error_text(), 10, what=why)
        text = gw.error_text()
        assert text.count(why) == 1, tail(gw.error_log, 30)
        assert text.count("is unavailable") <= 1, tail(gw.error_log, 30)
        assert gw.alive()
    finally:
        if hold is not None:
            hold.close()


def test_a_redis_error_is_logged_again_after_the_store_came_back(
        factory, fake):
    """A Redis error is logged once however many admissions meet it; the
    store going away and coming back starts afresh, so that the same
    error met again is said again."""
    def answer(args):
        if args[0].upper() in (b"EVALSHA", b"EVAL"):
            return b"-OOM command not allowed for a test\r\n"
        return proper(args)
    store = fake(answer)
    gw = fake_gateway(factory, store, "deny")
    why = "admission script failed: OOM command not allowed for a test"
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    for _ in range(2):
        http_refusal(gw, B("/r"), 503, "store_unavailable")
    assert count(gw, why) == 1, tail(gw.error_log, 30)
    store.drop()
    wait_for(lambda: count(gw, "rate_limit_store: connected") >= 2, 10,
             what="the store connected again")
    for _ in range(2):
        http_refusal(gw, B("/r"), 503, "store_unavailable")
    assert count(gw, why) == 2, tail(gw.error_log, 30)
    assert gw.alive()


# -- a stalled Redis ---------------------------------------------------------

@pytest.mark.parametrize("mode", ["local", "allow", "deny"])
def test_a_stalled_redis_holds_up_only_the_handshakes_it_decides(
        factory, redis, mode):
    """Redis stops (SIGSTOP) with a handshake waiting on it.  On the same
    worker, a route without rate limits upgrades and relays, and the
    admin listener's /healthz answers, while it waits; the waiting
    handshake is decided by on_failure once the reply timeout passes,
    and so is the next one (Redis still stopped, the connection to it
    being made again)."""
    import os
    import signal
    from test_ratelimit_store import echo_ok
    up = factory.raw_upstream()
    gw = factory.gateway(
        routes=[("/r", "rec", "shared"), ("/free", "rec")],
        upstreams={"rec": [up.addr]},
        policies={"shared": policy(rate_limit={"concurrent_per_ip": 5})},
        top={"rate_limit_store": {"redis": redis.url,
                                  "on_failure": mode}},
        admin=True)
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to Redis")
    want = 503 if mode == "deny" else 101
    held = []
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        waiting = gw.raw()
        held.append(waiting)
        waiting.send(B("/r"))
        c = gw.raw()
        held.append(c)
        c.send(B("/free"))
        head = c.read_until(b"\r\n\r\n", 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        echo_ok(c, b"not held up")
        status, body, _ = gw.admin("/healthz", timeout=5)
        assert status == 200, (status, body)
        head = waiting.read_until(b"\r\n\r\n", 5)
        assert head.startswith(b"HTTP/1.1 %d" % want), head
        for _ in range(2):
            st, c, resp = try_upgrade(gw)
            if c is not None:
                held.append(c)
            assert st == want, resp
        if mode == "deny":
            assert "refused: store_unavailable: " in gw.error_text()
        assert count(gw, "is unavailable") == 1, tail(gw.error_log, 30)
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
        for c in held:
            c.close()
    assert gw.alive()


# -- a reply too large for what was asked ------------------------------------

@pytest.mark.parametrize("reply", [
    b"*2147483647\r\n",
    b"*2\r\n*1000000000\r\n",
])
def test_a_huge_array_reply_is_refused_before_it_is_allocated(
        factory, fake, reply):
    """An admission answered with the header of an array of 2^31 - 1 (or
    10^9, nested) elements: hiredis would allocate room for them all at
    once (16 GiB), which fails, or takes all memory if it does not.  No
    reply the gateway asks for has more than 2 elements: the store drops
    the connection and on_failure decides."""
    def answer(args):
        if args[0].upper() in (b"EVALSHA", b"EVAL"):
            return reply
        return proper(args)
    store = fake(answer)
    gw = fake_gateway(factory, store, "deny")
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    http_refusal(gw, B("/r"), 503, "store_unavailable")
    wait_for(lambda: "is unavailable" in gw.error_text() or
             not gw.alive(), 5, what="the store dropped")
    assert gw.alive(), tail(gw.stderr_path, 20)
    assert "a reply larger than asked for" in gw.error_text(), \
        tail(gw.error_log, 20)



def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_an_endless_bulk_reply_is_not_buffered_without_bound(
        factory, fake):
    """An admission answered with the header of a 2 GB bulk string and
    then data as fast as loopback goes, for 1.5 s.  hiredis keeps all of
    it until the reply is complete: 380 MB in the half second before the
    reply timeout, and to a lease renewal (no timeout but the next
    renewal, lease_ttl / 3) without bound.  No reply the gateway asks
    for is larger than a few hundred bytes: past 64 KiB buffered, the
    store drops the connection."""
    chunk = b"x" * (1 << 20)

    def stream(c):
        c.sendall(b"$2000000000\r\n")
        end = time.monotonic() + 1.5
        try:
            while time.monotonic() < end:
                c.sendall(chunk)
        except OSError:
            pass

    def answer(args):
        if args[0].upper() in (b"EVALSHA", b"EVAL"):
            return stream
        return proper(args)
    store = fake(answer)
    gw = fake_gateway(factory, store, "deny")
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    base = rss_kib(gw.pid)
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_kib(gw.pid))
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        http_refusal(gw, B("/r"), 503, "store_unavailable")
        wait_for(lambda: "is unavailable" in gw.error_text(), 5,
                 what="the store dropped")
        time.sleep(0.5)
    finally:
        done.set()
        t.join(5)
    assert "is unavailable (it sent a reply larger than asked for)" in \
        gw.error_text(), tail(gw.error_log, 20)
    assert peak[0] - base < 64 * 1024, (base, peak[0])
    assert gw.alive()



def test_renewals_sent_on_reconnecting_get_a_whole_period(factory, fake):
    """On reconnecting, the gateway renews its leases at once, wherever
    that falls between two periodic renewals (lease_ttl / 3, here 2 s).
    Renewals unanswered when the next ones are due drop the connection;
    those sent on reconnecting must get a whole period too, not only
    what is left of the current one.  The store answers them in 1.8 s:
    slow, but within a period."""
    state = {"delay": False}

    def answer(args):
        if args[0].upper() == b"EVALSHA" and args[2] == b"1":   # renewal
            if state["delay"]:
                state["delay"] = False
                time.sleep(1.8)
            return b":1\r\n"
        return proper(args)
    store = fake(answer)
    gw = fake_gateway(factory, store, "local", lease_ttl="6s")
    wait_for(lambda: "rate_limit_store: connected" in gw.error_text(), 10,
             what="the gateway's connection to the store")
    st, c, resp = try_upgrade(gw)
    assert st == 101, resp
    try:
        for n in (2, 3):
            state["delay"] = True
            store.drop()
            wait_for(lambda: count(gw, "rate_limit_store: connected") >= n,
                     5, what="the store connected again")
            wait_for(lambda: not state["delay"], 5,
                     what="the renewal sent on reconnecting")
            time.sleep(2.5)     # the delayed answer, and a periodic renewal
            assert "no reply to lease refreshes" not in gw.error_text(), \
                tail(gw.error_log, 30)
    finally:
        c.close()
    assert gw.alive()


# -- a reload while connections hold leases ----------------------------------

def test_reload_dropping_the_store_keeps_and_then_gives_back_leases(
        factory, redis):
    """Gateway A holds an open connection's lease; a reload removes
    rate_limit_store from A's configuration.  The lease still counts on
    gateway B past lease_ttl (A's worker keeps renewing it until the
    connection closes), and is given back when the connection closes."""
    import copy
    from test_ratelimit_store import (LEASE_TTL, close_ws, opened,
                                      store_gateway, upgrade_soon)
    a = store_gateway(factory, redis, {"concurrent_per_ip": 1}, "deny")
    b = store_gateway(factory, redis, {"concurrent_per_ip": 1}, "deny")
    held = []
    try:
        c = opened(a, held)
        http_refusal(b, B("/r"), 429, "rate_concurrent")
        cfg = copy.deepcopy(a.config)
        del cfg["rate_limit_store"]
        a.write_config(cfg)
        a.reload()
        time.sleep(LEASE_TTL + 1.0)
        http_refusal(b, B("/r"), 429, "rate_concurrent")
        close_ws(c)
        held.remove(c)
        held.append(upgrade_soon(b))
        assert a.alive() and b.alive()
    finally:
        for c in held:
            c.close()
