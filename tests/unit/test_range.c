/* test_range.c - api/parse.c: the Range parser (RFC 9110 14.1-14.2) and the
 * other pure helpers of conditional and listing requests: entity-tag lists
 * (If-Match / If-None-Match), IMF-fixdate and RFC 3339 dates, listing
 * cursors, UTF-8 validation and the percent-encoding of keys in JSON.
 * Table-driven: each failure prints the input and both results.
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

#include "api.h"

/* ---- Range ------------------------------------------------------------------ */

typedef struct range_case {
  const char *v;
  uint64_t size;
  int want;
  uint64_t first, last;
} range_case_t;

#define FULL API_RANGE_FULL
#define PART API_RANGE_PARTIAL
#define UNSAT API_RANGE_UNSATISFIABLE

static const range_case_t range_cases[] = {
    /* the three forms */
    {"bytes=0-499", 10000, PART, 0, 499},
    {"bytes=500-999", 10000, PART, 500, 999},
    {"bytes=9500-", 10000, PART, 9500, 9999},
    {"bytes=-500", 10000, PART, 9500, 9999},
    {"bytes=0-0", 1, PART, 0, 0},
    {"bytes=0-", 1, PART, 0, 0},
    {"bytes=-1", 1, PART, 0, 0},
    /* clamping */
    {"bytes=0-99999", 100, PART, 0, 99},
    {"bytes=90-200", 100, PART, 90, 99},
    {"bytes=-1000", 100, PART, 0, 99},
    {"bytes=0-18446744073709551615", 100, PART, 0, 99},
    {"bytes=0-99999999999999999999999", 100, PART, 0, 99},
    {"bytes=-99999999999999999999999", 100, PART, 0, 99},
    /* unit and spaces */
    {"BYTES=1-2", 10, PART, 1, 2},
    {"Bytes=1-2", 10, PART, 1, 2},
    {"bytes= 1-2 ", 10, PART, 1, 2},
    {"bytes=1-2,", 10, PART, 1, 2},
    {"bytes=,1-2", 10, PART, 1, 2},
    {"bytes=1-2 , ", 10, PART, 1, 2},
    /* unsatisfiable: first byte past the end, empty suffix, empty value */
    {"bytes=100-", 100, UNSAT, 0, 0},
    {"bytes=100-200", 100, UNSAT, 0, 0},
    {"bytes=99999999999999999999999-", 100, UNSAT, 0, 0},
    {"bytes=-0", 100, UNSAT, 0, 0},
    {"bytes=0-", 0, UNSAT, 0, 0},
    {"bytes=-5", 0, UNSAT, 0, 0},
    {"bytes=0-0", 0, UNSAT, 0, 0},
    {"bytes=200-300,400-", 100, UNSAT, 0, 0},
    /* several ranges: the whole value (200) unless none is satisfiable */
    {"bytes=0-1,5-6", 10, FULL, 0, 0},
    {"bytes=0-1,50-60", 10, FULL, 0, 0},
    {"bytes=50-60,0-1", 10, FULL, 0, 0},
    {"bytes=-1,-2", 10, FULL, 0, 0},
    /* ignored: other units, syntax errors */
    {"", 10, FULL, 0, 0},
    {"bytes", 10, FULL, 0, 0},
    {"bytes=", 10, FULL, 0, 0},
    {"bytes=,", 10, FULL, 0, 0},
    {"bytes =0-1", 10, FULL, 0, 0},
    {"items=0-1", 10, FULL, 0, 0},
    {"bytes=1", 10, FULL, 0, 0},
    {"bytes=-", 10, FULL, 0, 0},
    {"bytes=a-b", 10, FULL, 0, 0},
    {"bytes=5-1", 10, FULL, 0, 0},
    {"bytes=0-1;x", 10, FULL, 0, 0},
    {"bytes=0--1", 10, FULL, 0, 0},
    {"bytes=+1-2", 10, FULL, 0, 0},
    {"bytes=1-2 3", 10, FULL, 0, 0},
    {"bytes=0-1,a", 10, FULL, 0, 0},
    {"bytes=-1-2", 10, FULL, 0, 0},
};

static const char *kind(int k) {
  return k == PART ? "partial" : k == FULL ? "full" : k == UNSAT ? "416" : "?";
}

