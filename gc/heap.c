/* heap.c - the allocator: address space, page heap, size classes, central
 * lists, per-mutator caches, and sweeping of spans.
 *
 * Paths of an allocation (Go's mcache/mcentral/mheap, mimalloc's pages):
 *
 *   1. Fast path (gc_alloc, small sizes): class lookup in a table, then the
 *      mutator's cached span for the class; its freeindex is the free slot
 *      to take; set its bit (and the mark bit when allocating black), find
 *      the next zero bit for next time and prefetch that slot. No lock, no
 *      atomic read-modify-write except the black mark.
 *   2. Refill (noinline): the cached span is full. Keep it on the mcache's
 *      own full list (no lock; the next flush hands it to the central
 *      lists); take a swept span with free slots, an emptied one kept by the
 *      last sweep included; failing that, sweep unswept spans of this class
 *      ourselves (lazy sweep); failing that, take fresh pages from the page
 *      heap. The pacer is consulted here.
 *   3. Page heap (heap.lock): free spans on size-segregated lists, first fit,
 *      split and coalesce with neighbours through the span map. When empty,
 *      the heap grows into its reservation (mprotect in 4 MiB steps).
 *   4. Large objects (> 64 KiB) get a span of their own from the page heap.
 *
 * Address space: one reservation made at start-up (PROT_NONE, NORESERVE),
 * committed from the bottom as the heap grows. The span map has one pointer
 * per page of the reservation, itself reserved and touched as used, so
 * finding an object's span is one shift and one load.
 *
 * Accounting (bytes, atomics, read without locks):
 *   heap_inuse = pages of in-use spans
 *   heap_alloc = sum over uncached spans of alloccount * elemsize
 *              + sum over cached spans of nelems * elemsize   (Go's rule: a
 *                span handed to an mcache counts as fully allocated)
 *              + large spans' bytes
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gc_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((void *)(p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((void *)(p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

gc_heap_t gc__heap;
uintptr_t gc__heap_base; /* gc.h's gc_ref: h->base, set once at init */

/* 64 GiB of address space is the heap's ceiling; the soft memory limit is
 * capped below it. */
#define GC_RESERVE ((size_t)64 << 30)
_Static_assert(GC_RESERVE / 16 <= ((uint64_t)1 << 32),
               "gc_ref needs every 16-byte unit of the heap to fit 32 bits");

/* ---- span lists ---------------------------------------------------------- */

static void list_push(span_list_t *l, gc_span_t *s, int which) {
  s->prev = NULL;
  s->next = l->head;
  if (l->head)
    l->head->prev = s;
  else
    l->tail = s;
  l->head = s;
  l->n++;
  s->onlist = (uint8_t)which;
}

static void list_push_tail(span_list_t *l, gc_span_t *s, int which) {
  s->next = NULL;
  s->prev = l->tail;
  if (l->tail)
    l->tail->next = s;
  else
    l->head = s;
  l->tail = s;
  l->n++;
  s->onlist = (uint8_t)which;
}

static void list_remove(span_list_t *l, gc_span_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    l->head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  else
    l->tail = s->prev;
  s->next = s->prev = NULL;
  l->n--;
  s->onlist = LIST_NONE;
}

/* Moves all of src to the front of dst in O(1). The spans' onlist tags are
 * left as they were (debug information only). */
static void list_splice(span_list_t *dst, span_list_t *src) {
  if (!src->head)
    return;
  src->tail->next = dst->head;
  if (dst->head)
    dst->head->prev = src->tail;
  else
    dst->tail = src->tail;
  dst->head = src->head;
  dst->n += src->n;
  src->head = src->tail = NULL;
  src->n = 0;
}

static gc_span_t *list_pop(span_list_t *l) {
  gc_span_t *s = l->head;
  if (s)
    list_remove(l, s);
  return s;
}

/* ---- size classes ---------------------------------------------------------
 * 16-byte steps to 128 B, then eight classes per doubling (at most 12.5%
 * rounding waste), except sixteen per doubling from 512 B to 8 KiB (at most
 * 6.25%), where most cached values sit: a 1 KiB value with its 48-byte
 * header and a short key is 1,083 bytes, which the 1,088-byte class holds
 * with 0.5% waste where eight steps would round it to 1,152 (6%).
 * docs/BENCHMARKS.md "Memory overhead" has the measurement.
 *
 * A class's span is chosen for density: among 1..SPAN_MAX_PAGES pages (at
 * most GC_MAX_OBJS objects), the one whose waste -- the tail no object fits
 * in plus the span struct kept outside (sizeof(gc_span_t)) -- is the
 * smallest fraction of it (the fewest pages on a tie): at most 3.5% for the
 * classes from 512 B to 4 KiB, 0.8% for the 1,088-byte class (8 pages, 60
 * objects), 9.8% at worst (7,424 B); the old rule (fewest pages with a tail
 * under 1/8) left up to 15.5% near 1 KiB. */
#define SPAN_MAX_PAGES 8
#define SPAN_MAX_PAGES_BIG 32 /* classes above 8 KiB: 4-24 objects a span */

