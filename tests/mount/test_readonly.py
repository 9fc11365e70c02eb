"""-o ro: the store is opened read-only end to end -- no lock file created, a
shared lock where one exists, the WAL replayed into memory only, no
checkpoint -- so it mounts from read-only media (here a read-only bind mount
of the store directory, made in the test's own directory and always removed)
and never changes a byte of the store; every mutation answers EROFS."""
import errno
import hashlib
import os
import stat
import subprocess

import pytest

from conftest import BIN, is_mounted


def store_digest(d):
    out = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture
def ro_bind(workdir):
    """ro_bind(src) -> a read-only bind mount of src (unmounted at the end)."""
    made = []

    def bind(src):
        dst = os.path.join(workdir, "robind%d" % len(made))
        os.makedirs(dst)
        r = subprocess.run(["mount", "--bind", src, dst], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot bind mount here: {r.stderr.decode().strip()}")
        made.append(dst)
        r = subprocess.run(["mount", "-o", "remount,bind,ro", dst], capture_output=True)
        assert r.returncode == 0, r.stderr
        with pytest.raises(OSError) as ei:
            open(os.path.join(dst, "probe"), "w")
        assert ei.value.errno == errno.EROFS
        return dst

    try:
        yield bind
    finally:
        for dst in reversed(made):
            for _ in range(50):
                if not is_mounted(dst):
                    break
                if subprocess.run(["umount", dst], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", dst], capture_output=True)


def populate(m):
    with open(m.path("log"), "wb") as f:
        f.write(b"line\n" * 1000)
    os.mkdir(m.path("dir"))
    os.mkfifo(m.path("dir", "fifo"))
    os.setxattr(m.path("log"), "user.k", b"v")


def expect_erofs(fn, *args, **kw):
    with pytest.raises(OSError) as ei:
        fn(*args, **kw)
    assert ei.value.errno == errno.EROFS, (fn, args, ei.value)


def check_readonly_view(m):
    with open(m.path("log"), "rb") as f:
        assert f.read() == b"line\n" * 1000 + b"late\n"
    assert stat.S_ISFIFO(os.stat(m.path("dir", "fifo")).st_mode)
    assert os.getxattr(m.path("log"), "user.k") == b"v"
    assert os.listdir(m.path("dir")) == ["fifo"]
    expect_erofs(open, m.path("log"), "ab")
    expect_erofs(open, m.path("new"), "wb")
    expect_erofs(os.mkdir, m.path("d2"))
    expect_erofs(os.mkfifo, m.path("p2"))
    expect_erofs(os.unlink, m.path("log"))
    expect_erofs(os.rename, m.path("log"), m.path("log2"))
    expect_erofs(os.chmod, m.path("log"), 0o600)
    expect_erofs(os.utime, m.path("log"))
    expect_erofs(os.setxattr, m.path("log"), "user.x", b"y")
    expect_erofs(os.removexattr, m.path("log"), "user.k")
    expect_erofs(os.symlink, "t", m.path("ln"))
    assert os.statvfs(m.mnt).f_flag & os.ST_RDONLY


def test_ro_on_readonly_media(make_mount, ro_bind):
    m = make_mount("rw").start()
    populate(m)
    with open(m.path("log"), "ab") as f:
        f.write(b"late\n")
        os.fsync(f.fileno())
    m.kill9()  # the last batches are in the WAL only: -o ro must replay them in memory
    src = m.store
    os.unlink(os.path.join(src, "lock"))  # media without a lock file
    before = store_digest(src)
    ro = make_mount("ro")
    ro.store = ro_bind(src)
    ro.start(opts="ro")
    check_readonly_view(ro)
    assert ro.stop() == 0
    assert store_digest(src) == before
    # a failed read-only mount (mount point missing) writes nothing either
    bad = make_mount("bad")
    bad.store = ro.store
    bad.mnt = os.path.join(os.path.dirname(ro.mnt), "missing-mountpoint")
    with pytest.raises(AssertionError):
        bad.start(opts="ro")
    assert store_digest(src) == before
    # the store itself is intact: a read-write mount replays and continues
    m.start()
    with open(m.path("log"), "ab") as f:
        f.write(b"after\n")
    assert m.stop() == 0


def test_ro_shared_lock(make_mount):
    m = make_mount("rw").start()
    populate(m)
    with open(m.path("log"), "ab") as f:
        f.write(b"late\n")
    assert m.stop() == 0
    before = store_digest(m.store)
    a = make_mount("ro1")
    a.store = m.store
    a.start(opts="ro")
    b = make_mount("ro2")
    b.store = m.store
    b.start(opts="ro")  # read-only mounts share the store
    check_readonly_view(a)
    check_readonly_view(b)
    # a writer is refused while they hold it
    r = subprocess.run([BIN, "-f", m.store, m.mnt], capture_output=True, timeout=60)
    assert r.returncode == 1 and b"already mounted" in r.stderr, r.stderr
    assert a.stop() == 0 and b.stop() == 0
    assert store_digest(m.store) == before
    # and -o ro is refused while a writer holds the store
    m.start()
    c = make_mount("ro3")
    c.store = m.store
    with pytest.raises(AssertionError) as ei:
        c.start(opts="ro")
    assert "already mounted" in str(ei.value)


def test_ro_missing_store_is_not_created(make_mount, workdir):
    m = make_mount("none")
    with pytest.raises(AssertionError):
        m.start(opts="ro")
    assert not os.path.exists(m.store)
