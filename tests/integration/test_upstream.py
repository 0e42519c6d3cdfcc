"""The upstream side: the request the backend sees, upstream failures, and
load balancing."""

import asyncio
import base64
import socket
import struct
import time

import pytest

import rawclient
import rawup
import wsproto
from conftest import headers_of, metric, run


def upgrade_and_close(gw, path="/echo", **kw):
    """Raw client: upgrade, close 1000, return the client's key."""
    c = gw.raw()
    try:
        c.upgrade(path, **kw)
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
        f, _ = c.read_close()
        assert f.close_code == 1000, f
        return c.key
    finally:
        c.close()


# -- what the backend receives ------------------------------------------------

def test_backend_request_headers(echo_gateway):
    gw, be = echo_gateway, echo_gateway.backend
    key = upgrade_and_close(
        gw, "/echo?x=1&y=two",
        host="app.example.test:8443",
        extra=[("Origin", "https://app.example.com"),
               ("X-Forwarded-For", "6.6.6.6"),
               ("Forwarded", "for=6.6.6.6;proto=https"),
               ("X-Forwarded-Proto", "gopher"),
               ("X-Forwarded-Host", "evil.example"),
               ("X-Real-IP", "6.6.6.6"),
               ("True-Client-IP", "6.6.6.6"),
               ("X-Client-IP", "6.6.6.6"),
               ("X_Real_IP", "6.6.6.6"),
               ("Client-IP", "6.6.6.6"),
               ("Keep-Alive", "timeout=5"),
               ("TE", "trailers"),
               ("X-Hop", "secret"),
               ("Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits"),
               ("X-Custom", "kept")],
        connection="Upgrade, X-Hop")
    (ev,) = be.wait_event("open")
    h = lambda name: headers_of(ev, name)  # noqa: E731
    assert ev["path"] == "/echo?x=1&y=two"
    (bkey,) = h("Sec-WebSocket-Key")
    assert bkey != key, "client's Sec-WebSocket-Key was reused upstream"
    assert len(base64.b64decode(bkey, validate=True)) == 16
    assert h("Sec-WebSocket-Version") == ["13"]
    assert h("X-Forwarded-For") == ["127.0.0.1"], ev["headers"]
    assert h("X-Forwarded-Proto") == ["https"], ev["headers"]
    assert h("X-Forwarded-Host") == ["app.example.test:8443"], ev["headers"]
    assert h("Host") == ["app.example.test:8443"], ev["headers"]
    assert h("X-Real-IP") == ["127.0.0.1"], ev["headers"]
    assert h("True-Client-IP") == [], ev["headers"]
    assert h("X-Client-IP") == [], ev["headers"]
    assert h("X_Real_IP") == [], ev["headers"]
    assert h("Client-IP") == [], ev["headers"]
    assert h("Forwarded") == [], ev["headers"]
    assert h("Keep-Alive") == [], ev["headers"]
    assert h("TE") == [], ev["headers"]
    assert h("X-Hop") == [], ev["headers"]
    assert h("Sec-WebSocket-Extensions") == [], ev["headers"]
    assert h("Origin") == ["https://app.example.com"], ev["headers"]
    assert h("X-Custom") == ["kept"], ev["headers"]
    e = gw.wait_entry(pred=lambda e: e["status"] == 101)
    assert e["origin"] == "https://app.example.com", e


def test_forwarded_headers_named_in_connection_are_still_replaced(
        echo_gateway):
    # A client listing X-Forwarded-For in Connection must not make the
    # gateway drop its own X-Forwarded-For, nor keep the client's.
    gw, be = echo_gateway, echo_gateway.backend
    upgrade_and_close(
        gw, "/echo",
        extra=[("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6")],
        connection="Upgrade, X-Forwarded-For, Forwarded, X-Forwarded-Proto")
    (ev,) = be.wait_event("open")
    assert headers_of(ev, "X-Forwarded-For") == ["127.0.0.1"], ev["headers"]
    assert headers_of(ev, "X-Forwarded-Proto") == ["https"], ev["headers"]
    assert headers_of(ev, "Forwarded") == [], ev["headers"]


