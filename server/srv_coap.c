/* otalab-server CoAP/DTLS adapter: libcoap 4.3.1 (OpenSSL) endpoint with the
 * Electron's suite and the Hello/Describe greeting
 * (PROTOCOL.md 1.1, 1.2, 2.2, 2.3). */
#include <arpa/inet.h>
#include <coap3/coap.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/msg.h"
#include "srv.h"

#define SRV_SESSION_IDLE_S (2 * 23 * 60 + 30)

/* Exported by libcoap 4.3.1 (VER_3) but declared only in its internal header:
 * the one way to drop a server session, which sends a DTLS close_notify. */
void coap_session_disconnected(coap_session_t *session,
                               coap_nack_reason_t reason);

#define TOKEN_DESCRIBE 0xD5
#define SRV_DTLS_MAX_FRAGMENT 2048
#define TOKEN_HELLO 0x48
/* Hellos waiting for the loop tick that greets them: a fleet reconnecting
 * after its reboots delivers hundreds between two ticks (64 lost greetings:
 * devices connected but never described, tests/bench/fleet.sh). The queue
 * grows as needed (doubling), up to two entries per device of the table. */

typedef struct {
  coap_session_t *s; /* referenced until handled */
  int refuse;
} pending_t;

static coap_context_t *ctx;
static srv_devices_t *devs;
static coap_dtls_pki_t pki;
static FILE *keylog;
static pending_t *pending;
static size_t npending, cap_pending;
static const uint8_t sid_ctx[] = "otalab-dtls";

static void session_addr(coap_session_t *s, char *buf, size_t cap) {
  size_t n = coap_print_addr(coap_session_get_addr_remote(s),
                             (unsigned char *)buf, cap - 1);
  buf[n < cap ? n : cap - 1] = 0;
}

/* ---- data usage: every DTLS record, counted from its 13-byte header by
 * OpenSSL's message callback (both directions, handshake included). Records
 * of a session are kept per SSL until its Hello names the device. ---- */
typedef struct {
  srv_device_t *dev; /* set at the Hello */
  srv_usage_t pre;   /* before the Hello (the handshake) */
} acct_t;

static int acct_idx = -1;

static void acct_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                      long argl, void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  free(ptr);
}

static acct_t *acct_of(SSL *ssl) {
  if (acct_idx < 0)
    return NULL;
  acct_t *a = SSL_get_ex_data(ssl, acct_idx);
  if (!a && (a = calloc(1, sizeof *a)) && !SSL_set_ex_data(ssl, acct_idx, a)) {
    free(a);
    a = NULL;
  }
  return a;
}

#define DTLS_HDR 13
#define DTLS_AEAD 16 /* CCM_8: 8-byte explicit nonce + 8-byte tag */

static void record_cb(int write_p, int version, int content_type,
                      const void *buf, size_t len, SSL *ssl, void *arg) {
  (void)version, (void)arg;
  if (content_type != SSL3_RT_HEADER || len < DTLS_HDR)
    return;
  const uint8_t *h = buf;
  size_t rlen = DTLS_HDR + ((size_t)h[11] << 8 | h[12]);
  acct_t *a = acct_of(ssl);
  if (!a)
    return;
  srv_usage_t *u = a->dev ? &a->dev->usage : &a->pre;
  if (write_p)
    u->down += rlen, u->records_down++;
  else
    u->up += rlen, u->records_up++;
  if (h[0] == SSL3_RT_APPLICATION_DATA && rlen >= DTLS_HDR + DTLS_AEAD) {
    u->record_overhead += DTLS_HDR + DTLS_AEAD;
    u->coap += rlen - DTLS_HDR - DTLS_AEAD;
  } else {
    u->handshake += rlen;
  }
}

