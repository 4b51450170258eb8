/* otalab CLI: shared REST helpers for the devices, device, events and products
 * subcommands (Particle-shaped API of otalab-server, PROTOCOL.md 9). */
#include "rest.h"

#include <stdio.h>
#include <string.h>

#include "http.h"
#include "otalab/err.h"

int cli_rest_opts(int argc, char **argv, cli_rest_t *r, const char *prog) {
  const char *url = NULL, *tok = NULL;
  int n = 0;
  r->json = 0;
  for (int i = 0; i < argc; i++) {
    int is_s = !strcmp(argv[i], "--server"), is_t = !strcmp(argv[i], "--token");
    if (is_s || is_t) {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", prog, argv[i]);
        return -1;
      }
      *(is_s ? &url : &tok) = argv[++i];
    } else if (!strcmp(argv[i], "--json")) {
      r->json = 1;
    } else {
      argv[n++] = argv[i];
    }
  }
  r->url = cli_server_url(url);
  r->token = cli_token(tok);
  return n;
}

json_t *cli_rest_call(const cli_rest_t *r, const char *prog, const char *method,
                      const char *path, const char *ctype, const uint8_t *body,
                      size_t len) {
  char hdrs[256] = "";
  cli_http_resp_t resp;
  memset(&resp, 0, sizeof resp);
  if (ctype)
    snprintf(hdrs, sizeof hdrs, "Content-Type: %s\r\n", ctype);
  int err = cli_http_request(r->url, method, path, r->token,
                             ctype ? hdrs : NULL, body, len, 10000, &resp);
  if (err) {
    fprintf(stderr, "%s: cannot reach %s: %s\n", prog, r->url,
            ota_strerror(err));
    return NULL;
  }
  json_t *o = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL);
  if (resp.status < 200 || resp.status > 299 || !o) {
    const char *e = json_string_value(json_object_get(o, "error_description"));
    if (!e)
      e = json_string_value(json_object_get(o, "error"));
    fprintf(stderr, "%s: %s %s: HTTP %d: %s\n", prog, method, path, resp.status,
            e ? e : "unreadable reply");
    json_decref(o);
    o = NULL;
  }
  cli_http_free(&resp);
  return o;
}

const char *cli_rest_str(json_t *v, char *buf, size_t cap) {
  if (json_is_string(v))
    return json_string_value(v);
  if (json_is_integer(v))
    snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
  else if (json_is_boolean(v))
    snprintf(buf, cap, "%s", json_is_true(v) ? "yes" : "no");
  else
    snprintf(buf, cap, "-");
  return buf;
}
