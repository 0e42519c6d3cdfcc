"""Upstream failover: a server that drops connection attempts costs one
try, not the whole connect_timeout, as does one that accepts and then hangs
up or stays silent without answering; a server that failed is passed over
for fail_timeout, then tried again."""

import asyncio
import socket

import pytest

import rawup
import wsproto
from conftest import metric, run, wait_for

# A quote in the group's name: label values must come out escaped.
GROUP = 'edge"pool'


def closed_port():
    """A port that refuses: bound, then closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SynDropper:
    """A listener whose accept queue is full, so that further SYNs go
    unanswered: a server that neither accepts nor refuses."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(0)
        self.port = self.ls.getsockname()[1]
        self.fillers = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(f)

    def close(self):
        for f in self.fillers:
            f.close()
        self.ls.close()


async def echo_once(gw, text):
    """One session: (what came back, the client's port)."""
    async with gw.connect("/echo", open_timeout=15) as ws:
        await ws.send(text)
        got = await asyncio.wait_for(ws.recv(), 10)
        return got, ws.local_address[1]


def server_up(gw, addr):
    return metric(gw.metrics(), "wsgate_upstream_server_up",
                  upstream=GROUP, server=addr)


def test_server_dropping_syns_costs_one_try(factory):
    dropper = SynDropper()
    try:
        be = factory.echo(name="b")
        dead = "127.0.0.1:%d" % dropper.port
        # round robin starts at the first server: the dropper
        gw = factory.gateway(
            routes=[("/echo", GROUP)], admin=True,
            upstreams={GROUP: {"servers": [dead, be.addr],
                               "connect_timeout": "6s",
                               "fail_timeout": "1h"}})
        gw.settle_probes()
        for i in range(4):
            got, port = run(echo_once(gw, "m%d" % i))
            assert got == "b:m%d" % i, got
            e = gw.wait_entry(client_port=port)
            assert (e["status"], e["upstream"]) == (101, GROUP), e
        m = gw.metrics()
        # one failed try, the first session's; the others passed it over
        assert metric(m, "wsgate_upstream_connect_failures_total",
                      upstream=GROUP) == 1, m
        assert metric(m, "wsgate_upstream_server_up", upstream=GROUP,
                      server=dead) == 0, m
        assert metric(m, "wsgate_upstream_server_up", upstream=GROUP,
                      server=be.addr) == 1, m
        log = gw.error_text()
        assert "server %s: connect failed: Connection timed out" % dead \
            in log, log
        assert log.count("server %s: down, skipped for 3600000 ms"
                         % dead) == 1, log
    finally:
        dropper.close()


def refused_then_b(factory, fail_timeout):
    """A group of a closed port and echo backend "b", after one upgrade
    that the closed port refused and b served: (gateway, port, address)."""
    port = closed_port()
    addr = "127.0.0.1:%d" % port
    be = factory.echo(name="b")
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [addr, be.addr],
                           "fail_timeout": fail_timeout}})
    gw.settle_probes()
    got, _ = run(echo_once(gw, "one"))          # refused, then b
    assert got == "b:one", got
    return gw, port, addr


