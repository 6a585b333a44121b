/* cache.c - the sharded index and the entries; see cache.h.
 *
 * Layout. 2^k shards, each a cache-line-aligned struct with its own mutex
 * and an open-addressing table of {hash, entry} slots (16 bytes), linear
 * probing, at most 3/4 full, backward-shift deletion (no tombstones). The
 * top bits of the keyed 64-bit hash pick the shard, the low bits the slot.
 * The hash is SipHash-1-3 under a per-process random key, so an attacker who
 * cannot see the key cannot build colliding keys; probe sequences stay short.
 *
 * Lock rules (memcached's): one shard lock at a time, never held across a
 * call into another module except gc_mark/gc_barrier (which take no lock).
 * Functions named *_locked assume the shard lock.
 *
 * The collector. cache_scan (a GC_ROOTS_CONCURRENT scanner) walks the
 * shards one at a time, holding each shard's lock for the whole shard, so a
 * resize or a backward shift can never move an entry past the scanner. It
 * shades every live entry and unlinks expired ones without shading them
 * (TTL reaping costs no extra pass). Two barriers make that safe while
 * workers run (gc/collector.c states the invariant):
 *   - deletion barrier: every unlink or replacement shades the old entry;
 *   - while marking, cache_get shades the entry it hands out, so an entry a
 *     request picked up after the cycle began survives even if the reaper
 *     unlinks it unshaded a moment later.
 */
#include "cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
  uint64_t hash;
  cache_entry_t *e; /* NULL = empty */
} slot_t;

typedef struct shard {
  pthread_mutex_t lock;
  slot_t *slots;
  uint32_t mask;  /* capacity - 1 */
  uint32_t count; /* live slots */
  /* counters: written under lock, read without it (relaxed) */
  _Atomic uint64_t bytes, hits, misses, inserts, replaces, deletes, expired;
} BC_ALIGNED_CL shard_t;

struct cache {
  uint64_t seed[2];
  unsigned nshards, shard_shift;
  shard_t *shards;
  void (*aux_free)(void *aux);
  _Atomic uint64_t index_bytes;
};

#define INITIAL_CAP 16
#define DEFAULT_SHARDS 512

static cache_t *finalize_cache; /* the cache whose entries carry aux */

static inline void inc(_Atomic uint64_t *c, uint64_t d) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                        memory_order_relaxed);
}
static inline void dec(_Atomic uint64_t *c, uint64_t d) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - d,
                        memory_order_relaxed);
}

uint64_t cache_hash(const cache_t *c, const char *key, size_t klen) {
  return bc_siphash13(key, klen, c->seed);
}

static inline shard_t *shard_for(cache_t *c, uint64_t h) {
  return &c->shards[c->nshards > 1 ? h >> c->shard_shift : 0];
}

static inline bool expired(const cache_entry_t *e, uint64_t now) {
  return e->expires_ns && e->expires_ns <= now;
}

static void scan(void *arg);

static void entry_finalize(void *obj) {
  cache_entry_t *e = obj;
  void *aux = atomic_load_explicit(&e->aux, memory_order_acquire);
  if (aux && finalize_cache && finalize_cache->aux_free)
    finalize_cache->aux_free(aux);
}

cache_t *cache_new(const cache_config_t *cfg) {
  cache_t *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  unsigned n = cfg && cfg->shards ? cfg->shards : DEFAULT_SHARDS;
  BC_CHECK((n & (n - 1)) == 0, "shard count %u is not a power of two", n);
  c->nshards = n;
  c->shard_shift = 64 - (unsigned)__builtin_ctz(n);
  bc_random_bytes(c->seed, sizeof(c->seed));
  if (posix_memalign((void **)&c->shards, BC_CACHELINE, n * sizeof(shard_t))) {
    free(c);
    return NULL;
  }
  memset(c->shards, 0, n * sizeof(shard_t));
  for (unsigned i = 0; i < n; i++) {
    shard_t *s = &c->shards[i];
    pthread_mutex_init(&s->lock, NULL);
    s->slots = calloc(INITIAL_CAP, sizeof(slot_t));
    BC_CHECK(s->slots != NULL, "out of memory creating the index");
    s->mask = INITIAL_CAP - 1;
  }
  atomic_store(&c->index_bytes,
               n * (sizeof(shard_t) + INITIAL_CAP * sizeof(slot_t)));
  gc_register_roots(GC_ROOTS_CONCURRENT, scan, c);
  finalize_cache = c;
  gc_set_finalizer_hook(entry_finalize);
  return c;
}

