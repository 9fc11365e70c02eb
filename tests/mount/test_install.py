"""First use after `meson install` (issue 14.7): the install puts blazefs,
blazectl, their man pages and the examples where Debian expects them, and a
store mounts from an fstab line and with `mount -t fuse.blazefs`.

The build that made BLAZEFS_BIN is installed into a temporary DESTDIR. The
mount part runs in a private mount namespace (unshare -m) in which DESTDIR's
bindir is bind-mounted over the real bindir (e.g. /usr/local/bin), so
mount(8) -> mount.fuse3 -> /bin/sh finds the installed blazefs exactly as it
would after a real install, while nothing outside the namespace changes. The
fstab line is the one the README shows, read from a temporary file with
`mount -T`. Every daemon started here is waited for (or killed) before the
test ends.
"""
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, EXTRA_OPTS, RUN_DIR, join_opts

BUILD = os.path.dirname(os.path.dirname(BIN))
# /bin/sh (dash) without PATH in its environment -- what mount(8) leaves
# to mount.fuse3 -- searches this PATH.
SH_DEFAULT_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
# The fstab options of the README's line (README.md, docs/examples/fstab).
README_FSTAB_OPTS = "defaults,allow_other"


def readme_fstab_line():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 6 and fields[2] == "fuse.blazefs":
                return fields
    raise AssertionError("README.md has no fstab line")


