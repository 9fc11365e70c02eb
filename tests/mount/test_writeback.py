"""Refusals, truncates and concurrency that the writeback cache
(-o writeback_cache) makes hard; run in every mode (BLAZEFS_MOUNT_OPTS), the
same outcome is required in each: a refused write fails only itself, no
reader sees refused bytes, racing shrinks are refused, every line stays
whole, and the store after a remount holds what the mount showed."""
import errno
import mmap
import os
import subprocess
import sys

from conftest import WRITEBACK


def read(p):
    with open(p, "rb") as f:
        return f.read()


def remount(m):
    assert m.stop() == 0
    m.start()


APPENDER = r"""
import os, sys
path, ident, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
bad = 0
for i in range(n):
    rec = b"W%d:%06d:" % (ident, i)
    rec += b"%c" % (65 + ident) * (size - len(rec) - 1) + b"\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        assert os.write(fd, rec) == len(rec)
        os.close(fd)
    except OSError as e:
        bad += 1
        sys.stderr.write("append %d: %s\n" % (i, e))
sys.exit(1 if bad else 0)
"""


def test_refused_write_fails_only_itself(bz):
    """Issue 12.2: after a refused overwrite (through the writeback cache the
    refusal surfaces at close), 200 later appenders from another process all
    succeed, and nobody ever reads the refused byte."""
    p = bz.path("L")
    with open(p, "wb") as f:
        f.write(b"line0\n")
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, b"X", 0)
        refused = False
    except OSError as e:
        assert e.errno == errno.EPERM
        refused = True
    try:
        os.close(fd)
    except OSError as e:
        assert WRITEBACK and e.errno in (errno.EPERM, errno.EIO), e
        refused = True
    assert refused
    assert read(p) == b"line0\n"
    r = subprocess.run([sys.executable, "-c", APPENDER, p, "1", "200", "100"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    want = b"line0\n" + b"".join(
        (b"W1:%06d:" % i).ljust(99, b"B") + b"\n" for i in range(200))
    assert read(p) == want
    assert os.stat(p).st_size == len(want)
    remount(bz)
    assert read(p) == want


def test_refusal_reaches_the_writer_when_a_reader_closes_first(bz):
    """The writer's own close reports its refused overwrite even when
    another descriptor (a reader whose open wrote the page back) closed
    first: with the writeback cache the kernel hands its writeback error
    to the first closer only, so `rsync --inplace` of a changed file
    exited 0 with the old bytes kept (found with real tools)."""
    p = bz.path("v.txt")
    data = b"".join(b"%d\n" % i for i in range(1, 1001))
    with open(p, "wb") as f:
        f.write(data)
    fw = os.open(p, os.O_WRONLY)
    refused = []
    try:
        os.pwrite(fw, b"XXXX", 100)
    except OSError as e:
        assert e.errno == errno.EPERM, e
        refused.append("write")
    r = subprocess.run(["cat", p], stdout=subprocess.DEVNULL)  # opens, reads, closes
    assert r.returncode == 0
    try:
        os.close(fw)
    except OSError as e:
        assert e.errno in (errno.EPERM, errno.EIO), e
        refused.append("close")
    assert refused, "the refused overwrite reached no call of its writer"
    assert read(p) == data
    remount(bz)
    assert read(p) == data


def test_refused_shared_mapping_write_is_never_read(bz):
    """A changed byte written through a shared mapping is refused when its
    page is written back (msync, fsync or close reports it) and no reader
    sees it afterwards -- in every mode: without the writeback cache the
    kernel also keeps that page, which showed the refused byte to every
    reader until a remount."""
    p = bz.path("m.bin")
    data = bytes(range(256)) * 32  # two pages
    with open(p, "wb") as f:
        f.write(data)
    fd = os.open(p, os.O_RDWR)
    errs = []
    try:
        m = mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[4096:4100] = b"ZZZZ"
        for call in (m.flush, lambda: os.fsync(fd)):
            try:
                call()
            except OSError as e:
                assert e.errno in (errno.EPERM, errno.EIO), e
                errs.append(e.errno)
        m.close()
    finally:
        try:
            os.close(fd)
        except OSError as e:
            assert e.errno in (errno.EPERM, errno.EIO), e
            errs.append(e.errno)
    assert errno.EPERM in errs, "the refused page write reached no call: %s" % errs
    assert read(p) == data
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), len(data), prot=mmap.PROT_READ)
        try:
            assert m[:] == data
        finally:
            m.close()
    remount(bz)
    assert read(p) == data


