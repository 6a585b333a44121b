/* debug.c - the admin listener's routes: /debug/memstats (Go's MemStats
 * names), /debug/vars (expvar), POST /debug/gc, POST /debug/freeosmemory,
 * PUT /debug/gc-percent, /debug/memory-limit and /debug/mem-profile-rate;
 * the bearer-token guard.
 * (GET /debug/openapi.yaml is api/openapi.c; every route of both listeners
 * is described in api/openapi.yaml.)
 *
 * Every request on the admin listener passes the guard first when a token is
 * configured (--admin-token-file, BUFCACHE_ADMIN_TOKEN): no valid
 * "Authorization: Bearer <token>" and it gets 401, whatever the route. The
 * data listener's copies of /metrics, /healthz and /readyz are not guarded
 * (read-only, no secrets: probes and Prometheus reach them on the data port).
 * Two routes also take the token as ?token=, which a browser must use there:
 * the dashboard page and its event stream (api/dashboard.c; EventSource
 * cannot send headers). Without it the page route answers 401 with the page,
 * which asks for the token.
 * The admin thread builds its answers with jansson and malloc; nothing here
 * allocates on the gc heap or takes a lock the GET path takes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_internal.h"

#define A api__state

static int g_argc;
static char **g_argv;

void api_set_cmdline(int argc, char **argv) {
  g_argc = argc;
  g_argv = argv;
}

uint8_t api__debug_route(const char *url) {
  static const struct {
    const char *path;
    uint8_t route;
  } routes[] = {
      {"/debug/memstats", R_MEMSTATS},
      {"/debug/vars", R_VARS},
      {"/debug/gc", R_GC},
      {"/debug/freeosmemory", R_FREEOS},
      {"/debug/gc-percent", R_GC_PERCENT},
      {"/debug/memory-limit", R_MEMORY_LIMIT},
      {"/debug/mem-profile-rate", R_MEM_PROFILE_RATE},
      {"/debug/openapi.yaml", R_OPENAPI}, /* api/openapi.c */
      {"/debug/dashboard", R_DASHBOARD},
      {"/debug/dashboard/info", R_DASH_INFO},
      {"/debug/dashboard/events", R_DASH_EVENTS},
#ifdef BUFCACHE_FAULT_INJECTION
      {"/debug/fault", R_FAULT}, /* bufcache-fault only: api/fault.c */
#endif
  };
  for (size_t i = 0; i < BC_ARRAY_LEN(routes); i++)
    if (strcmp(url, routes[i].path) == 0)
      return routes[i].route;
  return api__pprof_route(url); /* /debug/pprof/... */
}

