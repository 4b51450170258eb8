/* The cloud side's parser of a system describe JSON and binary-version-reader's
 * missing-dependency rule. Source: PROTOCOL.md 3.1, 3.3, 7. */
#include "otalab/describe.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "otalab/err.h"

static int fail(ota_describe_t *out, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(ota_describe_t *out, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->err, sizeof out->err, fmt, ap);
  va_end(ap);
  return code;
}

/* Number in 0..max from a JSON integer (or a real with no fraction, which
 * some JSON writers emit). -1 when it is not. */
static long long json_uint(const json_t *v, long long max) {
  long long x;
  if (json_is_integer(v))
    x = json_integer_value(v);
  else if (json_is_real(v) &&
           json_real_value(v) == (double)(long long)json_real_value(v))
    x = (long long)json_real_value(v);
  else
    return -1;
  return x < 0 || x > max ? -1 : x;
}

/* A module index: a string of digits (as Device OS writes it) or a number. */
static int parse_index(const json_t *v) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    int x = 0;
    if (!*s || strlen(s) > 3)
      return -1;
    for (; *s; s++) {
      if (*s < '0' || *s > '9')
        return -1;
      x = x * 10 + (*s - '0');
    }
    return x <= 255 ? x : -1;
  }
  return (int)json_uint(v, 255);
}

static int parse_func(const json_t *v) {
  if (!json_is_string(v) || strlen(json_string_value(v)) != 1)
    return -1;
  return ota_fn_from_letter(json_string_value(v)[0]);
}

static int copy_opt_str(ota_describe_t *out, json_t *obj, const char *key,
                        char *dst, size_t cap) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return 0;
  if (!json_is_string(v) || strlen(json_string_value(v)) >= cap)
    return fail(out, OTA_EPARSE, "\"%s\": not a string of < %zu chars", key,
                cap);
  strcpy(dst, json_string_value(v));
  return 0;
}

/* Field presence of one module, for the repair rule. */
typedef struct {
  bool f, n, v;
} has_t;

static int parse_dep(ota_describe_t *out, size_t i, size_t k, json_t *d,
                     ota_modref_t *r) {
  if (!json_is_object(d))
    return fail(out, OTA_EPARSE, "m[%zu].d[%zu]: not an object", i, k);
  int f = parse_func(json_object_get(d, "f"));
  int n = parse_index(json_object_get(d, "n"));
  long long v = json_uint(json_object_get(d, "v"), UINT16_MAX);
  if (f < 0)
    return fail(out, OTA_EPARSE, "m[%zu].d[%zu].f: missing or unknown", i, k);
  if (n < 0)
    return fail(out, OTA_EPARSE, "m[%zu].d[%zu].n: missing or not 0..255", i,
                k);
  if (v < 0)
    return fail(out, OTA_EPARSE, "m[%zu].d[%zu].v: missing or not 0..65535", i,
                k);
  r->func = (uint8_t)f;
  r->index = (uint8_t)n;
  r->version = (uint16_t)v;
  return 0;
}

static int parse_module(ota_describe_t *out, size_t i, json_t *o, has_t *has) {
  ota_describe_module_t *m = &out->m[i];
  json_t *v;
  memset(m, 0, sizeof *m);
  if (!json_is_object(o))
    return fail(out, OTA_EPARSE, "m[%zu]: not an object", i);

  v = json_object_get(o, "l");
  if (v) {
    if (!json_is_string(v) || strlen(json_string_value(v)) != 1)
      return fail(out, OTA_EPARSE, "m[%zu].l: not a one-letter string", i);
    m->loc = json_string_value(v)[0];
  } else {
    m->loc = 'm';
  }
  static const struct {
    const char *key;
    long long max;
  } nums[] = {{"s", UINT32_MAX},
              {"vc", UINT16_MAX},
              {"vv", UINT16_MAX},
              {"v", UINT16_MAX},
              {"p", UINT16_MAX}};
  long long val[5];
  for (size_t k = 0; k < 5; k++) {
    v = json_object_get(o, nums[k].key);
    val[k] = 0;
    if (v && (val[k] = json_uint(v, nums[k].max)) < 0)
      return fail(out, OTA_EPARSE, "m[%zu].%s: not a number in 0..%lld", i,
                  nums[k].key, nums[k].max);
  }
  m->size = (uint32_t)val[0];
  m->vc = (uint16_t)val[1];
  m->vv = (uint16_t)val[2];
  m->version = (uint16_t)val[3];
  m->platform = (uint16_t)val[4];

  has->f = (v = json_object_get(o, "f")) != NULL;
  if (has->f) {
    int f = parse_func(v);
    if (f < 0)
      return fail(out, OTA_EPARSE, "m[%zu].f: unknown function", i);
    m->func = (uint8_t)f;
  }
  has->n = (v = json_object_get(o, "n")) != NULL;
  if (has->n) {
    int n = parse_index(v);
    if (n < 0)
      return fail(out, OTA_EPARSE, "m[%zu].n: not an index 0..255", i);
    m->index = (uint8_t)n;
  }
  has->v = json_object_get(o, "v") != NULL;
  m->empty = !has->f && !has->n && !has->v;

  v = json_object_get(o, "u");
  if (v) {
    if (!json_is_string(v) ||
        strlen(json_string_value(v)) > OTA_DESCRIBE_SHA_HEX)
      return fail(out, OTA_EPARSE, "m[%zu].u: not a SHA-256 hex string", i);
    strcpy(m->sha, json_string_value(v));
  }

  v = json_object_get(o, "d");
  if (v) {
    if (!json_is_array(v))
      return fail(out, OTA_EPARSE, "m[%zu].d: not an array", i);
    for (size_t k = 0; k < json_array_size(v); k++) {
      ota_modref_t r;
      int rc = parse_dep(out, i, k, json_array_get(v, k), &r);
      if (rc)
        return rc;
      if (r.func == OTA_FN_NONE || m->ndeps == 2)
        continue; /* "none" is never a requirement; Device OS emits <= 2 */
      m->deps[m->ndeps++] = r;
    }
  }
  return 0;
}

