"""A real browser against the real gateway: Debian's headless Chromium,
driven by playwright-core (tests/browser/drive.mjs), opens
wss://127.0.0.1:GW/echo from pages served by two (three) origins.

- http://127.0.0.1:PAGE        allowed by the policy: the echo comes back;
- http://127.0.0.1:OTHER       same host, another port: refused;
- http://localhost:PAGE        same port, another host: refused.

The refused sockets fail in the browser (onerror, close 1006) and the
access log has one line per attempt with status 403, reason origin_denied
and the page's exact Origin.  The backend only ever sees the allowed one.

Needs /usr/bin/chromium, node and tests/browser/node_modules/playwright-core
(contrib/install-deps.sh installs all three).  Missing ones FAIL the test:
they are not a reason to skip.
"""

import http.server
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

from conftest import REPO, headers_of, policy, wait_for

BROWSER_DIR = REPO / "tests" / "browser"
DRIVE = BROWSER_DIR / "drive.mjs"
CHROMIUM = os.environ.get("WSGATE_CHROMIUM", "/usr/bin/chromium")
PAGE_TIMEOUT_MS = 15000
DRIVE_TIMEOUT_S = 90

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>wsgate origin test</title></head>
<body>
<script>
window.result = {origin: location.origin, events: [], messages: [],
                 error: false, close: null, exception: null, done: false};
(function () {
  var r = window.result;
  var target = new URLSearchParams(location.search).get('ws');
  var ws;
  try {
    ws = new WebSocket(target);
  } catch (e) {
    r.exception = String(e);
    r.done = true;
    return;
  }
  ws.onopen = function () { r.events.push('open'); ws.send('hello'); };
  ws.onmessage = function (m) {
    r.events.push('message');
    r.messages.push(String(m.data));
    ws.close(1000, 'bye');
  };
  ws.onerror = function () { r.events.push('error'); r.error = true; };
  ws.onclose = function (c) {
    r.events.push('close');
    r.close = {code: c.code, reason: c.reason, wasClean: c.wasClean};
    r.done = true;
  };
})();
</script>
</body></html>
"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.server.hits.append((self.headers.get("Host"), self.path))
        if self.path.split("?")[0] != "/":
            self.send_response(204 if self.path == "/favicon.ico" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, fmt, *args):
        pass


class PageServer:
    """A plaintext HTTP server on 127.0.0.1 serving PAGE, in a thread."""

    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     _PageHandler)
        self.httpd.daemon_threads = True
        self.httpd.hits = []
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def page_servers():
    servers = [PageServer(), PageServer()]
    yield servers
    for s in servers:
        s.close()


def require_tools():
    """Fail, do not skip, when the browser stack is missing."""
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append("Chromium at %s (Debian package chromium)" % CHROMIUM)
    node = shutil.which("node")
    if node is None:
        missing.append("node on PATH (Debian packages nodejs npm)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" /
            "package.json").is_file():
        missing.append("tests/browser/node_modules/playwright-core "
                       "(npm ci --prefix tests/browser)")
    if missing:
        pytest.fail("browser test prerequisites missing: %s; run "
                    "contrib/install-deps.sh as root" % "; ".join(missing),
                    pytrace=False)
    return node


