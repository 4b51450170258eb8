/* multipart/form-data body parser, RFC 7578 / RFC 2046 section 5.1.1.
 * Strict enough to reject truncated uploads; tolerant of LF-only line ends. */
#include "otalab/multipart.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "otalab/err.h"

static const uint8_t *find(const uint8_t *hay, size_t hlen, const void *needle,
                           size_t nlen) {
  if (nlen == 0 || hlen < nlen)
    return NULL;
  const uint8_t *end = hay + hlen - nlen;
  for (const uint8_t *p = hay; p <= end; p++) {
    p = memchr(p, *(const uint8_t *)needle, (size_t)(end - p) + 1);
    if (!p)
      return NULL;
    if (!memcmp(p, needle, nlen))
      return p;
  }
  return NULL;
}

int ota_multipart_boundary(const char *ct, char *out, size_t cap) {
  if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0)
    return OTA_EPARSE;
  const char *p = ct + 19;
  for (;;) {
    p = strchr(p, ';');
    if (!p)
      return OTA_EPARSE;
    p++;
    while (*p == ' ' || *p == '\t')
      p++;
    if (!strncasecmp(p, "boundary=", 9))
      break;
  }
  p += 9;
  size_t n = 0;
  if (*p == '"') {
    p++;
    while (p[n] && p[n] != '"')
      n++;
    if (p[n] != '"')
      return OTA_EPARSE;
  } else {
    while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
      n++;
  }
  if (n == 0 || n > 70) /* RFC 2046: 1..70 characters */
    return OTA_EPARSE;
  if (n + 1 > cap)
    return OTA_ENOBUFS;
  memcpy(out, p, n);
  out[n] = 0;
  return 0;
}

/* Value of a parameter (name="value") inside a Content-Disposition line. */
static void disp_param(const char *line, size_t len, const char *key,
                       const char **val, size_t *vlen) {
  size_t klen = strlen(key);
  *val = NULL;
  *vlen = 0;
  for (size_t i = 0; i + klen + 1 < len; i++) {
    if ((i == 0 || line[i - 1] == ' ' || line[i - 1] == ';') &&
        !strncasecmp(line + i, key, klen) && line[i + klen] == '=') {
      const char *v = line + i + klen + 1;
      size_t rest = len - (i + klen + 1), n = 0;
      if (rest && *v == '"') {
        v++;
        rest--;
        while (n < rest && v[n] != '"')
          n++;
      } else {
        while (n < rest && v[n] != ';' && v[n] != ' ')
          n++;
      }
      *val = v;
      *vlen = n;
      return;
    }
  }
}

static int parse_headers(const uint8_t *h, size_t len,
                         ota_multipart_part_t *part) {
  const char *p = (const char *)h, *end = p + len;
  int have_disp = 0;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
    size_t ll = (l && p[l - 1] == '\r') ? l - 1 : l;
    if (ll > 20 && !strncasecmp(p, "Content-Disposition:", 20)) {
      const char *v = p + 20;
      size_t vl = ll - 20;
      while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
      if (vl < 9 || strncasecmp(v, "form-data", 9))
        return OTA_EPARSE;
      disp_param(v, vl, "name", &part->name, &part->name_len);
      disp_param(v, vl, "filename", &part->filename, &part->filename_len);
      have_disp = part->name != NULL;
    } else if (ll > 13 && !strncasecmp(p, "Content-Type:", 13)) {
      const char *v = p + 13;
      size_t vl = ll - 13;
      while (vl && isspace((unsigned char)*v))
        v++, vl--;
      part->content_type = v;
      part->content_type_len = vl;
    }
    p += l + (eol ? 1 : 0);
  }
  return have_disp ? 0 : OTA_EPARSE;
}

int ota_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                        ota_multipart_t *out) {
  char delim[80];
  size_t blen = strlen(boundary);
  if (blen == 0 || blen > 70)
    return OTA_EINVAL;
  memset(out, 0, sizeof *out);
  /* delimiter = "--" boundary; the first may start the body without CRLF */
  delim[0] = '-';
  delim[1] = '-';
  memcpy(delim + 2, boundary, blen);
  size_t dlen = blen + 2;
  const uint8_t *end = body + len;
  const uint8_t *p = find(body, len, delim, dlen);
  if (!p)
    return OTA_EPARSE;
  p += dlen;
  for (;;) {
    if (end - p >= 2 && p[0] == '-' && p[1] == '-')
      return out->nparts ? 0 : OTA_EPARSE; /* close delimiter */
    /* skip transport padding and the CRLF after the delimiter */
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    if (p < end && *p == '\r')
      p++;
    if (p >= end || *p != '\n')
      return OTA_EPARSE;
    p++;
    /* headers end at an empty line */
    const uint8_t *hend = find(p, (size_t)(end - p), "\r\n\r\n", 4);
    size_t sep = 4;
    const uint8_t *lf = find(p, (size_t)(end - p), "\n\n", 2);
    if (!hend || (lf && lf < hend)) {
      hend = lf;
      sep = 2;
    }
    if (!hend)
      return OTA_EPARSE;
    if (out->nparts == OTA_MULTIPART_MAX_PARTS)
      return OTA_ENOBUFS;
    ota_multipart_part_t *part = &out->parts[out->nparts];
    int rc = parse_headers(p, (size_t)(hend - p), part);
    if (rc)
      return rc;
    const uint8_t *data = hend + sep;
    /* the closing delimiter of this part starts a line: CRLF (or LF) "--"
     * boundary; an occurrence inside the data that does not is skipped */
    const uint8_t *next = data, *dend = NULL;
    for (;;) {
      next = find(next, (size_t)(end - next), delim, dlen);
      if (!next)
        return OTA_EPARSE; /* truncated upload: no closing delimiter */
      if (next > data && next[-1] == '\n') {
        dend = next - 1;
        if (dend > data && dend[-1] == '\r')
          dend--;
        break;
      }
      next++;
    }
    part->data = data;
    part->len = (size_t)(dend - data);
    out->nparts++;
    p = next + dlen;
  }
}

const ota_multipart_part_t *ota_multipart_find(const ota_multipart_t *mp,
                                               const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < mp->nparts; i++)
    if (mp->parts[i].name_len == n && !memcmp(mp->parts[i].name, name, n))
      return &mp->parts[i];
  return NULL;
}
