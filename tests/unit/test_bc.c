/* test_bc.c - base/bc.c: size and duration parsers (Go semantics), the
 * duration formatter, bc_parse_u64, SipHash-1-3, XXH64 and bc_strerror.
 *
 * Expected values are computed independently of the code under test:
 * arithmetic written out in the test, Go's documented ParseDuration and
 * Duration.String behaviour, SipHash-1-3 vectors from a reference
 * implementation validated against the published SipHash-2-4 vectors and
 * against Rust's std DefaultHasher (SipHash-1-3, key 0), and XXH64 vectors
 * from libxxhash 0.8.1.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"

#define SENTINEL 0xdeadbeefcafef00dull
#define NS 1ull
#define US 1000ull
#define MS 1000000ull
#define SEC 1000000000ull
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define TIB (1024ull * GIB)

/* ---- bc_parse_size -------------------------------------------------------- */

static void expect_size(const char *s, uint64_t want) {
  uint64_t v = SENTINEL;
  int rc = bc_parse_size(s, strlen(s), &v);
  if (rc != 0 || v != want)
    fail_msg("bc_parse_size(\"%s\") = rc %d, %" PRIu64 "; want %" PRIu64, s,
             rc, v, want);
}

static void expect_size_err(const char *s, size_t len, int want_rc) {
  uint64_t v = SENTINEL;
  int rc = bc_parse_size(s, len, &v);
  if (rc != want_rc)
    fail_msg("bc_parse_size(\"%.*s\") = rc %d; want %d", (int)len, s, rc,
             want_rc);
  if (v != SENTINEL)
    fail_msg("bc_parse_size(\"%.*s\") wrote *out on failure", (int)len, s);
}

static void test_parse_size_valid(void **state) {
  (void)state;
  expect_size("512", 512);
  expect_size("0", 0);
  expect_size("64KiB", 64 * KIB);
  expect_size("512MiB", 512 * MIB);
  expect_size("2GiB", 2 * GIB);
  expect_size("1.5GiB", GIB + GIB / 2);
  expect_size("10MB", 10ull * 1000 * 1000);
  expect_size("1k", 1000);
  expect_size("1K", 1000);
  expect_size("1kb", 1000);
  expect_size("3KB", 3000);
  expect_size("1kib", KIB);
  expect_size("4096b", 4096);
  expect_size("4096B", 4096);
  expect_size("7m", 7000000);
  expect_size("2g", 2000000000ull);
  expect_size("2GB", 2000000000ull);
  expect_size("1t", 1000000000000ull);
  expect_size("1TiB", TIB);
  expect_size("0.5KiB", 512);
  expect_size("2.25MiB", 2 * MIB + MIB / 4);
  expect_size("1.5k", 1500);
  expect_size("18446744073709551615", UINT64_MAX);
  expect_size("17179869183GiB", UINT64_MAX - GIB + 1); /* (2^34 - 1) * 2^30 */
  /* length-bounded: the rest of the buffer is not part of the number */
  uint64_t v = SENTINEL;
  assert_int_equal(bc_parse_size("64KiBxyz", 5, &v), 0);
  assert_int_equal(v, 64 * KIB);
}

static void test_parse_size_fractions_exact(void **state) {
  (void)state;
  /* decimal fractions of decimal units are exact numbers of bytes */
  expect_size("0.1k", 100);
  expect_size("0.001k", 1);
  expect_size("1.001k", 1001);
  expect_size("0.013k", 13);
  expect_size("2.3MB", 2300000);
  expect_size("0.000001MB", 1);
  expect_size("1.000000001GB", 1000000001);
  /* binary units: the exact value rounded down to whole bytes */
  expect_size("1.1GiB", 1181116006); /* 1.1 * 2^30 = 1181116006.4 */
  expect_size("0.1KiB", 102);        /* 102.4 */
  for (unsigned f = 0; f < 1000; f++) {
    char buf[32];
    snprintf(buf, sizeof buf, "0.%03uk", f);
    expect_size(buf, f);
    snprintf(buf, sizeof buf, "7.%03uMB", f);
    expect_size(buf, 7000000ull + f * 1000ull);
  }
}

