/* otalab-server internals: the device table, the CoAP/DTLS adapter (libcoap)
 * and the REST adapter (libwebsockets), sharing one lws-owned event loop. */
#ifndef OTALAB_SRV_H
#define OTALAB_SRV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "otalab/catalog.h"
#include "otalab/coap.h"
#include "otalab/electron.h"
#include "otalab/module.h"

/* Bytes on the wire for one device or one OTA job, counted per DTLS record
 * at the DTLS layer (OpenSSL's record-header callback; srv_coap.c). The parts
 * add up: total = handshake + record_overhead + module + coap_overhead +
 * retrans, coap_overhead = coap - module - retrans. */
typedef struct {
  uint64_t up, down; /* DTLS record bytes device->cloud, cloud->device */
  uint64_t records_up, records_down;
  uint64_t handshake; /* handshake, change-cipher-spec, alert records */
  uint64_t
      record_overhead; /* 29 B (13 header + 8 nonce + 8 tag) per app record */
  uint64_t coap;       /* CoAP bytes inside application records */
  uint64_t module;     /* module bytes in chunks, first sends */
  uint64_t retrans;    /* CoAP bytes of resent chunks */
  uint64_t chunks_resent;
  uint64_t sessions; /* DTLS sessions that reached a Hello */
} srv_usage_t;

/* to -= from, field by field (a job's share of a device's counters). */
void srv_usage_sub(srv_usage_t *to, const srv_usage_t *from);
/* The usage as a JSON object (a json_t*, new reference). */
void *srv_usage_json(const srv_usage_t *u);

#define SRV_ID_HEX 24
#define SRV_ID_RAW 12
#define SRV_MAX_DEVICES_DEFAULT 16384 /* --max-devices */

/* One row per device seen in a Hello (or registered on disk and looked up).
 * Owned by the table, never moved (pointers to rows stay valid); `session` is
 * a borrowed coap_session_t* (NULL when disconnected), changed only through
 * srv_devices_set_session (it is indexed); `describe` a malloc'd JSON text
 * sized to fit, owned by the row. */
typedef struct {
  char id[SRV_ID_HEX + 1]; /* lower-case hex */
  int connected;
  time_t last_heard; /* 0: never */
  char addr[64];     /* "ip:port" of the last session */
  char *describe;    /* last describe reply (JSON text), or NULL */
  void *session;
  unsigned hellos;         /* Hellos accepted so far */
  uint8_t hello_flags;     /* flags of the last Hello */
  int described;           /* a describe arrived since the last Hello */
  struct srv_ota *ota;     /* OTA jobs (srv_ota.c), malloc'd on first use */
  uint16_t hello_product;  /* product id of the last Hello (10 = platform) */
  int development;         /* product device flashed by hand (srv_cloud.c) */
  srv_usage_t usage;       /* bytes on the wire, all sessions (srv_coap.c) */
  struct srv_cloud *cloud; /* healer and event state (srv_cloud.c) */
  int save_due;            /* job file to write at the next flush */
} srv_device_t;

/* The table: `cap` rows allocated at setup (calloc: pages are touched only
 * as rows fill), `n` used, in order of arrival; hash indexes by id and by
 * session (open addressing, slots hold row index + 1). */
typedef struct {
  const char *data_dir; /* keys in data_dir/devices/<id>.pub.pem */
  srv_device_t *rows;
  size_t n, cap;
  uint32_t *by_id, *by_sess; /* index slots, mask + 1 of them each */
  size_t mask;
} srv_devices_t;

/* Init the table (cannot fail): no rows, no room (srv_devices_setup). */
void srv_devices_init(srv_devices_t *t, const char *data_dir);
/* Room for `max` devices (0: SRV_MAX_DEVICES_DEFAULT). 0 or OTA_ENOMEM. */
int srv_devices_setup(srv_devices_t *t, size_t max);
/* Free every row's state and the table; safe twice. */
void srv_devices_free(srv_devices_t *t);
/* Find a row by lower-case hex id; NULL if absent. */
srv_device_t *srv_devices_find(srv_devices_t *t, const char *id);
/* Find or add; NULL when the table is full. */
srv_device_t *srv_devices_get(srv_devices_t *t, const char *id);
/* Row whose live session is `session`, or NULL. */
srv_device_t *srv_devices_by_session(srv_devices_t *t, const void *session);
/* Set d's session (NULL: none), keeping the session index. */
void srv_devices_set_session(srv_devices_t *t, srv_device_t *d, void *session);
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
  size_t max_devices;  /* device table size (--max-devices) */
} srv_opts_t;

/* Fast-OTA pacing for every job: first window in chunks (0 = ota_tx's 16)
 * and the wait for a window's ping ACK in ms (< 0 = ota_tx's 5000; 0 = no
 * pings, unpaced). */
