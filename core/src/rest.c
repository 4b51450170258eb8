/* Pure REST helpers: form decoding, Particle's event stream records (SSE and
 * WebSocket JSON), stream filters, a drop-oldest queue (PROTOCOL.md 9). */
#include "otalab/rest.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "otalab/err.h"

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int ota_form_check(const char *body, size_t len) {
  if (!body && len)
    return OTA_EINVAL;
  for (size_t i = 0; i < len; i++) {
    if (body[i] == '%') {
      if (i + 2 >= len || hexval(body[i + 1]) < 0 || hexval(body[i + 2]) < 0)
        return OTA_EPARSE;
      i += 2;
    } else if ((unsigned char)body[i] < 0x20 && body[i] != '\t') {
      if ((body[i] == '\r' || body[i] == '\n') && i + 2 >= len)
        continue; /* a trailing line break some clients add */
      return OTA_EPARSE;
    }
  }
  return 0;
}

/* Decode body[0..n) into out[cap]; 0, OTA_ENOBUFS or OTA_EPARSE. */
static int decode(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= n)
        return OTA_EPARSE;
      int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
      if (h < 0 || l < 0)
        return OTA_EPARSE;
      c = h * 16 + l;
      i += 2;
    }
    if (c == 0)
      return OTA_EPARSE;
    if (o + 1 >= cap)
      return OTA_ENOBUFS;
    out[o++] = (char)c;
  }
  if (!cap)
    return OTA_ENOBUFS;
  out[o] = 0;
  return 0;
}

int ota_form_get(const char *body, size_t len, const char *name, char *out,
                 size_t cap) {
  char key[128];
  if (!name || !out || (!body && len))
    return OTA_EINVAL;
  size_t i = 0;
  while (i < len) {
    size_t e = i;
    while (e < len && body[e] != '&')
      e++;
    const char *eq = memchr(body + i, '=', e - i);
    size_t kl = (size_t)((eq ? eq : body + e) - (body + i));
    /* trailing line break after the last value (some clients) */
    size_t ve = e;
    while (ve > i && e == len && (body[ve - 1] == '\n' || body[ve - 1] == '\r'))
      ve--;
    if (kl && decode(body + i, kl, key, sizeof key) == 0 &&
        !strcmp(key, name)) {
      if (!eq) {
        if (!cap)
          return OTA_ENOBUFS;
        out[0] = 0;
        return 0;
      }
      size_t vs = (size_t)(eq + 1 - body);
      return decode(body + vs, ve > vs ? ve - vs : 0, out, cap);
    }
    i = e + 1;
  }
  return OTA_ENOENT;
}

int ota_event_time(int64_t ms, char *out, size_t cap) {
  time_t t = (time_t)(ms / 1000);
  int frac = (int)(ms % 1000);
  struct tm tm;
  if (ms < 0)
    t = 0, frac = 0;
  if (!gmtime_r(&t, &tm))
    return OTA_EINVAL;
  int n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, frac);
  return n < 0 || (size_t)n >= cap ? OTA_ENOBUFS : 0;
}

typedef struct {
  char *p;
  size_t n, cap;
  int err;
} sbuf_t;

static void put(sbuf_t *b, const char *s, size_t n) {
  if (b->err)
    return;
  if (b->n + n + 1 > b->cap) {
    b->err = OTA_ENOBUFS;
    return;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void puts_(sbuf_t *b, const char *s) {
  put(b, s, strlen(s));
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8) copied. */
static void put_json_str(sbuf_t *b, const char *s) {
  put(b, "\"", 1);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      put(b, esc, 2);
    } else if (c == '\n') {
      put(b, "\\n", 2);
    } else if (c == '\r') {
      put(b, "\\r", 2);
    } else if (c == '\t') {
      put(b, "\\t", 2);
    } else if (c < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put(b, esc, 6);
    } else {
      put(b, (const char *)&c, 1);
    }
  }
  put(b, "\"", 1);
}

static int valid_name(const char *name) {
  return name && *name && !strpbrk(name, "\r\n");
}

/* The common fields: "data":..,"ttl":..,"published_at":..,"coreid":.. */
static void put_fields(sbuf_t *b, const ota_event_t *ev) {
  char ts[32], ttl[16];
  if (ota_event_time(ev->published_ms, ts, sizeof ts))
    b->err = OTA_EINVAL;
  snprintf(ttl, sizeof ttl, "%u", ev->ttl);
  puts_(b, "\"data\":");
  put_json_str(b, ev->data ? ev->data : "");
  puts_(b, ",\"ttl\":");
  puts_(b, ttl);
  puts_(b, ",\"published_at\":");
  put_json_str(b, ts);
  puts_(b, ",\"coreid\":");
  put_json_str(b, ev->coreid && *ev->coreid ? ev->coreid : "particle-internal");
}

