/* CRC-32 as zlib computes it (IEEE 802.3, reflected, poly 0xEDB88320): the
 * checksum Device OS appends to every module and each OTA chunk
 * (PROTOCOL.md 2.5, 4.3). */
#ifndef OTALAB_CRC32_H
#define OTALAB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Incremental form with zlib's crc32() semantics: start with crc = 0 and feed
 * the previous result back in; ota_crc32_update(ota_crc32_update(0, a, n), b,
 * m) equals the CRC of a followed by b. `buf` may be NULL only when len is 0.
 * Never fails. */
uint32_t ota_crc32_update(uint32_t crc, const void *buf, size_t len);

/* CRC-32 of one buffer: ota_crc32_update(0, buf, len). */
uint32_t ota_crc32(const void *buf, size_t len);

#endif
