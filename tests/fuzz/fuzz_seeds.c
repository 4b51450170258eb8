/* Seed corpora for the libFuzzer targets, written into the build tree:
 * the datagrams and payloads of fixtures/vectors/coap.json, a few hand-made
 * payloads (Goodbye, UpdateDone results), and small well-formed Electron
 * modules from ota_module_build() (PROTOCOL.md 4), and the describe JSON
 * of devices provisioned at a few releases (PROTOCOL.md 3.1). Usage:
 *   fuzz_seeds VECTORS.json CATALOG.json OUTDIR
 *     -> OUTDIR/{coap,msg,module,describe}/
 */
#include "otalab/catalog.h"
#include "otalab/device.h"
#include "otalab/module.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int put(const char *dir, const char *sub, const char *name,
               const void *p, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(p, 1, n, f) != n)) {
    perror(path);
    if (f)
      fclose(f);
    return -1;
  }
  return fclose(f);
}

/* Hex with optional spaces -> bytes; returns length or -1. */
static long unhex(const char *s, uint8_t *out, size_t cap) {
  size_t n = 0;
  int hi = -1;
  for (; *s; s++) {
    if (*s == ' ')
      continue;
    int v = *s >= '0' && *s <= '9'   ? *s - '0'
            : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
            : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                     : -1;
    if (v < 0)
      return -1;
    if (hi < 0) {
      hi = v;
    } else {
      if (n >= cap)
        return -1;
      out[n++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  return hi < 0 ? (long)n : -1;
}

static int vectors(const char *json, const char *dir) {
  json_error_t err;
  json_t *root = json_load_file(json, 0, &err);
  if (!root) {
    fprintf(stderr, "%s:%d: %s\n", json, err.line, err.text);
    return -1;
  }
  size_t i;
  json_t *v;
  int count = 0, rc = 0;
  json_array_foreach(json_object_get(root, "vectors"), i, v) {
    static uint8_t buf[4096];
    char name[300];
    const char *vn = json_string_value(json_object_get(v, "name"));
    const char *hex = json_string_value(json_object_get(v, "hex"));
    const char *pl = json_string_value(json_object_get(v, "payload"));
    long n = hex ? unhex(hex, buf, sizeof buf) : -1;
    if (!vn || n < 0)
      continue;
    snprintf(name, sizeof name, "dgram_%s", vn);
    rc |= put(dir, "coap", name, buf, (size_t)n);
    rc |= put(dir, "msg", name, buf, (size_t)n);
    n = pl ? unhex(pl, buf, sizeof buf) : -1;
    if (n > 0) {
      snprintf(name, sizeof name, "payload_%s", vn);
      rc |= put(dir, "msg", name, buf, (size_t)n);
    }
    count++;
  }
  json_decref(root);
  fprintf(stderr, "fuzz_seeds: %d vectors from %s\n", count, json);
  return count ? rc : -1;
}

static int payloads(const char *dir) {
  static const struct {
    const char *name, *bytes;
    size_t len;
  } p[] = {
      {"goodbye", "\x00\x05\x8c\x01\xac\x02\x00", 7},
      {"done_okerr",
       "{\"r\":\"ok\",\"u\":{\"f\":\"s\",\"n\":\"2\",\"v\":110,"
       "\"p\":10}}",
       0},
      {"done_error", "{\"r\":\"error\"}", 0},
      {"done_int", "{\"r\":-1390}", 0},
      {"chunk_missed", "\x00\x01\x00\x07\x01\x00", 6},
      {"update_begin", "\x01\x02\x00\x00\x01\x00\x00\x01\x00\x02\x00\x00", 12},
  };
  int rc = 0;
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    rc |= put(dir, "msg", p[i].name, p[i].bytes,
              p[i].len ? p[i].len : strlen(p[i].bytes));
  return rc;
}

static int modules(const char *dir) {
  static const struct {
    uint8_t func, index;
    uint16_t version;
    uint32_t size;
  } s[] = {{OTA_FN_BOOTLOADER, 0, 11, 1024},
           {OTA_FN_SYSTEM, 1, 110, 1536},
           {OTA_FN_SYSTEM, 2, 110, 1024},
           {OTA_FN_SYSTEM, 3, 110, 512},
           {OTA_FN_USER, 1, 6, 768}};
  static uint8_t buf[4096];
  int rc = 0;
  for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
    ota_module_spec_t spec;
    ota_module_spec_init(&spec, s[i].func, s[i].index, s[i].version);
    spec.size = s[i].size;
    spec.seed = (uint32_t)i;
    if (s[i].func == OTA_FN_USER) {
      spec.deps[0] = (ota_modref_t){OTA_FN_SYSTEM, 2, 110};
      spec.product_id = 10;
    }
    size_t len = 0;
    char name[64];
    if (ota_module_build(&spec, buf, sizeof buf, &len) != 0)
      return -1;
    snprintf(name, sizeof name, "%c%u_v%u", ota_fn_letter(s[i].func),
             s[i].index, s[i].version);
    rc |= put(dir, "module", name, buf, len);
  }
  return rc;
}

/* Describe JSON as devices of several releases write it, plus a 0.6.x-style
 * empty slot and a repaired entry written by hand. */
static int describes(const char *catalog, const char *dir) {
  static ota_catalog_t cat;
  static ota_device_t dev;
  static char buf[8192];
  static const char *rels[] = {"0.5.3", "0.6.2", "1.4.4", "2.3.1"};
  char err[256] = "";
  int rc = 0;
  ota_catalog_init(&cat);
  if (ota_catalog_load_file(&cat, catalog, err, sizeof err)) {
    fprintf(stderr, "fuzz_seeds: %s: %s\n", catalog, err);
    return -1;
  }
  for (size_t i = 0; i < sizeof rels / sizeof rels[0]; i++) {
    ota_device_init(&dev, &cat, NULL);
    size_t len = 0;
    if (ota_device_provision(&dev, rels[i], NULL, NULL, NULL, 0) == 0)
      for (int flags = 1; flags <= 3; flags += 2)
        if (ota_device_describe_json(&dev, flags, buf, sizeof buf, &len) == 0) {
          char name[64];
          snprintf(name, sizeof name, "describe_%s_f%d", rels[i], flags);
          rc |= put(dir, "describe", name, buf, len);
        }
    ota_device_free(&dev);
  }
  ota_catalog_free(&cat);
  static const char hand[] =
      "{\"p\":10,\"m\":[{\"s\":16384,\"l\":\"m\",\"vc\":30,\"vv\":30,"
      "\"f\":\"b\",\"n\":\"0\",\"v\":11,\"d\":[]},{\"s\":131072,\"l\":"
      "\"m\",\"vc\":30,\"vv\":26,\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":"
      "110}]},{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"u\","
      "\"n\":1,\"v\":6,\"u\":\"0123456789abcdef0123456789abcdef0123456789ab"
      "cdef0123456789abcdef\",\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":110}]},"
      "{\"s\":0,\"l\":\"f\",\"vc\":0,\"vv\":0}]}";
  rc |= put(dir, "describe", "describe_hand", hand, sizeof hand - 1);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: fuzz_seeds VECTORS.json CATALOG.json OUTDIR\n");
    return 2;
  }
  const char *subs[] = {"", "/coap", "/msg", "/module", "/describe"};
  for (size_t i = 0; i < 5; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", argv[3], subs[i]);
    if (mkdir(path, 0777) && errno != EEXIST) {
      perror(path);
      return 1;
    }
  }
  if (vectors(argv[1], argv[3]) || payloads(argv[3]) || modules(argv[3]) ||
      describes(argv[2], argv[3]))
    return 1;
  return 0;
}
