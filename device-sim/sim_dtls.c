/* otalab-device standard DTLS 1.2 transport: mbedTLS 2.28 client configured as
 * Device OS does (PROTOCOL.md 1.1: one suite, P-256, 3 s/24 s retransmit). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/timing.h>
#include <mbedtls/x509_crt.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "sim_transport.h"

typedef struct {
  sim_transport_t base;
  int fd;
  char host[256];
  uint16_t port;
  int rng_held; /* holds a reference on the shared rng */
  mbedtls_ssl_config conf;
  mbedtls_ssl_context ssl;
  mbedtls_x509_crt own, pin;
  mbedtls_pk_context key;
  mbedtls_timing_delay_context timer;
  mbedtls_ssl_session saved;
  int have_saved, ssl_ready;
  FILE *keylog;
  /* Owner-driven I/O (cfg.raw_send set): datagrams leave through raw_send
   * and arrive through feed(), one at a time (a link model sits between). */
  int (*raw_send)(void *ud, const uint8_t *buf, size_t len);
  void *raw_ud;
  const uint8_t *inbox; /* NULL, or inbox_buf: the datagram not yet read */
  size_t inbox_len;
  uint8_t *inbox_buf; /* owned copy: the owner frees its datagram after
                         feed(), and a step that does not read (reboot
                         wait, some handshake steps) reads it later */
  size_t inbox_cap;
  /* Non-blocking handshake (start/step). */
  uint64_t hs_t0, hs_tx0, hs_rx0, hs_txd0, hs_rxd0;
} dtls_t;

/* One entropy pool and DRBG for every transport of the process (a fleet runs
 * in one thread): an mbedtls_entropy_context is ~38 KB (measured, Debian's
 * mbedTLS 2.28), one per device was ~38 MB for a connected 1,000-device
 * fleet. Seeded at the first reference, freed with the last one. */
static struct {
  int refs;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
} rng;

static int rng_ref(void) {
  if (rng.refs) {
    rng.refs++;
    return 0;
  }
  mbedtls_entropy_init(&rng.entropy);
  mbedtls_ctr_drbg_init(&rng.drbg);
  int ret = mbedtls_ctr_drbg_seed(&rng.drbg, mbedtls_entropy_func, &rng.entropy,
                                  (const unsigned char *)"otalab-device", 13);
  if (ret) {
    mbedtls_ctr_drbg_free(&rng.drbg);
    mbedtls_entropy_free(&rng.entropy);
    return ret;
  }
  rng.refs = 1;
  return 0;
}

static void rng_unref(void) {
  if (rng.refs && --rng.refs == 0) {
    mbedtls_ctr_drbg_free(&rng.drbg);
    mbedtls_entropy_free(&rng.entropy);
  }
}

static const int suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, 0};
static const mbedtls_ecp_group_id curves[] = {MBEDTLS_ECP_DP_SECP256R1,
                                              MBEDTLS_ECP_DP_NONE};

