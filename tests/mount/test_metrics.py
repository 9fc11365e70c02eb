"""Prometheus metrics (issue 14.5): MOUNT/.blazefs/metrics and
`blazectl stats --prometheus MOUNT` are valid text exposition format 0.0.4
(checked by a strict parser written here and by python3-prometheus-client's
parser), follow the naming conventions, and carry the same values as the
JSON in MOUNT/.blazefs/stats."""
import errno
import json
import math
import os
import re
import subprocess

import pytest

from conftest import BIN, expect_refused

BLAZECTL = os.path.join(os.path.dirname(os.path.dirname(BIN)), "tools", "blazectl")

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", s), f"bad value {s!r}"
    return float(s)


def strict_parse(text):
    """Parses the text format 0.0.4 strictly: every family announced by one
    HELP and one TYPE line before its samples, its samples contiguous, valid
    names and escapes, no duplicate series, no timestamps, histograms
    cumulative with +Inf == _count. Returns {(name, labels-tuple): value}
    and {family: type}."""
    assert text.endswith("\n"), "the last line must end with a newline"
    samples, types, helps = {}, {}, {}
    family = None  # the family whose samples may follow
    done = set()   # families whose samples are over
    for line in text.split("\n")[:-1]:
        assert line == line.strip() and line, f"blank or padded line {line!r}"
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (\S+) (.*)", line)
            assert m, f"bad comment line {line!r}"
            kind, name, rest = m.groups()
            assert NAME.match(name), name
            if kind == "HELP":
                assert name not in helps and name not in done, f"second HELP for {name}"
                assert "\\" not in rest.replace("\\\\", "").replace("\\n", ""), f"bad escape in HELP {line!r}"
                helps[name] = rest
            else:
                assert name in helps, f"TYPE before HELP for {name}"
                assert name not in types, f"second TYPE for {name}"
                assert rest in TYPES, rest
                types[name] = rest
                if family:
                    done.add(family)
                family = name
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        assert m, f"bad sample line (timestamps are not allowed either) {line!r}"
        name, _, body, value = m.groups()
        labels = []
        if body:
            pos = 0
            while pos < len(body):
                lm = LABEL.match(body, pos)
                assert lm, f"bad label in {line!r}"
                labels.append((lm.group(1), lm.group(2)))
                pos = lm.end()
                if pos < len(body):
                    assert body[pos] == ",", f"bad label separator in {line!r}"
                    pos += 1
        assert len({k for k, _ in labels}) == len(labels), f"repeated label in {line!r}"
        fam = family
        assert fam is not None, f"sample before any TYPE: {line!r}"
        if types[fam] == "histogram":
            assert name in (fam + "_bucket", fam + "_sum", fam + "_count"), (fam, name)
            assert (name == fam + "_bucket") == any(k == "le" for k, _ in labels), line
        else:
            assert name == fam, f"sample {name} inside family {fam}"
        key = (name, tuple(sorted(labels)))
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = parse_value(value)
    # histograms: per series, buckets ascending and cumulative, +Inf == count
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                rest = tuple(l for l in labels if l[0] != "le")
                le = parse_value(dict(labels)["le"])
                series.setdefault(rest, []).append((le, v))
        assert series, f"histogram {fam} without buckets"
        for rest, buckets in series.items():
            buckets.sort()
            assert buckets[-1][0] == math.inf, f"{fam}{rest}: no +Inf bucket"
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{fam}{rest}: buckets not cumulative"
            assert samples[(fam + "_count", rest)] == buckets[-1][1]
            assert (fam + "_sum", rest) in samples
    assert set(helps) == set(types)
    return samples, types


def read(path):
    with open(path, "rb") as f:
        return f.read().decode()


def one(samples, name, **labels):
    hits = [v for (n, ls), v in samples.items()
            if n == name and all(dict(ls).get(k) == str(v2) for k, v2 in labels.items())]
    assert len(hits) == 1, (name, labels, len(hits))
    return hits[0]