/* binary-version-reader _repairDescribeErrors: main-location modules up to the
 * first user module; a nameless first module is "0", a nameless module after a
 * named one is the next index, a system part at version 0 unless it says so.
 * Empty slots get their index (for display) but stay function none. */
static void repair(ota_describe_t *d, const has_t *has) {
  bool named[OTA_DESCRIBE_MAX_MODULES];
  for (size_t i = 0; i < d->nmodules; i++) {
    ota_describe_module_t *m = &d->m[i];
    named[i] = has[i].n;
    if (m->loc != 'm')
      continue;
    if (has[i].f && m->func == OTA_FN_USER)
      break;
    if (i == 0) {
      if (!has[i].n) {
        m->index = 0;
        named[i] = true;
        m->repaired = !m->empty;
      }
      continue;
    }
    if (named[i - 1] && !has[i].n) {
      m->index = (uint8_t)(d->m[i - 1].index + 1);
      named[i] = true;
      if (m->empty)
        continue;
      m->repaired = true;
      if (!has[i].f)
        m->func = OTA_FN_SYSTEM;
      if (!has[i].v)
        m->version = 0;
    }
  }
}

int ota_describe_parse(const char *json, size_t len, ota_describe_t *out) {
  if (!out)
    return OTA_EINVAL;
  memset(out, 0, sizeof *out);
  if (!json)
    return fail(out, OTA_EINVAL, "no text");

  json_error_t jerr;
  json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  int rc = 0;
  if (!root)
    return fail(out, OTA_EPARSE, "not JSON: %s (line %d, column %d)", jerr.text,
                jerr.line, jerr.column);
  if (!json_is_object(root)) {
    rc = fail(out, OTA_EPARSE, "not a JSON object");
    goto out;
  }
  json_t *p = json_object_get(root, "p");
  if (p) {
    long long x = json_uint(p, UINT16_MAX);
    if (x < 0) {
      rc = fail(out, OTA_EPARSE, "\"p\": not a platform id");
      goto out;
    }
    out->platform = (uint16_t)x;
  }
  if ((rc = copy_opt_str(out, root, "imei", out->imei, sizeof out->imei)) ||
      (rc = copy_opt_str(out, root, "iccid", out->iccid, sizeof out->iccid)) ||
      (rc = copy_opt_str(out, root, "cellfw", out->cellfw, sizeof out->cellfw)))
    goto out;

  json_t *arr = json_object_get(root, "m");
  if (!json_is_array(arr)) {
    rc = fail(out, OTA_EPARSE, "no \"m\" array of modules");
    goto out;
  }
  if (json_array_size(arr) > OTA_DESCRIBE_MAX_MODULES) {
    rc = fail(out, OTA_EFULL, "%zu modules, at most %d", json_array_size(arr),
              OTA_DESCRIBE_MAX_MODULES);
    goto out;
  }
  has_t has[OTA_DESCRIBE_MAX_MODULES];
  out->nmodules = json_array_size(arr);
  for (size_t i = 0; i < out->nmodules; i++)
    if ((rc = parse_module(out, i, json_array_get(arr, i), &has[i])))
      goto out;
  repair(out, has);
  for (size_t i = 0; i < out->nmodules; i++)
    if (out->m[i].empty)
      out->m[i].func = OTA_FN_NONE;

out:
  json_decref(root);
  if (rc) {
    char keep[sizeof out->err];
    memcpy(keep, out->err, sizeof keep);
    memset(out, 0, sizeof *out);
    memcpy(out->err, keep, sizeof keep);
  } else {
    out->json = json;
    out->json_len = len;
  }
  return rc;
}