int ota_event_sse(const ota_event_t *ev, char *out, size_t cap, size_t *len) {
  if (!ev || !out || !valid_name(ev->name))
    return OTA_EINVAL;
  sbuf_t b = {out, 0, cap, 0};
  puts_(&b, "event: ");
  puts_(&b, ev->name);
  puts_(&b, "\ndata: {");
  put_fields(&b, ev);
  puts_(&b, "}\n\n");
  if (len && !b.err)
    *len = b.n;
  return b.err;
}

int ota_event_ws(const ota_event_t *ev, char *out, size_t cap, size_t *len) {
  if (!ev || !out || !valid_name(ev->name))
    return OTA_EINVAL;
  sbuf_t b = {out, 0, cap, 0};
  puts_(&b, "{\"name\":");
  put_json_str(&b, ev->name);
  puts_(&b, ",");
  put_fields(&b, ev);
  puts_(&b, "}");
  if (len && !b.err)
    *len = b.n;
  return b.err;
}

/* Copy a 24-hex id lower-cased; the segment is s[0..n). */
static int parse_id(const char *s, size_t n, char out[25]) {
  if (n != 24)
    return OTA_EINVAL;
  for (size_t i = 0; i < 24; i++) {
    int v = hexval(s[i]);
    if (v < 0)
      return OTA_EINVAL;
    out[i] = "0123456789abcdef"[v];
  }
  out[24] = 0;
  return 0;
}

/* The rest after "events": "" or "/" or "/prefix[/]". */
static int parse_prefix(const char *s, ota_evfilter_t *f) {
  if (!*s)
    return 0;
  if (*s != '/')
    return OTA_ENOENT;
  s++;
  size_t n = strlen(s);
  if (n && s[n - 1] == '/')
    n--;
  if (n > OTA_EVENT_NAME_MAX)
    return OTA_EINVAL;
  memcpy(f->prefix, s, n);
  f->prefix[n] = 0;
  return 0;
}

int ota_evfilter_parse(const char *path, ota_evfilter_t *f) {
  if (!path || !f)
    return OTA_EINVAL;
  memset(f, 0, sizeof *f);
  if (!strncmp(path, "/v1/events", 10)) {
    f->scope = OTA_EVSCOPE_ALL;
    return parse_prefix(path + 10, f);
  }
  if (!strncmp(path, "/v1/devices/events", 18)) {
    f->scope = OTA_EVSCOPE_DEVICES;
    return parse_prefix(path + 18, f);
  }
  if (!strncmp(path, "/v1/devices/", 12)) {
    const char *id = path + 12, *sl = strchr(id, '/');
    if (!sl || strncmp(sl, "/events", 7))
      return OTA_ENOENT;
    f->scope = OTA_EVSCOPE_DEVICE;
    if (parse_id(id, (size_t)(sl - id), f->device))
      return OTA_EINVAL;
    return parse_prefix(sl + 7, f);
  }
  if (!strncmp(path, "/v1/products/", 13)) {
    const char *id = path + 13, *sl = strchr(id, '/');
    if (!sl || strncmp(sl, "/events", 7))
      return OTA_ENOENT;
    unsigned long long v = 0;
    if (sl == id || sl - id > 10)
      return OTA_EINVAL;
    for (const char *p = id; p < sl; p++) {
      if (*p < '0' || *p > '9')
        return OTA_EINVAL;
      v = v * 10 + (unsigned)(*p - '0');
    }
    if (!v || v > 0xFFFFFFFFull)
      return OTA_EINVAL;
    f->scope = OTA_EVSCOPE_PRODUCT;
    f->product = (uint32_t)v;
    return parse_prefix(sl + 7, f);
  }
  return OTA_ENOENT;
}

int ota_evfilter_match(const ota_evfilter_t *f, const ota_event_t *ev) {
  if (!f || !ev || !ev->name)
    return 0;
  if (strncmp(ev->name, f->prefix, strlen(f->prefix)))
    return 0;
  int from_device = ev->coreid && *ev->coreid;
  switch (f->scope) {
  case OTA_EVSCOPE_ALL:
    return 1;
  case OTA_EVSCOPE_DEVICES:
    return from_device;
  case OTA_EVSCOPE_DEVICE:
    return from_device && !strcmp(ev->coreid, f->device);
  case OTA_EVSCOPE_PRODUCT:
    return ev->product == f->product;
  }
  return 0;
}

void ota_evq_init(ota_evq_t *q, size_t cap) {
  memset(q, 0, sizeof *q);
  q->cap = cap < 1 ? 1 : cap > OTA_EVQ_MAX ? OTA_EVQ_MAX : cap;
}

void *ota_evq_push(ota_evq_t *q, void *item) {
  void *old = NULL;
  if (q->n == q->cap) {
    old = ota_evq_pop(q);
    q->dropped++;
  }
  q->items[(q->head + q->n) % q->cap] = item;
  q->n++;
  return old;
}

void *ota_evq_peek(const ota_evq_t *q) {
  return q->n ? q->items[q->head] : NULL;
}

void *ota_evq_pop(ota_evq_t *q) {
  if (!q->n)
    return NULL;
  void *it = q->items[q->head];
  q->head = (q->head + 1) % q->cap;
  q->n--;
  return it;
}
