/* test_gc_phases.c - the collector's phase transitions, seen through the
 * public API (gc/gc.h), one cycle at a time:
 *
 *   off --(STW 1: hooks, STW roots)--> mark --(concurrent roots)-->
 *       --(STW 2)--> sweep (finalizers, dropped pool victims) --> off
 *
 *   - gc_marking() is false outside cycles and during the sweep, true in a
 *     cycle hook, a GC_ROOTS_STW scanner and a GC_ROOTS_CONCURRENT scanner;
 *   - stop-the-world waits for a running mutator's next safepoint, and a
 *     mutator that reaches a safepoint during a pause stays there until the
 *     pause ends;
 *   - objects allocated (by another mutator) while the concurrent scanner
 *     runs are black: they survive that cycle unrooted and die in the next;
 *     objects allocated before or after marking are not;
 *   - gc_barrier(old) while marking keeps old alive for this cycle only;
 *     without it an object unlinked ahead of the scanner dies; outside
 *     marking the barrier does nothing;
 *   - pools: per-mutator primary -> victim -> dropped across cycles, dropped
 *     victims freed on the collector thread before gc_collect returns;
 *   - NumGC, NumForcedGC, PauseNs/PauseEnd, LastGC, PauseTotalNs and the
 *     pause histogram after forced and pacer-started cycles.
 *
 * The heap is a process-wide singleton: one gc_init for this executable.
 * Roots: roots[] (marked by a STW scanner; only the main thread changes it,
 * always while its mutator M runs, so a scan never sees it half-written)
 * and croots[] (marked by a concurrent scanner; atomic slots). Helper
 * threads are mutators of their own; what they observe goes into variables
 * the main thread asserts on.
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
#include <string.h>
#include <time.h>

#include "gc.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

static gc_mutator_t *M;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static gc_stats_t *stats(void) {
  static gc_stats_t st;
  gc_read_stats(&st);
  return &st;
}

static void *alloc_ok(gc_mutator_t *m, size_t size) {
  int err = 0;
  void *p = gc_alloc(m, size, &err);
  if (!p)
    fail_msg("gc_alloc(%zu) failed: %s", size, bc_strerror(err));
  memset(p, 0x5a, size < 256 ? size : 256);
  return p;
}

/* ---- roots ----------------------------------------------------------------------- */

#define NROOTS 64
static void *roots[NROOTS];             /* STW roots */
static _Atomic(void *) croots[NROOTS];  /* concurrent roots */

static uint64_t live_roots(void) {
  uint64_t n = 0;
  for (int i = 0; i < NROOTS; i++)
    n += roots[i] != NULL;
  for (int i = 0; i < NROOTS; i++)
    n += atomic_load(&croots[i]) != NULL;
  return n;
}

/* what the phases saw; written by the collector thread, read by main after
 * gc_collect returned (its cond wait orders them) */
static _Atomic int hook_calls, hook_saw_marking;
static _Atomic int stw_calls, stw_saw_marking;
static _Atomic int conc_calls, conc_saw_marking;
static _Atomic uint64_t stw_scan_ns; /* when the last STW scan ran */
/* an action the concurrent scanner runs before it marks anything */
static void (*_Atomic conc_action)(void);

static void cycle_hook(void *arg) {
  (void)arg;
  atomic_fetch_add(&hook_calls, 1);
  if (gc_marking())
    atomic_fetch_add(&hook_saw_marking, 1);
}

static void stw_scan(void *arg) {
  (void)arg;
  atomic_fetch_add(&stw_calls, 1);
  if (gc_marking())
    atomic_fetch_add(&stw_saw_marking, 1);
  atomic_store(&stw_scan_ns, now_ns());
  for (int i = 0; i < NROOTS; i++)
    if (roots[i])
      gc_mark(roots[i]);
}

static void conc_scan(void *arg) {
  (void)arg;
  atomic_fetch_add(&conc_calls, 1);
  if (gc_marking())
    atomic_fetch_add(&conc_saw_marking, 1);
  void (*act)(void) = atomic_load(&conc_action);
  if (act)
    act();
  for (int i = 0; i < NROOTS; i++) {
    void *p = atomic_load(&croots[i]);
    if (p)
      gc_mark(p);
  }
}

