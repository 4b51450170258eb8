/* Virtual-time simulation of one cloud and N Electrons (Issue "Fleets" item
 * 5): discrete events, link model per device, DTLS sizes from measurements. */
#include "otalab/vnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/err.h"
#include "otalab/imgstore.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "otalab/msg.h"
#include "otalab/planner.h"

enum {
  EV_POWER,
  EV_BOOT,
  EV_CONNECT,
  EV_HS,
  EV_HS_TIMER,
  EV_DGRAM,
  EV_DTIMER,
  EV_CTIMER
};
static const char *ev_names[] = {"power",    "boot",  "connect", "hs",
                                 "hs-timer", "dgram", "dtimer",  "ctimer"};

typedef struct {
  uint64_t t, seq;
  uint32_t dev, epoch, len;
  uint8_t kind, dir, step, arg;
  uint8_t *b; /* EV_DGRAM: owned copy */
} ev_t;

enum { CONN_DOWN, CONN_HS, CONN_UP };

#define HS_T0_MS 3000u
#define HS_GIVE_UP_MS 45000u
#define HS_RETRY_MS 5000u

typedef struct {
  ota_device_t dev;
  ota_dsess_t ds;
  ota_csess_t cs;
  ota_coap_chan_t cch; /* the cloud's CoAP endpoint (libcoap's role) */
  ota_link_t link;
  ota_vsim_stats_t st;
  uint64_t start;
  int conn;
  bool cloud_up, resumable, dead;
  uint32_t epoch, cepoch; /* device's connection; the cloud's session */
  int hs_full, hs_step, hs_timer_step;
  uint32_t hs_T;
  uint64_t hs_deadline, hs_t0;
  uint64_t dt_at, ct_at;
  int reboot_reason;
  uint16_t ping_mid;
  bool ping_out;
  uint8_t *owned[OTA_CSESS_QUEUE * 2]; /* user-flashed module copies */
  size_t nowned;
  bool off;         /* powered off (ota_vsim_power) */
  uint64_t rejects; /* device OTA rejections reported */
  ota_vfault_t faults[OTA_VSIM_MAX_FAULTS];
  bool fired[OTA_VSIM_MAX_FAULTS];
  int nfaults;
} vdev_t;

typedef struct {
  uint8_t func, index;
  uint16_t version;
  uint8_t *buf;
  size_t len;
} vmod_t;

struct ota_vsim {
  ota_vsim_cfg_t cfg;
  const ota_catalog_t *cat;
  ota_plan_model_t model;
  ota_imgstore_t images;
  vdev_t **d;
  size_t n, cap;
  ev_t *heap;
  size_t hn, hcap;
  uint64_t now, seq, events, hash;
  size_t ndone, ndead;
  vmod_t *mods;
  size_t nmods;
  ota_dsess_scratch_t dscratch;
  ota_outbox_t cs1, cs2, out, cob, cin;
  char *log;
  size_t loglen, logcap;
  ota_vsim_event_fn on_ev;
  ota_vsim_job_fn on_job;
  void *ud;
  ota_vsim_drop_fn drop;
  void *drop_ud;
  uint8_t **rel; /* released product apps (copies, kept to the end) */
  size_t nrel;
};

void ota_vsim_cfg_default(ota_vsim_cfg_t *cfg) {
  ota_plan_model_t m;
  ota_plan_model_default(&m);
  memset(cfg, 0, sizeof *cfg);
  cfg->seed = 1;
  cfg->reboot_ms = m.reboot_ms;
  cfg->max_ms = 6ull * 3600 * 1000;
}

static uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/* ---- event log ------------------------------------------------------------
 */

static void logf_(ota_vsim_t *vs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void logf_(ota_vsim_t *vs, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line)
    n = sizeof line - 1;
  for (int i = 0; i < n; i++) {
    vs->hash ^= (uint8_t)line[i];
    vs->hash *= 0x100000001B3ull;
  }
  if (!vs->cfg.keep_log)
    return;
  if (vs->loglen + (size_t)n + 2 > vs->logcap) {
    size_t c = vs->logcap ? vs->logcap * 2 : 65536;
    while (c < vs->loglen + (size_t)n + 2)
      c *= 2;
    char *p = realloc(vs->log, c);
    if (!p)
      return;
    vs->log = p, vs->logcap = c;
  }
  memcpy(vs->log + vs->loglen, line, (size_t)n);
  vs->loglen += (size_t)n;
  vs->log[vs->loglen++] = '\n';
  vs->log[vs->loglen] = 0;
}

static void hash_u64(ota_vsim_t *vs, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    vs->hash ^= (uint8_t)(v >> (8 * i));
    vs->hash *= 0x100000001B3ull;
  }
}

/* ---- heap ---------------------------------------------------------------- */

static bool ev_less(const ev_t *a, const ev_t *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(ota_vsim_t *vs, ev_t e) {
  if (vs->hn == vs->hcap) {
    size_t c = vs->hcap ? vs->hcap * 2 : 1024;
    ev_t *h = realloc(vs->heap, c * sizeof *h);
    if (!h) {
      free(e.b);
      return;
    }
    vs->heap = h, vs->hcap = c;
  }
  e.seq = vs->seq++;
  size_t i = vs->hn++;
  while (i && ev_less(&e, &vs->heap[(i - 1) / 2])) {
    vs->heap[i] = vs->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  vs->heap[i] = e;
}

static ev_t pop(ota_vsim_t *vs) {
  ev_t top = vs->heap[0], last = vs->heap[--vs->hn];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= vs->hn)
      break;
    if (c + 1 < vs->hn && ev_less(&vs->heap[c + 1], &vs->heap[c]))
      c++;
    if (!ev_less(&vs->heap[c], &last))
      break;
    vs->heap[i] = vs->heap[c];
    i = c;
  }
  if (vs->hn)
    vs->heap[i] = last;
  return top;
}

