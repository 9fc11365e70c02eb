"""Fixtures for the mount-level tests: run the real blazefs daemon on a fresh
store and mount point, and always tear it down (fusermount3 -u, then kill the
daemon if it is still alive, then wait for it).

Environment:
  BLAZEFS_BIN         the daemon (default: <repo>/build/fs/blazefs)
  BLAZEFS_MOUNT_OPTS  extra -o options for every mount (e.g. no_writeback_cache,
                      workers=0), so the same suite runs in several modes
  BZ_TEST_TIMEOUT     seconds a test may take (default 300) before the
                      watchdog reports where it hangs and ends its daemons
  BZ_LOG_DIR          where the watchdog writes its reports (tools/test's
                      build-logs; default the run directory)
Run as root (FUSE mounts, allow_other, setpriv).

The watchdog: a test that hangs (a deadlock in the daemon, a request the
kernel never gets answered) would otherwise stop the whole run at its outer
timeout with nothing said and its mounts left behind. After BZ_TEST_TIMEOUT
seconds it writes a report -- every daemon thread's stack (gdb), the
kernel stacks of the daemon's and of this process's threads, the Python
stacks, the daemon's log -- then SIGKILLs the test's daemons, which aborts
their FUSE connections: every call blocked on them returns ENOTCONN, the
test fails, and its fixtures unmount and clean up as after any failure.
"""
import ctypes
import errno
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.abspath(os.environ.get("BLAZEFS_BIN", os.path.join(REPO, "build", "fs", "blazefs")))
EXTRA_OPTS = os.environ.get("BLAZEFS_MOUNT_OPTS", "").strip(",")
# tools/test runs everything under one directory of its own, so its leak check
# counts only the mounts and daemons this run started.
RUN_DIR = os.environ.get("BZ_RUN_DIR") or "/tmp"
LOG_DIR = os.environ.get("BZ_LOG_DIR") or RUN_DIR
TEST_TIMEOUT = float(os.environ.get("BZ_TEST_TIMEOUT") or 300)
# the daemons now running (Mount.start adds, stop and kill9 remove): the
# watchdog's to report and end
LIVE = {}
LIVE_LOCK = threading.Lock()
# pids the watchdog killed (their exit code is its report, not a failure of
# their own)
KILLED = set()
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
        with LIVE_LOCK:
            LIVE[self.proc.pid] = (self.proc, self)
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
                with LIVE_LOCK:
                    LIVE.pop(self.proc.pid, None)
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
            with LIVE_LOCK:
                LIVE.pop(self.proc.pid, None)
            self.proc = None
        fusermount_u(self.mnt, lazy=True)
        if self.log:
            self.log.close()
            self.log = None


def _read(path, limit=20000):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError as e:
        return f"({e})"


def _task_stacks(pid):
    out = []
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError:
        return [f"  (no /proc/{pid})"]
    for tid in tids:
        d = f"/proc/{pid}/task/{tid}"
        out.append(f"  task {tid} {_read(d + '/comm').strip()} wchan={_read(d + '/wchan').strip()}")
        out += ["    " + ln for ln in _read(d + "/stack").splitlines()]
    return out


def hang_report(nodeid):
    """Where the test hangs: written to LOG_DIR/hang-*.txt; returns the path."""
    lines = []
    summary = [f"test {nodeid} still running after {TEST_TIMEOUT:.0f}s"]
    with LIVE_LOCK:
        live = list(LIVE.values())
    for proc, m in live:
        lines.append(f"== daemon {proc.pid}: {m.store} on {m.mnt} (-o {join_opts(EXTRA_OPTS, m.opts)})")
        try:
            r = subprocess.run(["gdb", "-p", str(proc.pid), "-batch", "-nx", "-ex", "set pagination off",
                                "-ex", "thread apply all bt"], capture_output=True, text=True, timeout=120)
            bt = [ln for ln in r.stdout.splitlines() if ln.startswith(("Thread ", "#"))]
            lines += bt
            summary.append(f"daemon {proc.pid}: each thread's innermost frame in the daemon's own code")
            summary += _bt_summary(bt)
        except (OSError, subprocess.TimeoutExpired) as e:
            lines.append(f"  (gdb: {e})")
        lines.append("-- kernel stacks")
        lines += _task_stacks(proc.pid)
        lines.append("-- daemon log (tail)")
        lines += m.logtext().splitlines()[-40:]
    lines.append(f"== this process ({os.getpid()}): kernel stacks")
    lines += _task_stacks(os.getpid())
    lines.append("-- Python stacks")
    for tid, frame in sys._current_frames().items():
        if tid != threading.get_ident():
            stack = "".join(traceback.format_stack(frame)).splitlines()
            lines.append(f"  thread {tid}")
            lines += ["    " + ln for ln in stack]
            if tid == threading.main_thread().ident:
                summary.append("the test waits in:")
                summary += ["  " + ln for ln in stack[-6:]]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in nodeid.split("/")[-1])[:150]
    path = os.path.join(LOG_DIR, f"hang-{os.environ.get('BZ_SUITE_LABEL', 'pytest')}-{safe}.txt")
    with open(path, "w") as f:
        f.write("\n".join(summary + ["== full report"] + lines) + "\n")
    return path


def _bt_summary(bt):
    """One line per gdb thread: its name and the innermost frame in fs/,
    storage/ or workers/ other than the lock wrappers (else its frame #0)."""
    def own(ln):
        return any(d in ln for d in ("../fs/", "../storage/", "../workers/")) and \
            not any(w in ln for w in ("tsa.h:", "storage/util.c:"))
    out, head, frame = [], None, None
    for ln in bt + ["Thread end"]:
        if ln.startswith("Thread "):
            if head:
                out.append(f"  {head}: {frame or '?'}")
            m = re.search(r'LWP (\d+)\)\s*"([^"]*)"', ln)
            head = f"{m.group(1)} {m.group(2)}" if m else ln
            frame = None
        elif frame is None or (own(ln) and not own(frame)):
            frame = re.sub(r"^#\d+\s+(0x[0-9a-f]+ in )?", "", ln)[:200]
    return out


@pytest.fixture(autouse=True)
def watchdog(request):
    """Ends a hung test (see the module's docstring)."""
    fired = []

    def fire():
        try:
            fired.append(hang_report(request.node.nodeid))
        except Exception as e:  # the daemons are ended whatever the report did
            fired.append(f"(no report: {e!r})")
        with LIVE_LOCK:
            live = list(LIVE.values())
        for proc, _ in live:
            KILLED.add(proc.pid)
            try:
                proc.kill()  # its /dev/fuse closes: the connection is aborted
            except OSError:
                pass

    timer = threading.Timer(TEST_TIMEOUT, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
    if fired:
        pytest.fail(f"hung for {TEST_TIMEOUT:.0f}s: its daemons were killed; where it hung: {fired[0]}")


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
            pid = m.proc.pid if m.proc is not None else None
            rc = m.stop()
            if pid is not None and rc != 0 and pid not in KILLED:
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
