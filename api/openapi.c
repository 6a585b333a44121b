/* openapi.c - GET /debug/openapi.yaml on the admin listener: the API's
 * OpenAPI 3.1 description (api/openapi.yaml), embedded in the binary at
 * build time (cmake/embed_file.cmake), so the description a client reads is
 * the one this binary was built with.
 *
 * Behind the admin guard like every admin route. One shared, refcounted
 * response built on first use (admin thread only) and kept to the end; a
 * request that must carry X-Request-Id gets its own copy pointing at the
 * same bytes. No allocation on the gc heap.
 */
#include "api_internal.h"

/* api/openapi.yaml, embedded by cmake/embed_file.cmake */
extern const unsigned char api__openapi_yaml[];
extern const size_t api__openapi_yaml_len;

static struct MHD_Response *openapi_response(void) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      api__openapi_yaml_len, (void *)api__openapi_yaml, MHD_RESPMEM_PERSISTENT);
  if (!r)
    return NULL;
  /* RFC 9512: application/yaml */
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "application/yaml; charset=utf-8");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  return r;
}

enum MHD_Result api__openapi(srv_ctx_t *ctx) {
  static struct MHD_Response *shared;
  if (!api__reqid_header(ctx)) {
    if (!shared)
      shared = openapi_response();
    if (!shared)
      return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
    return api__queue_shared(ctx, MHD_HTTP_OK, shared);
  }
  struct MHD_Response *r = openapi_response();
  if (!r)
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  enum MHD_Result rc = api__queue(ctx, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}
