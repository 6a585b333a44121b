/* malloc_count.c - an LD_PRELOAD library that counts calls into libc's
 * allocator, for bench/allocs.sh.
 *
 * Build:  cc -O2 -fPIC -shared -o malloc_count.so malloc_count.c -ldl
 * Use:    MALLOC_COUNT_FILE=/tmp/mc LD_PRELOAD=./malloc_count.so prog ...
 *         kill -USR2 <pid>      # writes a snapshot to $MALLOC_COUNT_FILE
 *
 * What it counts (process-wide, every thread, relaxed atomics):
 *   malloc, calloc, realloc (and reallocarray), posix_memalign,
 *   aligned_alloc, memalign, valloc, pvalloc; "allocs" is their sum.
 *   free is counted separately, and so are the bytes asked for.
 *   "responses" counts calls to MHD_queue_response() made by the program
 *   (interposed the same way), so that allocations per response can be
 *   computed from one consistent snapshot, with no HTTP request to the
 *   process (which would itself allocate) between the two snapshots.
 *
 * Reading the counters from outside, without allocating:
 *   On the signal MALLOC_COUNT_SIGNAL (default SIGUSR2) a handler writes
 *   "name value" lines to $MALLOC_COUNT_FILE.tmp with write(2) and renames
 *   it to $MALLOC_COUNT_FILE (default /tmp/malloc_count.<pid>). It uses
 *   only async-signal-safe calls and formats numbers itself. The last line
 *   is "seq N" (N = snapshots so far), so a reader can wait for its own.
 *
 * Debug mode (which call sites allocate):
 *   MALLOC_COUNT_TRACE=path: between snapshot K and K+1, K being
 *   MALLOC_COUNT_TRACE_FROM (default 1; allocs.sh sets it to its
 *   measurement window), every counted call appends its
 *   backtrace to path, one frame a line as "module(+0xOFFSET) symbol+0xD",
 *   ready for addr2line -e module OFFSET; at most MALLOC_COUNT_TRACE_MAX
 *   (default 200) traces. Allocations made by the tracer itself (backtrace()
 *   loads libgcc_s) are neither counted nor traced.
 *
 * Bootstrapping: dlsym(RTLD_NEXT, ...) may itself call calloc/malloc before
 * the real functions are known; those calls are served from a static
 * buffer (never freed to libc: free() recognises and ignores its pointers).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define TLS __thread __attribute__((tls_model("initial-exec")))

/* ---- the real functions --------------------------------------------------- */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static int (*real_queue_response)(void *, unsigned int, void *);

static _Atomic int init_state; /* 0 none, 1 resolving, 2 done */

/* ---- bootstrap buffer ----------------------------------------------------- */

static _Alignas(64) unsigned char boot_buf[256 * 1024];
static _Atomic size_t boot_used;

static int in_boot(const void *p) {
  return (const unsigned char *)p >= boot_buf &&
         (const unsigned char *)p < boot_buf + sizeof(boot_buf);
}

/* 16-byte header holding the size (for realloc), then the block. */
static void *boot_alloc(size_t n, size_t align) {
  if (align < 16)
    align = 16;
  for (;;) {
    size_t used = atomic_load(&boot_used);
    size_t start = (used + 16 + align - 1) & ~(align - 1);
    if (start + n > sizeof(boot_buf))
      return NULL;
    if (atomic_compare_exchange_weak(&boot_used, &used, start + n)) {
      memcpy(boot_buf + start - sizeof(size_t), &n, sizeof(size_t));
      return boot_buf + start; /* static storage: already zeroed */
    }
  }
}

static size_t boot_size(const void *p) {
  size_t n;
  memcpy(&n, (const unsigned char *)p - sizeof(size_t), sizeof(size_t));
  return n;
}

