/* Tests of the Safe Mode Healer against the simulated Electron (core/device)
 * and the real release catalogue: one module per reboot, the 0.5.3 rule,
 * developer devices, give-up after N failed OTAs (PROTOCOL.md 3.3, 5.2, 6, 7,
 * 9). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/describe.h"
#include "otalab/device.h"
#include "otalab/err.h"
#include "otalab/healer.h"
#include "otalab/log.h"
#include "otalab/module.h"

#define CATALOG OTALAB_SOURCE_DIR "/fixtures/catalog/electron.json"

static ota_catalog_t cat;
static ota_outbox_t ob;
static ota_healer_t h;
static ota_device_t dev;
static char logs[16384];

static void sink(void *ud, ota_log_level_t l, const char *line) {
  (void)ud;
  (void)l;
  size_t n = strlen(logs);
  if (n + strlen(line) + 2 < sizeof logs)
    snprintf(logs + n, sizeof logs - n, "%s\n", line);
}

static void setup(void) {
  char err[256] = "";
  ota_catalog_init(&cat);
  int rc = ota_catalog_load_file(&cat, CATALOG, err, sizeof err);
  cr_assert_eq(rc, 0, "load %s: %s (%s)", CATALOG, ota_strerror(rc), err);
  ota_outbox_init(&ob);
  logs[0] = 0;
  ota_log_set(sink, NULL, OTA_LOG_INFO);
}

static void teardown(void) {
  ota_device_free(&dev);
  ota_healer_free(&h);
  ota_healer_free(&h); /* safe twice */
  ota_catalog_free(&cat);
  ota_log_set(ota_log_stderr, NULL, OTA_LOG_WARN);
}

/* A device on `release` running a user app that needs s/2 >= need. */
static void make_device(const char *release, uint16_t need) {
  static const uint8_t id[OTA_DEVICE_ID_LEN] = {0x3c, 1, 2, 3, 4,  5,
                                                6,    7, 8, 9, 10, 11};
  ota_module_spec_t sp;
  uint8_t app[8192];
  size_t len = 0;
  ota_module_spec_init(&sp, OTA_FN_USER, 1, 5);
  sp.size = 5776;
  sp.deps[0].func = OTA_FN_SYSTEM;
  sp.deps[0].index = 2;
  sp.deps[0].version = need;
  cr_assert_eq(ota_module_build(&sp, app, sizeof app, &len), 0);
  ota_device_init(&dev, &cat, id);
  cr_assert_eq(ota_device_provision(&dev, release, NULL, NULL, app, len), 0,
               "provision %s", release);
  ota_boot_result_t r;
  cr_assert_eq(ota_device_boot(&dev, OTA_RESET_POWER_DOWN, &r), 0);
}

/* The device's describe, parsed (text kept in `buf`). */
static void describe(char *buf, size_t cap, ota_describe_t *d) {
  size_t len;
  cr_assert_eq(ota_device_describe_json(&dev, 1, buf, cap, &len), 0);
  int rc = ota_describe_parse(buf, len, d);
  cr_assert_eq(rc, 0, "device describe rejected: %s: %s", d->err, buf);
}

/* Effects of one call, sorted out. */
typedef struct {
  int nsend, nsafe, nupdating, ndone, nfailed, nother;
  ota_heal_effect_t send;
  char updating[16], reason[200];
  size_t safe_len;
  char safe[4096];
} fx_t;

