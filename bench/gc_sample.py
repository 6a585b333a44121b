#!/usr/bin/env python3
"""gc_sample.py - samples a bufcache process for bench/gc_mixed.sh.

Every INTERVAL seconds: the process's VmRSS (/proc/PID/status); every
EVERY-th sample also GET ADMIN/debug/memstats (loopback). One CSV line per
sample:
  t_unix_ns,rss_bytes,heap_inuse,heap_alloc,heap_released,num_gc,entries,evicted,gc_cpu_fraction
(the memstats columns are empty when not fetched). With --threads FILE it
also writes, every --thread-interval seconds (0.01), one line with every
thread's cumulative run time from /proc/PID/task/TID/schedstat:
  t_unix_ns tid:run_ns tid:run_ns ...
Runs until the process exits, SECONDS pass, or STOPFILE exists.

  gc_sample.py PID ADMIN_URL OUT.csv [--interval 0.1] [--every 10]
               [--seconds 600] [--stopfile PATH] [--threads FILE]
               [--thread-interval 0.01]
"""
import argparse
import json
import os
import threading
import time
import urllib.request


def rss(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memstats(admin):
    try:
        with urllib.request.urlopen(admin + "/debug/memstats", timeout=5) as r:
            m = json.load(r)
        c = m.get("Cache", {})
        return [m["HeapInuse"], m["HeapAlloc"], m["HeapReleased"], m["NumGC"],
                c.get("Entries", ""), c.get("Evictions", {}).get("memory", ""),
                m["GCCPUFraction"]]
    except Exception:  # the server may be busy or gone; a gap is fine
        return [""] * 7


def thread_sampler(pid, path, interval, done):
    """Per-thread run time, every interval s, until done is set."""
    task = "/proc/%d/task" % pid
    nxt = time.monotonic()
    with open(path, "w") as f:
        while not done.is_set():
            t = time.time_ns()
            parts = [str(t)]
            try:
                for tid in os.listdir(task):
                    try:
                        with open("%s/%s/schedstat" % (task, tid)) as g:
                            parts.append("%s:%s" % (tid, g.read().split()[0]))
                    except OSError:
                        pass
            except OSError:
                break
            f.write(" ".join(parts) + "\n")
            nxt += interval
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                nxt = time.monotonic()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("admin")
    ap.add_argument("out")
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--stopfile", default="")
    ap.add_argument("--threads", default="")
    ap.add_argument("--thread-interval", type=float, default=0.01)
    a = ap.parse_args()
    done = threading.Event()
    th = None
    if a.threads:
        th = threading.Thread(target=thread_sampler,
                              args=(a.pid, a.threads, a.thread_interval, done),
                              daemon=True)
        th.start()
    t_end = time.time() + a.seconds
    n = 0
    nxt = time.monotonic()
    with open(a.out, "w") as f:
        f.write("t_unix_ns,rss_bytes,heap_inuse,heap_alloc,heap_released,"
                "num_gc,entries,evicted,gc_cpu_fraction\n")
        while time.time() < t_end:
            if a.stopfile and os.path.exists(a.stopfile):
                break
            r = rss(a.pid)
            if r is None:
                break
            t = time.time_ns()
            row = [t, r]
            row += memstats(a.admin) if n % a.every == 0 else [""] * 7
            f.write(",".join(str(x) for x in row) + "\n")
            f.flush()
            n += 1
            nxt += a.interval
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                nxt = time.monotonic()
    done.set()
    if th:
        th.join()


if __name__ == "__main__":
    main()
