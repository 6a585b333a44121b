/* gc_internal.h - every struct of the gc module, in one place.
 *
 * Glossary
 *   page      8 KiB, the unit the page heap hands out.
 *   span      a run of pages; either free, or in use for one size class
 *             (small objects) or for one large object.
 *   class     a small-object size class (16 B .. 64 KiB); class 0 is unused.
 *   mcache    a mutator's cache: one span per class to allocate from.
 *   central   per-class lists of spans that no mcache holds.
 *   sweep     turning a span's mark bits into its alloc bits after a mark.
 *   black     marked; an object allocated while marking is born black.
 *
 * Locks, in the order they may nest:
 *   heap.mutators_lock  > central[c].lock > heap.lock (the page heap)
 * The fast path of allocation takes none of them.
 */
#ifndef GC_INTERNAL_H
#define GC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "gc.h"

#define GC_PAGE_SHIFT 13
#define GC_PAGE_SIZE ((size_t)1 << GC_PAGE_SHIFT)
#define GC_MAX_SMALL 65536
#define GC_MAX_OBJS 512 /* objects per small span, at most */
#define GC_BITMAP_WORDS (GC_MAX_OBJS / 64)
#define GC_DIVMUL_SHIFT 48
#define GC_COMMIT_CHUNK ((size_t)4 << 20) /* heap grows by this much */

enum span_state { SPAN_FREE = 0, SPAN_SMALL = 1, SPAN_LARGE = 2 };

/* A span. Metadata lives outside the span's pages (mimalloc's and Go's
 * choice), so a freed page can be returned to the OS whole.
 *
 * Invariants (for a span not cached by an mcache and already swept):
 *   alloccount == popcount(allocbits)
 *   markbits == 0 outside the mark phase
 *   specials ⊆ allocbits
 * Ownership: a span is on exactly one list (a central list, the page heap's
 * free lists, the large lists) or held by exactly one mcache or sweeper, and
 * only the holder writes allocbits, freeindex and alloccount. markbits and
 * specials are set atomically by any thread while marking.
 */
typedef struct gc_span {
  uintptr_t base;  /* first byte; page-aligned */
  uint32_t npages; /* pages in the span */
  uint8_t state;   /* enum span_state */
  uint8_t cls;     /* size class, 0 for large and free spans */
  uint8_t released; /* free span: pages were madvised away */
  uint8_t onlist;  /* debug: which list holds it (LIST_*) */
  uint32_t elemsize; /* bytes per object (large: npages*page) */
  uint16_t nelems;   /* objects in the span */
  uint16_t freeindex; /* allocation scans for a free slot from here */
  uint16_t alloccount; /* allocated objects */
  uint16_t _pad;
  uint64_t free_since_ns; /* free span: when it became free (scavenger) */
  struct gc_span *next, *prev; /* list links; owner's lock */
  uint64_t allocbits[GC_BITMAP_WORDS];
  _Atomic uint64_t markbits[GC_BITMAP_WORDS];
  _Atomic uint64_t specials[GC_BITMAP_WORDS]; /* has a finalizer */
  /* sampled objects of this span (gc/memprof.c), by index; written by the
   * span's holder only (the allocating mcache, the sweeper) */
  struct gc_psample *prof;
} gc_span_t;

enum { LIST_NONE, LIST_FREE, LIST_PARTIAL, LIST_FULL, LIST_UNSWEPT,
       LIST_LARGE, LIST_LARGE_UNSWEPT, LIST_MCACHE };

typedef struct span_list {
  gc_span_t *head, *tail;
  size_t n;
} span_list_t;

/* Per-class central lists: partial (swept, with free slots), full (swept, no
 * free slot), unswept (awaiting this cycle's sweep). */
typedef struct gc_central {
  pthread_mutex_t lock;
  span_list_t partial, full, unswept;
} BC_ALIGNED_CL gc_central_t;

/* Per-mutator counters: written only by the owner (relaxed stores), summed
 * by readers. */
