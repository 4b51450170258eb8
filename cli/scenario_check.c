/* otalab scenario: deciding a scenario's expectations (docs/SCENARIOS.md) and
 * the report: per device the steps taken, data used against the planner. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "scenario.h"

typedef struct {
  char what[48];
  int ok;
  char detail[240];
} sc_item_t;

#define SC_MAX_ITEMS 32

static int rel_match(const char *have, const char *want) {
  size_t n = strlen(want);
  return !strcmp(have, want) || (!strncmp(have, want, n) && have[n] == '-');
}

static uint64_t bytes_of(const sc_dev_t *d) {
  return d->up + d->down;
}

/* An event spec: "name" or {"name":..,"data":"substring"}. */
static int event_seen(const sc_run_t *run, const sc_dev_t *d, json_t *spec,
                      char *label, size_t cap) {
  const char *name = json_is_string(spec)
                         ? json_string_value(spec)
                         : json_string_value(json_object_get(spec, "name"));
  const char *data = json_string_value(json_object_get(spec, "data"));
  snprintf(label, cap, "%s%s%s%s", name ? name : "?", data ? " \"" : "",
           data ? data : "", data ? "\"" : "");
  int idx = (int)(d - run->dev);
  for (int i = 0; name && i < run->nev; i++)
    if (run->ev[i].dev == idx && !strcmp(run->ev[i].name, name) &&
        (!data || strstr(run->ev[i].data, data)))
      return 1;
  return 0;
}

/* A job counts as sent once it left the queue other than by cancellation. */
static int job_sent(const sc_job_t *j) {
  return j->result[0] || !strcmp(j->state, "SENDING") ||
         !strcmp(j->state, "REBOOTING");
}

/* "no module >= v100 while s/1 < 19", on the job history (in job order)
 * from the device's first describe; 1 holds, 0 broken (why in detail), -1
 * bad rule. */
static int no_module_before(const sc_dev_t *d, const char *rule, char *detail,
                            size_t cap) {
  unsigned minv, idx, below;
  char f;
  if (sscanf(rule, "no module >= v%u while %c/%u < %u", &minv, &f, &idx,
             &below) != 4) {
    snprintf(detail, cap,
             "rule not understood (want \"no module >= vN "
             "while s/I < M\")");
    return -1;
  }
  long cur = -1;
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(d->first_describe, "m"), i, m) {
    const char *ff = json_string_value(json_object_get(m, "f"));
    json_t *nn = json_object_get(m, "n");
    const char *ls = json_string_value(json_object_get(m, "l"));
    unsigned n = json_is_string(nn) ? (unsigned)atoi(json_string_value(nn))
                                    : (unsigned)json_integer_value(nn);
    if (ff && ff[0] == f && n == idx && (!ls || ls[0] == 'm'))
      cur = (long)json_integer_value(json_object_get(m, "v"));
  }
  if (cur < 0) {
    snprintf(detail, cap, "%c/%u not in the first describe", f, idx);
    return d->first_describe ? 0 : 0;
  }
  int order[SC_MAX_JOBS], n = 0;
  for (int k = 0; k < d->njobs; k++) { /* job ids ascend in time */
    int p = n++;
    while (p > 0 && d->jobs[order[p - 1]].id > d->jobs[k].id) {
      order[p] = order[p - 1];
      p--;
    }
    order[p] = k;
  }
  for (int k = 0; k < n; k++) {
    const sc_job_t *j = &d->jobs[order[k]];
    if (!job_sent(j))
      continue;
    if (j->v >= minv && cur < (long)below) {
      snprintf(detail, cap, "job %d sent %c/%u v%u while %c/%u was v%ld", j->id,
               j->f, j->n, j->v, f, idx, cur);
      return 0;
    }
    if (!strcmp(j->result, "ok") && j->f == f && j->n == idx)
      cur = j->v;
  }
  snprintf(detail, cap, "%d job(s) checked", n);
  return 1;
}