def test_refused_extending_write_then_appends(bz):
    """A refused write that also grew the file (the kernel keeps that size in
    writeback mode): later appends still succeed; what the mount shows is
    what the store holds, without the refused bytes."""
    p = bz.path("E")
    with open(p, "wb") as f:
        f.write(b"line0\n")
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, b"XXXXXXXXXX", 3)
        os.close(fd)
        assert WRITEBACK, "the overwrite was not refused"
    except OSError as e:
        assert e.errno in ((errno.EPERM, errno.EIO) if WRITEBACK else (errno.EPERM,)), e
        if not WRITEBACK:
            os.close(fd)
    r = subprocess.run([sys.executable, "-c", APPENDER, p, "2", "20", "50"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    shown = read(p)
    assert b"X" not in shown
    assert shown.startswith(b"line0\n")
    recs = shown[6:].lstrip(b"\0")  # writeback: zeros where the kernel kept the refused size
    assert len(shown) - len(recs) - 6 <= (7 if WRITEBACK else 0)
    assert recs == b"".join((b"W2:%06d:" % i).ljust(49, b"C") + b"\n" for i in range(20))
    remount(bz)
    assert read(p) == shown


TRUNCATER = r"""
import errno, os, sys, time
path, rounds = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY)
grown = refused = 0
for i in range(rounds):
    size = os.fstat(fd).st_size
    try:
        os.ftruncate(fd, size + 1 + i % 7)
        grown += 1
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        refused += 1  # an appender got there first: a shrink
os.close(fd)
print(grown, refused)
"""

LONG_APPENDER = r"""
import os, sys
path, ident, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
for i in range(n):
    rec = b"<%d:%06d:" % (ident, i)
    rec += b"%c" % (97 + ident) * (120 - len(rec) - 2) + b">\n"
    assert os.write(fd, rec) == len(rec)
    if i % 50 == 49:
        os.fsync(fd)
os.close(fd)
"""


def check_lines(data, writers, n):
    """Every record whole, in order per writer; only zero runs between them."""
    seen = {w: 0 for w in range(writers)}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1
            continue
        end = data.index(b"\n", pos) + 1
        rec = data[pos:end]
        assert rec.startswith(b"<") and rec.endswith(b">\n") and len(rec) == 120, (pos, rec)
        ident, seq = rec[1:].split(b":")[:2]
        ident, seq = int(ident), int(seq)
        assert rec == (b"<%d:%06d:" % (ident, seq)).ljust(118, b"%c" % (97 + ident)) + b">\n", rec
        assert seq == seen[ident], (ident, seq, seen[ident])
        seen[ident] += 1
        pos = end
    assert seen == {w: n for w in range(writers)}


def test_appenders_racing_growing_truncates(bz):
    """Issue 12.3: two O_APPEND writers and an fstat+ftruncate(size+k) loop.
    Every append succeeds, the racing shrinks are refused with EPERM, every
    line stays whole, and a remount shows the same bytes."""
    p = bz.path("T")
    open(p, "wb").close()
    n = 600
    ws = [subprocess.Popen([sys.executable, "-c", LONG_APPENDER, p, str(i), str(n)],
                           stderr=subprocess.PIPE) for i in range(2)]
    t = subprocess.run([sys.executable, "-c", TRUNCATER, p, "400"], capture_output=True)
    errs = [w.communicate()[1] for w in ws]
    assert t.returncode == 0, t.stderr.decode()[-2000:]
    for w, e in zip(ws, errs):
        assert w.returncode == 0, e.decode()[-2000:]
    data = read(p)
    check_lines(data, 2, n)
    assert os.stat(p).st_size == len(data)
    remount(bz)
    assert read(p) == data


MIXED_WRITER = r"""
import errno, os, sys
d, ident, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names = [os.path.join(d, "f%d" % k) for k in range(5)]
fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for p in names]
for i in range(n):
    k = i % 5
    rec = b"<%d:%06d:" % (ident, i)
    rec += b"%c" % (97 + ident) * (120 - len(rec) - 2) + b">\n"
    assert os.write(fds[k], rec) == len(rec)
    if i % 40 == 0:
        try:
            os.ftruncate(fds[k], os.fstat(fds[k]).st_size + 3)
        except OSError as e:
            if e.errno != errno.EPERM:  # a racing shrink
                raise
    if i % 100 == 99:  # the name may be another file by now (rename/unlink)
        os.close(fds[k])
        fds[k] = os.open(names[k], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for fd in fds:
    os.close(fd)
"""

CHURN = r"""
import mmap, os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    a = os.path.join(d, "f%d" % (i % 5))
    try:
        if i % 3 == 0:
            os.rename(a, os.path.join(d, "r%d" % i))
        elif i % 6 == 1:
            os.unlink(a)
        else:
            with open(a, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size:
                    m = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
                    head = m[:120]
                    m.close()
                    assert head.startswith(b"<") or head.startswith(b"\0"), head
    except FileNotFoundError:
        pass
"""


def check_file(data):
    pos = 0
    while pos < len(data):
        if data[pos] == 0:
            pos += 1
            continue
        end = data.index(b"\n", pos) + 1
        rec = data[pos:end]
        assert rec.startswith(b"<") and rec.endswith(b">\n") and len(rec) == 120, (pos, rec)
        ident = int(rec[1:].split(b":")[0])
        assert rec[:-2].endswith(b"%c" % (97 + ident) * 20), rec
        pos = end


def test_mixed_appends_truncates_renames_unlinks_mmap(bz):
    """Appenders (with growing truncates) keeping their files open, and a
    renamer/unlinker/mmap reader on the same names at once: no unexpected
    error, every file that survives holds whole lines only, and the store
    after a remount holds what the mount showed. (Each name stays open by a
    writer, so an unlink parks the file; an open racing the unlink of a file
    nobody has open is issue 12.1's own test.)"""
    d = bz.path("mix")
    os.mkdir(d)
    ws = [subprocess.Popen([sys.executable, "-c", MIXED_WRITER, d, str(i), "400"], stderr=subprocess.PIPE)
          for i in range(3)]
    c = subprocess.run([sys.executable, "-c", CHURN, d, "300"], capture_output=True)
    errs = [w.communicate()[1] for w in ws]
    assert c.returncode == 0, c.stderr.decode()[-2000:]
    for w, e in zip(ws, errs):
        assert w.returncode == 0, e.decode()[-2000:]
    shown = {}
    for name in sorted(os.listdir(d)):
        data = read(os.path.join(d, name))
        with open(os.path.join(d, name), "rb") as f:
            if data:
                m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
                assert m[:] == data
                m.close()
        check_file(data)
        shown[name] = data
    remount(bz)
    assert {n: read(os.path.join(d, n)) for n in sorted(os.listdir(d))} == shown


def test_no_log_noise_for_deleted_files(bz):
    """Issue 12.8: the kernel's time updates for files deleted while still
    cached (writeback cache) are not logged as skipped namespace ops: a
    user-visible log line must mean something."""
    d = bz.path("churn")
    os.mkdir(d)
    for i in range(60):
        p = os.path.join(d, "f%d" % i)
        with open(p, "ab") as f:
            f.write(b"x" * 100)
        os.unlink(p)
    assert bz.stop() == 0
    log = bz.logtext()
    assert "skipped" not in log, log
    bz.start()


def test_o_trunc_of_freshly_written_file_refused(bz):
    """A file written through a descriptor still open, then opened with
    O_TRUNC: refused, although with the writeback cache the daemon may not
    have the bytes yet (the kernel still holds them dirty)."""
    p = bz.path("tr")
    for i in range(30):
        q = p + str(i)
        fd = os.open(q, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"first\n")
            try:
                os.close(os.open(q, os.O_WRONLY | os.O_TRUNC))
                raise AssertionError("O_TRUNC of a non-empty file was accepted")
            except PermissionError:
                pass
        finally:
            os.close(fd)
        assert read(q) == b"first\n"


def test_truncate_to_stored_size_below_dirty_bytes_refused(bz):
    """ftruncate to the size the daemon has while the kernel still holds
    more dirty bytes (writeback cache) is a shrink: refused, bytes kept."""
    p = bz.path("ts")
    with open(p, "wb") as f:
        f.write(b"a" * 100)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"b" * 100)
        try:
            os.ftruncate(fd, 100)
            raise AssertionError("shrinking truncate accepted")
        except PermissionError:
            pass
    finally:
        os.close(fd)
    assert read(p) == b"a" * 100 + b"b" * 100
    remount(bz)
    assert read(p) == b"a" * 100 + b"b" * 100


def test_futimens_before_close_survives_remount_with_a_hole(bz, workdir):
    """A file written with a hole (its pages past the hole are held until
    the flush), its times set before close -- what `cp -a` of a sparse
    file does: the time survives a remount. Before: with the writeback
    cache the held pages were stored at the flush, after the kernel's
    setattr, and replay gave the file their batch's time (note 12)."""
    t = 1_600_000_000_123_456_789
    p = bz.path("f")
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"a" * 5000)
    os.lseek(fd, 1 << 20, os.SEEK_CUR)
    os.write(fd, b"b" * 5000)
    os.utime(fd, ns=(t, t))
    os.close(fd)
    src = os.path.join(workdir, "sparse.src")  # and through cp -a itself
    with open(src, "wb") as f:
        f.write(b"x" * 5000)
        f.seek(4 << 20)
        f.write(b"y" * 5000)
    os.utime(src, ns=(t + 1000, t + 1000))
    r = subprocess.run(["cp", "-a", "--sparse=always", src, bz.path("g")], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert os.stat(p).st_mtime_ns == t
    assert bz.stop() == 0, bz.logtext()
    bz.start()
    assert os.stat(p).st_mtime_ns == t
    assert os.stat(bz.path("g")).st_mtime_ns == t + 1000
    with open(bz.path("g"), "rb") as f:
        assert f.read() == b"x" * 5000 + bytes((4 << 20) - 5000) + b"y" * 5000
