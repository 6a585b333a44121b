/* parse.c - parsers for what clients send: keys, query values, ETags,
 * Range and conditional headers, listing cursors; and the formatters for
 * what bufcache sends back (dates, keys in JSON). Pure functions. */
#include <string.h>

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

/* ---- Range ------------------------------------------------------------------ */

static inline bool is_ows(char c) { return c == ' ' || c == '\t'; }
static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Digits at v[*i..], saturating at UINT64_MAX; false if there are none. */
static bool parse_digits(const char *v, size_t len, size_t *i, uint64_t *out) {
  size_t j = *i;
  uint64_t x = 0;
  while (j < len && is_digit(v[j])) {
    unsigned d = (unsigned)(v[j] - '0');
    x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    j++;
  }
  if (j == *i)
    return false;
  *i = j;
  *out = x;
  return true;
}

int api_parse_range(const char *v, size_t len, uint64_t size,
                    uint64_t *first, uint64_t *last) {
  static const char unit[] = "bytes=";
  size_t i = sizeof(unit) - 1;
  if (len < i)
    return API_RANGE_FULL;
  for (size_t k = 0; k < i; k++) {
    char c = v[k];
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c != unit[k])
      return API_RANGE_FULL;
  }
  unsigned specs = 0, satisfiable = 0;
  uint64_t f = 0, l = 0;
  while (i <= len) {
    /* one list element: OWS [ range-spec ] OWS, then ',' or the end */
    while (i < len && is_ows(v[i]))
      i++;
    if (i < len && v[i] != ',') {
      uint64_t a, b;
      bool ok;
      if (v[i] == '-') {
        i++;
        if (!parse_digits(v, len, &i, &b))
          return API_RANGE_FULL;
        ok = b > 0 && size > 0;
        a = b >= size ? 0 : size - b;
        b = size ? size - 1 : 0;
      } else {
        if (!parse_digits(v, len, &i, &a) || i >= len || v[i] != '-')
          return API_RANGE_FULL;
        i++;
        if (parse_digits(v, len, &i, &b)) {
          if (b < a)
            return API_RANGE_FULL;
        } else {
          b = UINT64_MAX;
        }
        ok = a < size;
        if (ok && b >= size)
          b = size - 1;
      }
      specs++;
      if (ok && satisfiable++ == 0) {
        f = a;
        l = b;
      }
      while (i < len && is_ows(v[i]))
        i++;
    }
    if (i == len)
      break;
    if (v[i] != ',')
      return API_RANGE_FULL;
    i++;
  }
  if (specs == 0)
    return API_RANGE_FULL;
  if (satisfiable == 0)
    return API_RANGE_UNSATISFIABLE;
  if (specs > 1)
    return API_RANGE_FULL;
  *first = f;
  *last = l;
  return API_RANGE_PARTIAL;
}

/* ---- entity-tag lists --------------------------------------------------------- */

