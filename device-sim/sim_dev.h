/* One simulated Electron inside otalab-device: device core, DTLS transport,
 * CoAP channel, OTA receiver, cellular link model and injected faults, driven
 * by a shared event loop (PROTOCOL.md 1.4-1.5, 2.1-2.5, 3, 7).
 *
 *   WAIT --wake_at--> HANDSHAKE --done--> ONLINE --reboot (OTA, safe mode)--+
 *    ^                   | fail             | lost / ping timeout / fault   |
 *    +- retry (backoff) -+------------------+                               |
 *    +------------------------------- boot, then WAIT <---------------------+
 *   HANDSHAKE/ONLINE --refused (close_notify, Hello RST)--> DEAD
 *   boot --hard-fault loop--> DEAD
 *   HANDSHAKE --fail, single device never online yet--> DEAD (exit 1)
 *
 * sim_dev_set_phase() is the only place the phase changes; it logs
 * `OLD => NEW (why)`. Ownership: sim_dev_t owns its transport, staging
 * buffer, link queue and key strings; the shared sim_ctx_t (catalogue, image
 * store, options) belongs to the caller and outlives every device. */
#ifndef OTALAB_SIM_DEV_H
#define OTALAB_SIM_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "otalab/catalog.h"
#include "otalab/coap_chan.h"
#include "otalab/device.h"
#include "otalab/imgstore.h"
#include "otalab/link.h"
#include "otalab/ota_rx.h"
#include "sim_state.h"
#include "sim_transport.h"

#define SIM_MAX_FAULTS 8
#define SIM_MAX_RECOVER 8

/* What every device of the process shares. */
typedef struct {
  ota_catalog_t cat;
  ota_imgstore_t images; /* identical module images kept once */
  char host[256];
  uint16_t port;
  const char *server_cert_file;
  char *server_cert_pem; /* malloc'd */
  double time_scale;     /* device clock = start + real elapsed x K */
  uint64_t real_t0;      /* real ms at start */
  int durable;           /* fsync state files (single device) */
  int fleet;             /* prefix logs with the device id */
  const char *keylog;
  const char *recover[SIM_MAX_RECOVER];
  int nrecover;
  int max_handshakes; /* connects wait while this many handshake (0: no cap) */
  int handshakes;     /* devices in HANDSHAKE now */
} sim_ctx_t;

typedef enum {
  SIM_FAULT_DROP_LINK = 1,   /* drop-link-at-chunk:K[:MS] */
  SIM_FAULT_RESET_OTA = 2,   /* reset-during-ota:K */
  SIM_FAULT_POWER_APPLY = 3, /* power-loss-during-apply */
  SIM_FAULT_CORRUPT = 4      /* corrupt-chunk:K */
} sim_fault_kind_t;

typedef struct {
  sim_fault_kind_t kind;
  uint32_t chunk; /* K (chunk index, 0-based) */
  uint32_t ms;    /* outage length (device ms) */
  int fired;
} sim_fault_t;

/* Parse one --fault SPEC. Returns 0 or OTA_EPARSE. */
int sim_fault_parse(const char *spec, sim_fault_t *f);

#define SIM_PHASES(X)                                                          \
  X(SIM_WAIT, "WAIT")                                                          \
  X(SIM_HANDSHAKE, "HANDSHAKE")                                                \
  X(SIM_ONLINE, "ONLINE")                                                      \
  X(SIM_DEAD, "DEAD")

typedef enum {
#define SIM_PHASE_ENUM(n, s) n,
  SIM_PHASES(SIM_PHASE_ENUM)
#undef SIM_PHASE_ENUM
} sim_phase_t;

typedef struct sim_dgram sim_dgram_t; /* a datagram held by the link */

typedef struct {
  uint64_t full_hs, resumed_hs, failed_hs;
  uint64_t otas_ok, otas_rejected, ota_bytes;
  uint64_t reconnects, boots, faults;
  uint64_t last_ota_sim_ms, last_ota_real_ms;
} sim_dev_counters_t;

