/* Tests of the Particle message set (core/src/msg.c): classification, payload
 * formats and the device's strict parser, against fixtures/vectors/coap.json.
 */
#include "otalab/err.h"
#include "otalab/msg.h"

#include "coap_vectors.h"

#include <criterion/parameterized.h>
#include <stdio.h>

static ota_dir_t vec_dir(json_t *v) {
  return strcmp(vec_str(v, "dir"), "to_device") == 0 ? OTA_DIR_TO_DEVICE
                                                     : OTA_DIR_TO_CLOUD;
}

static bool jbool(json_t *o, const char *k) {
  return json_is_true(json_object_get(o, k));
}

/* Parse the kind-specific meaning and compare; returns how many checks ran. */
static void check_payload_meaning(json_t *v, const ota_coap_msg_t *m,
                                  const char *name) {
  json_t *o;
  uint8_t buf[VEC_MAX];
  if ((o = json_object_get(v, "hello"))) {
    ota_msg_hello_t h;
    cr_assert_eq(ota_msg_hello_parse(m->payload, m->payload_len, &h), 0);
    cr_expect_eq(h.product_id, vec_int(o, "product_id"), "%s", name);
    cr_expect_eq(h.product_version, vec_int(o, "product_version"));
    cr_expect_eq(h.flags, vec_int(o, "flags"));
    cr_expect_eq(h.platform_id, vec_int(o, "platform_id"));
    size_t n = vec_unhex(vec_str(o, "device_id"), buf, sizeof(buf));
    cr_expect_eq(h.id_len, n);
    cr_expect(memcmp(h.device_id, buf, n) == 0, "%s: device id", name);
  }
  if ((o = json_object_get(v, "update_begin"))) {
    ota_msg_update_begin_t u;
    cr_assert_eq(ota_msg_update_begin_parse(m->payload, m->payload_len, &u), 0);
    cr_expect_eq(u.flags, vec_int(o, "flags"), "%s", name);
    cr_expect_eq(u.chunk_size, vec_int(o, "chunk_size"), "%s", name);
    cr_expect_eq(u.file_size, vec_int(o, "file_size"), "%s", name);
    cr_expect_eq(u.store, vec_int(o, "store"));
    cr_expect_eq(u.address, vec_int(o, "address"));
    cr_expect_eq(u.defaults, jbool(o, "defaults"), "%s", name);
  }
  if ((o = json_object_get(v, "chunk"))) {
    ota_msg_chunk_t c;
    cr_assert_eq(ota_msg_chunk_parse(m, &c), 0, "%s", name);
    cr_expect_eq(c.crc, (uint32_t)vec_int(o, "crc"), "%s", name);
    cr_expect_eq(c.has_index, jbool(o, "has_index"), "%s", name);
    cr_expect_eq(c.index, vec_int(o, "index"), "%s", name);
    cr_expect_eq(c.len, m->payload_len);
  }
  if ((o = json_object_get(v, "missed"))) {
    uint16_t idx[OTA_CHUNK_MISSED_MAX];
    size_t n;
    cr_assert_eq(ota_msg_chunk_missed_parse(m->payload, m->payload_len, idx,
                                            OTA_CHUNK_MISSED_MAX, &n),
                 0);
    cr_assert_eq(n, json_array_size(o));
    for (size_t i = 0; i < n; i++)
      cr_expect_eq(idx[i], json_integer_value(json_array_get(o, i)));
  }
  if ((o = json_object_get(v, "done"))) {
    ota_msg_done_result_t r;
    cr_assert_eq(ota_msg_done_result_parse(m->payload, m->payload_len, &r), 0,
                 "%s", name);
    const char *form = vec_str(o, "form");
    ota_done_form_t want = strcmp(form, "none") == 0  ? OTA_DONE_FORM_NONE
                           : strcmp(form, "int") == 0 ? OTA_DONE_FORM_INT
                                                      : OTA_DONE_FORM_OKERR;
    cr_expect_eq(r.form, want, "%s: form", name);
    cr_expect_eq(r.ok, jbool(o, "ok"), "%s: ok", name);
    cr_expect_eq(r.code, vec_int(o, "code"), "%s: code", name);
    json_t *mod = json_object_get(o, "module");
    cr_expect_eq(r.has_module, mod != NULL, "%s: module", name);
    if (mod) {
      cr_expect_eq(r.module.func, vec_int(mod, "f"));
      cr_expect_eq(r.module.index, vec_int(mod, "n"));
      cr_expect_eq(r.module.version, vec_int(mod, "v"));
      cr_expect_eq(r.platform, vec_int(mod, "p"));
    }
  }
  if ((o = json_object_get(v, "describe_flags")))
    cr_expect_eq(ota_msg_describe_flags(m), json_integer_value(o), "%s", name);
  if ((o = json_object_get(v, "event"))) {
    ota_msg_event_t ev;
    cr_assert_eq(ota_msg_event_parse(m, &ev), 0, "%s", name);
    const char *n = vec_str(o, "name"), *d = vec_str(o, "data");
    cr_expect_eq(ev.name_len, strlen(n));
    cr_expect(memcmp(ev.name, n, ev.name_len) == 0, "%s: name", name);
    cr_expect_eq(ev.data_len, strlen(d));
    cr_expect(memcmp(ev.data, d, ev.data_len) == 0, "%s: data", name);
    cr_expect_eq(ev.ttl, vec_int(o, "ttl"));
    cr_expect_eq(ev.is_private, jbool(o, "private"));
  }
  if ((o = json_object_get(v, "time"))) {
    uint32_t t;
    cr_assert_eq(ota_msg_time_parse(m, &t), 0);
    cr_expect_eq(t, json_integer_value(o));
  }
  if ((o = json_object_get(v, "goodbye"))) {
    ota_msg_goodbye_t g;
    cr_assert_eq(ota_msg_goodbye_parse(m->payload, m->payload_len, &g), 0);
    cr_expect_eq(g.flags, vec_int(o, "flags"));
    json_t *vals = json_object_get(o, "vals");
    cr_assert_eq(g.nvals, json_array_size(vals));
    for (size_t i = 0; i < g.nvals; i++)
      cr_expect_eq(g.vals[i], json_integer_value(json_array_get(vals, i)));
  }
}

