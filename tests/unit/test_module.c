/* Module binary format: build -> parse round trips, one defect per mutation,
 * and the generated fixtures (PROTOCOL.md 4; fixtures from `otalab
 * mkfixtures`). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/crc32.h"
#include "otalab/err.h"
#include "otalab/module.h"

#define BUF_CAP (160u * 1024u)

/* ---- CRC-32 ----------------------------------------------------------------
 */

Test(crc32, zlib_check_value_and_incremental) {
  /* The CRC-32 "check" value of the catalogue of parametrised CRCs. */
  cr_assert_eq(ota_crc32("123456789", 9), 0xCBF43926u);
  cr_assert_eq(ota_crc32(NULL, 0), 0u);
  static const char text[] = "The quick brown fox jumps over the lazy dog";
  uint32_t whole = ota_crc32(text, sizeof text - 1);
  for (size_t cut = 0; cut < sizeof text; cut += 7) {
    uint32_t c = ota_crc32_update(0, text, cut);
    c = ota_crc32_update(c, text + cut, sizeof text - 1 - cut);
    cr_assert_eq(c, whole, "split at %zu", cut);
  }
  cr_assert_eq(whole, 0x414FA339u);
}

/* ---- round trip ------------------------------------------------------------
 */

typedef struct {
  char name[48];
  uint8_t func, index;
  uint16_t version;
  uint32_t size;
  ota_modref_t deps[2];
  uint16_t product_id, product_version;
  size_t want_hdr;
} rt_case_t;

static rt_case_t rt_cases[] = {
    {"bootloader",
     OTA_FN_BOOTLOADER,
     0,
     1006,
     15664,
     {{0}},
     0xFFFF,
     0xFFFF,
     0x184},
    {"s/1",
     OTA_FN_SYSTEM,
     1,
     2302,
     114012,
     {{OTA_FN_SYSTEM, 3, 2302}, {0}},
     0xFFFF,
     0xFFFF,
     0x184},
    {"s/2",
     OTA_FN_SYSTEM,
     2,
     2302,
     123052,
     {{OTA_FN_SYSTEM, 1, 2302}, {OTA_FN_BOOTLOADER, 0, 1003}},
     0xFFFF,
     0xFFFF,
     0x184},
    {"s/3", OTA_FN_SYSTEM, 3, 110, 55004, {{0}}, 0xFFFF, 0xFFFF, 0},
    {"u/1", OTA_FN_USER, 1, 6, 5776, {{OTA_FN_SYSTEM, 2, 10}, {0}}, 10, 3, 0},
};

ParameterizedTestParameters(module, round_trip) {
  return cr_make_param_array(rt_case_t, rt_cases,
                             sizeof rt_cases / sizeof rt_cases[0]);
}

