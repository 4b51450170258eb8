/* otalab scenario: runs a scenario with real processes on loopback -- one
 * otalab-server, one otalab-device per device behind a UDP relay that counts
 * the device's bytes (the cellular data a real Electron would use). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "http.h"
#include "otalab/catalog.h"
#include "otalab/describe.h"
#include "otalab/err.h"
#include "otalab/planner.h"
#include "scenario.h"
#include "scenario_common.h"

#define POLL_MS 200  /* GET /v1/devices/:id period */
#define SETTLE_S 2.0 /* expectations must hold this long before stopping */
#define STOP_WAIT_MS 3000

static volatile sig_atomic_t stop_sig; /* SIGINT/SIGTERM/SIGHUP: stop, report */

static void on_stop(int sig) {
  stop_sig = sig;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double sc_now(const sc_run_t *run) {
  return mono_s() - run->t0_mono;
}

double sc_sim(const sc_run_t *run) {
  return sc_now(run) * run->time_scale;
}

static void say(const sc_run_t *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const sc_run_t *run, const char *fmt, ...) {
  if (run->quiet || run->json)
    return;
  sc_progress_clear((sc_run_t *)run);
  va_list ap;
  va_start(ap, fmt);
  if (run->time_scale != 1) /* simulated seconds, then the wall clock */
    printf("[%6.1fs, %5.1fs wall] ", run->t0_mono > 0 ? sc_sim(run) : 0.0,
           run->t0_mono > 0 ? sc_now(run) : 0.0);
  else
    printf("[%6.1fs] ", run->t0_mono > 0 ? sc_now(run) : 0.0);
  vprintf(fmt, ap);
  putchar('\n');
  fflush(stdout);
  va_end(ap);
}

/* ---- processes ---- */

/* Start argv in its own process group, stdout/stderr to files. */
static pid_t spawn(char *const argv[], const char *out, const char *err) {
  fflush(NULL);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    setpgid(0, 0);
    /* its own group (stop_proc signals the group), yet it must not outlive
     * the runner: a runner killed by a CTest timeout leaves no server or
     * device behind */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
      _exit(127);
    int o = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int e = open(err, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int n = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || n < 0)
      _exit(127);
    dup2(n, 0);
    dup2(o, 1);
    dup2(e, 2);
    execvp(argv[0], argv);
    dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

/* Run argv to completion (bounded by the tool itself); exit status or -1. */
static int run_tool(char *const argv[], const char *log) {
  pid_t pid = spawn(argv, log, log);
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) < 0)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* SIGTERM the group, wait up to STOP_WAIT_MS, then SIGKILL. Exit code or
 * 128+signal; -1 when it was not running. */
static int stop_proc(pid_t pid) {
  int st;
  if (pid <= 0)
    return -1;
  kill(-pid, SIGTERM);
  for (int i = 0; i < STOP_WAIT_MS / 20; i++) {
    if (waitpid(pid, &st, WNOHANG) == pid)
      goto done;
    usleep(20000);
  }
  kill(-pid, SIGKILL);
  if (waitpid(pid, &st, 0) != pid)
    return -1;
done:
  kill(-pid, SIGKILL); /* any child left in the group */
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* SIGKILL the group at once (a crash); exit code as stop_proc(). */
static int kill_proc(pid_t pid) {
  int st;
  if (pid <= 0)
    return -1;
  kill(-pid, SIGKILL);
  if (waitpid(pid, &st, 0) != pid)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int is_exe(const char *p) {
  return access(p, X_OK) == 0;
}

/* The binaries: --bin-dir (DIR/NAME, DIR/server/NAME, DIR/device-sim/NAME),
 * then the otalab build tree (/proc/self/exe/../../server), then PATH. */
static void find_bin(const sc_run_t *run, const char *sub, const char *name,
                     char *out, size_t cap) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s", run->self);
  char *s = strrchr(dir, '/');
  if (s)
    *s = 0;
  if (run->bin_dir) {
    snprintf(out, cap, "%s/%s", run->bin_dir, name);
    if (is_exe(out))
      return;
    snprintf(out, cap, "%s/%s/%s", run->bin_dir, sub, name);
    if (is_exe(out))
      return;
  }
  snprintf(out, cap, "%s/../%s/%s", dir, sub, name);
  if (is_exe(out))
    return;
  snprintf(out, cap, "%s/%s", dir, name);
  if (is_exe(out))
    return;
  snprintf(out, cap, "%s", name); /* PATH */
}

/* ---- HTTP ---- */

/* METHOD path with an optional body; the JSON answer (or NULL) and status. */
static json_t *http_json(sc_run_t *run, const char *method, const char *path,
                         const char *ctype, const void *body, size_t len,
                         int *status) {
  cli_http_resp_t r;
  char hdr[160] = "";
  if (ctype)
    snprintf(hdr, sizeof hdr, "Content-Type: %s\r\n", ctype);
  *status = 0;
  if (cli_http_request(run->url, method, path, run->token, ctype ? hdr : NULL,
                       body, len, 5000, &r))
    return NULL;
  *status = r.status;
  json_t *o = json_loadb(r.body ? r.body : "", r.body_len, 0, NULL);
  cli_http_free(&r);
  return o;
}

/* A multipart body of files (field "file") and plain fields, malloc'd. */
typedef struct {
  char *buf;
  size_t len, cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->buf = realloc(b->buf, b->cap);
    if (!b->buf)
      abort();
  }
  memcpy(b->buf + b->len, p, n);
  b->len += n;
}

#define BOUNDARY "otalab-scenario-5e1f9a"

static void mp_field(sbuf_t *b, const char *name, const char *val) {
  char h[256];
  int n = snprintf(h, sizeof h,
                   "--" BOUNDARY "\r\nContent-Disposition: form-data; "
                   "name=\"%s\"\r\n\r\n%s\r\n",
                   name, val);
  sb_add(b, h, (size_t)n);
}

static int mp_file(sbuf_t *b, const char *field, const char *path) {
  uint8_t *data;
  size_t len;
  if (cli_read_file(path, &data, &len))
    return -1;
  const char *base = strrchr(path, '/');
  char h[400];
  int n = snprintf(h, sizeof h,
                   "--" BOUNDARY "\r\nContent-Disposition: form-data; "
                   "name=\"%s\"; filename=\"%s\"\r\nContent-Type: "
                   "application/octet-stream\r\n\r\n",
                   field, base ? base + 1 : path);
  sb_add(b, h, (size_t)n);
  sb_add(b, data, len);
  sb_add(b, "\r\n", 2);
  free(data);
  return 0;
}

static void mp_end(sbuf_t *b) {
  static const char end[] = "--" BOUNDARY "--\r\n";
  sb_add(b, end, sizeof end - 1);
}

/* ---- setup: apps, keys, server, products, devices ---- */

static int upstream(int port);

/* The file of an app reference (name in "apps" or inline), built with
 * otalab mkapp into DIR/apps; product/version set the suffix for product
 * firmware (0 = a developer build). */
static int app_file(sc_run_t *run, json_t *ref, uint32_t product,
                    unsigned version, char *out, size_t cap) {
  json_t *spec = ref;
  const char *name = "inline";
  if (json_is_string(ref)) {
    name = json_string_value(ref);
    spec = json_object_get(json_object_get(run->spec, "apps"), name);
  }
  const char *file = json_string_value(json_object_get(spec, "file"));
  if (file) {
    sc_app_path(run, file, out, cap);
    return access(out, R_OK) ? sc_setup_fail(run, "app file %s: missing", out)
                             : 0;
  }
  const char *req = json_string_value(json_object_get(spec, "requires"));
  const char *size = json_string_value(json_object_get(spec, "size"));
  json_t *uv = json_object_get(spec, "version");
  char uvs[16], pid[16], pver[16], path[600];
  snprintf(uvs, sizeof uvs, "%lld",
           json_is_integer(uv) ? json_integer_value(uv) : 6);
  snprintf(pid, sizeof pid, "%u", product ? product : 10);
  snprintf(pver, sizeof pver, "%u", version);
  snprintf(path, sizeof path, "%s/apps/%s-p%u-v%u.bin", run->dir, name, product,
           version);
  snprintf(out, cap, "%s", path);
  if (!access(path, R_OK))
    return 0;
  char *argv[16] = {run->self,   "mkapp",  "--requires",
                    (char *)req, "--size", (char *)(size ? size : "8K"),
                    "--version", uvs,      "--product-id",
                    pid,         "--out",  path};
  if (product) {
    argv[12] = "--product-version";
    argv[13] = pver;
  }
  char log[600];
  snprintf(log, sizeof log, "%s/tools.log", run->dir);
  if (run_tool(argv, log))
    return sc_setup_fail(run, "otalab mkapp --requires %s failed (see %s)", req,
                         log);
  return 0;
}

static int start_server(sc_run_t *run) {
  char keys[600], data[600], out[600], err[600], cp[16], hp[16];
  snprintf(keys, sizeof keys, "%s/keys", run->dir);
  snprintf(data, sizeof data, "%s/data", run->dir);
  snprintf(out, sizeof out, "%s/server.out", run->dir);
  snprintf(err, sizeof err, "%s/server.log", run->dir);
  snprintf(cp, sizeof cp, "%d", run->coap_port);
  snprintf(hp, sizeof hp, "%d", run->http_port);
  char *argv[64] = {
      run->server_bin, "--coap-port", cp,       "--http-port", hp,
      "--keys",        keys,          "--data", data,          "--token",
      run->token,      "--fixtures",  run->fix, "-v"};
  int n = 14; /* --fixtures: the modules the Safe Mode Healer sends */
  json_t *args = json_object_get(json_object_get(run->spec, "server"), "args");
  size_t i;
  json_t *a;
  json_array_foreach(args, i, a) if (n < 62 && json_is_string(a)) argv[n++] =
      (char *)json_string_value(a);
  argv[n] = NULL;
  truncate(out, 0);
  run->server_pid = spawn(argv, out, err);
  if (run->server_pid < 0)
    return sc_setup_fail(run, "cannot start %s", run->server_bin);
  run->server_starts++;
  for (int t = 0; t < 200; t++) { /* 10 s */
    FILE *f = fopen(out, "r");
    char line[200];
    int c = 0, h = 0;
    while (f && fgets(line, sizeof line, f))
      if (sscanf(line, "listening coap=%d http=%d", &c, &h) == 2)
        break;
    if (f)
      fclose(f);
    if (c && h) {
      run->coap_port = c;
      run->http_port = h;
      snprintf(run->url, sizeof run->url, "http://127.0.0.1:%d", h);
      run->server_up = 1;
      return 0;
    }
    int st;
    if (waitpid(run->server_pid, &st, WNOHANG) == run->server_pid) {
      run->server_pid = -1;
      return sc_setup_fail(run, "otalab-server exited at start (see %s)", err);
    }
    usleep(50000);
  }
  return sc_setup_fail(run, "otalab-server did not print 'listening' in 10 s");
}

static void open_stream(sc_run_t *run) {
  int status = 0;
  run->sse_len = 0;
  run->sse_fd =
      cli_http_stream(run->url, "/v1/events", run->token, 3000, &status);
  if (run->sse_fd >= 0 && status != 200) {
    close(run->sse_fd);
    run->sse_fd = -1;
  }
  run->sse_ok = run->sse_fd >= 0;
}

static int setup_products(sc_run_t *run) {
  json_t *ps = json_object_get(run->spec, "products");
  size_t i, j;
  json_t *p, *fw;
  json_array_foreach(ps, i, p) {
    uint32_t id = (uint32_t)json_integer_value(json_object_get(p, "id"));
    const char *name = json_string_value(json_object_get(p, "name"));
    char body[256], path[96];
    snprintf(body, sizeof body, "{\"id\":%u,\"name\":\"%s\"}", id,
             name ? name : "product");
    int st;
    json_decref(http_json(run, "POST", "/v1/products", "application/json", body,
                          strlen(body), &st));
    if (st != 200 && st != 201 && st != 409)
      return sc_setup_fail(run, "POST /v1/products (%u): HTTP %d", id, st);
    json_array_foreach(json_object_get(p, "firmware"), j, fw) {
      unsigned ver =
          (unsigned)json_integer_value(json_object_get(fw, "version"));
      char file[600], vs[16];
      if (app_file(run, json_object_get(fw, "app"), id, ver, file, sizeof file))
        return 1;
      sbuf_t b = {0};
      snprintf(vs, sizeof vs, "%u", ver);
      mp_field(&b, "version", vs);
      mp_field(&b, "title", "scenario firmware");
      mp_file(&b, "binary", file);
      mp_end(&b);
      snprintf(path, sizeof path, "/v1/products/%u/firmware", id);
      json_t *o = http_json(run, "POST", path,
                            "multipart/form-data; boundary=" BOUNDARY, b.buf,
                            b.len, &st);
      free(b.buf);
      if (st != 200 && st != 201) {
        const char *e =
            json_string_value(json_object_get(o, "error_description"));
        sc_setup_fail(run, "POST %s v%u: HTTP %d %s", path, ver, st,
                      e ? e : "");
        json_decref(o);
        return 1;
      }
      json_decref(o);
      say(run, "product %u: firmware v%u uploaded (%s)", id, ver,
          strrchr(file, '/') + 1);
    }
  }
  return 0;
}

static int release_product(sc_run_t *run, uint32_t id, unsigned ver) {
  char path[96], body[64];
  int st;
  snprintf(path, sizeof path, "/v1/products/%u/firmware/release", id);
  snprintf(body, sizeof body, "{\"version\":%u}", ver);
  json_decref(
      http_json(run, "PUT", path, "application/json", body, strlen(body), &st));
  say(run, "product %u: firmware v%u released (HTTP %d)", id, ver, st);
  return st == 200 ? 0 : -1;
}

/* Keys, registration (POST /v1/devices, else the key file in DATA/devices),
 * the relay sockets, and the app to provision. */
static int setup_device(sc_run_t *run, sc_dev_t *d) {
  char dir[600], log[600], pem[700];
  snprintf(dir, sizeof dir, "%s/%s", run->dir, d->name);
  snprintf(log, sizeof log, "%s/tools.log", run->dir);
  char *argv[] = {run->self, "keys",  "device", "--id",
                  d->hex,    "--out", dir,      NULL};
  if (run_tool(argv, log))
    return sc_setup_fail(run, "otalab keys device %s failed", d->hex);
  snprintf(pem, sizeof pem, "%s/%s.pub.pem", dir, d->hex);
  uint8_t *key;
  size_t klen;
  if (cli_read_file(pem, &key, &klen))
    return sc_setup_fail(run, "cannot read %s", pem);
  json_t *req = json_pack("{s:s,s:s%,s:s,s:I}", "id", d->hex, "public_key",
                          (const char *)key, klen, "name", d->name,
                          "product_id", (json_int_t)d->product);
  char *body = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  int st;
  json_decref(http_json(run, "POST", "/v1/devices", "application/json", body,
                        strlen(body), &st));
  free(body);
  if (st == 404 || st == 405 || st == 0) { /* no registry: the key file */
    char to[700];
    snprintf(to, sizeof to, "%s/data/devices/%s.pub.pem", run->dir, d->hex);
    cli_write_file(to, key, klen);
  } else if (st != 200 && st != 201) {
    free(key);
    return sc_setup_fail(run, "POST /v1/devices %s: HTTP %d", d->name, st);
  }
  free(key);
  /* the relay */
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  d->dev_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  d->srv_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (d->dev_fd < 0 || d->srv_fd < 0 ||
      bind(d->dev_fd, (struct sockaddr *)&a, sizeof a) ||
      getsockname(d->dev_fd, (struct sockaddr *)&a, &al))
    return sc_setup_fail(run, "relay socket: %s", strerror(errno));
  d->relay_port = ntohs(a.sin_port);
  close(d->srv_fd);
  if ((d->srv_fd = upstream(run->coap_port)) < 0)
    return sc_setup_fail(run, "relay connect: %s", strerror(errno));
  /* the provisioned app */
  json_t *spec = json_array_get(json_object_get(run->spec, "devices"), 0);
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(run->spec, "devices"), i,
                     e) if (!strcmp(json_string_value(json_object_get(e, "id")),
                                    d->group)) spec = e;
  json_t *app = json_object_get(spec, "app");
  if (app && app_file(run, app, 0, 0, d->app, sizeof d->app))
    return 1;
  return 0;
}

