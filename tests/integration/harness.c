/* harness.c - see harness.h. */
#define _GNU_SOURCE
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- checks ---------------------------------------------------------------- */

static _Atomic int g_pass, g_fail;

void harness_pass(const char *name) {
  atomic_fetch_add(&g_pass, 1);
  printf("ok   - %s\n", name);
  fflush(stdout);
}

void harness_fail(const char *file, int line, const char *name,
                  const char *fmt, ...) {
  atomic_fetch_add(&g_fail, 1);
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  printf("FAIL - %s: %s (%s:%d)\n", name, msg, file, line);
  fflush(stdout);
}

int harness_failures(void) { return atomic_load(&g_fail); }

int harness_finish(void) {
  int p = atomic_load(&g_pass), f = atomic_load(&g_fail);
  printf("%d passed, %d failed\n", p, f);
  fflush(stdout);
  return f == 0 && p > 0 ? 0 : 1;
}

/* ---- time ------------------------------------------------------------------ */

uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- the server ------------------------------------------------------------ */

/* The server's stdout goes to a file, not a pipe: a server that logs every
 * request must never block on a pipe nobody drains. */

/* Appends what the file has beyond what we read to s->out (bounded). */
static void read_out(server_t *s) {
  if (s->out_fd < 0)
    return;
  for (;;) {
    size_t room = sizeof(s->out) - 1 - s->out_len;
    if (room == 0)
      return;
    ssize_t got = read(s->out_fd, s->out + s->out_len, room);
    if (got <= 0)
      return;
    s->out_len += (size_t)got;
    s->out[s->out_len] = 0;
  }
}

/* From a line with "listening on http://HOST:PORT (tag...": the URL and the
 * port. Works for text and JSON log lines. */
static int find_listen(const char *out, const char *tag, char *url,
                       size_t urlcap, int *port) {
  const char *p = out;
  while ((p = strstr(p, "listening on http://")) != NULL) {
    const char *eol = strchr(p, '\n');
    if (!eol)
      return -1; /* line not complete yet */
    const char *u = p + strlen("listening on ");
    const char *sp = strchr(u, ' ');
    if (sp && sp < eol && strncmp(sp + 1, tag, strlen(tag)) == 0 &&
        (size_t)(sp - u) < urlcap) {
      memcpy(url, u, (size_t)(sp - u));
      url[sp - u] = 0;
      const char *colon = strrchr(url, ':');
      if (!colon)
        return -1;
      *port = atoi(colon + 1);
      return *port > 0 ? 0 : -1;
    }
    p = eol + 1;
  }
  return -1;
}

static int decode_status(int st) {
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  if (WIFSIGNALED(st))
    return 128 + WTERMSIG(st);
  return -1;
}

static void close_out(server_t *s) {
  if (s->out_fd >= 0)
    close(s->out_fd);
  s->out_fd = -1;
  if (s->out_path[0])
    unlink(s->out_path);
  s->out_path[0] = 0;
}

