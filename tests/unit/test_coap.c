/* Tests of the RFC 7252 codec (core/src/coap.c) against hand-built vectors,
 * libcoap 4.3 (coap_pdu_parse) as an independent oracle, and malformed input.
 */
#include "otalab/coap.h"
#include "otalab/err.h"

#include "coap_vectors.h"

#include <coap3/coap.h>
#include <criterion/parameterized.h>
#include <stdio.h>

/* Compare a decoded message with the vector's stated meaning. */
static void check_meaning(json_t *v, const ota_coap_msg_t *m,
                          const char *name) {
  uint8_t buf[VEC_MAX];
  cr_expect_eq(m->type, vec_type(vec_str(v, "type")), "%s: type", name);
  cr_expect_eq(m->code, vec_code(vec_str(v, "code")), "%s: code", name);
  cr_expect_eq(m->mid, vec_int(v, "mid"), "%s: mid", name);
  size_t tkl = vec_unhex(vec_str(v, "token"), buf, sizeof(buf));
  cr_expect_eq(m->tkl, tkl, "%s: tkl", name);
  cr_expect(memcmp(m->token, buf, tkl) == 0, "%s: token", name);
  json_t *opts = json_object_get(v, "options");
  cr_assert_eq(m->nopt, json_array_size(opts), "%s: option count", name);
  for (size_t i = 0; i < m->nopt; i++) {
    json_t *o = json_array_get(opts, i);
    size_t n =
        vec_unhex(json_string_value(json_array_get(o, 1)), buf, sizeof(buf));
    cr_expect_eq(m->opt[i].num, json_integer_value(json_array_get(o, 0)),
                 "%s: option %zu number", name, i);
    cr_expect_eq(m->opt[i].len, n, "%s: option %zu length", name, i);
    cr_expect(n == 0 || memcmp(m->opt[i].val, buf, n) == 0,
              "%s: option %zu value", name, i);
  }
  size_t pl = vec_unhex(vec_str(v, "payload"), buf, sizeof(buf));
  cr_expect_eq(m->payload_len, pl, "%s: payload length", name);
  cr_expect(pl == 0 || memcmp(m->payload, buf, pl) == 0, "%s: payload", name);
}

Test(coap, vectors_decode) {
  json_t *root = vec_load();
  json_t *arr = json_object_get(root, "vectors");
  for (size_t i = 0; i < json_array_size(arr); i++) {
    json_t *v = json_array_get(arr, i);
    const char *name = vec_str(v, "name");
    uint8_t bytes[VEC_MAX];
    size_t len = vec_unhex(vec_str(v, "hex"), bytes, sizeof(bytes));
    ota_coap_msg_t m;
    cr_assert_eq(ota_coap_decode(bytes, len, &m), 0, "%s: decode", name);
    cr_expect_eq(m.ver, 1);
    check_meaning(v, &m, name);
  }
  json_decref(root);
}

/* Build each vector from its meaning, adding options in REVERSE order to
 * exercise the sorting, and compare the encoded bytes with the hex. */