void cache_free(cache_t *c) {
  if (!c)
    return;
  for (unsigned i = 0; i < c->nshards; i++) {
    pthread_mutex_destroy(&c->shards[i].lock);
    free(c->shards[i].slots);
  }
  free(c->shards);
  if (finalize_cache == c)
    finalize_cache = NULL;
  free(c);
}

void cache_set_aux_free(cache_t *c, void (*fn)(void *aux)) {
  c->aux_free = fn;
}

void *cache_entry_set_aux(cache_entry_t *e, void *v) {
  void *expect = NULL;
  if (atomic_compare_exchange_strong_explicit(&e->aux, &expect, v,
                                              memory_order_acq_rel,
                                              memory_order_acquire)) {
    gc_set_finalizer(e);
    return v;
  }
  return expect;
}

cache_entry_t *cache_entry_new(cache_t *c, gc_mutator_t *m, const char *key,
                               size_t klen, const char *ctype, size_t ctlen,
                               size_t value_len, uint64_t expires_ns,
                               int *err) {
  if (klen == 0 || klen > CACHE_MAX_KEY || ctlen > CACHE_MAX_CTYPE ||
      value_len > UINT32_MAX) {
    *err = BC_EINVAL;
    return NULL;
  }
  cache_entry_t *e = gc_alloc(m, cache_entry_size(klen, ctlen, value_len), err);
  if (!e)
    return NULL;
  e->hash = cache_hash(c, key, klen);
  e->expires_ns = expires_ns;
  e->etag = 0;
  atomic_init(&e->aux, NULL);
  e->value_len = (uint32_t)value_len;
  e->key_len = (uint16_t)klen;
  e->ctype_len = (uint8_t)ctlen;
  e->flags = 0;
  memcpy(e->data, key, klen);
  memcpy(e->data + klen, ctype, ctlen);
  e->data[klen + ctlen] = 0;
  return e;
}

/* ---- table operations (shard lock held) ----------------------------------- */

static long find_locked(shard_t *s, uint64_t h, const char *key, size_t klen) {
  uint32_t i = (uint32_t)h & s->mask;
  for (;;) {
    slot_t *sl = &s->slots[i];
    if (!sl->e)
      return -1;
    if (sl->hash == h && sl->e->key_len == klen &&
        memcmp(sl->e->data, key, klen) == 0)
      return i;
    i = (i + 1) & s->mask;
  }
}

static void remove_at_locked(shard_t *s, uint32_t i) {
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & s->mask;
    if (!s->slots[j].e)
      break;
    uint32_t k = (uint32_t)s->slots[j].hash & s->mask;
    /* the entry at j may move to i unless its home k lies cyclically in
     * (i, j] */
    bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      s->slots[i] = s->slots[j];
      i = j;
    }
  }
  s->slots[i].e = NULL;
  s->slots[i].hash = 0;
  s->count--;
}

static void unlink_locked(shard_t *s, uint32_t i) {
  cache_entry_t *e = s->slots[i].e;
  dec(&s->bytes, e->value_len);
  remove_at_locked(s, i);
}

static int grow_locked(cache_t *c, shard_t *s) {
  uint32_t cap = s->mask + 1, ncap = cap * 2;
  slot_t *n = calloc(ncap, sizeof(slot_t));
  if (!n)
    return BC_ENOMEM;
  for (uint32_t i = 0; i < cap; i++) {
    slot_t *o = &s->slots[i];
    if (!o->e)
      continue;
    uint32_t k = (uint32_t)o->hash & (ncap - 1);
    while (n[k].e)
      k = (k + 1) & (ncap - 1);
    n[k] = *o;
  }
  free(s->slots);
  s->slots = n;
  s->mask = ncap - 1;
  atomic_fetch_add(&c->index_bytes, (uint64_t)cap * sizeof(slot_t));
  return 0;
}

/* ---- public operations ---------------------------------------------------- */

