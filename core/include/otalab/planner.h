/* The upgrade planner: which releases and modules an Electron must receive, in
 * which order, and what that costs on the wire. Source: PROTOCOL.md 1.1, 1.6,
 * 2.1-2.5, 5.2, 6.1, 6.2, 7 (healing rules) and 10.
 *
 * A pure function: no I/O, no clocks. Input is the device as its describe
 * reports it (modules with versions and dependencies), a goal (a target
 * release, or the dependency a user app needs) and the catalogue. Output is an
 * ota_plan_t: ordered steps, each a release (a stepping stone or the target)
 * with the ordered modules to send, plus byte and time estimates from one
 * overhead model (ota_plan_model_t, defaults in ota_plan_model_default()).
 *
 * Rules (PROTOCOL.md section in brackets):
 *  - a device whose s/1 or s/2 is below the catalogue's stepping_stone_min (19,
 *    0.5.3-rc.2) and whose goal is a 3-part release gets the 0.5.3 pair first,
 *    in a step of its own [6.1];
 *  - modules go in dependency order (file order part1, part2, part3 for 0.6.0+)
 *    [5.2]; modules the device has at >= the version are skipped;
 *  - a system dependency that neither the device nor an earlier module of the
 *    step meets (0.7.0+ s/3 needs s/2 >= 110) inserts the smallest release
 *    that provides it as a step of its own [5.2, 2.5: UpdateDone runs a full
 *    dependency check, so the module would be rejected];
 *  - a bootloader goes too only when a `b` dependency is unmet and the device's
 *    s/3 after the plan is older than the first release embedding a good enough
 *    bootloader [6.2];
 *  - already current: 0 steps, result 0; a downgrade, an unknown release, or
 *    another platform are refused with a reason.
 *
 * Ownership: the plan is a plain value (no heap); its release pointers point
 * into the catalogue, which must outlive it. The device module array is only
 * read during ota_plan_make(). */
#ifndef OTALAB_PLANNER_H
#define OTALAB_PLANNER_H

#include <stddef.h>
#include <stdint.h>

#include "otalab/catalog.h"
#include "otalab/electron.h"

#define OTA_PLAN_MAX_STEPS 6
#define OTA_PLAN_MAX_MODULES OTA_CAT_MAX_MODULES

/* One module of the device, as a describe lists it (f/n/v/d of PROTOCOL 3.1).
 */
typedef struct {
  ota_modref_t id;      /* function, index, version */
  ota_modref_t deps[2]; /* func OTA_FN_NONE = none */
} ota_dev_module_t;

/* The device being planned for. */
typedef struct {
  const ota_dev_module_t *modules; /* not owned */
  size_t nmodules;
  uint16_t platform; /* 10; 0 = unknown, taken as Electron */
  int product;       /* 1 product device (the healer runs), 0 developer */
} ota_plan_device_t;

typedef enum {
  OTA_GOAL_RELEASE = 0, /* reach `release` */
  OTA_GOAL_APP = 1,     /* meet `app_dep` (a user app's s/2 dependency) */
  OTA_GOAL_HEAL = 2     /* meet the device's own user module's dependencies */
} ota_goal_kind_t;

typedef struct {
  ota_goal_kind_t kind;
  const char *release;  /* OTA_GOAL_RELEASE: a catalogue name ("0.6.2") */
  ota_modref_t app_dep; /* OTA_GOAL_APP: e.g. s/2 >= 108 */
} ota_goal_t;

/* The data-volume and time model: every constant in one place. Byte counts
 * are bytes inside DTLS records (CoAP) unless said otherwise. */
typedef struct {
  /* CoAP framing, PROTOCOL.md 2.1, 2.2 */
  uint16_t coap_header; /* 4: RFC 7252 fixed header */
  uint16_t token;       /* 1: cloud requests carry a 1-byte token */
  uint16_t opt_path;    /* 2: Uri-Path of one character ("c", "u", "h") */
  uint16_t opt_crc;     /* 5: Uri-Query with the 4-byte chunk CRC */
  uint16_t opt_index;   /* 3: Uri-Query with the 2-byte index (fast OTA) */
  uint16_t marker;      /* 1: payload marker 0xFF */
  uint16_t chunk_size;  /* 512: Electron over UDP (2.4) */
  uint16_t dtls_record; /* 29: 13 header + 8 nonce + 8 CCM_8 tag (1.1) */
  uint16_t udp_ip;      /* 28: IPv4 20 + UDP 8 per datagram (1.1) */
  /* OTA exchange, PROTOCOL.md 2.4, 2.5 */
  int fast_ota;           /* 1: NON chunks with index, no per-chunk reply */
  uint16_t window;        /* 16 chunks per window and ping (ota_tx default) */
  uint32_t window_gap_ms; /* 0: least time per window (ota_tx: ack-clocked) */
  uint16_t begin_payload; /* 12: UpdateBegin payload */
  uint16_t updone_json;   /* 150: {"r":"ok","u":{module info}} (0.6.1-1.5) */
  uint16_t updone_int;    /* 7: {"r":0} (>= 2.0) */
  /* Reconnection after each module's reboot, PROTOCOL.md 2.3, 2.5 items 6-7 */
  uint16_t hello_payload;    /* 29: 17 + 12-byte device id */
  uint16_t describe_payload; /* 600: a system describe JSON (assumed) */
  /* handshake events, time request and subscriptions after each connect
   * (2.5 item 7), split by direction; computed in ota_plan_model_default() */
  uint16_t events_up, events_up_dgrams;     /* 3 events, 2 subscribes, time */
  uint16_t events_down, events_down_dgrams; /* time reply, 2 subscribe ACKs */
  uint16_t events12_up, events12_dgrams; /* updates/enabled|forced (>= 1.2) */
  uint16_t move_session; /* 13: ID + length byte on a moved record (1.4) */
  /* DTLS handshakes: otalab's standard DTLS (estimates, to be measured) */
  uint32_t hs_full_down, hs_full_up;               /* 1500 + 1100 bytes */
  uint32_t hs_resume_down, hs_resume_up;           /* 250 + 150 bytes */
  uint16_t hs_full_datagrams, hs_resume_datagrams; /* 10, 6 */
  uint16_t hs_full_rtts, hs_resume_rtts;           /* 3, 2 */
  /* ... and Particle's own (PROTOCOL.md 1.6, forum figures) */
  uint32_t p_full;   /* 4400 */
  uint32_t p_resume; /* 140 (135-144) */
  /* Time */
  uint32_t reboot_ms; /* 10000 per reboot + reconnect (assumed) */
} ota_plan_model_t;

