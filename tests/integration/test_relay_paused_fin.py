"""A side that sends its last frames, a close frame and FIN while the
gateway has stopped reading it (the far side is slow) is not gone: what it
sent before the FIN, its close frame included, must reach the far side
(relay_gone_cb())."""
import socket
import ssl
import time

import pytest

import rawclient
import wsproto
from conftest import policy

MiB = 1 << 20
CHUNK = 64 * 1024


def rx_queue(local_port, remote_port):
    """Unread bytes in the receive queue of 127.0.0.1:local -> :remote."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fs = line.split()
            lp = int(fs[1].split(":")[1], 16)
            rp = int(fs[2].split(":")[1], 16)
            if lp == local_port and rp == remote_port:
                return int(fs[4].split(":")[1], 16)
    return None


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
