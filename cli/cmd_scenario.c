/* otalab scenario run: a scenario file (docs/SCENARIOS.md) against real
 * otalab-server and otalab-device processes; the seed's stories as tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "scenario.h"

static void scenario_usage(FILE *out) {
  fprintf(out,
          "usage: otalab scenario run FILE [--seed N] [--json] [--keep DIR] "
          "[--quiet]\n"
          "                           [--virtual]\n"
          "                           [--bin-dir DIR] [--fixtures DIR]\n\n"
          "Start otalab-server and one otalab-device per device of FILE on "
          "loopback\n"
          "(ephemeral ports, a temp dir), register the devices and products, "
          "run the\n"
          "actions, and watch GET /v1/devices/:id, the event stream and the "
          "device\n"
          "logs until every expectation holds (then 2 s more) or timeout_s.\n"
          "Prints per device the OTA jobs, the data used (counted by a UDP "
          "relay)\n"
          "against the planner's estimate, the time and the outcome.\n\n"
          "  --seed N       device ids and link randomness (default 1)\n"
          "  --json         the report as JSON on stdout\n"
          "  --virtual      run in-process in virtual time (core/vsim): no "
          "processes,\n"
          "                 links from the devices' \"link\" (default ideal); "
          "no server\n"
          "                 kill/restart (docs/SCENARIOS.md, Virtual mode)\n"
          "  --keep DIR     run in DIR and keep it (logs, state files)\n"
          "  --quiet        one line per device and the totals\n"
          "  --bin-dir DIR  where otalab-server and otalab-device are "
          "(default: the\n"
          "                 otalab build tree, then PATH)\n"
          "  --fixtures DIR module binaries (default: the build tree's "
          "fixtures/bin,\n"
          "                 else generated with otalab mkfixtures)\n\n"
          "Exit: 0 every expectation held, 1 one failed (or setup failed), 2 "
          "usage.\n");
}

static int scenario_run_cmd(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    scenario_usage(stdout);
    return CLI_EXIT_OK;
  }
  if (argc < 2 || strcmp(argv[1], "run")) {
    scenario_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  static sc_run_t run; /* large */
  memset(&run, 0, sizeof run);
  run.seed = 1;
  int virt = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help")) {
      scenario_usage(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(a, "--json"))
      run.json = 1;
    else if (!strcmp(a, "--quiet"))
      run.quiet = 1;
    else if (!strcmp(a, "--virtual"))
      virt = 1;
    else if (v && !strcmp(a, "--seed")) {
      char *end;
      unsigned long s = strtoul(v, &end, 10);
      if (*end || end == v) {
        fprintf(stderr, "otalab scenario: bad --seed '%s'\n", v);
        return CLI_EXIT_USAGE;
      }
      run.seed = (unsigned)s;
      i++;
    } else if (v && !strcmp(a, "--keep"))
      run.keep = argv[++i];
    else if (v && !strcmp(a, "--bin-dir"))
      run.bin_dir = argv[++i];
    else if (v && !strcmp(a, "--fixtures"))
      run.fixtures = argv[++i];
    else if (a[0] != '-' && !run.file)
      run.file = a;
    else {
      fprintf(stderr, "otalab scenario: bad argument '%s'\n", a);
      scenario_usage(stderr);
      return CLI_EXIT_USAGE;
    }
  }
  if (!run.file) {
    scenario_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  int rc = sc_load(&run);
  if (rc) {
    sc_free(&run);
    return rc;
  }
  char why[300];
  if (!sc_mode_ok(&run, virt ? "virtual" : "real")) {
    fprintf(stderr,
            "otalab scenario: %s: its \"modes\" do not include %s mode%s\n",
            run.file, virt ? "virtual" : "real",
            virt ? "" : " (run it with --virtual)");
    sc_free(&run);
    return CLI_EXIT_USAGE;
  }
  if (virt && !sc_virtual_supported(&run, why, sizeof why)) {
    fprintf(stderr, "otalab scenario: %s: --virtual: %s\n", run.file, why);
    sc_free(&run);
    return CLI_EXIT_USAGE;
  }
  if (!run.json && !run.quiet) {
    const char *desc =
        json_string_value(json_object_get(run.spec, "description"));
    printf("scenario %s: %d device(s), timeout %.0f s%s\n", run.name, run.ndev,
           run.timeout_s, virt ? " (virtual time)" : "");
    if (desc)
      printf("  %s\n", desc);
  }
  run.virt = virt;
  if (!virt && run.time_scale != 1 && !run.json && !run.quiet)
    printf("  time: simulated seconds, devices at --time-scale %g (wall = "
           "simulated / %g)\n",
           run.time_scale, run.time_scale);
  if (virt)
    sc_run_virtual(&run);
  else
    sc_run(&run);
  rc = sc_report(&run);
  if (!run.keep && run.dir[0]) {
    if (rc == CLI_EXIT_OK) {
      char *rm[] = {"rm", "-rf", run.dir, NULL};
      pid_t p = fork();
      if (p == 0) {
        execvp("rm", rm);
        _exit(127);
      }
      if (p > 0)
        waitpid(p, NULL, 0);
    } else if (!run.json)
      printf("logs kept in %s\n", run.dir);
  }
  sc_free(&run);
  return rc;
}

const cli_cmd_t cli_cmd_scenario = {
    "scenario", "run a scenario file: server + devices, actions, expectations",
    scenario_run_cmd};
