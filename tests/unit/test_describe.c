/* Tests of the cloud's describe parser: the 0.6.x (empty slots), 1.x and 2.x
 * shapes of PROTOCOL.md 3.1, binary-version-reader's repair and missing-
 * dependency rules (3.3), safe mode (7), and malformed describes. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "otalab/describe.h"
#include "otalab/err.h"

#define SHA "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"

/* 0.6.1 with an app built for 0.6.2: one dependency per module, empty
 * factory slot, the user module fails its dependency check. */
static const char d061[] =
    "{\"p\":10,\"imei\":\"352753090000001\",\"iccid\":\"8934076500002587657\","
    "\"m\":["
    "{\"s\":16384,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"b\",\"n\":\"0\","
    "\"v\":11,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"1\","
    "\"v\":105,\"d\":[{\"f\":\"s\",\"n\":\"3\",\"v\":105}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"2\","
    "\"v\":105,\"d\":[{\"f\":\"s\",\"n\":\"1\",\"v\":105}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"3\","
    "\"v\":105,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":26,\"u\":\"" SHA "\","
    "\"f\":\"u\",\"n\":\"1\",\"v\":5,\"d\":[{\"f\":\"s\",\"n\":\"2\","
    "\"v\":108}]},"
    "{\"s\":131072,\"l\":\"f\",\"vc\":0,\"vv\":0,\"d\":[]}]}";

/* 0.5.3 (knows s/3): empty s/3 and user slots listed, no app. */
static const char d053[] =
    "{\"p\":10,\"m\":["
    "{\"s\":16384,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"b\",\"n\":\"0\","
    "\"v\":7,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"1\","
    "\"v\":21,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"2\","
    "\"v\":21,\"d\":[{\"f\":\"s\",\"n\":\"1\",\"v\":21}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":0,\"vv\":0,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":0,\"vv\":0,\"d\":[]},"
    "{\"s\":131072,\"l\":\"f\",\"vc\":0,\"vv\":0,\"d\":[]}]}";

/* 1.4.4 half-way to 2.3.1 (s/3 done, app built for 2.3.1): both deps. */
static const char d144[] =
    "{\"p\":10,\"imei\":\"1\",\"iccid\":\"2\",\"m\":["
    "{\"s\":16384,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"b\",\"n\":\"0\","
    "\"v\":501,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"1\","
    "\"v\":1406,\"d\":[{\"f\":\"s\",\"n\":\"3\",\"v\":1406}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"2\","
    "\"v\":1406,\"d\":[{\"f\":\"s\",\"n\":\"1\",\"v\":1406},"
    "{\"f\":\"b\",\"n\":\"0\",\"v\":400}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"3\","
    "\"v\":2302,\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":110}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":26,\"u\":\"" SHA "\","
    "\"f\":\"u\",\"n\":\"1\",\"v\":6,\"d\":[{\"f\":\"s\",\"n\":\"2\","
    "\"v\":2302}]}]}";

/* 2.3.1 as PROTOCOL.md 3.1's example, healthy, with cellfw. */
static const char d231[] =
    "{\"p\":10,\"imei\":\"352753090000001\",\"iccid\":\"89340765\","
    "\"cellfw\":\"23.60\",\"m\":["
    "{\"s\":16384,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"b\",\"n\":\"0\","
    "\"v\":1006,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"1\","
    "\"v\":2302,\"d\":[{\"f\":\"s\",\"n\":\"3\",\"v\":2302}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"2\","
    "\"v\":2302,\"d\":[{\"f\":\"s\",\"n\":\"1\",\"v\":2302},"
    "{\"f\":\"b\",\"n\":\"0\",\"v\":1003}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"3\","
    "\"v\":2302,\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":110}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"u\":\"" SHA "\","
    "\"f\":\"u\",\"n\":\"1\",\"v\":6,\"d\":[{\"f\":\"s\",\"n\":\"2\","
    "\"v\":2302}]}]}";

/* An old describe with names missing: binary-version-reader's repair names
 * them b/0 (first) and s/1 (previous + 1, f 's'). 0.5.x-style s/1 depending on
 * an s/3 the device does not list; the app's second dependency is missing
 * (its third is dropped); the factory app's unmet dependency does not count. */
