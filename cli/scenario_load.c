/* otalab scenario: reading and checking a scenario file (docs/SCENARIOS.md).
 * Typos are usage errors: unknown keys are refused rather than ignored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "otalab/vnet.h"
#include "scenario.h"

static const char *const top_keys[] = {
    "name",     "description", "timeout_s", "server", "apps",
    "products", "devices",     "actions",   "expect", "comment",
    "modes",    "time_scale",  NULL};
static const char *const dev_keys[] = {
    "id",   "device_id", "release", "product", "app", "count",
    "link", "expect",    "comment", "faults",  NULL};
static const char *const exp_keys[] = {
    "final_release",     "initial_release",  "safe_mode",     "running_app",
    "events_must",       "events_must_not",  "max_bytes",     "estimate_pct",
    "hard_fault",        "no_module_before", "ota_failed",    "max_jobs",
    "entered_safe_mode", "comment",          "restored_jobs", NULL};
static const char *const act_keys[] = {"at",      "do",      "device",  "files",
                                       "product", "version", "comment", NULL};
static const char *const actions[] = {
    "flash",       "release",      "kill server", "restart server",
    "kill device", "start device", NULL};

static int bad(const sc_run_t *run, const char *what) {
  fprintf(stderr, "otalab scenario: %s: %s\n", run->file, what);
  return CLI_EXIT_USAGE;
}

static int in_list(const char *k, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(k, *list))
      return 1;
  return 0;
}

/* Every key of o is in list; else prints which one is not. */
static int keys_ok(const sc_run_t *run, json_t *o, const char *const *list,
                   const char *where) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    (void)v;
    if (!in_list(k, list)) {
      char m[200];
      snprintf(m, sizeof m, "unknown key \"%s\" in %s", k, where);
      return bad(run, m);
    }
  }
  return 0;
}

/* An app reference: a name in "apps", or an inline {"requires","size"} /
 * {"file"}. */
static int app_ok(const sc_run_t *run, json_t *app) {
  if (json_is_string(app))
    return json_object_get(json_object_get(run->spec, "apps"),
                           json_string_value(app))
               ? 0
               : bad(run, "an app name not in \"apps\"");
  if (json_is_object(app) &&
      (json_is_string(json_object_get(app, "requires")) ||
       json_is_string(json_object_get(app, "file"))))
    return 0;
  return bad(run, "an app must be a name in \"apps\", {\"requires\":REL} or "
                  "{\"file\":PATH}");
}

/* The seed's device ids: deterministic per (seed, index), 24 hex digits. */
static void gen_hex(unsigned seed, int i, char out[25]) {
  uint64_t x =
      0x9E3779B97F4A7C15ull * (seed + 1) + (uint64_t)i * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  snprintf(out, 25, "5c%06x%016llx", (unsigned)i & 0xffffff,
           (unsigned long long)x);
}

