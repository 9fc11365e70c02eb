"""Out of space through the mount (DESIGN §2): the store lives on a small
tmpfs. Appends must get ENOSPC at write() while the disk still has room for
everything already acknowledged — never an acknowledged byte lost, never a
failed store. (The fsyncgate rules — EIO at fsync/close, EROFS afterwards —
are proven below the mount by tests/fault and tests/unit/test_pipeline.)"""
import errno
import json
import os
import subprocess

import pytest

from conftest import WRITEBACK


def test_out_of_space_is_enospc_at_write(make_mount):
    m = make_mount()
    os.makedirs(m.store)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", m.store], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.decode())
    try:
        m.start()
        fd = os.open(m.path("f"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        chunks = []
        first = None
        for i in range(1024):
            chunk = os.urandom(1 << 20)  # incompressible
            try:
                os.write(fd, chunk)
                if WRITEBACK and i % 8 == 7:
                    os.fsync(fd)  # the kernel acknowledged the writes itself
                chunks.append(chunk)
            except OSError as e:
                first = e
                break
        assert first is not None, "512 MiB tmpfs never filled"
        if WRITEBACK:
            # The kernel accepted the writes; the refusal surfaces at fsync.
            # Once one page was refused with ENOSPC, the kernel's later pages
            # start past the daemon's end of file and are refused with EPERM:
            # fsync may report either (the writeback caveat, DESIGN §2).
            assert first.errno in (errno.ENOSPC, errno.EIO, errno.EPERM), first
            try:
                os.close(fd)  # pages written back after the fsync may be refused too
            except OSError as e:
                assert e.errno in (errno.ENOSPC, errno.EIO, errno.EPERM), e
            rc = m.stop()
            assert rc == 0, m.logtext()
            return
        assert first.errno == errno.ENOSPC, first
        assert len(chunks) > 16, "the reserve refused almost everything"
        # Everything acknowledged before is still storable and durable.
        os.fsync(fd)
        os.close(fd)
        with open(m.path(".blazefs", "stats")) as f:
            s = json.load(f)
        assert s["error"] == 0 and s["fs"]["failed"] is False
        # Namespace additions are charged like writes (issue 11.5): refused;
        # changes in place and reads still work.
        # (small ones may still fit in what the refused write left)
        for i in range(20000):
            try:
                os.mkdir(m.path("d%d" % i))
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        else:
            raise AssertionError("20000 mkdirs on a full disk were all accepted")
        os.chmod(m.path("f"), 0o600)
        with open(m.path("f"), "rb") as f:
            assert f.read(1 << 20) == chunks[0]
        assert "No space left on device" in m.logtext()
        assert m.stop() == 0, m.logtext()
        m.start()
        with open(m.path("f"), "rb") as f:
            data = f.read()
        assert len(data) == len(chunks) << 20
        assert data == b"".join(chunks)
        m.stop()
    finally:
        m.stop()
        subprocess.run(["umount", "-l", m.store])


@pytest.mark.parametrize("size_mb,at_least_mb", [(32, 5), (48, 20), (64, 34), (128, 90)])
def test_a_small_disk_is_usable(make_mount, size_mb, at_least_mb):
    """What may be in flight is part of the reserve kept free on the store's
    disk; unless -o max_inflight_mb is given it is at most 1/16 of the disk,
    and the reserve's slack is 1/16 of the disk (4 to 32 MiB). Before: a
    fixed 32 MiB of in-flight bytes made a 64 MiB disk refuse every write
    (df 0); then a fixed 32 MiB slack left 48 MiB and smaller disks no room
    at all and a 64 MiB one 12 MiB (after the WAL's 16). df tells what the
    fsync'd appends then get (within the frames' overhead), and they are all
    there after a remount."""
    m = make_mount()
    os.makedirs(m.store)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mb, "tmpfs", m.store],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.decode())
    try:
        m.start()
        sv = os.statvfs(m.mnt)
        avail = sv.f_bavail * sv.f_frsize
        assert avail >= at_least_mb << 20, (avail, m.logtext())
        chunk = os.urandom(1 << 20)
        done = 0
        with pytest.raises(OSError) as ei:
            with open(m.path("f"), "wb") as f:
                for _ in range(size_mb):
                    f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                    done += 1
        assert ei.value.errno == errno.ENOSPC, ei.value
        # (what is stored takes a little more than what was written: frame
        # headers, page ends -- and df counted it before the writes)
        assert done >= at_least_mb and (done << 20) >= avail * 0.9, (done, avail)
        assert m.stop() == 0, m.logtext()
        m.start()
        with open(m.path("f"), "rb") as f:
            for i in range(done):
                assert f.read(1 << 20) == chunk, i
        assert m.stop() == 0, m.logtext()
    finally:
        m.stop()
        subprocess.run(["umount", m.store], capture_output=True)
