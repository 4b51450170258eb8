/* libFuzzer target: the cloud's describe parser and what is derived from it
 * (missing dependencies, safe mode, planner view). Source: PROTOCOL.md 3.1,
 * 5.2, 7. Never crash; derived answers agree with each other. */
#include "otalab/describe.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c))                                                                  \
      abort();                                                                 \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ota_describe_t d;
  if (ota_describe_parse((const char *)data, size, &d) != 0) {
    CHECK(d.err[0] != '\0' || size == 0);
    return 0;
  }
  CHECK(d.json == (const char *)data && d.json_len == size);
  CHECK(d.nmodules <= OTA_DESCRIBE_MAX_MODULES);
  for (size_t i = 0; i < d.nmodules; i++) {
    CHECK(d.m[i].ndeps >= 0 && d.m[i].ndeps <= 2);
    CHECK(strlen(d.m[i].sha) <= OTA_DESCRIBE_SHA_HEX);
  }

  ota_modref_t miss[8];
  size_t total = ota_describe_missing_deps(&d, NULL, 0);
  size_t n = ota_describe_missing_deps(&d, miss, 8);
  CHECK(n == total);
  for (size_t i = 0; i < n && i < 8; i++) {
    CHECK(ota_describe_dep_missing(&d, &miss[i]));
    for (size_t j = 0; j < i; j++) /* de-duplicated */
      CHECK(miss[j].func != miss[i].func || miss[j].index != miss[i].index ||
            miss[j].version != miss[i].version);
  }
  (void)ota_describe_in_safe_mode(&d);

  /* The system version is the lowest of the parts present, a part at
   * version 0 (e.g. "v" repaired to 0) included. */
  uint16_t sv = ota_describe_system_version(&d), lo = 0;
  int found = 0;
  for (uint8_t idx = 1; idx <= 3; idx++) {
    const ota_describe_module_t *m = ota_describe_find(&d, OTA_FN_SYSTEM, idx);
    if (!m)
      continue;
    CHECK(m->func == OTA_FN_SYSTEM && m->index == idx);
    if (!found++ || m->version < lo)
      lo = m->version;
  }
  CHECK(sv == lo);

  ota_dev_module_t mods[OTA_DESCRIBE_MAX_MODULES];
  ota_plan_device_t dev;
  size_t k =
      ota_describe_to_plan_device(&d, mods, OTA_DESCRIBE_MAX_MODULES, 1, &dev);
  CHECK(k <= d.nmodules && dev.nmodules == k && dev.modules == mods);
  return 0;
}
