/* RFC 7252 section 3 message format: encode and decode CoAP over UDP.
 * Strict on the rules of 3.1 (nibble 15, empty payload after marker) and 4.1.
 */
#include "otalab/coap.h"

#include "otalab/err.h"

#include <stdio.h>
#include <string.h>

void ota_coap_msg_init(ota_coap_msg_t *m, ota_coap_type_t type, uint8_t code,
                       uint16_t mid) {
  memset(m, 0, sizeof(*m));
  m->ver = OTA_COAP_VERSION;
  m->type = (uint8_t)type;
  m->code = code;
  m->mid = mid;
}

/* Reads an extended delta or length field for nibble n; advances *pos. */
static int read_ext(const uint8_t *buf, size_t len, size_t *pos, unsigned n,
                    uint32_t *out) {
  if (n < 13) {
    *out = n;
  } else if (n == 13) {
    if (*pos + 1 > len)
      return OTA_ETRUNC;
    *out = 13u + buf[*pos];
    *pos += 1;
  } else if (n == 14) {
    if (*pos + 2 > len)
      return OTA_ETRUNC;
    *out = 269u + (((uint32_t)buf[*pos] << 8) | buf[*pos + 1]);
    *pos += 2;
  } else {
    return OTA_EPARSE; /* 15 is reserved outside the payload marker */
  }
  return 0;
}

int ota_coap_decode(const uint8_t *buf, size_t len, ota_coap_msg_t *m) {
  if (!buf || !m)
    return OTA_EINVAL;
  if (len < 4)
    return OTA_ETRUNC;
  ota_coap_msg_init(m, (ota_coap_type_t)((buf[0] >> 4) & 3), buf[1],
                    (uint16_t)((buf[2] << 8) | buf[3]));
  m->ver = buf[0] >> 6;
  if (m->ver != OTA_COAP_VERSION)
    return OTA_EPARSE;
  m->tkl = buf[0] & 0x0f;
  if (m->tkl > OTA_COAP_MAX_TOKEN)
    return OTA_EPARSE;
  if (4u + m->tkl > len)
    return OTA_ETRUNC;
  memcpy(m->token, buf + 4, m->tkl);
  size_t pos = 4u + m->tkl;
  uint32_t num = 0;
  while (pos < len) {
    uint8_t b = buf[pos++];
    if (b == OTA_COAP_PAYLOAD_MARKER) {
      if (pos == len)
        return OTA_EPARSE; /* marker with empty payload */
      m->payload = buf + pos;
      m->payload_len = len - pos;
      break;
    }
    uint32_t delta, olen;
    int rc = read_ext(buf, len, &pos, b >> 4, &delta);
    if (rc == 0)
      rc = read_ext(buf, len, &pos, b & 0x0f, &olen);
    if (rc)
      return rc;
    num += delta;
    if (num > 0xffff)
      return OTA_EPARSE;
    if (olen > len - pos)
      return OTA_ETRUNC;
    if (m->nopt == OTA_COAP_MAX_OPTIONS)
      return OTA_ENOBUFS;
    m->opt[m->nopt].num = num;
    m->opt[m->nopt].len = olen;
    m->opt[m->nopt].val = olen ? buf + pos : NULL;
    m->nopt++;
    pos += olen;
  }
  if (m->code == OTA_COAP_EMPTY && (m->tkl || m->nopt || m->payload_len))
    return OTA_EPARSE; /* RFC 7252 4.1: Empty means 4 bytes */
  return 0;
}

static size_t ext_size(uint32_t v) {
  return v < 13 ? 0 : v < 269 ? 1 : 2;
}

static unsigned ext_nibble(uint32_t v) {
  return v < 13 ? v : v < 269 ? 13u : 14u;
}

static void put_ext(uint8_t *p, uint32_t v) {
  if (v >= 269) {
    p[0] = (uint8_t)((v - 269) >> 8);
    p[1] = (uint8_t)(v - 269);
  } else if (v >= 13) {
    p[0] = (uint8_t)(v - 13);
  }
}

/* Option order for encoding: a stable order by number without touching m. */
static void sorted_order(const ota_coap_msg_t *m, size_t idx[]) {
  for (size_t i = 0; i < m->nopt; i++) {
    size_t j = i;
    while (j > 0 && m->opt[idx[j - 1]].num > m->opt[i].num) {
      idx[j] = idx[j - 1];
      j--;
    }
    idx[j] = i;
  }
}

static bool msg_valid(const ota_coap_msg_t *m) {
  if (m->tkl > OTA_COAP_MAX_TOKEN || m->type > 3 ||
      m->nopt > OTA_COAP_MAX_OPTIONS)
    return false;
  for (size_t i = 0; i < m->nopt; i++)
    if (m->opt[i].num > 0xffff || m->opt[i].len > 0xffff + 269u ||
        (m->opt[i].len && !m->opt[i].val))
      return false;
  return !(m->payload_len && !m->payload);
}

