/* Tests of the device-side CoAP channel (core/src/coap_chan.c): retransmission
 * schedule (RFC 7252 4.2, PROTOCOL.md 2.1), give-up, ACK matching, dedup. */
#include "otalab/coap_chan.h"
#include "otalab/err.h"
#include "otalab/msg.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static ota_coap_chan_t *ch;
static ota_outbox_t *ob;

static void setup(void) {
  ch = calloc(1, sizeof(*ch));
  ob = calloc(1, sizeof(*ob));
  ota_coap_chan_cfg_t cfg;
  ota_coap_chan_cfg_default(&cfg);
  cfg.first_mid = 0x1000;
  cfg.seed = 42;
  ota_coap_chan_init(ch, &cfg);
  ota_outbox_init(ob);
}

static void teardown(void) {
  ota_coap_chan_free(ch);
  ota_coap_chan_free(ch); /* safe twice */
  free(ch);
  free(ob);
}

TestSuite(coap_chan, .init = setup, .fini = teardown);

static void send_ping(uint64_t now, uint16_t *mid) {
  ota_coap_msg_t m;
  ota_msg_build_empty(&m, OTA_COAP_CON, 0);
  cr_assert_eq(ota_coap_chan_send(ch, &m, now, ob, mid), 0);
}

/* Drive the timer to give-up, record when each SEND happened. */
static size_t run_schedule(uint64_t *sends, uint64_t *gave_up) {
  size_t n = 1;
  sends[0] = 0;
  *gave_up = 0;
  ota_outbox_clear(ob);
  for (int guard = 0; guard < 10; guard++) {
    uint64_t d = ota_coap_chan_next_deadline(ch);
    if (d == UINT64_MAX)
      break;
    cr_assert_eq(ota_coap_chan_on_timer(ch, d - 1, ob), 0);
    cr_assert_eq(ob->n, 0, "nothing fires before the deadline");
    cr_assert_eq(ota_coap_chan_on_timer(ch, d, ob), 0);
    cr_assert_eq(ob->n, 1);
    if (ob->fx[0].kind == OTA_FX_SEND)
      sends[n++] = d;
    else {
      cr_assert_eq(ob->fx[0].kind, OTA_FX_TIMEOUT);
      cr_expect_eq(ob->fx[0].arg, OTA_ETIMEDOUT);
      *gave_up = d;
    }
    ota_outbox_clear(ob);
  }
  return n;
}

Test(coap_chan, retransmission_schedule_and_give_up) {
  uint16_t mid;
  send_ping(0, &mid);
  cr_expect_eq(mid, 0x1000);
  cr_expect_eq(ota_coap_chan_peek_mid(ch), 0x1001);
  uint64_t sends[8], gave_up;
  size_t n = run_schedule(sends, &gave_up);
  cr_assert_eq(n, 4, "1 send + MAX_RETRANSMIT 3");
  uint64_t t0 = sends[1];
  cr_expect(t0 >= 4000 && t0 <= 6000, "T0 %llu in [4 s, 6 s]",
            (unsigned long long)t0);
  cr_expect_eq(sends[2] - sends[1], 2 * t0);
  cr_expect_eq(sends[3] - sends[2], 4 * t0);
  cr_expect_eq(gave_up - sends[3], 8 * t0);
  cr_expect_eq(ch->n_retransmits, 3);
  cr_expect_eq(ch->n_timeouts, 1);
  cr_expect_eq(ota_coap_chan_pending_count(ch), 0);
  cr_expect_eq(ota_coap_chan_next_deadline(ch), UINT64_MAX);
}

