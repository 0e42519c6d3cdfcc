"""Several TLS records in one TCP segment.

The gateway reads ahead: one read(2) can bring the client's Finished, its
request and its first frames at once, and OpenSSL holds the records it has
not been asked for yet.  Nothing more may be needed from the client for
them to be handled: each case sends its records in a single send() and
then only waits.
"""

import os
import select
import socket
import ssl
import subprocess
import time

import pytest

import rawclient
import wsproto
from conftest import (PreClient, echo_works, failalloc_build, http_upgrade,
                      wait_for)


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

    def read_to_close_notify(self, timeout=5.0):
        """Decrypted bytes into buf until the peer's close_notify: True,
        or False if the connection ends without it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLZeroReturnError:
                return True
            except ssl.SSLEOFError:
                return False
            except ssl.SSLWantReadError:
                if not self._pull(deadline):
                    return False
                continue
            if not chunk:
                return True
            self.buf += chunk

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


def open_session(c):
    """Handshake, the request in one record, and the 101."""
    c.handshake()
    c.write(rawclient.build_request("/echo"))
    c.flush()
    resp = upgrade(c)
    assert resp.status == 101, resp


def echo_one(c, payload):
    """Send one binary frame and return the payload of the first frame
    that comes back."""
    c.write(wsproto.encode_frame(wsproto.OP_BINARY, payload))
    c.flush()
    got = []

    def have_one(buf):
        got[:] = frames_in(buf)[0]
        return len(got) >= 1
    c.read_until(have_one)
    return got[0].payload


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
        open_session(c)
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


def test_tls13_session_moves_to_wsgate_record_layer(echo_gateway):
    """Once upgraded, a TLS 1.3 session's records are sealed and opened by
    wsgate (src/tls13.c): a 40000-byte message crosses in three records
    each way, byte for byte."""
    gw = echo_gateway
    c = RecordClient(gw.port, gw.ssl)
    try:
        open_session(c)
        assert c.tls.version() == "TLSv1.3"
        wait_for(lambda: "TLS records now sealed and opened by wsgate"
                 in gw.error_text(), what="the record layer's takeover")
        msg = bytes((i * 7 + 3) & 0xff for i in range(40000))
        assert echo_one(c, msg) == msg
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["bytes_out"] >= 40000, e


def tls12_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_forged_record_after_upgrade_is_refused_with_an_alert(echo_gateway,
                                                              version):
    """A record that does not decrypt: the client gets a bad_record_mac
    alert, the session ends as client_dropped with the reason in the
    error log, and the gateway serves others.  wsgate's record layer reads
    it on TLS 1.3, OpenSSL's on TLS 1.2 (which queues a provider error
    ahead of the SSL one: the log still names the SSL one)."""
    gw = echo_gateway
    c = RecordClient(gw.port, gw.ssl if version == "TLSv1.3" else
                     tls12_context())
    try:
        open_session(c)
        assert c.tls.version() == version
        c.sock.sendall(b"\x17\x03\x03\x00\x20" + bytes(32))
        with pytest.raises(ssl.SSLError) as ei:
            c.read_until(lambda b: False)
        assert "BAD_RECORD_MAC" in str(ei.value).upper(), ei.value
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "client_dropped", e
    wait_for(lambda: "client TLS error: decryption failed or bad record mac"
             in gw.error_text(), what="the TLS error in the error log")
    echo_works(gw)


def test_tls12_session_stays_with_openssl(echo_gateway):
    """TLS 1.2 keeps OpenSSL's record layer after the upgrade, and works."""
    gw = echo_gateway
    c = RecordClient(gw.port, tls12_context())
    try:
        open_session(c)
        assert c.tls.version() == "TLSv1.2"
        msg = b"twelve" * 5000
        assert echo_one(c, msg) == msg
    finally:
        c.close()
    gw.wait_entry(client_port=c.local_port)
    assert "upgraded to" in gw.error_text()
    assert "TLS records now sealed and opened by wsgate" \
        not in gw.error_text()



def records_of(data):
    """Offsets where each TLS record in data starts."""
    offs, i = [], 0
    while i + 5 <= len(data):
        offs.append(i)
        i += 5 + int.from_bytes(data[i + 3:i + 5], "big")
    assert i == len(data), "whole records only"
    return offs


def test_record_header_read_ahead_before_the_upgrade(echo_gateway):
    """The request, then only the header of the next record: OpenSSL has
    read that header (and counted the record) when the session is
    upgraded, so the session must stay with OpenSSL (SSL_free_buffers()
    refuses), not lose the header.  Its body, sent after the 101, is read
    as that record's: the frame in it comes back."""
    gw = echo_gateway
    c = RecordClient(gw.port, gw.ssl)
    try:
        c.handshake()
        c.write(rawclient.build_request("/echo"))
        msg = b"after the header" * 40
        c.write(wsproto.encode_frame(wsproto.OP_BINARY, msg))
        data = c.out.read()
        last = records_of(data)[-1]
        c.sock.sendall(data[:last + 5])
        resp = upgrade(c)
        assert resp.status == 101, resp
        c.sock.sendall(data[last + 5:])
        got = []

        def have_one(buf):
            got[:] = frames_in(buf)[0]
            return len(got) >= 1
        c.read_until(have_one)
        assert got[0].payload == msg
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["frames_in"] == 1, e


