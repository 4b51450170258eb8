/* otalab-server REST adapter (libwebsockets 4.1.6): GET /v1/devices/:id, a
 * subset of Particle's device API (PROTOCOL.md 9). Writes only in WRITEABLE. */
#include <jansson.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

srv_devices_t *srv_http_devices;

typedef struct {
  char *body; /* malloc'd, LWS_PRE headroom before body + LWS_PRE */
  size_t len;
  unsigned status;
  int hdr_sent;
} pss_t;

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
    json_object_set_new(o, "describe", desc ? desc : json_null());
    json_object_set_new(o, "hellos", json_integer(d ? d->hellos : 0));
  }
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return s;
}

static int cb_http(struct lws *wsi, enum lws_callback_reasons reason,
                   void *user, void *in, size_t len) {
  pss_t *pss = user;
  switch (reason) {
  case LWS_CALLBACK_HTTP: {
    const char *uri = in;
    char *json = NULL;
    (void)len;
    if (!strncmp(uri, "/v1/devices/", 12) && uri[12] &&
        !strchr(uri + 12, '/')) {
      char id[SRV_ID_HEX + 1];
      size_t n = strlen(uri + 12);
      if (n == SRV_ID_HEX) {
        for (size_t i = 0; i < n; i++)
          id[i] = (char)((uri[12 + i] >= 'A' && uri[12 + i] <= 'F')
                             ? uri[12 + i] - 'A' + 'a'
                             : uri[12 + i]);
        id[n] = 0;
        json = device_json(id, &pss->status);
      }
    }
    if (!json) {
      pss->status = 404;
      json = strdup("{\"error\":\"Not found.\",\"ok\":false}");
    }
    if (!json)
      return -1;
    pss->len = strlen(json);
    pss->body = malloc(LWS_PRE + pss->len);
    if (!pss->body) {
      free(json);
      return -1;
    }
    memcpy(pss->body + LWS_PRE, json, pss->len);
    free(json);
    pss->hdr_sent = 0;
    lws_callback_on_writable(wsi);
    return 0;
  }
  case LWS_CALLBACK_HTTP_WRITEABLE: {
    if (!pss->body)
      break;
    if (!pss->hdr_sent) {
      unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                        *end = buf + sizeof buf - 1;
      if (lws_add_http_common_headers(wsi, pss->status, "application/json",
                                      pss->len, &p, end) ||
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
    if (r < (int)pss->len)
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
