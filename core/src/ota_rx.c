/* The device's OTA receiver state machine (sans-IO), per Device OS release.
 * Source: PROTOCOL.md 2.4-2.5 (Device OS chunked_transfer.cpp v0.6.4, v2.3.1).
 */
#include "otalab/ota_rx.h"

#include "otalab/crc32.h"
#include "otalab/electron.h"
#include "otalab/err.h"
#include "otalab/log.h"

#include <stdio.h>
#include <string.h>

static const char *const state_names[] = {
#define OTA_RX_STATE_NAME(s, n) n,
    OTA_RX_STATES(OTA_RX_STATE_NAME)
#undef OTA_RX_STATE_NAME
};

const char *ota_rx_state_name(ota_rx_state_t s) {
  return (unsigned)s < OTA_RX_STATE_COUNT ? state_names[s] : "?";
}

void ota_rx_config_default(ota_rx_cfg_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->updates_enabled = true;
  cfg->fast_ota = true;
  cfg->refusal = OTA_RX_REFUSE_503;
  cfg->done_form = OTA_DONE_FORM_INT;
  cfg->device_done = false;
  cfg->missed_resend_ms = 3000;
  cfg->missed_max = OTA_CHUNK_MISSED_MAX;
  cfg->default_chunk_size = OTA_CHUNK_SIZE;
  cfg->staging_size = OTA_STAGING_SIZE;
}

void ota_rx_config_release(ota_rx_cfg_t *cfg, int major, int minor, int patch) {
  long v = (long)major * 10000 + (long)minor * 100 + patch;
  cfg->done_form = v < 601     ? OTA_DONE_FORM_NONE
                   : v < 20000 ? OTA_DONE_FORM_OKERR
                               : OTA_DONE_FORM_INT;
  cfg->device_done = v < 800;
  cfg->refusal = v < 10200 ? OTA_RX_REFUSE_400 : OTA_RX_REFUSE_503;
}

int ota_rx_syserr_from_err(int err) {
  switch (err) {
  case 0:
    return 0;
  case OTA_ENOENT:
    return -1300;
  case OTA_EUNSUPPORTED:
  case OTA_EFUNC:
    return -1310;
  case OTA_EPROTO:
    return -1320;
  case OTA_ECRC:
  case OTA_ESHA:
    return -1330;
  case OTA_EDEP:
  case OTA_EDEPFAIL:
  case OTA_EDOWNGRADE:
    return -1340;
  case OTA_EADDR:
  case OTA_ETOOBIG:
    return -1350;
  case OTA_EPLATFORM:
    return -1360;
  case OTA_EHEADER:
  case OTA_EPARSE:
  case OTA_ETRUNC:
  case OTA_ESIZE:
    return -1370;
  case OTA_EREFUSED:
    return -1380;
  case OTA_EIO:
    return -1390;
  default:
    return -1320;
  }
}

int ota_rx_err_from_syserr(int code) {
  switch (code) {
  case 0:
    return 0;
  case -1300:
    return OTA_ENOENT;
  case -1310:
    return OTA_EUNSUPPORTED;
  case -1320:
    return OTA_EPROTO;
  case -1330:
    return OTA_ECRC;
  case -1340:
    return OTA_EDEPFAIL;
  case -1350:
    return OTA_EADDR;
  case -1360:
    return OTA_EPLATFORM;
  case -1370:
    return OTA_EHEADER;
  case -1380:
    return OTA_EREFUSED;
  default:
    return OTA_EIO;
  }
}

void ota_rx_init(ota_rx_t *rx, const ota_rx_cfg_t *cfg) {
  memset(rx, 0, sizeof(*rx));
  if (cfg)
    rx->cfg = *cfg;
  else
    ota_rx_config_default(&rx->cfg);
  if (rx->cfg.missed_max == 0 || rx->cfg.missed_max > OTA_CHUNK_MISSED_MAX)
    rx->cfg.missed_max = OTA_CHUNK_MISSED_MAX;
  if (rx->cfg.default_chunk_size == 0)
    rx->cfg.default_chunk_size = OTA_CHUNK_SIZE;
  rx->state = OTA_RX_IDLE;
}

