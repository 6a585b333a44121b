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

/* Records the command line /debug/vars reports as "cmdline" (expvar's).
 * argv is borrowed: it must outlive the server (main's argv does). */
void api_set_cmdline(int argc, char **argv);

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

/* Range (RFC 9110 14.2) against a representation of size bytes. Returns
 * API_RANGE_PARTIAL with [*first, *last] (inclusive) for one satisfiable
 * byte range (bytes=a-b, bytes=a-, bytes=-n; b and n clamped to size);
 * API_RANGE_UNSATISFIABLE when no range is satisfiable (416); API_RANGE_FULL
 * when the field must be ignored and the whole value sent with 200: another
 * unit, a syntax error (b < a included), or several ranges of which at least
 * one is satisfiable (bufcache does not send multipart/byteranges). */
enum {
  API_RANGE_UNSATISFIABLE = -1,
  API_RANGE_FULL = 0,
  API_RANGE_PARTIAL = 1,
};
int api_parse_range(const char *v, size_t len, uint64_t size,
                    uint64_t *first, uint64_t *last);

/* If-Match / If-None-Match (RFC 9110 13.1.1-2): "*" or a list of
 * entity-tags (empty list elements allowed). Tags in bufcache's form
 * ("<16 lowercase hex>", api_format_etag) are stored in out[] (at most
 * cap); other well-formed tags cannot match any entry and are skipped, as
 * are weak tags (W/"...") unless weak_ok (If-None-Match compares weakly).
 * Returns API_ETAGS_ANY, the number stored (0 included: nothing can match),
 * API_ETAGS_BAD for a syntax error, API_ETAGS_TOO_MANY past cap. */
enum {
  API_ETAGS_ANY = -1,
  API_ETAGS_BAD = -2,
  API_ETAGS_TOO_MANY = -3,
};
long api_parse_etags(const char *v, size_t len, bool weak_ok, uint64_t *out,
                     size_t cap);

/* An IMF-fixdate (RFC 9110 5.6.7), "Sun, 06 Nov 1994 08:49:37 GMT", for a
 * Unix time in seconds; buf needs 30 bytes (29 and a NUL). */
void api_format_http_date(uint64_t unix_s, char buf[30]);
/* RFC 3339 in UTC with milliseconds, "2026-11-25T21:58:11.098Z"; buf needs
 * 25 bytes (24 and a NUL). */
void api_format_rfc3339_ms(uint64_t unix_ms, char buf[25]);

/* Listing cursors: 16 lowercase hex digits (a hash position, see cache.h).
 * api_parse_cursor returns 0 or -1. */
void api_format_cursor(uint64_t pos, char buf[17]);
int api_parse_cursor(const char *v, size_t len, uint64_t *pos);

/* Keys in JSON (listing). A key that is valid UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, <= U+10FFFF) is a JSON string as it is. Any other
 * key is percent-encoded: every byte outside A-Z a-z 0-9 - . _ ~ / becomes
 * %XX (upper-case hex), which is also how it is written in a URL path, and
 * the item says "key_encoding":"percent". api_percent_encode writes at most
 * 3 * len bytes and a NUL, returns the length. */
bool api_utf8_valid(const char *s, size_t len);
size_t api_percent_encode(const char *s, size_t len, char *out);

/* The routing of a request line, as a pure function (tests, fuzzing): the
 * route id (R_* in api_internal.h; 0 = no route) the data listener (admin
 * false) or the admin listener (admin true) gives url, and the method's id
 * (M_*) in *method_id. url and method are NUL-terminated, as MHD passes
 * them. */
unsigned api_route(const char *url, const char *method, bool admin,
                   unsigned *method_id);

#endif
