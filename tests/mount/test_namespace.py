"""Directories, renames, links, symlinks, permissions and times; -o worm;
the reserved .blazefs directory."""
import errno
import os
import stat

import pytest

from conftest import expect_refused, RENAME_EXCHANGE, RENAME_NOREPLACE, read, renameat2, write



def test_directories_and_renames(bz):
    os.makedirs(bz.path("a", "b", "c"))
    write(bz.path("a", "b", "c", "f"), b"data")
    assert sorted(os.listdir(bz.path("a"))) == ["b"]
    os.rename(bz.path("a", "b"), bz.path("b2"))
    assert read(bz.path("b2", "c", "f")) == b"data"
    with pytest.raises(OSError) as ei:
        os.rmdir(bz.path("b2"))
    assert ei.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as ei:
        os.rename(bz.path("b2"), bz.path("b2", "c", "inside"))
    assert ei.value.errno == errno.EINVAL
    os.unlink(bz.path("b2", "c", "f"))
    os.rmdir(bz.path("b2", "c"))
    os.rmdir(bz.path("b2"))
    assert sorted(os.listdir(bz.mnt)) == [".blazefs", "a"]
    assert os.stat(bz.path("a")).st_nlink == 2

    # many entries: readdir over several buffers
    os.mkdir(bz.path("many"))
    names = {"file-%04d-%s" % (i, "n" * (i % 40)) for i in range(600)}
    for n in names:
        open(bz.path("many", n), "wb").close()
    assert set(os.listdir(bz.path("many"))) == names


def test_ops_after_remount(bz):
    """After a remount the daemon's live view loads each inode and each
    directory's entries from the store on first use (docs/ARCHITECTURE.md):
    every op here reaches objects it has not loaded yet, in an order that
    keeps them unloaded until the op itself needs them."""
    os.makedirs(bz.path("a", "b", "c"))
    write(bz.path("a", "b", "c", "f"), b"data")
    os.link(bz.path("a", "b", "c", "f"), bz.path("a", "h"))
    os.mkdir(bz.path("d"))
    os.mkdir(bz.path("e"))
    names = {"file-%03d" % i for i in range(300)}
    for n in names:
        write(bz.path("e", n), n.encode())
    os.symlink("a/b/c/f", bz.path("s"))
    write(bz.path("x"), b"x")
    os.setxattr(bz.path("x"), "user.k", b"v")
    write(bz.path("open"), b"still here")
    assert bz.stop() == 0
    bz.start()

    # a directory's emptiness and link count before its entries are loaded
    with pytest.raises(OSError) as ei:
        os.rmdir(bz.path("a"))
    assert ei.value.errno == errno.ENOTEMPTY
    os.rmdir(bz.path("d"))
    assert os.stat(bz.path("a")).st_nlink == 3
    with pytest.raises(OSError) as ei:
        os.rename(bz.path("a"), bz.path("a", "b", "c", "inside"))
    assert ei.value.errno == errno.EINVAL
    # a hard link's other name, then the inode through it
    os.unlink(bz.path("a", "h"))
    assert os.stat(bz.path("a", "b", "c", "f")).st_nlink == 1
    # a directory of 300 entries, a move out of it, a symlink, an attribute
    os.rename(bz.path("e", "file-007"), bz.path("a", "b", "c", "g"))
    assert read(bz.path("a", "b", "c", "g")) == b"file-007"
    assert set(os.listdir(bz.path("e"))) == names - {"file-007"}
    assert os.readlink(bz.path("s")) == "a/b/c/f"
    assert os.getxattr(bz.path("x"), "user.k") == b"v"
    # an unlinked file still open, then gone
    fd = os.open(bz.path("open"), os.O_RDONLY)
    try:
        os.unlink(bz.path("open"))
        assert not os.path.exists(bz.path("open"))
        assert os.pread(fd, 64, 0) == b"still here"
    finally:
        os.close(fd)
    os.rename(bz.path("a", "b"), bz.path("b"))
    assert os.stat(bz.path("a")).st_nlink == 2
    assert bz.stop() == 0
    bz.start()
    assert sorted(os.listdir(bz.mnt)) == [".blazefs", "a", "b", "e", "s", "x"]
    assert sorted(os.listdir(bz.path("b", "c"))) == ["f", "g"]
    assert read(bz.path("b", "c", "f")) == b"data" and os.readlink(bz.path("s")) == "a/b/c/f"
    assert len(os.listdir(bz.path("e"))) == 299
    assert os.statvfs(bz.mnt).f_files - os.statvfs(bz.mnt).f_ffree >= 300


