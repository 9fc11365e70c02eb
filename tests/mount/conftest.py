"""Fixtures for the mount-level tests: run the real blazefs daemon on a fresh
store and mount point, and always tear it down (fusermount3 -u, then kill the
daemon if it is still alive, then wait for it).

Environment:
  BLAZEFS_BIN         the daemon (default: <repo>/build/fs/blazefs)
  BLAZEFS_MOUNT_OPTS  extra -o options for every mount (e.g. no_writeback_cache,
                      workers=0), so the same suite runs in several modes
Run as root (FUSE mounts, allow_other, setpriv).
"""
import ctypes
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.abspath(os.environ.get("BLAZEFS_BIN", os.path.join(REPO, "build", "fs", "blazefs")))
EXTRA_OPTS = os.environ.get("BLAZEFS_MOUNT_OPTS", "").strip(",")
# tools/test runs everything under one directory of its own, so its leak check
# counts only the mounts and daemons this run started.
RUN_DIR = os.environ.get("BZ_RUN_DIR") or "/tmp"
# the writeback cache is the default; BLAZEFS_MOUNT_OPTS=no_writeback_cache
# runs the suite without it (tools/test does both)
WRITEBACK = "no_writeback_cache" not in EXTRA_OPTS.split(",")


AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(a, b, flags):
    """renameat2(2) with flags (RENAME_NOREPLACE, RENAME_EXCHANGE)."""
    rc = _libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags)
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def write(p, data, mode="wb"):
    with open(p, mode) as f:
        f.write(data)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def join_opts(*parts):
    return ",".join(p for p in parts if p)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == path:
                return True
    return False


def fusermount_u(mnt, lazy=False, tries=30):
    for _ in range(tries):
        if not is_mounted(mnt):
            return True
        args = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [mnt]
        if subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return True
        time.sleep(0.1)
    return not is_mounted(mnt)


class Mount:
    """One blazefs daemon (run with -f so we own its pid) on store -> mnt."""

    def __init__(self, store, mnt, opts=""):
        self.store = store
        self.mnt = mnt
        self.opts = opts
        self.proc = None
        self.log = None
        self.logpath = store.rstrip("/") + ".log"

    def start(self, opts=None, extra_args=(), check=True):
        if opts is not None:
            self.opts = opts
        assert os.path.exists(BIN), f"daemon not built: {BIN}"
        args = [BIN, "-f"] + list(extra_args)
        o = join_opts(EXTRA_OPTS, self.opts)
        if o:
            args += ["-o", o]
        args += [self.store, self.mnt]
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if is_mounted(self.mnt):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if check:
            rc = self.proc.poll()
            self.stop()
            raise AssertionError(f"mount failed (rc {rc}): {self.logtext()}")
        return self

    def logtext(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def path(self, *names):
        return os.path.join(self.mnt, *names)

    def fsync_root(self):
        """What `sync MOUNTPOINT` does: fsync of the mount's root."""
        fd = os.open(self.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def stop(self, timeout=60):
        """Clean unmount; returns the daemon's exit code."""
        rc = None
        try:
            if not fusermount_u(self.mnt):
                # busy (a test failed with a file still open): detach it
                fusermount_u(self.mnt, lazy=True)
                timeout = 5
        finally:
            if self.proc is not None:
                try:
                    rc = self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    rc = self.proc.wait()
                self.proc = None
            if is_mounted(self.mnt):
                fusermount_u(self.mnt, lazy=True)
            if self.log:
                self.log.close()
                self.log = None
        return rc

    def kill9(self):
        """SIGKILL the daemon, then clear the dead mount."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        fusermount_u(self.mnt, lazy=True)
        if self.log:
            self.log.close()
            self.log = None


@pytest.fixture
def workdir():
    """A world-traversable scratch directory (non-root tests need it)."""
    d = tempfile.mkdtemp(prefix="bzmt.", dir=RUN_DIR)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        for sub in os.listdir(d):
            p = os.path.join(d, sub)
            if is_mounted(p):
                fusermount_u(p, lazy=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_mount(workdir):
    """Factory: make_mount(name="a", opts="") -> an unstarted Mount."""
    mounts = []

    def make(name="a", opts=""):
        store = os.path.join(workdir, name + ".store")
        mnt = os.path.join(workdir, name + ".mnt")
        os.makedirs(mnt, exist_ok=True)
        os.chmod(mnt, 0o755)
        m = Mount(store, mnt, opts)
        mounts.append(m)
        return m

    bad = []
    try:
        yield make
    finally:
        for m in mounts:
            running = m.proc is not None
            rc = m.stop()
            if running and rc != 0:
                bad.append(f"{m.mnt}: daemon exit code {rc}: {m.logtext()}")
    # a clean unmount must end the daemon with 0 (also catches sanitizer reports)
    assert not bad, "\n".join(bad)


@pytest.fixture
def bz(make_mount):
    """A mounted blazefs with the default (plus BLAZEFS_MOUNT_OPTS) options."""
    return make_mount().start()


def expect_bad_option(m, opt, message):
    """The daemon refuses -o opt for Mount m before mounting: exit code 1,
    message (bytes) on stderr, nothing mounted."""
    r = subprocess.run([BIN, "-o", opt, m.store, m.mnt], capture_output=True, timeout=30)
    assert r.returncode == 1
    assert message in r.stderr
    assert not is_mounted(m.mnt)


def expect_refused(fn, *args):
    """fn must be refused with EPERM. With the writeback cache the kernel
    acknowledges write() itself and the refusal surfaces at fsync/close
    (as EPERM or EIO); fn then returns normally and the caller's fsync/close
    reports it -- see refused_seq."""
    with pytest.raises(OSError) as ei:
        fn(*args)
    assert ei.value.errno == errno.EPERM, ei.value
