/* worker.c - worker threads, request contexts, signals and drain.
 *
 * Threads
 *   W data workers and one admin worker, each a libuv loop that drives one
 *   libmicrohttpd daemon in external-polling epoll mode: a uv_poll_t watches
 *   MHD's epoll fd, MHD_run() runs on readiness, a uv_timer_t follows
 *   MHD_get_timeout() (recomputed after every MHD_run: 0 means run again
 *   now). Every MHD call for a daemon happens on its worker's thread;
 *   other threads reach a worker through a uv_async_t.
 *   The data daemons share one listening socket, bound once here (so no
 *   connection lands in the backlog of a socket a stalled worker owns, and
 *   closing the listener on drain drops nothing queued behind a worker).
 *
 * Safepoints
 *   A worker's loop is "park; wait for events; unpark; uv_run(NOWAIT)". The
 *   blocking wait (epoll_wait on the loop's backend fd) happens parked, so
 *   an idle worker never delays a stop-the-world phase, and no libuv or MHD
 *   callback ever runs while parked (libuv runs I/O callbacks inside its poll
 *   step, which is why the wait is done outside uv_run).
 *
 * Request life cycle
 *   1. First access-handler call: a context comes from the worker's pool
 *      (gc_pool: nothing allocated in steady state), is stamped with its
 *      start and deadline, and joins the worker's in-flight list, which the
 *      collector scans while the world is stopped (ctx->roots[]).
 *   2. The handler (api/) runs; it keeps what it holds in ctx->roots.
 *   3. MHD's completion callback ends the context with a cause (completed,
 *      client gone, deadline, shutdown), drops its roots and returns it to
 *      the pool. What it held becomes garbage unless the index still holds
 *      it.
 *
 * Drain (SIGTERM, SIGINT)
 *   /readyz turns 503; every data worker quiesces its daemon; the listener
 *   is closed once all have; each worker waits until its in-flight list is
 *   empty or the drain timeout passes, then stops its daemon (MHD ends what
 *   is left with the shutdown cause). The admin worker stops last.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>

#include "server_internal.h"

enum { CMD_NONE = 0, CMD_DRAIN = 1, CMD_STOP = 2 };

static struct {
  srv_config_t cfg;
  srv_worker_t *workers; /* data workers, then the admin worker */
  int nworkers;
  gc_pool_t *ctx_pool;
  _Atomic int draining;
  uv_loop_t main_loop;
  uv_signal_t sigterm, sigint;
  int data_fd, admin_fd;
  _Atomic int quiesced; /* data workers that stopped accepting */
  char reqid_prefix[12];
  uint64_t sample_every; /* access log: one request in this many */
  char deadline_408[256];
  size_t deadline_408_len;
} S;

static inline void bump(_Atomic uint64_t *c, int64_t d) {
  atomic_store_explicit(
      c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)d,
      memory_order_relaxed);
}

gc_mutator_t *srv_worker_mutator(const srv_worker_t *w) { return w->mut; }
int srv_worker_id(const srv_worker_t *w) { return w->id; }
bool srv_worker_is_admin(const srv_worker_t *w) { return w->admin; }
bool srv_draining(void) { return atomic_load(&S.draining) != 0; }
const srv_config_t *srv_config(void) { return &S.cfg; }

void srv_read_stats(srv_stats_t *st) {
  memset(st, 0, sizeof(*st));
  for (int i = 0; i < S.nworkers; i++) {
    srv_worker_t *w = &S.workers[i];
    uint64_t inflight =
        atomic_load_explicit(&w->n_inflight, memory_order_relaxed);
    st->inflight += inflight;
    if (w->admin)
      st->inflight_admin += inflight;
    st->requests += atomic_load_explicit(&w->n_requests, memory_order_relaxed);
    for (int c = 0; c < SRV_CAUSE__COUNT; c++)
      st->cancels[c] +=
          atomic_load_explicit(&w->n_cancel[c], memory_order_relaxed);
  }
}

/* ---- contexts ----------------------------------------------------------- */

static void *ctx_new(void *arg) {
  (void)arg;
  return calloc(1, sizeof(srv_ctx_t));
}
static void *context_new(void *arg) {
  (void)arg;
  return calloc(1, sizeof(srv_context_t));
}
static void ctx_free(void *obj, void *arg) {
  (void)arg;
  free(obj);
}

