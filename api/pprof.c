/* pprof.c - /debug/pprof/ on the admin listener: Go's net/http/pprof for a
 * C service, so `go tool pprof`, flame graphs and habits work unchanged.
 *
 * Endpoints (admin listener, behind the same token guard as /debug/...)
 *   /debug/pprof/            HTML index
 *   /debug/pprof/heap        allocation samples, in-use view (?gc=1 runs a
 *   /debug/pprof/allocs        cycle first; ?debug=1: Go's legacy text)
 *   /debug/pprof/profile     CPU, ?seconds=N (default 30, 1..60); one at a
 *                            time: a second request gets 409
 *   /debug/pprof/requests    the requests in flight (?debug=1: text)
 *   /debug/pprof/cmdline     argv, NUL-separated
 *   /debug/pprof/symbol      GET: "num_symbols: 1"; POST/GET addresses
 *
 * Where the data comes from
 *   heap, allocs  gc/memprof.c samples allocations (mean --mem-profile-rate
 *                 bytes apart) with the caller's stack and the labels current
 *                 on the mutator; figures as of the last completed cycle. The
 *                 encoder scales them as Go does: 1/(1-exp(-avg/rate)).
 *   profile       api/pprof_cpu.c: SIGPROF from per-thread CPU-time timers on
 *                 every worker, the admin thread and the collector, stacks
 *                 taken in the handler with libunwind into lock-free rings.
 *   requests      srv_requests_snapshot: each worker's in-flight list copied
 *                 under that worker's list lock.
 *   Encoding, symbolization (libdw) and gzip (zlib) are in pprof_proto.c, on
 *   this admin thread, with malloc; nothing here touches the gc heap.
 *
 * Labels
 *   Every data request carries an interned label set {method, route,
 *   namespace} (the namespace is the decoded key up to its first '/'; a
 *   key without one has namespace "(none)"). data_access makes it current
 *   on the worker for each handler call (gc_mutator_set_labels for
 *   allocation samples, a thread-local for CPU samples), so `go tool pprof
 *   -tagfocus namespace=users` shows what one namespace holds or costs.
 *   Interning: a lock-free open-addressing table (insert by CAS), at most
 *   LABELS_MAX sets for the life of the process; past that the namespace
 *   reads "(other)". A lookup is a hash of the namespace and a probe.
 *
 * The CPU profile does not block the admin loop
 *   The handler starts the timers, suspends its connection (the admin daemon
 *   allows it, api/dashboard.c does the same) and arms a srv_timer on the
 *   admin loop every 100 ms, which drains the rings; when the time is up it
 *   encodes the profile, resumes the connection and wakes MHD, which calls
 *   the handler again to queue the answer. Why suspend: in MHD 0.9.75's
 *   external epoll mode a response reader that returns 0 ("not yet") leaves
 *   the connection in a blocked state that sets data_already_pending, so
 *   MHD_get_timeout answers 0 and the loop spins; and a handler that queues
 *   nothing is called again at once the same way. A suspended connection
 *   costs nothing but does not see its client go (pitfall 4): the timer ends
 *   the profile by the requested time whatever the client does, and the
 *   admin daemon's stopping hook ends it early on shutdown. The request's
 *   deadline is moved past the profile's end so the server does not cut it.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pprof.h"

#define A api__state

#define PROFILE_DEFAULT_S 30
#define PROFILE_MAX_S 60
#define SYMBOL_BODY_MAX (1u << 20)
#define NS_MAX 64 /* bytes of a namespace label; longer ones are cut */

/* ---- labels -------------------------------------------------------------------- */

#define LABELS_SLOTS 4096 /* a power of two */
#define LABELS_MAX 2048   /* sets; keeps the table at most half full */

static api_labels_t *_Atomic labels_tab[LABELS_SLOTS];
static _Atomic int labels_n;

const char *api__method_name(unsigned m) {
  static const char *const names[M__COUNT] = {"GET",    "HEAD", "PUT",
                                              "DELETE", "POST", "OTHER"};
  return m < M__COUNT ? names[m] : "OTHER";
}

