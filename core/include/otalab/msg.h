/* The Particle message set an Electron speaks over CoAP: classification,
 * payload builders and parsers, and the device's strict fixed-offset request
 * parser. Source: PROTOCOL.md 1.5, 2.1-2.5, 3 (Device OS messages.cpp,
 * protocol.cpp, chunked_transfer.cpp).
 *
 * Ownership: parsers return views into the message (and so into the datagram
 * the message was decoded from). Builders fill an ota_coap_msg_t whose option
 * values point to static strings or to caller-owned storage passed in (named
 * `store`/`payload` below), which must stay alive until the message is
 * encoded. Nothing here allocates, except ota_msg_done_result_parse() which
 * uses jansson internally and frees before returning.
 */
#ifndef OTALAB_MSG_H
#define OTALAB_MSG_H

#include "otalab/coap.h"
#include "otalab/electron.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Who sent the message. */
typedef enum {
  OTA_DIR_TO_DEVICE = 0, /* cloud -> device (C->D) */
  OTA_DIR_TO_CLOUD = 1   /* device -> cloud (D->C) */
} ota_dir_t;

/* X(kind, name). Request kinds come from the path letter and code; the rest
 * from type/code. The classifier cannot know the exchange a response belongs
 * to: UPDATE_READY / CHUNK_RECEIVED / RESPONSE are hints by shape, the state
 * machines match them by token. */
#define OTA_MSG_KINDS(X)                                                       \
  X(OTA_MSG_UNKNOWN, "UNKNOWN")                                                \
  X(OTA_MSG_PING, "PING") /* CON 0.00 */                                       \
  X(OTA_MSG_ACK, "ACK")   /* empty ACK 0.00 */                                 \
  X(OTA_MSG_ACK_RESPONSE,                                                      \
    "ACK_RESPONSE") /* piggy-backed response in an ACK */                      \
  X(OTA_MSG_RST, "RST")                                                        \
  X(OTA_MSG_HELLO, "HELLO")               /* POST h, both directions */        \
  X(OTA_MSG_DESCRIBE, "DESCRIBE")         /* GET d (C->D), POST d (D->C) */    \
  X(OTA_MSG_EVENT, "EVENT")               /* POST e / E */                     \
  X(OTA_MSG_SUBSCRIBE, "SUBSCRIBE")       /* GET e (D->C) */                   \
  X(OTA_MSG_TIME, "TIME")                 /* GET t (D->C); ACK 2.05 (C->D) */  \
  X(OTA_MSG_UPDATE_BEGIN, "UPDATE_BEGIN") /* POST u or s (C->D) */             \
  X(OTA_MSG_UPDATE_READY, "UPDATE_READY") /* CON 2.04 + 1 byte (D->C) */       \
  X(OTA_MSG_CHUNK, "CHUNK")               /* POST c (C->D) */                  \
  X(OTA_MSG_CHUNK_RECEIVED, "CHUNK_RECEIVED") /* CON 2.04/4.00 no pl (D->C) */ \
  X(OTA_MSG_CHUNK_MISSED, "CHUNK_MISSED")     /* GET c (D->C) */               \
  X(OTA_MSG_UPDATE_DONE, "UPDATE_DONE")       /* PUT u, both directions */     \
  X(OTA_MSG_GOODBYE, "GOODBYE")               /* POST x (D->C) */              \
  X(OTA_MSG_KEY_CHANGE, "KEY_CHANGE")         /* PUT k (C->D) */               \
  X(OTA_MSG_SIGNAL, "SIGNAL")                 /* PUT s (C->D) */               \
  X(OTA_MSG_FUNCTION, "FUNCTION")             /* POST f (C->D) */              \
  X(OTA_MSG_VARIABLE, "VARIABLE")             /* GET v (C->D) */               \
  X(OTA_MSG_RESPONSE, "RESPONSE") /* other separate response (CON/NON) */

typedef enum {
#define OTA_MSG_KIND_ENUM(k, n) k,
  OTA_MSG_KINDS(OTA_MSG_KIND_ENUM)
#undef OTA_MSG_KIND_ENUM
      OTA_MSG_KIND_COUNT
} ota_msg_kind_t;

/* Static name of a kind ("UPDATE_BEGIN"), "?" when out of range. */
const char *ota_msg_kind_name(ota_msg_kind_t k);

