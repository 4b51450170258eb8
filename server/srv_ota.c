/* otalab-server OTA jobs: per-device queue of modules pushed by core's ota_tx
 * and confirmed by the Describe after the reboot (PROTOCOL.md 2.4-2.5, 3.1). */
#define _GNU_SOURCE /* syncfs */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "otalab/msg.h"
#include "otalab/ota_tx.h"
#include "otalab/outbox.h"
#include "otalab/rest.h"
#include "srv.h"

typedef struct {
  unsigned id;
  srv_mod_t *m; /* a reference, kept until the job ends (ota_tx views it) */
  size_t len;
  ota_modref_t ref;
  char name[64];
  srv_job_state_t state;
  uint32_t sent, total;
  unsigned hellos_at_done;
  uint64_t t_queued, t_start, t_sent, t_end, deadline;
  uint64_t us_start, us_data, us_sent; /* µs: start, all chunks in, 2.04 */
  uint32_t chunks, resent, dones; /* ota_tx counters at the end of SENDING */
  char why[160];
  srv_origin_t origin;
  srv_usage_t u0, usage; /* device counters at the start; the job's share */
  uint64_t payload_sent; /* chunk payload bytes sent, resends included */
  uint32_t prog_sent;    /* progress event: last bytes reported ... */
  uint64_t prog_t;       /* ... and when */
  unsigned batch;        /* request number: a failure cancels only its own */
  unsigned restarts;     /* restarts from zero after a Hello mid-transfer */
  int cancelled;         /* ended FAILED because a job of its batch failed */
  int64_t w_queued, w_start, w_end; /* wall clock, ms since the epoch */
} job_t;

struct srv_ota {
  ota_tx_t tx;
  job_t q[SRV_OTA_QUEUE]; /* q[0] is the current job */
  size_t n;
  job_t last;   /* last finished job (mod freed) */
  int ping_mid; /* libcoap id of the transfer's outstanding ping, -1 none */
  int pong_due; /* its ACK came: handled at the next loop tick */
  int has_last;
  job_t hist[SRV_OTA_HISTORY]; /* ended jobs (mod freed), a ring */
  size_t nhist, hist_next;
};

static unsigned next_job = 1;
static unsigned next_batch = 1;
unsigned srv_ota_window;
int srv_ota_gap_ms = -1;
const char *srv_data_dir;
static ota_outbox_t outbox; /* one shared outbox: drained after every call */

static const char *const state_names[] = {"QUEUED", "SENDING", "REBOOTING",
                                          "DONE", "FAILED"};

const char *srv_origin_name(srv_origin_t o) {
  return o == SRV_ORIGIN_HEALER    ? "healer"
         : o == SRV_ORIGIN_PRODUCT ? "product"
                                   : "user";
}

static srv_origin_t origin_of(const char *s) {
  return s && !strcmp(s, "healer")    ? SRV_ORIGIN_HEALER
         : s && !strcmp(s, "product") ? SRV_ORIGIN_PRODUCT
                                      : SRV_ORIGIN_USER;
}

void srv_usage_sub(srv_usage_t *to, const srv_usage_t *from) {
  to->up -= from->up;
  to->down -= from->down;
  to->records_up -= from->records_up;
  to->records_down -= from->records_down;
  to->handshake -= from->handshake;
  to->record_overhead -= from->record_overhead;
  to->coap -= from->coap;
  to->module -= from->module;
  to->retrans -= from->retrans;
  to->chunks_resent -= from->chunks_resent;
  to->sessions -= from->sessions;
}

void *srv_usage_json(const srv_usage_t *u) {
  uint64_t inner = u->module + u->retrans;
  uint64_t coap_over = u->coap > inner ? u->coap - inner : 0;
  return json_pack(
      "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "total",
      (json_int_t)(u->up + u->down), "up", (json_int_t)u->up, "down",
      (json_int_t)u->down, "module_payload", (json_int_t)u->module,
      "coap_overhead", (json_int_t)coap_over, "dtls_records",
      (json_int_t)u->record_overhead, "dtls_handshakes",
      (json_int_t)u->handshake, "retransmissions", (json_int_t)u->retrans,
      "chunks_resent", (json_int_t)u->chunks_resent, "records",
      (json_int_t)(u->records_up + u->records_down), "coap",
      (json_int_t)u->coap, "sessions", (json_int_t)u->sessions);
}

/* ---- persistence: DATA/jobs/<id>.json + DATA/jobs/<id>-<job>.bin ---- */

static int mkdir_p(const char *dir) {
  char p[4096];
  snprintf(p, sizeof p, "%s", dir);
  for (char *c = p + 1; *c; c++)
    if (*c == '/') {
      *c = 0;
      mkdir(p, 0755);
      *c = '/';
    }
  return mkdir(p, 0755) && errno != EEXIST ? OTA_EIO : 0;
}

