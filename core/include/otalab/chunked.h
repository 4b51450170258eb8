/* Streaming decoder of HTTP/1.1 chunked request bodies (RFC 9112 7.1), for
 * uploads sent without a Content-Length (particle-cli 3.x `particle flash`).
 *
 * Ownership: the decoder is a plain struct of the caller's; nothing is
 * allocated. Decoded bytes are copied into a caller buffer (or dropped). */
#ifndef OTALAB_CHUNKED_H
#define OTALAB_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int state;       /* internal */
  unsigned digits; /* hex digits of the current size line */
  uint64_t left;   /* data bytes left in the current chunk */
  uint64_t total;  /* data bytes decoded so far */
} ota_chunked_t;

/* Start a new body. Cannot fail. */
void ota_chunked_init(ota_chunked_t *c);

/* Decode the next n bytes of the framed body at in. Data bytes are written to
 * out (room for n bytes: decoded data is never longer than its framing) or
 * dropped when out is NULL; *out_len receives their count. *used (may be
 * NULL) receives the input bytes consumed: all n unless the body ended inside
 * them. Chunk extensions and trailer fields are skipped. Returns 1 once the
 * last chunk and the trailer section are in (later calls return 1 and consume
 * nothing), 0 while more is expected, OTA_EPARSE on malformed framing (a
 * size line without hex digits or with more than 15, a chunk not followed by
 * CRLF); after an error every call returns OTA_EPARSE. Bare LF line ends are
 * accepted. */
int ota_chunked_feed(ota_chunked_t *c, const uint8_t *in, size_t n,
                     uint8_t *out, size_t *out_len, size_t *used);

/* 1 when the Transfer-Encoding header value (may be NULL) ends with the
 * "chunked" coding (case-insensitive, as RFC 9112 requires of a request). */
int ota_chunked_header(const char *transfer_encoding);

#endif
