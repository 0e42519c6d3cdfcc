"""A client that sends its request and then half-closes (shutdown(SHUT_WR),
as `printf ... | nc` does, or a TLS client's close_notify and FIN, or a
bare FIN) still reads the whole refusal, however long, also when it reads
slowly: its EOF, read while the answer is queued, must not throw the
answer away.  The access log's status is the one it was sent.  On
plaintext and TLS listeners alike.
"""

import socket
import ssl
import time

import pytest

import rawclient
import rawup
from conftest import fd_count, policy, wait_for

B = rawclient.build_request

# An upstream refusal as long as the gateway passes on: many challenges in
# its head, a body at the limit (WSG_MAX_UPSTREAM_BODY); more than the
# gateway's socket takes in one write while the client does not read.
CHALLENGES = [("WWW-Authenticate", 'Bearer realm="r%03d", scope="%s"' %
               (i, "s" * 200)) for i in range(60)]
BIG_BODY = (b"denied " * 600)[:4096]
BIG_REFUSAL = (b"HTTP/1.1 401 Unauthorized\r\n" + b"".join(
    b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in CHALLENGES) +
    b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" %
    len(BIG_BODY) + BIG_BODY)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "tls"])
def gw(request, module_factory, tmp_path_factory):
    be = module_factory.echo()
    big = module_factory.raw_upstream(rawup.respond(BIG_REFUSAL))
    secret = tmp_path_factory.mktemp("jwt") / "hmac.secret"
    secret.write_bytes(b"k" * 32)
    pols = {"origin": policy(origin={"allow": ["https://app.example.com"],
                                     "allow_missing": False}),
            "auth": policy(auth={"jwt": {"algorithms": ["HS256"],
                                         "key_file": str(secret)}})}
    g = module_factory.gateway(
        routes=[("/echo", "echo"), ("/big", "big"),
                ("/strict", "echo", "origin"), ("/auth", "echo", "auth")],
        upstreams={"echo": [be.addr], "big": [big.addr]}, policies=pols,
        tls=request.param)
    return g


class Client:
    """Plain TCP or TLS over memory BIOs, so that when close_notify and
    the FIN leave is the test's to say; a small receive buffer, so a
    long answer cannot all be in flight at once."""

    def __init__(self, gw, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(5)
        s.connect(("127.0.0.1", gw.port))
        self.sock = s
        self.local_port = s.getsockname()[1]
        self.tls = None
        if gw.tls:
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = gw.ssl.wrap_bio(self.inc, self.out,
                                       server_hostname="localhost")
            deadline = time.monotonic() + 5
            while True:
                try:
                    self.tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    self._pump(deadline)
            self._flush()

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pump(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        if not data:
            self.inc.write_eof()
            return False
        self.inc.write(data)
        return True

    def send_and_half_close(self, data, close_notify, wait=None):
        """The request, then (TLS, close_notify) close_notify, then FIN,
        as one write where it can be; or once wait() returns."""
        if self.tls is None:
            self.sock.sendall(data)
        else:
            self.tls.write(data)
            self._flush()
        if wait is not None:
            wait()
        if close_notify:
            try:
                self.tls.unwrap()
            except ssl.SSLWantReadError:
                pass
        if self.tls is not None:
            self._flush()
        self.sock.shutdown(socket.SHUT_WR)

    def read_all(self, timeout=8.0, chunk=65536, pause=0.0):
        """Everything until EOF (or the deadline), chunk by chunk."""
        deadline = time.monotonic() + timeout
        got = b""
        while time.monotonic() < deadline:
            if pause:
                time.sleep(pause)
            if self.tls is None:
                try:
                    self.sock.settimeout(max(0.01, deadline -
                                             time.monotonic()))
                    data = self.sock.recv(chunk)
                except (socket.timeout, ConnectionResetError):
                    break
                if not data:
                    break
                got += data
                continue
            try:
                data = self.tls.read(chunk)
                if not data:
                    break           # close_notify
                got += data
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            except ssl.SSLError:
                break
            try:
                if not self._pump(deadline):
                    try:
                        got += self.tls.read(chunk)
                    except ssl.SSLError:
                        pass
                    break
            except (socket.timeout, ConnectionResetError):
                break
        return got

    def close(self):
        self.sock.close()


def parse(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "no whole response head: %r" % data[:300]
    resp = rawclient.HTTPResponse(head, body)
    return resp


REFUSALS = {
    # name: (request, status, reason)
    "bad_request": (B("/echo", version=None), 400, "bad_request"),
    "auth_missing": (B("/auth"), 401, "auth_missing"),
    "no_route": (B("/nowhere"), 404, "no_route"),
    "origin_denied": (B("/strict", extra=[("Origin", "https://evil.test")]),
                      403, "origin_denied"),
    "garbled": (b"GET / HTTP/1.1\r\nHost: x\r\nBad header\r\n\r\n", 400,
                "bad_request"),
}

MODES = ["fin", "close_notify"]


def check_whole(gw, c, got, status, reason):
    resp = parse(got)
    assert resp.status == status, got[:300]
    n = int(resp.one("Content-Length"))
    assert len(resp.body) == n, "got %d of %d body bytes" % (
        len(resp.body), n)
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (status, reason), e
    return resp


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_half_closed_client_reads_the_refusal(gw, case, mode):
    if mode == "close_notify" and not gw.tls:
        pytest.skip("close_notify is TLS's")
    data, status, reason = REFUSALS[case]
    c = Client(gw)
    try:
        c.send_and_half_close(data, mode == "close_notify")
        got = c.read_all()
    finally:
        c.close()
    resp = check_whole(gw, c, got, status, reason)
    assert reason.encode() in resp.body, resp


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("slow", [False, True], ids=["reads", "slow"])
def test_half_closed_client_reads_a_long_upstream_refusal(gw, mode, slow):
    """The FIN comes once the upstream's refusal, too long for one write
    to a client that does not read yet, is queued (its access-log line is
    written then).  A FIN while the gateway still asks upstream is a
    client gone: client_dropped, no answer (test_upstream.py)."""
    if mode == "close_notify" and not gw.tls:
        pytest.skip("close_notify is TLS's")
    c = Client(gw, rcvbuf=4096)
    try:
        c.send_and_half_close(
            B("/big"), mode == "close_notify",
            wait=lambda: gw.wait_entry(client_port=c.local_port))
        got = c.read_all(chunk=1024 if slow else 65536,
                         pause=0.01 if slow else 0.0)
    finally:
        c.close()
    resp = check_whole(gw, c, got, 401, "upstream_refused")
    assert resp.body == BIG_BODY
    assert len(resp.header("WWW-Authenticate")) == len(CHALLENGES), resp


def test_half_closed_client_that_never_reads_is_let_go(gw):
    """A client that half-closes and never reads its long answer holds
    the gateway no longer than the linger time after the refusal."""
    before = fd_count(gw.pid)
    c = Client(gw, rcvbuf=4096)
    try:
        c.send_and_half_close(
            B("/big"), False,
            wait=lambda: gw.wait_entry(client_port=c.local_port))
        wait_for(lambda: fd_count(gw.pid) <= before, 10,
                 what="the connection of a client that never reads closed")
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (401, "upstream_refused"), e
