"""systemd readiness (Type=notify): READY=1 once serving; RELOADING=1
then READY=1 around each reload, good or bad; STOPPING=1 on SIGTERM."""

import os
import signal
import socket
import tempfile

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


def test_notify_ready_reloading_stopping(factory, notify_socket):
    s, path = notify_socket
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False)
    gw.start(env=dict(os.environ, NOTIFY_SOCKET=path))
    assert recv(s) == "READY=1"

    gw.reload("done")
    assert [recv(s), recv(s)] == ["RELOADING=1", "READY=1"]

    gw.cfg_path.write_text(gw.cfg_path.read_text() + "bogus_option: 1\n")
    gw.reload("failed")
    assert [recv(s), recv(s)] == ["RELOADING=1", "READY=1"]

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
        be = factory.echo()
        gw = factory.gateway(routes=[("/echo", "echo")],
                             upstreams={"echo": [be.addr]}, start=False)
        gw.start(env=dict(os.environ, NOTIFY_SOCKET="@" + name))
        assert recv(s) == "READY=1"
        assert "sd_notify" not in gw.error_text()
    finally:
        s.close()