def test_failed_server_is_passed_over(factory):
    gw, port, addr = refused_then_b(factory, "1h")
    assert server_up(gw, addr) == 0
    # the server listens again, but stays passed over until fail_timeout
    back = factory.raw_upstream(rawup.ws_echo, port=port)
    for i in range(4):
        got, _ = run(echo_once(gw, "x%d" % i))
        assert got == "b:x%d" % i, got
    assert back.conns == [], back.conns
    assert metric(gw.metrics(), "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == 1


def test_failed_server_is_tried_again_after_fail_timeout(factory):
    gw, port, addr = refused_then_b(factory, "1s")
    back = factory.raw_upstream(rawup.ws_echo, port=port)
    wait_for(lambda: server_up(gw, addr) == 1, 10,
             what="the server's fail_timeout to end")
    answers = [run(echo_once(gw, "y%d" % i))[0] for i in range(4)]
    # round robin over both again; the raw echo answers without a name
    assert sorted(a for a in answers if not a.startswith("b:")) != [], \
        answers
    assert len(back.conns) >= 1, answers
    log = gw.error_text()
    assert "server %s: down, skipped for 1000 ms" % addr in log, log
    assert "server %s: up again" % addr in log, log


@pytest.mark.parametrize("balance", ["round_robin", "least_conn"])
def test_fail_timeout_zero_never_passes_a_server_over(factory, balance):
    # With least_conn, a failed try is no open session of its server:
    # counted as one, the refusing server would lose its later turns.
    addr = "127.0.0.1:%d" % closed_port()
    be = factory.echo(name="b")
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [addr, be.addr],
                           "balance": balance, "fail_timeout": 0}})
    gw.settle_probes()
    for i in range(4):
        got, _ = run(echo_once(gw, "z%d" % i))
        assert got == "b:z%d" % i, got
    m = gw.metrics()
    # its turns tried the refusing server first for two of the four
    assert metric(m, "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == 2, m
    assert metric(m, "wsgate_upstream_server_up", upstream=GROUP,
                  server=addr) == 1, m
    assert "down, skipped" not in gw.error_text()


def test_every_server_down_is_still_tried(factory):
    port = closed_port()
    addr = "127.0.0.1:%d" % port
    other = "127.0.0.1:%d" % closed_port()
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [addr, other],
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    resp, e, _ = gw.raw_upgrade()
    assert (resp.status, e["reason"]) == (502, "upstream_unavailable"), e
    assert server_up(gw, addr) == 0 and server_up(gw, other) == 0
    # both are down; the first is tried anyway, and is back at once
    factory.raw_upstream(rawup.ws_echo, port=port)
    got, p = run(echo_once(gw, "again"))
    assert got == "again", got
    assert gw.wait_entry(client_port=p)["status"] == 101
    assert server_up(gw, addr) == 1
    assert "server %s: up again" % addr in gw.error_text()


def test_timeout_on_the_last_server_marks_it_down(factory):
    dropper = SynDropper()
    try:
        dead = "127.0.0.1:%d" % dropper.port
        gw = factory.gateway(
            routes=[("/echo", GROUP)], admin=True,
            upstreams={GROUP: {"servers": [dead],
                               "connect_timeout": "1s"}})
        gw.settle_probes()
        resp, e, _ = gw.raw_upgrade()
        assert resp.status == 504, resp
        assert (e["status"], e["reason"]) == (504, "upstream_unavailable"), e
        assert server_up(gw, dead) == 0
        assert "server %s: down, skipped for 10000 ms" % dead \
            in gw.error_text()
    finally:
        dropper.close()


def test_round_robin_shares_a_passed_over_server_turn_evenly(factory):
    # With one of three servers passed over, the other two take turns: the
    # down server's turn is not handed to the one after it every time.
    addr = "127.0.0.1:%d" % closed_port()
    b, c = factory.echo(name="b"), factory.echo(name="c")
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [addr, b.addr, c.addr],
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    # the closed port is tried first, fails, and is passed over from now on
    got, _ = run(echo_once(gw, "first"))
    assert got == "b:first", got
    assert server_up(gw, addr) == 0
    tags = [run(echo_once(gw, "m%d" % i))[0].split(":")[0]
            for i in range(6)]
    assert tags.count("b") == 3 and tags.count("c") == 3, tags
    assert all(tags[i] != tags[i + 1] for i in range(5)), tags


def test_least_conn_ties_share_a_passed_over_server_turn_evenly(factory):
    # Sessions one after the other tie at no open session: ties go round
    # robin, and a server passed over does not hand its turn to the next.
    addr = "127.0.0.1:%d" % closed_port()
    b, c = factory.echo(name="b"), factory.echo(name="c")
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [addr, b.addr, c.addr],
                           "balance": "least_conn", "fail_timeout": "1h"}})
    gw.settle_probes()
    got, _ = run(echo_once(gw, "first"))
    assert got == "b:first", got
    assert server_up(gw, addr) == 0
    tags = []
    for i in range(6):
        got, port = run(echo_once(gw, "m%d" % i))
        gw.wait_entry(client_port=port)     # closed: counts no more
        tags.append(got.split(":")[0])
    assert tags.count("b") == 3 and tags.count("c") == 3, tags