/* Same seed, same jitter; the jitter spreads over the +50% range. */
Test(coap_chan, deterministic_with_seed) {
  uint64_t first[20];
  for (int run = 0; run < 2; run++) {
    ota_coap_chan_cfg_t cfg;
    ota_coap_chan_cfg_default(&cfg);
    cfg.seed = 7;
    ota_coap_chan_init(ch, &cfg);
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 20; i++) {
      ota_outbox_clear(ob);
      send_ping(1000, NULL);
      uint64_t d = ota_coap_chan_next_deadline(ch) - 1000;
      if (run == 0)
        first[i] = d;
      else
        cr_expect_eq(d, first[i], "run 2 differs at %d", i);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
      ota_coap_chan_free(ch);
    }
    cr_expect(lo >= 4000 && hi <= 6000 && hi - lo > 500, "jitter %llu..%llu",
              (unsigned long long)lo, (unsigned long long)hi);
  }
  ota_coap_chan_cfg_t cfg;
  ota_coap_chan_cfg_default(&cfg);
  cfg.seed = 8;
  ota_coap_chan_init(ch, &cfg);
  int differ = 0;
  for (int i = 0; i < 20; i++) {
    send_ping(1000, NULL);
    differ += ota_coap_chan_next_deadline(ch) - 1000 != first[i];
    ota_coap_chan_free(ch);
  }
  cr_expect_gt(differ, 0, "another seed gives another schedule");
}

Test(coap_chan, ack_matching) {
  uint16_t a, b;
  send_ping(0, &a);
  send_ping(0, &b);
  cr_expect_neq(a, b);
  cr_expect_eq(ota_coap_chan_pending_count(ch), 2);
  ota_outbox_clear(ob);
  /* A stray ACK for an unknown mid is dropped. */
  uint8_t stray[4] = {0x60, 0, 0x77, 0x77};
  cr_expect_eq(ota_coap_chan_on_datagram(ch, stray, 4, 10, ob), 0);
  cr_expect_eq(ob->n, 0);
  uint8_t ack[4] = {0x60, 0, (uint8_t)(b >> 8), (uint8_t)b};
  cr_expect_eq(ota_coap_chan_on_datagram(ch, ack, 4, 10, ob), 0);
  cr_assert_eq(ob->n, 1);
  cr_expect_eq(ob->fx[0].kind, OTA_FX_DELIVER);
  cr_expect_eq(ob->fx[0].mid, b);
  cr_expect_eq(ota_coap_chan_pending_count(ch), 1);
  /* A second ACK for the same mid matches nothing. */
  ota_outbox_clear(ob);
  cr_expect_eq(ota_coap_chan_on_datagram(ch, ack, 4, 11, ob), 0);
  cr_expect_eq(ob->n, 0);
  /* RST releases too. */
  uint8_t rst[4] = {0x70, 0, (uint8_t)(a >> 8), (uint8_t)a};
  cr_expect_eq(ota_coap_chan_on_datagram(ch, rst, 4, 12, ob), 0);
  cr_expect_eq(ob->n, 1);
  cr_expect_eq(ota_coap_chan_pending_count(ch), 0);
  cr_expect_eq(ota_coap_chan_next_deadline(ch), UINT64_MAX);
}

Test(coap_chan, duplicate_request_gets_cached_reply) {
  /* Describe GET from the cloud, mid 0x0101, token a1. */
  const uint8_t req[] = {0x41, 0x01, 0x01, 0x01, 0xa1, 0xb1, 0x64, 0x41, 0x01};
  cr_assert_eq(ota_coap_chan_on_datagram(ch, req, sizeof(req), 100, ob), 0);
  cr_assert_eq(ob->n, 1);
  cr_expect_eq(ob->fx[0].kind, OTA_FX_DELIVER);
  ota_coap_msg_t in, reply;
  cr_assert_eq(ota_outbox_msg(ob, &ob->fx[0], &in), 0);
  cr_expect_eq(ota_msg_classify(&in, OTA_DIR_TO_DEVICE), OTA_MSG_DESCRIBE);
  /* Duplicate before we answered: dropped, not delivered twice. */
  ota_outbox_clear(ob);
  cr_assert_eq(ota_coap_chan_on_datagram(ch, req, sizeof(req), 200, ob), 0);
  cr_expect_eq(ob->n, 0);
  /* Piggy-backed answer: ACK 2.05 with JSON. */
  const char json[] = "{\"p\":10}";
  ota_msg_build_ack_response(&reply, &in, OTA_COAP_CONTENT, json,
                             sizeof(json) - 1);
  cr_assert_eq(ota_coap_chan_send(ch, &reply, 300, ob, NULL), 0);
  cr_assert_eq(ob->n, 1);
  size_t rlen = ob->fx[0].len;
  uint8_t first[64];
  memcpy(first, ota_outbox_bytes(ob, &ob->fx[0]), rlen);
  cr_expect_eq(first[0], 0x61);
  cr_expect_eq(first[2], 0x01);
  cr_expect_eq(first[3], 0x01, "ACK reuses the request's mid");
  cr_expect_eq(ota_coap_chan_pending_count(ch), 0, "ACKs are not retried");
  /* Duplicate after the answer: the same bytes again, nothing delivered. */
  ota_outbox_clear(ob);
  cr_assert_eq(ota_coap_chan_on_datagram(ch, req, sizeof(req), 4000, ob), 0);
  cr_assert_eq(ob->n, 1);
  cr_expect_eq(ob->fx[0].kind, OTA_FX_SEND);
  cr_expect_eq(ob->fx[0].len, rlen);
  cr_expect(memcmp(ota_outbox_bytes(ob, &ob->fx[0]), first, rlen) == 0);
  cr_expect_eq(ch->n_duplicates, 2);
  /* After EXCHANGE_LIFETIME the same mid is a new request. */
  ota_outbox_clear(ob);
  cr_assert_eq(
      ota_coap_chan_on_datagram(ch, req, sizeof(req), 100 + 247000, ob), 0);
  cr_expect_eq(ob->fx[0].kind, OTA_FX_DELIVER);
}

