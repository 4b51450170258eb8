/* Virtual-time simulation: one cloud and N simulated Electrons in one process,
 * joined by an in-memory network with each device's link model, no sockets,
 * no sleeping (Issue "Fleets" item 5). DTLS is not run: its sizes are
 * counted from the measured figures (docs/PROTOCOL.md "Transport choices",
 * ota_plan_model_default(): the one place they live). */
// clang-format off
/*
 *  discrete events (binary heap keyed by virtual ms, ties by sequence number)
 *
 *   device: BOOT --reboot_ms--> CONNECT --handshake flights over the link-->
 *           UP: dev_sess <-- datagrams (CoAP + 29 B record) --> cloud_sess
 *           REBOOT effect: transport down, BOOT again (resumed handshake)
 *
 *   handshake: full = 3 up + 3 down datagrams (922 / 887 B, 3 RTTs),
 *   resumed = 3 up + 2 down (393 / 233 B); a lost flight is resent by its
 *   sender after 3 s, doubling; the connect fails after 45 s and is retried
 *   after 5 s.
 *   cloud side of each device: an ota_coap_chan stands in for libcoap
 *   (message ids, CON retransmission, duplicate detection).
 *
 *   A device is DONE when its session is up, the cloud has its describe, no
 *   OTA job is queued or running and its healer is not mid-round.
 */
// clang-format on
/* Determinism: every random draw comes from seeds derived from cfg.seed and
 * the device index; the same seed gives the same event log, whose FNV-1a
 * hash ota_vsim_hash() returns.
 * Ownership: ota_vsim_t owns its devices, sessions, queued datagrams and the
 * module images it builds; the catalogue is the caller's and must outlive
 * it. Apps passed to ota_vsim_add() are copied. */
#ifndef OTALAB_VNET_H
#define OTALAB_VNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otalab/catalog.h"
#include "otalab/cloud_sess.h"
#include "otalab/dev_sess.h"
#include "otalab/link.h"

typedef struct {
  uint64_t seed;      /* 1 */
  uint32_t reboot_ms; /* virtual time of a reboot: the planner's (10000) */
  uint64_t max_ms;    /* stop at this virtual time: 6 h */
  bool keep_log;      /* keep the event log text (tests, --virtual -v) */
} ota_vsim_cfg_t;

void ota_vsim_cfg_default(ota_vsim_cfg_t *cfg);

typedef struct {
  char name[48];
  char release[24];   /* provisioned release */
  const uint8_t *app; /* user app (copied), NULL none */
  size_t app_len;
  uint32_t product_id; /* 0 developer */
  bool development;
  ota_link_cfg_t link;
  uint64_t start_ms; /* virtual time of the power-on */
  bool has_id;       /* use `id`; else derived from the seed */
  uint8_t id[12];
  const uint8_t *product_app; /* released product firmware (view, caller's) */
  size_t product_app_len;
  unsigned product_app_version;
} ota_vsim_dev_spec_t;

/* Bytes by category; sum = everything on the link (UDP payloads). */
typedef enum {
  OTA_VB_PAYLOAD = 0, /* module bytes, first sends */
  OTA_VB_COAP,        /* other CoAP bytes */
  OTA_VB_DTLS,        /* 29 B record overhead per datagram */
  OTA_VB_HANDSHAKE,   /* handshake datagrams */
  OTA_VB_RETRANS,     /* CoAP retransmissions and resent chunks (whole) */
  OTA_VB_COUNT
} ota_vbytes_t;

typedef struct {
  uint64_t up[OTA_VB_COUNT], down[OTA_VB_COUNT];
  uint64_t dgrams_up, dgrams_down, lost_up, lost_down;
  uint64_t full_hs, resumed_hs, failed_hs, boots;
  uint32_t jobs_ok, jobs_failed;
  uint32_t faults; /* injected faults that fired */
  uint64_t t_done; /* virtual ms since the device's start, UINT64_MAX never */
  bool done;
} ota_vsim_stats_t;

/* An event the cloud published for a device (the event stream's view).
 * The device's own words come as events too, named "device/...":
 * "device/ota-refused" (data: the receiver's reason, as otalab-device logs
 * it) and "device/hard-fault" (data: the boot's summary). */
typedef void (*ota_vsim_event_fn)(void *ud, size_t dev, uint64_t t_ms,
                                  const char *name, const char *data,
                                  size_t len);
/* A job ended (DONE or FAILED). */
typedef void (*ota_vsim_job_fn)(void *ud, size_t dev, uint64_t t_ms,
                                const ota_csess_job_t *job);

/* A fault filter: true drops the CoAP datagram `coap` (len bytes, before
 * its DTLS record) that device `dev` sends (dir OTA_LINK_UP) or receives
 * (OTA_LINK_DOWN); it counts as sent and lost. Handshakes are not offered. */
typedef bool (*ota_vsim_drop_fn)(void *ud, size_t dev, int dir,
                                 const uint8_t *coap, size_t len,
                                 uint64_t t_ms);

typedef struct ota_vsim ota_vsim_t;

