/* otalab-server internals: the device table, the CoAP/DTLS adapter (libcoap)
 * and the REST adapter (libwebsockets), sharing one lws-owned event loop. */
#ifndef OTALAB_SRV_H
#define OTALAB_SRV_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "otalab/catalog.h"
#include "otalab/coap.h"
#include "otalab/electron.h"

#define SRV_ID_HEX 24
#define SRV_ID_RAW 12
#define SRV_MAX_DEVICES 1024

/* One row per device seen in a Hello (or registered on disk and looked up).
 * Owned by the table; `session` is a borrowed coap_session_t* (NULL when
 * disconnected), `describe` a malloc'd JSON text owned by the row. */
typedef struct {
  char id[SRV_ID_HEX + 1]; /* lower-case hex */
  int connected;
  time_t last_heard; /* 0: never */
  char addr[64];     /* "ip:port" of the last session */
  char *describe;    /* last describe reply (JSON text), or NULL */
  void *session;
  unsigned hellos;     /* Hellos accepted so far */
  uint8_t hello_flags; /* flags of the last Hello */
  int described;       /* a describe arrived since the last Hello */
  struct srv_ota *ota; /* OTA jobs (srv_ota.c), malloc'd on first use */
} srv_device_t;

typedef struct {
  const char *data_dir; /* keys in data_dir/devices/<id>.pub.pem */
  srv_device_t rows[SRV_MAX_DEVICES];
  size_t n;
} srv_devices_t;

/* Init the table (cannot fail); rows are empty. */
void srv_devices_init(srv_devices_t *t, const char *data_dir);
/* Free every row's describe text; safe twice. */
void srv_devices_free(srv_devices_t *t);
/* Find a row by lower-case hex id; NULL if absent. */
srv_device_t *srv_devices_find(srv_devices_t *t, const char *id);
/* Find or add; NULL when the table is full. */
srv_device_t *srv_devices_get(srv_devices_t *t, const char *id);
/* Row whose live session is `session`, or NULL. */
srv_device_t *srv_devices_by_session(srv_devices_t *t, const void *session);
/* Load the registered public key of `id` as DER SubjectPublicKeyInfo into
 * der[cap]; *len set. OTA_ENOENT when no key is registered, OTA_EPARSE when
 * the file is not a PEM public key. */
int srv_devices_key(const srv_devices_t *t, const char *id, uint8_t *der,
                    size_t cap, size_t *len);
/* Replace the row's describe text with a copy of json[len]. */
void srv_devices_set_describe(srv_device_t *d, const char *json, size_t len);

/* Server options from the command line. */
typedef struct {
  const char *bind;
  int coap_port, http_port;
  const char *keys_dir, *data_dir;
  int verbose;
  size_t max_upload;   /* REST upload limit in bytes (413 above) */
  const char *catalog; /* release catalogue JSON */
} srv_opts_t;

/* Fast-OTA pacing for every job (0 = ota_tx defaults: 16 chunks, 100 ms). */
extern unsigned srv_ota_window, srv_ota_gap_ms;

struct lws_context;
struct lws_vhost;

/* CoAP side: create the libcoap context and DTLS endpoint; returns the fd to
 * adopt into the lws loop (a dup of libcoap's epoll fd), or -1. */
int srv_coap_setup(const srv_opts_t *o, srv_devices_t *devs);
/* Read everything pending on the CoAP fd and dispatch it. */
void srv_coap_io(void);
/* Run libcoap's timers; returns ms until they next need to run. */
unsigned srv_coap_timers(void);
/* Free the CoAP context; safe twice. */
void srv_coap_free(void);
/* Send `m` (type, code, token, options in order, payload) to the device on
 * `session` (a coap_session_t*) as a libcoap PDU with libcoap's own message
 * id; libcoap retransmits CONs. 0, OTA_ENOMEM or OTA_EIO. */
int srv_coap_send(void *session, const ota_coap_msg_t *m);

/* ---- OTA jobs (srv_ota.c): a per-device queue of modules, each pushed by
 * core's ota_tx (PROTOCOL.md 2.4-2.5), then confirmed by the Describe after
 * the device's reboot (2.5 step 6). One job runs at a time per device. ----
 *
 *   QUEUED -> SENDING (ota_tx) -> REBOOTING -> DONE
 *                 |                  |
 *                 +------------------+-----> FAILED (device reason, timeout,
 *                                                    disconnect, old version)
 */
#define SRV_OTA_QUEUE 8
#define SRV_OTA_REBOOT_TIMEOUT_MS 120000u

typedef enum {
  SRV_JOB_QUEUED,
  SRV_JOB_SENDING,
  SRV_JOB_REBOOTING,
  SRV_JOB_DONE,
  SRV_JOB_FAILED
} srv_job_state_t;

/* Static name of a job state ("SENDING"). */
const char *srv_job_state_name(srv_job_state_t s);

/* Copy mod[len] (already validated by the caller) into the device's queue
 * and start it if the device is connected, described and idle. *job gets the
 * job number. OTA_EFULL when SRV_OTA_QUEUE jobs are pending, OTA_ENOMEM. */
int srv_ota_enqueue(srv_device_t *d, const uint8_t *mod, size_t len,
                    const char *name, unsigned *job);
/* Events from the CoAP adapter. */
void srv_ota_on_hello(srv_device_t *d);
void srv_ota_on_describe(srv_device_t *d);
void srv_ota_on_disconnect(srv_device_t *d);
/* A message from the device for the running transfer (responses matched by
 * token in ota_tx; ChunkMissed and the device's UpdateDone as requests). */
void srv_ota_on_coap(srv_device_t *d, const ota_coap_msg_t *m);
/* True when d has a transfer in SENDING. */
int srv_ota_sending(const srv_device_t *d);
/* Run due OTA timers of every device; ms until the next one (<= 1000). */
unsigned srv_ota_timers(srv_devices_t *t);
/* The "ota" and "last_ota" JSON of a device, added to obj (a json_t*). */
void srv_ota_json(const srv_device_t *d, void *obj);
/* Free a device's jobs; safe twice. */
void srv_ota_free(srv_device_t *d);

/* The lws protocol list (HTTP first, then the raw CoAP fd protocol);
 * declared in srv_http.c, used by srv_main.c (needs <libwebsockets.h>). */
#ifdef LWS_PRE
extern const struct lws_protocols srv_protocols[];
#endif
/* Set by main for the HTTP side's lookups. */
extern srv_devices_t *srv_http_devices;
extern size_t srv_http_max_upload;
/* The release catalogue (system_firmware_version), or NULL. */
extern const ota_catalog_t *srv_catalog;
/* Ask the loop to run CoAP timers/greetings soon (from inside callbacks). */
void srv_loop_kick(void);

#endif
