/* P-256 key pairs and self-signed certificates for otalab-server and
 * otalab-device (the standard-DTLS stand-in for PROTOCOL.md 1.2's keys).
 * Shared by `otalab keys` and otalab-device's fleet mode (library
 * otalab_simkeys). */
#ifndef OTALAB_SIM_KEYS_H
#define OTALAB_SIM_KEYS_H

#include <stddef.h>

/* One generated identity, PEM text (NUL-terminated) and the SPKI in DER. */
typedef struct {
  char key_pem[512];  /* EC private key */
  char crt_pem[1024]; /* self-signed X.509 v3, CN=<cn>,O=otalab */
  char pub_pem[256];  /* SubjectPublicKeyInfo */
  unsigned char pub_der[128];
  size_t pub_der_len; /* 91 for P-256 */
} sim_keypair_t;

/* Generate a key pair and a self-signed certificate with subject CN=cn,O=otalab
 * (valid 2020-2049), entropy from /dev/urandom. Returns 0 or OTA_EIO (no
 * entropy) / OTA_EINVAL (an mbedTLS failure, logged on stderr). */
int sim_keys_generate(const char *cn, sim_keypair_t *out);

/* The SubjectPublicKeyInfo PEM of a PEM private key (key_pem NUL-terminated)
 * into out[cap]. Returns 0, OTA_EPARSE or OTA_ENOBUFS. */
int sim_keys_pub_pem(const char *key_pem, char *out, size_t cap);

#endif
