/* REST helpers: form bodies as particle-cli/curl send them, Particle's SSE and
 * WebSocket event records, stream path filters, the drop-oldest queue. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "otalab/err.h"
#include "otalab/rest.h"

typedef struct { /* inline strings: Criterion may run params in a new process */
  char body[64], name[16];
  int err;
  char value[24];
} form_case_t;

static form_case_t form_cases[] = {
    {"grant_type=password&username=a%40b.c&password=p+w", "username", 0,
     "a@b.c"},
    {"grant_type=password&username=a%40b.c&password=p+w", "password", 0, "p w"},
    {"grant_type=password&username=x", "grant_type", 0, "password"},
    {"a=1&b=2\r\n", "b", 0, "2"},
    {"flag&x=1", "flag", 0, ""},
    {"x=1", "y", OTA_ENOENT, ""},
    {"x=%4", "x", OTA_EPARSE, ""},
    {"x=%zz", "x", OTA_EPARSE, ""},
    {"x=%00", "x", OTA_EPARSE, ""},
    {"x=0123456789abcdef0123456789abcdef", "x", OTA_ENOBUFS, ""},
    {"%61ccess_token=tok", "access_token", 0, "tok"},
    {"", "x", OTA_ENOENT, ""},
};

ParameterizedTestParameters(rest, form_get) {
  return cr_make_param_array(form_case_t, form_cases,
                             sizeof form_cases / sizeof *form_cases);
}

ParameterizedTest(form_case_t *c, rest, form_get) {
  char out[24];
  int err = ota_form_get(c->body, strlen(c->body), c->name, out, sizeof out);
  cr_assert_eq(err, c->err, "%s [%s]: %d", c->body, c->name, err);
  if (!err)
    cr_assert_str_eq(out, c->value);
}

Test(rest, form_check) {
  cr_assert_eq(ota_form_check("a=1&b=%41", 9), 0);
  cr_assert_eq(ota_form_check("a=1\n", 4), 0);
  cr_assert_eq(ota_form_check("a=%4", 4), OTA_EPARSE);
  cr_assert_eq(ota_form_check("a=\x01", 3), OTA_EPARSE);
  cr_assert_eq(ota_form_check("{\"x\":\n1}", 8), OTA_EPARSE);
}

Test(rest, event_time) {
  char ts[32];
  cr_assert_eq(ota_event_time(0, ts, sizeof ts), 0);
  cr_assert_str_eq(ts, "1970-01-01T00:00:00.000Z");
  cr_assert_eq(ota_event_time(1700000000123LL, ts, sizeof ts), 0);
  cr_assert_str_eq(ts, "2023-11-14T22:13:20.123Z");
  cr_assert_eq(ota_event_time(0, ts, 10), OTA_ENOBUFS);
}

/* The SSE record parses back into name + JSON with the fields we put in. */
Test(rest, sse_record_roundtrip) {
  ota_event_t ev = {.name = "spark/flash/status",
                    .data = "say \"hi\"\n\\",
                    .coreid = "00aa11bb22cc33dd44ee55ff",
                    .ttl = 60,
                    .published_ms = 1700000000123LL};
  char buf[512];
  size_t len = 0;
  cr_assert_eq(ota_event_sse(&ev, buf, sizeof buf, &len), 0);
  cr_assert_eq(len, strlen(buf));
  cr_assert(len > 4 && !strcmp(buf + len - 2, "\n\n"),
            "ends with a blank line");
  char name[80];
  cr_assert_eq(sscanf(buf, "event: %79[^\n]\n", name), 1);
  cr_assert_str_eq(name, ev.name);
  const char *data = strstr(buf, "\ndata: ");
  cr_assert_not_null(data);
  cr_assert_eq(strchr(data + 7, '\n'), buf + len - 2,
               "the JSON stays on one line");
  json_error_t je;
  json_t *o =
      json_loadb(data + 7, (size_t)(buf + len - 2 - (data + 7)), 0, &je);
  cr_assert_not_null(o, "%s", je.text);
  cr_assert_str_eq(json_string_value(json_object_get(o, "data")), ev.data);
  cr_assert_eq(json_integer_value(json_object_get(o, "ttl")), 60);
  cr_assert_str_eq(json_string_value(json_object_get(o, "published_at")),
                   "2023-11-14T22:13:20.123Z");
  cr_assert_str_eq(json_string_value(json_object_get(o, "coreid")), ev.coreid);
  json_decref(o);

  cr_assert_eq(ota_event_sse(&ev, buf, 40, &len), OTA_ENOBUFS);
  ev.name = "bad\nname";
  cr_assert_eq(ota_event_sse(&ev, buf, sizeof buf, &len), OTA_EINVAL);
}

Test(rest, ws_record_is_one_json_object) {
  ota_event_t ev = {.name = "otalab/product/released",
                    .data = "{\"version\":3}",
                    .coreid = "",
                    .ttl = 60,
                    .published_ms = 1000};
  char buf[512];
  size_t len;
  cr_assert_eq(ota_event_ws(&ev, buf, sizeof buf, &len), 0);
  json_t *o = json_loadb(buf, len, 0, NULL);
  cr_assert_not_null(o, "%s", buf);
  cr_assert_str_eq(json_string_value(json_object_get(o, "name")), ev.name);
  cr_assert_str_eq(json_string_value(json_object_get(o, "data")), ev.data);
  cr_assert_str_eq(json_string_value(json_object_get(o, "coreid")),
                   "particle-internal");
  json_decref(o);
}