typedef struct mcache_stats {
  _Atomic uint64_t mallocs;
  _Atomic uint64_t total_alloc; /* bytes */
  _Atomic uint64_t large_mallocs, large_bytes;
  _Atomic uint64_t by_size[GC_MAX_CLASSES];
} mcache_stats_t;

typedef struct pool_local {
  void *primary;    /* intrusive list; owner */
  void *victim;     /* owner; moved by the collector under STW */
  void *dropped;    /* old victims; collector only, freed after the pause */
  _Atomic uint64_t gets, puts, news, victim_hits;
} pool_local_t;

enum { MUT_RUNNING = 0, MUT_PARKED = 1 };

struct gc_mutator {
  _Atomic int state;  /* MUT_*; written by the owner, read by the collector */
  int id;
  bool detached;
  gc_span_t *alloc[GC_MAX_CLASSES]; /* the mcache: owner only */
  /* spans this mcache filled since the last flush, by class: owner only;
   * the flush (STW, or the mutator's end) splices them into the central
   * full lists, so a refill takes no lock to retire a full span */
  span_list_t full[GC_MAX_CLASSES];
  /* allocation sampling (gc/memprof.c), owner only: bytes left until the
   * next sample (gc_alloc subtracts each object's size; below zero takes a
   * sample), the labels current on the mutator, the sampler's RNG state */
  int64_t next_sample;
  const void *labels;
  uint64_t rng;
  uint64_t prof_gen; /* the rate's generation next_sample was drawn for */
  mcache_stats_t st;
  pool_local_t pools[GC_MAX_POOLS];
  struct gc_mutator *next; /* heap.mutators; heap.mutators_lock */
};

struct gc_pool {
  int id;
  const char *name;
  void *(*new_fn)(void *arg);
  void (*free_fn)(void *obj, void *arg);
  void *arg;
  _Atomic uint64_t dropped; /* victims handed to free_fn */
};

typedef struct roots_entry {
  enum gc_roots_kind kind;
  gc_scan_fn fn;
  void *arg;
} roots_entry_t;

enum gc_phase { PHASE_OFF = 0, PHASE_MARK = 1, PHASE_SWEEP = 2 };

#define GC_MAX_ROOTS 8
#define GC_MAX_HOOKS 8
#define GC_MAX_MUTATORS 256

