/* The simulated Electron's device core: provisioning, UpdateDone checks, the
 * DCT queue, boot (bootloader rule, safe mode, 0.5.3 rule), describe, Hello,
 * persistence (PROTOCOL.md 2.3, 2.5, 3.1, 4.4, 5.2, 6, 7). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/device.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/module.h"

/* ---- a catalogue built from PROTOCOL.md 5.1/5.2 -------------------------- */

static ota_cat_release_t rels[12];
static ota_catalog_t cat;

static ota_modref_t ref(uint8_t f, uint8_t n, uint16_t v) {
  ota_modref_t r = {f, n, v};
  return r;
}

static void addmod(ota_cat_release_t *r, uint8_t f, uint8_t n, uint16_t v,
                   ota_modref_t d1, ota_modref_t d2) {
  ota_cat_module_t *m = &r->modules[r->nmodules++];
  memset(m, 0, sizeof *m);
  m->id = ref(f, n, v);
  m->start_addr = ota_module_slot(f, n, NULL);
  /* small but distinct sizes keep the tests fast */
  m->size = f == OTA_FN_BOOTLOADER ? 15664 : 6000 + 512u * n + v % 97;
  m->deps[0] = d1;
  m->deps[1] = d2;
  snprintf(m->file, sizeof m->file, "%c%u", ota_fn_letter(f), n);
}

static void mkrel(const char *name, int maj, int min, int pat, uint16_t sv,
                  uint16_t bl, uint16_t bldep) {
  ota_cat_release_t *r = &rels[cat.nreleases++];
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", name);
  r->major = maj, r->minor = min, r->patch = pat;
  r->system_version = sv;
  r->bootloader_version = bl;
  r->behaviour.knows_part3 = sv >= 19;
  r->behaviour.updone = sv < 105    ? OTA_UPDONE_NONE
                        : sv < 2000 ? OTA_UPDONE_JSON
                                    : OTA_UPDONE_INT;
  r->behaviour.hello_flags = sv >= 2200 ? 0x36 : sv >= 1000 ? 0x02 : 0;
  ota_modref_t none = ref(0, 0, 0);
  if (sv < 100) { /* 2 parts */
    r->nparts = 2;
    addmod(r, OTA_FN_SYSTEM, 1, sv, none, none);
    addmod(r, OTA_FN_SYSTEM, 2, sv, ref(OTA_FN_SYSTEM, 1, sv), none);
  } else {
    r->nparts = 3;
    addmod(r, OTA_FN_SYSTEM, 3, sv,
           sv >= 200 ? ref(OTA_FN_SYSTEM, 2, 110) : none, none);
    addmod(r, OTA_FN_SYSTEM, 1, sv, ref(OTA_FN_SYSTEM, 3, sv), none);
    addmod(r, OTA_FN_SYSTEM, 2, sv, ref(OTA_FN_SYSTEM, 1, sv),
           bldep ? ref(OTA_FN_BOOTLOADER, 0, bldep) : none);
  }
  if (sv >= 2000)
    addmod(r, OTA_FN_BOOTLOADER, 0, bl, none, none);
}

static void quiet(void *ud, ota_log_level_t l, const char *line) {
  (void)ud, (void)l, (void)line;
}

static void setup(void) {
  ota_log_set(quiet, NULL, OTA_LOG_DEBUG);
  memset(&cat, 0, sizeof cat);
  cat.releases = rels;
  mkrel("0.4.8-rc.6", 0, 4, 8, 10, 6, 0);
  mkrel("0.5.1", 0, 5, 1, 15, 7, 0);
  mkrel("0.5.3", 0, 5, 3, 21, 7, 0);
  mkrel("0.6.0", 0, 6, 0, 102, 8, 0);
  mkrel("0.6.1", 0, 6, 1, 105, 11, 0);
  mkrel("0.6.2", 0, 6, 2, 108, 11, 0);
  mkrel("0.6.4", 0, 6, 4, 110, 11, 0);
  mkrel("0.7.0", 0, 7, 0, 207, 101, 101);
  mkrel("2.3.1", 2, 3, 1, 2302, 1006, 1003);
}

TestSuite(device, .init = setup);

/* ---- helpers ----------------------------------------------------------------
 */

static const uint8_t devid[OTA_DEVICE_ID_LEN] = {0xe0, 0x0f, 0xce, 0x68, 1, 2,
                                                 3,    4,    5,    6,    7, 8};

typedef struct {
  uint8_t *buf;
  size_t len;
} img_t;

/* Module bytes of catalogue module (func,index) of release `rel`. */
static img_t part(const char *rel, uint8_t f, uint8_t n) {
  const ota_cat_release_t *r = ota_catalog_find(&cat, rel);
  cr_assert_not_null(r, "release %s", rel);
  for (int i = 0; i < r->nmodules; i++)
    if (r->modules[i].id.func == f && r->modules[i].id.index == n) {
      img_t im;
      cr_assert_eq(
          ota_device_build_module(NULL, &r->modules[i], &im.buf, &im.len), 0);
      return im;
    }
  cr_assert_fail("%s has no %c/%u", rel, ota_fn_letter(f), n);
  return (img_t){0};
}

