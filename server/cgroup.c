/* cgroup.c - the memory limit of the process's control group.
 *
 * Why: in a container the machine's RAM is not the budget; the cgroup's
 * memory limit is, and the kernel OOM-kills the process at that limit. So the
 * default --memory-limit (see server/config.c) is a fraction of the cgroup's
 * limit when there is one, and a fraction of physical memory otherwise.
 *
 * What is read (ROOT is "/" unless --cgroup-root / BUFCACHE_CGROUP_ROOT says
 * otherwise, which the tests use to point at a fake tree):
 *   1. ROOT/proc/self/cgroup: "0::/path" names the process's cgroup in the
 *      unified (v2) hierarchy, "N:...memory...:/path" in the v1 memory one.
 *   2. cgroup v2: the unified mount is ROOT/sys/fs/cgroup (pure v2) or
 *      ROOT/sys/fs/cgroup/unified (hybrid); the limit is memory.max, where
 *      "max" means none.
 *   3. cgroup v1: the memory controller's mount is ROOT/sys/fs/cgroup/memory;
 *      the limit is memory.limit_in_bytes, where a value near 2^63 (the
 *      kernel's PAGE_COUNTER_MAX in bytes) means none.
 *   4. The directory is mount + path. Inside a container the mount usually
 *      shows the container's own cgroup at the mount point (cgroup namespace,
 *      or v1's bind mount of the container's directory) while the path still
 *      names it from the host; when mount + path does not exist the mount
 *      point itself is the process's cgroup.
 *   5. Limits are hierarchical: the directory and each ancestor up to the
 *      mount point are read and the smallest limit wins (a pod's limit above
 *      a container without one still applies).
 *   v2 is read first; v1 only when v2 gives no limit (hybrid hosts keep the
 *   memory controller on v1). memory.high and swap limits are not read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cgroup.h"

/* v1 reports "no limit" as PAGE_COUNTER_MAX * page size (0x7ffffffffffff000
 * with 4 KiB pages); anything this large is no limit on any machine. */
#define UNLIMITED_FLOOR ((uint64_t)1 << 62)

#define PATHLEN 4096

/* dst = root + rel (rel starts with '/'); false if it does not fit. */
static bool join(char *dst, const char *root, const char *rel) {
  size_t rl = strlen(root);
  while (rl > 0 && root[rl - 1] == '/')
    rl--;
  int n = snprintf(dst, PATHLEN, "%.*s%s", (int)rl, root, rel);
  return n > 0 && n < PATHLEN;
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Reads one limit file: returns the limit, or 0 for none/unreadable. */
static uint64_t read_limit(const char *file) {
  FILE *f = fopen(file, "re");
  if (!f)
    return 0;
  char buf[64];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
    buf[--n] = 0;
  if (n == 0 || !strcmp(buf, "max"))
    return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (buf[i] < '0' || buf[i] > '9')
      return 0;
    if (v > (UINT64_MAX - 9) / 10)
      return 0;
    v = v * 10 + (uint64_t)(buf[i] - '0');
  }
  return v >= UNLIMITED_FLOOR ? 0 : v;
}

/* The cgroup paths of the process: v2 ("0::/p") and v1 memory
 * ("N:a,memory:/p"). Each is left empty when absent. */
static void read_proc_cgroup(const char *root, char *v2, char *v1) {
  char file[PATHLEN];
  v2[0] = v1[0] = 0;
  if (!join(file, root, "/proc/self/cgroup"))
    return;
  FILE *f = fopen(file, "re");
  if (!f)
    return;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) > 0) {
    if (line[len - 1] == '\n')
      line[--len] = 0;
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2 || c2[1] != '/' || strlen(c2 + 1) >= PATHLEN)
      continue;
    *c1 = *c2 = 0;
    const char *id = line, *ctrls = c1 + 1, *path = c2 + 1;
    if (!strcmp(id, "0") && ctrls[0] == 0) {
      strcpy(v2, path);
      continue;
    }
    /* ctrls is a comma-separated list: look for the "memory" token */
    for (char *save = NULL, *t = strtok_r((char *)ctrls, ",", &save); t;
         t = strtok_r(NULL, ",", &save))
      if (!strcmp(t, "memory")) {
        strcpy(v1, path);
        break;
      }
  }
  free(line);
  fclose(f);
}

/* Steps 4 and 5: the smallest limit in fname from mount+path up to mount. */
static bool walk(const char *mount, const char *path, const char *fname,
                 int version, srv_cgroup_mem_t *out) {
  char dir[PATHLEN], file[PATHLEN];
  /* a path outside the namespace's root ("/../x") or one the mount does not
   * show: the mount point is the process's cgroup */
  if (!path[0] || strstr(path, "/..") || !join(dir, mount, path) ||
      !is_dir(dir))
    snprintf(dir, sizeof(dir), "%s", mount);
  size_t ml = strlen(mount);
  bool found = false;
  for (;;) {
    size_t dl = strlen(dir);
    while (dl > ml && dir[dl - 1] == '/')
      dir[--dl] = 0;
    if (snprintf(file, sizeof(file), "%s/%s", dir, fname) < PATHLEN) {
      uint64_t v = read_limit(file);
      if (v > 0 && (!found || v < out->limit)) {
        found = true;
        out->limit = v;
        out->version = version;
        snprintf(out->file, sizeof(out->file), "%s", file);
      }
    }
    if (dl <= ml)
      break;
    char *slash = strrchr(dir, '/');
    if (!slash || (size_t)(slash - dir) < ml)
      break;
    *slash = 0;
  }
  return found;
}

