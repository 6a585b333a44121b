/* api.c - routing and the data handlers: /v1/buffers/{key}, /healthz,
 * /readyz; errors as JSON. The admin routes are in api/debug.c.
 *
 * Every request is answered on the access handler's second call or later
 * (libmicrohttpd 0.9.75 closes keep-alive connections when a response is
 * queued on the first call), except errors that must stop a body before it
 * is read: a PUT over the size limit (413), bad framing (400), no room (507).
 *
 * GET hits allocate nothing: an entry without a TTL carries one shared,
 * refcounted MHD response (its aux), built on the first GET and destroyed by
 * the collector's finalizer when the entry is reclaimed. The response points
 * into the entry's bytes; the request context roots the entry until MHD
 * reports the request complete, after which MHD no longer reads the body.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "api_internal.h"

api_state_t api__state;
#define A api__state

/* ---- errors: one table, one mapping -------------------------------------- */

static const struct {
  const char *code;
  unsigned status;
} errtab[] = {
#define X(name, status, code) [name] = {code, status},
    API_ERRORS(X)
#undef X
};

enum MHD_Result api__error(srv_ctx_t *ctx, enum api_error err,
                           const char *message, unsigned flags) {
  return api__error_h(ctx, err, message, flags, NULL, NULL);
}

enum MHD_Result api__error_h(srv_ctx_t *ctx, enum api_error err,
                             const char *message, unsigned flags,
                             const char *hname, const char *hval) {
  json_t *j = json_pack("{s:{s:s,s:s,s:s}}", "error", "code",
                        errtab[err].code, "message", message, "request_id",
                        ctx->request_id);
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  struct MHD_Response *r =
      body ? MHD_create_response_from_buffer(strlen(body), body,
                                             MHD_RESPMEM_MUST_FREE)
           : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  if (flags & API_CLOSE)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  if (err == API_ERR_METHOD)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
                            A.allow_for_route[api__req(ctx)->route]);
  if (err == API_ERR_UNAUTHORIZED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                            "Bearer realm=\"bufcache admin\"");
  if (hname)
    MHD_add_response_header(r, hname, hval);
  enum MHD_Result rc = api__queue(ctx, errtab[err].status, r);
  MHD_destroy_response(r);
  api__req(ctx)->answered = 1;
  return rc;
}

enum api_error api__error_from_bc(int err) {
  switch (err) {
  case BC_ELIMIT:
    return API_ERR_NO_ROOM;
  case BC_ENOMEM:
    return API_ERR_OUT_OF_MEMORY;
  case BC_ENOENT:
    return API_ERR_NOT_FOUND;
  case BC_ETOOBIG:
    return API_ERR_TOO_LARGE;
  case BC_EINVAL:
    return API_ERR_BAD_REQUEST;
  default:
    return API_ERR_INTERNAL;
  }
}

/* ---- routing -------------------------------------------------------------- */

#define BUFFERS_PREFIX "/v1/buffers/"

static uint8_t parse_method(const char *m) {
  switch (m[0]) {
  case 'G':
    return strcmp(m, "GET") == 0 ? M_GET : M_OTHER;
  case 'H':
    return strcmp(m, "HEAD") == 0 ? M_HEAD : M_OTHER;
  case 'P':
    if (strcmp(m, "PUT") == 0)
      return M_PUT;
    return strcmp(m, "POST") == 0 ? M_POST : M_OTHER;
  case 'D':
    return strcmp(m, "DELETE") == 0 ? M_DELETE : M_OTHER;
  default:
    return M_OTHER;
  }
}

/* Routes both listeners share (read-only, no secrets). */
static uint8_t route_common(const char *url) {
  if (strcmp(url, "/healthz") == 0)
    return R_HEALTHZ;
  if (strcmp(url, "/readyz") == 0)
    return R_READYZ;
  if (strcmp(url, "/metrics") == 0)
    return R_METRICS;
  return R_NOTFOUND;
}

