/* log.c - structured logs on stdout: one JSON object per line (or a text
 * line for a terminal), and the access log.
 *
 * Event logs are rare (start-up, drain, errors, GC cycles at debug level):
 * they are built with jansson and written with one write(2) under a mutex.
 * The access log is hot: each worker formats its lines by hand into its own
 * buffer (no allocation) and flushes the buffer once per loop iteration, or
 * when it fills, so a busy worker makes one write(2) for many requests.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server_internal.h"

static struct {
  enum srv_log_level level;
  bool json;
  pthread_mutex_t mu; /* serialises write(2)s of whole lines */
} L = {SRV_LOG_INFO, true, PTHREAD_MUTEX_INITIALIZER};

static const char *level_names[] = {"debug", "info", "warn", "error", "info"};

void srv_log_configure(enum srv_log_level level, bool json) {
  L.level = level;
  L.json = json;
}

bool srv_log_enabled(enum srv_log_level level) { return level >= L.level; }

static void write_all(const char *p, size_t n) {
  pthread_mutex_lock(&L.mu);
  while (n) {
    ssize_t w = write(STDOUT_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      break; /* stdout gone: nothing sensible to do */
    }
    p += w;
    n -= (size_t)w;
  }
  pthread_mutex_unlock(&L.mu);
}

/* RFC 3339 with microseconds, UTC: 2026-11-25T21:50:00.123456Z (28 bytes) */
static size_t format_time(char *buf, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(buf + n, cap - n, ".%06ldZ", ts.tv_nsec / 1000);
  return n;
}

void srv_logv(enum srv_log_level level, const char *msg, const char *fields,
              va_list ap) {
  if (level < L.level) {
    /* "o" hands a reference over: take it even when nothing is logged, or
     * the object leaks (LeakSanitizer saw the configuration's at
     * --log-level warn) */
    if (fields && strchr(fields, 'o'))
      json_decref(json_vpack_ex(NULL, 0, fields, ap));
    return;
  }
  char ts[40];
  format_time(ts, sizeof(ts));
  json_t *f = NULL;
  if (fields) {
    json_error_t err;
    f = json_vpack_ex(&err, 0, fields, ap);
  }
  char *line = NULL;
  if (L.json) {
    json_t *o = json_pack("{s:s,s:s,s:s}", "time", ts, "level",
                          level_names[level], "msg", msg);
    if (o && f)
      json_object_update(o, f);
    line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
  } else {
    char *fs = NULL;
    size_t flen = 0;
    FILE *mf = open_memstream(&fs, &flen);
    if (mf) {
      const char *k;
      json_t *v;
      if (f)
        json_object_foreach(f, k, v) {
          if (json_is_string(v))
            fprintf(mf, " %s=%s", k, json_string_value(v));
          else {
            char *vs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            fprintf(mf, " %s=%s", k, vs ? vs : "?");
            free(vs);
          }
        }
      fclose(mf);
    }
    size_t n = strlen(ts) + strlen(msg) + flen + 16;
    line = malloc(n);
    if (line)
      snprintf(line, n, "%s %-5s %s%s", ts, level_names[level], msg,
               fs ? fs : "");
    free(fs);
  }
  json_decref(f);
  if (!line)
    return;
  size_t n = strlen(line);
  line[n] = '\n'; /* json_dumps and our malloc leave room for the NUL */
  write_all(line, n + 1);
  free(line);
}

void srv_log(enum srv_log_level level, const char *msg, const char *fields,
             ...) {
  va_list ap;
  va_start(ap, fields);
  srv_logv(level, msg, fields, ap);
  va_end(ap);
}

/* ---- the access log ----------------------------------------------------- */

/* Appends s as the inside of a JSON string (or raw, for text). Bytes that
 * are not printable ASCII are escaped, so the line stays valid UTF-8. */
static size_t put_escaped(char *out, size_t cap, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (size_t i = 0; i < n && o + 6 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      out[o++] = '\\';
      out[o++] = 'u';
      out[o++] = '0';
      out[o++] = '0';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    } else {
      out[o++] = (char)c;
    }
  }
  return o;
}