static void test_parse_size_invalid(void **state) {
  (void)state;
  expect_size_err("", 0, BC_EINVAL);
  expect_size_err("abc", 3, BC_EINVAL);
  expect_size_err("1.5", 3, BC_EINVAL); /* fractional bytes */
  expect_size_err("1.5b", 4, BC_EINVAL);
  expect_size_err("-1", 2, BC_EINVAL);
  expect_size_err("5XB", 3, BC_EINVAL);
  expect_size_err("KiB", 3, BC_EINVAL);
  expect_size_err("1 KiB", 5, BC_EINVAL);
  expect_size_err("1KiBs", 5, BC_EINVAL);
  expect_size_err("1PiB", 4, BC_EINVAL);
  expect_size_err(".", 1, BC_EINVAL);
  expect_size_err("1e3", 3, BC_EINVAL);
  expect_size_err("99999999999TiB", 14, BC_ERANGE);
  expect_size_err("18446744073709551616", 20, BC_ERANGE);
  expect_size_err("17179869184GiB", 14, BC_ERANGE); /* exactly 2^64 */
  expect_size_err("16777216TiB", 11, BC_ERANGE);    /* 2^24 * 2^40 */
}

/* ---- bc_parse_duration ---------------------------------------------------- */

static void expect_dur(const char *s, bool bare, uint64_t want) {
  uint64_t v = SENTINEL;
  int rc = bc_parse_duration(s, strlen(s), bare, &v);
  if (rc != 0 || v != want)
    fail_msg("bc_parse_duration(\"%s\", bare=%d) = rc %d, %" PRIu64
             "; want %" PRIu64,
             s, bare, rc, v, want);
}

static void expect_dur_err(const char *s, bool bare, int want_rc) {
  uint64_t v = SENTINEL;
  int rc = bc_parse_duration(s, strlen(s), bare, &v);
  if (want_rc ? rc != want_rc : rc == 0)
    fail_msg("bc_parse_duration(\"%s\", bare=%d) = rc %d; want %d", s, bare,
             rc, want_rc);
  if (v != SENTINEL)
    fail_msg("bc_parse_duration(\"%s\") wrote *out on failure", s);
}

static void test_parse_duration_valid(void **state) {
  (void)state;
  for (int bare = 0; bare <= 1; bare++) {
    expect_dur("90s", bare, 90 * SEC);
    expect_dur("1h30m", bare, HOUR + 30 * MIN);
    expect_dur("1.5h", bare, HOUR + 30 * MIN);
    expect_dur("300ms", bare, 300 * MS);
    expect_dur("2h45m30.5s", bare, 2 * HOUR + 45 * MIN + 30 * SEC + SEC / 2);
    expect_dur("1us", bare, US);
    expect_dur("1\xc2\xb5s", bare, US); /* U+00B5 MICRO SIGN */
    expect_dur("1\xce\xbcs", bare, US); /* U+03BC GREEK SMALL LETTER MU */
    expect_dur("1ns", bare, NS);
    expect_dur("0", bare, 0);
    expect_dur("0s", bare, 0);
    expect_dur("+5s", bare, 5 * SEC);
    expect_dur(".5s", bare, SEC / 2);
    expect_dur("1.s", bare, SEC);
    expect_dur("1h1m1s1ms1us1ns", bare, HOUR + MIN + SEC + MS + US + NS);
    expect_dur("3m3m", bare, 6 * MIN); /* Go adds repeated units */
    expect_dur("100h", bare, 100 * HOUR);
    expect_dur("5124095h", bare, 5124095ull * HOUR); /* below 2^64 ns */
  }
  expect_dur("30", true, 30 * SEC);
  expect_dur("+30", true, 30 * SEC);
  expect_dur("18446744073", true, 18446744073ull * SEC);
}

