/* fuzz_route.c - the router: api_route on both listeners, then what the
 * data handler does with a /v1/buffers/ URL (the key decoder) and its query
 * (MHD-style '&'/'=' split, api_decode_query, the ttl's Go duration).
 * Input: "METHOD URL" (the first space splits; NUL-terminated copies, as
 * MHD passes them). Properties: ids are in range; a buffers route is
 * exactly a "/v1/buffers/" prefix; debug routes never come from the data
 * listener. */
#include <string.h>

#include "api.h"
#include "api_internal.h"
#include "fuzz.h"

#define PREFIX "/v1/buffers/"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16)
    return 0;
  const uint8_t *sp = memchr(data, ' ', size);
  size_t mlen = sp ? (size_t)(sp - data) : 0;
  char *method = malloc(mlen + 1);
  memcpy(method, data, mlen);
  method[mlen] = 0;
  size_t ulen = sp ? size - mlen - 1 : size;
  char *url = malloc(ulen + 1);
  memcpy(url, sp ? sp + 1 : data, ulen);
  url[ulen] = 0;
  /* MHD splits the query off at '?' before the handler sees the URL */
  char *q = strchr(url, '?');
  if (q)
    *q++ = 0;

  unsigned mid, aid;
  unsigned route = api_route(url, method, false, &mid);
  unsigned admin = api_route(url, method, true, &aid);
  FUZZ_CHECK(route < R__COUNT && admin < R__COUNT);
  FUZZ_CHECK(mid < M__COUNT && mid == aid);
  FUZZ_CHECK((route == R_BUFFER) ==
             (strncmp(url, PREFIX, sizeof(PREFIX) - 1) == 0));
  /* debug routes only on the admin listener; shared routes agree */
  if (strncmp(url, "/debug/", 7) == 0)
    FUZZ_CHECK(route == R_NOTFOUND);
  FUZZ_CHECK(route == admin || route == R_NOTFOUND || admin == R_NOTFOUND);
  FUZZ_CHECK(admin != R_BUFFER);
  if (route == R_BUFFER) {
    const char *raw = url + sizeof(PREFIX) - 1;
    char key[CACHE_MAX_KEY];
    long n = api_decode_key(raw, strlen(raw), key, sizeof(key));
    FUZZ_CHECK(n >= API_KEY_CONTROL && n <= CACHE_MAX_KEY);
  }
  for (char *arg = q; arg && *arg;) {
    char *amp = strchr(arg, '&');
    if (amp)
      *amp = 0;
    char *eq = strchr(arg, '=');
    if (eq && strcmp(eq + 1, "") != 0) {
      char buf[64];
      long n = api_decode_query(eq + 1, strlen(eq + 1), buf, sizeof(buf));
      uint64_t ns;
      if (n > 0)
        (void)bc_parse_duration(buf, (size_t)n, true, &ns);
    }
    arg = amp ? amp + 1 : NULL;
  }
  free(method);
  free(url);
  return 0;
}
