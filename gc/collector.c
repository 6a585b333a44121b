/* collector.c - bufcache's garbage collector.
 *
 * A concurrent, non-moving mark-sweep collector for a flat heap, after Go's
 * (runtime/mgc.go), adapted to what bufcache stores: objects hold no heap
 * pointers, so marking is shading the roots, nothing more. Roots are the
 * cache index (every entry), the in-flight request contexts (the entries
 * they serve, their upload buffers), registered by the modules that own them.
 *
 * The invariant (snapshot-at-the-beginning, Yuasa's deletion barrier)
 * ------------------------------------------------------------------
 *   Every object that was reachable when a cycle's marking began, or that
 *   was allocated during marking, is marked when marking ends.
 *
 * Three things keep it:
 *   (a) roots that change without a barrier (request contexts) are scanned
 *       while the world is stopped, at the start of the cycle;
 *   (b) the index, scanned concurrently shard by shard, shades the old value
 *       whenever an entry leaves it or is replaced while marking is on
 *       (gc_barrier: overwrite, delete, eviction, TTL reaping), so an entry
 *       that a context picks up from the index after (a) was either still in
 *       the index when the scanner passed, or was shaded when it left;
 *   (c) objects allocated while marking are born black (allocate-black); an
 *       object is published into a root only after it is fully initialised.
 * Because objects contain no pointers there is no grey set and no
 * insertion barrier: shading is terminal.
 *
 * Phases of a cycle (run_cycle), and what implements each
 * -------------------------------------------------------
 *   0. Finish sweeping the previous cycle (gc__sweep_one until none left),
 *      then call the pressure hook with the live budget (a quarter of the
 *      soft limit is kept for garbage): the cache evicts down to it, with
 *      the barrier still off, so what it drops dies in this very cycle.
 *   1. Stop the world (stw_start): every mutator parked at a safepoint.
 *      Rotate pools (primary -> victim), turn on allocate-black and the
 *      barrier, scan GC_ROOTS_STW roots. Start the world (stw_end).
 *   2. Concurrent mark: run GC_ROOTS_CONCURRENT scanners on this thread
 *      (the cache walks its shards, each under its own lock, briefly; it
 *      unlinks expired entries instead of marking them).
 *   3. Stop the world: barrier and allocate-black off; flush every mcache;
 *      every in-use span becomes unswept (gc__sweep_prepare). Start the world.
 *   4. Sweep, concurrently: this thread sweeps span by span; a mutator that
 *      runs out of a class sweeps that class's spans itself (lazy sweep,
 *      heap.c:refill). Sweeping adds up the live bytes; the pacer sets the
 *      next goal from them.
 *
 * Pacing (GOGC and GOMEMLIMIT)
 * ----------------------------
 *   goal = max(4 MiB, live * (1 + gc_percent/100)), capped at 85% of the
 *   soft memory limit less GC metadata and the libc heap (the 15% left is the
 *   time a cycle has to finish). A mutator that takes a new span while
 *   heap_alloc >= goal wakes the collector. An allocation that would take the
 *   heap's in-use pages (plus metadata and libc heap) over the limit runs
 *   cycles (parked, up to three) and fails with BC_ELIMIT if it still does not
 *   fit. After each sweep, free pages are returned to the OS while resident
 *   heap memory is over 95% of the limit, so RSS follows the limit.
 *
 * Safepoints
 * ----------
 *   A mutator is RUNNING or PARKED. Workers park around their blocking wait,
 *   so an idle worker never delays a stop. stw_start sets stw_request and
 *   waits for every mutator to be PARKED; a mutator leaving its wait stores
 *   RUNNING and then reads stw_request (both sequentially consistent, so one
 *   of the two sides sees the other) and waits on stw_cv if a stop is on.
 *   The one place a mutator parks mid-request is an allocation over the
 *   memory limit, inside gc_alloc, where its roots are consistent.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gc_internal.h"

_Atomic int gc__barrier_on;
_Atomic int gc__stw_request;

#define MIN_HEAP_GOAL ((uint64_t)4 << 20)

const uint64_t gc_pause_bucket_ns[GC_PAUSE_BUCKETS] = {
    1000,    2500,    5000,     10000,    25000,    50000,
    100000,  250000,  500000,   1000000,  2500000,  5000000,
    10000000, 50000000, 100000000, 1000000000};

/* Counts one stop-the-world pause in the histogram (stats_mu held). */
static void pause_hist_add(gc_heap_t *h, uint64_t ns) {
  int b = 0;
  while (b < GC_PAUSE_BUCKETS && ns > gc_pause_bucket_ns[b])
    b++;
  h->pause_hist[b]++;
}

/* ---- init / start / stop -------------------------------------------------- */

