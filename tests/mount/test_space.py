"""Space that comes back (storage v2, docs/FORMAT.md "Free space"): a deleted
file's extents are released by the checkpoint that drops it, reused by later
writes, and free space at the end of store.db is given back to the disk by
the checkpoint after that. Checkpoints run at unmount and at mount, so the
tests cycle mounts instead of waiting for one (no timing involved).
"""
import os

from conftest import write

MIB = 1 << 20


def db_size(m):
    return os.path.getsize(os.path.join(m.store, "store.db"))


def write_random(path, size):
    """size bytes that do not compress: stored as extents of their own."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def cycle(m):
    """Unmount (a checkpoint) and mount again (another one)."""
    assert m.stop() == 0, m.logtext()
    m.start()


def test_deleted_space_is_reused_and_given_back(make_mount):
    m = make_mount().start()
    write(m.path("keep"), b"a small file that stays\n")
    write_random(m.path("one"), 50 * MIB)
    cycle(m)
    one = db_size(m)
    assert one >= 50 * MIB
    for name in ("two", "three"):
        prev = "one" if name == "two" else "two"
        os.unlink(m.path(prev))
        cycle(m)  # the checkpoints drop the file, then give its space back
        assert db_size(m) < 4 * MIB, (prev, db_size(m))
        write_random(m.path(name), 50 * MIB)
        cycle(m)
        # one such file at a time: store.db stays near one file's size
        assert db_size(m) <= one * 1.1 + MIB, (name, db_size(m), one)
    os.unlink(m.path("three"))
    cycle(m)
    assert db_size(m) < 4 * MIB
    with open(m.path("keep"), "rb") as f:
        assert f.read() == b"a small file that stays\n"
    assert sorted(n for n in os.listdir(m.mnt) if n != ".blazefs") == ["keep"]


def test_space_of_a_file_deleted_while_open_comes_back_after_close(make_mount):
    m = make_mount().start()
    write_random(m.path("f"), 20 * MIB)
    cycle(m)
    big = db_size(m)
    with open(m.path("f"), "rb") as f:
        os.unlink(m.path("f"))
        f.seek(19 * MIB)
        assert len(f.read(MIB)) == MIB  # still readable while open
    assert db_size(m) >= big
    cycle(m)
    assert db_size(m) < 4 * MIB
    assert [n for n in os.listdir(m.mnt) if n != ".blazefs"] == []


def test_many_small_files_share_pages(make_mount):
    """2,000 files of 100 bytes are packed, not a page (or more) each."""
    m = make_mount().start()
    os.mkdir(m.path("d"))
    for i in range(2000):
        write(m.path("d", "f%04d" % i), (b"%04d " % i) * 20)
    cycle(m)
    assert db_size(m) < 2 * MIB, db_size(m)
    for i in (0, 777, 1999):
        with open(m.path("d", "f%04d" % i), "rb") as f:
            assert f.read() == (b"%04d " % i) * 20