static void init_classes(gc_heap_t *h) {
  int n = 1;
  h->class_size[0] = 0;
  for (uint32_t sz = 16; sz <= 128; sz += 16)
    h->class_size[n++] = sz;
  for (uint32_t base = 128; base < GC_MAX_SMALL; base *= 2) {
    uint32_t steps = base >= 512 && base < 8192 ? 16 : 8;
    for (uint32_t k = 1; k <= steps; k++)
      h->class_size[n++] = base + base / steps * k;
  }
  h->nclasses = n;
  BC_CHECK(n <= GC_MAX_CLASSES, "too many size classes: %d", n);
  for (int c = 1; c < n; c++) {
    uint32_t sz = h->class_size[c];
    size_t best_pages = 0, best_waste = 0;
    size_t max_pages = sz > 8192 ? SPAN_MAX_PAGES_BIG : SPAN_MAX_PAGES;
    for (size_t pages = 1; pages <= max_pages; pages++) {
      size_t bytes = pages * GC_PAGE_SIZE;
      size_t nel = bytes / sz;
      if (nel > GC_MAX_OBJS)
        nel = GC_MAX_OBJS;
      if (nel < 1)
        continue;
      size_t waste = bytes - nel * sz + sizeof(gc_span_t);
      /* waste/bytes < best_waste/best_bytes, in integers */
      if (!best_pages || waste * best_pages * GC_PAGE_SIZE < best_waste * bytes) {
        best_pages = pages;
        best_waste = waste;
      }
    }
    if (!best_pages) /* sz > SPAN_MAX_PAGES pages: one object per span */
      best_pages = (sz + GC_PAGE_SIZE - 1) / GC_PAGE_SIZE;
    size_t nel = best_pages * GC_PAGE_SIZE / sz;
    if (nel > GC_MAX_OBJS)
      nel = GC_MAX_OBJS;
    h->class_pages[c] = (uint8_t)best_pages;
    h->class_nelems[c] = (uint16_t)nel;
    uint64_t dm = (((uint64_t)1 << GC_DIVMUL_SHIFT) - 1) / sz + 1;
    h->class_divmul[c] = dm;
    /* the index function is monotone in the offset: checking both sides of
     * every object boundary proves it exact for the whole span */
    for (uint64_t k = 1; k <= nel; k++) {
      uint64_t off = k * sz;
      BC_CHECK(((off - 1) * dm) >> GC_DIVMUL_SHIFT == k - 1 &&
                   (k == nel || (off * dm) >> GC_DIVMUL_SHIFT == k),
               "class %d (%u B): no exact reciprocal at object %llu", c, sz,
               (unsigned long long)k);
    }
  }
  int c = 1;
  for (size_t i = 0; i <= 1024 / 8; i++) {
    size_t sz = i * 8;
    while (h->class_size[c] < sz)
      c++;
    h->size_to_class8[i] = (uint8_t)c;
  }
  for (size_t i = 0; i < BC_ARRAY_LEN(h->size_to_class64); i++) {
    size_t sz = 1024 + i * 64;
    while (h->class_size[c] < sz)
      c++;
    h->size_to_class64[i] = (uint8_t)c;
  }
}

/* ---- address space ------------------------------------------------------- */

#define SPAN_SLAB 64 /* span structs per calloc; slab[0] links the slabs */

static _Atomic int fail_budget;

void gc_fail_next_os_allocs(int n) { atomic_store(&fail_budget, n); }

bool gc__sys_commit_fail(void) {
  int v = atomic_load(&fail_budget);
  while (v > 0) {
    if (atomic_compare_exchange_weak(&fail_budget, &v, v - 1))
      return true;
  }
  return false;
}

