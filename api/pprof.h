/* pprof.h - what api/pprof*.c share (the /debug/pprof endpoints; the
 * design essay is at the top of api/pprof.c). Not for other api files:
 * they use api_internal.h's api__pprof_* entry points. */
#ifndef API_PPROF_H
#define API_PPROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "api_internal.h"

/* ---- labels (api/pprof.c) ----------------------------------------------------
 * A label set, interned: one per (method, route, namespace) for the life of
 * the process, so gc/ can key its buckets by the pointer. */
typedef struct api_labels {
  uint64_t hash;
  uint8_t method, route;
  uint16_t ns_len;
  char ns[]; /* NUL-terminated, valid UTF-8 (percent-encoded if not) */
} api_labels_t;

const char *api__method_name(unsigned method);

/* ---- profile.proto builder (api/pprof_proto.c) ------------------------------
 * Builds one gzipped profile.proto (github.com/google/pprof/proto) on the
 * admin thread with malloc. Addresses are symbolized when a location is
 * added (libdw: function, file:line, inline frames); mappings come from
 * /proc/self/maps with their GNU build IDs. */
typedef struct pprof pprof_t;

pprof_t *pprof_new(void);
void pprof_free(pprof_t *p);
/* Sample types, in order; the value arrays of samples follow it. */
void pprof_sample_type(pprof_t *p, const char *type, const char *unit);
void pprof_default_sample_type(pprof_t *p, const char *type);
void pprof_period(pprof_t *p, const char *type, const char *unit,
                  int64_t period);
void pprof_time(pprof_t *p, int64_t time_ns, int64_t duration_ns);
void pprof_comment(pprof_t *p, const char *text);
/* A sample: locations innermost first. pcs[] are raw addresses; leaf_exact
 * says pcs[0] is an interrupted instruction (CPU) rather than a return
 * address (every other entry is one, looked up at pc - 1 as Go does). */
void pprof_sample_begin(pprof_t *p);
void pprof_sample_stack(pprof_t *p, const uintptr_t *pcs, int n,
                        bool leaf_exact);
/* A frame with no address (the requests profile's route frames). */
void pprof_sample_frame(pprof_t *p, const char *function);
void pprof_sample_values(pprof_t *p, const int64_t *v, int n);
void pprof_sample_label(pprof_t *p, const char *key, const char *str);
void pprof_sample_num_label(pprof_t *p, const char *key, int64_t num,
                            const char *unit);
void pprof_sample_labels(pprof_t *p, const api_labels_t *l);
void pprof_sample_end(pprof_t *p);
/* The "#\t0x...\tfunc+0x..\tfile:line" lines of the legacy text forms,
 * one per frame (inlined ones too), as Go's printStackRecord writes them. */
void pprof_text_stack(pprof_t *p, FILE *f, const uintptr_t *pcs, int n,
                      bool leaf_exact);
/* Encodes and gzips; returns a malloc'd buffer (*n bytes) or NULL. */
unsigned char *pprof_finish(pprof_t *p, size_t *n);

/* Symbol of addr for /debug/pprof/symbol: writes "name" into buf; false if
 * none. Opens its own session (slow: not for loops). */
bool pprof_symbol_of(uintptr_t addr, char *buf, size_t cap);

/* ---- the CPU profiler (api/pprof_cpu.c) ---------------------------------------- */
#define PPROF_CPU_HZ 100
#define PPROF_CPU_MAX_STACK 64

void api__cpuprof_thread_start(const char *name, int id);
void api__cpuprof_thread_stop(void);
/* The labels current on this thread, for CPU samples (one TLS store). */
void api__cpuprof_set_labels(const api_labels_t *l);
/* Starts sampling every registered thread; BC_EBUSY (409) when a profile
 * runs already. */
int api__cpuprof_start(void);
/* Moves samples from the threads' rings into the aggregate (any time while
 * running; the admin timer calls it every 100 ms). */
void api__cpuprof_drain(void);
/* Stops the timers, drains, and writes the samples into p (which has the
 * sample types set); ends the profile. */
void api__cpuprof_stop(pprof_t *p);

#endif