static uint8_t route_data(const char *url) {
  if (strncmp(url, BUFFERS_PREFIX, sizeof(BUFFERS_PREFIX) - 1) == 0)
    return R_BUFFER;
  if (strcmp(url, "/v1/buffers") == 0)
    return R_BUFFERS;
  return route_common(url);
}

unsigned api_route(const char *url, const char *method, bool admin,
                   unsigned *method_id) {
  *method_id = parse_method(method);
  return admin ? api__route_admin(url) : route_data(url);
}

uint8_t api__route_admin(const char *url) {
  uint8_t r = api__debug_route(url);
  return r != R_NOTFOUND ? r : route_common(url);
}

/* Is the method allowed on the route? Sets nothing. */
static bool method_allowed(uint8_t route, uint8_t method) {
  return (A.methods_for_route[route] >> method) & 1;
}

/* ---- framing: what libmicrohttpd 0.9.75 lets through ------------------------ */

typedef struct framing {
  int content_length, transfer_encoding;
  bool te_not_chunked; /* a Transfer-Encoding other than "chunked" alone */
} framing_t;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value) {
  (void)kind;
  framing_t *f = cls;
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    f->content_length++;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    f->transfer_encoding++;
    /* MHD 0.9.75 frames a body as chunked only for exactly "chunked"; any
     * other coding ("gzip, chunked", "identity") leaves it reading a body
     * it cannot delimit (RFC 9112 6.1: 400 and close) */
    if (!value || strcasecmp(value, "chunked") != 0)
      f->te_not_chunked = true;
  }
  return MHD_YES;
}

/* 0, or an error already queued. */
static int check_framing(srv_ctx_t *ctx) {
  struct MHD_Connection *c = ctx->conn;
  if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                   MHD_HTTP_HEADER_CONTENT_LENGTH) &&
      !MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                   MHD_HTTP_HEADER_TRANSFER_ENCODING))
    return 0;
  framing_t f = {0, 0, false};
  MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
  if (f.transfer_encoding > 1 || f.te_not_chunked) {
    api__error(ctx, API_ERR_BAD_FRAMING,
               "Transfer-Encoding other than one \"chunked\"", API_CLOSE);
    return -1;
  }
  if (f.content_length > 1) {
    api__error(ctx, API_ERR_BAD_FRAMING, "more than one Content-Length",
               API_CLOSE);
    return -1;
  }
  if (f.content_length && f.transfer_encoding) {
    api__error(ctx, API_ERR_BAD_FRAMING,
               "both Content-Length and Transfer-Encoding", API_CLOSE);
    return -1;
  }
  return 0;
}

/* X-Request-Timeout: a Go duration, capped by --max-request-timeout, moves
 * the request's deadline. 0, or an error already queued. */
int api__request_timeout(srv_ctx_t *ctx) {
  const char *v = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND,
                                              "X-Request-Timeout");
  if (!v)
    return 0;
  uint64_t ns;
  if (bc_parse_duration(v, strlen(v), false, &ns) != 0 || ns == 0) {
    api__error(ctx, API_ERR_BAD_TIMEOUT,
               "X-Request-Timeout must be a positive Go duration (500ms, 2s)",
               API_CLOSE);
    return -1;
  }
  uint64_t cap = srv_config()->max_request_timeout_ns;
  if (ns > cap)
    ns = cap;
  srv_context_set_deadline(&ctx->cx, ctx->start_ns + ns);
  return 0;
}

/* ---- keys and TTLs -------------------------------------------------------- */

static long key_from_url(srv_ctx_t *ctx, const char *url, char *key) {
  const char *raw = url + sizeof(BUFFERS_PREFIX) - 1;
  long n = api_decode_key(raw, strlen(raw), key, CACHE_MAX_KEY);
  if (n >= 0)
    return n;
  static const char *msg[] = {
      [-API_KEY_EMPTY] = "empty key",
      [-API_KEY_TOO_LONG] = "key longer than 512 bytes",
      [-API_KEY_BAD_ESCAPE] = "bad percent-encoding in key",
      [-API_KEY_CONTROL] = "control byte in key",
  };
  api__error(ctx, API_ERR_BAD_KEY, msg[-n], 0);
  return n;
}