ParameterizedTest(rt_case_t *c, module, round_trip) {
  ota_module_spec_t spec;
  ota_module_spec_init(&spec, c->func, c->index, c->version);
  spec.size = c->size;
  spec.deps[0] = c->deps[0];
  spec.deps[1] = c->deps[1];
  spec.product_id = c->product_id;
  spec.product_version = c->product_version;
  spec.seed = 42;
  uint8_t *a = malloc(BUF_CAP), *b = malloc(BUF_CAP);
  size_t la = 0, lb = 0;
  cr_assert_eq(ota_module_build(&spec, a, BUF_CAP, &la), 0, "%s", c->name);
  cr_assert_eq(la, c->size);

  ota_module_t m;
  cr_assert_eq(ota_module_parse(a, la, &m), 0, "%s", c->name);
  cr_assert_eq(m.hdr_offset, c->want_hdr, "%s: header at 0x%zx", c->name,
               m.hdr_offset);
  cr_assert_eq(m.info.func, c->func);
  cr_assert_eq(m.info.index, c->index);
  cr_assert_eq(m.info.version, c->version);
  cr_assert_eq(m.info.platform, OTA_PLATFORM_ELECTRON);
  cr_assert_eq(m.info.start, ota_module_slot(c->func, c->index, NULL));
  cr_assert_eq(m.info.end - m.info.start + 4, c->size);
  cr_assert_eq(memcmp(&m.info.dep1, &c->deps[0], sizeof(ota_modref_t)), 0);
  cr_assert_eq(memcmp(&m.info.dep2, &c->deps[1], sizeof(ota_modref_t)), 0);
  cr_assert_eq(m.suffix.product_id, c->product_id);
  cr_assert_eq(m.suffix.product_version, c->product_version);
  cr_assert_eq(m.suffix.size, OTA_MODULE_SUFFIX_SIZE);
  cr_assert_eq(m.crc_stored, m.crc_computed);
  cr_assert_eq(memcmp(m.suffix.sha256, m.sha256_computed, 32), 0);

  ota_module_report_t rep;
  int rc = ota_module_validate(&m, la, &rep);
  cr_assert_eq(rc, 0, "%s: %s", c->name, rep.n ? rep.items[0].msg : "");
  cr_assert_eq(rep.defects, 0u);

  /* The stored CRC is big-endian zlib CRC-32 over everything before it. */
  uint32_t be = ((uint32_t)a[la - 4] << 24) | ((uint32_t)a[la - 3] << 16) |
                ((uint32_t)a[la - 2] << 8) | a[la - 1];
  cr_assert_eq(be, ota_crc32(a, la - 4));
  /* FFFFFFFF filler right before the suffix */
  for (int i = 0; i < 4; i++)
    cr_assert_eq(a[la - 48 + i], 0xFF);

  if (c->want_hdr == 0x184) {
    uint32_t sp = a[0] | a[1] << 8 | a[2] << 16 | (uint32_t)a[3] << 24;
    uint32_t reset = a[4] | a[5] << 8 | a[6] << 16 | (uint32_t)a[7] << 24;
    cr_assert_eq(sp & 0xFFF00000u, 0x20000000u, "initial SP in SRAM");
    cr_assert(reset & 1u, "Thumb bit");
    cr_assert(reset > m.info.start && reset < m.info.end, "reset in module");
  }

  /* deterministic: same spec, same bytes; another seed, other bytes */
  cr_assert_eq(ota_module_build(&spec, b, BUF_CAP, &lb), 0);
  cr_assert_eq(lb, la);
  cr_assert_eq(memcmp(a, b, la), 0);
  spec.seed = 43;
  cr_assert_eq(ota_module_build(&spec, b, BUF_CAP, &lb), 0);
  cr_assert_neq(memcmp(a, b, la), 0);
  free(a);
  free(b);
}

Test(module, build_errors) {
  ota_module_spec_t spec;
  ota_module_spec_init(&spec, OTA_FN_SYSTEM, 1, 108);
  uint8_t buf[4096];
  size_t len = 0;
  spec.size = 8192;
  cr_assert_eq(ota_module_build(&spec, buf, sizeof buf, &len), OTA_ENOBUFS);
  spec.size = 0x184 + 24 + 47; /* no room for header + suffix */
  cr_assert_eq(ota_module_build(&spec, buf, sizeof buf, &len), OTA_EINVAL);
  spec.size = 2048;
  spec.hdr_offset = 6; /* not 4-aligned */
  cr_assert_eq(ota_module_build(&spec, buf, sizeof buf, &len), OTA_EINVAL);
  cr_assert_eq(ota_module_build(NULL, buf, sizeof buf, &len), OTA_EINVAL);
}

Test(module, parse_errors) {
  static uint8_t buf[4096];
  ota_module_t m;
  cr_assert_eq(ota_module_parse(buf, 40, &m), OTA_ETRUNC);
  cr_assert_eq(ota_module_parse(NULL, 100, &m), OTA_EINVAL);
  memset(buf, 0, sizeof buf);
  cr_assert_eq(ota_module_parse(buf, sizeof buf, &m), OTA_EHEADER);
  uint32_t x = 12345;
  for (size_t i = 0; i < sizeof buf; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    buf[i] = (uint8_t)x;
  }
  cr_assert_eq(ota_module_parse(buf, sizeof buf, &m), OTA_EHEADER);
}

/* ---- defects
 * ----------------------------------------------------------------- */

typedef enum {
  MUT_FLIP_BODY,
  MUT_FLIP_CRC,
  MUT_PLATFORM,
  MUT_TRUNCATE,
  MUT_END_SHORT,
  MUT_END_LONG,
  MUT_FUNC9,
  MUT_FUNC0,
  MUT_DEP_EMPTY_INDEX,
  MUT_TOO_BIG,
  MUT_SHA_ONLY,
  MUT_WRONG_START,
  MUT_HDR_OFFSET,
  MUT_SUFFIX_SIZE,
  MUT_PLATFORM_AND_FLIP,
} mutation_t;

