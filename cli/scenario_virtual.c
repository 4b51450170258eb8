/* otalab scenario run --virtual: the same scenario file run in-process through
 * the virtual-time simulation (core/vsim, otalab/vnet.h; docs/SCENARIOS.md).
 * Fills the run's devices, jobs and events the way scenario_run.c does from
 * real processes, so scenario_check.c decides and reports them unchanged:
 * the server's REST view is read from each device's cloud session, the
 * relay's byte counts from vsim's link counters, the event stream from its
 * hooks. Time is virtual: POLL_MS steps of simulated time, no sleeping. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "otalab/catalog.h"
#include "otalab/describe.h"
#include "otalab/err.h"
#include "otalab/module.h"
#include "otalab/planner.h"
#include "otalab/vnet.h"
#include "scenario.h"
#include "scenario_common.h"

#define POLL_MS 200 /* as scenario_run.c: the REST poll period */
#define SETTLE_MS 2000
#define DEFAULT_LINK "ideal" /* real mode runs on loopback */

typedef struct {
  sc_run_t *run;
  ota_catalog_t cat;
  ota_vsim_t *vs;
  uint64_t now; /* virtual ms */
  bool off[SC_MAX_DEVICES];
  char desc[SC_MAX_DEVICES][2048]; /* the describe text last looked at */
} vrun_t;

static double vnow(const vrun_t *v) {
  return (double)v->now / 1000.0;
}

static void say(const vrun_t *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const vrun_t *v, const char *fmt, ...) {
  if (v->run->quiet || v->run->json)
    return;
  va_list ap;
  va_start(ap, fmt);
  sc_progress_clear(v->run);
  printf("[%6.1fs] ", vnow(v));
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
}

int sc_virtual_supported(const sc_run_t *run, char *why, size_t cap) {
  size_t i;
  json_t *a;
  json_array_foreach(json_object_get(run->spec, "actions"), i, a) {
    const char *d = json_string_value(json_object_get(a, "do"));
    if (d && (!strcmp(d, "kill server") || !strcmp(d, "restart server"))) {
      snprintf(why, cap,
               "action %zu \"%s\": virtual mode has no server process to "
               "kill or restart (run without --virtual)",
               i + 1, d);
      return 0;
    }
  }
  json_t *args = json_object_get(json_object_get(run->spec, "server"), "args");
  if (json_array_size(args)) {
    snprintf(why, cap,
             "\"server\": {\"args\"}: server options are not applied in "
             "virtual mode (run without --virtual)");
    return 0;
  }
  return 1;
}

/* ---- modules ---- */

/* An app reference (name in "apps" or inline), built as otalab mkapp would
 * for scenario_run.c's app_file(): malloc'd into *buf. */
static int app_bytes(vrun_t *v, json_t *ref, uint32_t product, unsigned version,
                     uint8_t **buf, size_t *len) {
  sc_run_t *run = v->run;
  json_t *spec = ref;
  if (json_is_string(ref))
    spec = json_object_get(json_object_get(run->spec, "apps"),
                           json_string_value(ref));
  const char *file = json_string_value(json_object_get(spec, "file"));
  if (file) {
    char path[700];
    sc_app_path(run, file, path, sizeof path);
    return cli_read_file(path, buf, len)
               ? sc_setup_fail(run, "app file %s: cannot read", path)
               : 0;
  }
  const char *req = json_string_value(json_object_get(spec, "requires"));
  const char *size = json_string_value(json_object_get(spec, "size"));
  json_t *uv = json_object_get(spec, "version");
  const ota_cat_release_t *rel = req ? ota_catalog_find(&v->cat, req) : NULL;
  long sz = cli_parse_size(size ? size : "8K");
  if (!rel)
    return sc_setup_fail(run, "app: unknown release '%s'", req ? req : "?");
  if (sz < (long)OTA_MODULE_MIN_SIZE || sz > 1024 * 1024)
    return sc_setup_fail(run, "app: bad size '%s'", size);
  ota_module_spec_t ms;
  ota_module_spec_init(
      &ms, OTA_FN_USER, 1,
      (uint16_t)(json_is_integer(uv) ? json_integer_value(uv) : 6));
  ms.size = (uint32_t)sz;
  ms.deps[0] = (ota_modref_t){OTA_FN_SYSTEM, 2, rel->system_version};
  ms.product_id = (uint16_t)(product ? product : 10);
  ms.product_version = (uint16_t)(product ? version : OTA_MODULE_PRODUCT_NONE);
  if (!(*buf = malloc((size_t)sz)))
    return sc_setup_fail(run, "out of memory");
  if (ota_module_build(&ms, *buf, (size_t)sz, len)) {
    free(*buf);
    *buf = NULL;
    return sc_setup_fail(run, "app: cannot build (requires %s)", req);
  }
  return 0;
}

