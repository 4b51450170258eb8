/* HTTP/1.1 chunked transfer coding, decoding side (RFC 9112 section 7.1):
 * size line [; ext] CRLF, data CRLF, ..., "0" CRLF, trailer fields, CRLF. */
#include "otalab/chunked.h"

#include <string.h>
#include <strings.h>

#include "otalab/err.h"

enum {
  S_SIZE,          /* hex digits of a size line */
  S_EXT,           /* chunk extension: skipped to the line end */
  S_SIZE_LF,       /* CR seen at the end of a size line */
  S_DATA,          /* chunk data */
  S_DATA_CR,       /* CRLF after the data */
  S_DATA_LF,       /* CR seen after the data */
  S_TRAILER_START, /* start of a trailer line (or the final empty line) */
  S_TRAILER_LINE,  /* a trailer field: skipped */
  S_END_LF,        /* CR of the final empty line seen */
  S_DONE,
  S_ERR
};

void ota_chunked_init(ota_chunked_t *c) {
  memset(c, 0, sizeof *c);
  c->state = S_SIZE;
}

static int hexval(uint8_t ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* End of a size line: a chunk's data follows, or the trailer section. */
static int size_line_end(ota_chunked_t *c) {
  return c->left ? S_DATA : S_TRAILER_START;
}

int ota_chunked_feed(ota_chunked_t *c, const uint8_t *in, size_t n,
                     uint8_t *out, size_t *out_len, size_t *used) {
  size_t i = 0, o = 0;
  while (i < n && c->state != S_DONE && c->state != S_ERR) {
    uint8_t ch = in[i];
    int h;
    switch (c->state) {
    case S_SIZE:
      h = hexval(ch);
      if (h >= 0 && c->digits < 15) {
        c->left = c->left << 4 | (uint64_t)h;
        c->digits++;
      } else if (h < 0 && c->digits && (ch == ';' || ch == ' ' || ch == '\t'))
        c->state = S_EXT;
      else if (h < 0 && c->digits && ch == '\r')
        c->state = S_SIZE_LF;
      else if (h < 0 && c->digits && ch == '\n')
        c->state = size_line_end(c);
      else
        c->state = S_ERR;
      i++;
      break;
    case S_EXT:
      if (ch == '\r')
        c->state = S_SIZE_LF;
      else if (ch == '\n')
        c->state = size_line_end(c);
      i++;
      break;
    case S_SIZE_LF:
      c->state = ch == '\n' ? size_line_end(c) : S_ERR;
      i++;
      break;
    case S_DATA: {
      size_t k = n - i;
      if ((uint64_t)k > c->left)
        k = (size_t)c->left;
      if (out)
        memcpy(out + o, in + i, k);
      o += k;
      i += k;
      c->left -= k;
      c->total += k;
      if (!c->left)
        c->state = S_DATA_CR;
      break;
    }
    case S_DATA_CR:
      c->state = ch == '\r' ? S_DATA_LF : ch == '\n' ? S_SIZE : S_ERR;
      c->digits = 0;
      i++;
      break;
    case S_DATA_LF:
      c->state = ch == '\n' ? S_SIZE : S_ERR;
      i++;
      break;
    case S_TRAILER_START:
      c->state = ch == '\r' ? S_END_LF : ch == '\n' ? S_DONE : S_TRAILER_LINE;
      i++;
      break;
    case S_TRAILER_LINE:
      if (ch == '\n')
        c->state = S_TRAILER_START;
      i++;
      break;
    case S_END_LF:
      c->state = ch == '\n' ? S_DONE : S_ERR;
      i++;
      break;
    default:
      break;
    }
  }
  if (out_len)
    *out_len = o;
  if (used)
    *used = i;
  if (c->state == S_ERR)
    return OTA_EPARSE;
  return c->state == S_DONE;
}

int ota_chunked_header(const char *te) {
  if (!te)
    return 0;
  size_t n = strlen(te);
  while (n && (te[n - 1] == ' ' || te[n - 1] == '\t'))
    n--;
  if (n < 7 || strncasecmp(te + n - 7, "chunked", 7))
    return 0;
  return n == 7 || te[n - 8] == ',' || te[n - 8] == ' ' || te[n - 8] == '\t';
}