extern unsigned srv_ota_window;
extern int srv_ota_gap_ms;

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
/* The same, and *mid = the message id libcoap gave it. */
int srv_coap_send_mid(void *session, const ota_coap_msg_t *m, int *mid);

/* ---- Module files shared by OTA jobs (srv_mods.c): read and validated
 * (CRC-32, SHA-256) once per file version (path, size, mtime, inode), the
 * bytes shared by every job sending them (reference counts). ---- */
typedef struct srv_mod {
  uint8_t *bytes; /* owned; freed with the last reference */
  size_t len;
  ota_module_t info; /* parsed once; views into bytes */
  char path[512];    /* file it came from, "" for an upload */
  long long size, mtime_s, mtime_ns;
  unsigned long long ino;
  unsigned refs;
} srv_mod_t;

typedef struct {
  unsigned long long loads;       /* files read from disk */
  unsigned long long hits;        /* loads answered from the cache */
  unsigned long long validations; /* CRC/SHA computations */
} srv_mods_stats_t;

/* The module in file `path` (a new reference): from the cache when the file
 * is unchanged, else read and validated (ota_module_parse). NULL with *err:
 * OTA_ENOENT, OTA_EINVAL (empty or > 8 MB), OTA_EIO, a parse error or
 * OTA_ENOMEM. */
srv_mod_t *srv_mod_load(const char *path, int *err);
/* A module from bytes[len] (an upload): copied and parsed once, not cached
 * (one reference). NULL with *err as ota_module_parse or OTA_ENOMEM. */
srv_mod_t *srv_mod_copy(const uint8_t *bytes, size_t len, int *err);
/* Another reference to m (NULL-safe); returns m. */
srv_mod_t *srv_mod_ref(srv_mod_t *m);
/* Drop a reference (NULL-safe); the last one frees the bytes. */
void srv_mod_unref(srv_mod_t *m);
/* Drop the cache's references; safe twice. */
void srv_mods_free(void);
/* Counters since start (for logs and tests). */
srv_mods_stats_t srv_mods_stats(void);

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
#define SRV_OTA_HISTORY 20     /* ended jobs kept per device for GET */
#define SRV_OTA_MAX_RESTARTS 3 /* Hellos mid-transfer before the job fails */

typedef enum {
  SRV_JOB_QUEUED,
  SRV_JOB_SENDING,
  SRV_JOB_REBOOTING,
  SRV_JOB_DONE,
  SRV_JOB_FAILED
} srv_job_state_t;

/* Static name of a job state ("SENDING"). */
const char *srv_job_state_name(srv_job_state_t s);

/* Who queued a job. */
typedef enum {
  SRV_ORIGIN_USER,    /* PUT /v1/devices/:id (flashed by hand) */
  SRV_ORIGIN_HEALER,  /* the Safe Mode Healer */
  SRV_ORIGIN_PRODUCT, /* the product's released firmware */
} srv_origin_t;
const char *srv_origin_name(srv_origin_t o);

/* A new request number: the jobs one request queues (the parts of one
 * multi-file PUT) share it, and a failed job cancels only the jobs queued
 * behind it with the same number (never 0). */
unsigned srv_ota_new_batch(void);
/* Copy mod[len] (already validated by the caller) into the device's queue,
 * save it under DATA/jobs/ (fsync + atomic rename) and start it if the
 * device is connected, described and idle. `batch` is the request's number
 * (srv_ota_new_batch; 0 = a request of its own). *job gets the job number.
 * OTA_EFULL when SRV_OTA_QUEUE jobs are pending, OTA_ENOMEM. */
int srv_ota_enqueue(srv_device_t *d, const uint8_t *mod, size_t len,
                    const char *name, srv_origin_t origin, unsigned batch,
                    unsigned *job);
/* The same with a shared module (takes a new reference to m, never copies).
 * A module from a file (m->path set) is saved as that path, not copied under
 * DATA/jobs/; a restart reads the file again. */
int srv_ota_enqueue_mod(srv_device_t *d, srv_mod_t *m, const char *name,
                        srv_origin_t origin, unsigned batch, unsigned *job);
/* The queued or running job (QUEUED, SENDING or REBOOTING) that carries
 * module `ref`, or 0. */
unsigned srv_ota_find(const srv_device_t *d, const ota_modref_t *ref);
/* 1 when the device has any job queued or running. */
int srv_ota_busy(const srv_device_t *d);
/* Re-queue the jobs saved under DATA/jobs/ by a previous run (from zero:
 * the device never applies a partial module). Returns how many. */
size_t srv_ota_restore(srv_devices_t *t);
/* Save the device's queue and flags (DATA/jobs/<id>.json) at the next flush,
 * at most SRV_OTA_SAVE_MS from now: the files of every device changed in
 * between are written together and made durable with one syncfs (a fleet's
 * thousands of queue changes per second cost one sync, not one fsync each).
 * A server killed before the flush loses at most that window of changes. */