/* 0 and *expires_ns (0 = none), or an error already queued. Without
 * ?ttl= the --default-ttl applies (0: none); ?ttl=0 asks for none. */
static int ttl_from_query(srv_ctx_t *ctx, uint64_t *expires_ns) {
  *expires_ns = 0;
  const char *raw = MHD_lookup_connection_value(ctx->conn,
                                                MHD_GET_ARGUMENT_KIND, "ttl");
  if (!raw) {
    uint64_t def = srv_config()->default_ttl_ns;
    if (def)
      *expires_ns = bc_now_mono_ns() + def;
    return 0;
  }
  char buf[64];
  long n = api_decode_query(raw, strlen(raw), buf, sizeof(buf));
  uint64_t ns;
  if (n <= 0 || bc_parse_duration(buf, (size_t)n, true, &ns) != 0) {
    api__error(ctx, API_ERR_BAD_TTL,
               "ttl must be a Go duration (90s, 1h30m) or whole seconds",
               API_CLOSE);
    return -1;
  }
  if (ns)
    *expires_ns = bc_now_mono_ns() + ns;
  return 0;
}

/* ---- PUT ------------------------------------------------------------------ */

#define CHUNKED_INITIAL_CAP ((uint64_t)64 << 10)
#define OVERSIZE_DISCARD_MAX ((uint64_t)16 << 20)

static enum MHD_Result put_begin(srv_ctx_t *ctx, req_t *r, const char *url) {
  struct MHD_Connection *c = ctx->conn;
  if (check_framing(ctx))
    return MHD_YES;
  char key[CACHE_MAX_KEY];
  long klen = key_from_url(ctx, url, key);
  if (klen < 0)
    return MHD_YES;
  if (ttl_from_query(ctx, &r->expires_ns))
    return MHD_YES;
  bool any_cond;
  if (api__read_cond(ctx, &r->cond, &any_cond, API_CLOSE))
    return MHD_YES;
  r->has_cond = any_cond;
  const char *ct =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                  MHD_HTTP_HEADER_CONTENT_TYPE);
  /* none, empty, or the default: stored as no bytes at all (GET answers
   * with API_DEFAULT_CTYPE) */
  if (!ct || strcasecmp(ct, API_DEFAULT_CTYPE) == 0)
    ct = "";
  size_t ctlen = strlen(ct);
  if (ctlen > CACHE_MAX_CTYPE) {
    api__error(ctx, API_ERR_BAD_REQUEST, "Content-Type longer than 255 bytes",
               API_CLOSE);
    return MHD_YES;
  }
  for (size_t i = 0; i < ctlen; i++)
    if ((unsigned char)ct[i] < 0x20 || ct[i] == 0x7f) {
      api__error(ctx, API_ERR_BAD_REQUEST, "control byte in Content-Type",
                 API_CLOSE);
      return MHD_YES;
    }
  uint64_t max = srv_config()->max_value_size;
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  uint64_t cap;
  if (cl) {
    if (bc_parse_u64(cl, strlen(cl), &cap) != 0) {
      api__error(ctx, API_ERR_BAD_FRAMING, "bad Content-Length", API_CLOSE);
      return MHD_YES;
    }
    if (cap > max) {
      char msg[96];
      snprintf(msg, sizeof(msg), "value of %llu bytes is over the limit of %llu",
               (unsigned long long)cap, (unsigned long long)max);
      api__error(ctx, API_ERR_TOO_LARGE, msg, API_CLOSE);
      return MHD_YES;
    }
  } else if (MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
    r->chunked = 1;
    cap = CHUNKED_INITIAL_CAP < max ? CHUNKED_INITIAL_CAP : max;
  } else {
    cap = 0;
  }
  int err;
  cache_entry_t *e = cache_entry_new(A.cache, srv_worker_mutator(ctx->worker),
                                     key, (size_t)klen, ct, ctlen, cap,
                                     r->expires_ns, &err);
  if (!e) {
    api__error(ctx, api__error_from_bc(err),
               err == BC_ELIMIT ? "the value does not fit under the memory limit"
                                : "out of memory",
               API_CLOSE);
    return MHD_YES;
  }
  ctx->roots[0] = e;
  r->cap = cap;
  return MHD_YES;
}

