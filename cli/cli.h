/* otalab CLI: shared helpers and the subcommand registry. Each cmd_NAME.c
 * defines `const cli_cmd_t cli_cmd_NAME`; main.c lists them. Exit codes: 0 ok,
 * 1 the work failed (invalid file, failed expectation), 2 usage error. */
#ifndef OTALAB_CLI_H
#define OTALAB_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "otalab/catalog.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

typedef struct {
  const char *name;
  const char *summary;               /* one line for `otalab --help` */
  int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
} cli_cmd_t;

/* Read a whole file into a malloc'd buffer (caller frees). 0 or -errno-ish
 * OTA_E*. */
int cli_read_file(const char *path, uint8_t **buf, size_t *len);
/* Write a file atomically (temp + rename). */
int cli_write_file(const char *path, const uint8_t *buf, size_t len);
/* Default catalogue path: $OTALAB_CATALOG, else the source tree's, else
 * /usr/share/otalab/electron.json. */
const char *cli_default_catalog(void);
/* Initialise `cat` and load the catalogue at *path, or at cli_default_catalog()
 * (stored into *path) when *path is NULL. Returns ota_catalog_load_file's 0 or
 * OTA_E* with its message in err. On success the caller frees `cat`
 * (ota_catalog_free); after a failure it holds nothing (freeing is harmless).
 */
int cli_catalog_load(ota_catalog_t *cat, const char **path, char *err,
                     size_t errlen);
/* getopt_long's cases shared by the catalogue-reading subcommands (call it
 * from `default:`): 'c' (--catalog PATH) sets *catpath and returns -1 (parsing
 * goes on); 'h' (--help) prints usage to stdout and returns CLI_EXIT_OK; any
 * other c prints usage to stderr and returns CLI_EXIT_USAGE. */
int cli_opt_catalog(int c, const char **catpath, void (*usage)(FILE *out));
/* Parse "8K", "128k", "1M", "4096" into bytes; -1 on error. */
long cli_parse_size(const char *s);

#endif
