/* pprof_proto.c - a gzipped profile.proto writer with symbolization. See
 * api/pprof.c for the design; this file is the encoding.
 *
 * profile.proto (github.com/google/pprof/proto/profile.proto) is small
 * enough to write by hand, as Go's runtime does (runtime/pprof/protobuf.go):
 * varints, length-delimited submessages, packed repeated integers. Every
 * submessage is built in a scratch buffer and appended with its length.
 * Strings are interned in the string table (index 0 is ""), written last;
 * field order does not matter to a decoder.
 *
 * Symbolization happens here, on the admin thread, never in a signal
 * handler: one libdw session (dwfl over /proc/self) per profile, each
 * distinct address looked up once. A location gets one Line per frame,
 * innermost (inlined) first, its function's name and file:line from DWARF
 * where the module has it, the ELF symbol otherwise. Mappings are the
 * executable mappings of /proc/self/maps with each file's GNU build ID, the
 * binary's first, so `go tool pprof` shows names without the binary.
 */
#define _GNU_SOURCE
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "pprof.h"

/* ---- byte buffers and protobuf primitives ------------------------------------ */

typedef struct pb {
  unsigned char *p;
  size_t n, cap;
  bool oom;
} pb_t;

static void pb_put(pb_t *b, const void *d, size_t n) {
  if (b->oom)
    return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n)
      cap *= 2;
    unsigned char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = true;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void pb_varint(pb_t *b, uint64_t v) {
  unsigned char tmp[10];
  int n = 0;
  while (v >= 0x80) {
    tmp[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  tmp[n++] = (unsigned char)v;
  pb_put(b, tmp, (size_t)n);
}

static void pb_uint(pb_t *b, int field, uint64_t v) {
  pb_varint(b, (uint64_t)field << 3);
  pb_varint(b, v);
}

/* Optional fields: zero is the default and is left out. */
static void pb_uint_opt(pb_t *b, int field, uint64_t v) {
  if (v)
    pb_uint(b, field, v);
}

static void pb_bytes(pb_t *b, int field, const void *d, size_t n) {
  pb_varint(b, (uint64_t)field << 3 | 2);
  pb_varint(b, n);
  pb_put(b, d, n);
}

static void pb_msg(pb_t *b, int field, pb_t *m) {
  pb_bytes(b, field, m->p, m->n);
  if (m->oom)
    b->oom = true;
  m->n = 0;
}

static void pb_packed(pb_t *b, int field, const uint64_t *v, size_t n) {
  if (!n)
    return;
  pb_t t = {0};
  for (size_t i = 0; i < n; i++)
    pb_varint(&t, v[i]);
  pb_msg(b, field, &t);
  free(t.p);
}

/* ---- small open-addressing maps ------------------------------------------------- */

typedef struct umap { /* uint64 key (never 0) -> uint64 value */
  uint64_t *k, *v;
  size_t cap, n;
} umap_t;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static bool umap_grow(umap_t *m) {
  size_t cap = m->cap ? m->cap * 2 : 1024;
  uint64_t *k = calloc(cap, sizeof(*k)), *v = calloc(cap, sizeof(*v));
  if (!k || !v) {
    free(k);
    free(v);
    return false;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->k[i])
      continue;
    size_t j = mix(m->k[i]) & (cap - 1);
    while (k[j])
      j = (j + 1) & (cap - 1);
    k[j] = m->k[i];
    v[j] = m->v[i];
  }
  free(m->k);
  free(m->v);
  m->k = k;
  m->v = v;
  m->cap = cap;
  return true;
}

static uint64_t *umap_slot(umap_t *m, uint64_t key, bool *fresh) {
  if ((m->n + 1) * 4 > m->cap * 3 && !umap_grow(m))
    return NULL;
  size_t j = mix(key) & (m->cap - 1);
  while (m->k[j] && m->k[j] != key)
    j = (j + 1) & (m->cap - 1);
  *fresh = !m->k[j];
  if (*fresh) {
    m->k[j] = key;
    m->v[j] = 0;
    m->n++;
  }
  return &m->v[j];
}

/* ---- the builder ----------------------------------------------------------------- */

typedef struct mapping {
  uint64_t start, limit, offset;
  int64_t file, build_id; /* string indexes */
  bool dwarf;
} mapping_t;

struct pprof {
  pb_t out;     /* the Profile message, without the string table */
  pb_t sample;  /* the sample being built */
  pb_t scratch; /* submessages */
  uint64_t locs[PPROF_CPU_MAX_STACK + 8];
  int nlocs;
  /* strings: index -> malloc'd copy; map from hash to index + 1 */
  char **strs;
  size_t nstrs, capstrs;
  umap_t strmap; /* hash -> first index (collisions chain via probing key+i) */
  umap_t locmap; /* address -> location id */
  umap_t fnmap;  /* hash(name, file) -> function id */
  uint64_t next_loc, next_fn;
  mapping_t *maps;
  int nmaps;
  Dwfl *dwfl;
  bool sym_ready;
};

static int64_t str_index(pprof_t *p, const char *s) {
  if (!s)
    s = "";
  if (!*s)
    return 0;
  size_t len = strlen(s);
  uint64_t h = bc_xxh64(s, len, 0) | 1;
  for (uint64_t probe = h;; probe = mix(probe) | 1) {
    bool fresh;
    uint64_t *slot = umap_slot(&p->strmap, probe, &fresh);
    if (!slot) {
      p->out.oom = true;
      return 0;
    }
    if (!fresh) {
      if (strcmp(p->strs[*slot], s) == 0)
        return (int64_t)*slot;
      continue;
    }
    if (p->nstrs == p->capstrs) {
      size_t cap = p->capstrs ? p->capstrs * 2 : 256;
      char **q = realloc(p->strs, cap * sizeof(*q));
      if (!q) {
        p->out.oom = true;
        return 0;
      }
      p->strs = q;
      p->capstrs = cap;
    }
    char *copy = strdup(s);
    if (!copy) {
      p->out.oom = true;
      return 0;
    }
    p->strs[p->nstrs] = copy;
    *slot = p->nstrs;
    return (int64_t)p->nstrs++;
  }
}

pprof_t *pprof_new(void) {
  pprof_t *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  p->strs = calloc(256, sizeof(char *));
  if (!p->strs) {
    free(p);
    return NULL;
  }
  p->capstrs = 256;
  p->strs[0] = strdup("");
  p->nstrs = 1;
  p->next_loc = p->next_fn = 1;
  return p;
}

void pprof_free(pprof_t *p) {
  if (!p)
    return;
  for (size_t i = 0; i < p->nstrs; i++)
    free(p->strs[i]);
  free(p->strs);
  free(p->out.p);
  free(p->sample.p);
  free(p->scratch.p);
  free(p->strmap.k);
  free(p->strmap.v);
  free(p->locmap.k);
  free(p->locmap.v);
  free(p->fnmap.k);
  free(p->fnmap.v);
  free(p->maps);
  if (p->dwfl)
    dwfl_end(p->dwfl);
  free(p);
}

static void value_type(pprof_t *p, int field, const char *type,
                       const char *unit) {
  pb_t *t = &p->scratch;
  pb_uint_opt(t, 1, (uint64_t)str_index(p, type));
  pb_uint_opt(t, 2, (uint64_t)str_index(p, unit));
  pb_msg(&p->out, field, t);
}

void pprof_sample_type(pprof_t *p, const char *type, const char *unit) {
  value_type(p, 1, type, unit);
}

void pprof_default_sample_type(pprof_t *p, const char *type) {
  pb_uint(&p->out, 14, (uint64_t)str_index(p, type));
}

void pprof_period(pprof_t *p, const char *type, const char *unit,
                  int64_t period) {
  value_type(p, 11, type, unit);
  pb_uint(&p->out, 12, (uint64_t)period);
}

void pprof_time(pprof_t *p, int64_t time_ns, int64_t duration_ns) {
  pb_uint_opt(&p->out, 9, (uint64_t)time_ns);
  pb_uint_opt(&p->out, 10, (uint64_t)duration_ns);
}

void pprof_comment(pprof_t *p, const char *text) {
  pb_uint(&p->out, 13, (uint64_t)str_index(p, text));
}

/* ---- mappings and symbols ------------------------------------------------------------ */

/* The GNU build ID of the module at addr, as hex ("" if none). */
static void build_id_hex(Dwfl *d, uint64_t addr, char hex[2 * 64 + 1]) {
  hex[0] = 0;
  Dwfl_Module *mod = d ? dwfl_addrmodule(d, addr) : NULL;
  if (!mod)
    return;
  GElf_Addr bias;
  dwfl_module_getelf(mod, &bias); /* the main file is read on demand */
  const unsigned char *bits;
  GElf_Addr vaddr;
  int n = dwfl_module_build_id(mod, &bits, &vaddr);
  for (int i = 0; i < n && i < 64; i++)
    sprintf(hex + 2 * i, "%02x", bits[i]);
}

static const Dwfl_Callbacks dwfl_cb = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
};

