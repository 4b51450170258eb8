/* The device's hashing shortcuts (a fleet's CPU budget, no Device OS fact):
 * the CRC-32/SHA-256 that ota_device_rx_verify() computed is reused once by
 * ota_device_queue_staged(), and the image store finds copies without hashing.
 * Each case compares the result with a fresh full check of the same bytes. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/device.h"
#include "otalab/err.h"
#include "otalab/imgstore.h"
#include "otalab/log.h"
#include "otalab/module.h"

static ota_cat_release_t rel;
static ota_catalog_t cat;

static void quiet(void *ud, ota_log_level_t l, const char *line) {
  (void)ud, (void)l, (void)line;
}

static void addmod(uint8_t f, uint8_t n, ota_modref_t d1) {
  ota_cat_module_t *m = &rel.modules[rel.nmodules++];
  memset(m, 0, sizeof *m);
  m->id = (ota_modref_t){f, n, 105};
  m->start_addr = ota_module_slot(f, n, NULL);
  m->size = 6000 + 512u * n;
  m->deps[0] = d1;
  snprintf(m->file, sizeof m->file, "%c%u", ota_fn_letter(f), n);
}

static void setup(void) {
  ota_log_set(quiet, NULL, OTA_LOG_DEBUG);
  memset(&cat, 0, sizeof cat);
  memset(&rel, 0, sizeof rel);
  cat.releases = &rel;
  cat.nreleases = 1;
  snprintf(rel.name, sizeof rel.name, "0.6.1");
  rel.minor = 6, rel.patch = 1;
  rel.system_version = 105;
  rel.bootloader_version = 11;
  rel.behaviour.knows_part3 = 1;
  rel.nparts = 3;
  addmod(OTA_FN_SYSTEM, 3, (ota_modref_t){0, 0, 0});
  addmod(OTA_FN_SYSTEM, 1, (ota_modref_t){OTA_FN_SYSTEM, 3, 105});
  addmod(OTA_FN_SYSTEM, 2, (ota_modref_t){OTA_FN_SYSTEM, 1, 105});
}

static const uint8_t devid[OTA_DEVICE_ID_LEN] = {1, 2, 3, 4,  5,  6,
                                                 7, 8, 9, 10, 11, 12};

/* A user app (u/1) needing s/2 >= 105, of `size` bytes, product `pid`. */
static uint8_t *user_app(uint16_t pid, size_t *len) {
  ota_module_spec_t sp;
  ota_module_spec_init(&sp, OTA_FN_USER, 1, 3);
  sp.size = 5776;
  sp.deps[0] = (ota_modref_t){OTA_FN_SYSTEM, 2, 105};
  sp.product_id = pid;
  sp.product_version = 3;
  uint8_t *b = malloc(sp.size);
  cr_assert_not_null(b);
  cr_assert_eq(ota_module_build(&sp, b, sp.size, len), 0);
  return b;
}

typedef enum {
  CH_NONE,      /* nothing changes */
  CH_TAIL,      /* one byte of the stored SHA-256 flipped in place */
  CH_COPY_BODY, /* queued: another buffer, same bytes but one body byte */
  CH_SHORTER,   /* queued: the same buffer, one byte shorter */
} change_t;

typedef struct {
  const char *name;
  int corrupt_first; /* body byte flipped before rx_verify, repaired after */
  change_t change;   /* between rx_verify and the queue (a body byte changed
                        in place is the caller's contract: not tested) */
  int queue_twice;   /* a second queue after a CH_BODY flip made after the
                        first one: must hash afresh */
} rxcase_t;

static rxcase_t rxcases[] = {
    {"clean", 0, CH_NONE, 0},
    {"refused then repaired in place", 1, CH_NONE, 0},
    {"tail changed in place", 0, CH_TAIL, 0},
    {"another buffer, other body", 0, CH_COPY_BODY, 0},
    {"one byte shorter", 0, CH_SHORTER, 0},
    {"the result is used once", 0, CH_NONE, 1},
};

ParameterizedTestParameters(rxhash, reuse) {
  return cr_make_param_array(rxcase_t, rxcases,
                             sizeof rxcases / sizeof rxcases[0]);
}