static int start_device(sc_run_t *run, sc_dev_t *d) {
  char key[700], crt[700], srv[64], pin[600], state[600], out[600], err[600],
      prod[16], seed[16], scale[32];
  snprintf(key, sizeof key, "%s/%s/%s.key.pem", run->dir, d->name, d->hex);
  snprintf(crt, sizeof crt, "%s/%s/%s.crt.pem", run->dir, d->name, d->hex);
  snprintf(srv, sizeof srv, "127.0.0.1:%u", d->relay_port);
  snprintf(pin, sizeof pin, "%s/keys/server.crt.pem", run->dir);
  snprintf(state, sizeof state, "%s/%s.state", run->dir, d->name);
  snprintf(out, sizeof out, "%s/%s.out", run->dir, d->name);
  snprintf(err, sizeof err, "%s/%s.log", run->dir, d->name);
  snprintf(prod, sizeof prod, "%u", d->product);
  char *argv[64] = {run->device_bin,
                    "--id",
                    d->hex,
                    "--key",
                    key,
                    "--cert",
                    crt,
                    "--server",
                    srv,
                    "--server-cert",
                    pin,
                    "--state",
                    state,
                    "--fixtures",
                    run->fix,
                    "--release",
                    d->release,
                    "-v"};
  int n = 18;
  if (d->app[0]) {
    argv[n++] = "--app";
    argv[n++] = d->app;
  }
  if (d->product) {
    argv[n++] = "--product";
    argv[n++] = prod;
  }
  /* the devices entry: link, faults (otalab-device's own syntax) */
  json_t *spec = NULL, *e, *f;
  size_t i, k;
  json_array_foreach(json_object_get(run->spec, "devices"), i, e) {
    if (!strcmp(json_string_value(json_object_get(e, "id")), d->group))
      spec = e;
  }
  const char *link = json_string_value(json_object_get(spec, "link"));
  if (link) {
    argv[n++] = "--link";
    argv[n++] = (char *)link;
  }
  json_array_foreach(json_object_get(spec, "faults"), k, f) {
    if (n < 56 && json_is_string(f)) {
      argv[n++] = "--fault";
      argv[n++] = (char *)json_string_value(f);
    }
  }
  /* the link's randomness: one seed per device (otalab-device: N+i in a
   * fleet), the same on every start of it */
  snprintf(seed, sizeof seed, "%u", run->seed + (unsigned)(d - run->dev));
  argv[n++] = "--seed";
  argv[n++] = seed;
  if (run->time_scale != 1) {
    snprintf(scale, sizeof scale, "%g", run->time_scale);
    argv[n++] = "--time-scale";
    argv[n++] = scale;
  }
  argv[n] = NULL;
  d->pid = spawn(argv, out, err);
  if (d->pid < 0)
    return sc_setup_fail(run, "cannot start %s", run->device_bin);
  d->exited = 0;
  d->starts++;
  return 0;
}

