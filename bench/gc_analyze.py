#!/usr/bin/env python3
"""gc_analyze.py - figures of one load window for bench/gc_mixed.sh.

Inputs
  --gctrace FILE   the server's stderr: lines
                   "gc N @T.TTTs F%: p1+mark+p2+sweep ms clock, A->B->C MB,
                    G MB goal, W W[ (forced)]"
  --memstats FILE  /debug/memstats read after the window: PauseEnd[] (unix ns
                   at each cycle's end) anchors the gctrace lines in time
  --buckets FILE   gcload's per-millisecond completions (with start_unix_ns)
  --samples FILE   gc_sample.py's CSV (RSS every 100 ms, memstats every 1 s)
  --ms0/--ms1 FILE memstats snapshots at the window's start and end; the
                   first line of FILE.t is the unix ns it was read at
  --cpu0/--cpu1 N  the server's utime+stime (clock ticks) at start and end
  --threads FILE   gc_sample.py --threads: every thread's run time every 10 ms
  --limit BYTES    the soft memory limit
Output: key=value lines on stdout (and --json FILE).

Cycle windows come from PauseEnd (the end of a cycle's second pause, as in
Go; older builds: the end of its sweep), so a cycle started at
PauseEnd - (p1+mark+p2); its phases follow in that order. "Between cycles" is every whole millisecond bucket that no
cycle (start of pause 1 to end of sweep) touches, without the first and last
RAMP ms of the run. Throughput is completions per second over whole buckets.
"""
import argparse
import json
import math
import os
import re
import sys

LINE = re.compile(
    r"^gc (\d+) @([\d.]+)s (\d+)%: ([\d.]+)\+([\d.]+)\+([\d.]+)\+([\d.]+) ms clock, "
    r"([\d.]+)->([\d.]+)->([\d.]+) MB, ([\d.]+) MB goal, (\d+) W( \(forced\))?$")


