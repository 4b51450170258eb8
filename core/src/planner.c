/* The upgrade planner: steps, module order and the wire-cost model of an
 * Electron OTA. Source: PROTOCOL.md 1.1, 1.6, 2.1-2.5, 5.2, 6.1, 6.2, 7. */
#include "otalab/planner.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "otalab/err.h"

void ota_plan_model_default(ota_plan_model_t *m) {
  memset(m, 0, sizeof *m);
  m->coap_header = 4;
  m->token = 1;
  m->opt_path = 2;
  m->opt_crc = 5;
  m->opt_index = 3;
  m->marker = 1;
  m->chunk_size = OTA_CHUNK_SIZE;
  m->dtls_record = 29;
  m->udp_ip = 28;
  /* Fast OTA is the default: otalab's sender asks for it (ota_tx defaults)
   * and every Electron release accepts it. */
  m->fast_ota = 1;
  /* ota_tx paces fast OTA by ack clocking: every window of `window` chunks
   * ends with a CoAP ping and the next window goes at its ACK, one round trip
   * per window and no fixed pause. 16 = ota_tx_config_default()'s window:
   * keep the two equal. (ota_tx doubles the window, up to 64, only while
   * pongs come back within 100 ms: faster links than the cellular ones
   * modelled here.) */
  m->window = 16;
  m->window_gap_ms = 0;
  m->begin_payload = 12;
  m->updone_json = 150; /* {"r":"ok","u":{"s":..,"l":"t","vc":..,...}} */
  m->updone_int = 7;    /* {"r":0} */
  m->hello_payload = 29;
  m->describe_payload = 600;
  /* Up: claim/code (4+2+25 no data = 31), ident/0 (4+2+22+1+8 = 37),
   * last_reset "update" (4+2+25+1+6 = 38), time request (4+1+2 = 7),
   * subscribe "spark" (4+2+6+2 = 14) and "particle" (4+2+9+2 = 17). */
  m->events_up = 31 + 37 + 38 + 7 + 14 + 17;
  m->events_up_dgrams = 6;
  /* Down: time reply (4+1+1+4 = 10), two subscribe ACKs (4 each). */
  m->events_down = 10 + 4 + 4;
  m->events_down_dgrams = 3;
  /* particle/device/updates/enabled "true" (4+2+33+1+4) and .../forced
   * "false" (4+2+32+1+5). */
  m->events12_up = 44 + 44;
  m->events12_dgrams = 2;
  m->move_session = 13;
  /* otalab's standard DTLS 1.2 with certificates, measured on loopback on the
   * device's UDP socket (docs/PROTOCOL.md "Transport choices"): full
   * handshake incl. HelloVerify 922 B up / 887 B down in 3 + 3 datagrams;
   * resumed (session cache) 393 B up / 233 B down in 5 datagrams. */
  m->hs_full_down = 887;
  m->hs_full_up = 922;
  m->hs_resume_down = 233;
  m->hs_resume_up = 393;
  m->hs_full_datagrams = 6;
  m->hs_resume_datagrams = 5;
  m->hs_full_rtts = 3; /* HelloVerify, then two flights */
  m->hs_resume_rtts = 2;
  m->p_full = 4400;  /* PROTOCOL.md 1.6 [FORUM] */
  m->p_resume = 140; /* PROTOCOL.md 1.6 [FORUM], 135-144 */
  m->reboot_ms = 10000;
}

/* ---- cost accounting -------------------------------------------------- */

static void msg(ota_plan_cost_t *c, const ota_plan_model_t *m, int down,
                uint32_t coap) {
  uint64_t b = (uint64_t)coap + m->dtls_record;
  if (down) {
    c->down += b;
    c->datagrams_down++;
  } else {
    c->up += b;
    c->datagrams_up++;
  }
  c->wire += b;
  c->wire_particle += b;
  c->udp_ip += m->udp_ip;
  c->datagrams++;
}

/* A DTLS handshake: otalab's figures in down/up/wire, Particle's apart. */
static void handshake(ota_plan_cost_t *c, const ota_plan_model_t *m, int full) {
  uint32_t down = full ? m->hs_full_down : m->hs_resume_down;
  uint32_t up = full ? m->hs_full_up : m->hs_resume_up;
  uint32_t dg = full ? m->hs_full_datagrams : m->hs_resume_datagrams;
  c->down += down;
  c->up += up;
  c->wire += down + up;
  c->wire_particle += full ? m->p_full : m->p_resume;
  c->datagrams_down += dg / 2;
  c->datagrams_up += dg - dg / 2;
  c->datagrams += dg;
  c->udp_ip += (uint64_t)dg * m->udp_ip;
  c->rtts += full ? m->hs_full_rtts : m->hs_resume_rtts;
}

