/* Tests of the cellular link model (core/link): seeded determinism, loss,
 * duplication and reordering rates, serialisation math, outages, spec parsing.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "otalab/catalog.h"
#include "otalab/err.h"
#include "otalab/link.h"

#define CATALOG OTALAB_SOURCE_DIR "/fixtures/catalog/electron.json"

static ota_catalog_t cat;

static void load(void) {
  char err[256] = "";
  ota_catalog_init(&cat);
  int rc = ota_catalog_load_file(&cat, CATALOG, err, sizeof err);
  cr_assert_eq(rc, 0, "load %s: %s (%s)", CATALOG, ota_strerror(rc), err);
}

static void unload(void) {
  ota_catalog_free(&cat);
}

static void parse_ok(const char *spec, ota_link_cfg_t *cfg) {
  char err[200] = "";
  int rc = ota_link_parse(spec, &cat, cfg, err, sizeof err);
  cr_assert_eq(rc, 0, "parse '%s': %s", spec, err);
}

/* 5 standard deviations of a binomial proportion over n trials. */
static double tol(double p, double n) {
  return 5 * sqrt(p * (1 - p) / n) + 1e-9;
}

/* ---- determinism -------------------------------------------------------- */

#define NDET 20000
typedef struct {
  int n[NDET];
  uint64_t at[NDET][2];
} trace_t;

static void run_trace(const ota_link_cfg_t *cfg, uint64_t seed, trace_t *t) {
  ota_link_t l;
  ota_link_init(&l, cfg, seed);
  memset(t, 0, sizeof(*t));
  for (int i = 0; i < NDET; i++) {
    ota_link_dir_t d = (i % 3 == 0) ? OTA_LINK_UP : OTA_LINK_DOWN;
    t->n[i] = ota_link_submit(&l, d, (uint64_t)i * 20, 100 + (size_t)(i % 400),
                              t->at[i]);
  }
}

Test(link, same_seed_same_fates, .init = load, .fini = unload) {
  static trace_t a, b, c;
  ota_link_cfg_t cfg;
  parse_ok("2g,loss=0.1,dup=0.05,reorder=0.05", &cfg);
  run_trace(&cfg, 42, &a);
  run_trace(&cfg, 42, &b);
  run_trace(&cfg, 43, &c);
  cr_assert(memcmp(&a, &b, sizeof a) == 0, "same seed, different runs");
  cr_assert(memcmp(&a, &c, sizeof a) != 0, "seeds 42 and 43 give one run");
  int losses_differ = 0;
  for (int i = 0; i < NDET; i++)
    losses_differ += (a.n[i] == 0) != (c.n[i] == 0);
  cr_assert_gt(losses_differ, NDET / 100, "only %d fates differ",
               losses_differ);
}

/* The n-th down datagram's fate does not depend on up traffic. */
Test(link, directions_independent, .init = load, .fini = unload) {
  ota_link_cfg_t cfg;
  parse_ok("ideal,loss=0.3", &cfg);
  ota_link_t a, b;
  ota_link_init(&a, &cfg, 7);
  ota_link_init(&b, &cfg, 7);
  uint64_t at[2];
  for (int i = 0; i < 5000; i++) {
    if (i % 2)
      ota_link_submit(&b, OTA_LINK_UP, (uint64_t)i, 50, at);
    int na = ota_link_submit(&a, OTA_LINK_DOWN, (uint64_t)i, 50, at);
    int nb = ota_link_submit(&b, OTA_LINK_DOWN, (uint64_t)i, 50, at);
    cr_assert_eq(na, nb, "datagram %d", i);
  }
}

/* ---- rates -------------------------------------------------------------- */

/* Strings inline: Criterion runs each case in a fresh process image, where
 * pointers into the parent's rodata are not valid. */
typedef struct {
  char spec[64];
  double loss, dup, reorder; /* expected rates */
} rate_case_t;

