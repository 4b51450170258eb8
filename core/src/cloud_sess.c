/* One device's session in the cloud (sans-IO), ported from server/srv_coap.c,
 * srv_ota.c and srv_cloud.c: PROTOCOL.md 2.2-2.5, 3, 7, 9. */
#include "otalab/cloud_sess.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "otalab/msg.h"

const char *ota_csess_state_name(ota_csess_state_t s) {
  static const char *names[] = {
#define OTA_CSESS_NAME(s, n) n,
      OTA_CSESS_STATES(OTA_CSESS_NAME)
#undef OTA_CSESS_NAME
  };
  return (unsigned)s < OTA_CSESS_STATE_COUNT ? names[s] : "?";
}

const char *ota_job_state_name(ota_job_state_t s) {
  static const char *n[] = {"QUEUED", "SENDING", "REBOOTING", "DONE", "FAILED"};
  return (unsigned)s < 5 ? n[s] : "?";
}

const char *ota_origin_name(ota_origin_t o) {
  return o == OTA_ORIGIN_HEALER    ? "healer"
         : o == OTA_ORIGIN_PRODUCT ? "product"
                                   : "user";
}

void ota_csess_cfg_default(ota_csess_cfg_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->send_acks = true;
  cfg->reboot_timeout_ms = OTA_CSESS_REBOOT_TIMEOUT_MS;
  cfg->ota_ping_timeout_ms = -1;
}

static void set_state(ota_csess_t *s, ota_csess_state_t st, const char *why) {
  if (s->state != st)
    OTA_LOGD("csess %s: %s => %s (%s)", s->cfg.name,
             ota_csess_state_name(s->state), ota_csess_state_name(st), why);
  s->state = st;
}

void ota_csess_init(ota_csess_t *s, const ota_csess_cfg_t *cfg,
                    ota_outbox_t *scratch, ota_outbox_t *scratch2) {
  memset(s, 0, sizeof *s);
  if (cfg)
    s->cfg = *cfg;
  else
    ota_csess_cfg_default(&s->cfg);
  s->scratch = scratch;
  s->scratch2 = scratch2;
  s->next_job = 1;
  ota_healer_cfg_t hc;
  ota_healer_config_default(&hc);
  hc.product = s->cfg.product_id != 0;
  snprintf(hc.device, sizeof hc.device, "%s", s->cfg.name);
  ota_healer_init(&s->h, &hc, s->cfg.cat);
  ota_tx_init(&s->tx, NULL);
}

void ota_csess_free(ota_csess_t *s) {
  ota_tx_free(&s->tx);
  ota_healer_free(&s->h);
  s->n = 0;
}

int ota_csess_effect_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                         ota_csess_effect_t *e) {
  memset(e, 0, sizeof *e);
  if (fx->kind != OTA_FX_EVENT)
    return OTA_EINVAL;
  e->kind = fx->arg;
  const char *b = (const char *)ota_outbox_bytes(ob, fx);
  if (fx->arg == OTA_CSESS_FX_PUBLISH) {
    size_t nl = b ? strnlen(b, fx->len) : 0;
    if (!b || nl == fx->len)
      return OTA_EINVAL;
    e->name = b;
    e->data = b + nl + 1;
    e->data_len = fx->len - nl - 1;
    return 0;
  }
  if (fx->arg == OTA_CSESS_FX_JOB && fx->len == sizeof e->job) {
    memcpy(&e->job, b, sizeof e->job);
    return 0;
  }
  return fx->arg == OTA_CSESS_FX_CLOSE ? 0 : OTA_EINVAL;
}

/* ---- effects ------------------------------------------------------------ */

static void emit(ota_csess_t *s, ota_outbox_t *out, const char *name,
                 const char *data, size_t dlen) {
  char buf[OTA_HEAL_MAX_DATA + 80];
  size_t nl = strlen(name);
  if (nl + 1 + dlen > sizeof buf)
    dlen = sizeof buf - nl - 1;
  memcpy(buf, name, nl + 1);
  if (dlen)
    memcpy(buf + nl + 1, data, dlen);
  ota_fx_t fx = {.kind = OTA_FX_EVENT, .arg = OTA_CSESS_FX_PUBLISH};
  if (ota_outbox_push(out, &fx, buf, nl + 1 + dlen))
    OTA_LOGW("csess %s: outbox full, event %s lost", s->cfg.name, name);
}

