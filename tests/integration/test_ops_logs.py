"""Log files and access-log fields: SIGUSR1 after an external rotation
(rename) moves new lines to new files at the configured paths; route and
bytes_in as an operator reads them; log.access_log stdout and off,
log.error_log stderr, log.level error."""

import asyncio
import json
import resource
import signal
import socket
import subprocess

import pytest

import rawclient
import rawup
import wsproto
from conftest import (WSGATE, fd_count, free_port, http_upgrade, metric,
                      policy, run, stop_process,
                      wait_for)


def test_sigusr1_reopens_after_rename(echo_gateway):
    gw = echo_gateway

    async def once(text):
        async with gw.connect("/echo") as ws:
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 5) == text
            return ws.local_address[1]

    p1 = run(once("before"))
    gw.wait_entry(client_port=p1)
    old_access = gw.access_log.with_name("access.log.1")
    old_error = gw.error_log.with_name("error.log.1")
    gw.access_log.rename(old_access)
    gw.error_log.rename(old_error)
    gw.proc.send_signal(signal.SIGUSR1)
    # The acknowledgement is the first line of the new error log.
    wait_for(lambda: gw.error_log.exists() and
             "log files reopened" in gw.error_text(), 5,
             what="'log files reopened' in a new error.log")

    p2 = run(once("after"))
    e = gw.wait_entry(client_port=p2)
    assert e["status"] == 101 and e["reason"] == "client_closed", e

    new_ports = [json.loads(s)["client_port"] for s in
                 gw.access_log.read_text().splitlines()]
    old_ports = [json.loads(s)["client_port"] for s in
                 old_access.read_text().splitlines()]
    assert p2 in new_ports and p1 not in new_ports
    assert p1 in old_ports and p2 not in old_ports
    assert "conn " in gw.error_text()       # later lines land there too
    assert "log files reopened" not in old_error.read_text()
    assert "started" in old_error.read_text()


def test_sigusr1_says_when_a_log_cannot_be_reopened(echo_gateway):
    """A path that cannot be opened (here a directory, as root; a file
    the daemon's user cannot write in practice) is reported, and the
    gateway does not claim to have reopened its logs."""
    gw = echo_gateway
    old_access = gw.access_log.with_name("access.log.1")
    old_error = gw.error_log.with_name("error.log.1")
    gw.access_log.rename(old_access)
    gw.access_log.mkdir()
    gw.error_log.rename(old_error)
    gw.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: gw.error_log.exists() and
             "cannot reopen access log %s" % gw.access_log
             in gw.error_text(), 5,
             what="'cannot reopen access log' in the new error.log")
    wait_for(lambda: "log files not all reopened" in gw.error_text(), 5,
             what="'log files not all reopened' in the new error.log")
    assert "log files reopened" not in gw.error_text()
    assert gw.proc.poll() is None


def test_sigusr1_says_when_the_error_log_cannot_be_reopened(echo_gateway):
    """The error log's own path failing is reported too (in the error
    log still open), not only the access log's."""
    gw = echo_gateway
    old_error = gw.error_log.with_name("error.log.1")
    gw.error_log.rename(old_error)
    gw.error_log.mkdir()
    try:
        gw.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "log files not all reopened" in
                 old_error.read_text(), 5,
                 what="'log files not all reopened' in the old error.log")
    finally:
        # the log dump of a failed test reads the error log's path
        text = old_error.read_text()
        gw.error_log.rmdir()
        old_error.rename(gw.error_log)
    assert "cannot reopen error log %s" % gw.error_log in text, text
    assert "log files reopened" not in text, text
    assert gw.proc.poll() is None