/* Connect (full handshake or resume after a reboot), Hello both ways,
 * Describe in the release's form, handshake events (PROTOCOL.md 2.2-2.5). */
static void connect_cost(ota_plan_cost_t *c, const ota_plan_model_t *m,
                         const ota_cat_behaviour_t *b, int full) {
  uint32_t req = m->coap_header + m->token + m->opt_path;
  handshake(c, m, full);
  if (!full && b->move_session) /* first record after a resume is "moved" */
    c->wire_particle += m->move_session;
  msg(c, m, 0, m->coap_header + m->opt_path + m->marker + m->hello_payload);
  msg(c, m, 1, m->coap_header); /* ACK */
  c->rtts++;
  msg(c, m, 1, req);            /* server Hello (CON) */
  msg(c, m, 0, m->coap_header); /* ACK */
  uint32_t djson = m->describe_payload;
  switch (b->describe) {
  case OTA_DESCRIBE_ACK:
    msg(c, m, 1, req + 2); /* GET d + 1-byte flags query */
    msg(c, m, 0, m->coap_header + m->token + m->marker + djson);
    break;
  case OTA_DESCRIBE_SEPARATE:
    msg(c, m, 1, req + 2);
    msg(c, m, 0, m->coap_header);
    msg(c, m, 0, m->coap_header + m->token + m->marker + djson);
    msg(c, m, 1, m->coap_header);
    break;
  case OTA_DESCRIBE_POST:
    msg(c, m, 0, m->coap_header + m->opt_path + 2 + m->marker + djson);
    msg(c, m, 1, m->coap_header);
    break;
  }
  c->rtts++;
  for (int i = 0; i < m->events_up_dgrams; i++)
    msg(c, m, 0, 0);
  for (int i = 0; i < m->events_down_dgrams; i++)
    msg(c, m, 1, 0);
  /* msg() added the DTLS overhead per datagram; now the CoAP bytes. */
  c->up += m->events_up;
  c->down += m->events_down;
  c->wire += m->events_up + m->events_down;
  c->wire_particle += m->events_up + m->events_down;
  if (b->refusal_code == 0xA3) { /* >= 1.2: the updates flags events */
    for (int i = 0; i < m->events12_dgrams; i++)
      msg(c, m, 0, 0);
    c->up += m->events12_up;
    c->wire += m->events12_up;
    c->wire_particle += m->events12_up;
  }
  c->rtts++; /* time request and subscriptions */
}

/* One module's OTA (PROTOCOL.md 2.5 items 1-5), then its reboot and reconnect
 * (items 6-7). `b` is the behaviour of the release being installed. */
static void module_cost(ota_plan_cost_t *c, const ota_plan_model_t *m,
                        const ota_cat_behaviour_t *b, uint32_t size) {
  uint32_t req = m->coap_header + m->token + m->opt_path;
  uint32_t cs = m->chunk_size ? m->chunk_size : OTA_CHUNK_SIZE;
  uint32_t n = (size + cs - 1) / cs;
  c->payload += size;
  msg(c, m, 1, req + m->marker + m->begin_payload);        /* UpdateBegin */
  msg(c, m, 0, m->coap_header);                            /* empty ACK */
  msg(c, m, 0, m->coap_header + m->token + m->marker + 1); /* UpdateReady */
  msg(c, m, 1, m->coap_header);                            /* ACK */
  c->rtts += 2;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t len = i + 1 < n ? cs : size - i * cs;
    uint32_t opts = m->opt_crc + (m->fast_ota ? m->opt_index : 0);
    msg(c, m, 1, req + opts + m->marker + len);
    if (!m->fast_ota) {
      msg(c, m, 0, m->coap_header);            /* ACK */
      msg(c, m, 0, m->coap_header + m->token); /* ChunkReceived 2.04 */
      msg(c, m, 1, m->coap_header);            /* ACK */
      c->rtts++;
    }
  }
  if (m->fast_ota) {
    uint32_t w = (n + m->window - 1) / (m->window ? m->window : 1);
    c->windows += w;
    for (uint32_t i = 0; i < w; i++) {
      msg(c, m, 1, m->coap_header); /* the window's ping */
      msg(c, m, 0, m->coap_header); /* its empty ACK */
    }
  }
  msg(c, m, 1, req); /* UpdateDone */
  uint32_t ack = m->coap_header + m->token;
  if (b->updone == OTA_UPDONE_JSON)
    ack += m->marker + m->updone_json;
  else if (b->updone == OTA_UPDONE_INT)
    ack += m->marker + m->updone_int;
  msg(c, m, 0, ack);
  c->rtts++;
  c->reboots++;
  connect_cost(c, m, b, 0);
}

