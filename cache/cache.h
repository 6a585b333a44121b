/* cache.h - the index: a sharded hash map from keys to entries.
 *
 * An entry is one gc heap object holding its metadata, key, content type and
 * value bytes together; once published it is immutable (its aux pointer
 * aside, which is set at most once). The index is a root of the collector:
 * it scans itself concurrently and calls the deletion barrier whenever an
 * entry leaves it or is replaced while marking is on.
 *
 * Lifetime rule for readers: an entry returned by cache_get stays valid
 * until the calling mutator's next safepoint (gc_mutator_park). To keep it
 * longer, store it in a root (a request context) before parking.
 */
#ifndef CACHE_H
#define CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gc.h"

#define CACHE_MAX_KEY 512
#define CACHE_MAX_CTYPE 255
#define CACHE_F_VISITED 1 /* read since the eviction hand last passed */

typedef struct cache_entry {
  uint64_t hash;        /* keyed hash of the key */
  uint64_t expires_ns;  /* CLOCK_MONOTONIC deadline; 0 = never */
  uint64_t etag;        /* xxh64 of the value bytes */
  void *_Atomic aux;    /* owner-defined (api: a cached response) */
  /* the shard's eviction queue (SIEVE), newest first; shard lock */
  struct cache_entry *q_prev, *q_next;
  uint32_t value_len;
  uint16_t key_len;
  uint8_t ctype_len;
  uint8_t flags;        /* CACHE_F_*; shard lock */
  char data[];          /* key, content type, NUL, value */
} cache_entry_t;

static inline const char *cache_entry_key(const cache_entry_t *e) {
  return e->data;
}
static inline const char *cache_entry_ctype(const cache_entry_t *e) {
  return e->data + e->key_len;
}
/* NUL-terminated */
static inline char *cache_entry_value(cache_entry_t *e) {
  return e->data + e->key_len + e->ctype_len + 1;
}
static inline size_t cache_entry_size(size_t klen, size_t ctlen,
                                      size_t value_len) {
  return sizeof(cache_entry_t) + klen + ctlen + 1 + value_len;
}

typedef struct cache cache_t;

typedef struct cache_config {
  unsigned shards; /* power of two; 0 = default (512) */
} cache_config_t;

typedef struct cache_stats {
  uint64_t entries, bytes; /* live entries and their value bytes */
  uint64_t mem;            /* heap bytes the entries occupy */
  uint64_t hits, misses, inserts, replaces, deletes, expired, evicted;
  uint64_t index_bytes;    /* slot tables (libc heap) */
} cache_stats_t;

/* Creates the index and registers it with the collector as concurrent roots.
 * gc_init must have run. */
cache_t *cache_new(const cache_config_t *cfg);
void cache_free(cache_t *c);

/* Allocates an unpublished entry with room for value_len bytes; key and
 * content type are copied in, the value is left for the caller to fill.
 * NULL with *err (BC_ELIMIT, BC_ENOMEM, BC_EINVAL). The entry is garbage
 * unless the caller roots it or publishes it before its next safepoint. */
cache_entry_t *cache_entry_new(cache_t *c, gc_mutator_t *m, const char *key,
                               size_t klen, const char *ctype, size_t ctlen,
                               size_t value_len, uint64_t expires_ns, int *err);

/* Publishes e under its key. *replaced tells whether a previous value was
 * dropped (and shaded, if marking). */
void cache_put(cache_t *c, cache_entry_t *e, bool *replaced);

/* Looks key up; NULL on a miss or an expired entry (which is unlinked).
 * now_ns is CLOCK_MONOTONIC. */
cache_entry_t *cache_get(cache_t *c, const char *key, size_t klen,
                         uint64_t now_ns);

/* Unlinks key. Returns 0 or BC_ENOENT. */
int cache_delete(cache_t *c, const char *key, size_t klen, uint64_t now_ns);

/* Sets e's aux to v if it has none; returns the aux in place afterwards.
 * When v wins, the cache's aux-free callback will get v when e is
 * reclaimed. */
void *cache_entry_set_aux(cache_entry_t *e, void *v);
void cache_set_aux_free(cache_t *c, void (*fn)(void *aux));

void cache_read_stats(cache_t *c, cache_stats_t *st);

/* Evicts (SIEVE, shard by shard) until the entries occupy at most budget
 * heap bytes; returns how many went. The collector calls the same code
 * before each cycle; this entry point is for tests and tools. */
uint64_t cache_evict(cache_t *c, uint64_t budget);

/* Hash of a key under this cache's seed (exposed for tests). */
uint64_t cache_hash(const cache_t *c, const char *key, size_t klen);

#endif
