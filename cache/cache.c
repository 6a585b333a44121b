/* cache.c - the sharded index and the entries; see cache.h.
 *
 * Layout. 2^k shards, each a cache-line-aligned struct with its own mutex
 * and an open-addressing table of 8-byte slots {low 32 bits of the hash,
 * gc_ref of the entry}, linear probing, at most 3/4 full, backward-shift
 * deletion (no tombstones). The top bits of the keyed 64-bit hash pick the
 * shard, the low bits the slot; a slot whose 32 hash bits match is confirmed
 * with the entry's full hash and key. The hash is SipHash-1-3 under a
 * per-process random key, so an attacker who cannot see the key cannot build
 * colliding keys; probe sequences stay short. As a second line, an insert
 * whose probe runs past MAX_PROBE grows the table even below 3/4 full, so
 * no run of colliding keys can make a shard's probes long
 * (tests/unit/test_cache_flood.c measures it).
 *
 * Lock rules (memcached's): one shard lock at a time, never held across a
 * call into another module except gc_mark/gc_barrier (which take no lock);
 * the scan calls gc_scan_pace (which may sleep) between shards, unlocked.
 * Functions named *_locked assume the shard lock.
 *
 * Eviction (SIEVE, Zhang et al., NSDI'24), per shard, under the shard
 * lock: entries sit in a FIFO queue, newest at the head; a read sets the
 * entry's visited bit; the hand walks from the tail toward the head,
 * clearing visited bits and evicting the first unvisited entry. Inserts go
 * to the head and never move anything, so a hit costs one bit. The collector
 * calls cache_pressure before each cycle with the bytes reachable data may
 * use; each shard evicts its share, so no global lock is taken and the cost
 * is O(1) amortised per insert. A replaced entry takes its predecessor's
 * place in the queue.
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
  uint32_t hash; /* low 32 bits of the entry's hash: its home is hash & mask */
  uint32_t ref;  /* gc_ref of the entry; 0 = empty */
} slot_t;

static inline cache_entry_t *slot_entry(const slot_t *sl) {
  return gc_deref(sl->ref);
}
static inline cache_entry_t *Q(uint32_t ref) { return gc_deref(ref); }

typedef struct shard {
  pthread_mutex_t lock;
  slot_t *slots;
  uint32_t mask;  /* capacity - 1 */
  uint32_t count; /* live slots */
  uint32_t nttl;  /* live entries with a TTL: 0 lets scan skip the entries */
  cache_entry_t *q_head, *q_tail, *hand; /* SIEVE queue */
  /* counters: written under lock, read without it (relaxed) */
  _Atomic uint64_t bytes, mem, hits, misses, inserts, replaces, deletes,
      expired, evicted;
} BC_ALIGNED_CL shard_t;

struct cache {
  uint64_t seed[2];
  unsigned nshards, shard_shift;
  shard_t *shards;
  void (*aux_free)(void *aux);
  _Atomic uint64_t index_bytes;
  uint8_t id; /* slot in caches[]; stored in every entry's flags */
};

#define INITIAL_CAP 16
#define DEFAULT_SHARDS 512
#define MAX_PROBE 64 /* an insert probing further grows the table */

/* Every live cache, by id (1..MAX_CACHES-1). An entry's flags carry its
 * cache's id, so the finalizer finds the right aux-free callback; the
 * pressure hook shrinks every cache. Written by cache_new/cache_free. */
#define MAX_CACHES 64
static cache_t *_Atomic caches[MAX_CACHES];
static pthread_mutex_t caches_mu = PTHREAD_MUTEX_INITIALIZER;
static void pressure(uint64_t budget);

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
  cache_t *c = atomic_load(&caches[e->flags >> CACHE_F_ID_SHIFT]);
  if (aux && c && c->aux_free)
    c->aux_free(aux);
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
  pthread_mutex_lock(&caches_mu);
  for (unsigned i = 1; i < MAX_CACHES && !c->id; i++)
    if (!atomic_load(&caches[i])) {
      c->id = (uint8_t)i;
      atomic_store(&caches[i], c);
    }
  pthread_mutex_unlock(&caches_mu);
  if (!c->id) { /* MAX_CACHES - 1 caches live at once is the limit */
    for (unsigned i = 0; i < n; i++)
      free(c->shards[i].slots);
    free(c->shards);
    free(c);
    return NULL;
  }
  gc_register_roots(GC_ROOTS_CONCURRENT, scan, c);
  gc_set_finalizer_hook(entry_finalize);
  gc_set_pressure_hook(pressure);
  return c;
}

