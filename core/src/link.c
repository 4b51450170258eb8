/* Cellular link model: serialisation, delay, jitter, loss, duplication,
 * reordering, outages (figures: catalogue link profiles; defaults here). */
#include "otalab/link.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/err.h"

/* Impairments the catalogue does not carry, per profile name. Assumed, see
 * docs/PROTOCOL.md "Link model": GPRS jitter is large (radio block scheduling,
 * RLC retransmissions), LTE's small; duplication and reordering are rare on
 * all of them. */
static const struct {
  const char *name;
  double jitter_ms, dup, reorder, reorder_ms;
} k_defaults[] = {
    {"2g", 100, 0.001, 0.005, 300},
    {"3g", 30, 0.0005, 0.002, 100},
    {"lte-m", 40, 0.0005, 0.002, 100},
    {"lte", 10, 0.0002, 0.001, 30},
};

void ota_link_cfg_init(ota_link_cfg_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  snprintf(cfg->name, sizeof(cfg->name), "ideal");
  cfg->overhead = 28;
}

void ota_link_cfg_from_profile(ota_link_cfg_t *cfg,
                               const ota_link_profile_t *prof) {
  ota_link_cfg_init(cfg);
  snprintf(cfg->name, sizeof(cfg->name), "%s", prof->name);
  cfg->bps[OTA_LINK_DOWN] = prof->down_bps;
  cfg->bps[OTA_LINK_UP] = prof->up_bps;
  cfg->rtt_ms = prof->rtt_ms;
  cfg->loss = prof->loss;
  cfg->jitter_ms = prof->rtt_ms / 10; /* unknown profile: a mild default */
  for (size_t i = 0; i < sizeof(k_defaults) / sizeof(k_defaults[0]); i++) {
    if (strcmp(prof->name, k_defaults[i].name) == 0) {
      cfg->jitter_ms = k_defaults[i].jitter_ms;
      cfg->dup = k_defaults[i].dup;
      cfg->reorder = k_defaults[i].reorder;
      cfg->reorder_ms = k_defaults[i].reorder_ms;
    }
  }
}

/* ---- parsing ------------------------------------------------------------ */

/* A non-negative number, optionally followed by k (1e3) or M (1e6) when
 * `suffix` is set, and nothing else. */
static int num(const char *s, int suffix, double *out) {
  char *end;
  if (!*s || *s == '-' || *s == '+')
    return -1;
  double v = strtod(s, &end);
  if (end == s || !isfinite(v))
    return -1;
  if (suffix && *end == 'k')
    v *= 1e3, end++;
  else if (suffix && *end == 'M')
    v *= 1e6, end++;
  if (*end)
    return -1;
  *out = v;
  return 0;
}

/* "A<sep>B" into two numbers. */
static int pair(char *s, char sep, int suffix_a, double *a, double *b) {
  char *p = strchr(s, sep);
  if (!p)
    return -1;
  *p = 0;
  int rc = num(s, suffix_a, a) || num(p + 1, 0, b) ? -1 : 0;
  *p = sep;
  return rc;
}

static int set_key(ota_link_cfg_t *cfg, char *kv, char *err, size_t errlen) {
  char *eq = strchr(kv, '=');
  if (!eq || eq == kv)
    return ota_errf(err, errlen, OTA_EPARSE, "link option '%s': want KEY=VALUE",
                    kv);
  *eq = 0;
  const char *key = kv, *val = eq + 1;
  double v = 0, w = 0;
  int bad = 0;
  if (!strcmp(key, "down") || !strcmp(key, "up")) {
    bad = num(val, 1, &v);
    cfg->bps[key[0] == 'd' ? OTA_LINK_DOWN : OTA_LINK_UP] = v;
  } else if (!strcmp(key, "rtt") || !strcmp(key, "jitter") ||
             !strcmp(key, "reorder-ms") || !strcmp(key, "queue") ||
             !strcmp(key, "overhead")) {
    bad = num(val, 0, &v);
    if (!bad && !strcmp(key, "rtt"))
      cfg->rtt_ms = v;
    else if (!bad && !strcmp(key, "jitter"))
      cfg->jitter_ms = v;
    else if (!bad && !strcmp(key, "reorder-ms"))
      cfg->reorder_ms = v;
    else if (!bad && !strcmp(key, "queue"))
      bad = v > 1e9, cfg->queue_ms = (uint32_t)v;
    else if (!bad)
      bad = v > 65535, cfg->overhead = (uint32_t)v;
  } else if (!strcmp(key, "loss") || !strcmp(key, "dup") ||
             !strcmp(key, "reorder")) {
    bad = num(val, 0, &v) || v > 1;
    if (!bad)
      *(key[0] == 'l'   ? &cfg->loss
        : key[0] == 'd' ? &cfg->dup
                        : &cfg->reorder) = v;
    if (bad) {
      *eq = '=';
      return ota_errf(err, errlen, OTA_EPARSE,
                      "link option '%s': want a probability 0..1", kv);
    }
  } else if (!strcmp(key, "outage")) {
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s", val);
    bad = pair(tmp, '+', 0, &v, &w) || w < 1;
    if (bad) {
      *eq = '=';
      return ota_errf(err, errlen, OTA_EPARSE,
                      "link option '%s': want outage=START_MS+DURATION_MS", kv);
    }
    cfg->outage_start_ms = (uint64_t)v;
    cfg->outage_end_ms = (uint64_t)v + (uint64_t)w;
  } else if (!strcmp(key, "outage-after")) {
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%s", val);
    bad = pair(tmp, ':', 1, &v, &w) || v < 1 || w < 1;
    if (bad) {
      *eq = '=';
      return ota_errf(err, errlen, OTA_EPARSE,
                      "link option '%s': want outage-after=BYTES:DURATION_MS",
                      kv);
    }
    cfg->outage_after_bytes = (uint64_t)v;
    cfg->outage_after_ms = (uint64_t)w;
  } else {
    *eq = '=';
    return ota_errf(
        err, errlen, OTA_EPARSE,
        "link option '%s': unknown key (down up rtt jitter loss dup "
        "reorder reorder-ms queue overhead outage outage-after)",
        kv);
  }
  if (bad) {
    *eq = '=';
    return ota_errf(err, errlen, OTA_EPARSE,
                    "link option '%s': want a non-negative number", kv);
  }
  return 0;
}

