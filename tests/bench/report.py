"""Turn the run files of run-bench.sh into a table and results.json.

usage: report.py RESULTS_DIR OUT_JSON SECONDS IDLE_CONNS

Workload files named NAME.rN.json are round N of that workload; each
figure is the median over the rounds, each ratio the median of the
rounds' own ratios (wsgate and its peers ran within a minute of each
other in a round), and the "rounds" column gives the range of wsgate /
the better peer over them.

The table gives each figure for every proxy that ran, the ratios
wsgate/nginx and wsgate/HAProxy, and, for the figures issue 6 sets a target
on, the ratio to the better peer and whether the target is met.  It
reports; it never fails the run on a figure.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import sys

PROXIES = ["wsgate", "nginx", "haproxy"]
PEERS = ["nginx", "haproxy"]


def openssl_speed(res):
    """One core's RSA-2048 signing rate: the highest of the rounds'
    (speed.rN.json; speed.json in runs of one measurement).  A round taken
    while the host was busy would flatter every ratio against it."""
    rounds = []
    for name in sorted(os.listdir(res)):
        if name.startswith("speed.r") and name.endswith(".json"):
            d = load(os.path.join(res, name)) or {}
            if d.get("sign_per_s"):
                rounds.append(d)
    if not rounds:
        return load(os.path.join(res, "speed.json")) or {}
    best = max(rounds, key=lambda d: d["sign_per_s"])
    out = {"sign_per_s": best["sign_per_s"],
           "verify_per_s": best.get("verify_per_s"),
           "sign_rounds": [d["sign_per_s"] for d in rounds]}
    # X25519, for the ceiling: the highest round too, the least time a
    # key exchange can take here.
    x = [d["x25519_per_s"] for d in rounds if d.get("x25519_per_s")]
    if x:
        out["x25519_per_s"] = max(x)
    return out


def load(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text.splitlines()[-1]) if text else None
    except (OSError, ValueError, IndexError):
        return None


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "openssl": version(["openssl", "version"]),
        "nginx": version(["nginx", "-v"]),
        "haproxy": version(["haproxy", "-v"]),
        "date": datetime.datetime.now(datetime.timezone.utc)
        .strftime("%Y-%m-%d %H:%M UTC"),
    }


def callgrind_total(path):
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
                if m:
                    return int(m.group(1))
    except OSError:
        pass
    return None


def callgrind_top(path, n=20):
    """(Ir, function) of the top self-cost functions, from the annotate."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"^\s*([\d,]+)\s+(?:\([\s\d.%]+\)\s+)?(\S.*)$",
                             line)
                if not m or "PROGRAM TOTALS" in line:
                    continue
                ir = int(m.group(1).replace(",", ""))
                fn = m.group(2).strip()
                if ":" not in fn:
                    continue
                out.append({"ir": ir, "function": fn})
    except OSError:
        pass
    return out[:n]


