/* otalab-server REST adapter (libwebsockets 4.1.6): GET and PUT (flash)
 * /v1/devices/:id, a subset of Particle's device API (PROTOCOL.md 9). Writes
 * only in WRITEABLE. */
#include <jansson.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/chunked.h"
#include "otalab/electron.h"
#include "otalab/err.h"
#include "otalab/log.h"
#include "otalab/module.h"
#include "otalab/multipart.h"
#include "srv.h"
#include "srv_api.h"
#include "srv_static.h"

srv_devices_t *srv_http_devices;
size_t srv_http_max_upload = 1024 * 1024;
const ota_catalog_t *srv_catalog;

typedef struct {
  char *body; /* malloc'd, LWS_PRE headroom before body + LWS_PRE */
  size_t len;
  unsigned status;
  int hdr_sent;
  const char *rtype, *cache; /* NULL: application/json, no Cache-Control */
  char etag[32];
  /* PUT: the request body being received */
  int is_put, too_big;
  char id[SRV_ID_HEX + 1];
  char ctype[256];
  uint8_t *in;
  size_t in_len, in_cap;
  /* Transfer-Encoding: chunked (no Content-Length; lws hands us the framing
   * and never ends the body): decoded here, the last chunk ends it */
  int chunked, body_done, close_after;
  ota_chunked_t ch;
} pss_t;

/* The release whose system module version every system part carries, from
 * the describe's "m" list; NULL when parts disagree or none is listed. */
static const char *system_version(json_t *desc, json_t *mods_out) {
  json_t *mods = json_object_get(desc, "m");
  size_t i;
  json_t *e;
  int sys = -1, mixed = 0;
  json_array_foreach(mods, i, e) {
    const char *f = json_string_value(json_object_get(e, "f"));
    json_t *n = json_object_get(e, "n");
    json_int_t v = json_integer_value(json_object_get(e, "v"));
    if (!f)
      continue;
    json_array_append_new(mods_out, json_pack("{s:s,s:O,s:I}", "f", f, "n",
                                              n ? n : json_null(), "v", v));
    if (f[0] == 's') {
      if (sys >= 0 && sys != v)
        mixed = 1;
      sys = (int)v;
    }
  }
  if (sys < 0 || mixed || !srv_catalog)
    return NULL;
  const ota_cat_release_t *r =
      ota_catalog_find_sysver(srv_catalog, (uint16_t)sys);
  return r ? r->name : NULL;
}

/* product_id as the Particle API reports it: a developer device's is its
 * platform id (10), so particle-cli lists it as an Electron, not a Core;
 * "product" (boolean, ours) tells product devices apart. The product comes
 * from the device's session (set beforehand) or else the registry. */
static void particle_product(json_t *o) {
  json_t *p = json_object_get(o, "product_id");
  const char *id = json_string_value(json_object_get(o, "id"));
  json_int_t v = p    ? json_integer_value(p)
                 : id ? srv_products_of_device(id)
                      : 0;
  json_object_set_new(o, "product", json_boolean(v != 0));
  json_object_set_new(o, "product_id",
                      json_integer(v ? v : OTA_PLATFORM_ELECTRON));
}

void srv_http_device_brief(const srv_device_t *d, void *obj) {
  json_t *o = obj,
         *desc = d && d->describe ? json_loads(d->describe, 0, NULL) : NULL;
  json_t *mods = json_array();
  const char *sv = desc ? system_version(desc, mods) : NULL;
  json_object_set_new(o, "system_firmware_version",
                      sv ? json_string(sv) : json_null());
  json_decref(mods);
  json_decref(desc);
  json_object_set_new(o, "connected", json_boolean(d && d->connected));
  if (d) {
    /* product_id, development, safe_mode (null before a describe) */
    json_t *c = json_object();
    srv_cloud_json(d, c);
    json_object_set(o, "product_id", json_object_get(c, "product_id"));
    json_object_set(o, "development", json_object_get(c, "development"));
    json_object_set(o, "safe_mode", json_object_get(c, "safe_mode"));
    json_decref(c);
  } else {
    json_object_set_new(o, "development", json_false());
    json_object_set_new(o, "safe_mode", json_null());
  }
  particle_product(o);
  json_object_set_new(o, "ota", srv_ota_brief_json(d));
}

