/* libFuzzer target: the CoAP decoder, the message classifier and the device's
 * strict request parser must never crash, and accepted input re-encodes. */
#include "otalab/coap.h"
#include "otalab/msg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ota_coap_msg_t m;
  ota_msg_kind_t k;
  if (ota_coap_decode(data, size, &m) == 0) {
    (void)ota_msg_classify(&m, OTA_DIR_TO_CLOUD);
    (void)ota_msg_classify(&m, OTA_DIR_TO_DEVICE);
    static uint8_t out[70000];
    size_t len = 0;
    /* The encoding is canonical: what we accept re-encodes byte for byte. */
    if (ota_coap_encode(&m, out, sizeof(out), &len) != 0 || len != size ||
        memcmp(out, data, size) != 0)
      abort();
    ota_msg_chunk_t c;
    ota_msg_event_t ev;
    ota_msg_done_result_t r;
    (void)ota_msg_chunk_parse(&m, &c);
    (void)ota_msg_event_parse(&m, &ev);
    (void)ota_msg_done_result_parse(m.payload, m.payload_len, &r);
  }
  (void)ota_msg_parse_cloud_request(data, size, &m, &k);
  return 0;
}
