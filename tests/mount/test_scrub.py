"""Online scrub (issue 14.4): `blazectl scrub MOUNT` verifies every stored
byte of every file against the disk while mounted (BZ_IOC_SCRUB, the daemon
bypassing its page cache), and every metadata page -- the superblocks, the
namespace checkpoint chain and trees, each file's index pages (BZ_IOC_SCRUB_META) --
rate-limited, resumable, and names each damaged file and byte range (and
damaged index page), with fsck's exit codes (0 clean, 4 damage, 8 error,
32 interrupted)."""
import errno
import fcntl
import json
import os
import re
import threading
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
# struct bz_scrub_meta_arg: gen, pos, pgno, bytes, len, done, total, index_total, bad_pgno (u64); walk, flags, bad, reserved (u32)
META = struct.Struct("<QQQQQQQQQIIII")
IOC_SCRUB_META = (3 << 30) | (META.size << 16) | (ord("b") << 8) | 0x52
META_NS, META_INDEX, META_END = 1, 2, 1


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
    assert f"{len(files)} files, {total} bytes of data and " in r.stdout
    assert "0 damaged ranges in 0 files, 0 damaged metadata pages" in r.stdout
    # the two superblocks and at least one namespace page were verified too
    meta = int(re.search(r"and (\d+) bytes of metadata verified", r.stdout).group(1))
    assert meta >= 3 * 4096 and meta % 4096 == 0, r.stdout
    assert "DAMAGED" not in r.stdout
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
    assert f"{total} bytes of data" in r.stdout  # both runs together
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
    assert f"1 files, {(8 << 40) + 5000} bytes of data" in r.stdout


def dump(store, what):
    r = subprocess.run([BLAZECTL, "dump", store, what], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def ns_chain(store):
    """(first page, pages) of the namespace chain the newest superblock names."""
    for block in dump(store, "superblocks").split("superblock ")[1:]:
        if "(newest" in block:
            m = re.search(r"namespace chain first page (\d+), (\d+) pages", block)
            return int(m.group(1)), int(m.group(2))
    raise AssertionError("no newest superblock")


def pages_of_type(store, kind):
    out = []
    for line in dump(store, "pages").splitlines():
        f = line.split()
        if len(f) > 2 and f[0].isdigit() and f[1] == kind and "BAD" not in line:
            out.append(int(f[0]))
    return out


def flip(db, pgno, at):
    with open(db, "r+b") as f:
        f.seek(pgno * 4096 + at)
        b = f.read(1)
        f.seek(pgno * 4096 + at)
        f.write(bytes([b[0] ^ 0x40]))
        f.flush()
        os.fsync(f.fileno())


def index_file(m, name="big.bin"):
    """A file of 256 records of 4 KiB (record_bytes=4096): full INDEX pages (101 entries each)."""
    p = m.path(name)
    with open(p, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(4096))
    return p


def test_scrub_reports_damaged_index_and_namespace_pages(make_mount):
    m = make_mount(opts="record_bytes=4096").start()
    big = index_file(m)
    with open(m.path("small.log"), "wb") as f:
        f.write(b"fine\n" * 1000)
    m.stop()
    idx = pages_of_type(m.store, "index")
    assert idx, dump(m.store, "pages")
    db = os.path.join(m.store, "store.db")
    flip(db, idx[-1], 48 + 1000)  # an index page: a mount never reads it
    m.start()
    # A mount reads (and needs) the whole namespace chain, so it is damaged
    # under the live mount, after the daemon loaded it; the checkpoint at
    # mount changed nothing, so the chain is still the durable one.
    first, npages = ns_chain(m.store)
    assert npages >= 1
    flip(db, first, 48 + 10)
    r = scrub(m.mnt, "-q")
    assert r.returncode == 4, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(l.startswith(f"DAMAGED {big}: index page {idx[-1]} fails its checksum or header") for l in lines), \
        r.stdout
    assert any(l.startswith("DAMAGED namespace checkpoint (generation ") and f"page {first} fails its checksum" in l
               for l in lines), r.stdout
    assert not any("small.log" in l for l in lines), r.stdout
    assert "2 damaged metadata pages" in r.stdout, r.stdout
    assert stats(m.mnt)["scrub_damaged"] >= 2


def tree_roots(store):
    """(inode tree root, entry tree root) the newest superblock names (format 3)."""
    for block in dump(store, "superblocks").split("superblock ")[1:]:
        if "(newest" in block:
            i = re.search(r"inode tree\s+root page (\d+), (\d+) keys", block)
            e = re.search(r"entry tree\s+root page (\d+), (\d+) keys", block)
            assert i and e, block
            return int(i.group(1)), int(e.group(1))
    raise AssertionError("no newest superblock")


@pytest.mark.parametrize("which", ["inode", "entry"])
def test_scrub_reports_a_damaged_namespace_tree_page(make_mount, which):
    """The namespace trees (format 3) are metadata too: a page of them
    damaged on disk under a live mount (the mount loaded them; scrub reads
    past the cache) is reported with its page number."""
    m = make_mount().start()
    for i in range(300):
        with open(m.path("file-with-a-long-name-%04d.log" % i), "wb") as f:
            f.write(b"x\n")
    m.stop()
    m.start()
    assert scrub(m.mnt, "-q").returncode == 0
    ino_root, dent_root = tree_roots(m.store)
    root = ino_root if which == "inode" else dent_root
    assert root >= 2
    flip(os.path.join(m.store, "store.db"), root, 48 + 100)
    r = scrub(m.mnt, "-q")
    assert r.returncode == 4, r.stdout + r.stderr
    assert any(l.startswith("DAMAGED namespace checkpoint (generation ") and f"page {root} fails its checksum" in l
               for l in r.stdout.splitlines()), r.stdout
    assert stats(m.mnt)["scrub_damaged"] >= 1


def test_scrub_reports_a_damaged_superblock(make_mount):
    m = make_mount().start()
    with open(m.path("f"), "wb") as f:
        f.write(b"x" * 5000)
    os.sync()
    # Damage the older superblock (the newest is what a crash would need): a
    # writable mount rewrote both at open, so either being invalid is damage.
    out = dump(m.store, "superblocks")
    newest = 0 if re.search(r"superblock 0: valid\n  \(newest", out) else 1
    flip(os.path.join(m.store, "store.db"), 1 - newest, 48 + 20)
    r = scrub(m.mnt, "-q")
    assert r.returncode == 4, r.stdout + r.stderr
    assert f"DAMAGED superblock {1 - newest} (page {1 - newest}): fails its checksum or header" in r.stdout
    assert "1 damaged metadata pages" in r.stdout


def test_scrub_meta_ioctl(make_mount):
    """The metadata walk: cursor, totals, a file's index walk, arguments."""
    m = make_mount(opts="record_bytes=4096").start()
    big = index_file(m)
    m.stop()
    m.start()
    fd = os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        probe = META.unpack(fcntl.ioctl(fd, IOC_SCRUB_META, META.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, META_NS, 0, 0, 0)))
        total, index_total = probe[6], probe[7]
        assert probe[5] == 0 and total >= 3 * 4096 and index_total >= 4096 and index_total % 4096 == 0, probe
        # one page per call: the cursor walks the superblocks, then the chain
        cur, done, calls = (0, 0, 0, 0), 0, 0
        while True:
            out = META.unpack(fcntl.ioctl(fd, IOC_SCRUB_META, META.pack(*cur, 4096, 0, 0, 0, 0, META_NS, 0, 0, 0)))
            cur, calls = out[0:4], calls + 1
            done += out[5]
            assert out[11] == 0, out  # bad
            if out[10] & META_END:
                break
            assert calls < 1000
        # the trees (format 3) count as one page until verified, then as
        # the pages they have: the last call's total is the real one
        assert done == out[6] >= total and calls == total // 4096
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, IOC_SCRUB_META, META.pack(0, 0, 0, 0, 4096, 0, 0, 0, 0, META_INDEX, 0, 0, 0))
        assert e.value.errno == errno.ENOTTY  # a directory has no index
        with pytest.raises(OSError) as e:
            fcntl.ioctl(fd, IOC_SCRUB_META, META.pack(0, 0, 0, 0, 4096, 0, 0, 0, 0, 7, 0, 0, 0))
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    with open(big, "rb") as f:
        out = META.unpack(fcntl.ioctl(f.fileno(), IOC_SCRUB_META,
                                      META.pack(0, 0, 0, 0, 1 << 20, 0, 0, 0, 0, META_INDEX, 0, 0, 0)))
        assert out[5] == out[6] == index_total and out[10] & META_END and out[11] == 0, out
    with open(m.path("empty"), "wb") as f:
        pass
    with open(m.path("empty"), "rb") as f:
        out = META.unpack(fcntl.ioctl(f.fileno(), IOC_SCRUB_META,
                                      META.pack(0, 0, 0, 0, 1 << 20, 0, 0, 0, 0, META_INDEX, 0, 0, 0)))
        assert out[5] == 0 and out[6] == 0 and out[10] & META_END, out


