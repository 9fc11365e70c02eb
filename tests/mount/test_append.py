"""Append-only semantics through the real mount with ordinary tools
(DESIGN §2): appends work, every other modification is refused with EPERM
and leaves the content unchanged."""
import errno
import fcntl
import os
import subprocess
import sys
import time

import pytest

from conftest import WRITEBACK, expect_refused


def read(p):
    with open(p, "rb") as f:
        return f.read()


def sh(cmd, **kw):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, **kw)


def same_content(m, p, content):
    """The file still holds exactly content. With the writeback cache the
    kernel acknowledged the refused write itself and keeps its own i_size
    (and cached pages) for the inode until it is evicted, so the check --
    and the next step -- runs on a fresh mount then."""
    if WRITEBACK:
        assert m.stop() == 0
        m.start()
    else:
        drop_cache(p)
    assert read(p) == content
    assert os.stat(p).st_size == len(content)


def drop_cache(p):
    """Evict the file's clean pages (the writeback cache may hold refused bytes)."""
    fd = os.open(p, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def refused_write(fd, fn):
    """fn(fd) must be refused: EPERM at once, or -- with the writeback cache,
    where the kernel acknowledges write() itself -- an error at fsync."""
    if not WRITEBACK:
        expect_refused(fn, fd)
        return
    try:
        fn(fd)
        os.fsync(fd)
    except OSError as e:
        assert e.errno in (errno.EPERM, errno.EIO), e
    else:
        pytest.fail("modification was not refused")


def test_echo_append_1000(bz):
    p = bz.path("log")
    r = sh(f'for i in $(seq 1000); do echo "line $i" >> {p}; done')
    assert r.returncode == 0, r.stderr
    want = b"".join(b"line %d\n" % i for i in range(1, 1001))
    assert read(p) == want
    assert os.stat(p).st_size == len(want)


def test_truncating_redirect_refused(bz):
    p = bz.path("f")
    assert sh(f"echo first > {p}").returncode == 0  # new file: O_TRUNC of an empty file is fine
    r = sh(f"echo x > {p}")
    assert r.returncode != 0
    assert b"not permitted" in r.stderr
    assert read(p) == b"first\n"
    assert sh(f"echo second >> {p}").returncode == 0
    assert read(p) == b"first\nsecond\n"


def test_cp_large_file(bz, workdir):
    src = os.path.join(workdir, "big")
    chunk = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(100):
            # half random, half text-like: both codec paths
            f.write(chunk if i % 2 else ((b"%08d the quick brown fox\n" % i) * 50000)[:1 << 20])
    dst = bz.path("big")
    r = subprocess.run(["cp", src, dst], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert os.stat(dst).st_size == os.stat(src).st_size == 100 << 20
    assert subprocess.run(["cmp", src, dst]).returncode == 0
    # within the mount (no copy_file_range support: cp falls back to read/write)
    assert subprocess.run(["cp", dst, bz.path("big2")]).returncode == 0
    assert subprocess.run(["cmp", src, bz.path("big2")]).returncode == 0


def test_cp_sparse_file(bz, workdir):
    src = os.path.join(workdir, "sparse")
    with open(src, "wb") as f:
        f.write(b"a" * 5000)
        f.seek(1 << 20)
        f.write(b"b" * 5000)
        f.seek(3 << 20)
        f.write(b"c" * 10)
        f.truncate(5 << 20)
    assert os.stat(src).st_blocks * 512 < os.stat(src).st_size  # really sparse
    dst = bz.path("sparse")
    r = subprocess.run(["cp", src, dst], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert os.stat(dst).st_size == 5 << 20
    assert subprocess.run(["cmp", src, dst]).returncode == 0
    # and back out again (SEEK_DATA/SEEK_HOLE on blazefs: no holes)
    back = os.path.join(workdir, "back")
    assert subprocess.run(["cp", dst, back]).returncode == 0
    assert subprocess.run(["cmp", src, back]).returncode == 0


def test_dd_append(bz):
    p = bz.path("dd")
    with open(p, "wb") as f:
        f.write(b"head\n")
    r = sh(f"printf 'tail1\\n' | dd of={p} oflag=append conv=notrunc status=none")
    assert r.returncode == 0, r.stderr
    r = sh(f"head -c 100000 /dev/zero | dd of={p} oflag=append conv=notrunc bs=4096 status=none")
    assert r.returncode == 0, r.stderr
    assert read(p) == b"head\ntail1\n" + b"\0" * 100000


def test_tee_append(bz):
    p = bz.path("tee")
    for word in ("one", "two", "three"):
        r = subprocess.run(["tee", "-a", p], input=word.encode() + b"\n", capture_output=True)
        assert r.returncode == 0, r.stderr
    assert read(p) == b"one\ntwo\nthree\n"


def test_cat_concat_append(bz):
    a, b, c = bz.path("a"), bz.path("b"), bz.path("c")
    for p, data in ((a, b"AAA\n" * 1000), (b, b"BBB\n" * 2000), (c, b"CCC\n")):
        with open(p, "wb") as f:
            f.write(data)
    assert sh(f"cat {a} {b} >> {c}").returncode == 0
    assert read(c) == b"CCC\n" + b"AAA\n" * 1000 + b"BBB\n" * 2000


def test_python_append_fsync(bz):
    p = bz.path("py")
    want = b""
    with open(p, "ab") as f:
        for i in range(200):
            rec = b"record %d %s\n" % (i, b"x" * (i % 50))
            f.write(rec)
            f.flush()
            os.fsync(f.fileno())
            want += rec
            assert os.stat(p).st_size == len(want)
    assert read(p) == want


WRITER = r"""
import os, sys
path, ident, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
for i in range(n):
    rec = b"P%d:%06d:" % (ident, i)
    rec += b"%c" % (65 + ident) * (100 - len(rec) - 1) + b"\n"
    assert os.write(fd, rec) == 100
os.close(fd)
"""


def test_concurrent_o_append(bz):
    p = bz.path("shared")
    open(p, "wb").close()
    n = 400
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, p, str(i), str(n)]) for i in range(8)]
    for pr in procs:
        assert pr.wait() == 0
    data = read(p)
    assert len(data) == 8 * n * 100
    seen = {i: [] for i in range(8)}
    for k in range(0, len(data), 100):
        rec = data[k:k + 100]
        assert rec.endswith(b"\n") and rec.startswith(b"P"), rec
        ident, seq, body = rec[1:].split(b":", 2)
        ident, seq = int(ident), int(seq)
        assert body == b"%c" % (65 + ident) * len(body[:-1]) + b"\n", rec  # contiguous, not interleaved
        seen[ident].append(seq)
    for i in range(8):
        assert seen[i] == list(range(n)), f"writer {i} lost or reordered records"