def pct(xs, p):
    """Nearest-rank percentile (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[k - 1]


def rnd(x, nd=None):
    """round() that lets NaN through."""
    if x != x:
        return x
    return round(x, nd) if nd is not None else round(x)


def read_gctrace(path):
    cycles = []
    bad = 0
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith("gc "):
                continue
            m = LINE.match(line.rstrip("\n"))
            if not m:
                bad += 1
                continue
            g = m.groups()
            cycles.append(dict(n=int(g[0]), t=float(g[1]), frac=int(g[2]),
                               p1=float(g[3]) * 1e6, mark=float(g[4]) * 1e6,
                               p2=float(g[5]) * 1e6, sweep=float(g[6]) * 1e6,
                               before=float(g[7]), after=float(g[8]),
                               live=float(g[9]), goal=float(g[10]),
                               w=int(g[11]), forced=bool(g[12])))
    return cycles, bad


def read_memstats_t(path):
    with open(path) as f:
        m = json.load(f)
    t = None
    if os.path.exists(path + ".t"):
        with open(path + ".t") as f:
            t = int(f.readline().strip())
    return m, t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gctrace", required=True)
    ap.add_argument("--memstats", required=True)
    ap.add_argument("--buckets", required=True)
    ap.add_argument("--samples")
    ap.add_argument("--ms0")
    ap.add_argument("--ms1")
    ap.add_argument("--cpu0", type=int)
    ap.add_argument("--cpu1", type=int)
    ap.add_argument("--clk-tck", type=int, default=100)
    ap.add_argument("--limit", type=int, required=True)
    ap.add_argument("--ramp-ms", type=int, default=200)
    ap.add_argument("--threads")
    ap.add_argument("--json")
    a = ap.parse_args()
    out = {}

    cycles, bad = read_gctrace(a.gctrace)
    out["gctrace_lines"] = len(cycles)
    out["gctrace_bad_lines"] = bad
    with open(a.memstats) as f:
        ms_end = json.load(f)
    pause_end = ms_end["PauseEnd"]
    numgc = ms_end["NumGC"]
    # PauseEnd[] is the unix time at the end of a cycle's mark termination
    # pause (Go's meaning) or, in older builds, at the end of its sweep. The
    # right reading is the one under which every cycle's start lines up with
    # its gctrace @T (printed to the ms): pick the one with the least spread.
    def starts(with_sweep):
        out = {}
        for c in cycles:
            if numgc - c["n"] < 256 and c["n"] <= numgc:
                before = c["p1"] + c["mark"] + c["p2"] + (c["sweep"] if with_sweep else 0)
                out[c["n"]] = pause_end[(c["n"] - 1) % 256] - before
        return out

    def spread(st):
        offs = sorted(st[c["n"]] - c["t"] * 1e9 for c in cycles if c["n"] in st)
        if len(offs) < 2:
            return 0.0, (offs[0] if offs else None)
        return offs[-1] - offs[0], offs[len(offs) // 2]

    cand = [(spread(starts(w)), w, starts(w)) for w in (False, True)]
    (sp, init_unix), with_sweep, st = min(cand, key=lambda x: x[0][0])
    out["pause_end_means"] = "sweep end" if with_sweep else "mark termination end"
    out["anchor_spread_ms"] = rnd(sp / 1e6, 2)
    for c in cycles:
        c["dur"] = c["p1"] + c["mark"] + c["p2"] + c["sweep"]
        if c["n"] in st:
            c["start_unix"] = st[c["n"]]
            c["end_unix"] = c["start_unix"] + c["dur"]
    for c in cycles:
        if "start_unix" not in c and init_unix is not None:
            c["start_unix"] = init_unix + c["t"] * 1e9
            c["end_unix"] = c["start_unix"] + c["dur"]

    # the load window
    start_unix = None
    rows = []
    with open(a.buckets) as f:
        for line in f:
            if line.startswith("# start_unix_ns"):
                start_unix = int(line.split()[2])
                continue
            if line.startswith("#"):
                continue
            ms, done, gets, puts, maxlat, errs = map(int, line.split())
            rows.append((done, maxlat))
    nb = len(rows)
    w0 = start_unix
    w1 = start_unix + nb * 1_000_000
    win = [c for c in cycles if "start_unix" in c and w0 <= c["start_unix"] < w1]
    out["window_s"] = rnd(nb / 1000.0, 3)
    out["cycles"] = len(win)
    out["cycles_forced"] = sum(1 for c in win if c["forced"])
    out["cycles_pacer"] = out["cycles"] - out["cycles_forced"]
    p1 = [c["p1"] for c in win]
    p2 = [c["p2"] for c in win]
    both = p1 + p2
    for name, xs in (("pause", both), ("pause1", p1), ("pause2", p2)):
        out[name + "_n"] = len(xs)
        out[name + "_p50_us"] = rnd(pct(xs, 50) / 1e3, 1)
        out[name + "_p99_us"] = rnd(pct(xs, 99) / 1e3, 1)
        out[name + "_max_us"] = rnd(max(xs) / 1e3, 1) if xs else float("nan")
    marks = [c["mark"] for c in win]
    sweeps = [c["sweep"] for c in win]
    out["mark_p50_ms"] = rnd(pct(marks, 50) / 1e6, 2)
    out["mark_max_ms"] = rnd(max(marks) / 1e6, 2) if marks else float("nan")
    out["sweep_p50_ms"] = rnd(pct(sweeps, 50) / 1e6, 2)
    out["live_mb_last"] = win[-1]["live"] if win else float("nan")
    out["goal_mb_last"] = win[-1]["goal"] if win else float("nan")
    out["pauses_over_100us"] = sum(1 for x in both if x > 100e3)
    out["pauses_over_1ms"] = sum(1 for x in both if x > 1e6)

    # throughput: buckets inside marking / inside whole cycles / between
    def bucket_range(u0, u1, inner=True):
        """Buckets [i, j) fully inside [u0, u1) (inner) or touching it."""
        if inner:
            i = math.ceil((u0 - start_unix) / 1e6)
            j = math.floor((u1 - start_unix) / 1e6)
        else:
            i = math.floor((u0 - start_unix) / 1e6)
            j = math.ceil((u1 - start_unix) / 1e6)
        return max(i, 0), min(j, nb)

    in_cycle = [False] * nb
    mark_b = []
    cyc_b = []
    for c in win:
        s = c["start_unix"]
        i, j = bucket_range(s, s + c["dur"], inner=False)
        for k in range(i, j):
            in_cycle[k] = True
        i, j = bucket_range(s + c["p1"], s + c["p1"] + c["mark"])
        mark_b += range(i, j)
        i, j = bucket_range(s, s + c["dur"])
        cyc_b += range(i, j)
    between = [k for k in range(a.ramp_ms, nb - a.ramp_ms) if not in_cycle[k]]

    def rate(bs):
        if not bs:
            return float("nan")
        return sum(rows[k][0] for k in bs) * 1000.0 / len(bs)

    def maxlat(bs):
        return max((rows[k][1] for k in bs), default=float("nan"))

    out["rps_all"] = rnd(rate(list(range(a.ramp_ms, nb - a.ramp_ms))))
    out["rps_between"] = rnd(rate(between))
    out["rps_marking"] = rnd(rate(mark_b))
    out["rps_in_cycles"] = rnd(rate(cyc_b))
    out["ms_between"] = len(between)
    out["ms_marking"] = len(mark_b)
    out["ms_in_cycles"] = len(cyc_b)
    rb = rate(between)
    out["marking_vs_between"] = rnd(rate(mark_b) / rb, 3) if rb == rb and rb else float("nan")
    out["cycles_vs_between"] = rnd(rate(cyc_b) / rb, 3) if rb == rb and rb else float("nan")
    out["maxlat_between_us"] = maxlat(between)
    out["maxlat_in_cycles_us"] = maxlat([k for k in range(nb) if in_cycle[k]])

    # where the server's CPU went, inside marking and between cycles: per
    # thread run time (schedstat) over 10 ms intervals that lie wholly in
    # one kind of window. The busiest thread is the worker; the thread that
    # runs most while marking, other than it, is the collector.
    if a.threads and os.path.exists(a.threads):
        marks = [(c["start_unix"] + c["p1"], c["start_unix"] + c["p1"] + c["mark"]) for c in win]
        cyc = [(c["start_unix"], c["start_unix"] + c["dur"]) for c in win]
        lo, hi = start_unix + a.ramp_ms * 1e6, start_unix + (nb - a.ramp_ms) * 1e6

        def kind(t0, t1):
            if t0 < lo or t1 > hi:
                return None
            for u0, u1 in marks:
                if u0 <= t0 and t1 <= u1:
                    return "marking"
            for u0, u1 in cyc:
                if t0 < u1 and u0 < t1:
                    return None
            return "between"

        prev = None
        acc = {"marking": [0.0, {}, 0], "between": [0.0, {}, 0]}
        with open(a.threads) as f:
            for line in f:
                p = line.split()
                t = int(p[0])
                cur = dict((int(x.split(":")[0]), int(x.split(":")[1])) for x in p[1:])
                if prev:
                    k = kind(prev[0], t)
                    if k:
                        acc[k][0] += t - prev[0]
                        for tid, run in cur.items():
                            d = run - prev[1].get(tid, run)
                            acc[k][1][tid] = acc[k][1].get(tid, 0) + d
                        # requests completed in the interval (1 ms buckets)
                        i0 = int((prev[0] - start_unix) / 1e6)
                        i1 = int((t - start_unix) / 1e6)
                        acc[k][2] += sum(rows[j][0] for j in range(max(i0, 0), min(i1, nb)))
                prev = (t, cur)
        tot = {}
        for k in acc:
            for tid, d in acc[k][1].items():
                tot[tid] = tot.get(tid, 0) + d
        if tot and acc["marking"][0] > 0 and acc["between"][0] > 0:
            worker = max(tot, key=tot.get)
            mk = acc["marking"][1]
            collector = max((t for t in mk if t != worker), key=lambda t: mk[t], default=None)
            for k in ("marking", "between"):
                wall, runs, reqs = acc[k]
                out["cpu_%s_s" % k] = rnd(wall / 1e9, 2)
                out["worker_cpu_share_%s" % k] = rnd(runs.get(worker, 0) / wall, 3)
                out["collector_cpu_share_%s" % k] = rnd(runs.get(collector, 0) / wall, 3) if collector else 0
                out["server_cpu_share_%s" % k] = rnd(sum(runs.values()) / wall, 3)
                wcpu = runs.get(worker, 0) / 1e9
                out["req_per_worker_cpu_s_%s" % k] = rnd(reqs / wcpu) if wcpu > 0 else float("nan")
            out["worker_tid"] = worker
            out["collector_tid"] = collector

    # GC CPU over the window: the server's own definition,
    # gc_cpu_ns / (elapsed * (W + 1)), from two memstats snapshots
    W = win[0]["w"] if win else (cycles[-1]["w"] if cycles else 1)
    out["workers"] = W
    if a.ms0 and a.ms1 and init_unix is not None:
        m0, t0 = read_memstats_t(a.ms0)
        m1, t1 = read_memstats_t(a.ms1)
        e0, e1 = t0 - init_unix, t1 - init_unix
        g0 = m0["GCCPUFraction"] * e0 * (W + 1)
        g1 = m1["GCCPUFraction"] * e1 * (W + 1)
        # the two reads' own timing errors can make an idle window's figure
        # a hair negative
        g1 = max(g1, g0)
        out["gc_cpu_s"] = rnd((g1 - g0) / 1e9, 3)
        out["gc_cpu_fraction_window"] = rnd((g1 - g0) / ((t1 - t0) * (W + 1)), 4)
        out["gc_cpu_fraction_cumulative"] = rnd(m1["GCCPUFraction"], 4)
        if a.cpu0 is not None and a.cpu1 is not None and a.cpu1 > a.cpu0:
            proc = (a.cpu1 - a.cpu0) / a.clk_tck * 1e9
            out["server_cpu_s"] = rnd(proc / 1e9, 2)
            out["gc_share_of_server_cpu"] = rnd((g1 - g0) / proc, 4)
        out["heap_inuse_end"] = m1["HeapInuse"]
        out["heap_alloc_end"] = m1["HeapAlloc"]

    # RSS and HeapInuse over the window
    if a.samples:
        rss, inuse = [], []
        with open(a.samples) as f:
            next(f)
            for line in f:
                p = line.rstrip("\n").split(",")
                t = int(p[0])
                if not (w0 <= t <= w1 + 500_000_000):
                    continue
                rss.append(int(p[1]))
                if p[2]:
                    inuse.append(int(p[2]))
        out["rss_samples"] = len(rss)
        if rss:
            out["rss_max"] = max(rss)
            out["rss_max_vs_limit"] = rnd(max(rss) / a.limit, 3)
        if inuse:
            out["heap_inuse_max"] = max(inuse)
            out["heap_inuse_max_vs_limit"] = rnd(max(inuse) / a.limit, 3)
    out["limit"] = a.limit
    for k, v in out.items():
        print("%s=%s" % (k, v))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
