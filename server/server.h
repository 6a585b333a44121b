/* server.h - the process: configuration, worker threads (a libuv loop and a
 * libmicrohttpd daemon each), request contexts, signals and drain.
 *
 * The request life cycle is described at the top of server/worker.c.
 */
#ifndef SERVER_H
#define SERVER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gc.h"

/* ---- configuration ------------------------------------------------------- */

typedef struct srv_addr {
  char host[64];
  uint16_t port;
} srv_addr_t;

typedef struct srv_config {
  srv_addr_t listen, admin_listen;
  int workers;
  uint64_t memory_limit;
  uint64_t max_value_size;
  int gc_percent; /* GC_PERCENT_OFF for "off" */
  uint64_t request_timeout_ns, max_request_timeout_ns, drain_timeout_ns,
      idle_timeout_ns;
  uint64_t max_connections;
  uint64_t max_connections_per_ip; /* data listener, all workers; 0 = none */
  uint64_t conn_memory; /* per-connection MHD pool: header size limit */
  uint64_t default_ttl_ns; /* --default-ttl: a PUT without ?ttl=; 0 = none */
  bool gctrace;
  const char *memory_limit_source; /* "flag", "env", "cgroup", "default" */
  /* bearer token every admin-listener request must carry ("" = none): read
   * from --admin-token-file, or BUFCACHE_ADMIN_TOKEN itself */
  char admin_token[256];
  int log_level;                   /* enum srv_log_level */
  bool log_json;                   /* --log-format json (else text) */
  bool access_log;
  double access_log_sample;        /* fraction of requests logged, (0, 1] */
  bool request_id_always;          /* --request-id-header always|incoming */
  int max_dashboard_streams;       /* /debug/dashboard/events at once */
  uint64_t mem_profile_rate;       /* bytes per allocation sample; 0 = off */
} srv_config_t;

/* Parses flags and BUFCACHE_* variables (a flag wins over its variable).
 * Returns 0, 1 when --help was printed (exit 0), or 2 after printing a
 * message naming the bad flag (exit 2). */
int srv_config_parse(srv_config_t *cfg, int argc, char **argv);
void srv_config_usage(FILE *out);

/* Logs the effective configuration, each value with where it came from
 * (flag, env, cgroup, default). */
void srv_config_log(const srv_config_t *cfg);

/* ---- logs ------------------------------------------------------------------
 * One line per event on stdout: JSON ({"time","level","msg",fields...}) or
 * text for a terminal. fields is a jansson json_pack format for an object
 * ("{s:s,s:I}", ...) or NULL. Thread-safe; event logs allocate, the access
 * log does not (server/log.c). */
enum srv_log_level {
  SRV_LOG_DEBUG,
  SRV_LOG_INFO,
  SRV_LOG_WARN,
  SRV_LOG_ERROR,
  SRV_LOG_NOTICE /* written at level "info" whatever --log-level says: the
                    listening addresses, which tools and people look for */
};
void srv_log_configure(enum srv_log_level level, bool json);
bool srv_log_enabled(enum srv_log_level level);
void srv_log(enum srv_log_level level, const char *msg, const char *fields,
             ...);

/* ---- request contexts ---------------------------------------------------- */

typedef struct srv_worker srv_worker_t;

enum srv_cause {
  SRV_CAUSE_NONE = 0,
  SRV_CAUSE_COMPLETED,
  SRV_CAUSE_CLIENT_GONE,
  SRV_CAUSE_DEADLINE,
  SRV_CAUSE_SHUTDOWN,
  SRV_CAUSE__COUNT
};

/* ---- contexts (Go's context.Context, for one worker thread) ---------------
 * A context carries a deadline, a cancellation cause and values, and forms a
 * tree: cancelling a context cancels its children first-to-last, then runs
 * its done callback. Every context belongs to one worker and is touched only
 * on that worker's thread (work done elsewhere posts back to the worker).
 * Contexts come from the worker's pool; creating one allocates nothing in
 * steady state. Deadlines are kept in one sorted list per worker under one
 * uv_timer_t: no syscall per request.
 */
typedef struct srv_context srv_context_t;
typedef void (*srv_done_fn)(srv_context_t *c, void *arg);

#define SRV_CONTEXT_VALUES 4