def figures(r):
    """The figures of one round: r maps a workload to its JSON line."""
    f = {}
    for k in range(1, 5):
        x = r.get("small_k%d" % k)
        if x:
            f["small_k%d_rt_s" % k] = x["msgs_per_s"]
            f["small_k%d_rt_cpu_s" % k] = x["msgs_per_cpu_s"]
            f["small_k%d_cpu_util" % k] = \
                x["proxy_cpu_s"] / x["seconds"] if x["seconds"] else 0
            if x.get("load_core_busy") is not None:
                f["small_k%d_load_core" % k] = x["load_core_busy"]
            if x.get("proxy_user_s") is not None and x["proxy_cpu_s"]:
                f["small_k%d_user_share" % k] = \
                    x["proxy_user_s"] / x["proxy_cpu_s"]
    vals = [f.get("small_k%d_rt_cpu_s" % k) for k in range(1, 5)]
    vals = [v for v in vals if v]
    if vals:
        f["small_best_rt_cpu_s"] = max(vals)
    vals = [f.get("small_k%d_rt_s" % k) for k in range(1, 5)]
    vals = [v for v in vals if v]
    if vals:
        f["small_best_rt_s"] = max(vals)
    x = r.get("large")
    if x:
        f["large_mb_s"] = x["mb_per_s"]
        f["large_mb_cpu_s"] = (x["mb_per_s"] * x["seconds"] /
                               x["proxy_cpu_s"]) if x["proxy_cpu_s"] \
            else 0
        f["large_cpu_util"] = x["proxy_cpu_s"] / x["seconds"]
        if x.get("load_core_busy") is not None:
            f["large_load_core"] = x["load_core_busy"]
    # The proxy's system calls per round trip (small) or echoed message
    # (large), counted in runs of their own (sys_small, sys_large).
    for w in ("small", "large"):
        x = r.get("sys_" + w)
        if x and x.get("proxy_syscalls") is not None and \
                x["msgs_per_s"] and x.get("syscall_window_s"):
            f[w + "_syscalls"] = x["proxy_syscalls"] / \
                (x["msgs_per_s"] * x["syscall_window_s"])
            # Its context switches over the same window: the times its
            # one thread went to sleep in the poller and was woken again.
            if x.get("proxy_cswitches") is not None:
                f[w + "_cswitches"] = x["proxy_cswitches"] / \
                    (x["msgs_per_s"] * x["syscall_window_s"])
    x = r.get("latency")
    if x:
        f["latency_p50_us"] = x["p50_us"]
        f["latency_p90_us"] = x["p90_us"]
        f["latency_p99_us"] = x["p99_us"]
    # The same two workloads with busy polling (wsgate busy_poll, HAProxy
    # busy-polling), each proxy alone on the core.
    x = r.get("busy_latency")
    if x:
        f["busy_latency_p50_us"] = x["p50_us"]
        f["busy_latency_p99_us"] = x["p99_us"]
        f["busy_latency_cpu_util"] = x["proxy_cpu_s"] / x["seconds"]
    x = r.get("busy_small")
    if x:
        f["busy_small_rt_s"] = x["msgs_per_s"]
        f["busy_small_rt_cpu_s"] = x["msgs_per_cpu_s"]
    for key, name in (("handshake", "hs"), ("handshake_tickets",
                                             "hs_tickets")):
        x = r.get(key)
        if x:
            f[name + "_s"] = x["msgs_per_s"]
            f[name + "_cpu_util"] = x["proxy_cpu_s"] / x["seconds"]
            f[name + "_per_cpu_s"] = x["msgs_per_cpu_s"]
            f[name + "_resumed"] = x["resumed"]
            # The proxy's kernel time per new connection: accept, the
            # upstream connection, both closes, every packet's way through
            # the loopback TCP stack.  No proxy's code can save it.
            if x.get("proxy_user_s") is not None and x["messages"]:
                f[name + "_kernel_us"] = 1e6 * (x["proxy_cpu_s"] -
                                                x["proxy_user_s"]) / \
                    x["messages"]
    # Two workers against one: full RSA-4096 handshakes, nothing pinned.
    # The gain is the round's own ratio, so that the median of the gains
    # is what some round saw.
    x = r.get("scale_w1")
    y = r.get("scale_w2")
    if x:
        f["scale_w1_s"] = x["msgs_per_s"]
    if y:
        f["scale_w2_s"] = y["msgs_per_s"]
    if x and y and x["msgs_per_s"]:
        f["scale_gain"] = y["msgs_per_s"] / x["msgs_per_s"]
    # Only when the proxy held every connection through the hold: wsload
    # counts an error for each one it lost, and RSS over connections no
    # longer held would flatter the proxy.
    x = r.get("idle_rss")
    y = r.get("idle")
    if x and y and not y.get("setup_failed") and not y.get("errors"):
        n = x["connections"]
        f["idle_conns"] = n
        f["idle_kb_per_conn"] = (x["rss_after_kb"] -
                                 x["rss_before_kb"]) / n
    return f


