/* otalab-server REST routing: Particle's token, device, product and event
 * endpoints (PROTOCOL.md 9), in front of the device/OTA handler (srv_http.c).
 * One lws protocol serves HTTP, SSE and WebSocket; writes only in WRITEABLE. */
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "otalab/chunked.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/multipart.h"
#include "srv.h"
#include "srv_api.h"

typedef enum {
  R_NONE,
  R_FORWARD, /* /v1/devices/:id, /v1/plan, /v1/releases: srv_http.c */
  R_STATIC,  /* the dashboard's files (srv_static.c via srv_http.c), no token */
  R_OAUTH,
  R_DEVICES_LIST,
  R_DEVICES_POST,
  R_PRODUCTS_LIST,
  R_PRODUCTS_POST,
  R_PRODUCT_GET,
  R_FW_POST,
  R_FW_LIST,
  R_FW_RELEASE,
  R_PRODUCT_DEVICES,
  R_STREAM
} route_t;

typedef struct {
  int mine; /* this transaction is answered here (else forwarded) */
  route_t route;
  const char *method;
  uint32_t product;
  char path[256];
  char ctype[160];
  char authz[512];
  int authed, too_big, dispatched;
  int chunked; /* Transfer-Encoding: chunked: decoded here (see srv_http.c) */
  ota_chunked_t ch;
  uint8_t *in;
  size_t in_len, in_cap;
  char *body; /* LWS_PRE headroom */
  size_t len;
  unsigned status;
  int hdr_sent;
  ota_evfilter_t filter;
  srv_sub_t *sub;
} api_pss_t;

/* The inner protocol's session data follows ours, 16-byte aligned. */
#define INNER_OFF ((sizeof(api_pss_t) + 15) & ~(size_t)15)

static const struct lws_protocols *inner_proto;

/* ---- options and setup ---- */

int srv_api_option(const char *a, const char *v) {
  int n = srv_auth_option(a, v);
  return n ? n : srv_products_option(a, v);
}

void srv_api_usage(FILE *f) {
  fprintf(f, "  --no-auth       accept REST calls without a token (or "
             "OTALAB_NO_AUTH=1)\n"
             "  --token TOKEN   add a fixed, non-expiring access token\n"
             "  --user N:P      add (or reset) user N with password P\n"
             "  --product ID:NAME  create product ID at start (if missing)\n");
}

int srv_api_setup(const char *data_dir) {
  int err = srv_store_open(data_dir);
  if (!err)
    err = srv_auth_setup();
  if (!err)
    err = srv_products_setup();
  return err;
}

void srv_api_free(void) {
  srv_events_stop();
  srv_store_free();
}

/* ---- helpers ---- */

static char *dumps(json_t *o) {
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

static char *err_json(api_pss_t *p, unsigned code, const char *err,
                      const char *desc) {
  p->status = code;
  OTA_LOGW("http: %s %s refused (%u): %s", p->method, p->path, code,
           desc ? desc : err);
  json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", err);
  if (desc)
    json_object_set_new(o, "error_description", json_string(desc));
  return dumps(o);
}

int srv_buf_reserve(uint8_t **buf, size_t *cap, size_t need, size_t first) {
  if (need <= *cap)
    return 0;
  size_t c = *cap ? *cap : first;
  while (c < need)
    c *= 2;
  uint8_t *p = realloc(*buf, c);
  if (!p)
    return OTA_ENOMEM;
  *buf = p;
  *cap = c;
  return 0;
}

int srv_parse_u32(const char *s, size_t n, uint32_t *out) {
  unsigned long long v = 0;
  if (!n || n > 10)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (!v || v > 0xFFFFFFFFull)
    return -1;
  *out = (uint32_t)v;
  return 0;
}

/* An unsigned field given as a JSON number or a decimal string; -1 when
 * absent or invalid. */
static long long get_uint(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  uint32_t u;
  if (json_is_integer(v))
    return json_integer_value(v) > 0 ? json_integer_value(v) : -1;
  const char *s = json_string_value(v);
  if (s && !srv_parse_u32(s, strlen(s), &u))
    return u;
  return -1;
}

static const char *method_of(struct lws *wsi) {
  if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
    return "GET";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
    return "POST";
  if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0)
    return "PUT";
  return "OTHER";
}

