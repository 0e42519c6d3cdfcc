"""SIGHUP reloads as a transaction: a good new generation serves new
connections (policies, routes, certificates, listeners) while established
sessions keep theirs and carry on; a bad one is logged as FILE:LINE:COL,
counted as failed, and changes nothing."""

import asyncio
import copy
import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess

import pytest
import websockets

from conftest import admin_request, echo_works, metric, policy, run

BIG = "x" * 2000            # over 1KiB, under the 64KiB default


def reloads(gw):
    m = gw.metrics()
    return (metric(m, "wsgate_config_reloads_total", result="ok"),
            metric(m, "wsgate_config_reloads_total", result="failed"))


async def pump(ws, i, counts, stop, tag):
    """Send and check echoes on one session until stop is set."""
    while not stop.is_set():
        msg = "%d-%d-%s" % (i, counts[i], BIG)
        await ws.send(msg)
        got = await asyncio.wait_for(ws.recv(), 5)
        assert got == tag + msg, "session %d: echo %r" % (i, got[:40])
        counts[i] += 1
        await asyncio.sleep(0.005)


async def wait_counts(counts, tasks, targets, timeout=10):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(c < t for c, t in zip(counts, targets)):
        for t in tasks:
            if t.done():
                t.result()      # raises what went wrong in the session
                raise AssertionError("a session stopped early")
        if loop.time() > deadline:
            raise AssertionError("sessions stalled: %r, wanted %r" %
                                 (counts, targets))
        await asyncio.sleep(0.02)


def test_reload_with_busy_sessions(factory):
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [a.addr]}, admin=True)
    ok0, failed0 = reloads(gw)

    async def go():
        # Before: no /echo2 route.
        with pytest.raises(websockets.InvalidStatusCode) as ei:
            async with gw.connect("/echo2"):
                pass
        assert ei.value.status_code == 404

        stop = asyncio.Event()
        counts = [0, 0, 0]
        async with gw.connect() as s0, gw.connect() as s1, \
                gw.connect() as s2:
            sessions = [s0, s1, s2]
            tasks = [asyncio.create_task(pump(ws, i, counts, stop, "a:"))
                     for i, ws in enumerate(sessions)]
            await wait_counts(counts, tasks, [3, 3, 3])

            # New generation: frames over 1KiB refused, a new route.
            gw.write_policy("default",
                            policy(frames={"max_frame_size": "1KiB"}))
            cfg = copy.deepcopy(gw.config)
            cfg["upstreams"]["two"] = {"servers": [b.addr],
                                       "balance": "round_robin",
                                       "connect_timeout": "1s"}
            cfg["listeners"][0]["routes"].append(
                {"path": "/echo2", "upstream": "two", "policy": "default"})
            gw.write_config(cfg)
            await asyncio.to_thread(gw.reload, "done")

            # The three sessions keep their generation, 2000-byte frames
            # included, while traffic flows.
            after = list(counts)
            await wait_counts(counts, tasks, [c + 10 for c in after])

            # A new session gets the new generation: the new route answers
            async with gw.connect("/echo2") as n:
                await n.send("hi")
                assert await asyncio.wait_for(n.recv(), 5) == "b:hi"
            # ... and a 2000-byte frame is now over max_frame_size.
            async with gw.connect("/echo") as n:
                await n.send("small")
                assert await asyncio.wait_for(n.recv(), 5) == "a:small"
                await n.send(BIG)
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(n.recv(), 5)
                assert n.close_code == 1009, n.close_code

            await wait_counts(counts, tasks, [c + 15 for c in after])
            stop.set()
            await asyncio.gather(*tasks)
            for ws in sessions:
                assert ws.close_code is None, "session closed: %s %s" % (
                    ws.close_code, ws.close_reason)
            ports = [ws.local_address[1] for ws in sessions]
        return ports, counts
    ports, counts = run(go(), timeout=60)

    assert "reload done" in gw.error_text()
    # the admin address stayed: its socket is kept, not let go and bound
    # again (which would refuse the scrapes in between)
    assert "admin: moving" not in gw.error_text()
    for p, n in zip(ports, counts):
        e = gw.wait_entry(client_port=p)
        assert e["reason"] == "client_closed" and e["status"] == 101, e
        assert e["frames_in"] >= n, (e, n)
    ok1, failed1 = reloads(gw)
    assert (ok1 - ok0, failed1 - failed0) == (1, 0)
    # nothing was dropped by the reload: the only abnormal close upstream
    # is the new session refused for its frame size
    odd = [(ev["code"], ev["reason"]) for ev in a.events("close")
           if ev["code"] != 1000]
    assert odd == [(1001, "frame_too_large")], a.events("close")


