/* dashboard.c - the live dashboard on the admin listener (statsviz's idea,
 * served from the binary):
 *
 *   GET /debug/dashboard         one self-contained page: HTML, CSS and JS
 *                                from api/dashboard/, inlined and embedded at
 *                                build time (api/dashboard/embed.cmake)
 *   GET /debug/dashboard/info    the static figures the page draws with (size
 *                                classes, bucket bounds, limits); the page's
 *                                token check
 *   GET /debug/dashboard/events  Server-Sent Events: one JSON sample a second
 *
 * Streams
 *   Each stream is a chunked MHD response (MHD_SIZE_UNKNOWN) whose reader
 *   hands out what the stream has buffered. With nothing buffered the reader
 *   suspends the connection and returns 0: in external epoll mode MHD would
 *   call a reader that returns 0 again at once, a busy loop. One ticker on
 *   the admin loop builds each second's sample once (jansson), appends it to
 *   every stream and resumes the suspended ones; in external mode
 *   MHD_resume_connection wakes nothing (pitfall 3), so srv_worker_wake runs
 *   MHD on the loop's next iteration. Between ticks an idle stream costs
 *   nothing: no timer, no syscall. The ticker runs only while a stream is
 *   open. Everything here runs on the admin thread: no lock.
 *
 * Ending
 *   A stream's request has no deadline (it would cut the stream). MHD does
 *   not see a suspended client's disconnect (pitfall 4), so every tick peeks
 *   at each suspended stream's socket: EOF or an error marks it gone, the
 *   resumed reader answers END_WITH_ERROR, MHD closes the connection and the
 *   server counts the request as "client gone". A client that stays but stops
 *   reading is cut the same way once it is DASH_MAX_BACKLOG behind. On
 *   shutdown the stopping hook resumes every stream with a last "bye" event
 *   and the reader ends it (before MHD_stop_daemon, which must not meet a
 *   suspended connection). The response's free callback frees the stream.
 *
 * History
 *   The last DASH_HISTORY samples (5 minutes) are kept while streams come
 *   and go, so a page that opens (or reconnects: Last-Event-ID) draws the
 *   recent past at once. Each event's id is "<boot>-<seq>"; a page that
 *   sees another boot id starts over.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api_internal.h"

#define A api__state

#define DASH_PERIOD_MS 1000
#define DASH_HISTORY 300                /* samples: the page's window */
#define DASH_MAX_BACKLOG (1u << 20)     /* bytes a client may lag behind */
#define DASH_MAX_PAUSES 64              /* per sample; the histogram has all */
#define DASH_RETRY_MS 2000              /* EventSource's reconnection delay */

/* the page, inlined by api/dashboard/embed.cmake */
extern const unsigned char api__dashboard_html[];
extern const size_t api__dashboard_html_len;

typedef struct stream {
  struct stream *prev, *next;
  struct MHD_Connection *conn;
  char *buf;
  size_t off, len, cap; /* buffered bytes: buf[off, len) */
  bool suspended, gone, closing;
} stream_t;

typedef struct readings {
  uint64_t mono_ns, cpu_ns;
  uint64_t total_alloc, mallocs, num_gc;
  uint64_t class_mallocs[GC_MAX_CLASSES];
  cache_stats_t cache;
  srv_stats_t srv;
  api_req_totals_t req;
} readings_t;

static struct {
  srv_worker_t *worker; /* the admin worker, once a stream opened */
  stream_t *streams;
  int nstreams;
  bool ticking, stopping;
  struct MHD_Response *page_ok, *page_401;
  char boot[9];
  uint64_t seq;
  /* the history ring: event texts, oldest at (head - count) */
  char *ring[DASH_HISTORY];
  size_t ring_len[DASH_HISTORY];
  uint64_t ring_seq[DASH_HISTORY];
  unsigned ring_head, ring_count;
  /* scratch, and the previous tick's readings */
  api_memstats_t *ms;
  readings_t *prev, *cur;
  bool have_prev;
} D;

/* ---- streams ------------------------------------------------------------- */

/* Buffers text for s; false when s is too far behind (then it is gone). */
static bool stream_append(stream_t *s, const char *text, size_t n) {
  if (s->off == s->len)
    s->off = s->len = 0;
  if (s->len - s->off + n > DASH_MAX_BACKLOG)
    return false;
  if (s->len + n > s->cap && s->off) {
    memmove(s->buf, s->buf + s->off, s->len - s->off);
    s->len -= s->off;
    s->off = 0;
  }
  if (s->len + n > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + n)
      cap *= 2;
    char *p = realloc(s->buf, cap);
    if (!p)
      return false;
    s->buf = p;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, text, n);
  s->len += n;
  return true;
}