/* GC_ROOTS_STW scanner: every in-flight context's roots. */
static void scan_contexts(void *arg) {
  (void)arg;
  for (int i = 0; i < S.nworkers; i++)
    for (srv_ctx_t *c = S.workers[i].inflight; c; c = c->next)
      for (int r = 0; r < SRV_CTX_ROOTS; r++)
        if (c->roots[r])
          gc_mark(c->roots[r]);
}

static void on_timer(uv_timer_t *t);

/* The deadline of a request passed: answer 408 if nothing was queued yet,
 * then cut the connection; MHD sees the shutdown on its next run and ends
 * the request (its cause stays "deadline"). We write the 408 ourselves
 * because libmicrohttpd 0.9.75 cannot queue a response while a body is
 * arriving. */
static void on_request_done(srv_context_t *cx, void *arg) {
  (void)arg;
  if (cx->cause != SRV_CAUSE_DEADLINE)
    return;
  srv_ctx_t *c = (srv_ctx_t *)cx;
  srv_worker_t *w = c->worker;
  const union MHD_ConnectionInfo *ci =
      c->conn ? MHD_get_connection_info(c->conn,
                                        MHD_CONNECTION_INFO_CONNECTION_FD)
              : NULL;
  if (ci && ci->connect_fd >= 0) {
    if (c->status == 0) {
      ssize_t n = send(ci->connect_fd, S.deadline_408, S.deadline_408_len,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)n; /* best effort: the connection is cut either way */
      c->status = 408;
    }
    shutdown(ci->connect_fd, SHUT_RDWR);
  }
  if (w->daemon)
    uv_timer_start(&w->timer, on_timer, 0, 0);
}

/* X-Request-Id: honoured when 1..128 printable ASCII bytes, else made
 * here: <process prefix>-<worker>-<sequence>, unique within the process and
 * unlikely to repeat across restarts. */
static void request_id(srv_worker_t *w, srv_ctx_t *c) {
  const char *in = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                               "X-Request-Id");
  if (in) {
    size_t n = 0;
    while (n <= SRV_REQUEST_ID_MAX && in[n] && in[n] > 0x20 && in[n] < 0x7f)
      n++;
    if (n > 0 && n <= SRV_REQUEST_ID_MAX && in[n] == 0) {
      memcpy(c->request_id, in, n + 1);
      c->request_id_incoming = true;
      return;
    }
  }
  c->request_id_incoming = false;
  snprintf(c->request_id, sizeof(c->request_id), "%s-%x-%llx", S.reqid_prefix,
           (unsigned)w->id, (unsigned long long)++w->next_request_id);
}

static srv_ctx_t *ctx_begin(srv_worker_t *w, struct MHD_Connection *conn,
                            const char *url, const char *method) {
  srv_ctx_t *c = gc_pool_get(w->mut, S.ctx_pool);
  if (!c)
    return NULL;
  size_t ml = strlen(method), ul = strlen(url);
  if (ml >= sizeof(c->log_method))
    ml = sizeof(c->log_method) - 1;
  memcpy(c->log_method, method, ml);
  c->log_method[ml] = 0;
  c->log_path_truncated = ul > SRV_LOG_PATH_MAX;
  c->log_path_len = (uint16_t)(ul > SRV_LOG_PATH_MAX ? SRV_LOG_PATH_MAX : ul);
  memcpy(c->log_path, url, c->log_path_len);
  c->worker = w;
  c->conn = conn;
  c->start_ns = bc_now_mono_ns();
  srv__context_init(&c->cx, &w->background,
                    c->start_ns + S.cfg.request_timeout_ns);
  c->cx.done = on_request_done;
  c->bytes_in = c->bytes_out = 0;
  c->status = 0;
  c->method_id = c->route_id = 0;
  request_id(w, c);
  for (int r = 0; r < SRV_CTX_ROOTS; r++)
    c->roots[r] = NULL;
  uv_mutex_lock(&w->inflight_mu);
  c->prev = NULL;
  c->next = w->inflight;
  if (w->inflight)
    w->inflight->prev = c;
  w->inflight = c;
  uv_mutex_unlock(&w->inflight_mu);
  bump(&w->n_inflight, 1);
  bump(&w->n_requests, 1);
  return c;
}

