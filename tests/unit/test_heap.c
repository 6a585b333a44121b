/* test_heap.c - gc/: size classes, small and large objects, exact mark/sweep
 * accounting against a root set the test controls, finalizers, pools, the
 * soft memory limit, OS-allocation fault injection, scavenging, shutdown.
 *
 * The heap is a process-wide singleton: the group setup runs gc_init and
 * gc_start once; the last test detaches, stops and closes it.
 *
 * The root set: a GC_ROOTS_STW scanner marks every non-NULL pointer in
 * roots[]. The test's only mutator is parked whenever a cycle runs (it passes
 * itself to gc_collect), so roots[] needs no lock. After a forced cycle
 * returns, every object is either in roots[] or has been freed, so the
 * heap's counters must match roots[] exactly:
 *   HeapObjects == live roots,  HeapAlloc == sum of gc_usable_size(root).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "gc.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)
#define PAGE ((size_t)8192)
#define MAX_SMALL ((size_t)65536)
#define INIT_LIMIT ((uint64_t)1 << 30)

static gc_mutator_t *M;
static bool heap_closed;

/* ---- roots ------------------------------------------------------------------ */

#define MAX_ROOTS 20000
static void *roots[MAX_ROOTS];
static size_t nroots; /* high-water mark of used slots */
static _Atomic int scan_calls;
static _Atomic int scan_saw_marking;

static void scan_roots(void *arg) {
  (void)arg;
  atomic_fetch_add(&scan_calls, 1);
  if (gc_marking())
    atomic_fetch_add(&scan_saw_marking, 1);
  /* both marking entry points: one at a time for the first half, the
   * batched one (NULL slots included) for the rest; every exact check
   * below covers both */
  size_t half = nroots / 2;
  for (size_t i = 0; i < half; i++)
    if (roots[i])
      gc_mark(roots[i]);
  gc_mark_batch(roots + half, nroots - half);
}

static size_t root_add(void *p) {
  assert_true(nroots < MAX_ROOTS);
  roots[nroots] = p;
  return nroots++;
}

static void roots_clear(void) {
  memset(roots, 0, sizeof roots);
  nroots = 0;
}

/* ---- finalizer log ------------------------------------------------------------ */

static pthread_mutex_t fin_mu = PTHREAD_MUTEX_INITIALIZER;
#define FIN_LOG 4096
static void *fin_log[FIN_LOG];
static size_t fin_n;

static void fin_hook(void *obj) {
  pthread_mutex_lock(&fin_mu);
  if (fin_n < FIN_LOG)
    fin_log[fin_n] = obj;
  fin_n++;
  pthread_mutex_unlock(&fin_mu);
}

static size_t fin_calls_for(const void *obj) {
  size_t n = 0;
  pthread_mutex_lock(&fin_mu);
  for (size_t i = 0; i < fin_n && i < FIN_LOG; i++)
    if (fin_log[i] == obj)
      n++;
  pthread_mutex_unlock(&fin_mu);
  return n;
}

static size_t fin_total(void) {
  pthread_mutex_lock(&fin_mu);
  size_t n = fin_n;
  pthread_mutex_unlock(&fin_mu);
  return n;
}

/* ---- helpers -------------------------------------------------------------------- */

static gc_stats_t *stats(void) {
  static gc_stats_t st;
  gc_read_stats(&st);
  return &st;
}

/* A forced cycle, then the heap's own consistency check. */
static void cycle(void) {
  gc_collect(M);
  gc_mutator_park(M);
  gc_verify();
  gc_mutator_unpark(M);
}

/* After a cycle, the heap holds exactly roots[]. */
static void expect_heap_is_roots(const char *where) {
  uint64_t n = 0, bytes = 0;
  for (size_t i = 0; i < nroots; i++) {
    if (roots[i]) {
      n++;
      bytes += gc_usable_size(roots[i]);
    }
  }
  gc_stats_t *st = stats();
  if (st->heap_objects != n || st->alloc != bytes ||
      st->heap_marked_objects != n || st->heap_live != bytes)
    fail_msg("%s: heap_objects %" PRIu64 " alloc %" PRIu64
             " marked_objects %" PRIu64 " heap_live %" PRIu64
             "; roots hold %" PRIu64 " objects, %" PRIu64 " bytes",
             where, st->heap_objects, st->alloc, st->heap_marked_objects,
             st->heap_live, n, bytes);
  assert_int_equal(st->mallocs - st->frees, n);
}

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rng = 12345;
static uint64_t rnd(void) { return mix64(rng += 0x9e3779b97f4a7c15ull); }

static void fill(void *p, size_t n, uint64_t seed) {
  uint8_t *b = p;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if ((i & 7) == 0)
      x = mix64(seed + i);
    b[i] = (uint8_t)(x >> (8 * (i & 7)));
  }
}