static void cost_add(ota_plan_cost_t *t, const ota_plan_cost_t *c) {
  t->payload += c->payload;
  t->down += c->down;
  t->up += c->up;
  t->wire += c->wire;
  t->wire_particle += c->wire_particle;
  t->udp_ip += c->udp_ip;
  t->datagrams += c->datagrams;
  t->datagrams_down += c->datagrams_down;
  t->datagrams_up += c->datagrams_up;
  t->rtts += c->rtts;
  t->windows += c->windows;
  t->reboots += c->reboots;
}

double ota_plan_seconds(const ota_plan_cost_t *c,
                        const ota_link_profile_t *link,
                        const ota_plan_model_t *model) {
  ota_plan_model_t def;
  if (!c || !link)
    return 0;
  if (!model) {
    ota_plan_model_default(&def);
    model = &def;
  }
  double down = (double)(c->down + c->datagrams_down * model->udp_ip) * 8.0;
  double up = (double)(c->up + c->datagrams_up * model->udp_ip) * 8.0;
  double loss = link->loss < 0.99 ? link->loss : 0.99;
  double s = (down / link->down_bps + up / link->up_bps) / (1.0 - loss);
  double rtt = link->rtt_ms / 1000.0;
  double gap = model->window_gap_ms / 1000.0;
  s += c->rtts * rtt;
  s += c->windows * (rtt > gap ? rtt : gap); /* each window waits its pong */
  s += c->reboots * (model->reboot_ms / 1000.0);
  return s;
}

/* ---- planning --------------------------------------------------------- */

/* The device's module versions; 0 = absent. */
typedef struct {
  uint16_t b;
  uint16_t s[4]; /* s[1..3] */
} dstate_t;

typedef struct {
  const ota_catalog_t *cat;
  const ota_plan_model_t *m;
  ota_plan_t *plan;
  dstate_t st;
} ctx_t;

static int refuse(ota_plan_t *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(ota_plan_t *p, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->reason, sizeof p->reason, fmt, ap);
  va_end(ap);
  p->result = code;
  return code;
}

static int has(const dstate_t *st, const ota_modref_t *d) {
  if (d->func == OTA_FN_SYSTEM && d->index >= 1 && d->index <= 3)
    return st->s[d->index] >= d->version;
  if (d->func == OTA_FN_BOOTLOADER)
    return st->b >= d->version;
  return 1; /* none, or a function the planner does not manage */
}

static void apply(dstate_t *st, const ota_modref_t *id) {
  if (id->func == OTA_FN_SYSTEM && id->index >= 1 && id->index <= 3)
    st->s[id->index] = id->version;
  else if (id->func == OTA_FN_BOOTLOADER)
    st->b = id->version;
}

void ota_plan_file_name(const ota_cat_release_t *rel, const ota_cat_module_t *m,
                        char *out, size_t cap) {
  if (m->id.func == OTA_FN_BOOTLOADER)
    snprintf(out, cap, "electron-bootloader-%s.bin", rel->name);
  else
    snprintf(out, cap, "%s-%s-electron.bin", m->file, rel->name);
}

size_t ota_plan_device_from_release(const ota_cat_release_t *rel,
                                    ota_dev_module_t *out, size_t cap) {
  size_t n = 0;
  for (int i = 0; rel && i < rel->nmodules && n < cap; i++, n++) {
    out[n].id = rel->modules[i].id;
    out[n].deps[0] = rel->modules[i].deps[0];
    out[n].deps[1] = rel->modules[i].deps[1];
  }
  return n;
}

/* The first release embedding a bootloader >= v (Electron s/3 carries it and
 * re-flashes an older one at boot, PROTOCOL.md 6.2). */
