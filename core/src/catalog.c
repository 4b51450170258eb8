/* The Electron release catalogue: loads and validates
 * fixtures/catalog/electron.json. Source of the data:
 * PROTOCOL.md 2.3-2.5, 3.1, 4.4, 4.6, 5, 6 (see the JSON). */
#include "otalab/catalog.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otalab/err.h"

void ota_catalog_init(ota_catalog_t *cat) {
  if (cat)
    memset(cat, 0, sizeof *cat);
}

void ota_catalog_free(ota_catalog_t *cat) {
  if (!cat)
    return;
  free(cat->releases);
  free(cat->links);
  memset(cat, 0, sizeof *cat);
}

/* "0.4.8-rc.6" -> 0, 4, 8, "rc.6". Returns 0 or -1. */
static int parse_semver(const char *name, int *maj, int *min, int *pat,
                        char *pre, size_t prelen) {
  int n = 0;
  if (sscanf(name, "%d.%d.%d%n", maj, min, pat, &n) != 3)
    return -1;
  if (name[n] == '\0') {
    pre[0] = '\0';
    return 0;
  }
  if (name[n] != '-' || strlen(name + n + 1) >= prelen || !name[n + 1])
    return -1;
  strcpy(pre, name + n + 1);
  return 0;
}

static int copy_str(char *dst, size_t cap, const char *src) {
  if (!src || strlen(src) >= cap)
    return -1;
  strcpy(dst, src);
  return 0;
}

/* An integer in [lo, hi]; -1 when absent or out of range. */
static long get_int(json_t *obj, const char *key, long lo, long hi) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v))
    return -1;
  json_int_t i = json_integer_value(v);
  return (i < lo || i > hi) ? -1 : (long)i;
}

/* {"f": "s", "n": 1, "v": 21}; n may be a string as in a describe. */
static int parse_ref(json_t *o, ota_modref_t *out) {
  const char *f = json_string_value(json_object_get(o, "f"));
  json_t *n = json_object_get(o, "n");
  long v = get_int(o, "v", 0, 65535);
  long idx = -1;
  if (!f || strlen(f) != 1)
    return OTA_EFUNC;
  int fn = ota_fn_from_letter(f[0]);
  if (fn < 0)
    return OTA_EFUNC;
  if (json_is_integer(n))
    idx = (long)json_integer_value(n);
  else if (json_is_string(n))
    idx = strtol(json_string_value(n), NULL, 10);
  if (idx < 0 || idx > 255 || v < 0)
    return OTA_EPARSE;
  out->func = (uint8_t)fn;
  out->index = (uint8_t)idx;
  out->version = (uint16_t)v;
  return 0;
}

static uint32_t slot_addr(const ota_modref_t *id) {
  if (id->func == OTA_FN_BOOTLOADER)
    return OTA_ADDR_BOOTLOADER;
  if (id->func == OTA_FN_SYSTEM && id->index == 1)
    return OTA_ADDR_SYSTEM1;
  if (id->func == OTA_FN_SYSTEM && id->index == 2)
    return OTA_ADDR_SYSTEM2;
  if (id->func == OTA_FN_SYSTEM && id->index == 3)
    return OTA_ADDR_SYSTEM3;
  if (id->func == OTA_FN_USER)
    return OTA_ADDR_USER;
  return 0;
}

