/* Tests of the upgrade planner against the real catalogue: step structure,
 * module order (PROTOCOL.md 5.2), the 0.5.3 rule (6.1), bootloader rule (6.2),
 * costs. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/err.h"
#include "otalab/planner.h"

#define CATALOG OTALAB_SOURCE_DIR "/fixtures/catalog/electron.json"

static ota_catalog_t cat;

static void load(void) {
  char err[256] = "";
  ota_catalog_init(&cat);
  cr_assert_eq(ota_catalog_load_file(&cat, CATALOG, err, sizeof err), 0, "%s",
               err);
}

static void unload(void) {
  ota_catalog_free(&cat);
}

/* Parameters are copied into each test process: strings live inside. */
typedef struct {
  char label[40];
  char from[24];     /* release name, or "" to use from_mod */
  uint16_t from_mod; /* every system part at this version */
  uint16_t platform;
  int kind;     /* ota_goal_kind_t */
  char to[24];  /* OTA_GOAL_RELEASE */
  uint16_t app; /* OTA_GOAL_APP / HEAL: needs s/2 >= app */
  int err;      /* expected result */
  int nsteps;
  char steps[4][40]; /* "0.5.3:s1,s2" per step */
} pcase_t;

static pcase_t cases[] = {
    {"0.6.1 to 0.6.2",
     "0.6.1",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.6.2",
     0,
     0,
     1,
     {"0.6.2:s3,s1,s2"}},
    {"factory to 0.6.2",
     "0.4.8",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.6.2",
     0,
     0,
     2,
     {"0.5.3:s1,s2", "0.6.2:s3,s1,s2"}},
    {"0.5.0 to 0.6.0",
     "0.5.0",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.6.0",
     0,
     0,
     2,
     {"0.5.3:s1,s2", "0.6.0:s3,s1,s2"}},
    {"0.5.3 to 0.6.4 adds s/3",
     "0.5.3",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.6.4",
     0,
     0,
     1,
     {"0.6.4:s3,s1,s2"}},
    {"0.5.3-rc.2 (19) needs no stone",
     "",
     19,
     10,
     OTA_GOAL_RELEASE,
     "0.6.2",
     0,
     0,
     1,
     {"0.6.2:s3,s1,s2"}},
    {"0.5.3-rc.1 (18) needs the stone",
     "",
     18,
     10,
     OTA_GOAL_RELEASE,
     "0.6.2",
     0,
     0,
     2,
     {"0.5.3:s1,s2", "0.6.2:s3,s1,s2"}},
    {"factory to 0.5.5 (2 parts)",
     "0.4.8-rc.6",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.5.5",
     0,
     0,
     1,
     {"0.5.5:s1,s2"}},
    {"already current",
     "0.6.2",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.6.2",
     0,
     0,
     0,
     {""}},
    {"downgrade",
     "0.6.2",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.6.1",
     0,
     OTA_EDOWNGRADE,
     0,
     {""}},
    {"2.x to 1.x downgrade",
     "2.3.1",
     0,
     10,
     OTA_GOAL_RELEASE,
     "1.5.2",
     0,
     OTA_EDOWNGRADE,
     0,
     {""}},
    {"unknown release",
     "0.6.2",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.9.9",
     0,
     OTA_ERELEASE,
     0,
     {""}},
    {"not an Electron",
     "0.6.2",
     0,
     6,
     OTA_GOAL_RELEASE,
     "0.6.4",
     0,
     OTA_EPLATFORM,
     0,
     {""}},
    {"app for 0.6.2 on 0.6.1",
     "0.6.1",
     0,
     10,
     OTA_GOAL_APP,
     "",
     108,
     0,
     1,
     {"0.6.2:s3,s1,s2"}},
    {"app for 106 takes the smallest",
     "0.6.1",
     0,
     10,
     OTA_GOAL_APP,
     "",
     106,
     0,
     1,
     {"0.6.2:s3,s1,s2"}},
    {"app already met", "0.6.4", 0, 10, OTA_GOAL_APP, "", 108, 0, 0, {""}},
    {"app nobody provides",
     "0.6.4",
     0,
     10,
     OTA_GOAL_APP,
     "",
     65000,
     OTA_ERELEASE,
     0,
     {""}},
    {"safe-mode heal 0.6.1",
     "0.6.1",
     0,
     10,
     OTA_GOAL_HEAL,
     "",
     108,
     0,
     1,
     {"0.6.2:s3,s1,s2"}},
    {"1.4.4 to 2.3.1",
     "1.4.4",
     0,
     10,
     OTA_GOAL_RELEASE,
     "2.3.1",
     0,
     0,
     1,
     {"2.3.1:s3,s1,s2"}},
    {"1.0.0 to 2.3.1",
     "1.0.0",
     0,
     10,
     OTA_GOAL_RELEASE,
     "2.3.1",
     0,
     0,
     1,
     {"2.3.1:s3,s1,s2"}},
    {"0.6.1 to 0.7.0 via 0.6.4",
     "0.6.1",
     0,
     10,
     OTA_GOAL_RELEASE,
     "0.7.0",
     0,
     0,
     2,
     {"0.6.4:s3,s1,s2", "0.7.0:s3,s1,s2"}},
    {"factory to 2.3.1",
     "0.4.8",
     0,
     10,
     OTA_GOAL_RELEASE,
     "2.3.1",
     0,
     0,
     3,
     {"0.5.3:s1,s2", "0.6.4:s3,s1,s2", "2.3.1:s3,s1,s2"}},
};