/* ---- the loop: relay, event stream, device logs, polling ---- */

/* A socket connected to the server's CoAP port: the device's upstream. */
static int upstream(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a)) {
    close(fd);
    fd = -1;
  }
  return fd;
}

/* Datagrams both ways, counted. A device that comes back from another
 * source port (a new socket after its reboot) gets a new upstream port too,
 * as a new cellular attach would: the server sees a new peer. */
static void relay(sc_run_t *run, sc_dev_t *d, int from_dev) {
  uint8_t buf[2048];
  for (int k = 0; k < 64; k++) {
    struct sockaddr_in src;
    socklen_t sl = sizeof src;
    ssize_t n;
    if (from_dev) {
      n = recvfrom(d->dev_fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &sl);
      if (n < 0)
        return;
      if (d->have_peer && (src.sin_port != d->peer.sin_port ||
                           src.sin_addr.s_addr != d->peer.sin_addr.s_addr)) {
        int fd = upstream(run->coap_port);
        if (fd >= 0) {
          close(d->srv_fd);
          d->srv_fd = fd;
        }
      }
      d->peer = src;
      d->have_peer = 1;
      d->up += (uint64_t)n;
      send(d->srv_fd, buf, (size_t)n, 0);
    } else {
      n = recv(d->srv_fd, buf, sizeof buf, 0);
      if (n < 0)
        return;
      d->down += (uint64_t)n;
      if (d->have_peer)
        sendto(d->dev_fd, buf, (size_t)n, 0, (struct sockaddr *)&d->peer,
               sizeof d->peer);
    }
  }
}

