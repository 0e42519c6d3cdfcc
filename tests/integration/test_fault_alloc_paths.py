"""Allocation failures on the request path and on the main thread.

Only a daemon built with --enable-failalloc honours WSGATE_FAILALLOC
("ONE_IN:START_MS:DURATION_MS", ":ev" for libevent's allocations too,
":evbuf" for only those of its buffers,
":main" for the main thread's: reloads, the admin listener); against
another build these tests are skipped.  With ONE_IN 1 every OpenSSL allocation on the worker thread fails
during the window.  On a plaintext listener the TLS layer needs none, so a
request reaches the steps that do: the JWT signature check, the
Sec-WebSocket-Accept digest.

What a user must see for each: the request is refused with 500 and the
reason `internal_error` (never a 401 that blames a valid token), the access
log says so, the error log has "conn N: refused: internal_error: why"; a
session opened before the window relays through it; once it is over the
same requests are upgraded again; the daemon stays up and ASan finds
nothing (checked when the factory stops it).
"""

import asyncio
import http.client
import json
import os
import re
import time

import jwt as pyjwt
import pytest

import rawclient
from conftest import (echo_works, metric, needs_failalloc, openssl,
                      parse_metrics, policy, run, wait_for)

ISS, AUD = "https://issuer.wsgate.test", "chat-api"
HMAC_SECRET = b"wsgate-fault-alloc-paths-hmac-secret-0123456789"
START_MS, WINDOW_MS = 1500, 3000


pytestmark = needs_failalloc()


def start_window(gw, spec):
    """Start gw with a window of failing allocations, spec being ONE_IN
    and what fails ("3:evbuf": WSGATE_FAILALLOC="3:START_MS:WINDOW_MS:
    evbuf"): (opens, closes).  The daemon sets its clock between t0 and
    the end of the start, so the window surely covers [opens, closes)."""
    one_in, _, kinds = spec.partition(":")
    t0 = time.monotonic()
    gw.start(env=dict(os.environ, WSGATE_FAILALLOC="%s:%d:%d%s" % (
        one_in, START_MS, WINDOW_MS, ":" + kinds if kinds else "")))
    opens = time.monotonic() + START_MS / 1000.0
    closes = t0 + (START_MS + WINDOW_MS) / 1000.0
    return opens, closes


def echo_gateway(factory):
    """A plaintext gateway, not started, with one echo route."""
    be = factory.echo()
    return factory.gateway(routes=[("/echo", "echo")],
                           upstreams={"echo": [be.addr]}, tls=False,
                           start=False)


def requests_to_no_route(gw, closes, wait):
    """Requests to no route, one after another (400 at most) until the
    window is about to close, each reading up to wait s to the end:
    ({client port: what it read}, how many were tried)."""
    got = {}
    i = 0
    while time.monotonic() < closes - 0.2 and i < 400:
        i += 1
        try:
            c = gw.raw(timeout=1)
        except OSError:
            continue
        try:
            c.send(rawclient.build_request("/nowhere/%d" % i))
            got[c.local_port] = c.read_to_eof(wait)
        except (OSError, AssertionError):
            pass
        finally:
            c.close()
    return got, i


def auth(alg, key_file):
    return policy(auth={
        "header": "Authorization",
        "jwt": {"algorithms": [alg], "key_file": str(key_file),
                "issuer": ISS, "audience": AUD}})