typedef struct {
  sim_ctx_t *ctx;
  char idhex[25];
  uint8_t id[12];
  char *key_pem, *cert_pem; /* malloc'd; NULL: key_file/cert_file */
  const char *key_file, *cert_file;
  char state_path[512]; /* "" = no state file */
  int product;          /* Hello product id, -1: the app's */
  /* flash, session */
  ota_device_t dev;
  sim_persist_t *per; /* malloc'd (4 KB session) */
  /* link */
  ota_link_t link;
  sim_dgram_t *q; /* held datagrams, unsorted list */
  size_t nq;
  /* faults */
  sim_fault_t faults[SIM_MAX_FAULTS];
  int nfaults;
  int power_loss_pending; /* the next update reboot loses power mid-copy */
  /* connection */
  sim_phase_t phase;
  uint64_t wake_at; /* WAIT: device ms to connect at */
  sim_transport_t *t;
  int fd; /* transport's socket while connected, else -1 */
  ota_coap_chan_t ch;
  ota_rx_t rx;
  uint8_t *staging; /* malloc'd while an OTA runs */
  size_t staging_cap;
  uint16_t hello_mid, ping_mid;
  int hello_acked, ping_out, described, reboot, progress_q;
  const char *fail;
  int fatal;
  int boot_pending;    /* reboot before the next connect */
  int reset_reason;    /* ota_reset_t for that boot */
  uint64_t last_io;    /* device ms */
  uint64_t hs_real0;   /* real ms the handshake started */
  uint64_t hs_poll_at; /* HANDSHAKE: device ms to step mbedTLS's timers */
  uint32_t hs_fails;   /* failed handshakes since the last success */
  int was_online;      /* a handshake succeeded once in this process */
  int exiting;         /* sim_dev_free() runs: fleets save state now */
  uint64_t ota_t0, ota_real0;
  /* OTA finish: the 2.04 leaves first, then the module is queued (fin), then
   * the reset waits for the uplink (docs/PROTOCOL.md "Device: finishing an
   * update") */
  ota_rx_report_t fin;
  int fin_pending;
  uint64_t reset_by; /* device ms: reset even if CONs are still unacked */
  int exit_code;     /* DEAD: 1 refused, 3 hard fault */
  sim_transport_stats_t last_stats; /* of the last closed transport */
  sim_dev_counters_t n;
} sim_dev_t;

/* The device clock in ms: start + real elapsed x time_scale. */
uint64_t sim_now(const sim_ctx_t *ctx);
/* Real ms (CLOCK_MONOTONIC). */
uint64_t sim_real_ms(void);

/* Init dev bound to ctx (cannot fail); fill id/keys/state/link/faults after,
 * then sim_dev_setup(). */
void sim_dev_init(sim_dev_t *d, sim_ctx_t *ctx);
/* Load the state file or provision `release` (+ app file, fixtures dir),
 * then boot. Returns 0 or a negative OTA_E* (logged). */
int sim_dev_setup(sim_dev_t *d, const char *release, const char *app,
                  const char *fixtures);
/* Schedule the first connect at device time `at`. */
void sim_dev_start(sim_dev_t *d, uint64_t at);
/* The socket became readable: read and route every datagram. */
void sim_dev_on_readable(sim_dev_t *d);
/* Run timers due at device time now (link queue, handshake retransmits,
 * CoAP, OTA, keep-alive, reconnects). */
void sim_dev_on_timer(sim_dev_t *d);
/* The next device time sim_dev_on_timer() wants to run (UINT64_MAX: none). */
uint64_t sim_dev_next_deadline(const sim_dev_t *d);
/* Save, close (no close_notify: the session stays valid), free. Safe twice. */
void sim_dev_free(sim_dev_t *d);
/* Online, Hello acknowledged and described at least once. */
int sim_dev_ready(const sim_dev_t *d);
const char *sim_phase_name(sim_phase_t p);

/* The fd-change hook: the loop is told when a device's socket opens/closes. */
extern void (*sim_dev_fd_hook)(sim_dev_t *d, int old_fd, int new_fd);

#endif
