/* otalab-server OTA jobs: per-device queue of modules pushed by core's ota_tx
 * and confirmed by the Describe after the reboot (PROTOCOL.md 2.4-2.5, 3.1). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "otalab/ota_tx.h"
#include "otalab/outbox.h"
#include "srv.h"

typedef struct {
  unsigned id;
  uint8_t *mod; /* malloc'd copy, kept until the job ends (ota_tx views it) */
  size_t len;
  ota_modref_t ref;
  char name[64];
  srv_job_state_t state;
  uint32_t sent, total;
  unsigned hellos_at_done;
  uint64_t t_queued, t_start, t_sent, t_end, deadline;
  uint32_t chunks, resent, dones; /* ota_tx counters at the end of SENDING */
  char why[160];
} job_t;

struct srv_ota {
  ota_tx_t tx;
  job_t q[SRV_OTA_QUEUE]; /* q[0] is the current job */
  size_t n;
  job_t last; /* last finished job (mod freed) */
  int has_last;
};

static unsigned next_job = 1;
unsigned srv_ota_window, srv_ota_gap_ms;
static ota_outbox_t outbox; /* one shared outbox: drained after every call */

static const char *const state_names[] = {"QUEUED", "SENDING", "REBOOTING",
                                          "DONE", "FAILED"};

const char *srv_job_state_name(srv_job_state_t s) {
  return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s]
                                                                : "?";
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_state(srv_device_t *d, job_t *j, srv_job_state_t st,
                      const char *why) {
  OTA_LOGI("ota: %s job %u (%c/%u v%u) %s => %s (%s)", d->id, j->id,
           ota_fn_letter(j->ref.func), j->ref.index, j->ref.version,
           srv_job_state_name(j->state), srv_job_state_name(st), why);
  j->state = st;
}

static void start_next(srv_device_t *d);

/* Move q[0] to `last`, free its bytes, shift the queue, start the next. On
 * failure the rest of the queue is cancelled: the modules were meant to go
 * in order. */
static void end_job(srv_device_t *d, srv_job_state_t st, const char *why) {
  struct srv_ota *o = d->ota;
  job_t *j = &o->q[0];
  snprintf(j->why, sizeof j->why, "%s", why);
  j->t_end = now_ms();
  set_state(d, j, st, why);
  if (st == SRV_JOB_DONE)
    OTA_LOGI(
        "ota: %s job %u done: %c/%u now v%u, %u bytes in %llu ms "
        "(transfer %llu ms, %u chunks sent, %u resent)",
        d->id, j->id, ota_fn_letter(j->ref.func), j->ref.index, j->ref.version,
        j->total, (unsigned long long)(j->t_end - j->t_start),
        (unsigned long long)(j->t_sent - j->t_start), j->chunks, j->resent);
  ota_tx_free(&o->tx);
  free(j->mod);
  j->mod = NULL;
  o->last = *j;
  o->has_last = 1;
  memmove(&o->q[0], &o->q[1], (o->n - 1) * sizeof o->q[0]);
  o->n--;
  if (st == SRV_JOB_FAILED) {
    while (o->n) {
      job_t *k = &o->q[0];
      OTA_LOGW("ota: %s job %u cancelled: job %u failed", d->id, k->id,
               o->last.id);
      free(k->mod);
      memmove(&o->q[0], &o->q[1], (o->n - 1) * sizeof o->q[0]);
      o->n--;
    }
  }
  start_next(d);
}

/* Carry out the outbox: SENDs become libcoap PDUs, EVENTs update the job. */
static void drain(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  job_t *j = o->n ? &o->q[0] : NULL;
  for (size_t i = 0; i < outbox.n; i++) {
    const ota_fx_t *fx = &outbox.fx[i];
    if (fx->kind == OTA_FX_SEND) {
      ota_coap_msg_t m;
      if (ota_outbox_msg(&outbox, fx, &m) || !d->session ||
          srv_coap_send(d->session, &m))
        OTA_LOGW("ota: %s cannot send an OTA message", d->id);
    } else if (fx->kind == OTA_FX_EVENT && j) {
      ota_tx_report_t r;
      if (ota_tx_report_get(&outbox, fx, &r))
        continue;
      j->sent = r.sent;
      j->total = r.total;
    }
  }
  ota_outbox_clear(&outbox);
  if (!j || j->state != SRV_JOB_SENDING || !ota_tx_finished(&o->tx))
    return;
  const ota_tx_result_t *res = ota_tx_result(&o->tx);
  j->chunks = o->tx.n_chunks_sent;
  j->resent = o->tx.n_resent;
  j->dones = o->tx.n_done_sent;
  if (res->err) {
    char why[160];
    if (res->has_done && res->done.code)
      snprintf(why, sizeof why, "device refused the module: %s (%d, %s)",
               res->why, res->done.code, ota_strerror(res->err));
    else
      snprintf(why, sizeof why, "%s (%s)", res->why, ota_strerror(res->err));
    end_job(d, SRV_JOB_FAILED, why);
    return;
  }
  j->t_sent = now_ms();
  j->sent = j->total = (uint32_t)j->len;
  j->hellos_at_done = d->hellos;
  j->deadline = j->t_sent + SRV_OTA_REBOOT_TIMEOUT_MS;
  set_state(d, j, SRV_JOB_REBOOTING,
            res->device_done ? "device sent UpdateDone, rebooting"
                             : "UpdateDone 2.04, device rebooting");
}

