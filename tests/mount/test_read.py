"""Reads through the read threads (fs/read.c): the bytes are right whoever
serves them, concurrent readers and a writer with fsync all finish, and the
session threads still answer when the read threads are busy.

No timing is asserted: what the read threads buy in latency is measured by
tools/bench ("fsync p99 6 readers / none")."""
import hashlib
import os
import threading

import pytest

from conftest import expect_bad_option


def pattern(n, seed):
    # compressible but not constant: the reads decompress real chunks
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b"%08d %s line of the read test, seed %d\n" % (i, b"x" * (i % 37), seed)
        i += 1
    return bytes(out[:n])


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_concurrent_readers_and_fsync_writer(make_mount, threads):
    m = make_mount(opts=f"read_threads={threads}")
    m.start()
    data = pattern(12 << 20, threads)
    big = m.path("big.log")
    with open(big, "wb") as f:
        f.write(data)
        os.fsync(f.fileno())
    want = hashlib.sha256(data).hexdigest()
    errors = []
    stop = threading.Event()

    def reader(k):
        try:
            for _ in range(3):
                with open(big, "rb", buffering=0) as f:
                    h = hashlib.sha256()
                    # odd sizes and offsets: READs that cut chunks anywhere
                    while True:
                        b = f.read(65536 + 4093 * k)
                        if not b:
                            break
                        h.update(b)
                    if h.hexdigest() != want:
                        errors.append(f"reader {k}: wrong bytes")
                        return
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as e:
            errors.append(f"reader {k}: {e}")

    lines = []

    def writer():
        try:
            with open(m.path("audit.log"), "ab") as f:
                i = 0
                while not stop.is_set() or i < 50:
                    line = b"audit %06d\n" % i
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                    lines.append(line)
                    i += 1
        except OSError as e:
            errors.append(f"writer: {e}")

    w = threading.Thread(target=writer)
    rs = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    w.start()
    for t in rs:
        t.start()
    for t in rs:
        t.join()
    stop.set()
    w.join()
    assert errors == []
    with open(m.path("audit.log"), "rb") as f:
        assert f.read() == b"".join(lines)
    # random reads of the held tail and of the stored part, one descriptor
    with open(big, "ab") as f:
        f.write(b"tail not yet fsynced\n")
        f.flush()  # in the kernel (and the writeback cache), not fsynced
        with open(big, "rb") as r:
            r.seek(len(data) - 10)
            assert r.read() == data[-10:] + b"tail not yet fsynced\n"
            r.seek(5 << 20)
            assert r.read(100) == data[5 << 20:(5 << 20) + 100]
    assert m.stop() == 0
    # after a remount, the same bytes
    m.start()
    with open(big, "rb") as f:
        assert hashlib.sha256(f.read(len(data))).hexdigest() == want


@pytest.mark.parametrize("opt", ["read_threads=65", "read_threads=-1", "read_threads=x"])
def test_read_threads_bad_option(make_mount, opt):
    expect_bad_option(make_mount(), opt, b"read_threads")