/* What a module, step or whole plan costs. */
typedef struct {
  uint64_t payload;       /* module bytes sent */
  uint64_t down, up;      /* bytes in DTLS records, otalab's DTLS */
  uint64_t wire;          /* down + up */
  uint64_t wire_particle; /* the same with Particle's DTLS figures */
  uint64_t udp_ip;        /* UDP/IP headers of all datagrams (not in wire) */
  uint64_t datagrams;
  uint64_t datagrams_down, datagrams_up;
  uint32_t rtts;    /* request/response round trips on the critical path */
  uint32_t windows; /* fast-OTA windows (paced, see window_gap_ms) */
  uint32_t reboots;
} ota_plan_cost_t;

typedef struct {
  ota_modref_t id;
  char file[48]; /* "system-part1-0.6.2-electron.bin" */
  uint32_t bytes;
  int bootloader; /* 1: the b/0 module sent because of rule 6.2 */
} ota_plan_module_t;

typedef struct {
  const ota_cat_release_t *release; /* points into the catalogue */
  char why[96];                     /* "target", or why this stepping stone */
  int nmodules;
  ota_plan_module_t modules[OTA_PLAN_MAX_MODULES]; /* in send order */
  int bootloader; /* a bootloader module is among modules[] */
  ota_plan_cost_t cost;
} ota_plan_step_t;

typedef struct {
  int result;       /* 0 or the OTA_E* that refused the goal */
  char reason[160]; /* why refused, or a one-line summary */
  char from[32];    /* the device's release ("0.6.1"), or "s/1 v.., s/2 v.." */
  char to[32];      /* the target release */
  int product;
  int nsteps;
  ota_plan_step_t steps[OTA_PLAN_MAX_STEPS];
  ota_plan_cost_t total; /* steps plus the first connection's full handshake */
} ota_plan_t;

/* Fill m with the defaults documented above. Cannot fail. */
void ota_plan_model_default(ota_plan_model_t *m);

/* Plan `goal` for `dev` against `cat`, costing with `model` (NULL = defaults).
 * Writes the whole plan (also on refusal: result, reason). Returns
 * plan->result: 0 (possibly 0 steps), OTA_ERELEASE (unknown target, or no
 * release meets the app's dependency), OTA_EDOWNGRADE, OTA_EPLATFORM,
 * OTA_EINVAL (NULL args, a goal the planner cannot express), OTA_EFULL (more
 * than OTA_PLAN_MAX_STEPS). */
int ota_plan_make(const ota_catalog_t *cat, const ota_plan_device_t *dev,
                  const ota_goal_t *goal, const ota_plan_model_t *model,
                  ota_plan_t *plan);

/* The modules a device runs a release with: its system parts plus its
 * bootloader, with the catalogue's dependencies. Writes up to `cap` entries
 * into out and returns the count (a test and CLI helper for "--from 0.6.1"). */
size_t ota_plan_device_from_release(const ota_cat_release_t *rel,
                                    ota_dev_module_t *out, size_t cap);

/* Estimated seconds for a cost on a link: bytes (with UDP/IP) over each
 * direction's bandwidth, divided by (1 - loss) for retransmissions, plus RTTs,
 * window pauses and reboots. model NULL = defaults. */
double ota_plan_seconds(const ota_plan_cost_t *cost,
                        const ota_link_profile_t *link,
                        const ota_plan_model_t *model);

/* Real Particle file name of a catalogue module of release rel, e.g.
 * "system-part1-0.6.2-electron.bin", "electron-bootloader-0.6.2.bin". */
void ota_plan_file_name(const ota_cat_release_t *rel, const ota_cat_module_t *m,
                        char *out, size_t cap);

#endif