int gc_init(const gc_config_t *cfg) {
  gc_heap_t *h = &gc__heap;
  memset(h, 0, sizeof(*h));
  int rc = gc__heap_init();
  if (rc)
    return rc;
  uint64_t lim = cfg->memory_limit ? cfg->memory_limit : h->reserved;
  if (lim > h->reserved)
    lim = h->reserved;
  atomic_store(&h->memory_limit, lim);
  atomic_store(&h->gc_percent, cfg->gc_percent);
  h->gctrace = cfg->gctrace;
  h->nprocs = cfg->nprocs > 0 ? cfg->nprocs : 1;
  atomic_store(&h->next_gc, MIN_HEAP_GOAL);
  pthread_mutex_init(&h->mutators_lock, NULL);
  pthread_mutex_init(&h->stw_mu, NULL);
  pthread_cond_init(&h->stw_cv, NULL);
  pthread_mutex_init(&h->run_mu, NULL);
  pthread_mutex_init(&h->cycle_mu, NULL);
  pthread_cond_init(&h->cycle_cv, NULL);
  pthread_cond_init(&h->done_cv, NULL);
  pthread_mutex_init(&h->stats_mu, NULL);
  h->start_mono_ns = bc_now_mono_ns();
  gc__memprof_init();
  return 0;
}

static void *collector_main(void *arg);
static void gc_collect_reason(gc_mutator_t *m, bool forced);

int gc_start(void) {
  gc_heap_t *h = &gc__heap;
  h->stopping = false;
  if (pthread_create(&h->thread, NULL, collector_main, NULL) != 0)
    return BC_ENOMEM;
  h->running = true;
  return 0;
}

void gc_stop(void) {
  gc_heap_t *h = &gc__heap;
  if (!h->running)
    return;
  pthread_mutex_lock(&h->cycle_mu);
  h->stopping = true;
  pthread_cond_broadcast(&h->cycle_cv);
  pthread_cond_broadcast(&h->done_cv);
  pthread_mutex_unlock(&h->cycle_mu);
  pthread_join(h->thread, NULL);
  h->running = false;
}

void gc_close(void) {
  gc_heap_t *h = &gc__heap;
  for (int i = 0; i < GC_MAX_MUTATORS; i++) {
    gc_mutator_t *m = atomic_load(&h->slots[i]);
    if (m) {
      BC_CHECK(m->detached, "gc_close with mutator %d attached", i);
      free(m);
      atomic_store(&h->slots[i], NULL);
    }
  }
  for (int i = 0; i < atomic_load(&h->npools); i++)
    free(h->pools[i]);
  gc__heap_close();
  gc__memprof_close();
}

/* ---- mutators and safepoints ---------------------------------------------- */

gc_mutator_t *gc_mutator_new(void) {
  gc_heap_t *h = &gc__heap;
  gc_mutator_t *m = calloc(1, sizeof(*m));
  if (!m)
    return NULL;
  atomic_store(&m->state, MUT_PARKED);
  pthread_mutex_lock(&h->mutators_lock);
  if (h->next_mutator_id >= GC_MAX_MUTATORS) {
    pthread_mutex_unlock(&h->mutators_lock);
    free(m);
    return NULL;
  }
  m->id = h->next_mutator_id++;
  /* its sampler state before a stop can see it (mark termination redraws
   * next_sample for every listed mutator) */
  gc__memprof_mutator_init(m);
  m->next = h->mutators;
  h->mutators = m;
  h->nmutators++;
  atomic_store(&h->slots[m->id], m);
  atomic_fetch_add(&h->meta_sys, sizeof(*m));
  pthread_mutex_unlock(&h->mutators_lock);
  return m;
}

static void pools_release(gc_mutator_t *m);

void gc_mutator_free(gc_mutator_t *m) {
  gc_heap_t *h = &gc__heap;
  if (!m)
    return;
  gc_mutator_park(m);
  pthread_mutex_lock(&h->mutators_lock);
  gc__mcache_flush(m);
  gc_mutator_t **pp = &h->mutators;
  while (*pp != m)
    pp = &(*pp)->next;
  *pp = m->next;
  h->nmutators--;
  m->detached = true;
  pthread_mutex_unlock(&h->mutators_lock);
  pools_release(m);
  /* the struct stays in slots[] for the counters; gc_close frees it */
}

void gc_mutator_park(gc_mutator_t *m) {
  atomic_store_explicit(&m->state, MUT_PARKED, memory_order_seq_cst);
}

void gc__safepoint_slow(gc_mutator_t *m) {
  gc_mutator_park(m);
  gc_mutator_unpark(m);
}

void gc_mutator_unpark(gc_mutator_t *m) {
  gc_heap_t *h = &gc__heap;
  for (;;) {
    atomic_store_explicit(&m->state, MUT_RUNNING, memory_order_seq_cst);
    if (BC_LIKELY(!atomic_load_explicit(&gc__stw_request, memory_order_seq_cst)))
      return;
    atomic_store_explicit(&m->state, MUT_PARKED, memory_order_seq_cst);
    pthread_mutex_lock(&h->stw_mu);
    while (atomic_load(&gc__stw_request))
      pthread_cond_wait(&h->stw_cv, &h->stw_mu);
    pthread_mutex_unlock(&h->stw_mu);
  }
}

/* Stops the world; returns with mutators_lock held and every mutator
 * parked. */