Test(msg, vectors_classify_and_parse) {
  json_t *root = vec_load();
  json_t *arr = json_object_get(root, "vectors");
  for (size_t i = 0; i < json_array_size(arr); i++) {
    json_t *v = json_array_get(arr, i);
    const char *name = vec_str(v, "name");
    uint8_t b[VEC_MAX];
    size_t len = vec_unhex(vec_str(v, "hex"), b, sizeof(b));
    ota_coap_msg_t m;
    cr_assert_eq(ota_coap_decode(b, len, &m), 0, "%s", name);
    ota_msg_kind_t k = ota_msg_classify(&m, vec_dir(v));
    cr_expect_str_eq(ota_msg_kind_name(k), vec_str(v, "kind"), "%s", name);
    if (vec_dir(v) == OTA_DIR_TO_DEVICE) {
      ota_coap_msg_t s;
      ota_msg_kind_t sk;
      cr_expect_eq(ota_msg_parse_cloud_request(b, len, &s, &sk), 0,
                   "%s: strict parser rejects", name);
      cr_expect_eq(sk, k, "%s: strict kind", name);
    }
    check_payload_meaning(v, &m, name);
    if (strcmp(name, "hello") == 0)
      cr_expect_eq(len, OTA_MSG_HELLO_DATAGRAM_LEN,
                   "Hello datagram is 17 + 12 bytes");
  }
  json_decref(root);
}

