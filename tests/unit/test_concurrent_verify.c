/* test_concurrent_verify.c - gc_verify() on a healthy heap passes whenever
 * it is called: here while forced cycles run back to back and a mutator
 * makes garbage, so the collector is often sweeping when the world is
 * stopped for the check. (gc.h: "Checks the heap's invariants ...; aborts on
 * a violation. Stops the world while it runs.")
 *
 * A failure is an abort from gc_verify (or, under TSan, a data race report
 * between the check and the sweeper).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gc.h"

#define NLIVE 200000

static void *live[NLIVE];
static _Atomic int done;

static void scan(void *arg) {
  (void)arg;
  for (int i = 0; i < NLIVE; i += 2)
    gc_mark(live[i]);
}

static void *garbage_main(void *arg) {
  (void)arg;
  gc_mutator_t *m = gc_mutator_new();
  gc_mutator_unpark(m);
  long i = 0;
  while (!atomic_load(&done)) {
    int err;
    for (int k = 0; k < 256; k++, i++)
      if (!gc_alloc(m, 16 + (size_t)(i % 40) * 16, &err))
        break;
    gc_mutator_park(m);
    gc_mutator_unpark(m);
  }
  gc_mutator_park(m);
  gc_mutator_free(m);
  return NULL;
}

static void *driver_main(void *arg) {
  long *cycles = arg;
  while (!atomic_load(&done)) {
    gc_collect(NULL);
    (*cycles)++;
  }
  return NULL;
}

static uint64_t now_ms(void) { return bc_now_mono_ns() / 1000000; }

static void test_verify_during_cycles(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = (uint64_t)1 << 30,
                     .gc_percent = GC_PERCENT_OFF,
                     .nprocs = 2};
  assert_int_equal(gc_init(&cfg), 0);
  gc_register_roots(GC_ROOTS_STW, scan, NULL);
  assert_int_equal(gc_start(), 0);
  gc_mutator_t *m = gc_mutator_new();
  gc_mutator_unpark(m);
  for (int i = 0; i < NLIVE; i++) {
    int err;
    live[i] = gc_alloc(m, 16 + (size_t)(i % 40) * 16, &err);
    assert_non_null(live[i]);
  }
  gc_mutator_park(m);

  long cycles = 0, verifies = 0;
  pthread_t g, d;
  assert_int_equal(pthread_create(&g, NULL, garbage_main, NULL), 0);
  assert_int_equal(pthread_create(&d, NULL, driver_main, &cycles), 0);
  uint64_t end = now_ms() + 3000;
  while (now_ms() < end && verifies < 200000) {
    gc_verify();
    verifies++;
    struct timespec ts = {0, 100 * 1000}; /* let cycles make progress */
    nanosleep(&ts, NULL);
  }
  atomic_store(&done, 1);
  pthread_join(g, NULL);
  pthread_join(d, NULL);
  print_message("%ld verifies during %ld cycles\n", verifies, cycles);
  assert_true(cycles > 0);
  gc_verify();
  gc_mutator_free(m);
  gc_stop();
  gc_close();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_verify_during_cycles),
  };
  return cmocka_run_group_tests_name("concurrent_verify", tests, NULL, NULL);
}
