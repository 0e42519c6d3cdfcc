"""Several TLS records in one TCP segment.

The gateway reads ahead: one read(2) can bring the client's Finished, its
request and its first frames at once, and OpenSSL holds the records it has
not been asked for yet.  Nothing more may be needed from the client for
them to be handled: each case sends its records in a single send() and
then only waits.
"""

import socket
import ssl
import time

import rawclient
import wsproto


class RecordClient:
    """TLS over a plain socket through memory BIOs, so that a test decides
    which records go out together.  Each write() is one record."""

    def __init__(self, port, ctx, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out,
                                server_hostname="localhost")
        self.buf = bytearray()

    def _pull(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise rawclient.Timeout("nothing more from the gateway")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            self.inc.write_eof()
        else:
            self.inc.write(data)
        return data

    def handshake(self, timeout=5.0):
        """Run the handshake; the client's last flight (its Finished) is
        left queued, to go out with what the test writes next."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                pending = self.out.read()
                if pending:
                    self.sock.sendall(pending)
                if not self._pull(deadline):
                    raise AssertionError("EOF during the handshake")

    def write(self, data):
        n = self.tls.write(data)
        assert n == len(data)

    def flush(self):
        """Everything queued, in one send()."""
        data = self.out.read()
        self.sock.sendall(data)
        return len(data)

    def read_until(self, pred, timeout=5.0):
        """Decrypted bytes until pred(buf) holds."""
        deadline = time.monotonic() + timeout
        while not pred(self.buf):
            try:
                chunk = self.tls.read(65536)
                if not chunk:
                    raise AssertionError("TLS EOF, have %r" %
                                         bytes(self.buf[:200]))
                self.buf += chunk
            except ssl.SSLWantReadError:
                if not self._pull(deadline):
                    raise AssertionError("EOF, have %r" %
                                         bytes(self.buf[:200]))
        return bytes(self.buf)

    def close(self):
        self.sock.close()


def frames_in(buf):
    """Complete frames at the start of buf, and the rest."""
    out = []
    while True:
        f, n = wsproto.decode_frame(bytes(buf))
        if f is None:
            return out, buf
        out.append(f)
        buf = buf[n:]


def upgrade(c):
    head = c.read_until(lambda b: b"\r\n\r\n" in b)
    i = head.index(b"\r\n\r\n") + 4
    resp = rawclient.HTTPResponse(head[:i - 4], b"")
    del c.buf[:i]
    return resp


def test_request_in_the_segment_that_ends_the_handshake(echo_gateway):
    """Finished, then the request in two records, then two frames, each in
    a record of its own: one send(), after which the client only reads."""
    gw = echo_gateway
    c = RecordClient(gw.port, gw.ssl)
    try:
        c.handshake()
        req = rawclient.build_request("/echo")
        half = len(req) // 2
        c.write(req[:half])
        c.write(req[half:])
        c.flush()
        resp = upgrade(c)
        assert resp.status == 101, resp
        msgs = [b"first record", b"second record"]
        for m in msgs:
            c.write(wsproto.encode_frame(wsproto.OP_TEXT, m))
        c.flush()
        got = []

        def have_all(buf):
            got[:] = frames_in(buf)[0]
            return len(got) >= len(msgs)
        c.read_until(have_all)
        assert [f.payload for f in got] == msgs, got
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["frames_in"] == 2, e


def test_many_records_in_one_segment_after_the_upgrade(echo_gateway):
    """Forty records in one send: whole frames, a frame cut over three
    records, and a frame whose header alone is a record."""
    gw = echo_gateway
    c = RecordClient(gw.port, gw.ssl)
    try:
        c.handshake()
        c.write(rawclient.build_request("/echo"))
        c.flush()
        assert upgrade(c).status == 101
        msgs = [("message %d" % i).encode() * (i + 1) for i in range(37)]
        for m in msgs[:-2]:
            c.write(wsproto.encode_frame(wsproto.OP_BINARY, m))
        cut = wsproto.encode_frame(wsproto.OP_BINARY, msgs[-2])
        third = len(cut) // 3
        c.write(cut[:third])
        c.write(cut[third:2 * third])
        c.write(cut[2 * third:])
        last = wsproto.encode_frame(wsproto.OP_BINARY, msgs[-1])
        c.write(last[:6])
        c.write(last[6:])
        sent = c.flush()
        assert sent > 40 * 22    # forty records, each with its overhead
        got = []

        def have_all(buf):
            got[:] = frames_in(buf)[0]
            return len(got) >= len(msgs)
        c.read_until(have_all)
        assert [f.payload for f in got] == msgs
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["frames_in"] == len(msgs), e
