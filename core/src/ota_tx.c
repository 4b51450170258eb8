/* The cloud's OTA sender state machine (sans-IO), normal and fast mode.
 * Source: PROTOCOL.md 2.4-2.5 (Device OS chunked_transfer.cpp, Brewskey). */
#include "otalab/ota_tx.h"

#include "otalab/crc32.h"
#include "otalab/electron.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/ota_rx.h"

#include <stdio.h>
#include <string.h>

static const char *const state_names[] = {
#define OTA_TX_STATE_NAME(s, n) n,
    OTA_TX_STATES(OTA_TX_STATE_NAME)
#undef OTA_TX_STATE_NAME
};

const char *ota_tx_state_name(ota_tx_state_t s) {
  return (unsigned)s < OTA_TX_STATE_COUNT ? state_names[s] : "?";
}

void ota_tx_config_default(ota_tx_cfg_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->fast = true;
  cfg->chunk_size = OTA_CHUNK_SIZE;
  cfg->store = OTA_STORE_FIRMWARE;
  cfg->address = 0;
  cfg->begin_timeout_ms = 6000;
  cfg->begin_tries = 3;
  cfg->chunk_timeout_ms = 30000;
  cfg->chunk_retries = 3;
  cfg->window = 16; /* = ota_plan_model_default()'s window: keep equal */
  cfg->window_max = 64;
  cfg->grow_rtt_ms = 100;
  cfg->ping_timeout_ms = 5000;
  cfg->done_timeout_ms = 30000;
  cfg->missed_wait_ms = 4000;
  cfg->max_resend_rounds = 5;
  cfg->total_timeout_ms = 600000;
  cfg->token_seed = 1;
  cfg->first_mid = 1;
}

void ota_tx_init(ota_tx_t *tx, const ota_tx_cfg_t *cfg) {
  memset(tx, 0, sizeof(*tx));
  if (cfg)
    tx->cfg = *cfg;
  else
    ota_tx_config_default(&tx->cfg);
  if (tx->cfg.window == 0)
    tx->cfg.window = 1;
  if (tx->cfg.window_max < tx->cfg.window)
    tx->cfg.window_max = tx->cfg.window;
  tx->win = tx->cfg.window;
  tx->state = OTA_TX_IDLE;
  tx->next_token = tx->cfg.token_seed;
  tx->next_mid = tx->cfg.first_mid;
  tx->deadline = UINT64_MAX;
  tx->give_up = UINT64_MAX;
  tx->result.err = OTA_ESTATE;
}

void ota_tx_free(ota_tx_t *tx) {
  tx->mod = NULL;
  tx->len = 0;
  tx->state = OTA_TX_IDLE;
  tx->deadline = UINT64_MAX;
  tx->give_up = UINT64_MAX;
}

/* The one place the state changes. */
static void set_state(ota_tx_t *tx, ota_tx_state_t to, const char *why) {
  OTA_LOGI("ota_tx: %s => %s (%s)", ota_tx_state_name(tx->state),
           ota_tx_state_name(to), why);
  tx->state = to;
}

static bool bit_get(const uint8_t *b, uint32_t i) {
  return (b[i >> 3] >> (i & 7)) & 1;
}
static void bit_set(uint8_t *b, uint32_t i) {
  b[i >> 3] |= (uint8_t)(1u << (i & 7));
}
static void bit_clr(uint8_t *b, uint32_t i) {
  b[i >> 3] &= (uint8_t) ~(1u << (i & 7));
}

static int push_report(ota_tx_t *tx, ota_tx_ev_t kind, ota_outbox_t *out) {
  ota_tx_report_t rep;
  memset(&rep, 0, sizeof(rep));
  rep.kind = kind;
  rep.sent = tx->sent_bytes;
  rep.total = tx->len;
  if (kind == OTA_TX_EV_RESULT)
    rep.result = tx->result;
  ota_fx_t fx;
  memset(&fx, 0, sizeof(fx));
  fx.kind = OTA_FX_EVENT;
  fx.arg = kind;
  return ota_outbox_push(out, &fx, &rep, sizeof(rep));
}

