/* Error code table lookups (see err.h). */
#include "otalab/err.h"

#include <stdarg.h>
#include <stdio.h>

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

int ota_errf(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}