static fx_t collect(void) {
  fx_t f;
  memset(&f, 0, sizeof f);
  for (size_t i = 0; i < ob.n; i++) {
    ota_heal_effect_t e;
    cr_assert_eq(ota_healer_effect_get(&ob, &ob.fx[i], &e), 0, "effect %zu", i);
    if (e.kind == OTA_HEAL_FX_SEND_MODULE) {
      f.nsend++;
      f.send = e;
      continue;
    }
    char data[4096];
    cr_assert_lt(e.data_len, sizeof data);
    memcpy(data, e.data ? e.data : "", e.data_len);
    data[e.data_len] = 0;
    if (!strcmp(e.name, "spark/status/safe-mode")) {
      f.nsafe++;
      f.safe_len = e.data_len;
      memcpy(f.safe, data, e.data_len + 1);
    } else if (!strcmp(e.name, "spark/safe-mode-updater/updating")) {
      f.nupdating++;
      snprintf(f.updating, sizeof f.updating, "%s", data);
    } else if (!strcmp(e.name, "otalab/healer/done")) {
      f.ndone++;
      snprintf(f.reason, sizeof f.reason, "%s", data);
    } else if (!strcmp(e.name, "otalab/healer/failed")) {
      f.nfailed++;
      snprintf(f.reason, sizeof f.reason, "%s", data);
    } else {
      f.nother++;
    }
  }
  return f;
}

/* ---- closed loop: healer + device, table-driven ---------------------------
 */

typedef struct {
  const char *name;
  const char *from;      /* release the device runs */
  uint16_t app_needs;    /* the user app's s/2 dependency */
  bool product;          /* false: developer device */
  uint8_t max_failures;  /* 0: default */
  const char *fail_mod;  /* "s/1 v108": its OTAs fail ... */
  int fail_times;        /* ... this many times */
  const char *want;      /* modules sent, in order */
  ota_heal_state_t end;  /* final healer state */
  const char *reason;    /* substring of the done/failed data, or NULL */
  ota_dev_state_t state; /* final device state */
} loop_case_t;

static const loop_case_t loop_cases[] = {
    {"0.6.1 app 0.6.2", "0.6.1", 108, true, 0, NULL, 0,
     "s/3 v108,s/1 v108,s/2 v108", OTA_HEAL_DONE, "3 modules",
     OTA_DEV_RUNNING_APP},
    {"0.4.8 app 0.6.2 via 0.5.3", "0.4.8-rc.6", 108, true, 0, NULL, 0,
     "s/1 v21,s/2 v21,s/3 v108,s/1 v108,s/2 v108", OTA_HEAL_DONE, "system v108",
     OTA_DEV_RUNNING_APP},
    {"0.5.3 app 0.6.2", "0.5.3", 108, true, 0, NULL, 0,
     "s/3 v108,s/1 v108,s/2 v108", OTA_HEAL_DONE, NULL, OTA_DEV_RUNNING_APP},
    {"0.6.1 app 0.7.0 via 0.6.4", "0.6.1", 207, true, 0, NULL, 0,
     "s/3 v110,s/1 v110,s/2 v110,s/3 v207,s/1 v207,s/2 v207", OTA_HEAL_DONE,
     "system v207", OTA_DEV_RUNNING_APP},
    {"1.4.4 app 2.3.1", "1.4.4", 2302, true, 0, NULL, 0,
     "s/3 v2302,s/1 v2302,s/2 v2302", OTA_HEAL_DONE, NULL, OTA_DEV_RUNNING_APP},
    {"0.4.8 app 2.3.1", "0.4.8-rc.6", 2302, true, 0, NULL, 0,
     "s/1 v21,s/2 v21,s/3 v110,s/1 v110,s/2 v110,s/3 v2302,s/1 v2302,"
     "s/2 v2302",
     OTA_HEAL_DONE, "8 modules", OTA_DEV_RUNNING_APP},
    {"developer device", "0.6.1", 108, false, 0, NULL, 0, "", OTA_HEAL_DISABLED,
     NULL, OTA_DEV_SAFE_MODE},
    {"not in safe mode", "0.6.1", 105, true, 0, NULL, 0, "", OTA_HEAL_IDLE,
     NULL, OTA_DEV_RUNNING_APP},
    {"no release", "0.6.1", 5000, true, 0, NULL, 0, "", OTA_HEAL_FAILED,
     "no release in the catalogue satisfies u/1 needs s/2 v5000",
     OTA_DEV_SAFE_MODE},
    {"gives up after 3", "0.6.1", 108, true, 0, "s/1 v108", 3,
     "s/3 v108,s/1 v108,s/1 v108,s/1 v108", OTA_HEAL_FAILED,
     "gave up after 3 failed OTAs of s/1 v108 (last: injected",
     OTA_DEV_SAFE_MODE},
    {"2 failures of 3", "0.6.1", 108, true, 3, "s/1 v108", 2,
     "s/3 v108,s/1 v108,s/1 v108,s/1 v108,s/2 v108", OTA_HEAL_DONE, NULL,
     OTA_DEV_RUNNING_APP},
    {"max 1", "0.6.1", 108, true, 1, "s/3 v108", 1, "s/3 v108", OTA_HEAL_FAILED,
     "gave up after 1 failed OTA of s/3 v108", OTA_DEV_SAFE_MODE},
    {"max 5, 4 failures", "0.4.8-rc.6", 108, true, 5, "s/2 v21", 4,
     "s/1 v21,s/2 v21,s/2 v21,s/2 v21,s/2 v21,s/2 v21,s/3 v108,s/1 v108,"
     "s/2 v108",
     OTA_HEAL_DONE, NULL, OTA_DEV_RUNNING_APP},
};