int ota_tx_report_get(const ota_outbox_t *ob, const ota_fx_t *fx,
                      ota_tx_report_t *rep) {
  if (!ob || !fx || !rep || fx->kind != OTA_FX_EVENT ||
      fx->len != sizeof(*rep) ||
      (fx->arg != OTA_TX_EV_PROGRESS && fx->arg != OTA_TX_EV_RESULT))
    return OTA_EINVAL;
  memcpy(rep, ota_outbox_bytes(ob, fx), sizeof(*rep));
  return 0;
}

static int finish(ota_tx_t *tx, int err, uint8_t code, const char *why,
                  ota_outbox_t *out) {
  tx->result.err = err;
  tx->result.coap_code = code;
  snprintf(tx->result.why, sizeof(tx->result.why), "%s", err ? why : "");
  tx->deadline = UINT64_MAX;
  tx->give_up = UINT64_MAX;
  if (err)
    OTA_LOGW("ota_tx: transfer failed: %s (%s)", why, ota_strerror(err));
  set_state(tx, err ? OTA_TX_FAILED : OTA_TX_SUCCEEDED, why);
  return push_report(tx, OTA_TX_EV_RESULT, out);
}

static uint8_t new_token(ota_tx_t *tx) {
  tx->cur_token = tx->next_token++;
  return tx->cur_token;
}

static int push_msg(const ota_coap_msg_t *m, ota_outbox_t *out) {
  uint8_t buf[OTA_CHUNK_SIZE + 64];
  uint8_t *p = buf;
  size_t need = ota_coap_encoded_size(m), len = 0;
  if (need == 0)
    return OTA_EINVAL;
  if (need > sizeof(buf))
    return OTA_ENOBUFS; /* chunk sizes above 512 + 64 are not supported */
  int rc = ota_coap_encode(m, p, sizeof(buf), &len);
  if (rc)
    return rc;
  return ota_outbox_push_bytes(out, OTA_FX_SEND, m->mid, p, len);
}

static int send_begin(ota_tx_t *tx, ota_outbox_t *out) {
  ota_msg_update_begin_t ub = {0};
  uint8_t pl[OTA_UPDATE_BEGIN_LEN];
  ota_coap_msg_t m;
  ub.flags = tx->cfg.fast ? OTA_UPDATE_FLAG_FAST : 0;
  ub.chunk_size = tx->chunk_size;
  ub.file_size = tx->len;
  ub.store = tx->cfg.store;
  ub.address = tx->cfg.address;
  int rc = ota_msg_update_begin_encode(&ub, pl, sizeof(pl));
  uint8_t tok = new_token(tx);
  if (!rc)
    rc = ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_POST, tx->next_mid++,
                               &tok, 1, 'u');
  if (rc)
    return rc;
  ota_coap_set_payload(&m, pl, sizeof(pl));
  return push_msg(&m, out);
}

static int send_chunk(ota_tx_t *tx, uint32_t idx, ota_outbox_t *out) {
  ota_msg_chunk_t c = {0};
  uint8_t store[6];
  ota_coap_msg_t m;
  uint32_t off = idx * tx->chunk_size;
  c.data = tx->mod + off;
  c.len = tx->len - off < tx->chunk_size ? tx->len - off : tx->chunk_size;
  c.crc = ota_crc32(c.data, c.len);
  c.has_index = tx->fast;
  c.index = (uint16_t)idx;
  int rc = ota_msg_build_chunk(&m, tx->fast ? OTA_COAP_NON : OTA_COAP_CON,
                               tx->next_mid++, new_token(tx), &c, store);
  if (!rc)
    rc = push_msg(&m, out);
  if (!rc)
    tx->n_chunks_sent++;
  return rc;
}

static int send_done(ota_tx_t *tx, uint64_t now, ota_outbox_t *out) {
  ota_coap_msg_t m;
  uint8_t tok = new_token(tx);
  int rc = ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_PUT, tx->next_mid++,
                                 &tok, 1, 'u');
  if (!rc)
    rc = push_msg(&m, out);
  if (rc)
    return rc;
  tx->n_done_sent++;
  tx->deadline = now + tx->cfg.done_timeout_ms;
  set_state(tx, OTA_TX_DONE_SENT, "all chunks sent, UpdateDone");
  return 0;
}