static const api_labels_t *labels_intern(uint8_t method, uint8_t route,
                                         const char *ns, size_t len) {
  uint64_t h = bc_xxh64(ns, len, (uint64_t)method << 8 | route);
  for (size_t i = 0, j = h & (LABELS_SLOTS - 1); i < LABELS_SLOTS;
       i++, j = (j + 1) & (LABELS_SLOTS - 1)) {
    api_labels_t *l = atomic_load_explicit(&labels_tab[j], memory_order_acquire);
    if (!l) {
      if (atomic_load_explicit(&labels_n, memory_order_relaxed) >= LABELS_MAX)
        return NULL;
      api_labels_t *n = malloc(sizeof(*n) + len + 1);
      if (!n)
        return NULL;
      n->hash = h;
      n->method = method;
      n->route = route;
      n->ns_len = (uint16_t)len;
      memcpy(n->ns, ns, len);
      n->ns[len] = 0;
      api_labels_t *expect = NULL;
      if (atomic_compare_exchange_strong(&labels_tab[j], &expect, n)) {
        atomic_fetch_add(&labels_n, 1);
        return n;
      }
      free(n); /* another thread took the slot: look at what it put */
      l = expect;
    }
    if (l->hash == h && l->method == method && l->route == route &&
        l->ns_len == len && memcmp(l->ns, ns, len) == 0)
      return l;
  }
  return NULL;
}

