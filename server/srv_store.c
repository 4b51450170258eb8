/* otalab-server durable store: the REST API's collections as jansson files
 * under --data DIR, crash-safe (temp file, fsync, rename, fsync dir). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "srv_api.h"

srv_db_t srv_db;

static int mkdirs(const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s", dir);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = 0;
    if (mkdir(p, 0700) && errno != EEXIST)
      return OTA_EIO;
    *s = '/';
  }
  if (mkdir(p, 0700) && errno != EEXIST)
    return OTA_EIO;
  return 0;
}

int srv_store_write(const char *path, const void *buf, size_t len) {
  char dir[4096], tmp[4200];
  snprintf(dir, sizeof dir, "%s", path);
  char *sl = strrchr(dir, '/');
  if (sl && sl != dir) {
    *sl = 0;
    if (mkdirs(dir))
      return OTA_EIO;
  } else {
    snprintf(dir, sizeof dir, "%s", sl ? "/" : ".");
  }
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    return OTA_EIO;
  const char *p = buf;
  size_t left = len;
  while (left) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      close(fd);
      unlink(tmp);
      return OTA_EIO;
    }
    p += n, left -= (size_t)n;
  }
  if (fsync(fd) || close(fd) || rename(tmp, path)) {
    unlink(tmp);
    return OTA_EIO;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

static json_t **slot(const char *name) {
  if (!strcmp(name, "users"))
    return &srv_db.users;
  if (!strcmp(name, "tokens"))
    return &srv_db.tokens;
  if (!strcmp(name, "devices"))
    return &srv_db.devices;
  if (!strcmp(name, "products"))
    return &srv_db.products;
  return NULL;
}

static const char *const names[] = {"users", "tokens", "devices", "products"};

int srv_store_open(const char *dir) {
  srv_store_free();
  srv_db.dir = dir;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char path[4096];
    json_error_t je;
    json_t **s = slot(names[i]);
    snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
    if (access(path, F_OK) == 0) {
      json_t *v = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
      if (v && json_is_object(v)) {
        *s = v;
        OTA_LOGI("store: %s: %zu entries", path, json_object_size(v));
        continue;
      }
      char aside[4200];
      snprintf(aside, sizeof aside, "%s.corrupt", path);
      OTA_LOGE("store: %s is corrupt (%s line %d), not loaded; moved to %s",
               path, v ? "not a JSON object" : je.text, je.line, aside);
      json_decref(v);
      if (rename(path, aside))
        OTA_LOGE("store: cannot move %s aside", path);
    }
    *s = json_object();
    if (!*s)
      return OTA_ENOMEM;
  }
  return 0;
}

int srv_store_commit(const char *name) {
  json_t **s = slot(name);
  if (!s || !*s || !srv_db.dir)
    return OTA_EINVAL;
  char *text = json_dumps(*s, JSON_INDENT(1) | JSON_SORT_KEYS);
  if (!text)
    return OTA_ENOMEM;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.json", srv_db.dir, name);
  size_t n = strlen(text);
  int err = srv_store_write(path, text, n);
  free(text);
  if (err)
    OTA_LOGE("store: cannot write %s: %s", path, strerror(errno));
  return err;
}

void srv_store_free(void) {
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    json_t **s = slot(names[i]);
    json_decref(*s);
    *s = NULL;
  }
}
