/* test_heap_reuse.c - gc/: pages of a freed large object handed out again,
 * as a small-object span or as another large object. A freed span must not
 * carry anything of its previous life: no allocated slot, no finalizer, no
 * poisoned byte inside the new object's usable size.
 *
 * Each test starts from an empty heap (a forced cycle with no roots frees
 * every span and coalesces all free pages into one run), so which pages are
 * reused is determined: the page heap has exactly one free span.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gc.h"

#define KIB ((size_t)1024)

static gc_mutator_t *M;
static void *root;

static void scan_roots(void *arg) {
  (void)arg;
  if (root)
    gc_mark(root);
}

static pthread_mutex_t fin_mu = PTHREAD_MUTEX_INITIALIZER;
static void *fin_log[1024];
static size_t fin_n;

static void fin_hook(void *obj) {
  pthread_mutex_lock(&fin_mu);
  if (fin_n < 1024)
    fin_log[fin_n] = obj;
  fin_n++;
  pthread_mutex_unlock(&fin_mu);
}

static size_t fin_mark; /* calls before the current test */

static size_t fin_calls_for(const void *obj) {
  size_t n = 0;
  pthread_mutex_lock(&fin_mu);
  for (size_t i = fin_mark; i < fin_n && i < 1024; i++)
    n += fin_log[i] == obj;
  pthread_mutex_unlock(&fin_mu);
  return n;
}

static size_t fin_total(void) {
  pthread_mutex_lock(&fin_mu);
  size_t n = fin_n;
  pthread_mutex_unlock(&fin_mu);
  return n;
}

static void cycle(void) {
  gc_collect(M);
  gc_mutator_park(M);
  gc_verify();
  gc_mutator_unpark(M);
}

static gc_stats_t st_buf;
static gc_stats_t *stats(void) {
  gc_read_stats(&st_buf);
  return &st_buf;
}

static int test_setup(void **state) {
  (void)state;
  fin_mark = fin_total();
  return 0;
}

static void expect_empty_heap(const char *where) {
  gc_stats_t *st = stats();
  if (st->heap_objects != 0 || st->alloc != 0 || st->mallocs != st->frees)
    fail_msg("%s: heap should be empty: heap_objects %" PRIu64
             " alloc %" PRIu64 " mallocs %" PRIu64 " frees %" PRIu64,
             where, st->heap_objects, st->alloc, st->mallocs, st->frees);
}

static void *alloc_ok(size_t size) {
  int err = 0;
  void *p = gc_alloc(M, size, &err);
  if (!p)
    fail_msg("gc_alloc(%zu): %s", size, bc_strerror(err));
  return p;
}

static int class_index(size_t size) {
  gc_stats_t *st = stats();
  for (int c = 1; c < st->nclasses; c++)
    if (st->by_size[c].size >= size)
      return c;
  return -1;
}

static int group_setup(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = (uint64_t)1 << 30,
                     .gc_percent = GC_PERCENT_OFF,
                     .nprocs = 1};
  if (gc_init(&cfg) || gc_start())
    return -1;
  gc_register_roots(GC_ROOTS_STW, scan_roots, NULL);
  gc_set_finalizer_hook(fin_hook);
  M = gc_mutator_new();
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

/* A freed large object's pages become a small-object span: every slot of it
 * must be free and none may carry the large object's finalizer. */