static const char dold[] =
    "{\"p\":10,\"m\":["
    "{\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"b\",\"v\":7,\"d\":[]},"
    "{\"l\":\"m\",\"vc\":30,\"vv\":30,\"v\":15,\"d\":[{\"f\":\"s\",\"n\":"
    "\"3\",\"v\":20}]},"
    "{\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":2,\"v\":17,\"d\":["
    "{\"f\":\"s\",\"n\":\"1\",\"v\":15},{\"f\":\"n\",\"n\":\"0\",\"v\":0}]},"
    "{\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"u\",\"n\":\"1\",\"v\":2,"
    "\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":17},{\"f\":\"s\",\"n\":\"9\","
    "\"v\":1},{\"f\":\"s\",\"n\":\"2\",\"v\":17}]},"
    "{\"l\":\"f\",\"vc\":30,\"vv\":30,\"f\":\"u\",\"n\":\"1\",\"v\":1,"
    "\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":5000}]}]}";

/* Two modules lacking the same s/2 v108, and a dependency-check failure with
 * nothing missing (vv says so; the cloud still calls it safe mode). */
static const char ddup[] =
    "{\"p\":10,\"m\":["
    "{\"l\":\"m\",\"vc\":30,\"vv\":26,\"f\":\"s\",\"n\":\"1\",\"v\":108,"
    "\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":108}]},"
    "{\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"2\",\"v\":105,"
    "\"d\":[]},"
    "{\"l\":\"m\",\"vc\":30,\"vv\":26,\"f\":\"u\",\"n\":\"1\",\"v\":3,"
    "\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":108}]}]}";

static const char dvv[] =
    "{\"p\":10,\"m\":["
    "{\"l\":\"m\",\"vc\":30,\"vv\":26,\"f\":\"s\",\"n\":\"1\",\"v\":108,"
    "\"d\":[]}]}";

typedef struct {
  const char *name;
  const char *json;
  uint16_t platform;
  const char *imei, *cellfw;
  size_t nmodules;
  int nempty;    /* modules with empty = true */
  int nrepaired; /* modules with repaired = true */
  uint16_t sysver;
  int safe;
  size_t nmissing;
  ota_modref_t missing[3]; /* in order */
  int user_deps;           /* ndeps of the main user module, -1 none */
  size_t nplan;            /* modules handed to the planner */
} parse_case_t;

#define S(n, v)                                                                \
  { OTA_FN_SYSTEM, n, v }

static parse_case_t parse_cases[] = {
    {"0.6.1+app108",
     d061,
     10,
     "352753090000001",
     "",
     6,
     1,
     0,
     105,
     1,
     1,
     {S(2, 108)},
     1,
     5},
    {"0.5.3 empty slots", d053, 10, "", "", 6, 3, 0, 21, 0, 0, {{0}}, -1, 3},
    {"1.4.4 half way",
     d144,
     10,
     "1",
     "",
     5,
     0,
     0,
     1406,
     1,
     1,
     {S(2, 2302)},
     1,
     5},
    {"2.3.1 healthy",
     d231,
     10,
     "352753090000001",
     "23.60",
     5,
     0,
     0,
     2302,
     0,
     0,
     {{0}},
     1,
     5},
    {"repaired old",
     dold,
     10,
     "",
     "",
     5,
     0,
     2,
     15,
     1,
     2,
     {S(3, 20), S(9, 1)},
     2,
     4},
    {"dedup", ddup, 10, "", "", 3, 0, 0, 105, 1, 1, {S(2, 108)}, 1, 3},
    {"vv only", dvv, 10, "", "", 1, 0, 0, 108, 1, 0, {{0}}, -1, 1},
};

/* Criterion may run each case in a fresh process: parameters are indexes into
 * the static tables (their pointers are valid in every process). */
#define NCASES(t) (sizeof t / sizeof t[0])
static int idx[64] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                      13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                      26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38};

ParameterizedTestParameters(describe, parse) {
  return cr_make_param_array(int, idx, NCASES(parse_cases));
}

