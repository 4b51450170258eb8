/* otalab-device: one simulated Electron, or a fleet of them in one event loop
 * (epoll over their UDP sockets), each with its own DTLS session, flash,
 * cellular link model and faults (PROTOCOL.md 1.4-1.5, 2.1-2.5, 3, 7).
 * Choices: docs/PROTOCOL.md "Device simulator", "Fleets and faults". */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "sim_dev.h"
#include "sim_keys.h"
#include "sim_rest.h"

#ifndef OTALAB_DEFAULT_CATALOG
#define OTALAB_DEFAULT_CATALOG "/usr/share/otalab/electron.json"
#endif

enum { EXIT_OK = 0, EXIT_CONN = 1, EXIT_USAGE = 2, EXIT_HARD_FAULT = 3 };

static sim_ctx_t ctx;
static sim_dev_t *devs;
static size_t ndevs;
static int epfd = -1;
extern sim_dev_t *sim_log_dev;

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
  if (ctx.fleet && sim_log_dev)
    fprintf(stderr, "%ld.%03ld %s [%s] %s\n", (long)ts.tv_sec,
            ts.tv_nsec / 1000000, names[lvl], sim_log_dev->idhex, line);
  else
    fprintf(stderr, "%ld.%03ld %s %s\n", (long)ts.tv_sec, ts.tv_nsec / 1000000,
            names[lvl], line);
}

static void fd_hook(sim_dev_t *d, int old_fd, int new_fd) {
  if (old_fd >= 0)
    epoll_ctl(epfd, EPOLL_CTL_DEL, old_fd, NULL);
  if (new_fd >= 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = d};
    epoll_ctl(epfd, EPOLL_CTL_ADD, new_fd, &ev);
  }
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

static char *read_text(const char *path) {
  uint8_t *b;
  size_t n;
  if (sim_read_file(path, &b, &n))
    return NULL;
  char *s = realloc(b, n + 1);
  if (!s) {
    free(b);
    return NULL;
  }
  s[n] = 0;
  return s;
}

static void write_text(const char *path, const char *s, int mode) {
  FILE *f = fopen(path, "w");
  if (!f)
    return;
  fputs(s, f);
  fclose(f);
  chmod(path, (mode_t)mode);
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: otalab-device --id HEX24 --key FILE --cert FILE --server "
      "HOST:PORT\n"
      "                     --server-cert FILE --state FILE [OPTIONS]\n"
      "       otalab-device (--fleet FILE | --count N --mix REL:N,...) "
      "--server HOST:PORT\n"
      "                     --server-cert FILE [--state-dir DIR] [--api URL "
      "--token T] [OPTIONS]\n\n"
      "A simulated Particle Electron (or a fleet of them in one process):\n"
      "flash, bootloader, describe and the OTA receiver, connecting to\n"
      "otalab-server over DTLS + CoAP.\n\n"
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
      "  --link SPEC         cellular link: 2g|3g|lte-m|lte|custom:...|ideal\n"
      "                      (core/link.h syntax); default ideal\n"
      "  --seed N            link randomness seed (device i uses N+i)\n"
      "  --fault SPEC        repeatable: drop-link-at-chunk:K[:MS],\n"
      "                      reset-during-ota:K, power-loss-during-apply,\n"
      "                      corrupt-chunk:K\n"
      "  --time-scale K      device clock (link, CoAP, OTA, keep-alive) runs "
      "K\n"
      "                      times faster than real time\n"
      "  --once              exit after answering the first Describe (fleet: "
      "all)\n"
      "  -v / -q             verbose / warnings only\n\n"
      "Fleets:\n"
      "  --fleet FILE        JSON list of {id, key, cert, release, product, "
      "app,\n"
      "                      link, faults:[...]} (key/cert: files; missing: "
      "generated)\n"
      "  --count N --mix R:N,R:N  N devices, releases by share (e.g. "
      "0.4.8:10,0.6.1:90)\n"
      "  --id-base HEX24     first generated id (default "
      "e1ec00000000000000000000)\n"
      "  --state-dir DIR     one state file (and key pair) per device\n"
      "  --api URL --token T register generated devices (POST /v1/devices)\n"
      "  --connect-rate N    first connects per second (default 50)\n"
      "  --max-handshakes N  connects wait while N handshakes are in flight\n"
      "                      (default 0: no cap)\n"
      "  --until REL         exit 0 once every device runs REL and is "
      "described\n"
      "  --duration S        exit after S simulated seconds\n"
      "  --help              this text\n\n"
      "Exit: 0 ok, 1 connection failed or refused, 2 usage/setup, 3 hard-fault "
      "loop.\nSSLKEYLOGFILE=FILE appends CLIENT_RANDOM lines (NSS key log).\n",
      OTALAB_DEFAULT_CATALOG);
}

