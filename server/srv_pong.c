/* otalab-server: the ACK (or RST) of an OTA window's ping (PROTOCOL.md 1.5),
 * read from each decrypted datagram on its way from OpenSSL to libcoap.
 *
 * Why: libcoap 4.3.1 removes the empty ACK of a CON it sent from its queue
 * and tells the application nothing (its pong handler only sees RSTs to its
 * own keep-alive pings; measured with coap_send and coap_session_send_ping).
 * ota_tx clocks fast-OTA windows on that ACK, so the server interposes
 * SSL_read (libcoap's OpenSSL back end reads every DTLS datagram with it) and
 * passes any 4-byte empty ACK/RST of a device's session to srv_ota_on_pong,
 * which ignores every id but its ping's. The bytes go on to libcoap
 * untouched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "srv.h"

int SSL_read(SSL *ssl, void *buf, int num) {
  static int (*real)(SSL *, void *, int);
  if (!real) {
    *(void **)&real = dlsym(RTLD_NEXT, "SSL_read");
    if (!real)
      return -1;
  }
  int r = real(ssl, buf, num);
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
