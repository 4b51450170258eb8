/* otalab-server cloud behaviour: the Safe Mode Healer per device, product vs
 * developer devices, product firmware, flash/status events (PROTOCOL.md 7, 9).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "otalab/describe.h"
#include "otalab/err.h"
#include "otalab/healer.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "otalab/msg.h"
#include "otalab/outbox.h"
#include "otalab/planner.h"
#include "srv.h"
#include "srv_api.h"

/* Per device (malloc'd at the first Hello, owned by the row). The healer
 * (~5 KB: its plan and a copy of the last describe) is malloc'd only when a
 * describe shows safe mode: an idle fleet of 10,000 healthy devices would
 * hold 50 MB of healers that never run. Until then it is IDLE (product) or
 * DISABLED (developer device) with nothing sent. */
struct srv_cloud {
  ota_healer_t *h; /* NULL: not needed yet */
  int product;     /* product flag the healer was set up with */
  int safe_mode;   /* the latest describe shows safe mode */
  int described;   /* a describe was parsed */
  char sysver[24];
  /* the current or latest healing round */
  int healing;
  uint64_t heal_t0, heal_ms;
  srv_usage_t heal_u0, heal_usage;
  uint64_t heal_est; /* the planner's wire bytes for the round's plan */
  char heal_result[200];
};

static const char *fixtures_dir;
static ota_outbox_t hob; /* healer outbox, drained after every call */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int srv_cloud_option(const char *a, const char *v) {
  if (strcmp(a, "--fixtures"))
    return 0;
  if (!v) {
    fprintf(stderr, "otalab-server: --fixtures needs a directory\n");
    return -1;
  }
  fixtures_dir = v;
  return 2;
}

void srv_cloud_usage(FILE *f) {
  fprintf(f, "  --fixtures DIR  module files the Safe Mode Healer sends\n"
             "                  (system-part1-0.6.2-electron.bin ...; "
             "default DATA/fixtures)\n");
}

void srv_emit(const char *name, const char *data, const char *device_id) {
  OTA_LOGI("event: %s %s: %.300s", device_id ? device_id : "cloud", name,
           data ? data : "");
  srv_events_publish(name, data ? data : "", device_id, SRV_EVENTS_DEFAULT_TTL);
}

uint32_t srv_cloud_product(const srv_device_t *d) {
  return srv_products_of_device(d->id);
}

static struct srv_cloud *cloud_of(srv_device_t *d) {
  uint32_t product = srv_cloud_product(d);
  struct srv_cloud *c = d->cloud;
  if (!c && !(c = d->cloud = calloc(1, sizeof *c)))
    return NULL;
  c->product = product != 0;
  return c;
}

/* The device's healer, set up on first use (NULL: no memory). */
static ota_healer_t *healer_of(srv_device_t *d, struct srv_cloud *c) {
  if (!c->h && !(c->h = calloc(1, sizeof *c->h)))
    return NULL;
  uint32_t product = srv_cloud_product(d);
  c->product = product != 0;
  if (!c->h->cat || c->h->cfg.product != (product != 0)) {
    ota_healer_cfg_t cfg;
    ota_healer_config_default(&cfg);
    cfg.product = product != 0;
    snprintf(cfg.device, sizeof cfg.device, "%s", d->id);
    ota_healer_init(c->h, &cfg, srv_catalog);
    OTA_LOGI("cloud: %s is a %s device (product %u): healer %s", d->id,
             product ? "product" : "developer", product,
             ota_heal_state_name(c->h->state));
  }
  return c->h;
}

/* ---- the planner's estimate for one module ---- */

void *srv_cloud_estimate_json(const ota_modref_t *ref) {
  static ota_plan_t plan; /* large; the server is single-threaded */
  const ota_cat_release_t *rel =
      srv_catalog ? ota_catalog_find_module(srv_catalog, ref->func, ref->index,
                                            ref->version)
                  : NULL;
  if (!rel || !ref->version)
    return json_null();
  ota_dev_module_t mods[OTA_PLAN_MAX_MODULES];
  size_t n = ota_plan_device_from_release(rel, mods, OTA_PLAN_MAX_MODULES);
  size_t k = 0;
  while (k < n &&
         !(mods[k].id.func == ref->func && mods[k].id.index == ref->index))
    k++;
  if (k == n)
    return json_null();
  mods[k].id.version = (uint16_t)(ref->version - 1);
  ota_plan_device_t dev = {
      .modules = mods, .nmodules = n, .platform = 10, .product = 1};
  ota_goal_t goal = {.kind = OTA_GOAL_RELEASE, .release = rel->name};
  if (ota_plan_make(srv_catalog, &dev, &goal, NULL, &plan) ||
      plan.nsteps != 1 || plan.steps[0].nmodules != 1)
    return json_null();
  const ota_plan_cost_t *c = &plan.steps[0].cost;
  return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "model", "ota_plan_make",
                   "wire", (json_int_t)c->wire, "payload",
                   (json_int_t)c->payload, "down", (json_int_t)c->down, "up",
                   (json_int_t)c->up, "datagrams", (json_int_t)c->datagrams,
                   "wire_particle", (json_int_t)c->wire_particle);
}