const ota_describe_module_t *ota_describe_find(const ota_describe_t *d,
                                               uint8_t func, uint8_t index) {
  for (size_t i = 0; d && i < d->nmodules; i++) {
    const ota_describe_module_t *m = &d->m[i];
    if (m->loc == 'm' && !m->empty && m->func == func && m->index == index)
      return m;
  }
  return NULL;
}

/* _walkChain for one requirement: the first module with the same f and n
 * (any location, as binary-version-reader searches); empty slots match
 * nothing. Returns true when the requirement is missing. */
bool ota_describe_dep_missing(const ota_describe_t *d,
                              const ota_modref_t *need) {
  if (!d || !need || need->func == OTA_FN_NONE)
    return false;
  for (size_t i = 0; i < d->nmodules; i++) {
    const ota_describe_module_t *m = &d->m[i];
    if (m->empty || m->func != need->func || m->index != need->index)
      continue;
    return m->version < need->version;
  }
  return true;
}

size_t ota_describe_missing_deps(const ota_describe_t *d, ota_modref_t *out,
                                 size_t cap) {
  ota_modref_t seen[OTA_DESCRIBE_MAX_MODULES * 2];
  size_t n = 0;
  if (!d)
    return 0;
  for (size_t i = 0; i < d->nmodules; i++) {
    const ota_describe_module_t *m = &d->m[i];
    if (m->loc == 'f' || m->empty)
      continue;
    for (int k = 0; k < m->ndeps; k++) {
      const ota_modref_t *need = &m->deps[k];
      if (!ota_describe_dep_missing(d, need))
        continue;
      bool dup = false;
      for (size_t j = 0; j < n && !dup; j++)
        dup = seen[j].func == need->func && seen[j].index == need->index &&
              seen[j].version == need->version;
      if (dup)
        continue;
      if (out && n < cap)
        out[n] = *need;
      seen[n++] = *need;
    }
  }
  return n;
}

bool ota_describe_in_safe_mode(const ota_describe_t *d) {
  if (!d)
    return false;
  for (size_t i = 0; i < d->nmodules; i++) {
    const ota_describe_module_t *m = &d->m[i];
    if (m->loc != 'm' || m->empty)
      continue;
    if ((m->vc & OTA_DESCRIBE_VALID_DEPS) && !(m->vv & OTA_DESCRIBE_VALID_DEPS))
      return true;
    if (m->func == OTA_FN_USER)
      for (int k = 0; k < m->ndeps; k++)
        if (ota_describe_dep_missing(d, &m->deps[k]))
          return true;
  }
  return false;
}

uint16_t ota_describe_system_version(const ota_describe_t *d) {
  uint16_t v = 0;
  int found = 0; /* a part at version 0 (a repaired describe) is the minimum */
  for (uint8_t n = 1; n <= 3; n++) {
    const ota_describe_module_t *m = ota_describe_find(d, OTA_FN_SYSTEM, n);
    if (m && (!found || m->version < v)) {
      v = m->version;
      found = 1;
    }
  }
  return v;
}

size_t ota_describe_to_plan_device(const ota_describe_t *d,
                                   ota_dev_module_t *mods, size_t cap,
                                   int product, ota_plan_device_t *dev) {
  size_t n = 0;
  for (size_t i = 0; d && i < d->nmodules && n < cap; i++) {
    const ota_describe_module_t *m = &d->m[i];
    if (m->loc != 'm' || m->empty)
      continue;
    memset(&mods[n], 0, sizeof mods[n]);
    mods[n].id.func = m->func;
    mods[n].id.index = m->index;
    mods[n].id.version = m->version;
    for (int k = 0; k < m->ndeps; k++)
      mods[n].deps[k] = m->deps[k];
    n++;
  }
  if (dev) {
    memset(dev, 0, sizeof *dev);
    dev->modules = mods;
    dev->nmodules = n;
    dev->platform =
        d && d->platform ? d->platform : (uint16_t)OTA_PLATFORM_ELECTRON;
    dev->product = product;
  }
  return n;
}

const char *ota_modref_str(const ota_modref_t *r, char *buf, size_t cap) {
  if (!cap)
    return buf;
  if (!r)
    snprintf(buf, cap, "?");
  else
    snprintf(buf, cap, "%c/%u v%u", ota_fn_letter(r->func), r->index,
             r->version);
  return buf;
}
