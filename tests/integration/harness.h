/* harness.h - shared helpers for the C integration tests (libcurl).
 *
 * A test is a main() that gets the bufcache binary as argv[1]:
 *
 *   server_t s;
 *   const char *flags[] = {"--workers", "2", NULL};
 *   if (server_start(&s, argv[1], flags) != 0) return 1;
 *   http_t h; http_init(&h);
 *   resp_t r; http_do(&h, "GET", s.data, "/healthz", NULL, 0, NULL, &r);
 *   CHECK_EQ_INT("healthz", 200, r.status);
 *   ...
 *   CHECK_EQ_INT("exit status", 0, server_stop(&s, 15000));
 *   return harness_finish();
 *
 * The server is started on port 0 on 127.0.0.1 for both listeners; its
 * addresses are parsed from the "listening on" lines it prints. It is
 * stopped by PID (SIGTERM, SIGKILL after a bounded wait). The CHECK macros
 * count passes and failures (thread-safe) and print both values on failure;
 * harness_finish() prints "N passed, M failed" and returns the exit code.
 */
#ifndef BUFCACHE_TEST_HARNESS_H
#define BUFCACHE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- checks ---------------------------------------------------------------- */

void harness_pass(const char *name);
void harness_fail(const char *file, int line, const char *name,
                  const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int harness_finish(void); /* prints "N passed, M failed"; 0 if none failed */
int harness_failures(void);

#define CHECK(name, cond)                                                      \
  do {                                                                         \
    if (cond)                                                                  \
      harness_pass(name);                                                      \
    else                                                                       \
      harness_fail(__FILE__, __LINE__, name, "condition false: %s", #cond);    \
  } while (0)

#define CHECK_EQ_INT(name, expected, actual)                                   \
  do {                                                                         \
    long long e_ = (long long)(expected), a_ = (long long)(actual);            \
    if (e_ == a_)                                                              \
      harness_pass(name);                                                      \
    else                                                                       \
      harness_fail(__FILE__, __LINE__, name, "expected %lld, got %lld", e_,    \
                   a_);                                                        \
  } while (0)

/* actual <= limit */
#define CHECK_LE_INT(name, actual, limit)                                      \
  do {                                                                         \
    long long a_ = (long long)(actual), l_ = (long long)(limit);               \
    if (a_ <= l_)                                                              \
      harness_pass(name);                                                      \
    else                                                                       \
      harness_fail(__FILE__, __LINE__, name, "expected <= %lld, got %lld",     \
                   l_, a_);                                                    \
  } while (0)

/* actual >= limit */
#define CHECK_GE_INT(name, actual, limit)                                      \
  do {                                                                         \
    long long a_ = (long long)(actual), l_ = (long long)(limit);               \
    if (a_ >= l_)                                                              \
      harness_pass(name);                                                      \
    else                                                                       \
      harness_fail(__FILE__, __LINE__, name, "expected >= %lld, got %lld",     \
                   l_, a_);                                                    \
  } while (0)

#define CHECK_EQ_STR(name, expected, actual)                                   \
  do {                                                                         \
    const char *e_ = (expected), *a_ = (actual);                               \
    if (e_ && a_ && strcmp(e_, a_) == 0)                                       \
      harness_pass(name);                                                      \
    else                                                                       \
      harness_fail(__FILE__, __LINE__, name, "expected [%s], got [%s]",        \
                   e_ ? e_ : "(null)", a_ ? a_ : "(null)");                    \
  } while (0)

/* ---- the server under test ------------------------------------------------- */

typedef struct server {
  pid_t pid;
  int out_fd;        /* read side of the file that holds its stdout */
  char out_path[64]; /* that file (the server's stdout never blocks) */
  char data[64];     /* "http://127.0.0.1:PORT" of the data listener */
  char admin[64];    /* same, admin listener */
  int data_port, admin_port;
  char out[16384];   /* the start of its stdout (NUL-terminated) */
  size_t out_len;
} server_t;

/* Starts bin --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 extra...
 * (extra is NULL-terminated, may be NULL). Waits (bounded) for both
 * "listening on" lines. 0, or -1 with a message (the child is killed). */
int server_start(server_t *s, const char *bin, const char *const *extra);

/* SIGTERM by PID; waits up to timeout_ms, then SIGKILL. Returns the exit
 * status (0..255), 128+signal if it died of a signal, -3 if it had to be
 * killed, -1 if it was not running (already reaped by server_wait; then it
 * only cleans up). Prints the log lines (not the access log) the server
 * wrote after its start. */
int server_stop(server_t *s, int timeout_ms);

/* Sends sig to the server by PID (0 on success). */
int server_signal(server_t *s, int sig);

/* Waits up to timeout_ms for the server to exit (0: just look); the exit
 * status as in server_stop, or -2 if it is still running. Once it has
 * returned a status the server is reaped: call server_stop only to clean
 * up. */
int server_wait(server_t *s, int timeout_ms);

/* ---- HTTP through libcurl -------------------------------------------------- */

typedef struct resp {
  long status;     /* 0 if the transfer failed */
  int curl_rc;     /* CURLcode */
  unsigned char *body;
  size_t len;
  size_t cap;
  char etag[80];
  char ctype[256];
  char allow[128];
  char cache_control[128];
  long long content_length; /* -1 if absent */
  char err[256];   /* curl's error text */
} resp_t;

typedef struct http {
  void *curl; /* CURL*, one per thread: keeps its connection alive */
  long timeout_ms;
} http_t;

int http_init(http_t *h);
void http_cleanup(http_t *h);
void resp_free(resp_t *r);

/* One request. base is "http://127.0.0.1:PORT", path starts with '/'.
 * body/len is the upload (PUT, POST), ctype its Content-Type (NULL: none is
 * sent). r is reset first (its body buffer is reused). Returns the status,
 * 0 on a transport error (r->err tells). */
long http_do(http_t *h, const char *method, const char *base, const char *path,
             const void *body, size_t len, const char *ctype, resp_t *r);

/* An integer field "name":N from a flat JSON text (the first occurrence);
 * -1 if absent. Good enough for memstats: its names are unique. */
long long json_int(const char *json, const char *name);

/* GET admin /debug/memstats into r; returns the status. */
long memstats(http_t *h, const server_t *s, resp_t *r);

/* ---- misc ------------------------------------------------------------------ */

uint64_t now_ms(void);
void sleep_ms(int ms);

#endif