static bool check(const void *p, size_t n, uint64_t seed) {
  const uint8_t *b = p;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if ((i & 7) == 0)
      x = mix64(seed + i);
    if (b[i] != (uint8_t)(x >> (8 * (i & 7))))
      return false;
  }
  return true;
}

static void *alloc_ok(size_t size) {
  int err = 12345;
  void *p = gc_alloc(M, size, &err);
  if (!p)
    fail_msg("gc_alloc(%zu) failed: %d (%s)", size, err, bc_strerror(err));
  assert_int_equal((uintptr_t)p % 16, 0);
  assert_true(gc_usable_size(p) >= size);
  return p;
}

/* The size-class table the documentation describes, computed here:
 * 16-byte steps to 128 B, then eight classes per doubling up to 64 KiB,
 * sixteen per doubling from 512 B to 8 KiB. */
static uint32_t doc_class[128];
static int doc_nclasses;

static void build_doc_classes(void) {
  int n = 1;
  doc_class[0] = 0;
  for (uint32_t s = 16; s <= 128; s += 16)
    doc_class[n++] = s;
  for (uint32_t base = 128; base < MAX_SMALL; base *= 2) {
    uint32_t steps = base >= 512 && base < 8192 ? 16 : 8;
    for (uint32_t k = 1; k <= steps; k++)
      doc_class[n++] = base + base / steps * k;
  }
  doc_nclasses = n;
}

/* The class a request of size bytes must land in: the smallest that fits. */
static int doc_class_for(size_t size) {
  if (size == 0)
    size = 1;
  for (int c = 1; c < doc_nclasses; c++)
    if (doc_class[c] >= size)
      return c;
  return -1;
}

static int class_of_usable(size_t usable) {
  for (int c = 1; c < doc_nclasses; c++)
    if (doc_class[c] == usable)
      return c;
  return -1;
}

/* ---- setup ------------------------------------------------------------------------ */