static void stw_start(void) {
  gc_heap_t *h = &gc__heap;
  pthread_mutex_lock(&h->mutators_lock);
  atomic_store_explicit(&gc__stw_request, 1, memory_order_seq_cst);
  for (gc_mutator_t *m = h->mutators; m; m = m->next) {
    unsigned spins = 0;
    while (atomic_load_explicit(&m->state, memory_order_seq_cst) != MUT_PARKED) {
      if (++spins < 64) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      } else if (spins < 2048) {
        sched_yield();
      } else {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
      }
    }
  }
}

/* Restarts the world; returns the time the pause ended, read before any
 * mutator is released (a woken worker may preempt the collector on a shared
 * core, which must not count as pause). */
static uint64_t stw_end(void) {
  gc_heap_t *h = &gc__heap;
  uint64_t t = bc_now_mono_ns();
  pthread_mutex_lock(&h->stw_mu);
  atomic_store_explicit(&gc__stw_request, 0, memory_order_seq_cst);
  pthread_cond_broadcast(&h->stw_cv);
  pthread_mutex_unlock(&h->stw_mu);
  pthread_mutex_unlock(&h->mutators_lock);
  return t;
}

/* ---- roots, hooks, barrier -------------------------------------------------- */

void gc_register_roots(enum gc_roots_kind kind, gc_scan_fn fn, void *arg) {
  gc_heap_t *h = &gc__heap;
  pthread_mutex_lock(&h->mutators_lock);
  BC_CHECK(h->nroots < GC_MAX_ROOTS, "too many root scanners");
  h->roots[h->nroots++] = (roots_entry_t){kind, fn, arg};
  pthread_mutex_unlock(&h->mutators_lock);
}

void gc_unregister_roots(enum gc_roots_kind kind, gc_scan_fn fn, void *arg) {
  gc_heap_t *h = &gc__heap;
  pthread_mutex_lock(&h->run_mu);
  pthread_mutex_lock(&h->mutators_lock);
  for (int i = 0; i < h->nroots; i++) {
    roots_entry_t *r = &h->roots[i];
    if (r->kind == kind && r->fn == fn && r->arg == arg) {
      h->roots[i] = h->roots[--h->nroots];
      break;
    }
  }
  pthread_mutex_unlock(&h->mutators_lock);
  pthread_mutex_unlock(&h->run_mu);
}

void gc_register_cycle_hook(void (*fn)(void *arg), void *arg) {
  gc_heap_t *h = &gc__heap;
  pthread_mutex_lock(&h->mutators_lock);
  BC_CHECK(h->nhooks < GC_MAX_HOOKS, "too many cycle hooks");
  h->hooks[h->nhooks].fn = fn;
  h->hooks[h->nhooks].arg = arg;
  h->nhooks++;
  pthread_mutex_unlock(&h->mutators_lock);
}

void gc_set_finalizer_hook(gc_finalizer_fn fn) { gc__heap.finalizer = fn; }
void gc_set_cycle_observer(void (*fn)(const gc_cycle_info_t *info)) {
  gc__heap.observer = fn;
}

void gc_set_pressure_hook(void (*fn)(uint64_t budget)) {
  gc__heap.pressure = fn;
}

/* What reachable data may occupy: the live heap must leave room under the
 * limit for the garbage made between two cycles, or the collector would run
 * back to back (pitfall 10). A quarter of the limit is that room. */
static uint64_t live_budget(void) {
  gc_heap_t *h = &gc__heap;
  uint64_t lim = atomic_load(&h->memory_limit);
  uint64_t other = gc__offheap();
  uint64_t b = lim / 4 * 3;
  return b > other ? b - other : 0;
}

void gc__barrier_slow(void *old) {
  if (old)
    gc_mark(old);
}

bool gc_marking(void) { return atomic_load(&gc__heap.phase) == PHASE_MARK; }

/* ---- pools ---------------------------------------------------------------- */

gc_pool_t *gc_pool_new(const char *name, void *(*new_fn)(void *arg),
                       void (*free_fn)(void *obj, void *arg), void *arg) {
  gc_heap_t *h = &gc__heap;
  gc_pool_t *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  pthread_mutex_lock(&h->mutators_lock);
  int n = atomic_load(&h->npools);
  if (n >= GC_MAX_POOLS) {
    pthread_mutex_unlock(&h->mutators_lock);
    free(p);
    return NULL;
  }
  p->id = n;
  p->name = name;
  p->new_fn = new_fn;
  p->free_fn = free_fn;
  p->arg = arg;
  h->pools[n] = p;
  atomic_store(&h->npools, n + 1);
  pthread_mutex_unlock(&h->mutators_lock);
  return p;
}

static inline void bump(_Atomic uint64_t *c) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

void *gc_pool_get(gc_mutator_t *m, gc_pool_t *p) {
  pool_local_t *l = &m->pools[p->id];
  bump(&l->gets);
  void *obj = l->primary;
  if (BC_LIKELY(obj)) {
    l->primary = *(void **)obj;
    return obj;
  }
  obj = l->victim;
  if (obj) {
    l->victim = *(void **)obj;
    bump(&l->victim_hits);
    return obj;
  }
  bump(&l->news);
  return p->new_fn(p->arg);
}