int ota_link_parse(const char *spec, const ota_catalog_t *cat,
                   ota_link_cfg_t *cfg, char *err, size_t errlen) {
  char buf[256];
  if (err && errlen)
    err[0] = 0;
  ota_link_cfg_init(cfg);
  if (!spec || !*spec)
    return ota_errf(err, errlen, OTA_EPARSE, "empty link spec");
  if (strlen(spec) >= sizeof(buf))
    return ota_errf(err, errlen, OTA_EPARSE, "link spec longer than %zu bytes",
                    sizeof(buf) - 1);
  memcpy(buf, spec, strlen(spec) + 1);

  char *rest = strchr(buf, ',');
  if (rest)
    *rest++ = 0;
  char *head = buf;
  int custom = 0;
  if (!strncmp(head, "custom:", 7)) {
    custom = 1;
    snprintf(cfg->name, sizeof(cfg->name), "custom");
    /* the first option follows the colon */
    int rc = set_key(cfg, head + 7, err, errlen);
    if (rc)
      return rc;
  } else if (!strcmp(head, "custom")) {
    return ota_errf(
        err, errlen, OTA_EPARSE,
        "link spec 'custom' needs options: custom:down=40k,up=20k,...");
  } else if (!strcmp(head, "ideal")) {
    /* cfg_init is the ideal link */
  } else if (!*head || strchr(head, '=')) {
    return ota_errf(
        err, errlen, OTA_EPARSE,
        "link spec '%s': start with a profile name or custom:", spec);
  } else {
    const ota_link_profile_t *p = cat ? ota_catalog_link(cat, head) : NULL;
    if (!p) {
      char names[128] = "";
      for (size_t i = 0; cat && i < cat->nlinks; i++) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof(names) - l, "%s%s", i ? " " : "",
                 cat->links[i].name);
      }
      return ota_errf(err, errlen, OTA_ENOENT,
                      "unknown link profile '%s' (known: %s custom: ideal)",
                      head, cat ? names : "no catalogue loaded;");
    }
    ota_link_cfg_from_profile(cfg, p);
  }
  while (rest) {
    char *kv = rest;
    rest = strchr(rest, ',');
    if (rest)
      *rest++ = 0;
    if (!*kv)
      return ota_errf(err, errlen, OTA_EPARSE, "link spec '%s': empty option",
                      spec);
    int rc = set_key(cfg, kv, err, errlen);
    if (rc)
      return rc;
  }
  if (custom && (cfg->bps[0] <= 0 || cfg->bps[1] <= 0))
    return ota_errf(err, errlen, OTA_EPARSE,
                    "custom link needs down= and up= (bits/s, > 0)");
  return 0;
}

void ota_link_cfg_format(const ota_link_cfg_t *c, char *out, size_t cap) {
  int n = snprintf(out, cap,
                   "%s down=%.0f up=%.0f rtt=%.0f jitter=%.0f loss=%g dup=%g "
                   "reorder=%g reorder-ms=%.0f overhead=%u",
                   c->name, c->bps[0], c->bps[1], c->rtt_ms, c->jitter_ms,
                   c->loss, c->dup, c->reorder, c->reorder_ms, c->overhead);
  if (n < 0 || (size_t)n >= cap)
    return;
  if (c->queue_ms)
    n += snprintf(out + n, cap - (size_t)n, " queue=%u", c->queue_ms);
  if (n >= 0 && (size_t)n < cap && c->outage_end_ms > c->outage_start_ms)
    n += snprintf(out + n, cap - (size_t)n, " outage=%llu+%llu",
                  (unsigned long long)c->outage_start_ms,
                  (unsigned long long)(c->outage_end_ms - c->outage_start_ms));
  if (n >= 0 && (size_t)n < cap && c->outage_after_bytes)
    snprintf(out + n, cap - (size_t)n, " outage-after=%llu:%llu",
             (unsigned long long)c->outage_after_bytes,
             (unsigned long long)c->outage_after_ms);
}