void cache_free(cache_t *c) {
  if (!c)
    return;
  /* waits for a running cycle to end: no scan or hook sees c afterwards */
  gc_unregister_roots(GC_ROOTS_CONCURRENT, scan, c);
  atomic_store(&caches[c->id], NULL);
  for (unsigned i = 0; i < c->nshards; i++) {
    pthread_mutex_destroy(&c->shards[i].lock);
    free(c->shards[i].slots);
  }
  free(c->shards);
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
  e->q_prev = e->q_next = 0;
  e->value_len = (uint32_t)value_len;
  e->key_len = (uint16_t)klen;
  e->ctype_len = (uint8_t)ctlen;
  e->flags = (uint8_t)(c->id << CACHE_F_ID_SHIFT);
  memcpy(e->data, key, klen);
  if (ctlen) { /* none stored takes no byte, not even the NUL */
    memcpy(e->data + klen, ctype, ctlen);
    e->data[klen + ctlen] = 0;
  }
  return e;
}

/* ---- the SIEVE queue (shard lock held) ---------------------------------- */

static void q_push_head(shard_t *s, cache_entry_t *e) {
  e->q_prev = 0;
  e->q_next = gc_ref(s->q_head);
  if (s->q_head)
    s->q_head->q_prev = gc_ref(e);
  else
    s->q_tail = e;
  s->q_head = e;
}

static void q_remove(shard_t *s, cache_entry_t *e) {
  cache_entry_t *prev = Q(e->q_prev), *next = Q(e->q_next);
  if (s->hand == e)
    s->hand = prev;
  if (prev)
    prev->q_next = e->q_next;
  else
    s->q_head = next;
  if (next)
    next->q_prev = e->q_prev;
  else
    s->q_tail = prev;
  e->q_prev = e->q_next = 0;
}

/* n takes o's place in the queue. */
static void q_replace(shard_t *s, cache_entry_t *o, cache_entry_t *n) {
  cache_entry_t *prev = Q(o->q_prev), *next = Q(o->q_next);
  n->q_prev = o->q_prev;
  n->q_next = o->q_next;
  if (prev)
    prev->q_next = gc_ref(n);
  else
    s->q_head = n;
  if (next)
    next->q_prev = gc_ref(n);
  else
    s->q_tail = n;
  if (s->hand == o)
    s->hand = n;
  o->q_prev = o->q_next = 0;
}

/* ---- table operations (shard lock held) ----------------------------------- */

static long find_locked(shard_t *s, uint64_t h, const char *key, size_t klen) {
  uint32_t i = (uint32_t)h & s->mask;
  for (;;) {
    slot_t *sl = &s->slots[i];
    if (!sl->ref)
      return -1;
    if (sl->hash == (uint32_t)h) {
      const cache_entry_t *e = slot_entry(sl);
      if (e->hash == h && e->key_len == klen &&
          memcmp(e->data, key, klen) == 0)
        return i;
    }
    i = (i + 1) & s->mask;
  }
}

static void remove_at_locked(shard_t *s, uint32_t i) {
  uint32_t j = i;
  for (;;) {
    j = (j + 1) & s->mask;
    if (!s->slots[j].ref)
      break;
    uint32_t k = s->slots[j].hash & s->mask;
    /* the entry at j may move to i unless its home k lies cyclically in
     * (i, j] */
    bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      s->slots[i] = s->slots[j];
      i = j;
    }
  }
  s->slots[i].ref = 0;
  s->slots[i].hash = 0;
  s->count--;
}

static void unlink_locked(shard_t *s, uint32_t i) {
  cache_entry_t *e = slot_entry(&s->slots[i]);
  dec(&s->bytes, e->value_len);
  dec(&s->mem, gc_usable_size(e));
  if (e->expires_ns)
    s->nttl--;
  q_remove(s, e);
  remove_at_locked(s, i);
}