/* Classify a decoded message sent in direction `dir` (lenient: looks only at
 * type, code, the first Uri-Path option's first letter and, for responses,
 * the payload length). Never fails; OTA_MSG_UNKNOWN when nothing fits. */
ota_msg_kind_t ota_msg_classify(const ota_coap_msg_t *m, ota_dir_t dir);

/* The device's view of a datagram from the cloud, checked at the fixed offsets
 * Device OS reads (PROTOCOL.md 2.1): RFC-valid, requests with a 1-byte token
 * and a single one-character Uri-Path at bytes 5..6 (0xB1, letter), and per
 * kind:
 *   UPDATE_BEGIN  len 7, or payload marker at 7 (payload 12 bytes, or < 12 for
 *                 device defaults);
 *   CHUNK         option 0x44 + 4-byte CRC at byte 7, optional 0x02 + 2-byte
 *                 index, then 0xFF and a non-empty payload;
 *   DESCRIBE      len 7, or 0x41 + flags byte at 8 (len 9);
 *   SIGNAL        0xFF at 7, 1 payload byte at 8 (len 9);
 *   UPDATE_DONE   len 7;   KEY_CHANGE len 7, or 0x41 + 1 byte at 8;
 *   HELLO         len 7 or payload marker at 7;
 *   EVENT / FUNCTION / VARIABLE: RFC-valid after the letter (name options);
 *   TIME (ACK 2.05) 1-byte token, 0xFF at 5, 4-byte time at 6..9 (len 10);
 *   PING (CON 0.00), ACK, RST: 4 bytes; other ACKs: any RFC-valid ACK.
 * On success fills *m (views into buf) and *kind and returns 0; otherwise
 * OTA_EPARSE/OTA_ETRUNC (or a decode error) and the device would misread or
 * ignore the datagram. */
int ota_msg_parse_cloud_request(const uint8_t *buf, size_t len,
                                ota_coap_msg_t *m, ota_msg_kind_t *kind);

/* ---- Builders: a CoAP request to the device (C->D) always gets the 1-byte
 * token and the one-letter Uri-Path. `mid` is the message id (a channel may
 * replace it). Return 0 or OTA_ENOBUFS / OTA_EINVAL. ---- */

/* Start a request: type, code, mid, optional token (tkl 0 or 1 for C->D),
 * Uri-Path `letter` (a static one-character string is used as the value). */
int ota_msg_build_request(ota_coap_msg_t *m, ota_coap_type_t type, uint8_t code,
                          uint16_t mid, const uint8_t *token, size_t tkl,
                          char letter);
/* Empty message: ping (CON 0.00), empty ACK or RST for `mid`. */
void ota_msg_build_empty(ota_coap_msg_t *m, ota_coap_type_t type, uint16_t mid);
/* Piggy-backed response: ACK with `code`, same mid and token as `req`,
 * payload view (may be NULL/0). */
void ota_msg_build_ack_response(ota_coap_msg_t *m, const ota_coap_msg_t *req,
                                uint8_t code, const void *payload, size_t len);
/* Separate response: `type` (CON/NON) with `code`, new `mid`, token copied
 * from tok/tkl, payload view. */
int ota_msg_build_separate_response(ota_coap_msg_t *m, ota_coap_type_t type,
                                    uint8_t code, uint16_t mid,
                                    const uint8_t *tok, size_t tkl,
                                    const void *payload, size_t len);

/* ---- Hello (PROTOCOL.md 2.3) ---- */
#define OTA_HELLO_FLAG_OTA_OK 0x01
#define OTA_HELLO_FLAG_DIAGNOSTICS 0x02
#define OTA_HELLO_FLAG_IMMEDIATE_UPDATES 0x04
#define OTA_HELLO_FLAG_GOODBYE 0x10
#define OTA_HELLO_FLAG_DEVICE_DESCRIBE 0x20
#define OTA_DEVICE_ID_LEN 12
/* PROTOCOL.md 2.3's "17 + 12 = 29 bytes" is the whole datagram (7 bytes of
 * header, 'h' and marker + 10 fixed payload bytes + 12-byte id); its offset
 * table gives a 22-byte payload. */
#define OTA_MSG_HELLO_PAYLOAD_LEN 22  /* payload */
#define OTA_MSG_HELLO_DATAGRAM_LEN 29 /* whole Hello datagram, no token */