/* The dwfl session and the mappings, on first need. SIGPROF is blocked on
 * this thread meanwhile: libdw reads files and walks the dynamic linker's
 * list, which the profiler's handler must not interrupt. */
static void sym_init(pprof_t *p) {
  if (p->sym_ready)
    return;
  p->sym_ready = true;
  p->dwfl = dwfl_begin(&dwfl_cb);
  if (p->dwfl) {
    dwfl_report_begin(p->dwfl);
    if (dwfl_linux_proc_report(p->dwfl, getpid()) != 0 ||
        dwfl_report_end(p->dwfl, NULL, NULL) != 0) {
      dwfl_end(p->dwfl);
      p->dwfl = NULL;
    }
  }
  char exe[4096];
  ssize_t en = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  exe[en > 0 ? en : 0] = 0;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return;
  char line[4096 + 128];
  while (fgets(line, sizeof(line), f)) {
    unsigned long long lo, hi, off;
    char perms[8];
    int pathpos = 0;
    if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &lo, &hi, perms, &off,
               &pathpos) < 4 ||
        perms[2] != 'x' || !pathpos || line[pathpos] != '/')
      continue;
    char *path = line + pathpos;
    path[strcspn(path, "\n")] = 0;
    mapping_t *q = realloc(p->maps, (size_t)(p->nmaps + 1) * sizeof(*q));
    if (!q)
      break;
    p->maps = q;
    mapping_t *m = &p->maps[p->nmaps++];
    char hex[2 * 64 + 1];
    build_id_hex(p->dwfl, lo, hex);
    m->start = lo;
    m->limit = hi;
    m->offset = off;
    m->file = str_index(p, path);
    m->build_id = str_index(p, hex);
    Dwfl_Module *mod = p->dwfl ? dwfl_addrmodule(p->dwfl, lo) : NULL;
    Dwarf_Addr bias;
    m->dwarf = mod && dwfl_module_getdwarf(mod, &bias) != NULL;
    /* pprof takes the first mapping for the main binary */
    if (strcmp(path, exe) == 0 && p->nmaps > 1) {
      mapping_t tmp = *m;
      memmove(&p->maps[1], &p->maps[0],
              (size_t)(p->nmaps - 1) * sizeof(*m));
      p->maps[0] = tmp;
    }
  }
  fclose(f);
}

