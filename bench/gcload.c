/* gcload.c - the HTTP/1.1 load generator of bench/gc_mixed.sh.
 *
 * One thread, one epoll set, C keep-alive connections to 127.0.0.1:PORT, one
 * request in flight per connection (no pipelining). Every completed request
 * is timed (CLOCK_MONOTONIC) and counted in 1 ms buckets, so the analysis can
 * compare the request rate inside the collector's cycles with the rate
 * between them (bench/gc_analyze.py aligns the buckets with the cycles through
 * the CLOCK_REALTIME instant printed as start_unix_ns).
 *
 * Modes
 *   load   PUT keys PREFIX0000000 .. PREFIX(N-1), each once, then stop.
 *   mixed  for DURATION seconds: GET with probability G%, else PUT, each on a
 *          key drawn uniformly from [0, N) (PUTs overwrite existing keys).
 *   flood  PUT new keys PREFIX(start), PREFIX(start+1), ... until BYTES of
 *          values were sent or DURATION passed.
 *
 * Output: "key=value" summary lines on stdout; with --buckets FILE, one line
 * per millisecond: "ms completions gets puts max_latency_us errors".
 *
 *   gcload --port P [--conns 64] --mode load|mixed|flood [--keys N]
 *          [--value-size 1024] [--duration S] [--get-pct 80] [--seed 1]
 *          [--bytes B] [--start K] [--prefix k] [--buckets FILE]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_LOAD, MODE_MIXED, MODE_FLOOD };

typedef struct conn {
  int fd;
  int busy;          /* a request is in flight */
  int is_put;
  uint64_t t_send;   /* ns, monotonic */
  char *wbuf;
  size_t wlen, woff;
  char rbuf[16384];
  size_t rlen;
  int hdr_done, status, close_after;
  size_t body_left;
} conn_t;

static struct {
  uint16_t port;
  int conns;
  enum mode mode;
  uint64_t keys, start, bytes;
  size_t value_size;
  double duration;
  int get_pct;
  uint64_t seed;
  const char *prefix;
  const char *buckets_path;
} O = {.conns = 64, .mode = MODE_MIXED, .keys = 1000000, .value_size = 1024,
       .duration = 30, .get_pct = 80, .seed = 1, .prefix = "k"};

static char *value;
static int ep;
static uint64_t t_start;
static uint64_t next_key;     /* load, flood */
static uint64_t sent_bytes;   /* flood */
static int stopping;

/* statistics */
#define LAT_MAX_US 2000000
static uint32_t *lat_hist; /* by microsecond, last bucket = overflow */
static uint64_t n_done, n_get, n_put, n_err, n_conn_err, n_reconnect;
static uint64_t by_status[600];
typedef struct bucket {
  uint32_t done, gets, puts, maxlat_us, errs;
} bucket_t;
static bucket_t *buckets;
static size_t nbuckets;