int gc__heap_init(void) {
  gc_heap_t *h = &gc__heap;
  init_classes(h);
  h->reserved = GC_RESERVE;
  void *p = mmap(NULL, h->reserved, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return BC_ENOMEM;
  h->base = (uintptr_t)p;
  gc__heap_base = h->base;
  h->spanmap_bytes = (h->reserved / GC_PAGE_SIZE) * sizeof(gc_span_t *);
  void *sm = mmap(NULL, h->spanmap_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sm == MAP_FAILED) {
    munmap(p, h->reserved);
    return BC_ENOMEM;
  }
  h->spanmap = sm;
  /* the page heap's and the central lists' critical sections are a few
   * list operations: spin a little before sleeping in the kernel, where a
   * futex wake-up would cost more than the section itself */
  pthread_mutexattr_t spin;
  pthread_mutexattr_init(&spin);
  pthread_mutexattr_settype(&spin, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&h->lock, &spin);
  pthread_mutex_init(&h->sweep_mu, NULL);
  for (int c = 0; c < GC_MAX_CLASSES; c++)
    pthread_mutex_init(&h->central[c].lock, &spin);
  pthread_mutexattr_destroy(&spin);
  return 0;
}

void gc__heap_close(void) {
  gc_heap_t *h = &gc__heap;
  if (!h->base)
    return;
  munmap((void *)h->base, h->reserved);
  munmap(h->spanmap, h->spanmap_bytes);
  for (gc_span_t *slab = h->slabs; slab;) {
    gc_span_t *next = slab->next;
    for (int i = 1; i < SPAN_SLAB; i++)
      gc__memprof_free_span_records(&slab[i]);
    free(slab);
    slab = next;
  }
  h->slabs = NULL;
  h->span_freelist = NULL;
  h->base = 0;
}

/* Grows the handed-out region by at least bytes; heap.lock held. */
static int grow_locked(gc_heap_t *h, size_t bytes) {
  if (h->grown + bytes > h->reserved)
    return BC_ENOMEM;
  if (h->grown + bytes > h->committed) {
    size_t need = h->grown + bytes - h->committed;
    need = (need + GC_COMMIT_CHUNK - 1) / GC_COMMIT_CHUNK * GC_COMMIT_CHUNK;
    if (h->committed + need > h->reserved)
      need = h->reserved - h->committed;
    if (gc__sys_commit_fail())
      return BC_ENOMEM;
    if (mprotect((void *)(h->base + h->committed), need,
                 PROT_READ | PROT_WRITE) != 0)
      return BC_ENOMEM;
    h->committed += need;
  }
  return 0;
}

/* ---- span structs -------------------------------------------------------- */

static gc_span_t *span_struct_new_locked(gc_heap_t *h) {
  gc_span_t *s = h->span_freelist;
  if (!s) {
    /* slab[0] links the slabs together (for gc_close); the rest are spans */
    gc_span_t *slab = calloc(SPAN_SLAB, sizeof(gc_span_t));
    if (!slab)
      return NULL;
    atomic_fetch_add(&h->meta_sys, SPAN_SLAB * sizeof(gc_span_t));
    h->span_structs += SPAN_SLAB - 1;
    slab[0].next = h->slabs;
    h->slabs = slab;
    for (int i = 1; i < SPAN_SLAB; i++) {
      slab[i].next = h->span_freelist;
      h->span_freelist = &slab[i];
    }
    s = h->span_freelist;
  }
  h->span_freelist = s->next;
  memset(s, 0, sizeof(*s));
  h->span_structs_inuse++;
  return s;
}

static void span_struct_free_locked(gc_heap_t *h, gc_span_t *s) {
  memset(s, 0, sizeof(*s));
  s->next = h->span_freelist;
  h->span_freelist = s;
  h->span_structs_inuse--;
}

static inline size_t page_index(gc_heap_t *h, uintptr_t p) {
  return (p - h->base) >> GC_PAGE_SHIFT;
}

static void map_set(gc_heap_t *h, gc_span_t *s, bool all_pages) {
  size_t first = page_index(h, s->base);
  if (all_pages) {
    for (size_t i = 0; i < s->npages; i++)
      h->spanmap[first + i] = s;
  } else {
    h->spanmap[first] = s;
    h->spanmap[first + s->npages - 1] = s;
  }
}

gc_span_t *gc__span_of(uintptr_t p) {
  gc_heap_t *h = &gc__heap;
  if (p < h->base ||
      p >= h->base + atomic_load_explicit(&h->grown, memory_order_acquire))
    return NULL;
  return h->spanmap[page_index(h, p)];
}

/* ---- page heap ----------------------------------------------------------- */

static span_list_t *free_list_for(gc_heap_t *h, size_t npages) {
  return npages < 128 ? &h->free_small[npages] : &h->free_big;
}

static void free_insert_locked(gc_heap_t *h, gc_span_t *s) {
  s->state = SPAN_FREE;
  s->cls = 0;
  map_set(h, s, false);
  list_push(free_list_for(h, s->npages), s, LIST_FREE);
}

/* Returns a span of exactly npages, state still FREE, or NULL. */
static gc_span_t *alloc_pages_locked(gc_heap_t *h, size_t npages, int *err) {
  gc_span_t *s = NULL;
  for (size_t n = npages; n < 128 && !s; n++)
    s = h->free_small[n].head;
  if (!s) {
    for (gc_span_t *b = h->free_big.head; b; b = b->next) {
      if (b->npages >= npages && (!s || b->npages < s->npages))
        s = b; /* best fit among the big ones */
    }
  }
  if (s) {
    list_remove(free_list_for(h, s->npages), s);
    if (s->npages > npages) {
      gc_span_t *rest = span_struct_new_locked(h);
      if (!rest) {
        free_insert_locked(h, s);
        *err = BC_ENOMEM;
        return NULL;
      }
      rest->base = s->base + npages * GC_PAGE_SIZE;
      rest->npages = (uint32_t)(s->npages - npages);
      rest->released = s->released;
      rest->free_since_ns = s->free_since_ns;
      s->npages = (uint32_t)npages;
      free_insert_locked(h, rest);
    }
    if (s->released) {
      atomic_fetch_sub(&h->heap_released, s->npages * GC_PAGE_SIZE);
      s->released = 0;
    }
    return s;
  }
  /* grow */
  size_t bytes = npages * GC_PAGE_SIZE;
  int rc = grow_locked(h, bytes);
  if (rc) {
    *err = rc;
    return NULL;
  }
  s = span_struct_new_locked(h);
  if (!s) {
    *err = BC_ENOMEM;
    return NULL;
  }
  s->base = h->base + h->grown;
  s->npages = (uint32_t)npages;
  atomic_store_explicit(&h->grown, h->grown + bytes, memory_order_release);
  return s;
}

/* Returns s's pages to the page heap, coalescing with free neighbours. */
static void free_pages_locked(gc_heap_t *h, gc_span_t *s) {
  atomic_fetch_sub(&h->heap_inuse, s->npages * GC_PAGE_SIZE);
  POISON(s->base, s->npages * GC_PAGE_SIZE);
  size_t first = page_index(h, s->base);
  /* clear the interior map entries so stale lookups find nothing */
  for (size_t i = 0; i < s->npages; i++)
    h->spanmap[first + i] = NULL;
  s->state = SPAN_FREE;
  s->released = 0;
  s->free_since_ns = bc_now_mono_ns();
  if (first > 0) {
    gc_span_t *l = h->spanmap[first - 1];
    if (l && l->state == SPAN_FREE) { /* state: heap.lock */
      list_remove(free_list_for(h, l->npages), l);
      if (l->released)
        atomic_fetch_sub(&h->heap_released, l->npages * GC_PAGE_SIZE);
      h->spanmap[page_index(h, l->base) + l->npages - 1] = NULL;
      s->base = l->base;
      s->npages += l->npages;
      span_struct_free_locked(h, l);
    }
  }
  size_t after = page_index(h, s->base) + s->npages;
  if (after < h->grown / GC_PAGE_SIZE) {
    gc_span_t *r = h->spanmap[after];
    if (r && r->state == SPAN_FREE) {
      list_remove(free_list_for(h, r->npages), r);
      if (r->released)
        atomic_fetch_sub(&h->heap_released, r->npages * GC_PAGE_SIZE);
      h->spanmap[after] = NULL;
      s->npages += r->npages;
      span_struct_free_locked(h, r);
    }
  }
  free_insert_locked(h, s);
}

static void free_pages(gc_span_t *s) {
  gc_heap_t *h = &gc__heap;
  pthread_mutex_lock(&h->lock);
  free_pages_locked(h, s);
  pthread_mutex_unlock(&h->lock);
}

/* Is there room under the soft limit for bytes more of in-use pages? */
static bool under_limit(gc_heap_t *h, size_t bytes) {
  uint64_t lim = atomic_load_explicit(&h->memory_limit, memory_order_relaxed);
  return gc__limit_used() + bytes <= lim;
}

/* Takes npages from the page heap for an in-use span. The caller has
 * checked the soft limit. */
static gc_span_t *span_alloc(size_t npages, int state, int *err) {
  gc_heap_t *h = &gc__heap;
  size_t bytes = npages * GC_PAGE_SIZE;
  pthread_mutex_lock(&h->lock);
  gc_span_t *s = alloc_pages_locked(h, npages, err);
  if (s) {
    /* the struct may have served an earlier span: start clean */
    memset(s->allocbits, 0, sizeof(s->allocbits));
    for (int w = 0; w < GC_BITMAP_WORDS; w++) {
      atomic_store_explicit(&s->markbits[w], 0, memory_order_relaxed);
      atomic_store_explicit(&s->specials[w], 0, memory_order_relaxed);
    }
    s->cls = 0;
    s->elemsize = 0;
    s->nelems = s->freeindex = s->alloccount = 0;
    s->state = (uint8_t)state;
    s->onlist = LIST_NONE;
    BC_DASSERT(s->prof == NULL); /* the sweep removed every record */
    s->prof = NULL;
    map_set(h, s, true);
    atomic_fetch_add(&h->heap_inuse, bytes);
  }
  pthread_mutex_unlock(&h->lock);
  if (!s)
    atomic_fetch_add(&h->alloc_failures, 1);
  return s;
}

static uint64_t release_kept_empty(void);

/* The soft limit would be crossed by bytes more: free the emptied spans
 * kept for their classes, if any; else run a cycle (which also evicts down
 * to the live budget) unless this is the last try. Returns whether the
 * caller should look for room again. Over the limit for good:
 * *err = BC_ELIMIT. */
static bool make_room(gc_mutator_t *m, size_t bytes, int tries, int *err) {
  /* the kept spans first; a try that they do not settle still runs its
   * cycle (each of the three tries must be a cycle, or the limit could
   * fail an allocation a cycle would have made room for) */
  if (atomic_load_explicit(&gc__heap.heap_empty, memory_order_relaxed) &&
      release_kept_empty() && under_limit(&gc__heap, bytes))
    return true;
  if (tries < 3 && m && gc__collect_for_limit(m, bytes))
    return true;
  *err = BC_ELIMIT;
  atomic_fetch_add(&gc__heap.alloc_failures, 1);
  return false;
}

/* ---- sweeping ------------------------------------------------------------ */

static int sweep_cursor = 1; /* collector thread (and STW) only */

/* What sweeping some spans of one class found, added to the heap's shared
 * counters once for the lot (tally_flush): five atomic adds per span on
 * lines the mutators' refills write too were a tenth of the sweep. */
typedef struct sweep_tally {
  uint64_t freed, freed_bytes, live, live_bytes;
  int64_t empty; /* change in heap_empty */
} sweep_tally_t;

static void tally_flush(int cls, sweep_tally_t *t) {
  gc_heap_t *h = &gc__heap;
  if (t->freed) {
    atomic_fetch_sub(&h->heap_alloc, t->freed_bytes);
    atomic_fetch_add(&h->heap_objects_freed, t->freed);
    atomic_fetch_add(&h->by_size_frees[cls], t->freed);
  }
  if (t->live) {
    atomic_fetch_add(&h->live_objects, t->live);
    atomic_fetch_add(&h->swept_live_bytes, t->live_bytes);
  }
  if (t->empty)
    atomic_fetch_add(&h->heap_empty, (uint64_t)t->empty);
}

/* Sweeps a span its caller owns: mark bits become alloc bits, freed objects
 * with specials are finalized. Sets *now_empty when nothing survived. */
static void sweep_span(gc_span_t *s, bool *now_empty, sweep_tally_t *t) {
  gc_heap_t *h = &gc__heap;
  uint32_t live = 0, freed = 0;
  uint32_t had = s->alloccount; /* before this sweep */
  int nwords = (s->nelems + 63) / 64;
  if (BC_UNLIKELY(s->prof))
    gc__memprof_sweep(s);
  for (int w = 0; w < nwords; w++) {
    uint64_t mark = atomic_load_explicit(&s->markbits[w], memory_order_relaxed);
    uint64_t dead = s->allocbits[w] & ~mark;
    if (BC_UNLIKELY(dead)) {
      uint64_t sp = atomic_load_explicit(&s->specials[w], memory_order_relaxed);
      uint64_t fin = dead & sp;
      while (fin) {
        int b = __builtin_ctzll(fin);
        fin &= fin - 1;
        if (h->finalizer)
          h->finalizer((void *)(s->base + (size_t)(w * 64 + b) * s->elemsize));
      }
      if (sp & dead) /* fetch_and: a live neighbour may gain a bit now */
        atomic_fetch_and_explicit(&s->specials[w], ~dead,
                                  memory_order_relaxed);
#if defined(__SANITIZE_ADDRESS__)
      uint64_t d = dead;
      while (d) {
        int b = __builtin_ctzll(d);
        d &= d - 1;
        POISON(s->base + (size_t)(w * 64 + b) * s->elemsize, s->elemsize);
      }
#endif
      freed += (uint32_t)__builtin_popcountll(dead);
    }
    s->allocbits[w] = mark;
    atomic_store_explicit(&s->markbits[w], 0, memory_order_relaxed);
    live += (uint32_t)__builtin_popcountll(mark);
  }
  s->alloccount = (uint16_t)live;
  s->freeindex = 0;
  t->freed += freed;
  t->freed_bytes += (uint64_t)freed * s->elemsize;
  t->live += live;
  t->live_bytes += (uint64_t)live * s->elemsize;
  /* emptied spans: see "Emptied spans" above gc__sweep_prepare */
  int64_t bytes = (int64_t)s->npages * (int64_t)GC_PAGE_SIZE;
  if (had == 0) /* kept by the last sweep, and nobody wanted it since */
    t->empty -= bytes;
  *now_empty = live == 0 &&
               (had == 0 || atomic_load_explicit(&h->sweep_release,
                                                 memory_order_relaxed));
  if (live == 0 && !*now_empty)
    t->empty += bytes;
}


static bool sweep_large(gc_span_t *s) {
  gc_heap_t *h = &gc__heap;
  if (BC_UNLIKELY(s->prof))
    gc__memprof_sweep(s);
  uint64_t mark = atomic_load(&s->markbits[0]);
  if (mark & 1) {
    atomic_store(&s->markbits[0], 0);
    atomic_fetch_add(&h->live_objects, 1);
    atomic_fetch_add(&h->swept_live_bytes, (uint64_t)s->npages * GC_PAGE_SIZE);
    return true;
  }
  if ((atomic_load(&s->specials[0]) & 1) && h->finalizer)
    h->finalizer((void *)s->base);
  atomic_fetch_sub(&h->heap_alloc, s->npages * GC_PAGE_SIZE);
  atomic_fetch_add(&h->heap_objects_freed, 1);
  atomic_fetch_add(&h->large_frees, 1);
  return false;
}

/* Emptied spans. A small span whose objects all died stays with its class
 * (on the partial list, alloccount 0) for one cycle instead of going back
 * to the page heap at once: under steady churn the class needs a span
 * again before long, and the round trip through heap.lock (split, coalesce,
 * span struct, span map, bitmaps) costs more than the allocations it
 * serves. A span that nobody allocated from for a whole cycle is empty at
 * its next sweep too, with had == 0: that sweep frees it. Cycles someone
 * waits for, and cycles near the soft limit, free every emptied span
 * (collector.c sweep_should_release), so gc_collect and freeosmemory
 * return all the memory they can; an allocation the limit refuses frees
 * the kept spans (release_kept_empty) before it asks for a cycle. Kept
 * spans go to the tail of the partial list, so partly used spans fill
 * first and an unneeded empty one ages out. mimalloc keeps emptied pages
 * with their thread for the same reason. */

/* Frees every kept empty span (alloccount 0 on a partial list; they sit at
 * the tails) back to the page heap: an allocation over the limit wants the
 * pages now, not after a cycle. Returns the bytes freed. */
static uint64_t release_kept_empty(void) {
  gc_heap_t *h = &gc__heap;
  uint64_t freed = 0;
  for (int c = 1; c < h->nclasses; c++) {
    gc_central_t *ce = &h->central[c];
    span_list_t out = {0};
    pthread_mutex_lock(&ce->lock);
    while (ce->partial.tail && ce->partial.tail->alloccount == 0) {
      gc_span_t *s = ce->partial.tail;
      list_remove(&ce->partial, s);
      list_push(&out, s, LIST_NONE);
    }
    pthread_mutex_unlock(&ce->lock);
    if (!out.head)
      continue;
    pthread_mutex_lock(&h->lock);
    for (gc_span_t *s; (s = list_pop(&out));) {
      uint64_t bytes = (uint64_t)s->npages * GC_PAGE_SIZE;
      atomic_fetch_sub(&h->heap_empty, bytes);
      freed += bytes;
      free_pages_locked(h, s);
    }
    pthread_mutex_unlock(&h->lock);
  }
  return freed;
}

/* STW: every in-use span becomes unswept, in O(classes): the lists are
 * spliced, not walked. mcaches were flushed already. */
void gc__sweep_prepare(void) {
  gc_heap_t *h = &gc__heap;
  atomic_store(&h->live_objects, 0);
  sweep_cursor = 1;
  for (int c = 1; c < h->nclasses; c++) {
    gc_central_t *ce = &h->central[c];
    pthread_mutex_lock(&ce->lock);
    list_splice(&ce->unswept, &ce->partial);
    list_splice(&ce->unswept, &ce->full);
    pthread_mutex_unlock(&ce->lock);
  }
  pthread_mutex_lock(&h->lock);
  list_splice(&h->large_unswept, &h->large);
  pthread_mutex_unlock(&h->lock);
}

/* Puts a swept small span where it belongs; central lock held. Returns true
 * if the span is empty and the caller must free its pages (after unlock). */
static bool place_swept_locked(gc_central_t *ce, gc_span_t *s, bool empty) {
  if (empty)
    return true;
  if (s->alloccount == 0) /* kept empty: after the partly used ones, so
                           * those fill up first and this one may age out */
    list_push_tail(&ce->partial, s, LIST_PARTIAL);
  else if (s->alloccount < s->nelems)
    list_push(&ce->partial, s, LIST_PARTIAL);
  else
    list_push(&ce->full, s, LIST_FULL);
  return false;
}

/* Collector's background sweep: a batch of up to SWEEP_BATCH spans of one
 * class per call, so the central lock is taken twice a batch, not twice a
 * span, and the heap's counters once (sweep_tally_t); a batch is small
 * enough that a mutator short of the class finds other unswept spans to
 * sweep itself. The class cursor only moves on when a class has nothing
 * left to sweep; gc__sweep_prepare resets it. */
#define SWEEP_BATCH 16

bool gc__sweep_one(void) {
  gc_heap_t *h = &gc__heap;
  pthread_mutex_lock(&h->sweep_mu); /* gc_verify waits for this batch */
  for (; sweep_cursor < h->nclasses; sweep_cursor++) {
    gc_central_t *ce = &h->central[sweep_cursor];
    gc_span_t *batch[SWEEP_BATCH], *s;
    bool empty[SWEEP_BATCH];
    int n = 0, nfree = 0;
    pthread_mutex_lock(&ce->lock);
    /* at most half of what is left (at least one), so a mutator short of
     * this class still finds unswept spans to sweep itself */
    size_t take = (ce->unswept.n + 1) / 2;
    if (take > SWEEP_BATCH)
      take = SWEEP_BATCH;
    while ((size_t)n < take && (s = list_pop(&ce->unswept)))
      batch[n++] = s;
    pthread_mutex_unlock(&ce->lock);
    if (!n)
      continue;
    sweep_tally_t t = {0};
    for (int i = 0; i < n; i++) {
      if (i + 1 < n) { /* the next span's bitmaps, while this one sweeps */
        __builtin_prefetch(&batch[i + 1]->allocbits[0]);
        __builtin_prefetch(&batch[i + 1]->markbits[0], 1);
      }
      sweep_span(batch[i], &empty[i], &t);
    }
    tally_flush(sweep_cursor, &t);
    pthread_mutex_lock(&ce->lock);
    for (int i = 0; i < n; i++)
      if (place_swept_locked(ce, batch[i], empty[i]))
        batch[nfree++] = batch[i];
    pthread_mutex_unlock(&ce->lock);
    if (nfree) {
      pthread_mutex_lock(&h->lock);
      for (int i = 0; i < nfree; i++)
        free_pages_locked(h, batch[i]);
      pthread_mutex_unlock(&h->lock);
    }
    pthread_mutex_unlock(&h->sweep_mu);
    return true;
  }
  pthread_mutex_lock(&h->lock);
  gc_span_t *s = list_pop(&h->large_unswept);
  pthread_mutex_unlock(&h->lock);
  if (!s) {
    pthread_mutex_unlock(&h->sweep_mu);
    return false;
  }
  bool keep = sweep_large(s);
  pthread_mutex_lock(&h->lock);
  if (keep)
    list_push(&h->large, s, LIST_LARGE);
  else
    free_pages_locked(h, s);
  pthread_mutex_unlock(&h->lock);
  pthread_mutex_unlock(&h->sweep_mu);
  return true;
}

/* ---- mcache -------------------------------------------------------------- */

static void uncache(gc_heap_t *h, gc_span_t *s) {
  /* the span counted as fully allocated while cached; give back the rest */
  uint32_t unused = (uint32_t)(s->nelems - s->alloccount);
  if (unused)
    atomic_fetch_sub(&h->heap_alloc, (uint64_t)unused * s->elemsize);
  gc_central_t *ce = &h->central[s->cls];
  pthread_mutex_lock(&ce->lock);
  if (s->alloccount < s->nelems) {
    list_push(&ce->partial, s, LIST_PARTIAL);
  } else {
    list_push(&ce->full, s, LIST_FULL);
  }
  pthread_mutex_unlock(&ce->lock);
}

/* STW (or the mutator's end): returns every cached span, and every span
 * the mcache filled, to its central lists. */
void gc__mcache_flush(gc_mutator_t *m) {
  gc_heap_t *h = &gc__heap;
  for (int c = 1; c < h->nclasses; c++) {
    gc_span_t *s = m->alloc[c];
    if (s) {
      m->alloc[c] = NULL;
      uncache(h, s);
    }
    if (m->full[c].head) {
      gc_central_t *ce = &h->central[c];
      pthread_mutex_lock(&ce->lock);
      list_splice(&ce->full, &m->full[c]);
      pthread_mutex_unlock(&ce->lock);
    }
  }
}

/* A swept span of class cls with a free slot from the central lists,
 * sweeping unswept spans on the way (lazy sweep); NULL if there is none. */
static gc_span_t *central_take(gc_central_t *ce, int cls) {
  sweep_tally_t t = {0}; /* what the lazy sweep below finds, added once */
  pthread_mutex_lock(&ce->lock);
  gc_span_t *s = list_pop(&ce->partial);
  while (!s) {
    gc_span_t *u = list_pop(&ce->unswept);
    if (!u)
      break;
    pthread_mutex_unlock(&ce->lock);
    bool empty;
    sweep_span(u, &empty, &t);
    if (empty) {
      free_pages(u);
      pthread_mutex_lock(&ce->lock);
      continue;
    }
    pthread_mutex_lock(&ce->lock);
    if (u->alloccount < u->nelems)
      s = u;
    else
      list_push(&ce->full, u, LIST_FULL);
  }
  pthread_mutex_unlock(&ce->lock);
  tally_flush(cls, &t);
  if (s && s->alloccount == 0) /* an emptied span, kept: in use again */
    atomic_fetch_sub(&gc__heap.heap_empty, (uint64_t)s->npages * GC_PAGE_SIZE);
  return s;
}

/* The first free slot at or after i, or nelems when there is none. */
static inline uint32_t next_free(const gc_span_t *s, uint32_t i) {
  while (i < s->nelems) {
    uint32_t w = i >> 6;
    uint64_t freebits = ~s->allocbits[w] >> (i & 63);
    if (freebits) {
      uint32_t idx = i + (uint32_t)__builtin_ctzll(freebits);
      return idx < s->nelems ? idx : s->nelems;
    }
    i = (w + 1) << 6;
  }
  return s->nelems;
}

static BC_NOINLINE gc_span_t *refill(gc_mutator_t *m, int cls, int *err) {
  gc_heap_t *h = &gc__heap;
  gc_span_t *old = m->alloc[cls];
  if (old) { /* full: its freeindex reached nelems */
    BC_DASSERT(old->alloccount == old->nelems);
    m->alloc[cls] = NULL;
    list_push(&m->full[cls], old, LIST_FULL);
  }
  gc_central_t *ce = &h->central[cls];
  size_t bytes = (size_t)h->class_pages[cls] * GC_PAGE_SIZE;
  gc_span_t *s;
  for (int tries = 0;; tries++) {
    /* the pacer, on every refill: a span taken from the central lists
     * counts as allocated as much as a fresh one */
    uint64_t next = atomic_load_explicit(&h->next_gc, memory_order_relaxed);
    if (atomic_load_explicit(&h->heap_alloc, memory_order_relaxed) >= next)
      gc__trigger();
    s = central_take(ce, cls);
    if (s)
      break;
    if (under_limit(h, bytes)) {
      s = span_alloc(h->class_pages[cls], SPAN_SMALL, err);
      if (!s)
        return NULL;
      s->cls = (uint8_t)cls;
      s->elemsize = h->class_size[cls];
      s->nelems = h->class_nelems[cls];
      POISON(s->base, (size_t)s->npages * GC_PAGE_SIZE);
      break;
    }
    /* a cycle frees slots in existing spans, so look at the lists again */
    if (!make_room(m, bytes, tries, err))
      return NULL;
  }
  atomic_fetch_add(&h->heap_alloc,
                   (uint64_t)(s->nelems - s->alloccount) * s->elemsize);
  s->onlist = LIST_MCACHE;
  /* in an mcache, freeindex is the next free slot (nelems: full) */
  s->freeindex = (uint16_t)next_free(s, 0);
  BC_CHECK(s->freeindex < s->nelems,
           "refilled span has no free slot (class %d)", cls);
  m->alloc[cls] = s;
  return s;
}


static BC_NOINLINE void *alloc_large(gc_mutator_t *m, size_t size, int *err,
                                      void *ra) {
  gc_heap_t *h = &gc__heap;
  size_t npages = (size + GC_PAGE_SIZE - 1) / GC_PAGE_SIZE;
  if (size > h->reserved) {
    *err = BC_ENOMEM;
    return NULL;
  }
  uint64_t next = atomic_load_explicit(&h->next_gc, memory_order_relaxed);
  if (atomic_load_explicit(&h->heap_alloc, memory_order_relaxed) +
          npages * GC_PAGE_SIZE >=
      next)
    gc__trigger();
  for (int tries = 0; !under_limit(h, npages * GC_PAGE_SIZE); tries++)
    if (!make_room(m, npages * GC_PAGE_SIZE, tries, err))
      return NULL;
  gc_span_t *s = span_alloc(npages, SPAN_LARGE, err);
  if (!s)
    return NULL;
  s->elemsize = (uint32_t)(npages * GC_PAGE_SIZE > UINT32_MAX
                               ? UINT32_MAX
                               : npages * GC_PAGE_SIZE);
  s->nelems = 1;
  s->alloccount = 1;
  s->allocbits[0] = 1;
  if (atomic_load_explicit(&h->alloc_black, memory_order_relaxed))
    atomic_store(&s->markbits[0], 1);
  UNPOISON(s->base, npages * GC_PAGE_SIZE); /* all of gc_usable_size */
  atomic_fetch_add(&h->heap_alloc, npages * GC_PAGE_SIZE);
  if (BC_UNLIKELY((m->next_sample -= (int64_t)(npages * GC_PAGE_SIZE)) < 0))
    gc__memprof_sample(m, s, (void *)s->base, npages * GC_PAGE_SIZE, ra);
  pthread_mutex_lock(&h->lock);
  list_push(&h->large, s, LIST_LARGE);
  pthread_mutex_unlock(&h->lock);
  atomic_store_explicit(&m->st.large_mallocs,
                        atomic_load_explicit(&m->st.large_mallocs,
                                             memory_order_relaxed) + 1,
                        memory_order_relaxed);
  atomic_store_explicit(&m->st.large_bytes,
                        atomic_load_explicit(&m->st.large_bytes,
                                             memory_order_relaxed) +
                            npages * GC_PAGE_SIZE,
                        memory_order_relaxed);
  return (void *)s->base;
}

static inline void bump(_Atomic uint64_t *c, uint64_t d) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                        memory_order_relaxed);
}