/* ---- finalizers: which objects were freed, and in which phase ------------------ */

static pthread_mutex_t fin_mu = PTHREAD_MUTEX_INITIALIZER;
#define FIN_LOG 256
static void *fin_log[FIN_LOG];
static int fin_n;
static _Atomic int fin_while_marking;

static void fin_hook(void *obj) {
  if (gc_marking())
    atomic_fetch_add(&fin_while_marking, 1);
  pthread_mutex_lock(&fin_mu);
  if (fin_n < FIN_LOG)
    fin_log[fin_n++] = obj;
  pthread_mutex_unlock(&fin_mu);
}

/* Forgets earlier finalizations: a freed object's address comes back. */
static void fin_reset(void) {
  pthread_mutex_lock(&fin_mu);
  fin_n = 0;
  pthread_mutex_unlock(&fin_mu);
}

static bool finalized(const void *obj) {
  bool found = false;
  pthread_mutex_lock(&fin_mu);
  for (int i = 0; i < fin_n; i++)
    found |= fin_log[i] == obj;
  pthread_mutex_unlock(&fin_mu);
  return found;
}

/* ---- helper threads: a mutator of their own, run fn when told ------------------ */

typedef struct helper {
  pthread_t tid;
  gc_mutator_t *m;
  void (*fn)(struct helper *);
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state; /* H_* */
  void *p[32];   /* the helper's findings */
  uint64_t t[4];
  int flag;
} helper_t;

enum { H_NEW, H_READY, H_GO, H_DONE, H_EXIT };

static void h_set(helper_t *h, int st) {
  pthread_mutex_lock(&h->mu);
  h->state = st;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

static void h_wait(helper_t *h, int st) {
  pthread_mutex_lock(&h->mu);
  while (h->state < st)
    pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
}

/* The helper is parked whenever it waits (a new mutator starts parked), so
 * it never holds up a stop-the-world phase while it waits. */
static void *helper_main(void *arg) {
  helper_t *h = arg;
  h->m = gc_mutator_new();
  h_set(h, H_READY);
  h_wait(h, H_GO);
  gc_mutator_unpark(h->m);
  h->fn(h);
  gc_mutator_park(h->m);
  h_set(h, H_DONE);
  h_wait(h, H_EXIT);
  gc_mutator_free(h->m);
  return NULL;
}

static void helper_start(helper_t *h, void (*fn)(helper_t *)) {
  memset(h, 0, sizeof(*h));
  h->fn = fn;
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  assert_int_equal(pthread_create(&h->tid, NULL, helper_main, h), 0);
  h_wait(h, H_READY);
  assert_non_null(h->m);
}

static void helper_finish(helper_t *h) {
  h_wait(h, H_DONE);
  h_set(h, H_EXIT);
  pthread_join(h->tid, NULL);
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
}

/* the helper the concurrent scanner releases, and waits for */
static helper_t *conc_helper;
static void release_helper_and_wait(void) {
  h_set(conc_helper, H_GO);
  h_wait(conc_helper, H_DONE);
}

/* A forced cycle from the main thread (M parks while it waits). */
static void cycle(void) { gc_collect(M); }

/* After a cycle the heap holds exactly the rooted objects plus extra. */
static void expect_heap_objects(uint64_t extra, const char *where) {
  gc_stats_t *st = stats();
  uint64_t want = live_roots() + extra;
  if (st->heap_objects != want || st->heap_marked_objects != want)
    fail_msg("%s: heap_objects %" PRIu64 ", marked %" PRIu64 "; expected %" PRIu64,
             where, st->heap_objects, st->heap_marked_objects, want);
}

/* ---- setup ------------------------------------------------------------------------ */

static int group_setup(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = (uint64_t)1 << 30,
                     .gc_percent = GC_PERCENT_OFF,
                     .gctrace = false,
                     .nprocs = 2};
  if (gc_init(&cfg) != 0)
    return -1;
  gc_register_cycle_hook(cycle_hook, NULL);
  gc_register_roots(GC_ROOTS_STW, stw_scan, NULL);
  gc_register_roots(GC_ROOTS_CONCURRENT, conc_scan, NULL);
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
  gc_mutator_free(M);
  gc_stop();
  gc_close();
  return 0;
}