/* Write a file durably: temp file, fsync, rename, fsync the directory. */
static int write_atomic(const char *dir, const char *name, const void *buf,
                        size_t len) {
  char path[4096], tmp[4200];
  if (mkdir_p(dir))
    return OTA_EIO;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return OTA_EIO;
  const uint8_t *p = buf;
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, p + off, len - off);
    if (n <= 0 && errno != EINTR) {
      close(fd);
      unlink(tmp);
      return OTA_EIO;
    }
    if (n > 0)
      off += (size_t)n;
  }
  if (fsync(fd) || close(fd) || rename(tmp, path)) {
    unlink(tmp);
    return OTA_EIO;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

static void jobs_dir(char *out, size_t cap) {
  snprintf(out, cap, "%s/jobs", srv_data_dir ? srv_data_dir : ".");
}

static void bin_name(const srv_device_t *d, unsigned job, char *out,
                     size_t cap) {
  snprintf(out, cap, "%s-%u.bin", d->id, job);
}

static int restoring; /* no saves while srv_ota_restore() re-queues */

static uint64_t now_ms(void);
static uint64_t save_at; /* when the pending saves are due; 0: none */

void srv_ota_save(srv_device_t *d) {
  if (restoring || !srv_data_dir)
    return;
  d->save_due = 1;
  if (!save_at)
    save_at = now_ms() + SRV_OTA_SAVE_MS;
}

/* The job file text of d (malloc'd), or NULL. */
static char *save_text(const srv_device_t *d) {
  char bin[64];
  json_t *jobs = json_array();
  const struct srv_ota *o = d->ota;
  for (size_t i = 0; o && i < o->n; i++) {
    const job_t *j = &o->q[i];
    char mod[32];
    bin_name(d, j->id, bin, sizeof bin);
    snprintf(mod, sizeof mod, "%c/%u v%u", ota_fn_letter(j->ref.func),
             j->ref.index, j->ref.version);
    json_t *jj = json_pack(
        "{s:i,s:s,s:s,s:s,s:s,s:i}", "job", (json_int_t)j->id, "file", j->name,
        "origin", srv_origin_name(j->origin), "module", mod, "state",
        srv_job_state_name(j->state), "batch", (json_int_t)j->batch);
    if (j->m && j->m->path[0])
      json_object_set_new(jj, "path", json_string(j->m->path));
    else
      json_object_set_new(jj, "bin", json_string(bin));
    json_array_append_new(jobs, jj);
  }
  json_t *root = json_pack("{s:s,s:b,s:o}", "id", d->id, "development",
                           d->development, "jobs", jobs);
  char *text = root ? json_dumps(root, JSON_INDENT(1)) : NULL;
  json_decref(root);
  return text;
}

/* Write a file without syncing it: temp file, rename later (flush). */
static int write_tmp(const char *tmp, const char *text) {
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    return OTA_EIO;
  size_t len = strlen(text), off = 0;
  while (off < len) {
    ssize_t n = write(fd, text + off, len - off);
    if (n <= 0 && errno != EINTR) {
      close(fd);
      unlink(tmp);
      return OTA_EIO;
    }
    if (n > 0)
      off += (size_t)n;
  }
  return close(fd) ? OTA_EIO : 0;
}

/* Every due file: written to temp files, one syncfs for all of them (data
 * durable before any rename), renamed, the directory synced: a crash leaves
 * each job file old or new, never torn. */
void srv_ota_flush(srv_devices_t *t) {
  if (!save_at || !srv_data_dir)
    return;
  save_at = 0;
  char dir[4096], path[4200], tmp[4300];
  jobs_dir(dir, sizeof dir);
  if (mkdir_p(dir)) {
    OTA_LOGE("ota: cannot create %s: job queues not saved", dir);
    return;
  }
  size_t n = 0;
  for (size_t i = 0; i < t->n; i++) {
    srv_device_t *d = &t->rows[i];
    if (!d->save_due)
      continue;
    char *text = save_text(d);
    snprintf(tmp, sizeof tmp, "%s/%s.json.tmp.%d", dir, d->id, (int)getpid());
    if (!text || write_tmp(tmp, text)) {
      OTA_LOGE("ota: %s cannot save the job queue under %s", d->id, dir);
      d->save_due = 0;
    } else {
      n++;
    }
    free(text);
  }
  if (!n)
    return;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0)
    syncfs(dfd);
  for (size_t i = 0; i < t->n; i++) {
    srv_device_t *d = &t->rows[i];
    if (!d->save_due)
      continue;
    d->save_due = 0;
    snprintf(tmp, sizeof tmp, "%s/%s.json.tmp.%d", dir, d->id, (int)getpid());
    snprintf(path, sizeof path, "%s/%s.json", dir, d->id);
    if (rename(tmp, path)) {
      OTA_LOGE("ota: %s cannot save the job queue under %s", d->id, dir);
      unlink(tmp);
    }
  }
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  OTA_LOGD("ota: %zu job queue file(s) saved", n);
}

