/* fuzz_request.c - whole requests: raw bytes into an in-process
 * libmicrohttpd daemon with bufcache's real callbacks and data handlers
 * (api/, server/, cache/, gc/ as in the binary), one connection per input
 * (server/fuzz_support.c). Input is what a client writes on one connection:
 * pipelined requests, bodies, chunked framing, garbage.
 * Properties: no sanitizer report; the connection always ends (no hang);
 * the first answer is never a 500 (a handler's internal error). */
#include <sanitizer/lsan_interface.h>
#include <string.h>

#include "api.h"
#include "cache.h"
#include "fuzz.h"
#include "fuzz_support.h"
#include "gc.h"
#include "gc_internal.h"
#include "server.h"

static bool echo; /* BUFCACHE_FUZZ_ECHO=1: print each response (triage) */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* small limits so the heap and the index stay small over millions of
   * inputs; the rest is the binary's defaults */
  char *args[] = {"bufcache-fuzz", "--workers", "1", "--memory-limit",
                  "64MiB", "--max-value-size", "1MiB", NULL};
  srv_config_t cfg;
  if (srv_config_parse(&cfg, 7, args) != 0)
    abort();
  gc_config_t gcfg = {.memory_limit = cfg.memory_limit,
                      .gc_percent = cfg.gc_percent,
                      .nprocs = 1};
  if (gc_init(&gcfg) != 0)
    abort();
  /* Entries live in the gc heap (mmap'd, which LeakSanitizer does not scan)
   * and own malloc'd MHD responses: let LSan see the committed heap. */
  __lsan_register_root_region((void *)gc__heap.base, gc__heap.reserved);
  const char *e = getenv("BUFCACHE_FUZZ_ECHO");
  echo = e && *e == '1';
  cache_t *cache = cache_new(NULL);
  if (!cache || api_init(cache) != 0 || gc_start() != 0 ||
      srv_fuzz_start(&cfg, &api_data_handler) != 0)
    abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 18)
    return 0;
  static char resp[8192];
  long n = srv_fuzz_connection(data, size, resp, echo ? sizeof(resp) : 64);
  if (echo)
    fprintf(stderr, "--- %ld response bytes:\n%.*s\n---\n", n,
            (int)(n < (long)sizeof(resp) ? n : (long)sizeof(resp)), resp);
  FUZZ_CHECK(n >= 0); /* -1: the connection never ended */
  if (n >= 12 && memcmp(resp, "HTTP/1.1 ", 9) == 0)
    FUZZ_CHECK(memcmp(resp + 9, "500", 3) != 0);
  return 0;
}
