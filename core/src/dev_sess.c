/* One simulated Electron's cloud session (sans-IO), ported from
 * device-sim/sim_dev.c: PROTOCOL.md 1.5, 2.1-2.5, 3, 7. */
#include "otalab/dev_sess.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/msg.h"

const char *ota_dsess_state_name(ota_dsess_state_t s) {
  static const char *names[] = {
#define OTA_DSESS_NAME(s, n) n,
      OTA_DSESS_STATES(OTA_DSESS_NAME)
#undef OTA_DSESS_NAME
  };
  return (unsigned)s < OTA_DSESS_STATE_COUNT ? names[s] : "?";
}

void ota_dsess_cfg_default(ota_dsess_cfg_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->first_mid = 1;
  cfg->seed = 1;
  cfg->product = -1;
  cfg->keepalive_ms = OTA_DSESS_KEEPALIVE_MS;
}

static void set_state(ota_dsess_t *s, ota_dsess_state_t st, const char *why,
                      ota_outbox_t *out) {
  if (s->state == st)
    return;
  char line[160];
  int n =
      snprintf(line, sizeof line, "%s => %s (%s)",
               ota_dsess_state_name(s->state), ota_dsess_state_name(st), why);
  OTA_LOGD("dsess %s: %s", s->cfg.name, line);
  s->state = st;
  ota_fx_t fx = {.kind = OTA_FX_EVENT, .arg = OTA_DSESS_FX_STATE};
  if (out && n > 0)
    ota_outbox_push(out, &fx, line, strlen(line));
}

void ota_dsess_init(ota_dsess_t *s, const ota_dsess_cfg_t *cfg,
                    ota_device_t *dev, ota_dsess_scratch_t *scratch) {
  memset(s, 0, sizeof *s);
  if (cfg)
    s->cfg = *cfg;
  else
    ota_dsess_cfg_default(&s->cfg);
  s->dev = dev;
  s->scratch = scratch;
  s->next_mid = s->cfg.first_mid ? s->cfg.first_mid : 1;
  s->state = OTA_DSESS_OFF;
}

static void staging_free(ota_dsess_t *s) {
  free(s->staging);
  s->staging = NULL;
  s->rx.cfg.staging = NULL;
}

void ota_dsess_free(ota_dsess_t *s) {
  staging_free(s);
  ota_rx_free(&s->rx);
  ota_coap_chan_free(&s->ch);
}

int ota_dsess_boot(ota_dsess_t *s, ota_reset_t reason, uint64_t now_ms,
                   ota_boot_result_t *r, ota_outbox_t *out) {
  (void)now_ms;
  ota_boot_result_t tmp;
  if (!r)
    r = &tmp;
  int rc = ota_device_boot(s->dev, reason, r);
  if (rc)
    return rc;
  s->n.reboots++;
  OTA_LOGD("dsess %s: boot: %s, release %s, reason %s (%s)", s->cfg.name,
           ota_dev_state_name(r->state), ota_device_release_name(s->dev),
           ota_reset_name(r->reason), r->why);
  s->reboot = 0;
  if (r->state == OTA_DEV_HARD_FAULT_LOOP)
    set_state(s, OTA_DSESS_DEAD, "hard-fault loop", out);
  else
    set_state(s, OTA_DSESS_OFF, "booted", out);
  return 0;
}

/* ---- sending through the channel ---------------------------------------- */

static uint16_t csend(ota_dsess_t *s, const ota_coap_msg_t *m, uint64_t now) {
  uint16_t mid = 0;
  int rc = ota_coap_chan_send(&s->ch, m, now, s->scratch->next, &mid);
  if (rc) {
    char sum[96];
    OTA_LOGW("dsess %s: cannot send %s: %s", s->cfg.name,
             ota_coap_summary(m, sum, sizeof sum), ota_strerror(rc));
  }
  return mid;
}

static void cack(ota_dsess_t *s, const ota_coap_msg_t *req, uint64_t now) {
  if (req->type == OTA_COAP_CON)
    ota_coap_chan_ack(&s->ch, req, now, s->scratch->next);
}

