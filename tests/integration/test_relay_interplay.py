"""Features that are each tested alone, meeting in one open session:
what the client gets (close code), the access-log reason, and the bytes
that reached the backend when a refusal, an expiry, a drain or a reload
comes in the middle of something else.
"""

import time

import wsproto
from conftest import policy

T, C, BIN = wsproto.OP_TEXT, wsproto.OP_CONT, wsproto.OP_BINARY


def echo_reading_on(c):
    """ws_echo, but an echo the gateway no longer takes does not stop it
    reading (and recording) what the gateway sent it, to EOF."""
    if not c.read_head():
        return
    c.accept_101()
    end = time.monotonic() + 10.0
    while True:
        f = c.read_frame(max(0.01, end - time.monotonic()))
        if f is None:
            return
        if f.opcode in (BIN, T, C):
            try:
                c.send(wsproto.encode_frame(f.opcode, f.payload, fin=f.fin,
                                            mask=False))
            except OSError:
                pass


def test_refusal_while_backend_sends_still_reaches_backend(factory):
    """The client breaks a rule while the backend, busy echoing a large
    message, is not reading: the gateway closes, and what it still owes
    the backend (the frames before the violation, then close 1001) must
    not be lost to a reset when it stops lingering on the backend's echo
    (a close(2) with unread input resets, and the kernel drops what it
    had yet to send)."""
    up = factory.raw_upstream(echo_reading_on)
    gw = factory.gateway(routes=[("/echo", "rec", "big")],
                         upstreams={"rec": [up.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "1MiB",
                             "max_message_size": "4MiB"})})
    c = gw.raw()
    msg = b"m" * (1 << 20)
    try:
        c.upgrade("/echo")
        (uc,) = up.wait_conns(1)
        c.send(wsproto.encode_frame(BIN, msg) * 4 +
               wsproto.encode_frame(T, b"bad", rsv=4))
        f, _ = c.read_close(10)
        assert f.close_code == 1002, f
        assert uc.done.wait(10), "gateway left the upstream connection open"
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert (e["reason"], e["close_code"]) == ("protocol_error", 1002), e
    got = [(fr.opcode, len(fr.payload)) for fr in uc.frames]
    assert got[:4] == [(BIN, len(msg))] * 4, got
    assert [fr.close_code for fr in uc.close_frames()] == [1001], got
