"""A hostile or broken upstream, cases not covered by test_upstream*.py,
test_frames_upstream.py and test_fault_upstream.py: refusals with bodies,
heads that never end, close frames with reserved codes, a frame in tiny
segments, half a frame then silence, a burst right behind the 101.  Each
checks what the client sees, the access-log reason, and that others are
still served."""

import socket
import time

import pytest

import rawclient
import rawup
import wsproto
from conftest import echo_works, policy, rss_bytes

MiB = 1 << 20

enc = wsproto.encode_frame


def gateway_with(factory, behavior, pol=None, connect_timeout="1s"):
    up = factory.raw_upstream(behavior)
    echo = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/up", "up", "p"), ("/echo", "echo")],
                         upstreams={"up": {"servers": [up.addr],
                                           "connect_timeout":
                                           connect_timeout},
                                    "echo": [echo.addr]},
                         policies={"p": pol or policy()}, tls=False)
    return gw, up


def refusal(gw, status, reason):
    resp, c = gw.raw_request("/up", 8)
    assert resp.status == status, resp
    assert [v.lower() for v in resp.header("Connection")] == ["close"], resp
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["status"], e["reason"]) == (status, reason), e
    return resp


# -- before the 101 -------------------------------------------------------

@pytest.mark.parametrize("status", [500, 503, 302])
def test_refusal_with_body_is_passed_through(factory, status):
    gw, up = gateway_with(factory, rawup.respond(
        b"HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nLocation: /x\r\n"
        b"Content-Length: 9\r\n\r\nup says\n\n" % status))
    resp = refusal(gw, status, "upstream_refused")
    assert resp.body == b"up says\n\n", resp
    echo_works(gw)


def test_refusal_body_of_the_largest_size_is_passed_through(factory):
    # a body of exactly 4096 bytes goes with the status; one byte more
    # and the gateway's own short body takes its place
    for size, passed in ((4096, True), (4097, False)):
        body = b"b" * size
        gw, up = gateway_with(factory, rawup.respond(
            b"HTTP/1.1 503 X\r\nContent-Type: application/x-up\r\n"
            b"Content-Length: %d\r\n\r\n" % size + body))
        resp = refusal(gw, 503, "upstream_refused")
        if passed:
            assert resp.body == body, (size, len(resp.body))
            assert resp.header("Content-Type") == ["application/x-up"], resp
        else:
            assert resp.body == b"upstream_refused\n", resp
            assert resp.header("Content-Type") == ["text/plain"], resp
        gw.stop()


def test_half_a_head_then_a_close_is_502_bad_handshake(factory):
    # the upstream said something, but closed before a whole head: not
    # "unavailable" (that is a close without a byte) but a bad handshake
    def behavior(c):
        if not c.read_head():
            return
        c.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webs")
    gw, up = gateway_with(factory, behavior)
    refusal(gw, 502, "upstream_bad_handshake")
    assert "upstream_bad_handshake: upstream %s closed before its 101" \
        % up.addr in gw.error_text()
    echo_works(gw)


def test_head_without_line_end_is_502(factory):
    gw, up = gateway_with(factory, rawup.respond(
        b"HTTP/1.1 101 Switching Protocols" + b"x" * 40000))
    refusal(gw, 502, "upstream_bad_handshake")
    echo_works(gw)


def test_binary_garbage_is_502(factory):
    gw, up = gateway_with(factory, rawup.respond(bytes(range(256)) * 8))
    refusal(gw, 502, "upstream_bad_handshake")


