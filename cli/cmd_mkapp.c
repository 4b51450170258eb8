/* otalab mkapp: build a user part (u/1 @0x08080000) that needs a given release,
 * i.e. depends on s/2 >= that release's system version. Source: PROTOCOL.md
 * 2.3 (product id default), 4.6 (user parts depend only on s/2), 5.1. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "otalab/catalog.h"
#include "otalab/err.h"
#include "otalab/module.h"

#define MKAPP_DEFAULT_VERSION 6     /* user module version, as 2.x builds */
#define MKAPP_DEFAULT_PRODUCT_ID 10 /* old builds: PRODUCT_ID = platform id */
#define MKAPP_MAX_SIZE (1024L * 1024L)

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: otalab mkapp --requires RELEASE --out FILE [options]\n\n"
      "Build a user part u/1 @0x08080000 depending on s/2 >= the system\n"
      "module version of RELEASE (from the catalogue). RELEASE may also\n"
      "be a bare system module version (e.g. 108) not in the catalogue.\n\n"
      "  --requires REL         release name (\"0.6.2\") or module version\n"
      "  --out FILE             where to write the .bin\n"
      "  --size N               file size, e.g. 8K (default 8K)\n"
      "  --version N            user module version (default %d)\n"
      "  --product-id N|none    suffix product id (default %d, the\n"
      "                         platform id, as pre-1.x builds)\n"
      "  --product-version N|none  (default none = 65535)\n"
      "  --seed N               content seed (default 0)\n"
      "  --catalog PATH         release catalogue (default %s)\n",
      MKAPP_DEFAULT_VERSION, MKAPP_DEFAULT_PRODUCT_ID, cli_default_catalog());
}

/* "none" -> 0xFFFF (if allowed), else a number in 0..max; -1 on error. */
static long long parse_num(const char *s, long long max, int allow_none) {
  if (allow_none && !strcmp(s, "none"))
    return OTA_MODULE_PRODUCT_NONE;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 0);
  if (errno || end == s || *end || v < 0 || v > max)
    return -1;
  return v;
}

static long parse_u16(const char *s, int allow_none) {
  return (long)parse_num(s, 0xFFFF, allow_none);
}

static int run(int argc, char **argv) {
  static const struct option opts[] = {
      {"requires", required_argument, NULL, 'r'},
      {"out", required_argument, NULL, 'o'},
      {"size", required_argument, NULL, 's'},
      {"version", required_argument, NULL, 'v'},
      {"product-id", required_argument, NULL, 'p'},
      {"product-version", required_argument, NULL, 'P'},
      {"seed", required_argument, NULL, 'S'},
      {"catalog", required_argument, NULL, 'c'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *requires = NULL, *out = NULL, *catpath = NULL;
  long size = 8192, version = MKAPP_DEFAULT_VERSION;
  long pid = MKAPP_DEFAULT_PRODUCT_ID, pver = OTA_MODULE_PRODUCT_NONE;
  long long seed = 0;
  int c, ex;
  optind = 1;
  while ((c = getopt_long(argc, argv, "r:o:s:v:p:P:S:c:h", opts, NULL)) != -1) {
    switch (c) {
    case 'r':
      requires
      = optarg;
      break;
    case 'o':
      out = optarg;
      break;
    case 's':
      size = cli_parse_size(optarg);
      break;
    case 'v':
      version = parse_u16(optarg, 0);
      break;
    case 'p':
      pid = parse_u16(optarg, 1);
      break;
    case 'P':
      pver = parse_u16(optarg, 1);
      break;
    case 'S':
      seed = parse_num(optarg, 0xFFFFFFFFll, 0);
      break;
    default:
      if ((ex = cli_opt_catalog(c, &catpath, usage)) >= 0)
        return ex;
    }
  }
  if (!requires || !out || optind != argc) {
    fprintf(stderr, "otalab mkapp: --requires and --out are needed\n");
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (size < (long)OTA_MODULE_MIN_SIZE || size > MKAPP_MAX_SIZE ||
      version < 0 || pid < 0 || pver < 0 || seed < 0) {
    fprintf(stderr,
            "otalab mkapp: bad --size (%u..%ld), --version, "
            "--product-id, --product-version or --seed\n",
            (unsigned)OTA_MODULE_MIN_SIZE, MKAPP_MAX_SIZE);
    return CLI_EXIT_USAGE;
  }

  ota_catalog_t cat;
  char err[256] = "";
  int have_cat = cli_catalog_load(&cat, &catpath, err, sizeof err) == 0;
  const ota_cat_release_t *rel =
      have_cat ? ota_catalog_find(&cat, requires) : NULL;
  long sysver = rel ? rel->system_version : -1;
  if (!rel && strspn(requires, "0123456789") == strlen(requires))
    sysver = parse_u16(requires, 0);
  if (sysver < 0) {
    fprintf(stderr, "otalab mkapp: unknown release '%s'%s%s\n", requires,
            have_cat ? "" : ": catalogue not loaded: ", have_cat ? "" : err);
    ota_catalog_free(&cat);
    return CLI_EXIT_FAIL;
  }

  ota_module_spec_t spec;
  ota_module_spec_init(&spec, OTA_FN_USER, 1, (uint16_t)version);
  spec.size = (uint32_t)size;
  spec.deps[0] = (ota_modref_t){OTA_FN_SYSTEM, 2, (uint16_t)sysver};
  spec.product_id = (uint16_t)pid;
  spec.product_version = (uint16_t)pver;
  spec.seed = (uint32_t)seed;
  uint8_t *buf = malloc((size_t)size);
  size_t len = 0;
  int rc = buf ? ota_module_build(&spec, buf, (size_t)size, &len) : OTA_ENOMEM;
  if (rc == 0)
    rc = cli_write_file(out, buf, len);
  if (rc) {
    fprintf(stderr, "otalab mkapp: %s: %s\n", out, ota_strerror(rc));
  } else {
    printf("%s: u/1 v%ld, %zu bytes, needs s/2 >= %ld", out, version, len,
           sysver);
    if (rel)
      printf(" (%s)", rel->name);
    printf(", product id %ld, product version %ld\n", pid, pver);
    if (size > (long)OTA_STAGING_SIZE)
      fprintf(stderr,
              "otalab mkapp: warning: %ld bytes exceed the %u-byte "
              "OTA staging area (a deliberately invalid module)\n",
              size, OTA_STAGING_SIZE);
  }
  free(buf);
  ota_catalog_free(&cat);
  return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

const cli_cmd_t cli_cmd_mkapp = {
    "mkapp", "build a user part (.bin) that needs a given release", run};
