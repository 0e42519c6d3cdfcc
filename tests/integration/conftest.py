"""Integration fixtures: the real wsgate daemon, real backends, real TLS.

Run with:  /usr/bin/python3 -m pytest -q tests/integration
The daemon binary is $WSGATE (default <repo>/wsgate).
"""

import asyncio
import copy
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WSGATE = os.environ.get("WSGATE", str(REPO / "wsgate"))
ECHO_PY = HERE / "backends" / "echo.py"

sys.path.insert(0, str(HERE))

import rawclient  # noqa: E402
import rawup  # noqa: E402

# Gateways alive now, and every gateway a running test has used: their logs
# are dumped when the test fails.
RUNNING = []
TOUCHED = []

DEFAULT_POLICY = {
    "frames": {
        "max_frame_size": "64KiB",
        "max_message_size": "1MiB",
        "validate_utf8": True,
        "allow_binary": True,
        "compression": "strip",
    },
    "timeouts": {"idle": "300s"},
}


def pytest_sessionstart(session):
    if not (os.path.isfile(WSGATE) and os.access(WSGATE, os.X_OK)):
        pytest.exit("wsgate binary not found or not executable at %s: "
                    "build it (make wsgate) or set WSGATE=/abs/path" % WSGATE,
                    returncode=3)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# The files that took longest against the ASan build, longest first.  With
# --dist loadfile a worker that is done takes the next file in collection
# order; in alphabetical order the long test_upstream_hostile.py and
# test_soak_mixed.py came last, and one worker ran them alone for the last
# half minute.  Longest first, the short files fill in the end.  Within a
# file the order stays; the other files follow alphabetically.
LONG_FILES = [
    "test_relay.py", "test_ratelimit_store.py", "test_upstream_hostile.py",
    "test_fault_alloc_paths.py", "test_ratelimit_store_hostile.py",
    "test_hostile_tls.py", "test_relay_close_wait.py",
    "test_relay_close_streamed.py", "test_hostile_readers.py",
    "test_ops_drain.py", "test_fault_alloc_handshake.py",
    "test_hostile_load.py", "test_ops_metrics.py", "test_fault_client.py",
    "test_soak_mixed.py", "test_frames_edges.py", "test_ops_churn.py",
    "test_fault_alloc.py", "test_upstream.py", "test_relay_paused_fin.py",
]


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


# -- small helpers -------------------------------------------------------------

_GIVEN_PORTS = set()


def free_port(host="127.0.0.1"):
    """A port nothing listens on now, and not one this process was given
    before: two calls in a row, before either port is bound (a config
    written for -t), could otherwise get the same one back from the
    kernel, and a listener and the admin endpoint then clashed."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                          socket.SOCK_STREAM)
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _GIVEN_PORTS:
            break
    _GIVEN_PORTS.add(port)
    return port


def stop_process(proc, sig=signal.SIGTERM, grace=5.0):
    """Stop a process we started, by PID: sig, then SIGKILL after grace."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return proc.wait()
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(5)


def run(coro, timeout=20.0):
    """Run a coroutine with a hard deadline."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def wait_for(pred, timeout=5.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" %
                                 (timeout, what))
        time.sleep(interval)


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def policy(frames=None, **over):
    """A policy: the defaults with some frames values and sections changed."""
    p = deep_merge(DEFAULT_POLICY, {"frames": frames or {}})
    return deep_merge(p, over)


def hostport(host, port):
    """host:port as the configuration writes it: [v6]:port for IPv6."""
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def admin_request(port, path, method="GET", timeout=5.0, host="127.0.0.1"):
    """One request to the admin listener: (status, body text, headers).
    Retries refused connections until the deadline (it may still be
    binding just after start-up)."""
    import http.client
    deadline = time.monotonic() + timeout
    while True:
        c = http.client.HTTPConnection(host, port,
                                       timeout=max(0.5, deadline -
                                                   time.monotonic()))
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace"), \
                dict((k.lower(), v) for k, v in r.getheaders())
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            c.close()


def parse_metrics(text):
    """Prometheus text exposition -> {(sample name, ((label, value), ...)):
    value}, parsed by the reference client's parser."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples, name, **labels):
    """One sample's value; 0 when the series is absent (a labelled counter
    that has not been touched yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def failalloc_build():
    """Was the daemon built with --enable-failalloc (wsgate -V says so)?"""
    try:
        out = subprocess.run([WSGATE, "-V"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "(failalloc)" in out


def needs_failalloc():
    """A module's pytestmark: skip unless the daemon honours
    WSGATE_FAILALLOC."""
    return pytest.mark.skipif(not failalloc_build(),
                              reason="wsgate not built with "
                              "--enable-failalloc")


# What a sanitizer build of the daemon writes to its stderr when it finds
# something: ASan and LeakSanitizer reports, UBSan diagnostics.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   ": runtime error: ")


def sanitizer_report(path, limit=8000):
    """The first sanitizer report in a daemon's output file, from the start
    of its line; None if there is none."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return None
    hits = [i for i in (text.find(m) for m in SANITIZER_MARKS) if i >= 0]
    if not hits:
        return None
    start = text.rfind("\n", 0, min(hits)) + 1
    return text[start:start + limit]


