"""Per-directory compression settings (issue 14.2): user.blazefs.zstd_level
and user.blazefs.chunk_bytes set with setfattr on a directory, inherited by
files and subdirectories created below, applied (zstd_level) by the workers
to the files' records; shown by getfattr on a file."""
import errno
import os
import random
import subprocess

import pytest

from conftest import BIN, EXTRA_OPTS, read, write

LEVEL = "user.blazefs.zstd_level"
CHUNK = "user.blazefs.chunk_bytes"
BLAZECTL = os.path.join(os.path.dirname(os.path.dirname(BIN)), "tools", "blazectl")


def setfattr(path, name, value):
    return subprocess.run(["setfattr", "-n", name, "-v", value, path], capture_output=True, text=True, timeout=60)


def getfattr(path, name):
    r = subprocess.run(["getfattr", "--absolute-names", "--only-values", "-n", name, path], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        assert "No such attribute" in r.stderr, r.stderr
        return None
    return r.stdout


def log_text(n):
    """Compressible but not trivially so: log lines with varying fields."""
    rnd = random.Random(14)
    words = [b"GET", b"POST", b"PUT", b"/api/v1/items", b"/api/v2/users", b"/static/app.js", b"200", b"404", b"500"]
    out = []
    size = 0
    i = 0
    while size < n:
        line = b"2026-11-30T06:%02d:%02d.%06dZ host-%d app[%d]: %s %s?page=%d %s %d %.4f\n" % (
            (i // 60) % 60, i % 60, rnd.randrange(10**6), rnd.randrange(8), rnd.randrange(1000, 1100),
            rnd.choice(words[:3]), rnd.choice(words[3:6]), rnd.randrange(500), rnd.choice(words[6:]),
            rnd.randrange(100000), rnd.random())
        out.append(line)
        size += len(line)
        i += 1
    return b"".join(out)[:n]


def default_level():
    for o in EXTRA_OPTS.split(","):
        if o.startswith("zstd_level="):
            return o.split("=", 1)[1]
    return "6"  # BZ_ZSTD_LEVEL_DEFAULT (storage/record.h)


def test_settings_validated(bz):
    os.mkdir(bz.path("d"))
    for good, canon in (("19", "19"), ("-7", "-7"), ("0", "0"), ("22", "22")):
        assert setfattr(bz.path("d"), LEVEL, good).returncode == 0
        assert getfattr(bz.path("d"), LEVEL) == canon
    for bad in ("23", "-8", "abc", "", "1.5", " 3", "+3"):
        with pytest.raises(OSError) as ei:
            os.setxattr(bz.path("d"), LEVEL, bad.encode())
        assert ei.value.errno == errno.EINVAL, bad
    for good, canon in (("4096", "4096"), ("64K", "65536"), ("1M", "1048576")):
        assert setfattr(bz.path("d"), CHUNK, good).returncode == 0
        assert getfattr(bz.path("d"), CHUNK) == canon
    for bad in ("2048", "5000", "2M", "abc", "64KB"):
        with pytest.raises(OSError) as ei:
            os.setxattr(bz.path("d"), CHUNK, bad.encode())
        assert ei.value.errno == errno.EINVAL, bad
    # not listed, like every user.blazefs. name; other user attributes are
    os.setxattr(bz.path("d"), "user.mine", b"1")
    assert os.listxattr(bz.path("d")) == ["user.mine"]
    # a file's settings are fixed at its creation
    write(bz.path("d", "f"), b"x")
    with pytest.raises(OSError) as ei:
        os.setxattr(bz.path("d", "f"), LEVEL, b"3")
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.removexattr(bz.path("d", "f"), LEVEL)
    assert ei.value.errno == errno.EPERM
    # removing a directory's setting: files created later use the mount's level
    os.removexattr(bz.path("d"), LEVEL)
    assert getfattr(bz.path("d"), LEVEL) is None
    write(bz.path("d", "g"), b"y")
    assert getfattr(bz.path("d", "g"), LEVEL) == default_level()
    assert getfattr(bz.path("d", "f"), LEVEL) == "22"  # its own, from its creation
    assert getfattr(bz.path("d", "g"), CHUNK) == "1048576"


def test_levels_applied_inherited_and_kept(make_mount):
    m = make_mount().start()
    os.mkdir(m.path("best"))
    os.mkdir(m.path("fast"))
    assert setfattr(m.path("best"), LEVEL, "19").returncode == 0
    assert setfattr(m.path("fast"), LEVEL, "-5").returncode == 0
    assert setfattr(m.path("best"), CHUNK, "256K").returncode == 0
    os.makedirs(m.path("best", "sub", "deeper"))  # inherited through subdirectories
    assert getfattr(m.path("best", "sub", "deeper"), LEVEL) == "19"
    assert getfattr(m.path("best", "sub", "deeper"), CHUNK) == "262144"
    text = log_text(3 << 20)
    hi = m.path("best", "sub", "deeper", "app.log")
    lo = m.path("fast", "app.log")
    mid = m.path("app.log")
    for p in (hi, lo, mid):
        with open(p, "wb") as f:
            for i in range(0, len(text), 100000):  # as a logger would: many appends
                f.write(text[i:i + 100000])
    assert getfattr(hi, LEVEL) == "19"
    assert getfattr(hi, CHUNK) == "262144"
    assert getfattr(lo, LEVEL) == "-5"
    assert getfattr(mid, LEVEL) == default_level()
    assert getfattr(mid, CHUNK) is None
    m.stop()

    # after a remount everything is applied: compare what the store holds
    m.start()
    stored = {p: int(getfattr(p, "user.blazefs.stored_bytes")) for p in (hi, lo, mid)}
    assert all(read(p) == text for p in (hi, lo, mid))
    assert stored[hi] < stored[lo], stored
    if default_level() == "6":
        assert stored[hi] < stored[mid] < stored[lo], stored
    assert getfattr(hi, LEVEL) == "19" and getfattr(lo, LEVEL) == "-5"
    assert getfattr(m.path("best"), LEVEL) == "19"
    # a file created after the remount still inherits, and is compressed so
    write(m.path("best", "again.log"), text[:1 << 20])
    assert getfattr(m.path("best", "again.log"), LEVEL) == "19"


def test_inherited_setting_survives_a_crash(make_mount):
    """The copy travels in the create's own WAL record: once the creation is
    durable, so is the file's setting."""
    m = make_mount().start()
    os.mkdir(m.path("d"))
    assert setfattr(m.path("d"), LEVEL, "12").returncode == 0
    fd = os.open(m.path("d", "f"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"line\n" * 1000)
        os.fsync(fd)
        m.kill9()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the daemon is gone
    m.start()
    assert read(m.path("d", "f")) == b"line\n" * 1000
    assert getfattr(m.path("d", "f"), LEVEL) == "12"
    assert getfattr(m.path("d"), LEVEL) == "12"


@pytest.mark.parametrize("level", ["0", "-3"])
def test_mount_level_zero_and_negative_compress(make_mount, level):
    """-o zstd_level=0 is zstd's default level and negative ones its fast
    levels (docs/FILESYSTEM.md), not "store raw"."""
    m = make_mount(opts="zstd_level=" + level).start()
    text = log_text(1 << 20)
    write(m.path("f"), text)
    m.stop()
    m.start()
    assert getfattr(m.path("f"), LEVEL) == level
    assert int(getfattr(m.path("f"), "user.blazefs.stored_bytes")) < len(text) // 2


def dump_chunks(store, path):
    """(offset, raw, kind) of each chunk blazectl dump lists for path in an
    unmounted store; kind is 'chunk', 'tail' or 'open'."""
    r = subprocess.run([BLAZECTL, "dump", store, "file", path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = []
    for line in r.stdout.splitlines()[2:]:
        f = line.split()
        if len(f) < 6 or not f[0].isdigit() or not f[1].isdigit() or f[4] == "hole":
            continue
        kind = "open" if "open chunk" in line else "tail" if " tail " in line else "chunk"
        out.append((int(f[0]), int(f[1]), kind))
    return out


def test_chunk_bytes_applied_to_small_and_bulk_appends(make_mount):
    """A directory's chunk_bytes is the size of its files' chunks: small
    fsync'd appends gather into one open chunk sealed at chunk_bytes, and a
    bulk write is cut there; the default directory's chunks are larger."""
    m = make_mount().start()
    os.mkdir(m.path("small"))
    assert setfattr(m.path("small"), CHUNK, "8K").returncode == 0
    text = log_text(64 << 10)
    lines = text.splitlines(keepends=True)
    for d in ("small", "."):
        fd = os.open(m.path(d, "audit.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for ln in lines:  # the audit pattern: one line, one fsync
                os.write(fd, ln)
                os.fsync(fd)
        finally:
            os.close(fd)
    write(m.path("small", "bulk.bin"), text)
    m.stop()

    small = dump_chunks(m.store, "/small/audit.log")
    bulk = dump_chunks(m.store, "/small/bulk.bin")
    dflt = dump_chunks(m.store, "/audit.log")
    for chunks in (small, bulk):
        assert chunks and all(raw <= 8192 for _, raw, _ in chunks), chunks
        sealed = [c for c in chunks if c[2] == "chunk"]
        assert len(sealed) >= len(text) // 8192 - 1, chunks
        assert sum(raw for _, raw, _ in chunks) == len(text)
    # the same lines in the default directory: not cut at 8 KiB
    assert dflt and max(raw for _, raw, _ in dflt) > 8192, dflt
    assert sum(raw for _, raw, _ in dflt) == len(text)

    # and the data reads back, with what it costs on disk far below the
    # bytes (one frame per chunk, not one per line)
    m.start()
    for p in (m.path("small", "audit.log"), m.path("audit.log"), m.path("small", "bulk.bin")):
        assert read(p) == text
        assert int(getfattr(p, "user.blazefs.stored_bytes")) < len(text) // 2
