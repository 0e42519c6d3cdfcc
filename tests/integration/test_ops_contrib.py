"""contrib/: the logrotate snippet fits the systemd unit it ships with;
quickstart.sh run stops what it started."""

import os
import re
import shutil
import select
import signal
import subprocess
import time

import pytest

from conftest import REPO, WSGATE, free_port

CONTRIB = REPO / "contrib"


def directives(text):
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines()
            if ln.split("#", 1)[0].strip()]


def test_logrotate_leaves_new_files_to_the_daemon():
    """The unit runs wsgate as User=wsgate, so a file logrotate creates
    for another owner (Debian's logrotate.conf says "create", root's)
    could not be reopened on SIGUSR1 and the logs would keep going to the
    rotated file.  The snippet must say nocreate, or create them for the
    unit's user."""
    unit = (CONTRIB / "systemd" / "wsgate.service").read_text()
    user = re.search(r"^User=(\S+)$", unit, re.M).group(1)
    rot = directives((CONTRIB / "logrotate" / "wsgate").read_text())
    creates = [d for d in rot if re.match(r"(no)?create\b", d)]
    assert creates, "no create/nocreate: logrotate.conf's 'create' applies"
    for d in creates:
        if d == "nocreate":
            continue
        f = d.split()
        assert len(f) == 4 and f[2] == user, \
            "%r: new log files must belong to %s" % (d, user)
    assert any("USR1" in d for d in rot)


def test_readme_describes_what_quickstart_test_runs():
    """README's quick start says what `quickstart.sh test` runs and the
    line it ends with; tests/run-all.sh is what it runs.  The integration
    suite runs once, against the sanitizer build (build-asan/), and the
    last line is run-all.sh's total."""
    readme = (REPO / "README.md").read_text()
    para = re.search(r"^`test` .*?(?=\n\n)", readme, re.M | re.S)
    assert para, "README has no paragraph on `quickstart.sh test`"
    para = " ".join(para.group(0).split())
    runall = (REPO / "tests" / "run-all.sh").read_text()
    total = re.search(r'^echo "(total: )\$tp passed, \$tf failed"$',
                      runall, re.M)
    assert total, "run-all.sh no longer ends with its total line"
    assert "`%sN passed, N failed`" % total.group(1) in para, para
    stages = re.findall(r"^\s*(unit|integration|fuzz|manlint)( [^(\n]*)?$",
                        runall, re.M)
    integ = [a.strip() for s, a in stages if s == "integration"]
    assert integ == ["build-asan"], integ
    assert re.search(r"integration tests[^.]*(AddressSanitizer|"
                     r"sanitizer)", para), \
        "README must say the integration tests run on the sanitizer " \
        "build only: %s" % para
    if any(s == "manlint" for s, _ in stages):
        assert "man page" in para, para


