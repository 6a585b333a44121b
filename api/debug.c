/* debug.c - the admin listener's routes: /debug/memstats (Go's MemStats
 * names), /debug/vars (expvar), POST /debug/gc, POST /debug/freeosmemory. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

#define A api__state

static const char *g_cmdline_argv0 = "bufcache";

uint8_t api__debug_route(const char *url) {
  if (strcmp(url, "/debug/memstats") == 0)
    return R_MEMSTATS;
  if (strcmp(url, "/debug/vars") == 0)
    return R_VARS;
  if (strcmp(url, "/debug/gc") == 0)
    return R_GC;
  if (strcmp(url, "/debug/freeosmemory") == 0)
    return R_FREEOS;
  return R_NOTFOUND;
}

void api__debug_init(void) {
  A.methods_for_route[R_MEMSTATS] = 1 << M_GET | 1 << M_HEAD;
  A.allow_for_route[R_MEMSTATS] = "GET, HEAD";
  A.methods_for_route[R_VARS] = 1 << M_GET | 1 << M_HEAD;
  A.allow_for_route[R_VARS] = "GET, HEAD";
  A.methods_for_route[R_GC] = 1 << M_POST;
  A.allow_for_route[R_GC] = "POST";
  A.methods_for_route[R_FREEOS] = 1 << M_POST;
  A.allow_for_route[R_FREEOS] = "POST";
}

#define U(v) json_integer((json_int_t)(v))

/* Go's runtime.MemStats, field for field where bufcache has the analogue
 * (docs/operations.md lists the mapping), plus Cache, Pools, Requests. */
static json_t *memstats_json(void) {
  gc_stats_t *g = malloc(sizeof(*g));
  if (!g)
    return NULL;
  gc_read_stats(g);
  cache_stats_t cs;
  cache_read_stats(A.cache, &cs);
  srv_stats_t ss;
  srv_read_stats(&ss);
  const srv_config_t *cfg = srv_config();
  uint64_t nthreads = (uint64_t)cfg->workers + 3; /* + admin, gc, main */
  uint64_t stack = nthreads * ((uint64_t)8 << 20);
  uint64_t other = g->other_sys; /* the libc heap: index, MHD, jansson */
  json_t *o = json_object();
  json_object_set_new(o, "Alloc", U(g->alloc));
  json_object_set_new(o, "TotalAlloc", U(g->total_alloc));
  json_object_set_new(o, "Sys", U(g->sys + stack));
  json_object_set_new(o, "Lookups", U(0));
  json_object_set_new(o, "Mallocs", U(g->mallocs));
  json_object_set_new(o, "Frees", U(g->frees));
  json_object_set_new(o, "HeapAlloc", U(g->alloc));
  json_object_set_new(o, "HeapSys", U(g->heap_sys));
  json_object_set_new(o, "HeapIdle", U(g->heap_idle));
  json_object_set_new(o, "HeapInuse", U(g->heap_inuse));
  json_object_set_new(o, "HeapReleased", U(g->heap_released));
  json_object_set_new(o, "HeapObjects", U(g->heap_objects));
  json_object_set_new(o, "StackInuse", U(stack));
  json_object_set_new(o, "StackSys", U(stack));
  json_object_set_new(o, "MSpanInuse", U(g->mspan_inuse));
  json_object_set_new(o, "MSpanSys", U(g->mspan_sys));
  json_object_set_new(o, "MCacheInuse", U(g->mcache_inuse));
  json_object_set_new(o, "MCacheSys", U(g->mcache_sys));
  json_object_set_new(o, "BuckHashSys", U(0));
  json_object_set_new(o, "GCSys", U(g->gc_sys));
  json_object_set_new(o, "OtherSys", U(other));
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
  json_object_set_new(o, "EnableGC", json_boolean(1));
  json_object_set_new(o, "DebugGC", json_boolean(0));
  json_t *bs = json_array();
  for (int c = 1; c < g->nclasses; c++)
    json_array_append_new(bs, json_pack("{s:I,s:I,s:I}", "Size",
                                        (json_int_t)g->by_size[c].size,
                                        "Mallocs",
                                        (json_int_t)g->by_size[c].mallocs,
                                        "Frees",
                                        (json_int_t)g->by_size[c].frees));
  json_object_set_new(o, "BySize", bs);
  json_object_set_new(
      o, "GC",
      json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "GCPercent",
                (json_int_t)g->gc_percent, "MemoryLimit",
                (json_int_t)g->memory_limit, "HeapLive",
                (json_int_t)g->heap_live, "HeapMarkedObjects",
                (json_int_t)g->heap_marked_objects, "AllocFailures",
                (json_int_t)g->alloc_failures, "LastPauseMaxNs",
                (json_int_t)(g->last_pause_ns[0] > g->last_pause_ns[1]
                                 ? g->last_pause_ns[0]
                                 : g->last_pause_ns[1])));
  json_object_set_new(
      o, "Cache",
      json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "Entries",
                (json_int_t)cs.entries, "Bytes", (json_int_t)cs.bytes, "Hits",
                (json_int_t)cs.hits, "Misses", (json_int_t)cs.misses,
                "Inserts", (json_int_t)cs.inserts, "Replaces",
                (json_int_t)cs.replaces, "Deletes", (json_int_t)cs.deletes,
                "Expired", (json_int_t)cs.expired, "IndexBytes",
                (json_int_t)cs.index_bytes));
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
      json_pack("{s:I,s:I,s:{s:I,s:I,s:I}}", "InFlight",
                (json_int_t)ss.inflight, "Total", (json_int_t)ss.requests,
                "Canceled", "client_gone",
                (json_int_t)ss.cancels[SRV_CAUSE_CLIENT_GONE], "deadline",
                (json_int_t)ss.cancels[SRV_CAUSE_DEADLINE], "shutdown",
                (json_int_t)ss.cancels[SRV_CAUSE_SHUTDOWN]));
  free(g);
  return o;
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
  struct MHD_Response *r =
      MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  enum MHD_Result rc = api__queue(ctx, status, r);
  MHD_destroy_response(r);
  return rc;
}

