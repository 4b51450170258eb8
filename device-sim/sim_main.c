/* otalab-device: a simulated Electron's cloud connection: DTLS, Hello, and the
 * answers to server Hello, Describe and Ping (PROTOCOL.md 1.5, 2.1-2.3, 3.1).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "sim_transport.h"

#define MSG_MAX 800 /* MBEDTLS_SSL_MAX_CONTENT_LEN on Electron 0.7 */

enum { CON = 0, NON = 1, ACK = 2, RST = 3 };
#define CODE(c, d) ((uint8_t)((c) << 5 | (d)))

/* Hard-coded 0.6.1 system describe until the device core lands. */
static const char describe_json[] =
    "{\"p\":10,\"imei\":\"352753090000000\",\"iccid\":"
    "\"8934076500000000000\",\"m\":["
    "{\"s\":16384,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"b\",\"n\":\"0\","
    "\"v\":11,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"1\","
    "\"v\":105,\"d\":[]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"2\","
    "\"v\":105,\"d\":[{\"f\":\"s\",\"n\":\"1\",\"v\":105}]},"
    "{\"s\":131072,\"l\":\"m\",\"vc\":30,\"vv\":30,\"f\":\"s\",\"n\":\"3\","
    "\"v\":105,\"d\":[{\"f\":\"s\",\"n\":\"2\",\"v\":105}]}],"
    "\"f\":[],\"v\":{}}";

/* A tiny RFC 7252 writer: header, token, options with small deltas/lengths
 * (< 13, enough for Particle's one-character paths), payload. */
typedef struct {
  uint8_t b[MSG_MAX];
  size_t n;
  unsigned last_opt;
} coap_w_t;

static void w_head(coap_w_t *w, int type, uint8_t code, uint16_t mid,
                   const uint8_t *tok, size_t tkl) {
  w->b[0] = (uint8_t)(0x40 | type << 4 | (tkl & 15));
  w->b[1] = code;
  w->b[2] = (uint8_t)(mid >> 8);
  w->b[3] = (uint8_t)mid;
  if (tkl)
    memcpy(w->b + 4, tok, tkl);
  w->n = 4 + tkl;
  w->last_opt = 0;
}

static void w_opt(coap_w_t *w, unsigned num, const void *v, size_t len) {
  w->b[w->n++] = (uint8_t)((num - w->last_opt) << 4 | len);
  memcpy(w->b + w->n, v, len);
  w->n += len;
  w->last_opt = num;
}

static int w_payload(coap_w_t *w, const void *p, size_t len) {
  if (w->n + 1 + len > sizeof w->b)
    return OTA_ENOBUFS;
  w->b[w->n++] = 0xFF;
  memcpy(w->b + w->n, p, len);
  w->n += len;
  return 0;
}

/* A received message: views into the caller's datagram. */
typedef struct {
  int type;
  uint8_t code;
  uint16_t mid;
  const uint8_t *tok;
  size_t tkl;
  char path[16];
  uint8_t query[4];
  size_t qlen;
  const uint8_t *payload;
  size_t plen;
} coap_r_t;

