"""File kinds and extended attributes, as on ext4: FIFOs, unix sockets and
device nodes (mkfifo, mknod, bind), user.* / trusted.* extended attributes
(persisted through remount and kill -9), copies with cp -a / rsync -X into,
within and out of the mount, and the read-only user.blazefs.* attributes."""
import ctypes
import errno
import os
import shutil
import socket
import stat
import subprocess

import pytest

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def getxattr_raw(path, name, size):
    """getxattr(2) with an explicit buffer size (os.getxattr retries ERANGE)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    n = libc.getxattr(path.encode(), name.encode(), buf if size else None, ctypes.c_size_t(size))
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return n, buf.raw[:n] if size else b""


def listxattr_raw(path, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    n = libc.listxattr(path.encode(), buf if size else None, ctypes.c_size_t(size))
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return n


def as_nobody(cmd):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", cmd],
                          capture_output=True, timeout=60)


def user_xattrs(path, follow=True):
    names = [n for n in os.listxattr(path, follow_symlinks=follow)]
    return {n: os.getxattr(path, n, follow_symlinks=follow) for n in names}


# ---- FIFOs, sockets, device nodes ----

def test_fifo_mkfifo_and_io(bz):
    p = bz.path("fifo")
    os.mkfifo(p, 0o640)
    st = os.stat(p)
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 & ~current_umask()
    assert st.st_size == 0 and st.st_nlink == 1
    # the kernel serves the pipe: bytes pass through, nothing is stored
    r = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(p, os.O_WRONLY)
    try:
        assert os.write(w, b"through the pipe\n") == 17
        assert os.read(r, 100) == b"through the pipe\n"
    finally:
        os.close(w)
        os.close(r)
    assert os.stat(p).st_size == 0
    assert "fifo" in os.listdir(bz.mnt)


def current_umask():
    u = os.umask(0)
    os.umask(u)
    return u


def test_special_files_persist(make_mount):
    m = make_mount().start()
    os.mkfifo(m.path("p"))
    os.mknod(m.path("p2"), 0o600 | stat.S_IFIFO)
    os.mknod(m.path("null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(m.path("loop"), 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    big = os.makedev(4095, 1048575)  # the largest the kernel encodes in 32 bits
    os.mknod(m.path("bigdev"), 0o600 | stat.S_IFCHR, big)
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(m.path("sock"))
    finally:
        s.close()
    os.chown(m.path("p"), 12, 34)
    os.chmod(m.path("p2"), 0o604)
    os.utime(m.path("null"), ns=(10**18, 2 * 10**18))

    def check(m):
        assert stat.S_ISFIFO(os.stat(m.path("p")).st_mode)
        st = os.stat(m.path("p"))
        assert (st.st_uid, st.st_gid) == (12, 34)
        assert os.stat(m.path("p2")).st_mode == stat.S_IFIFO | 0o604
        st = os.stat(m.path("null"))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
        assert st.st_mtime_ns == 2 * 10**18
        st = os.stat(m.path("loop"))
        assert stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (7, 200)
        assert os.stat(m.path("bigdev")).st_rdev == big
        assert stat.S_ISSOCK(os.stat(m.path("sock")).st_mode)
        for n in ("p", "p2", "null", "loop", "sock"):
            assert os.stat(m.path(n)).st_size == 0

    check(m)
    assert m.stop() == 0
    m.start()
    check(m)
    # kill -9 after a durable barrier: replayed from the WAL
    os.mknod(m.path("late"), 0o600 | stat.S_IFCHR, os.makedev(10, 229))
    m.fsync_root()
    m.kill9()
    m.start()
    check(m)
    assert os.stat(m.path("late")).st_rdev == os.makedev(10, 229)


def test_unix_socket_bind_and_connect(bz):
    p = bz.path("app.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(p)
        srv.listen(1)
        cli.connect(p)
        conn, _ = srv.accept()
        cli.sendall(b"log line\n")
        assert conn.recv(100) == b"log line\n"
        conn.close()
    finally:
        cli.close()
        srv.close()
    assert stat.S_ISSOCK(os.stat(p).st_mode)
    # a second bind of the same path fails as everywhere
    s2 = socket.socket(socket.AF_UNIX)
    try:
        with pytest.raises(OSError) as ei:
            s2.bind(p)
        assert ei.value.errno == errno.EADDRINUSE
    finally:
        s2.close()
    os.unlink(p)
    assert not os.path.exists(p)


def test_special_files_namespace_ops(bz):
    os.mkdir(bz.path("d"))
    os.mkfifo(bz.path("d", "f"))
    os.link(bz.path("d", "f"), bz.path("f2"))
    assert os.stat(bz.path("f2")).st_nlink == 2
    os.rename(bz.path("f2"), bz.path("d", "f3"))
    os.unlink(bz.path("d", "f"))
    assert os.stat(bz.path("d", "f3")).st_nlink == 1
    with pytest.raises(FileExistsError):
        os.mkfifo(bz.path("d", "f3"))
    with pytest.raises(OSError) as ei:
        os.truncate(bz.path("d", "f3"), 0)
    assert ei.value.errno == errno.EINVAL
    os.unlink(bz.path("d", "f3"))
    os.rmdir(bz.path("d"))


@pytest.mark.parametrize("kind", ["fifo", "sock", "chr", "blk"])
def test_special_files_chown_chmod_times(make_mount, kind):
    """As pjdfstest chown/00.t and mknod/11.t check them for every type."""
    m = make_mount(opts="allow_other").start()
    os.chmod(m.mnt, 0o777)
    p = m.path("n")
    fmt = {"fifo": stat.S_IFIFO, "sock": stat.S_IFSOCK, "chr": stat.S_IFCHR, "blk": stat.S_IFBLK}[kind]
    dir_before = os.stat(m.mnt)
    os.mknod(p, fmt | 0o755, os.makedev(1, 2) if kind in ("chr", "blk") else 0)
    st = os.stat(p)
    assert stat.S_IFMT(st.st_mode) == fmt and stat.S_IMODE(st.st_mode) == 0o755 & ~current_umask()
    if kind in ("chr", "blk"):
        assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 2)
    d = os.stat(m.mnt)
    assert d.st_mtime_ns >= st.st_mtime_ns and d.st_ctime_ns >= dir_before.st_ctime_ns
    os.chown(p, 65534, 65533)
    os.chmod(p, 0o6555)
    assert os.stat(p).st_mode & 0o7777 == 0o6555
    # a non-root owner changing the group (to one of its groups) clears both
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--groups=65533,65532", "chgrp", "65532", p],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    st = os.stat(p)
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o555, 65534, 65532)
    # chown by someone else: EPERM, nothing changes
    r = subprocess.run(["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups", "chown", "1234", p],
                       capture_output=True, timeout=60)
    assert r.returncode != 0 and b"Operation not permitted" in r.stderr
    assert os.stat(p).st_uid == 65534
    # link, rename, unlink update the counts and names
    os.link(p, m.path("n2"))
    assert os.stat(p).st_nlink == 2
    os.rename(m.path("n2"), m.path("n3"))
    os.unlink(p)
    assert os.stat(m.path("n3")).st_nlink == 1
    os.unlink(m.path("n3"))
    assert not os.listdir(m.mnt) or os.listdir(m.mnt) == [".blazefs"]


def test_mknod_device_needs_root(make_mount):
    bz = make_mount(opts="allow_other").start()
    os.chmod(bz.mnt, 0o777)
    r = as_nobody(f"mknod {bz.path('dev')} c 1 3")
    assert r.returncode != 0 and b"Operation not permitted" in r.stderr
    r = as_nobody(f"mkfifo {bz.path('userfifo')} && test -p {bz.path('userfifo')}")
    assert r.returncode == 0, r.stderr
    assert os.stat(bz.path("userfifo")).st_uid == 65534


# ---- extended attributes ----

def test_xattr_set_get_list_remove(bz):
    f = bz.path("f")
    with open(f, "w") as fh:
        fh.write("data\n")
    os.mkdir(bz.path("d"))
    for p in (f, bz.path("d")):
        assert os.listxattr(p) == []
        os.setxattr(p, "user.a", b"1")
        os.setxattr(p, "user.b", b"\x00binary\xff")
        os.setxattr(p, "user.empty", b"")
        assert os.getxattr(p, "user.b") == b"\x00binary\xff"
        assert os.getxattr(p, "user.empty") == b""
        assert sorted(os.listxattr(p)) == ["user.a", "user.b", "user.empty"]
        os.setxattr(p, "user.a", b"replaced")
        assert os.getxattr(p, "user.a") == b"replaced"
        os.removexattr(p, "user.a")
        with pytest.raises(OSError) as ei:
            os.getxattr(p, "user.a")
        assert ei.value.errno == errno.ENODATA
        with pytest.raises(OSError) as ei:
            os.removexattr(p, "user.a")
        assert ei.value.errno == errno.ENODATA
    # the data is untouched; ctime moves
    with open(f) as fh:
        assert fh.read() == "data\n"


def test_xattr_flags_and_errors(bz):
    f = bz.path("f")
    open(f, "w").close()
    with pytest.raises(OSError) as ei:
        os.setxattr(f, "user.x", b"v", os.XATTR_REPLACE)
    assert ei.value.errno == errno.ENODATA
    os.setxattr(f, "user.x", b"value", os.XATTR_CREATE)
    with pytest.raises(OSError) as ei:
        os.setxattr(f, "user.x", b"v", os.XATTR_CREATE)
    assert ei.value.errno == errno.EEXIST
    os.setxattr(f, "user.x", b"value2", os.XATTR_REPLACE)
    # size query and too small a buffer
    assert getxattr_raw(f, "user.x", 0)[0] == 6
    with pytest.raises(OSError) as ei:
        getxattr_raw(f, "user.x", 3)
    assert ei.value.errno == errno.ERANGE
    assert getxattr_raw(f, "user.x", 6) == (6, b"value2")
    assert listxattr_raw(f, 0) == len("user.x\0")
    with pytest.raises(OSError) as ei:
        listxattr_raw(f, 2)
    assert ei.value.errno == errno.ERANGE
    # limits: a value over 64 KiB is E2BIG (kernel); one inode's attributes
    # (names + 1 + values) take at most 64 KiB: ENOSPC beyond
    with pytest.raises(OSError) as ei:
        os.setxattr(f, "user.big", b"v" * 65537)
    assert ei.value.errno == errno.E2BIG
    g = bz.path("g")
    open(g, "w").close()
    with pytest.raises(OSError) as ei:
        os.setxattr(g, "user.big", b"v" * 65536)
    assert ei.value.errno == errno.ENOSPC
    os.setxattr(g, "user.big", b"v" * (65536 - len("user.big") - 1))
    with pytest.raises(OSError) as ei:
        os.setxattr(g, "user.c", b"")
    assert ei.value.errno == errno.ENOSPC
    assert os.getxattr(g, "user.big") == b"v" * (65536 - 9)
    # namespaces we do not store
    for name in ("security.test", "system.foo", "other.x"):
        with pytest.raises(OSError) as ei:
            os.setxattr(f, name, b"v")
        assert ei.value.errno in (errno.EOPNOTSUPP, errno.EPERM), name
    # trusted.* as root
    os.setxattr(f, "trusted.t", b"root only")
    assert os.getxattr(f, "trusted.t") == b"root only"


def test_xattr_symlink_and_fifo_refused(bz):
    os.symlink("target", bz.path("ln"))
    os.mkfifo(bz.path("p"))
    with pytest.raises(OSError) as ei:
        os.setxattr(bz.path("ln"), "user.x", b"v", follow_symlinks=False)
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.setxattr(bz.path("p"), "user.x", b"v")
    assert ei.value.errno == errno.EPERM
    assert os.listxattr(bz.path("ln"), follow_symlinks=False) == []


def test_xattr_permissions(make_mount):
    bz = make_mount(opts="allow_other").start()
    f = bz.path("f")
    open(f, "w").close()
    os.chmod(f, 0o644)
    os.setxattr(f, "user.x", b"v")
    os.chmod(bz.mnt, 0o755)
    r = as_nobody(f"getfattr --only-values -n user.x {f}")
    assert r.returncode == 0 and r.stdout == b"v", r.stderr
    r = as_nobody(f"setfattr -n user.y -v w {f}")
    assert r.returncode != 0 and b"Permission denied" in r.stderr
    r = as_nobody(f"getfattr -n trusted.t {f}")
    assert r.returncode != 0


def test_xattr_persist(make_mount):
    m = make_mount().start()
    f = m.path("f")
    with open(f, "w") as fh:
        fh.write("x")
    os.mkdir(m.path("d"))
    os.setxattr(f, "user.one", b"1")
    os.setxattr(f, "user.gone", b"2")
    os.removexattr(f, "user.gone")
    os.setxattr(m.path("d"), "user.dir", b"\x00" * 1000)
    os.setxattr(f, "trusted.t", b"t")
    expect_f = {"user.one": b"1", "trusted.t": b"t"}
    assert user_xattrs(f) == expect_f
    assert m.stop() == 0
    m.start()
    assert user_xattrs(f) == expect_f
    assert user_xattrs(m.path("d")) == {"user.dir": b"\x00" * 1000}
    # after kill -9: what an fsync made durable is there
    os.setxattr(f, "user.late", b"after remount")
    fd = os.open(f, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    m.kill9()
    m.start()
    assert user_xattrs(f) == dict(expect_f, **{"user.late": b"after remount"})


def test_info_xattrs_gettable_not_listed(bz):
    f = bz.path("f")
    with open(f, "w") as fh:
        fh.write("hello\n" * 100)
    bz.fsync_root()
    assert not [n for n in os.listxattr(f) if n.startswith("user.blazefs.")]
    assert int(os.getxattr(f, "user.blazefs.records")) >= 0
    assert int(os.getxattr(f, "user.blazefs.stored_bytes")) >= 0
    os.getxattr(f, "user.blazefs.ratio")
    os.getxattr(f, "user.blazefs.pending_bytes")
    for name in ("user.blazefs.records", "user.blazefs.mine"):
        with pytest.raises(OSError) as ei:
            os.setxattr(f, name, b"1")
        assert ei.value.errno == errno.EPERM
        with pytest.raises(OSError) as ei:
            os.removexattr(f, name)
        assert ei.value.errno == errno.EPERM


@pytest.fixture
def srcdir(workdir):
    """A tree on the host filesystem with user xattrs on a file and a dir."""
    src = os.path.join(workdir, "src")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "sub", "file"), "w") as fh:
        fh.write("payload\n")
    with open(os.path.join(src, "plain"), "w") as fh:
        fh.write("no attributes\n")
    try:
        os.setxattr(os.path.join(src, "sub", "file"), "user.mime", b"text/plain")
        os.setxattr(os.path.join(src, "sub"), "user.tag", b"dir")
    except OSError as e:
        pytest.skip(f"the host filesystem has no user xattrs: {e}")
    return src


def tree_xattrs(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = user_xattrs(p)
    return out


@pytest.mark.parametrize("tool", ["cp-a", "cp-preserve", "rsync"])
def test_copy_tools_into_within_out(bz, srcdir, workdir, tool):
    if tool == "rsync" and not shutil.which("rsync"):
        pytest.skip("rsync not installed")

    def copy(a, b):
        if tool == "cp-a":
            cmd = ["cp", "-a", a, b]
        elif tool == "cp-preserve":
            cmd = ["cp", "-r", "--preserve=xattr", a, b]
        else:
            cmd = ["rsync", "-aX", a + "/", b]
        r = subprocess.run(cmd, capture_output=True)
        assert r.returncode == 0 and r.stderr == b"", (cmd, r.stderr)

    want = tree_xattrs(srcdir)
    into = bz.path("into")
    copy(srcdir, into)
    assert tree_xattrs(into) == want
    within = bz.path("within")
    copy(into, within)
    assert tree_xattrs(within) == want
    out = os.path.join(workdir, "out")
    copy(within, out)
    assert tree_xattrs(out) == want
    with open(os.path.join(out, "sub", "file")) as fh:
        assert fh.read() == "payload\n"


def test_noxattr(make_mount, srcdir):
    m = make_mount(opts="noxattr").start()
    f = m.path("f")
    open(f, "w").close()
    with pytest.raises(OSError) as ei:
        os.setxattr(f, "user.x", b"v")
    assert ei.value.errno == errno.EOPNOTSUPP
    with pytest.raises(OSError) as ei:
        os.listxattr(f)
    assert ei.value.errno == errno.EOPNOTSUPP
    # cp -a (which preserves xattrs when it can) still copies the data
    r = subprocess.run(["cp", "-a", srcdir, m.path("copy")], capture_output=True)
    assert r.returncode == 0, r.stderr
    with open(m.path("copy", "sub", "file")) as fh:
        assert fh.read() == "payload\n"