/* The heap: all module state in one struct (SQLite's mem5 habit). */
typedef struct gc_heap {
  /* first: cache-line aligned, so nothing pads the struct before it */
  gc_central_t central[GC_MAX_CLASSES];

  /* address space: [base, base+reserved) reserved PROT_NONE;
   * [base, base+committed) read-write; pages below 'grown' handed out once */
  uintptr_t base;
  size_t reserved, committed; /* heap.lock */
  _Atomic size_t grown;        /* written under heap.lock, read anywhere */
  gc_span_t **spanmap; /* page index -> span; reserved/page entries */
  size_t spanmap_bytes;

  /* page heap (heap.lock) */
  pthread_mutex_t lock;
  span_list_t free_small[128]; /* free spans of n pages, n < 128 */
  span_list_t free_big;        /* free spans of >= 128 pages, unsorted */
  span_list_t large, large_unswept;
  gc_span_t *span_freelist;    /* recycled span structs */
  gc_span_t *slabs;            /* slabs of span structs, for gc_close */
  _Atomic uint64_t span_structs;       /* allocated span structs */
  _Atomic uint64_t span_structs_inuse;

  /* accounting, bytes; atomics so readers need no lock */
  _Atomic uint64_t heap_alloc;   /* in allocated or mcache-held slots */
  _Atomic uint64_t heap_inuse;   /* pages in in-use spans */
  _Atomic uint64_t heap_released;
  _Atomic uint64_t heap_objects_freed; /* cumulative frees */
  _Atomic uint64_t large_frees;
  _Atomic uint64_t by_size_frees[GC_MAX_CLASSES];
  _Atomic uint64_t meta_sys;      /* span structs, mcaches, spanmap touched */
  _Atomic uint64_t other_sys;     /* libc heap in use (mallinfo2), sampled */
  /* the rest of the process's resident memory (binary, libraries, thread
   * stacks, libc heap beyond what is in use): RSS less the heap's pages,
   * meta_sys and other_sys, sampled with other_sys. Counted against the
   * soft limit (gc__offheap), so the limit bounds RSS, not only the heap;
   * not reported in any MemStats field. */
  _Atomic uint64_t base_sys;
  _Atomic uint64_t alloc_failures;
  _Atomic uint64_t swept_live_bytes; /* live bytes found by this sweep */
  _Atomic uint64_t heap_empty; /* pages of emptied spans kept for reuse */

  /* collector */
  _Atomic int phase;        /* enum gc_phase; changes only under STW */
  _Atomic int alloc_black;  /* new objects are born marked */
  /* stw_request is gc__stw_request (gc.h), exported for the inline
   * safepoint check */
  pthread_mutex_t mutators_lock;
  /* held by gc__sweep_one around the span it sweeps, and by gc_verify, so
   * the verifier never sees a span half swept (the collector's sweep runs
   * while the world is stopped for the check). Order: after mutators_lock,
   * before central[c].lock. */
  pthread_mutex_t sweep_mu;
  gc_mutator_t *mutators;        /* attached; mutators_lock */
  /* every mutator ever attached, by id; never reused, freed at gc_close, so
   * readers can sum counters without a lock */
  gc_mutator_t *_Atomic slots[GC_MAX_MUTATORS];
  _Atomic int nmutators, next_mutator_id; /* written under mutators_lock */
  pthread_mutex_t stw_mu;
  pthread_cond_t stw_cv;

  pthread_mutex_t run_mu;   /* held by the collector for a whole cycle */
  pthread_mutex_t cycle_mu;
  pthread_cond_t cycle_cv;    /* collector waits here for work */
  pthread_cond_t done_cv;     /* gc_collect waits here */
  uint64_t cycles_requested;  /* cycle_mu */
  uint64_t cycles_done;       /* cycle_mu */
  uint64_t cycles_started;    /* cycle_mu */
  _Atomic int cycle_pending;  /* a trigger is waiting for the collector */
  _Atomic int cycle_active;   /* a cycle runs (set and cleared by the collector) */
  _Atomic int limit_waiters;  /* allocations parked over the limit for a cycle */
  /* this cycle's sweep gives every emptied span back to the page heap, not
   * only those that stayed empty for a whole cycle (heap.c, "Emptied
   * spans"); set under STW at mark termination */
  _Atomic int sweep_release;
  /* (the 4-byte fields of the struct sit together here, the flags at its
   * end: clang-tidy's padding check) */
  _Atomic int gc_percent;       /* pacing */
  int nprocs;
  int nroots, nhooks;           /* roots[], hooks[] below */
  _Atomic int npools;           /* pools[] below */
  bool forced_pending;        /* cycle_mu */
  bool release_pending;       /* cycle_mu: a cycle someone waits for */
  bool stopping;              /* cycle_mu */
  pthread_t thread;

  /* pacing */
  _Atomic uint64_t next_gc;
  _Atomic uint64_t heap_live;   /* after the last sweep */
  _Atomic uint64_t memory_limit;
  _Atomic uint64_t live_objects;

  roots_entry_t roots[GC_MAX_ROOTS];
  struct { void (*fn)(void *); void *arg; } hooks[GC_MAX_HOOKS];
  gc_finalizer_fn finalizer;
  void (*pressure)(uint64_t budget);
  void (*observer)(const gc_cycle_info_t *info);
  gc_pool_t *pools[GC_MAX_POOLS];

  /* stats written by the collector thread (stats_mu for readers) */
  pthread_mutex_t stats_mu;
  uint32_t num_gc, num_forced_gc;
  uint64_t pause_total_ns, last_gc_unix_ns;
  uint64_t pause_ns[GC_PAUSE_RING], pause_end[GC_PAUSE_RING];
  uint64_t last_pause[2];
  uint64_t pause_hist[GC_PAUSE_BUCKETS + 1]; /* see gc_stats_t */
  uint64_t gc_cpu_ns;       /* collector thread CPU + STW pauses x nprocs */
  _Atomic uint64_t pace_sleep_ns; /* background pacing's sleeps */
  uint64_t start_mono_ns;

  _Atomic int fail_os_allocs;

  /* size classes */
  int nclasses;
  uint32_t class_size[GC_MAX_CLASSES];
  uint8_t class_pages[GC_MAX_CLASSES];
  uint16_t class_nelems[GC_MAX_CLASSES];
  /* object index = (offset * class_divmul) >> GC_DIVMUL_SHIFT, exact for
   * every offset in a span of the class (checked at start-up): a multiply
   * where a division would cost ~25 cycles on every mark (Go's divMagic;
   * 48 bits, not 32, because spans here reach 128 KiB of 64 KiB objects) */
  uint64_t class_divmul[GC_MAX_CLASSES];
  bool running; /* gc_start, gc_stop */
  bool gctrace;
  uint8_t size_to_class8[1024 / 8 + 1];      /* sizes <= 1024, by 8 */
  /* sizes above 1024, by 64: every class there is a multiple of 64 */
  uint8_t size_to_class64[(GC_MAX_SMALL - 1024) / 64 + 1];
} gc_heap_t;

