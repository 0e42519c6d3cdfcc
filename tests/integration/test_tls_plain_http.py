"""Plaintext HTTP sent to a TLS listener (ws:// or http:// for a wss://
port, the usual mistake).

The gateway sees a request line (any method in capitals, a space, a
target) come where the first TLS record should be, or OpenSSL recognises
one (GET, POST, HEAD, PUT) or a proxy's CONNECT and sends no alert.  The
gateway then answers in plaintext, as nginx does: a whole 400 with
Connection: close and a body naming bad_request and saying that the port
wants wss:// or https://; no body for a HEAD.  The access log and
wsgate_rejections_total say bad_request, and the error log says what came.
Bytes that are not HTTP, a request line in lower case, or too few bytes
to tell by still get no answer (handshake_failed), and TLS
clients on the same listener are served as before.  Behind proxy_protocol
the answer comes the same way, and the log names the client the PROXY
header gave.
"""

import os
import socket
import time

import pytest

import rawclient
from conftest import (PreClient, echo_works, metric, needs_failalloc,
                      wait_for)

HINT = b"wss://"


@pytest.fixture
def gw(factory):
    be = factory.echo()
    g = factory.gateway(routes=[("/echo", "echo")],
                        upstreams={"echo": [be.addr]}, admin=True)
    g.backend = be
    return g


def rejected(gw, reason):
    return metric(gw.metrics(), "wsgate_rejections_total", reason=reason)


def error_lines(gw, conn_id):
    mark = "conn %d: " % conn_id
    return [ln for ln in gw.error_text().splitlines() if mark in ln]


def plain(gw, data, pause=None):
    """Send data in the clear on a new connection (the first byte alone
    first, with pause); the response head and body read to EOF, and the
    client."""
    c = PreClient(gw.port)
    try:
        if pause is not None:
            c.send(data[:1])
            time.sleep(pause)
            data = data[1:]
        c.send(data)
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    return resp, c


def assert_plain_400(resp, head_only=False):
    assert resp.status_line == "HTTP/1.1 400 Bad Request", resp
    assert [v.lower() for v in resp.header("Connection")] == ["close"], resp
    n = int(resp.one("Content-Length"))
    if head_only:
        assert resp.body == b"", resp
        return
    # the whole body, no more, no less: the reason and what to use instead
    assert len(resp.body) == n, resp
    assert resp.body.startswith(b"bad_request"), resp
    assert HINT in resp.body and b"https://" in resp.body, resp


REQUESTS = {
    "upgrade": rawclient.build_request("/echo"),
    "browser_get": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "post": b"POST /echo HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: 2\r\n\r\nhi",
    "put": b"PUT /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "connect": b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost\r\n\r\n",
}