def test_a_fifo_log_with_no_reader_does_not_hang_a_reopen(factory):
    """An access log that is a FIFO (a log shipper's) whose reader has
    gone: SIGUSR1 opened it again, and open(2) waited for a reader on
    the main thread, which takes the signals: a reload or SIGTERM after
    it did nothing until the shipper came back.  The reopen must fail
    at once and say so, a reload that names it fail, and SIGTERM stop
    the gateway."""
    import os
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, tls=False,
                         start=False)
    os.mkfifo(gw.access_log)
    reader = os.open(gw.access_log, os.O_RDONLY | os.O_NONBLOCK)
    gw._log_lines = lambda: 0           # the harness must not read it
    fifo = gw.access_log
    try:
        gw.start()
        # with a reader, the reopen works, and the descriptor it makes
        # blocks as the first one did: a worker's write to a full pipe
        # waits rather than losing its line
        gw.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "log files reopened" in gw.error_text(), 5,
                 what="'log files reopened'")
        fds = []
        for fd in os.listdir("/proc/%d/fd" % gw.pid):
            try:        # a connection's descriptor may close meanwhile
                if os.readlink("/proc/%d/fd/%s" % (gw.pid, fd)) == str(fifo):
                    fds.append(fd)
            except FileNotFoundError:
                pass
        assert len(fds) == 1, fds
        with open("/proc/%d/fdinfo/%s" % (gw.pid, fds[0])) as f:
            flags = int(next(ln for ln in f if ln.startswith("flags:"))
                        .split()[1], 8)
        assert not flags & os.O_NONBLOCK, oct(flags)
        os.close(reader)
        reader = None
        gw.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "log files not all reopened" in gw.error_text(),
                 5, what="'log files not all reopened'")
        assert "cannot reopen access log %s" % fifo in gw.error_text()
        gw.reload("failed")
        assert "cannot open access log %s" % fifo in gw.error_text()
        gw.stop()
        assert gw.proc.returncode == 0, gw.proc.returncode
    finally:
        if reader is not None:
            os.close(reader)
        gw.access_log = gw.tmp / "access.log.none"


def test_route_with_a_quote_is_logged_as_json(factory):
    """A route path may hold '"' (a request target may); the access log
    escapes it like every other string, prefix star included."""
    be = factory.echo()
    route = '/q"uote/*'
    gw = factory.gateway(routes=[(route, "echo")],
                         upstreams={"echo": [be.addr]})
    c = gw.raw()
    try:
        c.upgrade('/q"uote/x')
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["status"] == 101 and e["route"] == route, e
    assert e["path"] == '/q"uote/x', e


def test_refused_request_counts_its_head_in_bytes_in(factory):
    """bytes_in is what the client sent, its request head included, also
    when the request is refused before any upstream is involved."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    resp, e, _ = gw.raw_upgrade("/nope")
    head = len(rawclient.build_request("/nope"))    # keys: same length
    assert resp.status == 404, resp
    assert (e["reason"], e["bytes_in"]) == ("no_route", head), e
    assert e["bytes_out"] == 0, e


def test_non_ascii_text_is_logged_as_the_characters_sent(factory):
    """The log stays ASCII, but a JSON reader gets back the characters the
    client sent: UTF-8 is escaped by code point (a surrogate pair above
    U+FFFF), not byte by byte as Latin-1, and a byte that is not UTF-8
    becomes U+FFFD."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    sent = (b"https://b\xc3\xbcro.example/\xf0\x9f\x98\x80"
            b"\xff\xed\xa0\x80")
    c = gw.raw()
    try:
        c.send(rawclient.build_request(
            "/nope", extra=[("Origin", sent.decode("latin-1"))]))
        assert c.http_response().status == 404
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["origin"] == "https://b\u00fcro.example/\U0001f600" + \
        "\ufffd" * 4, e
    line = [ln for ln in gw.access_log.read_bytes().splitlines()
            if b'"client_port":%d,' % c.local_port in ln]
    assert len(line) == 1 and line[0].isascii(), line


@pytest.mark.parametrize("flags,info,debug", [
    ((), False, False), (("-v",), True, False), (("-v", "-v"), True, True)])
