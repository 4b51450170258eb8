/* otalab-server: entry point. One thread, one loop: libwebsockets owns it and
 * libcoap's epoll fd is adopted as a raw fd (DESIGN.md, measured facts). */
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "otalab/catalog.h"
#include "otalab/log.h"
#include "srv.h"
#include "srv_api.h"

#ifndef OTALAB_DEFAULT_CATALOG
#define OTALAB_DEFAULT_CATALOG "/usr/share/otalab/electron.json"
#endif

static struct lws_context *lctx;
static lws_sorted_usec_list_t sul;
static volatile sig_atomic_t interrupted;

static void tick(lws_sorted_usec_list_t *s) {
  unsigned ms = srv_coap_timers();
  lws_sul_schedule(lctx, 0, s, tick, (lws_usec_t)ms * 1000);
}

void srv_loop_kick(void) {
  if (lctx)
    lws_sul_schedule(lctx, 0, &sul, tick, 1);
}

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
  if (lctx)
    lws_cancel_service(lctx);
}

static void log_sink(void *ud, ota_log_level_t lvl, const char *line) {
  static const char *names[] = {"E", "W", "I", "D"};
  struct timespec ts;
  (void)ud;
  clock_gettime(CLOCK_REALTIME, &ts);
  fprintf(stderr, "%ld.%03ld %s %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000,
          names[lvl], line);
}

/* Port 0: ask the kernel for a free port, then use it (tiny race, fine for
 * tests) -- libcoap 4.3.1 has no getter for an endpoint's bound port. */
static int free_port(const char *bind_addr, int type) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t al = sizeof a;
  int fd = socket(AF_INET, type, 0), port = -1;
  if (fd < 0)
    return -1;
  inet_pton(AF_INET, bind_addr, &a.sin_addr);
  if (!bind(fd, (struct sockaddr *)&a, sizeof a) &&
      !getsockname(fd, (struct sockaddr *)&a, &al))
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: otalab-server [OPTIONS]\n\n"
          "Local Particle-cloud emulator: CoAP over DTLS for devices, REST for "
          "tools.\n\n"
          "  --coap-port N   UDP port for CoAP/DTLS (default 5684; 0 = any)\n"
          "  --http-port N   TCP port for REST (default 8080; 0 = any)\n"
          "  --bind ADDR     IPv4 address to listen on (default 127.0.0.1)\n"
          "  --keys DIR      server.key.pem and server.crt.pem (otalab keys "
          "server)\n"
          "  --data DIR      state; device keys in DIR/devices/<id>.pub.pem\n"
          "  --max-upload N  largest REST upload in bytes, K/M suffix "
          "(default 1M)\n"
          "  --catalog FILE  release catalogue (default $OTALAB_CATALOG or "
          "the\n"
          "                  source tree's fixtures/catalog/electron.json)\n"
          "  --ota-window N  fast OTA: first window of NON chunks, each "
          "window\n"
          "                  ends with a ping (default 16; grows to 64 on "
          "fast links)\n"
          "  --ota-gap MS    fast OTA: wait for a window's ping ACK at most "
          "MS\n"
          "                  (default 5000; 0 = no pings, unpaced)\n"
          "  --max-devices N device table size (default %d)\n"
          "  -v              verbose (twice: libcoap/DTLS debug)\n",
          SRV_MAX_DEVICES_DEFAULT);
  srv_api_usage(f);
  srv_cloud_usage(f);
  fprintf(f, "  --help          this text\n\n"
             "Prints 'listening coap=PORT http=PORT' on stdout when ready.\n"
             "SSLKEYLOGFILE=FILE appends DTLS keys in NSS key-log format.\n");
}