def tail(path, n=200):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no file %s)" % path
    return "\n".join(lines[-n:])


# -- TLS -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    cert, key = d / "server.pem", d / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return {"cert": str(cert), "key": str(key)}


@pytest.fixture
def open_folder():
    """A folder every user may search, all the way from /: pytest's own
    tmp_path lies under a folder only its owner may enter, where no file
    can be read by every user whatever its mode."""
    import shutil
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="wsgate-open-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def client_ssl(certs):
    ctx = ssl.create_default_context(cafile=certs["cert"])
    ctx.check_hostname = True
    return ctx


# -- the daemon ----------------------------------------------------------------

class StalledAccessLog:
    """A gateway's access log as a pipe of one page that nobody reads
    until release(): a worker that logs more than a page blocks there,
    busy, while signals and reloads queue up its messages.  Make it
    before gw.start() (factory.gateway(..., start=False)); close() after
    gw.stop()."""

    def __init__(self, gw):
        import fcntl
        import threading
        self.gw = gw
        os.mkfifo(gw.access_log)
        self.fd = os.open(gw.access_log, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(self.fd, 1031, 4096)    # F_SETPIPE_SZ: a page
        gw._log_lines = lambda: 0           # the harness must not read it
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._drain, daemon=True)

    def pending(self):
        """Bytes written to the pipe and not read yet."""
        import fcntl
        import termios
        return int.from_bytes(fcntl.ioctl(self.fd, termios.FIONREAD,
                                          b"\0" * 4), "little")

    def fill(self, n):
        """n connections that are closed at once, each an access-log line,
        until the pipe is all but full: the workers that logged them are
        blocked."""
        for _ in range(n):
            socket.create_connection((self.gw.host, self.gw.port)).close()
        wait_for(lambda: self.pending() > 4096 - 512, what="a full log pipe")

    def _drain(self):
        while not self.stop.is_set():
            try:
                if not os.read(self.fd, 65536):
                    self.stop.wait(0.01)
            except BlockingIOError:
                self.stop.wait(0.01)

    def release(self):
        """Read the pipe from now on: the blocked workers go on."""
        if not self.reader.is_alive():
            self.reader.start()

    def close(self):
        self.release()
        self.stop.set()
        self.reader.join()
        os.close(self.fd)
        self.gw.access_log = self.gw.tmp / "access.log.none"