static void log_mbed(const char *what, int ret) {
  char msg[160];
  mbedtls_strerror(ret, msg, sizeof msg);
  OTA_LOGE("dtls: %s: %s (-0x%04x)", what, msg, (unsigned)-ret);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* BIO: count every datagram on the socket; never block. */
static int bio_send(void *ud, const unsigned char *buf, size_t len) {
  dtls_t *d = ud;
  ssize_t n =
      d->raw_send ? d->raw_send(d->raw_ud, buf, len) : send(d->fd, buf, len, 0);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK
               ? MBEDTLS_ERR_SSL_WANT_WRITE
               : MBEDTLS_ERR_NET_SEND_FAILED;
  d->base.stats.tx_bytes += (uint64_t)n;
  d->base.stats.tx_dgrams++;
  OTA_LOGD("udp: tx %zd bytes (record type %u)", n, len ? buf[0] : 0);
  return (int)n;
}

static int bio_recv(void *ud, unsigned char *buf, size_t len) {
  dtls_t *d = ud;
  ssize_t n;
  if (d->raw_send) {
    if (!d->inbox)
      return MBEDTLS_ERR_SSL_WANT_READ;
    n = (ssize_t)(d->inbox_len < len ? d->inbox_len : len);
    memcpy(buf, d->inbox, (size_t)n);
    d->inbox = NULL;
  } else
    n = recv(d->fd, buf, len, MSG_DONTWAIT);
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK
               ? MBEDTLS_ERR_SSL_WANT_READ
               : (errno == ECONNREFUSED ? MBEDTLS_ERR_SSL_WANT_READ
                                        : MBEDTLS_ERR_NET_RECV_FAILED);
  d->base.stats.rx_bytes += (uint64_t)n;
  d->base.stats.rx_dgrams++;
  OTA_LOGD("udp: rx %zd bytes (record type %u)", n, n ? buf[0] : 0);
  return (int)n;
}

/* NSS key log line from the master secret (mbedTLS 2.28 export-keys hook). */
static int export_keys(void *ud, const unsigned char *ms,
                       const unsigned char *kb, size_t maclen, size_t keylen,
                       size_t ivlen, const unsigned char crand[32],
                       const unsigned char srand[32],
                       mbedtls_tls_prf_types prf) {
  dtls_t *d = ud;
  (void)kb, (void)maclen, (void)keylen, (void)ivlen, (void)srand, (void)prf;
  if (!d->keylog)
    return 0;
  fprintf(d->keylog, "CLIENT_RANDOM ");
  for (int i = 0; i < 32; i++)
    fprintf(d->keylog, "%02x", crand[i]);
  fputc(' ', d->keylog);
  for (int i = 0; i < 48; i++)
    fprintf(d->keylog, "%02x", ms[i]);
  fputc('\n', d->keylog);
  fflush(d->keylog);
  return 0;
}

static int open_socket(dtls_t *d) {
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM};
  struct addrinfo *ai = NULL;
  char port[8];
  snprintf(port, sizeof port, "%u", d->port);
  if (getaddrinfo(d->host, port, &hints, &ai) != 0 || !ai) {
    OTA_LOGE("dtls: cannot resolve %s", d->host);
    return OTA_EADDR;
  }
  /* A local port this process used before may still name a live session on
   * the server (a device that rebooted): a ClientHello arriving there goes to
   * that old DTLS association, which ignores it, and the handshake hangs. So
   * a reconnect takes a port never used by this process (fleets reconnect
   * thousands of times against one server). */
  static uint8_t used[65536 / 8];
  int spare[64], nspare = 0;
  for (;;) {
    d->fd = socket(ai->ai_family, ai->ai_socktype, 0);
    /* connect(): the kernel then drops datagrams from any other peer, as the
     * device firmware does (PROTOCOL.md 1.3, peer filtering). */
    if (d->fd < 0 || connect(d->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      OTA_LOGE("dtls: socket/connect: %s", strerror(errno));
      if (d->fd >= 0)
        close(d->fd);
      d->fd = -1;
      break;
    }
    struct sockaddr_in me;
    socklen_t ml = sizeof me;
    unsigned lp = getsockname(d->fd, (struct sockaddr *)&me, &ml) == 0
                      ? ntohs(me.sin_port)
                      : 0;
    if (!(used[lp / 8] & 1u << lp % 8) || nspare == 64) {
      used[lp / 8] |= (uint8_t)(1u << lp % 8);
      break;
    }
    spare[nspare++] = d->fd; /* held open so the kernel picks another */
    d->fd = -1;
  }
  for (int i = 0; i < nspare; i++)
    close(spare[i]);
  freeaddrinfo(ai);
  if (d->fd < 0)
    return OTA_EIO;
  return 0;
}

static int hs_finish(dtls_t *d);

/* Socket, SSL context, saved session: ready for the first handshake step. */
static int hs_prepare(dtls_t *d) {
  int ret;
  if (d->fd < 0 && (ret = open_socket(d)) != 0)
    return ret;
  d->inbox = NULL; /* a datagram of an earlier session is not this one's */
  if (d->ssl_ready)
    mbedtls_ssl_session_reset(&d->ssl);
  else if ((ret = mbedtls_ssl_setup(&d->ssl, &d->conf)) != 0) {
    log_mbed("ssl_setup", ret);
    return OTA_EINVAL;
  }
  d->ssl_ready = 1;
  mbedtls_ssl_set_bio(&d->ssl, d, bio_send, bio_recv, NULL);
  mbedtls_ssl_set_timer_cb(&d->ssl, &d->timer, mbedtls_timing_set_delay,
                           mbedtls_timing_get_delay);
  if (d->have_saved && (ret = mbedtls_ssl_set_session(&d->ssl, &d->saved)))
    log_mbed("set_session (doing a full handshake)", ret);
  return 0;
}

static int t_connect(sim_transport_t *t, uint32_t timeout_ms) {
  dtls_t *d = (dtls_t *)t;
  int ret;
  if ((ret = hs_prepare(d)) != 0)
    return ret;

  sim_transport_stats_t *st = &t->stats;
  uint64_t tx0 = st->tx_bytes, rx0 = st->rx_bytes, txd = st->tx_dgrams,
           rxd = st->rx_dgrams, t0 = now_ms();
  d->hs_t0 = t0, d->hs_tx0 = tx0, d->hs_rx0 = rx0, d->hs_txd0 = txd,
  d->hs_rxd0 = rxd;
  while ((ret = mbedtls_ssl_handshake(&d->ssl)) != 0) {
    if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
      log_mbed("handshake", ret);
      return ret == MBEDTLS_ERR_SSL_TIMEOUT ? OTA_ETIMEDOUT : OTA_EAUTH;
    }
    uint64_t el = now_ms() - t0;
    if (el >= timeout_ms) {
      OTA_LOGE("dtls: handshake timed out after %u ms", (unsigned)el);
      return OTA_ETIMEDOUT;
    }
    struct pollfd p = {.fd = d->fd, .events = POLLIN};
    poll(&p, 1, 50); /* short: mbedTLS's retransmit timer is polled */
  }
  return hs_finish(d);
}

