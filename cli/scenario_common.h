/* otalab scenario: what the real-process runner (scenario_run.c) and the
 * virtual-time runner (scenario_virtual.c) do alike (docs/SCENARIOS.md). */
#ifndef OTALAB_CLI_SCENARIO_COMMON_H
#define OTALAB_CLI_SCENARIO_COMMON_H

#include <jansson.h>
#include <stddef.h>

#include "otalab/catalog.h"
#include "otalab/describe.h"
#include "scenario.h"

/* Record a setup failure (run->fail_setup, printf format). Returns 1. */
int sc_setup_fail(sc_run_t *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An app's "file" as a path: absolute as it is, else relative to the
 * scenario file's directory (".", when the scenario path has no '/'). */
void sc_app_path(const sc_run_t *run, const char *file, char *out, size_t cap);

/* "system_firmware_version" as GET /v1/devices/:id computes it from a
 * describe: the catalogue release of the system parts' version, "" when they
 * differ, none is listed, the release is unknown or cat is NULL. */
void sc_sys_version(const ota_catalog_t *cat, json_t *desc, char *out,
                    size_t cap);

/* The planner's wire estimate from d's first describe to its final_release
 * (d->estimate, d->est_note; only a note without final_release). */
void sc_estimate(const ota_catalog_t *cat, sc_dev_t *d,
                 const ota_describe_t *ds);

/* A describe of d (desc and its parse ds; sfv its system_firmware_version):
 * updates described, first_describe (a reference to desc), first_sfv,
 * safe_mode, ever_safe, app_ok and sfv. msg gets the line to say ("" when
 * nothing changed). Returns 1 for d's first describe (the caller then makes the
 * estimate), else 0. */
int sc_describe_seen(sc_dev_t *d, json_t *desc, const ota_describe_t *ds,
                     const char *sfv, char *msg, size_t cap);

/* After a poll: whether d meets its expectations now; d->t_done is the time it
 * first did (`now`), -1 while it does not. */
int sc_dev_track(const sc_run_t *run, sc_dev_t *d, double now);

#endif
