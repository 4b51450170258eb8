/* otalab products: product management on otalab-server (Particle's product
 * firmware API, PROTOCOL.md 9): list, create, upload, release, devices. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "otalab/err.h"
#include "rest.h"

#define PROG "otalab products"

static void products_usage(FILE *f) {
  fprintf(f, "usage: otalab products [--server URL] [--token T] [--json] "
             "COMMAND\n\n"
             "  list                          products and released firmware\n"
             "  create ID NAME                a new product\n"
             "  upload ID FILE --version N [--title T]\n"
             "                                product firmware (a user part)\n"
             "  release ID VERSION            release firmware to the "
             "product\n"
             "  devices ID                    the product's devices\n");
}

static void print_json(json_t *o) {
  char *s = json_dumps(o, JSON_INDENT(2));
  puts(s ? s : "");
  free(s);
}

static int upload(const cli_rest_t *r, int argc, char **argv) {
  const char *id = NULL, *file = NULL, *ver = NULL, *title = "";
  for (int i = 2; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v && !strcmp(argv[i], "--version"))
      ver = v, i++;
    else if (v && !strcmp(argv[i], "--title"))
      title = v, i++;
    else if (!id && argv[i][0] != '-')
      id = argv[i];
    else if (!file && argv[i][0] != '-')
      file = argv[i];
    else
      return -1;
  }
  if (!id || !file || !ver)
    return -1;
  uint8_t *data;
  size_t len;
  int err = cli_read_file(file, &data, &len);
  if (err) {
    fprintf(stderr, PROG ": cannot read %s: %s\n", file, ota_strerror(err));
    return CLI_EXIT_FAIL;
  }
  static const char bnd[] = "otalab-products-5b0e2f7c9d1a4c63";
  const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
  char head[1024], tail[64];
  int hl = snprintf(head, sizeof head,
                    "--%s\r\nContent-Disposition: form-data; "
                    "name=\"version\"\r\n\r\n%s\r\n"
                    "--%s\r\nContent-Disposition: form-data; "
                    "name=\"title\"\r\n\r\n%s\r\n"
                    "--%s\r\nContent-Disposition: form-data; name=\"binary\"; "
                    "filename=\"%s\"\r\nContent-Type: "
                    "application/octet-stream\r\n\r\n",
                    bnd, ver, bnd, title, bnd, base);
  int tl = snprintf(tail, sizeof tail, "\r\n--%s--\r\n", bnd);
  size_t blen = (size_t)hl + len + (size_t)tl;
  uint8_t *body = malloc(blen);
  if (!body || hl >= (int)sizeof head) {
    free(data);
    free(body);
    return CLI_EXIT_FAIL;
  }
  memcpy(body, head, (size_t)hl);
  memcpy(body + hl, data, len);
  memcpy(body + (size_t)hl + len, tail, (size_t)tl);
  free(data);
  char path[96], ctype[128];
  snprintf(path, sizeof path, "/v1/products/%.20s/firmware", id);
  snprintf(ctype, sizeof ctype, "multipart/form-data; boundary=%s", bnd);
  json_t *o = cli_rest_call(r, PROG, "POST", path, ctype, body, blen);
  free(body);
  if (!o)
    return CLI_EXIT_FAIL;
  if (r->json)
    print_json(o);
  else
    printf("product %s: firmware v%s uploaded (%zu bytes)\n", id, ver, len);
  json_decref(o);
  return CLI_EXIT_OK;
}

static int products_run(int argc, char **argv) {
  cli_rest_t r;
  argc = cli_rest_opts(argc, argv, &r, PROG);
  const char *cmd = argc >= 2 ? argv[1] : "";
  if (!strcmp(cmd, "--help")) {
    products_usage(stdout);
    return CLI_EXIT_OK;
  }
  char path[96], body[512];
  json_t *o = NULL;
  if (!strcmp(cmd, "list") && argc == 2) {
    o = cli_rest_call(&r, PROG, "GET", "/v1/products", NULL, NULL, 0);
    if (o && !r.json) {
      printf("%-10s  %-24s  %-9s  %s\n", "ID", "NAME", "RELEASED", "VERSIONS");
      size_t i, k;
      json_t *p, *f;
      json_array_foreach(json_object_get(o, "products"), i, p) {
        char b1[32], b2[32], vers[256] = "";
        size_t vl = 0;
        json_array_foreach(json_object_get(p, "firmware"), k, f) {
          if (vl < sizeof vers)
            vl += (size_t)snprintf(
                vers + vl, sizeof vers - vl, "%s%lld", k ? "," : "",
                (long long)json_integer_value(json_object_get(f, "version")));
        }
        printf("%-10s  %-24s  %-9s  %s\n",
               cli_rest_str(json_object_get(p, "id"), b1, sizeof b1),
               json_string_value(json_object_get(p, "name")),
               cli_rest_str(json_object_get(p, "released"), b2, sizeof b2),
               vl ? vers : "-");
      }
      json_decref(o);
      return CLI_EXIT_OK;
    }
  } else if (!strcmp(cmd, "create") && argc == 4) {
    json_t *b = json_pack("{s:s,s:s}", "id", argv[2], "name", argv[3]);
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    o = cli_rest_call(&r, PROG, "POST", "/v1/products", "application/json",
                      (const uint8_t *)s, s ? strlen(s) : 0);
    free(s);
    if (o && !r.json) {
      printf("product %s \"%s\" created\n", argv[2], argv[3]);
      json_decref(o);
      return CLI_EXIT_OK;
    }
  } else if (!strcmp(cmd, "upload")) {
    int rc = upload(&r, argc, argv);
    if (rc >= 0)
      return rc;
    products_usage(stderr);
    return CLI_EXIT_USAGE;
  } else if (!strcmp(cmd, "release") && argc == 4) {
    snprintf(path, sizeof path, "/v1/products/%.20s/firmware/release", argv[2]);
    snprintf(body, sizeof body, "{\"version\":\"%.20s\"}", argv[3]);
    o = cli_rest_call(&r, PROG, "PUT", path, "application/json",
                      (const uint8_t *)body, strlen(body));
    if (o && !r.json) {
      printf("product %s: firmware v%s released\n", argv[2], argv[3]);
      json_decref(o);
      return CLI_EXIT_OK;
    }
  } else if (!strcmp(cmd, "devices") && argc == 3) {
    snprintf(path, sizeof path, "/v1/products/%.20s/devices", argv[2]);
    o = cli_rest_call(&r, PROG, "GET", path, NULL, NULL, 0);
    if (o && !r.json) {
      size_t i;
      json_t *d;
      json_array_foreach(json_object_get(o, "devices"), i, d) {
        char b[32];
        printf("%s  %-20s  connected=%s\n",
               json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "name")),
               cli_rest_str(json_object_get(d, "connected"), b, sizeof b));
      }
      json_decref(o);
      return CLI_EXIT_OK;
    }
  } else {
    products_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  if (!o)
    return CLI_EXIT_FAIL;
  print_json(o);
  json_decref(o);
  return CLI_EXIT_OK;
}

const cli_cmd_t cli_cmd_products = {
    "products", "products: create, upload, release", products_run};