static int hexval(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

/* The namespace of a raw /v1/buffers/ path: the key, percent-decoded, up
 * to its first '/' (at most NS_MAX bytes), made printable UTF-8. Returns
 * its length; "(none)" when the key has no '/'. */
static size_t namespace_of(const char *path, char *out) {
  static const char prefix[] = "/v1/buffers/";
  if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
    return 0;
  const char *s = path + sizeof(prefix) - 1;
  char raw[NS_MAX];
  size_t n = 0;
  bool slash = false;
  for (; *s && *s != '?'; s++) {
    char c = *s;
    if (c == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
      c = (char)(hexval(s[1]) << 4 | hexval(s[2]));
      s += 2;
    }
    if (c == '/') {
      slash = true;
      break;
    }
    if (n < NS_MAX)
      raw[n++] = c;
  }
  if (!slash) {
    memcpy(out, "(none)", 7);
    return 6;
  }
  bool plain = api_utf8_valid(raw, n);
  for (size_t i = 0; plain && i < n; i++)
    if ((unsigned char)raw[i] < 0x20 || raw[i] == 0x7f)
      plain = false;
  if (plain) {
    memcpy(out, raw, n);
    out[n] = 0;
    return n;
  }
  return api_percent_encode(raw, n, out); /* out has 3 * NS_MAX + 1 */
}

const void *api__pprof_labels(uint8_t method, uint8_t route, const char *url) {
  char ns[3 * NS_MAX + 1];
  size_t len = route == R_BUFFER ? namespace_of(url, ns) : 0;
  const api_labels_t *l = labels_intern(method, route, ns, len);
  if (!l) /* the table is full: one set per route for the rest */
    l = labels_intern(method, route, "(other)", 7);
  return l;
}

void api__pprof_set_labels(srv_ctx_t *ctx, const void *labels) {
  gc_mutator_set_labels(srv_worker_mutator(ctx->worker), labels);
  api__cpuprof_set_labels(labels);
}

/* ---- routes, threads -------------------------------------------------------------- */

uint8_t api__pprof_route(const char *url) {
  static const struct {
    const char *path;
    uint8_t route;
  } routes[] = {
      {"/debug/pprof/", R_PPROF_INDEX},
      {"/debug/pprof", R_PPROF_INDEX},
      {"/debug/pprof/heap", R_PPROF_HEAP},
      {"/debug/pprof/allocs", R_PPROF_ALLOCS},
      {"/debug/pprof/profile", R_PPROF_PROFILE},
      {"/debug/pprof/requests", R_PPROF_REQUESTS},
      {"/debug/pprof/cmdline", R_PPROF_CMDLINE},
      {"/debug/pprof/symbol", R_PPROF_SYMBOL},
  };
  if (strncmp(url, "/debug/pprof", 12) != 0)
    return R_NOTFOUND;
  for (size_t i = 0; i < BC_ARRAY_LEN(routes); i++)
    if (strcmp(url, routes[i].path) == 0)
      return routes[i].route;
  return R_NOTFOUND;
}

static void worker_thread_start(srv_worker_t *w) {
  bool admin = srv_worker_is_admin(w);
  api__cpuprof_thread_start(admin ? "admin" : "worker",
                            admin ? -1 : srv_worker_id(w));
}
static void worker_thread_stop(srv_worker_t *w) {
  (void)w;
  api__cpuprof_thread_stop();
}
static void gc_thread_start(const char *name) {
  api__cpuprof_thread_start(name, -1);
}

void api__pprof_init(void) {
  for (int r = R_PPROF_INDEX; r <= R_PPROF_SYMBOL; r++) {
    A.methods_for_route[r] = 1 << M_GET | 1 << M_HEAD;
    A.allow_for_route[r] = "GET, HEAD";
  }
  A.methods_for_route[R_PPROF_PROFILE] = 1 << M_GET;
  A.allow_for_route[R_PPROF_PROFILE] = "GET";
  A.methods_for_route[R_PPROF_SYMBOL] = 1 << M_GET | 1 << M_HEAD | 1 << M_POST;
  A.allow_for_route[R_PPROF_SYMBOL] = "GET, HEAD, POST";
  srv_set_thread_hooks(worker_thread_start, worker_thread_stop);
  gc_set_thread_hooks(gc_thread_start, api__cpuprof_thread_stop);
}

/* ---- answers ---------------------------------------------------------------------- */

static enum MHD_Result send_owned(srv_ctx_t *ctx, req_t *r, unsigned status,
                                  void *body, size_t n, const char *ctype,
                                  const char *filename) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  if (filename) {
    char cd[96];
    snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", filename);
    MHD_add_response_header(resp, "Content-Disposition", cd);
  }
  r->answered = 1;
  enum MHD_Result rc = api__queue(ctx, status, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result send_proto(srv_ctx_t *ctx, req_t *r, pprof_t *p,
                                  const char *name) {
  size_t n = 0;
  unsigned char *gz = pprof_finish(p, &n);
  pprof_free(p);
  if (!gz)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  return send_owned(ctx, r, MHD_HTTP_OK, gz, n, "application/octet-stream",
                    name);
}

static const char *query(srv_ctx_t *ctx, const char *name) {
  return MHD_lookup_connection_value(ctx->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* ?name=N, a small non-negative integer; def when absent, -1 when bad. */
static long query_int(srv_ctx_t *ctx, const char *name, long def) {
  const char *v = query(ctx, name);
  if (!v || !*v)
    return def;
  uint64_t u;
  if (bc_parse_u64(v, strlen(v), &u) != 0 || u > 1000000)
    return -1;
  return (long)u;
}

/* ---- the index, cmdline ------------------------------------------------------------- */

static enum MHD_Result index_page(srv_ctx_t *ctx, req_t *r) {
  srv_stats_t st;
  srv_read_stats(&st);
  char *body = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&body, &n);
  if (!f)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  fprintf(f,
          "<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n"
          ".profile-name{display:inline-block;width:6rem;}\n</style>\n"
          "</head>\n<body>\n/debug/pprof/\n<br>\n<p>Set debug=1 as a query "
          "parameter to export in legacy text format</p>\n<br>\nTypes of "
          "profiles available:\n<table>\n<thead><td>Count</td><td>Profile"
          "</td></thead>\n");
  static const struct {
    const char *name, *desc;
  } prof[] = {
      {"allocs", "A sampling of all past memory allocations, by stack and by "
                 "route and key namespace (labels)"},
      {"heap", "A sampling of memory allocations of live objects, as of the "
               "last completed GC cycle. You can specify the gc GET "
               "parameter to run GC before taking the heap sample."},
      {"profile", "CPU profile. You can specify the duration in the seconds "
                  "GET parameter (default 30, at most 60). One at a time. "
                  "After you get the profile file, use the go tool pprof "
                  "command to investigate the profile."},
      {"requests", "The requests in flight: one sample per request, labelled "
                   "with method, route, worker, age and request ID"},
      {"cmdline", "The command line invocation of the current program"},
      {"symbol", "Maps program counters to function names (as "
                 "net/http/pprof's)"},
  };
  fprintf(f, "<tr><td>%llu</td><td><a href='/debug/pprof/requests?debug=1'>"
             "requests</a></td></tr>\n",
          (unsigned long long)st.inflight);
  fprintf(f, "<tr><td>-</td><td><a href='/debug/pprof/allocs?debug=1'>"
             "allocs</a></td></tr>\n<tr><td>-</td><td><a "
             "href='/debug/pprof/heap?debug=1'>heap</a></td></tr>\n"
             "</table>\n<a href='/debug/pprof/profile'>profile</a> (30 s CPU)"
             "<br>\n<a href='/debug/pprof/cmdline'>cmdline</a><br>\n<a "
             "href='/debug/pprof/symbol'>symbol</a><br>\n<br>\n<p>\nProfile "
             "Descriptions:\n<ul>\n");
  for (size_t i = 0; i < BC_ARRAY_LEN(prof); i++)
    fprintf(f, "<li><div class=profile-name>%s: </div> %s</li>\n",
            prof[i].name, prof[i].desc);
  fprintf(f, "</ul>\n</p>\n<p>Read them with <code>go tool pprof "
             "http://HOST:PORT/debug/pprof/heap</code> (add an "
             "Authorization header with a token when the admin listener "
             "has one).</p>\n</body>\n</html>\n");
  fclose(f);
  return send_owned(ctx, r, MHD_HTTP_OK, body, n, "text/html; charset=utf-8",
                    NULL);
}

static enum MHD_Result cmdline(srv_ctx_t *ctx, req_t *r) {
  FILE *f = fopen("/proc/self/cmdline", "r");
  char *body = malloc(65536);
  size_t n = f && body ? fread(body, 1, 65535, f) : 0;
  if (f)
    fclose(f);
  if (!body)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  if (n && body[n - 1] == 0)
    n--; /* Go joins os.Args with NUL: no NUL after the last */
  return send_owned(ctx, r, MHD_HTTP_OK, body, n, "text/plain; charset=utf-8",
                    NULL);
}

/* ---- symbol ---------------------------------------------------------------------- */

typedef struct sym_state {
  char *body;
  size_t n;
  bool over;
} sym_state_t;

static void symbolize_list(FILE *f, const char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (s[i] == '+' || s[i] == ' ' || s[i] == '\n' ||
                     s[i] == '\r' || s[i] == '&'))
      i++;
    size_t j = i;
    while (j < n && s[j] != '+' && s[j] != ' ' && s[j] != '\n' &&
           s[j] != '\r' && s[j] != '&')
      j++;
    if (j > i && j - i < 32) {
      char tok[32];
      memcpy(tok, s + i, j - i);
      tok[j - i] = 0;
      char *end;
      unsigned long long a = strtoull(tok, &end, 0);
      char name[512];
      if (*end == 0 && a && pprof_symbol_of((uintptr_t)a, name, sizeof(name)))
        fprintf(f, "%#llx %s\n", a, name);
    }
    i = j;
  }
}

static enum MHD_Result collect_keys(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value) {
  (void)kind;
  (void)value;
  symbolize_list(cls, key, strlen(key));
  return MHD_YES;
}

static enum MHD_Result symbol(srv_ctx_t *ctx, req_t *r) {
  char *body = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&body, &n);
  if (!f)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  /* Go's answer to every request starts so; pprof only checks it's > 0 */
  fprintf(f, "num_symbols: 1\n");
  sym_state_t *st = r->pprof;
  if (r->method == M_POST && st && st->body)
    symbolize_list(f, st->body, st->n);
  else if (r->method != M_POST)
    MHD_get_connection_values(ctx->conn, MHD_GET_ARGUMENT_KIND, collect_keys,
                              f);
  fclose(f);
  if (st && st->over) {
    free(body);
    return api__error(ctx, API_ERR_TOO_LARGE, "symbol request over 1 MiB",
                      API_CLOSE);
  }
  return send_owned(ctx, r, MHD_HTTP_OK, body, n, "text/plain; charset=utf-8",
                    NULL);
}

