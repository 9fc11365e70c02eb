"""POSIX / ext4 semantics that pjdfstest-style checks found different (issue
12), one test per fixed difference: unlinked-but-referenced files keep their
data, failed renames change nothing, O_TRUNC clears setuid and updates the
times, same-size truncate updates the times, '..' inode numbers, the times of
a new store's root, EFBIG above the maximum file size, interruptible growing
truncates, and the mount point must be a directory.

These are our own checks, written in the spirit of pjdfstest (no third-party
code). Every outcome checked here is the same on ext4.
"""
import ctypes
import errno
import json
import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from conftest import _libc, BIN, WRITEBACK, Mount, RENAME_EXCHANGE, RENAME_NOREPLACE, read, renameat2, write

MAX_FILE_BYTES = 16 << 40  # docs/FILESYSTEM.md "Maximum file size"


def as_nobody(cmd):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", cmd],
                          capture_output=True, timeout=60)


def wait_applied(p):
    for _ in range(500):
        with open(p, "rb") as f:
            os.fsync(f.fileno())
        if int(os.getxattr(p, "user.blazefs.pending_bytes")) == 0:
            return
        time.sleep(0.02)
    raise AssertionError("not applied: " + p)


# ---- unlinked while the kernel still references the inode (12.1) ----

def test_open_racing_unlink_keeps_data(bz):
    """Open(O_APPEND) racing unlink: whichever wins, a descriptor that was
    opened sees the whole file and can append to it (the outcome of each
    round is checked, not its timing)."""
    body = b"x" * 200
    for i in range(150):
        p = bz.path("race%d" % i)
        write(p, body)
        box = {}
        go = threading.Barrier(2)

        def opener():
            go.wait()
            try:
                box["fd"] = os.open(p, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                box["fd"] = None

        t = threading.Thread(target=opener)
        t.start()
        go.wait()
        os.unlink(p)
        t.join()
        fd = box["fd"]
        if fd is None:
            continue
        try:
            assert os.fstat(fd).st_size == 200
            assert os.pread(fd, 1000, 0) == body, "round %d: data of an open file lost" % i
            assert os.write(fd, b"y" * 100) == 100
            os.fsync(fd)
            assert os.pread(fd, 1000, 0) == body + b"y" * 100
            assert os.fstat(fd).st_size == 300
        finally:
            os.close(fd)
    # the unlinks really removed the files
    assert [n for n in os.listdir(bz.mnt) if n.startswith("race")] == []


def test_o_path_reopen_after_unlink(bz):
    """An O_PATH descriptor (no FUSE open) keeps a kernel reference; reopening
    it through /proc/self/fd after the unlink reads and appends the data."""
    p = bz.path("op")
    write(p, b"a" * 200)
    pfd = os.open(p, os.O_PATH)
    try:
        os.unlink(p)
        fd = os.open("/proc/self/fd/%d" % pfd, os.O_RDWR | os.O_APPEND)
        try:
            assert os.fstat(fd).st_nlink == 0
            assert os.pread(fd, 1000, 0) == b"a" * 200
            os.write(fd, b"b" * 10)
            os.fsync(fd)
            assert os.pread(fd, 1000, 0) == b"a" * 200 + b"b" * 10
        finally:
            os.close(fd)
        # closed but still referenced by the O_PATH descriptor: still there
        fd = os.open("/proc/self/fd/%d" % pfd, os.O_RDONLY)
        try:
            assert os.pread(fd, 1000, 0) == b"a" * 200 + b"b" * 10
        finally:
            os.close(fd)
    finally:
        os.close(pfd)
    assert sorted(os.listdir(bz.path(".blazefs"))) == ["metrics", "stats"]


def test_replaced_by_rename_while_referenced(bz):
    """rename over a file that is only looked up (O_PATH), then reopen."""
    p, q = bz.path("old"), bz.path("new")
    write(p, b"old data")
    write(q, b"new data")
    pfd = os.open(p, os.O_PATH)
    try:
        os.rename(q, p)
        # once the rename is applied to the store (applies are in order), the
        # replaced file's data must still be there
        write(p, b"+", "ab")
        wait_applied(p)
        fd = os.open("/proc/self/fd/%d" % pfd, os.O_RDONLY)
        try:
            assert os.pread(fd, 100, 0) == b"old data"
        finally:
            os.close(fd)
    finally:
        os.close(pfd)
    assert read(p) == b"new data+"


# ---- a failed rename changes nothing (12.7) ----

def snapshot(root):
    """Everything a failed rename could change: names, inodes, link counts,
    sizes, times, contents."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (dirpath == root and d == ".blazefs")]
        for n in sorted(dirnames + filenames):
            path = os.path.join(dirpath, n)
            st = os.lstat(path)
            data = read(path) if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(path, root)] = (st.st_ino, st.st_mode, st.st_nlink, st.st_size,
                                               st.st_mtime_ns, st.st_ctime_ns, data)
    st = os.stat(root)
    out["."] = (st.st_ino, st.st_nlink, st.st_mtime_ns, st.st_ctime_ns)
    return out


@pytest.mark.parametrize("held", [False, True])
def test_failed_rename_changes_nothing(bz, held):
    write(bz.path("f"), b"file f")
    write(bz.path("g"), b"file g")
    os.mkdir(bz.path("d"))
    os.mkdir(bz.path("full"))
    write(bz.path("full", "inside"), b"x")
    os.mkdir(bz.path("d", "sub"))
    # held: the targets are open, so a rename over them would park them
    fds = [os.open(bz.path(n), os.O_RDONLY) for n in ("f", "g")] if held else []
    try:
        cases = [
            (bz.path("f"), bz.path("g"), RENAME_NOREPLACE, errno.EEXIST),
            (bz.path("missing"), bz.path("g"), 0, errno.ENOENT),
            (bz.path("missing"), bz.path("g"), RENAME_EXCHANGE, errno.ENOENT),
            (bz.path("f"), bz.path("nothere"), RENAME_EXCHANGE, errno.ENOENT),
            (bz.path("d"), bz.path("full"), 0, errno.ENOTEMPTY),
            (bz.path("d"), bz.path("g"), 0, errno.ENOTDIR),
            (bz.path("f"), bz.path("d"), 0, errno.EISDIR),
            (bz.path("d"), bz.path("d", "sub", "x"), 0, errno.EINVAL),
            (bz.path("f", "x"), bz.path("g"), 0, errno.ENOTDIR),
        ]
        before = snapshot(bz.mnt)
        for src, dst, flags, err in cases:
            with pytest.raises(OSError) as ei:
                renameat2(src, dst, flags)
            assert ei.value.errno == err, (src, dst, flags, ei.value)
            assert snapshot(bz.mnt) == before, (src, dst, flags)
        # rename of a name onto itself / a hard link of itself: success, no change
        os.rename(bz.path("g"), bz.path("g"))
        os.link(bz.path("f"), bz.path("f2"))
        before = snapshot(bz.mnt)
        os.rename(bz.path("f"), bz.path("f2"))
        assert snapshot(bz.mnt) == before
        for fd in fds:
            assert os.fstat(fd).st_nlink >= 1
        assert sorted(os.listdir(bz.path(".blazefs"))) == ["metrics", "stats"]
    finally:
        for fd in fds:
            os.close(fd)
    bz.stop()
    bz.start()
    assert read(bz.path("f")) == b"file f" and read(bz.path("g")) == b"file g"
    assert read(bz.path("f2")) == b"file f"
    assert os.listdir(bz.path("full")) == ["inside"]


# ---- O_TRUNC and truncate: setuid and times (12.4, POSIX open/ftruncate) ----

@pytest.mark.parametrize("mode", [0o4777, 0o6777, 0o6767])
def test_o_trunc_by_other_user_clears_suid(make_mount, mode):
    m = make_mount(opts="allow_other").start()
    p = m.path("s")
    write(p, b"")
    os.chmod(p, mode)
    assert as_nobody(f": > {p}").returncode == 0
    kill = stat.S_ISUID | (stat.S_ISGID if mode & stat.S_IXGRP else 0)
    assert os.stat(p).st_mode & 0o7777 == mode & ~kill
    # root keeps them (CAP_FSETID), as on ext4
    os.chmod(p, mode)
    with open(p, "wb"):
        pass
    assert os.stat(p).st_mode & 0o7777 == mode
    m.stop()
    m.start()
    assert os.stat(p).st_mode & 0o7777 == mode


def _age(p):
    """Put mtime in the past and let the clock move past the ctime."""
    os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    st = os.stat(p)
    time.sleep(0.01)  # ctime must be able to grow: not a timing assertion
    return st


def _check_touched(p, old):
    st = os.stat(p)
    assert st.st_mtime_ns > old.st_mtime_ns, (st, old)
    assert st.st_ctime_ns > old.st_ctime_ns, (st, old)
    return st


def test_o_trunc_of_empty_file_updates_times(bz):
    p = bz.path("e")
    write(p, b"")
    old = _age(p)
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    st = _check_touched(p, old)
    bz.stop()
    bz.start()
    assert os.stat(p).st_mtime_ns == st.st_mtime_ns


def test_truncate_to_current_size_updates_times(bz):
    p = bz.path("t")
    write(p, b"12345")
    if not WRITEBACK:
        # With the writeback cache the kernel's own mtime/ctime of a cached
        # regular file are authoritative (it never takes them from the
        # daemon), and truncate(2) -- unlike ftruncate(2) -- passes no time
        # update along when the size does not change: out of our reach.
        old = _age(p)
        os.truncate(p, 5)
        _check_touched(p, old)
    old = _age(p)
    fd = os.open(p, os.O_WRONLY)
    try:
        os.ftruncate(fd, 5)
        _check_touched(p, old)
    finally:
        os.close(fd)
    st = os.stat(p)
    assert st.st_size == 5 and read(p) == b"12345"
    bz.stop()
    bz.start()
    assert os.stat(p).st_mtime_ns == st.st_mtime_ns


# ---- maximum file size ----

@pytest.mark.parametrize("kind", ["file", "dir", "fifo", "symlink"])
def test_chown_to_same_owner_updates_ctime(bz, kind):
    """chown(f, -1, -1) changes nothing but ctime, on every kind of inode
    (as ext4; pjdfstest chown/00.t checks it); the new ctime survives a
    remount."""
    p = bz.path("x")
    if kind == "file":
        write(p, b"data")
    elif kind == "dir":
        os.mkdir(p)
    elif kind == "fifo":
        os.mkfifo(p)
    else:
        os.symlink("target", p)
    old = os.lstat(p)
    time.sleep(0.01)  # ctime must be able to grow: not a timing assertion
    os.chown(p, -1, -1, follow_symlinks=False)
    st = os.lstat(p)
    assert st.st_ctime_ns > old.st_ctime_ns, (st, old)
    assert (st.st_uid, st.st_gid, st.st_mode, st.st_mtime_ns) == (old.st_uid, old.st_gid, old.st_mode,
                                                                 old.st_mtime_ns)
    bz.stop()
    bz.start()
    assert os.lstat(p).st_ctime_ns == st.st_ctime_ns


def test_efbig_above_max_file_size(bz):
    p = bz.path("big")
    write(p, b"abc")
    for size in (999999999999999, MAX_FILE_BYTES + 1):
        with pytest.raises(OSError) as ei:
            os.truncate(p, size)
        assert ei.value.errno == errno.EFBIG
    r = subprocess.run(["truncate", "-s", "999999999999999", p], capture_output=True, timeout=60)
    assert r.returncode != 0 and b"too large" in r.stderr, r
    assert os.stat(p).st_size == 3 and read(p) == b"abc"
    if WRITEBACK:
        # the kernel caches the write (its own limit is MAX_LFS_FILESIZE);
        # the refusal surfaces at fsync/close -- what the kernel then keeps
        # of the refused page is the writeback cache's business (issue 12.2)
        fd = os.open(bz.path("new"), os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.pwrite(fd, b"x", 10 ** 15)
            with pytest.raises(OSError) as ei:
                os.fsync(fd)
            assert ei.value.errno in (errno.EFBIG, errno.EIO)
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        return
    # a write past the maximum on a new file (its gap would be zero-filled)
    fd = os.open(bz.path("new"), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        with pytest.raises(OSError) as ei:
            os.pwrite(fd, b"x", 10 ** 15)
        assert ei.value.errno == errno.EFBIG
        with pytest.raises(OSError) as ei:
            os.pwrite(fd, b"x", MAX_FILE_BYTES)
        assert ei.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    assert os.stat(bz.path("new")).st_size == 0
    assert os.stat(p).st_size == 3 and read(p) == b"abc"


def test_growing_truncate_is_a_hole(bz):
    """A growing truncate appends a hole (storage v2): no zero fill runs, so
    there is nothing to interrupt; 1 TiB takes no bytes in and no space,
    reads as zeros, and the file stays usable (appends land at the end)."""
    p = bz.path("grow")
    write(p, b"")
    def bytes_in():
        return json.loads(read(bz.path(".blazefs", "stats")))["bytes_in"]

    start = bytes_in()
    subprocess.run(["truncate", "-s", str(1 << 40), p], check=True)
    assert os.stat(p).st_size == 1 << 40
    assert bytes_in() - start < (1 << 20)
    with open(p, "rb") as f:
        f.seek(1 << 39)
        assert f.read(4096) == bytes(4096)
    write(p, b"tail", "ab")
    assert os.stat(p).st_size == (1 << 40) + 4


# ---- directories: '..' and the root's times (12.9) ----

class _Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


def dirents(path):
    """name -> d_ino as readdir(3) returns them (os.listdir drops . and ..)."""
    _libc.opendir.restype = ctypes.c_void_p
    _libc.readdir64.restype = ctypes.POINTER(_Dirent)
    _libc.readdir64.argtypes = [ctypes.c_void_p]
    _libc.closedir.argtypes = [ctypes.c_void_p]
    d = _libc.opendir(path.encode())
    assert d, path
    out = {}
    try:
        while True:
            e = _libc.readdir64(d)
            if not e:
                break
            out[e.contents.d_name.decode()] = e.contents.d_ino
    finally:
        _libc.closedir(d)
    return out


def test_dotdot_inode(bz):
    os.makedirs(bz.path("a", "b"))
    root = os.stat(bz.mnt).st_ino
    a = os.stat(bz.path("a")).st_ino
    b = os.stat(bz.path("a", "b")).st_ino
    assert dirents(bz.mnt)["."] == root and dirents(bz.mnt)[".."] == root
    assert dirents(bz.path("a"))["."] == a and dirents(bz.path("a"))[".."] == root
    assert dirents(bz.path("a", "b"))["."] == b and dirents(bz.path("a", "b"))[".."] == a
    os.rename(bz.path("a", "b"), bz.path("b"))
    assert dirents(bz.path("b"))[".."] == root
    bz.stop()
    bz.start()  # parents recomputed from the checkpoint
    assert dirents(bz.path("b"))[".."] == root
    assert dirents(bz.path("a"))[".."] == root


def test_new_store_root_times(make_mount):
    t0 = time.time_ns()
    m = make_mount()
    m.start()
    st = os.stat(m.mnt)
    for t in (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns):
        assert t >= t0 - 2_000_000_000, st  # the creation time, not 1970
    m.stop()
    m.start()
    st2 = os.stat(m.mnt)
    assert (st2.st_mtime_ns, st2.st_ctime_ns) == (st.st_mtime_ns, st.st_ctime_ns)


# ---- the mount point must be a directory (12.5) ----

def test_mount_on_regular_file_refused(workdir):
    store = os.path.join(workdir, "f.store")
    target = os.path.join(workdir, "plainfile")
    write(target, b"not a directory")
    m = Mount(store, target)
    try:
        r = subprocess.run([BIN, "-f", store, target], capture_output=True, timeout=30)
    finally:
        m.stop()  # in case it mounted after all
    assert r.returncode != 0
    assert b"not a directory" in r.stderr.lower(), r.stderr
    assert not os.path.exists(store), "a refused mount created the store"
    assert read(target) == b"not a directory"
    # also without -f (the forking path reports the failure)
    r = subprocess.run([BIN, store, os.path.join(workdir, "missing")], capture_output=True, timeout=30)
    assert r.returncode != 0 and not os.path.exists(store)
