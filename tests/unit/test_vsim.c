/* The virtual-time simulation (core/vsim) and the two session machines it
 * joins (core/dev_sess, core/cloud_sess): heal stories in virtual time. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/err.h"
#include "otalab/module.h"
#include "otalab/msg.h"
#include "otalab/planner.h"
#include "otalab/vnet.h"

#define CATALOG OTALAB_SOURCE_DIR "/fixtures/catalog/electron.json"

static ota_catalog_t cat;

static void setup(void) {
  char err[256];
  ota_catalog_init(&cat);
  cr_assert_eq(ota_catalog_load_file(&cat, CATALOG, err, sizeof err), 0, "%s",
               err);
}
static void teardown(void) {
  ota_catalog_free(&cat);
}

/* A user app whose s/2 dependency is release `rel`'s system version. */
static size_t make_app(const char *rel, uint8_t *buf, size_t cap) {
  const ota_cat_release_t *r = ota_catalog_find(&cat, rel);
  cr_assert_not_null(r);
  ota_module_spec_t spec;
  ota_module_spec_init(&spec, OTA_FN_USER, 1, 6);
  spec.size = 8192;
  spec.deps[0] = (ota_modref_t){OTA_FN_SYSTEM, 2, r->system_version};
  spec.product_id = 10;
  size_t len = 0;
  cr_assert_eq(ota_module_build(&spec, buf, cap, &len), 0);
  return len;
}

typedef struct {
  uint64_t hash, t_done, retrans, bytes;
  bool done;
  char release[24];
  int dev_state;
  uint32_t jobs_ok;
} run_t;

static run_t run(const char *release, const char *link, uint64_t seed,
                 uint32_t product) {
  static uint8_t app[8192];
  size_t al = make_app("0.6.2", app, sizeof app);
  ota_vsim_cfg_t cfg;
  ota_vsim_cfg_default(&cfg);
  cfg.seed = seed;
  ota_vsim_t *vs = ota_vsim_new(&cat, &cfg);
  cr_assert_not_null(vs);
  ota_vsim_dev_spec_t sp = {.app = app, .app_len = al, .product_id = product};
  snprintf(sp.name, sizeof sp.name, "dev");
  snprintf(sp.release, sizeof sp.release, "%s", release);
  char err[128];
  cr_assert_eq(ota_link_parse(link, &cat, &sp.link, err, sizeof err), 0, "%s",
               err);
  cr_assert_geq(ota_vsim_add(vs, &sp), 0);
  ota_vsim_run(vs, 0);
  const ota_vsim_stats_t *st = ota_vsim_stats(vs, 0);
  run_t r = {.hash = ota_vsim_hash(vs),
             .t_done = st->t_done,
             .retrans = st->up[OTA_VB_RETRANS] + st->down[OTA_VB_RETRANS],
             .bytes = ota_vsim_bytes(st),
             .done = st->done,
             .dev_state = ota_vsim_device(vs, 0)->state,
             .jobs_ok = st->jobs_ok};
  snprintf(r.release, sizeof r.release, "%s",
           ota_device_release_name(ota_vsim_device(vs, 0)));
  ota_vsim_destroy(vs);
  return r;
}

/* The planner's heal estimate for a device on `release` with the app. */
static double plan_seconds(const char *release, const char *link) {
  const ota_cat_release_t *rel = ota_catalog_find(&cat, release);
  ota_dev_module_t mods[OTA_PLAN_MAX_MODULES];
  size_t n = ota_plan_device_from_release(rel, mods, OTA_PLAN_MAX_MODULES);
  ota_plan_device_t dev = {
      .modules = mods, .nmodules = n, .platform = 10, .product = 1};
  ota_goal_t goal = {.kind = OTA_GOAL_RELEASE, .release = "0.6.2"};
  static ota_plan_t plan;
  cr_assert_eq(ota_plan_make(&cat, &dev, &goal, NULL, &plan), 0);
  return ota_plan_seconds(&plan.total, ota_catalog_link(&cat, link), NULL);
}

TestSuite(vsim, .init = setup, .fini = teardown);

