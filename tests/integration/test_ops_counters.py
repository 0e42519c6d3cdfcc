"""The access log's frames_in/frames_out/bytes_in/bytes_out and
wsgate_frames_total / wsgate_bytes_total against what went on the wire,
for sessions a rule ended on a frame (wsgate(8), ACCESS LOG): the frame
that broke the rule counts, in frames and in bytes alike, and what
followed it does not; the metrics move by the log line minus the head."""

import pytest

import rawup
import wsproto
from conftest import metric, policy, wait_for
from rawclient import build_request

E = wsproto.encode_frame
T, C, BIN = wsproto.OP_TEXT, wsproto.OP_CLOSE, wsproto.OP_BINARY
UP = [E(T, b"ok", mask=False), E(T, b"\xff\xfe", mask=False),
      E(T, b"after", mask=False)]
# A whole frame, then 1000 bytes of a 2000-byte one that never ends.
CUT = [E(BIN, b"one"), E(BIN, b"z" * 2000)[:1000]]
CUT_UP = [E(BIN, b"one", mask=False), E(BIN, b"z" * 2000, mask=False)[:1000]]

# (path, frames sent in one write, how many of them count, reason); the
# frames of /bad come from the upstream, the others from the client.
CASES = {
    "rate_messages": ("/msgs", [E(T, b"m%d" % i) for i in range(1, 9)], 6,
                      "rate_messages"),
    "rate_bytes": ("/bytes", [E(T, b"x" * 60), E(T, b"y" * 60)], 2,
                   "rate_bytes"),
    "invalid_utf8": ("/echo", [E(T, b"ok"), E(T, b"\xff\xfe"),
                               E(T, b"after")], 2, "invalid_utf8"),
    # a ping relayed before the refused frame counts its bytes too
    "ping_then_utf8": ("/echo", [E(wsproto.OP_PING, b"p" * 10),
                                 E(T, b"\xff\xfe"), E(T, b"after")], 2,
                       "invalid_utf8"),
    "bad_close": ("/echo", [E(T, b"ok"), E(C, wsproto.close_payload(1005)),
                            E(T, b"after")], 2, "protocol_error"),
    "held_utf8": ("/deny", [E(T, b"ok"), E(T, b"\xc3", fin=False),
                            E(wsproto.OP_CONT, b"(")], 3, "invalid_utf8"),
    "upstream_utf8": ("/bad", UP, 2, "invalid_utf8"),
}


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "tls"])
def gw(request, module_factory):
    up = module_factory.raw_upstream()
    bad = module_factory.raw_upstream(rawup.ws_then(b"".join(UP)))
    cut = module_factory.raw_upstream(rawup.ws_then(b"".join(CUT_UP),
                                                    then="drop"))
    g = module_factory.gateway(
        routes=[("/echo", "rec"), ("/msgs", "rec", "msgs"),
                ("/bytes", "rec", "bytes"), ("/deny", "rec", "deny"),
                ("/bad", "bad"), ("/idle", "rec", "idle"),
                ("/cut", "cut")],
        upstreams={"rec": [up.addr], "bad": [bad.addr], "cut": [cut.addr]},
        policies={
            "msgs": policy(rate_limit={"messages_per_connection":
                                       {"rate": "5/s", "burst": 5}}),
            "bytes": policy(rate_limit={"bytes_per_connection":
                                        {"rate": "100/s", "burst": 100}}),
            "deny": policy(messages={"deny_regex": ["forbidden"]}),
            "idle": policy(timeouts={"idle": "1s"}),
        },
        admin=True, tls=request.param)
    g.settle_probes()
    g.up = up
    return g


def counters(gw, direction):
    m = gw.metrics()
    return (metric(m, "wsgate_frames_total", direction=direction),
            metric(m, "wsgate_bytes_total", direction=direction))


def upgraded(gw, path):
    """A raw client past its 101 on path, and the request head it sent."""
    c = gw.raw()
    head = build_request(path)
    c.send(head)
    assert b" 101 " in c.read_until(b"\r\n\r\n", 5)
    return c, head


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_frame_counts_whole(gw, case):
    path, frames, counted, reason = CASES[case]
    client = path != "/bad"
    direction = "client_to_upstream" if client else "upstream_to_client"
    m0 = counters(gw, direction)
    c, head = upgraded(gw, path)
    try:
        if client:
            c.send(b"".join(frames))
        c.read_close(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason, e
    want = sum(len(f) for f in frames[:counted])
    if client:
        got, want_log = (e["frames_in"], e["bytes_in"]), len(head) + want
    else:
        got, want_log = (e["frames_out"], e["bytes_out"]), want
    assert got == (counted, want_log), e
    m1 = counters(gw, direction)
    assert (m1[0] - m0[0], m1[1] - m0[1]) == (counted, want), (m0, m1)


@pytest.mark.parametrize("how", ["client_dropped", "idle_timeout",
                                 "upstream_error"])
def test_frame_cut_short_counts_what_came(gw, how):
    """A frame the session ended in the middle of (a peer gone, the idle
    timeout): frames count it, bytes what arrived of it."""
    client = how != "upstream_error"
    path = {"client_dropped": "/echo", "idle_timeout": "/idle",
            "upstream_error": "/cut"}[how]
    direction = "client_to_upstream" if client else "upstream_to_client"
    frames = CUT if client else CUT_UP
    m0 = counters(gw, direction)
    n0 = len(gw.up.connections())
    c, head = upgraded(gw, path)
    try:
        if client:
            c.send(b"".join(frames))
            # The gateway has read the write once the upstream has the
            # whole frame in front of the cut one.
            conn = gw.up.wait_conns(n0 + 1)[n0]
            wait_for(lambda: len(conn.data) >= len(conn.head or b"") +
                     len(frames[0]) + 4, 5, what="first frame relayed")
        if how != "client_dropped":
            c.wait_closed(5)
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == how, e
    want = sum(len(f) for f in frames)
    if client:
        got, want_log = (e["frames_in"], e["bytes_in"]), len(head) + want
    else:
        got, want_log = (e["frames_out"], e["bytes_out"]), want
    assert got == (2, want_log), e
    m1 = counters(gw, direction)
    assert (m1[0] - m0[0], m1[1] - m0[1]) == (2, want), (m0, m1)
