/* multipart/form-data parser: the shapes particle-cli and curl send, and the
 * malformed bodies the REST API must refuse with 400. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "otalab/err.h"
#include "otalab/multipart.h"

Test(multipart, boundary_from_content_type) {
  char b[80];
  cr_assert_eq(ota_multipart_boundary("multipart/form-data; boundary=abc123", b,
                                      sizeof b),
               0);
  cr_assert_str_eq(b, "abc123");
  cr_assert_eq(
      ota_multipart_boundary("multipart/form-data; charset=x; boundary=\"q r\"",
                             b, sizeof b),
      0);
  cr_assert_str_eq(b, "q r");
  cr_assert_eq(ota_multipart_boundary("application/json", b, sizeof b),
               OTA_EPARSE);
  cr_assert_eq(ota_multipart_boundary("multipart/form-data", b, sizeof b),
               OTA_EPARSE);
  cr_assert_eq(
      ota_multipart_boundary("multipart/form-data; boundary=abcdef", b, 3),
      OTA_ENOBUFS);
}

Test(multipart, curl_style_file_and_field) {
  /* binary data containing CR, LF, NUL and a near-boundary */
  static const char body[] =
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"file_type\"\r\n\r\n"
      "binary\r\n"
      "--XyZ\r\n"
      "Content-Disposition: form-data; name=\"file\"; "
      "filename=\"system-part1-0.6.2-electron.bin\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n"
      "\x01\x02\r\n--XyQ\0\xff\r\n"
      "--XyZ--\r\n";
  ota_multipart_t mp;
  cr_assert_eq(
      ota_multipart_parse((const uint8_t *)body, sizeof body - 1, "XyZ", &mp),
      0);
  cr_assert_eq(mp.nparts, 2);
  const ota_multipart_part_t *f = ota_multipart_find(&mp, "file");
  cr_assert_not_null(f);
  cr_assert_eq(f->filename_len, strlen("system-part1-0.6.2-electron.bin"));
  cr_assert_eq(
      memcmp(f->filename, "system-part1-0.6.2-electron.bin", f->filename_len),
      0);
  cr_assert_eq(f->len, 11);
  cr_assert_eq(memcmp(f->data, "\x01\x02\r\n--XyQ\0\xff", 11), 0);
  const ota_multipart_part_t *t = ota_multipart_find(&mp, "file_type");
  cr_assert_not_null(t);
  cr_assert_eq(t->len, 6);
  cr_assert_null(ota_multipart_find(&mp, "nope"));
}

struct bad_case {
  char name[32];
  char body[160]; /* inline: Criterion may run params in a fresh process */
  int want;
};

static struct bad_case bad_cases[] = {
    {"empty", "", OTA_EPARSE},
    {"no delimiter", "hello world", OTA_EPARSE},
    {"truncated data",
     "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
     OTA_EPARSE},
    {"no blank line",
     "--B\r\nContent-Disposition: form-data; name=\"file\"\r\nabc", OTA_EPARSE},
    {"no disposition",
     "--B\r\nContent-Type: text/plain\r\n\r\nabc\r\n--B--\r\n", OTA_EPARSE},
    {"not form-data",
     "--B\r\nContent-Disposition: attachment; "
     "name=\"x\"\r\n\r\nabc\r\n--B--\r\n",
     OTA_EPARSE},
    {"only close", "--B--\r\n", OTA_EPARSE},
};

ParameterizedTestParameters(multipart, malformed) {
  return cr_make_param_array(struct bad_case, bad_cases,
                             sizeof bad_cases / sizeof bad_cases[0]);
}

ParameterizedTest(struct bad_case *c, multipart, malformed) {
  ota_multipart_t mp;
  int rc =
      ota_multipart_parse((const uint8_t *)c->body, strlen(c->body), "B", &mp);
  cr_assert_eq(rc, c->want, "%s: got %d", c->name, rc);
}

Test(multipart, too_many_parts) {
  char body[4096];
  size_t n = 0;
  for (int i = 0; i < OTA_MULTIPART_MAX_PARTS + 1; i++)
    n += (size_t)snprintf(
        body + n, sizeof body - n,
        "--B\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nx\r\n", i);
  n += (size_t)snprintf(body + n, sizeof body - n, "--B--\r\n");
  ota_multipart_t mp;
  cr_assert_eq(ota_multipart_parse((const uint8_t *)body, n, "B", &mp),
               OTA_ENOBUFS);
}
