"""Checks of the test harnesses themselves, so that a busy machine cannot
turn them into false alarms.

kill9.py's writers: on a loaded machine a writer process may reach its
open() only after the daemon was SIGKILLed and the mount lazily detached;
the open then creates the file in the plain directory underneath, whose
fsyncs succeed -- and the harness used to count those as acknowledged
blazefs bytes and report them "lost" after recovery (seen in CI: a 25 MB
file in the underlying directory, exactly the "acknowledged" size). A
writer must acknowledge only what it wrote on the mount.

conftest's watchdog: a test whose daemon stops answering is reported (where
every thread waits) and ended after BZ_TEST_TIMEOUT, its mount cleaned up,
instead of stopping the whole run at the outer timeout with nothing said
and the mount left behind (seen in CI: "pytest default did not run (rc
124)" and a store disk still mounted)."""
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

from conftest import BIN, REPO, RUN_DIR, is_mounted

spec = importlib.util.spec_from_file_location("kill9", os.path.join(REPO, "tests", "crash", "kill9.py"))
kill9 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kill9)


def run_writer(d, dev):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        kill9.writer(0, d, w, 1, 4096, dev)
        os._exit(0)
    os.close(w)
    out = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return [l for l in out.decode().split("\n") if l]


def test_kill9_writer_acks_only_on_its_mount():
    d = tempfile.mkdtemp(prefix="bzharness.", dir=RUN_DIR)
    here = os.stat(d).st_dev
    # the directory is not "the mount" (another st_dev): nothing acknowledged
    assert run_writer(d, here + 1) == []
    # the same directory as the mount: the writer acknowledges its bytes
    acks = run_writer(d, here)
    assert acks and int(acks[-1].split()[1]) >= 4096
    for n in os.listdir(d):
        os.unlink(os.path.join(d, n))
    os.rmdir(d)


HUNG_TEST = """
import os, signal
def test_hangs(bz):
    os.kill(bz.proc.pid, signal.SIGSTOP)  # it answers nothing from now on
    os.stat(bz.path("x"))  # a lookup the daemon never answers
"""
CONFTEST = """
import importlib.util
spec = importlib.util.spec_from_file_location("bz_conftest", %r)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
globals().update({k: v for k, v in vars(mod).items() if not k.startswith("__")})
"""


def test_watchdog_ends_a_hung_test():
    d = tempfile.mkdtemp(prefix="bzharness.", dir=RUN_DIR)
    try:
        tests, logs, run = (os.path.join(d, x) for x in ("tests", "logs", "run"))
        for x in (tests, logs, run):
            os.makedirs(x)
            os.chmod(x, 0o755)
        with open(os.path.join(tests, "conftest.py"), "w") as f:
            f.write(CONFTEST % os.path.join(REPO, "tests", "mount", "conftest.py"))
        with open(os.path.join(tests, "test_hung.py"), "w") as f:
            f.write(HUNG_TEST)
        env = dict(os.environ, BZ_TEST_TIMEOUT="3", BZ_LOG_DIR=logs, BZ_RUN_DIR=run, BLAZEFS_BIN=BIN)
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests],
                           capture_output=True, text=True, env=env, timeout=280)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "hung for 3s: its daemons were killed" in r.stdout and "1 failed" in r.stdout, r.stdout
        reports = glob.glob(os.path.join(logs, "hang-*test_hangs*.txt"))
        assert len(reports) == 1, (os.listdir(logs), r.stdout)
        with open(reports[0]) as f:
            text = f.read()
        assert "== daemon " in text and "-- kernel stacks" in text, text
        assert "test_hung.py" in text, text  # the test's own Python stack
        assert "fuse" in text, text  # the daemon's threads (gdb) or the test's wait
        # its daemon is gone and its mount cleaned up
        for root, dirs, _ in os.walk(run):
            for x in dirs:
                assert not is_mounted(os.path.join(root, x)), x
    finally:
        shutil.rmtree(d, ignore_errors=True)
