/* test_gc_pace.c - background pacing (gc/collector.c): the collector sleeps
 * between units of concurrent work only when it competes with running
 * mutators for too few CPUs, and not when memory is short.
 *
 * The process is confined to one CPU before the collector thread exists,
 * so the collector inherits it. A concurrent scanner does UNITS units of
 * busy work (UNIT_NS of its own CPU time each) and calls gc_scan_pace()
 * after each; PaceSleepNs (gc_stats_t.pace_sleep_ns) tells whether it
 * slept. Three cycles:
 *   1. the only mutator parked: a CPU to spare, no sleep;
 *   2. a second mutator spinning (RUNNING, at safepoints) on that CPU: the
 *      collector holds back, it sleeps;
 *   3. the same, with the memory limit set so that in-use memory is over
 *      75% of it: finishing the cycle comes first, no sleep.
 * No timing is asserted: only whether the collector slept.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "gc.h"

#define UNITS 40
#define UNIT_NS 500000ull /* 0.5 ms of the collector's CPU per unit */

static gc_mutator_t *M;
static _Atomic int units_done;
static _Atomic bool spin_stop;
static _Atomic bool spinning;
static pthread_t spin_thread;
static bool spin_started;

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void busy_scanner(void *arg) {
  (void)arg;
  for (int u = 0; u < UNITS; u++) {
    uint64_t t0 = thread_cpu_ns();
    while (thread_cpu_ns() - t0 < UNIT_NS)
      ;
    atomic_fetch_add(&units_done, 1);
    gc_scan_pace();
  }
}

static void *spinner(void *arg) {
  (void)arg;
  gc_mutator_t *m = gc_mutator_new();
  if (!m)
    return NULL;
  gc_mutator_unpark(m);
  atomic_store(&spinning, true);
  while (!atomic_load(&spin_stop))
    gc_mutator_safepoint(m);
  gc_mutator_park(m);
  gc_mutator_free(m);
  return NULL;
}

static gc_stats_t *stats(void) {
  static gc_stats_t st;
  gc_read_stats(&st);
  return &st;
}

/* One forced cycle (the scanner runs in it); returns the sleep it added. */
static uint64_t cycle_sleep(void) {
  uint64_t before = stats()->pace_sleep_ns;
  atomic_store(&units_done, 0);
  gc_collect(M);
  assert_int_equal(atomic_load(&units_done), UNITS);
  return stats()->pace_sleep_ns - before;
}

static int setup(void **state) {
  (void)state;
  cpu_set_t one;
  CPU_ZERO(&one);
  cpu_set_t have;
  if (sched_getaffinity(0, sizeof have, &have) != 0)
    return -1;
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &have)) {
      CPU_SET(c, &one);
      break;
    }
  if (sched_setaffinity(0, sizeof one, &one) != 0) /* before gc_start */
    return -1;
  gc_config_t cfg = {.memory_limit = (uint64_t)4 << 30,
                     .gc_percent = GC_PERCENT_OFF,
                     .nprocs = 2};
  if (gc_init(&cfg) != 0)
    return -1;
  gc_register_roots(GC_ROOTS_CONCURRENT, busy_scanner, NULL);
  if (gc_start() != 0)
    return -1;
  M = gc_mutator_new();
  return M ? 0 : -1;
}

static void spinner_stop(void) {
  if (!spin_started)
    return;
  atomic_store(&spin_stop, true);
  pthread_join(spin_thread, NULL);
  spin_started = false;
}

static int teardown(void **state) {
  (void)state;
  spinner_stop(); /* also after a failed assertion */
  gc_mutator_free(M);
  gc_stop();
  gc_close();
  return 0;
}

static void test_pacing(void **state) {
  (void)state;
  /* 1. nobody else runs (M is parked inside gc_collect) */
  assert_int_equal(cycle_sleep(), 0);

  /* 2. a running mutator on the collector's only CPU */
  assert_int_equal(pthread_create(&spin_thread, NULL, spinner, NULL), 0);
  spin_started = true;
  while (!atomic_load(&spinning))
    sched_yield();
  assert_true(cycle_sleep() > 0);

  /* 3. the same, but in-use memory over 75% of the limit: 4 MiB of
   * objects (garbage, but in use until the cycle's sweep) and a limit just
   * above the heap's in-use pages, whatever else counts against it */
  gc_mutator_unpark(M);
  for (int i = 0; i < 64; i++) {
    int err;
    assert_non_null(gc_alloc(M, 64 * 1024, &err));
  }
  gc_mutator_park(M);
  uint64_t inuse = stats()->heap_inuse;
  assert_true(inuse >= 4u << 20);
  uint64_t old = gc_set_memory_limit(inuse + inuse / 10);
  assert_int_equal(cycle_sleep(), 0);
  gc_set_memory_limit(old);

  spinner_stop();
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_pacing)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
