/* otalab flash: OTA one or more module binaries to a device through
 * otalab-server's REST API, one module per reboot (PROTOCOL.md 2.5, 9). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "http.h"
#include "otalab/err.h"

static void flash_usage(FILE *out) {
  fprintf(out,
          "usage: otalab flash [--server URL] [--token T] [--quiet] "
          "[--timeout S] DEVICE FILE...\n\n"
          "Send each module to DEVICE over the air, in order: PUT it to\n"
          "/v1/devices/DEVICE, follow the transfer, wait for the reboot and "
          "the\n"
          "describe that shows the new module, then the next file.\n\n"
          "  --server URL  otalab-server REST URL (default $OTALAB_SERVER or "
          "http://127.0.0.1:8080)\n"
          "  --token T     access token (default $OTALAB_TOKEN)\n"
          "  --quiet       only the result lines\n"
          "  --timeout S   give up on one module after S seconds (default "
          "600)\n\n"
          "Exit: 0 all flashed, 1 a module failed or was refused, 2 usage.\n");
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The error text of a REST failure: "error", or the first of "errors". */
static const char *rest_error(json_t *o) {
  const char *e = json_string_value(json_object_get(o, "error"));
  if (!e)
    e = json_string_value(json_array_get(json_object_get(o, "errors"), 0));
  return e ? e : "no reason given";
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* PUT one file; returns the job number (> 0) or -1 with the reason printed. */
static long put_file(const char *url, const char *token, const char *dev,
                     const char *path) {
  uint8_t *data = NULL;
  size_t len = 0;
  int err = cli_read_file(path, &data, &len);
  if (err) {
    fprintf(stderr, "otalab flash: cannot read %s: %s\n", path,
            ota_strerror(err));
    return -1;
  }
  static const char boundary[] = "otalab-flash-7d1f0c93a2b44e51";
  char head[512], hdrs[160];
  int hl = snprintf(head, sizeof head,
                    "--%s\r\nContent-Disposition: form-data; "
                    "name=\"file_type\"\r\n\r\nbinary\r\n"
                    "--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                    "filename=\"%s\"\r\nContent-Type: "
                    "application/octet-stream\r\n\r\n",
                    boundary, boundary, base_name(path));
  char tail[64];
  int tl = snprintf(tail, sizeof tail, "\r\n--%s--\r\n", boundary);
  size_t blen = (size_t)hl + len + (size_t)tl;
  uint8_t *body = malloc(blen);
  if (!body) {
    free(data);
    return -1;
  }
  memcpy(body, head, (size_t)hl);
  memcpy(body + hl, data, len);
  memcpy(body + (size_t)hl + len, tail, (size_t)tl);
  free(data);
  snprintf(hdrs, sizeof hdrs,
           "Content-Type: multipart/form-data; boundary=%s\r\n", boundary);
  char p[64];
  snprintf(p, sizeof p, "/v1/devices/%s", dev);
  cli_http_resp_t r;
  memset(&r, 0, sizeof r);
  err = cli_http_request(url, "PUT", p, token, hdrs, body, blen, 10000, &r);
  free(body);
  if (err) {
    fprintf(stderr, "otalab flash: %s: cannot reach %s: %s\n", base_name(path),
            url, ota_strerror(err));
    return -1;
  }
  json_t *o = json_loadb(r.body ? r.body : "", r.body_len, 0, NULL);
  long job = -1;
  if (r.status == 200 && json_is_true(json_object_get(o, "ok")))
    job = (long)json_integer_value(json_object_get(o, "job"));
  if (job <= 0)
    fprintf(stderr, "otalab flash: %s refused (HTTP %d): %s\n", base_name(path),
            r.status, o ? rest_error(o) : "unreadable reply");
  json_decref(o);
  cli_http_free(&r);
  return job;
}

static json_t *get_device(const char *url, const char *token, const char *dev) {
  char p[64];
  snprintf(p, sizeof p, "/v1/devices/%s", dev);
  cli_http_resp_t r;
  memset(&r, 0, sizeof r);
  if (cli_http_request(url, "GET", p, token, NULL, NULL, 0, 5000, &r))
    return NULL;
  json_t *o = r.status == 200 ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
  cli_http_free(&r);
  return o;
}

static void bar(int tty, int quiet, const char *name, const char *state,
                long sent, long total, int *last_decile) {
  int pct = total > 0 ? (int)(sent * 100 / total) : 0;
  if (quiet)
    return;
  if (tty) {
    char b[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
      b[i] = i < fill ? '#' : '.';
    b[30] = 0;
    fprintf(stderr, "\r%-34.34s [%s] %3d%% %7ld/%ld B %-10s", name, b, pct,
            sent, total, state);
    fflush(stderr);
  } else if (pct / 10 > *last_decile) {
    *last_decile = pct / 10;
    printf("%s: %d%% (%ld/%ld bytes) %s\n", name, pct, sent, total, state);
    fflush(stdout);
  }
}

/* Follow job `job` until it ends: 0 done, 1 failed (reason printed). */
static int follow(const char *url, const char *token, const char *dev, long job,
                  const char *name, int quiet, unsigned timeout_s) {
  int tty = isatty(2), decile = -1, said_reboot = 0, misses = 0;
  uint64_t t0 = mono_ms(), deadline = t0 + (uint64_t)timeout_s * 1000;
  while (mono_ms() < deadline) {
    json_t *d = get_device(url, token, dev);
    if (!d) {
      if (++misses > 25) {
        fprintf(stderr, "\notalab flash: %s: server not answering\n", name);
        return 1;
      }
      usleep(200000);
      continue;
    }
    misses = 0;
    json_t *last = json_object_get(d, "last_ota");
    json_t *cur = json_object_get(d, "ota");
    if (json_integer_value(json_object_get(last, "job")) == job) {
      const char *res = json_string_value(json_object_get(last, "result"));
      const char *why = json_string_value(json_object_get(last, "why"));
      long total = (long)json_integer_value(json_object_get(last, "total"));
      int ok = res && !strcmp(res, "ok");
      if (ok)
        bar(tty, quiet, name, "done", total, total, &decile);
      if (tty && !quiet)
        fputc('\n', stderr);
      if (ok)
        printf(
            "%s: flashed in %.1f s (transfer %.2f s, %ld bytes, %lld "
            "chunks resent)\n",
            name, (double)(mono_ms() - t0) / 1000.0,
            (double)json_integer_value(json_object_get(last, "transfer_ms")) /
                1000.0,
            total,
            (long long)json_integer_value(
                json_object_get(last, "chunks_resent")));
      else
        fprintf(stderr, "otalab flash: %s failed: %s\n", name,
                why ? why : "unknown reason");
      fflush(stdout);
      json_decref(d);
      return ok ? 0 : 1;
    }
    if (json_integer_value(json_object_get(cur, "job")) == job) {
      const char *st = json_string_value(json_object_get(cur, "state"));
      long sent = (long)json_integer_value(json_object_get(cur, "sent"));
      long total = (long)json_integer_value(json_object_get(cur, "total"));
      if (st && !strcmp(st, "REBOOTING")) {
        bar(tty, quiet, name, "rebooting", total, total, &decile);
        if (!tty && !quiet && !said_reboot)
          printf("%s: sent, waiting for the reboot and describe\n", name);
        said_reboot = 1;
      } else {
        const char *tr = json_string_value(json_object_get(cur, "transfer"));
        bar(tty, quiet, name, tr ? tr : "sending", sent, total, &decile);
      }
    } else if (!json_is_object(last) ||
               json_integer_value(json_object_get(last, "job")) < job) {
      bar(tty, quiet, name, "queued", 0, 1, &decile);
    }
    json_decref(d);
    usleep(tty ? 100000 : 200000);
  }
  if (tty && !quiet)
    fputc('\n', stderr);
  fprintf(stderr, "otalab flash: %s: no result after %u s\n", name, timeout_s);
  return 1;
}

static int flash_run(int argc, char **argv) {
  const char *server = NULL, *token = NULL;
  int quiet = 0, i;
  unsigned timeout_s = 600;
  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      flash_usage(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      quiet = 1;
    } else if (v && !strcmp(a, "--server")) {
      server = v, i++;
    } else if (v && !strcmp(a, "--token")) {
      token = v, i++;
    } else if (v && !strcmp(a, "--timeout") && atoi(v) > 0) {
      timeout_s = (unsigned)atoi(v), i++;
    } else {
      fprintf(stderr, "otalab flash: bad option '%s'\n", a);
      flash_usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  if (argc - i < 2) {
    flash_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *dev = argv[i++];
  if (strlen(dev) != 24 || strspn(dev, "0123456789abcdefABCDEF") != 24) {
    fprintf(stderr, "otalab flash: DEVICE must be a 24-hex-digit id\n");
    return CLI_EXIT_USAGE;
  }
  const char *url = cli_server_url(server);
  token = cli_token(token);
  int n = 0;
  for (; i < argc; i++, n++) {
    const char *name = base_name(argv[i]);
    long job = put_file(url, token, dev, argv[i]);
    if (job <= 0)
      return CLI_EXIT_FAIL;
    if (!quiet)
      printf("%s: update started (job %ld)\n", name, job);
    if (follow(url, token, dev, job, name, quiet, timeout_s)) {
      fprintf(stderr, "otalab flash: stopped after %d of %d modules\n", n,
              n + argc - i);
      return CLI_EXIT_FAIL;
    }
  }
  json_t *d = get_device(url, token, dev);
  const char *sv =
      json_string_value(json_object_get(d, "system_firmware_version"));
  printf("flashed %d module%s to %s: system firmware now %s\n", n,
         n == 1 ? "" : "s", dev, sv ? sv : "unknown (mixed module versions)");
  json_decref(d);
  return CLI_EXIT_OK;
}

const cli_cmd_t cli_cmd_flash = {"flash",
                                 "OTA module binaries to a device, one per "
                                 "reboot, with progress",
                                 flash_run};
