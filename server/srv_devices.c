/* otalab-server device table: per-device connection state and the registry
 * of device public keys (files data/devices/<id>.pub.pem), PROTOCOL.md 1.2. */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/err.h"
#include "srv.h"

/* Rows are looked up by id (REST, Hello) and by session (every datagram):
 * linear scans cost ~10,000 compares per message with a 10,000-device fleet.
 * Two open-addressing indexes, linear probing, at most half full. */

static size_t hash_id(const char *id) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *id; id++)
    h = (h ^ (uint8_t)*id) * 1099511628211ull;
  return (size_t)(h ^ h >> 32);
}

static size_t hash_ptr(const void *p) {
  uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 29);
}

void srv_devices_init(srv_devices_t *t, const char *data_dir) {
  memset(t, 0, sizeof *t);
  t->data_dir = data_dir;
}

int srv_devices_setup(srv_devices_t *t, size_t max) {
  if (!max)
    max = SRV_MAX_DEVICES_DEFAULT;
  size_t slots = 16;
  while (slots < 2 * max)
    slots *= 2;
  t->rows = calloc(max, sizeof *t->rows);
  t->by_id = calloc(slots, sizeof *t->by_id);
  t->by_sess = calloc(slots, sizeof *t->by_sess);
  if (!t->rows || !t->by_id || !t->by_sess || max > UINT32_MAX - 1) {
    free(t->rows), free(t->by_id), free(t->by_sess);
    t->rows = NULL, t->by_id = t->by_sess = NULL;
    return OTA_ENOMEM;
  }
  t->cap = max;
  t->mask = slots - 1;
  return 0;
}

void srv_devices_free(srv_devices_t *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->rows[i].describe);
    t->rows[i].describe = NULL;
    srv_ota_free(&t->rows[i]);
    srv_cloud_free(&t->rows[i]);
  }
  free(t->rows), free(t->by_id), free(t->by_sess);
  t->rows = NULL, t->by_id = t->by_sess = NULL;
  t->n = t->cap = 0;
}

srv_device_t *srv_devices_find(srv_devices_t *t, const char *id) {
  if (!t->cap)
    return NULL;
  for (size_t i = hash_id(id) & t->mask; t->by_id[i]; i = (i + 1) & t->mask)
    if (!strcmp(t->rows[t->by_id[i] - 1].id, id))
      return &t->rows[t->by_id[i] - 1];
  return NULL;
}

srv_device_t *srv_devices_get(srv_devices_t *t, const char *id) {
  srv_device_t *d = srv_devices_find(t, id);
  if (d || t->n == t->cap)
    return d;
  d = &t->rows[t->n++];
  memset(d, 0, sizeof *d);
  snprintf(d->id, sizeof d->id, "%s", id);
  size_t i = hash_id(d->id) & t->mask;
  while (t->by_id[i])
    i = (i + 1) & t->mask;
  t->by_id[i] = (uint32_t)t->n;
  return d;
}

srv_device_t *srv_devices_by_session(srv_devices_t *t, const void *session) {
  if (!session || !t->cap)
    return NULL;
  for (size_t i = hash_ptr(session) & t->mask; t->by_sess[i];
       i = (i + 1) & t->mask)
    if (t->rows[t->by_sess[i] - 1].session == session)
      return &t->rows[t->by_sess[i] - 1];
  return NULL;
}

/* Remove slot `i` from the session index: shift later entries of the probe
 * run back so that every entry stays reachable from its home slot. */
static void sess_unlink(srv_devices_t *t, size_t i) {
  size_t j = i;
  for (;;) {
    j = (j + 1) & t->mask;
    if (!t->by_sess[j])
      break;
    size_t k = hash_ptr(t->rows[t->by_sess[j] - 1].session) & t->mask;
    /* Entry j may move to i unless its home k lies cyclically in (i, j]. */
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      t->by_sess[i] = t->by_sess[j];
      i = j;
    }
  }
  t->by_sess[i] = 0;
}

void srv_devices_set_session(srv_devices_t *t, srv_device_t *d, void *session) {
  if (d->session == session)
    return;
  uint32_t row = (uint32_t)(d - t->rows) + 1;
  if (d->session) {
    for (size_t i = hash_ptr(d->session) & t->mask; t->by_sess[i];
         i = (i + 1) & t->mask)
      if (t->by_sess[i] == row) {
        sess_unlink(t, i);
        break;
      }
  }
  d->session = session;
  if (session) {
    size_t i = hash_ptr(session) & t->mask;
    while (t->by_sess[i])
      i = (i + 1) & t->mask;
    t->by_sess[i] = row;
  }
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
  if (d->describe && strlen(d->describe) == len &&
      !memcmp(d->describe, json, len))
    return; /* the same text again (every reconnect): keep the copy */
  char *c = malloc(len + 1);
  if (!c)
    return;
  memcpy(c, json, len);
  c[len] = 0;
  free(d->describe);
  d->describe = c;
}
