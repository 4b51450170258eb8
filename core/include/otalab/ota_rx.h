/* The device's OTA receiver (Device OS chunked_transfer.cpp as PROTOCOL.md
 * 2.4-2.5 describes it, per release: 0.5.x ... 3.x on the Electron). */
// clang-format off
/*
 *       UpdateBegin accepted: empty ACK + UpdateReady (CON 2.04, fast flag)
 *  IDLE ----------------------------------------------> RECEIVING <--+
 *   ^ |  UpdateBegin refused: ACK 4.00 or 5.03, stay     | |   | Chunk,
 *   | |  Chunk, UpdateDone: ACK and ignore               | |   | new
 *   | +--<--                                             | |   | Begin:
 *   |         UpdateDone, chunks missing: ACK 4.00 +     | |---+ from 0
 *   |         ChunkMissed; >= 0.8 stays RECEIVING,       | |
 *   |         <= 0.7.x goes MISSING                      | | UpdateDone, all
 *   |                                                    v | there: verify,
 *   |          MISSING --- last missing chunk (<= 0.7):    v ACK 2.04 + form
 *   |            | ^       own UpdateDone, verify ----> DONE --> APPLY or
 *   |            +-+ 3 s without a chunk:               |       REJECT,
 *   |                ChunkMissed again                  |       REBOOT
 *   +------ reset() (reconnect, reboot) from any state -+
 *
 * Effects go to a caller-owned ota_outbox_t (otalab/outbox.h):
 *   OTA_FX_SEND         an encoded reply/request to the cloud. ACKs carry the
 *                       request's message id; new CON messages (UpdateReady,
 *                       ChunkReceived, ChunkMissed, device UpdateDone) carry
 *                       id 0: pass them through the device's CoAP channel
 *                       (ota_coap_chan_send) which assigns ids and retransmits.
 *   OTA_FX_FLASH_WRITE  addr = OTA_ADDR_OTA + offset in the staging area,
 *                       bytes = chunk data. The adapter owns the staging
 *                       buffer and MUST carry out writes (in order) before it
 *                       feeds the next event: verify reads cfg.staging.
 *   OTA_FX_EVENT        arg = ota_rx_ev_t, bytes = ota_rx_report_t
 *                       (ota_rx_report_get()): BEGIN, APPLY (the module is
 *                       valid: queue it for the bootloader) or REJECT (never
 *                       apply it).
 *   OTA_FX_REBOOT       arg = OTA_RX_REBOOT_UPDATE, after APPLY or REJECT: the
 *                       device always resets after the 2.04 (PROTOCOL.md 2.5).
 *
 * Ownership: messages are read during the call only; cfg.staging is a
 * read-only view of the adapter's buffer. */
// clang-format on
#ifndef OTALAB_OTA_RX_H
#define OTALAB_OTA_RX_H

#include "otalab/coap.h"
#include "otalab/msg.h"
#include "otalab/outbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* X(state, name). */
#define OTA_RX_STATES(X)                                                       \
  X(OTA_RX_IDLE, "IDLE")           /* not updating */                          \
  X(OTA_RX_RECEIVING, "RECEIVING") /* between UpdateBegin and completion */    \
  X(OTA_RX_MISSING, "MISSING")     /* <= 0.7.x: awaiting listed chunks */      \
  X(OTA_RX_DONE, "DONE")           /* finished, reboot requested */

typedef enum {
#define OTA_RX_STATE_ENUM(s, n) s,
  OTA_RX_STATES(OTA_RX_STATE_ENUM)
#undef OTA_RX_STATE_ENUM
      OTA_RX_STATE_COUNT
} ota_rx_state_t;

/* Static name of a state, "?" when out of range. */
const char *ota_rx_state_name(ota_rx_state_t s);

/* How the device refuses an UpdateBegin (PROTOCOL.md 2.5 step 2). */
typedef enum {
  OTA_RX_REFUSE_400 = 0, /* <= 1.1.x: ACK 4.00, no token */
  OTA_RX_REFUSE_503 = 1  /* >= 1.2.0-rc.1: ACK 5.03 with the token */
} ota_rx_refusal_t;

/* The verify hook: validate staging[0..len) (integrity, dependencies) when
 * all chunks are present. Return 0 (valid) or an OTA_E* (mapped to a Device
 * OS code by ota_rx_syserr_from_err()); may write a reason into why. */
typedef int (*ota_rx_verify_fn)(void *ud, const uint8_t *staging, size_t len,
                                char *why, size_t whylen);

typedef struct {
  bool updates_enabled;        /* false: refuse every UpdateBegin: true */
  bool fast_ota;               /* accept fast OTA when asked: true */
  ota_rx_refusal_t refusal;    /* OTA_RX_REFUSE_503 */
  ota_done_form_t done_form;   /* 2.04 payload form: OTA_DONE_FORM_INT */
  bool device_done;            /* <= 0.7.x behaviour (see diagram): false */
  uint32_t missed_resend_ms;   /* <= 0.7.x ChunkMissed repeat: 3000 */
  uint8_t missed_max;          /* indexes per ChunkMissed: 40 (Electron) */
  uint16_t default_chunk_size; /* chunk size 0 / short payload: 512 */
  uint32_t staging_size;       /* OTA region: OTA_STAGING_SIZE (128 KB) */
  const uint8_t *staging;      /* adapter's staging buffer (may be NULL) */
  ota_rx_verify_fn verify;     /* NULL: every complete module is valid */
  void *verify_ud;
} ota_rx_cfg_t;