def test_refusals_leave_content_unchanged(bz):
    p = bz.path("ro")
    content = b"0123456789" * 1000
    with open(p, "wb") as f:
        f.write(content)

    # overwrite below the end with different bytes
    fd = os.open(p, os.O_WRONLY)
    refused_write(fd, lambda fd: os.pwrite(fd, b"XXXX", 100))
    os.close(fd) if not WRITEBACK else _close_quiet(fd)
    same_content(bz, p, content)

    # identical bytes below the end are accepted (retries, writeback)
    fd = os.open(p, os.O_WRONLY)
    assert os.pwrite(fd, content[100:200], 100) == 100
    # ... and the part past the end is appended
    assert os.pwrite(fd, content[-10:] + b"tail", len(content) - 10) == 14
    os.fsync(fd)
    os.close(fd)
    content += b"tail"
    assert read(p) == content

    # write starting past the end on an existing file (beyond the tail page:
    # with the writeback cache a gap inside the tail page is zero-filled by
    # the kernel itself and arrives as an ordinary page write)
    fd = os.open(p, os.O_WRONLY)
    refused_write(fd, lambda fd: os.pwrite(fd, b"gap", len(content) + 3 * 4096))
    _close_quiet(fd)
    same_content(bz, p, content)

    # shrinking truncate (path and descriptor)
    expect_refused(os.truncate, p, 10)
    fd = os.open(p, os.O_WRONLY)
    expect_refused(os.ftruncate, fd, 0)
    os.close(fd)

    # O_TRUNC on a non-empty file
    expect_refused(os.open, p, os.O_WRONLY | os.O_TRUNC)

    # a writer that clears O_APPEND and writes below the end
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"more")
    content += b"more"
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl & ~os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    refused_write(fd, lambda fd: os.write(fd, b"evil"))
    _close_quiet(fd)
    same_content(bz, p, content)
    if not WRITEBACK:
        assert os.stat(p).st_size == len(content)
    # what is stored, seen by a fresh kernel inode
    assert bz.stop() == 0
    bz.start()
    assert read(p) == content
    assert os.stat(p).st_size == len(content)


