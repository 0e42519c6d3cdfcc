"""Buffer allocations failing while handshakes are under way.

Only a daemon built with --enable-failalloc honours WSGATE_FAILALLOC
(":evbuf": libevent's buffer allocations of 1024 bytes and more fail one
in ONE_IN on the worker thread during the window); against another build
these tests are skipped.

What a user must see: the upgrade request the upstream gets is whole or
not sent at all (no header missing, none run into the next); the client
gets a whole response head (the 101, a refusal passed through, or 500
internal_error) or none, never part of one; a server that is up is not
marked down for the gateway's own want of memory.
"""

import os
import re
import threading
import time

import jwt as pyjwt

import rawclient
import rawup
import wsproto
from conftest import metric, needs_failalloc, policy, wait_for

START_MS, WINDOW_MS = 1500, 3000
HMAC_SECRET = b"wsgate-fault-alloc-handshake-hmac-secret-0123456789"
PADS = [("X-Pad-%d" % i, ("p%d-" % i) * 100) for i in range(6)]
TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


pytestmark = needs_failalloc()


def start(gw, one_in):
    """Start gw with its window of failing buffer allocations: the time
    it closes (on the daemon's clock or later)."""
    t0 = time.monotonic()
    gw.start(env=dict(os.environ, WSGATE_FAILALLOC="%d:%d:%d:evbuf" % (
        one_in, START_MS, WINDOW_MS)))
    time.sleep(max(0.0, t0 + START_MS / 1000.0 - time.monotonic()))
    return t0 + (START_MS + WINDOW_MS) / 1000.0


