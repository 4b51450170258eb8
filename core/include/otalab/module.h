/* The Electron module binary (.bin) format: 24-byte module_info_t header,
 * 40-byte suffix with SHA-256, big-endian zlib CRC-32. Source:
 * PROTOCOL.md 4.1-4.6.
 *
 * Layout of a module file of N bytes (all integers little-endian except the
 * CRC):
 *
 *   0      [vector table, 0x184 bytes]   bootloader, s/1, s/2 only
 *   H      module_info_t (24 bytes)      H = 0x184 (b/0, s/1, s/2) or 0 (s/3,
 * u/1) H+24   code / data ... N-48   FF FF FF FF                   linker
 * filler N-44   product id (2), product version (2), reserved (2) N-38 SHA-256
 * of bytes [0, N-38) N-6    suffix size = 40 (2) N-4    CRC-32 (zlib) of bytes
 * [0, N-4), stored BIG-endian
 *
 * and the header says end = start + N - 4.
 *
 * Ownership: ota_module_parse() returns a view: ota_module_t points into the
 * caller's buffer, which must outlive it. Builders write into caller buffers.
 */
#ifndef OTALAB_MODULE_H
#define OTALAB_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "otalab/electron.h"

#define OTA_MODULE_HDR_SIZE 24u
#define OTA_MODULE_SUFFIX_SIZE                                                 \
  40u                            /* module_info_suffix_t + product id/version */
#define OTA_MODULE_TAIL_SIZE 48u /* FFFFFFFF filler + 40-byte suffix + CRC */
#define OTA_MODULE_MIN_SIZE (OTA_MODULE_HDR_SIZE + OTA_MODULE_TAIL_SIZE)
#define OTA_MODULE_PRODUCT_NONE 0xFFFFu

/* The 24-byte module_info_t (PROTOCOL.md 4.1). */
typedef struct {
  uint32_t start; /* absolute flash address of the module's first byte */
  uint32_t end;   /* exclusive; the CRC sits here; file length = end-start+4 */
  uint8_t reserved;  /* byte 8 */
  uint8_t flags;     /* byte 9; always 0 on Electron */
  uint16_t version;  /* module version */
  uint16_t platform; /* 10 for Electron */
  uint8_t func;      /* ota_fn_t */
  uint8_t index;
  ota_modref_t dep1;
  ota_modref_t dep2; /* reserved3 (0) up to 0.6.x */
} ota_module_info_t;

/* The suffix read backwards from the end of the file (PROTOCOL.md 4.3). */
typedef struct {
  uint16_t product_id;      /* 0xFFFF = none */
  uint16_t product_version; /* 0xFFFF = none */
  uint16_t reserved;
  uint8_t sha256[32]; /* as stored */
  uint16_t size;      /* suffix size field: 40 on Electron */
} ota_module_suffix_t;

/* A parsed module: a view of the caller's buffer plus computed checksums. */
typedef struct {
  const uint8_t *buf; /* the caller's bytes (not owned) */
  size_t len;
  size_t hdr_offset; /* where module_info_t was found */
  ota_module_info_t info;
  ota_module_suffix_t suffix;
  uint32_t crc_stored;         /* last 4 bytes, big-endian */
  uint32_t crc_computed;       /* zlib CRC-32 of [0, len-4) */
  uint8_t sha256_computed[32]; /* SHA-256 of [0, len-38) */
} ota_module_t;

/* Locate the header and read header, suffix and checksums of a module file.
 * The header is probed like binary-version-reader does: offsets 0, 0x200,
 * 0x184, 0xC0, 0x10C, then every 4 bytes up to 8 KB; each candidate is scored
 * and the first full-score one (or else the best) wins. Unlike
 * binary-version-reader, a header whose end lies beyond the file, or whose
 * function is none, still qualifies, so that ota_module_validate() can name
 * those defects. `out` is a view into `buf`. Returns 0, OTA_EINVAL (NULL args),
 * OTA_ETRUNC (shorter than a header plus suffix, 72 bytes) or OTA_EHEADER (no
 * plausible header). Does not judge validity: see ota_module_validate(). */
int ota_module_parse(const uint8_t *buf, size_t len, ota_module_t *out);

/* As ota_module_parse(), but without computing the CRC-32 and SHA-256 over the
 * file: crc_computed and sha256_computed are left zero. For callers that only
 * need the header and suffix of a module already verified (the device model
 * reads its flash slots many times per boot and per Describe). */
int ota_module_parse_header(const uint8_t *buf, size_t len, ota_module_t *out);

/* Every defect ota_module_validate() can report, one bit each. */
#define OTA_MODULE_DEFECTS(X)                                                  \
  X(OTA_MODDEF_CRC, 0x0001u, "crc", OTA_ECRC)                                  \
  X(OTA_MODDEF_SHA, 0x0002u, "sha256", OTA_ESHA)                               \
  X(OTA_MODDEF_PLATFORM, 0x0004u, "platform", OTA_EPLATFORM)                   \
  X(OTA_MODDEF_TRUNCATED, 0x0008u, "truncated", OTA_ETRUNC)                    \
  X(OTA_MODDEF_SIZE, 0x0010u, "size", OTA_ESIZE)                               \
  X(OTA_MODDEF_FUNC, 0x0020u, "function", OTA_EFUNC)                           \
  X(OTA_MODDEF_DEP, 0x0040u, "dependency", OTA_EDEP)                           \
  X(OTA_MODDEF_TOOBIG, 0x0080u, "too-big", OTA_ETOOBIG)                        \
  X(OTA_MODDEF_ADDR, 0x0100u, "address", OTA_EADDR)                            \
  X(OTA_MODDEF_OFFSET, 0x0200u, "header-offset", OTA_EHEADER)                  \
  X(OTA_MODDEF_SUFFIX, 0x0400u, "suffix", OTA_EPARSE)