static uint32_t chunk_len(const ota_tx_t *tx, uint32_t idx) {
  uint32_t off = idx * tx->chunk_size;
  return tx->len - off < tx->chunk_size ? tx->len - off : tx->chunk_size;
}

int ota_tx_start(ota_tx_t *tx, const uint8_t *mod, size_t len, uint64_t now_ms,
                 ota_outbox_t *out) {
  if (!tx || !mod || !out || len == 0)
    return OTA_EINVAL;
  if (tx->state != OTA_TX_IDLE)
    return OTA_ESTATE;
  if (len > OTA_STAGING_SIZE) {
    OTA_LOGW("ota_tx: module of %zu bytes exceeds the %u-byte OTA area", len,
             OTA_STAGING_SIZE);
    return OTA_ETOOBIG;
  }
  uint16_t cs = tx->cfg.chunk_size ? tx->cfg.chunk_size : OTA_CHUNK_SIZE;
  if (cs > OTA_CHUNK_SIZE || (len + cs - 1) / cs > OTA_TX_MAX_CHUNKS)
    return OTA_EINVAL;
  ota_tx_t save = *tx; /* nothing changes on error */
  tx->mod = mod;
  tx->len = (uint32_t)len;
  tx->chunk_size = cs;
  tx->nchunks = (uint32_t)((len + cs - 1) / cs);
  tx->tries = 1;
  int rc = send_begin(tx, out);
  if (rc) {
    *tx = save;
    return rc;
  }
  tx->deadline = now_ms + tx->cfg.begin_timeout_ms;
  tx->give_up = now_ms + tx->cfg.total_timeout_ms;
  set_state(tx, OTA_TX_BEGIN, "start: UpdateBegin sent");
  return 0;
}

/* Fast mode: the ping that clocks the windows (CON 0.00, no token). */
static int send_ping(ota_tx_t *tx, uint64_t now, ota_outbox_t *out) {
  ota_coap_msg_t m;
  uint16_t mid = tx->next_mid++;
  ota_msg_build_empty(&m, OTA_COAP_CON, mid);
  int rc = push_msg(&m, out);
  if (rc)
    return rc;
  tx->ping_out = true;
  tx->ping_mid = mid;
  tx->ping_at = now;
  tx->n_pings++;
  uint64_t wait = tx->cfg.ping_timeout_ms;
  if (2ull * tx->pong_ms > wait)
    wait = 2ull * tx->pong_ms;
  tx->deadline = now + wait;
  return 0;
}

/* Fast mode: send the next window of pending chunks and its ping, or the
 * UpdateDone once none is left. NON chunks are not paced by CoAP (libcoap
 * neither): the ping is the brake. The last window gets its ping too, so the
 * UpdateDone never races the chunks (a <= 0.7.x device completing on its
 * own has the time to do so). */
static int send_window(ota_tx_t *tx, uint64_t now, ota_outbox_t *out) {
  tx->ping_out = false;
  if (tx->npending == 0)
    return send_done(tx, now, out);
  uint32_t n = 0;
  int rc = 0;
  for (uint32_t i = 0; i < tx->nchunks && n < tx->win; i++) {
    if (!bit_get(tx->pending, i))
      continue;
    rc = send_chunk(tx, i, out);
    if (rc)
      return rc;
    bit_clr(tx->pending, i);
    tx->npending--;
    n++;
    if (bit_get(tx->once, i)) {
      tx->n_resent++;
    } else {
      bit_set(tx->once, i);
      tx->sent_bytes += chunk_len(tx, i);
    }
  }
  if (n > tx->max_win)
    tx->max_win = n;
  rc = push_report(tx, OTA_TX_EV_PROGRESS, out);
  if (rc)
    return rc;
  if (tx->cfg.ping_timeout_ms == 0) {
    tx->deadline = now; /* unpaced: the next window at the next timer call */
    return 0;
  }
  return send_ping(tx, now, out);
}

