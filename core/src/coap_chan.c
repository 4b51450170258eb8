/* Device-side CoAP message layer (RFC 7252 4.2-4.5), following Device OS
 * communication/src/coap_channel.h: ids, retransmission, dedup
 * (PROTOCOL.md 2.1). */
#include "otalab/coap_chan.h"

#include "otalab/err.h"
#include "otalab/log.h"

#include <string.h>

void ota_coap_chan_cfg_default(ota_coap_chan_cfg_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->ack_timeout_ms = 4000;
  cfg->ack_random_pct = 50;
  cfg->max_retransmit = 3;
  cfg->exchange_lifetime_ms = 247000; /* RFC 7252 4.8.2 EXCHANGE_LIFETIME */
  cfg->first_mid = 1;
  cfg->seed = 1;
}

void ota_coap_chan_init(ota_coap_chan_t *ch, const ota_coap_chan_cfg_t *cfg) {
  memset(ch, 0, sizeof(*ch));
  if (cfg)
    ch->cfg = *cfg;
  else
    ota_coap_chan_cfg_default(&ch->cfg);
  ch->next_mid = ch->cfg.first_mid;
  ch->rng = ch->cfg.seed;
}

void ota_coap_chan_free(ota_coap_chan_t *ch) {
  if (!ch)
    return;
  for (size_t i = 0; i < OTA_COAP_CHAN_PENDING; i++)
    ch->pending[i].used = false;
  for (size_t i = 0; i < OTA_COAP_CHAN_SEEN; i++)
    ch->seen[i].used = false;
}

uint16_t ota_coap_chan_peek_mid(const ota_coap_chan_t *ch) {
  return ch->next_mid;
}

void ota_coap_chan_set_mid(ota_coap_chan_t *ch, uint16_t next) {
  ch->next_mid = next;
}

