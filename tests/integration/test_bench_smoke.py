"""The benchmark tools still work: a short run of wsecho, wsgate and wsload.

The tools are built by plain `make` next to the daemon
(<dir of $WSGATE>/tests/bench/wsload and wsecho); this test builds nothing.
It checks that every mode moves data with no error and that the load
generator's one JSON line carries the figures the benchmark reads.  It
asserts no wall-clock figure: the benchmark reports, it does not gate.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import rawup
import wsproto
from conftest import REPO, WSGATE, free_port, stop_process, wait_for

BENCH_BIN = Path(WSGATE).resolve().parent / "tests" / "bench"
WSLOAD = BENCH_BIN / "wsload"
WSECHO = BENCH_BIN / "wsecho"
RUN_BENCH = REPO / "tests" / "bench" / "run-bench.sh"

FIELDS = ("mode", "connections", "size", "inflight", "seconds", "messages",
          "msgs_per_s", "mb_per_s", "p50_us", "p90_us", "p99_us", "max_us",
          "errors")


@pytest.fixture(scope="module")
def tools():
    for p in (WSLOAD, WSECHO):
        if not os.access(str(p), os.X_OK):
            pytest.fail("%s is missing: the benchmark tools are built by "
                        "`make` next to the daemon" % p)
    return WSLOAD, WSECHO


@pytest.fixture
def wsecho(tools):
    proc = subprocess.Popen([str(WSECHO), "-p", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    assert line.startswith("listening "), line
    yield int(line.rsplit(":", 1)[1])
    stop_process(proc)
    proc.stdout.close()


def wsload(*args, timeout=30):
    p = subprocess.run([str(WSLOAD)] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout)
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, "wsload printed %r (stderr %r)" % (p.stdout,
                                                               p.stderr)
    return p.returncode, json.loads(lines[0]), p.stderr


def scripted_echo(reply):
    """A raw upstream that answers the upgrade, then hands each data frame
    (and its index among them) to reply, which sends what it likes."""
    def behavior(c):
        if not c.read_head():
            return
        c.accept_101()
        rawup.ws_echo_frames(c, 30, reply=reply)
    return behavior


def echo_back(c, f):
    c.send(wsproto.encode_frame(f.opcode, f.payload, fin=f.fin, mask=False))


@pytest.fixture
def upstream():
    ups = []

    def make(reply):
        u = rawup.RawUpstream(scripted_echo(reply))
        ups.append(u)
        return u
    yield make
    for u in ups:
        u.close()


DELAY = 0.15


@pytest.mark.parametrize("count,slow", [(10, {3}), (11, {0, 2, 4, 6, 8, 10})])
def test_percentiles_are_nearest_rank(tools, upstream, count, slow):
    """One round trip at a time, the echoes of the messages in slow held
    back DELAY seconds: pN is the ceil(N/100 * count)-th smallest round
    trip, so with 1 slow of 10 p99 is the slow one (the 10th), and with 6
    slow of 11 so is p50 (the 6th).  Only lower bounds: a held echo cannot
    come back sooner than DELAY."""
    def reply(c, n, f):
        if n in slow:
            time.sleep(DELAY)
        echo_back(c, f)
    up = upstream(reply)
    rc, r, err = wsload("-m", "echo", "-c", "1", "-k", "1", "-s", "32",
                        "-n", str(count), "-w", "0", "-d", "30",
                        "ws://127.0.0.1:%d/echo" % up.port)
    assert rc == 0, err
    assert r["messages"] == count and r["errors"] == 0, r
    assert r["max_us"] >= DELAY * 1e6, r
    # The rank each percentile names, 1-based, nearest-rank.
    ranks = {p: -(-p * count // 100) for p in (50, 90, 99)}
    nslow = len(slow)
    for p, rank in ranks.items():
        if rank > count - nslow:
            assert r["p%d_us" % p] >= DELAY * 1e6, (p, rank, r)


def split_echo(corrupt=False, opcode=None):
    """Echo each message as two fragments (a code point of the ASCII
    payload is never split); corrupt flips a byte of the second one,
    opcode replaces the message's type."""
    def reply(c, n, f):
        p = bytearray(f.payload)
        if corrupt:
            p[-1] ^= 0x20
        h = len(p) // 2
        c.send(wsproto.encode_frame(opcode or f.opcode, bytes(p[:h]),
                                    fin=False, mask=False) +
               wsproto.encode_frame(wsproto.OP_CONT, bytes(p[h:]),
                                    mask=False))
    return reply


