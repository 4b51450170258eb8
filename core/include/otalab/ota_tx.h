/* The cloud's OTA sender: one module to one device over Particle's legacy
 * chunked transfer, normal and fast mode. Source: PROTOCOL.md 2.1-2.5. */
// clang-format off
/*
 *  IDLE -start()-> BEGIN --- UpdateReady (2.04, our token) ---+
 *                  | ^ no UpdateReady in begin_timeout: flag 0 | flag 1
 *                  | +-- UpdateBegin again (begin_tries)       v       v
 *  ACK 4.00 no tok |                     2.04: next +----- CHUNK   WINDOW <---+
 *  ACK 5.03 token  |                     4.00: same +----->  |      | |  ^    |
 *                  v                             last 2.04   |      | +--+    |
 *               FAILED <-- timeouts, retries, rounds spent   |      | NON x N |
 *                  ^                                         |      | + ping, |
 *                  |                                         |      | pong or |
 *                  |                                         v      | lost    |
 *                  |                                  DONE_SENT <---+ and     |
 *                  +--- 2.04 {"r":"error"}, {"r":<0} ---+  ^  |   none left:  |
 *                                                       |  |  |   UpdateDone  |
 *  SUCCEEDED <--- 2.04 none, {"r":"ok"..}, {"r":0} -----+  |  v 4.00          |
 *      ^                          no ChunkMissed in wait:  +- MISSED ---------+
 *      |                          UpdateDone again           ChunkMissed:
 *      +-- device's own UpdateDone (<= 0.7.x)                resend round
 *          in WINDOW, DONE_SENT or MISSED
 *
 * Fast-mode pacing is ack-clocked: each window of NON chunks ends with a
 * CoAP ping (CON 0.00, no token; the device answers it with an empty ACK,
 * PROTOCOL.md 1.5) and the next window goes when the ping's ACK or RST (the
 * "pong") arrives. On a slow link the pong waits behind the window's chunks,
 * so windows follow the link's bandwidth; on a fast one, one round trip. A
 * pong within grow_rtt_ms doubles the window (up to window_max); no pong
 * within max(ping_timeout_ms, 2 x the last pong time) counts the ping as
 * lost: the window drops back to `window` and the next one goes anyway (the
 * ChunkMissed rounds repair any chunk loss). The UpdateDone goes at the
 * pong of the last window (never racing its chunks).
 *
 * A ChunkMissed in WINDOW adds its indexes to the resend set without ending
 * the round; resend rounds are bounded by max_resend_rounds.
 *
 * Effects go to a caller-owned ota_outbox_t (otalab/outbox.h):
 *   OTA_FX_SEND   one encoded CoAP request to the device (ota_outbox_msg()
 *                 gives type, code, token, options, payload). Requests carry
 *                 a fresh 1-byte token each; replies are matched by TOKEN, not
 *                 message id, so an adapter (libcoap) may assign its own ids,
 *                 retransmit CONs and ACK the device's CONs itself. The one
 *                 exception is the ping (CON, code 0.00, no token): its
 *                 empty ACK or RST is matched by message id. An adapter that
 *                 keeps ota_tx's ids passes that reply to ota_tx_on_message();
 *                 one that assigns its own (libcoap) matches it itself and
 *                 calls ota_tx_on_pong().
 *   OTA_FX_EVENT  arg = ota_tx_ev_t, bytes = an ota_tx_report_t (read it with
 *                 ota_tx_report_get()): PROGRESS (bytes sent of total) and
 *                 one RESULT when the machine reaches SUCCEEDED or FAILED.
 *
 * Ownership: ota_tx_start() keeps a VIEW of the module bytes; the caller keeps
 * them alive and unchanged until the machine is finished (or re-initialised).
 * Messages passed in are read during the call only. */
// clang-format on
#ifndef OTALAB_OTA_TX_H
#define OTALAB_OTA_TX_H

#include "otalab/coap.h"
#include "otalab/msg.h"
#include "otalab/outbox.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* X(state, name). */
#define OTA_TX_STATES(X)                                                       \
  X(OTA_TX_IDLE, "IDLE")     /* not started */                                 \
  X(OTA_TX_BEGIN, "BEGIN")   /* UpdateBegin sent, awaiting UpdateReady */      \
  X(OTA_TX_CHUNK, "CHUNK")   /* normal: awaiting ChunkReceived */              \
  X(OTA_TX_WINDOW, "WINDOW") /* fast: sending windows of NON chunks */         \
  X(OTA_TX_DONE_SENT, "DONE_SENT") /* UpdateDone sent, awaiting its ACK */     \
  X(OTA_TX_MISSED, "MISSED")       /* 4.00 got, awaiting ChunkMissed */        \
  X(OTA_TX_SUCCEEDED, "SUCCEEDED")                                             \
  X(OTA_TX_FAILED, "FAILED")

