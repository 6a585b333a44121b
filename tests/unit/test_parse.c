/* test_parse.c - api/parse.c: key decoding and validation, query decoding,
 * ETag formatting. */
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

#define CANARY 0x5a

/* Decodes into a buffer surrounded by canaries; checks none is touched. */
static long decode_key(const char *in, size_t inlen, char *out, size_t cap) {
  char *buf = malloc(cap + 32);
  assert_non_null(buf);
  memset(buf, CANARY, cap + 32);
  long n = api_decode_key(in, inlen, buf + 16, cap);
  for (int i = 0; i < 16; i++) {
    assert_int_equal((unsigned char)buf[i], CANARY);
    assert_int_equal((unsigned char)buf[16 + cap + (size_t)i], CANARY);
  }
  if (n > 0)
    memcpy(out, buf + 16, (size_t)n);
  free(buf);
  return n;
}

static void expect_key(const char *in, size_t inlen, const char *want,
                       size_t wantlen) {
  char out[CACHE_MAX_KEY + 8];
  long n = decode_key(in, inlen, out, CACHE_MAX_KEY);
  if (n != (long)wantlen)
    fail_msg("api_decode_key(\"%.*s\") = %ld, want length %zu", (int)inlen,
             in, n, wantlen);
  assert_memory_equal(out, want, wantlen);
}

static void expect_key_err(const char *in, size_t inlen, long want) {
  char out[CACHE_MAX_KEY + 8];
  long n = decode_key(in, inlen, out, CACHE_MAX_KEY);
  if (n != want)
    fail_msg("api_decode_key(\"%.*s\") = %ld, want %ld", (int)inlen, in, n,
             want);
}

#define KEY(s) s, sizeof(s) - 1

static void test_key_plain(void **state) {
  (void)state;
  expect_key(KEY("a"), KEY("a"));
  expect_key(KEY("photos/1"), KEY("photos/1"));
  expect_key(KEY("a+b"), KEY("a+b")); /* '+' is not a space in a path */
  expect_key(KEY("~!$&'()*,;=:@."), KEY("~!$&'()*,;=:@."));
  expect_key(KEY("caf\xc3\xa9"), KEY("caf\xc3\xa9")); /* UTF-8 passes */
  expect_key(KEY(" "), KEY(" "));                      /* 0x20 is not control */
  expect_key(KEY("\x80\xff"), KEY("\x80\xff"));
}

static void test_key_escapes(void **state) {
  (void)state;
  expect_key(KEY("%2F"), KEY("/"));
  expect_key(KEY("%2f"), KEY("/"));
  expect_key(KEY("a%2Fb%2fc"), KEY("a/b/c"));
  expect_key(KEY("%41%62%7E"), KEY("Ab~"));
  expect_key(KEY("%20"), KEY(" "));
  expect_key(KEY("%25"), KEY("%"));
  expect_key(KEY("%2525"), KEY("%25")); /* decoded once only */
  expect_key(KEY("%80%fF%Ff"), KEY("\x80\xff\xff"));
  expect_key(KEY("x%41"), KEY("xA")); /* escape ending exactly at the end */
  /* every byte value through an escape */
  for (int b = 0; b < 256; b++) {
    char in[8], out[8];
    snprintf(in, sizeof in, "k%%%02X", b);
    long n = decode_key(in, 4, out, CACHE_MAX_KEY);
    if (b < 0x20 || b == 0x7f) {
      assert_int_equal(n, API_KEY_CONTROL);
    } else {
      assert_int_equal(n, 2);
      assert_int_equal((unsigned char)out[1], b);
    }
  }
}

static void test_key_empty_and_length(void **state) {
  (void)state;
  expect_key_err("", 0, API_KEY_EMPTY);
  char in[3 * 600], want[600];
  memset(in, 'k', sizeof in);
  memset(want, 'k', sizeof want);
  expect_key(in, 1, want, 1);
  expect_key(in, 511, want, 511);
  expect_key(in, 512, want, 512);
  expect_key_err(in, 513, API_KEY_TOO_LONG);
  expect_key_err(in, 600, API_KEY_TOO_LONG);
  /* the limit is on the decoded key: 512 escapes are 1536 input bytes */
  for (int i = 0; i < 600; i++)
    memcpy(in + 3 * i, "%41", 3);
  memset(want, 'A', sizeof want);
  expect_key(in, 3 * 512, want, 512);
  expect_key_err(in, 3 * 513, API_KEY_TOO_LONG);
  /* mixed: 511 plain bytes and one escape make 512 */
  memset(in, 'z', 511);
  memcpy(in + 511, "%2F", 3);
  memset(want, 'z', 511);
  want[511] = '/';
  expect_key(in, 514, want, 512);
}

static void test_key_small_output_buffer(void **state) {
  (void)state;
  char out[16];
  /* never writes past outcap; a key that does not fit is refused */
  long n = decode_key(KEY("abcdefgh"), out, 4);
  assert_true(n < 0);
  n = decode_key(KEY("abcd"), out, 4);
  assert_int_equal(n, 4);
  assert_memory_equal(out, "abcd", 4);
}