static uint64_t mapping_id(pprof_t *p, uint64_t addr) {
  for (int i = 0; i < p->nmaps; i++)
    if (addr >= p->maps[i].start && addr < p->maps[i].limit)
      return (uint64_t)i + 1;
  return 0;
}

static uint64_t function_id(pprof_t *p, const char *name, const char *file,
                            int64_t start_line) {
  int64_t ni = str_index(p, name), fi = str_index(p, file);
  uint64_t key = mix((uint64_t)ni << 32 ^ (uint64_t)fi) | 1;
  bool fresh;
  uint64_t *slot = umap_slot(&p->fnmap, key, &fresh);
  if (!slot)
    return 0;
  if (!fresh)
    return *slot;
  *slot = p->next_fn++;
  pb_t *t = &p->scratch;
  pb_uint(t, 1, *slot);
  pb_uint_opt(t, 2, (uint64_t)ni);
  pb_uint_opt(t, 3, (uint64_t)ni);
  pb_uint_opt(t, 4, (uint64_t)fi);
  pb_uint_opt(t, 5, (uint64_t)start_line);
  pb_msg(&p->out, 5, t);
  return *slot;
}

typedef struct frame {
  const char *name, *file;
  int line;
} frame_t;

#define MAX_INLINE 16

static const char *die_name(Dwarf_Die *d) {
  Dwarf_Attribute a;
  const char *n = dwarf_formstring(
      dwarf_attr_integrate(d, DW_AT_linkage_name, &a));
  return n ? n : dwarf_diename(d);
}

