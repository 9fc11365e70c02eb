"""bmeasure — tools/bench: the results store, measuring helpers (fio, stored bytes, RSS,
checkpoint times) and the inputs (text tree, machine description)."""
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
from bpeers import *  # noqa: F401,F403

# ---------------------------------------------------------------- results

class Results:
    def __init__(self):
        self.rows = []    # dicts: key, title, unit, peer, value|None, na, extra
        self.titles = {}  # key -> (title, unit, family)

    def define(self, key, title, unit, family):
        self.titles.setdefault(key, (title, unit, family))

    def add(self, key, peer, value, **extra):
        self.rows.append(dict(key=key, peer=peer, value=value, na=None, extra=extra))

    def add_na(self, keys, peer, reason):
        for k in keys:
            if self.get(k, peer) is None:
                self.rows.append(dict(key=k, peer=peer, value=None, na=reason, extra={}))

    def get(self, key, peer):
        vals = [r["value"] for r in self.rows
                if r["key"] == key and r["peer"] == peer and r["value"] is not None]
        return statistics.median(vals) if vals else None

    def extra(self, key, peer):
        for r in self.rows:
            if r["key"] == key and r["peer"] == peer and r["value"] is not None:
                return r["extra"]
        return {}

    def reason(self, key, peer):
        for r in self.rows:
            if r["key"] == key and r["peer"] == peer and r["na"]:
                return r["na"]
        return "not measured (peer or section not selected)"

    def present(self, key, peer):
        return any(r["key"] == key and r["peer"] == peer for r in self.rows)


# ---------------------------------------------------------------- measuring helpers

def run_fio(directory, bs, jobs, runtime, size, fsync, comp, timeout_extra=120):
    env = dict(os.environ, BENCH_DIR=directory, BENCH_BS=str(bs),
               BENCH_JOBS=str(jobs), BENCH_RUNTIME=str(runtime),
               BENCH_SIZE=str(size), BENCH_FSYNC=str(fsync), BENCH_COMP=str(comp))
    cmd = ["fio", "--output-format=json", "--eta=never",
           os.path.join(BENCH_D, "write.fio")]
    r = run_workload(cmd, runtime + timeout_extra, env=env)
    out = r.stdout
    i = out.find("{")
    try:
        j = json.loads(out[i:]) if i >= 0 else None
    except json.JSONDecodeError:
        j = None
    if j is None:
        raise NA("fio failed (rc %d): %s" % (r.returncode,
                                              (r.stderr.strip() or out.strip())[-200:]))
    job = j["jobs"][0]
    if job.get("error") or r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["error %s" % job.get("error")])[-1]
        raise NA("fio error %s: %s" % (job.get("error"), msg[-160:]))
    w = job["write"]
    return dict(iops=w["iops"], bw=w["bw_bytes"], bytes=w["io_bytes"],
                runtime_ms=w["runtime"])


def run_fio_file(directory, name, nbytes, limit=900):
    """Writes one file of nbytes, text-like, 1 MiB appends (fio, size-bound)."""
    sub = tempfile.mkdtemp(prefix=name + ".", dir=directory)
    return run_fio(sub, "1M", 1, limit, nbytes, 0, TEXT_COMP, timeout_extra=0)


def run_json(cmd, timeout):
    r = run_workload(cmd, timeout)
    if r.returncode != 0:
        raise NA("%s failed (rc %d): %s" % (os.path.basename(cmd[0]), r.returncode,
                                             (r.stderr.strip() or r.stdout.strip())[-200:]))
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise NA("%s printed no JSON: %r" % (cmd[0], r.stdout[-200:]))


def tree_bytes(path, alloc=False):
    total = 0
    for dp, dn, fn in os.walk(path):
        for f in fn:
            try:
                st = os.lstat(os.path.join(dp, f))
            except OSError:
                continue
            total += st.st_blocks * 512 if alloc else st.st_size
    return total


def compsize_bytes(path):
    """btrfs: bytes on disk of the files under path (compsize's "Disk Usage")."""
    r = sh(["compsize", "-b", path])
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "TOTAL" and len(parts) >= 5:
            return int(parts[2]), int(parts[3])
    raise NA("compsize %s: %s" % (path, (r.stderr.strip() or r.stdout.strip())[-200:]))


def blazefs_store_bytes(store):
    """(store.db allocated bytes, WAL allocated bytes, store.db apparent size)."""
    db = os.path.join(store, "store.db")
    try:
        st = os.stat(db)
    except OSError as e:
        raise NA("store.db: %s" % e.strerror)
    wal = 0
    for w in glob.glob(os.path.join(store, "wal.*")):
        wal += os.stat(w).st_blocks * 512
    return st.st_blocks * 512, wal, st.st_size