void gc_pool_put(gc_mutator_t *m, gc_pool_t *p, void *obj) {
  pool_local_t *l = &m->pools[p->id];
  bump(&l->puts);
  *(void **)obj = l->primary;
  l->primary = obj;
}

/* STW: primary -> victim, victim -> dropped. O(1) per mutator and pool, so
 * the pause does not grow with what the pools hold. */
static void pools_rotate(void) {
  gc_heap_t *h = &gc__heap;
  int np = atomic_load(&h->npools);
  for (gc_mutator_t *m = h->mutators; m; m = m->next) {
    for (int i = 0; i < np; i++) {
      pool_local_t *l = &m->pools[i];
      l->dropped = l->victim;
      l->victim = l->primary;
      l->primary = NULL;
    }
  }
}

static void free_chain(gc_pool_t *p, void *v) {
  while (v) {
    void *next = *(void **)v;
    p->free_fn(v, p->arg);
    atomic_fetch_add(&p->dropped, 1);
    v = next;
  }
}

/* After the pause: hand the dropped victims to their pools' free_fn.
 * Collector thread; mutators_lock keeps the mutator list still. */
static void pools_drop(void) {
  gc_heap_t *h = &gc__heap;
  int np = atomic_load(&h->npools);
  pthread_mutex_lock(&h->mutators_lock);
  for (gc_mutator_t *m = h->mutators; m; m = m->next) {
    for (int i = 0; i < np; i++) {
      void *v = m->pools[i].dropped;
      m->pools[i].dropped = NULL;
      free_chain(h->pools[i], v);
    }
  }
  pthread_mutex_unlock(&h->mutators_lock);
}

static void pools_release(gc_mutator_t *m) {
  gc_heap_t *h = &gc__heap;
  int np = atomic_load(&h->npools);
  for (int i = 0; i < np; i++) {
    pool_local_t *l = &m->pools[i];
    free_chain(h->pools[i], l->primary);
    free_chain(h->pools[i], l->victim);
    free_chain(h->pools[i], l->dropped);
    l->primary = l->victim = l->dropped = NULL;
  }
}

/* ---- the cycle -------------------------------------------------------------- */

/* Memory outside the heap counts against the soft limit too (libmicrohttpd's
 * connection pools, the index tables, jansson, cached responses): the libc
 * heap in use, sampled about once a second and at every cycle. */
static void sample_other_sys(void) {
  gc_heap_t *h = &gc__heap;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 mi = mallinfo2();
  atomic_store(&h->other_sys, (uint64_t)mi.uordblks + mi.hblkhd);
#endif
  /* base_sys: RSS (statm's second field, in pages) less the heap's pages
   * (handed out, not released), meta_sys and other_sys. Not under a
   * sanitizer: its shadow memory and quarantine would be most of RSS and
   * leave the heap no room. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return;
#endif
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long size, resident;
  if (!f)
    return;
  int n = fscanf(f, "%llu %llu", &size, &resident);
  fclose(f);
  if (n != 2)
    return;
  uint64_t rss = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t heap = atomic_load(&h->grown);
  heap -= atomic_load(&h->heap_released);
  uint64_t known = heap + atomic_load(&h->meta_sys) + atomic_load(&h->other_sys);
  atomic_store(&h->base_sys, rss > known ? rss - known : 0);
}

static void scavenge_to_limit(void) {
  gc_heap_t *h = &gc__heap;
  uint64_t lim = atomic_load(&h->memory_limit);
  uint64_t mapped;
  mapped = atomic_load(&h->grown);
  mapped -= atomic_load(&h->heap_released);
  mapped += gc__offheap();
  uint64_t target = lim / 100 * 95;
  if (mapped > target)
    gc__scavenge(0, mapped - target);
}

static uint64_t pacer_goal(uint64_t live) {
  gc_heap_t *h = &gc__heap;
  int pct = atomic_load(&h->gc_percent);
  uint64_t goal = UINT64_MAX;
  if (pct != GC_PERCENT_OFF) {
    goal = live + live / 100 * (uint64_t)pct;
    if (goal < MIN_HEAP_GOAL)
      goal = MIN_HEAP_GOAL;
  }
  uint64_t lim = atomic_load(&h->memory_limit);
  uint64_t meta = gc__offheap();
  uint64_t cap = lim / 100 * 85; /* leaves time for a cycle to finish */
  cap = cap > meta ? cap - meta : 0;
  if (goal > cap)
    goal = cap;
  return goal;
}

