/* The cloud's Safe Mode Healer state machine (sans-IO), one device.
 * Source: PROTOCOL.md 3.3 (findAnyMissingDependencies, Brewskey), 6.1, 7. */
#include "otalab/healer.h"

#include <stdio.h>
#include <string.h>

#include "otalab/err.h"
#include "otalab/log.h"

static const char *const state_names[] = {
#define OTA_HEAL_STATE_NAME(s, n) n,
    OTA_HEAL_STATES(OTA_HEAL_STATE_NAME)
#undef OTA_HEAL_STATE_NAME
};

const char *ota_heal_state_name(ota_heal_state_t s) {
  return (unsigned)s < OTA_HEAL_STATE_COUNT ? state_names[s] : "?";
}

void ota_healer_config_default(ota_healer_cfg_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->product = true;
  cfg->max_failures = 3;
  cfg->retry_ms = 60000;
}

static ota_heal_state_t start_state(const ota_healer_t *h) {
  return h->cfg.product ? OTA_HEAL_IDLE : OTA_HEAL_DISABLED;
}

void ota_healer_init(ota_healer_t *h, const ota_healer_cfg_t *cfg,
                     const ota_catalog_t *cat) {
  memset(h, 0, sizeof *h);
  if (cfg)
    h->cfg = *cfg;
  else
    ota_healer_config_default(&h->cfg);
  h->cfg.device[sizeof h->cfg.device - 1] = 0;
  if (h->cfg.max_failures == 0)
    h->cfg.max_failures = 1;
  h->cat = cat;
  h->state = start_state(h);
  h->deadline = UINT64_MAX;
}

void ota_healer_reset(ota_healer_t *h) {
  ota_healer_cfg_t cfg = h->cfg;
  const ota_catalog_t *cat = h->cat;
  ota_healer_init(h, &cfg, cat);
}

void ota_healer_free(ota_healer_t *h) {
  h->have_last = false;
  h->deadline = UINT64_MAX;
}

/* The one place the state changes. */
static void set_state(ota_healer_t *h, ota_heal_state_t to, const char *why) {
  OTA_LOGI("healer %s: %s => %s (%s)", h->cfg.device,
           ota_heal_state_name(h->state), ota_heal_state_name(to), why);
  h->state = to;
}

/* ---- effects ------------------------------------------------------------- */

static int push_fx(ota_outbox_t *out, const ota_heal_effect_t *e,
                   const char *data, size_t len) {
  uint8_t buf[sizeof(ota_heal_effect_t) + OTA_HEAL_MAX_DATA];
  ota_heal_effect_t hdr = *e;
  if (len > OTA_HEAL_MAX_DATA)
    return OTA_ENOBUFS;
  hdr.data = NULL;
  hdr.data_len = len;
  memcpy(buf, &hdr, sizeof hdr);
  if (len)
    memcpy(buf + sizeof hdr, data, len);
  ota_fx_t fx;
  memset(&fx, 0, sizeof fx);
  fx.kind = OTA_FX_EVENT;
  fx.arg = e->kind;
  return ota_outbox_push(out, &fx, buf, sizeof hdr + len);
}

int ota_healer_effect_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                          ota_heal_effect_t *e) {
  if (!ob || !fx || !e || fx->kind != OTA_FX_EVENT ||
      (fx->arg != OTA_HEAL_FX_SEND_MODULE && fx->arg != OTA_HEAL_FX_EVENT) ||
      fx->len < sizeof *e)
    return OTA_EINVAL;
  const uint8_t *b = ota_outbox_bytes(ob, fx);
  memcpy(e, b, sizeof *e);
  if (e->data_len != fx->len - sizeof *e)
    return OTA_EINVAL;
  e->data = e->data_len ? (const char *)b + sizeof *e : NULL;
  return 0;
}

