/* CoAP message framing over UDP (RFC 7252 section 3): header, token, options
 * and payload, as the Electron's own small codec speaks it (PROTOCOL.md 2.1).
 *
 * Ownership: ota_coap_decode() returns VIEWS: option values and the payload
 * point into the caller's datagram buffer, which must outlive the message.
 * The token is copied into the struct. Builders (ota_coap_add_option...) store
 * the caller's pointers as views too: the caller keeps option values and the
 * payload alive until the message is encoded. ota_coap_encode() writes into a
 * caller buffer and fails with OTA_ENOBUFS rather than allocate.
 *
 *   wire:  | Ver T TKL | Code | Message ID | Token (0..8) | Options | 0xFF
 * Payload |
 */
#ifndef OTALAB_COAP_H
#define OTALAB_COAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTA_COAP_VERSION 1
#define OTA_COAP_MAX_TOKEN 8
/* Maximum number of options kept per message; more -> OTA_ENOBUFS. */
#define OTA_COAP_MAX_OPTIONS 16
#define OTA_COAP_PAYLOAD_MARKER 0xFF

/* Message types (2-bit T field). */
typedef enum {
  OTA_COAP_CON = 0,
  OTA_COAP_NON = 1,
  OTA_COAP_ACK = 2,
  OTA_COAP_RST = 3
} ota_coap_type_t;

/* Code = class (3 bits) . detail (5 bits), written c.dd: OTA_COAP_CODE(2, 4)
 * is "2.04 Changed". */
#define OTA_COAP_CODE(c, d) ((uint8_t)((((c)&0x7) << 5) | ((d)&0x1f)))
#define OTA_COAP_CODE_CLASS(code) ((uint8_t)(code) >> 5)
#define OTA_COAP_CODE_DETAIL(code) ((uint8_t)(code)&0x1f)

/* Codes used by Device OS (PROTOCOL.md 2.2) and a few common others. */
enum {
  OTA_COAP_EMPTY = OTA_COAP_CODE(0, 0),
  OTA_COAP_GET = OTA_COAP_CODE(0, 1),
  OTA_COAP_POST = OTA_COAP_CODE(0, 2),
  OTA_COAP_PUT = OTA_COAP_CODE(0, 3),
  OTA_COAP_DELETE = OTA_COAP_CODE(0, 4),
  OTA_COAP_CREATED = OTA_COAP_CODE(2, 1),
  OTA_COAP_DELETED = OTA_COAP_CODE(2, 2),
  OTA_COAP_VALID = OTA_COAP_CODE(2, 3),
  OTA_COAP_CHANGED = OTA_COAP_CODE(2, 4),
  OTA_COAP_CONTENT = OTA_COAP_CODE(2, 5),
  OTA_COAP_BAD_REQUEST = OTA_COAP_CODE(4, 0),
  OTA_COAP_UNAUTHORIZED = OTA_COAP_CODE(4, 1),
  OTA_COAP_NOT_FOUND = OTA_COAP_CODE(4, 4),
  OTA_COAP_NOT_ALLOWED = OTA_COAP_CODE(4, 5),
  OTA_COAP_INTERNAL_ERROR = OTA_COAP_CODE(5, 0),
  OTA_COAP_NOT_IMPLEMENTED = OTA_COAP_CODE(5, 1),
  OTA_COAP_SERVICE_UNAVAILABLE = OTA_COAP_CODE(5, 3)
};

/* Option numbers (RFC 7252 section 12.2; No-Response RFC 7967). */
enum {
  OTA_COAP_OPT_IF_MATCH = 1,
  OTA_COAP_OPT_URI_HOST = 3,
  OTA_COAP_OPT_ETAG = 4,
  OTA_COAP_OPT_OBSERVE = 6,
  OTA_COAP_OPT_URI_PORT = 7,
  OTA_COAP_OPT_URI_PATH = 11,
  OTA_COAP_OPT_CONTENT_FORMAT = 12,
  OTA_COAP_OPT_MAX_AGE = 14,
  OTA_COAP_OPT_URI_QUERY = 15,
  OTA_COAP_OPT_ACCEPT = 17,
  OTA_COAP_OPT_NO_RESPONSE = 258
};

/* One option: number and a view of its value. */
typedef struct {
  uint32_t num;
  uint32_t len;
  const uint8_t *val; /* view; may be NULL when len == 0 */
} ota_coap_opt_t;

/* A CoAP message. Options are kept in ascending number order (equal numbers
 * in insertion/wire order). payload is a view, payload_len 0 = no payload. */
typedef struct {
  uint8_t ver;  /* 1 */
  uint8_t type; /* ota_coap_type_t */
  uint8_t code;
  uint16_t mid;
  uint8_t tkl; /* 0..8 */
  uint8_t token[OTA_COAP_MAX_TOKEN];
  size_t nopt;
  ota_coap_opt_t opt[OTA_COAP_MAX_OPTIONS];
  const uint8_t *payload;
  size_t payload_len;
} ota_coap_msg_t;

