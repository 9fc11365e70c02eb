"""Out of space is always ENOSPC, never an unmountable store (issue 11.5).

Each test makes its own small ext4 filesystem (a loop-mounted image in the
test's temp dir) as the store's disk, fills it — with namespace operations,
with data — and checks that every refused call gets
ENOSPC cleanly, that fsync'd data survives, that df reports what writes can
really use, and that the store remounts; a growing truncate far beyond the
disk is a hole that takes no space. The WAL (4 x 64 MiB) is
preallocated, so the image is 400 MiB.

The second half takes every class of space-consuming operation in turn
(fsync'd appends, mkdir, setxattr, symlinks, growing truncates with appends
after them, a truncate whose hole is stored after the disk filled, deleting
and rewriting) and ends each with the same proof: ENOSPC and nothing else,
fsync'd data intact, clean unmount, `blazectl fsck` clean, the store mounts
again, and once files are deleted their room is written again."""
import ctypes
import errno
import json
import os
import subprocess
import time

import pytest

from conftest import WRITEBACK

IMAGE_MB = 400
OPTS = "max_inflight_mb=16"


@pytest.fixture
def small_disk(make_mount, workdir):
    """A Mount whose store directory is a fresh ext4 filesystem.

    Its image lives in a tmpfs of its own: these tests make thousands of
    checkpoints and fsyncs, and on a CI machine whose disk other jobs keep
    busy an image on that disk made one of them take 20 minutes. On tmpfs
    an fsync of the ext4 still goes through the loop device, at memory
    speed; what is tested is the daemon, not the host's disk."""
    m = make_mount(opts=OPTS)
    ram = os.path.join(workdir, "ram")
    os.makedirs(ram)
    os.makedirs(m.store)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % (IMAGE_MB + 8), "tmpfs", ram],
                       capture_output=True)
    on_ram = r.returncode == 0  # else the image goes on the work directory's disk
    img = os.path.join(ram, "disk.img")
    try:
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
    finally:
        if os.path.exists(img):
            os.unlink(img)  # the loop device was detached by umount (autoclear)
        if on_ram:
            subprocess.run(["umount", "-l", ram], capture_output=True)


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


def test_small_files_are_charged_what_they_take(small_disk):
    """The reserve holds room for the next checkpoint's worst case, which
    grows by a tree path per created file; a create that finds the disk
    short while that room could come back has the checkpoint made and goes
    on (as ext4 commits its journal before it says ENOSPC). Before: 2,463
    files of 6 bytes, then ENOSPC with 81 MB free and nothing stored."""
    m, empty = start_empty(small_disk)
    n = 12000
    assert n * 72 * 1024 > empty, "the disk is too large for this test: %d" % empty
    for i in range(n):
        with open(m.path("f%05d" % i), "w") as f:
            f.write("hello\n")
    s = stats(m)
    assert s["fs"]["space_reclaims"] > 0, s["fs"]
    assert s["error"] == 0 and s["fs"]["failed"] is False, s
    # df then shows room again (the reserve still holds up to ~33 MiB for
    # the open chunks' tails of buffered small files: store_space)
    assert avail(m) > (8 << 20), (avail(m), empty)
    assert m.stop() == 0, m.logtext()
    fsck(m)
    m.start()
    assert len([x for x in os.listdir(m.mnt) if x.startswith("f")]) == n
    with open(m.path("f%05d" % (n - 1))) as f:
        assert f.read() == "hello\n"


