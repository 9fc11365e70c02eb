"""bworkloads — tools/bench: the workloads of DESIGN §4, one method per section, run
against every peer."""
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
from bmeasure import *  # noqa: F401,F403

# ---------------------------------------------------------------- workloads

ECHO_LINE = ('10.1.2.3 - - [30/Nov/2026:06:00:00 +0000] "GET /api/v1/items/4711 HTTP/1.1" '
             '200 5123 "-" "curl/7.88.1" $i')

SECTIONS = ["logger", "audit", "echo", "cp", "seq", "parallel", "rotation", "files",
            "rss", "readers"]


def syncfs(path):
    if sh(["sync", "-f", path]).returncode != 0:
        os.sync()


class Bench:
    def __init__(self, cfg, peers, root, res, loadgen):
        self.cfg, self.peers, self.root, self.res = cfg, peers, root, res
        self.lg = loadgen

    def each_peer(self, keys, peer_ids, fn):
        """Runs fn(peer) on a fresh filesystem of each selected peer in turn;
        a failure makes every key of the section n/a for that peer only."""
        for pid_ in [p for p in peer_ids if p in self.peers]:
            p = self.peers[pid_]
            if p.broken:
                self.res.add_na(keys, pid_, p.broken)
                continue
            try:
                p.fresh()
                try:
                    p.mount()
                except NA as e:
                    p.broken = str(e)  # no use retrying every workload
                    raise
                fn(p)
            except (NA, OSError, subprocess.SubprocessError) as e:
                reason = str(e) if isinstance(e, NA) else "%s: %s" % (type(e).__name__, e)
                if p.fuse and p.proc is not None and not p.alive():
                    reason += " (daemon died: %s)" % p.log_tail(1)
                self.res.add_na(keys, pid_, reason)
                log("  %-12s n/a: %s" % (pid_, reason))
            finally:
                p.discard()
                syncfs(self.root)

    def wbc(self):
        return ["blz-nowb"] if self.cfg["wbc"] else []

    def lines(self, p, sub, writers, secs, fsync, maxlines=0, readers=0, readfile=None,
              timeout=None):
        d = os.path.join(p.dir, sub)
        os.makedirs(d, exist_ok=True)
        cmd = [self.lg, "lines", d, str(writers), str(secs), str(maxlines),
               "1" if fsync else "0"]
        if readers:
            cmd += [str(readers), readfile]
        return run_json(cmd, timeout or secs + 300)

    def stored(self, key, p, path, logical):
        st, how, ex = stored_bytes(p, path)
        self.res.add(key, p.id, st / logical, how=how, stored=st, logical=logical, **ex)
        if "store_dir_allocated" in ex:   # blazefs: the same with its WAL files
            self.res.define(key + "_wal", self.res.titles[key][0] + " + WAL", "ratio",
                            "compression_wal")
            self.res.add(key + "_wal", p.id, ex["store_dir_allocated"] / logical,
                         how="store directory (store.db + wal.*) allocated blocks after "
                         "a clean unmount", logical=logical)
        return st / logical

    # ---- logger: 4 writers, one write() per ~128 B line, no fsync
    def logger(self):
        secs = self.cfg["secs"]
        R = self.res
        R.define("logger", "logger: 4 writers, 128 B lines", "lines/s", "appends")
        R.define("stored_logger", "stored/logical, logger", "ratio",
                 "compression")
        log("* logger: 4 writers x %.1f s" % secs)

        def fn(p):
            j = self.lines(p, "log", 4, secs, False)
            st = read_stats(p.dir) if p.id in BLAZE_PEERS else None
            R.add("logger", p.id, j["lines_per_s"], loadgen=j, blazefs_stats=st)
            msg = "%.0f lines/s" % j["lines_per_s"]
            if p.id != "passthrough":
                s = self.stored("stored_logger", p, os.path.join(p.dir, "log"), j["bytes"])
                msg += ", stored/logical %.3f of %s" % (s, sizestr(j["bytes"]))
            log("  %-12s %s" % (p.id, msg))
        self.each_peer(["logger", "stored_logger"],
                       ["ext4", "btrfs1", "btrfs3", "passthrough", "blazefs", "blz-nowb"], fn)

    # ---- audit / audit8: line + fsync
    def audit(self):
        secs = self.cfg["secs"]
        R = self.res
        for n, key in ((1, "audit"), (8, "audit8")):
            R.define(key, "%s: %d writer%s, line + fsync" % (key, n, "s" if n > 1 else ""),
                     "ops/s", "appends")
            R.define(key + "_p99", "%s p99 write+fsync" % key, "us", "latency")
            if n == 1:
                R.define("stored_audit", "stored/logical, audit", "ratio", "compression")
            log("* %s: %d writers, line + fsync, %.1f s" % (key, n, secs))

            def fn(p, n=n, key=key):
                j = self.lines(p, "audit", n, secs, True)
                st = read_stats(p.dir) if p.id in BLAZE_PEERS else None
                R.add(key, p.id, j["lines_per_s"], loadgen=j, blazefs_stats=st)
                R.add(key + "_p99", p.id, j["lat_p99_us"])
                msg = "%.0f ops/s, p99 %.0f us" % (j["lines_per_s"], j["lat_p99_us"])
                if n == 1 and p.id != "passthrough":
                    s = self.stored("stored_audit", p, os.path.join(p.dir, "audit"),
                                    j["bytes"])
                    msg += ", stored/logical %.3f" % s
                log("  %-12s %s" % (p.id, msg))
            keys = [key, key + "_p99"] + (["stored_audit"] if n == 1 else [])
            # btrfs zstd:3 only where a stored/logical bar needs it
            self.each_peer(keys, ["ext4", "btrfs1"] + (["btrfs3"] if n == 1 else []) +
                           ["passthrough", "blazefs"] + self.wbc(), fn)

    # ---- echo loop: open, append, close per line (shells, cron jobs)
    def echo(self):
        n = self.cfg["echo_n"]
        self.res.define("echo", "echo line >> file (%d)" % n, "appends/s", "appends")
        log("* echo loop, %d lines" % n)
        script = ('cd "$1" || exit 1; i=0; while [ $i -lt %d ]; do echo "%s" >> log.txt'
                  ' || exit 1; i=$((i+1)); done' % (n, ECHO_LINE))

        def fn(p):
            t0 = time.perf_counter()
            r = run_workload(["sh", "-c", script, "sh", p.dir], 900)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                raise NA("echo loop failed: " + r.stderr.strip()[-160:])
            self.res.add("echo", p.id, n / dt)
            log("  %-12s %.0f appends/s" % (p.id, n / dt))
        self.each_peer(["echo"], ["ext4", "passthrough", "blazefs"] + self.wbc(), fn)

    # ---- cp -r of a text tree
    def cp(self):
        src, nfiles, nbytes = make_text_tree(self.root, self.cfg)
        R = self.res
        R.define("cp", "cp -r text tree (%d files, %.0f MB)" % (nfiles, nbytes / 1e6),
                 "MB/s", "throughput")
        R.define("stored_cp", "stored/logical, cp -r tree", "ratio", "compression")
        log("* cp -r of %d text files, %.1f MB" % (nfiles, nbytes / 1e6))

        def fn(p):
            dst = os.path.join(p.dir, "tree")
            t0 = time.perf_counter()
            r = run_workload(["cp", "-r", src, dst], 1800)
            dt = time.perf_counter() - t0
            if r.returncode != 0:
                raise NA("cp -r failed: " + r.stderr.strip()[-160:])
            R.add("cp", p.id, nbytes / dt / 1e6, seconds=dt, files=nfiles)
            msg = "%.1f MB/s" % (nbytes / dt / 1e6)
            if p.id != "passthrough":
                s = self.stored("stored_cp", p, dst, nbytes)
                msg += ", stored/logical %.3f" % s
            log("  %-12s %s" % (p.id, msg))
        try:
            # passthrough: no bar uses it, but it is what FUSE itself allows
            # (7 requests per file here; the cp bars' note names its figure)
            self.each_peer(["cp", "stored_cp"], ["ext4", "btrfs1", "btrfs3", "passthrough", "blazefs"] +
                           self.wbc(), fn)
        finally:
            shutil.rmtree(src, ignore_errors=True)

    # ---- sequential 1 MiB writes, text-like / random (fio)
    def seq(self):
        rt = self.cfg["fio_secs"]
        for key, comp, what in (("seqtext", TEXT_COMP, "text-like"),
                                ("seqrand", 0, "random")):
            self.res.define(key, "seq 1 MiB writes, %s" % what, "MB/s", "throughput")
            log("* %s (fio, %d s)" % (key, rt))

            def fn(p, key=key, comp=comp):
                r = run_fio(p.dir, "1M", 1, rt, "8g", 0, comp)
                self.res.add(key, p.id, r["bw"] / 1e6, fio=r)
                log("  %-12s %.1f MB/s" % (p.id, r["bw"] / 1e6))
            self.each_peer([key], ["ext4", "passthrough", "blazefs"] + self.wbc(), fn)

    # ---- parallel gain: workers=2 vs workers=0 on compress-bound text
    def parallel(self):
        n, mb = self.cfg["par_jobs"], self.cfg["par_mb"]
        src = os.path.join(self.root, "par.log")
        run_json([self.lg, "gen", src, str(mb * MiB)], 600)
        self.res.define("par", "parallel: %d x dd %d MiB access log, conv=fsync" % (n, mb),
                        "MB/s", "throughput")
        log("* parallel gain: %d writers x %d MiB of access log, workers=0 vs 2" % (n, mb))

        def fn(p):
            procs = []
            t0 = time.perf_counter()
            for i in range(n):
                procs.append(subprocess.Popen(
                    ["dd", "if=" + src, "of=" + os.path.join(p.dir, "par.%d" % i),
                     "bs=1M", "conv=fsync", "status=none"], stdin=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, start_new_session=True))
                CHILDREN.add(procs[-1])
            err = None
            for pr in procs:
                try:
                    _, e = pr.communicate(timeout=900)
                    if pr.returncode != 0:
                        err = e.decode(errors="replace").strip()[-160:]
                except subprocess.TimeoutExpired:
                    kill_group(pr)
                    err = "dd timed out"
                CHILDREN.discard(pr)
            dt = time.perf_counter() - t0
            if err:
                raise NA("dd: " + err)
            st = read_stats(p.dir)
            tot = n * os.path.getsize(src)
            self.res.add("par", p.id, tot / dt / 1e6, blazefs_stats=st)
            log("  %-12s %.1f MB/s" % (p.id, tot / dt / 1e6))
        try:
            self.each_peer(["par"], ["blz-w0", "blz-w2"], fn)
        finally:
            os.unlink(src)

    # ---- rotation: 10 x (write 32 MiB, delete the previous) vs one file
    def rotation(self):
        mb, k = self.cfg["rot_mb"], self.cfg["rot_n"]
        src = os.path.join(self.root, "rot.log")
        run_json([self.lg, "gen", src, str(mb * MiB)], 600)
        R = self.res
        R.define("rot_store", "rotation: %d x %d MiB, store" % (k, mb), "MiB", "space")
        R.define("rot_one", "one %d MiB file, store" % mb, "MiB", "space")
        log("* rotation: %d x (write %d MiB, delete the previous)" % (k, mb))

        def rot(p):
            for i in range(k):
                r = run_workload(["cp", src, os.path.join(p.dir, "app.log.%d" % i)], 600)
                if r.returncode != 0:
                    raise NA("cp: " + r.stderr.strip()[-160:])
                if i:
                    os.unlink(os.path.join(p.dir, "app.log.%d" % (i - 1)))
            st, how, ex = stored_bytes(p, p.dir)
            R.add("rot_store", p.id, st / MiB, how=how, **ex)
            log("  %-12s rotated store %.1f MiB" % (p.id, st / MiB))

        def one(p):
            r = run_workload(["cp", src, os.path.join(p.dir, "app.log")], 600)
            if r.returncode != 0:
                raise NA("cp: " + r.stderr.strip()[-160:])
            st, how, ex = stored_bytes(p, p.dir)
            R.add("rot_one", p.id, st / MiB, how=how, **ex)
            log("  %-12s one-file store %.1f MiB" % (p.id, st / MiB))
        try:
            self.each_peer(["rot_store"], ["ext4", "btrfs3", "blazefs"], rot)
            self.each_peer(["rot_one"], ["ext4", "btrfs3", "blazefs"], one)
        finally:
            os.unlink(src)

    # ---- many files: store size; mount and checkpoint time vs 1k files
    def mount_ckpt(self, p, nfiles):
        mounts, ckpts = [], []
        for _ in range(self.cfg["mount_reps"]):
            drop_store_cache(p.store)
            mounts.append(p.mount())
            with open(os.path.join(p.dir, "touch.log"), "a") as f:
                f.write("one more line\n")
            p.unmount()
            ckpts.append(last_checkpoint_us(p.logpath) / 1000.0)
        m, c = statistics.median(mounts), statistics.median(ckpts)
        tag = "1k" if nfiles == self.cfg["files_1k"] else "many"
        self.res.titles["mount_" + tag] = ("mount time, %s files" % count(nfiles), "s",
                                           "time")
        self.res.titles["ckpt_" + tag] = ("checkpoint time, %s files" % count(nfiles),
                                          "ms", "time")
        self.res.add("mount_" + tag, p.id, m, all=mounts, files=nfiles)
        self.res.add("ckpt_" + tag, p.id, c, all=ckpts, files=nfiles)
        log("  %-12s %d files: mount %.3f s, checkpoint %.1f ms (medians of %d)"
            % (p.id, nfiles, m, c, len(mounts)))

    def files(self):
        cfg, R = self.cfg, self.res
        small, many, one_k = cfg["small_files"], cfg["many_files"], cfg["files_1k"]
        R.define("files_store", "%s files of 100 B, store" % count(small), "MiB", "space")
        R.define("mount_1k", "mount time, %s files" % count(one_k), "s", "time")
        R.define("mount_many", "mount time, %s files" % count(many), "s", "time")
        R.define("ckpt_1k", "checkpoint time, %s files" % count(one_k), "ms", "time")
        R.define("ckpt_many", "checkpoint time, %s files" % count(many), "ms", "time")
        log("* files: %s files of 100 B; mount/checkpoint at %s vs %s files"
            % (count(small), count(many), count(one_k)))

        def mk(p, n, sub, budget=0):
            d = os.path.join(p.dir, sub)
            os.makedirs(d, exist_ok=True)
            j = run_json([self.lg, "files", d, str(n), "100", str(budget)], 3600)
            log("  %-12s created %d files in %.1f s%s" % (
                p.id, j["files"], j["seconds"],
                " (budget of %d s ran out)" % budget if j["files"] < n else ""))
            return j

        def fn_1k(p):
            mk(p, one_k, "f")
            p.unmount()
            self.mount_ckpt(p, one_k)

        def fn_small(p):
            j = mk(p, small, "f")
            if p.id == "blazefs":
                st, how, ex = stored_bytes(p, p.dir)
            else:
                syncfs(p.dir)
                st, how, ex = stored_bytes(p, os.path.join(p.dir, "f"))
            R.add("files_store", p.id, st / MiB, how=how, files=small, create=j, **ex)
            log("  %-12s store %.1f MiB" % (p.id, st / MiB))
            if p.id != "blazefs":
                return
            nfiles = small
            if many > small:
                p.mount()
                nfiles += mk(p, many - small, "g", cfg["files_budget"])["files"]
                p.unmount()
            self.mount_ckpt(p, nfiles)
        self.each_peer(["mount_1k", "ckpt_1k"], ["blazefs"], fn_1k)
        # btrfs zstd:3 for comparison (thorough only); not ext4: deleting its
        # 100k files afterwards takes minutes on a disk mounted with discard
        self.each_peer(["files_store", "mount_many", "ckpt_many"],
                       (["btrfs3"] if cfg["wbc"] else []) + ["blazefs"], fn_small)

    # ---- daemon RSS: streaming; reading a many-append file
    def rss(self):
        nbytes, napp = self.cfg["rss_bytes"], self.cfg["many_appends"]
        R = self.res
        R.define("rss_stream", "daemon VmHWM streaming %s" % sizestr(nbytes), "MiB",
                 "memory")
        R.define("rss_read", "daemon VmHWM reading a %s-append file" % count(napp),
                 "MiB", "memory")
        R.define("first_read", "first read after remount, %s appends" % count(napp),
                 "ms", "time")
        log("* RSS: stream %s; read a %s-append file (cache_mb=%d)"
            % (sizestr(nbytes), count(napp), CACHE_MB))

        def stream(p):
            r = run_fio_file(p.dir, "stream", nbytes)
            hwm = proc_status(p.daemon_pid(), "VmHWM")
            if hwm is None:
                raise NA("could not read VmHWM of the daemon")
            R.add("rss_stream", p.id, hwm / 1024.0, cache_mb=CACHE_MB,
                  stream_MBps=r["bw"] / 1e6)
            log("  %-12s VmHWM %.1f MiB (stream %.0f MB/s)" % (p.id, hwm / 1024.0,
                                                               r["bw"] / 1e6))

        def appends(p):
            j = self.lines(p, "app", 1, self.cfg["appends_budget"], False, maxlines=napp,
                           timeout=self.cfg["appends_budget"] + 600)
            p.unmount()
            drop_store_cache(p.store)
            p.mount()
            path = os.path.join(p.dir, "app", "log.0")
            # the first read after the remount, store pages out of the page
            # cache: open + 64 bytes at the start, then 64 in the middle
            # (the index is loaded a page at a time, on demand)
            t0 = time.perf_counter()
            fd = os.open(path, os.O_RDONLY)
            try:
                first = os.pread(fd, 64, 0)
                t1 = time.perf_counter()
                size = os.fstat(fd).st_size
                mid = os.pread(fd, 64, size // 2)
                t2 = time.perf_counter()
            finally:
                os.close(fd)
            if len(first) != min(64, size) or len(mid) != min(64, size - size // 2):
                raise NA("short first read")
            R.titles["first_read"] = ("first read after remount, %s appends"
                                      % count(j["lines"]), "ms", "time")
            R.add("first_read", p.id, (t1 - t0) * 1e3, middle_ms=(t2 - t1) * 1e3,
                  appends=j["lines"])
            log("  %-12s first read after remount %.2f ms (open + 64 B at 0), "
                "then %.2f ms (64 B in the middle)" % (p.id, (t1 - t0) * 1e3, (t2 - t1) * 1e3))
            n, t = read_all(path)
            if n != j["bytes"]:
                raise NA("read %d of %d bytes" % (n, j["bytes"]))
            hwm = proc_status(p.daemon_pid(), "VmHWM")
            if hwm is None:
                raise NA("could not read VmHWM of the daemon")
            R.titles["rss_read"] = ("daemon VmHWM reading a %s-append file"
                                    % count(j["lines"]), "MiB", "memory")
            R.add("rss_read", p.id, hwm / 1024.0, cache_mb=CACHE_MB, appends=j["lines"],
                  read_MBps=n / t / 1e6)
            log("  %-12s VmHWM %.1f MiB after reading %d appends (%.0f MB/s)"
                % (p.id, hwm / 1024.0, j["lines"], n / t / 1e6))
        peers = [x for x in ("passthrough", "blazefs") if x in self.peers]
        for x in peers:
            self.peers[x].extra_opts = ["cache_mb=%d" % CACHE_MB] if x == "blazefs" else []
        try:
            self.each_peer(["rss_stream"], peers, stream)
            self.each_peer(["rss_read", "first_read"], ["blazefs"], appends)
        finally:
            for x in peers:
                self.peers[x].extra_opts = []

    # ---- fsync p99 with 6 concurrent readers vs none
    def readers(self):
        secs, mb = self.cfg["secs"] * 2, self.cfg["read_file_mb"]
        R = self.res
        R.define("fsync_p99_alone", "fsync p99, 1 writer alone", "us", "latency")
        R.define("fsync_p99_readers", "fsync p99, 1 writer + 6 readers", "us", "latency")
        src = os.path.join(self.root, "read.log")
        run_json([self.lg, "gen", src, str(mb * MiB)], 600)
        log("* fsync p99, alone and with 6 readers of a %d MiB file (%.0f s each)"
            % (mb, secs))

        def fn(p):
            big = os.path.join(p.dir, "big.log")
            r = run_workload(["cp", src, big], 600)
            if r.returncode != 0:
                raise NA("cp: " + r.stderr.strip()[-160:])
            # the copy is written out before "alone" starts: otherwise its
            # writeback (and blazefs' compression of it) runs during the
            # measurement and inflates the figure the bar divides by
            fd = os.open(big, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            a = self.lines(p, "alone", 1, secs, True)
            b = self.lines(p, "readers", 1, secs, True, readers=6, readfile=big)
            R.add("fsync_p99_alone", p.id, a["lat_p99_us"], loadgen=a)
            R.add("fsync_p99_readers", p.id, b["lat_p99_us"], loadgen=b)
            log("  %-12s p99 %.0f us alone, %.0f us with readers (%d passes, %.0f MB read)"
                % (p.id, a["lat_p99_us"], b["lat_p99_us"], b["reader_passes"],
                   b["reader_bytes"] / 1e6))
        try:
            self.each_peer(["fsync_p99_alone", "fsync_p99_readers"], ["ext4", "blazefs"], fn)
        finally:
            os.unlink(src)


