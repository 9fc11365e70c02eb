"""The daemon's interface: options, the store lock, mount(8)/fstab, signals,
other users, the stats control file and the xattrs."""
import errno
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, EXTRA_OPTS, fusermount_u, is_mounted, join_opts


def read(p):
    with open(p, "rb") as f:
        return f.read()


@pytest.mark.parametrize("opt", ["bogus_option", "workers=abc", "workers=65", "zstd_level=99",
                                 "batch_bytes=12Q", "linger_us=-1", "cache_mb=0"])
def test_bad_option_refused(make_mount, opt):
    m = make_mount()
    r = subprocess.run([BIN, "-o", opt, m.store, m.mnt], capture_output=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip(), "no message on stderr"
    assert opt.split("=")[0].encode() in r.stderr
    assert not is_mounted(m.mnt)


def test_missing_arguments(make_mount):
    m = make_mount()
    r = subprocess.run([BIN, m.store], capture_output=True, timeout=30)
    assert r.returncode == 1 and b"MOUNTPOINT" in r.stderr


def test_second_mount_refused(make_mount):
    m = make_mount("one").start()
    other = make_mount("two")
    r = subprocess.run([BIN, "-f", m.store, other.mnt], capture_output=True, timeout=30)
    assert r.returncode == 1
    assert b"already mounted by another blazefs process" in r.stderr, r.stderr
    assert not is_mounted(other.mnt)
    # the first mount is unharmed
    with open(m.path("f"), "ab") as f:
        f.write(b"ok")
    assert read(m.path("f")) == b"ok"


def test_daemon_mode_and_sigterm(make_mount):
    m = make_mount()
    o = join_opts(EXTRA_OPTS)
    args = [BIN] + (["-o", o] if o else []) + [m.store, m.mnt]
    r = subprocess.run(args, capture_output=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        assert is_mounted(m.mnt)  # mounted by the time the parent exits
        with open(m.path("f"), "ab") as f:
            f.write(b"daemon")
        pids = subprocess.run(["pgrep", "-f", "^" + BIN + ".* " + m.mnt + "$"], capture_output=True,
                              text=True).stdout.split()
        assert len(pids) == 1, pids
        os.kill(int(pids[0]), signal.SIGTERM)
        for _ in range(300):
            if not is_mounted(m.mnt) and not os.path.exists("/proc/" + pids[0]):
                break
            time.sleep(0.05)
        assert not is_mounted(m.mnt)
        assert not os.path.exists("/proc/" + pids[0])
    finally:
        fusermount_u(m.mnt, lazy=True)
    m.start()
    assert read(m.path("f")) == b"daemon"


def test_fstab_style_mount(make_mount):
    """mount -t fuse.blazefs STORE MNT (what an fstab line does): mount(8)
    runs mount.fuse3, which runs `blazefs STORE MNT -o opts` through /bin/sh
    with the default PATH (mount drops the caller's PATH), so the daemon must
    be in /usr/local/sbin, /usr/sbin, ... For the test a symlink to BIN is put
    in /usr/local/sbin (whatever was there is restored)."""
    m = make_mount()
    link = "/usr/local/sbin/blazefs"
    saved = None
    if os.path.lexists(link):
        saved = link + ".bztest-saved"
        os.rename(link, saved)
    try:
        os.makedirs("/usr/local/sbin", exist_ok=True)
        os.symlink(BIN, link)
        o = join_opts("rw", "noatime", EXTRA_OPTS, "workers=1")
        r = subprocess.run(["mount", "-t", "fuse.blazefs", "-o", o, m.store, m.mnt], capture_output=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert is_mounted(m.mnt)
        with open("/proc/mounts") as f:
            line = [l for l in f if l.split()[1] == m.mnt][0]
        assert line.split()[2] == "fuse.blazefs"
        assert line.split()[0] == m.store
        with open(m.path("x"), "ab") as f:
            f.write(b"via mount(8)")
        r = subprocess.run(["umount", m.mnt], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        fusermount_u(m.mnt, lazy=True)
        if os.path.islink(link) and os.readlink(link) == BIN:
            os.unlink(link)
        if saved:
            os.rename(saved, link)
    # the daemon lets go of the store after the unmount (it drains first)
    for _ in range(400):
        if subprocess.run(["pgrep", "-f", "blazefs " + m.store], capture_output=True).returncode != 0:
            break
        time.sleep(0.05)
    m.start()
    assert read(m.path("x")) == b"via mount(8)"


def as_nobody(cmd):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", cmd],
                          capture_output=True, timeout=60)


def test_other_user(make_mount):
    m = make_mount(opts="allow_other").start()
    with open(m.path("rootfile"), "wb") as f:
        f.write(b"root\n")
    os.chmod(m.path("rootfile"), 0o644)
    os.mkdir(m.path("pub"))
    os.chmod(m.path("pub"), 0o777)
    r = as_nobody(f"echo intruder >> {m.path('rootfile')}")
    assert r.returncode != 0 and b"Permission denied" in r.stderr, r
    assert read(m.path("rootfile")) == b"root\n"
    assert as_nobody(f"cat {m.path('rootfile')}").stdout == b"root\n"
    r = as_nobody(f"echo mine >> {m.path('pub', 'own')} && echo more >> {m.path('pub', 'own')}")
    assert r.returncode == 0, r.stderr
    st = os.stat(m.path("pub", "own"))
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert read(m.path("pub", "own")) == b"mine\nmore\n"
    r = as_nobody(f"rm {m.path('rootfile')}")
    assert r.returncode != 0
    # a write by another user clears setuid/setgid (killpriv), as on ext4
    suid = m.path("pub", "suid")
    with open(suid, "wb") as f:
        f.write(b"#!/bin/sh\n")
    os.chmod(suid, 0o6777)
    assert as_nobody(f"echo 'exit 0' >> {suid}").returncode == 0
    assert os.stat(suid).st_mode & 0o7777 == 0o777
    os.chmod(suid, 0o4755)
    os.chown(suid, 0, 0)
    assert os.stat(suid).st_mode & 0o7777 == 0o755


def test_stats_file(bz):
    with open(bz.path("f"), "wb") as f:
        f.write(b"x" * 100000)
        os.fsync(f.fileno())
    try:
        os.truncate(bz.path("f"), 1)
    except OSError as e:
        assert e.errno == errno.EPERM
    st = os.stat(bz.path(".blazefs", "stats"))
    assert st.st_mode & 0o222 == 0
    s = json.loads(read(bz.path(".blazefs", "stats")))
    assert s["fs"]["refusals"]["shrink"] >= 1
    assert s["fs"]["refusals"]["total"] >= 1
    assert s["fs"]["write_bytes"] >= 100000
    assert s["fs"]["open_files"] >= 0
    assert "errors" in s["fs"]
    # the pipeline's part
    assert s["records"] >= 1 and s["bytes_in"] >= 100000
    # cat works although st_size is 0
    r = subprocess.run(["cat", bz.path(".blazefs", "stats")], capture_output=True)
    assert json.loads(r.stdout)["fs"]["store"] == bz.store


def test_writeback_cache_is_the_default(make_mount):
    """The kernel writeback cache is on unless -o no_writeback_cache (the
    suite's no_writeback_cache mode passes it to every mount); the last of
    writeback_cache / no_writeback_cache wins."""
    def options(m):
        return json.loads(read(m.path(".blazefs", "stats")))["fs"]["options"]

    m = make_mount("d").start()
    assert options(m)["writeback_cache"] is ("no_writeback_cache" not in EXTRA_OPTS.split(","))
    assert m.stop() == 0
    m = make_mount("n", opts="no_writeback_cache").start()
    assert options(m)["writeback_cache"] is False
    assert m.stop() == 0
    m = make_mount("w", opts="writeback_cache").start()
    assert options(m)["writeback_cache"] is True
    with open(m.path("f"), "wb") as f:  # a refusal surfaces at close, only there
        f.write(b"0123456789")
    fd = os.open(m.path("f"), os.O_WRONLY)
    os.pwrite(fd, b"X", 0)
    with pytest.raises(OSError) as ei:
        os.close(fd)
    assert ei.value.errno in (errno.EPERM, errno.EIO)
    assert read(m.path("f")) == b"0123456789"
    assert m.stop() == 0


def test_xattrs(bz):
    p = bz.path("f")
    with open(p, "wb") as f:
        f.write(b"compressible text line\n" * 10000)
        os.fsync(f.fileno())
    # The values describe the applied state, which trails the fsync ack by
    # the apply step: poll until the file's bytes are all applied.
    for _ in range(200):
        if int(os.getxattr(p, "user.blazefs.pending_bytes")) == 0:
            break
        time.sleep(0.05)
    assert int(os.getxattr(p, "user.blazefs.pending_bytes")) == 0
    # gettable by name, not listed (so copying tools do not copy them)
    assert not [n for n in os.listxattr(p) if n.startswith("user.blazefs.")]
    assert int(os.getxattr(p, "user.blazefs.records")) >= 1
    stored = int(os.getxattr(p, "user.blazefs.stored_bytes"))
    assert 0 < stored < 230000
    ratio = float(os.getxattr(p, "user.blazefs.ratio"))
    assert 0 < ratio < 1
    with pytest.raises(OSError) as ei:
        os.setxattr(p, "user.blazefs.records", b"0")
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.getxattr(p, "user.other")
    assert ei.value.errno == errno.ENODATA


def test_stats_read_races_release(bz):
    """A reply to a read of the control file must not use memory that a
    release on another session thread frees as soon as the kernel has the
    reply (issue 10.2: ASan saw fuse_reply_buf read the freed buffer). Many
    threads open, read in small pieces and close at once; under ASan a use of
    freed memory aborts the daemon, which the fixture then reports."""
    import threading

    path = bz.path(".blazefs", "stats")
    errors = []

    def worker():
        try:
            for _ in range(150):
                fd = os.open(path, os.O_RDONLY)
                try:
                    while os.read(fd, 512):
                        pass
                finally:
                    os.close(fd)
        except OSError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(read(path))["fs"]["store"] == bz.store


def test_remount_waits_for_a_daemon_finishing_its_unmount(make_mount):
    """umount returns before the daemon has drained, checkpointed and let go
    of the store's lock; "umount M && mount M" must still work, as on ext4.
    The lock is held here by the test itself, as by a daemon still finishing:
    the new mount waits for it instead of failing with "already mounted"."""
    import fcntl

    m = make_mount()
    m.start()
    assert m.stop() == 0
    fd = os.open(os.path.join(m.store, "lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        args = [BIN, "-f", m.store, m.mnt]
        m.log = open(m.logpath, "ab")
        m.proc = subprocess.Popen(args, stdout=m.log, stderr=m.log)
        # the daemon is waiting (not refused) while the lock is held
        for _ in range(400):
            if m.proc.poll() is not None or "waiting up to" in m.logtext():
                break
            time.sleep(0.05)
        assert m.proc.poll() is None, m.logtext()
        assert not is_mounted(m.mnt)
    finally:
        os.close(fd)  # the "previous daemon" is gone
    for _ in range(400):
        if is_mounted(m.mnt) or m.proc.poll() is not None:
            break
        time.sleep(0.05)
    assert is_mounted(m.mnt), m.logtext()
    with open(m.path("f"), "ab") as f:
        f.write(b"after")
    assert read(m.path("f")) == b"after"
