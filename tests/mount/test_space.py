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


def test_truncate_8t_is_a_hole(make_mount):
    """A growing truncate stores a hole: instant, no space, reads as zeros,
    survives a remount (the fs's 16 TiB maximum stays: 1P is EFBIG)."""
    m = make_mount().start()
    p = m.path("sparse")
    write(p, b"head\n")
    before = db_size(m)
    os.truncate(p, 8 << 40)
    assert os.stat(p).st_size == 8 << 40
    with open(p, "rb") as f:
        assert f.read(5) == b"head\n"
        f.seek(5 << 40)
        assert f.read(65536) == bytes(65536)
        f.seek((8 << 40) - 10)
        assert f.read(100) == bytes(10)
    try:
        os.truncate(p, 1 << 50)
        raise AssertionError("truncate to 1 PiB succeeded")
    except OSError as e:
        assert e.errno == 27  # EFBIG
    # appending after the hole works and lands at 8 TiB
    with open(p, "ab") as f:
        f.write(b"tail\n")
    cycle(m)
    st = os.stat(p)
    assert st.st_size == (8 << 40) + 5
    assert st.st_blocks * 512 < 1 << 20  # du: stored bytes only
    assert db_size(m) < before + (1 << 20)
    with open(p, "rb") as f:
        assert f.read(5) == b"head\n"
        f.seek(3 << 40)
        assert f.read(4096) == bytes(4096)
        f.seek(8 << 40)
        assert f.read() == b"tail\n"


def test_sparse_copy_stores_the_gap_as_a_hole(make_mount, workdir):
    """cp --sparse=always seeks the destination over runs of zeros: the gap
    is a hole on blazefs, not stored zeros."""
    import subprocess
    src = os.path.join(workdir, "src")
    with open(src, "wb") as f:
        f.write(b"x" * 4096)
        f.seek(64 * MIB)
        f.write(b"y" * 4096)
    m = make_mount().start()
    subprocess.run(["cp", "--sparse=always", src, m.path("dst")], check=True)
    cycle(m)
    assert os.path.getsize(m.path("dst")) == 64 * MIB + 4096
    assert db_size(m) < 4 * MIB
    # the store holds the 8 KiB written, not 64 MiB of (compressed) zeros
    import json
    with open(m.path(".blazefs", "stats"), "rb") as f:
        store = json.loads(f.read())["store"]
    assert store["logical_bytes"] == 8192, store
    with open(m.path("dst"), "rb") as f:
        data = f.read()
    with open(src, "rb") as f:
        assert data == f.read()


def test_rotation_leaves_one_file_after_unmount(make_mount):
    """The rotation pattern (write the next file, then delete the previous
    one) without remounting in between: after a clean unmount store.db holds
    about one file, whichever end of store.db the last file was written to
    (its chunks are moved down into the space of the deleted ones), and the
    files deleted while the kernel still referenced them (parked as orphans)
    are gone at the unmount, not at the next mount."""
    m = make_mount().start()
    data = os.urandom(12 * MIB)
    for i in range(4):  # the 4th file is written at the end of store.db
        with open(m.path("app.%d" % i), "wb") as f:
            f.write(data)
        if i:
            with open(m.path("app.%d" % (i - 1)), "rb") as f:  # deleted while open
                os.unlink(m.path("app.%d" % (i - 1)))
                assert f.read(16) == data[:16]
    assert m.stop() == 0, m.logtext()
    assert db_size(m) <= 12 * MIB * 1.3 + MIB, db_size(m)
    m.start()
    with open(m.path("app.3"), "rb") as f:
        assert f.read() == data
    assert sorted(n for n in os.listdir(m.mnt) if n != ".blazefs") == ["app.3"]