static void test_parse_duration_fractions_exact(void **state) {
  (void)state;
  /* Go: ParseDuration("0.13s") == 130ms exactly, and so on. */
  expect_dur("1.1s", false, 1100 * MS);
  expect_dur("0.13s", false, 130 * MS);
  expect_dur("0.001s", false, 1 * MS);
  expect_dur("0.0005s", false, 500 * US);
  expect_dur("1.123456789s", false, 1123456789);
  expect_dur("0.000000123s", false, 123);
  expect_dur("2.5ms", false, 2500 * US);
  expect_dur("0.1h", false, 6 * MIN);
  expect_dur("1.7m", false, 102 * SEC);
  /* every millisecond step of 0.000s .. 0.999s */
  for (unsigned f = 0; f < 1000; f++) {
    char buf[32];
    snprintf(buf, sizeof buf, "0.%03us", f);
    expect_dur(buf, false, f * MS);
  }
}

static void test_parse_duration_invalid(void **state) {
  (void)state;
  for (int bare = 0; bare <= 1; bare++) {
    expect_dur_err("", bare, BC_EINVAL);
    expect_dur_err("5x", bare, BC_EINVAL);
    expect_dur_err("-5s", bare, BC_EINVAL);
    expect_dur_err("1h-2m", bare, BC_EINVAL);
    expect_dur_err(".s", bare, BC_EINVAL);
    expect_dur_err("s", bare, BC_EINVAL);
    expect_dur_err("+", bare, BC_EINVAL);
    expect_dur_err("-", bare, BC_EINVAL);
    expect_dur_err("1h30", bare, BC_EINVAL); /* missing unit */
    expect_dur_err("5 s", bare, BC_EINVAL);
    expect_dur_err("5sec", bare, BC_EINVAL);
    expect_dur_err("5S", bare, BC_EINVAL);
    expect_dur_err("1e3s", bare, BC_EINVAL);
    expect_dur_err("1d", bare, BC_EINVAL);
    expect_dur_err("1..5s", bare, BC_EINVAL);
    expect_dur_err("1.5", bare, BC_EINVAL);
    expect_dur_err("18446744074s", bare, BC_ERANGE);
    expect_dur_err("5124096h", bare, BC_ERANGE);
    expect_dur_err("5124095h5124095h", bare, BC_ERANGE);
    expect_dur_err("99999999999999999999ns", bare, BC_ERANGE);
  }
  expect_dur_err("30", false, BC_EINVAL); /* bare seconds not allowed */
  expect_dur_err("18446744074", true, BC_ERANGE);
  expect_dur_err("99999999999999999999", true, BC_ERANGE);
  expect_dur_err("99999999999999999999", false, 0 /* any error */);
}

/* ---- bc_parse_u64 ---------------------------------------------------------- */