def _alive(pid):
    """True while pid runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def fake_tree(top, gateway):
    """A copy of the tree for quickstart.sh run: the real script, with
    stand-ins for the install step, the build and the demo backend (which
    records its PID and runs until signalled), and build/wsgate running
    the Python in gateway."""
    (top / "contrib").mkdir()
    shutil.copyfile(CONTRIB / "quickstart.sh",
                    top / "contrib" / "quickstart.sh")
    (top / "contrib" / "install-deps.sh").write_text("exit 0\n")
    (top / "contrib" / "demo-backend.py").write_text(
        SLEEPER % str(top / "backend.pid"))
    (top / "configure").write_text("exit 0\n")
    (top / "configure").chmod(0o755)
    (top / "build").mkdir()
    (top / "build" / "Makefile").write_text("all:\n")
    gw = top / "build" / "wsgate"
    gw.write_text("#!/usr/bin/python3\n" + gateway)
    gw.chmod(0o755)
    (top / "etc" / "tls").mkdir(parents=True)


def need_demo_ports():
    """Skip unless 127.0.0.1:9001 and :8443 are free: quickstart.sh run
    refuses to start while either is held."""
    import socket
    for port in (9001, 8443):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            pytest.skip("127.0.0.1:%d is not free here: %s" % (port, e))
        finally:
            s.close()


# Records its PID in the file named by %r and runs until SIGTERM.
SLEEPER = ("import os, signal, sys, time\n"
           "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
           "open(%r, 'w').write(str(os.getpid()))\n"
           "time.sleep(300)\n")


def test_quickstart_run_stops_both_on_sigterm(tmp_path):
    """`quickstart.sh run` started wsgate in the foreground, so a SIGTERM
    to the script (kill PID, a supervisor, timeout --foreground) waited
    for wsgate to exit on its own: neither wsgate nor the demo backend
    stopped."""
    need_demo_ports()
    fake_tree(tmp_path, SLEEPER % str(tmp_path / "gw.pid"))
    (tmp_path / "etc" / "tls" / "server.pem").write_text("")
    sh = subprocess.Popen(["sh", "contrib/quickstart.sh", "run"],
                          cwd=tmp_path, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    pids = []
    try:
        for _ in range(200):
            pids = [p.read_text() for p in (tmp_path / "gw.pid",
                                            tmp_path / "backend.pid")
                    if p.exists()]
            if len(pids) == 2 and all(pids):
                break
            time.sleep(0.05)
        pids = [int(p) for p in pids if p]
        assert len(pids) == 2, "wsgate and the backend did not both start"
        sh.send_signal(signal.SIGTERM)
        try:
            sh.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for _ in range(100):
            if not any(_alive(p) for p in pids):
                break
            time.sleep(0.05)
        assert sh.poll() is not None, "quickstart.sh ignored SIGTERM"
        assert not [p for p in pids if _alive(p)], "left running"
    finally:
        for p in pids + [sh.pid]:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        sh.wait(5)


@pytest.mark.parametrize("late", [None, 0, 0.002, 0.005, 0.01, 0.02])
def test_demo_backend_second_signal_is_quiet(late):
    """Ctrl-C on `quickstart.sh run` sends the demo backend SIGINT (the
    terminal) and SIGTERM (the script's trap): the second one set the
    stop future again and logged an InvalidStateError traceback.  It can
    also come while the backend is on its way out (late: that many seconds
    after its "stopping" line), after asyncio.run() closing the loop put
    back the default action: the backend died with -15 then."""
    be = subprocess.Popen(["/usr/bin/python3",
                           str(CONTRIB / "demo-backend.py"),
                           "--host", "127.0.0.1", "--port", str(free_port())],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        # Its log line, not a probe connection: websockets 10.4 logs a
        # traceback of its own for a socket still unhandshaken at exit.
        ready = select.select([be.stderr], [], [], 20)[0]
        assert ready and "listening" in be.stderr.readline()
        be.send_signal(signal.SIGINT)
        if late is not None:
            assert select.select([be.stderr], [], [], 20)[0]
            assert "stopping" in be.stderr.readline()
            time.sleep(late)
        if be.poll() is None:
            be.send_signal(signal.SIGTERM)
        _, err = be.communicate(timeout=10)
    finally:
        if be.poll() is None:
            be.kill()
            be.wait(5)
    assert be.returncode == 0, err
    assert "Traceback" not in err, err


def test_readme_s_client_takes_a_typed_upgrade(factory):
    """README's quick start says to connect "by hand with openssl s_client
    and a typed upgrade request".  Typed lines end in a bare LF, which is
    no HTTP line end: without -crlf the gateway waited for the end of
    the request head and never answered.  The command as README gives it,
    fed typed lines, must get the 101."""
    readme = (REPO / "README.md").read_text()
    m = re.search(r"`(openssl s_client [^`]*)`", readme)
    assert m, "README no longer shows an openssl s_client command"
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    argv = m.group(1).replace("127.0.0.1:8443",
                              "127.0.0.1:%d" % gw.port).split()
    typed = ("GET /echo HTTP/1.1\nHost: localhost\nUpgrade: websocket\n"
             "Connection: Upgrade\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
             "Sec-WebSocket-Version: 13\n\n")
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        p.stdin.write(typed.encode())
        p.stdin.flush()
        out = b""
        for _ in range(50):
            if not select.select([p.stdout], [], [], 0.2)[0]:
                continue
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                break
    finally:
        p.kill()
        p.wait(5)
    assert out.startswith(b"HTTP/1.1 101 "), out


def test_shipped_config_says_who_makes_the_certificate(tmp_path):
    """etc/wsgate.yaml said of its certificate "made on first run if
    absent", but wsgate makes none: without etc/tls/, `wsgate -t` fails
    on it.  quickstart.sh run is what makes it, and the comment must say
    so."""
    (tmp_path / "etc").mkdir()
    shutil.copyfile(REPO / "etc" / "wsgate.yaml",
                    tmp_path / "etc" / "wsgate.yaml")
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    p = subprocess.run([WSGATE, "-t", "-c",
                        str(tmp_path / "etc" / "wsgate.yaml")],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode != 0 and "tls/server.pem" in p.stderr, p
    lines = (REPO / "etc" / "wsgate.yaml").read_text().splitlines()
    line = next(ln for ln in lines if ln.strip().startswith("certificate:"))
    assert "quickstart.sh" in line, line


def test_quickstart_run_renews_an_expired_certificate(tmp_path):
    """quickstart.sh run made etc/tls/server.pem (valid 365 days) only
    when absent, so a year on it kept starting wsgate with the expired
    one and the client it prints failed certificate verification.  An
    expired one is made anew; a valid one is kept."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    need_demo_ports()
    fake_tree(tmp_path, "")
    tls = tmp_path / "etc" / "tls"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now - datetime.timedelta(days=35))
            .sign(key, hashes.SHA256()))
    old = cert.public_bytes(serialization.Encoding.PEM)
    (tls / "server.pem").write_bytes(old)
    (tls / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))

    def run_script():
        """The script's output goes to a file, not a pipe: a stand-in
        backend still running (its stopping is test_quickstart_run_stops_
        both_on_sigterm's matter) cannot hold this test up."""
        out = tmp_path / "run.out"
        pidfile = tmp_path / "backend.pid"
        with open(out, "wb") as f:
            p = subprocess.Popen(["sh", "contrib/quickstart.sh", "run"],
                                 cwd=tmp_path, stdin=subprocess.DEVNULL,
                                 stdout=f, stderr=subprocess.STDOUT)
        try:
            rc = p.wait(60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
            pid = pidfile.exists() and pidfile.read_text()
            if pid and _alive(int(pid)):
                os.kill(int(pid), signal.SIGKILL)
            if pidfile.exists():
                pidfile.unlink()
        assert rc == 0, out.read_text(errors="replace")
        return (tls / "server.pem").read_bytes()

    new = run_script()
    assert new != old, "the expired certificate was kept"
    check = subprocess.run(["openssl", "x509", "-checkend", "0", "-noout",
                            "-in", str(tls / "server.pem")],
                           capture_output=True, timeout=20)
    assert check.returncode == 0, check
    assert run_script() == new, "a valid certificate was made anew"


def test_demo_backend_taken_port_is_one_line():
    """The demo backend on a port another process holds died with a
    Python traceback (OSError from asyncio's create_server).  It exits
    non-zero with one line that names the address."""
    import socket
    hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        hold.bind(("127.0.0.1", 0))
        hold.listen()
        port = hold.getsockname()[1]
        p = subprocess.run(["/usr/bin/python3",
                            str(CONTRIB / "demo-backend.py"),
                            "--host", "127.0.0.1", "--port", str(port)],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=20)
    finally:
        hold.close()
    assert p.returncode != 0, p
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "127.0.0.1:%d" % port in lines[0], lines


@pytest.mark.parametrize("port,what", [(9001, "demo backend"),
                                       (8443, "wsgate")])
def test_quickstart_run_refuses_a_taken_port(tmp_path, port, what):
    """With 127.0.0.1:9001 taken, `quickstart.sh run` started the demo
    backend, which died with a traceback, and then wsgate, which relayed
    to whatever held 9001; with 8443 taken by another wsgate (both
    SO_REUSEPORT) the two shared it.  It must start nothing and exit
    non-zero, saying which port is taken and what to do."""
    import socket
    hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As wsgate and the backend bind: a connection in TIME_WAIT is no owner.
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        hold.bind(("127.0.0.1", port))
    except OSError as e:
        hold.close()
        pytest.skip("127.0.0.1:%d is not free here: %s" % (port, e))
    fake_tree(tmp_path, SLEEPER % str(tmp_path / "gw.pid"))
    (tmp_path / "etc" / "tls" / "server.pem").write_text("")
    pidfiles = [tmp_path / "gw.pid", tmp_path / "backend.pid"]
    sh = None
    try:
        hold.listen()
        sh = subprocess.Popen(["sh", "contrib/quickstart.sh", "run"],
                              cwd=tmp_path, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
        try:
            out, err = sh.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out, err = "", "(still running after 30 s)"
        started = [p.name for p in pidfiles if p.exists()]
        assert sh.returncode not in (None, 0), (out, err)
        assert not started, "started %s with port %d taken" % (started, port)
        msg = [ln for ln in err.splitlines() if str(port) in ln]
        assert len(msg) == 1, err
        assert what in msg[0] and "stop" in msg[0], msg[0]
        assert "Traceback" not in err, err
    finally:
        hold.close()
        pids = []
        for p in pidfiles:
            try:
                pids.append(int(p.read_text()))
            except (FileNotFoundError, ValueError):
                pass
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if sh is not None:
            if sh.poll() is None:
                os.kill(sh.pid, signal.SIGKILL)
            sh.communicate(timeout=5)


# What building wsgate and running the demo need, and none of the rest.
RUN_PKGS = {"build-essential", "autoconf", "automake", "pkg-config",
            "libevent-dev", "libssl-dev", "libpcre2-dev", "libyaml-dev",
            "libmaxminddb-dev", "libjansson-dev", "libhiredis-dev",
            "openssl", "python3", "python3-websockets"}
TEST_ONLY_PKGS = {"redis-server", "python3-pytest", "python3-pytest-xdist",
                  "clang", "chromium",
                  "mandoc", "slowhttptest", "testssl.sh", "strace",
                  "libmaxmind-db-writer-perl", "nodejs", "npm"}


def install_deps(tmp_path, *args):
    """Run install-deps.sh ARGS with dpkg-query saying nothing is
    installed, and apt-get, npm and id stubbed on PATH: the packages it
    would install, and whether it ran npm."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    for name, body in (("dpkg-query", "exit 1"), ("id", "echo 0"),
                       ("apt-get", 'echo "apt-get $*" >>%s' % log),
                       ("npm", 'echo "npm $*" >>%s' % log)):
        (stubs / name).write_text("#!/bin/sh\n%s\n" % body)
        (stubs / name).chmod(0o755)
    env = dict(os.environ, PATH="%s:/usr/bin:/bin" % stubs)
    p = subprocess.run(["sh", str(CONTRIB / "install-deps.sh"), *args],
                       env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    calls = log.read_text().splitlines() if log.exists() else []
    pkgs = set()
    for c in calls:
        if c.startswith("apt-get install"):
            pkgs |= {w for w in c.split()[2:] if not w.startswith("-")}
    return pkgs, any(c.startswith("npm ") for c in calls)


def test_quickstart_run_installs_only_what_the_demo_needs(tmp_path):
    """`quickstart.sh run` installed the whole test set (npm's
    playwright-core, clang, chromium, redis-server, pytest...), slow and
    failing offline at the npm step, though the demo needs none of it.
    `install-deps.sh run`, which it uses, installs what building and
    running need; with no argument (`quickstart.sh test`) everything."""
    (tmp_path / "run").mkdir()
    pkgs, npm = install_deps(tmp_path / "run", "run")
    assert not npm, "install-deps.sh run ran npm"
    assert RUN_PKGS <= pkgs, RUN_PKGS - pkgs
    assert not pkgs & TEST_ONLY_PKGS, pkgs & TEST_ONLY_PKGS
    (tmp_path / "all").mkdir()
    pkgs, _ = install_deps(tmp_path / "all")
    assert RUN_PKGS | (TEST_ONLY_PKGS - {"nodejs", "npm"}) <= pkgs
    script = (CONTRIB / "quickstart.sh").read_text()
    run = script[script.index("\nrun)"):script.index("\ntest)")]
    test = script[script.index("\ntest)"):]
    assert "sh contrib/install-deps.sh run\n" in run, run
    assert "sh contrib/install-deps.sh\n" in test, test


CRASHER = r"""
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	if (CRASH && n > 0 && d[0] == 'X')
		abort();
	return 0;
}
"""


def test_run_all_fuzz_stage_fails_on_a_crash(tmp_path):
    """run-all.sh in a tree whose build-fuzz/ has a harness that crashes on
    its seed and one that does not: the fuzz stage counts one passed and
    one failed, the run exits 1, and the crashing input is left in the
    build folder (as `make fuzz` leaves it), not in the source tree where
    `git add -A` would pick it up."""
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("no clang: the fuzz stage is not built here")
    top = tmp_path / "tree"
    (top / "tests" / "fuzz" / "corpus" / "crash").mkdir(parents=True)
    (top / "tests" / "fuzz" / "corpus" / "fine").mkdir(parents=True)
    (top / "tests" / "fuzz" / "corpus" / "crash" / "seed").write_text("X")
    (top / "tests" / "fuzz" / "corpus" / "fine" / "seed").write_text("y")
    shutil.copyfile(REPO / "tests" / "run-all.sh",
                    top / "tests" / "run-all.sh")
    bins = top / "build-fuzz" / "tests" / "fuzz"
    bins.mkdir(parents=True)
    for d in ("build", "build-asan"):
        (top / d).mkdir()
    (top / "man").mkdir()
    src = tmp_path / "h.c"
    src.write_text(CRASHER)
    for name, crash in (("crash", 1), ("fine", 0)):
        p = subprocess.run([clang, "-fsanitize=fuzzer", "-DCRASH=%d" % crash,
                            "-o", str(bins / ("fuzz_" + name)), str(src)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
    env = dict(os.environ, FUZZ_SECONDS="1", INTEGRATION_JOBS="1")
    p = subprocess.run(["sh", str(top / "tests" / "run-all.sh")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "fuzz(build-fuzz): 1 passed, 1 failed" in p.stdout, p.stdout
    assert "fuzz_crash failed" in p.stderr
    # fuzz_fine never crashes, so both a pass and a fail were counted
    # from the harnesses' own exit codes.
    left = [f.name for f in top.iterdir() if f.is_file()]
    assert left == [], "artifacts in the source tree: %r" % left
    art = list((top / "build-fuzz").glob("fuzz-crash-crash-*"))
    assert len(art) == 1 and art[0].read_text() == "X", \
        list((top / "build-fuzz").iterdir())