def yaml_pos(text, needle):
    """1-based line and column of the first occurrence of needle."""
    for i, line in enumerate(text.splitlines(), 1):
        j = line.find(needle)
        if j >= 0:
            return i, j + 1
    raise AssertionError("%r not in config" % needle)


@pytest.mark.parametrize("breakage", ["unknown_key", "missing_cert"])
def test_reload_broken_config_keeps_running_one(factory, breakage):
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [a.addr]}, admin=True)
    ok0, failed0 = reloads(gw)

    async def tag(path="/echo"):
        async with gw.connect(path) as ws:
            await ws.send("who")
            return await asyncio.wait_for(ws.recv(), 5)

    async def go():
        async with gw.connect() as old:
            # The broken generation would also send /echo to b.
            cfg = copy.deepcopy(gw.config)
            cfg["upstreams"]["echo"]["servers"] = [b.addr]
            missing = str(gw.tmp / "missing.pem")
            if breakage == "missing_cert":
                cfg["listeners"][0]["tls"]["certificate"] = missing
            gw.write_config(cfg)
            text = gw.cfg_path.read_text()
            if breakage == "unknown_key":
                text += "bogus_option: 1\n"
                gw.cfg_path.write_text(text)
                line, col = len(text.splitlines()), 1
                what = "bogus_option"
            else:
                line, col = yaml_pos(text, missing)
                what = missing
            await asyncio.to_thread(gw.reload, "failed")
            assert gw.alive()
            pat = r"reload: %s:%d:%d: .*%s" % (
                re.escape(str(gw.cfg_path)), line, col, re.escape(what))
            assert re.search(pat, gw.error_text()), \
                "no %r in the error log" % pat
            # Old behaviour for new connections and the established one.
            assert await tag() == "a:who"
            await old.send("still")
            assert await asyncio.wait_for(old.recv(), 5) == "a:still"
    run(go(), timeout=30)
    assert gw.alive()
    assert "reload done" not in gw.error_text()
    ok1, failed1 = reloads(gw)
    assert (ok1 - ok0, failed1 - failed0) == (0, 1)
    assert not b.events("open"), "the refused generation was used"