static int eval(const sc_run_t *run, const sc_dev_t *d, sc_item_t *it) {
  int n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(d->expect, k, v) {
    if (!strcmp(k, "comment") || n >= SC_MAX_ITEMS)
      continue;
    sc_item_t *x = &it[n++];
    snprintf(x->what, sizeof x->what, "%s", k);
    x->ok = 0;
    if (!strcmp(k, "final_release") || !strcmp(k, "initial_release")) {
      const char *have = k[0] == 'f' ? d->sfv : d->first_sfv;
      x->ok = d->described && rel_match(have, json_string_value(v));
      snprintf(x->detail, sizeof x->detail, "want %s, system firmware %s",
               json_string_value(v),
               d->described ? (*have ? have : "mixed") : "never described");
    } else if (!strcmp(k, "safe_mode")) {
      x->ok = d->described && d->safe_mode == json_is_true(v);
      snprintf(x->detail, sizeof x->detail, "want %s, %s",
               json_is_true(v) ? "safe mode" : "not in safe mode",
               !d->described  ? "never described"
               : d->safe_mode ? "in safe mode"
                              : "not in safe mode");
    } else if (!strcmp(k, "entered_safe_mode")) {
      x->ok = d->ever_safe == json_is_true(v);
      snprintf(x->detail, sizeof x->detail, "want %s, %s",
               json_is_true(v) ? "safe mode seen" : "safe mode never seen",
               d->ever_safe ? "it was seen" : "never seen");
    } else if (!strcmp(k, "running_app")) {
      x->ok = d->described && d->app_ok == json_is_true(v);
      snprintf(x->detail, sizeof x->detail, "want %s, %s",
               json_is_true(v) ? "app running" : "no app running",
               d->app_ok ? "app running" : "no app running");
    } else if (!strcmp(k, "hard_fault")) {
      x->ok = (d->hardfault[0] != 0) == json_is_true(v);
      snprintf(x->detail, sizeof x->detail, "want %s, %s",
               json_is_true(v) ? "a hard-fault loop" : "no hard fault",
               d->hardfault[0] ? d->hardfault : "none");
    } else if (!strcmp(k, "ota_failed")) {
      int failed = 0;
      for (int j = 0; j < d->njobs; j++)
        failed |= !strcmp(d->jobs[j].result, "failed");
      x->ok = failed == json_is_true(v);
      snprintf(x->detail, sizeof x->detail, "want %s, %s",
               json_is_true(v) ? "a failed OTA job" : "no failed OTA job",
               failed ? "one failed" : "none failed");
    } else if (!strcmp(k, "max_jobs")) {
      x->ok = d->njobs <= json_integer_value(v);
      snprintf(x->detail, sizeof x->detail, "%d OTA job(s), at most %lld",
               d->njobs, (long long)json_integer_value(v));
    } else if (!strcmp(k, "max_bytes")) {
      x->ok = bytes_of(d) <= (uint64_t)json_integer_value(v);
      snprintf(x->detail, sizeof x->detail, "%llu B, at most %lld B",
               (unsigned long long)bytes_of(d),
               (long long)json_integer_value(v));
    } else if (!strcmp(k, "estimate_pct")) {
      double pct = json_number_value(v);
      if (d->estimate <= 0) {
        snprintf(x->detail, sizeof x->detail, "no estimate (%s)", d->est_note);
      } else {
        double dev = 100.0 * ((double)bytes_of(d) - (double)d->estimate) /
                     (double)d->estimate;
        x->ok = dev <= pct && dev >= -pct;
        snprintf(x->detail, sizeof x->detail,
                 "%llu B used, planner %lld B: %+.1f%% (within +-%g%%)",
                 (unsigned long long)bytes_of(d), d->estimate, dev, pct);
      }
    } else if (!strcmp(k, "events_must") || !strcmp(k, "events_must_not")) {
      int must = !strcmp(k, "events_must");
      size_t i;
      json_t *e;
      x->ok = 1;
      snprintf(x->detail, sizeof x->detail, "%s",
               must ? "all seen" : "none seen");
      json_array_foreach(v, i, e) {
        char label[160];
        int seen = event_seen(run, d, e, label, sizeof label);
        if (seen != must) {
          x->ok = 0;
          snprintf(x->detail, sizeof x->detail, "%s %s", label,
                   must ? "never seen" : "seen");
          break;
        }
      }
    } else if (!strcmp(k, "restored_jobs")) {
      /* jobs in flight when the server was killed, restored from DATA/jobs
       * by the restarted server, and ended ok */
      int got = 0, killed = 0;
      size_t l = 0;
      x->detail[0] = 0;
      for (int j = 0; j < d->njobs; j++) {
        const sc_job_t *jb = &d->jobs[j];
        if (!jb->killed)
          continue;
        killed++;
        int good = jb->restored && !strcmp(jb->result, "ok");
        got += good;
        if (l < sizeof x->detail)
          l += (size_t)snprintf(x->detail + l, sizeof x->detail - l,
                                "%sjob %d %c/%u v%u: killed at %u %%, %s, %s",
                                l ? "; " : "", jb->id, jb->f, jb->n, jb->v,
                                jb->killed_pct,
                                jb->restored ? "restored" : "not restored",
                                jb->result[0] ? jb->result : jb->state);
      }
      x->ok = got >= json_integer_value(v);
      if (!killed)
        snprintf(x->detail, sizeof x->detail,
                 "no job was in flight when the server was killed");
    } else if (!strcmp(k, "no_module_before")) {
      size_t i;
      json_t *r;
      x->ok = 1;
      if (json_is_string(v))
        x->ok = no_module_before(d, json_string_value(v), x->detail,
                                 sizeof x->detail) == 1;
      else
        json_array_foreach(v, i, r) {
          if (x->ok)
            x->ok = no_module_before(
                        d, json_string_value(r) ? json_string_value(r) : "",
                        x->detail, sizeof x->detail) == 1;
        }
    } else
      snprintf(x->detail, sizeof x->detail, "unknown expectation");
  }
  return n;
}