static int emit(ota_outbox_t *out, const char *name, const char *data,
                size_t len) {
  ota_heal_effect_t e;
  memset(&e, 0, sizeof e);
  e.kind = OTA_HEAL_FX_EVENT;
  snprintf(e.name, sizeof e.name, "%s", name);
  return push_fx(out, &e, data, len);
}

static int emit_str(ota_outbox_t *out, const char *name, const char *data) {
  return emit(out, name, data, strlen(data));
}

static int give_up(ota_healer_t *h, const char *reason, ota_outbox_t *out) {
  snprintf(h->reason, sizeof h->reason, "%s", reason);
  h->deadline = UINT64_MAX;
  OTA_LOGW("healer %s: giving up: %s", h->cfg.device, reason);
  set_state(h, OTA_HEAL_FAILED, reason);
  return emit_str(out, "otalab/healer/failed", reason);
}

/* ---- planning ------------------------------------------------------------ */

static int fail_count(const ota_healer_t *h, const ota_modref_t *id) {
  for (size_t i = 0; i < h->nfails; i++)
    if (h->fails[i].id.func == id->func && h->fails[i].id.index == id->index &&
        h->fails[i].id.version == id->version)
      return h->fails[i].failures;
  return 0;
}

static int count_failure(ota_healer_t *h, const ota_modref_t *id) {
  for (size_t i = 0; i < h->nfails; i++)
    if (h->fails[i].id.func == id->func && h->fails[i].id.index == id->index &&
        h->fails[i].id.version == id->version)
      return ++h->fails[i].failures;
  size_t i =
      h->nfails < OTA_HEAL_MAX_TRACKED ? h->nfails++ : OTA_HEAL_MAX_TRACKED - 1;
  h->fails[i].id = *id;
  h->fails[i].failures = 1;
  return 1;
}

/* The smallest release that meets one requirement: a system part at >= v,
 * or a bootloader >= v shipped as a module or embedded in s/3 (6.2). */
static const ota_cat_release_t *satisfier(const ota_catalog_t *cat,
                                          const ota_modref_t *need) {
  for (size_t i = 0; i < cat->nreleases; i++) {
    const ota_cat_release_t *r = &cat->releases[i];
    const ota_cat_module_t *m = ota_release_module(r, need->func, need->index);
    if (need->func == OTA_FN_SYSTEM && m && m->id.version >= need->version)
      return r;
    if (need->func == OTA_FN_BOOTLOADER &&
        ((m && m->id.version >= need->version) ||
         (r->nparts == 3 && r->bootloader_version >= need->version)))
      return r;
  }
  return NULL;
}

/* Choose and send the next module for describe d (the missing deps are not
 * empty). Ends in SENDING, or in FAILED with the reason. */