static void emits(ota_csess_t *s, ota_outbox_t *out, const char *name,
                  const char *data) {
  emit(s, out, name, data, strlen(data));
}

static void send_msg(ota_csess_t *s, ota_outbox_t *out, const ota_coap_msg_t *m,
                     int32_t first_bytes, int resend) {
  uint8_t buf[1600];
  size_t len = 0;
  if (ota_coap_encode(m, buf, sizeof buf, &len)) {
    OTA_LOGW("csess %s: cannot encode a message", s->cfg.name);
    return;
  }
  ota_fx_t fx = {.kind = OTA_FX_SEND,
                 .mid = m->mid,
                 .arg = first_bytes,
                 .addr = (uint32_t)resend};
  if (ota_outbox_push(out, &fx, buf, len))
    OTA_LOGW("csess %s: outbox full, message dropped", s->cfg.name);
}

static void ack(ota_csess_t *s, ota_outbox_t *out, const ota_coap_msg_t *req) {
  if (!s->cfg.send_acks || req->type != OTA_COAP_CON)
    return;
  ota_coap_msg_t a;
  ota_msg_build_empty(&a, OTA_COAP_ACK, req->mid);
  send_msg(s, out, &a, 0, 0);
}

/* ---- jobs (srv_ota.c) --------------------------------------------------- */

static void job_set_state(ota_csess_t *s, ota_csess_job_t *j,
                          ota_job_state_t st, const char *why, uint64_t now,
                          ota_outbox_t *out) {
  OTA_LOGD("csess %s: job %u (%c/%u v%u) %s => %s (%s)", s->cfg.name, j->id,
           ota_fn_letter(j->ref.func), j->ref.index, j->ref.version,
           ota_job_state_name(j->state), ota_job_state_name(st), why);
  j->state = st;
  if (st == OTA_JOB_SENDING) {
    if (!j->restarts) /* a restart's bytes are resends */
      j->payload_sent = 0;
    j->prog_sent = 0;
    j->prog_t = now;
    emits(s, out, "spark/flash/status", "started");
  }
}

static void progress(ota_csess_t *s, ota_csess_job_t *j, uint64_t now,
                     ota_outbox_t *out) {
  uint32_t step = j->total / 10 ? j->total / 10 : 1;
  if (j->sent != j->total && j->sent < j->prog_sent + step &&
      now < j->prog_t + 1000)
    return;
  if (j->sent == j->prog_sent)
    return;
  char data[128];
  snprintf(data, sizeof data,
           "{\"module\":\"%c/%u v%u\",\"sent\":%u,\"total\":%u}",
           ota_fn_letter(j->ref.func), j->ref.index, j->ref.version, j->sent,
           j->total);
  j->prog_sent = j->sent;
  j->prog_t = now;
  emits(s, out, "otalab/ota/progress", data);
}

static void start_next(ota_csess_t *s, uint64_t now, ota_outbox_t *out);
static void heal_drain(ota_csess_t *s, uint64_t now, ota_outbox_t *out);

static void job_end_cloud(ota_csess_t *s, const ota_csess_job_t *j, bool ok,
                          const char *why, uint64_t now, ota_outbox_t *out) {
  char data[300];
  if (ok)
    snprintf(data, sizeof data, "success");
  else
    snprintf(data, sizeof data, "failed %s", why ? why : "");
  emits(s, out, "spark/flash/status", data);
  if (s->h.state == OTA_HEAL_SENDING && s->h.sending.func == j->ref.func &&
      s->h.sending.index == j->ref.index &&
      s->h.sending.version == j->ref.version) {
    ota_healer_on_ota_result(&s->h, ok, ok ? NULL : why, now, s->scratch2);
    heal_drain(s, now, out);
  }
}