static void remove_bin(const srv_device_t *d, unsigned job) {
  char dir[4096], bin[64], path[4200];
  jobs_dir(dir, sizeof dir);
  bin_name(d, job, bin, sizeof bin);
  snprintf(path, sizeof path, "%s/%s", dir, bin);
  unlink(path);
}

const char *srv_job_state_name(srv_job_state_t s) {
  return (unsigned)s < sizeof state_names / sizeof *state_names ? state_names[s]
                                                                : "?";
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void set_state(srv_device_t *d, job_t *j, srv_job_state_t st,
                      const char *why) {
  OTA_LOGI("ota: %s job %u (%c/%u v%u) %s => %s (%s)", d->id, j->id,
           ota_fn_letter(j->ref.func), j->ref.index, j->ref.version,
           srv_job_state_name(j->state), srv_job_state_name(st), why);
  j->state = st;
  if (st == SRV_JOB_SENDING) {
    if (!j->restarts) {
      /* A restart keeps counting from the first start: the bytes sent again
       * are the restart's cost (retransmissions). */
      j->u0 = d->usage;
      j->payload_sent = 0;
    }
    j->prog_sent = 0;
    j->prog_t = now_ms();
    srv_emit("spark/flash/status", "started", d->id);
  }
  if (st == SRV_JOB_SENDING || st == SRV_JOB_REBOOTING)
    srv_ota_save(d);
}

/* otalab/ota/progress: at most every 10 % of the module or every second,
 * and at the end. */
static void progress(srv_device_t *d, job_t *j) {
  uint64_t now = now_ms();
  uint32_t step = j->total / 10 ? j->total / 10 : 1;
  if (j->sent != j->total && j->sent < j->prog_sent + step &&
      now < j->prog_t + 1000)
    return;
  if (j->sent == j->prog_sent)
    return;
  char data[128];
  snprintf(data, sizeof data,
           "{\"module\":\"%c/%u v%u\",\"sent\":%u,\"total\":%u}",
           ota_fn_letter(j->ref.func), j->ref.index, j->ref.version, j->sent,
           j->total);
  j->prog_sent = j->sent;
  j->prog_t = now;
  srv_emit("otalab/ota/progress", data, d->id);
}

static void start_next(srv_device_t *d);

/* Keep a copy of an ended job (its bytes already freed) in the history. */
static void hist_push(struct srv_ota *o, const job_t *j) {
  o->hist[o->hist_next] = *j;
  o->hist[o->hist_next].m = NULL;
  o->hist_next = (o->hist_next + 1) % SRV_OTA_HISTORY;
  if (o->nhist < SRV_OTA_HISTORY)
    o->nhist++;
}

/* Move q[0] to `last`, free its bytes, shift the queue, start the next. On
 * failure the jobs queued by the same request (the rest of one multi-file
 * PUT) are cancelled: they were meant to go in order. Jobs of other requests
 * stay: a user flashing one part per request sees each part sent. */
static void end_job(srv_device_t *d, srv_job_state_t st, const char *why) {
  struct srv_ota *o = d->ota;
  job_t *j = &o->q[0];
  snprintf(j->why, sizeof j->why, "%s", why);
  j->t_end = now_ms();
  j->w_end = wall_ms();
  if (j->t_start) {
    j->usage = d->usage;
    srv_usage_sub(&j->usage, &j->u0);
  }
  set_state(d, j, st, why);
  if (st == SRV_JOB_DONE)
    OTA_LOGI(
        "ota: %s job %u done: %c/%u now v%u, %u bytes in %llu ms "
        "(transfer %llu ms, %u chunks sent, %u resent)",
        d->id, j->id, ota_fn_letter(j->ref.func), j->ref.index, j->ref.version,
        j->total, (unsigned long long)(j->t_end - j->t_start),
        (unsigned long long)(j->t_sent - j->t_start), j->chunks, j->resent);
  ota_tx_free(&o->tx);
  srv_mod_unref(j->m);
  j->m = NULL;
  remove_bin(d, j->id);
  o->last = *j;
  o->has_last = 1;
  hist_push(o, j);
  memmove(&o->q[0], &o->q[1], (o->n - 1) * sizeof o->q[0]);
  o->n--;
  for (size_t i = 0; st == SRV_JOB_FAILED && i < o->n;) {
    job_t *k = &o->q[i];
    if (k->batch != o->last.batch) {
      i++;
      continue;
    }
    OTA_LOGW("ota: %s job %u (%c/%u v%u) cancelled: job %u of the same "
             "request failed",
             d->id, k->id, ota_fn_letter(k->ref.func), k->ref.index,
             k->ref.version, o->last.id);
    snprintf(k->why, sizeof k->why,
             "cancelled: job %u of the same request failed", o->last.id);
    k->state = SRV_JOB_FAILED;
    k->cancelled = 1;
    k->t_end = now_ms();
    k->w_end = wall_ms();
    srv_mod_unref(k->m);
    k->m = NULL;
    remove_bin(d, k->id);
    hist_push(o, k);
    memmove(&o->q[i], &o->q[i + 1], (o->n - i - 1) * sizeof o->q[0]);
    o->n--;
  }
  srv_ota_save(d);
  job_t fin = o->last;
  srv_cloud_on_job_end(d, fin.origin, &fin.ref, st == SRV_JOB_DONE, why,
                       fin.t_start ? &fin.usage : NULL);
  if (d->ota)
    start_next(d);
}

/* Carry out the outbox: SENDs become libcoap PDUs, EVENTs update the job. */
static void drain(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  job_t *j = o->n ? &o->q[0] : NULL;
  for (size_t i = 0; i < outbox.n; i++) {
    const ota_fx_t *fx = &outbox.fx[i];
    if (fx->kind == OTA_FX_SEND) {
      ota_coap_msg_t m;
      int mid = -1;
      if (ota_outbox_msg(&outbox, fx, &m) || !d->session ||
          srv_coap_send_mid(d->session, &m, &mid)) {
        OTA_LOGW("ota: %s cannot send an OTA message", d->id);
      } else if (m.type == OTA_COAP_CON && m.code == OTA_COAP_EMPTY) {
        o->ping_mid = mid; /* the window's ping: its pong clocks the next */
      } else if (j && m.payload_len &&
                 ota_msg_classify(&m, OTA_DIR_TO_DEVICE) == OTA_MSG_CHUNK) {
        /* First sends count as module payload, the rest as retransmissions
         * (whole CoAP message). */
        if (j->payload_sent < j->len) {
          uint64_t left = j->len - j->payload_sent;
          d->usage.module += m.payload_len < left ? m.payload_len : left;
        } else {
          d->usage.retrans += ota_coap_encoded_size(&m);
          d->usage.chunks_resent++;
        }
        j->payload_sent += m.payload_len;
      }
    } else if (fx->kind == OTA_FX_EVENT && j) {
      ota_tx_report_t r;
      if (ota_tx_report_get(&outbox, fx, &r))
        continue;
      j->sent = r.sent;
      j->total = r.total;
      progress(d, j);
    }
  }
  ota_outbox_clear(&outbox);
  if (j && j->state == SRV_JOB_SENDING && !j->us_data &&
      o->tx.state >= OTA_TX_DONE_SENT)
    j->us_data = now_us(); /* the last window's pong: every chunk is in */
  if (!j || j->state != SRV_JOB_SENDING || !ota_tx_finished(&o->tx))
    return;
  j->us_sent = now_us();
  OTA_LOGI("ota: %s job %u timing: chunks in after %.2f ms, UpdateDone "
           "2.04 after %.2f ms; %u windows (largest %u), %u pings lost",
           d->id, j->id, (double)(j->us_data - j->us_start) / 1000.0,
           (double)(j->us_sent - j->us_start) / 1000.0, o->tx.n_pings,
           o->tx.max_win, o->tx.n_ping_lost);
  const ota_tx_result_t *res = ota_tx_result(&o->tx);
  j->chunks = o->tx.n_chunks_sent;
  j->resent = o->tx.n_resent;
  j->dones = o->tx.n_done_sent;
  if (res->err) {
    char why[160];
    if (res->has_done && res->done.code)
      snprintf(why, sizeof why, "device refused the module: %s (%d, %s)",
               res->why, res->done.code, ota_strerror(res->err));
    else
      snprintf(why, sizeof why, "%s (%s)", res->why, ota_strerror(res->err));
    end_job(d, SRV_JOB_FAILED, why);
    return;
  }
  j->t_sent = now_ms();
  j->sent = j->total = (uint32_t)j->len;
  progress(d, j);
  j->hellos_at_done = d->hellos;
  j->deadline = j->t_sent + SRV_OTA_REBOOT_TIMEOUT_MS;
  set_state(d, j, SRV_JOB_REBOOTING,
            res->device_done ? "device sent UpdateDone, rebooting"
                             : "UpdateDone 2.04, device rebooting");
}

static void start_next(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (!o || !o->n || o->q[0].state != SRV_JOB_QUEUED)
    return;
  if (!d->connected || !d->session || !d->described)
    return; /* starts at the next Describe */
  job_t *j = &o->q[0];
  ota_tx_cfg_t cfg;
  ota_tx_config_default(&cfg);
  /* Tokens 0x48/0xD5 are the greeting's; the counter wraps past them only in
   * long transfers, when no greeting is outstanding. */
  cfg.token_seed = (uint8_t)(1 + (j->id * 16) % 64);
  if (srv_ota_window)
    cfg.window = (uint16_t)srv_ota_window;
  if (srv_ota_gap_ms >= 0)
    cfg.ping_timeout_ms = (uint32_t)srv_ota_gap_ms;
  o->ping_mid = -1;
  o->pong_due = 0;
  ota_tx_init(&o->tx, &cfg);
  if (!j->restarts || !j->t_start) {
    j->t_start = now_ms();
    j->w_start = wall_ms();
  }
  j->us_start = now_us();
  j->us_data = j->us_sent = 0;
  j->sent = 0;
  j->total = (uint32_t)j->len;
  set_state(d, j, SRV_JOB_SENDING,
            j->restarts ? "restart from zero after the describe"
                        : "device connected and described");
  int err = ota_tx_start(&o->tx, j->m->bytes, j->len, now_ms(), &outbox);
  if (err) {
    ota_outbox_clear(&outbox);
    char why[96];
    snprintf(why, sizeof why, "cannot start: %s", ota_strerror(err));
    end_job(d, SRV_JOB_FAILED, why);
    return;
  }
  drain(d);
}

unsigned srv_ota_new_batch(void) {
  return next_batch++;
}

int srv_ota_enqueue(srv_device_t *d, const uint8_t *mod, size_t len,
                    const char *name, srv_origin_t origin, unsigned batch,
                    unsigned *job) {
  int err = 0;
  srv_mod_t *m = srv_mod_copy(mod, len, &err);
  if (!m)
    return err;
  err = srv_ota_enqueue_mod(d, m, name, origin, batch, job);
  srv_mod_unref(m);
  return err;
}

int srv_ota_enqueue_mod(srv_device_t *d, srv_mod_t *m, const char *name,
                        srv_origin_t origin, unsigned batch, unsigned *job) {
  if (!d->ota && !(d->ota = calloc(1, sizeof *d->ota)))
    return OTA_ENOMEM;
  struct srv_ota *o = d->ota;
  if (o->n == SRV_OTA_QUEUE)
    return OTA_EFULL;
  job_t *j = &o->q[o->n];
  memset(j, 0, sizeof *j);
  j->m = srv_mod_ref(m);
  j->len = m->len;
  j->ref.func = m->info.info.func;
  j->ref.index = m->info.info.index;
  j->ref.version = m->info.info.version;
  snprintf(j->name, sizeof j->name, "%s", name ? name : "");
  j->id = next_job++;
  j->origin = origin;
  j->batch = batch ? batch : srv_ota_new_batch();
  j->state = SRV_JOB_QUEUED;
  j->total = (uint32_t)j->len;
  j->t_queued = now_ms();
  j->w_queued = wall_ms();
  o->n++;
  *job = j->id;
  OTA_LOGI("ota: %s job %u queued (%s): %s %c/%u v%u, %zu bytes (%zu in "
           "queue, request %u)",
           d->id, j->id, srv_origin_name(origin), j->name,
           ota_fn_letter(j->ref.func), j->ref.index, j->ref.version, j->len,
           o->n, j->batch);
  if (!restoring) {
    /* An upload's bytes are saved now (durably, before the queue that
     * names them); a file's job names the file. */
    char dir[4096], bin[64];
    jobs_dir(dir, sizeof dir);
    bin_name(d, j->id, bin, sizeof bin);
    if (srv_data_dir && !m->path[0] && write_atomic(dir, bin, m->bytes, m->len))
      OTA_LOGE("ota: %s cannot save job %u under %s", d->id, j->id, dir);
    srv_ota_save(d);
  }
  start_next(d);
  return 0;
}

unsigned srv_ota_find(const srv_device_t *d, const ota_modref_t *ref) {
  const struct srv_ota *o = d->ota;
  for (size_t i = 0; o && i < o->n; i++)
    if (o->q[i].ref.func == ref->func && o->q[i].ref.index == ref->index &&
        o->q[i].ref.version == ref->version)
      return o->q[i].id;
  return 0;
}

int srv_ota_busy(const srv_device_t *d) {
  return d->ota && d->ota->n;
}

static uint8_t *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  uint8_t *buf = NULL;
  size_t cap = 0, n = 0, r;
  do {
    if (n == cap) {
      uint8_t *p = realloc(buf, cap = cap ? cap * 2 : 64 * 1024);
      if (!p) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = p;
    }
    r = fread(buf + n, 1, cap - n, f);
    n += r;
  } while (r);
  fclose(f);
  *len = n;
  return buf;
}