bool srv__cgroup_memory_limit(const char *root, srv_cgroup_mem_t *out) {
  memset(out, 0, sizeof(*out));
  if (!root || !root[0])
    root = "/";
  char v2path[PATHLEN], v1path[PATHLEN], mount[PATHLEN], probe[PATHLEN];
  read_proc_cgroup(root, v2path, v1path);

  /* v2: pure unified, else hybrid's unified */
  static const char *const v2mounts[] = {"/sys/fs/cgroup",
                                         "/sys/fs/cgroup/unified"};
  for (size_t i = 0; i < 2; i++) {
    if (!join(mount, root, v2mounts[i]) ||
        snprintf(probe, sizeof(probe), "%s/cgroup.controllers", mount) >=
            PATHLEN ||
        !is_file(probe))
      continue;
    if (walk(mount, v2path[0] ? v2path : "/", "memory.max", 2, out))
      return true;
    break;
  }
  /* v1: the memory controller's own mount */
  if (join(mount, root, "/sys/fs/cgroup/memory") && is_dir(mount) &&
      walk(mount, v1path[0] ? v1path : "/", "memory.limit_in_bytes", 1, out))
    return true;
  memset(out, 0, sizeof(*out));
  return false;
}

/* bytes as "1.5GiB", "192MiB", "512B" */
static void format_size(uint64_t bytes, char *buf, size_t len) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  size_t u = 0;
  double v = (double)bytes;
  while (v >= 1024 && u + 1 < BC_ARRAY_LEN(units)) {
    v /= 1024;
    u++;
  }
  if (u == 0 || v - (double)(uint64_t)v < 0.05 ||
      v - (double)(uint64_t)v > 0.95)
    snprintf(buf, len, "%.0f%s", v, units[u]);
  else
    snprintf(buf, len, "%.1f%s", v, units[u]);
}

/* ---- the default --memory-limit ------------------------------------------ */

static char cgroup_root[1024] = "/"; /* written while parsing the config */
static char limit_note[sizeof(((srv_cgroup_mem_t *)0)->file) + 128];
static char limit_file[sizeof(((srv_cgroup_mem_t *)0)->file)];

int srv__cgroup_set_root(const char *root) {
  if (!root[0] || strlen(root) >= sizeof(cgroup_root))
    return BC_EINVAL;
  strcpy(cgroup_root, root);
  return 0;
}

/* pct% of v without overflow */
static uint64_t percent_of(uint64_t v, unsigned pct) {
  return v / 100 * pct + v % 100 * pct / 100;
}

void srv__memory_limit_default(srv_config_t *cfg) {
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
  uint64_t ram = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
  srv_cgroup_mem_t cg;
  bool have_cg = srv__cgroup_memory_limit(cgroup_root, &cg);
  char lim[32], base[32];
  limit_file[0] = 0;
  if (have_cg && (ram == 0 || cg.limit < ram)) {
    cfg->memory_limit = percent_of(cg.limit, SRV_MEMLIMIT_CGROUP_PCT);
    cfg->memory_limit_source = "cgroup";
    format_size(cg.limit, lim, sizeof(lim));
    snprintf(limit_file, sizeof(limit_file), "%s", cg.file);
    snprintf(limit_note, sizeof(limit_note), "cgroup v%d %s = %s x %d.%02d",
             cg.version, cg.file, lim, SRV_MEMLIMIT_CGROUP_PCT / 100,
             SRV_MEMLIMIT_CGROUP_PCT % 100);
    return;
  }
  cfg->memory_limit_source = "default";
  if (ram == 0) {
    cfg->memory_limit = (uint64_t)1 << 30;
    snprintf(limit_note, sizeof(limit_note), "physical memory unknown");
    return;
  }
  cfg->memory_limit = percent_of(ram, SRV_MEMLIMIT_RAM_PCT);
  format_size(ram, base, sizeof(base));
  int n =
      snprintf(limit_note, sizeof(limit_note), "physical memory %s x %d.%02d",
               base, SRV_MEMLIMIT_RAM_PCT / 100, SRV_MEMLIMIT_RAM_PCT % 100);
  size_t off = n > 0 && (size_t)n < sizeof(limit_note) ? (size_t)n : 0;
  if (have_cg) {
    format_size(cg.limit, lim, sizeof(lim));
    snprintf(limit_note + off, sizeof(limit_note) - off,
             "; cgroup v%d %s = %s is not below it", cg.version, cg.file, lim);
  } else {
    snprintf(limit_note + off, sizeof(limit_note) - off,
             "; no cgroup memory limit");
  }
}

void srv__memory_limit_log(const srv_config_t *cfg) {
  char lim[32], msg[sizeof(limit_note) + 64];
  const char *src = cfg->memory_limit_source ? cfg->memory_limit_source : "";
  format_size(cfg->memory_limit, lim, sizeof(lim));
  if (!strcmp(src, "flag"))
    snprintf(msg, sizeof(msg), "memory limit %s (flag --memory-limit)", lim);
  else if (!strcmp(src, "env"))
    snprintf(msg, sizeof(msg), "memory limit %s (env BUFCACHE_MEMORY_LIMIT)",
             lim);
  else
    snprintf(msg, sizeof(msg), "memory limit %s (%s)", lim, limit_note);
  srv_log(SRV_LOG_INFO, msg, "{s:I,s:s,s:s}", "memory_limit",
          (json_int_t)cfg->memory_limit, "source", src, "cgroup_file",
          limit_file);
}
