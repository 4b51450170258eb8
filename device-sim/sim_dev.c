/* One simulated Electron in otalab-device: device core, DTLS, CoAP channel,
 * OTA receiver, link model and injected faults (PROTOCOL.md 1.4-1.5, 2.1-2.5,
 * 3, 7). Choices: docs/PROTOCOL.md "Device simulator", "Fleets and faults". */
#include "sim_dev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "otalab/coap.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/msg.h"
#include "otalab/outbox.h"

#define MSG_MAX 1536
#define KEEPALIVE_MS (23u * 60u * 1000u) /* PROTOCOL.md 1.5 */
#define RECONNECT_MS 1000u
#define RETRY_MS 5000u /* first retry after a failed handshake (device ms) */
#define RETRY_MAX_MS 300000u /* backoff cap: 5 s, 10, 20 ... 300 s */
#define HS_POLL_MS 50u       /* poll a handshake's real-time timers (real ms) */
#define HS_WAIT_MS 10u       /* re-check a capped connect after (real ms) */
#define DROP_LINK_DEFAULT_MS 20000u
#define FINISH_WAIT_MS 5000u /* wait_confirmable() default (device ms) */

void (*sim_dev_fd_hook)(sim_dev_t *d, int old_fd, int new_fd);
sim_dev_t *sim_log_dev; /* the device being served (log prefix) */

struct sim_dgram {
  uint64_t at; /* device ms */
  int dir;     /* ota_link_dir_t */
  size_t len;
  uint8_t *b;
};

/* Outboxes and scratch are used synchronously, one device at a time. */
static ota_outbox_t ob[2], rxo;
static char describe_buf[4096];
static sim_dev_t *cur;

uint64_t sim_real_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t sim_now(const sim_ctx_t *ctx) {
  uint64_t r = sim_real_ms() - ctx->real_t0;
  return 1000 + (uint64_t)((double)r * ctx->time_scale);
}

static uint64_t dnow(const sim_dev_t *d) {
  return sim_now(d->ctx);
}

static void enter(sim_dev_t *d) {
  sim_log_dev = cur = d;
}

const char *sim_phase_name(sim_phase_t p) {
  static const char *names[] = {
#define SIM_PHASE_NAME(n, s) s,
      SIM_PHASES(SIM_PHASE_NAME)
#undef SIM_PHASE_NAME
  };
  return (unsigned)p < sizeof names / sizeof *names ? names[p] : "?";
}

static void set_phase(sim_dev_t *d, sim_phase_t p, const char *why) {
  if (d->phase != p)
    OTA_LOGD("sim: %s => %s (%s)", sim_phase_name(d->phase), sim_phase_name(p),
             why);
  d->ctx->handshakes += (p == SIM_HANDSHAKE) - (d->phase == SIM_HANDSHAKE);
  d->phase = p;
}

int sim_fault_parse(const char *spec, sim_fault_t *f) {
  unsigned k = 0, ms = 0;
  memset(f, 0, sizeof *f);
  if (sscanf(spec, "drop-link-at-chunk:%u:%u", &k, &ms) == 2 ||
      sscanf(spec, "drop-link-at-chunk:%u", &k) == 1) {
    f->kind = SIM_FAULT_DROP_LINK;
    f->ms = ms ? ms : DROP_LINK_DEFAULT_MS;
  } else if (sscanf(spec, "reset-during-ota:%u", &k) == 1)
    f->kind = SIM_FAULT_RESET_OTA;
  else if (!strcmp(spec, "power-loss-during-apply"))
    f->kind = SIM_FAULT_POWER_APPLY;
  else if (sscanf(spec, "corrupt-chunk:%u", &k) == 1)
    f->kind = SIM_FAULT_CORRUPT;
  else
    return OTA_EPARSE;
  f->chunk = k;
  return 0;
}

static void save(sim_dev_t *d) {
  /* A fleet writes its state files once, at exit: hundreds of devices saving
   * ~400 KB of flash at every reboot cost more than the run they record. */
  if (d->ctx->fleet && !d->exiting)
    return;
  if (d->state_path[0])
    sim_state_save(d->state_path, &d->dev, d->per, d->ctx->durable);
}

void sim_dev_init(sim_dev_t *d, sim_ctx_t *ctx) {
  memset(d, 0, sizeof *d);
  d->ctx = ctx;
  d->product = -1;
  d->fd = -1;
  d->phase = SIM_WAIT;
  d->wake_at = UINT64_MAX;
  ota_link_cfg_t lc;
  ota_link_cfg_init(&lc);
  ota_link_init(&d->link, &lc, 1);
}

/* ---- boot ---------------------------------------------------------------- */

static void log_boot(sim_dev_t *d, const ota_boot_result_t *r) {
  OTA_LOGI("boot: %s, release %s, reason %s%s%s (%s)",
           ota_dev_state_name(r->state), ota_device_release_name(&d->dev),
           ota_reset_name(r->reason),
           r->applied ? ", queued modules applied" : "",
           r->bootloader_reflashed ? ", bootloader re-flashed" : "", r->why);
}