struct srv_context {
  void *pool_link; /* first word: the pool's free-list link */
  srv_worker_t *worker;
  srv_context_t *parent, *children, *sib_prev, *sib_next;
  srv_context_t *dl_prev, *dl_next; /* the worker's deadline list */
  uint64_t deadline_ns;             /* CLOCK_MONOTONIC; 0 = none */
  uint8_t cause;                    /* SRV_CAUSE_NONE while live */
  uint8_t on_deadline_list, nvalues, kind;
  srv_done_fn done;
  void *done_arg;
  struct {
    const void *key;
    void *val;
  } values[SRV_CONTEXT_VALUES];
};

/* The worker's root context: never cancelled before shutdown. */
srv_context_t *srv_context_background(srv_worker_t *w);
/* Children. NULL when the pool and malloc are both out of memory. A child of
 * a cancelled parent is born cancelled with the parent's cause. */
srv_context_t *srv_context_with_cancel(srv_context_t *parent);
srv_context_t *srv_context_with_deadline(srv_context_t *parent,
                                         uint64_t deadline_ns);
srv_context_t *srv_context_with_timeout(srv_context_t *parent,
                                        uint64_t timeout_ns);
/* Cancels c (first cause wins) and its children, runs done callbacks. */
void srv_context_cancel(srv_context_t *c, enum srv_cause cause);
/* Ends a child made by srv_context_with_*: cancels it (cause completed) if
 * it is still live, detaches it, returns it to the pool. */
void srv_context_release(srv_context_t *c);
/* One done callback per context; set it before the context can end. If c is
 * already done, fn runs now. */
void srv_context_on_done(srv_context_t *c, srv_done_fn fn, void *arg);
static inline enum srv_cause srv_context_cause(const srv_context_t *c) {
  return (enum srv_cause)c->cause;
}
/* Values die with the context; lookups walk up to the root. 0 or BC_ENOMEM
 * (no free slot). */
int srv_context_set_value(srv_context_t *c, const void *key, void *val);
void *srv_context_value(const srv_context_t *c, const void *key);
/* Moves c's deadline (to an earlier or later time; 0 removes it). */
void srv_context_set_deadline(srv_context_t *c, uint64_t deadline_ns);

#define SRV_CTX_ROOTS 2
#define SRV_REQUEST_ID_MAX 128
#define SRV_LOG_PATH_MAX 256
#define SRV_CTX_API_BYTES 640

/* One per request: a context (cx, child of the worker's background) plus
 * the request's state. Owned by the worker thread. roots[] are gc roots: the
 * collector scans them while the world is stopped (the entry being served,
 * the upload buffer). When cx's deadline passes, the server answers 408 if
 * nothing was queued yet (else it cuts the connection), and the request ends
 * with the deadline cause. */
typedef struct srv_ctx {
  srv_context_t cx; /* first: shares the pool link */
  srv_worker_t *worker;
  struct MHD_Connection *conn;
  struct srv_ctx *prev, *next; /* the worker's in-flight list */
  uint64_t start_ns;
  uint64_t bytes_in, bytes_out; /* body bytes, as the handler reports */
  uint16_t status;              /* status queued (0 = none yet) */
  uint8_t method_id, route_id;  /* the handler's, for listings */
  bool request_id_incoming;     /* request_id came from X-Request-Id */
  char request_id[SRV_REQUEST_ID_MAX + 1];
  /* for the access log: the method and the raw path (keys stay
   * percent-encoded as sent; the query string is not kept) */
  char log_method[12];
  uint16_t log_path_len;
  bool log_path_truncated;
  char log_path[SRV_LOG_PATH_MAX];
  void *roots[SRV_CTX_ROOTS];
  /* opaque per-request state for the handler (api) */
  _Alignas(16) unsigned char api[SRV_CTX_API_BYTES];
} srv_ctx_t;

/* Handler table the binary passes in (api implements it). */
typedef struct srv_handler {
  /* Called for every access-handler call of a request, with its context
   * (first == true on the first call). Same contract as MHD's access
   * handler otherwise. */
  enum MHD_Result (*access)(srv_ctx_t *ctx, bool first, const char *url,
                            const char *method, const char *upload,
                            size_t *upload_size);
  /* Called once when MHD reports the request finished. */
  void (*completed)(srv_ctx_t *ctx, enum MHD_RequestTerminationCode toe);
  /* Optional: called on the worker's thread just before its daemon stops
   * (MHD_stop_daemon). A handler that suspended connections resumes them
   * here and ends its streams (pitfall 4); the worker runs MHD once more
   * afterwards so the last bytes can go out. */
  void (*stopping)(srv_worker_t *w);
} srv_handler_t;

