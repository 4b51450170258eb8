/* otalab mkfixtures: write every catalogue release's modules as .bin files in
 * the real format and public file names, plus a manifest. Source:
 * PROTOCOL.md 4.6, 5.1, 5.2 (file name -> module mapping); catalogue
 * fixtures/catalog. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "otalab/catalog.h"
#include "otalab/err.h"
#include "otalab/module.h"

#define MKFIX_MAX_SIZE (1024u * 1024u)

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: otalab mkfixtures --out DIR [--catalog PATH] [--quiet]\n\n"
      "Write each module of every catalogue release as a module binary\n"
      "with the catalogue's size, address and dependencies and\n"
      "deterministic content (same bytes on every run):\n"
      "  system-partN-RELEASE-electron.bin, electron-bootloader-RELEASE.bin\n"
      "and DIR/manifest.json listing them.\n\n"
      "  --out DIR       output directory (created if missing)\n"
      "  --catalog PATH  release catalogue (default %s)\n"
      "  --quiet         print nothing but errors\n",
      cli_default_catalog());
}

static int mkdir_p(const char *dir) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp)
    return OTA_EINVAL;
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0777) && errno != EEXIST)
        return OTA_EIO;
      *p = '/';
    }
  if (mkdir(tmp, 0777) && errno != EEXIST)
    return OTA_EIO;
  return 0;
}

/* FNV-1a of the release name: a stable per-release content seed. */
static uint32_t name_seed(const char *s) {
  uint32_t h = 2166136261u;
  while (*s)
    h = (h ^ (uint8_t)*s++) * 16777619u;
  return h;
}

static void hex(char *out, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", p[i]);
}

/* The public file name of a catalogue module. */
static void file_name(char *out, size_t cap, const ota_cat_release_t *rel,
                      const ota_cat_module_t *mod) {
  if (mod->id.func == OTA_FN_BOOTLOADER)
    snprintf(out, cap, "electron-bootloader-%s.bin", rel->name);
  else
    snprintf(out, cap, "%s-%s-electron.bin", mod->file, rel->name);
}

static int run(int argc, char **argv) {
  static const struct option opts[] = {
      {"out", required_argument, NULL, 'o'},
      {"catalog", required_argument, NULL, 'c'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *outdir = NULL, *catpath = NULL;
  int quiet = 0, c, ex;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:c:qh", opts, NULL)) != -1) {
    switch (c) {
    case 'o':
      outdir = optarg;
      break;
    case 'q':
      quiet = 1;
      break;
    default:
      if ((ex = cli_opt_catalog(c, &catpath, usage)) >= 0)
        return ex;
    }
  }
  if (!outdir || optind != argc) {
    fprintf(stderr, "otalab mkfixtures: --out DIR is needed\n");
    usage(stderr);
    return CLI_EXIT_USAGE;
  }

  ota_catalog_t cat;
  char err[256] = "";
  int rc = cli_catalog_load(&cat, &catpath, err, sizeof err);
  if (rc) {
    fprintf(stderr, "otalab mkfixtures: %s: %s\n", catpath,
            err[0] ? err : ota_strerror(rc));
    return CLI_EXIT_FAIL;
  }
  uint8_t *buf = malloc(MKFIX_MAX_SIZE);
  json_t *mods = json_array();
  size_t nfiles = 0, nbytes = 0;
  rc = buf ? mkdir_p(outdir) : OTA_ENOMEM;
  if (rc) {
    fprintf(stderr, "otalab mkfixtures: %s: %s\n", outdir, ota_strerror(rc));
    goto out;
  }
  for (size_t r = 0; r < cat.nreleases && !rc; r++) {
    const ota_cat_release_t *rel = &cat.releases[r];
    for (int i = 0; i < rel->nmodules && !rc; i++) {
      const ota_cat_module_t *mod = &rel->modules[i];
      char name[128], path[4096];
      file_name(name, sizeof name, rel, mod);
      snprintf(path, sizeof path, "%s/%s", outdir, name);
      if (mod->size > MKFIX_MAX_SIZE) {
        fprintf(stderr, "otalab mkfixtures: %s: catalogue size %u too big\n",
                name, mod->size);
        rc = OTA_EINVAL;
        break;
      }
      ota_module_spec_t spec;
      ota_module_spec_init(&spec, mod->id.func, mod->id.index, mod->id.version);
      spec.start = mod->start_addr;
      spec.size = mod->size;
      spec.deps[0] = mod->deps[0];
      spec.deps[1] = mod->deps[1];
      spec.seed = name_seed(rel->name);
      size_t len = 0;
      rc = ota_module_build(&spec, buf, MKFIX_MAX_SIZE, &len);
      if (rc == 0)
        rc = cli_write_file(path, buf, len);
      if (rc) {
        fprintf(stderr, "otalab mkfixtures: %s: %s\n", name, ota_strerror(rc));
        break;
      }
      ota_module_t m;
      if ((rc = ota_module_parse(buf, len, &m))) {
        fprintf(stderr, "otalab mkfixtures: %s: built but unparsable: %s\n",
                name, ota_strerror(rc));
        break;
      }
      char sha[65], usha[65], crc[12];
      uint8_t whole[32];
      mbedtls_sha256_ret(buf, len, whole, 0);
      hex(sha, whole, 32);
      hex(usha, m.suffix.sha256, 32);
      snprintf(crc, sizeof crc, "%08x", m.crc_stored);
      json_t *deps = json_array();
      for (int d = 0; d < 2; d++)
        if (mod->deps[d].func != OTA_FN_NONE)
          json_array_append_new(deps, json_pack("{s:i, s:i, s:i}", "func",
                                                mod->deps[d].func, "index",
                                                mod->deps[d].index, "version",
                                                mod->deps[d].version));
      char letter[2] = {ota_fn_letter(mod->id.func), 0};
      json_array_append_new(
          mods,
          json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:I, s:I, s:o, s:s, "
                    "s:s, s:s, s:i, s:i, s:b}",
                    "file", name, "release", rel->name, "name", mod->file,
                    "function", letter, "func", mod->id.func, "index",
                    mod->id.index, "version", mod->id.version, "start",
                    (json_int_t)mod->start_addr, "size", (json_int_t)len,
                    "deps", deps, "sha256", sha, "suffix_sha256", usha, "crc32",
                    crc, "product_id", OTA_MODULE_PRODUCT_NONE,
                    "product_version", OTA_MODULE_PRODUCT_NONE, "size_assumed",
                    mod->size_assumed));
      nfiles++;
      nbytes += len;
      if (!quiet)
        printf("%-40s %c/%u v%-5u %7zu bytes\n", name, letter[0], mod->id.index,
               mod->id.version, len);
    }
  }
  if (rc == 0) {
    json_t *root = json_pack("{s:s, s:i, s:o}", "catalog", catpath, "platform",
                             OTA_PLATFORM_ELECTRON, "modules", mods);
    mods = NULL;
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", outdir);
    rc = text ? cli_write_file(path, (const uint8_t *)text, strlen(text))
              : OTA_ENOMEM;
    if (rc)
      fprintf(stderr, "otalab mkfixtures: %s: %s\n", path, ota_strerror(rc));
    free(text);
    json_decref(root);
  }
  if (rc == 0 && !quiet)
    printf("%zu modules of %zu releases, %zu bytes, in %s\n", nfiles,
           cat.nreleases, nbytes, outdir);
out:
  json_decref(mods);
  free(buf);
  ota_catalog_free(&cat);
  return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

const cli_cmd_t cli_cmd_mkfixtures = {
    "mkfixtures", "write every catalogue release's modules as .bin fixtures",
    run};