static void at(ota_vsim_t *vs, uint64_t t, uint32_t dev, int kind) {
  ev_t e = {
      .t = t, .dev = dev, .kind = (uint8_t)kind, .epoch = vs->d[dev]->epoch};
  push(vs, e);
}

/* ---- modules ------------------------------------------------------------- */

int ota_vsim_module(ota_vsim_t *vs, uint8_t func, uint8_t index,
                    uint16_t version, const uint8_t **mod, size_t *len) {
  for (size_t i = 0; i < vs->nmods; i++)
    if (vs->mods[i].func == func && vs->mods[i].index == index &&
        vs->mods[i].version == version) {
      *mod = vs->mods[i].buf, *len = vs->mods[i].len;
      return 0;
    }
  const ota_cat_release_t *rel =
      ota_catalog_find_module(vs->cat, func, index, version);
  const ota_cat_module_t *cm =
      rel ? ota_release_module(rel, func, index) : NULL;
  if (!cm)
    return OTA_ENOENT;
  uint8_t *buf = NULL;
  size_t n = 0;
  int rc = ota_device_build_module(NULL, cm, &buf, &n);
  if (rc)
    return rc;
  vmod_t *m = realloc(vs->mods, (vs->nmods + 1) * sizeof *m);
  if (!m) {
    free(buf);
    return OTA_ENOMEM;
  }
  vs->mods = m;
  vs->mods[vs->nmods++] = (vmod_t){func, index, version, buf, n};
  *mod = buf, *len = n;
  return 0;
}

static int prov_load(void *ud, const ota_cat_module_t *m, uint8_t **buf,
                     size_t *len) {
  const uint8_t *p;
  size_t n;
  int rc = ota_vsim_module(ud, m->id.func, m->id.index, m->id.version, &p, &n);
  if (rc)
    return rc;
  if (!(*buf = malloc(n)))
    return OTA_ENOMEM;
  memcpy(*buf, p, n);
  *len = n;
  return 0;
}

static int heal_load(void *ud, const ota_heal_effect_t *e, const uint8_t **mod,
                     size_t *len) {
  return ota_vsim_module(ud, e->module.func, e->module.index, e->module.version,
                         mod, len);
}

/* ---- lifecycle ----------------------------------------------------------- */

ota_vsim_t *ota_vsim_new(const ota_catalog_t *cat, const ota_vsim_cfg_t *cfg) {
  ota_vsim_t *vs = calloc(1, sizeof *vs);
  if (!vs)
    return NULL;
  if (cfg)
    vs->cfg = *cfg;
  else
    ota_vsim_cfg_default(&vs->cfg);
  vs->cat = cat;
  ota_plan_model_default(&vs->model);
  ota_imgstore_init(&vs->images);
  vs->hash = 0xcbf29ce484222325ull;
  return vs;
}

void ota_vsim_set_hooks(ota_vsim_t *vs, ota_vsim_event_fn ev,
                        ota_vsim_job_fn job, void *ud) {
  vs->on_ev = ev, vs->on_job = job, vs->ud = ud;
}

void ota_vsim_set_drop(ota_vsim_t *vs, ota_vsim_drop_fn fn, void *ud) {
  vs->drop = fn, vs->drop_ud = ud;
}

void ota_vsim_destroy(ota_vsim_t *vs) {
  if (!vs)
    return;
  for (size_t i = 0; i < vs->nrel; i++)
    free(vs->rel[i]);
  free(vs->rel);
  for (size_t i = 0; i < vs->n; i++) {
    vdev_t *d = vs->d[i];
    ota_dsess_free(&d->ds);
    ota_csess_free(&d->cs);
    ota_coap_chan_free(&d->cch);
    ota_device_free(&d->dev);
    for (size_t k = 0; k < d->nowned; k++)
      free(d->owned[k]);
    free(d);
  }
  for (size_t i = 0; i < vs->hn; i++)
    free(vs->heap[i].b);
  for (size_t i = 0; i < vs->nmods; i++)
    free(vs->mods[i].buf);
  free(vs->mods);
  free(vs->heap);
  free(vs->d);
  free(vs->log);
  ota_imgstore_free(&vs->images);
  free(vs);
}