size_t srv_ota_restore(srv_devices_t *t) {
  char dir[4096];
  jobs_dir(dir, sizeof dir);
  DIR *dp = opendir(dir);
  if (!dp)
    return 0;
  size_t count = 0;
  struct dirent *e;
  restoring = 1;
  while ((e = readdir(dp))) {
    size_t nl = strlen(e->d_name);
    if (nl != SRV_ID_HEX + 5 || strcmp(e->d_name + SRV_ID_HEX, ".json"))
      continue;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    const char *id = json_string_value(json_object_get(root, "id"));
    srv_device_t *d =
        id && strlen(id) == SRV_ID_HEX ? srv_devices_get(t, id) : NULL;
    if (!d) {
      OTA_LOGW("ota: %s unreadable, ignored", path);
      json_decref(root);
      continue;
    }
    d->development = json_is_true(json_object_get(root, "development"));
    size_t i;
    json_t *jj;
    json_array_foreach(json_object_get(root, "jobs"), i, jj) {
      unsigned old = (unsigned)json_integer_value(json_object_get(jj, "job"));
      const char *bin = json_string_value(json_object_get(jj, "bin"));
      const char *file = json_string_value(json_object_get(jj, "file"));
      const char *mpath = json_string_value(json_object_get(jj, "path"));
      char bp[4400];
      size_t len = 0;
      int err = OTA_ENOENT;
      srv_mod_t *m = NULL;
      if (mpath) {
        snprintf(bp, sizeof bp, "%s", mpath);
        m = srv_mod_load(mpath, &err);
      } else if (bin) {
        snprintf(bp, sizeof bp, "%s/%s", dir, bin);
        uint8_t *mod = read_all(bp, &len);
        m = mod ? srv_mod_copy(mod, len, &err) : NULL;
        free(mod);
      }
      unsigned job = 0;
      unsigned batch =
          (unsigned)json_integer_value(json_object_get(jj, "batch"));
      if (old >= next_job)
        next_job = old + 1;
      if (batch >= next_batch)
        next_batch = batch + 1;
      if (m)
        err = srv_ota_enqueue_mod(
            d, m, file,
            origin_of(json_string_value(json_object_get(jj, "origin"))), batch,
            &job);
      srv_mod_unref(m);
      if (err) {
        OTA_LOGW("ota: %s saved job %u not restored: %s", d->id, old,
                 ota_strerror(err));
        continue;
      }
      /* Keep the saved number: the bytes file is named after it. */
      d->ota->q[d->ota->n - 1].id = old;
      count++;
      OTA_LOGI("ota: %s job %u restored from %s (%s), restarts from zero at "
               "the next connect",
               d->id, old, bp, json_string_value(json_object_get(jj, "state")));
    }
    json_decref(root);
  }
  closedir(dp);
  restoring = 0;
  for (size_t k = 0; k < t->n; k++)
    if (t->rows[k].ota)
      srv_ota_save(&t->rows[k]);
  srv_ota_flush(t);
  return count;
}

