"""System calls per session, counted by strace on the running daemon.

A count of system calls is as stable as callgrind's instruction count on a
shared machine, and on these virtual machines each one costs about a
microsecond before any work is done.  These cases hold the gateway to the
calls a session needs: no setsockopt(TCP_NODELAY) per accepted connection
(the listening socket's setting is inherited), no epoll_ctl pair for a
write event registered with nothing to write, and the 101 written in the
turn that received the upstream's answer.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

import rawclient
import wsproto
from conftest import fd_count, stop_process, wait_fds_at_most, wait_for

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace is not installed")

SESSIONS = 20


def traced(pid):
    """Whether every thread of pid has a tracer."""
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return False
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                m = re.search(r"^TracerPid:\s+(\d+)", f.read(), re.M)
        except FileNotFoundError:
            continue
        if m is None or m.group(1) == "0":
            return False
    return True


def counts(path):
    """{syscall: calls} from strace -c's table."""
    out = {}
    for line in open(path):
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(f) >= 5 and f[3].isdigit() and not f[-1].startswith("-"):
            out[f[-1]] = int(f[3])
    return out


def one_session(gw):
    """Connect, upgrade, one echo, the close handshake, close."""
    c = rawclient.RawClient(gw.port, tls_ctx=gw.ssl)
    try:
        resp = c.upgrade()
        assert resp.status == 101, resp
        c.send_frame(wsproto.OP_TEXT, b"counted")
        f = c.read_frame()
        assert f.opcode == wsproto.OP_TEXT and f.payload == b"counted", f
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
        f = c.read_frame()
        assert f.opcode == wsproto.OP_CLOSE, f
    finally:
        c.close()


def trace_sessions(gw, tmp_path, n):
    """strace -c on the daemon while n sessions run one after another."""
    base = fd_count(gw.pid)
    out = tmp_path / "strace.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-c", "-o", str(out), "-p", str(gw.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: traced(gw.pid), timeout=10,
                 what="strace attached to every thread")
        for _ in range(n):
            one_session(gw)
        # The last session's teardown, after the client's close.
        wait_fds_at_most(gw, base)
    finally:
        stop_process(tracer, sig=signal.SIGINT)
    wait_for(lambda: out.exists() and out.stat().st_size > 0, timeout=5,
             what="strace's table")
    return counts(out)


def socket_inode(local_port, remote_port):
    """The inode of the IPv4 socket local_port <-> remote_port."""
    want = (":%04X" % local_port, ":%04X" % remote_port)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fl = line.split()
            if fl[1].endswith(want[0]) and fl[2].endswith(want[1]):
                return int(fl[9])
    return None


def daemon_fd_of(pid, inode):
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == \
                    "socket:[%d]" % inode:
                return int(fd)
        except FileNotFoundError:
            continue
    return None


def nodelay_in_daemon(pid, fd):
    """TCP_NODELAY of the daemon's descriptor fd, through a copy of it
    (pidfd_getfd(2), Linux 5.6)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(438, pidfd, fd, 0)   # SYS_pidfd_getfd
        if dup < 0:
            pytest.skip("pidfd_getfd: %s" % os.strerror(ctypes.get_errno()))
    finally:
        os.close(pidfd)
    s = socket.socket(fileno=dup)
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        s.detach()
        os.close(dup)


def test_accepted_socket_has_nodelay_without_setsockopt(echo_gateway,
                                                        tmp_path):
    """Small frames are not held back by Nagle: the socket accept(2)
    returned has TCP_NODELAY, and the only setsockopt per session is the
    upstream connection's."""
    gw = echo_gateway
    one_session(gw)
    c = trace_sessions(gw, tmp_path, SESSIONS)
    assert c.get("accept4", 0) >= SESSIONS, c
    assert c.get("setsockopt", 0) <= SESSIONS, c

    client = rawclient.RawClient(gw.port, tls_ctx=gw.ssl)
    try:
        assert client.upgrade().status == 101
        port = client.sock.getsockname()[1]
        inode = socket_inode(gw.port, port)
        assert inode is not None, "no socket for port %d" % port
        fd = wait_for(lambda: daemon_fd_of(gw.pid, inode), timeout=5,
                      what="the daemon's descriptor for the connection")
        assert nodelay_in_daemon(gw.pid, fd) != 0
    finally:
        client.close()


def test_no_write_event_without_output(echo_gateway, tmp_path):
    """epoll_ctl calls per session: a connection needs an ADD for the
    client, an ADD and a MOD for the upstream's connect, and a few for
    libevent's own changes; a write event registered with nothing to
    write costs two more each time, and a 101 left for the next turn an
    epoll_wait more."""
    gw = echo_gateway
    one_session(gw)
    c = trace_sessions(gw, tmp_path, SESSIONS)
    assert c.get("connect", 0) == SESSIONS, c
    per = c.get("epoll_ctl", 0) / SESSIONS
    assert per <= 10.5, "%.1f epoll_ctl per session: %r" % (per, c)