def hammer(gw, closes, one, nthreads=3, limit=150):
    """Clients sending requests during the window; one(i) runs each."""
    def worker(k):
        for i in range(limit):
            if time.monotonic() > closes - 0.2:
                return
            one(k * limit + i)
    ths = [threading.Thread(target=worker, args=(k,))
           for k in range(nthreads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)


def exchange(gw, req, wait=2):
    """Send req; the response head and body the gateway sent back (a 101
    without waiting for more), or what came before it closed (or before
    wait seconds of silence)."""
    try:
        c = gw.raw(timeout=wait)
    except OSError:
        return None
    try:
        c.send(req)
        deadline = time.monotonic() + wait
        while b"\r\n\r\n" not in c.buf and c._fill(deadline):
            pass
        if c.buf.startswith(b"HTTP/1.1 101 "):
            return bytes(c.buf)
        return c.read_to_eof(wait)
    except (OSError, AssertionError):
        return None
    finally:
        c.close()


def upgrades_after(gw, path, extra=()):
    """Once the window is over, a request to path is upgraded again."""
    data = exchange(gw, rawclient.build_request(path, protocols="chat",
                                                extra=list(extra)))
    assert data and data.startswith(b"HTTP/1.1 101 "), (data, gw.dump())


def whole_refusal(data, status):
    """data is a whole HTTP/1.1 response head with this status and a body
    of its Content-Length; the head's header lines."""
    assert b"\r\n\r\n" in data, "a response head cut short: %r" % data[:300]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert re.match(r"^HTTP/1\.1 %d [A-Za-z -]+$" % status, lines[0]), \
        "a torn status line: %r" % data[:300]
    hdrs = {}
    for ln in lines[1:]:
        k, sep, v = ln.partition(": ")
        assert sep and TOKEN_RE.match(k), \
            "a torn header line %r in %r" % (ln, data[:300])
        assert k.lower() not in hdrs, "%s twice: %r" % (k, data[:300])
        hdrs[k.lower()] = v
    if "content-length" in hdrs:
        assert len(body) == int(hdrs["content-length"]), \
            "a body cut short: %r" % data[:300]
    return hdrs


WANT = dict([("host", ["localhost"]), ("upgrade", ["websocket"]),
             ("connection", ["Upgrade"]), ("sec-websocket-version", ["13"]),
             ("sec-websocket-protocol", ["chat"]),
             ("x-wsgate-user", ["alice"]),
             ("x-forwarded-for", ["127.0.0.1"]),
             ("x-forwarded-proto", ["http"]),
             ("x-forwarded-host", ["localhost"])] +
            [(k.lower(), [v]) for k, v in PADS])


def torn(c):
    """None if the request c got is whole, else what is wrong with it."""
    if c.head is None:
        return "no end of the head"
    hdrs = {}
    for ln in c.head.decode("latin-1").split("\r\n")[1:]:
        k, sep, v = ln.partition(": ")
        if not sep or not TOKEN_RE.match(k):
            return "a torn line %r" % ln[:80]
        hdrs.setdefault(k.lower(), []).append(v)
    for k, v in WANT.items():
        if hdrs.get(k) != v:
            return "%s: %r" % (k, [x[:80] for x in hdrs.get(k, [])])
    return None


def test_upstream_requests_are_whole(factory):
    """One buffer allocation in eight fails while requests of some 3 KB
    (six padding headers, a subprotocol, a forwarded claim) are sent: each
    request the upstream gets carries every header, each on its own line,
    and the X-Forwarded-* the gateway adds; a request that could not be
    built whole is refused with 500 internal_error, not sent."""
    def judge(c):
        """101 to a whole request, 400 to a torn one."""
        if not c.read_head(5):
            return
        if c.request_line == "GET /echo HTTP/1.1" and torn(c) is None:
            c.accept_101("chat")
        else:
            c.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                   b"\r\n")
        c.drain(3)
    # Two servers: while another is left to try, the request is added
    # to the connection by reference, which can run out of memory midway.
    ups = [factory.raw_upstream(judge) for _ in range(2)]
    tmp = factory.tmpdir / "hmac.secret"
    tmp.write_bytes(HMAC_SECRET)
    gw = factory.gateway(
        routes=[("/echo", "up", "jwt")],
        upstreams={"up": [u.addr for u in ups]},
        policies={"jwt": policy(auth={
            "header": "Authorization",
            "jwt": {"algorithms": ["HS256"], "key_file": str(tmp),
                    "forward_claims": {"sub": "X-Wsgate-User"}}})},
        tls=False, start=False)
    token = pyjwt.encode({"sub": "alice", "exp": int(time.time()) + 3600},
                         HMAC_SECRET, algorithm="HS256")
    closes = start(gw, 8)
    got = {}

    def one(i):
        req = rawclient.build_request(
            "/echo", protocols="chat",
            extra=[("Authorization", "Bearer " + token)] + PADS)
        data = exchange(gw, req)
        st = data[9:12] if data and data.startswith(b"HTTP/1.1 ") else \
            (b"junk" if data else b"nothing")
        got[st.decode()] = got.get(st.decode(), 0) + 1
    hammer(gw, closes, one)
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    assert gw.alive(), gw.dump()
    conns = ups[0].connections() + ups[1].connections()
    bad = []
    for c in conns:
        c.done.wait(12)
        if c.data and torn(c) is not None:
            bad.append((torn(c), bytes(c.data[:3000])))
    print("client answers: %r; upstream requests: %d" % (got, len(conns)))
    assert not bad, "%d of %d requests torn, the first: %r" % (
        len(bad), len(conns), bad[0])
    assert got.get("500"), "no request ran out of memory: %r" % got
    assert got.get("101"), "no request was upgraded: %r" % got
    refused = [e for e in gw.entries() if e["reason"] == "upstream_refused"]
    assert not refused, refused[:3]
    upgrades_after(gw, "/echo", [("Authorization", "Bearer " + token)] +
                   PADS)


REFUSAL_BODY = b"".join(b"refused-%04d\n" % i for i in range(120))
UP_PAD = "u" * 1500
# End-to-end fields of the upstream's 101 the client's 101 passes on.
UP_101_FIELDS = (b"Set-Cookie: lb=ok-1; Path=/\r\nX-Pad-Up: " +
                 UP_PAD.encode() + b"\r\n")