/* The one place the state changes. */
static void set_state(ota_rx_t *rx, ota_rx_state_t to, const char *why) {
  OTA_LOGI("ota_rx: %s => %s (%s)", ota_rx_state_name(rx->state),
           ota_rx_state_name(to), why);
  rx->state = to;
}

void ota_rx_free(ota_rx_t *rx) {
  rx->state = OTA_RX_IDLE;
  rx->complete_pending = false;
}

void ota_rx_reset(ota_rx_t *rx, uint64_t now_ms) {
  (void)now_ms;
  rx->complete_pending = false;
  rx->nreceived = 0;
  rx->flight = 0;
  rx->next_index = 0;
  if (rx->state != OTA_RX_IDLE)
    set_state(rx, OTA_RX_IDLE, "reset: transfer forgotten");
}

uint32_t ota_rx_received(const ota_rx_t *rx) {
  return rx->nreceived;
}

static bool have(const ota_rx_t *rx, uint32_t i) {
  return (rx->have[i >> 3] >> (i & 7)) & 1;
}
static void mark(ota_rx_t *rx, uint32_t i) {
  rx->have[i >> 3] |= (uint8_t)(1u << (i & 7));
}

static int push_msg(const ota_coap_msg_t *m, ota_outbox_t *out) {
  uint8_t buf[256];
  size_t len = 0;
  int rc = ota_coap_encode(m, buf, sizeof(buf), &len);
  if (rc)
    return rc;
  return ota_outbox_push_bytes(out, OTA_FX_SEND, m->mid, buf, len);
}

/* Empty ACK for a CON request (nothing for NON). */
static int ack_empty(const ota_coap_msg_t *req, ota_outbox_t *out) {
  if (req->type != OTA_COAP_CON)
    return 0;
  ota_coap_msg_t m;
  ota_msg_build_empty(&m, OTA_COAP_ACK, req->mid);
  return push_msg(&m, out);
}

/* Separate CON response with the request's token, id left to the channel. */
static int separate(const ota_coap_msg_t *req, uint8_t code, const void *pl,
                    size_t len, ota_outbox_t *out) {
  ota_coap_msg_t m;
  int rc = ota_msg_build_separate_response(&m, OTA_COAP_CON, code, 0,
                                           req->token, req->tkl, pl, len);
  return rc ? rc : push_msg(&m, out);
}

static int push_event(ota_rx_t *rx, ota_rx_ev_t kind, int err, const char *why,
                      ota_outbox_t *out) {
  ota_rx_report_t rep;
  memset(&rep, 0, sizeof(rep));
  rep.kind = kind;
  rep.file_size = rx->file_size;
  rep.store = rx->store;
  rep.address = rx->address;
  rep.fast = rx->fast;
  rep.err = err;
  rep.syserr = ota_rx_syserr_from_err(err);
  snprintf(rep.why, sizeof(rep.why), "%s", why ? why : "");
  ota_fx_t fx;
  memset(&fx, 0, sizeof(fx));
  fx.kind = OTA_FX_EVENT;
  fx.arg = kind;
  return ota_outbox_push(out, &fx, &rep, sizeof(rep));
}

int ota_rx_report_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                      ota_rx_report_t *rep) {
  if (!ob || !fx || !rep || fx->kind != OTA_FX_EVENT ||
      fx->len != sizeof(*rep) || fx->arg < OTA_RX_EV_BEGIN ||
      fx->arg > OTA_RX_EV_REJECT)
    return OTA_EINVAL;
  memcpy(rep, ota_outbox_bytes(ob, fx), sizeof(*rep));
  return 0;
}

static uint32_t missing_count(const ota_rx_t *rx) {
  return rx->nchunks - rx->nreceived;
}

/* ChunkMissed: min(flight + max(20% of flight, 2), missed_max) indexes, the
 * lowest missing first (PROTOCOL.md 2.5). */
