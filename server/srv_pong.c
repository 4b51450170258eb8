/* otalab-server: libssl calls of libcoap's OpenSSL back end, interposed:
 * (1) the ACK (or RST) of an OTA window's ping (PROTOCOL.md 1.5), read from
 * each decrypted datagram on its way from OpenSSL to libcoap; (2) the record
 * buffers of an established DTLS session, freed between datagrams.
 *
 * (1) Why: libcoap 4.3.1 removes the empty ACK of a CON it sent from its queue
 * and tells the application nothing (its pong handler only sees RSTs to its
 * own keep-alive pings; measured with coap_send and coap_session_send_ping).
 * ota_tx clocks fast-OTA windows on that ACK, so the server interposes
 * SSL_read (libcoap's OpenSSL back end reads every DTLS datagram with it) and
 * passes any 4-byte empty ACK/RST of a device's session to srv_ota_on_pong,
 * which ignores every id but its ping's. The bytes go on to libcoap
 * untouched.
 *
 * (2) Why: an idle session keeps a 16.6 KB read and a 2.4 KB write buffer
 * (heaptrack, bench/idle); SSL_MODE_RELEASE_BUFFERS frees them for TLS only.
 * Once the handshake is over, every libssl call of libcoap that reads or
 * writes records (SSL_read, SSL_write, SSL_shutdown, DTLSv1_handle_timeout)
 * gets its buffers first (SSL_alloc_buffers) and gives them back after
 * (SSL_free_buffers, which keeps them while a record is pending). OpenSSL's
 * DTLS writer does not allocate a missing write buffer itself, so any other
 * writing call libcoap might add must be listed here. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "srv.h"

typedef int (*read_fn)(SSL *, void *, int);
typedef int (*write_fn)(SSL *, const void *, int);
typedef int (*shutdown_fn)(SSL *);
typedef long (*ctrl_fn)(SSL *, int, long, void *);

/* The libssl function `name` as `real` (of type `type`), looked up once. */
#define REAL(name, type)                                                       \
  static type real;                                                            \
  if (!real)                                                                   \
    *(void **)&real = dlsym(RTLD_NEXT, name);

static void buffers_in(SSL *ssl) {
  if (ssl && SSL_is_dtls(ssl))
    SSL_alloc_buffers(ssl);
}

static void buffers_out(SSL *ssl) {
  if (ssl && SSL_is_dtls(ssl) && SSL_is_init_finished(ssl))
    SSL_free_buffers(ssl);
}

int SSL_read(SSL *ssl, void *buf, int num) {
  REAL("SSL_read", read_fn);
  if (!real)
    return -1;
  buffers_in(ssl);
  int r = real(ssl, buf, num);
  buffers_out(ssl);
  const uint8_t *b = buf;
  /* Version 1, type ACK (0x60) or RST (0x70), no token; code 0.00. */
  if (r == 4 && (b[0] == 0x60 || b[0] == 0x70) && b[1] == 0 &&
      srv_http_devices) {
    srv_device_t *d =
        srv_devices_by_session(srv_http_devices, SSL_get_app_data(ssl));
    if (d)
      srv_ota_on_pong(d, b[2] << 8 | b[3]);
  }
  return r;
}

int SSL_write(SSL *ssl, const void *buf, int num) {
  REAL("SSL_write", write_fn);
  if (!real)
    return -1;
  buffers_in(ssl);
  int r = real(ssl, buf, num);
  buffers_out(ssl);
  return r;
}

int SSL_shutdown(SSL *ssl) {
  REAL("SSL_shutdown", shutdown_fn);
  if (!real)
    return -1;
  buffers_in(ssl); /* the close_notify alert is a record */
  return real(ssl);
}

long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg) {
  REAL("SSL_ctrl", ctrl_fn);
  if (!real)
    return 0;
  if (cmd == DTLS_CTRL_HANDLE_TIMEOUT) { /* may resend a flight */
    buffers_in(ssl);
    long r = real(ssl, cmd, larg, parg);
    buffers_out(ssl);
    return r;
  }
  return real(ssl, cmd, larg, parg);
}