int main(int argc, char **argv) {
  srv_opts_t o = {.bind = "127.0.0.1",
                  .coap_port = 5684,
                  .http_port = 8080,
                  .keys_dir = NULL,
                  .data_dir = NULL};
  int n_api;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "-v")) {
      o.verbose++;
    } else if (!strcmp(a, "-vv")) {
      o.verbose += 2;
    } else if (v && !strcmp(a, "--coap-port")) {
      o.coap_port = atoi(v), i++;
    } else if (v && !strcmp(a, "--http-port")) {
      o.http_port = atoi(v), i++;
    } else if (v && !strcmp(a, "--bind")) {
      o.bind = v, i++;
    } else if (v && !strcmp(a, "--keys")) {
      o.keys_dir = v, i++;
    } else if (v && !strcmp(a, "--data")) {
      o.data_dir = v, i++;
    } else if (v && !strcmp(a, "--ota-window") && atoi(v) > 0) {
      srv_ota_window = (unsigned)atoi(v), i++;
    } else if (v && !strcmp(a, "--ota-gap") && atoi(v) >= 0) {
      srv_ota_gap_ms = atoi(v), i++;
    } else if (v && !strcmp(a, "--max-devices") && atol(v) > 0) {
      o.max_devices = (size_t)atol(v), i++;
    } else if (v && !strcmp(a, "--catalog")) {
      o.catalog = v, i++;
    } else if (v && !strcmp(a, "--max-upload")) {
      char *end;
      unsigned long long n = strtoull(v, &end, 10);
      if (*end == 'K' || *end == 'k')
        n *= 1024, end++;
      else if (*end == 'M' || *end == 'm')
        n *= 1024 * 1024, end++;
      if (*end || !n) {
        fprintf(stderr, "otalab-server: bad --max-upload '%s'\n", v);
        return 2;
      }
      o.max_upload = (size_t)n, i++;
    } else if ((n_api = srv_cloud_option(a, v)) != 0 ||
               (n_api = srv_api_option(a, v)) != 0) {
      if (n_api < 0)
        return 2;
      i += n_api - 1;
    } else {
      fprintf(stderr, "otalab-server: bad argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!o.keys_dir || !o.data_dir) {
    fprintf(stderr, "otalab-server: --keys DIR and --data DIR are required\n");
    usage(stderr);
    return 2;
  }
  if (o.coap_port < 0 || o.coap_port > 65535 || o.http_port < 0 ||
      o.http_port > 65535) {
    fprintf(stderr, "otalab-server: port out of range\n");
    return 2;
  }
  ota_log_set(log_sink, NULL, o.verbose ? OTA_LOG_DEBUG : OTA_LOG_INFO);
  if (o.coap_port == 0)
    o.coap_port = free_port(o.bind, SOCK_DGRAM);
  if (o.http_port == 0)
    o.http_port = free_port(o.bind, SOCK_STREAM);
  if (o.coap_port <= 0 || o.http_port <= 0) {
    OTA_LOGE("cannot find a free port on %s", o.bind);
    return 1;
  }

  if (o.max_upload)
    srv_http_max_upload = o.max_upload;
  if (!o.catalog)
    o.catalog = getenv("OTALAB_CATALOG");
  if (!o.catalog || !*o.catalog)
    o.catalog = OTALAB_DEFAULT_CATALOG;
  static ota_catalog_t cat;
  char cerr[256];
  ota_catalog_init(&cat);
  if (ota_catalog_load_file(&cat, o.catalog, cerr, sizeof cerr))
    OTA_LOGW("catalogue %s not loaded (%s): no system_firmware_version",
             o.catalog, cerr);
  else
    srv_catalog = &cat;

  static srv_devices_t devs;
  srv_devices_init(&devs, o.data_dir);
  srv_http_devices = &devs;
  int rc = 1;
  if (srv_devices_setup(&devs, o.max_devices)) {
    OTA_LOGE("no memory for %zu devices", o.max_devices);
    goto out;
  }
  if (srv_api_setup(o.data_dir)) {
    OTA_LOGE("cannot open the store under %s", o.data_dir);
    goto out;
  }
  srv_data_dir = o.data_dir;
  size_t nrest = srv_ota_restore(&devs);
  if (nrest)
    OTA_LOGI("ota: %zu saved job(s) restored from %s/jobs", nrest, o.data_dir);
  int cfd = srv_coap_setup(&o, &devs);
  if (cfd < 0)
    goto out;

  lws_set_log_level(o.verbose > 1 ? (LLL_ERR | LLL_WARN | LLL_NOTICE)
                                  : (LLL_ERR | LLL_WARN),
                    NULL);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = o.http_port;
  info.iface = o.bind;
  info.protocols = srv_api_protocols(srv_protocols);
  info.gid = -1;
  info.uid = -1;
  lctx = lws_create_context(&info);
  if (!lctx) {
    OTA_LOGE("cannot listen on tcp %s:%d", o.bind, o.http_port);
    close(cfd);
    goto out;
  }
  struct lws_vhost *vh = lws_get_vhost_by_name(lctx, "default");
  lws_sock_file_fd_type u;
  u.filefd = cfd;
  if (!vh || !lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u,
                                         "otalab-coap", NULL)) {
    OTA_LOGE("cannot adopt the CoAP fd into the lws loop");
    close(cfd);
    goto out;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  srv_loop_kick();
  srv_events_start(lctx);
  printf("listening coap=%d http=%d\n", o.coap_port, o.http_port);
  fflush(stdout);
  OTA_LOGI("otalab-server: coaps://%s:%d, http://%s:%d, keys %s, data %s",
           o.bind, o.coap_port, o.bind, o.http_port, o.keys_dir, o.data_dir);
  while (!interrupted && lws_service(lctx, 0) >= 0)
    ;
  OTA_LOGI("otalab-server: shutting down");
  rc = 0;
out:
  if (lctx)
    lws_context_destroy(lctx);
  lctx = NULL;
  srv_ota_flush(&devs);
  srv_coap_free();
  srv_api_free();
  srv_devices_free(&devs);
  srv_mods_free();
  ota_catalog_free(&cat);
  return rc;
}