/* The Hello named the session's device: its records count for it now. */
static void acct_bind(coap_session_t *s, srv_device_t *d) {
  coap_tls_library_t lib;
  SSL *ssl = coap_session_get_tls(s, &lib);
  acct_t *a = ssl && lib == COAP_TLS_LIBRARY_OPENSSL ? acct_of(ssl) : NULL;
  d->usage.sessions++;
  if (!a || a->dev == d)
    return;
  srv_usage_t *u = &d->usage;
  u->up += a->pre.up, u->down += a->pre.down;
  u->records_up += a->pre.records_up, u->records_down += a->pre.records_down;
  u->handshake += a->pre.handshake;
  u->record_overhead += a->pre.record_overhead;
  u->coap += a->pre.coap;
  memset(&a->pre, 0, sizeof a->pre);
  a->dev = d;
}

static void keylog_cb(const SSL *ssl, const char *line) {
  (void)ssl;
  if (keylog) {
    fprintf(keylog, "%s\n", line);
    fflush(keylog);
  }
}

/* Per-SSL setup: the Electron suite only, P-256 only, a session id context so
 * OpenSSL will resume sessions, and the NSS key log. */
static int tls_setup(void *tls, coap_dtls_pki_t *setup) {
  (void)setup;
  SSL *ssl = tls;
  if (!ssl)
    return 1;
  if (!SSL_set_cipher_list(ssl, "ECDHE-ECDSA-AES128-CCM8") ||
      !SSL_set1_groups_list(ssl, "P-256") ||
      !SSL_set_session_id_context(ssl, sid_ctx, sizeof sid_ctx - 1)) {
    OTA_LOGE("dtls: cannot restrict the cipher suite");
    return 0;
  }
  /* Server-side session cache, no tickets: resumption by session id keeps
   * the device's ClientHello small (a ticket holds its certificate). */
  SSL_set_options(ssl, SSL_OP_NO_TICKET);
  /* Memory per idle session (bench/idle, heaptrack): OpenSSL keeps a 16.6 KB
   * read buffer, a 21.8 KB handshake buffer (DTLS keeps it for
   * retransmissions) and a write buffer sized by max_send_fragment (16 KB by
   * default). Our datagrams are at most libcoap's MTU (1152 B), so 2 KB
   * records are plenty: the write buffer drops to ~2.4 KB. The listening
   * SSL answering the next ClientHello allocates its buffers before this
   * callback runs: set it on the context, which new SSLs copy.
   * SSL_MODE_RELEASE_BUFFERS was measured too: no change (OpenSSL 3.0
   * releases idle buffers for TLS only, not DTLS). */
  SSL_CTX_set_max_send_fragment(SSL_get_SSL_CTX(ssl), SRV_DTLS_MAX_FRAGMENT);
  SSL_set_max_send_fragment(ssl, SRV_DTLS_MAX_FRAGMENT);
  if (keylog)
    SSL_CTX_set_keylog_callback(SSL_get_SSL_CTX(ssl), keylog_cb);
  /* This SSL and (through the context) the next listening one, which
   * answers the next ClientHello with its HelloVerifyRequest. */
  SSL_set_msg_callback(ssl, record_cb);
  SSL_CTX_set_msg_callback(SSL_get_SSL_CTX(ssl), record_cb);
  return 1;
}

/* Full handshakes only; accepts any well-formed client certificate: the key is
 * bound to a device id at Hello time. */
static int cn_cb(const char *cn, const uint8_t *der, size_t len,
                 coap_session_t *s, unsigned depth, int validated, void *arg) {
  (void)der, (void)arg;
  char a[64];
  session_addr(s, a, sizeof a);
  OTA_LOGD("dtls: %s client certificate CN=%s depth=%u validated=%d (%zu B)", a,
           cn ? cn : "?", depth, validated, len);
  return 1;
}

/* The peer's SubjectPublicKeyInfo from the session's TLS object: works for
 * full and resumed handshakes (the cert is kept in the SSL_SESSION). */
