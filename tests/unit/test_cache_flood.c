/* test_cache_flood.c - hash flooding: keys shaped to collide must not make
 * the index slower. Two attacks, each timed against random keys of the
 * same length and count, inserted into and looked up in one cache:
 *
 *   1. long shared prefixes: 100,000 keys of 408 bytes that differ only in
 *      their last 8 (a weak hash of a prefix, or a comparison that stops at
 *      the first difference, would suffer);
 *   2. fixed-hash collisions: 20,000 keys of 16 bytes chosen so that
 *      FNV-1a 64, a fixed well-known hash, gives all of them the same low
 *      12 bits -- one home slot in any table of up to 4,096 slots. Against
 *      an unkeyed index they would form one probe run; bufcache's SipHash
 *      under a per-process random key scatters them.
 *
 * The figure is CPU nanoseconds of this thread (CLOCK_THREAD_CPUTIME_ID,
 * so other processes on a busy machine do not count) per cache_put and per
 * cache_get, the best of five rounds that alternate the two key sets, each
 * on a fresh cache state; crafted / random must stay under 2 for both
 * operations. The figures are printed.
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

static gc_mutator_t *M;
static cache_t *C;

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  return h;
}

typedef struct keyset {
  char *keys; /* n keys of klen bytes each */
  size_t n, klen;
} keyset_t;

static const char *key_at(const keyset_t *s, size_t i) {
  return s->keys + i * s->klen;
}

static void random_keys(keyset_t *s, size_t n, size_t klen, uint64_t seed) {
  static const char al[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  s->n = n;
  s->klen = klen;
  s->keys = malloc(n * klen);
  for (size_t i = 0; i < n * klen; i++)
    s->keys[i] = al[mix64(seed + i) % (sizeof(al) - 1)];
}

static void prefix_keys(keyset_t *s, size_t n) {
  s->n = n;
  s->klen = 408;
  s->keys = malloc(n * s->klen + 1); /* + the last snprintf's NUL */
  for (size_t i = 0; i < n; i++) {
    char *k = s->keys + i * s->klen;
    memset(k, 'p', 400);
    snprintf(k + 400, 9, "%08zu", i); /* writes a NUL into the next key... */
  }
  for (size_t i = 0; i < n; i++) /* ...which the next key's prefix fixes */
    memset(s->keys + i * s->klen, 'p', 400);
}

/* Keys "c" + 15 characters whose FNV-1a 64 has the low 12 bits 0xabc. */
static void colliding_keys(keyset_t *s, size_t n) {
  s->n = n;
  s->klen = 16;
  s->keys = malloc(n * s->klen);
  uint64_t ctr = 0;
  char k[17];
  for (size_t i = 0; i < n;) {
    snprintf(k, sizeof k, "c%015" PRIu64, ctr++);
    if ((fnv1a(k, 16) & 0xfff) == 0xabc)
      memcpy(s->keys + 16 * i++, k, 16);
  }
}

static uint64_t now(void) { return bc_now_mono_ns(); }
static uint64_t cpu(void) { return bc_thread_cpu_ns(); }

static void put_all(const keyset_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    int err;
    cache_entry_t *e = cache_entry_new(C, M, key_at(s, i), s->klen, "", 0, 8,
                                       0, &err);
    if (!e)
      fail_msg("cache_entry_new: %s", bc_strerror(err));
    memcpy(cache_entry_value(e), &i, 8);
    e->etag = i;
    bool r;
    cache_put(C, e, &r);
    if (r)
      fail_msg("key %zu was already present", i);
  }
}

static void get_all(const keyset_t *s) {
  for (int rep = 0; rep < 2; rep++)
    for (size_t i = 0; i < s->n; i++) {
      cache_entry_t *e = cache_get(C, key_at(s, i), s->klen, now());
      if (!e || e->etag != i)
        fail_msg("key %zu: lookup failed", i);
    }
}

static void clear(void) {
  cache_delete_prefix(C, "", 0, now());
  gc_collect(M);
}

/* One round: CPU ns per put and per get, folded into the minima. */
static void time_round(const keyset_t *s, double *put_ns, double *get_ns) {
  clear();
  uint64_t t0 = cpu();
  put_all(s);
  uint64_t t1 = cpu();
  get_all(s);
  uint64_t t2 = cpu();
  double p = (double)(t1 - t0) / (double)s->n;
  double g = (double)(t2 - t1) / (double)(2 * s->n);
  if (p < *put_ns)
    *put_ns = p;
  if (g < *get_ns)
    *get_ns = g;
}

/* Returns whether crafted keys stay within 2x of random ones. */
static bool compare(const char *what, const keyset_t *crafted,
                    const keyset_t *random) {
  double cp = 1e30, cg = 1e30, rp = 1e30, rg = 1e30;
  for (int round = 0; round < 5; round++) { /* alternate the two sets */
    time_round(random, &rp, &rg);
    time_round(crafted, &cp, &cg);
  }
  clear();
  printf("flood: %-34s put %7.1f ns (random %7.1f, x%.2f)  get %7.1f ns "
         "(random %7.1f, x%.2f)\n",
         what, cp, rp, cp / rp, cg, rg, cg / rg);
  fflush(stdout);
  return cp / rp < 2 && cg / rg < 2;
}

static void test_long_shared_prefix(void **state) {
  (void)state;
  keyset_t crafted, random;
  prefix_keys(&crafted, 100000);
  random_keys(&random, 100000, 408, 1);
  bool ok = compare("100k keys, 400-byte shared prefix", &crafted, &random);
  free(crafted.keys);
  free(random.keys);
  assert_true(ok); /* crafted / random < 2 for put and get */
}

static void test_fixed_hash_collisions(void **state) {
  (void)state;
  keyset_t crafted, random;
  colliding_keys(&crafted, 20000);
  /* they do collide under the fixed hash */
  for (size_t i = 0; i < crafted.n; i++)
    assert_int_equal(fnv1a(key_at(&crafted, i), 16) & 0xfff, 0xabc);
  random_keys(&random, 20000, 16, 2);
  bool ok = compare("20k keys, one FNV-1a home slot", &crafted, &random);
  free(crafted.keys);
  free(random.keys);
  assert_true(ok); /* crafted / random < 2 for put and get */
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
      cmocka_unit_test(test_long_shared_prefix),
      cmocka_unit_test(test_fixed_hash_collisions),
  };
  return cmocka_run_group_tests_name("cache_flood", tests, setup, teardown);
}
