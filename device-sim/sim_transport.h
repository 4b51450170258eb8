/* otalab-device transport interface: one secure datagram channel to the cloud.
 * Standard DTLS 1.2 (sim_dtls.c) now; Particle's DTLS variant
 * (PROTOCOL.md 1.2-1.4) later. */
#ifndef OTALAB_SIM_TRANSPORT_H
#define OTALAB_SIM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

/* Byte counters on the UDP socket (whole datagrams, DTLS records included). */
typedef struct {
  uint64_t tx_bytes, rx_bytes, tx_dgrams, rx_dgrams;
  uint64_t hs_tx_bytes, hs_rx_bytes; /* during the last handshake */
  uint64_t hs_tx_dgrams, hs_rx_dgrams;
  uint32_t hs_ms; /* duration of the last handshake */
  int resumed;    /* 1 when the last handshake resumed a saved session */
} sim_transport_stats_t;

typedef struct sim_transport sim_transport_t;

/* Every function returns 0 / a byte count, or a negative OTA_E* error.
 * OTA_EREFUSED: the peer closed the session (DTLS close_notify). */
typedef struct {
  const char *name;
  /* Open the socket and run the handshake (resuming the session given to the
   * constructor when there is one), waiting at most timeout_ms. */
  int (*connect)(sim_transport_t *t, uint32_t timeout_ms);
  /* Send one application datagram (a CoAP message). */
  int (*send)(sim_transport_t *t, const uint8_t *buf, size_t len);
  /* Receive one application datagram if one is ready: >0 its length, 0 none. */
  int (*recv)(sim_transport_t *t, uint8_t *buf, size_t cap);
  /* The fd to poll for input (valid after connect). */
  int (*poll_fd)(const sim_transport_t *t);
  /* Serialise the current session into buf[cap] (*len set) for resumption. */
  int (*save_session)(sim_transport_t *t, uint8_t *buf, size_t cap,
                      size_t *len);
  /* Non-blocking connect: open the socket and take the first handshake step.
   * Returns what step returns. */
  int (*start)(sim_transport_t *t);
  /* Drive the handshake (call on input and every ~50 ms for retransmits):
   * 0 done (server pinned), 1 in progress, or an error. */
  int (*step)(sim_transport_t *t);
  /* Owner-driven I/O only: hand one received datagram to the next step or
   * recv. It is copied (the caller may free buf at once); one is held: a
   * datagram no step/recv read is replaced by the next feed (a loss, as a
   * full modem buffer) and dropped by close and by the next start. */
  void (*feed)(sim_transport_t *t, const uint8_t *buf, size_t len);
  /* Send close_notify when `notify`, close the socket; safe twice. */
  void (*close)(sim_transport_t *t, int notify);
  /* Free the transport (calls close without notify). */
  void (*destroy)(sim_transport_t *t);
} sim_transport_ops_t;

struct sim_transport {
  const sim_transport_ops_t *ops;
  sim_transport_stats_t stats;
};

/* Standard DTLS 1.2 over UDP with mbedTLS: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
 * secp256r1, own certificate, server certificate pinned. */
typedef struct {
  const char *host; /* server address (IPv4 or name) */
  uint16_t port;
  const char *key_file;    /* device private key, PEM */
  const char *cert_file;   /* device certificate, PEM */
  const char *server_cert; /* pinned server certificate, PEM */
  const uint8_t *session; /* saved session (mbedtls_ssl_session_save) or NULL */
  size_t session_len;
  const char *keylog_file; /* NSS key log (SSLKEYLOGFILE) or NULL */
  /* PEM text instead of the files above (NULL: use the file). */
  const char *key_pem, *cert_pem, *server_cert_pem;
  /* Owner-driven I/O: when set, every outgoing datagram goes to raw_send
   * (returns its length or -1) and incoming ones come through ops->feed;
   * the owner reads poll_fd itself. */
  int (*raw_send)(void *ud, const uint8_t *buf, size_t len);
  void *raw_ud;
  /* Handshake retransmit timer, real ms: first wait, doubling up to the
   * last, then the handshake fails (0, 0: Device OS's 3000, 24000 = 45 s). */
  uint32_t hs_min_ms, hs_max_ms;
} sim_dtls_cfg_t;

/* Create a DTLS transport; NULL on error (logged). Strings are copied where
 * needed; `session` is only read during this call. Free with ops->destroy. */
sim_transport_t *sim_dtls_new(const sim_dtls_cfg_t *cfg);

#endif