int ota_vsim_add(ota_vsim_t *vs, const ota_vsim_dev_spec_t *sp) {
  if (vs->n == vs->cap) {
    size_t c = vs->cap ? vs->cap * 2 : 16;
    vdev_t **p = realloc(vs->d, c * sizeof *p);
    if (!p)
      return OTA_ENOMEM;
    vs->d = p, vs->cap = c;
  }
  vdev_t *d = calloc(1, sizeof *d);
  if (!d)
    return OTA_ENOMEM;
  size_t idx = vs->n;
  uint64_t seed = mix(vs->cfg.seed * 0x100000001ull + idx);
  uint8_t id[12];
  for (int i = 0; i < 12; i++)
    id[i] = (uint8_t)(mix(seed + (uint64_t)i) >> 24);
  if (sp->has_id)
    memcpy(id, sp->id, 12);
  ota_device_init(&d->dev, vs->cat, id);
  d->dev.images = &vs->images;
  int rc = ota_device_provision(&d->dev, sp->release, prov_load, vs, sp->app,
                                sp->app_len);
  if (rc) {
    ota_device_free(&d->dev);
    free(d);
    return rc;
  }
  ota_dsess_cfg_t dc;
  ota_dsess_cfg_default(&dc);
  dc.first_mid = (uint16_t)(seed | 1);
  dc.seed = seed;
  snprintf(dc.name, sizeof dc.name, "%s", sp->name);
  ota_dsess_init(&d->ds, &dc, &d->dev, &vs->dscratch);
  ota_csess_cfg_t cc;
  ota_csess_cfg_default(&cc);
  cc.cat = vs->cat;
  memcpy(cc.id, id, 12);
  cc.check_id = true;
  cc.product_id = sp->product_id;
  cc.development = sp->development;
  cc.load = heal_load;
  cc.load_ud = vs;
  cc.product_app = sp->product_app;
  cc.product_app_len = sp->product_app_len;
  cc.product_app_version = sp->product_app_version;
  snprintf(cc.name, sizeof cc.name, "%s", sp->name);
  ota_csess_init(&d->cs, &cc, &vs->cs1, &vs->cs2);
  ota_coap_chan_cfg_t ch;
  ota_coap_chan_cfg_default(&ch);
  ch.seed = mix(seed ^ 0xC10D);
  ch.first_mid = (uint16_t)(mix(seed ^ 0x31D) | 1);
  ota_coap_chan_init(&d->cch, &ch);
  ota_link_init(&d->link, &sp->link, mix(seed ^ 0x11A4));
  d->start = sp->start_ms;
  d->st.t_done = UINT64_MAX;
  d->dt_at = d->ct_at = d->hs_deadline = UINT64_MAX;
  vs->d[vs->n++] = d;
  at(vs, sp->start_ms, (uint32_t)idx, EV_POWER);
  return (int)idx;
}

/* ---- transport ------------------------------------------------------------
 */

static void send_dgram(ota_vsim_t *vs, uint32_t i, int dir, const uint8_t *b,
                       size_t len, int cat, uint32_t payload) {
  vdev_t *d = vs->d[i];
  uint64_t *acc = dir == OTA_LINK_UP ? d->st.up : d->st.down;
  size_t wire = len + vs->model.dtls_record;
  if (cat == OTA_VB_RETRANS) {
    acc[OTA_VB_RETRANS] += wire;
  } else {
    acc[OTA_VB_PAYLOAD] += payload;
    acc[OTA_VB_COAP] += len - payload;
    acc[OTA_VB_DTLS] += vs->model.dtls_record;
  }
  if (dir == OTA_LINK_UP)
    d->st.dgrams_up++;
  else
    d->st.dgrams_down++;
  uint64_t when[2];
  int n =
      vs->drop && vs->drop(vs->drop_ud, i, dir, b, len, vs->now)
          ? 0
          : ota_link_submit(&d->link, (ota_link_dir_t)dir, vs->now, wire, when);
  if (!n) {
    if (dir == OTA_LINK_UP)
      d->st.lost_up++;
    else
      d->st.lost_down++;
  }
  for (int k = 0; k < n; k++) {
    ev_t e = {.t = when[k],
              .dev = i,
              .kind = EV_DGRAM,
              .dir = (uint8_t)dir,
              .epoch = dir == OTA_LINK_UP ? d->epoch : d->cepoch,
              .len = (uint32_t)len};
    if (!(e.b = malloc(len ? len : 1)))
      return;
    memcpy(e.b, b, len);
    push(vs, e);
  }
}

static int hs_steps(const vdev_t *d) {
  return d->hs_full ? 6 : 5;
}

static void send_hs(ota_vsim_t *vs, uint32_t i, int step) {
  vdev_t *d = vs->d[i];
  int dir = step % 2 == 0 ? OTA_LINK_UP : OTA_LINK_DOWN;
  uint32_t total, count;
  if (d->hs_full) {
    total = dir == OTA_LINK_UP ? vs->model.hs_full_up : vs->model.hs_full_down;
    count = 3;
  } else {
    total =
        dir == OTA_LINK_UP ? vs->model.hs_resume_up : vs->model.hs_resume_down;
    count = dir == OTA_LINK_UP ? 3 : 2;
  }
  uint32_t k = (uint32_t)step / 2;
  uint32_t size = total / count + (k == count - 1 ? total % count : 0);
  (dir == OTA_LINK_UP ? d->st.up : d->st.down)[OTA_VB_HANDSHAKE] += size;
  if (dir == OTA_LINK_UP)
    d->st.dgrams_up++;
  else
    d->st.dgrams_down++;
  uint64_t when[2];
  int n = ota_link_submit(&d->link, (ota_link_dir_t)dir, vs->now, size, when);
  for (int c = 0; c < n; c++) {
    ev_t e = {.t = when[c],
              .dev = i,
              .kind = EV_HS,
              .dir = (uint8_t)dir,
              .step = (uint8_t)step,
              .epoch = d->epoch};
    push(vs, e);
  }
  if (dir == OTA_LINK_UP && step < hs_steps(d) - 1) {
    d->hs_timer_step = step;
    d->hs_deadline = vs->now + d->hs_T;
    at(vs, d->hs_deadline, i, EV_HS_TIMER);
  }
}