/* A user app (u/1) needing s/2 >= need, product id pid. */
static img_t user_app(uint16_t need, uint16_t pid, uint16_t version) {
  ota_module_spec_t sp;
  ota_module_spec_init(&sp, OTA_FN_USER, 1, version);
  sp.size = 5776;
  sp.deps[0] = ref(OTA_FN_SYSTEM, 2, need);
  sp.product_id = pid;
  sp.product_version = pid == 0xFFFF ? 0xFFFF : 3;
  img_t im = {malloc(sp.size), 0};
  cr_assert_eq(ota_module_build(&sp, im.buf, sp.size, &im.len), 0);
  return im;
}

static void provision(ota_device_t *d, const char *rel, const img_t *app) {
  ota_device_init(d, &cat, devid);
  cr_assert_eq(ota_device_provision(d, rel, NULL, NULL, app ? app->buf : NULL,
                                    app ? app->len : 0),
               0, "provision %s", rel);
}

static ota_dev_state_t boot(ota_device_t *d, ota_reset_t why) {
  ota_boot_result_t r;
  cr_assert_eq(ota_device_boot(d, why, &r), 0);
  cr_assert_eq(r.state, d->state);
  return r.state;
}

/* OTA one module: verify + queue (a real device reboots after each). */
static int ota(ota_device_t *d, const char *rel, uint8_t f, uint8_t n) {
  img_t im = part(rel, f, n);
  char why[200];
  int rc = ota_device_verify_staged(d, im.buf, im.len, why, sizeof why);
  if (rc == 0)
    cr_assert_eq(ota_device_queue_staged(d, im.buf, im.len), 0);
  else
    cr_assert_eq(ota_device_queue_staged(d, im.buf, im.len), rc);
  free(im.buf);
  return rc;
}

static json_t *describe(const ota_device_t *d, int flags) {
  char buf[4096];
  size_t len;
  cr_assert_eq(ota_device_describe_json(d, flags, buf, sizeof buf, &len), 0);
  cr_assert_eq(strlen(buf), len);
  json_error_t e;
  json_t *j = json_loads(buf, 0, &e);
  cr_assert_not_null(j, "describe is not JSON: %s: %s", e.text, buf);
  return j;
}

/* The describe entry of module f/n, or NULL. */
static json_t *dmod(json_t *j, char f, unsigned n) {
  size_t i;
  json_t *m;
  char ns[8];
  snprintf(ns, sizeof ns, "%u", n);
  json_array_foreach(json_object_get(j, "m"), i, m) {
    const char *mf = json_string_value(json_object_get(m, "f"));
    const char *mn = json_string_value(json_object_get(m, "n"));
    if (mf && mn && mf[0] == f && !strcmp(mn, ns))
      return m;
  }
  return NULL;
}

static int jint(json_t *m, const char *k) {
  return (int)json_integer_value(json_object_get(m, k));
}

static int has_event(const ota_device_t *d, const char *name,
                     const char *data) {
  ota_dev_event_t ev[OTA_DEVICE_MAX_EVENTS];
  size_t n = ota_device_handshake_events(d, ev, OTA_DEVICE_MAX_EVENTS);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(ev[i].name, name) && (!data || !strcmp(ev[i].data, data)))
      return 1;
  return 0;
}

static uint8_t hello_flags(const ota_device_t *d) {
  uint8_t h[OTA_HELLO_LEN];
  cr_assert_eq(ota_device_hello_payload(d, h), 0);
  return h[5];
}

/* ---- provisioning each release ------------------------------------------- */

typedef struct {
  char rel[16];
  uint16_t sysver;
  int nparts;
  int legacy; /* <= 0.6.x describe */
} prov_case_t;

static prov_case_t prov_cases[] = {
    {"0.4.8", 10, 2, 1},   {"0.5.1", 15, 2, 1},  {"0.5.3", 21, 2, 1},
    {"0.6.1", 105, 3, 1},  {"0.6.2", 108, 3, 1}, {"0.7.0", 207, 3, 0},
    {"2.3.1", 2302, 3, 0},
};

ParameterizedTestParameters(device, provision_release) {
  return cr_make_param_array(prov_case_t, prov_cases,
                             sizeof prov_cases / sizeof prov_cases[0]);
}