static int parse_module(json_t *jm, const char *rel, ota_cat_module_t *m,
                        char *err, size_t errlen) {
  const char *file = json_string_value(json_object_get(jm, "file"));
  const char *src = json_string_value(json_object_get(jm, "source"));
  json_t *addr = json_object_get(jm, "address");
  json_t *deps = json_object_get(jm, "deps");
  long size = get_int(jm, "size", 1, 0x7fffffff);
  int rc;

  memset(m, 0, sizeof *m);
  if (!file || copy_str(m->file, sizeof m->file, file))
    return ota_errf(err, errlen, OTA_EPARSE,
                    "release %s: a module has no usable \"file\"", rel);
  rc = parse_ref(jm, &m->id);
  if (rc == OTA_EFUNC)
    return ota_errf(err, errlen, rc, "release %s, module %s: unknown function",
                    rel, file);
  if (rc)
    return ota_errf(err, errlen, rc,
                    "release %s, module %s: bad \"n\" or \"v\"", rel, file);
  if (m->id.func != OTA_FN_SYSTEM && m->id.func != OTA_FN_BOOTLOADER)
    return ota_errf(err, errlen, OTA_EFUNC,
                    "release %s, module %s: function '%c' is not a system part "
                    "or bootloader",
                    rel, file, ota_fn_letter(m->id.func));
  if (size < 0)
    return ota_errf(err, errlen, OTA_EPARSE,
                    "release %s, module %s: bad \"size\"", rel, file);
  if ((unsigned long)size > OTA_STAGING_SIZE)
    return ota_errf(
        err, errlen, OTA_ETOOBIG,
        "release %s, module %s: %ld bytes > the %u-byte OTA staging "
        "area",
        rel, file, size, OTA_STAGING_SIZE);
  if (m->id.func == OTA_FN_BOOTLOADER &&
      (unsigned long)size > OTA_SLOT_BOOTLOADER_SIZE)
    return ota_errf(err, errlen, OTA_ETOOBIG,
                    "release %s, module %s: %ld bytes > the %u-byte bootloader "
                    "slot",
                    rel, file, size, OTA_SLOT_BOOTLOADER_SIZE);
  m->size = (uint32_t)size;
  m->start_addr = slot_addr(&m->id);
  if (json_is_string(addr)) {
    m->start_addr = (uint32_t)strtoul(json_string_value(addr), NULL, 0);
  } else if (json_is_integer(addr)) {
    m->start_addr = (uint32_t)json_integer_value(addr);
  }
  if (m->start_addr != slot_addr(&m->id))
    return ota_errf(err, errlen, OTA_EADDR,
                    "release %s, module %s: address 0x%08x is not the slot of "
                    "%c/%u",
                    rel, file, (unsigned)m->start_addr,
                    ota_fn_letter(m->id.func), m->id.index);
  if (deps && !json_is_array(deps))
    return ota_errf(err, errlen, OTA_EPARSE,
                    "release %s, module %s: \"deps\" is not an array", rel,
                    file);
  if (json_array_size(deps) > 2)
    return ota_errf(err, errlen, OTA_EDEP,
                    "release %s, module %s: more than two dependencies", rel,
                    file);
  for (size_t i = 0; i < json_array_size(deps); i++) {
    rc = parse_ref(json_array_get(deps, i), &m->deps[i]);
    if (rc == OTA_EFUNC || (!rc && m->deps[i].func == OTA_FN_NONE))
      return ota_errf(err, errlen, OTA_EFUNC,
                      "release %s, module %s: dependency %zu has an unknown "
                      "function",
                      rel, file, i + 1);
    if (rc)
      return ota_errf(err, errlen, rc,
                      "release %s, module %s: dependency %zu is malformed", rel,
                      file, i + 1);
  }
  if (!src)
    src = "assumed";
  snprintf(m->source, sizeof m->source, "%s", src);
  m->size_assumed = strstr(src, "[BIN]") == NULL || strstr(src, "approx");
  return 0;
}

static int parse_behaviour(json_t *jb, const char *rel, ota_cat_behaviour_t *b,
                           char *err, size_t errlen) {
  const char *d = json_string_value(json_object_get(jb, "describe"));
  const char *r = json_string_value(json_object_get(jb, "refusal_code"));
  const char *u = json_string_value(json_object_get(jb, "updone"));
  long flags = get_int(jb, "hello_flags", 0, 255);
  memset(b, 0, sizeof *b);
  if (!json_is_object(jb) || !d || !r || !u || flags < 0)
    return ota_errf(err, errlen, OTA_EPARSE,
                    "release %s: \"behaviour\" needs hello_flags, describe, "
                    "refusal_code, updone",
                    rel);
  b->hello_flags = (uint8_t)flags;
  if (!strcmp(d, "ack"))
    b->describe = OTA_DESCRIBE_ACK;
  else if (!strcmp(d, "separate"))
    b->describe = OTA_DESCRIBE_SEPARATE;
  else if (!strcmp(d, "post"))
    b->describe = OTA_DESCRIBE_POST;
  else
    return ota_errf(err, errlen, OTA_EPARSE, "release %s: describe form '%s'?",
                    rel, d);
  if (!strcmp(r, "4.00"))
    b->refusal_code = 0x80;
  else if (!strcmp(r, "5.03"))
    b->refusal_code = 0xA3;
  else
    return ota_errf(err, errlen, OTA_EPARSE, "release %s: refusal code '%s'?",
                    rel, r);
  if (!strcmp(u, "none"))
    b->updone = OTA_UPDONE_NONE;
  else if (!strcmp(u, "json"))
    b->updone = OTA_UPDONE_JSON;
  else if (!strcmp(u, "int"))
    b->updone = OTA_UPDONE_INT;
  else
    return ota_errf(err, errlen, OTA_EPARSE, "release %s: updone form '%s'?",
                    rel, u);
  b->device_sends_updone =
      json_is_true(json_object_get(jb, "device_sends_updone"));
  b->move_session = json_is_true(json_object_get(jb, "move_session"));
  b->knows_part3 = json_is_true(json_object_get(jb, "knows_part3"));
  return 0;
}

