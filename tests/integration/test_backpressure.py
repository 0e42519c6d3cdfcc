"""A client that never reads must not make the gateway buffer without
bound: the flooding backend must be blocked and the gateway's RSS must stay
small."""

import asyncio
import time

import rawup
from conftest import policy, run

MiB = 1 << 20


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def test_slow_reader_blocks_flooding_backend(factory):
    flooder = factory.raw_upstream(rawup.flood(total=400 * MiB, seconds=15))
    echo = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/flood", "flood", "big"),
                                 ("/echo", "echo")],
                         upstreams={"flood": [flooder.addr],
                                    "echo": [echo.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "2MiB",
                             "max_message_size": "4MiB"})})
    base = rss_bytes(gw.pid)
    c = gw.raw(rcvbuf=64 * 1024)
    try:
        c.upgrade("/flood")
        (uc,) = flooder.wait_conns(1)
        time.sleep(4)
        assert not uc.done.is_set(), "flooded session ended: %r" % (
            gw.entries(),)
        sent1, rss1 = uc.sent, rss_bytes(gw.pid)
        time.sleep(2)
        sent2, rss2 = uc.sent, rss_bytes(gw.pid)
        peak = max(rss1, rss2)
        print("backend sent %d -> %d MiB; gateway RSS %d -> %d -> %d KiB" % (
            sent1 // MiB, sent2 // MiB, base >> 10, rss1 >> 10, rss2 >> 10))
        assert peak < 64 * MiB, \
            "gateway RSS %d MiB (started at %d MiB) with a slow reader" % (
                peak // MiB, base // MiB)
        assert sent2 < 200 * MiB, \
            "backend pushed %d MiB into a client that never reads" % (
                sent2 // MiB)
        assert sent2 - sent1 < 8 * MiB, \
            "backend still sending (%d -> %d MiB): not blocked" % (
                sent1 // MiB, sent2 // MiB)
        assert gw.alive()
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port, timeout=10)
    assert e["status"] == 101, e
    assert uc.done.wait(10), "flooding upstream connection left open"

    async def go():
        async with gw.connect("/echo") as ws:
            await ws.send("after flood")
            assert await asyncio.wait_for(ws.recv(), 5) == "after flood"
    run(go())
    assert rss_bytes(gw.pid) < 64 * MiB


def test_fast_client_blocked_by_deaf_backend(factory):
    import socket
    import threading
    import wsproto
    deaf = factory.raw_upstream(rawup.deaf(seconds=20))
    gw = factory.gateway(routes=[("/deaf", "deaf", "big")],
                         upstreams={"deaf": [deaf.addr]},
                         policies={"big": policy(frames={
                             "max_frame_size": "2MiB",
                             "max_message_size": "4MiB"})})
    c = gw.raw()
    c.upgrade("/deaf")
    frame = wsproto.encode_frame(wsproto.OP_BINARY, b"\0" * MiB,
                                 mask_key=b"\0\0\0\0")
    state = {"sent": 0, "error": None}
    stop = threading.Event()

    def pump():
        view = memoryview(frame)
        off = 0
        c.sock.settimeout(0.5)
        deadline = time.monotonic() + 15
        while not stop.is_set() and state["sent"] < 400 * MiB and \
                time.monotonic() < deadline:
            try:
                n = c.sock.send(view[off:off + 256 * 1024])
            except socket.timeout:
                continue
            except OSError as e:
                state["error"] = e
                return
            state["sent"] += n
            off = (off + n) % len(frame)
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        time.sleep(4)
        sent1, rss1 = state["sent"], rss_bytes(gw.pid)
        time.sleep(2)
        sent2, rss2 = state["sent"], rss_bytes(gw.pid)
        print("client sent %d -> %d MiB; gateway RSS %d -> %d KiB" % (
            sent1 // MiB, sent2 // MiB, rss1 >> 10, rss2 >> 10))
        assert max(rss1, rss2) < 64 * MiB, \
            "gateway RSS %d MiB with a backend that never reads" % (
                max(rss1, rss2) // MiB)
        assert sent2 < 200 * MiB, "client pushed %d MiB" % (sent2 // MiB)
        assert sent2 - sent1 < 8 * MiB, "client not blocked"
        assert gw.alive()
        # blocked, not ended: a gateway that closed the session would also
        # stop the client's writes
        assert state["error"] is None, \
            "client's connection broke: %r" % state["error"]
        assert gw.entries() == [], gw.entries()
    finally:
        stop.set()
        t.join(5)
        c.close()
