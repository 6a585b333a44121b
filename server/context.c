/* context.c - Go-style contexts for one worker: trees, cancellation causes,
 * deadlines on one timer, values. See server.h for the contract.
 *
 * Deadlines. Each worker keeps its live deadlines in one doubly linked list
 * sorted by time. Most requests use the same timeout, so a new deadline is
 * almost always the latest: insertion scans from the tail and stops at once.
 * One uv_timer_t is armed for the head; it is re-armed only when the head
 * changes (nginx's habit: no timer syscall per request). When it fires,
 * every context whose deadline has passed is cancelled with the deadline
 * cause, earliest first.
 */
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

gc_pool_t *srv__context_pool;

enum { KIND_EMBEDDED = 0, KIND_POOLED = 1 };

static void dl_remove(srv_worker_t *w, srv_context_t *c) {
  if (!c->on_deadline_list)
    return;
  if (c->dl_prev)
    c->dl_prev->dl_next = c->dl_next;
  else
    w->dl_head = c->dl_next;
  if (c->dl_next)
    c->dl_next->dl_prev = c->dl_prev;
  else
    w->dl_tail = c->dl_prev;
  c->dl_prev = c->dl_next = NULL;
  c->on_deadline_list = 0;
}

static void on_dl_timer(uv_timer_t *t);

/* Arms the worker's timer for the head of the list if that moved. */
static void dl_rearm(srv_worker_t *w) {
  uint64_t want = w->dl_head ? w->dl_head->deadline_ns : 0;
  if (want == w->dl_armed_ns)
    return;
  w->dl_armed_ns = want;
  if (!want) {
    uv_timer_stop(&w->dl_timer);
    return;
  }
  uint64_t now = bc_now_mono_ns();
  uint64_t ms = want > now ? (want - now + 999999) / 1000000 : 0;
  uv_timer_start(&w->dl_timer, on_dl_timer, ms, 0);
}

static void dl_insert(srv_worker_t *w, srv_context_t *c) {
  srv_context_t *p = w->dl_tail;
  while (p && p->deadline_ns > c->deadline_ns)
    p = p->dl_prev;
  c->dl_prev = p;
  c->dl_next = p ? p->dl_next : w->dl_head;
  if (c->dl_next)
    c->dl_next->dl_prev = c;
  else
    w->dl_tail = c;
  if (p)
    p->dl_next = c;
  else
    w->dl_head = c;
  c->on_deadline_list = 1;
}

static void on_dl_timer(uv_timer_t *t) {
  srv_worker_t *w = t->data;
  w->dl_armed_ns = 0;
  uint64_t now = bc_now_mono_ns();
  while (w->dl_head && w->dl_head->deadline_ns <= now)
    srv_context_cancel(w->dl_head, SRV_CAUSE_DEADLINE);
  dl_rearm(w);
}

void srv__contexts_init(srv_worker_t *w) {
  memset(&w->background, 0, sizeof(w->background));
  w->background.worker = w;
  w->dl_head = w->dl_tail = NULL;
  w->dl_armed_ns = 0;
  uv_timer_init(&w->loop, &w->dl_timer);
  w->dl_timer.data = w;
}

void srv__contexts_close(srv_worker_t *w) {
  srv_context_cancel(&w->background, SRV_CAUSE_SHUTDOWN);
  uv_timer_stop(&w->dl_timer);
  uv_close((uv_handle_t *)&w->dl_timer, NULL);
}

srv_context_t *srv_context_background(srv_worker_t *w) {
  return &w->background;
}

static void link_child(srv_context_t *c, srv_context_t *parent) {
  c->parent = parent;
  c->sib_prev = NULL;
  c->sib_next = parent ? parent->children : NULL;
  if (c->sib_next)
    c->sib_next->sib_prev = c;
  if (parent)
    parent->children = c;
}

static void unlink_child(srv_context_t *c) {
  srv_context_t *p = c->parent;
  if (!p)
    return;
  if (c->sib_prev)
    c->sib_prev->sib_next = c->sib_next;
  else
    p->children = c->sib_next;
  if (c->sib_next)
    c->sib_next->sib_prev = c->sib_prev;
  c->parent = c->sib_prev = c->sib_next = NULL;
}

void srv__context_init(srv_context_t *c, srv_context_t *parent,
                       uint64_t deadline_ns) {
  srv_worker_t *w = parent->worker;
  c->worker = w;
  c->children = NULL;
  c->dl_prev = c->dl_next = NULL;
  c->on_deadline_list = 0;
  c->cause = SRV_CAUSE_NONE;
  c->nvalues = 0;
  c->kind = KIND_EMBEDDED;
  c->done = NULL;
  c->done_arg = NULL;
  link_child(c, parent);
  if (parent->deadline_ns && (!deadline_ns || parent->deadline_ns < deadline_ns))
    deadline_ns = parent->deadline_ns;
  c->deadline_ns = deadline_ns;
  if (parent->cause != SRV_CAUSE_NONE) {
    c->cause = parent->cause; /* born cancelled */
    return;
  }
  if (deadline_ns) {
    dl_insert(w, c);
    dl_rearm(w);
  }
}

