/* The Electron release catalogue: every Device OS release an Electron can run,
 * its modules (sizes, addresses, dependencies), its bootloader and its
 * per-release protocol behaviour, plus the cellular link profiles. Loaded from
 * fixtures/catalog/electron.json (PROTOCOL.md sections 2, 4.6, 5, 6).
 *
 * Ownership: ota_catalog_t owns all its arrays; pointers returned by the find
 * functions point into it and live until ota_catalog_free(). */
#ifndef OTALAB_CATALOG_H
#define OTALAB_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "otalab/electron.h"

#define OTA_CAT_MAX_MODULES 4 /* bootloader + up to three system parts */

/* One module of a release, as the public file carries it. */
typedef struct {
  char file[32];        /* public name stem: "system-part1", "bootloader" */
  ota_modref_t id;      /* function, index, module version */
  uint32_t start_addr;  /* absolute flash address of the module */
  uint32_t size;        /* whole .bin size in bytes, CRC included */
  ota_modref_t deps[2]; /* func OTA_FN_NONE = no dependency */
  int size_assumed;     /* 1: size is an estimate, not a real binary's */
  char source[96];      /* where the size came from, or "assumed" */
} ota_cat_module_t;

/* How a release behaves on the wire (PROTOCOL.md 2.3-2.5, 3). */
typedef enum {
  OTA_DESCRIBE_ACK = 0,      /* <= 1.5.x: piggy-backed in the ACK */
  OTA_DESCRIBE_SEPARATE = 1, /* 2.0.0 .. 2.1.x: empty ACK, separate CON */
  OTA_DESCRIBE_POST =
      2 /* >= 2.2.0: device-initiated POST d (also answers GET) */
} ota_describe_form_t;

typedef enum {
  OTA_UPDONE_NONE = 0, /* 0.5.x: 2.04 without payload */
  OTA_UPDONE_JSON = 1, /* 0.6.1 .. 1.5.x: {"r":"ok","u":{...}} */
  OTA_UPDONE_INT = 2   /* >= 2.0.0: {"r":0} */
} ota_updone_form_t;

typedef struct {
  uint8_t hello_flags; /* flags besides 0x01 the release sets */
  ota_describe_form_t describe;
  uint8_t
      refusal_code; /* CoAP code: 0x80 (4.00) <= 1.1.x, 0xA3 (5.03) >= 1.2 */
  ota_updone_form_t updone;
  int device_sends_updone; /* 1 on <= 0.7.x */
  int move_session;        /* 1 from 0.5.x */
  int knows_part3;         /* HAL knows s/3 (>= 0.5.3-rc.2) */
} ota_cat_behaviour_t;

typedef struct {
  char name[24];           /* "0.6.2", "0.4.8-rc.6" */
  int major, minor, patch; /* semver core */
  char pre[12];            /* prerelease tag or "" */
  uint16_t system_version; /* system module version, e.g. 108 */
  uint16_t
      bootloader_version; /* bootloader carried inside s/3 (self-updates) */
  int nparts;             /* system parts: 2 before 0.6.0, 3 from 0.6.0 */
  int nmodules;           /* entries in modules[] */
  /* system parts in file order (part1, part2, part3), then the bootloader
   * module when the catalogue has one for this release */
  ota_cat_module_t modules[OTA_CAT_MAX_MODULES];
  ota_cat_behaviour_t behaviour;
  uint16_t bootloader_dependency; /* s/2's b/0 dependency, 0 = none (< 0.7.0) */
  char notes[128];
} ota_cat_release_t;

/* A cellular link profile for time estimates (assumptions written in the JSON).
 */
typedef struct {
  char name[16];   /* "2g", "3g", "lte-m", "lte" */
  double down_bps; /* cloud -> device, bits per second */
  double up_bps;   /* device -> cloud */
  double rtt_ms;
  double loss;          /* datagram loss probability 0..1 */
  char assumption[240]; /* where the figures come from (JSON "assumption") */
} ota_link_profile_t;

typedef struct {
  ota_cat_release_t *releases; /* sorted by system_version ascending */
  size_t nreleases;
  ota_link_profile_t *links;
  size_t nlinks;
  uint16_t stepping_stone_min; /* s/1,s/2 below this must step through ... */
  char stepping_stone[24];     /* ... this release ("0.5.3") */
} ota_catalog_t;

/* Zeroes the struct. Cannot fail. */
void ota_catalog_init(ota_catalog_t *cat);
/* Parse catalogue JSON text. On error returns a negative OTA_E* and writes a
 * message naming the offending entry into err (if non-NULL). */
int ota_catalog_load_json(ota_catalog_t *cat, const char *json, size_t len,
                          char *err, size_t errlen);
/* Read and parse a catalogue file. */
int ota_catalog_load_file(ota_catalog_t *cat, const char *path, char *err,
                          size_t errlen);
/* Frees everything the catalogue owns; safe to call twice. */
void ota_catalog_free(ota_catalog_t *cat);

/* Look-ups; NULL if absent. A name matches exactly, or by major.minor.patch
 * when `name` has no prerelease ("0.4.8" finds "0.4.8-rc.6"). */
const ota_cat_release_t *ota_catalog_find(const ota_catalog_t *cat,
                                          const char *name);
const ota_cat_release_t *ota_catalog_find_sysver(const ota_catalog_t *cat,
                                                 uint16_t system_version);
/* The release that ships module (func,index,version), or NULL. */
const ota_cat_release_t *ota_catalog_find_module(const ota_catalog_t *cat,
                                                 uint8_t func, uint8_t index,
                                                 uint16_t version);
/* The module entry of a release with that function and index, or NULL. */
const ota_cat_module_t *ota_release_module(const ota_cat_release_t *rel,
                                           uint8_t func, uint8_t index);
const ota_link_profile_t *ota_catalog_link(const ota_catalog_t *cat,
                                           const char *name);

#endif