/* The session ended or the device said Hello again after UpdateDone went out
 * but before its reply came back (lost on the link): the device may have
 * applied the module and rebooted. Let the describe decide (2.5 step 6). */
static void sending_to_rebooting(srv_device_t *d, unsigned hellos,
                                 const char *why) {
  struct srv_ota *o = d->ota;
  job_t *j = &o->q[0];
  j->chunks = o->tx.n_chunks_sent;
  j->resent = o->tx.n_resent;
  j->dones = o->tx.n_done_sent;
  ota_tx_free(&o->tx);
  j->t_sent = now_ms();
  j->hellos_at_done = hellos;
  j->deadline = j->t_sent + SRV_OTA_REBOOT_TIMEOUT_MS;
  set_state(d, j, SRV_JOB_REBOOTING, why);
}

void srv_ota_on_hello(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (o && o->n && o->q[0].state == SRV_JOB_SENDING &&
      (o->tx.n_done_sent || (d->hello_flags & 1)))
    sending_to_rebooting(d, d->hellos - 1,
                         d->hello_flags & 1
                             ? "new Hello with the OTA-applied flag: the "
                               "describe confirms"
                             : "new Hello before the UpdateDone reply: the "
                               "describe decides");
  else if (o && o->n && o->q[0].state == SRV_JOB_SENDING) {
    /* The device reconnected mid-transfer (no UpdateDone yet, flag clear):
     * its receiver forgot the transfer. Send it again from zero as soon as
     * the describe the greeting asks for comes (start_next), without waiting
     * for ota_tx's timeouts; after SRV_OTA_MAX_RESTARTS of them, fail. */
    job_t *j = &o->q[0];
    char why[160];
    o->ping_mid = -1;
    o->pong_due = 0;
    if (++j->restarts > SRV_OTA_MAX_RESTARTS) {
      snprintf(why, sizeof why,
               "device reconnected during the transfer %u times (last at "
               "%u of %u bytes): given up",
               j->restarts, j->sent, j->total);
      j->chunks = o->tx.n_chunks_sent;
      j->resent = o->tx.n_resent;
      end_job(d, SRV_JOB_FAILED, why);
    } else {
      ota_tx_free(&o->tx);
      snprintf(why, sizeof why,
               "new Hello during the transfer (at %u of %u bytes): restart "
               "%u of %u from zero at the describe",
               j->sent, j->total, j->restarts, SRV_OTA_MAX_RESTARTS);
      set_state(d, j, SRV_JOB_QUEUED, why);
    }
  }
  if (o && o->n && o->q[0].state == SRV_JOB_REBOOTING)
    OTA_LOGI("ota: %s back after the reboot (Hello flags 0x%02x)", d->id,
             d->hello_flags);
}

