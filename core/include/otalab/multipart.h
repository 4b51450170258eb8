/* multipart/form-data parser (RFC 7578) for the REST API's uploads
 * (`PUT /v1/devices/:id` with a `file` part, as particle-cli sends it).
 *
 * Ownership: parts are views into the caller's body buffer; nothing is
 * allocated. The body must outlive the parts. */
#ifndef OTALAB_MULTIPART_H
#define OTALAB_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#define OTA_MULTIPART_MAX_PARTS 16

typedef struct {
  const char *name; /* form field name (not NUL-terminated) */
  size_t name_len;
  const char *filename; /* NULL when the part has no filename */
  size_t filename_len;
  const char *content_type; /* NULL when absent */
  size_t content_type_len;
  const uint8_t *data;
  size_t len;
} ota_multipart_part_t;

typedef struct {
  ota_multipart_part_t parts[OTA_MULTIPART_MAX_PARTS];
  size_t nparts;
} ota_multipart_t;

/* Extract the boundary from a Content-Type header value
 * ("multipart/form-data; boundary=XYZ", optionally quoted). Writes a
 * NUL-terminated copy into out. OTA_EPARSE if it is not multipart/form-data
 * or has no boundary, OTA_ENOBUFS if out is too small. */
int ota_multipart_boundary(const char *content_type, char *out, size_t cap);

/* Parse a whole body. OTA_EPARSE on a malformed body (missing boundary,
 * missing headers, no closing delimiter), OTA_ENOBUFS on too many parts. */
int ota_multipart_parse(const uint8_t *body, size_t len, const char *boundary,
                        ota_multipart_t *out);

/* The first part whose name equals `name`, or NULL. */
const ota_multipart_part_t *ota_multipart_find(const ota_multipart_t *mp,
                                               const char *name);

#endif