static void start_next(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (!o || !o->n || o->q[0].state != SRV_JOB_QUEUED)
    return;
  if (!d->connected || !d->session || !d->described)
    return; /* starts at the next Describe */
  job_t *j = &o->q[0];
  ota_tx_cfg_t cfg;
  ota_tx_config_default(&cfg);
  /* Tokens 0x48/0xD5 are the greeting's; the counter wraps past them only in
   * long transfers, when no greeting is outstanding. */
  cfg.token_seed = (uint8_t)(1 + (j->id * 16) % 64);
  if (srv_ota_window)
    cfg.window = (uint16_t)srv_ota_window;
  if (srv_ota_gap_ms)
    cfg.window_gap_ms = srv_ota_gap_ms;
  ota_tx_init(&o->tx, &cfg);
  j->t_start = now_ms();
  j->sent = 0;
  j->total = (uint32_t)j->len;
  set_state(d, j, SRV_JOB_SENDING, "device connected and described");
  int err = ota_tx_start(&o->tx, j->mod, j->len, j->t_start, &outbox);
  if (err) {
    ota_outbox_clear(&outbox);
    char why[96];
    snprintf(why, sizeof why, "cannot start: %s", ota_strerror(err));
    end_job(d, SRV_JOB_FAILED, why);
    return;
  }
  drain(d);
}

int srv_ota_enqueue(srv_device_t *d, const uint8_t *mod, size_t len,
                    const char *name, unsigned *job) {
  ota_module_t m;
  int err = ota_module_parse(mod, len, &m);
  if (err)
    return err;
  if (!d->ota && !(d->ota = calloc(1, sizeof *d->ota)))
    return OTA_ENOMEM;
  struct srv_ota *o = d->ota;
  if (o->n == SRV_OTA_QUEUE)
    return OTA_EFULL;
  job_t *j = &o->q[o->n];
  memset(j, 0, sizeof *j);
  if (!(j->mod = malloc(len)))
    return OTA_ENOMEM;
  memcpy(j->mod, mod, len);
  j->len = len;
  j->ref.func = m.info.func;
  j->ref.index = m.info.index;
  j->ref.version = m.info.version;
  snprintf(j->name, sizeof j->name, "%s", name ? name : "");
  j->id = next_job++;
  j->state = SRV_JOB_QUEUED;
  j->total = (uint32_t)len;
  j->t_queued = now_ms();
  o->n++;
  *job = j->id;
  OTA_LOGI("ota: %s job %u queued: %s %c/%u v%u, %zu bytes (%zu in queue)",
           d->id, j->id, j->name, ota_fn_letter(j->ref.func), j->ref.index,
           j->ref.version, len, o->n);
  start_next(d);
  return 0;
}

void srv_ota_on_hello(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (o && o->n && o->q[0].state == SRV_JOB_REBOOTING)
    OTA_LOGI("ota: %s back after the reboot (Hello flags 0x%02x)", d->id,
             d->hello_flags);
}

/* The version of module (func, index) in the describe JSON text, -1 if it is
 * not listed. Describe "n" is a string ("1"), tolerate a number. */
static int describe_version(const char *text, uint8_t func, uint8_t index) {
  json_t *root = text ? json_loads(text, 0, NULL) : NULL;
  json_t *mods = json_object_get(root, "m");
  int v = -1;
  size_t i;
  json_t *e;
  json_array_foreach(mods, i, e) {
    const char *f = json_string_value(json_object_get(e, "f"));
    json_t *n = json_object_get(e, "n");
    long idx = json_is_string(n)    ? strtol(json_string_value(n), NULL, 10)
               : json_is_integer(n) ? (long)json_integer_value(n)
                                    : -1;
    if (f && f[0] == ota_fn_letter(func) && idx == index)
      v = (int)json_integer_value(json_object_get(e, "v"));
  }
  json_decref(root);
  return v;
}

