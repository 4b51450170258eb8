/* Electron (platform 10) constants shared by every core module: module functions,
 * flash layout and OTA limits. Source: ../shared/PROTOCOL.md sections 2.4, 4.1, 4.4. */
#ifndef OTALAB_ELECTRON_H
#define OTALAB_ELECTRON_H

#include <stdint.h>

#define OTA_PLATFORM_ELECTRON 10

/* module_info_t function codes (PROTOCOL.md 4.1). */
typedef enum {
  OTA_FN_NONE = 0,
  OTA_FN_RESOURCE = 1,
  OTA_FN_BOOTLOADER = 2,
  OTA_FN_MONO = 3,
  OTA_FN_SYSTEM = 4,
  OTA_FN_USER = 5,
  OTA_FN_SETTINGS = 6,
  OTA_FN_NCP = 7,
  OTA_FN_RADIO = 8
} ota_fn_t;

/* A dependency or a module identity: function, index, version. */
typedef struct {
  uint8_t func;  /* ota_fn_t */
  uint8_t index;
  uint16_t version;
} ota_modref_t;

/* Electron flash layout (>= 0.5.3-rc.2). */
#define OTA_ADDR_BOOTLOADER 0x08000000u
#define OTA_ADDR_SYSTEM1 0x08020000u
#define OTA_ADDR_SYSTEM2 0x08040000u
#define OTA_ADDR_SYSTEM3 0x08060000u
#define OTA_ADDR_USER 0x08080000u
#define OTA_ADDR_FACTORY 0x080A0000u
#define OTA_ADDR_OTA 0x080C0000u

#define OTA_SLOT_BOOTLOADER_SIZE 16384u
#define OTA_SLOT_SIZE 131072u        /* each system part, user part */
#define OTA_STAGING_SIZE 131072u     /* OTA scratchpad: a module must fit */
#define OTA_CHUNK_SIZE 512u

/* Offset of module_info_t inside the .bin: 0x184 for bootloader, s/1 and s/2
 * (after the vector table), 0 for s/3 and user parts. */
#define OTA_HDR_OFFSET_VECTORS 0x184u

/* Single-letter describe codes for a function ('b','s','u','m','r','c','a','n'). */
char ota_fn_letter(uint8_t func);
/* Inverse of ota_fn_letter; returns -1 for an unknown letter. */
int ota_fn_from_letter(char c);
/* Human name ("bootloader", "system", "user", ...); "unknown" otherwise. */
const char *ota_fn_name(uint8_t func);

#endif
