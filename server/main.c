/* main.c - the bufcache binary: configuration, the heap, the index, the
 * API, then the server until a signal drains it. */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "cache.h"
#include "gc.h"
#include "cgroup.h"
#include "server.h"

#ifndef BUFCACHE_VERSION
#define BUFCACHE_VERSION "dev"
#endif

/* The GNU build ID of the running binary, as hex (for logs and profiles). */
static int find_build_id(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  char *out = arg;
  if (info->dlpi_name && info->dlpi_name[0])
    return 0; /* the main program has an empty name */
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE)
      continue;
    const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
    const char *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)p;
      const char *name = p + sizeof(*nh);
      const unsigned char *desc =
          (const unsigned char *)name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
          memcmp(name, "GNU", 4) == 0) {
        for (unsigned k = 0; k < nh->n_descsz && k < 32; k++)
          sprintf(out + 2 * k, "%02x", desc[k]);
        return 1;
      }
      p = (const char *)desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return 0;
}

static void log_cycle(const gc_cycle_info_t *c) {
  if (!srv_log_enabled(SRV_LOG_DEBUG))
    return;
  srv_log(SRV_LOG_DEBUG, "gc cycle",
          "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:b}", "num",
          (json_int_t)c->num, "pause_start_ns", (json_int_t)c->pause_start_ns,
          "mark_ns", (json_int_t)c->mark_ns, "pause_end_ns",
          (json_int_t)c->pause_end_ns, "sweep_ns", (json_int_t)c->sweep_ns,
          "heap_before", (json_int_t)c->heap_before, "heap_after",
          (json_int_t)c->heap_after, "live", (json_int_t)c->live, "goal",
          (json_int_t)c->goal, "cpu_fraction", c->cpu_fraction, "forced",
          (int)c->forced);
}

int main(int argc, char **argv) {
  srv_config_t cfg;
  int rc = srv_config_parse(&cfg, argc, argv);
  if (rc == 1)
    return 0;
  if (rc != 0)
    return 2;
  srv_log_configure((enum srv_log_level)cfg.log_level, cfg.log_json);
  char build_id[65] = "unknown";
  dl_iterate_phdr(find_build_id, build_id);
  srv_log(SRV_LOG_INFO, "starting bufcache", "{s:s,s:s}", "version",
          BUFCACHE_VERSION, "build_id", build_id);
  srv_config_log(&cfg);
  srv__memory_limit_log(&cfg);
  gc_config_t gcfg = {.memory_limit = cfg.memory_limit,
                      .gc_percent = cfg.gc_percent,
                      .gctrace = cfg.gctrace,
                      .nprocs = cfg.workers};
  if ((rc = gc_init(&gcfg)) != 0) {
    fprintf(stderr, "bufcache: cannot reserve the heap: %s\n",
            bc_strerror(rc));
    return 1;
  }
  gc_set_mem_profile_rate((int64_t)cfg.mem_profile_rate);
  cache_t *cache = cache_new(NULL);
  if (!cache || api_init(cache) != 0 || gc_start() != 0) {
    fprintf(stderr, "bufcache: out of memory at start-up\n");
    return 1;
  }
  api_set_cmdline(argc, argv);
  gc_set_cycle_observer(log_cycle);
  rc = srv_run(&cfg, &api_data_handler, &api_admin_handler);
  /* Entries own malloc'd HTTP responses that only their finalizers free:
   * drop every entry and run one last cycle so a clean exit leaks nothing
   * (LeakSanitizer checks this in the ASan test run). */
  cache_evict(cache, 0);
  gc_collect(NULL);
  gc_stop();
  api_close();
  cache_free(cache);
  gc_close();
  return rc;
}
