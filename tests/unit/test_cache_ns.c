/* test_cache_ns.c - cache/: conditional writes (cache_put_if and
 * cache_delete_if: the If-Match / If-None-Match semantics, and their
 * atomicity as compare-and-swap under racing writers), listing
 * (cache_list: prefix, order, cursor, budget; every key exactly once while
 * other threads insert and the tables grow), and namespace deletion
 * (cache_delete_prefix, through the barrier: after a cycle the heap holds
 * exactly what the index holds).
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

#include "cache.h"
#include "gc.h"

static gc_mutator_t *M;
static cache_t *C;

static uint64_t now(void) { return bc_now_mono_ns(); }

/* Stores key -> an 8-byte value v (ETag: xxh64 of it) with mutator m. */
static cache_entry_t *make(gc_mutator_t *m, const char *k, uint64_t v,
                           uint64_t expires) {
  int err;
  cache_entry_t *e =
      cache_entry_new(C, m, k, strlen(k), "", 0, 8, expires, &err);
  if (!e)
    fail_msg("cache_entry_new: %s", bc_strerror(err));
  memcpy(cache_entry_value(e), &v, 8);
  e->etag = bc_xxh64(&v, 8, 0);
  return e;
}

static uint64_t value_of(const cache_entry_t *e) {
  uint64_t v;
  memcpy(&v, cache_entry_value((cache_entry_t *)e), 8);
  return v;
}

static int put_if(const char *k, uint64_t v, const cache_cond_t *cond) {
  bool r;
  return cache_put_if(C, make(M, k, v, 0), cond, now(), &r);
}

static cache_cond_t if_match(uint64_t etag) {
  cache_cond_t c = {0};
  c.if_match = CACHE_COND_LIST;
  c.n_match = 1;
  c.match[0] = etag;
  return c;
}

static void cycle(void) { gc_collect(M); }

static void expect_heap_is_index(const char *where) {
  cache_stats_t cs;
  gc_stats_t *g = malloc(sizeof(*g));
  cache_read_stats(C, &cs);
  gc_read_stats(g);
  if (g->heap_objects != cs.entries || g->alloc != cs.mem)
    fail_msg("%s: heap has %" PRIu64 " objects / %" PRIu64
             " bytes, the index %" PRIu64 " entries / %" PRIu64 " bytes",
             where, g->heap_objects, g->alloc, cs.entries, cs.mem);
  free(g);
}

/* ---- conditions ---------------------------------------------------------------- */