static sc_dev_t *dev_by_hex(sc_run_t *run, const char *hex) {
  for (int i = 0; hex && i < run->ndev; i++)
    if (!strcasecmp(run->dev[i].hex, hex))
      return &run->dev[i];
  return NULL;
}

/* otalab/ota/progress {"module":"s/1 v105","sent":N,"total":T}: the server
 * pushes these at every 10 % of a module, sooner than the GET polling sees
 * them (an "ota_progress:P" action waits on it). */
static void progress_event(sc_run_t *run, sc_dev_t *d, const char *data) {
  json_t *o = json_loads(data, 0, NULL);
  const char *mod = json_string_value(json_object_get(o, "module"));
  char f;
  unsigned n, v;
  if (mod && sscanf(mod, "%c/%u v%u", &f, &n, &v) == 3)
    for (int i = 0; i < d->njobs; i++) {
      sc_job_t *x = &d->jobs[i];
      if (!strcmp(x->state, "SENDING") && !x->result[0] && x->f == f &&
          x->n == n && x->v == v) {
        x->sent = (unsigned)json_integer_value(json_object_get(o, "sent"));
        x->total = (unsigned)json_integer_value(json_object_get(o, "total"));
        run->poll_now = 1; /* the actions see it at once */
      }
    }
  json_decref(o);
}

static void record(sc_run_t *run, const char *name, const char *data,
                   int from_device, sc_dev_t *d) {
  if (run->nev >= SC_MAX_EVENTS)
    return;
  sc_event_t *e = &run->ev[run->nev++];
  snprintf(e->name, sizeof e->name, "%s", name);
  snprintf(e->data, sizeof e->data, "%s", data ? data : "");
  e->t = sc_sim(run);
  e->from_device = from_device;
  e->dev = d ? (int)(d - run->dev) : -1;
  if (!from_device && d)
    say(run, "%s: event %s \"%.60s\"", d->name, name, data ? data : "");
  if (!from_device && d && data && !strcmp(name, "otalab/ota/progress"))
    progress_event(run, d, data);
}

static void sse_read(sc_run_t *run) {
  ssize_t n = read(run->sse_fd, run->sse_buf + run->sse_len,
                   sizeof run->sse_buf - 1 - run->sse_len);
  if (n <= 0) {
    close(run->sse_fd);
    run->sse_fd = -1;
    return;
  }
  run->sse_len += (size_t)n;
  run->sse_buf[run->sse_len] = 0;
  char *rec;
  while ((rec = strstr(run->sse_buf, "\n\n"))) {
    *rec = 0;
    char name[80] = "";
    const char *data = NULL;
    for (char *line = strtok(run->sse_buf, "\n"); line;
         line = strtok(NULL, "\n")) {
      if (!strncmp(line, "event: ", 7))
        snprintf(name, sizeof name, "%s", line + 7);
      else if (!strncmp(line, "data: ", 6))
        data = line + 6;
    }
    if (name[0] && data) {
      json_t *o = json_loads(data, 0, NULL);
      record(run, name, json_string_value(json_object_get(o, "data")), 0,
             dev_by_hex(run, json_string_value(json_object_get(o, "coreid"))));
      json_decref(o);
    }
    size_t used = (size_t)(rec + 2 - run->sse_buf);
    memmove(run->sse_buf, rec + 2, run->sse_len - used + 1);
    run->sse_len -= used;
  }
  if (run->sse_len >= sizeof run->sse_buf - 1)
    run->sse_len = 0; /* an oversized record: dropped */
}

/* New `event: published NAME "DATA"` lines of the device log. */
static void scan_log(sc_run_t *run, sc_dev_t *d) {
  char path[600], line[1024];
  snprintf(path, sizeof path, "%s/%s.log", run->dir, d->name);
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  fseek(f, d->log_off, SEEK_SET);
  while (fgets(line, sizeof line, f)) {
    size_t l = strlen(line);
    if (l && line[l - 1] != '\n')
      break; /* partial line: next time */
    d->log_off += (long)l;
    if (strstr(line, "boot: SAFE_MODE"))
      d->ever_safe = 1;
    char *p = strstr(line, "event: published ");
    const char *rej = strstr(line, "staged module invalid: ");
    if (!rej)
      rej = strstr(line, "ota: rejected ");
    if (!rej)
      rej = strstr(line, "HARD FAULT LOOP");
    if (rej) { /* the device's own words, for the report */
      line[strcspn(line, "\n")] = 0;
      record(run, "device/ota-refused", rej, 1, d);
    }
    if (!p)
      continue;
    p += 17;
    char *sp = strchr(p, ' ');
    if (!sp)
      continue;
    *sp = 0;
    char *q1 = strchr(sp + 1, '"'), *q2 = q1 ? strrchr(q1 + 1, '"') : NULL;
    if (q2)
      *q2 = 0;
    record(run, p, q1 ? q1 + 1 : "", 1, d);
  }
  fclose(f);
}

static void on_describe(sc_run_t *run, sc_dev_t *d, json_t *desc,
                        const char *sfv);

static sc_job_t *job_slot(sc_dev_t *d, int id) {
  for (int i = 0; i < d->njobs; i++)
    if (d->jobs[i].id == id)
      return &d->jobs[i];
  if (d->njobs >= SC_MAX_JOBS)
    return NULL;
  sc_job_t *x = &d->jobs[d->njobs++];
  memset(x, 0, sizeof *x);
  x->id = id;
  snprintf(x->state, sizeof x->state, "QUEUED");
  return x;
}