#define MAX_FAULT_ARGS 8
static struct {
  const char *id, *key, *cert, *state, *release, *app, *fixtures, *catalog;
  const char *server, *fleet, *mix, *state_dir, *api, *token, *link, *until;
  const char *id_base;
  const char *faults[MAX_FAULT_ARGS];
  int nfaults, product, once, verbose, quiet, count;
  double connect_rate, duration;
  uint64_t seed;
} opt = {.release = "0.6.1",
         .product = -1,
         .connect_rate = 50,
         .seed = 1,
         .id_base = "e1ec00000000000000000000"};

static int parse_args(int argc, char **argv) {
  ctx.time_scale = 1.0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name, field) else if (v && !strcmp(a, name)) opt.field = v, i++
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(a, "-v"))
      opt.verbose++;
    else if (!strcmp(a, "-q"))
      opt.quiet = 1;
    else if (!strcmp(a, "--once"))
      opt.once = 1;
    OPT("--id", id);
    OPT("--key", key);
    OPT("--cert", cert);
    OPT("--server", server);
    OPT("--state", state);
    OPT("--release", release);
    OPT("--app", app);
    OPT("--fixtures", fixtures);
    OPT("--catalog", catalog);
    OPT("--fleet", fleet);
    OPT("--mix", mix);
    OPT("--state-dir", state_dir);
    OPT("--api", api);
    OPT("--token", token);
    OPT("--link", link);
    OPT("--until", until);
    OPT("--id-base", id_base);
    else if (v && !strcmp(a, "--server-cert")) ctx.server_cert_file = v, i++;
    else if (v && !strcmp(a, "--count")) opt.count = atoi(v), i++;
    else if (v && !strcmp(a, "--seed")) opt.seed = strtoull(v, NULL, 0), i++;
    else if (v && !strcmp(a, "--duration")) opt.duration = atof(v), i++;
    else if (v && !strcmp(a, "--max-handshakes")) ctx.max_handshakes = atoi(v),
                                                  i++;
    else if (v && !strcmp(a, "--connect-rate")) {
      opt.connect_rate = atof(v), i++;
      if (!(opt.connect_rate > 0)) {
        fprintf(stderr, "otalab-device: bad --connect-rate '%s'\n", v);
        return EXIT_USAGE;
      }
    }
    else if (v && !strcmp(a, "--fault")) {
      sim_fault_t f;
      if (sim_fault_parse(v, &f) || opt.nfaults == MAX_FAULT_ARGS) {
        fprintf(stderr, "otalab-device: bad --fault '%s'\n", v);
        return EXIT_USAGE;
      }
      opt.faults[opt.nfaults++] = v, i++;
    }
    else if (v && !strcmp(a, "--product")) {
      char *end;
      long p = strtol(v, &end, 0);
      if (*end || p < 0 || p > 0xFFFF) {
        fprintf(stderr, "otalab-device: bad --product '%s'\n", v);
        return EXIT_USAGE;
      }
      opt.product = (int)p, i++;
    }
    else if (v && !strcmp(a, "--time-scale")) {
      ctx.time_scale = atof(v), i++;
      if (!(ctx.time_scale > 0)) {
        fprintf(stderr, "otalab-device: bad --time-scale '%s'\n", v);
        return EXIT_USAGE;
      }
    }
    else if (v && !strcmp(a, "--recover")) {
      while (i + 1 < argc && argv[i + 1][0] != '-' &&
             ctx.nrecover < SIM_MAX_RECOVER)
        ctx.recover[ctx.nrecover++] = argv[++i];
    }
    else {
      fprintf(stderr, "otalab-device: bad argument '%s'\n", a);
      usage(stderr);
      return EXIT_USAGE;
    }