static int peer_key(coap_session_t *s, uint8_t *der, size_t cap, size_t *len) {
  coap_tls_library_t lib;
  SSL *ssl = coap_session_get_tls(s, &lib);
  if (!ssl || lib != COAP_TLS_LIBRARY_OPENSSL)
    return OTA_ESTATE;
  X509 *crt = SSL_get1_peer_certificate(ssl);
  if (!crt)
    return OTA_EAUTH;
  int err = 0;
  int n = i2d_PUBKEY(X509_get0_pubkey(crt), NULL);
  if (n <= 0 || (size_t)n > cap) {
    err = OTA_EPARSE;
  } else {
    uint8_t *p = der;
    i2d_PUBKEY(X509_get0_pubkey(crt), &p);
    *len = (size_t)n;
  }
  X509_free(crt);
  return err;
}

static void queue(coap_session_t *s, int refuse) {
  if (npending == cap_pending) {
    size_t cap = cap_pending ? 2 * cap_pending : 256;
    pending_t *p = cap <= 2 * devs->cap + 256
                       ? realloc(pending, cap * sizeof *pending)
                       : NULL;
    if (!p) {
      OTA_LOGW("coap: greeting queue full (%zu), dropping", npending);
      return;
    }
    pending = p, cap_pending = cap;
  }
  pending[npending].s = coap_session_reference(s);
  pending[npending].refuse = refuse;
  npending++;
  srv_loop_kick();
}

static void hnd_hello(coap_resource_t *r, coap_session_t *s,
                      const coap_pdu_t *req, const coap_string_t *q,
                      coap_pdu_t *resp) {
  (void)r, (void)q;
  size_t len = 0;
  const uint8_t *p = NULL;
  char id[SRV_ID_HEX + 1], a[64];
  uint8_t want[160], got[160];
  size_t wl = 0, gl = 0;

  session_addr(s, a, sizeof a);
  coap_get_data(req, &len, &p);
  ota_msg_hello_t h;
  if (len < OTA_MSG_HELLO_PAYLOAD_LEN || ota_msg_hello_parse(p, len, &h) ||
      h.id_len != SRV_ID_RAW) {
    OTA_LOGW("coap: %s malformed Hello (%zu bytes), refused", a, len);
    goto refuse;
  }
  for (int i = 0; i < SRV_ID_RAW; i++)
    snprintf(id + 2 * i, 3, "%02x", h.device_id[i]);
  int err = srv_devices_key(devs, id, want, sizeof want, &wl);
  if (err) {
    OTA_LOGW("coap: %s device %s refused: %s", a, id,
             err == OTA_ENOENT ? "no registered key" : ota_strerror(err));
    goto refuse;
  }
  if ((err = peer_key(s, got, sizeof got, &gl)) != 0) {
    OTA_LOGW("coap: %s device %s refused: no peer key (%s)", a, id,
             ota_strerror(err));
    goto refuse;
  }
  if (gl != wl || memcmp(got, want, gl)) {
    OTA_LOGW("coap: %s device %s refused: DTLS key does not match the "
             "registered key",
             a, id);
    goto refuse;
  }
  srv_device_t *d = srv_devices_get(devs, id);
  if (!d) {
    OTA_LOGE("coap: device table full, %s refused", id);
    goto refuse;
  }
  srv_device_t *old = srv_devices_by_session(devs, s);
  if (old && old != d) {
    srv_devices_set_session(devs, old, NULL);
    old->connected = 0;
  }
  /* The device is back on a new session (a reboot, a new port): its old one
   * would hold ~57 KB of DTLS state until libcoap's idle timeout; drop it as
   * the cloud keeps one connection per device (a fleet rebooting 4,000 times
   * held 320 MB). Dropped from the loop tick, after d points to s. */
  if (d->session && d->session != s)
    queue(d->session, 1);
  srv_devices_set_session(devs, d, s);
  d->connected = 1;
  d->last_heard = time(NULL);
  d->hellos++;
  d->hello_flags = h.flags;
  d->hello_product = h.product_id;
  d->described = 0;
  acct_bind(s, d);
  snprintf(d->addr, sizeof d->addr, "%s", a);
  OTA_LOGI("coap: %s device %s Hello accepted (flags 0x%02x, platform %u), "
           "connected",
           a, id, h.flags, (unsigned)h.platform_id);
  srv_ota_on_hello(d);
  srv_cloud_on_hello(d);
  /* Empty ACK (code 0.00) as the cloud sends; greeting follows from the loop.
   */
  queue(s, 0);
  return;
refuse:
  /* No ACK: a NON with code 0 is not sent by libcoap. */
  coap_pdu_set_type(resp, COAP_MESSAGE_NON);
  coap_pdu_set_code(resp, COAP_EMPTY_CODE);
  queue(s, 1);
}