def _close_quiet(fd):
    try:
        os.close(fd)
    except OSError as e:  # the writeback cache reports refusals at close too
        assert WRITEBACK and e.errno in (errno.EPERM, errno.EIO), e


def test_growing_truncate_appends_zeros(bz):
    p = bz.path("grow")
    with open(p, "wb") as f:
        f.write(b"abc")
    os.truncate(p, 3)  # same size: no-op
    os.truncate(p, 100000)
    assert os.stat(p).st_size == 100000
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"end")
    os.ftruncate(fd, 100010)
    os.close(fd)
    assert read(p) == b"abc" + b"\0" * 99997 + b"end" + b"\0" * 7


def test_fallocate_not_supported(bz):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    p = bz.path("fa")
    with open(p, "wb") as f:
        f.write(b"x")
        rc = libc.fallocate(f.fileno(), 0, ctypes.c_long(0), ctypes.c_long(1 << 20))
        assert rc == -1 and ctypes.get_errno() == errno.EOPNOTSUPP
    assert os.stat(p).st_size == 1


def test_read_after_append_other_fd(bz):
    p = bz.path("tail")
    with open(p, "wb") as f:
        f.write(b"a" * 5000)
    r = open(p, "rb")
    try:
        assert r.read() == b"a" * 5000
        # another process appends
        assert sh(f"printf 'bbbb' >> {p}").returncode == 0
        r.seek(0)
        assert r.read() == b"a" * 5000 + b"bbbb"
        assert os.fstat(r.fileno()).st_size == 5004
        # and a separate process sees it all
        assert subprocess.run(["cat", p], capture_output=True).stdout == b"a" * 5000 + b"bbbb"
    finally:
        r.close()


def test_seek_data_hole(bz):
    p = bz.path("seek")
    with open(p, "wb") as f:
        f.write(b"z" * 10000)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.lseek(fd, 123, os.SEEK_DATA) == 123
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 10000
        with pytest.raises(OSError) as ei:
            os.lseek(fd, 10000, os.SEEK_DATA)
        assert ei.value.errno == errno.ENXIO
    finally:
        os.close(fd)
    # st_blocks counts the compressed bytes (test_du.py), so cp takes the
    # file for "probably sparse" and asks SEEK_DATA/SEEK_HOLE: no holes,
    # every byte copied, to blazefs and to another filesystem alike
    for dst in (bz.path("seek.copy"), bz.store + ".seek.copy"):
        r = subprocess.run(["cp", p, dst], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        with open(dst, "rb") as f:
            assert f.read() == b"z" * 10000
    os.unlink(bz.store + ".seek.copy")


def wait_applied(p):
    for _ in range(200):
        if int(os.getxattr(p, "user.blazefs.pending_bytes")) == 0:
            return
        time.sleep(0.02)


def test_unlinked_open_file_stays_usable(bz):
    p = bz.path("ghost")
    fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"before" * 1000)
        os.fsync(fd)
        wait_applied(p)  # the data is in the page store, not just the pipeline
        os.unlink(p)
        assert not os.path.exists(p)
        assert os.fstat(fd).st_nlink == 0
        os.write(fd, b"after")
        os.fsync(fd)
        assert os.pread(fd, 10000, 0) == b"before" * 1000 + b"after"
        assert os.fstat(fd).st_size == 6005
        # replaced by a rename while open: same thing
        q = bz.path("victim")
        with open(q, "wb") as f:
            f.write(b"old content")
        fd2 = os.open(q, os.O_RDONLY)
        with open(bz.path("new"), "wb") as f:
            f.write(b"new")
        os.rename(bz.path("new"), q)
        assert read(q) == b"new"
        assert os.pread(fd2, 100, 0) == b"old content"
        os.close(fd2)
    finally:
        os.close(fd)
    assert sorted(os.listdir(bz.mnt)) == [".blazefs", "victim"]
    assert sorted(os.listdir(bz.path(".blazefs"))) == ["metrics", "stats"]
    # nothing of the orphans is left after a remount
    assert bz.stop() == 0
    bz.start()
    assert sorted(os.listdir(bz.mnt)) == [".blazefs", "victim"]
    assert read(bz.path("victim")) == b"new"


def test_sync_close(make_mount):
    m = make_mount(opts="sync_close").start()
    p = m.path("s")
    for i in range(20):
        with open(p, "ab") as f:
            f.write(b"%d\n" % i)
    assert read(p) == b"".join(b"%d\n" % i for i in range(20))
    st = os.statvfs(m.mnt)
    assert st.f_namemax == 255
