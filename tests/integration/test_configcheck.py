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
import rawup
import wsproto
from conftest import (REPO, WSGATE, Gateway, free_port, http_upgrade,
                      openssl)


def check(path, timeout=20, **kw):
    p = subprocess.run([WSGATE, "-t", "-c", str(path)], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       **kw)
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


@pytest.mark.parametrize("text,line,col,hint", [
    ("log:\n\tlevel: info", 3, 1, True),
    ("log:\n  \tlevel: info", 3, 3, True),
    ("log: { level: info, @x }", 2, 21, False)])
def test_a_tab_in_the_indentation_is_named(tmp_path, certs, client_ssl,
                                           text, line, col, hint):
    """A tab where libyaml says only "found character that cannot start
    any token" is named as a tab, the usual mistake of a newcomer to YAML;
    the message is unchanged for any other character."""
    gw = make_config(tmp_path, certs, client_ssl)
    lines = gw.cfg_path.read_text().splitlines()
    lines.insert(1, text)
    gw.cfg_path.write_text("\n".join(lines) + "\n")
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    want = "%s:%d:%d: syntax error: found character that cannot start " \
        "any token" % (gw.cfg_path, line, col)
    if hint:
        want += " (a tab: YAML indents with spaces only)"
    assert want in out.splitlines(), out


@pytest.mark.parametrize("policy,warned", [
    ("frames:\n  allow_binary: false\n", True),
    ("ip:\n  allow: [127.0.0.0/8]\n", True),
    ("origin:\n  allow_missing: true\n", False),
    ("auth:\n  jwt:\n    algorithms: [HS256]\n"
     "    key_file: hmac.secret\n", False),
    ("auth:\n  query_param: access_token\n  jwt:\n"
     "    algorithms: [HS256]\n    key_file: hmac.secret\n", False),
    # a token in a cookie is sent by the browser by itself
    ("auth:\n  header: cookie\n  jwt:\n"
     "    algorithms: [HS256]\n    key_file: hmac.secret\n", True),
])
def test_a_tls_route_without_origin_check_warns_unless_it_asks_a_token(
        tmp_path, certs, client_ssl, policy, warned):
    """A browser on another site can open a TLS route with no origin check
    with what the browser sends by itself (cookies, client certificates,
    its address on the inside of an IP allow-list): -t warns.  A route
    whose policy asks for a JWT cannot be opened so, since a page of
    another site holds no token of the user's: no warning, unless the
    token is read from the Cookie header."""
    gw = make_config(tmp_path, certs, client_ssl)
    secret = gw.pol_dir / "hmac.secret"
    secret.write_bytes(b"k" * 32)
    secret.chmod(0o600)
    (gw.pol_dir / "default.yaml").write_text(policy)
    rc, out = check(gw.cfg_path)
    assert rc == 0, out
    warning = "warning: route /echo on TLS listener 'public': policy " \
        "'default' has no origin check, so any web page can open it"
    assert (warning in out) == warned, out


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