@pytest.fixture
def setup(factory, tmp_path):
    """A plaintext gateway with an RS256, an HS256 and an open route, its
    window of failing allocations not yet open; valid tokens."""
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
            "rsa_keygen_bits:2048", "-out", tmp_path / "rsa.key")
    openssl("pkey", "-in", tmp_path / "rsa.key", "-pubout",
            "-out", tmp_path / "rsa.pub")
    (tmp_path / "hmac.secret").write_bytes(HMAC_SECRET)
    be = factory.echo()
    gw = factory.gateway(
        routes=[("/echo", "echo"), ("/rs", "echo", "rs"),
                ("/hs", "echo", "hs")],
        upstreams={"echo": [be.addr]},
        policies={"rs": auth("RS256", tmp_path / "rsa.pub"),
                  "hs": auth("HS256", tmp_path / "hmac.secret")},
        tls=False, start=False, admin=True)
    claims = {"sub": "alice", "iss": ISS, "aud": AUD,
              "exp": int(time.time()) + 3600}
    tokens = {
        "/rs": pyjwt.encode(claims, (tmp_path / "rsa.key").read_bytes(),
                            algorithm="RS256"),
        "/hs": pyjwt.encode(claims, HMAC_SECRET, algorithm="HS256"),
    }
    opens, closes = start_window(gw, "1")
    return gw, tokens, opens, closes


def request(gw, path, token=None):
    """One upgrade request: (response, access-log entry)."""
    extra = [("Authorization", "Bearer " + token)] if token else []
    c = gw.raw()
    try:
        c.send(rawclient.build_request(path, extra=extra))
        resp = c.http_response(timeout=5, to_eof=False)
        if resp.status != 101:
            resp.body = c.read_to_eof(5)
    finally:
        c.close()
    return resp, gw.wait_entry(client_port=c.local_port)


def in_window(gw, tokens, opens, closes, check):
    """Before the window: each route upgrades and a session is kept open.
    In it: check(gw, path, response, entry) for each route.  After it:
    the kept session still echoes and each route upgrades again."""
    paths = ["/rs", "/hs", "/echo"]
    for p in paths:
        resp, e = request(gw, p, tokens.get(p))
        assert resp.status == 101 and e["reason"] == "client_dropped", \
            (p, resp, e)
    kept = {"echoed": 0}

    async def keeper():
        async with gw.connect("/echo") as ws:
            i = 0
            while time.monotonic() < closes + 0.3 and i < 1000:
                await ws.send("kept-%d" % i)
                got = await asyncio.wait_for(ws.recv(), 5)
                assert got == "kept-%d" % i, got
                kept["echoed"] += 1
                i += 1
                await asyncio.sleep(0.05)

    async def main():
        task = asyncio.ensure_future(keeper())
        await asyncio.sleep(max(0.0, opens + 0.1 - time.monotonic()))
        if time.monotonic() > closes - 1.5:
            task.cancel()
            pytest.skip("the daemon took too long to start on this machine")
        got = []
        for p in paths:
            got.append((p,) + await asyncio.get_running_loop()
                       .run_in_executor(None, request, gw, p,
                                        tokens.get(p)))
        done = time.monotonic()
        await task
        return got, done

    got, done = run(main(), timeout=START_MS / 1000.0 + WINDOW_MS / 1000.0
                    + 30)
    assert done < closes, "the requests outlasted the window"
    for p, resp, e in got:
        check(gw, p, resp, e)
    assert kept["echoed"] > 0
    assert gw.alive(), gw.dump()
    for p in paths:
        resp, e = request(gw, p, tokens.get(p))
        assert resp.status == 101, (p, resp, gw.error_text()[-2000:])


def test_a_token_checked_without_memory_is_not_called_invalid(setup):
    """A valid token whose signature could not be checked for want of
    memory gets 500 internal_error, not 401 auth_invalid: the client is
    not told to throw its token away."""
    gw, tokens, opens, closes = setup

    def check(gw, p, resp, e):
        assert resp.status == 500, (p, resp, e)
        assert resp.body == b"internal_error\n", (p, resp, e)
        assert resp.header("Connection") == ["close"], resp
        assert e["status"] == 500 and e["reason"] == "internal_error", \
            (p, e)
    in_window(gw, tokens, opens, closes, check)
    samples = gw.metrics()
    assert metric(samples, "wsgate_rejections_total",
                  reason="internal_error") >= 3, samples
    assert metric(samples, "wsgate_rejections_total",
                  reason="auth_invalid") == 0, samples


