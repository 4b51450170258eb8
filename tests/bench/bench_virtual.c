/* bench_virtual: the virtual-time simulation's speed (Issue "Fleets" items 5,
 * 7): one 2G heal 0.4.8 -> 0.6.2, then N devices on mixed links. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "otalab/module.h"
#include "otalab/planner.h"
#include "otalab/vnet.h"

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

static uint8_t app[8192];
static size_t app_len;

static int add(ota_vsim_t *vs, const ota_catalog_t *cat, const char *rel,
               const char *link, int i, uint64_t start) {
  ota_vsim_dev_spec_t sp = {
      .app = app, .app_len = app_len, .product_id = 7, .start_ms = start};
  char err[128];
  snprintf(sp.name, sizeof sp.name, "dev-%d", i);
  snprintf(sp.release, sizeof sp.release, "%s", rel);
  if (ota_link_parse(link, cat, &sp.link, err, sizeof err)) {
    fprintf(stderr, "bench_virtual: %s: %s\n", link, err);
    return -1;
  }
  return ota_vsim_add(vs, &sp);
}

int main(int argc, char **argv) {
  const char *catalog = argc > 1 && argv[1][0] ? argv[1] : OTALAB_CATALOG;
  int n = argc > 2 ? atoi(argv[2]) : 10000;
  ota_catalog_t cat;
  char err[256];
  ota_catalog_init(&cat);
  if (ota_catalog_load_file(&cat, catalog, err, sizeof err)) {
    fprintf(stderr, "bench_virtual: %s: %s\n", catalog, err);
    return 2;
  }
  ota_module_spec_t spec;
  ota_module_spec_init(&spec, OTA_FN_USER, 1, 6);
  spec.size = sizeof app;
  spec.deps[0] = (ota_modref_t){
      OTA_FN_SYSTEM, 2, ota_catalog_find(&cat, "0.6.2")->system_version};
  spec.product_id = 10;
  ota_module_build(&spec, app, sizeof app, &app_len);

  /* 1. one device, 2G, 0.4.8 -> 0.6.2 */
  ota_vsim_cfg_t cfg;
  ota_vsim_cfg_default(&cfg);
  double t0 = wall();
  ota_vsim_t *vs = ota_vsim_new(&cat, &cfg);
  add(vs, &cat, "0.4.8", "2g", 0, 0);
  ota_vsim_run(vs, 0);
  double w1 = wall() - t0;
  const ota_vsim_stats_t *st = ota_vsim_stats(vs, 0);
  printf("virtual: 1 device 0.4.8 -> %s on 2g: %s, %.1f s simulated in %.3f s "
         "wall (%.0fx), %llu B, %u jobs, %llu events, log hash %016llx\n",
         ota_device_release_name(ota_vsim_device(vs, 0)),
         st->done ? "healed" : "NOT done", (double)st->t_done / 1000.0, w1,
         (double)st->t_done / 1000.0 / w1,
         (unsigned long long)ota_vsim_bytes(st), st->jobs_ok,
         (unsigned long long)ota_vsim_events(vs),
         (unsigned long long)ota_vsim_hash(vs));
  ota_vsim_destroy(vs);

  /* 2. a fleet: 30 % 2g, 30 % 3g, 40 % lte-m; half 0.6.1, half 0.4.8;
   * power-ons spread over the first minute */
  t0 = wall();
  vs = ota_vsim_new(&cat, &cfg);
  for (int i = 0; i < n; i++) {
    int r = i % 10;
    const char *link = r < 3 ? "2g" : r < 6 ? "3g" : "lte-m";
    if (add(vs, &cat, i % 2 ? "0.4.8" : "0.6.1", link, i,
            (uint64_t)i * 60000 / (uint64_t)n) < 0)
      return 1;
  }
  double tsetup = wall() - t0;
  size_t done = ota_vsim_run(vs, 0);
  double w2 = wall() - t0;
  uint64_t bytes = 0, ok = 0, worst = 0;
  for (int i = 0; i < n; i++) {
    st = ota_vsim_stats(vs, (size_t)i);
    bytes += ota_vsim_bytes(st);
    ok += strcmp(ota_device_release_name(ota_vsim_device(vs, (size_t)i)),
                 "0.6.2") == 0;
    if (st->done && st->t_done > worst)
      worst = st->t_done;
  }
  printf("virtual: %d devices (2g:30,3g:30,lte-m:40; 0.6.1 and 0.4.8) -> "
         "0.6.2: %zu done, %llu on 0.6.2, in %.1f s wall (setup %.1f s), "
         "%.1f h simulated (slowest %.0f s), %llu events (%.0f events/s), "
         "%.1f MB on the links, peak RSS %ld MB, log hash %016llx\n",
         n, done, (unsigned long long)ok, w2, tsetup,
         (double)ota_vsim_now(vs) / 3600000.0, (double)worst / 1000.0,
         (unsigned long long)ota_vsim_events(vs),
         (double)ota_vsim_events(vs) / w2, (double)bytes / 1e6, rss_mb(),
         (unsigned long long)ota_vsim_hash(vs));
  ota_vsim_destroy(vs);
  ota_catalog_free(&cat);
  return done == (size_t)n ? 0 : 1;
}
