/* otalab-device: a simulated Electron: device core (flash, boot, describe),
 * DTLS transport, CoAP channel and OTA receiver wired together (PROTOCOL.md
 * 1.4-1.5, 2.1-2.5, 3, 7). Choices: docs/PROTOCOL.md "Device simulator". */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "otalab/catalog.h"
#include "otalab/coap.h"
#include "otalab/coap_chan.h"
#include "otalab/device.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/msg.h"
#include "otalab/ota_rx.h"
#include "otalab/outbox.h"
#include "sim_state.h"
#include "sim_transport.h"

#ifndef OTALAB_DEFAULT_CATALOG
#define OTALAB_DEFAULT_CATALOG "/usr/share/otalab/electron.json"
#endif

#define MSG_MAX 1536
#define KEEPALIVE_MS (23u * 60u * 1000u) /* PROTOCOL.md 1.5 */
#define MAX_RECOVER 8

enum { EXIT_OK = 0, EXIT_CONN = 1, EXIT_USAGE = 2, EXIT_HARD_FAULT = 3 };

/* ---- process-wide state (big buffers live here, not on the stack) ---- */
static ota_catalog_t cat;
static ota_device_t dev;
static sim_persist_t per;
static ota_coap_chan_t ch;
static ota_rx_t rx;
static ota_outbox_t ob[2], rxo;
static uint8_t staging[OTA_STAGING_SIZE];
static char describe_buf[4096];

static struct {
  const char *state, *server, *host, *key, *cert, *pin;
  uint16_t port;
  int product; /* -1: from the user app */
  double time_scale;
  int once;
  const char *recover[MAX_RECOVER];
  int nrecover, recovered;
} opt = {.product = -1, .time_scale = 1.0};

static volatile sig_atomic_t stop;
static void on_signal(int s) {
  (void)s;
  stop = 1;
}

static void log_sink(void *ud, ota_log_level_t lvl, const char *line) {
  static const char *names[] = {"E", "W", "I", "D"};
  struct timespec ts;
  (void)ud;
  clock_gettime(CLOCK_REALTIME, &ts);
  fprintf(stderr, "%ld.%03ld %s %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000,
          names[lvl], line);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int hexid(const char *s, uint8_t out[12]) {
  if (strlen(s) != 24)
    return OTA_EINVAL;
  for (int i = 0; i < 12; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1)
      return OTA_EINVAL;
    out[i] = (uint8_t)v;
  }
  return 0;
}

static void save(void) {
  if (opt.state)
    sim_state_save(opt.state, &dev, &per);
}

/* ---- boot ---------------------------------------------------------------- */

static void log_boot(const ota_boot_result_t *r) {
  OTA_LOGI("boot: %s, release %s, reason %s%s%s (%s)",
           ota_dev_state_name(r->state), ota_device_release_name(&dev),
           ota_reset_name(r->reason),
           r->applied ? ", queued modules applied" : "",
           r->bootloader_reflashed ? ", bootloader re-flashed" : "", r->why);
}

/* Boot; in a hard-fault loop apply --recover (DFU) once and boot again.
 * Returns the final state. */
static ota_dev_state_t boot(ota_reset_t reason) {
  ota_boot_result_t r;
  ota_device_boot(&dev, reason, &r);
  log_boot(&r);
  if (r.state == OTA_DEV_HARD_FAULT_LOOP && opt.nrecover && !opt.recovered) {
    opt.recovered = 1;
    for (int i = 0; i < opt.nrecover; i++) {
      uint8_t *b;
      size_t n;
      int rc = sim_read_file(opt.recover[i], &b, &n);
      if (!rc)
        rc = ota_device_recover(&dev, b, n);
      free(b);
      OTA_LOGI("recover: DFU %s: %s", opt.recover[i],
               rc ? ota_strerror(rc) : "written");
    }
    ota_device_boot(&dev, OTA_RESET_DFU, &r);
    log_boot(&r);
  }
  save();
  if (r.state == OTA_DEV_HARD_FAULT_LOOP) {
    OTA_LOGE("HARD FAULT LOOP: the device resets forever and never connects "
             "(%s); flash it over USB: otalab-device --recover FILE...",
             r.why);
    fprintf(stdout, "hard-fault-loop: %s\n", r.why);
  }
  return r.state;
}

