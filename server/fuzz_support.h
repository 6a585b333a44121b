/* fuzz_support.h - test-only (fuzz builds): one data worker's daemon run in
 * the calling thread with the real handlers, fed raw bytes through a
 * socketpair (MHD_add_connection). See server/fuzz_support.c. */
#ifndef SERVER_FUZZ_SUPPORT_H
#define SERVER_FUZZ_SUPPORT_H

#include <stddef.h>

#include "server.h"

/* Sets up the worker on this thread: the configuration srv_config() returns,
 * the context pools, a gc mutator (unparked), a libuv loop, and an MHD daemon
 * with worker.c's options but no listening socket. gc_init, cache_new,
 * api_init and gc_start must have run. 0 or a BC_E* code. */
int srv_fuzz_start(const srv_config_t *cfg, const srv_handler_t *handler);

/* One connection: writes req (len bytes), half-closes, runs the daemon until
 * the server closes its end, copies up to cap response bytes into resp
 * (resp may be NULL). Returns the response bytes seen (all of them, even
 * past cap), or -1 if the connection did not end within a bounded number of
 * daemon runs (a hang). Leaves the daemon with no connection. A safepoint
 * for the collector. */
long srv_fuzz_connection(const void *req, size_t len, char *resp, size_t cap);

#endif
