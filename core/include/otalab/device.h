/* The simulated Electron's device core: flash slots, the DCT queue of pending
 * module copies, boot/apply rules, safe mode, the 0.5.3 rule, describe, Hello.
 * Source: PROTOCOL.md 2.3, 2.5 (5-7), 3.1-3.2, 4.4, 5.2, 6, 7; choices in
 * docs/PROTOCOL.md "Device model choices".
 *
 * Boot states (ota_device_boot() is the only way between them;
 * ota_dev_set_state inside device.c logs `OLD => NEW (why)`):
 *
 *            provision / load
 *   OFF ---------------------------> (flash filled, still OFF)
 *    |
 *    | ota_device_boot(): bootloader copies queued modules (OTA-flashed := 1),
 *    | re-flashes the bootloader embedded in s/3 when older (or >=100 on 0.6),
 *    | then checks every module:
 *    v
 *   +-----------------+  s/2 >= 100 and no s/3 (0.5.x -> 0.6.x OTA gone wrong)
 *   | HARD_FAULT_LOOP |<-------------------------------------------+
 *   +-----------------+                                            |
 *    | never connects; ota_device_recover() (DFU) then boot        |
 *    v                                                             |
 *   RUNNING_APP   user app present, CRC ok, deps met   --boot--> any state
 *   SAFE_MODE     user app present but deps/CRC fail   --boot--> any state
 *   NO_APP        user slot empty                      --boot--> any state
 *
 * Sans-IO: no files, no sockets, no clocks. The adapter (device-sim) owns
 * persistence (ota_device_save/load) and the network.
 *
 * Ownership: ota_device_t owns every module image in its flash slots and its
 * pending queue (malloc'd; freed by ota_device_free). It keeps a pointer to the
 * catalogue given to ota_device_init/ota_device_load, which must outlive it.
 * Functions taking module bytes copy them; the caller keeps its buffer. */
#ifndef OTALAB_DEVICE_H
#define OTALAB_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "otalab/catalog.h"
#include "otalab/electron.h"

/* Flash slots in HAL bounds order (= describe order). */
typedef enum {
  OTA_SLOT_BOOT = 0,
  OTA_SLOT_S1 = 1,
  OTA_SLOT_S2 = 2,
  OTA_SLOT_S3 = 3,
  OTA_SLOT_USER = 4,
  OTA_SLOT_FACTORY = 5,
  OTA_SLOT_COUNT = 6
} ota_slot_t;

#define OTA_DEVICE_MAX_PENDING 5 /* DCT MAX_MODULES_SLOT */
#define OTA_DEVICE_ID_LEN 12

/* Describe validation bits (PROTOCOL.md 3.1). */
#define OTA_VALID_INTEGRITY 0x02u
#define OTA_VALID_DEPS 0x04u
#define OTA_VALID_RANGE 0x08u
#define OTA_VALID_PLATFORM 0x10u
#define OTA_VALID_ALL 0x1Eu

/* X(name, text). */
#define OTA_DEV_STATES(X)                                                      \
  X(OTA_DEV_OFF, "OFF")                                                        \
  X(OTA_DEV_RUNNING_APP, "RUNNING_APP")                                        \
  X(OTA_DEV_SAFE_MODE, "SAFE_MODE")                                            \
  X(OTA_DEV_NO_APP, "NO_APP")                                                  \
  X(OTA_DEV_HARD_FAULT_LOOP, "HARD_FAULT_LOOP")

typedef enum {
#define OTA_DEV_STATE_ENUM(n, s) n,
  OTA_DEV_STATES(OTA_DEV_STATE_ENUM)
#undef OTA_DEV_STATE_ENUM
} ota_dev_state_t;

/* Device OS reset reasons (values of System.resetReason()); X(name, value,
 * text published in spark/device/last_reset). */