static int stream_fd(const stream_t *s) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  return ci ? ci->connect_fd : -1;
}

/* Has the client of a suspended stream gone? (MHD cannot tell while the
 * connection is suspended.) A byte waiting is not an end: only EOF or an
 * error. */
static bool peer_gone(const stream_t *s) {
  int fd = stream_fd(s);
  if (fd < 0)
    return true;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 ||
         (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void stream_resume(stream_t *s) {
  if (s->suspended) {
    s->suspended = false;
    MHD_resume_connection(s->conn);
  }
}

/* Cuts a stream: a suspended one is resumed and its reader answers
 * END_WITH_ERROR; one that MHD is writing (a client that stopped reading)
 * gets its socket shut down, which MHD sees as an error on its next run.
 * Either way MHD ends the request and the server counts "client gone". */
static void stream_cut(stream_t *s) {
  s->gone = true;
  if (s->suspended) {
    stream_resume(s);
  } else {
    int fd = stream_fd(s);
    if (fd >= 0)
      shutdown(fd, SHUT_RDWR);
  }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  stream_t *s = cls;
  if (s->gone)
    return MHD_CONTENT_READER_END_WITH_ERROR;
  if (s->off < s->len) {
    size_t n = s->len - s->off;
    if (n > max)
      n = max;
    memcpy(buf, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
  }
  if (s->closing)
    return MHD_CONTENT_READER_END_OF_STREAM;
  /* nothing to send until the next tick: leave MHD's event loop */
  MHD_suspend_connection(s->conn);
  s->suspended = true;
  return 0;
}

static void stream_free(void *cls) {
  stream_t *s = cls;
  if (s->prev)
    s->prev->next = s->next;
  else
    D.streams = s->next;
  if (s->next)
    s->next->prev = s->prev;
  D.nstreams--;
  free(s->buf);
  free(s);
  if (D.nstreams == 0 && D.ticking) {
    srv_worker_ticker_stop(D.worker);
    D.ticking = false;
  }
}

/* ---- readings and the sample --------------------------------------------- */

static void take_readings(readings_t *r) {
  api__read_memstats(D.ms);
  const gc_stats_t *g = &D.ms->gc;
  r->mono_ns = bc_now_mono_ns();
  r->cpu_ns = bc_process_cpu_ns();
  r->total_alloc = g->total_alloc;
  r->mallocs = g->mallocs;
  r->num_gc = g->num_gc;
  for (int c = 0; c < GC_MAX_CLASSES; c++)
    r->class_mallocs[c] = c < g->nclasses ? g->by_size[c].mallocs : 0;
  r->cache = D.ms->cache;
  r->srv = D.ms->srv;
  api__read_req_totals(&r->req);
}

#define U(v) json_integer((json_int_t)(v))

/* A per-second rate of a counter's growth since the previous reading. */
static json_t *rate(uint64_t now, uint64_t before, double dt) {
  return json_real(now >= before ? (double)(now - before) / dt : 0.0);
}

/* Quantile q of the requests that finished in the interval, in us, from
 * the latency buckets' growth (linear within a bucket, as Prometheus's
 * histogram_quantile); null without requests. */
static json_t *quantile_us(const uint64_t *d, uint64_t count, double q) {
  if (!count)
    return json_null();
  double target = q * (double)count, cum = 0;
  for (int i = 0; i <= API_LAT_BUCKETS; i++) {
    if (cum + (double)d[i] >= target && d[i]) {
      if (i == API_LAT_BUCKETS) /* past the last bound: say the bound */
        return json_real((double)api__lat_bound_ns[i - 1] / 1e3);
      double lo = i ? (double)api__lat_bound_ns[i - 1] : 0;
      double hi = (double)api__lat_bound_ns[i];
      return json_real((lo + (hi - lo) * (target - cum) / (double)d[i]) /
                       1e3);
    }
    cum += (double)d[i];
  }
  return json_null();
}

static json_t *build_sample(const readings_t *c, const readings_t *p) {
  const gc_stats_t *g = &D.ms->gc;
  double dt = (double)(c->mono_ns - p->mono_ns) / 1e9;
  if (dt <= 0)
    dt = 1e-3;
  json_t *o = json_object();
  json_object_set_new(o, "seq", U(D.seq));
  json_object_set_new(o, "t", U(bc_now_real_ns() / 1000000u));
  json_object_set_new(o, "dt", json_real(dt));

  json_object_set_new(
      o, "heap",
      json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "inuse",
                (json_int_t)g->heap_inuse, "idle", (json_int_t)g->heap_idle,
                "released", (json_int_t)g->heap_released, "alloc",
                (json_int_t)g->alloc, "sys", (json_int_t)D.ms->sys, "goal",
                (json_int_t)g->next_gc, "limit", (json_int_t)g->memory_limit,
                "live", (json_int_t)g->heap_live, "objects",
                (json_int_t)g->heap_objects));

  /* the pauses of the cycles that ended since the last sample, newest
   * last: [end (Unix ms), pause (ns, both stop-the-world phases)] */
  json_t *pauses = json_array();
  uint64_t first = p->num_gc + 1;
  if (c->num_gc - p->num_gc > DASH_MAX_PAUSES)
    first = c->num_gc - DASH_MAX_PAUSES + 1;
  for (uint64_t k = first; k <= c->num_gc; k++) {
    unsigned i = (unsigned)((k - 1) % GC_PAUSE_RING);
    json_array_append_new(pauses,
                          json_pack("[I,I]",
                                    (json_int_t)(g->pause_end[i] / 1000000u),
                                    (json_int_t)g->pause_ns[i]));
  }
  json_t *hist = json_array();
  for (int i = 0; i <= GC_PAUSE_BUCKETS; i++)
    json_array_append_new(hist, U(g->pause_hist[i]));
  double cpu = (double)(c->cpu_ns - p->cpu_ns) / 1e9 / dt;
  json_object_set_new(
      o, "gc",
      json_pack("{s:I,s:I,s:f,s:i,s:o,s:o,s:f}", "num", (json_int_t)g->num_gc,
                "forced", (json_int_t)g->num_forced_gc, "cpu_fraction",
                g->gc_cpu_fraction, "percent", g->gc_percent, "pauses", pauses,
                "hist", hist, "process_cpu", cpu));

  /* allocations per second by size class; [0] is large objects (their own
   * span each), which BySize does not count */
  json_t *classes = json_array();
  uint64_t small = 0;
  for (int k = 1; k < g->nclasses; k++)
    small += c->class_mallocs[k] - p->class_mallocs[k];
  uint64_t all = c->mallocs - p->mallocs;
  json_array_append_new(classes,
                        json_real(all > small ? (double)(all - small) / dt : 0));
  for (int k = 1; k < g->nclasses; k++)
    json_array_append_new(classes,
                          rate(c->class_mallocs[k], p->class_mallocs[k], dt));
  json_object_set_new(
      o, "alloc",
      json_pack("{s:o,s:o,s:o}", "bytes", rate(c->total_alloc, p->total_alloc, dt),
                "objects", rate(c->mallocs, p->mallocs, dt), "classes",
                classes));

  const cache_stats_t *cc = &c->cache, *pc = &p->cache;
  uint64_t hits = cc->hits - pc->hits, misses = cc->misses - pc->misses;
  json_object_set_new(
      o, "cache",
      json_pack("{s:I,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:{s:o,s:o}}", "entries",
                (json_int_t)cc->entries, "bytes", (json_int_t)cc->bytes, "mem",
                (json_int_t)cc->mem, "hit_ratio",
                hits + misses ? json_real((double)hits / (double)(hits + misses))
                              : json_null(),
                "hits", rate(cc->hits, pc->hits, dt), "misses",
                rate(cc->misses, pc->misses, dt), "inserts",
                rate(cc->inserts + cc->replaces, pc->inserts + pc->replaces, dt),
                "deletes", rate(cc->deletes, pc->deletes, dt), "evictions",
                "memory", rate(cc->evicted, pc->evicted, dt), "ttl",
                rate(cc->expired, pc->expired, dt)));

  const api_req_totals_t *cr = &c->req, *pr = &p->req;
  uint64_t d[API_LAT_BUCKETS + 1], count = 0;
  for (int i = 0; i <= API_LAT_BUCKETS; i++) {
    d[i] = cr->le[i] - pr->le[i];
    count += d[i];
  }
  const srv_stats_t *cs = &c->srv, *ps = &p->srv;
  json_object_set_new(
      o, "req",
      json_pack(
          "{s:o,s:{s:o,s:o,s:o,s:o},s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:{s:o,s:o,"
          "s:o}}",
          "rps", rate(cr->count, pr->count, dt), "methods", "GET",
          rate(cr->by_method[M_GET] + cr->by_method[M_HEAD],
               pr->by_method[M_GET] + pr->by_method[M_HEAD], dt),
          "PUT", rate(cr->by_method[M_PUT], pr->by_method[M_PUT], dt),
          "DELETE", rate(cr->by_method[M_DELETE], pr->by_method[M_DELETE], dt),
          "other",
          rate(cr->by_method[M_POST] + cr->by_method[M_OTHER],
               pr->by_method[M_POST] + pr->by_method[M_OTHER], dt),
          "err4xx", rate(cr->status_4xx, pr->status_4xx, dt), "err5xx",
          rate(cr->status_5xx, pr->status_5xx, dt), "p50_us",
          quantile_us(d, count, 0.5), "p90_us", quantile_us(d, count, 0.9),
          "p99_us", quantile_us(d, count, 0.99), "mean_us",
          count ? json_real((double)(cr->sum_ns - pr->sum_ns) / (double)count /
                            1e3)
                : json_null(),
          "inflight", (json_int_t)(cs->inflight - cs->inflight_admin),
          "canceled", "client_gone",
          rate(cs->cancels[SRV_CAUSE_CLIENT_GONE],
               ps->cancels[SRV_CAUSE_CLIENT_GONE], dt),
          "deadline",
          rate(cs->cancels[SRV_CAUSE_DEADLINE], ps->cancels[SRV_CAUSE_DEADLINE],
               dt),
          "shutdown",
          rate(cs->cancels[SRV_CAUSE_SHUTDOWN], ps->cancels[SRV_CAUSE_SHUTDOWN],
               dt)));
  /* the admin listener's own: the open streams, and how many of its
   * requests ended "client gone" so far (streams whose page went away) */
  json_object_set_new(
      o, "admin",
      json_pack("{s:i,s:I}", "streams", D.nstreams, "inflight",
                (json_int_t)cs->inflight_admin));
  json_object_set_new(o, "draining", json_boolean(srv_draining()));
  return o;
}

/* "id: <boot>-<seq>\ndata: <json>\n\n", malloc'ed. */
static char *event_text(const char *event, json_t *j, bool with_id,
                        size_t *len) {
  char *body = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
  json_decref(j);
  if (!body)
    return NULL;
  size_t n = strlen(body) + 96;
  char *t = malloc(n);
  int k = -1;
  if (t) {
    if (with_id)
      k = snprintf(t, n, "id: %s-%llu\ndata: %s\n\n", D.boot,
                   (unsigned long long)D.seq, body);
    else
      k = snprintf(t, n, "event: %s\ndata: %s\n\n", event, body);
  }
  free(body);
  if (k < 0 || (size_t)k >= n) {
    free(t);
    return NULL;
  }
  *len = (size_t)k;
  return t;
}

static void ring_push(char *text, size_t len) {
  unsigned i = D.ring_head;
  free(D.ring[i]);
  D.ring[i] = text;
  D.ring_len[i] = len;
  D.ring_seq[i] = D.seq;
  D.ring_head = (i + 1) % DASH_HISTORY;
  if (D.ring_count < DASH_HISTORY)
    D.ring_count++;
}

static void ring_clear(void) {
  for (unsigned i = 0; i < DASH_HISTORY; i++) {
    free(D.ring[i]);
    D.ring[i] = NULL;
  }
  D.ring_count = D.ring_head = 0;
}

static void on_tick(void *arg) {
  (void)arg;
  take_readings(D.cur);
  D.seq++;
  size_t len = 0;
  char *text = event_text(NULL, build_sample(D.cur, D.prev), true, &len);
  readings_t *t = D.prev;
  D.prev = D.cur;
  D.cur = t;
  bool wake = false;
  for (stream_t *s = D.streams; s; s = s->next) {
    if (s->gone || s->closing)
      continue;
    if (s->suspended && peer_gone(s)) {
      stream_cut(s);
      wake = true;
      continue;
    }
    if (text && !stream_append(s, text, len)) {
      stream_cut(s);
      wake = true;
      continue;
    }
    if (s->suspended) {
      stream_resume(s);
      wake = true;
    }
  }
  if (text)
    ring_push(text, len);
  if (wake)
    srv_worker_wake(D.worker);
}

/* ---- the routes ---------------------------------------------------------- */

static json_t *info_json(void) {
  const gc_stats_t *g = &D.ms->gc;
  json_t *classes = json_array();
  json_array_append_new(classes, U(0)); /* [0]: large objects */
  for (int c = 1; c < g->nclasses; c++)
    json_array_append_new(classes, U(g->by_size[c].size));
  json_t *pb = json_array(), *lb = json_array();
  for (int i = 0; i < GC_PAUSE_BUCKETS; i++)
    json_array_append_new(pb, U(gc_pause_bucket_ns[i]));
  for (int i = 0; i < API_LAT_BUCKETS; i++)
    json_array_append_new(lb, U(api__lat_bound_ns[i]));
  const srv_config_t *cfg = srv_config();
  return json_pack(
      "{s:s,s:i,s:i,s:o,s:o,s:o,s:I,s:i,s:i,s:i,s:i,s:b}", "boot", D.boot,
      "interval_ms", DASH_PERIOD_MS, "window_s",
      DASH_HISTORY * DASH_PERIOD_MS / 1000, "classes", classes,
      "pause_bounds_ns", pb, "lat_bounds_ns", lb, "memory_limit",
      (json_int_t)g->memory_limit, "gc_percent", g->gc_percent, "workers",
      cfg->workers, "streams", D.nstreams, "max_streams",
      cfg->max_dashboard_streams, "token_required", cfg->admin_token[0] != 0);
}

static bool init_state(void) {
  if (D.ms)
    return true;
  D.ms = malloc(sizeof(*D.ms));
  D.prev = malloc(sizeof(*D.prev));
  D.cur = malloc(sizeof(*D.cur));
  if (!D.ms || !D.prev || !D.cur) {
    free(D.ms);
    free(D.prev);
    free(D.cur);
    D.ms = NULL;
    D.prev = D.cur = NULL;
    return false;
  }
  uint32_t b;
  bc_random_bytes(&b, sizeof(b));
  snprintf(D.boot, sizeof(D.boot), "%08x", b);
  return true;
}

static struct MHD_Response *page_response(bool unauthorized) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      api__dashboard_html_len, (void *)api__dashboard_html,
      MHD_RESPMEM_PERSISTENT);
  if (!r)
    return NULL;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/html; charset=utf-8");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  /* everything is inline; the page talks to this origin only */
  MHD_add_response_header(
      r, "Content-Security-Policy",
      "default-src 'none'; script-src 'unsafe-inline'; style-src "
      "'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; "
      "form-action 'none'; frame-ancestors 'none'");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  /* the page's own URL may carry ?token= for a moment */
  MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
  if (unauthorized)
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                            "Bearer realm=\"bufcache admin\"");
  return r;
}

