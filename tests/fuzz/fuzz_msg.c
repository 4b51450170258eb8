/* libFuzzer target: every payload decoder of the Particle message set and the
 * device's strict request parser (PROTOCOL.md 2.1-2.5, 3); never crash, and
 * what is accepted re-encodes to the same bytes or the same meaning. */
#include "otalab/coap.h"
#include "otalab/msg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c))                                                                  \
      abort();                                                                 \
  } while (0)

static int within(const void *p, size_t n, const uint8_t *buf, size_t size) {
  const uint8_t *q = p;
  return n == 0 || (q >= buf && q + n <= buf + size);
}

/* The input as a bare payload, for each payload decoder. */
static void payloads(const uint8_t *data, size_t size) {
  uint8_t out[64];
  size_t len = 0;

  ota_msg_hello_t h, h2;
  if (ota_msg_hello_parse(data, size, &h) == 0 && h.id_len == 12) {
    CHECK(ota_msg_hello_encode(&h, out, sizeof out, &len) == 0);
    CHECK(len == OTA_MSG_HELLO_PAYLOAD_LEN && size >= len);
    CHECK(memcmp(out, data, len) == 0);
    CHECK(ota_msg_hello_parse(out, len, &h2) == 0);
    CHECK(h2.flags == h.flags && h2.product_id == h.product_id &&
          !memcmp(h2.device_id, h.device_id, OTA_DEVICE_ID_LEN));
  }

  ota_msg_update_begin_t u;
  CHECK(ota_msg_update_begin_parse(data, size, &u) == 0);
  if (!u.defaults) {
    CHECK(ota_msg_update_begin_encode(&u, out, sizeof out) == 0);
    CHECK(memcmp(out, data, OTA_UPDATE_BEGIN_LEN) == 0);
  } else {
    CHECK(size < OTA_UPDATE_BEGIN_LEN && u.chunk_size == OTA_CHUNK_SIZE);
  }

  uint16_t idx[OTA_CHUNK_MISSED_MAX];
  size_t n = 0;
  int rc =
      ota_msg_chunk_missed_parse(data, size, idx, OTA_CHUNK_MISSED_MAX, &n);
  if (rc == 0) {
    uint8_t enc[2 * OTA_CHUNK_MISSED_MAX];
    CHECK(n * 2 == size);
    CHECK(ota_msg_chunk_missed_encode(idx, n, enc, sizeof enc, &len) == 0);
    CHECK(len == size && memcmp(enc, data, len) == 0);
  } else {
    CHECK(size % 2 || size > 2 * OTA_CHUNK_MISSED_MAX);
  }

  ota_msg_goodbye_t g, g2;
  if (ota_msg_goodbye_parse(data, size, &g) == 0) {
    CHECK(g.nvals <= 4);
    CHECK(ota_msg_goodbye_encode(&g, out, sizeof out, &len) == 0);
    CHECK(ota_msg_goodbye_parse(out, len, &g2) == 0);
    CHECK(g2.flags == g.flags && g2.nvals == g.nvals &&
          !memcmp(g2.vals, g.vals, g.nvals * sizeof g.vals[0]));
  }

  ota_msg_done_result_t r, r2;
  if (ota_msg_done_result_parse(data, size, &r) == 0) {
    char js[160];
    CHECK(ota_msg_done_result_encode(&r, js, sizeof js, &len) == 0);
    CHECK(ota_msg_done_result_parse((const uint8_t *)js, len, &r2) == 0);
    CHECK(r2.form == r.form && r2.ok == r.ok && r2.code == r.code &&
          r2.has_module == r.has_module);
    if (r.has_module)
      CHECK(r2.module.func == r.module.func &&
            r2.module.index == r.module.index &&
            r2.module.version == r.module.version && r2.platform == r.platform);
  }
}

/* The input as a datagram: options-level decoders, then the strict parser. */
static void datagram(const uint8_t *data, size_t size) {
  ota_coap_msg_t m;
  if (ota_coap_decode(data, size, &m) == 0) {
    ota_msg_chunk_t c;
    if (ota_msg_chunk_parse(&m, &c) == 0) {
      const ota_coap_opt_t *q = ota_coap_uri_query(&m, 0);
      CHECK(q && q->len == 4 && c.crc == ota_be32(q->val));
      CHECK(within(c.data, c.len, data, size));
    }
    ota_msg_event_t ev;
    if (ota_msg_event_parse(&m, &ev) == 0)
      CHECK(within(ev.name, ev.name_len, data, size) &&
            within(ev.data, ev.data_len, data, size));
    (void)ota_msg_describe_flags(&m);
    uint32_t t;
    if (ota_msg_time_parse(&m, &t) == 0)
      CHECK(m.payload_len >= 4);
  }

  ota_msg_kind_t kind = OTA_MSG_UNKNOWN;
  if (ota_msg_parse_cloud_request(data, size, &m, &kind) == 0) {
    /* What the device accepts is RFC-valid and decodes to the same message. */
    ota_coap_msg_t m2;
    CHECK(ota_coap_decode(data, size, &m2) == 0);
    CHECK(m2.type == m.type && m2.code == m.code && m2.mid == m.mid &&
          m2.payload_len == m.payload_len);
    CHECK(kind > OTA_MSG_UNKNOWN && kind < OTA_MSG_KIND_COUNT);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  payloads(data, size);
  datagram(data, size);
  return 0;
}
