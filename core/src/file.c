/* Whole-file reading for the CLI and the device simulator: one loop that grows
 * its buffer, so pipes and files that change size read like regular files. */
#include "otalab/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "otalab/err.h"

int ota_file_read(const char *path, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return errno == ENOENT ? OTA_ENOENT : OTA_EIO;
  uint8_t *b = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 65536;
      uint8_t *nb = realloc(b, ncap);
      if (!nb) {
        free(b);
        fclose(f);
        return OTA_ENOMEM;
      }
      b = nb;
      cap = ncap;
    }
    size_t r = fread(b + n, 1, cap - n, f);
    n += r;
    if (r == 0)
      break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(b);
    return OTA_EIO;
  }
  *buf = b;
  *len = n;
  return 0;
}