def median(vals):
    v = sorted(vals)
    n = len(v)
    if n == 0:
        return None
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def main():
    res, out_path, seconds, idle_conns = sys.argv[1:5]
    ran = [p for p in PROXIES if os.path.isdir(os.path.join(res, p))]
    raw = {}
    fig = {p: {} for p in ran}
    # Workloads run in rounds (NAME.rN.json), each round every proxy in
    # turn, so that a change in the machine's load hits all of them; a
    # figure is the median of its rounds.  Files without a round (idle
    # memory) count in every round.
    per_round = {p: {} for p in ran}
    for p in ran:
        d = os.path.join(res, p)
        raw[p] = {}
        for name in sorted(os.listdir(d)):
            if name.endswith(".json"):
                raw[p][name[:-5]] = load(os.path.join(d, name))
        base = {}
        rounds = {}
        for name, x in raw[p].items():
            m = re.match(r"^(.*)\.r(\d+)$", name)
            if m:
                rounds.setdefault(int(m.group(2)), {})[m.group(1)] = x
            else:
                base[name] = x
        if not rounds:
            rounds = {1: {}}
        for n, r in sorted(rounds.items()):
            merged = dict(base)
            merged.update(r)
            per_round[p][n] = figures(merged)
        keys = set()
        for f in per_round[p].values():
            keys.update(f)
        for key in keys:
            vals = [f[key] for f in per_round[p].values()
                    if f.get(key) is not None]
            if vals:
                fig[p][key] = median(vals)
        fig[p]["errors"] = sum((v or {}).get("errors", 0)
                               for k, v in raw[p].items()
                               if not k.startswith("idle_rss"))
    nrounds = max([len(per_round[p]) for p in ran] or [0])

    speed = openssl_speed(res)
    sign4096 = (load(os.path.join(res, "speed4096.json")) or {}).get(
        "sign4096_per_s")
    if sign4096:
        speed["sign4096_per_s"] = sign4096
    cg = {}
    t1 = callgrind_total(os.path.join(res, "callgrind.2000.out"))
    t2 = callgrind_total(os.path.join(res, "callgrind.22000.out"))
    if t1 and t2:
        cg = {"ir_total_2000": t1, "ir_total_22000": t2,
              "ir_per_round_trip": (t2 - t1) / 20000.0,
              "ir_per_relayed_frame": (t2 - t1) / 40000.0,
              "top_self": callgrind_top(os.path.join(res,
                                                     "callgrind_top.txt"))}
        if "wsgate" in fig:
            fig["wsgate"]["ir_per_round_trip"] = cg["ir_per_round_trip"]

    # (key, label, format, better: "high"/"low", target ratio or None)
    rows = [
        ("small_k1_rt_s", "64x32B echo k=1: round trips/s", "%.0f",
         "high", None),
        ("small_k2_rt_s", "64x32B echo k=2: round trips/s", "%.0f",
         "high", None),
        ("small_k3_rt_s", "64x32B echo k=3: round trips/s", "%.0f",
         "high", None),
        ("small_k4_rt_s", "64x32B echo k=4: round trips/s", "%.0f",
         "high", None),
        ("small_k1_rt_cpu_s", "64x32B k=1: rt per proxy CPU-s", "%.0f",
         "high", None),
        ("small_k2_rt_cpu_s", "64x32B k=2: rt per proxy CPU-s", "%.0f",
         "high", None),
        ("small_k3_rt_cpu_s", "64x32B k=3: rt per proxy CPU-s", "%.0f",
         "high", None),
        ("small_k4_rt_cpu_s", "64x32B k=4: rt per proxy CPU-s", "%.0f",
         "high", None),
        ("small_k4_cpu_util", "64x32B k=4: proxy CPU use", "%.2f",
         None, None),
        ("small_k4_load_core", "64x32B k=4: load core busy", "%.2f",
         None, None),
        ("small_k4_user_share", "64x32B k=4: proxy CPU in user", "%.2f",
         None, None),
        ("small_syscalls", "64x32B k=4: proxy syscalls per rt", "%.2f",
         "low", None),
        ("small_cswitches", "64x32B k=4: proxy naps per rt", "%.3f",
         None, None),
        ("small_best_rt_cpu_s", "small: best rt per proxy CPU-s", "%.0f",
         "high", 1.25),
        ("large_mb_s", "16x16KiB echo k=4: MB/s", "%.1f", "high", 1.25),
        ("large_mb_cpu_s", "16KiB: MB per proxy CPU-s", "%.1f", "high",
         None),
        ("large_cpu_util", "16KiB: proxy CPU use", "%.2f", None, None),
        ("large_load_core", "16KiB: load core busy", "%.2f", None, None),
        ("large_syscalls", "16KiB: proxy syscalls per message", "%.2f",
         "low", None),
        ("large_cswitches", "16KiB: proxy naps per message", "%.3f",
         None, None),
        ("latency_p50_us", "1 conn 32B: p50 us", "%.0f", "low", None),
        ("latency_p99_us", "1 conn 32B: p99 us", "%.0f", "low", 0.8),
        ("busy_latency_p50_us", "busy polling, 1 conn 32B: p50 us", "%.0f",
         "low", None),
        ("busy_latency_p99_us", "busy polling, 1 conn 32B: p99 us", "%.0f",
         "low", None),
        ("busy_latency_cpu_util", "busy polling, 1 conn: proxy CPU use",
         "%.2f", None, None),
        ("busy_small_rt_s", "busy polling, 64x32B k=4: rt/s", "%.0f",
         "high", None),
        ("busy_small_rt_cpu_s", "busy polling, k=4: rt per proxy CPU-s",
         "%.0f", "high", None),
        ("idle_kb_per_conn", "idle TLS conn: RSS KiB/conn", "%.1f", "low",
         0.5),
        ("hs_s", "handshakes/s, no resumption", "%.0f", "high", None),
        ("hs_cpu_util", "handshakes: proxy CPU use", "%.2f", None, None),
        ("hs_per_cpu_s", "handshakes per proxy CPU-s", "%.0f", "high",
         None),
        ("hs_tickets_s", "handshakes/s, tickets", "%.0f", "high", None),
        ("hs_tickets_per_cpu_s", "ticket hs per proxy CPU-s", "%.0f",
         "high", None),
        ("hs_kernel_us", "handshakes: proxy kernel us each", "%.0f", "low",
         None),
        ("hs_tickets_kernel_us", "ticket hs: proxy kernel us each", "%.0f",
         "low", None),
        ("scale_w1_s", "RSA-4096 hs/s, 1 worker, unpinned", "%.0f",
         "high", None),
        ("scale_w2_s", "RSA-4096 hs/s, 2 workers, unpinned", "%.0f",
         "high", None),
        ("scale_gain", "RSA-4096 hs/s: 2 workers / 1", "%.2f", "high",
         None),
        ("ir_per_round_trip", "callgrind Ir per 32B round trip", "%.0f",
         None, None),
        ("errors", "wsload errors (all runs)", "%d", None, None),
    ]

    def cell(p, key, fmt):
        v = fig.get(p, {}).get(key)
        return "-" if v is None else fmt % v

    headers = ["figure"] + ran + ["ws/" + p for p in PEERS if p in ran] + \
        ["ws/best", "rounds", "target", "met"]

    def paired(key, peers, better):
        """wsgate / the better of peers in each round, both measured
        within a minute of each other: one ratio per round."""
        out = []
        for n, w in sorted(per_round.get("wsgate", {}).items()):
            wv = w.get(key)
            vals = [per_round[p][n].get(key) for p in peers if p in ran and
                    n in per_round[p] and per_round[p][n].get(key)]
            if wv is None or not vals:
                continue
            out.append(wv / (min(vals) if better == "low" else max(vals)))
        return out

    table = []
    summary = {}
    for key, label, fmt, better, target in rows:
        line = [label] + [cell(p, key, fmt) for p in ran]
        w = fig.get("wsgate", {}).get(key)
        # Ratios are the median of the rounds' own ratios, so that a
        # stretch of slow machine that hits one round hits both sides of
        # its ratio; idle memory is measured once, on a fresh process.
        once = key.startswith("idle_") or key == "errors"
        ratios = {}
        for p in PEERS:
            if p not in ran:
                continue
            pr = [] if once else paired(key, [p], better or "high")
            v = fig[p].get(key)
            if pr:
                ratios[p] = median(pr)
            elif w is not None and v and key != "errors":
                ratios[p] = w / v
            if p in ratios:
                line.append("%.2f" % ratios[p])
            else:
                line.append("-")
        rb = None
        rr = None
        if better and w is not None:
            pr = [] if once else paired(key, PEERS, better)
            vals = [fig[p].get(key) for p in PEERS if p in ran and
                    fig[p].get(key)]
            if pr:
                rb = median(pr)
                if len(pr) >= 2:
                    rr = (min(pr), max(pr))
            elif vals:
                rb = w / (max(vals) if better == "high" else min(vals))
        line.append("%.2f" % rb if rb is not None else "-")
        line.append("%.2f-%.2f" % rr if rr else "")
        met = None
        if target is not None and rb is not None:
            met = rb >= target if better == "high" else rb <= target
            line.append(("%s%.2f" % (">=" if better == "high" else "<=",
                                     target)))
            line.append("yes" if met else "NO")
        else:
            line += ["", ""]
        table.append(line)
        summary[key] = {"label": label, "values": {p: fig[p].get(key)
                                                    for p in ran},
                        "ratios": ratios, "ratio_to_best_peer": rb,
                        "ratio_to_best_peer_rounds": rr,
                        "target": target, "met": met}

    # The handshake target is against the signing rate, not a peer.  Both
    # kinds of new connection are shown: full handshakes (one signature
    # each) and those that resume with a ticket (no signature).
    sign = speed.get("sign_per_s")
    for key, label, skey in (
            ("hs_s", "handshakes/s / RSA-2048 sign/s", "hs_vs_sign"),
            ("hs_tickets_s", "ticket hs/s / RSA-2048 sign/s",
             "hs_tickets_vs_sign")):
        hs = fig.get("wsgate", {}).get(key)
        if not sign or not hs:
            continue
        r = hs / sign
        table.append([label] +
                     [cell(p, key, "%.0f") + "/%.0f" % sign
                      for p in ran] +
                     ["" for p in PEERS if p in ran] +
                     ["%.2f" % r, "", ">=0.85", "yes" if r >= 0.85 else "NO"])
        summary[skey] = {"ratio": r, "sign_per_s": sign,
                         "target": 0.85, "met": r >= 0.85}

    # The ceiling of each kind of handshake: the rate one core would reach
    # if the proxy's user-space work were only the X25519 exchange (a key
    # pair and a shared secret) and, without a ticket, the RSA signature,
    # with the kernel time that proxy took per connection in this run.
    x25519 = speed.get("x25519_per_s")
    ceilings = []
    for kind, label, skey, sigs in (
            ("hs", "ceiling: kernel+X25519+sign / sign/s", "hs_ceiling", 1),
            ("hs_tickets", "ceiling: kernel+X25519 / sign/s",
             "hs_tickets_ceiling", 0)):
        if not sign or not x25519:
            continue
        vals = {}
        for p in ran:
            k = fig.get(p, {}).get(kind + "_kernel_us")
            if k is not None:
                vals[p] = 1e6 / (k + 2e6 / x25519 + sigs * 1e6 / sign)
        if "wsgate" not in vals:
            continue
        r = vals["wsgate"] / sign
        table.append([label] +
                     ["%.2f" % (vals[p] / sign) if p in vals else "-"
                      for p in ran] +
                     ["" for p in PEERS if p in ran] +
                     ["%.2f" % r, "", "", ""])
        summary[skey] = {"per_s": vals, "ratio": r, "sign_per_s": sign,
                         "x25519_per_s": x25519,
                         "kernel_us": fig["wsgate"][kind + "_kernel_us"],
                         "reachable": r >= 0.85}
        ceilings.append((label, r))

    widths = [max(len(str(row[i])) for row in [headers] + table)
              for i in range(len(headers))]
    lines = []
    for row in [headers] + table:
        lines.append("  ".join(str(c).ljust(widths[i]) if i == 0 else
                               str(c).rjust(widths[i])
                               for i, c in enumerate(row)).rstrip())
    m = machine()
    print("wsgate benchmark: %s, nproc %s, %s, kernel %s; %s s per workload,"
          " median of %d round(s); rounds: the range of ws/best over them"
          % (m["date"], m["nproc"], m["cpu"], m["kernel"], seconds, nrounds))
    print("\n".join(lines))
    if sign:
        rounds = speed.get("sign_rounds") or []
        print("openssl speed rsa2048 (one core): %.1f sign/s%s" %
              (sign, " (highest of %s)" % ", ".join("%.0f" % x for x in
                                                     rounds)
               if len(rounds) > 1 else ""))
    if x25519:
        print("openssl speed ecdhx25519 (one core): %.1f op/s; a handshake "
              "takes two (key pair, shared secret)" % x25519)
    if sign4096:
        w1 = fig.get("wsgate", {}).get("scale_w1_s")
        print("openssl speed rsa4096 (one core): %.1f sign/s%s" % (
            sign4096, "; wsgate with 1 worker: %.0f%% of it" %
            (100.0 * w1 / sign4096) if w1 else ""))
    for label, r in ceilings:
        print("%s: %.2f for wsgate, %s the 0.85 target: the rate if "
              "the proxy spent, per connection, only its kernel time here "
              "and the key exchange%s" %
              (label.split(" / ")[0], r, "above" if r >= 0.85 else "below",
               " and the signature" if "sign /" in label else ""))
    if cg:
        print("callgrind: %.0f Ir per 32-byte round trip (%.0f per relayed "
              "frame), TLS included" % (cg["ir_per_round_trip"],
                                        cg["ir_per_relayed_frame"]))
        for t in cg["top_self"][:15]:
            print("  %12d  %s" % (t["ir"], t["function"]))

    doc = {
        "machine": m,
        "seconds": float(seconds),
        "idle_connections": int(idle_conns),
        "rounds": per_round,
        "figures": fig,
        "summary": summary,
        "openssl_speed": speed,
        "callgrind": cg,
        "raw": raw,
        "table": [headers] + table,
    }
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote %s" % out_path)


if __name__ == "__main__":
    main()