void srv__context_detach(srv_context_t *c) {
  srv_worker_t *w = c->worker;
  dl_remove(w, c);
  dl_rearm(w);
  /* children outlive nothing: cancel them (they were cancelled with c) and
   * orphan them so they do not point at c */
  while (c->children)
    unlink_child(c->children);
  unlink_child(c);
}

static srv_context_t *new_child(srv_context_t *parent, uint64_t deadline_ns) {
  srv_worker_t *w = parent->worker;
  srv_context_t *c = gc_pool_get(srv_worker_mutator(w), srv__context_pool);
  if (!c)
    return NULL;
  srv__context_init(c, parent, deadline_ns);
  c->kind = KIND_POOLED;
  return c;
}

srv_context_t *srv_context_with_cancel(srv_context_t *parent) {
  return new_child(parent, 0);
}

srv_context_t *srv_context_with_deadline(srv_context_t *parent,
                                         uint64_t deadline_ns) {
  return new_child(parent, deadline_ns);
}

srv_context_t *srv_context_with_timeout(srv_context_t *parent,
                                        uint64_t timeout_ns) {
  return new_child(parent, bc_now_mono_ns() + timeout_ns);
}

void srv_context_cancel(srv_context_t *c, enum srv_cause cause) {
  if (c->cause != SRV_CAUSE_NONE)
    return;
  c->cause = (uint8_t)cause;
  srv_worker_t *w = c->worker;
  if (w) {
    dl_remove(w, c);
    dl_rearm(w);
  }
  for (srv_context_t *k = c->children, *next; k; k = next) {
    next = k->sib_next; /* k's callback may release k */
    srv_context_cancel(k, cause);
  }
  /* last: the callback may end the owner of c */
  if (c->done)
    c->done(c, c->done_arg);
}

void srv_context_release(srv_context_t *c) {
  BC_CHECK(c->kind == KIND_POOLED, "srv_context_release on an embedded context");
  srv_context_cancel(c, SRV_CAUSE_COMPLETED);
  srv__context_detach(c);
  gc_pool_put(srv_worker_mutator(c->worker), srv__context_pool, c);
}

void srv_context_on_done(srv_context_t *c, srv_done_fn fn, void *arg) {
  c->done = fn;
  c->done_arg = arg;
  if (c->cause != SRV_CAUSE_NONE && fn)
    fn(c, arg);
}

int srv_context_set_value(srv_context_t *c, const void *key, void *val) {
  for (int i = 0; i < c->nvalues; i++)
    if (c->values[i].key == key) {
      c->values[i].val = val;
      return 0;
    }
  if (c->nvalues >= SRV_CONTEXT_VALUES)
    return BC_ENOMEM;
  c->values[c->nvalues].key = key;
  c->values[c->nvalues].val = val;
  c->nvalues++;
  return 0;
}

void *srv_context_value(const srv_context_t *c, const void *key) {
  for (; c; c = c->parent)
    for (int i = 0; i < c->nvalues; i++)
      if (c->values[i].key == key)
        return c->values[i].val;
  return NULL;
}

void srv_context_set_deadline(srv_context_t *c, uint64_t deadline_ns) {
  srv_worker_t *w = c->worker;
  if (c->cause != SRV_CAUSE_NONE)
    return;
  dl_remove(w, c);
  c->deadline_ns = deadline_ns;
  if (deadline_ns)
    dl_insert(w, c);
  dl_rearm(w);
}

/* ---- for tests: a worker with just a loop, a mutator and contexts -------- */

static void *test_context_new(void *arg) {
  (void)arg;
  return calloc(1, sizeof(srv_context_t));
}
static void test_context_free(void *obj, void *arg) {
  (void)arg;
  free(obj);
}

srv_worker_t *srv__test_worker_new(uv_loop_t *loop, gc_mutator_t *m) {
  if (!srv__context_pool)
    srv__context_pool =
        gc_pool_new("context", test_context_new, test_context_free, NULL);
  srv_worker_t *w = aligned_alloc(BC_CACHELINE, sizeof(*w));
  if (!w || !srv__context_pool) {
    free(w);
    return NULL;
  }
  memset(w, 0, sizeof(*w));
  w->mut = m;
  /* the deadline timer runs on the caller's loop */
  uv_timer_init(loop, &w->dl_timer);
  w->dl_timer.data = w;
  w->background.worker = w;
  return w;
}

void srv__test_worker_free(srv_worker_t *w) {
  srv_context_cancel(&w->background, SRV_CAUSE_SHUTDOWN);
  uv_timer_stop(&w->dl_timer);
  uv_close((uv_handle_t *)&w->dl_timer, NULL);
  uv_run(w->dl_timer.loop, UV_RUN_NOWAIT);
  free(w);
}