#undef OPT
  }
  return 0;
}

/* ---- building devices ---------------------------------------------------- */

/* Identity of a fleet device: files given, files in the state dir, or new. */
static int fleet_keys(sim_dev_t *d, const char *key, const char *cert,
                      char *pub, size_t publen) {
  char kp[600], cp[600];
  pub[0] = 0;
  if (!key && opt.state_dir) {
    snprintf(kp, sizeof kp, "%s/%s.key.pem", opt.state_dir, d->idhex);
    snprintf(cp, sizeof cp, "%s/%s.crt.pem", opt.state_dir, d->idhex);
    if (access(kp, R_OK) == 0 && access(cp, R_OK) == 0)
      key = kp, cert = cp;
  }
  if (key && cert) {
    d->key_pem = read_text(key);
    d->cert_pem = read_text(cert);
    if (!d->key_pem || !d->cert_pem) {
      fprintf(stderr, "otalab-device: %s: cannot read %s / %s\n", d->idhex, key,
              cert);
      return EXIT_USAGE;
    }
    return sim_keys_pub_pem(d->key_pem, pub, publen) ? EXIT_USAGE : 0;
  }
  sim_keypair_t k;
  if (sim_keys_generate(d->idhex, &k))
    return EXIT_USAGE;
  d->key_pem = strdup(k.key_pem);
  d->cert_pem = strdup(k.crt_pem);
  snprintf(pub, publen, "%s", k.pub_pem);
  if (opt.state_dir) {
    write_text(kp, k.key_pem, 0600);
    write_text(cp, k.crt_pem, 0644);
  }
  return d->key_pem && d->cert_pem ? 0 : EXIT_USAGE;
}

static int dev_link(sim_dev_t *d, const char *spec, uint64_t seed) {
  ota_link_cfg_t lc;
  char err[160];
  if (!spec || !*spec)
    ota_link_cfg_init(&lc);
  else if (ota_link_parse(spec, &ctx.cat, &lc, err, sizeof err)) {
    fprintf(stderr, "otalab-device: --link %s: %s\n", spec, err);
    return EXIT_USAGE;
  }
  ota_link_init(&d->link, &lc, seed);
  if (spec && *spec) {
    char desc[200];
    ota_link_cfg_format(&lc, desc, sizeof desc);
    sim_log_dev = d;
    OTA_LOGI("link: %s (seed %llu)", desc, (unsigned long long)seed);
  }
  return 0;
}

static int dev_fault(sim_dev_t *d, const char *spec) {
  if (d->nfaults == SIM_MAX_FAULTS ||
      sim_fault_parse(spec, &d->faults[d->nfaults])) {
    fprintf(stderr, "otalab-device: %s: bad fault '%s'\n", d->idhex, spec);
    return EXIT_USAGE;
  }
  d->nfaults++;
  return 0;
}

/* Common part for single and fleet devices. */
static int build_dev(sim_dev_t *d, const char *idhex, const char *release,
                     const char *app, const char *link, int product,
                     json_t *faults, const char *key, const char *cert) {
  sim_dev_init(d, &ctx);
  snprintf(d->idhex, sizeof d->idhex, "%s", idhex);
  for (char *p = d->idhex; *p; p++)
    if (*p >= 'A' && *p <= 'F')
      *p = (char)(*p - 'A' + 'a');
  if (hexid(d->idhex, d->id)) {
    fprintf(stderr, "otalab-device: bad device id '%s'\n", idhex);
    return EXIT_USAGE;
  }
  d->product = product;
  if (ctx.fleet) {
    char pub[256];
    int rc = fleet_keys(d, key, cert, pub, sizeof pub);
    if (rc)
      return rc;
    if (opt.api) {
      int st = sim_rest_register(opt.api, opt.token, d->idhex, pub,
                                 product > 0 ? product : 0);
      if (st != 200 && st != 201) {
        fprintf(stderr, "otalab-device: %s: POST %s/v1/devices: %s%d\n",
                d->idhex, opt.api, st < 0 ? "error " : "HTTP ", st);
        return EXIT_CONN;
      }
    }
    if (opt.state_dir)
      snprintf(d->state_path, sizeof d->state_path, "%s/%s.state",
               opt.state_dir, d->idhex);
  } else {
    d->key_file = key;
    d->cert_file = cert;
    if (opt.state)
      snprintf(d->state_path, sizeof d->state_path, "%s", opt.state);
  }
  if (dev_link(d, link ? link : opt.link, opt.seed + (uint64_t)(d - devs)))
    return EXIT_USAGE;
  for (int i = 0; i < opt.nfaults; i++)
    if (dev_fault(d, opt.faults[i]))
      return EXIT_USAGE;
  size_t i;
  json_t *f;
  json_array_foreach(faults, i, f) {
    if (!json_is_string(f) || dev_fault(d, json_string_value(f)))
      return EXIT_USAGE;
  }
  if (sim_dev_setup(d, release, app, opt.fixtures))
    return EXIT_USAGE;
  return 0;
}