static int group_setup(void **state) {
  (void)state;
  build_doc_classes();
  gc_config_t cfg = {.memory_limit = INIT_LIMIT,
                     .gc_percent = GC_PERCENT_OFF,
                     .gctrace = false,
                     .nprocs = 1};
  if (gc_init(&cfg) != 0)
    return -1;
  gc_register_roots(GC_ROOTS_STW, scan_roots, NULL);
  gc_set_finalizer_hook(fin_hook);
  if (gc_start() != 0)
    return -1;
  M = gc_mutator_new();
  if (!M)
    return -1;
  gc_mutator_unpark(M);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  if (!heap_closed) {
    gc_mutator_free(M);
    gc_stop();
    gc_close();
  }
  return 0;
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_size_class_table(void **state) {
  (void)state;
  gc_stats_t *st = stats();
  assert_int_equal(st->nclasses, doc_nclasses);
  for (int c = 0; c < st->nclasses; c++)
    if (st->by_size[c].size != doc_class[c])
      fail_msg("class %d is %u bytes, the documented scheme says %u", c,
               st->by_size[c].size, doc_class[c]);
  /* 12.5% at most of rounding waste above 128 B; < 16 B below */
  for (size_t r = 1; r <= MAX_SMALL; r++) {
    uint32_t cs = doc_class[doc_class_for(r)];
    assert_true(cs >= r);
    assert_true(cs - r < (r <= 128 ? 16 : r / 8));
  }
}

static void test_small_boundaries(void **state) {
  (void)state;
  cycle();
  gc_stats_t before = *stats();
  /* every class boundary, one below and one above */
  size_t sizes[512];
  size_t ns = 0;
  sizes[ns++] = 0;
  sizes[ns++] = 1;
  for (int c = 1; c < doc_nclasses; c++) {
    sizes[ns++] = doc_class[c] - 1;
    sizes[ns++] = doc_class[c];
    if (doc_class[c] + 1 <= MAX_SMALL)
      sizes[ns++] = doc_class[c] + 1;
  }
  struct {
    void *p;
    size_t usable;
    uint64_t seed;
  } o[512];
  uint64_t want_by_class[128] = {0}, total = 0;
  for (size_t i = 0; i < ns; i++) {
    o[i].p = alloc_ok(sizes[i]);
    o[i].usable = gc_usable_size(o[i].p);
    int c = doc_class_for(sizes[i]);
    if (o[i].usable != doc_class[c])
      fail_msg("gc_alloc(%zu): usable %zu, expected class size %u", sizes[i],
               o[i].usable, doc_class[c]);
    want_by_class[c]++;
    total += o[i].usable;
    o[i].seed = rnd();
    fill(o[i].p, o[i].usable, o[i].seed);
    root_add(o[i].p);
  }
  /* no two objects overlap: every pattern survived every other write */
  for (size_t i = 0; i < ns; i++)
    assert_true(check(o[i].p, o[i].usable, o[i].seed));
  for (size_t i = 0; i < ns; i++)
    for (size_t j = i + 1; j < ns; j++) {
      uintptr_t a = (uintptr_t)o[i].p, b = (uintptr_t)o[j].p;
      assert_true(a + o[i].usable <= b || b + o[j].usable <= a);
    }
  gc_stats_t *st = stats();
  assert_int_equal(st->mallocs - before.mallocs, ns);
  assert_int_equal(st->total_alloc - before.total_alloc, total);
  for (int c = 1; c < doc_nclasses; c++)
    if (st->by_size[c].mallocs - before.by_size[c].mallocs != want_by_class[c])
      fail_msg("class %d: %" PRIu64 " mallocs, expected %" PRIu64, c,
               st->by_size[c].mallocs - before.by_size[c].mallocs,
               want_by_class[c]);
  /* rooted: a cycle frees nothing of them */
  cycle();
  expect_heap_is_roots("all rooted");
  assert_int_equal(stats()->frees, before.frees);
  for (size_t i = 0; i < ns; i++)
    assert_true(check(o[i].p, o[i].usable, o[i].seed));
  /* dropped: a cycle frees exactly them, class by class */
  roots_clear();
  cycle();
  expect_heap_is_roots("none rooted");
  st = stats();
  assert_int_equal(st->frees - before.frees, ns);
  for (int c = 1; c < doc_nclasses; c++)
    assert_int_equal(st->by_size[c].frees - before.by_size[c].frees,
                     want_by_class[c]);
}

static void test_large_objects(void **state) {
  (void)state;
  cycle();
  gc_stats_t before = *stats();
  const size_t sizes[] = {MAX_SMALL + 1, 65 * KIB, 80 * KIB, 128 * KIB + 1,
                          1 * MIB,       20 * MIB, 3 * MIB + 17};
  enum { N = sizeof sizes / sizeof sizes[0] };
  void *p[N];
  uint64_t seed[N], total = 0;
  for (int i = 0; i < N; i++) {
    p[i] = alloc_ok(sizes[i]);
    size_t u = gc_usable_size(p[i]);
    /* a large object is whole pages, the fewest that hold it */
    assert_int_equal(u % PAGE, 0);
    assert_int_equal(u, (sizes[i] + PAGE - 1) / PAGE * PAGE);
    assert_int_equal((uintptr_t)p[i] % PAGE, 0);
    total += u;
    seed[i] = rnd();
    fill(p[i], sizes[i], seed[i]);
    root_add(p[i]);
  }
  for (int i = 0; i < N; i++)
    assert_true(check(p[i], sizes[i], seed[i]));
  gc_stats_t *st = stats();
  assert_int_equal(st->mallocs - before.mallocs, N);
  assert_int_equal(st->total_alloc - before.total_alloc, total);
  assert_true(st->heap_inuse - before.heap_inuse >= total);
  for (int c = 1; c < doc_nclasses; c++) /* not counted in any class */
    assert_int_equal(st->by_size[c].mallocs, before.by_size[c].mallocs);
  /* drop the odd ones */
  uint64_t dropped_bytes = 0;
  for (int i = 1; i < N; i += 2) {
    dropped_bytes += gc_usable_size(p[i]);
    roots[i] = NULL;
  }
  uint64_t inuse_before = stats()->heap_inuse;
  cycle();
  expect_heap_is_roots("large, odd dropped");
  st = stats();
  assert_int_equal(st->frees - before.frees, N / 2);
  assert_int_equal(st->heap_inuse, inuse_before - dropped_bytes);
  for (int i = 0; i < N; i += 2)
    assert_true(check(p[i], sizes[i], seed[i]));
  roots_clear();
  cycle();
  expect_heap_is_roots("large, all dropped");
  assert_int_equal(stats()->frees - before.frees, N);
}

static void test_mark_sweep_exact(void **state) {
  (void)state;
  cycle();
  enum { N = 6000 };
  static struct {
    void *p;
    size_t size, usable;
    uint64_t seed;
    bool rooted;
  } o[N];
  uint64_t freed_by_class[128] = {0};
  size_t nfree = 0, nlarge_freed = 0;
  gc_stats_t before = *stats();
  size_t base = nroots;
  for (int i = 0; i < N; i++) {
    size_t size;
    uint64_t r = rnd();
    if (r % 100 == 0)
      size = MAX_SMALL + 1 + (size_t)(rnd() % (200 * KIB));
    else if (r % 10 == 0)
      size = (size_t)(rnd() % (MAX_SMALL + 1));
    else
      size = (size_t)(rnd() % 1024);
    o[i].p = alloc_ok(size);
    o[i].size = size;
    o[i].usable = gc_usable_size(o[i].p);
    o[i].seed = rnd();
    o[i].rooted = rnd() % 3 == 0;
    fill(o[i].p, size, o[i].seed);
    root_add(o[i].rooted ? o[i].p : NULL);
    if (!o[i].rooted) {
      nfree++;
      if (size > MAX_SMALL)
        nlarge_freed++;
      else
        freed_by_class[class_of_usable(o[i].usable)]++;
    }
  }
  assert_int_equal(stats()->mallocs - before.mallocs, N);
  uint64_t scans = (uint64_t)atomic_load(&scan_calls);
  cycle();
  assert_int_equal(atomic_load(&scan_calls), scans + 1);
  gc_stats_t *st = stats();
  if (st->frees - before.frees != nfree)
    fail_msg("a cycle freed %" PRIu64 " objects, %zu were unreachable",
             st->frees - before.frees, nfree);
  for (int c = 1; c < doc_nclasses; c++)
    if (st->by_size[c].frees - before.by_size[c].frees != freed_by_class[c])
      fail_msg("class %d (%u B): %" PRIu64 " frees, %" PRIu64
               " were unreachable",
               c, doc_class[c], st->by_size[c].frees - before.by_size[c].frees,
               freed_by_class[c]);
  expect_heap_is_roots("mixed");
  for (int i = 0; i < N; i++)
    if (o[i].rooted && !check(o[i].p, o[i].size, o[i].seed))
      fail_msg("rooted object %d (%zu B) was overwritten", i, o[i].size);

  /* freed slots come back: for a few dropped small objects, allocating in
   * their class returns their address before the heap has to grow */
  uint64_t sys_before = stats()->heap_sys;
  int probes = 0;
  for (int i = 0; i < N && probes < 8; i++) {
    if (o[i].rooted || o[i].size > MAX_SMALL || o[i].size < 512)
      continue;
    probes++;
    bool found = false;
    for (int k = 0; k < 3 * N && !found; k++) {
      void *q = alloc_ok(o[i].usable);
      assert_int_equal(gc_usable_size(q), o[i].usable);
      found = q == o[i].p;
      fill(q, o[i].usable, 77); /* must not disturb a rooted object */
    }
    if (!found)
      fail_msg("freed slot %p (%zu B) never handed out again", o[i].p,
               o[i].usable);
  }
  assert_true(probes > 0);
  assert_int_equal(stats()->heap_sys, sys_before);
  for (int i = 0; i < N; i++)
    if (o[i].rooted && !check(o[i].p, o[i].size, o[i].seed))
      fail_msg("rooted object %d overwritten by a new allocation", i);

  /* everything dropped */
  for (size_t i = base; i < nroots; i++)
    roots[i] = NULL;
  cycle();
  expect_heap_is_roots("mixed, dropped");
  (void)nlarge_freed;
  roots_clear();
}

static void test_cycle_stats(void **state) {
  (void)state;
  gc_stats_t before = *stats();
  atomic_store(&scan_saw_marking, 0);
  cycle();
  cycle();
  gc_stats_t *st = stats();
  assert_int_equal(st->num_gc - before.num_gc, 2);
  assert_int_equal(st->num_forced_gc - before.num_forced_gc, 2);
  assert_true(st->last_gc_unix_ns > before.last_gc_unix_ns);
  assert_true(st->pause_total_ns >= before.pause_total_ns);
  assert_int_equal(atomic_load(&scan_saw_marking), 2);
  assert_false(gc_marking());
  assert_false(st->enable_gc);
  assert_int_equal(st->gc_percent, GC_PERCENT_OFF);
  assert_int_equal(st->memory_limit, INIT_LIMIT);
  assert_true(st->heap_sys >= st->heap_inuse);
  assert_int_equal(st->heap_idle, st->heap_sys - st->heap_inuse);
  assert_true(st->sys >= st->heap_sys);
  assert_true(st->gc_cpu_fraction >= 0 && st->gc_cpu_fraction <= 1);
  /* two pauses per cycle, all of them in the histogram and the total */
  uint64_t hist = 0;
  for (int b = 0; b <= GC_PAUSE_BUCKETS; b++)
    hist += st->pause_hist[b];
  assert_int_equal(hist, 2 * (uint64_t)st->num_gc);
  assert_true(st->num_gc <= GC_PAUSE_RING);
  uint64_t ring = 0;
  for (uint32_t i = 0; i < st->num_gc; i++)
    ring += st->pause_ns[i];
  assert_int_equal(ring, st->pause_total_ns);
  uint32_t last = (st->num_gc - 1) % GC_PAUSE_RING;
  assert_int_equal(st->last_pause_ns[0] + st->last_pause_ns[1],
                   st->pause_ns[last]);
  assert_int_equal(st->pause_end[last], st->last_gc_unix_ns);
  for (int b = 1; b < GC_PAUSE_BUCKETS; b++)
    assert_true(gc_pause_bucket_ns[b] > gc_pause_bucket_ns[b - 1]);
}

static void test_pacer_settings(void **state) {
  (void)state;
  cycle(); /* nearly empty heap: a small live size */
  assert_true(stats()->heap_live < MIB);
  /* GOGC=100: goal = max(4 MiB, 2 * live) */
  assert_int_equal(gc_set_percent(100), GC_PERCENT_OFF);
  gc_stats_t *st = stats();
  assert_true(st->enable_gc);
  assert_int_equal(st->gc_percent, 100);
  assert_int_equal(st->next_gc, 4 * MIB);
  /* GOGC off: only the memory limit paces, below the limit */
  assert_int_equal(gc_set_percent(GC_PERCENT_OFF), 100);
  st = stats();
  assert_false(st->enable_gc);
  assert_true(st->next_gc > 4 * MIB);
  assert_true(st->next_gc < INIT_LIMIT);
  /* a lower limit lowers the goal */
  uint64_t goal_off = st->next_gc;
  assert_int_equal(gc_set_memory_limit(INIT_LIMIT / 2), INIT_LIMIT);
  assert_true(stats()->next_gc < goal_off);
  assert_true(stats()->next_gc < INIT_LIMIT / 2);
  assert_int_equal(gc_set_memory_limit(INIT_LIMIT), INIT_LIMIT / 2);
  assert_int_equal(stats()->next_gc, goal_off);
}

static void test_impossible_sizes(void **state) {
  (void)state;
  gc_stats_t before = *stats();
  const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4095, (size_t)1 << 62,
                          (size_t)1 << 40, INIT_LIMIT + 1};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    int err = 0;
    void *p = gc_alloc(M, sizes[i], &err);
    if (p)
      fail_msg("gc_alloc(%zu) returned an object", sizes[i]);
    assert_true(err == BC_ELIMIT || err == BC_ENOMEM);
  }
  gc_stats_t *st = stats();
  assert_int_equal(st->mallocs, before.mallocs);
  assert_int_equal(st->heap_inuse, before.heap_inuse);
  assert_true(st->alloc_failures >= before.alloc_failures + 1);
  alloc_ok(100); /* still fine */
}

