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
import ssl
import subprocess
import time

import pytest

import rawclient
import wsproto
from conftest import fd_count, policy, stop_process, wait_fds_at_most, \
    wait_for

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


def one_session(gw, path="/echo", messages=1):
    """Connect, upgrade, echoes, the close handshake, close."""
    c = rawclient.RawClient(gw.port, tls_ctx=gw.ssl)
    try:
        resp = c.upgrade(path)
        assert resp.status == 101, resp
        for _ in range(messages):
            c.send_frame(wsproto.OP_TEXT, b"counted")
            f = c.read_frame()
            assert f.opcode == wsproto.OP_TEXT and \
                f.payload.endswith(b"counted"), f
        c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
        f = c.read_frame()
        assert f.opcode == wsproto.OP_CLOSE, f
    finally:
        c.close()


def trace_sessions(gw, tmp_path, n, args=("-c",), session=one_session):
    """strace on the daemon (by default -c, the table of counts) while n
    sessions run one after another."""
    base = fd_count(gw.pid)
    out = tmp_path / "strace.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq"] + list(args) +
        ["-o", str(out), "-p", str(gw.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: traced(gw.pid), timeout=10,
                 what="strace attached to every thread")
        for _ in range(n):
            session(gw)
        # The last session's teardown, after the client's close.
        wait_fds_at_most(gw, base)
    finally:
        stop_process(tracer, sig=signal.SIGINT)
    wait_for(lambda: out.exists() and out.stat().st_size > 0, timeout=5,
             what="strace's output")
    return counts(out) if "-c" in args else out.read_text()


def socket_writes(gw, trace):
    """write(2) calls in an strace log that went to sockets: the daemon's
    log files are the descriptors still open on a path."""
    n = 0
    for m in re.finditer(r"\bwrite\((\d+),", trace):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (gw.pid, m.group(1)))
        except FileNotFoundError:
            target = ""
        if not target.startswith("/"):
            n += 1
    return n


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


def test_ticket_leaves_with_the_101(echo_gateway, tmp_path):
    """TLS 1.3: the session ticket is not written as the handshake ends
    but with the 101, in the same send: one write(2) per session for the
    server's handshake flight and none for the ticket (OpenSSL's default
    wrote two tickets, each with a write of its own).  The client resumes
    with it."""
    gw = echo_gateway
    one_session(gw)
    trace = trace_sessions(gw, tmp_path, SESSIONS,
                           args=("-e", "trace=write"))
    assert re.search(r"\bwrite\(", trace), trace[:2000]
    n = socket_writes(gw, trace)
    assert n <= SESSIONS, "%d write(2) to sockets for %d sessions" % (
        n, SESSIONS)

    # Nothing after the handshake until the request is answered.
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = gw.ssl.wrap_bio(inc, out, server_hostname="localhost")
    deadline = time.monotonic() + 5
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65536)
            assert data, "EOF during the handshake"
            inc.write(data)
    sock.sendall(out.read())            # the client's Finished
    time.sleep(0.3)
    sock.setblocking(False)
    try:
        inc.write(sock.recv(65536))
    except BlockingIOError:
        pass
    with pytest.raises(ssl.SSLWantReadError):
        tls.read(1)
    assert not tls.session.has_ticket
    sock.close()

    # The ticket comes with the 101, and a second connection resumes.
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s1 = gw.ssl.wrap_socket(raw, server_hostname="localhost")
    s1.sendall(rawclient.build_request("/echo"))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s1.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert s1.session.has_ticket
    sess = s1.session
    s1.close()
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s2 = gw.ssl.wrap_socket(raw, server_hostname="localhost", session=sess)
    try:
        assert s2.session_reused
        s2.sendall(rawclient.build_request("/echo"))
        head = s2.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 "), head
    finally:
        s2.close()


def test_deny_regex_patterns_share_one_cpu_clock_read(factory, tmp_path):
    """A message held for several deny_regex patterns shares one CPU time
    budget among them.  The thread's CPU clock is a system call (the
    monotonic one, which libevent uses too, is not: vDSO); it is read once
    per message, not once more before each pattern: 40 messages through
    four patterns were 200 clock_gettime calls, and are at most 40 and a
    few for the session's own timers."""
    be = factory.echo()
    gw = factory.gateway(
        routes=[("/c", "echo", "content")], upstreams={"echo": [be.addr]},
        policies={"content": policy(messages={"deny_regex": [
            "(?i)<script", r"\bDROP\s+TABLE\b", "^(a+)+$", "forbidden"]})})
    msgs = 40
    one_session(gw, "/c")
    c = trace_sessions(gw, tmp_path, 1, session=lambda g: one_session(
        g, "/c", msgs))
    assert c.get("clock_gettime", 0) <= msgs + 8, c