static void test_conditions(void **state) {
  (void)state;
  cache_cond_t absent = {0}, present = {0};
  absent.if_none_match = CACHE_COND_ANY; /* If-None-Match: * */
  present.if_match = CACHE_COND_ANY;     /* If-Match: * */

  assert_int_equal(put_if("c/1", 1, &present), BC_EPRECOND);
  assert_null(cache_get(C, "c/1", 3, now()));
  assert_int_equal(put_if("c/1", 1, &absent), 0); /* create only */
  assert_int_equal(put_if("c/1", 2, &absent), BC_EPRECOND);
  assert_int_equal(value_of(cache_get(C, "c/1", 3, now())), 1);
  assert_int_equal(put_if("c/1", 3, &present), 0);

  uint64_t e3 = bc_xxh64(&(uint64_t){3}, 8, 0);
  cache_cond_t m = if_match(e3), wrong = if_match(e3 ^ 1);
  assert_int_equal(put_if("c/1", 4, &wrong), BC_EPRECOND);
  assert_int_equal(put_if("c/1", 4, &m), 0); /* compare-and-swap */
  assert_int_equal(put_if("c/1", 5, &m), BC_EPRECOND); /* e3 is gone */
  /* a list: any one of them */
  cache_cond_t list = {0};
  list.if_match = CACHE_COND_LIST;
  list.n_match = 3;
  list.match[0] = 7;
  list.match[1] = bc_xxh64(&(uint64_t){4}, 8, 0);
  list.match[2] = 9;
  assert_int_equal(put_if("c/1", 6, &list), 0);
  /* If-None-Match with a list: fails when the current tag is in it */
  cache_cond_t inm = {0};
  inm.if_none_match = CACHE_COND_LIST;
  inm.n_none_match = 1;
  inm.none_match[0] = bc_xxh64(&(uint64_t){6}, 8, 0);
  assert_int_equal(put_if("c/1", 7, &inm), BC_EPRECOND);
  inm.none_match[0] = 12345;
  assert_int_equal(put_if("c/1", 7, &inm), 0);
  /* an empty list (no tag of ours parsed) matches nothing */
  cache_cond_t none = {0};
  none.if_match = CACHE_COND_LIST;
  assert_int_equal(put_if("c/1", 8, &none), BC_EPRECOND);
  assert_int_equal(value_of(cache_get(C, "c/1", 3, now())), 7);

  /* delete */
  uint64_t e7 = bc_xxh64(&(uint64_t){7}, 8, 0);
  cache_cond_t d_wrong = if_match(e7 + 1), d_ok = if_match(e7);
  assert_int_equal(cache_delete_if(C, "c/1", 3, &d_wrong, now()), BC_EPRECOND);
  assert_non_null(cache_get(C, "c/1", 3, now()));
  assert_int_equal(cache_delete_if(C, "c/1", 3, &d_ok, now()), 0);
  assert_null(cache_get(C, "c/1", 3, now()));
  /* absent: 404 whatever the condition (RFC 9110 13.2.1) */
  assert_int_equal(cache_delete_if(C, "c/1", 3, &d_ok, now()), BC_ENOENT);
  assert_int_equal(cache_delete_if(C, "c/1", 3, &absent, now()), BC_ENOENT);

  /* an expired entry is absent for conditions */
  bool r;
  assert_int_equal(
      cache_put_if(C, make(M, "c/ttl", 1, now() + 1), NULL, now(), &r), 0);
  assert_int_equal(put_if("c/ttl", 2, &present), BC_EPRECOND);
  assert_int_equal(put_if("c/ttl", 2, &absent), 0);
  assert_int_equal(value_of(cache_get(C, "c/ttl", 5, now())), 2);
  assert_int_equal(cache_delete(C, "c/ttl", 5, now()), 0);
  cycle();
  expect_heap_is_index("conditions");
}

/* ---- compare-and-swap under racing writers ---------------------------------- */

#define CAS_THREADS 4
#define CAS_TRIES 20000

static _Atomic uint64_t cas_wins, cas_losses;

static void *cas_main(void *arg) {
  (void)arg;
  gc_mutator_t *m = gc_mutator_new();
  gc_mutator_unpark(m);
  for (int i = 0; i < CAS_TRIES; i++) {
    cache_entry_t *cur = cache_get(C, "cas", 3, now());
    uint64_t v = value_of(cur), tag = cur->etag;
    cache_cond_t c = if_match(tag);
    bool r;
    cache_entry_t *n = make(m, "cas", v + 1, 0);
    if (cache_put_if(C, n, &c, now(), &r) == 0)
      atomic_fetch_add(&cas_wins, 1);
    else
      atomic_fetch_add(&cas_losses, 1);
    if (i % 64 == 0) { /* a safepoint now and then */
      gc_mutator_park(m);
      gc_mutator_unpark(m);
    }
  }
  gc_mutator_park(m);
  gc_mutator_free(m);
  return NULL;
}

/* Every writer reads the counter and writes counter+1 under If-Match of
 * what it read: no increment may be lost, so the final counter is exactly
 * the number of successful writes. */
