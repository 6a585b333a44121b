/* allocbench.c - the allocator microbenchmark of issue #3 (bench/allocbench.sh).
 *
 * In the spirit of `go test -bench -benchmem`: the cost per object of
 * allocating and reclaiming the service's size mix in steady state.
 *
 * Pattern, the same for every allocator: each thread keeps a ring of RING
 * live objects and replaces them in order, so an object lives for exactly
 * RING allocations of its thread and then becomes garbage (malloc: is freed
 * by the thread that replaces it). Sizes are log-uniform in [MIN, MAX]
 * (64 B .. 64 KiB) from a table drawn once with a fixed seed; each thread
 * walks its own part of the table. Each new object's first 8 bytes are
 * written (the way a user would start filling it).
 *
 *   --alloc gc      gc_alloc on the project's heap; the rings are the roots,
 *                   marked by a GC_ROOTS_STW scanner; cycles are started by
 *                   the pacer (GOGC --gc-percent, --limit); each thread is a
 *                   mutator (gc_mutator_new + unpark) that passes a safepoint
 *                   every --safepoint-every allocations. The objects' cost
 *                   includes mark and sweep: the collector thread's CPU time
 *                   is in the process CPU time below.
 *   --alloc malloc  malloc + free (whatever malloc the process has: glibc,
 *                   or jemalloc / mimalloc by LD_PRELOAD; reported as
 *                   "allocator=").
 *
 * Phases per thread: fill the ring, WARMUP replacements (steady state:
 * several cycles), then OBJECTS measured replacements between two barriers.
 * Reported (key=value): cpu_ns_per_obj = process CPU time (every thread,
 * the collector's included) / objects; wall_ns_per_obj = wall time x
 * threads / objects (the time a thread spends per object); the collector's
 * cycles and pauses during the measured part; peak RSS.
 *
 *   allocbench --alloc gc|malloc [--threads 1] [--ring 100000]
 *              [--objects 5000000] [--warmup N] [--min 64] [--max 65536]
 *              [--seed 42] [--gc-percent 100] [--limit-mib 16384]
 *              [--safepoint-every 64] [--mem-profile-rate B (default 512 KiB)]
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "gc.h"

#define MAX_THREADS 16
#define NSIZES ((size_t)1 << 20)

static struct {
  int gc;
  int threads;
  size_t ring;
  uint64_t objects, warmup;
  size_t min, max;
  uint64_t seed;
  int gc_percent;
  uint64_t limit_mib;
  unsigned safepoint_every;
  long long mem_profile_rate; /* -1: the heap's default */
} O = {.threads = 1, .ring = 100000, .objects = 5000000, .warmup = UINT64_MAX,
       .min = 64, .max = 65536, .seed = 42, .gc_percent = 100,
       .limit_mib = 16384, .safepoint_every = 64, .mem_profile_rate = -1};

static uint32_t *sizes;
static pthread_barrier_t bar;

typedef struct thr {
  pthread_t tid;
  int idx;
  void **ring;
  gc_mutator_t *m;
  uint64_t bytes;
} thr_t;
static thr_t T[MAX_THREADS];

