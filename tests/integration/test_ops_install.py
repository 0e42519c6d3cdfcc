"""`make install` of the build that made $WSGATE, into a scratch DESTDIR:
the configuration and example policies land in sysconfdir, and a second
install (an upgrade) leaves the files an operator edited as they are."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import WSGATE

BUILD = Path(WSGATE).resolve().parent


def make(*args):
    if not (BUILD / "Makefile").exists():
        pytest.skip("no Makefile next to %s" % WSGATE)
    p = subprocess.run(["make", "-s", *args], cwd=BUILD,
                       capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


def sysconfdir():
    text = (BUILD / "Makefile").read_text()
    prefix = re.search(r"^prefix = (.*)$", text, re.M).group(1)
    etc = re.search(r"^sysconfdir = (.*)$", text, re.M).group(1)
    return etc.replace("${prefix}", prefix).replace("$(prefix)", prefix)


def test_reinstall_keeps_the_operators_files(tmp_path):
    """A second `make install` overwrote wsgate.yaml and the policies
    with the shipped ones, so an upgrade silently undid the operator's
    configuration (and rewrote a policies_dir the operator had set).  As
    with nginx, an existing file is kept; a missing one is installed."""
    dest = tmp_path / "dest"
    make("install", "DESTDIR=%s" % dest)
    conf = Path(str(dest) + sysconfdir()) / "wsgate"
    cfg = conf / "wsgate.yaml"
    pol = conf / "policies" / "default.yaml"
    key = conf / "policies" / "keys" / "demo-jwt.pub"
    assert re.search(r"^policies_dir: policies$", cfg.read_text(), re.M)
    assert pol.exists() and key.exists()
    mine = "# mine\n" + cfg.read_text().replace(
        "policies_dir: policies", "policies_dir: ../policies")
    cfg.write_text(mine)
    pol.write_text("timeouts: {idle: 60s}\n")
    key.unlink()
    make("install", "DESTDIR=%s" % dest)
    assert cfg.read_text() == mine
    assert pol.read_text() == "timeouts: {idle: 60s}\n"
    assert key.exists(), "a missing file is installed again"
    make("uninstall", "DESTDIR=%s" % dest)
    left = [p for p in dest.rglob("*") if p.is_file()]
    assert left == [], left