@pytest.mark.parametrize("reply,error", [
    (split_echo(), None),
    (split_echo(corrupt=True), "payload differs"),
    (split_echo(opcode=wsproto.OP_BINARY), "type"),
    (lambda c, n, f: c.send(wsproto.encode_frame(
        wsproto.OP_BINARY, f.payload, mask=False)), "type"),
], ids=["fragments", "corrupt-fragment", "fragments-binary", "binary"])
def test_echoed_messages_are_compared_whole(tools, upstream, reply, error):
    """An echo that comes back in fragments is compared byte for byte like
    one that comes back whole, and a text message must come back text: a
    proxy that changed either is counted as an error, not as a round
    trip."""
    up = upstream(reply)
    rc, r, err = wsload("-m", "echo", "-c", "1", "-k", "1", "-s", "40",
                        "-t", "-n", "5", "-w", "0", "-d", "5", "-o", "5",
                        "ws://127.0.0.1:%d/echo" % up.port)
    if error is None:
        assert rc == 0 and r["errors"] == 0 and r["messages"] == 5, r
    else:
        assert r["errors"] > 0 and error in r["first_error"], r
        assert r["messages"] == 0, r


def test_smoke_script_runs_every_mode_through_wsgate(tools, tmp_path):
    """run-bench.sh --smoke: echo, 16 KiB, flood, idle, handshakes and
    resumed handshakes through a TLS wsgate, each with data and no error."""
    env = dict(os.environ, WSGATE=str(Path(WSGATE).resolve()),
               BENCH_BIN=str(BENCH_BIN), TMPDIR=str(tmp_path))
    p = subprocess.run(["bash", str(RUN_BENCH), "--smoke"], env=env,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, "smoke failed:\n%s\n%s" % (p.stdout, p.stderr)
    verdicts = [ln for ln in p.stdout.splitlines() if ln.startswith("smoke ")]
    names = {ln.split()[1].rstrip(":") for ln in verdicts}
    assert {"echo.json", "echo16k.json", "flood.json", "idle.json",
            "handshake.json", "tickets.json"} <= names, p.stdout
    assert all(": ok " in ln for ln in verdicts), p.stdout
    # Its work folder is gone: every file and process was cleaned up.
    assert list(tmp_path.iterdir()) == []


def test_echo_round_trips_are_counted_and_timed(wsecho):
    """Plain ws:// to wsecho: the JSON line has every field, the echoed
    payloads matched (no error) and the latency percentiles are ordered."""
    rc, r, err = wsload("-m", "echo", "-c", "3", "-s", "100", "-k", "2",
                        "-t", "-d", "1", "-w", "0.2",
                        "ws://127.0.0.1:%d/echo" % wsecho)
    assert rc == 0, err
    for f in FIELDS:
        assert f in r, f
    assert r["mode"] == "echo" and r["connections"] == 3
    assert r["messages"] > 0 and r["errors"] == 0
    assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["max_us"] + 1
    assert r["mb_per_s"] > 0


def test_message_count_limit_with_large_messages(wsecho):
    """-n stops after that many round trips; 70000-byte messages use the
    64-bit length form and come back intact."""
    rc, r, err = wsload("-m", "echo", "-c", "1", "-s", "70000", "-k", "1",
                        "-n", "50", "-w", "0", "-d", "20",
                        "ws://127.0.0.1:%d/echo" % wsecho)
    assert rc == 0, err
    assert r["messages"] == 50 and r["errors"] == 0


def test_idle_mode_announces_ready_then_holds_until_sigterm(wsecho, tmp_path):
    """Idle mode writes the ready file once all upgrades are done and a
    SIGTERM ends the hold early with the connections counted."""
    ready = tmp_path / "ready"
    proc = subprocess.Popen([str(WSLOAD), "-m", "idle", "-c", "40", "-d",
                             "60", "-r", str(ready),
                             "ws://127.0.0.1:%d/echo" % wsecho],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for(ready.exists, timeout=15, what="idle ready file")
        assert ready.read_text().strip() == "40"
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        stop_process(proc)
    r = json.loads(out.strip())
    assert proc.returncode == 0, err
    assert r["messages"] == 40 and r["errors"] == 0
    assert "READY 40" in err


def test_setup_failure_exits_non_zero():
    """Nothing listening: wsload reports the failed setup and exits 1
    within its connect timeout."""
    if not os.access(str(WSLOAD), os.X_OK):
        pytest.fail("%s is missing" % WSLOAD)
    port = free_port()
    rc, r, err = wsload("-m", "echo", "-c", "2", "-o", "2", "-d", "1",
                        "ws://127.0.0.1:%d/echo" % port, timeout=30)
    assert rc == 1
    assert r["setup_failed"] is True and r["errors"] > 0
    assert "connect" in r["first_error"]
