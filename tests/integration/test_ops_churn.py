"""What the daemon holds as it lives through churn: descriptors, memory and
threads read from /proc/PID after a warm-up round and again after many
more rounds, never a time.

A TLS 1.2 client that refuses session tickets leaves no session behind in
the gateway's memory.  Ninety reloads that change everything a generation
holds, failed reloads and SIGUSR1, and short connections ended at every
stage of a session leave the descriptors and threads of the warm-up and
RssAnon within a bound that a leak per reload or per connection of the
size the docstrings give would pass.  A sanitizer build is held to the
descriptors and threads, and to LeakSanitizer at exit.
"""

import copy
import os
import signal
import socket
import ssl
import struct

import rawclient
import rawup
import wsproto
from conftest import (echo_works, fd_count, free_port, make_mmdb, openssl,
                      policy, wait_for)

B = rawclient.build_request


def grown(gw, before, after, bound, what):
    """RssAnon grew by less than bound KiB.  Not asserted on a sanitizer
    build: its allocator's own bookkeeping grows with the work done (some
    1.7 KiB per TLS 1.2 handshake here, where the plain build stays
    flat), and LeakSanitizer checks that build's memory at exit."""
    with open("/proc/%d/maps" % gw.pid) as f:
        if "libasan" in f.read():
            return
    kib = after["RssAnon"] - before["RssAnon"]
    assert kib < bound, "RssAnon grew %d KiB over %s: %r -> %r" % (
        kib, what, before, after)


def held(pid):
    """What a process holds now: descriptors, anonymous resident memory
    (KiB) and threads, from /proc/PID."""
    out = {"fds": fd_count(pid)}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "Threads"):
                out[key] = int(value.split()[0])
    return out


def settled(gw, fds=None):
    """held() once the last connections of a round have closed: the same
    descriptor count three times 100 ms apart, or, given fds, once it is
    back to fds (a leak never gets there: the assertion says so)."""
    seen = []

    def steady():
        seen.append(fd_count(gw.pid))
        if fds is not None:
            return seen[-1] == fds
        return len(seen) >= 3 and len(set(seen[-3:])) == 1
    try:
        wait_for(steady, 5, interval=0.1)
    except AssertionError:
        raise AssertionError("wsgate holds %d descriptors, %s" % (
            seen[-1], "not %d as before" % fds if fds is not None
            else "never steady"))
    return held(gw.pid)


