/* otalab inspect: what `particle binary inspect` shows for Electron module
 * files, plus every validation defect. Source: PROTOCOL.md 4 (format), 5.1
 * (releases). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "otalab/catalog.h"
#include "otalab/err.h"
#include "otalab/module.h"

static const char *platform_name(unsigned id) {
  switch (id) {
  case 0:
    return "core";
  case 3:
    return "gcc";
  case 6:
    return "photon";
  case 8:
    return "p1";
  case 10:
    return "electron";
  case 12:
    return "argon";
  case 13:
    return "boron";
  case 14:
    return "xenon";
  default:
    return "unknown";
  }
}

static void hex32(char out[65], const uint8_t *p) {
  for (int i = 0; i < 32; i++)
    sprintf(out + 2 * i, "%02x", p[i]);
}

/* The release that ships a module version, or NULL (user parts, unknown). */
static const char *release_of(const ota_catalog_t *cat, uint8_t func,
                              uint8_t index, uint16_t version) {
  if (!cat || func == OTA_FN_USER || func == OTA_FN_NONE)
    return NULL;
  const ota_cat_release_t *r =
      ota_catalog_find_module(cat, func, index, version);
  if (!r && func == OTA_FN_SYSTEM)
    r = ota_catalog_find_sysver(cat, version);
  return r ? r->name : NULL;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: otalab inspect [--json] [--catalog PATH] FILE...\n\n"
          "Parse Electron module binaries (.bin) and show platform, function,\n"
          "index, version (and the release it belongs to), addresses,\n"
          "dependencies, CRC-32, SHA-256 and product id/version. Every defect\n"
          "is listed. Exit 0 when all files are valid, 1 otherwise.\n\n"
          "  --json          one JSON array, one object per file\n"
          "  --catalog PATH  release catalogue (default %s)\n",
          cli_default_catalog());
}

static json_t *json_dep(const ota_catalog_t *cat, const ota_modref_t *d) {
  const char *rel = release_of(cat, d->func, d->index, d->version);
  char mod[16];
  snprintf(mod, sizeof mod, "%c/%u", ota_fn_letter(d->func), d->index);
  return json_pack("{s:s, s:s, s:i, s:i, s:i, s:o}", "module", mod, "function",
                   ota_fn_name(d->func), "func", d->func, "index", d->index,
                   "version", d->version, "release",
                   rel ? json_string(rel) : json_null());
}

static void text_dep(const ota_catalog_t *cat, const ota_modref_t *d) {
  const char *rel = release_of(cat, d->func, d->index, d->version);
  printf("%c/%u >= %u", ota_fn_letter(d->func), d->index, d->version);
  if (rel)
    printf(" (%s)", rel);
}