void *gc_alloc(gc_mutator_t *m, size_t size, int *err) {
  gc_heap_t *h = &gc__heap;
  BC_DASSERT(atomic_load_explicit(&m->state, memory_order_relaxed) ==
             MUT_RUNNING);
  if (BC_UNLIKELY(size > GC_MAX_SMALL))
    return alloc_large(m, size, err, __builtin_return_address(0));
  int cls = gc__size_class(size ? size : 1);
  gc_span_t *s = m->alloc[cls];
  uint32_t idx;
  if (BC_UNLIKELY(!s || (idx = s->freeindex) >= s->nelems)) {
    s = refill(m, cls, err);
    if (!s)
      return NULL;
    idx = s->freeindex;
  }
  s->allocbits[idx >> 6] |= 1ull << (idx & 63);
  s->alloccount++;
  /* find the class's next slot now and start fetching its first line: by
   * the time this class allocates again it is in cache, and the caller's
   * first write to a fresh object is not a miss to memory */
  uint32_t next = next_free(s, idx + 1);
  s->freeindex = (uint16_t)next;
  if (next < s->nelems)
    __builtin_prefetch((void *)(s->base + (size_t)next * s->elemsize), 1, 3);
  if (BC_UNLIKELY(atomic_load_explicit(&h->alloc_black, memory_order_relaxed)))
    atomic_fetch_or_explicit(&s->markbits[idx >> 6], 1ull << (idx & 63),
                             memory_order_relaxed);
  bump(&m->st.mallocs, 1);
  bump(&m->st.total_alloc, s->elemsize);
  bump(&m->st.by_size[cls], 1);
  void *p = (void *)(s->base + (size_t)idx * s->elemsize);
  UNPOISON(p, s->elemsize);
  /* allocation sampling: one subtract, a branch almost never taken */
  if (BC_UNLIKELY((m->next_sample -= (int64_t)s->elemsize) < 0))
    gc__memprof_sample(m, s, p, s->elemsize, __builtin_return_address(0));
  return p;
}

