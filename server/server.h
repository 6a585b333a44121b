/* server.h - the process: configuration, worker threads (a libuv loop and a
 * libmicrohttpd daemon each), request contexts, signals and drain.
 *
 * The request life cycle is described at the top of server/worker.c.
 */
#ifndef SERVER_H
#define SERVER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "gc.h"

/* ---- configuration ------------------------------------------------------- */

typedef struct srv_addr {
  char host[64];
  uint16_t port;
} srv_addr_t;

typedef struct srv_config {
  srv_addr_t listen, admin_listen;
  int workers;
  uint64_t memory_limit;
  uint64_t max_value_size;
  int gc_percent; /* GC_PERCENT_OFF for "off" */
  uint64_t request_timeout_ns, max_request_timeout_ns, drain_timeout_ns,
      idle_timeout_ns;
  uint64_t max_connections;
  uint64_t conn_memory; /* per-connection MHD pool: header size limit */
  bool gctrace;
  const char *memory_limit_source; /* "flag", "env", "default" */
} srv_config_t;

/* Parses flags and BUFCACHE_* variables (a flag wins over its variable).
 * Returns 0, 1 when --help was printed (exit 0), or 2 after printing a
 * message naming the bad flag (exit 2). */
int srv_config_parse(srv_config_t *cfg, int argc, char **argv);
void srv_config_usage(FILE *out);

/* ---- request contexts ---------------------------------------------------- */

typedef struct srv_worker srv_worker_t;

enum srv_cause {
  SRV_CAUSE_NONE = 0,
  SRV_CAUSE_COMPLETED,
  SRV_CAUSE_CLIENT_GONE,
  SRV_CAUSE_DEADLINE,
  SRV_CAUSE_SHUTDOWN,
  SRV_CAUSE__COUNT
};

#define SRV_CTX_ROOTS 2
#define SRV_CTX_API_BYTES 640

/* One per request, from the worker's pool. Owned by the worker thread.
 * roots[] are gc roots: the collector scans them while the world is stopped
 * (the entry being served, the upload buffer). */
typedef struct srv_ctx {
  void *pool_link; /* first word: the pool's free-list link */
  srv_worker_t *worker;
  struct MHD_Connection *conn;
  struct srv_ctx *prev, *next; /* the worker's in-flight list */
  uint64_t start_ns, deadline_ns;
  uint8_t cause;
  void *roots[SRV_CTX_ROOTS];
  /* opaque per-request state for the handler (api) */
  _Alignas(16) unsigned char api[SRV_CTX_API_BYTES];
} srv_ctx_t;

/* Handler table the binary passes in (api implements it). */
typedef struct srv_handler {
  /* Called for every access-handler call of a request, with its context
   * (first == true on the first call). Same contract as MHD's access
   * handler otherwise. */
  enum MHD_Result (*access)(srv_ctx_t *ctx, bool first, const char *url,
                            const char *method, const char *upload,
                            size_t *upload_size);
  /* Called once when MHD reports the request finished. */
  void (*completed)(srv_ctx_t *ctx, enum MHD_RequestTerminationCode toe);
} srv_handler_t;

/* ---- workers -------------------------------------------------------------- */

gc_mutator_t *srv_worker_mutator(const srv_worker_t *w); /* NULL for admin */
int srv_worker_id(const srv_worker_t *w);
bool srv_worker_is_admin(const srv_worker_t *w);

/* Process-wide state the handlers read. */
bool srv_draining(void);
const srv_config_t *srv_config(void);

typedef struct srv_stats {
  uint64_t inflight;
  uint64_t requests;
  uint64_t cancels[SRV_CAUSE__COUNT];
  uint64_t connections;
} srv_stats_t;
void srv_read_stats(srv_stats_t *st);

/* Runs the server until SIGTERM/SIGINT and the drain finish. Prints the
 * listening addresses to stdout once bound. Returns the exit code. */
int srv_run(const srv_config_t *cfg, const srv_handler_t *data,
            const srv_handler_t *admin);

#endif