# JSON field -> metric (docs/FILESYSTEM.md "Metrics" lists the same mapping).
TOP = {
    "workers": "blazefs_workers", "error": "blazefs_pipeline_error", "errors": "blazefs_pipeline_errors_total",
    "batches": "blazefs_batches_total", "records": "blazefs_records_total",
    "ns_records": "blazefs_namespace_records_total", "bytes_in": "blazefs_logical_bytes_total",
    "bytes_stored": "blazefs_wal_written_bytes_total", "fdatasyncs": "blazefs_wal_fdatasyncs_total",
    "checkpoints": "blazefs_checkpoints_total", "queue_depth": "blazefs_queue_depth",
    "reorder_depth": "blazefs_reorder_depth", "inflight_bytes": "blazefs_inflight_bytes",
    "inflight_max": "blazefs_inflight_max_bytes", "writer_blocked": "blazefs_writer_blocked_total",
    "commit_wakeups": "blazefs_commit_wakeups_total", "linger_arms": "blazefs_linger_arms_total",
    "sealed_seq": "blazefs_sealed_seq", "written_seq": "blazefs_written_seq", "durable_seq": "blazefs_durable_seq",
}
STORE = {
    "page_size": "blazefs_store_page_size_bytes", "pages_total": "blazefs_store_pages",
    "pages_free": "blazefs_store_free_pages", "data_pages": "blazefs_store_data_pages",
    "stored_bytes": "blazefs_store_stored_bytes", "logical_bytes": "blazefs_store_logical_bytes",
    "wal_bytes_since_checkpoint": "blazefs_wal_since_checkpoint_bytes",
    "checkpoints": "blazefs_store_checkpoints_total", "checkpoint_lsn": "blazefs_store_checkpoint_lsn",
    "last_lsn": "blazefs_store_last_lsn", "cache_hits": "blazefs_cache_hits_total",
    "cache_misses": "blazefs_cache_misses_total", "checksum_errors": "blazefs_checksum_errors_total",
    "replayed_batches": "blazefs_store_replayed_batches", "error": "blazefs_store_error",
    "space_need": "blazefs_store_space_need_bytes", "space_spare": "blazefs_store_space_spare_bytes",
    "free_extents": "blazefs_store_free_extents", "pages_released": "blazefs_store_released_pages_total",
    "store_db_truncations": "blazefs_store_db_truncations_total",
    "pack_pages": "blazefs_store_pack_pages", "pack_live_bytes": "blazefs_store_pack_live_bytes",
    "pages_cleaned": "blazefs_store_cleaned_pages_total",
    "chunks_sealed": "blazefs_store_chunks_sealed_total", "tails_written": "blazefs_store_tails_written_total",
    "chunks_split": "blazefs_store_chunks_split_total",
    "open_chunk_bytes": "blazefs_store_open_chunk_bytes", "pages_relocated": "blazefs_store_relocated_pages_total",
}
FS = {
    "live_inodes": "blazefs_inodes", "kernel_inodes": "blazefs_kernel_inodes", "open_files": "blazefs_open_files",
    "writes": "blazefs_writes_total", "write_bytes": "blazefs_written_bytes_total",
    "overlap_bytes": "blazefs_overlap_bytes_total", "zero_extend_bytes": "blazefs_zero_extend_bytes_total",
    "holes_filled": "blazefs_holes_filled_total",
    "scrub_bytes": "blazefs_scrub_bytes_total", "scrub_damaged": "blazefs_scrub_damaged_total", "hole_bytes": "blazefs_hole_bytes_total",
    "nsops": "blazefs_namespace_ops_total", "flushes": "blazefs_flushes_total", "fsyncs": "blazefs_fsyncs_total",
    "errors": "blazefs_errors_total", "failed": "blazefs_failed",
    "space_reclaims": "blazefs_space_reclaims_total",
    "held_writes": "blazefs_held_writes_total", "order_waits": "blazefs_order_waits_total",
    "held_bytes": "blazefs_held_bytes",
    "held_bytes_max": "blazefs_held_max_bytes", "retrieved_bytes": "blazefs_retrieved_bytes_total",
    "invalidations": "blazefs_invalidations_total", "nospc_pages": "blazefs_nospc_pages_total",
}


def compare(samples, s, store):
    """Every number of the JSON has its metric, with the same value."""
    lb = {"store": store}
    for k, v in s.items():
        if k in TOP:
            assert one(samples, TOP[k], **lb) == v, k
        elif k == "store":
            assert set(v) == set(STORE), set(v) ^ set(STORE)
            for sk, sv in v.items():
                assert one(samples, STORE[sk], **lb) == sv, sk
        elif k == "stages_us":
            for stage, h in v.items():
                assert one(samples, "blazefs_stage_duration_seconds_count", stage=stage, **lb) == h["count"]
                got = one(samples, "blazefs_stage_duration_seconds_sum", stage=stage, **lb)
                assert abs(got - h["sum"] / 1e6) <= 1e-7 + 1e-9 * got, (stage, got, h["sum"])
        elif k == "group_size":
            assert one(samples, "blazefs_group_commit_batches_count", **lb) == v["count"]
            got = one(samples, "blazefs_group_commit_batches_sum", **lb)
            assert abs(got - v["mean"] * v["count"]) <= 0.005 * v["count"] + 1e-9, (got, v)  # mean is %.2f
        elif k == "fs":
            for fk, fv in v.items():
                if fk in FS:
                    assert one(samples, FS[fk], **lb) == (int(fv) if isinstance(fv, bool) else fv), fk
                elif fk == "store":
                    assert fv == store
                elif fk == "mounted_at_ns":
                    assert one(samples, "blazefs_mount_time_seconds", **lb) == pytest.approx(fv / 1e9, abs=1e-6)
                elif fk == "options":
                    info = {str(ok): (str(ov).lower() if isinstance(ov, bool) else str(ov))
                            for ok, ov in fv.items()}
                    assert one(samples, "blazefs_info", **lb, **info) == 1
                elif fk == "refusals":
                    total = 0
                    for reason, n in fv.items():
                        if reason != "total":
                            assert one(samples, "blazefs_refusals_total", reason=reason, **lb) == n, reason
                            total += n
                    assert total == fv["total"]
                else:
                    raise AssertionError(f"JSON field fs.{fk} has no metric")
        else:
            raise AssertionError(f"JSON field {k} has no metric")


