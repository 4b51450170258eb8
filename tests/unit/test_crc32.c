/* Tests for core/crc32 (slicing-by-8): against a bit-at-a-time reference of
 * the same polynomial, every length 0..600 at every alignment, split anywhere. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdint.h>
#include <string.h>

#include "otalab/crc32.h"

/* The definition, one bit at a time: no table shared with the code under
 * test. */
static uint32_t ref_crc(uint32_t crc, const uint8_t *p, size_t n) {
  uint32_t c = ~crc;
  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

static uint8_t buf[640];

static void fill(uint32_t seed) {
  uint32_t x = seed * 2654435761u + 1u;
  for (size_t i = 0; i < sizeof buf; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    buf[i] = (uint8_t)x;
  }
}

Test(crc32, check_value) {
  cr_assert_eq(ota_crc32("123456789", 9), 0xCBF43926u);
  cr_assert_eq(ota_crc32(NULL, 0), 0u);
  cr_assert_eq(ota_crc32_update(0x12345678u, NULL, 0), 0x12345678u);
}

typedef struct {
  uint32_t seed;
  uint8_t fillbyte; /* 0: random bytes; else every byte this value */
} crc_case_t;

static crc_case_t cases[] = {{1, 0}, {77, 0}, {3, 0xFF}, {4, 0x01}};

ParameterizedTestParameters(crc32, every_length_and_alignment) {
  return cr_make_param_array(crc_case_t, cases,
                             sizeof cases / sizeof cases[0]);
}

ParameterizedTest(crc_case_t *c, crc32, every_length_and_alignment) {
  fill(c->seed);
  if (c->fillbyte)
    memset(buf, c->fillbyte, sizeof buf);
  for (size_t off = 0; off < 8; off++)
    for (size_t n = 0; n <= 600; n++)
      cr_assert_eq(ota_crc32(buf + off, n), ref_crc(0, buf + off, n),
                   "offset %zu length %zu", off, n);
}

Test(crc32, incremental_equals_whole) {
  fill(9);
  const size_t n = 531; /* a chunk and a tail, not a multiple of 8 */
  uint32_t whole = ota_crc32(buf, n);
  cr_assert_eq(whole, ref_crc(0, buf, n));
  for (size_t cut = 0; cut <= n; cut++) {
    uint32_t c = ota_crc32_update(0, buf, cut);
    cr_assert_eq(ota_crc32_update(c, buf + cut, n - cut), whole, "cut %zu",
                 cut);
  }
  /* Three pieces with odd boundaries. */
  uint32_t c = ota_crc32_update(0, buf, 13);
  c = ota_crc32_update(c, buf + 13, 300);
  cr_assert_eq(ota_crc32_update(c, buf + 313, n - 313), whole);
}
