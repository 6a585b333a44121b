/* api_internal.h - state and helpers shared by the api/ sources only. */
#ifndef API_INTERNAL_H
#define API_INTERNAL_H

#include "api.h"

enum { M_GET, M_HEAD, M_PUT, M_DELETE, M_POST, M_OTHER };

enum {
  R_NOTFOUND = 0,
  R_BUFFER,
  R_HEALTHZ,
  R_READYZ,
  R_MEMSTATS,
  R_VARS,
  R_GC,
  R_FREEOS,
  R__COUNT
};

/* X(enum, HTTP status, stable machine code) */
#define API_ERRORS(X)                                                          \
  X(API_ERR_BAD_REQUEST, 400, "bad_request")                                   \
  X(API_ERR_BAD_KEY, 400, "bad_key")                                           \
  X(API_ERR_BAD_TTL, 400, "bad_ttl")                                           \
  X(API_ERR_BAD_FRAMING, 400, "bad_framing")                                   \
  X(API_ERR_BAD_TIMEOUT, 400, "bad_timeout")                                   \
  X(API_ERR_NOT_FOUND, 404, "not_found")                                       \
  X(API_ERR_NO_ROUTE, 404, "no_route")                                         \
  X(API_ERR_METHOD, 405, "method_not_allowed")                                 \
  X(API_ERR_TOO_LARGE, 413, "value_too_large")                                 \
  X(API_ERR_INTERNAL, 500, "internal")                                         \
  X(API_ERR_OUT_OF_MEMORY, 503, "out_of_memory")                               \
  X(API_ERR_NO_ROOM, 507, "memory_limit")

enum api_error {
#define X(name, status, code) name,
  API_ERRORS(X)
#undef X
};

enum { API_CLOSE = 1 };

/* Per-request state kept in srv_ctx_t.api. */
typedef struct req {
  uint8_t route, method, answered, chunked, oversize;
  uint16_t status;    /* the status queued, for metrics and logs */
  uint64_t received; /* value bytes received */
  uint64_t discarded; /* body bytes dropped after the value went over */
  uint64_t cap;      /* value capacity of the upload entry (ctx->roots[0]) */
  uint64_t expires_ns;
} req_t;

_Static_assert(sizeof(req_t) <= SRV_CTX_API_BYTES, "req_t too big");

static inline req_t *api__req(srv_ctx_t *ctx) { return (req_t *)ctx->api; }

typedef struct api_state {
  cache_t *cache;
  struct MHD_Response *ok, *draining, *empty;
  uint32_t methods_for_route[R__COUNT];
  const char *allow_for_route[R__COUNT];
  _Atomic uint64_t oversize_closed;
} api_state_t;

extern api_state_t api__state;

/* Queues resp with status on the request's connection and records the
 * status in the request (every answer goes through here). */
static inline enum MHD_Result api__queue(srv_ctx_t *ctx, unsigned status,
                                         struct MHD_Response *resp) {
  api__req(ctx)->status = (uint16_t)status;
  ctx->status = (uint16_t)status;
  return MHD_queue_response(ctx->conn, status, resp);
}

/* Called once per finished request (both listeners) with its route, status
 * (0 if none was queued), duration and end cause: feeds /metrics. */
void api__observe(srv_ctx_t *ctx, enum MHD_RequestTerminationCode toe);

enum MHD_Result api__error(srv_ctx_t *ctx, enum api_error err,
                           const char *message, unsigned flags);
enum api_error api__error_from_bc(int err);
enum MHD_Result api__health(srv_ctx_t *ctx, uint8_t route);
int api__request_timeout(srv_ctx_t *ctx);
uint8_t api__route_admin(const char *url);
uint8_t api__debug_route(const char *url);
void api__debug_init(void);

#endif
