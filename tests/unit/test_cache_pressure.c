/* test_cache_pressure.c - the cache under the heap's soft memory limit: the
 * collector's pressure hook makes the (single) cache evict before marking,
 * what it evicts is reclaimed by that same cycle, and writing far more than
 * the limit never fails while eviction can make room.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "gc.h"

#define MIB ((uint64_t)1 << 20)

static gc_mutator_t *M;
static cache_t *C;

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void fill(char *p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++)
    p[i] = (char)(mix64(seed + i / 8) >> (8 * (i % 8)));
}

static bool pattern_ok(const char *p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != (char)(mix64(seed + i / 8) >> (8 * (i % 8))))
      return false;
  return true;
}

static size_t vlen_of(unsigned i) {
  return i % 50 == 0 ? 40000 + (size_t)(i % 7) * 1000 /* large objects */
                     : 1000 + (size_t)(mix64(i) % 6000);
}

static int put_key(unsigned i, unsigned ver) {
  char k[32];
  size_t n = (size_t)snprintf(k, sizeof k, "p/%08u", i);
  size_t vl = vlen_of(i);
  int err = 0;
  cache_entry_t *e = cache_entry_new(C, M, k, n, "", 0, vl, 0, &err);
  if (!e)
    return err;
  fill(cache_entry_value(e), vl, mix64(i) ^ ver);
  bool replaced;
  cache_put(C, e, &replaced);
  return 0;
}

/* Every key found is intact; returns how many were found. */
static unsigned check_keys(unsigned n, unsigned ver) {
  unsigned found = 0;
  for (unsigned i = 0; i < n; i++) {
    char k[32];
    size_t kn = (size_t)snprintf(k, sizeof k, "p/%08u", i);
    cache_entry_t *e = cache_get(C, k, kn, bc_now_mono_ns());
    if (!e)
      continue;
    found++;
    assert_int_equal(e->key_len, kn);
    assert_memory_equal(cache_entry_key(e), k, kn);
    assert_int_equal(e->value_len, vlen_of(i));
    if (!pattern_ok(cache_entry_value(e), e->value_len, mix64(i) ^ ver))
      fail_msg("key %u corrupt", i);
  }
  return found;
}

static void cycle(void) {
  gc_collect(M);
  gc_mutator_park(M);
  gc_verify();
  gc_mutator_unpark(M);
}

static void expect_heap_is_index(const char *where) {
  cache_stats_t cs;
  cache_read_stats(C, &cs);
  gc_stats_t g;
  gc_read_stats(&g);
  if (g.heap_objects != cs.entries || g.alloc != cs.mem)
    fail_msg("%s: heap has %" PRIu64 " objects / %" PRIu64
             " bytes, the index %" PRIu64 " entries / %" PRIu64 " bytes",
             where, g.heap_objects, g.alloc, cs.entries, cs.mem);
}

static int group_setup(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = 256 * MIB,
                     .gc_percent = GC_PERCENT_OFF,
                     .nprocs = 1};
  if (gc_init(&cfg))
    return -1;
  C = cache_new(NULL);
  if (!C || gc_start())
    return -1;
  M = gc_mutator_new();
  gc_mutator_unpark(M);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  gc_mutator_free(M);
  gc_stop();
  cache_free(C);
  gc_close();
  return 0;
}

/* Lowering the limit below what the cache holds: the next cycle evicts down
 * to the live budget (three quarters of the limit, less metadata) and
 * reclaims the evicted entries in the same cycle. */
static void test_pressure_on_lower_limit(void **state) {
  (void)state;
  enum { N = 12000 };
  for (unsigned i = 0; i < N; i++)
    assert_int_equal(put_key(i, 1), 0);
  cache_stats_t s0;
  cache_read_stats(C, &s0);
  assert_int_equal(s0.entries, N);
  assert_int_equal(s0.evicted, 0);
  assert_true(s0.mem > 40 * MIB);
  cycle();
  expect_heap_is_index("before lowering the limit");

  uint64_t lim = 32 * MIB;
  gc_set_memory_limit(lim);
  gc_stats_t g0;
  gc_read_stats(&g0);
  cycle();
  cache_stats_t s;
  cache_read_stats(C, &s);
  assert_true(s.evicted > 0);
  assert_int_equal(s.entries, N - s.evicted);
  if (s.mem > lim / 4 * 3)
    fail_msg("after a cycle under a %" PRIu64 " MiB limit the cache holds %" PRIu64
             " bytes, above the live budget",
             lim / MIB, s.mem);
  gc_stats_t g;
  gc_read_stats(&g);
  assert_int_equal(g.frees - g0.frees, s.evicted);
  expect_heap_is_index("after eviction (same cycle)");
  assert_int_equal(check_keys(N, 1), s.entries);
  gc_set_memory_limit(256 * MIB);
}

/* Writing four times the limit: every write succeeds (the collector runs
 * cycles and the cache evicts), the heap stays under the limit. */
static void test_write_past_limit(void **state) {
  (void)state;
  uint64_t lim = 48 * MIB;
  gc_set_memory_limit(lim);
  enum { N = 50000 };
  uint64_t written = 0;
  for (unsigned i = 0; i < N; i++) {
    int rc = put_key(i, 2);
    if (rc)
      fail_msg("write %u (%" PRIu64 " MiB written so far) failed: %s", i,
               written / MIB, bc_strerror(rc));
    written += vlen_of(i);
    if (i % 64 == 0) { /* a safepoint now and then, like a server worker */
      gc_mutator_park(M);
      gc_mutator_unpark(M);
    }
  }
  assert_true(written > 4 * lim);
  gc_stats_t g;
  gc_read_stats(&g);
  assert_true(g.heap_inuse <= lim);
  assert_true(g.num_gc > 0);
  cache_stats_t s;
  cache_read_stats(C, &s);
  assert_true(s.evicted > 0);
  cycle();
  expect_heap_is_index("after writing past the limit");
  unsigned found = check_keys(N, 2);
  cache_read_stats(C, &s);
  assert_int_equal(found, s.entries);
  assert_true(found > 0);
  /* the newest key has not been evicted: SIEVE takes old, unvisited ones */
  char k[32];
  size_t kn = (size_t)snprintf(k, sizeof k, "p/%08u", N - 1);
  assert_non_null(cache_get(C, k, kn, bc_now_mono_ns()));
  gc_set_memory_limit(256 * MIB);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pressure_on_lower_limit),
      cmocka_unit_test(test_write_past_limit),
  };
  return cmocka_run_group_tests_name("cache_pressure", tests, group_setup,
                                     group_teardown);
}