def test_an_operand_is_a_usage_error(tmp_path, certs, client_ssl):
    """wsgate takes no operand: a config named without -c is not checked
    (or served) in place of the default one, and says how to call it."""
    gw = make_config(tmp_path, certs, client_ssl)
    p = subprocess.run([WSGATE, "-t", str(gw.cfg_path)], capture_output=True,
                       text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout == ""
    assert p.stderr.startswith("usage: wsgate "), p.stderr


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



@pytest.mark.parametrize("lists,refused", [(63, False), (64, True)])
def test_nesting_limit_exactly(tmp_path, lists, refused):
    """The top mapping and 63 lists in it are 64 levels: not refused for
    their depth (only for the unknown key); one list more is."""
    f = tmp_path / "deep.yaml"
    f.write_text("a: " + "[" * lists + "]" * lists + "\n")
    p = subprocess.run([WSGATE, "-t", "-c", str(f)], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert ("nested more than 64 deep" in p.stderr) == refused, p.stderr
    assert ("unknown key 'a'" in p.stderr) != refused, p.stderr

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


def test_a_second_gateway_on_the_same_port_does_not_start(factory):
    """A second wsgate started by mistake on a running one's address: the
    listening sockets take SO_REUSEPORT, which the kernel would let it
    share, taking half of the first one's connections; it must refuse to
    start, naming the address in use."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, tls=False)
    p = subprocess.run([WSGATE, "-c", str(gw.cfg_path)], capture_output=True,
                       text=True, timeout=20, stdin=subprocess.DEVNULL,
                       errors="replace")
    out = p.stdout + p.stderr + gw.error_text()
    assert p.returncode != 0, out
    assert re.search(r"listener public: 127\.0\.0\.1:%d is in use: "
                     r"Address already in use$" % gw.port, out, re.M), out
    assert gw.alive()


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


@pytest.mark.parametrize("case", ["swapped", "empty-cert", "empty-key",
                                  "der-cert"])
def test_a_file_without_the_pem_block_says_what_is_missing(tmp_path, certs,
                                                          client_ssl, case):
    """The certificate and key swapped, an empty file or a DER certificate:
    -t says which file holds no PEM certificate or no private key, not
    OpenSSL's "PEM lib", which names neither."""
    gw = make_config(tmp_path, certs, client_ssl)
    cert, key = certs["cert"], certs["key"]
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    der = tmp_path / "server.der"
    openssl("x509", "-in", cert, "-outform", "DER", "-out", der)
    cert, key = {"swapped": (key, cert), "empty-cert": (str(empty), key),
                 "empty-key": (cert, str(empty)),
                 "der-cert": (str(der), key)}[case]
    cfg = yaml.safe_load(gw.cfg_path.read_text())
    cfg["listeners"][0]["tls"].update({"certificate": cert, "key": key})
    gw.cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    assert "PEM lib" not in out, out
    if case == "empty-key":
        want = "key %s: no PEM private key in it" % key
    else:
        want = "certificate %s: no PEM certificate in it" % cert
    assert re.search(r"^%s:\d+:\d+: %s" % (re.escape(str(gw.cfg_path)),
                     re.escape(want)), out, re.M), out


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


# -- every documented range, walked ------------------------------------------

def man_items(page):
    """{key: (syntax, text)} of each '.It Ic key' of a man page: the words
    after the key on the .It line, and the item's text with the mdoc
    macro names dropped and its lines joined."""
    items = {}
    key, syntax, buf = None, "", []
    for line in (REPO / "man" / page).read_text().splitlines():
        if line.startswith((".It", ".Sh", ".El")):
            if key is not None:
                text = re.sub(r" ([;,.)])", r"\1", " ".join(buf))
                items.setdefault(key, (syntax, text))
            m = re.match(r"\.It Ic (\S+)\s*(.*)", line)
            key, syntax = (m.group(1), m.group(2)) if m else (None, "")
            buf = []
            continue
        if line.startswith(".\\\""):
            continue
        buf.append(re.sub(r"^\.[A-Z][a-z]+ ?", "", line))
    return items


def man_ranges():
    """{key: (unit, default, minimum, maximum)} for every item of
    wsgate.yaml(5) and wsgate-policy(5) that states a minimum or maximum
    ('From 1 to 1000000' too); minimum None when none is stated."""
    out = {}
    for page in ("wsgate.yaml.5", "wsgate-policy.5"):
        for key, (syntax, t) in man_items(page).items():
            lo = re.search(r"the minimum is (\S+?)(?: byte)?[;,.]? ", t)
            hi = re.search(r"the maximum (?:is )?(\S+?)[;,.]?(?: |$)", t)
            fr = re.search(r"\b[Ff]rom (\d+) to (\d+)[;,.]", t)
            if not (lo or hi or (fr and "port" not in t)):
                continue
            if fr and not hi:
                lo, hi = fr.group(1), fr.group(2)
            else:
                lo, hi = lo and lo.group(1), hi.group(1)
            d = re.search(r"[Tt]he default is (\S+?)[;,.]? ", t)
            unit = ("duration" if "duration" in syntax else
                    "size" if "size" in syntax.split("|")[0] else "number")
            out[key] = (unit, d and d.group(1), lo, hi)
            if key == "burst":
                # "... and the maximum 1000000, or 1GiB for bytes."
                b = re.search(r"or (\S+) for bytes", t)
                out["burst (bytes)"] = ("size", None, lo, b.group(1))
    return out


# Where each option with a range is written: the main file (main, under
# the listener, under the upstream) or the policy.  {v} is the value.
RANGE_PLACES = {
    "workers": ("main", "workers: {v}"),
    "shutdown_timeout": ("main", "shutdown_timeout: {v}"),
    "busy_poll": ("main", "busy_poll: {v}"),
    "max_connections": ("main", "max_connections: {v}"),
    "max_entries": ("main", "rate_limit_table:\n  max_entries: {v}"),
    "idle_expiry": ("main", "rate_limit_table:\n  idle_expiry: {v}"),
    "lease_ttl": ("main", "rate_limit_store:\n  redis: redis://127.0.0.1\n"
                  "  lease_ttl: {v}"),
    "handshake_timeout": ("listener", "    handshake_timeout: {v}"),
    "max_header_bytes": ("listener", "    max_header_bytes: {v}"),
    "max_pending_per_ip": ("listener", "    max_pending_per_ip: {v}"),
    "connect_timeout": ("upstream", "    connect_timeout: {v}"),
    "fail_timeout": ("upstream", "    fail_timeout: {v}"),
    "leeway": ("policy", "auth:\n  jwt:\n    algorithms: [HS256]\n"
               "    key_file: hmac.secret\n    leeway: {v}"),
    "max_frame_size": ("policy", "frames:\n  max_frame_size: {v}"),
    "max_message_size": ("policy", "frames:\n  max_message_size: {v}"),
    "idle": ("policy", "timeouts:\n  idle: {v}"),
    "concurrent_per_ip": ("policy", "rate_limit:\n  concurrent_per_ip: {v}"),
    "ipv6_prefix": ("policy", "rate_limit:\n  ipv6_prefix: {v}"),
    "burst": ("policy", "rate_limit:\n  messages_per_connection:\n"
              "    rate: 1/s\n    burst: {v}"),
    "burst (bytes)": ("policy", "rate_limit:\n  bytes_per_connection:\n"
                      "    rate: 1/s\n    burst: {v}"),
}

# Where the path options test_value_syntax tries are written.
PATH_PLACES = {
    "access_log": ("main", "log:\n  access_log: {v}"),
    "error_log": ("main", "log:\n  error_log: {v}"),
}

DURATION_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}
SIZE_BYTES = {"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def base_value(unit, text):
    """A documented value in milliseconds, bytes or units."""
    m = re.fullmatch(r"(\d+)([A-Za-z]*)", text)
    assert m, text
    n, u = int(m.group(1)), m.group(2)
    if unit == "duration":
        return n * (DURATION_MS[u] if u else 1000)
    if unit == "size":
        return n * SIZE_BYTES[u]
    assert u == "", text
    return n


def write_base(unit, n):
    """n milliseconds, bytes or units as a config value."""
    return "%dms" % n if unit == "duration" else str(n)


def check_value(tmp_path, place, leaf, value):
    """`wsgate -t` on a config with value set where place, a row of
    RANGE_PLACES, puts it: (rc, output, file, line, column of the value
    of the last line that sets leaf)."""
    where, tmpl = place
    snippet = tmpl.format(v=value)
    parts = {"main": "", "listener": "", "upstream": "", "policy": ""}
    parts[where] = snippet + "\n"
    pol_dir = tmp_path / "policies"
    pol_dir.mkdir(exist_ok=True)
    (pol_dir / "hmac.secret").write_bytes(b"k" * 32)
    main = ("%slisteners:\n  - name: only\n    listen: 127.0.0.1:%d\n"
            "%s    routes:\n      - path: /ws\n        upstream: up\n"
            "upstreams:\n  up:\n%s%s"
            "policies_dir: policies\n" %
            (parts["main"], free_port(), parts["listener"],
             "" if "servers:" in parts["upstream"] else
             "    servers: [127.0.0.1:9]\n", parts["upstream"]))
    cfg = tmp_path / "wsgate.yaml"
    cfg.write_text(main)
    pol = pol_dir / "default.yaml"
    pol.write_text(parts["policy"])
    path = pol if where == "policy" else cfg
    text = path.read_text().splitlines()
    line = [i for i, l in enumerate(text) if l.lstrip().startswith(
        leaf + ":")][-1]
    col = text[line].index(": ", text[line].index(leaf)) + 3
    rc, out = check(cfg)
    return rc, out, path, line + 1, col


def range_cases():
    cases = []
    for key, (unit, default, lo, hi) in sorted(man_ranges().items()):
        lo_n = base_value(unit, lo) if lo is not None else 0
        hi_n = base_value(unit, hi)
        cases.append((key, lo if lo is not None else "0", None))
        if lo_n > 0:
            cases.append((key, write_base(unit, lo_n - 1),
                          "is below the minimum %s" % lo))
        cases.append((key, hi, None))
        cases.append((key, write_base(unit, hi_n + 1),
                      "is above the maximum %s" % hi))
        if default is not None and default != "the":
            cases.append((key, default, None))
    return [pytest.param(*c, id="%s=%s" % c[:2])
            for i, c in enumerate(cases) if c not in cases[:i]]


def test_every_documented_range_has_a_place():
    """The options the man pages give a range are the ones walked below:
    a new one needs its row in RANGE_PLACES."""
    assert set(man_ranges()) == set(RANGE_PLACES)


@pytest.mark.parametrize("key,value,refused", range_cases())
def test_documented_range(tmp_path, key, value, refused):
    """Each minimum, maximum and default that wsgate.yaml(5) and
    wsgate-policy(5) state is taken, and one unit below the minimum or
    above the maximum is refused at its FILE:LINE:COL with the key, the
    value and the bound as the page writes it."""
    leaf = key.split(" ")[0]
    rc, out, path, line, col = check_value(tmp_path, RANGE_PLACES[key],
                                           leaf, value)
    if refused is None:
        assert rc == 0, out
        assert "%s: ok" % (tmp_path / "wsgate.yaml") in out.splitlines(), out
        return
    assert rc == 1, out
    want = "%s:%d:%d: %s: %s %s" % (path, line, col, leaf, value, refused)
    assert want in out.splitlines(), out


def test_documented_defaults_lie_in_their_ranges():
    for key, (unit, default, lo, hi) in man_ranges().items():
        if default in (None, "the", "auto"):
            continue
        n = base_value(unit, default)
        assert (base_value(unit, lo) if lo else 0) <= n <= \
            base_value(unit, hi), key


@pytest.mark.parametrize("key,value,want", [
    # units are case-sensitive and binary: KiB, MiB, GiB; ms, s, m, h
    ("max_header_bytes", "2KiB", None),
    ("max_header_bytes", "'2048'", None),
    ("max_header_bytes", "2KB", "invalid size '2KB': unknown unit"),
    ("max_header_bytes", "2kb", "invalid size '2kb': unknown unit"),
    ("max_header_bytes", "2kib", "invalid size '2kib': unknown unit"),
    ("max_header_bytes", "1.5KiB", "invalid size '1.5KiB': expected a "
     "whole number"),
    ("max_header_bytes", "-2048", "invalid size '-2048': negative values"),
    ("max_header_bytes", "+2048", "invalid size '+2048': expected a whole "
     "number"),
    ("max_header_bytes", "'2 KiB'", "invalid size '2 KiB': spaces are not "
     "allowed"),
    ("max_header_bytes", "18446744073709551616", "invalid size "
     "'18446744073709551616': number too large"),
    ("max_header_bytes", "17179869184GiB", "invalid size "
     "'17179869184GiB': number too large"),
    ("max_header_bytes", "true", "invalid size 'true'"),
    ("handshake_timeout", "1500ms", None),
    ("handshake_timeout", "'2'", None),
    ("handshake_timeout", "1.5s", "invalid duration '1.5s': expected a "
     "whole number"),
    ("handshake_timeout", "2S", "invalid duration '2S': unknown unit"),
    ("handshake_timeout", "1d", "invalid duration '1d': unknown unit"),
    ("handshake_timeout", "-1s", "invalid duration '-1s': negative"),
    ("handshake_timeout", "99999999999h", "99999999999h is above the "
     "maximum 5m"),
    ("handshake_timeout", "9999999999999h", "invalid duration "
     "'9999999999999h': number too large"),
    ("handshake_timeout", "''", "invalid duration '': empty value"),
    ("handshake_timeout", "~", None),              # null: the default
    ("handshake_timeout", "null", None),
    ("handshake_timeout", "Null", None),
    ("handshake_timeout", "NULL", None),
    ("handshake_timeout", "nULL", "invalid duration 'nULL'"),
    ("workers", "'4'", None),
    ("workers", "4.0", "expected auto or a number from 1 to 256, got '4.0'"),
    ("workers", "+4", "expected auto or a number from 1 to 256, got '+4'"),
    ("workers", "0x4", "expected auto or a number from 1 to 256, got '0x4'"),
    ("workers", "18446744073709551617", "expected auto or a number from 1 "
     "to 256"),
    ("workers", "Auto", "got 'Auto'"),
    # an unquoted YAML 1.1 boolean where a path goes is not a file name
    ("access_log", "false", "unquoted 'false' reads as a boolean, not a "
     "path; the words are stdout or off; quote it if it is a file name"),
    ("access_log", "No", "unquoted 'No' reads as a boolean"),
    ("access_log", "n", "unquoted 'n' reads as a boolean"),
    ("access_log", "Y", "unquoted 'Y' reads as a boolean"),
    ("access_log", "On", "unquoted 'On' reads as a boolean"),
    ("access_log", "off", None),
    ("access_log", "'false'", None),
    ("error_log", "off", "unquoted 'off' reads as a boolean, not a path; "
     "the words are stderr or syslog;"),
    ("error_log", "falsehood.log", None),
    # the other log's words, unquoted, are not file names either
    ("access_log", "stderr", "unquoted 'stderr' would name a file, not "
     "a stream; the words are stdout or off; quote it if it is a file "
     "name"),
    ("access_log", "syslog", "unquoted 'syslog' would name a file"),
    ("access_log", "'stderr'", None),
    ("error_log", "stdout", "unquoted 'stdout' would name a file, not a "
     "stream; the words are stderr or syslog;"),
    ("error_log", "\"stdout\"", None),
    ("error_log", "stdout.log", None),
] + [
    # YAML 1.1 booleans other than true and false are not booleans here
    ("proxy_protocol", v, None if v in ("true", "false", "'true'") else
     "expected true or false, got '%s'" % v)
    for v in ("true", "false", "'true'", "yes", "no", "on", "off", "y",
              "True", "FALSE", "1", "0")
], ids=lambda v: str(v))
def test_value_syntax(tmp_path, key, value, want):
    """VALUE SYNTAX of wsgate.yaml(5): the forms a size, a duration, a
    number and a boolean take, and the ones refused at FILE:LINE:COL."""
    place = {**RANGE_PLACES, **PATH_PLACES}.get(
        key, ("listener", "    %s: {v}" % key))
    rc, out, path, line, col = check_value(tmp_path, place, key, value)
    if want is None:
        assert rc == 0, out
        return
    assert rc == 1, out
    assert re.search(r"^%s:%d:%d: %s: .*%s" % (
        re.escape(str(path)), line, col, key, re.escape(want)), out,
        re.M), out


@pytest.mark.parametrize("limit,rate,want", [
    ("connections_per_ip", "1/s", None),
    ("connections_per_ip", "0/s", "invalid rate '0/s': the amount must be "
     "at least 1"),
    ("connections_per_ip", "1000000/h", None),
    ("connections_per_ip", "1000001/s", "1000001/s is above the maximum "
     "1000000/s"),
    ("messages_per_connection", "1000000/m", None),
    ("messages_per_connection", "1000001/m", "1000001/m is above the "
     "maximum 1000000/m"),
    ("bytes_per_connection", "1GiB/s", None),
    ("bytes_per_connection", "1073741825/s", "1073741825/s is above the "
     "maximum 1GiB/s"),
    ("bytes_per_connection", "0KiB/s", "the amount must be at least 1"),
    ("bytes_per_connection", "1MiB/d", "unknown period (use /s, /m or /h)"),
    ("bytes_per_connection", "1KiB/s", None),
    ("messages_per_connection", "1KiB/s", "invalid rate '1KiB/s': the amount "
     "is a number of events, without a unit"),
    ("connections_per_ip", "1KiB/m", "invalid rate '1KiB/m': the amount is "
     "a number of events, without a unit"),
])
def test_rate_amounts(tmp_path, limit, rate, want):
    """wsgate-policy(5): 'The amount is at least 1 and at most 1000000
    events, or 1GiB for bytes_per_connection.'"""
    place = ("policy", "rate_limit:\n  %s:\n    rate: {v}\n    burst: %s" %
             (limit, "1GiB" if limit.startswith("bytes") else "1"))
    rc, out, path, line, col = check_value(tmp_path, place, "rate", rate)
    if want is None:
        assert rc == 0, out
        return
    assert rc == 1, out
    assert re.search(r"^%s:%d:%d: rate: .*%s" % (
        re.escape(str(path)), line, col, re.escape(want)), out, re.M), out


def test_left_out_limits_take_their_documented_defaults(factory):
    """Without the keys, max_header_bytes is 8KiB (wsgate.yaml(5)) and
    max_frame_size 64KiB (wsgate-policy(5)): a head of 8192 bytes and a
    frame of 65536 pass, one byte more is refused."""
    up = factory.raw_upstream(rawup.ws_echo)
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:%d" % up.port]},
                         start=False)
    for key in ("handshake_timeout", "max_header_bytes"):
        del gw.config["listeners"][0][key]
    gw.write_config()
    (gw.pol_dir / "default.yaml").write_text("")
    gw.start()

    def head(size):
        base = len(rawclient.build_request("/echo", extra=[("X-Pad", "")]))
        data = rawclient.build_request("/echo", extra=[
            ("X-Pad", "p" * (size - base))])
        assert len(data) == size
        return data

    for size, status in ((8192, 101), (8193, 431)):
        c = gw.raw()
        try:
            c.send(head(size))
            resp = c.http_response(timeout=5, to_eof=status != 101)
            assert resp.status == status, (size, resp)
            if status == 101:
                c.send_frame(wsproto.OP_BINARY, b"b" * 65536)
                f = c.read_frame(5)
                assert f is not None and len(f.payload) == 65536, f
                c.send_frame(wsproto.OP_BINARY, b"b" * 65537)
                f, _ = c.read_close(5)
                assert f.close_code == 1009, f
        finally:
            c.close()
        e = gw.wait_entry(client_port=c.local_port)
        assert e["reason"] == ("frame_too_large" if status == 101 else
                               "headers_too_large"), e


def flow(items):
    return "[%s]" % ", ".join(items)


# (key, documented most, where, template for n entries): the "at most N"
# of the list keys of wsgate.yaml(5) and wsgate-policy(5).
LIST_LIMITS = [
    ("trusted_proxies", 64, "listener", lambda n: "    trusted_proxies: " +
     flow("10.0.%d.0/24" % i for i in range(n))),
    ("servers", 64, "upstream", lambda n: "    servers: " +
     flow("127.0.0.1:%d" % (9000 + i) for i in range(n))),
    ("allow", 1024, "policy", lambda n: "ip:\n  allow: " +
     flow("10.%d.%d.0/24" % (i // 256, i % 256) for i in range(n))),
    ("deny", 1024, "policy", lambda n: "ip:\n  deny: " +
     flow("10.%d.%d.0/24" % (i // 256, i % 256) for i in range(n))),
    ("allow", 256, "policy", lambda n: "origin:\n  allow: " +
     flow("https://h%d.example" % i for i in range(n))),
    ("allow_regex", 64, "policy", lambda n: "origin:\n  allow_regex: " +
     flow("'^https://h%d$'" % i for i in range(n))),
    ("deny_regex", 64, "policy", lambda n: "messages:\n  deny_regex: " +
     flow("'x%d'" % i for i in range(n))),
    ("subprotocols", 16, "policy", lambda n: "subprotocols: " +
     flow("p%d" % i for i in range(n))),
    ("required_claims", 32, "policy", lambda n: "auth:\n  jwt:\n"
     "    algorithms: [HS256]\n    key_file: hmac.secret\n"
     "    required_claims: " + flow("c%d" % i for i in range(n))),
    ("forward_claims", 16, "policy", lambda n: "auth:\n  jwt:\n"
     "    algorithms: [HS256]\n    key_file: hmac.secret\n"
     "    forward_claims: {%s}" % ", ".join("c%d: X-C%d" % (i, i)
                                          for i in range(n))),
]


@pytest.mark.parametrize("key,most,where,make", LIST_LIMITS,
                         ids=["%s-%d" % (r[0], r[1]) for r in LIST_LIMITS])
def test_documented_list_limits(tmp_path, key, most, where, make):
    """N entries load; N + 1 are refused at the list with the key and N."""
    rc, out, _, _, _ = check_value(tmp_path, (where, "{v}"), key,
                                   make(most))
    assert rc == 0, out
    rc, out, path, line, col = check_value(tmp_path, (where, "{v}"), key,
                                           make(most + 1))
    assert rc == 1, out
    assert "%s:%d:%d: %s: at most %d entries are allowed, got %d" % (
        path, line, col, key, most, most + 1) in out.splitlines(), out


def main_flow(nlisteners=1, nroutes=1, nupstreams=1):
    """A main file, in flow style: nupstreams upstreams on line 2,
    nlisteners listeners on line 3, the first with nroutes routes."""
    ups = ", ".join("u%d: {servers: ['127.0.0.1:9']}" % i
                    for i in range(nupstreams))
    routes = ", ".join("{path: /r%d, upstream: u0}" % i
                       for i in range(nroutes))
    lst = ", ".join("{name: l%d, listen: '127.0.0.1:%d', routes: [%s]}" %
                    (i, 20000 + i, routes if i == 0 else
                     "{path: /ws, upstream: u0}")
                    for i in range(nlisteners))
    return ("policies_dir: policies\nupstreams: {%s}\nlisteners: [%s]\n" %
            (ups, lst))


# (key, documented most, line and column of the list in main_flow())
STRUCT_LIMITS = [
    ("listeners", 64, lambda n: main_flow(nlisteners=n), 3,
     lambda t: len("listeners: ") + 1),
    ("upstreams", 256, lambda n: main_flow(nupstreams=n), 2,
     lambda t: len("upstreams: ") + 1),
    ("routes", 256, lambda n: main_flow(nroutes=n), 3,
     lambda t: t.index("routes: [") + len("routes: ") + 1),
]


def flow_file(tmp_path, text):
    """tmp_path/wsgate.yaml holding text, beside an empty
    policies/default.yaml."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yaml").write_text("")
    cfg = tmp_path / "wsgate.yaml"
    cfg.write_text(text)
    return cfg


@pytest.mark.parametrize("key,most,make,line,col", STRUCT_LIMITS,
                         ids=["%s-%d" % r[:2] for r in STRUCT_LIMITS])
def test_documented_structure_limits(tmp_path, key, most, make, line, col):
    """wsgate.yaml(5): at most 64 listeners, 256 upstreams and 256 routes
    in a listener.  N load; N + 1 are refused at the list."""
    cfg = flow_file(tmp_path, make(most))
    rc, out = check(cfg)
    assert rc == 0, out
    text = make(most + 1)
    cfg.write_text(text)
    rc, out = check(cfg)
    assert rc == 1, out
    want = "%s:%d:%d: %s: at most %d entries are allowed, got %d" % (
        cfg, line, col(text.splitlines()[line - 1]), key, most, most + 1)
    assert want in out.splitlines(), out


def test_an_upstream_name_must_not_be_empty(tmp_path):
    """wsgate.yaml(5): each upstream name "must not be empty"."""
    cfg = flow_file(tmp_path, main_flow().replace(
        "{u0:", "{'': {servers: ['127.0.0.1:8']}, u0:"))
    rc, out = check(cfg)
    assert rc == 1, out
    assert out.splitlines() == ["%s:2:13: upstreams: a name must not be "
                                "empty" % cfg], out


@pytest.mark.parametrize("admin,clash", [
    ("0.0.0.0:20000", True), ("'[::]:20000'", True),
    ("127.0.0.1:20000", True), ("'[::ffff:127.0.0.1]:20000'", True),
    ("0.0.0.0:20001", False), ("'[::]:20001'", False),
    ("127.0.0.2:20000", False), ("'[::1]:20000'", False),
])
def test_admin_and_listener_addresses(tmp_path, admin, clash):
    """An admin listener that cannot be bound beside listener l0
    (127.0.0.1:20000): the same address and port, or a wildcard on the
    same port, is refused at admin.listen; another port or another
    address is not."""
    cfg = flow_file(tmp_path, "admin: {listen: %s, allow_public: true}\n"
                    "%s" % (admin, main_flow()))
    rc, out = check(cfg)
    assert rc == (1 if clash else 0), out
    assert bool(re.search(r"^%s:1:\d+: listen: \S+ is already used by "
                          r"listener 'l0'$" % re.escape(str(cfg)), out,
                          re.M)) == clash, out


@pytest.mark.parametrize("admin,public", [
    ("127.0.0.1:20005", False), ("127.255.0.9:20005", False),
    ("'[::1]:20005'", False), ("'[::ffff:127.0.0.1]:20005'", False),
    ("10.0.0.1:20005", True), ("'[::2]:20005'", True),
    ("'[::ffff:10.0.0.1]:20005'", True), ("0.0.0.0:20005", True),
])
def test_admin_stays_on_loopback(tmp_path, admin, public):
    """wsgate.yaml(5): admin.listen is refused on an address other than
    loopback (127.0.0.0/8, ::1, and 127/8 mapped) unless allow_public."""
    cfg = flow_file(tmp_path, "admin: {listen: %s}\n%s" % (admin,
                                                            main_flow()))
    rc, out = check(cfg)
    assert rc == (1 if public else 0), out
    assert bool(re.search(r"^%s:1:\d+: listen: \S+ is not a loopback "
                          r"address;" % re.escape(str(cfg)), out,
                          re.M)) == public, out


@pytest.mark.parametrize("listen", ["127.0.0.1:20000",
                                    "'[::ffff:127.0.0.1]:20000'"])
def test_a_listen_address_written_twice_is_refused(tmp_path, listen):
    """Two listeners on one address, the second written as the IPv4
    address or as IPv4-mapped IPv6 (which binds the same socket)."""
    cfg = flow_file(tmp_path, main_flow(nlisteners=2).replace(
        "'127.0.0.1:20001'", listen))
    rc, out = check(cfg)
    assert rc == 1, out
    assert re.search(r"^%s:3:\d+: listen: 127\.0\.0\.1:20000 is already "
                     r"used by listener 'l0'$" % re.escape(str(cfg)), out,
                     re.M), out


def test_policies_dir_defaults_to_a_sibling_of_the_config_folder(tmp_path):
    """wsgate.yaml(5): without policies_dir, policies are read from
    ../policies, relative to the folder of the main file."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "policies").mkdir()
    (etc / "policies" / "default.yaml").write_text("")
    cfg = etc / "wsgate.yaml"
    cfg.write_text(main_flow().replace("policies_dir: policies\n", ""))
    rc, out = check(cfg)
    assert rc == 1, out
    assert "policy 'default': cannot open %s/../policies/default.yaml" % (
        etc) in out, out
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "default.yaml").write_text("")
    rc, out = check(cfg)
    assert rc == 0, out


P64 = "p" * 64

# (routes of one listener, the answers' lines after the file name and
# line, or "ok"): paths, policy names, and a route an earlier one shadows
ROUTE_CHECKS = [
    (["/a/*", "/a/"], ["warning: path: '/a/' never matches: '/a/*' above "
                       "takes it first", "ok"]),
    (["/a/*", "/a"], ["warning: path: '/a' never matches: '/a/*' above "
                      "takes it first", "ok"]),
    (["/a/*", "/a/b/*"], ["warning: path: '/a/b/*' never matches: '/a/*' "
                          "above takes it first", "ok"]),
    (["/*", "/x"], ["warning: path: '/x' never matches: '/*' above takes "
                    "it first", "ok"]),
    (["/a/*", "/ab", "/a", "/a/*"],
     ["path: '/a/*' is routed twice in listener 'l0'",
      "warning: path: '/a' never matches: '/a/*' above takes it first"]),
    (["/a", "/a/*", "/ab/*", "/a/b"],
     ["warning: path: '/a/b' never matches: '/a/*' above takes it first",
      "ok"]),
    (["a"], ["path: 'a' must start with '/'"]),
    (["'/a?b'"], ["path: '/a?b' may contain '*' only as a final '/*', and "
                  "no '?', '#', spaces or control characters"]),
    (['"/a\\x7f"'], ["path: '/a\x7f' may contain '*' only"]),
    (["/a*"], ["path: '/a*' may contain '*' only"]),
    # policy names: 1 to 64 of [A-Za-z0-9._-], not starting with '.'
    (["{path: /x, upstream: u0, policy: %s}" % P64],
     ["policy '%s': cannot open " % P64]),
    (["{path: /x, upstream: u0, policy: %s}" % (P64 + "p")],
     ["policy '%s': a name is 1 to 64 letters, digits, '-', '_' or '.', "
      "not starting with '.'" % (P64 + "p")]),
    (["{path: /x, upstream: u0, policy: .hidden}"],
     ["policy '.hidden': a name is 1 to 64 letters"]),
    (["{path: /x, upstream: u0, policy: a/b}"],
     ["policy 'a/b': a name is 1 to 64 letters"]),
]


@pytest.mark.parametrize("routes,want", ROUTE_CHECKS,
                         ids=[str(i) for i in range(len(ROUTE_CHECKS))])
def test_route_checks(tmp_path, routes, want):
    """wsgate.yaml(5) ROUTES: what a path and a policy name may be, and
    the warning for a route that an earlier one always takes first."""
    items = ", ".join(r if r.startswith("{") else
                      "{path: %s, upstream: u0}" % r for r in routes)
    cfg = flow_file(tmp_path, main_flow().replace(
        "{path: /r0, upstream: u0}", items))
    rc, out = check(cfg)
    assert rc == (0 if "ok" in want else 1), out
    lines = out.splitlines()
    assert ("%s: ok" % cfg in lines) == ("ok" in want), out
    got = [re.sub(r"^%s:3:\d+: " % re.escape(str(cfg)), "", l)
           for l in lines if l != "%s: ok" % cfg]
    want = [w for w in want if w != "ok"]
    assert len(got) == len(want), out
    for g, w in zip(got, want):
        assert g.startswith(w), out


@pytest.mark.parametrize("key", ["allow_countries", "deny_countries"])
def test_documented_country_limits(tmp_path, key):
    """wsgate-policy(5): at most 256 codes.  (No database here: the
    policy is refused for that, and only the count is looked at.)"""
    codes = ["%s%s" % (a, b) for a in "ABCDEFGHIJK"
             for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    for n in (256, 257):
        rc, out, path, line, col = check_value(
            tmp_path, ("policy", "geoip:\n  %s: {v}" % key), key,
            flow(codes[:n]))
        assert rc == 1, out
        want = "%s:%d:%d: %s: at most 256 entries are allowed, got 257" % (
            path, line, col, key)
        assert (want in out.splitlines()) == (n == 257), out
        assert ("%s: at most" % key in out) == (n == 257), out


@pytest.mark.parametrize("key,what", [("access_log", "access log"),
                                      ("error_log", "error log")])
def test_check_tries_the_log_files(tmp_path, certs, client_ssl, key, what):
    """-t said ok for a log file the daemon then could not open (a folder
    that is not there, a path that is a folder), so the start it was to
    guard (the unit's ExecStartPre) failed after it.  It tries each file
    as start-up would open it, and creates none."""
    gw = make_config(tmp_path, certs, client_ssl)
    good = tmp_path / "new.log"
    fifo = tmp_path / "shipper.fifo"
    os.mkfifo(fifo)
    bad = [(tmp_path / "no-such-folder" / "x.log",
            "No such file or directory"),
           (tmp_path, "Is a directory")]
    for path, why in bad:
        gw.config["log"][key] = str(path)
        gw.write_config()
        rc, out = check(gw.cfg_path)
        assert rc == 1, out
        assert "%s: cannot open %s %s: %s" % (gw.cfg_path, what, path,
                                              why) in out.splitlines(), out
        assert ": ok" not in out, out
    # a new file in a folder it can write, and a FIFO with no reader yet
    # (a log shipper's), are fine; neither is made nor blocks
    for path in (good, fifo):
        gw.config["log"][key] = str(path)
        gw.write_config()
        rc, out = check(gw.cfg_path)
        assert rc == 0, out
        assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    assert not good.exists()


@pytest.mark.parametrize("key,what", [("access_log", "access log"),
                                      ("error_log", "error log")])
def test_check_follows_a_log_symlink(tmp_path, certs, client_ssl, key, what):
    """A log path that is a symlink to a file not made yet (a log volume
    not mounted, a target folder gone) passed -t because the link's own
    folder could be written, and the start then failed: open(2) with
    O_CREAT follows the link and makes the file at its target.  -t looks
    where the link points, as start-up does."""
    gw = make_config(tmp_path, certs, client_ssl)
    link = tmp_path / "wsgate.log"
    target = tmp_path / "not-mounted" / "wsgate.log"
    os.symlink(target, link)
    gw.config["log"][key] = str(link)
    gw.write_config()
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    assert "%s: cannot open %s %s: No such file or directory" % (
        gw.cfg_path, what, link) in out.splitlines(), out
    assert ": ok" not in out, out
    # a relative link to a file that may be made in a folder that is there
    (tmp_path / "logs").mkdir()
    os.unlink(link)
    os.symlink(os.path.join("logs", "wsgate.log"), link)
    rc, out = check(gw.cfg_path)
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    assert not (tmp_path / "logs" / "wsgate.log").exists()
    # a link to a link to a missing folder
    os.unlink(link)
    os.symlink("hop", link)
    os.symlink(target, tmp_path / "hop")
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    # a loop
    os.unlink(tmp_path / "hop")
    os.symlink(link, tmp_path / "hop")
    rc, out = check(gw.cfg_path)
    assert rc == 1, out
    assert "%s: cannot open %s %s: " % (gw.cfg_path, what, link) in out, out


def test_a_key_every_user_can_read_warns(tmp_path, certs, client_ssl,
                                        open_folder):
    """A TLS private key that every local user can read drew no word:
    whoever reads it can pose as the server.  Mode o+r warns at its
    place; a key for the owner and its group (Debian's ssl-cert) does
    not, nor does one in a folder that others may not enter (an ACME
    client's archive, Debian's /etc/ssl/private)."""
    key = open_folder / "server.key"
    key.write_bytes(open(certs["key"], "rb").read())
    gw = make_config(tmp_path, certs, client_ssl)
    gw.config["listeners"][0]["tls"]["key"] = str(key)
    gw.write_config()
    line = next(i for i, l in enumerate(gw.cfg_path.read_text()
                                        .splitlines(), 1)
                if l.strip().startswith("key:"))
    for mode, folder, warned in ((0o644, 0o755, True),
                                 (0o604, 0o711, True),
                                 (0o640, 0o755, False),
                                 (0o600, 0o755, False),
                                 (0o644, 0o750, False),
                                 (0o644, 0o700, False)):
        os.chmod(open_folder, folder)
        os.chmod(key, mode)
        rc, out = check(gw.cfg_path)
        assert rc == 0, out
        assert "%s: ok" % gw.cfg_path in out.splitlines(), out
        want = ("%s:%d:" % (gw.cfg_path, line), "warning: key: %s can be "
                "read by every user (mode %03o): whoever reads it can pose "
                "as this server" % (key, mode))
        hits = [l for l in out.splitlines()
                if l.startswith(want[0]) and l.endswith(want[1])]
        assert len(hits) == (1 if warned else 0), (oct(mode), oct(folder),
                                                   out)


def test_a_certificate_out_of_its_validity_warns(tmp_path, certs, client_ssl):
    """A listener's certificate that had expired (or was not valid yet)
    loaded without a word, and every client that checks it then failed
    its handshake.  It loads with a warning that says since when."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    kpath = tmp_path / "k.pem"
    kpath.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(kpath, 0o600)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    day = datetime.timedelta(days=1)
    gw = make_config(tmp_path, certs, client_ssl)
    for start, end, want in (
            (now - 40 * day, now - 5 * day, "expired on %s" % (now - 5 * day)),
            (now + 5 * day, now + 40 * day,
             "is not valid before %s" % (now + 5 * day)),
            (now - day, now + day, None)):
        cert = (x509.CertificateBuilder().subject_name(name)
                .issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .sign(key, hashes.SHA256()))
        cpath = tmp_path / "c.pem"
        cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        gw.config["listeners"][0]["tls"] = {"certificate": str(cpath),
                                            "key": str(kpath)}
        gw.write_config()
        rc, out = check(gw.cfg_path)
        assert rc == 0, out
        assert "%s: ok" % gw.cfg_path in out.splitlines(), out
        hits = [l for l in out.splitlines()
                if re.match(r"^%s:\d+:\d+: warning: certificate " %
                            re.escape(str(gw.cfg_path)), l)]
        if want is None:
            assert hits == [], out
        else:
            when = want.replace("+00:00", " UTC")
            assert hits == ["%s" % hits[0].split(": warning: ")[0] +
                            ": warning: certificate %s %s: clients that "
                            "check it refuse every handshake%s" % (
                                cpath, when, " until then" if "before"
                                in want else "")], out


@pytest.mark.parametrize("key,what", [("access_log", "access log"),
                                      ("error_log", "error log")])
def test_check_tries_the_log_files_as_user(tmp_path, certs, client_ssl,
                                           open_folder, key, what):
    """With user: set, -t run as root tried each log file as root only.
    The daemon opens them again after dropping to the user: on SIGUSR1,
    after a rotation has taken the file away, and at a reload.  A log
    folder only root can write (or a FIFO, or a file that stays
    unwritable once start-up gives it to the user) passed -t, and the
    reopen then failed.  -t tries each one as the user too."""
    import pwd
    if os.geteuid() != 0:
        pytest.skip("trying files as another user needs root")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    gw = make_config(tmp_path, certs, client_ssl)
    gw.config["user"] = "nobody"
    logs = open_folder / "logs"
    logs.mkdir(mode=0o755)
    path = logs / "wsgate.log"
    for k in ("access_log", "error_log"):
        gw.config["log"][k] = str(logs / ("%s.log" % k))
    gw.config["log"][key] = str(path)
    gw.write_config()

    def fails(why="Permission denied"):
        rc, out = check(gw.cfg_path)
        assert rc == 1, out
        assert any(ln.startswith("%s: cannot open %s %s: %s" % (
            gw.cfg_path, what, path, why)) for ln in out.splitlines()), out
        assert ": ok" not in out, out

    def ok():
        rc, out = check(gw.cfg_path)
        assert rc == 0, out
        assert "%s: ok" % gw.cfg_path in out.splitlines(), out

    # root may make the file, the user may not
    fails()
    assert not path.exists()
    # the user may write the file, but not make it anew after a rotation
    path.touch(mode=0o640)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    fails("Permission denied (as user nobody, to make it anew after a "
          "rotation)")
    path.unlink()
    os.chown(logs, pw.pw_uid, pw.pw_gid)
    ok()
    assert not path.exists()
    # a root-owned file: start-up gives it to the user, who may write it
    path.touch(mode=0o640)
    ok()
    assert os.stat(path).st_uid == 0      # -t gave nothing away
    # but not one its owner may not write, whoever owns it
    os.chmod(path, 0o440)
    fails()
    path.unlink()
    # a FIFO keeps its owner
    os.mkfifo(path, 0o600)
    fails()
    os.chmod(path, 0o622)
    ok()
    path.unlink()
    # a folder on the way the user may not enter
    os.chmod(open_folder, 0o700)
    fails()


def test_check_warns_of_files_user_cannot_read_at_reload(certs, client_ssl,
                                                         open_folder):
    """With user: set, -t run as root read every file as root, though
    the daemon reads them all again as the user at each reload: a key
    only root may read started fine, and every reload then failed.  -t
    loads the configuration again as the user, and names what would
    fail as a warning (the daemon does start)."""
    import pwd
    import shutil
    if os.geteuid() != 0:
        pytest.skip("trying files as another user needs root")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    gw = Gateway(open_folder / "gw", certs, client_ssl,
                 routes=[("/echo", "echo")],
                 upstreams={"echo": ["127.0.0.1:9"]}, top={"user": "nobody"})
    key = open_folder / "server.key"
    shutil.copy(certs["key"], key)
    os.chmod(key, 0o600)
    shutil.copy(certs["cert"], open_folder / "server.pem")
    gw.config["listeners"][0]["tls"] = {
        "certificate": str(open_folder / "server.pem"), "key": str(key)}
    gw.config["log"] = {"error_log": "stderr", "access_log": "off"}
    gw.write_config()
    for p in (open_folder / "gw", open_folder / "gw" / "policies"):
        os.chmod(p, 0o755)
    os.chmod(gw.cfg_path, 0o644)
    warning = ("%s: warning: as user nobody, which it runs as, a reload "
               "would fail: " % gw.cfg_path)

    rc, out = check(gw.cfg_path)
    assert rc == 0, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    lines = [ln for ln in out.splitlines() if ln.startswith(warning)]
    assert len(lines) == 1 and str(key) in lines[0] and \
        "Permission denied" in lines[0], out
    # root's group may read it, and -t runs in it but the user does not:
    # the user's groups count, not the ones -t was started with
    os.chmod(key, 0o640)
    assert 0 not in os.getgrouplist("nobody", pw.pw_gid)
    rc, out = check(gw.cfg_path, extra_groups=[0])
    assert rc == 0, out
    assert any(ln.startswith(warning) and str(key) in ln
               for ln in out.splitlines()), out
    # the user's own key: no warning
    os.chown(key, pw.pw_uid, pw.pw_gid)
    rc, out = check(gw.cfg_path)
    assert rc == 0 and "warning: as user" not in out, out
    assert "%s: ok" % gw.cfg_path in out.splitlines(), out
    # nor is anything read as the user without user:
    os.chown(key, 0, 0)
    del gw.config["user"]
    gw.write_config()
    rc, out = check(gw.cfg_path)
    assert rc == 0 and "warning: as user" not in out, out


# -- value checks and warnings, one row each ---------------------------------

JWT = "  jwt:\n    algorithms: [HS256]\n    key_file: hmac.secret\n"
QP = "auth:\n  query_param: {v}\n" + JWT
RQ = "auth:\n" + JWT + "    required_claims: [{v}]"
FW = "auth:\n" + JWT + "    forward_claims: {{sub: {v}}}"
KP = "rate_limit_store:\n  redis: redis://127.0.0.1\n  key_prefix: {v}"

# (key whose line the answer names, where, template, value, the error the
# answer has at that line, or None for ok)
VALUE_CHECKS = [
    # auth.query_param: 1 to 64 of [A-Za-z0-9._~-]
    ("query_param", "policy", QP, "q" * 64, None),
    ("query_param", "policy", QP, "a-b.c_d~e", None),
    ("query_param", "policy", QP, "q" * 65,
     "query_param: '%s' must be 1 to 64 letters" % ("q" * 65)),
    ("query_param", "policy", QP, "'a b'",
     "query_param: 'a b' must be 1 to 64 letters"),
    # jwt.required_claims: names of 1 to 64 printable characters
    ("required_claims", "policy", RQ, "c" * 64, None),
    ("required_claims", "policy", RQ, "c" * 65, "required_claims: '%s' is "
     "not a claim name of 1 to 64 printable characters" % ("c" * 65)),
    ("required_claims", "policy", RQ, "'a b'",
     "required_claims: 'a b' is not a claim name"),
    ("required_claims", "policy", RQ, '"a\\x7fb"',
     "required_claims: 'a\x7fb' is not a claim name"),
    # jwt.forward_claims: never into a header the gateway sets
    ("forward_claims", "policy", FW, "X-User", None),
    # dropped from the client, but not set by the gateway: a claim may go
    ("forward_claims", "policy", FW, "True-Client-IP", None),
] + [
    ("forward_claims", "policy", FW, h, "forward_claims: header '%s' is set "
     "by the gateway and cannot carry a claim" % h)
    for h in ("Host", "connection", "Upgrade", "Content-Length",
              "Transfer-Encoding", "Keep-Alive", "TE", "Trailer",
              "Proxy-Connection", "Forwarded", "sec-websocket-protocol",
              "X-Forwarded-For", "x-forwarded-user", "X-Real-IP",
              "x_real_ip",
              # the same to a CGI-style server, which reads '_' as '-'
              "X_Forwarded_For", "Sec_WebSocket_Key", "transfer_encoding",
              "Proxy_Connection",
              # a prefix alone is one of the names it covers
              "X_Forwarded_", "Sec-WebSocket-")
] + [
    # each header once, X_User being X-User to a CGI-style server
    ("forward_claims", "policy", FW.replace("{{", "{{a: X-User, "), v,
     "forward_claims: claim 'sub' or header '%s' is used twice" % v)
    for v in ("x-user", "X_User", "x_uSER")
] + [
    # HTTP tokens of 1 to 128 characters
    ("subprotocols", "policy", "subprotocols: [{v}]", "p" * 128, None),
    ("subprotocols", "policy", "subprotocols: [{v}]", "p" * 129,
     "subprotocols: '%s' is not a token of 1 to 128 characters" %
     ("p" * 129)),
    ("header", "policy", "auth:\n  header: {v}\n" + JWT, "H" * 128, None),
    ("header", "policy", "auth:\n  header: {v}\n" + JWT, "H" * 129,
     "header: '%s' is not an HTTP header name of 1 to 128 characters" %
     ("H" * 129)),
    ("forward_claims", "policy", FW, "H" * 128, None),
    ("forward_claims", "policy", FW, "H" * 129, "forward_claims: '%s' is "
     "not an HTTP header name of 1 to 128 characters" % ("H" * 129)),
    # only workers takes auto
    ("max_connections", "main", "max_connections: {v}", "auto",
     "max_connections: expected a number from 0 to 1000000, got 'auto'"),
    ("max_pending_per_ip", "listener", "    max_pending_per_ip: {v}", "auto",
     "max_pending_per_ip: expected a number from 0 to 1000000, got 'auto'"),
    # main.user: an account that exists
    ("user", "main", "user: {v}", "root", None),
    ("user", "main", "user: {v}", "''", "user: must not be empty"),
    ("user", "main", "user: {v}", "no-such-user-here",
     "user 'no-such-user-here' does not exist"),
    # upstream.servers: each address once, [::ffff:a.b.c.d] being a.b.c.d
    ("servers", "upstream", "    servers: [{v}]",
     "127.0.0.1:9, '[::1]:9', 127.0.0.1:10", None),
    ("servers", "upstream", "    servers: [{v}]",
     "127.0.0.1:9, '[::ffff:127.0.0.1]:9'",
     "servers: '[::ffff:127.0.0.1]:9' is listed twice"),
    ("servers", "upstream", "    servers: [{v}]", "localhost:65535", None),
    ("servers", "upstream", "    servers: [{v}]", "LocalHost:9",
     "servers: invalid address 'LocalHost:9': the host must be a numeric "
     "address or localhost"),
] + [
    # allow_regex, deny_regex: patterns of 1 to 4096 bytes
    (key, "policy", tmpl, v, want % key if want else None)
    for key, tmpl in (("allow_regex", "origin:\n  allow_regex: [{v}]"),
                      ("deny_regex", "messages:\n  deny_regex: [{v}]"))
    for v, want in (("x" * 4096, None),
                    ("x" * 4097, "%s: a pattern is at most 4096 bytes, "
                     "got 4097"),
                    ("''", "%s: a pattern must not be empty"))
] + [
    # rate_limit_store.key_prefix: 1 to 64 printable, no spaces
    ("key_prefix", "main", KP, "k" * 64, None),
    ("key_prefix", "main", KP, "'~x!:'", None),
    ("key_prefix", "main", KP, "k" * 65, "key_prefix: '%s' must be 1 to 64 "
     "printable characters without spaces" % ("k" * 65)),
    ("key_prefix", "main", KP, "'a b'",
     "key_prefix: 'a b' must be 1 to 64 printable"),
    ("key_prefix", "main", KP, '"a\\x7f"',
     "key_prefix: 'a\x7f' must be 1 to 64 printable"),
]


@pytest.mark.parametrize("leaf,where,tmpl,value,want", VALUE_CHECKS,
                         ids=["%s=%.20s" % (r[0], r[3]) for r in
                              VALUE_CHECKS])
def test_value_checks(tmp_path, leaf, where, tmpl, value, want):
    """The value checks of wsgate.yaml(5) and wsgate-policy(5), each
    refused at its line."""
    rc, out, path, line, _ = check_value(tmp_path, (where, tmpl), leaf,
                                         value)
    if want is None:
        assert rc == 0, out
        return
    assert rc == 1, out
    assert re.search(r"^%s:%d:\d+: %s" % (re.escape(str(path)), line,
                                          re.escape(want)), out, re.M), out


# (policy, [(line, column, warning)]): each loads (-t says ok) with
# exactly these warnings (wsgate-policy(5) WARNINGS).
POLICY_WARNINGS = [
    ("frames:\n  max_message_size: 64MiB\n", []),
    ("frames:\n  max_message_size: 65MiB\n",
     [(2, 21, "max_message_size: 65MiB is over 64MiB; each connection may "
       "buffer that much")]),
    ("frames:\n  max_frame_size: 1MiB\n  max_message_size: 1MiB\n", []),
    ("frames:\n  max_frame_size: 1MiB\n  max_message_size: 1023KiB\n",
     [(3, 21, "max_message_size 1023KiB is below max_frame_size 1MiB, so "
       "frames are capped at 1023KiB")]),
    # the bytes burst against the largest frame a client may send
    ("rate_limit:\n  bytes_per_connection: {rate: 1KiB/s, burst: 64KiB}\n",
     []),
    ("rate_limit:\n  bytes_per_connection: {rate: 1KiB/s, burst: 65535}\n",
     [(2, 25, "bytes_per_connection: the burst 65535 is below the largest "
       "frame allowed, 64KiB; a frame larger than the burst always closes "
       "its connection with rate_bytes")]),
    # an origin section that lets no one in
    ("origin:\n  allow: []\n",
     [(2, 3, "origin: nothing is allowed, so every client is refused")]),
    ("origin:\n  allow_regex: ['^https://a\\.example$']\n", []),
    ("origin:\n  allow: [https://a.example]\n", []),
    ("origin:\n  allow_missing: true\n", []),
    # forward_claims written the wrong way round: header first
    ("auth:\n" + JWT + "    forward_claims: {sub: X-User}\n", []),
    ("auth:\n" + JWT + "    forward_claims: {X-User: sub}\n",
     [(5, 30, "forward_claims: header 'sub' is named as a JWT claim: the "
       "mapping is claim to header, as in 'sub: X-User', so this copies "
       "claim 'X-User' into header 'sub'")]),
    ("auth:\n" + JWT + "    forward_claims: {email: X-Mail, X-Iss: ISS}\n",
     [(5, 44, "forward_claims: header 'ISS' is named as a JWT claim: the "
       "mapping is claim to header, as in 'sub: X-User', so this copies "
       "claim 'X-Iss' into header 'ISS'")]),
    # frames capped by max_message_size are no larger than it
    ("frames:\n  max_frame_size: 1MiB\n  max_message_size: 64KiB\n"
     "rate_limit:\n  bytes_per_connection: {rate: 1KiB/s, burst: 64KiB}\n",
     [(3, 21, "max_message_size 64KiB is below max_frame_size 1MiB, so "
       "frames are capped at 64KiB")]),
]


@pytest.mark.parametrize("entry,error", [
    ("allow: [app.example.com]", "origin: 'app.example.com' is not a "
     "scheme://host[:port] origin"),
    ("allow: ['https://*.example.com']", "origin: 'https://*.example.com' "
     "is not a scheme://host[:port] origin"),
    ("allow_regex: ['[a-z']", "allow_regex: invalid regex '[a-z'"),
])
def test_a_bad_origin_entry_is_an_error_not_an_empty_list(tmp_path, entry,
                                                         error):
    """An origin entry in error is reported as such, without the warning
    that the section allows nothing, which it would if the entry were
    right: the operator has one thing to fix."""
    rc, out, path, _, _ = check_value(tmp_path, ("policy", "{v}"),
                                      entry.split(":")[0],
                                      "origin:\n  %s\n" % entry)
    assert rc == 1, out
    assert re.search(r"^%s:2:\d+: %s" % (re.escape(str(path)),
                                         re.escape(error)), out, re.M), out
    assert "nothing is allowed" not in out, out


@pytest.mark.parametrize("text,warnings", POLICY_WARNINGS,
                         ids=[str(i) for i in range(len(POLICY_WARNINGS))])
def test_policy_warnings(tmp_path, text, warnings):
    leaf = next(l for l in text.splitlines() if ": " in l).split(":")[0]
    rc, out, path, _, _ = check_value(tmp_path, ("policy", "{v}"),
                                      leaf.strip(), text)
    assert rc == 0, out
    got = [l for l in out.splitlines() if ": warning: " in l]
    assert got == ["%s:%d:%d: warning: %s" % (path, line, col, w)
                   for line, col, w in warnings], out