def test_answers_to_the_client_are_whole(factory):
    """One buffer allocation in six fails while clients are upgraded by
    one upstream and refused by another (403 with a challenge, a retry
    time, a location and a 1.5 KB body): every answer a client gets is a
    whole 101 with its Sec-WebSocket-Accept, subprotocol and the
    upstream's end-to-end fields (a cookie, a 1.5 KB field), the whole
    403 with every field and its body, or a whole 500 internal_error, or
    nothing; never part of a head, which a client reads as a different
    answer or none it can parse."""
    ok = factory.raw_upstream(lambda c: c.read_head(5) and (
        c.accept_101("chat", extra=UP_101_FIELDS), c.drain(3)))
    no = factory.raw_upstream(rawup.respond(
        b"HTTP/1.1 403 Forbidden\r\nWWW-Authenticate: Bearer realm=\"x\"\r\n"
        b"Retry-After: 7\r\nLocation: /elsewhere\r\n"
        b"Content-Type: text/x-refusal\r\n"
        b"Content-Length: %d\r\n\r\n" % len(REFUSAL_BODY) + REFUSAL_BODY))
    gw = factory.gateway(routes=[("/ok", "ok"), ("/no", "no")],
                         upstreams={"ok": [ok.addr], "no": [no.addr]},
                         tls=False, start=False)
    closes = start(gw, 6)
    got = {}
    torn = []

    def one(i):
        path = ("/ok", "/no")[i % 2]
        key = wsproto.new_key()
        data = exchange(gw, rawclient.build_request(path, key=key,
                                                    protocols="chat"))
        if not data:
            got["nothing"] = got.get("nothing", 0) + 1
            return
        try:
            if data.startswith(b"HTTP/1.1 101 "):
                h = whole_refusal(data.partition(b"\r\n\r\n")[0] +
                                  b"\r\n\r\n", 101)
                assert h == {"upgrade": "websocket",
                             "connection": "Upgrade",
                             "sec-websocket-accept": wsproto.accept_for(key),
                             "sec-websocket-protocol": "chat",
                             "set-cookie": "lb=ok-1; Path=/",
                             "x-pad-up": UP_PAD}, h
                got["101"] = got.get("101", 0) + 1
            elif data.startswith(b"HTTP/1.1 403 "):
                h = whole_refusal(data, 403)
                assert h == {"connection": "close",
                             "www-authenticate": "Bearer realm=\"x\"",
                             "retry-after": "7", "location": "/elsewhere",
                             "content-type": "text/x-refusal",
                             "content-length": str(len(REFUSAL_BODY))}, h
                assert data.endswith(b"\r\n\r\n" + REFUSAL_BODY)
                got["403"] = got.get("403", 0) + 1
            elif data.startswith(b"HTTP/1.1 500 "):
                h = whole_refusal(data, 500)
                assert data.endswith(b"\r\n\r\ninternal_error\n"), data
                got["500"] = got.get("500", 0) + 1
            else:
                # another refusal of the gateway's own: whole, too
                st = int(data[9:12]) if re.match(rb"HTTP/1\.1 \d{3} ",
                                                 data) else 0
                whole_refusal(data, st)
                got[str(st)] = got.get(str(st), 0) + 1
        except AssertionError as e:
            torn.append((path, str(e)[:400]))
    hammer(gw, closes, one)
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    assert gw.alive(), gw.dump()
    print("client answers: %r, %d torn" % (got, len(torn)))
    assert not torn, "%d answers torn, the first: %r" % (len(torn),
                                                         torn[:3])
    assert got.get("500"), "no answer ran out of memory: %r" % got
    assert got.get("101") and got.get("403"), got
    upgrades_after(gw, "/ok")


def all_closed(gw):
    """Every connection the error log says was accepted has ended."""
    log = gw.error_text()
    return set(re.findall(r"conn (\d+): accepted from ", log)) <= \
        set(re.findall(r"conn (\d+): closed: ", log))


def test_our_want_of_memory_blames_no_server(factory):
    """One buffer allocation in six fails while clients are upgraded by a
    group of two healthy upstream servers (fail_timeout 1h): the gateway's
    own failures never count as a connect failure, never mark a server
    down, and are never answered 502/504 upstream_unavailable (which says
    no server would take the connection); they are 500 internal_error."""
    ups = [factory.raw_upstream(lambda c: c.read_head(5) and (
        c.accept_101("chat"), c.drain(3))) for _ in range(2)]
    # The servers are threads of this process, slow to answer on a loaded
    # machine: a long deadline for their 101, clients that wait longer
    # than it, and every connection waited for below, so that a request
    # our want of memory lost still ends as the 504 looked for here.
    gw = factory.gateway(routes=[("/ok", "grp")],
                         upstreams={"grp": {
                             "servers": [u.addr for u in ups],
                             "connect_timeout": "8s",
                             "fail_timeout": "1h"}},
                         tls=False, start=False, admin=True)
    closes = start(gw, 6)
    got = {}

    def one(i):
        data = exchange(gw, rawclient.build_request("/ok",
                                                    protocols="chat"), 10)
        st = data[9:12].decode() if data and data.startswith(
            b"HTTP/1.1 ") else "nothing"
        got[st] = got.get(st, 0) + 1
    hammer(gw, closes, one)
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    wait_for(lambda: all_closed(gw), 15,
             what="every accepted connection's end")
    assert gw.alive(), gw.dump()
    m = gw.metrics()
    log = gw.error_text()
    whys = {}
    for w in re.findall(r"refused: internal_error: (.*)", log):
        whys[w] = whys.get(w, 0) + 1
    print("client answers: %r; internal errors: %r" % (got, whys))
    unavailable = [e for e in gw.entries()
                   if e["reason"] == "upstream_unavailable"]
    assert not unavailable, (unavailable[:3], [
        ln for ln in log.splitlines() if "upstream_unavailable" in ln or
        "connect failed" in ln][:5])
    assert "down, skipped" not in log, log[-3000:]
    for u in ups:
        assert metric(m, "wsgate_upstream_server_up", upstream="grp",
                      server=u.addr) == 1, m
    assert (metric(m, "wsgate_upstream_connect_failures_total",
                   upstream="grp") or 0) == 0, m
    assert got.get("500") and got.get("101"), got
    upgrades_after(gw, "/ok")


