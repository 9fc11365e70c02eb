"""Out of space is always ENOSPC, never an unmountable store (issue 11.5).

Each test makes its own small ext4 filesystem (a loop-mounted image in the
test's temp dir) as the store's disk, fills it — with namespace operations,
with data — and checks that every refused call gets
ENOSPC cleanly, that fsync'd data survives, that df reports what writes can
really use, and that the store remounts; a growing truncate far beyond the
disk is a hole that takes no space. The WAL (4 x 64 MiB) is
preallocated, so the image is 400 MiB."""
import errno
import json
import os
import subprocess

import pytest

from conftest import WRITEBACK

IMAGE_MB = 400
OPTS = "max_inflight_mb=16"


@pytest.fixture
def small_disk(make_mount, workdir):
    """A Mount whose store directory is a fresh ext4 filesystem."""
    m = make_mount(opts=OPTS)
    img = os.path.join(workdir, "disk.img")
    os.makedirs(m.store)
    with open(img, "wb") as f:
        f.truncate(IMAGE_MB << 20)
    r = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", img], capture_output=True)
    if r.returncode != 0:
        pytest.skip("mkfs.ext4 failed: " + r.stderr.decode())
    r = subprocess.run(["mount", "-o", "loop", img, m.store], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot loop-mount an ext4 image: " + r.stderr.decode())
    try:
        yield m
    finally:
        m.stop()
        subprocess.run(["umount", m.store], capture_output=True)
        if os.path.ismount(m.store):
            subprocess.run(["umount", "-l", m.store], capture_output=True)
        os.unlink(img)  # the loop device was detached by umount (autoclear)


def stats(m):
    with open(m.path(".blazefs", "stats")) as f:
        return json.load(f)


def fsynced_file(m, name, size):
    data = os.urandom(size)
    with open(m.path(name), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return data


def test_namespace_ops_fill_disk_enospc(small_disk):
    m = small_disk.start()
    kept = fsynced_file(m, "kept", 1 << 20)
    target = "t" * 4000
    made = 0
    err = None
    for i in range(60000):
        try:
            os.symlink(target + str(i), m.path("s%05d" % i))
            made += 1
        except OSError as e:
            err = e
            break
    assert err is not None, "60000 symlinks with 4 KB targets never filled the disk"
    assert err.errno == errno.ENOSPC, err
    assert made > 1000
    # every further addition is refused the same way; nothing failed. A
    # small one may still fit the margin the refused 4 KB symlink left, or
    # room a checkpoint gave back meanwhile (the free space is sampled):
    # keep adding until refused -- the disk is nearly full, so that comes.
    for call in (lambda k: os.mkdir(m.path("d%d" % k)), lambda k: os.symlink(target, m.path("x%d" % k)),
                 lambda k: os.link(m.path("kept"), m.path("kept2_%d" % k))):
        with pytest.raises(OSError) as ei:
            for k in range(100000):
                call(k)
        assert ei.value.errno == errno.ENOSPC, ei.value
    s = stats(m)
    assert s["error"] == 0 and s["fs"]["failed"] is False, s
    assert os.statvfs(m.mnt).f_bavail * os.statvfs(m.mnt).f_frsize < (8 << 20)
    # removals still work on a full disk; the room they free comes back
    # once a checkpoint has rewritten the namespace without them (the
    # store keeps two namespace chains: the durable one and the next)
    gone = made * 2 // 3
    for i in range(gone):
        os.unlink(m.path("s%05d" % i))
    assert m.stop() == 0, m.logtext()
    m.start()
    with open(m.path("kept"), "rb") as f:
        assert f.read() == kept
    names = [n for n in os.listdir(m.mnt) if n.startswith("s")]
    assert len(names) == made - gone
    assert os.readlink(m.path("s%05d" % (made - 1))) == target + str(made - 1)
    os.symlink(target, m.path("after"))
    assert m.stop() == 0, m.logtext()


def test_data_fills_disk_enospc_and_df_is_true(small_disk):
    m = small_disk.start()
    sv = os.statvfs(m.mnt)
    avail = sv.f_bavail * sv.f_frsize
    assert avail > (32 << 20), avail
    chunk = os.urandom(1 << 20)  # incompressible
    fd = os.open(m.path("f"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    written = 0
    err = None
    try:
        for i in range(IMAGE_MB):
            try:
                os.write(fd, chunk)
                written += len(chunk)
                if WRITEBACK and i % 8 == 7:
                    os.fsync(fd)
            except OSError as e:
                err = e
                break
        if WRITEBACK and err is None:
            try:
                os.fsync(fd)
            except OSError as e:
                err = e
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert err is not None, "the disk never filled"
    if WRITEBACK:
        assert err.errno in (errno.ENOSPC, errno.EIO, errno.EPERM), err
    else:
        assert err.errno == errno.ENOSPC, err
    # df told the truth: what it reported could be written (the check may
    # let through up to max_inflight_mb more, data still in flight when the
    # disk was sampled, which the reserve covers), and nothing is left once
    # writes are refused
    assert avail * 0.9 <= written <= avail + (16 << 20), (written, avail)
    sv = os.statvfs(m.mnt)
    assert sv.f_bavail * sv.f_frsize < (4 << 20)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path("d"))
    assert ei.value.errno == errno.ENOSPC
    s = stats(m)
    assert s["error"] == 0 and s["fs"]["failed"] is False, s
    assert m.stop() == 0, m.logtext()
    m.start()
    size = os.path.getsize(m.path("f"))
    if not WRITEBACK:
        assert size == written
    with open(m.path("f"), "rb") as f:
        for i in range(size >> 20):
            assert f.read(1 << 20) == chunk, i
    assert m.stop() == 0, m.logtext()


def test_growing_truncate_is_a_hole(small_disk):
    """A growing truncate far beyond the disk stores a hole (storage v2):
    it succeeds at once and takes no space; the disk stays usable."""
    m = small_disk.start()
    kept = fsynced_file(m, "kept", 100000)
    with open(m.path("t"), "wb"):
        pass
    sv = os.statvfs(m.mnt)
    before = sv.f_bavail * sv.f_frsize
    os.truncate(m.path("t"), 64 << 30)  # 64 GiB: far more than the disk holds
    if WRITEBACK:
        fd = os.open(m.path("t"), os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    assert os.path.getsize(m.path("t")) == 64 << 30
    with open(m.path("t"), "rb") as f:
        f.seek(40 << 30)
        assert f.read(4096) == bytes(4096)
    sv = os.statvfs(m.mnt)
    assert sv.f_bavail * sv.f_frsize > before - (4 << 20)
    s = stats(m)
    assert s["error"] == 0 and s["fs"]["failed"] is False, s
    assert m.stop() == 0, m.logtext()
    m.start()
    with open(m.path("kept"), "rb") as f:
        assert f.read() == kept
    assert os.path.getsize(m.path("t")) == 64 << 30
    assert m.stop() == 0, m.logtext()