/* Boot (in a hard-fault loop apply --recover once). 0 or -1 (hard fault). */
static int do_boot(sim_dev_t *d, ota_reset_t reason) {
  ota_boot_result_t r;
  d->n.boots++;
  ota_device_boot(&d->dev, reason, &r);
  log_boot(d, &r);
  if (r.state == OTA_DEV_HARD_FAULT_LOOP && d->ctx->nrecover) {
    for (int i = 0; i < d->ctx->nrecover; i++) {
      uint8_t *b;
      size_t n;
      int rc = sim_read_file(d->ctx->recover[i], &b, &n);
      if (!rc)
        rc = ota_device_recover(&d->dev, b, n);
      free(b);
      OTA_LOGI("recover: DFU %s: %s", d->ctx->recover[i],
               rc ? ota_strerror(rc) : "written");
    }
    d->ctx->nrecover = 0; /* once */
    ota_device_boot(&d->dev, OTA_RESET_DFU, &r);
    log_boot(d, &r);
  }
  save(d);
  if (r.state == OTA_DEV_HARD_FAULT_LOOP) {
    OTA_LOGE("HARD FAULT LOOP: the device resets forever and never connects "
             "(%s); flash it over USB: otalab-device --recover FILE...",
             r.why);
    if (!d->ctx->fleet)
      fprintf(stdout, "hard-fault-loop: %s\n", r.why);
    d->exit_code = 3;
    set_phase(d, SIM_DEAD, "hard-fault loop");
    return -1;
  }
  return 0;
}

int sim_dev_setup(sim_dev_t *d, const char *release, const char *app,
                  const char *fixtures) {
  enter(d);
  d->per = calloc(1, sizeof *d->per);
  if (!d->per)
    return OTA_ENOMEM;
  ota_device_init(&d->dev, &d->ctx->cat, d->id);
  d->dev.images = &d->ctx->images;
  int rc = d->state_path[0]
               ? sim_state_load(d->state_path, &d->dev, &d->ctx->cat, d->per)
               : OTA_ENOENT;
  if (rc == 0) {
    memcpy(d->dev.id, d->id, 12);
    OTA_LOGI("state: loaded %s: release %s, %d queued, %u boots%s",
             d->state_path, ota_device_release_name(&d->dev), d->dev.npending,
             d->dev.boots, d->per->session_len ? ", saved session" : "");
    return 0;
  }
  if (rc != OTA_ENOENT)
    OTA_LOGW("state: %s unusable (%s): provisioning anew", d->state_path,
             ota_strerror(rc));
  ota_device_init(&d->dev, &d->ctx->cat, d->id);
  d->dev.images = &d->ctx->images;
  memset(d->per, 0, sizeof *d->per);
  uint8_t *ab = NULL;
  size_t al = 0;
  if (app && (rc = sim_read_file(app, &ab, &al))) {
    OTA_LOGE("--app %s: %s", app, ota_strerror(rc));
    return rc;
  }
  sim_fixture_loader_t fl = {.dir = fixtures, .release = release};
  rc = ota_device_provision(&d->dev, release,
                            fixtures ? sim_fixture_load : NULL, &fl, ab, al);
  free(ab);
  if (rc) {
    OTA_LOGE("cannot provision release %s: %s", release, ota_strerror(rc));
    return rc;
  }
  OTA_LOGI("state: provisioned release %s%s%s", release, app ? " + app " : "",
           app ? app : "");
  return 0;
}

void sim_dev_start(sim_dev_t *d, uint64_t at) {
  enter(d);
  d->boot_pending = 1;
  d->reset_reason = OTA_RESET_POWER_DOWN;
  d->wake_at = at;
  set_phase(d, SIM_WAIT, "power on");
}

/* ---- link ---------------------------------------------------------------- */

static void deliver_down(sim_dev_t *d, const uint8_t *b, size_t len);
static int reset_waits(const sim_dev_t *d);

static void set_fd(sim_dev_t *d, int fd);

static int raw_out(sim_dev_t *d, const uint8_t *b, size_t len) {
  if (d->fd < 0 && d->t && d->t->ops->poll_fd(d->t) >= 0)
    set_fd(d, d->t->ops->poll_fd(d->t)); /* opened by start() */
  if (d->fd < 0)
    return -1;
  ssize_t n = send(d->fd, b, len, 0);
  if (n < 0 && errno != ECONNREFUSED)
    return errno == EAGAIN ? (int)len : -1; /* a full queue is a loss */
  return (int)len;
}

static int hold(sim_dev_t *d, int dir, uint64_t at, const uint8_t *b,
                size_t len) {
  sim_dgram_t *nq = realloc(d->q, (d->nq + 1) * sizeof *nq);
  if (!nq)
    return OTA_ENOMEM;
  d->q = nq;
  sim_dgram_t *g = &d->q[d->nq];
  if (!(g->b = malloc(len ? len : 1)))
    return OTA_ENOMEM;
  memcpy(g->b, b, len);
  g->len = len, g->at = at, g->dir = dir;
  d->nq++;
  return 0;
}

/* DTLS BIO output: through the link's uplink. */
static int link_send(void *ud, const uint8_t *b, size_t len) {
  sim_dev_t *d = ud;
  uint64_t at[2], now = dnow(d);
  int n = ota_link_submit(&d->link, OTA_LINK_UP, now, len, at);
  for (int i = 0; i < n; i++) {
    if (at[i] <= now)
      raw_out(d, b, len);
    else
      hold(d, OTA_LINK_UP, at[i], b, len);
  }
  return (int)len; /* a lost datagram left the modem all the same */
}

static void flush_queue(sim_dev_t *d) {
  for (;;) {
    uint64_t now = dnow(d);
    size_t best = d->nq;
    for (size_t i = 0; i < d->nq; i++)
      if (d->q[i].at <= now && (best == d->nq || d->q[i].at < d->q[best].at))
        best = i;
    if (best == d->nq)
      return;
    sim_dgram_t g = d->q[best];
    d->q[best] = d->q[--d->nq];
    if (g.dir == OTA_LINK_UP)
      raw_out(d, g.b, g.len);
    else if (d->t)
      deliver_down(d, g.b, g.len);
    free(g.b);
  }
}

