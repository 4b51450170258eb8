/* The cloud's reading of a system describe JSON: modules, dependencies, what is
 * missing, safe mode. Source: PROTOCOL.md 3.1, 3.3, 5.2, 7 (binary-version-
 * reader's HalDependencyResolver: _repairDescribeErrors,
 * findAnyMissingDependencies, _walkChain); choices in docs/PROTOCOL.md
 * "Healer choices".
 *
 * Ownership: ota_describe_t is a plain value (no heap): strings are copied
 * into its fixed fields, except `json`, a VIEW of the text given to
 * ota_describe_parse() (the caller keeps it alive while it uses the view, e.g.
 * until ota_healer_on_describe() returns). */
#ifndef OTALAB_DESCRIBE_H
#define OTALAB_DESCRIBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otalab/electron.h"
#include "otalab/planner.h"

#define OTA_DESCRIBE_MAX_MODULES 16 /* Electron lists 6 (+1 in OTA results) */
#define OTA_DESCRIBE_SHA_HEX 64

/* Validation bits of vc/vv (PROTOCOL.md 3.1). */
#define OTA_DESCRIBE_VALID_DEPS 0x04u

/* One entry of "m". */
typedef struct {
  uint8_t func;      /* ota_fn_t from "f"; OTA_FN_NONE for an empty slot */
  uint8_t index;     /* from the string "n" */
  uint16_t version;  /* "v" */
  char loc;          /* "l": 'm' main, 'f' factory, 'b' backup, 't' scratch */
  uint32_t size;     /* "s": maximum size of the slot */
  uint16_t vc, vv;   /* validation checks performed / passed */
  uint16_t platform; /* per-module "p" (OTA-result variant), 0 absent */
  int ndeps;         /* entries of deps[] used (0..2; extra "d" ignored) */
  ota_modref_t deps[2];
  char sha[OTA_DESCRIBE_SHA_HEX + 1]; /* "u" (user modules), "" absent */
  bool empty;    /* 0.6.x empty slot: no f, n, v in the JSON */
  bool repaired; /* n/f/v filled in by the _repairDescribeErrors rule */
} ota_describe_module_t;

typedef struct {
  uint16_t platform; /* "p"; 0 when absent */
  char imei[24];     /* "" when absent */
  char iccid[32];
  char cellfw[32];
  size_t nmodules;
  ota_describe_module_t m[OTA_DESCRIBE_MAX_MODULES];
  const char *json; /* view of the parsed text (see Ownership) */
  size_t json_len;
  char err[128]; /* why the parse failed, "" on success */
} ota_describe_t;

/* Parse a system describe (flags 1 or 3: an application part "f":[] / "v":{}
 * next to "m" is ignored). Tolerates the per-release variants: 0.6.x empty
 * slots (kept, empty = true, no dependency matches them), missing n/f/v
 * repaired as binary-version-reader's _repairDescribeErrors does (main
 * location, before the first user module: n = previous n + 1 (first: "0"),
 * f = 's', v = 0), "n" given as a number, more than two dependencies (the
 * first two kept), 2.x (no empty slots, "cellfw"). Writes the whole of *out.
 * Returns 0, OTA_EPARSE (not JSON, not an object, no "m" array, a field of the
 * wrong type, unknown function letter, index out of 0..255; out->err names
 * the field), OTA_EFULL (more than OTA_DESCRIBE_MAX_MODULES modules) or
 * OTA_EINVAL (NULL arguments). */
int ota_describe_parse(const char *json, size_t len, ota_describe_t *out);

/* The dependencies the device lacks, as binary-version-reader's
 * findAnyMissingDependencies reports them: for each module not in the
 * factory location, for each dependency (function none skipped), the first
 * module with the same function and index; absent, or at a lower version:
 * the requirement (f, n, v) is missing. De-duplicated by f_n_v, in order of
 * first appearance. Writes up to cap entries into out (out may be NULL when
 * cap is 0) and returns the total number found (may exceed cap). */
size_t ota_describe_missing_deps(const ota_describe_t *d, ota_modref_t *out,
                                 size_t cap);

/* True when the requirement `need` is missing on the device (the _walkChain
 * rule above; a function-none requirement is never missing). */
bool ota_describe_dep_missing(const ota_describe_t *d,
                              const ota_modref_t *need);

/* The main-location, non-empty module (func, index), or NULL. */
const ota_describe_module_t *ota_describe_find(const ota_describe_t *d,
                                               uint8_t func, uint8_t index);

/* True when the device runs in safe mode as the cloud sees it: a main-location
 * module that performed the dependency check (vc & 0x04) did not pass it
 * (vv & 0x04 clear), or a dependency of the main user module is missing. */
bool ota_describe_in_safe_mode(const ota_describe_t *d);

/* The device's system module version: the lowest version among the system
 * parts s/1..s/3 present (main location, not empty); 0 when none. */
uint16_t ota_describe_system_version(const ota_describe_t *d);

/* The planner's view of the device: the main-location, non-empty modules
 * (bootloader, system parts, user) as ota_dev_module_t, written into
 * mods[0..cap). Fills *dev (modules = mods, nmodules, platform from "p" or 10,
 * product as given). Returns the number of modules written. */
size_t ota_describe_to_plan_device(const ota_describe_t *d,
                                   ota_dev_module_t *mods, size_t cap,
                                   int product, ota_plan_device_t *dev);

/* "s/3 v108" into buf (always NUL-terminated); returns buf. */
const char *ota_modref_str(const ota_modref_t *r, char *buf, size_t cap);

#endif