/* The version of module (func, index) in the describe JSON text, -1 if it is
 * not listed. Describe "n" is a string ("1"), tolerate a number. */
static int describe_version(const char *text, uint8_t func, uint8_t index) {
  json_t *root = text ? json_loads(text, 0, NULL) : NULL;
  json_t *mods = json_object_get(root, "m");
  int v = -1;
  size_t i;
  json_t *e;
  json_array_foreach(mods, i, e) {
    const char *f = json_string_value(json_object_get(e, "f"));
    json_t *n = json_object_get(e, "n");
    long idx = json_is_string(n)    ? strtol(json_string_value(n), NULL, 10)
               : json_is_integer(n) ? (long)json_integer_value(n)
                                    : -1;
    if (f && f[0] == ota_fn_letter(func) && idx == index)
      v = (int)json_integer_value(json_object_get(e, "v"));
  }
  json_decref(root);
  return v;
}

void srv_ota_on_describe(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (!o || !o->n)
    return;
  job_t *j = &o->q[0];
  if (j->state == SRV_JOB_REBOOTING && d->hellos > j->hellos_at_done) {
    int v = describe_version(d->describe, j->ref.func, j->ref.index);
    char why[160];
    if (v == j->ref.version) {
      snprintf(why, sizeof why, "describe after the reboot shows %c/%u v%d",
               ota_fn_letter(j->ref.func), j->ref.index, v);
      end_job(d, SRV_JOB_DONE, why);
    } else {
      snprintf(why, sizeof why,
               "after the reboot the device reports %c/%u %s%d, not v%u",
               ota_fn_letter(j->ref.func), j->ref.index, v < 0 ? "" : "v", v,
               j->ref.version);
      if (v < 0)
        snprintf(why, sizeof why,
                 "after the reboot the device lists no %c/%u (wanted v%u)",
                 ota_fn_letter(j->ref.func), j->ref.index, j->ref.version);
      end_job(d, SRV_JOB_FAILED, why);
    }
    return;
  }
  start_next(d);
}