static int build_fleet_file(void) {
  json_error_t je;
  json_t *root = json_load_file(opt.fleet, 0, &je);
  if (!json_is_array(root)) {
    fprintf(stderr, "otalab-device: --fleet %s: %s (line %d)\n", opt.fleet,
            root ? "not a JSON list" : je.text, je.line);
    json_decref(root);
    return EXIT_USAGE;
  }
  ndevs = json_array_size(root);
  devs = calloc(ndevs ? ndevs : 1, sizeof *devs);
  int rc = devs ? 0 : EXIT_USAGE;
  for (size_t i = 0; !rc && i < ndevs; i++) {
    json_t *e = json_array_get(root, i);
    const char *id = json_string_value(json_object_get(e, "id"));
    const char *rel = json_string_value(json_object_get(e, "release"));
    json_t *pj = json_object_get(e, "product");
    if (!id) {
      fprintf(stderr, "otalab-device: --fleet entry %zu has no id\n", i);
      rc = EXIT_USAGE;
      break;
    }
    rc = build_dev(&devs[i], id, rel ? rel : opt.release,
                   json_string_value(json_object_get(e, "app")),
                   json_string_value(json_object_get(e, "link")),
                   json_is_integer(pj) ? (int)json_integer_value(pj)
                                       : opt.product,
                   json_object_get(e, "faults"),
                   json_string_value(json_object_get(e, "key")),
                   json_string_value(json_object_get(e, "cert")));
  }
  json_decref(root);
  return rc;
}

static int build_fleet_mix(void) {
  uint8_t base[12];
  if (hexid(opt.id_base, base)) {
    fprintf(stderr, "otalab-device: bad --id-base\n");
    return EXIT_USAGE;
  }
  /* REL:SHARE,... -> counts proportional to the shares, summing to N. */
  char rel[16][32];
  double share[16], total = 0;
  int nrel = 0;
  const char *p = opt.mix ? opt.mix : opt.release;
  while (*p && nrel < 16) {
    size_t n = strcspn(p, ",");
    char item[64];
    snprintf(item, sizeof item, "%.*s", (int)n, p);
    char *c = strchr(item, ':');
    share[nrel] = c ? atof(c + 1) : 1;
    if (c)
      *c = 0;
    snprintf(rel[nrel], sizeof rel[nrel], "%s", item);
    if (!ota_catalog_find(&ctx.cat, rel[nrel]) || share[nrel] < 0) {
      fprintf(stderr, "otalab-device: --mix: unknown release '%s'\n", item);
      return EXIT_USAGE;
    }
    total += share[nrel++];
    p += n + (p[n] == ',');
  }
  if (!nrel || total <= 0) {
    fprintf(stderr, "otalab-device: --mix: nothing to run\n");
    return EXIT_USAGE;
  }
  ndevs = (size_t)opt.count;
  devs = calloc(ndevs, sizeof *devs);
  if (!devs)
    return EXIT_USAGE;
  size_t done = 0;
  for (int r = 0; r < nrel; r++) {
    size_t n =
        r == nrel - 1 ? ndevs - done : (size_t)(ndevs * share[r] / total + 0.5);
    if (done + n > ndevs)
      n = ndevs - done;
    for (size_t k = 0; k < n; k++, done++) {
      uint8_t id[12];
      memcpy(id, base, 12);
      uint32_t v = ((uint32_t)id[8] << 24 | (uint32_t)id[9] << 16 |
                    (uint32_t)id[10] << 8 | id[11]) +
                   (uint32_t)done;
      id[8] = (uint8_t)(v >> 24), id[9] = (uint8_t)(v >> 16),
      id[10] = (uint8_t)(v >> 8), id[11] = (uint8_t)v;
      char hx[25];
      for (int j = 0; j < 12; j++)
        snprintf(hx + 2 * j, 3, "%02x", id[j]);
      int rc = build_dev(&devs[done], hx, rel[r], opt.app, NULL, opt.product,
                         NULL, NULL, NULL);
      if (rc)
        return rc;
    }
  }
  return 0;
}