static void ctx_end(srv_worker_t *w, srv_ctx_t *c) {
  enum srv_cause cause = (enum srv_cause)c->cx.cause;
  if (cause != SRV_CAUSE_COMPLETED)
    bump(&w->n_cancel[cause], 1);
  srv__context_detach(&c->cx);
  uv_mutex_lock(&w->inflight_mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    w->inflight = c->next;
  if (c->next)
    c->next->prev = c->prev;
  uv_mutex_unlock(&w->inflight_mu);
  for (int r = 0; r < SRV_CTX_ROOTS; r++)
    c->roots[r] = NULL;
  c->conn = NULL;
  bump(&w->n_inflight, -1);
  gc_pool_put(w->mut, S.ctx_pool, c);
}

/* ---- MHD callbacks ------------------------------------------------------ */

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
  srv_worker_t *w = cls;
  /* a safepoint between handler calls: roots are consistent here, so a
   * stop-the-world phase need not wait for MHD_run's whole batch */
  gc_mutator_safepoint(w->mut);
  srv_ctx_t *c = *con_cls;
  bool first = false;
  if (!c) {
    if (BC_UNLIKELY(!srv__request_head_ok(conn, url, version)))
      return srv__reject_request_head(conn); /* 400 + close, no handler */
    c = ctx_begin(w, conn, url, method);
    if (!c)
      return MHD_NO; /* out of memory: drop the connection */
    *con_cls = c;
    first = true;
  } else if (BC_UNLIKELY(c->cx.cause != SRV_CAUSE_NONE)) {
    return MHD_NO; /* cancelled (deadline): the connection is being cut */
  }
  return w->handler->access(c, first, url, method, upload, upload_size);
}

/* A safepoint as each connection opens or closes: MHD_run accepts every
 * pending connection in one go (a pool and a socket each), without a
 * handler call in between, when many clients connect at once. */
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  (void)conn;
  (void)socket_context;
  (void)toe;
  srv_worker_t *w = cls;
  gc_mutator_safepoint(w->mut);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)conn;
  srv_worker_t *w = cls;
  /* a safepoint after each response is sent: MHD_run may write many
   * responses without calling on_access in between */
  gc_mutator_safepoint(w->mut);
  srv_ctx_t *c = *con_cls;
  if (!c)
    return;
  *con_cls = NULL;
  enum srv_cause cause;
  switch (toe) {
  case MHD_REQUEST_TERMINATED_COMPLETED_OK:
    cause = SRV_CAUSE_COMPLETED;
    break;
  case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
    cause = SRV_CAUSE_DEADLINE;
    break;
  case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
    cause = SRV_CAUSE_SHUTDOWN;
    break;
  default:
    cause = SRV_CAUSE_CLIENT_GONE;
    break;
  }
  srv_context_cancel(&c->cx, cause); /* no-op if the deadline came first */
  if (w->handler->completed)
    w->handler->completed(c, toe);
  if (S.cfg.access_log) {
    /* sampled, except errors and cancellations, which are always logged */
    bool always = c->status >= 500 || c->cx.cause != SRV_CAUSE_COMPLETED;
    if (always || S.sample_every <= 1 ||
        ++w->access_count % S.sample_every == 0)
      srv__access_log(w, c, bc_now_mono_ns());
  }
  ctx_end(w, c);
}

/* We decode the path and query ourselves (strictly, keeping %2F and %00
 * visible), so MHD must hand them over untouched. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls;
  (void)c;
  return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  (void)fmt;
  (void)ap;
  /* MHD's messages are per-connection noise (resets, limits); the access
   * log and counters report what matters. */
}

/* ---- the loop ----------------------------------------------------------- */

static void pump(srv_worker_t *w) {
  if (!w->daemon)
    return;
  for (int i = 0; i < 8; i++) {
    MHD_run(w->daemon);
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(w->daemon, &to) != MHD_YES) {
      uv_timer_stop(&w->timer);
      return;
    }
    if (to > 0) {
      uv_timer_start(&w->timer, on_timer, to, 0);
      return;
    }
  }
  uv_timer_start(&w->timer, on_timer, 0, 0);
}

static void on_timer(uv_timer_t *t) { pump(t->data); }

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status;
  (void)events;
  pump(p->data);
}

/* After MHD_resume_connection: MHD_run on the next loop iteration (not from
 * inside the caller, which may be an MHD callback). */
void srv_worker_wake(srv_worker_t *w) {
  if (w->daemon)
    uv_timer_start(&w->timer, on_timer, 0, 0);
}