#define OTA_RESET_REASONS(X)                                                   \
  X(OTA_RESET_NONE, 0, "none")                                                 \
  X(OTA_RESET_UNKNOWN, 10, "unknown")                                          \
  X(OTA_RESET_PIN, 20, "pin_reset")                                            \
  X(OTA_RESET_POWER_MANAGEMENT, 30, "power_management")                        \
  X(OTA_RESET_POWER_DOWN, 40, "power_down")                                    \
  X(OTA_RESET_POWER_BROWNOUT, 50, "power_brownout")                            \
  X(OTA_RESET_WATCHDOG, 60, "watchdog")                                        \
  X(OTA_RESET_UPDATE, 70, "update")                                            \
  X(OTA_RESET_UPDATE_ERROR, 80, "update_error")                                \
  X(OTA_RESET_UPDATE_TIMEOUT, 90, "update_timeout")                            \
  X(OTA_RESET_FACTORY, 100, "factory_reset")                                   \
  X(OTA_RESET_SAFE_MODE, 110, "safe_mode")                                     \
  X(OTA_RESET_DFU, 120, "dfu_mode")                                            \
  X(OTA_RESET_PANIC, 130, "panic")                                             \
  X(OTA_RESET_USER, 140, "user")

typedef enum {
#define OTA_RESET_ENUM(n, v, s) n = v,
  OTA_RESET_REASONS(OTA_RESET_ENUM)
#undef OTA_RESET_ENUM
} ota_reset_t;

/* One flash slot: a whole module image or empty (buf NULL, len 0). */
typedef struct {
  uint8_t *buf; /* owned, malloc'd */
  size_t len;
} ota_flash_slot_t;

/* One DCT module slot: a verified image waiting for the bootloader to copy
 * it from the OTA region to `dest` at the next boot. */
typedef struct {
  uint8_t *buf; /* owned, malloc'd: the staged bytes */
  size_t len;
  uint32_t dest; /* the module's start address */
} ota_pending_t;

/* Per-module boot check result, refreshed by every boot and load. */
typedef struct {
  uint8_t vc, vv; /* checked / passed bits */
} ota_slot_check_t;

typedef struct {
  const ota_catalog_t *cat; /* not owned */
  uint8_t id[OTA_DEVICE_ID_LEN];
  char imei[20];
  char iccid[24];
  char cellfw[24]; /* modem firmware, described from 2.x */
  ota_flash_slot_t slot[OTA_SLOT_COUNT];
  ota_pending_t pending[OTA_DEVICE_MAX_PENDING];
  int npending;
  ota_slot_check_t check[OTA_SLOT_COUNT];
  ota_dev_state_t state;
  ota_reset_t last_reset; /* reason of the latest boot */
  int ota_flashed;        /* Hello flag 0x01 until the server's Hello */
  int safe_mode_request;  /* next boot goes to safe mode (spark/device/reset) */
  uint32_t boots;         /* number of boots so far */
  /* Optional shared image store (not owned; set after ota_device_init, kept
   * by ota_device_load): images are then interned there instead of being
   * malloc'd per device (a fleet shares identical modules). NULL: plain. */
  struct ota_imgstore *images;
  /* Internal to device.c: the CRC-32 and SHA-256 that the latest
   * ota_device_rx_verify() computed over the staged image at `buf` (len bytes,
   * last 44 bytes `tail`), used once by the next ota_device_queue_staged() of
   * the same buffer, length and tail, so that the image ota_rx verified is
   * not hashed again when it is queued. buf NULL: none. */
  struct {
    const uint8_t *buf;
    size_t len;
    uint8_t tail[44];
    uint32_t crc;
    uint8_t sha256[32];
  } rx_hashed;
} ota_device_t;

/* What one boot did. */
typedef struct {
  ota_dev_state_t state;
  ota_reset_t reason;
  int applied;              /* queued modules copied into place */
  int bootloader_reflashed; /* 1 upgrade, -1 downgrade, 0 none */
  char why[160];            /* human summary of the outcome */
} ota_boot_result_t;

/* A module loader for provisioning: hand back the bytes of catalogue module
 * `m` in a malloc'd buffer whose ownership passes to the device (it frees it
 * with free()). Return 0 or a negative OTA_E*. */
typedef int (*ota_module_loader_fn)(void *ud, const ota_cat_module_t *m,
                                    uint8_t **buf, size_t *len);