static void rx_effects(ota_dsess_t *s, uint64_t now) {
  ota_outbox_t *rxo = &s->scratch->rx;
  for (size_t i = 0; i < rxo->n; i++) {
    const ota_fx_t *fx = &rxo->fx[i];
    const uint8_t *b = ota_outbox_bytes(rxo, fx);
    ota_coap_msg_t m;
    ota_rx_report_t rep;
    switch (fx->kind) {
    case OTA_FX_SEND:
      if (ota_outbox_msg(rxo, fx, &m) == 0)
        csend(s, &m, now);
      break;
    case OTA_FX_FLASH_WRITE: {
      uint32_t off = fx->addr - OTA_ADDR_OTA;
      if (!s->staging || fx->addr < OTA_ADDR_OTA || off > OTA_STAGING_SIZE ||
          fx->len > OTA_STAGING_SIZE - off)
        OTA_LOGW("dsess %s: flash write outside the OTA region", s->cfg.name);
      else if (fx->len)
        memcpy(s->staging + off, b, fx->len);
      break;
    }
    case OTA_FX_EVENT:
      if (ota_rx_report_get(rxo, fx, &rep))
        break;
      if (rep.kind == OTA_RX_EV_BEGIN) {
        /* The OTA region is only held while an update runs. */
        if (!s->staging)
          s->staging = calloc(1, OTA_STAGING_SIZE);
        s->rx.cfg.staging = s->staging;
      } else if (rep.kind == OTA_RX_EV_APPLY) {
        int rc = ota_device_queue_staged(s->dev, s->staging, rep.file_size);
        s->n.otas_ok++;
        s->n.ota_bytes += rep.file_size;
        if (rc)
          OTA_LOGE("dsess %s: verified but not queued: %s", s->cfg.name,
                   ota_strerror(rc));
        staging_free(s);
      } else if (rep.kind == OTA_RX_EV_REJECT) {
        s->n.otas_rejected++;
        OTA_LOGW("dsess %s: OTA rejected (%d): %s", s->cfg.name, rep.syserr,
                 rep.why);
        snprintf(s->last_reject, sizeof s->last_reject,
                 "ota: rejected (%d, %s): %s; keeping the old firmware",
                 rep.syserr, ota_strerror(rep.err), rep.why);
        staging_free(s);
      }
      break;
    case OTA_FX_REBOOT:
      s->reboot = 1;
      break;
    default:
      break;
    }
  }
  ota_outbox_clear(rxo);
}

static void serve_describe(ota_dsess_t *s, const ota_coap_msg_t *m,
                           uint64_t now) {
  int flags = ota_msg_describe_flags(m);
  size_t len = 0;
  ota_coap_msg_t r;
  char *buf = s->scratch->describe;
  int rc = ota_device_describe_json(s->dev, flags, buf,
                                    sizeof s->scratch->describe, &len);
  if (rc) {
    if (m->type == OTA_COAP_CON) {
      ota_msg_build_ack_response(&r, m, OTA_COAP_BAD_REQUEST, NULL, 0);
      csend(s, &r, now);
    }
    return;
  }
  const ota_cat_release_t *rel = ota_device_release(s->dev);
  ota_describe_form_t form = rel ? rel->behaviour.describe : OTA_DESCRIBE_ACK;
  if (form == OTA_DESCRIBE_ACK && m->type == OTA_COAP_CON) {
    ota_msg_build_ack_response(&r, m, OTA_COAP_CONTENT, buf, len);
    csend(s, &r, now);
  } else if (form == OTA_DESCRIBE_POST) {
    uint8_t fb = (uint8_t)flags;
    cack(s, m, now);
    ota_msg_build_request(&r, OTA_COAP_CON, OTA_COAP_POST, 0, NULL, 0, 'd');
    ota_coap_add_option(&r, OTA_COAP_OPT_URI_QUERY, &fb, 1);
    ota_coap_set_payload(&r, buf, len);
    csend(s, &r, now);
  } else {
    cack(s, m, now);
    ota_msg_build_separate_response(
        &r, m->type == OTA_COAP_CON ? OTA_COAP_CON : OTA_COAP_NON,
        OTA_COAP_CONTENT, 0, m->token, m->tkl, buf, len);
    csend(s, &r, now);
  }
  s->described = true;
  s->n.describes++;
}