int server_start(server_t *s, const char *bin, const char *const *extra) {
  memset(s, 0, sizeof(*s));
  s->pid = -1;
  s->out_fd = -1;
  const char *argv[64];
  int argc = 0;
  argv[argc++] = bin;
  argv[argc++] = "--listen";
  argv[argc++] = "127.0.0.1:0";
  argv[argc++] = "--admin-listen";
  argv[argc++] = "127.0.0.1:0";
  for (int i = 0; extra && extra[i] && argc < 63; i++)
    argv[argc++] = extra[i];
  argv[argc] = NULL;

  snprintf(s->out_path, sizeof(s->out_path), "/tmp/bufcache-ctest.XXXXXX");
  int wfd = mkostemp(s->out_path, O_CLOEXEC);
  if (wfd < 0) {
    perror("mkostemp");
    s->out_path[0] = 0;
    return -1;
  }
  s->out_fd = open(s->out_path, O_RDONLY | O_CLOEXEC);
  if (s->out_fd < 0) {
    perror("open");
    close(wfd);
    close_out(s);
    return -1;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    close(wfd);
    close_out(s);
    return -1;
  }
  if (pid == 0) {
    /* if the test dies (a sanitizer abort in a client thread), the server
     * gets SIGTERM instead of living on with the test's stdout open, which
     * would hold ctest until its timeout */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    dup2(wfd, STDOUT_FILENO); /* dup2 clears FD_CLOEXEC on fd 1 */
    execv(bin, (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
    _exit(127);
  }
  close(wfd);
  s->pid = pid;

  uint64_t deadline = now_ms() + 30000; /* sanitizer builds start slowly */
  while (now_ms() < deadline) {
    read_out(s);
    if (find_listen(s->out, "(data", s->data, sizeof(s->data),
                    &s->data_port) == 0 &&
        find_listen(s->out, "(admin)", s->admin, sizeof(s->admin),
                    &s->admin_port) == 0)
      return 0;
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      read_out(s);
      fprintf(stderr, "server exited early (status %d); stdout:\n%s\n",
              decode_status(st), s->out);
      s->pid = -1;
      close_out(s);
      return -1;
    }
    sleep_ms(20);
  }
  fprintf(stderr, "server did not print its addresses in 30 s; stdout:\n%s\n",
          s->out);
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = -1;
  close_out(s);
  return -1;
}

int server_signal(server_t *s, int sig) {
  if (s->pid <= 0)
    return -1;
  return kill(s->pid, sig);
}

int server_wait(server_t *s, int timeout_ms) {
  if (s->pid <= 0)
    return -1;
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) {
      s->pid = -1;
      return decode_status(st);
    }
    if (r < 0 && errno != EINTR)
      return -1;
    if (now_ms() >= deadline)
      return -2;
    sleep_ms(10);
  }
}

/* Prints the server's log lines after its start, leaving out the access log
 * (lines with "msg":"request"); at most 40. */
static void print_log_tail(server_t *s) {
  if (!s->out_path[0])
    return;
  FILE *f = fopen(s->out_path, "r");
  if (!f)
    return;
  char line[2048];
  int n = 0;
  bool listening = false;
  while (fgets(line, sizeof(line), f) && n < 40) {
    if (!listening) {
      listening = strstr(line, "(admin)") != NULL;
      continue;
    }
    if (strstr(line, "\"msg\":\"request\""))
      continue;
    if (n++ == 0)
      printf("# server log after start (access log left out):\n");
    printf("#   %s", line);
    if (!strchr(line, '\n'))
      printf("\n");
  }
  fclose(f);
}

int server_stop(server_t *s, int timeout_ms) {
  if (s->pid <= 0) {
    close_out(s);
    return -1;
  }
  kill(s->pid, SIGTERM);
  int rc = server_wait(s, timeout_ms);
  if (rc == -2) {
    fprintf(stderr, "server did not exit %d ms after SIGTERM: SIGKILL\n",
            timeout_ms);
    kill(s->pid, SIGKILL);
    int st;
    waitpid(s->pid, &st, 0);
    s->pid = -1;
    rc = -3; /* never confuse with a clean exit */
  }
  print_log_tail(s);
  close_out(s);
  return rc;
}

/* ---- HTTP ------------------------------------------------------------------ */

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  resp_t *r = ud;
  size_t len = sz * n;
  if (r->len + len + 1 > r->cap) {
    size_t ncap = r->cap ? r->cap : 4096;
    while (ncap < r->len + len + 1)
      ncap *= 2;
    unsigned char *nb = realloc(r->body, ncap);
    if (!nb)
      return 0;
    r->body = nb;
    r->cap = ncap;
  }
  memcpy(r->body + r->len, p, len);
  r->len += len;
  r->body[r->len] = 0;
  return len;
}

