/* Helpers shared by test_coap.c and test_msg.c: load fixtures/vectors/coap.json
 * (hand-built datagrams, PROTOCOL.md 2) and turn its fields into C values. */
#ifndef OTALAB_TEST_COAP_VECTORS_H
#define OTALAB_TEST_COAP_VECTORS_H

#include "otalab/coap.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <jansson.h>
#include <string.h>

#define VEC_MAX 2048

/* Hex (spaces allowed) into out; returns the byte count. Aborts the test on
 * bad hex. */
static size_t vec_unhex(const char *s, uint8_t *out, size_t cap) {
  size_t n = 0;
  int hi = -1;
  for (; *s; s++) {
    if (isspace((unsigned char)*s))
      continue;
    int v = isdigit((unsigned char)*s) ? *s - '0'
                                       : tolower((unsigned char)*s) - 'a' + 10;
    cr_assert(v >= 0 && v < 16 && n < cap, "bad hex near '%s'", s);
    if (hi < 0) {
      hi = v;
    } else {
      out[n++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  cr_assert(hi < 0, "odd hex string");
  return n;
}

static json_t *vec_load(void) {
  json_error_t err;
  json_t *root =
      json_load_file(OTALAB_SOURCE_DIR "/fixtures/vectors/coap.json", 0, &err);
  cr_assert_not_null(root, "coap.json: %s line %d", err.text, err.line);
  json_t *arr = json_object_get(root, "vectors");
  cr_assert(json_is_array(arr) && json_array_size(arr) > 20);
  return root;
}

static const char *vec_str(json_t *v, const char *key) {
  json_t *s = json_object_get(v, key);
  cr_assert(json_is_string(s), "missing string %s", key);
  return json_string_value(s);
}

static long long vec_int(json_t *v, const char *key) {
  json_t *s = json_object_get(v, key);
  cr_assert(json_is_integer(s), "missing integer %s", key);
  return json_integer_value(s);
}

static uint8_t vec_type(const char *t) {
  static const char *const names[] = {"CON", "NON", "ACK", "RST"};
  for (uint8_t i = 0; i < 4; i++)
    if (strcmp(t, names[i]) == 0)
      return i;
  cr_assert_fail("bad type %s", t);
  return 0;
}

/* "c.dd" -> code byte, parsed here independently of ota_coap_code_str. */
static uint8_t vec_code(const char *c) {
  cr_assert(strlen(c) == 4 && c[1] == '.', "bad code %s", c);
  return (uint8_t)(((c[0] - '0') << 5) | ((c[2] - '0') * 10 + (c[3] - '0')));
}

#endif