/* ---- phases as gc_marking() sees them ---------------------------------------------- */

static void test_marking_flag_by_phase(void **state) {
  (void)state;
  assert_false(gc_marking()); /* before the first cycle */
  gc_stats_t before = *stats();
  assert_int_equal(before.num_gc, 0);
  atomic_store(&hook_calls, 0);
  atomic_store(&hook_saw_marking, 0);
  atomic_store(&stw_calls, 0);
  atomic_store(&stw_saw_marking, 0);
  atomic_store(&conc_calls, 0);
  atomic_store(&conc_saw_marking, 0);
  /* a finalized object shows the sweep's phase */
  fin_reset();
  void *f = alloc_ok(M, 48);
  gc_set_finalizer(f);
  for (int i = 0; i < 3; i++) {
    cycle();
    assert_false(gc_marking()); /* between cycles */
  }
  assert_int_equal(atomic_load(&hook_calls), 3);
  assert_int_equal(atomic_load(&hook_saw_marking), 3);
  assert_int_equal(atomic_load(&stw_calls), 3);
  assert_int_equal(atomic_load(&stw_saw_marking), 3);
  assert_int_equal(atomic_load(&conc_calls), 3);
  assert_int_equal(atomic_load(&conc_saw_marking), 3);
  assert_true(finalized(f));
  assert_int_equal(atomic_load(&fin_while_marking), 0); /* sweep: not marking */
  expect_heap_objects(0, "after three cycles");
}

/* ---- safepoints -------------------------------------------------------------------- */

#define SPIN_NS (200 * 1000000ull)

/* Runs SPIN_NS without a safepoint, then passes safepoints until a cycle's
 * STW scan has run. t[0]: spin start, t[1]: spin end, t[2]: back from the
 * safepoint that was held by the pause. */
static void spin_then_safepoint(helper_t *h) {
  uint64_t scans0 = atomic_load(&stw_calls);
  h->t[0] = now_ns();
  __atomic_store_n(&h->flag, 1, __ATOMIC_SEQ_CST);
  while (now_ns() - h->t[0] < SPIN_NS)
    ; /* running, no safepoint: a stop must wait */
  h->t[1] = now_ns();
  uint64_t deadline = h->t[1] + 10000000000ull;
  while ((uint64_t)atomic_load(&stw_calls) == scans0 && now_ns() < deadline)
    gc_mutator_safepoint(h->m);
  h->t[2] = now_ns();
}

static void test_stop_waits_for_safepoint(void **state) {
  (void)state;
  helper_t h;
  helper_start(&h, spin_then_safepoint);
  h_set(&h, H_GO);
  while (!__atomic_load_n(&h.flag, __ATOMIC_SEQ_CST))
    ;
  uint64_t t_call = now_ns();
  cycle();
  helper_finish(&h);
  uint64_t t_scan = atomic_load(&stw_scan_ns);
  /* the STW roots were scanned only once the spinning mutator stopped */
  assert_true(t_scan >= h.t[1]);
  /* ... and it stayed stopped until the scan was over */
  assert_true(h.t[2] >= t_scan);
  /* the first pause includes the wait for it (time-to-safepoint): the cycle
   * was asked for well before the spin ended */
  gc_stats_t *st = stats();
  if (h.t[1] > t_call + SPIN_NS / 2)
    assert_true(st->last_pause_ns[0] >= (h.t[1] - t_call) / 4);
  assert_false(gc_marking());
}

/* ---- allocate-black ----------------------------------------------------------------- */

static const size_t black_sizes[] = {16,    48,    100,        1000, 4096,
                                     12000, 32768, 40 * KIB,   200 * KIB};