/* Criterion may run each case in a fresh process: parameters are indexes. */
static int idx[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

ParameterizedTestParameters(healer, loop) {
  size_t n = sizeof loop_cases / sizeof loop_cases[0];
  cr_assert_leq(n, sizeof idx / sizeof idx[0]);
  return cr_make_param_array(int, idx, n);
}

ParameterizedTest(int *ci, healer, loop, .init = setup, .fini = teardown) {
  const loop_case_t *c = &loop_cases[*ci];
  static char buf[4096];
  char seq[512] = "", a[24];
  int failures = 0;
  uint64_t now = 1000;
  ota_describe_t d;
  ota_healer_cfg_t cfg;
  ota_healer_config_default(&cfg);
  cr_assert(cfg.product, "product device by default");
  cr_assert_eq(cfg.max_failures, 3);
  cfg.product = c->product;
  if (c->max_failures)
    cfg.max_failures = c->max_failures;
  snprintf(cfg.device, sizeof cfg.device, "dev1");
  ota_healer_init(&h, &cfg, &cat);
  make_device(c->from, c->app_needs);

  for (int round = 0; round < 20; round++) {
    cr_assert(ota_device_online(&dev), "%s: device %s", c->name,
              ota_dev_state_name(dev.state));
    describe(buf, sizeof buf, &d);
    const ota_describe_module_t *s1 = ota_describe_find(&d, OTA_FN_SYSTEM, 1);
    const ota_describe_module_t *s2 = ota_describe_find(&d, OTA_FN_SYSTEM, 2);
    bool safe = ota_describe_in_safe_mode(&d);
    cr_assert_eq(safe, dev.state == OTA_DEV_SAFE_MODE, "%s: %s", c->name, buf);

    ota_outbox_clear(&ob);
    cr_assert_eq(ota_healer_on_describe(&h, &d, now, &ob), 0);
    fx_t f = collect();
    /* spark/status/safe-mode with the describe, whenever it shows safe mode */
    cr_assert_eq(f.nsafe, safe ? 1 : 0, "%s", c->name);
    if (safe)
      cr_assert_str_eq(f.safe, buf);
    cr_assert_eq(f.nother, 0);
    if (!c->product)
      cr_assert_eq(ob.n, (size_t)f.nsafe, "developer: the event only");
    if (!safe && f.ndone == 0)
      cr_assert_eq(ob.n, 0, "%s: no safe mode, no effect", c->name);
    if (f.ndone || f.nfailed)
      cr_assert_not_null(strstr(f.reason, c->reason ? c->reason : ""),
                         "%s: '%s'", c->name, f.reason);
    if (f.nsend == 0)
      break;

    /* one module per reboot, with its updating event */
    cr_assert_eq(f.nsend, 1);
    cr_assert_eq(f.nupdating, 1);
    cr_assert_eq(h.state, OTA_HEAL_SENDING);
    ota_modref_str(&f.send.module, a, sizeof a);
    snprintf(seq + strlen(seq), sizeof seq - strlen(seq), "%s%s",
             seq[0] ? "," : "", a);
    char ix[8];
    snprintf(ix, sizeof ix, "%u", f.send.module.index);
    cr_assert_str_eq(f.updating, ix);

    /* PROTOCOL.md 6.1: never a 0.6.x+ module below 0.5.3-rc.2 */
    const ota_cat_release_t *rel = ota_catalog_find(&cat, f.send.release);
    cr_assert_not_null(rel, "%s", f.send.release);
    if (!s1 || !s2 || s1->version < 19 || s2->version < 19)
      cr_assert_lt(f.send.module.version, 100, "%s: %s to s/1 v%u s/2 v%u",
                   c->name, a, s1 ? s1->version : 0, s2 ? s2->version : 0);
    const ota_cat_module_t *cm =
        ota_release_module(rel, f.send.module.func, f.send.module.index);
    cr_assert_not_null(cm);
    cr_assert_eq(cm->id.version, f.send.module.version);
    cr_assert_eq(f.send.bytes, cm->size);
    cr_assert_not_null(strstr(f.send.file, cm->file), "%s", f.send.file);
    cr_assert_not_null(strstr(f.send.file, rel->name), "%s", f.send.file);

    /* the server's OTA job and the device's reboot */
    now += 30000;
    ota_outbox_clear(&ob);
    if (c->fail_mod && !strcmp(a, c->fail_mod) && failures < c->fail_times) {
      failures++;
      ota_healer_on_ota_result(&h, false, "injected UpdateDone error", now,
                               &ob);
    } else {
      uint8_t *img = NULL;
      size_t len = 0;
      char why[200];
      cr_assert_eq(ota_device_build_module(NULL, cm, &img, &len), 0);
      int rc = ota_device_verify_staged(&dev, img, len, why, sizeof why);
      cr_assert_eq(rc, 0, "%s: device refused %s: %s", c->name, a, why);
      cr_assert_eq(ota_device_queue_staged(&dev, img, len), 0);
      free(img);
      cr_assert_eq(ota_healer_on_ota_result(&h, true, NULL, now, &ob), 0);
    }
    fx_t r = collect();
    if (h.state == OTA_HEAL_FAILED) {
      cr_assert_eq(r.nfailed, 1);
      cr_assert_not_null(strstr(r.reason, c->reason), "%s: '%s'", c->name,
                         r.reason);
      break;
    }
    cr_assert_eq(ob.n, 0, "no effect until the reconnect");
    cr_assert_eq(h.state, OTA_HEAL_WAIT_DESCRIBE);
    ota_boot_result_t br;
    cr_assert_eq(ota_device_boot(&dev, OTA_RESET_UPDATE, &br), 0);
    ota_device_on_server_hello(&dev);
    now += 10000;
  }
  cr_assert_str_eq(seq, c->want, "%s", c->name);
  cr_assert_eq(h.state, c->end, "%s: healer %s (%s)", c->name,
               ota_heal_state_name(h.state), h.reason);
  cr_assert_eq(dev.state, c->state, "%s: device %s", c->name,
               ota_dev_state_name(dev.state));
  if (c->reason)
    cr_assert_not_null(strstr(h.reason, c->reason), "%s: '%s'", c->name,
                       h.reason);
  if (seq[0]) /* the one state change logs OLD => NEW (why) */
    cr_assert_not_null(strstr(logs, "healer dev1: IDLE => SENDING (send "),
                       "%s", logs);
}

/* ---- single behaviours ----------------------------------------------------
 */

/* The healer's own 0.5.3 check: with the catalogue's stepping stone gone the
 * planner would go straight to 0.6.2; the healer refuses. */
Test(healer, refuses_06x_below_053, .init = setup, .fini = teardown) {
  static char buf[4096];
  ota_describe_t d;
  make_device("0.4.8-rc.6", 108);
  snprintf(cat.stepping_stone, sizeof cat.stepping_stone, "9.9.9");
  ota_healer_init(&h, NULL, &cat);
  describe(buf, sizeof buf, &d);
  cr_assert_eq(ota_healer_on_describe(&h, &d, 0, &ob), 0);
  fx_t f = collect();
  cr_assert_eq(f.nsend, 0);
  cr_assert_eq(f.nfailed, 1);
  cr_assert_eq(h.state, OTA_HEAL_FAILED);
  cr_assert_not_null(strstr(f.reason, "0.5.3 rule"), "%s", f.reason);
  cr_assert_not_null(strstr(f.reason, "s/1 v10, s/2 v10 < 19"), "%s", f.reason);
  /* FAILED is sticky: a later describe only reports safe mode */
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_healer_on_describe(&h, &d, 0, &ob), 0);
  f = collect();
  cr_assert_eq(ob.n, 1);
  cr_assert_eq(f.nsafe, 1);
  /* ... until reset */
  snprintf(cat.stepping_stone, sizeof cat.stepping_stone, "0.5.3");
  ota_healer_reset(&h);
  cr_assert_eq(h.state, OTA_HEAL_IDLE);
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_healer_on_describe(&h, &d, 0, &ob), 0);
  f = collect();
  cr_assert_eq(f.nsend, 1);
  cr_assert_eq(f.send.module.version, 21);
}