static void publish_handshake_events(ota_dsess_t *s, uint64_t now) {
  ota_dev_event_t ev[OTA_DEVICE_MAX_EVENTS];
  size_t n = ota_device_handshake_events(s->dev, ev, OTA_DEVICE_MAX_EVENTS);
  for (size_t i = 0; i < n; i++) {
    ota_msg_event_t e = {.name = ev[i].name,
                         .name_len = strlen(ev[i].name),
                         .data = (const uint8_t *)ev[i].data,
                         .data_len = strlen(ev[i].data),
                         .ttl = OTA_EVENT_TTL_DEFAULT,
                         .is_private = true};
    ota_coap_msg_t m;
    uint8_t store[3];
    if (ota_msg_build_event(&m, OTA_COAP_NON, 0, &e, store) == 0)
      csend(s, &m, now);
  }
}

static void on_deliver(ota_dsess_t *s, const uint8_t *b, size_t len,
                       uint64_t now, ota_outbox_t *out) {
  ota_coap_msg_t m;
  ota_msg_kind_t kind;
  unsigned type = len ? (b[0] >> 4) & 3 : 0;
  if (type == OTA_COAP_ACK || type == OTA_COAP_RST) {
    if (ota_coap_decode(b, len, &m))
      return;
    if (m.mid == s->hello_mid && s->state == OTA_DSESS_HELLO &&
        type == OTA_COAP_ACK) {
      set_state(s, OTA_DSESS_ONLINE, "Hello acknowledged", out);
      publish_handshake_events(s, now);
    } else if (m.mid == s->hello_mid && type == OTA_COAP_RST) {
      s->fail = "Hello answered with RST";
      s->fatal = true;
    } else if (s->ping_out && m.mid == s->ping_mid) {
      s->ping_out = false;
    }
    return;
  }
  if (ota_msg_parse_cloud_request(b, len, &m, &kind)) {
    if (ota_coap_decode(b, len, &m) == 0 && ota_coap_is_response(m.code))
      return;
    if (type == OTA_COAP_CON && len >= 4) {
      ota_coap_msg_t r;
      ota_msg_build_empty(&r, OTA_COAP_RST, (uint16_t)(b[2] << 8 | b[3]));
      csend(s, &r, now);
    }
    return;
  }
  ota_coap_msg_t r;
  switch (kind) {
  case OTA_MSG_PING:
    cack(s, &m, now);
    break;
  case OTA_MSG_HELLO:
    cack(s, &m, now);
    ota_device_on_server_hello(s->dev);
    break;
  case OTA_MSG_DESCRIBE:
    serve_describe(s, &m, now);
    break;
  case OTA_MSG_UPDATE_BEGIN:
  case OTA_MSG_CHUNK:
  case OTA_MSG_UPDATE_DONE:
    if (ota_rx_on_message(&s->rx, &m, now, &s->scratch->rx))
      OTA_LOGW("dsess %s: receiver outbox full", s->cfg.name);
    rx_effects(s, now);
    break;
  case OTA_MSG_SIGNAL:
    ota_msg_build_ack_response(&r, &m, OTA_COAP_CHANGED, NULL, 0);
    if (m.type == OTA_COAP_CON)
      csend(s, &r, now);
    break;
  case OTA_MSG_EVENT: {
    ota_msg_event_t e;
    cack(s, &m, now);
    if (ota_msg_event_parse(&m, &e) == 0 && e.name_len == 18 &&
        !memcmp(e.name, "spark/device/reset", 18) && e.data_len == 9 &&
        !memcmp(e.data, "safe mode", 9)) {
      ota_device_request_safe_mode(s->dev);
      s->reboot = 2;
    }
    break;
  }
  case OTA_MSG_FUNCTION:
  case OTA_MSG_VARIABLE:
    if (m.type == OTA_COAP_CON) {
      ota_msg_build_ack_response(&r, &m, OTA_COAP_NOT_FOUND, NULL, 0);
      csend(s, &r, now);
    }
    break;
  default:
    cack(s, &m, now);
    break;
  }
}

