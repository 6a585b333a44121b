/* config.c - flags and their BUFCACHE_* environment twins (a flag wins). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cgroup.h"
#include "server.h"

/* K_TOKEN_FILE: the flag names a file holding a secret; its environment
 * twin (env_name) is not derived from the flag's name and carries the secret
 * itself, so it never sits in a file or on a command line. */
enum kind {
  K_ADDR, K_INT, K_SIZE, K_DURATION, K_TTL, K_PERCENT, K_BOOL, K_TOKEN_FILE,
  K_LEVEL, K_FORMAT, K_FRACTION, K_REQID, K_CGROUP_ROOT,
  K_SIZE0 /* a size, 0 allowed */};

typedef struct flag {
  const char *name; /* without the leading dashes */
  enum kind kind;
  size_t off;
  const char *def; /* default, as the user would type it; NULL = computed */
  const char *help;
} flag_t;

#define OFF(f) offsetof(srv_config_t, f)

static const flag_t flags[] = {
    {"listen", K_ADDR, OFF(listen), "127.0.0.1:8080",
     "data API address (HOST:PORT; port 0 picks a free one)"},
    {"admin-listen", K_ADDR, OFF(admin_listen), "127.0.0.1:6060",
     "admin address for /debug/*, /metrics, /healthz"},
    {"workers", K_INT, OFF(workers), NULL,
     "worker threads (default: online CPUs)"},
    {"memory-limit", K_SIZE, OFF(memory_limit), NULL,
     "soft memory limit, e.g. 512MiB, 2GiB (default: 75% of the cgroup's "
     "memory limit, else 50% of RAM)"},
    {"max-value-size", K_SIZE, OFF(max_value_size), "64MiB",
     "largest value a PUT may store"},
    {"gc-percent", K_PERCENT, OFF(gc_percent), "100",
     "GOGC: heap growth over the live heap before a cycle, or off"},
    {"request-timeout", K_DURATION, OFF(request_timeout_ns), "30s",
     "default deadline of a request (Go duration)"},
    {"max-request-timeout", K_DURATION, OFF(max_request_timeout_ns), "5m",
     "cap on a per-request X-Request-Timeout"},
    {"drain-timeout", K_DURATION, OFF(drain_timeout_ns), "10s",
     "how long SIGTERM waits for in-flight requests"},
    {"idle-timeout", K_DURATION, OFF(idle_timeout_ns), "60s",
     "an idle connection is closed after this long"},
    {"max-connections", K_SIZE, OFF(max_connections), "16384",
     "open connections on the data listener, all workers together"},
    {"max-connections-per-ip", K_SIZE0, OFF(max_connections_per_ip), "0",
     "open data connections one client address may hold, all workers "
     "together (0 = no limit; each worker takes its share, rounded up)"},
    {"max-header-size", K_SIZE, OFF(conn_memory), "32KiB",
     "per-connection buffer for the request line and headers"},
    {"default-ttl", K_TTL, OFF(default_ttl_ns), "0",
     "TTL of a PUT without ?ttl= (Go duration or seconds; 0 = none)"},
    {"gctrace", K_BOOL, OFF(gctrace), "false",
     "print one line per GC cycle to stderr"},
    {"admin-token-file", K_TOKEN_FILE, OFF(admin_token), NULL,
     "file with a bearer token every admin request must carry"},
    {"log-level", K_LEVEL, OFF(log_level), "info", "debug, info, warn, error"},
    {"log-format", K_FORMAT, OFF(log_json), "json",
     "json (one object per line) or text"},
    {"access-log", K_BOOL, OFF(access_log), "true",
     "one log line per finished request"},
    {"access-log-sample", K_FRACTION, OFF(access_log_sample), "1",
     "fraction of requests in the access log (errors always are)"},
    {"request-id-header", K_REQID, OFF(request_id_always), "incoming",
     "X-Request-Id on responses: echo the client's (incoming) or also the "
     "generated one on every response (always; GET hits then allocate)"},
    {"max-dashboard-streams", K_INT, OFF(max_dashboard_streams), "8",
     "concurrent /debug/dashboard/events streams on the admin listener "
     "(1 to 256)"},
    {"mem-profile-rate", K_SIZE0, OFF(mem_profile_rate), "512KiB",
     "mean bytes between allocation samples for /debug/pprof/heap (Go's "
     "MemProfileRate; 0 = off, 1 = every allocation)"},
    /* K_CGROUP_ROOT: kept by server/cgroup.c, not in srv_config_t */
    {"cgroup-root", K_CGROUP_ROOT, 0, "/",
     "directory standing for / when the default memory limit reads "
     "/proc/self/cgroup and /sys/fs/cgroup (for tests)"},
};