def test_v_raises_the_error_log_level(factory, flags, info, debug):
    """log.level warn: -v adds the info lines, -v -v the debug lines too."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         top={"log": {"level": "warn"}}, start=False)
    gw.config["log"].update(error_log=str(gw.error_log),
                            access_log=str(gw.access_log))
    gw.write_config()
    gw.start(args=flags)

    async def once():
        async with gw.connect("/echo") as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            return ws.local_address[1]

    gw.wait_entry(client_port=run(once()))
    gw.stop()
    text = gw.error_text()
    assert ("started with 1 worker" in text) == info, text
    assert ("TLS records now sealed and opened by wsgate" in text) == \
        debug, text
    assert ("signal 15: shutting down" in text) == info, text


def echo_once(gw):
    async def once():
        async with gw.connect("/echo") as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 5) == "hi"
            return ws.local_address[1]
    return run(once())


def test_access_log_stdout_and_error_log_stderr(factory):
    """log.access_log: stdout writes the JSON lines to standard output and
    log.error_log: stderr the error lines to standard error; no file is
    made at the usual paths."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False)
    gw.config["log"].update(error_log="stderr", access_log="stdout")
    gw.write_config()
    out, err_path = gw.tmp / "stdout.log", gw.tmp / "stderr-only.log"
    # Gateway.start() sends both streams to one file: keep them apart
    with open(out, "wb") as fo, open(err_path, "wb") as fe:
        proc = subprocess.Popen([WSGATE, "-c", str(gw.cfg_path)], stdout=fo,
                                stderr=fe, stdin=subprocess.DEVNULL,
                                cwd=str(gw.tmp))
        try:
            wait_for(lambda: "started with" in err_path.read_text(), 5,
                     what="the start-up line on stderr")
            port = echo_once(gw)

            def logged():
                for s in out.read_text().splitlines():
                    e = json.loads(s)
                    if e.get("client_port") == port:
                        return e
                return None
            e = wait_for(logged, 5, what="the access line on stdout")
        finally:
            assert stop_process(proc) == 0
    assert (e["status"], e["reason"]) == (101, "client_closed"), e
    err = err_path.read_text()
    assert "info: wsgate" in err and "started with" in err, err
    assert '"client_port"' not in err, err
    assert "info:" not in out.read_text(), out.read_text()
    assert not gw.access_log.exists() and not gw.error_log.exists()


@pytest.mark.parametrize("which", ["access_log", "error_log"])
def test_a_log_file_it_cannot_open_stops_the_start(factory, which):
    """A log file that cannot be opened at start-up (its directory is
    missing) is said on stderr and the daemon exits 1 before serving, so
    that a service manager sees the start fail."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, start=False)
    bad = gw.tmp / "no-such-dir" / "wsgate.log"
    gw.config["log"][which] = str(bad)
    gw.write_config()
    p = subprocess.run([WSGATE, "-c", str(gw.cfg_path)], capture_output=True,
                       text=True, timeout=20, stdin=subprocess.DEVNULL,
                       cwd=str(gw.tmp))
    kind = "access" if which == "access_log" else "error"
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "cannot open %s log %s" % (kind, bad) in p.stderr, p.stderr


def test_an_error_line_longer_than_its_buffer_is_cut_short(factory):
    """An error-log line longer than the 2 KiB a line may take (here the
    start-up line naming an access log of over 2 KiB that cannot be
    opened) is cut to fit, and still ends the line."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, start=False)
    bad = gw.tmp / "no-such-dir" / "/".join(["d" * 200] * 11) / "a.log"
    gw.config["log"]["access_log"] = str(bad)
    gw.write_config()
    p = subprocess.run([WSGATE, "-c", str(gw.cfg_path)], capture_output=True,
                       timeout=20, stdin=subprocess.DEVNULL, cwd=str(gw.tmp))
    assert p.returncode == 1, (p.returncode, p.stderr[-300:])
    lines = [ln for ln in p.stderr.split(b"\n")
             if b"cannot open access log" in ln]
    assert len(lines) == 1, p.stderr[-300:]
    assert len(lines[0]) < 2048, len(lines[0])
    assert lines[0].startswith(b"20") and lines[0].isascii(), lines[0][:80]
    assert p.stderr.endswith(b"\n")