static const ota_cat_release_t *boot_release(const ota_catalog_t *cat,
                                             uint16_t v) {
  for (size_t i = 0; i < cat->nreleases; i++)
    if (cat->releases[i].nparts == 3 &&
        cat->releases[i].bootloader_version >= v)
      return &cat->releases[i];
  return NULL;
}

/* The smallest release older than `below` shipping (func,index) >= version. */
static const ota_cat_release_t *
provider(const ota_catalog_t *cat, const ota_modref_t *d, uint16_t below) {
  for (size_t i = 0; i < cat->nreleases; i++) {
    const ota_cat_release_t *r = &cat->releases[i];
    const ota_cat_module_t *m = ota_release_module(r, d->func, d->index);
    if (r->system_version < below && m && m->id.version >= d->version)
      return r;
  }
  return NULL;
}

static void add_module(ota_plan_step_t *s, const ota_cat_release_t *rel,
                       const ota_cat_module_t *m, int at) {
  for (int k = s->nmodules; k > at; k--)
    s->modules[k] = s->modules[k - 1];
  ota_plan_module_t *pm = &s->modules[at];
  memset(pm, 0, sizeof *pm);
  pm->id = m->id;
  pm->bytes = m->size;
  pm->bootloader = m->id.func == OTA_FN_BOOTLOADER;
  ota_plan_file_name(rel, m, pm->file, sizeof pm->file);
  s->nmodules++;
}

