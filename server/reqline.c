/* reqline.c - what libmicrohttpd 0.9.75 lets through in a request head and
 * the server refuses: bytes a proxy in front may read differently.
 *
 * MHD parses the request line in place: it writes NULs at the first space,
 * at the space before the version, at '?', and at every '&' and '=' of the
 * query, and hands the handler C strings. So a NUL the client put in the
 * target silently truncates it ("PUT /v1/buffers/a\0b" would store "a"), a
 * space inside it is accepted ("GET /a b HTTP/1.1" is "/a b"), and a header
 * line with whitespace before the colon becomes a header named
 * "Transfer-Encoding " that MHD does not treat as framing while a proxy may
 * (RFC 9112 5.1 says reject it: the classic request-smuggling gap).
 *
 * srv__request_head_ok checks, on the first access-handler call:
 *   1. the target (path and query) has no SP and no control byte;
 *   2. nothing hides behind a NUL: the target MHD's URI log callback saw
 *      reaches the version, and every byte between the end of the path and
 *      the version is a NUL MHD wrote or part of a query argument MHD parsed
 *      (their pointers point into that region);
 *   3. every header name is an RFC 9110 token, and no value holds a control
 *      byte other than HTAB.
 * Costs one scan of the target and of the header fields; no allocation.
 * Left as MHD has it: a NUL inside a header value ends the value
 * ("Content-Length: 3\0 9" reads as 3); proxies in front reject NULs.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "server_internal.h"

static inline bool visible(unsigned char c) { return c > 0x20 && c != 0x7f; }

static bool visible_string(const char *s, size_t *len) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!visible((unsigned char)s[n]))
      return false;
  *len = n;
  return true;
}

/* RFC 9110 5.6.2: token = 1*tchar */
static bool tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
      (c >= 'A' && c <= 'Z'))
    return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

typedef struct arg_find {
  const char *p;
  bool found;
} arg_find_t;

static enum MHD_Result find_arg(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value) {
  (void)kind;
  arg_find_t *f = cls;
  if (key == f->p || value == f->p) {
    f->found = true;
    return MHD_NO; /* stop iterating */
  }
  return MHD_YES;
}

/* A header: its name a token, its value without control bytes but HTAB (a
 * bare CR inside a value is a line break to some proxies: RFC 9112 2.2). */
static enum MHD_Result check_field(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value) {
  (void)kind;
  bool *ok = cls;
  if (!*key)
    *ok = false;
  for (const char *k = key; *k && *ok; k++)
    *ok = tchar((unsigned char)*k);
  for (const char *v = value; v && *v && *ok; v++)
    *ok = (unsigned char)*v >= 0x20 ? *v != 0x7f : *v == '\t';
  return *ok ? MHD_YES : MHD_NO;
}

/* What MHD's URI log callback saw. It runs once MHD has cut the request
 * line at the version's space and before it replaces '?', so strlen(uri)
 * there is the whole target unless a NUL hides part of it - the one case the
 * parsed form cannot tell from an empty query ("/a\0" vs "/a?"). Kept per
 * worker thread (the callback and the handler run on the daemon's thread),
 * direct-mapped by the target's address: a slot another request line took
 * in between only means "not known", and checks 1-3 still run. */
#define URI_SLOTS 1024
static _Thread_local struct {
  const char *uri;
  size_t len;
} seen[URI_SLOTS];

static inline size_t uri_slot(const char *p) {
  return (size_t)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull) >> 54);
}

void *srv__uri_seen(void *cls, const char *uri, struct MHD_Connection *conn) {
  (void)cls;
  (void)conn;
  size_t i = uri_slot(uri);
  seen[i].uri = uri;
  seen[i].len = strlen(uri);
  return NULL; /* no per-request context from here: on_access makes it */
}

bool srv__request_head_ok(struct MHD_Connection *conn, const char *url,
                          const char *version) {
  size_t n;
  if (!visible_string(url, &n))
    return false;
  size_t i = uri_slot(url);
  if (seen[i].uri == url) {
    seen[i].uri = NULL;
    if (version && version > url && seen[i].len != (size_t)(version - 1 - url))
      return false; /* a NUL inside the target */
  }
  /* [url + n, version - 1): MHD's NULs and the query's keys and values */
  if (version && version > url + n) {
    const char *p = url + n, *end = version - 1;
    while (p < end) {
      if (!*p) {
        p++;
        continue;
      }
      arg_find_t f = {p, false};
      MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, find_arg, &f);
      if (!f.found || !visible_string(p, &n))
        return false;
      p += n;
    }
  }
  bool ok = true;
  MHD_get_connection_values(conn, MHD_HEADER_KIND, check_field, &ok);
  return ok;
}

/* One shared answer (MHD responses are refcounted and may be queued on many
 * connections and threads at once), built on first use, kept to the end. */
static struct MHD_Response *bad_head;
static pthread_once_t bad_head_once = PTHREAD_ONCE_INIT;

static void make_bad_head(void) {
  static const char body[] =
      "{\"error\":{\"code\":\"bad_request\",\"message\":\"malformed "
      "request line or header name\"}}";
  bad_head = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body,
                                             MHD_RESPMEM_PERSISTENT);
  if (bad_head) {
    MHD_add_response_header(bad_head, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    MHD_add_response_header(bad_head, MHD_HTTP_HEADER_CONNECTION, "close");
  }
}

enum MHD_Result srv__reject_request_head(struct MHD_Connection *conn) {
  pthread_once(&bad_head_once, make_bad_head);
  if (!bad_head)
    return MHD_NO; /* out of memory: just close */
  return MHD_queue_response(conn, MHD_HTTP_BAD_REQUEST, bad_head);
}