ParameterizedTestParameters(link, rates) {
  static rate_case_t cases[] = {
      {"ideal,loss=0.02", 0.02, 0, 0},
      {"ideal,loss=0.5", 0.5, 0, 0},
      {"ideal,dup=0.01,reorder=0.02,reorder-ms=50", 0, 0.01, 0.02},
      {"ideal,loss=0.1,dup=0.05,reorder=0.1,reorder-ms=20", 0.1, 0.05, 0.1},
      {"2g", -1, -1, -1}, /* -1: the profile's own values */
      {"lte", -1, -1, -1},
  };
  return cr_make_param_array(rate_case_t, cases,
                             sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(rate_case_t *tc, link, rates, .init = load, .fini = unload) {
  ota_link_cfg_t cfg;
  parse_ok(tc->spec, &cfg);
  double pl = tc->loss >= 0 ? tc->loss : cfg.loss;
  double pd = tc->dup >= 0 ? tc->dup : cfg.dup;
  double pr = tc->reorder >= 0 ? tc->reorder : cfg.reorder;
  const double n = 100000;
  ota_link_t l;
  ota_link_init(&l, &cfg, 1234);
  uint64_t at[2], max_seen = 0;
  uint64_t late = 0; /* arrivals before an earlier datagram's arrival */
  for (int i = 0; i < (int)n; i++) {
    /* 20 ms apart: below every profile's bandwidth, so no queueing */
    int k = ota_link_submit(&l, OTA_LINK_DOWN, (uint64_t)i * 20, 64, at);
    cr_assert(k >= 0 && k <= 2);
    if (k == 2)
      cr_assert_geq(at[1], at[0]);
    if (k >= 1) {
      if (at[0] < max_seen)
        late++;
      if (at[k - 1] > max_seen)
        max_seen = at[k - 1];
    }
  }
  const ota_link_stats_t *s = ota_link_stats(&l, OTA_LINK_DOWN);
  double lr = (double)s->lost / n;
  double dr = (double)s->dups / (n - (double)s->lost);
  double rr = (double)s->reordered / (n - (double)s->lost);
  cr_log_info("%s: loss %.4f (want %.4f), dup %.5f (%.5f), reorder %.5f "
              "(%.5f), %llu overtook an earlier-sent one",
              tc->spec, lr, pl, dr, pd, rr, pr, (unsigned long long)late);
  cr_assert_leq(fabs(lr - pl), tol(pl, n), "loss %.4f vs %.4f", lr, pl);
  cr_assert_leq(fabs(dr - pd), tol(pd, n), "dup %.5f vs %.5f", dr, pd);
  cr_assert_leq(fabs(rr - pr), tol(pr, n), "reorder %.5f vs %.5f", rr, pr);
  cr_assert_eq(s->delivered, (uint64_t)n - s->lost + s->dups);
  cr_assert_eq(s->datagrams, (uint64_t)n);
  if (pr == 0)
    cr_assert_eq(late, 0,
                 "reordering with reorder=0 (jitter must not reorder)");
  else
    cr_assert_gt(late, 0, "held-back datagrams never overtaken");
}

/* ---- serialisation ------------------------------------------------------ */

/* 300 KB in 512-byte datagrams offered at once over 2G: the last arrives after
 * all bits went through at the profile's down bandwidth, plus RTT/2. */
Test(link, serialisation_300k_over_2g, .init = load, .fini = unload) {
  ota_link_cfg_t cfg;
  parse_ok("2g,loss=0,jitter=0,dup=0,reorder=0", &cfg);
  const ota_link_profile_t *p = ota_catalog_link(&cat, "2g");
  cr_assert_not_null(p);
  cr_assert_eq(cfg.bps[OTA_LINK_DOWN], p->down_bps);
  ota_link_t l;
  ota_link_init(&l, &cfg, 1);
  const size_t total = 300 * 1024, chunk = 512, n = total / chunk;
  uint64_t at[2], prev = 0, last = 0;
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(ota_link_submit(&l, OTA_LINK_DOWN, 0, chunk, at), 1);
    cr_assert_geq(at[0], prev);
    prev = last = at[0];
  }
  double bits = (double)n * (double)(chunk + cfg.overhead) * 8;
  double want_ms = bits / p->down_bps * 1000 + p->rtt_ms / 2;
  cr_log_info(
      "300 KB over 2G (%.0f bit/s, %zu x %zu B + %u): last datagram "
      "at %.3f s, expected %.3f s; max queue %llu ms",
      p->down_bps, n, chunk, cfg.overhead, (double)last / 1000, want_ms / 1000,
      (unsigned long long)ota_link_stats(&l, OTA_LINK_DOWN)->max_queue_ms);
  cr_assert(fabs((double)last - want_ms) <= 1.0, "last at %llu ms, want %.1f",
            (unsigned long long)last, want_ms);

  /* Paced traffic does not queue: one datagram per second arrives after its
   * own serialisation plus RTT/2, in each direction at its own bandwidth. */
  for (int d = 0; d < 2; d++) {
    uint64_t t0 = 1000000 + (uint64_t)d * 100000;
    for (int i = 0; i < 10; i++) {
      uint64_t now = t0 + (uint64_t)i * 1000;
      cr_assert_eq(ota_link_submit(&l, (ota_link_dir_t)d, now, 100, at), 1);
      double w =
          now + (100.0 + cfg.overhead) * 8 / cfg.bps[d] * 1000 + cfg.rtt_ms / 2;
      cr_assert((double)at[0] >= w && (double)at[0] < w + 1, "dir %d: %llu %f",
                d, (unsigned long long)at[0], w);
    }
  }
}

Test(link, queue_limit_tail_drops, .init = load, .fini = unload) {
  ota_link_cfg_t cfg;
  parse_ok("custom:down=8k,up=8k,overhead=0,queue=1000", &cfg);
  ota_link_t l;
  ota_link_init(&l, &cfg, 1);
  uint64_t at[2];
  int got = 0;
  /* 100 B = 100 ms each at 8 kbit/s: the 12th waits 1100 ms and is dropped */
  for (int i = 0; i < 20; i++)
    got += ota_link_submit(&l, OTA_LINK_DOWN, 0, 100, at);
  cr_assert_eq(got, 11);
  cr_assert_eq(ota_link_stats(&l, OTA_LINK_DOWN)->queue_drops, 9);
}

/* ---- outages ------------------------------------------------------------ */

Test(link, outage_window_exact, .init = load, .fini = unload) {
  ota_link_cfg_t cfg;
  parse_ok("2g,loss=0,dup=0,reorder=0,outage=30000+5000", &cfg);
  ota_link_t l;
  ota_link_init(&l, &cfg, 9);
  uint64_t at[2], in_window = 0;
  for (uint64_t t = 0; t < 60000; t += 7) {
    in_window += t >= 30000 && t < 35000;
    for (int d = 0; d < 2; d++) {
      int want = !(t >= cfg.outage_start_ms && t < cfg.outage_end_ms);
      cr_assert_eq(ota_link_submit(&l, (ota_link_dir_t)d, t, 20, at), want,
                   "t=%llu dir %d", (unsigned long long)t, d);
    }
  }
  cr_assert_gt(in_window, 700);
  cr_assert_eq(ota_link_stats(&l, OTA_LINK_DOWN)->outage_drops, in_window);
  cr_assert_eq(ota_link_stats(&l, OTA_LINK_UP)->outage_drops, in_window);
}

Test(link, outage_after_bytes, .init = load, .fini = unload) {
  ota_link_cfg_t cfg;
  parse_ok("2g,loss=0,dup=0,reorder=0,outage-after=150000:20000", &cfg);
  cr_assert_eq(cfg.outage_after_bytes, 150000);
  ota_link_t l;
  ota_link_init(&l, &cfg, 9);
  uint64_t at[2], sent = 0, t_start = 0;
  int started = 0;
  for (uint64_t t = 0; t < 200000; t += 100) {
    int want = 1;
    if (started && t >= t_start && t < t_start + 20000)
      want = 0;
    int n = ota_link_submit(&l, OTA_LINK_DOWN, t, 512, at);
    cr_assert_eq(n, want, "down t=%llu", (unsigned long long)t);
    if (!started) {
      sent += 512;
      if (sent >= 150000)
        started = 1, t_start = t; /* this one went, the rest of t is out */
    }
    /* the up direction is out too, during the same window */
    int up = ota_link_submit(&l, OTA_LINK_UP, t, 40, at);
    int want_up = !(started && t >= t_start && t < t_start + 20000);
    cr_assert_eq(up, want_up, "up t=%llu", (unsigned long long)t);
  }
  cr_assert(started);
  cr_assert_eq(ota_link_stats(&l, OTA_LINK_DOWN)->outage_drops, 199);
  cr_assert_eq(ota_link_stats(&l, OTA_LINK_UP)->outage_drops, 200);
  cr_log_info("outage-after: started at %llu ms after %llu B down",
              (unsigned long long)t_start, (unsigned long long)sent);
}

/* ---- parsing ------------------------------------------------------------ */

Test(link, parse_profiles_from_catalogue, .init = load, .fini = unload) {
  for (size_t i = 0; i < cat.nlinks; i++) {
    const ota_link_profile_t *p = &cat.links[i];
    ota_link_cfg_t cfg;
    parse_ok(p->name, &cfg);
    cr_assert_str_eq(cfg.name, p->name);
    cr_assert_eq(cfg.bps[OTA_LINK_DOWN], p->down_bps);
    cr_assert_eq(cfg.bps[OTA_LINK_UP], p->up_bps);
    cr_assert_eq(cfg.rtt_ms, p->rtt_ms);
    cr_assert_eq(cfg.loss, p->loss);
    cr_assert_gt(cfg.jitter_ms, 0, "%s has no jitter default", p->name);
    cr_assert_gt(cfg.dup, 0);
    cr_assert_gt(cfg.reorder, 0);
  }
  char line[256];
  ota_link_cfg_t cfg;
  parse_ok("2g,outage=30000+5000,outage-after=150k:20000", &cfg);
  ota_link_cfg_format(&cfg, line, sizeof line);
  cr_assert(strstr(line, "outage=30000+5000"), "%s", line);
  cr_assert(strstr(line, "outage-after=150000:20000"), "%s", line);
}

Test(link, parse_custom) {
  ota_link_cfg_t cfg;
  char err[200] = "x";
  int rc = ota_link_parse("custom:down=40k,up=20k,rtt=600,loss=0.02,jitter=50,"
                          "dup=0.001,reorder=0.01",
                          NULL, &cfg, err, sizeof err);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_str_eq(err, "");
  cr_assert_str_eq(cfg.name, "custom");
  cr_assert_eq(cfg.bps[OTA_LINK_DOWN], 40e3);
  cr_assert_eq(cfg.bps[OTA_LINK_UP], 20e3);
  cr_assert_eq(cfg.rtt_ms, 600);
  cr_assert_eq(cfg.loss, 0.02);
  cr_assert_eq(cfg.jitter_ms, 50);
  cr_assert_eq(cfg.dup, 0.001);
  cr_assert_eq(cfg.reorder, 0.01);
  cr_assert_eq(
      ota_link_parse("custom:down=2M,up=1.5M", NULL, &cfg, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(cfg.bps[OTA_LINK_DOWN], 2e6);
  cr_assert_eq(cfg.bps[OTA_LINK_UP], 1.5e6);
}

typedef struct {
  char spec[40];
  int rc;
  char msg[40]; /* substring of the error message */
} bad_case_t;

ParameterizedTestParameters(link, parse_rejects) {
  static bad_case_t cases[] = {
      {"", OTA_EPARSE, "empty"},
      {"5g", OTA_ENOENT, "unknown link profile '5g'"},
      {"custom", OTA_EPARSE, "needs options"},
      {"custom:down=40k", OTA_EPARSE, "down= and up="},
      {"custom:down=40k,up=0", OTA_EPARSE, "down= and up="},
      {"2g,loss=1.5", OTA_EPARSE, "probability"},
      {"2g,loss=-0.1", OTA_EPARSE, "probability"},
      {"2g,dup=abc", OTA_EPARSE, "probability"},
      {"2g,rtt=fast", OTA_EPARSE, "'rtt=fast'"},
      {"2g,down=40x", OTA_EPARSE, "'down=40x'"},
      {"2g,colour=blue", OTA_EPARSE, "unknown key"},
      {"2g,loss", OTA_EPARSE, "KEY=VALUE"},
      {"2g,,loss=0", OTA_EPARSE, "empty option"},
      {"2g,outage=30000", OTA_EPARSE, "START_MS+DURATION_MS"},
      {"2g,outage=30000+0", OTA_EPARSE, "START_MS+DURATION_MS"},
      {"2g,outage=a+5", OTA_EPARSE, "START_MS+DURATION_MS"},
      {"2g,outage-after=150000", OTA_EPARSE, "BYTES:DURATION_MS"},
      {"2g,outage-after=150000:x", OTA_EPARSE, "BYTES:DURATION_MS"},
      {"down=40k", OTA_EPARSE, "profile name or custom:"},
  };
  return cr_make_param_array(bad_case_t, cases,
                             sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(bad_case_t *tc, link, parse_rejects, .init = load,
                  .fini = unload) {
  ota_link_cfg_t cfg;
  char err[200] = "";
  int rc = ota_link_parse(tc->spec, &cat, &cfg, err, sizeof err);
  cr_assert_eq(rc, tc->rc, "'%s': rc %d (%s), want %d", tc->spec, rc, err,
               tc->rc);
  cr_assert(strstr(err, tc->msg), "'%s': message '%s' lacks '%s'", tc->spec,
            err, tc->msg);
}

Test(link, profile_needs_catalogue) {
  ota_link_cfg_t cfg;
  char err[200] = "";
  cr_assert_eq(ota_link_parse("2g", NULL, &cfg, err, sizeof err), OTA_ENOENT);
  cr_assert(strstr(err, "no catalogue"), "%s", err);
}