/* Fast mode: the pong arrived; grow the window if it came back quickly. */
static int on_pong(ota_tx_t *tx, uint64_t now, ota_outbox_t *out) {
  uint64_t rtt = now > tx->ping_at ? now - tx->ping_at : 0;
  tx->pong_ms = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
  tx->n_pongs++;
  if (tx->pong_ms <= tx->cfg.grow_rtt_ms && tx->win < tx->cfg.window_max) {
    uint32_t w = 2u * tx->win;
    tx->win = (uint16_t)(w < tx->cfg.window_max ? w : tx->cfg.window_max);
    OTA_LOGD("ota_tx: pong after %u ms: window %u", tx->pong_ms, tx->win);
  }
  return send_window(tx, now, out);
}

int ota_tx_on_pong(ota_tx_t *tx, uint64_t now_ms, ota_outbox_t *out) {
  if (!tx || !out)
    return OTA_EINVAL;
  if (tx->state != OTA_TX_WINDOW || !tx->ping_out) {
    OTA_LOGD("ota_tx: pong in %s with no ping out, ignored",
             ota_tx_state_name(tx->state));
    return 0;
  }
  return on_pong(tx, now_ms, out);
}

static int begin_chunks(ota_tx_t *tx, bool fast, uint64_t now,
                        ota_outbox_t *out) {
  tx->fast = fast;
  tx->sent_bytes = 0;
  if (fast) {
    memset(tx->pending, 0, sizeof(tx->pending));
    memset(tx->once, 0, sizeof(tx->once));
    for (uint32_t i = 0; i < tx->nchunks; i++)
      bit_set(tx->pending, i);
    tx->npending = tx->nchunks;
    tx->win = tx->cfg.window;
    set_state(tx, OTA_TX_WINDOW, "UpdateReady: fast OTA");
    return send_window(tx, now, out);
  }
  tx->cur_chunk = 0;
  tx->tries = 0;
  set_state(tx, OTA_TX_CHUNK, "UpdateReady: normal OTA");
  tx->deadline = now + tx->cfg.chunk_timeout_ms;
  return send_chunk(tx, 0, out);
}

static bool our_token(const ota_tx_t *tx, const ota_coap_msg_t *in) {
  return in->tkl == 1 && in->token[0] == tx->cur_token;
}

static int on_done_reply(ota_tx_t *tx, const ota_coap_msg_t *in, uint64_t now,
                         ota_outbox_t *out) {
  char cs[5];
  if (in->code == OTA_COAP_CHANGED) {
    ota_msg_done_result_t r;
    if (ota_msg_done_result_parse(in->payload, in->payload_len, &r))
      return finish(tx, OTA_EPROTO, in->code, "unreadable UpdateDone reply",
                    out);
    tx->result.has_done = true;
    tx->result.done = r;
    if (r.ok)
      return finish(tx, 0, in->code, "UpdateDone 2.04: module accepted", out);
    char why[64];
    snprintf(why, sizeof(why), "device rejected the module (%d)", r.code);
    return finish(tx, r.code ? ota_rx_err_from_syserr(r.code) : OTA_EIO,
                  in->code, why, out);
  }
  if (in->code == OTA_COAP_BAD_REQUEST && tx->fast) {
    if (tx->rounds >= tx->cfg.max_resend_rounds)
      return finish(tx, OTA_EFULL, in->code, "resend rounds spent", out);
    tx->deadline = now + tx->cfg.missed_wait_ms;
    set_state(tx, OTA_TX_MISSED, "UpdateDone 4.00: chunks missing");
    return 0;
  }
  ota_coap_code_str(in->code, cs);
  OTA_LOGW("ota_tx: UpdateDone answered %s", cs);
  return finish(tx,
                in->code == OTA_COAP_BAD_REQUEST ? OTA_EPROTO : OTA_EREFUSED,
                in->code, "UpdateDone refused", out);
}