static void test_finalizers(void **state) {
  (void)state;
  cycle();
  size_t total0 = fin_total();
  void *a = alloc_ok(100);  /* small, dropped */
  void *b = alloc_ok(100);  /* small, rooted */
  void *c = alloc_ok(100 * KIB); /* large, dropped */
  void *d = alloc_ok(100 * KIB); /* large, rooted */
  void *e = alloc_ok(100);  /* small, dropped, no finalizer */
  gc_set_finalizer(a);
  gc_set_finalizer(a); /* twice: still one call */
  gc_set_finalizer(b);
  gc_set_finalizer(c);
  gc_set_finalizer(d);
  size_t rb = root_add(b), rd = root_add(d);
  (void)e;
  cycle();
  assert_int_equal(fin_calls_for(a), 1);
  assert_int_equal(fin_calls_for(c), 1);
  assert_int_equal(fin_calls_for(b), 0);
  assert_int_equal(fin_calls_for(d), 0);
  assert_int_equal(fin_calls_for(e), 0);
  assert_int_equal(fin_total() - total0, 2);
  cycle();
  cycle();
  assert_int_equal(fin_total() - total0, 2); /* once, not once per cycle */
  roots[rb] = NULL;
  cycle();
  assert_int_equal(fin_calls_for(b), 1);
  assert_int_equal(fin_calls_for(d), 0);
  roots[rd] = NULL;
  cycle();
  assert_int_equal(fin_calls_for(d), 1);
  assert_int_equal(fin_total() - total0, 4);
  /* a new object in a finalized object's slot has no finalizer */
  bool found = false;
  for (int k = 0; k < 5000 && !found; k++)
    found = alloc_ok(100) == a;
  assert_true(found);
  cycle();
  assert_int_equal(fin_calls_for(a), 1);
  assert_int_equal(fin_total() - total0, 4);
  roots_clear();
  expect_heap_is_roots("finalizers");
}