def silent_first(n=1):
    """A behaviour that reads the request and stays silent on its first n
    connections (a backend whose kernel accepts while it is stuck), then
    is a correct echo server."""
    state = {"n": 0}

    def behavior(c):
        state["n"] += 1
        if state["n"] <= n:
            rawup.silent(c)
        else:
            rawup.ws_echo(c)
    return behavior


def test_server_accepting_and_staying_silent_costs_one_try(factory):
    # The first server accepts, reads the request and never answers: past
    # its share of connect_timeout (half of it, with two servers) the same
    # request goes to the second, and the first is passed over for
    # fail_timeout, as if it had refused.
    hung = factory.raw_upstream(rawup.silent)
    be = factory.echo(name="b")
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [hung.addr, be.addr],
                           "connect_timeout": "6s",
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    for i in range(4):
        got, port = run(echo_once(gw, "m%d" % i))
        assert got == "b:m%d" % i, got
        e = gw.wait_entry(client_port=port)
        assert (e["status"], e["reason"], e["upstream"],
                e["upstream_server"]) == (101, "client_closed", GROUP,
                                          be.addr), e
    # the first session's try only, which got the whole request
    (uc,) = hung.connections()
    assert uc.data.startswith(b"GET /echo HTTP/1.1\r\n"), bytes(uc.data)
    m = gw.metrics()
    assert metric(m, "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == 1, m
    assert server_up(gw, hung.addr) == 0 and server_up(gw, be.addr) == 1
    log = gw.error_text()
    assert log.count("server %s: accepted, but no answer within"
                     % hung.addr) == 1, log
    assert log.count("server %s: down, skipped for 3600000 ms"
                     % hung.addr) == 1, log
    assert (metric(m, "wsgate_rejections_total",
                   reason="upstream_unavailable") or 0) == 0, m


def test_silent_server_past_connect_timeout_is_passed_over(factory):
    # Alone in its group, the server has all of connect_timeout: the client
    # gets 504, and the server is passed over for fail_timeout as one that
    # never accepted is.  With no other server the next client tries it
    # all the same, and its answer has it back at once.
    up = factory.raw_upstream(silent_first())
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [up.addr],
                           "connect_timeout": "1s",
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    resp, e, _ = gw.raw_upgrade()
    assert (resp.status, e["reason"]) == (504, "upstream_unavailable"), e
    assert e["upstream_server"] == up.addr, e
    m = gw.metrics()
    assert metric(m, "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == 1, m
    assert metric(m, "wsgate_rejections_total",
                  reason="upstream_unavailable") == 1, m
    assert server_up(gw, up.addr) == 0
    log = gw.error_text()
    assert "refused: upstream_unavailable: upstream %s server %s: no " \
        "answer within connect_timeout" % (GROUP, up.addr) in log, log
    assert log.count("server %s: down, skipped for 3600000 ms"
                     % up.addr) == 1, log
    got, p = run(echo_once(gw, "next"))
    assert got == "next", got
    assert gw.wait_entry(client_port=p)["status"] == 101
    assert server_up(gw, up.addr) == 1
    assert "server %s: up again" % up.addr in gw.error_text()


def test_every_server_passed_over_after_silence_is_still_tried(factory):
    # The first server refuses, the second accepts and stays silent until
    # connect_timeout runs out: 504, and both are passed over.  Then the
    # first listens again.  The next client tries them all the same, the
    # silent one first (its round-robin turn) for its share only, then the
    # first, which answers and is back; later clients go to it at once.
    port = closed_port()
    first = "127.0.0.1:%d" % port
    hung = factory.raw_upstream(rawup.silent)
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [first, hung.addr],
                           "connect_timeout": "4s",
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    resp, e, _ = gw.raw_upgrade()
    assert (resp.status, e["reason"]) == (504, "upstream_unavailable"), e
    assert e["upstream_server"] == hung.addr, e
    assert [server_up(gw, a) for a in (first, hung.addr)] == [0, 0]
    back = factory.raw_upstream(rawup.ws_echo, port=port)
    for i in range(4):
        got, p = run(echo_once(gw, "x%d" % i))
        assert got == "x%d" % i, got
        e = gw.wait_entry(client_port=p)
        assert (e["status"], e["upstream_server"]) == (101, first), e
    # one try for the 504, one for the second client; none after
    assert len(hung.connections()) == 2, hung.connections()
    assert len(back.connections()) == 4, back.connections()
    m = gw.metrics()
    assert metric(m, "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == 3, m
    assert [server_up(gw, a) for a in (first, hung.addr)] == [1, 0]
    log = gw.error_text()
    assert log.count("server %s: down, skipped" % hung.addr) == 1, log
    assert log.count("server %s: accepted, but no answer within"
                     % hung.addr) == 1, log
    assert "server %s: up again" % first in log, log


def test_slow_server_answering_within_its_share_is_untouched(factory):
    # A server that takes a while to answer, but less than its share of
    # connect_timeout, is not failed over nor passed over: it serves its
    # round-robin turns.
    slow = factory.raw_upstream(lambda c: rawup.ws_echo(c, delay=0.5))
    be = factory.echo(name="b")
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [slow.addr, be.addr],
                           "connect_timeout": "8s",
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    answers = [run(echo_once(gw, "s%d" % i))[0] for i in range(4)]
    assert answers == ["s0", "b:s1", "s2", "b:s3"], answers
    assert len(slow.connections()) == 2
    m = gw.metrics()
    assert (metric(m, "wsgate_upstream_connect_failures_total",
                   upstream=GROUP) or 0) == 0, m
    assert server_up(gw, slow.addr) == 1
    log = gw.error_text()
    assert "no answer within" not in log and "down, skipped" not in log, log


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 10", b"HTTP/1.1 100 Continue\r\n\r\n",
], ids=["half_status_line", "interim_only"])
def test_server_silent_after_part_of_an_answer_is_not_retried(
        factory, answer):
    # A byte of an answer, then silence: the server is not merely stuck
    # before answering, so neither its share nor a retry applies.  The
    # client waits for it until connect_timeout (504), no other server is
    # tried, and it is not passed over.
    def behavior(c):
        if c.read_head():
            c.send(answer)
            c.drain(30.0)
    first = factory.raw_upstream(behavior)
    other = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [first.addr, other.addr],
                           "connect_timeout": "2s",
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    resp, e, _ = gw.raw_upgrade()
    assert (resp.status, e["reason"]) == (504, "upstream_unavailable"), e
    assert e["upstream_server"] == first.addr, e
    assert other.connections() == []
    assert server_up(gw, first.addr) == 1
    assert metric(gw.metrics(), "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == 1
    log = gw.error_text()
    assert "no answer within" not in log and "down, skipped" not in log, log


def test_connect_share_is_no_write_timeout_after_the_101(factory):
    # With two servers, the first try gets half the connect_timeout to
    # connect.  That bound ends with the connection: a backend that then
    # stops reading for longer (the client sending a lot meanwhile) gets
    # every byte once it reads again.
    frame, frames = b"z" * 65536, 160

    def behavior(c):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        if not c.read_head():
            return
        c.accept_101()
        c.up.stopping.wait(2.5)             # past the 1s connect share
        got = 0
        while True:
            f = c.read_frame(10)
            if f is None:
                return
            if f.opcode == wsproto.OP_TEXT:
                c.send(wsproto.encode_frame(
                    wsproto.OP_TEXT, b"%d" % got, mask=False))
                c.drain(5)
                return
            got += len(f.payload)
    a, b = factory.raw_upstream(behavior), factory.raw_upstream(behavior)
    gw = factory.gateway(
        routes=[("/echo", GROUP)], tls=False,
        upstreams={GROUP: {"servers": [a.addr, b.addr],
                           "connect_timeout": "2s"}})
    c = gw.raw()
    try:
        c.upgrade("/echo")
        for _ in range(frames):
            c.send_frame(wsproto.OP_BINARY, frame, mask=True)
        c.send_frame(wsproto.OP_TEXT, b"end", mask=True)
        f = c.read_frame(20)
        assert f is not None and f.payload == b"%d" % (len(frame) * frames), f
    finally:
        c.close()


def test_connect_failing_at_once_is_one_try(factory):
    # A multicast address fails connect(2) at once (ENETUNREACH), inside
    # bufferevent_socket_connect(): each server is one failed try, counted
    # and logged once, and the connection one access-log line.
    up = factory.raw_upstream(rawup.ws_echo)
    bad = ["224.0.0.1:80", "224.0.0.2:80"]
    gw = factory.gateway(
        routes=[("/echo", GROUP), ("/dead", "dead")], admin=True, tls=False,
        upstreams={GROUP: {"servers": bad + [up.addr], "fail_timeout": "1h"},
                   "dead": {"servers": ["224.0.0.3:80"]}})
    gw.settle_probes()
    c = gw.raw()
    c.upgrade("/echo")
    c.close()
    resp, e, _ = gw.raw_upgrade("/dead")
    assert (resp.status, e["reason"]) == (502, "upstream_unavailable"), e
    gw.wait_entry(client_port=c.local_port)
    m = gw.metrics()
    for name, n in ((GROUP, 2), ("dead", 1)):
        assert metric(m, "wsgate_upstream_connect_failures_total",
                      upstream=name) == n, m
    assert [server_up(gw, a) for a in bad] == [0, 0]
    assert len(up.connections()) == 1
    log = gw.error_text()
    for a in bad + ["224.0.0.3:80"]:
        assert log.count("server %s: connect failed: Network is "
                         "unreachable" % a) == 1, log
    ids = [x["id"] for x in gw.entries()]
    assert len(ids) == len(set(ids)) == 2, gw.entries()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "reset"])
