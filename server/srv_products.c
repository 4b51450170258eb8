/* otalab-server device registry and products: devices with their public keys,
 * product firmware uploads and releases (PROTOCOL.md 9 "Product firmware"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otalab/electron.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "srv_api.h"

#define MAX_OPTS 16

static const char *opt_products[MAX_OPTS];
static size_t n_products;

int srv_products_option(const char *a, const char *v) {
  if (strcmp(a, "--product"))
    return 0;
  const char *c = v ? strchr(v, ':') : NULL;
  uint32_t id;
  if (!c || !c[1] || srv_parse_u32(v, (size_t)(c - v), &id)) {
    fprintf(stderr, "otalab-server: --product needs ID:NAME (ID > 0)\n");
    return -1;
  }
  if (n_products == MAX_OPTS)
    return -1;
  opt_products[n_products++] = v;
  return 2;
}

int srv_products_setup(void) {
  for (size_t i = 0; i < n_products; i++) {
    const char *c = strchr(opt_products[i], ':');
    uint32_t id = 0;
    srv_parse_u32(opt_products[i], (size_t)(c - opt_products[i]), &id);
    int err = srv_products_create(id, c + 1);
    if (err && err != OTA_EEXIST)
      return err;
  }
  return 0;
}

static void now_iso(char *ts, size_t cap) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  ota_event_time((int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000, ts, cap);
}

json_t *srv_products_device(const char *id) {
  return json_object_get(srv_db.devices, id);
}

uint32_t srv_products_of_device(const char *id) {
  json_t *d = id && *id ? srv_products_device(id) : NULL;
  return (uint32_t)json_integer_value(json_object_get(d, "product_id"));
}

int srv_products_register(const char *id, const char *pem, const char *name,
                          uint32_t product, char *msg, size_t cap) {
  if (strlen(id) != 24 || strspn(id, "0123456789abcdef") != 24) {
    snprintf(msg, cap, "id must be 24 hex digits.");
    return OTA_EINVAL;
  }
  if (!pem || !strstr(pem, "-----BEGIN PUBLIC KEY-----") ||
      !strstr(pem, "-----END PUBLIC KEY-----")) {
    snprintf(msg, cap, "public_key must be a PEM public key.");
    return OTA_EINVAL;
  }
  if (product && !srv_products_get(product)) {
    snprintf(msg, cap, "Product %u not found.", product);
    return OTA_ENOENT;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/devices/%s.pub.pem", srv_db.dir, id);
  if (srv_store_write(path, pem, strlen(pem))) {
    snprintf(msg, cap, "Cannot store the key.");
    return OTA_EIO;
  }
  char ts[32];
  now_iso(ts, sizeof ts);
  json_t *row = json_pack("{s:s,s:s,s:I,s:s}", "id", id, "name",
                          name && *name ? name : id, "product_id",
                          (json_int_t)product, "registered", ts);
  json_object_set_new(srv_db.devices, id, row);
  OTA_LOGI("registry: device %s registered (%s, product %u)", id,
           name && *name ? name : "no name", product);
  return srv_store_commit("devices");
}

json_t *srv_products_get(uint32_t id) {
  char k[16];
  snprintf(k, sizeof k, "%u", id);
  return json_object_get(srv_db.products, k);
}

int srv_products_create(uint32_t id, const char *name) {
  char k[16];
  if (!id || !name || !*name)
    return OTA_EINVAL;
  if (srv_products_get(id))
    return OTA_EEXIST;
  snprintf(k, sizeof k, "%u", id);
  json_object_set_new(srv_db.products, k,
                      json_pack("{s:I,s:s,s:[],s:n}", "id", (json_int_t)id,
                                "name", name, "firmware", "released"));
  OTA_LOGI("products: product %u \"%s\" created", id, name);
  return srv_store_commit("products");
}

static json_t *find_fw(json_t *p, unsigned version) {
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(p, "firmware"), i, f) {
    if (json_integer_value(json_object_get(f, "version")) == version)
      return f;
  }
  return NULL;
}

int srv_products_upload(uint32_t id, unsigned version, const char *title,
                        const uint8_t *bin, size_t len, char *msg, size_t cap) {
  json_t *p = srv_products_get(id);
  if (!p) {
    snprintf(msg, cap, "Product %u not found.", id);
    return OTA_ENOENT;
  }
  if (!version || version > 0xFFFE) {
    snprintf(msg, cap, "version must be 1..65534.");
    return OTA_EINVAL;
  }
  if (find_fw(p, version)) {
    snprintf(msg, cap, "Version %u already uploaded.", version);
    return OTA_EEXIST;
  }
  ota_module_t m;
  ota_module_report_t rep;
  int err = ota_module_parse(bin, len, &m);
  if (err) {
    snprintf(msg, cap, "Not a module: %s.", ota_strerror(err));
    return OTA_EPARSE;
  }
  if (ota_module_validate(&m, len, &rep)) {
    size_t n = (size_t)snprintf(msg, cap, "Invalid module: ");
    for (int k = 0; k < rep.n && n < cap; k++)
      n += (size_t)snprintf(msg + n, cap - n, "%s%s", k ? "; " : "",
                            rep.items[k].msg);
    return OTA_EPARSE;
  }
  if (m.info.platform != OTA_PLATFORM_ELECTRON || m.info.func != OTA_FN_USER) {
    snprintf(msg, cap,
             "Product firmware must be an Electron user part (platform 10, "
             "function 5); this is platform %u function %u.",
             m.info.platform, m.info.func);
    return OTA_EINVAL;
  }
  /* builds without PRODUCT_ID carry 0xFFFF or the platform id (pre-1.x) */
  if (m.suffix.product_id != 0xFFFF &&
      m.suffix.product_id != OTA_PLATFORM_ELECTRON &&
      m.suffix.product_id != (id & 0xFFFF)) {
    snprintf(msg, cap, "The binary is built for product %u, not %u.",
             m.suffix.product_id, id);
    return OTA_EINVAL;
  }
  if (m.suffix.product_version != 0xFFFF &&
      m.suffix.product_version != version) {
    snprintf(msg, cap, "The binary's PRODUCT_VERSION is %u, not %u.",
             m.suffix.product_version, version);
    return OTA_EINVAL;
  }
  char rel[64], path[4096], ts[32];
  snprintf(rel, sizeof rel, "firmware/%u/%u.bin", id, version);
  snprintf(path, sizeof path, "%s/%s", srv_db.dir, rel);
  if (srv_store_write(path, bin, len)) {
    snprintf(msg, cap, "Cannot store the binary.");
    return OTA_EIO;
  }
  now_iso(ts, sizeof ts);
  json_array_append_new(
      json_object_get(p, "firmware"),
      json_pack("{s:I,s:s,s:s,s:I,s:s,s:I}", "version", (json_int_t)version,
                "title", title && *title ? title : "", "file", rel, "size",
                (json_int_t)len, "uploaded_on", ts, "module_version",
                (json_int_t)m.info.version));
  OTA_LOGI("products: product %u firmware v%u stored (%zu bytes, %s)", id,
           version, len, rel);
  return srv_store_commit("products");
}

int srv_products_release(uint32_t id, unsigned version) {
  json_t *p = srv_products_get(id);
  if (!p || !find_fw(p, version))
    return OTA_ENOENT;
  json_object_set_new(p, "released", json_integer(version));
  OTA_LOGI("products: product %u releases firmware v%u", id, version);
  return srv_store_commit("products");
}

int srv_products_released_app(uint32_t id, char *path, size_t cap,
                              unsigned *version) {
  json_t *p = srv_products_get(id);
  json_t *r = json_object_get(p, "released");
  if (!json_is_integer(r))
    return OTA_ENOENT;
  json_t *f = find_fw(p, (unsigned)json_integer_value(r));
  const char *rel = json_string_value(json_object_get(f, "file"));
  if (!rel)
    return OTA_ENOENT;
  int n = snprintf(path, cap, "%s/%s", srv_db.dir, rel);
  if (n < 0 || (size_t)n >= cap)
    return OTA_ENOBUFS;
  if (version)
    *version = (unsigned)json_integer_value(r);
  return 0;
}
