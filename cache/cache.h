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
#define CACHE_F_ID_SHIFT 1 /* flags >> 1: the owning cache's id (set once) */

/* 48 bytes of header, no padding (pahole output in docs/ARCHITECTURE.md),
 * so an 11-byte key and a 1 KiB value with no content type (1,083 bytes)
 * fit the 1,088-byte size class. */
typedef struct cache_entry {
  uint64_t hash;        /* keyed hash of the key */
  uint64_t expires_ns;  /* CLOCK_MONOTONIC deadline; 0 = never */
  uint64_t etag;        /* xxh64 of the value bytes */
  void *_Atomic aux;    /* owner-defined (api: a cached response) */
  /* the shard's eviction queue (SIEVE), newest first, as gc_ref()s;
   * shard lock */
  uint32_t q_prev, q_next;
  uint32_t value_len;
  uint16_t key_len;
  uint8_t ctype_len;    /* 0: none stored (api: application/octet-stream) */
  uint8_t flags;        /* CACHE_F_*; shard lock */
  char data[];          /* key, [content type, NUL,] value */
} cache_entry_t;

static inline const char *cache_entry_key(const cache_entry_t *e) {
  return e->data;
}
/* NUL-terminated; "" when the entry has none (ctype_len 0 takes no byte) */
static inline const char *cache_entry_ctype(const cache_entry_t *e) {
  return e->ctype_len ? e->data + e->key_len : "";
}
static inline char *cache_entry_value(cache_entry_t *e) {
  return e->data + e->key_len + (e->ctype_len ? e->ctype_len + 1u : 0u);
}
static inline size_t cache_entry_size(size_t klen, size_t ctlen,
                                      size_t value_len) {
  return sizeof(cache_entry_t) + klen + (ctlen ? ctlen + 1 : 0) + value_len;
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

/* ---- conditional writes (compare-and-swap on the ETag) --------------------
 * A condition is checked against the key's current entry under the shard
 * lock, in the same critical section as the write, so two writers racing
 * on one ETag cannot both win. An expired entry counts as absent.
 * RFC 9110's order (13.2.2): if_match first, then if_none_match. */
#define CACHE_COND_ETAGS 16
enum cache_cond_kind {
  CACHE_COND_OFF = 0, /* no such condition */
  CACHE_COND_ANY,     /* "*": an entry exists (if_match) / none (none_match) */
  CACHE_COND_LIST,    /* one of etags[] (possibly none of them parsed) */
};
typedef struct cache_cond {
  uint8_t if_match, if_none_match; /* enum cache_cond_kind */
  uint8_t n_match, n_none_match;
  uint64_t match[CACHE_COND_ETAGS];      /* strong comparison */
  uint64_t none_match[CACHE_COND_ETAGS]; /* weak: W/ tags already unwrapped */
} cache_cond_t;

/* Does cond hold for cur (NULL = absent)? Pure; for readers (GET's
 * If-Match) that hold an entry from cache_get. */
bool cache_cond_match(const cache_cond_t *cond, const cache_entry_t *cur);

/* cache_put, if cond (NULL = none) holds for the current entry. Returns 0,
 * or BC_EPRECOND with nothing changed. */
int cache_put_if(cache_t *c, cache_entry_t *e, const cache_cond_t *cond,
                 uint64_t now_ns, bool *replaced);

/* cache_delete, if cond (NULL = none) holds for the present entry. Returns
 * 0, BC_ENOENT (absent or expired: cond is not looked at), or
 * BC_EPRECOND. */
int cache_delete_if(cache_t *c, const char *key, size_t klen,
                    const cache_cond_t *cond, uint64_t now_ns);

/* ---- namespaces ------------------------------------------------------------
 * Listing order is the keyed hash's order: the shard is the hash's top bits,
 * so walking the shards in order and each shard's entries by hash visits
 * every key once, whatever inserts, deletes and resizes happen in between,
 * and a cursor is one hash value ("continue at hashes >= cursor"). The seed
 * is per process, so cursors do not outlive it. */

/* Collects up to max (<= CACHE_LIST_MAX) live entries whose key starts
 * with prefix (plen 0: every key) and whose hash is >= *cursor, in hash
 * order, into out[]. Each shard is visited under its lock; the walk stops
 * after the shard that filled out[] or after the shard that took the
 * entries examined past budget (so a request's work is bounded). Returns
 * how many were stored; *cursor becomes where the next call continues, and
 * *done is set when the whole keyspace after the cursor was visited.
 * Entries in out[] follow cache_get's lifetime rule. */
#define CACHE_LIST_MAX 1000
size_t cache_list(cache_t *c, const char *prefix, size_t plen,
                  uint64_t now_ns, uint64_t *cursor, bool *done,
                  cache_entry_t **out, size_t max, size_t budget);

/* Unlinks every entry whose key starts with prefix (plen 0: all), shard by
 * shard under each shard's lock, each through the deletion barrier. Returns
 * how many live entries went (counted as deletes; expired ones met on the
 * way are counted as expired, not returned). */
uint64_t cache_delete_prefix(cache_t *c, const char *prefix, size_t plen,
                             uint64_t now_ns);

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