static void resolve(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&init_state, &expected, 1)) {
    /* another thread (or dlsym below, re-entering) is resolving */
    return;
  }
  real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
  real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
  real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
  real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
  real_posix_memalign =
      (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  real_aligned_alloc =
      (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
  real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
  real_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
  real_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
  atomic_store(&init_state, 2);
}

static inline int ready(void) {
  if (__builtin_expect(atomic_load_explicit(&init_state, memory_order_acquire) == 2, 1))
    return 1;
  resolve();
  return atomic_load_explicit(&init_state, memory_order_acquire) == 2;
}

/* ---- counters -------------------------------------------------------------- */

enum {
  C_MALLOC, C_CALLOC, C_REALLOC, C_POSIX_MEMALIGN, C_ALIGNED_ALLOC,
  C_MEMALIGN, C_VALLOC, C_PVALLOC, C_FREE, C_BYTES, C_RESPONSES, C__N
};
static const char *const cname[C__N] = {
    "malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc",
    "memalign", "valloc", "pvalloc", "free", "bytes", "responses"};
static _Atomic uint64_t counts[C__N];
static _Atomic uint64_t snapshots;

static TLS int in_hook; /* the tracer is running on this thread */

/* ---- tracing ----------------------------------------------------------------- */

static char trace_path[4096];
static int trace_fd = -1;
static _Atomic int trace_armed;
static _Atomic long trace_left;
static uint64_t trace_from = 1;
static atomic_flag trace_lock = ATOMIC_FLAG_INIT;

static size_t fmt_u64(char *b, uint64_t v) {
  char t[24];
  size_t n = 0;
  do
    t[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  for (size_t i = 0; i < n; i++)
    b[i] = t[n - 1 - i];
  return n;
}

static size_t fmt_hex(char *b, uint64_t v) {
  char t[24];
  size_t n = 0;
  do
    t[n++] = "0123456789abcdef"[v & 15];
  while ((v >>= 4) != 0);
  b[0] = '0';
  b[1] = 'x';
  for (size_t i = 0; i < n; i++)
    b[2 + i] = t[n - 1 - i];
  return n + 2;
}

static size_t put_str(char *b, size_t at, size_t cap, const char *s) {
  while (*s && at + 1 < cap)
    b[at++] = *s++;
  return at;
}

static void write_all(int fd, const char *b, size_t n) {
  while (n) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    b += w;
    n -= (size_t)w;
  }
}

static void trace(int kind, size_t size) {
  if (!atomic_load_explicit(&trace_armed, memory_order_relaxed) || trace_fd < 0)
    return;
  if (atomic_fetch_sub(&trace_left, 1) <= 0)
    return;
  in_hook = 1;
  void *frames[48];
  int n = backtrace(frames, 48);
  while (atomic_flag_test_and_set_explicit(&trace_lock, memory_order_acquire))
    ;
  char line[1024];
  size_t at = 0;
  at = put_str(line, at, sizeof(line), "== ");
  at = put_str(line, at, sizeof(line), cname[kind]);
  at = put_str(line, at, sizeof(line), " size=");
  at += fmt_u64(line + at, size);
  at = put_str(line, at, sizeof(line), " tid=");
  at += fmt_u64(line + at, (uint64_t)syscall(SYS_gettid));
  line[at++] = '\n';
  write_all(trace_fd, line, at);
  for (int i = 2; i < n; i++) { /* skip trace() and the hook */
    Dl_info di;
    at = put_str(line, 0, sizeof(line), "  ");
    if (dladdr(frames[i], &di) && di.dli_fname) {
      at = put_str(line, at, sizeof(line), di.dli_fname);
      at = put_str(line, at, sizeof(line), "(+");
      at += fmt_hex(line + at,
                    (uint64_t)((uintptr_t)frames[i] - (uintptr_t)di.dli_fbase));
      at = put_str(line, at, sizeof(line), ")");
      if (di.dli_sname && di.dli_saddr) {
        at = put_str(line, at, sizeof(line), " ");
        at = put_str(line, at, sizeof(line), di.dli_sname);
        at = put_str(line, at, sizeof(line), "+");
        at += fmt_hex(line + at, (uint64_t)((uintptr_t)frames[i] -
                                            (uintptr_t)di.dli_saddr));
      }
    } else {
      at = put_str(line, at, sizeof(line), "?(");
      at += fmt_hex(line + at, (uint64_t)(uintptr_t)frames[i]);
      at = put_str(line, at, sizeof(line), ")");
    }
    line[at++] = '\n';
    write_all(trace_fd, line, at);
  }
  atomic_flag_clear_explicit(&trace_lock, memory_order_release);
  in_hook = 0;
}

static inline void count(int kind, size_t size) {
  if (in_hook)
    return;
  atomic_fetch_add_explicit(&counts[kind], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&counts[C_BYTES], size, memory_order_relaxed);
  trace(kind, size);
}

/* ---- the snapshot signal ------------------------------------------------------ */

static char out_path[4096], tmp_path[4110];

static void on_snapshot(int sig) {
  (void)sig;
  int saved = errno;
  uint64_t seq = atomic_fetch_add(&snapshots, 1) + 1;
  char b[1024];
  size_t at = 0;
  uint64_t allocs = 0;
  for (int k = 0; k < C__N; k++) {
    uint64_t v = atomic_load_explicit(&counts[k], memory_order_relaxed);
    if (k <= C_PVALLOC)
      allocs += v;
    at = put_str(b, at, sizeof(b), cname[k]);
    b[at++] = ' ';
    at += fmt_u64(b + at, v);
    b[at++] = '\n';
  }
  at = put_str(b, at, sizeof(b), "allocs ");
  at += fmt_u64(b + at, allocs);
  at = put_str(b, at, sizeof(b), "\nseq ");
  at += fmt_u64(b + at, seq);
  b[at++] = '\n';
  int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    write_all(fd, b, at);
    close(fd);
    rename(tmp_path, out_path);
  }
  /* the trace window: from snapshot trace_from to the next one */
  if (trace_fd >= 0)
    atomic_store(&trace_armed, seq == trace_from);
  errno = saved;
}