static void test_parse_u64(void **state) {
  (void)state;
  struct {
    const char *s;
    int rc;
    uint64_t v;
  } cases[] = {
      {"0", 0, 0},
      {"42", 0, 42},
      {"007", 0, 7},
      {"4294967296", 0, 4294967296ull},
      {"18446744073709551615", 0, UINT64_MAX},
      {"18446744073709551616", BC_ERANGE, 0},
      {"18446744073709551620", BC_ERANGE, 0},
      {"99999999999999999999", BC_ERANGE, 0},
      {"", BC_EINVAL, 0},
      {"12a", BC_EINVAL, 0},
      {"+1", BC_EINVAL, 0},
      {"-1", BC_EINVAL, 0},
      {" 1", BC_EINVAL, 0},
      {"1 ", BC_EINVAL, 0},
  };
  for (size_t i = 0; i < BC_ARRAY_LEN(cases); i++) {
    uint64_t v = SENTINEL;
    int rc = bc_parse_u64(cases[i].s, strlen(cases[i].s), &v);
    if (rc != cases[i].rc)
      fail_msg("bc_parse_u64(\"%s\") rc %d want %d", cases[i].s, rc,
               cases[i].rc);
    if (rc == 0 && v != cases[i].v)
      fail_msg("bc_parse_u64(\"%s\") = %" PRIu64, cases[i].s, v);
    if (rc != 0 && v != SENTINEL)
      fail_msg("bc_parse_u64(\"%s\") wrote *out on failure", cases[i].s);
  }
  uint64_t v = 0;
  assert_int_equal(bc_parse_u64("123456", 3, &v), 0);
  assert_int_equal(v, 123);
  /* every value near 10^k and 2^k round-trips through printf */
  for (int k = 0; k < 64; k++) {
    uint64_t x[] = {(1ull << k) - 1, 1ull << k, (1ull << k) + 1};
    for (int j = 0; j < 3; j++) {
      char buf[32];
      int n = snprintf(buf, sizeof buf, "%" PRIu64, x[j]);
      assert_int_equal(bc_parse_u64(buf, (size_t)n, &v), 0);
      assert_int_equal(v, x[j]);
    }
  }
}

/* ---- bc_format_duration ---------------------------------------------------- */

static void expect_fmt(uint64_t ns, const char *want) {
  char buf[64];
  memset(buf, 'X', sizeof buf);
  size_t n = bc_format_duration(ns, buf, sizeof buf);
  if (strcmp(buf, want) != 0 || n != strlen(want))
    fail_msg("bc_format_duration(%" PRIu64 ") = \"%s\" (%zu); Go prints "
             "\"%s\"",
             ns, buf, n, want);
}

static void test_format_duration_go(void **state) {
  (void)state;
  /* Go's time.Duration.String for the same values */
  expect_fmt(1, "1ns");
  expect_fmt(999, "999ns");
  expect_fmt(1000, "1\xc2\xb5s");
  expect_fmt(1500, "1.5\xc2\xb5s");
  expect_fmt(100000, "100\xc2\xb5s");
  expect_fmt(1500000, "1.5ms");
  expect_fmt(SEC, "1s");
  expect_fmt(90 * SEC, "1m30s");
  expect_fmt(61 * SEC + SEC / 2, "1m1.5s");
  expect_fmt(HOUR, "1h0m0s");
  expect_fmt(HOUR + 30 * MIN, "1h30m0s");
  expect_fmt(2 * HOUR + 45 * MIN + 30 * SEC + SEC / 2, "2h45m30.5s");
  expect_fmt(100 * HOUR, "100h0m0s");
}

static void test_format_duration_zero(void **state) {
  (void)state;
  expect_fmt(0, "0s"); /* Go: Duration(0).String() == "0s" */
}

static void test_format_duration_precision(void **state) {
  (void)state;
  /* Go keeps every nanosecond */
  expect_fmt(1234567, "1.234567ms");
  expect_fmt(999999999, "999.999999ms");
  expect_fmt(SEC + 1, "1.000000001s");
  expect_fmt(59 * SEC + 999999999, "59.999999999s");
  expect_fmt(HOUR + 15 * MIN + 30 * SEC + 918273645, "1h15m30.918273645s");
  expect_fmt(1001, "1.001\xc2\xb5s");
}