size_t ota_coap_encoded_size(const ota_coap_msg_t *m) {
  if (!m || !msg_valid(m))
    return 0;
  size_t idx[OTA_COAP_MAX_OPTIONS];
  sorted_order(m, idx);
  size_t n = 4u + m->tkl;
  uint32_t prev = 0;
  for (size_t i = 0; i < m->nopt; i++) {
    const ota_coap_opt_t *o = &m->opt[idx[i]];
    n += 1 + ext_size(o->num - prev) + ext_size(o->len) + o->len;
    prev = o->num;
  }
  if (m->payload_len)
    n += 1 + m->payload_len;
  return n;
}

int ota_coap_encode(const ota_coap_msg_t *m, uint8_t *buf, size_t cap,
                    size_t *len) {
  if (!m || !len || (!buf && cap))
    return OTA_EINVAL;
  size_t need = ota_coap_encoded_size(m);
  if (need == 0)
    return OTA_EINVAL;
  if (need > cap)
    return OTA_ENOBUFS;
  buf[0] = (uint8_t)((OTA_COAP_VERSION << 6) | (m->type << 4) | m->tkl);
  buf[1] = m->code;
  buf[2] = (uint8_t)(m->mid >> 8);
  buf[3] = (uint8_t)m->mid;
  memcpy(buf + 4, m->token, m->tkl);
  size_t pos = 4u + m->tkl;
  size_t idx[OTA_COAP_MAX_OPTIONS];
  sorted_order(m, idx);
  uint32_t prev = 0;
  for (size_t i = 0; i < m->nopt; i++) {
    const ota_coap_opt_t *o = &m->opt[idx[i]];
    uint32_t d = o->num - prev;
    buf[pos++] = (uint8_t)((ext_nibble(d) << 4) | ext_nibble(o->len));
    put_ext(buf + pos, d);
    pos += ext_size(d);
    put_ext(buf + pos, o->len);
    pos += ext_size(o->len);
    if (o->len)
      memcpy(buf + pos, o->val, o->len);
    pos += o->len;
    prev = o->num;
  }
  if (m->payload_len) {
    buf[pos++] = OTA_COAP_PAYLOAD_MARKER;
    memcpy(buf + pos, m->payload, m->payload_len);
    pos += m->payload_len;
  }
  *len = pos;
  return 0;
}

int ota_coap_set_token(ota_coap_msg_t *m, const void *tok, size_t len) {
  if (!m || len > OTA_COAP_MAX_TOKEN || (len && !tok))
    return OTA_EINVAL;
  if (len)
    memcpy(m->token, tok, len);
  m->tkl = (uint8_t)len;
  return 0;
}

int ota_coap_add_option(ota_coap_msg_t *m, uint32_t num, const void *val,
                        size_t len) {
  if (!m || num > 0xffff || len > 0xffff || (len && !val))
    return OTA_EINVAL;
  if (m->nopt >= OTA_COAP_MAX_OPTIONS)
    return OTA_ENOBUFS;
  size_t at = m->nopt;
  while (at > 0 && m->opt[at - 1].num > num) {
    m->opt[at] = m->opt[at - 1];
    at--;
  }
  m->opt[at].num = num;
  m->opt[at].len = (uint32_t)len;
  m->opt[at].val = len ? val : NULL;
  m->nopt++;
  return 0;
}

int ota_coap_add_option_str(ota_coap_msg_t *m, uint32_t num, const char *s) {
  if (!s)
    return OTA_EINVAL;
  return ota_coap_add_option(m, num, s, strlen(s));
}