def quiet_snapshot(bz):
    """metrics, stats, metrics again until the two metrics reads agree (the
    daemon is idle: nothing was in flight in between)."""
    for _ in range(100):
        a = read(bz.path(".blazefs", "metrics"))
        s = json.loads(read(bz.path(".blazefs", "stats")))
        b = read(bz.path(".blazefs", "metrics"))
        if a == b:
            return a, s
    raise AssertionError("the counters never settled")


def test_metrics_file(bz):
    names = os.listdir(bz.path(".blazefs"))
    assert "metrics" in names and "stats" in names
    st = os.stat(bz.path(".blazefs", "metrics"))
    assert st.st_mode & 0o222 == 0
    with pytest.raises(OSError) as ei:
        open(bz.path(".blazefs", "metrics"), "ab")
    assert ei.value.errno in (errno.EACCES, errno.EPERM)
    # some activity: data, an fsync, a refusal
    with open(bz.path("f"), "wb") as f:
        f.write(b"metric line\n" * 20000)
        os.fsync(f.fileno())
    expect_refused(os.truncate, bz.path("f"), 1)
    os.mkdir(bz.path("d"))

    text, s = quiet_snapshot(bz)
    samples, types = strict_parse(text)
    # conventions: prefix, counters end in _total, every sample names its store
    for fam, t in types.items():
        assert fam.startswith("blazefs_"), fam
        assert (t == "counter") == fam.endswith("_total"), fam
    for (name, labels), _ in samples.items():
        assert dict(labels).get("store") == bz.store, name
    assert types["blazefs_stage_duration_seconds"] == "histogram"
    stages = {dict(ls)["stage"] for (n, ls) in samples if n == "blazefs_stage_duration_seconds_count"}
    assert stages == set(s["stages_us"])
    compare(samples, s, bz.store)
    assert one(samples, "blazefs_written_bytes_total", store=bz.store) >= 240000
    assert one(samples, "blazefs_refusals_total", reason="shrink", store=bz.store) >= 1
    assert one(samples, "blazefs_stage_duration_seconds_count", stage="fdatasync", store=bz.store) >= 1

    # python3-prometheus-client's parser reads it the same way
    parser = pytest.importorskip("prometheus_client.parser")
    theirs = {}
    for fam in parser.text_string_to_metric_families(text):
        assert fam.type == types[fam.name if fam.type != "counter" else fam.name + "_total"]
        for smp in fam.samples:
            theirs[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    assert theirs == samples


def test_blazectl_prometheus(bz, workdir):
    with open(bz.path("f"), "ab") as f:
        f.write(b"x" * 5000)
        os.fsync(f.fileno())
    _, s = quiet_snapshot(bz)
    r = subprocess.run([BLAZECTL, "stats", "--prometheus", bz.mnt], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    samples, _ = strict_parse(r.stdout)
    compare(samples, s, bz.store)
    # --output: the textfile collector's way (written whole, then renamed)
    out = os.path.join(workdir, "blazefs.prom")
    r = subprocess.run([BLAZECTL, "stats", "--prometheus", "--output", out, bz.mnt], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    samples2, _ = strict_parse(read(out))
    compare(samples2, s, bz.store)
    assert sorted(os.listdir(workdir)) == sorted(x for x in os.listdir(workdir) if ".tmp." not in x)
    # not a blazefs mount: an error, exit code 8
    r = subprocess.run([BLAZECTL, "stats", "--prometheus", workdir], capture_output=True, text=True, timeout=60)
    assert r.returncode == 8 and "metrics" in r.stderr


def test_strict_parser_rejects_bad_input():
    """The parser above is the test's yardstick: it must catch mistakes."""
    good = ('# HELP a_total x\n# TYPE a_total counter\na_total{store="s"} 1\n'
            '# HELP h y\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n')
    strict_parse(good)
    bad = [
        good.rstrip("\n"),                                           # no final newline
        good.replace("# TYPE a_total counter\n", ""),                # no TYPE
        good.replace('a_total{store="s"} 1', 'a_total{store="s"} 1 123'),  # timestamp
        good.replace('h_bucket{le="+Inf"} 2', 'h_bucket{le="+Inf"} 0'),    # not cumulative
        good.replace("h_count 2", "h_count 3"),                      # +Inf != count
        good.replace('store="s"', 'store="s\\q"'),                   # bad escape
        good + 'a_total{store="s"} 2\n',                             # family not contiguous
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            strict_parse(text)