static int parse(const uint8_t *b, size_t n, coap_r_t *m) {
  memset(m, 0, sizeof *m);
  if (n < 4 || (b[0] >> 6) != 1)
    return OTA_EPARSE;
  m->type = b[0] >> 4 & 3;
  m->tkl = b[0] & 15;
  m->code = b[1];
  m->mid = (uint16_t)(b[2] << 8 | b[3]);
  if (m->tkl > 8 || 4 + m->tkl > n)
    return OTA_EPARSE;
  m->tok = b + 4;
  size_t i = 4 + m->tkl;
  unsigned num = 0;
  while (i < n && b[i] != 0xFF) {
    unsigned d = b[i] >> 4, l = b[i] & 15;
    i++;
    if (d == 13) {
      if (i >= n)
        return OTA_EPARSE;
      d = 13u + b[i++];
    } else if (d == 14) {
      if (i + 1 >= n)
        return OTA_EPARSE;
      d = 269u + (unsigned)(b[i] << 8 | b[i + 1]);
      i += 2;
    } else if (d == 15)
      return OTA_EPARSE;
    if (l == 13) {
      if (i >= n)
        return OTA_EPARSE;
      l = 13u + b[i++];
    } else if (l == 14) {
      if (i + 1 >= n)
        return OTA_EPARSE;
      l = 269u + (unsigned)(b[i] << 8 | b[i + 1]);
      i += 2;
    } else if (l == 15)
      return OTA_EPARSE;
    if (i + l > n)
      return OTA_EPARSE;
    num += d;
    if (num == 11) {
      size_t pl = strlen(m->path);
      if (pl + l + 1 < sizeof m->path) {
        if (pl)
          m->path[pl++] = '/';
        memcpy(m->path + pl, b + i, l);
        m->path[pl + l] = 0;
      }
    } else if (num == 15 && l <= sizeof m->query) {
      memcpy(m->query, b + i, l);
      m->qlen = l;
    }
    i += l;
  }
  if (i < n) { /* payload marker */
    if (i + 1 == n)
      return OTA_EPARSE;
    m->payload = b + i + 1;
    m->plen = n - i - 1;
  }
  return 0;
}

static volatile sig_atomic_t stop;
static void on_signal(int s) {
  (void)s;
  stop = 1;
}

static void log_sink(void *ud, ota_log_level_t lvl, const char *line) {
  static const char *names[] = {"E", "W", "I", "D"};
  struct timespec ts;
  (void)ud;
  clock_gettime(CLOCK_REALTIME, &ts);
  fprintf(stderr, "%ld.%03ld %s %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000,
          names[lvl], line);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int hexid(const char *s, uint8_t out[12]) {
  if (strlen(s) != 24)
    return OTA_EINVAL;
  for (int i = 0; i < 12; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1)
      return OTA_EINVAL;
    out[i] = (uint8_t)v;
  }
  return 0;
}

static int load_state(const char *path, uint8_t *buf, size_t cap, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return OTA_ENOENT;
  *len = fread(buf, 1, cap, f);
  fclose(f);
  return *len ? 0 : OTA_ETRUNC;
}

static void save_state(sim_transport_t *t, const char *path) {
  uint8_t buf[4096];
  size_t len = 0;
  char tmp[4096];
  if (!path || t->ops->save_session(t, buf, sizeof buf, &len))
    return;
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f || fwrite(buf, 1, len, f) != len) {
    if (f)
      fclose(f);
    OTA_LOGW("cannot write state %s", path);
    return;
  }
  fclose(f);
  if (rename(tmp, path) == 0)
    OTA_LOGD("session saved to %s (%zu bytes)", path, len);
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: otalab-device --id HEX24 --key FILE --cert FILE --server "
      "HOST:PORT\n"
      "                     --server-cert FILE [--state FILE] [OPTIONS]\n\n"
      "A simulated Particle Electron connecting to otalab-server over DTLS.\n\n"
      "  --id HEX24          device id (12 bytes hex)\n"
      "  --key/--cert FILE   device key and certificate (otalab keys device)\n"
      "  --server HOST:PORT  cloud address (the Electron uses port 5684)\n"
      "  --server-cert FILE  pinned server certificate\n"
      "  --state FILE        saved DTLS session, resumed on the next start\n"
      "  --ota-flag          set Hello flag 0x01 (an OTA update was applied)\n"
      "  --once              exit after answering the first Describe\n"
      "  -v                  verbose\n"
      "  --help              this text\n\n"
      "Exit: 0 ok, 1 connection failed or refused, 2 usage.\n"
      "SSLKEYLOGFILE=FILE appends CLIENT_RANDOM lines (NSS key log).\n");
}