/* ---- pools ----------------------------------------------------------------------- */

static _Atomic int pool_news, pool_frees;
static void *pool_last_freed[64];

static void *pool_new(void *arg) {
  assert_ptr_equal(arg, &pool_news);
  atomic_fetch_add(&pool_news, 1);
  return calloc(1, 64);
}

static void pool_free(void *obj, void *arg) {
  assert_ptr_equal(arg, &pool_news);
  int i = atomic_fetch_add(&pool_frees, 1);
  if (i < 64)
    pool_last_freed[i] = obj;
  free(obj);
}

static bool pool_freed(void *obj) {
  int n = atomic_load(&pool_frees);
  for (int i = 0; i < n && i < 64; i++)
    if (pool_last_freed[i] == obj)
      return true;
  return false;
}

static void test_pools(void **state) {
  (void)state;
  gc_pool_t *p = gc_pool_new("test-pool", pool_new, pool_free, &pool_news);
  assert_non_null(p);
  gc_stats_t *st = stats();
  int id = st->npools - 1;
  assert_true(id >= 0);
  assert_string_equal(st->pools[id].name, "test-pool");
  assert_int_equal(st->pools[id].gets, 0);

  void *x = gc_pool_get(M, p); /* empty: new */
  assert_non_null(x);
  assert_int_equal(atomic_load(&pool_news), 1);
  gc_pool_put(M, p, x);
  assert_ptr_equal(gc_pool_get(M, p), x); /* primary hit */
  st = stats();
  assert_int_equal(st->pools[id].gets, 2);
  assert_int_equal(st->pools[id].puts, 1);
  assert_int_equal(st->pools[id].news, 1);
  assert_int_equal(st->pools[id].victim_hits, 0);

  /* one cycle: primary -> victim, still served */
  gc_pool_put(M, p, x);
  cycle();
  assert_int_equal(atomic_load(&pool_frees), 0);
  assert_ptr_equal(gc_pool_get(M, p), x);
  st = stats();
  assert_int_equal(st->pools[id].victim_hits, 1);
  assert_int_equal(st->pools[id].news, 1);

  /* two cycles: dropped through free_fn */
  void *y = gc_pool_get(M, p); /* new */
  assert_ptr_not_equal(x, y);
  gc_pool_put(M, p, x);
  gc_pool_put(M, p, y);
  cycle();
  assert_int_equal(atomic_load(&pool_frees), 0);
  cycle();
  assert_int_equal(atomic_load(&pool_frees), 2);
  assert_true(pool_freed(x));
  assert_true(pool_freed(y));
  st = stats();
  assert_int_equal(st->pools[id].dropped, 2);
  assert_int_equal(st->pools[id].news, 2);
  void *z = gc_pool_get(M, p); /* empty again: new */
  assert_int_equal(atomic_load(&pool_news), 3);
  st = stats();
  assert_int_equal(st->pools[id].gets, 5);
  assert_int_equal(st->pools[id].puts, 4);
  assert_int_equal(st->pools[id].news, 3);
  assert_int_equal(st->pools[id].victim_hits, 1);

  /* a victim that is taken again and put back is primary again: survives */
  gc_pool_put(M, p, z);
  cycle();
  assert_ptr_equal(gc_pool_get(M, p), z);
  gc_pool_put(M, p, z);
  cycle();
  assert_false(pool_freed(z));

  /* a detaching mutator hands its pooled objects to free_fn */
  gc_mutator_t *m2 = gc_mutator_new();
  assert_non_null(m2);
  gc_mutator_unpark(m2);
  void *w1 = gc_pool_get(m2, p), *w2 = gc_pool_get(m2, p);
  gc_pool_put(m2, p, w1);
  gc_mutator_park(m2);
  cycle(); /* w1 -> m2's victim list; z (M's victim) is dropped */
  assert_true(pool_freed(z));
  assert_false(pool_freed(w1));
  gc_mutator_unpark(m2);
  gc_pool_put(m2, p, w2);
  int frees0 = atomic_load(&pool_frees);
  gc_mutator_free(m2);
  assert_int_equal(atomic_load(&pool_frees) - frees0, 2);
  assert_true(pool_freed(w1));
  assert_true(pool_freed(w2));
  st = stats();
  assert_int_equal(st->pools[id].dropped, 5);
  /* m2's counters still count after it detached */
  assert_int_equal(st->pools[id].puts, 8);
  assert_int_equal(st->pools[id].gets, 8);
  assert_int_equal(st->pools[id].news, 5);
}

