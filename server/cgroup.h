/* cgroup.h - (server-internal) the memory limit of the process's control
 * group, read to pick the default --memory-limit inside a container.
 * See the top of server/cgroup.c. */
#ifndef SRV_CGROUP_H
#define SRV_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

#include "server.h"

/* The default --memory-limit, in percent of what it is taken from. */
#define SRV_MEMLIMIT_CGROUP_PCT 75 /* of the cgroup's memory limit */
#define SRV_MEMLIMIT_RAM_PCT 50 /* of physical memory, when no cgroup limit */

typedef struct srv_cgroup_mem {
  uint64_t limit;  /* bytes: the smallest limit on the path; 0 = none found */
  int version;     /* 2 (memory.max) or 1 (memory.limit_in_bytes); 0 = none */
  char file[4096]; /* the file that holds that limit, with the root prefix */
} srv_cgroup_mem_t;

/* Reads the memory limit of the calling process's cgroup: v2 first (the
 * unified hierarchy at ROOT/sys/fs/cgroup or ROOT/sys/fs/cgroup/unified),
 * then v1 (ROOT/sys/fs/cgroup/memory), for the path ROOT/proc/self/cgroup
 * names and every ancestor up to the mount (the smallest limit wins). root is
 * "/" in production; tests point it at a fake tree. Returns true and fills
 * *out when a limit was found; false (out->limit == 0) when there is none:
 * no cgroup file, "max", or v1's "unlimited" value. Never fails otherwise. */
bool srv__cgroup_memory_limit(const char *root, srv_cgroup_mem_t *out);

/* --cgroup-root: stores the directory standing for "/" (BC_EINVAL if empty
 * or too long). Called by srv_config_parse() for the default and the
 * flag or BUFCACHE_CGROUP_ROOT. */
int srv__cgroup_set_root(const char *root);

/* The default --memory-limit, when neither the flag nor its variable gave
 * one: SRV_MEMLIMIT_CGROUP_PCT of the cgroup's limit when there is one below
 * physical memory (memory_limit_source "cgroup"), else SRV_MEMLIMIT_RAM_PCT of
 * physical memory ("default"). Remembers where it came from for the log. */
void srv__memory_limit_default(srv_config_t *cfg);

/* Logs "memory limit 1.5GiB (cgroup v2 .../memory.max = 2GiB x 0.75)" with
 * the bytes, the source and the file as fields (srv_log, level info). */
void srv__memory_limit_log(const srv_config_t *cfg);

#endif