typedef struct {
  uint16_t product_id;      /* 0xFFFF = none */
  uint16_t product_version; /* 0xFFFF = unset */
  uint8_t reserved;
  uint8_t flags;
  uint16_t platform_id; /* 10 */
  uint16_t id_len;      /* 12 */
  uint8_t device_id[OTA_DEVICE_ID_LEN];
} ota_msg_hello_t;

/* Write the 22-byte payload into out (cap >= 22); returns bytes written via
 * *len. OTA_ENOBUFS if cap is small, OTA_EINVAL if id_len != 12. */
int ota_msg_hello_encode(const ota_msg_hello_t *h, uint8_t *out, size_t cap,
                         size_t *len);
/* Parse a Hello payload: at least 10 bytes and 10 + id_len bytes (id_len
 * <= 12); longer payloads are accepted (extra bytes ignored).
 * OTA_ETRUNC / OTA_EPARSE otherwise. */
int ota_msg_hello_parse(const uint8_t *p, size_t len, ota_msg_hello_t *h);

/* ---- UpdateBegin (PROTOCOL.md 2.4) ---- */
#define OTA_UPDATE_BEGIN_LEN 12
#define OTA_UPDATE_FLAG_FAST 0x01
#define OTA_STORE_FIRMWARE 0
#define OTA_STORE_SYSTEM 1
#define OTA_STORE_APPLICATION 128

typedef struct {
  uint8_t flags;       /* bit0 fast OTA */
  uint16_t chunk_size; /* 0 = device default (512) */
  uint32_t file_size;
  uint8_t store;
  uint32_t address; /* offset in the OTA region */
  bool defaults;    /* payload < 12 bytes: the device uses its defaults */
} ota_msg_update_begin_t;

/* 12-byte payload into out (cap >= 12). */
int ota_msg_update_begin_encode(const ota_msg_update_begin_t *u, uint8_t *out,
                                size_t cap);
/* Parse like the device: >= 12 bytes -> fields (extra ignored); shorter ->
 * all zero, chunk_size = 512 (OTA_CHUNK_SIZE), defaults = true. Never fails
 * on content; OTA_EINVAL on NULL. */
int ota_msg_update_begin_parse(const uint8_t *p, size_t len,
                               ota_msg_update_begin_t *u);

/* ---- Chunk (Uri-Query #1 = 4-byte BE CRC, #2 = 2-byte BE index) ---- */
typedef struct {
  uint32_t crc;
  bool has_index; /* fast OTA */
  uint16_t index;
  const uint8_t *data; /* view */
  size_t len;
} ota_msg_chunk_t;

/* Build a Chunk request: `type` CON (normal) or NON (fast); token 1 byte;
 * `store` (6 bytes, caller-owned) receives the CRC and index bytes. The chunk
 * data is a view. The CRC is taken from c->crc (not computed here). */
int ota_msg_build_chunk(ota_coap_msg_t *m, ota_coap_type_t type, uint16_t mid,
                        uint8_t token, const ota_msg_chunk_t *c,
                        uint8_t store[6]);
/* Parse a Chunk message: Uri-Query #1 must be 4 bytes, #2 (if present) 2
 * bytes. OTA_EPARSE otherwise. */
int ota_msg_chunk_parse(const ota_coap_msg_t *m, ota_msg_chunk_t *c);

/* ---- ChunkMissed (N x 2-byte BE indexes; the device sends <= 40) ---- */
#define OTA_CHUNK_MISSED_MAX 40
/* Encode n indexes into out (2n bytes). OTA_ENOBUFS if cap < 2n. */
int ota_msg_chunk_missed_encode(const uint16_t *idx, size_t n, uint8_t *out,
                                size_t cap, size_t *len);
/* Parse a payload into idx[0..cap). OTA_EPARSE for an odd length,
 * OTA_ENOBUFS if more than cap indexes (the first cap are stored). */
int ota_msg_chunk_missed_parse(const uint8_t *p, size_t len, uint16_t *idx,
                               size_t cap, size_t *n);

/* ---- UpdateDone 2.04 reply payload (PROTOCOL.md 2.5) ---- */
typedef enum {
  OTA_DONE_FORM_NONE = 0, /* 0.5.x: no payload */
  OTA_DONE_FORM_OKERR,    /* 0.6.1..1.5.x: {"r":"ok"|"error","u":{...}} */
  OTA_DONE_FORM_INT       /* >= 2.0: {"r":<int>} */
} ota_done_form_t;