def refusal_logged(gw, e, reason, level=r"\w+"):
    """The error-log lines "LEVEL: conn N: refused: REASON: why" of an
    entry."""
    pat = re.compile(r" %s: conn %d: refused: %s: \S" % (level, e["id"],
                                                        reason))
    return [ln for ln in gw.error_text().splitlines() if pat.search(ln)]


def test_internal_error_refusals_name_their_code(setup):
    """Every request refused with internal_error leaves an error-log line
    "conn N: refused: internal_error: why", as the other refusals do: the
    Sec-WebSocket-Accept digest that could not be computed left none.  It
    is at level warn, as wsgate.8 says, for a token that could not be
    checked too (that one was at info, out of sight at level: warn)."""
    gw, tokens, opens, closes = setup

    def check(gw, p, resp, e):
        assert resp.status == 500 and e["reason"] == "internal_error", \
            (p, resp, e)
        wait_for(lambda: refusal_logged(gw, e, "internal_error", "warn"), 5,
                 what="a warn line for %s (conn %d)" % (p, e["id"]))
    in_window(gw, tokens, opens, closes, check)


def scrape(port):
    """GET /metrics: (status, body), or (the exception's name, None)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        return r.status, r.read().decode()
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, None
    finally:
        c.close()


def test_a_scrape_is_whole_or_refused(factory):
    """libevent's allocations on the main thread fail one in ten for a
    window while /metrics is scraped: a scrape that could not be rendered
    whole is refused (503, or the connection closed), never answered 200
    with series missing, which Prometheus would read as counter resets
    and vanished series.  After the window every scrape is whole."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, tls=False,
                         start=False, admin=True)
    opens, closes = start_window(gw, "10:ev:main")
    status, body = scrape(gw.admin_port)
    assert status == 200, status
    series = set(parse_metrics(body))
    time.sleep(max(0.0, opens - time.monotonic()))
    seen = {}
    i = 0
    while time.monotonic() < closes - 0.2 and i < 300:
        i += 1
        status, body = scrape(gw.admin_port)
        if status == 200:
            missing = series - set(parse_metrics(body))
            assert not missing, "a 200 scrape without %d series: %r" % (
                len(missing), sorted(missing)[:5])
        seen[status] = seen.get(status, 0) + 1
    print("scrapes in the window: %r" % seen)
    assert set(seen) - {200}, "no scrape failed: the injection never " \
        "happened"
    assert gw.alive(), gw.dump()
    time.sleep(max(0.0, closes + 0.2 - time.monotonic()))
    for _ in range(3):
        status, body = scrape(gw.admin_port)
        assert status == 200 and set(parse_metrics(body)) == series


def test_access_log_lines_are_whole_or_missing(factory):
    """libevent's buffer allocations (":evbuf": not its small structures,
    one of which libevent 2.1.12 does not check) on the worker thread
    fail one in three for a window while short connections are refused: each access-log line is
    a whole JSON object with every field, never a line that lost the
    part an allocation failed to add (a torn line breaks every JSON-lines
    reader of the file); a line given up is named in the error log."""
    gw = echo_gateway(factory)
    opens, closes = start_window(gw, "3:evbuf")
    time.sleep(max(0.0, opens - time.monotonic()))
    _, i = requests_to_no_route(gw, closes, 1)
    # the daemon's clock started after t0: its window ends a little later
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    echo_works(gw)
    assert gw.alive(), gw.dump()
    lines = gw.access_log.read_text().split("\n")
    assert lines[-1] == "", lines[-1][:300]
    keys = None
    for line in lines[:-1]:
        try:
            e = json.loads(line)
        except ValueError:
            e = None
        assert isinstance(e, dict), "a torn access-log line: %r" % line
        keys = keys or set(e)
        assert set(e) == keys, "fields missing: %r" % (keys - set(e))
    lost = len(re.findall(r"conn \d+: access-log line lost",
                          gw.error_text()))
    print("%d requests, %d lines, %d lines lost" % (i, len(lines) - 1,
                                                     lost))
    assert lost > 0, "no line was lost: the injection never happened"