void cache_put(cache_t *c, cache_entry_t *e, bool *replaced) {
  shard_t *s = shard_for(c, e->hash);
  pthread_mutex_lock(&s->lock);
  long i = find_locked(s, e->hash, e->data, e->key_len);
  if (i >= 0) {
    cache_entry_t *old = s->slots[i].e;
    gc_barrier(old);
    dec(&s->bytes, old->value_len);
    s->slots[i].e = e;
    inc(&s->bytes, e->value_len);
    inc(&s->replaces, 1);
    *replaced = true;
    pthread_mutex_unlock(&s->lock);
    return;
  }
  if ((s->count + 1) * 4 > (s->mask + 1) * 3) {
    /* a failed resize leaves a fuller table, which still works until it is
     * full; a full table is a broken invariant */
    (void)grow_locked(c, s);
    BC_CHECK(s->count + 1 <= s->mask, "index shard full and cannot grow");
  }
  uint32_t k = (uint32_t)e->hash & s->mask;
  while (s->slots[k].e)
    k = (k + 1) & s->mask;
  s->slots[k].hash = e->hash;
  s->slots[k].e = e;
  s->count++;
  inc(&s->bytes, e->value_len);
  inc(&s->inserts, 1);
  *replaced = false;
  pthread_mutex_unlock(&s->lock);
}

cache_entry_t *cache_get(cache_t *c, const char *key, size_t klen,
                         uint64_t now_ns) {
  uint64_t h = cache_hash(c, key, klen);
  shard_t *s = shard_for(c, h);
  pthread_mutex_lock(&s->lock);
  long i = find_locked(s, h, key, klen);
  cache_entry_t *e = NULL;
  if (i >= 0) {
    e = s->slots[i].e;
    if (BC_UNLIKELY(expired(e, now_ns))) {
      gc_barrier(e);
      unlink_locked(s, (uint32_t)i);
      inc(&s->expired, 1);
      e = NULL;
    } else if (BC_UNLIKELY(atomic_load_explicit(&gc__barrier_on,
                                                memory_order_relaxed))) {
      gc_mark(e); /* see the essay above: the reaper may unlink it unshaded */
    }
  }
  if (e)
    inc(&s->hits, 1);
  else
    inc(&s->misses, 1);
  pthread_mutex_unlock(&s->lock);
  return e;
}

int cache_delete(cache_t *c, const char *key, size_t klen, uint64_t now_ns) {
  uint64_t h = cache_hash(c, key, klen);
  shard_t *s = shard_for(c, h);
  pthread_mutex_lock(&s->lock);
  long i = find_locked(s, h, key, klen);
  int rc = BC_ENOENT;
  if (i >= 0) {
    cache_entry_t *e = s->slots[i].e;
    gc_barrier(e);
    bool was_expired = expired(e, now_ns);
    unlink_locked(s, (uint32_t)i);
    if (was_expired) {
      inc(&s->expired, 1);
    } else {
      inc(&s->deletes, 1);
      rc = 0;
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

/* GC_ROOTS_CONCURRENT scanner: shade live entries, reap expired ones. */
static void scan(void *arg) {
  cache_t *c = arg;
  for (unsigned si = 0; si < c->nshards; si++) {
    shard_t *s = &c->shards[si];
    pthread_mutex_lock(&s->lock);
    uint64_t now = bc_now_mono_ns();
    for (uint32_t i = 0; i <= s->mask;) {
      cache_entry_t *e = s->slots[i].e;
      if (e && expired(e, now)) {
        unlink_locked(s, i); /* an entry may shift into i: look again */
        inc(&s->expired, 1);
        continue;
      }
      if (e)
        gc_mark(e);
      i++;
    }
    pthread_mutex_unlock(&s->lock);
  }
}

void cache_read_stats(cache_t *c, cache_stats_t *st) {
  memset(st, 0, sizeof(*st));
  for (unsigned i = 0; i < c->nshards; i++) {
    shard_t *s = &c->shards[i];
#define RD(f) atomic_load_explicit(&s->f, memory_order_relaxed)
    st->bytes += RD(bytes);
    st->hits += RD(hits);
    st->misses += RD(misses);
    st->inserts += RD(inserts);
    st->replaces += RD(replaces);
    st->deletes += RD(deletes);
    st->expired += RD(expired);
#undef RD
  }
  st->entries = st->inserts - st->deletes - st->expired;
  st->index_bytes = atomic_load(&c->index_bytes);
}
