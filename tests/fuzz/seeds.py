#!/usr/bin/env python3
"""seeds.py - writes the hand-made seed inputs into tests/fuzz/corpus/<target>/
(named by SHA-1, as libFuzzer names its own). Re-running it is harmless:
files that exist are left alone, and inputs the fuzzers found (crashes kept
as regression inputs, see docs/operations.md "Fuzzing") live beside them."""
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def req(method, path, headers=(), body=b"", version=b"HTTP/1.1"):
    h = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return method + b" " + path + b" " + version + b"\r\nHost: t\r\n" + h + b"\r\n" + body


def put(path, body, extra=()):
    return req(b"PUT", path, ((b"Content-Length", str(len(body)).encode()),) + tuple(extra), body)


def chunked(path, chunks, trailer=b""):
    body = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n" + trailer + b"\r\n"
    return req(b"PUT", path, ((b"Transfer-Encoding", b"chunked"),), body)


SEEDS = {
    "fuzz_key": [b"a", b"photos/1", b"session/abc", b"%41%42", b"a%2Fb", b"%2e%2e/etc",
                 b"..", b"%00", b"%1f", b"%7F", b"%", b"%4", b"%zz", b"%%41", b"caf%C3%A9",
                 b"\xff\xfe", b"a" * 512, b"a" * 513, b"%41" * 512, b"a b", b"?x=1", b"/"],
    "fuzz_query": [b"90s", b"1h30m", b"%39%30s", b"1.5ms", b"+", b"%2B", b"a+b%20c", b"%",
                   b"%4", b"%G0", b"5", b"0", b"-1s", b"x" * 80, b"%00"],
    "fuzz_duration": [b"90s", b"1h30m", b"1.5ms", b"300ms", b"0", b"5", b"+1s", b"-1s",
                      b"1\xc2\xb5s", b"1\xce\xbcs", b"1us", b"1ns", b"2h45m30.5s", b".5s", b"1.s",
                      b"18446744073709551615ns", b"18446744073709551616", b"5124095h",
                      b"1.000000000000000000001s", b"1h1h1h", b"1x", b"s", b"", b"1e9s"],
    "fuzz_size": [b"512", b"64KiB", b"512MiB", b"2GiB", b"1.5GiB", b"10MB", b"1k", b"1K",
                  b"0", b"18446744073709551615", b"18446744073709551616", b"16EiB", b"1.5",
                  b"1.5b", b"16777216TiB", b".5k", b"1kib", b"kib", b"-1", b"1 k", b"0x10"],
    "fuzz_range": [b"\x00\x10\x00\x00\x00\x00\x00\x00" + r for r in (
        b"bytes=0-99", b"bytes=100-", b"bytes=-100", b"bytes=0-0,5-9", b"BYTES=1-2",
        b"bytes= 1-2 , ", b"bytes=,,1-2", b"bytes=5-1", b"bytes=99999999999999999999-",
        b"bytes=-0", b"items=0-1", b"bytes=-", b"bytes=1-2-3", b"bytes=4096-")] +
        [b"\x01\x00\x00\x00\x00\x00\x00\x00bytes=0-0", b"\x00" * 8 + b"bytes=-5"],
    "fuzz_etags": [b"*", b" * ", b'"0123456789abcdef"', b'W/"0123456789abcdef"',
                   b'"0123456789abcdef", "fedcba9876543210"', b'"xyz"', b'"0123456789ABCDEF"',
                   b", ,", b'"unterminated', b'W/', b'"a", *', b'"0123456789abcdef",' * 20,
                   b"0123456789abcdef", b"0123456789ABCDEF", b'""'],
    "fuzz_route": [b"GET /v1/buffers/a", b"PUT /v1/buffers/a?ttl=90s", b"DELETE /v1/buffers/%41",
                   b"HEAD /healthz", b"GET /readyz", b"GET /metrics", b"GET /debug/memstats",
                   b"POST /debug/gc", b"PUT /debug/gc-percent", b"GET /v1/buffers/",
                   b"GET /v1/buffers", b"OPTIONS *", b"GET http://h/v1/buffers/a",
                   b"GET /v1/buffers/a?ttl=%39%30s&x=1&&=", b"get /healthz", b" /x", b"GET"],
    "fuzz_request": [
        req(b"GET", b"/healthz"),
        req(b"HEAD", b"/readyz"),
        req(b"GET", b"/metrics"),
        req(b"GET", b"/debug/memstats"),
        put(b"/v1/buffers/a", b"hello") + req(b"GET", b"/v1/buffers/a") + req(b"HEAD", b"/v1/buffers/a")
        + req(b"DELETE", b"/v1/buffers/a") + req(b"GET", b"/v1/buffers/a"),
        put(b"/v1/buffers/t?ttl=90s", b"x" * 100, ((b"Content-Type", b"image/jpeg"),))
        + req(b"GET", b"/v1/buffers/t"),
        put(b"/v1/buffers/t?ttl=bad", b"x"),
        put(b"/v1/buffers/%41%2F%00", b"x"),
        put(b"/v1/buffers/%zz", b"x"),
        put(b"/v1/buffers/" + b"k" * 513, b"x"),
        put(b"/v1/buffers/e", b""),
        chunked(b"/v1/buffers/c", [b"abc", b"defgh" * 10]) + req(b"GET", b"/v1/buffers/c"),
        chunked(b"/v1/buffers/c", [b"abc"], b"X-Trailer: 1\r\n"),
        req(b"PUT", b"/v1/buffers/c", ((b"Transfer-Encoding", b"chunked"),), b"FFFFFFFFFFFFFFED\r\nx\r\n0\r\n\r\n"),
        req(b"PUT", b"/v1/buffers/c", ((b"Transfer-Encoding", b"chunked"),), b"zz\r\nx\r\n0\r\n\r\n"),
        req(b"PUT", b"/v1/buffers/d", ((b"Content-Length", b"5"), (b"Content-Length", b"5")), b"hello"),
        req(b"PUT", b"/v1/buffers/d", ((b"Content-Length", b"5"), (b"Content-Length", b"6")), b"hello!"),
        req(b"PUT", b"/v1/buffers/d", ((b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")),
            b"0\r\n\r\nGET /v1/buffers/smuggled HTTP/1.1\r\nHost: t\r\n\r\n"),
        req(b"PUT", b"/v1/buffers/d", ((b"Content-Length", b"-1"),), b"x"),
        req(b"PUT", b"/v1/buffers/d", ((b"Content-Length", b"18446744073709551616"),), b"x"),
        req(b"PUT", b"/v1/buffers/d", ((b"Content-Length", b"2000000"),), b"x"),
        req(b"PUT", b"/v1/buffers/d", ((b"Content-Length", b"3"), (b"Expect", b"100-continue")), b"abc"),
        req(b"GET", b"/v1/buffers/a", ((b"X-Request-Timeout", b"500ms"),)),
        req(b"GET", b"/v1/buffers/a", ((b"X-Request-Timeout", b"abc"),)),
        req(b"GET", b"/v1/buffers/a", ((b"If-None-Match", b'"0000000000000000"'),)),
        req(b"GET", b"/v1/buffers/a", ((b"Range", b"bytes=0-1"),)),
        req(b"GET", b"/v1/buffers/a", ((b"Connection", b"close"),)),
        req(b"GET", b"/v1/buffers/a", version=b"HTTP/1.0"),
        req(b"POST", b"/v1/buffers/a"),
        req(b"OPTIONS", b"*"),
        req(b"GET", b"http://t/v1/buffers/a"),
        req(b"CONNECT", b"t:80"),
        req(b"GET", b"/v1/buffers/../../etc/passwd"),
        req(b"GET", b"/v1/buffers/a", ((b"X-Long", b"v" * 2000),)),
        b"GET /\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n\x00\x01garbage\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\nHost: t\n\n",
        b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    ],
}


def main():
    for target, inputs in SEEDS.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for data in inputs:
            path = os.path.join(d, hashlib.sha1(data).hexdigest())
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)


if __name__ == "__main__":
    main()