/* splitmix64: small, seedable, good enough for jitter. */
static uint64_t rng_next(ota_coap_chan_t *ch) {
  uint64_t z = (ch->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint32_t initial_timeout(ota_coap_chan_t *ch) {
  uint64_t span =
      (uint64_t)ch->cfg.ack_timeout_ms * ch->cfg.ack_random_pct / 100;
  uint64_t extra = span ? rng_next(ch) % (span + 1) : 0;
  return (uint32_t)(ch->cfg.ack_timeout_ms + extra);
}

static ota_coap_chan_seen_t *seen_find(ota_coap_chan_t *ch, uint16_t mid,
                                       uint64_t now) {
  for (size_t i = 0; i < OTA_COAP_CHAN_SEEN; i++) {
    ota_coap_chan_seen_t *s = &ch->seen[i];
    if (s->used && s->expires <= now)
      s->used = false; /* lazily forget old exchanges */
    if (s->used && s->mid == mid)
      return s;
  }
  return NULL;
}

static void seen_add(ota_coap_chan_t *ch, const ota_coap_msg_t *m,
                     uint64_t now) {
  ota_coap_chan_seen_t *slot = &ch->seen[0];
  for (size_t i = 0; i < OTA_COAP_CHAN_SEEN; i++) {
    ota_coap_chan_seen_t *s = &ch->seen[i];
    if (!s->used) {
      slot = s;
      break;
    }
    if (s->expires < slot->expires)
      slot = s; /* full: replace the oldest */
  }
  slot->used = true;
  slot->mid = m->mid;
  slot->type = m->type;
  slot->expires = now + ch->cfg.exchange_lifetime_ms;
  slot->reply_len = 0;
}

int ota_coap_chan_send(ota_coap_chan_t *ch, const ota_coap_msg_t *msg,
                       uint64_t now_ms, ota_outbox_t *out, uint16_t *mid_out) {
  if (!ch || !msg || !out)
    return OTA_EINVAL;
  ota_coap_msg_t m = *msg;
  bool fresh = m.type == OTA_COAP_CON || m.type == OTA_COAP_NON;
  if (fresh)
    m.mid = ch->next_mid;
  size_t need = ota_coap_encoded_size(&m);
  if (need == 0)
    return OTA_EINVAL;
  if (need > OTA_COAP_CHAN_MSG_MAX)
    return OTA_ENOBUFS;
  ota_coap_chan_pending_t *p = NULL;
  if (m.type == OTA_COAP_CON) {
    for (size_t i = 0; i < OTA_COAP_CHAN_PENDING && !p; i++)
      if (!ch->pending[i].used)
        p = &ch->pending[i];
    if (!p)
      return OTA_EBUSY;
  }
  uint8_t buf[OTA_COAP_CHAN_MSG_MAX];
  size_t len = 0;
  int rc = ota_coap_encode(&m, buf, sizeof(buf), &len);
  if (rc)
    return rc;
  rc = ota_outbox_push_bytes(out, OTA_FX_SEND, m.mid, buf, len);
  if (rc)
    return rc;
  ch->n_sent++;
  if (fresh)
    ch->next_mid++;
  if (mid_out)
    *mid_out = m.mid;
  if (p) {
    p->used = true;
    p->mid = m.mid;
    p->tkl = m.tkl;
    memcpy(p->token, m.token, sizeof(p->token));
    p->retries = 0;
    p->timeout_ms = initial_timeout(ch);
    p->deadline = now_ms + p->timeout_ms;
    p->len = len;
    memcpy(p->bytes, buf, len);
  } else if (!fresh) {
    /* Our reply to a remembered request: kept for its duplicates. */
    ota_coap_chan_seen_t *s = seen_find(ch, m.mid, now_ms);
    if (s && s->type == OTA_COAP_CON && s->reply_len == 0) {
      memcpy(s->reply, buf, len);
      s->reply_len = len;
    }
  }
  return 0;
}

int ota_coap_chan_ack(ota_coap_chan_t *ch, const ota_coap_msg_t *req,
                      uint64_t now_ms, ota_outbox_t *out) {
  if (!req || req->type != OTA_COAP_CON)
    return OTA_EINVAL;
  ota_coap_msg_t ack;
  ota_coap_msg_init(&ack, OTA_COAP_ACK, OTA_COAP_EMPTY, req->mid);
  return ota_coap_chan_send(ch, &ack, now_ms, out, NULL);
}

int ota_coap_chan_on_datagram(ota_coap_chan_t *ch, const uint8_t *buf,
                              size_t len, uint64_t now_ms, ota_outbox_t *out) {
  if (!ch || !out)
    return OTA_EINVAL;
  ota_coap_msg_t m;
  int rc = ota_coap_decode(buf, len, &m);
  if (rc) {
    ch->n_bad++;
    OTA_LOGD("coap: dropped malformed datagram (%zu bytes): %s", len,
             ota_strerror(rc));
    return rc;
  }
  if (m.type == OTA_COAP_ACK || m.type == OTA_COAP_RST) {
    for (size_t i = 0; i < OTA_COAP_CHAN_PENDING; i++) {
      ota_coap_chan_pending_t *p = &ch->pending[i];
      if (p->used && p->mid == m.mid) {
        rc = ota_outbox_push_bytes(out, OTA_FX_DELIVER, m.mid, buf, len);
        if (rc == 0)
          p->used = false;
        return rc;
      }
    }
    OTA_LOGD("coap: %s mid=0x%04x matches nothing, dropped",
             ota_coap_type_name(m.type), m.mid);
    return 0;
  }
  ota_coap_chan_seen_t *s = seen_find(ch, m.mid, now_ms);
  if (s) {
    ch->n_duplicates++;
    if (m.type == OTA_COAP_CON && s->reply_len)
      return ota_outbox_push_bytes(out, OTA_FX_SEND, m.mid, s->reply,
                                   s->reply_len);
    return 0;
  }
  rc = ota_outbox_push_bytes(out, OTA_FX_DELIVER, m.mid, buf, len);
  if (rc == 0)
    seen_add(ch, &m, now_ms);
  return rc;
}

int ota_coap_chan_on_timer(ota_coap_chan_t *ch, uint64_t now_ms,
                           ota_outbox_t *out) {
  if (!ch || !out)
    return OTA_EINVAL;
  for (size_t i = 0; i < OTA_COAP_CHAN_PENDING; i++) {
    ota_coap_chan_pending_t *p = &ch->pending[i];
    if (!p->used || p->deadline > now_ms)
      continue;
    int rc;
    if (p->retries < ch->cfg.max_retransmit) {
      rc = ota_outbox_push_bytes(out, OTA_FX_SEND, p->mid, p->bytes, p->len);
      if (rc)
        return rc;
      p->retries++;
      p->timeout_ms *= 2;
      p->deadline = now_ms + p->timeout_ms;
      ch->n_retransmits++;
      OTA_LOGD("coap: retransmit %u of mid=0x%04x, next in %u ms",
               (unsigned)p->retries, p->mid, (unsigned)p->timeout_ms);
    } else {
      ota_fx_t fx;
      memset(&fx, 0, sizeof(fx));
      fx.kind = OTA_FX_TIMEOUT;
      fx.mid = p->mid;
      fx.tkl = p->tkl;
      memcpy(fx.token, p->token, sizeof(fx.token));
      fx.arg = OTA_ETIMEDOUT;
      rc = ota_outbox_push(out, &fx, NULL, 0);
      if (rc)
        return rc;
      p->used = false;
      ch->n_timeouts++;
      OTA_LOGI("coap: mid=0x%04x not acknowledged after %u retransmissions",
               p->mid, (unsigned)p->retries);
    }
  }
  return 0;
}

uint64_t ota_coap_chan_next_deadline(const ota_coap_chan_t *ch) {
  uint64_t d = UINT64_MAX;
  for (size_t i = 0; i < OTA_COAP_CHAN_PENDING; i++)
    if (ch->pending[i].used && ch->pending[i].deadline < d)
      d = ch->pending[i].deadline;
  return d;
}

size_t ota_coap_chan_pending_count(const ota_coap_chan_t *ch) {
  size_t n = 0;
  for (size_t i = 0; i < OTA_COAP_CHAN_PENDING; i++)
    n += ch->pending[i].used;
  return n;
}
