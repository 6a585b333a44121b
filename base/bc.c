/* bc.c - shared utilities; see bc.h. */
#include "bc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *bc_strerror(int err) {
  switch (err) {
#define X(name, val, msg)                                                      \
  case BC_E##name:                                                             \
    return msg;
    BC_ERRNO_MAP(X)
#undef X
  case 0:
    return "success";
  default:
    return "unknown error";
  }
}

void bc__throw(const char *file, int line, const char *cond, const char *fmt,
               ...) {
  va_list ap;
  fprintf(stderr, "fatal error: %s:%d: check failed: %s: ", file, line, cond);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
uint64_t bc_now_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t bc_now_real_ns(void) { return clock_ns(CLOCK_REALTIME); }
uint64_t bc_thread_cpu_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }
uint64_t bc_process_cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

/* ---- parsers ------------------------------------------------------------ */

int bc_parse_u64(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  if (len == 0)
    return BC_EINVAL;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return BC_EINVAL;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return BC_ERANGE;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* Reads "123" or "123.456" at s[*i]; returns the integer part in *ip and the
 * fraction as num/den (den a power of ten, capped so it cannot overflow). */
static int parse_decimal(const char *s, size_t len, size_t *i, uint64_t *ip,
                         uint64_t *fnum, uint64_t *fden) {
  size_t start = *i;
  uint64_t v = 0, num = 0, den = 1;
  bool overflow = false;
  while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
    unsigned d = (unsigned)(s[*i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      overflow = true;
    else
      v = v * 10 + d;
    (*i)++;
  }
  bool had_int = *i > start;
  bool had_frac = false;
  if (*i < len && s[*i] == '.') {
    (*i)++;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
      if (den < 1000000000000000000ull) { /* keep 18 digits, drop the rest */
        num = num * 10 + (unsigned)(s[*i] - '0');
        den *= 10;
      }
      had_frac = true;
      (*i)++;
    }
  }
  if (!had_int && !had_frac)
    return BC_EINVAL;
  if (overflow)
    return BC_ERANGE;
  *ip = v;
  *fnum = num;
  *fden = den;
  return 0;
}

/* v * unit + frac * unit, with overflow detection. */
static int scale(uint64_t v, uint64_t num, uint64_t den, uint64_t unit,
                 uint64_t *out) {
  if (unit && v > UINT64_MAX / unit)
    return BC_ERANGE;
  uint64_t r = v * unit;
  /* the fraction num/den of a unit, exactly (den <= 10^18, unit < 2^64) */
  uint64_t fi = (uint64_t)((unsigned __int128)num * unit / den);
  if (r > UINT64_MAX - fi)
    return BC_ERANGE;
  *out = r + fi;
  return 0;
}

int bc_parse_size(const char *s, size_t len, uint64_t *out) {
  static const struct {
    const char *sfx;
    uint64_t mul;
  } units[] = {
      {"", 1},
      {"b", 1},
      {"k", 1000},
      {"kb", 1000},
      {"kib", 1ull << 10},
      {"m", 1000000},
      {"mb", 1000000},
      {"mib", 1ull << 20},
      {"g", 1000000000},
      {"gb", 1000000000},
      {"gib", 1ull << 30},
      {"t", 1000000000000ull},
      {"tb", 1000000000000ull},
      {"tib", 1ull << 40},
  };
  size_t i = 0;
  uint64_t ip, num, den;
  int rc = parse_decimal(s, len, &i, &ip, &num, &den);
  if (rc)
    return rc;
  size_t slen = len - i;
  if (slen > 3)
    return BC_EINVAL;
  char sfx[4] = {0};
  for (size_t k = 0; k < slen; k++) {
    char c = s[i + k];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    sfx[k] = c;
  }
  for (size_t u = 0; u < BC_ARRAY_LEN(units); u++) {
    if (strcmp(sfx, units[u].sfx) == 0) {
      if (units[u].mul == 1 && num != 0)
        return BC_EINVAL; /* fractional bytes */
      return scale(ip, num, den, units[u].mul, out);
    }
  }
  return BC_EINVAL;
}

int bc_parse_duration(const char *s, size_t len, bool bare_seconds,
                      uint64_t *out_ns) {
  if (len == 0)
    return BC_EINVAL;
  size_t i = 0;
  if (s[0] == '+')
    i++;
  else if (s[0] == '-')
    return BC_EINVAL; /* negative durations make no sense here */
  if (i == len)
    return BC_EINVAL;
  /* "0" alone, or a bare number of seconds */
  bool all_digits = true;
  for (size_t k = i; k < len; k++)
    if (s[k] < '0' || s[k] > '9')
      all_digits = false;
  if (all_digits) {
    uint64_t v;
    int rc = bc_parse_u64(s + i, len - i, &v);
    if (rc)
      return rc;
    if (v != 0 && !bare_seconds)
      return BC_EINVAL; /* Go: "missing unit in duration" */
    if (v > UINT64_MAX / 1000000000u)
      return BC_ERANGE;
    *out_ns = v * 1000000000u;
    return 0;
  }
  uint64_t total = 0;
  while (i < len) {
    uint64_t ip, num, den;
    int rc = parse_decimal(s, len, &i, &ip, &num, &den);
    if (rc)
      return rc;
    size_t us = i;
    while (i < len && !((s[i] >= '0' && s[i] <= '9') || s[i] == '.'))
      i++;
    size_t ul = i - us;
    const char *u = s + us;
    uint64_t unit;
    if (ul == 2 && memcmp(u, "ns", 2) == 0)
      unit = 1;
    else if (ul == 2 && memcmp(u, "us", 2) == 0)
      unit = 1000;
    else if (ul == 3 && memcmp(u, "\xc2\xb5s", 3) == 0) /* U+00B5 micro */
      unit = 1000;
    else if (ul == 3 && memcmp(u, "\xce\xbcs", 3) == 0) /* U+03BC mu */
      unit = 1000;
    else if (ul == 2 && memcmp(u, "ms", 2) == 0)
      unit = 1000000;
    else if (ul == 1 && u[0] == 's')
      unit = 1000000000ull;
    else if (ul == 1 && u[0] == 'm')
      unit = 60ull * 1000000000ull;
    else if (ul == 1 && u[0] == 'h')
      unit = 3600ull * 1000000000ull;
    else
      return BC_EINVAL;
    uint64_t part;
    rc = scale(ip, num, den, unit, &part);
    if (rc)
      return rc;
    if (total > UINT64_MAX - part)
      return BC_ERANGE;
    total += part;
  }
  *out_ns = total;
  return 0;
}

/* v/unit with its fraction: "1.5", "2", "0.000001" (trailing zeros
 * trimmed, as Go prints durations). unit is a power of ten. */
static size_t put_frac(char *buf, size_t cap, uint64_t v, uint64_t unit) {
  int digits = 0;
  for (uint64_t u = unit; u > 1; u /= 10)
    digits++;
  uint64_t ip = v / unit, fp = v % unit;
  if (!fp)
    return (size_t)snprintf(buf, cap, "%llu", (unsigned long long)ip);
  while (fp % 10 == 0) {
    fp /= 10;
    digits--;
  }
  return (size_t)snprintf(buf, cap, "%llu.%0*llu", (unsigned long long)ip,
                          digits, (unsigned long long)fp);
}

size_t bc_format_duration(uint64_t ns, char *buf, size_t cap) {
  size_t n;
  if (ns == 0)
    return (size_t)snprintf(buf, cap, "0s");
  if (ns < 1000)
    return (size_t)snprintf(buf, cap, "%lluns", (unsigned long long)ns);
  if (ns < 1000000) {
    n = put_frac(buf, cap, ns, 1000);
    return n + (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "\xc2\xb5s");
  }
  if (ns < 1000000000) {
    n = put_frac(buf, cap, ns, 1000000);
    return n + (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "ms");
  }
  uint64_t h = ns / 3600000000000ull, m = ns / 60000000000ull % 60;
  n = 0;
  if (h)
    n += (size_t)snprintf(buf, cap, "%lluh", (unsigned long long)h);
  if (h || m)
    n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "%llum",
                          (unsigned long long)m);
  n += put_frac(buf + n, n < cap ? cap - n : 0, ns % 60000000000ull,
                1000000000);
  return n + (size_t)snprintf(buf + n, n < cap ? cap - n : 0, "s");
}

