"""Checks of the test harnesses themselves, so that a busy machine cannot
turn them into false alarms.

kill9.py's writers: on a loaded machine a writer process may reach its
open() only after the daemon was SIGKILLed and the mount lazily detached;
the open then creates the file in the plain directory underneath, whose
fsyncs succeed -- and the harness used to count those as acknowledged
blazefs bytes and report them "lost" after recovery (seen in CI: a 25 MB
file in the underlying directory, exactly the "acknowledged" size). A
writer must acknowledge only what it wrote on the mount."""
import importlib.util
import os
import tempfile

from conftest import REPO, RUN_DIR

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