def test_server_closing_before_answering_costs_one_try(factory, reset):
    # The first server accepts, reads the request and hangs up without a
    # byte of answer (a backend crashing or restarting): the client is
    # upgraded by the second all the same, within the same deadline, and
    # the first is passed over for fail_timeout as if it had refused.
    gone = factory.raw_upstream(rawup.hang_up(reset))
    be = factory.echo(name="b")
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [gone.addr, be.addr],
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    for i in range(4):
        got, port = run(echo_once(gw, "m%d" % i))
        assert got == "b:m%d" % i, got
        e = gw.wait_entry(client_port=port)
        assert (e["status"], e["upstream_server"]) == (101, be.addr), e
    # the first session's try only; the next three passed it over
    assert len(gone.connections()) == 1, gone.connections()
    assert gone.connections()[0].request_line.startswith("GET /echo ")
    m = gw.metrics()
    assert metric(m, "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == 1, m
    assert server_up(gw, gone.addr) == 0 and server_up(gw, be.addr) == 1
    log = gw.error_text()
    line = "server %s: closed before its 101 without answering" % gone.addr
    assert log.count(line) == 1, log
    if reset:
        assert line + ": Connection reset by peer" in log, log
    assert log.count("server %s: down, skipped for 3600000 ms"
                     % gone.addr) == 1, log


@pytest.mark.parametrize("n", [1, 2])
def test_every_server_closing_before_answering_is_502(factory, n):
    # With no server left to try, the client is refused as today: 502
    # upstream_unavailable, one failure counted for each server tried.
    gone = [factory.raw_upstream(rawup.hang_up()) for _ in range(n)]
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [g.addr for g in gone],
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    resp, e, _ = gw.raw_upgrade()
    assert (resp.status, e["reason"]) == (502, "upstream_unavailable"), e
    assert b"upstream_unavailable" in resp.body, resp
    assert [len(g.connections()) for g in gone] == [1] * n
    assert metric(gw.metrics(), "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == n
    assert [server_up(gw, g.addr) for g in gone] == [0] * n
    assert "refused: upstream_unavailable: upstream %s closed before its " \
        "101" % e["upstream_server"] in gw.error_text()


def test_last_server_refusing_after_one_that_accepted_is_logged_so(factory):
    # The first server accepts and hangs up, the last refuses: the 502's
    # log line must not say that no server accepted the connection.
    gone = factory.raw_upstream(rawup.hang_up())
    shut = "127.0.0.1:%d" % closed_port()
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [gone.addr, shut],
                           "balance": "round_robin", "fail_timeout": "1h"}})
    gw.settle_probes()
    resp, e, _ = gw.raw_upgrade()
    assert (resp.status, e["reason"]) == (502, "upstream_unavailable"), e
    assert len(gone.connections()) == 1
    text = wait_for(lambda: "refused: upstream_unavailable" in
                    gw.error_text() and gw.error_text(), 5,
                    what="the 502's log line")
    assert "server %s: closed before its 101" % gone.addr in text, text
    assert "server %s: connect failed" % shut in text, text
    assert "refused: upstream_unavailable: upstream %s: no server left to " \
        "try" % GROUP in text, text
    assert "accepted the connection" not in text, text