/* The route of METHOD PATH; *product set for /v1/products/:id/... */
static route_t route_of(const char *m, const char *path, uint32_t *product) {
  int get = !strcmp(m, "GET"), post = !strcmp(m, "POST"),
      put = !strcmp(m, "PUT");
  ota_evfilter_t f;
  if (!strcmp(path, "/oauth/token"))
    return post ? R_OAUTH : R_NONE;
  if (get && ota_evfilter_parse(path, &f) != OTA_ENOENT)
    return R_STREAM;
  if (!strcmp(path, "/v1/devices") || !strcmp(path, "/v1/devices/"))
    return get ? R_DEVICES_LIST : post ? R_DEVICES_POST : R_NONE;
  if (!strncmp(path, "/v1/devices/", 12) || !strcmp(path, "/v1/plan") ||
      !strcmp(path, "/v1/releases"))
    return R_FORWARD;
  if (get && strncmp(path, "/v1/", 4))
    return R_STATIC;
  if (!strcmp(path, "/v1/products") || !strcmp(path, "/v1/products/"))
    return get ? R_PRODUCTS_LIST : post ? R_PRODUCTS_POST : R_NONE;
  if (strncmp(path, "/v1/products/", 13))
    return R_NONE;
  const char *id = path + 13, *rest = strchr(id, '/');
  if (!rest)
    rest = id + strlen(id);
  if (srv_parse_u32(id, (size_t)(rest - id), product))
    return R_NONE;
  if (!*rest || !strcmp(rest, "/"))
    return get ? R_PRODUCT_GET : R_NONE;
  if (!strcmp(rest, "/firmware"))
    return get ? R_FW_LIST : post ? R_FW_POST : R_NONE;
  if (!strcmp(rest, "/firmware/release"))
    return put ? R_FW_RELEASE : R_NONE;
  if (!strcmp(rest, "/devices"))
    return get ? R_PRODUCT_DEVICES : R_NONE;
  return R_NONE;
}