#define NBLACK (sizeof(black_sizes) / sizeof(black_sizes[0]))

static void alloc_during_mark(helper_t *h) {
  h->flag = gc_marking();
  for (size_t i = 0; i < NBLACK; i++) {
    h->p[i] = alloc_ok(h->m, black_sizes[i]);
    memset(h->p[i], (int)(0xa0 + i), black_sizes[i]);
  }
}

static void alloc_outside_mark(helper_t *h) {
  h->flag = gc_marking();
  for (size_t i = 0; i < NBLACK; i++)
    h->p[i] = alloc_ok(h->m, black_sizes[i]);
}

static bool filled(const void *p, size_t n, int c) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != (unsigned char)c)
      return false;
  return true;
}

static void test_allocated_while_marking_is_black(void **state) {
  (void)state;
  cycle();
  expect_heap_objects(0, "start");
  /* garbage made before the cycle, by M and by another mutator: white */
  for (int i = 0; i < 10; i++)
    (void)alloc_ok(M, 64 + 100 * (size_t)i);
  helper_t pre;
  helper_start(&pre, alloc_outside_mark);
  h_set(&pre, H_GO);
  helper_finish(&pre);
  assert_false(pre.flag);

  /* another mutator allocates while the concurrent scanner runs */
  helper_t h;
  helper_start(&h, alloc_during_mark);
  conc_helper = &h;
  atomic_store(&conc_action, release_helper_and_wait);
  cycle();
  atomic_store(&conc_action, NULL);
  helper_finish(&h);
  assert_true(h.flag); /* it ran inside the mark phase */
  /* unrooted, yet all survived: born black; the earlier garbage did not */
  expect_heap_objects(NBLACK, "after the cycle that allocated black");
  for (size_t i = 0; i < NBLACK; i++)
    assert_true(filled(h.p[i], black_sizes[i], (int)(0xa0 + i)));
  /* reusing their size classes now must not hand them out again */
  for (int k = 0; k < 200; k++)
    for (size_t i = 0; i < NBLACK; i++)
      if (black_sizes[i] <= 65536) { /* small classes (GC_MAX_SMALL) */
        void *q = alloc_ok(M, black_sizes[i]);
        for (size_t j = 0; j < NBLACK; j++)
          assert_ptr_not_equal(q, h.p[j]);
      }
  for (size_t i = 0; i < NBLACK; i++)
    assert_true(filled(h.p[i], black_sizes[i], (int)(0xa0 + i)));
  /* black lasts one cycle: the next one reclaims them (and M's garbage) */
  cycle();
  expect_heap_objects(0, "one cycle later");
  /* allocate-black is off after the cycle: new garbage dies at once */
  (void)alloc_ok(M, 100);
  (void)alloc_ok(M, 50 * KIB);
  cycle();
  expect_heap_objects(0, "garbage made after the cycle");
}

/* ---- the deletion barrier ----------------------------------------------------------- */

static void *bx, *by;

/* A mutator unlinks two objects before the concurrent scanner reaches them:
 * bx with the barrier (the protocol), by without (a broken caller). */
static void unlink_during_mark(helper_t *h) {
  h->flag = gc_marking();
  atomic_store(&croots[0], NULL);
  gc_barrier(bx);
  atomic_store(&croots[1], NULL);
}

static void test_barrier_keeps_old_value_one_cycle(void **state) {
  (void)state;
  cycle();
  fin_reset();
  bx = alloc_ok(M, 200);
  by = alloc_ok(M, 200);
  gc_set_finalizer(bx);
  gc_set_finalizer(by);
  atomic_store(&croots[0], bx);
  atomic_store(&croots[1], by);
  cycle();
  assert_false(finalized(bx));
  assert_false(finalized(by));
  expect_heap_objects(0, "both rooted");

  helper_t h;
  helper_start(&h, unlink_during_mark);
  conc_helper = &h;
  atomic_store(&conc_action, release_helper_and_wait);
  cycle();
  atomic_store(&conc_action, NULL);
  helper_finish(&h);
  assert_true(h.flag);
  assert_false(finalized(bx)); /* shaded by the barrier: survives */
  assert_true(finalized(by));  /* unlinked unshaded: lost */
  expect_heap_objects(1, "the barrier's object");
  cycle();
  assert_true(finalized(bx)); /* the next cycle reclaims it */
  expect_heap_objects(0, "a cycle later");
  assert_int_equal(atomic_load(&fin_while_marking), 0);
}