static void dev_effects(ota_vsim_t *vs, uint32_t i);
static void cloud_effects(ota_vsim_t *vs, uint32_t i);
static void schedule(ota_vsim_t *vs, uint32_t i);

static void connect(ota_vsim_t *vs, uint32_t i) {
  vdev_t *d = vs->d[i];
  d->epoch++;
  d->conn = CONN_HS;
  d->hs_full = !d->resumable;
  d->hs_step = -1;
  d->hs_T = HS_T0_MS;
  d->hs_t0 = vs->now;
  logf_(vs, "%llu %u connect %s", (unsigned long long)vs->now, i,
        d->hs_full ? "full" : "resumed");
  send_hs(vs, i, 0);
}

static void cloud_session_reset(ota_vsim_t *vs, vdev_t *d) {
  (void)vs;
  d->cepoch = d->epoch;
  uint16_t mid = ota_coap_chan_peek_mid(&d->cch);
  ota_coap_chan_cfg_t c = d->cch.cfg;
  ota_coap_chan_free(&d->cch);
  c.first_mid = mid;
  ota_coap_chan_init(&d->cch, &c);
  d->ping_out = false;
}

static void link_up(ota_vsim_t *vs, uint32_t i) {
  vdev_t *d = vs->d[i];
  d->conn = CONN_UP;
  d->resumable = true;
  if (d->hs_full)
    d->st.full_hs++;
  else
    d->st.resumed_hs++;
  ota_dsess_on_up(&d->ds, vs->now, &vs->out);
  dev_effects(vs, i);
}

static void hs_arrive(ota_vsim_t *vs, const ev_t *e) {
  vdev_t *d = vs->d[e->dev];
  int last = hs_steps(d) - 1, j = e->step;
  if (e->dir == OTA_LINK_DOWN) { /* at the device */
    if (d->conn == CONN_UP && !d->hs_full && j == last - 1) {
      send_hs(vs, e->dev, last); /* the server lost our Finished */
      return;
    }
    if (d->conn != CONN_HS)
      return;
    if (j > d->hs_step)
      d->hs_step = j;
    if (d->hs_timer_step < j)
      d->hs_deadline = UINT64_MAX;
    if (j == last) { /* full: the server's Finished */
      d->hs_deadline = UINT64_MAX;
      link_up(vs, e->dev);
      return;
    }
    send_hs(vs, e->dev, j + 1);
    if (j + 1 == last) { /* resumed: our Finished; app data may follow */
      d->hs_deadline = UINT64_MAX;
      link_up(vs, e->dev);
    }
  } else { /* at the cloud */
    if (j == last) {
      if (d->cloud_up && e->epoch != d->cepoch)
        return; /* a record of an older session */
      if (!d->cloud_up) {
        d->cloud_up = true;
        cloud_session_reset(vs, d);
      }
      return;
    }
    if (d->cloud_up && j == 0) /* a new ClientHello: a new session */
      d->cloud_up = false;
    send_hs(vs, e->dev, j + 1);
    if (j + 1 == last && !d->cloud_up) {
      d->cloud_up = true;
      cloud_session_reset(vs, d);
    }
  }
}

static void hs_timer(ota_vsim_t *vs, const ev_t *e) {
  vdev_t *d = vs->d[e->dev];
  if (d->conn != CONN_HS || d->hs_deadline != e->t)
    return;
  if (vs->now - d->hs_t0 >= HS_GIVE_UP_MS) {
    d->st.failed_hs++;
    d->conn = CONN_DOWN;
    d->epoch++;
    d->hs_deadline = UINT64_MAX;
    logf_(vs, "%llu %u handshake failed", (unsigned long long)vs->now, e->dev);
    at(vs, vs->now + HS_RETRY_MS, e->dev, EV_CONNECT);
    return;
  }
  d->hs_T *= 2;
  send_hs(vs, e->dev, d->hs_timer_step);
}

/* The device's side closes (no close_notify): the cloud keeps its session
 * until a new handshake replaces it. */
static void go_down(ota_vsim_t *vs, uint32_t i) {
  vdev_t *d = vs->d[i];
  d->conn = CONN_DOWN;
  d->epoch++;
  d->hs_deadline = UINT64_MAX;
}

static void check_done(ota_vsim_t *vs, uint32_t i) {
  vdev_t *d = vs->d[i];
  const ota_csess_t *c = &d->cs;
  bool q = d->ds.state == OTA_DSESS_ONLINE && c->state == OTA_CSESS_DESCRIBED &&
           c->described && !ota_csess_busy(c) &&
           c->h.state != OTA_HEAL_SENDING &&
           c->h.state != OTA_HEAL_WAIT_DESCRIBE;
  if (q && !d->st.done) {
    d->st.done = true;
    d->st.t_done = vs->now - d->start;
    vs->ndone++;
    logf_(vs, "%llu %u done %s %s", (unsigned long long)vs->now, i,
          ota_device_release_name(&d->dev), ota_dev_state_name(d->dev.state));
  } else if (!q && d->st.done) {
    d->st.done = false;
    vs->ndone--;
  }
}