/* where each flag's value came from, and its text, for srv_config_log */
static const char *flag_source[BC_ARRAY_LEN(flags)];
static const char *flag_text[BC_ARRAY_LEN(flags)];

#define TOKEN_ENV "BUFCACHE_ADMIN_TOKEN"

/* The flag's environment twin: BUFCACHE_ + the name in upper case with '_'
 * for '-' (K_TOKEN_FILE: TOKEN_ENV). */
static const char *env_name(const flag_t *f, char buf[64]) {
  if (f->kind == K_TOKEN_FILE)
    return TOKEN_ENV;
  size_t n = (size_t)snprintf(buf, 64, "BUFCACHE_");
  for (const char *p = f->name; *p && n + 1 < 64; p++)
    buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
  buf[n] = 0;
  return buf;
}

void srv_config_usage(FILE *out) {
  fprintf(out, "usage: bufcache [flags]\n\n"
               "An HTTP/1.1 cache of binary buffers with a garbage-collected "
               "heap.\nEvery flag has an environment twin: --max-value-size "
               "is BUFCACHE_MAX_VALUE_SIZE.\nA flag wins over its "
               "variable.\n\nflags:\n");
  for (size_t i = 0; i < BC_ARRAY_LEN(flags); i++) {
    const flag_t *f = &flags[i];
    char buf[64];
    const char *envname = env_name(f, buf);
    if (f->kind == K_TOKEN_FILE) {
      fprintf(out, "  --%-22s %s\n  %24s (env %s: the token itself)\n",
              f->name, f->help, "", envname);
      continue;
    }
    fprintf(out, "  --%-22s %s\n  %24s (env %s%s%s)\n", f->name, f->help, "",
            envname, f->def ? ", default " : "", f->def ? f->def : "");
  }
  fprintf(out, "  --%-22s %s\n", "help", "print this and exit");
}

static int parse_addr(const char *v, srv_addr_t *a) {
  const char *colon = strrchr(v, ':');
  if (!colon)
    return BC_EINVAL;
  size_t hl = (size_t)(colon - v);
  if (hl >= sizeof(a->host))
    return BC_EINVAL;
  uint64_t port;
  if (bc_parse_u64(colon + 1, strlen(colon + 1), &port) || port > 65535)
    return BC_EINVAL;
  memcpy(a->host, v, hl);
  a->host[hl] = 0;
  if (hl == 0)
    strcpy(a->host, "0.0.0.0");
  /* strip [] around IPv6 literals */
  if (a->host[0] == '[') {
    size_t l = strlen(a->host);
    if (l < 2 || a->host[l - 1] != ']')
      return BC_EINVAL;
    memmove(a->host, a->host + 1, l - 2);
    a->host[l - 2] = 0;
  }
  a->port = (uint16_t)port;
  return 0;
}

/* Stores a bearer token: trailing whitespace (a file's newline) dropped;
 * 1..255 visible ASCII bytes, nothing else. */
static int set_token(char *field, const char *v, size_t len) {
  while (len && isspace((unsigned char)v[len - 1]))
    len--;
  if (len == 0 || len > 255)
    return BC_EINVAL;
  for (size_t i = 0; i < len; i++)
    if (v[i] <= 0x20 || v[i] >= 0x7f)
      return BC_EINVAL;
  memcpy(field, v, len);
  field[len] = 0;
  return 0;
}

