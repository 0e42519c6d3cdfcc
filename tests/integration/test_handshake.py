"""SPEC first table: refusals before the upgrade.

One gateway for the module (hostile inputs must not hurt the process; the
last test checks it still relays).  Its upstream is a raw recording
WebSocket echo server, so "nothing forwarded upstream" is checked on the
bytes it received.
"""

import asyncio
import re
import time

import pytest

import rawclient
import wsproto
from conftest import echo_works, http_upgrade, policy, run

B = rawclient.build_request
KEY = "dGhlIHNhbXBsZSBub25jZQ=="

GOOD_LINES = [
    "GET /echo HTTP/1.1",
    "Host: localhost",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: " + KEY,
    "Sec-WebSocket-Version: 13",
]


def req(lines, eol="\r\n"):
    return (eol.join(lines) + eol + eol).encode("latin-1")


def with_line(line, at=None):
    lines = list(GOOD_LINES)
    lines.insert(len(lines) if at is None else at, line)
    return req(lines)


def replaced(i, line):
    lines = list(GOOD_LINES)
    if line is None:
        del lines[i]
    else:
        lines[i] = line
    return req(lines)


@pytest.fixture(scope="module")
def gw(module_factory):
    up = module_factory.raw_upstream()
    g = module_factory.gateway(
        routes=[("/echo", "rec"), ("/sub", "rec", "sub"), ("/pub/*", "rec")],
        upstreams={"rec": [up.addr]},
        policies={"sub": policy(subprotocols=["chat.v2"])})
    g.up = up
    return g


@pytest.fixture
def up(gw):
    gw.up.clear()
    return gw.up


def refused(gw, data, status, reason, up=None):
    """Send raw bytes; expect a refusal with this status and reason."""
    c = gw.raw()
    try:
        c.send(data)
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == status, resp
    assert [v.lower() for v in resp.header("Connection")] == ["close"], resp
    ctype = resp.header("Content-Type")
    assert ctype and ctype[0].lower().startswith("text/plain"), resp
    assert reason.encode() in resp.body, resp
    # the body is exactly what Content-Length announced, nothing after it
    assert resp.header("Content-Length") == [str(len(resp.body))], resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason, e
    assert e["status"] == status, e
    assert e["close_code"] is None, e
    if up is not None:
        assert up.connections() == [], \
            "gateway forwarded a refused request upstream: %r" % \
            up.all_bytes()[:500]
    return resp, e


