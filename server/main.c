/* main.c - the bufcache binary: configuration, the heap, the index, the
 * API, then the server until a signal drains it. */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "cache.h"
#include "gc.h"
#include "server.h"

int main(int argc, char **argv) {
  srv_config_t cfg;
  int rc = srv_config_parse(&cfg, argc, argv);
  if (rc == 1)
    return 0;
  if (rc != 0)
    return 2;
  gc_config_t gcfg = {.memory_limit = cfg.memory_limit,
                      .gc_percent = cfg.gc_percent,
                      .gctrace = cfg.gctrace,
                      .nprocs = cfg.workers};
  if ((rc = gc_init(&gcfg)) != 0) {
    fprintf(stderr, "bufcache: cannot reserve the heap: %s\n",
            bc_strerror(rc));
    return 1;
  }
  cache_t *cache = cache_new(NULL);
  if (!cache || api_init(cache) != 0 || gc_start() != 0) {
    fprintf(stderr, "bufcache: out of memory at start-up\n");
    return 1;
  }
  rc = srv_run(&cfg, &api_data_handler, &api_admin_handler);
  gc_stop();
  api_close();
  cache_free(cache);
  gc_close();
  return rc;
}