static void greet(coap_session_t *s) {
  srv_device_t *d = srv_devices_by_session(devs, s);
  if (!d)
    return;
  ota_coap_msg_t m;
  uint8_t tok = TOKEN_HELLO, flags;
  /* NON server Hello (clears the device's OTA flag), then CON Describe with
   * flags 3 = system + application (PROTOCOL 2.2). Message ids: libcoap's. */
  if (ota_msg_build_request(&m, OTA_COAP_NON, OTA_COAP_POST, 0, &tok, 1, 'h') ||
      srv_coap_send(s, &m))
    OTA_LOGW("coap: %s server Hello not sent", d->id);
  if (ota_msg_build_describe(&m, 0, TOKEN_DESCRIBE, OTA_DESCRIBE_DEFAULT,
                             &flags) ||
      srv_coap_send(s, &m))
    OTA_LOGW("coap: %s Describe not sent", d->id);
  else
    OTA_LOGI("coap: %s sent server Hello and Describe(flags=3)", d->id);
}

/* A libcoap PDU as a core message (views into the PDU). */
static void msg_of_pdu(const coap_pdu_t *p, ota_coap_msg_t *m) {
  ota_coap_msg_init(m, (ota_coap_type_t)coap_pdu_get_type(p),
                    (uint8_t)coap_pdu_get_code(p),
                    (uint16_t)coap_pdu_get_mid(p));
  coap_bin_const_t t = coap_pdu_get_token(p);
  ota_coap_set_token(m, t.s, t.length);
  coap_opt_iterator_t it;
  coap_opt_t *o;
  coap_option_iterator_init(p, &it, COAP_OPT_ALL);
  while ((o = coap_option_next(&it)))
    if (ota_coap_add_option(m, it.number, coap_opt_value(o),
                            coap_opt_length(o)))
      break;
  size_t len = 0;
  const uint8_t *data = NULL;
  if (coap_get_data(p, &len, &data) && len)
    ota_coap_set_payload(m, data, len);
}

int srv_coap_send(void *session, const ota_coap_msg_t *m) {
  return srv_coap_send_mid(session, m, NULL);
}

int srv_coap_send_mid(void *session, const ota_coap_msg_t *m, int *mid) {
  coap_session_t *s = session;
  int id = coap_new_message_id(s);
  if (mid)
    *mid = id;
  coap_pdu_t *pdu =
      coap_pdu_init((coap_pdu_type_t)m->type, (coap_pdu_code_t)m->code, id,
                    coap_session_max_pdu_size(s));
  if (!pdu)
    return OTA_ENOMEM;
  if (m->tkl && !coap_add_token(pdu, m->tkl, m->token))
    goto fail;
  for (size_t i = 0; i < m->nopt; i++)
    if (!coap_add_option(pdu, (coap_option_num_t)m->opt[i].num, m->opt[i].len,
                         m->opt[i].val))
      goto fail;
  if (m->payload_len && !coap_add_data(pdu, m->payload_len, m->payload))
    goto fail;
  return coap_send(s, pdu) == COAP_INVALID_MID ? OTA_EIO : 0;
fail:
  coap_delete_pdu(pdu);
  return OTA_ENOBUFS;
}