typedef struct {
  char name[48];
  uint8_t func, index; /* base module */
  mutation_t mut;
  uint32_t want;   /* defects that must be reported */
  int exact;       /* 1: nothing else may be reported */
  char needle[64]; /* text the first message must contain */
} def_case_t;

static def_case_t def_cases[] = {
    {"flip a body byte", OTA_FN_SYSTEM, 1, MUT_FLIP_BODY,
     OTA_MODDEF_CRC | OTA_MODDEF_SHA, 1, "CRC-32 mismatch: stored 0x"},
    {"flip a CRC byte", OTA_FN_USER, 1, MUT_FLIP_CRC, OTA_MODDEF_CRC, 1,
     "CRC-32 mismatch"},
    {"platform 6, integrity refreshed", OTA_FN_SYSTEM, 2, MUT_PLATFORM,
     OTA_MODDEF_PLATFORM, 1, "wrong platform: module is for platform 6"},
    {"truncated by 100 bytes", OTA_FN_SYSTEM, 3, MUT_TRUNCATE,
     OTA_MODDEF_TRUNCATED | OTA_MODDEF_CRC, 0, "CRC-32"},
    {"header end 16 bytes short", OTA_FN_USER, 1, MUT_END_SHORT,
     OTA_MODDEF_SIZE, 1, "size disagrees with header"},
    {"header end 16 bytes long", OTA_FN_SYSTEM, 1, MUT_END_LONG,
     OTA_MODDEF_TRUNCATED, 1, "truncated: file has"},
    {"function 9", OTA_FN_USER, 1, MUT_FUNC9, OTA_MODDEF_FUNC | OTA_MODDEF_ADDR,
     1, "unknown module function 9"},
    {"function none", OTA_FN_SYSTEM, 3, MUT_FUNC0,
     OTA_MODDEF_FUNC | OTA_MODDEF_ADDR, 1, "module function is none (0)"},
    {"empty dependency with index 1", OTA_FN_SYSTEM, 1, MUT_DEP_EMPTY_INDEX,
     OTA_MODDEF_DEP, 1, "dependency 2 has function none but index 1"},
    {"130 KB module", OTA_FN_SYSTEM, 2, MUT_TOO_BIG,
     OTA_MODDEF_TOOBIG | OTA_MODDEF_ADDR, 1, "larger than the 131072-byte"},
    {"bad SHA, good CRC", OTA_FN_SYSTEM, 3, MUT_SHA_ONLY, OTA_MODDEF_SHA, 1,
     "SHA-256 mismatch: stored "},
    {"s/1 at the s/2 address", OTA_FN_SYSTEM, 1, MUT_WRONG_START,
     OTA_MODDEF_ADDR, 1, "is not the s/1 slot 0x08020000"},
    {"s/2 with header at 0", OTA_FN_SYSTEM, 2, MUT_HDR_OFFSET,
     OTA_MODDEF_OFFSET, 1, "carry it at 0x184"},
    {"suffix size 44", OTA_FN_BOOTLOADER, 0, MUT_SUFFIX_SIZE, OTA_MODDEF_SUFFIX,
     1, "suffix size field is 44"},
    {"platform and a flipped byte", OTA_FN_USER, 1, MUT_PLATFORM_AND_FLIP,
     OTA_MODDEF_CRC | OTA_MODDEF_SHA | OTA_MODDEF_PLATFORM, 1, "CRC-32"},
};