/* Fill cfg with the defaults above (a >= 2.0 release). */
void ota_rx_config_default(ota_rx_cfg_t *cfg);
/* Set the release-dependent fields (refusal, done_form, device_done) for
 * Device OS version major.minor.patch (pre-releases count as the release):
 * < 0.6.1 form NONE, < 2.0 OKERR, else INT; < 0.8.0 device_done; < 1.2.0
 * refusal 4.00 else 5.03. Other fields untouched. */
void ota_rx_config_release(ota_rx_cfg_t *cfg, int major, int minor, int patch);

/* Kinds of OTA_FX_EVENT effects (fx.arg). */
typedef enum {
  OTA_RX_EV_BEGIN = 1,
  OTA_RX_EV_APPLY = 2,
  OTA_RX_EV_REJECT = 3
} ota_rx_ev_t;

#define OTA_RX_REBOOT_UPDATE 1 /* OTA_FX_REBOOT arg: reset after an update */

typedef struct {
  int32_t kind; /* ota_rx_ev_t */
  uint32_t file_size;
  uint8_t store;
  uint32_t address; /* offset in the OTA region */
  bool fast;
  int32_t err;    /* REJECT: verify's OTA_E* */
  int32_t syserr; /* REJECT: Device OS code (-1300..-1390) */
  char why[96];
} ota_rx_report_t;

/* Copy the report of an OTA_FX_EVENT effect. OTA_EINVAL if not one. */
int ota_rx_report_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                      ota_rx_report_t *rep);

/* OTA_E* -> Device OS system error (-1300 module not found ... -1390 generic):
 * ENOENT -1300; EUNSUPPORTED, EFUNC -1310; EPROTO -1320; ECRC, ESHA -1330;
 * EDEP, EDEPFAIL, EDOWNGRADE -1340; EADDR, ETOOBIG -1350; EPLATFORM -1360;
 * EHEADER, EPARSE, ETRUNC, ESIZE -1370; EREFUSED -1380; EIO -1390; other
 * errors -1320 (validation failed); 0 -> 0. */
int ota_rx_syserr_from_err(int err);
/* Inverse on the ten codes (-1320 -> OTA_EPROTO, -1370 -> OTA_EHEADER,
 * -1390 -> OTA_EIO, ...); 0 -> 0; any other negative -> OTA_EIO. */
int ota_rx_err_from_syserr(int code);

#define OTA_RX_MAX_CHUNKS 65535 /* chunk count must be below this */

typedef struct {
  ota_rx_cfg_t cfg;
  ota_rx_state_t state;
  bool fast;
  uint16_t chunk_size;
  uint32_t file_size;
  uint8_t store;
  uint32_t address;
  uint32_t nchunks;
  uint32_t next_index;    /* normal mode: implicit index of the next chunk */
  uint32_t nreceived;     /* distinct chunks written */
  uint32_t flight;        /* good chunks since the last ChunkMissed */
  uint64_t last_chunk_ms; /* <= 0.7.x MISSING timer */
  bool complete_pending;  /* <= 0.7.x: finish on the next on_timer() */
  uint8_t have[(OTA_RX_MAX_CHUNKS + 7) / 8];
  /* counters for logs and tests */
  uint32_t n_bad_crc, n_dup, n_outside, n_ignored, n_missed_sent;
} ota_rx_t;

/* Reset to IDLE with cfg (copied; NULL = defaults). Cannot fail. */
void ota_rx_init(ota_rx_t *rx, const ota_rx_cfg_t *cfg);
/* Go IDLE (no effects). Safe twice. */
void ota_rx_free(ota_rx_t *rx);
/* The connection was lost (or the device rebooted): any transfer is
 * forgotten; the next one starts from zero. Cannot fail. */
void ota_rx_reset(ota_rx_t *rx, uint64_t now_ms);

/* A decoded request from the cloud (UpdateBegin, Chunk, UpdateDone; other
 * kinds return 0 untouched). Errors in the peer's data are answered and
 * logged, not returned. Returns 0 or OTA_ENOBUFS (outbox full). */
int ota_rx_on_message(ota_rx_t *rx, const ota_coap_msg_t *in, uint64_t now_ms,
                      ota_outbox_t *out);
/* Time passed: <= 0.7.x ChunkMissed repeat and deferred completion. */
int ota_rx_on_timer(ota_rx_t *rx, uint64_t now_ms, ota_outbox_t *out);
/* UINT64_MAX when no timer is due. */
uint64_t ota_rx_next_deadline(const ota_rx_t *rx);

/* Distinct chunks received in the current transfer. */
uint32_t ota_rx_received(const ota_rx_t *rx);

#endif