static int plan_release(ctx_t *x, const ota_cat_release_t *rel, const char *why,
                        int depth) {
  ota_plan_t *p = x->plan;
  const ota_catalog_t *cat = x->cat;
  if (depth > OTA_PLAN_MAX_STEPS)
    return refuse(p, OTA_EFULL, "more than %d steps to %s", OTA_PLAN_MAX_STEPS,
                  rel->name);

  /* PROTOCOL.md 6.1: a HAL below 0.5.3-rc.2 does not know s/3. */
  const ota_cat_release_t *stone = ota_catalog_find(cat, cat->stepping_stone);
  if (rel->nparts == 3 && stone && stone != rel && cat->stepping_stone_min &&
      (x->st.s[1] < cat->stepping_stone_min ||
       x->st.s[2] < cat->stepping_stone_min)) {
    char w[96];
    snprintf(w, sizeof w,
             "stepping stone: s/1 v%u, s/2 v%u < %u do not know s/3 (6.1)",
             x->st.s[1], x->st.s[2], cat->stepping_stone_min);
    int rc = plan_release(x, stone, w, depth + 1);
    if (rc)
      return rc;
  }

again:;
  /* The release's system parts the device lacks, in file order. */
  const ota_cat_module_t *need[OTA_CAT_MAX_MODULES];
  int nneed = 0, placed[OTA_CAT_MAX_MODULES] = {0};
  for (int i = 0; i < rel->nmodules; i++) {
    const ota_cat_module_t *m = &rel->modules[i];
    if (m->id.func == OTA_FN_SYSTEM && !has(&x->st, &m->id))
      need[nneed++] = m;
  }
  if (nneed == 0)
    return 0;

  /* Dependency order: repeatedly take the first module whose system
   * dependencies the device (plus the modules placed so far) meets. */
  ota_plan_step_t step;
  memset(&step, 0, sizeof step);
  dstate_t tmp = x->st;
  for (int done = 0; done < nneed;) {
    int pick = -1;
    for (int i = 0; i < nneed && pick < 0; i++) {
      if (placed[i])
        continue;
      int ok = 1;
      for (int d = 0; d < 2; d++)
        if (need[i]->deps[d].func == OTA_FN_SYSTEM &&
            !has(&tmp, &need[i]->deps[d]))
          ok = 0;
      if (ok)
        pick = i;
    }
    if (pick < 0) {
      /* A dependency nothing in this step can meet first: step through the
       * smallest release providing it (0.7.0+ s/3 needs s/2 >= 110). */
      for (int i = 0; i < nneed; i++) {
        for (int d = 0; !placed[i] && d < 2; d++) {
          const ota_modref_t *dep = &need[i]->deps[d];
          if (dep->func != OTA_FN_SYSTEM || has(&tmp, dep))
            continue;
          const ota_cat_release_t *r = provider(cat, dep, rel->system_version);
          if (!r)
            return refuse(p, OTA_EDEPFAIL,
                          "%s %s needs %c/%u >= %u, which no older release "
                          "provides",
                          rel->name, need[i]->file, ota_fn_letter(dep->func),
                          dep->index, dep->version);
          char w[96];
          snprintf(w, sizeof w, "stepping stone: %s s/%u v%u needs s/%u >= %u",
                   rel->name, need[i]->id.index, need[i]->id.version,
                   dep->index, dep->version);
          int rc = plan_release(x, r, w, depth + 1);
          if (rc)
            return rc;
          goto again;
        }
      }
      return refuse(p, OTA_EDEPFAIL, "%s: dependency cycle", rel->name);
    }
    placed[pick] = 1;
    done++;
    add_module(&step, rel, need[pick], step.nmodules);
    apply(&tmp, &need[pick]->id);
  }

  /* PROTOCOL.md 6.2: the bootloader goes OTA only when a b dependency is
   * unmet and the device's s/3 after this step does not embed one that is
   * good enough. Insert it before the module that needs it. */
  for (int i = 0; i < step.nmodules; i++) {
    const ota_cat_module_t *cm = ota_release_module(
        rel, step.modules[i].id.func, step.modules[i].id.index);
    for (int d = 0; cm && d < 2; d++) {
      const ota_modref_t *dep = &cm->deps[d];
      if (dep->func != OTA_FN_BOOTLOADER || has(&tmp, dep))
        continue;
      const ota_cat_release_t *e = boot_release(cat, dep->version);
      if (e && tmp.s[3] >= e->system_version)
        continue; /* s/3 re-flashes the bootloader at boot */
      const ota_cat_module_t *bm =
          ota_release_module(rel, OTA_FN_BOOTLOADER, 0);
      const ota_cat_release_t *brel = rel;
      if (!bm || bm->id.version < dep->version) {
        brel = e;
        bm = e ? ota_release_module(e, OTA_FN_BOOTLOADER, 0) : NULL;
      }
      if (!bm || bm->id.version < dep->version)
        return refuse(p, OTA_EDEPFAIL,
                      "%s needs bootloader >= %u and the catalogue has none",
                      rel->name, dep->version);
      if (step.nmodules >= OTA_PLAN_MAX_MODULES)
        return refuse(p, OTA_EFULL, "%s: too many modules", rel->name);
      add_module(&step, brel, bm, i);
      apply(&tmp, &bm->id);
      step.bootloader = 1;
      i++;
    }
  }

  if (p->nsteps >= OTA_PLAN_MAX_STEPS)
    return refuse(p, OTA_EFULL, "more than %d steps", OTA_PLAN_MAX_STEPS);
  step.release = rel;
  snprintf(step.why, sizeof step.why, "%s", why);
  for (int i = 0; i < step.nmodules; i++)
    module_cost(&step.cost, x->m, &rel->behaviour, step.modules[i].bytes);
  p->steps[p->nsteps++] = step;
  /* After the reboots an Electron s/3 brings its bootloader up (6.2). */
  if (tmp.s[3]) {
    const ota_cat_release_t *s3rel =
        ota_catalog_find_module(cat, OTA_FN_SYSTEM, 3, tmp.s[3]);
    if (s3rel && s3rel->bootloader_version > tmp.b)
      tmp.b = s3rel->bootloader_version;
  }
  x->st = tmp;
  return 0;
}

static void name_device(const ota_catalog_t *cat, const dstate_t *st, char *out,
                        size_t cap) {
  uint16_t lo = 0xFFFF, hi = 0;
  for (int i = 1; i <= 3; i++) {
    if (!st->s[i])
      continue;
    lo = st->s[i] < lo ? st->s[i] : lo;
    hi = st->s[i] > hi ? st->s[i] : hi;
  }
  const ota_cat_release_t *r =
      lo == hi ? ota_catalog_find_sysver(cat, lo) : NULL;
  if (r && (r->nparts == 3) == (st->s[3] != 0))
    snprintf(out, cap, "%s", r->name);
  else if (!hi)
    snprintf(out, cap, "no system firmware");
  else
    snprintf(out, cap, "s/1 v%u, s/2 v%u, s/3 v%u", st->s[1], st->s[2],
             st->s[3]);
}