/* Reset `m` to an empty message of the given type, code and message id,
 * version 1, no token, options or payload. Cannot fail. */
void ota_coap_msg_init(ota_coap_msg_t *m, ota_coap_type_t type, uint8_t code,
                       uint16_t mid);

/* Decode one datagram. On success fills `m` with views into `buf` (which the
 * caller keeps alive) and returns 0. Errors (m is then unspecified):
 *   OTA_ETRUNC  shorter than the header, token or an option says;
 *   OTA_EPARSE  version != 1, TKL > 8, option delta/length nibble 15 outside
 *               the payload marker, payload marker followed by nothing,
 *               option number > 65535, or an Empty (0.00) message that
 *               carries a token, options or payload (RFC 7252 4.1);
 *   OTA_ENOBUFS more than OTA_COAP_MAX_OPTIONS options;
 *   OTA_EINVAL  NULL arguments. */
int ota_coap_decode(const uint8_t *buf, size_t len, ota_coap_msg_t *m);

/* Encode `m` into buf[0..cap). Options are written in ascending number order
 * (stable sort, so repeated options keep their order) using the 1- and 2-byte
 * extended delta/length forms; the payload marker is written only when
 * payload_len > 0. On success stores the length in *len and returns 0.
 * OTA_ENOBUFS if cap is too small, OTA_EINVAL for a bad message (tkl > 8,
 * type > 3, nopt > OTA_COAP_MAX_OPTIONS, option number > 65535). */
int ota_coap_encode(const ota_coap_msg_t *m, uint8_t *buf, size_t cap,
                    size_t *len);

/* Bytes ota_coap_encode() would write, or 0 if the message is invalid. */
size_t ota_coap_encoded_size(const ota_coap_msg_t *m);

/* Set the token (copied). OTA_EINVAL if len > 8. */
int ota_coap_set_token(ota_coap_msg_t *m, const void *tok, size_t len);

/* Insert an option keeping ascending order (after existing options with the
 * same number). `val` is stored as a view: the caller keeps it alive until
 * encoding. OTA_ENOBUFS when the message already holds
 * OTA_COAP_MAX_OPTIONS options, OTA_EINVAL for num > 65535. */
int ota_coap_add_option(ota_coap_msg_t *m, uint32_t num, const void *val,
                        size_t len);
/* Same, for a NUL-terminated string value (without the NUL). */
int ota_coap_add_option_str(ota_coap_msg_t *m, uint32_t num, const char *s);
/* Same, for an unsigned integer option in the RFC's minimal big-endian form
 * (0 -> zero length). `store` (4 bytes, caller-owned, kept alive until
 * encoding) receives the bytes. */
int ota_coap_add_option_uint(ota_coap_msg_t *m, uint32_t num, uint32_t v,
                             uint8_t store[4]);

/* Set the payload view (NULL/0 = none). */
void ota_coap_set_payload(ota_coap_msg_t *m, const void *p, size_t len);

/* n-th (0-based) option with number `num`, or NULL. Returns a pointer into m.
 */
const ota_coap_opt_t *ota_coap_find_nth(const ota_coap_msg_t *m, uint32_t num,
                                        size_t n);
/* First option with number `num`, or NULL. */
const ota_coap_opt_t *ota_coap_find(const ota_coap_msg_t *m, uint32_t num);
/* Number of options with number `num`. */
size_t ota_coap_count(const ota_coap_msg_t *m, uint32_t num);
/* n-th Uri-Path / Uri-Query option, or NULL. */
const ota_coap_opt_t *ota_coap_uri_path(const ota_coap_msg_t *m, size_t n);
const ota_coap_opt_t *ota_coap_uri_query(const ota_coap_msg_t *m, size_t n);
/* Big-endian unsigned value of an option of up to 4 bytes (0 for longer or
 * NULL options). */
uint32_t ota_coap_opt_uint(const ota_coap_opt_t *o);

/* True for a request code (class 0, detail 1..31). */
bool ota_coap_is_request(uint8_t code);
/* True for a response code (class 2..5). */
bool ota_coap_is_response(uint8_t code);

/* "CON", "NON", "ACK", "RST" (or "?"). Static string. */
const char *ota_coap_type_name(uint8_t type);
/* Name of a code for logs: "EMPTY", "GET", "POST", "PUT", "DELETE",
 * "Changed", "Content", "Bad Request", ... or "" when unknown. Static. */
const char *ota_coap_code_name(uint8_t code);
/* Write "c.dd" (e.g. "2.04") into out (at least 5 bytes); returns out. */
char *ota_coap_code_str(uint8_t code, char out[5]);
/* One-line summary for logs, e.g.
 *   "CON POST mid=0x1234 tok=ab path=/u q=2 opts payload=12"
 * Truncated to fit; always NUL-terminated when cap > 0. Returns out. */
char *ota_coap_summary(const ota_coap_msg_t *m, char *out, size_t cap);

#endif
