/* bc.h - the few utilities every bufcache module shares: error codes, checks,
 * clocks, parsers for the units users type (sizes, Go durations), and hashes.
 *
 * Error convention (libuv's): a failing call returns a negative BC_E* code,
 * has no side effects and runs no callbacks. bc_strerror() names a code.
 */
#ifndef BC_H
#define BC_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define BC_LIKELY(x) __builtin_expect(!!(x), 1)
#define BC_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define BC_NOINLINE __attribute__((noinline))
#define BC_CACHELINE 64
#define BC_ALIGNED_CL __attribute__((aligned(BC_CACHELINE)))
#define BC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* X(name, errno-like value, message). One table, used by bc_strerror and by
 * api/ to map codes to HTTP statuses. */
#define BC_ERRNO_MAP(X)                                                        \
  X(NOMEM, -1, "out of memory")                                                \
  X(LIMIT, -2, "memory limit reached")                                         \
  X(INVAL, -3, "invalid argument")                                             \
  X(TOOBIG, -4, "value too large")                                             \
  X(NOENT, -5, "no such key")                                                  \
  X(EXIST, -6, "already exists")                                               \
  X(RANGE, -7, "out of range")                                                 \
  X(CANCELED, -8, "canceled")                                                  \
  X(BUSY, -9, "busy")                                                          \
  X(IO, -10, "i/o error")                                                      \
  X(PRECOND, -11, "precondition failed")

enum {
#define X(name, val, msg) BC_E##name = (val),
  BC_ERRNO_MAP(X)
#undef X
};

const char *bc_strerror(int err);

/* Always-on check for broken invariants (Go's throw): prints and aborts. */
#define BC_CHECK(cond, ...)                                                    \
  do {                                                                         \
    if (BC_UNLIKELY(!(cond)))                                                  \
      bc__throw(__FILE__, __LINE__, #cond, __VA_ARGS__);                       \
  } while (0)
#ifdef NDEBUG
#define BC_DASSERT(cond) ((void)0)
#else
#define BC_DASSERT(cond) BC_CHECK(cond, "debug assertion")
#endif
__attribute__((noreturn, format(printf, 4, 5))) void
bc__throw(const char *file, int line, const char *cond, const char *fmt, ...);

/* Clocks, in nanoseconds. */
uint64_t bc_now_mono_ns(void);   /* CLOCK_MONOTONIC */
uint64_t bc_now_real_ns(void);   /* CLOCK_REALTIME (Unix epoch) */
uint64_t bc_thread_cpu_ns(void); /* CLOCK_THREAD_CPUTIME_ID */
uint64_t bc_process_cpu_ns(void);

/* Parsers. Each returns 0 or BC_EINVAL/BC_ERANGE and writes *out only on
 * success.
 * bc_parse_size: "512", "64KiB", "512MiB", "2GiB", "1.5GiB", "10MB", "1k" ...
 * bc_parse_duration: Go's time.ParseDuration ("90s", "1h30m", "1.5ms") plus a
 *   bare whole number meaning seconds when bare_seconds is true. Negative
 *   durations are rejected. Result in nanoseconds. */
int bc_parse_size(const char *s, size_t len, uint64_t *out);
int bc_parse_duration(const char *s, size_t len, bool bare_seconds,
                      uint64_t *out_ns);
int bc_parse_u64(const char *s, size_t len, uint64_t *out);
/* Formats a duration the way Go prints it ("1h30m0s", "1.5ms"). */
size_t bc_format_duration(uint64_t ns, char *buf, size_t cap);

/* Hashes. bc_siphash13 is keyed (flood-resistant, for the index);
 * bc_xxh64 is fast and unkeyed (for ETags). */
uint64_t bc_siphash13(const void *data, size_t len, const uint64_t key[2]);
uint64_t bc_xxh64(const void *data, size_t len, uint64_t seed);

/* Fills buf with random bytes from the kernel (getrandom). */
void bc_random_bytes(void *buf, size_t len);

#endif