def stored_bytes(p, path):
    """Bytes the peer spends on the files under path, and how it was measured.
    blazefs is unmounted (its clean unmount checkpoints) before measuring."""
    if p.id in ("ext4", "passthrough"):
        src = path if p.id == "ext4" else path.replace(p.mnt, p.store, 1)
        return tree_bytes(src, alloc=True), "du: allocated blocks", {}
    if isinstance(p, BtrfsPeer):
        r = sh(["sync", "-f", path])
        if r.returncode != 0:
            os.sync()
        disk, unc = compsize_bytes(path)
        return disk, "compsize Disk Usage after sync", dict(uncompressed=unc)
    p.unmount()
    db, wal, app = blazefs_store_bytes(p.store)
    return db, ("store.db allocated blocks after a clean unmount (checkpointed); "
                "WAL excluded"), dict(store_db_apparent=app, wal_allocated=wal,
                                      store_dir_allocated=db + wal)


def drop_store_cache(store):
    """Evicts a cleanly unmounted store's files from the page cache (fsync,
    then POSIX_FADV_DONTNEED), so the next mount reads from the disk —
    without a machine-wide sync + drop_caches, which on a shared machine
    takes long and hurts everyone else."""
    for f in glob.glob(os.path.join(store, "*")):
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def read_stats(mnt):
    try:
        with open(os.path.join(mnt, ".blazefs", "stats")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_all(path):
    buf = bytearray(MiB)
    mv = memoryview(buf)
    total = 0
    fd = os.open(path, os.O_RDONLY)
    t0 = time.perf_counter()
    try:
        while True:
            k = os.readv(fd, [mv])
            if k == 0:
                break
            total += k
    finally:
        os.close(fd)
    return total, time.perf_counter() - t0


CKPT_RE = re.compile(r"checkpoint \d+ at lsn \d+:.*?(\d+) us")


def last_checkpoint_us(logpath):
    """The daemon's own timing of the checkpoints of its last session after
    the mount (blazefs -f logs one line per checkpoint: "store: checkpoint N
    at lsn L: ..., T us"): the longest of those logged after the last
    "mounted on" line, i.e. the checkpoint that wrote what the session
    changed and any that store_close added (the last one alone is often a
    light checkpoint that wrote nothing)."""
    try:
        with open(logpath, errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    at = text.rfind(" mounted on ")
    hits = CKPT_RE.findall(text[at:] if at >= 0 else text)
    if not hits:
        raise NA("no 'checkpoint N at lsn L: ... T us' line after the mount in the daemon log")
    return max(int(h) for h in hits)


# ---------------------------------------------------------------- inputs

TREE_FILE_MAX = 256 * 1024   # a tree of many small files, not a few big ones
TEXT_SKIP = re.compile(r"\.(gz|xz|bz2|zst|zip|png|jpg|gif|pdf|woff2?|ico|svgz)$")


def make_text_tree(root, cfg):
    """A tree of real text: /usr/share/doc (gzip'd files unpacked, other
    compressed or binary files skipped) and /usr/include, copied into the
    scratch directory so every peer copies the same bytes from a warm cache."""
    d = os.path.join(root, "cpsrc")
    os.makedirs(d)
    limit_files = cfg["cp_files"] or 1 << 30
    limit_bytes = (cfg["cp_mb"] or 1 << 20) * MiB
    n, total = 0, 0
    srcs = []
    for top in ("/usr/share/doc", "/usr/include"):
        lst = []
        for dp, dn, fn in os.walk(top):
            dn.sort()
            for f in sorted(fn):
                p = os.path.join(dp, f)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                if TEXT_SKIP.search(f) and not f.endswith(".gz"):
                    continue
                if os.path.getsize(p) > TREE_FILE_MAX:
                    continue
                lst.append(p)
        srcs.append(lst)
    # interleave the two trees so a limited (quick) tree has both
    order = []
    for i in range(max(len(x) for x in srcs)):
        for lst in srcs:
            if i < len(lst):
                order.append(lst[i])
    for p in order:
        if n >= limit_files or total >= limit_bytes:
            break
        rel = p.lstrip("/")
        dst = os.path.join(d, rel)
        try:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if p.endswith(".gz"):
                dst = dst[:-3]
                with gzip.open(p, "rb") as fi:
                    data = fi.read()
                if b"\0" in data[:4096]:
                    continue
                with open(dst, "wb") as fo:
                    fo.write(data)
            else:
                shutil.copyfile(p, dst)
        except (OSError, EOFError):
            continue
        n += 1
        total += os.path.getsize(dst)
    return d, n, total


def machine_info(root):
    m = {"nproc": os.cpu_count(), "kernel": platform.release()}
    try:
        with open("/proc/meminfo") as f:
            m["mem_total_mib"] = int(f.readline().split()[1]) // 1024
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/loadavg") as f:
            m["loadavg_start"] = f.read().split()[:3]
    except OSError:
        pass
    r = sh(["df", "--output=source,fstype", root])
    if r.returncode == 0:
        src, fstype = r.stdout.strip().splitlines()[-1].split()[:2]
        m["disk"] = src
        m["fstype"] = fstype
    m["fio"] = sh(["fio", "--version"]).stdout.strip()
    m["libfuse"] = sh(["pkg-config", "--modversion", "fuse3"]).stdout.strip()
    m["btrfs_progs"] = sh(["mkfs.btrfs", "--version"]).stdout.strip().split("\n")[0] \
        if shutil.which("mkfs.btrfs") else None
    g = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    m["blazefs_commit"] = g.stdout.strip() if g.returncode == 0 else None
    m["scratch"] = root
    return m


