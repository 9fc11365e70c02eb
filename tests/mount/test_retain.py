"""Retention (issue 14.1): -o worm,retain=DURATION and the directory xattr
user.blazefs.retain; user.blazefs.deletable_at and user.blazefs.retain of a
file.

No test sleeps through a period: periods are long (days), and expiry is
proven by restarting the daemon with BLAZEFS_TEST_RETAIN_SKEW (a test-only
environment variable that runs the daemon's retention clock ahead by that
many seconds; fs/retain.c). Each expiry test also checks that the same
operation is refused without the skew, so a daemon that ignored the
retention or the clock would fail here."""
import calendar
import errno
import json
import os
import subprocess
import time

import pytest

from conftest import RENAME_EXCHANGE, expect_bad_option, expect_refused, read, renameat2, write

DAY = 86400
SKEW = "BLAZEFS_TEST_RETAIN_SKEW"


def setfattr(path, name, value):
    return subprocess.run(["setfattr", "-n", name, "-v", value, path], capture_output=True, text=True, timeout=60)


def setfattr_x(path, name):
    return subprocess.run(["setfattr", "-x", name, path], capture_output=True, text=True, timeout=60)


def getfattr(path, name):
    """The value getfattr(1) prints, or None when the attribute is absent."""
    r = subprocess.run(["getfattr", "--absolute-names", "--only-values", "-n", name, path], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        assert "No such attribute" in r.stderr, r.stderr
        return None
    return r.stdout


def deletable_at(path):
    v = getfattr(path, "user.blazefs.deletable_at")
    if v in (None, "never"):
        return v
    return calendar.timegm(time.strptime(v, "%Y-%m-%dT%H:%M:%SZ"))


def refusals(m):
    return json.loads(read(m.path(".blazefs", "stats")))["fs"]["refusals"]["worm"]


def start_skewed(m, monkeypatch, seconds, opts=None):
    monkeypatch.setenv(SKEW, str(seconds))
    try:
        m.start(opts)
    finally:
        monkeypatch.delenv(SKEW)


def test_retain_mount_option(make_mount, monkeypatch):
    m = make_mount(opts="retain=1d").start()
    opts = json.loads(read(m.path(".blazefs", "stats")))["fs"]["options"]
    assert opts["worm"] is True and opts["retain"] == "1d"  # retain= implies worm
    assert b'worm="true",retain="1d"' in read(m.path(".blazefs", "metrics"))
    t0 = int(time.time() - 0.05)  # the daemon stamps with the coarse clock, up to a tick behind
    write(m.path("log"), b"audit line\n")
    write(m.path("other"), b"x")
    t1 = int(time.time()) + 1
    open(m.path("empty"), "wb").close()
    n0 = refusals(m)
    expect_refused(os.unlink, m.path("log"))
    expect_refused(os.rename, m.path("log"), m.path("moved"))
    expect_refused(os.rename, m.path("empty"), m.path("other"))  # over a non-empty file
    expect_refused(renameat2, m.path("empty"), m.path("log"), RENAME_EXCHANGE)
    assert refusals(m) == n0 + 4
    os.rename(m.path("empty"), m.path("empty2"))  # empty files stay deletable
    os.unlink(m.path("empty2"))
    at = deletable_at(m.path("log"))
    assert t0 + DAY <= at <= t1 + DAY
    assert getfattr(m.path("log"), "user.blazefs.retain") == "1d"
    # the clock is the daemon's: touch -d moves mtime, not deletable_at
    subprocess.run(["touch", "-d", "2001-01-01 00:00:00", m.path("log")], check=True)
    assert os.stat(m.path("log")).st_mtime < t0 - DAY
    assert deletable_at(m.path("log")) == at
    # an append restarts the clock (at the daemon's time of the append)
    write(m.path("other"), b"more", "ab")
    assert deletable_at(m.path("other")) >= deletable_at(m.path("log"))
    m.stop()

    # remount: the period, the clock and the refusals survive. (The live
    # view's clock is the time the append reached the daemon, the stored
    # one the time its batch was sealed -- before close() returned: both
    # lie within [t0, t1].)
    m.start()
    at = deletable_at(m.path("log"))
    assert t0 + DAY <= at <= t1 + DAY
    expect_refused(os.unlink, m.path("log"))
    m.stop()
    m.start()
    assert deletable_at(m.path("log")) == at
    m.stop()

    # two days later (the test clock): unlink and rename work, the files go
    start_skewed(m, monkeypatch, 2 * DAY)
    os.rename(m.path("other"), m.path("renamed"))
    os.unlink(m.path("log"))
    os.unlink(m.path("renamed"))
    assert sorted(os.listdir(m.mnt)) == [".blazefs"]
    m.stop()
    m.start()
    assert sorted(os.listdir(m.mnt)) == [".blazefs"]


def test_retain_directory_xattr(make_mount, monkeypatch):
    m = make_mount(opts="worm").start()
    t0 = int(time.time() - 0.05)  # the daemon stamps with the coarse clock, up to a tick behind
    os.mkdir(m.path("audit"))
    write(m.path("plain"), b"worm without a period: never deletable")
    assert getfattr(m.path("plain"), "user.blazefs.deletable_at") == "never"
    assert getfattr(m.path("plain"), "user.blazefs.retain") == "never"

    d = m.path("audit")
    assert getfattr(d, "user.blazefs.retain") is None
    assert setfattr(d, "user.blazefs.retain", "1d").returncode == 0
    assert setfattr(d, "user.blazefs.retain", "2d").returncode == 0  # lengthened
    assert getfattr(d, "user.blazefs.retain") == "2d"
    for shorter in ("1d", "47h", "0"):
        r = setfattr(d, "user.blazefs.retain", shorter)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    r = setfattr_x(d, "user.blazefs.retain")  # we run as root: refused all the same
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    for bad in ("", "abc", "5x", "1.5d", "-1d", "10000y"):
        with pytest.raises(OSError) as ei:
            os.setxattr(d, "user.blazefs.retain", bad.encode())
        assert ei.value.errno == errno.EINVAL, bad
    assert getfattr(d, "user.blazefs.retain") == "2d"
    # settable on directories only
    write(m.path("audit", "f"), b"entry\n")
    r = setfattr(m.path("audit", "f"), "user.blazefs.retain", "9y")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    # inherited by a new subdirectory (a copy: it moves with the subtree)
    os.mkdir(m.path("audit", "sub"))
    assert getfattr(m.path("audit", "sub"), "user.blazefs.retain") == "2d"
    write(m.path("audit", "sub", "g"), b"entry\n")
    t1 = int(time.time()) + 1
    assert t0 + 2 * DAY <= deletable_at(m.path("audit", "sub", "g")) <= t1 + 2 * DAY
    assert getfattr(m.path("audit", "sub", "g"), "user.blazefs.retain") == "2d"
    # not listed (cp -a / rsync -X do not copy it; the copy inherits instead)
    assert "user.blazefs.retain" not in os.listxattr(d)
    # lengthening applies to the files already there, below too
    assert setfattr(d, "user.blazefs.retain", "3d").returncode == 0
    assert t0 + 3 * DAY <= deletable_at(m.path("audit", "sub", "g")) <= t1 + 3 * DAY
    assert getfattr(m.path("audit", "sub", "g"), "user.blazefs.retain") == "3d"
    # moved out of audit, the subdirectory keeps the period it had there:
    # its own copy (2d) is lengthened to audit's 3d before the rename
    os.rename(m.path("audit", "sub"), m.path("moved"))
    assert getfattr(m.path("moved"), "user.blazefs.retain") == "3d"
    assert getfattr(m.path("moved", "g"), "user.blazefs.retain") == "3d"
    # a new subdirectory made now copies 3d; moved back and forth it stays 3d
    os.mkdir(m.path("audit", "later"))
    write(m.path("audit", "later", "h"), b"entry\n")
    assert getfattr(m.path("audit", "later"), "user.blazefs.retain") == "3d"
    expect_refused(os.unlink, m.path("audit", "f"))
    expect_refused(os.unlink, m.path("moved", "g"))
    m.stop()

    # 2.5 days later: 3d files and the plain worm one stay
    start_skewed(m, monkeypatch, 2 * DAY + DAY // 2)
    assert getfattr(m.path("audit"), "user.blazefs.retain") == "3d"
    expect_refused(os.unlink, m.path("moved", "g"))
    expect_refused(os.unlink, m.path("audit", "f"))
    expect_refused(os.rename, m.path("audit", "f"), m.path("audit", "f2"))
    expect_refused(os.unlink, m.path("plain"))
    m.stop()
    start_skewed(m, monkeypatch, 4 * DAY)
    os.rename(m.path("audit", "f"), m.path("audit", "f2"))
    os.unlink(m.path("audit", "f2"))
    os.unlink(m.path("moved", "g"))
    os.unlink(m.path("audit", "later", "h"))
    expect_refused(os.unlink, m.path("plain"))
    assert os.listdir(m.path("audit")) == ["later"] and os.listdir(m.path("moved")) == []


def test_retain_hard_link_uses_named_directory(make_mount):
    """A hard-linked file is judged by the directory the operation names."""
    m = make_mount(opts="worm").start()
    os.mkdir(m.path("kept"))
    assert setfattr(m.path("kept"), "user.blazefs.retain", "1d").returncode == 0
    write(m.path("kept", "f"), b"data")
    os.link(m.path("kept", "f"), m.path("alias"))
    expect_refused(os.unlink, m.path("kept", "f"))
    expect_refused(os.unlink, m.path("alias"))  # the root: plain worm, never
    # deletable_at of a hard-linked file: the latest over its links
    assert getfattr(m.path("alias"), "user.blazefs.deletable_at") == "never"


def test_retain_without_worm(bz):
    os.mkdir(bz.path("d"))
    write(bz.path("f"), b"data")
    with pytest.raises(OSError) as ei:
        os.setxattr(bz.path("d"), "user.blazefs.retain", b"1d")
    assert ei.value.errno == errno.EOPNOTSUPP
    assert getfattr(bz.path("f"), "user.blazefs.deletable_at") is None
    assert getfattr(bz.path("f"), "user.blazefs.retain") is None
    os.unlink(bz.path("f"))


@pytest.mark.parametrize("opt", ["retain=", "retain=5x", "retain=1.5d", "retain=10000y", "retain=d"])
def test_retain_bad_option(make_mount, opt):
    expect_bad_option(make_mount(), opt, b"invalid value for retain")


def test_retain_carried_by_directory_rename(make_mount, monkeypatch):
    """A directory created before its parent got a retain has no copy of it;
    moving it away must not free its files early: it carries the retain."""
    m = make_mount(opts="retain=1h").start()
    os.makedirs(m.path("a", "old"))
    write(m.path("a", "old", "f"), b"data")
    assert setfattr(m.path("a"), "user.blazefs.retain", "2d").returncode == 0
    assert getfattr(m.path("a", "old"), "user.blazefs.retain") is None
    os.rename(m.path("a", "old"), m.path("old"))
    assert getfattr(m.path("old"), "user.blazefs.retain") == "2d"
    assert getfattr(m.path("old", "f"), "user.blazefs.retain") == "2d"
    m.stop()
    start_skewed(m, monkeypatch, DAY)
    expect_refused(os.unlink, m.path("old", "f"))
    m.stop()
    start_skewed(m, monkeypatch, 3 * DAY)
    os.unlink(m.path("old", "f"))


def test_expired_logs_deleted_with_find(make_mount, monkeypatch):
    """docs/ROTATING.md: under retention, dated logs are deleted with find;
    files still within their period are refused (find reports them, they
    stay) and go on a later run."""
    m = make_mount(opts="retain=1d").start()
    for day in ("20261128", "20261129", "20261130"):
        write(m.path("app.log-" + day), b"line\n" * 100)
        subprocess.run(["touch", "-d", "2020-01-01", m.path("app.log-" + day)], check=True)  # mtime lies
    find = ["find", m.mnt, "-type", "f", "-name", "app.log-*", "-mtime", "+30", "-delete"]
    r = subprocess.run(find, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and r.stderr.count("Operation not permitted") == 3, r
    assert len([n for n in os.listdir(m.mnt) if n.startswith("app.log-")]) == 3
    m.stop()
    start_skewed(m, monkeypatch, 2 * DAY)
    r = subprocess.run(find, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    assert sorted(os.listdir(m.mnt)) == [".blazefs"]