static void end_job(ota_csess_t *s, ota_job_state_t st, const char *why,
                    uint64_t now, ota_outbox_t *out) {
  ota_csess_job_t *j = &s->q[0];
  snprintf(j->why, sizeof j->why, "%s", why);
  j->t_end = now;
  job_set_state(s, j, st, why, now, out);
  ota_tx_free(&s->tx);
  s->last = *j;
  s->has_last = true;
  ota_fx_t fx = {.kind = OTA_FX_EVENT, .arg = OTA_CSESS_FX_JOB};
  ota_outbox_push(out, &fx, j, sizeof *j);
  memmove(&s->q[0], &s->q[1], (s->n - 1) * sizeof s->q[0]);
  s->n--;
  if (st == OTA_JOB_DONE)
    s->n_jobs_ok++;
  else
    s->n_jobs_failed++;
  if (st == OTA_JOB_FAILED) {
    while (s->n) {
      ota_csess_job_t *k = &s->q[0];
      snprintf(k->why, sizeof k->why, "cancelled: job %u failed", s->last.id);
      k->state = OTA_JOB_FAILED;
      k->t_end = now;
      ota_outbox_push(out, &fx, k, sizeof *k);
      memmove(&s->q[0], &s->q[1], (s->n - 1) * sizeof s->q[0]);
      s->n--;
    }
  }
  ota_csess_job_t fin = s->last;
  job_end_cloud(s, &fin, st == OTA_JOB_DONE, why, now, out);
  start_next(s, now, out);
}

/* Carry out ota_tx's effects (srv_ota.c drain). */
static void drain(ota_csess_t *s, uint64_t now, ota_outbox_t *out) {
  ota_outbox_t *ob = s->scratch;
  ota_csess_job_t *j = s->n ? &s->q[0] : NULL;
  for (size_t i = 0; i < ob->n; i++) {
    const ota_fx_t *fx = &ob->fx[i];
    if (fx->kind == OTA_FX_SEND) {
      ota_coap_msg_t m;
      if (ota_outbox_msg(ob, fx, &m))
        continue;
      int32_t first = 0;
      int resend = 0;
      if (j && m.payload_len &&
          ota_msg_classify(&m, OTA_DIR_TO_DEVICE) == OTA_MSG_CHUNK) {
        if (j->payload_sent < j->len) {
          uint64_t left = j->len - j->payload_sent;
          first = (int32_t)(m.payload_len < left ? m.payload_len : left);
        } else
          resend = 1;
        j->payload_sent += m.payload_len;
      }
      send_msg(s, out, &m, first, resend);
    } else if (fx->kind == OTA_FX_EVENT && j) {
      ota_tx_report_t r;
      if (ota_tx_report_get(ob, fx, &r))
        continue;
      j->sent = r.sent;
      j->total = r.total;
      progress(s, j, now, out);
    }
  }
  ota_outbox_clear(ob);
  if (!j || j->state != OTA_JOB_SENDING || !ota_tx_finished(&s->tx))
    return;
  const ota_tx_result_t *res = ota_tx_result(&s->tx);
  j->chunks = s->tx.n_chunks_sent;
  j->resent = s->tx.n_resent;
  if (res->err) {
    char why[160];
    if (res->has_done && res->done.code)
      snprintf(why, sizeof why, "device refused the module: %s (%d, %s)",
               res->why, res->done.code, ota_strerror(res->err));
    else
      snprintf(why, sizeof why, "%s (%s)", res->why, ota_strerror(res->err));
    end_job(s, OTA_JOB_FAILED, why, now, out);
    return;
  }
  j->t_sent = now;
  j->sent = j->total = (uint32_t)j->len;
  progress(s, j, now, out);
  j->hellos_at_done = s->hellos;
  j->deadline = now + s->cfg.reboot_timeout_ms;
  job_set_state(s, j, OTA_JOB_REBOOTING,
                res->device_done ? "device sent UpdateDone, rebooting"
                                 : "UpdateDone 2.04, device rebooting",
                now, out);
}

static void start_next(ota_csess_t *s, uint64_t now, ota_outbox_t *out) {
  if (!s->n || s->q[0].state != OTA_JOB_QUEUED ||
      s->state != OTA_CSESS_DESCRIBED)
    return;
  ota_csess_job_t *j = &s->q[0];
  ota_tx_cfg_t cfg;
  ota_tx_config_default(&cfg);
  cfg.token_seed = (uint8_t)(1 + (j->id * 16) % 64);
  if (s->cfg.ota_window)
    cfg.window = s->cfg.ota_window;
  if (s->cfg.ota_ping_timeout_ms >= 0)
    cfg.ping_timeout_ms = (uint32_t)s->cfg.ota_ping_timeout_ms;
  ota_tx_init(&s->tx, &cfg);
  j->t_start = now;
  j->sent = 0;
  j->total = (uint32_t)j->len;
  job_set_state(s, j, OTA_JOB_SENDING, "device connected and described", now,
                out);
  int err = ota_tx_start(&s->tx, j->mod, j->len, now, s->scratch);
  if (err) {
    ota_outbox_clear(s->scratch);
    char why[96];
    snprintf(why, sizeof why, "cannot start: %s", ota_strerror(err));
    end_job(s, OTA_JOB_FAILED, why, now, out);
    return;
  }
  drain(s, now, out);
}

