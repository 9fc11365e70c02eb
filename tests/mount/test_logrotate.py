"""Log rotation with the real logrotate (issue 14.6; docs/ROTATING.md):
`create` mode with `dateext` rotates, `maxage` and `rotate N` delete old
files; `copytruncate` is refused without losing a byte; under `-o worm`
rotation is refused and nothing changes; the deleted files' space comes back
(storage v2)."""
import os
import re
import shutil
import subprocess
import time

import pytest

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
DAY = 86400
# unique per second, so that two rotations in one test do not collide
DATEFORMAT = "-%Y%m%d-%s"


def rotated_name(day, epoch):
    return f"app.log-{day}-{epoch}"


def run_logrotate(workdir, mnt, body, force=True):
    conf = os.path.join(workdir, "logrotate.conf")
    with open(conf, "w") as f:
        f.write(f"{mnt}/app.log {{\n{body}\n}}\n")
    os.chmod(conf, 0o644)
    args = [LOGROTATE, "-v", "-s", os.path.join(workdir, "logrotate.state")] + (["-f"] if force else []) + [conf]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def append(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def next_second(t, mnt=None):
    """Waits until the wall clock's second is past t (dateformat %s) and past
    every rotated name's second in mnt, with a margin: logrotate reads
    time(2), which glibc serves from the kernel's coarse clock, up to a tick
    behind Python's time.time(); without it a run started just after the
    second turned could still see second t and pick the name of the previous
    rotation ("destination ... already exists"). The names count too: a
    wall clock stepped back (a VM's time sync) would otherwise give a name
    again (seen once in CI)."""
    if mnt:
        for n in os.listdir(mnt):
            m = re.fullmatch(r"app\.log-\d{8}-(\d+)", n)
            if m:
                t = max(t, int(m.group(1)))
    while time.time() < t + 1 + 0.1:
        time.sleep(0.02)


@pytest.fixture
def need_logrotate():
    if not os.access(LOGROTATE, os.X_OK):
        pytest.fail("logrotate is not installed (tools/deps installs it)")


def test_create_dateext_rotate_maxage(bz, workdir, need_logrotate):
    mnt = bz.mnt
    now = int(time.time())
    # history: one rotated file 60 days old, three recent ones
    old = [rotated_name("20260901", now - 60 * DAY), rotated_name("20261101", now - 3 * DAY),
           rotated_name("20261102", now - 2 * DAY), rotated_name("20261103", now - DAY)]
    for i, name in enumerate(old):
        append(os.path.join(mnt, name), b"old log %d\n" % i * 100)
    os.utime(os.path.join(mnt, old[0]), (now - 60 * DAY, now - 60 * DAY))
    app = os.path.join(mnt, "app.log")
    first = b"".join(b"line %d of the first day\n" % i for i in range(5000))
    append(app, first)

    # 1) create + dateext, rotate 10, maxage 30: the 60-day-old file goes
    body = f"    create 0640 root root\n    dateext\n    dateformat {DATEFORMAT}\n    rotate 10\n    maxage 30\n"
    r = run_logrotate(workdir, mnt, body)
    # after the run: its suffix's second (%s) is at most this one, so the
    # next run, after next_second(t1), cannot pick the same name
    t1 = int(time.time())
    assert r.returncode == 0, r.stdout + r.stderr
    names = sorted(n for n in os.listdir(mnt) if n.startswith("app.log-"))
    new1 = [n for n in names if n not in old]
    assert len(new1) == 1 and new1[0].startswith("app.log-"), names
    assert read(os.path.join(mnt, new1[0])) == first  # renamed whole
    assert old[0] not in names, "maxage 30 must delete the 60-day-old file"
    assert set(old[1:]) <= set(names)
    st = os.stat(app)  # the new, empty log from `create 0640 root root`
    assert st.st_size == 0 and st.st_mode & 0o777 == 0o640 and (st.st_uid, st.st_gid) == (0, 0)

    # the application keeps appending to the new file
    second = b"".join(b"line %d of the second day\n" % i for i in range(3000))
    append(app, second)

    # 2) rotate 2: only the two newest rotated files stay
    next_second(t1, mnt)
    body = body.replace("rotate 10", "rotate 2")
    r = run_logrotate(workdir, mnt, body)
    assert r.returncode == 0, r.stdout + r.stderr
    names = sorted(n for n in os.listdir(mnt) if n.startswith("app.log-"))
    assert len(names) == 2 and names[0] == new1[0], names
    assert read(os.path.join(mnt, names[0])) == first
    assert read(os.path.join(mnt, names[1])) == second
    assert os.stat(app).st_size == 0
    # the deleted ones are gone for good, also after a remount
    bz.stop()
    bz.start()
    assert sorted(n for n in os.listdir(mnt) if n.startswith("app.log")) == sorted(names + ["app.log"])
    assert read(os.path.join(mnt, names[1])) == second


def test_copytruncate_refused(bz, workdir, need_logrotate):
    """copytruncate copies, then truncates the live file to 0: a shrinking
    truncate, refused (EPERM). logrotate reports the error; the live file
    keeps every byte."""
    app = os.path.join(bz.mnt, "app.log")
    data = b"x" * 10000 + b"\n"
    append(app, data)
    r = run_logrotate(workdir, bz.mnt, "    copytruncate\n    dateext\n    rotate 3\n")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Operation not permitted" in r.stdout + r.stderr
    assert read(app) == data


def test_worm_refuses_rotation(make_mount, workdir, need_logrotate):
    """Under -o worm a non-empty log can be neither renamed nor deleted, so
    create-mode rotation fails and the log stays as it was."""
    m = make_mount(opts="worm").start()
    app = os.path.join(m.mnt, "app.log")
    data = b"audit line\n" * 100
    append(app, data)
    r = run_logrotate(workdir, m.mnt, "    create 0640 root root\n    dateext\n    rotate 3\n")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Operation not permitted" in r.stdout + r.stderr
    assert read(app) == data
    assert sorted(n for n in os.listdir(m.mnt) if n != ".blazefs") == ["app.log"]


def test_shipped_example_config(bz, workdir, need_logrotate):
    """docs/examples/logrotate.conf, pointed at the mount, rotates."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "examples", "logrotate.conf")
    with open(src) as f:
        text = f.read()
    assert "/srv/logs/*.log" in text and "copytruncate" not in text.replace("never copytruncate", "")
    conf = os.path.join(workdir, "example.conf")
    with open(conf, "w") as f:
        f.write(text.replace("/srv/logs/", bz.mnt + "/"))
    os.chmod(conf, 0o644)
    app = os.path.join(bz.mnt, "app.log")
    append(app, b"example\n" * 1000)
    r = subprocess.run([LOGROTATE, "-v", "-f", "-s", os.path.join(workdir, "state"), conf], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rotated = [n for n in os.listdir(bz.mnt) if n.startswith("app.log-")]
    assert len(rotated) == 1 and re.fullmatch(r"app\.log-\d{8}", rotated[0]), rotated
    assert read(os.path.join(bz.mnt, rotated[0])) == b"example\n" * 1000
    assert os.stat(app).st_size == 0 and os.stat(app).st_mode & 0o777 == 0o640


def test_rotation_gives_space_back(make_mount, workdir, need_logrotate):
    """`rotate 2` deletes the older rotated files; storage v2 reclaims their
    space (at the checkpoints), so store.db stays near what is live instead
    of growing with everything ever written."""
    m = make_mount().start()
    app = os.path.join(m.mnt, "app.log")
    body = f"    create 0640 root root\n    dateext\n    dateformat {DATEFORMAT}\n    rotate 2\n"
    chunk = 4 << 20
    rounds = 10
    for _ in range(rounds):
        append(app, os.urandom(chunk))  # incompressible: stored bytes = written bytes
        t = int(time.time())
        r = run_logrotate(workdir, m.mnt, body)
        assert r.returncode == 0, r.stdout + r.stderr
        next_second(t, m.mnt)
    live = sum(os.stat(os.path.join(m.mnt, n)).st_size for n in os.listdir(m.mnt) if n.startswith("app.log"))
    assert live == 2 * chunk  # the two newest rotated files; app.log is empty
    assert m.stop() == 0  # the unmount's checkpoints give the end of store.db back
    db = os.path.getsize(os.path.join(m.store, "store.db"))
    print(f"store.db {db} bytes for {live} live of {rounds * chunk} written")
    assert db < rounds * chunk // 2, f"store.db {db} bytes: the deleted files' space did not come back"
