/* api_internal.h - state and helpers shared by the api/ sources only. */
#ifndef API_INTERNAL_H
#define API_INTERNAL_H

#include "api.h"

enum { M_GET, M_HEAD, M_PUT, M_DELETE, M_POST, M_OTHER, M__COUNT };

/* X(enum, path as a metrics label). R_NOTFOUND must stay 0. */
#define API_ROUTES(X)                                                          \
  X(R_NOTFOUND, "other")                                                       \
  X(R_BUFFER, "/v1/buffers/{key}")                                             \
  X(R_BUFFERS, "/v1/buffers")                                                  \
  X(R_HEALTHZ, "/healthz")                                                     \
  X(R_READYZ, "/readyz")                                                       \
  X(R_METRICS, "/metrics")                                                     \
  X(R_MEMSTATS, "/debug/memstats")                                             \
  X(R_VARS, "/debug/vars")                                                     \
  X(R_GC, "/debug/gc")                                                         \
  X(R_FREEOS, "/debug/freeosmemory")                                           \
  X(R_GC_PERCENT, "/debug/gc-percent")                                         \
  X(R_MEMORY_LIMIT, "/debug/memory-limit")                                     \
  X(R_MEM_PROFILE_RATE, "/debug/mem-profile-rate")                             \
  X(R_OPENAPI, "/debug/openapi.yaml")                                          \
  X(R_DASHBOARD, "/debug/dashboard")                                           \
  X(R_DASH_INFO, "/debug/dashboard/info")                                      \
  X(R_DASH_EVENTS, "/debug/dashboard/events")                                 \
  X(R_PPROF_INDEX, "/debug/pprof/")                                            \
  X(R_PPROF_HEAP, "/debug/pprof/heap")                                         \
  X(R_PPROF_ALLOCS, "/debug/pprof/allocs")                                     \
  X(R_PPROF_PROFILE, "/debug/pprof/profile")                                   \
  X(R_PPROF_REQUESTS, "/debug/pprof/requests")                                 \
  X(R_PPROF_CMDLINE, "/debug/pprof/cmdline")                                   \
  X(R_PPROF_SYMBOL, "/debug/pprof/symbol")                                     \
  API_ROUTES_FAULT(X)

/* POST /debug/fault exists in the fault-injection build only (api/fault.c) */
#ifdef BUFCACHE_FAULT_INJECTION
#define API_ROUTES_FAULT(X) X(R_FAULT, "/debug/fault")
enum MHD_Result api__fault(srv_ctx_t *ctx);
#else
#define API_ROUTES_FAULT(X)
#endif

enum {
#define X(name, label) name,
  API_ROUTES(X)
#undef X
  R__COUNT
};

/* X(enum, HTTP status, stable machine code) */
#define API_ERRORS(X)                                                          \
  X(API_ERR_BAD_REQUEST, 400, "bad_request")                                   \
  X(API_ERR_BAD_KEY, 400, "bad_key")                                           \
  X(API_ERR_BAD_TTL, 400, "bad_ttl")                                           \
  X(API_ERR_BAD_FRAMING, 400, "bad_framing")                                   \
  X(API_ERR_UNAUTHORIZED, 401, "unauthorized")                                 \
  X(API_ERR_BAD_TIMEOUT, 400, "bad_timeout")                                   \
  X(API_ERR_NOT_FOUND, 404, "not_found")                                       \
  X(API_ERR_NO_ROUTE, 404, "no_route")                                         \
  X(API_ERR_METHOD, 405, "method_not_allowed")                                 \
  X(API_ERR_CONFLICT, 409, "conflict")                                         \
  X(API_ERR_PRECONDITION, 412, "precondition_failed")                         \
  X(API_ERR_TOO_LARGE, 413, "value_too_large")                                 \
  X(API_ERR_RANGE, 416, "range_not_satisfiable")                               \
  X(API_ERR_INTERNAL, 500, "internal")                                         \
  X(API_ERR_OUT_OF_MEMORY, 503, "out_of_memory")                               \
  X(API_ERR_BUSY, 503, "too_many_streams")                                     \
  X(API_ERR_NO_ROOM, 507, "memory_limit")

enum api_error {
#define X(name, status, code) name,
  API_ERRORS(X)
#undef X
};

enum { API_CLOSE = 1 };

/* The Content-Type of a value stored without one (cache_entry_t ctype_len
 * 0: a PUT with none, an empty one, or this one). */