/* ---- healer effects ---- */

static void heal_send(srv_device_t *d, struct srv_cloud *c,
                      const ota_heal_effect_t *e, char *why, size_t cap) {
  char dirbuf[4096];
  const char *dir = fixtures_dir;
  if (!dir) {
    snprintf(dirbuf, sizeof dirbuf, "%s/fixtures",
             srv_data_dir ? srv_data_dir : ".");
    dir = dirbuf;
  }
  why[0] = 0;
  if (!c->healing) {
    /* A new round: time, bytes and the planner's figure from here. */
    c->healing = 1;
    c->heal_t0 = now_ms();
    c->heal_u0 = d->usage;
    c->heal_est = 0;
    for (int i = 0; i < c->h->plan.nsteps; i++)
      c->heal_est += c->h->plan.steps[i].cost.wire;
    c->heal_result[0] = 0;
  }
  unsigned job = srv_ota_find(d, &e->module);
  if (job) {
    OTA_LOGI("cloud: %s healer adopts job %u (%s, already queued)", d->id, job,
             e->file);
    return;
  }
  /* One validated copy per file, shared by every device's job. */
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, e->file);
  int err = 0;
  srv_mod_t *m = srv_mod_load(path, &err);
  const ota_module_info_t *mi = m ? &m->info.info : NULL;
  if (!m && (err == OTA_ENOENT || err == OTA_EIO))
    snprintf(why, cap, "cannot read %s/%s", dir, e->file);
  else if (!m)
    snprintf(why, cap, "%s: %s", e->file, ota_strerror(err));
  else if (mi->func != e->module.func || mi->index != e->module.index ||
           mi->version != e->module.version)
    snprintf(why, cap, "%s is %c/%u v%u, not the module wanted", e->file,
             ota_fn_letter(mi->func), mi->index, mi->version);
  else if ((err = srv_ota_enqueue_mod(d, m, e->file, SRV_ORIGIN_HEALER, 0,
                                      &job)) != 0)
    snprintf(why, cap, "cannot queue %s: %s", e->file, ota_strerror(err));
  srv_mod_unref(m);
}

/* Carry out the healer's effects; a module that cannot be sent is reported
 * back as a failed OTA (which may produce more effects). */
static void heal_drain(srv_device_t *d, struct srv_cloud *c) {
  for (int round = 0; round < 8 && hob.n; round++) {
    char why[256] = "";
    for (size_t i = 0; i < hob.n; i++) {
      ota_heal_effect_t e;
      if (ota_healer_effect_get(&hob, &hob.fx[i], &e))
        continue;
      if (e.kind == OTA_HEAL_FX_EVENT) {
        char *data = malloc(e.data_len + 1);
        if (!data)
          continue;
        memcpy(data, e.data, e.data_len);
        data[e.data_len] = 0;
        if (!strcmp(e.name, "otalab/healer/done") ||
            !strcmp(e.name, "otalab/healer/failed")) {
          if (c->healing) {
            c->heal_ms = now_ms() - c->heal_t0;
            c->heal_usage = d->usage;
            srv_usage_sub(&c->heal_usage, &c->heal_u0);
            uint64_t w = c->heal_usage.up + c->heal_usage.down;
            snprintf(c->heal_result, sizeof c->heal_result, "%s", data);
            OTA_LOGI("cloud: %s healing ended in %llu ms: %s; data %llu B on "
                     "the wire, planner estimate %llu B (%+.1f %%)",
                     d->id, (unsigned long long)c->heal_ms, data,
                     (unsigned long long)w, (unsigned long long)c->heal_est,
                     c->heal_est ? 100.0 * ((double)w - (double)c->heal_est) /
                                       (double)c->heal_est
                                 : 0.0);
          }
          c->healing = 0;
        }
        srv_emit(e.name, data, d->id);
        free(data);
      } else if (e.kind == OTA_HEAL_FX_SEND_MODULE && !why[0]) {
        heal_send(d, c, &e, why, sizeof why);
      }
    }
    ota_outbox_clear(&hob);
    if (why[0]) {
      OTA_LOGW("cloud: %s healer module not sent: %s", d->id, why);
      ota_healer_on_ota_result(c->h, false, why, now_ms(), &hob);
    }
  }
  ota_outbox_clear(&hob);
}

