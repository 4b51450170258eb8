/* otalab keys: P-256 key pairs and self-signed certificates for otalab-server
 * and otalab-device (standard DTLS 1.2 stand-in for PROTOCOL.md 1.2 keys). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "otalab/err.h"
#include "sim_keys.h"

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

/* The generation itself lives in device-sim/sim_keys.c (otalab_simkeys),
 * shared with otalab-device's fleet mode. */
static int gen(const char *kind, const char *id, const char *dir) {
  sim_keypair_t kp;
  char name[128];
  const char *base = id ? id : "server";
  if (sim_keys_generate(id ? id : "otalab-server", &kp)) {
    fprintf(stderr, "otalab keys: key generation failed\n");
    return CLI_EXIT_FAIL;
  }
  snprintf(name, sizeof name, "%s.key.pem", base);
  if (write_out(dir, name, kp.key_pem, strlen(kp.key_pem)))
    return CLI_EXIT_FAIL;
  snprintf(name, sizeof name, "%s.crt.pem", base);
  if (write_out(dir, name, kp.crt_pem, strlen(kp.crt_pem)))
    return CLI_EXIT_FAIL;
  if (!id) {
    if (write_out(dir, "server.pub.der", kp.pub_der, kp.pub_der_len))
      return CLI_EXIT_FAIL;
  } else {
    snprintf(name, sizeof name, "%s.pub.pem", base);
    if (write_out(dir, name, kp.pub_pem, strlen(kp.pub_pem)))
      return CLI_EXIT_FAIL;
  }
  printf("wrote %s key, certificate and public key to %s/%s.*\n", kind, dir,
         base);
  return CLI_EXIT_OK;
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
