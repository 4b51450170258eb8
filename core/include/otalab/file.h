/* Whole-file reading shared by the command line and the device simulator
 * (module binaries, keys, state files); plain stdio, no other I/O. */
#ifndef OTALAB_FILE_H
#define OTALAB_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Read the whole file at `path` into a malloc'd buffer: *buf (the caller owns
 * and frees it; non-NULL on success, also for an empty file) and *len. On
 * failure *buf is NULL and *len 0. Returns 0, OTA_ENOENT (no such file),
 * OTA_EIO (cannot open for another reason, or a read error) or OTA_ENOMEM. */
int ota_file_read(const char *path, uint8_t **buf, size_t *len);

#endif
