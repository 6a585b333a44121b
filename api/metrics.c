/* metrics.c - per-request metrics and the Prometheus text exposition
 * (GET /metrics on both listeners, text format 0.0.4).
 *
 * Writers and readers
 * -------------------
 *   api__observe runs once per finished request, on the worker that served
 *   it, and adds to that worker's block, blocks[srv_worker_id(worker)]: one
 *   latency histogram cell per (route, method, status). The owner is the
 *   only writer, so it updates with relaxed loads and stores (no locked
 *   instruction), takes no lock, allocates nothing, and shares no cache line
 *   with another worker (blocks are cache-line aligned and padded).
 *   A reader (any thread serving /metrics or /debug/memstats) sums the live
 *   workers' blocks. Every word it reads only grows, and a cell's count is
 *   the sum of its buckets, so a scrape is self-consistent (the +Inf bucket
 *   equals _count) even while requests finish.
 *
 * What /metrics says
 * ------------------
 *   Names follow client_golang's Go and process collectors wherever Go has
 *   the figure, so Go dashboards and alerts work unchanged:
 *     go_memstats_*      runtime.MemStats as gauges and counters
 *     go_gc_*            pauses (a summary over the last 256 cycles, like
 *                        go_gc_duration_seconds, and a histogram of every
 *                        stop-the-world pause), cycles, GOGC, memory limit
 *     process_*          CPU, memory, fds, start time, from /proc
 *   and bufcache's own:
 *     bufcache_cache_*   the index            bufcache_pool_*  the gc pools
 *     bufcache_http_*    requests by route, method and status, latency
 *                        histograms, in flight, cancellations by cause
 *   docs/operations.md lists every series and the MemStats mapping.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api_internal.h"

#define A api__state

const char *const api__route_label[R__COUNT] = {
#define X(name, label) [name] = label,
    API_ROUTES(X)
#undef X
};

static const char *const method_label[M__COUNT] = {
    [M_GET] = "GET",   [M_HEAD] = "HEAD", [M_PUT] = "PUT",
    [M_DELETE] = "DELETE", [M_POST] = "POST", [M_OTHER] = "OTHER",
};

/* ---- the per-worker blocks ------------------------------------------------ */

/* Status codes get a slot each; "none" is a request that ended before an
 * answer was queued (client gone, deadline, shutdown, a dropped upload). */
#define API_CODES(X)                                                           \
  X(0, "none")                                                                 \
  X(200, "200")                                                                \
  X(201, "201")                                                                \
  X(204, "204")                                                                \
  X(400, "400")                                                                \
  X(401, "401")                                                                \
  X(404, "404")                                                                \
  X(405, "405")                                                                \
  X(408, "408")                                                                \
  X(413, "413")                                                                \
  X(500, "500")                                                                \
  X(503, "503")                                                                \
  X(507, "507")

enum {
#define X(code, label) S_##code,
  API_CODES(X)
#undef X
  S_OTHER,
  S__COUNT
};

static const char *const code_label[S__COUNT] = {
#define X(code, label) [S_##code] = label,
    API_CODES(X)
#undef X
    [S_OTHER] = "other",
};

static inline unsigned code_slot(unsigned status) {
  switch (status) {
#define X(code, label)                                                         \
  case code:                                                                   \
    return S_##code;
    API_CODES(X)
#undef X
  default:
    return S_OTHER;
  }
}

/* Request latency buckets: inclusive upper bounds, fixed at compile time. */
#define LAT_BOUNDS(X)                                                          \
  X(10000, "1e-05")                                                            \
  X(25000, "2.5e-05")                                                          \
  X(50000, "5e-05")                                                            \
  X(100000, "0.0001")                                                          \
  X(250000, "0.00025")                                                         \
  X(500000, "0.0005")                                                          \
  X(1000000, "0.001")                                                          \
  X(2500000, "0.0025")                                                         \
  X(5000000, "0.005")                                                          \
  X(10000000, "0.01")                                                          \
  X(25000000, "0.025")                                                         \
  X(50000000, "0.05")                                                          \
  X(100000000, "0.1")                                                          \
  X(250000000, "0.25")                                                         \
  X(500000000, "0.5")                                                          \
  X(1000000000, "1")                                                           \
  X(2500000000, "2.5")                                                         \
  X(5000000000, "5")                                                           \
  X(10000000000, "10")

