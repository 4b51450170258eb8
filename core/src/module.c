/* Electron module binaries: parse, validate and build the module_info_t header,
 * suffix, SHA-256 and CRC-32. Source: PROTOCOL.md 4 (Device OS module_info.h,
 * module_end.ld, module.mk; binary-version-reader HalModuleParser.js). */
#include "otalab/module.h"

#include <mbedtls/sha256.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "otalab/crc32.h"
#include "otalab/err.h"

#define FN_MAX_KNOWN OTA_FN_RADIO
#define FLASH_BASE 0x08000000u
#define FLASH_END 0x08100000u /* 1 MB internal flash */
#define MODULE_FLAGS_KNOWN 0x07u
#define INITIAL_SP 0x20020000u /* top of the STM32F205's 128 KB SRAM */
#define VECTOR_WORDS (OTA_HDR_OFFSET_VECTORS / 4u)
#define PREFIX_SCAN_LIMIT 8192u

static uint16_t rd16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
}

static void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void read_modref(const uint8_t *p, ota_modref_t *r) {
  r->func = p[0];
  r->index = p[1];
  r->version = rd16(p + 2);
}

static void read_info(const uint8_t *p, ota_module_info_t *in) {
  in->start = rd32(p);
  in->end = rd32(p + 4);
  in->reserved = p[8];
  in->flags = p[9];
  in->version = rd16(p + 10);
  in->platform = rd16(p + 12);
  in->func = p[14];
  in->index = p[15];
  read_modref(p + 16, &in->dep1);
  read_modref(p + 20, &in->dep2);
}

size_t ota_module_hdr_offset(uint8_t func, uint8_t index) {
  if (func == OTA_FN_BOOTLOADER)
    return OTA_HDR_OFFSET_VECTORS;
  if (func == OTA_FN_SYSTEM && (index == 1 || index == 2))
    return OTA_HDR_OFFSET_VECTORS;
  return 0;
}

uint32_t ota_module_slot(uint8_t func, uint8_t index, uint32_t *slot_size) {
  uint32_t addr = 0, size = OTA_SLOT_SIZE;
  if (func == OTA_FN_BOOTLOADER && index == 0) {
    addr = OTA_ADDR_BOOTLOADER;
    size = OTA_SLOT_BOOTLOADER_SIZE;
  } else if (func == OTA_FN_SYSTEM && index == 1) {
    addr = OTA_ADDR_SYSTEM1;
  } else if (func == OTA_FN_SYSTEM && index == 2) {
    addr = OTA_ADDR_SYSTEM2;
  } else if (func == OTA_FN_SYSTEM && index == 3) {
    addr = OTA_ADDR_SYSTEM3;
  } else if (func == OTA_FN_USER && index == 1) {
    addr = OTA_ADDR_USER;
  }
  if (slot_size)
    *slot_size = addr ? size : 0;
  return addr;
}

static int dep_sane(const ota_modref_t *d) {
  return d->func != OTA_FN_NONE || (d->index == 0 && d->version == 0);
}

/* Plausibility score of a header candidate, in the spirit of
 * binary-version-reader's _validateModulePrefix but tolerant of a file shorter
 * than the header claims (we want to report truncation, not miss the header).
 * 0 = impossible. */
#define SCORE_FULL 10
static int score_prefix(const uint8_t *buf, size_t len, size_t off) {
  ota_module_info_t in;
  if (off + OTA_MODULE_HDR_SIZE > len)
    return 0;
  read_info(buf + off, &in);
  if (in.end <= in.start)
    return 0;
  int score = 1;
  score += in.platform == OTA_PLATFORM_ELECTRON;
  score += in.func != OTA_FN_NONE && in.func <= FN_MAX_KNOWN;
  score += in.dep1.func <= FN_MAX_KNOWN;
  score += in.dep2.func <= FN_MAX_KNOWN;
  score += dep_sane(&in.dep1) && dep_sane(&in.dep2);
  score += (uint64_t)in.end - in.start + 4 == len;
  score += (in.flags & ~MODULE_FLAGS_KNOWN) == 0;
  score += in.start >= FLASH_BASE && in.end <= FLASH_END;
  score += off == ota_module_hdr_offset(in.func, in.index);
  return score;
}