int ota_plan_make(const ota_catalog_t *cat, const ota_plan_device_t *dev,
                  const ota_goal_t *goal, const ota_plan_model_t *model,
                  ota_plan_t *plan) {
  ota_plan_model_t def;
  ctx_t x;
  if (!plan)
    return OTA_EINVAL;
  memset(plan, 0, sizeof *plan);
  if (!cat || !dev || !goal || (dev->nmodules && !dev->modules))
    return refuse(plan, OTA_EINVAL, "missing argument");
  if (!model) {
    ota_plan_model_default(&def);
    model = &def;
  }
  memset(&x, 0, sizeof x);
  x.cat = cat;
  x.m = model;
  x.plan = plan;
  plan->product = dev->product;
  for (size_t i = 0; i < dev->nmodules; i++)
    apply(&x.st, &dev->modules[i].id);
  name_device(cat, &x.st, plan->from, sizeof plan->from);
  if (dev->platform && dev->platform != OTA_PLATFORM_ELECTRON)
    return refuse(plan, OTA_EPLATFORM,
                  "platform %u is not an Electron (%d): no plan", dev->platform,
                  OTA_PLATFORM_ELECTRON);

  /* The goal as a target release. */
  const ota_cat_release_t *target = NULL;
  ota_modref_t need = {OTA_FN_NONE, 0, 0};
  switch (goal->kind) {
  case OTA_GOAL_RELEASE:
    target = ota_catalog_find(cat, goal->release);
    if (!target)
      return refuse(plan, OTA_ERELEASE, "unknown release '%s'",
                    goal->release ? goal->release : "(null)");
    break;
  case OTA_GOAL_APP:
    need = goal->app_dep;
    break;
  case OTA_GOAL_HEAL:
    /* The highest unmet system dependency of any module (the user app's,
     * or a half-updated system's), PROTOCOL.md 3.3, 7. */
    for (size_t i = 0; i < dev->nmodules; i++)
      for (int d = 0; d < 2; d++) {
        const ota_modref_t *dep = &dev->modules[i].deps[d];
        if (dep->func == OTA_FN_SYSTEM && !has(&x.st, dep) &&
            (need.func == OTA_FN_NONE || dep->version > need.version))
          need = *dep;
      }
    break;
  default:
    return refuse(plan, OTA_EINVAL, "unknown goal kind %d", (int)goal->kind);
  }
  if (goal->kind != OTA_GOAL_RELEASE) {
    if (need.func == OTA_FN_NONE || has(&x.st, &need)) {
      snprintf(plan->to, sizeof plan->to, "%s", plan->from);
      snprintf(plan->reason, sizeof plan->reason,
               "dependencies already met: nothing to send");
      return 0;
    }
    if (need.func != OTA_FN_SYSTEM)
      return refuse(plan, OTA_EINVAL, "cannot plan for a %s dependency",
                    ota_fn_name(need.func));
    target = provider(cat, &need, 0xFFFF);
    if (!target)
      return refuse(plan, OTA_ERELEASE, "no release provides s/%u >= %u",
                    need.index, need.version);
  }
  snprintf(plan->to, sizeof plan->to, "%s", target->name);

  uint16_t lo = 0xFFFF;
  for (int i = 1; i <= 3; i++)
    if (x.st.s[i] && x.st.s[i] < lo)
      lo = x.st.s[i];
  if (lo != 0xFFFF && lo > target->system_version)
    return refuse(plan, OTA_EDOWNGRADE,
                  "%s (v%u) is older than the device's %s: downgrades are "
                  "refused",
                  target->name, target->system_version, plan->from);

  int rc = plan_release(&x, target, "target", 0);
  if (rc)
    return rc;
  if (plan->nsteps == 0) {
    snprintf(plan->reason, sizeof plan->reason, "already on %s", target->name);
    return 0;
  }
  /* The first connection: a full handshake, Hello, Describe, events. */
  const ota_cat_release_t *cur = ota_catalog_find_sysver(cat, lo);
  connect_cost(&plan->total, model,
               cur ? &cur->behaviour : &plan->steps[0].release->behaviour, 1);
  for (int i = 0; i < plan->nsteps; i++)
    cost_add(&plan->total, &plan->steps[i].cost);
  snprintf(plan->reason, sizeof plan->reason, "%d step%s, %llu payload bytes%s",
           plan->nsteps, plan->nsteps == 1 ? "" : "s",
           (unsigned long long)plan->total.payload,
           dev->product ? ""
                        : "; developer device: the healer is off, flash "
                          "by hand");
  return 0;
}