/* ---- the model ---------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* xorshift64*: uniform double in [0, 1) from the top 53 bits. */
static double uniform(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

void ota_link_init(ota_link_t *link, const ota_link_cfg_t *cfg, uint64_t seed) {
  memset(link, 0, sizeof(*link));
  link->cfg = *cfg;
  uint64_t s = seed;
  for (int d = 0; d < OTA_LINK_NDIR; d++) {
    link->rng[d] = splitmix64(&s);
    if (!link->rng[d])
      link->rng[d] = 0x9E3779B97F4A7C15ull; /* xorshift's one bad state */
  }
}

int ota_link_in_outage(const ota_link_t *link, uint64_t now_ms) {
  const ota_link_cfg_t *c = &link->cfg;
  if (now_ms >= c->outage_start_ms && now_ms < c->outage_end_ms)
    return 1;
  return link->trig_active && now_ms >= link->trig_start_ms &&
         now_ms - link->trig_start_ms < c->outage_after_ms;
}

static uint64_t us_to_ms_ceil(uint64_t us) {
  return (us + 999) / 1000;
}

int ota_link_submit(ota_link_t *link, ota_link_dir_t dir, uint64_t now_ms,
                    size_t size_bytes, uint64_t deliver_at_ms[2]) {
  const ota_link_cfg_t *c = &link->cfg;
  ota_link_stats_t *st = &link->stats[dir];
  uint64_t *rng = &link->rng[dir];
  /* Fixed draws per datagram: the n-th datagram's fate depends on the seed
   * and n only, not on which branch earlier datagrams took. */
  double u_loss = uniform(rng), u_reorder = uniform(rng), u_dup = uniform(rng);
  double u_jit = uniform(rng), u_jit2 = uniform(rng);

  st->datagrams++;
  st->bytes += size_bytes;
  if (ota_link_in_outage(link, now_ms)) {
    st->outage_drops++;
    return 0;
  }
  if (dir == OTA_LINK_DOWN && c->outage_after_bytes && !link->trig_active &&
      st->bytes >= c->outage_after_bytes) {
    link->trig_active = 1;
    link->trig_start_ms = now_ms; /* past the check: this one still goes */
  }

  uint64_t now_us = now_ms * 1000;
  uint64_t start_us =
      link->busy_until_us[dir] > now_us ? link->busy_until_us[dir] : now_us;
  uint64_t wait_ms = (start_us - now_us) / 1000;
  if (c->queue_ms && wait_ms > c->queue_ms) {
    st->queue_drops++;
    return 0;
  }
  if (wait_ms > st->max_queue_ms)
    st->max_queue_ms = wait_ms;
  uint64_t tx_us = 0;
  if (c->bps[dir] > 0)
    tx_us = (uint64_t)llround((double)(size_bytes + c->overhead) * 8e6 /
                              c->bps[dir]);
  uint64_t end_us = start_us + tx_us;
  link->busy_until_us[dir] = end_us;

  if (u_loss < c->loss) {
    st->lost++;
    return 0;
  }
  uint64_t at_us = end_us + (uint64_t)llround(c->rtt_ms * 500.0 +
                                              u_jit * c->jitter_ms * 1000.0);
  uint64_t at = us_to_ms_ceil(at_us);
  if (u_reorder < c->reorder) {
    st->reordered++;
    at += (uint64_t)llround(c->reorder_ms);
  } else {
    if (at < link->last_inorder_ms[dir])
      at = link->last_inorder_ms[dir];
    link->last_inorder_ms[dir] = at;
  }
  deliver_at_ms[0] = at;
  int n = 1;
  if (u_dup < c->dup) {
    st->dups++;
    deliver_at_ms[1] = at + 1 + (uint64_t)llround(u_jit2 * c->jitter_ms);
    n = 2;
  }
  st->delivered += (uint64_t)n;
  st->bytes_delivered += (uint64_t)n * size_bytes;
  return n;
}

const ota_link_stats_t *ota_link_stats(const ota_link_t *link,
                                       ota_link_dir_t dir) {
  return &link->stats[dir];
}

void ota_link_stats_format(const ota_link_t *link, char *out, size_t cap) {
  static const char *names[2] = {"down", "up"};
  size_t n = 0;
  if (cap)
    out[0] = 0;
  for (int d = 0; d < OTA_LINK_NDIR && n < cap; d++) {
    const ota_link_stats_t *s = &link->stats[d];
    int w = snprintf(
        out + n, cap - n,
        "%s%s: %llu dgrams %llu B, %llu delivered, %llu lost, %llu outage, "
        "%llu queue-drop, %llu dup, %llu reordered, max queue %llu ms",
        d ? "\n" : "", names[d], (unsigned long long)s->datagrams,
        (unsigned long long)s->bytes, (unsigned long long)s->delivered,
        (unsigned long long)s->lost, (unsigned long long)s->outage_drops,
        (unsigned long long)s->queue_drops, (unsigned long long)s->dups,
        (unsigned long long)s->reordered, (unsigned long long)s->max_queue_ms);
    if (w < 0)
      return;
    n += (size_t)w;
  }
}
