/* otalab-server event bus: Particle's event streams as Server-Sent Events and
 * as WebSocket text messages (PROTOCOL.md 7, 9). Writes only in WRITEABLE. */
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "srv_api.h"

typedef struct {
  size_t len;
  unsigned char buf[]; /* LWS_PRE headroom, then len bytes */
} item_t;

struct srv_sub {
  struct lws *wsi;
  ota_evfilter_t f;
  int ws, hdr_sent, keepalive_due;
  ota_evq_t q; /* of item_t* */
  srv_sub_t *next;
};

static srv_sub_t *subs;
static size_t n_subs;
static uint64_t dropped_total;
static struct lws_context *ctx;
static lws_sorted_usec_list_t ka_sul;

static item_t *item_new(const char *s, size_t len) {
  item_t *it = malloc(sizeof *it + LWS_PRE + len);
  if (!it)
    return NULL;
  it->len = len;
  memcpy(it->buf + LWS_PRE, s, len);
  return it;
}

static void enqueue(srv_sub_t *s, item_t *it) {
  item_t *old = ota_evq_push(&s->q, it);
  if (old) {
    free(old);
    dropped_total++;
    if (s->q.dropped == 1 || s->q.dropped % 100 == 0)
      OTA_LOGW("events: slow subscriber %p: %llu records dropped (oldest "
               "first, queue %d)",
               (void *)s, (unsigned long long)s->q.dropped, SRV_EVENTS_QUEUE);
  }
  lws_callback_on_writable(s->wsi);
}

static void publish(const ota_event_t *ev) {
  char sse[8192], ws[8192];
  size_t sl = 0, wl = 0;
  int se = ota_event_sse(ev, sse, sizeof sse, &sl);
  int we = ota_event_ws(ev, ws, sizeof ws, &wl);
  if (se || we) {
    OTA_LOGW("events: %s not published: %s", ev->name ? ev->name : "(null)",
             ota_strerror(se ? se : we));
    return;
  }
  size_t n = 0;
  for (srv_sub_t *s = subs; s; s = s->next) {
    if (!ota_evfilter_match(&s->f, ev))
      continue;
    item_t *it = s->ws ? item_new(ws, wl) : item_new(sse, sl);
    if (it)
      enqueue(s, it), n++;
  }
  OTA_LOGI("events: %s [%s] %s -> %zu subscribers", ev->name,
           ev->coreid && *ev->coreid ? ev->coreid : "cloud",
           ev->data ? ev->data : "", n);
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void srv_events_publish(const char *name, const char *data,
                        const char *device_id, unsigned ttl) {
  ota_event_t ev = {.name = name,
                    .data = data,
                    .coreid = device_id ? device_id : "",
                    .ttl = ttl,
                    .published_ms = now_ms(),
                    .product = srv_products_of_device(device_id)};
  publish(&ev);
}

void srv_events_publish_product(const char *name, const char *data,
                                uint32_t product, unsigned ttl) {
  ota_event_t ev = {.name = name,
                    .data = data,
                    .coreid = "",
                    .ttl = ttl,
                    .published_ms = now_ms(),
                    .product = product};
  publish(&ev);
}

srv_sub_t *srv_events_subscribe(struct lws *wsi, const ota_evfilter_t *f,
                                int websocket) {
  srv_sub_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->wsi = wsi;
  s->f = *f;
  s->ws = websocket;
  ota_evq_init(&s->q, SRV_EVENTS_QUEUE);
  if (!websocket) {
    item_t *ok = item_new(":ok\n\n", 5);
    if (!ok) {
      free(s);
      return NULL;
    }
    ota_evq_push(&s->q, ok);
  }
  s->next = subs;
  subs = s;
  n_subs++;
  OTA_LOGI("events: subscriber %p (%s, prefix \"%s\", scope %d) added, %zu "
           "now",
           (void *)s, websocket ? "websocket" : "sse", f->prefix, f->scope,
           n_subs);
  lws_callback_on_writable(wsi);
  return s;
}

void srv_events_unsubscribe(srv_sub_t *s) {
  if (!s)
    return;
  for (srv_sub_t **p = &subs; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      n_subs--;
      break;
    }
  item_t *it;
  while ((it = ota_evq_pop(&s->q)))
    free(it);
  OTA_LOGI("events: subscriber %p removed (%llu dropped), %zu left", (void *)s,
           (unsigned long long)s->q.dropped, n_subs);
  free(s);
}

int srv_events_writeable(srv_sub_t *s) {
  struct lws *wsi = s->wsi;
  if (!s->ws && !s->hdr_sent) {
    unsigned char buf[LWS_PRE + 512], *start = buf + LWS_PRE, *p = start,
                                      *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/event-stream",
                                    LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        lws_add_http_header_by_name(
            wsi, (const unsigned char *)"cache-control:",
            (const unsigned char *)"no-cache", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
      return -1;
    s->hdr_sent = 1;
    lws_http_mark_sse(wsi); /* no idle timeout on this stream */
    lws_callback_on_writable(wsi);
    return 0;
  }
  item_t *it = ota_evq_pop(&s->q);
  if (it) {
    int r = lws_write(wsi, it->buf + LWS_PRE, it->len,
                      s->ws ? LWS_WRITE_TEXT : LWS_WRITE_HTTP);
    int short_write = r < (int)it->len;
    free(it);
    if (short_write)
      return -1;
    s->keepalive_due = 0;
  } else if (s->keepalive_due) {
    unsigned char ka[LWS_PRE + 4];
    s->keepalive_due = 0;
    if (s->ws) {
      if (lws_write(wsi, ka + LWS_PRE, 0, LWS_WRITE_PING) < 0)
        return -1;
    } else {
      memcpy(ka + LWS_PRE, ":\n", 2);
      if (lws_write(wsi, ka + LWS_PRE, 2, LWS_WRITE_HTTP) < 2)
        return -1;
    }
  }
  if (ota_evq_peek(&s->q))
    lws_callback_on_writable(wsi);
  return 0;
}

static void keepalive(lws_sorted_usec_list_t *sul) {
  for (srv_sub_t *s = subs; s; s = s->next) {
    s->keepalive_due = 1;
    lws_callback_on_writable(s->wsi);
  }
  lws_sul_schedule(ctx, 0, sul, keepalive,
                   (lws_usec_t)SRV_EVENTS_KEEPALIVE_S * LWS_US_PER_SEC);
}

void srv_events_start(struct lws_context *c) {
  ctx = c;
  lws_sul_schedule(ctx, 0, &ka_sul, keepalive,
                   (lws_usec_t)SRV_EVENTS_KEEPALIVE_S * LWS_US_PER_SEC);
}

void srv_events_stop(void) {
  while (subs)
    srv_events_unsubscribe(subs);
  ctx = NULL;
}

size_t srv_events_subscribers(void) {
  return n_subs;
}

uint64_t srv_events_dropped(void) {
  return dropped_total;
}
