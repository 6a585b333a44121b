/* test_gc_stress.c - randomized stress of the collector with the cache:
 * worker threads (each its own mutator) insert, replace, delete and read
 * keys of one cache while another thread runs forced cycles back to back.
 *
 * Every value describes itself: a header with the key's index, its length,
 * the writer and a sequence number, a payload derived from them and a
 * checksum, and the entry's ETag is XXH64 of the value. A read must return
 * an entry for the key asked for, complete and uncorrupted, and it must stay
 * so until the reader's next safepoint (the cache's lifetime rule): readers
 * hold up to four entries and check them again just before they park.
 *
 * Phase A: generous memory limit, no paced cycles; the driver thread runs
 *          gc_collect(NULL) back to back and gc_verify() between cycles.
 * Phase B: a tight memory limit (12 MiB) and GOGC=100: allocation-paced
 *          cycles, limit-driven cycles run by the workers inside gc_alloc
 *          (so a reader drops its held entries before allocating), and
 *          eviction by the pressure hook, besides the driver's cycles; an
 *          allocation refused with BC_ELIMIT is counted, not a failure.
 * Meanwhile the driver reads gc_read_stats(), as /debug/memstats does.
 * After each phase: TTLs are let run out, one cycle reaps them, and the
 * heap must hold exactly the entries the index holds.
 *
 * The seed is printed; BUFCACHE_STRESS_SEED=<n> replays it (scheduling
 * aside), BUFCACHE_STRESS_OPS=<n> sets the operations per worker.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "gc.h"

#define MIB ((uint64_t)1 << 20)
#define NWORKERS 3
#define NKEYS 6000
#define MAGIC 0x57524553u /* "SERW" */
#define HOLD 4

#if defined(__SANITIZE_THREAD__)
#define DEFAULT_OPS 8000 /* about 10 s under TSan on 2 cores */
#elif defined(__SANITIZE_ADDRESS__)
#define DEFAULT_OPS 60000
#else
#define DEFAULT_OPS 80000
#endif

typedef struct vhdr {
  uint32_t magic;
  uint32_t key;
  uint32_t len; /* the whole value, header included */
  uint32_t writer;
  uint64_t seq;
  uint64_t sum; /* FNV-1a of the payload */
} vhdr_t;

static cache_t *C;
static uint64_t seed;
static long ops_per_worker;

static _Atomic int stop_all;
static _Atomic int failures;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;
static char first_failure[512];

static void failure(const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&fail_mu);
  if (atomic_fetch_add(&failures, 1) == 0) {
    va_start(ap, fmt);
    vsnprintf(first_failure, sizeof first_failure, fmt, ap);
    va_end(ap);
    fprintf(stderr, "stress failure: %s\n", first_failure);
  }
  pthread_mutex_unlock(&fail_mu);
  atomic_store(&stop_all, 1);
}

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static size_t keyname(char *buf, uint32_t i) {
  return (size_t)snprintf(buf, 32, "stress/%05u", i);
}

