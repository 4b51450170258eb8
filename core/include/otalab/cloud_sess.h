/* One device's session in the cloud, sans-IO: Hello check and ACK, server
 * Hello, Describe, the OTA job queue over ota_tx, the Safe Mode Healer and
 * product firmware (PROTOCOL.md 2.2-2.5, 3, 7, 9). Ported from server/
 * srv_coap.c, srv_ota.c and srv_cloud.c (same messages, same order). */
// clang-format off
/*
 *            Hello (id ok): ACK, spark/status online,
 *            NON POST h + CON GET d (flags 3)
 *  OFFLINE ------------------------------------------> GREETED
 *   ^  |  Hello malformed / other id: no ACK, CLOSE       | 2.05 to our GET d
 *   |  +--------------------------------------> REFUSED  v
 *   |                                                  DESCRIBED --+
 *   +--------------- on_disconnect() (any state) --------+   ^     | describe:
 *                                                             +-----+ jobs,
 *                                                             product app,
 *  Jobs (one at a time):  QUEUED --connected and described--> SENDING    healer
 *    SENDING --ota_tx SUCCEEDED--> REBOOTING --describe after a new Hello
 *    shows the version--> DONE; ota_tx FAILED, disconnect, wrong version or
 *    no reconnect in reboot_timeout_ms --> FAILED (queued jobs cancelled).
 *    A Hello while SENDING: FAILED, unless UpdateDone awaits its answer
 *    (ota_tx DONE_SENT: the 2.04 may be lost, the module in) --> REBOOTING,
 *    and the describe after that Hello decides DONE or FAILED.
 */
// clang-format on
/* Effects (caller's outbox):
 *   OTA_FX_SEND   one encoded CoAP message for the device. New requests carry
 *                 message id 0 (the transport assigns ids and retransmits
 *                 CONs, as libcoap does); ACKs carry the request's id. fx.arg
 *                 = module bytes sent for the first time in it (chunks),
 *                 fx.addr = 1 for a chunk sent again.
 *   OTA_FX_EVENT  arg OTA_CSESS_FX_PUBLISH: bytes "name\0data" (an event for
 *                 the device's stream); OTA_CSESS_FX_JOB: bytes = an
 *                 ota_csess_job_t (a job ended: its module view may be
 *                 released); OTA_CSESS_FX_CLOSE: close the transport.
 *   Read them with ota_csess_effect_get().
 * Ownership: module bytes given to ota_csess_enqueue() or returned by the
 * loader are VIEWS kept until the job's OTA_CSESS_FX_JOB effect. The
 * catalogue (cfg.cat) must outlive the session. Messages are read during the
 * call only. */
#ifndef OTALAB_CLOUD_SESS_H
#define OTALAB_CLOUD_SESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otalab/catalog.h"
#include "otalab/coap.h"
#include "otalab/describe.h"
#include "otalab/healer.h"
#include "otalab/ota_tx.h"
#include "otalab/outbox.h"

#define OTA_CSESS_STATES(X)                                                    \
  X(OTA_CSESS_OFFLINE, "OFFLINE")                                              \
  X(OTA_CSESS_GREETED, "GREETED")     /* Hello accepted, Describe asked */     \
  X(OTA_CSESS_DESCRIBED, "DESCRIBED") /* answered the Describe */              \
  X(OTA_CSESS_REFUSED, "REFUSED")

typedef enum {
#define OTA_CSESS_ENUM(s, n) s,
  OTA_CSESS_STATES(OTA_CSESS_ENUM)
#undef OTA_CSESS_ENUM
      OTA_CSESS_STATE_COUNT
} ota_csess_state_t;

const char *ota_csess_state_name(ota_csess_state_t s);

typedef enum {
  OTA_JOB_QUEUED,
  OTA_JOB_SENDING,
  OTA_JOB_REBOOTING,
  OTA_JOB_DONE,
  OTA_JOB_FAILED
} ota_job_state_t;
const char *ota_job_state_name(ota_job_state_t s);

typedef enum {
  OTA_ORIGIN_USER = 0,
  OTA_ORIGIN_HEALER = 1,
  OTA_ORIGIN_PRODUCT = 2
} ota_origin_t;
const char *ota_origin_name(ota_origin_t o);

#define OTA_CSESS_FX_PUBLISH 0x4301
#define OTA_CSESS_FX_JOB 0x4302
#define OTA_CSESS_FX_CLOSE 0x4303

#define OTA_CSESS_QUEUE 8                  /* as SRV_OTA_QUEUE */
#define OTA_CSESS_REBOOT_TIMEOUT_MS 120000 /* as SRV_OTA_REBOOT_TIMEOUT_MS */
#define OTA_CSESS_TOKEN_HELLO 0x48
#define OTA_CSESS_TOKEN_DESCRIBE 0xD5