typedef struct {
  ota_done_form_t form;
  bool ok;             /* NONE: true; OKERR: r == "ok"; INT: r == 0 */
  int code;            /* INT: r; OKERR: 0 or -1390 (generic OTA error) */
  bool has_module;     /* OKERR with a parsable "u" object */
  ota_modref_t module; /* from "u": f letter, n string, v number */
  uint16_t platform;   /* "u"."p" (0 if absent) */
} ota_msg_done_result_t;

/* Parse the payload of a 2.04 UpdateDone ACK. Empty -> NONE/ok.
 * OTA_EPARSE for anything else that is not one of the forms. */
int ota_msg_done_result_parse(const uint8_t *p, size_t len,
                              ota_msg_done_result_t *r);
/* Produce one of the forms into out (NUL-terminated; *len excludes the NUL).
 * OKERR writes {"r":"ok"} or {"r":"error"} plus "u" with f/n/v/p when
 * has_module. OTA_ENOBUFS if it does not fit. */
int ota_msg_done_result_encode(const ota_msg_done_result_t *r, char *out,
                               size_t cap, size_t *len);

/* ---- Describe request: flags (1 system, 2 app, 4 metrics; default 3) ---- */
#define OTA_DESCRIBE_SYSTEM 1
#define OTA_DESCRIBE_APP 2
#define OTA_DESCRIBE_METRICS 4
#define OTA_DESCRIBE_DEFAULT 3
/* GET d with 1-byte token and Uri-Query = one raw flags byte (`store`
 * 1 byte, caller-owned). flags 0 = no query (device default). */
int ota_msg_build_describe(ota_coap_msg_t *m, uint16_t mid, uint8_t token,
                           uint8_t flags, uint8_t *store);
/* Flags of a describe request/POST: the Uri-Query byte or the default. */
uint8_t ota_msg_describe_flags(const ota_coap_msg_t *m);

/* ---- Events: POST e/E + ONE Uri-Path holding the whole name ---- */
#define OTA_EVENT_NAME_MAX 64
#define OTA_EVENT_DATA_MAX 622
#define OTA_EVENT_TTL_DEFAULT 60

typedef struct {
  const char *name; /* view, not NUL-terminated when parsed */
  size_t name_len;
  const uint8_t *data; /* view */
  size_t data_len;
  uint32_t ttl;    /* Max-Age, default 60 */
  bool is_private; /* 'E' */
} ota_msg_event_t;

/* Build an event publish (`type` NON or CON, no token, mid). Max-Age is sent
 * as 3 bytes when ttl != 60 (`store` 3 bytes, caller-owned). OTA_EINVAL for
 * a name longer than 64 or data longer than 622. */
int ota_msg_build_event(ota_coap_msg_t *m, ota_coap_type_t type, uint16_t mid,
                        const ota_msg_event_t *ev, uint8_t store[3]);
/* Parse an event: second Uri-Path = name; Max-Age (default 60). OTA_EPARSE if
 * there is no name option. */
int ota_msg_event_parse(const ota_coap_msg_t *m, ota_msg_event_t *ev);

/* ---- Time: 4-byte big-endian Unix time ---- */
/* Time response: ACK 2.05 with req's mid and token, payload = store[4]. */
void ota_msg_build_time_response(ota_coap_msg_t *m, const ota_coap_msg_t *req,
                                 uint32_t unix_time, uint8_t store[4]);
/* Time from a response payload; OTA_ETRUNC if the payload is < 4 bytes. */
int ota_msg_time_parse(const ota_coap_msg_t *m, uint32_t *unix_time);

/* ---- Goodbye (>= 2.0): unsigned LEB128 varints ---- */
typedef struct {
  uint32_t flags;
  size_t nvals;     /* how many of the optional values are present (0..4) */
  uint32_t vals[4]; /* cloud reason, reset reason, sleep s, network reason */
} ota_msg_goodbye_t;
int ota_msg_goodbye_encode(const ota_msg_goodbye_t *g, uint8_t *out, size_t cap,
                           size_t *len);
/* OTA_ETRUNC for a varint cut short, OTA_EPARSE for > 5 varints or a varint
 * over 32 bits. */
int ota_msg_goodbye_parse(const uint8_t *p, size_t len, ota_msg_goodbye_t *g);

/* Big-endian helpers. */
static inline uint16_t ota_be16(const uint8_t *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t ota_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}
static inline void ota_put_be16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void ota_put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

#endif