def ok_gateway(factory, **over):
    """A gateway (not started) whose /ok goes to an upstream that
    upgrades every request."""
    up = factory.raw_upstream(lambda c: c.read_head(5) and (
        c.accept_101(), c.drain(3)))
    return factory.gateway(routes=[("/ok", "up")],
                           upstreams={"up": [up.addr]},
                           tls=False, start=False, **over)


def one_client(gw, ports, send):
    """One client: its port goes in ports, send(c) sends its request,
    and it reads a response head for up to 2 s; a refusal, a reset or
    silence is all the same here (the access log is what is checked)."""
    try:
        c = gw.raw(timeout=2)
    except OSError:
        return
    try:
        ports.add(c.local_port)
        send(c)
        c.read_until(b"\r\n\r\n", 2)
    except (OSError, AssertionError):
        pass
    finally:
        c.close()


def test_a_request_read_without_memory_blames_no_client(factory):
    """One buffer allocation in six fails while clients send whole
    upgrade requests at once: a request the gateway had no memory to read
    is refused 500 internal_error (or closed without an answer when even
    that cannot be written), logged as such, never handshake_failed,
    which says the client went away before sending all of it."""
    gw = ok_gateway(factory)
    closes = start(gw, 6)
    ports = set()

    def whole(c):
        c.send(rawclient.build_request("/ok"))
    hammer(gw, closes, lambda i: one_client(gw, ports, whole))
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    assert gw.alive(), gw.dump()
    reasons = {}
    blamed = []
    for e in gw.entries():
        if e["client_port"] not in ports:
            continue
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
        if e["reason"] == "handshake_failed":
            blamed.append(e)
    print("reasons: %r" % reasons)
    assert not blamed, "%d clients blamed, the first: %r" % (len(blamed),
                                                             blamed[0])
    assert reasons.get("internal_error"), reasons
    upgrades_after(gw, "/ok")


def test_a_request_read_without_memory_counts_its_bytes_once(factory):
    """A client whose request head came in pieces, refused 500
    internal_error when a later piece could not be read for want of
    memory: bytes_in is what it had sent by then (wsgate(8): everything
    the client sent), counted once, never more than the whole head."""
    gw = ok_gateway(factory, listener={"max_header_bytes": "64KiB"})
    closes = start(gw, 4)
    # Past a buffer chain's size, so that the second piece needs memory.
    req = rawclient.build_request("/ok", extra=[("X-Pad", "p" * 20000)])
    first = 12000
    sent = set()

    def in_two(c):
        c.send(req[:first])
        time.sleep(0.02)
        c.send(req[first:])
    hammer(gw, closes, lambda i: one_client(gw, sent, in_two))
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    assert gw.alive(), gw.dump()
    entries = [e for e in gw.entries() if e["client_port"] in sent]
    over = [e for e in entries if e["bytes_in"] > len(req)]
    assert not over, "%d lines over the %d bytes sent, the first: %r" % (
        len(over), len(req), over[0])
    # The case itself came up: a read refused with part of a head held.
    mark = "out of memory reading the request"
    ids = set()
    for ln in gw.error_text().splitlines():
        if ln.endswith(mark) and "conn " in ln:
            ids.add(int(ln.split("conn ", 1)[1].split(":", 1)[0]))
    assert [e for e in entries if e["id"] in ids and e["bytes_in"] > 0], \
        "no request refused for memory with part of its head read"
    upgrades_after(gw, "/ok")