static uint64_t fnv(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static void payload(unsigned char *p, size_t n, uint64_t s) {
  for (size_t i = 0; i < n; i++) {
    if (i % 8 == 0)
      s = mix64(s + i);
    p[i] = (unsigned char)(s >> (8 * (i % 8)));
  }
}

/* Checks that e is a complete, uncorrupted value for key index k. */
static bool verify(cache_entry_t *e, uint32_t k, const char *when) {
  char name[32];
  size_t n = keyname(name, k);
  if (e->key_len != n || memcmp(cache_entry_key(e), name, n) != 0) {
    failure("%s: entry for key %u has key \"%.*s\"", when, k,
            (int)(e->key_len > 40 ? 40 : e->key_len), cache_entry_key(e));
    return false;
  }
  if (e->ctype_len != 3 || memcmp(cache_entry_ctype(e), "s/x", 3) != 0) {
    failure("%s: key %u: content type damaged", when, k);
    return false;
  }
  vhdr_t h;
  if (e->value_len < sizeof h) {
    failure("%s: key %u: value of %u bytes, shorter than its header", when, k,
            e->value_len);
    return false;
  }
  const unsigned char *v = (const unsigned char *)cache_entry_value(e);
  memcpy(&h, v, sizeof h);
  if (h.magic != MAGIC || h.key != k || h.len != e->value_len) {
    failure("%s: key %u: header magic %08x key %u len %u, entry says %u bytes",
            when, k, h.magic, h.key, h.len, e->value_len);
    return false;
  }
  size_t pn = e->value_len - sizeof h;
  if (fnv(v + sizeof h, pn) != h.sum) {
    failure("%s: key %u (writer %u seq %" PRIu64 ", %u bytes): payload "
            "checksum mismatch",
            when, k, h.writer, h.seq, h.len);
    return false;
  }
  unsigned char tmp[64];
  size_t chk = pn < sizeof tmp ? pn : sizeof tmp;
  payload(tmp, chk, h.seq * 0x9e3779b97f4a7c15ull ^ k);
  if (memcmp(tmp, v + sizeof h, chk) != 0) {
    failure("%s: key %u: payload is not the writer's pattern", when, k);
    return false;
  }
  if (e->etag != bc_xxh64(v, e->value_len, 0)) {
    failure("%s: key %u: etag mismatch", when, k);
    return false;
  }
  return true;
}

/* ---- workers ---------------------------------------------------------------- */

typedef struct worker {
  pthread_t thread;
  int id;
  uint64_t rng;
  long ops, gets, hits, puts, dels, safepoints, alloc_fail;
  gc_mutator_t *m;
  cache_entry_t *held[HOLD];
  uint32_t held_key[HOLD];
  int nheld;
} worker_t;

static uint64_t wrnd(worker_t *w) {
  return mix64(w->rng += 0x9e3779b97f4a7c15ull);
}

/* Before anything that may park (a safepoint, or an allocation, which can
 * run a cycle over the memory limit): the held entries must still be
 * intact; afterwards they may be gone. */
static void release_held(worker_t *w) {
  for (int i = 0; i < w->nheld; i++)
    verify(w->held[i], w->held_key[i], "held until the safepoint");
  w->nheld = 0;
}

static void safepoint(worker_t *w) {
  release_held(w);
  w->safepoints++;
  uint64_t r = wrnd(w);
  if (r % 16 == 0) {
    gc_mutator_safepoint(w->m); /* the inline form */
    return;
  }
  gc_mutator_park(w->m);
  if (r % 64 == 1) {
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL); /* a blocking wait, parked */
  } else if (r % 8 == 2) {
    sched_yield();
  }
  gc_mutator_unpark(w->m);
}

static void do_put(worker_t *w, uint32_t k) {
  uint64_t r = wrnd(w);
  size_t len;
  if (r % 100 == 0)
    len = 33 * 1024 + (size_t)(wrnd(w) % (64 * 1024)); /* large object */
  else if (r % 100 < 10)
    len = 2048 + (size_t)(wrnd(w) % 28000);
  else
    len = sizeof(vhdr_t) + (size_t)(wrnd(w) % 2000);
  uint64_t expires = 0;
  if (wrnd(w) % 10 == 0)
    expires = bc_now_mono_ns() + wrnd(w) % 3000000; /* up to 3 ms */
  char name[32];
  size_t n = keyname(name, k);
  release_held(w); /* the allocation may park */
  int err = 0;
  cache_entry_t *e =
      cache_entry_new(C, w->m, name, n, "s/x", 3, len, expires, &err);
  if (!e) {
    if (err != BC_ELIMIT)
      failure("worker %d: cache_entry_new: %s", w->id, bc_strerror(err));
    w->alloc_fail++;
    return;
  }
  unsigned char *v = (unsigned char *)cache_entry_value(e);
  vhdr_t h = {MAGIC, k, (uint32_t)len, (uint32_t)w->id,
              ((uint64_t)w->id << 48) | (uint64_t)w->ops, 0};
  payload(v + sizeof h, len - sizeof h, h.seq * 0x9e3779b97f4a7c15ull ^ k);
  h.sum = fnv(v + sizeof h, len - sizeof h);
  memcpy(v, &h, sizeof h);
  e->etag = bc_xxh64(v, len, 0);
  bool replaced;
  cache_put(C, e, &replaced);
  w->puts++;
  /* what was just published reads back (unless already expired) */
  cache_entry_t *g = cache_get(C, name, n, bc_now_mono_ns());
  if (g)
    verify(g, k, "read after write");
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  w->m = gc_mutator_new();
  if (!w->m) {
    failure("gc_mutator_new failed");
    return NULL;
  }
  gc_mutator_unpark(w->m);
  long next_sp = 1 + (long)(wrnd(w) % 8);
  for (w->ops = 0; w->ops < ops_per_worker && !atomic_load(&stop_all);
       w->ops++) {
    uint32_t k = (uint32_t)(wrnd(w) % NKEYS);
    uint64_t r = wrnd(w) % 100;
    if (r < 55) {
      char name[32];
      size_t n = keyname(name, k);
      cache_entry_t *e = cache_get(C, name, n, bc_now_mono_ns());
      w->gets++;
      if (e) {
        w->hits++;
        if (verify(e, k, "read") && w->nheld < HOLD) {
          w->held[w->nheld] = e;
          w->held_key[w->nheld++] = k;
        }
      }
    } else if (r < 88) {
      do_put(w, k);
    } else {
      char name[32];
      size_t n = keyname(name, k);
      if (cache_delete(C, name, n, bc_now_mono_ns()) == 0)
        w->dels++;
    }
    if (w->ops + 1 >= next_sp) {
      safepoint(w);
      next_sp = w->ops + 1 + 1 + (long)(wrnd(w) % 8);
    }
  }
  release_held(w);
  gc_mutator_park(w->m);
  gc_mutator_free(w->m);
  return NULL;
}