static void mark_dead(ota_vsim_t *vs, uint32_t i, const char *why) {
  vdev_t *d = vs->d[i];
  if (d->dead)
    return;
  if (d->st.done) {
    d->st.done = false;
    vs->ndone--;
  }
  d->dead = true;
  vs->ndead++;
  go_down(vs, i);
  d->cloud_up = false;
  logf_(vs, "%llu %u dead: %s", (unsigned long long)vs->now, i, why);
}

static void dev_effects(ota_vsim_t *vs, uint32_t i) {
  vdev_t *d = vs->d[i];
  ota_outbox_t *o = &vs->out;
  int reboot = -1;
  for (size_t k = 0; k < o->n; k++) {
    const ota_fx_t *fx = &o->fx[k];
    const uint8_t *b = ota_outbox_bytes(o, fx);
    if (fx->kind == OTA_FX_SEND) {
      if (d->conn == CONN_UP)
        send_dgram(vs, i, OTA_LINK_UP, b, fx->len,
                   fx->addr ? OTA_VB_RETRANS : OTA_VB_COAP, 0);
    } else if (fx->kind == OTA_FX_REBOOT) {
      reboot = fx->arg;
    } else if (fx->kind == OTA_FX_EVENT && fx->arg == OTA_DSESS_FX_STATE) {
      logf_(vs, "%llu %u dev %.*s", (unsigned long long)vs->now, i,
            (int)fx->len, (const char *)b);
    }
  }
  ota_outbox_clear(o);
  if (d->ds.n.otas_rejected > d->rejects) {
    d->rejects = d->ds.n.otas_rejected;
    logf_(vs, "%llu %u device %s", (unsigned long long)vs->now, i,
          d->ds.last_reject);
    if (vs->on_ev)
      vs->on_ev(vs->ud, i, vs->now, "device/ota-refused", d->ds.last_reject,
                strlen(d->ds.last_reject));
  }
  if (reboot >= 0) {
    go_down(vs, i);
    d->reboot_reason = reboot;
    for (int k = 0; reboot == OTA_RESET_UPDATE && k < d->nfaults; k++)
      if (d->faults[k].kind == OTA_VFAULT_POWER_APPLY && !d->fired[k] &&
          d->dev.npending) {
        /* the bootloader's copy never finishes: the slots stay queued and
         * the next boot (power_down) copies them again */
        d->fired[k] = true;
        d->st.faults++;
        d->reboot_reason = OTA_RESET_POWER_DOWN;
        logf_(vs, "%llu %u fault power-loss-during-apply (%d queued)",
              (unsigned long long)vs->now, i, d->dev.npending);
      }
    at(vs, vs->now + vs->cfg.reboot_ms, i, EV_BOOT);
  } else if (d->ds.state == OTA_DSESS_DEAD) {
    mark_dead(vs, i, "device session dead");
  } else if (d->ds.state == OTA_DSESS_OFF && d->conn == CONN_UP) {
    go_down(vs, i); /* keep-alive failure: reconnect */
    at(vs, vs->now + 1000, i, EV_CONNECT);
  }
}

/* Hand the cloud session's SENDs to the cloud's CoAP endpoint. */
static void cloud_effects(ota_vsim_t *vs, uint32_t i) {
  vdev_t *d = vs->d[i];
  ota_outbox_t *o = &vs->out;
  bool close = false;
  for (size_t k = 0; k < o->n; k++) {
    const ota_fx_t *fx = &o->fx[k];
    const uint8_t *b = ota_outbox_bytes(o, fx);
    if (fx->kind == OTA_FX_SEND) {
      ota_coap_msg_t m;
      uint16_t mid = 0;
      if (ota_coap_decode(b, fx->len, &m))
        continue;
      int rc = ota_coap_chan_send(&d->cch, &m, vs->now, &vs->cob, &mid);
      if (rc)
        continue;
      if (m.type == OTA_COAP_CON && m.code == OTA_COAP_EMPTY)
        d->ping_mid = mid, d->ping_out = true;
      for (size_t c = 0; c < vs->cob.n; c++)
        if (d->cloud_up)
          send_dgram(vs, i, OTA_LINK_DOWN,
                     ota_outbox_bytes(&vs->cob, &vs->cob.fx[c]),
                     vs->cob.fx[c].len, fx->addr ? OTA_VB_RETRANS : OTA_VB_COAP,
                     (uint32_t)fx->arg);
      ota_outbox_clear(&vs->cob);
      continue;
    }
    ota_csess_effect_t e;
    if (ota_csess_effect_get(o, fx, &e))
      continue;
    if (e.kind == OTA_CSESS_FX_PUBLISH) {
      logf_(vs, "%llu %u event %s %.*s", (unsigned long long)vs->now, i, e.name,
            (int)(e.data_len < 120 ? e.data_len : 120), e.data);
      if (vs->on_ev)
        vs->on_ev(vs->ud, i, vs->now, e.name, e.data, e.data_len);
    } else if (e.kind == OTA_CSESS_FX_JOB) {
      if (e.job.state == OTA_JOB_DONE)
        d->st.jobs_ok++;
      else
        d->st.jobs_failed++;
      logf_(vs, "%llu %u job %u %c/%u v%u %s %s", (unsigned long long)vs->now,
            i, e.job.id, ota_fn_letter(e.job.ref.func), e.job.ref.index,
            e.job.ref.version, ota_job_state_name(e.job.state), e.job.why);
      if (vs->on_job)
        vs->on_job(vs->ud, i, vs->now, &e.job);
    } else if (e.kind == OTA_CSESS_FX_CLOSE) {
      close = true;
    }
  }
  ota_outbox_clear(o);
  if (close) {
    ota_dsess_on_down(&d->ds, vs->now, "closed by the cloud", &vs->out);
    ota_outbox_clear(&vs->out);
    mark_dead(vs, i, "refused by the cloud");
  }
}