def test_access_log_off_writes_no_line(factory):
    """log.access_log: off: sessions still work, no access line is written
    anywhere (file, stdout or stderr)."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False)
    gw.config["log"]["access_log"] = "off"
    gw.write_config()
    gw.start()
    echo_once(gw)
    wait_for(lambda: "client_closed" in gw.error_text() or
             "closed" in gw.error_text(), 5, what="the session's end")
    gw.stop()
    assert not gw.access_log.exists()
    assert '"client_port"' not in gw.stderr_path.read_text()
    assert '"client_port"' not in gw.error_text()


def test_level_error_leaves_out_warnings_and_info(factory):
    """log.level: error: neither the info lines (start-up) nor the warnings
    (a failed reload) are written; the reload is still counted failed."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, admin=True,
                         start=False)
    gw.config["log"]["level"] = "error"
    gw.write_config()
    gw.start()
    echo_once(gw)
    gw.cfg_path.write_text(gw.cfg_path.read_text() + "bogus_option: 1\n")
    gw.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: metric(gw.metrics(), "wsgate_config_reloads_total",
                            result="failed") == 1, 5,
             what="the failed reload to be counted")
    gw.stop()
    text = gw.error_text()
    assert " info: " not in text and " warn: " not in text, text
    assert " debug: " not in text, text


def limit_file_size(gw, size):
    """Give the running daemon a file size limit (as systemd's
    LimitFSIZE= would): writes past it are short, then fail."""
    resource.prlimit(gw.pid, resource.RLIMIT_FSIZE,
                     (size, resource.RLIM_INFINITY))


def refuse_404(gw):
    c = gw.raw()
    try:
        c.send(rawclient.build_request("/nope"))
        assert c.http_response().status == 404
    finally:
        c.close()
    return c.local_port


def test_a_log_over_the_file_size_limit_does_not_kill_the_gateway(factory):
    """A log write past RLIMIT_FSIZE fails (EFBIG) like one on a full
    disk; it must not end the process with SIGXFSZ."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, tls=False)
    gw.settle_probes()
    limit_file_size(gw, gw.access_log.stat().st_size)
    for _ in range(2):
        c = gw.raw()
        c.send(rawclient.build_request("/nope"))
        c.wait_closed()
        c.close()
    assert gw.proc.poll() is None, "wsgate died: %s" % gw.proc.returncode
    limit_file_size(gw, resource.RLIM_INFINITY)
    p = refuse_404(gw)
    e = gw.wait_entry(client_port=p)
    assert e["reason"] == "no_route", e


def cut_a_line(factory):
    """A plaintext gateway whose access log ends with a line cut short
    40 bytes in (the file size limit), the limit lifted again:
    (gateway, size of the log before that line)."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, tls=False)
    gw.settle_probes()
    size = gw.access_log.stat().st_size
    limit_file_size(gw, size + 40)
    refuse_404(gw)
    wait_for(lambda: gw.access_log.stat().st_size == size + 40, 5,
             what="the short write")
    limit_file_size(gw, resource.RLIM_INFINITY)
    return gw, size


def test_a_short_log_write_does_not_spoil_the_next_line(factory):
    """A line cut short (the disk filled, or the size limit, in its
    middle) is the only one lost: once writes succeed again, the next
    line starts a line of its own and is valid JSON."""
    gw, size = cut_a_line(factory)
    p = refuse_404(gw)

    def last_line():
        text = gw.access_log.read_bytes()[size:]
        return text.endswith(b"\n") and text.split(b"\n")[-2]
    line = wait_for(last_line, 5, what="the next access-log line")
    e = json.loads(line)
    assert (e["client_port"], e["reason"]) == (p, "no_route"), e


def test_a_new_log_file_does_not_start_with_the_old_ones_cut_line(
        factory):
    """The old access log ends with a line cut short; it is rotated
    (renamed, SIGUSR1): the new file starts with a whole JSON line, not
    with the line end owed to the old file."""
    gw, size = cut_a_line(factory)
    gw.access_log.rename(gw.access_log.with_name("access.log.1"))
    gw.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "log files reopened" in gw.error_text(), 5,
             what="'log files reopened'")
    p = refuse_404(gw)
    wait_for(lambda: gw.access_log.exists() and
             gw.access_log.read_bytes().endswith(b"\n"), 5,
             what="a line in the new access log")
    lines = gw.access_log.read_bytes().split(b"\n")
    assert lines[0] != b"", lines[:2]
    e = json.loads(lines[0])
    assert (e["client_port"], e["reason"]) == (p, "no_route"), e


