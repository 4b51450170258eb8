/* libFuzzer target: the Electron module parser and validator (PROTOCOL.md
 * 4.1-4.6) on arbitrary files: never crash, views stay inside the input, the
 * report agrees with its bitmask, and refreshed checksums always verify. */
#include "otalab/module.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c))                                                                  \
      abort();                                                                 \
  } while (0)

static void check_report(const ota_module_t *m, size_t size) {
  ota_module_report_t rep;
  int rc = ota_module_validate(m, size, &rep);
  CHECK((rc == 0) == (rep.defects == 0));
  CHECK(rep.n >= 0 && rep.n <= OTA_MODULE_MAX_DEFECTS);
  uint32_t seen = 0;
  for (int i = 0; i < rep.n; i++) {
    CHECK(rep.defects & rep.items[i].defect);
    CHECK(rep.items[i].err < 0 && rep.items[i].msg[0] != '\0');
    CHECK(strcmp(ota_module_defect_tag(rep.items[i].defect), "?") != 0);
    seen |= rep.items[i].defect;
  }
  if (rep.n < OTA_MODULE_MAX_DEFECTS)
    CHECK(seen == rep.defects);
  if (rep.n)
    CHECK(rc == rep.items[0].err);
  CHECK(!!(rep.defects & OTA_MODDEF_CRC) == (m->crc_stored != m->crc_computed));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ota_module_t m;
  if (ota_module_parse(data, size, &m) != 0)
    return 0;
  CHECK(m.buf == data && m.len == size);
  CHECK(m.hdr_offset + OTA_MODULE_HDR_SIZE <= size);
  check_report(&m, size);

  /* Checksums recomputed in place must verify, whatever else is wrong. */
  uint8_t *copy = malloc(size);
  CHECK(copy);
  memcpy(copy, data, size);
  CHECK(ota_module_refresh_integrity(copy, size) == 0);
  ota_module_t m2;
  if (ota_module_parse(copy, size, &m2) == 0) {
    ota_module_report_t rep;
    (void)ota_module_validate(&m2, size, &rep);
    CHECK(!(rep.defects & (OTA_MODDEF_CRC | OTA_MODDEF_SHA)));
  }
  free(copy);
  return 0;
}