static void drop_queue(sim_dev_t *d) {
  for (size_t i = 0; i < d->nq; i++)
    free(d->q[i].b);
  free(d->q);
  d->q = NULL;
  d->nq = 0;
}

/* ---- CoAP plumbing (as in the single-device simulator) ------------------- */

static uint16_t chan_send(sim_dev_t *d, ota_outbox_t *next,
                          const ota_coap_msg_t *m) {
  uint16_t mid = 0;
  int rc = ota_coap_chan_send(&d->ch, m, dnow(d), next, &mid);
  if (rc) {
    char sum[96];
    OTA_LOGW("coap: cannot send %s: %s", ota_coap_summary(m, sum, sizeof sum),
             ota_strerror(rc));
  }
  return mid;
}

static ota_outbox_t *nexto; /* where channel effects go while handling */

static uint16_t csend(sim_dev_t *d, const ota_coap_msg_t *m) {
  return chan_send(d, nexto, m);
}

static void cack(sim_dev_t *d, const ota_coap_msg_t *req) {
  if (req->type == OTA_COAP_CON)
    ota_coap_chan_ack(&d->ch, req, dnow(d), nexto);
}

static void staging_free(sim_dev_t *d) {
  free(d->staging);
  d->staging = NULL;
  d->staging_cap = 0;
  d->rx.cfg.staging = NULL;
}

static void ota_progress(sim_dev_t *d) {
  if (d->rx.state != OTA_RX_RECEIVING || !d->rx.nchunks)
    return;
  uint32_t got = ota_rx_received(&d->rx);
  int q = (int)((uint64_t)got * 4 / d->rx.nchunks);
  if (q > d->progress_q) {
    d->progress_q = q;
    OTA_LOGI("ota: progress %d%% (%u/%u chunks)", q * 25, got, d->rx.nchunks);
  }
}

static void ota_finished(sim_dev_t *d, const char *what, uint32_t size) {
  uint64_t sim = dnow(d) - d->ota_t0, real = sim_real_ms() - d->ota_real0;
  d->n.last_ota_sim_ms = sim;
  d->n.last_ota_real_ms = real;
  OTA_LOGI("ota: %s: %u bytes in %llu ms simulated (%llu ms real, link %s)",
           what, size, (unsigned long long)sim, (unsigned long long)real,
           d->link.cfg.name[0] ? d->link.cfg.name : "ideal");
}

static void rx_effects(sim_dev_t *d) {
  for (size_t i = 0; i < rxo.n; i++) {
    const ota_fx_t *fx = &rxo.fx[i];
    const uint8_t *b = ota_outbox_bytes(&rxo, fx);
    ota_coap_msg_t m;
    ota_rx_report_t rep;
    switch (fx->kind) {
    case OTA_FX_SEND:
      if (ota_outbox_msg(&rxo, fx, &m) == 0)
        csend(d, &m);
      break;
    case OTA_FX_FLASH_WRITE: {
      uint32_t off = fx->addr - OTA_ADDR_OTA;
      if (fx->addr < OTA_ADDR_OTA || off > d->staging_cap ||
          fx->len > d->staging_cap - off)
        OTA_LOGW("ota: flash write outside the OTA region (0x%08x+%zu)",
                 (unsigned)fx->addr, fx->len);
      else if (fx->len)
        memcpy(d->staging + off, b, fx->len);
      break;
    }
    case OTA_FX_EVENT:
      if (ota_rx_report_get(&rxo, fx, &rep))
        break;
      if (rep.kind == OTA_RX_EV_BEGIN) {
        d->progress_q = 0;
        d->ota_t0 = dnow(d), d->ota_real0 = sim_real_ms();
        /* The OTA region is only held while an update runs, and only as
         * large as the announced file (a fleet cannot afford 128 KB per
         * device); writes past it are refused below as past the region. */
        size_t cap = rep.file_size && rep.file_size < OTA_STAGING_SIZE
                         ? rep.file_size
                         : OTA_STAGING_SIZE;
        if (d->staging_cap != cap) {
          staging_free(d);
          d->staging = calloc(1, cap);
          d->staging_cap = d->staging ? cap : 0;
        }
        d->rx.cfg.staging = d->staging;
        OTA_LOGI("ota: begin: %u bytes, store %u, address 0x%x, %s",
                 rep.file_size, rep.store, (unsigned)rep.address,
                 rep.fast ? "fast OTA" : "normal (chunk by chunk)");
      } else if (rep.kind == OTA_RX_EV_APPLY || rep.kind == OTA_RX_EV_REJECT) {
        /* Finished after the reply (2.04 with the result) has gone out:
         * finish_ota() from settle(). */
        d->fin = rep;
        d->fin_pending = 1;
      }
      break;
    case OTA_FX_REBOOT:
      d->reboot = 1;
      break;
    case OTA_FX_LOG:
      OTA_LOGD("ota: %.*s", (int)fx->len, (const char *)b);
      break;
    default:
      break;
    }
  }
  ota_outbox_clear(&rxo);
}