void srv_ota_on_describe(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (!o || !o->n)
    return;
  job_t *j = &o->q[0];
  if (j->state == SRV_JOB_REBOOTING && d->hellos > j->hellos_at_done) {
    int v = describe_version(d->describe, j->ref.func, j->ref.index);
    char why[160];
    if (v == j->ref.version) {
      snprintf(why, sizeof why, "describe after the reboot shows %c/%u v%d",
               ota_fn_letter(j->ref.func), j->ref.index, v);
      end_job(d, SRV_JOB_DONE, why);
    } else {
      snprintf(why, sizeof why,
               "after the reboot the device reports %c/%u %s%d, not v%u",
               ota_fn_letter(j->ref.func), j->ref.index, v < 0 ? "" : "v", v,
               j->ref.version);
      if (v < 0)
        snprintf(why, sizeof why,
                 "after the reboot the device lists no %c/%u (wanted v%u)",
                 ota_fn_letter(j->ref.func), j->ref.index, j->ref.version);
      end_job(d, SRV_JOB_FAILED, why);
    }
    return;
  }
  start_next(d);
}

void srv_ota_on_disconnect(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (o && o->n && o->q[0].state == SRV_JOB_SENDING)
    end_job(d, SRV_JOB_FAILED, "device disconnected during the transfer");
}

int srv_ota_sending(const srv_device_t *d) {
  return d->ota && d->ota->n && d->ota->q[0].state == SRV_JOB_SENDING;
}

void srv_ota_on_coap(srv_device_t *d, const ota_coap_msg_t *m) {
  if (!srv_ota_sending(d))
    return;
  if (ota_tx_on_message(&d->ota->tx, m, now_ms(), &outbox))
    OTA_LOGE("ota: %s outbox full", d->id);
  drain(d);
}

unsigned srv_ota_timers(srv_devices_t *t) {
  uint64_t now = now_ms(), next = now + 1000;
  for (size_t i = 0; i < t->n; i++) {
    srv_device_t *d = &t->rows[i];
    struct srv_ota *o = d->ota;
    if (!o || !o->n)
      continue;
    job_t *j = &o->q[0];
    if (j->state == SRV_JOB_SENDING) {
      if (ota_tx_next_deadline(&o->tx) <= now) {
        ota_tx_on_timer(&o->tx, now, &outbox);
        drain(d);
      }
      if (o->n && o->q[0].state == SRV_JOB_SENDING) {
        uint64_t dl = ota_tx_next_deadline(&o->tx);
        if (dl < next)
          next = dl;
      }
    } else if (j->state == SRV_JOB_REBOOTING) {
      if (j->deadline <= now)
        end_job(d, SRV_JOB_FAILED,
                "device did not come back with the module after the reboot");
      else if (j->deadline < next)
        next = j->deadline;
    }
  }
  return next <= now ? 1 : (unsigned)(next - now);
}

static json_t *job_json(const job_t *j, const ota_tx_t *tx) {
  char f[2] = {ota_fn_letter(j->ref.func), 0}, n[8];
  snprintf(n, sizeof n, "%u", j->ref.index);
  json_t *o = json_pack("{s:i,s:s,s:{s:s,s:s,s:i},s:s,s:i,s:i}", "job",
                        (json_int_t)j->id, "file", j->name, "module", "f", f,
                        "n", n, "v", (json_int_t)j->ref.version, "state",
                        srv_job_state_name(j->state), "sent",
                        (json_int_t)j->sent, "total", (json_int_t)j->total);
  if (!o)
    return NULL;
  if (tx && j->state == SRV_JOB_SENDING)
    json_object_set_new(o, "transfer",
                        json_string(ota_tx_state_name(tx->state)));
  if (j->state == SRV_JOB_DONE || j->state == SRV_JOB_FAILED) {
    json_object_set_new(
        o, "result", json_string(j->state == SRV_JOB_DONE ? "ok" : "failed"));
    json_object_set_new(o, "why", json_string(j->why));
    if (j->t_sent)
      json_object_set_new(o, "transfer_ms",
                          json_integer((json_int_t)(j->t_sent - j->t_start)));
    json_object_set_new(o, "total_ms",
                        json_integer((json_int_t)(j->t_end - j->t_start)));
    json_object_set_new(o, "chunks_sent", json_integer(j->chunks));
    json_object_set_new(o, "chunks_resent", json_integer(j->resent));
  }
  return o;
}

void srv_ota_json(const srv_device_t *d, void *obj) {
  json_t *root = obj;
  const struct srv_ota *o = d->ota;
  json_t *cur = json_null(), *queued = json_array(), *last = json_null();
  if (o) {
    for (size_t i = 0; i < o->n; i++) {
      json_t *jj = job_json(&o->q[i], i == 0 ? &o->tx : NULL);
      if (i == 0 && o->q[0].state != SRV_JOB_QUEUED)
        cur = jj;
      else
        json_array_append_new(queued, jj);
    }
    if (o->has_last)
      last = job_json(&o->last, NULL);
  }
  json_object_set_new(root, "ota", cur);
  json_object_set_new(root, "ota_queue", queued);
  json_object_set_new(root, "last_ota", last);
}

void srv_ota_free(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (!o)
    return;
  for (size_t i = 0; i < o->n; i++)
    free(o->q[i].mod);
  ota_tx_free(&o->tx);
  free(o);
  d->ota = NULL;
}
