/* gc.h - bufcache's garbage-collected heap: the public API.
 *
 * One heap per process (like Go's mheap_). Threads that allocate attach as
 * mutators; each mutator owns a per-thread cache (no lock on the fast path)
 * and a safepoint state. Objects are flat byte blocks: the collector does not
 * trace pointers inside objects; an object lives while a root names it.
 * Roots are supplied by scanners that other modules register. There is no
 * gc_free(): unreachable objects are reclaimed by the next cycle.
 *
 * The design essay (invariants, phases, pacing) is at the top of
 * gc/collector.c; the allocator's paths are described in gc/heap.c.
 */
#ifndef GC_H
#define GC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bc.h"

typedef struct gc_mutator gc_mutator_t;

#define GC_PERCENT_OFF (-1)

typedef struct gc_config {
  uint64_t memory_limit; /* soft limit in bytes on heap + GC metadata */
  int gc_percent;        /* GOGC; GC_PERCENT_OFF disables proactive cycles */
  bool gctrace;          /* one line per cycle to stderr */
  int nprocs;            /* mutator threads, for GCCPUFraction's denominator */
} gc_config_t;

/* Heap life cycle. gc_init reserves address space and starts nothing;
 * gc_start launches the collector thread; gc_stop joins it (no cycle is
 * running when it returns); gc_close unmaps everything (no mutator may be
 * attached). */
int gc_init(const gc_config_t *cfg);
int gc_start(void);
void gc_stop(void);
void gc_close(void);

/* Mutators. A thread attaches once and detaches before it exits. A new
 * mutator starts parked: call gc_mutator_unpark before allocating. */
gc_mutator_t *gc_mutator_new(void);
void gc_mutator_free(gc_mutator_t *m);

/* Safepoints. A mutator is "parked" while it may be stopped for a
 * stop-the-world phase: bracket every blocking wait with park/unpark.
 * unpark blocks while a stop-the-world phase is in progress. Between unpark
 * and park the mutator must not block on I/O for long. */
void gc_mutator_park(gc_mutator_t *m);
void gc_mutator_unpark(gc_mutator_t *m);

/* A safepoint inside running code: if a stop-the-world phase is waiting,
 * park here until it ends. Call it only where the mutator's roots are
 * consistent (e.g. at the entry of a request handler). */
extern _Atomic int gc__stw_request;
void gc__safepoint_slow(gc_mutator_t *m);
static inline void gc_mutator_safepoint(gc_mutator_t *m) {
  if (BC_UNLIKELY(atomic_load_explicit(&gc__stw_request, memory_order_relaxed)))
    gc__safepoint_slow(m);
}

/* Allocation. Returns an object of at least size bytes (contents undefined),
 * or NULL with *err set: BC_ELIMIT (the soft memory limit would be exceeded
 * even after a collection), BC_ENOMEM (the OS refused memory). Objects are
 * 16-byte aligned. May run a collection while parked (slow path only). */
void *gc_alloc(gc_mutator_t *m, size_t size, int *err);
/* Usable size of an object returned by gc_alloc. */
size_t gc_usable_size(const void *obj);

/* Compressed references: a heap object as 32 bits (its offset from the
 * heap's base in 16-byte units, plus one; 0 is NULL). The reservation is
 * 64 GiB and objects are 16-byte aligned, so every object of 32 bytes or
 * more has one (only the last 16-byte unit could not start an object). For dense structures that link heap objects (the cache's
 * slots and queues); the collector does not trace them either. */
extern uintptr_t gc__heap_base;
static inline uint32_t gc_ref(const void *obj) {
  return obj ? (uint32_t)(((uintptr_t)obj - gc__heap_base) >> 4) + 1 : 0;
}
static inline void *gc_deref(uint32_t ref) {
  return ref ? (void *)(gc__heap_base + ((uintptr_t)(ref - 1) << 4)) : NULL;
}

/* Roots. A scanner calls gc_mark() on every object it reaches.
 * GC_ROOTS_STW scanners run while every mutator is parked (the request
 * contexts). GC_ROOTS_CONCURRENT scanners run on the collector thread while
 * mutators run; the data structure they walk must call gc_barrier() on every
 * object it unlinks or replaces (the cache index). */
enum gc_roots_kind { GC_ROOTS_STW, GC_ROOTS_CONCURRENT };
typedef void (*gc_scan_fn)(void *arg);
void gc_register_roots(enum gc_roots_kind kind, gc_scan_fn fn, void *arg);
/* Removes a scanner; waits for a running cycle to end first, so fn is not
 * running and will not run with arg after it returns. Not from a mutator
 * that is running (park it first). */
void gc_unregister_roots(enum gc_roots_kind kind, gc_scan_fn fn, void *arg);

/* Shades obj (sets its mark bit). Safe from any thread during a cycle. */
void gc_mark(void *obj);