def tls_refused(gw, ctx, session=None):
    """A full TLS connection and a request the gateway refuses (404, which
    it follows with its close_notify): whether the session was resumed
    and the session the client got."""
    s = socket.create_connection((gw.host, gw.port), timeout=5)
    t = ctx.wrap_socket(s, server_hostname="localhost", session=session)
    try:
        t.sendall(B("/nowhere"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = t.recv(4096)
            assert chunk, head
            head += chunk
        assert head.startswith(b"HTTP/1.1 404 "), head
        return t.session_reused, t.session
    finally:
        t.close()


def test_tls12_sessions_without_tickets_are_not_kept(factory, certs):
    """OpenSSL's server-side session cache would keep every TLS 1.2
    session the gateway closed cleanly, for a client that refuses tickets:
    about 1.2 KiB each, up to 20480 per listener and generation, for two
    hours.  Nothing is kept: 700 such handshakes leave RssAnon within
    300 KiB (the cache took some 840 KiB), and a session ID the gateway
    handed out does not resume."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:1"]})
    ctx = ssl.create_default_context(cafile=certs["cert"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    for _ in range(100):
        tls_refused(gw, ctx)
    before = settled(gw)
    for _ in range(700):
        _, sess = tls_refused(gw, ctx)
    after = settled(gw, before["fds"])
    grown(gw, before, after, 300, "700 handshakes")
    assert not sess.has_ticket
    reused, _ = tls_refused(gw, ctx, session=sess)
    assert not reused, "a TLS 1.2 session was kept for its session ID"


# -- reloads and log reopens ---------------------------------------------------

def test_reloads_and_log_reopens_hold_nothing_more(factory, tmp_path, certs):
    """Reloads that change everything a generation holds, one after the
    other: the listeners, the certificate, tls_ticket_secret, the admin
    address, the upstreams, and a policy's GeoIP database and regexes;
    every third a reload that fails (broken YAML, a missing certificate,
    an access log it cannot open once the new listener is bound);
    a SIGUSR1 after each.  After 90 rounds and a reload back to the first
    file the daemon holds the descriptors it held after the warm-up, its
    threads, and RssAnon within 1 MiB (a generation it failed to free
    costs some 40 KiB, a listening socket one descriptor)."""
    dbs = [make_mmdb(tmp_path / "a.mmdb", "127.0.0.0/24=DE"),
           make_mmdb(tmp_path / "b.mmdb", "127.0.0.0/24=FR")]
    secrets = []
    for name in ("s1", "s2"):
        p = tmp_path / name
        p.write_bytes(os.urandom(48))
        os.chmod(p, 0o600)
        secrets.append(str(p))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", tmp_path / "k2", "-out", tmp_path / "c2",
            "-days", "2", "-subj", "/CN=localhost")

    def pol(i):
        return policy(geoip={"database": dbs[i % 2],
                             "deny_countries": ["KP"]},
                      messages={"deny_regex": ["no%dpe" % i]},
                      origin={"allow_regex": [r"^https://a%d\.example$" % i],
                              "allow_missing": True})
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo", "p")],
                         upstreams={"echo": [be.addr]},
                         policies={"p": pol(0)}, admin=True,
                         top={"tls_ticket_secret": secrets[0]})
    first = copy.deepcopy(gw.config)
    extra, fresh, admin2 = free_port(), free_port(), free_port()

    def other(i):
        cfg = copy.deepcopy(first)
        cfg["tls_ticket_secret"] = secrets[1]
        lst = cfg["listeners"][0]
        lst["tls"] = {"certificate": str(tmp_path / "c2"),
                      "key": str(tmp_path / "k2")}
        cfg["listeners"].append(dict(copy.deepcopy(lst), name="extra",
                                     listen="127.0.0.1:%d" % extra))
        cfg["upstreams"]["up%d" % i] = {"servers": [be.addr]}
        cfg["admin"] = {"listen": "127.0.0.1:%d" % admin2}
        return cfg

    def round_(i):
        if i % 3 == 2:
            cfg = other(i)
            if i % 9 == 2:
                gw.cfg_path.write_text("listeners: [\n  - {name: x\n")
            elif i % 9 == 5:
                cfg["listeners"][0]["tls"]["certificate"] = \
                    str(tmp_path / "missing.pem")
                gw.write_config(cfg)
            else:
                # fails once the new listener's sockets are bound
                cfg["listeners"].append(dict(
                    copy.deepcopy(cfg["listeners"][1]), name="fresh",
                    listen="127.0.0.1:%d" % fresh))
                cfg["log"]["access_log"] = str(tmp_path / "no" / "log")
                gw.write_config(cfg)
            gw.reload(expect="failed")
        else:
            gw.write_config(other(i) if i % 3 else first)
            gw.write_policy("p", pol(i))
            gw.reload()
        n = gw.error_text().count("log files reopened")
        gw.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: gw.error_text().count("log files reopened") > n,
                 what="the log files reopened")

    for i in range(6):
        round_(i)
    gw.write_config(first)
    gw.reload()
    echo_works(gw)
    before = settled(gw)
    for i in range(6, 96):
        round_(i)
    gw.write_config(first)
    gw.write_policy("p", pol(0))
    gw.reload()
    echo_works(gw)
    after = settled(gw, before["fds"])
    assert after["Threads"] == before["Threads"], (before, after)
    grown(gw, before, after, 1024, "90 reloads")


# -- short connections, refused at each stage or closed by either side ------

def read_all(s, limit=1 << 16):
    """What a socket sends until EOF (a reset ends it too), or until the
    head of a 101, which is followed by no EOF."""
    buf = b""
    while len(buf) < limit:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
        if buf.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in buf:
            break
    return buf


def test_connection_churn_holds_nothing_more(factory, tmp_path, client_ssl):
    """Short connections ended at every stage: a TCP connection closed at
    once, a TLS handshake and nothing more, 400, 405, 404, 401, 403, 429,
    502 (upstream down), 504 (upstream silent), bad and half-sent PROXY
    headers, and upgraded sessions closed by the client, by the upstream,
    dropped and reset by the client.  After two warm-up rounds and six
    more (480 connections) the daemon holds the descriptors and threads it
    held, and RssAnon within 384 KiB (a 1 KiB leak per connection would
    be 480 KiB)."""
    be = factory.echo()
    silent = factory.raw_upstream(rawup.silent)
    secret = tmp_path / "hmac.secret"
    secret.write_bytes(b"k" * 40)
    gw = factory.gateway(
        routes=[("/echo", "echo"), ("/auth", "echo", "auth"),
                ("/ip", "echo", "ip"), ("/rate", "echo", "rate"),
                ("/down", "down"), ("/slow", "slow")],
        upstreams={"echo": [be.addr],
                   "down": ["127.0.0.1:%d" % free_port()],
                   "slow": {"servers": [silent.addr],
                            "connect_timeout": "100ms"}},
        policies={"auth": policy(auth={"jwt": {
                      "algorithms": ["HS256"], "key_file": str(secret)}}),
                  "ip": policy(ip={"deny": ["127.0.0.0/8"]}),
                  "rate": policy(rate_limit={"connections_per_ip": {
                      "rate": "1/m", "burst": 1}})},
        start=False)
    plain, proxied = free_port(), free_port()
    tls_listener = gw.config["listeners"][0]
    lst = {k: v for k, v in tls_listener.items() if k != "tls"}
    gw.config["listeners"] += [
        dict(lst, name="plain", listen="127.0.0.1:%d" % plain),
        dict(lst, name="proxied", listen="127.0.0.1:%d" % proxied,
             proxy_protocol=True)]
    gw.write_config()
    gw.start()

    def send(port, data, status=None, fin=False):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(data)
            if fin:
                s.shutdown(socket.SHUT_WR)
            got = read_all(s)
        finally:
            s.close()
        if status is not None:
            assert got.startswith(b"HTTP/1.1 %s " % status), got[:100]

    def tls(request):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        t = client_ssl.wrap_socket(s, server_hostname="localhost")
        try:
            if request:
                t.sendall(b"GET /echo HTTP/1.1\r\n\r\n")
                got = read_all(t)
                assert got.startswith(b"HTTP/1.1 400 "), got[:100]
        finally:
            t.close()

    def session(end):
        c = rawclient.RawClient(plain, None)
        try:
            c.upgrade("/echo")
            if end == "client":
                c.send_frame(wsproto.OP_CLOSE, wsproto.close_payload(1000))
                c.read_close(5)
            elif end == "upstream":
                c.send_frame(wsproto.OP_TEXT, b"cmd:close:1000:bye")
                c.read_close(5)
            elif end == "reset":
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
        finally:
            c.close()

    stages = [
        lambda: socket.create_connection(("127.0.0.1", gw.port)).close(),
        lambda: tls(False),
        lambda: tls(True),
        lambda: send(plain, b"X" + B("/echo"), b"405"),
        lambda: send(plain, B("/nowhere"), b"404"),
        lambda: send(plain, B("/auth"), b"401"),
        lambda: send(plain, B("/ip"), b"403"),
        lambda: send(plain, B("/rate")),        # 101 once, then 429
        lambda: send(plain, B("/down"), b"502"),
        lambda: send(plain, B("/slow"), b"504"),
        lambda: send(proxied, b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n" +
                     B("/echo")),
        lambda: send(proxied, b"PROXY TCP4 192.0.2.1 127.", fin=True),
        lambda: session("client"),
        lambda: session("upstream"),
        lambda: session("drop"),
        lambda: session("reset"),
    ]

    def round_():
        for stage in stages:
            for _ in range(5):
                stage()
    for _ in range(2):
        round_()
    before = settled(gw)
    for _ in range(6):
        round_()
    after = settled(gw, before["fds"])
    assert after["Threads"] == before["Threads"], (before, after)
    grown(gw, before, after, 384, "480 connections")
    assert len(gw.entries()) >= 8 * 5 * len(stages)