static char *device_json(const char *id, unsigned *status) {
  srv_device_t *d = srv_devices_find(srv_http_devices, id);
  uint8_t der[160];
  size_t dl;
  json_t *o;
  if (!d && srv_devices_key(srv_http_devices, id, der, sizeof der, &dl) != 0) {
    *status = 404;
    o = json_pack("{s:s,s:b}", "error", "Device not found.", "ok", 0);
  } else {
    *status = 200;
    o = json_pack("{s:s,s:b,s:i}", "id", id, "connected", d ? d->connected : 0,
                  "platform_id", 10);
    if (d && d->last_heard) {
      char ts[32];
      struct tm tm;
      gmtime_r(&d->last_heard, &tm);
      strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
      json_object_set_new(o, "last_heard", json_string(ts));
      json_object_set_new(o, "last_ip_address", json_string(d->addr));
    } else {
      json_object_set_new(o, "last_heard", json_null());
    }
    json_t *desc = NULL;
    if (d && d->describe) {
      desc = json_loads(d->describe, 0, NULL);
      if (!desc)
        desc = json_string(d->describe);
    }
    json_t *mods = json_array();
    const char *sv = desc ? system_version(desc, mods) : NULL;
    json_object_set_new(o, "system_firmware_version",
                        sv ? json_string(sv) : json_null());
    json_object_set_new(o, "modules", mods);
    json_object_set_new(o, "describe", desc ? desc : json_null());
    json_object_set_new(o, "hellos", json_integer(d ? d->hellos : 0));
    if (d) {
      srv_ota_json(d, o);
      srv_cloud_json(d, o);
      json_object_set_new(o, "data_usage", srv_usage_json(&d->usage));
    }
    particle_product(o);
  }
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

static char *err_json(unsigned *status, unsigned code, const char *msg) {
  *status = code;
  json_t *o = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

/* A part holding a module: field "file", "file1", "file2", ... (particle-cli
 * and particle-api-js names) or any part with a filename. */
static int is_file_part(const ota_multipart_part_t *p) {
  if (p->filename)
    return 1;
  if (p->name_len < 4 || memcmp(p->name, "file", 4))
    return 0;
  for (size_t i = 4; i < p->name_len; i++)
    if (p->name[i] < '0' || p->name[i] > '9')
      return 0;
  return 1;
}

/* PUT /v1/devices/:id with a multipart body: validate every file part, then
 * queue them in order (all or none). */
static char *flash(pss_t *pss) {
  const char *id = pss->id;
  srv_device_t *d = srv_devices_find(srv_http_devices, id);
  uint8_t der[160];
  size_t dl;
  char boundary[128], msg[1024];
  if (pss->too_big) {
    OTA_LOGW("http: PUT %s refused: upload larger than %zu bytes (413)", id,
             srv_http_max_upload);
    snprintf(msg, sizeof msg, "Upload larger than %zu bytes.",
             srv_http_max_upload);
    return err_json(&pss->status, 413, msg);
  }
  if (!d && srv_devices_key(srv_http_devices, id, der, sizeof der, &dl)) {
    OTA_LOGW("http: PUT %s refused: unknown device (404)", id);
    return err_json(&pss->status, 404, "Device not found.");
  }
  ota_multipart_t mp;
  if (ota_multipart_boundary(pss->ctype, boundary, sizeof boundary) ||
      ota_multipart_parse(pss->in, pss->in_len, boundary, &mp)) {
    OTA_LOGW("http: PUT %s refused: malformed multipart body (400)", id);
    return err_json(&pss->status, 400, "Malformed multipart/form-data body.");
  }
  const ota_multipart_part_t *files[OTA_MULTIPART_MAX_PARTS];
  size_t nf = 0;
  for (size_t i = 0; i < mp.nparts; i++)
    if (is_file_part(&mp.parts[i]))
      files[nf++] = &mp.parts[i];
  const ota_multipart_part_t *ft = ota_multipart_find(&mp, "file_type");
  if (ft && !(ft->len == 6 && !memcmp(ft->data, "binary", 6))) {
    OTA_LOGW("http: PUT %s refused: file_type %.*s (400)", id, (int)ft->len,
             (const char *)ft->data);
    return err_json(&pss->status, 400,
                    "Only file_type=binary is supported (no compiler).");
  }
  if (!nf) {
    OTA_LOGW("http: PUT %s refused: no file part (400)", id);
    return err_json(&pss->status, 400, "Nothing to do: no file part.");
  }
  for (size_t i = 0; i < nf; i++) {
    ota_module_t m;
    ota_module_report_t rep;
    int err = ota_module_parse(files[i]->data, files[i]->len, &m);
    if (!err && ota_module_validate(&m, files[i]->len, &rep)) {
      size_t n = (size_t)snprintf(msg, sizeof msg, "%.*s: invalid module: ",
                                  (int)files[i]->filename_len,
                                  files[i]->filename ? files[i]->filename : "");
      for (int k = 0; k < rep.n && n < sizeof msg; k++)
        n += (size_t)snprintf(msg + n, sizeof msg - n, "%s%s", k ? "; " : "",
                              rep.items[k].msg);
      err = OTA_EPARSE;
    } else if (err) {
      snprintf(msg, sizeof msg, "%.*s: not a module: %s",
               (int)files[i]->filename_len,
               files[i]->filename ? files[i]->filename : "", ota_strerror(err));
    }
    if (err) {
      OTA_LOGW("http: PUT %s refused (400): %s", id, msg);
      return err_json(&pss->status, 400, msg);
    }
  }
  if (!d || !d->connected) {
    OTA_LOGW("http: PUT %s refused: device not connected (400)", id);
    pss->status = 400;
    return strdup("{\"ok\":false,\"errors\":[\"Device is not connected.\"]}");
  }
  json_t *jobs = json_array();
  unsigned job = 0, batch = srv_ota_new_batch();
  for (size_t i = 0; i < nf; i++) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)files[i]->filename_len,
             files[i]->filename ? files[i]->filename : "");
    int err = srv_ota_enqueue(d, files[i]->data, files[i]->len, name,
                              SRV_ORIGIN_USER, batch, &job);
    if (err) {
      OTA_LOGW("http: PUT %s refused: cannot queue %s: %s (503)", id, name,
               ota_strerror(err));
      json_decref(jobs);
      snprintf(msg, sizeof msg, "Cannot queue %s: %s.", name,
               ota_strerror(err));
      return err_json(&pss->status, err == OTA_EFULL ? 429 : 500, msg);
    }
    json_array_append_new(jobs, json_integer(job));
  }
  srv_cloud_mark_development(d);
  pss->status = 200;
  json_t *o = json_pack("{s:b,s:s,s:s,s:i,s:o}", "ok", 1, "id", id, "status",
                        "Update started", "job", (json_int_t)job, "jobs", jobs);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

