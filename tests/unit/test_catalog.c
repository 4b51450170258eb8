/* Tests of the release catalogue: the real fixtures/catalog/electron.json
 * against PROTOCOL.md 4.6, 5.1, 5.2, and rejection of malformed catalogues. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/err.h"

#define CATALOG OTALAB_SOURCE_DIR "/fixtures/catalog/electron.json"

static ota_catalog_t cat;

static void load(void) {
  char err[256] = "";
  ota_catalog_init(&cat);
  int rc = ota_catalog_load_file(&cat, CATALOG, err, sizeof err);
  cr_assert_eq(rc, 0, "load %s: %s (%s)", CATALOG, ota_strerror(rc), err);
}

static void unload(void) {
  ota_catalog_free(&cat);
  ota_catalog_free(&cat); /* safe twice */
}

static int is_3part(const ota_cat_release_t *r) {
  return r->major > 0 || r->minor >= 6;
}

Test(catalog, sorted_and_complete, .init = load, .fini = unload) {
  cr_assert_geq(cat.nreleases, 30);
  for (size_t i = 1; i < cat.nreleases; i++)
    cr_assert_lt(cat.releases[i - 1].system_version,
                 cat.releases[i].system_version, "%s before %s",
                 cat.releases[i - 1].name, cat.releases[i].name);
  cr_assert_null(ota_catalog_find(&cat, "0.4.9"),
                 "0.4.9 has no Electron build");
  cr_assert_str_eq(cat.stepping_stone, "0.5.3");
  cr_assert_eq(cat.stepping_stone_min, 19);
}

/* PROTOCOL.md 5.2: 2 parts before 0.6.0, 3 from 0.6.0, and which file is
 * which module; every module fits the 128 KB staging area. */
Test(catalog, parts_and_layout, .init = load, .fini = unload) {
  static const struct {
    const char *file;
    uint8_t index;
    uint32_t addr;
  } two[] = {{"system-part1", 1, 0x08020000u},
             {"system-part2", 2, 0x08040000u}},
    three[] = {{"system-part1", 3, 0x08060000u},
               {"system-part2", 1, 0x08020000u},
               {"system-part3", 2, 0x08040000u}};
  for (size_t i = 0; i < cat.nreleases; i++) {
    const ota_cat_release_t *r = &cat.releases[i];
    int n3 = is_3part(r);
    cr_assert_eq(r->nparts, n3 ? 3 : 2, "%s", r->name);
    for (int k = 0; k < r->nparts; k++) {
      const ota_cat_module_t *m = &r->modules[k];
      cr_assert_str_eq(m->file, n3 ? three[k].file : two[k].file, "%s",
                       r->name);
      cr_assert_eq(m->id.func, OTA_FN_SYSTEM);
      cr_assert_eq(m->id.index, n3 ? three[k].index : two[k].index, "%s %s",
                   r->name, m->file);
      cr_assert_eq(m->start_addr, n3 ? three[k].addr : two[k].addr);
      cr_assert_eq(m->id.version, r->system_version);
    }
    for (int k = 0; k < r->nmodules; k++) {
      cr_assert_leq(r->modules[k].size, 131072u, "%s %s", r->name,
                    r->modules[k].file);
      cr_assert_gt(r->modules[k].size, 10000u);
      cr_assert_neq(r->modules[k].source[0], '\0');
    }
    cr_assert_eq(r->behaviour.knows_part3, r->system_version >= 19, "%s",
                 r->name);
  }
}

/* PROTOCOL.md 5.2 dependency chain, per layout. */
Test(catalog, dependencies, .init = load, .fini = unload) {
  for (size_t i = 0; i < cat.nreleases; i++) {
    const ota_cat_release_t *r = &cat.releases[i];
    uint16_t v = r->system_version;
    const ota_cat_module_t *s1 = ota_release_module(r, OTA_FN_SYSTEM, 1);
    const ota_cat_module_t *s2 = ota_release_module(r, OTA_FN_SYSTEM, 2);
    const ota_cat_module_t *s3 = ota_release_module(r, OTA_FN_SYSTEM, 3);
    cr_assert(s1 && s2);
    cr_assert_eq(s2->deps[0].func, OTA_FN_SYSTEM);
    cr_assert_eq(s2->deps[0].index, 1);
    cr_assert_eq(s2->deps[0].version, v);
    if (!is_3part(r)) {
      cr_assert_null(s3);
      cr_assert_eq(s1->deps[0].func, OTA_FN_NONE, "%s", r->name);
      continue;
    }
    cr_assert(s3);
    cr_assert_eq(s1->deps[0].index, 3);
    cr_assert_eq(s1->deps[0].version, v);
    if (v < 200) { /* 0.6.x */
      cr_assert_eq(s3->deps[0].func, OTA_FN_NONE, "%s", r->name);
      cr_assert_eq(r->bootloader_dependency, 0);
    } else {
      cr_assert_eq(s3->deps[0].index, 2);
      cr_assert_eq(s3->deps[0].version, 110, "%s", r->name);
      cr_assert_eq(s2->deps[1].func, OTA_FN_BOOTLOADER, "%s", r->name);
      cr_assert_eq(s2->deps[1].version, r->bootloader_dependency);
      cr_assert_leq(r->bootloader_dependency, r->bootloader_version,
                    "%s: its own s/3 must carry a good enough bootloader",
                    r->name);
    }
  }
}