static void test_cas_race(void **state) {
  (void)state;
  bool r;
  cache_put(C, make(M, "cas", 0, 0), &r);
  gc_mutator_park(M); /* let the writers' cycles (none expected) proceed */
  pthread_t t[CAS_THREADS];
  for (int i = 0; i < CAS_THREADS; i++)
    pthread_create(&t[i], NULL, cas_main, NULL);
  for (int i = 0; i < CAS_THREADS; i++)
    pthread_join(t[i], NULL);
  gc_mutator_unpark(M);
  uint64_t v = value_of(cache_get(C, "cas", 3, now()));
  printf("cas: %" PRIu64 " wins, %" PRIu64 " losses, counter %" PRIu64 "\n",
         atomic_load(&cas_wins), atomic_load(&cas_losses), v);
  assert_int_equal(v, atomic_load(&cas_wins));
  assert_int_equal(atomic_load(&cas_wins) + atomic_load(&cas_losses),
                   CAS_THREADS * CAS_TRIES);
  assert_true(atomic_load(&cas_wins) >= CAS_TRIES); /* progress */
  assert_int_equal(cache_delete(C, "cas", 3, now()), 0);
}

/* ---- listing ---------------------------------------------------------------- */

#define NA 20000
#define NB 5000

static void fill_ns(void) {
  bool r;
  char k[32];
  for (unsigned i = 0; i < NA; i++) {
    snprintf(k, sizeof k, "ns/a/%06u", i);
    cache_put(C, make(M, k, i, 0), &r);
  }
  for (unsigned i = 0; i < NB; i++) {
    snprintf(k, sizeof k, "ns/b/%06u", i);
    cache_put(C, make(M, k, i, 0), &r);
  }
}

/* Pages through prefix ns/a/ (page size limit, budget per call) and checks
 * every ns/a/ key < NA was seen exactly once and nothing else but
 * ns/a/new... keys (concurrent inserts) came back, in increasing hash
 * order. Returns the number of calls. */
static unsigned page_all(size_t limit, size_t budget, unsigned *seen_new) {
  static unsigned char seen[NA], seen_newk[200000];
  static cache_entry_t *out[CACHE_LIST_MAX];
  memset(seen, 0, sizeof seen);
  memset(seen_newk, 0, sizeof seen_newk);
  uint64_t cursor = 0, last_hash = 0;
  bool done = false, any = false;
  unsigned calls = 0;
  *seen_new = 0;
  while (!done) {
    uint64_t before = cursor;
    size_t n = cache_list(C, "ns/a/", 5, now(), &cursor, &done, out, limit,
                          budget);
    calls++;
    assert_true(n <= limit);
    if (!done)
      assert_true(cursor > before);
    for (size_t i = 0; i < n; i++) {
      cache_entry_t *e = out[i];
      if (any && e->hash <= last_hash)
        fail_msg("listing out of hash order at call %u", calls);
      any = true;
      last_hash = e->hash;
      assert_true(e->hash >= before);
      char k[32];
      memcpy(k, cache_entry_key(e), e->key_len);
      k[e->key_len] = 0;
      unsigned idx;
      if (sscanf(k, "ns/a/new%u", &idx) == 1) {
        if (idx >= 200000 || seen_newk[idx]++)
          fail_msg("new key %s returned twice", k);
        (*seen_new)++;
        continue;
      }
      if (sscanf(k, "ns/a/%u", &idx) != 1 || idx >= NA)
        fail_msg("listing returned a foreign key %s", k);
      if (seen[idx]++)
        fail_msg("key %s returned twice (limit %zu, budget %zu)", k, limit,
                 budget);
      assert_int_equal(value_of(e), idx);
    }
    gc_mutator_park(M); /* entries are dropped here: a safepoint */
    gc_mutator_unpark(M);
  }
  for (unsigned i = 0; i < NA; i++)
    if (!seen[i])
      fail_msg("key ns/a/%06u never listed (limit %zu, budget %zu)", i,
               limit, budget);
  return calls;
}