static uint64_t now(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The STW root scanner: every ring slot of every thread. */
static void scan_rings(void *arg) {
  (void)arg;
  for (int t = 0; t < O.threads; t++)
    gc_mark_batch(T[t].ring, O.ring);
}

static void *alloc_gc(thr_t *t, size_t sz) {
  int err = 0;
  void *p = gc_alloc(t->m, sz, &err);
  if (!p) {
    fprintf(stderr, "allocbench: gc_alloc(%zu) failed: %s\n", sz,
            bc_strerror(err));
    exit(1);
  }
  return p;
}

/* Runs n ring replacements starting at table position *pos. */
static void run_gc(thr_t *t, uint64_t n, uint64_t *pos) {
  size_t r = *pos % O.ring;
  uint64_t k = *pos;
  unsigned sp = 0;
  for (uint64_t i = 0; i < n; i++, k++) {
    size_t sz = sizes[(k + (uint64_t)t->idx * (NSIZES / 2)) & (NSIZES - 1)];
    void *p = alloc_gc(t, sz);
    *(uint64_t *)p = k;
    t->ring[r] = p; /* the old object is garbage now */
    t->bytes += sz;
    if (++r == O.ring)
      r = 0;
    if (++sp == O.safepoint_every) {
      sp = 0;
      gc_mutator_safepoint(t->m);
    }
  }
  *pos = k;
}

static void run_malloc(thr_t *t, uint64_t n, uint64_t *pos) {
  size_t r = *pos % O.ring;
  uint64_t k = *pos;
  for (uint64_t i = 0; i < n; i++, k++) {
    size_t sz = sizes[(k + (uint64_t)t->idx * (NSIZES / 2)) & (NSIZES - 1)];
    void *p = malloc(sz);
    if (!p) {
      fprintf(stderr, "allocbench: malloc(%zu) failed\n", sz);
      exit(1);
    }
    *(uint64_t *)p = k;
    free(t->ring[r]);
    t->ring[r] = p;
    t->bytes += sz;
    if (++r == O.ring)
      r = 0;
  }
  *pos = k;
}

/* A barrier wait is a blocking wait: a gc mutator parks around it. */
static void wait_barrier(thr_t *t) {
  if (t->m)
    gc_mutator_park(t->m);
  pthread_barrier_wait(&bar);
  if (t->m)
    gc_mutator_unpark(t->m);
}

static void *worker(void *arg) {
  thr_t *t = arg;
  uint64_t pos = 0;
  if (O.gc) {
    t->m = gc_mutator_new();
    if (!t->m) {
      fprintf(stderr, "allocbench: gc_mutator_new failed\n");
      exit(1);
    }
    gc_mutator_unpark(t->m);
  }
  void (*run)(thr_t *, uint64_t, uint64_t *) = O.gc ? run_gc : run_malloc;
  run(t, O.ring, &pos);   /* fill (malloc: free(NULL) on the way) */
  run(t, O.warmup, &pos); /* steady state */
  t->bytes = 0;
  wait_barrier(t); /* start */
  run(t, O.objects, &pos);
  wait_barrier(t); /* end */
  wait_barrier(t); /* main has read the clocks and stats */
  if (t->m)
    gc_mutator_free(t->m);
  return NULL;
}

static const char *which_malloc(void) {
  static char buf[64];
  if (dlsym(RTLD_DEFAULT, "mallctl")) {
    const char *v = NULL;
    size_t len = sizeof(v);
    int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
        (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(
            RTLD_DEFAULT, "mallctl");
    if (mallctl("version", &v, &len, NULL, 0) == 0 && v) {
      snprintf(buf, sizeof buf, "jemalloc-%.20s", v);
      char *g = strchr(buf, '-');
      g = g ? strchr(g + 1, '-') : NULL;
      if (g)
        *g = 0; /* drop the git suffix */
      return buf;
    }
    return "jemalloc";
  }
  void *mv = dlsym(RTLD_DEFAULT, "mi_version");
  if (mv) {
    int v = ((int (*)(void))mv)();
    snprintf(buf, sizeof buf, "mimalloc-%d.%d.%d", v / 100, v / 10 % 10,
             v % 10);
    return buf;
  }
  snprintf(buf, sizeof buf, "glibc-%s", gnu_get_libc_version());
  return buf;
}

static long status_kib(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':')
      v = atol(line + n + 1);
  if (f)
    fclose(f);
  return v;
}

static void usage(void) {
  fprintf(stderr, "usage: allocbench --alloc gc|malloc [--threads T] "
                  "[--ring R] [--objects N] [--warmup N] [--min B] [--max B] "
                  "[--seed S] [--gc-percent P] [--limit-mib M] "
                  "[--safepoint-every K] [--mem-profile-rate B]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *alloc = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc)
      usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--alloc"))
      alloc = v;
    else if (!strcmp(a, "--threads"))
      O.threads = atoi(v);
    else if (!strcmp(a, "--ring"))
      O.ring = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--objects"))
      O.objects = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--warmup"))
      O.warmup = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--min"))
      O.min = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--max"))
      O.max = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--seed"))
      O.seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--gc-percent"))
      O.gc_percent = atoi(v);
    else if (!strcmp(a, "--limit-mib"))
      O.limit_mib = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--safepoint-every"))
      O.safepoint_every = (unsigned)atoi(v);
    else if (!strcmp(a, "--mem-profile-rate"))
      O.mem_profile_rate = atoll(v);
    else
      usage();
  }
  if (!alloc || (strcmp(alloc, "gc") && strcmp(alloc, "malloc")) ||
      O.threads < 1 || O.threads > MAX_THREADS || O.ring < 1 || O.min < 16 ||
      O.max < O.min || O.safepoint_every < 1)
    usage();
  O.gc = !strcmp(alloc, "gc");
  if (O.warmup == UINT64_MAX)
    O.warmup = 4 * O.ring;

  /* the size table: log-uniform in [min, max], fixed seed */
  sizes = malloc(NSIZES * sizeof(*sizes));
  rng = O.seed;
  double lo = log2((double)O.min), hi = log2((double)O.max);
  double mean = 0;
  for (size_t i = 0; i < NSIZES; i++) {
    double u = (double)(rnd() >> 11) * 0x1.0p-53;
    double s = exp2(lo + u * (hi - lo));
    uint32_t z = (uint32_t)s;
    if (z < O.min)
      z = (uint32_t)O.min;
    if (z > O.max)
      z = (uint32_t)O.max;
    sizes[i] = z;
    mean += z;
  }
  mean /= (double)NSIZES;
  for (int t = 0; t < O.threads; t++) {
    T[t].idx = t;
    T[t].ring = calloc(O.ring, sizeof(void *));
    if (!T[t].ring)
      return 1;
  }

  if (O.gc) {
    gc_config_t cfg = {.memory_limit = O.limit_mib << 20,
                       .gc_percent = O.gc_percent,
                       .gctrace = getenv("ALLOCBENCH_GCTRACE") != NULL,
                       .nprocs = O.threads};
    if (gc_init(&cfg) != 0 || gc_start() != 0) {
      fprintf(stderr, "allocbench: gc_init/gc_start failed\n");
      return 1;
    }
    if (O.mem_profile_rate >= 0) /* before any mutator draws a sample */
      gc_set_mem_profile_rate(O.mem_profile_rate);
    gc_register_roots(GC_ROOTS_STW, scan_rings, NULL);
  }

  pthread_barrier_init(&bar, NULL, (unsigned)O.threads + 1);
  for (int t = 0; t < O.threads; t++)
    pthread_create(&T[t].tid, NULL, worker, &T[t]);
  gc_stats_t *s0 = calloc(1, sizeof(gc_stats_t)),
             *s1 = calloc(1, sizeof(gc_stats_t));
  pthread_barrier_wait(&bar); /* start */
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  uint64_t w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
  if (O.gc)
    gc_read_stats(s0);
  pthread_barrier_wait(&bar); /* end */
  uint64_t w1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_PROCESS_CPUTIME_ID);
  getrusage(RUSAGE_SELF, &ru1);
  if (O.gc)
    gc_read_stats(s1);
  long rss = status_kib("VmRSS"), hwm = status_kib("VmHWM");
  pthread_barrier_wait(&bar); /* let the workers detach */
  uint64_t bytes = 0;
  for (int t = 0; t < O.threads; t++) {
    pthread_join(T[t].tid, NULL);
    bytes += T[t].bytes;
  }
  double objs = (double)O.objects * O.threads;
  printf("allocator=%s\nthreads=%d\nring=%zu\nobjects=%.0f\nmean_size=%.0f\n"
         "live_bytes_approx=%.0f\n",
         O.gc ? "gc" : which_malloc(), O.threads, O.ring, objs, mean,
         mean * (double)O.ring * O.threads);
  printf("wall_s=%.3f\ncpu_s=%.3f\ncpu_ns_per_obj=%.1f\nwall_ns_per_obj=%.1f\n"
         "mb_per_s=%.0f\nrss_mib=%.1f\npeak_rss_mib=%.1f\n"
         "minor_faults_per_obj=%.3f\n",
         (double)(w1 - w0) / 1e9, (double)(c1 - c0) / 1e9,
         (double)(c1 - c0) / objs, (double)(w1 - w0) * O.threads / objs,
         (double)bytes / 1048576.0 / ((double)(w1 - w0) / 1e9),
         (double)rss / 1024.0, (double)hwm / 1024.0,
         (double)(ru1.ru_minflt - ru0.ru_minflt) / objs);
  if (O.gc) {
    uint64_t pauses = s1->pause_total_ns - s0->pause_total_ns;
    uint32_t n = s1->num_gc - s0->num_gc;
    uint64_t pmax = 0;
    for (uint32_t i = s0->num_gc; i < s1->num_gc && n <= GC_PAUSE_RING; i++)
      if (s1->pause_ns[i % GC_PAUSE_RING] > pmax)
        pmax = s1->pause_ns[i % GC_PAUSE_RING];
    printf("gc_cycles=%u\nobjs_per_cycle=%.0f\ngc_pause_total_ms=%.3f\n"
           "gc_cycle_pause_max_us=%.1f\ngc_heap_inuse_mib=%.1f\n"
           "gc_heap_live_mib=%.1f\ngc_heap_sys_mib=%.1f\n"
           "gc_heap_released_mib=%.1f\ngc_cpu_fraction=%.4f\n",
           n, n ? objs / n : 0, (double)pauses / 1e6, (double)pmax / 1e3,
           (double)s1->heap_inuse / 1048576.0,
           (double)s1->heap_live / 1048576.0,
           (double)s1->heap_sys / 1048576.0,
           (double)s1->heap_released / 1048576.0, s1->gc_cpu_fraction);
    gc_stop();
  }
  return 0;
}