#define API_DEFAULT_CTYPE "application/octet-stream"
static inline const char *api__ctype(const cache_entry_t *e) {
  return e->ctype_len ? cache_entry_ctype(e) : API_DEFAULT_CTYPE;
}

/* Per-request state kept in srv_ctx_t.api. */
typedef struct req {
  uint8_t route, method, answered, chunked, oversize;
  uint16_t status;    /* the status queued, for metrics and logs */
  uint64_t received; /* value bytes received */
  uint64_t discarded; /* body bytes dropped after the value went over */
  uint64_t cap;      /* value capacity of the upload entry (ctx->roots[0]) */
  uint64_t expires_ns;
  /* admin PUT bodies (/debug/gc-percent, /debug/memory-limit): plain text */
  uint8_t text_len, text_over;
  char text[46];
  /* PUT: If-Match / If-None-Match, read on the first call, checked by
   * cache_put_if under the shard lock (has_cond: any of them present) */
  uint8_t has_cond;
  cache_cond_t cond;
  /* profile labels of a data request (api/pprof.c, interned), set on the
   * worker's mutator for every handler call */
  const void *labels;
  /* admin /debug/pprof/...: the request's state (api/pprof.c), NULL until it
   * needs one; freed by api__pprof_completed */
  void *pprof;
} req_t;

_Static_assert(sizeof(req_t) <= SRV_CTX_API_BYTES, "req_t too big");

static inline req_t *api__req(srv_ctx_t *ctx) { return (req_t *)ctx->api; }

/* api/pprof.c: /debug/pprof/ on the admin listener, and the labels data
 * requests carry into profiles. */
#define API_ROUTE_IS_PPROF(r) ((r) >= R_PPROF_INDEX && (r) <= R_PPROF_SYMBOL)
uint8_t api__pprof_route(const char *url); /* R_NOTFOUND if none */
void api__pprof_init(void);                /* from api__debug_init */
/* Every handler call of a pprof route after the first (guard and method
 * already checked, nothing queued yet). */
enum MHD_Result api__pprof_access(srv_ctx_t *ctx, req_t *r, const char *url,
                                  const char *upload, size_t *upload_size);
void api__pprof_completed(srv_ctx_t *ctx); /* admin completion */
void api__pprof_stopping(srv_worker_t *w); /* admin daemon stopping */
/* The interned label set of a data request (first call), and the one to
 * make current on the request's worker (NULL between requests). */
const void *api__pprof_labels(uint8_t method, uint8_t route, const char *url);
void api__pprof_set_labels(srv_ctx_t *ctx, const void *labels);

typedef struct api_state {
  cache_t *cache;
  struct MHD_Response *ok, *draining, *empty;
  uint32_t methods_for_route[R__COUNT];
  const char *allow_for_route[R__COUNT];
  _Atomic uint64_t oversize_closed;
} api_state_t;

extern api_state_t api__state;

/* Does this request's answer carry X-Request-Id? Always, unless
 * --request-id-header incoming and the client sent none. */
static inline bool api__reqid_header(const srv_ctx_t *ctx) {
  return srv_config()->request_id_always || ctx->request_id_incoming;
}

/* Queues a response shared between requests (an entry's cached response,
 * the static health answers) and records the status. Adds no header. */
static inline enum MHD_Result api__queue_shared(srv_ctx_t *ctx,
                                                unsigned status,
                                                struct MHD_Response *resp) {
  api__req(ctx)->status = (uint16_t)status;
  ctx->status = (uint16_t)status;
  return MHD_queue_response(ctx->conn, status, resp);
}

/* Queues a response made for this request (every other answer), adding
 * X-Request-Id when it is wanted. */
static inline enum MHD_Result api__queue(srv_ctx_t *ctx, unsigned status,
                                         struct MHD_Response *resp) {
  if (api__reqid_header(ctx))
    MHD_add_response_header(resp, "X-Request-Id", ctx->request_id);
  return api__queue_shared(ctx, status, resp);
}

/* Called once per finished request (both listeners) with its route, status
 * (0 if none was queued), duration and end cause: feeds /metrics. Runs on
 * the request's worker; no lock, no allocation (api/metrics.c). */
void api__observe(srv_ctx_t *ctx, enum MHD_RequestTerminationCode toe);