/* Empty device (all slots empty, OFF) bound to `cat` (not owned, may be NULL
 * until provisioning) with a 12-byte id (NULL: zeros). IMEI and ICCID are
 * derived from the id; the adapter may overwrite the strings. Cannot fail. */
void ota_device_init(ota_device_t *dev, const ota_catalog_t *cat,
                     const uint8_t id[OTA_DEVICE_ID_LEN]);
/* Free every owned image; leaves an empty OFF device. Safe twice. */
void ota_device_free(ota_device_t *dev);

/* Built-in loader: synthesizes the module with ota_module_build() from the
 * catalogue entry (size, address, dependencies). `ud` ignored. */
int ota_device_build_module(void *ud, const ota_cat_module_t *m, uint8_t **buf,
                            size_t *len);

/* Wipe the flash and install release `release` (a catalogue name): its
 * system parts and its bootloader (the catalogue's bootloader module when it
 * has one, else a synthesized b/0 of the release's bootloader version), plus
 * an optional user app (copied; NULL for none). `load` NULL = built-in
 * loader. The device stays OFF until ota_device_boot(). Returns 0,
 * OTA_ERELEASE, OTA_EINVAL, OTA_ENOMEM or the loader's error; on error the
 * flash is left empty. */
int ota_device_provision(ota_device_t *dev, const char *release,
                         ota_module_loader_fn load, void *ud,
                         const uint8_t *user_app, size_t user_len);

/* Device OS's checks at UpdateDone of a staged image (not kept): parse,
 * format, CRC and SHA-256, platform 10, function/index known and its address
 * a slot on THIS device's HAL (no s/3 below 0.5.3-rc.2), the module's own
 * dependencies against the flash as it will be after the queued copies and
 * this module are applied (a 0.5.x HAL treats an s/3 dependency as met).
 * Writes a one-line reason into why (may be NULL). Returns 0 or OTA_E*; see
 * ota_device_error_code(). Refused with OTA_ESTATE in HARD_FAULT_LOOP/OFF. */
int ota_device_verify_staged(const ota_device_t *dev, const uint8_t *staging,
                             size_t len, char *why, size_t whylen);

/* The same check shaped as ota_rx's verify hook (ota_rx_verify_fn): set
 * cfg.verify = ota_device_rx_verify, cfg.verify_ud = the ota_device_t. It also
 * keeps the image's computed CRC-32 and SHA-256 in the device (rx_hashed) for
 * the ota_device_queue_staged() that follows at UpdateDone: the caller must
 * not write the staging bytes in between (ota_rx does not). */
int ota_device_rx_verify(void *ud, const uint8_t *staging, size_t len,
                         char *why, size_t whylen);

/* Map an OTA_E* code to the Device OS system error of PROTOCOL.md 2.5
 * (-1300 .. -1390); 0 stays 0. The same table as ota_rx_syserr_from_err():
 * ECRC/ESHA -1330, EDEPFAIL -1340, EADDR/ETOOBIG -1350, EPLATFORM -1360,
 * ETRUNC/ESIZE/EHEADER/EPARSE -1370, EFUNC/EUNSUPPORTED -1310. */
int ota_device_error_code(int err);

/* Accept a staged image (copied): verifies it, then writes a bootloader at
 * once, or queues any other module for the next boot (a queued copy for the
 * same address is replaced). Whole or nothing. Returns 0, the verify error,
 * OTA_EFULL (5 queued), OTA_ENOMEM. */
int ota_device_queue_staged(ota_device_t *dev, const uint8_t *staging,
                            size_t len);

/* Reboot with `reason` (OTA_RESET_UPDATE after an OTA, OTA_RESET_POWER_DOWN
 * for a fresh start ...): copy queued modules (sets the OTA-flashed flag),
 * apply the embedded-bootloader rule, check every module, pick the state.
 * `out` may be NULL. Returns 0, or OTA_EINVAL when the device has no
 * catalogue. */
int ota_device_boot(ota_device_t *dev, ota_reset_t reason,
                    ota_boot_result_t *out);

