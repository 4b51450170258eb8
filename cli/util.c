/* File and argument helpers shared by the CLI subcommands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "otalab/err.h"

int cli_read_file(const char *path, uint8_t **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  uint8_t *b = NULL;
  size_t cap = 0, n = 0;
  if (!f)
    return errno == ENOENT ? OTA_ENOENT : OTA_EIO;
  for (;;) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 65536;
      uint8_t *nb = realloc(b, ncap);
      if (!nb) {
        free(b);
        fclose(f);
        return OTA_ENOMEM;
      }
      b = nb;
      cap = ncap;
    }
    size_t r = fread(b + n, 1, cap - n, f);
    n += r;
    if (r == 0)
      break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(b);
    return OTA_EIO;
  }
  *buf = b;
  *len = n;
  return 0;
}

int cli_write_file(const char *path, const uint8_t *buf, size_t len) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return OTA_EIO;
  if (fwrite(buf, 1, len, f) != len || fflush(f) != 0) {
    fclose(f);
    unlink(tmp);
    return OTA_EIO;
  }
  fsync(fileno(f));
  fclose(f);
  if (rename(tmp, path) != 0) {
    unlink(tmp);
    return OTA_EIO;
  }
  return 0;
}

const char *cli_default_catalog(void) {
  const char *env = getenv("OTALAB_CATALOG");
  if (env && *env)
    return env;
#ifdef OTALAB_DEFAULT_CATALOG
  if (access(OTALAB_DEFAULT_CATALOG, R_OK) == 0)
    return OTALAB_DEFAULT_CATALOG;
#endif
  return "/usr/share/otalab/electron.json";
}

long cli_parse_size(const char *s) {
  char *end;
  if (!s || !*s)
    return -1;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || v < 0 || end == s)
    return -1;
  if (*end == 'k' || *end == 'K') {
    v *= 1024;
    end++;
  } else if (*end == 'm' || *end == 'M') {
    v *= 1024 * 1024;
    end++;
  }
  if (*end == 'b' || *end == 'B')
    end++;
  return *end ? -1 : v;
}
