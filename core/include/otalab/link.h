/* A seeded, sans-IO model of one device's cellular link, both directions:
 * bandwidth, delay, jitter, loss, duplication, reordering, outages. Figures
 * from the catalogue's link profiles (fixtures/catalog/electron.json). */
// clang-format off
/*
 * One datagram submitted in direction d at now_ms, size bytes:
 *
 *   outage at now? -----------------yes--> dropped (no airtime used)
 *     | no
 *   tx_start = max(now, busy_until[d])          queueing behind earlier ones
 *   queue_ms set and tx_start-now > queue_ms --> dropped (tail drop)
 *   tx_end = tx_start + (size + overhead) * 8 / bps[d]   (serialisation)
 *   busy_until[d] = tx_end
 *   lost (p = loss)? ----------------yes--> dropped (airtime used)
 *     | no
 *   at = tx_end + rtt/2 + U[0, jitter]
 *   reordered (p = reorder)? --yes--> at += reorder_ms   (overtaken by later
 *     | no                                                datagrams)
 *   at = max(at, last in-order delivery[d])   jitter alone never reorders
 *   duplicated (p = dup)? -----yes--> 2nd copy at + U[0, jitter] + 1 ms
 *
 * Outages drop everything in both directions: a fixed window
 * [outage_start_ms, outage_end_ms), and/or a one-shot outage that starts when
 * the bytes submitted downwards reach outage_after_bytes (the datagram that
 * reaches it still goes) and lasts outage_after_ms.
 *
 * Randomness: one xorshift64* stream per direction, seeded from `seed` with
 * splitmix64; every submission draws the same number of values, so a given
 * seed gives the same fate to the n-th datagram of a direction whatever the
 * probabilities or the other direction's traffic. No clock, no rand().
 *
 * Ownership: ota_link_t is a plain value (no heap); copy it to fork a run. */
// clang-format on
#ifndef OTALAB_LINK_H
#define OTALAB_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "otalab/catalog.h"

typedef enum {
  OTA_LINK_DOWN = 0, /* cloud -> device */
  OTA_LINK_UP = 1    /* device -> cloud */
} ota_link_dir_t;

#define OTA_LINK_NDIR 2

typedef struct {
  char name[16];     /* "2g", "custom", ... (for logs) */
  double bps[2];     /* bits/s per direction; 0 = unlimited */
  double rtt_ms;     /* one-way base delay is rtt_ms / 2 */
  double jitter_ms;  /* extra one-way delay, uniform in [0, jitter_ms] */
  double loss;       /* datagram loss probability, 0..1 */
  double dup;        /* duplication probability, 0..1 */
  double reorder;    /* probability a datagram is held back, 0..1 */
  double reorder_ms; /* how long a held-back datagram is held */
  uint32_t overhead; /* bytes added per datagram on the wire (IPv4+UDP 28) */
  uint32_t queue_ms; /* tail-drop when queueing exceeds this; 0 = never */
  uint64_t outage_start_ms; /* window [start, end); start == end: none */
  uint64_t outage_end_ms;
  uint64_t outage_after_bytes; /* 0 = no byte-triggered outage */
  uint64_t outage_after_ms;    /* its duration */
} ota_link_cfg_t;

/* Counters of one direction. */
typedef struct {
  uint64_t datagrams; /* submitted */
  uint64_t bytes;     /* submitted (size_bytes, without overhead) */
  uint64_t delivered; /* copies delivered (duplicates included) */
  uint64_t bytes_delivered;
  uint64_t lost;         /* dropped by random loss */
  uint64_t outage_drops; /* dropped during an outage */
  uint64_t queue_drops;  /* dropped by the queue limit */
  uint64_t dups;         /* datagrams delivered twice */
  uint64_t reordered;    /* datagrams held back */
  uint64_t max_queue_ms; /* longest wait behind earlier datagrams */
} ota_link_stats_t;

typedef struct {
  ota_link_cfg_t cfg;
  uint64_t rng[2]; /* per-direction xorshift64* state */
  uint64_t busy_until_us[2];
  uint64_t last_inorder_ms[2];
  uint64_t trig_start_ms; /* byte-triggered outage; valid if trig_active */
  int trig_active;
  ota_link_stats_t stats[2];
} ota_link_t;

/* Ideal link: unlimited bandwidth, no delay, no loss, overhead 28. */
void ota_link_cfg_init(ota_link_cfg_t *cfg);

/* Config from a catalogue profile: bandwidth, RTT and loss from the profile,
 * jitter/dup/reorder from this module's defaults for that profile name
 * (docs/PROTOCOL.md "Link model"). Cannot fail. */
void ota_link_cfg_from_profile(ota_link_cfg_t *cfg,
                               const ota_link_profile_t *prof);

/* Parse a link spec:
 *   PROFILE[,KEY=VAL...]        PROFILE from the catalogue: 2g 3g lte-m lte
 *   custom:KEY=VAL[,KEY=VAL...] (down= and up= required)
 *   ideal[,KEY=VAL...]          no limits, no delay
 * KEYs: down, up (bits/s, suffix k = 1e3, M = 1e6), rtt, jitter, reorder-ms,
 * queue (ms), loss, dup, reorder (probabilities 0..1), overhead (bytes),
 * outage=START+DURATION (ms), outage-after=BYTES:DURATION (bytes may use k/M).
 * cat may be NULL when the spec names no profile. On error returns OTA_EPARSE
 * (or OTA_ENOENT for an unknown profile) and writes a message into err. */
int ota_link_parse(const char *spec, const ota_catalog_t *cat,
                   ota_link_cfg_t *cfg, char *err, size_t errlen);

/* Write a one-line description of cfg ("2g down=40000 up=20000 ..."). */
void ota_link_cfg_format(const ota_link_cfg_t *cfg, char *out, size_t cap);

/* Start a link with cfg (copied) and seed. Cannot fail. */
void ota_link_init(ota_link_t *link, const ota_link_cfg_t *cfg, uint64_t seed);

/* Offer one datagram of size_bytes in direction dir at now_ms (now_ms must
 * not go backwards within a direction). Returns the number of copies that
 * arrive (0 = dropped, 1, or 2 = duplicated) and writes their arrival times
 * in ms, ascending, into deliver_at_ms[0..n-1]. */
int ota_link_submit(ota_link_t *link, ota_link_dir_t dir, uint64_t now_ms,
                    size_t size_bytes, uint64_t deliver_at_ms[2]);

/* 1 if an outage drops datagrams submitted at now_ms. */
int ota_link_in_outage(const ota_link_t *link, uint64_t now_ms);

/* Counters of a direction (a view into link). */
const ota_link_stats_t *ota_link_stats(const ota_link_t *link,
                                       ota_link_dir_t dir);

/* One line per direction: "down: 100 dgrams 51200 B, 98 delivered, 2 lost..."
 */
void ota_link_stats_format(const ota_link_t *link, char *out, size_t cap);

#endif