static size_t find_prefix(const uint8_t *buf, size_t len, int *best_score) {
  static const size_t preferred[] = {0, 0x200, 0x184, 0xC0, 0x10C};
  size_t best = 0;
  int bs = 0;
  for (size_t i = 0; i < sizeof preferred / sizeof preferred[0]; i++) {
    int s = score_prefix(buf, len, preferred[i]);
    if (s == SCORE_FULL) {
      *best_score = s;
      return preferred[i];
    }
    if (s > bs) {
      bs = s;
      best = preferred[i];
    }
  }
  for (size_t off = 4; off <= PREFIX_SCAN_LIMIT; off += 4) {
    if (off == 0x200 || off == 0x184 || off == 0xC0 || off == 0x10C)
      continue;
    if (off + OTA_MODULE_HDR_SIZE + OTA_MODULE_TAIL_SIZE > len)
      break;
    int s = score_prefix(buf, len, off);
    if (s == SCORE_FULL) {
      *best_score = s;
      return off;
    }
    if (s > bs) {
      bs = s;
      best = off;
    }
  }
  *best_score = bs;
  return best;
}

/* Below this a candidate is noise rather than a damaged header. */
#define SCORE_MIN 6

static int parse(const uint8_t *buf, size_t len, ota_module_t *out,
                 int integrity) {
  if (!buf || !out)
    return OTA_EINVAL;
  memset(out, 0, sizeof *out);
  if (len < OTA_MODULE_MIN_SIZE)
    return OTA_ETRUNC;
  int score;
  size_t off = find_prefix(buf, len, &score);
  if (score < SCORE_MIN)
    return OTA_EHEADER;
  out->buf = buf;
  out->len = len;
  out->hdr_offset = off;
  read_info(buf + off, &out->info);

  const uint8_t *crcp = buf + len - 4;
  out->crc_stored = ((uint32_t)crcp[0] << 24) | ((uint32_t)crcp[1] << 16) |
                    ((uint32_t)crcp[2] << 8) | crcp[3];
  out->suffix.size = rd16(buf + len - 6);
  memcpy(out->suffix.sha256, buf + len - 38, 32);
  out->suffix.reserved = rd16(buf + len - 40);
  out->suffix.product_version = rd16(buf + len - 42);
  out->suffix.product_id = rd16(buf + len - 44);

  if (integrity) {
    out->crc_computed = ota_crc32(buf, len - 4);
    mbedtls_sha256_ret(buf, len - 38, out->sha256_computed, 0);
  }
  return 0;
}

int ota_module_parse(const uint8_t *buf, size_t len, ota_module_t *out) {
  return parse(buf, len, out, 1);
}

int ota_module_parse_header(const uint8_t *buf, size_t len, ota_module_t *out) {
  return parse(buf, len, out, 0);
}

const char *ota_module_defect_tag(uint32_t defect) {
#define OTA_MODDEF_TAG(name, bit, tag, err)                                    \
  if (defect == bit)                                                           \
    return tag;
  OTA_MODULE_DEFECTS(OTA_MODDEF_TAG)
#undef OTA_MODDEF_TAG
  return "?";
}

static int defect_err(ota_module_defect_t d) {
#define OTA_MODDEF_ERR(name, bit, tag, err)                                    \
  if (d == bit)                                                                \
    return err;
  OTA_MODULE_DEFECTS(OTA_MODDEF_ERR)
#undef OTA_MODDEF_ERR
  return OTA_EINVAL;
}