void srv__access_flush(srv_worker_t *w) {
  if (w->logbuf_len) {
    write_all(w->logbuf, w->logbuf_len);
    w->logbuf_len = 0;
  }
}

static const char *cause_names[] = {"", "completed", "client_gone", "deadline",
                                    "shutdown"};

/* Appenders for the hot path: no snprintf, no allocation. */
static inline char *put_lit(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}
#define PUT(p, lit) put_lit((p), (lit), sizeof(lit) - 1)

static inline char *put_u64(char *p, uint64_t v) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n)
    *p++ = tmp[--n];
  return p;
}

/* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ": the seconds part is formatted once per
 * second per worker, the microseconds by hand. */
static char *put_time(srv_worker_t *w, char *p) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != w->log_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(w->log_ts, sizeof(w->log_ts), "%Y-%m-%dT%H:%M:%S", &tm);
    w->log_sec = ts.tv_sec;
  }
  p = put_lit(p, w->log_ts, 19);
  *p++ = '.';
  long us = ts.tv_nsec / 1000;
  for (int i = 5; i >= 0; i--) {
    p[i] = (char)('0' + us % 10);
    us /= 10;
  }
  p += 6;
  *p++ = 'Z';
  return p;
}

void srv__access_log(srv_worker_t *w, const srv_ctx_t *c, uint64_t now_ns) {
  /* a line is at most about 2.3 KiB (escaping can grow the path and the ID
   * up to 6x): flush, parked, when less than 4 KiB is left. The write may
   * block on a slow stdout reader; roots are consistent here (called from
   * the completion callback). */
  if (sizeof(w->logbuf) - w->logbuf_len < 4096) {
    gc_mutator_park(w->mut);
    srv__access_flush(w);
    gc_mutator_unpark(w->mut);
  }
  char *p0 = w->logbuf + w->logbuf_len, *p = p0;
  const size_t room = 4096;
  uint64_t us = (now_ns - c->start_ns) / 1000;
  const char *cause = c->cx.cause != SRV_CAUSE_COMPLETED &&
                              c->cx.cause < SRV_CAUSE__COUNT
                          ? cause_names[c->cx.cause]
                          : NULL;
  bool json = L.json;
  if (json) {
    p = PUT(p, "{\"time\":\"");
    p = put_time(w, p);
    p = PUT(p, "\",\"level\":\"info\",\"msg\":\"request\",\"method\":\"");
  } else {
    p = put_time(w, p);
    p = PUT(p, " info  request method=");
  }
  p += put_escaped(p, room, c->log_method, strlen(c->log_method));
  p = json ? PUT(p, "\",\"path\":\"") : PUT(p, " path=");
  p += put_escaped(p, room, c->log_path, c->log_path_len);
  if (c->log_path_truncated)
    p = PUT(p, "...");
  p = json ? PUT(p, "\",\"status\":") : PUT(p, " status=");
  p = put_u64(p, c->status);
  p = json ? PUT(p, ",\"bytes_in\":") : PUT(p, " bytes_in=");
  p = put_u64(p, c->bytes_in);
  p = json ? PUT(p, ",\"bytes_out\":") : PUT(p, " bytes_out=");
  p = put_u64(p, c->bytes_out);
  p = json ? PUT(p, ",\"duration_us\":") : PUT(p, " duration_us=");
  p = put_u64(p, us);
  p = json ? PUT(p, ",\"worker\":") : PUT(p, " worker=");
  p = put_u64(p, (uint64_t)w->id);
  p = json ? PUT(p, ",\"request_id\":\"") : PUT(p, " request_id=");
  p += put_escaped(p, room, c->request_id, strlen(c->request_id));
  if (json)
    *p++ = '"';
  if (cause) {
    p = json ? PUT(p, ",\"cause\":\"") : PUT(p, " cause=");
    p = put_lit(p, cause, strlen(cause));
    if (json)
      *p++ = '"';
  }
  if (json)
    *p++ = '}';
  *p++ = '\n';
  w->logbuf_len += (size_t)(p - p0);
}