static int parse_release(json_t *jr, ota_cat_release_t *r, char *err,
                         size_t errlen) {
  const char *name = json_string_value(json_object_get(jr, "name"));
  json_t *mods = json_object_get(jr, "modules");
  const char *notes = json_string_value(json_object_get(jr, "notes"));
  long sv = get_int(jr, "system_version", 1, 65535);
  long bv = get_int(jr, "bootloader_version", 0, 65535);
  long parts = get_int(jr, "parts", 2, 3);
  ota_cat_module_t sys[OTA_CAT_MAX_MODULES], boot;
  int nsys = 0, nboot = 0, rc;

  memset(r, 0, sizeof *r);
  if (!name || copy_str(r->name, sizeof r->name, name) ||
      parse_semver(name, &r->major, &r->minor, &r->patch, r->pre,
                   sizeof r->pre))
    return ota_errf(err, errlen, OTA_EPARSE,
                    "a release has no valid \"name\"%s%s", name ? ": " : "",
                    name ? name : "");
  if (sv < 0 || bv < 0 || parts < 0)
    return ota_errf(err, errlen, OTA_EPARSE,
                    "release %s: needs system_version, bootloader_version and "
                    "parts (2 or 3)",
                    name);
  r->system_version = (uint16_t)sv;
  r->bootloader_version = (uint16_t)bv;
  r->nparts = (int)parts;
  if (!json_is_array(mods) || json_array_size(mods) == 0 ||
      json_array_size(mods) > OTA_CAT_MAX_MODULES)
    return ota_errf(err, errlen, OTA_EPARSE,
                    "release %s: \"modules\" must list 1..%d modules", name,
                    OTA_CAT_MAX_MODULES);
  for (size_t i = 0; i < json_array_size(mods); i++) {
    ota_cat_module_t m;
    rc = parse_module(json_array_get(mods, i), name, &m, err, errlen);
    if (rc)
      return rc;
    for (int k = 0; k < nsys; k++)
      if (sys[k].id.func == m.id.func && sys[k].id.index == m.id.index)
        return ota_errf(err, errlen, OTA_EEXIST,
                        "release %s: module %c/%u listed twice", name,
                        ota_fn_letter(m.id.func), m.id.index);
    if (m.id.func == OTA_FN_BOOTLOADER) {
      if (nboot++)
        return ota_errf(err, errlen, OTA_EEXIST,
                        "release %s: bootloader listed twice", name);
      boot = m;
    } else {
      if (m.id.version != r->system_version)
        return ota_errf(
            err, errlen, OTA_EPARSE,
            "release %s, module %s: version %u != system_version %u", name,
            m.file, m.id.version, r->system_version);
      sys[nsys++] = m;
    }
  }
  if (nsys != r->nparts)
    return ota_errf(err, errlen, OTA_EPARSE,
                    "release %s: %d system parts listed, \"parts\" says %d",
                    name, nsys, r->nparts);
  for (int k = 0; k < nsys; k++)
    r->modules[r->nmodules++] = sys[k];
  if (nboot)
    r->modules[r->nmodules++] = boot;
  for (int k = 0; k < nsys; k++)
    for (int d = 0; d < 2; d++)
      if (sys[k].deps[d].func == OTA_FN_BOOTLOADER)
        r->bootloader_dependency = sys[k].deps[d].version;
  rc = parse_behaviour(json_object_get(jr, "behaviour"), name, &r->behaviour,
                       err, errlen);
  if (rc)
    return rc;
  if (notes)
    snprintf(r->notes, sizeof r->notes, "%s", notes);
  return 0;
}

