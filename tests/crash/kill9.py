#!/usr/bin/env python3
"""kill9.py -- kill -9 loops through a real blazefs mount (DESIGN section 5).

Each cycle: mount blazefs (`blazefs -f STORE MNT`), start N writer processes
that append random-sized chunks to their own files and fsync at random
points, each reporting (file, acknowledged length) to the parent over a
pipe after every successful fsync; SIGKILL the daemon at a random moment;
clean up the mount (fusermount3 -u -z); remount and verify, for every file:
  - every acknowledged byte is present (size >= acked length);
  - the whole file equals the writer's deterministic byte stream, i.e. the
    file is a prefix of its appends (no holes, no garbage, no bytes never
    written). Content at offset o of writer w is PATTERN[w][o % PERIOD].
Files persist across cycles (writers continue at the recovered size, and
move on to a new file once one reaches --file-cap; full verified files are
sometimes unlinked), so recovery runs on a store that keeps growing.

Usage: kill9.py [--cycles N] [--soak] [--writers N] [--seed S] [--keep] [--opts O]
Environment: BLAZEFS_BIN (default build/fs/blazefs); BLAZEFS_MOUNT_OPTS, the
default of --opts (-o options for every mount, e.g. writeback_cache).
Exit 0 ok, 1 violation or error, 77 skipped (no /dev/fuse, no daemon).
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

PERIOD = 1 << 20
MOUNT_TIMEOUT = 15.0


def pattern(wid):
    return random.Random(0xB1A2E + wid).randbytes(PERIOD)


def expected(pat, off, n):
    out = bytearray()
    while n > 0:
        o = off % PERIOD
        k = min(n, PERIOD - o)
        out += pat[o:o + k]
        off += k
        n -= k
    return bytes(out)


def log(msg):
    print(msg, flush=True)


def is_mounted(mnt):
    real = os.path.realpath(mnt)
    try:
        with open('/proc/self/mounts') as f:
            for line in f:
                parts = line.split()
                if len(parts) > 1 and parts[1] == real:
                    return True
    except OSError:
        pass
    return False


def unmount(mnt):
    for cmd in (['fusermount3', '-u', '-z', mnt], ['umount', '-l', mnt]):
        if not is_mounted(mnt):
            return
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass


MOUNT_OPTS = ''  # -o options for every mount (--opts)


def mount(binp, store, mnt, logf):
    opts = ['-o', MOUNT_OPTS] if MOUNT_OPTS else []
    d = subprocess.Popen([binp, '-f'] + opts + [store, mnt], stdout=logf, stderr=logf, start_new_session=True)
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while time.monotonic() < deadline:
        if d.poll() is not None:
            raise RuntimeError('blazefs exited with %d while mounting (log: %s)' % (d.returncode, logf.name))
        if is_mounted(mnt):
            return d
        time.sleep(0.02)
    d.kill()
    raise RuntimeError('blazefs did not mount within %.0fs' % MOUNT_TIMEOUT)


def file_name(wid, gen):
    return 'w%d_%d.dat' % (wid, gen)


def file_key(name):
    """(wid, gen) of a writer file name, or None."""
    if not (name.startswith('w') and name.endswith('.dat')):
        return None
    try:
        wid, gen = name[1:-4].split('_')
        return int(wid), int(gen)
    except ValueError:
        return None


def writer(wid, mnt, wfd, seed, cap, dev):
    """Child process: append + fsync until the filesystem goes away. Writes
    w<wid>_<gen>.dat for the first gen whose file is below cap bytes.
    dev is the mount's st_dev: on a busy machine a writer may get to its
    open() only after the daemon was killed and the mount detached, and the
    open then creates the file in the directory underneath; such a writer
    must acknowledge nothing."""
    rnd = random.Random(seed)
    try:
        gen = 0
        while True:
            path = os.path.join(mnt, file_name(wid, gen))
            if not os.path.exists(path) or os.stat(path).st_size < cap:
                break
            gen += 1
        pat = pattern(wid * 1000 + gen)
        name = file_name(wid, gen).encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        if st.st_dev != dev:
            os._exit(0)  # not on the blazefs mount (it is gone)
        off = st.st_size
        # fsync makes the file's bytes and its directory entry durable
        os.fsync(fd)
        os.write(wfd, b'%s %d\n' % (name, off))
        while off < cap:
            r = rnd.random()
            n = rnd.randint(1, 256) if r < 0.5 else rnd.randint(256, 16384) if r < 0.9 else rnd.randint(16384, 262144)
            data = expected(pat, off, n)
            done = 0
            while done < n:
                k = os.write(fd, data[done:])
                if k <= 0:
                    raise OSError('short write')
                done += k
            off += n
            if rnd.random() < 0.3:
                os.fsync(fd)
                os.write(wfd, b'%s %d\n' % (name, off))
        os.fsync(fd)
        os.write(wfd, b'%s %d\n' % (name, off))
    except OSError:
        pass
    os._exit(0)


def run_cycle(args, cyc, rnd, binp, store, mnt, logf, acked, stats):
    daemon = mount(binp, store, mnt, logf)
    dev = os.stat(mnt).st_dev
    kids = []
    rfds = []
    try:
        for wid in range(args.writers):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    writer(wid, mnt, w, rnd.getrandbits(64), args.file_cap, dev)
                finally:
                    os._exit(0)
            os.close(w)
            kids.append(pid)
            rfds.append(r)
        time.sleep(rnd.uniform(0.05, args.max_run))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        # the writers fail with ENOTCONN once the connection is gone
        unmount(mnt)
        deadline = time.monotonic() + 30
        for pid in kids:
            while True:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
    for r in rfds:
        buf = b''
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
        os.close(r)
        for line in buf.decode().split('\n'):
            if line:
                name, n = line.split()
                acked[name] = max(acked.get(name, 0), int(n))
                stats['acks'] += 1
    unmount(mnt)
    # files a late writer created underneath the detached mount (it
    # acknowledged nothing): remove them so they cannot confuse anyone
    if not is_mounted(mnt):
        for n in os.listdir(mnt):
            if file_key(n):
                os.unlink(os.path.join(mnt, n))
                stats['strays'] = stats.get('strays', 0) + 1


def verify(args, rnd_del, binp, store, mnt, logf, acked, stats):
    daemon = mount(binp, store, mnt, logf)
    try:
        names = set(n for n in os.listdir(mnt) if file_key(n)) | set(acked)
        for name in sorted(names):
            path = os.path.join(mnt, name)
            want = acked.get(name)
            if not os.path.exists(path):
                raise AssertionError('%s: acknowledged file (%d bytes) is missing' % (path, want))
            size = os.stat(path).st_size
            if want is not None and size < want:
                raise AssertionError('%s: %d bytes after recovery, %d were acknowledged' % (path, size, want))
            wid, gen = file_key(name)
            pat = pattern(wid * 1000 + gen)
            off = 0
            with open(path, 'rb') as f:
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    exp = expected(pat, off, len(chunk))
                    if chunk != exp:
                        i = next(k for k in range(len(chunk)) if chunk[k] != exp[k])
                        raise AssertionError('%s: byte %d is %d, want %d (file is not a prefix of its appends)'
                                             % (path, off + i, chunk[i], exp[i]))
                    off += len(chunk)
            if off != size:
                raise AssertionError('%s: read %d bytes, stat says %d' % (path, off, size))
            stats['bytes'] += size
            stats['acked_bytes'] += want or 0
            stats['files'] += 1
            if size >= args.file_cap and rnd_del.random() < 0.5:
                # full and verified: unlink it (not fsync'd, so it may come back)
                os.unlink(path)
                acked.pop(name, None)
                stats['unlinked'] += 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        unmount(mnt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--cycles', type=int, default=30)
    ap.add_argument('--soak', action='store_true', help='run until interrupted (or --cycles if given > 30)')
    ap.add_argument('--writers', type=int, default=6)
    ap.add_argument('--seed', type=int, default=None)
    ap.add_argument('--max-run', type=float, default=1.5, help='longest time before the kill (s)')
    ap.add_argument('--keep', action='store_true', help='keep the temp dir')
    ap.add_argument('--opts', default=os.environ.get('BLAZEFS_MOUNT_OPTS', ''),
                    help='-o options for every mount (e.g. writeback_cache)')
    ap.add_argument('--file-cap', type=int, default=24 << 20, help='bytes per file before a writer moves on')
    args = ap.parse_args()
    args.writers = max(1, min(args.writers, 16))
    global MOUNT_OPTS
    MOUNT_OPTS = args.opts.strip(',')

    binp = os.environ.get('BLAZEFS_BIN', 'build/fs/blazefs')
    if not os.path.exists('/dev/fuse'):
        log('kill9: SKIP: no /dev/fuse')
        return 77
    if not (os.path.isfile(binp) and os.access(binp, os.X_OK)):
        log('kill9: SKIP: no daemon at %s (set BLAZEFS_BIN)' % binp)
        return 77
    if shutil.which('fusermount3') is None:
        log('kill9: SKIP: no fusermount3')
        return 77
    seed = args.seed if args.seed is not None else int(time.time())
    rnd = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix='blazefs-kill9-', dir=os.environ.get('BZ_RUN_DIR') or None)
    store = os.path.join(tmp, 'store')
    mnt = os.path.join(tmp, 'mnt')
    os.mkdir(store)
    os.mkdir(mnt)
    logf = open(os.path.join(tmp, 'blazefs.log'), 'ab')
    acked = {}
    stats = {'acks': 0, 'bytes': 0, 'acked_bytes': 0, 'files': 0, 'unlinked': 0}
    log('kill9: seed=%d writers=%d cycles=%s daemon=%s opts=%s dir=%s'
        % (seed, args.writers, 'soak' if args.soak else args.cycles, binp, MOUNT_OPTS or '-', tmp))
    cyc = 0
    rc = 0
    t0 = time.monotonic()
    try:
        while args.soak or cyc < args.cycles:
            run_cycle(args, cyc, rnd, binp, store, mnt, logf, acked, stats)
            stats['bytes'] = 0
            stats['acked_bytes'] = 0
            stats['files'] = 0
            verify(args, rnd, binp, store, mnt, logf, acked, stats)
            cyc += 1
            stats['total_bytes'] = stats.get('total_bytes', 0) + stats['bytes']
            log('  cycle %d: %d acks so far, %d files / %d bytes verified (%d acknowledged), %d unlinked, %.0fs'
                % (cyc, stats['acks'], stats['files'], stats['bytes'], stats['acked_bytes'], stats['unlinked'],
                   time.monotonic() - t0))
    except AssertionError as e:
        log('kill9: VIOLATION in cycle %d (seed %d): %s' % (cyc + 1, seed, e))
        log('  daemon log: %s' % logf.name)
        args.keep = True
        rc = 1
    except (RuntimeError, OSError) as e:
        log('kill9: ERROR in cycle %d (seed %d): %s' % (cyc + 1, seed, e))
        args.keep = True
        rc = 1
    except KeyboardInterrupt:
        log('kill9: interrupted')
    finally:
        unmount(mnt)
        logf.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0:
        log('kill9: OK cycles=%d acks=%d bytes verified=%d (summed over cycles; last cycle %d, of them %d acknowledged)'
            % (cyc, stats['acks'], stats.get('total_bytes', 0), stats['bytes'], stats['acked_bytes']))
    return rc


if __name__ == '__main__':
    sys.exit(main())