ParameterizedTestParameters(planner, cases) {
  return cr_make_param_array(pcase_t, cases, sizeof cases / sizeof cases[0]);
}

static size_t make_device(const pcase_t *c, ota_dev_module_t *mods,
                          size_t cap) {
  size_t n = 0;
  memset(mods, 0, cap * sizeof *mods);
  if (c->from[0]) {
    const ota_cat_release_t *r = ota_catalog_find(&cat, c->from);
    cr_assert_not_null(r, "%s", c->from);
    n = ota_plan_device_from_release(r, mods, cap);
  } else {
    for (int i = 1; i <= (c->from_mod >= 100 ? 3 : 2); i++)
      mods[n++].id = (ota_modref_t){OTA_FN_SYSTEM, (uint8_t)i, c->from_mod};
  }
  if (c->kind == OTA_GOAL_HEAL) /* a user app that needs more than it has */
    mods[n++] = (ota_dev_module_t){{OTA_FN_USER, 1, 6},
                                   {{OTA_FN_SYSTEM, 2, c->app}, {0, 0, 0}}};
  return n;
}

static void step_string(const ota_plan_step_t *s, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s:", s->release->name);
  for (int k = 0; k < s->nmodules && n > 0 && (size_t)n < cap; k++)
    n += snprintf(out + n, cap - (size_t)n, "%s%c%u", k ? "," : "",
                  ota_fn_letter(s->modules[k].id.func), s->modules[k].id.index);
}

/* Replay the plan on the device's versions: every module's system
 * dependencies are met when it is sent, nothing >= 0.6.0 reaches a device
 * whose s/1 or s/2 is below 19, and the payload is the catalogue's sizes. */
static void replay(const ota_dev_module_t *mods, size_t n, const ota_plan_t *p,
                   const char *label) {
  uint16_t s[4] = {0};
  uint64_t payload = 0;
  for (size_t i = 0; i < n; i++)
    if (mods[i].id.func == OTA_FN_SYSTEM && mods[i].id.index <= 3)
      s[mods[i].id.index] = mods[i].id.version;
  for (int i = 0; i < p->nsteps; i++) {
    const ota_plan_step_t *st = &p->steps[i];
    uint64_t step_payload = 0;
    for (int k = 0; k < st->nmodules; k++) {
      const ota_plan_module_t *m = &st->modules[k];
      const ota_cat_module_t *cm =
          ota_release_module(st->release, m->id.func, m->id.index);
      cr_assert_not_null(cm, "%s", label);
      cr_assert_eq(m->bytes, cm->size);
      cr_assert_eq(m->id.version, cm->id.version);
      if (m->id.func != OTA_FN_SYSTEM)
        continue;
      cr_assert_lt(s[m->id.index], m->id.version, "%s: %s resent", label,
                   m->file);
      if (st->release->nparts == 3)
        cr_assert(s[1] >= 19 && s[2] >= 19, "%s: %s sent to a pre-0.5.3 HAL",
                  label, m->file);
      for (int d = 0; d < 2; d++)
        if (cm->deps[d].func == OTA_FN_SYSTEM)
          cr_assert_geq(s[cm->deps[d].index], cm->deps[d].version,
                        "%s: %s sent before its dependency", label, m->file);
      s[m->id.index] = m->id.version;
      step_payload += m->bytes;
    }
    cr_assert_eq(st->cost.payload, step_payload);
    payload += step_payload;
  }
  cr_assert_eq(p->total.payload, payload);
}