/* After a failed OTA and no reconnect, the retry timer resends. */
Test(healer, retry_timer, .init = setup, .fini = teardown) {
  static char buf[4096];
  ota_describe_t d;
  ota_healer_cfg_t cfg;
  ota_healer_config_default(&cfg);
  cfg.retry_ms = 5000;
  make_device("0.6.1", 108);
  ota_healer_init(&h, &cfg, &cat);
  cr_assert_eq(ota_healer_next_deadline(&h), UINT64_MAX);
  describe(buf, sizeof buf, &d);
  cr_assert_eq(ota_healer_on_describe(&h, &d, 100, &ob), 0);
  cr_assert_eq(collect().nsend, 1);
  cr_assert_eq(ota_healer_next_deadline(&h), UINT64_MAX, "SENDING: no timer");
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_healer_on_ota_result(&h, false, NULL, 1000, &ob), 0);
  cr_assert_eq(ota_healer_next_deadline(&h), 6000);
  cr_assert_eq(ota_healer_on_timer(&h, 5999, &ob), 0);
  cr_assert_eq(ob.n, 0, "early: nothing");
  cr_assert_eq(ota_healer_on_timer(&h, 6000, &ob), 0);
  fx_t f = collect();
  cr_assert_eq(f.nsend, 1);
  cr_assert_eq(f.send.module.index, 3);
  cr_assert_eq(f.send.module.version, 108);
  cr_assert_eq(h.state, OTA_HEAL_SENDING);
  cr_assert_eq(ota_healer_next_deadline(&h), UINT64_MAX);
  /* after a success there is no timer: the reconnect drives it */
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_healer_on_ota_result(&h, true, NULL, 7000, &ob), 0);
  cr_assert_eq(ota_healer_next_deadline(&h), UINT64_MAX);
  cr_assert_eq(ota_healer_on_timer(&h, UINT64_MAX - 1, &ob), 0);
  cr_assert_eq(ob.n, 0);
}