/* Build the vector from its meaning with the msg builders; 0 = no builder. */
static int build_from_meaning(json_t *v, ota_coap_msg_t *m, uint8_t *store,
                              uint8_t *pl) {
  const char *kind = vec_str(v, "kind");
  uint8_t type = vec_type(vec_str(v, "type"));
  uint8_t code = vec_code(vec_str(v, "code"));
  uint16_t mid = (uint16_t)vec_int(v, "mid");
  uint8_t tok[8];
  size_t tkl = vec_unhex(vec_str(v, "token"), tok, sizeof(tok));
  json_t *o;
  size_t n = 0;
  if (strcmp(kind, "PING") == 0 || strcmp(kind, "ACK") == 0 ||
      strcmp(kind, "RST") == 0) {
    ota_msg_build_empty(m, type, mid);
  } else if ((o = json_object_get(v, "hello"))) {
    ota_msg_hello_t h = {.product_id = (uint16_t)vec_int(o, "product_id"),
                         .product_version =
                             (uint16_t)vec_int(o, "product_version"),
                         .flags = (uint8_t)vec_int(o, "flags"),
                         .platform_id = (uint16_t)vec_int(o, "platform_id"),
                         .id_len = OTA_DEVICE_ID_LEN};
    vec_unhex(vec_str(o, "device_id"), h.device_id, sizeof(h.device_id));
    cr_assert_eq(ota_msg_build_request(m, type, code, mid, tok, tkl, 'h'), 0);
    cr_assert_eq(ota_msg_hello_encode(&h, pl, 64, &n), 0);
    ota_coap_set_payload(m, pl, n);
  } else if (strcmp(kind, "HELLO") == 0) {
    cr_assert_eq(ota_msg_build_request(m, type, code, mid, tok, tkl, 'h'), 0);
  } else if ((o = json_object_get(v, "describe_flags"))) {
    uint8_t f = (uint8_t)json_integer_value(o);
    bool has_query = json_array_size(json_object_get(v, "options")) == 2;
    cr_assert_eq(
        ota_msg_build_describe(m, mid, tok[0], has_query ? f : 0, store), 0);
  } else if ((o = json_object_get(v, "update_begin"))) {
    ota_msg_update_begin_t u = {.flags = (uint8_t)vec_int(o, "flags"),
                                .chunk_size =
                                    (uint16_t)vec_int(o, "chunk_size"),
                                .file_size = (uint32_t)vec_int(o, "file_size"),
                                .store = (uint8_t)vec_int(o, "store"),
                                .address = (uint32_t)vec_int(o, "address")};
    cr_assert_eq(ota_msg_build_request(m, type, code, mid, tok, tkl, 'u'), 0);
    if (!jbool(o, "defaults")) {
      cr_assert_eq(ota_msg_update_begin_encode(&u, pl, 12), 0);
      ota_coap_set_payload(m, pl, 12);
    }
  } else if ((o = json_object_get(v, "chunk"))) {
    ota_msg_chunk_t c = {.crc = (uint32_t)vec_int(o, "crc"),
                         .has_index = jbool(o, "has_index"),
                         .index = (uint16_t)vec_int(o, "index"),
                         .data = pl};
    c.len = vec_unhex(vec_str(v, "payload"), pl, VEC_MAX);
    cr_assert_eq(ota_msg_build_chunk(m, type, mid, tok[0], &c, store), 0);
  } else if ((o = json_object_get(v, "missed"))) {
    uint16_t idx[OTA_CHUNK_MISSED_MAX];
    for (size_t i = 0; i < json_array_size(o); i++)
      idx[i] = (uint16_t)json_integer_value(json_array_get(o, i));
    cr_assert_eq(ota_msg_build_request(m, type, code, mid, NULL, 0, 'c'), 0);
    cr_assert_eq(
        ota_msg_chunk_missed_encode(idx, json_array_size(o), pl, 80, &n), 0);
    ota_coap_set_payload(m, pl, n);
  } else if ((o = json_object_get(v, "done"))) {
    ota_msg_done_result_t r = {.ok = jbool(o, "ok"),
                               .code = (int)vec_int(o, "code")};
    const char *form = vec_str(o, "form");
    r.form = strcmp(form, "none") == 0  ? OTA_DONE_FORM_NONE
             : strcmp(form, "int") == 0 ? OTA_DONE_FORM_INT
                                        : OTA_DONE_FORM_OKERR;
    json_t *mod = json_object_get(o, "module");
    if (mod) {
      r.has_module = true;
      r.module.func = (uint8_t)vec_int(mod, "f");
      r.module.index = (uint8_t)vec_int(mod, "n");
      r.module.version = (uint16_t)vec_int(mod, "v");
      r.platform = (uint16_t)vec_int(mod, "p");
    }
    cr_assert_eq(ota_msg_done_result_encode(&r, (char *)pl, VEC_MAX, &n), 0);
    ota_coap_msg_t req;
    ota_coap_msg_init(&req, OTA_COAP_CON, OTA_COAP_PUT, mid);
    ota_coap_set_token(&req, tok, tkl);
    ota_msg_build_ack_response(m, &req, code, pl, n);
  } else if ((o = json_object_get(v, "event"))) {
    ota_msg_event_t ev = {.name = vec_str(o, "name"),
                          .data = (const uint8_t *)vec_str(o, "data"),
                          .ttl = (uint32_t)vec_int(o, "ttl"),
                          .is_private = jbool(o, "private")};
    ev.name_len = strlen(ev.name);
    ev.data_len = strlen((const char *)ev.data);
    cr_assert_eq(ota_msg_build_event(m, type, mid, &ev, store), 0);
  } else if ((o = json_object_get(v, "time"))) {
    ota_coap_msg_t req;
    ota_coap_msg_init(&req, OTA_COAP_CON, OTA_COAP_GET, mid);
    ota_coap_set_token(&req, tok, tkl);
    ota_msg_build_time_response(m, &req, (uint32_t)json_integer_value(o),
                                store);
  } else if ((o = json_object_get(v, "goodbye"))) {
    ota_msg_goodbye_t g = {.flags = (uint32_t)vec_int(o, "flags")};
    json_t *vals = json_object_get(o, "vals");
    g.nvals = json_array_size(vals);
    for (size_t i = 0; i < g.nvals; i++)
      g.vals[i] = (uint32_t)json_integer_value(json_array_get(vals, i));
    cr_assert_eq(ota_msg_build_request(m, type, code, mid, NULL, 0, 'x'), 0);
    cr_assert_eq(ota_msg_goodbye_encode(&g, pl, 32, &n), 0);
    ota_coap_set_payload(m, pl, n);
  } else if (strcmp(kind, "UPDATE_READY") == 0 ||
             strcmp(kind, "CHUNK_RECEIVED") == 0) {
    n = vec_unhex(vec_str(v, "payload"), pl, VEC_MAX);
    cr_assert_eq(
        ota_msg_build_separate_response(m, type, code, mid, tok, tkl, pl, n),
        0);
  } else if (strcmp(kind, "UPDATE_DONE") == 0 || strcmp(kind, "TIME") == 0 ||
             strcmp(kind, "SIGNAL") == 0) {
    char letter = kind[0] == 'U' ? 'u' : kind[0] == 'T' ? 't' : 's';
    cr_assert_eq(ota_msg_build_request(m, type, code, mid, tok, tkl, letter),
                 0);
    n = vec_unhex(vec_str(v, "payload"), pl, VEC_MAX);
    ota_coap_set_payload(m, pl, n);
  } else if (strcmp(kind, "ACK_RESPONSE") == 0) {
    ota_coap_msg_t req;
    ota_coap_msg_init(&req, OTA_COAP_CON, OTA_COAP_GET, mid);
    ota_coap_set_token(&req, tok, tkl);
    n = vec_unhex(vec_str(v, "payload"), pl, VEC_MAX);
    ota_msg_build_ack_response(m, &req, code, pl, n);
  } else {
    return 0;
  }
  return 1;
}

