"""A raw-socket WebSocket client (TLS or plaintext) for invalid bytes.

Every read has a timeout; nothing here can block forever.
"""

import socket
import ssl
import time

import wsproto


class Timeout(AssertionError):
    pass


class HTTPResponse:
    def __init__(self, head, body):
        self.raw_head = head
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        parts = lines[0].split(" ", 2)
        self.version = parts[0]
        self.status = int(parts[1]) if len(parts) > 1 and \
            parts[1].isdigit() else None
        self.headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            self.headers.append((name.strip(), value.strip()))
        self.body = body

    def header(self, name):
        """All values of a header (case-insensitive name)."""
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def one(self, name):
        vals = self.header(name)
        assert len(vals) == 1, "expected one %s header, got %r in %r" % (
            name, vals, self.raw_head)
        return vals[0]

    def __repr__(self):
        return "HTTPResponse(%r, body=%r)" % (self.raw_head, self.body[:200])


def build_request(path="/echo", host="localhost", key=None, version="13",
                  method="GET", extra=(), connection="Upgrade",
                  upgrade="websocket", protocols=None, proto="HTTP/1.1"):
    """A well-formed upgrade request head, as bytes (CRLF line ends)."""
    if key is None:
        key = wsproto.new_key()
    lines = ["%s %s %s" % (method, path, proto)]
    if host is not None:
        lines.append("Host: %s" % host)
    if upgrade is not None:
        lines.append("Upgrade: %s" % upgrade)
    if connection is not None:
        lines.append("Connection: %s" % connection)
    if key is not False:
        lines.append("Sec-WebSocket-Key: %s" % key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: %s" % version)
    if protocols:
        lines.append("Sec-WebSocket-Protocol: %s" % protocols)
    for k, v in extra:
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class RawClient:
    def __init__(self, port, tls_ctx=None, timeout=5.0, rcvbuf=None,
                 do_tls_handshake=True, host="127.0.0.1"):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                          socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
        self.local_port = s.getsockname()[1]
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost",
                                    do_handshake_on_connect=do_tls_handshake)
        self.sock = s
        self.buf = bytearray()
        self.eof = False
        self.key = None

    # -- bytes ------------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Send, returning False if the peer has gone away."""
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def _fill(self, deadline):
        """Read once into buf. Returns False on EOF; raises Timeout."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Timeout("timed out waiting for data; have %r" %
                          bytes(self.buf[:300]))
        # The read's own short timeout must not outlive it: a later
        # sendall() of a large frame would inherit it and fail on a busy
        # machine although the gateway is reading.
        before = self.sock.gettimeout()
        self.sock.settimeout(min(remaining, 1.0))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except ssl.SSLWantReadError:
            return True
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError,
                ssl.SSLZeroReturnError):
            self.eof = True
            return False
        except ssl.SSLError:
            self.eof = True
            return False
        finally:
            self.sock.settimeout(before)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_until(self, marker, timeout=5.0, limit=1 << 20):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("no %r in %d bytes" % (marker, limit))
            if not self._fill(deadline):
                raise AssertionError("EOF before %r; got %r" %
                                     (marker, bytes(self.buf[:500])))
        i = self.buf.index(marker) + len(marker)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def read_to_eof(self, timeout=5.0, limit=1 << 20):
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            if len(self.buf) > limit:
                raise AssertionError("peer sent over %d bytes" % limit)
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_closed(self, timeout=5.0):
        """True once the peer has closed; anything read is kept in buf."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except Timeout:
            return False
        return True

    # -- HTTP -------------------------------------------------------------

    def http_response(self, timeout=5.0, to_eof=True):
        """Read a response head, then the body (to EOF by default)."""
        head = self.read_until(b"\r\n\r\n", timeout)
        if to_eof:
            body = self.read_to_eof(timeout)
        else:
            body = b""
        return HTTPResponse(head[:-4], body)

    def upgrade(self, path="/echo", timeout=5.0, **kw):
        """Send a valid upgrade request and expect 101."""
        self.key = kw.pop("key", None) or wsproto.new_key()
        self.send(build_request(path, key=self.key, **kw))
        head = self.read_until(b"\r\n\r\n", timeout)
        resp = HTTPResponse(head[:-4], b"")
        assert resp.status == 101, "expected 101, got %r" % resp
        assert resp.one("Sec-WebSocket-Accept") == \
            wsproto.accept_for(self.key), resp
        return resp

    # -- frames -----------------------------------------------------------

    def send_frame(self, opcode, payload=b"", **kw):
        self.send(wsproto.encode_frame(opcode, payload, **kw))

    def read_frame(self, timeout=5.0):
        """The next frame, or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            f, n = wsproto.decode_frame(self.buf)
            if f is not None:
                del self.buf[:n]
                return f
            if not self._fill(deadline):
                return None

    def read_close(self, timeout=5.0, max_frames=10000):
        """Read frames until a close frame; returns (close_frame, others).

        Fails if the connection ends without a close frame.
        """
        others = []
        deadline = time.monotonic() + timeout
        for _ in range(max_frames):
            f = self.read_frame(max(0.01, deadline - time.monotonic()))
            if f is None:
                raise AssertionError(
                    "connection ended without a close frame; frames: %r" %
                    others[:20])
            if f.opcode == wsproto.OP_CLOSE:
                return f, others
            others.append(f)
        raise AssertionError("no close frame in %d frames" % max_frames)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
