/* Error code table lookups (see err.h). */
#include "otalab/err.h"

const char *ota_strerror(int err) {
  switch (err) {
#define OTA_ERR_CASE(name, value, msg)                                         \
  case value:                                                                  \
    return msg;
    OTA_ERRORS(OTA_ERR_CASE)
#undef OTA_ERR_CASE
  }
  return "unknown error";
}

const char *ota_strerror_name(int err) {
  switch (err) {
#define OTA_ERR_CASE(name, value, msg)                                         \
  case value:                                                                  \
    return #name;
    OTA_ERRORS(OTA_ERR_CASE)
#undef OTA_ERR_CASE
  }
  return "OTA_E?";
}