/* Run the channel's effects (and what handling them produces) to the end:
 * SENDs go to the caller's outbox. `retrans`: the first round comes from the
 * channel's timer (retransmissions). */
static void flush(ota_dsess_t *s, uint64_t now, ota_outbox_t *out,
                  int retrans) {
  ota_outbox_t *c = &s->scratch->a, *nx = &s->scratch->b;
  while (c->n) {
    s->scratch->next = nx;
    for (size_t i = 0; i < c->n; i++) {
      const ota_fx_t *fx = &c->fx[i];
      const uint8_t *b = ota_outbox_bytes(c, fx);
      if (fx->kind == OTA_FX_SEND) {
        ota_fx_t o = *fx;
        o.addr = (uint32_t)retrans;
        if (ota_outbox_push(out, &o, b, fx->len))
          OTA_LOGW("dsess %s: outbox full, datagram dropped", s->cfg.name);
        if (retrans)
          s->n.retransmits++;
        s->last_io = now;
      } else if (fx->kind == OTA_FX_DELIVER) {
        on_deliver(s, b, fx->len, now, out);
      } else if (fx->kind == OTA_FX_TIMEOUT) {
        if (fx->mid == s->hello_mid && s->state == OTA_DSESS_HELLO) {
          s->fail = "Hello not acknowledged: refused by the server?";
          s->fatal = true;
        } else if (s->ping_out && fx->mid == s->ping_mid) {
          s->fail = "keep-alive ping not acknowledged";
        }
      }
    }
    ota_outbox_clear(c);
    ota_outbox_t *t = c;
    c = nx, nx = t;
    retrans = 0;
  }
  ota_outbox_clear(&s->scratch->a);
  ota_outbox_clear(&s->scratch->b);
  s->scratch->next = &s->scratch->a;
}

/* After handling: a failure or a reboot ends the connection. */
static void settle(ota_dsess_t *s, uint64_t now, ota_outbox_t *out) {
  if (s->state != OTA_DSESS_HELLO && s->state != OTA_DSESS_ONLINE)
    return;
  if (s->fail) {
    const char *why = s->fail;
    bool fatal = s->fatal;
    ota_dsess_on_down(s, now, why, out);
    if (fatal)
      set_state(s, OTA_DSESS_DEAD, why, out);
  } else if (s->reboot) {
    int safe = s->reboot == 2;
    s->next_mid = ota_coap_chan_peek_mid(&s->ch);
    ota_rx_free(&s->rx);
    ota_coap_chan_free(&s->ch);
    staging_free(s);
    ota_fx_t fx = {.kind = OTA_FX_REBOOT,
                   .arg = safe ? OTA_RESET_SAFE_MODE : OTA_RESET_UPDATE};
    ota_outbox_push(out, &fx, NULL, 0);
    set_state(s, OTA_DSESS_REBOOT,
              safe ? "safe mode requested" : "after the OTA update", out);
  }
}

static void send_hello(ota_dsess_t *s, uint64_t now) {
  uint8_t h[OTA_HELLO_LEN];
  ota_device_hello_payload(s->dev, h);
  if (s->cfg.product >= 0) {
    h[0] = (uint8_t)(s->cfg.product >> 8);
    h[1] = (uint8_t)s->cfg.product;
  }
  ota_coap_msg_t m;
  ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_POST, 0, NULL, 0, 'h');
  ota_coap_set_payload(&m, h, OTA_MSG_HELLO_PAYLOAD_LEN);
  s->hello_mid = csend(s, &m, now);
  s->n.hellos++;
}

