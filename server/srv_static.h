/* otalab-server's dashboard: the static files of server/www/ embedded into the
 * binary at build time (www_embed.cmake), and the planner and catalogue
 * endpoints the page reads. Choices: docs/PROTOCOL.md "Dashboard choices". */
#ifndef OTALAB_SRV_STATIC_H
#define OTALAB_SRV_STATIC_H

#include <stddef.h>

/* One embedded file; the table srv_www_files[] (generated, static storage) ends
 * with a NULL name. The generated file repeats this layout. */
struct srv_www_file {
  const char *name; /* "index.html", "app.js" */
  const unsigned char *data;
  size_t len;
};
extern const struct srv_www_file srv_www_files[];

/* A response for a static file: views into static storage, nothing to free. */
typedef struct {
  unsigned status;   /* 200, or 304 when if_none_match matched the ETag */
  const char *ctype; /* "text/html; charset=utf-8" ... */
  const char *cache; /* Cache-Control: no-cache (index.html), max-age (rest) */
  char etag[32];     /* "\"<crc32 hex>-<len hex>\"" */
  const unsigned char *body; /* NULL and len 0 for 304 */
  size_t len;
} srv_static_resp_t;

/* When uri ("/" = "/index.html", "/app.js", ...; no query) names an embedded
 * file: fill *r and return 1. Otherwise 0 (not a dashboard path: the API's
 * routes or a 404 follow). if_none_match: the request's If-None-Match value,
 * NULL or "" when absent. */
int srv_static_lookup(const char *uri, const char *if_none_match,
                      srv_static_resp_t *r);

/* GET /v1/plan?from=REL&to=REL[&product=0|1]: the plan between two catalogue
 * releases as `otalab plan --json` prints it. Returns malloc'd JSON and sets
 * *status: 200, 400 (a parameter missing), 404 (unknown release), 422 (the
 * planner refused: the body carries "error" and "reason"). */
char *srv_plan_release(const char *from, const char *to, int product,
                       unsigned *status);
/* GET /v1/devices/:id/plan[?to=REL][&product=0|1]: the plan for the device as
 * its last describe reports it; without `to`, the plan that heals it (meets
 * its user module's dependencies). *status: 200, 404 (unknown device), 409
 * (no describe yet), 422 (refused). malloc'd JSON. */
char *srv_plan_device(const char *id, const char *to, int product,
                      unsigned *status);
/* GET /v1/releases: the catalogue's releases, oldest first:
 * [{"name","system_version","parts"}]. malloc'd JSON; *status 200. */
char *srv_releases_json(unsigned *status);

#endif