ParameterizedTest(int *i, describe, parse) {
  const parse_case_t *c = &parse_cases[*i];
  ota_describe_t d;
  int rc = ota_describe_parse(c->json, strlen(c->json), &d);
  cr_assert_eq(rc, 0, "%s: %s (%s)", c->name, ota_strerror(rc), d.err);
  cr_assert_str_empty(d.err);
  cr_assert_eq(d.json, c->json, "view of the caller's text");
  cr_assert_eq(d.platform, c->platform);
  cr_assert_str_eq(d.imei, c->imei);
  cr_assert_str_eq(d.cellfw, c->cellfw);
  cr_assert_eq(d.nmodules, c->nmodules, "%s", c->name);
  int nempty = 0, nrep = 0;
  for (size_t i = 0; i < d.nmodules; i++) {
    nempty += d.m[i].empty;
    nrep += d.m[i].repaired;
    if (d.m[i].empty)
      cr_assert_eq(d.m[i].func, OTA_FN_NONE, "%s m[%zu]", c->name, i);
  }
  cr_assert_eq(nempty, c->nempty, "%s", c->name);
  cr_assert_eq(nrep, c->nrepaired, "%s", c->name);
  cr_assert_eq(ota_describe_system_version(&d), c->sysver, "%s", c->name);
  cr_assert_eq(ota_describe_in_safe_mode(&d), (bool)c->safe, "%s", c->name);

  ota_modref_t miss[8];
  size_t n = ota_describe_missing_deps(&d, miss, 8);
  cr_assert_eq(n, c->nmissing, "%s: %zu missing", c->name, n);
  cr_assert_eq(ota_describe_missing_deps(&d, NULL, 0), n, "count only");
  for (size_t i = 0; i < n; i++) {
    char a[24], b[24];
    cr_assert(miss[i].func == c->missing[i].func &&
                  miss[i].index == c->missing[i].index &&
                  miss[i].version == c->missing[i].version,
              "%s: missing[%zu] %s, want %s", c->name, i,
              ota_modref_str(&miss[i], a, sizeof a),
              ota_modref_str(&c->missing[i], b, sizeof b));
    cr_assert(ota_describe_dep_missing(&d, &miss[i]));
  }
  if (n > 1) /* cap honoured, total still reported */
    cr_assert_eq(ota_describe_missing_deps(&d, miss, 1), n);

  const ota_describe_module_t *u = ota_describe_find(&d, OTA_FN_USER, 1);
  if (c->user_deps < 0) {
    cr_assert_null(u, "%s", c->name);
  } else {
    cr_assert_not_null(u, "%s", c->name);
    cr_assert_eq(u->ndeps, c->user_deps, "%s", c->name);
  }

  ota_dev_module_t mods[OTA_DESCRIBE_MAX_MODULES];
  ota_plan_device_t dev;
  size_t np =
      ota_describe_to_plan_device(&d, mods, OTA_DESCRIBE_MAX_MODULES, 1, &dev);
  cr_assert_eq(np, c->nplan, "%s", c->name);
  cr_assert_eq(dev.nmodules, np);
  cr_assert_eq(dev.modules, mods);
  cr_assert_eq(dev.platform, 10);
  cr_assert_eq(dev.product, 1);
  for (size_t i = 0; i < np; i++) {
    const ota_describe_module_t *m =
        ota_describe_find(&d, mods[i].id.func, mods[i].id.index);
    cr_assert_not_null(m);
    cr_assert_eq(m->version, mods[i].id.version);
    for (int k = 0; k < m->ndeps; k++)
      cr_assert_eq(mods[i].deps[k].version, m->deps[k].version);
  }
}

/* Field by field on the 0.6.1 describe. */
Test(describe, fields_061) {
  ota_describe_t d;
  cr_assert_eq(ota_describe_parse(d061, sizeof d061 - 1, &d), 0, "%s", d.err);
  cr_assert_str_eq(d.iccid, "8934076500002587657");
  const ota_describe_module_t *b = &d.m[0], *s1 = &d.m[1], *u = &d.m[4],
                              *f = &d.m[5];
  cr_assert_eq(b->func, OTA_FN_BOOTLOADER);
  cr_assert_eq(b->size, 16384);
  cr_assert_eq(b->ndeps, 0);
  cr_assert_eq(s1->func, OTA_FN_SYSTEM);
  cr_assert_eq(s1->index, 1);
  cr_assert_eq(s1->version, 105);
  cr_assert_eq(s1->loc, 'm');
  cr_assert_eq(s1->ndeps, 1);
  cr_assert_eq(s1->deps[0].func, OTA_FN_SYSTEM);
  cr_assert_eq(s1->deps[0].index, 3);
  cr_assert_eq(s1->deps[0].version, 105);
  cr_assert_str_empty(s1->sha);
  cr_assert_eq(u->func, OTA_FN_USER);
  cr_assert_eq(u->vc, 30);
  cr_assert_eq(u->vv, 26);
  cr_assert_str_eq(u->sha, SHA);
  cr_assert(f->empty);
  cr_assert_eq(f->loc, 'f');
  cr_assert_null(ota_describe_find(&d, OTA_FN_USER, 2));
}