static void gctrace(uint64_t n, uint64_t start, uint64_t p1, uint64_t mark,
                    uint64_t p2, uint64_t sweep, uint64_t before,
                    uint64_t after, uint64_t live, uint64_t goal, double frac,
                    bool forced) {
  gc_heap_t *h = &gc__heap;
  double mb = 1024.0 * 1024.0;
  fprintf(stderr,
          "gc %llu @%.3fs %.0f%%: %.3f+%.3f+%.3f+%.3f ms clock, "
          "%.1f->%.1f->%.1f MB, %.1f MB goal, %d W%s\n",
          (unsigned long long)n, (double)(start - h->start_mono_ns) / 1e9,
          frac * 100, (double)p1 / 1e6, (double)mark / 1e6, (double)p2 / 1e6,
          (double)sweep / 1e6, (double)before / mb, (double)after / mb,
          (double)live / mb, (double)goal / mb, h->nprocs,
          forced ? " (forced)" : "");
}

/* Should this cycle's sweep free every emptied span? Yes when someone waits
 * for the cycle (gc_collect, /debug/freeosmemory, an allocation over the
 * limit): they want memory back now. Yes when in-use pages come near the
 * soft limit. Otherwise emptied spans stay with their class for a cycle
 * (heap.c, "Emptied spans"). */
static bool sweep_should_release(bool requested) {
  uint64_t lim = atomic_load(&gc__heap.memory_limit);
  return requested || gc__limit_used() >= lim / 100 * 80;
}

/* ---- background pacing ------------------------------------------------------
 * Concurrent marking runs on the collector thread. When that
 * thread competes with running mutators for too few CPUs (the server
 * pinned to one core, or as many busy workers as CPUs), every millisecond
 * it runs is a millisecond a worker does not serve. Go answers with a fixed
 * 25% of GOMAXPROCS for background marking; here the collector keeps its
 * share of a contended CPU to GC_BG_SHARE_PCT while it marks, so requests
 * keep >= 90% of their rate meanwhile. It sleeps between units of work (a
 * shard: tens of microseconds) just long enough that its CPU time stays
 * under that share of the time elapsed. With a CPU to spare (fewer running
 * mutators than CPUs) it runs flat out. It never holds back when an
 * allocation waits for the cycle (limit_waiters) or in-use memory passes
 * 75% of the limit: then finishing the cycle is what serves requests.
 * The sweep is not held back: the trigger waits for the sweep's end
 * (heap_alloc counts unswept garbage), so a slow sweep would let the heap
 * outgrow its GOGC goal; Go's answer is a heap-live counter reset at mark
 * termination, the next step here. Collector thread only. */
#define GC_BG_SHARE_PCT 5
#define GC_BG_MAX_SLEEP_NS 2000000ull

static struct {
  bool on;         /* concurrent marking, and it may still hold back */
  int cpus;        /* CPUs this process may run on */
  uint64_t cpu0, wall0;
} bg;

static int cpus_available(void) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? n : 1;
}

static void bg_begin(void) {
  bg.on = true;
  bg.cpus = cpus_available();
  bg.cpu0 = bc_thread_cpu_ns();
  bg.wall0 = bc_now_mono_ns();
}

static int running_mutators(void) {
  gc_heap_t *h = &gc__heap;
  int n = 0, ids = atomic_load(&h->next_mutator_id);
  for (int i = 0; i < ids && i < GC_MAX_MUTATORS; i++) {
    gc_mutator_t *m = atomic_load_explicit(&h->slots[i], memory_order_acquire);
    if (m && atomic_load_explicit(&m->state, memory_order_relaxed) ==
                 MUT_RUNNING)
      n++;
  }
  return n;
}

static void bg_pace(void) {
  gc_heap_t *h = &gc__heap;
  if (!bg.on)
    return;
  uint64_t cpu = bc_thread_cpu_ns(), now = bc_now_mono_ns();
  if (gc__limit_used() >= atomic_load(&h->memory_limit) / 100 * 75 ||
      atomic_load(&h->limit_waiters)) {
    bg.on = false; /* behind: no more holding back this cycle */
    return;
  }
  if (running_mutators() < bg.cpus) { /* a CPU to spare: no debt */
    bg.cpu0 = cpu;
    bg.wall0 = now;
    return;
  }
  uint64_t need = (cpu - bg.cpu0) * (100 / GC_BG_SHARE_PCT);
  uint64_t wall = now - bg.wall0;
  if (need <= wall)
    return;
  uint64_t d = need - wall;
  if (d > GC_BG_MAX_SLEEP_NS)
    d = GC_BG_MAX_SLEEP_NS;
  struct timespec ts = {0, (long)d};
  nanosleep(&ts, NULL);
  atomic_fetch_add(&gc__heap.pace_sleep_ns, d);
}

static _Thread_local bool on_collector; /* set by collector_main */

/* bg.on is true only during the concurrent mark (run_cycle) */
void gc_scan_pace(void) {
  if (on_collector)
    bg_pace();
}

