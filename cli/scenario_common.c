/* otalab scenario: the pieces both runners share (setup failures, app paths,
 * system_firmware_version, the planner estimate, a describe's effect). */
#include "scenario_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "otalab/electron.h"
#include "otalab/planner.h"

int sc_setup_fail(sc_run_t *run, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(run->fail_setup, sizeof run->fail_setup, fmt, ap);
  va_end(ap);
  return 1;
}

void sc_app_path(const sc_run_t *run, const char *file, char *out, size_t cap) {
  if (file[0] == '/') {
    snprintf(out, cap, "%s", file);
    return;
  }
  char d[512];
  snprintf(d, sizeof d, "%s", run->file);
  char *s = strrchr(d, '/');
  if (s)
    *s = 0;
  snprintf(out, cap, "%s/%s", s ? d : ".", file);
}

void sc_sys_version(const ota_catalog_t *cat, json_t *desc, char *out,
                    size_t cap) {
  size_t i;
  json_t *e;
  int sys = -1, mixed = 0;
  out[0] = 0;
  json_array_foreach(json_object_get(desc, "m"), i, e) {
    const char *f = json_string_value(json_object_get(e, "f"));
    int ver = (int)json_integer_value(json_object_get(e, "v"));
    if (f && f[0] == 's') {
      mixed |= sys >= 0 && sys != ver;
      sys = ver;
    }
  }
  const ota_cat_release_t *r = cat && sys >= 0 && !mixed
                                   ? ota_catalog_find_sysver(cat, (uint16_t)sys)
                                   : NULL;
  if (r)
    snprintf(out, cap, "%s", r->name);
}

void sc_estimate(const ota_catalog_t *cat, sc_dev_t *d,
                 const ota_describe_t *ds) {
  const char *to =
      json_string_value(json_object_get(d->expect, "final_release"));
  if (!to) {
    snprintf(d->est_note, sizeof d->est_note, "no final_release to plan for");
    return;
  }
  ota_dev_module_t mods[OTA_DESCRIBE_MAX_MODULES];
  ota_plan_device_t pd;
  ota_describe_to_plan_device(ds, mods, OTA_DESCRIBE_MAX_MODULES,
                              d->product != 0, &pd);
  ota_goal_t goal = {.kind = OTA_GOAL_RELEASE, .release = to};
  static ota_plan_t plan; /* large; one at a time */
  if (ota_plan_make(cat, &pd, &goal, NULL, &plan))
    snprintf(d->est_note, sizeof d->est_note, "planner: %s", plan.reason);
  else {
    d->estimate = (long long)plan.total.wire;
    snprintf(d->est_note, sizeof d->est_note, "%s -> %s: %d step(s)", plan.from,
             plan.to, plan.nsteps);
  }
}

int sc_describe_seen(sc_dev_t *d, json_t *desc, const ota_describe_t *ds,
                     const char *sfv, char *msg, size_t cap) {
  int safe = ota_describe_in_safe_mode(ds);
  const ota_describe_module_t *u = ota_describe_find(ds, OTA_FN_USER, 1);
  int app = u && !safe && (u->vv & u->vc) == u->vc;
  int first = !d->described;
  msg[0] = 0;
  if (first) {
    d->described = 1;
    d->first_describe = json_incref(desc);
    snprintf(d->first_sfv, sizeof d->first_sfv, "%s", sfv);
    snprintf(msg, cap, "%s: described: system %s%s%s", d->name,
             sfv[0] ? sfv : "(mixed)", safe ? ", SAFE MODE" : "",
             app ? ", app running" : "");
  } else if (safe != d->safe_mode || app != d->app_ok || strcmp(sfv, d->sfv))
    snprintf(msg, cap, "%s: system %s%s%s", d->name, sfv[0] ? sfv : "(mixed)",
             safe ? ", SAFE MODE" : "", app ? ", app running" : "");
  d->safe_mode = safe;
  d->ever_safe |= safe;
  d->app_ok = app;
  snprintf(d->sfv, sizeof d->sfv, "%s", sfv);
  return first;
}

int sc_dev_track(const sc_run_t *run, sc_dev_t *d, double now) {
  int ok = sc_dev_ok(run, d);
  if (ok && d->t_done < 0)
    d->t_done = now;
  else if (!ok)
    d->t_done = -1;
  return ok;
}