Test(coap, vectors_encode) {
  json_t *root = vec_load();
  json_t *arr = json_object_get(root, "vectors");
  for (size_t i = 0; i < json_array_size(arr); i++) {
    json_t *v = json_array_get(arr, i);
    const char *name = vec_str(v, "name");
    uint8_t want[VEC_MAX], tok[8], pl[VEC_MAX], vals[OTA_COAP_MAX_OPTIONS][256];
    size_t wlen = vec_unhex(vec_str(v, "hex"), want, sizeof(want));
    ota_coap_msg_t m;
    ota_coap_msg_init(&m, vec_type(vec_str(v, "type")),
                      vec_code(vec_str(v, "code")),
                      (uint16_t)vec_int(v, "mid"));
    size_t tkl = vec_unhex(vec_str(v, "token"), tok, sizeof(tok));
    cr_assert_eq(ota_coap_set_token(&m, tok, tkl), 0);
    json_t *opts = json_object_get(v, "options");
    /* Same-number options keep insertion order, so add groups of equal
     * numbers in order but the groups in reverse. */
    for (size_t k = json_array_size(opts); k-- > 0;) {
      size_t first = k;
      uint32_t num = (uint32_t)json_integer_value(
          json_array_get(json_array_get(opts, k), 0));
      while (first > 0 && json_integer_value(json_array_get(
                              json_array_get(opts, first - 1), 0)) == num)
        first--;
      for (size_t j = first; j <= k; j++) {
        size_t n = vec_unhex(
            json_string_value(json_array_get(json_array_get(opts, j), 1)),
            vals[j], sizeof(vals[j]));
        cr_assert_eq(ota_coap_add_option(&m, num, vals[j], n), 0);
      }
      k = first;
    }
    size_t plen = vec_unhex(vec_str(v, "payload"), pl, sizeof(pl));
    ota_coap_set_payload(&m, pl, plen);
    uint8_t out[VEC_MAX];
    size_t olen = 0;
    cr_assert_eq(ota_coap_encode(&m, out, sizeof(out), &olen), 0, "%s", name);
    cr_expect_eq(ota_coap_encoded_size(&m), wlen, "%s: size", name);
    cr_expect_eq(olen, wlen, "%s: length %zu != %zu", name, olen, wlen);
    cr_expect(olen == wlen && memcmp(out, want, wlen) == 0, "%s: bytes", name);
    /* Every cap below the size fails cleanly with OTA_ENOBUFS. */
    for (size_t cap = 0; cap < wlen; cap++)
      cr_expect_eq(ota_coap_encode(&m, out, cap, &olen), OTA_ENOBUFS,
                   "%s: cap %zu", name, cap);
  }
  json_decref(root);
}

/* libcoap's parse of `b` must agree with ours field by field. Returns 1 if
 * libcoap accepted the datagram. */
static int libcoap_agrees(const uint8_t *b, size_t len, const char *name) {
  coap_pdu_t *pdu = coap_pdu_init(0, 0, 0, len ? len : 1);
  cr_assert_not_null(pdu);
  int ok = coap_pdu_parse(COAP_PROTO_UDP, b, len, pdu);
  if (ok) {
    ota_coap_msg_t m;
    cr_assert_eq(ota_coap_decode(b, len, &m), 0, "%s: libcoap accepts", name);
    cr_expect_eq(coap_pdu_get_type(pdu), m.type, "%s: type", name);
    cr_expect_eq((uint8_t)coap_pdu_get_code(pdu), m.code, "%s: code", name);
    cr_expect_eq(coap_pdu_get_mid(pdu), m.mid, "%s: mid", name);
    coap_bin_const_t tok = coap_pdu_get_token(pdu);
    cr_expect_eq(tok.length, m.tkl, "%s: tkl", name);
    cr_expect(tok.length == 0 || memcmp(tok.s, m.token, m.tkl) == 0,
              "%s: token", name);
    coap_opt_iterator_t oi;
    coap_opt_t *o;
    size_t i = 0;
    coap_option_iterator_init(pdu, &oi, COAP_OPT_ALL);
    while ((o = coap_option_next(&oi)) != NULL) {
      cr_assert_lt(i, m.nopt, "%s: libcoap sees more options", name);
      cr_expect_eq(oi.number, m.opt[i].num, "%s: opt %zu num", name, i);
      cr_expect_eq(coap_opt_length(o), m.opt[i].len, "%s: opt %zu len", name,
                   i);
      cr_expect(m.opt[i].len == 0 ||
                    memcmp(coap_opt_value(o), m.opt[i].val, m.opt[i].len) == 0,
                "%s: opt %zu value", name, i);
      i++;
    }
    cr_expect_eq(i, m.nopt, "%s: option count", name);
    size_t dlen = 0;
    const uint8_t *data = NULL;
    int has = coap_get_data(pdu, &dlen, &data);
    cr_expect_eq(has ? dlen : 0, m.payload_len, "%s: payload len", name);
    cr_expect(m.payload_len == 0 || memcmp(data, m.payload, dlen) == 0,
              "%s: payload", name);
  }
  coap_delete_pdu(pdu);
  return ok;
}

