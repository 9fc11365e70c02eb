"""sync: the kernel does not forward sync(2)/syncfs(2) to a FUSE daemon, so
blazefs makes fsync() of a directory (what `sync MOUNTPOINT` calls) a global
durability barrier, and `blazectl sync MOUNTPOINT` adds a syncfs first so the
kernel's cached pages (-o writeback_cache) reach the daemon. Observed through
the pipeline's sequence counters (sealed / written / durable), never timing:
the mounts use a one-hour sync interval, so nothing becomes durable unless a
barrier asks for it."""
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import BIN

BLAZECTL = os.path.join(os.path.dirname(os.path.dirname(BIN)), "tools", "blazectl")
SLOW_SYNC = "sync_interval_ms=3600000"


def stats(m):
    with open(m.path(".blazefs", "stats")) as f:
        return json.load(f)


def test_fsync_root_is_a_global_barrier(make_mount):
    m = make_mount(opts=SLOW_SYNC).start()
    for name in ("a", "b", "c"):
        with open(m.path(name), "wb") as f:
            f.write(name.encode() * 1000)
    before = stats(m)
    # precondition: the writes are logged but not yet durable
    assert before["written_seq"] >= before["sealed_seq"] > before["durable_seq"], before
    m.fsync_root()
    after = stats(m)
    assert after["durable_seq"] >= before["sealed_seq"], (before, after)
    assert after["fdatasyncs"] > before["fdatasyncs"]
    # `sync MOUNTPOINT` (coreutils) does exactly this fsync
    with open(m.path("d"), "wb") as f:
        f.write(b"d" * 100)
    mid = stats(m)
    assert mid["sealed_seq"] > mid["durable_seq"]
    assert subprocess.run(["sync", m.mnt]).returncode == 0
    assert stats(m)["durable_seq"] >= mid["sealed_seq"]


def test_blazectl_sync(make_mount):
    m = make_mount(opts=SLOW_SYNC).start()
    f = open(m.path("open-file"), "wb")
    try:
        f.write(b"x" * 100000)
        f.flush()  # into the kernel; the descriptor stays open (no close, no fsync)
        r = subprocess.run([BLAZECTL, "sync", m.mnt], capture_output=True)
        assert r.returncode == 0 and r.stdout == b"" and r.stderr == b"", r
        s = stats(m)
        # every byte reached the daemon (with writeback_cache: via syncfs)
        # and everything sealed is durable
        assert s["fs"]["write_bytes"] >= 100000, s["fs"]
        assert s["durable_seq"] == s["sealed_seq"] > 0, s
    finally:
        f.close()
    with open(m.path("open-file"), "rb") as g:
        assert g.read() == b"x" * 100000


def test_blazectl_sync_refuses_other_paths(workdir):
    r = subprocess.run([BLAZECTL, "sync", workdir], capture_output=True)
    assert r.returncode == 8 and b"not a blazefs mount point" in r.stderr
    r = subprocess.run([BLAZECTL, "sync"], capture_output=True)
    assert r.returncode == 8 and b"usage" in r.stderr


HOLDER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(200):
    os.write(fd, b"line %05d of a writer that keeps its file open\n" % i)
print("written", flush=True)
time.sleep(600)
"""


def _restarted_holds(m, p, want):
    """After kill -9: the remounted store holds exactly want in p."""
    m.start()
    with open(p, "rb") as f:
        assert f.read() == want
    assert m.stop() == 0


def test_fsync_root_covers_open_writers(make_mount):
    """`sync MOUNTPOINT` while a writer keeps its file open: everything it
    wrote before is stored, also what the writeback cache still held in the
    kernel (the kernel sends no dirty pages for an fsync of a directory: the
    daemon fetches them). Proven by killing the daemon right after the sync:
    only what reached the WAL survives."""
    m = make_mount(opts=SLOW_SYNC).start()
    p = m.path("open.log")
    want = b"".join(b"line %05d of a writer that keeps its file open\n" % i for i in range(200))
    w = subprocess.Popen([sys.executable, "-c", HOLDER, p], stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().strip() == "written"
        m.fsync_root()
        m.kill9()
    finally:
        w.kill()
        w.wait()
    _restarted_holds(m, p, want)


def test_writer_that_makes_no_call_reaches_the_wal(make_mount):
    """DESIGN §2, "no call at all": bytes a writer leaves in the kernel's
    writeback cache (no close, no fsync, file kept open) reach the daemon's
    WAL without waiting for the kernel's own writeback (vm.dirty_expire, 30 s
    by default): the daemon's catch-up thread fetches them every half sync
    interval (10-500 ms). Then the daemon is killed: what reached the WAL
    survives. The wait below is a liveness bound only (20 s, 40 rounds)."""
    m = make_mount().start()
    p = m.path("quiet.log")
    want = b"".join(b"line %05d of a writer that keeps its file open\n" % i for i in range(200))
    w = subprocess.Popen([sys.executable, "-c", HOLDER, p], stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline().strip() == "written"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s = stats(m)
            got = s["fs"]["write_bytes"] + s["fs"]["retrieved_bytes"]
            # every byte the daemon has is applied (so in the WAL): nothing in flight
            if got >= len(want) and s["inflight_bytes"] == 0:
                break
            time.sleep(0.05)
        assert got >= len(want), s["fs"]
        m.kill9()
    finally:
        w.kill()
        w.wait()
    _restarted_holds(m, p, want)


@pytest.mark.parametrize("case", ["open", "closed"])
def test_fsync_root_covers_a_growing_truncate(make_mount, case):
    """fsync of the mount's root covers a growing truncate's zeros and what
    is appended after them, for a file still open for writing and for one
    truncated by path after its close: both survive a SIGKILL of the daemon
    right after it."""
    m = make_mount().start()
    p = m.path("log")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"a" * 1000)
        os.truncate(p, 20000)
        if case == "closed":
            os.close(fd)
            fd = -1
            os.truncate(p, 30000)
            want = b"a" * 1000 + bytes(29000)
        else:
            os.write(fd, b"b" * 100)
            want = b"a" * 1000 + bytes(19000) + b"b" * 100
        m.fsync_root()
        m.kill9()
    finally:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass  # the mount is gone
    _restarted_holds(m, p, want)
