"""A side that sends its last frames, a close frame and FIN while the
gateway has stopped reading it (the far side is slow) is not gone: what it
sent before the FIN, its close frame included, must reach the far side
(relay_gone_cb()).  Nor is one whose close frame and TLS close_notify come
in the very read that fills the far side (relay_end())."""
import socket
import ssl
import threading
import time

import pytest

import rawclient
import wsproto
from conftest import policy, wait_for

MiB = 1 << 20
CHUNK = 64 * 1024


def tcp_queues(local_port, remote_port):
    """(send queue, receive queue) of 127.0.0.1:local -> :remote."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fs = line.split()
            lp = int(fs[1].split(":")[1], 16)
            rp = int(fs[2].split(":")[1], 16)
            if lp == local_port and rp == remote_port:
                tx, rx = fs[4].split(":")
                return int(tx, 16), int(rx, 16)
    return None


def rx_queue(local_port, remote_port):
    """Unread bytes in the receive queue of 127.0.0.1:local -> :remote."""
    q = tcp_queues(local_port, remote_port)
    return None if q is None else q[1]


def burst_then_close(c):
    """Send 64 KiB frames until the gateway stops reading us (bytes stay
    unread in its socket), then a close frame, then FIN."""
    if not c.read_head():
        return
    c.accept_101()
    gport = c.sock.getpeername()[1]
    myport = c.sock.getsockname()[1]
    c.frames_sent = 0
    deadline = time.monotonic() + 20
    unread_since = None
    while time.monotonic() < deadline:
        q = rx_queue(gport, myport)
        if q:
            if unread_since is None:
                unread_since = time.monotonic()
            elif time.monotonic() - unread_since > 0.8:
                break               # paused: it has not read for 0.8s
            time.sleep(0.05)
            continue
        unread_since = None
        c.sock.settimeout(5)
        c.sock.sendall(wsproto.encode_frame(
            wsproto.OP_BINARY, bytes([c.frames_sent % 251]) * CHUNK,
            mask=False))
        c.frames_sent += 1
        time.sleep(0.01)
    c.unread = rx_queue(gport, myport)
    c.sock.sendall(wsproto.encode_frame(
        wsproto.OP_CLOSE, wsproto.close_payload(1000, b"bye"), mask=False))
    # Close frame sent: close the TCP connection (FIN), as many servers do.


@pytest.mark.parametrize("mode", ["plain", "tls13", "tls12"])
def test_burst_close_fin_while_paused(factory, certs, mode):
    up = factory.raw_upstream(burst_then_close)
    gw = factory.gateway(routes=[("/b", "b", "big")],
                         upstreams={"b": [up.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "2MiB",
                             "max_message_size": "4MiB"})},
                         tls=(mode != "plain"))
    ctx = None
    if mode != "plain":
        ctx = ssl.create_default_context(cafile=certs["cert"])
        if mode == "tls12":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = rawclient.RawClient(gw.port, ctx, rcvbuf=32 * 1024)
    c.upgrade("/b")
    (uc,) = up.wait_conns(1)
    assert uc.done.wait(20), "upstream did not finish"
    total = uc.frames_sent * CHUNK
    print("upstream sent %d bytes, %d unread by the gateway at FIN" % (
        total, uc.unread))
    time.sleep(1.5)     # the gateway has it paused; FIN is there
    got = 0
    close = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        f = c.read_frame(timeout=5)
        if f is None:
            break
        if f.opcode == wsproto.OP_CLOSE:
            close = f
            break
        got += len(f.payload)
    e = gw.wait_entry(client_port=c.local_port)
    c.close()
    print(mode, "got", got, "close", close and close.close_code, e["reason"])
    assert got == total and close is not None and \
        close.close_code == 1000, (got, total, close and close.close_code, e)


def late_reader(c):
    """A 101, then no reading for 3s, then record every frame."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    if not c.read_head():
        return
    c.accept_101()
    time.sleep(3)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        f = c.read_frame(5)
        if f is None or f.opcode == wsproto.OP_CLOSE:
            return


@pytest.mark.parametrize("mode", ["plain", "tls12"])
def test_client_upload_close_fin_while_paused(factory, certs, mode):
    up = factory.raw_upstream(late_reader)
    gw = factory.gateway(routes=[("/b", "b")], upstreams={"b": [up.addr]},
                         tls=(mode != "plain"))
    ctx = None
    if mode != "plain":
        ctx = ssl.create_default_context(cafile=certs["cert"])
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = rawclient.RawClient(gw.port, ctx)
    c.upgrade("/b")
    (uc,) = up.wait_conns(1)
    myport = c.local_port
    sent, unread_since = 0, None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        q = rx_queue(gw.port, myport)
        if q:
            if unread_since is None:
                unread_since = time.monotonic()
            elif time.monotonic() - unread_since > 0.8:
                break
            time.sleep(0.05)
            continue
        unread_since = None
        c.send_frame(wsproto.OP_BINARY, b"u" * 60000)
        sent += 1
        time.sleep(0.005)
    c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000, b"done"))
    c.sock.shutdown(socket.SHUT_WR)     # FIN after the close frame
    assert uc.done.wait(20)
    frames = [f for f in uc.frames if f.opcode == wsproto.OP_BINARY]
    closes = [f.close_code for f in uc.close_frames()]
    e = gw.wait_entry(client_port=c.local_port)
    c.close()
    print(mode, "sent", sent, "upstream got", len(frames), closes,
          e["reason"])
    assert (len(frames), closes) == (sent, [1000]), e


