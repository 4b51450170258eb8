/* Unit tests of the OTA sender (ota_tx) and receiver (ota_rx) wired together
 * with a virtual clock and a seeded loss table. Source: PROTOCOL.md 2.4-2.5. */
#include "otalab/crc32.h"
#include "otalab/electron.h"
#include "otalab/err.h"
#include "otalab/msg.h"
#include "otalab/ota_rx.h"
#include "otalab/ota_tx.h"
#include "otalab/outbox.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

/* ---- the wire: two FIFO queues of datagrams and a virtual clock ---- */
typedef struct {
  size_t len;
  uint8_t buf[640];
} dgram_t;

#define QMAX 1024
typedef struct {
  dgram_t d[QMAX];
  size_t head, tail;
} queue_t;

typedef struct {
  char name[48]; /* inline: Criterion may run cases in a fresh process */
  bool tx_fast, rx_fast;
  bool disabled; /* updates disabled on the device */
  ota_rx_refusal_t refusal;
  ota_done_form_t form;
  bool device_done;    /* <= 0.7.x behaviour */
  uint32_t size;       /* module bytes */
  uint16_t drop_every; /* drop first sends of chunks i % n == n-1 */
  bool drop_first, drop_last;
  uint8_t drop_pct;     /* seeded random loss of first sends */
  int corrupt;          /* chunk index corrupted on first send, -1 none */
  int verify_err;       /* what the verify hook answers */
  uint32_t reset_after; /* reset the receiver after so many chunks */
  uint64_t seed;
  int want_err;       /* expected final result of the sender */
  uint16_t lose_ping; /* drop pings n % lose_ping == lose_ping-1, 0 none */
} ota_case_t;

static struct {
  ota_tx_t tx;
  ota_rx_t rx;
  ota_outbox_t ob;
  queue_t to_rx, to_tx;
  uint64_t now, rng;
  uint8_t mod[OTA_STAGING_SIZE + 1];
  uint8_t staging[OTA_STAGING_SIZE];
  const ota_case_t *c;
  uint8_t sends[OTA_TX_MAX_CHUNKS]; /* sends seen per chunk index */
  uint32_t chunks_delivered, writes, resets_done, pings_seen;
  int applies, rejects, reboots, begins, results;
  uint32_t last_sent, last_total;
  ota_rx_report_t rx_rep;
  uint8_t last_rx_state_after_reset;
} W;

static uint64_t rnd(void) { /* xorshift64 */
  W.rng ^= W.rng << 13;
  W.rng ^= W.rng >> 7;
  W.rng ^= W.rng << 17;
  return W.rng;
}

static void q_push(queue_t *q, const uint8_t *b, size_t len) {
  cr_assert(q->tail - q->head < QMAX, "queue overflow");
  cr_assert(len <= sizeof(q->d[0].buf), "datagram of %zu bytes", len);
  dgram_t *d = &q->d[q->tail++ % QMAX];
  memcpy(d->buf, b, len);
  d->len = len;
}

static dgram_t *q_pop(queue_t *q) {
  return q->head == q->tail ? NULL : &q->d[q->head++ % QMAX];
}

static int verify_hook(void *ud, const uint8_t *staging, size_t len, char *why,
                       size_t whylen) {
  (void)ud;
  if (W.c && W.c->verify_err) {
    snprintf(why, whylen, "the test says no");
    return W.c->verify_err;
  }
  cr_assert_eq(staging, W.staging);
  if (ota_crc32(staging, len) != ota_crc32(W.mod, len)) {
    snprintf(why, whylen, "staging differs from the module");
    return OTA_ECRC;
  }
  return 0;
}

/* Decide the fate of a datagram from the sender: deliver, drop or corrupt. */
static void route_to_rx(const uint8_t *b, size_t len) {
  uint8_t copy[640];
  ota_coap_msg_t m;
  ota_msg_chunk_t ch;
  memcpy(copy, b, len);
  cr_assert_eq(ota_coap_decode(b, len, &m), 0);
  if (ota_msg_classify(&m, OTA_DIR_TO_DEVICE) == OTA_MSG_CHUNK &&
      ota_msg_chunk_parse(&m, &ch) == 0) {
    uint32_t idx = ch.has_index ? ch.index : W.tx.cur_chunk;
    uint32_t n = W.tx.nchunks;
    bool first = W.sends[idx]++ == 0;
    const ota_case_t *c = W.c;
    if (first && W.tx.fast &&
        ((c->drop_every && idx % c->drop_every == c->drop_every - 1u) ||
         (c->drop_first && idx == 0) || (c->drop_last && idx == n - 1) ||
         (c->drop_pct && rnd() % 100 < c->drop_pct)))
      return;
    if (first && c->corrupt >= 0 && idx == (uint32_t)c->corrupt)
      copy[len - 1] ^= 0x5a; /* last payload byte: CRC no longer matches */
  }
  q_push(&W.to_rx, copy, len);
}