ParameterizedTest(pcase_t *c, planner, cases, .init = load, .fini = unload) {
  ota_dev_module_t mods[8];
  ota_plan_device_t dev = {mods, make_device(c, mods, 8), c->platform, 1};
  ota_goal_t goal = {
      (ota_goal_kind_t)c->kind, c->to, {OTA_FN_SYSTEM, 2, c->app}};
  ota_plan_t plan;
  int rc = ota_plan_make(&cat, &dev, &goal, NULL, &plan);
  cr_assert_eq(rc, c->err, "%s: %s (%s)", c->label, ota_strerror_name(rc),
               plan.reason);
  cr_assert_eq(plan.result, rc);
  cr_assert_neq(plan.reason[0], '\0', "%s: no reason", c->label);
  cr_assert_eq(plan.nsteps, c->nsteps, "%s: %d steps (%s)", c->label,
               plan.nsteps, plan.reason);
  for (int i = 0; i < plan.nsteps; i++) {
    char got[64];
    step_string(&plan.steps[i], got, sizeof got);
    cr_assert_str_eq(got, c->steps[i], "%s step %d", c->label, i + 1);
  }
  if (rc)
    return;
  replay(mods, dev.nmodules, &plan, c->label);
  if (plan.nsteps == 0) {
    cr_assert_eq(plan.total.wire, 0);
    return;
  }
  /* Costs: more on the wire than the payload, within reason, and the slow
   * link takes longer. */
  const ota_plan_cost_t *t = &plan.total;
  cr_assert_gt(t->wire, t->payload);
  cr_assert_lt((double)t->wire / (double)t->payload, 1.25, "%s", c->label);
  cr_assert_gt(t->wire_particle, t->payload);
  cr_assert_gt(t->udp_ip, 0);
  cr_assert_eq(t->udp_ip, t->datagrams * 28);
  double g2 = ota_plan_seconds(t, ota_catalog_link(&cat, "2g"), NULL);
  double lte = ota_plan_seconds(t, ota_catalog_link(&cat, "lte"), NULL);
  cr_assert_gt(g2, lte, "%s: 2g %.1f s, lte %.1f s", c->label, g2, lte);
  cr_assert_gt(lte, 10.0 * t->reboots - 0.001);
  int nmod = 0;
  for (int i = 0; i < plan.nsteps; i++)
    nmod += plan.steps[i].nmodules;
  cr_assert_eq(t->reboots, (uint32_t)nmod);
}

Test(planner, payload_0_6_1_to_0_6_2, .init = load, .fini = unload) {
  ota_dev_module_t mods[8];
  ota_plan_device_t dev = {
      mods,
      ota_plan_device_from_release(ota_catalog_find(&cat, "0.6.1"), mods, 8),
      10, 1};
  ota_goal_t goal = {OTA_GOAL_RELEASE, "0.6.2", {0, 0, 0}};
  ota_plan_t p;
  cr_assert_eq(ota_plan_make(&cat, &dev, &goal, NULL, &p), 0);
  /* ~285 KB, as the forum figure for a 0.6.x system update (PROTOCOL 4.6). */
  cr_assert(p.total.payload > 280000 && p.total.payload < 300000, "%llu",
            (unsigned long long)p.total.payload);
  cr_assert_str_eq(p.steps[0].modules[0].file,
                   "system-part1-0.6.2-electron.bin");
  cr_assert_str_eq(p.steps[0].modules[2].file,
                   "system-part3-0.6.2-electron.bin");
  cr_assert_str_eq(p.from, "0.6.1");
  cr_assert_str_eq(p.to, "0.6.2");
  cr_assert_eq(p.steps[0].bootloader, 0);
}

/* Normal mode costs more datagrams and round trips than fast OTA. */
Test(planner, normal_vs_fast, .init = load, .fini = unload) {
  ota_dev_module_t mods[8];
  ota_plan_device_t dev = {
      mods,
      ota_plan_device_from_release(ota_catalog_find(&cat, "1.5.2"), mods, 8),
      10, 1};
  ota_goal_t goal = {OTA_GOAL_RELEASE, "2.3.1", {0, 0, 0}};
  ota_plan_model_t m;
  ota_plan_t fast, normal;
  ota_plan_model_default(&m);
  cr_assert_eq(ota_plan_make(&cat, &dev, &goal, &m, &fast), 0);
  m.fast_ota = 0;
  cr_assert_eq(ota_plan_make(&cat, &dev, &goal, &m, &normal), 0);
  cr_assert_eq(fast.total.payload, normal.total.payload);
  cr_assert_gt(normal.total.datagrams, 3 * fast.total.datagrams / 2);
  cr_assert_gt(normal.total.rtts, fast.total.rtts + 600);
  const ota_link_profile_t *l = ota_catalog_link(&cat, "2g");
  cr_assert_gt(ota_plan_seconds(&normal.total, l, &m),
               ota_plan_seconds(&fast.total, l, NULL));
}