static int load_devices(sc_run_t *run) {
  json_t *devs = json_object_get(run->spec, "devices");
  size_t i;
  json_t *d;
  if (!json_is_array(devs) || !json_array_size(devs))
    return bad(run, "\"devices\" must be a non-empty array");
  json_array_foreach(devs, i, d) {
    if (!json_is_object(d))
      return bad(run, "each device must be an object");
    int e = keys_ok(run, d, dev_keys, "a device");
    if (!e && json_object_get(d, "expect"))
      e = json_is_object(json_object_get(d, "expect"))
              ? keys_ok(run, json_object_get(d, "expect"), exp_keys,
                        "a device's \"expect\"")
              : bad(run, "\"expect\" must be an object");
    if (e)
      return e;
    const char *id = json_string_value(json_object_get(d, "id"));
    const char *hex = json_string_value(json_object_get(d, "device_id"));
    const char *rel = json_string_value(json_object_get(d, "release"));
    json_t *cnt = json_object_get(d, "count");
    long long count = cnt ? json_integer_value(cnt) : 1;
    if (!id || !*id || strlen(id) > 40)
      return bad(run, "each device needs an \"id\" (a name, <= 40 chars)");
    if (count < 1 || run->ndev + count > SC_MAX_DEVICES)
      return bad(run, "\"count\" must be 1.. (at most 64 devices in all)");
    if (hex && (strlen(hex) != 24 || count != 1 ||
                strspn(hex, "0123456789abcdef") != 24))
      return bad(run, "\"device_id\" must be 24 lower-case hex digits "
                      "(and count 1)");
    json_t *app = json_object_get(d, "app");
    if (app && (e = app_ok(run, app)))
      return e;
    json_t *faults = json_object_get(d, "faults"), *fj;
    size_t fi;
    if (faults && !json_is_array(faults))
      return bad(run, "\"faults\" must be a list of otalab-device --fault "
                      "specs");
    json_array_foreach(faults, fi, fj) {
      ota_vfault_t f;
      if (ota_vsim_fault_parse(json_string_value(fj), &f))
        return bad(run, "a fault must be drop-link-at-chunk:K[:MS], "
                        "reset-during-ota:K, power-loss-during-apply or "
                        "corrupt-chunk:K");
    }
    json_t *prod = json_object_get(d, "product");
    if (prod && (!json_is_integer(prod) || json_integer_value(prod) < 0))
      return bad(run, "\"product\" must be a product id (a number)");
    for (long long k = 0; k < count; k++) {
      sc_dev_t *x = &run->dev[run->ndev];
      if (count == 1)
        snprintf(x->name, sizeof x->name, "%s", id);
      else
        snprintf(x->name, sizeof x->name, "%s-%lld", id, k + 1);
      snprintf(x->group, sizeof x->group, "%s", id);
      for (int j = 0; j < run->ndev; j++)
        if (!strcmp(run->dev[j].name, x->name))
          return bad(run, "two devices with the same id");
      if (hex)
        snprintf(x->hex, sizeof x->hex, "%s", hex);
      else
        gen_hex(run->seed, run->ndev, x->hex);
      snprintf(x->release, sizeof x->release, "%s", rel ? rel : "0.6.1");
      x->product = prod ? (uint32_t)json_integer_value(prod) : 0;
      x->expect = json_object_get(d, "expect");
      x->pid = -1;
      x->dev_fd = x->srv_fd = -1;
      x->t_done = -1;
      x->estimate = -1;
      x->srv_bytes = x->srv_up = x->srv_down = -1;
      x->act_t = x->poll_t = -1;
      run->ndev++;
    }
  }
  return 0;
}

static int load_actions(sc_run_t *run) {
  json_t *acts = json_object_get(run->spec, "actions");
  size_t i;
  json_t *a;
  if (!acts)
    return 0;
  if (!json_is_array(acts))
    return bad(run, "\"actions\" must be an array");
  json_array_foreach(acts, i, a) {
    int e = json_is_object(a) ? keys_ok(run, a, act_keys, "an action")
                              : bad(run, "each action must be an object");
    if (e)
      return e;
    const char *d = json_string_value(json_object_get(a, "do"));
    json_t *at = json_object_get(a, "at");
    const char *dev = json_string_value(json_object_get(a, "device"));
    if (!d || !in_list(d, actions))
      return bad(run, "an action's \"do\" must be flash, release, kill server, "
                      "restart server, kill device or start device");
    unsigned pct;
    if (at && !json_is_number(at) &&
        !(json_is_string(at) &&
          (in_list(json_string_value(at),
                   (const char *const[]){"start", "connected", "safe_mode",
                                         "idle", NULL}) ||
           !sc_at_progress(json_string_value(at), &pct))))
      return bad(run, "\"at\" must be seconds, \"start\", \"connected\", "
                      "\"safe_mode\", \"idle\" or \"ota_progress:P\" (P "
                      "1..100)");
    int need_dev =
        !strcmp(d, "flash") || !strcmp(d, "kill device") ||
        !strcmp(d, "start device") ||
        (json_is_string(at) && strcmp(json_string_value(at), "start"));
    int found = 0;
    for (int k = 0; dev && k < run->ndev; k++)
      found |= !strcmp(run->dev[k].name, dev);
    if (need_dev && !found)
      return bad(run, "an action needs \"device\": the id of a device");
    if (!strcmp(d, "flash")) {
      json_t *files = json_object_get(a, "files");
      if (!json_is_array(files) || !json_array_size(files))
        return bad(run, "\"flash\" needs \"files\": [names]");
    }
    if (!strcmp(d, "release") &&
        (!json_is_integer(json_object_get(a, "product")) ||
         !json_is_integer(json_object_get(a, "version"))))
      return bad(run, "\"release\" needs \"product\" and \"version\"");
  }
  return 0;
}

