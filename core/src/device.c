/* The simulated Electron's flash, DCT module queue, boot/apply rules, safe mode
 * and describe/Hello output. Source: PROTOCOL.md 2.3, 2.5, 3, 4.4, 5.2, 6, 7.
 */
#include "otalab/device.h"
#include "otalab/imgstore.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/crc32.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "otalab/ota_rx.h"

/* Size of a synthesized bootloader when the catalogue has no b/0 entry for a
 * release: the real 2.x bootloaders are 15,664-15,672 bytes (PROTOCOL 4.6). */
#define SYNTH_BOOTLOADER_SIZE 15664u
/* Sanity bound for a module image in a saved state. */
#define MAX_IMAGE (1024u * 1024u)

static const uint32_t slot_addr[OTA_SLOT_COUNT] = {
    OTA_ADDR_BOOTLOADER, OTA_ADDR_SYSTEM1, OTA_ADDR_SYSTEM2,
    OTA_ADDR_SYSTEM3,    OTA_ADDR_USER,    OTA_ADDR_FACTORY};
static const uint32_t slot_size[OTA_SLOT_COUNT] = {OTA_SLOT_BOOTLOADER_SIZE,
                                                   OTA_SLOT_SIZE,
                                                   OTA_SLOT_SIZE,
                                                   OTA_SLOT_SIZE,
                                                   OTA_SLOT_SIZE,
                                                   OTA_SLOT_SIZE};

/* ---- names ------------------------------------------------------------- */

const char *ota_dev_state_name(ota_dev_state_t s) {
  switch (s) {
#define OTA_DEV_STATE_NAME(n, t)                                               \
  case n:                                                                      \
    return t;
    OTA_DEV_STATES(OTA_DEV_STATE_NAME)
#undef OTA_DEV_STATE_NAME
  }
  return "?";
}

const char *ota_reset_name(ota_reset_t r) {
  switch (r) {
#define OTA_RESET_NAME(n, v, t)                                                \
  case n:                                                                      \
    return t;
    OTA_RESET_REASONS(OTA_RESET_NAME)
#undef OTA_RESET_NAME
  }
  return "unknown";
}

static void set_state(ota_device_t *dev, ota_dev_state_t st, const char *why) {
  OTA_LOGI("device %02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x: "
           "%s => %s (%s)",
           dev->id[0], dev->id[1], dev->id[2], dev->id[3], dev->id[4],
           dev->id[5], dev->id[6], dev->id[7], dev->id[8], dev->id[9],
           dev->id[10], dev->id[11], ota_dev_state_name(dev->state),
           ota_dev_state_name(st), why);
  dev->state = st;
}