static void on_tick(uv_timer_t *t) {
  srv_worker_t *w = t->data;
  if (w->tick_fn)
    w->tick_fn(w->tick_arg);
}

int srv_worker_ticker_start(srv_worker_t *w, uint64_t period_ms,
                            void (*fn)(void *arg), void *arg) {
  if (!w->daemon || w->stopping || w->tick_fn || !fn || period_ms == 0)
    return BC_EINVAL;
  w->tick_fn = fn;
  w->tick_arg = arg;
  uv_timer_start(&w->ticker, on_tick, period_ms, period_ms);
  return 0;
}

void srv_worker_ticker_stop(srv_worker_t *w) {
  if (!w->tick_fn)
    return;
  uv_timer_stop(&w->ticker);
  w->tick_fn = NULL;
  w->tick_arg = NULL;
}

/* ---- timers, thread hooks, the in-flight snapshot --------------------------- */

struct srv_timer {
  uv_timer_t t; /* first: the handle is the struct */
  srv_worker_t *w;
  void (*fn)(void *arg);
  void *arg;
};

static void on_srv_timer(uv_timer_t *h) {
  srv_timer_t *t = (srv_timer_t *)h;
  srv_worker_t *w = t->w;
  t->fn(t->arg); /* may free t */
  srv_worker_wake(w);
}

srv_timer_t *srv_timer_start(srv_worker_t *w, uint64_t timeout_ms,
                             uint64_t repeat_ms, void (*fn)(void *arg),
                             void *arg) {
  if (!w->daemon || w->stopping)
    return NULL;
  srv_timer_t *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  t->w = w;
  t->fn = fn;
  t->arg = arg;
  uv_timer_init(&w->loop, &t->t);
  uv_timer_start(&t->t, on_srv_timer, timeout_ms, repeat_ms);
  return t;
}

static void srv_timer_closed(uv_handle_t *h) { free(h); }

void srv_timer_free(srv_timer_t *t) {
  if (!t)
    return;
  uv_timer_stop(&t->t);
  uv_close((uv_handle_t *)&t->t, srv_timer_closed);
}

static void (*thread_start_hook)(srv_worker_t *w);
static void (*thread_stop_hook)(srv_worker_t *w);

void srv_set_thread_hooks(void (*start)(srv_worker_t *w),
                          void (*stop)(srv_worker_t *w)) {
  thread_start_hook = start;
  thread_stop_hook = stop;
}

/* The list is stable under inflight_mu; the fields the handler updates
 * while its request runs (route, status, bytes, deadline) are read as they
 * are, aligned words a torn read cannot split: a monitoring snapshot, as
 * /proc is. ThreadSanitizer is told that these reads are deliberate. */
#if defined(__SANITIZE_THREAD__)
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#define SNAPSHOT_READS_BEGIN() AnnotateIgnoreReadsBegin(__FILE__, __LINE__)
#define SNAPSHOT_READS_END() AnnotateIgnoreReadsEnd(__FILE__, __LINE__)
#else
#define SNAPSHOT_READS_BEGIN() ((void)0)
#define SNAPSHOT_READS_END() ((void)0)
#endif

size_t srv_requests_snapshot(srv_request_info_t *out, size_t max) {
  size_t n = 0;
  for (int i = 0; i < S.nworkers; i++) {
    srv_worker_t *w = &S.workers[i];
    uv_mutex_lock(&w->inflight_mu);
    SNAPSHOT_READS_BEGIN();
    for (srv_ctx_t *c = w->inflight; c; c = c->next, n++) {
      if (n >= max)
        continue;
      srv_request_info_t *o = &out[n];
      o->worker = w->id;
      o->admin = w->admin;
      o->method_id = c->method_id;
      o->route_id = c->route_id;
      o->status = c->status;
      o->start_ns = c->start_ns;
      o->deadline_ns = c->cx.deadline_ns;
      o->bytes_in = c->bytes_in;
      o->bytes_out = c->bytes_out;
      memcpy(o->method, c->log_method, sizeof(o->method));
      o->method[sizeof(o->method) - 1] = 0;
      memcpy(o->path, c->log_path, c->log_path_len);
      o->path[c->log_path_len] = 0;
      memcpy(o->request_id, c->request_id, sizeof(o->request_id));
      o->request_id[SRV_REQUEST_ID_MAX] = 0;
    }
    SNAPSHOT_READS_END();
    uv_mutex_unlock(&w->inflight_mu);
  }
  return n;
}

