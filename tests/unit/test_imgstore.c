/* Tests of core/imgstore, the fleet's shared module images: identical bytes
 * kept once, reference counting, byte accounting, hole reuse, memos, and the
 * device model holding its flash through a store (ota_device_t.images). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/device.h"
#include "otalab/err.h"
#include "otalab/imgstore.h"

#define CATALOG OTALAB_SOURCE_DIR "/fixtures/catalog/electron.json"

/* A malloc'd image of len bytes, filled from seed (same seed: same bytes). */
static uint8_t *img(size_t len, unsigned seed) {
  uint8_t *b = malloc(len ? len : 1);
  cr_assert_not_null(b);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    x = x * 1103515245u + 12345u;
    b[i] = (uint8_t)(x >> 16);
  }
  return b;
}

Test(imgstore, identical_bytes_are_kept_once) {
  ota_imgstore_t s;
  ota_imgstore_init(&s);
  uint8_t *a = ota_imgstore_adopt(&s, img(4096, 1), 4096);
  uint8_t *b = ota_imgstore_adopt(&s, img(4096, 1), 4096); /* a copy */
  uint8_t *c = ota_imgstore_adopt(&s, img(4096, 2), 4096); /* other bytes */
  cr_assert_not_null(a);
  cr_assert_eq(a, b, "a second copy of the same bytes is not shared");
  cr_assert_neq(a, c);
  cr_assert_eq(ota_imgstore_count(&s), 2);
  cr_assert_eq(s.bytes_unique, 2 * 4096);
  cr_assert_eq(s.bytes_logical, 3 * 4096);
  cr_assert_eq(s.hits, 1);
  ota_imgstore_release(&s, a);
  cr_assert_eq(ota_imgstore_count(&s), 2, "one reference left: still held");
  ota_imgstore_release(&s, b);
  cr_assert_eq(ota_imgstore_count(&s), 1);
  cr_assert_eq(s.bytes_unique, 4096);
  cr_assert_eq(s.bytes_logical, 4096);
  ota_imgstore_release(&s, c);
  cr_assert_eq(ota_imgstore_count(&s), 0);
  cr_assert_eq(s.bytes_unique, 0);
  cr_assert_eq(s.bytes_logical, 0);
  ota_imgstore_free(&s);
  ota_imgstore_free(&s); /* safe twice */
}

/* Same length and CRC is not enough: the bytes are compared. */
Test(imgstore, same_length_other_bytes_are_distinct) {
  ota_imgstore_t s;
  ota_imgstore_init(&s);
  uint8_t *x = img(64, 7), *y = img(64, 7);
  y[63] ^= 1;
  uint8_t *a = ota_imgstore_adopt(&s, x, 64);
  uint8_t *b = ota_imgstore_adopt(&s, y, 64);
  cr_assert_neq(a, b);
  cr_assert_eq(ota_imgstore_count(&s), 2);
  /* a prefix of an image is another image */
  uint8_t *p = ota_imgstore_adopt(&s, img(32, 7), 32);
  cr_assert_neq(p, a);
  cr_assert_eq(ota_imgstore_count(&s), 3);
  ota_imgstore_free(&s);
}

/* Freed entries are reused; a pointer the store does not hold is freed. */
Test(imgstore, holes_and_foreign_pointers) {
  ota_imgstore_t s;
  ota_imgstore_init(&s);
  uint8_t *held[40];
  for (unsigned i = 0; i < 40; i++)
    held[i] = ota_imgstore_adopt(&s, img(100 + i, i), 100 + i);
  size_t n = s.n;
  for (unsigned i = 0; i < 40; i += 2)
    ota_imgstore_release(&s, held[i]);
  cr_assert_eq(ota_imgstore_count(&s), 20);
  for (unsigned i = 0; i < 20; i++)
    ota_imgstore_adopt(&s, img(500 + i, 100 + i), 500 + i);
  cr_assert_eq(s.n, n, "holes not reused: %zu entries, was %zu", s.n, n);
  cr_assert_eq(ota_imgstore_count(&s), 40);
  ota_imgstore_release(&s, img(10, 9)); /* foreign: freed (ASan checks) */
  ota_imgstore_release(&s, NULL);
  cr_assert_null(ota_imgstore_adopt(&s, NULL, 10));
  ota_imgstore_free(&s);
}

