/* otalab-server module files shared between OTA jobs: one validated,
 * reference-counted copy per file (PROTOCOL.md 3.1 module format). A heal of
 * 1,000 devices sends the same three fixture files 1,000 times each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "srv.h"

#define CACHE_MAX 32 /* files kept while unreferenced (fixtures, releases) */

static srv_mod_t *cache[CACHE_MAX];
static size_t ncache;
static srv_mods_stats_t stats;

static srv_mod_t *mod_new(const char *path, uint8_t *bytes, size_t len) {
  srv_mod_t *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  int err = ota_module_parse(bytes, len, &m->info);
  stats.validations++;
  if (err) {
    free(m);
    return NULL;
  }
  m->bytes = bytes;
  m->len = len;
  m->refs = 1;
  snprintf(m->path, sizeof m->path, "%s", path ? path : "");
  return m;
}

srv_mod_t *srv_mod_copy(const uint8_t *bytes, size_t len, int *err) {
  uint8_t *b = malloc(len ? len : 1);
  if (!b) {
    *err = OTA_ENOMEM;
    return NULL;
  }
  memcpy(b, bytes, len);
  srv_mod_t *m = mod_new(NULL, b, len);
  if (!m) {
    ota_module_t tmp;
    *err = ota_module_parse(b, len, &tmp);
    if (!*err)
      *err = OTA_ENOMEM;
    free(b);
  }
  return m;
}

static uint8_t *read_file(const char *path, size_t size) {
  FILE *f = fopen(path, "rb");
  uint8_t *b = f ? malloc(size ? size : 1) : NULL;
  if (b && fread(b, 1, size, f) != size) {
    free(b);
    b = NULL;
  }
  if (f)
    fclose(f);
  return b;
}

/* Drop unreferenced entries beyond what the cache holds, oldest first. */
static void cache_put(srv_mod_t *m) {
  if (ncache == CACHE_MAX) {
    size_t i = 0;
    while (i < ncache && cache[i]->refs > 1)
      i++;
    if (i == ncache)
      return; /* every entry in use: m is not cached */
    srv_mod_unref(cache[i]);
    memmove(&cache[i], &cache[i + 1], (ncache - i - 1) * sizeof *cache);
    ncache--;
  }
  m->refs++; /* the cache's own reference */
  cache[ncache++] = m;
}

srv_mod_t *srv_mod_load(const char *path, int *err) {
  struct stat st;
  if (stat(path, &st) || !S_ISREG(st.st_mode)) {
    *err = OTA_ENOENT;
    return NULL;
  }
  if (st.st_size <= 0 || st.st_size > 8 * 1024 * 1024) {
    *err = OTA_EINVAL;
    return NULL;
  }
  for (size_t i = 0; i < ncache; i++) {
    srv_mod_t *m = cache[i];
    if (strcmp(m->path, path))
      continue;
    if (m->size == st.st_size && m->mtime_s == st.st_mtim.tv_sec &&
        m->mtime_ns == st.st_mtim.tv_nsec && m->ino == st.st_ino) {
      stats.hits++;
      m->refs++;
      return m;
    }
    /* The file changed: jobs holding the old bytes keep them. */
    srv_mod_unref(m);
    memmove(&cache[i], &cache[i + 1], (ncache - i - 1) * sizeof *cache);
    ncache--;
    break;
  }
  uint8_t *b = read_file(path, (size_t)st.st_size);
  if (!b) {
    *err = OTA_EIO;
    return NULL;
  }
  stats.loads++;
  srv_mod_t *m = mod_new(path, b, (size_t)st.st_size);
  if (!m) {
    ota_module_t tmp;
    *err = ota_module_parse(b, (size_t)st.st_size, &tmp);
    if (!*err)
      *err = OTA_ENOMEM;
    free(b);
    return NULL;
  }
  m->size = st.st_size;
  m->mtime_s = st.st_mtim.tv_sec;
  m->mtime_ns = st.st_mtim.tv_nsec;
  m->ino = st.st_ino;
  cache_put(m);
  return m;
}

srv_mod_t *srv_mod_ref(srv_mod_t *m) {
  if (m)
    m->refs++;
  return m;
}

void srv_mod_unref(srv_mod_t *m) {
  if (!m || --m->refs)
    return;
  free(m->bytes);
  free(m);
}

void srv_mods_free(void) {
  for (size_t i = 0; i < ncache; i++)
    srv_mod_unref(cache[i]);
  ncache = 0;
}

srv_mods_stats_t srv_mods_stats(void) {
  return stats;
}
