/* fuzz_query.c - api_decode_query: query values such as ?ttl=, as the
 * client sent them. Properties: the output is never longer than the input
 * and never overruns the buffer (exact-size heap buffers for ASan); input
 * without '%' or '+' decodes to itself; the decoded ttl value, when it
 * decodes, goes through bc_parse_duration as the PUT handler does. */
#include <string.h>

#include "api.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16)
    return 0;
  const char *in = (const char *)data;
  char *out = malloc(size ? size : 1);
  long n = api_decode_query(in, size, out, size);
  FUZZ_CHECK(n >= -1 && n <= (long)size);
  if (!memchr(in, '%', size) && !memchr(in, '+', size))
    FUZZ_CHECK(n == (long)size && memcmp(out, in, size) == 0);
  if (n >= 0 && memchr(out, '+', (size_t)n))
    FUZZ_CHECK(memchr(in, '%', size) != NULL); /* '+' only from %2B */
  /* what ttl_from_query does: a 64-byte buffer, then a Go duration */
  char buf[64];
  long t = api_decode_query(in, size, buf, sizeof(buf));
  FUZZ_CHECK(t >= -1 && t <= 64);
  if (t > 0) {
    uint64_t ns = 12345;
    int rc = bc_parse_duration(buf, (size_t)t, true, &ns);
    FUZZ_CHECK(rc == 0 || ns == 12345);
  }
  free(out);
  return 0;
}