Test(imgstore, memo_kept_with_the_image) {
  ota_imgstore_t s;
  ota_imgstore_init(&s);
  uint8_t *a = ota_imgstore_adopt(&s, img(256, 3), 256);
  uint32_t v = 0;
  cr_assert_eq(ota_imgstore_memo_get(&s, a, 256, &v), OTA_ENOENT);
  cr_assert_eq(ota_imgstore_memo_set(&s, a, 256, 0), 0);
  cr_assert_eq(ota_imgstore_memo_get(&s, a, 256, &v), 0);
  cr_assert_eq(v, 0, "a memo of 0 is a memo");
  cr_assert_eq(ota_imgstore_memo_set(&s, a, 256, 42), 0);
  /* a second holder of the same bytes sees the memo */
  uint8_t *b = ota_imgstore_adopt(&s, img(256, 3), 256);
  cr_assert_eq(ota_imgstore_memo_get(&s, b, 256, &v), 0);
  cr_assert_eq(v, 42);
  /* wrong length, foreign pointer: not held */
  cr_assert_eq(ota_imgstore_memo_get(&s, a, 255, &v), OTA_ENOENT);
  uint8_t other[4] = {0};
  cr_assert_eq(ota_imgstore_memo_set(&s, other, 4, 1), OTA_ENOENT);
  /* the last release forgets it: the same bytes adopted again start clean */
  ota_imgstore_release(&s, a);
  ota_imgstore_release(&s, b);
  uint8_t *c = ota_imgstore_adopt(&s, img(256, 3), 256);
  cr_assert_eq(ota_imgstore_memo_get(&s, c, 256, &v), OTA_ENOENT);
  ota_imgstore_free(&s);
}

/* Devices provisioned with the same release through one store share their
 * flash; a device on another release adds only its own images. */
typedef struct {
  char a[8], b[8]; /* arrays: parameters are copied into the test process */
  int shared;      /* 1: same release, all images shared */
} pair_t;

ParameterizedTestParameters(imgstore, devices_share_flash) {
  static pair_t p[] = {
      {"0.6.1", "0.6.1", 1},
      {"0.4.8", "0.4.8", 1},
      {"0.6.1", "0.6.2", 0},
      {"0.4.8", "0.6.1", 0},
  };
  return cr_make_param_array(pair_t, p, sizeof p / sizeof *p);
}

ParameterizedTest(pair_t *p, imgstore, devices_share_flash) {
  static ota_catalog_t cat;
  char err[256] = "";
  ota_catalog_init(&cat);
  cr_assert_eq(ota_catalog_load_file(&cat, CATALOG, err, sizeof err), 0, "%s",
               err);
  ota_imgstore_t s;
  ota_imgstore_init(&s);
  ota_device_t d1, d2;
  ota_device_init(&d1, &cat, NULL);
  ota_device_init(&d2, &cat, NULL);
  d1.images = d2.images = &s;
  cr_assert_eq(ota_device_provision(&d1, p->a, NULL, NULL, NULL, 0), 0,
               "provision %s", p->a);
  size_t one = ota_imgstore_count(&s);
  uint64_t bytes_one = s.bytes_unique;
  cr_assert_gt(one, 0, "provisioning put no image in the store");
  cr_assert_eq(ota_device_provision(&d2, p->b, NULL, NULL, NULL, 0), 0,
               "provision %s", p->b);
  if (p->shared) {
    cr_assert_eq(ota_imgstore_count(&s), one);
    cr_assert_eq(s.bytes_unique, bytes_one);
    cr_assert_eq(s.bytes_logical, 2 * bytes_one);
  } else {
    cr_assert_gt(ota_imgstore_count(&s), one);
    cr_assert_gt(s.bytes_unique, bytes_one);
  }
  /* both boot (their shared images' checks are memoised, results agree) */
  ota_boot_result_t r1, r2;
  cr_assert_eq(ota_device_boot(&d1, OTA_RESET_POWER_DOWN, &r1), 0);
  cr_assert_eq(ota_device_boot(&d2, OTA_RESET_POWER_DOWN, &r2), 0);
  if (p->shared)
    cr_assert_eq(d1.state, d2.state);
  ota_device_free(&d1);
  ota_device_free(&d2);
  cr_assert_eq(ota_imgstore_count(&s), 0, "images left after both devices");
  cr_assert_eq(s.bytes_logical, 0);
  ota_imgstore_free(&s);
  ota_catalog_free(&cat);
}
