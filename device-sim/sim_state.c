/* otalab-device persistence: the state file (device flash + DTLS session +
 * CoAP message id) and the fixture-directory module loader (PROTOCOL.md 1.4,
 * 4.6). */
#include "sim_state.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "otalab/err.h"
#include "otalab/file.h"
#include "otalab/log.h"

/* File layout (little-endian):
 *   "OTLDSIM1" | u32 device blob length | device blob (ota_device_save)
 *   | u32 session length | session | u16 next CoAP message id */
static const char MAGIC[8] = {'O', 'T', 'L', 'D', 'S', 'I', 'M', '1'};

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

int sim_read_file(const char *path, uint8_t **buf, size_t *len) {
  return ota_file_read(path, buf, len);
}

int sim_state_load(const char *path, ota_device_t *dev,
                   const ota_catalog_t *cat, sim_persist_t *p) {
  uint8_t *b;
  size_t n;
  int rc = sim_read_file(path, &b, &n);
  if (rc)
    return rc;
  memset(p, 0, sizeof *p);
  rc = OTA_EPARSE;
  if (n < 12 || memcmp(b, MAGIC, 8))
    goto out;
  size_t dl = get32(b + 8), off = 12 + dl;
  if (dl > n - 12 || n - off < 6)
    goto out;
  size_t sl = get32(b + off);
  if (sl > SIM_SESSION_MAX || sl + 6 != n - off)
    goto out;
  rc = ota_device_load(dev, cat, b + 12, dl);
  if (rc)
    goto out;
  memcpy(p->session, b + off + 4, sl);
  p->session_len = sl;
  p->next_mid = (uint16_t)(b[off + 4 + sl] | b[off + 5 + sl] << 8);
out:
  free(b);
  return rc;
}

int sim_state_save(const char *path, const ota_device_t *dev,
                   const sim_persist_t *p, int durable) {
  size_t dl = 0;
  ota_device_save(dev, NULL, 0, &dl);
  size_t n = 12 + dl + 4 + p->session_len + 2;
  uint8_t *b = malloc(n);
  if (!b)
    return OTA_ENOMEM;
  memcpy(b, MAGIC, 8);
  put32(b + 8, (uint32_t)dl);
  int rc = ota_device_save(dev, b + 12, dl, &dl);
  if (rc) {
    free(b);
    return rc;
  }
  put32(b + 12 + dl, (uint32_t)p->session_len);
  memcpy(b + 16 + dl, p->session, p->session_len);
  b[n - 2] = (uint8_t)p->next_mid;
  b[n - 1] = (uint8_t)(p->next_mid >> 8);

  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
    free(b);
    return OTA_EINVAL;
  }
  rc = OTA_EIO;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0) {
    size_t w = 0;
    while (w < n) {
      ssize_t r = write(fd, b + w, n - w);
      if (r <= 0)
        break;
      w += (size_t)r;
    }
    if (w == n && (!durable || fsync(fd) == 0))
      rc = 0;
    if (close(fd))
      rc = OTA_EIO;
    if (rc == 0 && rename(tmp, path))
      rc = OTA_EIO;
    if (rc)
      unlink(tmp);
  }
  free(b);
  if (rc)
    OTA_LOGW("state: cannot write %s", path);
  else
    OTA_LOGD("state: saved %s (%zu bytes, session %zu bytes)", path, n,
             p->session_len);
  return rc;
}

int sim_fixture_load(void *ud, const ota_cat_module_t *m, uint8_t **buf,
                     size_t *len) {
  const sim_fixture_loader_t *l = ud;
  char path[4096];
  if (m->id.func == OTA_FN_BOOTLOADER)
    snprintf(path, sizeof path, "%s/electron-bootloader-%s.bin", l->dir,
             l->release);
  else
    snprintf(path, sizeof path, "%s/%s-%s-electron.bin", l->dir, m->file,
             l->release);
  int rc = sim_read_file(path, buf, len);
  if (rc == 0) {
    OTA_LOGI("provision: %s (%zu bytes)", path, *len);
    return 0;
  }
  OTA_LOGW("provision: %s: %s; synthesizing %c/%u v%u", path, ota_strerror(rc),
           ota_fn_letter(m->id.func), m->id.index, m->id.version);
  return ota_device_build_module(NULL, m, buf, len);
}
