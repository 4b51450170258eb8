/* Tests for core/file (ota_file_read, shared by the CLI and otalab-device):
 * sizes around the buffer's growth steps read back byte for byte; errors. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "otalab/err.h"
#include "otalab/file.h"

static char dir[64];

static void mkdir_tmp(void) {
  snprintf(dir, sizeof dir, "/tmp/otalab-test-file.XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_expect_eq(system(cmd), 0);
}

TestSuite(file, .init = mkdir_tmp, .fini = rm_tmp);

/* 0, 1, either side of the first (64 KiB) and second growth, larger. */
static size_t sizes[] = {0, 1, 65535, 65536, 65537, 131072, 131073, 300001};

ParameterizedTestParameters(file, roundtrip) {
  return cr_make_param_array(size_t, sizes, sizeof sizes / sizeof sizes[0]);
}

ParameterizedTest(size_t *size, file, roundtrip) {
  size_t n = *size;
  uint8_t *want = malloc(n ? n : 1);
  cr_assert_not_null(want);
  uint32_t x = (uint32_t)n * 2654435761u + 1u;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    want[i] = (uint8_t)x;
  }
  char path[128];
  snprintf(path, sizeof path, "%s/f.bin", dir);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(want, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);

  uint8_t *got = NULL;
  size_t len = 12345;
  cr_assert_eq(ota_file_read(path, &got, &len), 0);
  cr_assert_not_null(got, "a buffer also for an empty file");
  cr_assert_eq(len, n);
  cr_assert(n == 0 || memcmp(got, want, n) == 0);
  free(got);
  free(want);
}

Test(file, missing_is_enoent) {
  char path[128];
  snprintf(path, sizeof path, "%s/absent.bin", dir);
  uint8_t *buf = (uint8_t *)path;
  size_t len = 7;
  cr_assert_eq(ota_file_read(path, &buf, &len), OTA_ENOENT);
  cr_assert_null(buf);
  cr_assert_eq(len, 0);
}

Test(file, directory_is_eio) {
  uint8_t *buf = (uint8_t *)dir;
  size_t len = 7;
  cr_assert_eq(ota_file_read(dir, &buf, &len), OTA_EIO);
  cr_assert_null(buf);
  cr_assert_eq(len, 0);
}

Test(file, unreadable_is_eio) {
  if (geteuid() == 0)
    cr_skip_test("root reads a mode-000 file");
  char path[128];
  snprintf(path, sizeof path, "%s/locked.bin", dir);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fputs("x", f);
  fclose(f);
  cr_assert_eq(chmod(path, 0), 0);
  uint8_t *buf = NULL;
  size_t len = 0;
  cr_assert_eq(ota_file_read(path, &buf, &len), OTA_EIO);
  cr_assert_null(buf);
}
