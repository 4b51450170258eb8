/* The Particle message set over CoAP (PROTOCOL.md 2.1-2.5): classification by
 * path letter, payload formats, and Device OS's fixed-offset request parsing.
 */
#include "otalab/msg.h"

#include "otalab/err.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
#define OTA_MSG_KIND_NAME(k, n) n,
    OTA_MSG_KINDS(OTA_MSG_KIND_NAME)
#undef OTA_MSG_KIND_NAME
};

const char *ota_msg_kind_name(ota_msg_kind_t k) {
  return (unsigned)k < OTA_MSG_KIND_COUNT ? kind_names[k] : "?";
}

/* One-letter Uri-Path values are views into this static string. */
static const char letters[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

static ota_msg_kind_t classify_request(uint8_t code, char c) {
  switch (code) {
  case OTA_COAP_GET:
    switch (c) {
    case 'd':
      return OTA_MSG_DESCRIBE;
    case 'v':
      return OTA_MSG_VARIABLE;
    case 'e':
    case 'E':
      return OTA_MSG_SUBSCRIBE;
    case 't':
      return OTA_MSG_TIME;
    case 'c':
      return OTA_MSG_CHUNK_MISSED;
    default:
      return OTA_MSG_UNKNOWN;
    }
  case OTA_COAP_POST:
    switch (c) {
    case 'h':
      return OTA_MSG_HELLO;
    case 'd':
      return OTA_MSG_DESCRIBE;
    case 'e':
    case 'E':
      return OTA_MSG_EVENT;
    case 'f':
      return OTA_MSG_FUNCTION;
    case 'u':
    case 's':
      return OTA_MSG_UPDATE_BEGIN; /* 's' POST = SaveBegin */
    case 'c':
      return OTA_MSG_CHUNK;
    case 'x':
      return OTA_MSG_GOODBYE;
    default:
      return OTA_MSG_UNKNOWN;
    }
  case OTA_COAP_PUT:
    switch (c) {
    case 'u':
      return OTA_MSG_UPDATE_DONE;
    case 'k':
      return OTA_MSG_KEY_CHANGE;
    case 's':
      return OTA_MSG_SIGNAL;
    default:
      return OTA_MSG_UNKNOWN;
    }
  default:
    return OTA_MSG_UNKNOWN;
  }
}

ota_msg_kind_t ota_msg_classify(const ota_coap_msg_t *m, ota_dir_t dir) {
  if (!m)
    return OTA_MSG_UNKNOWN;
  if (m->type == OTA_COAP_RST)
    return OTA_MSG_RST;
  if (m->code == OTA_COAP_EMPTY) {
    if (m->type == OTA_COAP_CON)
      return OTA_MSG_PING;
    return m->type == OTA_COAP_ACK ? OTA_MSG_ACK : OTA_MSG_UNKNOWN;
  }
  if (ota_coap_is_response(m->code)) {
    if (m->type == OTA_COAP_ACK) {
      /* Device OS reads any 2.05 from the cloud as the time response. */
      if (dir == OTA_DIR_TO_DEVICE && m->code == OTA_COAP_CONTENT)
        return OTA_MSG_TIME;
      return OTA_MSG_ACK_RESPONSE;
    }
    if (dir == OTA_DIR_TO_CLOUD) {
      if (m->code == OTA_COAP_CHANGED && m->payload_len == 1)
        return OTA_MSG_UPDATE_READY;
      if ((m->code == OTA_COAP_CHANGED && m->payload_len == 0) ||
          m->code == OTA_COAP_BAD_REQUEST)
        return OTA_MSG_CHUNK_RECEIVED;
    }
    return OTA_MSG_RESPONSE;
  }
  if (!ota_coap_is_request(m->code) || m->type == OTA_COAP_ACK)
    return OTA_MSG_UNKNOWN;
  const ota_coap_opt_t *p = ota_coap_uri_path(m, 0);
  if (!p || p->len != 1)
    return OTA_MSG_UNKNOWN;
  return classify_request(m->code, (char)p->val[0]);
}

/* Device OS parses cloud requests at fixed offsets (messages.cpp decodeType,
 * chunked_transfer.cpp, protocol.cpp): check each layout byte by byte. */
static int strict_request(const uint8_t *b, size_t len, const ota_coap_msg_t *m,
                          ota_msg_kind_t k) {
  if (m->tkl != 1 || len < 7 || b[5] != 0xB1)
    return OTA_EPARSE;
  switch (k) {
  case OTA_MSG_HELLO:
  case OTA_MSG_UPDATE_BEGIN:
    return len == 7 || b[7] == OTA_COAP_PAYLOAD_MARKER ? 0 : OTA_EPARSE;
  case OTA_MSG_UPDATE_DONE:
    return len == 7 ? 0 : OTA_EPARSE;
  case OTA_MSG_DESCRIBE:
  case OTA_MSG_KEY_CHANGE:
    if (k == OTA_MSG_DESCRIBE && m->code != OTA_COAP_GET)
      return OTA_EPARSE;
    return len == 7 || (len == 9 && b[7] == 0x41) ? 0 : OTA_EPARSE;
  case OTA_MSG_SIGNAL:
    return len == 9 && b[7] == OTA_COAP_PAYLOAD_MARKER ? 0 : OTA_EPARSE;
  case OTA_MSG_CHUNK: {
    if (len < 12 || b[7] != 0x44)
      return OTA_EPARSE;
    size_t p = 12;
    if (p < len && b[p] == 0x02)
      p += 3;
    if (p + 1 >= len || b[p] != OTA_COAP_PAYLOAD_MARKER)
      return OTA_EPARSE;
    return 0;
  }
  case OTA_MSG_EVENT:
  case OTA_MSG_FUNCTION:
  case OTA_MSG_VARIABLE:
    return ota_coap_uri_path(m, 1) ? 0 : OTA_EPARSE;
  default:
    return OTA_EPARSE; /* device-to-cloud kinds or unknown letters */
  }
}

int ota_msg_parse_cloud_request(const uint8_t *buf, size_t len,
                                ota_coap_msg_t *m, ota_msg_kind_t *kind) {
  if (!buf || !m || !kind)
    return OTA_EINVAL;
  *kind = OTA_MSG_UNKNOWN;
  int rc = ota_coap_decode(buf, len, m);
  if (rc)
    return rc;
  ota_msg_kind_t k = ota_msg_classify(m, OTA_DIR_TO_DEVICE);
  if (m->type == OTA_COAP_RST) {
    if (m->code != OTA_COAP_EMPTY)
      return OTA_EPARSE;
  } else if (m->code == OTA_COAP_EMPTY) {
    if (k != OTA_MSG_PING && k != OTA_MSG_ACK)
      return OTA_EPARSE;
  } else if (ota_coap_is_response(m->code)) {
    if (m->type != OTA_COAP_ACK)
      return OTA_EPARSE; /* the device never awaits a separate response */
    if (k == OTA_MSG_TIME &&
        (m->tkl != 1 || len != 10 || buf[5] != OTA_COAP_PAYLOAD_MARKER))
      return OTA_EPARSE;
  } else if (m->type == OTA_COAP_ACK || m->type == OTA_COAP_RST) {
    return OTA_EPARSE;
  } else {
    rc = strict_request(buf, len, m, k);
    if (rc)
      return rc;
  }
  *kind = k;
  return 0;
}

int ota_msg_build_request(ota_coap_msg_t *m, ota_coap_type_t type, uint8_t code,
                          uint16_t mid, const uint8_t *token, size_t tkl,
                          char letter) {
  if (!m)
    return OTA_EINVAL;
  const char *l = letter ? strchr(letters, letter) : NULL;
  if (!l)
    return OTA_EINVAL;
  ota_coap_msg_init(m, type, code, mid);
  int rc = ota_coap_set_token(m, token, tkl);
  if (rc)
    return rc;
  return ota_coap_add_option(m, OTA_COAP_OPT_URI_PATH, l, 1);
}

void ota_msg_build_empty(ota_coap_msg_t *m, ota_coap_type_t type,
                         uint16_t mid) {
  ota_coap_msg_init(m, type, OTA_COAP_EMPTY, mid);
}

void ota_msg_build_ack_response(ota_coap_msg_t *m, const ota_coap_msg_t *req,
                                uint8_t code, const void *payload, size_t len) {
  ota_coap_msg_init(m, OTA_COAP_ACK, code, req->mid);
  ota_coap_set_token(m, req->token, req->tkl);
  ota_coap_set_payload(m, payload, len);
}

int ota_msg_build_separate_response(ota_coap_msg_t *m, ota_coap_type_t type,
                                    uint8_t code, uint16_t mid,
                                    const uint8_t *tok, size_t tkl,
                                    const void *payload, size_t len) {
  ota_coap_msg_init(m, type, code, mid);
  ota_coap_set_payload(m, payload, len);
  return ota_coap_set_token(m, tok, tkl);
}

/* ---- Hello ---- */

int ota_msg_hello_encode(const ota_msg_hello_t *h, uint8_t *out, size_t cap,
                         size_t *len) {
  if (!h || !out || !len || h->id_len != OTA_DEVICE_ID_LEN)
    return OTA_EINVAL;
  if (cap < OTA_MSG_HELLO_PAYLOAD_LEN)
    return OTA_ENOBUFS;
  ota_put_be16(out, h->product_id);
  ota_put_be16(out + 2, h->product_version);
  out[4] = h->reserved;
  out[5] = h->flags;
  ota_put_be16(out + 6, h->platform_id);
  ota_put_be16(out + 8, h->id_len);
  memcpy(out + 10, h->device_id, OTA_DEVICE_ID_LEN);
  *len = OTA_MSG_HELLO_PAYLOAD_LEN;
  return 0;
}

int ota_msg_hello_parse(const uint8_t *p, size_t len, ota_msg_hello_t *h) {
  if (!h || (!p && len))
    return OTA_EINVAL;
  memset(h, 0, sizeof(*h));
  if (len < 10)
    return OTA_ETRUNC;
  h->product_id = ota_be16(p);
  h->product_version = ota_be16(p + 2);
  h->reserved = p[4];
  h->flags = p[5];
  h->platform_id = ota_be16(p + 6);
  h->id_len = ota_be16(p + 8);
  if (h->id_len > OTA_DEVICE_ID_LEN)
    return OTA_EPARSE;
  if (len < 10u + h->id_len)
    return OTA_ETRUNC;
  memcpy(h->device_id, p + 10, h->id_len);
  return 0;
}

/* ---- UpdateBegin ---- */

int ota_msg_update_begin_encode(const ota_msg_update_begin_t *u, uint8_t *out,
                                size_t cap) {
  if (!u || !out)
    return OTA_EINVAL;
  if (cap < OTA_UPDATE_BEGIN_LEN)
    return OTA_ENOBUFS;
  out[0] = u->flags;
  ota_put_be16(out + 1, u->chunk_size);
  ota_put_be32(out + 3, u->file_size);
  out[7] = u->store;
  ota_put_be32(out + 8, u->address);
  return 0;
}

int ota_msg_update_begin_parse(const uint8_t *p, size_t len,
                               ota_msg_update_begin_t *u) {
  if (!u || (!p && len))
    return OTA_EINVAL;
  memset(u, 0, sizeof(*u));
  if (len < OTA_UPDATE_BEGIN_LEN) {
    u->chunk_size = OTA_CHUNK_SIZE;
    u->defaults = true;
    return 0;
  }
  u->flags = p[0];
  u->chunk_size = ota_be16(p + 1);
  u->file_size = ota_be32(p + 3);
  u->store = p[7];
  u->address = ota_be32(p + 8);
  return 0;
}

/* ---- Chunk ---- */

int ota_msg_build_chunk(ota_coap_msg_t *m, ota_coap_type_t type, uint16_t mid,
                        uint8_t token, const ota_msg_chunk_t *c,
                        uint8_t store[6]) {
  if (!c || !store || (!c->data && c->len))
    return OTA_EINVAL;
  int rc = ota_msg_build_request(m, type, OTA_COAP_POST, mid, &token, 1, 'c');
  if (rc)
    return rc;
  ota_put_be32(store, c->crc);
  rc = ota_coap_add_option(m, OTA_COAP_OPT_URI_QUERY, store, 4);
  if (!rc && c->has_index) {
    ota_put_be16(store + 4, c->index);
    rc = ota_coap_add_option(m, OTA_COAP_OPT_URI_QUERY, store + 4, 2);
  }
  ota_coap_set_payload(m, c->data, c->len);
  return rc;
}

int ota_msg_chunk_parse(const ota_coap_msg_t *m, ota_msg_chunk_t *c) {
  if (!m || !c)
    return OTA_EINVAL;
  memset(c, 0, sizeof(*c));
  const ota_coap_opt_t *q0 = ota_coap_uri_query(m, 0);
  const ota_coap_opt_t *q1 = ota_coap_uri_query(m, 1);
  if (!q0 || q0->len != 4 || (q1 && q1->len != 2))
    return OTA_EPARSE;
  c->crc = ota_be32(q0->val);
  if (q1) {
    c->has_index = true;
    c->index = ota_be16(q1->val);
  }
  c->data = m->payload;
  c->len = m->payload_len;
  return 0;
}

/* ---- ChunkMissed ---- */

int ota_msg_chunk_missed_encode(const uint16_t *idx, size_t n, uint8_t *out,
                                size_t cap, size_t *len) {
  if ((!idx && n) || !len || (!out && cap))
    return OTA_EINVAL;
  if (cap / 2 < n)
    return OTA_ENOBUFS;
  for (size_t i = 0; i < n; i++)
    ota_put_be16(out + 2 * i, idx[i]);
  *len = 2 * n;
  return 0;
}

int ota_msg_chunk_missed_parse(const uint8_t *p, size_t len, uint16_t *idx,
                               size_t cap, size_t *n) {
  if (!n || (!p && len) || (!idx && cap))
    return OTA_EINVAL;
  *n = 0;
  if (len % 2)
    return OTA_EPARSE;
  size_t count = len / 2;
  for (size_t i = 0; i < count && i < cap; i++)
    idx[i] = ota_be16(p + 2 * i);
  *n = count < cap ? count : cap;
  return count > cap ? OTA_ENOBUFS : 0;
}

/* ---- UpdateDone result ---- */

#define OTA_DONE_GENERIC_ERROR (-1390) /* system_error.h OTA error */

static int parse_module(json_t *u, ota_msg_done_result_t *r) {
  json_t *f = json_object_get(u, "f");
  json_t *n = json_object_get(u, "n");
  json_t *v = json_object_get(u, "v");
  json_t *p = json_object_get(u, "p");
  if (!json_is_string(f) || json_string_length(f) != 1 || !json_is_integer(v))
    return OTA_EPARSE;
  int fn = ota_fn_from_letter(json_string_value(f)[0]);
  if (fn < 0)
    return OTA_EPARSE;
  long long idx = 0;
  if (json_is_string(n)) {
    const char *s = json_string_value(n);
    char *end = NULL;
    idx = strtoll(s, &end, 10);
    if (!*s || *end)
      return OTA_EPARSE;
  } else if (json_is_integer(n)) {
    idx = json_integer_value(n);
  } else if (n) {
    return OTA_EPARSE;
  }
  long long ver = json_integer_value(v);
  if (idx < 0 || idx > 255 || ver < 0 || ver > 0xffff)
    return OTA_EPARSE;
  r->module.func = (uint8_t)fn;
  r->module.index = (uint8_t)idx;
  r->module.version = (uint16_t)ver;
  if (json_is_integer(p) && json_integer_value(p) >= 0 &&
      json_integer_value(p) <= 0xffff)
    r->platform = (uint16_t)json_integer_value(p);
  r->has_module = true;
  return 0;
}

int ota_msg_done_result_parse(const uint8_t *p, size_t len,
                              ota_msg_done_result_t *r) {
  if (!r || (!p && len))
    return OTA_EINVAL;
  memset(r, 0, sizeof(*r));
  if (len == 0) {
    r->form = OTA_DONE_FORM_NONE;
    r->ok = true;
    return 0;
  }
  json_error_t jerr;
  json_t *root =
      json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
  int rc = OTA_EPARSE;
  if (!json_is_object(root))
    goto out;
  json_t *res = json_object_get(root, "r");
  if (json_is_integer(res)) {
    json_int_t v = json_integer_value(res);
    if (v < INT32_MIN || v > INT32_MAX)
      goto out;
    r->form = OTA_DONE_FORM_INT;
    r->code = (int)v;
    r->ok = v == 0;
    rc = 0;
  } else if (json_is_string(res)) {
    const char *s = json_string_value(res);
    if (strcmp(s, "ok") == 0)
      r->ok = true;
    else if (strcmp(s, "error") == 0)
      r->code = OTA_DONE_GENERIC_ERROR;
    else
      goto out;
    r->form = OTA_DONE_FORM_OKERR;
    json_t *u = json_object_get(root, "u");
    rc = json_is_object(u) ? parse_module(u, r) : 0;
    if (rc)
      r->has_module = false;
    rc = 0; /* a module we cannot read does not change the verdict */
  }
out:
  json_decref(root);
  return rc;
}

int ota_msg_done_result_encode(const ota_msg_done_result_t *r, char *out,
                               size_t cap, size_t *len) {
  if (!r || !out || !len)
    return OTA_EINVAL;
  int w;
  switch (r->form) {
  case OTA_DONE_FORM_NONE:
    w = snprintf(out, cap, "%s", "");
    break;
  case OTA_DONE_FORM_INT:
    w = snprintf(out, cap, "{\"r\":%d}", r->code);
    break;
  case OTA_DONE_FORM_OKERR:
    if (r->has_module)
      w = snprintf(out, cap,
                   "{\"r\":\"%s\",\"u\":{\"f\":\"%c\",\"n\":\"%u\",\"v\":%u,"
                   "\"p\":%u}}",
                   r->ok ? "ok" : "error", ota_fn_letter(r->module.func),
                   (unsigned)r->module.index, (unsigned)r->module.version,
                   (unsigned)r->platform);
    else
      w = snprintf(out, cap, "{\"r\":\"%s\"}", r->ok ? "ok" : "error");
    break;
  default:
    return OTA_EINVAL;
  }
  if (w < 0 || (size_t)w >= cap)
    return OTA_ENOBUFS;
  *len = (size_t)w;
  return 0;
}

/* ---- Describe ---- */

int ota_msg_build_describe(ota_coap_msg_t *m, uint16_t mid, uint8_t token,
                           uint8_t flags, uint8_t *store) {
  int rc =
      ota_msg_build_request(m, OTA_COAP_CON, OTA_COAP_GET, mid, &token, 1, 'd');
  if (rc || flags == 0)
    return rc;
  if (!store)
    return OTA_EINVAL;
  store[0] = flags;
  return ota_coap_add_option(m, OTA_COAP_OPT_URI_QUERY, store, 1);
}

uint8_t ota_msg_describe_flags(const ota_coap_msg_t *m) {
  const ota_coap_opt_t *q = ota_coap_uri_query(m, 0);
  return q && q->len == 1 ? q->val[0] : OTA_DESCRIBE_DEFAULT;
}

/* ---- Events ---- */

int ota_msg_build_event(ota_coap_msg_t *m, ota_coap_type_t type, uint16_t mid,
                        const ota_msg_event_t *ev, uint8_t store[3]) {
  if (!ev || !ev->name || ev->name_len == 0 ||
      ev->name_len > OTA_EVENT_NAME_MAX || ev->data_len > OTA_EVENT_DATA_MAX ||
      (!ev->data && ev->data_len))
    return OTA_EINVAL;
  int rc = ota_msg_build_request(m, type, OTA_COAP_POST, mid, NULL, 0,
                                 ev->is_private ? 'E' : 'e');
  if (!rc)
    rc = ota_coap_add_option(m, OTA_COAP_OPT_URI_PATH, ev->name, ev->name_len);
  if (!rc && ev->ttl != OTA_EVENT_TTL_DEFAULT) {
    if (!store)
      return OTA_EINVAL;
    /* Device OS always writes Max-Age as 3 bytes (messages.cpp event). */
    store[0] = (uint8_t)(ev->ttl >> 16);
    store[1] = (uint8_t)(ev->ttl >> 8);
    store[2] = (uint8_t)ev->ttl;
    rc = ota_coap_add_option(m, OTA_COAP_OPT_MAX_AGE, store, 3);
  }
  ota_coap_set_payload(m, ev->data, ev->data_len);
  return rc;
}

int ota_msg_event_parse(const ota_coap_msg_t *m, ota_msg_event_t *ev) {
  if (!m || !ev)
    return OTA_EINVAL;
  memset(ev, 0, sizeof(*ev));
  const ota_coap_opt_t *kind = ota_coap_uri_path(m, 0);
  const ota_coap_opt_t *name = ota_coap_uri_path(m, 1);
  if (!kind || kind->len != 1 || !name || name->len == 0)
    return OTA_EPARSE;
  ev->is_private = kind->val[0] == 'E';
  ev->name = (const char *)name->val;
  ev->name_len = name->len;
  ev->data = m->payload;
  ev->data_len = m->payload_len;
  const ota_coap_opt_t *age = ota_coap_find(m, OTA_COAP_OPT_MAX_AGE);
  if (age && age->len > 4)
    return OTA_EPARSE;
  ev->ttl = age ? ota_coap_opt_uint(age) : OTA_EVENT_TTL_DEFAULT;
  return 0;
}

/* ---- Time ---- */

void ota_msg_build_time_response(ota_coap_msg_t *m, const ota_coap_msg_t *req,
                                 uint32_t unix_time, uint8_t store[4]) {
  ota_put_be32(store, unix_time);
  ota_msg_build_ack_response(m, req, OTA_COAP_CONTENT, store, 4);
}

int ota_msg_time_parse(const ota_coap_msg_t *m, uint32_t *unix_time) {
  if (!m || !unix_time)
    return OTA_EINVAL;
  if (m->payload_len < 4)
    return OTA_ETRUNC;
  *unix_time = ota_be32(m->payload);
  return 0;
}

/* ---- Goodbye ---- */

static size_t put_varint(uint8_t *out, uint32_t v) {
  size_t n = 0;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
  } while (v);
  return n;
}