static void header_value(const char *line, size_t len, const char *name,
                         char *out, size_t cap) {
  size_t nl = strlen(name);
  if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
    return;
  const char *v = line + nl + 1;
  const char *end = line + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  size_t vl = (size_t)(end - v);
  if (vl >= cap)
    vl = cap - 1;
  memcpy(out, v, vl);
  out[vl] = 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  resp_t *r = ud;
  size_t len = sz * n;
  if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
    /* a new header block (after a 100 Continue, say): start over */
    r->etag[0] = r->ctype[0] = r->allow[0] = r->cache_control[0] = 0;
    r->content_length = -1;
    return len;
  }
  header_value(p, len, "ETag", r->etag, sizeof(r->etag));
  header_value(p, len, "Content-Type", r->ctype, sizeof(r->ctype));
  header_value(p, len, "Allow", r->allow, sizeof(r->allow));
  header_value(p, len, "Cache-Control", r->cache_control,
               sizeof(r->cache_control));
  char cl[32] = "";
  header_value(p, len, "Content-Length", cl, sizeof(cl));
  if (cl[0])
    r->content_length = strtoll(cl, NULL, 10);
  return len;
}

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_global(void) { curl_global_init(CURL_GLOBAL_ALL); }

int http_init(http_t *h) {
  pthread_once(&g_curl_once, curl_global);
  h->curl = curl_easy_init();
  h->timeout_ms = 20000;
  return h->curl ? 0 : -1;
}

void http_cleanup(http_t *h) {
  if (h->curl)
    curl_easy_cleanup(h->curl);
  h->curl = NULL;
}

void resp_free(resp_t *r) {
  free(r->body);
  memset(r, 0, sizeof(*r));
}

long http_do(http_t *h, const char *method, const char *base, const char *path,
             const void *body, size_t len, const char *ctype, resp_t *r) {
  CURL *c = h->curl;
  unsigned char *keep = r->body;
  size_t keepcap = r->cap;
  memset(r, 0, sizeof(*r));
  r->body = keep;
  r->cap = keepcap;
  if (r->body)
    r->body[0] = 0;
  r->content_length = -1;

  char url[2048];
  snprintf(url, sizeof(url), "%s%s", base, path);
  curl_easy_reset(c); /* keeps the live connection */
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, h->timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never a proxy: loopback only */
  struct curl_slist *hdrs = NULL;
  hdrs = curl_slist_append(hdrs, "Expect:");
  char cth[300];
  if (body || !strcmp(method, "PUT") || !strcmp(method, "POST")) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : (const void *)"");
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (ctype)
      snprintf(cth, sizeof(cth), "Content-Type: %s", ctype);
    else
      snprintf(cth, sizeof(cth), "Content-Type:"); /* send none */
    hdrs = curl_slist_append(hdrs, cth);
  } else if (!strcmp(method, "HEAD")) {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    if (strcmp(method, "GET") != 0)
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  CURLcode rc = curl_easy_perform(c);
  r->curl_rc = (int)rc;
  if (rc == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  } else {
    if (!r->err[0])
      snprintf(r->err, sizeof(r->err), "%s", curl_easy_strerror(rc));
    r->status = 0;
  }
  curl_slist_free_all(hdrs);
  if (!r->body) { /* never leave body NULL: callers may strstr it */
    r->body = calloc(1, 1);
    r->cap = r->body ? 1 : 0;
  }
  return r->status;
}

long long json_int(const char *json, const char *name) {
  if (!json)
    return -1;
  char pat[128];
  snprintf(pat, sizeof(pat), "\"%s\":", name);
  const char *p = strstr(json, pat);
  if (!p)
    return -1;
  p += strlen(pat);
  while (*p == ' ')
    p++;
  if (*p < '0' || *p > '9')
    return -1;
  return strtoll(p, NULL, 10);
}

long memstats(http_t *h, const server_t *s, resp_t *r) {
  return http_do(h, "GET", s->admin, "/debug/memstats", NULL, 0, NULL, r);
}