static void cloud_chan_effects(ota_vsim_t *vs, uint32_t i, int retrans) {
  vdev_t *d = vs->d[i];
  ota_outbox_t *in = &vs->cin; /* the channel's effects (vs->cob: sends) */
  for (size_t k = 0; k < in->n; k++) {
    const ota_fx_t *fx = &in->fx[k];
    const uint8_t *b = ota_outbox_bytes(in, fx);
    if (fx->kind == OTA_FX_SEND) {
      if (d->cloud_up)
        send_dgram(vs, i, OTA_LINK_DOWN, b, fx->len, OTA_VB_RETRANS, 0);
    } else if (fx->kind == OTA_FX_DELIVER) {
      ota_coap_msg_t m;
      if (ota_coap_decode(b, fx->len, &m))
        continue;
      if ((m.type == OTA_COAP_ACK || m.type == OTA_COAP_RST) && d->ping_out &&
          m.mid == d->ping_mid && m.code == OTA_COAP_EMPTY) {
        d->ping_out = false;
        ota_csess_on_pong(&d->cs, vs->now, &vs->out);
      } else
        ota_csess_on_message(&d->cs, &m, vs->now, &vs->out);
      cloud_effects(vs, i);
    } else if (fx->kind == OTA_FX_TIMEOUT) {
      if (d->ping_out && fx->mid == d->ping_mid)
        d->ping_out = false;
    }
  }
  ota_outbox_clear(in);
  (void)retrans;
}

/* ---- faults (otalab-device's --fault, sim_dev.c chunk_faults) ---------- */

int ota_vsim_fault_parse(const char *spec, ota_vfault_t *f) {
  unsigned k = 0, ms = 0;
  char tail;
  memset(f, 0, sizeof *f);
  if (!spec)
    return OTA_EPARSE;
  if (!strcmp(spec, "power-loss-during-apply"))
    f->kind = OTA_VFAULT_POWER_APPLY;
  else if (sscanf(spec, "drop-link-at-chunk:%u:%u%c", &k, &ms, &tail) == 2 ||
           sscanf(spec, "drop-link-at-chunk:%u%c", &k, &tail) == 1)
    f->kind = OTA_VFAULT_DROP_LINK, f->ms = ms ? ms : 20000;
  else if (sscanf(spec, "reset-during-ota:%u%c", &k, &tail) == 1)
    f->kind = OTA_VFAULT_RESET_OTA;
  else if (sscanf(spec, "corrupt-chunk:%u%c", &k, &tail) == 1)
    f->kind = OTA_VFAULT_CORRUPT;
  else
    return OTA_EPARSE;
  f->chunk = k;
  return 0;
}

int ota_vsim_fault(ota_vsim_t *vs, size_t i, const ota_vfault_t *f) {
  if (i >= vs->n || !f || f->kind < OTA_VFAULT_DROP_LINK ||
      f->kind > OTA_VFAULT_CORRUPT)
    return OTA_EINVAL;
  vdev_t *d = vs->d[i];
  if (d->nfaults == OTA_VSIM_MAX_FAULTS)
    return OTA_EFULL;
  d->fired[d->nfaults] = false;
  d->faults[d->nfaults++] = *f;
  return 0;
}

/* A datagram is about to reach device i's session: apply its chunk faults.
 * b is the event's own copy (a corrupted byte stays in it). True when the
 * datagram must not be delivered (the link or the device went away). */
static bool chunk_faults(ota_vsim_t *vs, uint32_t i, uint8_t *b, size_t len) {
  vdev_t *d = vs->d[i];
  ota_coap_msg_t m;
  ota_msg_chunk_t c;
  if (ota_coap_decode(b, len, &m) ||
      ota_msg_classify(&m, OTA_DIR_TO_DEVICE) != OTA_MSG_CHUNK ||
      ota_msg_chunk_parse(&m, &c))
    return false;
  uint32_t idx = c.has_index ? c.index : ota_rx_received(&d->ds.rx);
  for (int k = 0; k < d->nfaults; k++) {
    const ota_vfault_t *f = &d->faults[k];
    if (d->fired[k] || f->kind == OTA_VFAULT_POWER_APPLY || f->chunk != idx)
      continue;
    d->fired[k] = true;
    d->st.faults++;
    if (f->kind == OTA_VFAULT_CORRUPT) {
      if (!c.len)
        continue;
      b[(size_t)(c.data - b) + c.len / 2] ^= 0x5a;
      logf_(vs, "%llu %u fault corrupt-chunk:%u", (unsigned long long)vs->now,
            i, idx);
      return false;
    }
    ota_dsess_on_down(&d->ds, vs->now,
                      f->kind == OTA_VFAULT_DROP_LINK ? "link lost (fault)"
                                                      : "reset (fault)",
                      &vs->out);
    ota_outbox_clear(&vs->out);
    go_down(vs, i);
    d->dt_at = UINT64_MAX;
    if (f->kind == OTA_VFAULT_DROP_LINK) {
      d->link.cfg.outage_start_ms = vs->now;
      d->link.cfg.outage_end_ms = vs->now + f->ms;
      logf_(vs, "%llu %u fault drop-link-at-chunk:%u:%u",
            (unsigned long long)vs->now, i, idx, f->ms);
      at(vs, vs->now + f->ms, i, EV_CONNECT);
    } else {
      d->reboot_reason = OTA_RESET_WATCHDOG;
      logf_(vs, "%llu %u fault reset-during-ota:%u",
            (unsigned long long)vs->now, i, idx);
      at(vs, vs->now + vs->cfg.reboot_ms, i, EV_BOOT);
    }
    return true;
  }
  return false;
}