def test_reload_with_a_broken_policy_file_keeps_the_running_policy(factory):
    """A policy file is part of the configuration: one that no longer
    loads (a bad deny_regex) fails the reload at its FILE:LINE:COL, is
    counted failed, and new connections keep the running policy; once the
    file is fixed, a reload applies it."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo", "msg")],
                         upstreams={"echo": [be.addr]}, admin=True,
                         policies={"msg": policy(messages={
                             "deny_regex": ["forbidden"]})})
    ok0, failed0 = reloads(gw)

    async def verdict(text):
        """(close code, echo) of one message on a new session."""
        async with gw.connect("/echo") as ws:
            await ws.send(text)
            try:
                return None, await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                return ws.close_code, None

    assert run(verdict("forbidden word")) == (1008, None)
    gw.write_policy("msg", policy(messages={
        "deny_regex": ["allowed", "(unclosed"]}))
    pfile = gw.pol_dir / "msg.yaml"
    line, _ = yaml_pos(pfile.read_text(), "(unclosed")
    gw.reload("failed")
    pat = r"reload: %s:%d:\d+: .*\(unclosed" % (re.escape(str(pfile)), line)
    assert re.search(pat, gw.error_text()), gw.error_text()
    # the running policy still denies, the broken one's words pass
    assert run(verdict("forbidden word")) == (1008, None)
    assert run(verdict("allowed word")) == (None, "allowed word")
    assert reloads(gw) == (ok0, failed0 + 1)
    gw.write_policy("msg", policy(messages={"deny_regex": ["allowed"]}))
    gw.reload("done")
    assert run(verdict("forbidden word")) == (None, "forbidden word")
    assert run(verdict("allowed word")) == (1008, None)
    assert reloads(gw) == (ok0 + 1, failed0 + 1)


# -- certificates --------------------------------------------------------------

def make_cert(d, name, serial):
    cert, key = d / ("%s.pem" % name), d / ("%s.key" % name)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-set_serial", str(serial), "-subj", "/CN=wsgate-%s" % name,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return cert, key, hashlib.sha256(der).hexdigest()


def served_fingerprint(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def test_reload_serves_new_certificate(factory, tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    cert_a, key_a, fp_a = make_cert(d, "a", 1001)
    cert_b, key_b, fp_b = make_cert(d, "b", 2002)
    assert fp_a != fp_b
    live_cert, live_key = d / "live.pem", d / "live.key"
    shutil.copy(cert_a, live_cert)
    shutil.copy(key_a, live_key)
    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]},
                         listener={"tls": {"certificate": str(live_cert),
                                           "key": str(live_key)}})
    assert served_fingerprint(gw.port) == fp_a
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def go():
        async with gw.connect(ssl=ctx) as old:
            await old.send("1")
            assert await asyncio.wait_for(old.recv(), 5) == "a:1"
            # Renew: replace both files, as certbot or an operator would.
            for src, dst in ((cert_b, live_cert), (key_b, live_key)):
                tmp = dst.with_suffix(".new")
                shutil.copy(src, tmp)
                os.replace(tmp, dst)
            await asyncio.to_thread(gw.reload, "done")
            assert served_fingerprint(gw.port) == fp_b
            async with gw.connect(ssl=ctx) as new:
                await new.send("2")
                assert await asyncio.wait_for(new.recv(), 5) == "a:2"
            # The session opened under certificate A still works.
            await old.send("3")
            assert await asyncio.wait_for(old.recv(), 5) == "a:3"
    run(go(), timeout=30)


# -- listeners -----------------------------------------------------------------

def add_second_listener(gw, port):
    """Write a config with a copy of the first listener, named "second",
    on 127.0.0.1:port; returns that listener."""
    cfg = copy.deepcopy(gw.config)
    second = copy.deepcopy(cfg["listeners"][0])
    second["name"] = "second"
    second["listen"] = "127.0.0.1:%d" % port
    cfg["listeners"].append(second)
    gw.write_config(cfg)
    return second


def refused(port):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


def raw_echo_gateway(factory):
    """A plaintext gateway, not started, whose /echo goes to a raw echo
    upstream."""
    import rawup
    echo = factory.raw_upstream(rawup.ws_echo)
    return factory.gateway(routes=[("/echo", "echo")],
                           upstreams={"echo": [echo.addr]}, tls=False,
                           start=False)


def gateway_with_second_listener(factory):
    """raw_echo_gateway() with a second listener on a free port, in its
    configuration file: (gateway, that port)."""
    from conftest import free_port
    gw = raw_echo_gateway(factory)
    p2 = free_port()
    add_second_listener(gw, p2)
    return gw, p2


def upgrades_on(port):
    """A WebSocket upgrade to /echo on 127.0.0.1:port gets its 101."""
    import rawclient
    c = rawclient.RawClient(port, None, timeout=5)
    try:
        c.upgrade("/echo")
    finally:
        c.close()


def test_reload_adds_and_removes_listeners(factory):
    from conftest import free_port
    be = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    p1, p2 = gw.port, free_port()
    assert refused(p2)

    def connect(port, path="/echo"):
        return websockets.connect("wss://127.0.0.1:%d%s" % (port, path),
                                  ssl=gw.ssl, server_hostname="localhost",
                                  ping_interval=None, open_timeout=5,
                                  close_timeout=3)

    async def echo(ws, text):
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), 5)

    async def go():
        second = add_second_listener(gw, p2)
        await asyncio.to_thread(gw.reload, "done")
        async with connect(p2) as ws:
            assert await echo(ws, "on-2") == "a:on-2"
            port2 = ws.local_address[1]

        async with connect(p1) as old:
            assert await echo(old, "x") == "a:x"
            cfg = copy.deepcopy(gw.config)
            cfg["listeners"] = [second]
            gw.write_config(cfg)
            await asyncio.to_thread(gw.reload, "done")
            assert refused(p1), "removed listener still accepts"
            async with connect(p2) as ws:
                assert await echo(ws, "again") == "a:again"
            # a session accepted by the removed listener carries on
            assert await echo(old, "y") == "a:y"
        return port2
    port2 = run(go(), timeout=30)
    e = gw.wait_entry(client_port=port2)
    assert e["listener"] == "second" and e["status"] == 101, e
    # "listening on" when a listener starts, not again at each reload
    # that keeps it
    text = gw.error_text()
    for name, port in (("public", p1), ("second", p2)):
        n = text.count("listener %s: listening on 127.0.0.1:%d" % (name,
                                                                   port))
        assert n == 1, (name, n, text[-3000:])


def test_reload_to_another_gateways_address_fails(factory):
    """A reload that adds a listener on the address of another wsgate
    (whose sockets, like ours, take SO_REUSEPORT, which the kernel would
    let the two share) fails, naming the address in use, as a second
    gateway started there does; the running listeners stay."""
    import rawup
    echo = factory.raw_upstream(rawup.ws_echo)
    other = factory.gateway(routes=[("/echo", "echo")],
                            upstreams={"echo": [echo.addr]}, tls=False)
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [echo.addr]}, tls=False)
    add_second_listener(gw, other.port)
    gw.reload("failed")
    assert "listener second: 127.0.0.1:%d is in use" % other.port in \
        gw.error_text()
    for g in (gw, other):
        c = g.raw()
        try:
            c.upgrade("/echo")
        finally:
            c.close()


def test_reload_to_a_busy_admin_address_fails_and_keeps_admin(factory):
    """A new admin address is bound before anything changes, as new
    listener addresses are: when it cannot be, the reload fails and the
    running admin listener still answers."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, admin=True)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cfg = copy.deepcopy(gw.config)
        cfg["admin"]["listen"] = "127.0.0.1:%d" % busy.getsockname()[1]
        gw.write_config(cfg)
        gw.reload("failed")
        m = gw.metrics()
        assert metric(m, "wsgate_config_reloads_total", result="failed") == 1
        assert metric(m, "wsgate_config_reloads_total", result="ok") == 0
    finally:
        busy.close()