static void test_format_duration_small_buffer(void **state) {
  (void)state;
  char buf[4];
  memset(buf, 'X', sizeof buf);
  size_t n = bc_format_duration(2 * HOUR + 45 * MIN + 30 * SEC, buf, sizeof buf);
  /* snprintf semantics: the full length is returned, the output truncated */
  assert_true(n > sizeof buf);
  assert_int_equal(buf[3], '\0');
  assert_int_equal(strlen(buf), 3);
}

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint64_t rnd64(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void test_format_parse_round_trip(void **state) {
  (void)state;
  /* what the formatter prints, the parser reads back to the same value */
  int bad = 0;
  for (int i = 0; i < 20000; i++) {
    int mag = (int)(rnd64() % 50); /* up to 2^49 ns ~ 6.5 days */
    uint64_t ns = rnd64() & ((1ull << mag) - 1);
    if (ns == 0)
      ns = 1;
    char buf[64];
    bc_format_duration(ns, buf, sizeof buf);
    uint64_t back = SENTINEL;
    int rc = bc_parse_duration(buf, strlen(buf), false, &back);
    if (rc != 0 || back != ns) {
      if (bad < 5)
        print_message("round trip %" PRIu64 " -> \"%s\" -> rc %d %" PRIu64
                      "\n",
                      ns, buf, rc, back);
      bad++;
    }
  }
  if (bad)
    fail_msg("%d of 20000 durations do not survive format+parse", bad);
}

/* ---- hashes ---------------------------------------------------------------- */

#include "bc_vectors.inc"

static void test_siphash13_vectors(void **state) {
  (void)state;
  const uint64_t key[2] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  uint8_t msg[64];
  for (int i = 0; i < 64; i++)
    msg[i] = (uint8_t)i;
  for (size_t len = 0; len <= 64; len++) {
    uint64_t h = bc_siphash13(msg, len, key);
    if (h != sip13_keyed[len])
      fail_msg("siphash13 len %zu = %016" PRIx64 " want %016" PRIx64, len, h,
               sip13_keyed[len]);
  }
  /* Rust's DefaultHasher::new() is SipHash-1-3 with key (0,0) */
  const uint64_t zero[2] = {0, 0};
  assert_int_equal(bc_siphash13("", 0, zero), 0xd1fba762150c532cull);
  assert_int_equal(bc_siphash13("a", 1, zero), 0x407448d2b89b1813ull);
  assert_int_equal(bc_siphash13("abc", 3, zero), 0xc03bc3a0042630f2ull);
  assert_int_equal(bc_siphash13("siphash", 7, zero), 0x8264ceeccb16bcbeull);
  assert_int_equal(bc_siphash13(msg, 8, zero), 0xead411e67ebe2eeaull);
  assert_int_equal(bc_siphash13(msg, 15, zero), 0xf30eb725bb91c9eaull);
  assert_int_equal(bc_siphash13(msg, 16, zero), 0x8972188433a5c5b7ull);
  assert_int_equal(bc_siphash13(msg, 63, zero), 0x385d3e39e5f37359ull);
}

static void test_siphash13_properties(void **state) {
  (void)state;
  const uint64_t k1[2] = {1, 2}, k2[2] = {1, 3}, k3[2] = {0x100000000ull, 2};
  uint8_t buf[80];
  for (int i = 0; i < 80; i++)
    buf[i] = (uint8_t)(i * 13 + 1);
  uint64_t seen[65];
  for (size_t len = 0; len <= 64; len++) {
    uint64_t h = bc_siphash13(buf, len, k1);
    assert_int_equal(h, bc_siphash13(buf, len, k1)); /* deterministic */
    assert_int_not_equal(h, bc_siphash13(buf, len, k2));
    assert_int_not_equal(h, bc_siphash13(buf, len, k3));
    /* unaligned input gives the same answer */
    uint8_t copy[81];
    memcpy(copy + 1, buf, len);
    assert_int_equal(h, bc_siphash13(copy + 1, len, k1));
    for (size_t j = 0; j < len; j++)
      assert_int_not_equal(seen[j], h);
    seen[len] = h;
    /* every single-bit flip changes the hash */
    for (size_t bit = 0; bit < len * 8; bit += 7) {
      buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
      assert_int_not_equal(h, bc_siphash13(buf, len, k1));
      buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
  }
}

static void test_xxh64_vectors(void **state) {
  (void)state;
  /* the well-known ones */
  assert_int_equal(bc_xxh64("", 0, 0), 0xEF46DB3751D8E999ull);
  assert_int_equal(bc_xxh64("a", 1, 0), 0xD24EC4F1A98C6E5Bull);
  assert_int_equal(bc_xxh64("abc", 3, 0), 0x44BC2CF5AD770999ull);
  assert_int_equal(bc_xxh64("Nobody inspects the spammish repetition", 39, 0),
                   0xFBCEA83C8A378BF1ull);
  /* every tail path and the 32-byte stripe loop, three seeds */
  uint8_t buf[201];
  for (int i = 0; i < 200; i++)
    buf[i] = (uint8_t)(i * 7 + 3);
  for (size_t i = 0; i < BC_ARRAY_LEN(xxh_vec); i++) {
    uint64_t h = bc_xxh64(buf, xxh_vec[i].len, xxh_vec[i].seed);
    if (h != xxh_vec[i].h)
      fail_msg("xxh64 len %zu seed %" PRIx64 " = %016" PRIx64
               " want %016" PRIx64,
               xxh_vec[i].len, xxh_vec[i].seed, h, xxh_vec[i].h);
    /* unaligned */
    uint8_t copy[208];
    memcpy(copy + 3, buf, xxh_vec[i].len);
    assert_int_equal(bc_xxh64(copy + 3, xxh_vec[i].len, xxh_vec[i].seed), h);
  }
}

/* ---- bc_strerror ------------------------------------------------------------ */

static void test_strerror(void **state) {
  (void)state;
  assert_string_equal(bc_strerror(BC_ENOMEM), "out of memory");
  assert_string_equal(bc_strerror(BC_ELIMIT), "memory limit reached");
  assert_string_equal(bc_strerror(BC_EINVAL), "invalid argument");
  assert_string_equal(bc_strerror(BC_ENOENT), "no such key");
  assert_string_equal(bc_strerror(BC_EPRECOND), "precondition failed");
  assert_string_equal(bc_strerror(0), "success");
  assert_string_equal(bc_strerror(-1000), "unknown error");
  assert_string_equal(bc_strerror(1), "unknown error");
  /* every code named, negative, distinct, with a distinct message */
  const int codes[] = {BC_ENOMEM,  BC_ELIMIT, BC_EINVAL,    BC_ETOOBIG,
                       BC_ENOENT,  BC_EEXIST, BC_ERANGE,    BC_ECANCELED,
                       BC_EBUSY,   BC_EIO,    BC_EPRECOND};
  for (size_t i = 0; i < BC_ARRAY_LEN(codes); i++) {
    assert_true(codes[i] < 0);
    const char *m = bc_strerror(codes[i]);
    assert_non_null(m);
    assert_string_not_equal(m, "unknown error");
    for (size_t j = 0; j < i; j++) {
      assert_int_not_equal(codes[i], codes[j]);
      assert_string_not_equal(m, bc_strerror(codes[j]));
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_size_valid),
      cmocka_unit_test(test_parse_size_fractions_exact),
      cmocka_unit_test(test_parse_size_invalid),
      cmocka_unit_test(test_parse_duration_valid),
      cmocka_unit_test(test_parse_duration_fractions_exact),
      cmocka_unit_test(test_parse_duration_invalid),
      cmocka_unit_test(test_parse_u64),
      cmocka_unit_test(test_format_duration_go),
      cmocka_unit_test(test_format_duration_zero),
      cmocka_unit_test(test_format_duration_precision),
      cmocka_unit_test(test_format_duration_small_buffer),
      cmocka_unit_test(test_format_parse_round_trip),
      cmocka_unit_test(test_siphash13_vectors),
      cmocka_unit_test(test_siphash13_properties),
      cmocka_unit_test(test_xxh64_vectors),
      cmocka_unit_test(test_strerror),
  };
  return cmocka_run_group_tests_name("bc", tests, NULL, NULL);
}