/* Stand-in for a DFU flash over USB: write a module image (copied) straight
 * into its slot, whatever the state and dependencies; the image must parse
 * and its address must name a slot. Call ota_device_boot() afterwards.
 * Returns 0, OTA_EHEADER/OTA_ETRUNC/OTA_EADDR, OTA_ENOMEM. */
int ota_device_recover(ota_device_t *dev, const uint8_t *buf, size_t len);

/* Remote "spark/device/reset" "safe mode": the next boot enters SAFE_MODE. */
void ota_device_request_safe_mode(ota_device_t *dev);

/* The server's Hello reached the device: clears the OTA-flashed flag. */
void ota_device_on_server_hello(ota_device_t *dev);

/* Version of the module in a slot (0 when empty). */
uint16_t ota_device_slot_version(const ota_device_t *dev, ota_slot_t s);
/* The system version the device runs: the lowest version among its system
 * parts (0 when none). */
uint16_t ota_device_system_version(const ota_device_t *dev);
/* The catalogue release of that version, or NULL. */
const ota_cat_release_t *ota_device_release(const ota_device_t *dev);
/* Its name, or "unknown". Never NULL. */
const char *ota_device_release_name(const ota_device_t *dev);
/* Static name of a state / of a reset reason. */
const char *ota_dev_state_name(ota_dev_state_t s);
const char *ota_reset_name(ota_reset_t r);
/* 1 when the device connects to the cloud (RUNNING_APP, SAFE_MODE, NO_APP). */
int ota_device_online(const ota_device_t *dev);

/* The describe JSON for flags (1 system, 2 app, 3 both) as the device's
 * release writes it (PROTOCOL.md 3.1-3.2), NUL-terminated into buf. *len (may
 * be NULL) gets the length. Returns 0, OTA_ENOBUFS or OTA_EINVAL (flags
 * without 1 or 2). */
int ota_device_describe_json(const ota_device_t *dev, int flags, char *buf,
                             size_t cap, size_t *len);

/* The UpdateDone 2.04 payload for a verification result `err` of `staging`,
 * in the release's form: 0.5.x none (*len = 0, buf ""), 0.6.1..1.5.x
 * {"r":"ok"|"error","u":{module info with "p"}}, >= 2.0 {"r":<code>}.
 * Returns 0, OTA_ENOBUFS. */
int ota_device_update_result_json(const ota_device_t *dev,
                                  const uint8_t *staging, size_t slen, int err,
                                  char *buf, size_t cap, size_t *len);

#define OTA_HELLO_LEN 29
/* The Hello payload (PROTOCOL.md 2.3). Returns 0 or OTA_EINVAL. */
int ota_device_hello_payload(const ota_device_t *dev,
                             uint8_t out[OTA_HELLO_LEN]);

/* A system event to publish (private) after the handshake. */
typedef struct {
  char name[64];
  char data[64];
} ota_dev_event_t;

#define OTA_DEVICE_MAX_EVENTS 6
/* Events the device publishes after connect (PROTOCOL.md 2.5 item 7, 7):
 * spark/device/safemode (safe mode / no app), spark/device/last_reset,
 * particle/device/updates/enabled and /forced (>= 1.2). Writes up to cap
 * entries and returns how many (0 when offline). */
size_t ota_device_handshake_events(const ota_device_t *dev, ota_dev_event_t *ev,
                                   size_t cap);

/* Serialize everything (flash, queue, flags, state) into buf. With buf NULL
 * or too small, *len gets the size needed and OTA_ENOBUFS is returned. */
int ota_device_save(const ota_device_t *dev, uint8_t *buf, size_t cap,
                    size_t *len);
/* Replace dev (freed first) by a saved state, bound to `cat`. The blob carries
 * a CRC-32: a damaged blob gives OTA_EPARSE/OTA_ECRC and leaves dev empty.
 * Module checks (vc/vv) are recomputed. */
int ota_device_load(ota_device_t *dev, const ota_catalog_t *cat,
                    const uint8_t *buf, size_t len);

#endif