static int heal_step(ota_healer_t *h, const ota_describe_t *d,
                     ota_outbox_t *out) {
  char a[24], b[24], why[320];
  const ota_catalog_t *cat = h->cat;

  /* Target: the smallest release meeting every missing requirement. */
  const ota_cat_release_t *target = NULL;
  for (size_t i = 0; i < d->nmodules; i++) {
    const ota_describe_module_t *m = &d->m[i];
    if (m->loc == 'f' || m->empty)
      continue;
    for (int k = 0; k < m->ndeps; k++) {
      if (!ota_describe_dep_missing(d, &m->deps[k]))
        continue;
      const ota_cat_release_t *r = satisfier(cat, &m->deps[k]);
      if (!r) {
        ota_modref_t self = {m->func, m->index, m->version};
        snprintf(why, sizeof why,
                 "no release in the catalogue satisfies %c/%u needs %s",
                 ota_fn_letter(self.func), self.index,
                 ota_modref_str(&m->deps[k], a, sizeof a));
        return give_up(h, why, out);
      }
      if (!target || r->system_version > target->system_version)
        target = r;
    }
  }
  if (!target)
    return give_up(h, "no missing dependency to plan for", out);

  ota_dev_module_t mods[OTA_DESCRIBE_MAX_MODULES];
  ota_plan_device_t dev;
  ota_describe_to_plan_device(d, mods, OTA_DESCRIBE_MAX_MODULES, 1, &dev);
  ota_goal_t goal;
  memset(&goal, 0, sizeof goal);
  goal.kind = OTA_GOAL_RELEASE;
  goal.release = target->name;
  int rc = ota_plan_make(cat, &dev, &goal, NULL, &h->plan);
  if (rc) {
    snprintf(why, sizeof why, "planner refused %s: %s", target->name,
             h->plan.reason);
    return give_up(h, why, out);
  }
  if (h->plan.nsteps == 0 || h->plan.steps[0].nmodules == 0) {
    snprintf(why, sizeof why, "plan to %s has nothing to send (%s)",
             target->name, h->plan.reason);
    return give_up(h, why, out);
  }
  const ota_plan_step_t *step = &h->plan.steps[0];
  const ota_plan_module_t *pm = &step->modules[0];
  const ota_cat_release_t *rel =
      ota_catalog_find_module(cat, pm->id.func, pm->id.index, pm->id.version);
  if (!rel)
    rel = step->release;

  /* PROTOCOL.md 6.1, checked here too: never a 3-part release's module to a
   * device whose s/1 or s/2 is below 0.5.3-rc.2. */
  const ota_describe_module_t *s1 = ota_describe_find(d, OTA_FN_SYSTEM, 1);
  const ota_describe_module_t *s2 = ota_describe_find(d, OTA_FN_SYSTEM, 2);
  uint16_t v1 = s1 ? s1->version : 0, v2 = s2 ? s2->version : 0;
  if (rel->nparts == 3 && cat->stepping_stone_min &&
      (v1 < cat->stepping_stone_min || v2 < cat->stepping_stone_min)) {
    snprintf(why, sizeof why,
             "refusing %s (%s) while s/1 v%u, s/2 v%u < %u (0.5.3 rule)",
             ota_modref_str(&pm->id, a, sizeof a), rel->name, v1, v2,
             cat->stepping_stone_min);
    return give_up(h, why, out);
  }

  if (fail_count(h, &pm->id) >= h->cfg.max_failures) {
    snprintf(why, sizeof why, "gave up: %s failed %d times before",
             ota_modref_str(&pm->id, a, sizeof a), fail_count(h, &pm->id));
    return give_up(h, why, out);
  }

  ota_heal_effect_t e;
  memset(&e, 0, sizeof e);
  e.kind = OTA_HEAL_FX_SEND_MODULE;
  e.module = pm->id;
  snprintf(e.release, sizeof e.release, "%s", rel->name);
  snprintf(e.file, sizeof e.file, "%s", pm->file);
  e.bytes = pm->bytes;
  if ((rc = push_fx(out, &e, NULL, 0)))
    return rc;
  snprintf(b, sizeof b, "%u", pm->id.index);
  if ((rc = emit_str(out, "spark/safe-mode-updater/updating", b)))
    return rc;
  h->sending = pm->id;
  h->n_sent++;
  h->deadline = UINT64_MAX;
  snprintf(why, sizeof why, "send %s of %s (%s), towards %s",
           ota_modref_str(&pm->id, a, sizeof a), rel->name, step->why,
           target->name);
  set_state(h, OTA_HEAL_SENDING, why);
  return 0;
}

/* ---- inputs -------------------------------------------------------------- */