Test(msg, vectors_build) {
  json_t *root = vec_load();
  json_t *arr = json_object_get(root, "vectors");
  size_t built = 0;
  for (size_t i = 0; i < json_array_size(arr); i++) {
    json_t *v = json_array_get(arr, i);
    const char *name = vec_str(v, "name");
    static uint8_t pl[VEC_MAX];
    uint8_t store[8], want[VEC_MAX], out[VEC_MAX];
    ota_coap_msg_t m;
    if (!build_from_meaning(v, &m, store, pl))
      continue;
    built++;
    size_t wlen = vec_unhex(vec_str(v, "hex"), want, sizeof(want)), olen = 0;
    cr_assert_eq(ota_coap_encode(&m, out, sizeof(out), &olen), 0, "%s", name);
    cr_expect(olen == wlen && memcmp(out, want, wlen) == 0,
              "%s: built bytes differ (%zu vs %zu)", name, olen, wlen);
  }
  cr_expect_eq(built, json_array_size(arr), "a vector has no builder");
  json_decref(root);
}

/* ---- the device's strict parser ---- */

/* Inline strings: Criterion may run parameters in a fresh process. */
typedef struct {
  char name[40];
  char hex[96];
  int err;             /* 0 = accepted */
  ota_msg_kind_t kind; /* when accepted */
} strict_case_t;

