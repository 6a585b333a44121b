/* fuzz_support.c - test-only: server/worker.c plus an entry point that runs
 * one data worker's daemon in the calling thread, so a fuzzer can feed raw
 * request bytes to the real MHD callbacks and handlers.
 *
 * Compiled only in fuzz builds, in place of worker.c (tests/fuzz/
 * CMakeLists.txt swaps the file in the server library). Including worker.c
 * gives this file its statics - the configuration srv_config() returns, the
 * context pools, on_access/on_completed, pump - without widening worker.c's
 * interface for a test. The daemon takes worker_main's options, with
 * MHD_USE_NO_LISTEN_SOCKET instead of the shared listener: connections come
 * from socketpairs through MHD_add_connection, so no port, no TIME_WAIT and
 * no thread hand-off per input.
 */
#include "worker.c"

#include "fuzz_support.h"

static srv_worker_t fz_worker;

int srv_fuzz_start(const srv_config_t *cfg, const srv_handler_t *handler) {
  srv_worker_t *w = &fz_worker;
  /* what srv_run sets up before it starts workers */
  S.cfg = *cfg;
  signal(SIGPIPE, SIG_IGN);
  snprintf(S.reqid_prefix, sizeof(S.reqid_prefix), "fuzz");
  S.sample_every = 1;
  S.ctx_pool = gc_pool_new("request_ctx", ctx_new, ctx_free, NULL);
  srv__context_pool = gc_pool_new("context", context_new, ctx_free, NULL);
  if (!S.ctx_pool || !srv__context_pool)
    return BC_ENOMEM;
  S.deadline_408_len = (size_t)snprintf(
      S.deadline_408, sizeof(S.deadline_408),
      "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
      "Content-Length: 0\r\n\r\n");
  S.workers = w;
  S.nworkers = 1;
  gc_register_roots(GC_ROOTS_STW, scan_contexts, NULL);
  w->id = 0;
  w->listen_fd = -1;
  w->handler = handler;
  w->conn_limit = 64;
  w->mut = gc_mutator_new();
  if (!w->mut)
    return BC_ENOMEM;
  gc_mutator_unpark(w->mut);
  uv_loop_init(&w->loop);
  srv__contexts_init(w);
  uv_timer_init(&w->loop, &w->timer);
  w->timer.data = w;
  unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_TURBO |
                   MHD_USE_NO_LISTEN_SOCKET;
  w->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, on_access, w, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned int)w->conn_limit, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned int)((S.cfg.idle_timeout_ns + 999999999) / 1000000000),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)S.cfg.conn_memory,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, w,
      MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
      MHD_OPTION_URI_LOG_CALLBACK, srv__uri_seen, NULL,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
  return w->daemon ? 0 : BC_EIO;
}

static unsigned current_connections(srv_worker_t *w) {
  const union MHD_DaemonInfo *di =
      MHD_get_daemon_info(w->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  return di ? di->num_connections : 0;
}

/* One round of the worker's loop: MHD's work, libuv's timers (the request
 * deadlines), the access log's buffer. */
static void fz_round(srv_worker_t *w) {
  MHD_run(w->daemon);
  uv_run(&w->loop, UV_RUN_NOWAIT);
  srv__access_flush(w);
}

#define FZ_MAX_ROUNDS 20000

long srv_fuzz_connection(const void *req, size_t len, char *resp,
                         size_t cap) {
  srv_worker_t *w = &fz_worker;
  /* a safepoint: the collector may stop the world between inputs */
  gc_mutator_park(w->mut);
  gc_mutator_unpark(w->mut);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                 sv) != 0)
    return 0;
  struct sockaddr_in peer = {.sin_family = AF_INET,
                             .sin_port = htons(40000),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (MHD_add_connection(w->daemon, sv[1], (struct sockaddr *)&peer,
                         sizeof(peer)) != MHD_YES) {
    close(sv[0]); /* MHD closed sv[1] */
    return 0;
  }
  const char *p = req;
  size_t sent = 0;
  long got = 0;
  bool half_closed = false, eof = false;
  int rounds = 0;
  while (!eof && rounds++ < FZ_MAX_ROUNDS) {
    while (sent < len) {
      ssize_t n = send(sv[0], p + sent, len - sent, MSG_NOSIGNAL);
      if (n <= 0)
        break;
      sent += (size_t)n;
    }
    if (sent == len && !half_closed) {
      shutdown(sv[0], SHUT_WR);
      half_closed = true;
    }
    fz_round(w);
    for (;;) {
      char buf[16384];
      ssize_t n = recv(sv[0], buf, sizeof(buf), 0);
      if (n > 0) {
        size_t keep = (size_t)got < cap ? cap - (size_t)got : 0;
        if (keep > (size_t)n)
          keep = (size_t)n;
        if (resp && keep)
          memcpy(resp + got, buf, keep);
        got += n;
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        eof = true; /* the server closed (or reset) its end */
      break;
    }
    if (!half_closed && sent < len && got == 0 && rounds > 1000)
      break; /* the server stopped reading what we send: a hang */
  }
  close(sv[0]);
  for (int i = 0; i < 1000 && current_connections(w) > 0; i++)
    fz_round(w);
  return eof ? got : -1;
}
