/* Logging hook (see log.h). The default sink is the one place core writes to
 * stderr; adapters replace it with their own. */
#include "otalab/log.h"

#include <stdio.h>

static ota_log_fn g_fn = ota_log_stderr;
static void *g_ud;
static ota_log_level_t g_max = OTA_LOG_WARN;

void ota_log_stderr(void *ud, ota_log_level_t level, const char *line) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  (void)ud;
  fprintf(stderr, "%s: %s\n", names[level & 3], line);
}

void ota_log_set(ota_log_fn fn, void *ud, ota_log_level_t max_level) {
  g_fn = fn;
  g_ud = ud;
  g_max = max_level;
}

ota_log_level_t ota_log_level(void) { return g_max; }

void ota_vlogf(ota_log_level_t level, const char *fmt, va_list ap) {
  char line[1024];
  if (!g_fn || level > g_max)
    return;
  vsnprintf(line, sizeof line, fmt, ap);
  g_fn(g_ud, level, line);
}

void ota_logf(ota_log_level_t level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ota_vlogf(level, fmt, ap);
  va_end(ap);
}
