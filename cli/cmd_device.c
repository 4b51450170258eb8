/* otalab device: one device's details from otalab-server (GET /v1/devices/:id,
 * PROTOCOL.md 9): registry row, connection, modules from the describe, OTA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rest.h"

static int device_run(int argc, char **argv) {
  cli_rest_t r;
  argc = cli_rest_opts(argc, argv, &r, "otalab device");
  if (argc != 2 || argv[1][0] == '-') {
    int help = argc == 2 && !strcmp(argv[1], "--help");
    fprintf(help ? stdout : stderr,
            "usage: otalab device [--server URL] [--token T] [--json] ID\n\n"
            "Show a device: name, product, connection, system firmware, "
            "modules\n(function/index/version from its describe) and OTA "
            "jobs.\n");
    return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  char path[96];
  snprintf(path, sizeof path, "/v1/devices/%.40s", argv[1]);
  json_t *d = cli_rest_call(&r, "otalab device", "GET", path, NULL, NULL, 0);
  if (!d)
    return CLI_EXIT_FAIL;
  /* name and product live in the registry list */
  json_t *list =
      cli_rest_call(&r, "otalab device", "GET", "/v1/devices", NULL, NULL, 0);
  size_t i;
  json_t *row;
  json_array_foreach(list, i, row) {
    const char *id = json_string_value(json_object_get(row, "id"));
    if (id && !strcmp(id, json_string_value(json_object_get(d, "id")))) {
      json_object_set(d, "name", json_object_get(row, "name"));
      json_object_set(d, "product_id", json_object_get(row, "product_id"));
    }
  }
  json_decref(list);
  if (r.json) {
    char *s = json_dumps(d, JSON_INDENT(2));
    puts(s ? s : "");
    free(s);
    json_decref(d);
    return CLI_EXIT_OK;
  }
  static const char *const keys[] = {"id",
                                     "name",
                                     "product_id",
                                     "connected",
                                     "last_heard",
                                     "last_ip_address",
                                     "system_firmware_version",
                                     "hellos"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
    char b[32];
    printf("%-24s %s\n", keys[k],
           cli_rest_str(json_object_get(d, keys[k]), b, sizeof b));
  }
  json_t *mods = json_object_get(d, "modules");
  printf("modules                  %s\n", json_array_size(mods) ? "" : "-");
  json_t *m;
  json_array_foreach(mods, i, m) {
    char b1[16], b2[16], b3[16];
    printf("  %s/%s v%s\n",
           cli_rest_str(json_object_get(m, "f"), b1, sizeof b1),
           cli_rest_str(json_object_get(m, "n"), b2, sizeof b2),
           cli_rest_str(json_object_get(m, "v"), b3, sizeof b3));
  }
  static const char *const ota_keys[] = {"ota", "last_ota"};
  for (size_t k = 0; k < 2; k++) {
    json_t *o = json_object_get(d, ota_keys[k]);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    printf("%-24s %s\n", ota_keys[k], s ? s : "-");
    free(s);
  }
  json_decref(d);
  return CLI_EXIT_OK;
}

const cli_cmd_t cli_cmd_device = {"device", "show one device (modules, OTA)",
                                  device_run};
