/* test_memprof.c - gc/memprof.c: allocation sampling off, every allocation
 * (rate 1), the exponential interval's odds at rate 4096 (the unbiased
 * estimate is within a few per cent of the truth), labels as bucket keys,
 * the caller's frame first in the stack, and Go's snapshot rule: figures
 * appear once a cycle completes, frees once the sweep of a cycle finds the
 * object dead.
 *
 * The heap is a process-wide singleton set up once; each test takes a new
 * mutator (the rate applies from a mutator's next draw) and its own labels
 * (any stable pointer), and reads only its own buckets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gc.h"

#define MAX_ROOTS 1000
static void *roots[MAX_ROOTS];

static void scan_roots(void *arg) {
  (void)arg;
  for (size_t i = 0; i < MAX_ROOTS; i++)
    if (roots[i])
      gc_mark(roots[i]);
}

static gc_mutator_t *mutator(int64_t rate) {
  gc_set_mem_profile_rate(rate);
  gc_mutator_t *m = gc_mutator_new();
  assert_non_null(m);
  gc_mutator_unpark(m);
  return m;
}

static void cycle(gc_mutator_t *m) { gc_collect(m); }

typedef struct tally {
  const void *labels;
  uint64_t allocs, frees, alloc_bytes, free_bytes, records;
  uintptr_t first_pc;
} tally_t;

static void count(const gc_memprof_record_t *r, void *arg) {
  tally_t *t = arg;
  if (r->labels != t->labels)
    return;
  t->records++;
  t->allocs += r->alloc_objects;
  t->frees += r->free_objects;
  t->alloc_bytes += r->alloc_bytes;
  t->free_bytes += r->free_bytes;
  if (r->nstack > 0)
    t->first_pc = r->stack[0];
}

static tally_t read_tally(const void *labels) {
  tally_t t = {.labels = labels};
  gc_memprof_read(count, &t);
  return t;
}

static const char L_OFF[] = "off", L_KEEP[] = "keep", L_DROP[] = "drop",
                  L_STAT[] = "stat";

/* Allocates n objects of size bytes; keeps them in roots[] when keep. Its
 * own frame is the first of every sample's stack. */
static __attribute__((noinline)) void alloc_n(gc_mutator_t *m, size_t n,
                                              size_t size, bool keep) {
  for (size_t i = 0; i < n; i++) {
    int err;
    void *p = gc_alloc(m, size, &err);
    assert_non_null(p);
    memset(p, 0, size);
    if (keep)
      roots[i] = p;
  }
}

static void test_off(void **state) {
  (void)state;
  gc_mutator_t *m = mutator(0);
  gc_mutator_set_labels(m, L_OFF);
  alloc_n(m, 2000, 4096, false);
  cycle(m);
  tally_t t = read_tally(L_OFF);
  assert_int_equal(t.records, 0);
  gc_mutator_free(m);
}

static void test_every_allocation(void **state) {
  (void)state;
  gc_mutator_t *m = mutator(1);
  uint64_t sys0 = 0;
  {
    gc_stats_t st;
    gc_read_stats(&st);
    sys0 = st.buckhash_sys;
  }
  gc_mutator_set_labels(m, L_KEEP);
  alloc_n(m, 100, 100, true);   /* class 112 */
  alloc_n(m, 3, 40000, false);  /* large: dies in the first cycle */
  gc_mutator_set_labels(m, L_DROP);
  alloc_n(m, 50, 1000, false);  /* class 1024 */
  gc_mutator_set_labels(m, NULL);
  /* nothing shows before a cycle completes (Go's snapshot rule) */
  assert_int_equal(read_tally(L_KEEP).allocs, 0);
  assert_int_equal(read_tally(L_DROP).allocs, 0);
  cycle(m);
  tally_t k = read_tally(L_KEEP), d = read_tally(L_DROP);
  assert_int_equal(k.allocs, 103);
  assert_int_equal(k.frees, 3);
  assert_int_equal(k.alloc_bytes, 100 * 112 + 3 * 40960);
  assert_int_equal(k.free_bytes, 3 * 40960);
  assert_int_equal(d.allocs, 50);
  assert_int_equal(d.frees, 50);
  assert_int_equal(d.alloc_bytes, 50 * 1024);
  /* the first frame is alloc_n's, the caller of gc_alloc */
  uintptr_t f = (uintptr_t)alloc_n;
  if (k.first_pc < f || k.first_pc > f + 1024)
    fail_msg("first frame %#lx is not in alloc_n (%#lx)",
             (unsigned long)k.first_pc, (unsigned long)f);
  /* the kept ones die once dropped, seen after the next cycle */
  memset(roots, 0, sizeof(roots));
  cycle(m);
  k = read_tally(L_KEEP);
  assert_int_equal(k.allocs, 103);
  assert_int_equal(k.frees, 103);
  gc_stats_t st;
  gc_read_stats(&st);
  assert_true(st.buckhash_sys > sys0);
  gc_mutator_free(m);
}

static void test_rate_odds(void **state) {
  (void)state;
  const int64_t rate = 4096;
  const size_t n = 20000, size = 1024;
  gc_mutator_t *m = mutator(rate);
  gc_mutator_set_labels(m, L_STAT);
  alloc_n(m, n, size, false);
  gc_mutator_set_labels(m, NULL);
  cycle(m);
  tally_t t = read_tally(L_STAT);
  double p = 1 - exp(-(double)size / (double)rate);
  double want = (double)n * p, sd = sqrt((double)n * p * (1 - p));
  printf("# rate %lld: %llu of %zu sampled, expected %.0f +- %.0f\n",
         (long long)rate, (unsigned long long)t.allocs, n, want, sd);
  if (fabs((double)t.allocs - want) > 5 * sd)
    fail_msg("sampled %llu, expected %.0f +- %.0f",
             (unsigned long long)t.allocs, want, sd);
  /* Go's unbiased estimate: count / p is within 7% of n */
  double est = (double)t.allocs / p;
  assert_true(fabs(est - (double)n) < 0.07 * (double)n);
  assert_int_equal(t.frees, t.allocs);
  gc_set_mem_profile_rate(GC_MEMPROF_DEFAULT_RATE);
  gc_mutator_free(m);
}

static int setup(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = (uint64_t)1 << 30,
                     .gc_percent = GC_PERCENT_OFF,
                     .nprocs = 1};
  if (gc_init(&cfg) != 0)
    return -1;
  assert_int_equal(gc_mem_profile_rate(), GC_MEMPROF_DEFAULT_RATE);
  gc_register_roots(GC_ROOTS_STW, scan_roots, NULL);
  return gc_start() == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  gc_stop();
  gc_close();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_off),
      cmocka_unit_test(test_every_allocation),
      cmocka_unit_test(test_rate_odds),
  };
  return cmocka_run_group_tests_name("memprof", tests, setup, teardown);
}