/* PROTOCOL.md 6.2: a bootloader goes OTA only when no s/3 the device will run
 * embeds a good enough one. "1.0.0" here needs b >= 201 but its own s/3 only
 * carries 150; 1.1.0 carries 301. */
#define BEH                                                                    \
  "\"behaviour\":{\"hello_flags\":2,\"describe\":\"ack\",\"refusal_code\":"    \
  "\"4.00\",\"updone\":\"json\"}"
#define REL3(name, v, bv, bdep)                                                \
  "{\"name\":\"" name "\",\"system_version\":" #v                              \
  ",\"bootloader_version\":" #bv ",\"parts\":3,\"modules\":["                  \
  "{\"file\":\"system-part1\",\"f\":\"s\",\"n\":3,\"v\":" #v                   \
  ",\"size\":50000,\"deps\":[]},"                                              \
  "{\"file\":\"system-part2\",\"f\":\"s\",\"n\":1,\"v\":" #v                   \
  ",\"size\":100000,\"deps\":[{\"f\":\"s\",\"n\":3,\"v\":" #v "}]},"           \
  "{\"file\":\"system-part3\",\"f\":\"s\",\"n\":2,\"v\":" #v                   \
  ",\"size\":100000,\"deps\":[{\"f\":\"s\",\"n\":1,\"v\":" #v                  \
  "},{\"f\":\"b\",\"n\":0,\"v\":" #bdep "}]},"                                 \
  "{\"file\":\"bootloader\",\"f\":\"b\",\"n\":0,\"v\":" #bv                    \
  ",\"size\":15000,\"deps\":[]}]," BEH "}"

Test(planner, bootloader_rule) {
  static const char json[] =
      "{\"platform\":10,\"releases\":[" REL3("0.7.0", 207, 101, 101) "," REL3(
          "1.0.0", 1000, 150, 201) "," REL3("1.1.0", 1102, 301, 201) "]}";
  ota_catalog_t c;
  char err[256] = "";
  ota_catalog_init(&c);
  cr_assert_eq(ota_catalog_load_json(&c, json, strlen(json), err, sizeof err),
               0, "%s", err);
  ota_dev_module_t mods[8];
  ota_plan_device_t dev = {
      mods,
      ota_plan_device_from_release(ota_catalog_find(&c, "0.7.0"), mods, 8), 10,
      1};
  ota_plan_t p;
  ota_goal_t goal = {OTA_GOAL_RELEASE, "1.0.0", {0, 0, 0}};
  cr_assert_eq(ota_plan_make(&c, &dev, &goal, NULL, &p), 0, "%s", p.reason);
  cr_assert_eq(p.nsteps, 1);
  char got[64];
  step_string(&p.steps[0], got, sizeof got);
  cr_assert_str_eq(got, "1.0.0:s3,s1,b0,s2");
  cr_assert_eq(p.steps[0].bootloader, 1);
  cr_assert_eq(p.steps[0].modules[2].id.version, 301);
  cr_assert_str_eq(p.steps[0].modules[2].file, "electron-bootloader-1.1.0.bin");
  /* To 1.1.0 its own s/3 carries bootloader 301: nothing extra. */
  goal.release = "1.1.0";
  cr_assert_eq(ota_plan_make(&c, &dev, &goal, NULL, &p), 0, "%s", p.reason);
  step_string(&p.steps[0], got, sizeof got);
  cr_assert_str_eq(got, "1.1.0:s3,s1,s2");
  cr_assert_eq(p.steps[0].bootloader, 0);
  ota_catalog_free(&c);
}

Test(planner, bad_arguments, .init = load, .fini = unload) {
  ota_plan_t p;
  ota_plan_device_t dev = {NULL, 0, 10, 1};
  ota_goal_t goal = {OTA_GOAL_RELEASE, NULL, {0, 0, 0}};
  cr_assert_eq(ota_plan_make(&cat, &dev, NULL, NULL, &p), OTA_EINVAL);
  cr_assert_eq(ota_plan_make(&cat, &dev, &goal, NULL, &p), OTA_ERELEASE);
  cr_assert_eq(ota_plan_make(NULL, &dev, &goal, NULL, &p), OTA_EINVAL);
  cr_assert_eq(ota_plan_make(&cat, &dev, &goal, NULL, NULL), OTA_EINVAL);
  /* An empty device (no system firmware) can still be planned for. */
  goal.release = "0.5.3";
  cr_assert_eq(ota_plan_make(&cat, &dev, &goal, NULL, &p), 0, "%s", p.reason);
  cr_assert_eq(p.nsteps, 1);
}