/* ChunkMissed (CON GET c) and the device's own UpdateDone (CON PUT u): the
 * handler leaves code 0.00 so libcoap sends the empty ACK the cloud sends. */
static void hnd_ota(coap_resource_t *r, coap_session_t *s,
                    const coap_pdu_t *req, const coap_string_t *q,
                    coap_pdu_t *resp) {
  (void)r, (void)q, (void)resp;
  srv_device_t *d = srv_devices_by_session(devs, s);
  if (!d)
    return;
  d->last_heard = time(NULL);
  ota_coap_msg_t m;
  msg_of_pdu(req, &m);
  if (!srv_ota_sending(d)) {
    char sum[96];
    OTA_LOGI("coap: %s %s with no transfer running: ACKed, ignored", d->id,
             ota_coap_summary(&m, sum, sizeof sum));
    return;
  }
  srv_ota_on_coap(d, &m);
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
                                   const coap_pdu_t *rcv,
                                   const coap_mid_t mid) {
  (void)sent, (void)mid;
  srv_device_t *d = srv_devices_by_session(devs, s);
  if (!d)
    return COAP_RESPONSE_OK;
  d->last_heard = time(NULL);
  coap_bin_const_t tok = coap_pdu_get_token(rcv);
  if (tok.length == 1 && tok.s[0] == TOKEN_DESCRIBE &&
      coap_pdu_get_code(rcv) == COAP_RESPONSE_CODE_CONTENT) {
    size_t len = 0;
    const uint8_t *p = NULL;
    coap_get_data(rcv, &len, &p);
    srv_devices_set_describe(d, (const char *)p, len);
    d->described = 1;
    OTA_LOGI("coap: %s describe (%zu bytes): %.*s", d->id, len, (int)len,
             (const char *)p);
    srv_cloud_on_describe(d);
  } else if (srv_ota_sending(d)) {
    ota_coap_msg_t m;
    msg_of_pdu(rcv, &m);
    srv_ota_on_coap(d, &m);
  }
  return COAP_RESPONSE_OK;
}

/* The empty ACK of a CON ping we sent (an OTA window's clock). */
static void on_pong(coap_session_t *s, const coap_pdu_t *rcv,
                    const coap_mid_t mid) {
  (void)rcv;
  srv_device_t *d = srv_devices_by_session(devs, s);
  if (d) {
    d->last_heard = time(NULL);
    srv_ota_on_pong(d, mid);
  }
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent,
                    const coap_nack_reason_t reason, const coap_mid_t mid) {
  (void)sent;
  srv_device_t *d = srv_devices_by_session(devs, s);
  if (d && reason == COAP_NACK_RST)
    srv_ota_on_pong(d, mid); /* an RST answers a ping too */
  OTA_LOGW("coap: %s no answer to mid 0x%04x (reason %d)", d ? d->id : "?",
           (unsigned)mid, (int)reason);
}

static void forget(coap_session_t *s, const char *why) {
  srv_device_t *d = srv_devices_by_session(devs, s);
  if (!d)
    return;
  OTA_LOGI("coap: device %s disconnected (%s)", d->id, why);
  d->connected = 0;
  srv_devices_set_session(devs, d, NULL);
  srv_ota_on_disconnect(d);
  srv_cloud_on_disconnect(d);
}

/* An event the device publishes: POST E (private) or e (public) with the
 * whole name in the second Uri-Path (PROTOCOL.md 2.2). NON gets nothing back,
 * CON the empty ACK. */
static void hnd_event(coap_resource_t *r, coap_session_t *s,
                      const coap_pdu_t *req, const coap_string_t *q,
                      coap_pdu_t *resp) {
  (void)r, (void)q, (void)resp;
  srv_device_t *d = srv_devices_by_session(devs, s);
  ota_coap_msg_t m;
  ota_msg_event_t ev;
  msg_of_pdu(req, &m);
  if (!d || ota_msg_classify(&m, OTA_DIR_TO_CLOUD) != OTA_MSG_EVENT ||
      ota_msg_event_parse(&m, &ev)) {
    char sum[96];
    OTA_LOGI("coap: %s %s: not an event, ignored", d ? d->id : "?",
             ota_coap_summary(&m, sum, sizeof sum));
    return;
  }
  d->last_heard = time(NULL);
  char name[OTA_EVENT_NAME_MAX + 1];
  snprintf(name, sizeof name, "%.*s", (int)ev.name_len, ev.name);
  srv_cloud_on_device_event(d, name, ev.data, ev.data_len);
}

