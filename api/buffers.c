/* buffers.c - the parts of /v1/buffers beyond one key's GET/PUT/DELETE
 * (api/api.c): conditional request headers, TTL response headers, listing
 * (GET /v1/buffers?prefix=&limit=&cursor=) and namespace deletion (DELETE
 * /v1/buffers?prefix=). docs/ARCHITECTURE.md "Listing and namespaces" gives
 * the cursor's design; api/parse.c has the pure parsers used here.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "api_internal.h"

#define A api__state

/* ---- conditional requests --------------------------------------------------- */

typedef struct cond_reader {
  cache_cond_t *cond;
  long err; /* 0, API_ETAGS_BAD or API_ETAGS_TOO_MANY */
} cond_reader_t;

static enum MHD_Result read_cond_field(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value) {
  (void)kind;
  cond_reader_t *cr = cls;
  bool im = strcasecmp(key, MHD_HTTP_HEADER_IF_MATCH) == 0;
  if (!im && strcasecmp(key, MHD_HTTP_HEADER_IF_NONE_MATCH) != 0)
    return MHD_YES;
  cache_cond_t *c = cr->cond;
  uint8_t *kindp = im ? &c->if_match : &c->if_none_match;
  uint8_t *n = im ? &c->n_match : &c->n_none_match;
  uint64_t *list = im ? c->match : c->none_match;
  if (!value)
    value = "";
  /* If-None-Match compares weakly: W/"x" stands for "x" there */
  long k = api_parse_etags(value, strlen(value), !im, list + *n,
                           CACHE_COND_ETAGS - *n);
  if (k == API_ETAGS_ANY) {
    *kindp = CACHE_COND_ANY;
  } else if (k < 0) {
    cr->err = k;
    return MHD_NO;
  } else {
    if (*kindp != CACHE_COND_ANY)
      *kindp = CACHE_COND_LIST;
    *n = (uint8_t)(*n + k);
  }
  return MHD_YES;
}

int api__read_cond(srv_ctx_t *ctx, cache_cond_t *cond, bool *any,
                   unsigned flags) {
  struct MHD_Connection *c = ctx->conn;
  cond->if_match = cond->if_none_match = CACHE_COND_OFF;
  cond->n_match = cond->n_none_match = 0;
  *any = false;
  if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                   MHD_HTTP_HEADER_IF_MATCH) &&
      !MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                   MHD_HTTP_HEADER_IF_NONE_MATCH))
    return 0;
  cond_reader_t cr = {cond, 0};
  MHD_get_connection_values(c, MHD_HEADER_KIND, read_cond_field, &cr);
  if (cr.err) {
    api__error(ctx, API_ERR_BAD_REQUEST,
               cr.err == API_ETAGS_TOO_MANY
                   ? "more than 16 entity-tags in If-Match or If-None-Match"
                   : "malformed If-Match or If-None-Match",
               flags);
    return -1;
  }
  *any = true;
  return 0;
}

void api__add_ttl_headers(struct MHD_Response *r, const cache_entry_t *e,
                          uint64_t now_mono_ns) {
  uint64_t left =
      e->expires_ns > now_mono_ns ? e->expires_ns - now_mono_ns : 0;
  char cc[40], date[30];
  snprintf(cc, sizeof(cc), "max-age=%llu",
           (unsigned long long)(left / 1000000000u));
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cc);
  api_format_http_date((bc_now_real_ns() + left) / 1000000000u, date);
  MHD_add_response_header(r, MHD_HTTP_HEADER_EXPIRES, date);
}

/* ---- query parameters ----------------------------------------------------------- */

/* The percent-decoded value of ?name= in buf: its length, -1 when absent,
 * -2 when malformed or longer than cap. */
static long query(srv_ctx_t *ctx, const char *name, char *buf, size_t cap) {
  const char *raw =
      MHD_lookup_connection_value(ctx->conn, MHD_GET_ARGUMENT_KIND, name);
  if (!raw)
    return -1;
  long n = api_decode_query(raw, strlen(raw), buf, cap);
  return n < 0 ? -2 : n;
}

static enum MHD_Result json_answer(srv_ctx_t *ctx, unsigned status,
                                   json_t *j) {
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!body)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  size_t len = strlen(body);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  ctx->bytes_out = len;
  enum MHD_Result rc = api__queue(ctx, status, r);
  MHD_destroy_response(r);
  return rc;
}

/* ---- listing -------------------------------------------------------------------- */

#define LIST_DEFAULT 100
/* index slots one listing request may examine before it answers with what
 * it has and a cursor (a few milliseconds of work) */
#define LIST_BUDGET ((size_t)1 << 20)

/* A key or content type as a JSON string: as it is when it is UTF-8,
 * percent-encoded (api_percent_encode) otherwise. */
