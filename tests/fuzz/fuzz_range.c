/* fuzz_range.c - api_parse_range: the Range header of a GET, against a
 * value size taken from the input's first 8 bytes (often small, so ranges
 * hit the edges). Properties: a partial answer is a non-empty range inside
 * the value; the outputs are written only then; the parser agrees with a
 * reference written the other way round (split on commas first, then parse
 * each element). */
#include <string.h>
#include <strings.h>

#include "api.h"
#include "fuzz.h"

static bool ows(char c) { return c == ' ' || c == '\t'; }

static bool all_digits(const char *s, size_t n, uint64_t *out) {
  uint64_t x = 0;
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    unsigned d = (unsigned)(s[i] - '0');
    x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
  }
  *out = x;
  return true;
}

static int reference(const char *v, size_t len, uint64_t size, uint64_t *f,
                     uint64_t *l) {
  if (len < 6 || strncasecmp(v, "bytes=", 6) != 0)
    return API_RANGE_FULL;
  unsigned specs = 0, sat = 0;
  size_t i = 6;
  for (;;) {
    size_t j = i;
    while (j < len && v[j] != ',')
      j++;
    size_t s = i, e = j;
    while (s < e && ows(v[s]))
      s++;
    while (e > s && ows(v[e - 1]))
      e--;
    if (s < e) {
      const char *dash = memchr(v + s, '-', e - s);
      uint64_t a, b;
      bool ok;
      if (!dash)
        return API_RANGE_FULL;
      if (dash == v + s) {
        if (!all_digits(dash + 1, (size_t)(v + e - dash - 1), &b))
          return API_RANGE_FULL;
        ok = b > 0 && size > 0;
        a = b >= size ? 0 : size - b;
        b = size ? size - 1 : 0;
      } else {
        if (!all_digits(v + s, (size_t)(dash - (v + s)), &a))
          return API_RANGE_FULL;
        size_t rest = (size_t)(v + e - dash - 1);
        if (rest == 0)
          b = UINT64_MAX;
        else if (!all_digits(dash + 1, rest, &b) || b < a)
          return API_RANGE_FULL;
        ok = a < size;
        if (ok && b >= size)
          b = size - 1;
      }
      specs++;
      if (ok && sat++ == 0) {
        *f = a;
        *l = b;
      }
    }
    if (j == len)
      break;
    i = j + 1;
  }
  if (specs == 0)
    return API_RANGE_FULL;
  if (sat == 0)
    return API_RANGE_UNSATISFIABLE;
  return specs > 1 ? API_RANGE_FULL : API_RANGE_PARTIAL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8)
    return 0;
  uint64_t vsize;
  memcpy(&vsize, data, 8);
  if (data[0] & 1)
    vsize %= 4096;
  const char *v = (const char *)data + 8;
  size_t len = size - 8;
  uint64_t f = 7, l = 7;
  int rc = api_parse_range(v, len, vsize, &f, &l);
  FUZZ_CHECK(rc == API_RANGE_FULL || rc == API_RANGE_PARTIAL ||
             rc == API_RANGE_UNSATISFIABLE);
  if (rc == API_RANGE_PARTIAL)
    FUZZ_CHECK(f <= l && l < vsize);
  else
    FUZZ_CHECK(f == 7 && l == 7);
  uint64_t rf = 7, rl = 7;
  int rr = reference(v, len, vsize, &rf, &rl);
  FUZZ_CHECK(rr == rc);
  if (rc == API_RANGE_PARTIAL)
    FUZZ_CHECK(rf == f && rl == l);
  return 0;
}