/* The server log's job lines (it runs with -v): every job and transition,
 * also those too quick for the GET polling to see. */
static void scan_server_log(sc_run_t *run) {
  static long off;
  char path[600], *line = NULL;
  size_t lcap = 0;
  ssize_t got;
  snprintf(path, sizeof path, "%s/server.log", run->dir);
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  fseek(f, 0, SEEK_END);
  if (ftell(f) < off) /* a restart truncates nothing, but be safe */
    off = 0;
  fseek(f, off, SEEK_SET);
  while ((got = getline(&line, &lcap, f)) > 0) {
    size_t l = (size_t)got;
    if (line[l - 1] != '\n')
      break; /* partial line: next time */
    off += (long)l;
    line[l - 1] = 0;
    char *p = strstr(line, "ota: "), hex[25], file[96], fch, st_old[16],
         st_new[16];
    unsigned id, n, v, bytes;
    char *dsc = strstr(line, "coap: ");
    if (dsc && sscanf(dsc, "coap: %24s describe (", hex) == 1 &&
        strstr(dsc, " describe (")) {
      /* the first describe, even when a quick heal replaced it before the
       * first poll (initial_release, the planner's starting point) */
      sc_dev_t *d = dev_by_hex(run, hex);
      char *js = strstr(dsc, "): ");
      json_t *desc =
          d && !d->described && js ? json_loads(js + 3, 0, NULL) : NULL;
      if (json_is_object(desc))
        on_describe(run, d, desc, NULL);
      json_decref(desc);
      continue;
    }
    if (!p || sscanf(p, "ota: %24s job %u", hex, &id) != 2)
      continue;
    sc_dev_t *d = dev_by_hex(run, hex);
    char *rest = strstr(p, " job ");
    rest = rest ? strchr(rest + 5, ' ') : NULL;
    sc_job_t *x = d && rest ? job_slot(d, (int)id) : NULL;
    if (!x)
      continue;
    rest++;
    if (!strncmp(rest, "queued", 6)) {
      char *c = strstr(rest, ": ");
      if (c && sscanf(c + 2, "%95s %c/%u v%u, %u bytes", file, &fch, &n, &v,
                      &bytes) == 5) {
        snprintf(x->file, sizeof x->file, "%s", file);
        x->f = fch;
        x->n = n;
        x->v = v;
        x->total = bytes;
      }
    } else if (!strncmp(rest, "restored from", 13)) {
      x->restored = 1; /* a restarted server took it from DATA/jobs */
      say(run, "%s: OTA job %u restored by the restarted server", d->name, id);
    } else if (!strncmp(rest, "cancelled", 9)) {
      snprintf(x->state, sizeof x->state, "CANCELLED");
    } else if (sscanf(rest, "(%c/%u v%u) %15s => %15s", &fch, &n, &v, st_old,
                      st_new) == 5) {
      x->f = fch;
      x->n = n;
      x->v = v;
      snprintf(x->state, sizeof x->state, "%s", st_new);
      char *why = strstr(rest, "=> ");
      why = why ? strchr(why, '(') : NULL;
      say(run, "%s: OTA job %u %c/%u v%u %s => %s%s%s", d->name, id, fch, n, v,
          x->file, st_new, why ? " " : "", why ? why : "");
      if (!strcmp(st_new, "DONE") || !strcmp(st_new, "FAILED")) {
        snprintf(x->result, sizeof x->result, "%s",
                 st_new[0] == 'D' ? "ok" : "failed");
        if (why) {
          snprintf(x->why, sizeof x->why, "%s", why + 1);
          size_t w = strlen(x->why);
          if (w && x->why[w - 1] == ')')
            x->why[w - 1] = 0;
        }
      }
    }
  }
  free(line);
  fclose(f);
}

static void job_from_json(sc_dev_t *d, json_t *j) {
  if (!json_is_object(j))
    return;
  int id = (int)json_integer_value(json_object_get(j, "job"));
  sc_job_t *x = NULL;
  for (int i = 0; i < d->njobs; i++)
    if (d->jobs[i].id == id)
      x = &d->jobs[i];
  if (!x) {
    if (d->njobs >= SC_MAX_JOBS)
      return;
    x = &d->jobs[d->njobs++];
    memset(x, 0, sizeof *x);
    x->id = id;
  }
  json_t *m = json_object_get(j, "module");
  const char *f = json_string_value(json_object_get(m, "f"));
  const char *n = json_string_value(json_object_get(m, "n"));
  const char *s;
  x->f = f ? f[0] : '?';
  x->n = n ? (unsigned)atoi(n) : 0;
  x->v = (unsigned)json_integer_value(json_object_get(m, "v"));
  if ((s = json_string_value(json_object_get(j, "file"))))
    snprintf(x->file, sizeof x->file, "%s", s);
  if ((s = json_string_value(json_object_get(j, "state"))))
    snprintf(x->state, sizeof x->state, "%s", s);
  if ((s = json_string_value(json_object_get(j, "result"))))
    snprintf(x->result, sizeof x->result, "%s", s);
  if ((s = json_string_value(json_object_get(j, "why"))))
    snprintf(x->why, sizeof x->why, "%s", s);
  x->total = (unsigned)json_integer_value(json_object_get(j, "total"));
  x->sent = (unsigned)json_integer_value(json_object_get(j, "sent"));
  x->total_ms = (long)json_integer_value(json_object_get(j, "total_ms"));
}

static int dev_busy(const sc_dev_t *d) {
  for (int i = 0; i < d->njobs; i++)
    if (!d->jobs[i].result[0] && strcmp(d->jobs[i].state, "CANCELLED"))
      return 1;
  return 0;
}

/* The catalogue for a describe's system_firmware_version and the estimate
 * (loaded at each first describe or describe without the server's sfv; NULL
 * with `err` set when it cannot be read). */
static ota_catalog_t *load_catalog(ota_catalog_t *cat, char *err, size_t cap) {
  ota_catalog_init(cat);
  if (!ota_catalog_load_file(cat, cli_default_catalog(), err, cap))
    return cat;
  ota_catalog_free(cat);
  return NULL;
}

static void estimate(sc_dev_t *d, const ota_describe_t *ds) {
  if (!json_object_get(d->expect, "final_release")) {
    sc_estimate(NULL, d, ds); /* the note only */
    return;
  }
  ota_catalog_t cat;
  char err[160];
  if (!load_catalog(&cat, err, sizeof err)) {
    snprintf(d->est_note, sizeof d->est_note, "catalogue: %s", err);
    return;
  }
  sc_estimate(&cat, d, ds);
  ota_catalog_free(&cat);
}