static void test_large_pages_become_small_span(void **state) {
  (void)state;
  root = NULL;
  cycle();
  expect_empty_heap("start");
  void *big = alloc_ok(40 * KIB);
  gc_set_finalizer(big);
  cycle();
  assert_int_equal(fin_calls_for(big), 1);
  expect_empty_heap("after the large object died");

  const size_t sz = 256;
  int cls = class_index(sz);
  assert_true(cls > 0);
  gc_stats_t before = *stats();
  size_t fin0 = fin_total();
  enum { N = 64 };
  void *o[N];
  for (int i = 0; i < N; i++) {
    o[i] = alloc_ok(sz);
    memset(o[i], 0xa5, sz);
  }
  print_message("first 256-byte object at %p, the dead large object was at "
                "%p\n",
                o[0], big);
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++)
      assert_ptr_not_equal(o[i], o[j]);
  gc_stats_t *st = stats();
  assert_int_equal(st->mallocs - before.mallocs, N);
  assert_int_equal(st->heap_objects, N);

  cycle(); /* nothing rooted: exactly the N objects die */
  st = stats();
  if (st->frees - before.frees != N ||
      st->by_size[cls].frees - before.by_size[cls].frees != N)
    fail_msg("%d objects allocated and dropped, but the cycle counted %" PRIu64
             " frees (%" PRIu64 " in their class)",
             N, st->frees - before.frees,
             st->by_size[cls].frees - before.by_size[cls].frees);
  if (fin_total() != fin0)
    fail_msg("finalizer ran %zu time(s) for objects that never asked for one "
             "(first on %p; the dead large object was %p)",
             fin_total() - fin0, fin_n > fin0 ? fin_log[fin0] : NULL, big);
  expect_empty_heap("after the small objects died");
  assert_int_equal(fin_calls_for(big), 1);
}

/* A freed large object's pages become another large object, which has no
 * finalizer of its own. */
static void test_large_pages_become_large(void **state) {
  (void)state;
  root = NULL;
  cycle();
  expect_empty_heap("start");
  void *a = alloc_ok(40 * KIB);
  gc_set_finalizer(a);
  cycle();
  assert_int_equal(fin_calls_for(a), 1);
  size_t fin0 = fin_total();
  void *b = alloc_ok(40 * KIB);
  print_message("new large object at %p, the dead one was at %p\n", b, a);
  gc_stats_t before = *stats();
  cycle();
  assert_int_equal(stats()->frees - before.frees, 1);
  if (fin_total() != fin0)
    fail_msg("finalizer ran for %p, which never had one", b);
  expect_empty_heap("end");
}

/* Allocation and sweeping keep the accounting exact when large and small
 * objects take turns on the same pages. */
static void test_alternating_large_small(void **state) {
  (void)state;
  root = NULL;
  cycle();
  expect_empty_heap("start");
  for (int round = 0; round < 20; round++) {
    gc_stats_t before = *stats();
    int n = 0;
    if (round % 2 == 0) {
      for (int i = 0; i < 5; i++, n++)
        alloc_ok(33 * KIB + (size_t)i * 8 * KIB);
    } else {
      for (int i = 0; i < 300; i++, n++)
        alloc_ok(16 + (size_t)(i % 40) * 48);
    }
    cycle();
    gc_stats_t *st = stats();
    if (st->frees - before.frees != (uint64_t)n)
      fail_msg("round %d: %d objects died, %" PRIu64 " frees counted", round,
               n, st->frees - before.frees);
    expect_empty_heap("round");
  }
}

/* gc_usable_size bytes of a large object are usable, also on pages that a
 * previous object used (ASan: no poisoned byte inside the usable size). */
static void test_large_usable_size_on_reused_pages(void **state) {
  (void)state;
  root = NULL;
  cycle();
  void *a = alloc_ok(40 * KIB);
  memset(a, 1, 40 * KIB);
  cycle(); /* a's pages are free (and poisoned under ASan) */
  void *b = alloc_ok(33 * KIB);
  size_t u = gc_usable_size(b);
  assert_true(u >= 33 * KIB);
  memset(b, 2, u);
  for (size_t i = 0; i < u; i += 997)
    assert_int_equal(((unsigned char *)b)[i], 2);
  root = b;
  cycle();
  root = NULL;
  cycle();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_large_pages_become_small_span, test_setup),
      cmocka_unit_test_setup(test_large_pages_become_large, test_setup),
      cmocka_unit_test_setup(test_alternating_large_small, test_setup),
      cmocka_unit_test_setup(test_large_usable_size_on_reused_pages, test_setup),
  };
  return cmocka_run_group_tests_name("heap_reuse", tests, group_setup,
                                     group_teardown);
}