def test_reload_moves_the_admin_listener_within_its_port(factory):
    """From 127.0.0.1:P to [::ffff:127.0.0.1]:P the new socket cannot be
    bound while the old one holds the port: the old one is let go first,
    and the reload succeeds."""
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": ["127.0.0.1:9"]}, admin=True)
    cfg = copy.deepcopy(gw.config)
    cfg["admin"]["listen"] = "[::ffff:127.0.0.1]:%d" % gw.admin_port
    gw.write_config(cfg)
    gw.reload("done")
    assert "admin: moving from" in gw.error_text()
    assert "admin: listening on [::ffff:127.0.0.1]:%d" % gw.admin_port in \
        gw.error_text()
    status, _, _ = admin_request(gw.admin_port, "/healthz")
    assert status == 200



@pytest.mark.parametrize("which", ["access_log", "error_log"])
def test_reload_with_a_log_file_it_cannot_open_fails(factory, which):
    """The log files a new configuration names are opened before anything
    changes: when one cannot be, the reload fails as a whole, the old
    routes stay, and the old files go on receiving lines."""
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [a.addr]}, admin=True)
    cfg = copy.deepcopy(gw.config)
    cfg["upstreams"]["echo"]["servers"] = [b.addr]
    cfg["log"]["level"] = "warn"
    bad = gw.tmp / "no-such-dir" / "wsgate.log"
    cfg["log"][which] = str(bad)
    gw.write_config(cfg)
    gw.reload("failed")
    assert gw.alive()
    text = gw.error_text()
    kind = "access" if which == "access_log" else "error"
    assert "cannot open %s log %s" % (kind, bad) in text, text[-2000:]
    assert "reload done" not in text
    m = gw.metrics()
    assert metric(m, "wsgate_config_reloads_total", result="failed") == 1
    assert metric(m, "wsgate_config_reloads_total", result="ok") == 0

    async def go():
        async with gw.connect() as ws:
            await ws.send("who")
            return await asyncio.wait_for(ws.recv(), 5), \
                ws.transport.get_extra_info("sockname")[1]
    got, port = run(go(), timeout=15)
    assert got == "a:who"
    assert not b.events("open"), "the refused generation was used"
    # Both old files still take lines, the error log at the old level.
    e = gw.wait_entry(client_port=port)
    assert e["status"] == 101 and e["upstream_server"] == a.addr, e
    after = gw.error_text().split("reload failed")[-1]
    assert "debug: conn %d: upgraded to %s" % (e["id"], a.addr) in after, \
        after
    assert not bad.exists()