def drive(node, urls, tmp_path):
    """Run drive.mjs on the URLs; return its JSON (and keep its output)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [node, str(DRIVE), "--chromium", CHROMIUM,
             "--timeout-ms", str(PAGE_TIMEOUT_MS)] + urls,
            cwd=str(BROWSER_DIR), capture_output=True,
            stdin=subprocess.DEVNULL, timeout=DRIVE_TIMEOUT_S,
            env=dict(os.environ, HOME=str(tmp_path)))
    except subprocess.TimeoutExpired as e:
        pytest.fail("drive.mjs did not finish in %ds; stderr:\n%s" %
                    (DRIVE_TIMEOUT_S, (e.stderr or b"").decode(
                        errors="replace")[-4000:]))
    elapsed = time.monotonic() - t0
    (tmp_path / "drive.stdout").write_bytes(p.stdout)
    (tmp_path / "drive.stderr").write_bytes(p.stderr)
    text = p.stdout.decode(errors="replace").strip()
    try:
        out = json.loads(text.splitlines()[-1]) if text else None
    except ValueError:
        out = None
    if out is None or not out.get("ok"):
        pytest.fail("drive.mjs failed (exit %s):\nstdout: %s\nstderr: %s" %
                    (p.returncode, text[-4000:],
                     p.stderr.decode(errors="replace")[-4000:]))
    print("drive.mjs: %s, %.1fs, exit %d" %
          (out.get("browser"), elapsed, p.returncode))
    for page in out["pages"]:
        print(json.dumps(page))
    assert p.returncode == 0, out
    return out


def test_browser_origin_allowed_and_denied(factory, page_servers, tmp_path):
    node = require_tools()
    allowed_srv, other_srv = page_servers
    allowed = "http://127.0.0.1:%d" % allowed_srv.port
    other_port = "http://127.0.0.1:%d" % other_srv.port
    other_host = "http://localhost:%d" % allowed_srv.port

    be = factory.echo()
    gw = factory.gateway(
        routes=[("/echo", "echo", "browser")],
        upstreams={"echo": [be.addr]},
        policies={"browser": policy(origin={"allow": [allowed]})})
    target = "wss://127.0.0.1:%d/echo" % gw.port

    urls = ["%s/?ws=%s" % (o, target) for o in (allowed, other_port,
                                                 other_host)]
    out = drive(node, urls, tmp_path)
    pages = {p["origin"]: p for p in out["pages"]}
    assert set(pages) == {allowed, other_port, other_host}, out

    # Allowed origin: opened, echoed, closed cleanly by the page.
    ok = pages[allowed]
    assert ok["error"] is None, ok
    r = ok["result"]
    assert r["origin"] == allowed, r
    assert r["messages"] == ["hello"], r
    assert r["events"][:2] == ["open", "message"], r
    assert not r["error"], r
    assert r["close"] == {"code": 1000, "reason": "bye", "wasClean": True}, r

    # Other origins: the handshake fails, the page sees error + 1006.
    for o in (other_port, other_host):
        pg = pages[o]
        assert pg["error"] is None, pg
        r = pg["result"]
        assert r["origin"] == o, r
        assert r["exception"] is None, r
        assert "open" not in r["events"] and r["messages"] == [], r
        assert r["error"] is True and "error" in r["events"], r
        assert r["close"]["code"] == 1006 and not r["close"]["wasClean"], r
        # Chromium's own console line names the gateway's answer.
        assert any("403" in line for line in pg["console"]), pg

    # The access log: one line per browser attempt, keyed by Origin.
    def by_origin():
        es = gw.entries()
        got = {o: [e for e in es if e.get("origin") == o]
               for o in (allowed, other_port, other_host)}
        return got if all(got.values()) else None
    logged = wait_for(by_origin, 5.0, what="access-log lines of each origin")
    time.sleep(0.3)             # let any stray second attempt be logged too
    logged = by_origin()

    assert len(logged[allowed]) == 1, logged[allowed]
    e = logged[allowed][0]
    assert e["status"] == 101 and e["reason"] == "client_closed", e
    assert e["close_code"] == 1000 and e["route"] == "/echo", e
    assert e["client"] == "127.0.0.1", e
    assert e["frames_in"] >= 2 and e["frames_out"] >= 2, e

    for o in (other_port, other_host):
        assert len(logged[o]) == 1, logged[o]
        e = logged[o][0]
        assert e["status"] == 403 and e["reason"] == "origin_denied", e
        assert e["origin"] == o, e
        assert e["close_code"] is None and e["frames_in"] == 0, e

    # No attempt without an Origin header, and nothing else refused.
    for e in gw.entries():
        assert e.get("origin") in (allowed, other_port, other_host), e

    # Only the allowed handshake reached the backend, with its Origin.
    opens = be.wait_event("open", 1)
    time.sleep(0.2)
    opens = be.events("open")
    assert len(opens) == 1, opens
    assert opens[0]["path"] == "/echo", opens
    assert headers_of(opens[0], "Origin") == [allowed], opens
    assert be.wait_event("close", 1)[0]["code"] == 1000

    # Each page was served once, under the Host its origin names.
    hosts = sorted(host for s in page_servers for host, path in s.httpd.hits
                   if path.startswith("/?"))
    assert hosts == sorted(o.split("//", 1)[1] for o in
                           (allowed, other_port, other_host)), hosts