/* A module file name of "flash": app:NAME, a fixture name (built from the
 * catalogue, as otalab mkfixtures names them), or a path / fixtures file. */
static int flash_bytes(vrun_t *v, const char *s, uint8_t **buf, size_t *len,
                       int *owned) {
  *owned = 1;
  if (!strncmp(s, "app:", 4)) {
    json_t *ref = json_string(s + 4);
    int rc = app_bytes(v, ref, 0, 0, buf, len);
    json_decref(ref);
    return rc;
  }
  for (size_t r = 0; s[0] != '/' && r < v->cat.nreleases; r++) {
    const ota_cat_release_t *rel = &v->cat.releases[r];
    for (int k = 0; k < rel->nmodules; k++) {
      const ota_cat_module_t *m = &rel->modules[k];
      char name[96];
      if (m->id.func == OTA_FN_BOOTLOADER)
        snprintf(name, sizeof name, "electron-bootloader-%s.bin", rel->name);
      else
        snprintf(name, sizeof name, "%s-%s-electron.bin", m->file, rel->name);
      if (strcmp(name, s))
        continue;
      const uint8_t *p;
      *owned = 0;
      if (ota_vsim_module(v->vs, m->id.func, m->id.index, m->id.version, &p,
                          len))
        return sc_setup_fail(v->run, "flash: cannot build %s", s);
      *buf = (uint8_t *)p;
      return 0;
    }
  }
  char path[700];
  if (s[0] == '/')
    snprintf(path, sizeof path, "%s", s);
  else
    snprintf(path, sizeof path, "%s/%s",
             v->run->fixtures ? v->run->fixtures : ".", s);
  return cli_read_file(path, buf, len)
             ? sc_setup_fail(v->run,
                             "flash: %s is neither a catalogue module "
                             "nor a readable file",
                             s)
             : 0;
}

/* ---- what the server would show ---- */

static sc_job_t *job_of(sc_dev_t *d, unsigned id) {
  for (int i = 0; i < d->njobs; i++)
    if (d->jobs[i].id == (int)id)
      return &d->jobs[i];
  if (d->njobs >= SC_MAX_JOBS)
    return NULL;
  sc_job_t *x = &d->jobs[d->njobs++];
  memset(x, 0, sizeof *x);
  x->id = (int)id;
  return x;
}

static void job_fill(sc_job_t *x, const ota_csess_job_t *j) {
  x->f = ota_fn_letter(j->ref.func);
  x->n = j->ref.index;
  x->v = j->ref.version;
  snprintf(x->file, sizeof x->file, "%s", j->name);
  x->total = (unsigned)j->len;
}