static const uint64_t lat_bound_ns[] = {
#define X(ns, label) (uint64_t)ns,
    LAT_BOUNDS(X)
#undef X
};
static const char *const lat_label[] = {
#define X(ns, label) label,
    LAT_BOUNDS(X)
#undef X
};
#define LAT_BUCKETS ((int)BC_ARRAY_LEN(lat_bound_ns))

/* One histogram: le[i] counts requests in bucket i only (not cumulative);
 * le[LAT_BUCKETS] is the overflow (+Inf). Count = the sum of le[]. */
typedef struct cell {
  _Atomic uint64_t le[LAT_BUCKETS + 1];
  _Atomic uint64_t sum_ns;
} cell_t;

/* One worker's counters. Written only by that worker (relaxed), read by
 * anyone. Aligned and padded to a cache line. */
typedef struct wblock {
  cell_t cell[R__COUNT][M__COUNT][S__COUNT];
} BC_ALIGNED_CL wblock_t;

_Static_assert(sizeof(wblock_t) % BC_CACHELINE == 0, "pad wblock_t");

/* The data workers (at most 256, server/config.c) and the admin worker. The
 * array is zero pages until a worker first writes its block; readers only
 * walk the live workers' blocks. */
#define API_MAX_WORKERS 257
static wblock_t blocks[API_MAX_WORKERS];

static inline void bump(_Atomic uint64_t *c, uint64_t d) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                        memory_order_relaxed);
}

void api__observe(srv_ctx_t *ctx, enum MHD_RequestTerminationCode toe) {
  (void)toe; /* the server counts cancellations by cause */
  const req_t *r = api__req(ctx);
  unsigned w = (unsigned)srv_worker_id(ctx->worker);
  BC_DASSERT(r->route < R__COUNT && r->method < M__COUNT);
  if (BC_UNLIKELY(w >= API_MAX_WORKERS)) /* config.c caps workers at 256 */
    return;
  uint64_t ns = bc_now_mono_ns() - ctx->start_ns;
  /* ctx->status: api__queue's, or the server's own 408 at a deadline */
  cell_t *c = &blocks[w].cell[r->route][r->method][code_slot(ctx->status)];
  int b = 0;
  while (b < LAT_BUCKETS && ns > lat_bound_ns[b])
    b++;
  bump(&c->le[b], 1);
  bump(&c->sum_ns, ns);
}

/* Live blocks: the data workers and the admin worker. */
static int nblocks(void) {
  int n = srv_config()->workers + 1;
  return n > API_MAX_WORKERS ? API_MAX_WORKERS : n;
}

/* ---- memory figures shared with /debug/memstats ---------------------------- */

static _Atomic uint64_t uv_stack_bytes; /* stack of a libuv thread; 0 = unknown */

/* The stack reserved for the calling thread (a libuv worker thread: the
 * admin and data workers have the same), measured once. */
static uint64_t worker_stack_size(void) {
  uint64_t s = atomic_load_explicit(&uv_stack_bytes, memory_order_relaxed);
  if (s)
    return s;
  pthread_attr_t attr;
  size_t sz = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstacksize(&attr, &sz);
    pthread_attr_destroy(&attr);
  }
  s = sz ? sz : (uint64_t)8 << 20;
  atomic_store_explicit(&uv_stack_bytes, s, memory_order_relaxed);
  return s;
}

/* Stack of a thread created with default attributes (the collector). */
static uint64_t default_stack_size(void) {
  pthread_attr_t attr;
  size_t sz = 0;
  if (pthread_getattr_default_np(&attr) == 0) {
    pthread_attr_getstacksize(&attr, &sz);
    pthread_attr_destroy(&attr);
  }
  return sz ? sz : (uint64_t)8 << 20;
}