/* Token from "Authorization: Bearer T" or ?access_token=T into tok. */
static void header_token(struct lws *wsi, char *tok, size_t cap) {
  char a[512];
  tok[0] = 0;
  if (lws_hdr_copy(wsi, a, sizeof a, WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
      !strncasecmp(a, "Bearer ", 7)) {
    snprintf(tok, cap, "%s", a + 7);
    return;
  }
  char q[256];
  const char *v = lws_get_urlarg_by_name(wsi, "access_token=", q, sizeof q);
  if (v)
    snprintf(tok, cap, "%s", v);
}

/* A request body as a JSON object: JSON bodies as they are, form bodies as
 * an object of strings. NULL when malformed. */
static json_t *body_object(api_pss_t *p) {
  if (!p->in_len)
    return json_object();
  if (!strncasecmp(p->ctype, "application/json", 16)) {
    json_t *o = json_loadb((const char *)p->in, p->in_len, 0, NULL);
    if (o && !json_is_object(o)) {
      json_decref(o);
      o = NULL;
    }
    return o;
  }
  const char *b = (const char *)p->in;
  if (ota_form_check(b, p->in_len))
    return NULL;
  json_t *o = json_object();
  size_t i = 0;
  while (o && i < p->in_len) {
    size_t e = i;
    while (e < p->in_len && b[e] != '&')
      e++;
    const char *eq = memchr(b + i, '=', e - i);
    char key[64], val[8192];
    size_t kl = (size_t)((eq ? eq : b + e) - (b + i));
    if (kl && kl < sizeof key) {
      memcpy(key, b + i, kl); /* keys are plain words in practice */
      key[kl] = 0;
      if (!ota_form_get(b, p->in_len, key, val, sizeof val))
        json_object_set_new(o, key, json_string(val));
    }
    i = e + 1;
  }
  return o;
}

/* ---- handlers ---- */

static json_t *device_obj(const char *id) {
  json_t *row = srv_products_device(id);
  srv_device_t *d =
      srv_http_devices ? srv_devices_find(srv_http_devices, id) : NULL;
  const char *name = json_string_value(json_object_get(row, "name"));
  json_t *o = json_pack("{s:s,s:s,s:I,s:i,s:b,s:b}", "id", id, "name",
                        name ? name : id, "product_id",
                        json_integer_value(json_object_get(row, "product_id")),
                        "platform_id", 10, "connected", d ? d->connected : 0,
                        "registered", row != NULL);
  char ts[32];
  if (d && d->last_heard &&
      !ota_event_time((int64_t)d->last_heard * 1000, ts, sizeof ts)) {
    json_object_set_new(o, "last_heard", json_string(ts));
    json_object_set_new(o, "last_ip_address", json_string(d->addr));
  } else {
    json_object_set_new(o, "last_heard", json_null());
  }
  /* what the dashboard shows per row without a GET per device */
  srv_http_device_brief(d, o);
  return o;
}

/* Registered devices plus devices seen over CoAP; product 0: all. */
static json_t *device_list(uint32_t product) {
  json_t *a = json_array();
  const char *id;
  json_t *row;
  json_object_foreach(srv_db.devices, id, row) {
    if (!product || srv_products_of_device(id) == product)
      json_array_append_new(a, device_obj(id));
  }
  for (size_t i = 0; !product && srv_http_devices && i < srv_http_devices->n;
       i++)
    if (!srv_products_device(srv_http_devices->rows[i].id))
      json_array_append_new(a, device_obj(srv_http_devices->rows[i].id));
  return a;
}

static char *h_devices_post(api_pss_t *p, json_t *b) {
  char id[25] = "", msg[256];
  const char *sid = json_string_value(json_object_get(b, "id"));
  const char *pem = json_string_value(json_object_get(b, "public_key"));
  const char *name = json_string_value(json_object_get(b, "name"));
  json_t *pj = json_object_get(b, "product_id");
  const char *ps = json_string_value(pj);
  long long prod = !pj || json_is_null(pj) ||
                           (json_is_integer(pj) && !json_integer_value(pj)) ||
                           (ps && (!*ps || !strcmp(ps, "0")))
                       ? 0
                       : get_uint(b, "product_id");
  if (!sid || strlen(sid) != 24 || !pem || prod < 0)
    return err_json(p, 400, "invalid_request",
                    "id (24 hex), public_key (PEM) and an optional "
                    "product_id are required.");
  for (int i = 0; i < 24; i++)
    id[i] =
        (char)(sid[i] >= 'A' && sid[i] <= 'F' ? sid[i] - 'A' + 'a' : sid[i]);
  int err =
      srv_products_register(id, pem, name, (uint32_t)prod, msg, sizeof msg);
  if (err)
    return err_json(p,
                    err == OTA_ENOENT ? 404
                    : err == OTA_EIO  ? 500
                                      : 400,
                    err == OTA_ENOENT ? "not_found" : "invalid_request", msg);
  srv_events_publish("otalab/device/registered", name ? name : id, id,
                     SRV_EVENTS_DEFAULT_TTL);
  p->status = 200;
  json_t *o = device_obj(id);
  json_object_set_new(o, "ok", json_true());
  return dumps(o);
}

static json_t *fw_list(json_t *prod) {
  json_t *a = json_deep_copy(json_object_get(prod, "firmware"));
  json_int_t rel = json_integer_value(json_object_get(prod, "released"));
  size_t i;
  json_t *f;
  json_array_foreach(a, i, f) {
    json_object_set_new(f, "product_id",
                        json_object_get(prod, "id")
                            ? json_deep_copy(json_object_get(prod, "id"))
                            : json_null());
    json_object_set_new(
        f, "product_default",
        json_boolean(json_integer_value(json_object_get(f, "version")) == rel));
  }
  return a;
}

static char *h_products_post(api_pss_t *p, json_t *b) {
  long long id = get_uint(b, "id");
  const char *name = json_string_value(json_object_get(b, "name"));
  if (id < 0 || !name || !*name)
    return err_json(p, 400, "invalid_request",
                    "id (a number > 0) and name are required.");
  int err = srv_products_create((uint32_t)id, name);
  if (err == OTA_EEXIST)
    return err_json(p, 409, "conflict", "Product exists.");
  if (err)
    return err_json(p, 500, "server_error", ota_strerror(err));
  p->status = 200;
  return dumps(json_pack("{s:b,s:O}", "ok", 1, "product",
                         srv_products_get((uint32_t)id)));
}

static char *h_fw_post(api_pss_t *p) {
  char boundary[128], msg[1024];
  ota_multipart_t mp;
  if (ota_multipart_boundary(p->ctype, boundary, sizeof boundary) ||
      ota_multipart_parse(p->in, p->in_len, boundary, &mp))
    return err_json(p, 400, "invalid_request",
                    "Malformed multipart/form-data body.");
  const ota_multipart_part_t *bin = ota_multipart_find(&mp, "binary");
  if (!bin)
    bin = ota_multipart_find(&mp, "file");
  const ota_multipart_part_t *ver = ota_multipart_find(&mp, "version");
  const ota_multipart_part_t *tit = ota_multipart_find(&mp, "title");
  uint32_t v = 0;
  if (!bin || !ver || srv_parse_u32((const char *)ver->data, ver->len, &v))
    return err_json(p, 400, "invalid_request",
                    "Parts binary and version (a number) are required.");
  char title[256] = "";
  if (tit)
    snprintf(title, sizeof title, "%.*s", (int)tit->len,
             (const char *)tit->data);
  int err = srv_products_upload(p->product, v, title, bin->data, bin->len, msg,
                                sizeof msg);
  if (err)
    return err_json(p,
                    err == OTA_ENOENT   ? 404
                    : err == OTA_EEXIST ? 409
                    : err == OTA_EIO    ? 500
                                        : 400,
                    err == OTA_ENOENT ? "not_found" : "invalid_request", msg);
  char data[96];
  snprintf(data, sizeof data, "{\"product_id\":%u,\"version\":%u}", p->product,
           v);
  srv_events_publish_product("otalab/product/firmware/uploaded", data,
                             p->product, SRV_EVENTS_DEFAULT_TTL);
  json_t *a = fw_list(srv_products_get(p->product));
  json_t *f = json_incref(json_array_get(a, json_array_size(a) - 1));
  json_decref(a);
  json_object_set_new(f, "ok", json_true());
  p->status = 200;
  return dumps(f);
}

static char *h_fw_release(api_pss_t *p, json_t *b) {
  long long v = get_uint(b, "version");
  if (v < 0)
    return err_json(p, 400, "invalid_request", "version is required.");
  if (srv_products_release(p->product, (unsigned)v))
    return err_json(p, 404, "not_found", "No such product firmware version.");
  char data[96];
  snprintf(data, sizeof data, "{\"product_id\":%u,\"version\":%lld}",
           p->product, v);
  srv_events_publish_product("otalab/product/firmware/released", data,
                             p->product, SRV_EVENTS_DEFAULT_TTL);
  p->status = 200;
  return dumps(json_pack("{s:b,s:I,s:I}", "ok", 1, "product_id",
                         (json_int_t)p->product, "version", (json_int_t)v));
}

/* Answer a complete request of ours: malloc'd JSON with p->status set, or
 * NULL when the request became an event stream. */
static char *dispatch(struct lws *wsi, api_pss_t *p) {
  char tok[256];
  p->dispatched = 1;
  if (p->too_big) {
    char msg[96];
    snprintf(msg, sizeof msg, "Upload larger than %zu bytes.",
             srv_http_max_upload);
    return err_json(p, 413, "payload_too_large", msg);
  }
  if (p->route == R_OAUTH)
    return srv_auth_oauth((const char *)p->in, p->in_len, p->authz, &p->status);
  if (!p->authed && p->in_len &&
      !strncasecmp(p->ctype, "application/x-www-form-urlencoded", 33) &&
      !ota_form_get((const char *)p->in, p->in_len, "access_token", tok,
                    sizeof tok) &&
      !srv_auth_check(tok))
    p->authed = 1;
  if (!p->authed)
    return err_json(p, 401, "invalid_token",
                    "The access token was not found or has expired.");
  json_t *prod = p->product ? srv_products_get(p->product) : NULL;
  if (p->route >= R_PRODUCT_GET && p->route <= R_PRODUCT_DEVICES && !prod)
    return err_json(p, 404, "not_found", "Product not found.");
  switch (p->route) {
  case R_STREAM: {
    int e = ota_evfilter_parse(p->path, &p->filter);
    if (e)
      return err_json(p, 400, "invalid_request", "Bad event stream path.");
    if (p->filter.scope == OTA_EVSCOPE_PRODUCT &&
        !srv_products_get(p->filter.product))
      return err_json(p, 404, "not_found", "Product not found.");
    p->sub = srv_events_subscribe(wsi, &p->filter, 0);
    if (!p->sub)
      return err_json(p, 500, "server_error", "Out of memory.");
    OTA_LOGI("http: GET %s: event stream", p->path);
    return NULL;
  }
  case R_DEVICES_LIST:
    p->status = 200;
    return dumps(device_list(0));
  case R_PRODUCTS_LIST: {
    json_t *a = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(srv_db.products, k, v) json_array_append(a, v);
    p->status = 200;
    return dumps(json_pack("{s:o}", "products", a));
  }
  case R_PRODUCT_GET:
    p->status = 200;
    return dumps(json_pack("{s:O}", "product", prod));
  case R_FW_LIST:
    p->status = 200;
    return dumps(fw_list(prod));
  case R_PRODUCT_DEVICES:
    p->status = 200;
    return dumps(json_pack("{s:o,s:{s:i}}", "devices", device_list(p->product),
                           "meta", "total_pages", 1));
  case R_FW_POST:
    return h_fw_post(p);
  case R_DEVICES_POST:
  case R_PRODUCTS_POST:
  case R_FW_RELEASE: {
    json_t *b = body_object(p);
    if (!b)
      return err_json(p, 400, "invalid_request",
                      "Malformed JSON or form body.");
    char *r = p->route == R_DEVICES_POST    ? h_devices_post(p, b)
              : p->route == R_PRODUCTS_POST ? h_products_post(p, b)
                                            : h_fw_release(p, b);
    json_decref(b);
    return r;
  }
  default:
    return err_json(p, 404, "not_found", "No such endpoint.");
  }
}

static int reply(struct lws *wsi, api_pss_t *p, char *json) {
  if (!json) {
    if (p->sub)
      return 0; /* a stream: srv_events writes */
    p->status = 500;
    json = strdup("{\"ok\":false,\"error\":\"server_error\"}");
    if (!json)
      return -1;
  }
  p->len = strlen(json);
  p->body = malloc(LWS_PRE + p->len);
  if (!p->body) {
    free(json);
    return -1;
  }
  memcpy(p->body + LWS_PRE, json, p->len);
  free(json);
  p->hdr_sent = 0;
  lws_callback_on_writable(wsi);
  return 0;
}

static void reset(api_pss_t *p) {
  free(p->in);
  free(p->body);
  srv_events_unsubscribe(p->sub);
  memset(p, 0, sizeof *p);
}

static int forward(struct lws *wsi, enum lws_callback_reasons reason,
                   void *user, void *in, size_t len) {
  return inner_proto->callback(wsi, reason,
                               user ? (char *)user + INNER_OFF : NULL, in, len);
}

static int write_body(struct lws *wsi, api_pss_t *p) {
  if (!p->hdr_sent) {
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *q = start,
                                      *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, p->status, "application/json", p->len,
                                    &q, end) ||
        (p->chunked && lws_add_http_header_by_name(
                           wsi, (const unsigned char *)"connection:",
                           (const unsigned char *)"close", 5, &q, end)) ||
        lws_finalize_write_http_header(wsi, start, &q, end))
      return -1;
    p->hdr_sent = 1;
    lws_callback_on_writable(wsi);
    return 0;
  }
  int r = lws_write(wsi, (unsigned char *)p->body + LWS_PRE, p->len,
                    LWS_WRITE_HTTP_FINAL);
  free(p->body);
  p->body = NULL;
  if (r < (int)p->len || p->chunked)
    return -1;
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* A piece of a chunked body of ours: decoded into p->in (NUL-terminated,
 * dropped once over --max-upload: 413); the last chunk dispatches. The
 * connection closes after the answer (as lws 4.1.6 does after such a body). */