static void on_job(void *ud, size_t i, uint64_t t, const ota_csess_job_t *j) {
  vrun_t *v = ud;
  sc_dev_t *d = &v->run->dev[i];
  sc_job_t *x = job_of(d, j->id);
  if (!x)
    return;
  job_fill(x, j);
  int cancelled = !strncmp(j->why, "cancelled", 9);
  snprintf(x->state, sizeof x->state, "%s",
           cancelled ? "CANCELLED" : ota_job_state_name(j->state));
  snprintf(x->result, sizeof x->result, "%s",
           cancelled                  ? ""
           : j->state == OTA_JOB_DONE ? "ok"
                                      : "failed");
  snprintf(x->why, sizeof x->why, "%s", j->why);
  x->total_ms = cancelled ? 0 : (long)(t - j->t_start);
  say(v, "%s: OTA job %d %c/%u v%u %s %s: %s", d->name, x->id, x->f, x->n, x->v,
      x->file, x->state, x->why);
}

/* 1 when some device's events_must / events_must_not names `name`. */
static int expected_name(const sc_run_t *run, const char *name) {
  static const char *const keys[] = {"events_must", "events_must_not"};
  for (int i = 0; i < run->ndev; i++) {
    if (i && run->dev[i].expect == run->dev[i - 1].expect)
      continue; /* a group shares its expectations */
    for (int k = 0; k < 2; k++) {
      size_t j;
      json_t *e;
      json_array_foreach(json_object_get(run->dev[i].expect, keys[k]), j, e) {
        const char *n = json_is_string(e)
                            ? json_string_value(e)
                            : json_string_value(json_object_get(e, "name"));
        if (n && !strcmp(n, name))
          return 1;
      }
    }
  }
  return 0;
}

static void record(vrun_t *v, size_t i, const char *name, const char *data,
                   size_t len) {
  sc_run_t *run = v->run;
  char text[sizeof run->ev[0].data];
  snprintf(text, sizeof text, "%.*s", (int)len, data ? data : "");
  /* progress events would crowd out the rest of a long run; a fleet keeps
   * only what the expectations ask about (and the device's own words), and
   * one copy of each (device, name, data) */
  if (run->nev >= SC_MAX_EVENTS ||
      (!strcmp(name, "otalab/ota/progress") && run->nev >= SC_MAX_EVENTS / 2))
    return;
  if (run->ndev > 8 && strncmp(name, "device/", 7)) {
    if (!expected_name(run, name))
      return;
    for (int k = 0; k < run->nev; k++)
      if (run->ev[k].dev == (int)i && !strcmp(run->ev[k].name, name) &&
          !strcmp(run->ev[k].data, text))
        return;
  }
  sc_event_t *e = &run->ev[run->nev++];
  snprintf(e->name, sizeof e->name, "%s", name);
  snprintf(e->data, sizeof e->data, "%s", text);
  e->t = vnow(v);
  e->from_device = !strncmp(name, "device/", 7);
  e->dev = (int)i;
  if (strcmp(name, "otalab/ota/progress"))
    say(v, "%s: event %s \"%.60s\"", run->dev[i].name, e->name, e->data);
}

static void on_event(void *ud, size_t i, uint64_t t, const char *name,
                     const char *data, size_t len) {
  vrun_t *v = ud;
  (void)t;
  if (!strcmp(name, "device/hard-fault")) { /* as otalab-device's words */
    sc_dev_t *d = &v->run->dev[i];
    snprintf(d->hardfault, sizeof d->hardfault, "%.*s", (int)len, data);
    char line[240];
    snprintf(line, sizeof line, "HARD FAULT LOOP: %s", d->hardfault);
    record(v, i, "device/ota-refused", line, strlen(line));
    return;
  }
  record(v, i, name, data, len);
}