static void test_range_cases(void **state) {
  (void)state;
  int bad = 0;
  for (size_t i = 0; i < sizeof(range_cases) / sizeof(range_cases[0]); i++) {
    const range_case_t *c = &range_cases[i];
    uint64_t f = 777, l = 777;
    int got = api_parse_range(c->v, strlen(c->v), c->size, &f, &l);
    bool ok = got == c->want &&
              (got != PART || (f == c->first && l == c->last));
    if (!ok) {
      bad++;
      fprintf(stderr,
              "ERROR: api_parse_range(\"%s\", size %" PRIu64 ") = %s %" PRIu64
              "-%" PRIu64 "; want %s %" PRIu64 "-%" PRIu64 "\n",
              c->v, c->size, kind(got), f, l, kind(c->want), c->first,
              c->last);
    }
  }
  assert_int_equal(bad, 0);
}

/* Only the given length is read: a value that is not NUL-terminated. */
static void test_range_length_bound(void **state) {
  (void)state;
  const char buf[] = "bytes=1-2999"; /* read as "bytes=1-2" */
  uint64_t f, l;
  assert_int_equal(api_parse_range(buf, 9, 100, &f, &l), PART);
  assert_int_equal(f, 1);
  assert_int_equal(l, 2);
}

/* Properties on random inputs (seed printed): a partial answer is always
 * inside the value and non-empty; the parser never reads past len. */
static void test_range_random(void **state) {
  (void)state;
  uint64_t seed = 0x5eed;
  const char alphabet[] = "bytes=-,0123456789 ";
  char buf[32];
  for (int i = 0; i < 200000; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    size_t n = (seed >> 33) % sizeof(buf);
    uint64_t x = seed;
    for (size_t k = 0; k < n; k++) {
      x = x * 6364136223846793005ull + 1;
      buf[k] = alphabet[(x >> 33) % (sizeof(alphabet) - 1)];
    }
    if (n >= 6 && (seed & 1))
      memcpy(buf, "bytes=", 6);
    uint64_t size = (seed >> 20) % 50, f = 0, l = 0;
    char *copy = malloc(n ? n : 1); /* ASan catches a read past n */
    memcpy(copy, buf, n);
    int k = api_parse_range(copy, n, size, &f, &l);
    free(copy);
    if (k == PART && !(f <= l && l < size))
      fail_msg("seed %d: \"%.*s\" size %" PRIu64 " gave %" PRIu64 "-%" PRIu64,
               i, (int)n, buf, size, f, l);
  }
}

/* ---- entity-tag lists -------------------------------------------------------- */