void srv_ota_on_disconnect(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (o && o->n && o->q[0].state == SRV_JOB_SENDING && o->tx.n_done_sent)
    sending_to_rebooting(d, d->hellos,
                         "disconnected before the UpdateDone reply: the "
                         "describe decides");
  else if (o && o->n && o->q[0].state == SRV_JOB_SENDING)
    end_job(d, SRV_JOB_FAILED, "device disconnected during the transfer");
}

int srv_ota_sending(const srv_device_t *d) {
  return d->ota && d->ota->n && d->ota->q[0].state == SRV_JOB_SENDING;
}

void srv_ota_on_coap(srv_device_t *d, const ota_coap_msg_t *m) {
  if (!srv_ota_sending(d))
    return;
  if (ota_tx_on_message(&d->ota->tx, m, now_ms(), &outbox))
    OTA_LOGE("ota: %s outbox full", d->id);
  drain(d);
}

/* Called from inside libcoap's (or OpenSSL's) receive path: note it, send
 * the next window from the loop tick. */
void srv_ota_on_pong(srv_device_t *d, int mid) {
  if (!srv_ota_sending(d) || mid < 0 || mid != d->ota->ping_mid)
    return;
  d->ota->ping_mid = -1;
  d->ota->pong_due = 1;
  srv_loop_kick();
}

unsigned srv_ota_timers(srv_devices_t *t) {
  uint64_t now = now_ms(), next = now + 1000;
  if (save_at && save_at <= now)
    srv_ota_flush(t);
  for (size_t i = 0; i < t->n; i++) {
    srv_device_t *d = &t->rows[i];
    struct srv_ota *o = d->ota;
    if (!o || !o->n)
      continue;
    job_t *j = &o->q[0];
    if (j->state == SRV_JOB_SENDING) {
      if (o->pong_due) {
        o->pong_due = 0;
        if (ota_tx_on_pong(&o->tx, now, &outbox))
          OTA_LOGE("ota: %s outbox full", d->id);
        drain(d);
        if (!o->n || o->q[0].state != SRV_JOB_SENDING)
          continue;
      }
      if (ota_tx_next_deadline(&o->tx) <= now) {
        ota_tx_on_timer(&o->tx, now, &outbox);
        drain(d);
      }
      if (o->n && o->q[0].state == SRV_JOB_SENDING) {
        uint64_t dl = ota_tx_next_deadline(&o->tx);
        if (dl < next)
          next = dl;
      }
    } else if (j->state == SRV_JOB_REBOOTING) {
      if (j->deadline <= now)
        end_job(d, SRV_JOB_FAILED,
                "device did not come back with the module after the reboot");
      else if (j->deadline < next)
        next = j->deadline;
    }
  }
  if (save_at && save_at < next)
    next = save_at;
  return next <= now ? 1 : (unsigned)(next - now);
}

static json_t *time_json(int64_t ms) {
  char ts[32];
  return ms && !ota_event_time(ms, ts, sizeof ts) ? json_string(ts)
                                                  : json_null();
}