int sc_dev_ok(const sc_run_t *run, const sc_dev_t *d) {
  sc_item_t it[SC_MAX_ITEMS];
  int n = eval(run, d, it);
  for (int i = 0; i < n; i++)
    if (!it[i].ok)
      return 0;
  return 1;
}

/* The device's own "HARD FAULT LOOP" line was among its words already. */
static int said_hardfault(const sc_run_t *run, int dev) {
  for (int k = 0; k < run->nev; k++)
    if (run->ev[k].dev == dev && strstr(run->ev[k].data, "HARD FAULT LOOP"))
      return 1;
  return 0;
}

/* Real mode with a time_scale counts simulated seconds (wall * K). */
static const char *sim_label(const sc_run_t *run) {
  return run->time_scale != 1 && !run->virt ? " simulated" : "";
}

static const char *outcome(const sc_dev_t *d) {
  if (d->hardfault[0])
    return "hard-fault loop";
  if (!d->described)
    return "never described";
  if (d->safe_mode)
    return "safe mode";
  return d->app_ok ? "app running" : "running (no app)";
}

static json_t *dev_json(const sc_run_t *run, const sc_dev_t *d,
                        const sc_item_t *it, int n, int ok) {
  json_t *jobs = json_array(), *items = json_array();
  for (int i = 0; i < d->njobs; i++) {
    const sc_job_t *j = &d->jobs[i];
    char mod[32];
    snprintf(mod, sizeof mod, "%c/%u v%u", j->f, j->n, j->v);
    json_array_append_new(
        jobs, json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "job", j->id,
                        "module", mod, "file", j->file, "state", j->state,
                        "result", j->result, "why", j->why, "bytes",
                        (json_int_t)j->total, "ms", (json_int_t)j->total_ms));
  }
  for (int i = 0; i < n; i++)
    json_array_append_new(items,
                          json_pack("{s:s,s:b,s:s}", "expect", it[i].what, "ok",
                                    it[i].ok, "detail", it[i].detail));
  json_t *o = json_pack(
      "{s:s,s:s,s:I,s:s,s:s,s:s,s:b,s:b,s:I,s:I,s:I,s:o,s:o,s:b}", "device",
      d->name, "id", d->hex, "product", (json_int_t)d->product, "from",
      d->first_sfv, "system_firmware_version", d->sfv, "outcome", outcome(d),
      "safe_mode", d->safe_mode, "app_running", d->app_ok, "bytes",
      (json_int_t)bytes_of(d), "bytes_up", (json_int_t)d->up, "bytes_down",
      (json_int_t)d->down, "jobs", jobs, "expectations", items, "ok", ok);
  json_object_set_new(o, "estimate",
                      d->estimate >= 0 ? json_integer(d->estimate)
                                       : json_null());
  json_object_set_new(o, "estimate_note", json_string(d->est_note));
  json_object_set_new(o, "server_bytes",
                      d->srv_bytes >= 0 ? json_integer(d->srv_bytes)
                                        : json_null());
  json_object_set_new(o, "time_s",
                      d->t_done >= 0 ? json_real(d->t_done) : json_null());
  if (d->hardfault[0])
    json_object_set_new(o, "hard_fault", json_string(d->hardfault));
  (void)run;
  return o;
}

