/* pprof_cpu.c - the CPU profiler behind /debug/pprof/profile (see the essay
 * in api/pprof.c; DESIGN.md pitfall 11).
 *
 * Threads
 *   Every thread worth profiling registers itself on its own thread (the
 *   server's thread hook for the workers and the admin thread, gc's for the
 *   collector): its kernel tid, its pthread, a ring, and a warm-up of
 *   libunwind, whose per-thread cache is set up then, outside any handler.
 *
 * Sampling (only while a profile runs)
 *   One POSIX timer per registered thread on that thread's CPU-time clock
 *   (pthread_getcpuclockid, like timer_create(CLOCK_THREAD_CPUTIME_ID) from
 *   the thread itself) at PPROF_CPU_HZ, delivering SIGPROF to that very
 *   thread (SIGEV_THREAD_ID). An idle thread burns no CPU time, so it takes
 *   no samples and costs nothing.
 *
 * The handler (async-signal-safe: no malloc, no lock, no dladdr)
 *   unw_init_local2(UNW_INIT_SIGNAL_FRAME) on the signal's ucontext starts
 *   at the interrupted instruction; unw_step walks the callers (libunwind's
 *   local unwinder is signal-safe once warmed up). The record {n, labels,
 *   thread, pcs[n]} goes into the thread's single-producer ring (the
 *   handler) / single-consumer (the admin thread under reg_mu) of words with
 *   acquire/release head and tail; a full ring counts a lost sample.
 *   Symbolization happens later, on the admin thread (pprof_proto.c).
 *
 * Draining
 *   The admin thread drains every ring each 100 ms into an aggregate keyed
 *   by (thread, labels, stack); at the end it writes one sample per key with
 *   values {count, count * period}. Lost samples become one sample on a
 *   synthetic frame, as Go's runtime._LostExternalCode.
 */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <errno.h>
#include <libunwind.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pprof.h"

#define MAX_THREADS 256
#define RING_WORDS 8192 /* per thread: about 4 s of deep stacks at 100 Hz */
#define REC_MAGIC 0x5052u

typedef struct pthr {
  bool used;
  pid_t tid;
  pthread_t pt;
  char name[24];
  timer_t timer;
  bool armed;
  const api_labels_t *volatile labels; /* this thread's; its handler reads */
  _Atomic uint64_t head, tail;         /* ring positions, in words */
  _Atomic uint64_t lost;
  uint64_t *ring;
} pthr_t;

static struct {
  pthread_mutex_t mu; /* the registry, the rings' consumer side */
  pthr_t t[MAX_THREADS];
  _Atomic int running;
  bool handler_installed;
  uint64_t lost;
  /* the aggregate */
  struct agg **hash;
  struct agg *all;
  size_t nagg;
} C = {.mu = PTHREAD_MUTEX_INITIALIZER};

static __thread pthr_t *self;

typedef struct agg {
  struct agg *next, *allnext;
  uint64_t hash, count;
  const api_labels_t *labels;
  int thread;
  int n;
  uintptr_t pcs[];
} agg_t;

#define AGG_HEADS 4096
#define AGG_MAX 65536 /* distinct stacks kept; beyond, samples are lost */

/* ---- the handler ------------------------------------------------------------------ */

static void ring_write(pthr_t *t, const uintptr_t *pcs, int n) {
  uint64_t head = atomic_load_explicit(&t->head, memory_order_relaxed);
  uint64_t tail = atomic_load_explicit(&t->tail, memory_order_acquire);
  uint64_t need = (uint64_t)n + 2;
  if (RING_WORDS - (head - tail) < need) {
    atomic_fetch_add_explicit(&t->lost, 1, memory_order_relaxed);
    return;
  }
  uint64_t *r = t->ring;
  r[head % RING_WORDS] = (uint64_t)REC_MAGIC << 32 | (uint64_t)n;
  r[(head + 1) % RING_WORDS] = (uint64_t)(uintptr_t)t->labels;
  for (int i = 0; i < n; i++)
    r[(head + 2 + (uint64_t)i) % RING_WORDS] = pcs[i];
  atomic_store_explicit(&t->head, head + need, memory_order_release);
}