static void pump_tx(void) {
  for (size_t i = 0; i < W.ob.n; i++) {
    const ota_fx_t *fx = &W.ob.fx[i];
    if (fx->kind == OTA_FX_SEND) {
      route_to_rx(ota_outbox_bytes(&W.ob, fx), fx->len);
    } else if (fx->kind == OTA_FX_EVENT) {
      ota_tx_report_t rep;
      cr_assert_eq(ota_tx_report_get(&W.ob, fx, &rep), 0);
      cr_assert_geq(rep.sent, W.last_sent, "progress goes forward");
      W.last_sent = rep.sent;
      W.last_total = rep.total;
      if (rep.kind == OTA_TX_EV_RESULT)
        W.results++;
    } else {
      cr_assert_fail("unexpected sender effect %s", ota_fx_kind_name(fx->kind));
    }
  }
  ota_outbox_clear(&W.ob);
}

static void pump_rx(void) {
  for (size_t i = 0; i < W.ob.n; i++) {
    const ota_fx_t *fx = &W.ob.fx[i];
    switch (fx->kind) {
    case OTA_FX_SEND:
      q_push(&W.to_tx, ota_outbox_bytes(&W.ob, fx), fx->len);
      break;
    case OTA_FX_FLASH_WRITE:
      cr_assert_geq(fx->addr, OTA_ADDR_OTA);
      cr_assert_leq(fx->addr - OTA_ADDR_OTA + fx->len, sizeof(W.staging));
      memcpy(W.staging + (fx->addr - OTA_ADDR_OTA), ota_outbox_bytes(&W.ob, fx),
             fx->len);
      W.writes++;
      break;
    case OTA_FX_EVENT: {
      ota_rx_report_t rep;
      cr_assert_eq(ota_rx_report_get(&W.ob, fx, &rep), 0);
      W.rx_rep = rep;
      W.begins += rep.kind == OTA_RX_EV_BEGIN;
      W.applies += rep.kind == OTA_RX_EV_APPLY;
      W.rejects += rep.kind == OTA_RX_EV_REJECT;
      break;
    }
    case OTA_FX_REBOOT:
      cr_assert_eq(W.applies + W.rejects, W.reboots + 1,
                   "REBOOT follows APPLY or REJECT");
      W.reboots++;
      break;
    default:
      cr_assert_fail("unexpected receiver effect %s",
                     ota_fx_kind_name(fx->kind));
    }
  }
  ota_outbox_clear(&W.ob);
}

/* Run until the sender is finished and nothing is in flight. */
static void run(void) {
  for (int steps = 0; steps < 200000; steps++) {
    dgram_t *d;
    ota_coap_msg_t m;
    ota_msg_kind_t kind;
    /* The device runs its due timers between datagrams, as its loop does. */
    if (ota_rx_next_deadline(&W.rx) <= W.now) {
      cr_assert_eq(ota_rx_on_timer(&W.rx, W.now, &W.ob), 0);
      pump_rx();
    }
    if ((d = q_pop(&W.to_rx))) {
      /* The device reads cloud requests at fixed offsets: must pass. */
      if (ota_msg_parse_cloud_request(d->buf, d->len, &m, &kind) != 0) {
        cr_assert_eq(ota_coap_decode(d->buf, d->len, &m), 0);
        cr_assert_eq(m.type, OTA_COAP_ACK, "strict parse of a request failed");
      }
      if (ota_msg_classify(&m, OTA_DIR_TO_DEVICE) == OTA_MSG_PING) {
        /* The device's protocol layer answers a ping (PROTOCOL.md 1.5). */
        uint32_t n = W.pings_seen++;
        uint16_t lp = W.c->lose_ping;
        if (!lp || n % lp != lp - 1u) {
          ota_coap_msg_t ack;
          uint8_t b[8];
          size_t bl;
          ota_msg_build_empty(&ack, OTA_COAP_ACK, m.mid);
          cr_assert_eq(ota_coap_encode(&ack, b, sizeof(b), &bl), 0);
          q_push(&W.to_tx, b, bl);
        }
        continue;
      }
      cr_assert_eq(ota_rx_on_message(&W.rx, &m, W.now, &W.ob), 0);
      pump_rx();
      if (ota_msg_classify(&m, OTA_DIR_TO_DEVICE) == OTA_MSG_CHUNK &&
          ++W.chunks_delivered == W.c->reset_after && !W.resets_done) {
        ota_rx_reset(&W.rx, W.now);
        W.resets_done++;
        cr_assert_eq(W.rx.state, OTA_RX_IDLE);
        cr_assert_eq(ota_rx_received(&W.rx), 0);
      }
      continue;
    }
    if ((d = q_pop(&W.to_tx))) {
      cr_assert_eq(ota_coap_decode(d->buf, d->len, &m), 0);
      cr_assert_eq(ota_tx_on_message(&W.tx, &m, W.now, &W.ob), 0);
      pump_tx();
      continue;
    }
    uint64_t dt = ota_tx_next_deadline(&W.tx);
    uint64_t dr = ota_rx_next_deadline(&W.rx);
    uint64_t next = dt < dr ? dt : dr;
    if (next == UINT64_MAX)
      return;
    if (next > W.now)
      W.now = next;
    cr_assert_eq(ota_rx_on_timer(&W.rx, W.now, &W.ob), 0);
    pump_rx();
    cr_assert_eq(ota_tx_on_timer(&W.tx, W.now, &W.ob), 0);
    pump_tx();
  }
  cr_assert_fail("transfer did not settle");
}

