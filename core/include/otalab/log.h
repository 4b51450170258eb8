/* Logging hook for core/: core formats messages, the adapter (server, device-sim,
 * cli, tests) decides where they go. Core itself never touches a file or clock. */
#ifndef OTALAB_LOG_H
#define OTALAB_LOG_H

#include <stdarg.h>

typedef enum {
  OTA_LOG_ERROR = 0,
  OTA_LOG_WARN = 1,
  OTA_LOG_INFO = 2,
  OTA_LOG_DEBUG = 3
} ota_log_level_t;

/* The sink receives a formatted, NUL-terminated line without trailing newline.
 * `ud` is the pointer given to ota_log_set(); the sink is called synchronously. */
typedef void (*ota_log_fn)(void *ud, ota_log_level_t level, const char *line);

/* Install a sink and the most verbose level passed to it. NULL sink = drop all.
 * Default: a sink that writes WARN and ERROR to stderr. Not thread-safe. */
void ota_log_set(ota_log_fn fn, void *ud, ota_log_level_t max_level);
ota_log_level_t ota_log_level(void);
void ota_logf(ota_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ota_vlogf(ota_log_level_t level, const char *fmt, va_list ap);
/* A ready sink writing "level: line" to stderr; ud ignored. */
void ota_log_stderr(void *ud, ota_log_level_t level, const char *line);

#define OTA_LOGE(...) ota_logf(OTA_LOG_ERROR, __VA_ARGS__)
#define OTA_LOGW(...) ota_logf(OTA_LOG_WARN, __VA_ARGS__)
#define OTA_LOGI(...) ota_logf(OTA_LOG_INFO, __VA_ARGS__)
/* Debug lines are per message on hot paths (a CoAP summary per OTA chunk):
 * their arguments are not even evaluated unless the sink takes DEBUG. Keep
 * side effects out of OTA_LOGD arguments. */
#define OTA_LOGD(...)                                                          \
  (ota_log_level() < OTA_LOG_DEBUG ? (void)0                                   \
                                   : ota_logf(OTA_LOG_DEBUG, __VA_ARGS__))

#endif