def test_a_refusal_not_written_is_logged_without_a_status(factory):
    """wsgate(8): status is the HTTP status sent to the client, null when
    no response was sent.  With one in three buffer allocations failing,
    some 404 answers cannot be queued at all: the client reads nothing
    but the end, and its no_route line must say status null, not 404.
    A client that got the 404 has a line that says 404."""
    gw = echo_gateway(factory)
    opens, closes = start_window(gw, "3:evbuf")
    time.sleep(max(0.0, opens - time.monotonic()))
    got, _ = requests_to_no_route(gw, closes, 2)
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    assert gw.alive(), gw.dump()
    seen = {"none": 0, "404": 0}
    for e in gw.entries():
        if e["client_port"] not in got or e["reason"] != "no_route":
            continue
        data = got[e["client_port"]]
        if data == b"":
            assert e["status"] is None, \
                "no answer reached the client, yet logged: %r" % e
            seen["none"] += 1
        elif data.startswith(b"HTTP/1.1 404 "):
            assert e["status"] == 404, e
            seen["404"] += 1
    print(seen)
    assert seen["none"] and seen["404"], seen


def test_a_read_without_memory_blames_no_peer(factory):
    """libevent's buffer allocations on the worker thread fail one in
    twenty for a window while plaintext sessions relay messages both
    ways: a read that finds no memory for its bytes ends the session as
    internal_error (1011 to both sides), never as upstream_error, which
    says the upstream hung up (the echo backend never does), nor as
    client_dropped."""
    import threading
    import wsproto
    gw = echo_gateway(factory)
    opens, closes = start_window(gw, "20:evbuf")
    codes = []

    def client(k):
        for n in range(200):
            if time.monotonic() > closes:
                return
            try:
                c = gw.raw(timeout=2)
                c.upgrade("/echo")
                for i in range(50):
                    if time.monotonic() > closes:
                        break
                    msg = b"%d-%d-" % (k, i) + b"x" * 3000
                    c.send_frame(wsproto.OP_BINARY, msg)
                    f = c.read_frame(2)
                    if f is None or f.opcode == wsproto.OP_CLOSE:
                        codes.append(f and f.payload[:2])
                        break
                else:
                    c.send_frame(wsproto.OP_CLOSE,
                                 wsproto.close_payload(1000))
                    c.read_close(2)
                c.close()
            except (OSError, AssertionError):
                pass
    time.sleep(max(0.0, opens - time.monotonic()))
    ths = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(30)
    # the daemon's clock started after t0: its window ends a little later
    time.sleep(max(0.0, closes + 1.0 - time.monotonic()))
    echo_works(gw)
    reasons = {}
    for e in gw.entries():
        reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
    print("reasons: %r" % reasons)
    assert "upstream_error" not in reasons, reasons
    assert reasons.get("internal_error"), "no session ran out of memory"


def test_a_reload_without_memory_keeps_the_running_configuration(factory):
    """Every OpenSSL allocation of the main thread fails for a window in
    which SIGHUP asks for reloads of a TLS listener's configuration: each
    fails (its TLS context cannot be made), is counted as failed and
    leaves the running configuration serving; after the window a reload
    succeeds.  ASan finds nothing to say about the half-built ones."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False,
                         admin=True)
    opens, closes = start_window(gw, "1:main")
    echo_works(gw)
    time.sleep(max(0.0, opens - time.monotonic()))
    n = 0
    while time.monotonic() < closes - 1.0 and n < 5:
        gw.reload(expect="failed")
        n += 1
    assert n > 0, "the daemon took too long to start on this machine"
    samples = gw.metrics()
    assert metric(samples, "wsgate_config_reloads_total",
                  result="failed") == n, samples
    assert metric(samples, "wsgate_config_reloads_total",
                  result="ok") == 0, samples
    time.sleep(max(0.0, closes + 0.2 - time.monotonic()))
    echo_works(gw)
    gw.reload()
    echo_works(gw)
    assert metric(gw.metrics(), "wsgate_config_reloads_total",
                  result="ok") == 1