/* ---- product firmware (PROTOCOL.md 9: a release goes to non-development
 * devices at their next handshake) ---- */

static int product_app(srv_device_t *d, const ota_describe_t *desc) {
  uint32_t product = srv_cloud_product(d);
  char path[4096];
  unsigned version = 0;
  if (!product || d->development ||
      srv_products_released_app(product, path, sizeof path, &version))
    return 0;
  int err = 0;
  srv_mod_t *sm = srv_mod_load(path, &err); /* cached: every describe asks */
  if (!sm) {
    OTA_LOGW("cloud: %s product %u firmware v%u unreadable (%s: %s)", d->id,
             product, version, path, ota_strerror(err));
    return 0;
  }
  const ota_module_t *mp = &sm->info;
  char hex[65];
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", mp->suffix.sha256[i]);
  const ota_describe_module_t *u = ota_describe_find(desc, OTA_FN_USER, 1);
  int queued = 0;
  if (!u || strcasecmp(u->sha, hex)) {
    ota_modref_t ref = {mp->info.func, mp->info.index, mp->info.version};
    unsigned job = srv_ota_find(d, &ref);
    char name[64];
    snprintf(name, sizeof name, "product-%u-v%u.bin", product, version);
    int err =
        job ? 0 : srv_ota_enqueue_mod(d, sm, name, SRV_ORIGIN_PRODUCT, 0, &job);
    if (err)
      OTA_LOGW("cloud: %s cannot queue product firmware v%u: %s", d->id,
               version, ota_strerror(err));
    else
      OTA_LOGI("cloud: %s runs %s, not product %u's released firmware v%u: "
               "job %u",
               d->id, u ? "another app" : "no app", product, version, job);
    queued = !err;
  }
  srv_mod_unref(sm);
  return queued;
}

/* ---- events from the CoAP adapter ---- */

void srv_cloud_on_hello(srv_device_t *d) {
  cloud_of(d);
  srv_emit("spark/status", "online", d->id);
}

void srv_cloud_on_disconnect(srv_device_t *d) {
  srv_emit("spark/status", "offline", d->id);
}

void srv_cloud_on_device_event(srv_device_t *d, const char *name,
                               const uint8_t *data, size_t len) {
  char buf[OTA_EVENT_DATA_MAX + 1];
  snprintf(buf, sizeof buf, "%.*s", (int)len, (const char *)data);
  srv_emit(name, buf, d->id);
}

void srv_cloud_on_describe(srv_device_t *d) {
  srv_ota_on_describe(d); /* may end a job: the healer hears of it first */
  struct srv_cloud *c = cloud_of(d);
  if (!c || !d->describe || !srv_catalog)
    return;
  static ota_describe_t desc;
  if (ota_describe_parse(d->describe, strlen(d->describe), &desc)) {
    OTA_LOGW("cloud: %s describe not understood: %s", d->id, desc.err);
    return;
  }
  c->described = 1;
  c->safe_mode = ota_describe_in_safe_mode(&desc);
  const ota_cat_release_t *rel =
      ota_catalog_find_sysver(srv_catalog, ota_describe_system_version(&desc));
  snprintf(c->sysver, sizeof c->sysver, "%s", rel ? rel->name : "");
  /* The product's release first (then, if the app needs a newer system, the
   * device is in safe mode at its next describe and the healer heals). */
  int mid_heal = c->h && (c->h->state == OTA_HEAL_SENDING ||
                          c->h->state == OTA_HEAL_WAIT_DESCRIBE);
  if (!mid_heal && !srv_ota_busy(d) && product_app(d, &desc))
    return;
  if (!c->h && !c->safe_mode)
    return; /* a healer would stay IDLE (or DISABLED): none yet */
  ota_healer_t *h = healer_of(d, c);
  if (!h)
    OTA_LOGE("cloud: %s no memory for the healer", d->id);
  else if (ota_healer_on_describe(h, &desc, now_ms(), &hob))
    OTA_LOGW("cloud: %s healer outbox full", d->id);
  heal_drain(d, c);
}