typedef enum {
#define OTA_TX_STATE_ENUM(s, n) s,
  OTA_TX_STATES(OTA_TX_STATE_ENUM)
#undef OTA_TX_STATE_ENUM
      OTA_TX_STATE_COUNT
} ota_tx_state_t;

/* Static name of a state ("WINDOW"), "?" when out of range. */
const char *ota_tx_state_name(ota_tx_state_t s);

/* Tunables. All times in milliseconds of the caller's clock. */
typedef struct {
  bool fast;                 /* ask for fast OTA (device may refuse): true */
  uint16_t chunk_size;       /* 512 (OTA_CHUNK_SIZE) */
  uint8_t store;             /* UpdateBegin store: OTA_STORE_FIRMWARE */
  uint32_t address;          /* UpdateBegin address (offset in OTA region): 0 */
  uint32_t begin_timeout_ms; /* wait for UpdateReady per try: 6000 */
  uint8_t begin_tries;       /* UpdateBegin attempts: 3 */
  uint32_t chunk_timeout_ms; /* normal: wait for ChunkReceived: 30000 */
  uint8_t chunk_retries;     /* normal: resends of one chunk on 4.00: 3 */
  /* fast: NON chunks per window at the start and after a lost ping: 16.
   * The planner's time model (ota_plan_model_default) assumes this window
   * and one round trip per window: keep the two equal. */
  uint16_t window;
  uint16_t window_max;  /* fast: the window doubles up to this: 64 */
  uint32_t grow_rtt_ms; /* fast: a pong this quick doubles the window: 100 */
  /* fast: wait for a window's pong at most max(this, 2 x the last pong
   * time), then call the ping lost and send the next window: 5000. 0 = no
   * pings, windows back to back (unpaced: loopback experiments only). */
  uint32_t ping_timeout_ms;
  uint32_t done_timeout_ms;  /* wait for the UpdateDone ACK: 30000 */
  uint32_t missed_wait_ms;   /* after 4.00, wait for ChunkMissed: 4000 */
  uint8_t max_resend_rounds; /* ChunkMissed/UpdateDone rounds: 5 */
  uint32_t total_timeout_ms; /* whole transfer: 600000 */
  uint8_t token_seed;        /* first token; +1 per request: 1 */
  uint16_t first_mid;        /* first message id (adapter may replace): 1 */
} ota_tx_cfg_t;

/* Fill cfg with the defaults listed above (the only place they live). */
void ota_tx_config_default(ota_tx_cfg_t *cfg);

/* Kinds of OTA_FX_EVENT effects (fx.arg). */
typedef enum { OTA_TX_EV_PROGRESS = 1, OTA_TX_EV_RESULT = 2 } ota_tx_ev_t;

/* Outcome of a transfer. */
typedef struct {
  int err;           /* 0 = success, else OTA_E* (see ota_tx_result()) */
  uint8_t coap_code; /* the refusing/replying CoAP code (0 if none) */
  bool device_done;  /* finished by the device's own UpdateDone (<= 0.7) */
  bool has_done;     /* `done` holds a parsed 2.04 UpdateDone payload */
  ota_msg_done_result_t done;
  char why[96]; /* short human reason, "" on success */
} ota_tx_result_t;

/* Payload of an OTA_FX_EVENT effect. */
typedef struct {
  int32_t kind;   /* ota_tx_ev_t */
  uint32_t sent;  /* distinct module bytes sent (normal: acknowledged) */
  uint32_t total; /* module length */
  ota_tx_result_t result; /* RESULT only */
} ota_tx_report_t;

/* Copy the report of an OTA_FX_EVENT effect out of the outbox arena.
 * OTA_EINVAL if fx is not an event of this module. */
int ota_tx_report_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                      ota_tx_report_t *rep);

#define OTA_TX_MAX_CHUNKS 4096 /* resend bitmap size: 128 KB / 32 B chunks */