static void test_key_control(void **state) {
  (void)state;
  expect_key_err(KEY("%00"), API_KEY_CONTROL);
  expect_key_err(KEY("%1f"), API_KEY_CONTROL);
  expect_key_err(KEY("%1F"), API_KEY_CONTROL);
  expect_key_err(KEY("%7f"), API_KEY_CONTROL);
  expect_key_err(KEY("%7F"), API_KEY_CONTROL);
  expect_key_err(KEY("a%0Ab"), API_KEY_CONTROL);
  expect_key_err(KEY("a\x01" "b"), API_KEY_CONTROL);
  expect_key_err(KEY("a\tb"), API_KEY_CONTROL);
  expect_key_err(KEY("\n"), API_KEY_CONTROL);
  expect_key_err(KEY("\x7f"), API_KEY_CONTROL);
  expect_key_err(KEY("abc\x1f"), API_KEY_CONTROL);
  expect_key_err("a\0b", 3, API_KEY_CONTROL); /* raw NUL inside the key */
  for (int b = 0; b < 0x20; b++) {
    char in[3] = {'x', (char)b, 'y'};
    expect_key_err(in, 3, API_KEY_CONTROL);
  }
}

static void test_key_bad_escapes(void **state) {
  (void)state;
  expect_key_err(KEY("%zz"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("%4"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("%"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("abc%"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("abc%4"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("%g0"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("%0g"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("%%41"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("% 41"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("%+1"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("%-1"), API_KEY_BAD_ESCAPE);
  expect_key_err(KEY("ok%2Fthen%x1"), API_KEY_BAD_ESCAPE);
  /* the escape must lie inside inlen, even if the buffer goes on */
  expect_key_err("%41", 2, API_KEY_BAD_ESCAPE);
  expect_key_err("%41", 1, API_KEY_BAD_ESCAPE);
}

/* ---- query values ----------------------------------------------------------- */

static void expect_query(const char *in, size_t inlen, const char *want,
                         long wantlen) {
  char out[256];
  memset(out, CANARY, sizeof out);
  long n = api_decode_query(in, inlen, out, 200);
  if (n != wantlen)
    fail_msg("api_decode_query(\"%.*s\") = %ld, want %ld", (int)inlen, in, n,
             wantlen);
  if (n > 0)
    assert_memory_equal(out, want, (size_t)n);
  for (size_t i = 200; i < sizeof out; i++)
    assert_int_equal((unsigned char)out[i], CANARY);
}

static void test_query(void **state) {
  (void)state;
  expect_query(KEY(""), "", 0);
  expect_query(KEY("90s"), KEY("90s"));
  expect_query(KEY("a+b"), KEY("a b"));
  expect_query(KEY("+++"), KEY("   "));
  expect_query(KEY("%2B"), KEY("+"));
  expect_query(KEY("1h%2030m"), KEY("1h 30m"));
  expect_query(KEY("%c2%b5s"), KEY("\xc2\xb5s"));
  expect_query(KEY("%00"), "\0", 1);
  expect_query(KEY("%"), NULL, -1);
  expect_query(KEY("%4"), NULL, -1);
  expect_query(KEY("%zz"), NULL, -1);
  expect_query(KEY("ab%"), NULL, -1);
  expect_query("%41", 2, NULL, -1);
  char out[4];
  assert_int_equal(api_decode_query(KEY("abcd"), out, 4), 4);
  assert_int_equal(api_decode_query(KEY("abcde"), out, 4), -1);
  assert_int_equal(api_decode_query(KEY("a%20b+"), out, 4), 4);
  assert_memory_equal(out, "a b ", 4);
}

/* ---- ETags ------------------------------------------------------------------ */

static void test_etag(void **state) {
  (void)state;
  char buf[19];
  api_format_etag(0x0123456789abcdefull, buf);
  assert_string_equal(buf, "\"0123456789abcdef\"");
  api_format_etag(0, buf);
  assert_string_equal(buf, "\"0000000000000000\"");
  api_format_etag(UINT64_MAX, buf);
  assert_string_equal(buf, "\"ffffffffffffffff\"");
  api_format_etag(0xEF46DB3751D8E999ull, buf);
  assert_string_equal(buf, "\"ef46db3751d8e999\"");
  uint64_t x = 0x243f6a8885a308d3ull;
  for (int i = 0; i < 1000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    char want[32];
    snprintf(want, sizeof want, "\"%016" PRIx64 "\"", x);
    memset(buf, 'X', sizeof buf);
    api_format_etag(x, buf);
    assert_int_equal(buf[18], '\0');
    assert_string_equal(buf, want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_key_plain),
      cmocka_unit_test(test_key_escapes),
      cmocka_unit_test(test_key_empty_and_length),
      cmocka_unit_test(test_key_small_output_buffer),
      cmocka_unit_test(test_key_control),
      cmocka_unit_test(test_key_bad_escapes),
      cmocka_unit_test(test_query),
      cmocka_unit_test(test_etag),
  };
  return cmocka_run_group_tests_name("parse", tests, NULL, NULL);
}