def test_plaintext_listener_forwards_proto_http(factory):
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, tls=False)

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("plain")
            assert await asyncio.wait_for(ws.recv(), 5) == "plain"
    run(go())
    (ev,) = be.wait_event("open")
    assert headers_of(ev, "X-Forwarded-Proto") == ["http"], ev["headers"]
    assert headers_of(ev, "X-Forwarded-For") == ["127.0.0.1"], ev["headers"]


# -- upstream failures ------------------------------------------------------------

def one_refusal(gw, status, reason, timeout=8):
    resp, e, c = gw.raw_upgrade(timeout=timeout)
    assert resp.status == status, resp
    assert [v.lower() for v in resp.header("Connection")] == ["close"], resp
    assert e["status"] == status, e
    assert e["reason"] == reason, e
    assert e["upstream"] == "up", e
    return resp, e, c


def raw_gateway(factory, behavior, **kw):
    up = factory.raw_upstream(behavior)
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": {"servers": [up.addr],
                                           "connect_timeout": "1s"}}, **kw)
    return gw, up


def test_nothing_listening_is_502(factory):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()                        # bound then closed: refuses
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": ["127.0.0.1:%d" % port]})
    one_refusal(gw, 502, "upstream_unavailable")


def test_listener_that_never_accepts_is_504(factory):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    try:
        # fill the accept queue so further SYNs go unanswered
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        gw = factory.gateway(routes=[("/echo", "up")],
                             upstreams={"up": {"servers":
                                               ["127.0.0.1:%d" % port],
                                               "connect_timeout": "1s"}})
        one_refusal(gw, 504, "upstream_unavailable")
    finally:
        for f in fillers:
            f.close()
        ls.close()


def test_upstream_that_accepts_and_never_answers_is_504(factory):
    gw, up = raw_gateway(factory, rawup.silent)
    one_refusal(gw, 504, "upstream_unavailable")
    (uc,) = up.connections()
    assert uc.data.startswith(b"GET /echo HTTP/1.1\r\n"), bytes(uc.data)


def test_upstream_timeout_counts_as_connect_failure(factory):
    """wsgate(8): wsgate_upstream_connect_failures_total counts servers
    that did not finish connecting and upgrading within connect_timeout,
    not only those that refused."""
    gw, up = raw_gateway(factory, rawup.silent, admin=True)
    gw.settle_probes()
    before = metric(gw.metrics(), "wsgate_upstream_connect_failures_total",
                    upstream="up")
    one_refusal(gw, 504, "upstream_unavailable")
    after = metric(gw.metrics(), "wsgate_upstream_connect_failures_total",
                   upstream="up")
    assert after - before == 1, (before, after)


@pytest.mark.parametrize("how", ["fin", "reset", "garbage", "half"])
def test_upstream_closing_before_answering_counts_as_connect_failure(
        factory, how):
    """wsgate(8): a server that closes the connection without answering
    is upstream_unavailable, as one that refuses or times out, and so a
    failed connection in wsgate_upstream_connect_failures_total: each
    access-log line upstream_unavailable names a failure of its upstream.
    One that answers something that is not a 101 is a bad handshake, and
    is not, nor one that closes half way through its answer's head."""
    def behavior(c):
        if not c.read_head():
            return
        if how == "reset":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
        elif how == "garbage":
            c.send(b"SSH-2.0-OpenSSH_9.2\r\n")
        elif how == "half":
            c.send(b"HTTP/1.1 101 Switching Protocols\r\n")
    gw, up = raw_gateway(factory, behavior, admin=True)
    gw.settle_probes()
    key = ("wsgate_upstream_connect_failures_total", (("upstream", "up"),))
    before = gw.metrics()[key]
    unavailable = how in ("fin", "reset")
    reason = "upstream_unavailable" if unavailable else \
        "upstream_bad_handshake"
    one_refusal(gw, 502, reason)
    assert gw.metrics()[key] - before == unavailable, how


def test_bare_101_is_502_bad_handshake(factory):
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n"))
    one_refusal(gw, 502, "upstream_bad_handshake")


def test_wrong_accept_is_502_bad_handshake(factory):
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"))
    one_refusal(gw, 502, "upstream_bad_handshake")