def test_long_lines_from_two_workers_to_a_pipe_do_not_interleave(factory):
    """An access log that is a pipe (a log shipper's FIFO; stdout under
    a container runtime or journald) and two workers: lines longer than
    PIPE_BUF (4096 bytes; a long path makes one) are not written to a
    pipe in one piece when it is full, and two workers' lines came out
    mixed, neither of them JSON.  Each line must come out whole."""
    import fcntl
    import os
    import termios
    import threading
    import time
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, tls=False,
                         start=False, top={"workers": 2})
    os.mkfifo(gw.access_log)
    reader = os.open(gw.access_log, os.O_RDONLY | os.O_NONBLOCK)
    gw._log_lines = lambda: 0           # the harness must not read it
    fifo = gw.access_log
    got = bytearray()
    go, done = threading.Event(), threading.Event()

    def read_slowly():
        go.wait(30)
        while True:
            try:
                b = os.read(reader, 4096)
            except BlockingIOError:
                if done.is_set():
                    return
                b = None
            if b == b"":
                return
            if b:
                got.extend(b)
            time.sleep(0.001)           # a reader slower than the writers
    t = threading.Thread(target=read_slowly)
    t.start()
    n, ports, clients = 24, [], []
    try:
        gw.start()
        # Connections from many ports: the kernel spreads them over both
        # workers' sockets.
        for i in range(n):
            c = gw.raw(timeout=10)
            clients.append(c)
            ports.append(c.local_port)
            c.send(rawclient.build_request("/n%d/" % i + "x" * 7000))

        def queued():
            b = bytearray(4)
            fcntl.ioctl(reader, termios.FIONREAD, b)
            return int.from_bytes(b, "little") >= 50000
        wait_for(queued, 10, what="the pipe to fill")
        go.set()
        for c in clients:
            c.read_to_eof(10)
            c.close()
        wait_for(lambda: got.count(b"\n") >= n + 1, 10,
                 what="every line read")
    finally:
        go.set()
        done.set()
        t.join(10)
        for c in clients:
            c.close()
        gw.stop()
        os.close(reader)
        gw.access_log = fifo.with_name("access.log.none")
    lines = bytes(got).split(b"\n")
    assert lines[-1] == b"", lines[-1][:100]
    torn = []
    seen = set()
    for line in lines[:-1]:
        try:
            seen.add(json.loads(line)["client_port"])
        except ValueError:
            torn.append(line)
    assert not torn, "%d of %d lines torn, the first: %r...%r" % (
        len(torn), len(lines) - 1, torn[0][:80], torn[0][-80:])
    assert set(ports) <= seen


def test_reopening_the_logs_holds_no_more_descriptors(factory):
    """SIGUSR1 a few times: the files it opens replace the old ones, so
    the daemon ends with as many descriptors as it had."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, tls=False)
    gw.settle_probes()
    before = fd_count(gw.pid)
    for i in range(1, 6):
        gw.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: gw.error_text().count("log files reopened") == i,
                 5, what="reopen %d" % i)
    assert fd_count(gw.pid) == before


@pytest.mark.parametrize("origin,raw", [
    # A backslash, written as \\: left alone, a JSON reader would take
    # it and the character after it as an escape and get other text, or
    # no entry.
    ("https://a.example\\u0041\\", None),
    # A control character (a tab is allowed inside a header value),
    # written as \u0009: raw, the line is not JSON.
    ("https://a.example/x\ty", b"\t"),
], ids=["backslash", "tab"])
def test_client_text_is_escaped_in_the_access_log(factory, origin, raw):
    """What the client sent (here its Origin) comes back from the access
    log exactly as sent, and a raw byte that JSON must escape is not in
    the line."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    c = gw.raw()
    try:
        c.send(rawclient.build_request("/nope", extra=[("Origin", origin)]))
        assert c.http_response().status == 404
    finally:
        c.close()
    e = gw.wait_entry(client_port=c.local_port)
    assert e["origin"] == origin, e
    if raw is not None:
        line = [ln for ln in gw.access_log.read_bytes().splitlines()
                if b'"client_port":%d,' % c.local_port in ln]
        assert len(line) == 1 and raw not in line[0], line


