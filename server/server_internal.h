/* server_internal.h - the worker struct and what the server/ sources share. */
#ifndef SERVER_INTERNAL_H
#define SERVER_INTERNAL_H

#include <time.h>
#include <uv.h>

#include "server.h"

struct srv_worker {
  int id;
  bool admin;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_poll_t poll;
  uv_timer_t timer;
  uv_timer_t drain_timer;
  uv_timer_t ticker; /* srv_worker_ticker_start's periodic callback */
  void (*tick_fn)(void *arg);
  void *tick_arg;
  uv_async_t async;
  struct MHD_Daemon *daemon;
  int listen_fd;
  unsigned conn_limit;
  const srv_handler_t *handler;
  gc_mutator_t *mut;
  srv_ctx_t *inflight; /* doubly linked; owner thread (and STW scans) */
  /* held by the owner while it links or unlinks a context, and by
   * srv_requests_snapshot while it copies the list (another thread) */
  uv_mutex_t inflight_mu;
  _Atomic int cmd;     /* CMD_* posted by the main thread */
  bool quiesced, stopping;
  uint64_t drain_deadline_ns;
  uv_sem_t ready;
  int start_rc;
  /* counters: owner writes (relaxed), anyone reads */
  _Atomic uint64_t n_inflight, n_requests;
  _Atomic uint64_t n_cancel[SRV_CAUSE__COUNT];
  /* contexts: the root, and the deadline list (sorted, earliest first) under
   * one timer armed for its head */
  srv_context_t background;
  srv_context_t *dl_head, *dl_tail;
  uv_timer_t dl_timer;
  uint64_t dl_armed_ns; /* deadline the timer is armed for; 0 = none */
  /* request ids and the access log */
  uint64_t next_request_id;
  uint64_t access_count; /* requests seen, for sampling */
  size_t logbuf_len;
  time_t log_sec;   /* the second log_ts shows */
  char log_ts[24];  /* "YYYY-MM-DDTHH:MM:SS" for log_sec */
  char logbuf[65536];
} BC_ALIGNED_CL;


extern gc_pool_t *srv__context_pool;

/* log.c: the per-worker access log */
void srv__access_log(srv_worker_t *w, const srv_ctx_t *c, uint64_t now_ns);
void srv__access_flush(srv_worker_t *w);

/* reqline.c: NUL, SP or a control byte in the request target, or a header
 * name that is not a token, is refused (400 + close) before any handler
 * runs. See the essay there. */
bool srv__request_head_ok(struct MHD_Connection *conn, const char *url,
                          const char *version);
enum MHD_Result srv__reject_request_head(struct MHD_Connection *conn);
/* MHD_OPTION_URI_LOG_CALLBACK: notes the raw target for the check above. */
void *srv__uri_seen(void *cls, const char *uri, struct MHD_Connection *conn);

void srv__contexts_init(srv_worker_t *w);
void srv__contexts_close(srv_worker_t *w);
/* Initialises an embedded context as a child of parent. */
void srv__context_init(srv_context_t *c, srv_context_t *parent,
                       uint64_t deadline_ns);
/* Detaches an ended embedded context from its parent and the timer list. */
void srv__context_detach(srv_context_t *c);

/* Tests only: a worker that has a loop (the caller's), a mutator and the
 * context machinery, nothing else. */
srv_worker_t *srv__test_worker_new(uv_loop_t *loop, gc_mutator_t *m);
void srv__test_worker_free(srv_worker_t *w);

#endif