/* ---- hashes ------------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}
static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v; /* little-endian hosts only (x86-64, aarch64) */
}
static inline uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = rotl64(v1, 13);                                                       \
    v1 ^= v0;                                                                  \
    v0 = rotl64(v0, 32);                                                       \
    v2 += v3;                                                                  \
    v3 = rotl64(v3, 16);                                                       \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = rotl64(v3, 21);                                                       \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = rotl64(v1, 17);                                                       \
    v1 ^= v2;                                                                  \
    v2 = rotl64(v2, 32);                                                       \
  } while (0)

uint64_t bc_siphash13(const void *data, size_t len, const uint64_t key[2]) {
  const uint8_t *p = data;
  uint64_t v0 = 0x736f6d6570736575ull ^ key[0];
  uint64_t v1 = 0x646f72616e646f6dull ^ key[1];
  uint64_t v2 = 0x6c7967656e657261ull ^ key[0];
  uint64_t v3 = 0x7465646279746573ull ^ key[1];
  size_t n = len & ~(size_t)7;
  for (size_t i = 0; i < n; i += 8) {
    uint64_t m = load64(p + i);
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  switch (len & 7) {
  case 7:
    b |= (uint64_t)p[n + 6] << 48; /* fallthrough */
  case 6:
    b |= (uint64_t)p[n + 5] << 40; /* fallthrough */
  case 5:
    b |= (uint64_t)p[n + 4] << 32; /* fallthrough */
  case 4:
    b |= (uint64_t)p[n + 3] << 24; /* fallthrough */
  case 3:
    b |= (uint64_t)p[n + 2] << 16; /* fallthrough */
  case 2:
    b |= (uint64_t)p[n + 1] << 8; /* fallthrough */
  case 1:
    b |= (uint64_t)p[n];
    break;
  default:
    break;
  }
  v3 ^= b;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t xxround(uint64_t acc, uint64_t in) {
  acc += in * P2;
  acc = rotl64(acc, 31);
  return acc * P1;
}
static inline uint64_t xxmerge(uint64_t acc, uint64_t v) {
  acc ^= xxround(0, v);
  return acc * P1 + P4;
}

uint64_t bc_xxh64(const void *data, size_t len, uint64_t seed) {
  const uint8_t *p = data, *end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
    const uint8_t *limit = end - 32;
    do {
      v1 = xxround(v1, load64(p));
      v2 = xxround(v2, load64(p + 8));
      v3 = xxround(v3, load64(p + 16));
      v4 = xxround(v4, load64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
    h = xxmerge(h, v1);
    h = xxmerge(h, v2);
    h = xxmerge(h, v3);
    h = xxmerge(h, v4);
  } else {
    h = seed + P5;
  }
  h += (uint64_t)len;
  while (p + 8 <= end) {
    h ^= xxround(0, load64(p));
    h = rotl64(h, 27) * P1 + P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)load32(p) * P1;
    h = rotl64(h, 23) * P2 + P3;
    p += 4;
  }
  while (p < end) {
    h ^= (*p) * P5;
    h = rotl64(h, 11) * P1;
    p++;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

void bc_random_bytes(void *buf, size_t len) {
  uint8_t *p = buf;
  while (len) {
    ssize_t n = getrandom(p, len, 0);
    if (n < 0) {
      BC_CHECK(errno == EINTR, "getrandom: %s", strerror(errno));
      continue;
    }
    p += n;
    len -= (size_t)n;
  }
}