static int parse_link(json_t *jl, size_t i, ota_link_profile_t *l, char *err,
                      size_t errlen) {
  const char *name = json_string_value(json_object_get(jl, "name"));
  const char *as = json_string_value(json_object_get(jl, "assumption"));
  json_t *down = json_object_get(jl, "down_bps");
  json_t *up = json_object_get(jl, "up_bps");
  json_t *rtt = json_object_get(jl, "rtt_ms");
  json_t *loss = json_object_get(jl, "loss");
  memset(l, 0, sizeof *l);
  if (!name || copy_str(l->name, sizeof l->name, name))
    return ota_errf(err, errlen, OTA_EPARSE, "link %zu: no usable \"name\"", i);
  if (!json_is_number(down) || !json_is_number(up) || !json_is_number(rtt) ||
      !json_is_number(loss))
    return ota_errf(err, errlen, OTA_EPARSE,
                    "link %s: needs down_bps, up_bps, rtt_ms, loss", name);
  l->down_bps = json_number_value(down);
  l->up_bps = json_number_value(up);
  l->rtt_ms = json_number_value(rtt);
  l->loss = json_number_value(loss);
  if (l->down_bps <= 0 || l->up_bps <= 0 || l->rtt_ms < 0 || l->loss < 0 ||
      l->loss >= 1)
    return ota_errf(err, errlen, OTA_EPARSE,
                    "link %s: bandwidths must be > 0, rtt >= 0, 0 <= loss < 1",
                    name);
  snprintf(l->assumption, sizeof l->assumption, "%s", as ? as : "assumed");
  return 0;
}

static int cmp_release(const void *a, const void *b) {
  const ota_cat_release_t *x = a, *y = b;
  return (int)x->system_version - (int)y->system_version;
}

int ota_catalog_load_json(ota_catalog_t *cat, const char *json, size_t len,
                          char *err, size_t errlen) {
  json_error_t jerr;
  json_t *root = NULL, *rels, *links, *ss;
  int rc = 0;

  if (!cat || !json)
    return ota_errf(err, errlen, OTA_EINVAL, "no catalogue");
  ota_catalog_free(cat);
  root = json_loadb(json, len, 0, &jerr);
  if (!root)
    return ota_errf(err, errlen, OTA_EPARSE, "catalogue JSON, line %d: %s",
                    jerr.line, jerr.text);
  if (!json_is_object(root)) {
    rc = ota_errf(err, errlen, OTA_EPARSE, "catalogue is not a JSON object");
    goto out;
  }
  json_t *plat = json_object_get(root, "platform");
  if (plat && json_integer_value(plat) != OTA_PLATFORM_ELECTRON) {
    rc = ota_errf(err, errlen, OTA_EPLATFORM,
                  "catalogue platform %lld is not %d",
                  (long long)json_integer_value(plat), OTA_PLATFORM_ELECTRON);
    goto out;
  }
  rels = json_object_get(root, "releases");
  if (!json_is_array(rels) || json_array_size(rels) == 0) {
    rc = ota_errf(err, errlen, OTA_EPARSE,
                  "catalogue has no \"releases\" array");
    goto out;
  }
  cat->releases = calloc(json_array_size(rels), sizeof *cat->releases);
  if (!cat->releases) {
    rc = ota_errf(err, errlen, OTA_ENOMEM, "out of memory");
    goto out;
  }
  for (size_t i = 0; i < json_array_size(rels); i++) {
    ota_cat_release_t *r = &cat->releases[i];
    rc = parse_release(json_array_get(rels, i), r, err, errlen);
    if (rc)
      goto out;
    for (size_t k = 0; k < i; k++) {
      if (!strcmp(cat->releases[k].name, r->name) ||
          cat->releases[k].system_version == r->system_version) {
        rc = ota_errf(err, errlen, OTA_EEXIST,
                      "release %s: duplicate of %s (name or system version %u)",
                      r->name, cat->releases[k].name, r->system_version);
        goto out;
      }
    }
    cat->nreleases++;
  }
  qsort(cat->releases, cat->nreleases, sizeof *cat->releases, cmp_release);

  links = json_object_get(root, "links");
  if (links && !json_is_array(links)) {
    rc = ota_errf(err, errlen, OTA_EPARSE, "\"links\" is not an array");
    goto out;
  }
  if (json_array_size(links)) {
    cat->links = calloc(json_array_size(links), sizeof *cat->links);
    if (!cat->links) {
      rc = ota_errf(err, errlen, OTA_ENOMEM, "out of memory");
      goto out;
    }
  }
  for (size_t i = 0; i < json_array_size(links); i++) {
    rc = parse_link(json_array_get(links, i), i, &cat->links[i], err, errlen);
    if (rc)
      goto out;
    for (size_t k = 0; k < i; k++)
      if (!strcmp(cat->links[k].name, cat->links[i].name)) {
        rc = ota_errf(err, errlen, OTA_EEXIST, "link %s listed twice",
                      cat->links[i].name);
        goto out;
      }
    cat->nlinks++;
  }

  ss = json_object_get(root, "stepping_stone");
  if (ss) {
    const char *sr = json_string_value(json_object_get(ss, "release"));
    long below = get_int(ss, "below_module_version", 0, 65535);
    if (!sr || below < 0 ||
        copy_str(cat->stepping_stone, sizeof cat->stepping_stone, sr)) {
      rc =
          ota_errf(err, errlen, OTA_EPARSE,
                   "\"stepping_stone\" needs release and below_module_version");
      goto out;
    }
    if (!ota_catalog_find(cat, sr)) {
      rc = ota_errf(err, errlen, OTA_ERELEASE,
                    "stepping_stone: release %s is not in the catalogue", sr);
      goto out;
    }
    cat->stepping_stone_min = (uint16_t)below;
  }
out:
  json_decref(root);
  if (rc)
    ota_catalog_free(cat);
  return rc;
}