Test(vsim, heals_061_on_2g_near_the_planner) {
  run_t r = run("0.6.1", "2g", 1, 7);
  cr_assert(r.done, "device never done");
  cr_assert_str_eq(r.release, "0.6.2");
  cr_assert_eq(r.dev_state, OTA_DEV_RUNNING_APP);
  double est = plan_seconds("0.6.1", "2g"), got = (double)r.t_done / 1000.0;
  cr_log_info("0.6.1 -> 0.6.2 on 2g: %.1f s simulated, planner %.1f s, %llu "
              "B, %u jobs",
              got, est, (unsigned long long)r.bytes, r.jobs_ok);
  cr_expect(got > est * 0.8 && got < est * 1.2,
            "simulated %.1f s, planner %.1f s", got, est);
}

Test(vsim, same_seed_same_log_other_seed_differs_with_loss) {
  run_t a = run("0.6.1", "2g,loss=0.05", 7, 7);
  run_t b = run("0.6.1", "2g,loss=0.05", 7, 7);
  run_t c = run("0.6.1", "2g,loss=0.05", 8, 7);
  cr_assert_eq(a.hash, b.hash);
  cr_assert_eq(a.t_done, b.t_done);
  cr_assert_neq(a.hash, c.hash);
}

Test(vsim, heals_048_through_053) {
  run_t r = run("0.4.8", "3g", 3, 7);
  cr_assert(r.done);
  cr_assert_str_eq(r.release, "0.6.2");
  cr_assert_eq(r.dev_state, OTA_DEV_RUNNING_APP);
  cr_assert_geq(r.jobs_ok, 4, "0.5.3's s/1 and s/2 first, then 0.6.2's");
}

Test(vsim, lossy_link_completes_with_retransmissions) {
  run_t r = run("0.6.1", "3g,loss=0.1", 5, 7);
  cr_assert(r.done);
  cr_assert_str_eq(r.release, "0.6.2");
  cr_assert_gt(r.retrans, 0);
}

Test(vsim, developer_device_stays_in_safe_mode) {
  run_t r = run("0.6.1", "lte-m", 1, 0);
  cr_assert(r.done);
  cr_assert_str_eq(r.release, "0.6.1");
  cr_assert_eq(r.dev_state, OTA_DEV_SAFE_MODE);
  cr_assert_eq(r.jobs_ok, 0);
}

/* The device's answers to the cloud's first UpdateDone are lost (drop
 * filter): its 2.04 and its own UpdateDone (Device OS <= 0.7 sends one).
 * The device applies the module and reboots while the cloud still waits in
 * DONE_SENT. Its next Hello must not fail the job: the describe after it
 * shows the module, so the job is DONE and the heal goes on. */
typedef struct {
  int mid;   /* the first UpdateDone's message id, -1 none yet */
  int armed; /* from that UpdateDone to the device's next Hello */
  int drops; /* datagrams dropped */
  unsigned failed, done_after_hello;
} drop_t;

static bool drop_done_reply(void *ud, size_t dev, int dir, const uint8_t *b,
                            size_t len, uint64_t t) {
  drop_t *x = ud;
  ota_coap_msg_t m;
  (void)dev, (void)t;
  if (ota_coap_decode(b, len, &m))
    return false;
  if (dir == OTA_LINK_DOWN && x->mid < 0 &&
      ota_msg_classify(&m, OTA_DIR_TO_DEVICE) == OTA_MSG_UPDATE_DONE) {
    x->mid = m.mid;
    x->armed = 1;
  }
  if (dir != OTA_LINK_UP || !x->armed)
    return false;
  ota_msg_kind_t k = ota_msg_classify(&m, OTA_DIR_TO_CLOUD);
  if (k == OTA_MSG_HELLO) {
    x->armed = 0;
    return false;
  }
  if ((m.type == OTA_COAP_ACK && m.mid == x->mid) ||
      (k == OTA_MSG_UPDATE_DONE && m.type != OTA_COAP_ACK)) {
    x->drops++;
    return true;
  }
  return false;
}

static void count_jobs(void *ud, size_t dev, uint64_t t,
                       const ota_csess_job_t *j) {
  drop_t *x = ud;
  (void)dev, (void)t;
  if (j->state == OTA_JOB_FAILED)
    x->failed++;
  else if (j->ref.func == OTA_FN_SYSTEM && x->drops && !x->done_after_hello)
    x->done_after_hello = j->id;
}