static enum MHD_Result symbol_upload(req_t *r, const char *data,
                                     size_t *size) {
  sym_state_t *st = r->pprof;
  if (!st) {
    st = r->pprof = calloc(1, sizeof(*st));
    if (!st)
      return MHD_NO;
  }
  if (st->n + *size > SYMBOL_BODY_MAX) {
    st->over = true;
  } else {
    char *b = realloc(st->body, st->n + *size + 1);
    if (!b)
      return MHD_NO;
    memcpy(b + st->n, data, *size);
    st->n += *size;
    b[st->n] = 0;
    st->body = b;
  }
  *size = 0;
  return MHD_YES;
}

/* ---- heap and allocs ---------------------------------------------------------------- */

typedef struct hrec {
  gc_memprof_record_t r;
  uintptr_t stk[GC_MEMPROF_MAX_STACK];
} hrec_t;

typedef struct hvec {
  hrec_t *v;
  size_t n, cap;
  bool oom;
} hvec_t;

static void copy_record(const gc_memprof_record_t *r, void *arg) {
  hvec_t *h = arg;
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 256;
    hrec_t *q = realloc(h->v, cap * sizeof(*q));
    if (!q) {
      h->oom = true;
      return;
    }
    h->v = q;
    h->cap = cap;
  }
  hrec_t *o = &h->v[h->n++];
  o->r = *r;
  memcpy(o->stk, r->stack, (size_t)r->nstack * sizeof(uintptr_t));
  o->r.stack = o->stk;
}

