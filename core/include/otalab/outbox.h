/* A caller-owned queue of effects produced by the sans-IO state machines of
 * core/ (DESIGN.md "Sans-IO state machines"): the adapter drains and clears it.
 *
 * Ownership: the outbox owns the bytes of its effects (copied into its own
 * arena on push) until ota_outbox_clear(). Pointers from ota_outbox_bytes()
 * are valid until the next clear. The outbox never allocates: when the effect
 * table or the arena is full, pushes fail with OTA_ENOBUFS. */
#ifndef OTALAB_OUTBOX_H
#define OTALAB_OUTBOX_H

#include "otalab/coap.h"

#include <stddef.h>
#include <stdint.h>

/* Room for ota_tx's largest fast-OTA window (64 chunks of 512 bytes, its
 * ping and a progress event) in one call. */
#define OTA_OUTBOX_MAX_FX 128
#define OTA_OUTBOX_ARENA (48u * 1024u)

/* X(kind, name). */
#define OTA_FX_KINDS(X)                                                        \
  X(OTA_FX_SEND, "SEND")       /* datagram bytes to send to the peer */        \
  X(OTA_FX_DELIVER, "DELIVER") /* received datagram for the upper layer */     \
  X(OTA_FX_TIMEOUT, "TIMEOUT") /* CON mid/token got no ACK; arg = error */     \
  /* Reserved for the other state machines (OTA receiver, boot/apply): */      \
  X(OTA_FX_FLASH_WRITE, "FLASH_WRITE") /* bytes at addr */                     \
  X(OTA_FX_REBOOT, "REBOOT")           /* arg = reason */                      \
  X(OTA_FX_EVENT, "EVENT")             /* bytes = event data, text = name */   \
  X(OTA_FX_LOG, "LOG")                 /* bytes = text line */

typedef enum {
#define OTA_FX_ENUM(k, n) k,
  OTA_FX_KINDS(OTA_FX_ENUM)
#undef OTA_FX_ENUM
      OTA_FX_KIND_COUNT
} ota_fx_kind_t;

/* One effect. Bytes live in the outbox arena at [off, off+len). */
typedef struct {
  ota_fx_kind_t kind;
  uint16_t mid; /* SEND/DELIVER/TIMEOUT: CoAP message id */
  uint8_t tkl;  /* TIMEOUT: token of the message that timed out */
  uint8_t token[OTA_COAP_MAX_TOKEN];
  uint32_t addr; /* FLASH_WRITE: flash address */
  int32_t arg;   /* TIMEOUT: OTA_ETIMEDOUT; REBOOT: reason; free use */
  size_t off, len;
} ota_fx_t;

typedef struct {
  size_t n;
  ota_fx_t fx[OTA_OUTBOX_MAX_FX];
  size_t used;
  uint8_t arena[OTA_OUTBOX_ARENA];
} ota_outbox_t;

/* Empty the outbox. Cannot fail. */
void ota_outbox_init(ota_outbox_t *ob);
/* Drop all effects and their bytes (after the adapter has carried them out). */
void ota_outbox_clear(ota_outbox_t *ob);
/* Append a copy of `fx` (its off/len are ignored) and copy bytes[0..len) into
 * the arena. Returns 0, OTA_ENOBUFS when full (nothing appended) or
 * OTA_EINVAL. */
int ota_outbox_push(ota_outbox_t *ob, const ota_fx_t *fx, const void *bytes,
                    size_t len);
/* Shortcut: push a SEND (or DELIVER) effect of kind k with message id mid. */
int ota_outbox_push_bytes(ota_outbox_t *ob, ota_fx_kind_t k, uint16_t mid,
                          const void *bytes, size_t len);
/* Pointer to an effect's bytes (NULL when len == 0). Valid until clear. */
const uint8_t *ota_outbox_bytes(const ota_outbox_t *ob, const ota_fx_t *fx);
/* Decode a SEND/DELIVER effect's datagram into m (views into the arena). */
int ota_outbox_msg(const ota_outbox_t *ob, const ota_fx_t *fx,
                   ota_coap_msg_t *m);
/* Number of effects of kind k. */
size_t ota_outbox_count(const ota_outbox_t *ob, ota_fx_kind_t k);
/* Static name of an effect kind ("SEND"). */
const char *ota_fx_kind_name(ota_fx_kind_t k);

#endif
