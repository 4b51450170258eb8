/* The cloud's Safe Mode Healer for ONE device: one module per reboot until the
 * describe shows no missing dependency. Source: PROTOCOL.md 3.3, 5.2, 6, 7, 9;
 * choices in docs/PROTOCOL.md "Healer choices". */
// clang-format off
/*
 *             describe, not in safe mode (or nothing missing): no effect
 *            +---+
 *            |   v       describe in safe mode, deps missing: plan, emit
 *   init -> IDLE ----------- SEND_MODULE + updating ---------+
 *            |                                               v
 *            | no release satisfies a dep, plan       +-- SENDING <---------+
 *            | refused, 0.5.3 rule would break        |      |              |
 *            v                           N-th failed  |      | OTA result:  |
 *          FAILED <------------------- OTA of one ----+      | ok, or fail  |
 *            ^                         module                v (< N times)  |
 *            |          no plan (as from IDLE)         WAIT_DESCRIBE        |
 *            +---------------------------------------- |     |   |  deps    |
 *                                                      |     |   |  missing:|
 *            describe shows nothing missing: done event|     |   +- re-plan-+
 *   DONE <---------------------------------------------+     |   ^
 *    |                                                       +---+ retry
 *    +-- describe in safe mode again: new round -> SENDING    timer after
 *                                                             a failure
 *
 *   DISABLED (developer device): every describe in safe mode emits
 *   spark/status/safe-mode, nothing else. FAILED is sticky until
 *   ota_healer_reset(); describes there still emit spark/status/safe-mode.
 *   A describe in SENDING is kept and reported; the OTA result comes first.
 *
 * Effects go to a caller-owned ota_outbox_t as OTA_FX_EVENT with
 * fx.arg = ota_heal_fx_t; read them with ota_healer_effect_get():
 *   OTA_HEAL_FX_SEND_MODULE  module (f/n/v), release, file name, bytes: the
 *                            server loads the file and runs one OTA job, then
 *                            calls ota_healer_on_ota_result().
 *   OTA_HEAL_FX_EVENT        name + data for the device's event stream:
 *                            spark/status/safe-mode (data: the describe JSON),
 *                            spark/safe-mode-updater/updating (data: the
 *                            module index, "3"), otalab/healer/done,
 *                            otalab/healer/failed (data: the reason).
 *
 * Ownership: the healer keeps a pointer to the catalogue (caller-owned, must
 * outlive it) and a copy of the latest describe (without its JSON view).
 * Describes passed in are read during the call only. No heap. */
// clang-format on
#ifndef OTALAB_HEALER_H
#define OTALAB_HEALER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otalab/catalog.h"
#include "otalab/describe.h"
#include "otalab/outbox.h"
#include "otalab/planner.h"

/* X(state, name). */
#define OTA_HEAL_STATES(X)                                                     \
  X(OTA_HEAL_IDLE, "IDLE")       /* no healing under way */                    \
  X(OTA_HEAL_SENDING, "SENDING") /* one module sent, awaiting its result */    \
  X(OTA_HEAL_WAIT_DESCRIBE, "WAIT_DESCRIBE") /* awaiting the reconnect */      \
  X(OTA_HEAL_DONE, "DONE")                   /* healed */                      \
  X(OTA_HEAL_FAILED, "FAILED")               /* gave up (sticky) */            \
  X(OTA_HEAL_DISABLED, "DISABLED")           /* developer device */

typedef enum {
#define OTA_HEAL_STATE_ENUM(s, n) s,
  OTA_HEAL_STATES(OTA_HEAL_STATE_ENUM)
#undef OTA_HEAL_STATE_ENUM
      OTA_HEAL_STATE_COUNT
} ota_heal_state_t;

/* Static name of a state ("SENDING"), "?" when out of range. */
const char *ota_heal_state_name(ota_heal_state_t s);

/* Tunables (defaults in ota_healer_config_default(), the only place). */
typedef struct {
  bool product;         /* product device: the healer runs. Default true */
  uint8_t max_failures; /* failed OTAs of one module before giving up: 3 */
  uint32_t retry_ms;    /* after a failed OTA and no reconnect, resend from
                           the last describe after: 60000 */
  char device[32];      /* name for logs (device id), "" default */
} ota_healer_cfg_t;

void ota_healer_config_default(ota_healer_cfg_t *cfg);