Test(vsim, lost_updatedone_reply_lets_the_describe_decide) {
  static uint8_t app[8192];
  size_t al = make_app("0.6.2", app, sizeof app);
  ota_vsim_cfg_t cfg;
  ota_vsim_cfg_default(&cfg);
  cfg.keep_log = true;
  ota_vsim_t *vs = ota_vsim_new(&cat, &cfg);
  cr_assert_not_null(vs);
  drop_t x = {.mid = -1};
  ota_vsim_set_drop(vs, drop_done_reply, &x);
  ota_vsim_set_hooks(vs, NULL, count_jobs, &x);
  ota_vsim_dev_spec_t sp = {.app = app, .app_len = al, .product_id = 7};
  snprintf(sp.release, sizeof sp.release, "0.6.1");
  char err[128];
  cr_assert_eq(ota_link_parse("3g", &cat, &sp.link, err, sizeof err), 0);
  cr_assert_geq(ota_vsim_add(vs, &sp), 0);
  ota_vsim_run(vs, 0);
  const ota_vsim_stats_t *st = ota_vsim_stats(vs, 0);
  cr_assert_geq(x.drops, 1, "the UpdateDone reply was never dropped");
  cr_assert(st->done);
  cr_assert_str_eq(ota_device_release_name(ota_vsim_device(vs, 0)), "0.6.2");
  cr_expect_eq(x.failed, 0, "%u job(s) failed", x.failed);
  cr_expect_eq(st->jobs_ok, 3);
  cr_expect_eq(x.done_after_hello, 1, "the first part's job ended DONE");
  if (getenv("VSIM_LOG"))
    fputs(ota_vsim_log(vs), stderr);
  ota_vsim_destroy(vs);
}

/* Virtual power and product release: a product device on 0.6.1 with no app
 * is left alone; the released app reaches it only at its next describe (a
 * power cycle), then the Safe Mode Healer brings it to 0.6.2. */
Test(vsim, release_reaches_the_device_after_a_power_cycle) {
  static uint8_t app[8192];
  size_t al = make_app("0.6.2", app, sizeof app);
  ota_vsim_t *vs = ota_vsim_new(&cat, NULL);
  ota_vsim_dev_spec_t sp = {.product_id = 7};
  snprintf(sp.release, sizeof sp.release, "0.6.1");
  ota_link_cfg_init(&sp.link);
  cr_assert_eq(ota_vsim_add(vs, &sp), 0);
  ota_vsim_advance(vs, 60000);
  cr_assert(ota_vsim_stats(vs, 0)->done);
  cr_assert_eq(ota_vsim_release(vs, 7, app, al, 2), 0);
  ota_vsim_advance(vs, 120000);
  cr_assert_eq(ota_vsim_stats(vs, 0)->jobs_ok, 0, "released to a session");
  cr_assert_eq(ota_vsim_power(vs, 0, true), 0);
  ota_vsim_advance(vs, 600000);
  const ota_vsim_stats_t *st = ota_vsim_stats(vs, 0);
  cr_assert(st->done);
  cr_assert_str_eq(ota_device_release_name(ota_vsim_device(vs, 0)), "0.6.2");
  cr_assert_eq(ota_vsim_device(vs, 0)->state, OTA_DEV_RUNNING_APP);
  cr_assert_eq(st->jobs_ok, 4, "the app, then s/3, s/1, s/2");
  ota_vsim_destroy(vs);
}

/* ---- injected faults (otalab-device's --fault syntax) ---- */

typedef struct {
  char spec[40]; /* inline: the parameters cross into the test's process */
  uint32_t boots_extra;    /* boots beyond the fault-free run's */
  bool retrans_more;       /* more retransmitted bytes than fault-free */
  bool last_reset_powered; /* a boot with reason power_down after t=0 */
} fault_case_t;

static fault_case_t fault_cases[] = {
    {"drop-link-at-chunk:230:3000", 0, true, false},
    {"corrupt-chunk:100", 0, true, false},
    {"reset-during-ota:50", 1, true, false},
    {"power-loss-during-apply", 0, false, true},
};

typedef struct {
  ota_vsim_stats_t st;
  char release[24];
  int power_down_events;
} fault_run_t;