static void on_sigprof(int sig, siginfo_t *si, void *ucv) {
  (void)sig;
  (void)si;
  int saved = errno;
  pthr_t *t = self;
  if (t && t->ring && atomic_load_explicit(&C.running, memory_order_relaxed)) {
    uintptr_t pcs[PPROF_CPU_MAX_STACK];
    int n = 0;
    unw_cursor_t cur;
    if (unw_init_local2(&cur, (unw_context_t *)ucv, UNW_INIT_SIGNAL_FRAME) ==
        0) {
      do {
        unw_word_t ip;
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || !ip)
          break;
        pcs[n++] = (uintptr_t)ip;
      } while (n < PPROF_CPU_MAX_STACK && unw_step(&cur) > 0);
    }
    if (n)
      ring_write(t, pcs, n);
  }
  errno = saved;
}

/* ---- threads --------------------------------------------------------------------- */

/* Runs the unwinder once on this thread, outside any handler, so its
 * per-thread state exists before the first signal (pitfall 11). */
static BC_NOINLINE void warm_up(void) {
  unw_context_t uc;
  unw_cursor_t cur;
  unw_getcontext(&uc);
  if (unw_init_local(&cur, &uc) == 0)
    for (int i = 0; i < 64 && unw_step(&cur) > 0; i++)
      ;
}

static int arm_locked(pthr_t *t) {
  clockid_t cid;
  if (pthread_getcpuclockid(t->pt, &cid) != 0)
    return -1;
  struct sigevent sev;
  memset(&sev, 0, sizeof(sev));
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = SIGPROF;
  sev._sigev_un._tid = t->tid;
  if (timer_create(cid, &sev, &t->timer) != 0)
    return -1;
  long ns = 1000000000L / PPROF_CPU_HZ;
  struct itimerspec its = {{0, ns}, {0, ns}};
  if (timer_settime(t->timer, 0, &its, NULL) != 0) {
    timer_delete(t->timer);
    return -1;
  }
  t->armed = true;
  return 0;
}

static void disarm_locked(pthr_t *t) {
  if (t->armed) {
    timer_delete(t->timer);
    t->armed = false;
  }
}

/* Once per process: libunwind's per-thread cache takes no lock (the global
 * one locks with signals masked: two sigprocmask calls per lookup). */
static void unwinder_init(void) {
  unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
}

void api__cpuprof_thread_start(const char *name, int id) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, unwinder_init);
  warm_up();
  uint64_t *ring = malloc(RING_WORDS * sizeof(uint64_t));
  if (!ring)
    return;
  pthread_mutex_lock(&C.mu);
  pthr_t *t = NULL;
  for (int i = 0; i < MAX_THREADS && !t; i++)
    if (!C.t[i].used)
      t = &C.t[i];
  if (!t) {
    pthread_mutex_unlock(&C.mu);
    free(ring);
    return;
  }
  memset(t, 0, sizeof(*t));
  t->used = true;
  t->tid = (pid_t)syscall(SYS_gettid);
  t->pt = pthread_self();
  if (id >= 0)
    snprintf(t->name, sizeof(t->name), "%s %d", name, id);
  else
    snprintf(t->name, sizeof(t->name), "%s", name);
  t->ring = ring;
  self = t;
  if (atomic_load(&C.running))
    arm_locked(t);
  pthread_mutex_unlock(&C.mu);
}

void api__cpuprof_thread_stop(void) {
  pthr_t *t = self;
  if (!t)
    return;
  sigset_t prof, old;
  sigemptyset(&prof);
  sigaddset(&prof, SIGPROF);
  pthread_sigmask(SIG_BLOCK, &prof, &old);
  pthread_mutex_lock(&C.mu);
  disarm_locked(t);
  self = NULL;
  C.lost += atomic_load(&t->lost);
  free(t->ring);
  t->ring = NULL;
  t->used = false;
  pthread_mutex_unlock(&C.mu);
  /* a signal still pending for this thread finds self NULL */
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void api__cpuprof_set_labels(const api_labels_t *l) {
  pthr_t *t = self;
  if (t) {
    t->labels = l;
    atomic_signal_fence(memory_order_release);
  }
}

/* ---- a profile ------------------------------------------------------------------- */

int api__cpuprof_start(void) {
  int expect = 0;
  if (!atomic_compare_exchange_strong(&C.running, &expect, 1))
    return BC_EBUSY;
  pthread_mutex_lock(&C.mu);
  if (!C.handler_installed) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPROF, &sa, NULL);
    C.handler_installed = true;
  }
  C.lost = 0;
  for (int i = 0; i < MAX_THREADS; i++) {
    pthr_t *t = &C.t[i];
    if (!t->used)
      continue;
    atomic_store(&t->lost, 0);
    atomic_store(&t->tail, atomic_load(&t->head));
    arm_locked(t);
  }
  pthread_mutex_unlock(&C.mu);
  return 0;
}