/* Inspect one file; returns 1 when valid. Appends to `arr` in JSON mode. */
static int inspect_one(const char *path, const ota_catalog_t *cat,
                       json_t *arr) {
  uint8_t *buf = NULL;
  size_t len = 0;
  ota_module_t m;
  int rc = cli_read_file(path, &buf, &len);
  if (rc == 0)
    rc = ota_module_parse(buf, len, &m);
  if (rc) {
    if (arr)
      json_array_append_new(arr, json_pack("{s:s, s:b, s:s, s:s}", "file", path,
                                           "valid", 0, "error",
                                           ota_strerror_name(rc), "message",
                                           ota_strerror(rc)));
    else
      printf("%s\n  error:        %s (%s)\n  status:       INVALID\n\n", path,
             ota_strerror(rc), ota_strerror_name(rc));
    free(buf);
    return 0;
  }
  ota_module_report_t rep;
  int valid = ota_module_validate(&m, len, &rep) == 0;
  const ota_module_info_t *in = &m.info;
  const char *rel = release_of(cat, in->func, in->index, in->version);
  int crc_ok = m.crc_stored == m.crc_computed;
  int sha_ok = !memcmp(m.suffix.sha256, m.sha256_computed, 32);
  char sha_s[65], sha_c[65];
  hex32(sha_s, m.suffix.sha256);
  hex32(sha_c, m.sha256_computed);
  const ota_modref_t *deps[2] = {&in->dep1, &in->dep2};

  if (arr) {
    char mod[16], start[16], end[16], crc_s[16], crc_c[16];
    snprintf(mod, sizeof mod, "%c/%u", ota_fn_letter(in->func), in->index);
    snprintf(start, sizeof start, "0x%08x", in->start);
    snprintf(end, sizeof end, "0x%08x", in->end);
    snprintf(crc_s, sizeof crc_s, "0x%08x", m.crc_stored);
    snprintf(crc_c, sizeof crc_c, "0x%08x", m.crc_computed);
    json_t *jd = json_array();
    for (int i = 0; i < 2; i++)
      if (deps[i]->func != OTA_FN_NONE)
        json_array_append_new(jd, json_dep(cat, deps[i]));
    json_t *jdef = json_array();
    for (int i = 0; i < rep.n; i++)
      json_array_append_new(
          jdef, json_pack("{s:s, s:s, s:s}", "defect",
                          ota_module_defect_tag(rep.items[i].defect), "error",
                          ota_strerror_name(rep.items[i].err), "message",
                          rep.items[i].msg));
    json_t *o = json_pack(
        "{s:s, s:b, s:i, s:s, s:s, s:i, s:s, s:i, s:i, s:o, s:s, s:s, s:i, "
        "s:i, s:o}",
        "file", path, "valid", valid, "platform", in->platform, "platform_name",
        platform_name(in->platform), "function", ota_fn_name(in->func), "func",
        in->func, "module", mod, "index", in->index, "version", in->version,
        "release", rel ? json_string(rel) : json_null(), "start", start, "end",
        end, "header_offset", (int)m.hdr_offset, "size", (int)len,
        "dependencies", jd);
    json_object_set_new(o, "crc",
                        json_pack("{s:b, s:s, s:s}", "ok", crc_ok, "stored",
                                  crc_s, "computed", crc_c));
    json_object_set_new(o, "sha256",
                        json_pack("{s:b, s:s, s:s}", "ok", sha_ok, "stored",
                                  sha_s, "computed", sha_c));
    json_object_set_new(o, "product_id", json_integer(m.suffix.product_id));
    json_object_set_new(o, "product_version",
                        json_integer(m.suffix.product_version));
    json_object_set_new(o, "suffix_size", json_integer(m.suffix.size));
    json_object_set_new(o, "defects", jdef);
    json_array_append_new(arr, o);
  } else {
    printf("%s\n", path);
    printf("  platform:     %s (%u)\n", platform_name(in->platform),
           in->platform);
    printf("  module:       %s module %c/%u, version %u", ota_fn_name(in->func),
           ota_fn_letter(in->func), in->index, in->version);
    if (rel)
      printf(" (release %s)", rel);
    printf("\n  address:      0x%08x .. 0x%08x, header at offset 0x%zx\n",
           in->start, in->end, m.hdr_offset);
    printf("  size:         %zu bytes\n", len);
    printf("  depends on:   ");
    int nd = 0;
    for (int i = 0; i < 2; i++)
      if (deps[i]->func != OTA_FN_NONE) {
        if (nd++)
          printf(", ");
        text_dep(cat, deps[i]);
      }
    printf("%s\n", nd ? "" : "nothing");
    if (crc_ok)
      printf("  CRC-32:       ok (0x%08x)\n", m.crc_stored);
    else
      printf("  CRC-32:       MISMATCH (stored 0x%08x, computed 0x%08x)\n",
             m.crc_stored, m.crc_computed);
    if (sha_ok)
      printf("  SHA-256:      ok (%s)\n", sha_s);
    else
      printf("  SHA-256:      MISMATCH (stored %s,\n"
             "                          computed %s)\n",
             sha_s, sha_c);
    printf("  product:      id %u%s, version %u%s\n", m.suffix.product_id,
           m.suffix.product_id == OTA_MODULE_PRODUCT_NONE ? " (none)" : "",
           m.suffix.product_version,
           m.suffix.product_version == OTA_MODULE_PRODUCT_NONE ? " (none)"
                                                               : "");
    if (valid)
      printf("  status:       valid\n");
    else
      printf("  status:       INVALID (%d defect%s)\n", rep.n,
             rep.n == 1 ? "" : "s");
    for (int i = 0; i < rep.n; i++)
      printf("  defect:       %s\n", rep.items[i].msg);
    printf("\n");
  }
  free(buf);
  return valid;
}

static int run(int argc, char **argv) {
  static const struct option opts[] = {
      {"json", no_argument, NULL, 'j'},
      {"catalog", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int json = 0, c, ex;
  const char *catpath = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "jc:h", opts, NULL)) != -1) {
    switch (c) {
    case 'j':
      json = 1;
      break;
    default:
      if ((ex = cli_opt_catalog(c, &catpath, usage)) >= 0)
        return ex;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "otalab inspect: no FILE given\n");
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  ota_catalog_t cat;
  char err[256] = "";
  int have_cat = cli_catalog_load(&cat, &catpath, err, sizeof err) == 0;
  if (!have_cat)
    fprintf(stderr,
            "otalab inspect: catalogue %s not loaded (%s); release names "
            "omitted\n",
            catpath, err[0] ? err : "error");

  json_t *arr = json ? json_array() : NULL;
  int all_valid = 1;
  for (int i = optind; i < argc; i++)
    all_valid &= inspect_one(argv[i], have_cat ? &cat : NULL, arr);
  if (arr) {
    char *s = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s)
      printf("%s\n", s);
    free(s);
    json_decref(arr);
  }
  ota_catalog_free(&cat);
  return all_valid ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}

const cli_cmd_t cli_cmd_inspect = {
    "inspect", "show and validate Electron module binaries (.bin)", run};