static void serve_describe(sim_dev_t *d, const ota_coap_msg_t *m) {
  int flags = ota_msg_describe_flags(m);
  size_t len = 0;
  ota_coap_msg_t r;
  int rc = ota_device_describe_json(&d->dev, flags, describe_buf,
                                    sizeof describe_buf, &len);
  if (rc) {
    OTA_LOGW("describe: flags %d not served: %s: 4.00", flags,
             ota_strerror(rc));
    if (m->type == OTA_COAP_CON) {
      ota_msg_build_ack_response(&r, m, OTA_COAP_BAD_REQUEST, NULL, 0);
      csend(d, &r);
    }
    return;
  }
  const ota_cat_release_t *rel = ota_device_release(&d->dev);
  ota_describe_form_t form = rel ? rel->behaviour.describe : OTA_DESCRIBE_ACK;
  static const char *form_names[] = {"piggy-backed ACK", "separate CON",
                                     "POST d"};
  if (form == OTA_DESCRIBE_ACK && m->type == OTA_COAP_CON) {
    ota_msg_build_ack_response(&r, m, OTA_COAP_CONTENT, describe_buf, len);
    csend(d, &r);
  } else if (form == OTA_DESCRIBE_POST) {
    uint8_t fb = (uint8_t)flags;
    cack(d, m);
    ota_msg_build_request(&r, OTA_COAP_CON, OTA_COAP_POST, 0, NULL, 0, 'd');
    ota_coap_add_option(&r, OTA_COAP_OPT_URI_QUERY, &fb, 1);
    ota_coap_set_payload(&r, describe_buf, len);
    csend(d, &r);
  } else {
    cack(d, m);
    ota_msg_build_separate_response(
        &r, m->type == OTA_COAP_CON ? OTA_COAP_CON : OTA_COAP_NON,
        OTA_COAP_CONTENT, 0, m->token, m->tkl, describe_buf, len);
    csend(d, &r);
  }
  d->described = 1;
  OTA_LOGI("describe: served flags %d as %s (%zu bytes, %s)", flags,
           form_names[form], len, ota_dev_state_name(d->dev.state));
}

static void publish_handshake_events(sim_dev_t *d) {
  ota_dev_event_t ev[OTA_DEVICE_MAX_EVENTS];
  size_t n = ota_device_handshake_events(&d->dev, ev, OTA_DEVICE_MAX_EVENTS);
  for (size_t i = 0; i < n; i++) {
    ota_msg_event_t e = {.name = ev[i].name,
                         .name_len = strlen(ev[i].name),
                         .data = (const uint8_t *)ev[i].data,
                         .data_len = strlen(ev[i].data),
                         .ttl = OTA_EVENT_TTL_DEFAULT,
                         .is_private = true};
    ota_coap_msg_t m;
    uint8_t store[3];
    if (ota_msg_build_event(&m, OTA_COAP_NON, 0, &e, store) == 0) {
      csend(d, &m);
      OTA_LOGI("event: published %s \"%s\" (private, NON)", ev[i].name,
               ev[i].data);
    }
  }
}

/* ---- faults -------------------------------------------------------------- */

static void close_conn(sim_dev_t *d, const char *why);

/* A chunk is about to reach the OTA receiver: apply chunk faults. Returns 1
 * when the chunk must not be delivered (the link or the device went away). */
static int chunk_faults(sim_dev_t *d, ota_coap_msg_t *m) {
  ota_msg_chunk_t c;
  if (ota_msg_chunk_parse(m, &c))
    return 0;
  uint32_t idx = c.has_index ? c.index : ota_rx_received(&d->rx);
  for (int i = 0; i < d->nfaults; i++) {
    sim_fault_t *f = &d->faults[i];
    if (f->fired || f->kind == SIM_FAULT_POWER_APPLY || f->chunk != idx)
      continue;
    f->fired = 1;
    d->n.faults++;
    if (f->kind == SIM_FAULT_CORRUPT && c.len) {
      ((uint8_t *)c.data)[c.len / 2] ^= 0x5a;
      OTA_LOGW("fault: corrupt-chunk:%u: byte %zu of the payload flipped "
               "before the CRC check (%s)",
               idx, c.len / 2,
               c.has_index ? "fast OTA: the chunk counts as missed"
                           : "normal OTA: answered 4.00, resent");
    } else if (f->kind == SIM_FAULT_DROP_LINK) {
      uint64_t now = dnow(d);
      d->link.cfg.outage_start_ms = now;
      d->link.cfg.outage_end_ms = now + f->ms;
      OTA_LOGW("fault: drop-link-at-chunk:%u:%u: the cellular link drops "
               "during chunk %u for %u ms: the cloud connection is lost; the "
               "module starts again from zero at the next UpdateBegin",
               idx, f->ms, idx, f->ms);
      close_conn(d, "link lost (fault)");
      d->wake_at = now + f->ms;
      return 1;
    } else if (f->kind == SIM_FAULT_RESET_OTA) {
      OTA_LOGW("fault: reset-during-ota:%u: the device resets while receiving "
               "chunk %u: nothing was queued, it boots the old firmware and "
               "comes back by session resume (and publishes its safe-mode "
               "event again, PROTOCOL.md 7)",
               idx, idx);
      close_conn(d, "reset (fault)");
      d->boot_pending = 1;
      d->reset_reason = OTA_RESET_WATCHDOG;
      d->wake_at = dnow(d);
      return 1;
    }
  }
  return 0;
}

/* ---- incoming ------------------------------------------------------------ */