/* The frames at addr (innermost first), as eu-addr2line -i finds them. */
static int frames_of(pprof_t *p, uint64_t addr, frame_t *fr,
                     char **to_free) {
  *to_free = NULL;
  Dwfl_Module *mod = p->dwfl ? dwfl_addrmodule(p->dwfl, addr) : NULL;
  if (!mod)
    return 0;
  const char *sym = dwfl_module_addrname(mod, addr);
  int n = 0;
  Dwfl_Line *ln = dwfl_module_getsrc(mod, addr);
  int lineno = 0;
  const char *file = ln ? dwfl_lineinfo(ln, NULL, &lineno, NULL, NULL, NULL)
                        : NULL;
  fr[0] = (frame_t){sym ? sym : "", file ? file : "", lineno};
  n = 1;
  Dwarf_Addr bias = 0;
  Dwarf_Die *cudie = dwfl_module_addrdie(mod, addr, &bias);
  if (!cudie)
    return n;
  Dwarf_Die *scopes = NULL;
  int ns = dwarf_getscopes(cudie, addr - bias, &scopes);
  if (ns <= 0) {
    free(scopes);
    return n;
  }
  Dwarf_Die sub;
  Dwarf *dw = dwfl_module_getdwarf(mod, &bias);
  if (!dw || !dwarf_offdie(dw, dwarf_dieoffset(&scopes[0]), &sub)) {
    free(scopes);
    return n;
  }
  free(scopes);
  scopes = NULL;
  ns = dwarf_getscopes_die(&sub, &scopes);
  Dwarf_Files *files = NULL;
  if (ns > 0 && dwarf_getsrcfiles(cudie, &files, NULL) == 0) {
    /* function-like scopes, innermost first */
    Dwarf_Die *fn[MAX_INLINE + 1];
    int nf = 0;
    for (int i = 0; i < ns && nf <= MAX_INLINE; i++) {
      int tag = dwarf_tag(&scopes[i]);
      if (tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine)
        fn[nf++] = &scopes[i];
      if (tag == DW_TAG_subprogram)
        break;
    }
    if (nf > 0) {
      const char *inner = die_name(fn[0]);
      if (inner)
        fr[0].name = inner; /* the inlined function, not its host */
    }
    for (int i = 0; i + 1 < nf && n < MAX_INLINE; i++) {
      if (dwarf_tag(fn[i]) != DW_TAG_inlined_subroutine)
        break;
      Dwarf_Attribute a;
      Dwarf_Word v;
      const char *cf = "";
      int cl = 0;
      if (dwarf_formudata(dwarf_attr(fn[i], DW_AT_call_file, &a), &v) == 0) {
        const char *s = dwarf_filesrc(files, v, NULL, NULL);
        if (s)
          cf = s;
      }
      if (dwarf_formudata(dwarf_attr(fn[i], DW_AT_call_line, &a), &v) == 0)
        cl = (int)v;
      const char *outer = die_name(fn[i + 1]);
      fr[n++] = (frame_t){outer ? outer : "", cf, cl};
    }
    /* the outermost is the real function: the ELF symbol names it too */
    if (n > 1 && sym && !fr[n - 1].name[0])
      fr[n - 1].name = sym;
  }
  *to_free = (char *)scopes;
  return n;
}

static uint64_t location_id(pprof_t *p, uint64_t addr) {
  bool fresh;
  uint64_t *slot = umap_slot(&p->locmap, addr | 1ull << 63, &fresh);
  if (!slot)
    return 0;
  if (!fresh)
    return *slot;
  uint64_t id = *slot = p->next_loc++;
  frame_t fr[MAX_INLINE + 1];
  char *to_free;
  int n = frames_of(p, addr, fr, &to_free);
  uint64_t fids[MAX_INLINE + 1];
  int lines[MAX_INLINE + 1];
  for (int i = 0; i < n; i++) {
    if (!fr[i].name[0]) {
      n = i;
      break;
    }
    fids[i] = function_id(p, fr[i].name, fr[i].file, 0);
    lines[i] = fr[i].line;
  }
  free(to_free);
  pb_t loc = {0};
  pb_uint(&loc, 1, id);
  pb_uint_opt(&loc, 2, mapping_id(p, addr));
  pb_uint_opt(&loc, 3, addr);
  for (int i = 0; i < n; i++) {
    pb_t *t = &p->scratch;
    pb_uint_opt(t, 1, fids[i]);
    pb_uint_opt(t, 2, (uint64_t)lines[i]);
    pb_msg(&loc, 4, t);
  }
  pb_msg(&p->out, 4, &loc);
  free(loc.p);
  return id;
}