void api__debug_init(void) {
#define ALLOW(route, mask, text)                                               \
  do {                                                                         \
    A.methods_for_route[route] = (mask);                                       \
    A.allow_for_route[route] = (text);                                         \
  } while (0)
  ALLOW(R_MEMSTATS, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  ALLOW(R_VARS, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  ALLOW(R_GC, 1 << M_POST, "POST");
  ALLOW(R_FREEOS, 1 << M_POST, "POST");
  ALLOW(R_GC_PERCENT, 1 << M_GET | 1 << M_HEAD | 1 << M_PUT, "GET, HEAD, PUT");
  ALLOW(R_MEMORY_LIMIT, 1 << M_GET | 1 << M_HEAD | 1 << M_PUT,
        "GET, HEAD, PUT");
  ALLOW(R_MEM_PROFILE_RATE, 1 << M_GET | 1 << M_HEAD | 1 << M_PUT,
        "GET, HEAD, PUT");
  ALLOW(R_OPENAPI, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  ALLOW(R_DASHBOARD, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  ALLOW(R_DASH_INFO, 1 << M_GET | 1 << M_HEAD, "GET, HEAD");
  ALLOW(R_DASH_EVENTS, 1 << M_GET, "GET");
#ifdef BUFCACHE_FAULT_INJECTION
  ALLOW(R_FAULT, 1 << M_GET | 1 << M_POST, "GET, POST");
#endif
#undef ALLOW
  api__metrics_init();
  api__pprof_init();
}

/* ---- the token guard ------------------------------------------------------ */

/* Compares in time that depends on the lengths only, never on where the
 * first difference is. */
bool api__token_equal(const char *got, size_t glen, const char *want,
                      size_t wlen) {
  volatile unsigned char d = 0;
  for (size_t i = 0; i < wlen; i++) {
    unsigned char g = i < glen ? (unsigned char)got[i] : 0;
    d |= (unsigned char)((unsigned char)want[i] ^ g);
  }
  return (d | (glen != wlen)) == 0;
}

/* Does the request carry "Authorization: Bearer <token>"? */
static bool authorized(struct MHD_Connection *c, const char *token) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_AUTHORIZATION);
  if (!h || strncasecmp(h, "Bearer ", 7) != 0)
    return false;
  h += 7;
  while (*h == ' ')
    h++;
  size_t n = strlen(h);
  while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
    n--;
  return api__token_equal(h, n, token, strlen(token));
}

/* ---- /debug/memstats ------------------------------------------------------- */

#define U(v) json_integer((json_int_t)(v))

/* Go's runtime.MemStats, field for field (docs/operations.md, "Reading
 * /debug/memstats", gives the mapping), plus GC, Cache, Pools, Requests. */
static json_t *memstats_json(void) {
  api_memstats_t *ms = malloc(sizeof(*ms));
  if (!ms)
    return NULL;
  api__read_memstats(ms);
  const gc_stats_t *g = &ms->gc;
  const cache_stats_t *cs = &ms->cache;
  const srv_stats_t *ss = &ms->srv;
  json_t *o = json_object();
  json_object_set_new(o, "Alloc", U(g->alloc));
  json_object_set_new(o, "TotalAlloc", U(g->total_alloc));
  json_object_set_new(o, "Sys", U(ms->sys));
  json_object_set_new(o, "Lookups", U(0));
  json_object_set_new(o, "Mallocs", U(g->mallocs));
  json_object_set_new(o, "Frees", U(g->frees));
  json_object_set_new(o, "HeapAlloc", U(g->alloc));
  json_object_set_new(o, "HeapSys", U(g->heap_sys));
  json_object_set_new(o, "HeapIdle", U(g->heap_idle));
  json_object_set_new(o, "HeapInuse", U(g->heap_inuse));
  json_object_set_new(o, "HeapReleased", U(g->heap_released));
  json_object_set_new(o, "HeapObjects", U(g->heap_objects));
  /* no goroutine stacks on the heap: every stack is an OS thread's, which
   * Go counts in StackSys only */
  json_object_set_new(o, "StackInuse", U(0));
  json_object_set_new(o, "StackSys", U(ms->stack_sys));
  json_object_set_new(o, "MSpanInuse", U(g->mspan_inuse));
  json_object_set_new(o, "MSpanSys", U(g->mspan_sys));
  json_object_set_new(o, "MCacheInuse", U(g->mcache_inuse));
  json_object_set_new(o, "MCacheSys", U(g->mcache_sys));
  json_object_set_new(o, "BuckHashSys", U(g->buckhash_sys));
  json_object_set_new(o, "GCSys", U(g->gc_sys));
  json_object_set_new(o, "OtherSys", U(ms->other_sys));
  json_object_set_new(o, "NextGC", U(g->next_gc));
  json_object_set_new(o, "LastGC", U(g->last_gc_unix_ns));
  json_object_set_new(o, "PauseTotalNs", U(g->pause_total_ns));
  json_t *pn = json_array(), *pe = json_array();
  for (int i = 0; i < GC_PAUSE_RING; i++) {
    json_array_append_new(pn, U(g->pause_ns[i]));
    json_array_append_new(pe, U(g->pause_end[i]));
  }
  json_object_set_new(o, "PauseNs", pn);
  json_object_set_new(o, "PauseEnd", pe);
  json_object_set_new(o, "NumGC", U(g->num_gc));
  json_object_set_new(o, "NumForcedGC", U(g->num_forced_gc));
  json_object_set_new(o, "GCCPUFraction", json_real(g->gc_cpu_fraction));
  /* Go: "EnableGC indicates that GC is enabled. It is always true, even if
   * GOGC=off." */
  json_object_set_new(o, "EnableGC", json_true());
  json_object_set_new(o, "DebugGC", json_false());
  /* BySize[i] is size class i, as in Go: class 0 (large objects) counts
   * nothing */
  json_t *bs = json_array();
  json_array_append_new(bs, json_pack("{s:i,s:i,s:i}", "Size", 0, "Mallocs",
                                      0, "Frees", 0));
  for (int c = 1; c < g->nclasses; c++)
    json_array_append_new(
        bs, json_pack("{s:I,s:I,s:I}", "Size", (json_int_t)g->by_size[c].size,
                      "Mallocs", (json_int_t)g->by_size[c].mallocs, "Frees",
                      (json_int_t)g->by_size[c].frees));
  json_object_set_new(o, "BySize", bs);
  json_object_set_new(
      o, "GC",
      json_pack("{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "GCPercent", g->gc_percent,
                "MemoryLimit", (json_int_t)g->memory_limit, "HeapLive",
                (json_int_t)g->heap_live, "HeapMarkedObjects",
                (json_int_t)g->heap_marked_objects, "HeapEmpty",
                (json_int_t)g->heap_empty, "PaceSleepNs",
                (json_int_t)g->pace_sleep_ns, "AllocFailures",
                (json_int_t)g->alloc_failures, "LastPauseMaxNs",
                (json_int_t)(g->last_pause_ns[0] > g->last_pause_ns[1]
                                 ? g->last_pause_ns[0]
                                 : g->last_pause_ns[1])));
  /* Evictions: "memory" is the cache's own eviction under the memory limit,
   * "ttl" the expired entries it unlinked (on lookup or while scanning). */
  json_object_set_new(
      o, "Cache",
      json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I},s:I}",
                "Entries", (json_int_t)cs->entries, "Bytes",
                (json_int_t)cs->bytes, "HeapBytes", (json_int_t)cs->mem,
                "Hits", (json_int_t)cs->hits, "Misses",
                (json_int_t)cs->misses, "Inserts", (json_int_t)cs->inserts,
                "Replaces", (json_int_t)cs->replaces, "Deletes",
                (json_int_t)cs->deletes, "Expired", (json_int_t)cs->expired,
                "Evictions", "memory", (json_int_t)cs->evicted, "ttl",
                (json_int_t)cs->expired, "IndexBytes",
                (json_int_t)cs->index_bytes));
  json_t *pools = json_object();
  for (int p = 0; p < g->npools; p++)
    json_object_set_new(
        pools, g->pools[p].name,
        json_pack("{s:I,s:I,s:I,s:I,s:I}", "Gets",
                  (json_int_t)g->pools[p].gets, "Puts",
                  (json_int_t)g->pools[p].puts, "News",
                  (json_int_t)g->pools[p].news, "VictimHits",
                  (json_int_t)g->pools[p].victim_hits, "Dropped",
                  (json_int_t)g->pools[p].dropped));
  json_object_set_new(o, "Pools", pools);
  json_object_set_new(
      o, "Requests",
      json_pack("{s:I,s:I,s:{s:I,s:I,s:I},s:I}", "InFlight",
                (json_int_t)ss->inflight, "Total", (json_int_t)ss->requests,
                "Canceled", "client_gone",
                (json_int_t)ss->cancels[SRV_CAUSE_CLIENT_GONE], "deadline",
                (json_int_t)ss->cancels[SRV_CAUSE_DEADLINE], "shutdown",
                (json_int_t)ss->cancels[SRV_CAUSE_SHUTDOWN], "OversizeClosed",
                (json_int_t)ms->oversize_closed));
  free(ms);
  return o;
}