/* ---- memory limit ----------------------------------------------------------------- */

static void test_memory_limit(void **state) {
  (void)state;
  cycle();
  gc_stats_t *st = stats();
  uint64_t lim = st->heap_inuse + 48 * MIB;
  uint64_t old = gc_set_memory_limit(lim);
  assert_int_equal(old, INIT_LIMIT);
  assert_int_equal(stats()->memory_limit, lim);
  uint32_t gc0 = stats()->num_gc;
  uint64_t fail0 = stats()->alloc_failures;

  enum { MAXN = 100 };
  void *p[MAXN];
  uint64_t seed[MAXN];
  size_t slot[MAXN];
  int n = 0, err = 0;
  for (; n < MAXN; n++) {
    err = 0;
    void *q = gc_alloc(M, MIB, &err);
    if (!q)
      break;
    p[n] = q;
    seed[n] = rnd();
    fill(q, MIB, seed[n]);
    slot[n] = root_add(q);
  }
  assert_true(n < MAXN);
  assert_int_equal(err, BC_ELIMIT);
  assert_true(n >= 40 && n <= 48);
  st = stats();
  assert_true(st->alloc_failures > fail0);
  assert_true(st->heap_inuse <= lim);
  /* the allocator tried a collection before giving up */
  assert_true(st->num_gc > gc0);
  for (int i = 0; i < n; i++)
    assert_true(check(p[i], MIB, seed[i]));
  /* still refused, still intact */
  err = 0;
  assert_null(gc_alloc(M, 2 * MIB, &err));
  assert_int_equal(err, BC_ELIMIT);
  err = 0;
  assert_null(gc_alloc(M, lim + 1, &err)); /* could never fit */
  assert_int_equal(err, BC_ELIMIT);

  /* drop half without collecting: the allocator collects and succeeds */
  for (int i = 0; i < n; i += 2)
    roots[slot[i]] = NULL;
  uint32_t gc1 = stats()->num_gc;
  for (int i = 0; i < n / 2 - 1; i++) {
    err = 0;
    void *q = gc_alloc(M, MIB, &err);
    if (!q)
      fail_msg("allocation %d after dropping half failed: %s", i,
               bc_strerror(err));
    root_add(q);
  }
  assert_true(stats()->num_gc > gc1);
  for (int i = 1; i < n; i += 2)
    assert_true(check(p[i], MIB, seed[i]));

  assert_int_equal(gc_set_memory_limit(INIT_LIMIT), lim);
  roots_clear();
  cycle();
  expect_heap_is_roots("after limit test");
}