static void test_etags(void **state) {
  (void)state;
  uint64_t t[4];
  char e1[19], e2[19];
  api_format_etag(0x0123456789abcdefull, e1);
  api_format_etag(0xfedcba9876543210ull, e2);
  assert_string_equal(e1, "\"0123456789abcdef\"");

  assert_int_equal(api_parse_etags("*", 1, false, t, 4), API_ETAGS_ANY);
  assert_int_equal(api_parse_etags(" * ", 3, true, t, 4), API_ETAGS_ANY);
  assert_int_equal(api_parse_etags(e1, strlen(e1), false, t, 4), 1);
  assert_int_equal(t[0], 0x0123456789abcdefull);

  char list[96];
  snprintf(list, sizeof list, "%s , W/%s,\"other\" ,", e1, e2);
  /* If-Match (strong): the weak tag cannot match, the foreign one is skipped */
  assert_int_equal(api_parse_etags(list, strlen(list), false, t, 4), 1);
  assert_int_equal(t[0], 0x0123456789abcdefull);
  /* If-None-Match (weak): W/"x" stands for "x" */
  assert_int_equal(api_parse_etags(list, strlen(list), true, t, 4), 2);
  assert_int_equal(t[1], 0xfedcba9876543210ull);
  /* none of ours: a list that matches nothing, not an error */
  assert_int_equal(api_parse_etags("\"abc\"", 5, false, t, 4), 0);
  assert_int_equal(api_parse_etags("\"\"", 2, false, t, 4), 0);
  /* upper-case hex is another tag (strong comparison is octet equality) */
  assert_int_equal(api_parse_etags("\"0123456789ABCDEF\"", 18, false, t, 4), 0);
  /* too many of ours */
  snprintf(list, sizeof list, "%s,%s,%s", e1, e2, e1);
  assert_int_equal(api_parse_etags(list, strlen(list), false, t, 2),
                   API_ETAGS_TOO_MANY);
  /* syntax errors */
  static const char *bad[] = {"",       " ",       ",",        "abc",
                              "\"abc",  "W/abc",   "w/\"abc\"", "* , \"a\"",
                              "\"a\"x", "\"a\" \"b\"", "\"a b\"", "\"a\\\"\""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (api_parse_etags(bad[i], strlen(bad[i]), true, t, 4) != API_ETAGS_BAD)
      fail_msg("api_parse_etags(\"%s\") accepted a malformed list", bad[i]);
}

/* ---- dates ------------------------------------------------------------------- */

static void test_dates(void **state) {
  (void)state;
  char d[30], r[25];
  api_format_http_date(784111777, d); /* RFC 9110's example */
  assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
  api_format_http_date(0, d);
  assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
  api_format_http_date(951782400, d); /* a leap day */
  assert_string_equal(d, "Tue, 29 Feb 2000 00:00:00 GMT");
  api_format_http_date(4102444799u, d);
  assert_string_equal(d, "Thu, 31 Dec 2099 23:59:59 GMT");
  api_format_http_date(UINT64_MAX, d); /* clamped to four-digit years */
  assert_string_equal(d, "Fri, 31 Dec 9999 23:59:59 GMT");
  api_format_rfc3339_ms(784111777123u, r);
  assert_string_equal(r, "1994-11-06T08:49:37.123Z");
  api_format_rfc3339_ms(1782432000005u, r);
  assert_string_equal(r, "2026-06-26T00:00:00.005Z");
}

/* ---- cursors, UTF-8, percent-encoding ----------------------------------------- */

static void test_cursor(void **state) {
  (void)state;
  char c[17];
  uint64_t v;
  api_format_cursor(0x00ab00cd00ef0012ull, c);
  assert_string_equal(c, "00ab00cd00ef0012");
  assert_int_equal(api_parse_cursor(c, 16, &v), 0);
  assert_int_equal(v, 0x00ab00cd00ef0012ull);
  assert_int_equal(api_parse_cursor("00AB00CD00EF0012", 16, &v), 0);
  assert_int_equal(api_parse_cursor("00ab", 4, &v), -1);
  assert_int_equal(api_parse_cursor("00ab00cd00ef001g", 16, &v), -1);
  assert_int_equal(api_parse_cursor("00ab00cd00ef00120", 17, &v), -1);
}

static void test_utf8(void **state) {
  (void)state;
  static const struct {
    const char *s;
    bool ok;
  } cases[] = {
      {"plain/ascii", true},
      {"caf\xc3\xa9", true},                 /* é */
      {"\xe2\x82\xac", true},                /* € */
      {"\xf0\x9f\x98\x80", true},            /* U+1F600 */
      {"\xf4\x8f\xbf\xbf", true},            /* U+10FFFF */
      {"\xc3", false},                       /* truncated */
      {"\xe2\x82", false},
      {"\x80", false},                       /* lone continuation */
      {"\xc0\xaf", false},                   /* overlong / */
      {"\xe0\x80\xaf", false},               /* overlong */
      {"\xed\xa0\x80", false},               /* surrogate */
      {"\xf4\x90\x80\x80", false},           /* > U+10FFFF */
      {"\xff", false},
      {"ok\xc3\xa9\xc3", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (api_utf8_valid(cases[i].s, strlen(cases[i].s)) != cases[i].ok)
      fail_msg("api_utf8_valid case %zu: want %d", i, cases[i].ok);
}

static void test_percent_encode(void **state) {
  (void)state;
  char out[64], back[64];
  const char key[] = "a b/%\xff~._-Z9";
  size_t n = api_percent_encode(key, sizeof(key) - 1, out);
  assert_string_equal(out, "a%20b/%25%FF~._-Z9");
  assert_int_equal(n, strlen(out));
  /* the form the listing shows is the form a URL path takes */
  long m = api_decode_key(out, n, back, sizeof back);
  assert_int_equal(m, (long)sizeof(key) - 1);
  assert_memory_equal(back, key, sizeof(key) - 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_range_cases),
      cmocka_unit_test(test_range_length_bound),
      cmocka_unit_test(test_range_random),
      cmocka_unit_test(test_etags),
      cmocka_unit_test(test_dates),
      cmocka_unit_test(test_cursor),
      cmocka_unit_test(test_utf8),
      cmocka_unit_test(test_percent_encode),
  };
  return cmocka_run_group_tests_name("range", tests, NULL, NULL);
}