void api__read_memstats(api_memstats_t *ms) {
  gc_read_stats(&ms->gc);
  cache_read_stats(A.cache, &ms->cache);
  srv_read_stats(&ms->srv);
  int n = nblocks();
  /* threads: n libuv workers (data + admin), the collector, main */
  ms->stack_sys = (uint64_t)n * worker_stack_size() + 2 * default_stack_size();
  ms->other_sys = ms->cache.index_bytes + (uint64_t)n * sizeof(wblock_t);
  ms->sys = ms->gc.sys + ms->stack_sys + ms->other_sys;
  ms->oversize_closed = atomic_load_explicit(&A.oversize_closed,
                                             memory_order_relaxed);
}

/* ---- process figures (client_golang's process collector) ------------------ */

static double process_start_s; /* Unix seconds; set by api__metrics_init */

/* Reads a small /proc file into buf (NUL-terminated); its length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t n = 0;
  while (n + 1 < cap) {
    ssize_t k = read(fd, buf + n, cap - 1 - n);
    if (k <= 0)
      break;
    n += (size_t)k;
  }
  close(fd);
  buf[n] = 0;
  return (ssize_t)n;
}

/* Field i (1-based, as in proc(5)) of /proc/self/stat; 0 if absent. The
 * command name (field 2) may hold spaces: fields are counted after its ')'. */
static uint64_t stat_field(const char *stat, int i) {
  const char *p = strrchr(stat, ')');
  if (!p)
    return 0;
  p++;
  for (int f = 3; *p; f++) {
    while (*p == ' ')
      p++;
    if (f == i)
      return strtoull(p, NULL, 10);
    while (*p && *p != ' ')
      p++;
  }
  return 0;
}

typedef struct proc_stats {
  uint64_t rss, vsize, threads, open_fds, max_fds, max_vsize;
} proc_stats_t;

static void read_proc(proc_stats_t *p) {
  memset(p, 0, sizeof(*p));
  char buf[1024];
  long page = sysconf(_SC_PAGESIZE);
  if (read_small("/proc/self/stat", buf, sizeof(buf)) > 0) {
    p->threads = stat_field(buf, 20);
    p->vsize = stat_field(buf, 23);
  }
  unsigned long long size, resident;
  if (read_small("/proc/self/statm", buf, sizeof(buf)) > 0 &&
      sscanf(buf, "%llu %llu", &size, &resident) == 2)
    p->rss = resident * (uint64_t)page;
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)))
      if (e->d_name[0] != '.')
        p->open_fds++;
    closedir(d);
    if (p->open_fds)
      p->open_fds--; /* the directory's own fd */
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    p->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
  if (getrlimit(RLIMIT_AS, &rl) == 0)
    p->max_vsize = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
}

void api__metrics_init(void) {
  /* start time = boot time + the process's start in clock ticks. /proc/stat's
   * btime line comes after one line per CPU and the interrupt counts: read
   * it line by line (start-up only). */
  double btime = 0;
  FILE *f = fopen("/proc/stat", "re");
  if (f) {
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0)
      if (strncmp(line, "btime ", 6) == 0) {
        btime = (double)strtoull(line + 6, NULL, 10);
        break;
      }
    free(line);
    fclose(f);
  }
  char buf[1024];
  long tck = sysconf(_SC_CLK_TCK);
  if (btime > 0 && tck > 0 &&
      read_small("/proc/self/stat", buf, sizeof(buf)) > 0)
    process_start_s = btime + (double)stat_field(buf, 22) / (double)tck;
  else
    process_start_s = (double)(bc_now_real_ns() / 1000000000u);
}

/* ---- the text builder -------------------------------------------------------- */

typedef struct sb {
  char *p;
  size_t len, cap;
  bool failed;
} sb_t;

