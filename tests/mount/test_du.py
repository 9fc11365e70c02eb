"""du tells the truth (issue 14.3): st_blocks counts the bytes a file
occupies in the store (its compressed record frames, plus raw bytes still in
the pipeline), so `du` shows the stored size and `du --apparent-size` the
logical size, as on ZFS with compression."""
import os
import random
import subprocess
import time

import pytest

from conftest import WRITEBACK

LINE = b"2026-11-30T06:00:00Z host app[1234]: GET /api/v1/items?page=%d 200 512 0.004\n"


def du(*args):
    r = subprocess.run(["du", "-B1"] + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[0])


def settled_blocks(path, size):
    """st_blocks once every byte is applied (the xattr pending_bytes is 0) and
    the kernel's cached attributes (1 s) have expired."""
    for _ in range(400):
        if int(os.getxattr(path, "user.blazefs.pending_bytes")) == 0:
            break
        time.sleep(0.05)
    assert int(os.getxattr(path, "user.blazefs.pending_bytes")) == 0
    stored = int(os.getxattr(path, "user.blazefs.stored_bytes"))
    want = (stored + 511) // 512
    for _ in range(100):
        st = os.stat(path)
        if st.st_blocks == want:
            break
        time.sleep(0.05)
    assert st.st_size == size
    return st.st_blocks, stored


def test_du_compressible(bz):
    p = bz.path("access.log")
    data = b"".join(LINE % i for i in range(60000))
    with open(p, "wb") as f:
        f.write(data)
        os.fsync(f.fileno())
    blocks, stored = settled_blocks(p, len(data))
    assert blocks == (stored + 511) // 512
    assert stored < len(data) // 4  # log lines compress well
    # du: the stored size; --apparent-size: the logical size
    assert du(p) == blocks * 512
    assert du("--apparent-size", p) == len(data)
    assert du(p) < du("--apparent-size", p) // 4
    # a directory sums the same way
    os.mkdir(bz.path("d"))
    q = bz.path("d", "random.bin")
    rnd = random.Random(7).randbytes(300000)
    with open(q, "wb") as f:
        f.write(rnd)
        os.fsync(f.fileno())
    rblocks, rstored = settled_blocks(q, len(rnd))
    assert rstored >= len(rnd)  # incompressible: stored raw (plus frame headers)
    assert du(q) == rblocks * 512 >= len(rnd)
    assert du("-s", bz.path("d")) == du(q)


def test_blocks_never_zero_with_data(bz):
    """Right after the write, before the pipeline applied anything, the raw
    bytes count: a file with data never shows 0 blocks. (With the writeback
    cache the kernel holds the bytes until it writes its dirty pages back, so
    there the check follows an fsync, and waits out the kernel's 1 s
    attribute cache.)"""
    p = bz.path("tiny")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"x")
        if WRITEBACK:
            os.fsync(fd)
            for _ in range(100):
                if os.fstat(fd).st_blocks >= 1:
                    break
                time.sleep(0.05)
        assert os.fstat(fd).st_blocks >= 1
        os.write(fd, b"y" * 100000)
        assert os.fstat(fd).st_blocks >= 1
    finally:
        os.close(fd)
    assert os.stat(p).st_blocks >= 1
    empty = bz.path("empty")
    open(empty, "wb").close()
    assert os.stat(empty).st_blocks == 0