int ota_dsess_on_up(ota_dsess_t *s, uint64_t now_ms, ota_outbox_t *out) {
  if (s->state != OTA_DSESS_OFF || !ota_device_online(s->dev))
    return OTA_ESTATE;
  ota_coap_chan_cfg_t ccfg;
  ota_coap_chan_cfg_default(&ccfg);
  ccfg.first_mid = s->next_mid;
  ccfg.seed = s->cfg.seed ^ ((uint64_t)++s->connects << 32) ^ now_ms;
  ota_coap_chan_init(&s->ch, &ccfg);
  ota_rx_cfg_t rcfg;
  ota_rx_config_default(&rcfg);
  const ota_cat_release_t *rel = ota_device_release(s->dev);
  if (rel)
    ota_rx_config_release(&rcfg, rel->major, rel->minor, rel->patch);
  rcfg.staging = NULL;
  rcfg.verify = ota_device_rx_verify;
  rcfg.verify_ud = s->dev;
  ota_rx_init(&s->rx, &rcfg);
  s->ping_out = s->described = false;
  s->reboot = 0;
  s->fail = NULL;
  s->fatal = false;
  s->last_io = now_ms;
  set_state(s, OTA_DSESS_HELLO, "transport up", out);
  s->scratch->next = &s->scratch->a;
  send_hello(s, now_ms);
  flush(s, now_ms, out, 0);
  return 0;
}

void ota_dsess_on_down(ota_dsess_t *s, uint64_t now_ms, const char *why,
                       ota_outbox_t *out) {
  if (s->state == OTA_DSESS_DEAD || s->state == OTA_DSESS_OFF)
    return;
  if (s->state != OTA_DSESS_REBOOT)
    s->next_mid = ota_coap_chan_peek_mid(&s->ch);
  ota_rx_reset(&s->rx, now_ms);
  ota_rx_free(&s->rx);
  ota_coap_chan_free(&s->ch);
  staging_free(s);
  set_state(s, OTA_DSESS_OFF, why ? why : "transport down", out);
}

int ota_dsess_on_datagram(ota_dsess_t *s, const uint8_t *buf, size_t len,
                          uint64_t now_ms, ota_outbox_t *out) {
  if (s->state != OTA_DSESS_HELLO && s->state != OTA_DSESS_ONLINE)
    return 0;
  s->last_io = now_ms;
  s->scratch->next = &s->scratch->a;
  int e = ota_coap_chan_on_datagram(&s->ch, buf, len, now_ms, &s->scratch->a);
  if (e && e != OTA_ENOBUFS)
    OTA_LOGD("dsess %s: malformed datagram (%zu bytes): %s", s->cfg.name, len,
             ota_strerror(e));
  /* A duplicate CON's cached reply is the only SEND on_datagram makes. */
  flush(s, now_ms, out,
        s->scratch->a.n && s->scratch->a.fx[0].kind == OTA_FX_SEND);
  settle(s, now_ms, out);
  return 0;
}

int ota_dsess_on_timer(ota_dsess_t *s, uint64_t now_ms, ota_outbox_t *out) {
  if (s->state != OTA_DSESS_HELLO && s->state != OTA_DSESS_ONLINE)
    return 0;
  s->scratch->next = &s->scratch->a;
  ota_coap_chan_on_timer(&s->ch, now_ms, &s->scratch->a);
  flush(s, now_ms, out, 1);
  ota_rx_on_timer(&s->rx, now_ms, &s->scratch->rx);
  rx_effects(s, now_ms);
  if (s->state == OTA_DSESS_ONLINE && !s->ping_out &&
      now_ms - s->last_io >= s->cfg.keepalive_ms) {
    ota_coap_msg_t p;
    ota_msg_build_empty(&p, OTA_COAP_CON, 0);
    s->ping_mid = csend(s, &p, now_ms);
    s->ping_out = true;
    s->n.pings++;
  }
  flush(s, now_ms, out, 0);
  settle(s, now_ms, out);
  return 0;
}

uint64_t ota_dsess_next_deadline(const ota_dsess_t *s) {
  if (s->state != OTA_DSESS_HELLO && s->state != OTA_DSESS_ONLINE)
    return UINT64_MAX;
  uint64_t dl = ota_coap_chan_next_deadline(&s->ch);
  uint64_t r = ota_rx_next_deadline(&s->rx);
  if (r < dl)
    dl = r;
  if (s->state == OTA_DSESS_ONLINE && !s->ping_out &&
      s->last_io + s->cfg.keepalive_ms < dl)
    dl = s->last_io + s->cfg.keepalive_ms;
  return dl;
}