ParameterizedTest(prov_case_t *c, device, provision_release) {
  ota_device_t d;
  img_t app = user_app(c->sysver, 0xFFFF, 3);
  provision(&d, c->rel, &app);
  cr_assert_eq(d.state, OTA_DEV_OFF);
  cr_assert_eq(boot(&d, OTA_RESET_POWER_DOWN), OTA_DEV_RUNNING_APP);
  cr_assert_eq(ota_device_system_version(&d), c->sysver);
  cr_assert_eq(strncmp(ota_device_release_name(&d), c->rel, strlen(c->rel)), 0,
               "%s", ota_device_release_name(&d));
  cr_assert_eq(d.ota_flashed, 0, "provisioning is not an OTA");
  json_t *j = describe(&d, 1);
  cr_assert_eq(jint(j, "p"), 10);
  cr_assert_str_eq(json_string_value(json_object_get(j, "imei")), d.imei);
  for (unsigned n = 1; n <= 3; n++) {
    json_t *m = dmod(j, 's', n);
    if (n == 3 && c->nparts == 2) {
      cr_assert_null(m, "%s has no s/3", c->rel);
      continue;
    }
    cr_assert_not_null(m, "s/%u", n);
    cr_assert_eq(jint(m, "v"), c->sysver);
    cr_assert_eq(jint(m, "vc"), OTA_VALID_ALL);
    cr_assert_eq(jint(m, "vv"), jint(m, "vc"), "s/%u healthy", n);
  }
  json_t *u = dmod(j, 'u', 1);
  cr_assert_not_null(u);
  cr_assert_eq(strlen(json_string_value(json_object_get(u, "u"))), 64);
  /* <= 0.6.x lists the empty factory slot; >= 0.7 skips it */
  size_t nm = json_array_size(json_object_get(j, "m"));
  size_t want = 2 + (size_t)c->nparts + (c->legacy ? 1 : 0) +
                (c->nparts == 2 && c->sysver >= 19 ? 1 : 0);
  cr_assert_eq(nm, want, "%s: %zu modules listed", c->rel, nm);
  /* >= 0.7 lists both dependencies of s/2 (s/1 and the bootloader) */
  json_t *s2 = dmod(j, 's', 2);
  cr_assert_eq(json_array_size(json_object_get(s2, "d")), c->legacy ? 1u : 2u);
  cr_assert_eq(json_object_get(j, "cellfw") != NULL, c->sysver >= 2000);
  json_decref(j);
  free(app.buf);
  ota_device_free(&d);
  ota_device_free(&d);
}

/* ---- safe mode healing, one module per boot --------------------------------
 */

Test(device, safe_mode_then_heal_to_062) {
  ota_device_t d;
  img_t app = user_app(108, 0xFFFF, 5);
  provision(&d, "0.6.1", &app);
  cr_assert_eq(boot(&d, OTA_RESET_POWER_DOWN), OTA_DEV_SAFE_MODE);
  cr_assert(ota_device_online(&d));
  cr_assert(has_event(&d, "spark/device/safemode", ""));
  cr_assert(has_event(&d, "spark/device/last_reset", "power_down"));
  json_t *j = describe(&d, 3);
  json_t *u = dmod(j, 'u', 1);
  cr_assert_eq(jint(u, "vv"), OTA_VALID_ALL & ~OTA_VALID_DEPS);
  cr_assert(json_is_array(json_object_get(j, "f")));
  cr_assert(json_is_object(json_object_get(j, "v")));
  json_decref(j);
  cr_assert_eq(hello_flags(&d), 0);

  static const uint8_t order[] = {3, 1, 2};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(ota(&d, "0.6.2", OTA_FN_SYSTEM, order[i]), 0, "s/%u",
                 order[i]);
    cr_assert_eq(d.npending, 1);
    ota_boot_result_t r;
    cr_assert_eq(ota_device_boot(&d, OTA_RESET_UPDATE, &r), 0);
    cr_assert_eq(r.applied, 1);
    cr_assert_eq(d.npending, 0);
    cr_assert_eq(d.ota_flashed, 1);
    cr_assert_eq(hello_flags(&d) & 0x01, 0x01);
    cr_assert(has_event(&d, "spark/device/last_reset", "update"));
    ota_device_on_server_hello(&d);
    cr_assert_eq(hello_flags(&d) & 0x01, 0);
    cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_S1 + order[i] - 1), 108);
    cr_assert_eq(r.state, i < 2 ? OTA_DEV_SAFE_MODE : OTA_DEV_RUNNING_APP,
                 "after s/%u: %s", order[i], r.why);
  }
  cr_assert_str_eq(ota_device_release_name(&d), "0.6.2");
  cr_assert_not(has_event(&d, "spark/device/safemode", NULL));
  j = describe(&d, 1);
  cr_assert_eq(jint(dmod(j, 'u', 1), "vv"), OTA_VALID_ALL);
  json_decref(j);
  free(app.buf);
  ota_device_free(&d);
}

/* A user app needing a newer system is accepted by OTA (dependencies of user
 * modules are optional at UpdateDone) and the next boot is safe mode. */
Test(device, user_app_ota_then_safe_mode) {
  ota_device_t d;
  img_t old = user_app(105, 0xFFFF, 4), newer = user_app(108, 0xFFFF, 5);
  provision(&d, "0.6.1", &old);
  cr_assert_eq(boot(&d, OTA_RESET_POWER_DOWN), OTA_DEV_RUNNING_APP);
  cr_assert_eq(ota_device_verify_staged(&d, newer.buf, newer.len, NULL, 0), 0);
  cr_assert_eq(ota_device_queue_staged(&d, newer.buf, newer.len), 0);
  cr_assert_eq(d.npending, 1);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_USER), 4, "not yet");
  cr_assert_eq(boot(&d, OTA_RESET_UPDATE), OTA_DEV_SAFE_MODE);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_USER), 5);
  cr_assert(has_event(&d, "spark/device/safemode", ""));
  free(old.buf);
  free(newer.buf);
  ota_device_free(&d);
}

