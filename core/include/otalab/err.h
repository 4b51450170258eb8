/* otalab error codes: one table for every module of core/, server, device-sim
 * and cli. Functions return 0 or a negative OTA_E* value; ota_strerror() names
 * it. */
#ifndef OTALAB_ERR_H
#define OTALAB_ERR_H

#include <stddef.h>

/* X(name, value, message). Append new codes at the end; never renumber. */
#define OTA_ERRORS(X)                                                          \
  X(OTA_OK, 0, "success")                                                      \
  X(OTA_EINVAL, -1, "invalid argument")                                        \
  X(OTA_ENOBUFS, -2, "buffer too small")                                       \
  X(OTA_ENOMEM, -3, "out of memory")                                           \
  X(OTA_EIO, -4, "I/O error")                                                  \
  X(OTA_ENOENT, -5, "not found")                                               \
  X(OTA_EPARSE, -6, "malformed input")                                         \
  X(OTA_ETRUNC, -7, "truncated input")                                         \
  X(OTA_ECRC, -8, "CRC-32 mismatch")                                           \
  X(OTA_ESHA, -9, "SHA-256 mismatch")                                          \
  X(OTA_EPLATFORM, -10, "wrong platform")                                      \
  X(OTA_ESIZE, -11, "size disagrees with the module header")                   \
  X(OTA_EFUNC, -12, "unknown module function")                                 \
  X(OTA_EDEP, -13, "invalid dependency")                                       \
  X(OTA_ETOOBIG, -14, "module larger than the 128 KB OTA staging area")        \
  X(OTA_EDOWNGRADE, -15, "downgrade not supported")                            \
  X(OTA_ERELEASE, -16, "unknown release")                                      \
  X(OTA_ESTATE, -17, "operation not valid in this state")                      \
  X(OTA_ETIMEDOUT, -18, "timed out")                                           \
  X(OTA_EPROTO, -19, "protocol error")                                         \
  X(OTA_EAUTH, -20, "authentication failed")                                   \
  X(OTA_EUNSUPPORTED, -21, "not supported")                                    \
  X(OTA_EADDR, -22, "invalid module address")                                  \
  X(OTA_EDEPFAIL, -23, "dependency check failed")                              \
  X(OTA_EREFUSED, -24, "refused by peer")                                      \
  X(OTA_EBUSY, -25, "busy")                                                    \
  X(OTA_EEXIST, -26, "already exists")                                         \
  X(OTA_EFULL, -27, "no room")                                                 \
  X(OTA_EHEADER, -28, "no valid module header found")

typedef enum {
#define OTA_ERR_ENUM(name, value, msg) name = value,
  OTA_ERRORS(OTA_ERR_ENUM)
#undef OTA_ERR_ENUM
} ota_err_t;

/* Static string for an error code (never NULL; "unknown error" for others). */
const char *ota_strerror(int err);
/* Symbolic name of an error code, e.g. "OTA_ECRC" (never NULL). */
const char *ota_strerror_name(int err);

/* Format a message into err[0..errlen) (if err is non-NULL and errlen > 0)
 * and return `code`: the one-liner for "fail with a reason" in parsers. */
int ota_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