def test_subprotocol_not_offered_is_502_bad_handshake(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101(protocol="evil.v9")
        c.drain(10)
    gw, up = raw_gateway(factory, behavior)
    one_refusal(gw, 502, "upstream_bad_handshake")


def test_frames_after_bad_101_are_not_relayed(factory):
    # wrong Accept followed by a frame: the frame must never reach the client
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n" +
        wsproto.encode_frame(wsproto.OP_TEXT, b"LEAKED-FRAME", mask=False)))
    resp, _, _ = one_refusal(gw, 502, "upstream_bad_handshake")
    assert b"LEAKED-FRAME" not in resp.body


def test_403_is_passed_through_as_upstream_refused(factory):
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 8\r\n\r\ngo away\n"))
    resp, _, _ = one_refusal(gw, 403, "upstream_refused")
    assert b"go away" in resp.body, resp


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_is_passed_through_without_a_body(factory, status):
    """204 and 304 never carry a body (RFC 9110 6.4.1): the refusal passed
    through has neither a body nor a Content-Length."""
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 %d X\r\nETag: \"1\"\r\n\r\n" % status))
    resp, e, _ = one_refusal(gw, status, "upstream_refused")
    assert resp.body == b"", resp
    assert resp.header("Content-Length") == [], resp


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_with_a_content_length_is_not_waited_on(factory,
                                                                status):
    """A 304 may carry the Content-Length of the representation it stands
    for (RFC 9110 8.6), and a sloppy server sends one with a 204; neither
    has a body (RFC 9112 6.3).  The refusal is passed through at once,
    not a 504 once connect_timeout has run out waiting for those bytes
    from an upstream that keeps its connection open."""
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 %d X\r\nETag: \"1\"\r\nContent-Length: 1234\r\n\r\n"
        % status))
    resp, e, _ = one_refusal(gw, status, "upstream_refused")
    assert resp.body == b"", resp
    assert resp.header("Content-Length") == [], resp


def test_http10_refusal_is_passed_through(factory):
    """A server that answers in HTTP/1.0 (Python's http.server does) still
    has its refusal passed through, not turned into a 502."""
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.0 403 Forbidden\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 8\r\n\r\ngo away\n"))
    resp, e, _ = one_refusal(gw, 403, "upstream_refused")
    assert b"go away" in resp.body, resp


def test_http10_101_is_502_bad_handshake(factory):
    """The upgrade is HTTP/1.1 (RFC 6455 4.1): a 101 in HTTP/1.0, even
    with the right Accept, opens nothing."""
    def behavior(c):
        if not c.read_head():
            return
        key = (c.header("Sec-WebSocket-Key") or [""])[0]
        c.send(b"HTTP/1.0 101 Switching Protocols\r\n"
               b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Accept: " +
               wsproto.accept_for(key).encode() + b"\r\n\r\n")
        c.drain(10)
    gw, up = raw_gateway(factory, behavior)
    one_refusal(gw, 502, "upstream_bad_handshake")
    assert "101 in HTTP/1.0" in gw.error_text()


@pytest.mark.parametrize("body", [
    b"Connection: close\r\n\r\nuntil the upstream closes",
    b"Content-Length: 5000\r\n\r\n" + b"x" * 5000],
    ids=["no-length", "over-4096"])
def test_401_keeps_its_challenge_without_its_body(factory, body):
    """A 401 whose body is not passed through (no Content-Length, or over
    4096 bytes) still reaches the client with its WWW-Authenticate, and a
    redirect with its Location: only the upstream's Content-Type goes with
    the upstream's body."""
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/html\r\n"
        b"WWW-Authenticate: Bearer realm=\"up\"\r\n"
        b"Location: /login\r\nRetry-After: 7\r\n" + body))
    resp, e, _ = one_refusal(gw, 401, "upstream_refused")
    assert resp.header("WWW-Authenticate") == ['Bearer realm="up"'], resp
    assert resp.header("Location") == ["/login"], resp
    assert resp.header("Retry-After") == ["7"], resp
    assert resp.header("Content-Type") == ["text/plain"], resp
    assert resp.body == b"upstream_refused\n", resp


def test_401_keeps_every_challenge_field(factory):
    """Challenges may come in several WWW-Authenticate fields (RFC 9110
    11.6.1): each reaches the client, in order, so that one which only
    knows the second scheme can still answer it."""
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 401 Unauthorized\r\n"
        b"WWW-Authenticate: Negotiate\r\n"
        b"Content-Length: 0\r\n"
        b"WWW-Authenticate: Basic realm=\"up\"\r\n\r\n"))
    resp, e, _ = one_refusal(gw, 401, "upstream_refused")
    assert resp.header("WWW-Authenticate") == [
        "Negotiate", 'Basic realm="up"'], resp