static void dgram_arrive(ota_vsim_t *vs, const ev_t *e) {
  vdev_t *d = vs->d[e->dev];
  if (d->dead)
    return;
  if (e->dir == OTA_LINK_DOWN) {
    if (d->conn != CONN_UP || e->epoch != d->epoch)
      return;
    if (d->nfaults && chunk_faults(vs, e->dev, e->b, e->len))
      return;
    ota_dsess_on_datagram(&d->ds, e->b, e->len, vs->now, &vs->out);
    dev_effects(vs, e->dev);
  } else {
    if (d->cloud_up && e->epoch != d->cepoch)
      return; /* a record of an older session */
    if (!d->cloud_up) {
      /* The server still waits for the client's Finished: its timer
       * resends its last flight, our answer follows. */
      if (!d->hs_full && d->conn == CONN_UP)
        send_hs(vs, e->dev, hs_steps(d) - 2);
      return;
    }
    ota_coap_chan_on_datagram(&d->cch, e->b, e->len, vs->now, &vs->cin);
    cloud_chan_effects(vs, e->dev, 0);
  }
}

static void schedule(ota_vsim_t *vs, uint32_t i) {
  vdev_t *d = vs->d[i];
  if (d->dead)
    return;
  uint64_t t = ota_dsess_next_deadline(&d->ds);
  if (d->conn != CONN_UP)
    t = UINT64_MAX;
  if (t != UINT64_MAX && t != d->dt_at) {
    if (t < vs->now)
      t = vs->now;
    d->dt_at = t;
    at(vs, t, i, EV_DTIMER);
  }
  uint64_t c = ota_csess_next_deadline(&d->cs);
  uint64_t cc = d->cloud_up ? ota_coap_chan_next_deadline(&d->cch) : UINT64_MAX;
  if (cc < c)
    c = cc;
  if (c != UINT64_MAX && c != d->ct_at) {
    if (c < vs->now)
      c = vs->now;
    d->ct_at = c;
    at(vs, c, i, EV_CTIMER);
  }
}

bool ota_vsim_step(ota_vsim_t *vs) {
  if (!vs->hn || vs->heap[0].t > vs->cfg.max_ms)
    return false;
  ev_t e = pop(vs);
  vdev_t *d = vs->d[e.dev];
  vs->now = e.t;
  vs->events++;
  hash_u64(vs, e.t);
  hash_u64(vs, (uint64_t)e.dev << 8 | e.kind);
  if (vs->cfg.keep_log && e.kind != EV_DTIMER && e.kind != EV_CTIMER)
    logf_(vs, "%llu %u %s dir=%u len=%u step=%u", (unsigned long long)e.t,
          e.dev, ev_names[e.kind], e.dir, e.len, e.step);
  if ((e.kind == EV_POWER || e.kind == EV_BOOT || e.kind == EV_CONNECT) &&
      (e.epoch != d->epoch || d->off))
    return true; /* overtaken by a power cycle */
  switch (e.kind) {
  case EV_POWER:
  case EV_BOOT: {
    ota_boot_result_t r;
    d->st.boots++;
    ota_dsess_boot(&d->ds,
                   e.kind == EV_POWER ? OTA_RESET_POWER_DOWN
                                      : (ota_reset_t)d->reboot_reason,
                   vs->now, &r, &vs->out);
    ota_outbox_clear(&vs->out);
    logf_(vs, "%llu %u boot %s %s", (unsigned long long)vs->now, e.dev,
          ota_dev_state_name(r.state), ota_device_release_name(&d->dev));
    if (d->ds.state == OTA_DSESS_DEAD) {
      mark_dead(vs, e.dev, "hard-fault loop");
      if (vs->on_ev)
        vs->on_ev(vs->ud, e.dev, vs->now, "device/hard-fault", r.why,
                  strlen(r.why));
    } else
      connect(vs, e.dev);
    break;
  }
  case EV_CONNECT:
    if (!d->dead && d->conn == CONN_DOWN)
      connect(vs, e.dev);
    break;
  case EV_HS:
    if (e.epoch == d->epoch)
      hs_arrive(vs, &e);
    break;
  case EV_HS_TIMER:
    if (e.epoch == d->epoch)
      hs_timer(vs, &e);
    break;
  case EV_DGRAM:
    dgram_arrive(vs, &e);
    free(e.b);
    break;
  case EV_DTIMER:
    if (e.t != d->dt_at)
      break;
    d->dt_at = UINT64_MAX;
    if (d->conn == CONN_UP) {
      ota_dsess_on_timer(&d->ds, vs->now, &vs->out);
      dev_effects(vs, e.dev);
    }
    break;
  case EV_CTIMER:
    if (e.t != d->ct_at)
      break;
    d->ct_at = UINT64_MAX;
    ota_csess_on_timer(&d->cs, vs->now, &vs->out);
    cloud_effects(vs, e.dev);
    if (d->cloud_up) {
      ota_coap_chan_on_timer(&d->cch, vs->now, &vs->cin);
      cloud_chan_effects(vs, e.dev, 1);
    }
    break;
  }
  if (!d->dead) {
    check_done(vs, e.dev);
    schedule(vs, e.dev);
  }
  return true;
}