int ota_catalog_load_file(ota_catalog_t *cat, const char *path, char *err,
                          size_t errlen) {
  FILE *f;
  char *buf = NULL;
  long n;
  int rc;
  if (!cat || !path)
    return ota_errf(err, errlen, OTA_EINVAL, "no catalogue path");
  f = fopen(path, "rb");
  if (!f)
    return ota_errf(err, errlen, OTA_ENOENT, "%s: cannot open", path);
  if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
    fclose(f);
    return ota_errf(err, errlen, OTA_EIO, "%s: cannot read", path);
  }
  buf = malloc((size_t)n + 1);
  if (!buf) {
    fclose(f);
    return ota_errf(err, errlen, OTA_ENOMEM, "out of memory");
  }
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return ota_errf(err, errlen, OTA_EIO, "%s: short read", path);
  }
  fclose(f);
  rc = ota_catalog_load_json(cat, buf, (size_t)n, err, errlen);
  free(buf);
  return rc;
}

const ota_cat_release_t *ota_catalog_find(const ota_catalog_t *cat,
                                          const char *name) {
  if (!cat || !name)
    return NULL;
  for (size_t i = 0; i < cat->nreleases; i++)
    if (!strcmp(cat->releases[i].name, name))
      return &cat->releases[i];
  int maj, min, pat;
  char pre[12];
  if (parse_semver(name, &maj, &min, &pat, pre, sizeof pre) || pre[0])
    return NULL;
  for (size_t i = 0; i < cat->nreleases; i++) {
    const ota_cat_release_t *r = &cat->releases[i];
    if (r->major == maj && r->minor == min && r->patch == pat)
      return r;
  }
  return NULL;
}

const ota_cat_release_t *ota_catalog_find_sysver(const ota_catalog_t *cat,
                                                 uint16_t system_version) {
  for (size_t i = 0; cat && i < cat->nreleases; i++)
    if (cat->releases[i].system_version == system_version)
      return &cat->releases[i];
  return NULL;
}

const ota_cat_release_t *ota_catalog_find_module(const ota_catalog_t *cat,
                                                 uint8_t func, uint8_t index,
                                                 uint16_t version) {
  for (size_t i = 0; cat && i < cat->nreleases; i++) {
    const ota_cat_module_t *m =
        ota_release_module(&cat->releases[i], func, index);
    if (m && m->id.version == version)
      return &cat->releases[i];
  }
  return NULL;
}

const ota_cat_module_t *ota_release_module(const ota_cat_release_t *rel,
                                           uint8_t func, uint8_t index) {
  for (int i = 0; rel && i < rel->nmodules && i < OTA_CAT_MAX_MODULES; i++)
    if (rel->modules[i].id.func == func && rel->modules[i].id.index == index)
      return &rel->modules[i];
  return NULL;
}

const ota_link_profile_t *ota_catalog_link(const ota_catalog_t *cat,
                                           const char *name) {
  for (size_t i = 0; cat && name && i < cat->nlinks; i++)
    if (!strcmp(cat->links[i].name, name))
      return &cat->links[i];
  return NULL;
}