/* ---- fault injection ---------------------------------------------------------------- */

static void test_fault_injection(void **state) {
  (void)state;
  cycle();
  gc_stats_t *st = stats();
  /* bigger than all free pages plus a commit chunk: must map new memory */
  size_t big = (size_t)(st->heap_idle + 8 * MIB + PAGE) / PAGE * PAGE;
  uint64_t fail0 = st->alloc_failures;
  void *keep = alloc_ok(1000);
  fill(keep, 1000, 99);
  size_t rk = root_add(keep);

  gc_fail_next_os_allocs(1);
  int err = 0;
  assert_null(gc_alloc(M, big, &err));
  assert_int_equal(err, BC_ENOMEM);
  assert_int_equal(stats()->alloc_failures, fail0 + 1);
  void *q = alloc_ok(big); /* the failure was one-shot */
  fill(q, 4096, 1);

  gc_fail_next_os_allocs(2);
  size_t big2 = (size_t)(stats()->heap_idle + 8 * MIB + PAGE) / PAGE * PAGE;
  err = 0;
  assert_null(gc_alloc(M, big2, &err));
  assert_int_equal(err, BC_ENOMEM);
  err = 0;
  assert_null(gc_alloc(M, big2, &err));
  assert_int_equal(err, BC_ENOMEM);
  void *q2 = alloc_ok(big2);
  fill(q2, 4096, 2);
  assert_int_equal(stats()->alloc_failures, fail0 + 3);

  /* small allocations that need a fresh span fail the same way */
  cycle(); /* q, q2 are garbage now: their pages are free but committed */
  gc_fail_next_os_allocs(1000000);
  /* fill free pages until the heap must grow; then it fails with ENOMEM */
  size_t nsmall = 0;
  err = 0;
  void *last = NULL;
  for (;;) {
    void *s = gc_alloc(M, 16 * KIB, &err);
    if (!s)
      break;
    last = s;
    nsmall++;
    assert_true(nsmall < 100000);
  }
  assert_int_equal(err, BC_ENOMEM);
  assert_non_null(last);
  gc_fail_next_os_allocs(0);
  alloc_ok(16 * KIB); /* recovered */
  assert_true(check(keep, 1000, 99));
  roots[rk] = NULL;
  roots_clear();
  cycle();
  expect_heap_is_roots("after fault injection");
}

/* ---- scavenger ------------------------------------------------------------------------ */

static void test_scavenge(void **state) {
  (void)state;
  void *keep = alloc_ok(3000);
  fill(keep, 3000, 5);
  root_add(keep);
  cycle();
  uint64_t base_inuse = stats()->heap_inuse;
  for (int i = 0; i < 2000; i++)
    alloc_ok((size_t)(rnd() % 8192));
  for (int i = 0; i < 8; i++)
    alloc_ok(MIB + (size_t)(rnd() % MIB));
  assert_true(stats()->heap_inuse > base_inuse + 8 * MIB);
  cycle();
  gc_stats_t *st = stats();
  assert_int_equal(st->heap_inuse, base_inuse);
  uint64_t rel = gc_scavenge_all();
  st = stats();
  assert_true(rel >= 8 * MIB);
  assert_true(st->heap_released >= rel);
  assert_true(st->heap_released <= st->heap_idle);
  assert_int_equal(st->heap_inuse, base_inuse);
  assert_int_equal(gc_scavenge_all(), 0); /* nothing left to release */
  gc_mutator_park(M);
  gc_verify();
  gc_mutator_unpark(M);
  /* released pages are usable again */
  uint64_t rel_before = stats()->heap_released;
  void *q = alloc_ok(4 * MIB);
  fill(q, 4 * MIB, 6);
  assert_true(check(q, 4 * MIB, 6));
  assert_true(stats()->heap_released < rel_before);
  assert_true(check(keep, 3000, 5));
  roots_clear();
  cycle();
  expect_heap_is_roots("after scavenge");
}