static void setup_world(const ota_case_t *c) {
  memset(&W, 0, sizeof(W));
  W.c = c;
  W.rng = c->seed ? c->seed : 1;
  for (uint32_t i = 0; i < c->size; i++)
    W.mod[i] = (uint8_t)rnd();
  W.now = 1000;
  ota_outbox_init(&W.ob);

  ota_tx_cfg_t tc;
  ota_tx_config_default(&tc);
  tc.fast = c->tx_fast;
  tc.token_seed = (uint8_t)c->seed;
  ota_tx_init(&W.tx, &tc);

  ota_rx_cfg_t rc;
  ota_rx_config_default(&rc);
  rc.fast_ota = c->rx_fast;
  rc.updates_enabled = !c->disabled;
  rc.refusal = c->refusal;
  rc.done_form = c->form;
  rc.device_done = c->device_done;
  rc.staging = W.staging;
  rc.verify = verify_hook;
  ota_rx_init(&W.rx, &rc);
}

ParameterizedTestParameters(ota, transfer) {
  static ota_case_t cases[] = {
      /* name, tx_fast, rx_fast, disabled, refusal, form, device_done, size,
       * drop_every, first, last, pct, corrupt, verify_err, reset_after, seed,
       * want, lose_ping */
      {"normal", false, true, false, OTA_RX_REFUSE_503, OTA_DONE_FORM_INT,
       false, 10000, 0, false, false, 0, -1, 0, 0, 3, 0, 0},
      {"fast 128 KB", true, true, false, OTA_RX_REFUSE_503, OTA_DONE_FORM_INT,
       false, OTA_STAGING_SIZE, 0, false, false, 0, -1, 0, 0, 5, 0, 0},
      {"fast asked, device says normal", true, false, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 5000, 0, false, false, 0, -1, 0, 0, 7, 0, 0},
      {"fast, every 7th lost", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 65536 + 77, 7, false, false, 0, -1, 0, 0, 9, 0,
       0},
      {"fast, first lost", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 20000, 0, true, false, 0, -1, 0, 0, 11, 0, 0},
      {"fast, last lost", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 20001, 0, false, true, 0, -1, 0, 0, 13, 0, 0},
      {"fast, 10% lost", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, OTA_STAGING_SIZE, 0, false, false, 10, -1, 0,
       0, 42, 0, 0},
      {"fast, 35% lost", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_OKERR, false, 100000, 0, false, false, 35, -1, 0, 0, 77, 0,
       0},
      {"fast, corrupted chunk", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 9000, 0, false, false, 0, 5, 0, 0, 15, 0, 0},
      {"normal, corrupted chunk", false, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 9000, 0, false, false, 0, 3, 0, 0, 17, 0, 0},
      {"refused 4.00 (<= 1.1)", true, true, true, OTA_RX_REFUSE_400,
       OTA_DONE_FORM_OKERR, false, 4000, 0, false, false, 0, -1, 0, 0, 19,
       OTA_EREFUSED, 0},
      {"refused 5.03 (>= 1.2)", true, true, true, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 4000, 0, false, false, 0, -1, 0, 0, 21,
       OTA_EREFUSED, 0},
      {"device UpdateDone (<= 0.7), every 5th lost", true, true, false,
       OTA_RX_REFUSE_400, OTA_DONE_FORM_OKERR, true, 30000, 5, false, false, 0,
       -1, 0, 0, 23, 0, 0},
      {"device UpdateDone (<= 0.7), last lost", true, true, false,
       OTA_RX_REFUSE_400, OTA_DONE_FORM_OKERR, true, 30000, 0, false, true, 0,
       -1, 0, 0, 25, 0, 0},
      {"reply form none (0.5.x)", true, true, false, OTA_RX_REFUSE_400,
       OTA_DONE_FORM_NONE, true, 3000, 0, false, false, 0, -1, 0, 0, 27, 0, 0},
      {"reply form ok/error json", true, true, false, OTA_RX_REFUSE_400,
       OTA_DONE_FORM_OKERR, false, 3000, 0, false, false, 0, -1, 0, 0, 29, 0,
       0},
      {"reply form int", false, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 3000, 0, false, false, 0, -1, 0, 0, 31, 0, 0},
      {"verify fails, form int", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 6000, 0, false, false, 0, -1, OTA_EDEPFAIL, 0,
       33, OTA_EDEPFAIL, 0},
      {"verify fails, form ok/error", false, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_OKERR, false, 6000, 0, false, false, 0, -1, OTA_EPLATFORM,
       0, 35, OTA_EIO, 0},
      {"fast, reset after 40 chunks", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 50000, 0, false, false, 0, -1, 0, 40, 37, 0,
       0},
      {"normal, reset after 9 chunks", false, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, 20000, 0, false, false, 0, -1, 0, 9, 39, 0, 0},
      {"fast, every 2nd ping lost", true, true, false, OTA_RX_REFUSE_503,
       OTA_DONE_FORM_INT, false, OTA_STAGING_SIZE, 0, false, false, 0, -1, 0, 0,
       41, 0, 2},
      {"fast, every ping lost, 5% chunks lost", true, true, false,
       OTA_RX_REFUSE_503, OTA_DONE_FORM_INT, false, 60000, 0, false, false, 5,
       -1, 0, 0, 43, 0, 1},
  };
  return cr_make_param_array(ota_case_t, cases,
                             sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(ota_case_t *c, ota, transfer) {
  setup_world(c);
  cr_log_info("case: %s", c->name);
  cr_assert_eq(ota_tx_start(&W.tx, W.mod, c->size, W.now, &W.ob), 0);
  pump_tx();
  run();
  cr_assert(ota_tx_finished(&W.tx), "%s: sender finished", c->name);
  cr_assert_eq(W.results, 1, "one RESULT event");

  if (c->reset_after) {
    /* The interrupted transfer fails on the sender's timers; the cloud starts
     * again and the device receives everything from chunk 0. */
    cr_assert_eq(ota_tx_result(&W.tx)->err, OTA_ETIMEDOUT);
    cr_assert_eq(W.begins, 1);
    ota_tx_cfg_t tc = W.tx.cfg;
    ota_tx_init(&W.tx, &tc);
    W.writes = 0;
    W.last_sent = 0;
    W.pings_seen = 0;
    memset(W.sends, 1, sizeof(W.sends)); /* no more loss */
    cr_assert_eq(ota_tx_start(&W.tx, W.mod, c->size, W.now, &W.ob), 0);
    pump_tx();
    run();
    cr_assert_eq(W.begins, 2);
    cr_assert_eq(W.writes, W.tx.nchunks, "every chunk written again");
  }

  const ota_tx_result_t *r = ota_tx_result(&W.tx);
  cr_log_info("%s: %s after %llu virtual ms, %u chunk sends (%u resent), "
              "%u rounds, %u ChunkMissed",
              c->name, ota_strerror_name(r->err),
              (unsigned long long)(W.now - 1000), W.tx.n_chunks_sent,
              W.tx.n_resent, W.tx.rounds, W.rx.n_missed_sent);
  cr_assert_eq(r->err, c->want_err, "%s: result %s (%s), want %s", c->name,
               ota_strerror_name(r->err), r->why,
               ota_strerror_name(c->want_err));
  if (c->disabled) {
    cr_assert_eq(r->coap_code, c->refusal == OTA_RX_REFUSE_400
                                   ? OTA_COAP_BAD_REQUEST
                                   : OTA_COAP_SERVICE_UNAVAILABLE);
    cr_assert_eq(W.begins + W.applies + W.reboots + W.writes, 0);
    cr_assert_eq(W.rx.state, OTA_RX_IDLE);
    return;
  }
  /* The transfer ran in the mode both sides agreed on. */
  cr_assert_eq(W.tx.fast, c->tx_fast && c->rx_fast);
  cr_assert_eq(W.rx.fast, W.tx.fast);
  cr_assert_eq(W.last_total, c->size);
  cr_assert_eq(W.last_sent, c->size, "progress reached the total");
  cr_assert_eq(ota_rx_received(&W.rx), W.tx.nchunks);
  cr_assert_eq(memcmp(W.staging, W.mod, c->size), 0, "staging == module");
  cr_assert_eq(W.reboots, 1, "the device always resets");
  cr_assert_eq(W.rx.state, OTA_RX_DONE);

  bool lossy = c->drop_every || c->drop_first || c->drop_last || c->drop_pct;
  if (lossy || c->corrupt >= 0)
    cr_assert_gt(W.tx.n_resent, 0, "lost/corrupted chunks were resent");
  if (lossy && W.tx.fast && !c->device_done)
    cr_assert_gt(W.rx.n_missed_sent, 0, "the device sent ChunkMissed");
  if (c->corrupt >= 0)
    cr_assert_eq(W.rx.n_bad_crc, 1);

  if (c->verify_err) {
    cr_assert_eq(W.rejects, 1);
    cr_assert_eq(W.applies, 0, "an invalid module is never applied");
    cr_assert_eq(W.rx_rep.err, c->verify_err);
    cr_assert_eq(r->done.code,
                 ota_rx_syserr_from_err(c->form == OTA_DONE_FORM_INT
                                            ? c->verify_err
                                            : OTA_EIO)); /* "error" = generic */
    return;
  }
  if (W.tx.fast) {
    /* Ack clocking: one ping per window that did not end the round, and the
     * windows grew on the instant pongs of this zero-delay world. */
    cr_assert_gt(W.tx.n_pings, 0);
    cr_assert_eq(W.pings_seen, W.tx.n_pings);
    /* Every ping but one still out when the device finished on its own
     * (<= 0.7.x) got its pong or timed out. */
    uint32_t answered = W.tx.n_pongs + W.tx.n_ping_lost;
    cr_assert_leq(answered, W.tx.n_pings);
    cr_assert_geq(answered + (r->device_done ? 1u : 0u), W.tx.n_pings);
    if (c->lose_ping)
      cr_assert_eq(W.tx.n_ping_lost, W.tx.n_pings / c->lose_ping);
    if (!c->lose_ping && W.tx.nchunks > 16 + 32 + 64)
      cr_assert_eq(W.tx.max_win, W.tx.cfg.window_max);
  } else {
    cr_assert_eq(W.tx.n_pings, 0, "no pings in normal mode");
  }
  cr_assert_eq(W.applies, 1);
  cr_assert_eq(W.rejects, 0);
  bool by_device = c->device_done && lossy;
  cr_assert_eq(r->device_done, by_device);
  if (!by_device) {
    cr_assert(r->has_done);
    cr_assert_eq(r->done.form, c->form, "payload form parsed");
    cr_assert(r->done.ok);
  }
}

/* ---- ack-clocked windows, step by step ---- */

/* What one batch of sender effects holds. */
typedef struct {
  uint32_t chunks; /* NON chunks */
  int pings;       /* CON 0.00 without token */
  bool ping_last;  /* the batch ends with the ping */
  uint16_t ping_mid;
  int dones; /* UpdateDone requests */
} batch_t;

static batch_t take(ota_outbox_t *ob) {
  batch_t b = {0};
  for (size_t i = 0; i < ob->n; i++) {
    ota_coap_msg_t m;
    if (ob->fx[i].kind != OTA_FX_SEND)
      continue;
    cr_assert_eq(ota_outbox_msg(ob, &ob->fx[i], &m), 0);
    ota_msg_kind_t k = ota_msg_classify(&m, OTA_DIR_TO_DEVICE);
    b.ping_last = false;
    if (k == OTA_MSG_CHUNK) {
      cr_assert_eq(m.type, OTA_COAP_NON);
      b.chunks++;
    } else if (k == OTA_MSG_PING) {
      cr_assert_eq(m.tkl, 0, "a ping has no token");
      cr_assert_eq(m.payload_len, 0);
      cr_assert_eq(m.nopt, 0);
      b.pings++;
      b.ping_last = true;
      b.ping_mid = m.mid;
    } else if (k == OTA_MSG_UPDATE_DONE) {
      b.dones++;
    }
  }
  ota_outbox_clear(ob);
  return b;
}

/* Started, UpdateReady (fast) answered: the first window is out. */
static batch_t start_fast(ota_tx_t *tx, ota_outbox_t *ob, const uint8_t *mod,
                          size_t len, uint32_t ping_timeout) {
  ota_tx_cfg_t cfg;
  ota_tx_config_default(&cfg);
  cfg.ping_timeout_ms = ping_timeout;
  ota_tx_init(tx, &cfg);
  ota_outbox_init(ob);
  cr_assert_eq(ota_tx_start(tx, mod, len, 0, ob), 0);
  ota_outbox_clear(ob);
  ota_coap_msg_t r;
  uint8_t one = 1, tok = tx->cur_token;
  ota_coap_msg_init(&r, OTA_COAP_CON, OTA_COAP_CHANGED, 900);
  cr_assert_eq(ota_coap_set_token(&r, &tok, 1), 0);
  ota_coap_set_payload(&r, &one, 1);
  cr_assert_eq(ota_tx_on_message(tx, &r, 0, ob), 0);
  cr_assert_eq(tx->state, OTA_TX_WINDOW);
  return take(ob);
}

typedef enum {
  REPLY_ACK,       /* empty ACK with the ping's id */
  REPLY_RST,       /* RST with the ping's id */
  REPLY_API,       /* ota_tx_on_pong() (adapter with its own ids) */
  REPLY_OTHER_MID, /* an empty ACK of something else */
  REPLY_NONE,      /* lost: the fallback timer */
} reply_t;

typedef struct {
  char name[40];
  reply_t reply;
  uint32_t at_ms;     /* when the reply (or timer call) comes after the ping */
  bool next_window;   /* a new window goes out */
  uint16_t next_size; /* ... of this many chunks */
  bool lost;          /* counted as a lost ping */
} clock_case_t;

ParameterizedTestParameters(ota, window_clock) {
  /* Defaults window 16, window_max 64, grow_rtt_ms 100; ping wait 2000 ms. */
  static clock_case_t cases[] = {
      {"ACK, fast: window doubles", REPLY_ACK, 5, true, 32, false},
      {"ACK at grow_rtt_ms: doubles", REPLY_ACK, 100, true, 32, false},
      {"ACK, slow: window kept", REPLY_ACK, 101, true, 16, false},
      {"ACK just before the timer", REPLY_ACK, 1999, true, 16, false},
      {"RST counts as the pong", REPLY_RST, 50, true, 32, false},
      {"ota_tx_on_pong()", REPLY_API, 500, true, 16, false},
      {"ACK of another mid: wait", REPLY_OTHER_MID, 10, false, 0, false},
      {"timer early: wait", REPLY_NONE, 1999, false, 0, false},
      {"lost ping: timer sends on", REPLY_NONE, 2000, true, 16, true},
  };
  return cr_make_param_array(clock_case_t, cases,
                             sizeof(cases) / sizeof(cases[0]));
}

static uint8_t big_mod[100 * 512];

ParameterizedTest(clock_case_t *c, ota, window_clock) {
  static ota_tx_t tx;
  static ota_outbox_t ob;
  batch_t b = start_fast(&tx, &ob, big_mod, sizeof(big_mod), 2000);
  cr_assert_eq(b.chunks, tx.cfg.window, "first window");
  cr_assert_eq(b.pings, 1, "one ping after the window");
  cr_assert(b.ping_last, "the ping follows the window's chunks");
  cr_assert_eq(ota_tx_next_deadline(&tx), tx.cfg.ping_timeout_ms);
  /* Nothing more goes out before the pong or the timer. */
  cr_assert_eq(ota_tx_on_timer(&tx, 1, &ob), 0);
  cr_assert_eq(ob.n, 0);

  ota_coap_msg_t r;
  uint64_t t = c->at_ms;
  switch (c->reply) {
  case REPLY_ACK:
  case REPLY_RST:
  case REPLY_OTHER_MID:
    ota_msg_build_empty(&r, c->reply == REPLY_RST ? OTA_COAP_RST : OTA_COAP_ACK,
                        c->reply == REPLY_OTHER_MID ? (uint16_t)(b.ping_mid - 1)
                                                    : b.ping_mid);
    cr_assert_eq(ota_tx_on_message(&tx, &r, t, &ob), 0);
    break;
  case REPLY_API:
    cr_assert_eq(ota_tx_on_pong(&tx, t, &ob), 0);
    break;
  case REPLY_NONE:
    cr_assert_eq(ota_tx_on_timer(&tx, t, &ob), 0);
    break;
  }
  batch_t n = take(&ob);
  cr_assert_eq(tx.state, OTA_TX_WINDOW);
  cr_assert_eq(tx.n_ping_lost, c->lost ? 1u : 0u);
  if (!c->next_window) {
    cr_assert_eq(n.chunks + n.pings, 0, "%s: nothing sent", c->name);
    cr_assert(tx.ping_out);
    return;
  }
  cr_assert_eq(n.chunks, c->next_size, "%s: window of %u, got %u", c->name,
               c->next_size, n.chunks);
  cr_assert_eq(n.pings, 1);
  cr_assert(n.ping_last);
  cr_assert_neq(n.ping_mid, b.ping_mid, "a fresh id per ping");
  cr_assert_eq(tx.n_pings, 2);
  if (c->reply != REPLY_NONE) {
    cr_assert_eq(tx.pong_ms, c->at_ms, "round trip measured");
    /* The next fallback waits twice the measured round trip if longer. */
    uint64_t wait = 2ull * c->at_ms > 2000 ? 2ull * c->at_ms : 2000;
    cr_assert_eq(ota_tx_next_deadline(&tx), t + wait);
  }
  /* A late pong of the first ping is not the second one's. */
  ota_msg_build_empty(&r, OTA_COAP_ACK, b.ping_mid);
  cr_assert_eq(ota_tx_on_message(&tx, &r, t + 1, &ob), 0);
  cr_assert_eq(ob.n, 0, "late pong of an old ping ignored");
}

/* The window grows to window_max on quick pongs, the last window's pong
 * brings the UpdateDone, and pongs outside WINDOW change nothing. */
Test(ota, window_growth_and_end) {
  static ota_tx_t tx;
  static ota_outbox_t ob;
  batch_t b = start_fast(&tx, &ob, big_mod, sizeof(big_mod), 2000);
  uint32_t sizes[8], n = 0, total = b.chunks;
  sizes[n++] = b.chunks;
  uint64_t t = 0;
  while (b.pings) {
    cr_assert_lt(n, 8);
    t += 10;
    cr_assert_eq(ota_tx_on_pong(&tx, t, &ob), 0);
    b = take(&ob);
    sizes[n++] = b.chunks;
    total += b.chunks;
  }
  /* 100 chunks: 16 + 32 + 52 (the rest, < 64), each with its ping; the
   * last pong brings the UpdateDone. */
  cr_assert_eq(n, 4);
  cr_assert_eq(sizes[0], 16);
  cr_assert_eq(sizes[1], 32);
  cr_assert_eq(sizes[2], 100 - 16 - 32);
  cr_assert_eq(sizes[3], 0);
  cr_assert_eq(total, 100);
  cr_assert_eq(tx.n_pings, 3);
  cr_assert_eq(b.dones, 1, "UpdateDone at the last window's pong");
  cr_assert_eq(tx.state, OTA_TX_DONE_SENT);
  cr_assert_eq(ota_tx_on_pong(&tx, t + 1, &ob), 0);
  cr_assert_eq(ob.n, 0);
  cr_assert_eq(tx.state, OTA_TX_DONE_SENT);
}

/* ping_timeout_ms 0: no pings, the next window at the next timer call. */
Test(ota, window_unpaced) {
  static ota_tx_t tx;
  static ota_outbox_t ob;
  batch_t b = start_fast(&tx, &ob, big_mod, sizeof(big_mod), 0);
  cr_assert_eq(b.chunks, 16);
  cr_assert_eq(b.pings, 0);
  cr_assert_eq(ota_tx_next_deadline(&tx), 0);
  uint32_t total = b.chunks;
  for (int i = 0; i < 10 && tx.state == OTA_TX_WINDOW; i++) {
    cr_assert_eq(ota_tx_on_timer(&tx, 0, &ob), 0);
    b = take(&ob);
    cr_assert_eq(b.pings, 0);
    total += b.chunks;
  }
  cr_assert_eq(total, 100);
  cr_assert_eq(tx.state, OTA_TX_DONE_SENT);
  cr_assert_eq(tx.n_pings, 0);
}

/* ---- module size limits ---- */
Test(ota, tx_refuses_oversize_module) {
  ota_tx_t tx;
  static ota_outbox_t ob;
  static uint8_t big[OTA_STAGING_SIZE + 1];
  ota_outbox_init(&ob);
  ota_tx_init(&tx, NULL);
  cr_assert_eq(ota_tx_start(&tx, big, sizeof(big), 0, &ob), OTA_ETOOBIG);
  cr_assert_eq(ob.n, 0);
  cr_assert_eq(tx.state, OTA_TX_IDLE);
  cr_assert_eq(ota_tx_start(&tx, big, sizeof(big) - 1, 0, &ob), 0);
  cr_assert_eq(tx.state, OTA_TX_BEGIN);
  cr_assert_eq(ota_outbox_count(&ob, OTA_FX_SEND), 1);
}

/* Build a cloud request as the sender would and decode it (views into buf). */
static void make_begin(uint8_t *buf, size_t cap, ota_coap_msg_t *m,
                       uint32_t file_size, uint8_t tok) {
  ota_msg_update_begin_t ub = {
      .flags = 1, .chunk_size = 512, .file_size = file_size};
  uint8_t pl[12];
  ota_coap_msg_t b;
  size_t len;
  cr_assert_eq(ota_msg_update_begin_encode(&ub, pl, sizeof(pl)), 0);
  cr_assert_eq(
      ota_msg_build_request(&b, OTA_COAP_CON, OTA_COAP_POST, 77, &tok, 1, 'u'),
      0);
  ota_coap_set_payload(&b, pl, sizeof(pl));
  cr_assert_eq(ota_coap_encode(&b, buf, cap, &len), 0);
  cr_assert_eq(ota_coap_decode(buf, len, m), 0);
}

typedef struct {
  ota_rx_refusal_t refusal;
  uint32_t size;
  bool accept;
} begin_case_t;

ParameterizedTestParameters(ota, rx_begin_limits) {
  static begin_case_t cases[] = {
      {OTA_RX_REFUSE_400, OTA_STAGING_SIZE + 1, false},
      {OTA_RX_REFUSE_503, OTA_STAGING_SIZE + 1, false},
      {OTA_RX_REFUSE_503, OTA_STAGING_SIZE, true},
      {OTA_RX_REFUSE_400, 1, true},
      {OTA_RX_REFUSE_400, 0, false},
  };
  return cr_make_param_array(begin_case_t, cases,
                             sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(begin_case_t *c, ota, rx_begin_limits) {
  static ota_rx_t rx;
  static ota_outbox_t ob;
  ota_rx_cfg_t cfg;
  ota_rx_config_default(&cfg);
  cfg.refusal = c->refusal;
  ota_rx_init(&rx, &cfg);
  ota_outbox_init(&ob);
  uint8_t buf[64];
  ota_coap_msg_t m, reply;
  make_begin(buf, sizeof(buf), &m, c->size, 0x42);
  cr_assert_eq(ota_rx_on_message(&rx, &m, 0, &ob), 0);
  cr_assert_eq(rx.state, c->accept ? OTA_RX_RECEIVING : OTA_RX_IDLE);
  cr_assert_geq(ob.n, 1);
  cr_assert_eq(ota_outbox_msg(&ob, &ob.fx[0], &reply), 0);
  cr_assert_eq(reply.type, OTA_COAP_ACK);
  cr_assert_eq(reply.mid, m.mid);
  if (c->accept) {
    cr_assert_eq(reply.code, OTA_COAP_EMPTY);
    cr_assert_eq(ota_outbox_msg(&ob, &ob.fx[1], &reply), 0);
    cr_assert_eq(reply.type, OTA_COAP_CON);
    cr_assert_eq(reply.code, OTA_COAP_CHANGED);
    cr_assert_eq(reply.tkl, 1);
    cr_assert_eq(reply.token[0], 0x42);
    cr_assert_eq(reply.payload_len, 1);
    cr_assert_eq(reply.payload[0], 1, "fast accepted");
  } else if (c->refusal == OTA_RX_REFUSE_400) {
    cr_assert_eq(reply.code, OTA_COAP_BAD_REQUEST);
    cr_assert_eq(reply.tkl, 0);
  } else {
    cr_assert_eq(reply.code, OTA_COAP_SERVICE_UNAVAILABLE);
    cr_assert_eq(reply.tkl, 1);
    cr_assert_eq(reply.token[0], 0x42);
  }
}

/* A Chunk or UpdateDone while not updating: acknowledged and ignored. */
Test(ota, rx_ignores_requests_when_idle) {
  static ota_rx_t rx;
  static ota_outbox_t ob;
  ota_rx_init(&rx, NULL);
  ota_outbox_init(&ob);
  uint8_t data[100], store[6], buf[200], tok = 9;
  memset(data, 0xab, sizeof(data));
  ota_msg_chunk_t ch = {
      .crc = ota_crc32(data, sizeof(data)), .data = data, .len = sizeof(data)};
  ota_coap_msg_t b, m;
  size_t len;
  cr_assert_eq(ota_msg_build_chunk(&b, OTA_COAP_CON, 5, tok, &ch, store), 0);
  cr_assert_eq(ota_coap_encode(&b, buf, sizeof(buf), &len), 0);
  cr_assert_eq(ota_coap_decode(buf, len, &m), 0);
  cr_assert_eq(ota_rx_on_message(&rx, &m, 0, &ob), 0);
  cr_assert_eq(
      ota_msg_build_request(&b, OTA_COAP_CON, OTA_COAP_PUT, 6, &tok, 1, 'u'),
      0);
  cr_assert_eq(ota_coap_encode(&b, buf, sizeof(buf), &len), 0);
  cr_assert_eq(ota_coap_decode(buf, len, &m), 0);
  cr_assert_eq(ota_rx_on_message(&rx, &m, 0, &ob), 0);
  cr_assert_eq(ob.n, 2);
  for (size_t i = 0; i < ob.n; i++) {
    cr_assert_eq(ob.fx[i].kind, OTA_FX_SEND);
    cr_assert_eq(ota_outbox_msg(&ob, &ob.fx[i], &m), 0);
    cr_assert_eq(m.type, OTA_COAP_ACK);
    cr_assert_eq(m.code, OTA_COAP_EMPTY);
    cr_assert_eq(m.mid, 5 + i);
  }
  cr_assert_eq(rx.n_ignored, 2);
  cr_assert_eq(rx.state, OTA_RX_IDLE);
}

/* <= 0.7.x: with chunks still missing, ChunkMissed again every 3 s. */
Test(ota, rx_old_release_repeats_chunk_missed) {
  static ota_rx_t rx;
  static ota_outbox_t ob;
  ota_rx_cfg_t cfg;
  ota_rx_config_default(&cfg);
  ota_rx_config_release(&cfg, 0, 6, 4);
  ota_rx_init(&rx, &cfg);
  ota_outbox_init(&ob);
  uint8_t buf[64], tok = 3;
  ota_coap_msg_t m, b;
  size_t len;
  make_begin(buf, sizeof(buf), &m, 2048, tok);
  cr_assert_eq(ota_rx_on_message(&rx, &m, 0, &ob), 0);
  cr_assert_eq(
      ota_msg_build_request(&b, OTA_COAP_CON, OTA_COAP_PUT, 8, &tok, 1, 'u'),
      0);
  cr_assert_eq(ota_coap_encode(&b, buf, sizeof(buf), &len), 0);
  cr_assert_eq(ota_coap_decode(buf, len, &m), 0);
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_rx_on_message(&rx, &m, 100, &ob), 0);
  cr_assert_eq(rx.state, OTA_RX_MISSING);
  cr_assert_eq(ota_outbox_count(&ob, OTA_FX_SEND), 2); /* 4.00 + ChunkMissed */
  cr_assert_eq(ota_rx_next_deadline(&rx), 100 + cfg.missed_resend_ms);
  ota_outbox_clear(&ob);
  cr_assert_eq(ota_rx_on_timer(&rx, 100 + cfg.missed_resend_ms - 1, &ob), 0);
  cr_assert_eq(ob.n, 0);
  cr_assert_eq(ota_rx_on_timer(&rx, 100 + cfg.missed_resend_ms, &ob), 0);
  cr_assert_eq(ob.n, 1);
  cr_assert_eq(ota_outbox_msg(&ob, &ob.fx[0], &m), 0);
  cr_assert_eq(ota_msg_classify(&m, OTA_DIR_TO_CLOUD), OTA_MSG_CHUNK_MISSED);
  cr_assert_eq(m.tkl, 0);
  uint16_t idx[8];
  size_t n = 0;
  cr_assert_eq(ota_msg_chunk_missed_parse(m.payload, m.payload_len, idx, 8, &n),
               0);
  cr_assert_eq(n, 2, "no chunk in flight: max(20%%, 2) = 2 indexes");
  cr_assert_eq(idx[0], 0);
  cr_assert_eq(idx[1], 1);
}

/* ---- Device OS error codes ---- */
Test(ota, syserr_round_trip) {
  for (int code = -1300; code >= -1390; code -= 10) {
    int err = ota_rx_err_from_syserr(code);
    cr_assert_lt(err, 0);
    cr_assert_eq(ota_rx_syserr_from_err(err), code, "code %d", code);
  }
  cr_assert_eq(ota_rx_syserr_from_err(0), 0);
  cr_assert_eq(ota_rx_syserr_from_err(OTA_ENOMEM), -1320);
}

typedef struct {
  int major, minor, patch;
  ota_done_form_t form;
  bool device_done;
  ota_rx_refusal_t refusal;
} release_case_t;

ParameterizedTestParameters(ota, release_behaviour) {
  static release_case_t cases[] = {
      {0, 5, 3, OTA_DONE_FORM_NONE, true, OTA_RX_REFUSE_400},
      {0, 6, 4, OTA_DONE_FORM_OKERR, true, OTA_RX_REFUSE_400},
      {0, 7, 0, OTA_DONE_FORM_OKERR, true, OTA_RX_REFUSE_400},
      {0, 8, 0, OTA_DONE_FORM_OKERR, false, OTA_RX_REFUSE_400},
      {1, 1, 1, OTA_DONE_FORM_OKERR, false, OTA_RX_REFUSE_400},
      {1, 2, 1, OTA_DONE_FORM_OKERR, false, OTA_RX_REFUSE_503},
      {1, 5, 2, OTA_DONE_FORM_OKERR, false, OTA_RX_REFUSE_503},
      {2, 3, 1, OTA_DONE_FORM_INT, false, OTA_RX_REFUSE_503},
  };
  return cr_make_param_array(release_case_t, cases,
                             sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(release_case_t *c, ota, release_behaviour) {
  ota_rx_cfg_t cfg;
  ota_rx_config_default(&cfg);
  ota_rx_config_release(&cfg, c->major, c->minor, c->patch);
  cr_assert_eq(cfg.done_form, c->form);
  cr_assert_eq(cfg.device_done, c->device_done);
  cr_assert_eq(cfg.refusal, c->refusal);
}