int ota_healer_on_describe(ota_healer_t *h, const ota_describe_t *d,
                           uint64_t now_ms, ota_outbox_t *out) {
  (void)now_ms;
  if (!h || !d || !out)
    return OTA_EINVAL;
  bool safe = ota_describe_in_safe_mode(d);
  size_t nmissing = ota_describe_missing_deps(d, NULL, 0);
  int rc;
  h->last = *d;
  h->last.json = NULL;
  h->last.json_len = 0;
  h->have_last = true;
  if (safe && (rc = emit(out, "spark/status/safe-mode", d->json ? d->json : "",
                         d->json ? d->json_len : 0)))
    return rc;

  switch (h->state) {
  case OTA_HEAL_DISABLED:
  case OTA_HEAL_FAILED:
  case OTA_HEAL_SENDING: /* the OTA job reports first; keep the describe */
    return 0;
  case OTA_HEAL_IDLE:
  case OTA_HEAL_DONE:
    if (!safe)
      return 0;
    if (nmissing == 0) {
      OTA_LOGW("healer %s: safe mode without a missing dependency: "
               "nothing to heal",
               h->cfg.device);
      return 0;
    }
    if (h->state == OTA_HEAL_DONE) {
      h->nfails = 0; /* a new round */
    }
    h->n_rounds++;
    return heal_step(h, d, out);
  case OTA_HEAL_WAIT_DESCRIBE:
    if (nmissing == 0) {
      snprintf(h->reason, sizeof h->reason,
               "healed: %u module%s sent, system v%u", h->n_ok,
               h->n_ok == 1 ? "" : "s", ota_describe_system_version(d));
      h->deadline = UINT64_MAX;
      set_state(h, OTA_HEAL_DONE, "describe shows no missing dependency");
      return emit_str(out, "otalab/healer/done", h->reason);
    }
    return heal_step(h, d, out);
  default:
    return OTA_ESTATE;
  }
}

int ota_healer_on_ota_result(ota_healer_t *h, bool ok, const char *reason,
                             uint64_t now_ms, ota_outbox_t *out) {
  char a[24], why[320];
  if (!h || !out)
    return OTA_EINVAL;
  if (h->state != OTA_HEAL_SENDING) {
    OTA_LOGW("healer %s: OTA result in %s ignored", h->cfg.device,
             ota_heal_state_name(h->state));
    return OTA_ESTATE;
  }
  ota_modref_str(&h->sending, a, sizeof a);
  if (ok) {
    h->n_ok++;
    h->last_failed = false;
    h->deadline = UINT64_MAX;
    snprintf(why, sizeof why, "%s OTA ok, awaiting the reconnect", a);
    set_state(h, OTA_HEAL_WAIT_DESCRIBE, why);
    return 0;
  }
  h->n_failed++;
  h->last_failed = true;
  int n = count_failure(h, &h->sending);
  if (n >= h->cfg.max_failures) {
    snprintf(why, sizeof why, "gave up after %d failed OTA%s of %s%s%s%s", n,
             n == 1 ? "" : "s", a, reason ? " (last: " : "",
             reason ? reason : "", reason ? ")" : "");
    return give_up(h, why, out);
  }
  h->deadline = now_ms + h->cfg.retry_ms;
  snprintf(why, sizeof why, "%s OTA failed (%d of %d): %s", a, n,
           h->cfg.max_failures, reason ? reason : "no reason");
  set_state(h, OTA_HEAL_WAIT_DESCRIBE, why);
  return 0;
}

int ota_healer_on_timer(ota_healer_t *h, uint64_t now_ms, ota_outbox_t *out) {
  if (!h || !out)
    return OTA_EINVAL;
  if (h->state != OTA_HEAL_WAIT_DESCRIBE || now_ms < h->deadline ||
      !h->have_last)
    return 0;
  h->deadline = UINT64_MAX;
  OTA_LOGI("healer %s: no reconnect after the failed OTA: resend",
           h->cfg.device);
  if (ota_describe_missing_deps(&h->last, NULL, 0) == 0)
    return 0; /* cannot happen: healing started from missing deps */
  return heal_step(h, &h->last, out);
}

uint64_t ota_healer_next_deadline(const ota_healer_t *h) {
  return h && h->state == OTA_HEAL_WAIT_DESCRIBE ? h->deadline : UINT64_MAX;
}
