/* otalab-server device table: per-device connection state and the registry
 * of device public keys (files data/devices/<id>.pub.pem), PROTOCOL.md 1.2. */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/err.h"
#include "srv.h"

void srv_devices_init(srv_devices_t *t, const char *data_dir) {
  memset(t, 0, sizeof *t);
  t->data_dir = data_dir;
}

void srv_devices_free(srv_devices_t *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->rows[i].describe);
    t->rows[i].describe = NULL;
    srv_ota_free(&t->rows[i]);
    srv_cloud_free(&t->rows[i]);
  }
  t->n = 0;
}

srv_device_t *srv_devices_find(srv_devices_t *t, const char *id) {
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->rows[i].id, id))
      return &t->rows[i];
  return NULL;
}

srv_device_t *srv_devices_get(srv_devices_t *t, const char *id) {
  srv_device_t *d = srv_devices_find(t, id);
  if (d || t->n == SRV_MAX_DEVICES)
    return d;
  d = &t->rows[t->n++];
  memset(d, 0, sizeof *d);
  snprintf(d->id, sizeof d->id, "%s", id);
  return d;
}

srv_device_t *srv_devices_by_session(srv_devices_t *t, const void *session) {
  if (!session)
    return NULL;
  for (size_t i = 0; i < t->n; i++)
    if (t->rows[i].session == session)
      return &t->rows[i];
  return NULL;
}

int srv_devices_key(const srv_devices_t *t, const char *id, uint8_t *der,
                    size_t cap, size_t *len) {
  char path[4096];
  if (strlen(id) != SRV_ID_HEX || strspn(id, "0123456789abcdef") != SRV_ID_HEX)
    return OTA_EINVAL;
  snprintf(path, sizeof path, "%s/devices/%s.pub.pem", t->data_dir, id);
  FILE *f = fopen(path, "r");
  if (!f)
    return OTA_ENOENT;
  EVP_PKEY *pk = PEM_read_PUBKEY(f, NULL, NULL, NULL);
  fclose(f);
  if (!pk)
    return OTA_EPARSE;
  int n = i2d_PUBKEY(pk, NULL);
  int err = 0;
  if (n <= 0)
    err = OTA_EPARSE;
  else if ((size_t)n > cap)
    err = OTA_ENOBUFS;
  else {
    uint8_t *p = der;
    i2d_PUBKEY(pk, &p);
    *len = (size_t)n;
  }
  EVP_PKEY_free(pk);
  return err;
}

void srv_devices_set_describe(srv_device_t *d, const char *json, size_t len) {
  char *c = malloc(len + 1);
  if (!c)
    return;
  memcpy(c, json, len);
  c[len] = 0;
  free(d->describe);
  d->describe = c;
}
