/* otalab plan: which releases and modules an Electron needs to reach a release
 * or run a user app, in order, with data and time estimates (core/planner). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "otalab/catalog.h"
#include "otalab/err.h"
#include "otalab/module.h"
#include "otalab/plan_json.h"
#include "otalab/planner.h"

static void plan_usage(FILE *out) {
  fprintf(out,
          "usage: otalab plan (--from REL | --from-module V) (--to REL | --app "
          "FILE)\n"
          "                   [--product | --developer] [--link NAME] "
          "[--device NAME]\n"
          "                   [--catalog PATH] [--json]\n\n"
          "Plan the OTA steps an Electron needs, in order, with the data and "
          "time\n"
          "they cost.\n"
          "  --from REL         the device's release (\"0.6.1\", "
          "\"0.4.8\")\n"
          "  --from-module V    ... or its system module version (105)\n"
          "  --to REL           the target release\n"
          "  --app FILE         ... or a user app .bin: the smallest release "
          "meeting\n"
          "                     its s/2 dependency\n"
          "  --product          a product device (default; the healer runs)\n"
          "  --developer        a developer device: also print the `particle "
          "flash`\n"
          "                     commands, in order\n"
          "  --link NAME        show only this link's time (2g, 3g, lte-m, "
          "lte)\n"
          "  --device NAME      device name for the particle commands "
          "(DEVICE)\n"
          "  --catalog PATH     release catalogue (default: %s)\n"
          "  --json             machine-readable output\n"
          "Exit: 0 planned (possibly nothing to do), 1 refused, 2 usage.\n",
          cli_default_catalog());
}

/* The s/2 dependency of a user module file. */
static int app_dependency(const char *path, ota_modref_t *dep) {
  uint8_t *buf = NULL;
  size_t len = 0;
  ota_module_t m;
  int rc = cli_read_file(path, &buf, &len);
  if (rc) {
    fprintf(stderr, "otalab plan: %s: %s\n", path, ota_strerror(rc));
    return rc;
  }
  rc = ota_module_parse(buf, len, &m);
  if (rc) {
    fprintf(stderr, "otalab plan: %s: %s\n", path, ota_strerror(rc));
  } else if (m.info.func != OTA_FN_USER) {
    fprintf(stderr, "otalab plan: %s is a %s module, not a user app\n", path,
            ota_fn_name(m.info.func));
    rc = OTA_EFUNC;
  } else if (m.info.platform != OTA_PLATFORM_ELECTRON) {
    fprintf(stderr, "otalab plan: %s is for platform %u, not Electron\n", path,
            m.info.platform);
    rc = OTA_EPLATFORM;
  } else {
    *dep = m.info.dep1.func == OTA_FN_SYSTEM ? m.info.dep1 : m.info.dep2;
  }
  free(buf);
  return rc;
}

static const char *const link_names[] = {"2g", "3g", "lte-m", "lte"};
#define NLINKS (sizeof link_names / sizeof link_names[0])

static double secs(const ota_catalog_t *cat, const ota_plan_cost_t *c,
                   const char *link) {
  const ota_link_profile_t *l = ota_catalog_link(cat, link);
  return l ? ota_plan_seconds(c, l, NULL) : NAN;
}

static void print_json(const ota_catalog_t *cat, const ota_plan_t *p,
                       const char *to) {
  char *txt = ota_plan_to_json(cat, p, to, JSON_REAL_PRECISION(10));
  if (txt)
    printf("%s\n", txt);
  free(txt);
}

static void print_times(const ota_catalog_t *cat, const ota_plan_cost_t *c,
                        const char *only) {
  for (size_t i = 0; i < NLINKS; i++) {
    if (only && strcmp(only, link_names[i]))
      continue;
    double s = secs(cat, c, link_names[i]);
    if (isnan(s))
      printf(" %9s", "-");
    else if (s >= 600)
      printf(" %8.1fm", s / 60);
    else
      printf(" %8.1fs", s);
  }
}