/* Raise the open-file limit to the hard limit (one UDP socket per device). */
static void raise_nofile(size_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl))
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < want + 64)
    fprintf(stderr,
            "otalab-device: open-file limit %llu is below %zu devices: raise "
            "the hard limit (ulimit -Hn)\n",
            (unsigned long long)rl.rlim_cur, want);
}

static long vm_hwm_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld", &kb) == 1)
      break;
  if (f)
    fclose(f);
  return kb;
}

/* ---- the loop ------------------------------------------------------------ */

static int all_done(uint64_t now, uint64_t start) {
  size_t ready = 0, dead = 0, at = 0;
  for (size_t i = 0; i < ndevs; i++) {
    sim_dev_t *d = &devs[i];
    dead += d->phase == SIM_DEAD;
    ready += sim_dev_ready(d);
    at += sim_dev_ready(d) && opt.until &&
          !strcmp(ota_device_release_name(&d->dev), opt.until) &&
          d->dev.state == OTA_DEV_RUNNING_APP;
  }
  if (dead == ndevs)
    return 1;
  if (opt.duration > 0 && now - start >= (uint64_t)(opt.duration * 1000))
    return 1;
  if (opt.until)
    return at + dead == ndevs;
  return opt.once && ready + dead == ndevs;
}

/* One device busy-polls this long (us) after a datagram before sleeping. */
#define SIM_SPIN_US 50

static uint64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void run_loop(void) {
  struct epoll_event evs[256];
  uint64_t spin_until = 0;
  uint64_t start = sim_now(&ctx), trimmed = sim_real_ms();
  while (!stop) {
    /* Handshakes and OTA regions leave the heap fragmented: give free pages
     * back once a second (a fleet's RSS is its memory budget). */
    if (ctx.fleet && sim_real_ms() - trimmed >= 1000) {
      malloc_trim(0);
      trimmed = sim_real_ms();
    }
    uint64_t now = sim_now(&ctx), dl = UINT64_MAX;
    for (size_t i = 0; i < ndevs; i++) {
      uint64_t t = sim_dev_next_deadline(&devs[i]);
      if (t <= now) {
        sim_dev_on_timer(&devs[i]);
        t = sim_dev_next_deadline(&devs[i]);
      }
      if (t < dl)
        dl = t;
    }
    if (all_done(sim_now(&ctx), start))
      break;
    now = sim_now(&ctx);
    int wait = 200;
    if (dl <= now)
      wait = 0;
    else if ((double)(dl - now) / ctx.time_scale < 200)
      wait = (int)((double)(dl - now) / ctx.time_scale);
    int n = epoll_wait(epfd, evs, 256, spin_until ? 0 : wait);
    if (n == 0 && spin_until) {
      /* Busy-poll briefly after traffic (one device only): OTA chunks come
       * every few microseconds, and each sleep/wake-up between two of them
       * cost the sender ~9 us (loopback, this VM: 3.1 ms instead of 4.9 ms
       * of window sending per 0.6.2 flash; tests/bench/profile_ota.sh). */
      if (mono_us() < spin_until)
        continue;
      spin_until = 0;
      n = epoll_wait(epfd, evs, 256, wait);
    }
    for (int i = 0; i < n; i++)
      sim_dev_on_readable(evs[i].data.ptr);
    if (n > 0 && !ctx.fleet)
      spin_until = mono_us() + SIM_SPIN_US;
  }
}