/* Go's scaleHeapSample: the sampling odds of an object of the bucket's
 * average size undone. */
static void scale(uint64_t count, uint64_t size, int64_t rate, int64_t *c,
                  int64_t *s) {
  if (!count || !size) {
    *c = *s = 0;
    return;
  }
  if (rate <= 1) {
    *c = (int64_t)count;
    *s = (int64_t)size;
    return;
  }
  double avg = (double)size / (double)count;
  double k = 1 / (1 - exp(-avg / (double)rate));
  *c = (int64_t)((double)count * k);
  *s = (int64_t)((double)size * k);
}

static void heap_text(FILE *f, pprof_t *p, hvec_t *h, int64_t rate) {
  uint64_t io = 0, ib = 0, ao = 0, ab = 0;
  for (size_t i = 0; i < h->n; i++) {
    gc_memprof_record_t *r = &h->v[i].r;
    io += r->alloc_objects - r->free_objects;
    ib += r->alloc_bytes - r->free_bytes;
    ao += r->alloc_objects;
    ab += r->alloc_bytes;
  }
  fprintf(f, "heap profile: %llu: %llu [%llu: %llu] @ heap/%lld\n",
          (unsigned long long)io, (unsigned long long)ib,
          (unsigned long long)ao, (unsigned long long)ab,
          (long long)(2 * rate));
  for (size_t i = 0; i < h->n; i++) {
    gc_memprof_record_t *r = &h->v[i].r;
    fprintf(f, "%llu: %llu [%llu: %llu] @",
            (unsigned long long)(r->alloc_objects - r->free_objects),
            (unsigned long long)(r->alloc_bytes - r->free_bytes),
            (unsigned long long)r->alloc_objects,
            (unsigned long long)r->alloc_bytes);
    for (int k = 0; k < r->nstack; k++)
      fprintf(f, " %#llx", (unsigned long long)r->stack[k]);
    fputc('\n', f);
    const api_labels_t *l = r->labels;
    if (l)
      fprintf(f, "# labels: {\"method\":\"%s\", \"route\":\"%s\", "
                 "\"namespace\":\"%s\"}\n",
              api__method_name(l->method), api__route_label[l->route], l->ns);
    pprof_text_stack(p, f, r->stack, r->nstack, false);
    fputc('\n', f);
  }
  gc_stats_t *g = malloc(sizeof(*g));
  if (g) {
    gc_read_stats(g);
    fprintf(f,
            "\n# runtime.MemStats\n# Alloc = %llu\n# TotalAlloc = %llu\n"
            "# Sys = %llu\n# Mallocs = %llu\n# Frees = %llu\n# HeapAlloc = "
            "%llu\n# HeapSys = %llu\n# HeapIdle = %llu\n# HeapInuse = %llu\n"
            "# HeapReleased = %llu\n# HeapObjects = %llu\n# BuckHashSys = "
            "%llu\n# NextGC = %llu\n# NumGC = %u\n# MemProfileRate = %lld\n",
            (unsigned long long)g->alloc, (unsigned long long)g->total_alloc,
            (unsigned long long)g->sys, (unsigned long long)g->mallocs,
            (unsigned long long)g->frees, (unsigned long long)g->alloc,
            (unsigned long long)g->heap_sys, (unsigned long long)g->heap_idle,
            (unsigned long long)g->heap_inuse,
            (unsigned long long)g->heap_released,
            (unsigned long long)g->heap_objects,
            (unsigned long long)g->buckhash_sys,
            (unsigned long long)g->next_gc, g->num_gc, (long long)rate);
    free(g);
  }
}