/* Parameters are copied into each test process: strings live inside. */
typedef struct {
  char name[24];
  uint16_t sysver, bootver;
  uint32_t sizes[3]; /* 0 = not checked (assumed) */
  int real;          /* sizes come from real binaries */
} relcase_t;

/* PROTOCOL.md 5.1 versions, 4.6 sizes. */
static relcase_t relcases[] = {
    {"0.4.8-rc.6", 10, 6, {0}, 0},
    {"0.5.3", 21, 7, {0}, 0},
    {"0.6.0", 102, 8, {0}, 0},
    {"0.6.2", 108, 11, {0}, 0},
    {"0.6.3", 109, 11, {55004, 124432, 114848}, 1},
    {"0.6.4", 110, 11, {55004, 123712, 114848}, 1},
    {"0.7.0", 207, 101, {54732, 118044, 121576}, 1},
    {"1.0.0", 1000, 201, {77408, 120308, 121300}, 1},
    {"1.2.1", 1213, 311, {79232, 126640, 127380}, 1},
    {"1.4.1", 1403, 500, {0}, 0},
    {"1.5.2", 1512, 502, {79968, 116132, 127224}, 1},
    {"2.0.0", 2008, 1003, {0}, 0},
    {"2.3.1", 2302, 1006, {87468, 114012, 123052}, 1},
};

ParameterizedTestParameters(catalog, releases) {
  return cr_make_param_array(relcase_t, relcases,
                             sizeof relcases / sizeof relcases[0]);
}

ParameterizedTest(relcase_t *c, catalog, releases, .init = load,
                  .fini = unload) {
  const ota_cat_release_t *r = ota_catalog_find(&cat, c->name);
  cr_assert_not_null(r, "%s", c->name);
  cr_assert_eq(r->system_version, c->sysver);
  cr_assert_eq(r->bootloader_version, c->bootver);
  cr_assert_eq(ota_catalog_find_sysver(&cat, c->sysver), r);
  for (int k = 0; k < r->nparts && c->real; k++) {
    cr_assert_eq(r->modules[k].size, c->sizes[k], "%s part%d", c->name, k + 1);
    cr_assert_eq(r->modules[k].size_assumed, 0);
    cr_assert(strstr(r->modules[k].source, "4.6"));
  }
  const ota_cat_module_t *b = ota_release_module(r, OTA_FN_BOOTLOADER, 0);
  cr_assert_not_null(b);
  cr_assert_eq(b->id.version, c->bootver);
  cr_assert_leq(b->size, 16384u);
}

Test(catalog, lookups, .init = load, .fini = unload) {
  const ota_cat_release_t *r = ota_catalog_find(&cat, "0.4.8");
  cr_assert_not_null(r);
  cr_assert_str_eq(r->name, "0.4.8-rc.6");
  cr_assert_null(ota_catalog_find(&cat, "0.4.8-rc.5"));
  cr_assert_null(ota_catalog_find(&cat, "9.9.9"));
  r = ota_catalog_find_module(&cat, OTA_FN_SYSTEM, 3, 108);
  cr_assert_not_null(r);
  cr_assert_str_eq(r->name, "0.6.2");
  cr_assert_null(ota_catalog_find_module(&cat, OTA_FN_SYSTEM, 3, 21));
  cr_assert_str_eq(ota_catalog_find(&cat, "0.6.4")->modules[0].file,
                   "system-part1");
}

Test(catalog, behaviour, .init = load, .fini = unload) {
  const ota_cat_release_t *r;
  r = ota_catalog_find(&cat, "0.5.3");
  cr_assert_eq(r->behaviour.updone, OTA_UPDONE_NONE);
  cr_assert(r->behaviour.device_sends_updone && r->behaviour.move_session);
  cr_assert_eq(r->behaviour.refusal_code, 0x80);
  cr_assert_eq(ota_catalog_find(&cat, "0.4.8")->behaviour.move_session, 0);
  cr_assert_eq(ota_catalog_find(&cat, "0.6.1")->behaviour.updone,
               OTA_UPDONE_JSON);
  r = ota_catalog_find(&cat, "1.2.1");
  cr_assert_eq(r->behaviour.refusal_code, 0xA3);
  cr_assert_eq(r->behaviour.hello_flags, 0x06);
  cr_assert_eq(r->behaviour.device_sends_updone, 0);
  r = ota_catalog_find(&cat, "2.3.1");
  cr_assert_eq(r->behaviour.updone, OTA_UPDONE_INT);
  cr_assert_eq(r->behaviour.describe, OTA_DESCRIBE_POST);
  cr_assert_eq(r->behaviour.hello_flags, 0x36);
  cr_assert_eq(ota_catalog_find(&cat, "2.0.1")->behaviour.describe,
               OTA_DESCRIBE_SEPARATE);
}