def test_own_key_updates_after_the_limit(factory):
    """wsgate updates its write key after 2^34 bytes or 2^24 records under
    one key (RFC 8446 5.5); a test build (--enable-failalloc) takes a lower
    figure from WSGATE_TLS13_REKEY.  With 4096 bytes, a KeyUpdate goes
    before the first record after 4096 bytes under a key, never earlier,
    and the client's OpenSSL follows every one: 480 KB echo back in order.
    Another build ignores the variable and sends none."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False)
    gw.start(env=dict(os.environ, WSGATE_TLS13_REKEY="4096"))
    log = []

    def msg_cb(conn, direction, version, content_type, msg_type, data):
        if direction != "read":
            return
        if content_type == 0x100 and len(data) == 5:        # header
            log.append(("hdr", (data[3] << 8 | data[4]) - 16))
        elif content_type == 0x101 and msg_type == 23:      # inner type
            log.append(("data", log.pop()[1]))
        elif (content_type == ssl._TLSContentType.HANDSHAKE and
              msg_type == ssl._TLSMessageType.KEY_UPDATE):
            log.append(("ku", 0))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx._msg_callback = msg_cb
    c = RecordClient(gw.port, ctx)
    msgs = [bytes((i * 13 + j) & 0xff for j in range(60000))
            for i in range(8)]
    try:
        open_session(c)
        for m in msgs:
            c.write(wsproto.encode_frame(wsproto.OP_BINARY, m))
        c.flush()
        got = []

        def have_all(buf):
            got[:] = frames_in(buf)[0]
            return len(got) >= len(msgs)
        c.read_until(have_all, timeout=10)
        assert [f.payload for f in got] == msgs
    finally:
        c.close()
    seq = [e for e in log if e[0] != "hdr"]
    updates = [i for i, e in enumerate(seq) if e[0] == "ku"]
    if not failalloc_build():
        assert updates == [], seq
        return
    assert len(updates) >= 480000 // (4096 + 16385), seq
    # From the first update on: one exactly when 4096 bytes were sealed.
    sealed = None
    for kind, n in seq:
        if kind == "ku":
            assert sealed is None or sealed >= 4096, seq
            sealed = 0
        elif sealed is not None:
            assert sealed < 4096, seq
            sealed += n


@pytest.mark.parametrize("when", ["open", "before_request"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2,
                                     ssl.TLSVersion.TLSv1_3])
def test_close_notify_is_answered_with_close_notify(echo_gateway, version,
                                                    when):
    """A client that ends TLS cleanly without a close frame, and waits for
    the answer (SSL_shutdown, Python's unwrap()), gets the gateway's own
    close_notify before the connection closes (RFC 5246 7.2.1, RFC 8446
    6.1), over OpenSSL's record layer and wsgate's (TLS 1.3, once open)
    alike, not a connection closed under it.  Once open it is still a
    client that dropped: client_dropped, close code 1006, the backend
    1001; before its request, handshake_failed."""
    gw = echo_gateway
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    # Python ignores a connection closed without close_notify by default.
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    c = PreClient(gw.port).start_tls(ctx)
    if when == "open":
        c, _ = http_upgrade(gw, rawclient.build_request("/echo"), client=c)
    try:
        c.sock.unwrap()
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    if when == "open":
        (ev,) = gw.backend.wait_event("close", timeout=8)
        assert ev["code"] == 1001, ev
        assert e["reason"] == "client_dropped" and \
            e["close_code"] == 1006, e
    else:
        assert e["reason"] == "handshake_failed", e


def _pipe_until(proc, pred, timeout=8.0):
    """Bytes from proc's stdout until pred(them) holds, or its EOF."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not pred(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([proc.stdout], [], [], left)
        if not r:
            break
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
    return buf


def test_max_fragment_length_is_kept_after_the_upgrade(echo_gateway):
    """A TLS 1.3 client that negotiated max_fragment_length (RFC 6066,
    here 512 bytes, as small devices do) gets no record longer than that
    after the upgrade either: a 2000-byte message comes back whole, where
    a 2000-byte record would make its TLS library fail with record
    overflow."""
    gw = echo_gateway
    payload = b"m" * 2000
    p = subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % gw.port,
         "-tls1_3", "-maxfraglen", "512", "-quiet", "-nocommands"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        p.stdin.write(rawclient.build_request("/echo"))
        p.stdin.flush()
        head = _pipe_until(p, lambda b: b"\r\n\r\n" in b)
        assert head.startswith(b"HTTP/1.1 101"), head
        p.stdin.write(wsproto.encode_frame(wsproto.OP_BINARY, payload,
                                           mask=True))
        p.stdin.flush()
        body = head[head.index(b"\r\n\r\n") + 4:]
        body += _pipe_until(p, lambda b: frames_in(body + b)[0])
        got = frames_in(body)[0]
    finally:
        p.kill()
        err = p.communicate(timeout=10)[1]
    assert got and got[0].payload == payload, err[-500:]


def test_hang_up_without_close_notify_gets_no_close_notify(echo_gateway):
    """A TLS 1.3 client, its records with wsgate, that ends its half with a
    bare FIN (no close_notify, no close frame) is not answered with a
    close_notify: that would tell it our side ended cleanly, while what
    was still queued for it is dropped.  It sees the connection end
    without one; client_dropped, close code 1006, the backend 1001."""
    gw = echo_gateway
    c = RecordClient(gw.port, gw.ssl)
    try:
        open_session(c)
        assert c.tls.version() == "TLSv1.3"
        wait_for(lambda: "TLS records now sealed and opened by wsgate"
                 in gw.error_text(), what="the record layer's takeover")
        assert echo_one(c, b"before the FIN") == b"before the FIN"
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_to_close_notify() is False
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    (ev,) = gw.backend.wait_event("close", timeout=8)
    assert ev["code"] == 1001, ev
    assert e["reason"] == "client_dropped" and e["close_code"] == 1006, e