static void print_table(const ota_catalog_t *cat, const ota_plan_t *p,
                        const char *link, const char *device) {
  printf("%s Electron: %s -> %s: %s\n", p->product ? "Product" : "Developer",
         p->from, p->to, p->reason);
  if (p->nsteps == 0)
    return;
  printf("\n%-4s %-11s %-24s %10s %10s", "step", "release", "modules",
         "payload B", "wire B");
  for (size_t i = 0; i < NLINKS; i++)
    if (!link || !strcmp(link, link_names[i]))
      printf(" %9s", link_names[i]);
  printf("\n");
  for (int i = 0; i < p->nsteps; i++) {
    const ota_plan_step_t *s = &p->steps[i];
    char mods[64] = "";
    for (int k = 0; k < s->nmodules; k++) {
      char one[16];
      snprintf(one, sizeof one, "%s%c/%u", k ? "," : "",
               ota_fn_letter(s->modules[k].id.func), s->modules[k].id.index);
      strncat(mods, one, sizeof mods - strlen(mods) - 1);
    }
    snprintf(mods + strlen(mods), sizeof mods - strlen(mods), " v%u",
             s->release->system_version);
    printf("%-4d %-11s %-24s %10llu %10llu", i + 1, s->release->name, mods,
           (unsigned long long)s->cost.payload,
           (unsigned long long)s->cost.wire);
    print_times(cat, &s->cost, link);
    printf("\n");
  }
  printf("%-4s %-11s %-24s %10llu %10llu", "all", "", "(+ first connection)",
         (unsigned long long)p->total.payload,
         (unsigned long long)p->total.wire);
  print_times(cat, &p->total, link);
  printf("\n\nWire bytes are DTLS records (CoAP + 29 B per datagram, "
         "handshakes);\n"
         "with Particle's DTLS: %llu B; UDP/IP headers on top: %llu B (%llu "
         "datagrams).\n",
         (unsigned long long)p->total.wire_particle,
         (unsigned long long)p->total.udp_ip,
         (unsigned long long)p->total.datagrams);
  printf("Times: fast OTA, %u reboots at ~10 s each, link profiles and "
         "overheads in\n"
         "docs/PROTOCOL.md (\"Catalogue and planner choices\").\n",
         p->total.reboots);

  printf("\nModules in send order (one reboot after each):\n");
  int n = 0;
  for (int i = 0; i < p->nsteps; i++) {
    const ota_plan_step_t *s = &p->steps[i];
    printf("  step %d, %s (%s):\n", i + 1, s->release->name, s->why);
    for (int k = 0; k < s->nmodules; k++)
      printf("    %2d. %-38s %c/%u v%-5u %7u B\n", ++n, s->modules[k].file,
             ota_fn_letter(s->modules[k].id.func), s->modules[k].id.index,
             s->modules[k].id.version, s->modules[k].bytes);
  }
  if (!p->product) {
    printf("\nDeveloper device (the Safe Mode Healer is off): flash in this "
           "order,\nwaiting for each reboot and reconnect:\n");
    for (int i = 0; i < p->nsteps; i++)
      for (int k = 0; k < p->steps[i].nmodules; k++)
        printf("  particle flash %s %s\n", device, p->steps[i].modules[k].file);
  }
}