/* Module bytes for a healer SEND_MODULE: a view (caller keeps it alive until
 * the job ends). Return 0 or an OTA_E* (the healer hears of a failed OTA). */
typedef int (*ota_csess_load_fn)(void *ud, const ota_heal_effect_t *e,
                                 const uint8_t **mod, size_t *len);

typedef struct {
  const ota_catalog_t *cat;    /* required for the healer */
  uint8_t id[12];              /* the device id a Hello must carry */
  bool check_id;               /* false: any id (the adapter checked keys) */
  bool send_acks;              /* emit the empty ACKs libcoap would send */
  uint32_t product_id;         /* 0: developer device (healer DISABLED) */
  bool development;            /* a product device flashed by hand */
  uint16_t ota_window;         /* 0: ota_tx default */
  int32_t ota_ping_timeout_ms; /* < 0: ota_tx default (window pong wait) */
  uint32_t reboot_timeout_ms;
  ota_csess_load_fn load; /* healer modules */
  void *load_ud;
  const uint8_t *product_app; /* the product's released app (view) or NULL */
  size_t product_app_len;
  unsigned product_app_version;
  char name[32]; /* device id for logs */
} ota_csess_cfg_t;

void ota_csess_cfg_default(ota_csess_cfg_t *cfg);

typedef struct {
  unsigned id;
  const uint8_t *mod; /* view */
  size_t len;
  ota_modref_t ref;
  char name[48];
  ota_job_state_t state;
  ota_origin_t origin;
  uint32_t hellos_at_done;
  uint64_t t_queued, t_start, t_sent, t_end, deadline;
  uint64_t payload_sent;
  uint32_t sent, total, prog_sent;
  uint64_t prog_t;
  uint32_t chunks, resent;
  uint32_t restarts; /* Hellos mid-transfer that sent it again from zero */
  char why[160];
} ota_csess_job_t;

/* Hellos mid-transfer (no UpdateDone yet, no OTA-applied flag) that restart
 * a job from zero before it fails (srv.h SRV_OTA_MAX_RESTARTS). */
#define OTA_CSESS_MAX_RESTARTS 3

typedef struct {
  int32_t kind;
  const char *name; /* PUBLISH: views into the outbox arena */
  const char *data;
  size_t data_len;
  ota_csess_job_t job; /* JOB */
} ota_csess_effect_t;

int ota_csess_effect_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                         ota_csess_effect_t *e);

typedef struct {
  ota_csess_cfg_t cfg;
  ota_csess_state_t state;
  uint32_t hellos;
  uint8_t hello_flags;
  uint16_t hello_product;
  ota_tx_t tx;
  ota_csess_job_t q[OTA_CSESS_QUEUE]; /* q[0] is the current job */
  size_t n;
  ota_csess_job_t last;
  bool has_last;
  unsigned next_job;
  ota_healer_t h;
  ota_describe_t desc; /* the latest describe (json view cleared) */
  bool described, safe_mode;
  char describe_json[2048]; /* latest describe text */
  ota_outbox_t *scratch;    /* caller's, shared (ota_tx / healer effects) */
  ota_outbox_t *scratch2;
  uint32_t n_jobs_ok, n_jobs_failed;
} ota_csess_t;

/* scratch, scratch2: two caller-owned outboxes shared by the sessions of one
 * thread. Cannot fail. */
void ota_csess_init(ota_csess_t *s, const ota_csess_cfg_t *cfg,
                    ota_outbox_t *scratch, ota_outbox_t *scratch2);
/* Forget jobs (no effects) and the healer. Safe twice. */
void ota_csess_free(ota_csess_t *s);

/* A decoded message from the device (requests and responses). */
int ota_csess_on_message(ota_csess_t *s, const ota_coap_msg_t *m,
                         uint64_t now_ms, ota_outbox_t *out);
/* The transport closed (DTLS close, lost session). */
void ota_csess_on_disconnect(ota_csess_t *s, uint64_t now_ms,
                             ota_outbox_t *out);
/* Queue one module (view, see Ownership): OTA_EFULL, a parse error, or 0;
 * *job gets its number. Starts at once when the device is described. */
int ota_csess_enqueue(ota_csess_t *s, const uint8_t *mod, size_t len,
                      const char *name, ota_origin_t origin, uint64_t now_ms,
                      ota_outbox_t *out, unsigned *job);
/* The ACK or RST of the current transfer's window ping arrived (the adapter
 * matches it by the message id it gave the ping: a SEND of a CON 0.00). */
int ota_csess_on_pong(ota_csess_t *s, uint64_t now_ms, ota_outbox_t *out);
int ota_csess_on_timer(ota_csess_t *s, uint64_t now_ms, ota_outbox_t *out);
uint64_t ota_csess_next_deadline(const ota_csess_t *s);
/* True while a job is queued or running. */
bool ota_csess_busy(const ota_csess_t *s);

#endif