extern gc_heap_t gc__heap;

/* memprof.c (see gc.h "allocation profile") */
void gc__memprof_init(void);
void gc__memprof_close(void);
void gc__memprof_mutator_init(gc_mutator_t *m);
/* the sample path: p of elemsize bytes in span s was just allocated; ra is
 * gc_alloc's return address: the stack starts at the frame it returns to,
 * leaving the allocator's own frames out */
void gc__memprof_sample(gc_mutator_t *m, gc_span_t *s, void *p,
                        size_t elemsize, void *ra);
void gc__memprof_sweep(gc_span_t *s); /* before s's mark bits are consumed */
void gc__memprof_free_span_records(gc_span_t *s); /* gc_close */
/* mark termination (STW): a new profile cycle; mutators redraw their next
 * sample if the rate changed */
void gc__memprof_next_cycle(void);
void gc__memprof_post_sweep(void);  /* the cycle's sweep is done */
uint64_t gc__memprof_sys(void);
extern void (*gc__thread_start_hook)(const char *name);
extern void (*gc__thread_stop_hook)(void);

/* heap.c */
int gc__heap_init(void);
void gc__heap_close(void);
gc_span_t *gc__span_of(uintptr_t p);
void gc__mcache_flush(gc_mutator_t *m);
void gc__sweep_prepare(void); /* STW: all in-use spans -> unswept */
bool gc__sweep_one(void);     /* collector: sweeps one span; false if none */
uint64_t gc__scavenge(uint64_t older_than_ns, uint64_t max_bytes);
void gc__verify_locked(void);
bool gc__sys_commit_fail(void);
void gc__trigger(void);
bool gc__collect_for_limit(gc_mutator_t *m, size_t need);

/* Everything outside the heap's in-use pages that counts against the soft
 * limit: GC metadata, the libc heap, the rest of RSS (see base_sys). */
static inline uint64_t gc__offheap(void) {
  gc_heap_t *h = &gc__heap;
  return atomic_load_explicit(&h->meta_sys, memory_order_relaxed) +
         atomic_load_explicit(&h->other_sys, memory_order_relaxed) +
         atomic_load_explicit(&h->base_sys, memory_order_relaxed);
}

/* What the soft limit is compared with: the heap's in-use pages plus
 * everything off the heap. */
static inline uint64_t gc__limit_used(void) {
  return atomic_load_explicit(&gc__heap.heap_inuse, memory_order_relaxed) +
         gc__offheap();
}

static inline int gc__size_class(size_t size) {
  gc_heap_t *h = &gc__heap;
  if (size <= 1024)
    return h->size_to_class8[(size + 7) >> 3];
  return h->size_to_class64[(size - 1024 + 63) >> 6];
}

#endif