static void on_deliver(sim_dev_t *d, uint8_t *b, size_t len) {
  ota_coap_msg_t m;
  ota_msg_kind_t kind;
  char sum[128];
  unsigned type = len ? (b[0] >> 4) & 3 : 0;
  if (type == OTA_COAP_ACK || type == OTA_COAP_RST) {
    if (ota_coap_decode(b, len, &m))
      return;
    if (type == OTA_COAP_RST)
      OTA_LOGW("coap: RST for our mid 0x%04x", m.mid);
    if (m.mid == d->hello_mid && !d->hello_acked && type == OTA_COAP_ACK) {
      d->hello_acked = 1;
      OTA_LOGI("hello: acknowledged: connected (%s, release %s)",
               ota_dev_state_name(d->dev.state),
               ota_device_release_name(&d->dev));
      publish_handshake_events(d);
      d->per->next_mid = ota_coap_chan_peek_mid(&d->ch);
      if (!d->ctx->fleet)
        save(d);
    } else if (m.mid == d->hello_mid && type == OTA_COAP_RST) {
      d->fail = "Hello answered with RST";
      d->fatal = 1;
    } else if (d->ping_out && m.mid == d->ping_mid) {
      d->ping_out = 0;
      OTA_LOGI("keep-alive: ping acknowledged");
    }
    return;
  }
  int rc = ota_msg_parse_cloud_request(b, len, &m, &kind);
  if (rc) {
    if (ota_coap_decode(b, len, &m) == 0 && ota_coap_is_response(m.code)) {
      OTA_LOGD("coap: response %s ignored",
               ota_coap_summary(&m, sum, sizeof sum));
      return;
    }
    OTA_LOGW("coap: request rejected by the strict parser (%s, %zu bytes)%s",
             ota_strerror(rc), len,
             type == OTA_COAP_CON ? ": RST" : ": ignored");
    if (type == OTA_COAP_CON && len >= 4) {
      ota_coap_msg_t r;
      ota_msg_build_empty(&r, OTA_COAP_RST, (uint16_t)(b[2] << 8 | b[3]));
      csend(d, &r);
    }
    return;
  }
  OTA_LOGD("coap: rx %s %s", ota_msg_kind_name(kind),
           ota_coap_summary(&m, sum, sizeof sum));
  ota_coap_msg_t r;
  switch (kind) {
  case OTA_MSG_PING:
    cack(d, &m);
    OTA_LOGI("ping: answered the server's ping");
    break;
  case OTA_MSG_HELLO:
    cack(d, &m);
    ota_device_on_server_hello(&d->dev);
    OTA_LOGI("hello: server Hello received (OTA flag cleared)");
    break;
  case OTA_MSG_DESCRIBE:
    serve_describe(d, &m);
    break;
  case OTA_MSG_UPDATE_BEGIN:
  case OTA_MSG_CHUNK:
  case OTA_MSG_UPDATE_DONE:
    if (kind == OTA_MSG_CHUNK && d->nfaults && chunk_faults(d, &m))
      return;
    if (ota_rx_on_message(&d->rx, &m, dnow(d), &rxo))
      OTA_LOGW("ota: outbox full");
    rx_effects(d);
    if (kind == OTA_MSG_CHUNK)
      ota_progress(d);
    break;
  case OTA_MSG_SIGNAL:
    ota_msg_build_ack_response(&r, &m, OTA_COAP_CHANGED, NULL, 0);
    if (m.type == OTA_COAP_CON)
      csend(d, &r);
    OTA_LOGI("signal: %s", m.payload_len && m.payload[0] ? "start" : "stop");
    break;
  case OTA_MSG_EVENT: {
    ota_msg_event_t e;
    cack(d, &m);
    if (ota_msg_event_parse(&m, &e) == 0) {
      OTA_LOGI("event: received %.*s \"%.*s\"", (int)e.name_len, e.name,
               (int)e.data_len, (const char *)e.data);
      if (e.name_len == 18 && !memcmp(e.name, "spark/device/reset", 18) &&
          e.data_len == 9 && !memcmp(e.data, "safe mode", 9)) {
        ota_device_request_safe_mode(&d->dev);
        d->reboot = 2;
      }
    }
    break;
  }
  case OTA_MSG_FUNCTION:
  case OTA_MSG_VARIABLE:
    if (m.type == OTA_COAP_CON) {
      ota_msg_build_ack_response(&r, &m, OTA_COAP_NOT_FOUND, NULL, 0);
      csend(d, &r);
    }
    OTA_LOGI("coap: %s: no such function/variable: 4.04",
             ota_msg_kind_name(kind));
    break;
  default:
    cack(d, &m);
    OTA_LOGI("coap: %s acknowledged, ignored", ota_msg_kind_name(kind));
    break;
  }
}

/* Run the channel's effects (and what handling them produces) to the end. */
static void flush(sim_dev_t *d) {
  ota_outbox_t *c = &ob[0], *nx = &ob[1];
  while (c->n) {
    nexto = nx;
    for (size_t i = 0; i < c->n && d->t; i++) {
      const ota_fx_t *fx = &c->fx[i];
      uint8_t *b = (uint8_t *)ota_outbox_bytes(c, fx);
      if (fx->kind == OTA_FX_SEND) {
        int rc = d->t->ops->send(d->t, b, fx->len);
        if (rc < 0)
          OTA_LOGW("coap: send failed: %s", ota_strerror(rc));
        d->last_io = dnow(d);
      } else if (fx->kind == OTA_FX_DELIVER) {
        on_deliver(d, b, fx->len);
      } else if (fx->kind == OTA_FX_TIMEOUT) {
        if (fx->mid == d->hello_mid && !d->hello_acked) {
          d->fail = "Hello not acknowledged: refused by the server?";
          d->fatal = 1;
        } else if (d->ping_out && fx->mid == d->ping_mid) {
          d->fail = "keep-alive ping not acknowledged";
        } else
          OTA_LOGW("coap: no ACK for mid 0x%04x", fx->mid);
      }
    }
    ota_outbox_clear(c);
    ota_outbox_t *t = c;
    c = nx, nx = t;
  }
  ota_outbox_clear(&ob[0]);
  ota_outbox_clear(&ob[1]);
  nexto = &ob[0];
}