static int read_token_file(char *field, const char *path) {
  FILE *fp = fopen(path, "r");
  if (!fp) {
    fprintf(stderr, "bufcache: cannot open the admin token file %s: %s\n",
            path, strerror(errno));
    return BC_EIO;
  }
  char buf[512];
  size_t n = fread(buf, 1, sizeof(buf), fp);
  fclose(fp);
  int rc = n < sizeof(buf) ? set_token(field, buf, n) : BC_EINVAL;
  explicit_bzero(buf, sizeof(buf));
  if (rc)
    fprintf(stderr, "bufcache: the admin token file %s must hold one token "
                    "of 1 to 255 visible ASCII characters\n", path);
  return rc;
}

static int apply(srv_config_t *cfg, const flag_t *f, const char *v) {
  char *field = (char *)cfg + f->off;
  uint64_t u;
  switch (f->kind) {
  case K_ADDR:
    return parse_addr(v, (srv_addr_t *)(void *)field);
  case K_INT:
    if (bc_parse_u64(v, strlen(v), &u) || u == 0 || u > 256)
      return BC_EINVAL;
    *(int *)(void *)field = (int)u;
    return 0;
  case K_SIZE:
  case K_SIZE0:
    if (bc_parse_size(v, strlen(v), &u) || (u == 0 && f->kind == K_SIZE))
      return BC_EINVAL;
    *(uint64_t *)(void *)field = u;
    return 0;
  case K_DURATION:
    if (bc_parse_duration(v, strlen(v), false, &u) || u == 0)
      return BC_EINVAL;
    *(uint64_t *)(void *)field = u;
    return 0;
  case K_TTL: /* like ?ttl=: a Go duration or whole seconds; 0 = none */
    if (bc_parse_duration(v, strlen(v), true, &u))
      return BC_EINVAL;
    *(uint64_t *)(void *)field = u;
    return 0;
  case K_PERCENT:
    if (strcmp(v, "off") == 0) {
      *(int *)(void *)field = GC_PERCENT_OFF;
      return 0;
    }
    if (bc_parse_u64(v, strlen(v), &u) || u > 100000)
      return BC_EINVAL;
    *(int *)(void *)field = (int)u;
    return 0;
  case K_LEVEL: {
    static const char *lv[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
      if (!strcmp(v, lv[i])) {
        *(int *)(void *)field = i;
        return 0;
      }
    return BC_EINVAL;
  }
  case K_FORMAT:
    if (strcmp(v, "json") && strcmp(v, "text"))
      return BC_EINVAL;
    *(bool *)(void *)field = strcmp(v, "json") == 0;
    return 0;
  case K_REQID:
    if (strcmp(v, "always") && strcmp(v, "incoming"))
      return BC_EINVAL;
    *(bool *)(void *)field = strcmp(v, "always") == 0;
    return 0;
  case K_FRACTION: {
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d > 0 && d <= 1))
      return BC_EINVAL;
    *(double *)(void *)field = d;
    return 0;
  }
  case K_CGROUP_ROOT:
    return srv__cgroup_set_root(v);
  case K_BOOL:
    if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "on")) {
      *(bool *)(void *)field = true;
      return 0;
    }
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "off")) {
      *(bool *)(void *)field = false;
      return 0;
    }
    return BC_EINVAL;
  case K_TOKEN_FILE:
    return read_token_file(field, v);
  }
  return BC_EINVAL;
}

static const flag_t *lookup(const char *name, size_t len) {
  for (size_t i = 0; i < BC_ARRAY_LEN(flags); i++)
    if (strlen(flags[i].name) == len && !memcmp(flags[i].name, name, len))
      return &flags[i];
  return NULL;
}