static void count_power_down(void *ud, size_t dev, uint64_t t, const char *name,
                             const char *data, size_t len) {
  (void)dev;
  if (t > 0 && !strcmp(name, "spark/device/last_reset") && len == 10 &&
      !memcmp(data, "power_down", 10))
    ((fault_run_t *)ud)->power_down_events++;
}

static fault_run_t run_fault(const char *spec) {
  static uint8_t app[8192];
  size_t al = make_app("0.6.2", app, sizeof app);
  ota_vsim_t *vs = ota_vsim_new(&cat, NULL);
  cr_assert_not_null(vs);
  fault_run_t r;
  memset(&r, 0, sizeof r);
  ota_vsim_set_hooks(vs, count_power_down, NULL, &r);
  ota_vsim_dev_spec_t sp = {.app = app, .app_len = al, .product_id = 4242};
  snprintf(sp.name, sizeof sp.name, "dev");
  snprintf(sp.release, sizeof sp.release, "0.6.1");
  char err[128];
  cr_assert_eq(ota_link_parse("2g,loss=0", &cat, &sp.link, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(ota_vsim_add(vs, &sp), 0);
  if (spec) {
    ota_vfault_t f;
    cr_assert_eq(ota_vsim_fault_parse(spec, &f), 0, "%s", spec);
    cr_assert_eq(ota_vsim_fault(vs, 0, &f), 0);
  }
  ota_vsim_run(vs, 0);
  r.st = *ota_vsim_stats(vs, 0);
  snprintf(r.release, sizeof r.release, "%s",
           ota_device_release_name(ota_vsim_device(vs, 0)));
  ota_vsim_destroy(vs);
  return r;
}

ParameterizedTestParameters(vsim, fault_fires_and_the_heal_completes) {
  return cr_make_param_array(fault_case_t, fault_cases,
                             sizeof fault_cases / sizeof fault_cases[0]);
}

ParameterizedTest(fault_case_t *c, vsim, fault_fires_and_the_heal_completes) {
  fault_run_t base = run_fault(NULL), r = run_fault(c->spec);
  cr_assert_eq(base.st.faults, 0);
  cr_assert_eq(r.st.faults, 1, "%s: fired %u times", c->spec, r.st.faults);
  cr_assert(r.st.done, "%s: not done", c->spec);
  cr_assert_str_eq(r.release, "0.6.2", "%s", c->spec);
  cr_assert_eq(r.st.jobs_failed, 0, "%s: a job failed (a restart expected)",
               c->spec);
  cr_assert_eq(r.st.jobs_ok, base.st.jobs_ok, "%s", c->spec);
  cr_assert_eq(r.st.boots, base.st.boots + c->boots_extra, "%s: %llu boots",
               c->spec, (unsigned long long)r.st.boots);
  uint64_t rb = r.st.down[OTA_VB_RETRANS] + r.st.up[OTA_VB_RETRANS];
  uint64_t bb = base.st.down[OTA_VB_RETRANS] + base.st.up[OTA_VB_RETRANS];
  if (c->retrans_more)
    cr_assert_gt(rb, bb, "%s", c->spec);
  cr_assert_eq(r.power_down_events > base.power_down_events,
               c->last_reset_powered, "%s", c->spec);
}

Test(vsim, fault_specs_parse_as_otalab_device_does) {
  ota_vfault_t f;
  cr_assert_eq(ota_vsim_fault_parse("drop-link-at-chunk:7", &f), 0);
  cr_assert_eq(f.kind, OTA_VFAULT_DROP_LINK);
  cr_assert_eq(f.chunk, 7);
  cr_assert_eq(f.ms, 20000);
  cr_assert_eq(ota_vsim_fault_parse("drop-link-at-chunk:7:1500", &f), 0);
  cr_assert_eq(f.ms, 1500);
  static const char *const bad[] = {"",
                                    "corrupt-chunk",
                                    "corrupt-chunk:x",
                                    "reset-during-ota:3:4",
                                    "power-loss-during-apply:1",
                                    "drop-link-at-chunk:1:2:3",
                                    NULL};
  for (int i = 0; bad[i]; i++)
    cr_assert_eq(ota_vsim_fault_parse(bad[i], &f), OTA_EPARSE, "'%s'", bad[i]);
  cr_assert_eq(ota_vsim_fault_parse(NULL, &f), OTA_EPARSE);
}