ParameterizedTest(rxcase_t *c, rxhash, reuse, .init = setup) {
  ota_device_t d;
  ota_device_init(&d, &cat, devid);
  cr_assert_eq(ota_device_provision(&d, "0.6.1", NULL, NULL, NULL, 0), 0);
  cr_assert_eq(ota_device_boot(&d, OTA_RESET_POWER_DOWN, NULL), 0);
  size_t len;
  uint8_t *img = user_app(7, &len);
  char why[200];
  if (c->corrupt_first) {
    img[100] ^= 0x5A;
    int rc = ota_device_rx_verify(&d, img, len, why, sizeof why);
    cr_assert_eq(rc, ota_device_verify_staged(&d, img, len, NULL, 0), "%s",
                 c->name);
    cr_assert_neq(rc, 0, "%s: a flipped body byte passed", c->name);
    img[100] ^= 0x5A;
  } else {
    cr_assert_eq(ota_device_rx_verify(&d, img, len, why, sizeof why), 0,
                 "%s: %s", c->name, why);
  }
  uint8_t *q = img;
  size_t qlen = len;
  switch (c->change) {
  case CH_NONE:
    break;
  case CH_TAIL:
    img[len - 20] ^= 0x01;
    break;
  case CH_COPY_BODY:
    q = malloc(len);
    cr_assert_not_null(q);
    memcpy(q, img, len);
    q[100] ^= 0x5A;
    break;
  case CH_SHORTER:
    qlen = len - 1;
    break;
  }
  /* Expected: what a full check of the queued bytes says. */
  int want = ota_device_verify_staged(&d, q, qlen, NULL, 0);
  if (c->change != CH_NONE)
    cr_assert_neq(want, 0, "%s: the change went unseen", c->name);
  int npend = d.npending;
  cr_assert_eq(ota_device_queue_staged(&d, q, qlen), want, "%s", c->name);
  cr_assert_eq(d.npending, npend + (want == 0), "%s", c->name);
  if (c->queue_twice) {
    q[100] ^= 0x5A;
    int want2 = ota_device_verify_staged(&d, q, qlen, NULL, 0);
    cr_assert_neq(want2, 0);
    cr_assert_eq(ota_device_queue_staged(&d, q, qlen), want2, "%s", c->name);
  }
  if (q != img)
    free(q);
  free(img);
  ota_device_free(&d);
}

/* The store's cheap key (length + last 4 bytes) must never merge images that
 * differ: same suffix and CRC but another body byte, or other bytes with the
 * same last 4; equal bytes are merged. */
Test(rxhash, imgstore_key) {
  ota_imgstore_t s;
  ota_imgstore_init(&s);
  size_t len;
  uint8_t *a = user_app(7, &len);
  uint8_t *b = malloc(len), *c = malloc(len);
  cr_assert(b && c);
  memcpy(b, a, len);
  memcpy(c, a, len);
  c[200] ^= 1; /* same tail, other body */
  uint8_t *ha = ota_imgstore_adopt(&s, a, len);
  uint8_t *hb = ota_imgstore_adopt(&s, b, len);
  uint8_t *hc = ota_imgstore_adopt(&s, c, len);
  cr_assert_eq(ha, hb, "equal images are kept once");
  cr_assert_neq(ha, hc, "a body difference was merged away");
  cr_assert_eq(ota_imgstore_count(&s), 2);
  cr_assert_eq(hc[200], (uint8_t)(ha[200] ^ 1));
  /* other bytes, same last 4 (and short images) */
  uint8_t *x = malloc(8), *y = malloc(8), *z = malloc(2), *w = malloc(2);
  cr_assert(x && y && z && w);
  memcpy(x, "AAAAtail", 8);
  memcpy(y, "BBBBtail", 8);
  memcpy(z, "hi", 2);
  memcpy(w, "ho", 2);
  uint8_t *hx = ota_imgstore_adopt(&s, x, 8);
  uint8_t *hy = ota_imgstore_adopt(&s, y, 8);
  uint8_t *hz = ota_imgstore_adopt(&s, z, 2);
  uint8_t *hw = ota_imgstore_adopt(&s, w, 2);
  cr_assert_neq(hx, hy);
  cr_assert_neq(hz, hw);
  cr_assert_eq(memcmp(hy, "BBBBtail", 8), 0);
  cr_assert_eq(ota_imgstore_count(&s), 6);
  ota_imgstore_free(&s);
}
