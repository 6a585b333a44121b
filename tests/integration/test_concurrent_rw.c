/* test_concurrent_rw.c - concurrent writers and readers on the same keys.
 *
 * NWRITERS writer threads and NREADERS reader threads, each on its own
 * keep-alive connection, hammer keys conc/k0..conc/k7 for DURATION_MS (and
 * until MIN_OPS PUTs and good GETs were seen, at most MAX_MS) while a
 * ninth thread runs POST /debug/gc in a loop on the admin listener, so
 * collection cycles (and their stop-the-world phases) overlap the traffic.
 *
 * Every PUT value describes itself: a 40-byte header (magic, key index,
 * writer id, sequence number, body length, FNV-1a of the body, FNV-1a of the
 * header) followed by a body regenerated from (key, writer, seq). Body sizes
 * vary from 0 to 200 KiB. A reader checks that every 200 it gets is one
 * complete value some writer issued for that very key: length, header,
 * checksum and the body byte for byte - never a mix of two values, never a
 * truncated or stale-buffer read. Writers sometimes DELETE, so 404 is a
 * legitimate answer.
 *
 * Afterwards: every key still reads back valid; a sequential PUT/GET per key
 * returns exact bytes; Cache.Entries agrees; after DELETE of everything and
 * two forced cycles the heap is back near empty; the server exits 0.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NKEYS 8
#define NWRITERS 4
#define NREADERS 4
#define DURATION_MS 2000 /* at least this long... */
#define MIN_OPS 200      /* ...and until this many PUTs and good GETs... */
#define MAX_MS 20000     /* ...but never longer (sanitizer builds are slow) */
#define MAX_BODY (200 * 1024)
#define HDR 40
#define MAGIC 0x31564342u /* "BCV1" little-endian */

static server_t S;
static _Atomic int g_stop;
static _Atomic uint32_t g_issued[NWRITERS]; /* highest seq each writer issued */

/* counters */
static _Atomic long n_puts, n_put_bad, n_dels, n_del_bad, n_gets_ok,
    n_gets_404, n_get_bad, n_heads, n_head_bad, n_transport, n_gc, n_gc_bad;
static _Atomic int n_reported; /* detailed reports printed (bounded) */

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
  if (atomic_fetch_add(&n_reported, 1) >= 20)
    return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  printf("# %s\n", buf);
  fflush(stdout);
}

/* ---- values ------------------------------------------------------------------ */

static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static uint64_t mix(uint64_t x) { /* splitmix64 finaliser */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static void gen_body(unsigned char *out, size_t n, uint32_t key, uint32_t w,
                     uint32_t seq) {
  uint64_t s = mix(((uint64_t)key << 48) ^ ((uint64_t)w << 32) ^ seq);
  for (size_t i = 0; i < n; i += 8) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    uint64_t v = s;
    /* plenty of NUL bytes */
    if ((v & 0x7) == 0)
      v &= 0xffffffff00000000ull;
    size_t k = n - i < 8 ? n - i : 8;
    memcpy(out + i, &v, k);
  }
}

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* Builds a value into buf (capacity HDR + MAX_BODY); returns its length. */
static size_t make_value(unsigned char *buf, uint32_t key, uint32_t w,
                         uint32_t seq, uint32_t body_len) {
  gen_body(buf + HDR, body_len, key, w, seq);
  put32(buf + 0, MAGIC);
  put32(buf + 4, key);
  put32(buf + 8, w);
  put32(buf + 12, seq);
  put32(buf + 16, body_len);
  put32(buf + 20, 0);
  put64(buf + 24, fnv1a(buf + HDR, body_len));
  put64(buf + 32, fnv1a(buf, 32));
  return HDR + body_len;
}

/* NULL if v is one complete value issued for key, else what is wrong. */
static const char *check_value(const unsigned char *v, size_t len,
                               uint32_t key, unsigned char *scratch) {
  if (len < HDR)
    return "shorter than the header";
  if (get32(v) != MAGIC)
    return "bad magic";
  if (get64(v + 32) != fnv1a(v, 32))
    return "header checksum mismatch";
  if (get32(v + 4) != key)
    return "value of another key";
  uint32_t w = get32(v + 8), seq = get32(v + 12), blen = get32(v + 16);
  if (w >= NWRITERS)
    return "unknown writer";
  if (seq == 0 || seq > atomic_load(&g_issued[w]))
    return "sequence number never issued";
  if (blen > MAX_BODY)
    return "body length out of range";
  if ((size_t)blen + HDR != len)
    return "length differs from the header's";
  if (get64(v + 24) != fnv1a(v + HDR, blen))
    return "body checksum mismatch (a mix of values?)";
  gen_body(scratch, blen, key, w, seq);
  if (memcmp(scratch, v + HDR, blen) != 0)
    return "body differs from what the writer sent";
  return NULL;
}