/* One "GET /v1/devices/:id": the cloud session's view of device i. */
static void poll_device(vrun_t *v, size_t i) {
  sc_dev_t *d = &v->run->dev[i];
  const ota_csess_t *cs = ota_vsim_cloud(v->vs, i);
  const ota_dsess_t *ds = ota_vsim_dsess(v->vs, i);
  const ota_vsim_stats_t *st = ota_vsim_stats(v->vs, i);
  d->poll_t = vnow(v);
  d->up = d->down = 0;
  for (int k = 0; k < OTA_VB_COUNT; k++)
    d->up += st->up[k], d->down += st->down[k];
  int was = d->connected;
  d->connected =
      ds->state == OTA_DSESS_ONLINE &&
      (cs->state == OTA_CSESS_GREETED || cs->state == OTA_CSESS_DESCRIBED);
  if (was != d->connected)
    say(v, "%s: %s", d->name, d->connected ? "connected" : "disconnected");
  d->exited = v->off[i] || ds->state == OTA_DSESS_DEAD;
  if (cs->describe_json[0] && strcmp(cs->describe_json, v->desc[i])) {
    snprintf(v->desc[i], sizeof v->desc[i], "%s", cs->describe_json);
    json_t *desc = json_loads(cs->describe_json, 0, NULL);
    static ota_describe_t dp;
    if (desc && !ota_describe_parse(cs->describe_json,
                                    strlen(cs->describe_json), &dp)) {
      char sfv[32], msg[256];
      sc_sys_version(&v->cat, desc, sfv, sizeof sfv);
      if (sc_describe_seen(d, desc, &dp, sfv, msg, sizeof msg))
        sc_estimate(&v->cat, d, &dp);
      if (msg[0])
        say(v, "%s", msg);
    }
    json_decref(desc);
  }
  for (size_t k = 0; k < cs->n; k++) { /* queued and running jobs */
    sc_job_t *x = job_of(d, cs->q[k].id);
    if (!x)
      continue;
    const char *sn = ota_job_state_name(cs->q[k].state);
    int is_new = !x->state[0];
    job_fill(x, &cs->q[k]);
    if (strcmp(x->state, sn)) {
      snprintf(x->state, sizeof x->state, "%s", sn);
      say(v, "%s: OTA job %d %c/%u v%u %s %s%s", d->name, x->id, x->f, x->n,
          x->v, x->file, sn, is_new ? " (new)" : "");
    }
  }
}

static int dev_busy(const vrun_t *v, size_t i) {
  return ota_csess_busy(ota_vsim_cloud(v->vs, i));
}

/* ---- actions ---- */

static int dev_index(const sc_run_t *run, const char *name) {
  for (int i = 0; name && i < run->ndev; i++)
    if (!strcmp(run->dev[i].name, name))
      return i;
  return -1;
}

static int action_ready(vrun_t *v, json_t *a) {
  json_t *at = json_object_get(a, "at");
  int i = dev_index(v->run, json_string_value(json_object_get(a, "device")));
  if (!at)
    return 1;
  if (json_is_number(at))
    return vnow(v) >= json_number_value(at);
  const char *s = json_string_value(at);
  if (!strcmp(s, "start") || i < 0)
    return 1;
  unsigned pct;
  if (!sc_at_progress(s, &pct)) { /* the current job, >= pct % sent */
    const ota_csess_t *cs = ota_vsim_cloud(v->vs, (size_t)i);
    const ota_csess_job_t *j = cs->n ? &cs->q[0] : NULL;
    return j && j->state == OTA_JOB_SENDING && j->total &&
           (uint64_t)j->sent * 100 >= (uint64_t)pct * j->total &&
           (pct == 100 || j->sent < j->total);
  }
  const sc_dev_t *d = &v->run->dev[i];
  if (d->act_t >= 0 && d->poll_t <= d->act_t)
    return 0; /* one action after another: a sample after the previous one */
  int up = d->connected && d->described && !dev_busy(v, (size_t)i);
  if (!strcmp(s, "safe_mode"))
    return up && d->safe_mode;
  return up; /* connected, idle */
}

static void do_flash(vrun_t *v, int i, json_t *files) {
  size_t k;
  json_t *f;
  json_array_foreach(files, k, f) {
    const char *s = json_string_value(f);
    uint8_t *buf = NULL;
    size_t len = 0;
    int owned = 0;
    if (!s)
      continue;
    if (flash_bytes(v, s, &buf, &len, &owned)) {
      say(v, "flash: %s", v->run->fail_setup);
      continue;
    }
    int rc = ota_vsim_flash(v->vs, (size_t)i, buf, len, s);
    say(v, "%s: PUT %s -> %s", v->run->dev[i].name, s,
        rc ? ota_strerror(rc) : "queued");
    if (owned)
      free(buf);
  }
}

