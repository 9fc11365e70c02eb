"""breport — tools/bench: the bars of DESIGN §4, their PASS/FAIL judgement, the printed
table and the PNG charts."""
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
from bworkloads import *  # noqa: F401,F403

# ---------------------------------------------------------------- bars

# the peer each workload row is compared with in the workloads table
REF_OF = {"logger": "ext4", "audit": "ext4", "audit8": "ext4", "echo": "passthrough",
          "cp": "ext4", "seqtext": "ext4", "seqrand": "passthrough", "par": "blz-w0",
          "stored_logger": "btrfs3", "stored_audit": "btrfs3", "stored_cp": "btrfs3",
          "stored_logger_wal": "btrfs3", "stored_audit_wal": "btrfs3",
          "stored_cp_wal": "btrfs3",
          "audit_p99": "ext4", "audit8_p99": "ext4", "fsync_p99_alone": "ext4",
          "fsync_p99_readers": "ext4"}


def bar_specs(cfg, res):
    """(id, text, (key, peer), (ref key, ref peer) | None, op, target, note).
    Where a run used less than the bar names (quick mode, or a budget that
    ran out), the note says at what size it was measured."""
    P = PRIMARY
    small, sb = cfg["small_files"], cfg["rss_bytes"]
    W = "_wal" if cfg.get("stored_incl_wal") else ""

    def snote(key):
        other = res.get(key + ("" if W else "_wal"), P)
        logical = res.extra(key, P).get("logical")
        return "blazefs: %s%s%s" % (
            "store.db + WAL" if W else "store.db, WAL excluded",
            "" if other is None else "; %s %.3f" % ("store.db alone" if W else "incl. WAL",
                                                     other),
            "" if not logical or logical >= 4 * MiB else
            "; only %s logical: the store's fixed pages weigh in" % sizestr(logical))
    many = res.extra("mount_many", P).get("files", cfg["many_files"])
    napp = res.extra("rss_read", P).get("appends", cfg["many_appends"])
    files_target = 64.0 * small / BAR_FILES
    fnote = None if small == BAR_FILES else (
        "%s files, target scaled from 64 MiB at 100k" % count(small))
    mnote = None if many == BAR_MANY_FILES else "at %s files; the bar names 1M" % count(many)
    stnote = None if sb == BAR_STREAM else "streams %s; the bar names 4 GiB" % sizestr(sb)
    anote = None if napp == BAR_APPENDS else "%s appends; the bar names 3M" % count(napp)
    pt_cp = res.get("cp", "passthrough")
    cpnote = None if pt_cp is None else "passthrough_ll, FUSE alone: %.1f MB/s" % pt_cp
    return [
        ("logger", "logger 4 writers vs ext4", ("logger", P), ("logger", "ext4"), ">=", 0.7, None),
        ("audit", "audit 1 writer+fsync vs ext4", ("audit", P), ("audit", "ext4"), ">=", 1.0, None),
        ("audit8", "audit8 8 writers+fsync vs ext4", ("audit8", P), ("audit8", "ext4"), ">=", 1.5, None),
        ("echo", "echo >> loop vs passthrough", ("echo", P), ("echo", "passthrough"), ">=", 1.0, None),
        ("cp_ext4", "cp -r text tree vs ext4", ("cp", P), ("cp", "ext4"), ">=", 0.5, cpnote),
        ("cp_btrfs", "cp -r text tree vs btrfs zstd:1", ("cp", P), ("cp", "btrfs1"), ">=", 1.0, cpnote),
        ("seqtext", "seq 1 MiB text vs ext4", ("seqtext", P), ("seqtext", "ext4"), ">=", 1.2, None),
        ("seqrand", "seq 1 MiB random vs passthrough", ("seqrand", P), ("seqrand", "passthrough"), ">=", 0.7, None),
        ("parallel", "parallel gain workers=2 / workers=0", ("par", "blz-w2"), ("par", "blz-w0"), ">=", 1.5, None),
        ("stored_logger", "stored/logical logger vs btrfs zstd:3", ("stored_logger" + W, P), ("stored_logger", "btrfs3"), "<=", 0.9,
         snote("stored_logger")),
        ("stored_audit", "stored/logical audit vs btrfs zstd:3", ("stored_audit" + W, P), ("stored_audit", "btrfs3"), "<=", 0.9,
         snote("stored_audit")),
        ("stored_cp", "stored/logical cp -r vs btrfs zstd:3", ("stored_cp" + W, P), ("stored_cp", "btrfs3"), "<=", 0.9,
         snote("stored_cp")),
        ("stored_access", "stored/logical access log (absolute)", ("stored_logger" + W, P), None, "<=", 0.15,
         snote("stored_logger")),
        ("rotation", "rotation store / one-file store", ("rot_store", P), ("rot_one", P), "<=", 1.3, None),
        ("files", "%s files of 100 B: store MiB" % count(small), ("files_store", P), None, "<=", files_target, fnote),
        ("rss_stream", "daemon RSS streaming (MiB)", ("rss_stream", P), None, "<=", 64 + CACHE_MB, stnote),
        ("rss_read", "daemon RSS reading many-append file", ("rss_read", P), None, "<=", 64 + CACHE_MB, anote),
        ("first_read", "first read of many-append file (ms)", ("first_read", P), None, "<=", 10.0, anote),
        ("mount_scale", "mount time many / 1k files", ("mount_many", P), ("mount_1k", P), "<=", 2.0, mnote),
        ("ckpt_scale", "checkpoint time many / 1k files", ("ckpt_many", P), ("ckpt_1k", P), "<=", 2.0, mnote),
        ("mount_abs", "mount time at many files (s)", ("mount_many", P), None, "<=", 1.0, mnote),
        ("fsync_readers", "fsync p99 6 readers / none", ("fsync_p99_readers", P), ("fsync_p99_alone", P), "<=", 2.0, None),
    ]