/* gc_mark on each of objs[0..n) (NULL entries skipped), with the span map
 * and span metadata of later objects prefetched while earlier ones are
 * marked: for scanners that walk many objects at once. */
void gc_mark_batch(void *const *objs, size_t n);

/* Concurrent scanners call this between units of work (a shard), holding
 * no lock. The collector may sleep here to keep its share of a CPU that
 * busy mutators need (collector.c, "background pacing"). A no-op outside
 * the collector thread's marking. */
void gc_scan_pace(void);

/* The deletion barrier: call with the old value whenever a root that a
 * concurrent scanner may not have visited yet is dropped or overwritten. */
extern _Atomic int gc__barrier_on;
void gc__barrier_slow(void *old);
static inline void gc_barrier(void *old) {
  if (BC_UNLIKELY(atomic_load_explicit(&gc__barrier_on, memory_order_relaxed)))
    gc__barrier_slow(old);
}

/* Is a collection's marking in progress? (For scanners that want to know.) */
bool gc_marking(void);

/* Finalization of special objects: gc_set_finalizer(obj) asks that the hook
 * be called with obj when the sweeper frees it (on the collector thread, or a
 * mutator sweeping lazily). One hook per heap. */
typedef void (*gc_finalizer_fn)(void *obj);
void gc_set_finalizer_hook(gc_finalizer_fn fn);
void gc_set_finalizer(void *obj);

/* Memory pressure. Before each cycle's marking starts (world running,
 * barrier off) the collector calls the hook with the bytes that reachable
 * data may occupy: the soft limit less GC metadata, the libc heap, and room
 * for the garbage that accumulates between cycles. Whatever the hook drops
 * from its roots before returning is reclaimed by that same cycle. */
void gc_set_pressure_hook(void (*fn)(uint64_t budget));

/* Cycle observer: called on the collector thread after every cycle. */
typedef struct gc_cycle_info {
  uint64_t num;                     /* 1-based cycle number */
  uint64_t pause_start_ns, mark_ns, pause_end_ns, sweep_ns;
  uint64_t heap_before, heap_after, live, goal; /* bytes */
  double cpu_fraction;
  bool forced;
} gc_cycle_info_t;
void gc_set_cycle_observer(void (*fn)(const gc_cycle_info_t *info));

/* Cycle hooks run during the start-of-cycle stop-the-world phase, before the
 * STW root scanners (pools rotate here). Keep them short. */
void gc_register_cycle_hook(void (*fn)(void *arg), void *arg);

/* Forced collection: runs a full cycle (mark and sweep) that starts after
 * the call and blocks until it ends. From a mutator thread pass the mutator
 * (it is parked while waiting); from other threads pass NULL. */
void gc_collect(gc_mutator_t *m);
/* Returns free pages to the OS (madvise), all of them. */
uint64_t gc_scavenge_all(void);

/* Tuning, live. Return the previous value. */
int gc_set_percent(int pct);
uint64_t gc_set_memory_limit(uint64_t bytes);

/* Pools: sync.Pool's analogue. Per-mutator primary and victim lists of
 * fixed-shape objects; at each cycle start the primary list becomes the
 * victim list and the old victims are handed to free_fn. Objects come from
 * new_fn (any allocator; the pool does not care). Objects must be at least
 * one pointer in size; the pool overwrites their first word while pooled. */
typedef struct gc_pool gc_pool_t;
gc_pool_t *gc_pool_new(const char *name, void *(*new_fn)(void *arg),
                       void (*free_fn)(void *obj, void *arg), void *arg);
void *gc_pool_get(gc_mutator_t *m, gc_pool_t *p);
void gc_pool_put(gc_mutator_t *m, gc_pool_t *p, void *obj);

/* ---- allocation profile (Go's runtime.MemProfile; gc/memprof.c) ----------
 * gc_alloc samples allocations: each mutator counts down the bytes to its
 * next sample, drawn from an exponential distribution whose mean is the
 * rate (Go's MemProfileRate), so on average one sample per rate bytes, and
 * a sample's bytes stand for 1/(1-exp(-size/rate)) times as much (Go's
 * unbiased scaling, applied by whoever encodes the profile). A sample
 * records the caller's stack and the labels current on the mutator in a
 * bucket keyed by stack and labels; the sweeper reports a sampled object's
 * death. The figures a reader sees are those of the last completed cycle
 * (Go's rule: allocations up to that cycle's mark termination, frees found
 * by its sweep), so a profile is a consistent snapshot. */
#define GC_MEMPROF_DEFAULT_RATE (512 * 1024)
#define GC_MEMPROF_MAX_STACK 32
/* Bytes per sample: 0 turns sampling off, 1 samples every allocation.
 * Returns the previous value. Mutators attached afterwards start with it;
 * the others take it at the next cycle's second pause (each has drawn its
 * distance to the next sample already). */
