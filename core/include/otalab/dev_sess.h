/* One simulated Electron's cloud session, sans-IO: Hello through the device's
 * CoAP channel, serving the cloud's requests with the strict parser, the OTA
 * receiver's effects, reboot and keep-alive (PROTOCOL.md 1.5, 2.1-2.5, 3, 7).
 * Ported from device-sim/sim_dev.c (same messages, same order). */
// clang-format off
/*
 *   ota_dsess_boot() (hard-fault loop) ------------------------> DEAD
 *        |
 *        v  on_up(): channel + receiver fresh, CON Hello
 *       OFF ---------------------------------------------> HELLO
 *        ^                                                  |  | Hello RST or
 *        | on_down() from any state but DEAD                |  | no ACK: DEAD
 *        |                                   ACK of Hello   v  v
 *        +------- keep-alive ping unanswered ---------- ONLINE (handshake
 *        |                                                  |   events sent)
 *        |          2.04 to UpdateDone (receiver REBOOT),   |
 *        +-- boot --  "spark/device/reset" "safe mode"  <---+
 *                     REBOOT: the adapter closes the transport (no
 *                     close_notify) and calls ota_dsess_boot()
 *
 * Effects (caller's outbox): OTA_FX_SEND an encoded datagram for the cloud
 * (fx.addr = 1 for a CoAP retransmission or a cached duplicate reply),
 * OTA_FX_REBOOT (arg = ota_reset_t to boot with), OTA_FX_EVENT arg
 * OTA_DSESS_FX_STATE (bytes: "OLD => NEW (why)").
 *
 * Ownership: the session keeps a pointer to the caller's ota_device_t (flash,
 * boot rules) and to a scratch area shared by every session of one thread;
 * it owns its channel, receiver and a 128 KB staging buffer that is
 * malloc'd only while an update runs. */
// clang-format on
#ifndef OTALAB_DEV_SESS_H
#define OTALAB_DEV_SESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otalab/coap_chan.h"
#include "otalab/device.h"
#include "otalab/ota_rx.h"
#include "otalab/outbox.h"

#define OTA_DSESS_STATES(X)                                                    \
  X(OTA_DSESS_OFF, "OFF")       /* no transport */                             \
  X(OTA_DSESS_HELLO, "HELLO")   /* Hello sent, awaiting its ACK */             \
  X(OTA_DSESS_ONLINE, "ONLINE") /* Hello acknowledged */                       \
  X(OTA_DSESS_REBOOT, "REBOOT") /* reboot asked: adapter closes and boots */   \
  X(OTA_DSESS_DEAD, "DEAD")     /* refused, or hard-fault loop */

typedef enum {
#define OTA_DSESS_ENUM(s, n) s,
  OTA_DSESS_STATES(OTA_DSESS_ENUM)
#undef OTA_DSESS_ENUM
      OTA_DSESS_STATE_COUNT
} ota_dsess_state_t;

const char *ota_dsess_state_name(ota_dsess_state_t s);

#define OTA_DSESS_FX_STATE 0x4401 /* fx.arg of the state-change event */
#define OTA_DSESS_KEEPALIVE_MS (23u * 60u * 1000u) /* PROTOCOL.md 1.5 */

typedef struct {
  uint16_t first_mid;    /* first CoAP message id (then kept across connects) */
  uint64_t seed;         /* channel jitter PRNG, mixed per connect */
  int product;           /* Hello product id; -1: the app's */
  uint32_t keepalive_ms; /* OTA_DSESS_KEEPALIVE_MS */
  char name[32];         /* for logs */
} ota_dsess_cfg_t;

void ota_dsess_cfg_default(ota_dsess_cfg_t *cfg);

/* Scratch outboxes, shared by the sessions of one thread (~150 KB). */
typedef struct {
  ota_outbox_t a, b, rx;
  ota_outbox_t *next; /* where channel effects go while handling */
  char describe[4096];
} ota_dsess_scratch_t;

typedef struct {
  uint64_t hellos, describes, otas_ok, otas_rejected, ota_bytes, reboots;
  uint64_t pings, retransmits;
} ota_dsess_counters_t;

typedef struct {
  ota_dsess_cfg_t cfg;
  ota_dsess_state_t state;
  ota_device_t *dev;            /* not owned */
  ota_dsess_scratch_t *scratch; /* not owned */
  ota_coap_chan_t ch;
  ota_rx_t rx;
  uint8_t *staging; /* malloc'd while an update runs */
  uint16_t next_mid;
  uint16_t hello_mid, ping_mid;
  bool ping_out, described;
  int reboot; /* 0, 1 after an update, 2 safe mode requested */
  const char *fail;
  bool fatal;
  uint64_t last_io;
  uint32_t connects;
  ota_dsess_counters_t n;
  char last_reject[200]; /* why the latest OTA was rejected, "" none */
} ota_dsess_t;

/* Bind to dev (not owned) and scratch (not owned). State OFF. Cannot fail. */
void ota_dsess_init(ota_dsess_t *s, const ota_dsess_cfg_t *cfg,
                    ota_device_t *dev, ota_dsess_scratch_t *scratch);
/* Release the staging buffer and the channel. Safe twice. */
void ota_dsess_free(ota_dsess_t *s);

/* Boot the device with `reason` (ota_device_boot); OFF, or DEAD in a
 * hard-fault loop. Returns 0 or OTA_EINVAL; *r (may be NULL) gets the result.*/
int ota_dsess_boot(ota_dsess_t *s, ota_reset_t reason, uint64_t now_ms,
                   ota_boot_result_t *r, ota_outbox_t *out);
/* The transport is up (handshake done): fresh channel and receiver, the CON
 * Hello goes out. OTA_ESTATE unless OFF or the device is offline. */
int ota_dsess_on_up(ota_dsess_t *s, uint64_t now_ms, ota_outbox_t *out);
/* The transport went away (link lost, cloud closed): any transfer is
 * forgotten; OFF (DEAD stays DEAD). */
void ota_dsess_on_down(ota_dsess_t *s, uint64_t now_ms, const char *why,
                       ota_outbox_t *out);
/* One decrypted datagram from the cloud. Returns 0 (peer errors are data). */
int ota_dsess_on_datagram(ota_dsess_t *s, const uint8_t *buf, size_t len,
                          uint64_t now_ms, ota_outbox_t *out);
/* Timers: CoAP retransmissions, receiver timers, keep-alive. */
int ota_dsess_on_timer(ota_dsess_t *s, uint64_t now_ms, ota_outbox_t *out);
/* UINT64_MAX when nothing is due (or not connected). */
uint64_t ota_dsess_next_deadline(const ota_dsess_t *s);

#endif
