/* test_cache.c - cache/: entries, insert/replace/delete/lookup across
 * shards, table growth, key shapes, TTL (on lookup and reaped by the
 * collector), SIEVE eviction, aux finalization, the index as the
 * collector's root (entries in it survive intact, the ones that left it are
 * reclaimed, exactly).
 *
 * Every value is a pattern derived from its key and a version number, so a
 * lookup can tell a right entry from a stale, foreign or corrupted one.
 * The only roots in this process are the caches' indexes, so after a forced
 * cycle the heap must hold exactly the indexed entries.
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

#include "cache.h"
#include "gc.h"

#define CTYPE "application/x-test"
#define CTLEN (sizeof(CTYPE) - 1)

static gc_mutator_t *M;
static cache_t *C;  /* default shards */
static cache_t *C1; /* one shard: long probe chains, wrap-around */
static bool closed;

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rng = 0x1234567;
static uint64_t rnd(void) { return mix64(rng += 0x9e3779b97f4a7c15ull); }

static uint64_t key_seed(const char *k, size_t n, uint64_t ver) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
  return mix64(h ^ ver);
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

static cache_entry_t *put_ttl(cache_t *c, const char *k, size_t klen,
                              size_t vlen, uint64_t ver, uint64_t expires,
                              bool *replaced) {
  int err = 0;
  cache_entry_t *e =
      cache_entry_new(c, M, k, klen, CTYPE, CTLEN, vlen, expires, &err);
  if (!e)
    fail_msg("cache_entry_new(%zu-byte key, %zu-byte value): %s", klen, vlen,
             bc_strerror(err));
  fill(cache_entry_value(e), vlen, key_seed(k, klen, ver));
  e->etag = bc_xxh64(cache_entry_value(e), vlen, 0);
  bool r = false;
  cache_put(c, e, &r);
  *replaced = r;
  return e;
}

static cache_entry_t *put(cache_t *c, const char *k, size_t klen, size_t vlen,
                          uint64_t ver, bool *replaced) {
  return put_ttl(c, k, klen, vlen, ver, 0, replaced);
}

/* e is the entry for key k, version ver, value length vlen. */
static void expect_entry(cache_t *c, cache_entry_t *e, const char *k,
                         size_t klen, size_t vlen, uint64_t ver) {
  assert_non_null(e);
  assert_int_equal(e->key_len, klen);
  assert_memory_equal(cache_entry_key(e), k, klen);
  assert_int_equal(e->ctype_len, CTLEN);
  assert_memory_equal(cache_entry_ctype(e), CTYPE, CTLEN);
  assert_int_equal(cache_entry_ctype(e)[CTLEN], '\0');
  assert_int_equal(e->value_len, vlen);
  assert_int_equal(e->hash, cache_hash(c, k, klen));
  if (!pattern_ok(cache_entry_value(e), vlen, key_seed(k, klen, ver)))
    fail_msg("value of key \"%.*s\" (version %" PRIu64 ") is corrupt",
             (int)(klen > 60 ? 60 : klen), k, ver);
  assert_int_equal(e->etag, bc_xxh64(cache_entry_value(e), vlen, 0));
}

static uint64_t now(void) { return bc_now_mono_ns(); }

static cache_stats_t cstats(cache_t *c) {
  cache_stats_t st;
  cache_read_stats(c, &st);
  return st;
}

static gc_stats_t gstats(void) {
  static gc_stats_t st;
  gc_read_stats(&st);
  return st;
}

static void cycle(void) {
  gc_collect(M);
  gc_mutator_park(M);
  gc_verify();
  gc_mutator_unpark(M);
}

/* After a cycle the heap holds the indexed entries and nothing else. */
static void expect_heap_is_index(const char *where) {
  cache_stats_t a = cstats(C), b = cstats(C1);
  gc_stats_t g = gstats();
  if (g.heap_objects != a.entries + b.entries || g.alloc != a.mem + b.mem)
    fail_msg("%s: heap has %" PRIu64 " objects / %" PRIu64
             " bytes, the indexes %" PRIu64 " entries / %" PRIu64 " bytes",
             where, g.heap_objects, g.alloc, a.entries + b.entries,
             a.mem + b.mem);
}

