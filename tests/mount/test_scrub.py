"""Online scrub (issue 14.4): `blazectl scrub MOUNT` verifies every stored
byte of every file against the disk while mounted (BZ_IOC_SCRUB, the daemon
bypassing its page cache), rate-limited, resumable, and names each damaged
file and byte range, with fsck's exit codes (0 clean, 4 damage, 8 error,
32 interrupted)."""
import errno
import fcntl
import json
import os
import signal
import struct
import subprocess
import time

import pytest

from conftest import BIN

BLAZECTL = os.path.join(os.path.dirname(os.path.dirname(BIN)), "tools", "blazectl")
# struct bz_scrub_arg (fs/ioctl.h): 6 x u64, i32, u32 = 56 bytes
ARG = struct.Struct("<QQQQQQiI")
IOC_SCRUB = (3 << 30) | (ARG.size << 16) | (ord("b") << 8) | 0x51  # _IOWR('b', 0x51, ...)


def scrub(mnt, *args, timeout=300):
    return subprocess.run([BLAZECTL, "scrub"] + list(args) + [mnt], capture_output=True, text=True,
                          timeout=timeout)


def stats(mnt):
    with open(os.path.join(mnt, ".blazefs", "stats")) as f:
        return json.load(f)["fs"]


def fill(m, n=6, size=300_000):
    os.makedirs(m.path("d", "e"))
    files = {}
    for i in range(n):
        p = m.path("d", "e" if i % 2 else "", f"f{i}.log")
        data = (b"line %d of file %d: GET /index.html 200\n" % (i, i)) * (size // 40) + os.urandom(size // 3)
        with open(p, "wb") as f:
            f.write(data)
        files[p] = data
    return files


def test_scrub_clean_store_verifies_every_byte(make_mount):
    m = make_mount().start()
    files = fill(m)
    m.stop()
    m.start()  # everything is in store.db now, not in the pipeline
    before = stats(m.mnt)["scrub_bytes"]
    r = scrub(m.mnt, "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    total = sum(len(d) for d in files.values())
    assert f"{len(files)} files, {total} bytes verified" in r.stdout
    assert "0 damaged ranges" in r.stdout
    assert stats(m.mnt)["scrub_bytes"] - before == total


def test_scrub_finds_damage_on_disk_under_a_live_mount(make_mount):
    m = make_mount().start()
    marker = os.urandom(64)  # incompressible: stored as is, so findable in store.db
    bad = m.path("bad.bin")
    good = m.path("good.log")
    with open(bad, "wb") as f:
        f.write(os.urandom(1 << 20) + marker + os.urandom(1 << 20))
    with open(good, "wb") as f:
        f.write(b"all is well\n" * 50000)
    m.stop()
    m.start()
    with open(bad, "rb") as f:
        assert marker in f.read()  # its pages are now in the daemon's cache
    db = os.path.join(m.store, "store.db")
    with open(db, "r+b") as f:
        content = f.read()
        at = content.find(marker)
        assert at > 0, "marker not found in store.db"
        f.seek(at + 10)
        f.write(bytes([content[at + 10] ^ 0x40]))
        f.flush()
        os.fsync(f.fileno())
    r = scrub(m.mnt, "-q")
    assert r.returncode == 4, r.stdout + r.stderr
    damaged = [l for l in r.stdout.splitlines() if l.startswith("DAMAGED ")]
    assert damaged and all(l.startswith(f"DAMAGED {bad}: bytes ") for l in damaged), r.stdout
    lo, hi = damaged[0].split("bytes ")[1].split(" ")[0].split("-")
    assert int(lo) <= (1 << 20) + 10 <= int(hi)
    assert "1 damaged ranges in 1 files" in r.stdout
    assert stats(m.mnt)["scrub_damaged"] >= 1
    # the bytes around the damage stay readable
    with open(bad, "rb") as f:
        assert len(f.read(4096)) == 4096


def test_scrub_interrupted_then_resumed(make_mount, workdir):
    m = make_mount().start()
    total = 0
    for i in range(12):
        with open(m.path(f"r{i}"), "wb") as f:
            f.write(os.urandom(1 << 20))
        total += 1 << 20
    m.stop()
    m.start()
    state = os.path.join(workdir, "scrub.state")
    # 12 MB at 1 MB/s lasts at least 12 s: the state (saved every 2 s) appears first
    p = subprocess.Popen([BLAZECTL, "scrub", "-q", "--rate", "1", "--state", state, m.mnt],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if os.path.exists(state) or p.poll() is not None:
                break
            time.sleep(0.05)
        assert os.path.exists(state), p.communicate()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 32, out + err
    assert "--resume" in err
    first = stats(m.mnt)["scrub_bytes"]
    assert 0 < first < total
    r = scrub(m.mnt, "-q", "--resume", "--state", state)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{total} bytes verified" in r.stdout  # both runs together
    assert stats(m.mnt)["scrub_bytes"] - first < total  # the second run did not start over
    assert not os.path.exists(state)


def test_scrub_refuses_what_is_not_blazefs(workdir, bz):
    r = scrub(workdir)
    assert r.returncode == 8
    assert "not a blazefs mount point" in r.stderr
    r = scrub(bz.mnt, "--rate", "fast")
    assert r.returncode == 8


def test_scrub_ioctl_arguments(bz):
    p = bz.path("f")
    with open(p, "wb") as f:
        f.write(b"x" * 10000)
    with open(p, "rb") as f:
        out = fcntl.ioctl(f.fileno(), IOC_SCRUB, ARG.pack(0, 1 << 30, 0, 0, 0, 0, 0, 0))
        off, ln, done, bad_off, bad_len, size, err, flags = ARG.unpack(out)
        assert (done, bad_len, size, err) == (10000, 0, 10000, 0)
        out = fcntl.ioctl(f.fileno(), IOC_SCRUB, ARG.pack(9000, 1 << 30, 0, 0, 0, 0, 0, 0))
        assert ARG.unpack(out)[2] == 1000
        out = fcntl.ioctl(f.fileno(), IOC_SCRUB, ARG.pack(20000, 10, 0, 0, 0, 0, 0, 0))
        assert ARG.unpack(out)[2] == 0  # past the end: nothing to verify
        with pytest.raises(OSError) as e:
            fcntl.ioctl(f.fileno(), IOC_SCRUB, ARG.pack(0, 10, 0, 0, 0, 0, 0, 1))
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            fcntl.ioctl(f.fileno(), 0x5401, b"\0" * 64)  # TCGETS: not ours
        assert e.value.errno == errno.ENOTTY
    with open(bz.path(".blazefs", "stats"), "rb") as f:
        with pytest.raises(OSError) as e:
            fcntl.ioctl(f.fileno(), IOC_SCRUB, ARG.pack(0, 10, 0, 0, 0, 0, 0, 0))
        assert e.value.errno == errno.ENOTTY


def test_scrub_skips_holes(make_mount):
    """An 8 TiB sparse file stores one gap: scrub verifies its data and skips
    the hole instead of reading 8 TiB of zeros."""
    m = make_mount().start()
    p = m.path("sparse")
    with open(p, "wb") as f:
        f.write(b"head\n" * 1000)
    os.truncate(p, 8 << 40)
    with open(p, "ab") as f:
        f.write(b"tail\n" * 1000)
    m.stop()
    m.start()
    r = scrub(m.mnt, "-q", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"1 files, {(8 << 40) + 5000} bytes verified" in r.stdout