/* fx.arg of the healer's OTA_FX_EVENT effects ('H' << 8 | n: distinct from
 * ota_tx's event kinds). */
typedef enum {
  OTA_HEAL_FX_SEND_MODULE = 0x4801,
  OTA_HEAL_FX_EVENT = 0x4802
} ota_heal_fx_t;

#define OTA_HEAL_MAX_DATA 4096 /* event data bytes (a describe is ~1 KB) */

/* One effect, as ota_healer_effect_get() reads it. */
typedef struct {
  int32_t kind;        /* ota_heal_fx_t */
  ota_modref_t module; /* SEND_MODULE: function, index, version */
  char release[24];    /* SEND_MODULE: catalogue release shipping it */
  char file[48];       /* SEND_MODULE: "system-part1-0.6.2-electron.bin" */
  uint32_t bytes;      /* SEND_MODULE: size in the catalogue */
  char name[48];       /* EVENT: "spark/status/safe-mode" ... */
  size_t data_len;     /* EVENT: data length */
  const char *data;    /* EVENT: view into the outbox arena (not NUL-
                          terminated), valid until ota_outbox_clear() */
} ota_heal_effect_t;

/* Copy the effect header out of the outbox and point e->data at its bytes.
 * OTA_EINVAL if fx is not a healer effect. */
int ota_healer_effect_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                          ota_heal_effect_t *e);

#define OTA_HEAL_MAX_TRACKED 16 /* distinct modules with failure counts */

typedef struct {
  ota_healer_cfg_t cfg;
  const ota_catalog_t *cat; /* not owned */
  ota_heal_state_t state;
  ota_describe_t last; /* latest describe (json view cleared) */
  bool have_last;
  ota_modref_t sending; /* module in flight (SENDING) or last sent */
  bool last_failed;     /* the latest OTA result was a failure */
  uint64_t deadline;    /* retry timer, UINT64_MAX none */
  struct {
    ota_modref_t id;
    uint8_t failures;
  } fails[OTA_HEAL_MAX_TRACKED];
  size_t nfails;
  ota_plan_t plan;  /* the latest plan (tests, logs) */
  char reason[160]; /* why FAILED, or the done summary */
  /* counters for logs and tests */
  uint32_t n_sent, n_ok, n_failed, n_rounds;
} ota_healer_t;

/* Reset to IDLE (DISABLED for a developer device) with cfg (copied; NULL =
 * defaults) and the catalogue (kept as a pointer). Cannot fail. */
void ota_healer_init(ota_healer_t *h, const ota_healer_cfg_t *cfg,
                     const ota_catalog_t *cat);
/* Forget everything and go IDLE / DISABLED again (no effects). Safe twice. */
void ota_healer_reset(ota_healer_t *h);
/* Nothing to release (no heap); for the lifecycle convention. Safe twice. */
void ota_healer_free(ota_healer_t *h);

/* A describe after a connect (parsed with ota_describe_parse; read during the
 * call, its JSON view copied into the safe-mode event). Emits
 * spark/status/safe-mode when it shows safe mode; then per state (diagram):
 * starts or continues healing with one SEND_MODULE (+ updating event), or
 * finishes (done / failed events). Returns 0, OTA_ENOBUFS (outbox full) or
 * OTA_EINVAL. Planning failures are not errors: they end in FAILED. */
int ota_healer_on_describe(ota_healer_t *h, const ota_describe_t *d,
                           uint64_t now_ms, ota_outbox_t *out);

/* The server's OTA job for the module of the last SEND_MODULE finished: ok,
 * or failed with `reason` (may be NULL). OTA_ESTATE (ignored) unless SENDING.
 * The N-th failure of the same module ends in FAILED; otherwise waits for the
 * reconnect's describe (or the retry timer after a failure). */
int ota_healer_on_ota_result(ota_healer_t *h, bool ok, const char *reason,
                             uint64_t now_ms, ota_outbox_t *out);

/* Time passed: after a failed OTA with no describe since, re-plan from the
 * last describe and resend. Calling it early is harmless. 0 or OTA_ENOBUFS. */
int ota_healer_on_timer(ota_healer_t *h, uint64_t now_ms, ota_outbox_t *out);

/* When ota_healer_on_timer() next has work, UINT64_MAX when none. */
uint64_t ota_healer_next_deadline(const ota_healer_t *h);

#endif