/* After the handshake: counters, pin check, resumed or not. */
static int hs_finish(dtls_t *d) {
  sim_transport_stats_t *st = &d->base.stats;
  st->hs_ms = (uint32_t)(now_ms() - d->hs_t0);
  st->hs_tx_bytes = st->tx_bytes - d->hs_tx0;
  st->hs_rx_bytes = st->rx_bytes - d->hs_rx0;
  st->hs_tx_dgrams = st->tx_dgrams - d->hs_txd0;
  st->hs_rx_dgrams = st->rx_dgrams - d->hs_rxd0;

  /* Pin: the server's certificate must be byte-identical to the pinned one. */
  const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&d->ssl);
  if (!peer || peer->raw.len != d->pin.raw.len ||
      memcmp(peer->raw.p, d->pin.raw.p, peer->raw.len)) {
    OTA_LOGE("dtls: server certificate does not match the pinned one");
    return OTA_EAUTH;
  }
  st->resumed = 0;
  if (d->have_saved) {
    const mbedtls_ssl_session *s = d->ssl.session;
    OTA_LOGD("dtls: session id len %zu, saved %zu", s ? s->id_len : 0,
             d->saved.id_len);
    st->resumed = s && s->id_len == d->saved.id_len && s->id_len &&
                  !memcmp(s->id, d->saved.id, s->id_len);
  }
  OTA_LOGI(
      "dtls: %s handshake with %s:%u, %s: tx %llu B/%llu dgrams, rx "
      "%llu B/%llu dgrams, %u ms",
      st->resumed ? "resumed" : "full", d->host, d->port,
      mbedtls_ssl_get_ciphersuite(&d->ssl), (unsigned long long)st->hs_tx_bytes,
      (unsigned long long)st->hs_tx_dgrams, (unsigned long long)st->hs_rx_bytes,
      (unsigned long long)st->hs_rx_dgrams, st->hs_ms);
  return 0;
}

static int t_step(sim_transport_t *t) {
  dtls_t *d = (dtls_t *)t;
  int ret = mbedtls_ssl_handshake(&d->ssl);
  if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
    return 1;
  if (ret) {
    log_mbed("handshake", ret);
    return ret == MBEDTLS_ERR_SSL_TIMEOUT ? OTA_ETIMEDOUT : OTA_EAUTH;
  }
  return hs_finish(d);
}