static json_t *json_bytes(const char *s, size_t len, bool *encoded) {
  if (api_utf8_valid(s, len)) {
    *encoded = false;
    return json_stringn(s, len);
  }
  char buf[3 * CACHE_MAX_KEY + 1];
  if (len > CACHE_MAX_KEY)
    len = CACHE_MAX_KEY;
  size_t n = api_percent_encode(s, len, buf);
  *encoded = true;
  return json_stringn(buf, n);
}

static json_t *item(const cache_entry_t *e, uint64_t now_mono,
                    uint64_t now_real_ms) {
  bool enc, ct_enc;
  json_t *it = json_object();
  json_object_set_new(it, "key", json_bytes(cache_entry_key(e), e->key_len,
                                            &enc));
  if (enc)
    json_object_set_new(it, "key_encoding", json_string("percent"));
  json_object_set_new(it, "size", json_integer((json_int_t)e->value_len));
  char etag[19];
  api_format_etag(e->etag, etag);
  json_object_set_new(it, "etag", json_string(etag));
  const char *ct = api__ctype(e);
  json_object_set_new(it, "content_type", json_bytes(ct, strlen(ct), &ct_enc));
  if (e->expires_ns) {
    uint64_t left = e->expires_ns > now_mono ? e->expires_ns - now_mono : 0;
    char ts[25];
    api_format_rfc3339_ms(now_real_ms + left / 1000000u, ts);
    json_object_set_new(it, "expires_at", json_string(ts));
  } else {
    json_object_set_new(it, "expires_at", json_null());
  }
  return it;
}

enum MHD_Result api__list(srv_ctx_t *ctx) {
  char prefix[CACHE_MAX_KEY], buf[32];
  long plen = query(ctx, "prefix", prefix, sizeof(prefix));
  if (plen == -2)
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "prefix: bad percent-encoding or over 512 bytes", 0);
  if (plen < 0)
    plen = 0;
  uint64_t limit = LIST_DEFAULT;
  long n = query(ctx, "limit", buf, sizeof(buf));
  if (n != -1 &&
      (n < 0 || bc_parse_u64(buf, (size_t)n, &limit) != 0 || limit == 0))
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "limit must be a whole number from 1 (at most 1000 "
                      "are returned)",
                      0);
  if (limit > CACHE_LIST_MAX)
    limit = CACHE_LIST_MAX;
  uint64_t cursor = 0;
  n = query(ctx, "cursor", buf, sizeof(buf));
  if (n != -1 && (n < 0 || api_parse_cursor(buf, (size_t)n, &cursor) != 0))
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "cursor must be a next_cursor this server returned", 0);

  cache_entry_t *out[CACHE_LIST_MAX];
  bool done;
  uint64_t now = bc_now_mono_ns();
  uint64_t now_real_ms = bc_now_real_ns() / 1000000u;
  size_t got = cache_list(A.cache, prefix, (size_t)plen, now, &cursor, &done,
                          out, (size_t)limit, LIST_BUDGET);
  json_t *items = json_array();
  for (size_t i = 0; i < got; i++)
    json_array_append_new(items, item(out[i], now, now_real_ms));
  json_t *next;
  if (done) {
    next = json_null();
  } else {
    char cur[17];
    api_format_cursor(cursor, cur);
    next = json_string(cur);
  }
  return json_answer(ctx, MHD_HTTP_OK,
                     json_pack("{s:o,s:o}", "items", items, "next_cursor",
                               next));
}

/* ---- namespaces ----------------------------------------------------------------- */

enum MHD_Result api__delete_prefix(srv_ctx_t *ctx) {
  char prefix[CACHE_MAX_KEY], all[8];
  long plen = query(ctx, "prefix", prefix, sizeof(prefix));
  if (plen == -2)
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "prefix: bad percent-encoding or over 512 bytes", 0);
  long alen = query(ctx, "all", all, sizeof(all) - 1);
  bool everything = false;
  if (alen >= 0) {
    all[alen] = 0;
    if (!strcmp(all, "true") || !strcmp(all, "1"))
      everything = true;
    else if (strcmp(all, "false") && strcmp(all, "0"))
      return api__error(ctx, API_ERR_BAD_REQUEST, "all must be true or false",
                        0);
  }
  if (plen <= 0 && !everything)
    return api__error(ctx, API_ERR_BAD_REQUEST,
                      "DELETE /v1/buffers needs a non-empty ?prefix= (or "
                      "?all=true to delete every key)",
                      0);
  uint64_t n = cache_delete_prefix(A.cache, prefix, plen > 0 ? (size_t)plen : 0,
                                   bc_now_mono_ns());
  return json_answer(ctx, MHD_HTTP_OK,
                     json_pack("{s:I}", "deleted", (json_int_t)n));
}