Test(catalog, links, .init = load, .fini = unload) {
  static const char *const names[] = {"2g", "3g", "lte-m", "lte"};
  for (size_t i = 0; i < 4; i++) {
    const ota_link_profile_t *l = ota_catalog_link(&cat, names[i]);
    cr_assert_not_null(l, "%s", names[i]);
    cr_assert_gt(l->down_bps, 0);
    cr_assert(l->loss >= 0 && l->loss < 1);
    cr_assert_neq(l->assumption[0], '\0');
  }
  cr_assert_lt(ota_catalog_link(&cat, "2g")->down_bps,
               ota_catalog_link(&cat, "lte")->down_bps);
  cr_assert_null(ota_catalog_link(&cat, "5g"));
}

/* Malformed catalogues: each is rejected with a message naming the entry. */
typedef struct {
  char json[640];
  int err;
  char msg[48]; /* substring expected in the message */
} badcase_t;

#define BEH                                                                    \
  "\"behaviour\":{\"hello_flags\":0,\"describe\":\"ack\",\"refusal_code\":"    \
  "\"4.00\",\"updone\":\"none\"}"
#define MOD(f, n, v, size)                                                     \
  "{\"file\":\"system-part" #n "\",\"f\":\"" f "\",\"n\":" #n ",\"v\":" #v     \
  ",\"size\":" #size ",\"deps\":[]}"
#define REL(name, v, mods)                                                     \
  "{\"name\":\"" name "\",\"system_version\":" #v                              \
  ",\"bootloader_version\":7,\"parts\":2,\"modules\":[" mods "]," BEH "}"
#define CAT(rels) "{\"platform\":10,\"releases\":[" rels "]}"

static badcase_t badcases[] = {
    {"{\"releases\": [", OTA_EPARSE, "JSON"},
    {CAT(REL("0.5.0", 13, MOD("s", 1, 13, 131073) "," MOD("s", 2, 13, 1000))),
     OTA_ETOOBIG, "0.5.0, module system-part1"},
    {CAT(REL("0.5.1", 15, MOD("x", 1, 15, 1000) "," MOD("s", 2, 15, 1000))),
     OTA_EFUNC, "0.5.1, module system-part1"},
    {CAT(REL("0.5.2", 17, MOD("s", 1, 17, 1000) "," MOD("s", 1, 17, 1000))),
     OTA_EEXIST, "0.5.2"},
    {CAT(REL("0.5.3", 21,
             MOD("s", 1, 21, 1000) "," MOD(
                 "s", 2, 21, 1000)) "," REL("0.5.3", 22,
                                            MOD("s", 1, 22, 1000) "," MOD(
                                                "s", 2, 22, 1000))),
     OTA_EEXIST, "0.5.3"},
    {CAT(REL("0.5.4", 22, MOD("s", 1, 22, 1000))), OTA_EPARSE, "0.5.4"},
    {CAT(REL("0.5.5", 23, MOD("s", 1, 24, 1000) "," MOD("s", 2, 23, 1000))),
     OTA_EPARSE, "0.5.5, module system-part1"},
    {"{\"platform\":6,\"releases\":[]}", OTA_EPLATFORM, "platform"},
    {CAT(REL("bogus", 21, MOD("s", 1, 21, 1000) "," MOD("s", 2, 21, 1000))),
     OTA_EPARSE, "bogus"},
};

ParameterizedTestParameters(catalog, rejects) {
  return cr_make_param_array(badcase_t, badcases,
                             sizeof badcases / sizeof badcases[0]);
}

ParameterizedTest(badcase_t *c, catalog, rejects) {
  ota_catalog_t bad;
  char err[256] = "";
  ota_catalog_init(&bad);
  int rc =
      ota_catalog_load_json(&bad, c->json, strlen(c->json), err, sizeof err);
  cr_assert_eq(rc, c->err, "got %s (%s) for %s", ota_strerror_name(rc), err,
               c->json);
  cr_assert(strstr(err, c->msg), "message '%s' lacks '%s'", err, c->msg);
  cr_assert_eq(bad.nreleases, 0);
  cr_assert_null(bad.releases);
  ota_catalog_free(&bad);
}

/* A minimal well-formed catalogue loads (the bad cases fail for their reason).
 */
Test(catalog, minimal_ok) {
  static const char *const ok =
      CAT(REL("0.5.3", 21, MOD("s", 1, 21, 1000) "," MOD("s", 2, 21, 1000)));
  ota_catalog_t c;
  char err[256] = "";
  ota_catalog_init(&c);
  cr_assert_eq(ota_catalog_load_json(&c, ok, strlen(ok), err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(c.nreleases, 1);
  cr_assert_eq(c.releases[0].modules[1].deps[0].func, OTA_FN_NONE);
  cr_assert_eq(c.releases[0].modules[0].start_addr, 0x08020000u);
  ota_catalog_free(&c);
}