static enum MHD_Result heap(srv_ctx_t *ctx, req_t *r, bool allocs) {
  long debug = query_int(ctx, "debug", 0), gc = query_int(ctx, "gc", 0);
  if (debug < 0 || gc < 0)
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "debug and gc must be small integers", 0);
  if (gc > 0)
    gc_collect(srv_worker_mutator(ctx->worker));
  int64_t rate = gc_mem_profile_rate();
  hvec_t h = {0};
  gc_memprof_read(copy_record, &h);
  pprof_t *p = pprof_new();
  if (h.oom || !p) {
    free(h.v);
    pprof_free(p);
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  }
  if (debug > 0) {
    char *body = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&body, &n);
    if (f) {
      heap_text(f, p, &h, rate);
      fclose(f);
    }
    free(h.v);
    pprof_free(p);
    if (!f)
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    return send_owned(ctx, r, MHD_HTTP_OK, body, n,
                      "text/plain; charset=utf-8", NULL);
  }
  pprof_sample_type(p, "alloc_objects", "count");
  pprof_sample_type(p, "alloc_space", "bytes");
  pprof_sample_type(p, "inuse_objects", "count");
  pprof_sample_type(p, "inuse_space", "bytes");
  pprof_default_sample_type(p, allocs ? "alloc_space" : "inuse_space");
  pprof_period(p, "space", "bytes", rate);
  pprof_time(p, (int64_t)bc_now_real_ns(), 0);
  for (size_t i = 0; i < h.n; i++) {
    gc_memprof_record_t *rec = &h.v[i].r;
    int64_t v[4];
    scale(rec->alloc_objects, rec->alloc_bytes, rate, &v[0], &v[1]);
    scale(rec->alloc_objects - rec->free_objects,
          rec->alloc_bytes - rec->free_bytes, rate, &v[2], &v[3]);
    pprof_sample_begin(p);
    pprof_sample_stack(p, rec->stack, rec->nstack, false);
    pprof_sample_values(p, v, 4);
    pprof_sample_labels(p, rec->labels);
    if (rec->alloc_objects)
      pprof_sample_num_label(p, "bytes",
                             (int64_t)(rec->alloc_bytes / rec->alloc_objects),
                             NULL);
    pprof_sample_end(p);
  }
  free(h.v);
  return send_proto(ctx, r, p, allocs ? "allocs" : "heap");
}

/* ---- requests ------------------------------------------------------------------------ */

static void fmt_dur(char *buf, size_t cap, uint64_t ns) {
  snprintf(buf, cap, "%.3fs", (double)ns / 1e9);
}