static int send_missed(ota_rx_t *rx, ota_outbox_t *out) {
  uint32_t extra = rx->flight / 5 > 2 ? rx->flight / 5 : 2;
  uint32_t want = rx->flight + extra;
  if (want > rx->cfg.missed_max)
    want = rx->cfg.missed_max;
  uint16_t idx[OTA_CHUNK_MISSED_MAX];
  uint8_t pl[2 * OTA_CHUNK_MISSED_MAX];
  size_t n = 0, len = 0;
  for (uint32_t i = 0; i < rx->nchunks && n < want; i++)
    if (!have(rx, i))
      idx[n++] = (uint16_t)i;
  int rc = ota_msg_chunk_missed_encode(idx, n, pl, sizeof(pl), &len);
  ota_coap_msg_t m;
  if (!rc)
    rc = ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_GET, 0, NULL, 0, 'c');
  if (rc)
    return rc;
  ota_coap_set_payload(&m, pl, len);
  rx->flight = 0;
  rx->n_missed_sent++;
  OTA_LOGI("ota_rx: ChunkMissed with %zu of %u missing chunks", n,
           missing_count(rx));
  return push_msg(&m, out);
}

/* All chunks present: validate, then APPLY or REJECT, then REBOOT. The 2.04
 * reply (if any) is pushed by the caller before this runs. */
static int verify(ota_rx_t *rx, char *why, size_t whylen) {
  why[0] = '\0';
  if (!rx->cfg.verify)
    return 0;
  int err = rx->cfg.verify(rx->cfg.verify_ud, rx->cfg.staging, rx->file_size,
                           why, whylen);
  if (err > 0)
    err = OTA_EIO;
  if (err)
    OTA_LOGW("ota_rx: staged module invalid: %s (%s)", why[0] ? why : "-",
             ota_strerror(err));
  return err;
}

static int finish(ota_rx_t *rx, int err, const char *why, ota_outbox_t *out) {
  int rc =
      push_event(rx, err ? OTA_RX_EV_REJECT : OTA_RX_EV_APPLY, err, why, out);
  if (rc)
    return rc;
  ota_fx_t fx;
  memset(&fx, 0, sizeof(fx));
  fx.kind = OTA_FX_REBOOT;
  fx.arg = OTA_RX_REBOOT_UPDATE;
  rc = ota_outbox_push(out, &fx, NULL, 0);
  set_state(rx, OTA_RX_DONE,
            err ? "module rejected, reset scheduled"
                : "module valid, applied at reset");
  return rc;
}

static int on_begin(ota_rx_t *rx, const ota_coap_msg_t *in, uint64_t now,
                    ota_outbox_t *out) {
  ota_msg_update_begin_t ub;
  ota_msg_update_begin_parse(in->payload, in->payload_len, &ub);
  uint16_t cs = ub.chunk_size ? ub.chunk_size : rx->cfg.default_chunk_size;
  uint32_t size = ub.defaults ? rx->cfg.staging_size : ub.file_size;
  uint32_t nchunks = (uint32_t)(((uint64_t)size + cs - 1) / cs);
  const char *refuse = NULL;
  if (!rx->cfg.updates_enabled)
    refuse = "updates disabled";
  else if (size > rx->cfg.staging_size)
    refuse = "file larger than the OTA area";
  else if (size == 0)
    refuse = "empty file";
  else if (nchunks >= OTA_RX_MAX_CHUNKS)
    refuse = "too many chunks";
  if (refuse) {
    ota_coap_msg_t m;
    OTA_LOGW("ota_rx: UpdateBegin refused: %s (%u bytes, chunk %u)", refuse,
             size, cs);
    if (rx->cfg.refusal == OTA_RX_REFUSE_400) {
      ota_msg_build_empty(&m, OTA_COAP_ACK, in->mid);
      m.code = OTA_COAP_BAD_REQUEST;
    } else {
      ota_msg_build_ack_response(&m, in, OTA_COAP_SERVICE_UNAVAILABLE, NULL, 0);
    }
    return push_msg(&m, out);
  }
  if (rx->state == OTA_RX_RECEIVING || rx->state == OTA_RX_MISSING)
    OTA_LOGW("ota_rx: new UpdateBegin interrupts a transfer (%u of %u chunks)",
             rx->nreceived, rx->nchunks);
  rx->fast = (ub.flags & OTA_UPDATE_FLAG_FAST) && rx->cfg.fast_ota;
  rx->chunk_size = cs;
  rx->file_size = size;
  rx->store = ub.store;
  rx->address = ub.address;
  rx->nchunks = nchunks;
  rx->next_index = 0;
  rx->nreceived = 0;
  rx->flight = 0;
  rx->complete_pending = false;
  rx->last_chunk_ms = now;
  memset(rx->have, 0, sizeof(rx->have));
  int rc = ack_empty(in, out);
  uint8_t flag = rx->fast ? 1 : 0;
  if (!rc)
    rc = separate(in, OTA_COAP_CHANGED, &flag, 1, out);
  if (!rc)
    rc = push_event(rx, OTA_RX_EV_BEGIN, 0, NULL, out);
  if (rc)
    return rc;
  set_state(rx, OTA_RX_RECEIVING,
            rx->fast ? "UpdateBegin: fast OTA" : "UpdateBegin: normal OTA");
  return 0;
}