static BC_NOINLINE bool sb_grow(sb_t *b, size_t need) {
  size_t cap = b->cap ? b->cap : 1;
  while (cap < b->len + need + 1)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->failed = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(sb_t *b,
                                                            const char *fmt,
                                                            ...) {
  if (b->failed)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = true;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    if (!sb_grow(b, (size_t)n))
      return;
  }
}

/* A label value with \, " and newline escaped (0.0.4). */
static void sb_label(sb_t *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\')
      sb_printf(b, "\\\\");
    else if (*v == '"')
      sb_printf(b, "\\\"");
    else if (*v == '\n')
      sb_printf(b, "\\n");
    else
      sb_printf(b, "%c", *v);
  }
}

static void family(sb_t *b, const char *name, const char *type,
                   const char *help) {
  sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one_u(sb_t *b, const char *name, const char *type,
                  const char *help, uint64_t v) {
  family(b, name, type, help);
  sb_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void one_f(sb_t *b, const char *name, const char *type,
                  const char *help, double v) {
  family(b, name, type, help);
  sb_printf(b, "%s %.17g\n", name, v);
}

#define GAUGE(b, name, help, v) one_u(b, name, "gauge", help, v)
#define COUNTER(b, name, help, v) one_u(b, name, "counter", help, v)

/* ns as decimal seconds, exactly */
#define SEC_FMT "%llu.%09llu"
#define SEC_ARG(ns)                                                            \
  (unsigned long long)((ns) / 1000000000u),                                    \
      (unsigned long long)((ns) % 1000000000u)

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- the families ------------------------------------------------------------ */

static void render_memstats(sb_t *b, const api_memstats_t *ms) {
  const gc_stats_t *g = &ms->gc;
  GAUGE(b, "go_memstats_alloc_bytes",
        "Number of bytes allocated and still in use.", g->alloc);
  COUNTER(b, "go_memstats_alloc_bytes_total",
          "Total number of bytes allocated, even if freed.", g->total_alloc);
  GAUGE(b, "go_memstats_sys_bytes", "Number of bytes obtained from system.",
        ms->sys);
  COUNTER(b, "go_memstats_lookups_total", "Total number of pointer lookups.",
          0);
  COUNTER(b, "go_memstats_mallocs_total", "Total number of mallocs.",
          g->mallocs);
  COUNTER(b, "go_memstats_frees_total", "Total number of frees.", g->frees);
  GAUGE(b, "go_memstats_heap_alloc_bytes",
        "Number of heap bytes allocated and still in use.", g->alloc);
  GAUGE(b, "go_memstats_heap_sys_bytes",
        "Number of heap bytes obtained from system.", g->heap_sys);
  GAUGE(b, "go_memstats_heap_idle_bytes",
        "Number of heap bytes waiting to be used.", g->heap_idle);
  GAUGE(b, "go_memstats_heap_inuse_bytes",
        "Number of heap bytes that are in use.", g->heap_inuse);
  GAUGE(b, "go_memstats_heap_released_bytes",
        "Number of heap bytes released to OS.", g->heap_released);
  GAUGE(b, "go_memstats_heap_objects", "Number of allocated objects.",
        g->heap_objects);
  GAUGE(b, "go_memstats_stack_inuse_bytes",
        "Number of bytes in use by the stack allocator.", 0);
  GAUGE(b, "go_memstats_stack_sys_bytes",
        "Number of bytes obtained from system for stack allocator.",
        ms->stack_sys);
  GAUGE(b, "go_memstats_mspan_inuse_bytes",
        "Number of bytes in use by mspan structures.", g->mspan_inuse);
  GAUGE(b, "go_memstats_mspan_sys_bytes",
        "Number of bytes used for mspan structures obtained from system.",
        g->mspan_sys);
  GAUGE(b, "go_memstats_mcache_inuse_bytes",
        "Number of bytes in use by mcache structures.", g->mcache_inuse);
  GAUGE(b, "go_memstats_mcache_sys_bytes",
        "Number of bytes used for mcache structures obtained from system.",
        g->mcache_sys);
  GAUGE(b, "go_memstats_buck_hash_sys_bytes",
        "Number of bytes used by the profiling bucket hash table.",
        ms->gc.buckhash_sys);
  GAUGE(b, "go_memstats_gc_sys_bytes",
        "Number of bytes used for garbage collection system metadata.",
        g->gc_sys);
  GAUGE(b, "go_memstats_other_sys_bytes",
        "Number of bytes used for other system allocations.", ms->other_sys);
  GAUGE(b, "go_memstats_next_gc_bytes",
        "Number of heap bytes when next garbage collection will take place.",
        g->next_gc);
  family(b, "go_memstats_last_gc_time_seconds", "gauge",
         "Number of seconds since 1970 of last garbage collection.");
  sb_printf(b, "go_memstats_last_gc_time_seconds " SEC_FMT "\n",
            SEC_ARG(g->last_gc_unix_ns));
  one_f(b, "go_memstats_gc_cpu_fraction", "gauge",
        "The fraction of this program's available CPU time used by the GC "
        "since the program started.",
        g->gc_cpu_fraction);
}

static void render_gc(sb_t *b, const api_memstats_t *ms) {
  const gc_stats_t *g = &ms->gc;
  /* go_gc_duration_seconds: debug.ReadGCStats's quantiles (min, 25%, 50%,
   * 75%, max) of the per-cycle pauses in the PauseNs ring */
  uint64_t sorted[GC_PAUSE_RING];
  unsigned n = g->num_gc < GC_PAUSE_RING ? g->num_gc : GC_PAUSE_RING;
  for (unsigned i = 0; i < n; i++)
    sorted[i] = g->pause_ns[(g->num_gc - 1 - i) % GC_PAUSE_RING];
  /* sorted[0..n) is set just above; cppcheck 2.10 does not see it */
  /* cppcheck-suppress uninitvar */
  qsort(sorted, n, sizeof(sorted[0]), cmp_u64);
  family(b, "go_gc_duration_seconds", "summary",
         "A summary of the pause duration of garbage collection cycles.");
  static const char *const q[] = {"0", "0.25", "0.5", "0.75", "1"};
  for (unsigned i = 0; i < 5; i++) {
    uint64_t v = 0;
    if (n)
      v = i == 4 ? sorted[n - 1] : sorted[n * i / 4];
    sb_printf(b, "go_gc_duration_seconds{quantile=\"%s\"} " SEC_FMT "\n",
              q[i], SEC_ARG(v));
  }
  sb_printf(b, "go_gc_duration_seconds_sum " SEC_FMT "\n",
            SEC_ARG(g->pause_total_ns));
  sb_printf(b, "go_gc_duration_seconds_count %u\n", g->num_gc);

  /* every stop-the-world pause, fixed buckets (gc_pause_bucket_ns) */
  family(b, "go_gc_pauses_seconds", "histogram",
         "Distribution of individual GC-related stop-the-world pause "
         "latencies.");
  uint64_t cum = 0;
  for (int i = 0; i < GC_PAUSE_BUCKETS; i++) {
    cum += g->pause_hist[i];
    uint64_t ns = gc_pause_bucket_ns[i];
    sb_printf(b, "go_gc_pauses_seconds_bucket{le=\"%.9g\"} %llu\n",
              (double)ns / 1e9, (unsigned long long)cum);
  }
  cum += g->pause_hist[GC_PAUSE_BUCKETS];
  sb_printf(b, "go_gc_pauses_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)cum);
  sb_printf(b, "go_gc_pauses_seconds_sum " SEC_FMT "\n",
            SEC_ARG(g->pause_total_ns));
  sb_printf(b, "go_gc_pauses_seconds_count %llu\n", (unsigned long long)cum);

  COUNTER(b, "go_gc_cycles_total_gc_cycles_total",
          "Count of all completed GC cycles.", g->num_gc);
  COUNTER(b, "go_gc_cycles_forced_gc_cycles_total",
          "Count of completed GC cycles forced by the application.",
          g->num_forced_gc);
  COUNTER(b, "go_gc_cycles_automatic_gc_cycles_total",
          "Count of completed GC cycles generated by the Go runtime.",
          g->num_gc - g->num_forced_gc);
  family(b, "go_gc_gogc_percent", "gauge",
         "Heap size target percentage configured by the user, otherwise "
         "100. -1 when the collector's proactive cycles are off.");
  sb_printf(b, "go_gc_gogc_percent %d\n", g->gc_percent);
  GAUGE(b, "go_gc_gomemlimit_bytes",
        "Go runtime memory limit configured by the user.", g->memory_limit);
  GAUGE(b, "go_gc_heap_live_bytes",
        "Heap memory occupied by live objects that were marked by the "
        "previous GC.",
        g->heap_live);
  COUNTER(b, "bufcache_gc_alloc_failures_total",
          "Heap allocations refused (memory limit or the OS).",
          g->alloc_failures);
}

static void render_cache(sb_t *b, const api_memstats_t *ms) {
  const cache_stats_t *c = &ms->cache;
  GAUGE(b, "bufcache_cache_entries", "Live entries in the index.",
        c->entries);
  GAUGE(b, "bufcache_cache_value_bytes", "Value bytes of the live entries.",
        c->bytes);
  GAUGE(b, "bufcache_cache_heap_bytes",
        "Heap bytes the live entries occupy (key, metadata and value).",
        c->mem);
  GAUGE(b, "bufcache_cache_index_bytes",
        "Bytes of the index's slot tables (off the gc heap).", c->index_bytes);
  COUNTER(b, "bufcache_cache_hits_total", "Lookups that found a live entry.",
          c->hits);
  COUNTER(b, "bufcache_cache_misses_total",
          "Lookups that found no live entry.", c->misses);
  COUNTER(b, "bufcache_cache_inserts_total", "Entries stored under a new key.",
          c->inserts);
  COUNTER(b, "bufcache_cache_replaces_total",
          "Entries stored over an existing key.", c->replaces);
  COUNTER(b, "bufcache_cache_deletes_total", "Entries deleted by a client.",
          c->deletes);
  family(b, "bufcache_cache_evictions_total", "counter",
         "Entries removed by the cache itself, by reason.");
  sb_printf(b, "bufcache_cache_evictions_total{reason=\"memory\"} %llu\n",
            (unsigned long long)c->evicted);
  sb_printf(b, "bufcache_cache_evictions_total{reason=\"ttl\"} %llu\n",
            (unsigned long long)c->expired);
}

static void render_pools(sb_t *b, const api_memstats_t *ms) {
  static const struct {
    const char *name, *help;
    size_t off;
  } pf[] = {
      {"bufcache_pool_gets_total", "Objects taken from the pool.",
       offsetof(gc_pool_stats_t, gets)},
      {"bufcache_pool_puts_total", "Objects given back to the pool.",
       offsetof(gc_pool_stats_t, puts)},
      {"bufcache_pool_news_total",
       "Objects the pool had to create (a get on an empty pool).",
       offsetof(gc_pool_stats_t, news)},
      {"bufcache_pool_victim_hits_total",
       "Gets served from the victim list (objects that survived one cycle).",
       offsetof(gc_pool_stats_t, victim_hits)},
      {"bufcache_pool_dropped_total",
       "Objects freed by the pool at a cycle start.",
       offsetof(gc_pool_stats_t, dropped)},
  };
  for (size_t f = 0; f < BC_ARRAY_LEN(pf); f++) {
    family(b, pf[f].name, "counter", pf[f].help);
    for (int p = 0; p < ms->gc.npools; p++) {
      const gc_pool_stats_t *ps = &ms->gc.pools[p];
      sb_printf(b, "%s{pool=\"", pf[f].name);
      sb_label(b, ps->name ? ps->name : "");
      sb_printf(b, "\"} %llu\n",
                (unsigned long long)*(const uint64_t *)(const void *)(
                    (const char *)ps + pf[f].off));
    }
  }
}

/* Sum of the live blocks: plain numbers, same shape as a block. */
typedef struct cell_sum {
  uint64_t le[LAT_BUCKETS + 1], sum_ns, count;
} cell_sum_t;
typedef struct sums {
  cell_sum_t cell[R__COUNT][M__COUNT][S__COUNT];
} sums_t;

static void sum_blocks(sums_t *s) {
  memset(s, 0, sizeof(*s));
  int nb = nblocks();
  for (int w = 0; w < nb; w++)
    for (int r = 0; r < R__COUNT; r++)
      for (int m = 0; m < M__COUNT; m++)
        for (int c = 0; c < S__COUNT; c++) {
          cell_t *src = &blocks[w].cell[r][m][c];
          cell_sum_t *dst = &s->cell[r][m][c];
          for (int i = 0; i <= LAT_BUCKETS; i++) {
            uint64_t v = atomic_load_explicit(&src->le[i], memory_order_relaxed);
            dst->le[i] += v;
            dst->count += v;
          }
          dst->sum_ns +=
              atomic_load_explicit(&src->sum_ns, memory_order_relaxed);
        }
}

#define LABELS_FMT "route=\"%s\",method=\"%s\",code=\"%s\""
#define LABELS_ARG(r, m, c) api__route_label[r], method_label[m], code_label[c]

static void render_requests(sb_t *b, const api_memstats_t *ms,
                            const sums_t *s) {
  family(b, "bufcache_http_requests_total", "counter",
         "Finished requests by route, method and status (code \"none\": "
         "ended before an answer).");
  for (int r = 0; r < R__COUNT; r++)
    for (int m = 0; m < M__COUNT; m++)
      for (int c = 0; c < S__COUNT; c++)
        if (s->cell[r][m][c].count)
          sb_printf(b, "bufcache_http_requests_total{" LABELS_FMT "} %llu\n",
                    LABELS_ARG(r, m, c),
                    (unsigned long long)s->cell[r][m][c].count);

  family(b, "bufcache_http_request_duration_seconds", "histogram",
         "Time from a request's first byte of headers to the end of its "
         "answer, by route, method and status.");
  for (int r = 0; r < R__COUNT; r++)
    for (int m = 0; m < M__COUNT; m++)
      for (int c = 0; c < S__COUNT; c++) {
        const cell_sum_t *x = &s->cell[r][m][c];
        if (!x->count)
          continue;
        uint64_t cum = 0;
        for (int i = 0; i < LAT_BUCKETS; i++) {
          cum += x->le[i];
          sb_printf(b,
                    "bufcache_http_request_duration_seconds_bucket{" LABELS_FMT
                    ",le=\"%s\"} %llu\n",
                    LABELS_ARG(r, m, c), lat_label[i], (unsigned long long)cum);
        }
        sb_printf(b,
                  "bufcache_http_request_duration_seconds_bucket{" LABELS_FMT
                  ",le=\"+Inf\"} %llu\n",
                  LABELS_ARG(r, m, c), (unsigned long long)x->count);
        sb_printf(b,
                  "bufcache_http_request_duration_seconds_sum{" LABELS_FMT
                  "} " SEC_FMT "\n",
                  LABELS_ARG(r, m, c), SEC_ARG(x->sum_ns));
        sb_printf(b,
                  "bufcache_http_request_duration_seconds_count{" LABELS_FMT
                  "} %llu\n",
                  LABELS_ARG(r, m, c), (unsigned long long)x->count);
      }

  GAUGE(b, "bufcache_http_requests_in_flight",
        "Requests begun and not yet finished.", ms->srv.inflight);
  family(b, "bufcache_http_requests_canceled_total", "counter",
         "Requests that ended before their answer was sent, by cause.");
  static const struct {
    int cause;
    const char *label;
  } causes[] = {{SRV_CAUSE_CLIENT_GONE, "client_gone"},
                {SRV_CAUSE_DEADLINE, "deadline"},
                {SRV_CAUSE_SHUTDOWN, "shutdown"}};
  for (size_t i = 0; i < BC_ARRAY_LEN(causes); i++)
    sb_printf(b, "bufcache_http_requests_canceled_total{cause=\"%s\"} %llu\n",
              causes[i].label,
              (unsigned long long)ms->srv.cancels[causes[i].cause]);
  COUNTER(b, "bufcache_http_oversize_closed_total",
          "Connections closed because a chunked upload went on past the "
          "value limit.",
          ms->oversize_closed);
}

static void render_process(sb_t *b) {
  proc_stats_t p;
  read_proc(&p);
  uint64_t cpu = bc_process_cpu_ns();
  family(b, "process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.");
  sb_printf(b, "process_cpu_seconds_total " SEC_FMT "\n", SEC_ARG(cpu));
  GAUGE(b, "process_open_fds", "Number of open file descriptors.",
        p.open_fds);
  GAUGE(b, "process_max_fds", "Maximum number of open file descriptors.",
        p.max_fds);
  GAUGE(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
        p.vsize);
  GAUGE(b, "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.", p.max_vsize);
  GAUGE(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
        p.rss);
  family(b, "process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.");
  sb_printf(b, "process_start_time_seconds %.2f\n", process_start_s);
  GAUGE(b, "go_threads", "Number of OS threads created.", p.threads);
}

enum MHD_Result api__metrics(srv_ctx_t *ctx) {
  api_memstats_t *ms = malloc(sizeof(*ms));
  sums_t *s = malloc(sizeof(*s));
  sb_t b = {0};
  if (ms && s && sb_grow(&b, (size_t)64 << 10)) {
    api__read_memstats(ms);
    sum_blocks(s);
    render_memstats(&b, ms);
    render_gc(&b, ms);
    render_cache(&b, ms);
    render_pools(&b, ms);
    render_requests(&b, ms, s);
    render_process(&b);
  } else {
    b.failed = true;
  }
  free(ms);
  free(s);
  if (b.failed) {
    free(b.p);
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(b.p);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; version=0.0.4; charset=utf-8");
  enum MHD_Result rc = api__queue(ctx, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}

/* ---- the dashboard's reader (api/dashboard.c) ------------------------------ */

_Static_assert(LAT_BUCKETS == API_LAT_BUCKETS, "API_LAT_BUCKETS");
const uint64_t api__lat_bound_ns[API_LAT_BUCKETS] = {
#define X(ns, label) (uint64_t)ns,
    LAT_BOUNDS(X)
#undef X
};

static const unsigned slot_code[S__COUNT] = {
#define X(code, label) [S_##code] = code,
    API_CODES(X)
#undef X
};

/* The data workers' blocks (0 .. workers-1; the admin worker's is last)
 * summed over routes and statuses: the same relaxed reads as sum_blocks. */
void api__read_req_totals(api_req_totals_t *t) {
  memset(t, 0, sizeof(*t));
  int nb = nblocks() - 1;
  for (int w = 0; w < nb; w++)
    for (int r = 0; r < R__COUNT; r++)
      for (int m = 0; m < M__COUNT; m++)
        for (int c = 0; c < S__COUNT; c++) {
          cell_t *src = &blocks[w].cell[r][m][c];
          uint64_t n = 0;
          for (int i = 0; i <= LAT_BUCKETS; i++) {
            uint64_t v = atomic_load_explicit(&src->le[i], memory_order_relaxed);
            t->le[i] += v;
            n += v;
          }
          if (!n)
            continue;
          t->count += n;
          t->by_method[m] += n;
          t->sum_ns += atomic_load_explicit(&src->sum_ns, memory_order_relaxed);
          if (slot_code[c] >= 400 && slot_code[c] < 500)
            t->status_4xx += n;
          else if (slot_code[c] >= 500)
            t->status_5xx += n;
        }
}