static int t_start(sim_transport_t *t) {
  dtls_t *d = (dtls_t *)t;
  int ret = hs_prepare(d);
  if (ret)
    return ret;
  sim_transport_stats_t *st = &t->stats;
  d->hs_t0 = now_ms(), d->hs_tx0 = st->tx_bytes, d->hs_rx0 = st->rx_bytes,
  d->hs_txd0 = st->tx_dgrams, d->hs_rxd0 = st->rx_dgrams;
  return t_step(t);
}

static void t_feed(sim_transport_t *t, const uint8_t *buf, size_t len) {
  dtls_t *d = (dtls_t *)t;
  if (len > d->inbox_cap) {
    uint8_t *nb = realloc(d->inbox_buf, len);
    if (!nb) {
      OTA_LOGW("dtls: no memory for a %zu-byte datagram: dropped", len);
      return;
    }
    d->inbox_buf = nb;
    d->inbox_cap = len;
  }
  memcpy(d->inbox_buf, buf, len);
  d->inbox = d->inbox_buf;
  d->inbox_len = len;
}

static int t_send(sim_transport_t *t, const uint8_t *buf, size_t len) {
  dtls_t *d = (dtls_t *)t;
  int ret;
  do
    ret = mbedtls_ssl_write(&d->ssl, buf, len);
  while (ret == MBEDTLS_ERR_SSL_WANT_WRITE);
  if (ret < 0) {
    log_mbed("write", ret);
    return OTA_EIO;
  }
  return ret;
}

static int t_recv(sim_transport_t *t, uint8_t *buf, size_t cap) {
  dtls_t *d = (dtls_t *)t;
  int ret = mbedtls_ssl_read(&d->ssl, buf, cap);
  if (ret > 0)
    return ret;
  if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE ||
      ret == MBEDTLS_ERR_SSL_TIMEOUT)
    return 0;
  if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == 0) {
    OTA_LOGW("dtls: server closed the session");
    return OTA_EREFUSED;
  }
  log_mbed("read", ret);
  return OTA_EIO;
}

static int t_poll_fd(const sim_transport_t *t) {
  return ((const dtls_t *)t)->fd;
}

static int t_save(sim_transport_t *t, uint8_t *buf, size_t cap, size_t *len) {
  dtls_t *d = (dtls_t *)t;
  mbedtls_ssl_session s;
  mbedtls_ssl_session_init(&s);
  int ret = mbedtls_ssl_get_session(&d->ssl, &s);
  if (!ret)
    ret = mbedtls_ssl_session_save(&s, buf, cap, len);
  mbedtls_ssl_session_free(&s);
  if (ret == MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL)
    return OTA_ENOBUFS;
  if (ret) {
    log_mbed("session save", ret);
    return OTA_ESTATE;
  }
  return 0;
}

static void t_close(sim_transport_t *t, int notify) {
  dtls_t *d = (dtls_t *)t;
  d->inbox = NULL; /* unread input dies with the session */
  if (d->fd < 0)
    return;
  if (notify && d->ssl_ready)
    mbedtls_ssl_close_notify(&d->ssl);
  close(d->fd);
  d->fd = -1;
}

static void t_destroy(sim_transport_t *t) {
  dtls_t *d = (dtls_t *)t;
  if (!d)
    return;
  t_close(t, 0);
  mbedtls_ssl_free(&d->ssl);
  mbedtls_ssl_config_free(&d->conf);
  mbedtls_ssl_session_free(&d->saved);
  mbedtls_x509_crt_free(&d->own);
  mbedtls_x509_crt_free(&d->pin);
  mbedtls_pk_free(&d->key);
  if (d->rng_held)
    rng_unref();
  d->rng_held = 0;
  if (d->keylog)
    fclose(d->keylog);
  free(d->inbox_buf);
  free(d);
}

static const sim_transport_ops_t dtls_ops = {
    .name = "dtls",
    .connect = t_connect,
    .send = t_send,
    .recv = t_recv,
    .poll_fd = t_poll_fd,
    .save_session = t_save,
    .start = t_start,
    .step = t_step,
    .feed = t_feed,
    .close = t_close,
    .destroy = t_destroy,
};