int64_t gc_set_mem_profile_rate(int64_t bytes);
int64_t gc_mem_profile_rate(void);
/* Labels current on m (borrowed, opaque to the heap; NULL for none): every
 * allocation sample m takes records the pointer, and buckets are keyed by
 * it, so it must stay valid and mean the same for the life of the process
 * (the api interns its label sets). Owner thread only; one store. */
void gc_mutator_set_labels(gc_mutator_t *m, const void *labels);

typedef struct gc_memprof_record {
  /* raw sampled figures, not scaled */
  uint64_t alloc_objects, alloc_bytes, free_objects, free_bytes;
  const void *labels;
  int nstack;
  const uintptr_t *stack; /* return addresses, innermost first */
} gc_memprof_record_t;
/* Calls fn for every bucket with samples, as of the last completed cycle.
 * Holds the profile lock (which allocation samples take): fn must be quick
 * and must not allocate from this heap. */
void gc_memprof_read(void (*fn)(const gc_memprof_record_t *r, void *arg),
                     void *arg);

/* Hooks run on the collector thread when it starts and before it exits
 * (a profiler registers the thread). Set before gc_start. */
void gc_set_thread_hooks(void (*start)(const char *name), void (*stop)(void));

/* Statistics, with Go's runtime.MemStats meanings. */
#define GC_PAUSE_RING 256
/* The stop-the-world pause histogram: gc_pause_bucket_ns[i] is bucket i's
 * inclusive upper bound in ns; pauses above the last bound are counted in
 * pause_hist[GC_PAUSE_BUCKETS]. Fixed at compile time. */
#define GC_PAUSE_BUCKETS 16
extern const uint64_t gc_pause_bucket_ns[GC_PAUSE_BUCKETS];
typedef struct gc_size_stats {
  uint32_t size;
  uint64_t mallocs, frees;
} gc_size_stats_t;

typedef struct gc_pool_stats {
  const char *name;
  uint64_t gets, puts, news, victim_hits, dropped;
} gc_pool_stats_t;

#define GC_MAX_CLASSES 120 /* 113 in use (gc/heap.c init_classes) */
#define GC_MAX_POOLS 8

typedef struct gc_stats {
  uint64_t alloc;         /* bytes of allocated heap objects (HeapAlloc) */
  uint64_t total_alloc;   /* cumulative bytes allocated */
  uint64_t sys;           /* bytes obtained from the OS, all kinds */
  uint64_t mallocs, frees;
  uint64_t heap_sys, heap_idle, heap_inuse, heap_released, heap_objects;
  uint64_t mspan_inuse, mspan_sys, mcache_inuse, mcache_sys, gc_sys;
  uint64_t other_sys; /* libc heap in use (index, MHD pools, responses) */
  uint64_t next_gc, last_gc_unix_ns, pause_total_ns;
  uint64_t pause_ns[GC_PAUSE_RING], pause_end[GC_PAUSE_RING];
  uint32_t num_gc, num_forced_gc;
  double gc_cpu_fraction;
  bool enable_gc;
  int gc_percent;
  uint64_t memory_limit;
  uint64_t heap_live; /* bytes marked live by the last completed cycle */
  uint64_t heap_marked_objects;
  /* bytes of in-use spans with no object, kept a cycle for their class to
   * reuse (gc/heap.c, "Emptied spans"); part of heap_inuse */
  uint64_t heap_empty;
  /* nanoseconds the collector slept to leave a contended CPU to running
   * mutators while marking (collector.c, "background pacing") */
  uint64_t pace_sleep_ns;
  /* what the soft limit is compared with: in-use heap pages plus GC
   * metadata, the libc heap and the rest of RSS (sampled) */
  uint64_t limit_used;
  int nclasses;
  gc_size_stats_t by_size[GC_MAX_CLASSES];
  int npools;
  gc_pool_stats_t pools[GC_MAX_POOLS];
  uint64_t last_pause_ns[2]; /* the two pauses of the last cycle */
  uint64_t alloc_failures;   /* allocations refused (limit or OS) */
  /* every stop-the-world pause (two per cycle), by gc_pause_bucket_ns; not
   * cumulative; the counts add up to 2 * num_gc, the pauses to
   * pause_total_ns */
  uint64_t pause_hist[GC_PAUSE_BUCKETS + 1];
  /* the allocation profile's buckets, table and sample records (Go's
   * BuckHashSys); malloc'd, so other_sys leaves them out */
  uint64_t buckhash_sys;
} gc_stats_t;

/* Fills *st. Takes no lock that the allocation fast path takes; per-mutator
 * counters are summed. */
void gc_read_stats(gc_stats_t *st);

/* Checks the heap's invariants (accounting, span maps, bitmaps); aborts on a
 * violation. Stops the world while it runs. For tests. */
void gc_verify(void);

/* Fault injection, for tests: the next n OS memory requests fail (0 = off). */
void gc_fail_next_os_allocs(int n);

#endif