static void test_list(void **state) {
  (void)state;
  fill_ns();
  unsigned nn;
  unsigned calls = page_all(1000, (size_t)1 << 20, &nn);
  assert_true(calls >= NA / 1000);
  page_all(333, (size_t)1 << 20, &nn);
  page_all(1, (size_t)1 << 30, &nn) /* a key per call: the cursor works */;
  calls = page_all(1000, 1, &nn); /* a shard per call at most */
  printf("list: budget 1 took %u calls\n", calls);
  assert_true(calls >= 512);
  /* max is capped */
  static cache_entry_t *out[CACHE_LIST_MAX];
  uint64_t cursor = 0;
  bool done;
  assert_int_equal(
      cache_list(C, "ns/", 3, now(), &cursor, &done, out, 5000, (size_t)1 << 30),
      CACHE_LIST_MAX);
  /* no match: done, nothing */
  cursor = 0;
  assert_int_equal(cache_list(C, "zz/", 3, now(), &cursor, &done, out, 10,
                              (size_t)1 << 30),
                   0);
  assert_true(done);
  /* expired entries are not listed */
  bool r;
  cache_put(C, make(M, "ns/x/ttl", 1, now() + 1), &r);
  cursor = 0;
  assert_int_equal(cache_list(C, "ns/x/", 5, now(), &cursor, &done, out, 10,
                              (size_t)1 << 30),
                   0);
}

static _Atomic int writer_stop;

static void *writer_main(void *arg) {
  (void)arg;
  gc_mutator_t *m = gc_mutator_new();
  gc_mutator_unpark(m);
  char k[32];
  bool r;
  for (unsigned i = 0; !atomic_load(&writer_stop) && i < 200000; i++) {
    snprintf(k, sizeof k, "ns/a/new%06u", i);
    cache_put(C, make(m, k, i, 0), &r);
    if (i % 32 == 0) {
      gc_mutator_park(m);
      gc_mutator_unpark(m);
    }
  }
  gc_mutator_park(m);
  gc_mutator_free(m);
  return NULL;
}

/* While another thread inserts (and shards grow, entries shift), a full
 * listing still returns every old key exactly once. */
static void test_list_concurrent_inserts(void **state) {
  (void)state;
  pthread_t w;
  atomic_store(&writer_stop, 0);
  pthread_create(&w, NULL, writer_main, NULL);
  unsigned nn, total_new = 0;
  for (int round = 0; round < 3; round++) {
    page_all(50, (size_t)1 << 20, &nn);
    total_new += nn;
  }
  atomic_store(&writer_stop, 1);
  gc_mutator_park(M);
  pthread_join(w, NULL);
  gc_mutator_unpark(M);
  printf("list: %u concurrently inserted keys seen in 3 listings\n",
         total_new);
}

/* ---- namespaces ---------------------------------------------------------------- */

static void test_delete_prefix(void **state) {
  (void)state;
  cache_stats_t s0;
  cache_read_stats(C, &s0);
  uint64_t n_new = cache_delete_prefix(C, "ns/a/new", 8, now());
  uint64_t n = cache_delete_prefix(C, "ns/a/", 5, now());
  assert_int_equal(n, NA);
  cache_stats_t s1;
  cache_read_stats(C, &s1);
  assert_int_equal(s1.deletes - s0.deletes, NA + n_new);
  static cache_entry_t *out[CACHE_LIST_MAX];
  uint64_t cursor = 0;
  bool done;
  assert_int_equal(cache_list(C, "ns/a/", 5, now(), &cursor, &done, out, 10,
                              (size_t)1 << 30),
                   0);
  assert_null(cache_get(C, "ns/a/000001", 11, now()));
  assert_non_null(cache_get(C, "ns/b/000001", 11, now()));
  /* deleting while the collector marks: the barrier shades what goes */
  assert_int_equal(cache_delete_prefix(C, "ns/", 3, now()), NB);
  cycle();
  cycle();
  expect_heap_is_index("after prefix deletes");
  assert_int_equal(cache_delete_prefix(C, "ns/", 3, now()), 0);
}

static int setup(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = (uint64_t)4 << 30,
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

static int teardown(void **state) {
  (void)state;
  gc_mutator_park(M);
  gc_mutator_free(M);
  gc_stop();
  cache_free(C);
  gc_close();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conditions),
      cmocka_unit_test(test_cas_race),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_list_concurrent_inserts),
      cmocka_unit_test(test_delete_prefix),
  };
  return cmocka_run_group_tests_name("cache_ns", tests, setup, teardown);
}