/* Inputs out of turn. */
Test(healer, out_of_turn, .init = setup, .fini = teardown) {
  static char buf[4096];
  ota_describe_t d;
  make_device("0.6.1", 108);
  ota_healer_init(&h, NULL, &cat);
  cr_assert_eq(ota_healer_on_ota_result(&h, true, NULL, 0, &ob), OTA_ESTATE);
  cr_assert_eq(h.state, OTA_HEAL_IDLE);
  describe(buf, sizeof buf, &d);
  cr_assert_eq(ota_healer_on_describe(&h, &d, 0, &ob), 0);
  cr_assert_eq(h.state, OTA_HEAL_SENDING);
  /* a reconnect while the OTA job runs: reported, nothing sent */
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_healer_on_describe(&h, &d, 0, &ob), 0);
  fx_t f = collect();
  cr_assert_eq(f.nsafe, 1);
  cr_assert_eq(f.nsend, 0);
  cr_assert_eq(h.state, OTA_HEAL_SENDING);
  cr_assert_eq(ota_healer_on_describe(NULL, &d, 0, &ob), OTA_EINVAL);
  cr_assert_eq(ota_healer_on_describe(&h, NULL, 0, &ob), OTA_EINVAL);
  cr_assert_eq(ota_healer_on_ota_result(&h, true, NULL, 0, NULL), OTA_EINVAL);
  cr_assert_str_eq(ota_heal_state_name(OTA_HEAL_WAIT_DESCRIBE),
                   "WAIT_DESCRIBE");
  cr_assert_str_eq(ota_heal_state_name(OTA_HEAL_STATE_COUNT), "?");
}

