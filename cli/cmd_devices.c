/* otalab devices: the device list of otalab-server (GET /v1/devices,
 * Particle's device list, PROTOCOL.md 9) as a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rest.h"

static int devices_run(int argc, char **argv) {
  cli_rest_t r;
  argc = cli_rest_opts(argc, argv, &r, "otalab devices");
  if (argc != 1) {
    fprintf(argc < 0                                    ? stderr
            : (argc == 2 && !strcmp(argv[1], "--help")) ? stdout
                                                        : stderr,
            "usage: otalab devices [--server URL] [--token T] [--json]\n\n"
            "List the registered devices and the devices seen over CoAP.\n");
    return argc == 2 && !strcmp(argv[1], "--help") ? CLI_EXIT_OK
                                                   : CLI_EXIT_USAGE;
  }
  json_t *a =
      cli_rest_call(&r, "otalab devices", "GET", "/v1/devices", NULL, NULL, 0);
  if (!a)
    return CLI_EXIT_FAIL;
  if (r.json) {
    char *s = json_dumps(a, JSON_INDENT(2));
    puts(s ? s : "");
    free(s);
  } else {
    printf("%-24s  %-20s  %-7s  %-9s  %s\n", "ID", "NAME", "PRODUCT",
           "CONNECTED", "LAST HEARD");
    size_t i;
    json_t *d;
    json_array_foreach(a, i, d) {
      char b1[32], b2[32], b3[32], b4[32], b5[32];
      printf("%-24s  %-20s  %-7s  %-9s  %s\n",
             cli_rest_str(json_object_get(d, "id"), b1, sizeof b1),
             cli_rest_str(json_object_get(d, "name"), b2, sizeof b2),
             cli_rest_str(json_object_get(d, "product_id"), b3, sizeof b3),
             cli_rest_str(json_object_get(d, "connected"), b4, sizeof b4),
             cli_rest_str(json_object_get(d, "last_heard"), b5, sizeof b5));
    }
  }
  json_decref(a);
  return CLI_EXIT_OK;
}

const cli_cmd_t cli_cmd_devices = {"devices", "list the server's devices",
                                   devices_run};