/* Out of dependency order: s/1 of 0.6.2 needs s/3 >= 108. */
Test(device, system_dependency_refused) {
  ota_device_t d;
  provision(&d, "0.6.1", NULL);
  cr_assert_eq(boot(&d, OTA_RESET_POWER_DOWN), OTA_DEV_NO_APP);
  int rc = ota(&d, "0.6.2", OTA_FN_SYSTEM, 1);
  cr_assert_eq(rc, OTA_EDEPFAIL);
  cr_assert_eq(ota_device_error_code(rc), -1340);
  cr_assert_eq(d.npending, 0);
  /* ... but it holds once s/3 is queued ("after applying") */
  cr_assert_eq(ota(&d, "0.6.2", OTA_FN_SYSTEM, 3), 0);
  cr_assert_eq(ota(&d, "0.6.2", OTA_FN_SYSTEM, 1), 0);
  cr_assert_eq(d.npending, 2);
  cr_assert_eq(boot(&d, OTA_RESET_UPDATE), OTA_DEV_NO_APP);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_S1), 108);
  ota_device_free(&d);
}

/* ---- the 0.5.3 rule
 * ------------------------------------------------------------ */

Test(device, ota_051_to_060_hard_faults_then_dfu_recovers) {
  ota_device_t d;
  img_t app = user_app(10, 10, 3); /* old tinker: product id 10 */
  provision(&d, "0.5.1", &app);
  cr_assert_eq(boot(&d, OTA_RESET_POWER_DOWN), OTA_DEV_RUNNING_APP);
  uint8_t h[OTA_HELLO_LEN];
  ota_device_hello_payload(&d, h);
  cr_assert_eq((h[0] << 8) | h[1], 10);

  /* part1 (s/3) rejected: no s/3 bounds in a 0.5.1 HAL */
  int rc = ota(&d, "0.6.0", OTA_FN_SYSTEM, 3);
  cr_assert_eq(rc, OTA_EADDR);
  cr_assert_eq(ota_device_error_code(rc), -1350);
  cr_assert_eq(d.npending, 0);
  /* part2 (s/1 v102 -> s/3) accepted: an unknown s/3 counts as met */
  cr_assert_eq(ota(&d, "0.6.0", OTA_FN_SYSTEM, 1), 0);
  cr_assert_eq(boot(&d, OTA_RESET_UPDATE), OTA_DEV_RUNNING_APP);
  /* part3 (s/2 v102) accepted */
  cr_assert_eq(ota(&d, "0.6.0", OTA_FN_SYSTEM, 2), 0);
  cr_assert_eq(boot(&d, OTA_RESET_UPDATE), OTA_DEV_HARD_FAULT_LOOP);
  cr_assert_not(ota_device_online(&d));
  cr_assert_eq(ota_device_handshake_events(&d, NULL, 0), 0);
  cr_assert_eq(d.last_reset, OTA_RESET_PANIC);
  img_t s3 = part("0.6.0", OTA_FN_SYSTEM, 3);
  cr_assert_eq(ota_device_verify_staged(&d, s3.buf, s3.len, NULL, 0),
               OTA_ESTATE, "no OTA in a hard-fault loop");
  cr_assert_eq(boot(&d, OTA_RESET_PANIC), OTA_DEV_HARD_FAULT_LOOP);

  /* DFU over USB: system-part1 (s/3) */
  cr_assert_eq(ota_device_recover(&d, s3.buf, s3.len), 0);
  ota_boot_result_t r;
  cr_assert_eq(ota_device_boot(&d, OTA_RESET_PIN, &r), 0);
  cr_assert_eq(r.state, OTA_DEV_RUNNING_APP, "%s", r.why);
  cr_assert_eq(r.bootloader_reflashed, 1);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_BOOT), 8);
  cr_assert_str_eq(ota_device_release_name(&d), "0.6.0");
  free(s3.buf);
  free(app.buf);
  ota_device_free(&d);
}

Test(device, both_parts_queued_then_one_boot_hard_faults) {
  ota_device_t d;
  provision(&d, "0.5.1", NULL);
  boot(&d, OTA_RESET_POWER_DOWN);
  cr_assert_eq(ota(&d, "0.6.0", OTA_FN_SYSTEM, 1), 0);
  cr_assert_eq(ota(&d, "0.6.0", OTA_FN_SYSTEM, 2), 0);
  cr_assert_eq(boot(&d, OTA_RESET_UPDATE), OTA_DEV_HARD_FAULT_LOOP);
  ota_device_free(&d);
}

