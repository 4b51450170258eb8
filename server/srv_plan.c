/* otalab-server's planner endpoints for the dashboard: GET /v1/plan,
 * GET /v1/devices/:id/plan, GET /v1/releases (core/planner, core/describe). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/describe.h"
#include "otalab/err.h"
#include "otalab/plan_json.h"
#include "srv.h"
#include "srv_static.h"

static char *err_body(unsigned *status, unsigned code, const char *msg) {
  *status = code;
  json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

static char *plan_body(const ota_plan_device_t *dev, const ota_goal_t *goal,
                       unsigned *status) {
  ota_plan_t *plan = malloc(sizeof *plan); /* ~20 KB: not on the stack */
  if (!plan)
    return NULL;
  int rc = ota_plan_make(srv_catalog, dev, goal, NULL, plan);
  *status = rc ? 422 : 200;
  char *s = ota_plan_to_json(srv_catalog, plan, goal->release,
                             JSON_COMPACT | JSON_REAL_PRECISION(10));
  free(plan);
  return s;
}

char *srv_plan_release(const char *from, const char *to, int product,
                       unsigned *status) {
  if (!srv_catalog)
    return err_body(status, 503, "No release catalogue loaded.");
  if (!from || !*from || !to || !*to)
    return err_body(status, 400, "Give from=RELEASE and to=RELEASE.");
  const ota_cat_release_t *cur = ota_catalog_find(srv_catalog, from);
  if (!cur)
    return err_body(status, 404, "Unknown release in from=.");
  ota_dev_module_t mods[OTA_CAT_MAX_MODULES];
  ota_plan_device_t dev = {mods, 0, OTA_PLATFORM_ELECTRON, product};
  dev.nmodules = ota_plan_device_from_release(cur, mods, OTA_CAT_MAX_MODULES);
  ota_goal_t goal = {OTA_GOAL_RELEASE, to, {0, 0, 0}};
  return plan_body(&dev, &goal, status);
}

char *srv_plan_device(const char *id, const char *to, int product,
                      unsigned *status) {
  if (!srv_catalog)
    return err_body(status, 503, "No release catalogue loaded.");
  srv_device_t *d = srv_devices_find(srv_http_devices, id);
  if (!d)
    return err_body(status, 404, "Device not found.");
  if (!d->describe)
    return err_body(status, 409, "The device has not described itself yet.");
  ota_describe_t *desc = malloc(sizeof *desc);
  if (!desc)
    return NULL;
  char *s;
  if (ota_describe_parse(d->describe, strlen(d->describe), desc)) {
    s = err_body(status, 409, "The device's describe cannot be parsed.");
  } else {
    ota_dev_module_t mods[OTA_DESCRIBE_MAX_MODULES];
    ota_plan_device_t dev;
    ota_describe_to_plan_device(desc, mods, OTA_DESCRIBE_MAX_MODULES, product,
                                &dev);
    ota_goal_t goal = {to && *to ? OTA_GOAL_RELEASE : OTA_GOAL_HEAL,
                       to && *to ? to : NULL,
                       {0, 0, 0}};
    s = plan_body(&dev, &goal, status);
  }
  free(desc);
  return s;
}

char *srv_releases_json(unsigned *status) {
  json_t *a = json_array();
  for (size_t i = 0; srv_catalog && i < srv_catalog->nreleases; i++) {
    const ota_cat_release_t *r = &srv_catalog->releases[i];
    json_array_append_new(a, json_pack("{s:s,s:i,s:i}", "name", r->name,
                                       "system_version", r->system_version,
                                       "parts", r->nparts));
  }
  *status = 200;
  char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
  json_decref(a);
  return s;
}