ParameterizedTestParameters(module, defects) {
  return cr_make_param_array(def_case_t, def_cases,
                             sizeof def_cases / sizeof def_cases[0]);
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
  return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

ParameterizedTest(def_case_t *c, module, defects) {
  ota_module_spec_t spec;
  ota_module_spec_init(&spec, c->func, c->index, 1000);
  spec.size = c->func == OTA_FN_BOOTLOADER ? 12000 : 9000;
  if (c->func == OTA_FN_SYSTEM)
    spec.deps[0] = (ota_modref_t){OTA_FN_SYSTEM, 3, 1000};
  if (c->mut == MUT_TOO_BIG)
    spec.size = 130 * 1024;
  if (c->mut == MUT_HDR_OFFSET)
    spec.hdr_offset = 0;
  uint8_t *buf = malloc(BUF_CAP);
  size_t len = 0;
  cr_assert_eq(ota_module_build(&spec, buf, BUF_CAP, &len), 0);
  size_t hdr = spec.hdr_offset < 0 ? ota_module_hdr_offset(c->func, c->index)
                                   : (size_t)spec.hdr_offset;
  uint8_t *h = buf + hdr;

  switch (c->mut) {
  case MUT_FLIP_BODY:
    buf[len / 2] ^= 0x10;
    break;
  case MUT_FLIP_CRC:
    buf[len - 2] ^= 0x01;
    break;
  case MUT_PLATFORM:
    h[12] = 6;
    ota_module_refresh_integrity(buf, len);
    break;
  case MUT_TRUNCATE:
    len -= 100;
    break;
  case MUT_END_SHORT:
    put32(h + 4, get32(h + 4) - 16);
    ota_module_refresh_integrity(buf, len);
    break;
  case MUT_END_LONG:
    put32(h + 4, get32(h + 4) + 16);
    ota_module_refresh_integrity(buf, len);
    break;
  case MUT_FUNC9:
    h[14] = 9;
    ota_module_refresh_integrity(buf, len);
    break;
  case MUT_FUNC0:
    h[14] = 0;
    ota_module_refresh_integrity(buf, len);
    break;
  case MUT_DEP_EMPTY_INDEX:
    h[20] = 0; /* dependency 2: function none ... */
    h[21] = 1; /* ... but index 1 */
    ota_module_refresh_integrity(buf, len);
    break;
  case MUT_TOO_BIG:
  case MUT_HDR_OFFSET:
    break; /* built that way */
  case MUT_SHA_ONLY:
    buf[len - 20] ^= 0xFF;
    ota_module_refresh_crc(buf, len);
    break;
  case MUT_WRONG_START:
    put32(h, OTA_ADDR_SYSTEM2);
    put32(h + 4, OTA_ADDR_SYSTEM2 + (uint32_t)len - 4);
    ota_module_refresh_integrity(buf, len);
    break;
  case MUT_SUFFIX_SIZE:
    buf[len - 6] = 44;
    ota_module_refresh_crc(buf, len);
    break;
  case MUT_PLATFORM_AND_FLIP:
    h[12] = 12;
    ota_module_refresh_integrity(buf, len);
    buf[len - 100] ^= 0x80;
    break;
  }

  ota_module_t m;
  cr_assert_eq(ota_module_parse(buf, len, &m), 0, "%s: parse", c->name);
  cr_assert_eq(m.hdr_offset, hdr, "%s: header found at 0x%zx", c->name,
               m.hdr_offset);
  ota_module_report_t rep;
  int rc = ota_module_validate(&m, len, &rep);
  cr_assert_lt(rc, 0, "%s: reported valid", c->name);
  cr_assert_eq((rep.defects & c->want), c->want, "%s: defects 0x%x, want 0x%x",
               c->name, rep.defects, c->want);
  if (c->exact)
    cr_assert_eq(rep.defects, c->want, "%s: defects 0x%x, want exactly 0x%x",
                 c->name, rep.defects, c->want);
  cr_assert_eq(rep.n, __builtin_popcount(rep.defects), "%s: one message each",
               c->name);
  cr_assert_eq(rc, rep.items[0].err);
  cr_assert(strstr(rep.items[0].msg, c->needle), "%s: '%s' lacks '%s'", c->name,
            rep.items[0].msg, c->needle);
  for (int i = 0; i < rep.n; i++) {
    cr_assert(rep.items[i].msg[0]);
    cr_assert_str_neq(ota_module_defect_tag(rep.items[i].defect), "?");
  }
  free(buf);
}

/* ---- generated fixtures
 * ------------------------------------------------------ */

static void sha_hex(const uint8_t *buf, size_t len, char out[65]) {
  uint8_t d[32];
  mbedtls_sha256_ret(buf, len, d, 0);
  for (int i = 0; i < 32; i++)
    sprintf(out + 2 * i, "%02x", d[i]);
}

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
  *len = fread(b, 1, (size_t)n, f);
  fclose(f);
  return b;
}