Test(device, stepping_stone_048_053_062) {
  ota_device_t d;
  img_t app = user_app(10, 10, 3);
  provision(&d, "0.4.8", &app);
  boot(&d, OTA_RESET_POWER_DOWN);
  cr_assert_eq(ota(&d, "0.6.2", OTA_FN_SYSTEM, 3), OTA_EADDR);
  cr_assert_eq(ota(&d, "0.5.3", OTA_FN_SYSTEM, 2), OTA_EDEPFAIL,
               "s/2 21 needs s/1 21 first");
  static const struct {
    const char *rel;
    uint8_t n;
  } steps[] = {
      {"0.5.3", 1}, {"0.5.3", 2}, {"0.6.2", 3}, {"0.6.2", 1}, {"0.6.2", 2}};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    cr_assert_eq(ota(&d, steps[i].rel, OTA_FN_SYSTEM, steps[i].n), 0,
                 "step %zu", i);
    cr_assert_eq(boot(&d, OTA_RESET_UPDATE), OTA_DEV_RUNNING_APP, "step %zu",
                 i);
  }
  cr_assert_str_eq(ota_device_release_name(&d), "0.6.2");
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_BOOT), 11,
               "s/3 108 brought bootloader 11");
  free(app.buf);
  ota_device_free(&d);
}

/* 0.6.4 -> 0.7.0: s/3 207 needs s/2 >= 110; s/2 207 needs b >= 101, which the
 * bootloader embedded in s/3 207 supplies at boot. */
Test(device, to_070_bootloader_upgrade_and_downgrade) {
  ota_device_t d;
  provision(&d, "0.6.2", NULL);
  boot(&d, OTA_RESET_POWER_DOWN);
  cr_assert_eq(ota(&d, "0.7.0", OTA_FN_SYSTEM, 3), OTA_EDEPFAIL);
  cr_assert_eq(ota_device_provision(&d, "0.6.4", NULL, NULL, NULL, 0), 0);
  cr_assert_eq(d.state, OTA_DEV_OFF, "re-provisioning powers off");
  boot(&d, OTA_RESET_POWER_DOWN);
  cr_assert_eq(ota(&d, "0.7.0", OTA_FN_SYSTEM, 3), 0);
  ota_boot_result_t r;
  ota_device_boot(&d, OTA_RESET_UPDATE, &r);
  cr_assert_eq(r.bootloader_reflashed, 1);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_BOOT), 101);
  cr_assert_eq(ota(&d, "0.7.0", OTA_FN_SYSTEM, 1), 0);
  boot(&d, OTA_RESET_UPDATE);
  cr_assert_eq(ota(&d, "0.7.0", OTA_FN_SYSTEM, 2), 0);
  boot(&d, OTA_RESET_UPDATE);
  cr_assert_str_eq(ota_device_release_name(&d), "0.7.0");
  /* DFU back to 0.6.4's s/3: 0.6.x downgrades a >= 100 bootloader */
  img_t s3 = part("0.6.4", OTA_FN_SYSTEM, 3);
  cr_assert_eq(ota_device_recover(&d, s3.buf, s3.len), 0);
  ota_device_boot(&d, OTA_RESET_PIN, &r);
  cr_assert_eq(r.bootloader_reflashed, -1);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_BOOT), 11);
  free(s3.buf);
  ota_device_free(&d);
}

/* ---- rejected images
 * ----------------------------------------------------------- */

typedef enum {
  MUT_PLATFORM,
  MUT_TRUNCATE,
  MUT_CRC,
  MUT_SHA,
  MUT_ADDRESS,
  MUT_TOOBIG
} mut_t;

typedef struct {
  mut_t mut;
  int err;
  int code;
} rej_case_t;

static rej_case_t rej_cases[] = {
    {MUT_PLATFORM, OTA_EPLATFORM, -1360}, {MUT_TRUNCATE, OTA_ETRUNC, -1370},
    {MUT_CRC, OTA_ECRC, -1330},           {MUT_SHA, OTA_ESHA, -1330},
    {MUT_ADDRESS, OTA_EADDR, -1350},      {MUT_TOOBIG, OTA_ETOOBIG, -1350},
};

ParameterizedTestParameters(device, rejected) {
  return cr_make_param_array(rej_case_t, rej_cases,
                             sizeof rej_cases / sizeof rej_cases[0]);
}

ParameterizedTest(rej_case_t *c, device, rejected) {
  ota_device_t d;
  provision(&d, "0.6.1", NULL);
  boot(&d, OTA_RESET_POWER_DOWN);
  ota_module_spec_t sp;
  ota_module_spec_init(&sp, OTA_FN_USER, 1, 4);
  sp.size = 4096;
  sp.deps[0] = ref(OTA_FN_SYSTEM, 2, 105);
  size_t cap = 200 * 1024, len;
  uint8_t *buf = malloc(cap);
  if (c->mut == MUT_PLATFORM)
    sp.platform = 6;
  if (c->mut == MUT_ADDRESS)
    sp.start = OTA_ADDR_SYSTEM1 + 0x1000;
  if (c->mut == MUT_TOOBIG)
    sp.size = OTA_STAGING_SIZE + 1024;
  cr_assert_eq(ota_module_build(&sp, buf, cap, &len), 0);
  if (c->mut == MUT_TRUNCATE)
    len -= 700;
  if (c->mut == MUT_CRC)
    buf[100] ^= 1;
  if (c->mut == MUT_SHA) {
    buf[100] ^= 1;
    ota_module_refresh_crc(buf, len);
  }
  char why[200] = "";
  int rc = ota_device_verify_staged(&d, buf, len, why, sizeof why);
  cr_assert_eq(rc, c->err, "got %s (%s)", ota_strerror_name(rc), why);
  cr_assert_eq(ota_device_error_code(rc), c->code);
  cr_assert_eq(ota_device_queue_staged(&d, buf, len), c->err);
  cr_assert_eq(d.npending, 0, "nothing half-queued");
  free(buf);
  ota_device_free(&d);
}

