/* otalab-server's dashboard files (server/www/, embedded at build time), with
 * content types and HTTP caching (RFC 9110 8.8.3 ETag, RFC 9111 5.2 Cache-
 * Control). */
#include "srv_static.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "otalab/crc32.h"

static const struct {
  const char *ext, *ctype;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
};

static const char *ctype_of(const char *name) {
  const char *dot = strrchr(name, '.');
  for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
    if (!strcmp(dot, types[i].ext))
      return types[i].ctype;
  return "application/octet-stream";
}

/* Does the If-None-Match list (`"a", W/"b"` or `*`) name etag? */
static int etag_match(const char *inm, const char *etag) {
  size_t el = strlen(etag);
  if (!inm)
    return 0;
  if (!strcmp(inm, "*"))
    return 1;
  for (const char *p = inm; (p = strstr(p, etag)); p += el) {
    char after = p[el];
    if (after == 0 || after == ',' || after == ' ')
      return 1;
  }
  return 0;
}

int srv_static_lookup(const char *uri, const char *if_none_match,
                      srv_static_resp_t *r) {
  if (!uri || uri[0] != '/')
    return 0;
  const char *name = uri[1] ? uri + 1 : "index.html";
  for (const struct srv_www_file *f = srv_www_files; f->name; f++) {
    if (strcmp(f->name, name))
      continue;
    memset(r, 0, sizeof *r);
    r->ctype = ctype_of(f->name);
    /* The page is small and names its assets without versions: it is always
     * revalidated; assets may be reused for 5 minutes, then revalidated. */
    r->cache =
        !strcmp(f->name, "index.html") ? "no-cache" : "public, max-age=300";
    snprintf(r->etag, sizeof r->etag, "\"%08x-%zx\"",
             (unsigned)ota_crc32(f->data, f->len), f->len);
    if (etag_match(if_none_match, r->etag)) {
      r->status = 304;
      return 1;
    }
    r->status = 200;
    r->body = f->data;
    r->len = f->len;
    return 1;
  }
  return 0;
}