int ota_msg_goodbye_encode(const ota_msg_goodbye_t *g, uint8_t *out, size_t cap,
                           size_t *len) {
  if (!g || !len || (!out && cap) || g->nvals > 4)
    return OTA_EINVAL;
  uint8_t tmp[25];
  size_t n = put_varint(tmp, g->flags);
  for (size_t i = 0; i < g->nvals; i++)
    n += put_varint(tmp + n, g->vals[i]);
  if (n > cap)
    return OTA_ENOBUFS;
  memcpy(out, tmp, n);
  *len = n;
  return 0;
}

int ota_msg_goodbye_parse(const uint8_t *p, size_t len, ota_msg_goodbye_t *g) {
  if (!g || (!p && len))
    return OTA_EINVAL;
  memset(g, 0, sizeof(*g));
  size_t pos = 0, count = 0;
  while (pos < len) {
    uint64_t v = 0;
    unsigned shift = 0;
    for (;;) {
      if (pos == len)
        return OTA_ETRUNC;
      uint8_t b = p[pos++];
      if (shift > 28 || (shift == 28 && (b & 0x70)))
        return OTA_EPARSE; /* more than 32 bits */
      v |= (uint64_t)(b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80))
        break;
    }
    if (count == 5)
      return OTA_EPARSE;
    if (count == 0)
      g->flags = (uint32_t)v;
    else
      g->vals[count - 1] = (uint32_t)v;
    count++;
  }
  g->nvals = count ? count - 1 : 0;
  return 0;
}