static int grow_locked(cache_t *c, shard_t *s) {
  uint32_t cap = s->mask + 1, ncap = cap * 2;
  slot_t *n = calloc(ncap, sizeof(slot_t));
  if (!n)
    return BC_ENOMEM;
  for (uint32_t i = 0; i < cap; i++) {
    slot_t *o = &s->slots[i];
    if (!o->ref)
      continue;
    uint32_t k = o->hash & (ncap - 1);
    while (n[k].ref)
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

static bool etag_in(uint64_t etag, const uint64_t *list, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    if (list[i] == etag)
      return true;
  return false;
}

bool cache_cond_match(const cache_cond_t *cond, const cache_entry_t *cur) {
  if (!cond)
    return true;
  if (cond->if_match == CACHE_COND_ANY && !cur)
    return false;
  if (cond->if_match == CACHE_COND_LIST &&
      (!cur || !etag_in(cur->etag, cond->match, cond->n_match)))
    return false;
  if (cond->if_none_match == CACHE_COND_ANY && cur)
    return false;
  if (cond->if_none_match == CACHE_COND_LIST && cur &&
      etag_in(cur->etag, cond->none_match, cond->n_none_match))
    return false;
  return true;
}

/* Inserts e (not in the table) at its home or after it; shard lock held. */
static void insert_locked(cache_t *c, shard_t *s, cache_entry_t *e) {
  if ((s->count + 1) * 4 > (s->mask + 1) * 3) {
    /* a failed resize leaves a fuller table, which still works until it is
     * full; a full table is a broken invariant */
    (void)grow_locked(c, s);
    BC_CHECK(s->count + 1 <= s->mask, "index shard full and cannot grow");
  }
  uint32_t k = (uint32_t)e->hash & s->mask, dist = 0;
  while (s->slots[k].ref) {
    k = (k + 1) & s->mask;
    dist++;
  }
  if (BC_UNLIKELY(dist > MAX_PROBE) && s->count * 8 > s->mask &&
      grow_locked(c, s) == 0) {
    /* a run of colliding homes: spread it over twice the slots */
    k = (uint32_t)e->hash & s->mask;
    while (s->slots[k].ref)
      k = (k + 1) & s->mask;
  }
  s->slots[k].hash = (uint32_t)e->hash;
  s->slots[k].ref = gc_ref(e);
  s->count++;
}

int cache_put_if(cache_t *c, cache_entry_t *e, const cache_cond_t *cond,
                 uint64_t now_ns, bool *replaced) {
  shard_t *s = shard_for(c, e->hash);
  pthread_mutex_lock(&s->lock);
  long i = find_locked(s, e->hash, e->data, e->key_len);
  if (cond) {
    cache_entry_t *cur = i >= 0 ? slot_entry(&s->slots[i]) : NULL;
    if (cur && expired(cur, now_ns))
      cur = NULL;
    if (!cache_cond_match(cond, cur)) {
      pthread_mutex_unlock(&s->lock);
      return BC_EPRECOND;
    }
  }
  if (i >= 0 && expired(slot_entry(&s->slots[i]), now_ns)) {
    /* an expired value is absent: this is an insert, the old one expired */
    gc_barrier(slot_entry(&s->slots[i]));
    unlink_locked(s, (uint32_t)i);
    inc(&s->expired, 1);
    i = -1;
  }
  if (i >= 0) {
    cache_entry_t *old = slot_entry(&s->slots[i]);
    gc_barrier(old);
    dec(&s->bytes, old->value_len);
    dec(&s->mem, gc_usable_size(old));
    q_replace(s, old, e);
    e->flags |= CACHE_F_VISITED; /* an update is a use */
    s->nttl += (e->expires_ns != 0) - (old->expires_ns != 0);
    s->slots[i].ref = gc_ref(e);
    inc(&s->bytes, e->value_len);
    inc(&s->mem, gc_usable_size(e));
    inc(&s->replaces, 1);
    *replaced = true;
    pthread_mutex_unlock(&s->lock);
    return 0;
  }
  insert_locked(c, s, e);
  if (e->expires_ns)
    s->nttl++;
  e->flags &= (uint8_t)~CACHE_F_VISITED;
  q_push_head(s, e);
  inc(&s->bytes, e->value_len);
  inc(&s->mem, gc_usable_size(e));
  inc(&s->inserts, 1);
  *replaced = false;
  pthread_mutex_unlock(&s->lock);
  return 0;
}

void cache_put(cache_t *c, cache_entry_t *e, bool *replaced) {
  (void)cache_put_if(c, e, NULL, bc_now_mono_ns(), replaced);
}

cache_entry_t *cache_get(cache_t *c, const char *key, size_t klen,
                         uint64_t now_ns) {
  uint64_t h = cache_hash(c, key, klen);
  shard_t *s = shard_for(c, h);
  pthread_mutex_lock(&s->lock);
  long i = find_locked(s, h, key, klen);
  cache_entry_t *e = NULL;
  if (i >= 0) {
    e = slot_entry(&s->slots[i]);
    if (BC_UNLIKELY(expired(e, now_ns))) {
      gc_barrier(e);
      unlink_locked(s, (uint32_t)i);
      inc(&s->expired, 1);
      e = NULL;
    } else {
      if (!(e->flags & CACHE_F_VISITED))
        e->flags |= CACHE_F_VISITED;
      if (BC_UNLIKELY(atomic_load_explicit(&gc__barrier_on,
                                           memory_order_relaxed)))
        gc_mark(e); /* see the essay above: the reaper may unlink it */
    }
  }
  if (e)
    inc(&s->hits, 1);
  else
    inc(&s->misses, 1);
  pthread_mutex_unlock(&s->lock);
  return e;
}

int cache_delete_if(cache_t *c, const char *key, size_t klen,
                    const cache_cond_t *cond, uint64_t now_ns) {
  uint64_t h = cache_hash(c, key, klen);
  shard_t *s = shard_for(c, h);
  pthread_mutex_lock(&s->lock);
  long i = find_locked(s, h, key, klen);
  cache_entry_t *e = i >= 0 ? slot_entry(&s->slots[i]) : NULL;
  bool was_expired = e && expired(e, now_ns);
  /* absent: BC_ENOENT whatever cond says (RFC 9110 13.2.1 ignores
   * preconditions where the answer would not be 2xx) */
  if (cond && e && !was_expired && !cache_cond_match(cond, e)) {
    pthread_mutex_unlock(&s->lock);
    return BC_EPRECOND;
  }
  int rc = BC_ENOENT;
  if (e) {
    gc_barrier(e);
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

int cache_delete(cache_t *c, const char *key, size_t klen, uint64_t now_ns) {
  return cache_delete_if(c, key, klen, NULL, now_ns);
}

/* Evicts one entry from s by SIEVE; false if the shard is empty. */
static bool evict_one_locked(shard_t *s) {
  cache_entry_t *o = s->hand ? s->hand : s->q_tail;
  if (!o)
    return false;
  while (o->flags & CACHE_F_VISITED) {
    o->flags &= (uint8_t)~CACHE_F_VISITED;
    o = o->q_prev ? Q(o->q_prev) : s->q_tail;
  }
  s->hand = Q(o->q_prev);
  long i = find_locked(s, o->hash, o->data, o->key_len);
  BC_CHECK(i >= 0, "queued entry missing from its shard");
  gc_barrier(o);
  unlink_locked(s, (uint32_t)i);
  inc(&s->evicted, 1);
  return true;
}

/* The collector's pressure hook: shrink every shard to its share of the
 * budget. Shards are balanced by the keyed hash, so an even share is fair. */
static void shrink(cache_t *c, uint64_t budget) {
  uint64_t total = 0;
  for (unsigned i = 0; i < c->nshards; i++)
    total += atomic_load_explicit(&c->shards[i].mem, memory_order_relaxed);
  if (total <= budget)
    return;
  uint64_t per = budget / c->nshards;
  for (unsigned i = 0; i < c->nshards; i++) {
    shard_t *s = &c->shards[i];
    pthread_mutex_lock(&s->lock);
    while (atomic_load_explicit(&s->mem, memory_order_relaxed) > per &&
           evict_one_locked(s))
      ;
    pthread_mutex_unlock(&s->lock);
  }
}

/* Several caches share the budget in proportion to what they hold. */
static void pressure(uint64_t budget) {
  uint64_t mem[MAX_CACHES] = {0}, total = 0;
  for (unsigned i = 1; i < MAX_CACHES; i++) {
    cache_t *c = atomic_load(&caches[i]);
    if (!c)
      continue;
    for (unsigned k = 0; k < c->nshards; k++)
      mem[i] += atomic_load_explicit(&c->shards[k].mem, memory_order_relaxed);
    total += mem[i];
  }
  if (total <= budget)
    return;
  for (unsigned i = 1; i < MAX_CACHES; i++) {
    cache_t *c = atomic_load(&caches[i]);
    if (c && mem[i])
      shrink(c, (uint64_t)((unsigned __int128)budget * mem[i] / total));
  }
}

uint64_t cache_evict(cache_t *c, uint64_t budget) {
  cache_stats_t before, after;
  cache_read_stats(c, &before);
  shrink(c, budget);
  cache_read_stats(c, &after);
  return after.evicted - before.evicted;
}

/* GC_ROOTS_CONCURRENT scanner: shade live entries, reap expired ones. */
static void scan(void *arg) {
  cache_t *c = arg;
  for (unsigned si = 0; si < c->nshards; si++) {
    shard_t *s = &c->shards[si];
    pthread_mutex_lock(&s->lock);
    if (!s->nttl) {
      /* nothing can expire here: shade from the slots alone, without
       * touching the entries (one cache miss each on a large heap), in
       * batches the collector pipelines (gc_mark_batch) */
      void *batch[256];
      size_t n = 0;
      for (uint32_t i = 0; i <= s->mask; i++) {
        if (!s->slots[i].ref)
          continue;
        batch[n++] = slot_entry(&s->slots[i]);
        if (n == BC_ARRAY_LEN(batch)) {
          gc_mark_batch(batch, n);
          n = 0;
        }
      }
      gc_mark_batch(batch, n);
      pthread_mutex_unlock(&s->lock);
      gc_scan_pace();
      continue;
    }
    uint64_t now = bc_now_mono_ns();
    for (uint32_t i = 0; i <= s->mask;) {
      cache_entry_t *e = slot_entry(&s->slots[i]);
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
    gc_scan_pace();
  }
}

/* ---- namespaces: listing and prefix delete -------------------------------- */

static inline bool has_prefix(const cache_entry_t *e, const char *p,
                              size_t n) {
  return e->key_len >= n && memcmp(e->data, p, n) == 0;
}

/* A max-heap by hash (h[0] has the largest): the smallest hashes seen. */
static void heap_up(cache_entry_t **h, size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p]->hash >= h[i]->hash)
      break;
    cache_entry_t *t = h[p];
    h[p] = h[i];
    h[i] = t;
    i = p;
  }
}

static void heap_down(cache_entry_t **h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && h[l]->hash > h[m]->hash)
      m = l;
    if (r < n && h[r]->hash > h[m]->hash)
      m = r;
    if (m == i)
      return;
    cache_entry_t *t = h[m];
    h[m] = h[i];
    h[i] = t;
    i = m;
  }
}