static int body_chunked(struct lws *wsi, api_pss_t *p, const void *in,
                        size_t len) {
  uint8_t *dst = NULL;
  if (!p->too_big) {
    if (srv_buf_reserve(&p->in, &p->in_cap, p->in_len + len + 1, 16 * 1024))
      return -1; /* + 1: room for a NUL after form/JSON bodies */
    dst = p->in + p->in_len;
  }
  size_t n = 0;
  int rc = ota_chunked_feed(&p->ch, in, len, dst, &n, NULL);
  if (!p->too_big) {
    p->in_len += n;
    p->in[p->in_len] = 0;
    if (p->in_len > srv_http_max_upload) {
      p->too_big = 1;
      free(p->in);
      p->in = NULL;
      p->in_len = p->in_cap = 0;
    }
  }
  if (rc == 0)
    return 0;
  lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
  if (rc < 0) {
    p->dispatched = 1;
    OTA_LOGW("http: %s %s refused: malformed chunked body (400)", p->method,
             p->path);
    return reply(
        wsi, p,
        err_json(p, 400, "invalid_request", "Malformed chunked request body."));
  }
  return reply(wsi, p, dispatch(wsi, p));
}

/* The WebSocket path "/v1/events/ws[/prefix]" is "/v1/events[/prefix]". */
static int ws_filter(struct lws *wsi, ota_evfilter_t *f) {
  char path[256], tok[256];
  if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0)
    return -1;
  if (!strcmp(path, "/v1/events/ws") || !strncmp(path, "/v1/events/ws/", 14))
    memmove(path + 10, path + 13, strlen(path + 13) + 1);
  header_token(wsi, tok, sizeof tok);
  if (srv_auth_check(tok)) {
    OTA_LOGW("http: websocket %s refused: invalid token", path);
    return -1;
  }
  if (ota_evfilter_parse(path, f)) {
    OTA_LOGW("http: websocket %s refused: not an event stream", path);
    return -1;
  }
  return 0;
}