static int on_event(coap_session_t *s, const coap_event_t ev) {
  switch (ev) {
  case COAP_EVENT_DTLS_CONNECTED: {
    char a[64];
    session_addr(s, a, sizeof a);
    OTA_LOGI("dtls: %s handshake complete", a);
    break;
  }
  case COAP_EVENT_DTLS_CLOSED:
    forget(s, "DTLS closed");
    break;
  case COAP_EVENT_DTLS_ERROR:
    forget(s, "DTLS error");
    break;
  case COAP_EVENT_SERVER_SESSION_DEL:
    forget(s, "session deleted");
    break;
  default:
    break;
  }
  return 0;
}

static int read_file(const char *dir, const char *name, char **out) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  if (!f) {
    OTA_LOGE("cannot open %s", path);
    return OTA_ENOENT;
  }
  *out = malloc(4096);
  size_t n = *out ? fread(*out, 1, 4095, f) : 0;
  fclose(f);
  if (!*out || n == 0) {
    OTA_LOGE("cannot read %s", path);
    return OTA_EIO;
  }
  (*out)[n] = 0;
  return 0;
}

static char *crt_pem, *key_pem;

int srv_coap_setup(const srv_opts_t *o, srv_devices_t *d) {
  devs = d;
  coap_startup();
  coap_set_log_level(o->verbose > 1 ? LOG_DEBUG : LOG_WARNING);
  coap_dtls_set_log_level(o->verbose > 1 ? LOG_DEBUG : LOG_WARNING);
  if (!coap_dtls_is_supported()) {
    OTA_LOGE("libcoap has no DTLS support");
    return -1;
  }
  const char *kl = getenv("SSLKEYLOGFILE");
  if (kl && *kl && !(keylog = fopen(kl, "a")))
    OTA_LOGW("cannot open SSLKEYLOGFILE %s", kl);
  if (read_file(o->keys_dir, "server.crt.pem", &crt_pem) ||
      read_file(o->keys_dir, "server.key.pem", &key_pem))
    return -1;
  ctx = coap_new_context(NULL);
  if (!ctx)
    return -1;
  /* libcoap closes a server session idle for 300 s by default, but an idle
   * Electron only pings every 23 minutes (PROTOCOL.md 1.5): keep sessions
   * for two keep-alive intervals plus the 30 s ping-ACK timeout. */
  coap_context_set_session_timeout(ctx, SRV_SESSION_IDLE_S);
  memset(&pki, 0, sizeof pki);
  pki.version = COAP_DTLS_PKI_SETUP_VERSION;
  pki.verify_peer_cert = 1;
  pki.check_common_ca = 0;
  pki.allow_self_signed = 1;
  pki.allow_expired_certs = 1;
  pki.cert_chain_validation = 1;
  pki.cert_chain_verify_depth = 2;
  pki.validate_cn_call_back = cn_cb;
  pki.additional_tls_setup_call_back = tls_setup;
  pki.pki_key.key_type = COAP_PKI_KEY_PEM_BUF;
  pki.pki_key.key.pem_buf.public_cert = (const uint8_t *)crt_pem;
  pki.pki_key.key.pem_buf.public_cert_len = strlen(crt_pem) + 1;
  pki.pki_key.key.pem_buf.private_key = (const uint8_t *)key_pem;
  pki.pki_key.key.pem_buf.private_key_len = strlen(key_pem) + 1;
  if (!coap_context_set_pki(ctx, &pki)) {
    OTA_LOGE("cannot load the server key/certificate from %s", o->keys_dir);
    return -1;
  }
  coap_address_t addr;
  coap_address_init(&addr);
  addr.addr.sin.sin_family = AF_INET;
  addr.addr.sin.sin_port = htons((uint16_t)o->coap_port);
  if (inet_pton(AF_INET, o->bind, &addr.addr.sin.sin_addr) != 1) {
    OTA_LOGE("--bind %s: not an IPv4 address", o->bind);
    return -1;
  }
  addr.size = sizeof addr.addr.sin;
  if (!coap_new_endpoint(ctx, &addr, COAP_PROTO_DTLS)) {
    OTA_LOGE("cannot listen on udp %s:%d", o->bind, o->coap_port);
    return -1;
  }
  coap_resource_t *r = coap_resource_init(coap_make_str_const("h"), 0);
  coap_register_request_handler(r, COAP_REQUEST_POST, hnd_hello);
  coap_add_resource(ctx, r);
  r = coap_resource_init(coap_make_str_const("c"), 0);
  coap_register_request_handler(r, COAP_REQUEST_GET, hnd_ota);
  coap_add_resource(ctx, r);
  r = coap_resource_init(coap_make_str_const("u"), 0);
  coap_register_request_handler(r, COAP_REQUEST_PUT, hnd_ota);
  coap_add_resource(ctx, r);
  r = coap_resource_unknown_init(NULL);
  coap_register_request_handler(r, COAP_REQUEST_POST, hnd_event);
  coap_add_resource(ctx, r);
  if (acct_idx < 0)
    acct_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, acct_free);
  coap_register_response_handler(ctx, on_response);
  coap_register_nack_handler(ctx, on_nack);
  coap_register_pong_handler(ctx, on_pong);
  coap_register_event_handler(ctx, on_event);
  /* libcoap frees the oldest idle session (no request in flight) when a new
   * one would exceed this: every connected idle device counts. */
  coap_context_set_max_idle_sessions(
      ctx, (unsigned)(d->cap + d->cap / 4 < 4096 ? 4096 : d->cap + d->cap / 4));
  int fd = coap_context_get_coap_fd(ctx);
  return fd < 0 ? -1 : dup(fd);
}