static void test_barrier_outside_marking_is_a_no_op(void **state) {
  (void)state;
  cycle();
  fin_reset();
  void *x = alloc_ok(M, 300);
  gc_set_finalizer(x);
  assert_false(gc_marking());
  gc_barrier(x);
  gc_barrier(NULL); /* allowed: nothing was there */
  cycle();
  assert_true(finalized(x));
  expect_heap_objects(0, "barrier outside marking");
}

/* ---- pools across cycles -------------------------------------------------------------- */

static _Atomic int pnews;
static _Atomic int pfree_on_main, pfree_n;
static void *pfreed[64];
static pthread_t main_tid;

static void *pnew(void *arg) {
  (void)arg;
  atomic_fetch_add(&pnews, 1);
  return calloc(1, 64);
}

static void pfree(void *obj, void *arg) {
  (void)arg;
  if (pthread_equal(pthread_self(), main_tid))
    atomic_fetch_add(&pfree_on_main, 1);
  int i = atomic_fetch_add(&pfree_n, 1);
  if (i < 64)
    pfreed[i] = obj;
  free(obj);
}

static bool pool_freed(void *obj) {
  for (int i = 0; i < atomic_load(&pfree_n) && i < 64; i++)
    if (pfreed[i] == obj)
      return true;
  return false;
}

static gc_pool_t *P;

static void pool_put_b(helper_t *h) {
  h->p[0] = gc_pool_get(h->m, P); /* new */
  gc_pool_put(h->m, P, h->p[0]);
}

static void test_pool_victims_across_cycles(void **state) {
  (void)state;
  main_tid = pthread_self();
  P = gc_pool_new("phases", pnew, pfree, NULL);
  assert_non_null(P);
  void *a = gc_pool_get(M, P);
  gc_pool_put(M, P, a);
  helper_t h;
  helper_start(&h, pool_put_b);
  h_set(&h, H_GO);
  h_wait(&h, H_DONE);
  void *b = h.p[0];
  assert_ptr_not_equal(a, b);
  assert_int_equal(atomic_load(&pnews), 2);

  cycle(); /* a, b: primary -> victim (per mutator) */
  assert_int_equal(atomic_load(&pfree_n), 0);
  assert_ptr_equal(gc_pool_get(M, P), a); /* M's victim */
  void *c = gc_pool_get(M, P);            /* b is not M's: new */
  assert_ptr_not_equal(c, b);
  assert_int_equal(atomic_load(&pnews), 3);
  gc_pool_put(M, P, a); /* back to primary */
  gc_pool_put(M, P, c);

  cycle(); /* b: victim -> dropped; a, c: primary -> victim */
  assert_int_equal(atomic_load(&pfree_n), 1);
  assert_true(pool_freed(b)); /* freed before gc_collect returned */
  assert_false(pool_freed(a));
  assert_int_equal(atomic_load(&pfree_on_main), 0); /* on the collector */

  cycle(); /* idle: a and c dropped, two cycles after their last put */
  assert_int_equal(atomic_load(&pfree_n), 3);
  assert_true(pool_freed(a));
  assert_true(pool_freed(c));
  assert_int_equal(atomic_load(&pfree_on_main), 0);
  gc_stats_t *st = stats();
  int id = st->npools - 1;
  assert_string_equal(st->pools[id].name, "phases");
  assert_int_equal(st->pools[id].dropped, 3);
  assert_int_equal(st->pools[id].victim_hits, 1);
  assert_int_equal(st->pools[id].news, 3);
  helper_finish(&h);
}