static void whyf(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void whyf(char *why, size_t whylen, const char *fmt, ...) {
  if (!why || !whylen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, whylen, fmt, ap);
  va_end(ap);
}

/* ---- catalogue look-ups (NULL-tolerant wrappers) ------------------------ */

static const ota_cat_release_t *rel_by_sysver(const ota_catalog_t *cat,
                                              uint16_t v) {
  return cat && v ? ota_catalog_find_sysver(cat, v) : NULL;
}

static const ota_cat_release_t *rel_by_name(const ota_catalog_t *cat,
                                            const char *name) {
  return cat && name ? ota_catalog_find(cat, name) : NULL;
}

static const ota_cat_module_t *rel_module(const ota_cat_release_t *rel,
                                          uint8_t func, uint8_t index) {
  return rel ? ota_release_module(rel, func, index) : NULL;
}

/* ---- module views -------------------------------------------------------- */

static int slot_of(uint8_t func, uint8_t index) {
  if (func == OTA_FN_BOOTLOADER && index == 0)
    return OTA_SLOT_BOOT;
  if (func == OTA_FN_SYSTEM && index >= 1 && index <= 3)
    return OTA_SLOT_S1 + index - 1;
  if (func == OTA_FN_USER && index == 1)
    return OTA_SLOT_USER;
  return -1;
}

static int slot_of_addr(uint32_t addr) {
  for (int s = 0; s < OTA_SLOT_COUNT; s++)
    if (slot_addr[s] == addr)
      return s;
  return -1;
}

/* What the checks need of one slot: its header, or nothing. */
typedef struct {
  int present;
  ota_module_info_t info;
} view_t;

static int info_of(const uint8_t *buf, size_t len, ota_module_info_t *info) {
  ota_module_t m;
  /* header only: slot contents were verified when written (boot checks
   * integrity separately), and hashing every slot per call dominated the
   * virtual-time simulation's profile */
  int rc = buf ? ota_module_parse_header(buf, len, &m) : OTA_ENOENT;
  if (rc == 0)
    *info = m.info;
  return rc;
}

static void view_flash(const ota_device_t *dev, view_t v[OTA_SLOT_COUNT]) {
  for (int s = 0; s < OTA_SLOT_COUNT; s++)
    v[s].present = info_of(dev->slot[s].buf, dev->slot[s].len, &v[s].info) == 0;
}

uint16_t ota_device_slot_version(const ota_device_t *dev, ota_slot_t s) {
  ota_module_info_t in;
  if (s >= OTA_SLOT_COUNT ||
      info_of(dev->slot[s].buf, dev->slot[s].len, &in) != 0)
    return 0;
  return in.version;
}

static uint16_t sysver_of(const view_t v[OTA_SLOT_COUNT]) {
  uint16_t min = 0;
  for (int s = OTA_SLOT_S1; s <= OTA_SLOT_S3; s++)
    if (v[s].present && (!min || v[s].info.version < min))
      min = v[s].info.version;
  return min;
}

uint16_t ota_device_system_version(const ota_device_t *dev) {
  view_t v[OTA_SLOT_COUNT];
  view_flash(dev, v);
  return sysver_of(v);
}

const ota_cat_release_t *ota_device_release(const ota_device_t *dev) {
  return rel_by_sysver(dev->cat, ota_device_system_version(dev));
}

const char *ota_device_release_name(const ota_device_t *dev) {
  const ota_cat_release_t *r = ota_device_release(dev);
  return r ? r->name : "unknown";
}

/* Release-dependent behaviour, with fallbacks by system version when the
 * catalogue does not know the release (docs/PROTOCOL.md). */
static int knows_part3(const ota_device_t *dev, uint16_t sysver) {
  const ota_cat_release_t *r = rel_by_sysver(dev->cat, sysver);
  if (r)
    return r->behaviour.knows_part3;
  return sysver == 0 || sysver >= 19;
}

/* <= 0.6.x: one dependency in describe, empty slots listed. */
static int legacy_describe(uint16_t sysver) {
  return sysver < 200;
}

static int dep_met(const view_t v[OTA_SLOT_COUNT], const ota_modref_t *d,
                   int part3) {
  if (d->func == OTA_FN_NONE)
    return 1;
  int s = slot_of(d->func, d->index);
  if (s < 0)
    return 0;
  if (s == OTA_SLOT_S3 && !part3)
    return 1; /* 0.5.x "doesn't know about" module 3: treated as met */
  return v[s].present && v[s].info.version >= d->version;
}

/* The bootloader version the boot rule leaves for s/3 version s3v and an
 * installed bootloader blv; sets *dir to 1 (upgrade), -1 (downgrade), 0. */
static uint16_t boot_rule(const ota_device_t *dev, uint16_t s3v, uint16_t blv,
                          int *dir) {
  *dir = 0;
  const ota_cat_release_t *r = rel_by_sysver(dev->cat, s3v);
  if (!r || !r->bootloader_version)
    return blv;
  uint16_t emb = r->bootloader_version;
  if (blv < emb)
    *dir = 1;
  else if (emb < 100 && blv >= 100)
    *dir = -1; /* 0.6.x downgrades a >= 0.7.0 bootloader */
  return *dir ? emb : blv;
}

/* ---- lifecycle ------------------------------------------------------------
 */

void ota_device_init(ota_device_t *dev, const ota_catalog_t *cat,
                     const uint8_t id[OTA_DEVICE_ID_LEN]) {
  memset(dev, 0, sizeof *dev);
  dev->cat = cat;
  if (id)
    memcpy(dev->id, id, OTA_DEVICE_ID_LEN);
  /* Deterministic identities from the id: IMEI 15 digits, ICCID 20 digits. */
  uint32_t h = ota_crc32(dev->id, OTA_DEVICE_ID_LEN);
  uint32_t g = ota_crc32_update(h, dev->id, OTA_DEVICE_ID_LEN);
  snprintf(dev->imei, sizeof dev->imei, "35%03u%010u", (unsigned)(h % 1000u),
           (unsigned)(g % 1000000000u));
  snprintf(dev->iccid, sizeof dev->iccid, "8934076%03u%010u",
           (unsigned)(g % 1000u), (unsigned)(h % 1000000000u));
  snprintf(dev->cellfw, sizeof dev->cellfw, "23.60");
  dev->state = OTA_DEV_OFF;
  dev->last_reset = OTA_RESET_NONE;
}

/* Every image enters through img_own and leaves through img_drop: with a
 * shared store (a fleet), identical images are kept once. */
static uint8_t *img_own(ota_device_t *dev, uint8_t *buf, size_t len) {
  return dev->images ? ota_imgstore_adopt(dev->images, buf, len) : buf;
}

/* The integrity defects (CRC, truncation) of a held image: hashed once per
 * shared image, not once per device and boot (a fleet boots thousands of
 * times over the same few images). */
static uint32_t img_defects(ota_device_t *dev, const uint8_t *buf, size_t len) {
  uint32_t d;
  if (dev->images && ota_imgstore_memo_get(dev->images, buf, len, &d) == 0)
    return d;
  ota_module_t m;
  ota_module_report_t rep;
  ota_module_parse(buf, len, &m);
  ota_module_validate(&m, len, &rep);
  d = rep.defects & (OTA_MODDEF_CRC | OTA_MODDEF_TRUNCATED);
  if (dev->images)
    ota_imgstore_memo_set(dev->images, buf, len, d);
  return d;
}

static void img_drop(ota_device_t *dev, uint8_t *buf) {
  if (dev->images)
    ota_imgstore_release(dev->images, buf);
  else
    free(buf);
}

static void clear_flash(ota_device_t *dev) {
  for (int s = 0; s < OTA_SLOT_COUNT; s++) {
    img_drop(dev, dev->slot[s].buf);
    dev->slot[s].buf = NULL;
    dev->slot[s].len = 0;
  }
  for (int i = 0; i < dev->npending; i++)
    img_drop(dev, dev->pending[i].buf);
  memset(dev->pending, 0, sizeof dev->pending);
  dev->npending = 0;
  memset(dev->check, 0, sizeof dev->check);
}

void ota_device_free(ota_device_t *dev) {
  if (!dev)
    return;
  clear_flash(dev);
  dev->state = OTA_DEV_OFF;
}

static int dup_bytes(const uint8_t *src, size_t len, uint8_t **out) {
  *out = malloc(len ? len : 1);
  if (!*out)
    return OTA_ENOMEM;
  memcpy(*out, src, len);
  return 0;
}

/* Takes ownership of buf (already through img_own when `owned`). */
static void put_slot_owned(ota_device_t *dev, int s, uint8_t *buf, size_t len) {
  img_drop(dev, dev->slot[s].buf);
  dev->slot[s].buf = buf;
  dev->slot[s].len = buf ? len : 0;
}

/* Takes ownership of a malloc'd buf. */
static void put_slot(ota_device_t *dev, int s, uint8_t *buf, size_t len) {
  put_slot_owned(dev, s, img_own(dev, buf, len), len);
}

int ota_device_build_module(void *ud, const ota_cat_module_t *m, uint8_t **buf,
                            size_t *len) {
  (void)ud;
  ota_module_spec_t spec;
  ota_module_spec_init(&spec, m->id.func, m->id.index, m->id.version);
  if (m->start_addr)
    spec.start = m->start_addr;
  if (m->size)
    spec.size = m->size;
  spec.deps[0] = m->deps[0];
  spec.deps[1] = m->deps[1];
  *buf = malloc(spec.size);
  if (!*buf)
    return OTA_ENOMEM;
  int rc = ota_module_build(&spec, *buf, spec.size, len);
  if (rc) {
    free(*buf);
    *buf = NULL;
  }
  return rc;
}

static int synth_bootloader(const ota_cat_release_t *rel, uint16_t version,
                            uint8_t **buf, size_t *len) {
  const ota_cat_module_t *cm = rel_module(rel, OTA_FN_BOOTLOADER, 0);
  ota_cat_module_t m;
  if (cm && cm->id.version == version) {
    m = *cm;
  } else {
    memset(&m, 0, sizeof m);
    m.id.func = OTA_FN_BOOTLOADER;
    m.id.version = version;
    m.start_addr = OTA_ADDR_BOOTLOADER;
    m.size = SYNTH_BOOTLOADER_SIZE;
  }
  return ota_device_build_module(NULL, &m, buf, len);
}

int ota_device_provision(ota_device_t *dev, const char *release,
                         ota_module_loader_fn load, void *ud,
                         const uint8_t *user_app, size_t user_len) {
  const ota_cat_release_t *rel = rel_by_name(dev->cat, release);
  if (!rel)
    return OTA_ERELEASE;
  if (!load)
    load = ota_device_build_module;
  clear_flash(dev);
  int rc = 0, have_boot = 0;
  for (int i = 0; i < rel->nmodules && i < OTA_CAT_MAX_MODULES; i++) {
    const ota_cat_module_t *m = &rel->modules[i];
    int s = slot_of(m->id.func, m->id.index);
    if (s < 0) {
      rc = OTA_EFUNC;
      goto out;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if ((rc = load(ud, m, &buf, &len)) != 0)
      goto out;
    put_slot(dev, s, buf, len);
    have_boot |= s == OTA_SLOT_BOOT;
  }
  if (!have_boot && rel->bootloader_version) {
    uint8_t *buf = NULL;
    size_t len = 0;
    if ((rc = synth_bootloader(rel, rel->bootloader_version, &buf, &len)))
      goto out;
    put_slot(dev, OTA_SLOT_BOOT, buf, len);
  }
  if (user_app) {
    uint8_t *buf;
    if ((rc = dup_bytes(user_app, user_len, &buf)))
      goto out;
    put_slot(dev, OTA_SLOT_USER, buf, user_len);
  }
  dev->ota_flashed = 0;
  dev->safe_mode_request = 0;
  dev->last_reset = OTA_RESET_NONE;
  if (dev->state != OTA_DEV_OFF)
    set_state(dev, OTA_DEV_OFF, "provisioned");
out:
  if (rc)
    clear_flash(dev);
  return rc;
}

/* ---- UpdateDone checks ----------------------------------------------------
 */

int ota_device_error_code(int err) {
  return ota_rx_syserr_from_err(err); /* one table for device and receiver */
}

/* Defects in the order a report is judged: format first (a truncated file
 * also fails its CRC; "invalid format" is the truer answer), then integrity,
 * platform, function, dependency sanity, address. */
static const uint32_t defect_order[] = {
    OTA_MODDEF_TRUNCATED, OTA_MODDEF_SIZE, OTA_MODDEF_SUFFIX,
    OTA_MODDEF_OFFSET,    OTA_MODDEF_CRC,  OTA_MODDEF_SHA,
    OTA_MODDEF_PLATFORM,  OTA_MODDEF_FUNC, OTA_MODDEF_DEP,
    OTA_MODDEF_TOOBIG,    OTA_MODDEF_ADDR};

/* How verify() obtains the image's CRC-32 and SHA-256. */
typedef enum {
  HASH_COMPUTE, /* hash the bytes */
  HASH_KEEP,    /* hash them and keep the result in dev->rx_hashed */
  HASH_REUSE    /* take dev->rx_hashed when it is this image's, else hash */
} hash_mode_t;

#define RX_TAIL sizeof(((ota_device_t *)0)->rx_hashed.tail)

/* ota_module_parse(), the hashes possibly from dev->rx_hashed (see
 * hash_mode_t). A kept result is used once: HASH_REUSE forgets it. */
static int parse_staged(ota_device_t *dev, const uint8_t *staging, size_t len,
                        hash_mode_t mode, ota_module_t *m) {
  if (mode == HASH_REUSE) {
    int same = dev->rx_hashed.buf == staging && dev->rx_hashed.len == len &&
               len >= RX_TAIL &&
               !memcmp(dev->rx_hashed.tail, staging + len - RX_TAIL, RX_TAIL);
    dev->rx_hashed.buf = NULL;
    if (same) {
      int rc = ota_module_parse_header(staging, len, m);
      if (rc == 0) {
        m->crc_computed = dev->rx_hashed.crc;
        memcpy(m->sha256_computed, dev->rx_hashed.sha256, 32);
      }
      return rc;
    }
  }
  int rc = ota_module_parse(staging, len, m);
  if (mode == HASH_KEEP) {
    dev->rx_hashed.buf = NULL;
    if (rc == 0 && len >= RX_TAIL) {
      dev->rx_hashed.buf = staging;
      dev->rx_hashed.len = len;
      memcpy(dev->rx_hashed.tail, staging + len - RX_TAIL, RX_TAIL);
      dev->rx_hashed.crc = m->crc_computed;
      memcpy(dev->rx_hashed.sha256, m->sha256_computed, 32);
    }
  }
  return rc;
}

/* `dev` is written only for HASH_KEEP and HASH_REUSE (the hash memo). */
static int verify(const ota_device_t *dev, const uint8_t *staging, size_t len,
                  hash_mode_t mode, ota_module_info_t *out_info, char *why,
                  size_t whylen) {
  if (!dev || !staging)
    return OTA_EINVAL;
  if (dev->state == OTA_DEV_OFF || dev->state == OTA_DEV_HARD_FAULT_LOOP) {
    whyf(why, whylen, "device is %s", ota_dev_state_name(dev->state));
    return OTA_ESTATE;
  }
  ota_module_t m;
  int rc = mode == HASH_COMPUTE
               ? ota_module_parse(staging, len, &m)
               : parse_staged((ota_device_t *)dev, staging, len, mode, &m);
  if (rc) {
    whyf(why, whylen, "no module header: %s", ota_strerror(rc));
    return rc;
  }
  if (out_info)
    *out_info = m.info;
  ota_module_report_t rep;
  if (ota_module_validate(&m, len, &rep)) {
    for (size_t k = 0; k < sizeof defect_order / sizeof defect_order[0]; k++)
      for (int i = 0; i < rep.n; i++)
        if (rep.items[i].defect == defect_order[k]) {
          whyf(why, whylen, "%s", rep.items[i].msg);
          return rep.items[i].err;
        }
    whyf(why, whylen, "%s", rep.items[0].msg);
    return rep.items[0].err;
  }
  view_t v[OTA_SLOT_COUNT];
  view_flash(dev, v);
  uint16_t sysver = sysver_of(v);
  int part3 = knows_part3(dev, sysver);
  const ota_module_info_t *in = &m.info;
  if (in->func == OTA_FN_SYSTEM && in->index == 3 && !part3) {
    whyf(why, whylen,
         "system %u HAL has no bounds for s/3 (0x%08x): needs 0.5.3 first",
         sysver, in->start);
    return OTA_EADDR;
  }
  if (in->func == OTA_FN_BOOTLOADER && sysver < 100) {
    whyf(why, whylen, "system %u cannot take a bootloader by OTA (>= 0.6.0)",
         sysver);
    return OTA_EUNSUPPORTED;
  }
  if (in->func == OTA_FN_USER)
    return 0; /* user dependencies are optional here: unmet -> safe mode */
  /* The flash as it will be: queued copies, this module, then the
   * bootloader rule of the resulting s/3. */
  for (int i = 0; i < dev->npending; i++) {
    int s = slot_of_addr(dev->pending[i].dest);
    if (s >= 0)
      v[s].present =
          info_of(dev->pending[i].buf, dev->pending[i].len, &v[s].info) == 0;
  }
  int s = slot_of(in->func, in->index);
  v[s].present = 1;
  v[s].info = *in;
  if (v[OTA_SLOT_S3].present && v[OTA_SLOT_BOOT].present) {
    int dir;
    v[OTA_SLOT_BOOT].info.version = boot_rule(
        dev, v[OTA_SLOT_S3].info.version, v[OTA_SLOT_BOOT].info.version, &dir);
  }
  const ota_modref_t *deps[2] = {&in->dep1, &in->dep2};
  for (int i = 0; i < 2; i++)
    if (!dep_met(v, deps[i], part3)) {
      int ds = slot_of(deps[i]->func, deps[i]->index);
      whyf(why, whylen, "%c/%u v%u needs %c/%u >= %u, device has %s%u",
           ota_fn_letter(in->func), in->index, in->version,
           ota_fn_letter(deps[i]->func), deps[i]->index, deps[i]->version,
           ds >= 0 && v[ds].present ? "v" : "none ",
           ds >= 0 && v[ds].present ? v[ds].info.version : 0);
      return OTA_EDEPFAIL;
    }
  return 0;
}

int ota_device_verify_staged(const ota_device_t *dev, const uint8_t *staging,
                             size_t len, char *why, size_t whylen) {
  whyf(why, whylen, "ok");
  return verify(dev, staging, len, HASH_COMPUTE, NULL, why, whylen);
}

int ota_device_rx_verify(void *ud, const uint8_t *staging, size_t len,
                         char *why, size_t whylen) {
  whyf(why, whylen, "ok");
  int rc = verify(ud, staging, len, HASH_KEEP, NULL, why, whylen);
  if (rc && ud)
    ((ota_device_t *)ud)->rx_hashed.buf = NULL; /* keep only a pass */
  return rc;
}

int ota_device_queue_staged(ota_device_t *dev, const uint8_t *staging,
                            size_t len) {
  char why[200];
  ota_module_info_t in;
  int rc = verify(dev, staging, len, HASH_REUSE, &in, why, sizeof why);
  if (rc) {
    OTA_LOGW("device: staged module refused: %s", why);
    return rc;
  }
  int idx = dev->npending;
  if (in.func != OTA_FN_BOOTLOADER) {
    for (int i = 0; i < dev->npending; i++)
      if (dev->pending[i].dest == in.start)
        idx = i;
    if (idx == OTA_DEVICE_MAX_PENDING)
      return OTA_EFULL;
  }
  uint8_t *buf;
  if ((rc = dup_bytes(staging, len, &buf)))
    return rc;
  if (in.func == OTA_FN_BOOTLOADER) {
    put_slot(dev, OTA_SLOT_BOOT, buf, len);
    OTA_LOGI("device: bootloader v%u written at once", in.version);
    return 0;
  }
  if (!(buf = img_own(dev, buf, len)))
    return OTA_ENOMEM;
  if (idx < dev->npending)
    img_drop(dev, dev->pending[idx].buf);
  else
    dev->npending++;
  dev->pending[idx].buf = buf;
  dev->pending[idx].len = len;
  dev->pending[idx].dest = in.start;
  OTA_LOGI("device: %c/%u v%u queued for the bootloader (slot %d)",
           ota_fn_letter(in.func), in.index, in.version, idx);
  return 0;
}

/* ---- boot ------------------------------------------------------------------
 */

static void check_slots(ota_device_t *dev) {
  view_t v[OTA_SLOT_COUNT];
  view_flash(dev, v);
  int part3 = knows_part3(dev, sysver_of(v));
  for (int s = 0; s < OTA_SLOT_COUNT; s++) {
    ota_slot_check_t *c = &dev->check[s];
    c->vc = c->vv = 0;
    if (!v[s].present)
      continue;
    const ota_module_info_t *in = &v[s].info;
    c->vc = OTA_VALID_ALL;
    if (!img_defects(dev, dev->slot[s].buf, dev->slot[s].len))
      c->vv |= OTA_VALID_INTEGRITY;
    if (in->platform == OTA_PLATFORM_ELECTRON)
      c->vv |= OTA_VALID_PLATFORM;
    uint32_t want = s == OTA_SLOT_FACTORY ? OTA_ADDR_USER : slot_addr[s];
    if (in->start == want && (s != OTA_SLOT_S3 || part3) &&
        in->end - in->start <= slot_size[s])
      c->vv |= OTA_VALID_RANGE;
    if (dep_met(v, &in->dep1, part3) && dep_met(v, &in->dep2, part3))
      c->vv |= OTA_VALID_DEPS;
  }
}

int ota_device_boot(ota_device_t *dev, ota_reset_t reason,
                    ota_boot_result_t *out) {
  ota_boot_result_t tmp;
  if (!out)
    out = &tmp;
  memset(out, 0, sizeof *out);
  if (!dev || !dev->cat)
    return OTA_EINVAL;
  dev->boots++;
  /* 1. The bootloader copies the DCT module slots into place. */
  for (int i = 0; i < dev->npending; i++) {
    int s = slot_of_addr(dev->pending[i].dest);
    if (s < 0) {
      img_drop(dev, dev->pending[i].buf);
      continue;
    }
    put_slot_owned(dev, s, dev->pending[i].buf, dev->pending[i].len);
    out->applied++;
  }
  memset(dev->pending, 0, sizeof dev->pending);
  dev->npending = 0;
  if (out->applied)
    dev->ota_flashed = 1;
  /* 2. System firmware re-flashes the bootloader embedded in s/3. */
  uint16_t s3v = ota_device_slot_version(dev, OTA_SLOT_S3);
  uint16_t blv = ota_device_slot_version(dev, OTA_SLOT_BOOT);
  if (s3v) {
    int dir;
    uint16_t nv = boot_rule(dev, s3v, blv, &dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (dir &&
        synth_bootloader(rel_by_sysver(dev->cat, s3v), nv, &buf, &len) == 0) {
      put_slot(dev, OTA_SLOT_BOOT, buf, len);
      out->bootloader_reflashed = dir;
      OTA_LOGI("device: bootloader v%u %s to v%u (embedded in s/3 v%u)", blv,
               dir > 0 ? "upgraded" : "downgraded", nv, s3v);
    }
  }
  /* 3. Module checks and the outcome. */
  check_slots(dev);
  uint16_t v1 = ota_device_slot_version(dev, OTA_SLOT_S1);
  uint16_t v2 = ota_device_slot_version(dev, OTA_SLOT_S2);
  s3v = ota_device_slot_version(dev, OTA_SLOT_S3);
  ota_dev_state_t st;
  dev->last_reset = reason;
  if (!v1 || !v2) {
    st = OTA_DEV_HARD_FAULT_LOOP;
    snprintf(out->why, sizeof out->why, "no system firmware (s/1 v%u, s/2 v%u)",
             v1, v2);
  } else if (v2 >= 100 && !s3v) {
    st = OTA_DEV_HARD_FAULT_LOOP;
    snprintf(out->why, sizeof out->why,
             "s/2 v%u (>= 0.6.0) calls into s/3, which is missing", v2);
  } else if (!(dev->check[OTA_SLOT_S1].vv & OTA_VALID_INTEGRITY) ||
             !(dev->check[OTA_SLOT_S2].vv & OTA_VALID_INTEGRITY) ||
             (s3v && !(dev->check[OTA_SLOT_S3].vv & OTA_VALID_INTEGRITY))) {
    st = OTA_DEV_HARD_FAULT_LOOP;
    snprintf(out->why, sizeof out->why, "a system part fails its CRC");
  } else if (dev->safe_mode_request) {
    st = OTA_DEV_SAFE_MODE;
    dev->safe_mode_request = 0;
    dev->last_reset = OTA_RESET_SAFE_MODE;
    snprintf(out->why, sizeof out->why, "safe mode requested");
  } else if (!dev->slot[OTA_SLOT_USER].buf) {
    st = OTA_DEV_NO_APP;
    snprintf(out->why, sizeof out->why, "no user app");
  } else if (dev->check[OTA_SLOT_USER].vv != dev->check[OTA_SLOT_USER].vc) {
    ota_module_info_t in = {0};
    info_of(dev->slot[OTA_SLOT_USER].buf, dev->slot[OTA_SLOT_USER].len, &in);
    st = OTA_DEV_SAFE_MODE;
    if (!(dev->check[OTA_SLOT_USER].vv & OTA_VALID_DEPS))
      snprintf(out->why, sizeof out->why,
               "user app needs %c/%u >= %u, device has v%u",
               ota_fn_letter(in.dep1.func), in.dep1.index, in.dep1.version,
               ota_device_slot_version(dev, OTA_SLOT_S2));
    else
      snprintf(out->why, sizeof out->why, "user app fails checks (vv 0x%02x)",
               dev->check[OTA_SLOT_USER].vv);
  } else {
    st = OTA_DEV_RUNNING_APP;
    snprintf(out->why, sizeof out->why, "system %u (%s), user app ok",
             ota_device_system_version(dev), ota_device_release_name(dev));
  }
  if (st == OTA_DEV_HARD_FAULT_LOOP)
    dev->last_reset = OTA_RESET_PANIC;
  set_state(dev, st, out->why);
  out->state = st;
  out->reason = dev->last_reset;
  return 0;
}

int ota_device_recover(ota_device_t *dev, const uint8_t *buf, size_t len) {
  ota_module_info_t in;
  int rc = info_of(buf, len, &in);
  if (rc)
    return rc;
  int s = slot_of_addr(in.start);
  if (s < 0)
    return OTA_EADDR;
  uint8_t *copy;
  if ((rc = dup_bytes(buf, len, &copy)))
    return rc;
  put_slot(dev, s, copy, len);
  OTA_LOGI("device: DFU wrote %c/%u v%u at 0x%08x", ota_fn_letter(in.func),
           in.index, in.version, in.start);
  return 0;
}

void ota_device_request_safe_mode(ota_device_t *dev) {
  dev->safe_mode_request = 1;
}

void ota_device_on_server_hello(ota_device_t *dev) {
  dev->ota_flashed = 0;
}

int ota_device_online(const ota_device_t *dev) {
  return dev->state == OTA_DEV_RUNNING_APP || dev->state == OTA_DEV_SAFE_MODE ||
         dev->state == OTA_DEV_NO_APP;
}

/* ---- JSON ------------------------------------------------------------------
 */

typedef struct {
  char *buf;
  size_t cap, len;
  int overflow;
} jw_t;

static void jw(jw_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void jw(jw_t *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = w->len < w->cap ? w->cap - w->len : 0;
  int n = vsnprintf(room ? w->buf + w->len : NULL, room, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= room)
    w->overflow = 1;
  w->len += n > 0 ? (size_t)n : 0;
}

static void jw_deps(jw_t *w, const ota_module_info_t *in, int both) {
  const ota_modref_t *d[2] = {&in->dep1, &in->dep2};
  int first = 1;
  jw(w, "\"d\":[");
  for (int i = 0; i < (both ? 2 : 1); i++) {
    if (d[i]->func == OTA_FN_NONE)
      continue;
    jw(w, "%s{\"f\":\"%c\",\"n\":\"%u\",\"v\":%u}", first ? "" : ",",
       ota_fn_letter(d[i]->func), d[i]->index, d[i]->version);
    first = 0;
  }
  jw(w, "]");
}

static void jw_module(jw_t *w, const ota_module_t *m, uint32_t size, char loc,
                      ota_slot_check_t c, int both, int platform) {
  const ota_module_info_t *in = &m->info;
  jw(w, "{\"s\":%u,\"l\":\"%c\",\"vc\":%u,\"vv\":%u,", size, loc, c.vc, c.vv);
  if (in->func == OTA_FN_USER) {
    jw(w, "\"u\":\"");
    for (int i = 0; i < 32; i++)
      jw(w, "%02X", m->suffix.sha256[i]);
    jw(w, "\",");
  }
  jw(w, "\"f\":\"%c\",\"n\":\"%u\",\"v\":%u,", ota_fn_letter(in->func),
     in->index, in->version);
  if (platform)
    jw(w, "\"p\":%u,", in->platform);
  jw_deps(w, in, both);
  jw(w, "}");
}

static int jw_end(jw_t *w, size_t *len) {
  if (len)
    *len = w->len;
  if (w->overflow) {
    if (w->cap)
      w->buf[0] = 0;
    return OTA_ENOBUFS;
  }
  return 0;
}

int ota_device_describe_json(const ota_device_t *dev, int flags, char *buf,
                             size_t cap, size_t *len) {
  if (!dev || !(flags & 3))
    return OTA_EINVAL;
  jw_t w = {buf, cap, 0, 0};
  uint16_t sysver = ota_device_system_version(dev);
  int legacy = legacy_describe(sysver);
  int part3 = knows_part3(dev, sysver);
  jw(&w, "{");
  if (flags & 2)
    jw(&w, "\"f\":[],\"v\":{}%s", flags & 1 ? "," : "");
  if (flags & 1) {
    jw(&w, "\"p\":%u,\"imei\":\"%s\",\"iccid\":\"%s\",", OTA_PLATFORM_ELECTRON,
       dev->imei, dev->iccid);
    if (sysver >= 2000)
      jw(&w, "\"cellfw\":\"%s\",", dev->cellfw);
    jw(&w, "\"m\":[");
    int first = 1;
    for (int s = 0; s < OTA_SLOT_COUNT; s++) {
      if (s == OTA_SLOT_S3 && !part3)
        continue; /* not in a <= 0.5.2 HAL's bounds table */
      char loc = s == OTA_SLOT_FACTORY ? 'f' : 'm';
      ota_module_t m;
      int ok =
          dev->slot[s].buf &&
          ota_module_parse_header(dev->slot[s].buf, dev->slot[s].len, &m) == 0;
      if (!ok) {
        if (!legacy)
          continue;
        jw(&w, "%s{\"s\":%u,\"l\":\"%c\",\"vc\":0,\"vv\":0,\"d\":[]}",
           first ? "" : ",", slot_size[s], loc);
      } else {
        if (!legacy && s == OTA_SLOT_FACTORY &&
            !(dev->check[s].vv & OTA_VALID_INTEGRITY))
          continue;
        jw(&w, "%s", first ? "" : ",");
        jw_module(&w, &m, slot_size[s], loc, dev->check[s], !legacy, 0);
      }
      first = 0;
    }
    jw(&w, "]");
  }
  jw(&w, "}");
  return jw_end(&w, len);
}

int ota_device_update_result_json(const ota_device_t *dev,
                                  const uint8_t *staging, size_t slen, int err,
                                  char *buf, size_t cap, size_t *len) {
  const ota_cat_release_t *r = ota_device_release(dev);
  uint16_t sysver = ota_device_system_version(dev);
  ota_updone_form_t form = r ? r->behaviour.updone
                             : (sysver < 105    ? OTA_UPDONE_NONE
                                : sysver < 2000 ? OTA_UPDONE_JSON
                                                : OTA_UPDONE_INT);
  jw_t w = {buf, cap, 0, 0};
  if (form == OTA_UPDONE_NONE) {
    if (cap)
      buf[0] = 0;
    else
      w.overflow = 1;
    return jw_end(&w, len);
  }
  if (form == OTA_UPDONE_INT) {
    jw(&w, "{\"r\":%d}", ota_device_error_code(err));
    return jw_end(&w, len);
  }
  jw(&w, "{\"r\":\"%s\",\"u\":", err ? "error" : "ok");
  ota_module_t m;
  if (staging && ota_module_parse(staging, slen, &m) == 0) {
    ota_slot_check_t c = {OTA_VALID_ALL, OTA_VALID_ALL};
    switch (err) {
    case 0:
      break;
    case OTA_ECRC:
    case OTA_ESHA:
      c.vv &= ~OTA_VALID_INTEGRITY;
      break;
    case OTA_EDEPFAIL:
      c.vv &= ~OTA_VALID_DEPS;
      break;
    case OTA_EADDR:
    case OTA_ETOOBIG:
      c.vv &= ~OTA_VALID_RANGE;
      break;
    case OTA_EPLATFORM:
      c.vv &= ~OTA_VALID_PLATFORM;
      break;
    default:
      c.vv = 0;
    }
    jw_module(&w, &m, OTA_STAGING_SIZE, 't', c, !legacy_describe(sysver), 1);
  } else {
    jw(&w, "{}");
  }
  jw(&w, "}");
  return jw_end(&w, len);
}

/* ---- Hello and handshake events --------------------------------------------
 */

int ota_device_hello_payload(const ota_device_t *dev,
                             uint8_t out[OTA_HELLO_LEN]) {
  if (!dev || !out)
    return OTA_EINVAL;
  uint16_t pid = OTA_MODULE_PRODUCT_NONE, pver = OTA_MODULE_PRODUCT_NONE;
  ota_module_t m;
  if (dev->slot[OTA_SLOT_USER].buf &&
      ota_module_parse(dev->slot[OTA_SLOT_USER].buf,
                       dev->slot[OTA_SLOT_USER].len, &m) == 0) {
    pid = m.suffix.product_id;
    pver = m.suffix.product_version;
  }
  const ota_cat_release_t *r = ota_device_release(dev);
  uint8_t flags = (dev->ota_flashed ? 0x01 : 0) |
                  (r ? (r->behaviour.hello_flags & ~0x01) : 0);
  out[0] = pid >> 8;
  out[1] = pid & 0xFF;
  out[2] = pver >> 8;
  out[3] = pver & 0xFF;
  out[4] = 0;
  out[5] = flags;
  out[6] = 0;
  out[7] = OTA_PLATFORM_ELECTRON;
  out[8] = 0;
  out[9] = OTA_DEVICE_ID_LEN;
  memcpy(out + 10, dev->id, OTA_DEVICE_ID_LEN);
  return 0;
}

static size_t add_event(ota_dev_event_t *ev, size_t cap, size_t n,
                        const char *name, const char *data) {
  if (n < cap) {
    snprintf(ev[n].name, sizeof ev[n].name, "%s", name);
    snprintf(ev[n].data, sizeof ev[n].data, "%s", data);
  }
  return n + 1;
}

size_t ota_device_handshake_events(const ota_device_t *dev, ota_dev_event_t *ev,
                                   size_t cap) {
  size_t n = 0;
  if (!ota_device_online(dev))
    return 0;
  if (dev->state == OTA_DEV_SAFE_MODE || dev->state == OTA_DEV_NO_APP)
    n = add_event(ev, cap, n, "spark/device/safemode", "");
  if (dev->last_reset != OTA_RESET_NONE)
    n = add_event(ev, cap, n, "spark/device/last_reset",
                  ota_reset_name(dev->last_reset));
  if (ota_device_system_version(dev) >= 1200) {
    n = add_event(ev, cap, n, "particle/device/updates/enabled", "true");
    n = add_event(ev, cap, n, "particle/device/updates/forced", "false");
  }
  return n < cap ? n : cap;
}

/* ---- persistence ------------------------------------------------------------
 */

#define SAVE_MAGIC "OTALDEV1"
#define SAVE_VERSION 1u

typedef struct {
  uint8_t *buf;
  size_t cap, len;
} wr_t;

static void wr(wr_t *w, const void *p, size_t n) {
  if (w->buf && w->len + n <= w->cap)
    memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void wr32(wr_t *w, uint32_t v) {
  uint8_t b[4] = {v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, v >> 24};
  wr(w, b, 4);
}

int ota_device_save(const ota_device_t *dev, uint8_t *buf, size_t cap,
                    size_t *len) {
  wr_t w = {buf, cap, 0};
  wr(&w, SAVE_MAGIC, 8);
  wr32(&w, SAVE_VERSION);
  wr(&w, dev->id, sizeof dev->id);
  wr(&w, dev->imei, sizeof dev->imei);
  wr(&w, dev->iccid, sizeof dev->iccid);
  wr(&w, dev->cellfw, sizeof dev->cellfw);
  wr32(&w, dev->state);
  wr32(&w, dev->last_reset);
  wr32(&w, (uint32_t)dev->ota_flashed);
  wr32(&w, (uint32_t)dev->safe_mode_request);
  wr32(&w, dev->boots);
  for (int s = 0; s < OTA_SLOT_COUNT; s++) {
    wr32(&w, (uint32_t)dev->slot[s].len);
    if (dev->slot[s].buf)
      wr(&w, dev->slot[s].buf, dev->slot[s].len);
  }
  wr32(&w, (uint32_t)dev->npending);
  for (int i = 0; i < dev->npending; i++) {
    wr32(&w, dev->pending[i].dest);
    wr32(&w, (uint32_t)dev->pending[i].len);
    wr(&w, dev->pending[i].buf, dev->pending[i].len);
  }
  size_t body = w.len;
  wr32(&w, 0);
  if (len)
    *len = w.len;
  if (!buf || w.len > cap)
    return OTA_ENOBUFS;
  uint32_t crc = ota_crc32(buf, body);
  w.len = body;
  wr32(&w, crc);
  return 0;
}

typedef struct {
  const uint8_t *p;
  size_t len, off;
  int bad;
} rd_t;

static const uint8_t *rd(rd_t *r, size_t n) {
  if (r->bad || n > r->len - r->off) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *p = r->p + r->off;
  r->off += n;
  return p;
}

static uint32_t rd32(rd_t *r) {
  const uint8_t *b = rd(r, 4);
  return b ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                 (uint32_t)b[3] << 24
           : 0;
}

static int rd_image(ota_device_t *dev, rd_t *r, uint32_t n, uint8_t **out) {
  *out = NULL;
  if (n > MAX_IMAGE) {
    r->bad = 1;
    return OTA_EPARSE;
  }
  const uint8_t *p = rd(r, n);
  if (!p)
    return OTA_EPARSE;
  int rc = dup_bytes(p, n, out);
  if (!rc && !(*out = img_own(dev, *out, n)))
    rc = OTA_ENOMEM;
  return rc;
}

int ota_device_load(ota_device_t *dev, const ota_catalog_t *cat,
                    const uint8_t *buf, size_t len) {
  ota_imgstore_t *images = dev->images;
  ota_device_free(dev);
  ota_device_init(dev, cat, NULL);
  dev->images = images;
  if (!buf || len < 12 + 4 || memcmp(buf, SAVE_MAGIC, 8))
    return OTA_EPARSE;
  uint32_t stored = (uint32_t)buf[len - 4] | (uint32_t)buf[len - 3] << 8 |
                    (uint32_t)buf[len - 2] << 16 | (uint32_t)buf[len - 1] << 24;
  if (ota_crc32(buf, len - 4) != stored)
    return OTA_ECRC;
  rd_t r = {buf, len - 4, 8, 0};
  int rc = OTA_EPARSE;
  if (rd32(&r) != SAVE_VERSION)
    goto out;
  const uint8_t *p;
  if ((p = rd(&r, sizeof dev->id)))
    memcpy(dev->id, p, sizeof dev->id);
  if ((p = rd(&r, sizeof dev->imei)))
    memcpy(dev->imei, p, sizeof dev->imei);
  if ((p = rd(&r, sizeof dev->iccid)))
    memcpy(dev->iccid, p, sizeof dev->iccid);
  if ((p = rd(&r, sizeof dev->cellfw)))
    memcpy(dev->cellfw, p, sizeof dev->cellfw);
  dev->imei[sizeof dev->imei - 1] = 0;
  dev->iccid[sizeof dev->iccid - 1] = 0;
  dev->cellfw[sizeof dev->cellfw - 1] = 0;
  uint32_t st = rd32(&r), reason = rd32(&r);
  dev->ota_flashed = rd32(&r) != 0;
  dev->safe_mode_request = rd32(&r) != 0;
  dev->boots = rd32(&r);
  if (st > OTA_DEV_HARD_FAULT_LOOP)
    goto out;
  dev->state = (ota_dev_state_t)st;
  dev->last_reset = (ota_reset_t)reason;
  for (int s = 0; s < OTA_SLOT_COUNT; s++) {
    uint32_t n = rd32(&r);
    if (r.bad)
      goto out;
    if (!n)
      continue;
    if ((rc = rd_image(dev, &r, n, &dev->slot[s].buf)))
      goto out;
    dev->slot[s].len = n;
    rc = OTA_EPARSE;
  }
  uint32_t np = rd32(&r);
  if (r.bad || np > OTA_DEVICE_MAX_PENDING)
    goto out;
  for (uint32_t i = 0; i < np; i++) {
    dev->pending[i].dest = rd32(&r);
    uint32_t n = rd32(&r);
    if (r.bad || slot_of_addr(dev->pending[i].dest) < 0)
      goto out;
    if ((rc = rd_image(dev, &r, n, &dev->pending[i].buf)))
      goto out;
    dev->pending[i].len = n;
    dev->npending++;
    rc = OTA_EPARSE;
  }
  if (r.bad || r.off != r.len)
    goto out;
  check_slots(dev);
  rc = 0;
out:
  if (rc) {
    ota_device_free(dev);
    ota_device_init(dev, cat, NULL);
    dev->images = images;
  }
  return rc;
}
