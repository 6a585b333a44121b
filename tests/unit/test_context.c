/* test_context.c - the Go-style context API of server/ (context.c): trees,
 * causes, done callbacks, deadlines on one timer, values, pooling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <uv.h>

#include "gc.h"
#include "server_internal.h"

static uv_loop_t loop;
static gc_mutator_t *M;
static srv_worker_t *W;

#define MS 1000000ull

typedef struct log_s {
  srv_context_t *who[256];
  uint8_t cause[256];
  uint64_t at[256];
  int n;
} log_t;
static log_t L;

static void on_done(srv_context_t *c, void *arg) {
  (void)arg;
  if (L.n < 256) {
    L.who[L.n] = c;
    L.cause[L.n] = c->cause;
    L.at[L.n] = bc_now_mono_ns();
  }
  L.n++;
}

static int setup(void **state) {
  (void)state;
  gc_config_t cfg = {.memory_limit = 64u << 20, .gc_percent = 100, .nprocs = 1};
  assert_int_equal(gc_init(&cfg), 0);
  assert_int_equal(gc_start(), 0);
  M = gc_mutator_new();
  gc_mutator_unpark(M);
  uv_loop_init(&loop);
  W = srv__test_worker_new(&loop, M);
  assert_non_null(W);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  srv__test_worker_free(W);
  uv_loop_close(&loop);
  gc_mutator_park(M);
  gc_mutator_free(M);
  gc_stop();
  gc_close();
  return 0;
}

static void reset_log(void) { memset(&L, 0, sizeof(L)); }

/* Runs the loop (parked while it waits) until pred or timeout_ms. */
static void run_until(int (*pred)(void), uint64_t timeout_ms) {
  uint64_t end = bc_now_mono_ns() + timeout_ms * MS;
  while (!pred() && bc_now_mono_ns() < end) {
    gc_mutator_park(M);
    uv_run(&loop, UV_RUN_ONCE);
    gc_mutator_unpark(M);
  }
}

static srv_context_t *bg(void) { return srv_context_background(W); }

static void test_cancel_tree(void **state) {
  (void)state;
  reset_log();
  srv_context_t *a = srv_context_with_cancel(bg());
  srv_context_t *b = srv_context_with_cancel(a);
  srv_context_t *c = srv_context_with_cancel(b);
  srv_context_t *d = srv_context_with_cancel(a);
  srv_context_on_done(a, on_done, NULL);
  srv_context_on_done(b, on_done, NULL);
  srv_context_on_done(c, on_done, NULL);
  srv_context_on_done(d, on_done, NULL);
  assert_int_equal(srv_context_cause(a), SRV_CAUSE_NONE);
  /* cancelling a leaf touches nothing above it */
  srv_context_cancel(c, SRV_CAUSE_CLIENT_GONE);
  assert_int_equal(L.n, 1);
  assert_ptr_equal(L.who[0], c);
  assert_int_equal(srv_context_cause(b), SRV_CAUSE_NONE);
  /* cancelling the root of the subtree cancels every child, children first */
  srv_context_cancel(a, SRV_CAUSE_DEADLINE);
  assert_int_equal(L.n, 4);
  assert_ptr_equal(L.who[3], a);
  assert_int_equal(srv_context_cause(b), SRV_CAUSE_DEADLINE);
  assert_int_equal(srv_context_cause(d), SRV_CAUSE_DEADLINE);
  /* the first cause wins, and done runs once */
  assert_int_equal(srv_context_cause(c), SRV_CAUSE_CLIENT_GONE);
  srv_context_cancel(a, SRV_CAUSE_SHUTDOWN);
  assert_int_equal(L.n, 4);
  assert_int_equal(srv_context_cause(a), SRV_CAUSE_DEADLINE);
  assert_int_equal(srv_context_cause(bg()), SRV_CAUSE_NONE);
  srv_context_release(c);
  srv_context_release(b);
  srv_context_release(d);
  srv_context_release(a);
}

static void test_born_cancelled(void **state) {
  (void)state;
  reset_log();
  srv_context_t *a = srv_context_with_cancel(bg());
  srv_context_cancel(a, SRV_CAUSE_SHUTDOWN);
  srv_context_t *b = srv_context_with_timeout(a, 1000 * MS);
  assert_int_equal(srv_context_cause(b), SRV_CAUSE_SHUTDOWN);
  srv_context_on_done(b, on_done, NULL); /* runs at once */
  assert_int_equal(L.n, 1);
  assert_ptr_equal(L.who[0], b);
  srv_context_release(b);
  srv_context_release(a);
}

static int one_done(void) { return L.n >= 1; }

static void test_deadline_fires(void **state) {
  (void)state;
  reset_log();
  uint64_t t0 = bc_now_mono_ns();
  srv_context_t *a = srv_context_with_timeout(bg(), 50 * MS);
  srv_context_on_done(a, on_done, NULL);
  run_until(one_done, 2000);
  assert_int_equal(L.n, 1);
  assert_int_equal(L.cause[0], SRV_CAUSE_DEADLINE);
  assert_true(L.at[0] - t0 >= 50 * MS);
  assert_true(L.at[0] - t0 < 500 * MS);
  srv_context_release(a);
}

