"""lseek SEEK_DATA / SEEK_HOLE report the holes the store keeps (gaps
between chunks: growing truncates, sparse copies), so `cp --sparse` and
other hole-aware tools skip them instead of reading zeros."""
import errno
import os
import subprocess

import pytest

MiB = 1 << 20


def seek(p, off, whence):
    fd = os.open(p, os.O_RDONLY)
    try:
        return os.lseek(fd, off, whence)
    finally:
        os.close(fd)


def test_seek_data_and_hole(make_mount):
    m = make_mount().start()
    p = m.path("f")
    with open(p, "wb") as f:
        f.write(b"a" * MiB)
    os.truncate(p, 64 * MiB)
    with open(p, "ab") as f:
        f.write(b"b" * MiB)
    m.stop()
    m.start()  # everything applied: the answers come from the store's chunks
    assert seek(p, 0, os.SEEK_DATA) == 0
    assert seek(p, 0, os.SEEK_HOLE) == MiB
    assert seek(p, MiB, os.SEEK_DATA) == 64 * MiB
    assert seek(p, 5 * MiB, os.SEEK_HOLE) == 5 * MiB
    assert seek(p, 64 * MiB, os.SEEK_HOLE) == 65 * MiB  # the end is a hole
    with pytest.raises(OSError) as e:
        seek(p, 65 * MiB, os.SEEK_DATA)
    assert e.value.errno == errno.ENXIO
    with open(p, "rb") as f:
        f.seek(MiB)
        assert f.read(4096) == bytes(4096)


def test_seek_sparse_file_all_hole(bz):
    p = bz.path("sparse")
    open(p, "wb").close()
    os.truncate(p, 8 << 40)
    bz.stop()
    bz.start()
    with pytest.raises(OSError) as e:
        seek(p, 0, os.SEEK_DATA)
    assert e.value.errno == errno.ENXIO
    assert seek(p, 0, os.SEEK_HOLE) == 0


def test_seek_counts_unapplied_bytes_as_data(bz):
    """Right after a write, before the commit thread applied it, the bytes
    are data (never a hole that would make cp skip them)."""
    p = bz.path("g")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 100000)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 100000
    finally:
        os.close(fd)


def test_cp_sparse_copies_an_8t_file_without_reading_its_hole(bz):
    src, dst = bz.path("big"), bz.path("copy")
    with open(src, "wb") as f:
        f.write(b"start\n")
    os.truncate(src, 8 << 40)
    with open(src, "ab") as f:
        f.write(b"end\n")
    bz.stop()
    bz.start()
    # without SEEK_DATA/SEEK_HOLE cp reads 8 TiB of zeros: hours, not seconds
    r = subprocess.run(["cp", "--sparse=always", src, dst], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    st = os.stat(dst)
    assert st.st_size == (8 << 40) + 4
    with open(dst, "rb") as f:
        assert f.read(6) == b"start\n"
        f.seek(8 << 40)
        assert f.read() == b"end\n"
    assert st.st_blocks * 512 < MiB