static int on_missed(ota_tx_t *tx, const ota_coap_msg_t *in, uint64_t now,
                     ota_outbox_t *out) {
  uint16_t idx[256];
  size_t n = 0;
  int rc = ota_msg_chunk_missed_parse(in->payload, in->payload_len, idx,
                                      sizeof(idx) / sizeof(idx[0]), &n);
  if (rc && rc != OTA_ENOBUFS) {
    OTA_LOGW("ota_tx: malformed ChunkMissed ignored (%s)", ota_strerror(rc));
    return 0;
  }
  uint32_t added = 0;
  for (size_t i = 0; i < n; i++) {
    if (idx[i] >= tx->nchunks) {
      OTA_LOGW("ota_tx: ChunkMissed lists chunk %u of %u", idx[i], tx->nchunks);
      continue;
    }
    if (!bit_get(tx->pending, idx[i])) {
      bit_set(tx->pending, idx[i]);
      tx->npending++;
      added++;
    }
  }
  OTA_LOGI("ota_tx: ChunkMissed: %zu indexes, %u to resend", n, added);
  if (tx->state == OTA_TX_WINDOW)
    return 0; /* <= 0.7.x mid-transfer report: joins the running windows */
  if (tx->rounds >= tx->cfg.max_resend_rounds)
    return finish(tx, OTA_EFULL, 0, "resend rounds spent", out);
  tx->rounds++;
  tx->win = tx->cfg.window; /* loss seen: start small again */
  set_state(tx, OTA_TX_WINDOW, "ChunkMissed: resend round");
  return send_window(tx, now, out);
}

int ota_tx_on_message(ota_tx_t *tx, const ota_coap_msg_t *in, uint64_t now_ms,
                      ota_outbox_t *out) {
  if (!tx || !in || !out)
    return OTA_EINVAL;
  char sum[96];
  ota_coap_summary(in, sum, sizeof(sum));
  OTA_LOGD("ota_tx: [%s] got %s", ota_tx_state_name(tx->state), sum);
  ota_msg_kind_t kind = ota_msg_classify(in, OTA_DIR_TO_CLOUD);

  /* Device-originated requests carry no token. */
  if (kind == OTA_MSG_CHUNK_MISSED && in->type != OTA_COAP_ACK) {
    if (tx->fast &&
        (tx->state == OTA_TX_WINDOW || tx->state == OTA_TX_DONE_SENT ||
         tx->state == OTA_TX_MISSED))
      return on_missed(tx, in, now_ms, out);
    OTA_LOGW("ota_tx: ChunkMissed in %s ignored", ota_tx_state_name(tx->state));
    return 0;
  }
  if (kind == OTA_MSG_UPDATE_DONE && in->type != OTA_COAP_ACK) {
    if (tx->fast &&
        (tx->state == OTA_TX_WINDOW || tx->state == OTA_TX_DONE_SENT ||
         tx->state == OTA_TX_MISSED)) {
      tx->result.device_done = true;
      return finish(tx, 0, 0, "device sent its own UpdateDone", out);
    }
    OTA_LOGW("ota_tx: device UpdateDone in %s ignored",
             ota_tx_state_name(tx->state));
    return 0;
  }
  if (in->code == OTA_COAP_EMPTY) {
    if ((in->type == OTA_COAP_ACK || in->type == OTA_COAP_RST) &&
        tx->state == OTA_TX_WINDOW && tx->ping_out && in->mid == tx->ping_mid)
      return on_pong(tx, now_ms, out);
    return 0; /* empty ACK of one of our CONs (libcoap's business) */
  }

  switch (tx->state) {
  case OTA_TX_BEGIN:
    if (in->code == OTA_COAP_BAD_REQUEST && in->tkl == 0)
      return finish(tx, OTA_EREFUSED, in->code, "UpdateBegin refused (4.00)",
                    out);
    if (!our_token(tx, in))
      break;
    if (in->code == OTA_COAP_CHANGED) {
      bool fast = tx->cfg.fast && in->payload_len >= 1 && (in->payload[0] & 1);
      return begin_chunks(tx, fast, now_ms, out);
    }
    return finish(tx, OTA_EREFUSED, in->code,
                  in->code == OTA_COAP_SERVICE_UNAVAILABLE
                      ? "UpdateBegin refused (5.03)"
                      : "UpdateBegin refused",
                  out);
  case OTA_TX_CHUNK:
    if (!our_token(tx, in))
      break;
    if (in->code == OTA_COAP_CHANGED) {
      tx->sent_bytes += chunk_len(tx, tx->cur_chunk);
      int rc = push_report(tx, OTA_TX_EV_PROGRESS, out);
      if (rc)
        return rc;
      if (++tx->cur_chunk == tx->nchunks)
        return send_done(tx, now_ms, out);
      tx->tries = 0;
      tx->deadline = now_ms + tx->cfg.chunk_timeout_ms;
      return send_chunk(tx, tx->cur_chunk, out);
    }
    if (in->code == OTA_COAP_BAD_REQUEST) {
      if (tx->tries >= tx->cfg.chunk_retries)
        return finish(tx, OTA_ECRC, in->code, "chunk rejected too often", out);
      tx->tries++;
      tx->n_resent++;
      OTA_LOGI("ota_tx: chunk %u rejected (4.00), resending", tx->cur_chunk);
      tx->deadline = now_ms + tx->cfg.chunk_timeout_ms;
      return send_chunk(tx, tx->cur_chunk, out);
    }
    return finish(tx, OTA_EPROTO, in->code, "unexpected ChunkReceived code",
                  out);
  case OTA_TX_DONE_SENT:
    if (!our_token(tx, in))
      break;
    return on_done_reply(tx, in, now_ms, out);
  default:
    break;
  }
  OTA_LOGD("ota_tx: %s ignored in %s", sum, ota_tx_state_name(tx->state));
  return 0;
}