/* ---- answers ----------------------------------------------------------------- */

static enum MHD_Result send_body(srv_ctx_t *ctx, unsigned status, char *body,
                                 size_t n, const char *ctype) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result rc = api__queue(ctx, status, r);
  MHD_destroy_response(r);
  return rc;
}

static enum MHD_Result send_json(srv_ctx_t *ctx, unsigned status, json_t *j) {
  if (!j)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  char *body = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (!body)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  size_t n = strlen(body);
  char *nl = realloc(body, n + 2);
  if (nl) {
    body = nl;
    body[n++] = '\n';
    body[n] = 0;
  }
  return send_body(ctx, status, body, n, "application/json");
}

static enum MHD_Result send_text(srv_ctx_t *ctx, const char *fmt,
                                 long long v) {
  char *body = malloc(32);
  if (!body)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  int n = snprintf(body, 32, fmt, v);
  return send_body(ctx, MHD_HTTP_OK, body, (size_t)n,
                   "text/plain; charset=utf-8");
}

/* The figures of the cycle that just ended. */
static json_t *gc_result(void) {
  gc_stats_t *g = malloc(sizeof(*g));
  if (!g)
    return NULL;
  gc_read_stats(g);
  json_t *o = json_pack(
      "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "NumGC",
      (json_int_t)g->num_gc, "NumForcedGC", (json_int_t)g->num_forced_gc,
      "PauseNs", (json_int_t)(g->last_pause_ns[0] + g->last_pause_ns[1]),
      "PauseTotalNs", (json_int_t)g->pause_total_ns, "LastGC",
      (json_int_t)g->last_gc_unix_ns, "HeapAlloc", (json_int_t)g->alloc,
      "HeapInuse", (json_int_t)g->heap_inuse, "HeapObjects",
      (json_int_t)g->heap_objects, "HeapLive", (json_int_t)g->heap_live,
      "HeapReleased", (json_int_t)g->heap_released, "NextGC",
      (json_int_t)g->next_gc);
  free(g);
  return o;
}