class BioClient:
    """A TLS 1.3 client over memory BIOs: what it writes becomes records
    here, and several records leave in one send()."""

    def __init__(self, port, cafile):
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.local_port = self.sock.getsockname()[1]
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out,
                                server_hostname="localhost")
        self.plain = bytearray()
        for _ in range(50):
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.feed()
        self.flush()

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def feed(self):
        data = self.sock.recv(65536)
        assert data, "the gateway closed the connection"
        self.inc.write(data)

    def upgrade(self, path):
        self.tls.write(rawclient.build_request(path))
        self.flush()
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in self.plain:
            assert time.monotonic() < deadline, bytes(self.plain)
            try:
                self.plain += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.feed()
        assert self.plain.startswith(b"HTTP/1.1 101 "), bytes(self.plain)


@pytest.mark.parametrize("last", ["close", "data"])
def test_close_notify_in_the_read_that_fills_the_far_side(factory, certs,
                                                          last):
    """A TLS 1.3 client uploads toward an upstream that does not read
    until the gateway holds a full high-water mark for it (reading has not
    stopped: nothing more was there), then sends its close frame and its
    close_notify in one segment.  The gateway reads both at once; the
    close frame cannot go yet and stays in its input.  It must reach the
    upstream once that reads, and the log say client_closed, not
    client_dropped with close 1001 to the upstream.  A last data frame
    instead of the close frame reaches the upstream too, and the end read
    with it is not forgotten: close 1001 follows it, client_dropped."""
    high = 256 * 1024                   # WSG_HIGH_WATER
    go = threading.Event()

    def late_reader(c):
        if not c.read_head():
            return
        c.accept_101()
        go.wait(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            f = c.read_frame(5)
            if f is None:
                return
            if f.opcode == wsproto.OP_CLOSE:
                c.send(wsproto.encode_frame(wsproto.OP_CLOSE, f.payload,
                                            mask=False))
                c.drain(5)
                return

    up = factory.raw_upstream(late_reader)
    gw = factory.gateway(routes=[("/b", "b")], upstreams={"b": [up.addr]})
    c = BioClient(gw.port, certs["cert"])
    try:
        c.upgrade("/b")
        (uc,) = up.wait_conns(1)
        gwport = uc.sock.getpeername()[1]
        sent, frames, seen = 0, 0, [None]

        def held():
            """What the gateway holds for the upstream (sent, less what
            the kernel holds of it), once the same twice running."""
            cq = tcp_queues(gw.port, c.local_port)
            gq = tcp_queues(gwport, up.port)
            uq = tcp_queues(up.port, gwport)
            if None in (cq, gq, uq) or cq[1] != 0:
                seen[0] = None
                return False
            x = sent - gq[0] - uq[1]
            same, seen[0] = seen[0] == x, x
            return same

        # Up to the high-water mark in steps small enough near it that
        # the step crossing it is read and moved whole: then the gateway
        # holds at least the mark, has nothing left to read, and is not
        # paused.
        for _ in range(5000):
            n = 60000 if (seen[0] or 0) < high - 100000 else 1000
            frame = wsproto.encode_frame(wsproto.OP_BINARY, b"u" * n)
            c.tls.write(frame)
            c.flush()
            sent += len(frame)
            frames += 1
            seen[0] = None
            wait_for(held, timeout=10, interval=0.02,
                     what="the gateway to take the frame")
            if seen[0] >= high:
                break
        assert seen[0] >= high, seen[0]
        if last == "close":
            c.tls.write(wsproto.encode_frame(
                wsproto.OP_CLOSE, wsproto.close_payload(4000, b"bye")))
        else:
            c.tls.write(wsproto.encode_frame(wsproto.OP_BINARY, b"tail"))
            frames += 1
        try:
            c.tls.unwrap()              # close_notify, behind the close
        except ssl.SSLWantReadError:
            pass
        c.flush()
        wait_for(lambda: tcp_queues(gw.port, c.local_port)[1] == 0,
                 what="the gateway to read the close")
        go.set()
        assert uc.done.wait(40), "upstream connection still open"
        e = gw.wait_entry(client_port=c.local_port, timeout=10)
    finally:
        go.set()
        c.sock.close()
    got = [f for f in uc.frames if f.opcode == wsproto.OP_BINARY]
    closes = [f.close_code for f in uc.close_frames()]
    if last == "close":
        assert (len(got), closes) == (frames, [4000]), (len(got), frames, e)
        assert (e["reason"], e["close_code"]) == ("client_closed", 4000), e
    else:
        assert (len(got), closes) == (frames, [1001]), (len(got), frames, e)
        assert got[-1].payload == b"tail", got[-1]
        assert e["reason"] == "client_dropped", e