/* One job; `estimate` adds the planner's figure (an ota_plan_make call). */
static json_t *job_json(const job_t *j, const ota_tx_t *tx, int estimate) {
  char f[2] = {ota_fn_letter(j->ref.func), 0}, n[8];
  snprintf(n, sizeof n, "%u", j->ref.index);
  json_t *o = json_pack("{s:i,s:s,s:{s:s,s:s,s:i},s:s,s:i,s:i}", "job",
                        (json_int_t)j->id, "file", j->name, "module", "f", f,
                        "n", n, "v", (json_int_t)j->ref.version, "state",
                        srv_job_state_name(j->state), "sent",
                        (json_int_t)j->sent, "total", (json_int_t)j->total);
  if (!o)
    return NULL;
  if (tx && j->state == SRV_JOB_SENDING)
    json_object_set_new(o, "transfer",
                        json_string(ota_tx_state_name(tx->state)));
  if (j->state == SRV_JOB_DONE || j->state == SRV_JOB_FAILED) {
    json_object_set_new(o, "result",
                        json_string(j->state == SRV_JOB_DONE ? "ok"
                                    : j->cancelled           ? "cancelled"
                                                             : "failed"));
    json_object_set_new(o, "why", json_string(j->why));
    if (j->t_sent)
      json_object_set_new(o, "transfer_ms",
                          json_integer((json_int_t)(j->t_sent - j->t_start)));
    json_object_set_new(
        o, "total_ms",
        json_integer(j->t_start ? (json_int_t)(j->t_end - j->t_start) : 0));
    json_object_set_new(o, "chunks_sent", json_integer(j->chunks));
    json_object_set_new(o, "chunks_resent", json_integer(j->resent));
    if (j->t_start)
      json_object_set_new(o, "data_usage", srv_usage_json(&j->usage));
  }
  json_object_set_new(o, "origin", json_string(srv_origin_name(j->origin)));
  json_object_set_new(o, "request", json_integer(j->batch));
  json_object_set_new(o, "bytes", json_integer((json_int_t)j->len));
  json_object_set_new(o, "restarts", json_integer(j->restarts));
  json_object_set_new(o, "queued_at", time_json(j->w_queued));
  json_object_set_new(o, "started_at", time_json(j->w_start));
  json_object_set_new(o, "ended_at", time_json(j->w_end));
  if (estimate)
    json_object_set_new(o, "estimate", srv_cloud_estimate_json(&j->ref));
  return o;
}

void srv_ota_json(const srv_device_t *d, void *obj) {
  json_t *root = obj;
  const struct srv_ota *o = d->ota;
  json_t *cur = json_null(), *queued = json_array(), *last = json_null();
  json_t *hist = json_array();
  if (o) {
    for (size_t i = 0; i < o->n; i++) {
      json_t *jj = job_json(&o->q[i], i == 0 ? &o->tx : NULL, 1);
      if (i == 0 && o->q[0].state != SRV_JOB_QUEUED)
        cur = jj;
      else
        json_array_append_new(queued, jj);
    }
    if (o->has_last)
      last = job_json(&o->last, NULL, 1);
    /* Newest first: the queue from its end, then the ended jobs. */
    for (size_t i = o->n; i-- > 0 && json_array_size(hist) < SRV_OTA_HISTORY;)
      json_array_append_new(hist, job_json(&o->q[i], i ? NULL : &o->tx, 0));
    for (size_t k = 0; k < o->nhist && json_array_size(hist) < SRV_OTA_HISTORY;
         k++) {
      size_t at = (o->hist_next + SRV_OTA_HISTORY - 1 - k) % SRV_OTA_HISTORY;
      json_array_append_new(hist, job_json(&o->hist[at], NULL, 0));
    }
  }
  json_object_set_new(root, "ota", cur);
  json_object_set_new(root, "ota_queue", queued);
  json_object_set_new(root, "last_ota", last);
  json_object_set_new(root, "jobs", hist);
}

void *srv_ota_brief_json(const srv_device_t *d) {
  const struct srv_ota *o = d ? d->ota : NULL;
  if (!o || !o->n || o->q[0].state == SRV_JOB_QUEUED)
    return json_null();
  const job_t *j = &o->q[0];
  char mod[32];
  snprintf(mod, sizeof mod, "%c/%u v%u", ota_fn_letter(j->ref.func),
           j->ref.index, j->ref.version);
  return json_pack("{s:i,s:s,s:s,s:s,s:i,s:i,s:i}", "job", (json_int_t)j->id,
                   "module", mod, "origin", srv_origin_name(j->origin), "state",
                   srv_job_state_name(j->state), "sent", (json_int_t)j->sent,
                   "total", (json_int_t)j->total, "queued",
                   (json_int_t)(o->n - 1));
}

void srv_ota_free(srv_device_t *d) {
  struct srv_ota *o = d->ota;
  if (!o)
    return;
  for (size_t i = 0; i < o->n; i++)
    srv_mod_unref(o->q[i].m);
  ota_tx_free(&o->tx);
  free(o);
  d->ota = NULL;
}