static strict_case_t strict_cases[] = {
    {"UpdateBegin, 2-byte token", "42 02 02 00 55 56 b1 75 ff 01", OTA_EPARSE,
     0},
    {"UpdateBegin, no token", "40 02 02 00 b1 75 ff 01", OTA_EPARSE, 0},
    {"two-letter path", "41 02 02 00 55 b2 75 64", OTA_EPARSE, 0},
    {"UpdateBegin, option before payload",
     "41 02 02 00 55 b1 75 41 00 ff 01 02 00 00 00 10 00 00 00 00 00 00",
     OTA_EPARSE, 0},
    {"Chunk without CRC", "41 02 02 01 56 b1 63 ff 68", OTA_EPARSE, 0},
    {"Chunk with 3-byte CRC", "41 02 02 01 56 b1 63 43 36 10 a6 ff 68",
     OTA_EPARSE, 0},
    {"Chunk without data", "41 02 02 01 56 b1 63 44 36 10 a6 86", OTA_EPARSE,
     0},
    {"Chunk with 1-byte index",
     "51 02 02 01 56 b1 63 44 36 10 a6 86 01 03 ff 68", OTA_EPARSE, 0},
    {"Chunk with a third option",
     "51 02 02 01 56 b1 63 44 36 10 a6 86 02 00 03 01 00 ff 68", OTA_EPARSE, 0},
    {"Describe with 2-byte flags", "41 01 01 01 a1 b1 64 42 01 00", OTA_EPARSE,
     0},
    {"Describe POST to the device", "41 02 01 01 a1 b1 64", OTA_EPARSE, 0},
    {"UpdateDone with payload", "41 03 02 03 58 b1 75 ff 00", OTA_EPARSE, 0},
    {"Signal without payload", "41 03 03 01 22 b1 73", OTA_EPARSE, 0},
    {"Time response without token", "60 45 00 09 ff 65 4f 1c 00", OTA_EPARSE,
     0},
    {"Time response, 2-byte time", "61 45 00 09 31 ff 65 4f", OTA_EPARSE, 0},
    {"separate CON response", "41 44 00 01 aa", OTA_EPARSE, 0},
    {"ChunkMissed sent to a device", "41 01 00 05 aa b1 63", OTA_EPARSE, 0},
    {"Goodbye sent to a device", "41 02 00 05 aa b1 78", OTA_EPARSE, 0},
    {"unknown letter z", "41 02 00 01 aa b1 7a", OTA_EPARSE, 0},
    {"event without name", "41 02 00 01 aa b1 65 ff 01", OTA_EPARSE, 0},
    {"marker without payload", "41 02 02 00 55 b1 75 ff", OTA_EPARSE, 0},
    {"NON empty", "50 00 00 01", OTA_EPARSE, 0},
    {"RST with a code", "70 45 00 01", OTA_EPARSE, 0},
    {"ACK with a request code", "61 02 00 01 aa b1 68", OTA_EPARSE, 0},
    {"truncated header", "41 02 02", OTA_ETRUNC, 0},
    {"NON server Hello", "51 02 00 05 7a b1 68", 0, OTA_MSG_HELLO},
    {"KeyChange with option byte", "41 03 00 07 99 b1 6b 41 01", 0,
     OTA_MSG_KEY_CHANGE},
    {"Variable get", "41 01 00 08 99 b1 76 03 66 6f 6f", 0, OTA_MSG_VARIABLE},
    {"Function call", "41 02 00 09 98 b1 66 03 66 6f 6f 41 78", 0,
     OTA_MSG_FUNCTION},
    {"SaveBegin (s POST)", "41 02 02 00 55 b1 73", 0, OTA_MSG_UPDATE_BEGIN},
    {"UpdateBegin short payload", "41 02 02 00 55 b1 75 ff 01 02", 0,
     OTA_MSG_UPDATE_BEGIN},
    {"piggy-backed 4.00 ACK", "61 80 00 01 aa", 0, OTA_MSG_ACK_RESPONSE},
};