/* The system release of a describe's system modules ("" when mixed or not
 * in the catalogue): what the server shows as system_firmware_version. */
static void sys_version(json_t *desc, char *out, size_t cap) {
  ota_catalog_t cat;
  char err[160];
  ota_catalog_t *c = load_catalog(&cat, err, sizeof err);
  sc_sys_version(c, desc, out, cap);
  ota_catalog_free(&cat);
}

/* A describe of d (sfv: the server's system_firmware_version, NULL: work it
 * out): the first one fixes initial_release and the estimate. */
static void on_describe(sc_run_t *run, sc_dev_t *d, json_t *desc,
                        const char *sfv) {
  char mine[32];
  if (!sfv) {
    sys_version(desc, mine, sizeof mine);
    sfv = mine;
  }
  char *txt = json_dumps(desc, JSON_COMPACT);
  static ota_describe_t ds;
  if (txt && !ota_describe_parse(txt, strlen(txt), &ds)) {
    char msg[256];
    if (sc_describe_seen(d, desc, &ds, sfv, msg, sizeof msg))
      estimate(d, &ds);
    if (msg[0])
      say(run, "%s", msg);
  }
  free(txt);
}

/* GET /v1/devices/:id into the device's snapshot. */
static void poll_device(sc_run_t *run, sc_dev_t *d) {
  char path[64];
  int st;
  snprintf(path, sizeof path, "/v1/devices/%s", d->hex);
  double started = sc_now(run);
  json_t *o = http_json(run, "GET", path, NULL, NULL, 0, &st);
  if (!o || st != 200) {
    json_decref(o);
    return;
  }
  d->poll_t = started;
  d->hellos = (unsigned)json_integer_value(json_object_get(o, "hellos"));
  json_t *u = json_object_get(o, "data_usage");
  if (json_is_object(u)) { /* the server's own count, next to the relay's */
    d->srv_bytes = json_integer_value(json_object_get(u, "total"));
    d->srv_up = json_integer_value(json_object_get(u, "up"));
    d->srv_down = json_integer_value(json_object_get(u, "down"));
  }
  int was = d->connected;
  d->connected = json_is_true(json_object_get(o, "connected"));
  if (was != d->connected)
    say(run, "%s: %s", d->name, d->connected ? "connected" : "disconnected");
  json_t *desc = json_object_get(o, "describe");
  if (json_is_object(desc))
    on_describe(
        run, d, desc,
        json_string_value(json_object_get(o, "system_firmware_version")));
  size_t i;
  json_t *j;
  json_t *q = json_object_get(o, "ota_queue");
  /* jobs that left the queue without a result were cancelled */
  for (int k = 0; k < d->njobs; k++) {
    sc_job_t *x = &d->jobs[k];
    int seen = 0;
    json_array_foreach(q, i, j) seen |=
        json_integer_value(json_object_get(j, "job")) == x->id;
    json_t *c = json_object_get(o, "ota"), *l = json_object_get(o, "last_ota");
    seen |= json_integer_value(json_object_get(c, "job")) == x->id;
    seen |= json_integer_value(json_object_get(l, "job")) == x->id;
    if (!seen && !x->result[0])
      snprintf(x->state, sizeof x->state, "CANCELLED");
  }
  job_from_json(d, json_object_get(o, "last_ota"));
  job_from_json(d, json_object_get(o, "ota"));
  json_array_foreach(q, i, j) job_from_json(d, j);
  json_decref(o);
}

static void check_exit(sc_run_t *run, sc_dev_t *d) {
  int st;
  if (d->pid <= 0 || d->exited || waitpid(d->pid, &st, WNOHANG) != d->pid)
    return;
  d->exited = 1;
  d->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  d->pid = -1;
  char path[600], line[400];
  snprintf(path, sizeof path, "%s/%s.out", run->dir, d->name);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "hard-fault-loop: ", 17)) {
      line[strcspn(line, "\n")] = 0;
      snprintf(d->hardfault, sizeof d->hardfault, "%s", line + 17);
    }
  if (f)
    fclose(f);
  say(run, "%s: device process exited (%d)%s%s", d->name, d->exit_code,
      d->hardfault[0] ? ": HARD FAULT LOOP: " : "", d->hardfault);
}

/* ---- actions ---- */

static sc_dev_t *dev_named(sc_run_t *run, const char *name) {
  for (int i = 0; name && i < run->ndev; i++)
    if (!strcmp(run->dev[i].name, name))
      return &run->dev[i];
  return NULL;
}

/* Has the device's previous action run its course? Actions on one device
 * run strictly one after another: the snapshot must come from a poll that
 * started after that action completed (a PUT's jobs are queued before its
 * answer, so such a poll sees them), the action's jobs must have ended (a
 * result, or left the queue without one: cancelled), and when it restarted
 * the device (a job ended ok: the server confirms those with the describe
 * after the reboot; a power cycle) the server must have had a Hello since. */
static int settled(const sc_dev_t *d) {
  if (d->act_t < 0)
    return d->poll_t >= 0;
  if (d->poll_t <= d->act_t)
    return 0;
  int rebooted = d->act_reboot;
  for (int i = 0; i < d->act_njobs; i++) {
    const sc_job_t *x = NULL;
    for (int k = 0; k < d->njobs; k++)
      if (d->jobs[k].id == d->act_jobs[i])
        x = &d->jobs[k];
    if (!x)
      return 0; /* not seen yet */
    if (!x->result[0] && strcmp(x->state, "CANCELLED"))
      return 0;
    rebooted |= !strcmp(x->result, "ok");
  }
  return !rebooted || d->hellos > d->act_hellos;
}

/* The device's action is over (its HTTP answer is in): what settled() waits
 * for from now on. */
static void action_done(sc_run_t *run, sc_dev_t *d, int reboot) {
  d->act_t = sc_now(run);
  d->act_hellos = d->hellos;
  d->act_reboot = reboot;
}

/* A job of d in flight with at least pct % of it sent and (pct < 100) some
 * still to send: a transfer under way, not one waiting for UpdateDone's
 * answer (GET "sent", otalab/ota/progress events); NULL none. */
static const sc_job_t *job_at(const sc_dev_t *d, unsigned pct) {
  for (int i = 0; i < d->njobs; i++) {
    const sc_job_t *x = &d->jobs[i];
    if (!strcmp(x->state, "SENDING") && !x->result[0] && x->total &&
        (uint64_t)x->sent * 100 >= (uint64_t)pct * x->total &&
        (pct == 100 || x->sent < x->total))
      return x;
  }
  return NULL;
}