def test_101_without_accept_is_502(factory):
    gw, up = gateway_with(factory, rawup.respond(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\n\r\n"))
    refusal(gw, 502, "upstream_bad_handshake")


def test_headers_that_never_end_are_504(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.send(b"HTTP/1.1 101 Switching Protocols\r\n")
        for i in range(100):
            if c.up.stopping.is_set():
                return
            try:
                c.send(b"X-More-%d: y\r\n" % i)
            except OSError:
                return
            time.sleep(0.05)
    gw, up = gateway_with(factory, behavior)
    refusal(gw, 504, "upstream_unavailable")
    echo_works(gw)


def test_refusal_body_cut_short_then_silence_is_504(factory):
    def behavior(c):
        if not c.read_head():
            return
        c.send(b"HTTP/1.1 500 X\r\nContent-Length: 100\r\n\r\nshort")
        c.drain(5)
    gw, up = gateway_with(factory, behavior)
    refusal(gw, 504, "upstream_unavailable")


@pytest.mark.parametrize("status", [403, 200])
def test_refusal_body_cut_short_by_a_close_keeps_its_status(factory,
                                                             status):
    # The close ends the wait for the body: the answer was a 403 (or a
    # 200, the lowest final status), so the client gets it (with the
    # gateway's short body), not a 502.
    def behavior(c):
        if not c.read_head():
            return
        c.send(b"HTTP/1.1 %d X\r\nContent-Type: text/html\r\n"
               b"WWW-Authenticate: Bearer\r\nContent-Length: 100\r\n"
               b"\r\nshort" % status)
    gw, up = gateway_with(factory, behavior)
    resp = refusal(gw, status, "upstream_refused")
    assert resp.header("WWW-Authenticate") == ["Bearer"], resp
    assert resp.header("Content-Type") == ["text/plain"], resp
    assert b"short" not in resp.body, resp
    echo_works(gw)


@pytest.mark.parametrize("status", [b"600", b"099"])
def test_odd_status_is_502(factory, status):
    gw, up = gateway_with(factory, rawup.respond(
        b"HTTP/1.1 " + status + b" X\r\n\r\n"))
    refusal(gw, 502, "upstream_bad_handshake")


@pytest.mark.parametrize("status", [b"100", b"199"])
def test_interim_status_then_silence_is_504(factory, status):
    # A 1xx is not the answer (RFC 9110 15.2): the final one never comes.
    gw, up = gateway_with(factory, rawup.respond(
        b"HTTP/1.1 " + status + b" X\r\n\r\n"))
    refusal(gw, 504, "upstream_unavailable")
    echo_works(gw)


# -- after the 101 --------------------------------------------------------

def open_session(gw):
    c = gw.raw()
    c.upgrade("/up")
    return c


@pytest.mark.parametrize("code", [0, 999, 1004, 1006, 1015, 1016, 2000,
                                  2999, 5000, 65535])
def test_reserved_close_code_is_protocol_error(factory, code):
    gw, up = gateway_with(factory, rawup.ws_then(
        enc(wsproto.OP_CLOSE, wsproto.close_payload(code, b"x"),
            mask=False)))
    c = open_session(gw)
    try:
        f, others = c.read_close(5)
        assert f.close_code == 1014, f
        assert not others, others
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("protocol_error", 1002), e
    (uc,) = up.connections()
    assert uc.done.wait(5)
    assert [f.close_code for f in uc.close_frames()] == [1002], uc.frames


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 3000, 4999])
def test_valid_close_code_is_relayed(factory, code):
    gw, up = gateway_with(factory, rawup.ws_then(
        enc(wsproto.OP_CLOSE, wsproto.close_payload(code, "bye"),
            mask=False) + enc(wsproto.OP_TEXT, b"AFTER-CLOSE", mask=False)))
    c = open_session(gw)
    try:
        f, others = c.read_close(5)
        assert (f.close_code, f.close_reason) == (code, b"bye"), f
        assert not others, others
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(code))
        assert c.wait_closed(5)
        assert b"AFTER-CLOSE" not in c.buf
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("upstream_closed", code), e


def test_frame_in_one_byte_segments(factory):
    msg = ("tiny segments \u00e9\u20ac " * 20).encode()
    data = enc(wsproto.OP_TEXT, msg, mask=False) + \
        enc(wsproto.OP_BINARY, b"\x00\xff" * 100, mask=False, fin=False) + \
        enc(wsproto.OP_PING, b"p", mask=False) + \
        enc(wsproto.OP_CONT, b"end", mask=False)

    def behavior(c):
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not c.read_head():
            return
        c.accept_101()
        for i in range(len(data)):
            if c.up.stopping.is_set():
                return
            c.send(data[i:i + 1])
            time.sleep(0.002)
        c.drain(10)
    gw, up = gateway_with(factory, behavior)
    c = open_session(gw)
    try:
        fs = [c.read_frame(10) for _ in range(4)]
    finally:
        c.close()
    assert [(f.opcode, f.fin, f.payload) for f in fs] == [
        (wsproto.OP_TEXT, True, msg),
        (wsproto.OP_BINARY, False, b"\x00\xff" * 100),
        (wsproto.OP_PING, True, b"p"),
        (wsproto.OP_CONT, True, b"end")], fs


@pytest.mark.parametrize("size", [1000, 300 * 1024])
def test_half_a_frame_then_silence_is_idle_timeout(factory, size):
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        c.send(enc(wsproto.OP_BINARY, b"h" * (size // 2), mask=False,
                   declared_len=size))
        while c.read_frame(8) is not None:
            pass
    gw, up = gateway_with(factory, behavior, pol=policy(
        frames={"max_frame_size": "1MiB"}, timeouts={"idle": "1s"}))
    c = open_session(gw)
    try:
        if size <= 256 * 1024:
            f, others = c.read_close(6)
            assert f.close_code == 1001, f
            assert not others, others
        assert c.wait_closed(6), "client left open"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == "idle_timeout", e
    (uc,) = up.connections()
    assert uc.done.wait(5), "upstream left open"
    assert [f.close_code for f in uc.close_frames()] == [1001], uc.frames
    echo_works(gw)


def test_burst_behind_the_101_is_all_relayed(factory):
    frames = b"".join(enc(wsproto.OP_BINARY, b"%06d" % i + b"b" * 500,
                          mask=False) for i in range(400))

    def behavior(c):
        if not c.read_head():
            return
        key = c.header("Sec-WebSocket-Key")[0]
        c.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
               wsproto.accept_for(key).encode() + b"\r\n\r\n" + frames)
        c.drain(10)
    gw, up = gateway_with(factory, behavior)
    c = open_session(gw)
    try:
        got = []
        for i in range(400):
            f = c.read_frame(5)
            assert f is not None, "only %d of 400 frames" % i
            got.append(f.payload[:6])
    finally:
        c.close()
    assert got == [b"%06d" % i for i in range(400)]


