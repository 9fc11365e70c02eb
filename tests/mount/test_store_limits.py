"""Bad store states and option limits through the mount (issue 11.6):
a store directory whose store.db is gone but whose WAL holds committed
batches is refused with a message naming the files (never recreated over
the log), and batch/record options that could build a batch larger than one
WAL entry are clamped at mount so big writes never fail the pipeline."""
import os

from conftest import WRITEBACK  # noqa: F401  (the suite's mode is in EXTRA_OPTS)


def test_missing_store_db_is_refused(make_mount):
    m = make_mount()
    m.start()
    data = os.urandom(100000)
    with open(m.path("kept"), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    assert m.stop() == 0, m.logtext()
    wal = sorted(n for n in os.listdir(m.store) if n.startswith("wal."))
    assert wal, os.listdir(m.store)
    sizes = {n: os.path.getsize(os.path.join(m.store, n)) for n in wal}
    aside = m.store + ".db.aside"
    os.rename(os.path.join(m.store, "store.db"), aside)
    m.start(check=False)
    try:
        rc = m.proc.wait(timeout=20)
    finally:
        m.stop()
    assert rc != 0
    log = m.logtext()
    assert "store.db is missing" in log and "wal.000" in log, log
    # nothing was created or zeroed
    assert not os.path.exists(os.path.join(m.store, "store.db"))
    assert {n: os.path.getsize(os.path.join(m.store, n)) for n in wal} == sizes
    # putting store.db back brings everything back
    os.rename(aside, os.path.join(m.store, "store.db"))
    m.start()
    with open(m.path("kept"), "rb") as f:
        assert f.read() == data
    assert m.stop() == 0, m.logtext()


def test_batch_larger_than_a_wal_entry_is_clamped(make_mount):
    # 64 MiB batches of incompressible data do not fit one entry of the
    # default 64 MiB WAL segment; before the clamp, fsync got EIO and the
    # store went read-only.
    m = make_mount(opts="batch_bytes=64M,batch_records=65536,record_bytes=1M,max_inflight_mb=512,linger_us=1000000")
    m.start()
    chunk = os.urandom(1 << 20)
    fd = os.open(m.path("big"), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        for i in range(80):
            os.write(fd, chunk[i:] + chunk[:i])
        os.fsync(fd)
    finally:
        os.close(fd)
    assert "must fit one WAL entry" in m.logtext()
    assert m.stop() == 0, m.logtext()
    m.start()
    with open(m.path("big"), "rb") as f:
        for i in range(80):
            assert f.read(1 << 20) == chunk[i:] + chunk[:i], i
    assert m.stop() == 0, m.logtext()