enum MHD_Result api__dashboard_unauthorized(srv_ctx_t *ctx) {
  if (!D.page_401 && !D.stopping)
    D.page_401 = page_response(true);
  if (!D.page_401)
    return api__error(ctx, API_ERR_UNAUTHORIZED,
                      "this listener needs Authorization: Bearer <token>", 0);
  api__req(ctx)->answered = 1;
  return api__queue_shared(ctx, MHD_HTTP_UNAUTHORIZED, D.page_401);
}

bool api__dashboard_query_token(srv_ctx_t *ctx, uint8_t route,
                                const char *token) {
  if (route != R_DASHBOARD && route != R_DASH_EVENTS)
    return false;
  /* MHD hands the query over undecoded (server/worker.c) */
  const char *v =
      MHD_lookup_connection_value(ctx->conn, MHD_GET_ARGUMENT_KIND, "token");
  if (!v)
    return false;
  char buf[512];
  long n = api_decode_query(v, strlen(v), buf, sizeof(buf));
  bool ok = n > 0 && api__token_equal(buf, (size_t)n, token, strlen(token));
  explicit_bzero(buf, sizeof(buf));
  return ok;
}

/* Where a reconnecting EventSource left off: Last-Event-ID "<boot>-<seq>"
 * of this process; 0 = send the whole history. */