static void stop_daemon(srv_worker_t *w) {
  if (!w->daemon)
    return;
  srv_worker_ticker_stop(w);
  if (w->handler->stopping) {
    /* suspended connections must be resumed before MHD_stop_daemon; one
     * more run lets ended streams send their last bytes */
    w->handler->stopping(w);
    pump(w);
  }
  uv_poll_stop(&w->poll);
  MHD_stop_daemon(w->daemon); /* in-flight requests end: shutdown cause */
  srv__access_flush(w);
  w->daemon = NULL;
  w->stopping = true;
  srv__contexts_close(w);
  uv_close((uv_handle_t *)&w->poll, NULL);
  uv_close((uv_handle_t *)&w->timer, NULL);
  uv_close((uv_handle_t *)&w->drain_timer, NULL);
  uv_close((uv_handle_t *)&w->ticker, NULL);
  uv_close((uv_handle_t *)&w->async, NULL);
}

static void on_drain_tick(uv_timer_t *t) {
  srv_worker_t *w = t->data;
  if (atomic_load_explicit(&w->n_inflight, memory_order_relaxed) == 0 ||
      bc_now_mono_ns() >= w->drain_deadline_ns)
    stop_daemon(w);
}

static void on_async(uv_async_t *a) {
  srv_worker_t *w = a->data;
  int cmd = atomic_exchange(&w->cmd, CMD_NONE);
  if (cmd == CMD_DRAIN && !w->quiesced && w->daemon) {
    MHD_quiesce_daemon(w->daemon);
    w->quiesced = true;
    atomic_fetch_add(&S.quiesced, 1);
    w->drain_deadline_ns = bc_now_mono_ns() + S.cfg.drain_timeout_ns;
    uv_timer_start(&w->drain_timer, on_drain_tick, 0, 10);
    pump(w);
  } else if (cmd == CMD_STOP) {
    stop_daemon(w);
  }
}

static void worker_main(void *arg) {
  srv_worker_t *w = arg;
  w->mut = gc_mutator_new();
  if (!w->mut) {
    w->start_rc = BC_ENOMEM;
    uv_sem_post(&w->ready);
    return;
  }
  gc_mutator_unpark(w->mut);
  if (thread_start_hook)
    thread_start_hook(w);
  uv_loop_init(&w->loop);
  srv__contexts_init(w);
  unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
  /* the admin daemon suspends dashboard event streams between samples
   * (api/dashboard.c); the data daemons never suspend */
  if (w->admin)
    flags |= MHD_ALLOW_SUSPEND_RESUME;
  /* --max-connections-per-ip, shared among the data workers like
   * --max-connections (MHD counts per daemon); 0 is MHD's "no limit" */
  uint64_t per_ip = w->admin ? 0
                             : (S.cfg.max_connections_per_ip +
                                (uint64_t)S.cfg.workers - 1) /
                                   (uint64_t)S.cfg.workers;
  w->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, on_access, w, MHD_OPTION_LISTEN_SOCKET,
      (MHD_socket)w->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned int)w->conn_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
      (unsigned int)(per_ip < UINT32_MAX ? per_ip : UINT32_MAX),
      MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned int)((S.cfg.idle_timeout_ns + 999999999) / 1000000000),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)S.cfg.conn_memory,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, w,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, w,
      MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
      MHD_OPTION_URI_LOG_CALLBACK, srv__uri_seen, NULL,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
  if (!w->daemon) {
    w->start_rc = BC_EIO;
    uv_close((uv_handle_t *)&w->dl_timer, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    if (thread_stop_hook)
      thread_stop_hook(w);
    gc_mutator_park(w->mut);
    gc_mutator_free(w->mut);
    w->mut = NULL;
    uv_loop_close(&w->loop);
    uv_sem_post(&w->ready);
    return;
  }
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(w->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  uv_poll_init(&w->loop, &w->poll, di->epoll_fd);
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, on_poll);
  uv_timer_init(&w->loop, &w->timer);
  w->timer.data = w;
  uv_timer_init(&w->loop, &w->drain_timer);
  w->drain_timer.data = w;
  uv_timer_init(&w->loop, &w->ticker);
  w->ticker.data = w;
  uv_async_init(&w->loop, &w->async, on_async);
  w->async.data = w;
  pump(w);
  uv_sem_post(&w->ready);

  int bfd = uv_backend_fd(&w->loop);
  for (;;) {
    gc_mutator_park(w->mut);
    struct epoll_event ev;
    int to = uv_backend_timeout(&w->loop);
    if (to != 0) {
      int n;
      do
        n = epoll_wait(bfd, &ev, 1, to);
      while (n < 0 && errno == EINTR);
    }
    gc_mutator_unpark(w->mut);
    int alive = uv_run(&w->loop, UV_RUN_NOWAIT);
    /* one write(2) of the access log per loop iteration, parked: a slow
     * reader of stdout may block this worker, never the collector */
    if (w->logbuf_len) {
      gc_mutator_park(w->mut);
      srv__access_flush(w);
      gc_mutator_unpark(w->mut);
    }
    if (!alive && w->stopping)
      break;
  }
  uv_loop_close(&w->loop);
  if (thread_stop_hook)
    thread_stop_hook(w);
  gc_mutator_free(w->mut);
}