static void report(uint64_t sim_ms, uint64_t real_ms) {
  if (!ctx.fleet) {
    sim_dev_t *d = &devs[0];
    sim_transport_stats_t st = d->last_stats;
    if (d->t)
      st = d->t->stats;
    printf("bytes tx=%llu rx=%llu handshake(%s) tx=%llu rx=%llu dgrams "
           "tx=%llu rx=%llu ms=%u\n",
           (unsigned long long)st.tx_bytes, (unsigned long long)st.rx_bytes,
           st.resumed ? "resumed" : "full", (unsigned long long)st.hs_tx_bytes,
           (unsigned long long)st.hs_rx_bytes,
           (unsigned long long)st.hs_tx_dgrams,
           (unsigned long long)st.hs_rx_dgrams, st.hs_ms);
    if (d->n.otas_ok || d->n.faults)
      printf("ota: %llu ok, %llu rejected, last %llu ms simulated (%llu ms "
             "real), faults %llu, link %s\n",
             (unsigned long long)d->n.otas_ok,
             (unsigned long long)d->n.otas_rejected,
             (unsigned long long)d->n.last_ota_sim_ms,
             (unsigned long long)d->n.last_ota_real_ms,
             (unsigned long long)d->n.faults,
             d->link.cfg.name[0] ? d->link.cfg.name : "ideal");
    return;
  }
  sim_dev_counters_t t = {0};
  size_t ready = 0, dead = 0;
  for (size_t i = 0; i < ndevs; i++) {
    sim_dev_t *d = &devs[i];
    printf(
        "device %s release %s state %s phase %s hs full=%llu "
        "resumed=%llu otas=%llu rejected=%llu faults=%llu "
        "last_ota_sim_ms=%llu\n",
        d->idhex, ota_device_release_name(&d->dev),
        ota_dev_state_name(d->dev.state), sim_phase_name(d->phase),
        (unsigned long long)d->n.full_hs, (unsigned long long)d->n.resumed_hs,
        (unsigned long long)d->n.otas_ok,
        (unsigned long long)d->n.otas_rejected, (unsigned long long)d->n.faults,
        (unsigned long long)d->n.last_ota_sim_ms);
    ready += sim_dev_ready(d);
    dead += d->phase == SIM_DEAD;
    t.full_hs += d->n.full_hs, t.resumed_hs += d->n.resumed_hs;
    t.failed_hs += d->n.failed_hs, t.otas_ok += d->n.otas_ok;
    t.otas_rejected += d->n.otas_rejected, t.ota_bytes += d->n.ota_bytes;
    t.faults += d->n.faults, t.reconnects += d->n.reconnects;
  }
  printf("fleet: devices=%zu ready=%zu dead=%zu full_hs=%llu resumed_hs=%llu "
         "failed_hs=%llu otas=%llu rejected=%llu payload_bytes=%llu "
         "faults=%llu reconnects=%llu sim_ms=%llu real_ms=%llu images=%zu "
         "image_mb=%.1f/%.1f rss_peak_kb=%ld\n",
         ndevs, ready, dead, (unsigned long long)t.full_hs,
         (unsigned long long)t.resumed_hs, (unsigned long long)t.failed_hs,
         (unsigned long long)t.otas_ok, (unsigned long long)t.otas_rejected,
         (unsigned long long)t.ota_bytes, (unsigned long long)t.faults,
         (unsigned long long)t.reconnects, (unsigned long long)sim_ms,
         (unsigned long long)real_ms, ota_imgstore_count(&ctx.images),
         ctx.images.bytes_unique / 1e6, ctx.images.bytes_logical / 1e6,
         vm_hwm_kb());
}