/* The repair of binary-version-reader's _repairDescribeErrors. */
Test(describe, repair) {
  ota_describe_t d;
  cr_assert_eq(ota_describe_parse(dold, strlen(dold), &d), 0, "%s", d.err);
  cr_assert_eq(d.m[0].func, OTA_FN_BOOTLOADER);
  cr_assert_eq(d.m[0].index, 0);
  cr_assert(d.m[0].repaired);
  cr_assert_eq(d.m[1].func, OTA_FN_SYSTEM, "f 's' when missing");
  cr_assert_eq(d.m[1].index, 1, "previous n + 1");
  cr_assert_eq(d.m[1].version, 15);
  cr_assert(d.m[1].repaired);
  cr_assert_eq(d.m[2].index, 2, "n given as a number");
  cr_assert_not(d.m[2].repaired);
  cr_assert_eq(d.m[2].ndeps, 1, "function none dropped");
  cr_assert_eq(d.m[3].ndeps, 2, "first two of three kept");
  static const char nov[] = "{\"m\":[{\"l\":\"m\",\"f\":\"b\",\"n\":\"0\","
                            "\"v\":7},{\"l\":\"m\",\"f\":\"s\"}]}";
  cr_assert_eq(ota_describe_parse(nov, strlen(nov), &d), 0, "%s", d.err);
  cr_assert_eq(d.m[1].index, 1);
  cr_assert_eq(d.m[1].version, 0, "v 0 when missing");
  cr_assert(d.m[1].repaired);
  /* Empty slots of 0.5.3 get their index but stay function none. */
  cr_assert_eq(ota_describe_parse(d053, strlen(d053), &d), 0, "%s", d.err);
  cr_assert(d.m[3].empty);
  cr_assert_eq(d.m[3].index, 3);
  cr_assert_eq(d.m[4].index, 4);
  cr_assert_null(ota_describe_find(&d, OTA_FN_SYSTEM, 3));
  ota_modref_t s3 = S(3, 1);
  cr_assert(ota_describe_dep_missing(&d, &s3), "an empty slot meets nothing");
  ota_modref_t none = {OTA_FN_NONE, 0, 0};
  cr_assert_not(ota_describe_dep_missing(&d, &none));
}

/* The application part of a flags-3 describe sits beside the system one. */
Test(describe, flags3) {
  static const char j[] =
      "{\"f\":[\"go\"],\"v\":{\"x\":2},\"p\":10,\"m\":[{\"s\":16384,\"l\":"
      "\"m\",\"vc\":30,\"vv\":30,\"f\":\"b\",\"n\":\"0\",\"v\":11,\"d\":[]}]}";
  ota_describe_t d;
  cr_assert_eq(ota_describe_parse(j, strlen(j), &d), 0, "%s", d.err);
  cr_assert_eq(d.nmodules, 1);
  cr_assert_eq(d.m[0].version, 11);
  char buf[16];
  cr_assert_str_eq(
      ota_modref_str(&(ota_modref_t){OTA_FN_SYSTEM, 3, 108}, buf, sizeof buf),
      "s/3 v108");
  cr_assert_str_eq(
      ota_modref_str(&(ota_modref_t){OTA_FN_SYSTEM, 3, 108}, buf, 5), "s/3 ",
      "truncated, terminated");
}

/* ---- malformed ----------------------------------------------------------- */

typedef struct {
  const char *json;
  int rc;
  const char *in_err; /* expected in d.err */
} bad_case_t;

#define MOD "{\"l\":\"m\",\"f\":\"s\",\"n\":\"1\",\"v\":1,\"d\":[]}"
#define MOD4 MOD "," MOD "," MOD "," MOD