static void agg_add(int thread, const api_labels_t *labels,
                    const uintptr_t *pcs, int n) {
  if (!C.hash) {
    C.hash = calloc(AGG_HEADS, sizeof(*C.hash));
    if (!C.hash)
      return;
  }
  uint64_t h = bc_xxh64(pcs, (size_t)n * sizeof(*pcs),
                        (uint64_t)(uintptr_t)labels ^ (uint64_t)thread);
  agg_t **head = &C.hash[h % AGG_HEADS];
  for (agg_t *a = *head; a; a = a->next)
    if (a->hash == h && a->thread == thread && a->labels == labels &&
        a->n == n && !memcmp(a->pcs, pcs, (size_t)n * sizeof(*pcs))) {
      a->count++;
      return;
    }
  agg_t *a = C.nagg < AGG_MAX
                 ? malloc(sizeof(*a) + (size_t)n * sizeof(uintptr_t))
                 : NULL;
  if (!a) {
    C.lost++;
    return;
  }
  C.nagg++;
  a->hash = h;
  a->count = 1;
  a->labels = labels;
  a->thread = thread;
  a->n = n;
  memcpy(a->pcs, pcs, (size_t)n * sizeof(*pcs));
  a->next = *head;
  *head = a;
  a->allnext = C.all;
  C.all = a;
}

static void drain_locked(void) {
  for (int i = 0; i < MAX_THREADS; i++) {
    pthr_t *t = &C.t[i];
    if (!t->used || !t->ring)
      continue;
    uint64_t tail = atomic_load_explicit(&t->tail, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&t->head, memory_order_acquire);
    while (tail < head) {
      uint64_t hdr = t->ring[tail % RING_WORDS];
      int n = (int)(hdr & 0xffffffffu);
      if (hdr >> 32 != REC_MAGIC || n > PPROF_CPU_MAX_STACK) {
        tail = head; /* cannot happen; drop the rest rather than misread */
        break;
      }
      const api_labels_t *l =
          (const api_labels_t *)(uintptr_t)t->ring[(tail + 1) % RING_WORDS];
      uintptr_t pcs[PPROF_CPU_MAX_STACK];
      for (int k = 0; k < n; k++)
        pcs[k] = t->ring[(tail + 2 + (uint64_t)k) % RING_WORDS];
      agg_add(i, l, pcs, n);
      tail += (uint64_t)n + 2;
    }
    atomic_store_explicit(&t->tail, tail, memory_order_release);
  }
}

void api__cpuprof_drain(void) {
  pthread_mutex_lock(&C.mu);
  drain_locked();
  pthread_mutex_unlock(&C.mu);
}

void api__cpuprof_stop(pprof_t *p) {
  pthread_mutex_lock(&C.mu);
  for (int i = 0; i < MAX_THREADS; i++)
    if (C.t[i].used)
      disarm_locked(&C.t[i]);
  drain_locked();
  uint64_t lost = C.lost;
  char names[MAX_THREADS][24];
  for (int i = 0; i < MAX_THREADS; i++) {
    lost += C.t[i].used ? atomic_load(&C.t[i].lost) : 0;
    memcpy(names[i], C.t[i].name, sizeof(names[i]));
  }
  agg_t *all = C.all;
  C.all = NULL;
  free(C.hash);
  C.hash = NULL;
  C.nagg = 0;
  pthread_mutex_unlock(&C.mu);
  const int64_t period = 1000000000LL / PPROF_CPU_HZ;
  while (all) {
    agg_t *a = all;
    all = a->allnext;
    if (p) {
      int64_t v[2] = {(int64_t)a->count, (int64_t)a->count * period};
      pprof_sample_begin(p);
      pprof_sample_stack(p, a->pcs, a->n, true);
      pprof_sample_values(p, v, 2);
      pprof_sample_labels(p, a->labels);
      pprof_sample_label(p, "thread", names[a->thread]);
      pprof_sample_end(p);
    }
    free(a);
  }
  if (p && lost) {
    int64_t v[2] = {(int64_t)lost, (int64_t)lost * period};
    pprof_sample_begin(p);
    pprof_sample_frame(p, "bufcache.lost_samples");
    pprof_sample_values(p, v, 2);
    pprof_sample_end(p);
  }
  atomic_store(&C.running, 0);
}
