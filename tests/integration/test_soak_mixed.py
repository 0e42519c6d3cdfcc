"""Every feature at once, for a bounded while (some 25 s on the ASan
build): two workers, a TLS listener (clients on TLS 1.3 and 1.2) and a
plaintext one, a route whose policy checks the Origin, an HS256 JWT
(some expiring mid-session, with on_expiry: close), message, byte and
connection rates, deny_regex and max_message_size, and a route with no
policy checks.  Forty-eight client threads, each session from a loopback
address of its own, 20 to 25 sessions open at once: fragmented text and
binary messages with pings between the fragments, a megabyte sent to a
client that reads nothing for a second, and every way a session ends
(a clean close by either side, a forbidden word, a rate, a message too
large, bad UTF-8, an unmasked frame, a token run out, a TCP connection
dropped or reset after its echoes, inside a frame or inside a held
message, a refused handshake).  Meanwhile SIGHUP every 2 s, alternating
a good configuration (one in two adds a listener and brings another
certificate) and a broken one (its YAML, a policy's regex, an access
log that cannot be opened), /metrics scraped every 0.3 s, and SIGUSR1
once after renaming the access log.

Then what a user can check: each connection has exactly one access-log
line, across both files, with the status, reason and close code of what
its client did, and the frames and bytes the client counted wherever
the client alone decided them; the sums of frames_in/frames_out and
bytes_in (minus the request heads)/bytes_out equal the deltas of
wsgate_frames_total and wsgate_bytes_total, the reasons those of
wsgate_closes_total and wsgate_rejections_total, and so on for the
handshake, TLS and reload counters; no counter ever went down while
scraped; wsgate_active_connections and wsgate_worker_connections are
back to 0, the descriptors and threads back to what they were after a
warm-up.  Last, SIGTERM with a dozen sessions open: each gets 1001 and
a line saying shutdown, the daemon exits 0 on its own, and a sanitizer
build reports nothing.

WSGATE_SOAK_SEED picks another seed.
"""

import base64
import copy
import hashlib
import hmac
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import threading
import time

import rawclient
import wsproto
from conftest import fd_count, free_port, metric, openssl, policy, wait_for

E = wsproto.encode_frame
T, BIN, CONT = wsproto.OP_TEXT, wsproto.OP_BINARY, wsproto.OP_CONT
PING, PONG, CLOSE = wsproto.OP_PING, wsproto.OP_PONG, wsproto.OP_CLOSE
SECRET = b"soak-test-hmac-secret-0123456789abcdefghij"
ORIGIN = "https://app.soak.test"
SEED = int(os.environ.get("WSGATE_SOAK_SEED", "20261207"))
BUDGET = 20.0                   # no client starts a session after this
ITERATIONS = 12                 # nor more sessions than this
DEADLINE = 50.0                 # the whole soak phase, at most


def token(exp_in, sub):
    def b64(d):
        return base64.urlsafe_b64encode(d).rstrip(b"=")
    now = int(time.time())
    si = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + \
        b64(json.dumps({"sub": sub, "iat": now,
                        "exp": now + exp_in}).encode())
    return (si + b"." + b64(hmac.new(SECRET, si, hashlib.sha256)
                            .digest())).decode()


def out_len(n):
    """Bytes of an unmasked frame with an n-byte payload."""
    return 2 + (0 if n < 126 else 2 if n < 65536 else 8) + n