size_t gc_usable_size(const void *obj) {
  gc_span_t *s = gc__span_of((uintptr_t)obj);
  BC_CHECK(s && s->state != SPAN_FREE, "gc_usable_size: not a heap object");
  if (s->state == SPAN_LARGE)
    return (size_t)s->npages * GC_PAGE_SIZE;
  return s->elemsize;
}

/* ---- marking ------------------------------------------------------------- */

static inline void mark_in(gc_heap_t *h, uintptr_t p, size_t grown) {
  gc_span_t *s = p >= h->base && p - h->base < grown
                     ? h->spanmap[(p - h->base) >> GC_PAGE_SHIFT]
                     : NULL;
  BC_CHECK(s && s->state != SPAN_FREE, "gc_mark: %p is not a heap object",
           (void *)p);
  size_t idx = s->state == SPAN_LARGE
                   ? 0
                   : (size_t)(((uint64_t)(p - s->base) *
                               h->class_divmul[s->cls]) >>
                              GC_DIVMUL_SHIFT);
  atomic_fetch_or_explicit(&s->markbits[idx >> 6], 1ull << (idx & 63),
                           memory_order_relaxed);
}

void gc_mark(void *obj) {
  gc_heap_t *h = &gc__heap;
  mark_in(h, (uintptr_t)obj,
          atomic_load_explicit(&h->grown, memory_order_acquire));
}

