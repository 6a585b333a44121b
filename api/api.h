/* api.h - routing and handlers: /v1/buffers, health, /debug/...; JSON via
 * jansson. Maps error codes to HTTP statuses in one place (api/api.c). */
#ifndef API_H
#define API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "server.h"

/* Creates the API's state over the given cache; must run before srv_run. */
int api_init(cache_t *cache);
void api_close(void);

/* Handler tables for the two listeners. */
extern const srv_handler_t api_data_handler;
extern const srv_handler_t api_admin_handler;

/* ---- parsers (pure functions; unit-tested and fuzzed) -------------------- */

/* Strict percent-decoding of a key: "%XX" with two hex digits only; the
 * result must be 1..CACHE_MAX_KEY bytes with no control bytes (0x00-0x1f,
 * 0x7f). Returns the decoded length, or a negative API_KEY_* code. */
enum {
  API_KEY_EMPTY = -1,
  API_KEY_TOO_LONG = -2,
  API_KEY_BAD_ESCAPE = -3,
  API_KEY_CONTROL = -4,
};
long api_decode_key(const char *in, size_t inlen, char *out, size_t outcap);

/* Percent-decodes a query value ('+' is a space); -1 on a bad escape. */
long api_decode_query(const char *in, size_t inlen, char *out, size_t outcap);

/* Formats a strong ETag: "\"<16 hex>\"" plus NUL; buf needs 19 bytes. */
void api_format_etag(uint64_t etag, char buf[19]);

#endif