/* ---- the live knobs ------------------------------------------------------- */

/* The request's text body without surrounding whitespace, NUL-terminated in
 * r->text; NULL if there is none or it did not fit. */
static const char *body_text(req_t *r, size_t *len) {
  if (r->text_over)
    return NULL;
  const char *s = r->text;
  size_t n = r->text_len;
  while (n && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
    s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
               s[n - 1] == '\n'))
    n--;
  if (!n)
    return NULL;
  ((char *)s)[n] = 0;
  *len = n;
  return s;
}

/* PUT /debug/gc-percent: debug.SetGCPercent. "off" or a negative number
 * turns proactive cycles off (-1, as Go reports it). Answers the previous
 * value; GET answers the current one. */
static enum MHD_Result gc_percent(srv_ctx_t *ctx, req_t *r) {
  if (r->method != M_PUT) {
    gc_stats_t *g = malloc(sizeof(*g));
    if (!g)
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    gc_read_stats(g);
    int cur = g->gc_percent;
    free(g);
    return send_text(ctx, "%lld\n", cur);
  }
  size_t n;
  const char *v = body_text(r, &n);
  uint64_t u;
  int pct;
  if (v && !strcmp(v, "off"))
    pct = GC_PERCENT_OFF;
  else if (v && v[0] == '-' && n > 1 && bc_parse_u64(v + 1, n - 1, &u) == 0)
    pct = GC_PERCENT_OFF;
  else if (v && bc_parse_u64(v, n, &u) == 0 && u <= 100000)
    pct = (int)u;
  else
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "the body must be a percentage (0 to 100000), a "
                      "negative number or \"off\"",
                      0);
  return send_text(ctx, "%lld\n", gc_set_percent(pct));
}

/* PUT /debug/memory-limit: debug.SetMemoryLimit. Bytes, or a size with a
 * unit (512MiB); a negative number changes nothing (Go's way to read it).
 * Answers the previous value in bytes; GET answers the current one. */
static enum MHD_Result memory_limit(srv_ctx_t *ctx, req_t *r) {
  size_t n;
  const char *v = r->method == M_PUT ? body_text(r, &n) : NULL;
  uint64_t u;
  if (r->method != M_PUT || (v && v[0] == '-' && n > 1 &&
                             bc_parse_u64(v + 1, n - 1, &u) == 0)) {
    gc_stats_t *g = malloc(sizeof(*g));
    if (!g)
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    gc_read_stats(g);
    uint64_t cur = g->memory_limit;
    free(g);
    return send_text(ctx, "%lld\n", (long long)cur);
  }
  if (!v || bc_parse_size(v, n, &u) != 0 || u == 0)
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "the body must be a positive number of bytes or a size "
                      "such as 512MiB",
                      0);
  return send_text(ctx, "%lld\n", (long long)gc_set_memory_limit(u));
}

/* PUT /debug/mem-profile-rate: runtime.MemProfileRate, live. Bytes or a
 * size (512KiB); 0 stops allocation sampling, 1 samples every allocation.
 * Every worker takes it at the next cycle (POST /debug/gc applies it at
 * once). Answers the previous value; GET answers the current one. */
static enum MHD_Result mem_profile_rate(srv_ctx_t *ctx, req_t *r) {
  if (r->method != M_PUT)
    return send_text(ctx, "%lld\n", (long long)gc_mem_profile_rate());
  size_t n;
  const char *v = body_text(r, &n);
  uint64_t u;
  if (!v || bc_parse_size(v, n, &u) != 0 || u > ((uint64_t)1 << 40))
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "the body must be a number of bytes or a size such as "
                      "512KiB (0: off, 1: every allocation, at most 1TiB)",
                      0);
  return send_text(ctx, "%lld\n",
                   (long long)gc_set_mem_profile_rate((int64_t)u));
}

/* ---- the access handler --------------------------------------------------- */