/* ---- statistics per cycle ------------------------------------------------------------ */

static void expect_cycle_recorded(const gc_stats_t *b, const gc_stats_t *a,
                                  uint32_t cycles) {
  assert_int_equal(a->num_gc, b->num_gc + cycles);
  uint32_t last = (a->num_gc + GC_PAUSE_RING - 1) % GC_PAUSE_RING;
  assert_int_equal(a->pause_ns[last], a->last_pause_ns[0] + a->last_pause_ns[1]);
  assert_true(a->pause_ns[last] > 0);
  assert_int_equal(a->pause_end[last], a->last_gc_unix_ns);
  assert_true(a->last_gc_unix_ns > b->last_gc_unix_ns);
  uint64_t added = 0;
  for (uint32_t n = b->num_gc; n < a->num_gc; n++)
    added += a->pause_ns[n % GC_PAUSE_RING];
  assert_int_equal(a->pause_total_ns - b->pause_total_ns, added);
  uint64_t hist = 0;
  for (int i = 0; i <= GC_PAUSE_BUCKETS; i++)
    hist += a->pause_hist[i];
  assert_int_equal(hist, 2ull * a->num_gc);
  for (uint32_t n = b->num_gc + 1; n < a->num_gc; n++) /* ends in order */
    assert_true(a->pause_end[n % GC_PAUSE_RING] >=
                a->pause_end[(n - 1) % GC_PAUSE_RING]);
}

static void test_forced_cycle_stats(void **state) {
  (void)state;
  gc_stats_t b = *stats();
  uint64_t t0 = (uint64_t)time(NULL) * 1000000000ull;
  cycle();
  gc_stats_t a = *stats();
  expect_cycle_recorded(&b, &a, 1);
  assert_int_equal(a.num_forced_gc, b.num_forced_gc + 1);
  assert_true(a.last_gc_unix_ns + 2000000000ull >= t0); /* Unix ns, now */
  b = a;
  cycle();
  cycle();
  a = *stats();
  expect_cycle_recorded(&b, &a, 2);
  assert_int_equal(a.num_forced_gc, b.num_forced_gc + 2);
}

static void test_pacer_cycle_stats(void **state) {
  (void)state;
  cycle();
  gc_stats_t b = *stats();
  assert_int_equal(gc_set_percent(100), GC_PERCENT_OFF);
  /* garbage until the pacer starts a cycle on its own (the goal is at least
   * 4 MiB); passing safepoints so the cycle can stop us */
  uint64_t deadline = now_ns() + 20000000000ull;
  uint64_t made = 0;
  while (stats()->num_gc == b.num_gc && now_ns() < deadline) {
    for (int i = 0; i < 64; i++)
      (void)alloc_ok(M, 16 * KIB);
    made += 64 * 16 * KIB;
    gc_mutator_safepoint(M);
  }
  assert_int_equal(gc_set_percent(GC_PERCENT_OFF), 100);
  /* let a pacer cycle that is still running finish: a forced one queues
   * behind it */
  cycle();
  gc_stats_t a = *stats();
  assert_true(a.num_gc >= b.num_gc + 2);
  assert_true(made >= 4 * MIB);
  /* only the last one was forced */
  assert_int_equal(a.num_forced_gc, b.num_forced_gc + 1);
  expect_cycle_recorded(&b, &a, a.num_gc - b.num_gc);
  expect_heap_objects(0, "pacer garbage reclaimed");
  assert_false(gc_marking());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_marking_flag_by_phase),
      cmocka_unit_test(test_stop_waits_for_safepoint),
      cmocka_unit_test(test_allocated_while_marking_is_black),
      cmocka_unit_test(test_barrier_keeps_old_value_one_cycle),
      cmocka_unit_test(test_barrier_outside_marking_is_a_no_op),
      cmocka_unit_test(test_pool_victims_across_cycles),
      cmocka_unit_test(test_forced_cycle_stats),
      cmocka_unit_test(test_pacer_cycle_stats),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