class Gateway:
    def __init__(self, tmp, certs, client_ssl, routes, upstreams,
                 policies=None, listener=None, tls=True, top=None,
                 admin=False, host="127.0.0.1"):
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.ssl = client_ssl if tls else None
        self.host = host        # of the listener and the admin listener
        self.port = free_port(host)
        # readiness probes: (client port, access-log lines before it)
        self.probes = []
        self.port_floor = {}    # client port: log lines before raw() had it
        self.proc = None
        self.error_log = self.tmp / "error.log"
        self.access_log = self.tmp / "access.log"
        self.stderr_path = self.tmp / "stderr.log"
        self.sanitizer = None   # a sanitizer report, once stopped
        self.cfg_path = self.tmp / "wsgate.yaml"
        pol_dir = self.tmp / "policies"
        pol_dir.mkdir(exist_ok=True)
        policies = dict(policies or {})
        policies.setdefault("default", copy.deepcopy(DEFAULT_POLICY))
        for name, body in policies.items():
            (pol_dir / ("%s.yaml" % name)).write_text(
                yaml.safe_dump(body, sort_keys=False))
        ups = {}
        for name, u in upstreams.items():
            if isinstance(u, (list, tuple)):
                u = {"servers": list(u)}
            u = dict(u)
            u.setdefault("balance", "round_robin")
            u.setdefault("connect_timeout", "1s")
            ups[name] = u
        rts = []
        for r in routes:
            if isinstance(r, (list, tuple)):
                r = {"path": r[0], "upstream": r[1],
                     "policy": r[2] if len(r) > 2 else "default"}
            rts.append(r)
        lst = {"name": "public", "listen": hostport(host, self.port)}
        if tls:
            lst["tls"] = {"certificate": certs["cert"], "key": certs["key"]}
        lst["handshake_timeout"] = "10s"
        lst["max_header_bytes"] = "8KiB"
        lst.update(listener or {})
        lst["routes"] = rts
        cfg = {
            "workers": 1,
            "shutdown_timeout": "5s",
            "log": {"level": "debug", "error_log": str(self.error_log),
                    "access_log": str(self.access_log)},
            "listeners": [lst],
            "upstreams": ups,
            "policies_dir": str(pol_dir),
        }
        self.admin_port = None
        if admin:
            self.admin_port = free_port(host)
            cfg["admin"] = {"listen": hostport(host, self.admin_port)}
        cfg.update(top or {})
        self.config = cfg
        self.pol_dir = pol_dir
        self.cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    # -- process --------------------------------------------------------------

    def start(self, timeout=10.0, env=None, args=()):
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([WSGATE, *args, "-c", str(self.cfg_path)],
                                     stdout=self._stderr,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     cwd=str(self.tmp), env=env)
        RUNNING.append(self)
        TOUCHED.append(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail("wsgate exited with %s during start-up:\n%s" %
                            (self.proc.returncode, self.dump()))
            s = socket.socket(socket.AF_INET6 if ":" in self.host else
                              socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            try:
                before = self._log_lines()
                s.connect((self.host, self.port))
                self.probes.append((s.getsockname()[1], before))
                s.close()
                if self.admin_port is not None:
                    admin_request(self.admin_port, "/healthz",
                                  timeout=max(1.0, deadline -
                                              time.monotonic()),
                                  host=self.host)
                return self
            except OSError:
                s.close()
            if time.monotonic() > deadline:
                pytest.fail("wsgate did not accept on port %d within %.0fs:"
                            "\n%s" % (self.port, timeout, self.dump()))
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, grace=5.0):
        if self.proc is None:
            return None
        rc = stop_process(self.proc, sig, grace)
        if self in RUNNING:
            RUNNING.remove(self)
        try:
            self._stderr.close()
        except Exception:
            pass
        # The process has exited, so LeakSanitizer has written its report.
        if self.sanitizer is None:
            self.sanitizer = sanitizer_report(self.stderr_path)
        return rc

    def dump(self):
        out = ["==== wsgate %s (port %d, pid %s, rc %s)" % (
            self.tmp, self.port, self.proc.pid if self.proc else None,
            self.proc.poll() if self.proc else None)]
        out.append("---- stdout/stderr:\n" + tail(self.stderr_path))
        out.append("---- error log:\n" + tail(self.error_log))
        out.append("---- access log:\n" + tail(self.access_log))
        return "\n".join(out)

    # -- logs -----------------------------------------------------------------

    @property
    def probe_ports(self):
        return {port for port, _ in self.probes}

    def _log_lines(self):
        try:
            return self.access_log.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def entries(self):
        """Complete access-log lines, minus the readiness probes'.  A probe
        hides one line: the first with its port logged after it connected,
        so a later client that gets the same port keeps its own."""
        return [e for _, e in self._entries()]

    def _entries(self):
        """entries(), each with the number of its line in the file."""
        try:
            text = self.access_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        hide = {}
        for port, before in self.probes:
            hide.setdefault(port, []).append(before)
        out = []
        lines = text.split("\n")[:-1]           # last piece may be partial
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except ValueError:
                raise AssertionError("access log line is not JSON: %r" % line)
            after = hide.get(e.get("client_port"))
            if after and i >= after[0]:
                after.pop(0)
                continue
            out.append((i, e))
        return out

    def wait_entry(self, client_port=None, pred=None, timeout=5.0):
        """The access-log entry of this client port (and/or predicate).  A
        module that opens many connections sees the kernel hand a client
        port out again: for a port that raw() gave a client, only a line
        logged after that client connected is its entry."""
        floor = self.port_floor.get(client_port, 0) \
            if client_port is not None else 0

        def find():
            for i, e in self._entries():
                if client_port is not None and \
                        (e.get("client_port") != client_port or i < floor):
                    continue
                if pred is not None and not pred(e):
                    continue
                return e
            return None
        return wait_for(find, timeout, what="access-log entry (client_port=%s)"
                        % client_port)

    def wait_entries(self, n, timeout=5.0):
        return wait_for(lambda: len(self.entries()) >= n and self.entries(),
                        timeout, what="%d access-log entries" % n)

    def error_text(self):
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- operations: config rewrite, reload, admin ------------------------------

    def write_config(self, cfg=None):
        """Write self.config (or cfg, which becomes self.config)."""
        if cfg is not None:
            self.config = cfg
        self.cfg_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def write_policy(self, name, body):
        (self.pol_dir / ("%s.yaml" % name)).write_text(
            yaml.safe_dump(body, sort_keys=False))

    def reload(self, expect="done", timeout=5.0):
        """SIGHUP; wait for the next "reload done" (or "reload failed")."""
        assert expect in ("done", "failed")
        marks = ("reload done", "reload failed")
        before = [self.error_text().count(m) for m in marks]
        self.proc.send_signal(signal.SIGHUP)

        def finished():
            now = [self.error_text().count(m) for m in marks]
            return now != before and now
        now = wait_for(finished, timeout, what="the end of a reload")
        got = "done" if now[0] > before[0] else "failed"
        assert got == expect, "reload %s, expected %s:\n%s" % (
            got, expect, tail(self.error_log, 30))

    def settle_probes(self, timeout=5.0):
        """Wait until the readiness probes have their access-log lines, so
        that they are counted before a test takes its first metrics."""
        def logged():
            try:
                text = self.access_log.read_text(errors="replace")
            except FileNotFoundError:
                return False
            ports = set()
            for line in text.split("\n")[:-1]:
                try:
                    ports.add(json.loads(line).get("client_port"))
                except ValueError:
                    pass
            return self.probe_ports <= ports
        wait_for(logged, timeout, what="the readiness probes' log lines")

    def admin(self, path, method="GET", timeout=5.0):
        return admin_request(self.admin_port, path, method, timeout,
                             self.host)

    def metrics(self):
        status, body, _ = self.admin("/metrics")
        assert status == 200, (status, body)
        return parse_metrics(body)

    # -- clients --------------------------------------------------------------

    def uri(self, path="/echo"):
        return "%s://%s%s" % ("wss" if self.tls else "ws",
                              hostport(self.host, self.port), path)

    def connect(self, path="/echo", **kw):
        import websockets
        kw.setdefault("ping_interval", None)
        kw.setdefault("open_timeout", 5)
        kw.setdefault("close_timeout", 3)
        kw.setdefault("max_size", 1 << 24)
        if self.tls:
            kw.setdefault("ssl", self.ssl)
            kw.setdefault("server_hostname", "localhost")
        return websockets.connect(self.uri(path), **kw)

    def raw(self, **kw):
        kw.setdefault("host", self.host)
        c = rawclient.RawClient(self.port, self.ssl, **kw)
        self.port_floor[c.local_port] = self._log_lines()
        return c

    def raw_request(self, path="/echo", timeout=8.0, client=None):
        """One upgrade request on a raw connection (client, or a new one):
        the HTTP response and the (closed) client."""
        c = client or self.raw()
        try:
            c.send(rawclient.build_request(path))
            resp = c.http_response(timeout=timeout)
        finally:
            c.close()
        return resp, c

    def raw_upgrade(self, path="/echo", timeout=8.0):
        """raw_request(), and the access-log entry of its connection."""
        resp, c = self.raw_request(path, timeout)
        return resp, self.wait_entry(client_port=c.local_port), c


class EchoBackend:
    """backends/echo.py in a subprocess (real websockets server)."""
    counter = 0

    def __init__(self, tmp, name="", subprotocols=()):
        EchoBackend.counter += 1
        tmp = Path(tmp)
        self.name = name
        self.record = tmp / ("backend-%s-%d.jsonl" %
                             (name or "echo", EchoBackend.counter))
        self.record.write_text("")
        self.stderr_path = tmp / ("backend-%s-%d.stderr" %
                                  (name or "echo", EchoBackend.counter))
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(ECHO_PY), "--record", str(self.record),
             "--name", name, "--subprotocols", ",".join(subprotocols)],
            stdout=subprocess.PIPE, stderr=self._stderr,
            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        line = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in line:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.stop()
                pytest.fail("echo backend did not start:\n%s" %
                            tail(self.stderr_path))
            r, _, _ = select.select([fd], [], [], remaining)
            if r:
                chunk = os.read(fd, 256)
                if not chunk:
                    continue
                line += chunk
        self.port = int(line.split()[1])
        self.addr = "127.0.0.1:%d" % self.port

    def events(self, kind=None):
        out = []
        for line in self.record.read_text().split("\n")[:-1]:
            if line:
                e = json.loads(line)
                if kind is None or e["event"] == kind:
                    out.append(e)
        return out

    def wait_event(self, kind, n=1, timeout=5.0):
        return wait_for(lambda: len(self.events(kind)) >= n and
                        self.events(kind), timeout,
                        what="%d backend %s events" % (n, kind))

    def stop(self):
        stop_process(self.proc)
        try:
            self.proc.stdout.close()
        except Exception:
            pass
        self._stderr.close()


