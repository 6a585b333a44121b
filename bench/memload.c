/* memload.c - a fast loader for bench/memory_overhead.sh: stores N values of
 * V bytes under 11-byte keys ("k" + 10 digits, sequential) into bufcache
 * (HTTP/1.1 PUT), memcached (text protocol "set") or Redis (RESP "SET"),
 * over C keep-alive connections with up to D requests in flight on each
 * (pipelining), from one thread with poll(). Every reply is read and
 * checked; the exit code is non-zero unless all N were stored.
 *
 * Usage: memload http|memcache|redis HOST PORT N [V=1024] [C=4] [D=32]
 * Only for loopback addresses (the bench scripts pass 127.0.0.1).
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum proto { HTTP, MEMCACHE, REDIS };

typedef struct conn {
  int fd;
  char *out;          /* bytes to send */
  size_t out_len, out_off, out_cap;
  char in[65536];     /* unparsed replies */
  size_t in_len;
  unsigned inflight;
} conn_t;

static enum proto proto;
static uint64_t n_total, next_key, n_ok, n_bad;
static size_t vlen;
static char *value;
static const char *host;

static void die(const char *m) {
  fprintf(stderr, "memload: %s: %s\n", m, strerror(errno));
  exit(1);
}

/* Appends one request for key i to c's output. */
static void add_request(conn_t *c, uint64_t i) {
  char key[24], head[160];
  snprintf(key, sizeof key, "k%010llu", (unsigned long long)i);
  int hl = 0;
  switch (proto) {
  case HTTP:
    hl = snprintf(head, sizeof head,
                  "PUT /v1/buffers/%s HTTP/1.1\r\nHost: %s\r\n"
                  "Content-Length: %zu\r\n\r\n",
                  key, host, vlen);
    break;
  case MEMCACHE:
    hl = snprintf(head, sizeof head, "set %s 0 0 %zu\r\n", key, vlen);
    break;
  case REDIS:
    hl = snprintf(head, sizeof head, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n",
                  strlen(key), key, vlen);
    break;
  }
  size_t need = (size_t)hl + vlen + 2;
  if (c->out_len + need > c->out_cap) {
    c->out_cap = (c->out_len + need) * 2;
    c->out = realloc(c->out, c->out_cap);
    if (!c->out)
      die("realloc");
  }
  char *o = c->out;
  memcpy(o + c->out_len, head, (size_t)hl);
  c->out_len += (size_t)hl;
  /* the value differs per key (a memcmp-friendly cache must not dedup) */
  memcpy(o + c->out_len, value, vlen);
  memcpy(o + c->out_len, key, vlen < 11 ? vlen : 11);
  c->out_len += vlen;
  if (proto != HTTP) {
    memcpy(o + c->out_len, "\r\n", 2);
    c->out_len += 2;
  }
  c->inflight++;
}

/* Parses complete replies from c->in; returns how many were consumed. */
static unsigned parse_replies(conn_t *c) {
  unsigned got = 0;
  size_t off = 0;
  for (;;) {
    char *p = c->in + off;
    size_t avail = c->in_len - off;
    if (proto == HTTP) {
      char *end = memmem(p, avail, "\r\n\r\n", 4);
      if (!end)
        break;
      size_t hlen = (size_t)(end - p) + 4, clen = 0;
      int status = avail > 12 ? atoi(p + 9) : 0;
      for (char *l = p; l < end; l++)
        if ((l == p || l[-1] == '\n') &&
            strncasecmp(l, "content-length:", 15) == 0)
          clen = strtoul(l + 15, NULL, 10);
      if (avail < hlen + clen)
        break;
      if (status == 201 || status == 204)
        n_ok++;
      else {
        n_bad++;
        if (n_bad < 5)
          fprintf(stderr, "memload: reply %.*s\n", (int)(hlen + clen), p);
      }
      off += hlen + clen;
    } else {
      char *nl = memchr(p, '\n', avail);
      if (!nl)
        break;
      size_t l = (size_t)(nl - p) + 1;
      if ((proto == MEMCACHE && l == 8 && !memcmp(p, "STORED\r\n", 8)) ||
          (proto == REDIS && l == 5 && !memcmp(p, "+OK\r\n", 5)))
        n_ok++;
      else {
        n_bad++;
        if (n_bad < 5)
          fprintf(stderr, "memload: reply %.*s", (int)l, p);
      }
      off += l;
    }
    got++;
  }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  return got;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: memload http|memcache|redis HOST PORT N "
                    "[V=1024] [C=4] [D=32]\n");
    return 2;
  }
  proto = !strcmp(argv[1], "http")       ? HTTP
          : !strcmp(argv[1], "memcache") ? MEMCACHE
          : !strcmp(argv[1], "redis")    ? REDIS
                                         : (fprintf(stderr, "bad protocol\n"),
                                            exit(2), HTTP);
  host = argv[2];
  int port = atoi(argv[3]);
  n_total = strtoull(argv[4], NULL, 10);
  vlen = argc > 5 ? strtoul(argv[5], NULL, 10) : 1024;
  unsigned nconn = argc > 6 ? (unsigned)atoi(argv[6]) : 4;
  unsigned depth = argc > 7 ? (unsigned)atoi(argv[7]) : 32;
  value = malloc(vlen + 16);
  for (size_t i = 0; i < vlen; i++)
    value[i] = (char)('a' + (i * 7 + i / 26) % 26);

  conn_t *cs = calloc(nconn, sizeof(conn_t));
  struct pollfd *pf = calloc(nconn, sizeof(struct pollfd));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "memload: HOST must be an IPv4 address\n");
    return 2;
  }
  for (unsigned i = 0; i < nconn; i++) {
    cs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
    if (cs[i].fd < 0 || connect(cs[i].fd, (struct sockaddr *)&sa, sizeof sa))
      die("connect");
    int one = 1;
    setsockopt(cs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t done = 0;
  while (done < n_total) {
    for (unsigned i = 0; i < nconn; i++) {
      conn_t *c = &cs[i];
      if (c->out_off && c->inflight < depth && next_key < n_total) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
      }
      while (c->inflight < depth && next_key < n_total)
        add_request(c, next_key++);
      pf[i].fd = c->fd;
      pf[i].events = (short)(POLLIN | (c->out_off < c->out_len ? POLLOUT : 0));
    }
    if (poll(pf, nconn, 30000) <= 0)
      die("poll (no progress in 30 s)");
    for (unsigned i = 0; i < nconn; i++) {
      conn_t *c = &cs[i];
      if (pf[i].revents & POLLOUT) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
          die("write");
        if (w > 0)
          c->out_off += (size_t)w;
      }
      if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (r == 0) {
          fprintf(stderr, "memload: server closed a connection\n");
          return 1;
        }
        if (r < 0 && errno != EAGAIN && errno != EINTR)
          die("read");
        if (r > 0) {
          c->in_len += (size_t)r;
          unsigned got = parse_replies(c);
          c->inflight -= got;
          done += got;
        }
      }
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  fprintf(stderr, "memload: %s: %llu stored, %llu failed in %.1f s (%.0f/s)\n",
          argv[1], (unsigned long long)n_ok, (unsigned long long)n_bad, s,
          (double)done / s);
  for (unsigned i = 0; i < nconn; i++)
    close(cs[i].fd);
  return n_ok == n_total ? 0 : 1;
}