static uint64_t now_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static uint64_t mono(void) { return now_ns(CLOCK_MONOTONIC); }

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int conn_open(conn_t *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(O.port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  c->fd = fd;
  c->busy = 0;
  c->rlen = 0;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
                           .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
    die("epoll_ctl");
  return 0;
}

static void conn_reopen(conn_t *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
  n_reconnect++;
  if (!stopping && conn_open(c) < 0)
    n_conn_err++;
}

/* Picks the next request; returns 0 when there is nothing more to send. */
static int build_request(conn_t *c) {
  uint64_t key;
  int put;
  switch (O.mode) {
  case MODE_LOAD:
    if (next_key >= O.keys)
      return 0;
    key = next_key++;
    put = 1;
    break;
  case MODE_FLOOD:
    if (O.bytes && sent_bytes >= O.bytes)
      return 0;
    key = O.start + next_key++;
    sent_bytes += O.value_size;
    put = 1;
    break;
  default:
    key = rnd() % O.keys;
    put = (int)(rnd() % 100) >= O.get_pct;
    break;
  }
  int n;
  if (put) {
    n = snprintf(c->wbuf, 512,
                 "PUT /v1/buffers/%s%07llu HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 "Content-Type: application/octet-stream\r\n"
                 "Content-Length: %zu\r\n\r\n",
                 O.prefix, (unsigned long long)key, O.value_size);
    memcpy(c->wbuf + n, value, O.value_size);
    c->wlen = (size_t)n + O.value_size;
  } else {
    n = snprintf(c->wbuf, 512,
                 "GET /v1/buffers/%s%07llu HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                 O.prefix, (unsigned long long)key);
    c->wlen = (size_t)n;
  }
  c->is_put = put;
  c->woff = 0;
  c->busy = 1;
  c->hdr_done = 0;
  c->rlen = 0;
  c->t_send = mono();
  return 1;
}

static void try_write(conn_t *c) {
  while (c->busy && c->woff < c->wlen) {
    ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    if (w > 0) {
      c->woff += (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    n_err++;
    conn_reopen(c);
    return;
  }
}

static void start_next(conn_t *c) {
  if (stopping || c->fd < 0)
    return;
  if (build_request(c))
    try_write(c);
}

static void complete(conn_t *c) {
  uint64_t t = mono();
  uint64_t lat_us = (t - c->t_send) / 1000;
  lat_hist[lat_us < LAT_MAX_US ? lat_us : LAT_MAX_US]++;
  n_done++;
  if (c->is_put)
    n_put++;
  else
    n_get++;
  int bad = !(c->status >= 200 && c->status < 300);
  if (c->status >= 0 && c->status < 600)
    by_status[c->status]++;
  if (bad)
    n_err++;
  size_t b = (t - t_start) / 1000000;
  if (b < nbuckets) {
    bucket_t *k = &buckets[b];
    k->done++;
    if (c->is_put)
      k->puts++;
    else
      k->gets++;
    if (lat_us > k->maxlat_us)
      k->maxlat_us = (uint32_t)lat_us;
    if (bad)
      k->errs++;
  }
  c->busy = 0;
  if (c->close_after)
    conn_reopen(c);
}

/* Parses what is in rbuf; returns 1 when a response completed. */
static int parse(conn_t *c) {
  if (!c->hdr_done) {
    char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end)
      return 0;
    size_t hlen = (size_t)(end - c->rbuf) + 4;
    c->status = -1;
    if (c->rlen >= 12 && !memcmp(c->rbuf, "HTTP/1.", 7))
      c->status = atoi(c->rbuf + 9);
    c->body_left = 0;
    c->close_after = 0;
    for (char *p = c->rbuf; p < end;) {
      char *nl = memmem(p, (size_t)(end - p), "\r\n", 2);
      if (!nl)
        nl = end;
      if (nl - p > 15 && !strncasecmp(p, "Content-Length:", 15))
        c->body_left = strtoull(p + 15, NULL, 10);
      else if (nl - p >= 17 && !strncasecmp(p, "Connection: close", 17))
        c->close_after = 1;
      p = nl + 2;
    }
    c->hdr_done = 1;
    memmove(c->rbuf, c->rbuf + hlen, c->rlen - hlen);
    c->rlen -= hlen;
  }
  size_t take = c->rlen < c->body_left ? c->rlen : c->body_left;
  c->body_left -= take;
  memmove(c->rbuf, c->rbuf + take, c->rlen - take);
  c->rlen -= take;
  return c->body_left == 0;
}

static void on_readable(conn_t *c) {
  for (;;) {
    ssize_t r = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
    if (r > 0) {
      c->rlen += (size_t)r;
      if (c->busy && c->woff == c->wlen && parse(c)) {
        int was_close = c->close_after;
        complete(c); /* reconnects if the server closes */
        start_next(c);
        if (was_close)
          return; /* the old fd is gone; the new one gets its own events */
      }
      if (c->rlen == sizeof(c->rbuf)) /* a body larger than expected */
        c->rlen = 0;
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    /* closed or reset */
    if (c->busy)
      n_err++;
    conn_reopen(c);
    start_next(c);
    return;
  }
}

static void usage(void) {
  fprintf(stderr, "usage: gcload --port P [--conns C] --mode load|mixed|flood "
                  "[--keys N] [--value-size B] [--duration S] [--get-pct G] "
                  "[--seed X] [--bytes B] [--start K] [--prefix P] "
                  "[--buckets FILE]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v)
      usage();
    i++;
    if (!strcmp(a, "--port"))
      O.port = (uint16_t)atoi(v);
    else if (!strcmp(a, "--conns"))
      O.conns = atoi(v);
    else if (!strcmp(a, "--mode"))
      O.mode = !strcmp(v, "load")    ? MODE_LOAD
               : !strcmp(v, "flood") ? MODE_FLOOD
               : !strcmp(v, "mixed") ? MODE_MIXED
                                     : (usage(), MODE_MIXED);
    else if (!strcmp(a, "--keys"))
      O.keys = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--value-size"))
      O.value_size = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--duration"))
      O.duration = atof(v);
    else if (!strcmp(a, "--get-pct"))
      O.get_pct = atoi(v);
    else if (!strcmp(a, "--seed"))
      O.seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--bytes"))
      O.bytes = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--start"))
      O.start = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--prefix"))
      O.prefix = v;
    else if (!strcmp(a, "--buckets"))
      O.buckets_path = v;
    else
      usage();
  }
  if (!O.port || O.conns < 1 || !O.keys || O.duration <= 0 ||
      O.value_size > (64u << 20))
    usage();
  rng_state = O.seed * 0x2545f4914f6cdd1dull + 1;
  value = malloc(O.value_size ? O.value_size : 1);
  for (size_t i = 0; i < O.value_size; i++)
    value[i] = (char)('a' + rnd() % 26);
  lat_hist = calloc(LAT_MAX_US + 1, sizeof(uint32_t));
  nbuckets = (size_t)(O.duration * 1000) + 10000;
  buckets = calloc(nbuckets, sizeof(bucket_t));
  if (!value || !lat_hist || !buckets)
    die("calloc");
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    die("epoll_create1");
  conn_t *cs = calloc((size_t)O.conns, sizeof(conn_t));
  if (!cs)
    die("calloc");
  uint64_t unix0 = now_ns(CLOCK_REALTIME);
  t_start = mono();
  for (int i = 0; i < O.conns; i++) {
    cs[i].wbuf = malloc(512 + O.value_size);
    if (!cs[i].wbuf || conn_open(&cs[i]) < 0)
      die("connect");
    start_next(&cs[i]);
  }
  uint64_t t_end = t_start + (uint64_t)(O.duration * 1e9);
  uint64_t t_stop = 0;
  struct epoll_event evs[256];
  for (;;) {
    uint64_t t = mono();
    if (!stopping && t >= t_end) {
      stopping = 1;
      t_stop = t;
    }
    int inflight = 0;
    if (stopping || O.mode != MODE_MIXED) {
      for (int i = 0; i < O.conns; i++)
        inflight += cs[i].busy;
      if (inflight == 0) {
        if (!t_stop)
          t_stop = mono();
        break;
      }
      if (stopping && t - t_stop > 5000000000ull)
        break; /* give up on stragglers */
    }
    int n = epoll_wait(ep, evs, 256, 10);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (c->fd < 0)
        continue;
      if (evs[i].events & EPOLLOUT)
        try_write(c);
      if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        on_readable(c);
    }
    if (!stopping && O.mode != MODE_MIXED) {
      /* load/flood end on their own: stop once nothing more is sent */
      int idle = 1;
      for (int i = 0; i < O.conns; i++)
        if (cs[i].busy)
          idle = 0;
      if (idle) {
        stopping = 1;
        t_stop = mono();
      }
    }
  }
  double secs = (double)(t_stop - t_start) / 1e9;
  /* latency percentiles */
  const double want[] = {0.50, 0.90, 0.99, 0.999};
  const char *names[] = {"p50", "p90", "p99", "p999", "max"};
  uint64_t lat[5] = {0}, acc = 0;
  size_t w = 0;
  for (size_t us = 0; us <= LAT_MAX_US; us++) {
    if (!lat_hist[us])
      continue;
    acc += lat_hist[us];
    while (w < 4 && (double)acc >= want[w] * (double)n_done)
      lat[w++] = us;
    lat[4] = us;
  }
  printf("mode=%s\nconns=%d\nstart_unix_ns=%llu\nseconds=%.3f\n",
         O.mode == MODE_LOAD ? "load" : O.mode == MODE_FLOOD ? "flood" : "mixed",
         O.conns, (unsigned long long)unix0, secs);
  printf("requests=%llu\ngets=%llu\nputs=%llu\nerrors=%llu\n"
         "conn_errors=%llu\nreconnects=%llu\nrps=%.0f\n",
         (unsigned long long)n_done, (unsigned long long)n_get,
         (unsigned long long)n_put, (unsigned long long)n_err,
         (unsigned long long)n_conn_err, (unsigned long long)n_reconnect,
         secs > 0 ? (double)n_done / secs : 0);
  if (O.mode == MODE_FLOOD)
    printf("put_bytes=%llu\n", (unsigned long long)n_put * O.value_size);
  for (int i = 0; i < 5; i++)
    printf("lat_%s_us=%llu\n", names[i], (unsigned long long)lat[i]);
  printf("status=");
  for (int s = 0; s < 600; s++)
    if (by_status[s])
      printf("%d:%llu,", s, (unsigned long long)by_status[s]);
  printf("\n");
  if (O.buckets_path) {
    FILE *f = fopen(O.buckets_path, "w");
    if (!f)
      die(O.buckets_path);
    size_t last = (size_t)(secs * 1000) + 1;
    if (last > nbuckets)
      last = nbuckets;
    fprintf(f, "# start_unix_ns %llu\n# ms done gets puts maxlat_us errs\n",
            (unsigned long long)unix0);
    for (size_t b = 0; b < last; b++)
      fprintf(f, "%zu %u %u %u %u %u\n", b, buckets[b].done, buckets[b].gets,
              buckets[b].puts, buckets[b].maxlat_us, buckets[b].errs);
    fclose(f);
  }
  return 0;
}