Test(module, fixtures_from_manifest) {
  json_error_t jerr;
  json_t *root = json_load_file(OTALAB_FIXTURES_DIR "/manifest.json", 0, &jerr);
  cr_assert_not_null(root, "manifest: %s (build the `fixtures` target)",
                     jerr.text);
  json_t *mods = json_object_get(root, "modules");
  cr_assert(json_is_array(mods));
  cr_assert_geq(json_array_size(mods), 3, "too few fixtures");
  size_t i;
  json_t *e;
  int seen_boot = 0, seen_s3 = 0;
  json_array_foreach(mods, i, e) {
    const char *file = json_string_value(json_object_get(e, "file"));
    cr_assert_not_null(file);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", OTALAB_FIXTURES_DIR, file);
    size_t len = 0;
    uint8_t *buf = slurp(path, &len);
    cr_assert_not_null(buf, "%s missing", path);
    cr_assert_eq(len, (size_t)json_integer_value(json_object_get(e, "size")),
                 "%s size", file);
    char hex[65];
    sha_hex(buf, len, hex);
    cr_assert_str_eq(hex, json_string_value(json_object_get(e, "sha256")),
                     "%s sha256", file);

    ota_module_t m;
    cr_assert_eq(ota_module_parse(buf, len, &m), 0, "%s parse", file);
    ota_module_report_t rep;
    cr_assert_eq(ota_module_validate(&m, len, &rep), 0, "%s: %s", file,
                 rep.n ? rep.items[0].msg : "");
    cr_assert_eq(m.info.func, json_integer_value(json_object_get(e, "func")));
    cr_assert_eq(m.info.index, json_integer_value(json_object_get(e, "index")));
    cr_assert_eq(m.info.version,
                 json_integer_value(json_object_get(e, "version")));
    cr_assert_eq(m.info.start, json_integer_value(json_object_get(e, "start")));
    json_t *deps = json_object_get(e, "deps");
    const ota_modref_t *got[2] = {&m.info.dep1, &m.info.dep2};
    for (size_t d = 0; d < 2; d++) {
      json_t *dj = json_array_get(deps, d);
      if (!dj) {
        cr_assert_eq(got[d]->func, OTA_FN_NONE, "%s dep %zu", file, d + 1);
        continue;
      }
      cr_assert_eq(got[d]->func,
                   json_integer_value(json_object_get(dj, "func")));
      cr_assert_eq(got[d]->index,
                   json_integer_value(json_object_get(dj, "index")));
      cr_assert_eq(got[d]->version,
                   json_integer_value(json_object_get(dj, "version")));
    }
    seen_boot |= m.info.func == OTA_FN_BOOTLOADER;
    seen_s3 |= m.info.func == OTA_FN_SYSTEM && m.info.index == 3;
    free(buf);
  }
  cr_assert(seen_s3, "no s/3 fixture");
  (void)seen_boot; /* present only when the catalogue lists bootloaders */
  json_decref(root);
}

/* parse_header reads the same header and suffix as parse, and leaves the
 * computed checksums zero (no hashing), for a module of each header offset. */
Test(module, parse_header_matches_parse_without_hashing) {
  static uint8_t buf[8192];
  const uint8_t idx[] = {1, 3};
  for (unsigned i = 0; i < 2; i++) {
    ota_module_spec_t spec;
    size_t len;
    ota_module_spec_init(&spec, OTA_FN_SYSTEM, idx[i], 108);
    cr_assert_eq(ota_module_build(&spec, buf, sizeof buf, &len), 0);
    ota_module_t full, hdr;
    cr_assert_eq(ota_module_parse(buf, len, &full), 0);
    cr_assert_eq(ota_module_parse_header(buf, len, &hdr), 0);
    cr_assert_eq(hdr.hdr_offset, full.hdr_offset);
    cr_assert_eq(memcmp(&hdr.info, &full.info, sizeof hdr.info), 0);
    cr_assert_eq(memcmp(&hdr.suffix, &full.suffix, sizeof hdr.suffix), 0);
    cr_assert_eq(hdr.crc_stored, full.crc_stored);
    cr_assert_eq(full.crc_computed, full.crc_stored);
    cr_assert_eq(hdr.crc_computed, 0);
    static const uint8_t zero[32];
    cr_assert_eq(memcmp(hdr.sha256_computed, zero, 32), 0);
  }
}
