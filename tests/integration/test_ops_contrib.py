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
