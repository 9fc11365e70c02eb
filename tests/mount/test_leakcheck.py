"""tools/leakcheck, the end-of-run check of tools/test, counts only the mounts
and daemons that belong to one run directory: a blazefs mount somebody else
started (a user's own, another CI job's) must not turn the run red, and a
mount the run itself leaked must."""
import os
import shutil
import subprocess
import tempfile

from conftest import REPO, RUN_DIR, Mount

LEAKCHECK = os.path.join(REPO, "tools", "leakcheck")


def leakcheck(d):
    r = subprocess.run([LEAKCHECK, d], capture_output=True, text=True)
    lines = dict(l.split(" ", 1) for l in r.stdout.splitlines() if " " in l)
    return r.returncode, int(lines["mounts"]), int(lines["daemons"].split()[0])


def test_leakcheck_counts_only_its_own_run(workdir):
    # A "foreign" mount outside the run directory (with a space in its path,
    # as /proc/mounts escapes it).
    foreign = tempfile.mkdtemp(prefix="bz foreign.", dir="/tmp")
    os.chmod(foreign, 0o755)
    mine = os.path.join(workdir, "run")
    os.makedirs(mine)
    m = Mount(os.path.join(foreign, "store"), os.path.join(foreign, "mnt"))
    os.makedirs(m.mnt)
    try:
        m.start()
        assert leakcheck(mine) == (0, 0, 0)
        assert leakcheck(foreign) == (1, 1, 1)
        # the same check on this run's own directory sees a mount it leaked
        if not os.path.realpath(foreign).startswith(os.path.realpath(RUN_DIR) + "/"):
            own = Mount(os.path.join(mine, "store"), os.path.join(mine, "mnt"))
            os.makedirs(own.mnt)
            try:
                own.start()
                assert leakcheck(mine) == (1, 1, 1)
            finally:
                own.stop()
            assert leakcheck(mine) == (0, 0, 0)
    finally:
        m.stop()
        shutil.rmtree(foreign, ignore_errors=True)
    assert leakcheck(foreign)[0] == 0


def test_leakcheck_end_clears_a_killed_run(workdir):
    """tools/test runs `leakcheck --end` after the outer timeout killed
    pytest (no fixture ran): it ends that run's daemons and unmounts its
    mounts -- a blazefs mount and a tmpfs a test mounted as a store's disk,
    as CI once left behind -- and touches nothing outside the run."""
    foreign = tempfile.mkdtemp(prefix="bz foreign.", dir="/tmp")
    os.chmod(foreign, 0o755)
    mine = os.path.join(workdir, "run")
    m = Mount(os.path.join(foreign, "store"), os.path.join(foreign, "mnt"))
    own = Mount(os.path.join(mine, "store"), os.path.join(mine, "mnt"))
    disk = os.path.join(mine, "disk")
    for d in (m.mnt, own.mnt, disk):
        os.makedirs(d)
    try:
        m.start()
        own.start()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk], capture_output=True)
        tmpfs = r.returncode == 0
        assert leakcheck(mine) == (1, 1, 1)
        r = subprocess.run([LEAKCHECK, "--end", mine], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert leakcheck(mine) == (0, 0, 0)
        assert not os.path.ismount(disk) or not tmpfs
        assert own.proc.wait(timeout=30) != 0  # SIGKILLed
        own.kill9()  # (the harness's record of it)
        assert leakcheck(foreign) == (1, 1, 1)  # untouched
        with open(m.path("x"), "w") as f:
            f.write("still mounted\n")
    finally:
        own.stop()
        if os.path.ismount(disk):
            subprocess.run(["umount", disk])
        m.stop()
        shutil.rmtree(foreign, ignore_errors=True)