/* ---- the driver: forced cycles back to back ------------------------------------- */

static _Atomic int workers_done;
static bool driver_verifies;
static long driver_cycles, driver_verifies_done;

static void *driver_main(void *arg) {
  (void)arg;
  gc_stats_t *st = malloc(sizeof *st);
  while (!atomic_load(&workers_done)) {
    gc_collect(NULL);
    driver_cycles++;
    gc_read_stats(st); /* as /debug/memstats would, concurrently */
    if (driver_verifies && driver_cycles % 4 == 0) {
      gc_verify();
      driver_verifies_done++;
    }
    if (!driver_verifies) { /* phase B: leave room for paced cycles */
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  free(st);
  return NULL;
}

static void watchdog(int sig) {
  (void)sig;
  static const char msg[] =
      "stress: watchdog expired: no progress (a stop-the-world that never "
      "ends?)\n";
  ssize_t rc = write(2, msg, sizeof msg - 1);
  (void)rc;
  _exit(3);
}

/* ---- checks after a phase ---------------------------------------------------------- */

static void quiesce_and_check(const char *phase) {
  /* every TTL runs out, then one cycle reaps the expired entries */
  struct timespec ts = {0, 10 * 1000 * 1000};
  nanosleep(&ts, NULL);
  gc_collect(NULL);
  gc_verify();

  gc_mutator_t *m = gc_mutator_new();
  assert_non_null(m);
  gc_mutator_unpark(m);
  uint64_t found = 0, mem = 0, bytes = 0;
  for (uint32_t k = 0; k < NKEYS; k++) {
    char name[32];
    size_t n = keyname(name, k);
    cache_entry_t *e = cache_get(C, name, n, bc_now_mono_ns());
    if (!e)
      continue;
    found++;
    mem += gc_usable_size(e);
    bytes += e->value_len;
    verify(e, k, "final check");
  }
  gc_mutator_park(m);
  gc_mutator_free(m);
  assert_int_equal(atomic_load(&failures), 0);

  cache_stats_t cs;
  cache_read_stats(C, &cs);
  gc_stats_t *g = malloc(sizeof *g);
  gc_read_stats(g);
  print_message("%s: %" PRIu64 " entries (%" PRIu64 " KiB in the heap, "
                "other_sys %" PRIu64 " KiB), %" PRIu64 " hits, %" PRIu64
                " misses, %" PRIu64 " inserts, %" PRIu64 " replaces, %" PRIu64
                " deletes, %" PRIu64 " expired, %" PRIu64 " evicted; %u "
                "cycles (%u forced), %" PRIu64 " frees\n",
                phase, cs.entries, cs.mem / 1024, g->other_sys / 1024,
                cs.hits, cs.misses, cs.inserts, cs.replaces,
                cs.deletes, cs.expired, cs.evicted, g->num_gc,
                g->num_forced_gc, g->frees);
  if (cs.entries != found || cs.mem != mem || cs.bytes != bytes)
    fail_msg("%s: index stats say %" PRIu64 " entries / %" PRIu64
             " bytes / %" PRIu64 " heap bytes; lookups found %" PRIu64
             " / %" PRIu64 " / %" PRIu64,
             phase, cs.entries, cs.bytes, cs.mem, found, bytes, mem);
  /* the heap holds exactly the indexed entries: nothing leaked, nothing
   * reachable was freed */
  if (g->heap_objects != found || g->alloc != mem)
    fail_msg("%s: heap holds %" PRIu64 " objects / %" PRIu64
             " bytes, the index %" PRIu64 " entries / %" PRIu64 " bytes",
             phase, g->heap_objects, g->alloc, found, mem);
  free(g);
}

static void run_phase(const char *name, bool verifying) {
  worker_t w[NWORKERS];
  memset(w, 0, sizeof w);
  atomic_store(&workers_done, 0);
  driver_verifies = verifying;
  driver_cycles = driver_verifies_done = 0;
  gc_stats_t *g0 = malloc(sizeof *g0);
  gc_read_stats(g0);
  pthread_t driver;
  assert_int_equal(pthread_create(&driver, NULL, driver_main, NULL), 0);
  for (int i = 0; i < NWORKERS; i++) {
    w[i].id = i + 1;
    w[i].rng = mix64(seed ^ (uint64_t)(i + 1) ^ (uint64_t)(uintptr_t)name[6]);
    assert_int_equal(pthread_create(&w[i].thread, NULL, worker_main, &w[i]),
                     0);
  }
  long ops = 0, hits = 0, gets = 0, fails = 0;
  for (int i = 0; i < NWORKERS; i++) {
    pthread_join(w[i].thread, NULL);
    ops += w[i].ops;
    hits += w[i].hits;
    gets += w[i].gets;
    fails += w[i].alloc_fail;
  }
  atomic_store(&workers_done, 1);
  pthread_join(driver, NULL);
  gc_stats_t *g = malloc(sizeof *g);
  gc_read_stats(g);
  print_message("%s: %ld ops, %ld/%ld reads hit, %ld allocations refused, "
                "%u cycles (%ld by the driver, %ld verifies)\n",
                name, ops, hits, gets, fails, g->num_gc - g0->num_gc,
                driver_cycles, driver_verifies_done);
  if (atomic_load(&failures))
    fail_msg("%s: %s", name, first_failure);
  assert_int_equal(ops, (long)NWORKERS * ops_per_worker);
  assert_true(hits > 0);
  assert_true(g->num_gc - g0->num_gc >= 3);
  free(g0);
  free(g);
  quiesce_and_check(name);
  if (!verifying) { /* the live data outgrew the budget: the cache evicted */
    cache_stats_t cs;
    cache_read_stats(C, &cs);
    assert_true(cs.evicted > 0);
  }
}

static void test_stress(void **state) {
  (void)state;
  const char *env = getenv("BUFCACHE_STRESS_SEED");
  seed = env ? strtoull(env, NULL, 0)
             : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  env = getenv("BUFCACHE_STRESS_OPS");
  ops_per_worker = env ? atol(env) : DEFAULT_OPS;
  print_message("stress seed: %" PRIu64 " (BUFCACHE_STRESS_SEED=%" PRIu64
                " to replay), %ld ops per worker, %d workers\n",
                seed, seed, ops_per_worker, NWORKERS);
  signal(SIGALRM, watchdog);
  alarm(240);

  gc_config_t cfg = {.memory_limit = 1024 * MIB,
                     .gc_percent = GC_PERCENT_OFF,
                     .nprocs = NWORKERS};
  assert_int_equal(gc_init(&cfg), 0);
  /* allocation sampling off (tests/unit/test_memprof.c covers it): its
   * unwinder reads .eh_frame pages into RSS, which phase B's 12 MiB limit
   * counts as base_sys, and sanitizer builds have little room left there */
  gc_set_mem_profile_rate(0);
  C = cache_new(NULL);
  assert_non_null(C);
  assert_int_equal(gc_start(), 0);

  run_phase("phase A (forced cycles, gc_verify)", true);

  gc_set_memory_limit(12 * MIB);
  gc_set_percent(100);
  run_phase("phase B (12 MiB limit, GOGC=100)", false);

  gc_stop();
  cache_free(C);
  gc_close();
  alarm(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress),
  };
  return cmocka_run_group_tests_name("gc_stress", tests, NULL, NULL);
}