/* Everything /debug/memstats and /metrics report about memory, read once so
 * the two agree: the heap's figures, the index's, the server's, and the
 * off-heap sizes bufcache derives (docs/operations.md has the mapping).
 * Takes no lock the GET path takes; the gc_stats_t part is big (about 6 KiB):
 * keep the struct off small stacks. */
typedef struct api_memstats {
  gc_stats_t gc;
  cache_stats_t cache;
  srv_stats_t srv;
  uint64_t stack_sys;   /* OS thread stacks reserved (StackSys) */
  uint64_t other_sys;   /* index slot tables + request metrics blocks */
  uint64_t sys;         /* gc.sys + stack_sys + other_sys (Sys) */
  uint64_t oversize_closed;
} api_memstats_t;
void api__read_memstats(api_memstats_t *ms);

/* GET /metrics on either listener: the Prometheus text exposition. */
enum MHD_Result api__metrics(srv_ctx_t *ctx);
/* Route labels, by R_*. */
extern const char *const api__route_label[R__COUNT];

enum MHD_Result api__error(srv_ctx_t *ctx, enum api_error err,
                           const char *message, unsigned flags);
/* api__error with one more response header (hname: hval), e.g. 416's
 * Content-Range. */
enum MHD_Result api__error_h(srv_ctx_t *ctx, enum api_error err,
                             const char *message, unsigned flags,
                             const char *hname, const char *hval);

/* api/buffers.c: conditional requests, listing, namespaces. */
/* Reads If-Match and If-None-Match (every field line of each) into *cond;
 * *any tells whether either was present. 0, or an error already queued
 * (400 with flags). No allocation; cheap when neither is present. */
int api__read_cond(srv_ctx_t *ctx, cache_cond_t *cond, bool *any,
                   unsigned flags);
/* GET/HEAD /v1/buffers?prefix=&limit=&cursor= and DELETE
 * /v1/buffers?prefix=[&all=true]. */
enum MHD_Result api__list(srv_ctx_t *ctx);
enum MHD_Result api__delete_prefix(srv_ctx_t *ctx);
/* Headers of a TTL entry's answers: Cache-Control: max-age and Expires. */
void api__add_ttl_headers(struct MHD_Response *r, const cache_entry_t *e,
                          uint64_t now_mono_ns);
enum api_error api__error_from_bc(int err);
enum MHD_Result api__health(srv_ctx_t *ctx, uint8_t route);
int api__request_timeout(srv_ctx_t *ctx);
uint8_t api__route_admin(const char *url);
uint8_t api__debug_route(const char *url);
void api__debug_init(void);
void api__metrics_init(void);
/* The admin guard's constant-time comparison (api/debug.c). */
bool api__token_equal(const char *got, size_t glen, const char *want,
                      size_t wlen);

/* api/dashboard.c: GET /debug/dashboard (the page), GET
 * /debug/dashboard/info (static figures; the page's token check) and GET
 * /debug/dashboard/events (Server-Sent Events, one sample a second). Admin
 * thread only. */
enum MHD_Result api__dashboard(srv_ctx_t *ctx, uint8_t route);

/* api/openapi.c: GET /debug/openapi.yaml, the embedded api/openapi.yaml. */
enum MHD_Result api__openapi(srv_ctx_t *ctx);
/* Does ?token= carry the admin token? Only on the page and the events
 * routes, which a browser opens without headers (EventSource). */
bool api__dashboard_query_token(srv_ctx_t *ctx, uint8_t route,
                                const char *token);
/* The guard's 401 on the page route: the page itself (it asks for the
 * token and says why), with status 401 and WWW-Authenticate. */
enum MHD_Result api__dashboard_unauthorized(srv_ctx_t *ctx);
/* The admin handler's stopping hook: ends every stream. */
void api__dashboard_stopping(srv_worker_t *w);

/* For the dashboard (api/metrics.c): the data listener's finished requests
 * summed over routes and statuses. le[] is one latency histogram (not
 * cumulative; le[API_LAT_BUCKETS] is the overflow) with the bounds
 * api__lat_bound_ns. */
#define API_LAT_BUCKETS 19
extern const uint64_t api__lat_bound_ns[API_LAT_BUCKETS];
typedef struct api_req_totals {
  uint64_t count, sum_ns;
  uint64_t by_method[M__COUNT];
  uint64_t status_4xx, status_5xx;
  uint64_t le[API_LAT_BUCKETS + 1];
} api_req_totals_t;
void api__read_req_totals(api_req_totals_t *t);

#endif
