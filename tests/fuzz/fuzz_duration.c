/* fuzz_duration.c - bc_parse_duration: X-Request-Timeout, ?ttl= and the
 * duration flags. Properties: a failed parse writes nothing; accepting bare
 * seconds only widens what parses (same value otherwise); a bare number of
 * seconds is refused without a unit unless it is 0; what bc_format_duration
 * prints parses back to the same value (Go's String/ParseDuration pair). */
#include <string.h>

#include "bc.h"
#include "fuzz.h"

#define SENTINEL 0x5a5a5a5a5a5a5a5aull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  uint64_t strict = SENTINEL, bare = SENTINEL;
  int rs = bc_parse_duration(s, size, false, &strict);
  int rb = bc_parse_duration(s, size, true, &bare);
  FUZZ_CHECK(rs == 0 || rs == BC_EINVAL || rs == BC_ERANGE);
  FUZZ_CHECK(rb == 0 || rb == BC_EINVAL || rb == BC_ERANGE);
  if (rs != 0)
    FUZZ_CHECK(strict == SENTINEL);
  if (rb != 0)
    FUZZ_CHECK(bare == SENTINEL);
  if (rs == 0)
    FUZZ_CHECK(rb == 0 && bare == strict);
  if (rb == 0 && rs != 0) { /* only a bare whole number of seconds */
    size_t i = size && s[0] == '+' ? 1 : 0;
    for (; i < size; i++)
      FUZZ_CHECK(s[i] >= '0' && s[i] <= '9');
    FUZZ_CHECK(bare % 1000000000u == 0 && bare != 0);
  }
  if (rb == 0) {
    char buf[64];
    size_t n = bc_format_duration(bare, buf, sizeof(buf));
    FUZZ_CHECK(n < sizeof(buf));
    uint64_t again = SENTINEL;
    int ra = bc_parse_duration(buf, n, false, &again);
    if (bare == 0) {
      FUZZ_CHECK(ra == 0 && again == 0);
    } else {
      /* Go's Duration.String keeps every nanosecond */
      FUZZ_CHECK(ra == 0 && again == bare);
    }
  }
  return 0;
}