static enum MHD_Result requests(srv_ctx_t *ctx, req_t *r) {
  long debug = query_int(ctx, "debug", 0);
  if (debug < 0)
    return api__error(ctx, API_ERR_BAD_REQUEST, "debug must be 0 or 1", 0);
  size_t cap = 256, n;
  srv_request_info_t *v = NULL;
  for (int tries = 0; tries < 3; tries++) {
    free(v);
    v = malloc(cap * sizeof(*v));
    if (!v)
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    n = srv_requests_snapshot(v, cap);
    if (n <= cap)
      break;
    cap = n + 64 < 100000 ? n + 64 : 100000;
  }
  if (n > cap)
    n = cap;
  uint64_t now = bc_now_mono_ns();
  if (debug > 0) {
    char *body = NULL;
    size_t bn = 0;
    FILE *f = open_memstream(&body, &bn);
    if (!f) {
      free(v);
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    }
    fprintf(f, "requests profile: total %zu\n", n);
    for (size_t i = 0; i < n; i++) {
      srv_request_info_t *q = &v[i];
      char age[32], dl[32] = "none";
      fmt_dur(age, sizeof(age), now - q->start_ns);
      if (q->deadline_ns)
        fmt_dur(dl, sizeof(dl), q->deadline_ns > now ? q->deadline_ns - now : 0);
      fprintf(f,
              "\nrequest %s [age %s, deadline in %s]: %s %s\n# worker %d%s "
              "route %s status %u bytes_in %llu bytes_out %llu\n",
              q->request_id, age, dl, q->method, q->path, q->worker,
              q->admin ? " (admin)" : "",
              q->admin ? "admin" : api__route_label[q->route_id < R__COUNT
                                                        ? q->route_id
                                                        : 0],
              q->status, (unsigned long long)q->bytes_in,
              (unsigned long long)q->bytes_out);
    }
    fclose(f);
    free(v);
    return send_owned(ctx, r, MHD_HTTP_OK, body, bn,
                      "text/plain; charset=utf-8", NULL);
  }
  pprof_t *p = pprof_new();
  if (!p) {
    free(v);
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  }
  pprof_sample_type(p, "requests", "count");
  pprof_sample_type(p, "age", "nanoseconds");
  pprof_default_sample_type(p, "requests");
  pprof_period(p, "requests", "count", 1);
  pprof_time(p, (int64_t)bc_now_real_ns(), 0);
  for (size_t i = 0; i < n; i++) {
    srv_request_info_t *q = &v[i];
    const char *route =
        q->admin ? "admin"
                 : api__route_label[q->route_id < R__COUNT ? q->route_id : 0];
    char frame[64], worker[16], ns[3 * NS_MAX + 1];
    snprintf(frame, sizeof(frame), "%s %s", q->method, route);
    snprintf(worker, sizeof(worker), "%d", q->worker);
    int64_t age = (int64_t)(now - q->start_ns);
    int64_t vals[2] = {1, age};
    pprof_sample_begin(p);
    pprof_sample_frame(p, frame);
    pprof_sample_frame(p, q->admin ? "bufcache.admin_request"
                                   : "bufcache.request");
    pprof_sample_values(p, vals, 2);
    pprof_sample_label(p, "method", q->method);
    pprof_sample_label(p, "route", route);
    pprof_sample_label(p, "worker", worker);
    pprof_sample_label(p, "request_id", q->request_id);
    pprof_sample_label(p, "path", q->path);
    if (!q->admin && q->route_id == R_BUFFER && namespace_of(q->path, ns))
      pprof_sample_label(p, "namespace", ns);
    pprof_sample_num_label(p, "age", age, "nanoseconds");
    if (q->deadline_ns)
      pprof_sample_num_label(
          p, "deadline_in",
          q->deadline_ns > now ? (int64_t)(q->deadline_ns - now) : 0,
          "nanoseconds");
    pprof_sample_num_label(p, "bytes_in", (int64_t)q->bytes_in, "bytes");
    pprof_sample_num_label(p, "bytes_out", (int64_t)q->bytes_out, "bytes");
    pprof_sample_num_label(p, "status", q->status, NULL);
    pprof_sample_end(p);
  }
  free(v);
  return send_proto(ctx, r, p, "requests");
}

/* ---- the CPU profile --------------------------------------------------------------- */

typedef struct cpu_state {
  uint32_t magic; /* CPU_MAGIC: r->pprof of a profile request */
  srv_ctx_t *ctx;
  srv_timer_t *timer;
  uint64_t start_ns, end_ns, start_real_ns;
  bool done;
  unsigned char *body;
  size_t n;
} cpu_state_t;

#define CPU_MAGIC 0x43505550u

static cpu_state_t *cpu_active; /* the running profile; admin thread */

static void cpu_finish(cpu_state_t *st) {
  pprof_t *p = pprof_new();
  if (p) {
    pprof_sample_type(p, "samples", "count");
    pprof_sample_type(p, "cpu", "nanoseconds");
    pprof_period(p, "cpu", "nanoseconds", 1000000000LL / PPROF_CPU_HZ);
    pprof_time(p, (int64_t)st->start_real_ns,
               (int64_t)(bc_now_mono_ns() - st->start_ns));
  }
  api__cpuprof_stop(p);
  if (p) {
    st->body = pprof_finish(p, &st->n);
    pprof_free(p);
  }
  st->done = true;
  srv_timer_free(st->timer);
  st->timer = NULL;
  cpu_active = NULL;
  MHD_resume_connection(st->ctx->conn);
  srv_worker_wake(st->ctx->worker);
}

