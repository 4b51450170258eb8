/* File and argument helpers shared by the CLI subcommands. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "otalab/err.h"
#include "otalab/file.h"

int cli_read_file(const char *path, uint8_t **buf, size_t *len) {
  return ota_file_read(path, buf, len);
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

int cli_catalog_load(ota_catalog_t *cat, const char **path, char *err,
                     size_t errlen) {
  ota_catalog_init(cat);
  if (!*path)
    *path = cli_default_catalog();
  return ota_catalog_load_file(cat, *path, err, errlen);
}

int cli_opt_catalog(int c, const char **catpath, void (*usage)(FILE *out)) {
  switch (c) {
  case 'c':
    *catpath = optarg;
    return -1;
  case 'h':
    usage(stdout);
    return CLI_EXIT_OK;
  default:
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
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