def test_scrub_meta_during_checkpoints_finds_no_false_damage(make_mount):
    """Checkpoints replace the namespace chain and free the old one while the
    scrub walks it: the walk notices (superblock write sequence, generation)
    and never reports a page it raced with as damaged."""
    m = make_mount().start()
    stop = threading.Event()
    errors = []
    with open(m.path(".blazefs", "stats")) as f:
        ck0 = json.load(f)["checkpoints"]

    def churn():  # a deleted file of >= 1 MiB holding most of store.db: a checkpoint at the next sync
        try:
            for i in range(30):
                p = m.path(f"churn{i % 4}")
                with open(p, "wb") as f:
                    f.write(os.urandom((1 << 20) + 4096))
                    os.fsync(f.fileno())
                os.unlink(p)
                d = os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(d)
                finally:
                    os.close(d)
        except OSError as e:
            errors.append(e)
        stop.set()

    t = threading.Thread(target=churn)
    t.start()
    try:
        fd = os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            while not stop.is_set():  # walk the namespace for as long as the churn runs
                cur = (0, 0, 0, 0)
                while True:
                    try:
                        out = META.unpack(fcntl.ioctl(fd, IOC_SCRUB_META,
                                                      META.pack(*cur, 4096, 0, 0, 0, 0, META_NS, 0, 0, 0)))
                    except OSError as e:
                        assert e.errno == errno.EAGAIN
                        continue
                    assert out[11] == 0, f"false damage: {out}"
                    cur = out[0:4]
                    if out[10] & META_END:
                        break
        finally:
            os.close(fd)
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    with open(m.path(".blazefs", "stats")) as f:
        assert json.load(f)["checkpoints"] - ck0 >= 10  # the walks did race with checkpoints
    r = scrub(m.mnt, "-q")
    assert r.returncode == 0, r.stdout + r.stderr