/* ---- workers -------------------------------------------------------------- */

gc_mutator_t *srv_worker_mutator(const srv_worker_t *w);
int srv_worker_id(const srv_worker_t *w);
bool srv_worker_is_admin(const srv_worker_t *w);

/* Streaming on a worker's own loop (the admin dashboard's event streams).
 * On w's thread only. The admin daemon allows MHD_suspend_connection; in
 * external mode MHD_resume_connection wakes nothing, so after resuming call
 * srv_worker_wake: MHD runs on the loop's next iteration. */
void srv_worker_wake(srv_worker_t *w);
/* One periodic callback per worker: fn(arg) every period_ms on w's loop
 * until srv_worker_ticker_stop or the daemon stops (then it is stopped
 * before the handler's stopping hook runs). 0, or BC_EINVAL when one runs
 * already or the worker is stopping. */
int srv_worker_ticker_start(srv_worker_t *w, uint64_t period_ms,
                            void (*fn)(void *arg), void *arg);
void srv_worker_ticker_stop(srv_worker_t *w);

/* Timers for handlers that answer later (the CPU profile): any number per
 * worker, on w's thread only. fn(arg) runs on w's loop after timeout_ms, then
 * every repeat_ms (0: once); MHD runs after each call, so a connection fn
 * resumed is served (srv_worker_wake). srv_timer_free stops the timer (from
 * fn too); its memory goes when libuv has closed it. Free a worker's timers
 * by its handler's stopping hook at the latest. NULL when the worker is
 * stopping or memory is out. */
typedef struct srv_timer srv_timer_t;
srv_timer_t *srv_timer_start(srv_worker_t *w, uint64_t timeout_ms,
                             uint64_t repeat_ms, void (*fn)(void *arg),
                             void *arg);
void srv_timer_free(srv_timer_t *t);

/* Hooks run on every worker's own thread (data and admin): start once its
 * gc mutator exists and before it serves, stop before it exits (a profiler
 * registers the thread). Set before srv_run. */
void srv_set_thread_hooks(void (*start)(srv_worker_t *w),
                          void (*stop)(srv_worker_t *w));

/* The requests in flight, for /debug/pprof/requests: a copy of each
 * worker's in-flight list, taken under that worker's list lock (the owner
 * takes it only to link and unlink a context). Fields the handler updates
 * while the request runs (bytes, status, route) are read without the
 * owner's cooperation: a snapshot, exact to within one update. */
typedef struct srv_request_info {
  int worker;
  bool admin;
  uint8_t method_id, route_id; /* the handler's ids (api: M_*, R_*) */
  uint16_t status;             /* queued status, 0 = none yet */
  uint64_t start_ns, deadline_ns; /* CLOCK_MONOTONIC; deadline 0 = none */
  uint64_t bytes_in, bytes_out;
  char method[12];
  char path[SRV_LOG_PATH_MAX + 1]; /* raw, as the access log has it */
  char request_id[SRV_REQUEST_ID_MAX + 1];
} srv_request_info_t;
/* Fills out[0..max) and returns how many requests there were (may be more
 * than max). Any thread. */
size_t srv_requests_snapshot(srv_request_info_t *out, size_t max);

/* Process-wide state the handlers read. */
bool srv_draining(void);
const srv_config_t *srv_config(void);

typedef struct srv_stats {
  uint64_t inflight;
  uint64_t requests;
  uint64_t cancels[SRV_CAUSE__COUNT];
  uint64_t connections;
  uint64_t inflight_admin; /* the admin listener's part of inflight */
} srv_stats_t;
void srv_read_stats(srv_stats_t *st);

/* Runs the server until SIGTERM/SIGINT and the drain finish. Prints the
 * listening addresses to stdout once bound. Returns the exit code. */
int srv_run(const srv_config_t *cfg, const srv_handler_t *data,
            const srv_handler_t *admin);

#endif