void srv_cloud_on_job_end(srv_device_t *d, srv_origin_t origin,
                          const ota_modref_t *ref, int ok, const char *why,
                          const srv_usage_t *usage) {
  char data[300];
  if (ok)
    snprintf(data, sizeof data, "success");
  else
    snprintf(data, sizeof data, "failed %s", why ? why : "");
  srv_emit("spark/flash/status", data, d->id);
  if (usage) {
    char mod[32];
    json_t *o = json_pack(
        "{s:s,s:s,s:b,s:o,s:o}", "module", ota_modref_str(ref, mod, sizeof mod),
        "origin", srv_origin_name(origin), "ok", ok, "data_usage",
        srv_usage_json(usage), "estimate", srv_cloud_estimate_json(ref));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s)
      srv_emit("otalab/flash/usage", s, d->id);
    free(s);
    json_decref(o);
  }
  struct srv_cloud *c = d->cloud;
  if (c && c->h && c->h->state == OTA_HEAL_SENDING &&
      c->h->sending.func == ref->func && c->h->sending.index == ref->index &&
      c->h->sending.version == ref->version) {
    ota_healer_on_ota_result(c->h, ok, ok ? NULL : why, now_ms(), &hob);
    heal_drain(d, c);
  }
}

void srv_cloud_mark_development(srv_device_t *d) {
  if (!srv_cloud_product(d) || d->development)
    return;
  d->development = 1;
  OTA_LOGI("cloud: %s flashed by hand: now a development device (no product "
           "firmware pushed)",
           d->id);
  json_t *row = srv_products_device(d->id);
  if (row) {
    json_object_set_new(row, "development", json_true());
    srv_store_commit("devices");
  }
  srv_ota_save(d);
}

unsigned srv_cloud_timers(srv_devices_t *t) {
  uint64_t now = now_ms(), next = now + 1000;
  for (size_t i = 0; i < t->n; i++) {
    srv_device_t *d = &t->rows[i];
    struct srv_cloud *c = d->cloud;
    if (!c || !c->h || !c->h->cat)
      continue;
    uint64_t dl = ota_healer_next_deadline(c->h);
    if (dl <= now) {
      ota_healer_on_timer(c->h, now, &hob);
      heal_drain(d, c);
      dl = c->h ? ota_healer_next_deadline(c->h) : UINT64_MAX;
    }
    if (dl < next)
      next = dl;
  }
  return next <= now ? 1 : (unsigned)(next - now);
}

void srv_cloud_json(const srv_device_t *d, void *obj) {
  json_t *o = obj;
  const struct srv_cloud *c = d->cloud;
  uint32_t product = srv_cloud_product(d);
  json_object_set_new(o, "product_id", json_integer(product));
  json_object_set_new(o, "development", json_boolean(d->development));
  json_object_set_new(o, "hello_product_id", json_integer(d->hello_product));
  json_object_set_new(o, "safe_mode",
                      c && c->described ? json_boolean(c->safe_mode)
                                        : json_null());
  if (!c) {
    json_object_set_new(o, "healer", json_null());
    return;
  }
  const ota_healer_t *hl = c->h && c->h->cat ? c->h : NULL;
  json_t *h = json_pack(
      "{s:s,s:i,s:i,s:i,s:i,s:s}", "state",
      hl ? ota_heal_state_name(hl->state)
         : ota_heal_state_name(product ? OTA_HEAL_IDLE : OTA_HEAL_DISABLED),
      "modules_sent", (json_int_t)(hl ? hl->n_sent : 0), "ok",
      (json_int_t)(hl ? hl->n_ok : 0), "failed",
      (json_int_t)(hl ? hl->n_failed : 0), "rounds",
      (json_int_t)(hl ? hl->n_rounds : 0), "reason", hl ? hl->reason : "");
  if (c->heal_result[0] || c->healing) {
    srv_usage_t u = c->heal_usage;
    if (c->healing) {
      u = d->usage;
      srv_usage_sub(&u, &c->heal_u0);
    }
    json_object_set_new(
        h, "round",
        json_pack("{s:b,s:I,s:s,s:o,s:I}", "healing", c->healing, "ms",
                  (json_int_t)(c->healing ? now_ms() - c->heal_t0 : c->heal_ms),
                  "result", c->heal_result, "data_usage", srv_usage_json(&u),
                  "estimate_wire", (json_int_t)c->heal_est));
  }
  json_object_set_new(o, "healer", h);
}

void srv_cloud_free(srv_device_t *d) {
  if (d->cloud && d->cloud->h) {
    ota_healer_free(d->cloud->h);
    free(d->cloud->h);
  }
  free(d->cloud);
  d->cloud = NULL;
}
