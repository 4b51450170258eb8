/* Chunked request bodies (RFC 9112 7.1): the framings curl and node send,
 * extensions, trailers, bare LF, malformed framing, and every split point. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "otalab/chunked.h"
#include "otalab/err.h"

typedef struct {
  /* arrays, not pointers: Criterion's workers re-execute the binary */
  char name[32], in[48];
  int rc;       /* after the whole input */
  char out[16]; /* decoded data (rc 1 or 0; "" for an error) */
  size_t left;  /* input bytes not consumed (after the end) */
} case_t;

static const case_t cases[] = {
    {"one chunk", "5\r\nhello\r\n0\r\n\r\n", 1, "hello", 0},
    {"two chunks, hex sizes", "3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n", 1,
     "abc0123456789", 0},
    {"upper/lower hex", "a\r\n0123456789\r\n00\r\n\r\n", 1, "0123456789", 0},
    {"empty body", "0\r\n\r\n", 1, "", 0},
    {"extension skipped", "4;name=\"x;y\"\r\nwxyz\r\n0;last\r\n\r\n", 1, "wxyz",
     0},
    {"trailer fields skipped", "2\r\nok\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", 1,
     "ok", 0},
    {"bare LF", "2\nok\n0\n\n", 1, "ok", 0},
    {"CRLF inside data kept", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 1, "\r\n\r\n", 0},
    {"pipelined bytes left", "1\r\nz\r\n0\r\n\r\nGET /", 1, "z", 5},
    {"incomplete: in data", "5\r\nhel", 0, "hel", 0},
    {"incomplete: no final CRLF", "1\r\nz\r\n0\r\n", 0, "z", 0},
    {"incomplete: in trailer", "0\r\nX-A: 1\r\n", 0, "", 0},
    {"no size digits", "\r\nhello\r\n", OTA_EPARSE, "", 0},
    {"non-hex size", "g\r\n", OTA_EPARSE, "", 0},
    {"size too long", "1000000000000000\r\n", OTA_EPARSE, "", 0},
    {"data longer than its size", "2\r\nabc\r\n0\r\n\r\n", OTA_EPARSE, "", 0},
    {"CR without LF after size", "2\rab\r\n", OTA_EPARSE, "", 0},
    {"final line not empty", "0\r\n\rx", OTA_EPARSE, "", 0},
};

ParameterizedTestParameters(chunked, table) {
  return cr_make_param_array(case_t, cases, sizeof cases / sizeof cases[0]);
}

/* Whole input at once, then every split into two feeds: same result. */
ParameterizedTest(const case_t *t, chunked, table) {
  size_t n = strlen(t->in);
  for (size_t split = 0; split <= n; split++) {
    ota_chunked_t c;
    uint8_t out[128];
    size_t o1 = 0, o2 = 0, u1 = 0, u2 = 0;
    ota_chunked_init(&c);
    int rc = ota_chunked_feed(&c, (const uint8_t *)t->in, split, out, &o1, &u1);
    if (rc == 0)
      rc = ota_chunked_feed(&c, (const uint8_t *)t->in + split, n - split,
                            out + o1, &o2, &u2);
    else
      cr_assert(rc == 1 || rc == OTA_EPARSE, "%s split %zu: rc %d", t->name,
                split, rc);
    cr_assert_eq(rc, t->rc, "%s split %zu: rc %d, want %d", t->name, split, rc,
                 t->rc);
    if (t->rc >= 0) {
      size_t want = strlen(t->out);
      cr_assert_eq(o1 + o2, want, "%s split %zu: %zu bytes, want %zu", t->name,
                   split, o1 + o2, want);
      cr_assert_eq(memcmp(out, t->out, want), 0, "%s split %zu", t->name,
                   split);
      cr_assert_eq(c.total, want, "%s: total", t->name);
    }
    if (t->rc == 1)
      cr_assert_eq(u1 + u2, n - t->left, "%s split %zu: used %zu", t->name,
                   split, u1 + u2);
  }
}

Test(chunked, byte_at_a_time_and_drop) {
  static const char in[] = "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n";
  ota_chunked_t c, d;
  uint8_t out[64];
  size_t o = 0, k, u, total = 0;
  int rc = 0;
  ota_chunked_init(&c);
  ota_chunked_init(&d);
  for (size_t i = 0; i < sizeof in - 1; i++) {
    cr_assert_eq(rc, 0, "done early at byte %zu", i);
    rc = ota_chunked_feed(&c, (const uint8_t *)in + i, 1, out + o, &k, &u);
    cr_assert_eq(u, 1);
    o += k;
  }
  cr_assert_eq(rc, 1);
  cr_assert_eq(o, 5);
  cr_assert_eq(memcmp(out, "abcde", 5), 0);
  /* done: later input is not consumed */
  cr_assert_eq(ota_chunked_feed(&c, (const uint8_t *)"1\r\n", 3, out, &k, &u),
               1);
  cr_assert_eq(u, 0);
  cr_assert_eq(k, 0);
  /* out NULL: data counted, not copied (an over-limit upload drained) */
  cr_assert_eq(
      ota_chunked_feed(&d, (const uint8_t *)in, sizeof in - 1, NULL, &k, &u),
      1);
  total = (size_t)d.total;
  cr_assert_eq(k, 5);
  cr_assert_eq(total, 5);
}

Test(chunked, error_sticks) {
  ota_chunked_t c;
  size_t k;
  ota_chunked_init(&c);
  cr_assert_eq(ota_chunked_feed(&c, (const uint8_t *)"x", 1, NULL, &k, NULL),
               OTA_EPARSE);
  cr_assert_eq(
      ota_chunked_feed(&c, (const uint8_t *)"0\r\n\r\n", 5, NULL, &k, NULL),
      OTA_EPARSE);
}

typedef struct {
  const char *te;
  int want;
} te_case_t;

Test(chunked, header) {
  static const te_case_t t[] = {
      {"chunked", 1},       {"Chunked", 1}, {"gzip, chunked", 1},
      {"gzip,chunked ", 1}, {"gzip", 0},    {"xchunked", 0},
      {"chunked, gzip", 0}, {"", 0},        {NULL, 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    cr_assert_eq(ota_chunked_header(t[i].te), t[i].want, "'%s'",
                 t[i].te ? t[i].te : "(null)");
}
