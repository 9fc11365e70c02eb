"""What the kernel asks the daemon per file, and what it gets back: the
behaviours behind the request economy of `cp -r` and the `echo >> file`
loop (docs/BENCH.md). Run in every mode (BLAZEFS_MOUNT_OPTS); no timing
assertions."""
import os
import re
import time

import pytest


def test_new_file_mtime_never_goes_back(bz):
    """A file created and written at once (cp, a shell redirection) keeps a
    modification time at or after its creation time. The daemon stamps
    inode times with the kernel's file-time clock (the coarse realtime
    clock): with a finer clock the creation time lay ahead of the time the
    kernel stamped the first write with, so the write moved mtime back
    (and, with the writeback cache, cost a SETATTR per file)."""
    d = bz.path("tree")
    os.mkdir(d)
    for i in range(64):
        p = os.path.join(d, "f%02d.txt" % i)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            born = os.fstat(fd)
            os.write(fd, b"line %d\n" % i * 40)
        finally:
            os.close(fd)
        st = os.stat(p)
        assert st.st_size == len(b"line %d\n" % i * 40)
        assert st.st_mtime_ns >= born.st_mtime_ns, (i, born, st)
        assert st.st_ctime_ns >= born.st_ctime_ns, (i, born, st)
    before = {n: os.stat(os.path.join(d, n)).st_mtime_ns for n in os.listdir(d)}
    assert bz.stop() == 0
    bz.start()
    for n, m in before.items():
        # the store keeps a time no earlier than what the mount showed
        assert os.stat(os.path.join(d, n)).st_mtime_ns >= m, n


def _count(m, opcode):
    """Requests of one kind the daemon has received so far (its -d trace)."""
    with open(m.logpath, "rb") as f:
        return f.read().count(b"opcode: %s " % opcode.encode())


def _traced(make_mount):
    m = make_mount()
    m.start(extra_args=("-d",))
    return m


# The kernel's file-time clock (clock_gettime(CLOCK_REALTIME_COARSE); Python
# has no name for it): it changes once per tick (4 ms at HZ=250).
CLOCK_REALTIME_COARSE = 5


def _coarse_ns():
    return time.clock_gettime_ns(CLOCK_REALTIME_COARSE)


def _setattr_nodeids(m):
    """The nodeids of the SETATTRs the daemon has received (its -d trace);
    blazefs' nodeids are its inode numbers."""
    with open(m.logpath, "rb") as f:
        return [int(x) for x in re.findall(rb"opcode: SETATTR \(\d+\), nodeid: (\d+)", f.read())]


def test_new_files_cost_no_setattr(make_mount):
    """Creating, writing and closing files (cp -r) sends no SETATTR of the
    times per file: the daemon stamps a new inode with the kernel's
    file-time clock, so the kernel's stamp of a cached write in the same
    tick changes nothing (a write in a later tick than its file's creation
    does send one; without the writeback cache the kernel sends none). No
    timing assumption: the test reads the coarse clock around each create
    and write and judges only the files where no tick passed and the
    kernel stamped the write with the creation's time."""
    m = _traced(make_mount)
    d = m.path("tree")
    os.mkdir(d)
    stamped = 0
    same_tick = {}  # inode number -> name: created and written within one tick
    for i in range(400):
        if stamped >= 20 and len(same_tick) >= 20:
            break
        name = "f%03d" % i
        c0 = _coarse_ns()
        fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            c1 = _coarse_ns()
            born = os.fstat(fd)
            if c0 == c1:
                # no tick passed during the create: the daemon's stamp is that tick
                assert born.st_mtime_ns == c0 and born.st_ctime_ns == c0, (name, born, c0)
                stamped += 1
            os.write(fd, b"x" * (100 + i))
            c2 = _coarse_ns()
            # the kernel's own stamp of the cached write: since Linux 6.13
            # its file-time clock is the coarse clock or a floor that
            # fine-grained stamps of other filesystems (ext4 under the
            # store) pushed past it, so a write in the same coarse tick
            # can still carry a later time (and then the kernel rightly
            # sends a SETATTR): judge only writes stamped with the
            # creation's time
            wrote = os.fstat(fd)
        finally:
            os.close(fd)
        if c0 == c2 and wrote.st_mtime_ns == born.st_mtime_ns:
            same_tick[born.st_ino] = name
    if not stamped or not same_tick:
        pytest.skip("the machine was too busy: %d of 400 creates (%d with the write) fit in one clock tick"
                    % (stamped, len(same_tick)))
    hit = sorted(same_tick[n] for n in set(_setattr_nodeids(m)) if n in same_tick)
    assert not hit, ("SETATTR for files created and written within one tick", hit, m.logtext()[-1000:])


def test_negative_lookups_are_cached(make_mount):
    """A missing name is looked up once, not at every stat (shells' PATH
    searches, build probes); the cached negative entry never hides a name
    created afterwards, by any operation."""
    m = _traced(make_mount)
    probe = m.path("missing")
    n = 20
    before = _count(m, "LOOKUP")
    t0 = time.monotonic()
    for _ in range(n):
        assert not os.path.exists(probe)
    elapsed = time.monotonic() - t0
    # one lookup per started second of the 1 s negative entry timeout (so
    # a stalled machine cannot fail it), never one per stat
    assert _count(m, "LOOKUP") - before <= 1 + int(elapsed) + 1 < n, elapsed
    src = m.path("src")
    with open(src, "wb") as f:
        f.write(b"data\n")
    makers = {
        "create": lambda p: open(p, "wb").close(),
        "mkdir": os.mkdir,
        "symlink": lambda p: os.symlink("src", p),
        "link": lambda p: os.link(src, p),
        "mkfifo": os.mkfifo,
        "rename": lambda p: (open(p + ".tmp", "wb").close(), os.rename(p + ".tmp", p)),
    }
    for what, make in makers.items():
        p = m.path("n-" + what)
        for _ in range(3):
            assert not os.path.lexists(p), what
        make(p)
        assert os.path.lexists(p), what
        assert os.path.basename(p) in os.listdir(m.mnt), what
    # and a removed name is missing at once
    os.unlink(m.path("n-create"))
    assert not os.path.exists(m.path("n-create"))
    os.rmdir(m.path("n-mkdir"))
    assert not os.path.exists(m.path("n-mkdir"))