def test_removed_symlinks_give_room_back_while_mounted(small_disk):
    """A disk filled with namespace (symlinks, no data): removing some of
    them gives their room back without a remount -- df shows it and the
    next addition succeeds at once."""
    m = small_disk.start()
    target = "t" * 4000
    made = 0
    with pytest.raises(OSError) as ei:
        for i in range(100000):
            os.symlink(target + str(i), m.path("s%05d" % i))
            made += 1
    assert ei.value.errno == errno.ENOSPC, ei.value
    assert avail(m) < (8 << 20), avail(m)
    for i in range(made // 2):
        os.unlink(m.path("s%05d" % i))
    assert avail(m) > (8 << 20), (avail(m), m.logtext())
    os.symlink(target, m.path("after"))
    os.mkdir(m.path("dir"))
    assert m.stop() == 0, m.logtext()
    fsck(m)
    m.start()
    assert os.readlink(m.path("after")) == target
    assert len([n for n in os.listdir(m.mnt) if n.startswith("s")]) == made - made // 2


def test_what_readers_see_after_enospc_is_what_is_stored(small_disk):
    """Appends past the point where the disk fills, with no fsync in
    between (with the writeback cache the kernel acknowledges write() and
    only its writeback meets ENOSPC): once the error has reached the writer,
    what the file shows through the mount is what the store holds after a
    remount, fsync'd data included, followed at most by zeros where the
    kernel's size still covers refused bytes: never bytes that are not
    stored, whatever a retried fsync returns. Before: the
    kernel kept showing the refused bytes until its cache was dropped, the
    catch-up thread stored some of them behind the reserve's back, and 6 MB
    a retried fsync had \"confirmed\" vanished after a remount."""
    m, empty = start_empty(small_disk)
    durable = fill_data(m, "fill", 24 << 20)
    piece = os.urandom(1 << 20)
    fd = os.open(m.path("fill"), os.O_WRONLY | os.O_APPEND)
    err = None
    try:
        for _ in range(4 * (empty >> 20) + 64):
            os.write(fd, piece)
    except OSError as e:
        err = e
    try:
        os.fsync(fd)
    except OSError as e:
        err = err or e
    assert err is not None and err.errno == errno.ENOSPC, err
    retried_ok = True
    try:
        os.fsync(fd)  # the kernel reports a writeback error once
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
        retried_ok = False
    try:
        os.close(fd)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    with open(m.path("fill"), "rb") as f:  # open waits for the dropped pages
        shown = f.read()
    assert len(shown) >= durable
    assert m.stop() == 0, m.logtext()
    fsck(m)
    m.start()
    with open(m.path("fill"), "rb") as f:
        stored = f.read()
    assert len(stored) >= durable
    assert stored[:durable] == CHUNK * (durable // len(CHUNK))
    # readers saw stored bytes, then (where the kernel's size still covers
    # refused bytes) zeros -- never bytes the store does not hold
    assert len(shown) >= len(stored), (len(stored), len(shown))
    assert shown[:len(stored)] == stored, retried_ok
    assert shown[len(stored):].count(0) == len(shown) - len(stored)
    s = stats(m)
    assert s["error"] == 0 and s["fs"]["failed"] is False, s


def sync_file_range(fd, off, n):
    """sync_file_range(2) WAIT_BEFORE | WRITE | WAIT_AFTER: the kernel writes
    those dirty pages back (no FUSE fsync: the daemon tells no writer)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    if libc.sync_file_range(fd, off, n, 7) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def test_pages_after_a_refused_one_are_refused_until_told(small_disk):
    """Writeback cache: a page refused for lack of space, then room comes
    back (a file deleted) before the writer has heard of the refusal, then
    the kernel writes back the pages after it. They must be refused too:
    the file stays a prefix of what was written. Before: they were stored,
    with the refused range as zeros in the middle of the file (a 1 MiB run
    of zeros between two fsyncs, 1 run in 10 of
    test_data_fills_disk_enospc_and_df_is_true)."""
    if not WRITEBACK:
        pytest.skip("without the writeback cache write() itself gets ENOSPC")
    m, empty = start_empty(small_disk)
    room = fsynced_file(m, "room", 32 << 20)
    durable = fill_data(m, "fill", 0)
    fd = os.open(m.path("fill"), os.O_WRONLY | os.O_APPEND)
    try:
        end = os.fstat(fd).st_size
        for _ in range(16):
            os.write(fd, CHUNK)  # into the kernel's cache
        try:  # the first 12 MiB written back: the disk is full
            sync_file_range(fd, end, 12 << 20)
        except OSError as e:
            assert e.errno in (errno.ENOSPC, errno.EIO), e
        os.unlink(m.path("room"))  # room comes back (a short charge checkpoints)
        try:  # the rest written back: the writer has not been told yet
            sync_file_range(fd, end + (12 << 20), 4 << 20)
        except OSError as e:
            assert e.errno in (errno.ENOSPC, errno.EIO), e
        with pytest.raises(OSError) as ei:
            os.fsync(fd)
        assert ei.value.errno == errno.ENOSPC, ei.value
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert m.stop() == 0, m.logtext()
    m.start()
    size = os.path.getsize(m.path("fill"))
    assert size >= durable
    with open(m.path("fill"), "rb") as f:
        for i in range((size + len(CHUNK) - 1) // len(CHUNK)):
            piece = f.read(len(CHUNK))
            assert piece == CHUNK[:len(piece)], (i, durable // len(CHUNK), size)
    # and once told, the writer goes on: its bytes are stored
    with open(m.path("fill"), "ab") as f:
        f.write(b"after\n")
        f.flush()
        os.fsync(f.fileno())
    assert m.stop() == 0, m.logtext()
    fsck(m)
    m.start()
    with open(m.path("fill"), "rb") as f:
        f.seek(-6, os.SEEK_END)
        assert f.read() == b"after\n"
    assert m.stop() == 0, m.logtext()
    del room


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
    # disk was sampled, which the reserve covers), and little is left once
    # writes are refused (data accepted but not yet applied when the disk
    # was sampled counts as used then: the last MiB may be refused while
    # that data was applying); namespace additions use that little, then
    # get ENOSPC too
    assert avail * 0.9 <= written <= avail + (16 << 20), (written, avail)
    sv = os.statvfs(m.mnt)
    assert sv.f_bavail * sv.f_frsize < (4 << 20)
    with pytest.raises(OSError) as ei:
        for k in range(100000):
            os.mkdir(m.path("d%d" % k))
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


# ---------------------------------------------------------------------------
# Every class of space-consuming operation on a full disk (issue 11.5): the
# disk is first filled with data to within LEFT bytes of what df says is
# available, then the operation class itself fills the rest. Each must end
# in ENOSPC (never EIO, never a read-only store), and then: fsync'd data is
# intact, the store unmounts cleanly, `blazectl fsck` finds it clean, it
# mounts again, and deleting files gives room that writes use again.

BLAZECTL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    os.environ.get("BLAZEFS_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "fs",
                                               "blazefs"))))), "tools", "blazectl")
LEFT = 4 << 20
CHUNK = os.urandom(1 << 20)  # incompressible


def avail(m):
    sv = os.statvfs(m.mnt)
    return sv.f_bavail * sv.f_frsize


def fill_data(m, name, leave):
    """Appends incompressible MiBs to name (fsync'd every 8 MiB) until df
    says at most `leave` bytes are available or a write is refused; returns
    the bytes known durable."""
    fd = os.open(m.path(name), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    done = durable = 0
    try:
        for _ in range(2 * IMAGE_MB):  # the disk holds less than IMAGE_MB MiB
            left = avail(m)
            if left <= leave + len(CHUNK):
                break
            try:
                os.write(fd, CHUNK)
                done += len(CHUNK)
                # near the end, fsync each MiB: with the writeback cache
                # the kernel's dirty pages are not known to df until they
                # are written back
                if done % (8 << 20) == 0 or left < leave + (24 << 20):
                    os.fsync(fd)
                    durable = done
            except OSError as e:
                assert e.errno == errno.ENOSPC or (WRITEBACK and e.errno in (errno.EIO, errno.EPERM)), e
                break
        else:
            raise AssertionError("%d MiB written and df still says %d bytes available" % (done >> 20, left))
        try:
            os.fsync(fd)
            durable = done
        except OSError as e:
            assert e.errno == errno.ENOSPC or (WRITEBACK and e.errno in (errno.EIO, errno.EPERM)), e
    finally:
        try:
            os.close(fd)  # with the writeback cache, a refusal may surface here
        except OSError as e:
            assert e.errno == errno.ENOSPC or (WRITEBACK and e.errno in (errno.EIO, errno.EPERM)), e
    return durable


def until_refused(call, limit):
    """Runs call(i) for i = 0.. until it raises; returns (count, error)."""
    for i in range(limit):
        try:
            call(i)
        except OSError as e:
            return i, e
    return limit, None


def check_durable_prefix(m, name, durable):
    with open(m.path(name), "rb") as f:
        for i in range(durable >> 20):
            assert f.read(1 << 20) == CHUNK, (name, i)


def fsck(m):
    r = subprocess.run([BLAZECTL, "fsck", m.store], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "fsck exit %d:\n%s\n%s" % (r.returncode, r.stdout[-3000:], r.stderr[-2000:])
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith(("error:", "warning:"))], r.stdout[-3000:]


def after_full(m, fill_name, durable, free_names=(), empty_avail=0):
    """The common end of every full-disk test: no failure, clean unmount,
    fsck clean, mounts again with the fsync'd data, and once files are
    deleted writes work again."""
    s = stats(m)
    assert s["error"] == 0 and s["fs"]["failed"] is False, s
    assert avail(m) < (8 << 20), avail(m)
    assert m.stop() == 0, m.logtext()
    fsck(m)
    m.start()
    check_durable_prefix(m, fill_name, durable)
    for n in (fill_name,) + tuple(free_names):
        os.unlink(m.path(n))
    # the deleted files' space is reusable after the checkpoint that drops
    # them is durable (FORMAT.md §7): an unmount makes one
    assert m.stop() == 0, m.logtext()
    m.start()
    assert avail(m) > empty_avail * 0.8, (avail(m), empty_avail)
    again = fsynced_file(m, "again", 32 << 20)
    assert m.stop() == 0, m.logtext()
    fsck(m)
    m.start()
    with open(m.path("again"), "rb") as f:
        assert f.read() == again
    assert m.stop() == 0, m.logtext()


def start_empty(small_disk):
    """Starts the mount; returns it and what df says an empty store has."""
    m = small_disk.start()
    return m, avail(m)


def test_fsynced_appends_fill_disk(small_disk):
    """write() + fsync() of 64 KiB each until the disk is full: the refusal
    is ENOSPC at the write (or, with the writeback cache, at the fsync), and
    every fsync that returned 0 holds after remount."""
    m, empty = start_empty(small_disk)
    durable = fill_data(m, "fill", 16 << 20)
    piece = os.urandom(64 << 10)
    fd = os.open(m.path("log"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    synced = 0
    err = None
    try:
        for i in range(4096):
            try:
                os.write(fd, piece)
                os.fsync(fd)
                synced += 1
            except OSError as e:
                err = e
                break
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    assert err is not None, "the disk never filled"
    assert err.errno == errno.ENOSPC, err
    assert synced > 64
    with open(m.path("log"), "rb") as f:
        for i in range(synced):
            assert f.read(len(piece)) == piece, i
    assert m.stop() == 0, m.logtext()
    m.start()
    assert os.path.getsize(m.path("log")) >= synced * len(piece)
    with open(m.path("log"), "rb") as f:
        for i in range(synced):
            assert f.read(len(piece)) == piece, i
    after_full(m, "fill", durable, ("log",), empty)


def test_mkdir_fills_disk(small_disk):
    m, empty = start_empty(small_disk)
    durable = fill_data(m, "fill", LEFT)
    os.mkdir(m.path("d"))
    made, err = until_refused(lambda i: os.mkdir(m.path("d", "%06d" % i)), 400000)
    assert err is not None and err.errno == errno.ENOSPC, (made, err)
    assert os.path.isdir(m.path("d", "%06d" % (made - 1)))
    after_full(m, "fill", durable, (), empty)


def test_setxattr_fills_disk(small_disk):
    m, empty = start_empty(small_disk)
    durable = fill_data(m, "fill", LEFT)
    value = os.urandom(4000)

    def setx(i):
        f = m.path("x%04d" % (i // 15))
        if i % 15 == 0:
            open(f, "wb").close()
        os.setxattr(f, "user.k%02d" % (i % 15), value)

    made, err = until_refused(setx, 100000)
    assert err is not None and err.errno == errno.ENOSPC, (made, err)
    assert made > 100
    last = m.path("x%04d" % ((made - 1) // 15))
    assert os.getxattr(last, "user.k%02d" % ((made - 1) % 15)) == value
    after_full(m, "fill", durable, (), empty)


def test_symlinks_fill_disk_then_fsck(small_disk):
    m, empty = start_empty(small_disk)
    durable = fill_data(m, "fill", LEFT)
    target = "t" * 4000
    made, err = until_refused(lambda i: os.symlink(target, m.path("s%06d" % i)), 100000)
    assert err is not None and err.errno == errno.ENOSPC, (made, err)
    assert made > 100
    after_full(m, "fill", durable, (), empty)


def test_growing_truncates_and_appends_on_full_disk(small_disk):
    """Holes on a full disk: growing truncates and the appends after them
    are either done or refused with ENOSPC, never anything else, and the
    store stays sound."""
    m, empty = start_empty(small_disk)
    durable = fill_data(m, "fill", LEFT)
    piece = os.urandom(256 << 10)
    sizes = {}

    def grow(i):
        name = "h%04d" % i
        with open(m.path(name), "wb"):
            pass
        os.truncate(m.path(name), (i + 1) << 30)  # a hole of i+1 GiB
        sizes[name] = (i + 1) << 30
        fd = os.open(m.path(name), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, piece)
            os.fsync(fd)
        finally:
            os.close(fd)
        sizes[name] += len(piece)

    made, err = until_refused(grow, 2000)
    assert err is not None and err.errno == errno.ENOSPC, (made, err)
    assert made > 2
    # with the disk full, a growing truncate of an existing file is still
    # either a hole or ENOSPC
    try:
        os.truncate(m.path("h0000"), 1 << 40)
        sizes["h0000"] = 1 << 40
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    assert m.stop() == 0, m.logtext()
    m.start()
    for name, size in sizes.items():
        assert os.path.getsize(m.path(name)) == size, name
    with open(m.path("h0001"), "rb") as f:
        f.seek(1 << 30)
        assert f.read(4096) == bytes(4096)
        f.seek(2 << 30)
        assert f.read() == piece
    after_full(m, "fill", durable, tuple(sizes), empty)


def test_delete_then_rewrite(small_disk):
    """Fill, delete, fill again, three times: the deleted files' room comes
    back every round (the store does not grow past the disk), and what df
    says is available is what the next round writes."""
    m = small_disk.start()
    kept = fsynced_file(m, "kept", 1 << 20)
    rounds = []
    for r in range(3):
        before = avail(m)
        durable = fill_data(m, "r%d" % r, 0)
        assert durable >= before * 0.8, (r, durable, before)
        rounds.append(durable)
        s = stats(m)
        assert s["error"] == 0 and s["fs"]["failed"] is False, s
        os.unlink(m.path("r%d" % r))
        # the room comes back at the checkpoint that drops the file
        assert m.stop() == 0, m.logtext()
        fsck(m)
        m.start()
    assert min(rounds) >= max(rounds) * 0.8, rounds
    with open(m.path("kept"), "rb") as f:
        assert f.read() == kept
    assert m.stop() == 0, m.logtext()


def test_truncate_survives_the_disk_filling_after_it(small_disk):
    """A growing truncate that returned 0 stays, even when the disk fills
    before its hole is stored (with the writeback cache the hole is stored
    at the next flush, fsync or unmount: it was charged when the truncate
    returned, and is not refused then)."""
    m, empty = start_empty(small_disk)
    durable = fill_data(m, "fill", 24 << 20)
    with open(m.path("h"), "wb"):
        pass
    os.truncate(m.path("h"), 1 << 30)
    os.truncate(m.path("h"), 2 << 30)
    more = fill_data(m, "fill2", 0)
    fd = os.open(m.path("h"), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert os.path.getsize(m.path("h")) == 2 << 30
    assert m.stop() == 0, m.logtext()
    m.start()
    assert os.path.getsize(m.path("h")) == 2 << 30
    with open(m.path("h"), "rb") as f:
        f.seek((2 << 30) - 4096)
        assert f.read() == bytes(4096)
    check_durable_prefix(m, "fill2", more)
    after_full(m, "fill", durable, ("fill2", "h"), empty)


def test_recovery_on_a_disk_filled_meanwhile_mounts_read_only(small_disk):
    """The daemon dies with fsync'd data only in the WAL; something else
    fills the store's disk; the next mount's recovery (replay, then a
    checkpoint) has no room: it mounts READ-ONLY and says why, the data is
    readable; once space is freed the store mounts read-write, fsck clean."""
    m = small_disk.start(opts=OPTS + ",sync_interval_ms=1")
    data = fsynced_file(m, "kept", 24 << 20)
    names = []
    for i in range(200):
        os.symlink("t" * 4000, m.path("s%03d" % i))
        names.append("s%03d" % i)
    fd = os.open(m.path("kept"), os.O_RDONLY)
    try:
        os.fsync(fd)  # the symlinks are durable too (one WAL sync covers all)
    finally:
        os.close(fd)
    m.kill9()
    # fill the store's disk from outside blazefs
    filler = os.path.join(m.store, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(CHUNK)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    with open(filler, "ab") as f:  # the last blocks
        try:
            while True:
                f.write(b"x" * 4096)
                f.flush()
        except OSError:
            pass
    m.start()
    log = m.logtext()
    ro = "READ-ONLY" in log
    with open(m.path("kept"), "rb") as f:
        assert f.read() == data
    assert sorted(n for n in os.listdir(m.mnt) if n.startswith("s")) == names
    if ro:
        with pytest.raises(OSError) as ei:
            os.mkdir(m.path("d"))
        assert ei.value.errno == errno.EROFS
    assert m.stop() == 0, m.logtext()
    os.unlink(filler)
    m.start()
    assert "READ-ONLY" not in m.logtext()[len(log):]
    with open(m.path("kept"), "rb") as f:
        assert f.read() == data
    os.mkdir(m.path("d"))
    assert m.stop() == 0, m.logtext()
    fsck(m)
    # the recovery above had no room (the test is only meaningful then)
    assert ro, log


def write_until_ok(m, name, piece, deadline_s=60):
    """Appends piece to name (write + fsync) until one succeeds or the
    deadline passes; refusals must be ENOSPC. Returns True on success.
    (The room a deletion frees comes with the checkpoint the daemon makes
    for it, asynchronously: wait for that state, assert nothing on time.)"""
    end = time.monotonic() + deadline_s
    while True:
        fd = os.open(m.path(name), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, piece)
            os.fsync(fd)
            return True
        except OSError as e:
            assert e.errno == errno.ENOSPC or (WRITEBACK and e.errno in (errno.EIO, errno.EPERM)), e
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        if time.monotonic() > end:
            return False
        time.sleep(0.05)


def test_deleting_a_few_files_gives_room_while_mounted(small_disk):
    """On a full disk, deleting a small share of the store (below the
    dead-space threshold that triggers a checkpoint by itself) gives its
    room back without a remount: writes work again, up to about what was
    deleted."""
    m, empty = start_empty(small_disk)
    small = [fsynced_file(m, "small%d" % i, 2 << 20) for i in range(3)]
    open(m.path("after"), "wb").close()
    durable = fill_data(m, "fill", 0)
    piece = os.urandom(1 << 20)
    assert not write_until_ok(m, "after", piece, deadline_s=0), "the disk is not full"
    for i in range(3):
        os.unlink(m.path("small%d" % i))
    assert write_until_ok(m, "after", piece), "the deleted files' room never came back: %s" % m.logtext()
    more = fill_data(m, "after", 0)
    assert more >= (3 << 20), more
    after_full(m, "fill", durable, ("after",), empty)
    del small


@pytest.mark.parametrize("filler", ["data", "symlinks"])
def test_crash_on_full_disk_recovers_read_write(small_disk, filler):
    """The reserve covers recovery: the daemon dies (kill -9) on a disk its
    own writes filled, with fsync'd data in the WAL not yet checkpointed;
    the next mount recovers read-write (no READ-ONLY fallback), with that
    data, and fsck finds the store clean."""
    m, empty = start_empty(small_disk)
    kept = fsynced_file(m, "kept", 4 << 20)
    if filler == "data":
        durable = fill_data(m, "fill", 0)
    else:
        durable = fill_data(m, "fill", 24 << 20)
        target = "t" * 4000
        made, err = until_refused(lambda i: os.symlink(target, m.path("s%06d" % i)), 100000)
        assert err is not None and err.errno == errno.ENOSPC, (made, err)
        fd = os.open(m.path("kept"), os.O_RDONLY)
        try:
            os.fsync(fd)  # one WAL sync covers the symlinks too
        finally:
            os.close(fd)
    m.kill9()
    m.start()
    log = m.logtext()
    assert "READ-ONLY" not in log, log
    with open(m.path("kept"), "rb") as f:
        assert f.read() == kept
    check_durable_prefix(m, "fill", durable)
    if filler == "symlinks":
        assert os.readlink(m.path("s%06d" % (made - 1))) == target
    assert m.stop() == 0, m.logtext()
    fsck(m)
