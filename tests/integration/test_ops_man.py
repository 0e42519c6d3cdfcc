"""The manual pages: lint-clean, and wsgate.8 documents every metric the
product exports (SPEC's and the daemon's own) and every signal."""

import re
import shutil
import subprocess

import pytest

from conftest import REPO

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