static int do_release(vrun_t *v, uint32_t product, unsigned version) {
  size_t i, j;
  json_t *p, *fw;
  json_array_foreach(json_object_get(v->run->spec, "products"), i, p) {
    if (json_integer_value(json_object_get(p, "id")) != product)
      continue;
    json_array_foreach(json_object_get(p, "firmware"), j, fw) {
      if (json_integer_value(json_object_get(fw, "version")) != version)
        continue;
      uint8_t *buf;
      size_t len;
      if (app_bytes(v, json_object_get(fw, "app"), product, version, &buf,
                    &len))
        return -1;
      int rc = ota_vsim_release(v->vs, product, buf, len, version);
      free(buf);
      say(v, "product %u: firmware v%u released%s", product, version,
          rc ? " (failed)" : "");
      return rc;
    }
  }
  say(v, "product %u: no firmware v%u to release", product, version);
  return -1;
}

static void do_action(vrun_t *v, json_t *a) {
  const char *what = json_string_value(json_object_get(a, "do"));
  int i = dev_index(v->run, json_string_value(json_object_get(a, "device")));
  if (!strcmp(what, "flash") && i >= 0)
    do_flash(v, i, json_object_get(a, "files"));
  else if (!strcmp(what, "release"))
    do_release(v, (uint32_t)json_integer_value(json_object_get(a, "product")),
               (unsigned)json_integer_value(json_object_get(a, "version")));
  else if (!strcmp(what, "kill device") && i >= 0) {
    ota_vsim_power(v->vs, (size_t)i, false);
    v->off[i] = true;
    say(v, "%s: powered off", v->run->dev[i].name);
  } else if (!strcmp(what, "start device") && i >= 0) {
    ota_vsim_power(v->vs, (size_t)i, true);
    v->off[i] = false;
    v->run->dev[i].starts++;
    say(v, "%s: powered on", v->run->dev[i].name);
  }
  if (i >= 0)
    v->run->dev[i].act_t = vnow(v);
}

/* ---- the run ---- */

static int hexbytes(const char *hex, uint8_t out[12]) {
  for (int k = 0; k < 12; k++) {
    unsigned b;
    if (sscanf(hex + 2 * k, "%2x", &b) != 1)
      return -1;
    out[k] = (uint8_t)b;
  }
  return 0;
}

static int add_devices(vrun_t *v) {
  sc_run_t *run = v->run;
  for (int i = 0; i < run->ndev; i++) {
    sc_dev_t *d = &run->dev[i];
    json_t *spec = NULL, *e;
    size_t k;
    json_array_foreach(json_object_get(run->spec, "devices"), k, e) {
      if (!strcmp(json_string_value(json_object_get(e, "id")), d->group))
        spec = e;
    }
    ota_vsim_dev_spec_t sp = {.product_id = d->product};
    snprintf(sp.name, sizeof sp.name, "%s", d->name);
    snprintf(sp.release, sizeof sp.release, "%s", d->release);
    sp.has_id = hexbytes(d->hex, sp.id) == 0;
    const char *link = json_string_value(json_object_get(spec, "link"));
    char err[160];
    if (ota_link_parse(link ? link : DEFAULT_LINK, &v->cat, &sp.link, err,
                       sizeof err))
      return sc_setup_fail(run, "%s: link \"%s\": %s", d->name,
                           link ? link : DEFAULT_LINK, err);
    uint8_t *app = NULL;
    json_t *ref = json_object_get(spec, "app");
    if (ref && app_bytes(v, ref, 0, 0, &app, &sp.app_len))
      return 1;
    sp.app = app;
    if (ref)
      snprintf(d->app, sizeof d->app, "%s",
               json_is_string(ref) ? json_string_value(ref) : "inline");
    int rc = ota_vsim_add(v->vs, &sp);
    free(app);
    if (rc != i)
      return sc_setup_fail(run, "%s: cannot provision %s: %s", d->name,
                           d->release, ota_strerror(rc < 0 ? rc : OTA_EINVAL));
    d->starts = 1;
    json_t *fj;
    json_array_foreach(json_object_get(spec, "faults"), k, fj) {
      ota_vfault_t f;
      if (ota_vsim_fault_parse(json_string_value(fj), &f) ||
          ota_vsim_fault(v->vs, (size_t)i, &f))
        return sc_setup_fail(run, "%s: fault \"%s\": cannot arm", d->name,
                             json_string_value(fj));
      say(v, "%s: fault armed: %s", d->name, json_string_value(fj));
    }
    say(v, "%s: %s device %s on %s%s%s, link %s", d->name,
        d->product ? "product" : "developer", d->hex, d->release,
        d->app[0] ? " + app " : "", d->app, link ? link : DEFAULT_LINK);
  }
  return 0;
}