int ota_tx_on_timer(ota_tx_t *tx, uint64_t now_ms, ota_outbox_t *out) {
  if (!tx || !out)
    return OTA_EINVAL;
  if (ota_tx_finished(tx) || tx->state == OTA_TX_IDLE)
    return 0;
  if (now_ms >= tx->give_up)
    return finish(tx, OTA_ETIMEDOUT, 0, "total transfer time exceeded", out);
  if (now_ms < tx->deadline)
    return 0;
  switch (tx->state) {
  case OTA_TX_BEGIN:
    if (tx->tries >= tx->cfg.begin_tries)
      return finish(tx, OTA_ETIMEDOUT, 0, "no UpdateReady", out);
    tx->tries++;
    OTA_LOGI("ota_tx: no UpdateReady, UpdateBegin try %u", tx->tries);
    tx->deadline = now_ms + tx->cfg.begin_timeout_ms;
    return send_begin(tx, out);
  case OTA_TX_CHUNK:
    return finish(tx, OTA_ETIMEDOUT, 0, "no ChunkReceived", out);
  case OTA_TX_WINDOW:
    if (tx->ping_out) {
      tx->n_ping_lost++;
      OTA_LOGI("ota_tx: no pong in %llu ms: ping lost, window %u -> %u",
               (unsigned long long)(now_ms - tx->ping_at), tx->win,
               tx->cfg.window);
      tx->win = tx->cfg.window;
    }
    return send_window(tx, now_ms, out);
  case OTA_TX_DONE_SENT:
    return finish(tx, OTA_ETIMEDOUT, 0, "no reply to UpdateDone", out);
  case OTA_TX_MISSED:
    if (tx->rounds >= tx->cfg.max_resend_rounds)
      return finish(tx, OTA_EFULL, 0, "resend rounds spent", out);
    tx->rounds++;
    return send_done(tx, now_ms, out);
  default:
    return 0;
  }
}

uint64_t ota_tx_next_deadline(const ota_tx_t *tx) {
  if (ota_tx_finished(tx) || tx->state == OTA_TX_IDLE)
    return UINT64_MAX;
  return tx->deadline < tx->give_up ? tx->deadline : tx->give_up;
}

bool ota_tx_finished(const ota_tx_t *tx) {
  return tx->state == OTA_TX_SUCCEEDED || tx->state == OTA_TX_FAILED;
}

const ota_tx_result_t *ota_tx_result(const ota_tx_t *tx) {
  return &tx->result;
}