static void libcoap_quiet(void) {
  coap_startup();
  coap_set_log_level(LOG_EMERG);
}

Test(coap, libcoap_oracle_vectors, .init = libcoap_quiet) {
  json_t *root = vec_load();
  json_t *arr = json_object_get(root, "vectors");
  for (size_t i = 0; i < json_array_size(arr); i++) {
    json_t *v = json_array_get(arr, i);
    uint8_t bytes[VEC_MAX];
    size_t len = vec_unhex(vec_str(v, "hex"), bytes, sizeof(bytes));
    cr_expect(libcoap_agrees(bytes, len, vec_str(v, "name")),
              "%s: libcoap rejects", vec_str(v, "name"));
  }
  json_decref(root);
}

/* ---- malformed input ---- */

/* Inline strings: Criterion may run parameters in a fresh process. */
typedef struct {
  char name[40];
  char hex[96];
  int err;
  bool libcoap_rejects; /* libcoap 4.3.1 also refuses it */
} bad_case_t;

static bad_case_t bad_cases[] = {
    {"empty datagram", "", OTA_ETRUNC, true},
    {"3-byte header", "40 01 00", OTA_ETRUNC, true},
    {"version 2", "80 01 00 01", OTA_EPARSE, true},
    {"version 0", "00 01 00 01", OTA_EPARSE, true},
    {"TKL 9", "49 01 00 01 01 02 03 04 05 06 07 08 09", OTA_EPARSE, true},
    {"TKL 15", "4f 01 00 01", OTA_EPARSE, true},
    {"token cut short", "42 01 00 01 aa", OTA_ETRUNC, true},
    {"delta nibble 15", "40 01 00 01 f1 61", OTA_EPARSE, true},
    {"length nibble 15", "40 01 00 01 bf 61", OTA_EPARSE, true},
    {"option value cut short", "40 01 00 01 b2 61", OTA_ETRUNC, true},
    {"1-byte ext delta missing", "40 01 00 01 d1", OTA_ETRUNC, true},
    {"2-byte ext delta cut", "40 01 00 01 e1 00", OTA_ETRUNC, true},
    {"1-byte ext length missing", "40 01 00 01 bd", OTA_ETRUNC, true},
    {"ext length value cut", "40 01 00 01 bd 05 61 62", OTA_ETRUNC, true},
    {"marker, empty payload", "40 01 00 01 b1 61 ff", OTA_EPARSE, true},
    {"only a marker", "40 01 00 01 ff", OTA_EPARSE, true},
    {"empty msg with option", "40 00 00 01 b1 61", OTA_EPARSE, true},
    {"empty msg with token", "41 00 00 01 aa", OTA_EPARSE, true},
    {"empty msg with payload", "60 00 00 01 ff 01", OTA_EPARSE, true},
    {"option number > 65535", "40 01 00 01 e0 ff 00", OTA_EPARSE, false},
    {"17 options",
     "40 01 00 01 b0 00 00 00 00 00 00 00 00 00 00 00 00 00 00 "
     "00 00",
     OTA_ENOBUFS, false},
};

