"""The manual pages: lint-clean, and wsgate.8 documents every metric the
product exports (SPEC's and the daemon's own) and every signal.  The
sample configurations of the manual pages and of contrib/FLEET.md pass
wsgate -t as printed."""

import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, WSGATE

MAN = REPO / "man"
SPEC_METRICS = [
    "wsgate_handshakes_total", "wsgate_rejections_total",
    "wsgate_closes_total", "wsgate_active_connections",
    "wsgate_frames_total", "wsgate_bytes_total",
    "wsgate_upstream_connect_failures_total",
    "wsgate_config_reloads_total", "wsgate_handshake_duration_seconds",
]
SIGNALS = ["SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1"]


def section(text, name):
    m = re.search(r"^\.Sh %s\n(.*?)(?=^\.Sh )" % re.escape(name), text,
                  re.S | re.M)
    assert m, "no .Sh %s in wsgate.8" % name
    return m.group(1)


def test_mandoc_lint_clean():
    if shutil.which("mandoc") is None:
        pytest.skip("mandoc is not installed (contrib/install-deps.sh)")
    pages = sorted(str(p) for p in MAN.glob("*.[0-9]"))
    assert pages
    p = subprocess.run(["mandoc", "-Tlint", "-Wwarning"] + pages,
                       capture_output=True, text=True, timeout=30)
    assert p.stdout + p.stderr == "", p.stdout + p.stderr


def test_wsgate8_documents_metrics_and_signals(factory):
    text = (MAN / "wsgate.8").read_text()
    metrics = section(text, "METRICS")
    signals = section(text, "SIGNALS")
    items = re.findall(r"^\.It Dv (.*)$", signals, re.M)
    for s in SIGNALS:
        assert any(re.search(r"\b%s\b" % s, i) for i in items), \
            "%s has no item in SIGNALS" % s
    be = factory.echo()
    gw = factory.gateway(routes=[("/echo", "echo")],
                         upstreams={"echo": [be.addr]}, admin=True)
    _, body, _ = gw.admin("/metrics")
    exported = sorted(set(re.findall(r"^# TYPE (\S+) ", body, re.M)))
    assert set(SPEC_METRICS) <= set(exported), exported
    for name in SPEC_METRICS + exported:
        assert re.search(r"\b%s\b" % name, metrics), \
            "%s missing from wsgate.8 METRICS" % name
    for reason in re.findall(r'reason="([a-z_]+)"', body):
        if reason != "other":
            assert re.search(r"\b%s\b" % reason, text), \
                "reason code %s missing from wsgate.8" % reason


def literal_blocks(page):
    """The text of each .Bd -literal block of a manual page, unescaped."""
    out = []
    for m in re.finditer(r"^\.Bd -literal[^\n]*\n(.*?)^\.Ed$",
                         (MAN / page).read_text(), re.S | re.M):
        out.append(m.group(1).replace("\\e", "\\").replace("\\&", ""))
    return out


def check_sample(folder, main_text, policy_extra=None):
    """Run wsgate -t on main_text as FOLDER/wsgate.yaml, beside a copy of
    the shipped policies (policy_extra: NAME -> text added to NAME.yaml)
    and a certificate under tls/, after taking out what only an installed
    system has: the account named by user and /var/log/wsgate.  Returns
    the exit status and the output."""
    shutil.copytree(REPO / "policies", folder / "policies")
    for name, extra in (policy_extra or {}).items():
        with open(folder / "policies" / ("%s.yaml" % name), "a") as f:
            f.write(extra)
    (folder / "tls").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost",
                    "-keyout", str(folder / "tls/server.key"),
                    "-out", str(folder / "tls/server.pem")],
                   check=True, capture_output=True, timeout=30)
    main_text = re.sub(r"^user: \S+\n", "", main_text, flags=re.M)
    main_text = main_text.replace("/var/log/wsgate/", "%s/" % folder)
    cfg = folder / "wsgate.yaml"
    cfg.write_text(main_text)
    p = subprocess.run([WSGATE, "-t", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def test_wsgate_yaml5_example_checks_ok(tmp_path):
    main = [b for b in literal_blocks("wsgate.yaml.5")
            if "listeners:" in b]
    assert len(main) == 1, main
    rc, out = check_sample(tmp_path, main[0])
    assert rc == 0, out
    assert "warning" not in out, out


def test_fleet_md_sample_checks_ok(tmp_path):
    """The gateway and policy samples of contrib/FLEET.md: the admin
    listener, on the address the load balancer checks, is not a loopback
    one, which -t refuses unless allow_public says so."""
    text = (REPO / "contrib" / "FLEET.md").read_text()
    main, policy = re.findall(r"^```yaml\n(.*?)^```$", text, re.S | re.M)
    assert "rate_limit:" in policy, policy
    secret = tmp_path / "ticket.secret"
    secret.write_bytes(os.urandom(48))
    secret.chmod(0o600)
    main = main.replace("/etc/wsgate/ticket.secret", str(secret))
    rc, out = check_sample(tmp_path, main, {"public-chat": policy})
    assert rc == 0, out
    # the one warning: the admin listener is public, as it must be here
    warnings = [l for l in out.splitlines() if "warning:" in l]
    assert len(warnings) == 1, out
    assert "admin listener on a public address" in warnings[0], out


def test_wsgate_policy5_examples_check_ok(tmp_path):
    """Each example of wsgate-policy(5), as the policy of a route of the
    wsgate.yaml(5) example, the key it names being the demo key and the
    GeoIP database, which no test machine holds, left out."""
    main = [b for b in literal_blocks("wsgate.yaml.5")
            if "listeners:" in b][0]
    extra = {}
    routes = ""
    for i, b in enumerate(literal_blocks("wsgate-policy.5")):
        b = re.sub(r"^geoip:\n(  .*\n)*", "", b, flags=re.M)
        b = b.replace("keys/idp.pub", "keys/demo-jwt.pub")
        extra["example%d" % i] = b
        routes += ("      - path: /example%d\n        upstream: echo\n"
                   "        policy: example%d\n" % (i, i))
    assert len(extra) >= 4, extra
    main = main.replace("      - path: /echo/*\n",
                        routes + "      - path: /echo/*\n")
    rc, out = check_sample(tmp_path, main, extra)
    assert rc == 0, out
    assert ": error" not in out, out