static void send_hello(sim_dev_t *d) {
  uint8_t h[OTA_HELLO_LEN];
  ota_device_hello_payload(&d->dev, h);
  if (d->product >= 0) {
    h[0] = (uint8_t)(d->product >> 8);
    h[1] = (uint8_t)d->product;
  }
  ota_coap_msg_t m;
  ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_POST, 0, NULL, 0, 'h');
  ota_coap_set_payload(&m, h, OTA_MSG_HELLO_PAYLOAD_LEN);
  d->hello_mid = csend(d, &m);
  OTA_LOGI("hello: sent (flags 0x%02x%s, product %u)", h[5],
           (h[5] & 1) ? " = OTA applied" : "", (unsigned)(h[0] << 8 | h[1]));
}

/* ---- connection lifecycle ------------------------------------------------ */

static void set_fd(sim_dev_t *d, int fd) {
  int old = d->fd;
  d->fd = fd;
  if (sim_dev_fd_hook && old != fd)
    sim_dev_fd_hook(d, old, fd);
}

static void close_conn(sim_dev_t *d, const char *why) {
  if (!d->t)
    return;
  if (d->phase == SIM_ONLINE) {
    size_t sl = 0;
    d->per->next_mid = ota_coap_chan_peek_mid(&d->ch);
    if (d->t->ops->save_session(d->t, d->per->session, sizeof d->per->session,
                                &sl) == 0)
      d->per->session_len = sl;
  }
  if (d->fatal)
    d->per->session_len = 0; /* refused: the next start does a full one */
  d->last_stats = d->t->stats;
  d->t->ops->close(d->t, 0); /* no close_notify: the session stays valid */
  d->t->ops->destroy(d->t);
  d->t = NULL;
  set_fd(d, -1);
  drop_queue(d);
  ota_rx_free(&d->rx);
  ota_coap_chan_free(&d->ch);
  staging_free(d);
  save(d);
  set_phase(d, d->fatal ? SIM_DEAD : SIM_WAIT, why);
  if (d->fatal)
    d->exit_code = 1;
}

static void online(sim_dev_t *d) {
  sim_transport_stats_t *st = &d->t->stats;
  d->hs_fails = 0;
  d->was_online = 1;
  if (st->resumed)
    d->n.resumed_hs++;
  else
    d->n.full_hs++;
  OTA_LOGI("connect: DTLS %s handshake with %s:%u done (%u ms)",
           st->resumed ? "resumed" : "full", d->ctx->host, d->ctx->port,
           st->hs_ms);
  size_t sl = 0;
  if (d->t->ops->save_session(d->t, d->per->session, sizeof d->per->session,
                              &sl) == 0)
    d->per->session_len = sl;
  ota_coap_chan_cfg_t ccfg;
  ota_coap_chan_cfg_default(&ccfg);
  uint64_t t0 = dnow(d);
  ccfg.first_mid =
      d->per->next_mid ? d->per->next_mid : (uint16_t)(sim_real_ms() | 1);
  ccfg.seed =
      t0 ^ (uint64_t)getpid() << 20 ^ (uint64_t)d->id[11] << 8 ^ d->id[10];
  ota_coap_chan_init(&d->ch, &ccfg);
  ota_rx_cfg_t rcfg;
  ota_rx_config_default(&rcfg);
  const ota_cat_release_t *rel = ota_device_release(&d->dev);
  if (rel)
    ota_rx_config_release(&rcfg, rel->major, rel->minor, rel->patch);
  rcfg.staging = NULL;
  rcfg.verify = ota_device_rx_verify;
  rcfg.verify_ud = &d->dev;
  ota_rx_init(&d->rx, &rcfg);
  d->hello_acked = d->ping_out = d->described = d->reboot = 0;
  d->fail = NULL;
  d->fatal = 0;
  d->last_io = t0;
  set_phase(d, SIM_ONLINE, "handshake done");
  nexto = &ob[0];
  send_hello(d);
  flush(d);
}

static void handshake_result(sim_dev_t *d, int rc) {
  if (rc == 1)
    return;
  if (rc == 0) {
    online(d);
    return;
  }
  d->n.failed_hs++;
  d->hs_fails++;
  OTA_LOGE("connect: %s:%u failed: %s", d->ctx->host, d->ctx->port,
           ota_strerror(rc));
  d->t->ops->destroy(d->t);
  d->t = NULL;
  set_fd(d, -1);
  drop_queue(d);
  if (!d->ctx->fleet && !d->was_online) {
    /* The first connect of a single device: a wrong address, port or key is
     * a setup error, not an outage to wait out. */
    OTA_LOGE("connect: no session with %s:%u (%s): giving up, exit 1",
             d->ctx->host, d->ctx->port, ota_strerror(rc));
    d->exit_code = 1;
    set_phase(d, SIM_DEAD, "cannot connect");
    return;
  }
  /* Device OS keeps trying; backoff 5 s doubling to 5 min (device time). */
  uint32_t sh = d->hs_fails - 1 < 6 ? d->hs_fails - 1 : 6;
  uint64_t back = (uint64_t)RETRY_MS << sh;
  if (back > RETRY_MAX_MS)
    back = RETRY_MAX_MS;
  d->wake_at = dnow(d) + back;
  OTA_LOGW("connect: attempt %u failed: retry in %llu s", d->hs_fails,
           (unsigned long long)(back / 1000));
  set_phase(d, SIM_WAIT, "handshake failed: retry later");
}

/* OTALAB_DEVICE_HS_TIMEOUT=MIN:MAX (real ms): shorter handshake timers for
 * tests of an unanswered reconnect (default 3000:24000, a 45 s give-up). */
