"""tests/bench/report.py: figures are the median of their rounds.

run-bench.sh runs every workload in rounds, each proxy in turn, and names
the files NAME.rN.json; report.py must take the median per figure, take
each ratio as the median of the rounds' own ratios (not the ratio of the
medians), give the range of wsgate / the better peer over the rounds, and
count idle memory (measured once) in every round.  Synthetic load lines,
no network.
"""

import json
import subprocess

from conftest import REPO

REPORT = REPO / "tests" / "bench" / "report.py"


def line(msgs_per_s, cpu_s=1.0, mb_per_s=0.0, p99=100, errors=0):
    return {"mode": "echo", "seconds": 1.0, "messages": int(msgs_per_s),
            "msgs_per_s": msgs_per_s, "msgs_per_cpu_s": msgs_per_s / cpu_s,
            "mb_per_s": mb_per_s, "proxy_cpu_s": cpu_s, "p50_us": p99 / 2,
            "p90_us": p99, "p99_us": p99, "resumed": 0, "errors": errors,
            "setup_failed": False}


def run_report(tmp_path, res, idle):
    """report.py on the results in res: the process and its JSON."""
    out = tmp_path / "out.json"
    p = subprocess.run(["/usr/bin/python3", str(REPORT), str(res), str(out),
                        "1", str(idle)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p, json.loads(out.read_text())


def write(d, name, obj):
    d.mkdir(parents=True, exist_ok=True)
    (d / (name + ".json")).write_text(json.dumps(obj) + "\n")


def test_median_of_rounds_and_range(tmp_path):
    res = tmp_path / "results"
    # Large MB/s per round: wsgate 100, 300, 200; HAProxy 150, 150, 400;
    # nginx 50 throughout.  Medians 200 and 150 (whose ratio, 1.33, is not
    # what any round saw); per-round ratios to the better peer 0.667, 2.0,
    # 0.5, median 0.667.
    for r, (w, h) in enumerate(((100, 150), (300, 150), (200, 400)), 1):
        x = line(w, mb_per_s=w)
        x["load_core_busy"] = (0.5, 0.99, 0.8)[r - 1]
        write(res / "wsgate", "large.r%d" % r, x)
        write(res / "haproxy", "large.r%d" % r, line(h, mb_per_s=h))
        write(res / "nginx", "large.r%d" % r, line(50, mb_per_s=50))
    write(res / "wsgate", "latency.r1", line(1, p99=90, errors=2))
    for p, kb in (("wsgate", 10000), ("haproxy", 20000), ("nginx", 40000)):
        write(res / p, "idle_rss", {"connections": 1000,
                                    "rss_before_kb": 0,
                                    "rss_after_kb": kb})
        write(res / p, "idle", line(0))
    _, doc = run_report(tmp_path, res, idle=1000)
    s = doc["summary"]["large_mb_s"]
    assert s["values"] == {"wsgate": 200, "nginx": 50, "haproxy": 150}
    assert abs(s["ratio_to_best_peer"] - 100 / 150) < 1e-9
    assert abs(s["ratios"]["haproxy"] - 100 / 150) < 1e-9
    assert abs(s["ratios"]["nginx"] - 200 / 50) < 1e-9
    assert s["met"] is False
    lo, hi = s["ratio_to_best_peer_rounds"]
    assert abs(lo - 0.5) < 1e-9 and abs(hi - 2.0) < 1e-9
    row = [r for r in doc["table"] if r[0].startswith("16x16KiB")][0]
    assert "0.50-2.00" in row
    # Idle memory: one measurement, in every round, no range.
    i = doc["summary"]["idle_kb_per_conn"]
    assert i["values"] == {"wsgate": 10.0, "nginx": 40.0, "haproxy": 20.0}
    assert i["ratio_to_best_peer_rounds"] is None
    assert abs(i["ratio_to_best_peer"] - 0.5) < 1e-9
    assert doc["figures"]["wsgate"]["errors"] == 2
    assert len(doc["rounds"]["wsgate"]) == 3
    # The load core's busy share, as run-bench.sh appends it.
    assert abs(doc["figures"]["wsgate"]["large_load_core"] - 0.8) < 1e-9
    row = [r for r in doc["table"] if r[0] == "16KiB: load core busy"][0]
    assert row[1] == "0.80"


def test_files_without_rounds_still_read(tmp_path):
    res = tmp_path / "results"
    write(res / "wsgate", "large", line(120, mb_per_s=120))
    write(res / "haproxy", "large", line(100, mb_per_s=100))
    _, doc = run_report(tmp_path, res, idle=0)
    assert abs(doc["summary"]["large_mb_s"]["ratio_to_best_peer"] - 1.2) \
        < 1e-9


def test_signing_rate_is_the_highest_round(tmp_path):
    """run-bench.sh measures openssl speed in every round; the handshake
    target is taken against the highest, so that a round measured while
    the host was busy cannot flatter the ratio."""
    res = tmp_path / "results"
    for r in (1, 2, 3):
        write(res / "wsgate", "handshake.r%d" % r, line(1000))
    for r, sign in ((1, 3000.0), (2, 4000.0), (3, 3500.0)):
        write(res, "speed.r%d" % r, {"sign_per_s": sign,
                                     "verify_per_s": 100000.0})
    p, doc = run_report(tmp_path, res, idle=0)
    s = doc["summary"]["hs_vs_sign"]
    assert abs(s["ratio"] - 1000 / 4000.0) < 1e-9, s
    assert s["sign_per_s"] == 4000.0
    assert sorted(doc["openssl_speed"]["sign_rounds"]) == [3000.0, 3500.0,
                                                          4000.0]
    assert "4000.0 sign/s (highest of 3000, 4000, 3500)" in p.stdout, \
        p.stdout


def test_user_share_of_proxy_cpu(tmp_path):
    """wsload reports the proxy's user time beside its whole CPU time; the
    table shows the user share in the k=4 small-message workload, the
    figure that says how much of a proxy's CPU its own code can save."""
    res = tmp_path / "results"
    for r, user in ((1, 0.20), (2, 0.30), (3, 0.25)):
        x = line(1000, cpu_s=0.8)
        x["proxy_user_s"] = user
        write(res / "wsgate", "small_k4.r%d" % r, x)
        y = line(1000, cpu_s=0.8)
        y["proxy_user_s"] = 0.4
        write(res / "nginx", "small_k4.r%d" % r, y)
    # A line from an older wsload, without the field, adds no figure.
    write(res / "haproxy", "small_k4.r1", line(1000, cpu_s=0.8))
    _, doc = run_report(tmp_path, res, idle=0)
    w = doc["figures"]["wsgate"]["small_k4_user_share"]
    assert abs(w - 0.25 / 0.8) < 1e-9, w
    assert abs(doc["figures"]["nginx"]["small_k4_user_share"] - 0.5) < 1e-9
    assert "small_k4_user_share" not in doc["figures"]["haproxy"]
    row = [r for r in doc["table"] if r[0] == "64x32B k=4: proxy CPU in user"]
    assert row and row[0][1] == "0.31" and row[0][2] == "0.50", row


def test_handshake_ceiling(tmp_path):
    """The proxy's kernel time per handshake (CPU minus user, over the
    handshakes), and the rate a core would reach if, beside that, the proxy
    did only the X25519 exchange and, without a ticket, the signature."""
    res = tmp_path / "results"
    # wsgate: full 500 handshakes, 0.6 s CPU, 0.45 s user: 300 us kernel;
    # tickets 1000, 0.5 s, 0.3 s: 200 us.  nginx tickets: 100 us.
    for r in (1, 2, 3):
        x = line(500, cpu_s=0.6)
        x["proxy_user_s"] = 0.45
        write(res / "wsgate", "handshake.r%d" % r, x)
        x = line(1000, cpu_s=0.5)
        x["proxy_user_s"] = 0.3
        write(res / "wsgate", "handshake_tickets.r%d" % r, x)
        x = line(1000, cpu_s=0.5)
        x["proxy_user_s"] = 0.4
        write(res / "nginx", "handshake_tickets.r%d" % r, x)
        # The highest round counts, for X25519 as for the signature.
        write(res, "speed.r%d" % r, {"sign_per_s": 4000.0,
                                     "verify_per_s": 1e5,
                                     "x25519_per_s": 25000.0 - r})
    write(res, "speed.r4", {"sign_per_s": 3000.0, "verify_per_s": 1e5,
                            "x25519_per_s": 25000.0})
    p, doc = run_report(tmp_path, res, idle=0)
    f = doc["figures"]
    assert abs(f["wsgate"]["hs_kernel_us"] - 300) < 1e-6
    assert abs(f["wsgate"]["hs_tickets_kernel_us"] - 200) < 1e-6
    assert abs(f["nginx"]["hs_tickets_kernel_us"] - 100) < 1e-6
    assert doc["openssl_speed"]["x25519_per_s"] == 25000.0
    # Without a ticket: 300 + 2 x 40 + 250 us; with one: 200 + 80 us.
    s = doc["summary"]["hs_ceiling"]
    assert abs(s["ratio"] - 1e6 / 630 / 4000) < 1e-9, s
    assert s["reachable"] is False
    s = doc["summary"]["hs_tickets_ceiling"]
    assert abs(s["ratio"] - 1e6 / 280 / 4000) < 1e-9, s
    assert s["reachable"] is True
    assert abs(s["per_s"]["nginx"] - 1e6 / 180) < 1e-6
    row = [r for r in doc["table"]
           if r[0] == "ceiling: kernel+X25519 / sign/s"][0]
    assert row[1:3] == ["0.89", "1.39"], row
    assert "ceiling: kernel+X25519+sign: 0.40 for wsgate, below" in \
        p.stdout, p.stdout
    assert "25000.0 op/s" in p.stdout


def test_two_workers_against_one(tmp_path):
    """The scaling rows: handshakes/s with 1 and 2 workers (medians) and
    the gain, the median of each round's own 2/1 ratio."""
    res = tmp_path / "results"
    # wsgate: 1 worker 200, 100, 210; 2 workers 340, 190, 300: gains 1.7,
    # 1.9, 1.43, median 1.7 (the ratio of the medians, 300/200, is 1.5).
    # nginx gains 1.6, 1.6, 1.6.
    for r, (a, b) in enumerate(((200, 340), (100, 190), (210, 300)), 1):
        write(res / "wsgate", "scale_w1.r%d" % r, line(a))
        write(res / "wsgate", "scale_w2.r%d" % r, line(b))
        write(res / "nginx", "scale_w1.r%d" % r, line(200))
        write(res / "nginx", "scale_w2.r%d" % r, line(320))
    write(res, "speed4096", {"sign4096_per_s": 250.0})
    p, doc = run_report(tmp_path, res, idle=0)
    f = doc["figures"]
    assert f["wsgate"]["scale_w1_s"] == 200
    assert f["wsgate"]["scale_w2_s"] == 300
    assert abs(f["wsgate"]["scale_gain"] - 1.7) < 1e-9
    assert abs(f["nginx"]["scale_gain"] - 1.6) < 1e-9
    s = doc["summary"]["scale_gain"]
    # per round 1.7/1.6, 1.9/1.6, 1.43/1.6: median 1.0625
    assert abs(s["ratios"]["nginx"] - 1.7 / 1.6) < 1e-9, s
    row = [r for r in doc["table"]
           if r[0] == "RSA-4096 hs/s: 2 workers / 1"][0]
    assert row[1:3] == ["1.70", "1.60"], row
    assert doc["openssl_speed"]["sign4096_per_s"] == 250.0
    assert "rsa4096 (one core): 250.0 sign/s; wsgate with 1 worker: " \
        "80% of it" in p.stdout, p.stdout


def test_system_calls_per_message(tmp_path):
    """The sys_small and sys_large runs (no round: counted once) carry the
    proxy's system calls over a window; the table shows them per round
    trip and per 16 KiB message, and its context switches (naps) the
    same way.  A run where perf counted nothing adds no figure."""
    res = tmp_path / "results"
    for p, small, large, naps in (("wsgate", 2200, 5000, 46),
                                  ("nginx", 2600, 30000, 8)):
        x = line(1000)
        x.update(proxy_syscalls=small * 2, syscall_window_s=2,
                 proxy_cswitches=naps)
        write(res / p, "sys_small", x)
        y = line(2000)
        y.update(proxy_syscalls=large * 2, syscall_window_s=2,
                 proxy_cswitches=naps * 100)
        write(res / p, "sys_large", y)
        write(res / p, "small_k4.r1", line(1000))
    write(res / "haproxy", "sys_small", line(1000))
    _, doc = run_report(tmp_path, res, idle=0)
    fig = doc["figures"]
    assert abs(fig["wsgate"]["small_syscalls"] - 2.2) < 1e-9
    assert abs(fig["nginx"]["large_syscalls"] - 15.0) < 1e-9
    assert "small_syscalls" not in fig["haproxy"]
    rows = {r[0]: r for r in doc["table"]}
    assert rows["64x32B k=4: proxy syscalls per rt"][1:3] == ["2.20", "2.60"]
    assert rows["16KiB: proxy syscalls per message"][1:3] == ["2.50", "15.00"]
    assert abs(fig["wsgate"]["small_cswitches"] - 0.023) < 1e-9
    assert "small_cswitches" not in fig["haproxy"]
    assert rows["64x32B k=4: proxy naps per rt"][1:3] == ["0.023", "0.004"]
    assert rows["16KiB: proxy naps per message"][1:3] == ["1.150", "0.200"]


def test_idle_memory_only_when_every_connection_was_held(tmp_path):
    """RSS per idle connection is (after - before) / connections: a run in
    which the proxy dropped some of them (wsload counts the connections
    held at the end and an error for each one lost) would divide its RSS
    by connections it no longer held and flatter it.  Such a run gives no
    figure, and the table says so with '-'."""
    res = tmp_path / "results"
    for p, held, errors in (("wsgate", 600, 400), ("haproxy", 1000, 0),
                            ("nginx", 1000, 0)):
        write(res / p, "idle_rss", {"connections": 1000,
                                    "rss_before_kb": 0,
                                    "rss_after_kb": 12000})
        x = line(0, errors=errors)
        x.update(mode="idle", messages=held, connections=1000)
        write(res / p, "idle", x)
    _, doc = run_report(tmp_path, res, idle=1000)
    i = doc["summary"]["idle_kb_per_conn"]
    assert i["values"] == {"wsgate": None, "nginx": 12.0, "haproxy": 12.0}
    assert i["ratio_to_best_peer"] is None and i["met"] is None, i
    row = [r for r in doc["table"] if r[0].startswith("idle TLS conn")][0]
    assert row[1] == "-", row
