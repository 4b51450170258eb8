/* Names and describe letters of module functions (PROTOCOL.md 3.1, 4.1). */
#include "otalab/electron.h"

static const struct {
  uint8_t fn;
  char letter;
  const char *name;
} fns[] = {
    {OTA_FN_NONE, 'n', "none"},         {OTA_FN_RESOURCE, 'r', "resource"},
    {OTA_FN_BOOTLOADER, 'b', "bootloader"}, {OTA_FN_MONO, 'm', "monolithic"},
    {OTA_FN_SYSTEM, 's', "system"},     {OTA_FN_USER, 'u', "user"},
    {OTA_FN_SETTINGS, 'e', "settings"}, {OTA_FN_NCP, 'c', "ncp"},
    {OTA_FN_RADIO, 'a', "radio"},
};

char ota_fn_letter(uint8_t func) {
  for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (fns[i].fn == func)
      return fns[i].letter;
  return '?';
}

int ota_fn_from_letter(char c) {
  for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (fns[i].letter == c)
      return fns[i].fn;
  return -1;
}

const char *ota_fn_name(uint8_t func) {
  for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++)
    if (fns[i].fn == func)
      return fns[i].name;
  return "unknown";
}
