/* A minimal HTTP/1.1 client for the CLI's REST calls to otalab-server
 * (plain HTTP, as the server speaks on loopback). One request per connection.
 */
#ifndef OTALAB_CLI_HTTP_H
#define OTALAB_CLI_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int status; /* HTTP status code, 0 if none was read */
  char *body; /* malloc'd, NUL-terminated; caller frees with cli_http_free */
  size_t body_len;
  char content_type[128];
} cli_http_resp_t;

/* Split "http://host:port/base" into parts. 0 or OTA_EINVAL. */
int cli_http_parse_url(const char *url, char *host, size_t hostcap, int *port,
                       char *base, size_t basecap);

/* Perform METHOD on server_url + path. `extra_headers` is a block of
 * "Name: value\r\n" lines or NULL; `token` adds "Authorization: Bearer". The
 * body may be NULL. Returns 0 (resp filled) or a negative OTA_E* (connect
 * failure: OTA_EIO). timeout_ms bounds each socket wait. */
int cli_http_request(const char *server_url, const char *method,
                     const char *path, const char *token,
                     const char *extra_headers, const uint8_t *body,
                     size_t body_len, int timeout_ms, cli_http_resp_t *resp);

/* Open a streaming GET (Server-Sent Events): sends the request, checks the
 * status line, returns the connected socket fd (>= 0) ready for reading the
 * body, or a negative OTA_E*. */
int cli_http_stream(const char *server_url, const char *path, const char *token,
                    int timeout_ms, int *status);

void cli_http_free(cli_http_resp_t *resp);

/* Server URL and token from --server/--token or OTALAB_SERVER / OTALAB_TOKEN
 * (defaults http://127.0.0.1:8080 and no token). */
const char *cli_server_url(const char *opt);
const char *cli_token(const char *opt);

#endif