bool pprof_symbol_of(uintptr_t addr, char *buf, size_t cap) {
  sigset_t prof, old;
  sigemptyset(&prof);
  sigaddset(&prof, SIGPROF);
  pthread_sigmask(SIG_BLOCK, &prof, &old);
  bool ok = false;
  Dwfl *d = dwfl_begin(&dwfl_cb);
  if (d) {
    dwfl_report_begin(d);
    if (dwfl_linux_proc_report(d, getpid()) == 0 &&
        dwfl_report_end(d, NULL, NULL) == 0) {
      Dwfl_Module *mod = dwfl_addrmodule(d, addr);
      const char *s = mod ? dwfl_module_addrname(mod, addr) : NULL;
      if (s) {
        snprintf(buf, cap, "%s", s);
        ok = true;
      }
    }
    dwfl_end(d);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return ok;
}

/* ---- samples ---------------------------------------------------------------------- */

void pprof_sample_begin(pprof_t *p) {
  p->nlocs = 0;
  p->sample.n = 0;
}

/* sym_init with SIGPROF blocked; returns the old mask to restore. */
static sigset_t sym_init_blocked(pprof_t *p) {
  sigset_t prof, old;
  sigemptyset(&prof);
  sigaddset(&prof, SIGPROF);
  pthread_sigmask(SIG_BLOCK, &prof, &old);
  sym_init(p);
  return old;
}

void pprof_sample_stack(pprof_t *p, const uintptr_t *pcs, int n,
                        bool leaf_exact) {
  sigset_t old = sym_init_blocked(p);
  for (int i = 0; i < n && p->nlocs < (int)BC_ARRAY_LEN(p->locs); i++) {
    uint64_t a = pcs[i];
    if (!a)
      continue;
    if (i > 0 || !leaf_exact)
      a -= 1; /* the call instruction, not the return address */
    uint64_t id = location_id(p, a);
    if (id)
      p->locs[p->nlocs++] = id;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void pprof_sample_frame(pprof_t *p, const char *function) {
  if (p->nlocs >= (int)BC_ARRAY_LEN(p->locs))
    return;
  if (!p->sym_ready) { /* the mappings, so the profile names its binary */
    sigset_t old = sym_init_blocked(p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  uint64_t fid = function_id(p, function, "", 0);
  /* a synthetic location per function: keyed by the function id with the
   * top bits set, where no address lives; it belongs to the main binary
   * (mapping 1, which has functions: nothing to symbolize) */
  bool fresh;
  uint64_t *slot = umap_slot(&p->locmap, fid | 3ull << 62, &fresh);
  if (!slot)
    return;
  if (fresh) {
    *slot = p->next_loc++;
    pb_t loc = {0};
    pb_uint(&loc, 1, *slot);
    if (p->nmaps > 0)
      pb_uint(&loc, 2, 1);
    pb_t *t = &p->scratch;
    pb_uint(t, 1, fid);
    pb_msg(&loc, 4, t);
    pb_msg(&p->out, 4, &loc);
    free(loc.p);
  }
  p->locs[p->nlocs++] = *slot;
}

void pprof_sample_values(pprof_t *p, const int64_t *v, int n) {
  uint64_t u[8];
  for (int i = 0; i < n && i < 8; i++)
    u[i] = (uint64_t)v[i];
  pb_packed(&p->sample, 2, u, (size_t)(n < 8 ? n : 8));
}

void pprof_sample_label(pprof_t *p, const char *key, const char *str) {
  pb_t *t = &p->scratch;
  pb_uint(t, 1, (uint64_t)str_index(p, key));
  pb_uint(t, 2, (uint64_t)str_index(p, str));
  pb_msg(&p->sample, 3, t);
}

void pprof_sample_num_label(pprof_t *p, const char *key, int64_t num,
                            const char *unit) {
  pb_t *t = &p->scratch;
  pb_uint(t, 1, (uint64_t)str_index(p, key));
  pb_uint(t, 3, (uint64_t)num);
  if (unit)
    pb_uint(t, 4, (uint64_t)str_index(p, unit));
  pb_msg(&p->sample, 3, t);
}

void pprof_sample_labels(pprof_t *p, const api_labels_t *l) {
  if (!l)
    return;
  if (l->method != M_OTHER)
    pprof_sample_label(p, "method", api__method_name(l->method));
  pprof_sample_label(p, "route", api__route_label[l->route]);
  if (l->ns_len || l->route == R_BUFFER)
    pprof_sample_label(p, "namespace", l->ns);
}

void pprof_sample_end(pprof_t *p) {
  pb_t s = {0};
  pb_packed(&s, 1, p->locs, (size_t)p->nlocs);
  pb_put(&s, p->sample.p, p->sample.n);
  pb_msg(&p->out, 2, &s);
  free(s.p);
}

/* ---- the end: mappings, strings, gzip ------------------------------------------------- */

unsigned char *pprof_finish(pprof_t *p, size_t *n) {
  for (int i = 0; i < p->nmaps; i++) {
    mapping_t *m = &p->maps[i];
    pb_t *t = &p->scratch;
    pb_uint(t, 1, (uint64_t)i + 1);
    pb_uint_opt(t, 2, m->start);
    pb_uint_opt(t, 3, m->limit);
    pb_uint_opt(t, 4, m->offset);
    pb_uint_opt(t, 5, (uint64_t)m->file);
    pb_uint_opt(t, 6, (uint64_t)m->build_id);
    pb_uint(t, 7, 1); /* has_functions */
    pb_uint_opt(t, 8, m->dwarf);
    pb_uint_opt(t, 9, m->dwarf);
    pb_uint_opt(t, 10, m->dwarf);
    pb_msg(&p->out, 3, t);
  }
  for (size_t i = 0; i < p->nstrs; i++)
    pb_bytes(&p->out, 6, p->strs[i], strlen(p->strs[i]));
  if (p->out.oom || p->scratch.oom || p->sample.oom)
    return NULL;
  z_stream z = {0};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return NULL;
  size_t cap = deflateBound(&z, p->out.n) + 64;
  unsigned char *gz = malloc(cap);
  if (!gz) {
    deflateEnd(&z);
    return NULL;
  }
  z.next_in = p->out.p;
  z.avail_in = (uInt)p->out.n;
  z.next_out = gz;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  *n = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(gz);
    return NULL;
  }
  return gz;
}

/* ---- the legacy text form (?debug=1) ------------------------------------------------ */

void pprof_text_stack(pprof_t *p, FILE *f, const uintptr_t *pcs, int n,
                      bool leaf_exact) {
  sigset_t old = sym_init_blocked(p);
  for (int i = 0; i < n; i++) {
    uint64_t a = pcs[i];
    if (!a)
      continue;
    if (i > 0 || !leaf_exact)
      a -= 1;
    frame_t fr[MAX_INLINE + 1];
    char *to_free;
    int nf = frames_of(p, a, fr, &to_free);
    Dwfl_Module *mod = p->dwfl ? dwfl_addrmodule(p->dwfl, a) : NULL;
    GElf_Off off = 0;
    GElf_Sym sym;
    if (mod)
      dwfl_module_addrinfo(mod, a, &off, &sym, NULL, NULL, NULL);
    if (nf == 0 || !fr[0].name[0]) {
      fprintf(f, "#\t%#llx\t??\n", (unsigned long long)pcs[i]);
      nf = 0;
    }
    for (int k = 0; k < nf; k++) {
      if (k == 0)
        fprintf(f, "#\t%#llx\t%s+%#llx\t%s:%d\n", (unsigned long long)pcs[i],
                fr[k].name, (unsigned long long)off + (a != pcs[i]),
                fr[k].file, fr[k].line);
      else
        fprintf(f, "#\t%#llx\t%s+%#llx\t%s:%d\n", (unsigned long long)pcs[i],
                fr[k].name, (unsigned long long)0, fr[k].file, fr[k].line);
    }
    free(to_free);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}