def installed_paths():
    r = subprocess.run(["meson", "introspect", BUILD, "--installed"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # built file -> install path


def store_released(store):
    """True when no process holds the store's lock (the daemon has exited)."""
    try:
        fd = os.open(os.path.join(store, "lock"), os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def daemons_of(store):
    """Pids of blazefs processes serving this test's (unique) store."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"blazefs") for a in argv[:1]) and store.encode() in argv:
            pids.append(int(p))
    return pids


@pytest.fixture
def destdir():
    d = tempfile.mkdtemp(prefix="bzinst.", dir=RUN_DIR)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_meson_install_layout(destdir):
    if not os.path.exists(os.path.join(BUILD, "meson-info")):
        pytest.skip(f"{BIN} is not in a meson build directory")
    paths = installed_paths()
    r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", destdir, "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    by_name = {os.path.basename(v): v for v in paths.values()}
    bindir = os.path.dirname(by_name["blazefs"])
    prefix = os.path.dirname(bindir)
    # Debian layout: both programs in PREFIX/bin, man pages in section 8,
    # docs and examples in share/doc/blazefs
    expect = [
        f"{prefix}/bin/blazefs",
        f"{prefix}/bin/blazectl",
        f"{prefix}/share/man/man8/blazefs.8",
        f"{prefix}/share/man/man8/blazectl.8",
        f"{prefix}/share/doc/blazefs/README.md",
        f"{prefix}/share/doc/blazefs/examples/srv-logs.mount",
        f"{prefix}/share/doc/blazefs/examples/fstab",
    ]
    for p in expect:
        assert p in paths.values(), (p, sorted(paths.values()))
        assert os.path.isfile(destdir + p), p
    for prog in ("blazefs", "blazectl"):
        assert os.access(destdir + f"{prefix}/bin/{prog}", os.X_OK)
    # the man pages render
    for page in ("blazefs.8", "blazectl.8"):
        r = subprocess.run(["man", "-l", "-P", "cat", destdir + f"{prefix}/share/man/man8/{page}"],
                           capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80"))
        assert r.returncode == 0 and "SYNOPSIS" in r.stdout, r.stderr
    # the systemd example is a mount unit for the path its name says
    with open(destdir + f"{prefix}/share/doc/blazefs/examples/srv-logs.mount") as f:
        unit = f.read()
    assert "Where=/srv/logs" in unit and "Type=fuse.blazefs" in unit


def test_fstab_and_mount_t_after_install(destdir, workdir):
    if not os.path.exists(os.path.join(BUILD, "meson-info")):
        pytest.skip(f"{BIN} is not in a meson build directory")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", destdir, "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    bindir = os.path.dirname({os.path.basename(v): v for v in installed_paths().values()}["blazefs"])
    if bindir not in SH_DEFAULT_PATH:
        pytest.skip(f"configured bindir {bindir} is not on /bin/sh's default PATH")
    assert os.path.isdir(bindir)
    fields = readme_fstab_line()
    assert fields[3] == README_FSTAB_OPTS, "README's fstab line changed: update this test"

    store = os.path.join(workdir, "inst.store")
    mnt = os.path.join(workdir, "inst.mnt")
    os.makedirs(mnt)
    fstab = os.path.join(workdir, "fstab")
    with open(fstab, "w") as f:
        f.write(f"{store}  {mnt}  fuse.blazefs  {join_opts(README_FSTAB_OPTS, EXTRA_OPTS)}  0  0\n")
    wait_gone = (f"for i in $(seq 600); do flock -n {store}/lock true && break; sleep 0.1; done; "
                 f"flock -n {store}/lock true")
    script = f"""
set -eu
mount --bind {destdir}{bindir} {bindir}
trap 'umount -l {mnt} 2>/dev/null || true' EXIT
# the fstab line (mount -T reads it from another file than /etc/fstab)
mount -T {fstab} {mnt}
grep " {mnt} fuse.blazefs " /proc/self/mounts
echo "from fstab" >> {mnt}/app.log
blazectl stats --json {mnt} > {workdir}/stats.json
umount {mnt}
{wait_gone}
# mount -t fuse.blazefs STORE MNT
mount -t fuse.blazefs -o {join_opts("noatime", EXTRA_OPTS) or "defaults"} {store} {mnt}
grep " {mnt} fuse.blazefs " /proc/self/mounts
cat {mnt}/app.log
echo "from mount -t" >> {mnt}/app.log
umount {mnt}
{wait_gone}
"""
    try:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{store} {mnt} fuse.blazefs" in r.stdout
        assert "from fstab\n" in r.stdout
        with open(os.path.join(workdir, "stats.json")) as f:
            s = json.load(f)
        assert s["fs"]["store"] == store and s["fs"]["write_bytes"] >= len("from fstab\n")
    finally:
        # the daemons ran in the namespace: end any that is still there
        for _ in range(100):
            if store_released(store):
                break
            time.sleep(0.1)
        for pid in daemons_of(store):
            os.kill(pid, 9)
    # what both mounts wrote is in the store: mount it once more directly
    from conftest import Mount
    m = Mount(store, mnt)
    m.start()
    try:
        with open(os.path.join(mnt, "app.log"), "rb") as f:
            assert f.read() == b"from fstab\nfrom mount -t\n"
    finally:
        assert m.stop() == 0


def test_tools_mount_builds_what_it_prints(workdir):
    """tools/mount (the README's first command) builds every program whose
    command it prints, in a fresh build directory, and each printed command
    works. Mode-independent: runs once, in the default mode."""
    if EXTRA_OPTS:
        pytest.skip("mode-independent: runs in the default mode only")
    store = os.path.join(workdir, "tm.store")
    mnt = os.path.join(workdir, "tm.mnt")
    build = os.path.join(workdir, "build")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, BLAZEFS_BUILD=build)
    try:
        r = subprocess.run([os.path.join(repo, "tools", "mount"), store, mnt], capture_output=True, text=True,
                           env=env, timeout=540)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{store} mounted on {mnt}" in r.stdout
        cmds = {}
        for line in r.stdout.splitlines():
            key, _, rest = line.strip().partition(":")
            if key in ("stats", "install", "unmount"):
                cmds[key] = rest.split("(")[0].split()
        assert set(cmds) == {"stats", "install", "unmount"}, r.stdout
        assert cmds["stats"][0] == os.path.join(build, "tools", "blazectl")
        out = subprocess.run(cmds["stats"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "stages" in out.stdout, out.stdout + out.stderr
        assert cmds["install"][:3] == ["meson", "install", "-C"] and os.path.exists(
            os.path.join(cmds["install"][3], "build.ninja"))
        out = subprocess.run(cmds["unmount"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True)
        for _ in range(300):
            if store_released(store):
                break
            time.sleep(0.1)
        for pid in daemons_of(store):
            os.kill(pid, 9)