static size_t keyf(char *buf, const char *prefix, unsigned i) {
  return (size_t)snprintf(buf, 64, "%s/%06u", prefix, i);
}

/* ---- setup --------------------------------------------------------------------- */

static int group_setup(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = (uint64_t)4 << 30,
                     .gc_percent = GC_PERCENT_OFF,
                     .nprocs = 1};
  if (gc_init(&cfg))
    return -1;
  C = cache_new(NULL);
  cache_config_t one = {.shards = 1};
  C1 = cache_new(&one);
  if (!C || !C1 || gc_start())
    return -1;
  M = gc_mutator_new();
  gc_mutator_unpark(M);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  if (!closed) {
    gc_mutator_free(M);
    gc_stop();
    cache_free(C);
    cache_free(C1);
    gc_close();
  }
  return 0;
}

/* Before each test: a cycle, so garbage a failed test left behind does not
 * show up in the next test's counts. */
static int test_setup(void **state) {
  (void)state;
  cycle();
  return 0;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_entry_new(void **state) {
  (void)state;
  int err = 0;
  char key[CACHE_MAX_KEY + 1];
  memset(key, 'k', sizeof key);
  char ct[CACHE_MAX_CTYPE + 1];
  memset(ct, 't', sizeof ct);
  assert_null(cache_entry_new(C, M, key, 0, CTYPE, CTLEN, 10, 0, &err));
  assert_int_equal(err, BC_EINVAL);
  err = 0;
  assert_null(cache_entry_new(C, M, key, CACHE_MAX_KEY + 1, CTYPE, CTLEN, 10,
                              0, &err));
  assert_int_equal(err, BC_EINVAL);
  err = 0;
  assert_null(cache_entry_new(C, M, key, 5, ct, CACHE_MAX_CTYPE + 1, 10, 0,
                              &err));
  assert_int_equal(err, BC_EINVAL);

  cache_entry_t *e = cache_entry_new(C, M, key, CACHE_MAX_KEY, ct,
                                     CACHE_MAX_CTYPE, 1000, 77, &err);
  assert_non_null(e);
  assert_int_equal(e->key_len, CACHE_MAX_KEY);
  assert_int_equal(e->ctype_len, CACHE_MAX_CTYPE);
  assert_int_equal(e->value_len, 1000);
  assert_int_equal(e->expires_ns, 77);
  assert_null(atomic_load(&e->aux));
  assert_memory_equal(cache_entry_key(e), key, CACHE_MAX_KEY);
  assert_memory_equal(cache_entry_ctype(e), ct, CACHE_MAX_CTYPE);
  assert_ptr_equal(cache_entry_value(e),
                   e->data + CACHE_MAX_KEY + CACHE_MAX_CTYPE + 1);
  assert_true(gc_usable_size(e) >=
              cache_entry_size(CACHE_MAX_KEY, CACHE_MAX_CTYPE, 1000));
  memset(cache_entry_value(e), 0x77, 1000); /* the whole value is writable */
  assert_int_equal(e->hash, cache_hash(C, key, CACHE_MAX_KEY));

  /* an empty content type and an empty value are fine */
  e = cache_entry_new(C, M, "x", 1, "", 0, 0, 0, &err);
  assert_non_null(e);
  assert_int_equal(e->ctype_len, 0);
  assert_int_equal(e->value_len, 0);
  assert_int_equal(cache_entry_ctype(e)[0], '\0');

  /* the hash is keyed per cache, and a function of the key bytes */
  assert_int_equal(cache_hash(C, "abc", 3), cache_hash(C, "abc", 3));
  assert_int_not_equal(cache_hash(C, "abc", 3), cache_hash(C1, "abc", 3));
  assert_int_not_equal(cache_hash(C, "abc", 3), cache_hash(C, "abd", 3));
  assert_int_not_equal(cache_hash(C, "abc", 3), cache_hash(C, "abc", 2));
  cycle(); /* the unpublished entries are garbage */
  expect_heap_is_index("unpublished entries");
}

static void test_put_get_replace_delete(void **state) {
  (void)state;
  cache_stats_t s0 = cstats(C);
  bool replaced;
  cache_entry_t *e1 = put(C, "alpha", 5, 100, 1, &replaced);
  assert_false(replaced);
  cache_entry_t *g = cache_get(C, "alpha", 5, now());
  assert_ptr_equal(g, e1);
  expect_entry(C, g, "alpha", 5, 100, 1);
  assert_null(cache_get(C, "alph", 4, now()));
  assert_null(cache_get(C, "alphaa", 6, now()));
  assert_null(cache_get(C, "ALPHA", 5, now()));

  cache_entry_t *e2 = put(C, "alpha", 5, 3000, 2, &replaced);
  assert_true(replaced);
  g = cache_get(C, "alpha", 5, now());
  assert_ptr_equal(g, e2);
  expect_entry(C, g, "alpha", 5, 3000, 2);

  cache_stats_t s = cstats(C);
  assert_int_equal(s.inserts - s0.inserts, 1);
  assert_int_equal(s.replaces - s0.replaces, 1);
  assert_int_equal(s.entries - s0.entries, 1);
  assert_int_equal(s.bytes - s0.bytes, 3000);
  assert_int_equal(s.mem - s0.mem, gc_usable_size(e2));
  assert_int_equal(s.hits - s0.hits, 2);
  assert_int_equal(s.misses - s0.misses, 3);

  assert_int_equal(cache_delete(C, "alpha", 5, now()), 0);
  assert_null(cache_get(C, "alpha", 5, now()));
  assert_int_equal(cache_delete(C, "alpha", 5, now()), BC_ENOENT);
  assert_int_equal(cache_delete(C, "never", 5, now()), BC_ENOENT);
  s = cstats(C);
  assert_int_equal(s.deletes - s0.deletes, 1);
  assert_int_equal(s.entries, s0.entries);
  assert_int_equal(s.bytes, s0.bytes);
  assert_int_equal(s.mem, s0.mem);
  assert_int_equal(s.misses - s0.misses, 4);

  /* after a delete the key is new again */
  put(C, "alpha", 5, 1, 3, &replaced);
  assert_false(replaced);
  assert_int_equal(cache_delete(C, "alpha", 5, now()), 0);
  gc_stats_t g0 = gstats();
  cycle(); /* e1, e2 and the third version are all unreachable */
  assert_int_equal(gstats().frees - g0.frees, 3);
  expect_heap_is_index("after delete");
}

#define NKEYS 100000
static uint32_t ver[NKEYS]; /* 0 = absent */
static uint32_t vlen[NKEYS];

static void test_many_keys(void **state) {
  (void)state;
  char k[64];
  cache_stats_t s0 = cstats(C);
  size_t bytes = 0;
  bool replaced;
  for (unsigned i = 0; i < NKEYS; i++) {
    size_t n = keyf(k, "many", i);
    vlen[i] = (uint32_t)(rnd() % 400);
    ver[i] = 1;
    put(C, k, n, vlen[i], 1, &replaced);
    assert_false(replaced);
    bytes += vlen[i];
  }
  cache_stats_t s = cstats(C);
  assert_int_equal(s.inserts - s0.inserts, NKEYS);
  assert_int_equal(s.entries - s0.entries, NKEYS);
  assert_int_equal(s.bytes - s0.bytes, bytes);
  /* the slot tables grew: 100k keys do not fit in 16 slots per shard */
  assert_true(s.index_bytes > s0.index_bytes);

  uint64_t nrep = 0, ndel = 0;
  for (unsigned i = 0; i < NKEYS; i++) {
    size_t n = keyf(k, "many", i);
    if (i % 3 == 0) {
      vlen[i] = (uint32_t)(rnd() % 2000);
      put(C, k, n, vlen[i], ++ver[i], &replaced);
      assert_true(replaced);
      nrep++;
    }
    if (i % 5 == 1) {
      assert_int_equal(cache_delete(C, k, n, now()), 0);
      ver[i] = 0;
      ndel++;
    }
  }
  s = cstats(C);
  assert_int_equal(s.replaces - s0.replaces, nrep);
  assert_int_equal(s.deletes - s0.deletes, ndel);
  assert_int_equal(s.entries - s0.entries, NKEYS - ndel);

  uint64_t mem = 0;
  for (unsigned i = 0; i < NKEYS; i++) {
    size_t n = keyf(k, "many", i);
    cache_entry_t *e = cache_get(C, k, n, now());
    if (!ver[i]) {
      assert_null(e);
      continue;
    }
    expect_entry(C, e, k, n, vlen[i], ver[i]);
    mem += gc_usable_size(e);
  }
  s = cstats(C);
  assert_int_equal(s.mem - s0.mem, mem);

  /* the index is the root: a cycle reclaims exactly what left it */
  gc_stats_t g0 = gstats();
  cycle();
  gc_stats_t g = gstats();
  if (g.frees - g0.frees != nrep + ndel)
    fail_msg("cycle freed %" PRIu64 " objects; %" PRIu64
             " entries were replaced or deleted",
             g.frees - g0.frees, nrep + ndel);
  expect_heap_is_index("100k keys");
  for (unsigned i = 0; i < NKEYS; i++) {
    size_t n = keyf(k, "many", i);
    cache_entry_t *e = cache_get(C, k, n, now());
    if (ver[i])
      expect_entry(C, e, k, n, vlen[i], ver[i]);
    else
      assert_null(e);
  }
  /* new entries after the cycle do not land on live ones */
  for (unsigned i = 0; i < NKEYS; i += 7) {
    size_t n = keyf(k, "many", i);
    bool existed = ver[i] != 0;
    vlen[i] = (uint32_t)(rnd() % 500);
    put(C, k, n, vlen[i], ++ver[i], &replaced);
    assert_int_equal(replaced, existed);
  }
  for (unsigned i = 0; i < NKEYS; i++) {
    size_t n = keyf(k, "many", i);
    cache_entry_t *e = cache_get(C, k, n, now());
    if (ver[i])
      expect_entry(C, e, k, n, vlen[i], ver[i]);
    else
      assert_null(e);
  }
  /* empty the cache again */
  for (unsigned i = 0; i < NKEYS; i++) {
    size_t n = keyf(k, "many", i);
    assert_int_equal(cache_delete(C, k, n, now()), ver[i] ? 0 : BC_ENOENT);
    ver[i] = 0;
  }
  assert_int_equal(cstats(C).entries, s0.entries);
  assert_int_equal(cstats(C).bytes, s0.bytes);
  assert_int_equal(cstats(C).mem, s0.mem);
  cycle();
  expect_heap_is_index("100k keys deleted");
}

/* Random operations on a single shard against a reference model: long probe
 * runs, wrap-around at the end of the table, backward-shift deletion. */
static void test_single_shard_model(void **state) {
  (void)state;
  enum { K = 3000, OPS = 200000 };
  static uint32_t mver[K], mlen[K];
  memset(mver, 0, sizeof mver);
  char k[64];
  bool replaced;
  uint64_t ins = 0, rep = 0, del = 0, live = 0;
  cache_stats_t s0 = cstats(C1);
  for (int op = 0; op < OPS; op++) {
    unsigned i = (unsigned)(rnd() % K);
    size_t n = keyf(k, "model", i);
    unsigned r = (unsigned)(rnd() % 10);
    if (r < 4) {
      uint32_t len = (uint32_t)(rnd() % 64);
      put(C1, k, n, len, ++mver[i] + 1000000u * (uint32_t)op, &replaced);
      mver[i] += 1000000u * (uint32_t)op;
      assert_int_equal(replaced, mlen[i] != 0);
      if (replaced)
        rep++;
      else
        ins++, live++;
      mlen[i] = len + 1; /* +1: 0 means absent */
    } else if (r < 7) {
      int rc = cache_delete(C1, k, n, now());
      assert_int_equal(rc, mlen[i] ? 0 : BC_ENOENT);
      if (mlen[i])
        del++, live--;
      mlen[i] = 0;
    } else {
      cache_entry_t *e = cache_get(C1, k, n, now());
      if (mlen[i])
        expect_entry(C1, e, k, n, mlen[i] - 1, mver[i]);
      else
        assert_null(e);
    }
    if (op % 50000 == 49999)
      cycle();
  }
  cache_stats_t s = cstats(C1);
  assert_int_equal(s.inserts - s0.inserts, ins);
  assert_int_equal(s.replaces - s0.replaces, rep);
  assert_int_equal(s.deletes - s0.deletes, del);
  assert_int_equal(s.entries - s0.entries, live);
  cycle();
  expect_heap_is_index("single shard");
  for (unsigned i = 0; i < K; i++) {
    size_t n = keyf(k, "model", i);
    cache_entry_t *e = cache_get(C1, k, n, now());
    if (mlen[i]) {
      expect_entry(C1, e, k, n, mlen[i] - 1, mver[i]);
      assert_int_equal(cache_delete(C1, k, n, now()), 0);
    } else {
      assert_null(e);
    }
  }
  assert_int_equal(cstats(C1).entries, s0.entries);
}

/* Keys that share long prefixes, are prefixes of each other, differ in one
 * byte, or hold arbitrary bytes (NUL included): the index compares lengths
 * and bytes, never C strings. */
static void test_key_shapes(void **state) {
  (void)state;
  cache_t *caches[2] = {C, C1};
  for (int ci = 0; ci < 2; ci++) {
    cache_t *c = caches[ci];
    cache_stats_t s0 = cstats(c);
    static char keys[2000][CACHE_MAX_KEY];
    static size_t klen[2000];
    size_t nk = 0;
    /* 1..512 'a's */
    for (size_t n = 1; n <= CACHE_MAX_KEY; n++) {
      memset(keys[nk], 'a', n);
      klen[nk++] = n;
    }
    /* 512-byte keys with a 500-byte common prefix */
    for (int i = 0; i < 500; i++) {
      memset(keys[nk], 'p', 500);
      snprintf(keys[nk] + 500, 13, "%012d", i);
      klen[nk++] = CACHE_MAX_KEY;
    }
    /* keys that differ only in their last byte, any byte value */
    for (int b = 0; b < 256; b++) {
      memcpy(keys[nk], "last-byte-", 10);
      keys[nk][10] = (char)b;
      klen[nk++] = 11;
    }
    /* NUL bytes inside keys */
    for (int i = 0; i < 200; i++) {
      memset(keys[nk], 0, 8);
      keys[nk][i % 8] = (char)(1 + i / 8);
      klen[nk++] = 8;
    }
    bool replaced;
    for (size_t i = 0; i < nk; i++) {
      put(c, keys[i], klen[i], i % 100, i, &replaced);
      if (replaced)
        fail_msg("key %zu (length %zu) replaced another key", i, klen[i]);
    }
    for (size_t i = 0; i < nk; i++)
      expect_entry(c, cache_get(c, keys[i], klen[i], now()), keys[i], klen[i],
                   i % 100, i);
    /* delete every other one; the rest are still found */
    for (size_t i = 0; i < nk; i += 2)
      assert_int_equal(cache_delete(c, keys[i], klen[i], now()), 0);
    for (size_t i = 0; i < nk; i++) {
      cache_entry_t *e = cache_get(c, keys[i], klen[i], now());
      if (i % 2 == 0)
        assert_null(e);
      else
        expect_entry(c, e, keys[i], klen[i], i % 100, i);
    }
    for (size_t i = 1; i < nk; i += 2)
      assert_int_equal(cache_delete(c, keys[i], klen[i], now()), 0);
    assert_int_equal(cstats(c).entries, s0.entries);
  }
  cycle();
  expect_heap_is_index("key shapes");
}

static void test_ttl_on_lookup(void **state) {
  (void)state;
  cache_stats_t s0 = cstats(C);
  bool replaced;
  uint64_t t = now();
  put_ttl(C, "ttl-a", 5, 10, 1, t + 1000000000000ull, &replaced); /* +1000s */
  put_ttl(C, "ttl-b", 5, 10, 1, t - 1, &replaced);                /* past */
  put_ttl(C, "ttl-c", 5, 10, 1, 5000, &replaced); /* deadline at t=5000 */
  put(C, "ttl-d", 5, 10, 1, &replaced);           /* never expires */
  /* before its deadline an entry is found; at or after, it is a miss */
  expect_entry(C, cache_get(C, "ttl-c", 5, 4999), "ttl-c", 5, 10, 1);
  assert_null(cache_get(C, "ttl-c", 5, 5000));
  assert_null(cache_get(C, "ttl-c", 5, 4999)); /* and it is gone for good */
  assert_null(cache_get(C, "ttl-b", 5, now()));
  expect_entry(C, cache_get(C, "ttl-a", 5, now()), "ttl-a", 5, 10, 1);
  expect_entry(C, cache_get(C, "ttl-d", 5, UINT64_MAX), "ttl-d", 5, 10, 1);
  cache_stats_t s = cstats(C);
  assert_int_equal(s.expired - s0.expired, 2);
  assert_int_equal(s.entries - s0.entries, 2);
  assert_int_equal(s.bytes - s0.bytes, 20);
  /* deleting an expired entry: not found, counted as expired */
  put_ttl(C, "ttl-e", 5, 10, 1, 100, &replaced);
  assert_int_equal(cache_delete(C, "ttl-e", 5, 200), BC_ENOENT);
  s = cstats(C);
  assert_int_equal(s.expired - s0.expired, 3);
  assert_int_equal(s.deletes, s0.deletes);
  assert_int_equal(s.entries - s0.entries, 2);
  /* a TTL'd key can be written again */
  put_ttl(C, "ttl-b", 5, 7, 2, 0, &replaced);
  assert_false(replaced);
  expect_entry(C, cache_get(C, "ttl-b", 5, now()), "ttl-b", 5, 7, 2);
  assert_int_equal(cache_delete(C, "ttl-a", 5, now()), 0);
  assert_int_equal(cache_delete(C, "ttl-b", 5, now()), 0);
  assert_int_equal(cache_delete(C, "ttl-d", 5, now()), 0);
  cycle();
  expect_heap_is_index("ttl");
}

/* A key whose value has expired is absent (a lookup misses), so writing it
 * again is an insert, not a replacement (the API answers 201, not 204), and
 * the expired value is counted as expired. */
static void test_put_over_expired(void **state) {
  (void)state;
  cache_stats_t s0 = cstats(C);
  bool replaced1, replaced2;
  put_ttl(C, "exp-put", 7, 10, 1, now() - 1, &replaced1);
  put(C, "exp-put", 7, 20, 2, &replaced2);
  expect_entry(C, cache_get(C, "exp-put", 7, now()), "exp-put", 7, 20, 2);
  cache_stats_t s = cstats(C);
  assert_int_equal(cache_delete(C, "exp-put", 7, now()), 0);
  cycle();
  expect_heap_is_index("put over expired");
  assert_false(replaced1);
  assert_false(replaced2);
  assert_int_equal(s.inserts - s0.inserts, 2);
  assert_int_equal(s.replaces - s0.replaces, 0);
  assert_int_equal(s.expired - s0.expired, 1);
  assert_int_equal(s.entries - s0.entries, 1);
}

static void test_ttl_reaped_by_cycle(void **state) {
  (void)state;
  enum { N = 5000 };
  char k[64];
  bool replaced;
  cache_stats_t s0 = cstats(C), s10 = cstats(C1);
  uint64_t t = now();
  for (unsigned i = 0; i < N; i++) {
    size_t n = keyf(k, "reap", i);
    uint64_t exp = i % 2 ? t - 1 : t + 3600000000000ull; /* odd: expired */
    put_ttl(i % 4 < 2 ? C : C1, k, n, 50, 1, exp, &replaced);
  }
  cache_stats_t s = cstats(C), s1 = cstats(C1);
  assert_int_equal(s.entries - s0.entries + s1.entries - s10.entries, N);
  gc_stats_t g0 = gstats();
  cycle(); /* no lookups: the scanner reaps */
  s = cstats(C);
  s1 = cstats(C1);
  assert_int_equal(s.expired - s0.expired + s1.expired - s10.expired, N / 2);
  assert_int_equal(s.entries - s0.entries + s1.entries - s10.entries, N / 2);
  assert_int_equal(s.misses, s0.misses);
  assert_int_equal(gstats().frees - g0.frees, N / 2);
  expect_heap_is_index("reaped");
  for (unsigned i = 0; i < N; i++) {
    size_t n = keyf(k, "reap", i);
    cache_t *c = i % 4 < 2 ? C : C1;
    cache_entry_t *e = cache_get(c, k, n, now());
    if (i % 2)
      assert_null(e);
    else
      expect_entry(c, e, k, n, 50, 1);
  }
  /* the reaped ones were not counted twice by the lookups */
  assert_int_equal(cstats(C).expired + cstats(C1).expired,
                   s0.expired + s10.expired + N / 2);
  for (unsigned i = 0; i < N; i += 2) {
    size_t n = keyf(k, "reap", i);
    assert_int_equal(cache_delete(i % 4 < 2 ? C : C1, k, n, now()), 0);
  }
  cycle();
  expect_heap_is_index("reaped, rest deleted");
}

static void test_eviction_sieve(void **state) {
  (void)state;
  cache_stats_t s0 = cstats(C1);
  assert_int_equal(s0.entries, 0);
  char k[64];
  bool replaced;
  uint64_t each = 0;
  for (unsigned i = 0; i < 10; i++) {
    size_t n = keyf(k, "sieve", i);
    cache_entry_t *e = put(C1, k, n, 1000, 1, &replaced);
    each = gc_usable_size(e);
  }
  assert_int_equal(cstats(C1).mem, 10 * each);
  /* read the five oldest: they have been used since they were inserted */
  for (unsigned i = 0; i < 5; i++) {
    size_t n = keyf(k, "sieve", i);
    assert_non_null(cache_get(C1, k, n, now()));
  }
  assert_int_equal(cache_evict(C1, 100 * each), 0); /* under budget */
  uint64_t went = cache_evict(C1, 5 * each);
  assert_int_equal(went, 5);
  cache_stats_t s = cstats(C1);
  assert_int_equal(s.evicted - s0.evicted, 5);
  assert_int_equal(s.entries, 5);
  assert_true(s.mem <= 5 * each);
  /* SIEVE keeps the visited ones and evicts the unvisited */
  for (unsigned i = 0; i < 10; i++) {
    size_t n = keyf(k, "sieve", i);
    cache_entry_t *e = cache_get(C1, k, n, now());
    if (i < 5)
      expect_entry(C1, e, k, n, 1000, 1);
    else
      assert_null(e);
  }
  gc_stats_t g0 = gstats();
  cycle();
  assert_int_equal(gstats().frees - g0.frees, 5);
  expect_heap_is_index("after eviction");
  /* evicting down to nothing */
  assert_int_equal(cache_evict(C1, 0), 5);
  assert_int_equal(cstats(C1).entries, 0);
  assert_int_equal(cstats(C1).mem, 0);

  /* on many shards the budget holds for the total */
  cache_stats_t c0 = cstats(C);
  for (unsigned i = 0; i < 20000; i++) {
    size_t n = keyf(k, "evict-many", i);
    put(C, k, n, 100 + (size_t)(rnd() % 900), 1, &replaced);
  }
  uint64_t mem = cstats(C).mem - c0.mem;
  uint64_t budget = c0.mem + mem / 2;
  went = cache_evict(C, budget);
  cache_stats_t c = cstats(C);
  assert_true(went > 0);
  assert_int_equal(c.evicted - c0.evicted, went);
  assert_true(c.mem <= budget);
  unsigned found = 0;
  for (unsigned i = 0; i < 20000; i++) {
    size_t n = keyf(k, "evict-many", i);
    cache_entry_t *e = cache_get(C, k, n, now());
    if (e) {
      found++;
      expect_entry(C, e, k, n, e->value_len, 1);
      assert_int_equal(cache_delete(C, k, n, now()), 0);
    }
  }
  assert_int_equal(found, 20000 - went);
  cycle();
  expect_heap_is_index("after eviction on many shards");
}

/* ---- aux values --------------------------------------------------------------------- */

static pthread_mutex_t aux_mu = PTHREAD_MUTEX_INITIALIZER;
static void *aux_log[64];
static int aux_n;

static void aux_free(void *aux) {
  pthread_mutex_lock(&aux_mu);
  if (aux_n < 64)
    aux_log[aux_n] = aux;
  aux_n++;
  pthread_mutex_unlock(&aux_mu);
}

static int aux_calls(void *v) {
  int n = 0;
  pthread_mutex_lock(&aux_mu);
  for (int i = 0; i < aux_n && i < 64; i++)
    n += aux_log[i] == v;
  pthread_mutex_unlock(&aux_mu);
  return n;
}

static void aux_scenario(cache_t *c) {
  static char tokens[8];
  void *v = &tokens[0], *w = &tokens[1], *x = &tokens[2];
  bool replaced;
  cache_set_aux_free(c, aux_free);
  cache_entry_t *e = put(c, "aux-1", 5, 10, 1, &replaced);
  assert_ptr_equal(cache_entry_set_aux(e, v), v);
  assert_ptr_equal(cache_entry_set_aux(e, w), v); /* the first one stays */
  cache_entry_t *f = put(c, "aux-2", 5, 10, 1, &replaced);
  assert_ptr_equal(cache_entry_set_aux(f, x), x);
  cycle();
  cycle();
  assert_int_equal(aux_calls(v), 0); /* indexed: alive */
  assert_int_equal(aux_calls(x), 0);
  assert_int_equal(cache_delete(c, "aux-1", 5, now()), 0);
  put(c, "aux-2", 5, 10, 2, &replaced); /* replaces f */
  assert_true(replaced);
  cycle();
  assert_int_equal(aux_calls(v), 1);
  assert_int_equal(aux_calls(w), 0);
  assert_int_equal(aux_calls(x), 1);
  cycle();
  assert_int_equal(aux_calls(v), 1);
  assert_int_equal(aux_calls(x), 1);
  assert_int_equal(cache_delete(c, "aux-2", 5, now()), 0);
  cycle();
  expect_heap_is_index("aux");
}

static void test_aux_free_last_cache(void **state) {
  (void)state;
  aux_n = 0;
  aux_scenario(C1); /* the cache created last */
}

static _Atomic int other_calls;
static void aux_free_other(void *aux) {
  (void)aux;
  atomic_fetch_add(&other_calls, 1);
}

/* Each cache's callback gets its own entries' aux values, whichever cache
 * was created last. */
static void test_aux_free_first_cache(void **state) {
  (void)state;
  aux_n = 0;
  cache_set_aux_free(C1, aux_free_other);
  aux_scenario(C); /* created first, while another cache exists */
  assert_int_equal(atomic_load(&other_calls), 0);
  cache_set_aux_free(C1, NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_entry_new, test_setup),
      cmocka_unit_test_setup(test_put_get_replace_delete, test_setup),
      cmocka_unit_test_setup(test_many_keys, test_setup),
      cmocka_unit_test_setup(test_single_shard_model, test_setup),
      cmocka_unit_test_setup(test_key_shapes, test_setup),
      cmocka_unit_test_setup(test_ttl_on_lookup, test_setup),
      cmocka_unit_test_setup(test_put_over_expired, test_setup),
      cmocka_unit_test_setup(test_ttl_reaped_by_cycle, test_setup),
      cmocka_unit_test_setup(test_eviction_sieve, test_setup),
      cmocka_unit_test_setup(test_aux_free_first_cache, test_setup),
      cmocka_unit_test_setup(test_aux_free_last_cache, test_setup),
  };
  return cmocka_run_group_tests_name("cache", tests, group_setup,
                                     group_teardown);
}
