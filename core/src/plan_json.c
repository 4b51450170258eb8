/* The planner's result as JSON (otalab plan --json, GET /v1/plan).
 * Source: core/planner.h; the shape is documented in otalab/plan_json.h. */
#include "otalab/plan_json.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "otalab/err.h"

static const char *const link_names[] = {"2g", "3g", "lte-m", "lte"};

static json_t *ok_json(const ota_catalog_t *cat, const ota_plan_t *p) {
  json_t *o = json_object(), *steps = json_array(), *sec = json_object();
  json_object_set_new(o, "from", json_string(p->from));
  json_object_set_new(o, "to", json_string(p->to));
  for (int i = 0; i < p->nsteps; i++) {
    const ota_plan_step_t *s = &p->steps[i];
    json_t *js = json_object(), *mods = json_array();
    json_object_set_new(js, "release", json_string(s->release->name));
    for (int k = 0; k < s->nmodules; k++) {
      const ota_plan_module_t *m = &s->modules[k];
      json_t *jm = json_object();
      json_object_set_new(jm, "function", json_string(ota_fn_name(m->id.func)));
      json_object_set_new(jm, "index", json_integer(m->id.index));
      json_object_set_new(jm, "version", json_integer(m->id.version));
      json_object_set_new(jm, "file", json_string(m->file));
      json_object_set_new(jm, "bytes", json_integer(m->bytes));
      json_array_append_new(mods, jm);
    }
    json_object_set_new(js, "modules", mods);
    json_object_set_new(js, "payload_bytes",
                        json_integer((json_int_t)s->cost.payload));
    json_object_set_new(js, "wire_bytes",
                        json_integer((json_int_t)s->cost.wire));
    json_array_append_new(steps, js);
  }
  json_object_set_new(o, "steps", steps);
  json_object_set_new(o, "payload_bytes",
                      json_integer((json_int_t)p->total.payload));
  json_object_set_new(o, "wire_bytes", json_integer((json_int_t)p->total.wire));
  json_object_set_new(o, "wire_bytes_particle",
                      json_integer((json_int_t)p->total.wire_particle));
  json_object_set_new(o, "udp_ip_bytes",
                      json_integer((json_int_t)p->total.udp_ip));
  for (size_t i = 0; i < sizeof link_names / sizeof link_names[0]; i++) {
    const ota_link_profile_t *l = ota_catalog_link(cat, link_names[i]);
    if (!l)
      continue;
    double s = ota_plan_seconds(&p->total, l, NULL);
    json_object_set_new(sec, link_names[i], json_real(round(s * 10) / 10));
  }
  json_object_set_new(o, "seconds", sec);
  return o;
}

char *ota_plan_to_json(const ota_catalog_t *cat, const ota_plan_t *p,
                       const char *to, size_t flags) {
  json_t *o;
  if (p->result)
    o = json_pack("{s:s, s:s, s:s, s:s}", "from", p->from, "to",
                  to ? to : p->to, "error", ota_strerror_name(p->result),
                  "reason", p->reason);
  else
    o = ok_json(cat, p);
  char *txt = o ? json_dumps(o, flags | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  return txt;
}