int ota_csess_enqueue(ota_csess_t *s, const uint8_t *mod, size_t len,
                      const char *name, ota_origin_t origin, uint64_t now_ms,
                      ota_outbox_t *out, unsigned *job) {
  ota_module_t m;
  int err = ota_module_parse_header(mod, len, &m);
  if (err)
    return err;
  if (s->n == OTA_CSESS_QUEUE)
    return OTA_EFULL;
  ota_csess_job_t *j = &s->q[s->n];
  memset(j, 0, sizeof *j);
  j->mod = mod;
  j->len = len;
  j->ref.func = m.info.func;
  j->ref.index = m.info.index;
  j->ref.version = m.info.version;
  snprintf(j->name, sizeof j->name, "%s", name ? name : "");
  j->id = s->next_job++;
  j->origin = origin;
  j->state = OTA_JOB_QUEUED;
  j->total = (uint32_t)len;
  j->t_queued = now_ms;
  s->n++;
  if (job)
    *job = j->id;
  start_next(s, now_ms, out);
  return 0;
}

static unsigned find_job(const ota_csess_t *s, const ota_modref_t *ref) {
  for (size_t i = 0; i < s->n; i++)
    if (s->q[i].ref.func == ref->func && s->q[i].ref.index == ref->index &&
        s->q[i].ref.version == ref->version)
      return s->q[i].id;
  return 0;
}

bool ota_csess_busy(const ota_csess_t *s) {
  return s->n != 0;
}

/* ---- healer (srv_cloud.c) ------------------------------------------------ */

static void heal_send(ota_csess_t *s, const ota_heal_effect_t *e, uint64_t now,
                      ota_outbox_t *out, char *why, size_t cap) {
  why[0] = 0;
  if (find_job(s, &e->module))
    return; /* adopts the job already queued */
  const uint8_t *mod = NULL;
  size_t len = 0;
  ota_module_t m;
  int err =
      s->cfg.load ? s->cfg.load(s->cfg.load_ud, e, &mod, &len) : OTA_ENOENT;
  if (err)
    snprintf(why, cap, "cannot read %s: %s", e->file, ota_strerror(err));
  else if ((err = ota_module_parse_header(mod, len, &m)) != 0)
    snprintf(why, cap, "%s: %s", e->file, ota_strerror(err));
  else if (m.info.func != e->module.func || m.info.index != e->module.index ||
           m.info.version != e->module.version)
    snprintf(why, cap, "%s is not the module wanted", e->file);
  else if ((err = ota_csess_enqueue(s, mod, len, e->file, OTA_ORIGIN_HEALER,
                                    now, out, NULL)) != 0)
    snprintf(why, cap, "cannot queue %s: %s", e->file, ota_strerror(err));
}

static void heal_drain(ota_csess_t *s, uint64_t now, ota_outbox_t *out) {
  ota_outbox_t *hob = s->scratch2;
  /* Effects are copied first: sending a module may re-enter the healer. */
  for (int round = 0; round < 8 && hob->n; round++) {
    char why[256] = "";
    static ota_heal_effect_t fx[OTA_OUTBOX_MAX_FX];
    static char data[OTA_OUTBOX_MAX_FX][OTA_HEAL_MAX_DATA];
    size_t n = 0;
    for (size_t i = 0; i < hob->n && n < OTA_OUTBOX_MAX_FX; i++) {
      if (ota_healer_effect_get(hob, &hob->fx[i], &fx[n]))
        continue;
      size_t dl = fx[n].data_len < OTA_HEAL_MAX_DATA ? fx[n].data_len
                                                     : OTA_HEAL_MAX_DATA;
      if (dl)
        memcpy(data[n], fx[n].data, dl);
      fx[n].data = data[n];
      fx[n].data_len = dl;
      n++;
    }
    ota_outbox_clear(hob);
    for (size_t i = 0; i < n; i++) {
      if (fx[i].kind == OTA_HEAL_FX_EVENT)
        emit(s, out, fx[i].name, fx[i].data, fx[i].data_len);
      else if (fx[i].kind == OTA_HEAL_FX_SEND_MODULE && !why[0])
        heal_send(s, &fx[i], now, out, why, sizeof why);
    }
    if (why[0]) {
      OTA_LOGW("csess %s: healer module not sent: %s", s->cfg.name, why);
      ota_healer_on_ota_result(&s->h, false, why, now, hob);
    }
  }
  ota_outbox_clear(hob);
}

