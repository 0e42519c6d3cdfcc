"""contrib/: the logrotate snippet fits the systemd unit it ships with."""

import re

from conftest import REPO

CONTRIB = REPO / "contrib"


def directives(text):
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines()
            if ln.split("#", 1)[0].strip()]


def test_logrotate_leaves_new_files_to_the_daemon():
    """The unit runs wsgate as User=wsgate, so a file logrotate creates
    for another owner (Debian's logrotate.conf says "create", root's)
    could not be reopened on SIGUSR1 and the logs would keep going to the
    rotated file.  The snippet must say nocreate, or create them for the
    unit's user."""
    unit = (CONTRIB / "systemd" / "wsgate.service").read_text()
    user = re.search(r"^User=(\S+)$", unit, re.M).group(1)
    rot = directives((CONTRIB / "logrotate" / "wsgate").read_text())
    creates = [d for d in rot if re.match(r"(no)?create\b", d)]
    assert creates, "no create/nocreate: logrotate.conf's 'create' applies"
    for d in creates:
        if d == "nocreate":
            continue
        f = d.split()
        assert len(f) == 4 and f[2] == user, \
            "%r: new log files must belong to %s" % (d, user)
    assert any("USR1" in d for d in rot)


def test_readme_describes_what_quickstart_test_runs():
    """README's quick start says what `quickstart.sh test` runs and the
    line it ends with; tests/run-all.sh is what it runs.  The integration
    suite runs once, against the sanitizer build (build-asan/), and the
    last line is run-all.sh's total."""
    readme = (REPO / "README.md").read_text()
    para = re.search(r"^`test` .*?(?=\n\n)", readme, re.M | re.S)
    assert para, "README has no paragraph on `quickstart.sh test`"
    para = " ".join(para.group(0).split())
    runall = (REPO / "tests" / "run-all.sh").read_text()
    total = re.search(r'^echo "(total: )\$tp passed, \$tf failed"$',
                      runall, re.M)
    assert total, "run-all.sh no longer ends with its total line"
    assert "`%sN passed, N failed`" % total.group(1) in para, para
    stages = re.findall(r"^\s*(unit|integration|fuzz|manlint)( [^(\n]*)?$",
                        runall, re.M)
    integ = [a.strip() for s, a in stages if s == "integration"]
    assert integ == ["build-asan"], integ
    assert re.search(r"integration tests[^.]*(AddressSanitizer|"
                     r"sanitizer)", para), \
        "README must say the integration tests run on the sanitizer " \
        "build only: %s" % para
    if any(s == "manlint" for s, _ in stages):
        assert "man page" in para, para