def test_rename_flags(bz):
    write(bz.path("x"), b"X")
    write(bz.path("y"), b"Y")
    with pytest.raises(OSError) as ei:
        renameat2(bz.path("x"), bz.path("y"), RENAME_NOREPLACE)
    assert ei.value.errno == errno.EEXIST
    renameat2(bz.path("x"), bz.path("y"), RENAME_EXCHANGE)
    assert read(bz.path("x")) == b"Y" and read(bz.path("y")) == b"X"
    os.rename(bz.path("x"), bz.path("y"))  # replaces
    assert read(bz.path("y")) == b"Y" and not os.path.exists(bz.path("x"))


def test_links_symlinks(bz):
    write(bz.path("orig"), b"hello")
    os.link(bz.path("orig"), bz.path("hard"))
    assert os.stat(bz.path("orig")).st_nlink == 2
    assert os.stat(bz.path("hard")).st_ino == os.stat(bz.path("orig")).st_ino
    write(bz.path("hard"), b" world", "ab")
    assert read(bz.path("orig")) == b"hello world"
    os.unlink(bz.path("orig"))
    assert read(bz.path("hard")) == b"hello world"
    assert os.stat(bz.path("hard")).st_nlink == 1
    os.symlink("hard", bz.path("sym"))
    assert os.readlink(bz.path("sym")) == "hard"
    assert read(bz.path("sym")) == b"hello world"
    assert stat.S_ISLNK(os.lstat(bz.path("sym")).st_mode)
    os.symlink("/nonexistent/" + "t" * 200, bz.path("dangling"))
    assert os.readlink(bz.path("dangling")) == "/nonexistent/" + "t" * 200


def test_chmod_chown_utime(bz):
    p = bz.path("f")
    write(p, b"x")
    os.chmod(p, 0o640)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    assert stat.S_ISREG(os.stat(p).st_mode)
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    os.utime(p, ns=(1_000_000_000_123, 2_000_000_000_456))
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_000_123 and st.st_mtime_ns == 2_000_000_000_456
    os.mkdir(bz.path("d"), 0o700)
    assert stat.S_IMODE(os.stat(bz.path("d")).st_mode) == 0o700
    os.chmod(bz.path("d"), 0o755)
    assert stat.S_IMODE(os.stat(bz.path("d")).st_mode) == 0o755
    assert read(p) == b"x"


def test_name_errors(bz):
    with pytest.raises(OSError) as ei:
        open(bz.path("n" * 256), "wb")
    assert ei.value.errno == errno.ENAMETOOLONG
    write(bz.path("n" * 255), b"ok")
    with pytest.raises(FileExistsError):
        os.mkdir(bz.path("n" * 255))
    with pytest.raises(FileNotFoundError):
        os.unlink(bz.path("missing"))


def test_control_dir_reserved(bz):
    assert os.path.isdir(bz.path(".blazefs"))
    with pytest.raises(OSError) as ei:
        os.mkdir(bz.path(".blazefs"))
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(OSError):
        open(bz.path(".blazefs", "new"), "wb")
    with pytest.raises(OSError):
        open(bz.path(".blazefs", "stats"), "ab")
    with pytest.raises(OSError):
        os.rename(bz.path(".blazefs"), bz.path("elsewhere"))
    with pytest.raises(OSError):
        os.rmdir(bz.path(".blazefs"))
    assert sorted(os.listdir(bz.path(".blazefs"))) == ["metrics", "stats"]


def test_statfs(bz):
    sv = os.statvfs(bz.mnt)
    assert sv.f_namemax == 255
    assert sv.f_blocks > 0 and sv.f_bavail > 0


def test_worm(make_mount):
    m = make_mount(opts="worm").start()
    write(m.path("full"), b"keep me")
    write(m.path("full2"), b"me too")
    open(m.path("empty"), "wb").close()
    os.mkdir(m.path("dir"))
    expect_refused(os.unlink, m.path("full"))
    expect_refused(os.rename, m.path("full"), m.path("moved"))
    expect_refused(os.rename, m.path("empty"), m.path("full2"))  # over a non-empty file
    os.rename(m.path("empty"), m.path("empty2"))  # empty files may go
    os.unlink(m.path("empty2"))
    os.rmdir(m.path("dir"))
    write(m.path("full"), b", appended", "ab")  # appends still work
    assert read(m.path("full")) == b"keep me, appended"
    assert read(m.path("full2")) == b"me too"
