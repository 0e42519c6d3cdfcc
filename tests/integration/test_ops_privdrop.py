"""`user:` drops privileges after binding: the process runs with the
user's uid/gid and no other group, still relays, and still reloads
(certificate, key, policies and logs are readable/writable by that user,
as the man page asks)."""

import asyncio
import copy
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile

import pytest

from conftest import Gateway, run, wait_for

USER = "wsgate-test"


@pytest.fixture
def unprivileged_user():
    if os.geteuid() != 0:
        pytest.skip("privilege drop needs root (euid %d)" % os.geteuid())
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    p = subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", USER],
                       capture_output=True, text=True, timeout=30)
    if p.returncode not in (0, 9):        # 9: already exists (a race)
        pytest.skip("cannot create user %s: %s" % (USER, p.stderr.strip()))
    return pwd.getpwnam(USER)


def ids(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = [int(x) for x in v.split()]
    return out


def user_gateway(factory, certs, client_ssl, pw, top):
    """A gateway with user: USER in top, its certificate and key the
    user's, and two echo backends, a (in its config) and b."""
    os.chmod(top, 0o755)
    tls = os.path.join(top, "tls")
    os.mkdir(tls, 0o755)
    mine = {}
    for k in ("cert", "key"):
        mine[k] = os.path.join(tls, os.path.basename(certs[k]))
        shutil.copy(certs[k], mine[k])
        os.chown(mine[k], pw.pw_uid, pw.pw_gid)
        os.chmod(mine[k], 0o600)
    a, b = factory.echo(name="a"), factory.echo(name="b")
    gw = Gateway(os.path.join(top, "gw"), mine, client_ssl,
                 routes=[("/echo", "echo")], upstreams={"echo": [a.addr]},
                 top={"user": USER})
    factory.made.append(gw)
    os.chmod(gw.tmp, 0o755)
    return gw, a, b


def test_privilege_drop_then_reload(factory, certs, client_ssl,
                                    unprivileged_user):
    pw = unprivileged_user
    # pytest's tmp dirs are root-only (0700); the dropped process must reach
    # its files for reloads, so it gets a world-traversable dir of its own.
    top = tempfile.mkdtemp(prefix="wsgate-priv-", dir="/tmp")
    try:
        gw, a, b = user_gateway(factory, certs, client_ssl, pw, top)
        for f in (gw.error_log, gw.access_log):     # as LogsDirectory= does
            f.touch(mode=0o640)
            os.chown(f, pw.pw_uid, pw.pw_gid)
        gw.start()
        # The listeners are bound before the drop, so the port answers a
        # moment before it happens: the log line says it is done.
        wait_for(lambda: "running as %s" % USER in gw.error_text(),
                 timeout=10, what="the privilege drop")

        st = ids(gw.pid)
        assert st["Uid"] == [pw.pw_uid] * 4, st
        assert st["Gid"] == [pw.pw_gid] * 4, st
        assert set(st["Groups"]) <= {pw.pw_gid}, st

        async def echo(path, text):
            async with gw.connect(path) as ws:
                await ws.send(text)
                return await asyncio.wait_for(ws.recv(), 5)
        assert run(echo("/echo", "hi")) == "a:hi"

        cfg = copy.deepcopy(gw.config)
        cfg["upstreams"]["echo"]["servers"] = [b.addr]
        gw.write_config(cfg)
        gw.reload("done")
        assert run(echo("/echo", "hi")) == "b:hi"
        assert ids(gw.pid)["Uid"] == [pw.pw_uid] * 4
        gw.stop()
        assert gw.proc.returncode == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_logs_opened_before_the_drop_still_reload_and_reopen(
        factory, certs, client_ssl, unprivileged_user):
    """With user: and no one making the log files beforehand, the daemon
    creates them as root at startup.  It must still be able to open them
    again as the user: at a reload (which reopens the logs it names) and
    on SIGUSR1 after rotation, in a log directory the user owns."""
    pw = unprivileged_user
    top = tempfile.mkdtemp(prefix="wsgate-priv-", dir="/tmp")
    try:
        gw, a, b = user_gateway(factory, certs, client_ssl, pw, top)
        os.chown(gw.tmp, pw.pw_uid, pw.pw_gid)    # the log directory
        assert not gw.error_log.exists() and not gw.access_log.exists()
        gw.start()
        wait_for(lambda: "running as %s" % USER in gw.error_text(),
                 timeout=10, what="the privilege drop")

        cfg = copy.deepcopy(gw.config)
        cfg["upstreams"]["echo"]["servers"] = [b.addr]
        gw.write_config(cfg)
        gw.reload("done")

        async def echo(path, text):
            async with gw.connect(path) as ws:
                await ws.send(text)
                return await asyncio.wait_for(ws.recv(), 5)
        assert run(echo("/echo", "hi")) == "b:hi"

        old = gw.tmp / "error.log.1"
        os.rename(gw.error_log, old)
        gw.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "log files reopened" in gw.error_text(),
                 timeout=5, what="log files reopened in the new file")
        assert "not all reopened" not in old.read_text()
        gw.stop()
        assert gw.proc.returncode == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_log_that_is_a_device_stays_root_s(factory, certs, client_ssl,
                                             unprivileged_user):
    """Only log files are given to user:.  An access log on a device
    (/dev/null, here a node of its own for the same device) must keep its
    owner: given to the user, it could chmod it and break every other
    program that writes there."""
    pw = unprivileged_user
    top = tempfile.mkdtemp(prefix="wsgate-priv-", dir="/tmp")
    try:
        gw, a, b = user_gateway(factory, certs, client_ssl, pw, top)
        null = os.path.join(top, "null")
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(null, 0o666)
        cfg = copy.deepcopy(gw.config)
        cfg["log"]["access_log"] = null
        gw.write_config(cfg)
        gw.start()
        wait_for(lambda: "running as %s" % USER in gw.error_text(),
                 timeout=10, what="the privilege drop")
        st = os.stat(null)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o666), st
        # The regular error log is the user's, for reloads and SIGUSR1.
        assert os.stat(gw.error_log).st_uid == pw.pw_uid
        gw.stop()
        assert gw.proc.returncode == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_sigusr1_that_the_user_cannot_reopen_keeps_the_old_files(
        factory, certs, client_ssl):
    """The daemon as user: nobody, its logs in a folder only root may
    write (wsgate -t says so, but it may run all the same): after a
    rotation SIGUSR1 cannot make the files anew.  It must say so once,
    in the error log it still has, keep writing both logs to the
    rotated files, and keep serving."""
    import pwd
    if os.geteuid() != 0:
        pytest.skip("privilege drop needs root (euid %d)" % os.geteuid())
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    top = tempfile.mkdtemp(prefix="wsgate-priv-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        a = factory.echo(name="a")
        gw = Gateway(os.path.join(top, "gw"), certs, client_ssl,
                     routes=[("/echo", "echo")], upstreams={"echo": [a.addr]},
                     top={"user": "nobody"})
        factory.made.append(gw)
        os.chmod(gw.tmp, 0o755)
        gw.start()
        wait_for(lambda: "running as nobody" in gw.error_text(),
                 timeout=10, what="the privilege drop")
        old_error = gw.tmp / "error.log.1"
        old_access = gw.tmp / "access.log.1"
        os.rename(gw.error_log, old_error)
        os.rename(gw.access_log, old_access)
        gw.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "log files not all reopened" in
                 old_error.read_text(), 5,
                 what="'log files not all reopened' in the old error log")
        text = old_error.read_text()
        for what, path in (("error", gw.error_log),
                           ("access", gw.access_log)):
            assert text.count("cannot reopen %s log %s: Permission denied"
                              % (what, path)) == 1, text
        assert "log files reopened" not in text, text
        assert not gw.error_log.exists() and not gw.access_log.exists()

        async def echo():
            async with gw.connect("/echo") as ws:
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), 5) == "a:hi"
                return ws.local_address[1]
        port = run(echo())
        wait_for(lambda: '"client_port":%d,' % port in
                 old_access.read_text().replace(" ", ""), 5,
                 what="the access line in the rotated access log")
        assert gw.alive()
        gw.stop()
        assert gw.proc.returncode == 0
        assert "shutting down" in old_error.read_text()
    finally:
        shutil.rmtree(top, ignore_errors=True)