ParameterizedTestParameters(coap, malformed) {
  return cr_make_param_array(bad_case_t, bad_cases,
                             sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(bad_case_t *c, coap, malformed, .init = libcoap_quiet) {
  uint8_t b[64];
  size_t len = vec_unhex(c->hex, b, sizeof(b));
  ota_coap_msg_t m;
  cr_expect_eq(ota_coap_decode(b, len, &m), c->err, "%s: got %s", c->name,
               ota_strerror_name(ota_coap_decode(b, len, &m)));
  if (c->libcoap_rejects)
    cr_expect_not(libcoap_agrees(b, len, c->name), "%s: libcoap accepts",
                  c->name);
}

/* ---- extended delta / length forms (RFC 7252 3.1) ---- */

typedef struct {
  uint32_t num;
  uint32_t len;
  char head[24]; /* expected option header bytes, hand-written */
} ext_case_t;

static ext_case_t ext_cases[] = {
    {1, 0, "10"},
    {10, 12, "ac"},
    {13, 13, "dd 00 00"},
    {268, 268, "dd ff ff"},
    {269, 269, "ee 00 00 00 00"},
    {300, 300, "ee 00 1f 00 1f"},
    {1000, 5, "e5 02 db"},
    {65535, 1, "e1 fe f2"},
    {258, 1, "d1 f5"},
};

ParameterizedTestParameters(coap, extended_forms) {
  return cr_make_param_array(ext_case_t, ext_cases,
                             sizeof(ext_cases) / sizeof(ext_cases[0]));
}

ParameterizedTest(ext_case_t *c, coap, extended_forms, .init = libcoap_quiet) {
  static uint8_t val[400];
  for (size_t i = 0; i < sizeof(val); i++)
    val[i] = (uint8_t)(i * 7 + 1);
  ota_coap_msg_t m, d;
  ota_coap_msg_init(&m, OTA_COAP_NON, OTA_COAP_POST, 0xbeef);
  cr_assert_eq(ota_coap_add_option(&m, c->num, val, c->len), 0);
  uint8_t out[512], head[8];
  size_t len, hl = vec_unhex(c->head, head, sizeof(head));
  cr_assert_eq(ota_coap_encode(&m, out, sizeof(out), &len), 0);
  cr_expect_eq(len, 4 + hl + c->len);
  cr_expect(memcmp(out + 4, head, hl) == 0, "num %u len %u: header",
            (unsigned)c->num, (unsigned)c->len);
  cr_assert_eq(ota_coap_decode(out, len, &d), 0);
  cr_assert_eq(d.nopt, 1);
  cr_expect_eq(d.opt[0].num, c->num);
  cr_expect_eq(d.opt[0].len, c->len);
  cr_expect(c->len == 0 || memcmp(d.opt[0].val, val, c->len) == 0);
  cr_expect(libcoap_agrees(out, len, "ext"));
}

/* ---- helpers ---- */

Test(coap, options_sorted_and_bounded) {
  ota_coap_msg_t m;
  ota_coap_msg_init(&m, OTA_COAP_CON, OTA_COAP_GET, 1);
  uint8_t st[4];
  cr_assert_eq(ota_coap_add_option_str(&m, OTA_COAP_OPT_URI_QUERY, "q1"), 0);
  cr_assert_eq(ota_coap_add_option_str(&m, OTA_COAP_OPT_URI_PATH, "a"), 0);
  cr_assert_eq(ota_coap_add_option_uint(&m, OTA_COAP_OPT_MAX_AGE, 300, st), 0);
  cr_assert_eq(ota_coap_add_option_str(&m, OTA_COAP_OPT_URI_PATH, "b"), 0);
  cr_assert_eq(ota_coap_add_option_str(&m, OTA_COAP_OPT_URI_QUERY, "q2"), 0);
  cr_expect_eq(m.opt[0].num, 11);
  cr_expect_eq(m.opt[1].num, 11);
  cr_expect_eq(m.opt[2].num, 14);
  cr_expect_eq(m.opt[3].num, 15);
  cr_expect_eq(ota_coap_uri_path(&m, 1)->val[0], 'b');
  cr_expect_eq(memcmp(ota_coap_uri_query(&m, 1)->val, "q2", 2), 0);
  cr_expect_null(ota_coap_uri_query(&m, 2));
  cr_expect_eq(ota_coap_count(&m, OTA_COAP_OPT_URI_PATH), 2);
  cr_expect_eq(ota_coap_opt_uint(ota_coap_find(&m, OTA_COAP_OPT_MAX_AGE)), 300);
  cr_expect_eq(ota_coap_find(&m, OTA_COAP_OPT_MAX_AGE)->len, 2);
  while (m.nopt < OTA_COAP_MAX_OPTIONS)
    cr_assert_eq(ota_coap_add_option(&m, 1, NULL, 0), 0);
  cr_expect_eq(ota_coap_add_option(&m, 1, NULL, 0), OTA_ENOBUFS);
  cr_expect_eq(ota_coap_add_option(&m, 70000, NULL, 0), OTA_EINVAL);
  cr_expect_eq(ota_coap_set_token(&m, "123456789", 9), OTA_EINVAL);
  ota_coap_msg_t z;
  ota_coap_msg_init(&z, OTA_COAP_ACK, OTA_COAP_EMPTY, 0);
  cr_expect_eq(ota_coap_add_option_uint(&z, OTA_COAP_OPT_MAX_AGE, 0, st), 0);
  cr_expect_eq(z.opt[0].len, 0);
}

Test(coap, names) {
  char s[5], line[128];
  cr_expect_str_eq(ota_coap_code_str(OTA_COAP_CODE(2, 4), s), "2.04");
  cr_expect_str_eq(ota_coap_code_str(OTA_COAP_SERVICE_UNAVAILABLE, s), "5.03");
  cr_expect_str_eq(ota_coap_code_name(OTA_COAP_CHANGED), "Changed");
  cr_expect_str_eq(ota_coap_type_name(OTA_COAP_RST), "RST");
  cr_expect(ota_coap_is_request(OTA_COAP_PUT));
  cr_expect_not(ota_coap_is_request(OTA_COAP_EMPTY));
  cr_expect(ota_coap_is_response(OTA_COAP_BAD_REQUEST));
  ota_coap_msg_t m;
  ota_coap_msg_init(&m, OTA_COAP_CON, OTA_COAP_POST, 0x1234);
  ota_coap_set_token(&m, "\xab", 1);
  ota_coap_add_option_str(&m, OTA_COAP_OPT_URI_PATH, "u");
  ota_coap_summary(&m, line, sizeof(line));
  cr_expect(strstr(line, "CON 0.02 POST") && strstr(line, "mid=0x1234") &&
                strstr(line, "tok=ab") && strstr(line, "path=/u"),
            "%s", line);
  ota_coap_summary(&m, line, 10);
  cr_expect_eq(strlen(line), 9);
}

/* Canonical encoding: any datagram we accept re-encodes to the same bytes,
 * and libcoap accepts it too. Random inputs never crash the decoder. */
Test(coap, random_roundtrip, .init = libcoap_quiet) {
  uint64_t s = 0x1234567;
  unsigned accepted = 0;
  for (int iter = 0; iter < 20000; iter++) {
    uint8_t b[48], out[64];
    size_t len = (size_t)(iter % 40);
    for (size_t i = 0; i < len; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      b[i] = (uint8_t)(s >> 56);
    }
    if (len > 0 && iter % 3)
      b[0] = (uint8_t)(0x40 | (b[0] & 0x3f)); /* version 1 more often */
    if (len > 1 && iter % 5 == 0)
      b[1] = 0x02;
    ota_coap_msg_t m;
    if (ota_coap_decode(b, len, &m) != 0)
      continue;
    accepted++;
    size_t olen;
    cr_assert_eq(ota_coap_encode(&m, out, sizeof(out), &olen), 0);
    cr_assert_eq(olen, len);
    cr_assert(memcmp(out, b, len) == 0, "iteration %d", iter);
    libcoap_agrees(b, len, "random");
  }
  cr_expect_gt(accepted, 100, "only %u random datagrams accepted", accepted);
}