sim_transport_t *sim_dtls_new(const sim_dtls_cfg_t *cfg) {
  dtls_t *d = calloc(1, sizeof *d);
  int ret;
  if (!d)
    return NULL;
  d->base.ops = &dtls_ops;
  d->fd = -1;
  snprintf(d->host, sizeof d->host, "%s", cfg->host);
  d->port = cfg->port;
  mbedtls_ssl_config_init(&d->conf);
  mbedtls_ssl_init(&d->ssl);
  mbedtls_x509_crt_init(&d->own);
  mbedtls_x509_crt_init(&d->pin);
  mbedtls_pk_init(&d->key);
  mbedtls_ssl_session_init(&d->saved);

  if ((ret = rng_ref())) {
    log_mbed("drbg seed", ret);
    goto fail;
  }
  d->rng_held = 1;
  if ((ret = cfg->cert_pem
                 ? mbedtls_x509_crt_parse(&d->own,
                                          (const unsigned char *)cfg->cert_pem,
                                          strlen(cfg->cert_pem) + 1)
                 : mbedtls_x509_crt_parse_file(&d->own, cfg->cert_file))) {
    log_mbed(cfg->cert_pem ? "device certificate" : cfg->cert_file, ret);
    goto fail;
  }
  if ((ret = cfg->key_pem
                 ? mbedtls_pk_parse_key(&d->key,
                                        (const unsigned char *)cfg->key_pem,
                                        strlen(cfg->key_pem) + 1, NULL, 0)
                 : mbedtls_pk_parse_keyfile(&d->key, cfg->key_file, NULL))) {
    log_mbed(cfg->key_pem ? "device key" : cfg->key_file, ret);
    goto fail;
  }
  if ((ret = cfg->server_cert_pem
                 ? mbedtls_x509_crt_parse(
                       &d->pin, (const unsigned char *)cfg->server_cert_pem,
                       strlen(cfg->server_cert_pem) + 1)
                 : mbedtls_x509_crt_parse_file(&d->pin, cfg->server_cert))) {
    log_mbed(cfg->server_cert_pem ? "server certificate" : cfg->server_cert,
             ret);
    goto fail;
  }
  d->raw_send = cfg->raw_send;
  d->raw_ud = cfg->raw_ud;
  if ((ret = mbedtls_ssl_config_defaults(&d->conf, MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_DATAGRAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT))) {
    log_mbed("config", ret);
    goto fail;
  }
  mbedtls_ssl_conf_min_version(&d->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&d->conf, suites);
  mbedtls_ssl_conf_curves(&d->conf, curves);
  mbedtls_ssl_conf_rng(&d->conf, mbedtls_ctr_drbg_random, &rng.drbg);
  mbedtls_ssl_conf_authmode(&d->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&d->conf, &d->pin, NULL);
  mbedtls_ssl_conf_handshake_timeout(
      &d->conf, cfg->hs_min_ms ? cfg->hs_min_ms : 3000,
      cfg->hs_max_ms >= cfg->hs_min_ms && cfg->hs_max_ms ? cfg->hs_max_ms
                                                         : 24000);
  mbedtls_ssl_conf_read_timeout(&d->conf, 0);
  /* Session-id resumption only: a ticket would carry our certificate back in
   * every ClientHello (~700 bytes measured); the server keeps the state. */
  mbedtls_ssl_conf_session_tickets(&d->conf,
                                   MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
  mbedtls_ssl_conf_export_keys_ext_cb(&d->conf, export_keys, d);
  if ((ret = mbedtls_ssl_conf_own_cert(&d->conf, &d->own, &d->key))) {
    log_mbed("own cert", ret);
    goto fail;
  }
  if (cfg->keylog_file && *cfg->keylog_file &&
      !(d->keylog = fopen(cfg->keylog_file, "a")))
    OTA_LOGW("dtls: cannot open key log %s", cfg->keylog_file);
  if (cfg->session && cfg->session_len) {
    ret = mbedtls_ssl_session_load(&d->saved, cfg->session, cfg->session_len);
    if (ret)
      log_mbed("saved session unusable, full handshake", ret);
    else
      d->have_saved = 1;
  }
  return &d->base;
fail:
  t_destroy(&d->base);
  return NULL;
}