MALFORMED = {
    "bare_lf": req(GOOD_LINES[:2]) .replace(b"\r\n\r\n", b"\r\n") +
    b"Upgrade: websocket\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
    KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n",
    # typed lines (openssl s_client without -crlf): a short head of bare
    # LFs ends in "\n\n", and is answered then, not at the timeout
    "typed_bare_lf_head": req(GOOD_LINES, eol="\n"),
    "obs_fold": with_line("X-Folded: a\r\n  b"),
    "space_before_colon": with_line("X-Foo : bar"),
    "nul_in_value": with_line("X-Foo: a\x00b"),
    "duplicate_host": with_line("Host: other.example"),
    "duplicate_upgrade": with_line("Upgrade: websocket"),
    "duplicate_key": with_line("Sec-WebSocket-Key: " + wsproto.new_key()),
    "duplicate_version": with_line("Sec-WebSocket-Version: 13"),
    "content_length": with_line("Content-Length: 0"),
    "transfer_encoding": with_line("Transfer-Encoding: chunked"),
    "absolute_form": replaced(0, "GET http://localhost/echo HTTP/1.1"),
    "fragment_in_target": replaced(0, "GET /echo#frag HTTP/1.1"),
    "http_1_0": replaced(0, "GET /echo HTTP/1.0"),
    "missing_host": replaced(1, None),
    # IPvFuture is "v" 1*HEXDIG "." 1*(...): no hex digit here
    "ipvfuture_host_without_version": replaced(1, "Host: [v.ab]"),
    "missing_key": replaced(4, None),
    "missing_version": replaced(5, None),
    "bad_key_not_base64": replaced(4, "Sec-WebSocket-Key: not*base64!"),
    "bad_key_15_bytes": replaced(4, "Sec-WebSocket-Key: " +
                                 "QUFBQUFBQUFBQUFBQUFB"),
    # 24 characters, but the last is not the second padding '='
    "bad_key_last_not_padding": replaced(4, "Sec-WebSocket-Key: " +
                                         "dGhlIHNhbXBsZSBub25jZQ=A"),
    "upgrade_websocket_h2c": replaced(2, "Upgrade: websocket, h2c"),
    "upgrade_h2c": replaced(2, "Upgrade: h2c"),
    "no_connection_upgrade": replaced(3, "Connection: keep-alive"),
    "no_upgrade_header": replaced(2, None),
    "bare_cr_in_value": with_line("X-Foo: a\rb"),
    "bad_char_in_field_name": with_line("X@Foo: bar"),
    "empty_field_name": with_line(": bar"),
    "double_space_request_line": replaced(0, "GET  /echo HTTP/1.1"),
    "no_version_in_request_line": replaced(0, "GET /echo"),
    "http_2_0": replaced(0, "GET /echo HTTP/2.0"),
    "lowercase_http_version": replaced(0, "GET /echo http/1.1"),
    "bad_protocol_token": with_line("Sec-WebSocket-Protocol: a b"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_is_400_bad_request(gw, up, case):
    refused(gw, MALFORMED[case], 400, "bad_request", up)


def test_post_is_405(gw, up):
    # a 405 names the methods the target has (RFC 9110 15.5.6), as the
    # admin listener's does
    resp, _ = refused(gw, B("/echo", method="POST"), 405, "bad_method", up)
    assert resp.header("Allow") == ["GET"], resp


@pytest.mark.parametrize("method,target", [
    ("OPTIONS", "*"), ("CONNECT", "localhost:443"),
    ("POST", "http://localhost/echo"), ("PRI", "*")])
def test_other_methods_with_other_target_forms_are_405(gw, up, method,
                                                        target):
    # well-formed requests whose method is not GET get 405 whatever form
    # their target takes (RFC 9112 3.2); a GET must still use origin-form
    resp, _ = refused(gw, B(target, method=method), 405, "bad_method", up)
    assert resp.header("Allow") == ["GET"], resp


def test_head_is_405_without_a_body(gw, up):
    """A response to HEAD ends with its head (RFC 9110 9.3.2, RFC 9112
    6.3), whatever its Content-Length says, as the admin listener's does:
    bytes after it would be read as the start of another response."""
    c = gw.raw()
    try:
        c.send(B("/echo", method="HEAD"))
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == 405, resp
    assert resp.header("Allow") == ["GET"], resp
    assert resp.body == b"", resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "bad_method" and e["status"] == 405, e
    assert up.connections() == []


@pytest.mark.parametrize("line", [
    b"HEAD /echo HTTP/1.0",     # HAProxy's classic httpchk line
    b"HEAD /echo#x HTTP/1.1",
])
def test_head_refused_for_its_request_line_has_no_body(gw, up, line):
    """A HEAD refused with 400 for the rest of its request line is still
    a HEAD: its answer ends with its head, as the 405's does."""
    c = gw.raw()
    try:
        c.send(line + b"\r\nHost: a\r\n\r\n")
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == 400, resp
    assert resp.body == b"", resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "bad_request" and e["status"] == 400, e
    assert up.connections() == []


def test_post_with_a_body_is_405(gw, up):
    """A body is refused after the method: the POST is well formed, its
    method is what is wrong; a GET with a body stays a 400."""
    refused(gw, B("/echo", method="POST", extra=[("Content-Length", "5")]) +
            b"hello", 405, "bad_method", up)
    refused(gw, B("/echo", method="GET", extra=[("Content-Length", "5")]) +
            b"hello", 400, "bad_request", up)


def test_version_8_is_426_with_version_header(gw, up):
    resp, _ = refused(gw, B("/echo", version="8"), 426, "bad_version", up)
    assert resp.header("Sec-WebSocket-Version") == ["13"], resp


def test_headers_over_max_is_431(gw, up):
    data = B("/echo", extra=[("X-Pad", "a" * 9000)])
    refused(gw, data, 431, "headers_too_large", up)


def test_many_small_headers_over_max_is_431(gw, up):
    data = B("/echo", extra=[("X-Pad-%d" % i, "b" * 200) for i in range(50)])
    refused(gw, data, 431, "headers_too_large", up)


def test_empty_lines_over_max_before_the_request_line_are_431(gw, up):
    # skipped empty lines count towards max_header_bytes like the head
    refused(gw, b"\r\n" * 4200 + B("/echo"), 431, "headers_too_large", up)


def test_long_request_line_without_end_is_431(gw, up):
    # no CRLF at all: the gateway must not wait for more
    c = gw.raw()
    try:
        c.send(b"GET /" + b"a" * 9000)
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == 431, resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "headers_too_large", e
    assert up.connections() == []


@pytest.mark.parametrize("tail", [b"", b"\r", b"\r\n", b"\r\n\r"],
                         ids=["field", "cr", "crlf", "crlfcr"])
def test_unfinished_head_of_exactly_max_header_bytes_is_431_at_once(gw, up,
                                                                   tail):
    # 8 KiB with no end of the head: its end would be byte 8193 or later,
    # so it can never fit; the answer comes now, not at handshake_timeout
    # (10s here, twice the wait)
    head = B("/echo", extra=[("X-Pad", "")])[:-4] + b"\r\nX-Pad-2: "
    data = head + b"q" * (8192 - len(head) - len(tail)) + tail
    assert len(data) == 8192 and b"\r\n\r\n" not in data
    c = gw.raw()
    try:
        c.send(data)
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == 431, resp
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (431, "headers_too_large"), e
    assert up.connections() == []


@pytest.mark.parametrize("path", [
    "/pub/../secret/x", "/pub/%2e%2e/secret/x", "/pub/%2E%2E/secret/x",
    "/pub/..%2fsecret/x", "/pub/..%2Fsecret/x", "/pub/x/../../secret",
    # "/..;/" is "/../" to Tomcat and Jetty
    "/pub/..;/secret/x", "/pub/..;jsessionid=1/secret/x",
    "/pub/%2e%2e;/secret/x"])
def test_dot_segments_do_not_escape_a_prefix_route(gw, up, path):
    # "/pub/*" is a route, "/secret" is not: a path that leaves the matched
    # prefix once normalized (or decoded by the backend) must not be
    # upgraded and sent upstream as it is
    c = gw.raw()
    try:
        c.send(B(path))
        head = c.read_until(b"\r\n\r\n", 5)
    finally:
        c.close()
    resp = rawclient.HTTPResponse(head[:-4], b"")
    assert resp.status == 400, resp        # ambiguous, not just unrouted
    assert up.connections() == [], up.all_bytes()[:300]


def test_encoded_unreserved_characters_do_not_pick_a_looser_route(factory):
    # "/api/%61dmin" is "/api/admin" to a backend (RFC 3986 6.2.2.2) but
    # not to the route match, where it would miss the strict exact route
    # and take the open prefix route: it is refused, as other ambiguous
    # paths are
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/api/admin", "rec", "strict"), ("/api/*", "rec")],
        upstreams={"rec": [up.addr]},
        policies={"strict": policy(ip={"deny": ["127.0.0.0/8"]})})
    refused(g, B("/api/admin"), 403, "ip_denied", up=up)
    for path in ("/api/%61dmin", "/api/%61%64%6d%69%6e", "/api/adm%69n",
                 "/api/%41dmin", "/api/x/%2E%2E/admin"):
        refused(g, B(path), 400, "bad_request", up=up)
    # reserved characters and other escapes keep their meaning and pass
    c, _ = http_upgrade(g, B("/api/a%20b%3Fc"))
    c.close()
    up.wait_conns(1)
    assert up.connections()[0].path == "/api/a%20b%3Fc"


def test_invalid_percent_encoding_in_path_is_refused(gw, up):
    # RFC 3986 allows '%' in a path only before two hex digits; anything
    # else is a malformed target (nginx answers 400), which backends read
    # each their own way: IIS decodes "%u002e" to '.', so that
    # "/pub/%u002e%u002e/x" would leave the "/pub/*" route there
    for path in ("/pub/%u002e%u002e/secret", "/pub/a%zzb", "/pub/%2",
                 "/pub/%", "/pub/a%g0", "/pub/%%32e%%32e/secret"):
        refused(gw, B(path), 400, "bad_request", up=up)
    # the query is the backend's business and is left as it is
    c, _ = http_upgrade(gw, B("/pub/a%20b?x=%zz"))
    c.close()
    up.wait_conns(1)
    assert up.connections()[0].path == "/pub/a%20b?x=%zz"


def test_encoded_nul_in_path_does_not_pick_a_looser_route(factory):
    # a backend in C decodes "/api/admin%00x" and stops at the NUL:
    # "/api/admin" to it, yet the open prefix route to the route match.
    # nginx answers a decoded NUL in the path with 400; so does wsgate
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/api/admin", "rec", "strict"), ("/api/*", "rec")],
        upstreams={"rec": [up.addr]},
        policies={"strict": policy(ip={"deny": ["127.0.0.0/8"]})})
    for path in ("/api/admin%00", "/api/admin%00.png", "/api/x%00/admin"):
        refused(g, B(path), 400, "bad_request", up=up)
    # in the query it is the backend's business
    c, _ = http_upgrade(g, B("/api/x?a=%00"))
    c.close()
    up.wait_conns(1)
    assert up.connections()[0].path == "/api/x?a=%00"


def test_empty_segments_do_not_pick_a_looser_route(factory):
    # nginx (merge_slashes) and Tomcat read "/api//admin" as "/api/admin":
    # an empty segment would miss the strict exact route and take the open
    # prefix route, so it is refused like the other ambiguous paths
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/api/admin", "rec", "strict"), ("/api/*", "rec")],
        upstreams={"rec": [up.addr]},
        policies={"strict": policy(ip={"deny": ["127.0.0.0/8"]})})
    for path in ("/api//admin", "//api/admin", "/api/admin//",
                 "/api///admin"):
        refused(g, B(path), 400, "bad_request", up=up)
    # a slash in the query is not a path segment
    c, _ = http_upgrade(g, B("/api/x?u=//a"))
    c.close()
    up.wait_conns(1)
    assert up.connections()[0].path == "/api/x?u=//a"


def test_path_parameters_do_not_pick_a_looser_route(factory):
    # Tomcat and Jetty drop ";params" from each segment: "/api/admin;x" and
    # "/api;x/admin" are "/api/admin" to them, yet they miss the strict
    # exact route, so a ';' in the path is refused; in the query it passes
    up = factory.raw_upstream()
    g = factory.gateway(
        routes=[("/api/admin", "rec", "strict"), ("/api/*", "rec"),
                ("/*", "rec")],
        upstreams={"rec": [up.addr]},
        policies={"strict": policy(ip={"deny": ["127.0.0.0/8"]})})
    for path in ("/api/admin;x", "/api/admin;", "/api;x/admin",
                 "/api/admin;jsessionid=1", "/api/x/..;a/admin"):
        refused(g, B(path), 400, "bad_request", up=up)
    c, _ = http_upgrade(g, B("/api/x?a=1;b=2"))
    c.close()
    up.wait_conns(1)
    assert up.connections()[0].path == "/api/x?a=1;b=2"


def test_plaintext_http_to_tls_port(gw, up):
    import socket
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    try:
        s.sendall(B("/echo"))
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        assert not data.startswith(b"HTTP/1.1 101"), data
    finally:
        s.close()
    assert up.connections() == []


def test_too_many_header_fields_is_refused(gw, up):
    # 100 tiny fields, well under max_header_bytes
    data = B("/echo", extra=[("X-A%d" % i, "b") for i in range(100)])
    assert len(data) < 8192
    c = gw.raw()
    try:
        c.send(data)
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    # wsgate.8: more than 64 fields is a head too large, as over the bytes
    assert resp.status == 431, resp
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "headers_too_large", e
    assert up.connections() == []


def test_unknown_path_is_404(gw, up):
    refused(gw, B("/nope"), 404, "no_route", up)


def test_route_prefix_does_not_match_longer_name(gw, up):
    # "/echo" is an exact route: "/echo2" and "/echo/x" have no route
    refused(gw, B("/echo2"), 404, "no_route", up)
    refused(gw, B("/echo/x"), 404, "no_route", up)


def test_refused_client_that_stays_connected_past_the_linger(gw, up):
    # Refused before a route was matched (400, 404), the client reads its
    # answer and keeps the connection open: the gateway lingers for its
    # EOF, then lets the connection go, and goes on serving.
    held = []
    try:
        for data, status in ((B("/nope"), 404), (b"GET / HTTP/1.1\r\n"
                                                 b"\x01\r\n\r\n", 400)):
            c = gw.raw()
            held.append(c)
            c.send(data)
            resp = c.http_response(timeout=5)
            assert resp.status == status, resp
        for c in held:
            deadline = time.monotonic() + 10
            gone = False
            while not gone and time.monotonic() < deadline:
                try:
                    c.sock.sendall(b"x")
                    time.sleep(0.2)
                except OSError:
                    gone = True
            assert gone, "refused connection never let go"
    finally:
        for c in held:
            c.close()
    echo_works(gw)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_refused_client_reading_to_eof_is_not_kept_waiting(factory, tls):
    """A refusal says "Connection: close", and the gateway closes its side
    (FIN, after close_notify on TLS) as soon as the answer is out: a
    client that reads to the end of the connection is not kept waiting
    for the linger (2 s), which only bounds how long the gateway waits
    for the client's own end.  The wait here (1.5 s) is under it."""
    up = factory.raw_upstream()
    g = factory.gateway(routes=[("/echo", "rec")],
                        upstreams={"rec": [up.addr]}, tls=tls)
    for data, status in ((B("/nope"), 404),
                         (B("/echo", method="POST"), 405)):
        c = g.raw()
        try:
            c.send(data)
            got = c.read_to_eof(timeout=1.5)
        finally:
            c.close()
        assert got.startswith(b"HTTP/1.1 %d " % status), got[:200]
        e = g.wait_entry(client_port=c.local_port)
        assert e["status"] == status, e
    assert up.connections() == []


def test_refusal_logged_in_error_log_with_conn_id(gw, up):
    """The refusal has its error-log line, "conn N: refused: REASON",
    with the access log's id (any line naming conn N, such as the debug
    line of its close, is not that)."""
    _, e = refused(gw, B("/echo", method="POST"), 405, "bad_method", up)
    assert e["id"] is not None
    from conftest import wait_for
    pat = re.compile(r" info: conn %d: refused: bad_method(: |$)" % e["id"])
    wait_for(lambda: [ln for ln in gw.error_text().splitlines()
                      if pat.search(ln)], 5,
             what="'conn %s: refused: bad_method' in the error log" %
             e["id"])


def test_subprotocol_none_allowed_is_400(gw, up):
    refused(gw, B("/sub", protocols="chat.v1, other"), 400,
            "subprotocol_denied", up)


def test_subprotocol_only_allowed_ones_reach_backend(gw, up):
    c = gw.raw()
    try:
        resp = c.upgrade("/sub", protocols="chat.v1, chat.v2, x.y")
        assert resp.header("Sec-WebSocket-Protocol") == ["chat.v2"], resp
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
        f, _ = c.read_close()
        assert f.close_code == 1000
    finally:
        c.close()
    (uc,) = up.wait_conns(1)
    offered = ",".join(uc.header("Sec-WebSocket-Protocol"))
    assert [p.strip() for p in offered.split(",")] == ["chat.v2"], uc.head


def test_subprotocols_pass_when_policy_has_no_list(gw, up):
    c = gw.raw()
    try:
        resp = c.upgrade("/echo", protocols="a.b, c.d")
        assert resp.header("Sec-WebSocket-Protocol") == ["a.b"], resp
    finally:
        c.close()
    (uc,) = up.wait_conns(1)
    offered = ",".join(uc.header("Sec-WebSocket-Protocol"))
    assert [p.strip() for p in offered.split(",")] == ["a.b", "c.d"], uc.head


def test_subprotocol_absent_is_fine_when_policy_lists_some(gw, up):
    # The list filters what is offered; offering nothing is not a refusal.
    c = gw.raw()
    try:
        resp = c.upgrade("/sub")
        assert resp.header("Sec-WebSocket-Protocol") == [], resp
    finally:
        c.close()


# -- handshake_timeout: separate gateways with 1s -------------------------------

@pytest.fixture
def slow_gw(factory):
    up = factory.raw_upstream()
    g = factory.gateway(routes=[("/echo", "rec")],
                        upstreams={"rec": [up.addr]},
                        listener={"handshake_timeout": "1s"})
    g.up = up
    return g


HALF = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgr"


def test_half_request_hits_handshake_timeout(slow_gw):
    c = slow_gw.raw()
    try:
        c.send(HALF)
        assert c.wait_closed(8), "gateway kept a half request open"
        # SPEC: the connection is closed, with no HTTP response
        assert bytes(c.buf) == b"", bytes(c.buf)
    finally:
        c.close()
    e = slow_gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "handshake_timeout", e
    assert e["status"] is None and e["close_code"] is None, e
    # what the client sent counts, refused or not (wsgate(8), bytes_in)
    assert e["bytes_in"] == len(HALF), e
    assert slow_gw.up.connections() == []


def test_half_request_then_hanging_up_counts_its_bytes(slow_gw):
    c = slow_gw.raw()
    c.send(HALF)
    time.sleep(0.2)
    c.close()
    e = slow_gw.wait_entry(client_port=c.local_port)
    # gone without close_notify: the TLS layer reports it
    assert e["reason"] == "handshake_failed", e
    assert e["bytes_in"] == len(HALF), e
    assert slow_gw.up.connections() == []


def test_unfinished_tls_handshake_hits_handshake_timeout(slow_gw):
    import socket
    s = socket.create_connection(("127.0.0.1", slow_gw.port), timeout=8)
    port = s.getsockname()[1]
    try:
        s.sendall(b"\x16\x03\x01")      # the start of a ClientHello, no more
        deadline = time.monotonic() + 8
        closed = False
        while time.monotonic() < deadline:
            try:
                if not s.recv(4096):
                    closed = True
                    break
            except ConnectionResetError:
                closed = True
                break
            except socket.timeout:
                break
        assert closed, "gateway kept a TLS handshake open past the timeout"
    finally:
        s.close()
    e = slow_gw.wait_entry(client_port=port)
    assert e["reason"] == "handshake_timeout", e


def test_trickled_request_hits_handshake_timeout(slow_gw):
    # The whole handshake has one deadline: sending a byte every 200ms
    # must not keep the connection alive.
    c = slow_gw.raw()
    data = B("/echo", extra=[("X-Slow", "z" * 40)])
    try:
        closed = False
        deadline = time.monotonic() + 6
        for b in data:
            if time.monotonic() > deadline:
                break
            if not c.try_send(bytes([b])):
                closed = True
                break
            time.sleep(0.2)
            if c.wait_closed(0.01):
                closed = True
                break
        assert closed, "trickling client was never cut off"
    finally:
        c.close()
    e = slow_gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "handshake_timeout", e


# -- valid variants must not be refused (strict is not the same as picky) ----

VALID_VARIANTS = {
    "mixed_case_values": replaced(2, "Upgrade: WebSocket"),
    "connection_list": replaced(3, "Connection: keep-alive, Upgrade"),
    "lowercase_names": req([GOOD_LINES[0]] +
                           [l.split(":")[0].lower() + ":" +
                            l.split(":", 1)[1] for l in GOOD_LINES[1:]]),
    "no_space_after_colon": replaced(1, "Host:localhost"),
    "trailing_spaces": replaced(2, "Upgrade: websocket  "),
    "two_connection_fields": with_line("Connection: keep-alive"),
    "protocol_in_two_fields": with_line("Sec-WebSocket-Protocol: a.b") +
    b"",
    # RFC 9112 2.2: a server SHOULD ignore empty lines before the request
    # line, as the admin listener does
    "leading_empty_line": b"\r\n" + req(GOOD_LINES),
    "leading_empty_lines": b"\r\n" * 3 + req(GOOD_LINES),
}


@pytest.mark.parametrize("case", sorted(VALID_VARIANTS))
def test_valid_variants_are_upgraded(gw, up, case):
    c = gw.raw()
    try:
        c.send(VALID_VARIANTS[case])
        head = c.read_until(b"\r\n\r\n", 5)
        resp = rawclient.HTTPResponse(head[:-4], b"")
        assert resp.status == 101, resp
        assert resp.one("Sec-WebSocket-Accept") == wsproto.accept_for(KEY)
        assert resp.header("Sec-WebSocket-Extensions") == [], resp
        c.send_frame(wsproto.OP_TEXT, b"variant ok")
        f = c.read_frame(5)
        assert f is not None and f.payload == b"variant ok", f
    finally:
        c.close()


def test_head_just_under_max_header_bytes_is_accepted(gw, up):
    base = len(B("/echo", key=KEY, extra=[("X-Pad", "")]))
    data = B("/echo", key=KEY, extra=[("X-Pad", "p" * (8000 - base))])
    assert 7900 < len(data) <= 8000
    c = gw.raw()
    try:
        c.send(data)
        head = c.read_until(b"\r\n\r\n", 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
    finally:
        c.close()


def test_handshake_timeout_does_not_apply_after_upgrade(slow_gw):
    slow_gw.up.behavior = __import__("rawup").ws_echo
    c = slow_gw.raw()
    try:
        c.upgrade("/echo")
        time.sleep(1.8)                 # past the 1s handshake_timeout
        c.send_frame(wsproto.OP_TEXT, b"still here")
        f = c.read_frame(5)
        assert f is not None and f.payload == b"still here", \
            (f, slow_gw.entries())
    finally:
        c.close()


# -- last: the module's gateway survived all of the above -------------------

def test_zz_normal_echo_still_works(gw, up):
    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("still alive")
            assert await asyncio.wait_for(ws.recv(), 5) == "still alive"
    run(go())
    assert gw.alive()