static bool etag_ok(const char *e) {
  if (strlen(e) != 18 || e[0] != '"' || e[17] != '"')
    return false;
  for (int i = 1; i < 17; i++)
    if (!((e[i] >= '0' && e[i] <= '9') || (e[i] >= 'a' && e[i] <= 'f')))
      return false;
  return true;
}

static uint32_t pick_len(uint64_t *rng) {
  *rng = mix(*rng);
  switch (*rng & 3) {
  case 0:
    return (uint32_t)((*rng >> 8) % 65); /* tiny, including 0 */
  case 1:
    return (uint32_t)((*rng >> 8) % 4096);
  default:
    return (uint32_t)((*rng >> 8) % (MAX_BODY + 1));
  }
}

/* ---- threads ---------------------------------------------------------------- */

static void *writer(void *arg) {
  uint32_t w = (uint32_t)(uintptr_t)arg;
  http_t h;
  if (http_init(&h) != 0)
    return NULL;
  resp_t r = {0};
  unsigned char *buf = malloc(HDR + MAX_BODY);
  uint64_t rng = mix(0xabcdef00u + w);
  uint32_t seq = 0;
  char path[64];
  while (!atomic_load(&g_stop)) {
    rng = mix(rng);
    uint32_t key = (uint32_t)(rng % NKEYS);
    snprintf(path, sizeof(path), "/v1/buffers/conc/k%u", key);
    if (((rng >> 16) & 15) == 0) {
      long st = http_do(&h, "DELETE", S.data, path, NULL, 0, NULL, &r);
      atomic_fetch_add(&n_dels, 1);
      if (st == 0) {
        atomic_fetch_add(&n_transport, 1);
        report("writer %u: DELETE %s: %s", w, path, r.err);
      } else if (st != 204 && st != 404) {
        atomic_fetch_add(&n_del_bad, 1);
        report("writer %u: DELETE %s -> %ld", w, path, st);
      }
      continue;
    }
    seq++;
    atomic_store(&g_issued[w], seq); /* issued before it can be read */
    size_t len = make_value(buf, key, w, seq, pick_len(&rng));
    long st = http_do(&h, "PUT", S.data, path, buf, len,
                      "application/x-bufcache-test", &r);
    atomic_fetch_add(&n_puts, 1);
    if (st == 0) {
      atomic_fetch_add(&n_transport, 1);
      report("writer %u: PUT %s (%zu bytes): %s", w, path, len, r.err);
    } else if ((st != 201 && st != 204) || !etag_ok(r.etag)) {
      atomic_fetch_add(&n_put_bad, 1);
      report("writer %u: PUT %s (%zu bytes) -> %ld, ETag [%s], body %.200s", w,
             path, len, st, r.etag, (char *)r.body);
    }
  }
  free(buf);
  resp_free(&r);
  http_cleanup(&h);
  return NULL;
}

static void *reader(void *arg) {
  uint32_t id = (uint32_t)(uintptr_t)arg;
  http_t h;
  if (http_init(&h) != 0)
    return NULL;
  resp_t r = {0};
  unsigned char *scratch = malloc(MAX_BODY + 8);
  uint64_t rng = mix(0x1234500u + id);
  char path[64];
  while (!atomic_load(&g_stop)) {
    rng = mix(rng);
    uint32_t key = (uint32_t)(rng % NKEYS);
    snprintf(path, sizeof(path), "/v1/buffers/conc/k%u", key);
    if (((rng >> 20) & 7) == 0) {
      long st = http_do(&h, "HEAD", S.data, path, NULL, 0, NULL, &r);
      atomic_fetch_add(&n_heads, 1);
      if (st == 0) {
        atomic_fetch_add(&n_transport, 1);
        report("reader %u: HEAD %s: %s", id, path, r.err);
      } else if (st == 200 ? (r.content_length < HDR ||
                              r.content_length > HDR + MAX_BODY ||
                              !etag_ok(r.etag) || r.len != 0)
                           : st != 404) {
        atomic_fetch_add(&n_head_bad, 1);
        report("reader %u: HEAD %s -> %ld, Content-Length %lld, ETag [%s], "
               "%zu body bytes",
               id, path, st, r.content_length, r.etag, r.len);
      }
      continue;
    }
    long st = http_do(&h, "GET", S.data, path, NULL, 0, NULL, &r);
    if (st == 0) {
      atomic_fetch_add(&n_transport, 1);
      report("reader %u: GET %s: %s", id, path, r.err);
      continue;
    }
    if (st == 404) {
      atomic_fetch_add(&n_gets_404, 1);
      continue;
    }
    const char *why = NULL;
    if (st != 200)
      why = "status is not 200 or 404";
    else if (r.content_length != (long long)r.len)
      why = "Content-Length differs from the bytes received";
    else if (strcmp(r.ctype, "application/x-bufcache-test") != 0)
      why = "Content-Type differs from the PUT's";
    else if (!etag_ok(r.etag))
      why = "malformed ETag";
    else
      why = check_value(r.body, r.len, key, scratch);
    if (why) {
      atomic_fetch_add(&n_get_bad, 1);
      report("reader %u: GET %s -> %ld, %zu bytes: %s", id, path, st, r.len,
             why);
    } else {
      atomic_fetch_add(&n_gets_ok, 1);
    }
  }
  free(scratch);
  resp_free(&r);
  http_cleanup(&h);
  return NULL;
}