static int action_ready(sc_run_t *run, json_t *a) {
  json_t *at = json_object_get(a, "at");
  sc_dev_t *d = dev_named(run, json_string_value(json_object_get(a, "device")));
  if (!at)
    return 1;
  if (json_is_number(at))
    return sc_sim(run) >= json_number_value(at);
  const char *s = json_string_value(at);
  if (!strcmp(s, "start"))
    return 1;
  if (!d)
    return 1;
  unsigned pct;
  if (!sc_at_progress(s, &pct)) /* a job of d in flight, >= pct % sent */
    return job_at(d, pct) != NULL;
  if (!settled(d))
    return 0;
  int up = d->connected && d->described && !dev_busy(d);
  if (!strcmp(s, "connected"))
    return up;
  if (!strcmp(s, "safe_mode"))
    return up && d->safe_mode;
  return up; /* idle */
}

static void do_action(sc_run_t *run, json_t *a) {
  const char *what = json_string_value(json_object_get(a, "do"));
  sc_dev_t *d = dev_named(run, json_string_value(json_object_get(a, "device")));
  if (d)
    d->act_njobs = 0;
  if (!strcmp(what, "flash")) {
    sbuf_t b = {0};
    size_t i;
    json_t *f;
    char names[300] = "";
    json_array_foreach(json_object_get(a, "files"), i, f) {
      const char *s = json_string_value(f);
      char path[700];
      if (!s)
        continue;
      if (!strncmp(s, "app:", 4)) {
        json_t *ref = json_string(s + 4);
        if (app_file(run, ref, 0, 0, path, sizeof path))
          say(run, "flash: %s", run->fail_setup);
        json_decref(ref);
      } else if (s[0] == '/')
        snprintf(path, sizeof path, "%s", s);
      else
        snprintf(path, sizeof path, "%s/%s", run->fix, s);
      char field[16];
      snprintf(field, sizeof field, i ? "file%zu" : "file", i);
      if (mp_file(&b, field, path))
        say(run, "flash: cannot read %s", path);
      size_t l = strlen(names);
      snprintf(names + l, sizeof names - l, "%s%s", l ? " " : "", s);
    }
    mp_end(&b);
    char path[64];
    int st;
    snprintf(path, sizeof path, "/v1/devices/%s", d->hex);
    json_t *o =
        http_json(run, "PUT", path, "multipart/form-data; boundary=" BOUNDARY,
                  b.buf, b.len, &st);
    free(b.buf);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    say(run, "%s: PUT %s -> HTTP %d %.120s", d->name, names, st,
        txt ? txt : "");
    free(txt);
    size_t k;
    json_t *id;
    json_array_foreach(json_object_get(o, "jobs"), k, id) {
      if (d->act_njobs >= SC_MAX_JOBS || !json_is_integer(id))
        continue;
      d->act_jobs[d->act_njobs++] = (int)json_integer_value(id);
      job_slot(d, (int)json_integer_value(id)); /* QUEUED until seen */
    }
    json_decref(o);
    action_done(run, d, 0);
  } else if (!strcmp(what, "release")) {
    release_product(
        run, (uint32_t)json_integer_value(json_object_get(a, "product")),
        (unsigned)json_integer_value(json_object_get(a, "version")));
    if (d)
      action_done(run, d, 0);
  } else if (!strcmp(what, "kill server")) {
    /* a crash, not a shutdown: SIGKILL, nothing saved on the way out */
    for (int i = 0; i < run->ndev; i++)
      for (int k = 0; k < run->dev[i].njobs; k++) {
        sc_job_t *x = &run->dev[i].jobs[k];
        if (!strcmp(x->state, "SENDING") && !x->result[0] && x->total) {
          x->killed = 1;
          x->killed_pct = (unsigned)((uint64_t)x->sent * 100 / x->total);
          say(run, "%s: OTA job %d %s in flight: %u of %u B sent (%u %%)",
              run->dev[i].name, x->id, x->file, x->sent, x->total,
              x->killed_pct);
        }
      }
    say(run, "server: killed (exit %d)", kill_proc(run->server_pid));
    run->server_pid = -1;
    run->server_up = 0;
    if (run->sse_fd >= 0)
      close(run->sse_fd);
    run->sse_fd = -1;
  } else if (!strcmp(what, "restart server")) {
    if (run->server_pid > 0)
      stop_proc(run->server_pid);
    if (start_server(run))
      say(run, "server: restart failed: %s", run->fail_setup);
    else {
      say(run, "server: restarted");
      open_stream(run);
    }
  } else if (!strcmp(what, "kill device")) {
    say(run, "%s: killed (exit %d)", d->name, stop_proc(d->pid));
    d->pid = -1;
    d->exited = 1;
    action_done(run, d, 0);
  } else if (!strcmp(what, "start device")) {
    if (d->pid > 0)
      stop_proc(d->pid);
    start_device(run, d);
    say(run, "%s: started again", d->name);
    action_done(run, d, 1);
  }
}

/* ---- the run ---- */

static void stop_all(sc_run_t *run) {
  for (int i = 0; i < run->ndev; i++) {
    sc_dev_t *d = &run->dev[i];
    if (d->pid > 0) {
      stop_proc(d->pid);
      d->pid = -1;
    }
    if (d->dev_fd >= 0)
      close(d->dev_fd);
    if (d->srv_fd >= 0)
      close(d->srv_fd);
    d->dev_fd = d->srv_fd = -1;
  }
  if (run->sse_fd >= 0)
    close(run->sse_fd);
  run->sse_fd = -1;
  if (run->server_pid > 0)
    stop_proc(run->server_pid);
  run->server_pid = -1;
}