Test(device, bootloader_written_at_once) {
  ota_device_t d;
  provision(&d, "0.6.1", NULL);
  boot(&d, OTA_RESET_POWER_DOWN);
  ota_module_spec_t sp;
  ota_module_spec_init(&sp, OTA_FN_BOOTLOADER, 0, 12);
  sp.size = 15664;
  uint8_t *buf = malloc(sp.size);
  size_t len;
  cr_assert_eq(ota_module_build(&sp, buf, sp.size, &len), 0);
  cr_assert_eq(ota_device_queue_staged(&d, buf, len), 0);
  cr_assert_eq(d.npending, 0);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_BOOT), 12);
  cr_assert_eq(memcmp(d.slot[OTA_SLOT_BOOT].buf, buf, len), 0);
  /* newer than s/3's embedded 11, below 100: kept at boot */
  ota_boot_result_t r;
  ota_device_boot(&d, OTA_RESET_UPDATE, &r);
  cr_assert_eq(r.bootloader_reflashed, 0);
  cr_assert_eq(r.applied, 0);
  cr_assert_eq(ota_device_slot_version(&d, OTA_SLOT_BOOT), 12);
  /* 0.5.x cannot take a bootloader by OTA */
  cr_assert_eq(ota_device_provision(&d, "0.5.3", NULL, NULL, NULL, 0), 0);
  boot(&d, OTA_RESET_POWER_DOWN);
  cr_assert_eq(ota_device_verify_staged(&d, buf, len, NULL, 0),
               OTA_EUNSUPPORTED);
  free(buf);
  ota_device_free(&d);
}

Test(device, queue_holds_five_and_replaces_same_slot) {
  ota_device_t d;
  provision(&d, "0.6.1", NULL);
  boot(&d, OTA_RESET_POWER_DOWN);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(ota(&d, "0.6.2", OTA_FN_SYSTEM, 3), 0);
  cr_assert_eq(d.npending, 1);
  ota_device_free(&d);
}

/* ---- Hello, describe forms, update result
 * -------------------------------------- */

Test(device, hello_payload_and_release_flags) {
  ota_device_t d;
  img_t app = user_app(2302, 0x1234, 7);
  provision(&d, "2.3.1", &app);
  boot(&d, OTA_RESET_POWER_DOWN);
  uint8_t h[OTA_HELLO_LEN];
  cr_assert_eq(ota_device_hello_payload(&d, h), 0);
  cr_assert_eq((h[0] << 8) | h[1], 0x1234);
  cr_assert_eq((h[2] << 8) | h[3], 3);
  cr_assert_eq(h[4], 0);
  cr_assert_eq(h[5], rels[cat.nreleases - 1].behaviour.hello_flags);
  cr_assert_eq((h[6] << 8) | h[7], 10);
  cr_assert_eq((h[8] << 8) | h[9], 12);
  cr_assert_eq(memcmp(h + 10, devid, 12), 0);
  cr_assert(has_event(&d, "particle/device/updates/enabled", "true"));
  ota_device_free(&d);
  provision(&d, "0.6.1", NULL); /* after ota_device_free */
  boot(&d, OTA_RESET_POWER_DOWN);
  ota_device_hello_payload(&d, h);
  cr_assert_eq((h[0] << 8) | h[1], 0xFFFF, "no app: no product");
  cr_assert_not(has_event(&d, "particle/device/updates/enabled", NULL));
  free(app.buf);
  ota_device_free(&d);
}

Test(device, describe_flags_and_buffer) {
  ota_device_t d;
  provision(&d, "0.6.1", NULL);
  boot(&d, OTA_RESET_POWER_DOWN);
  json_t *j = describe(&d, 2);
  cr_assert_eq(json_object_size(j), 2);
  json_decref(j);
  j = describe(&d, 1);
  cr_assert_null(json_object_get(j, "f"));
  /* 0.6.x lists the empty user and factory slots with d:[] only */
  size_t i, empty = 0;
  json_t *m;
  json_array_foreach(json_object_get(j, "m"), i, m) {
    if (!json_object_get(m, "f")) {
      empty++;
      cr_assert_eq(json_array_size(json_object_get(m, "d")), 0);
      cr_assert_null(json_object_get(m, "v"));
    }
  }
  cr_assert_eq(empty, 2);
  json_decref(j);
  char small[40];
  size_t len;
  cr_assert_eq(ota_device_describe_json(&d, 1, small, sizeof small, &len),
               OTA_ENOBUFS);
  cr_assert_gt(len, sizeof small);
  cr_assert_eq(ota_device_describe_json(&d, 4, small, sizeof small, &len),
               OTA_EINVAL);
  ota_device_free(&d);
}

typedef struct {
  char rel[16];
  int err;
  char want[48]; /* prefix of the payload */
} upd_case_t;