def judge(res, cfg):
    out = []
    for bid, text, (k, p), ref, op, target, note in bar_specs(cfg, res):
        v = res.get(k, p)
        b = dict(id=bid, bar=text, op=op, target=target, key=k, peer=p, value=v,
                 ref=ref, ref_value=None, ratio=None, status="SKIP", reason=None, note=note)
        if v is None:
            b["reason"] = "%s/%s: %s" % (k, p, res.reason(k, p))
        elif ref:
            rv = res.get(*ref)
            b["ref_value"] = rv
            if rv:
                b["ratio"] = v / rv
            else:
                b["reason"] = "%s/%s: %s" % (ref[0], ref[1], res.reason(*ref))
        else:
            b["ratio"] = v
        if b["ratio"] is not None:
            ok = b["ratio"] >= target if op == ">=" else b["ratio"] <= target
            b["status"] = "PASS" if ok else "FAIL"
            b["achievement"] = (b["ratio"] / target if op == ">=" else
                                (target / b["ratio"] if b["ratio"] > 0 else 99))
        out.append(b)
    return out


# ---------------------------------------------------------------- report

def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if unit == "ratio":
        return "%.3f" % v
    if unit == "s":
        return "%.3f" % v
    if abs(v) >= 1000:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def print_report(res, bars, peers, machine, cfg, mode, elapsed):
    cols = [p for p in ALL_PEERS if p in peers and any(
        r["peer"] == p for r in res.rows)]
    print()
    print("blazefs bench (%s mode, %.0f s) — %s" % (
        mode, elapsed, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    print("machine: %s cores (%s), %s MiB RAM, kernel %s, scratch %s on %s (%s); "
          "load average %s at start, %s at end"
          % (machine.get("nproc"), machine.get("cpu", "?"), machine.get("mem_total_mib"),
             machine.get("kernel"), machine.get("scratch"), machine.get("disk"),
             machine.get("fstype"), "/".join(machine.get("loadavg_start", ["?"])),
             "/".join(machine.get("loadavg_end", ["?"]))))
    print("tools: %s, libfuse %s, %s; blazefs commit %s"
          % (machine.get("fio"), machine.get("libfuse"), machine.get("btrfs_progs"),
             machine.get("blazefs_commit")))
    if machine.get("fstype") not in (None, "ext4"):
        print("note: the scratch directory is on %s, not ext4: the 'ext4' column is %s"
              % (machine.get("fstype"), machine.get("fstype")))
    for p in ALL_PEERS:
        if p in peers and peers[p].broken:
            print("SKIP %-12s %s" % (p, peers[p].broken[:150]))
    print()
    cw = 14
    w = 40
    head = "%-*s %-9s" % (w, "workload", "unit") + "".join(
        "%*s" % (cw, peers[c].label) for c in cols)
    print(head)
    print("-" * len(head))
    for key, (title, unit, fam) in res.titles.items():
        ref = REF_OF.get(key)
        refv = res.get(key, ref) if ref else None
        cells = []
        for c in cols:
            v = res.get(key, c)
            if not res.present(key, c):
                s = "-"
            elif v is None:
                s = "n/a"
            else:
                s = fmt(v, unit)
                if c in BLAZE_PEERS and refv and c != ref:
                    s += "(%.2fx)" % (v / refv)
                elif c == ref:
                    s += "[r]"
            cells.append("%*s" % (cw, s))
        print("%-*s %-9s" % (w, title[:w], unit) + "".join(cells))
    print("(x) = ratio to the row's [r] reference peer; '-' = not run on that peer; "
          "n/a reasons in results.json")
    for w_ in WARNINGS:
        print("warning: " + w_[:200])
    print()
    print("%-40s %-8s %-12s %-12s %-8s %s" % ("bar (DESIGN §4), blazefs default mount",
                                             "target", "figure", "reference", "ratio",
                                             "result"))
    for b in bars:
        tgt = "%s %s" % (b["op"], ("%.3g" % b["target"]))
        ref = fmt(b["ref_value"]) if b["ref"] else "-"
        extra = []
        if b["reason"]:
            extra.append(b["reason"][:90])
        if b["note"]:
            extra.append(b["note"])
        print("%-40s %-8s %-12s %-12s %-8s %s" % (
            b["bar"][:40], tgt, fmt(b["value"]), ref,
            ("%.3f" % b["ratio"]) if b["ratio"] is not None else "-",
            b["status"] + ("  (%s)" % "; ".join(extra) if extra else "")))
    n = {s: sum(1 for b in bars if b["status"] == s) for s in ("PASS", "FAIL", "SKIP")}
    print("%d PASS, %d FAIL, %d SKIP" % (n["PASS"], n["FAIL"], n["SKIP"]))
    print()


FAMILIES = [
    ("appends", "Appends (per second, higher is better, log scale)", "per second", 1),
    ("throughput", "Throughput (MB/s, higher is better)", "MB/s", 0),
    ("compression", "Stored / logical bytes (lower is better)", "stored / logical", 0),
    ("latency", "Per-line write+fsync latency p99 (us, lower is better, log scale)", "us", 1),
    ("space", "Store size (MiB, lower is better)", "MiB", 0),
    ("memory", "Daemon peak RSS (MiB, lower is better)", "MiB", 0),
    ("time", "Mount (s) and checkpoint (ms) time (lower is better)", "s / ms", 0),
]


def charts(res, bars, peers, out):
    if not shutil.which("gnuplot"):
        log("gnuplot not found: no charts")
        return []
    cols = [p for p in ALL_PEERS if p in peers]
    made = []
    for fam, title, ylab, logy in FAMILIES:
        keys = [k for k, t in res.titles.items() if t[2] == fam and
                any(res.get(k, c) is not None for c in cols)]
        if not keys:
            continue
        fcols = [c for c in cols if any(res.get(k, c) is not None for k in keys)]
        dat = os.path.join(out, fam + ".dat")
        with open(dat, "w") as f:
            f.write("workload\t" + "\t".join(peers[c].label for c in fcols) + "\n")
            for k in keys:
                vals = [res.get(k, c) for c in fcols]
                f.write(res.titles[k][0].replace("\t", " ") + "\t" + "\t".join(
                    "?" if v is None else "%.6g" % v for v in vals) + "\n")
        png = os.path.join(out, fam + ".png")
        r = sh(["gnuplot", "-e", "datafile='%s'; outfile='%s'; ctitle='%s'; ylab='%s'; logy=%d"
                % (dat, png, title, ylab, logy), os.path.join(BENCH_D, "clustered.gp")])
        if r.returncode == 0:
            made.append(png)
        else:
            log("gnuplot %s: %s" % (fam, r.stderr.strip()[-300:]))
    got = [b for b in bars if b.get("achievement") is not None]
    if got:
        dat = os.path.join(out, "bars.dat")
        with open(dat, "w") as f:
            f.write("bar\tachievement\tcolour\tlabel\n")
            for b in got:
                f.write("%s\t%.4f\t%d\t%s\n" % (
                    b["id"], min(b["achievement"], 3.0),
                    0x2e9e44 if b["status"] == "PASS" else 0xd62728,
                    "%s %s" % (fmt(b["ratio"]), b["status"])))
        png = os.path.join(out, "bars.png")
        r = sh(["gnuplot", "-e", "datafile='%s'; outfile='%s'" % (dat, png),
                os.path.join(BENCH_D, "bars.gp")])
        if r.returncode == 0:
            made.append(png)
        else:
            log("gnuplot bars: %s" % r.stderr.strip()[-300:])
    return made