/* Three stages in flight: the span map entry MAP_AHEAD objects ahead, the
 * span struct and its mark bits SPAN_AHEAD ahead (its map entry is in cache
 * by then), the mark itself. Marking a big index is a chain of misses
 * (map, span, bitmap) per object; pipelined, they overlap. */
#define MAP_AHEAD 16
#define SPAN_AHEAD 8

void gc_mark_batch(void *const *objs, size_t n) {
  gc_heap_t *h = &gc__heap;
  size_t grown = atomic_load_explicit(&h->grown, memory_order_acquire);
  uintptr_t base = h->base;
  for (size_t i = 0; i < n; i++) {
    if (i + MAP_AHEAD < n) {
      uintptr_t q = (uintptr_t)objs[i + MAP_AHEAD];
      if (q - base < grown)
        __builtin_prefetch(&h->spanmap[(q - base) >> GC_PAGE_SHIFT]);
    }
    if (i + SPAN_AHEAD < n) {
      uintptr_t q = (uintptr_t)objs[i + SPAN_AHEAD];
      gc_span_t *s =
          q - base < grown ? h->spanmap[(q - base) >> GC_PAGE_SHIFT] : NULL;
      if (s) {
        __builtin_prefetch(s);
        __builtin_prefetch(&s->markbits[0], 1);
        __builtin_prefetch(&s->markbits[GC_BITMAP_WORDS - 1], 1);
      }
    }
    if (objs[i])
      mark_in(h, (uintptr_t)objs[i], grown);
  }
}