static void run_cycle(bool forced, bool requested) {
  gc_heap_t *h = &gc__heap;
  uint64_t cpu0 = bc_thread_cpu_ns();
  sample_other_sys();
  while (gc__sweep_one())
    ;
  /* 0b. pressure: let the cache evict before marking, so what it drops is
   * reclaimed by this cycle */
  if (h->pressure)
    h->pressure(live_budget());
  uint64_t heap_before = atomic_load(&h->heap_alloc);

  /* 1. start: stop the world */
  uint64_t t0 = bc_now_mono_ns();
  stw_start();
  atomic_store(&h->phase, PHASE_MARK);
  atomic_store(&h->alloc_black, 1);
  atomic_store(&gc__barrier_on, 1);
  pools_rotate();
  for (int i = 0; i < h->nhooks; i++)
    h->hooks[i].fn(h->hooks[i].arg);
  for (int i = 0; i < h->nroots; i++)
    if (h->roots[i].kind == GC_ROOTS_STW)
      h->roots[i].fn(h->roots[i].arg);
  uint64_t t1 = stw_end();

  /* 2. concurrent mark (paced: gc_scan_pace) */
  bg_begin();
  for (int i = 0; i < h->nroots; i++)
    if (h->roots[i].kind == GC_ROOTS_CONCURRENT)
      h->roots[i].fn(h->roots[i].arg);
  bg.on = false;
  uint64_t t2 = bc_now_mono_ns();

  /* 3. mark termination: stop the world */
  stw_start();
  atomic_store(&gc__barrier_on, 0);
  atomic_store(&h->alloc_black, 0);
  for (gc_mutator_t *m = h->mutators; m; m = m->next)
    gc__mcache_flush(m);
  atomic_store(&h->swept_live_bytes, 0);
  atomic_store(&h->sweep_release, sweep_should_release(requested));
  gc__sweep_prepare();
  gc__memprof_next_cycle();
  atomic_store(&h->phase, PHASE_SWEEP);
  uint64_t t3 = stw_end();

  pools_drop();

  /* 4. sweep */
  while (gc__sweep_one())
    ;
  /* the allocation profile now shows this cycle (memprof.c) */
  gc__memprof_post_sweep();
  uint64_t t4 = bc_now_mono_ns();
  /* lazy sweepers may still hold a span they popped; the live count is
   * complete once they give it back, which is before they next park. It is
   * good enough for pacing to read it now. */
  uint64_t live = atomic_load(&h->swept_live_bytes);
  atomic_store(&h->heap_live, live);
  /* the limit bounds resident memory, free pages included (Go counts
   * HeapSys - HeapReleased): release free pages while over */
  scavenge_to_limit();
  atomic_store(&h->phase, PHASE_OFF);
  uint64_t goal = pacer_goal(live);
  atomic_store(&h->next_gc, goal);

  uint64_t pause1 = t1 - t0, pause2 = t3 - t2;
  uint64_t cpu = bc_thread_cpu_ns() - cpu0;
  pthread_mutex_lock(&h->stats_mu);
  uint32_t n = h->num_gc;
  h->pause_ns[n % GC_PAUSE_RING] = pause1 + pause2;
  /* Go's PauseEnd and LastGC: when mark termination's pause ended (t3), not
   * when the sweep did */
  h->pause_end[n % GC_PAUSE_RING] =
      bc_now_real_ns() - (bc_now_mono_ns() - t3);
  h->pause_total_ns += pause1 + pause2;
  h->last_pause[0] = pause1;
  h->last_pause[1] = pause2;
  pause_hist_add(h, pause1);
  pause_hist_add(h, pause2);
  h->num_gc = n + 1;
  if (forced)
    h->num_forced_gc++;
  h->last_gc_unix_ns = h->pause_end[n % GC_PAUSE_RING];
  /* CPU charged to GC: the collector thread's own time, plus every mutator
   * held still during the pauses */
  h->gc_cpu_ns += cpu + (pause1 + pause2) * (uint64_t)h->nprocs;
  uint64_t elapsed = bc_now_mono_ns() - h->start_mono_ns;
  double frac = elapsed ? (double)h->gc_cpu_ns /
                              ((double)elapsed * (double)(h->nprocs + 1))
                        : 0;
  pthread_mutex_unlock(&h->stats_mu);
  if (h->gctrace)
    gctrace(n + 1, t0, pause1, t2 - t1, pause2, t4 - t3, heap_before,
            atomic_load(&h->heap_alloc), live, goal, frac, forced);
  if (h->observer) {
    gc_cycle_info_t info = {n + 1, pause1, t2 - t1, pause2, t4 - t3,
                            heap_before, atomic_load(&h->heap_alloc), live,
                            goal, frac, forced};
    h->observer(&info);
  }
}

