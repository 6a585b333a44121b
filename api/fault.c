/* fault.c - fault injection, for tests only: POST /debug/fault on the admin
 * listener, compiled into the bufcache-fault binary alone (CMake option
 * BUFCACHE_FAULT_INJECTION builds it beside bufcache, which never has it).
 *
 *   POST /debug/fault?heap=N           the heap's next N page commits fail
 *                                      (gc_fail_next_os_allocs): allocations
 *                                      that need new pages get BC_ENOMEM
 *   POST /debug/fault?malloc=N&after=K after K more libc allocations, the
 *                                      next N malloc/calloc/realloc fail
 *   POST /debug/fault?off              both off
 *   GET  /debug/fault                  what is armed, what failed so far
 *
 * Every answer is the state after the call, as JSON. The answer is built
 * before the countdown is armed, so arming never fails its own request.
 *
 * The libc side is an interposer in this executable: malloc, calloc and
 * realloc defined here take precedence over glibc's for the whole process
 * (libmicrohttpd, jansson and libuv included), and forward to glibc's own
 * __libc_* entry points; free stays glibc's. Sanitizer builds bring their
 * own allocator, so there the libc side is off (the answer says so with
 * "malloc_supported": false) and only heap faults are injected.
 */
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FAULT_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||   \
    __has_feature(memory_sanitizer)
#define FAULT_MALLOC 0
#endif
#endif
#ifndef FAULT_MALLOC
#define FAULT_MALLOC 1
#endif

static struct {
  _Atomic long malloc_after; /* allocations still to succeed first */
  _Atomic long malloc_fail;  /* then this many fail */
  _Atomic uint64_t malloc_failed; /* failures injected, in all */
  _Atomic long heap_armed;   /* what the last call asked of the heap (the
                              * heap does not tell how many are left) */
} F;

#if FAULT_MALLOC
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);

/* Takes one step of the countdown: true if this allocation must fail. */
static inline bool fail_now(void) {
  if (BC_LIKELY(atomic_load_explicit(&F.malloc_fail, memory_order_relaxed) <=
                0))
    return false;
  long a = atomic_load(&F.malloc_after);
  while (a > 0)
    if (atomic_compare_exchange_weak(&F.malloc_after, &a, a - 1))
      return false;
  long f = atomic_load(&F.malloc_fail);
  while (f > 0)
    if (atomic_compare_exchange_weak(&F.malloc_fail, &f, f - 1)) {
      atomic_fetch_add(&F.malloc_failed, 1);
      return true;
    }
  return false;
}

void *malloc(size_t size) {
  if (BC_UNLIKELY(fail_now())) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
  if (BC_UNLIKELY(fail_now())) {
    errno = ENOMEM;
    return NULL;
  }
  return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
  if (size && BC_UNLIKELY(fail_now())) {
    errno = ENOMEM;
    return NULL; /* p stays valid, as for a real failure */
  }
  return __libc_realloc(p, size);
}
#endif

/* A non-negative integer query argument; false if absent, -1 if bad. */
static bool arg(struct MHD_Connection *c, const char *name, long *out) {
  const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
  if (!v)
    return false;
  uint64_t u;
  *out = bc_parse_u64(v, strlen(v), &u) == 0 && u <= 1000000000 ? (long)u
                                                                 : -1;
  return true;
}

/* "?off" has no value, which MHD's lookup does not tell from no key. */
static enum MHD_Result find_off(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value) {
  (void)kind;
  (void)value;
  if (strcmp(key, "off") == 0)
    *(bool *)cls = true;
  return MHD_YES;
}

enum MHD_Result api__fault(srv_ctx_t *ctx) {
  struct MHD_Connection *c = ctx->conn;
  req_t *r = api__req(ctx);
  long heap = -2, nmalloc = -2, after = 0;
  bool off = false;
  if (r->method == M_POST) {
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, find_off, &off);
    bool has_heap = arg(c, "heap", &heap), has_malloc = arg(c, "malloc", &nmalloc);
    bool has_after = arg(c, "after", &after);
    if ((has_heap && heap < 0) || (has_malloc && nmalloc < 0) ||
        (has_after && after < 0) || (!off && !has_heap && !has_malloc))
      return api__error(ctx, API_ERR_BAD_REQUEST,
                        "use ?heap=N, ?malloc=N[&after=K] or ?off", 0);
    if (has_malloc && nmalloc > 0 && !FAULT_MALLOC)
      return api__error(ctx, API_ERR_BAD_REQUEST,
                        "libc faults need a build without sanitizers", 0);
    if (off)
      heap = nmalloc = 0;
  }
  long heap_now = heap >= 0 ? heap : atomic_load(&F.heap_armed);
  long fail_now_ = nmalloc >= 0 ? nmalloc : atomic_load(&F.malloc_fail);
  long after_now = nmalloc >= 0 ? after : atomic_load(&F.malloc_after);
  json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:b}", "heap_fail_armed",
                        (json_int_t)heap_now, "malloc_fail_next",
                        (json_int_t)fail_now_, "malloc_after",
                        (json_int_t)after_now, "malloc_failed",
                        (json_int_t)atomic_load(&F.malloc_failed),
                        "malloc_supported", FAULT_MALLOC);
  char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  struct MHD_Response *resp =
      body ? MHD_create_response_from_buffer(strlen(body), body,
                                             MHD_RESPMEM_MUST_FREE)
           : NULL;
  if (!resp) {
    free(body);
    return api__error(ctx, API_ERR_OUT_OF_MEMORY, "out of memory", 0);
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "application/json");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  /* arm last: the answer above is already built */
  if (heap >= 0) {
    atomic_store(&F.heap_armed, heap);
    gc_fail_next_os_allocs((int)heap);
  }
  if (nmalloc >= 0) {
    atomic_store(&F.malloc_fail, 0);
    atomic_store(&F.malloc_after, after);
    atomic_store(&F.malloc_fail, nmalloc);
  }
  enum MHD_Result rc = api__queue(ctx, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return rc;
}