static int load_products(sc_run_t *run) {
  json_t *ps = json_object_get(run->spec, "products");
  size_t i, j;
  json_t *p, *fw;
  if (!ps)
    return 0;
  if (!json_is_array(ps))
    return bad(run, "\"products\" must be an array");
  json_array_foreach(ps, i, p) {
    if (!json_is_integer(json_object_get(p, "id")) ||
        json_integer_value(json_object_get(p, "id")) <= 0)
      return bad(run, "each product needs a numeric \"id\"");
    json_t *fws = json_object_get(p, "firmware");
    json_array_foreach(fws, j, fw) {
      int e;
      if (!json_is_integer(json_object_get(fw, "version")))
        return bad(run, "each product firmware needs a \"version\"");
      if ((e = app_ok(run, json_object_get(fw, "app"))))
        return e;
    }
  }
  return 0;
}

int sc_load(sc_run_t *run) {
  json_error_t je;
  run->spec = json_load_file(run->file, JSON_REJECT_DUPLICATES, &je);
  if (!run->spec) {
    char m[300];
    snprintf(m, sizeof m, "line %d: %s", je.line, je.text);
    return bad(run, m);
  }
  if (!json_is_object(run->spec))
    return bad(run, "not a JSON object");
  int e = keys_ok(run, run->spec, top_keys, "the scenario");
  if (e)
    return e;
  const char *name = json_string_value(json_object_get(run->spec, "name"));
  if (!name) {
    const char *b = strrchr(run->file, '/');
    name = b ? b + 1 : run->file;
  }
  snprintf(run->name, sizeof run->name, "%s", name);
  json_t *to = json_object_get(run->spec, "timeout_s");
  run->timeout_s = json_is_number(to) ? json_number_value(to) : 180;
  json_t *ex = json_object_get(run->spec, "expect");
  if (ex && keys_ok(run, ex, (const char *const[]){"within_s", "comment", NULL},
                    "the top-level \"expect\""))
    return CLI_EXIT_USAGE;
  json_t *w = json_object_get(ex, "within_s");
  run->within_s = json_is_number(w) ? json_number_value(w) : -1;
  json_t *ts = json_object_get(run->spec, "time_scale");
  run->time_scale = ts ? json_number_value(ts) : 1;
  if (ts && (!json_is_number(ts) || !(run->time_scale > 0) ||
             run->time_scale > 10000))
    return bad(run, "\"time_scale\" must be a number > 0 (otalab-device "
                    "--time-scale)");
  json_t *modes = json_object_get(run->spec, "modes"), *m;
  size_t mi;
  if (modes && (!json_is_array(modes) || !json_array_size(modes)))
    return bad(run, "\"modes\" must be a non-empty list of \"real\", "
                    "\"virtual\"");
  json_array_foreach(modes, mi, m) {
    const char *ms = json_string_value(m);
    if (!ms || (strcmp(ms, "real") && strcmp(ms, "virtual")))
      return bad(run, "\"modes\" must list \"real\" and/or \"virtual\"");
  }
  json_t *srv = json_object_get(run->spec, "server");
  if (srv &&
      (!json_is_object(srv) || (json_object_get(srv, "args") &&
                                !json_is_array(json_object_get(srv, "args")))))
    return bad(run, "\"server\" must be {\"args\": [...]}");
  if ((e = load_devices(run)) || (e = load_products(run)) ||
      (e = load_actions(run)))
    return e;
  return 0;
}

int sc_at_progress(const char *at, unsigned *pct) {
  char end;
  if (!at || sscanf(at, "ota_progress:%u%c", pct, &end) != 1 || *pct < 1 ||
      *pct > 100)
    return -1;
  return 0;
}

int sc_mode_ok(const sc_run_t *run, const char *mode) {
  json_t *modes = json_object_get(run->spec, "modes"), *m;
  size_t i;
  if (!modes)
    return 1;
  json_array_foreach(modes, i, m) {
    if (!strcmp(json_string_value(m), mode))
      return 1;
  }
  return 0;
}

void sc_free(sc_run_t *run) {
  for (int i = 0; i < run->ndev; i++) {
    json_decref(run->dev[i].first_describe);
    run->dev[i].first_describe = NULL;
  }
  json_decref(run->spec);
  run->spec = NULL;
}
