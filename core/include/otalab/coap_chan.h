/* A sans-IO CoAP endpoint for the DEVICE side: message ids, CON retransmission,
 * ACK/RST matching and duplicate detection (RFC 7252 4.2-4.5; Device OS
 * communication/src/coap_channel.h, PROTOCOL.md 2.1). The server uses libcoap.
 *
 *   send(CON) --> [pending: deadline = now + T0, T0 = 4 s * (1 + r*0.5)]
 *        timer expires, retries < 3 --> re-SEND, T *= 2, retries++
 *        timer expires, retries = 3 --> TIMEOUT effect (OTA_ETIMEDOUT), freed
 *        ACK/RST with the same mid  --> DELIVER effect, freed
 *   datagram in: CON/NON request, new mid  --> remember mid, DELIVER
 *                same mid seen (lifetime)  --> CON: re-SEND cached reply; drop
 *   send(ACK/RST) for a remembered CON     --> reply cached for duplicates
 *
 * Ownership: the channel copies everything it keeps (pending CONs, cached
 * replies) into its own fixed buffers; effects go to the caller's outbox. The
 * channel struct is plain data (no heap), ~30 KB. Randomness comes from a
 * PRNG seeded by the config, so a run can be replayed. */
#ifndef OTALAB_COAP_CHAN_H
#define OTALAB_COAP_CHAN_H

#include "otalab/coap.h"
#include "otalab/outbox.h"

#include <stdint.h>

#define OTA_COAP_CHAN_PENDING 4    /* outstanding CON messages */
#define OTA_COAP_CHAN_SEEN 8       /* remembered incoming message ids */
#define OTA_COAP_CHAN_MSG_MAX 1536 /* largest datagram kept for resending */

typedef struct {
  uint32_t ack_timeout_ms;       /* 4000 */
  uint32_t ack_random_pct;       /* 50: T0 in [t, t*(1+pct/100)] */
  uint8_t max_retransmit;        /* 3 */
  uint32_t exchange_lifetime_ms; /* 247000: how long a mid is a duplicate */
  uint16_t first_mid;            /* id of the first new message */
  uint64_t seed;                 /* PRNG seed (jitter) */
} ota_coap_chan_cfg_t;

/* The defaults above; first_mid 1, seed 1. */
void ota_coap_chan_cfg_default(ota_coap_chan_cfg_t *cfg);

typedef struct {
  bool used;
  uint16_t mid;
  uint8_t tkl;
  uint8_t token[OTA_COAP_MAX_TOKEN];
  uint8_t retries;
  uint32_t timeout_ms; /* current interval */
  uint64_t deadline;
  size_t len;
  uint8_t bytes[OTA_COAP_CHAN_MSG_MAX];
} ota_coap_chan_pending_t;

typedef struct {
  bool used;
  uint16_t mid;
  uint8_t type; /* of the incoming message */
  uint64_t expires;
  size_t reply_len; /* 0: no reply sent yet */
  uint8_t reply[OTA_COAP_CHAN_MSG_MAX];
} ota_coap_chan_seen_t;

typedef struct {
  ota_coap_chan_cfg_t cfg;
  uint16_t next_mid;
  uint64_t rng;
  ota_coap_chan_pending_t pending[OTA_COAP_CHAN_PENDING];
  ota_coap_chan_seen_t seen[OTA_COAP_CHAN_SEEN];
  /* counters for logs and tests */
  uint32_t n_sent, n_retransmits, n_timeouts, n_duplicates, n_bad;
} ota_coap_chan_t;

/* Initialise from cfg (copied; NULL = defaults). Cannot fail. */
void ota_coap_chan_init(ota_coap_chan_t *ch, const ota_coap_chan_cfg_t *cfg);
/* Forget pending and remembered messages (keeps next_mid). Safe twice. */
void ota_coap_chan_free(ota_coap_chan_t *ch);

/* Next message id the channel will assign (e.g. to save in a session), and
 * set it (session resume). */
uint16_t ota_coap_chan_peek_mid(const ota_coap_chan_t *ch);
void ota_coap_chan_set_mid(ota_coap_chan_t *ch, uint16_t next);

/* Send a message. CON/NON get a fresh message id (msg->mid is ignored; the id
 * used is stored in *mid_out if not NULL); a CON is kept for retransmission.
 * ACK/RST keep msg->mid; if it answers a remembered incoming CON, the encoded
 * reply is cached for duplicates. Appends one SEND effect.
 * Errors: OTA_EBUSY when OTA_COAP_CHAN_PENDING CONs are outstanding,
 * OTA_ENOBUFS when the datagram exceeds OTA_COAP_CHAN_MSG_MAX or the outbox
 * is full, OTA_EINVAL for an invalid message. Nothing is sent on error. */
int ota_coap_chan_send(ota_coap_chan_t *ch, const ota_coap_msg_t *msg,
                       uint64_t now_ms, ota_outbox_t *out, uint16_t *mid_out);

/* Send an empty ACK for an incoming CON `req` (same mid). */
int ota_coap_chan_ack(ota_coap_chan_t *ch, const ota_coap_msg_t *req,
                      uint64_t now_ms, ota_outbox_t *out);

/* A datagram arrived. Appends DELIVER (new message, or an ACK/RST matching a
 * pending CON, which is then released), a SEND of the cached reply (duplicate
 * CON) or nothing (duplicate, stray ACK). Returns 0, or the decode error for
 * a malformed datagram (dropped, counted in n_bad: peer errors are data), or
 * OTA_ENOBUFS if the outbox is full. */
int ota_coap_chan_on_datagram(ota_coap_chan_t *ch, const uint8_t *buf,
                              size_t len, uint64_t now_ms, ota_outbox_t *out);

/* Timers: retransmit due CONs (SEND) or give up (TIMEOUT with the mid and
 * token, arg OTA_ETIMEDOUT). Returns 0 or OTA_ENOBUFS. */
int ota_coap_chan_on_timer(ota_coap_chan_t *ch, uint64_t now_ms,
                           ota_outbox_t *out);

/* Earliest retransmission/give-up deadline, UINT64_MAX when none. */
uint64_t ota_coap_chan_next_deadline(const ota_coap_chan_t *ch);

/* Number of outstanding CON messages. */
size_t ota_coap_chan_pending_count(const ota_coap_chan_t *ch);

#endif
