/* sim.c - trace-driven hit-ratio simulator for bufcache's eviction policy.
 *
 * Replays synthetic request traces against four policies of the same
 * capacity (in objects; every object has the same size) and prints a
 * Markdown table of hit ratios. A request is a lookup; a miss inserts the
 * key (demand fill), evicting as the policy says.
 *
 *   LRU        one list, hits move to the head, evict the tail.
 *   SIEVE      Zhang et al., NSDI'24, exactly as cache/cache.c runs it: a
 *              FIFO queue, newest at the head; a hit sets a visited bit; the
 *              hand walks from the tail toward the head clearing bits and
 *              evicts the first unvisited entry, then stays there.
 *   SIEVE x512 the same, as bufcache ships it: keys are split over 512
 *              shards by a hash, each shard with its own queue and hand and
 *              1/512 of the capacity.
 *   S3-FIFO    Yang et al., SOSP'23: small FIFO (10%), main FIFO (90%) with
 *              a 2-bit frequency (reinsert while > 0, decrementing), ghost
 *              FIFO of keys as long as main; a small-queue tail accessed at
 *              least once moves to main, else it goes to the ghost; a miss
 *              found in the ghost goes straight to main.
 *   W-TinyLFU  Einziger et al. / Caffeine: 1% window LRU, 99% segmented LRU
 *              (20% probation, 80% protected), admission by a count-min
 *              sketch of 4-bit counters (4 rows, width = next power of two
 *              >= capacity, halved every 10 x capacity increments): the
 *              window's victim enters main only if its estimate beats the
 *              probation victim's.
 *
 * Traces (keys 0..K-1 are ranks shuffled by a fixed permutation, so
 * popularity is not correlated with key order):
 *   zipf A      R requests, Zipf(A) over K keys (alias method, exact).
 *   scan        Zipf 0.99 interleaved with one-hit sequential scans: after
 *               each Zipf request a scan of SCAN_LEN never-seen keys starts
 *               with probability p, chosen so that SCAN_FRAC of all requests
 *               belong to scans.
 *
 * Usage: sim [-k keys] [-r requests] [-s seed] [-l scan_len] [-f scan_frac]
 * Everything is deterministic for a given seed.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- randomness ---------------------------------------------------------- */

static uint64_t rng_s[4];

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void rng_seed(uint64_t seed) {
  for (int i = 0; i < 4; i++)
    rng_s[i] = splitmix(&seed);
}

/* xoshiro256** */
static inline uint64_t rng(void) {
  uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
  rng_s[2] ^= rng_s[0];
  rng_s[3] ^= rng_s[1];
  rng_s[1] ^= rng_s[2];
  rng_s[0] ^= rng_s[3];
  rng_s[2] ^= t;
  rng_s[3] = rotl(rng_s[3], 45);
  return r;
}

static inline double rng_unit(void) { return (double)(rng() >> 11) * 0x1p-53; }

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n, sz);
  if (!p) {
    fprintf(stderr, "sim: out of memory\n");
    exit(1);
  }
  return p;
}

/* ---- Zipf by the alias method ------------------------------------------- */

typedef struct alias {
  uint32_t n;
  double *prob;
  uint32_t *alias;
} alias_t;

static void alias_init(alias_t *a, uint32_t n, double s) {
  double *w = xcalloc(n, sizeof(double)), sum = 0;
  for (uint32_t i = 0; i < n; i++)
    sum += (w[i] = pow((double)(i + 1), -s));
  a->n = n;
  a->prob = xcalloc(n, sizeof(double));
  a->alias = xcalloc(n, sizeof(uint32_t));
  uint32_t *small = xcalloc(n, sizeof(uint32_t)),
           *large = xcalloc(n, sizeof(uint32_t));
  uint32_t ns = 0, nl = 0;
  for (uint32_t i = 0; i < n; i++) {
    w[i] = w[i] * n / sum;
    if (w[i] < 1)
      small[ns++] = i;
    else
      large[nl++] = i;
  }
  while (ns && nl) {
    uint32_t s_ = small[--ns], l = large[--nl];
    a->prob[s_] = w[s_];
    a->alias[s_] = l;
    w[l] -= 1 - w[s_];
    if (w[l] < 1)
      small[ns++] = l;
    else
      large[nl++] = l;
  }
  while (nl)
    a->prob[large[--nl]] = 1;
  while (ns)
    a->prob[small[--ns]] = 1;
  free(w);
  free(small);
  free(large);
}

