/* otalab events: follow otalab-server's event stream (Particle's SSE format,
 * PROTOCOL.md 9: ":ok", then "event:"/"data:" records) and print each event. */
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "http.h"
#include "otalab/err.h"
#include "rest.h"

static void events_usage(FILE *f) {
  fprintf(f, "usage: otalab events [--server URL] [--token T] [--json] "
             "[--device ID]\n"
             "                     [--product ID] [--count N] [--timeout S] "
             "[PREFIX]\n\n"
             "Print events as they arrive: TIME NAME DEVICE DATA (--json: the "
             "raw\n"
             "data line). Exits after N events (--count), or after S seconds "
             "without\none (--timeout; exit 1).\n");
}

/* One complete SSE record (lines without the blank separator). */
static int print_record(char *rec, int json) {
  char *name = NULL, *data = NULL;
  for (char *line = strtok(rec, "\n"); line; line = strtok(NULL, "\n")) {
    if (!strncmp(line, "event: ", 7))
      name = line + 7;
    else if (!strncmp(line, "data: ", 6))
      data = line + 6;
  }
  if (!name || !data)
    return 0; /* a comment (":ok", keep-alive) */
  if (json) {
    printf("{\"name\":\"%s\",\"event\":%s}\n", name, data);
  } else {
    json_t *o = json_loads(data, 0, NULL);
    printf("%s %s %s %s\n",
           o ? json_string_value(json_object_get(o, "published_at")) : "-",
           name, o ? json_string_value(json_object_get(o, "coreid")) : "-",
           o ? json_string_value(json_object_get(o, "data")) : data);
    json_decref(o);
  }
  fflush(stdout);
  return 1;
}

static int events_run(int argc, char **argv) {
  cli_rest_t r;
  argc = cli_rest_opts(argc, argv, &r, "otalab events");
  const char *dev = NULL, *prod = NULL, *prefix = "";
  long count = 0, timeout = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(argv[i], "--help")) {
      events_usage(stdout);
      return CLI_EXIT_OK;
    } else if (v && !strcmp(argv[i], "--device")) {
      dev = v, i++;
    } else if (v && !strcmp(argv[i], "--product")) {
      prod = v, i++;
    } else if (v && !strcmp(argv[i], "--count")) {
      count = atol(v), i++;
    } else if (v && !strcmp(argv[i], "--timeout")) {
      timeout = atol(v), i++;
    } else if (argv[i][0] != '-' && !*prefix) {
      prefix = argv[i];
    } else {
      events_usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  if (argc < 0 || count < 0 || timeout < 0 || (dev && prod)) {
    events_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  char path[256];
  const char *sep = *prefix ? "/" : "";
  if (dev)
    snprintf(path, sizeof path, "/v1/devices/%.40s/events%s%.64s", dev, sep,
             prefix);
  else if (prod)
    snprintf(path, sizeof path, "/v1/products/%.20s/events%s%.64s", prod, sep,
             prefix);
  else
    snprintf(path, sizeof path, "/v1/events%s%.64s", sep, prefix);
  int status = 0;
  int fd = cli_http_stream(r.url, path, r.token, 10000, &status);
  if (fd < 0 || status != 200) {
    fprintf(stderr, "otalab events: GET %s: %s\n", path,
            fd < 0 ? ota_strerror(fd) : "refused");
    if (fd >= 0)
      fprintf(stderr, "otalab events: HTTP %d\n", status);
    if (fd >= 0)
      close(fd);
    return CLI_EXIT_FAIL;
  }
  static char buf[65536];
  size_t n = 0;
  long seen = 0;
  int rc = CLI_EXIT_FAIL;
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, timeout ? (int)(timeout * 1000) : -1);
    if (pr == 0) {
      fprintf(stderr, "otalab events: no event for %ld s\n", timeout);
      break;
    }
    ssize_t got = pr > 0 ? read(fd, buf + n, sizeof buf - 1 - n) : -1;
    if (got <= 0) {
      fprintf(stderr, "otalab events: stream closed\n");
      break;
    }
    n += (size_t)got;
    buf[n] = 0;
    char *end;
    while ((end = strstr(buf, "\n\n"))) {
      *end = 0;
      seen += print_record(buf, r.json);
      size_t used = (size_t)(end + 2 - buf);
      memmove(buf, end + 2, n - used + 1);
      n -= used;
      if (count && seen >= count) {
        rc = CLI_EXIT_OK;
        goto out;
      }
    }
    if (n == sizeof buf - 1)
      n = 0; /* an absurd record: drop it */
  }
out:
  close(fd);
  return rc;
}

const cli_cmd_t cli_cmd_events = {"events", "follow the server's event stream",
                                  events_run};