/* Write chunk idx (CRC already checked); false if it was dropped. */
static int store_chunk(ota_rx_t *rx, uint32_t idx, const ota_msg_chunk_t *c,
                       bool *stored, ota_outbox_t *out) {
  *stored = false;
  if (idx >= rx->nchunks) {
    rx->n_outside++;
    OTA_LOGW("ota_rx: chunk %u outside the %u-byte file, dropped", idx,
             rx->file_size);
    return 0;
  }
  if (have(rx, idx)) {
    rx->n_dup++;
    OTA_LOGD("ota_rx: duplicate chunk %u ignored", idx);
    return 0;
  }
  uint32_t off = rx->address + idx * rx->chunk_size;
  size_t len = c->len < rx->chunk_size ? c->len : rx->chunk_size;
  if (off >= rx->cfg.staging_size)
    len = 0;
  else if (len > rx->cfg.staging_size - off)
    len = rx->cfg.staging_size - off; /* padding past the OTA area */
  ota_fx_t fx;
  memset(&fx, 0, sizeof(fx));
  fx.kind = OTA_FX_FLASH_WRITE;
  fx.addr = OTA_ADDR_OTA + off;
  int rc = ota_outbox_push(out, &fx, c->data, len);
  if (rc)
    return rc;
  mark(rx, idx);
  rx->nreceived++;
  rx->flight++;
  *stored = true;
  return 0;
}

static int on_chunk(ota_rx_t *rx, const ota_coap_msg_t *in, uint64_t now,
                    ota_outbox_t *out) {
  ota_msg_chunk_t c;
  bool stored = false;
  if (rx->state != OTA_RX_RECEIVING && rx->state != OTA_RX_MISSING) {
    rx->n_ignored++;
    OTA_LOGI("ota_rx: chunk while %s: acknowledged and ignored",
             ota_rx_state_name(rx->state));
    return ack_empty(in, out);
  }
  int rc = ack_empty(in, out);
  if (rc)
    return rc;
  if (ota_msg_chunk_parse(in, &c)) {
    OTA_LOGW("ota_rx: malformed chunk ignored");
    return 0;
  }
  bool crc_ok = ota_crc32(c.data, c.len) == c.crc;
  rx->last_chunk_ms = now;
  if (!rx->fast) {
    /* Normal mode: the index is implicit and advances on a good CRC only. */
    if (!crc_ok) {
      rx->n_bad_crc++;
      OTA_LOGI("ota_rx: chunk %u bad CRC, ChunkReceived 4.00", rx->next_index);
      return separate(in, OTA_COAP_BAD_REQUEST, NULL, 0, out);
    }
    rc = store_chunk(rx, rx->next_index, &c, &stored, out);
    if (rc)
      return rc;
    rx->next_index++;
    return separate(in, OTA_COAP_CHANGED, NULL, 0, out);
  }
  if (!crc_ok) {
    rx->n_bad_crc++;
    OTA_LOGI("ota_rx: fast chunk %u bad CRC, dropped", c.index);
    return 0;
  }
  uint32_t idx = c.has_index ? c.index : rx->next_index++;
  rc = store_chunk(rx, idx, &c, &stored, out);
  if (rc)
    return rc;
  if (stored && rx->state == OTA_RX_MISSING && missing_count(rx) == 0)
    rx->complete_pending = true; /* after this chunk's write is carried out */
  return 0;
}