static void hs_timeout(uint32_t *min_ms, uint32_t *max_ms) {
  const char *e = getenv("OTALAB_DEVICE_HS_TIMEOUT");
  unsigned a = 0, b = 0;
  *min_ms = *max_ms = 0;
  if (e && sscanf(e, "%u:%u", &a, &b) == 2 && a && b >= a)
    *min_ms = a, *max_ms = b;
}

static void connect_now(sim_dev_t *d) {
  if (d->boot_pending) {
    d->boot_pending = 0;
    if (d->power_loss_pending && d->dev.npending) {
      d->power_loss_pending = 0;
      d->n.faults++;
      OTA_LOGW("fault: power-loss-during-apply: power lost while the "
               "bootloader copies %d queued module(s): the DCT slots stay "
               "queued and the copy starts again at the next boot (whole or "
               "nothing)",
               d->dev.npending);
      d->reset_reason = OTA_RESET_POWER_DOWN;
    }
    if (do_boot(d, (ota_reset_t)d->reset_reason))
      return;
  }
  sim_dtls_cfg_t cfg = {.host = d->ctx->host,
                        .port = d->ctx->port,
                        .key_file = d->key_file,
                        .cert_file = d->cert_file,
                        .key_pem = d->key_pem,
                        .cert_pem = d->cert_pem,
                        .server_cert = d->ctx->server_cert_file,
                        .server_cert_pem = d->ctx->server_cert_pem,
                        .session = d->per->session_len ? d->per->session : NULL,
                        .session_len = d->per->session_len,
                        .keylog_file = d->ctx->keylog,
                        .raw_send = link_send,
                        .raw_ud = d};
  hs_timeout(&cfg.hs_min_ms, &cfg.hs_max_ms);
  d->t = sim_dtls_new(&cfg);
  if (!d->t) {
    d->exit_code = 2;
    set_phase(d, SIM_DEAD, "bad keys");
    return;
  }
  set_phase(d, SIM_HANDSHAKE, "connecting");
  d->hs_real0 = sim_real_ms();
  d->hs_poll_at = dnow(d) + (uint64_t)(HS_POLL_MS * d->ctx->time_scale);
  int rc = d->t->ops->start(d->t);
  if (d->t->ops->poll_fd(d->t) >= 0)
    set_fd(d, d->t->ops->poll_fd(d->t));
  handshake_result(d, rc);
}

static void deliver_down(sim_dev_t *d, const uint8_t *b, size_t len) {
  d->t->ops->feed(d->t, b, len);
  if (d->phase == SIM_HANDSHAKE) {
    handshake_result(d, d->t->ops->step(d->t));
    return;
  }
  uint8_t in[MSG_MAX];
  int n;
  while (d->t && (!d->reboot || (!d->fin_pending && reset_waits(d))) &&
         (n = d->t->ops->recv(d->t, in, sizeof in))) {
    if (n < 0) {
      OTA_LOGE("connection: lost: %s", ota_strerror(n));
      d->fatal = n == OTA_EREFUSED;
      d->fail = "connection lost";
      return;
    }
    d->last_io = dnow(d);
    int e =
        ota_coap_chan_on_datagram(&d->ch, in, (size_t)n, d->last_io, &ob[0]);
    if (e && e != OTA_ENOBUFS)
      OTA_LOGW("coap: malformed datagram (%d bytes): %s, dropped", n,
               ota_strerror(e));
    flush(d);
  }
}

/* Spark_Finish_Firmware_Update: queue the valid module for the bootloader
 * (or drop a rejected one) and save, once the UpdateDone reply has left. */
static void finish_ota(sim_dev_t *d) {
  const ota_rx_report_t *rep = &d->fin;
  d->fin_pending = 0;
  if (rep->kind == OTA_RX_EV_APPLY) {
    int rc = ota_device_queue_staged(&d->dev, d->staging, rep->file_size);
    ota_finished(d, "received", rep->file_size);
    d->n.otas_ok++;
    d->n.ota_bytes += rep->file_size;
    if (rc)
      OTA_LOGE("ota: verified but not queued: %s", ota_strerror(rc));
    else
      OTA_LOGI("ota: verified %u bytes: queued for the bootloader (%d "
               "pending)",
               rep->file_size, d->dev.npending);
    save(d);
  } else {
    d->n.otas_rejected++;
    OTA_LOGW("ota: rejected (%d, %s): %s; keeping the old firmware",
             rep->syserr, ota_strerror(rep->err), rep->why);
  }
  staging_free(d);
}

/* Uplink datagrams the link still holds (handed to the modem). */
static size_t uplink_held(const sim_dev_t *d) {
  size_t n = 0;
  for (size_t i = 0; i < d->nq; i++)
    n += d->q[i].dir == OTA_LINK_UP;
  return n;
}

/* An update reset waits (DTLSProtocol::wait_confirmable, up to
 * FINISH_WAIT_MS) for its CON messages to be acknowledged, and always for
 * the datagrams already handed to the modem to leave. */
static int reset_waits(const sim_dev_t *d) {
  if (d->reboot != 1 || d->fail)
    return 0;
  if (uplink_held(d))
    return 1;
  return ota_coap_chan_pending_count(&d->ch) && dnow(d) < d->reset_by;
}