/* Product firmware: a released app goes to non-development product devices
 * whose user app differs (PROTOCOL.md 9). */
static int product_app(ota_csess_t *s, uint64_t now, ota_outbox_t *out) {
  if (!s->cfg.product_id || s->cfg.development || !s->cfg.product_app)
    return 0;
  ota_module_t m;
  if (ota_module_parse_header(s->cfg.product_app, s->cfg.product_app_len, &m))
    return 0;
  char hex[65];
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", m.suffix.sha256[i]);
  const ota_describe_module_t *u = ota_describe_find(&s->desc, OTA_FN_USER, 1);
  if (u && !strcasecmp(u->sha, hex))
    return 0;
  ota_modref_t ref = {m.info.func, m.info.index, m.info.version};
  if (find_job(s, &ref))
    return 1;
  char name[64];
  snprintf(name, sizeof name, "product-%u-v%u.bin", s->cfg.product_id,
           s->cfg.product_app_version);
  return ota_csess_enqueue(s, s->cfg.product_app, s->cfg.product_app_len, name,
                           OTA_ORIGIN_PRODUCT, now, out, NULL) == 0;
}

static void on_describe(ota_csess_t *s, const uint8_t *p, size_t len,
                        uint64_t now, ota_outbox_t *out) {
  if (len >= sizeof s->describe_json)
    len = sizeof s->describe_json - 1;
  memcpy(s->describe_json, p, len);
  s->describe_json[len] = 0;
  set_state(s, OTA_CSESS_DESCRIBED, "describe");
  int parsed = ota_describe_parse(s->describe_json, len, &s->desc) == 0;
  /* srv_ota_on_describe: may end a job; the healer hears of it first. */
  if (s->n && s->q[0].state == OTA_JOB_REBOOTING &&
      s->hellos > s->q[0].hellos_at_done) {
    ota_csess_job_t *j = &s->q[0];
    const ota_describe_module_t *dm =
        parsed ? ota_describe_find(&s->desc, j->ref.func, j->ref.index) : NULL;
    char why[160];
    if (dm && dm->version == j->ref.version) {
      snprintf(why, sizeof why, "describe after the reboot shows %c/%u v%u",
               ota_fn_letter(j->ref.func), j->ref.index, dm->version);
      end_job(s, OTA_JOB_DONE, why, now, out);
    } else {
      if (dm)
        snprintf(why, sizeof why,
                 "after the reboot the device reports %c/%u v%u, not v%u",
                 ota_fn_letter(j->ref.func), j->ref.index, dm->version,
                 j->ref.version);
      else
        snprintf(why, sizeof why,
                 "after the reboot the device lists no %c/%u (wanted v%u)",
                 ota_fn_letter(j->ref.func), j->ref.index, j->ref.version);
      end_job(s, OTA_JOB_FAILED, why, now, out);
    }
  } else
    start_next(s, now, out);
  if (!parsed || !s->cfg.cat) {
    OTA_LOGW("csess %s: describe not understood: %s", s->cfg.name, s->desc.err);
    return;
  }
  s->described = true;
  s->safe_mode = ota_describe_in_safe_mode(&s->desc);
  bool mid_heal =
      s->h.state == OTA_HEAL_SENDING || s->h.state == OTA_HEAL_WAIT_DESCRIBE;
  if (!mid_heal && !ota_csess_busy(s) && product_app(s, now, out))
    return;
  if (ota_healer_on_describe(&s->h, &s->desc, now, s->scratch2))
    OTA_LOGW("csess %s: healer outbox full", s->cfg.name);
  heal_drain(s, now, out);
}

/* ---- CoAP (srv_coap.c) --------------------------------------------------- */

static bool sending(const ota_csess_t *s);