int main(int argc, char **argv) {
  int code = parse_args(argc, argv);
  if (code)
    return code;
  ctx.fleet = opt.fleet || opt.count > 0;
  if (!opt.server || !ctx.server_cert_file ||
      (!ctx.fleet && (!opt.id || !opt.key || !opt.cert))) {
    fprintf(stderr, "otalab-device: --id (24 hex digits), --key, --cert, "
                    "--server and --server-cert are required (or --fleet / "
                    "--count for a fleet)\n");
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *colon = strrchr(opt.server, ':');
  int port = colon ? atoi(colon + 1) : 0;
  if (!colon || port <= 0 || port > 65535 ||
      (size_t)(colon - opt.server) >= sizeof ctx.host) {
    fprintf(stderr, "otalab-device: --server must be HOST:PORT\n");
    return EXIT_USAGE;
  }
  memcpy(ctx.host, opt.server, (size_t)(colon - opt.server));
  ctx.port = (uint16_t)port;
  ctx.real_t0 = sim_real_ms();
  ctx.durable = !ctx.fleet;
  ctx.keylog = getenv("SSLKEYLOGFILE");
  ota_log_set(log_sink, NULL,
              opt.verbose ? OTA_LOG_DEBUG
              : opt.quiet ? OTA_LOG_WARN
                          : OTA_LOG_INFO);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  ota_imgstore_init(&ctx.images);
  if (ctx.fleet && !(ctx.server_cert_pem = read_text(ctx.server_cert_file))) {
    fprintf(stderr, "otalab-device: cannot read %s\n", ctx.server_cert_file);
    return EXIT_USAGE;
  }
  char err[256] = "";
  const char *catalog = opt.catalog;
  if (!catalog)
    catalog = getenv("OTALAB_CATALOG");
  if (!catalog || !*catalog)
    catalog = OTALAB_DEFAULT_CATALOG;
  int rc = ota_catalog_load_file(&ctx.cat, catalog, err, sizeof err);
  if (rc) {
    fprintf(stderr, "otalab-device: catalogue %s: %s %s\n", catalog,
            ota_strerror(rc), err);
    return EXIT_USAGE;
  }
  if (opt.state_dir && mkdir(opt.state_dir, 0755) && errno != EEXIST) {
    fprintf(stderr, "otalab-device: cannot create %s: %s\n", opt.state_dir,
            strerror(errno));
    return EXIT_USAGE;
  }
  epfd = epoll_create1(0);
  sim_dev_fd_hook = fd_hook;
  if (ctx.fleet) {
    /* Blocks of 16 KB and more get their own mapping: mbedTLS's two 16.7 KB
     * record buffers per connection (fixed size in Debian's build) then
     * cost only the pages a datagram touched, not a memset of recycled heap
     * at every reconnect, and an OTA region goes back to the OS when freed. */
    mallopt(M_MMAP_THRESHOLD, 16 * 1024);
    raise_nofile(ndevs ? ndevs : (size_t)opt.count);
    code = opt.fleet ? build_fleet_file() : build_fleet_mix();
  } else {
    ndevs = 1;
    devs = calloc(1, sizeof *devs);
    code = devs ? build_dev(&devs[0], opt.id, opt.release, opt.app, NULL,
                            opt.product, NULL, opt.key, opt.cert)
                : EXIT_USAGE;
  }
  if (!code) {
    uint64_t t0 = sim_now(&ctx), r0 = sim_real_ms();
    double gap = 1000.0 * ctx.time_scale / opt.connect_rate;
    for (size_t i = 0; i < ndevs; i++)
      sim_dev_start(&devs[i], t0 + (uint64_t)(gap * (double)i));
    if (ctx.fleet)
      fprintf(stderr,
              "otalab-device: fleet of %zu devices, connecting at "
              "%.0f/s\n",
              ndevs, opt.connect_rate);
    run_loop();
    uint64_t sim_ms = sim_now(&ctx) - t0, real_ms = sim_real_ms() - r0;
    for (size_t i = 0; i < ndevs; i++)
      if (devs[i].phase == SIM_DEAD && devs[i].exit_code > code)
        code = devs[i].exit_code;
    if (ctx.fleet && code && opt.until)
      code = EXIT_CONN;
    if (ctx.fleet && !code && opt.until && stop)
      code = EXIT_CONN;
    report(sim_ms, real_ms);
  }
  for (size_t i = 0; devs && i < ndevs; i++)
    sim_dev_free(&devs[i]);
  fflush(stdout);
  free(devs);
  free(ctx.server_cert_pem);
  ota_imgstore_free(&ctx.images);
  ota_catalog_free(&ctx.cat);
  if (epfd >= 0)
    close(epfd);
  return code;
}