# -- a byte at a time toward a side that does not read ---------------------

N_TRICKLERS = 3
BIG = 32 << 20


def small_window(sock):
    """Before connecting (or listening): advertise a small MSS and window,
    so that the gateway's kernel buffers toward this peer stay small and
    what the peer does not read stays in the gateway's own buffers."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)


def trickle(sock, header, seconds, stop):
    """Send a frame header, then its payload one byte per send(2)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(0.2)
    sock.sendall(header)
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline and not stop.is_set():
        try:
            sent += sock.send(b"x")
        except socket.timeout:
            continue
        except OSError:
            break
    return sent


@pytest.mark.parametrize("direction", ["to_client", "to_upstream"])
def test_byte_at_a_time_toward_a_non_reader_stays_bounded(factory,
                                                          direction):
    """A peer that sends a large frame one byte per TCP segment toward a
    side that does not read: the gateway stops reading it at its
    high-water mark (256 KiB of payload per session), and that mark must
    bound its memory too, not a kilobyte or more per byte received (each
    read's chain was moved whole: about 40 MiB a session here).  The bound
    leaves room for ASan's quarantine (16 MiB)."""
    import threading
    stop = threading.Event()
    big = policy(frames={"max_frame_size": "64MiB",
                         "max_message_size": "64MiB"})

    if direction == "to_client":
        def behavior(c):
            if not c.read_head():
                return
            c.accept_101()
            trickle(c.sock, enc(wsproto.OP_BINARY, b"", mask=False,
                                declared_len=BIG), 8, stop)
            c.up.stopping.wait(10)
    else:
        def behavior(c):
            if not c.read_head():
                return
            c.accept_101()
            c.up.stopping.wait(15)      # never reads again
    gw, up = gateway_with(factory, behavior, pol=big)
    if direction == "to_upstream":
        small_window(up.lsock)
    echo_works(gw)
    base = rss_bytes(gw.pid)
    socks, threads = [], []
    try:
        for _ in range(N_TRICKLERS):
            s = socket.socket()
            s.settimeout(5)
            if direction == "to_client":
                small_window(s)
            s.connect(("127.0.0.1", gw.port))
            s.sendall(rawclient.build_request("/up"))
            socks.append(s)
            if direction == "to_upstream":
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 4096:
                    head += s.recv(4096)
                assert head.startswith(b"HTTP/1.1 101"), head
                t = threading.Thread(target=trickle, daemon=True, args=(
                    s, enc(wsproto.OP_BINARY, b"", mask_key=b"\0\0\0\0",
                           declared_len=BIG), 8, stop))
                t.start()
                threads.append(t)
        up.wait_conns(N_TRICKLERS)
        peak = 0
        for _ in range(12):
            time.sleep(0.5)
            peak = max(peak, rss_bytes(gw.pid))
        print("gateway RSS %d KiB -> peak %d KiB" % (base >> 10,
                                                     peak >> 10))
        assert peak - base < 48 * MiB, \
            "gateway RSS grew %d MiB for %d sessions held at 256 KiB " \
            "each" % ((peak - base) // MiB, N_TRICKLERS)
        assert gw.alive()
        echo_works(gw, msg="while trickled")
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in socks:
            s.close()


def test_tiny_held_messages_toward_a_deaf_upstream_stay_bounded(factory):
    """With deny_regex, a client's text messages are held and forwarded
    one by one.  A client flooding one-byte messages at an upstream that
    never reads is paused at the high-water mark, and each message must
    not cost the gateway more than its bytes (it cost two chains, about
    2 KiB per 7-byte message: some 70 MiB for this one session)."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        c.up.stopping.wait(15)          # never reads again
    gw, up = gateway_with(factory, behavior, pol=policy(
        messages={"deny_regex": ["forbidden"]}))
    small_window(up.lsock)
    echo_works(gw)
    base = rss_bytes(gw.pid)
    c = gw.raw()
    try:
        c.upgrade("/up")
        blob = enc(wsproto.OP_TEXT, b"a", mask_key=b"\0\0\0\0") * 10000
        c.sock.settimeout(0.2)
        deadline = time.monotonic() + 4
        sent = 0
        while time.monotonic() < deadline:
            try:
                sent += c.sock.send(blob)
            except socket.timeout:
                continue
        peak = rss_bytes(gw.pid)
        print("client sent %d KiB; gateway RSS %d -> %d KiB" % (
            sent >> 10, base >> 10, peak >> 10))
        assert sent < 64 * MiB, "client never blocked: %d KiB" % (sent >> 10)
        # the bound leaves room for ASan's quarantine (16 MiB)
        assert peak - base < 40 * MiB, \
            "gateway RSS grew %d MiB for one session held at 256 KiB" % (
                (peak - base) // MiB)
        assert gw.alive()
        echo_works(gw, msg="while flooded")
    finally:
        c.close()