static int reply_buf(struct lws *wsi, pss_t *pss, const void *buf, size_t len) {
  pss->len = len;
  pss->body = malloc(LWS_PRE + len + 1);
  if (!pss->body)
    return -1;
  if (len)
    memcpy(pss->body + LWS_PRE, buf, len);
  pss->hdr_sent = 0;
  lws_callback_on_writable(wsi);
  return 0;
}

static int reply(struct lws *wsi, pss_t *pss, char *json) {
  pss->rtype = pss->cache = NULL;
  pss->etag[0] = 0;
  if (!json) {
    pss->status = 404;
    json = strdup("{\"error\":\"Not found.\",\"ok\":false}");
  }
  if (!json)
    return -1;
  int rc = reply_buf(wsi, pss, json, strlen(json));
  free(json);
  return rc;
}

static int device_path(const char *uri, char id[SRV_ID_HEX + 1]);

/* GET of a dashboard file, the planner or the catalogue (srv_static.h); 0 when
 * uri is none of them. */
static int reply_dashboard(struct lws *wsi, pss_t *pss, const char *uri,
                           int *rc) {
  char inm[128] = "", q[32] = "", prod[8] = "";
  srv_static_resp_t sr;
  if (lws_hdr_copy(wsi, inm, sizeof inm, WSI_TOKEN_HTTP_IF_NONE_MATCH) < 0)
    inm[0] = 0;
  if (srv_static_lookup(uri, inm, &sr)) {
    pss->status = sr.status;
    *rc = reply_buf(wsi, pss, sr.body, sr.len);
    pss->rtype = sr.ctype;
    pss->cache = sr.cache;
    memcpy(pss->etag, sr.etag, sizeof pss->etag);
    return 1;
  }
  const char *p = lws_get_urlarg_by_name(wsi, "product=", prod, sizeof prod);
  int product = !(p && p[0] == '0');
  size_t ul = strlen(uri);
  if (!strcmp(uri, "/v1/releases")) {
    *rc = reply(wsi, pss, srv_releases_json(&pss->status));
  } else if (!strcmp(uri, "/v1/plan")) {
    char from[32] = "";
    const char *f = lws_get_urlarg_by_name(wsi, "from=", from, sizeof from);
    const char *t = lws_get_urlarg_by_name(wsi, "to=", q, sizeof q);
    *rc = reply(wsi, pss, srv_plan_release(f, t, product, &pss->status));
  } else if (ul == 12 + SRV_ID_HEX + 5 && !strcmp(uri + ul - 5, "/plan")) {
    char path[12 + SRV_ID_HEX + 1], id[SRV_ID_HEX + 1];
    memcpy(path, uri, sizeof path - 1);
    path[sizeof path - 1] = 0;
    if (device_path(path, id))
      return 0;
    const char *t = lws_get_urlarg_by_name(wsi, "to=", q, sizeof q);
    *rc = reply(wsi, pss, srv_plan_device(id, t, product, &pss->status));
  } else {
    return 0;
  }
  return 1;
}

