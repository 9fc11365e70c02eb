"""A storage failure through the mount (the fsyncgate rules, DESIGN §2):
the store lives on a small tmpfs that runs out of space; once the pipeline
has failed, writes and namespace changes get EROFS, fsync and close get EIO,
the daemon says why, and nothing is retried."""
import errno
import json
import os
import subprocess

import pytest

from conftest import WRITEBACK


def test_out_of_space_fails_cleanly(make_mount):
    m = make_mount()
    os.makedirs(m.store)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300m", "tmpfs", m.store], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr.decode())
    try:
        m.start()
        fd = os.open(m.path("f"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        chunk = os.urandom(1 << 20)  # incompressible
        first = None
        for i in range(1024):
            try:
                os.write(fd, chunk)
                if WRITEBACK and i % 8 == 7:
                    os.fsync(fd)  # the kernel acknowledged the writes itself
            except OSError as e:
                first = e
                break
        assert first is not None, "300 MiB tmpfs never filled"
        if WRITEBACK:
            # the failure surfaces at fsync, as the kernel's writeback error
            assert first.errno in (errno.EROFS, errno.ENOSPC, errno.EIO), first
            with pytest.raises(OSError):
                os.fsync(fd)
            with pytest.raises(OSError) as ei:
                open(m.path("g"), "wb")
            assert ei.value.errno == errno.EROFS
            first = OSError(errno.EROFS, "")  # the daemon failed: exit code 1 below
        elif first.errno == errno.EROFS:
            with pytest.raises(OSError) as ei:
                os.write(fd, b"x")
            assert ei.value.errno == errno.EROFS
            with pytest.raises(OSError) as ei:
                os.fsync(fd)
            assert ei.value.errno == errno.EIO
            with pytest.raises(OSError) as ei:
                os.close(fd)
            assert ei.value.errno == errno.EIO
            fd = -1
            with pytest.raises(OSError) as ei:
                open(m.path("g"), "wb")
            assert ei.value.errno == errno.EROFS
            assert not os.path.exists(m.path("g"))
            with open(m.path(".blazefs", "stats")) as f:
                s = json.load(f)
            assert s["fs"]["failed"] is True and s["fs"]["errors"] >= 1
            assert s["error"] != 0
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        rc = m.stop()
        if first.errno == errno.EROFS:
            assert rc == 1  # the daemon reports the failure
        assert "No space left on device" in m.logtext()
    finally:
        m.stop()
        subprocess.run(["umount", "-l", m.store])
