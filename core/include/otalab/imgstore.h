/* A content-addressed, refcounted store of immutable module images, so that a
 * fleet of simulated devices holding the same releases keeps one copy of each.
 * Models nothing of Device OS: it is the simulator's memory budget (1,000 x
 * ~300 KB of flash would not fit). Pure C: no clocks, no I/O.
 *
 * Ownership: the store owns every image it holds (malloc'd). adopt() takes a
 * malloc'd buffer and hands back the shared copy (the caller's buffer is freed
 * when an identical image is already held); release() drops one reference.
 * Images must not be written after adopt(). */
#ifndef OTALAB_IMGSTORE_H
#define OTALAB_IMGSTORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint8_t *buf;
  size_t len;
  uint32_t crc; /* lookup key: the last 4 bytes (a module's stored CRC-32) */
  uint32_t refs;
  uint32_t memo; /* a verdict on the bytes, set by the caller (see memo_set) */
  int has_memo;
} ota_img_entry_t;

typedef struct ota_imgstore {
  ota_img_entry_t *e; /* owned array; entries with refs 0 are free */
  size_t n, cap;
  uint64_t bytes_unique;  /* bytes of distinct images held */
  uint64_t bytes_logical; /* bytes the references stand for */
  uint64_t hits;          /* adopt() calls that found a duplicate */
} ota_imgstore_t;

/* Empty store. Cannot fail. */
void ota_imgstore_init(ota_imgstore_t *s);
/* Free every image (references become dangling). Safe twice. */
void ota_imgstore_free(ota_imgstore_t *s);
/* Take ownership of buf[len] (malloc'd) and return the shared image with the
 * same bytes (buf itself when new, else buf is freed). NULL on OTA_ENOMEM
 * (buf freed). A held copy is found by length and last 4 bytes, then compared
 * byte for byte: the bytes are not hashed. */
uint8_t *ota_imgstore_adopt(ota_imgstore_t *s, uint8_t *buf, size_t len);
/* Drop one reference to an image returned by adopt(); the last one frees it.
 * A pointer the store does not hold is passed to free(). NULL is ignored. */
void ota_imgstore_release(ota_imgstore_t *s, uint8_t *buf);
/* Keep `val` with the held image buf[len] (a result computed from its bytes
 * only, e.g. its integrity defects), so that other holders need not compute
 * it again. Returns 0, or OTA_ENOENT when the store does not hold buf[len]. */
int ota_imgstore_memo_set(ota_imgstore_t *s, const uint8_t *buf, size_t len,
                          uint32_t val);
/* The value memo_set() kept with buf[len]: 0 and *val, or OTA_ENOENT (not
 * held, or nothing kept yet). */
int ota_imgstore_memo_get(const ota_imgstore_t *s, const uint8_t *buf,
                          size_t len, uint32_t *val);
/* Number of distinct images held. */
size_t ota_imgstore_count(const ota_imgstore_t *s);

#endif