static uint64_t last_event_id(srv_ctx_t *ctx) {
  const char *v =
      MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, "Last-Event-ID");
  uint64_t seq;
  if (!v || strlen(v) < sizeof(D.boot) + 1 ||
      memcmp(v, D.boot, sizeof(D.boot) - 1) != 0 ||
      v[sizeof(D.boot) - 1] != '-' ||
      bc_parse_u64(v + sizeof(D.boot), strlen(v + sizeof(D.boot)), &seq) != 0)
    return 0;
  return seq;
}

static enum MHD_Result events(srv_ctx_t *ctx) {
  const srv_config_t *cfg = srv_config();
  if (D.nstreams >= cfg->max_dashboard_streams) {
    char msg[160];
    snprintf(msg, sizeof(msg),
             "%d dashboard streams are open, the most --max-dashboard-streams "
             "allows; close one and retry",
             D.nstreams);
    return api__error_h(ctx, API_ERR_BUSY, msg, 0, "Retry-After", "5");
  }
  D.worker = ctx->worker;
  stream_t *s = calloc(1, sizeof(*s));
  if (!s)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  s->conn = ctx->conn;
  /* the reconnection delay, the static figures, then the history the
   * client has not seen */
  char retry[32];
  int rn = snprintf(retry, sizeof(retry), "retry: %d\n\n", DASH_RETRY_MS);
  bool ok = stream_append(s, retry, (size_t)rn);
  size_t len;
  char *init = event_text("init", info_json(), false, &len);
  ok = ok && init && stream_append(s, init, len);
  free(init);
  uint64_t after = last_event_id(ctx);
  for (unsigned k = 0; ok && k < D.ring_count; k++) {
    unsigned i = (D.ring_head + DASH_HISTORY - D.ring_count + k) % DASH_HISTORY;
    if (D.ring_seq[i] > after)
      ok = stream_append(s, D.ring[i], D.ring_len[i]);
  }
  if (!ok) {
    free(s->buf);
    free(s);
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  }
  struct MHD_Response *r = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
  if (!r) {
    free(s->buf);
    free(s);
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  }
  /* from here the response owns s: stream_free unlinks and frees it */
  s->next = D.streams;
  if (D.streams)
    D.streams->prev = s;
  D.streams = s;
  D.nstreams++;
  if (!D.ticking) {
    take_readings(D.prev); /* the first sample's rates start here */
    D.ticking = srv_worker_ticker_start(ctx->worker, DASH_PERIOD_MS, on_tick,
                                        NULL) == 0;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/event-stream; charset=utf-8");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* nginx: stream */
  /* a stream lasts as long as its client: no request deadline */
  srv_context_set_deadline(&ctx->cx, 0);
  enum MHD_Result rc = api__queue(ctx, MHD_HTTP_OK, r);
  MHD_destroy_response(r); /* if queueing failed, this frees s */
  return rc;
}

enum MHD_Result api__dashboard(srv_ctx_t *ctx, uint8_t route) {
  if (D.stopping) /* the admin listener is closing */
    return api__error_h(ctx, API_ERR_BUSY, "the server is stopping", 0,
                        "Retry-After", "5");
  if (!init_state())
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  switch (route) {
  case R_DASHBOARD:
    if (!D.page_ok)
      D.page_ok = page_response(false);
    if (!D.page_ok)
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    return api__queue_shared(ctx, MHD_HTTP_OK, D.page_ok);
  case R_DASH_INFO: {
    api__read_memstats(D.ms);
    json_t *j = info_json();
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct MHD_Response *r =
        body ? MHD_create_response_from_buffer(strlen(body), body,
                                               MHD_RESPMEM_MUST_FREE)
             : NULL;
    if (!r) {
      free(body);
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result rc = api__queue(ctx, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
  }
  default:
    api__read_memstats(D.ms); /* info_json's figures */
    return events(ctx);
  }
}

void api__dashboard_stopping(srv_worker_t *w) {
  (void)w;
  D.stopping = true;
  D.ticking = false; /* the server stopped the ticker */
  static const char bye[] = "event: bye\ndata: {\"reason\":\"shutdown\"}\n\n";
  for (stream_t *s = D.streams; s; s = s->next) {
    if (!s->gone && !stream_append(s, bye, sizeof(bye) - 1))
      s->gone = true;
    s->closing = true;
    stream_resume(s);
  }
  ring_clear();
  /* responses are refcounted: a connection still sending one keeps it */
  if (D.page_ok)
    MHD_destroy_response(D.page_ok);
  if (D.page_401)
    MHD_destroy_response(D.page_401);
  D.page_ok = D.page_401 = NULL;
  free(D.ms);
  free(D.prev);
  free(D.cur);
  D.ms = NULL;
  D.prev = D.cur = NULL;
}