/* ---- one cloud connection ------------------------------------------------ */

typedef struct {
  sim_transport_t *t;
  ota_outbox_t *next; /* where channel effects go while handling */
  uint16_t hello_mid, ping_mid;
  int hello_acked, ping_out, described, reboot, progress_q;
  const char *fail; /* set: give up this connection */
  int fatal;        /* the server refused us: do not reconnect */
  uint64_t last_io;
} conn_t;

static uint16_t chan_send(conn_t *c, const ota_coap_msg_t *m) {
  uint16_t mid = 0;
  int rc = ota_coap_chan_send(&ch, m, now_ms(), c->next, &mid);
  if (rc) {
    char sum[96];
    OTA_LOGW("coap: cannot send %s: %s", ota_coap_summary(m, sum, sizeof sum),
             ota_strerror(rc));
  }
  return mid;
}

static void chan_ack(conn_t *c, const ota_coap_msg_t *req) {
  if (req->type == OTA_COAP_CON)
    ota_coap_chan_ack(&ch, req, now_ms(), c->next);
}

static void ota_progress(conn_t *c) {
  if (rx.state != OTA_RX_RECEIVING || !rx.nchunks)
    return;
  uint32_t got = ota_rx_received(&rx);
  int q = (int)((uint64_t)got * 4 / rx.nchunks);
  if (q > c->progress_q) {
    c->progress_q = q;
    OTA_LOGI("ota: progress %d%% (%u/%u chunks)", q * 25, got, rx.nchunks);
  }
}