def test_a_refusal_field_given_twice_passes_once(factory):
    """Only WWW-Authenticate may come in several fields: a redirect with
    two Location fields, or two Retry-After, reaches the client with the
    first alone, as before, not with two that contradict each other."""
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 307 Temporary Redirect\r\n"
        b"Location: /first\r\nRetry-After: 7\r\n"
        b"Location: /second\r\nRetry-After: 9\r\n"
        b"Content-Length: 0\r\n\r\n"))
    resp, e, _ = one_refusal(gw, 307, "upstream_refused")
    assert resp.header("Location") == ["/first"], resp
    assert resp.header("Retry-After") == ["7"], resp


def test_200_with_upgrade_header_is_not_tunnelled(factory):
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Content-Length: 2\r\n\r\nok"))
    c = gw.raw()
    try:
        c.send(rawclient.build_request("/echo"))
        head = c.read_until(b"\r\n\r\n", 8)
        assert head.startswith(b"HTTP/1.1 200"), head
        # Try to use the connection as a tunnel.
        c.try_send(b"GET /tunnelled HTTP/1.1\r\nHost: x\r\n\r\n" +
                   wsproto.encode_frame(wsproto.OP_TEXT, b"TUNNELLED"))
        c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 200, e
    assert e["reason"] == "upstream_refused", e
    (uc,) = up.connections()
    uc.done.wait(3)
    assert b"/tunnelled" not in uc.data, bytes(uc.data)
    assert uc.data.count(b"GET ") == 1, bytes(uc.data)


def test_gateway_survives_upstream_failures(factory):
    gw, up = raw_gateway(factory, rawup.respond(
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n"))
    for _ in range(3):
        one_refusal(gw, 502, "upstream_bad_handshake")
    up.behavior = rawup.ws_echo

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("ok now")
            assert await asyncio.wait_for(ws.recv(), 5) == "ok now"
    run(go())
    assert gw.alive()


# -- balancing ------------------------------------------------------------------

async def tag_of(gw):
    async with gw.connect("/echo") as ws:
        await ws.send("who")
        return (await asyncio.wait_for(ws.recv(), 5)).split(":")[0]


def test_first_server_down_second_is_used(factory):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dport = dead.getsockname()[1]
    dead.close()
    be = factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:%d" % dport,
                                             be.addr]})
    for _ in range(3):
        assert run(tag_of(gw)) == "b"


def test_round_robin_alternates(factory):
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": {"servers": [a.addr, b.addr],
                                             "balance": "round_robin"}})
    tags = [run(tag_of(gw)) for _ in range(4)]
    assert set(tags) == {"a", "b"}, tags
    assert tags[0] != tags[1] and tags[0] == tags[2] and \
        tags[1] == tags[3], tags


def test_least_conn_prefers_less_loaded(factory):
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": {"servers": [a.addr, b.addr],
                                             "balance": "least_conn"}})

    async def go():
        async with gw.connect("/echo") as c1:
            await c1.send("who")
            t1 = (await asyncio.wait_for(c1.recv(), 5)).split(":")[0]
            async with gw.connect("/echo") as c2:
                await c2.send("who")
                t2 = (await asyncio.wait_for(c2.recv(), 5)).split(":")[0]
                assert t1 != t2, (t1, t2)
                port2 = c2.local_address[1]
            # c2 closed: its server now has fewer open connections
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: gw.wait_entry(client_port=port2))
            # round_robin would pick t1 here; least_conn must pick t2
            async with gw.connect("/echo") as c3:
                await c3.send("who")
                t3 = (await asyncio.wait_for(c3.recv(), 5)).split(":")[0]
                assert t3 == t2, (t1, t2, t3)
    run(go())