Test(coap_chan, bad_datagrams_are_data) {
  const uint8_t bad[] = {0x80, 0x01, 0x00};
  cr_expect_eq(ota_coap_chan_on_datagram(ch, bad, sizeof(bad), 0, ob),
               OTA_ETRUNC);
  cr_expect_eq(ob->n, 0);
  cr_expect_eq(ch->n_bad, 1);
}

Test(coap_chan, limits) {
  for (int i = 0; i < OTA_COAP_CHAN_PENDING; i++)
    send_ping(0, NULL);
  ota_coap_msg_t m;
  ota_msg_build_empty(&m, OTA_COAP_CON, 0);
  size_t before = ob->n;
  uint16_t next = ota_coap_chan_peek_mid(ch);
  cr_expect_eq(ota_coap_chan_send(ch, &m, 0, ob, NULL), OTA_EBUSY);
  cr_expect_eq(ob->n, before, "nothing sent on error");
  cr_expect_eq(ota_coap_chan_peek_mid(ch), next, "no mid consumed on error");
  /* NON is not limited; too big is refused. */
  static uint8_t big[OTA_COAP_CHAN_MSG_MAX];
  ota_msg_build_request(&m, OTA_COAP_NON, OTA_COAP_POST, 0, NULL, 0, 'e');
  ota_coap_set_payload(&m, big, sizeof(big));
  cr_expect_eq(ota_coap_chan_send(ch, &m, 0, ob, NULL), OTA_ENOBUFS);
  ota_coap_set_payload(&m, big, 100);
  cr_expect_eq(ota_coap_chan_send(ch, &m, 0, ob, NULL), 0);
  /* Session resume: the counter continues from a saved value. */
  ota_coap_chan_set_mid(ch, 0xffff);
  uint16_t a, b;
  cr_expect_eq(ota_coap_chan_send(ch, &m, 0, ob, &a), 0);
  cr_expect_eq(ota_coap_chan_send(ch, &m, 0, ob, &b), 0);
  cr_expect_eq(a, 0xffff);
  cr_expect_eq(b, 0, "16-bit wrap");
  /* The outbox refuses when full, and the channel reports it. */
  ota_outbox_clear(ob);
  while (ob->n < OTA_OUTBOX_MAX_FX)
    ota_outbox_push_bytes(ob, OTA_FX_LOG, 0, "x", 1);
  cr_expect_eq(ota_coap_chan_send(ch, &m, 0, ob, NULL), OTA_ENOBUFS);
  cr_expect_eq(ota_outbox_count(ob, OTA_FX_LOG), OTA_OUTBOX_MAX_FX);
  cr_expect_str_eq(ota_fx_kind_name(OTA_FX_FLASH_WRITE), "FLASH_WRITE");
}
