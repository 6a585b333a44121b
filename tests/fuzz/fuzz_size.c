/* fuzz_size.c - bc_parse_size (--memory-limit, --max-value-size, PUT
 * /debug/memory-limit) and bc_parse_u64 (Content-Length). Properties: a
 * failed parse writes nothing; bc_parse_u64 agrees with 128-bit arithmetic;
 * a plain number of bytes parses the same either way; a unit multiplies. */
#include <string.h>

#include "bc.h"
#include "fuzz.h"

#define SENTINEL 0x5a5a5a5a5a5a5a5aull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  uint64_t u = SENTINEL, z = SENTINEL;
  int ru = bc_parse_u64(s, size, &u);
  int rz = bc_parse_size(s, size, &z);
  FUZZ_CHECK(ru == 0 || ru == BC_EINVAL || ru == BC_ERANGE);
  FUZZ_CHECK(rz == 0 || rz == BC_EINVAL || rz == BC_ERANGE);
  if (ru != 0)
    FUZZ_CHECK(u == SENTINEL);
  if (rz != 0)
    FUZZ_CHECK(z == SENTINEL);
  /* the reference: digits only, value below 2^64 */
  bool digits = size > 0;
  unsigned __int128 ref = 0;
  bool over = false;
  for (size_t i = 0; i < size; i++) {
    if (s[i] < '0' || s[i] > '9') {
      digits = false;
      break;
    }
    ref = ref * 10 + (unsigned)(s[i] - '0');
    if (ref > UINT64_MAX) {
      over = true;
      ref = (unsigned __int128)UINT64_MAX + 1;
    }
  }
  if (!digits) /* BC_ERANGE when the digits before the junk overflow */
    FUZZ_CHECK(ru != 0);
  else if (over)
    FUZZ_CHECK(ru == BC_ERANGE);
  else
    FUZZ_CHECK(ru == 0 && u == (uint64_t)ref);
  if (ru == 0)
    FUZZ_CHECK(rz == 0 && z == u);
  /* "N<unit>" with an integer N: exactly N * unit */
  if (rz == 0 && size >= 2 && size < 40) {
    size_t d = 0;
    while (d < size && s[d] >= '0' && s[d] <= '9')
      d++;
    if (d > 0 && d < size && s[d] != '.') {
      uint64_t n;
      if (bc_parse_u64(s, d, &n) == 0) {
        char lower[4] = {0};
        for (size_t k = 0; k < size - d && k < 3; k++)
          lower[k] = (char)(s[d + k] | 0x20);
        uint64_t mul = strcmp(lower, "kib") == 0   ? 1ull << 10
                       : strcmp(lower, "mib") == 0 ? 1ull << 20
                       : strcmp(lower, "gib") == 0 ? 1ull << 30
                       : strcmp(lower, "k") == 0   ? 1000
                                                   : 0;
        if (mul)
          FUZZ_CHECK((unsigned __int128)n * mul == z);
      }
    }
  }
  return 0;
}