def headers_of(open_event, name):
    return [v for k, v in open_event["headers"] if k.lower() == name.lower()]


# -- fixtures --------------------------------------------------------------------

class _Factory:
    def __init__(self, tmpdir, certs, client_ssl):
        self.tmpdir = Path(tmpdir)
        self.certs = certs
        self.client_ssl = client_ssl
        self.made = []
        self.n = 0

    def gateway(self, routes, upstreams, start=True, **kw):
        self.n += 1
        gw = Gateway(self.tmpdir / ("gw%d" % self.n), self.certs,
                     self.client_ssl, routes, upstreams, **kw)
        self.made.append(gw)
        if start:
            gw.start()
        return gw

    def echo(self, name="", subprotocols=()):
        b = EchoBackend(self.tmpdir, name, subprotocols)
        self.made.append(b)
        return b

    def raw_upstream(self, behavior=None, port=0, host="127.0.0.1"):
        u = rawup.RawUpstream(behavior, port, host)
        self.made.append(u)
        return u

    def close(self):
        for obj in reversed(self.made):
            if isinstance(obj, Gateway):
                obj.stop()
            elif isinstance(obj, EchoBackend):
                obj.stop()
            else:
                obj.close()

    def check_sanitizers(self):
        """Fail if a daemon of a sanitizer build reported a memory error,
        undefined behaviour or a leak (at its exit, so after close())."""
        bad = [gw for gw in self.made
               if isinstance(gw, Gateway) and gw.sanitizer]
        if bad:
            pytest.fail("\n".join("sanitizer report from wsgate in %s:\n%s"
                                   % (gw.tmp, gw.sanitizer) for gw in bad),
                        pytrace=False)