/* "/v1/devices/<24 hex>" -> lower-case id; 0 or -1. */
static int device_path(const char *uri, char id[SRV_ID_HEX + 1]) {
  if (strncmp(uri, "/v1/devices/", 12) || strlen(uri + 12) != SRV_ID_HEX)
    return -1;
  for (size_t i = 0; i < SRV_ID_HEX; i++) {
    char c = uri[12 + i];
    if (c >= 'A' && c <= 'F')
      c = (char)(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return -1;
    id[i] = c;
  }
  id[SRV_ID_HEX] = 0;
  return 0;
}

/* The whole PUT body is in: flash, answer. */
static int body_complete(struct lws *wsi, pss_t *pss) {
  pss->body_done = 1;
  char *json = flash(pss);
  free(pss->in);
  pss->in = NULL;
  pss->in_len = pss->in_cap = 0;
  return reply(wsi, pss, json ? json : strdup("{\"ok\":false}"));
}

/* Broken chunked framing: 400, and the connection closes after the answer
 * (where the next request would start is unknown). */
static int body_malformed(struct lws *wsi, pss_t *pss) {
  OTA_LOGW("http: PUT %s refused: malformed chunked body (400)", pss->id);
  pss->body_done = pss->close_after = 1;
  free(pss->in);
  pss->in = NULL;
  pss->in_len = pss->in_cap = 0;
  return reply(wsi, pss,
               err_json(&pss->status, 400, "Malformed chunked request body."));
}

/* A piece of a chunked PUT body: decoded into pss->in (dropped once over
 * --max-upload: the answer is then 413); the last chunk completes it, as
 * LWS_CALLBACK_HTTP_BODY_COMPLETION does for a Content-Length body. */
static int body_chunked(struct lws *wsi, pss_t *pss, const void *in,
                        size_t len) {
  if (pss->body_done)
    return 0;
  uint8_t *dst = NULL;
  if (!pss->too_big) {
    if (srv_buf_reserve(&pss->in, &pss->in_cap, pss->in_len + len, 64 * 1024))
      return -1;
    dst = pss->in + pss->in_len;
  }
  size_t n = 0;
  int rc = ota_chunked_feed(&pss->ch, in, len, dst, &n, NULL);
  if (!pss->too_big) {
    pss->in_len += n;
    if (pss->in_len > srv_http_max_upload) {
      pss->too_big = 1;
      free(pss->in);
      pss->in = NULL;
      pss->in_len = pss->in_cap = 0;
    }
  }
  if (rc == 0)
    return 0;
  lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
  return rc < 0 ? body_malformed(wsi, pss) : body_complete(wsi, pss);
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason,
                   void *user, void *in, size_t len) {
  pss_t *pss = user;
  switch (reason) {
  case LWS_CALLBACK_HTTP: {
    const char *uri = in;
    char id[SRV_ID_HEX + 1];
    (void)len;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) > 0) {
      if (device_path(uri, id))
        return reply(wsi, pss, NULL);
      memset(pss, 0, sizeof *pss);
      pss->is_put = 1;
      snprintf(pss->id, sizeof pss->id, "%s", id);
      lws_hdr_copy(wsi, pss->ctype, sizeof pss->ctype,
                   WSI_TOKEN_HTTP_CONTENT_TYPE);
      char cl[32], te[64];
      if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
          strtoull(cl, NULL, 10) > srv_http_max_upload)
        pss->too_big = 1;
      if (lws_hdr_copy(wsi, te, sizeof te, WSI_TOKEN_HTTP_TRANSFER_ENCODING) >
              0 &&
          ota_chunked_header(te)) {
        /* lws 4.1.6 drops the connection after such a body anyway: say so */
        pss->chunked = pss->close_after = 1;
        ota_chunked_init(&pss->ch);
      }
      return 0; /* the body follows: LWS_CALLBACK_HTTP_BODY */
    }
    pss->is_put = 0;
    int rc;
    if (reply_dashboard(wsi, pss, uri, &rc))
      return rc;
    return reply(wsi, pss,
                 device_path(uri, id) ? NULL : device_json(id, &pss->status));
  }
  case LWS_CALLBACK_HTTP_BODY:
    if (pss->is_put && pss->chunked)
      return body_chunked(wsi, pss, in, len);
    if (!pss->is_put || pss->too_big)
      return 0;
    if (pss->in_len + len > srv_http_max_upload) {
      pss->too_big = 1;
      free(pss->in);
      pss->in = NULL;
      pss->in_len = pss->in_cap = 0;
      return 0;
    }
    if (srv_buf_reserve(&pss->in, &pss->in_cap, pss->in_len + len, 64 * 1024))
      return -1;
    memcpy(pss->in + pss->in_len, in, len);
    pss->in_len += len;
    return 0;
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    if (!pss->is_put || pss->body_done)
      return 0;
    if (pss->chunked) /* lws ended the body before the last chunk */
      return body_malformed(wsi, pss);
    return body_complete(wsi, pss);
  case LWS_CALLBACK_HTTP_WRITEABLE: {
    if (!pss->body)
      break;
    if (!pss->hdr_sent) {
      unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                                         *end = buf + sizeof buf - 1;
      if (lws_add_http_common_headers(
              wsi, pss->status, pss->rtype ? pss->rtype : "application/json",
              pss->len, &p, end) ||
          (pss->cache && lws_add_http_header_by_name(
                             wsi, (const unsigned char *)"cache-control:",
                             (const unsigned char *)pss->cache,
                             (int)strlen(pss->cache), &p, end)) ||
          (pss->etag[0] &&
           lws_add_http_header_by_name(wsi, (const unsigned char *)"etag:",
                                       (const unsigned char *)pss->etag,
                                       (int)strlen(pss->etag), &p, end)) ||
          (pss->close_after &&
           lws_add_http_header_by_name(
               wsi, (const unsigned char *)"connection:",
               (const unsigned char *)"close", 5, &p, end)) ||
          (pss->rtype &&
           lws_add_http_header_by_name(
               wsi, (const unsigned char *)"x-content-type-options:",
               (const unsigned char *)"nosniff", 7, &p, end)) ||
          lws_finalize_write_http_header(wsi, start, &p, end))
        return 1;
      pss->hdr_sent = 1;
      lws_callback_on_writable(wsi);
      return 0;
    }
    int r = lws_write(wsi, (unsigned char *)pss->body + LWS_PRE, pss->len,
                      LWS_WRITE_HTTP_FINAL);
    free(pss->body);
    pss->body = NULL;
    if (r < (int)pss->len || pss->close_after)
      return -1;
    if (lws_http_transaction_completed(wsi))
      return -1;
    return 0;
  }
  case LWS_CALLBACK_CLOSED_HTTP:
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    if (pss) {
      free(pss->body);
      pss->body = NULL;
      free(pss->in);
      pss->in = NULL;
    }
    break;
  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static int cb_coap(struct lws *wsi, enum lws_callback_reasons reason,
                   void *user, void *in, size_t len) {
  switch (reason) {
  case LWS_CALLBACK_RAW_RX_FILE:
    srv_coap_io();
    srv_loop_kick();
    return 0;
  case LWS_CALLBACK_RAW_CLOSE_FILE:
    lwsl_err("coap fd closed\n");
    return 0;
  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

const struct lws_protocols srv_protocols[] = {
    {"http", cb_http, sizeof(pss_t), 0, 0, NULL, 0},
    {"otalab-coap", cb_coap, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};