int ota_coap_add_option_uint(ota_coap_msg_t *m, uint32_t num, uint32_t v,
                             uint8_t store[4]) {
  size_t n = v > 0xffffff ? 4 : v > 0xffff ? 3 : v > 0xff ? 2 : v ? 1 : 0;
  for (size_t i = 0; i < n; i++)
    store[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
  return ota_coap_add_option(m, num, store, n);
}

void ota_coap_set_payload(ota_coap_msg_t *m, const void *p, size_t len) {
  m->payload = len ? p : NULL;
  m->payload_len = p ? len : 0;
}

const ota_coap_opt_t *ota_coap_find_nth(const ota_coap_msg_t *m, uint32_t num,
                                        size_t n) {
  if (!m)
    return NULL;
  for (size_t i = 0; i < m->nopt && i < OTA_COAP_MAX_OPTIONS; i++)
    if (m->opt[i].num == num && n-- == 0)
      return &m->opt[i];
  return NULL;
}

const ota_coap_opt_t *ota_coap_find(const ota_coap_msg_t *m, uint32_t num) {
  return ota_coap_find_nth(m, num, 0);
}

size_t ota_coap_count(const ota_coap_msg_t *m, uint32_t num) {
  size_t c = 0;
  for (size_t i = 0; m && i < m->nopt && i < OTA_COAP_MAX_OPTIONS; i++)
    c += m->opt[i].num == num;
  return c;
}

const ota_coap_opt_t *ota_coap_uri_path(const ota_coap_msg_t *m, size_t n) {
  return ota_coap_find_nth(m, OTA_COAP_OPT_URI_PATH, n);
}

const ota_coap_opt_t *ota_coap_uri_query(const ota_coap_msg_t *m, size_t n) {
  return ota_coap_find_nth(m, OTA_COAP_OPT_URI_QUERY, n);
}

uint32_t ota_coap_opt_uint(const ota_coap_opt_t *o) {
  if (!o || o->len > 4)
    return 0;
  uint32_t v = 0;
  for (uint32_t i = 0; i < o->len; i++)
    v = (v << 8) | o->val[i];
  return v;
}

bool ota_coap_is_request(uint8_t code) {
  return OTA_COAP_CODE_CLASS(code) == 0 && OTA_COAP_CODE_DETAIL(code) != 0;
}

bool ota_coap_is_response(uint8_t code) {
  uint8_t c = OTA_COAP_CODE_CLASS(code);
  return c >= 2 && c <= 5;
}

const char *ota_coap_type_name(uint8_t type) {
  static const char *const names[] = {"CON", "NON", "ACK", "RST"};
  return type < 4 ? names[type] : "?";
}

const char *ota_coap_code_name(uint8_t code) {
  switch (code) {
  case OTA_COAP_EMPTY:
    return "EMPTY";
  case OTA_COAP_GET:
    return "GET";
  case OTA_COAP_POST:
    return "POST";
  case OTA_COAP_PUT:
    return "PUT";
  case OTA_COAP_DELETE:
    return "DELETE";
  case OTA_COAP_CREATED:
    return "Created";
  case OTA_COAP_DELETED:
    return "Deleted";
  case OTA_COAP_VALID:
    return "Valid";
  case OTA_COAP_CHANGED:
    return "Changed";
  case OTA_COAP_CONTENT:
    return "Content";
  case OTA_COAP_BAD_REQUEST:
    return "Bad Request";
  case OTA_COAP_UNAUTHORIZED:
    return "Unauthorized";
  case OTA_COAP_NOT_FOUND:
    return "Not Found";
  case OTA_COAP_NOT_ALLOWED:
    return "Method Not Allowed";
  case OTA_COAP_INTERNAL_ERROR:
    return "Internal Server Error";
  case OTA_COAP_NOT_IMPLEMENTED:
    return "Not Implemented";
  case OTA_COAP_SERVICE_UNAVAILABLE:
    return "Service Unavailable";
  default:
    return "";
  }
}

char *ota_coap_code_str(uint8_t code, char out[5]) {
  out[0] = (char)('0' + OTA_COAP_CODE_CLASS(code));
  out[1] = '.';
  out[2] = (char)('0' + OTA_COAP_CODE_DETAIL(code) / 10);
  out[3] = (char)('0' + OTA_COAP_CODE_DETAIL(code) % 10);
  out[4] = 0;
  return out;
}

char *ota_coap_summary(const ota_coap_msg_t *m, char *out, size_t cap) {
  if (!out || cap == 0)
    return out;
  char cs[5], tok[2 * OTA_COAP_MAX_TOKEN + 1] = "-", path[48] = "";
  const char *name = ota_coap_code_name(m->code);
  for (size_t i = 0; i < m->tkl && i < OTA_COAP_MAX_TOKEN; i++)
    snprintf(tok + 2 * i, 3, "%02x", m->token[i]);
  size_t pl = 0;
  for (size_t i = 0; i < m->nopt && i < OTA_COAP_MAX_OPTIONS; i++) {
    const ota_coap_opt_t *o = &m->opt[i];
    if (o->num != OTA_COAP_OPT_URI_PATH)
      continue;
    int w = snprintf(path + pl, sizeof(path) - pl, "/%.*s",
                     (int)(o->len > 32 ? 32 : o->len), (const char *)o->val);
    if (w < 0 || (size_t)w >= sizeof(path) - pl)
      break;
    pl += (size_t)w;
  }
  snprintf(out, cap, "%s %s%s%s mid=0x%04x tok=%s path=%s opts=%zu payload=%zu",
           ota_coap_type_name(m->type), ota_coap_code_str(m->code, cs),
           *name ? " " : "", name, m->mid, tok, pl ? path : "-", m->nopt,
           m->payload_len);
  return out;
}
