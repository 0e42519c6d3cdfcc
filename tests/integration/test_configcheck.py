"""wsgate -t: validate a config and report every error with its position."""

import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest
import yaml

import rawclient
from conftest import WSGATE, Gateway, free_port, http_upgrade, openssl


def check(path, timeout=20):
    p = subprocess.run([WSGATE, "-t", "-c", str(path)], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def make_config(tmp_path, certs, client_ssl):
    gw = Gateway(tmp_path / "gw", certs, client_ssl,
                 routes=[("/echo", "echo")],
                 upstreams={"echo": ["127.0.0.1:9"]})
    return gw


def test_good_config_is_ok(tmp_path, certs, client_ssl):
    gw = make_config(tmp_path, certs, client_ssl)
    rc, out = check(gw.cfg_path)
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    # -t does not start serving
    import socket
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", gw.port))
    finally:
        s.close()


def test_unknown_key_is_reported_with_position(tmp_path, certs, client_ssl):
    gw = make_config(tmp_path, certs, client_ssl)
    text = gw.cfg_path.read_text()
    lines = text.splitlines()
    # put an unknown key at the top level, on a known line and column
    lines.insert(1, "bogus_option: 1")
    gw.cfg_path.write_text("\n".join(lines) + "\n")
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    pat = re.compile(r"^%s:2:1: .*unknown.*bogus_option|"
                     r"^%s:2:1: .*bogus_option.*unknown" %
                     (re.escape(str(gw.cfg_path)), re.escape(str(gw.cfg_path))),
                     re.I | re.M)
    assert pat.search(out), out
    assert ": ok" not in out, out


def test_every_error_is_reported(tmp_path, certs, client_ssl):
    gw = make_config(tmp_path, certs, client_ssl)
    lines = gw.cfg_path.read_text().splitlines()
    lines.insert(1, "bogus_one: 1")
    lines.append("bogus_two: 2")
    gw.cfg_path.write_text("\n".join(lines) + "\n")
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    errs = [l for l in out.splitlines()
            if re.match(r"^%s:\d+:\d+: " % re.escape(str(gw.cfg_path)), l)]
    assert any("bogus_one" in l for l in errs), out
    assert any("bogus_two" in l for l in errs), out
    assert any(l.startswith("%s:%d:1: " % (gw.cfg_path, len(lines)))
               for l in errs), out


def test_unknown_key_in_policy_names_the_policy_file(tmp_path, certs,
                                                     client_ssl):
    gw = make_config(tmp_path, certs, client_ssl)
    pol = gw.tmp / "policies" / "default.yaml"
    pol.write_text(pol.read_text() + "not_a_section: {x: 1}\n")
    nlines = len(pol.read_text().splitlines())
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    assert re.search(r"^%s:%d:1: .*not_a_section" %
                     (re.escape(str(pol)), nlines), out, re.M), out


def test_bad_value_is_reported(tmp_path, certs, client_ssl):
    gw = make_config(tmp_path, certs, client_ssl)
    text = gw.cfg_path.read_text().replace("handshake_timeout: 10s",
                                           "handshake_timeout: ten")
    assert "handshake_timeout: ten" in text
    gw.cfg_path.write_text(text)
    lineno = [i + 1 for i, l in enumerate(text.splitlines())
              if "handshake_timeout" in l][0]
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    assert re.search(r"^%s:%d:\d+: " % (re.escape(str(gw.cfg_path)), lineno),
                     out, re.M), out


def test_daemon_refuses_to_start_with_bad_config(tmp_path, certs,
                                                 client_ssl):
    gw = make_config(tmp_path, certs, client_ssl)
    gw.cfg_path.write_text(gw.cfg_path.read_text() + "bogus_option: 1\n")
    p = subprocess.run([WSGATE, "-c", str(gw.cfg_path)], capture_output=True,
                       text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    assert "bogus_option" in p.stdout + p.stderr + gw.error_text()


def test_default_config_path(tmp_path):
    """Without -c, -t reads $(sysconfdir)/wsgate/wsgate.yaml, an absolute
    path whatever the working directory, and names it in its answer."""
    p = subprocess.run([WSGATE, "-t"], capture_output=True, text=True,
                       timeout=20, stdin=subprocess.DEVNULL, cwd=tmp_path)
    out = (p.stdout + p.stderr).strip()
    m = re.match(r"(/\S*/wsgate/wsgate\.yaml)(: ok|:1:1: cannot open: .*)$",
                 out.splitlines()[0] if out else "")
    assert m, out
    assert (p.returncode == 0) == (m.group(2) == ": ok"), (p.returncode, out)


@pytest.mark.parametrize("what", ["missing", "empty", "directory"])
def test_whole_file_errors_keep_the_position_form(tmp_path, what):
    """An error about the whole file has no line of its own; it printed as
    'FILE: message', which a tool parsing FILE:LINE:COL (SPEC.md) skips.
    The file's start stands for it.  A directory is named as one, not
    reported as a YAML error."""
    path = tmp_path / "wsgate.yaml"
    if what == "empty":
        path.write_text("")
    elif what == "directory":
        path.mkdir()
    rc, out = check(path)
    assert rc == 1, out
    lines = out.strip().splitlines()
    assert lines, out
    for line in lines:
        assert re.match(re.escape(str(path)) + r":\d+:\d+: \S", line), line
    want = {"missing": ":1:1: cannot open: No such file or directory",
            "empty": ":1:1: config is missing 'upstreams'",
            "directory": ":1:1: cannot open: Is a directory"}[what]
    assert str(path) + want in lines, out


def test_admin_on_the_port_of_a_wildcard_listener_is_refused(tmp_path, certs,
                                                           client_ssl):
    """A listener on 0.0.0.0:P holds P on 127.0.0.1 too, so an admin
    listener there could not be bound: -t says so, rather than "ok" for a
    configuration the daemon then refuses to start with."""
    gw = Gateway(tmp_path / "gw", certs, client_ssl,
                 routes=[("/echo", "echo")],
                 upstreams={"echo": ["127.0.0.1:9"]},
                 listener={"listen": "0.0.0.0:%d" % free_port()})
    port = int(gw.config["listeners"][0]["listen"].rsplit(":", 1)[1])
    cfg = dict(gw.config, admin={"listen": "127.0.0.1:%d" % port})
    gw.write_config(cfg)
    p = subprocess.run([WSGATE, "-t", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert re.search(r":\d+:\d+: listen: 127\.0\.0\.1:%d is already used "
                     r"by listener 'public'" % port, p.stderr), p.stderr


@pytest.mark.parametrize("listen", ["127.0.0.1", "0.0.0.0"])
def test_admin_on_a_listener_port_as_a_v4_mapped_address_is_refused(
        tmp_path, certs, client_ssl, listen):
    """[::ffff:127.0.0.1]:P is 127.0.0.1:P to the kernel: an admin
    listener written so, on a listener's port, cannot be bound either, and
    -t says so rather than "ok" for a configuration the daemon then
    refuses to start with."""
    gw = Gateway(tmp_path / "gw", certs, client_ssl,
                 routes=[("/echo", "echo")],
                 upstreams={"echo": ["127.0.0.1:9"]},
                 listener={"listen": "%s:%d" % (listen, free_port())})
    port = int(gw.config["listeners"][0]["listen"].rsplit(":", 1)[1])
    cfg = dict(gw.config, admin={"listen": "[::ffff:127.0.0.1]:%d" % port})
    gw.write_config(cfg)
    p = subprocess.run([WSGATE, "-t", "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert re.search(r":\d+:\d+: listen: .*:%d is already used "
                     r"by listener 'public'" % port, p.stderr), p.stderr


def test_deep_nesting_is_refused_at_once(tmp_path):
    """libyaml's scanner works in proportion to the nesting depth on every
    token: 100,000 nested lists (200 KB) took it about 40 s.  Nesting past
    64 levels is refused, with its position, before that."""
    d = 100000
    f = tmp_path / "deep.yaml"
    f.write_text("a: " + "[" * d + "]" * d + "\n")
    p = subprocess.run([WSGATE, "-t", "-c", str(f)], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "%s:1:" % f in p.stderr, p.stderr
    assert "nested more than 64 deep" in p.stderr, p.stderr


def test_a_busy_listen_address_is_named_with_its_error(tmp_path, certs,
                                                     client_ssl):
    """The daemon cannot bind a listener: the error log gives the system's
    words for it.  (GNU strerror_r returns the text and mostly leaves the
    buffer alone; printing the buffer printed stack bytes.)"""
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        gw = Gateway(tmp_path / "gw", certs, client_ssl,
                     routes=[("/echo", "echo")],
                     upstreams={"echo": ["127.0.0.1:9"]},
                     listener={"listen": "127.0.0.1:%d" %
                               busy.getsockname()[1]})
        p = subprocess.run([WSGATE, "-c", str(gw.cfg_path)],
                           capture_output=True, text=True, timeout=20,
                           stdin=subprocess.DEVNULL, errors="replace")
    finally:
        busy.close()
    out = p.stdout + p.stderr + gw.error_text()
    assert p.returncode != 0, out
    assert re.search(r"listener public: 127\.0\.0\.1:\d+ is in use: "
                     r"Address already in use$", out, re.M), out



def test_an_address_not_on_this_host_is_not_called_in_use(tmp_path, certs,
                                                          client_ssl):
    """A listen address that bind(2) refuses for another reason than a
    socket already on it (here EADDRNOTAVAIL: TEST-NET-1 is on no
    interface; EACCES for a low port without privileges is the same case)
    is not reported as "in use": the log says it cannot be bound and why,
    and the daemon exits 1."""
    gw = Gateway(tmp_path / "gw", certs, client_ssl,
                 routes=[("/echo", "echo")],
                 upstreams={"echo": ["127.0.0.1:9"]},
                 listener={"listen": "192.0.2.1:8443"})
    p = subprocess.run([WSGATE, "-c", str(gw.cfg_path)],
                       capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL, errors="replace")
    out = p.stdout + p.stderr + gw.error_text()
    assert p.returncode == 1, out
    assert "in use" not in out, out
    assert re.search(r"listener public: cannot bind 192\.0\.2\.1:8443: "
                     r"Cannot assign requested address$", out, re.M), out


def _with_key(tmp_path, certs, client_ssl, make_key):
    """A config whose listener has the session certificate and the key
    make_key(path) writes; returns the config path and the key path."""
    gw = make_config(tmp_path, certs, client_ssl)
    key = tmp_path / "other.key"
    make_key(key)
    cfg = yaml.safe_load(gw.cfg_path.read_text())
    cfg["listeners"][0]["tls"]["key"] = str(key)
    gw.cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return gw.cfg_path, key


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_a_key_of_another_certificate_is_named_as_such(tmp_path, certs,
                                                      client_ssl, kind):
    """A key that is not the certificate's, of the same type (P-256, as
    the certificate) or another: -t says it does not match."""
    def mk(path):
        if kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-out", path)
        else:
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", path)
    path, key = _with_key(tmp_path, certs, client_ssl, mk)
    rc, out = check(path)
    assert rc == 1, out
    assert "key %s does not match certificate %s" % (key, certs["cert"]) \
        in out, out


def test_an_encrypted_key_fails_at_once_without_a_prompt(tmp_path, certs,
                                                         client_ssl):
    """A key with a passphrase: -t, even run from a terminal, says the
    key is encrypted and exits, rather than asking for the passphrase on
    the terminal (which would also stall a reload)."""
    def mk(path):
        openssl("pkey", "-in", certs["key"], "-aes256", "-passout",
                "pass:secret", "-out", path)
    path, key = _with_key(tmp_path, certs, client_ssl, mk)
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(WSGATE, [WSGATE, "-t", "-c", str(path)])
        finally:
            os._exit(127)
    out, status = b"", None
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                out += chunk
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert status is not None, "wsgate -t still waiting:\n" + text
    assert os.WEXITSTATUS(status) == 1, text
    assert "pass phrase" not in text.lower(), text
    assert "key %s is encrypted" % key in text, text


def test_first_route_wins_and_a_shadowed_one_is_a_warning(factory):
    """Routes: first match wins.  A route that an earlier prefix already
    takes never matches: -t still says ok (exit 0) and prints a warning at
    its line; the running daemon sends the path to the first route."""
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/a/*", "a"), ("/a/b", "b"),
                                 ("/c", "b"), ("/c/*", "a")],
                         upstreams={"a": [a.addr], "b": [b.addr]},
                         start=False)
    rc, out = check(gw.cfg_path)
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    text = gw.cfg_path.read_text().splitlines()
    line = next(i for i, s in enumerate(text, 1) if "path: /a/b" in s)
    assert re.search(r"^%s:%d:\d+: warning: .*/a/b.* never matches" %
                     (re.escape(str(gw.cfg_path)), line), out, re.M), out
    gw.start()
    for path, route, up in (("/a/b", "/a/*", "a"), ("/c", "/c", "b"),
                            ("/c/d", "/c/*", "a")):
        c, _ = http_upgrade(gw, rawclient.build_request(path))
        c.close()
        e = gw.wait_entry(client_port=c.local_port)
        assert (e["status"], e["route"], e["upstream"]) == (101, route, up), e


def sig_blocked(pid, sig):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("SigBlk:"):
                    return int(ln.split()[1], 16) >> (sig - 1) & 1
    except FileNotFoundError:
        pass
    return 0


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP],
                         ids=["SIGUSR1", "SIGHUP"])
def test_check_survives_reopen_and_reload_signals(tmp_path, certs,
                                                  client_ssl, sig):
    """`wsgate -t` died of a SIGUSR1 or SIGHUP (their default action):
    logrotate's postrotate (pkill -USR1 -x wsgate, or systemctl kill
    -s USR1 wsgate as wsgate(8) shows) during the unit's ExecStartPre
    check failed the start.  The check waits here for its
    tls_ticket_secret (a FIFO), gets the signal, and must still say ok."""
    gw = make_config(tmp_path, certs, client_ssl)
    fifo = gw.tmp / "ticket.secret"
    os.mkfifo(fifo, 0o600)
    gw.config["tls_ticket_secret"] = str(fifo)
    gw.write_config()
    p = subprocess.Popen([WSGATE, "-t", "-c", str(gw.cfg_path)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        # Once blocked (fixed code) or after 2 s it waits in open(fifo).
        for _ in range(40):
            if sig_blocked(p.pid, sig):
                break
            time.sleep(0.05)
        time.sleep(0.2)
        assert p.poll() is None, p.communicate()
        p.send_signal(sig)
        time.sleep(0.2)
        try:
            # No reader (the check died): ENXIO instead of waiting.
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            fd = None
        if fd is not None:
            os.set_blocking(fd, True)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(48))
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert p.returncode == 0, (p.returncode, out)
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