def test_reload_applies_the_new_log_level(factory):
    """wsgate.8: after a reload the logs go on "with the new level": from
    debug to info, a new session's debug lines are no longer written."""
    a = factory.echo(name="a")
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [a.addr]})

    async def go():
        async with gw.connect() as ws:
            await ws.send("who")
            assert await asyncio.wait_for(ws.recv(), 5) == "a:who"
            return ws.transport.get_extra_info("sockname")[1]
    e = gw.wait_entry(client_port=run(go(), timeout=15))
    assert "debug: conn %d: upgraded" % e["id"] in gw.error_text()
    cfg = copy.deepcopy(gw.config)
    cfg["log"]["level"] = "info"
    gw.write_config(cfg)
    gw.reload()
    e = gw.wait_entry(client_port=run(go(), timeout=15))
    assert e["status"] == 101, e
    after = gw.error_text().split("reload done")[-1]
    assert "debug: conn %d:" % e["id"] not in after, after


def test_second_reload_before_a_busy_worker_keeps_a_new_listener(factory):
    """Two SIGHUPs while the worker is busy (here: blocked writing its
    access log to a pipe nobody reads yet): the first adds a listener, the
    second, with the same file, has nothing new to bind.  When the worker
    gets to its messages it takes only the newest generation, which must
    still bring the socket the first reload bound for the new listener."""
    from conftest import StalledAccessLog, free_port
    gw = raw_echo_gateway(factory)
    log = StalledAccessLog(gw)
    try:
        gw.start()
        # Far more access-log lines than a page holds: the worker blocks.
        log.fill(40)
        p2 = free_port()
        add_second_listener(gw, p2)
        gw.reload("done")
        gw.reload("done")
        log.release()
        upgrades_on(p2)
    finally:
        log.release()
        gw.stop()
        log.close()


def test_connections_waiting_on_a_removed_listener_are_served(factory):
    """A reload removes a listener while the worker is busy (here blocked
    writing its access log), and connections come to it before the
    worker gets to the reload: the kernel completes their TCP handshakes
    in its backlog and they send their requests.  Closing the socket would reset them; the worker takes
    them first, under the configuration they came to, and they are
    upgraded and relayed.  Only then does the address refuse."""
    from conftest import StalledAccessLog
    import rawclient
    import wsproto
    gw, p2 = gateway_with_second_listener(factory)
    one = copy.deepcopy(gw.config)
    del one["listeners"][1]
    log = StalledAccessLog(gw)
    waiting = []
    try:
        gw.start()
        log.fill(40)
        gw.write_config(one)
        gw.reload("done")
        # The worker has not taken the reload: its socket still listens.
        for _ in range(4):
            c = rawclient.RawClient(p2, None, timeout=5)
            waiting.append(c)
            c.key = wsproto.new_key()
            c.send(rawclient.build_request("/echo", key=c.key))
        log.release()
        for c in waiting:
            head = c.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 "), head
            c.send_frame(wsproto.OP_TEXT, b"queued", mask=True)
            f = c.read_frame()
            assert f is not None and f.payload.endswith(b"queued"), f
        assert refused(p2)
    finally:
        for c in waiting:
            c.close()
        log.release()
        gw.stop()
        log.close()


