/* parse.c - parsers for what clients send: keys, query values, ETags. */
#include "api.h"

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static inline bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

long api_decode_key(const char *in, size_t inlen, char *out, size_t outcap) {
  size_t n = 0;
  if (inlen == 0)
    return API_KEY_EMPTY;
  for (size_t i = 0; i < inlen; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '%') {
      if (i + 2 >= inlen)
        return API_KEY_BAD_ESCAPE;
      int hi = hexval((unsigned char)in[i + 1]),
          lo = hexval((unsigned char)in[i + 2]);
      if (hi < 0 || lo < 0)
        return API_KEY_BAD_ESCAPE;
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    if (is_control(c))
      return API_KEY_CONTROL;
    if (n >= CACHE_MAX_KEY || n >= outcap)
      return API_KEY_TOO_LONG;
    out[n++] = (char)c;
  }
  return (long)n;
}

long api_decode_query(const char *in, size_t inlen, char *out, size_t outcap) {
  size_t n = 0;
  for (size_t i = 0; i < inlen; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '%') {
      if (i + 2 >= inlen)
        return -1;
      int hi = hexval((unsigned char)in[i + 1]),
          lo = hexval((unsigned char)in[i + 2]);
      if (hi < 0 || lo < 0)
        return -1;
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    } else if (c == '+') {
      c = ' ';
    }
    if (n >= outcap)
      return -1;
    out[n++] = (char)c;
  }
  return (long)n;
}

void api_format_etag(uint64_t etag, char buf[19]) {
  static const char hex[] = "0123456789abcdef";
  buf[0] = '"';
  for (int i = 0; i < 16; i++)
    buf[1 + i] = hex[(etag >> (60 - 4 * i)) & 15];
  buf[17] = '"';
  buf[18] = 0;
}