/* After handling: a failure or a reboot ends the connection. */
static void settle(sim_dev_t *d) {
  if (d->phase != SIM_ONLINE)
    return;
  if (d->fin_pending) {
    finish_ota(d);
    d->reset_by = dnow(d) + FINISH_WAIT_MS;
    if (reset_waits(d))
      OTA_LOGI("reboot: pending: %zu datagram(s) still on the uplink, %zu "
               "CON message(s) unacknowledged",
               uplink_held(d), ota_coap_chan_pending_count(&d->ch));
  }
  if (d->fail && (!d->reboot || d->fatal)) {
    OTA_LOGE("connection: %s", d->fail);
    d->n.reconnects += !d->fatal;
    int fatal = d->fatal;
    close_conn(d, d->fail);
    if (!fatal) {
      OTA_LOGI("connection: reconnecting in 1 s");
      d->wake_at = dnow(d) + RECONNECT_MS;
    }
  } else if (d->reboot) {
    if (reset_waits(d))
      return;
    if (d->fail)
      OTA_LOGW("connection: %s while the reset was pending", d->fail);
    int safe = d->reboot == 2;
    OTA_LOGI("reboot: %s",
             safe ? "safe mode requested" : "after the OTA update");
    close_conn(d, "reboot");
    d->boot_pending = 1;
    d->reset_reason = safe ? OTA_RESET_SAFE_MODE : OTA_RESET_UPDATE;
    for (int i = 0; !safe && i < d->nfaults; i++)
      if (d->faults[i].kind == SIM_FAULT_POWER_APPLY && !d->faults[i].fired &&
          d->dev.npending) {
        d->faults[i].fired = 1;
        d->power_loss_pending = 1;
      }
    d->wake_at = dnow(d);
  }
}

void sim_dev_on_readable(sim_dev_t *d) {
  enter(d);
  uint8_t in[2048];
  while (d->t && d->fd >= 0) {
    ssize_t n = recv(d->fd, in, sizeof in, MSG_DONTWAIT);
    if (n < 0)
      break;
    uint64_t at[2], now = dnow(d);
    int k = ota_link_submit(&d->link, OTA_LINK_DOWN, now, (size_t)n, at);
    for (int i = 0; i < k && d->t; i++) {
      if (at[i] <= now)
        deliver_down(d, in, (size_t)n);
      else
        hold(d, OTA_LINK_DOWN, at[i], in, (size_t)n);
    }
    settle(d);
  }
}

void sim_dev_on_timer(sim_dev_t *d) {
  enter(d);
  uint64_t now = dnow(d);
  if (d->phase == SIM_WAIT && now >= d->wake_at) {
    if (d->ctx->max_handshakes &&
        d->ctx->handshakes >= d->ctx->max_handshakes) {
      /* a fleet's connects queue behind the handshakes in flight */
      d->wake_at = now + (uint64_t)(HS_WAIT_MS * d->ctx->time_scale);
      return;
    }
    d->wake_at = UINT64_MAX;
    connect_now(d);
    settle(d);
    return;
  }
  flush_queue(d);
  settle(d);
  if (d->phase == SIM_HANDSHAKE && d->t) {
    d->hs_poll_at = now + (uint64_t)(HS_POLL_MS * d->ctx->time_scale);
    handshake_result(d, d->t->ops->step(d->t));
    settle(d);
    return;
  }
  if (d->phase != SIM_ONLINE)
    return;
  now = dnow(d);
  nexto = &ob[0];
  ota_coap_chan_on_timer(&d->ch, now, &ob[0]);
  ota_rx_on_timer(&d->rx, now, &rxo);
  rx_effects(d);
  uint64_t ka = (uint64_t)(KEEPALIVE_MS);
  if (d->hello_acked && !d->ping_out && now - d->last_io >= ka) {
    ota_coap_msg_t p;
    ota_msg_build_empty(&p, OTA_COAP_CON, 0);
    d->ping_mid = csend(d, &p);
    d->ping_out = 1;
    OTA_LOGI("keep-alive: ping (idle %llu ms)",
             (unsigned long long)(now - d->last_io));
  }
  flush(d);
  settle(d);
}

uint64_t sim_dev_next_deadline(const sim_dev_t *d) {
  uint64_t dl = UINT64_MAX;
  if (d->phase == SIM_WAIT)
    return d->wake_at;
  if (d->phase == SIM_DEAD)
    return UINT64_MAX;
  for (size_t i = 0; i < d->nq; i++)
    if (d->q[i].at < dl)
      dl = d->q[i].at;
  if (d->phase == SIM_HANDSHAKE) {
    /* mbedTLS's retransmit timer runs on real time: look every 50 ms. A
     * fixed deadline (not now + 50): a busy loop must not keep moving it. */
    return d->hs_poll_at < dl ? d->hs_poll_at : dl;
  }
  uint64_t c = ota_coap_chan_next_deadline(&d->ch);
  uint64_t r = ota_rx_next_deadline(&d->rx);
  if (c < dl)
    dl = c;
  if (r < dl)
    dl = r;
  if (d->hello_acked && !d->ping_out && d->last_io + KEEPALIVE_MS < dl)
    dl = d->last_io + KEEPALIVE_MS;
  if (d->reboot == 1 && ota_coap_chan_pending_count(&d->ch) &&
      d->reset_by >= dnow(d) && d->reset_by < dl)
    dl = d->reset_by; /* the pending update reset */
  return dl;
}

int sim_dev_ready(const sim_dev_t *d) {
  return d->phase == SIM_ONLINE && d->hello_acked && d->described;
}

void sim_dev_free(sim_dev_t *d) {
  if (!d->per)
    return;
  enter(d);
  d->exiting = 1;
  close_conn(d, "exit");
  save(d);
  drop_queue(d);
  staging_free(d);
  ota_device_free(&d->dev);
  free(d->per);
  d->per = NULL;
  free(d->key_pem);
  free(d->cert_pem);
  d->key_pem = d->cert_pem = NULL;
}