static void *collector_main(void *arg) {
  (void)arg;
  gc_heap_t *h = &gc__heap;
  on_collector = true;
  if (gc__thread_start_hook)
    gc__thread_start_hook("gc");
  pthread_mutex_lock(&h->cycle_mu);
  for (;;) {
    while (!h->stopping && h->cycles_requested <= h->cycles_started) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += 1;
      int rc = pthread_cond_timedwait(&h->cycle_cv, &h->cycle_mu, &ts);
      if (rc == ETIMEDOUT) {
        /* background scavenger: give back pages idle for 5 s, a few MiB a
         * second */
        pthread_mutex_unlock(&h->cycle_mu);
        sample_other_sys();
        gc__scavenge(5000000000ull, (uint64_t)64 << 20);
        pthread_mutex_lock(&h->cycle_mu);
      }
    }
    if (h->stopping)
      break;
    h->cycles_started++;
    bool forced = h->forced_pending, requested = h->release_pending;
    h->forced_pending = h->release_pending = false;
    atomic_store(&h->cycle_pending, 0);
    pthread_mutex_unlock(&h->cycle_mu);
    pthread_mutex_lock(&h->run_mu);
    atomic_store(&h->cycle_active, 1);
    run_cycle(forced, requested);
    atomic_store(&h->cycle_active, 0);
    pthread_mutex_unlock(&h->run_mu);
    pthread_mutex_lock(&h->cycle_mu);
    h->cycles_done = h->cycles_started;
    pthread_cond_broadcast(&h->done_cv);
  }
  pthread_mutex_unlock(&h->cycle_mu);
  if (gc__thread_stop_hook)
    gc__thread_stop_hook();
  return NULL;
}

void gc__trigger(void) {
  gc_heap_t *h = &gc__heap;
  /* a trigger is queued, or a cycle runs (it ignores triggers, below):
   * nothing to do, and no lock taken on every refill meanwhile */
  if (atomic_load_explicit(&h->cycle_pending, memory_order_relaxed) ||
      atomic_load_explicit(&h->cycle_active, memory_order_relaxed))
    return;
  if (atomic_load(&h->gc_percent) == GC_PERCENT_OFF &&
      atomic_load(&h->heap_inuse) < atomic_load(&h->memory_limit) / 100 * 95)
    return;
  pthread_mutex_lock(&h->cycle_mu);
  /* not while a cycle is still running: its sweep has not yet lowered
   * heap_alloc nor set the new goal, so the trigger would start a second,
   * useless cycle right after it */
  if (h->cycles_requested <= h->cycles_started &&
      h->cycles_done == h->cycles_started) {
    h->cycles_requested = h->cycles_started + 1;
    atomic_store(&h->cycle_pending, 1);
    pthread_cond_signal(&h->cycle_cv);
  }
  pthread_mutex_unlock(&h->cycle_mu);
}

void gc_collect(gc_mutator_t *m) { gc_collect_reason(m, true); }

/* Runs a cycle that starts after the call and waits for its end. forced:
 * counted in NumForcedGC (runtime.GC and the admin endpoints), not the
 * memory limit's own cycles. */
static void gc_collect_reason(gc_mutator_t *m, bool forced) {
  gc_heap_t *h = &gc__heap;
  if (!h->running)
    return;
  if (m)
    gc_mutator_park(m);
  pthread_mutex_lock(&h->cycle_mu);
  uint64_t want = h->cycles_started + 1;
  if (h->cycles_requested < want)
    h->cycles_requested = want;
  if (forced)
    h->forced_pending = true;
  h->release_pending = true;
  pthread_cond_signal(&h->cycle_cv);
  while (!h->stopping && h->cycles_done < want)
    pthread_cond_wait(&h->done_cv, &h->cycle_mu);
  pthread_mutex_unlock(&h->cycle_mu);
  if (m)
    gc_mutator_unpark(m);
}

/* Over the limit with need more bytes: runs a cycle (parked) unless the
 * request could never fit. Returns whether a cycle ran. A cycle always has
 * something to offer here: garbage, or entries the pressure hook evicts. */
bool gc__collect_for_limit(gc_mutator_t *m, size_t need) {
  gc_heap_t *h = &gc__heap;
  if (need > atomic_load(&h->memory_limit) || !h->running)
    return false;
  atomic_fetch_add(&h->limit_waiters, 1); /* a running cycle stops pacing */
  gc_collect_reason(m, false);
  atomic_fetch_sub(&h->limit_waiters, 1);
  return true;
}

uint64_t gc_scavenge_all(void) { return gc__scavenge(0, UINT64_MAX); }

int gc_set_percent(int pct) {
  gc_heap_t *h = &gc__heap;
  int old = atomic_exchange(&h->gc_percent, pct);
  atomic_store(&h->next_gc, pacer_goal(atomic_load(&h->heap_live)));
  return old;
}

uint64_t gc_set_memory_limit(uint64_t bytes) {
  gc_heap_t *h = &gc__heap;
  if (bytes == 0 || bytes > h->reserved)
    bytes = h->reserved;
  uint64_t old = atomic_exchange(&h->memory_limit, bytes);
  atomic_store(&h->next_gc, pacer_goal(atomic_load(&h->heap_live)));
  return old;
}

void gc_verify(void) {
  stw_start();
  /* mutators are parked, but the collector may be sweeping a span */
  pthread_mutex_lock(&gc__heap.sweep_mu);
  gc__verify_locked();
  pthread_mutex_unlock(&gc__heap.sweep_mu);
  stw_end();
}

/* ---- statistics ------------------------------------------------------------- */