def test_least_conn_does_not_count_closed_sessions(factory):
    """A closed session whose client has not hung up yet (the gateway
    lingers, waiting for its FIN) no longer counts against its server."""
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": {"servers": [a.addr, b.addr],
                                             "balance": "least_conn"}})

    def opened():
        c = gw.raw()
        c.upgrade("/echo")
        c.send_frame(wsproto.OP_TEXT, b"who")
        return c, c.read_frame(5).payload.split(b":")[0]

    def close_handshake(c):
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
        f, _ = c.read_close(5)
        assert f.close_code == 1000
        gw.wait_entry(client_port=c.local_port)

    c1, t1 = opened()
    c2, t2 = opened()
    c3 = None
    try:
        assert {t1, t2} == {b"a", b"b"}, (t1, t2)
        close_handshake(c2)
        c2.close()
        # c1 ends its session but keeps its socket: the gateway lingers
        close_handshake(c1)
        # counted, c1's server would have one session and the other none
        c3, t3 = opened()
        assert t3 == t1, (t1, t2, t3)
    finally:
        for c in (c1, c2, c3):
            if c is not None:
                c.close()


def test_frame_in_same_segment_as_101_reaches_client(factory):
    def behavior(c):
        if not c.read_head():
            return
        key = c.header("Sec-WebSocket-Key")[0]
        c.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
               wsproto.accept_for(key).encode() + b"\r\n\r\n" +
               wsproto.encode_frame(wsproto.OP_TEXT, b"hello at once",
                                    mask=False))
        c.drain(5)
    gw, up = raw_gateway(factory, behavior)
    c = gw.raw()
    try:
        c.upgrade("/echo")
        f = c.read_frame(5)
        assert f is not None and f.payload == b"hello at once", f
    finally:
        c.close()


# -- what the client gets in the 101 ----------------------------------------

OWN_101 = ["Upgrade", "Connection", "Sec-WebSocket-Accept"]


def upgrade_101(gw, **kw):
    """Raw client: upgrade; the 101's header lines, in order, and the
    client.  c.upgrade() checks its Sec-WebSocket-Accept."""
    c = gw.raw()
    try:
        resp = c.upgrade("/echo", **kw)
    except BaseException:
        c.close()
        raise
    return resp, c


def test_backend_101_fields_reach_the_client_in_order(factory):
    # Sticky-session cookies, a request id: the client gets the backend's
    # end-to-end fields after the gateway's own, in order, repeats kept;
    # not its Server banner, which would name its software to anyone.
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101("chat", extra=b"Set-Cookie: lb=s1; Path=/; HttpOnly\r\n"
                     b"X-Request-Id: req-7f3a\r\n"
                     b"Set-Cookie: sid=abc; Secure\r\n"
                     b"Server: backend/1.0\r\n"
                     b"Date: Tue, 08 Dec 2026 01:00:00 GMT\r\n")
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)
    resp, c = upgrade_101(gw, protocols="chat, other")
    try:
        assert resp.headers == [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", wsproto.accept_for(c.key)),
            ("Sec-WebSocket-Protocol", "chat"),
            ("Set-Cookie", "lb=s1; Path=/; HttpOnly"),
            ("X-Request-Id", "req-7f3a"),
            ("Set-Cookie", "sid=abc; Secure"),
            ("Date", "Tue, 08 Dec 2026 01:00:00 GMT")], resp
        c.send_frame(wsproto.OP_TEXT, b"after cookies", mask=True)
        f = c.read_frame(5)
        assert f is not None and f.payload == b"after cookies", f
    finally:
        c.close()


def test_backend_101_hop_by_hop_fields_stay_behind(factory):
    # Hop-by-hop fields, those the backend's Connection names, its
    # Content-Length and its Sec-WebSocket-* fields are not the
    # client's: the gateway writes its own Upgrade, Connection and
    # Sec-WebSocket-Accept, for the client's key.
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101(extra=b"Connection: X-Hop\r\n"
                     b"Keep-Alive: timeout=5\r\n"
                     b"X-Hop: backend-internal\r\n"
                     b"Proxy-Connection: keep-alive\r\n"
                     b"TE: trailers\r\nTrailer: X-Sum\r\n"
                     b"Transfer-Encoding: chunked\r\n"
                     b"Proxy-Authenticate: Basic realm=\"lb\"\r\n"
                     b"Sec-WebSocket-Version: 13\r\n"
                     b"X-Kept: yes\r\n")
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)
    resp, c = upgrade_101(gw)
    try:
        assert resp.headers == [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", wsproto.accept_for(c.key)),
            ("X-Kept", "yes")], resp
        c.send_frame(wsproto.OP_TEXT, b"still framed", mask=True)
        f = c.read_frame(5)
        assert f is not None and f.payload == b"still framed", f
    finally:
        c.close()