@pytest.mark.parametrize("removed", ["127.0.0.1", "0.0.0.0"])
def test_a_listener_removed_and_put_back_before_a_busy_worker(factory,
                                                              removed):
    """Two reloads in quick succession while the worker is busy: the first
    removes a listener, the second puts it back.  The worker still listens
    there, as the first generation told it, until it gets to its
    messages: the address is the gateway's own, not "in use" by another
    process, and the second reload is done.  Then the listener serves.
    The same when what the worker still holds is the wildcard of the
    port (0.0.0.0:P) and what comes back is 127.0.0.1:P."""
    from conftest import StalledAccessLog, wait_for
    import rawclient
    gw, p2 = gateway_with_second_listener(factory)
    both = copy.deepcopy(gw.config)
    gw.config["listeners"][1]["listen"] = "%s:%d" % (removed, p2)
    gw.write_config()
    log = StalledAccessLog(gw)
    try:
        gw.start()
        log.fill(40)
        one = copy.deepcopy(both)
        del one["listeners"][1]
        gw.write_config(one)
        gw.reload("done")
        gw.write_config(both)
        gw.reload("done")
        log.release()
        # A connection it accepts after the release comes after the
        # reloads: the worker has taken them and left its old socket.
        probe = rawclient.RawClient(gw.port, None, timeout=5)
        probe.close()
        wait_for(lambda: "accepted from 127.0.0.1 port %d " %
                 probe.local_port in gw.error_text(),
                 what="the worker back at its loop")
        upgrades_on(p2)
    finally:
        log.release()
        gw.stop()
        log.close()


def test_reload_with_a_new_user_warns_that_it_needs_a_restart(factory):
    """user: applies at startup only; wsgate(8) CAVEATS promises a warning
    when a reload changes it, since the process keeps its uid."""
    import os
    import pwd
    try:
        nobody = pwd.getpwnam("nobody").pw_name
    except KeyError:
        pytest.skip("no user nobody")
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]})
    uid = os.stat("/proc/%d" % gw.pid).st_uid
    cfg = copy.deepcopy(gw.config)
    cfg["user"] = nobody
    gw.write_config(cfg)
    gw.reload("done")
    assert "reload: a new user needs a restart" in gw.error_text()
    assert os.stat("/proc/%d" % gw.pid).st_uid == uid
    echo_works(gw)


@pytest.mark.parametrize("key,value,what", [
    ("workers", 2, "a new number of workers"),
    ("user", "nobody", "a new user"),
    ("rate_limit_table", {"max_entries": 5000}, "a new rate_limit_table"),
    ("busy_poll", "5ms", "a new busy_poll"),
])
def test_restart_warnings_compare_with_what_runs(factory, key, value, what):
    """wsgate(8) CAVEATS: a reload logs a warning when workers, user, ...
    differ from those of the running process.  A second reload of the same
    file still differs from what runs and warns again; a reload back to
    the values it started with needs no restart and does not warn.
    wsgate_config_restart_pending says the same to a scrape: 1 while the
    running configuration waits for a restart, 0 again after the reload
    back, and a failed reload leaves it as it was."""
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, admin=True)
    pending = "wsgate_config_restart_pending"
    assert metric(gw.metrics(), pending) == 0
    first = copy.deepcopy(gw.config)
    warning = "reload: %s needs a restart" % what
    cfg = copy.deepcopy(first)
    cfg[key] = value
    gw.write_config(cfg)
    gw.reload("done")
    assert gw.error_text().count(warning) == 1, gw.error_text()
    assert metric(gw.metrics(), pending) == 1
    gw.reload("done")
    assert gw.error_text().count(warning) == 2, gw.error_text()
    gw.cfg_path.write_text(gw.cfg_path.read_text() + "bogus_key: 1\n")
    gw.reload("failed")
    assert metric(gw.metrics(), pending) == 1
    gw.write_config(first)
    gw.reload("done")
    assert gw.error_text().count(warning) == 2, gw.error_text()
    assert metric(gw.metrics(), pending) == 0
    echo_works(gw)