size_t ota_vsim_run(ota_vsim_t *vs, uint64_t until_ms) {
  uint64_t max = vs->cfg.max_ms;
  if (until_ms)
    vs->cfg.max_ms = until_ms;
  while (vs->ndone + vs->ndead < vs->n && ota_vsim_step(vs))
    ;
  vs->cfg.max_ms = max;
  return vs->ndone;
}

int ota_vsim_flash(ota_vsim_t *vs, size_t i, const uint8_t *mod, size_t len,
                   const char *name) {
  if (i >= vs->n)
    return OTA_EINVAL;
  vdev_t *d = vs->d[i];
  if (d->nowned == sizeof d->owned / sizeof *d->owned)
    return OTA_EFULL;
  uint8_t *c = malloc(len);
  if (!c)
    return OTA_ENOMEM;
  memcpy(c, mod, len);
  int rc = ota_csess_enqueue(&d->cs, c, len, name, OTA_ORIGIN_USER, vs->now,
                             &vs->out, NULL);
  if (rc) {
    free(c);
    ota_outbox_clear(&vs->out);
    return rc;
  }
  d->owned[d->nowned++] = c;
  cloud_effects(vs, (uint32_t)i);
  check_done(vs, (uint32_t)i);
  schedule(vs, (uint32_t)i);
  return 0;
}

int ota_vsim_power(ota_vsim_t *vs, size_t i, bool on) {
  if (i >= vs->n)
    return OTA_EINVAL;
  vdev_t *d = vs->d[i];
  if (!d->off) {
    ota_dsess_on_down(&d->ds, vs->now, "power off", &vs->out);
    ota_outbox_clear(&vs->out);
    go_down(vs, (uint32_t)i);
    d->off = true;
    d->dt_at = UINT64_MAX;
    if (d->st.done) {
      d->st.done = false;
      vs->ndone--;
    }
    logf_(vs, "%llu %zu power off", (unsigned long long)vs->now, i);
  }
  if (on) {
    d->off = false;
    if (d->dead) {
      d->dead = false;
      vs->ndead--;
    }
    logf_(vs, "%llu %zu power on", (unsigned long long)vs->now, i);
    at(vs, vs->now, (uint32_t)i, EV_POWER);
  }
  return 0;
}

int ota_vsim_release(ota_vsim_t *vs, uint32_t product_id, const uint8_t *app,
                     size_t len, unsigned version) {
  uint8_t **r = realloc(vs->rel, (vs->nrel + 1) * sizeof *r);
  if (!r)
    return OTA_ENOMEM;
  vs->rel = r;
  if (!(r[vs->nrel] = malloc(len ? len : 1)))
    return OTA_ENOMEM;
  memcpy(r[vs->nrel], app, len);
  for (size_t i = 0; i < vs->n; i++) {
    ota_csess_cfg_t *c = &vs->d[i]->cs.cfg;
    if (product_id && c->product_id == product_id) {
      c->product_app = r[vs->nrel];
      c->product_app_len = len;
      c->product_app_version = version;
    }
  }
  vs->nrel++;
  logf_(vs, "%llu release product %u v%u", (unsigned long long)vs->now,
        product_id, version);
  return 0;
}

void ota_vsim_advance(ota_vsim_t *vs, uint64_t t_ms) {
  uint64_t max = vs->cfg.max_ms;
  vs->cfg.max_ms = t_ms;
  while (ota_vsim_step(vs))
    ;
  vs->cfg.max_ms = max;
  if (vs->now < t_ms)
    vs->now = t_ms;
}

uint64_t ota_vsim_now(const ota_vsim_t *vs) {
  return vs->now;
}
size_t ota_vsim_count(const ota_vsim_t *vs) {
  return vs->n;
}
uint64_t ota_vsim_events(const ota_vsim_t *vs) {
  return vs->events;
}
uint64_t ota_vsim_hash(const ota_vsim_t *vs) {
  return vs->hash;
}
const char *ota_vsim_log(const ota_vsim_t *vs) {
  return vs->log ? vs->log : "";
}
const ota_vsim_stats_t *ota_vsim_stats(const ota_vsim_t *vs, size_t i) {
  return i < vs->n ? &vs->d[i]->st : NULL;
}
const ota_device_t *ota_vsim_device(const ota_vsim_t *vs, size_t i) {
  return i < vs->n ? &vs->d[i]->dev : NULL;
}
const ota_csess_t *ota_vsim_cloud(const ota_vsim_t *vs, size_t i) {
  return i < vs->n ? &vs->d[i]->cs : NULL;
}
const ota_dsess_t *ota_vsim_dsess(const ota_vsim_t *vs, size_t i) {
  return i < vs->n ? &vs->d[i]->ds : NULL;
}
uint64_t ota_vsim_bytes(const ota_vsim_stats_t *st) {
  uint64_t s = 0;
  for (int k = 0; k < OTA_VB_COUNT; k++)
    s += st->up[k] + st->down[k];
  return s;
}