static uint8_t admin_method(const char *m) {
  return !strcmp(m, "GET")    ? M_GET
         : !strcmp(m, "HEAD") ? M_HEAD
         : !strcmp(m, "POST") ? M_POST
         : !strcmp(m, "PUT")  ? M_PUT
         : !strcmp(m, "DELETE") ? M_DELETE
                                : M_OTHER;
}

static enum MHD_Result admin_access(srv_ctx_t *ctx, bool first,
                                    const char *url, const char *method,
                                    const char *upload, size_t *upload_size) {
  req_t *r = api__req(ctx);
  if (first) {
    memset(r, 0, sizeof(*r));
    r->route = api__route_admin(url);
    r->method = admin_method(method);
    const char *token = srv_config()->admin_token;
    if (token[0] && !authorized(ctx->conn, token) &&
        !api__dashboard_query_token(ctx, r->route, token)) {
      if (r->route == R_DASHBOARD &&
          (r->method == M_GET || r->method == M_HEAD))
        return api__dashboard_unauthorized(ctx); /* the page asks for it */
      api__error(ctx, API_ERR_UNAUTHORIZED,
                 "this listener needs Authorization: Bearer <token>", 0);
      return MHD_YES;
    }
    if (r->route != R_NOTFOUND &&
        !((A.methods_for_route[r->route] >> r->method) & 1)) {
      api__error(ctx, API_ERR_METHOD, "method not allowed", API_CLOSE);
    }
    return MHD_YES;
  }
  if (API_ROUTE_IS_PPROF(r->route) && !r->answered) /* api/pprof.c */
    return api__pprof_access(ctx, r, url, upload, upload_size);
  if (*upload_size) {
    if (!r->answered && r->method == M_PUT) {
      size_t room = sizeof(r->text) - 1 - r->text_len;
      if (*upload_size > room)
        r->text_over = 1;
      else {
        memcpy(r->text + r->text_len, upload, *upload_size);
        r->text_len = (uint8_t)(r->text_len + *upload_size);
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->answered)
    return MHD_YES;
  r->answered = 1;
  switch (r->route) {
  case R_HEALTHZ:
  case R_READYZ:
    return api__health(ctx, r->route);
  case R_METRICS:
    return api__metrics(ctx);
  case R_MEMSTATS:
    return send_json(ctx, MHD_HTTP_OK, memstats_json());
  case R_VARS: {
    json_t *o = json_object();
    json_t *argv = json_array();
    if (g_argv)
      for (int i = 0; i < g_argc; i++) {
        json_t *a = json_string(g_argv[i]);
        json_array_append_new(argv, a ? a : json_string("\ufffd"));
      }
    else
      json_array_append_new(argv, json_string("bufcache"));
    json_object_set_new(o, "cmdline", argv);
    json_object_set_new(o, "memstats", memstats_json());
    return send_json(ctx, MHD_HTTP_OK, o);
  }
  case R_GC:
    gc_collect(srv_worker_mutator(ctx->worker));
    return send_json(ctx, MHD_HTTP_OK, gc_result());
  case R_FREEOS: {
    gc_collect(srv_worker_mutator(ctx->worker));
    uint64_t released = gc_scavenge_all();
    json_t *o = gc_result();
    if (o)
      json_object_set_new(o, "ReleasedNow", json_integer((json_int_t)released));
    return send_json(ctx, MHD_HTTP_OK, o);
  }
  case R_GC_PERCENT:
    return gc_percent(ctx, r);
  case R_MEMORY_LIMIT:
    return memory_limit(ctx, r);
  case R_MEM_PROFILE_RATE:
    return mem_profile_rate(ctx, r);
  case R_OPENAPI:
    return api__openapi(ctx);
  case R_DASHBOARD:
  case R_DASH_INFO:
  case R_DASH_EVENTS:
    return api__dashboard(ctx, r->route);
#ifdef BUFCACHE_FAULT_INJECTION
  case R_FAULT:
    return api__fault(ctx);
#endif
  default:
    return api__error(ctx, API_ERR_NO_ROUTE, "no such route", 0);
  }
}

static void admin_completed(srv_ctx_t *ctx,
                            enum MHD_RequestTerminationCode toe) {
  api__pprof_completed(ctx);
  api__observe(ctx, toe);
}

static void admin_stopping(srv_worker_t *w) {
  api__pprof_stopping(w); /* a CPU profile in progress answers now */
  api__dashboard_stopping(w);
}

const srv_handler_t api_admin_handler = {admin_access, admin_completed,
                                         admin_stopping};