ParameterizedTestParameters(msg, strict_parser) {
  return cr_make_param_array(strict_case_t, strict_cases,
                             sizeof(strict_cases) / sizeof(strict_cases[0]));
}

ParameterizedTest(strict_case_t *c, msg, strict_parser) {
  uint8_t b[64];
  size_t len = vec_unhex(c->hex, b, sizeof(b));
  ota_coap_msg_t m;
  ota_msg_kind_t k;
  int rc = ota_msg_parse_cloud_request(b, len, &m, &k);
  cr_expect_eq(rc, c->err, "%s: got %s", c->name, ota_strerror_name(rc));
  if (c->err == 0)
    cr_expect_eq(k, c->kind, "%s: kind %s", c->name, ota_msg_kind_name(k));
  /* Every strict-rejected datagram must still be refused at any prefix. */
  for (size_t l = 0; c->err && l < len; l++)
    (void)ota_msg_parse_cloud_request(b, l, &m, &k);
}

Test(msg, short_update_begin_uses_defaults) {
  ota_msg_update_begin_t u;
  const uint8_t p[] = {1, 2};
  cr_assert_eq(ota_msg_update_begin_parse(p, sizeof(p), &u), 0);
  cr_expect(u.defaults);
  cr_expect_eq(u.flags, 0, "the device ignores a short payload entirely");
  cr_expect_eq(u.chunk_size, OTA_CHUNK_SIZE);
}

/* ---- payload parsers: rejects ---- */

typedef struct {
  char name[32];
  int which; /* 0 hello, 1 missed, 2 done, 3 goodbye */
  char hex[256];
  int err;
} payload_case_t;

static payload_case_t payload_cases[] = {
    {"hello 9 bytes", 0, "ffff ffff 00 01 000a 00", OTA_ETRUNC},
    {"hello id_len 13", 0, "ffff ffff 00 01 000a 000d 00", OTA_EPARSE},
    {"hello id cut", 0, "ffff ffff 00 01 000a 000c 0102", OTA_ETRUNC},
    {"missed odd", 1, "00 01 02", OTA_EPARSE},
    {"missed over 40", 1,
     "0000 0001 0002 0003 0004 0005 0006 0007 0008 0009 000a 000b 000c 000d "
     "000e 000f 0010 0011 0012 0013 0014 0015 0016 0017 0018 0019 001a 001b "
     "001c 001d 001e 001f 0020 0021 0022 0023 0024 0025 0026 0027 0028",
     OTA_ENOBUFS},
    {"done not json", 2, "6f6b", OTA_EPARSE},
    {"done array", 2, "5b5d", OTA_EPARSE},
    {"done no r", 2, "7b2278223a317d", OTA_EPARSE}, /* {"x":1} */
    {"done r maybe", 2, "7b2272223a226d6179626522 7d",
     OTA_EPARSE},                                         /* "maybe" */
    {"done r real", 2, "7b2272223a312e357d", OTA_EPARSE}, /* {"r":1.5} */
    {"goodbye cut varint", 3, "80", OTA_ETRUNC},
    {"goodbye 6 varints", 3, "01 02 03 04 05 06", OTA_EPARSE},
    {"goodbye > 32 bits", 3, "ff ff ff ff 7f", OTA_EPARSE},
    {"goodbye max 32 bits", 3, "ff ff ff ff 0f", 0},
};