def _upgraded(gw, path, frame):
    """Upgrade on path, send one frame (opcode, payload), read the close;
    returns the client."""
    c, _ = http_upgrade(gw, rawclient.build_request(path))
    try:
        for _ in range(2 if frame else 0):
            c.send_frame(*frame)
        c.read_close(timeout=5)
    finally:
        c.close()
    return c


R = rawclient.build_request
LOG_CASES = [
    ("bad_request", lambda gw: R(key=False), None),
    ("bad_request", lambda gw: R() + b"x", None),
    ("bad_method", lambda gw: R(method="POST"), None),
    ("bad_version", lambda gw: R(version="8"), None),
    ("headers_too_large",
     lambda gw: R()[:-2] + b"X-Pad: " + b"a" * 9000, None),
    ("no_route", lambda gw: R("/nowhere"), None),
    ("origin_denied", lambda gw: R("/o", extra=[("Origin",
                                                 "https://evil.test")]),
     None),
    ("subprotocol_denied", lambda gw: R(protocols="other"), None),
    ("upstream_unavailable", lambda gw: R("/dead"), None),
    ("ip_denied", lambda gw: R("/ip"), None),
    ("upstream_refused", lambda gw: R("/403"), None),
    ("upstream_bad_handshake", lambda gw: R("/bad101"), None),
    ("frame_too_large", "/echo", (1, b"a" * 2000)),
    ("binary_denied", "/echo", (2, b"bin")),
    ("content_denied", "/echo", (1, b"forbidden")),
    ("invalid_utf8", "/echo", (1, b"\xff")),
    ("rate_messages", "/rate", (1, b"a")),
    ("idle_timeout", "/idle", None),
    ("upstream_error", "/drop", None),
]


@pytest.mark.parametrize("reason,make,frame", LOG_CASES,
                         ids=["%s-%d" % (c[0], i)
                              for i, c in enumerate(LOG_CASES)])
def test_every_failure_logs_its_conn_and_reason(log_gw, reason, make,
                                                frame):
    """At log.level info each failure leaves an error-log line naming the
    connection ("conn N") and the reason code (SPEC: access log)."""
    gw = log_gw
    if callable(make):
        c = gw.raw()
        try:
            c.send(make(gw))
            c.http_response(timeout=5)
        finally:
            c.close()
    else:
        c = _upgraded(gw, make, frame)
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason, e
    mark = "conn %d: " % e["id"]

    def logged():
        return [ln for ln in gw.error_text().splitlines()
                if mark in ln and reason in ln.split(mark, 1)[1]]
    wait_for(lambda: logged(), 5, what="a line with %s%s" % (mark, reason))