static int cb_api(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len) {
  api_pss_t *p = user;
  switch (reason) {
  case LWS_CALLBACK_HTTP: {
    char cl[32], tok[256];
    reset(p);
    snprintf(p->path, sizeof p->path, "%s", (const char *)in);
    p->method = method_of(wsi);
    p->route = route_of(p->method, p->path, &p->product);
    header_token(wsi, tok, sizeof tok);
    p->authed = !srv_auth_check(tok);
    if ((p->route == R_FORWARD && p->authed) || p->route == R_STATIC)
      return forward(wsi, reason, user, in, len);
    p->mine = 1;
    if (p->route == R_FORWARD) /* not authed */
      return reply(wsi, p,
                   err_json(p, 401, "invalid_token",
                            "The access token was not found or has expired."));
    if (p->route == R_NONE)
      return reply(wsi, p, err_json(p, 404, "not_found", "No such endpoint."));
    lws_hdr_copy(wsi, p->ctype, sizeof p->ctype, WSI_TOKEN_HTTP_CONTENT_TYPE);
    lws_hdr_copy(wsi, p->authz, sizeof p->authz, WSI_TOKEN_HTTP_AUTHORIZATION);
    long long n =
        lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0
            ? strtoll(cl, NULL, 10)
            : 0;
    if (n > (long long)srv_http_max_upload)
      p->too_big = 1;
    char te[64];
    if (lws_hdr_copy(wsi, te, sizeof te, WSI_TOKEN_HTTP_TRANSFER_ENCODING) >
            0 &&
        ota_chunked_header(te)) {
      p->chunked = 1;
      ota_chunked_init(&p->ch);
    }
    if (!strcmp(p->method, "GET") || (n <= 0 && !p->chunked))
      return reply(wsi, p, dispatch(wsi, p));
    return 0; /* the body follows */
  }
  case LWS_CALLBACK_HTTP_BODY:
    if (!p || !p->mine)
      return forward(wsi, reason, user, in, len);
    if (p->dispatched)
      return 0;
    if (p->chunked)
      return body_chunked(wsi, p, in, len);
    if (p->too_big)
      return 0;
    if (p->in_len + len > srv_http_max_upload) {
      p->too_big = 1;
      free(p->in);
      p->in = NULL;
      p->in_len = p->in_cap = 0;
      return 0;
    }
    if (srv_buf_reserve(&p->in, &p->in_cap, p->in_len + len + 1, 16 * 1024))
      return -1; /* + 1: room for a NUL after form/JSON bodies */
    memcpy(p->in + p->in_len, in, len);
    p->in_len += len;
    p->in[p->in_len] = 0;
    return 0;
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    if (!p || !p->mine)
      return forward(wsi, reason, user, in, len);
    if (p->dispatched)
      return 0;
    if (p->chunked) { /* lws ended the body before the last chunk */
      p->dispatched = 1;
      return reply(wsi, p,
                   err_json(p, 400, "invalid_request",
                            "Malformed chunked request body."));
    }
    return reply(wsi, p, dispatch(wsi, p));
  case LWS_CALLBACK_HTTP_WRITEABLE:
    if (!p || !p->mine)
      return forward(wsi, reason, user, in, len);
    if (p->sub)
      return srv_events_writeable(p->sub);
    if (p->body)
      return write_body(wsi, p);
    return 0;
  case LWS_CALLBACK_CLOSED_HTTP:
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    if (p)
      reset(p);
    return forward(wsi, reason, user, in, len);

  /* WebSocket event stream */
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
    ota_evfilter_t f;
    return ws_filter(wsi, &f) ? -1 : 0;
  }
  case LWS_CALLBACK_ESTABLISHED:
    if (!p || ws_filter(wsi, &p->filter))
      return -1;
    p->mine = 1;
    p->sub = srv_events_subscribe(wsi, &p->filter, 1);
    return p->sub ? 0 : -1;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return p && p->sub ? srv_events_writeable(p->sub) : 0;
  case LWS_CALLBACK_RECEIVE:
    return 0;
  case LWS_CALLBACK_CLOSED:
    if (p) {
      srv_events_unsubscribe(p->sub);
      p->sub = NULL;
    }
    return 0;
  default:
    break;
  }
  if (p && p->mine)
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  return forward(wsi, reason, user, in, len);
}