static upd_case_t upd_cases[] = {
    {"0.5.3", 0, ""},
    {"0.6.2", 0, "{\"r\":\"ok\",\"u\":{"},
    {"0.6.2", OTA_EDEPFAIL, "{\"r\":\"error\",\"u\":{"},
    {"2.3.1", 0, "{\"r\":0}"},
    {"2.3.1", OTA_EPLATFORM, "{\"r\":-1360}"},
};

ParameterizedTestParameters(device, update_result) {
  return cr_make_param_array(upd_case_t, upd_cases,
                             sizeof upd_cases / sizeof upd_cases[0]);
}

ParameterizedTest(upd_case_t *c, device, update_result) {
  ota_device_t d;
  provision(&d, c->rel, NULL);
  boot(&d, OTA_RESET_POWER_DOWN);
  img_t im = user_app(108, 0xFFFF, 4);
  char buf[1024];
  size_t len;
  cr_assert_eq(ota_device_update_result_json(&d, im.buf, im.len, c->err, buf,
                                             sizeof buf, &len),
               0);
  cr_assert_eq(strncmp(buf, c->want, strlen(c->want)), 0, "%s", buf);
  if (len) {
    json_t *j = json_loads(buf, 0, NULL);
    cr_assert_not_null(j, "%s", buf);
    json_t *u = json_object_get(j, "u");
    if (u) {
      cr_assert_eq(jint(u, "p"), 10);
      cr_assert_eq(jint(u, "v"), 4);
      cr_assert_eq(jint(u, "vv") == OTA_VALID_ALL, c->err == 0);
    }
    json_decref(j);
  }
  free(im.buf);
  ota_device_free(&d);
}

/* ---- persistence
 * ---------------------------------------------------------------- */

Test(device, save_load_round_trip) {
  ota_device_t d, e;
  img_t app = user_app(108, 0xFFFF, 5);
  provision(&d, "0.6.1", &app);
  boot(&d, OTA_RESET_POWER_DOWN);
  cr_assert_eq(ota(&d, "0.6.2", OTA_FN_SYSTEM, 3), 0);
  boot(&d, OTA_RESET_UPDATE);
  cr_assert_eq(ota(&d, "0.6.2", OTA_FN_SYSTEM, 1), 0); /* left queued */
  ota_device_request_safe_mode(&d);
  size_t need;
  cr_assert_eq(ota_device_save(&d, NULL, 0, &need), OTA_ENOBUFS);
  uint8_t *blob = malloc(need);
  size_t len;
  cr_assert_eq(ota_device_save(&d, blob, need, &len), 0);
  cr_assert_eq(len, need);

  ota_device_init(&e, NULL, NULL);
  cr_assert_eq(ota_device_load(&e, &cat, blob, len), 0);
  cr_assert_eq(memcmp(e.id, d.id, 12), 0);
  cr_assert_str_eq(e.imei, d.imei);
  cr_assert_str_eq(e.iccid, d.iccid);
  cr_assert_eq(e.state, d.state);
  cr_assert_eq(e.last_reset, d.last_reset);
  cr_assert_eq(e.ota_flashed, 1);
  cr_assert_eq(e.safe_mode_request, 1);
  cr_assert_eq(e.boots, d.boots);
  for (int s = 0; s < OTA_SLOT_COUNT; s++) {
    cr_assert_eq(e.slot[s].len, d.slot[s].len, "slot %d", s);
    if (d.slot[s].len)
      cr_assert_eq(memcmp(e.slot[s].buf, d.slot[s].buf, d.slot[s].len), 0);
    cr_assert_eq(e.check[s].vv, d.check[s].vv);
  }
  cr_assert_eq(e.npending, 1);
  cr_assert_eq(e.pending[0].dest, OTA_ADDR_SYSTEM1);
  cr_assert_eq(memcmp(e.pending[0].buf, d.pending[0].buf, d.pending[0].len), 0);
  char a[4096], b[4096];
  ota_device_describe_json(&d, 3, a, sizeof a, NULL);
  ota_device_describe_json(&e, 3, b, sizeof b, NULL);
  cr_assert_str_eq(a, b);
  /* the restarted process carries on: the queued s/1 lands */
  cr_assert_eq(boot(&e, OTA_RESET_UPDATE), OTA_DEV_SAFE_MODE);
  cr_assert_eq(ota_device_slot_version(&e, OTA_SLOT_S1), 108);

  /* damage is detected, and leaves an empty device */
  blob[len / 2] ^= 0x40;
  cr_assert_eq(ota_device_load(&e, &cat, blob, len), OTA_ECRC);
  cr_assert_null(e.slot[OTA_SLOT_S1].buf);
  blob[len / 2] ^= 0x40;
  cr_assert_neq(ota_device_load(&e, &cat, blob, len - 9), 0);
  cr_assert_eq(ota_device_load(&e, &cat, blob, 10), OTA_EPARSE);
  free(blob);
  free(app.buf);
  ota_device_free(&e);
  ota_device_free(&d);
}

/* ---- the same rules on the real catalogue (fixtures/catalog/electron.json) --
 */