typedef struct {
  char path[96];
  int err;
  ota_evscope_t scope;
  char prefix[24], device[25];
  uint32_t product;
} path_case_t;

static path_case_t path_cases[] = {
    {"/v1/events", 0, OTA_EVSCOPE_ALL, "", "", 0},
    {"/v1/events/", 0, OTA_EVSCOPE_ALL, "", "", 0},
    {"/v1/events/spark/flash", 0, OTA_EVSCOPE_ALL, "spark/flash", "", 0},
    {"/v1/devices/events/temp", 0, OTA_EVSCOPE_DEVICES, "temp", "", 0},
    {"/v1/devices/00AA11bb22cc33dd44ee55ff/events", 0, OTA_EVSCOPE_DEVICE, "",
     "00aa11bb22cc33dd44ee55ff", 0},
    {"/v1/devices/00aa11bb22cc33dd44ee55ff/events/x/", 0, OTA_EVSCOPE_DEVICE,
     "x", "00aa11bb22cc33dd44ee55ff", 0},
    {"/v1/products/1234/events/spark", 0, OTA_EVSCOPE_PRODUCT, "spark", "",
     1234},
    {"/v1/devices/00aa11/events", OTA_EINVAL, 0, "", "", 0},
    {"/v1/products/0/events", OTA_EINVAL, 0, "", "", 0},
    {"/v1/products/99999999999/events", OTA_EINVAL, 0, "", "", 0},
    {"/v1/devices", OTA_ENOENT, 0, "", "", 0},
    {"/v1/devices/00aa11bb22cc33dd44ee55ff", OTA_ENOENT, 0, "", "", 0},
    {"/v1/eventsx", OTA_ENOENT, 0, "", "", 0},
    {"/v1/products/12/firmware", OTA_ENOENT, 0, "", "", 0},
    {"/v1/events/"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     OTA_EINVAL, 0, "", "", 0},
};

ParameterizedTestParameters(rest, filter_parse) {
  return cr_make_param_array(path_case_t, path_cases,
                             sizeof path_cases / sizeof *path_cases);
}

ParameterizedTest(path_case_t *c, rest, filter_parse) {
  ota_evfilter_t f;
  int err = ota_evfilter_parse(c->path, &f);
  cr_assert_eq(err, c->err, "%s: %d", c->path, err);
  if (err)
    return;
  cr_assert_eq(f.scope, c->scope);
  cr_assert_str_eq(f.prefix, c->prefix);
  cr_assert_str_eq(f.device, c->device);
  cr_assert_eq(f.product, c->product);
}

Test(rest, filter_match) {
  const char *dev = "00aa11bb22cc33dd44ee55ff";
  ota_event_t from_dev = {
      .name = "spark/flash/status", .coreid = dev, .product = 7};
  ota_event_t cloud = {
      .name = "otalab/product/released", .coreid = "", .product = 7};
  ota_event_t other = {.name = "spark/status",
                       .coreid = "ffffffffffffffffffffffff"};
  struct {
    const char *path;
    int m_dev, m_cloud, m_other;
  } t[] = {
      {"/v1/events", 1, 1, 1},
      {"/v1/events/spark", 1, 0, 1},
      {"/v1/events/spark/flash", 1, 0, 0},
      {"/v1/devices/events", 1, 0, 1},
      {"/v1/devices/00aa11bb22cc33dd44ee55ff/events", 1, 0, 0},
      {"/v1/products/7/events", 1, 1, 0},
      {"/v1/products/8/events", 0, 0, 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
    ota_evfilter_t f;
    cr_assert_eq(ota_evfilter_parse(t[i].path, &f), 0);
    cr_assert_eq(ota_evfilter_match(&f, &from_dev), t[i].m_dev, "%s",
                 t[i].path);
    cr_assert_eq(ota_evfilter_match(&f, &cloud), t[i].m_cloud, "%s", t[i].path);
    cr_assert_eq(ota_evfilter_match(&f, &other), t[i].m_other, "%s", t[i].path);
  }
}

Test(rest, queue_drops_oldest) {
  static int v[10];
  ota_evq_t q;
  ota_evq_init(&q, 4);
  cr_assert_null(ota_evq_pop(&q));
  for (int i = 0; i < 10; i++) {
    void *old = ota_evq_push(&q, &v[i]);
    if (i < 4)
      cr_assert_null(old);
    else
      cr_assert_eq(old, &v[i - 4], "push %d evicts the oldest", i);
  }
  cr_assert_eq(q.dropped, 6);
  cr_assert_eq(q.n, 4);
  for (int i = 6; i < 10; i++) {
    cr_assert_eq(ota_evq_peek(&q), &v[i]);
    cr_assert_eq(ota_evq_pop(&q), &v[i]);
  }
  cr_assert_null(ota_evq_peek(&q));
  ota_evq_init(&q, 100000);
  cr_assert_eq(q.cap, OTA_EVQ_MAX);
}