int main(int argc, char **argv) {
  const char *id = NULL, *key = NULL, *cert = NULL, *server = NULL, *pin = NULL,
             *state = NULL;
  int verbose = 0, once = 0, ota_flag = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "-v"))
      verbose++;
    else if (!strcmp(a, "--once"))
      once = 1;
    else if (!strcmp(a, "--ota-flag"))
      ota_flag = 1;
    else if (v && !strcmp(a, "--id"))
      id = v, i++;
    else if (v && !strcmp(a, "--key"))
      key = v, i++;
    else if (v && !strcmp(a, "--cert"))
      cert = v, i++;
    else if (v && !strcmp(a, "--server"))
      server = v, i++;
    else if (v && !strcmp(a, "--server-cert"))
      pin = v, i++;
    else if (v && !strcmp(a, "--state"))
      state = v, i++;
    else {
      fprintf(stderr, "otalab-device: bad argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  uint8_t rawid[12];
  if (!id || hexid(id, rawid) || !key || !cert || !server || !pin) {
    fprintf(stderr, "otalab-device: --id (24 hex digits), --key, --cert, "
                    "--server and --server-cert are required\n");
    usage(stderr);
    return 2;
  }
  char host[256];
  const char *colon = strrchr(server, ':');
  int port = colon ? atoi(colon + 1) : 0;
  if (!colon || port <= 0 || port > 65535 ||
      (size_t)(colon - server) >= sizeof host) {
    fprintf(stderr, "otalab-device: --server must be HOST:PORT\n");
    return 2;
  }
  memcpy(host, server, (size_t)(colon - server));
  host[colon - server] = 0;
  ota_log_set(log_sink, NULL, verbose ? OTA_LOG_DEBUG : OTA_LOG_INFO);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  uint8_t sess[4096];
  size_t sess_len = 0;
  if (state && load_state(state, sess, sizeof sess, &sess_len) == 0)
    OTA_LOGI("loaded saved session from %s (%zu bytes)", state, sess_len);
  sim_dtls_cfg_t cfg = {.host = host,
                        .port = (uint16_t)port,
                        .key_file = key,
                        .cert_file = cert,
                        .server_cert = pin,
                        .session = sess_len ? sess : NULL,
                        .session_len = sess_len,
                        .keylog_file = getenv("SSLKEYLOGFILE")};
  sim_transport_t *t = sim_dtls_new(&cfg);
  if (!t)
    return 1;
  int rc = 1;
  /* Device OS retransmits 3 s doubling to 24 s: 3+6+12+24 s, then gives up. */
  int err = t->ops->connect(t, 45000);
  if (err) {
    OTA_LOGE("connect to %s failed: %s", server, ota_strerror(err));
    goto out;
  }
  save_state(t, state);

  /* Hello: CON POST h, no token, 22-byte payload (29 bytes on the wire). */
  uint16_t mid = (uint16_t)(now_ms() & 0xffff), hello_mid = mid++;
  coap_w_t w;
  uint8_t hello[22] = {0x00, 0x0a, 0xff, 0xff, 0, (uint8_t)(ota_flag ? 1 : 0),
                       0x00, 0x0a, 0x00, 12};
  memcpy(hello + 10, rawid, 12);
  w_head(&w, CON, CODE(0, 2), hello_mid, NULL, 0);
  w_opt(&w, 11, "h", 1);
  w_payload(&w, hello, sizeof hello);
  uint8_t hello_msg[64];
  size_t hello_len = w.n;
  memcpy(hello_msg, w.b, w.n);
  if (t->ops->send(t, hello_msg, hello_len) < 0)
    goto out;
  OTA_LOGI("sent Hello (%zu bytes, flags 0x%02x)", hello_len, hello[5]);

  int acked = 0, tries = 1, described = 0;
  uint64_t next_rtx = now_ms() + 4000; /* CoAP ACK timeout ~4 s on Device OS */
  while (!stop) {
    struct pollfd p = {.fd = t->ops->poll_fd(t), .events = POLLIN};
    int pr = poll(&p, 1, 200);
    if (pr < 0 && errno != EINTR)
      break;
    if (!acked && now_ms() >= next_rtx) {
      if (tries > 3) {
        OTA_LOGE("Hello not acknowledged after %d tries: refused by the "
                 "server?",
                 tries);
        goto out;
      }
      tries++;
      next_rtx = now_ms() + 4000u * (1u << (tries - 1));
      OTA_LOGI("retransmitting Hello (try %d)", tries);
      t->ops->send(t, hello_msg, hello_len);
    }
    uint8_t in[MSG_MAX];
    int n;
    while ((n = t->ops->recv(t, in, sizeof in)) > 0) {
      coap_r_t m;
      if (parse(in, (size_t)n, &m)) {
        OTA_LOGW("dropping malformed CoAP message (%d bytes)", n);
        continue;
      }
      OTA_LOGD("rx type %d code %d.%02d mid 0x%04x path '%s' %zu B payload",
               m.type, m.code >> 5, m.code & 31, m.mid, m.path, m.plen);
      if (m.type == ACK && m.mid == hello_mid) {
        if (!acked)
          OTA_LOGI("Hello acknowledged: connected");
        acked = 1;
        save_state(t, state);
        continue;
      }
      if (m.type == RST) {
        OTA_LOGW("RST for mid 0x%04x", m.mid);
        continue;
      }
      if (m.type != CON && m.type != NON)
        continue;
      if (m.code == 0 && m.type == CON) { /* ping */
        w_head(&w, ACK, 0, m.mid, NULL, 0);
        t->ops->send(t, w.b, w.n);
        OTA_LOGI("answered server Ping");
      } else if (m.code == CODE(0, 2) && !strcmp(m.path, "h")) {
        if (m.type == CON) {
          w_head(&w, ACK, 0, m.mid, NULL, 0);
          t->ops->send(t, w.b, w.n);
        }
        OTA_LOGI("server Hello received (OTA flag cleared)");
      } else if (m.code == CODE(0, 1) && !strcmp(m.path, "d")) {
        unsigned flags = m.qlen ? m.query[0] : 3;
        w_head(&w, m.type == CON ? ACK : NON, CODE(2, 5),
               m.type == CON ? m.mid : mid++, m.tok, m.tkl);
        if (w_payload(&w, describe_json, sizeof describe_json - 1) == 0)
          t->ops->send(t, w.b, w.n);
        OTA_LOGI("answered Describe (flags %u, %zu bytes)", flags,
                 sizeof describe_json - 1);
        described = 1;
      } else if (m.type == CON) {
        w_head(&w, ACK, CODE(4, 4), m.mid, m.tok, m.tkl);
        t->ops->send(t, w.b, w.n);
        OTA_LOGI("unsupported request %d.%02d '%s': 4.04", m.code >> 5,
                 m.code & 31, m.path);
      }
    }
    if (n < 0) {
      OTA_LOGE("connection lost: %s", ota_strerror(n));
      goto out;
    }
    if (once && acked && described)
      break;
  }
  rc = 0;
  save_state(t, state);
out:
  printf("bytes tx=%llu rx=%llu handshake(%s) tx=%llu rx=%llu dgrams "
         "tx=%llu rx=%llu ms=%u\n",
         (unsigned long long)t->stats.tx_bytes,
         (unsigned long long)t->stats.rx_bytes,
         t->stats.resumed ? "resumed" : "full",
         (unsigned long long)t->stats.hs_tx_bytes,
         (unsigned long long)t->stats.hs_rx_bytes,
         (unsigned long long)t->stats.hs_tx_dgrams,
         (unsigned long long)t->stats.hs_rx_dgrams, t->stats.hs_ms);
  fflush(stdout);
  t->ops->close(t, 0);
  t->ops->destroy(t);
  return rc;
}
