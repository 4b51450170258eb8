/* otalab-device persistence: one state file holding the device core's flash
 * (ota_device_save) plus the DTLS session and CoAP message id, written
 * atomically; provisioning from fixture files (PROTOCOL.md 1.4, 4.6). */
#ifndef OTALAB_SIM_STATE_H
#define OTALAB_SIM_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "otalab/device.h"

#define SIM_SESSION_MAX 4096

/* What the state file keeps beside the device. */
typedef struct {
  uint8_t session[SIM_SESSION_MAX]; /* mbedtls_ssl_session_save bytes */
  size_t session_len;               /* 0: none (full handshake) */
  uint16_t next_mid;                /* CoAP message id to continue with */
} sim_persist_t;

/* Load `path` into dev (bound to cat) and p. Returns 0, OTA_ENOENT (no file),
 * OTA_EPARSE (not a state file) or ota_device_load's error. */
int sim_state_load(const char *path, ota_device_t *dev,
                   const ota_catalog_t *cat, sim_persist_t *p);
/* Write dev and p to `path` atomically (path.tmp, fsync when `durable`,
 * rename). Returns 0, OTA_EIO or OTA_ENOMEM. */
int sim_state_save(const char *path, const ota_device_t *dev,
                   const sim_persist_t *p, int durable);

/* ota_module_loader_fn reading the release's public file names from a
 * directory (ud = sim_fixture_loader_t): system-partN-REL-electron.bin,
 * electron-bootloader-REL.bin. A missing file falls back to
 * ota_device_build_module (logged). */
typedef struct {
  const char *dir;
  const char *release;
} sim_fixture_loader_t;
int sim_fixture_load(void *ud, const ota_cat_module_t *m, uint8_t **buf,
                     size_t *len);

/* Read a whole file (malloc'd, *len set). Returns 0, OTA_ENOENT, OTA_EIO,
 * OTA_ENOMEM. */
int sim_read_file(const char *path, uint8_t **buf, size_t *len);

#endif
