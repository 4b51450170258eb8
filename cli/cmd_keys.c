/* otalab keys: P-256 key pairs and self-signed certificates for otalab-server
 * and otalab-device (standard DTLS 1.2 stand-in for PROTOCOL.md 1.2 keys). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "cli.h"
#include "otalab/err.h"

/* Entropy straight from the kernel: the CLI is an adapter, core never sees it.
 */
static int urandom_entropy(void *ud, unsigned char *out, size_t len) {
  FILE *f = ud;
  return fread(out, 1, len, f) == len ? 0 : -1;
}

static void keys_usage(FILE *out) {
  fprintf(out,
          "usage: otalab keys server --out DIR\n"
          "       otalab keys device --id HEX24 --out DIR\n\n"
          "Generate a P-256 key pair and a self-signed certificate.\n"
          "  server: DIR/server.key.pem, server.crt.pem, server.pub.der "
          "(91-byte SPKI)\n"
          "  device: DIR/<id>.key.pem, <id>.crt.pem (CN=<id>), <id>.pub.pem\n");
}

static int write_out(const char *dir, const char *name, const void *buf,
                     size_t len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int err = cli_write_file(path, buf, len);
  if (!err && strstr(name, ".key.pem"))
    chmod(path, 0600);
  if (err)
    fprintf(stderr, "otalab keys: cannot write %s: %s\n", path,
            ota_strerror(err));
  return err;
}

static int is_hex24(const char *s) {
  if (strlen(s) != 24)
    return 0;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
          (*p >= 'A' && *p <= 'F')))
      return 0;
  return 1;
}

static int gen(const char *kind, const char *id, const char *dir) {
  mbedtls_pk_context pk;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509write_cert crt;
  mbedtls_mpi serial;
  unsigned char buf[4096], serial_raw[8];
  char name[128], subject[128];
  int rc = CLI_EXIT_FAIL, ret;
  FILE *ur = fopen("/dev/urandom", "rb");

  mbedtls_pk_init(&pk);
  mbedtls_ctr_drbg_init(&drbg);
  mbedtls_x509write_crt_init(&crt);
  mbedtls_mpi_init(&serial);
  if (!ur) {
    fprintf(stderr, "otalab keys: cannot open /dev/urandom: %s\n",
            strerror(errno));
    goto out;
  }
  if ((ret = mbedtls_ctr_drbg_seed(&drbg, urandom_entropy, ur,
                                   (const unsigned char *)"otalab-keys", 11)) !=
          0 ||
      (ret = mbedtls_pk_setup(
           &pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY))) != 0 ||
      (ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
                                 mbedtls_ctr_drbg_random, &drbg)) != 0)
    goto mbed_fail;

  const char *base = id ? id : "server";
  snprintf(subject, sizeof subject, "CN=%s,O=otalab",
           id ? id : "otalab-server");
  if ((ret = mbedtls_ctr_drbg_random(&drbg, serial_raw, sizeof serial_raw)))
    goto mbed_fail;
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
    goto mbed_fail;

  if ((ret = mbedtls_pk_write_key_pem(&pk, buf, sizeof buf)))
    goto mbed_fail;
  snprintf(name, sizeof name, "%s.key.pem", base);
  if (write_out(dir, name, buf, strlen((char *)buf)))
    goto out;

  if ((ret = mbedtls_x509write_crt_pem(&crt, buf, sizeof buf,
                                       mbedtls_ctr_drbg_random, &drbg)))
    goto mbed_fail;
  snprintf(name, sizeof name, "%s.crt.pem", base);
  if (write_out(dir, name, buf, strlen((char *)buf)))
    goto out;

  if (!id) {
    /* DER writers fill from the end of the buffer. */
    ret = mbedtls_pk_write_pubkey_der(&pk, buf, sizeof buf);
    if (ret < 0)
      goto mbed_fail;
    if (write_out(dir, "server.pub.der", buf + sizeof buf - ret, (size_t)ret))
      goto out;
  } else {
    if ((ret = mbedtls_pk_write_pubkey_pem(&pk, buf, sizeof buf)))
      goto mbed_fail;
    snprintf(name, sizeof name, "%s.pub.pem", base);
    if (write_out(dir, name, buf, strlen((char *)buf)))
      goto out;
  }
  printf("wrote %s key, certificate and public key to %s/%s.*\n", kind, dir,
         base);
  rc = CLI_EXIT_OK;
  goto out;

mbed_fail:;
  char msg[128];
  mbedtls_strerror(ret, msg, sizeof msg);
  fprintf(stderr, "otalab keys: mbedTLS: %s (-0x%04x)\n", msg, (unsigned)-ret);
out:
  if (ur)
    fclose(ur);
  mbedtls_mpi_free(&serial);
  mbedtls_x509write_crt_free(&crt);
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_pk_free(&pk);
  return rc;
}

static int keys_run(int argc, char **argv) {
  const char *kind = NULL, *id = NULL, *dir = NULL;
  char idl[25];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      keys_usage(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
      dir = argv[++i];
    } else if (!strcmp(argv[i], "--id") && i + 1 < argc) {
      id = argv[++i];
    } else if (!kind && argv[i][0] != '-') {
      kind = argv[i];
    } else {
      fprintf(stderr, "otalab keys: unexpected argument '%s'\n", argv[i]);
      keys_usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  if (!kind || !dir || (strcmp(kind, "server") && strcmp(kind, "device"))) {
    fprintf(stderr, "otalab keys: need 'server' or 'device' and --out DIR\n");
    keys_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (!strcmp(kind, "device")) {
    if (!id || !is_hex24(id)) {
      fprintf(stderr, "otalab keys: device needs --id with 24 hex digits\n");
      return CLI_EXIT_USAGE;
    }
    for (int i = 0; i < 24; i++)
      idl[i] =
          (char)((id[i] >= 'A' && id[i] <= 'F') ? id[i] - 'A' + 'a' : id[i]);
    idl[24] = 0;
    id = idl;
  } else if (id) {
    fprintf(stderr, "otalab keys: --id only applies to 'device'\n");
    return CLI_EXIT_USAGE;
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "otalab keys: cannot create %s: %s\n", dir,
            strerror(errno));
    return CLI_EXIT_FAIL;
  }
  return gen(kind, id, dir);
}

const cli_cmd_t cli_cmd_keys = {
    .name = "keys",
    .summary = "generate server/device P-256 keys and self-signed certs",
    .run = keys_run,
};