ParameterizedTestParameters(msg, payload_rejects) {
  return cr_make_param_array(payload_case_t, payload_cases,
                             sizeof(payload_cases) / sizeof(payload_cases[0]));
}

ParameterizedTest(payload_case_t *c, msg, payload_rejects) {
  uint8_t b[128];
  size_t len = vec_unhex(c->hex, b, sizeof(b)), n;
  int rc;
  uint16_t idx[OTA_CHUNK_MISSED_MAX];
  ota_msg_hello_t h;
  ota_msg_done_result_t r;
  ota_msg_goodbye_t g;
  switch (c->which) {
  case 0:
    rc = ota_msg_hello_parse(b, len, &h);
    break;
  case 1:
    rc = ota_msg_chunk_missed_parse(b, len, idx, OTA_CHUNK_MISSED_MAX, &n);
    break;
  case 2:
    rc = ota_msg_done_result_parse(b, len, &r);
    break;
  default:
    rc = ota_msg_goodbye_parse(b, len, &g);
    break;
  }
  cr_expect_eq(rc, c->err, "%s: got %s", c->name, ota_strerror_name(rc));
}

Test(msg, builders_refuse_bad_input) {
  ota_coap_msg_t m;
  uint8_t st[8];
  char name[66];
  memset(name, 'n', sizeof(name));
  ota_msg_event_t ev = {.name = name, .name_len = 65};
  cr_expect_eq(ota_msg_build_event(&m, OTA_COAP_NON, 1, &ev, st), OTA_EINVAL);
  ev.name_len = 64;
  cr_expect_eq(ota_msg_build_event(&m, OTA_COAP_NON, 1, &ev, st), 0);
  static uint8_t data[700];
  ev.data = data;
  ev.data_len = 623;
  cr_expect_eq(ota_msg_build_event(&m, OTA_COAP_NON, 1, &ev, st), OTA_EINVAL);
  cr_expect_eq(
      ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_GET, 1, NULL, 0, '1'),
      OTA_EINVAL);
  ota_msg_hello_t h = {.id_len = 11};
  size_t n;
  cr_expect_eq(ota_msg_hello_encode(&h, data, 64, &n), OTA_EINVAL);
  h.id_len = 12;
  cr_expect_eq(ota_msg_hello_encode(&h, data, 21, &n), OTA_ENOBUFS);
  uint16_t idx[3] = {1, 2, 3};
  cr_expect_eq(ota_msg_chunk_missed_encode(idx, 3, data, 5, &n), OTA_ENOBUFS);
  ota_msg_done_result_t r = {.form = OTA_DONE_FORM_INT, .code = -1330};
  char txt[8];
  cr_expect_eq(ota_msg_done_result_encode(&r, txt, sizeof(txt), &n),
               OTA_ENOBUFS);
}

Test(msg, kind_names_unique) {
  for (int i = 0; i < OTA_MSG_KIND_COUNT; i++)
    for (int j = i + 1; j < OTA_MSG_KIND_COUNT; j++)
      cr_expect_str_neq(ota_msg_kind_name(i), ota_msg_kind_name(j));
  cr_expect_str_eq(ota_msg_kind_name(OTA_MSG_KIND_COUNT), "?");
}
