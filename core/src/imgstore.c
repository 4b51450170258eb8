/* Content-addressed, refcounted module images shared by simulated devices
 * (the fleet's memory budget; see imgstore.h). */
#include <stdlib.h>
#include <string.h>

#include "otalab/crc32.h"
#include "otalab/err.h"
#include "otalab/imgstore.h"

void ota_imgstore_init(ota_imgstore_t *s) {
  memset(s, 0, sizeof *s);
}

void ota_imgstore_free(ota_imgstore_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->n; i++)
    if (s->e[i].refs)
      free(s->e[i].buf);
  free(s->e);
  memset(s, 0, sizeof *s);
}

/* Bytes compared before the whole image: a module's suffix (product, SHA-256,
 * size) and stored CRC-32, which differ between any two modules. */
#define TAIL 44u

/* A cheap key for finding a held copy (not a hash of the bytes: a module
 * stores its own CRC-32 in its last 4 bytes). Images shorter than 4 bytes
 * are hashed whole. */
static uint32_t key_of(const uint8_t *buf, size_t len) {
  if (len < 4)
    return ota_crc32(buf, len);
  const uint8_t *p = buf + len - 4;
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

static int same_bytes(const uint8_t *a, const uint8_t *b, size_t len) {
  if (a == b)
    return 1;
  size_t t = len < TAIL ? len : TAIL;
  return !memcmp(a + len - t, b + len - t, t) && !memcmp(a, b, len - t);
}

uint8_t *ota_imgstore_adopt(ota_imgstore_t *s, uint8_t *buf, size_t len) {
  if (!buf)
    return NULL;
  uint32_t crc = key_of(buf, len);
  ota_img_entry_t *hole = NULL;
  for (size_t i = 0; i < s->n; i++) {
    ota_img_entry_t *e = &s->e[i];
    if (!e->refs) {
      if (!hole)
        hole = e;
      continue;
    }
    if (e->len == len && e->crc == crc && same_bytes(e->buf, buf, len)) {
      if (e->buf != buf)
        free(buf);
      e->refs++;
      s->hits++;
      s->bytes_logical += len;
      return e->buf;
    }
  }
  if (!hole) {
    if (s->n == s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 16;
      ota_img_entry_t *ne = realloc(s->e, cap * sizeof *ne);
      if (!ne) {
        free(buf);
        return NULL;
      }
      s->e = ne, s->cap = cap;
    }
    hole = &s->e[s->n++];
  }
  *hole = (ota_img_entry_t){.buf = buf, .len = len, .crc = crc, .refs = 1};
  s->bytes_unique += len;
  s->bytes_logical += len;
  return buf;
}

void ota_imgstore_release(ota_imgstore_t *s, uint8_t *buf) {
  if (!buf)
    return;
  for (size_t i = 0; s && i < s->n; i++) {
    ota_img_entry_t *e = &s->e[i];
    if (e->refs && e->buf == buf) {
      s->bytes_logical -= e->len;
      if (--e->refs == 0) {
        s->bytes_unique -= e->len;
        free(e->buf);
        e->buf = NULL;
      }
      return;
    }
  }
  free(buf);
}

static ota_img_entry_t *find(const ota_imgstore_t *s, const uint8_t *buf,
                             size_t len) {
  for (size_t i = 0; s && buf && i < s->n; i++)
    if (s->e[i].refs && s->e[i].buf == buf && s->e[i].len == len)
      return &s->e[i];
  return NULL;
}

int ota_imgstore_memo_set(ota_imgstore_t *s, const uint8_t *buf, size_t len,
                          uint32_t val) {
  ota_img_entry_t *e = find(s, buf, len);
  if (!e)
    return OTA_ENOENT;
  e->memo = val;
  e->has_memo = 1;
  return 0;
}

int ota_imgstore_memo_get(const ota_imgstore_t *s, const uint8_t *buf,
                          size_t len, uint32_t *val) {
  const ota_img_entry_t *e = find(s, buf, len);
  if (!e || !e->has_memo)
    return OTA_ENOENT;
  *val = e->memo;
  return 0;
}

size_t ota_imgstore_count(const ota_imgstore_t *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++)
    n += s->e[i].refs != 0;
  return n;
}