/* Copies e's key and content type into a new entry of value capacity cap,
 * with the first keep bytes of the value. NULL with *err. */
static cache_entry_t *regrow(srv_ctx_t *ctx, cache_entry_t *e, uint64_t cap,
                             uint64_t keep, int *err) {
  cache_entry_t *n = cache_entry_new(
      A.cache, srv_worker_mutator(ctx->worker), cache_entry_key(e), e->key_len,
      cache_entry_ctype(e), e->ctype_len, cap, e->expires_ns, err);
  if (n)
    memcpy(cache_entry_value(n), cache_entry_value(e), keep);
  return n;
}

static enum MHD_Result put_data(srv_ctx_t *ctx, req_t *r, const char *data,
                                size_t *size) {
  cache_entry_t *e = ctx->roots[0];
  uint64_t n = *size;
  uint64_t max = srv_config()->max_value_size;
  if (r->oversize || r->received + n > max) {
    /* A chunked body past the limit. libmicrohttpd 0.9.75 cannot queue an
     * answer mid-body, so drop the upload (it is garbage now), discard what
     * keeps coming up to a bound, and answer 413 with Connection: close when
     * the body ends; a body that goes on past the bound gets the connection
     * closed instead. Nothing is stored either way. */
    ctx->roots[0] = NULL;
    r->oversize = 1;
    r->discarded += n;
    *size = 0;
    if (r->discarded > OVERSIZE_DISCARD_MAX) {
      A.oversize_closed++;
      return MHD_NO;
    }
    return MHD_YES;
  }
  if (r->received + n > r->cap) {
    uint64_t ncap = r->cap * 2;
    if (ncap < r->received + n)
      ncap = r->received + n;
    if (ncap > max)
      ncap = max;
    int err;
    cache_entry_t *g = regrow(ctx, e, ncap, r->received, &err);
    if (!g) {
      ctx->roots[0] = NULL;
      return MHD_NO;
    }
    ctx->roots[0] = e = g;
    r->cap = ncap;
  }
  memcpy(cache_entry_value(e) + r->received, data, n);
  r->received += n;
  ctx->bytes_in = r->received;
  *size = 0;
  return MHD_YES;
}

static enum MHD_Result put_end(srv_ctx_t *ctx, req_t *r) {
  if (r->oversize) {
    char msg[96];
    snprintf(msg, sizeof(msg), "chunked value is over the limit of %llu bytes",
             (unsigned long long)srv_config()->max_value_size);
    return api__error(ctx, API_ERR_TOO_LARGE, msg, API_CLOSE);
  }
  cache_entry_t *e = ctx->roots[0];
  if (r->chunked && r->cap - r->received > r->received / 8 + 256) {
    int err;
    cache_entry_t *t = regrow(ctx, e, r->received, r->received, &err);
    if (t)
      ctx->roots[0] = e = t;
  }
  e->value_len = (uint32_t)r->received;
  e->etag = bc_xxh64(cache_entry_value(e), r->received, 0);
  bool replaced;
  if (cache_put_if(A.cache, e, r->has_cond ? &r->cond : NULL,
                   bc_now_mono_ns(), &replaced) != 0) {
    ctx->roots[0] = NULL; /* the upload is garbage now */
    return api__error(ctx, API_ERR_PRECONDITION,
                      "If-Match / If-None-Match does not hold for the "
                      "current value",
                      0);
  }
  char etag[19];
  api_format_etag(e->etag, etag);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (!resp)
    return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
  enum MHD_Result rc = api__queue(ctx, replaced ? MHD_HTTP_NO_CONTENT : MHD_HTTP_CREATED, resp);
  MHD_destroy_response(resp);
  return rc;
}

/* ---- GET, HEAD, DELETE ---------------------------------------------------- */