void gc_set_finalizer(void *obj) {
  uintptr_t p = (uintptr_t)obj;
  gc_span_t *s = gc__span_of(p);
  BC_CHECK(s && s->state != SPAN_FREE, "gc_set_finalizer: not a heap object");
  size_t idx = s->state == SPAN_LARGE ? 0 : (p - s->base) / s->elemsize;
  atomic_fetch_or_explicit(&s->specials[idx >> 6], 1ull << (idx & 63),
                           memory_order_relaxed);
}

/* ---- scavenger ----------------------------------------------------------- */

/* Releases free spans idle for longer than older_than_ns, up to max_bytes.
 * Returns bytes released. */
uint64_t gc__scavenge(uint64_t older_than_ns, uint64_t max_bytes) {
  gc_heap_t *h = &gc__heap;
  uint64_t now = bc_now_mono_ns(), done = 0;
  pthread_mutex_lock(&h->lock);
  for (size_t n = 1; n <= 128 && done < max_bytes; n++) {
    span_list_t *l = n < 128 ? &h->free_small[n] : &h->free_big;
    for (gc_span_t *s = l->head; s && done < max_bytes; s = s->next) {
      if (s->released || now - s->free_since_ns < older_than_ns)
        continue;
      size_t bytes = (size_t)s->npages * GC_PAGE_SIZE;
      UNPOISON(s->base, bytes);
      madvise((void *)s->base, bytes, MADV_DONTNEED);
      POISON(s->base, bytes);
      s->released = 1;
      atomic_fetch_add(&h->heap_released, bytes);
      done += bytes;
    }
  }
  pthread_mutex_unlock(&h->lock);
  return done;
}

