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
  if (level < L.level)
    return;
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

void srv__access_log(srv_worker_t *w, const srv_ctx_t *c, uint64_t now_ns) {
  if (sizeof(w->logbuf) - w->logbuf_len < 1024) {
    /* parked: the write may block on a slow stdout reader, and roots are
     * consistent here (called from the completion callback) */
    gc_mutator_park(w->mut);
    srv__access_flush(w);
    gc_mutator_unpark(w->mut);
  }
  char *p = w->logbuf + w->logbuf_len;
  size_t cap = sizeof(w->logbuf) - w->logbuf_len, n = 0;
  char ts[40];
  format_time(ts, sizeof(ts));
  uint64_t us = (now_ns - c->start_ns) / 1000;
  const char *cause = c->cx.cause != SRV_CAUSE_COMPLETED && c->cx.cause <
                                                                SRV_CAUSE__COUNT
                          ? cause_names[c->cx.cause]
                          : NULL;
  if (L.json) {
    n += (size_t)snprintf(p + n, cap - n,
                          "{\"time\":\"%s\",\"level\":\"info\",\"msg\":"
                          "\"request\",\"method\":\"",
                          ts);
    n += put_escaped(p + n, cap - n, c->log_method, strlen(c->log_method));
    n += (size_t)snprintf(p + n, cap - n, "\",\"path\":\"");
    n += put_escaped(p + n, cap - n, c->log_path, c->log_path_len);
    n += (size_t)snprintf(
        p + n, cap - n,
        "%s\",\"status\":%u,\"bytes_in\":%llu,\"bytes_out\":%llu,"
        "\"duration_us\":%llu,\"worker\":%d,\"request_id\":\"",
        c->log_path_truncated ? "..." : "", c->status,
        (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
        (unsigned long long)us, w->id);
    n += put_escaped(p + n, cap - n, c->request_id, strlen(c->request_id));
    n += (size_t)snprintf(p + n, cap - n, "\"%s%s%s}\n",
                          cause ? ",\"cause\":\"" : "", cause ? cause : "",
                          cause ? "\"" : "");
  } else {
    n += (size_t)snprintf(p + n, cap - n, "%s info  request method=%s path=",
                          ts, c->log_method);
    n += put_escaped(p + n, cap - n, c->log_path, c->log_path_len);
    n += (size_t)snprintf(
        p + n, cap - n,
        "%s status=%u bytes_in=%llu bytes_out=%llu duration_us=%llu "
        "worker=%d request_id=%s%s%s\n",
        c->log_path_truncated ? "..." : "", c->status,
        (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
        (unsigned long long)us, w->id, c->request_id,
        cause ? " cause=" : "", cause ? cause : "");
  }
  if (n >= cap) /* cannot happen with 1 KiB of room; keep the line whole */
    n = 0;
  w->logbuf_len += n;
}