void srv_coap_io(void) {
  struct epoll_event ev[32];
  int n;
  if (!ctx)
    return;
  while ((n = epoll_wait(coap_context_get_coap_fd(ctx), ev, 32, 0)) > 0)
    coap_io_do_epoll(ctx, ev, (size_t)n);
}

unsigned srv_coap_timers(void) {
  if (!ctx)
    return 1000;
  /* Handle the queue first: greetings may retransmit, refusals free. */
  size_t n = npending;
  npending = 0;
  for (size_t i = 0; i < n; i++) {
    coap_session_t *s = pending[i].s;
    if (pending[i].refuse) {
      forget(s, "refused");
      coap_session_disconnected(s, COAP_NACK_NOT_DELIVERABLE);
    } else if (coap_session_get_state(s) == COAP_SESSION_STATE_ESTABLISHED) {
      greet(s);
    }
    coap_session_release(s);
  }
  coap_tick_t now;
  coap_ticks(&now);
  unsigned t = coap_io_prepare_epoll(ctx, now);
  unsigned o = srv_ota_timers(devs);
  unsigned hc = srv_cloud_timers(devs);
  if (hc < o)
    o = hc;
  if (t == 0 || t > 1000)
    t = 1000;
  return o < t ? o : t;
}

void srv_coap_free(void) {
  for (size_t i = 0; i < npending; i++)
    coap_session_release(pending[i].s);
  npending = 0;
  free(pending);
  pending = NULL;
  cap_pending = 0;
  if (ctx)
    coap_free_context(ctx);
  ctx = NULL;
  free(crt_pem);
  free(key_pem);
  crt_pem = key_pem = NULL;
  if (keylog)
    fclose(keylog);
  keylog = NULL;
}