/* ---- verification -------------------------------------------------------- */

/* World stopped, every mcache flushed or cached spans tolerated. */
void gc__verify_locked(void) {
  gc_heap_t *h = &gc__heap;
  pthread_mutex_lock(&h->lock);
  size_t npages = h->grown / GC_PAGE_SIZE, inuse = 0, released = 0;
  size_t empty = 0;
  for (size_t i = 0; i < npages;) {
    gc_span_t *s = h->spanmap[i];
    BC_CHECK(s != NULL, "page %zu has no span", i);
    BC_CHECK(s->base == h->base + i * GC_PAGE_SIZE,
             "span map at page %zu points at a span starting elsewhere", i);
    if (s->state == SPAN_FREE) {
      BC_CHECK(s->onlist == LIST_FREE, "free span not on a free list");
      if (s->released)
        released += (size_t)s->npages * GC_PAGE_SIZE;
    } else {
      inuse += (size_t)s->npages * GC_PAGE_SIZE;
      for (size_t k = 0; k < s->npages; k++)
        BC_CHECK(h->spanmap[i + k] == s, "in-use span map hole");
      if (s->state == SPAN_SMALL && s->onlist != LIST_MCACHE) {
        uint32_t pc = 0;
        for (int w = 0; w < GC_BITMAP_WORDS; w++)
          pc += (uint32_t)__builtin_popcountll(s->allocbits[w]);
        BC_CHECK(pc == s->alloccount, "alloccount %u != popcount %u",
                 s->alloccount, pc);
        if (pc == 0)
          empty += (size_t)s->npages * GC_PAGE_SIZE;
        BC_CHECK(s->nelems == h->class_nelems[s->cls] &&
                     s->elemsize == h->class_size[s->cls],
                 "span of class %d has the wrong shape", s->cls);
      }
    }
    i += s->npages;
  }
  BC_CHECK(inuse == atomic_load(&h->heap_inuse), "heap_inuse %zu != %llu",
           inuse, (unsigned long long)atomic_load(&h->heap_inuse));
  BC_CHECK(empty == atomic_load(&h->heap_empty), "heap_empty %zu != %llu",
           empty, (unsigned long long)atomic_load(&h->heap_empty));
  BC_CHECK(released == atomic_load(&h->heap_released),
           "heap_released %zu != %llu", released,
           (unsigned long long)atomic_load(&h->heap_released));
  pthread_mutex_unlock(&h->lock);
}