__attribute__((constructor)) static void mc_init(void) {
  ready();
  const char *p = getenv("MALLOC_COUNT_FILE");
  size_t at = 0;
  if (p && *p) {
    at = put_str(out_path, 0, sizeof(out_path), p);
  } else {
    at = put_str(out_path, 0, sizeof(out_path), "/tmp/malloc_count.");
    at += fmt_u64(out_path + at, (uint64_t)getpid());
  }
  out_path[at] = 0;
  at = put_str(tmp_path, 0, sizeof(tmp_path), out_path);
  at = put_str(tmp_path, at, sizeof(tmp_path), ".tmp");
  tmp_path[at] = 0;

  const char *t = getenv("MALLOC_COUNT_TRACE");
  if (t && *t) {
    at = put_str(trace_path, 0, sizeof(trace_path), t);
    trace_path[at] = 0;
    trace_fd = open(trace_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    const char *m = getenv("MALLOC_COUNT_TRACE_MAX");
    long max = m ? strtol(m, NULL, 10) : 200;
    atomic_store(&trace_left, max > 0 ? max : 200);
    const char *fr = getenv("MALLOC_COUNT_TRACE_FROM");
    if (fr && atoi(fr) > 0)
      trace_from = (uint64_t)atoi(fr);
    /* backtrace() dlopens libgcc_s on its first call: do it now */
    in_hook = 1;
    void *f[4];
    backtrace(f, 4);
    in_hook = 0;
  }

  int sig = SIGUSR2;
  const char *s = getenv("MALLOC_COUNT_SIGNAL");
  if (s && *s)
    sig = atoi(s);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_snapshot;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

/* ---- the interposed functions ---------------------------------------------- */

EXPORT void *malloc(size_t n) {
  if (!ready())
    return boot_alloc(n, 16);
  count(C_MALLOC, n);
  return real_malloc(n);
}

EXPORT void *calloc(size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  if (!ready())
    return boot_alloc(n, 16);
  count(C_CALLOC, n);
  return real_calloc(a, b);
}

EXPORT void *realloc(void *p, size_t n) {
  if (!ready() || (p && in_boot(p))) {
    void *q = ready() ? real_malloc(n) : boot_alloc(n, 16);
    if (q && p) {
      size_t old = boot_size(p);
      memcpy(q, p, old < n ? old : n);
    }
    if (ready())
      count(C_REALLOC, n);
    return q;
  }
  count(C_REALLOC, n);
  return real_realloc(p, n);
}

EXPORT void *reallocarray(void *p, size_t a, size_t b) {
  size_t n;
  if (__builtin_mul_overflow(a, b, &n)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, n);
}

EXPORT void free(void *p) {
  if (!p || in_boot(p))
    return;
  if (!ready())
    return; /* cannot happen: p came from a real allocation */
  if (!in_hook)
    atomic_fetch_add_explicit(&counts[C_FREE], 1, memory_order_relaxed);
  real_free(p);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n) {
  if (!ready()) {
    void *q = boot_alloc(n, align);
    if (!q)
      return ENOMEM;
    *out = q;
    return 0;
  }
  count(C_POSIX_MEMALIGN, n);
  return real_posix_memalign(out, align, n);
}

EXPORT void *aligned_alloc(size_t align, size_t n) {
  if (!ready())
    return boot_alloc(n, align);
  count(C_ALIGNED_ALLOC, n);
  return real_aligned_alloc(align, n);
}

EXPORT void *memalign(size_t align, size_t n) {
  if (!ready())
    return boot_alloc(n, align);
  count(C_MEMALIGN, n);
  return real_memalign(align, n);
}

EXPORT void *valloc(size_t n) {
  if (!ready())
    return boot_alloc(n, 4096);
  count(C_VALLOC, n);
  return real_valloc(n);
}

EXPORT void *pvalloc(size_t n) {
  if (!ready())
    return boot_alloc((n + 4095) & ~(size_t)4095, 4096);
  count(C_PVALLOC, n);
  return real_pvalloc(n);
}

/* Responses queued by the program (libmicrohttpd); see the top comment. */
EXPORT int MHD_queue_response(void *conn, unsigned int status, void *resp) {
  if (!real_queue_response) {
    real_queue_response =
        (int (*)(void *, unsigned int, void *))dlsym(RTLD_NEXT, "MHD_queue_response");
    if (!real_queue_response)
      abort();
  }
  atomic_fetch_add_explicit(&counts[C_RESPONSES], 1, memory_order_relaxed);
  return real_queue_response(conn, status, resp);
}
