"""bpeers — tools/bench: the peers (ext4, btrfs on a loop file, passthrough_ll, blazefs mounts),
making and releasing them, and emergency cleanup."""
import glob
import gzip
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from bcommon import *  # noqa: F401,F403

# ---------------------------------------------------------------- mounts

ACTIVE = {}   # mountpoint -> Popen of its daemon (for emergency cleanup)
WARNINGS = []  # printed under the table and kept in results.json


def is_mounted(path):
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if line.split()[4] == path:
                    return True
    except OSError:
        pass
    return False


def proc_status(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
    except (OSError, ValueError):
        pass
    return None


class Peer:
    """One filesystem under test, on a fresh directory per workload run."""

    def __init__(self, pid_, label, root):
        self.id = pid_
        self.label = label
        self.root = root
        self.broken = None   # reason, once a mount failed
        self.proc = None
        self.base = None
        self.dir = None      # where the workload writes

    # Fresh backing store for one workload run.
    def fresh(self):
        self.base = tempfile.mkdtemp(prefix=self.id + ".", dir=self.root)

    def discard(self):
        if self.proc is not None:
            self.unmount()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
        self.base = None
        self.dir = None

    def mount(self):
        raise NotImplementedError

    def unmount(self):
        pass

    @property
    def fuse(self):
        return False

    def daemon_pid(self):
        return self.proc.pid if self.proc else None


class NativePeer(Peer):
    def fresh(self):
        super().fresh()
        self.dir = self.base

    def mount(self):
        self.dir = self.base
        return 0.0


class FusePeer(Peer):
    def __init__(self, pid_, label, root, argv_fn, exe):
        super().__init__(pid_, label, root)
        self.argv_fn = argv_fn   # (store, mnt) -> argv
        self.exe = exe
        self.logpath = None
        self.extra_opts = []

    @property
    def fuse(self):
        return True

    def fresh(self):
        super().fresh()
        self.store = os.path.join(self.base, "store")
        self.mnt = os.path.join(self.base, "mnt")
        os.makedirs(self.mnt)
        if self.id == "passthrough":
            os.makedirs(self.store)
        self.logpath = os.path.join(self.base, "daemon.log")

    def mount(self, timeout=30.0):
        """Starts the daemon in the foreground; returns seconds from exec to
        the mountpoint answering stat. Raises NA with the daemon's words."""
        if self.broken:
            raise NA(self.broken)
        if self.exe is None or not os.access(self.exe, os.X_OK):
            raise NA("not built: %s" % self.exe)
        argv = self.argv_fn(self.store, self.mnt, self.extra_opts)
        logf = open(self.logpath, "ab")
        parent_dev = os.stat(os.path.dirname(self.mnt)).st_dev
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logf.close()
        ACTIVE[self.mnt] = self.proc
        while True:
            try:
                if os.stat(self.mnt).st_dev != parent_dev:
                    dt = time.perf_counter() - t0
                    self.dir = self.mnt
                    return dt
            except OSError:
                pass
            rc = self.proc.poll()
            if rc is not None:
                reason = "daemon exited %d at mount: %s" % (rc, self.log_tail())
                self._reap()
                raise NA(reason)
            if time.perf_counter() - t0 > timeout:
                self.kill()
                raise NA("mount did not answer stat within %.0f s: %s"
                         % (timeout, self.log_tail()))
            time.sleep(0.0005)

    def log_tail(self, n=2):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
            return " | ".join(lines[-n:]) or "(no output)"
        except OSError:
            return "(no log)"

    def _reap(self):
        ACTIVE.pop(self.mnt, None)
        self.proc = None
        self.dir = None

    def kill(self):
        if self.proc is None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if is_mounted(self.mnt):
            sh(["fusermount3", "-uz", self.mnt])
        self._reap()

    def unmount(self, timeout=600.0):
        """Clean unmount (blazefs checkpoints here); returns seconds or None."""
        if self.proc is None:
            return None
        t0 = time.perf_counter()
        for _ in range(50):
            r = sh(["fusermount3", "-u", self.mnt])
            if r.returncode == 0 or not is_mounted(self.mnt):
                break
            time.sleep(0.2)
        else:
            log("  ! %s: fusermount3 -u failed: %s; lazy unmount"
                % (self.id, r.stderr.strip()))
            sh(["fusermount3", "-uz", self.mnt])
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            msg = "%s: daemon did not exit %.0f s after unmount; killed" % (
                self.id, timeout)
            log("  ! " + msg)
            WARNINGS.append(msg)
            self.kill()
            return None
        dt = time.perf_counter() - t0
        rc = self.proc.returncode
        self._reap()
        if rc != 0:
            msg = "%s: daemon exit status %s after unmount: %s" % (
                self.id, rc, self.log_tail())
            log("  ! " + msg)
            WARNINGS.append(msg)
        return dt

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


def emergency_cleanup():
    for proc in list(CHILDREN):
        kill_group(proc)
        CHILDREN.discard(proc)
    for mnt, proc in list(ACTIVE.items()):
        sh(["fusermount3", "-u", mnt])
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if is_mounted(mnt):
            sh(["fusermount3", "-uz", mnt])
        ACTIVE.pop(mnt, None)


LOOPS = {}     # loop device -> mountpoint (for emergency cleanup)
IMAGES = set()  # btrfs image files made by this run
SCRATCH = [None]  # the run's scratch root: every mount under it is ours


class BtrfsPeer(Peer):
    """btrfs with compress=zstd:LEVEL on a sparse image file in the scratch
    directory, attached with losetup (direct I/O, so the data is not cached
    twice) — a fresh filesystem for every workload run."""

    def __init__(self, pid_, label, root, level, img_bytes):
        super().__init__(pid_, label, root)
        self.level = level
        self.img_bytes = img_bytes
        self.dev = None
        self.mnt = None

    def fresh(self):
        super().fresh()
        self.img = os.path.join(self.base, "btrfs.img")
        self.mnt = os.path.join(self.base, "mnt")
        os.makedirs(self.mnt)
        IMAGES.add(self.img)
        with open(self.img, "wb") as f:
            f.truncate(self.img_bytes)
        r = sh(["mkfs.btrfs", "-q", "-f", "-K", self.img])
        if r.returncode != 0:
            raise NA("mkfs.btrfs: " + (r.stderr.strip() or r.stdout.strip())[-200:])

    def mount(self):
        if self.broken:
            raise NA(self.broken)
        r = sh(["losetup", "--find", "--show", "--direct-io=on", self.img])
        if r.returncode != 0:
            r = sh(["losetup", "--find", "--show", self.img])
        if r.returncode != 0:
            raise NA("losetup: " + r.stderr.strip()[-200:])
        self.dev = r.stdout.strip()
        LOOPS[self.dev] = self.mnt
        t0 = time.perf_counter()
        r = sh(["mount", "-t", "btrfs", "-o", "compress=zstd:%d" % self.level,
                self.dev, self.mnt])
        if r.returncode != 0:
            self.unmount()
            raise NA("mount btrfs: " + r.stderr.strip()[-200:])
        self.dir = self.mnt
        return time.perf_counter() - t0

    def unmount(self):
        if self.dev is None:
            return None
        release_loop(self.dev, self.mnt)
        self.dev = None
        self.dir = None
        return 0.0

    def discard(self):
        try:
            self.unmount()
        finally:
            IMAGES.discard(getattr(self, "img", None))
            super().discard()


def release_loop(dev, mnt):
    """umount (retrying while busy, lazy as a last resort) and detach."""
    if mnt and is_mounted(mnt):
        for _ in range(25):
            if sh(["umount", mnt]).returncode == 0 or not is_mounted(mnt):
                break
            time.sleep(0.2)
        else:
            sh(["umount", "-l", mnt])
            WARNINGS.append("%s: umount failed; lazily unmounted" % mnt)
    r = sh(["losetup", "-d", dev])
    if r.returncode != 0 and "No such device" not in r.stderr:
        WARNINGS.append("losetup -d %s: %s" % (dev, r.stderr.strip()))
    LOOPS.pop(dev, None)


def our_mounts():
    """Mountpoints under this run's scratch root (deepest first)."""
    root = SCRATCH[0]
    out = []
    if not root:
        return out
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                mp = parts[4].replace("\\040", " ")
                fstype = parts[parts.index("-") + 1]
                if mp.startswith(root + "/"):
                    out.append((mp, fstype))
    except OSError:
        pass
    return sorted(out, key=lambda m: -len(m[0]))


def release_everything():
    """Emergency cleanup: every workload child, FUSE daemon, btrfs mount and
    loop device of this run, and nothing else."""
    emergency_cleanup()
    for dev, mnt in list(LOOPS.items()):
        release_loop(dev, mnt)
    for img in list(IMAGES):  # attached by a losetup we were interrupted in
        r = sh(["losetup", "-j", img])
        for line in r.stdout.splitlines():
            dev = line.split(":", 1)[0]
            for mp, _ in our_mounts():
                sh(["umount", mp])
            sh(["losetup", "-d", dev])
    for mp, fstype in our_mounts():
        if fstype.startswith("fuse"):
            sh(["fusermount3", "-uz", mp])
        else:
            sh(["umount", "-l", mp])
        WARNINGS.append("left-over mount %s (%s) released" % (mp, fstype))


def build_passthrough(tmp):
    """Compiles libfuse's passthrough_ll example; returns (path, None) or
    (None, reason)."""
    r = sh(["dpkg", "-L", "libfuse3-dev"])
    files = [l for l in r.stdout.split() if "passthrough" in os.path.basename(l)]
    src = [f for f in files if re.search(r"/passthrough_ll\.c(\.gz)?$", f)]
    if not src:
        return None, "passthrough_ll.c not found in libfuse3-dev (dpkg -L)"
    d = os.path.join(tmp, "passthrough")
    os.makedirs(d, exist_ok=True)
    for f in files:  # the .c and its helper header, gunzipped if needed
        if not os.path.isfile(f):
            continue
        name = os.path.basename(f)
        if name.endswith(".gz"):
            with gzip.open(f, "rb") as fi, open(os.path.join(d, name[:-3]), "wb") as fo:
                fo.write(fi.read())
        else:
            shutil.copy(f, d)
    pc = sh(["pkg-config", "--cflags", "--libs", "fuse3"])
    if pc.returncode != 0:
        return None, "pkg-config fuse3 failed: " + pc.stderr.strip()
    exe = os.path.join(d, "passthrough_ll")
    cc = sh("cc -O2 -o %s %s %s" % (exe, os.path.join(d, "passthrough_ll.c"),
                                    pc.stdout.strip()))
    if cc.returncode != 0:
        return None, "cc passthrough_ll.c failed: " + cc.stderr.strip()[-200:]
    return exe, None


def build_loadgen(tmp):
    exe = os.path.join(tmp, "loadgen")
    r = sh(["cc", "-O2", "-pthread", "-o", exe, os.path.join(BENCH_D, "loadgen.c")])
    if r.returncode != 0:
        return None, "cc loadgen.c failed: " + r.stderr.strip()[-200:]
    return exe, None


def btrfs_unavailable():
    """None, or why btrfs peers cannot run here."""
    for tool in ("mkfs.btrfs", "losetup", "compsize"):
        if not shutil.which(tool):
            return "%s not found (tools/deps installs btrfs-progs, btrfs-compsize)" % tool
    if os.geteuid() != 0:
        return "needs root (losetup, mount)"
    with open("/proc/filesystems") as f:
        if "btrfs" not in f.read():
            sh(["modprobe", "btrfs"])
    with open("/proc/filesystems") as f:
        if "btrfs" not in f.read():
            return "the kernel has no btrfs (modprobe btrfs failed)"
    return None


def make_peers(root, cfg, blazefs, pt_exe, pt_err, wanted):
    def pt_argv(store, mnt, extra):
        return [pt_exe, "-f", "-o", "source=" + store] + extra + [mnt]

    def blz(opts):
        def argv(store, mnt, extra):
            o = ",".join([x for x in [opts] + extra if x])
            return [blazefs, "-f"] + (["-o", o] if o else []) + [store, mnt]
        return argv

    labels = dict(PEER_LABELS)
    peers = {}
    why_btrfs = btrfs_unavailable() if ("btrfs1" in wanted or "btrfs3" in wanted) else None
    for pid_ in wanted:
        if pid_ == "ext4":
            p = NativePeer("ext4", labels[pid_], root)
        elif pid_ in ("btrfs1", "btrfs3"):
            p = BtrfsPeer(pid_, labels[pid_], root, int(pid_[-1]), cfg["btrfs_img"])
            p.broken = why_btrfs
        elif pid_ == "passthrough":
            p = FusePeer("passthrough", labels[pid_], root, pt_argv, pt_exe)
            p.broken = pt_err
        else:
            p = FusePeer(pid_, labels[pid_], root, blz(BLAZE_OPTS[pid_]), blazefs)
            if blazefs is None or not os.access(blazefs, os.X_OK):
                p.broken = "blazefs binary not found: %s" % blazefs
        peers[pid_] = p
    return peers