@pytest.mark.parametrize("answer,reason", [
    (b"HTTP/1.1 10", "upstream_bad_handshake"),
    (b"HTTP/1.1 100 Continue\r\n\r\n", "upstream_unavailable"),
], ids=["half_status_line", "interim_only"])
def test_server_closing_after_part_of_an_answer_is_not_retried(
        factory, answer, reason):
    # A server that said something before closing was not merely gone:
    # the client gets its refusal as before, and no other server is tried
    # nor this one passed over.
    def behavior(c):
        if c.read_head():
            c.send(answer)
    first = factory.raw_upstream(behavior)
    other = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [first.addr, other.addr],
                           "fail_timeout": "1h"}})
    gw.settle_probes()
    resp, e, _ = gw.raw_upgrade()
    assert (resp.status, e["reason"]) == (502, reason), e
    assert e["upstream_server"] == first.addr, e
    assert other.connections() == []
    assert server_up(gw, first.addr) == 1
    # no answer but interim ones is still a failed connection: each
    # upstream_unavailable line has one counted (wsgate(8))
    assert metric(gw.metrics(), "wsgate_upstream_connect_failures_total",
                  upstream=GROUP) == (1 if reason == "upstream_unavailable"
                                      else 0)
    assert "refused: %s: upstream %s closed before its 101" \
        % (reason, first.addr) in gw.error_text()


def test_down_server_that_accepts_and_hangs_up_stays_down(factory):
    # Every server is down, so the first is tried all the same; accepting
    # the connection is not being back: it hangs up again, and stays down
    # without an "up again" and a second "down" in the log.
    gone = factory.raw_upstream(rawup.hang_up())
    gw = factory.gateway(
        routes=[("/echo", GROUP)], admin=True,
        upstreams={GROUP: {"servers": [gone.addr], "fail_timeout": "1h"}})
    gw.settle_probes()
    for _ in range(2):
        resp, e, _ = gw.raw_upgrade()
        assert (resp.status, e["reason"]) == (502, "upstream_unavailable"), e
    assert len(gone.connections()) == 2
    assert server_up(gw, gone.addr) == 0
    log = gw.error_text()
    assert "server %s: up again" % gone.addr not in log, log
    assert log.count("server %s: down, skipped" % gone.addr) == 1, log