static void setup_fixture(void) {
  ota_log_set(quiet, NULL, OTA_LOG_DEBUG);
  char err[200] = "";
  ota_catalog_init(&cat);
  int rc = ota_catalog_load_file(
      &cat, OTALAB_SOURCE_DIR "/fixtures/catalog/electron.json", err,
      sizeof err);
  cr_assert_eq(rc, 0, "catalogue: %s", err);
}

static void teardown_fixture(void) {
  ota_catalog_free(&cat);
}

TestSuite(device_catalog, .init = setup_fixture, .fini = teardown_fixture);

/* Every release provisions, boots and checks healthy with an app built for it.
 */
Test(device_catalog, every_release_boots_healthy) {
  cr_assert_gt(cat.nreleases, 20);
  for (size_t i = 0; i < cat.nreleases; i++) {
    const ota_cat_release_t *r = &cat.releases[i];
    ota_device_t d;
    img_t app = user_app(r->system_version, 0xFFFF, 3);
    provision(&d, r->name, &app);
    ota_boot_result_t br;
    ota_device_boot(&d, OTA_RESET_POWER_DOWN, &br);
    cr_assert_eq(br.state, OTA_DEV_RUNNING_APP, "%s: %s", r->name, br.why);
    cr_assert_str_eq(ota_device_release_name(&d), r->name);
    cr_assert_eq(br.bootloader_reflashed, 0, "%s: own bootloader kept",
                 r->name);
    for (int s = 0; s < OTA_SLOT_FACTORY; s++)
      cr_assert_eq(d.check[s].vv,
                   s == OTA_SLOT_S3 && r->nparts == 2 ? 0 : OTA_VALID_ALL,
                   "%s slot %d vv 0x%02x", r->name, s, d.check[s].vv);
    uint8_t h[OTA_HELLO_LEN];
    ota_device_hello_payload(&d, h);
    cr_assert_eq(h[5], r->behaviour.hello_flags, "%s hello flags", r->name);
    free(app.buf);
    ota_device_free(&d);
  }
}

typedef struct {
  char from[16];
  char to[16];
  /* system parts in delivery order, by file (part1, part2, part3) */
  int expect_state; /* after the last part */
} heal_case_t;

static heal_case_t heal_cases[] = {
    {"0.6.1", "0.6.2", OTA_DEV_RUNNING_APP},
    {"0.6.4", "0.7.0", OTA_DEV_RUNNING_APP},
    {"1.5.2", "2.3.1", OTA_DEV_RUNNING_APP},
    {"0.5.3", "0.6.0", OTA_DEV_RUNNING_APP},
    {"0.5.1", "0.6.0", OTA_DEV_HARD_FAULT_LOOP},
};

ParameterizedTestParameters(device_catalog, heal_in_file_order) {
  return cr_make_param_array(heal_case_t, heal_cases,
                             sizeof heal_cases / sizeof heal_cases[0]);
}

/* Deliver the target's system parts in file order, one per boot, with a user
 * app built for the target: safe mode until the last part (PROTOCOL 5.2, 7). */
ParameterizedTest(heal_case_t *c, device_catalog, heal_in_file_order) {
  const ota_cat_release_t *to = ota_catalog_find(&cat, c->to);
  cr_assert_not_null(to);
  ota_device_t d;
  img_t app = user_app(to->system_version, 0xFFFF, 3);
  provision(&d, c->from, &app);
  cr_assert_eq(boot(&d, OTA_RESET_POWER_DOWN), OTA_DEV_SAFE_MODE);
  ota_boot_result_t br = {0};
  int accepted = 0;
  for (int i = 0; i < to->nmodules; i++) {
    const ota_cat_module_t *m = &to->modules[i];
    if (m->id.func != OTA_FN_SYSTEM)
      continue;
    img_t im;
    cr_assert_eq(ota_device_build_module(NULL, m, &im.buf, &im.len), 0);
    char why[200];
    int rc = ota_device_verify_staged(&d, im.buf, im.len, why, sizeof why);
    if (rc == 0) {
      cr_assert_eq(ota_device_queue_staged(&d, im.buf, im.len), 0);
      accepted++;
      cr_assert_eq(ota_device_boot(&d, OTA_RESET_UPDATE, &br), 0);
    } else {
      /* only the 0.5.1 device refuses: s/3 is unknown to its HAL */
      cr_assert_eq(c->expect_state, OTA_DEV_HARD_FAULT_LOOP, "%s: %s", m->file,
                   why);
      cr_assert_eq(m->id.index, 3);
    }
    free(im.buf);
    if (br.state == OTA_DEV_HARD_FAULT_LOOP)
      break;
  }
  cr_assert_eq(br.state, c->expect_state, "%s -> %s: %s", c->from, c->to,
               br.why);
  if (c->expect_state == OTA_DEV_RUNNING_APP) {
    cr_assert_eq(accepted, to->nparts);
    cr_assert_str_eq(ota_device_release_name(&d), to->name);
    cr_assert_geq(ota_device_slot_version(&d, OTA_SLOT_BOOT),
                  to->bootloader_version);
  }
  free(app.buf);
  ota_device_free(&d);
}