/* Injected faults, otalab-device's --fault syntax and outcomes (docs/
 * PROTOCOL.md "Fleets and faults"); each fires once, at the first chunk with
 * index K of any transfer (fast OTA: the chunk's index; normal: chunks
 * received so far) or at the first update reboot.
 *   drop-link-at-chunk:K[:MS]  the link is out MS ms (default 20000) both
 *       ways; the device drops its cloud connection (the chunk is lost), its
 *       receiver forgets the transfer, it reconnects (resumed) after MS
 *   reset-during-ota:K   reset (watchdog) at chunk K: nothing was queued,
 *       the old firmware boots (reboot_ms), then a resumed handshake
 *   power-loss-during-apply  the update reboot loses power during the
 *       bootloader copy: the next boot (reason power_down) copies the queued
 *       modules again, whole or nothing
 *   corrupt-chunk:K      a payload byte of chunk K is flipped before the
 *       CRC check (fast: counted missed and resent; normal: 4.00) */
typedef enum {
  OTA_VFAULT_DROP_LINK = 1,
  OTA_VFAULT_RESET_OTA = 2,
  OTA_VFAULT_POWER_APPLY = 3,
  OTA_VFAULT_CORRUPT = 4
} ota_vfault_kind_t;

typedef struct {
  ota_vfault_kind_t kind;
  uint32_t chunk; /* K */
  uint32_t ms;    /* drop-link outage */
} ota_vfault_t;

#define OTA_VSIM_MAX_FAULTS 8

/* Parse one SPEC (syntax above) into *f. 0 or OTA_EPARSE. */
int ota_vsim_fault_parse(const char *spec, ota_vfault_t *f);

/* NULL on allocation failure. cat is kept as a pointer. */
ota_vsim_t *ota_vsim_new(const ota_catalog_t *cat, const ota_vsim_cfg_t *cfg);
void ota_vsim_destroy(ota_vsim_t *vs);
void ota_vsim_set_hooks(ota_vsim_t *vs, ota_vsim_event_fn ev,
                        ota_vsim_job_fn job, void *ud);

void ota_vsim_set_drop(ota_vsim_t *vs, ota_vsim_drop_fn fn, void *ud);

/* Add a device (provisioned and scheduled to power on). Returns its index
 * (>= 0) or OTA_ERELEASE / OTA_ENOMEM / the provisioning error. */
int ota_vsim_add(ota_vsim_t *vs, const ota_vsim_dev_spec_t *spec);

/* Queue a module for a device (as PUT /v1/devices/:id): bytes copied. */
int ota_vsim_flash(ota_vsim_t *vs, size_t dev, const uint8_t *mod, size_t len,
                   const char *name);
/* Build a catalogue module (cached, shared): a view valid while vs lives. */
int ota_vsim_module(ota_vsim_t *vs, uint8_t func, uint8_t index,
                    uint16_t version, const uint8_t **mod, size_t *len);

/* Arm fault *f (copied) on device dev. OTA_EINVAL for a bad index or kind,
 * OTA_EFULL after OTA_VSIM_MAX_FAULTS. */
int ota_vsim_fault(ota_vsim_t *vs, size_t dev, const ota_vfault_t *f);

/* Power: off = the device stops at once (no close_notify; the cloud keeps
 * its session until a new Hello); on = power-on boot now (a power cycle when
 * it was on). OTA_EINVAL for a bad index. */
int ota_vsim_power(ota_vsim_t *vs, size_t dev, bool on);
/* Release product firmware (as PUT /v1/products/:id/firmware/release): the
 * app (copied) goes to that product's devices at their next describe. */
int ota_vsim_release(ota_vsim_t *vs, uint32_t product_id, const uint8_t *app,
                     size_t len, unsigned version);
/* Process every event due at or before t_ms, then move the clock to t_ms
 * (whether or not devices are done). */
void ota_vsim_advance(ota_vsim_t *vs, uint64_t t_ms);

/* Process one event. false when the queue is empty or max_ms is passed. */
bool ota_vsim_step(ota_vsim_t *vs);
/* Run until every device is done (or dead), the queue is empty, or virtual
 * time `until_ms` (0: cfg.max_ms). Returns the number of devices done. */
size_t ota_vsim_run(ota_vsim_t *vs, uint64_t until_ms);

uint64_t ota_vsim_now(const ota_vsim_t *vs);
size_t ota_vsim_count(const ota_vsim_t *vs);
uint64_t ota_vsim_events(const ota_vsim_t *vs); /* events processed */
uint64_t ota_vsim_hash(const ota_vsim_t *vs);   /* FNV-1a of the event log */
const char *ota_vsim_log(const ota_vsim_t *vs); /* "" unless keep_log */

const ota_vsim_stats_t *ota_vsim_stats(const ota_vsim_t *vs, size_t dev);
const ota_device_t *ota_vsim_device(const ota_vsim_t *vs, size_t dev);
const ota_csess_t *ota_vsim_cloud(const ota_vsim_t *vs, size_t dev);
const ota_dsess_t *ota_vsim_dsess(const ota_vsim_t *vs, size_t dev);
/* Total bytes of a device's stats (both directions, all categories). */
uint64_t ota_vsim_bytes(const ota_vsim_stats_t *st);

#endif