static int plan_run(int argc, char **argv) {
  const char *from = NULL, *to = NULL, *app = NULL, *link = NULL;
  const char *catalog = cli_default_catalog(), *device = "DEVICE";
  long from_mod = -1;
  int json = 0, product = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(var)                                                              \
  do {                                                                         \
    if (!v) {                                                                  \
      fprintf(stderr, "otalab plan: %s needs a value\n", a);                   \
      return CLI_EXIT_USAGE;                                                   \
    }                                                                          \
    var = v;                                                                   \
    i++;                                                                       \
  } while (0)
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      plan_usage(stdout);
      return CLI_EXIT_OK;
    } else if (!strcmp(a, "--from"))
      TAKE(from);
    else if (!strcmp(a, "--to"))
      TAKE(to);
    else if (!strcmp(a, "--app"))
      TAKE(app);
    else if (!strcmp(a, "--link"))
      TAKE(link);
    else if (!strcmp(a, "--catalog"))
      TAKE(catalog);
    else if (!strcmp(a, "--device"))
      TAKE(device);
    else if (!strcmp(a, "--from-module")) {
      const char *s = NULL;
      char *end;
      TAKE(s);
      from_mod = strtol(s, &end, 10);
      if (*end || from_mod <= 0 || from_mod > 65535) {
        fprintf(stderr, "otalab plan: bad module version '%s'\n", s);
        return CLI_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--json"))
      json = 1;
    else if (!strcmp(a, "--product"))
      product = 1;
    else if (!strcmp(a, "--developer"))
      product = 0;
    else {
      fprintf(stderr, "otalab plan: unknown argument '%s'\n", a);
      plan_usage(stderr);
      return CLI_EXIT_USAGE;
    }
#undef TAKE
  }
  if (!!from + (from_mod > 0) != 1 || !!to + !!app != 1) {
    fprintf(stderr, "otalab plan: give one of --from/--from-module and one "
                    "of --to/--app\n");
    plan_usage(stderr);
    return CLI_EXIT_USAGE;
  }

  ota_catalog_t cat;
  char err[256] = "";
  int rc = cli_catalog_load(&cat, &catalog, err, sizeof err);
  if (rc) {
    fprintf(stderr, "otalab plan: catalogue: %s\n", err);
    return CLI_EXIT_FAIL;
  }
  int ret = CLI_EXIT_FAIL;
  if (link && !ota_catalog_link(&cat, link)) {
    fprintf(stderr, "otalab plan: unknown link '%s' (2g, 3g, lte-m, lte)\n",
            link);
    ret = CLI_EXIT_USAGE;
    goto out;
  }

  ota_dev_module_t mods[OTA_CAT_MAX_MODULES];
  ota_plan_device_t dev = {mods, 0, OTA_PLATFORM_ELECTRON, product};
  const ota_cat_release_t *cur =
      from ? ota_catalog_find(&cat, from)
           : ota_catalog_find_sysver(&cat, (uint16_t)from_mod);
  if (cur) {
    dev.nmodules = ota_plan_device_from_release(cur, mods, OTA_CAT_MAX_MODULES);
  } else if (from) {
    fprintf(stderr, "otalab plan: unknown release '%s'\n", from);
    goto out;
  } else {
    /* A system version the catalogue has no release for (0.5.3-rc.2 = 19):
     * all parts at that version, s/3 from 0.6.0 (v >= 100). */
    uint16_t v = (uint16_t)from_mod;
    memset(mods, 0, sizeof mods);
    for (int idx = 1; idx <= (v >= 100 ? 3 : 2); idx++)
      mods[dev.nmodules++].id = (ota_modref_t){OTA_FN_SYSTEM, (uint8_t)idx, v};
  }

  ota_goal_t goal = {OTA_GOAL_RELEASE, to, {0, 0, 0}};
  if (app) {
    goal.kind = OTA_GOAL_APP;
    if (app_dependency(app, &goal.app_dep))
      goto out;
  }
  ota_plan_t plan;
  rc = ota_plan_make(&cat, &dev, &goal, NULL, &plan);
  if (rc) {
    fprintf(stderr, "otalab plan: refused (%s): %s\n", ota_strerror_name(rc),
            plan.reason);
    if (json)
      print_json(&cat, &plan, to);
    goto out;
  }
  if (json)
    print_json(&cat, &plan, to);
  else
    print_table(&cat, &plan, link, device);
  ret = CLI_EXIT_OK;
out:
  ota_catalog_free(&cat);
  return ret;
}

const cli_cmd_t cli_cmd_plan = {
    "plan", "plan the OTA steps from one release to another, with costs",
    plan_run};