static int setup(sc_run_t *run) {
  ssize_t n = readlink("/proc/self/exe", run->self, sizeof run->self - 1);
  if (n <= 0)
    snprintf(run->self, sizeof run->self, "otalab");
  else
    run->self[n] = 0;
  find_bin(run, "server", "otalab-server", run->server_bin,
           sizeof run->server_bin);
  find_bin(run, "device-sim", "otalab-device", run->device_bin,
           sizeof run->device_bin);
  if (run->keep) {
    mkdir(run->keep, 0755);
    snprintf(run->dir, sizeof run->dir, "%s", run->keep);
  } else {
    snprintf(run->dir, sizeof run->dir, "/tmp/otalab-scenario.XXXXXX");
    if (!mkdtemp(run->dir))
      return sc_setup_fail(run, "mkdtemp: %s", strerror(errno));
  }
  char p[700], log[600];
  snprintf(log, sizeof log, "%s/tools.log", run->dir);
  snprintf(p, sizeof p, "%s/apps", run->dir);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/data", run->dir);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/data/devices", run->dir);
  mkdir(p, 0755);
  if (run->fixtures)
    snprintf(run->fix, sizeof run->fix, "%s", run->fixtures);
  else {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", run->self);
    char *s = strrchr(dir, '/');
    if (s)
      *s = 0;
    snprintf(run->fix, sizeof run->fix, "%s/../fixtures/bin", dir);
  }
  snprintf(p, sizeof p, "%s/manifest.json", run->fix);
  if (access(p, R_OK)) { /* no fixtures: make them */
    snprintf(run->fix, sizeof run->fix, "%s/fixtures", run->dir);
    char *argv[] = {run->self, "mkfixtures", "--out",
                    run->fix,  "--quiet",    NULL};
    if (run_tool(argv, log))
      return sc_setup_fail(run, "otalab mkfixtures failed (see %s)", log);
  }
  snprintf(p, sizeof p, "%s/keys", run->dir);
  char *kargv[] = {run->self, "keys", "server", "--out", p, NULL};
  if (run_tool(kargv, log))
    return sc_setup_fail(run, "otalab keys server failed (see %s)", log);
  /* a token for this run: not secret (loopback, throw-away data dir) */
  snprintf(run->token, sizeof run->token, "scenario%08x%08lx", run->seed,
           (unsigned long)getpid());
  if (start_server(run))
    return 1;
  say(run, "server: %s (coap %d, http %d), data in %s", run->server_bin,
      run->coap_port, run->http_port, run->dir);
  open_stream(run);
  if (setup_products(run))
    return 1;
  for (int i = 0; i < run->ndev; i++)
    if (setup_device(run, &run->dev[i]))
      return 1;
  return 0;
}

/* A sanitizer build of the server or a device reports into its log (stderr)
 * and may carry on: the first report fails the run. */
static void sanitizer_check(sc_run_t *run, const char *name) {
  static const char *const marks[] = {"ERROR: AddressSanitizer",
                                      "ERROR: LeakSanitizer", "runtime error:"};
  char path[700], line[512];
  snprintf(path, sizeof path, "%s/%s", run->dir, name);
  FILE *f = fopen(path, "r");
  while (f && !run->sanitizer[0] && fgets(line, sizeof line, f))
    for (size_t k = 0; k < sizeof marks / sizeof *marks; k++)
      if (strstr(line, marks[k])) {
        line[strcspn(line, "\n")] = 0;
        snprintf(run->sanitizer, sizeof run->sanitizer, "%s: %.200s", name,
                 line);
        break;
      }
  if (f)
    fclose(f);
}

int sc_run(sc_run_t *run) {
  run->sse_fd = -1;
  run->server_pid = -1;
  run->t_all_done = -1;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_stop};
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  if (setup(run)) {
    stop_all(run);
    return 1;
  }
  run->t0_mono = mono_s();
  for (int i = 0; i < run->ndev; i++) {
    if (start_device(run, &run->dev[i])) {
      stop_all(run);
      return 1;
    }
    say(run, "%s: %s device %s on %s%s%s started", run->dev[i].name,
        run->dev[i].product ? "product" : "developer", run->dev[i].hex,
        run->dev[i].release, run->dev[i].app[0] ? " + app " : "",
        run->dev[i].app[0] ? strrchr(run->dev[i].app, '/') + 1 : "");
  }
  json_t *acts = json_object_get(run->spec, "actions");
  size_t nact = json_array_size(acts);
  double next_poll = 0, ok_since = -1;
  for (;;) {
    struct pollfd pf[2 * SC_MAX_DEVICES + 1];
    int n = 0;
    for (int i = 0; i < run->ndev; i++) {
      pf[n++] = (struct pollfd){.fd = run->dev[i].dev_fd, .events = POLLIN};
      pf[n++] = (struct pollfd){.fd = run->dev[i].srv_fd, .events = POLLIN};
    }
    pf[n++] = (struct pollfd){.fd = run->sse_fd, .events = POLLIN};
    poll(pf, (nfds_t)n, 20);
    for (int i = 0; i < run->ndev; i++) {
      if (pf[2 * i].revents & POLLIN)
        relay(run, &run->dev[i], 1);
      if (pf[2 * i + 1].revents & POLLIN)
        relay(run, &run->dev[i], 0);
    }
    if (run->sse_fd >= 0 && (pf[n - 1].revents & (POLLIN | POLLHUP)))
      sse_read(run);
    double now = sc_now(run), sim = sc_sim(run);
    if (now < next_poll && !run->poll_now)
      continue;
    run->poll_now = 0;
    next_poll = now + POLL_MS / 1000.0;
    int all_ok = 1, busy = 0;
    scan_server_log(run);
    for (int i = 0; i < run->ndev; i++) {
      sc_dev_t *d = &run->dev[i];
      check_exit(run, d);
      scan_log(run, d);
      if (run->server_up)
        poll_device(run, d);
      busy |= dev_busy(d) && !d->exited;
      all_ok &= sc_dev_track(run, d, sim);
    }
    while (run->next_action < nact &&
           action_ready(run, json_array_get(acts, run->next_action)))
      do_action(run, json_array_get(acts, run->next_action++));
    int alive = 0;
    for (int i = 0; i < run->ndev; i++)
      alive |= !run->dev[i].exited;
    if (((all_ok && !busy) || !alive) && run->next_action == nact) {
      if (ok_since < 0)
        ok_since = now;
      if (now - ok_since >= SETTLE_S) {
        run->t_all_done = ok_since * run->time_scale;
        break;
      }
    } else
      ok_since = -1;
    sc_progress(run, sim, run->time_scale != 1);
    if (sim >= run->timeout_s) {
      say(run, "timeout after %.0f s", run->timeout_s);
      break;
    }
    if (stop_sig) {
      say(run, "stopped by signal %d", (int)stop_sig);
      snprintf(run->fail_setup, sizeof run->fail_setup,
               "stopped by signal %d before the end", (int)stop_sig);
      break;
    }
  }
  run->t_end = sc_sim(run);
  sc_progress_end(run);
  for (int i = 0; i < run->ndev; i++) {
    check_exit(run, &run->dev[i]);
    if (run->server_up) /* the server's data_usage as the relay stops */
      poll_device(run, &run->dev[i]);
  }
  stop_all(run);
  for (int i = 0; i < run->ndev; i++)
    scan_log(run, &run->dev[i]);
  scan_server_log(run);
  sanitizer_check(run, "server.log");
  for (int i = 0; i < run->ndev; i++) {
    char name[128];
    snprintf(name, sizeof name, "%s.log", run->dev[i].name);
    sanitizer_check(run, name);
  }
  return 0;
}