static int cb_events_ws(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len) {
  switch (reason) {
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
  case LWS_CALLBACK_ESTABLISHED:
  case LWS_CALLBACK_SERVER_WRITEABLE:
  case LWS_CALLBACK_RECEIVE:
  case LWS_CALLBACK_CLOSED:
    return cb_api(wsi, reason, user, in, len);
  default:
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  }
}

#define MAX_PROTOCOLS 8

const struct lws_protocols *
srv_api_protocols(const struct lws_protocols *inner) {
  static struct lws_protocols list[MAX_PROTOCOLS];
  size_t n = 0;
  inner_proto = &inner[0];
  list[n++] = (struct lws_protocols){inner[0].name,
                                     cb_api,
                                     INNER_OFF + inner[0].per_session_data_size,
                                     inner[0].rx_buffer_size,
                                     0,
                                     NULL,
                                     0};
  list[n++] = (struct lws_protocols){"events",
                                     cb_events_ws,
                                     INNER_OFF + inner[0].per_session_data_size,
                                     0,
                                     0,
                                     NULL,
                                     0};
  for (size_t i = 1; inner[i].name && n < MAX_PROTOCOLS - 1; i++)
    list[n++] = inner[i];
  list[n] = (struct lws_protocols){NULL, NULL, 0, 0, 0, NULL, 0};
  return list;
}