void gc_read_stats(gc_stats_t *st) {
  gc_heap_t *h = &gc__heap;
  memset(st, 0, sizeof(*st));
  uint64_t mallocs = 0, total = 0;
  for (int i = 0; i < GC_MAX_MUTATORS; i++) {
    gc_mutator_t *m = atomic_load(&h->slots[i]);
    if (!m)
      continue;
    mallocs += atomic_load_explicit(&m->st.mallocs, memory_order_relaxed) +
               atomic_load_explicit(&m->st.large_mallocs, memory_order_relaxed);
    total += atomic_load_explicit(&m->st.total_alloc, memory_order_relaxed) +
             atomic_load_explicit(&m->st.large_bytes, memory_order_relaxed);
    for (int c = 1; c < h->nclasses; c++)
      st->by_size[c].mallocs +=
          atomic_load_explicit(&m->st.by_size[c], memory_order_relaxed);
    int np = atomic_load(&h->npools);
    for (int p = 0; p < np; p++) {
      st->pools[p].gets += atomic_load_explicit(&m->pools[p].gets,
                                                memory_order_relaxed);
      st->pools[p].puts += atomic_load_explicit(&m->pools[p].puts,
                                                memory_order_relaxed);
      st->pools[p].news += atomic_load_explicit(&m->pools[p].news,
                                                memory_order_relaxed);
      st->pools[p].victim_hits += atomic_load_explicit(
          &m->pools[p].victim_hits, memory_order_relaxed);
    }
  }
  st->npools = atomic_load(&h->npools);
  for (int p = 0; p < st->npools; p++) {
    st->pools[p].name = h->pools[p]->name;
    st->pools[p].dropped = atomic_load(&h->pools[p]->dropped);
  }
  st->nclasses = h->nclasses;
  for (int c = 0; c < h->nclasses; c++) {
    st->by_size[c].size = h->class_size[c];
    st->by_size[c].frees = atomic_load(&h->by_size_frees[c]);
  }
  st->mallocs = mallocs;
  st->total_alloc = total;
  st->frees = atomic_load(&h->heap_objects_freed);
  st->heap_objects = mallocs >= st->frees ? mallocs - st->frees : 0;
  st->alloc = atomic_load(&h->heap_alloc);
  st->heap_inuse = atomic_load(&h->heap_inuse);
  st->heap_released = atomic_load(&h->heap_released);
  st->heap_sys = atomic_load(&h->grown); /* no lock: readers never wait */
  st->heap_idle = st->heap_sys - st->heap_inuse;
  st->mspan_inuse = atomic_load(&h->span_structs_inuse) * sizeof(gc_span_t);
  st->mspan_sys = atomic_load(&h->span_structs) * sizeof(gc_span_t);
  st->mcache_inuse = (uint64_t)h->nmutators * sizeof(gc_mutator_t);
  st->mcache_sys = (uint64_t)h->next_mutator_id * sizeof(gc_mutator_t);
  st->gc_sys = (st->heap_sys / GC_PAGE_SIZE) * sizeof(gc_span_t *);
  /* the profile's buckets are malloc'd: BuckHashSys, not the libc heap */
  st->buckhash_sys = gc__memprof_sys();
  st->other_sys = atomic_load(&h->other_sys);
  st->other_sys = st->other_sys > st->buckhash_sys
                      ? st->other_sys - st->buckhash_sys
                      : 0;
  st->sys = st->heap_sys + st->mspan_sys + st->mcache_sys + st->gc_sys +
            st->other_sys + st->buckhash_sys;
  st->next_gc = atomic_load(&h->next_gc);
  st->heap_live = atomic_load(&h->heap_live);
  st->heap_marked_objects = atomic_load(&h->live_objects);
  st->heap_empty = atomic_load(&h->heap_empty);
  st->pace_sleep_ns = atomic_load(&h->pace_sleep_ns);
  st->limit_used = gc__limit_used();
  st->gc_percent = atomic_load(&h->gc_percent);
  st->enable_gc = st->gc_percent != GC_PERCENT_OFF;
  st->memory_limit = atomic_load(&h->memory_limit);
  st->alloc_failures = atomic_load(&h->alloc_failures);
  pthread_mutex_lock(&h->stats_mu);
  st->num_gc = h->num_gc;
  st->num_forced_gc = h->num_forced_gc;
  st->pause_total_ns = h->pause_total_ns;
  st->last_gc_unix_ns = h->last_gc_unix_ns;
  memcpy(st->pause_ns, h->pause_ns, sizeof(st->pause_ns));
  memcpy(st->pause_end, h->pause_end, sizeof(st->pause_end));
  st->last_pause_ns[0] = h->last_pause[0];
  st->last_pause_ns[1] = h->last_pause[1];
  memcpy(st->pause_hist, h->pause_hist, sizeof(st->pause_hist));
  uint64_t elapsed = bc_now_mono_ns() - h->start_mono_ns;
  st->gc_cpu_fraction =
      elapsed ? (double)h->gc_cpu_ns /
                    ((double)elapsed * (double)(h->nprocs + 1))
              : 0;
  pthread_mutex_unlock(&h->stats_mu);
}