static bad_case_t bad_cases[] = {
    {"", OTA_EPARSE, "not JSON"},
    {"{", OTA_EPARSE, "not JSON"},
    {"{\"p\":10,\"m\":[]} x", OTA_EPARSE, "not JSON"},
    {"[]", OTA_EPARSE, "not a JSON object"},
    {"{\"p\":10}", OTA_EPARSE, "\"m\""},
    {"{\"m\":{}}", OTA_EPARSE, "\"m\""},
    {"{\"p\":\"10\",\"m\":[]}", OTA_EPARSE, "\"p\""},
    {"{\"imei\":5,\"m\":[]}", OTA_EPARSE, "imei"},
    {"{\"m\":[1]}", OTA_EPARSE, "m[0]"},
    {"{\"m\":[{\"f\":\"x\",\"n\":\"1\",\"v\":1}]}", OTA_EPARSE, "m[0].f"},
    {"{\"m\":[{\"f\":\"ss\",\"n\":\"1\",\"v\":1}]}", OTA_EPARSE, "m[0].f"},
    {"{\"m\":[" MOD ",{\"f\":\"s\",\"n\":\"abc\",\"v\":1}]}", OTA_EPARSE,
     "m[1].n"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"300\",\"v\":1}]}", OTA_EPARSE, "m[0].n"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"\",\"v\":1}]}", OTA_EPARSE, "m[0].n"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":-1}]}", OTA_EPARSE, "m[0].v"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":\"12\"}]}", OTA_EPARSE, "m[0].v"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":70000}]}", OTA_EPARSE, "m[0].v"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":1.5}]}", OTA_EPARSE, "m[0].v"},
    {"{\"m\":[{\"l\":\"main\",\"f\":\"s\",\"n\":\"1\",\"v\":1}]}", OTA_EPARSE,
     "m[0].l"},
    {"{\"m\":[{\"vc\":true}]}", OTA_EPARSE, "m[0].vc"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":1,\"d\":{}}]}", OTA_EPARSE,
     "m[0].d"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":1,\"d\":[7]}]}", OTA_EPARSE,
     "m[0].d[0]"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":1,\"d\":[{\"n\":\"1\",\"v\":1}]}"
     "]}",
     OTA_EPARSE, "m[0].d[0].f"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":1,\"d\":[{\"f\":\"s\",\"v\":1}]}"
     "]}",
     OTA_EPARSE, "m[0].d[0].n"},
    {"{\"m\":[{\"f\":\"s\",\"n\":\"1\",\"v\":1,\"d\":[{\"f\":\"s\",\"n\":"
     "\"1\"}]}]}",
     OTA_EPARSE, "m[0].d[0].v"},
    {"{\"m\":[{\"u\":\"" SHA "0\"}]}", OTA_EPARSE, "m[0].u"},
    {"{\"m\":[{\"f\":\"s\",\"f\":\"u\"}]}", OTA_EPARSE, "not JSON"},
    {"{\"m\":[" MOD4 "," MOD4 "," MOD4 "," MOD4 "," MOD "]}", OTA_EFULL,
     "17 modules"},
};

ParameterizedTestParameters(describe, malformed) {
  return cr_make_param_array(int, idx, NCASES(bad_cases));
}

ParameterizedTest(int *i, describe, malformed) {
  const bad_case_t *c = &bad_cases[*i];
  ota_describe_t d;
  memset(&d, 0xA5, sizeof d);
  int rc = ota_describe_parse(c->json, strlen(c->json), &d);
  cr_assert_eq(rc, c->rc, "%s: %s (%s)", c->json, ota_strerror_name(rc), d.err);
  cr_assert_not_null(strstr(d.err, c->in_err), "%s: err '%s' lacks '%s'",
                     c->json, d.err, c->in_err);
  cr_assert_eq(d.nmodules, 0, "nothing half-parsed is left");
  cr_assert_null(d.json);
}

Test(describe, null_args) {
  ota_describe_t d;
  cr_assert_eq(ota_describe_parse(NULL, 0, &d), OTA_EINVAL);
  cr_assert_eq(ota_describe_parse("{}", 2, NULL), OTA_EINVAL);
  cr_assert_eq(ota_describe_missing_deps(NULL, NULL, 0), 0);
  cr_assert_not(ota_describe_in_safe_mode(NULL));
}

/* A system part at version 0 (a repaired describe) is the lowest version, not
 * "none yet" (found by fuzz/describe). */
Test(describe, system_version_with_a_part_at_zero) {
  static const char js[] =
      "{\"p\":10,\"m\":[{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\","
      "\"n\":\"1\",\"v\":2302,\"d\":[]},{\"s\":131072,\"l\":\"m\",\"vc\":30,"
      "\"vv\":30,\"f\":\"s\",\"n\":\"2\",\"v\":0,\"d\":[]},{\"s\":131072,\"l\":"
      "\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"3\",\"v\":2302,\"d\":[]}]}";
  ota_describe_t d;
  cr_assert_eq(ota_describe_parse(js, sizeof js - 1, &d), 0);
  cr_assert_eq(ota_describe_system_version(&d), 0);
}