static void *collector(void *arg) {
  (void)arg;
  http_t h;
  if (http_init(&h) != 0)
    return NULL;
  resp_t r = {0};
  while (!atomic_load(&g_stop)) {
    long st = http_do(&h, "POST", S.admin, "/debug/gc", NULL, 0, NULL, &r);
    if (st == 200 && json_int((char *)r.body, "NumGC") > 0) {
      atomic_fetch_add(&n_gc, 1);
    } else {
      atomic_fetch_add(&n_gc_bad, 1);
      report("POST /debug/gc -> %ld: %s %.200s", st, r.err, (char *)r.body);
    }
    sleep_ms(2);
  }
  resp_free(&r);
  http_cleanup(&h);
  return NULL;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s BUFCACHE_BINARY\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *flags[] = {"--workers", "2", "--max-value-size", "1MiB", NULL};
  if (server_start(&S, argv[1], flags) != 0) {
    printf("FAIL - server starts\n0 passed, 1 failed\n");
    return 1;
  }
  printf("# server: data %s, admin %s\n", S.data, S.admin);
  http_t h;
  http_init(&h);
  resp_t r = {0};

  memstats(&h, &S, &r);
  long long gc0 = json_int((char *)r.body, "NumGC");
  long long forced0 = json_int((char *)r.body, "NumForcedGC");
  CHECK("memstats has NumGC and NumForcedGC", gc0 >= 0 && forced0 >= 0);

  pthread_t th[NWRITERS + NREADERS + 1];
  int nth = 0;
  for (int i = 0; i < NWRITERS; i++)
    pthread_create(&th[nth++], NULL, writer, (void *)(uintptr_t)i);
  for (int i = 0; i < NREADERS; i++)
    pthread_create(&th[nth++], NULL, reader, (void *)(uintptr_t)i);
  pthread_create(&th[nth++], NULL, collector, NULL);
  uint64_t t0 = now_ms();
  int alive = -2; /* server_wait: -2 while it runs, else its exit status */
  for (;;) {
    sleep_ms(50);
    uint64_t el = now_ms() - t0;
    if (el >= MAX_MS ||
        (el >= DURATION_MS && atomic_load(&n_puts) >= MIN_OPS &&
         atomic_load(&n_gets_ok) >= MIN_OPS && atomic_load(&n_gc) >= 3))
      break;
    if ((alive = server_wait(&S, 0)) != -2) /* it died: stop */
      break;
  }
  atomic_store(&g_stop, 1);
  for (int i = 0; i < nth; i++)
    pthread_join(th[i], NULL);
  printf("# %llu ms: %ld PUTs, %ld DELETEs, %ld GETs ok, %ld GETs 404, "
         "%ld HEADs, %ld forced cycles\n",
         (unsigned long long)(now_ms() - t0), atomic_load(&n_puts),
         atomic_load(&n_dels), atomic_load(&n_gets_ok),
         atomic_load(&n_gets_404), atomic_load(&n_heads), atomic_load(&n_gc));

  if (alive == -2)
    alive = server_wait(&S, 0);
  if (alive != -2)
    printf("# the server died during the traffic: exit status %d "
           "(134 = SIGABRT; its stderr is above)\n", alive);
  CHECK_EQ_INT("server still running after the traffic (-2 = running)", -2,
               alive);
  if (alive != -2) {
    printf("# (skipping the checks after the traffic: no server)\n");
    resp_free(&r);
    http_cleanup(&h);
    harness_fail(__FILE__, __LINE__, "checks after the traffic", "skipped");
    server_stop(&S, 1000); /* only cleans up: it is gone */
    return harness_finish();
  }
  CHECK_EQ_INT("no transport errors (resets, timeouts)", 0,
               atomic_load(&n_transport));
  CHECK_GE_INT("writers completed PUTs", atomic_load(&n_puts), MIN_OPS);
  CHECK_EQ_INT("every PUT answered 201/204 with a strong ETag", 0,
               atomic_load(&n_put_bad));
  CHECK_EQ_INT("every DELETE answered 204/404", 0, atomic_load(&n_del_bad));
  CHECK_GE_INT("readers got values", atomic_load(&n_gets_ok), MIN_OPS);
  CHECK_EQ_INT("every GET returned one complete value some PUT wrote", 0,
               atomic_load(&n_get_bad));
  CHECK_EQ_INT("every HEAD answered consistent headers and no body", 0,
               atomic_load(&n_head_bad));
  CHECK_GE_INT("forced GC cycles ran during the traffic", atomic_load(&n_gc),
               3);
  CHECK_EQ_INT("every POST /debug/gc answered 200", 0, atomic_load(&n_gc_bad));

  memstats(&h, &S, &r);
  CHECK_GE_INT("NumForcedGC counts the forced cycles",
               json_int((char *)r.body, "NumForcedGC") - forced0,
               atomic_load(&n_gc));
  CHECK_GE_INT("NumGC counts the forced cycles",
               json_int((char *)r.body, "NumGC") - gc0, atomic_load(&n_gc));

  /* every key now holds a valid value or nothing */
  unsigned char *scratch = malloc(MAX_BODY + 8);
  unsigned char *buf = malloc(HDR + MAX_BODY);
  int bad_after = 0;
  char path[64];
  for (uint32_t k = 0; k < NKEYS; k++) {
    snprintf(path, sizeof(path), "/v1/buffers/conc/k%u", k);
    long st = http_do(&h, "GET", S.data, path, NULL, 0, NULL, &r);
    const char *why = st == 404   ? NULL
                      : st == 200 ? check_value(r.body, r.len, k, scratch)
                                  : "status";
    if (why) {
      bad_after++;
      printf("# after the run: GET %s -> %ld: %s\n", path, st, why);
    }
  }
  CHECK_EQ_INT("after the run every key holds a valid value or none", 0,
               bad_after);

  /* sequential PUT/GET per key: exact bytes, the index is intact */
  int exact = 0;
  uint64_t rng = 42;
  for (uint32_t k = 0; k < NKEYS; k++) {
    snprintf(path, sizeof(path), "/v1/buffers/conc/k%u", k);
    atomic_store(&g_issued[0], atomic_load(&g_issued[0]) + 1);
    size_t len = make_value(buf, k, 0, atomic_load(&g_issued[0]),
                            pick_len(&rng));
    long pst = http_do(&h, "PUT", S.data, path, buf, len, "text/x-final", &r);
    char etag[80];
    snprintf(etag, sizeof(etag), "%s", r.etag);
    long gst = http_do(&h, "GET", S.data, path, NULL, 0, NULL, &r);
    if ((pst == 201 || pst == 204) && gst == 200 && r.len == len &&
        memcmp(r.body, buf, len) == 0 && !strcmp(r.etag, etag) &&
        !strcmp(r.ctype, "text/x-final"))
      exact++;
    else
      printf("# final %s: PUT %ld GET %ld, %zu/%zu bytes, ETag %s/%s\n", path,
             pst, gst, r.len, len, etag, r.etag);
  }
  CHECK_EQ_INT("sequential PUT then GET per key returns exact bytes", NKEYS,
               exact);
  memstats(&h, &S, &r);
  CHECK_EQ_INT("Cache.Entries counts the keys", NKEYS,
               json_int((char *)r.body, "Entries"));

  /* delete everything; two forced cycles; the heap is back near empty */
  int deleted = 0;
  for (uint32_t k = 0; k < NKEYS; k++) {
    snprintf(path, sizeof(path), "/v1/buffers/conc/k%u", k);
    deleted += http_do(&h, "DELETE", S.data, path, NULL, 0, NULL, &r) == 204;
  }
  CHECK_EQ_INT("DELETE of every key answered 204", NKEYS, deleted);
  http_do(&h, "POST", S.admin, "/debug/gc", NULL, 0, NULL, &r);
  http_do(&h, "POST", S.admin, "/debug/gc", NULL, 0, NULL, &r);
  memstats(&h, &S, &r);
  long long inuse = json_int((char *)r.body, "HeapInuse");
  printf("# after delete + 2 cycles: HeapInuse %lld, HeapObjects %lld\n",
         inuse, json_int((char *)r.body, "HeapObjects"));
  CHECK_EQ_INT("Cache.Entries is 0 after deleting every key", 0,
               json_int((char *)r.body, "Entries"));
  /* live values peaked at 8 x 200 KiB; with none left the heap keeps at
   * most a few spans */
  CHECK("HeapInuse is reported and back under 1 MiB",
        inuse >= 0 && inuse <= (1 << 20));

  CHECK_EQ_INT("healthz after the run", 200,
               http_do(&h, "GET", S.data, "/healthz", NULL, 0, NULL, &r));
  free(scratch);
  free(buf);
  resp_free(&r);
  http_cleanup(&h);
  CHECK_EQ_INT("server exits 0 on SIGTERM", 0, server_stop(&S, 30000));
  return harness_finish();
}