class Client(rawclient.RawClient):
    """A raw client from a given loopback address that counts every frame
    it sends and every frame it gets (bytes as on the wire, unmasked for
    what comes from the gateway)."""

    def __init__(self, port, ctx, src):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        self.local_port = s.getsockname()[1]
        self.tls = ctx is not None
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        self.sock = s
        self.buf = bytearray()
        self.eof = False
        self.key = None
        self.head = b""
        self.sent_frames = self.sent_bytes = 0
        self.got_frames = self.got_bytes = 0

    def request(self, path, headers):
        self.head = rawclient.build_request(path, extra=headers)
        self.send(self.head)
        return rawclient.HTTPResponse(self.read_until(b"\r\n\r\n", 10)[:-4],
                                      b"")

    def frames(self, *frames):
        data = b"".join(frames)
        self.sent_frames += len(frames)
        self.sent_bytes += len(data)
        self.send(data)

    def frame(self, timeout=10.0):
        f = self.read_frame(timeout)
        if f is not None:
            self.got_frames += 1
            self.got_bytes += out_len(len(f.payload))
        return f

    def expect(self, opcode, payload):
        """Read until a frame with this opcode and payload (pongs may come
        before the echo); fail on anything else."""
        for _ in range(20):
            f = self.frame()
            assert f is not None, "connection ended awaiting %r" % (
                payload[:40],)
            if f.opcode == opcode and f.payload == payload:
                return
            assert f.opcode == PONG, (f.opcode, f.payload[:60])
        raise AssertionError("no echo of %r" % (payload[:40],))

    def until_close(self, timeout=10.0):
        """Frames up to the gateway's close frame: its code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            f = self.frame(max(0.1, deadline - time.monotonic()))
            assert f is not None, "no close frame before EOF"
            if f.opcode == CLOSE:
                return struct.unpack("!H", f.payload[:2])[0]
        raise AssertionError("no close frame within %.0fs" % timeout)


def exchange(c, rng, big=False):
    """A fragmented text message with a ping between its fragments, a
    fragmented binary message and a whole text message; each echoed."""
    n = rng.randrange(200, 1500 if not big else 4000)
    text = bytes(rng.choice(b"abcdefghij klmnop") for _ in range(n))
    cut = rng.randrange(1, n)
    ping = b"p%d" % rng.randrange(1000)
    c.frames(E(T, text[:cut], fin=False), E(PING, ping),
             E(CONT, text[cut:]))
    c.expect(PONG, ping)
    c.expect(T, text)
    blob = os.urandom(rng.randrange(10, 3000))
    half = len(blob) // 2
    c.frames(E(BIN, blob[:half], fin=False), E(CONT, blob[half:]))
    c.expect(BIN, blob)
    c.frames(E(T, b"whole %d" % n))
    c.expect(T, b"whole %d" % n)


# -- what each kind of client does; returns what its log line must say ------

def clean(c, rng, rounds, word=None):
    for i in range(rounds):
        exchange(c, rng)
        if word and i == 1:
            c.frames(E(T, word))
            c.expect(T, word)
        time.sleep(rng.uniform(0.1, 0.5))
    c.frames(E(CLOSE, wsproto.close_payload(1000, "bye")))
    assert c.until_close() == 1000
    return {"reason": "client_closed", "close_code": 1000, "exact": True}


def upstream_close(c, rng, rounds):
    exchange(c, rng)
    c.frames(E(T, b"cmd:close:4000:done"))
    assert c.until_close() == 4000
    c.frames(E(CLOSE, wsproto.close_payload(4000)))
    return {"reason": "upstream_closed", "close_code": 4000}


def forbidden(c, rng, rounds):
    for _ in range(rounds):
        exchange(c, rng)
    word = b"abc FORBIDDEN xyz"
    c.frames(E(T, word[:5], fin=False), E(PING, b"mid"),
             E(CONT, word[5:]))
    assert c.until_close() == 1008
    return {"reason": "content_denied", "close_code": 1008, "exact_in": True}


def rate_msgs(c, rng, rounds):
    exchange(c, rng)
    c.frames(*[E(T, b"m") for _ in range(150)])
    assert c.until_close() == 1008
    return {"reason": "rate_messages", "close_code": 1008}


def rate_bytes(c, rng, rounds):
    exchange(c, rng)
    c.frames(*[E(BIN, os.urandom(8000)) for _ in range(12)])
    assert c.until_close() == 1008
    return {"reason": "rate_bytes", "close_code": 1008}


def too_large(c, rng, rounds):
    exchange(c, rng)
    c.frames(E(T, b"a" * 7000, fin=False), E(PING, b"x"),
             E(CONT, b"b" * 7000, fin=False), E(CONT, b"c" * 7000))
    assert c.until_close() == 1009
    return {"reason": "message_too_large", "close_code": 1009}


def expiring(c, rng, rounds):
    for i in range(60):
        c.frames(E(PING, b"t%d" % i))
        while True:
            f = c.frame()
            assert f is not None, "EOF while the token is valid"
            if f.opcode == CLOSE:
                code = struct.unpack("!H", f.payload[:2])[0]
                assert code == 1008, code
                return {"reason": "token_expired", "close_code": 1008}
            if f.opcode == PONG and f.payload == b"t%d" % i:
                break
        time.sleep(0.25)
    raise AssertionError("the token never expired")


def dropper(reset):
    def drop(c, rng, rounds):
        for _ in range(rounds):
            exchange(c, rng)
        if reset:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
        c.close()
        return {"reason": "client_dropped", "close_code": 1006,
                "exact": True}
    return drop


def cut_short(reset, held):
    """Gone in the middle of things: inside a text message (held for
    deny_regex on /secure) with a ping between its fragments, or inside
    a frame, or without reading the echo of a large message."""
    def drop(c, rng, rounds):
        exchange(c, rng)
        how = rng.randrange(3)
        if held or how == 0:
            c.frames(E(T, b"first part ", fin=False), E(PING, b"in"))
        elif how == 1:
            c.frames(E(BIN, b"z" * 4000)[:2000])
        else:
            c.frames(E(BIN, os.urandom(12000)))
        if reset:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
        c.close()
        return {"reason": "client_dropped", "close_code": 1006}
    return drop


def slow_reader(c, rng, rounds):
    """A megabyte of messages sent while the client reads nothing for a
    second (the gateway holds both sides back), then all the echoes."""
    exchange(c, rng)
    n = 500 + rng.randrange(100)
    frames = [E(BIN, b"%05d" % i + b"s" * 2000, mask_key=b"\0\0\0\0")
              for i in range(n)]
    sender = threading.Thread(target=c.frames, args=frames, daemon=True)
    sender.start()
    time.sleep(1)
    for i in range(n):
        c.expect(BIN, b"%05d" % i + b"s" * 2000)
    sender.join(10)
    assert not sender.is_alive()
    c.frames(E(CLOSE, wsproto.close_payload(1000)))
    assert c.until_close() == 1000
    return {"reason": "client_closed", "close_code": 1000, "exact": True}


def broken(frame, code, reason, header_only=False):
    """A frame that breaks RFC 6455 or UTF-8 after some good traffic; one
    refused for its header alone is not counted (wsgate(8))."""
    def send(c, rng, rounds):
        for _ in range(rounds):
            exchange(c, rng)
        c.frames(frame)
        if header_only:
            c.sent_frames -= 1
            c.sent_bytes -= len(frame)
        assert c.until_close() == code
        return {"reason": reason, "close_code": code, "exact_in": True}
    return send


KINDS = {
    # name: (route, token lifetime or None, what it does, count)
    "open_clean": ("/open", None, lambda c, r, n: clean(c, r, n,
                                                        b"FORBIDDEN here"),
                   5),
    "open_upclose": ("/open", None, upstream_close, 2),
    "open_drop": ("/open", None, dropper(False), 1),
    "open_reset": ("/open", None, dropper(True), 1),
    "sec_clean": ("/secure", 300, clean, 8),
    "sec_forbidden": ("/secure", 300, forbidden, 3),
    "sec_rate_msgs": ("/secure", 300, rate_msgs, 2),
    "sec_rate_bytes": ("/secure", 300, rate_bytes, 2),
    "sec_too_large": ("/secure", 300, too_large, 2),
    "sec_expiring": ("/secure", 3, expiring, 4),
    "sec_drop": ("/secure", 300, dropper(False), 2),
    "sec_reset": ("/secure", 300, dropper(True), 1),
    "open_utf8": ("/open", None, broken(E(T, b"caf\xc3("), 1007,
                                        "invalid_utf8"), 1),
    "sec_unmasked": ("/secure", 300, broken(E(T, b"plain", mask=False),
                                            1002, "protocol_error", True),
                     1),
    "open_slow": ("/open", None, slow_reader, 2),
    "open_cut": ("/open", None, cut_short(False, False), 2),
    "open_cut_reset": ("/open", None, cut_short(True, False), 2),
    "sec_cut_held": ("/secure", 300, cut_short(False, True), 1),
    "sec_cut_held_reset": ("/secure", 300, cut_short(True, True), 1),
}


def secure_policy(extra_word):
    return policy(
        {"max_frame_size": "16KiB", "max_message_size": "16KiB"},
        origin={"allow": [ORIGIN]},
        auth={"header": "Authorization",
              "jwt": {"algorithms": ["HS256"], "key_file": "hmac.secret",
                      "required_claims": ["sub"]},
              "on_expiry": "close"},
        rate_limit={"connections_per_ip": {"rate": "1/m", "burst": 2},
                    "messages_per_connection": {"rate": "50/s",
                                                "burst": 100},
                    "bytes_per_connection": {"rate": "16KiB/s",
                                             "burst": "64KiB"}},
        messages={"deny_regex": ["(?i)forbidden", extra_word]})


def held(pid):
    with open("/proc/%d/status" % pid) as f:
        threads = [int(line.split()[1]) for line in f
                   if line.startswith("Threads:")][0]
    return {"fds": fd_count(pid), "threads": threads}


def settled(pid):
    """held() once the same three times 100 ms apart: no admin connection
    or closing session still holds a descriptor for a moment."""
    seen = []
    wait_for(lambda: seen.append(held(pid)) or
             (len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]), 5,
             interval=0.1, what="steady descriptors")
    return seen[-1]


def log_lines(paths):
    out = []
    for p in paths:
        try:
            text = p.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for line in text.split("\n")[:-1]:
            if line.strip():
                out.append(json.loads(line))
    return out


COUNTERS = ("wsgate_frames_total", "wsgate_bytes_total",
            "wsgate_closes_total", "wsgate_rejections_total",
            "wsgate_handshakes_total", "wsgate_config_reloads_total")


def test_soak_everything_at_once(factory):
    rng = random.Random(SEED)
    be = factory.echo()
    gw = factory.gateway(
        routes=[("/open", "echo"), ("/secure", "echo", "secure")],
        upstreams={"echo": [be.addr]},
        policies={"secure": secure_policy("never-0")},
        admin=True, top={"workers": 2}, start=False)
    (gw.pol_dir / "hmac.secret").write_bytes(SECRET)
    os.chmod(gw.pol_dir / "hmac.secret", 0o600)
    plain = free_port()
    lst = {k: v for k, v in gw.config["listeners"][0].items() if k != "tls"}
    gw.config["listeners"].append(dict(lst, name="plain",
                                       listen="127.0.0.1:%d" % plain))
    gw.write_config()
    good = [copy.deepcopy(gw.config), copy.deepcopy(gw.config)]
    good[1]["listeners"][1]["routes"] = good[1]["listeners"][1]["routes"] + \
        [{"path": "/spare", "upstream": "echo"}]
    good[1]["listeners"].append(dict(lst, name="spare",
                                     listen="127.0.0.1:%d" % free_port()))
    good[1]["upstreams"]["echo"]["connect_timeout"] = "2s"
    gw.start()
    # a good reload in two brings another certificate: clients trust both
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", gw.tmp / "k2", "-out", gw.tmp / "c2", "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost")
    good[1]["listeners"][0]["tls"] = {"certificate": str(gw.tmp / "c2"),
                                      "key": str(gw.tmp / "k2")}
    ctx13 = ssl.create_default_context(cafile=factory.certs["cert"])
    ctx12 = ssl.create_default_context(cafile=factory.certs["cert"])
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    for ctx in (ctx13, ctx12):
        ctx.load_verify_locations(cafile=str(gw.tmp / "c2"))
    ports = {"tls": (gw.port, ctx13), "plain": (plain, None)}

    # warm-up: a session on each listener, a good and a failed reload
    def one(port, ctx, src):
        c = Client(port, ctx, src)
        try:
            assert c.request("/open", []).status == 101
            exchange(c, rng)
            c.frames(E(CLOSE, wsproto.close_payload(1000)))
            assert c.until_close() == 1000
        finally:
            c.close()
    for port, ctx in ports.values():
        one(port, ctx, "127.0.0.2")
    one(gw.port, ctx12, "127.0.0.2")
    gw.reload()
    gw.cfg_path.write_text("workers: 2\nbogus_key: 1\n")
    gw.reload(expect="failed")
    gw.write_config(good[0])
    gw.reload()
    wait_for(lambda: metric(gw.metrics(), "wsgate_active_connections") == 0,
             what="warm-up sessions logged")
    wait_for(lambda: len(log_lines([gw.access_log])) >= 4,
             what="warm-up lines")
    base = settled(gw.pid)
    m0 = gw.metrics()
    warm = len(log_lines([gw.access_log]))

    # the clients: each repeats its part from a fresh address, on one of
    # the listeners (TLS 1.3, TLS 1.2, plaintext), until the time is up
    listeners = ("tls", "tls12", "plain")
    ports["tls12"] = (gw.port, ctx12)
    plan = []
    for kind in sorted(KINDS):
        route, life, fn, count = KINDS[kind]
        for i in range(count):
            plan.append({"kind": kind, "route": route, "life": life,
                         "fn": fn})
    for kind, headers, want in [
            ("bad_origin", [("Origin", "https://evil.example")],
             (403, "origin_denied")),
            ("bad_origin", [("Origin", "https://app.soak.test.evil")],
             (403, "origin_denied")),
            ("no_token", [("Origin", ORIGIN)], (401, "auth_missing")),
            ("old_token", [("Origin", ORIGIN), ("Authorization",
                                                "Bearer " + token(-60, "x"))],
             (401, "auth_expired"))]:
        plan.append({"kind": kind, "route": "/secure", "headers": headers,
                     "want": want})
    plan.append({"kind": "conn_rate", "route": "/secure", "life": 300})

    conns = []          # (address, client, expected fields)
    errors = []
    lock = threading.Lock()
    addrs = iter(range(1, 1 << 16))
    start = time.monotonic()

    def connect(p, headers):
        with lock:
            a = next(addrs)
        port, ctx = ports[listeners[a % 3]]
        src = "127.1.%d.%d" % (a // 250, 1 + a % 250)
        c = Client(port, ctx, src)
        c.src = src
        return c, c.request(p["route"], headers)

    def secure_headers(life, sub):
        return [("Origin", ORIGIN),
                ("Authorization", "Bearer " + token(life, sub))]

    def once(p, crng):
        kind = p["kind"]
        if "want" in p:
            c, resp = connect(p, p["headers"])
            c.close()
            with lock:
                conns.append((c.src, c, {"status": p["want"][0],
                                         "reason": p["want"][1]}))
            assert resp.status == p["want"][0], (kind, resp)
            time.sleep(crng.uniform(0.2, 1))
            return
        if kind == "conn_rate":
            with lock:
                a = next(addrs)
            port, ctx = ports[listeners[a % 3]]
            src = "127.1.%d.%d" % (a // 250, 1 + a % 250)
            for i in range(3):
                c = Client(port, ctx, src)
                c.src = src
                resp = c.request(p["route"], secure_headers(300, "r%d" % i))
                want = {"status": 101, "reason": "client_closed"} \
                    if i < 2 else {"status": 429,
                                   "reason": "rate_connections"}
                with lock:
                    conns.append((src, c, want))
                try:
                    assert resp.status == want["status"], (kind, i, resp)
                    if i < 2:
                        clean(c, crng, 1)
                finally:
                    c.close()
            return
        headers = [] if p["route"] == "/open" else \
            secure_headers(p["life"], kind)
        c, resp = connect(p, headers)
        want = {"status": 101, "route": p["route"],
                "user": None if p["route"] == "/open" else kind,
                "origin": None if p["route"] == "/open" else ORIGIN,
                "listener": "public" if c.tls else "plain"}
        with lock:
            conns.append((c.src, c, want))
        try:
            assert resp.status == 101, (kind, resp)
            want.update(p["fn"](c, crng, crng.randrange(2, 8)))
            if want["reason"] != "client_dropped":
                c.wait_closed(10)
        finally:
            c.close()

    def run_client(p, crng):
        time.sleep(crng.uniform(0, 2))
        for _ in range(ITERATIONS):
            if time.monotonic() - start > BUDGET:
                break
            once(p, crng)

    def thread(p, seed):
        try:
            run_client(p, random.Random(seed))
        except BaseException as exc:    # reported below, with its kind
            with lock:
                errors.append("%s: %r" % (p["kind"], exc))

    threads = [threading.Thread(target=thread, args=(p, rng.random()),
                                daemon=True) for p in plan]
    for t in threads:
        t.start()

    # meanwhile: reloads every 2 s (good, broken, ...), scrapes, SIGUSR1
    last = {}
    scrapes = reloads = 0
    rotated = gw.tmp / "access.log.1"
    usr1 = False
    while any(t.is_alive() for t in threads):
        assert time.monotonic() - start < DEADLINE, \
            "clients still running after %.0fs" % DEADLINE
        el = time.monotonic() - start
        if el > 2 * (reloads + 1):
            reloads += 1
            if reloads % 2:
                gw.write_config(good[(reloads // 2) % 2])
                gw.write_policy("secure", secure_policy("never-%d" % reloads))
                gw.reload()
            else:
                # broken: the YAML, a policy's regex, or an access log
                # that cannot be opened once a new listener is bound
                how = (reloads // 2) % 3
                if how == 0:
                    gw.cfg_path.write_text("workers: 2\nlisteners: [\n")
                elif how == 1:
                    gw.write_policy("secure", secure_policy("bad(regex"))
                else:
                    cfg = copy.deepcopy(good[1])
                    cfg["log"]["access_log"] = str(gw.tmp / "no" / "log")
                    gw.write_config(cfg)
                gw.reload(expect="failed")
        if not usr1 and el > 5:
            usr1 = True
            os.rename(gw.access_log, rotated)
            k = gw.error_text().count("log files reopened")
            gw.proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: gw.error_text().count("log files reopened") > k,
                     what="the log files reopened")
        m = gw.metrics()
        scrapes += 1
        active = metric(m, "wsgate_active_connections")
        assert 0 <= active <= len(plan) + 3, active
        for key, v in m.items():
            if key[0].startswith(COUNTERS):
                assert v >= last.get(key, 0), ("counter went down", key,
                                               last.get(key), v)
                last[key] = v
        time.sleep(0.3)
    for t in threads:
        t.join(1)
    assert usr1 and reloads >= 4, (usr1, reloads)
    last_ok = metric(gw.metrics(), "wsgate_config_last_reload_successful")
    assert last_ok == reloads % 2, (last_ok, reloads)
    gw.write_config(good[0])        # back to the warm-up's listeners
    gw.reload()
    assert not errors, "\n".join(errors)

    # every connection logged once, as its client expects
    paths = [rotated, gw.access_log]
    wait_for(lambda: len(log_lines(paths)) >= warm + len(conns), 10,
             what="%d access-log lines" % (warm + len(conns)))
    wait_for(lambda: metric(gw.metrics(), "wsgate_active_connections") == 0,
             what="wsgate_active_connections back to 0")
    m1 = gw.metrics()
    lines = log_lines(paths)[warm:]
    got_n, want_n = len(lines), len(conns)
    assert got_n == want_n, "%d access-log lines for %d connections" % (
        got_n, want_n)
    by = {}
    for e in lines:
        by.setdefault((e["client"], e["client_port"]), []).append(e)
    sums = {"fi": 0, "fo": 0, "bi": 0, "bo": 0}
    for src, c, want in conns:
        got = by.get((src, c.local_port), [])
        assert len(got) == 1, (src, c.local_port, want, got)
        e = got[0]
        for k in ("status", "reason", "close_code", "route", "user",
                  "origin", "listener"):
            if k in want:
                assert e[k] == want[k], (k, want, e)
        if e["status"] == 101:
            sums["fi"] += e["frames_in"]
            sums["fo"] += e["frames_out"]
            sums["bi"] += e["bytes_in"] - len(c.head)
            sums["bo"] += e["bytes_out"]
        else:
            assert e["frames_in"] == e["frames_out"] == e["bytes_out"] == 0
            assert e["bytes_in"] == len(c.head), (e, len(c.head))
        if want.get("exact") or want.get("exact_in"):
            assert (e["frames_in"], e["bytes_in"]) == \
                (c.sent_frames, len(c.head) + c.sent_bytes), (want, e)
        if want.get("exact"):
            assert (e["frames_out"], e["bytes_out"]) == \
                (c.got_frames, c.got_bytes), (want, e)

    # the error log names each of them, with the same reason
    closed = dict(re.findall(r" conn (\d+): closed: (\w+)\n",
                             gw.error_text()))
    assert not [(e["id"], e["reason"], closed.get(str(e["id"])))
                for e in lines if closed.get(str(e["id"])) != e["reason"]]

    def delta(name, **labels):
        return metric(m1, name, **labels) - metric(m0, name, **labels)
    c2u, u2c = "client_to_upstream", "upstream_to_client"
    assert (delta("wsgate_frames_total", direction=c2u),
            delta("wsgate_frames_total", direction=u2c),
            delta("wsgate_bytes_total", direction=c2u),
            delta("wsgate_bytes_total", direction=u2c)) == \
        (sums["fi"], sums["fo"], sums["bi"], sums["bo"]), sums
    reasons = {}
    for e in lines:
        reasons.setdefault((e["status"] == 101, e["reason"]), 0)
        reasons[(e["status"] == 101, e["reason"])] += 1
    for (up, reason), k in sorted(reasons.items()):
        name = "wsgate_closes_total" if up else "wsgate_rejections_total"
        assert delta(name, reason=reason) == k, (name, reason, k)
    assert delta("wsgate_handshakes_total", result="accepted") == \
        sum(k for (up, _), k in reasons.items() if up)
    assert delta("wsgate_handshakes_total", result="rejected") == \
        sum(k for (up, _), k in reasons.items() if not up)
    assert delta("wsgate_handshake_duration_seconds_count") == len(lines)
    assert delta("wsgate_tls_handshakes_total", resumed="no") + \
        delta("wsgate_tls_handshakes_total", resumed="yes") == \
        sum(1 for _, c, _ in conns if c.tls)
    assert sum(v for k, v in m1.items()
               if k[0] == "wsgate_worker_connections") == 0, m1
    assert delta("wsgate_config_reloads_total", result="ok") == \
        (reloads + 1) // 2 + 1
    assert delta("wsgate_config_reloads_total", result="failed") == \
        reloads // 2

    # what the daemon holds, and how it ends
    seen = []
    try:
        wait_for(lambda: seen.append(held(gw.pid)) or seen[-1] == base, 10,
                 interval=0.1)
    except AssertionError:
        raise AssertionError("holds %r, not %r as after the warm-up" %
                             (seen[-1], base))

    # SIGTERM with sessions open, one with a message held for deny_regex:
    # each gets close 1001 and its line says shutdown; exit status 0
    left = []
    for i in range(12):
        c = Client(*ports[listeners[i % 3]], "127.2.0.%d" % (i + 1))
        c.src = "127.2.0.%d" % (i + 1)
        route = ("/open", "/secure")[i % 2]
        assert c.request(route, [] if route == "/open" else
                         secure_headers(300, "last")).status == 101
        exchange(c, rng)
        if i == 1:
            c.frames(E(T, b"held ", fin=False))
        left.append(c)
    gw.proc.send_signal(signal.SIGTERM)
    for c in left:
        assert c.until_close() == 1001
        c.frames(E(CLOSE, wsproto.close_payload(1001)))
        c.wait_closed(10)
        c.close()
    gw.proc.wait(10)                # on its own, not a second signal
    assert gw.stop() == 0
    assert "forced the stop" not in gw.error_text()
    tail_lines = log_lines(paths)[warm + len(conns):]
    assert sorted((e["client"], e["client_port"], e["reason"],
                   e["close_code"]) for e in tail_lines) == \
        sorted((c.src, c.local_port, "shutdown", 1001)
               for c in left), tail_lines
    assert gw.sanitizer is None, gw.sanitizer