static struct MHD_Response *build_get_response(cache_entry_t *e,
                                               uint64_t now) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      e->value_len, cache_entry_value(e), MHD_RESPMEM_PERSISTENT);
  if (!resp)
    return NULL;
  char etag[19];
  api_format_etag(e->etag, etag);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, api__ctype(e));
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
  if (e->expires_ns)
    api__add_ttl_headers(resp, e, now);
  return resp;
}

static void destroy_aux(void *aux) { MHD_destroy_response(aux); }

#define BODY_OK "{\"status\":\"ok\"}\n"
#define BODY_DRAINING "{\"status\":\"draining\"}\n"

/* A static answer: the shared response, or a copy of it for this request
 * when X-Request-Id must be added (body NULL: empty). */
static enum MHD_Result queue_static(srv_ctx_t *ctx, unsigned status,
                                    struct MHD_Response *shared,
                                    const char *body) {
  if (!api__reqid_header(ctx))
    return api__queue_shared(ctx, status, shared);
  struct MHD_Response *r = MHD_create_response_from_buffer(
      body ? strlen(body) : 0, (void *)body, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return MHD_NO;
  if (body)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
  enum MHD_Result rc = api__queue(ctx, status, r);
  MHD_destroy_response(r);
  return rc;
}

/* A bodiless answer for e (304): its ETag and TTL headers. (MHD 0.9.75
 * adds "Content-Length: 0" to it and sends a second one if we add the
 * 200's length, so the 304 carries MHD's; clients read no body either
 * way.) */
static enum MHD_Result not_modified(srv_ctx_t *ctx, cache_entry_t *e,
                                    uint64_t now) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (!resp)
    return MHD_NO;
  char etag[19];
  api_format_etag(e->etag, etag);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
  if (e->expires_ns)
    api__add_ttl_headers(resp, e, now);
  ctx->bytes_out = 0;
  enum MHD_Result rc = api__queue(ctx, MHD_HTTP_NOT_MODIFIED, resp);
  MHD_destroy_response(resp);
  return rc;
}

/* Does If-Range (RFC 9110 13.1.5) let Range apply? Only an entity-tag
 * equal (strongly) to e's does; a date never does (entries carry no
 * Last-Modified), and neither does a weak or foreign tag. */
static bool if_range_holds(srv_ctx_t *ctx, const cache_entry_t *e) {
  const char *v = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_IF_RANGE);
  if (!v)
    return true;
  uint64_t tag;
  return api_parse_etags(v, strlen(v), false, &tag, 1) == 1 &&
         tag == e->etag;
}

/* The GETs and HEADs that are not plain (conditional headers, Range): sets
 * *rc and returns true when it answered; false sends the whole value the
 * usual way. 304 and 206 are made per request. */
static BC_NOINLINE bool get_special(srv_ctx_t *ctx, cache_entry_t *e,
                                    uint64_t now, const char *range,
                                    enum MHD_Result *rc) {
  cache_cond_t cond;
  bool any;
  if (api__read_cond(ctx, &cond, &any, 0)) {
    *rc = MHD_YES; /* 400 queued */
    return true;
  }
  if (any) {
    uint8_t inm = cond.if_none_match;
    cond.if_none_match = CACHE_COND_OFF; /* If-Match first (13.2.2) */
    if (!cache_cond_match(&cond, e)) {
      *rc = api__error(ctx, API_ERR_PRECONDITION,
                       "If-Match does not hold for the current value", 0);
      return true;
    }
    cond.if_match = CACHE_COND_OFF;
    cond.if_none_match = inm;
    if (!cache_cond_match(&cond, e)) {
      *rc = not_modified(ctx, e, now);
      return true;
    }
  }
  if (!range || !if_range_holds(ctx, e))
    return false;
  uint64_t first, last;
  int k = api_parse_range(range, strlen(range), e->value_len, &first, &last);
  if (k == API_RANGE_FULL)
    return false;
  if (k == API_RANGE_UNSATISFIABLE) {
    char cr[40];
    snprintf(cr, sizeof(cr), "bytes */%u", e->value_len);
    ctx->bytes_out = 0;
    *rc = api__error_h(ctx, API_ERR_RANGE, "no satisfiable byte range", 0,
                       MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    return true;
  }
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      last - first + 1, cache_entry_value(e) + first, MHD_RESPMEM_PERSISTENT);
  if (!resp) {
    *rc = api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    return true;
  }
  char etag[19], cr[80];
  api_format_etag(e->etag, etag);
  snprintf(cr, sizeof(cr), "bytes %llu-%llu/%u", (unsigned long long)first,
           (unsigned long long)last, e->value_len);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, api__ctype(e));
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
  if (e->expires_ns)
    api__add_ttl_headers(resp, e, now);
  ctx->bytes_out = last - first + 1;
  *rc = api__queue(ctx, MHD_HTTP_PARTIAL_CONTENT, resp);
  MHD_destroy_response(resp);
  return true;
}