typedef enum {
#define OTA_MODDEF_ENUM(name, bit, tag, err) name = bit,
  OTA_MODULE_DEFECTS(OTA_MODDEF_ENUM)
#undef OTA_MODDEF_ENUM
} ota_module_defect_t;

#define OTA_MODULE_MAX_DEFECTS 16
#define OTA_MODULE_MSG_LEN 200

/* The result of validation: a bitmask plus one message per defect, in the order
 * of the OTA_MODULE_DEFECTS list. */
typedef struct {
  uint32_t defects; /* OR of ota_module_defect_t */
  int n;            /* entries in items[] */
  struct {
    ota_module_defect_t defect;
    int err; /* matching OTA_E* code */
    char msg[OTA_MODULE_MSG_LEN];
  } items[OTA_MODULE_MAX_DEFECTS];
} ota_module_report_t;

/* Check a parsed module of a file of `len` bytes (normally m->len) and report
 * every defect separately:
 *  - CRC-32 stored vs computed; SHA-256 stored vs computed;
 *  - platform not 10;
 *  - len < end-start+4 (truncated) or len > end-start+4 (size disagrees);
 *  - function none (0) or unknown (> 8);
 *  - a dependency with function none but a non-zero index or version, or an
 *    unknown dependency function;
 *  - module (file or header extent) larger than the 128 KB OTA staging area;
 *  - start address not the slot of its function/index (PROTOCOL.md 4.4), the
 *    module running past its slot, or a function/index with no Electron slot;
 *  - header not at the offset its function uses (0x184 for b/0, s/1, s/2; 0 for
 *    s/3, u/1);
 *  - suffix size field not 40 (or 36, the pre-product-id suffix).
 * `rep` is overwritten. Returns 0 when there is no defect, else the OTA_E* code
 * of the first defect. */
int ota_module_validate(const ota_module_t *m, size_t len,
                        ota_module_report_t *rep);

/* Short tag of one defect bit ("crc", "sha256", ...); "?" for others. */
const char *ota_module_defect_tag(uint32_t defect);

/* What ota_module_build() makes. */
typedef struct {
  uint8_t func; /* ota_fn_t */
  uint8_t index;
  uint16_t version;
  uint16_t platform; /* normally OTA_PLATFORM_ELECTRON */
  uint32_t start;    /* absolute start address */
  uint32_t size;     /* whole file size, CRC included */
  ota_modref_t deps[2];
  uint16_t product_id;      /* OTA_MODULE_PRODUCT_NONE for none */
  uint16_t product_version; /* OTA_MODULE_PRODUCT_NONE for none */
  uint8_t flags;
  uint32_t seed;  /* mixed with func/index/version to derive the filler bytes */
  int hdr_offset; /* -1: the function's usual offset (ota_module_hdr_offset) */
} ota_module_spec_t;

/* A spec with Electron defaults for (func, index, version): platform 10, the
 * slot address of that module, size 4096, no dependencies, product id/version
 * none, seed 0, usual header offset. Cannot fail. */
void ota_module_spec_init(ota_module_spec_t *spec, uint8_t func, uint8_t index,
                          uint16_t version);

/* The header offset a module of that function/index uses on Electron:
 * 0x184 for bootloader, s/1 and s/2; 0 otherwise. */
size_t ota_module_hdr_offset(uint8_t func, uint8_t index);

/* The slot start address for (func, index) on Electron (>= 0.5.3-rc.2 layout),
 * and its size through *slot_size (may be NULL). Returns 0 if there is no such
 * slot. */
uint32_t ota_module_slot(uint8_t func, uint8_t index, uint32_t *slot_size);

/* Write a module in the real format into buf[0..cap): a vector table (initial
 * SP 0x20020000, handlers pointing into the module) when the header sits at
 * 0x184, the header (end = start + size - 4), deterministic xorshift filler,
 * the FFFFFFFF filler, product id/version, SHA-256, suffix size 40 and the
 * big-endian CRC-32. The same spec always gives the same bytes. *len =
 * spec->size on success. Returns 0, OTA_EINVAL (size too small for header and
 * suffix, header offset not 4-aligned or overlapping the suffix) or OTA_ENOBUFS
 * (cap < size). */
int ota_module_build(const ota_module_spec_t *spec, uint8_t *buf, size_t cap,
                     size_t *len);

/* Recompute and store the SHA-256 and then the CRC-32 of a module image in
 * place (after a deliberate edit). Returns 0 or OTA_ETRUNC (len < 48). */
int ota_module_refresh_integrity(uint8_t *buf, size_t len);

/* Only recompute the CRC-32 (leaving a stale SHA-256 in place). */
int ota_module_refresh_crc(uint8_t *buf, size_t len);

#endif