static int on_done(ota_rx_t *rx, const ota_coap_msg_t *in, uint64_t now,
                   ota_outbox_t *out) {
  if (rx->state != OTA_RX_RECEIVING && rx->state != OTA_RX_MISSING) {
    rx->n_ignored++;
    OTA_LOGI("ota_rx: UpdateDone while %s: acknowledged and ignored",
             ota_rx_state_name(rx->state));
    return ack_empty(in, out);
  }
  ota_coap_msg_t m;
  if (missing_count(rx)) {
    ota_msg_build_ack_response(&m, in, OTA_COAP_BAD_REQUEST, NULL, 0);
    int rc = push_msg(&m, out);
    if (!rc)
      rc = send_missed(rx, out);
    if (rc)
      return rc;
    rx->last_chunk_ms = now; /* the 3 s repeat counts from this list */
    if (rx->cfg.device_done && rx->state != OTA_RX_MISSING)
      set_state(rx, OTA_RX_MISSING, "UpdateDone with chunks missing");
    return 0;
  }
  char why[96];
  int err = verify(rx, why, sizeof(why));
  ota_msg_done_result_t r;
  memset(&r, 0, sizeof(r));
  r.form = rx->cfg.done_form;
  r.ok = err == 0;
  r.code = ota_rx_syserr_from_err(err);
  char pl[128];
  size_t len = 0;
  if (r.form != OTA_DONE_FORM_NONE) {
    int rc = ota_msg_done_result_encode(&r, pl, sizeof(pl), &len);
    if (rc)
      return rc;
  }
  ota_msg_build_ack_response(&m, in, OTA_COAP_CHANGED, len ? pl : NULL, len);
  int rc = push_msg(&m, out);
  return rc ? rc : finish(rx, err, why, out);
}

int ota_rx_on_message(ota_rx_t *rx, const ota_coap_msg_t *in, uint64_t now_ms,
                      ota_outbox_t *out) {
  if (!rx || !in || !out)
    return OTA_EINVAL;
  switch (ota_msg_classify(in, OTA_DIR_TO_DEVICE)) {
  case OTA_MSG_UPDATE_BEGIN:
    return on_begin(rx, in, now_ms, out);
  case OTA_MSG_CHUNK:
    return on_chunk(rx, in, now_ms, out);
  case OTA_MSG_UPDATE_DONE:
    return on_done(rx, in, now_ms, out);
  default:
    return 0;
  }
}

int ota_rx_on_timer(ota_rx_t *rx, uint64_t now_ms, ota_outbox_t *out) {
  if (!rx || !out)
    return OTA_EINVAL;
  if (rx->state != OTA_RX_MISSING)
    return 0;
  if (rx->complete_pending) {
    /* <= 0.7.x: the last missing chunk arrived; finish by ourselves. */
    rx->complete_pending = false;
    ota_coap_msg_t m;
    int rc =
        ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_PUT, 0, NULL, 0, 'u');
    if (!rc)
      rc = push_msg(&m, out);
    if (rc)
      return rc;
    char why[96];
    int err = verify(rx, why, sizeof(why));
    return finish(rx, err, why, out);
  }
  if (now_ms >= rx->last_chunk_ms + rx->cfg.missed_resend_ms) {
    rx->last_chunk_ms = now_ms;
    return send_missed(rx, out);
  }
  return 0;
}

uint64_t ota_rx_next_deadline(const ota_rx_t *rx) {
  if (rx->state != OTA_RX_MISSING)
    return UINT64_MAX;
  if (rx->complete_pending)
    return 0;
  return rx->last_chunk_ms + rx->cfg.missed_resend_ms;
}