static enum MHD_Result get(srv_ctx_t *ctx, const char *url) {
  char key[CACHE_MAX_KEY];
  long klen = key_from_url(ctx, url, key);
  if (klen < 0)
    return MHD_YES;
  uint64_t now = bc_now_mono_ns();
  cache_entry_t *e = cache_get(A.cache, key, (size_t)klen, now);
  if (!e)
    return api__error(ctx, API_ERR_NOT_FOUND, "no such key", 0);
  ctx->roots[0] = e;
  if (api__req(ctx)->method == M_GET)
    ctx->bytes_out = e->value_len;
  /* conditional or partial: three header lookups, no allocation when
   * there is none of them */
  struct MHD_Connection *c = ctx->conn;
  const char *range = api__req(ctx)->method == M_GET
                          ? MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_RANGE)
                          : NULL;
  if (BC_UNLIKELY(range ||
                  MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_IF_NONE_MATCH) ||
                  MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_IF_MATCH))) {
    enum MHD_Result rc;
    if (get_special(ctx, e, now, range, &rc))
      return rc;
  }
  if (e->expires_ns == 0) {
    struct MHD_Response *resp = atomic_load_explicit(&e->aux,
                                                     memory_order_acquire);
    if (BC_UNLIKELY(!resp)) {
      struct MHD_Response *mine = build_get_response(e, now);
      if (!mine)
        return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
      resp = cache_entry_set_aux(e, mine);
      if (resp != mine)
        MHD_destroy_response(mine);
    }
    if (BC_LIKELY(!api__reqid_header(ctx)))
      return api__queue_shared(ctx, MHD_HTTP_OK, resp);
    /* X-Request-Id is per request: this answer cannot be the shared one
     * (see --request-id-header) */
  }
  struct MHD_Response *resp = build_get_response(e, now);
  if (!resp)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  enum MHD_Result rc = api__queue(ctx, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result del(srv_ctx_t *ctx, const char *url) {
  char key[CACHE_MAX_KEY];
  long klen = key_from_url(ctx, url, key);
  if (klen < 0)
    return MHD_YES;
  cache_cond_t cond;
  bool any;
  if (api__read_cond(ctx, &cond, &any, 0))
    return MHD_YES;
  int rc = cache_delete_if(A.cache, key, (size_t)klen, any ? &cond : NULL,
                           bc_now_mono_ns());
  if (rc == BC_EPRECOND)
    return api__error(ctx, API_ERR_PRECONDITION,
                      "If-Match / If-None-Match does not hold for the "
                      "current value",
                      0);
  if (rc != 0)
    return api__error(ctx, API_ERR_NOT_FOUND, "no such key", 0);
  return queue_static(ctx, MHD_HTTP_NO_CONTENT, A.empty, NULL);
}

enum MHD_Result api__health(srv_ctx_t *ctx, uint8_t route) {
  if (route == R_READYZ && srv_draining())
    return queue_static(ctx, MHD_HTTP_SERVICE_UNAVAILABLE, A.draining,
                        BODY_DRAINING);
  return queue_static(ctx, MHD_HTTP_OK, A.ok, BODY_OK);
}

/* ---- the access handler --------------------------------------------------- */

static enum MHD_Result data_call(srv_ctx_t *ctx, bool first, const char *url,
                                 const char *method, const char *upload,
                                 size_t *upload_size) {
  req_t *r = api__req(ctx);
  if (first) {
    memset(r, 0, sizeof(*r));
    r->method = parse_method(method);
    r->route = route_data(url);
    ctx->method_id = r->method;
    ctx->route_id = r->route;
    /* profile labels: route and key namespace (api/pprof.c) */
    r->labels = api__pprof_labels(r->method, r->route, url);
    api__pprof_set_labels(ctx, r->labels);
    if (r->route != R_NOTFOUND && !method_allowed(r->route, r->method)) {
      api__error(ctx, API_ERR_METHOD, "method not allowed", API_CLOSE);
      return MHD_YES;
    }
    if (api__request_timeout(ctx))
      return MHD_YES;
    if (r->route == R_BUFFER && r->method == M_PUT)
      return put_begin(ctx, r, url);
    if (check_framing(ctx))
      return MHD_YES;
    return MHD_YES;
  }
  if (*upload_size) {
    if (!r->answered && r->route == R_BUFFER && r->method == M_PUT)
      return put_data(ctx, r, upload, upload_size);
    *upload_size = 0; /* a body nobody asked for: discard it */
    return MHD_YES;
  }
  if (r->answered)
    return MHD_YES;
  r->answered = 1;
  switch (r->route) {
  case R_BUFFER:
    switch (r->method) {
    case M_GET:
    case M_HEAD:
      return get(ctx, url);
    case M_PUT:
      return put_end(ctx, r);
    case M_DELETE:
      return del(ctx, url);
    default:
      break;
    }
    break;
  case R_BUFFERS:
    return r->method == M_DELETE ? api__delete_prefix(ctx) : api__list(ctx);
  case R_HEALTHZ:
  case R_READYZ:
    return api__health(ctx, r->route);
  case R_METRICS:
    return api__metrics(ctx);
  default:
    break;
  }
  return api__error(ctx, API_ERR_NO_ROUTE, "no such route", 0);
}

/* Every handler call runs with the request's profile labels current on the
 * worker (allocation samples, CPU samples), and none between calls. */
static enum MHD_Result data_access(srv_ctx_t *ctx, bool first, const char *url,
                                   const char *method, const char *upload,
                                   size_t *upload_size) {
  if (!first)
    api__pprof_set_labels(ctx, api__req(ctx)->labels);
  enum MHD_Result rc = data_call(ctx, first, url, method, upload, upload_size);
  api__pprof_set_labels(ctx, NULL);
  return rc;
}

const srv_handler_t api_data_handler = {.access = data_access,
                                       .completed = api__observe};

/* ---- set-up --------------------------------------------------------------- */

static struct MHD_Response *static_json(const char *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  if (r)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
  return r;
}

int api_init(cache_t *cache) {
  A.cache = cache;
  cache_set_aux_free(cache, destroy_aux);
  A.ok = static_json(BODY_OK);
  A.draining = static_json(BODY_DRAINING);
  A.empty = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
  if (!A.ok || !A.draining || !A.empty)
    return BC_ENOMEM;
#define ALLOW(route, mask, text)                                               \
  do {                                                                         \
    A.methods_for_route[route] = (mask);                                       \
    A.allow_for_route[route] = (text);                                         \
  } while (0)
  ALLOW(R_BUFFER, 1 << M_GET | 1 << M_HEAD | 1 << M_PUT | 1 << M_DELETE,
        "GET, HEAD, PUT, DELETE");
  ALLOW(R_BUFFERS, 1 << M_GET | 1 << M_HEAD | 1 << M_DELETE,
        "GET, HEAD, DELETE");
  ALLOW(R_HEALTHZ, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  ALLOW(R_READYZ, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  ALLOW(R_METRICS, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  api__debug_init();
#undef ALLOW
  return 0;
}

void api_close(void) {
  MHD_destroy_response(A.ok);
  MHD_destroy_response(A.draining);
  MHD_destroy_response(A.empty);
}