static json_t *gc_result(void) {
  gc_stats_t *g = malloc(sizeof(*g));
  if (!g)
    return NULL;
  gc_read_stats(g);
  json_t *o = json_pack(
      "{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "NumGC", (json_int_t)g->num_gc,
      "PauseNs", (json_int_t)(g->last_pause_ns[0] + g->last_pause_ns[1]),
      "HeapAlloc", (json_int_t)g->alloc, "HeapInuse",
      (json_int_t)g->heap_inuse, "HeapLive", (json_int_t)g->heap_live,
      "HeapReleased", (json_int_t)g->heap_released, "NextGC",
      (json_int_t)g->next_gc);
  free(g);
  return o;
}

static enum MHD_Result admin_access(srv_ctx_t *ctx, bool first,
                                    const char *url, const char *method,
                                    const char *upload, size_t *upload_size) {
  (void)upload;
  req_t *r = api__req(ctx);
  if (first) {
    memset(r, 0, sizeof(*r));
    r->route = api__route_admin(url);
    r->method = !strcmp(method, "GET")    ? M_GET
                : !strcmp(method, "HEAD") ? M_HEAD
                : !strcmp(method, "POST") ? M_POST
                : !strcmp(method, "PUT")  ? M_PUT
                                          : M_OTHER;
    if (r->route != R_NOTFOUND &&
        !((A.methods_for_route[r->route] >> r->method) & 1)) {
      api__error(ctx, API_ERR_METHOD, "method not allowed", API_CLOSE);
    }
    return MHD_YES;
  }
  if (*upload_size) {
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->answered)
    return MHD_YES;
  r->answered = 1;
  gc_mutator_t *m = srv_worker_mutator(ctx->worker);
  switch (r->route) {
  case R_HEALTHZ:
  case R_READYZ:
    return api__health(ctx, r->route);
  case R_MEMSTATS:
    return send_json(ctx, MHD_HTTP_OK, memstats_json());
  case R_VARS: {
    json_t *o = json_object();
    json_t *argv = json_array();
    json_array_append_new(argv, json_string(g_cmdline_argv0));
    json_object_set_new(o, "cmdline", argv);
    json_object_set_new(o, "memstats", memstats_json());
    return send_json(ctx, MHD_HTTP_OK, o);
  }
  case R_GC:
    gc_collect(m);
    return send_json(ctx, MHD_HTTP_OK, gc_result());
  case R_FREEOS: {
    gc_collect(m);
    uint64_t released = gc_scavenge_all();
    json_t *o = gc_result();
    if (o)
      json_object_set_new(o, "ReleasedNow", json_integer((json_int_t)released));
    return send_json(ctx, MHD_HTTP_OK, o);
  }
  default:
    return api__error(ctx, API_ERR_NO_ROUTE, "no such route", 0);
  }
}

const srv_handler_t api_admin_handler = {admin_access, api__observe};