@pytest.fixture
def factory(tmp_path, certs, client_ssl):
    f = _Factory(tmp_path, certs, client_ssl)
    yield f
    f.close()
    f.check_sanitizers()


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory, certs, client_ssl):
    f = _Factory(tmp_path_factory.mktemp("module"), certs, client_ssl)
    yield f
    f.close()
    f.check_sanitizers()


@pytest.fixture
def echo_gateway(factory):
    """A TLS gateway routing /echo to a websockets echo backend."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    gw.backend = be
    return gw


@pytest.fixture(autouse=True)
def _dump_logs_on_failure(request):
    del TOUCHED[:]
    TOUCHED.extend(RUNNING)
    yield
    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    if failed:
        for gw in list(TOUCHED):
            print(gw.dump())
    del TOUCHED[:]


# -- shared by the test_policy_* modules -----------------------------------------

def openssl(*args, cwd=None):
    """Run the openssl CLI (keys and certificates for the policy tests)."""
    subprocess.run(["openssl"] + [str(a) for a in args], check=True,
                   capture_output=True, timeout=60, cwd=cwd)


def ipv6_loopback_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


class PreClient(rawclient.RawClient):
    """A raw client that connects first, may send bytes in the clear (a
    PROXY protocol header) and then starts TLS itself; IPv4 or IPv6.

    local_port is known before the TLS handshake, so a test can find the
    access-log line of a connection whose handshake fails.
    """

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((host, port))
        self.local_port = s.getsockname()[1]
        self.sock = s
        self.buf = bytearray()
        self.eof = False
        self.key = None

    def start_tls(self, ctx, server_hostname="localhost", session=None):
        self.sock = ctx.wrap_socket(self.sock,
                                    server_hostname=server_hostname,
                                    session=session)
        return self


def http_refusal(gw, data, status, reason, client=None, up=None,
                 log_port=None, pred=None):
    """Send an upgrade request; expect a refusal with status, Connection:
    close and the reason in the body, the access-log line to say so, and
    (with up) no upstream connection.
    Returns (response, access-log entry)."""
    c = client or gw.raw()
    try:
        c.send(data)
        resp = c.http_response(timeout=5)
    finally:
        c.close()
    assert resp.status == status, resp
    assert [v.lower() for v in resp.header("Connection")] == ["close"], resp
    assert reason.encode() in resp.body, resp
    if pred is not None:
        e = gw.wait_entry(pred=pred)
    else:
        e = gw.wait_entry(client_port=log_port or c.local_port)
    assert e["status"] == status and e["reason"] == reason, e
    if up is not None:
        assert up.connections() == [], \
            "a refused handshake reached the upstream: %r" % \
            up.all_bytes()[:300]
    return resp, e


def http_upgrade(gw, data, client=None):
    """Send an upgrade request, expect 101; returns (client, response).
    The caller closes the client."""
    c = client or gw.raw()
    try:
        c.send(data)
        head = c.read_until(b"\r\n\r\n", 5)
    except BaseException:
        c.close()
        raise
    resp = rawclient.HTTPResponse(head[:-4], b"")
    if resp.status != 101:
        c.close()
        raise AssertionError("expected 101, got %r" % resp)
    return c, resp


def assert_not_logged(gw, secret):
    """A secret (a token) appears in neither the error log nor the access
    log of this gateway."""
    if isinstance(secret, bytes):
        secret = secret.decode()
    for path in (gw.error_log, gw.access_log, gw.stderr_path):
        try:
            text = Path(path).read_text(errors="replace")
        except FileNotFoundError:
            continue
        assert secret not in text, "token written to %s" % path


def make_mmdb(out, *specs, ipv4_only=False, db_type=None):
    """A small MaxMind DB from tests/geoip/make-mmdb.pl, as in
    make_mmdb(path, "127.0.0.0/24=DE", "::1/128=FR"); ipv4_only writes an
    IPv4 tree (ip_version 4); db_type sets database_type.  A missing
    writer (Debian's libmaxmind-db-writer-perl) fails the test; it does
    not skip."""
    p = subprocess.run(["perl", str(REPO / "tests" / "geoip" /
                                    "make-mmdb.pl")] +
                       (["-4"] if ipv4_only else []) +
                       (["-t", db_type] if db_type else []) + [str(out)] +
                       list(specs),
                       capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        pytest.fail("make-mmdb.pl failed (is libmaxmind-db-writer-perl "
                    "installed?):\n%s%s" % (p.stdout, p.stderr))
    return str(out)


# -- shared by the test_fault_* and test_hostile_* modules -----------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a long test (testssl.sh); still part of the suite")


def fd_count(pid):
    """Open descriptors of a process, from /proc/PID/fd."""
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_bytes(pid):
    """Resident set size of a process, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def wait_fds_at_most(gw, limit, timeout=8.0):
    """Wait until the daemon holds at most limit descriptors."""
    wait_for(lambda: fd_count(gw.pid) <= limit, timeout,
             what="wsgate descriptors back to <= %d" % limit)
    return fd_count(gw.pid)


def echo_works(gw, path="/echo", msg="still serving", timeout=10.0):
    """One normal WebSocket echo through gw: the daemon serves others."""
    async def go():
        async with gw.connect(path) as ws:
            await ws.send(msg)
            got = await asyncio.wait_for(ws.recv(), 5)
            assert got == msg, got
    run(go(), timeout)
