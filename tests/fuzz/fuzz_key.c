/* fuzz_key.c - api_decode_key: the {key} of /v1/buffers/{key}, as the
 * client sent it (MHD's unescaping is off). Properties: a decoded key is
 * 1..CACHE_MAX_KEY bytes with no control byte; re-encoding it and decoding
 * again gives the same bytes, and so does api_percent_encode (the listing's
 * form); a small output buffer is never overrun (ASan sees an exact-size
 * heap buffer). */
#include <string.h>

#include "api.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  char out[CACHE_MAX_KEY];
  long n = api_decode_key(in, size, out, sizeof(out));
  if (n < 0) {
    FUZZ_CHECK(n >= API_KEY_CONTROL);
  } else {
    FUZZ_CHECK(n >= 1 && n <= CACHE_MAX_KEY);
    for (long i = 0; i < n; i++) {
      unsigned char c = (unsigned char)out[i];
      FUZZ_CHECK(c >= 0x20 && c != 0x7f);
    }
    /* round trip: escape '%' and everything outside printable ASCII */
    static const char hex[] = "0123456789ABCDEF";
    char enc[3 * CACHE_MAX_KEY], back[CACHE_MAX_KEY];
    size_t e = 0;
    for (long i = 0; i < n; i++) {
      unsigned char c = (unsigned char)out[i];
      if (c == '%' || c >= 0x80 || c == '/' || c == '?') {
        enc[e++] = '%';
        enc[e++] = hex[c >> 4];
        enc[e++] = hex[c & 15];
      } else {
        enc[e++] = (char)c;
      }
    }
    long m = api_decode_key(enc, e, back, sizeof(back));
    FUZZ_CHECK(m == n && memcmp(back, out, (size_t)n) == 0);
  }
  /* keys in listings: percent-encoded unless valid UTF-8; the encoding of
   * any valid key decodes back to it */
  if (n >= 0) {
    char *penc = malloc(3 * (size_t)n + 1);
    size_t pl = api_percent_encode(out, (size_t)n, penc);
    FUZZ_CHECK(pl <= 3 * (size_t)n && penc[pl] == 0);
    char back[CACHE_MAX_KEY];
    long m = api_decode_key(penc, pl, back, sizeof(back));
    FUZZ_CHECK(m == n && memcmp(back, out, (size_t)n) == 0);
    free(penc);
    bool ascii = true;
    for (long i = 0; i < n; i++)
      ascii = ascii && (unsigned char)out[i] < 0x80;
    if (ascii)
      FUZZ_CHECK(api_utf8_valid(out, (size_t)n));
  }
  (void)api_utf8_valid(in, size);
  /* a short output buffer: API_KEY_TOO_LONG, never a write past it */
  size_t cap = size % 16;
  char *small = malloc(cap ? cap : 1);
  long k = api_decode_key(in, size, small, cap);
  FUZZ_CHECK(k < 0 || (size_t)k <= cap);
  if (n >= 0 && (size_t)n <= cap)
    FUZZ_CHECK(k == n && memcmp(small, out, (size_t)n) == 0);
  free(small);
  return 0;
}
