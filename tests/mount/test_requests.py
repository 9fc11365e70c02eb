"""What the kernel asks the daemon per file, and what it gets back: the
behaviours behind the request economy of `cp -r` and the `echo >> file`
loop (docs/BENCH.md). Run in every mode (BLAZEFS_MOUNT_OPTS); no timing
assertions."""
import os


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