def test_backend_101_content_length_stays_behind(factory):
    # A Content-Length on a 101 means nothing to the client's tunnel.
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101(extra=b"Content-Length: 0\r\nX-Kept: yes\r\n")
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)
    resp, c = upgrade_101(gw)
    try:
        assert [k for k, _ in resp.headers] == OWN_101 + ["X-Kept"], resp
    finally:
        c.close()


def test_backend_101_of_a_full_head_reaches_the_client_whole(factory):
    # Near the bound of the upstream's head (WSG_MAX_UPSTREAM_HEAD, 16 KB)
    # and of its fields (WSG_MAX_HEADERS, 64): every field goes on.
    cookies = [("Set-Cookie", "c%02d=%s" % (i, "v" * 200))
               for i in range(58)]

    def behavior(c):
        if not c.read_head():
            return
        c.accept_101(extra=b"".join(b"%s: %s\r\n" % (k.encode(),
                                                      v.encode())
                                    for k, v in cookies))
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)
    resp, c = upgrade_101(gw)
    try:
        assert resp.headers[3:] == cookies, resp
        c.send_frame(wsproto.OP_TEXT, b"big head", mask=True)
        f = c.read_frame(5)
        assert f is not None and f.payload == b"big head", f
    finally:
        c.close()


def test_backend_101_cookies_reach_a_websockets_client(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101(extra=b"Set-Cookie: lb=s2\r\nSet-Cookie: io=xyz\r\n"
                     b"X-Request-Id: req-9\r\n")
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)

    async def go():
        async with gw.connect("/echo") as ws:
            h = ws.response_headers
            assert h.get_all("Set-Cookie") == ["lb=s2", "io=xyz"], h
            assert h.get_all("X-Request-Id") == ["req-9"], h
            await ws.send("cookie echo")
            assert await asyncio.wait_for(ws.recv(), 5) == "cookie echo"
    run(go())


def test_upstream_negotiating_extension_is_502(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        c.drain(5)
    gw, up = raw_gateway(factory, behavior)
    resp, _, _ = one_refusal(gw, 502, "upstream_bad_handshake")
    # refused, not passed on: the gateway negotiates no extension
    assert resp.header("Sec-WebSocket-Extensions") == [], resp


def test_upstream_101_without_upgrade_header_is_502(factory):
    def behavior(c):
        if not c.read_head():
            return
        key = c.header("Sec-WebSocket-Key")[0]
        c.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Accept: " + wsproto.accept_for(key).encode() +
               b"\r\n\r\n")
        c.drain(5)
    gw, up = raw_gateway(factory, behavior)
    one_refusal(gw, 502, "upstream_bad_handshake")


def test_upstream_garbage_response_is_502(factory):
    gw, up = raw_gateway(factory, rawup.respond(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"))
    one_refusal(gw, 502, "upstream_bad_handshake")


def test_upstream_closes_before_answering_is_502(factory):
    def behavior(c):
        c.read_head()
    gw, up = raw_gateway(factory, behavior)
    resp, e, _ = gw.raw_upgrade()
    assert resp.status == 502, resp
    # wsgate.8: a server that closes without answering is unavailable
    assert e["reason"] == "upstream_unavailable", e


def test_upstream_101_in_slow_pieces_is_accepted(factory):
    def behavior(c):
        if not c.read_head():
            return
        key = c.header("Sec-WebSocket-Key")[0]
        resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                wsproto.accept_for(key).encode() + b"\r\n\r\n")
        for i in range(0, len(resp), 40):
            c.send(resp[i:i + 40])
            time.sleep(0.1)
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("slow 101")
            assert await asyncio.wait_for(ws.recv(), 5) == "slow 101"
    run(go())


@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
    b"Link: </style.css>; rel=preload\r\n\r\n",
])
def test_interim_1xx_before_101_is_skipped(factory, interim):
    # RFC 9110 15.2: a client must parse 1xx answers before the final
    # one, and may ignore those it did not ask for.
    def behavior(c):
        if not c.read_head():
            return
        c.send(interim)
        time.sleep(0.1)
        c.accept_101()
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("after 1xx")
            assert await asyncio.wait_for(ws.recv(), 5) == "after 1xx"
    run(go())
    e = gw.wait_entry(pred=lambda e: e["route"] == "/echo")
    assert e["status"] == 101 and e["reason"] == "client_closed", e


