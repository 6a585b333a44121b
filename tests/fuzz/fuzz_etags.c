/* fuzz_etags.c - api_parse_etags: If-Match and If-None-Match. Properties:
 * the result is "*", a syntax error, too many, or a count within the
 * capacity; syntax does not depend on weak_ok, and weak_ok only adds tags;
 * the tags found, printed back with api_format_etag, parse to the same list;
 * a small capacity reports "too many" rather than writing past it (exact-size
 * heap buffers). */
#include <string.h>

#include "api.h"
#include "fuzz.h"

#define CAP 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16)
    return 0;
  const char *v = (const char *)data;
  uint64_t strong[CAP], weak[CAP];
  long s = api_parse_etags(v, size, false, strong, CAP);
  long w = api_parse_etags(v, size, true, weak, CAP);
  FUZZ_CHECK(s >= API_ETAGS_TOO_MANY && s <= CAP);
  FUZZ_CHECK(w >= API_ETAGS_TOO_MANY && w <= CAP);
  /* syntax does not depend on weak_ok - unless "too many" came first, which
   * the list with more tags kept reaches sooner */
  if (s != API_ETAGS_TOO_MANY && w != API_ETAGS_TOO_MANY)
    FUZZ_CHECK((s == API_ETAGS_BAD) == (w == API_ETAGS_BAD));
  FUZZ_CHECK((s == API_ETAGS_ANY) == (w == API_ETAGS_ANY));
  if (s >= 0 && w >= 0)
    FUZZ_CHECK(s <= w);
  if (w > 0) { /* round trip */
    char list[CAP * 21];
    size_t n = 0;
    for (long i = 0; i < w; i++) {
      if (i) {
        memcpy(list + n, ", ", 2);
        n += 2;
      }
      api_format_etag(weak[i], list + n);
      n += 18;
    }
    uint64_t again[CAP];
    FUZZ_CHECK(api_parse_etags(list, n, false, again, CAP) == w);
    FUZZ_CHECK(memcmp(again, weak, (size_t)w * sizeof(uint64_t)) == 0);
  }
  /* a capacity of size % 4: never written past */
  size_t cap = size % 4;
  uint64_t *small = malloc((cap ? cap : 1) * sizeof(uint64_t));
  long k = api_parse_etags(v, size, true, small, cap);
  FUZZ_CHECK(k == API_ETAGS_TOO_MANY || k == w || w == API_ETAGS_TOO_MANY);
  if (w >= 0 && (size_t)w > cap)
    FUZZ_CHECK(k == API_ETAGS_TOO_MANY);
  free(small);
  /* listing cursors: 16 hex digits, either case */
  uint64_t pos;
  if (api_parse_cursor(v, size, &pos) == 0) {
    char buf[17];
    api_format_cursor(pos, buf);
    for (size_t i = 0; i < 16; i++)
      FUZZ_CHECK(buf[i] == (char)(v[i] >= 'A' && v[i] <= 'F' ? v[i] | 0x20
                                                               : v[i]));
  }
  return 0;
}
