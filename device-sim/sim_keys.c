/* P-256 keys and self-signed certificates (mbedTLS 2.28 writers), shared by
 * `otalab keys` and otalab-device's fleets; PROTOCOL.md 1.2 stand-in. */
#include "sim_keys.h"

#include <stdio.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "otalab/err.h"

/* Entropy straight from the kernel: an adapter, core never sees it. */
static int urandom_entropy(void *ud, unsigned char *out, size_t len) {
  FILE *f = ud;
  return fread(out, 1, len, f) == len ? 0 : -1;
}

int sim_keys_generate(const char *cn, sim_keypair_t *out) {
  mbedtls_pk_context pk;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509write_cert crt;
  mbedtls_mpi serial;
  unsigned char der[256], serial_raw[8];
  char subject[128];
  int rc = OTA_EINVAL, ret = 0;
  FILE *ur = fopen("/dev/urandom", "rb");

  memset(out, 0, sizeof *out);
  mbedtls_pk_init(&pk);
  mbedtls_ctr_drbg_init(&drbg);
  mbedtls_x509write_crt_init(&crt);
  mbedtls_mpi_init(&serial);
  if (!ur) {
    rc = OTA_EIO;
    goto out;
  }
  if ((ret = mbedtls_ctr_drbg_seed(&drbg, urandom_entropy, ur,
                                   (const unsigned char *)"otalab-keys", 11)) ||
      (ret = mbedtls_pk_setup(&pk,
                              mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) ||
      (ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                 mbedtls_ctr_drbg_random, &drbg)))
    goto out;
  snprintf(subject, sizeof subject, "CN=%s,O=otalab", cn);
  if ((ret = mbedtls_ctr_drbg_random(&drbg, serial_raw, sizeof serial_raw)))
    goto out;
  serial_raw[0] &= 0x7f;
  serial_raw[0] |= 0x01;
  mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
  mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
  mbedtls_x509write_crt_set_subject_key(&crt, &pk);
  mbedtls_x509write_crt_set_issuer_key(&crt, &pk);
  if ((ret = mbedtls_mpi_read_binary(&serial, serial_raw, sizeof serial_raw)) ||
      (ret = mbedtls_x509write_crt_set_serial(&crt, &serial)) ||
      (ret = mbedtls_x509write_crt_set_subject_name(&crt, subject)) ||
      (ret = mbedtls_x509write_crt_set_issuer_name(&crt, subject)) ||
      (ret = mbedtls_x509write_crt_set_validity(&crt, "20200101000000",
                                                "20491231235959")) ||
      (ret = mbedtls_x509write_crt_set_basic_constraints(&crt, 0, -1)))
    goto out;
  if ((ret = mbedtls_pk_write_key_pem(&pk, (unsigned char *)out->key_pem,
                                      sizeof out->key_pem)) ||
      (ret = mbedtls_x509write_crt_pem(&crt, (unsigned char *)out->crt_pem,
                                       sizeof out->crt_pem,
                                       mbedtls_ctr_drbg_random, &drbg)) ||
      (ret = mbedtls_pk_write_pubkey_pem(&pk, (unsigned char *)out->pub_pem,
                                         sizeof out->pub_pem)))
    goto out;
  /* DER writers fill from the end of the buffer. */
  ret = mbedtls_pk_write_pubkey_der(&pk, der, sizeof der);
  if (ret < 0 || (size_t)ret > sizeof out->pub_der)
    goto out;
  memcpy(out->pub_der, der + sizeof der - ret, (size_t)ret);
  out->pub_der_len = (size_t)ret;
  ret = 0;
  rc = 0;
out:
  if (ret) {
    char msg[128];
    mbedtls_strerror(ret, msg, sizeof msg);
    fprintf(stderr, "keys: mbedTLS: %s (-0x%04x)\n", msg, (unsigned)-ret);
  }
  if (ur)
    fclose(ur);
  mbedtls_mpi_free(&serial);
  mbedtls_x509write_crt_free(&crt);
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_pk_free(&pk);
  return rc;
}

int sim_keys_pub_pem(const char *key_pem, char *out, size_t cap) {
  mbedtls_pk_context pk;
  mbedtls_pk_init(&pk);
  int rc = OTA_EPARSE;
  if (mbedtls_pk_parse_key(&pk, (const unsigned char *)key_pem,
                           strlen(key_pem) + 1, NULL, 0) == 0)
    rc = mbedtls_pk_write_pubkey_pem(&pk, (unsigned char *)out, cap)
             ? OTA_ENOBUFS
             : 0;
  mbedtls_pk_free(&pk);
  return rc;
}
