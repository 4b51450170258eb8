/* Pure pieces of the Particle-shaped REST API: form bodies, event stream
 * formats (SSE and WebSocket JSON), stream filters and a bounded queue.
 * Sources: PROTOCOL.md 9 (SSE format, stream paths), WHATWG URL
 * (application/x-www-form-urlencoded).
 *
 * Ownership: nothing here allocates. Decoders copy into caller buffers and
 * fail with OTA_ENOBUFS; the queue holds caller-owned pointers and hands an
 * evicted one back to the caller to free. */
#ifndef OTALAB_REST_H
#define OTALAB_REST_H

#include <stddef.h>
#include <stdint.h>

/* ---- application/x-www-form-urlencoded ---- */

/* Check a whole form body: fields separated by '&', each "name=value" or
 * "name", percent escapes well-formed (%XX). 0 or OTA_EPARSE. */
int ota_form_check(const char *body, size_t len);

/* Decode the value of the first field called `name` ('+' is a space, %XX a
 * byte) into out[cap], NUL-terminated. 0, OTA_ENOENT (absent), OTA_ENOBUFS
 * (out too small) or OTA_EPARSE (bad escape or a NUL byte in the value). */
int ota_form_get(const char *body, size_t len, const char *name, char *out,
                 size_t cap);

/* ---- events ---- */

#define OTA_EVENT_NAME_MAX 64 /* Particle's event name limit */

/* One published event; the strings are borrowed. coreid "" (or NULL) means a
 * cloud-wide event; product 0 means a developer device (or none). */
typedef struct {
  const char *name;
  const char *data; /* NULL: empty data */
  const char *coreid;
  unsigned ttl;
  int64_t published_ms; /* Unix time in ms */
  uint32_t product;
} ota_event_t;

/* Unix ms -> "2024-01-02T03:04:05.678Z" into out[cap] (25 bytes with NUL).
 * 0 or OTA_ENOBUFS. */
int ota_event_time(int64_t ms, char *out, size_t cap);

/* Particle's SSE record:
 *   event: NAME\n
 *   data: {"data":"..","ttl":60,"published_at":"..","coreid":".."}\n\n
 * into out[cap]; *len without the NUL. 0, OTA_ENOBUFS or OTA_EINVAL (no
 * name, or a name with a line break). */
int ota_event_sse(const ota_event_t *ev, char *out, size_t cap, size_t *len);

/* The WebSocket message, one JSON object:
 *   {"name":"..","data":"..","ttl":60,"published_at":"..","coreid":".."}
 * Same results as ota_event_sse(). */
int ota_event_ws(const ota_event_t *ev, char *out, size_t cap, size_t *len);

/* Which events a stream wants (PROTOCOL.md 9 stream paths). */
typedef enum {
  OTA_EVSCOPE_ALL,     /* /v1/events[/:prefix] */
  OTA_EVSCOPE_DEVICES, /* /v1/devices/events[/:prefix]: from any device */
  OTA_EVSCOPE_DEVICE,  /* /v1/devices/:id/events[/:prefix] */
  OTA_EVSCOPE_PRODUCT  /* /v1/products/:id/events[/:prefix] */
} ota_evscope_t;

typedef struct {
  ota_evscope_t scope;
  char prefix[OTA_EVENT_NAME_MAX + 1]; /* "" matches every name */
  char device[25];                     /* lower-case hex, DEVICE scope */
  uint32_t product;                    /* PRODUCT scope */
} ota_evfilter_t;

/* Parse a stream path (no query string) into f. A trailing '/' is allowed.
 * Device ids must be 24 hex digits (lower-cased), product ids decimal
 * 1..2^32-1. 0, OTA_ENOENT (not an event stream path) or OTA_EINVAL
 * (prefix too long, bad id). */
int ota_evfilter_parse(const char *path, ota_evfilter_t *f);

/* 1 when ev passes f (name starts with the prefix, scope matches). */
int ota_evfilter_match(const ota_evfilter_t *f, const ota_event_t *ev);

/* ---- bounded FIFO of caller-owned pointers, dropping the oldest ---- */

#define OTA_EVQ_MAX 8192

typedef struct {
  void *items[OTA_EVQ_MAX];
  size_t head, n, cap;
  uint64_t dropped; /* items evicted because the queue was full */
} ota_evq_t;

/* Init with a capacity 1..OTA_EVQ_MAX (clamped); cannot fail. */
void ota_evq_init(ota_evq_t *q, size_t cap);
/* Append item. When full, the oldest item is removed, `dropped` counts it
 * and it is returned for the caller to free; otherwise NULL. */
void *ota_evq_push(ota_evq_t *q, void *item);
/* Oldest item, or NULL when empty; pop removes it (caller owns it again). */
void *ota_evq_peek(const ota_evq_t *q);
void *ota_evq_pop(ota_evq_t *q);

#endif
