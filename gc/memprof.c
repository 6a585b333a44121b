/* memprof.c - allocation sampling: Go's runtime.MemProfile for this heap.
 * See gc.h "allocation profile" for the contract; this is how it is kept.
 *
 * Sampling (Go's mcache.nextSample)
 *   Each mutator holds next_sample, the bytes left before its next sample.
 *   gc_alloc subtracts the object's size (its size class's, as Go does) and
 *   takes the sample path, noinline, when it goes below zero. The next
 *   distance is drawn from an exponential distribution of mean rate, so
 *   samples form a Poisson process over allocated bytes: an object of size
 *   s is sampled with probability 1-exp(-s/rate), which is why an encoder
 *   scales a bucket's figures by 1/(1-exp(-avg/rate)). rate 0 parks
 *   next_sample at INT64_MAX (never sampled); rate 1 samples everything.
 *
 * Buckets (Go's mprof.go buckets and buckhash)
 *   A sample's stack (libunwind's local unwinder, the allocator's frames
 *   skipped) and the mutator's labels pointer select a bucket in a chained
 *   hash table of BUCKHASH_SIZE heads, allocated on the first sample. A
 *   bucket holds Go's memRecord: "active" counts (what readers see) and
 *   three "future" cycles:
 *     malloc at cycle c      -> future[(c+2) % 3].allocs
 *     free   at cycle c      -> future[(c+1) % 3].frees
 *     mark termination       -> c = c+1                 (next_cycle, STW)
 *     sweep done (cycle c)   -> active += future[(c+1) % 3], then zero it
 *   so the active figures are the allocations made up to the last completed
 *   cycle's mark termination, less the frees that cycle's sweep found: a
 *   consistent snapshot, never a negative in-use count.
 *
 * Deaths (the "specials" of Go's profile records)
 *   Each sampled object gets a record {bucket, index, size} on a list
 *   hanging off its span (gc_span_t.prof). Only the span's holder touches
 *   it: the mcache that allocates from the span adds records, the sweeper
 *   (collector or lazy) removes the dead ones before the span's mark bits
 *   become its alloc bits, and reports each as a free. A span whose list
 *   is empty costs the sweeper one pointer test.
 *
 * Locks: prof_mu guards the buckets, their counts and the cycle number; a
 *   leaf lock (nothing is taken inside it). Samples, sweeps of spans with
 *   records, the post-sweep flush and readers take it; the allocation fast
 *   path never does.
 * Signals: a sample blocks SIGPROF while it unwinds, so a CPU profiler's
 *   handler that also unwinds never re-enters libunwind on this thread.
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "gc_internal.h"

#define BUCKHASH_SIZE 16384 /* heads; a power of two */

typedef struct memrec {
  uint64_t allocs, frees, alloc_bytes, free_bytes;
} memrec_t;

typedef struct gc_pbucket {
  struct gc_pbucket *next;    /* hash chain */
  struct gc_pbucket *allnext; /* every bucket, newest first */
  uint64_t hash;
  const void *labels;
  memrec_t active, future[3];
  int nstk;
  uintptr_t stk[];
} gc_pbucket_t;

typedef struct gc_psample {
  struct gc_psample *next;
  gc_pbucket_t *b;
  uint64_t size; /* bytes counted at the sample (the object's elemsize) */
  uint32_t idx;  /* object index in its span (0 for a large span) */
} gc_psample_t;

static struct {
  pthread_mutex_t mu;
  gc_pbucket_t **hash; /* BUCKHASH_SIZE heads, or NULL before a sample */
  gc_pbucket_t *all;
  uint32_t cycle;
  _Atomic int64_t rate;
  _Atomic uint64_t gen; /* bumped by every rate change */
  _Atomic uint64_t sys; /* bytes: table, buckets, sample records */
} P = {.mu = PTHREAD_MUTEX_INITIALIZER};

void (*gc__thread_start_hook)(const char *name);
void (*gc__thread_stop_hook)(void);

void gc_set_thread_hooks(void (*start)(const char *name), void (*stop)(void)) {
  gc__thread_start_hook = start;
  gc__thread_stop_hook = stop;
}

void gc__memprof_init(void) {
  atomic_store(&P.rate, GC_MEMPROF_DEFAULT_RATE);
}

int64_t gc_set_mem_profile_rate(int64_t bytes) {
  int64_t old = atomic_exchange(&P.rate, bytes < 0 ? 0 : bytes);
  atomic_fetch_add(&P.gen, 1); /* mutators redraw at the next cycle */
  return old;
}

int64_t gc_mem_profile_rate(void) { return atomic_load(&P.rate); }