static void on_hello(ota_csess_t *s, const ota_coap_msg_t *m, uint64_t now,
                     ota_outbox_t *out) {
  ota_msg_hello_t h;
  if (m->payload_len < OTA_MSG_HELLO_PAYLOAD_LEN ||
      ota_msg_hello_parse(m->payload, m->payload_len, &h) || h.id_len != 12 ||
      (s->cfg.check_id && memcmp(h.device_id, s->cfg.id, 12))) {
    OTA_LOGW("csess %s: Hello refused", s->cfg.name);
    set_state(s, OTA_CSESS_REFUSED, "Hello refused");
    ota_fx_t fx = {.kind = OTA_FX_EVENT, .arg = OTA_CSESS_FX_CLOSE};
    ota_outbox_push(out, &fx, NULL, 0);
    return;
  }
  /* Not in srv_coap/srv_ota (proposed there): a Hello during a transfer
   * means the device reset or reconnected, its receiver forgot the transfer
   * (a lost 2.04 to UpdateDone otherwise leaves the healer waiting for a
   * describe that has already come). */
  if (sending(s) && (s->tx.state == OTA_TX_DONE_SENT || (h.flags & 1))) {
    /* Every chunk is in and UpdateDone went out: the device may have taken
     * it (its 2.04 lost) and rebooted. The describe after this Hello says
     * whether the module is in, as after a normal reboot. */
    ota_csess_job_t *j = &s->q[0];
    j->t_sent = now;
    j->sent = j->total = (uint32_t)j->len;
    j->hellos_at_done = s->hellos;
    j->deadline = now + s->cfg.reboot_timeout_ms;
    job_set_state(s, j, OTA_JOB_REBOOTING,
                  "Hello while UpdateDone awaited its answer: the describe "
                  "decides",
                  now, out);
  } else if (sending(s)) {
    /* Reconnected mid-transfer (srv_ota_on_hello): the receiver forgot the
     * transfer; send it again from zero at the describe this Hello brings,
     * up to OTA_CSESS_MAX_RESTARTS times. */
    ota_csess_job_t *j = &s->q[0];
    char why[160];
    if (++j->restarts > OTA_CSESS_MAX_RESTARTS) {
      snprintf(why, sizeof why,
               "device reconnected during the transfer %u times (last at %u "
               "of %u bytes): given up",
               j->restarts, j->sent, j->total);
      j->chunks = s->tx.n_chunks_sent;
      j->resent = s->tx.n_resent;
      end_job(s, OTA_JOB_FAILED, why, now, out);
    } else {
      snprintf(why, sizeof why,
               "new Hello during the transfer (at %u of %u bytes): restart %u "
               "of %u from zero at the describe",
               j->sent, j->total, j->restarts, OTA_CSESS_MAX_RESTARTS);
      ota_tx_free(&s->tx);
      job_set_state(s, j, OTA_JOB_QUEUED, why, now, out);
    }
  }
  s->hellos++;
  s->hello_flags = h.flags;
  s->hello_product = h.product_id;
  s->described = false;
  ack(s, out, m); /* empty ACK (code 0.00) as the cloud sends */
  emits(s, out, "spark/status", "online");
  set_state(s, OTA_CSESS_GREETED, "Hello accepted");
  /* NON server Hello (clears the device's OTA flag), then CON Describe with
   * flags 3 = system + application (PROTOCOL 2.2). */
  ota_coap_msg_t r;
  uint8_t tok = OTA_CSESS_TOKEN_HELLO, flags;
  if (!ota_msg_build_request(&r, OTA_COAP_NON, OTA_COAP_POST, 0, &tok, 1, 'h'))
    send_msg(s, out, &r, 0, 0);
  if (!ota_msg_build_describe(&r, 0, OTA_CSESS_TOKEN_DESCRIBE,
                              OTA_DESCRIBE_DEFAULT, &flags))
    send_msg(s, out, &r, 0, 0);
}

static bool sending(const ota_csess_t *s) {
  return s->n && s->q[0].state == OTA_JOB_SENDING;
}

