/* otalab CLI: shared pieces of the REST subcommands (devices, device, events,
 * products): common options and one JSON call to otalab-server. */
#ifndef OTALAB_CLI_REST_H
#define OTALAB_CLI_REST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *url;   /* --server URL, else $OTALAB_SERVER, else default */
  const char *token; /* --token T, else $OTALAB_TOKEN */
  int json;          /* --json: print the raw JSON reply */
} cli_rest_t;

/* Remove --server/--token/--json from argv (in place) into r; returns the new
 * argc, or -1 when an option lacks its value (printed with prog). */
int cli_rest_opts(int argc, char **argv, cli_rest_t *r, const char *prog);

/* METHOD path with an optional body (ctype NULL for none). Returns the parsed
 * JSON reply (caller decrefs) when the status is 2xx; else prints
 * "prog: HTTP status: error" (or the connection failure) and returns NULL. */
json_t *cli_rest_call(const cli_rest_t *r, const char *prog, const char *method,
                      const char *path, const char *ctype, const uint8_t *body,
                      size_t len);

/* A JSON value as short text for tables ("-" for null/absent). */
const char *cli_rest_str(json_t *v, char *buf, size_t cap);

#endif