void srv_ota_save(srv_device_t *d);
#define SRV_OTA_SAVE_MS 200
/* Write the saves due now (from srv_ota_timers, and at exit). */
void srv_ota_flush(srv_devices_t *t);
/* The --data DIR (set by main). */
extern const char *srv_data_dir;
/* Events from the CoAP adapter. */
void srv_ota_on_hello(srv_device_t *d);
void srv_ota_on_describe(srv_device_t *d);
void srv_ota_on_disconnect(srv_device_t *d);
/* A message from the device for the running transfer (responses matched by
 * token in ota_tx; ChunkMissed and the device's UpdateDone as requests). */
void srv_ota_on_coap(srv_device_t *d, const ota_coap_msg_t *m);
/* The ACK or RST of the CON with libcoap message id `mid` (the pong of an OTA
 * window's ping, or something else: ignored). Safe inside libcoap's receive
 * path: the next window goes from the loop tick. Callers: the libcoap pong
 * and nack (RST) handlers, and srv_pong.c (libcoap 4.3.1 reports no ACK). */
void srv_ota_on_pong(srv_device_t *d, int mid);
/* True when d has a transfer in SENDING. */
int srv_ota_sending(const srv_device_t *d);
/* Run due OTA timers of every device; ms until the next one (<= 1000). */
unsigned srv_ota_timers(srv_devices_t *t);
/* The "ota", "ota_queue", "last_ota" and "jobs" (history: the last
 * SRV_OTA_HISTORY jobs, newest first, running and queued ones included) JSON
 * of a device, added to obj (a json_t*). */
void srv_ota_json(const srv_device_t *d, void *obj);
/* The running job in brief: {"job","module":"s/1 v108","state","sent",
 * "total"} (a new json_t*), or JSON null when no job is SENDING/REBOOTING. */
void *srv_ota_brief_json(const srv_device_t *d);
/* Free a device's jobs; safe twice. */
void srv_ota_free(srv_device_t *d);

/* ---- Cloud behaviour (srv_cloud.c): the Safe Mode Healer per device,
 * product vs developer devices, product firmware, events to the bus
 * (PROTOCOL.md 7, 9; docs/PROTOCOL.md "Cloud behaviour choices"). ---- */

/* --fixtures DIR (module files the healer sends). As srv_api_option. */
int srv_cloud_option(const char *a, const char *v);
void srv_cloud_usage(FILE *f);
/* Publish an event to the bus and log it (device_id NULL: cloud-wide). */
void srv_emit(const char *name, const char *data, const char *device_id);
/* Connection events from the CoAP adapter. */
void srv_cloud_on_hello(srv_device_t *d);
void srv_cloud_on_describe(srv_device_t *d);
void srv_cloud_on_disconnect(srv_device_t *d);
/* An event the device published (POST E/e). */
void srv_cloud_on_device_event(srv_device_t *d, const char *name,
                               const uint8_t *data, size_t len);
/* A job ended (from srv_ota.c): feeds the healer and the flash events. */
void srv_cloud_on_job_end(srv_device_t *d, srv_origin_t origin,
                          const ota_modref_t *ref, int ok, const char *why,
                          const srv_usage_t *usage);
/* The planner's estimate for one module's OTA (ota_plan_make from the
 * release shipping it with only that module older): {"wire":..,
 * "payload":..,...} or JSON null for modules outside the catalogue. */
void *srv_cloud_estimate_json(const ota_modref_t *ref);
/* The product id of the device (registry), 0 = developer device. */
uint32_t srv_cloud_product(const srv_device_t *d);
/* A product device flashed by hand becomes a development device. */
void srv_cloud_mark_development(srv_device_t *d);
/* Healer timers; ms until the next (<= 1000). */
unsigned srv_cloud_timers(srv_devices_t *t);
/* "product_id", "development", "safe_mode", "healer" into obj (json_t*). */
void srv_cloud_json(const srv_device_t *d, void *obj);
/* Free the device's cloud state; safe twice. */
void srv_cloud_free(srv_device_t *d);

/* The lws protocol list (HTTP first, then the raw CoAP fd protocol);
 * declared in srv_http.c, used by srv_main.c (needs <libwebsockets.h>). */
#ifdef LWS_PRE
extern const struct lws_protocols srv_protocols[];
#endif
/* The device-list fields of d (NULL: never seen) into obj (a json_t*):
 * system_firmware_version, connected, safe_mode, product_id, development and
 * ota (srv_ota_brief_json). */
void srv_http_device_brief(const srv_device_t *d, void *obj);
/* Set by main for the HTTP side's lookups. */
extern srv_devices_t *srv_http_devices;
extern size_t srv_http_max_upload;
/* The release catalogue (system_firmware_version), or NULL. */
extern const ota_catalog_t *srv_catalog;
/* Ask the loop to run CoAP timers/greetings soon (from inside callbacks). */
void srv_loop_kick(void);

#endif