static void cpu_tick(void *arg) {
  cpu_state_t *st = arg;
  api__cpuprof_drain();
  if (bc_now_mono_ns() >= st->end_ns)
    cpu_finish(st);
}

static enum MHD_Result profile(srv_ctx_t *ctx, req_t *r) {
  cpu_state_t *st = r->pprof;
  if (st) {
    if (!st->done)
      return MHD_YES; /* not resumed yet */
    unsigned char *body = st->body;
    st->body = NULL;
    if (!body)
      return api__error(ctx, API_ERR_OUT_OF_MEMORY,
                        "out of memory encoding the profile", 0);
    return send_owned(ctx, r, MHD_HTTP_OK, body, st->n,
                      "application/octet-stream", "profile");
  }
  long secs = query_int(ctx, "seconds", PROFILE_DEFAULT_S);
  if (secs <= 0)
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "seconds must be a whole number of seconds, 1 or more",
                      0);
  if (secs > PROFILE_MAX_S)
    secs = PROFILE_MAX_S;
  st = calloc(1, sizeof(*st));
  if (!st)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  if (api__cpuprof_start() != 0) {
    free(st);
    return api__error(ctx, API_ERR_CONFLICT,
                      "a CPU profile is already being taken; one at a time",
                      0);
  }
  st->magic = CPU_MAGIC;
  st->ctx = ctx;
  st->start_ns = bc_now_mono_ns();
  st->start_real_ns = bc_now_real_ns();
  st->end_ns = st->start_ns + (uint64_t)secs * 1000000000ull;
  st->timer = srv_timer_start(ctx->worker, 100, 100, cpu_tick, st);
  if (!st->timer) {
    api__cpuprof_stop(NULL);
    free(st);
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "shutting down", 0);
  }
  r->pprof = st;
  cpu_active = st;
  /* the server must not cut the request while it waits */
  srv_context_set_deadline(&ctx->cx, st->end_ns + 30000000000ull);
  MHD_suspend_connection(ctx->conn);
  return MHD_YES;
}

void api__pprof_stopping(srv_worker_t *w) {
  if (cpu_active && cpu_active->ctx->worker == w)
    cpu_finish(cpu_active); /* answer with what was taken so far */
}

void api__pprof_completed(srv_ctx_t *ctx) {
  req_t *r = api__req(ctx);
  if (!API_ROUTE_IS_PPROF(r->route) || !r->pprof)
    return;
  if (r->route == R_PPROF_PROFILE) {
    cpu_state_t *st = r->pprof;
    if (st == cpu_active) { /* cannot happen while suspended; be safe */
      api__cpuprof_stop(NULL);
      srv_timer_free(st->timer);
      cpu_active = NULL;
    }
    free(st->body);
    free(st);
  } else if (r->route == R_PPROF_SYMBOL) {
    sym_state_t *st = r->pprof;
    free(st->body);
    free(st);
  }
  r->pprof = NULL;
}

/* ---- dispatch ---------------------------------------------------------------------- */

enum MHD_Result api__pprof_access(srv_ctx_t *ctx, req_t *r, const char *url,
                                  const char *upload, size_t *upload_size) {
  (void)url;
  if (*upload_size) {
    if (r->route == R_PPROF_SYMBOL && r->method == M_POST)
      return symbol_upload(r, upload, upload_size);
    *upload_size = 0;
    return MHD_YES;
  }
  switch (r->route) {
  case R_PPROF_INDEX:
    return index_page(ctx, r);
  case R_PPROF_HEAP:
    return heap(ctx, r, false);
  case R_PPROF_ALLOCS:
    return heap(ctx, r, true);
  case R_PPROF_PROFILE:
    return profile(ctx, r);
  case R_PPROF_REQUESTS:
    return requests(ctx, r);
  case R_PPROF_CMDLINE:
    return cmdline(ctx, r);
  case R_PPROF_SYMBOL:
    return symbol(ctx, r);
  default:
    return api__error(ctx, API_ERR_NO_ROUTE, "no such route", 0);
  }
}