static inline bool is_etagc(unsigned char c) {
  return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

long api_parse_etags(const char *v, size_t len, bool weak_ok, uint64_t *out,
                     size_t cap) {
  size_t i = 0;
  while (i < len && is_ows(v[i]))
    i++;
  if (i < len && v[i] == '*') {
    size_t j = i + 1;
    while (j < len && is_ows(v[j]))
      j++;
    return j == len ? API_ETAGS_ANY : API_ETAGS_BAD;
  }
  long n = 0;
  unsigned tags = 0;
  while (i <= len) {
    while (i < len && is_ows(v[i]))
      i++;
    if (i < len && v[i] != ',') {
      bool weak = false;
      if (v[i] == 'W' && i + 1 < len && v[i + 1] == '/') {
        weak = true;
        i += 2;
      }
      if (i >= len || v[i] != '"')
        return API_ETAGS_BAD;
      size_t start = ++i;
      while (i < len && is_etagc((unsigned char)v[i]))
        i++;
      if (i >= len || v[i] != '"')
        return API_ETAGS_BAD;
      size_t tlen = i - start;
      i++;
      tags++;
      if ((!weak || weak_ok) && tlen == 16) {
        uint64_t x = 0;
        bool ours = true;
        for (size_t k = start; k < start + 16 && ours; k++) {
          char c = v[k];
          if (is_digit(c))
            x = x << 4 | (uint64_t)(c - '0');
          else if (c >= 'a' && c <= 'f')
            x = x << 4 | (uint64_t)(c - 'a' + 10);
          else
            ours = false;
        }
        if (ours) {
          if ((size_t)n >= cap)
            return API_ETAGS_TOO_MANY;
          out[n++] = x;
        }
      }
      while (i < len && is_ows(v[i]))
        i++;
    }
    if (i == len)
      break;
    if (v[i] != ',')
      return API_ETAGS_BAD;
    i++;
  }
  return tags ? n : API_ETAGS_BAD;
}

/* ---- dates -------------------------------------------------------------------- */

/* Days since 1970-01-01 to a proleptic Gregorian date (Hinnant's
 * civil_from_days, for days >= 0). */
static void civil(uint64_t days, unsigned *y, unsigned *m, unsigned *d) {
  uint64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
  uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  uint64_t mp = (5 * doy + 2) / 153;
  *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
  *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
  *y = (unsigned)(yoe + era * 400 + (*m <= 2));
}

static char *put_num(char *p, unsigned v, int width) {
  for (int k = width - 1; k >= 0; k--) {
    p[k] = (char)('0' + v % 10);
    v /= 10;
  }
  return p + width;
}

void api_format_http_date(uint64_t unix_s, char buf[30]) {
  static const char wday[7][4] = {"Thu", "Fri", "Sat", "Sun",
                                  "Mon", "Tue", "Wed"}; /* 1970-01-01: Thu */
  static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (unix_s > 253402300799u) /* keep four digits of year */
    unix_s = 253402300799u;
  uint64_t days = unix_s / 86400, secs = unix_s % 86400;
  unsigned y, m, d;
  civil(days, &y, &m, &d);
  char *p = buf;
  memcpy(p, wday[days % 7], 3);
  p += 3;
  *p++ = ',';
  *p++ = ' ';
  p = put_num(p, d, 2);
  *p++ = ' ';
  memcpy(p, mon[m - 1], 3);
  p += 3;
  *p++ = ' ';
  p = put_num(p, y, 4);
  *p++ = ' ';
  p = put_num(p, (unsigned)(secs / 3600), 2);
  *p++ = ':';
  p = put_num(p, (unsigned)(secs / 60 % 60), 2);
  *p++ = ':';
  p = put_num(p, (unsigned)(secs % 60), 2);
  memcpy(p, " GMT", 5);
}

void api_format_rfc3339_ms(uint64_t unix_ms, char buf[25]) {
  if (unix_ms > 253402300799999u)
    unix_ms = 253402300799999u;
  uint64_t s = unix_ms / 1000, days = s / 86400, secs = s % 86400;
  unsigned y, m, d;
  civil(days, &y, &m, &d);
  char *p = buf;
  p = put_num(p, y, 4);
  *p++ = '-';
  p = put_num(p, m, 2);
  *p++ = '-';
  p = put_num(p, d, 2);
  *p++ = 'T';
  p = put_num(p, (unsigned)(secs / 3600), 2);
  *p++ = ':';
  p = put_num(p, (unsigned)(secs / 60 % 60), 2);
  *p++ = ':';
  p = put_num(p, (unsigned)(secs % 60), 2);
  *p++ = '.';
  p = put_num(p, (unsigned)(unix_ms % 1000), 3);
  memcpy(p, "Z", 2);
}

/* ---- cursors and keys in JSON ------------------------------------------------- */

void api_format_cursor(uint64_t pos, char buf[17]) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++)
    buf[i] = hex[(pos >> (60 - 4 * i)) & 15];
  buf[16] = 0;
}

int api_parse_cursor(const char *v, size_t len, uint64_t *pos) {
  if (len != 16)
    return -1;
  uint64_t x = 0;
  for (size_t i = 0; i < 16; i++) {
    int h = hexval((unsigned char)v[i]);
    if (h < 0)
      return -1;
    x = x << 4 | (uint64_t)h;
  }
  *pos = x;
  return 0;
}

bool api_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    unsigned cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (len - i <= n)
      return false;
    for (size_t k = 1; k <= n; k++) {
      if ((p[i + k] & 0xc0) != 0x80)
        return false;
      cp = cp << 6 | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

size_t api_percent_encode(const char *s, size_t len, char *out) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit((char)c) ||
        c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = 0;
  return o;
}