uint64_t gc__memprof_sys(void) { return atomic_load(&P.sys); }

void gc_mutator_set_labels(gc_mutator_t *m, const void *labels) {
  m->labels = labels;
}

/* xorshift64*: the mutator's own generator, never shared */
static uint64_t rng_next(gc_mutator_t *m) {
  uint64_t x = m->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  m->rng = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* Go's nextSample: an exponential draw of mean rate. */
static int64_t next_sample(gc_mutator_t *m) {
  int64_t rate = atomic_load_explicit(&P.rate, memory_order_relaxed);
  if (rate <= 0)
    return INT64_MAX;
  if (rate == 1)
    return 0;
  double u = (double)((rng_next(m) >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
  double d = -log(u) * (double)rate;
  return d > 0x1.0p40 ? (int64_t)1 << 40 : (int64_t)d;
}

void gc__memprof_mutator_init(gc_mutator_t *m) {
  m->rng = (bc_now_mono_ns() ^ ((uint64_t)(m->id + 1) * 0x9E3779B97F4A7C15ull)) |
           1;
  m->labels = NULL;
  m->prof_gen = atomic_load(&P.gen);
  m->next_sample = next_sample(m);
}

static uint64_t stack_hash(const uintptr_t *stk, int n, const void *labels) {
  uint64_t h = bc_xxh64(stk, (size_t)n * sizeof(*stk), (uintptr_t)labels);
  return h;
}

/* prof_mu held. */
static gc_pbucket_t *bucket_locked(const uintptr_t *stk, int n,
                                   const void *labels) {
  if (!P.hash) {
    P.hash = calloc(BUCKHASH_SIZE, sizeof(*P.hash));
    if (!P.hash)
      return NULL;
    atomic_fetch_add(&P.sys, BUCKHASH_SIZE * sizeof(*P.hash));
  }
  uint64_t h = stack_hash(stk, n, labels);
  gc_pbucket_t **head = &P.hash[h & (BUCKHASH_SIZE - 1)];
  for (gc_pbucket_t *b = *head; b; b = b->next)
    if (b->hash == h && b->labels == labels && b->nstk == n &&
        memcmp(b->stk, stk, (size_t)n * sizeof(*stk)) == 0)
      return b;
  size_t bytes = sizeof(gc_pbucket_t) + (size_t)n * sizeof(uintptr_t);
  gc_pbucket_t *b = calloc(1, bytes);
  if (!b)
    return NULL;
  b->hash = h;
  b->labels = labels;
  b->nstk = n;
  memcpy(b->stk, stk, (size_t)n * sizeof(*stk));
  b->next = *head;
  *head = b;
  b->allnext = P.all;
  P.all = b;
  atomic_fetch_add(&P.sys, bytes);
  return b;
}

#if defined(__SANITIZE_THREAD__)
#define MEMPROF_STEP_UNWIND 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MEMPROF_STEP_UNWIND 1
#endif
#endif

/* The caller's stack into buf. unw_backtrace's fast path (a per-thread
 * trace cache: ~0.15 us for 20 frames, against ~10 us for unw_step) in
 * normal builds. Under ThreadSanitizer the cache's thread-exit destructor
 * locks a mutex after TSan has let go of the thread (a crash in
 * __nptl_deallocate_tsd), so that build steps frame by frame. */
static int capture(void **buf, int max) {
#ifdef MEMPROF_STEP_UNWIND
  unw_context_t uc;
  unw_cursor_t cur;
  int n = 0;
  unw_getcontext(&uc);
  if (unw_init_local(&cur, &uc) == 0) {
    do {
      unw_word_t ip;
      if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || !ip)
        break;
      buf[n++] = (void *)(uintptr_t)ip;
    } while (n < max && unw_step(&cur) > 0);
  }
  return n;
#else
  return unw_backtrace(buf, max);
#endif
}

BC_NOINLINE void gc__memprof_sample(gc_mutator_t *m, gc_span_t *s, void *p,
                                    size_t elemsize, void *ra) {
  m->next_sample = next_sample(m);
  void *buf[GC_MEMPROF_MAX_STACK + 8];
  sigset_t prof, old;
  sigemptyset(&prof);
  sigaddset(&prof, SIGPROF);
  pthread_sigmask(SIG_BLOCK, &prof, &old);
  int n = capture(buf, (int)BC_ARRAY_LEN(buf));
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  /* drop the allocator's frames: everything before gc_alloc's caller */
  int skip = 0;
  while (skip < n && buf[skip] != ra)
    skip++;
  if (skip == n)
    skip = n > 2 ? 2 : 0; /* not found (an unwinder gap): best effort */
  n -= skip;
  if (n > GC_MEMPROF_MAX_STACK)
    n = GC_MEMPROF_MAX_STACK;
  uintptr_t stk[GC_MEMPROF_MAX_STACK];
  for (int i = 0; i < n; i++)
    stk[i] = (uintptr_t)buf[skip + i];
  gc_psample_t *rec = malloc(sizeof(*rec));
  if (!rec)
    return;
  pthread_mutex_lock(&P.mu);
  gc_pbucket_t *b = bucket_locked(stk, n, m->labels);
  if (!b) {
    pthread_mutex_unlock(&P.mu);
    free(rec);
    return;
  }
  memrec_t *r = &b->future[(P.cycle + 2) % 3];
  r->allocs++;
  r->alloc_bytes += elemsize;
  pthread_mutex_unlock(&P.mu);
  atomic_fetch_add(&P.sys, sizeof(*rec));
  rec->b = b;
  rec->size = elemsize;
  rec->idx = s->state == SPAN_LARGE
                 ? 0
                 : (uint32_t)(((uintptr_t)p - s->base) / s->elemsize);
  rec->next = s->prof;
  s->prof = rec;
}

void gc__memprof_sweep(gc_span_t *s) {
  gc_psample_t *dead = NULL;
  for (gc_psample_t **pp = &s->prof, *r; (r = *pp);) {
    uint64_t bit = 1ull << (r->idx & 63);
    if (atomic_load_explicit(&s->markbits[r->idx >> 6], memory_order_relaxed) &
        bit) {
      pp = &r->next;
      continue;
    }
    *pp = r->next;
    r->next = dead;
    dead = r;
  }
  if (!dead)
    return;
  pthread_mutex_lock(&P.mu);
  uint32_t slot = (P.cycle + 1) % 3;
  for (gc_psample_t *r = dead; r; r = r->next) {
    r->b->future[slot].frees++;
    r->b->future[slot].free_bytes += r->size;
  }
  pthread_mutex_unlock(&P.mu);
  while (dead) {
    gc_psample_t *next = dead->next;
    free(dead);
    atomic_fetch_sub(&P.sys, sizeof(*dead));
    dead = next;
  }
}

void gc__memprof_free_span_records(gc_span_t *s) {
  while (s->prof) {
    gc_psample_t *next = s->prof->next;
    free(s->prof);
    s->prof = next;
  }
}

void gc__memprof_next_cycle(void) {
  pthread_mutex_lock(&P.mu);
  P.cycle++;
  pthread_mutex_unlock(&P.mu);
  /* the world is stopped: a rate changed since a mutator drew its
   * distance to the next sample takes effect now (rate 0 had left it at
   * INT64_MAX, which would never run out) */
  uint64_t gen = atomic_load(&P.gen);
  for (gc_mutator_t *m = gc__heap.mutators; m; m = m->next)
    if (m->prof_gen != gen) {
      m->prof_gen = gen;
      m->next_sample = next_sample(m);
    }
}

void gc__memprof_post_sweep(void) {
  pthread_mutex_lock(&P.mu);
  uint32_t slot = (P.cycle + 1) % 3;
  for (gc_pbucket_t *b = P.all; b; b = b->allnext) {
    memrec_t *f = &b->future[slot];
    b->active.allocs += f->allocs;
    b->active.frees += f->frees;
    b->active.alloc_bytes += f->alloc_bytes;
    b->active.free_bytes += f->free_bytes;
    memset(f, 0, sizeof(*f));
  }
  pthread_mutex_unlock(&P.mu);
}

void gc_memprof_read(void (*fn)(const gc_memprof_record_t *r, void *arg),
                     void *arg) {
  pthread_mutex_lock(&P.mu);
  for (gc_pbucket_t *b = P.all; b; b = b->allnext) {
    if (!b->active.allocs)
      continue;
    gc_memprof_record_t r = {b->active.allocs, b->active.alloc_bytes,
                             b->active.frees, b->active.free_bytes,
                             b->labels, b->nstk, b->stk};
    fn(&r, arg);
  }
  pthread_mutex_unlock(&P.mu);
}

void gc__memprof_close(void) {
  pthread_mutex_lock(&P.mu);
  for (gc_pbucket_t *b = P.all; b;) {
    gc_pbucket_t *next = b->allnext;
    free(b);
    b = next;
  }
  P.all = NULL;
  free(P.hash);
  P.hash = NULL;
  atomic_store(&P.sys, 0);
  pthread_mutex_unlock(&P.mu);
}