size_t cache_list(cache_t *c, const char *prefix, size_t plen,
                  uint64_t now_ns, uint64_t *cursor, bool *done,
                  cache_entry_t **out, size_t max, size_t budget) {
  if (max > CACHE_LIST_MAX)
    max = CACHE_LIST_MAX;
  *done = false;
  uint64_t from = *cursor, examined = 0;
  size_t n = 0;
  unsigned si = c->nshards > 1 ? (unsigned)(from >> c->shard_shift) : 0;
  for (; si < c->nshards && max > 0; si++) {
    shard_t *s = &c->shards[si];
    cache_entry_t **h = out + n;
    size_t need = max - n, hn = 0;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i <= s->mask; i++) {
      cache_entry_t *e = slot_entry(&s->slots[i]);
      if (!e || e->hash < from || expired(e, now_ns) ||
          !has_prefix(e, prefix, plen))
        continue;
      if (hn < need) {
        h[hn] = e;
        heap_up(h, hn++);
      } else if (e->hash < h[0]->hash) {
        h[0] = e;
        heap_down(h, hn, 0);
      }
    }
    examined += (uint64_t)s->mask + 1;
    /* cache_get's rule: the reaper may unlink an entry handed out */
    if (BC_UNLIKELY(atomic_load_explicit(&gc__barrier_on,
                                         memory_order_relaxed)))
      for (size_t k = 0; k < hn; k++)
        gc_mark(h[k]);
    pthread_mutex_unlock(&s->lock);
    for (size_t k = hn; k > 1; k--) { /* heap sort: ascending */
      cache_entry_t *t = h[0];
      h[0] = h[k - 1];
      h[k - 1] = t;
      heap_down(h, k - 1, 0);
    }
    n += hn;
    if (n == max) {
      uint64_t last = out[n - 1]->hash;
      *cursor = last + 1;
      *done = last == UINT64_MAX;
      return n;
    }
    if (si + 1 == c->nshards)
      break;
    from = (uint64_t)(si + 1) << c->shard_shift;
    if (examined >= budget) {
      *cursor = from;
      return n;
    }
  }
  *done = true;
  return n;
}

uint64_t cache_delete_prefix(cache_t *c, const char *prefix, size_t plen,
                             uint64_t now_ns) {
  uint64_t n = 0;
  for (unsigned si = 0; si < c->nshards; si++) {
    shard_t *s = &c->shards[si];
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i <= s->mask;) {
      cache_entry_t *e = slot_entry(&s->slots[i]);
      if (!e || !has_prefix(e, prefix, plen)) {
        i++;
        continue;
      }
      gc_barrier(e);
      bool was_expired = expired(e, now_ns);
      unlink_locked(s, i); /* an entry may shift into i: look again */
      if (was_expired) {
        inc(&s->expired, 1);
      } else {
        inc(&s->deletes, 1);
        n++;
      }
    }
    pthread_mutex_unlock(&s->lock);
  }
  return n;
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
    st->evicted += RD(evicted);
    st->mem += RD(mem);
#undef RD
  }
  st->entries = st->inserts - st->deletes - st->expired - st->evicted;
  st->index_bytes = atomic_load(&c->index_bytes);
}
