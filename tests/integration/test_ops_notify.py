"""systemd readiness (Type=notify): READY=1 once serving; RELOADING=1
(with MONOTONIC_USEC) then READY=1 around each reload, good or bad;
STOPPING=1 on SIGTERM."""

import os
import signal
import socket
import tempfile
import time

import pytest


@pytest.fixture
def notify_socket():
    d = tempfile.mkdtemp(prefix="wsg-ntf-")     # short: sun_path is 108
    path = os.path.join(d, "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    yield s, path
    s.close()
    os.unlink(path)
    os.rmdir(d)


def recv(s):
    try:
        return s.recv(4096).decode()
    except socket.timeout:
        return None


def first(msg):
    """The first field of a notification (RELOADING=1 has more)."""
    return None if msg is None else msg.split("\n")[0]


def start_notified(factory, target):
    """A gateway with one echo route, started with NOTIFY_SOCKET=target;
    reading its READY=1 is left to the caller."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False)
    gw.start(env=dict(os.environ, NOTIFY_SOCKET=target))
    return gw


def test_notify_ready_reloading_stopping(factory, notify_socket):
    s, path = notify_socket
    gw = start_notified(factory, path)
    assert recv(s) == "READY=1"

    gw.reload("done")
    assert [first(recv(s)), recv(s)] == ["RELOADING=1", "READY=1"]

    gw.cfg_path.write_text(gw.cfg_path.read_text() + "bogus_option: 1\n")
    gw.reload("failed")
    assert [first(recv(s)), recv(s)] == ["RELOADING=1", "READY=1"]

    gw.proc.send_signal(signal.SIGTERM)
    assert recv(s) == "STOPPING=1"
    assert gw.proc.wait(8) == 0
    s.settimeout(0.2)
    assert recv(s) is None, "unexpected notification after STOPPING=1"


def test_notify_to_an_abstract_socket(factory):
    """NOTIFY_SOCKET may name a socket in the abstract namespace
    (a leading '@'), as systemd allows: READY=1 reaches it."""
    name = "wsg-ntf-%d" % os.getpid()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        gw = start_notified(factory, "@" + name)
        assert recv(s) == "READY=1"
        assert "sd_notify" not in gw.error_text()
    finally:
        s.close()


def test_reloading_carries_its_monotonic_time(factory, notify_socket):
    """RELOADING=1 comes with MONOTONIC_USEC=, the CLOCK_MONOTONIC time in
    microseconds it was sent at: systemd's Type=notify-reload ignores a
    RELOADING=1 without it, and its `systemctl reload` then waits for its
    timeout and fails, though the reload was done."""
    s, path = notify_socket
    gw = start_notified(factory, path)
    assert recv(s) == "READY=1"
    for expect in ("done", "failed"):
        if expect == "failed":
            gw.cfg_path.write_text(gw.cfg_path.read_text() +
                                   "bogus_option: 1\n")
        before = time.monotonic_ns() // 1000
        gw.reload(expect)
        after = time.monotonic_ns() // 1000
        fields = recv(s).split("\n")
        assert fields[0] == "RELOADING=1"
        usec = [f for f in fields[1:] if f.startswith("MONOTONIC_USEC=")]
        assert len(usec) == 1, fields
        assert before <= int(usec[0].split("=", 1)[1]) <= after
        assert recv(s) == "READY=1"