@pytest.fixture(scope="module")
def log_gw(module_factory):
    be = module_factory.echo(subprotocols=("chat",))
    dead = "127.0.0.1:%d" % free_port()
    r403 = module_factory.raw_upstream(rawup.respond(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
    bad101 = module_factory.raw_upstream(rawup.respond(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: bad\r\n\r\n"))
    drop = module_factory.raw_upstream(rawup.ws_then(b"", then="drop"))
    gw = module_factory.gateway(
        routes=[("/echo", "echo", "p"), ("/o", "echo", "o"),
                ("/dead", "dead"), ("/ip", "echo", "ip"),
                ("/403", "r403"), ("/bad101", "bad101"),
                ("/rate", "echo", "rate"), ("/idle", "echo", "idle"),
                ("/drop", "drop")],
        upstreams={"echo": [be.addr], "dead": [dead],
                   "r403": [r403.addr], "bad101": [bad101.addr],
                   "drop": [drop.addr]}, tls=False,
        top={"log": {"level": "info"}}, start=False,
        policies={"p": policy(frames={"max_frame_size": "1KiB",
                                      "allow_binary": False},
                              subprotocols=["chat"],
                              messages={"deny_regex": ["forbidden"]}),
                  "o": policy(origin={"allow": ["https://app.test"]}),
                  "ip": policy(ip={"deny": ["127.0.0.0/8"]}),
                  "rate": policy(rate_limit={"messages_per_connection": {
                      "rate": "1/s", "burst": 1}}),
                  "idle": policy(timeouts={"idle": "1s"})})
    gw.config["log"].update(error_log=str(gw.error_log),
                            access_log=str(gw.access_log))
    gw.write_config()
    gw.start()
    yield gw


def _logged(gw, e, reason):
    mark = "conn %d: " % e["id"]
    return [ln for ln in gw.error_text().splitlines()
            if mark in ln and reason in ln.split(mark, 1)[1]]


@pytest.mark.parametrize("how", ["head_cut", "dropped"])
def test_a_client_gone_is_logged_with_its_reason(log_gw, how):
    """A client that goes away before its head is whole (handshake_failed)
    or, upgraded, without a close frame (client_dropped): wsgate(8) says
    every refusal and every close code gets an error-log line with the
    connection and the reason code."""
    gw = log_gw
    if how == "head_cut":
        c = gw.raw()
        c.send(rawclient.build_request()[:20])
        c.close()
        reason = "handshake_failed"
    else:
        c, _ = http_upgrade(gw, rawclient.build_request("/echo"))
        c.close()
        reason = "client_dropped"
    e = gw.wait_entry(client_port=c.local_port)
    assert e["reason"] == reason, e
    wait_for(lambda: _logged(gw, e, reason), 5,
             what="a line with conn %d: %s" % (e["id"], reason))


PROXY_CASES = [
    ("bad_proxy_header", b"HELLO THERE\r\n", False),
    ("handshake_failed", b"PROXY TCP4 ", False),
    ("handshake_failed", b"", True),
    ("handshake_failed", b"hello / HTTP/1.1\r\n\r\n", True),
    ("bad_request", b"GET / HTTP/1.1\r\n\r\n", True),
]


@pytest.mark.parametrize("reason,data,header", PROXY_CASES,
                         ids=["%s-%d" % (c[0], i)
                              for i, c in enumerate(PROXY_CASES)])
def test_tls_and_proxy_failures_log_their_reason(factory, reason, data,
                                                 header):
    """On a TLS listener with proxy_protocol: a bad PROXY header, one cut
    short, a client gone before its first byte, one that does not speak
    TLS and one that speaks plaintext HTTP (answered 400) each get a line
    naming the connection and the reason."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         listener={"proxy_protocol": True},
                         top={"log": {"level": "info"}}, start=False)
    gw.config["log"].update(error_log=str(gw.error_log),
                            access_log=str(gw.access_log))
    gw.write_config()
    gw.start()
    s = socket.create_connection(("127.0.0.1", gw.port))
    port = s.getsockname()[1]
    if header:
        port = 40000 + port % 20000
        s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 %d 443\r\n" % port)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass            # a bad header may be refused as it comes
    e = gw.wait_entry(client_port=port)
    s.close()
    assert e["reason"] == reason, e
    wait_for(lambda: _logged(gw, e, reason), 5,
             what="a line with conn %d: %s" % (e["id"], reason))


def test_started_with_the_standard_descriptors_closed(factory):
    """Started with stdin, stdout and stderr closed (a careless init
    script, `wsgate <&- >&- 2>&-`), the process's first descriptors
    took 0 to 2, and a line written to "stderr" would go into whatever
    held 2 now.  They are /dev/null from the start, and the gateway
    serves as usual."""
    import os
    import time
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, start=False)
    p = subprocess.Popen(["sh", "-c", 'exec "$0" -c "$1" <&- >&- 2>&-',
                          WSGATE, str(gw.cfg_path)], cwd=str(gw.tmp))
    try:
        deadline = time.monotonic() + 10
        while True:
            assert p.poll() is None, "exited %s" % p.returncode
            try:
                socket.create_connection(("127.0.0.1", gw.port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "never listened"
                time.sleep(0.05)
        for fd in (0, 1, 2):
            assert os.readlink("/proc/%d/fd/%d" % (p.pid, fd)) == \
                "/dev/null", (fd, os.listdir("/proc/%d/fd" % p.pid))
        c = gw.raw()
        try:
            c.upgrade("/echo")
            c.send_frame(wsproto.OP_TEXT, b"hi")
            assert c.read_frame(5).payload == b"hi"
        finally:
            c.close()
    finally:
        p.kill()
        p.wait(10)
