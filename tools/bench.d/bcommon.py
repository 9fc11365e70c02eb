"""bcommon — tools/bench: paths, run configurations, logging and child processes
(shared by every bench module; see tools/bench)."""
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

BENCH_D = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.dirname(BENCH_D)
REPO = os.path.dirname(HERE)
MiB = 1 << 20
GiB = 1 << 30

# ---------------------------------------------------------------- configuration

# wbc: run "blazefs -o no_writeback_cache" beside the default mount (which has
# the writeback cache) on every
# workload (quick: only on the logger, the workload it exists for).
# *_budget: seconds after which building a big store stops; the bar then
# says at how many files / appends it was measured.
QUICK = dict(secs=1.0, fio_secs=1.5, echo_n=2000, cp_files=2000, cp_mb=30,
             par_mb=64, par_jobs=2, rot_mb=32, rot_n=10, small_files=10000,
             files_1k=1000, many_files=10000, files_budget=60, mount_reps=3,
             rss_bytes=256 * MiB, many_appends=50000, appends_budget=30,
             read_file_mb=64, btrfs_img=8 * GiB, wbc=False)
THOROUGH = dict(secs=5, fio_secs=6, echo_n=20000, cp_files=0, cp_mb=0,
                par_mb=512, par_jobs=2, rot_mb=32, rot_n=10, small_files=100000,
                files_1k=1000, many_files=1000000, files_budget=200, mount_reps=3,
                rss_bytes=4 * GiB, many_appends=3000000, appends_budget=150,
                read_file_mb=256, btrfs_img=32 * GiB, wbc=True)
BAR_FILES = 100000          # "100k files of 100 B"
BAR_MANY_FILES = 1000000    # "mount time and checkpoint time at 1 M files"
BAR_STREAM = 4 * GiB        # "daemon RSS streaming 4 GiB"
BAR_APPENDS = 3000000       # "reading a 3 M-append file"
CACHE_MB = 32               # blazefs is mounted with cache_mb=32 for the RSS bars

# peer id -> column label, in column order
PEER_LABELS = [("ext4", "ext4"), ("btrfs1", "btrfs zstd:1"), ("btrfs3", "btrfs zstd:3"),
               ("passthrough", "passthrough"), ("blz-w0", "blazefs w=0"),
               ("blz-w2", "blazefs w=2"), ("blazefs", "blazefs"),
               ("blz-nowb", "blazefs nowb")]
ALL_PEERS = [p for p, _ in PEER_LABELS]
BLAZE_PEERS = ["blz-w0", "blz-w2", "blazefs", "blz-nowb"]
BLAZE_OPTS = {"blz-w0": "workers=0", "blz-w2": "workers=2", "blazefs": "",
              "blz-nowb": "no_writeback_cache"}
PRIMARY = "blazefs"   # the default mount: the bars are judged on it

TEXT_COMP = 75  # fio buffer_compress_percentage for "text-like"


class NA(Exception):
    """A figure that cannot be measured; the message is the reason."""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    """Runs a helper command; a missing program is exit status 127, like a shell."""
    try:
        return subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True,
                              text=True, **kw)
    except FileNotFoundError as e:
        return subprocess.CompletedProcess(cmd, 127, "", "%s: %s" % (e.filename, e.strerror))


def sizestr(n):
    if n < MiB:
        return "%.1f KiB" % (n / 1024)
    if n >= GiB and n % GiB == 0:
        return "%d GiB" % (n // GiB)
    if n % MiB == 0:
        return "%d MiB" % (n // MiB)
    return "%.1f MB" % (n / 1e6)


def count(n):
    if n >= 1000000 and n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return "%dk" % (n // 1000)
    return str(n)


# ---------------------------------------------------------------- child processes

CHILDREN = set()   # Popen of workload commands, each in its own process group


def run_workload(cmd, timeout, env=None):
    """Runs a workload command (fio, cp, bash) in its own process group so a
    timeout or Ctrl-C ends all of it (fio forks one process per job).
    Returns CompletedProcess; raises NA on timeout."""
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    CHILDREN.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise NA("%s timed out after %.0f s" % (os.path.basename(cmd[0]), timeout))
    finally:
        if proc.poll() is None:
            kill_group(proc)
        CHILDREN.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=30)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        pass


