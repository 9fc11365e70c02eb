"""Remount after a clean unmount and after SIGKILL of the daemon."""
import os
import subprocess
import sys

from conftest import WRITEBACK


def read(p):
    with open(p, "rb") as f:
        return f.read()


def test_remount_after_clean_unmount(make_mount):
    m = make_mount().start()
    os.mkdir(m.path("d"))
    files = {}
    for i in range(20):
        p = m.path("d", "f%d" % i)
        data = (b"file %d " % i) * (i * 500 + 1)
        with open(p, "ab") as f:
            f.write(data)
        files[p] = data
    os.symlink("d/f1", m.path("link"))
    os.link(m.path("d", "f2"), m.path("hard"))
    os.chmod(m.path("d", "f3"), 0o600)
    os.rename(m.path("d", "f4"), m.path("renamed"))
    files[m.path("renamed")] = files.pop(m.path("d", "f4"))
    os.unlink(m.path("d", "f5"))
    files.pop(m.path("d", "f5"))
    inos = {p: os.stat(p).st_ino for p in files}
    assert m.stop() == 0
    assert not os.path.ismount(m.mnt)

    m.start()
    for p, data in files.items():
        assert read(p) == data, p
        assert os.stat(p).st_ino == inos[p]
    assert os.readlink(m.path("link")) == "d/f1"
    assert read(m.path("hard")) == files[m.path("d", "f2")]
    assert os.stat(m.path("hard")).st_nlink == 2
    assert os.stat(m.path("d", "f3")).st_mode & 0o777 == 0o600
    assert not os.path.exists(m.path("d", "f5"))
    # appends continue where the file ended
    with open(m.path("d", "f0"), "ab") as f:
        f.write(b"more")
    assert read(m.path("d", "f0")) == files[m.path("d", "f0")] + b"more"
    # new inode numbers are never reused
    with open(m.path("new"), "wb") as f:
        f.write(b"n")
    assert os.stat(m.path("new")).st_ino not in inos.values()


WRITER = r"""
import os, sys
mnt, k = sys.argv[1], int(sys.argv[2])
fds = [os.open(os.path.join(mnt, "w%d" % i), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644) for i in range(k)]
d = os.open(mnt, os.O_RDONLY)
os.fsync(d)
print("ready", flush=True)
n = 0
while True:
    for i, fd in enumerate(fds):
        rec = b"%d:%08d:" % (i, n) + b"y" * (n % 300) + b"\n"
        os.write(fd, rec)
        os.fsync(fd)
        # acknowledged: report the durable length of this file
        print("ack", i, os.fstat(fd).st_size, flush=True)
    n += 1
"""


def expected_stream(i, upto_bytes):
    out = b""
    n = 0
    while len(out) < upto_bytes:
        out += b"%d:%08d:" % (i, n) + b"y" * (n % 300) + b"\n"
        n += 1
    return out


def test_remount_after_sigkill(make_mount):
    m = make_mount().start()
    k = 4
    w = subprocess.Popen([sys.executable, "-c", WRITER, m.mnt, str(k)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    acked = {i: 0 for i in range(k)}
    try:
        assert w.stdout.readline().strip() == "ready"
        for _ in range(300 * k):
            line = w.stdout.readline()
            if not line:
                break
            _, i, size = line.split()
            acked[int(i)] = int(size)
        m.kill9()  # the daemon dies under a writer that is still fsync'ing
    finally:
        w.kill()
        w.wait()
    assert all(v > 0 for v in acked.values()), acked

    m.start()
    for i in range(k):
        data = read(m.path("w%d" % i))
        assert len(data) >= acked[i], f"w{i}: {len(data)} bytes < {acked[i]} fsync'd"
        assert data == expected_stream(i, len(data))[:len(data)], f"w{i} is not a prefix of its appends"
    assert m.stop() == 0


def test_sigterm_under_load(make_mount):
    """SIGTERM while writers append and fsync: the daemon drains, answers
    what is in flight, checkpoints and exits 0; nothing acknowledged is lost."""
    import signal
    m = make_mount().start()
    k = 3
    w = subprocess.Popen([sys.executable, "-c", WRITER, m.mnt, str(k)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    acked = {i: 0 for i in range(k)}
    try:
        assert w.stdout.readline().strip() == "ready"
        for _ in range(100 * k):
            _, i, size = w.stdout.readline().split()
            acked[int(i)] = int(size)
        m.proc.send_signal(signal.SIGTERM)
        rc = m.proc.wait(timeout=60)
        m.proc = None
        assert rc == 0, m.logtext()
        for line in w.stdout:  # acks that raced with the shutdown
            parts = line.split()
            if len(parts) == 3:
                acked[int(parts[1])] = int(parts[2])
    finally:
        w.kill()
        w.wait()
    m.stop()
    m.start()
    for i in range(k):
        data = read(m.path("w%d" % i))
        assert len(data) >= acked[i]
        assert data == expected_stream(i, len(data))[:len(data)]


TIMES = r"""
import os, subprocess, sys, time
mnt, tag = sys.argv[1], sys.argv[2]
def p(n):
    return os.path.join(mnt, tag + n)
for i in range(20):  # echo >> loop: open, append, close per line
    with open(p("echo"), "ab") as f:
        f.write(b"line %d\n" % i)
fd = os.open(p("audit"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(20):  # a line and an fsync each
    os.write(fd, b"rec %d\n" % i)
    os.fsync(fd)
os.close(fd)
fd = os.open(p("slow"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(10):  # one descriptor, appends over several clock ticks
    os.write(fd, b"x" * 3000)
    time.sleep(0.003)
os.close(fd)
with open(p("sparse"), "ab") as f:
    f.write(b"head")
os.truncate(p("sparse"), 1 << 20)  # a growing truncate: a hole
with open(p("sparse"), "ab") as f:
    f.write(b"tail")
subprocess.run(["cp", "-a", "/etc/hostname", p("copied")], check=True)
subprocess.run(["touch", p("touched")], check=True)
"""


def test_times_survive_remount_and_sigkill(make_mount):
    """Every file's mtime and ctime after a clean remount, and after a
    SIGKILL once synced, are those stat showed before, to the nanosecond:
    the live view stamped appends with the coarse clock while the store
    applied each batch's fine-grained seal time, so appended files came
    back 1-9 ms later (make, rsync and backup tools compare them).
    With the writeback cache one case is left: the kernel stamps a write
    itself and sends no time when it stamps the same tick as before, while
    the page written back a tick later (at the fsync) carries its batch's
    time; such a file may come back one clock tick (at most 10 ms, HZ=100)
    later, never earlier. Without the cache the times are exact."""
    m = make_mount().start()

    def stamp(tag):
        subprocess.run([sys.executable, "-c", TIMES, m.mnt, tag], check=True)
        return {n: (st.st_mtime_ns, st.st_ctime_ns, st.st_size)
                for n in sorted(os.listdir(m.mnt)) if n.startswith(tag)
                for st in [os.stat(m.path(n))]}

    def check(want):
        for n, (mt, ct, size) in want.items():
            st = os.stat(m.path(n))
            assert st.st_size == size, n
            for got, was in ((st.st_mtime_ns, mt), (st.st_ctime_ns, ct)):
                if WRITEBACK:
                    assert 0 <= got - was <= 10_000_000, (n, got, was)
                else:
                    assert got == was, (n, got, was)

    first = stamp("a-")
    assert len(first) == 6
    assert m.stop() == 0
    m.start()
    check(first)

    second = stamp("b-")
    m.fsync_root()  # everything before it is durable
    m.kill9()
    m.start()
    check(first)
    check(second)
    assert m.stop() == 0