static void test_parent_deadline_bounds_child(void **state) {
  (void)state;
  reset_log();
  uint64_t t0 = bc_now_mono_ns();
  srv_context_t *p = srv_context_with_timeout(bg(), 30 * MS);
  srv_context_t *c = srv_context_with_timeout(p, 5000 * MS);
  assert_true(c->deadline_ns <= p->deadline_ns);
  srv_context_on_done(c, on_done, NULL);
  run_until(one_done, 2000);
  assert_int_equal(L.n, 1);
  assert_ptr_equal(L.who[0], c);
  assert_int_equal(L.cause[0], SRV_CAUSE_DEADLINE);
  assert_true(L.at[0] - t0 < 1000 * MS);
  srv_context_release(c);
  srv_context_release(p);
}

static void test_move_deadline(void **state) {
  (void)state;
  reset_log();
  uint64_t t0 = bc_now_mono_ns();
  srv_context_t *a = srv_context_with_timeout(bg(), 20 * MS);
  srv_context_on_done(a, on_done, NULL);
  srv_context_set_deadline(a, t0 + 150 * MS); /* later */
  run_until(one_done, 2000);
  assert_int_equal(L.n, 1);
  assert_true(L.at[0] - t0 >= 150 * MS);
  srv_context_release(a);
  reset_log();
  t0 = bc_now_mono_ns();
  a = srv_context_with_timeout(bg(), 5000 * MS);
  srv_context_on_done(a, on_done, NULL);
  srv_context_set_deadline(a, t0 + 20 * MS); /* earlier */
  run_until(one_done, 2000);
  assert_int_equal(L.n, 1);
  assert_true(L.at[0] - t0 < 1000 * MS);
  srv_context_release(a);
  /* removed: never fires */
  reset_log();
  a = srv_context_with_timeout(bg(), 10 * MS);
  srv_context_on_done(a, on_done, NULL);
  srv_context_set_deadline(a, 0);
  run_until(one_done, 100);
  assert_int_equal(L.n, 0);
  srv_context_release(a);
  assert_int_equal(L.n, 1); /* release ends it as completed */
  assert_int_equal(L.cause[0], SRV_CAUSE_COMPLETED);
}

static int all_done_100(void) { return L.n >= 100; }

static void test_many_deadlines_in_order(void **state) {
  (void)state;
  reset_log();
  srv_context_t *cs[100];
  uint64_t dl[100];
  srand(7);
  for (int i = 0; i < 100; i++) {
    cs[i] = srv_context_with_timeout(bg(), (uint64_t)(1 + rand() % 80) * MS);
    dl[i] = cs[i]->deadline_ns;
    srv_context_on_done(cs[i], on_done, NULL);
  }
  run_until(all_done_100, 3000);
  assert_int_equal(L.n, 100);
  for (int k = 0; k < 100; k++) {
    int i = 0;
    while (cs[i] != L.who[k])
      i++;
    assert_true(L.at[k] >= dl[i]); /* never early */
    if (k)
      assert_true(L.who[k - 1]->deadline_ns <= L.who[k]->deadline_ns);
  }
  for (int i = 0; i < 100; i++)
    srv_context_release(cs[i]);
}

static void test_values(void **state) {
  (void)state;
  static int k1, k2, k3, k4, k5, v1, v2, v3;
  srv_context_t *a = srv_context_with_cancel(bg());
  srv_context_t *b = srv_context_with_cancel(a);
  assert_int_equal(srv_context_set_value(a, &k1, &v1), 0);
  assert_int_equal(srv_context_set_value(a, &k2, &v2), 0);
  assert_ptr_equal(srv_context_value(b, &k1), &v1); /* inherited */
  assert_int_equal(srv_context_set_value(b, &k1, &v3), 0);
  assert_ptr_equal(srv_context_value(b, &k1), &v3); /* shadowed */
  assert_ptr_equal(srv_context_value(a, &k1), &v1);
  assert_null(srv_context_value(b, &k3));
  assert_int_equal(srv_context_set_value(b, &k2, &v1), 0);
  assert_int_equal(srv_context_set_value(b, &k3, &v1), 0);
  assert_int_equal(srv_context_set_value(b, &k4, &v1), 0);
  assert_int_equal(srv_context_set_value(b, &k5, &v1), BC_ENOMEM);
  srv_context_release(b);
  srv_context_release(a);
  /* values die with the context: a new one from the pool has none */
  srv_context_t *c = srv_context_with_cancel(bg());
  assert_null(srv_context_value(c, &k1));
  srv_context_release(c);
}

static uint64_t context_news(void) {
  gc_stats_t *st = malloc(sizeof(*st));
  gc_read_stats(st);
  uint64_t n = 0;
  for (int i = 0; i < st->npools; i++)
    if (strcmp(st->pools[i].name, "context") == 0)
      n = st->pools[i].news;
  free(st);
  return n;
}

static void test_pooled(void **state) {
  (void)state;
  srv_context_t *warm[8];
  for (int i = 0; i < 8; i++)
    warm[i] = srv_context_with_cancel(bg());
  for (int i = 0; i < 8; i++)
    srv_context_release(warm[i]);
  uint64_t before = context_news();
  for (int i = 0; i < 10000; i++) {
    srv_context_t *a = srv_context_with_timeout(bg(), 1000 * MS);
    srv_context_t *b = srv_context_with_cancel(a);
    srv_context_release(b);
    srv_context_release(a);
  }
  assert_int_equal(context_news(), before); /* steady state: no allocation */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cancel_tree),
      cmocka_unit_test(test_born_cancelled),
      cmocka_unit_test(test_deadline_fires),
      cmocka_unit_test(test_parent_deadline_bounds_child),
      cmocka_unit_test(test_move_deadline),
      cmocka_unit_test(test_many_deadlines_in_order),
      cmocka_unit_test(test_values),
      cmocka_unit_test(test_pooled),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