int ota_csess_on_message(ota_csess_t *s, const ota_coap_msg_t *m,
                         uint64_t now_ms, ota_outbox_t *out) {
  if (s->state == OTA_CSESS_REFUSED)
    return 0;
  ota_msg_kind_t k = ota_msg_classify(m, OTA_DIR_TO_CLOUD);
  if (ota_coap_is_request(m->code) || k == OTA_MSG_PING) {
    if (k == OTA_MSG_HELLO) {
      on_hello(s, m, now_ms, out);
      return 0;
    }
    if (s->state == OTA_CSESS_OFFLINE) {
      ack(s, out, m);
      return 0;
    }
    if (k == OTA_MSG_CHUNK_MISSED || k == OTA_MSG_UPDATE_DONE) {
      ack(s, out, m);
      if (sending(s)) {
        ota_tx_on_message(&s->tx, m, now_ms, s->scratch);
        drain(s, now_ms, out);
      }
    } else if (k == OTA_MSG_EVENT) {
      ota_msg_event_t ev;
      ack(s, out, m);
      if (ota_msg_event_parse(m, &ev) == 0) {
        char name[OTA_EVENT_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)ev.name_len, ev.name);
        emit(s, out, name, (const char *)ev.data, ev.data_len);
      }
    } else if (k == OTA_MSG_DESCRIBE && m->code == OTA_COAP_POST) {
      ack(s, out, m); /* >= 2.2 POST d: srv_coap does not read it */
    } else if (k == OTA_MSG_PING) {
      ack(s, out, m);
    } else if (s->cfg.send_acks && m->type == OTA_COAP_CON) {
      ota_coap_msg_t r;
      ota_msg_build_ack_response(&r, m, OTA_COAP_NOT_FOUND, NULL, 0);
      send_msg(s, out, &r, 0, 0);
    }
    return 0;
  }
  /* Responses (piggy-backed or separate; a separate CON gets its ACK). */
  if (m->type == OTA_COAP_CON)
    ack(s, out, m);
  if (s->state == OTA_CSESS_OFFLINE)
    return 0;
  if (m->tkl == 1 && m->token[0] == OTA_CSESS_TOKEN_DESCRIBE &&
      m->code == OTA_COAP_CONTENT) {
    on_describe(s, m->payload, m->payload_len, now_ms, out);
  } else if (sending(s)) {
    ota_tx_on_message(&s->tx, m, now_ms, s->scratch);
    drain(s, now_ms, out);
  }
  return 0;
}

void ota_csess_on_disconnect(ota_csess_t *s, uint64_t now_ms,
                             ota_outbox_t *out) {
  if (s->state == OTA_CSESS_OFFLINE)
    return;
  set_state(s, OTA_CSESS_OFFLINE, "transport closed");
  if (sending(s))
    end_job(s, OTA_JOB_FAILED, "device disconnected during the transfer",
            now_ms, out);
  emits(s, out, "spark/status", "offline");
}

int ota_csess_on_pong(ota_csess_t *s, uint64_t now_ms, ota_outbox_t *out) {
  if (!sending(s))
    return 0;
  int rc = ota_tx_on_pong(&s->tx, now_ms, s->scratch);
  drain(s, now_ms, out);
  return rc;
}

int ota_csess_on_timer(ota_csess_t *s, uint64_t now_ms, ota_outbox_t *out) {
  if (s->n) {
    ota_csess_job_t *j = &s->q[0];
    if (j->state == OTA_JOB_SENDING && ota_tx_next_deadline(&s->tx) <= now_ms) {
      ota_tx_on_timer(&s->tx, now_ms, s->scratch);
      drain(s, now_ms, out);
    } else if (j->state == OTA_JOB_REBOOTING && j->deadline <= now_ms) {
      end_job(s, OTA_JOB_FAILED,
              "device did not come back with the module after the reboot",
              now_ms, out);
    }
  }
  if (ota_healer_next_deadline(&s->h) <= now_ms) {
    ota_healer_on_timer(&s->h, now_ms, s->scratch2);
    heal_drain(s, now_ms, out);
  }
  return 0;
}

uint64_t ota_csess_next_deadline(const ota_csess_t *s) {
  uint64_t dl = ota_healer_next_deadline(&s->h);
  if (s->n) {
    const ota_csess_job_t *j = &s->q[0];
    uint64_t t = j->state == OTA_JOB_SENDING     ? ota_tx_next_deadline(&s->tx)
                 : j->state == OTA_JOB_REBOOTING ? j->deadline
                                                 : UINT64_MAX;
    if (t < dl)
      dl = t;
  }
  return dl;
}