int sc_report(sc_run_t *run) {
  int all = 1, npass = 0, njobs = 0;
  uint64_t bytes = 0;
  long long est = 0;
  int est_all = 1;
  long long srv = 0;
  int srv_all = 1;
  json_t *devs = json_array();
  for (int i = 0; i < run->ndev; i++) {
    sc_dev_t *d = &run->dev[i];
    sc_item_t it[SC_MAX_ITEMS];
    int n = eval(run, d, it), ok = 1;
    for (int k = 0; k < n; k++)
      ok &= it[k].ok;
    int in_time =
        run->within_s < 0 || (d->t_done >= 0 && d->t_done <= run->within_s);
    ok &= in_time;
    all &= ok;
    npass += ok;
    njobs += d->njobs;
    bytes += bytes_of(d);
    if (d->srv_bytes >= 0)
      srv += d->srv_bytes;
    else
      srv_all = 0;
    if (d->estimate >= 0)
      est += d->estimate;
    else
      est_all = 0;
    if (run->json) {
      json_array_append_new(devs, dev_json(run, d, it, n, ok));
      continue;
    }
    if (run->quiet) {
      printf("%s %s: %s, %s, %llu B, %d OTA job(s)\n", ok ? "PASS" : "FAIL",
             d->name, outcome(d), d->sfv[0] ? d->sfv : "?",
             (unsigned long long)bytes_of(d), d->njobs);
      continue;
    }
    printf("\n%s  %s (%s device %s)\n", ok ? "PASS" : "FAIL", d->name,
           d->product ? "product" : "developer", d->hex);
    printf("  system firmware %s -> %s; %s",
           d->first_sfv[0] ? d->first_sfv
           : d->described  ? "(mixed)"
                           : "?",
           d->sfv[0]      ? d->sfv
           : d->described ? "(mixed)"
                          : "?",
           outcome(d));
    if (d->t_done >= 0)
      printf("; done at %.1f s%s", d->t_done, sim_label(run));
    printf("\n  steps taken:%s\n", d->njobs ? "" : " no OTA job");
    for (int k = 0; k < d->njobs; k++) {
      const sc_job_t *j = &d->jobs[k];
      printf("    %2d. %c/%u v%-4u %-36s %7u B  %-9s %s%s", k + 1, j->f, j->n,
             j->v, j->file, j->total, j->result[0] ? j->result : j->state,
             j->total_ms ? "" : "", "");
      if (j->total_ms)
        printf(" %.1f s", (double)j->total_ms / 1000.0);
      if (!strcmp(j->result, "failed"))
        printf("  (%s)", j->why);
      printf("\n");
    }
    for (int k = 0; k < run->nev; k++)
      if (run->ev[k].dev == i && !strncmp(run->ev[k].name, "device/", 7))
        printf("    device says: %s\n", run->ev[k].data);
    if (d->hardfault[0] && !said_hardfault(run, i))
      printf("    device: HARD FAULT LOOP: %s\n", d->hardfault);
    printf("  data used: %llu B (up %llu, down %llu) on the link",
           (unsigned long long)bytes_of(d), (unsigned long long)d->up,
           (unsigned long long)d->down);
    if (d->srv_bytes >= 0)
      printf("; server data_usage %lld B (up %lld, down %lld)%s", d->srv_bytes,
             d->srv_up, d->srv_down,
             run->server_starts > 1 ? " since its restart" : "");
    if (d->estimate > 0)
      printf("\n  planner estimate: %lld B (%s); used %+.1f%%\n", d->estimate,
             d->est_note,
             100.0 * ((double)bytes_of(d) - (double)d->estimate) /
                 (double)d->estimate);
    else
      printf("\n  planner estimate: none (%s)\n", d->est_note);
    for (int k = 0; k < n; k++)
      printf("  %s %-17s %s\n", it[k].ok ? "ok  " : "FAIL", it[k].what,
             it[k].detail);
    if (run->within_s >= 0)
      printf("  %s %-17s %s\n", in_time ? "ok  " : "FAIL", "within_s",
             d->t_done >= 0 ? "done in time" : "never done");
  }
  int in_time = run->within_s < 0 ||
                (run->t_all_done >= 0 && run->t_all_done <= run->within_s);
  all &= in_time;
  if (run->fail_setup[0] || run->sanitizer[0])
    all = 0;
  if (run->json) {
    json_t *o = json_pack(
        "{s:s,s:s,s:o,s:{s:i,s:i,s:i,s:I,s:f},s:b,s:I,s:s}", "scenario",
        run->name, "result", all ? "pass" : "fail", "devices", devs, "totals",
        "devices", run->ndev, "passed", npass, "jobs", njobs, "bytes",
        (json_int_t)bytes, "seconds", run->t_end, "event_stream", run->sse_ok,
        "seed", (json_int_t)run->seed, "dir", run->dir);
    json_object_set_new(json_object_get(o, "totals"), "estimate",
                        est_all ? json_integer(est) : json_null());
    json_object_set_new(json_object_get(o, "totals"), "server_bytes",
                        srv_all ? json_integer(srv) : json_null());
    if (run->fail_setup[0])
      json_object_set_new(o, "setup_error", json_string(run->fail_setup));
    if (run->sanitizer[0])
      json_object_set_new(o, "sanitizer", json_string(run->sanitizer));
    json_object_set_new(json_object_get(o, "totals"), "time_scale",
                        json_real(run->virt ? 1 : run->time_scale));
    char *s = json_dumps(o, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
    json_decref(o);
  } else {
    json_decref(devs);
    if (run->fail_setup[0])
      printf("\nFAIL  setup: %s\n", run->fail_setup);
    if (run->sanitizer[0])
      printf("\nFAIL  sanitizer report in %s\n", run->sanitizer);
    printf("\n%s  %s: %d device(s), %d passed, %d failed; %d OTA job(s); "
           "%llu B used",
           all ? "PASS" : "FAIL", run->name, run->ndev, npass,
           run->ndev - npass, njobs, (unsigned long long)bytes);
    if (srv_all && run->ndev)
      printf(" (server: %lld B)", srv);
    if (est_all && est)
      printf(" vs %lld B planned", est);
    if (run->t_all_done >= 0)
      printf("; all done at %.1f s%s", run->t_all_done, sim_label(run));
    else
      printf("; not all done after %.1f s%s", run->t_end, sim_label(run));
    if (*sim_label(run))
      printf(" (time scale %g: %.1f s wall)", run->time_scale,
             (run->t_all_done >= 0 ? run->t_all_done : run->t_end) /
                 run->time_scale);
    if (run->within_s >= 0)
      printf(" (within %.0f s: %s)", run->within_s, in_time ? "ok" : "FAIL");
    printf("\n");
  }
  fflush(stdout);
  return all ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