int sc_run_virtual(sc_run_t *run) {
  static vrun_t v; /* large */
  memset(&v, 0, sizeof v);
  v.run = run;
  run->t_all_done = -1;
  run->sse_fd = -1;
  run->sse_ok = 1; /* the events come from the simulation's hooks */
  char err[256];
  ota_catalog_init(&v.cat);
  if (ota_catalog_load_file(&v.cat, cli_default_catalog(), err, sizeof err)) {
    sc_setup_fail(run, "catalogue %s: %s", cli_default_catalog(), err);
    ota_catalog_free(&v.cat);
    return 1;
  }
  ota_vsim_cfg_t cfg;
  ota_vsim_cfg_default(&cfg);
  cfg.seed = run->seed;
  v.vs = ota_vsim_new(&v.cat, &cfg);
  if (!v.vs) {
    ota_catalog_free(&v.cat);
    return sc_setup_fail(run, "out of memory");
  }
  ota_vsim_set_hooks(v.vs, on_event, on_job, &v);
  say(&v,
      "virtual time: in-process simulation (core/vsim), seed %u, reboot "
      "%u ms",
      run->seed, cfg.reboot_ms);
  int rc = add_devices(&v);
  json_t *acts = json_object_get(run->spec, "actions");
  size_t nact = json_array_size(acts);
  uint64_t ok_since = UINT64_MAX, limit = (uint64_t)(run->timeout_s * 1000);
  while (!rc) {
    ota_vsim_advance(v.vs, v.now);
    int all_ok = 1, busy = 0, alive = 0;
    for (int i = 0; i < run->ndev; i++) {
      sc_dev_t *d = &run->dev[i];
      poll_device(&v, (size_t)i);
      busy |= dev_busy(&v, (size_t)i) && !d->exited;
      alive |= !d->exited;
      all_ok &= sc_dev_track(run, d, vnow(&v));
    }
    while (run->next_action < nact &&
           action_ready(&v, json_array_get(acts, run->next_action)))
      do_action(&v, json_array_get(acts, run->next_action++));
    if (((all_ok && !busy) || !alive) && run->next_action == nact) {
      if (ok_since == UINT64_MAX)
        ok_since = v.now;
      if (v.now - ok_since >= SETTLE_MS) {
        run->t_all_done = (double)ok_since / 1000.0;
        break;
      }
    } else
      ok_since = UINT64_MAX;
    sc_progress(run, vnow(&v), 1);
    if (v.now >= limit) {
      say(&v, "timeout after %.0f s (virtual)", run->timeout_s);
      break;
    }
    v.now += POLL_MS;
  }
  sc_progress_end(run);
  run->t_end = vnow(&v);
  if (!rc)
    say(&v, "simulated %.1f s in %llu events", run->t_end,
        (unsigned long long)ota_vsim_events(v.vs));
  ota_vsim_destroy(v.vs);
  ota_catalog_free(&v.cat);
  return rc;
}