/* Allocates garbage of size bytes until the pacer must have started a
 * cycle (heap_alloc past the goal by two spans: a refill after the
 * crossing pulls the trigger), then waits parked, allocating nothing more,
 * until num_gc reaches target: gc_collect does not run that cycle. */
static void garbage_until_cycle(size_t size, uint32_t target) {
  gc_stats_t *st = stats();
  for (long i = 0; st->alloc < st->next_gc + 256 * KIB; i++) {
    if (i > 1000000)
      fail_msg("heap_alloc stays below the goal after %ld allocations", i);
    alloc_ok(size);
    st = stats();
  }
  gc_mutator_park(M);
  for (int ms = 0; stats()->num_gc < target; ms++) {
    if (ms > 30000)
      fail_msg("no paced cycle within 30 s");
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  gc_mutator_unpark(M);
}

static void expect_verified(void) {
  gc_mutator_park(M);
  gc_verify(); /* also checks heap_empty against the spans */
  gc_mutator_unpark(M);
}

/* A paced cycle keeps the spans its sweep empties (HeapEmpty) for their
 * class to reuse; the next paced cycle frees those nobody took; a cycle
 * someone waits for frees them all. */
static void test_emptied_spans(void **state) {
  (void)state;
  cycle();
  gc_stats_t st0 = *stats();
  assert_int_equal(st0.heap_empty, 0);
  assert_int_equal(gc_set_percent(100), GC_PERCENT_OFF); /* goal 4 MiB */

  /* 1. 1000-byte garbage until the pacer runs a cycle: what was allocated
   * before it started is dead, its spans emptied and kept */
  garbage_until_cycle(1000, st0.num_gc + 1);
  gc_stats_t st1 = *stats();
  expect_verified();
  assert_int_equal(st1.num_forced_gc, st0.num_forced_gc);
  assert_true(st1.heap_empty >= MIB);
  assert_true(st1.heap_inuse >= st0.heap_inuse + st1.heap_empty);

  /* 2. the class takes its kept spans back before any new page */
  for (size_t b = 0; b < st1.heap_empty / 2; b += 1000)
    alloc_ok(1000);
  gc_stats_t st2 = *stats();
  expect_verified();
  assert_int_equal(st2.heap_inuse, st1.heap_inuse);
  assert_true(st2.heap_empty <= st1.heap_empty - st1.heap_empty / 4);

  /* 3. a paced cycle driven by large objects (never kept): the 1000-byte
   * spans nobody took in 2 go back to the page heap */
  garbage_until_cycle(128 * KIB, st2.num_gc + 1);
  gc_stats_t st3 = *stats();
  expect_verified();
  assert_true(st3.heap_empty < st1.heap_empty);

  /* 3b. an allocation the limit refuses: the kept spans go first, no
   * cycle runs for it */
  gc_stats_t st3b = *stats();
  assert_true(st3b.heap_empty >= MIB);
  uint64_t lim0 = gc_set_memory_limit(st3b.limit_used + 128 * KIB);
  void *big = alloc_ok(st3b.heap_empty / 2); /* > 64 KiB: new pages */
  (void)big;
  gc_stats_t *st3c = stats();
  assert_int_equal(st3c->num_gc, st3b.num_gc);
  assert_int_equal(st3c->heap_empty, 0);
  gc_set_memory_limit(lim0);
  expect_verified();

  /* 4. a forced cycle frees every emptied span */
  assert_int_equal(gc_set_percent(GC_PERCENT_OFF), 100);
  cycle();
  gc_stats_t *st4 = stats();
  assert_int_equal(st4->heap_empty, 0);
  assert_int_equal(st4->heap_inuse, st0.heap_inuse);
}

/* ---- shutdown ----------------------------------------------------------------------------- */

static void test_shutdown(void **state) {
  (void)state;
  void *p = alloc_ok(100);
  root_add(p);
  gc_mutator_free(M); /* parks and detaches */
  gc_collect(NULL);   /* still works with no mutator attached */
  gc_stop();
  gc_collect(NULL); /* collector stopped: returns at once */
  gc_close();
  heap_closed = true;
  roots_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_size_class_table),
      cmocka_unit_test(test_small_boundaries),
      cmocka_unit_test(test_large_objects),
      cmocka_unit_test(test_mark_sweep_exact),
      cmocka_unit_test(test_cycle_stats),
      cmocka_unit_test(test_pacer_settings),
      cmocka_unit_test(test_impossible_sizes),
      cmocka_unit_test(test_finalizers),
      cmocka_unit_test(test_pools),
      cmocka_unit_test(test_memory_limit),
      cmocka_unit_test(test_fault_injection),
      cmocka_unit_test(test_scavenge),
      cmocka_unit_test(test_emptied_spans),
      cmocka_unit_test(test_shutdown),
  };
  return cmocka_run_group_tests_name("heap", tests, group_setup,
                                     group_teardown);
}