int srv_config_parse(srv_config_t *cfg, int argc, char **argv) {
  memset(cfg, 0, sizeof(*cfg));
  /* 1. defaults */
  for (size_t i = 0; i < BC_ARRAY_LEN(flags); i++) {
    flag_source[i] = "default";
    flag_text[i] = flags[i].def;
    if (flags[i].def)
      BC_CHECK(apply(cfg, &flags[i], flags[i].def) == 0, "bad default");
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  cfg->workers = ncpu > 0 ? (int)(ncpu > 256 ? 256 : ncpu) : 1;
  cfg->memory_limit_source = "default"; /* computed last, if still so */
  bool set_by_flag[BC_ARRAY_LEN(flags)] = {0};

  /* 2. flags */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      srv_config_usage(stdout);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "bufcache: unexpected argument \"%s\" (see --help)\n",
              a);
      return 2;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    const flag_t *f = lookup(name, nlen);
    if (!f) {
      fprintf(stderr, "bufcache: unknown flag --%.*s (see --help)\n",
              (int)nlen, name);
      return 2;
    }
    const char *v;
    if (eq)
      v = eq + 1;
    else if (f->kind == K_BOOL)
      v = "true";
    else if (i + 1 < argc)
      v = argv[++i];
    else {
      fprintf(stderr, "bufcache: flag --%s needs a value\n", f->name);
      return 2;
    }
    if (apply(cfg, f, v) != 0) {
      fprintf(stderr, "bufcache: invalid value \"%s\" for flag --%s\n", v,
              f->name);
      return 2;
    }
    set_by_flag[f - flags] = true;
    flag_source[f - flags] = "flag";
    flag_text[f - flags] = v;
    if (!strcmp(f->name, "memory-limit"))
      cfg->memory_limit_source = "flag";
  }

  /* 3. environment, where no flag was given */
  for (size_t i = 0; i < BC_ARRAY_LEN(flags); i++) {
    if (set_by_flag[i])
      continue;
    char buf[64];
    const char *envname = env_name(&flags[i], buf);
    const char *v = getenv(envname);
    if (!v)
      continue;
    if (flags[i].kind == K_TOKEN_FILE) {
      /* the secret itself: never echoed */
      if (set_token((char *)cfg + flags[i].off, v, strlen(v)) != 0) {
        fprintf(stderr, "bufcache: %s must be 1 to 255 visible ASCII "
                        "characters\n", envname);
        return 2;
      }
      continue;
    }
    if (apply(cfg, &flags[i], v) != 0) {
      fprintf(stderr,
              "bufcache: invalid value \"%s\" for %s (flag --%s)\n", v,
              envname, flags[i].name);
      return 2;
    }
    flag_source[i] = "env";
    flag_text[i] = v;
    if (!strcmp(flags[i].name, "memory-limit"))
      cfg->memory_limit_source = "env";
  }
  if (!strcmp(cfg->memory_limit_source, "default"))
    srv__memory_limit_default(cfg);
  if (cfg->request_timeout_ns > cfg->max_request_timeout_ns)
    cfg->max_request_timeout_ns = cfg->request_timeout_ns;
  if (cfg->conn_memory < 4096) {
    fprintf(stderr, "bufcache: invalid value for flag --max-header-size: "
                    "at least 4KiB\n");
    return 2;
  }
  if (cfg->max_value_size > ((uint64_t)1 << 32) - 4096) {
    fprintf(stderr, "bufcache: invalid value for flag --max-value-size: at "
                    "most 4GiB less 4KiB\n");
    return 2;
  }
  return 0;
}

void srv_config_log(const srv_config_t *cfg) {
  json_t *o = json_object();
  for (size_t i = 0; i < BC_ARRAY_LEN(flags); i++) {
    const flag_t *f = &flags[i];
    char buf[64];
    const char *text = flag_text[i];
    const char *src = flag_source[i];
    if (!strcmp(f->name, "workers") && !text) {
      snprintf(buf, sizeof(buf), "%d", cfg->workers);
      text = buf;
      src = "default (online CPUs)";
    } else if (!strcmp(f->name, "memory-limit")) {
      snprintf(buf, sizeof(buf), "%llu",
               (unsigned long long)cfg->memory_limit);
      text = buf;
      src = cfg->memory_limit_source;
    }
    json_object_set_new(o, f->name,
                        json_pack("{s:s,s:s}", "value", text ? text : "",
                                  "source", src));
  }
  srv_log(SRV_LOG_INFO, "configuration", "{s:o}", "config", o);
}