/* Carry out the OTA receiver's effects, in order. */
static void rx_effects(conn_t *c) {
  for (size_t i = 0; i < rxo.n; i++) {
    const ota_fx_t *fx = &rxo.fx[i];
    const uint8_t *b = ota_outbox_bytes(&rxo, fx);
    ota_coap_msg_t m;
    ota_rx_report_t rep;
    switch (fx->kind) {
    case OTA_FX_SEND:
      if (ota_outbox_msg(&rxo, fx, &m) == 0)
        chan_send(c, &m);
      break;
    case OTA_FX_FLASH_WRITE: {
      uint32_t off = fx->addr - OTA_ADDR_OTA;
      if (fx->addr < OTA_ADDR_OTA || off > sizeof staging ||
          fx->len > sizeof staging - off)
        OTA_LOGW("ota: flash write outside the OTA region (0x%08x+%zu)",
                 (unsigned)fx->addr, fx->len);
      else if (fx->len)
        memcpy(staging + off, b, fx->len);
      break;
    }
    case OTA_FX_EVENT:
      if (ota_rx_report_get(&rxo, fx, &rep))
        break;
      if (rep.kind == OTA_RX_EV_BEGIN) {
        c->progress_q = 0;
        OTA_LOGI("ota: begin: %u bytes, store %u, address 0x%x, %s",
                 rep.file_size, rep.store, (unsigned)rep.address,
                 rep.fast ? "fast OTA" : "normal (chunk by chunk)");
      } else if (rep.kind == OTA_RX_EV_APPLY) {
        int rc = ota_device_queue_staged(&dev, staging, rep.file_size);
        if (rc)
          OTA_LOGE("ota: verified but not queued: %s", ota_strerror(rc));
        else
          OTA_LOGI("ota: verified %u bytes: queued for the bootloader (%d "
                   "pending)",
                   rep.file_size, dev.npending);
        save();
      } else if (rep.kind == OTA_RX_EV_REJECT) {
        OTA_LOGW("ota: rejected (%d, %s): %s; keeping the old firmware",
                 rep.syserr, ota_strerror(rep.err), rep.why);
      }
      break;
    case OTA_FX_REBOOT:
      c->reboot = 1;
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

static void serve_describe(conn_t *c, const ota_coap_msg_t *m) {
  int flags = ota_msg_describe_flags(m);
  size_t len = 0;
  ota_coap_msg_t r;
  int rc = ota_device_describe_json(&dev, flags, describe_buf,
                                    sizeof describe_buf, &len);
  if (rc) {
    OTA_LOGW("describe: flags %d not served: %s: 4.00", flags,
             ota_strerror(rc));
    if (m->type == OTA_COAP_CON) {
      ota_msg_build_ack_response(&r, m, OTA_COAP_BAD_REQUEST, NULL, 0);
      chan_send(c, &r);
    }
    return;
  }
  const ota_cat_release_t *rel = ota_device_release(&dev);
  ota_describe_form_t form = rel ? rel->behaviour.describe : OTA_DESCRIBE_ACK;
  static const char *form_names[] = {"piggy-backed ACK", "separate CON",
                                     "POST d"};
  if (form == OTA_DESCRIBE_ACK && m->type == OTA_COAP_CON) {
    ota_msg_build_ack_response(&r, m, OTA_COAP_CONTENT, describe_buf, len);
    chan_send(c, &r);
  } else if (form == OTA_DESCRIBE_POST) {
    uint8_t fb = (uint8_t)flags;
    chan_ack(c, m);
    ota_msg_build_request(&r, OTA_COAP_CON, OTA_COAP_POST, 0, NULL, 0, 'd');
    ota_coap_add_option(&r, OTA_COAP_OPT_URI_QUERY, &fb, 1);
    ota_coap_set_payload(&r, describe_buf, len);
    chan_send(c, &r);
  } else { /* separate (or a NON request) */
    chan_ack(c, m);
    ota_msg_build_separate_response(
        &r, m->type == OTA_COAP_CON ? OTA_COAP_CON : OTA_COAP_NON,
        OTA_COAP_CONTENT, 0, m->token, m->tkl, describe_buf, len);
    chan_send(c, &r);
  }
  c->described = 1;
  OTA_LOGI("describe: served flags %d as %s (%zu bytes, %s)", flags,
           form_names[form], len, ota_dev_state_name(dev.state));
}

static void publish_handshake_events(conn_t *c) {
  ota_dev_event_t ev[OTA_DEVICE_MAX_EVENTS];
  size_t n = ota_device_handshake_events(&dev, ev, OTA_DEVICE_MAX_EVENTS);
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
      chan_send(c, &m);
      OTA_LOGI("event: published %s \"%s\" (private, NON)", ev[i].name,
               ev[i].data);
    }
  }
}

/* A datagram the channel delivered (new request, or the answer to our CON). */
static void on_deliver(conn_t *c, const uint8_t *b, size_t len) {
  ota_coap_msg_t m;
  ota_msg_kind_t kind;
  char sum[128];
  unsigned type = len ? (b[0] >> 4) & 3 : 0;
  if (type == OTA_COAP_ACK || type == OTA_COAP_RST) {
    if (ota_coap_decode(b, len, &m))
      return;
    if (type == OTA_COAP_RST)
      OTA_LOGW("coap: RST for our mid 0x%04x", m.mid);
    if (m.mid == c->hello_mid && !c->hello_acked && type == OTA_COAP_ACK) {
      c->hello_acked = 1;
      OTA_LOGI("hello: acknowledged: connected (%s, release %s)",
               ota_dev_state_name(dev.state), ota_device_release_name(&dev));
      publish_handshake_events(c);
      per.next_mid = ota_coap_chan_peek_mid(&ch);
      save();
    } else if (m.mid == c->hello_mid && type == OTA_COAP_RST) {
      c->fail = "Hello answered with RST";
      c->fatal = 1;
    } else if (c->ping_out && m.mid == c->ping_mid) {
      c->ping_out = 0;
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
    /* Device OS misreads a request that is not at its fixed offsets: we log
     * it and answer a CON with RST (the id is all we can trust). */
    OTA_LOGW("coap: request rejected by the strict parser (%s, %zu bytes)%s",
             ota_strerror(rc), len,
             type == OTA_COAP_CON ? ": RST" : ": ignored");
    if (type == OTA_COAP_CON && len >= 4) {
      ota_coap_msg_t r;
      ota_msg_build_empty(&r, OTA_COAP_RST, (uint16_t)(b[2] << 8 | b[3]));
      chan_send(c, &r);
    }
    return;
  }
  OTA_LOGD("coap: rx %s %s", ota_msg_kind_name(kind),
           ota_coap_summary(&m, sum, sizeof sum));
  ota_coap_msg_t r;
  uint64_t now = now_ms();
  switch (kind) {
  case OTA_MSG_PING:
    chan_ack(c, &m);
    OTA_LOGI("ping: answered the server's ping");
    break;
  case OTA_MSG_HELLO:
    chan_ack(c, &m);
    ota_device_on_server_hello(&dev);
    OTA_LOGI("hello: server Hello received (OTA flag cleared)");
    break;
  case OTA_MSG_DESCRIBE:
    serve_describe(c, &m);
    break;
  case OTA_MSG_UPDATE_BEGIN:
  case OTA_MSG_CHUNK:
  case OTA_MSG_UPDATE_DONE:
    if (ota_rx_on_message(&rx, &m, now, &rxo))
      OTA_LOGW("ota: outbox full");
    rx_effects(c);
    if (kind == OTA_MSG_CHUNK)
      ota_progress(c);
    break;
  case OTA_MSG_SIGNAL:
    ota_msg_build_ack_response(&r, &m, OTA_COAP_CHANGED, NULL, 0);
    if (m.type == OTA_COAP_CON)
      chan_send(c, &r);
    OTA_LOGI("signal: %s", m.payload_len && m.payload[0] ? "start" : "stop");
    break;
  case OTA_MSG_EVENT: {
    ota_msg_event_t e;
    chan_ack(c, &m);
    if (ota_msg_event_parse(&m, &e) == 0) {
      OTA_LOGI("event: received %.*s \"%.*s\"", (int)e.name_len, e.name,
               (int)e.data_len, (const char *)e.data);
      if (e.name_len == 18 && !memcmp(e.name, "spark/device/reset", 18) &&
          e.data_len == 9 && !memcmp(e.data, "safe mode", 9)) {
        ota_device_request_safe_mode(&dev);
        c->reboot = 2;
      }
    }
    break;
  }
  case OTA_MSG_FUNCTION:
  case OTA_MSG_VARIABLE:
    if (m.type == OTA_COAP_CON) {
      ota_msg_build_ack_response(&r, &m, OTA_COAP_NOT_FOUND, NULL, 0);
      chan_send(c, &r);
    }
    OTA_LOGI("coap: %s: no such function/variable: 4.04",
             ota_msg_kind_name(kind));
    break;
  default:
    chan_ack(c, &m);
    OTA_LOGI("coap: %s acknowledged, ignored", ota_msg_kind_name(kind));
    break;
  }
}

/* Run the channel's effects (and what handling them produces) to the end. */
static void flush(conn_t *c) {
  ota_outbox_t *cur = &ob[0], *nxt = &ob[1];
  while (cur->n) {
    c->next = nxt;
    for (size_t i = 0; i < cur->n; i++) {
      const ota_fx_t *fx = &cur->fx[i];
      const uint8_t *b = ota_outbox_bytes(cur, fx);
      if (fx->kind == OTA_FX_SEND) {
        int rc = c->t->ops->send(c->t, b, fx->len);
        if (rc < 0)
          OTA_LOGW("coap: send failed: %s", ota_strerror(rc));
        c->last_io = now_ms();
      } else if (fx->kind == OTA_FX_DELIVER) {
        on_deliver(c, b, fx->len);
      } else if (fx->kind == OTA_FX_TIMEOUT) {
        if (fx->mid == c->hello_mid && !c->hello_acked) {
          c->fail = "Hello not acknowledged: refused by the server?";
          c->fatal = 1;
        } else if (c->ping_out && fx->mid == c->ping_mid) {
          c->fail = "keep-alive ping not acknowledged";
        } else
          OTA_LOGW("coap: no ACK for mid 0x%04x", fx->mid);
      }
    }
    ota_outbox_clear(cur);
    ota_outbox_t *t = cur;
    cur = nxt, nxt = t;
  }
  c->next = &ob[0];
}

static void send_hello(conn_t *c) {
  uint8_t h[OTA_HELLO_LEN];
  ota_device_hello_payload(&dev, h);
  if (opt.product >= 0) {
    h[0] = (uint8_t)(opt.product >> 8);
    h[1] = (uint8_t)opt.product;
  }
  ota_coap_msg_t m;
  ota_msg_build_request(&m, OTA_COAP_CON, OTA_COAP_POST, 0, NULL, 0, 'h');
  ota_coap_set_payload(&m, h, OTA_MSG_HELLO_PAYLOAD_LEN);
  c->hello_mid = chan_send(c, &m);
  OTA_LOGI("hello: sent (flags 0x%02x%s, product %u)", h[5],
           (h[5] & 1) ? " = OTA applied" : "", (unsigned)(h[0] << 8 | h[1]));
}

/* Returns 0 stop (signal/--once), 1 reboot requested (c->reboot), -1 lost
 * (reconnect), -2 refused / cannot connect (exit). */
static int run_connection(conn_t *c) {
  sim_dtls_cfg_t cfg = {.host = opt.host,
                        .port = opt.port,
                        .key_file = opt.key,
                        .cert_file = opt.cert,
                        .server_cert = opt.pin,
                        .session = per.session_len ? per.session : NULL,
                        .session_len = per.session_len,
                        .keylog_file = getenv("SSLKEYLOGFILE")};
  memset(c, 0, sizeof *c);
  c->next = &ob[0];
  c->t = sim_dtls_new(&cfg);
  if (!c->t)
    return -2;
  /* Device OS retransmits 3 s doubling to 24 s: 3+6+12+24 s, then gives up. */
  int err = c->t->ops->connect(c->t, 45000);
  if (err) {
    OTA_LOGE("connect: %s failed: %s", opt.server, ota_strerror(err));
    c->t->ops->destroy(c->t);
    return -2;
  }
  OTA_LOGI("connect: DTLS %s handshake with %s done (%u ms)",
           c->t->stats.resumed ? "resumed" : "full", opt.server,
           c->t->stats.hs_ms);
  size_t sl = 0;
  if (c->t->ops->save_session(c->t, per.session, sizeof per.session, &sl) == 0)
    per.session_len = sl;

  ota_coap_chan_cfg_t ccfg;
  ota_coap_chan_cfg_default(&ccfg);
  uint64_t t0 = now_ms();
  ccfg.first_mid = per.next_mid ? per.next_mid : (uint16_t)(t0 | 1);
  ccfg.seed = t0 ^ (uint64_t)getpid() << 20;
  ota_coap_chan_init(&ch, &ccfg);
  ota_rx_cfg_t rcfg;
  ota_rx_config_default(&rcfg);
  const ota_cat_release_t *rel = ota_device_release(&dev);
  if (rel)
    ota_rx_config_release(&rcfg, rel->major, rel->minor, rel->patch);
  rcfg.staging = staging;
  rcfg.verify = ota_device_rx_verify;
  rcfg.verify_ud = &dev;
  ota_rx_init(&rx, &rcfg);
  ota_outbox_clear(&ob[0]);
  ota_outbox_clear(&ob[1]);
  ota_outbox_clear(&rxo);

  send_hello(c);
  flush(c);
  uint64_t keepalive = (uint64_t)(KEEPALIVE_MS / opt.time_scale);
  if (keepalive < 100)
    keepalive = 100;
  int rc = 0;
  while (!stop) {
    uint64_t now = now_ms();
    ota_coap_chan_on_timer(&ch, now, &ob[0]);
    ota_rx_on_timer(&rx, now, &rxo);
    rx_effects(c);
    if (c->hello_acked && !c->ping_out && now - c->last_io >= keepalive) {
      ota_coap_msg_t p;
      ota_msg_build_empty(&p, OTA_COAP_CON, 0);
      c->ping_mid = chan_send(c, &p);
      c->ping_out = 1;
      OTA_LOGI("keep-alive: ping (idle %llu ms)",
               (unsigned long long)(now - c->last_io));
    }
    flush(c);
    if (c->fail) {
      OTA_LOGE("connection: %s", c->fail);
      rc = c->fatal ? -2 : -1;
      break;
    }
    if (c->reboot) {
      rc = 1;
      break;
    }
    if (opt.once && c->hello_acked && c->described)
      break;
    uint64_t dl = ota_coap_chan_next_deadline(&ch);
    uint64_t rdl = ota_rx_next_deadline(&rx);
    if (rdl < dl)
      dl = rdl;
    if (c->hello_acked && !c->ping_out && c->last_io + keepalive < dl)
      dl = c->last_io + keepalive;
    int wait = dl <= now ? 0 : dl - now > 200 ? 200 : (int)(dl - now);
    struct pollfd pfd = {.fd = c->t->ops->poll_fd(c->t), .events = POLLIN};
    if (poll(&pfd, 1, wait) < 0 && errno != EINTR)
      break;
    uint8_t in[MSG_MAX];
    int n = 0;
    while (!c->reboot && (n = c->t->ops->recv(c->t, in, sizeof in)) > 0) {
      c->last_io = now_ms();
      int e = ota_coap_chan_on_datagram(&ch, in, (size_t)n, c->last_io, &ob[0]);
      if (e && e != OTA_ENOBUFS)
        OTA_LOGW("coap: malformed datagram (%d bytes): %s, dropped", n,
                 ota_strerror(e));
      flush(c);
    }
    if (!c->reboot && n < 0) {
      OTA_LOGE("connection: lost: %s", ota_strerror(n));
      rc = n == OTA_EREFUSED ? -2 : -1;
      c->fatal = n == OTA_EREFUSED; /* close_notify clears the session */
      break;
    }
  }
  per.next_mid = ota_coap_chan_peek_mid(&ch);
  if (c->t->ops->save_session(c->t, per.session, sizeof per.session, &sl) == 0)
    per.session_len = sl;
  if (c->fatal)
    per.session_len = 0; /* refused: the next start does a full handshake */
  save();
  return rc;
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: otalab-device --id HEX24 --key FILE --cert FILE --server "
      "HOST:PORT\n"
      "                     --server-cert FILE --state FILE [OPTIONS]\n\n"
      "A simulated Particle Electron: flash, bootloader, describe and the OTA\n"
      "receiver, connecting to otalab-server over DTLS + CoAP.\n\n"
      "  --id HEX24          device id (12 bytes hex)\n"
      "  --key/--cert FILE   device key and certificate (otalab keys device)\n"
      "  --server HOST:PORT  cloud address (the Electron uses port 5684)\n"
      "  --server-cert FILE  pinned server certificate\n"
      "  --state FILE        device flash + DTLS session; created from "
      "--release\n"
      "                      when missing, reloaded on the next start\n"
      "  --release NAME      Device OS release to provision (default 0.6.1)\n"
      "  --app FILE          user app to provision (default: none)\n"
      "  --fixtures DIR      real module files "
      "(system-part1-REL-electron.bin,\n"
      "                      electron-bootloader-REL.bin); default: "
      "synthesized\n"
      "  --catalog PATH      release catalogue (default $OTALAB_CATALOG or\n"
      "                      %s)\n"
      "  --product ID        Hello product id (default: the user app's)\n"
      "  --recover FILE...   in a hard-fault loop, write these modules over\n"
      "                      \"USB/DFU\" and boot again\n"
      "  --time-scale K      run the 23 min keep-alive K times faster\n"
      "  --once              exit after answering the first Describe\n"
      "  -v                  verbose\n"
      "  --help              this text\n\n"
      "Exit: 0 ok, 1 connection failed or refused, 2 usage/setup, 3 hard-fault "
      "loop.\nSSLKEYLOGFILE=FILE appends CLIENT_RANDOM lines (NSS key log).\n",
      OTALAB_DEFAULT_CATALOG);
}

static const char *default_catalog(void) {
  const char *env = getenv("OTALAB_CATALOG");
  if (env && *env)
    return env;
  return OTALAB_DEFAULT_CATALOG;
}

/* Provision or load the device. Returns 0 or an exit code. */
static int setup(const uint8_t id[12], const char *release, const char *app,
                 const char *fixtures) {
  int rc = opt.state ? sim_state_load(opt.state, &dev, &cat, &per) : OTA_ENOENT;
  if (rc == 0) {
    memcpy(dev.id, id, 12);
    OTA_LOGI("state: loaded %s: release %s, %d queued, %u boots%s", opt.state,
             ota_device_release_name(&dev), dev.npending, dev.boots,
             per.session_len ? ", saved session" : "");
    return 0;
  }
  if (rc != OTA_ENOENT)
    OTA_LOGW("state: %s unusable (%s): provisioning anew", opt.state,
             ota_strerror(rc));
  ota_device_init(&dev, &cat, id);
  memset(&per, 0, sizeof per);
  uint8_t *ab = NULL;
  size_t al = 0;
  if (app && (rc = sim_read_file(app, &ab, &al))) {
    fprintf(stderr, "otalab-device: --app %s: %s\n", app, ota_strerror(rc));
    return EXIT_USAGE;
  }
  sim_fixture_loader_t fl = {.dir = fixtures, .release = release};
  rc = ota_device_provision(&dev, release, fixtures ? sim_fixture_load : NULL,
                            &fl, ab, al);
  free(ab);
  if (rc) {
    fprintf(stderr, "otalab-device: cannot provision release %s: %s\n", release,
            ota_strerror(rc));
    return EXIT_USAGE;
  }
  OTA_LOGI("state: provisioned release %s%s%s", release, app ? " + app " : "",
           app ? app : "");
  return 0;
}

int main(int argc, char **argv) {
  const char *id = NULL, *release = "0.6.1", *app = NULL, *fixtures = NULL,
             *catalog = NULL;
  int verbose = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "-v"))
      verbose++;
    else if (!strcmp(a, "--once"))
      opt.once = 1;
    else if (v && !strcmp(a, "--id"))
      id = v, i++;
    else if (v && !strcmp(a, "--key"))
      opt.key = v, i++;
    else if (v && !strcmp(a, "--cert"))
      opt.cert = v, i++;
    else if (v && !strcmp(a, "--server"))
      opt.server = v, i++;
    else if (v && !strcmp(a, "--server-cert"))
      opt.pin = v, i++;
    else if (v && !strcmp(a, "--state"))
      opt.state = v, i++;
    else if (v && !strcmp(a, "--release"))
      release = v, i++;
    else if (v && !strcmp(a, "--app"))
      app = v, i++;
    else if (v && !strcmp(a, "--fixtures"))
      fixtures = v, i++;
    else if (v && !strcmp(a, "--catalog"))
      catalog = v, i++;
    else if (v && !strcmp(a, "--product")) {
      char *end;
      long p = strtol(v, &end, 0);
      if (*end || p < 0 || p > 0xFFFF) {
        fprintf(stderr, "otalab-device: bad --product '%s'\n", v);
        return EXIT_USAGE;
      }
      opt.product = (int)p, i++;
    } else if (v && !strcmp(a, "--time-scale")) {
      opt.time_scale = atof(v), i++;
      if (!(opt.time_scale > 0)) {
        fprintf(stderr, "otalab-device: bad --time-scale '%s'\n", v);
        return EXIT_USAGE;
      }
    } else if (v && !strcmp(a, "--recover")) {
      while (i + 1 < argc && argv[i + 1][0] != '-' &&
             opt.nrecover < MAX_RECOVER)
        opt.recover[opt.nrecover++] = argv[++i];
    } else {
      fprintf(stderr, "otalab-device: bad argument '%s'\n", a);
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  uint8_t rawid[12];
  if (!id || hexid(id, rawid) || !opt.key || !opt.cert || !opt.server ||
      !opt.pin) {
    fprintf(stderr, "otalab-device: --id (24 hex digits), --key, --cert, "
                    "--server and --server-cert are required\n");
    usage(stderr);
    return EXIT_USAGE;
  }
  static char host[256];
  const char *colon = strrchr(opt.server, ':');
  int port = colon ? atoi(colon + 1) : 0;
  if (!colon || port <= 0 || port > 65535 ||
      (size_t)(colon - opt.server) >= sizeof host) {
    fprintf(stderr, "otalab-device: --server must be HOST:PORT\n");
    return EXIT_USAGE;
  }
  memcpy(host, opt.server, (size_t)(colon - opt.server));
  host[colon - opt.server] = 0;
  opt.host = host;
  opt.port = (uint16_t)port;
  ota_log_set(log_sink, NULL, verbose ? OTA_LOG_DEBUG : OTA_LOG_INFO);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  char err[256] = "";
  if (!catalog)
    catalog = default_catalog();
  int rc = ota_catalog_load_file(&cat, catalog, err, sizeof err);
  if (rc) {
    fprintf(stderr, "otalab-device: catalogue %s: %s %s\n", catalog,
            ota_strerror(rc), err);
    return EXIT_USAGE;
  }
  int code = setup(rawid, release, app, fixtures);
  if (code) {
    ota_catalog_free(&cat);
    return code;
  }

  code = EXIT_OK;
  conn_t c;
  memset(&c, 0, sizeof c);
  sim_transport_stats_t stats = {0};
  ota_reset_t reason = OTA_RESET_POWER_DOWN;
  int do_boot = 1;
  while (!stop) {
    if (do_boot && boot(reason) == OTA_DEV_HARD_FAULT_LOOP) {
      code = EXIT_HARD_FAULT;
      break;
    }
    do_boot = 0;
    int r = run_connection(&c);
    if (c.t) {
      stats = c.t->stats;
      c.t->ops->close(c.t, 0); /* no close_notify: the session stays valid */
      c.t->ops->destroy(c.t);
      c.t = NULL;
    }
    if (r == 1) {
      OTA_LOGI("reboot: %s",
               c.reboot == 2 ? "safe mode requested" : "after the OTA update");
      reason = c.reboot == 2 ? OTA_RESET_SAFE_MODE : OTA_RESET_UPDATE;
      do_boot = 1;
      continue;
    }
    if (r == -1 && !stop) { /* lost: reconnect without a reboot */
      OTA_LOGI("connection: reconnecting in 1 s");
      sleep(1);
      continue;
    }
    if (r < 0)
      code = EXIT_CONN;
    break;
  }
  save();
  printf("bytes tx=%llu rx=%llu handshake(%s) tx=%llu rx=%llu dgrams "
         "tx=%llu rx=%llu ms=%u\n",
         (unsigned long long)stats.tx_bytes, (unsigned long long)stats.rx_bytes,
         stats.resumed ? "resumed" : "full",
         (unsigned long long)stats.hs_tx_bytes,
         (unsigned long long)stats.hs_rx_bytes,
         (unsigned long long)stats.hs_tx_dgrams,
         (unsigned long long)stats.hs_rx_dgrams, stats.hs_ms);
  fflush(stdout);
  ota_rx_free(&rx);
  ota_coap_chan_free(&ch);
  ota_device_free(&dev);
  ota_catalog_free(&cat);
  return code;
}