# Methods OpenSSL does not know: the gateway tells them by the request line
# it sees come, before any TLS state is made.
OTHER_METHODS = {
    "options": b"OPTIONS /echo HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "options_star": b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "delete": b"DELETE /x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "patch": b"PATCH /x HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Length: 2\r\n\r\nhi",
    "trace": b"TRACE / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "propfind_absolute": b"PROPFIND http://localhost/x HTTP/1.1\r\n"
                         b"Host: localhost\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(REQUESTS) + sorted(OTHER_METHODS))
def test_plain_http_gets_a_plain_400(gw, case):
    data = REQUESTS.get(case) or OTHER_METHODS[case]
    before = rejected(gw, "bad_request")
    resp, c = plain(gw, data)
    assert_plain_400(resp)
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"], e["close_code"]) == \
        (400, "bad_request", None), e
    assert e["route"] is None and e["upstream"] is None, e
    # what the client sent counts, as for any refusal before the upgrade
    assert e["bytes_in"] == len(data), e
    wait_for(lambda: rejected(gw, "bad_request") == before + 1, 5,
             what="wsgate_rejections_total{reason=bad_request} counted")
    lines = error_lines(gw, e["id"])
    assert any("bad_request" in ln and "plaintext HTTP request" in ln and
               "TLS listener" in ln for ln in lines), lines
    assert gw.backend.events("open") == []
    # the listener still speaks TLS to those who do
    echo_works(gw)
    assert gw.alive()


@pytest.mark.parametrize("pause", [None, 0.3], ids=["whole", "split"])
def test_plain_head_gets_no_body(gw, pause):
    """The answer to a HEAD has the refusal's head and no body, also when
    its first byte came alone."""
    data = b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    resp, c = plain(gw, data, pause)
    assert_plain_400(resp, head_only=True)
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (400, "bad_request"), e
    echo_works(gw)


@pytest.mark.parametrize("case", ["browser_get", "options", "delete"])
def test_split_request_still_gets_its_body(gw, case):
    """A request whose first byte came alone gets the same 400, with its
    body: it is no HEAD."""
    data = REQUESTS.get(case) or OTHER_METHODS[case]
    resp, c = plain(gw, data, pause=0.3)
    assert_plain_400(resp)
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (400, "bad_request"), e


GARBAGE = {
    "text": b"HELLO THERE, NOT HTTP\r\n\r\n",
    "lowercase_get": b"get / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "lowercase_options": b"options / HTTP/1.1\r\nHost: x\r\n\r\n",
    "method_no_space": b"OPTIONS/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "binary": bytes(range(1, 64)) * 4,
    "capitals_then_binary": b"OPT\x00\x01\x02\x03" * 8,
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_other_garbage_still_gets_no_answer(gw, case):
    before = rejected(gw, "bad_request")
    c = PreClient(gw.port)
    try:
        c.send(GARBAGE[case])
        assert c.wait_closed(5), "the gateway kept a garbage client open"
        assert bytes(c.buf) == b"", bytes(c.buf)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (None, "handshake_failed"), e
    assert rejected(gw, "bad_request") == before
    echo_works(gw)


@pytest.mark.parametrize("case", ["upgrade", "options"])
def test_plain_http_behind_proxy_protocol(factory, case):
    """PROXY header, then a plaintext request: the same 400, logged with
    the client the header named; a TLS client behind a header upgrades."""
    be = factory.echo()
    g = factory.gateway(routes=[("/echo", "echo")],
                        upstreams={"echo": [be.addr]},
                        listener={"proxy_protocol": True})
    c = PreClient(g.port)
    port = 40000 + c.local_port % 20000
    try:
        c.send(b"PROXY TCP4 192.0.2.44 127.0.0.1 %d 443\r\n" % port +
               (REQUESTS.get(case) or OTHER_METHODS[case]))
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert_plain_400(resp)
    e = g.wait_entry(client_port=port)
    assert (e["client"], e["status"], e["reason"]) == \
        ("192.0.2.44", 400, "bad_request"), e

    t = PreClient(g.port)
    try:
        t.send(b"PROXY TCP4 192.0.2.45 127.0.0.1 %d 443\r\n" %
               (port + 1))
        t.start_tls(g.ssl)
        t.upgrade("/echo")
    finally:
        t.close()
    e = g.wait_entry(client_port=port + 1)
    assert (e["client"], e["status"]) == ("192.0.2.45", 101), e


def test_half_closed_plain_client_reads_its_answer(gw):
    """A client that sends its request and its FIN at once still reads
    the whole answer."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(REQUESTS["browser_get"])
        s.shutdown(socket.SHUT_WR)
        got = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), got
    assert body.startswith(b"bad_request") and HINT in body, got


@needs_failalloc()
def test_plain_answers_are_whole_without_memory(factory):
    """One buffer allocation in three fails on the worker for a while
    (WSGATE_FAILALLOC, ":evbuf"): each plaintext client gets the whole 400
    or nothing at all, never part of it, and its access-log line, unless
    that too ran out of memory, has status 400 only when it was answered;
    the daemon serves TLS clients and answers plaintext ones again
    afterwards, and the sanitizers find nothing."""
    be = factory.echo()
    g = factory.gateway(routes=[("/echo", "echo")],
                        upstreams={"echo": [be.addr]}, start=False)
    start_ms, window_ms = 1500, 2500
    t0 = time.monotonic()
    g.start(env=dict(os.environ, WSGATE_FAILALLOC="3:%d:%d:evbuf" % (
        start_ms, window_ms)))
    time.sleep(max(0.0, t0 + start_ms / 1000.0 - time.monotonic()))
    closes = t0 + (start_ms + window_ms) / 1000.0
    got = {}
    for i in range(300):
        if time.monotonic() > closes - 0.2:
            break
        try:
            c = PreClient(g.port, timeout=2)
        except OSError:
            continue
        try:
            c.send(REQUESTS["browser_get"])
            data = c.read_to_eof(2)
        except (OSError, AssertionError):
            data = None
        finally:
            c.close()
        if data is not None:
            got[c.local_port] = data
    time.sleep(max(0.0, closes + 0.5 - time.monotonic()))
    assert g.alive(), g.dump()
    # a line of its own may be lost for want of memory, and is said so
    logged = {e["client_port"]: e for e in g.entries()}
    whole = nothing = 0
    for port, data in got.items():
        e = logged.get(port, {"status": None, "reason": None})
        if data == b"":
            nothing += 1
            assert e["status"] is None, e
            assert e["reason"] in (None, "bad_request", "handshake_failed",
                                   "internal_error"), e
            continue
        head, sep, body = data.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), \
            data
        n = int(rawclient.HTTPResponse(head, body).one("Content-Length"))
        assert len(body) == n and body.startswith(b"bad_request"), data
        assert (e["status"], e["reason"]) in ((400, "bad_request"),
                                              (None, None)), e
        whole += 1
    print("whole %d, nothing %d" % (whole, nothing))
    assert whole > 0, got
    resp, _ = plain(g, REQUESTS["browser_get"])
    assert_plain_400(resp)
    echo_works(g)


def test_tls_record_of_another_version_gets_no_http(gw):
    """A handshake record of SSL 2 days' version is no request line:
    OpenSSL fails it as before (handshake_failed), no 400."""
    before = rejected(gw, "bad_request")
    c = PreClient(gw.port)
    try:
        c.send(b"\x16\x02\x00\x00\x30" + b"\x01" * 48)
        assert c.wait_closed(5), "the gateway kept a bad record open"
        assert b"HTTP/" not in bytes(c.buf), bytes(c.buf)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (None, "handshake_failed"), e
    assert rejected(gw, "bad_request") == before


@pytest.mark.parametrize("data", [b"O", b"OPTI"], ids=["1_byte", "4_bytes"])
def test_few_capitals_then_fin_get_no_answer(gw, data):
    """Fewer bytes than a record header, a request line so far, then the
    FIN: nothing more will come to tell by; closed as handshake_failed,
    not held until the handshake timeout."""
    c = PreClient(gw.port)
    try:
        c.send(data)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.wait_closed(5), "a client gone after %r was kept" % data
        # at most OpenSSL's alert for a record cut short, as before
        assert b"HTTP/" not in bytes(c.buf), bytes(c.buf)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (None, "handshake_failed"), e
    echo_works(gw)


@pytest.mark.parametrize("data", [b"O", b"OPTI", b"OPTIONS"],
                         ids=["1_byte", "4_bytes", "7_bytes"])
def test_few_capitals_then_silence_meet_the_handshake_timeout(factory,
                                                              data):
    """A client that sends the start of a request line and waits is
    closed at the handshake timeout without an answer, as one that sends
    part of a ClientHello is."""
    be = factory.echo()
    g = factory.gateway(routes=[("/echo", "echo")],
                        upstreams={"echo": [be.addr]},
                        listener={"handshake_timeout": "1s"})
    c = PreClient(g.port, timeout=10)
    try:
        c.send(data)
        assert c.wait_closed(8), "a client silent after %r was kept" % data
        assert b"HTTP/" not in bytes(c.buf), bytes(c.buf)
    finally:
        c.close()
    e = g.wait_entry(client_port=c.local_port)
    assert e["status"] is None, e
    assert e["reason"] in ("handshake_timeout", "handshake_failed"), e
    echo_works(g)