static inline uint32_t alias_draw(const alias_t *a) {
  uint64_t r = rng();
  uint32_t i = (uint32_t)(((r >> 32) * a->n) >> 32);
  return rng_unit() < a->prob[i] ? i : a->alias[i];
}

static void alias_free(alias_t *a) {
  free(a->prob);
  free(a->alias);
}

/* ---- traces --------------------------------------------------------------- */

typedef struct trace {
  uint32_t *req;
  size_t n;
  uint32_t nkeys; /* key ids are < nkeys */
} trace_t;

static uint32_t *perm; /* rank -> key */

static void make_perm(uint32_t k) {
  perm = xcalloc(k, sizeof(uint32_t));
  for (uint32_t i = 0; i < k; i++)
    perm[i] = i;
  for (uint32_t i = k - 1; i > 0; i--) {
    uint32_t j = (uint32_t)(rng() % (i + 1));
    uint32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

static void trace_zipf(trace_t *t, uint32_t k, size_t r, double alpha,
                       double scan_frac, uint32_t scan_len) {
  alias_t a;
  alias_init(&a, k, alpha);
  t->req = xcalloc(r, sizeof(uint32_t));
  t->n = r;
  /* P(start a scan after a Zipf request) so that scans are scan_frac of
   * all requests: L p / (1 + L p) = f */
  double p = scan_frac > 0 ? scan_frac / (1 - scan_frac) / scan_len : 0;
  uint32_t next_scan_key = k;
  size_t i = 0;
  while (i < r) {
    t->req[i++] = perm[alias_draw(&a)];
    if (p > 0 && rng_unit() < p)
      for (uint32_t j = 0; j < scan_len && i < r; j++)
        t->req[i++] = next_scan_key++;
  }
  t->nkeys = next_scan_key;
  alias_free(&a);
}

static inline uint64_t mix(uint64_t x, uint64_t s) {
  x ^= s;
  x = (x ^ (x >> 33)) * 0xff51afd7ed558ccdull;
  x = (x ^ (x >> 33)) * 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

/* ---- intrusive lists over key ids ---------------------------------------- */

#define NIL UINT32_MAX

typedef struct list {
  uint32_t head, tail, n;
} list_t;

static uint32_t *nxt, *prv; /* shared by the policy being run */

static void l_init(list_t *l) { l->head = l->tail = NIL, l->n = 0; }

static inline void l_push_head(list_t *l, uint32_t x) {
  prv[x] = NIL;
  nxt[x] = l->head;
  if (l->head != NIL)
    prv[l->head] = x;
  else
    l->tail = x;
  l->head = x;
  l->n++;
}

static inline void l_remove(list_t *l, uint32_t x) {
  if (prv[x] != NIL)
    nxt[prv[x]] = nxt[x];
  else
    l->head = nxt[x];
  if (nxt[x] != NIL)
    prv[nxt[x]] = prv[x];
  else
    l->tail = prv[x];
  l->n--;
}

/* where[x]: 0 = not cached; policies give the other values meanings */
static uint8_t *where;
static uint8_t *freq; /* per-key small counters (SIEVE visited, S3 freq) */

/* ---- LRU ------------------------------------------------------------------ */

static size_t run_lru(const trace_t *t, uint32_t cap) {
  list_t l;
  l_init(&l);
  size_t hits = 0;
  for (size_t i = 0; i < t->n; i++) {
    uint32_t x = t->req[i];
    if (where[x]) {
      hits++;
      if (l.head != x) {
        l_remove(&l, x);
        l_push_head(&l, x);
      }
      continue;
    }
    if (l.n >= cap) {
      uint32_t v = l.tail;
      l_remove(&l, v);
      where[v] = 0;
    }
    l_push_head(&l, x);
    where[x] = 1;
  }
  return hits;
}

/* ---- SIEVE (cache/cache.c's evict_one_locked) ----------------------------- */

static size_t run_sieve(const trace_t *t, uint32_t cap) {
  list_t l;
  l_init(&l);
  uint32_t hand = NIL;
  size_t hits = 0;
  for (size_t i = 0; i < t->n; i++) {
    uint32_t x = t->req[i];
    if (where[x]) {
      hits++;
      freq[x] = 1;
      continue;
    }
    if (l.n >= cap) {
      uint32_t o = hand != NIL ? hand : l.tail;
      while (freq[o]) {
        freq[o] = 0;
        o = prv[o] != NIL ? prv[o] : l.tail;
      }
      hand = prv[o];
      l_remove(&l, o);
      where[o] = 0;
    }
    l_push_head(&l, x);
    where[x] = 1;
    freq[x] = 0;
  }
  return hits;
}

/* SIEVE as bufcache ships it: the index is split into SHARDS shards by the
 * keyed hash and each shard runs its own SIEVE queue on its share of the
 * capacity (the pressure hook evicts every shard down to budget / shards). */
#define SHARDS 512

static size_t run_sieve_sharded(const trace_t *t, uint32_t cap) {
  list_t *l = xcalloc(SHARDS, sizeof(list_t));
  uint32_t *hand = xcalloc(SHARDS, sizeof(uint32_t));
  uint32_t *scap = xcalloc(SHARDS, sizeof(uint32_t));
  for (uint32_t i = 0; i < SHARDS; i++) {
    l_init(&l[i]);
    hand[i] = NIL;
    scap[i] = cap / SHARDS + (i < cap % SHARDS);
    if (!scap[i])
      scap[i] = 1;
  }
  size_t hits = 0;
  for (size_t i = 0; i < t->n; i++) {
    uint32_t x = t->req[i];
    if (where[x]) {
      hits++;
      freq[x] = 1;
      continue;
    }
    uint32_t sh = (uint32_t)(mix(x, 0x5bd1e995u) >> 55) & (SHARDS - 1);
    if (l[sh].n >= scap[sh]) {
      uint32_t o = hand[sh] != NIL ? hand[sh] : l[sh].tail;
      while (freq[o]) {
        freq[o] = 0;
        o = prv[o] != NIL ? prv[o] : l[sh].tail;
      }
      hand[sh] = prv[o];
      l_remove(&l[sh], o);
      where[o] = 0;
    }
    l_push_head(&l[sh], x);
    where[x] = 1;
    freq[x] = 0;
  }
  free(l);
  free(hand);
  free(scap);
  return hits;
}

/* ---- S3-FIFO --------------------------------------------------------------- */

enum { S3_SMALL = 1, S3_MAIN = 2 };

typedef struct ghost {
  uint32_t *ring; /* key ids, FIFO */
  uint64_t *when; /* key -> insertion sequence + 1 (0 = never) */
  uint64_t seq;
  uint32_t cap;
} ghost_t;

static void ghost_add(ghost_t *g, uint32_t x) {
  g->ring[g->seq % g->cap] = x;
  g->when[x] = ++g->seq;
}

static int ghost_take(ghost_t *g, uint32_t x) {
  uint64_t w = g->when[x];
  if (!w || g->seq - (w - 1) > g->cap || g->ring[(w - 1) % g->cap] != x)
    return 0;
  g->when[x] = 0;
  return 1;
}

static size_t run_s3fifo(const trace_t *t, uint32_t cap) {
  list_t s, m;
  l_init(&s);
  l_init(&m);
  uint32_t small_cap = cap / 10 ? cap / 10 : 1;
  ghost_t g = {xcalloc(cap, sizeof(uint32_t)), xcalloc(t->nkeys, 8), 0,
               cap - small_cap ? cap - small_cap : 1};
  size_t hits = 0;
  for (size_t i = 0; i < t->n; i++) {
    uint32_t x = t->req[i];
    if (where[x]) {
      hits++;
      if (freq[x] < 3)
        freq[x]++;
      continue;
    }
    while (s.n + m.n >= cap) {
      if (s.n >= small_cap || m.n == 0) {
        uint32_t v = s.tail;
        l_remove(&s, v);
        if (freq[v] >= 1) {
          freq[v] = 0;
          l_push_head(&m, v);
          where[v] = S3_MAIN;
        } else {
          where[v] = 0;
          ghost_add(&g, v);
        }
      } else {
        for (;;) {
          uint32_t v = m.tail;
          l_remove(&m, v);
          if (freq[v] > 0) {
            freq[v]--;
            l_push_head(&m, v);
            continue;
          }
          where[v] = 0;
          break;
        }
      }
    }
    freq[x] = 0;
    if (ghost_take(&g, x)) {
      l_push_head(&m, x);
      where[x] = S3_MAIN;
    } else {
      l_push_head(&s, x);
      where[x] = S3_SMALL;
    }
  }
  free(g.ring);
  free(g.when);
  return hits;
}

/* ---- W-TinyLFU ----------------------------------------------------------- */

typedef struct sketch {
  uint64_t *tab; /* 16 4-bit counters per word */
  uint32_t mask; /* words - 1 */
  uint64_t seed[4];
  uint64_t adds, sample;
} sketch_t;

static void sketch_init(sketch_t *k, uint32_t cap) {
  uint32_t w = 1;
  while (w * 16 < cap * 4)
    w <<= 1; /* at least cap counters per row (4 rows) */
  k->tab = xcalloc(w, sizeof(uint64_t));
  k->mask = w - 1;
  for (int i = 0; i < 4; i++)
    k->seed[i] = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
  k->adds = 0;
  k->sample = (uint64_t)cap * 10;
}

static inline void counter_at(const sketch_t *k, uint32_t x, int row,
                              uint32_t *word, int *shift) {
  uint64_t h = mix(x, k->seed[row]);
  *word = (uint32_t)h & k->mask;
  /* four rows share a word space; each row uses its own nibble group */
  *shift = (int)(((h >> 32) & 3) + (uint64_t)row * 4) * 4;
}

static int sketch_estimate(const sketch_t *k, uint32_t x) {
  int m = 15;
  for (int r = 0; r < 4; r++) {
    uint32_t w;
    int sh;
    counter_at(k, x, r, &w, &sh);
    int v = (int)((k->tab[w] >> sh) & 15);
    if (v < m)
      m = v;
  }
  return m;
}

static void sketch_add(sketch_t *k, uint32_t x) {
  int added = 0;
  for (int r = 0; r < 4; r++) {
    uint32_t w;
    int sh;
    counter_at(k, x, r, &w, &sh);
    if (((k->tab[w] >> sh) & 15) < 15) {
      k->tab[w] += (uint64_t)1 << sh;
      added = 1;
    }
  }
  if (added && ++k->adds >= k->sample) {
    for (uint32_t i = 0; i <= k->mask; i++)
      k->tab[i] = (k->tab[i] >> 1) & 0x7777777777777777ull;
    k->adds /= 2;
  }
}

enum { W_WINDOW = 1, W_PROBATION = 2, W_PROTECTED = 3 };

static size_t run_wtinylfu(const trace_t *t, uint32_t cap) {
  list_t win, prob, prot;
  l_init(&win);
  l_init(&prob);
  l_init(&prot);
  uint32_t wcap = cap / 100 ? cap / 100 : 1;
  uint32_t mcap = cap - wcap;
  uint32_t pcap = mcap * 8 / 10;
  sketch_t sk;
  sketch_init(&sk, cap);
  size_t hits = 0;
  for (size_t i = 0; i < t->n; i++) {
    uint32_t x = t->req[i];
    sketch_add(&sk, x);
    switch (where[x]) {
    case W_WINDOW:
      hits++;
      l_remove(&win, x);
      l_push_head(&win, x);
      continue;
    case W_PROBATION:
      hits++;
      l_remove(&prob, x);
      l_push_head(&prot, x);
      where[x] = W_PROTECTED;
      if (prot.n > pcap) {
        uint32_t d = prot.tail;
        l_remove(&prot, d);
        l_push_head(&prob, d);
        where[d] = W_PROBATION;
      }
      continue;
    case W_PROTECTED:
      hits++;
      l_remove(&prot, x);
      l_push_head(&prot, x);
      continue;
    default:
      break;
    }
    l_push_head(&win, x);
    where[x] = W_WINDOW;
    if (win.n <= wcap)
      continue;
    uint32_t cand = win.tail;
    l_remove(&win, cand);
    if (prob.n + prot.n < mcap) {
      l_push_head(&prob, cand);
      where[cand] = W_PROBATION;
      continue;
    }
    list_t *vl = prob.n ? &prob : &prot;
    uint32_t victim = vl->tail;
    if (sketch_estimate(&sk, cand) > sketch_estimate(&sk, victim)) {
      l_remove(vl, victim);
      where[victim] = 0;
      l_push_head(&prob, cand);
      where[cand] = W_PROBATION;
    } else {
      where[cand] = 0;
    }
  }
  free(sk.tab);
  return hits;
}

/* ---- driver --------------------------------------------------------------- */

typedef size_t (*policy_fn)(const trace_t *, uint32_t);
static const struct {
  const char *name;
  policy_fn fn;
} policies[] = {{"LRU", run_lru},
                {"SIEVE", run_sieve},
                {"SIEVE x512", run_sieve_sharded},
                {"S3-FIFO", run_s3fifo},
                {"W-TinyLFU", run_wtinylfu}};
#define NPOL (sizeof(policies) / sizeof(policies[0]))

static double run(const trace_t *t, int p, uint32_t cap) {
  nxt = xcalloc(t->nkeys, sizeof(uint32_t));
  prv = xcalloc(t->nkeys, sizeof(uint32_t));
  where = xcalloc(t->nkeys, 1);
  freq = xcalloc(t->nkeys, 1);
  size_t hits = policies[p].fn(t, cap);
  free(nxt);
  free(prv);
  free(where);
  free(freq);
  return (double)hits / (double)t->n;
}

static void row(const char *trace, const trace_t *t, uint32_t keys,
                double pct) {
  uint32_t cap = (uint32_t)(keys * pct / 100.0);
  double hr[NPOL];
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (size_t p = 0; p < NPOL; p++)
    hr[p] = run(t, (int)p, cap);
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("| %-22s | %4.0f%% (%7u) |", trace, pct, cap);
  for (size_t p = 0; p < NPOL; p++)
    printf(" %6.2f |", 100 * hr[p]);
  printf(" %+6.2f |\n", 100 * (hr[2] - hr[0]));
  fflush(stdout);
  fprintf(stderr, "sim: %s at %.0f%%: %.1f s\n", trace, pct,
          (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
}

int main(int argc, char **argv) {
  uint32_t keys = 1000000, scan_len = 20000;
  size_t reqs = 10000000;
  uint64_t seed = 42;
  double scan_frac = 0.30;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-k"))
      keys = (uint32_t)strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-r"))
      reqs = strtoull(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-s"))
      seed = strtoull(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-l"))
      scan_len = (uint32_t)strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "-f"))
      scan_frac = atof(argv[i + 1]);
    else {
      fprintf(stderr, "usage: sim [-k keys] [-r requests] [-s seed] "
                      "[-l scan_len] [-f scan_frac]\n");
      return 2;
    }
  }
  rng_seed(seed);
  make_perm(keys);
  printf("Keys %u, %zu requests per trace, seed %llu; hit ratio in %% of all "
         "requests (cold start included).\n\n",
         keys, reqs, (unsigned long long)seed);
  printf("| trace | cache size (objects) |");
  for (size_t p = 0; p < NPOL; p++)
    printf(" %s |", policies[p].name);
  printf(" SIEVE x512 - LRU |\n|---|---|");
  for (size_t p = 0; p < NPOL; p++)
    printf("---:|");
  printf("---:|\n");
  const double alphas[] = {0.8, 0.99, 1.2};
  for (size_t a = 0; a < 3; a++) {
    trace_t t;
    trace_zipf(&t, keys, reqs, alphas[a], 0, 0);
    char name[64];
    snprintf(name, sizeof name, "Zipf %.2f", alphas[a]);
    row(name, &t, keys, 1);
    row(name, &t, keys, 10);
    free(t.req);
  }
  trace_t t;
  trace_zipf(&t, keys, reqs, 0.99, scan_frac, scan_len);
  char name[64];
  snprintf(name, sizeof name, "Zipf 0.99 + %.0f%% scans", scan_frac * 100);
  row(name, &t, keys, 1);
  row(name, &t, keys, 10);
  free(t.req);
  free(perm);
  return 0;
}