static void add(ota_module_report_t *rep, ota_module_defect_t d,
                const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void add(ota_module_report_t *rep, ota_module_defect_t d,
                const char *fmt, ...) {
  rep->defects |= d;
  if (rep->n >= OTA_MODULE_MAX_DEFECTS)
    return;
  va_list ap;
  va_start(ap, fmt);
  rep->items[rep->n].defect = d;
  rep->items[rep->n].err = defect_err(d);
  vsnprintf(rep->items[rep->n].msg, OTA_MODULE_MSG_LEN, fmt, ap);
  va_end(ap);
  rep->n++;
}

static void hex(char *out, const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = 0;
}

static void check_dep(ota_module_report_t *rep, int which,
                      const ota_modref_t *d) {
  if (d->func == OTA_FN_NONE && (d->index || d->version))
    add(rep, OTA_MODDEF_DEP,
        "dependency %d has function none but index %u and version %u "
        "(an empty dependency must be all zero)",
        which, d->index, d->version);
  else if (d->func > FN_MAX_KNOWN)
    add(rep, OTA_MODDEF_DEP, "dependency %d has unknown function %u", which,
        d->func);
}

int ota_module_validate(const ota_module_t *m, size_t len,
                        ota_module_report_t *rep) {
  if (!m || !rep)
    return OTA_EINVAL;
  memset(rep, 0, sizeof *rep);
  const ota_module_info_t *in = &m->info;
  uint64_t declared = (uint64_t)in->end - in->start + 4;
  if (in->end <= in->start)
    declared = 0;

  if (m->crc_stored != m->crc_computed)
    add(rep, OTA_MODDEF_CRC, "CRC-32 mismatch: stored 0x%08x, computed 0x%08x",
        m->crc_stored, m->crc_computed);
  if (memcmp(m->suffix.sha256, m->sha256_computed, 32)) {
    char a[65], b[65];
    hex(a, m->suffix.sha256, 32);
    hex(b, m->sha256_computed, 32);
    add(rep, OTA_MODDEF_SHA, "SHA-256 mismatch: stored %s, computed %s", a, b);
  }
  if (in->platform != OTA_PLATFORM_ELECTRON)
    add(rep, OTA_MODDEF_PLATFORM,
        "wrong platform: module is for platform %u, expected %u (electron)",
        in->platform, OTA_PLATFORM_ELECTRON);
  if (declared == 0)
    add(rep, OTA_MODDEF_SIZE, "header end 0x%08x is not after start 0x%08x",
        in->end, in->start);
  else if (len < declared)
    add(rep, OTA_MODDEF_TRUNCATED,
        "truncated: file has %zu bytes, header says %llu "
        "(end 0x%08x - start 0x%08x + 4)",
        len, (unsigned long long)declared, in->end, in->start);
  else if (len > declared)
    add(rep, OTA_MODDEF_SIZE,
        "size disagrees with header: file has %zu bytes, header says %llu "
        "(end 0x%08x - start 0x%08x + 4)",
        len, (unsigned long long)declared, in->end, in->start);
  if (in->func == OTA_FN_NONE)
    add(rep, OTA_MODDEF_FUNC, "module function is none (0)");
  else if (in->func > FN_MAX_KNOWN)
    add(rep, OTA_MODDEF_FUNC, "unknown module function %u", in->func);
  check_dep(rep, 1, &in->dep1);
  check_dep(rep, 2, &in->dep2);
  uint64_t extent = declared > len ? declared : len;
  if (extent > OTA_STAGING_SIZE)
    add(rep, OTA_MODDEF_TOOBIG,
        "module is %llu bytes, larger than the %u-byte OTA staging area",
        (unsigned long long)extent, OTA_STAGING_SIZE);

  uint32_t slot_size;
  uint32_t slot = ota_module_slot(in->func, in->index, &slot_size);
  if (!slot)
    add(rep, OTA_MODDEF_ADDR, "no Electron flash slot for %s module %c/%u",
        ota_fn_name(in->func), ota_fn_letter(in->func), in->index);
  else if (in->start != slot)
    add(rep, OTA_MODDEF_ADDR,
        "start address 0x%08x is not the %c/%u slot 0x%08x", in->start,
        ota_fn_letter(in->func), in->index, slot);
  else if (declared > slot_size)
    add(rep, OTA_MODDEF_ADDR,
        "module 0x%08x..0x%08x runs past its %u-byte %c/%u slot", in->start,
        in->end, slot_size, ota_fn_letter(in->func), in->index);
  if (slot) {
    size_t want = ota_module_hdr_offset(in->func, in->index);
    if (m->hdr_offset != want)
      add(rep, OTA_MODDEF_OFFSET,
          "module header at offset 0x%zx, %c/%u modules carry it at 0x%zx",
          m->hdr_offset, ota_fn_letter(in->func), in->index, want);
  }
  if (m->suffix.size != OTA_MODULE_SUFFIX_SIZE && m->suffix.size != 36)
    add(rep, OTA_MODDEF_SUFFIX, "suffix size field is %u, expected %u",
        m->suffix.size, OTA_MODULE_SUFFIX_SIZE);
  return rep->n ? rep->items[0].err : 0;
}

void ota_module_spec_init(ota_module_spec_t *spec, uint8_t func, uint8_t index,
                          uint16_t version) {
  memset(spec, 0, sizeof *spec);
  spec->func = func;
  spec->index = index;
  spec->version = version;
  spec->platform = OTA_PLATFORM_ELECTRON;
  spec->start = ota_module_slot(func, index, NULL);
  spec->size = 4096;
  spec->product_id = OTA_MODULE_PRODUCT_NONE;
  spec->product_version = OTA_MODULE_PRODUCT_NONE;
  spec->hdr_offset = -1;
}

/* xorshift32 seeded through a splitmix-style finaliser so that neighbouring
 * (func, index, version, seed) tuples give unrelated streams. */
static uint32_t prng_seed(const ota_module_spec_t *s) {
  uint64_t z = ((uint64_t)s->seed << 32) ^ ((uint64_t)s->func << 24) ^
               ((uint64_t)s->index << 16) ^ s->version;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  uint32_t x = (uint32_t)(z ^ (z >> 32));
  return x ? x : 0x6D2B79F5u;
}

static uint32_t xorshift32(uint32_t *x) {
  uint32_t v = *x;
  v ^= v << 13;
  v ^= v >> 17;
  v ^= v << 5;
  return *x = v;
}

int ota_module_build(const ota_module_spec_t *spec, uint8_t *buf, size_t cap,
                     size_t *len) {
  if (!spec || !buf || !len)
    return OTA_EINVAL;
  size_t hdr = spec->hdr_offset < 0
                   ? ota_module_hdr_offset(spec->func, spec->index)
                   : (size_t)spec->hdr_offset;
  size_t size = spec->size;
  if (hdr % 4 || size < hdr + OTA_MODULE_HDR_SIZE + OTA_MODULE_TAIL_SIZE)
    return OTA_EINVAL;
  if (cap < size)
    return OTA_ENOBUFS;

  size_t body = size - OTA_MODULE_TAIL_SIZE;
  uint32_t x = prng_seed(spec);
  for (size_t i = 0; i < body; i += 4) {
    uint32_t v = xorshift32(&x);
    for (size_t k = 0; k < 4 && i + k < body; k++)
      buf[i + k] = (uint8_t)(v >> (8 * k));
  }

  if (hdr >= OTA_HDR_OFFSET_VECTORS) {
    /* Cortex-M vector table: initial SP, then Thumb handler addresses inside
     * the module's code; entries 7-10 and 13 are reserved (zero). */
    uint32_t code = spec->start + (uint32_t)hdr + OTA_MODULE_HDR_SIZE;
    uint32_t span = (uint32_t)(body - hdr - OTA_MODULE_HDR_SIZE);
    wr32(buf, INITIAL_SP);
    for (uint32_t i = 1; i < VECTOR_WORDS; i++) {
      uint32_t v = 0;
      if (i == 1)
        v = code | 1u;
      else if (!((i >= 7 && i <= 10) || i == 13))
        v = (code + (span > 2 ? (xorshift32(&x) % span) & ~1u : 0)) | 1u;
      wr32(buf + 4 * i, v);
    }
  }

  uint8_t *h = buf + hdr;
  wr32(h, spec->start);
  wr32(h + 4, spec->start + (uint32_t)size - 4);
  h[8] = 0;
  h[9] = spec->flags;
  wr16(h + 10, spec->version);
  wr16(h + 12, spec->platform);
  h[14] = spec->func;
  h[15] = spec->index;
  for (int d = 0; d < 2; d++) {
    h[16 + 4 * d] = spec->deps[d].func;
    h[17 + 4 * d] = spec->deps[d].index;
    wr16(h + 18 + 4 * d, spec->deps[d].version);
  }

  uint8_t *t = buf + body;
  memset(t, 0xFF, 4);
  wr16(t + 4, spec->product_id);
  wr16(t + 6, spec->product_version);
  wr16(t + 8, 0);
  memset(t + 10, 0, 32);
  wr16(t + 42, OTA_MODULE_SUFFIX_SIZE);
  ota_module_refresh_integrity(buf, size);
  *len = size;
  return 0;
}

int ota_module_refresh_crc(uint8_t *buf, size_t len) {
  if (!buf)
    return OTA_EINVAL;
  if (len < OTA_MODULE_TAIL_SIZE)
    return OTA_ETRUNC;
  uint32_t crc = ota_crc32(buf, len - 4);
  uint8_t *p = buf + len - 4;
  p[0] = (uint8_t)(crc >> 24);
  p[1] = (uint8_t)(crc >> 16);
  p[2] = (uint8_t)(crc >> 8);
  p[3] = (uint8_t)crc;
  return 0;
}

int ota_module_refresh_integrity(uint8_t *buf, size_t len) {
  if (!buf)
    return OTA_EINVAL;
  if (len < OTA_MODULE_TAIL_SIZE)
    return OTA_ETRUNC;
  mbedtls_sha256_ret(buf, len - 38, buf + len - 38, 0);
  return ota_module_refresh_crc(buf, len);
}