/* ---- listeners ---------------------------------------------------------- */

static int bind_listener(const srv_addr_t *a, uint16_t *bound_port) {
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char port[8];
  snprintf(port, sizeof(port), "%u", a->port);
  int rc = getaddrinfo(a->host, port, &hints, &res);
  if (rc != 0) {
    srv_log(SRV_LOG_ERROR, "cannot resolve the listen address", "{s:s,s:s}",
            "host", a->host, "error", gai_strerror(rc));
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (fd < 0) {
    freeaddrinfo(res);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
    srv_log(SRV_LOG_ERROR, "cannot listen", "{s:s,s:i,s:s}", "host", a->host,
            "port", a->port, "error", strerror(errno));
    close(fd);
    freeaddrinfo(res);
    return -1;
  }
  freeaddrinfo(res);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    close(fd);
    return -1;
  }
  *bound_port = ntohs(ss.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&ss)->sin6_port
                          : ((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

static uint64_t raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

/* ---- signals and the run ------------------------------------------------ */

static void post(srv_worker_t *w, int cmd) {
  atomic_store(&w->cmd, cmd);
  uv_async_send(&w->async);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  if (atomic_exchange(&S.draining, 1))
    return;
  srv_log(SRV_LOG_INFO, "draining", "{s:s,s:f}", "signal",
          signum == SIGTERM ? "SIGTERM" : "SIGINT", "drain_timeout_s",
          (double)S.cfg.drain_timeout_ns / 1e9);
  for (int i = 0; i < S.nworkers - 1; i++)
    post(&S.workers[i], CMD_DRAIN);
  uv_signal_stop(&S.sigterm);
  uv_signal_stop(&S.sigint);
  uv_close((uv_handle_t *)&S.sigterm, NULL);
  uv_close((uv_handle_t *)&S.sigint, NULL);
}

static int start_worker(srv_worker_t *w) {
  uv_sem_init(&w->ready, 0);
  if (uv_thread_create(&w->thread, worker_main, w) != 0)
    return BC_ENOMEM;
  uv_sem_wait(&w->ready);
  uv_sem_destroy(&w->ready);
  return w->start_rc;
}

int srv_run(const srv_config_t *cfg, const srv_handler_t *data,
            const srv_handler_t *admin) {
  BC_CHECK(cfg->workers > 0, "srv_run with %d workers", cfg->workers);
  S.cfg = *cfg;
  signal(SIGPIPE, SIG_IGN);
  uint32_t rnd;
  bc_random_bytes(&rnd, sizeof(rnd));
  snprintf(S.reqid_prefix, sizeof(S.reqid_prefix), "%08x", rnd);
  S.sample_every = cfg->access_log_sample >= 1.0
                       ? 1
                       : (uint64_t)(1.0 / cfg->access_log_sample + 0.5);
  uint64_t fdlim = raise_fd_limit();
  uint64_t reserve = 64 + 8 * (uint64_t)cfg->workers;
  uint64_t maxconn = cfg->max_connections;
  if (fdlim > reserve && maxconn > fdlim - reserve) {
    maxconn = fdlim - reserve;
    srv_log(SRV_LOG_WARN, "max-connections lowered to fit the open files limit",
            "{s:I,s:I}", "max_connections", (json_int_t)maxconn,
            "open_files_limit", (json_int_t)fdlim);
  }
  S.ctx_pool = gc_pool_new("request_ctx", ctx_new, ctx_free, NULL);
  srv__context_pool = gc_pool_new("context", context_new, ctx_free, NULL);
  if (!S.ctx_pool || !srv__context_pool)
    return 1;
  static const char body408[] =
      "{\"error\":{\"code\":\"deadline_exceeded\",\"message\":\"the "
      "request's deadline passed before it completed\"}}";
  S.deadline_408_len = (size_t)snprintf(
      S.deadline_408, sizeof(S.deadline_408),
      "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
      "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
      sizeof(body408) - 1, body408);
  gc_register_roots(GC_ROOTS_STW, scan_contexts, NULL);

  uint16_t dport, aport;
  S.data_fd = bind_listener(&cfg->listen, &dport);
  if (S.data_fd < 0)
    return 1;
  S.admin_fd = bind_listener(&cfg->admin_listen, &aport);
  if (S.admin_fd < 0)
    return 1;

  S.nworkers = cfg->workers + 1;
  S.workers = aligned_alloc(BC_CACHELINE,
                            (size_t)S.nworkers * sizeof(srv_worker_t));
  memset(S.workers, 0, (size_t)S.nworkers * sizeof(srv_worker_t));
  for (int i = 0; i < S.nworkers; i++) {
    srv_worker_t *w = &S.workers[i];
    w->id = i;
    w->admin = i == cfg->workers;
    uv_mutex_init(&w->inflight_mu);
    w->listen_fd = w->admin ? S.admin_fd : S.data_fd;
    w->handler = w->admin ? admin : data;
    w->conn_limit = w->admin ? 256
                             : (unsigned)((maxconn + (uint64_t)cfg->workers -
                                           1) /
                                          (uint64_t)cfg->workers);
  }
  /* signals first: a SIGTERM that arrives as soon as the listening lines
   * are out must drain, not kill */
  uv_loop_init(&S.main_loop);
  uv_signal_init(&S.main_loop, &S.sigterm);
  uv_signal_init(&S.main_loop, &S.sigint);
  uv_signal_start(&S.sigterm, on_signal, SIGTERM);
  uv_signal_start(&S.sigint, on_signal, SIGINT);
  for (int i = 0; i < S.nworkers; i++) {
    if (start_worker(&S.workers[i]) != 0) {
      srv_log(SRV_LOG_ERROR, "worker failed to start", "{s:i}", "worker", i);
      _exit(1);
    }
  }
  const char *dh = cfg->listen.host, *ah = cfg->admin_listen.host;
  bool d6 = strchr(dh, ':') != NULL, a6 = strchr(ah, ':') != NULL;
  char msg[160];
  snprintf(msg, sizeof(msg), "listening on http://%s%s%s:%u (data, %d workers)",
           d6 ? "[" : "", dh, d6 ? "]" : "", dport, cfg->workers);
  srv_log(SRV_LOG_NOTICE, msg, "{s:s,s:i}", "listener", "data", "workers",
          cfg->workers);
  snprintf(msg, sizeof(msg), "listening on http://%s%s%s:%u (admin)",
           a6 ? "[" : "", ah, a6 ? "]" : "", aport);
  srv_log(SRV_LOG_NOTICE, msg, "{s:s}", "listener", "admin");

  uv_run(&S.main_loop, UV_RUN_DEFAULT);
  uv_loop_close(&S.main_loop);

  /* drain: the listener closes as soon as no data worker accepts on it any
   * more (new connections are refused from then on); in-flight requests
   * finish; then the admin worker stops */
  while (atomic_load(&S.quiesced) < S.nworkers - 1) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  close(S.data_fd);
  for (int i = 0; i < S.nworkers - 1; i++)
    uv_thread_join(&S.workers[i].thread);
  post(&S.workers[S.nworkers - 1], CMD_STOP);
  uv_thread_join(&S.workers[S.nworkers - 1].thread);
  close(S.admin_fd);
  srv_stats_t st;
  srv_read_stats(&st);
  srv_log(SRV_LOG_INFO, "stopped", "{s:I,s:I}", "requests",
          (json_int_t)st.requests, "ended_by_shutdown",
          (json_int_t)st.cancels[SRV_CAUSE_SHUTDOWN]);
  for (int i = 0; i < S.nworkers; i++)
    uv_mutex_destroy(&S.workers[i].inflight_mu);
  free(S.workers);
  S.workers = NULL;
  S.nworkers = 0;
  return 0;
}