typedef struct {
  ota_tx_cfg_t cfg;
  ota_tx_state_t state;
  const uint8_t *mod; /* view, caller-owned */
  uint32_t len;
  uint16_t chunk_size;
  uint32_t nchunks;
  bool fast; /* as agreed by UpdateReady */
  uint8_t next_token;
  uint16_t next_mid;
  uint8_t cur_token;  /* token of the request whose reply we await */
  uint16_t win;       /* fast: current window (chunks) */
  bool ping_out;      /* fast: a window's ping awaits its pong */
  uint16_t ping_mid;  /* ... its message id (ota_tx's numbering) */
  uint64_t ping_at;   /* ... when it was sent */
  uint32_t pong_ms;   /* fast: last ping round trip, 0 = none yet */
  uint32_t cur_chunk; /* normal: chunk in flight; fast: scan position */
  uint8_t tries;      /* begin tries or retries of the current chunk */
  uint8_t rounds;     /* resend rounds used */
  uint32_t sent_bytes;
  uint64_t deadline;                      /* state timer, UINT64_MAX none */
  uint64_t give_up;                       /* start + total_timeout_ms */
  uint8_t pending[OTA_TX_MAX_CHUNKS / 8]; /* fast: chunks still to send */
  uint8_t once[OTA_TX_MAX_CHUNKS / 8];    /* fast: chunks sent at least once */
  uint32_t npending;
  ota_tx_result_t result;
  /* counters for logs and tests */
  uint32_t n_chunks_sent, n_resent, n_done_sent;
  uint32_t n_pings, n_pongs, n_ping_lost, max_win;
} ota_tx_t;

/* Reset to IDLE with cfg (copied; NULL = defaults). Cannot fail. */
void ota_tx_init(ota_tx_t *tx, const ota_tx_cfg_t *cfg);
/* Forget the module view and go IDLE (no effects). Safe twice. */
void ota_tx_free(ota_tx_t *tx);

/* Start sending mod[0..len) (view kept, see above): emits the CON UpdateBegin.
 * OTA_ETOOBIG if len > OTA_STAGING_SIZE, OTA_EINVAL for len 0, NULL or a
 * chunk size giving more than OTA_TX_MAX_CHUNKS chunks, OTA_ESTATE unless
 * IDLE, OTA_ENOBUFS if the outbox is full. Nothing changes on error. */
int ota_tx_start(ota_tx_t *tx, const uint8_t *mod, size_t len, uint64_t now_ms,
                 ota_outbox_t *out);

/* A message from the device (decoded; read during the call only). Replies
 * not belonging to this transfer are logged and ignored (return 0). Returns
 * 0 or OTA_ENOBUFS (outbox full: the adapter's outbox is too small). */
int ota_tx_on_message(ota_tx_t *tx, const ota_coap_msg_t *in, uint64_t now_ms,
                      ota_outbox_t *out);

/* The pong: the ACK (or RST) of the last ping this machine emitted, for
 * adapters that give messages their own ids and match the reply themselves
 * (replies to older pings must not be passed). Sends the next window, or the
 * UpdateDone. Ignored (0) when no ping is outstanding. 0 or OTA_ENOBUFS. */
int ota_tx_on_pong(ota_tx_t *tx, uint64_t now_ms, ota_outbox_t *out);

/* Time passed: run due timers (next window, retries, timeouts). 0 or
 * OTA_ENOBUFS. Calling it early is harmless. */
int ota_tx_on_timer(ota_tx_t *tx, uint64_t now_ms, ota_outbox_t *out);

/* When ota_tx_on_timer() next has work, UINT64_MAX when none. */
uint64_t ota_tx_next_deadline(const ota_tx_t *tx);

/* True in SUCCEEDED or FAILED. */
bool ota_tx_finished(const ota_tx_t *tx);
/* The outcome; meaningful once finished (err OTA_ESTATE before that).
 * Failures: OTA_EREFUSED (UpdateBegin refused; coap_code 4.00 or 5.03, or
 * another error code to UpdateDone), OTA_ETIMEDOUT, OTA_ECRC (a normal chunk
 * rejected chunk_retries+1 times), OTA_EPROTO (unexpected reply), the error
 * the device reported after validation (ota_rx_err_from_syserr() of its
 * code, e.g. OTA_EDEPFAIL for -1340; done.code holds the device code), or
 * OTA_EFULL (resend rounds spent). Pointer into tx. */
const ota_tx_result_t *ota_tx_result(const ota_tx_t *tx);

#endif