def test_endless_interim_1xx_is_502(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.send(b"HTTP/1.1 100 Continue\r\n\r\n" * 20)
        c.drain(5)
    gw, up = raw_gateway(factory, behavior)
    one_refusal(gw, 502, "upstream_bad_handshake")


def test_one_interim_1xx_too_many_is_502(factory):
    # 8 interim answers are skipped (see the pipelined test); the 9th is
    # one too many, even with a correct 101 right behind it
    def behavior(c):
        if not c.read_head():
            return
        c.send(b"HTTP/1.1 100 Continue\r\n\r\n" * 9 + _head_101(c))
        c.drain(5)
    gw, up = raw_gateway(factory, behavior)
    one_refusal(gw, 502, "upstream_bad_handshake")
    assert "more than 8 interim answers" in gw.error_text()


def test_oversized_upstream_response_head_is_502(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101(extra=b"".join(b"X-Big-%d: %s\r\n" % (i, b"h" * 1000)
                                    for i in range(20)))
        c.drain(5)
    gw, up = raw_gateway(factory, behavior)
    one_refusal(gw, 502, "upstream_bad_handshake")


def test_upstream_close_right_after_101_is_relayed(factory):
    gw, up = raw_gateway(factory, rawup.ws_then(
        wsproto.encode_frame(wsproto.OP_CLOSE,
                             wsproto.close_payload(1000, "bye now"),
                             mask=False), delay=0))
    c = gw.raw()
    try:
        c.upgrade("/echo")
        f, others = c.read_close(5)
        assert (f.close_code, f.close_reason) == (1000, b"bye now"), f
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "upstream_closed" and e["close_code"] == 1000, e


def test_all_servers_down_is_502(factory):
    ports = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    gw = factory.gateway(routes=[("/echo", "up")],
                         upstreams={"up": ["127.0.0.1:%d" % p
                                           for p in ports]})
    one_refusal(gw, 502, "upstream_unavailable")


def test_client_gone_during_upstream_handshake_closes_upstream(factory):
    # the upstream waits 3s before its 101; the client leaves after 0.3s:
    # the gateway must give up the upstream connection, not keep it
    gw, up = raw_gateway(factory, lambda c: rawup.ws_echo(c, delay=3))
    c = gw.raw()
    c.send(rawclient.build_request("/echo"))
    (uc,) = up.wait_conns(1)
    time.sleep(0.3)
    port = c.local_port
    c.close()
    e = gw.wait_entry(client_port=port, timeout=5)
    assert (e["status"], e["reason"]) == (None, "client_dropped"), e
    assert uc.done.wait(8), "upstream connection kept after the client left"
    assert uc.data.count(b"GET ") == 1


def _head_101(c):
    key = c.header("Sec-WebSocket-Key")[0]
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
            wsproto.accept_for(key).encode() + b"\r\n\r\n")


@pytest.mark.parametrize("n,split", [(8, False), (3, True)])
def test_interim_1xx_pipelined_with_101_and_frames(factory, n, split):
    # 1xx heads, the 101 and a frame in one segment (or a byte at a time):
    # the frame behind the 101 reaches the client.
    def behavior(c):
        if not c.read_head():
            return
        data = (b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n"
                b"\r\n" * n + _head_101(c) +
                wsproto.encode_frame(wsproto.OP_TEXT, b"first", mask=False))
        if split:
            for i in range(len(data)):
                c.send(data[i:i + 1])
                time.sleep(0.002)
        else:
            c.send(data)
        rawup.ws_echo_frames(c)
    gw, up = raw_gateway(factory, behavior)
    c = gw.raw()
    try:
        c.upgrade("/echo")
        f = c.read_frame(5)
        assert f is not None and f.payload == b"first", f
    finally:
        c.close()


def test_interim_1xx_then_refusal_passes_the_refusal(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.send(b"HTTP/1.1 100 Continue\r\n\r\n"
               b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"
               b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nnope\n")
        c.drain(5)
    gw, up = raw_gateway(factory, behavior)
    resp, e, c = one_refusal(gw, 401, "upstream_refused")
    assert resp.one("WWW-Authenticate") == "Bearer", resp
    assert resp.body == b"nope\n", resp