/* DONE, then a new app needing more: a new round. */
Test(healer, new_round_after_done, .init = setup, .fini = teardown) {
  static char buf[4096];
  ota_describe_t d;
  make_device("0.6.2", 109);
  ota_healer_init(&h, NULL, &cat);
  describe(buf, sizeof buf, &d);
  cr_assert_eq(ota_healer_on_describe(&h, &d, 0, &ob), 0);
  fx_t f = collect();
  cr_assert_eq(f.send.module.version, 109);
  /* pretend the device got all three parts: a healthy 0.6.3 describe */
  static const char healthy[] =
      "{\"p\":10,\"m\":[{\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":"
      "\"1\",\"v\":109,\"d\":[]},{\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"u\","
      "\"n\":\"1\",\"v\":5,\"d\":[{\"f\":\"s\",\"n\":\"1\",\"v\":109}]}]}";
  ota_describe_t ok;
  cr_assert_eq(ota_describe_parse(healthy, strlen(healthy), &ok), 0);
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_healer_on_ota_result(&h, true, NULL, 0, &ob), 0);
  cr_assert_eq(ota_healer_on_describe(&h, &ok, 0, &ob), 0);
  f = collect();
  cr_assert_eq(f.ndone, 1);
  cr_assert_eq(h.state, OTA_HEAL_DONE);
  cr_assert_str_eq(f.reason, "healed: 1 module sent, system v109");
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_healer_on_describe(&h, &ok, 0, &ob), 0);
  cr_assert_eq(ob.n, 0, "healthy again: nothing");
  cr_assert_eq(ota_healer_on_describe(&h, &d, 0, &ob), 0);
  f = collect();
  cr_assert_eq(f.nsend, 1, "safe mode again: a new round");
  cr_assert_eq(h.n_rounds, 2);
}

/* The effect reader accepts only healer effects. */
Test(healer, effect_get, .init = setup, .fini = teardown) {
  ota_fx_t fx;
  ota_heal_effect_t e;
  memset(&fx, 0, sizeof fx);
  fx.kind = OTA_FX_EVENT;
  fx.arg = 2; /* an ota_tx RESULT */
  uint8_t junk[sizeof e] = {0};
  cr_assert_eq(ota_outbox_push(&ob, &fx, junk, sizeof junk), 0);
  cr_assert_eq(ota_healer_effect_get(&ob, &ob.fx[0], &e), OTA_EINVAL);
  fx.arg = OTA_HEAL_FX_EVENT;
  cr_assert_eq(ota_outbox_push(&ob, &fx, junk, 3), 0);
  cr_assert_eq(ota_healer_effect_get(&ob, &ob.fx[1], &e), OTA_EINVAL, "short");
  cr_assert_eq(ota_healer_effect_get(NULL, &ob.fx[1], &e), OTA_EINVAL);
}
