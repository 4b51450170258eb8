/* The effect queue between core's sans-IO machines and their adapters
 * (DESIGN.md "Sans-IO state machines"): fixed table plus a byte arena. */
#include "otalab/outbox.h"

#include "otalab/err.h"

#include <string.h>

static const char *const fx_names[] = {
#define OTA_FX_NAME(k, n) n,
    OTA_FX_KINDS(OTA_FX_NAME)
#undef OTA_FX_NAME
};

const char *ota_fx_kind_name(ota_fx_kind_t k) {
  return (unsigned)k < OTA_FX_KIND_COUNT ? fx_names[k] : "?";
}

void ota_outbox_init(ota_outbox_t *ob) {
  ob->n = 0;
  ob->used = 0;
}

void ota_outbox_clear(ota_outbox_t *ob) {
  ota_outbox_init(ob);
}

int ota_outbox_push(ota_outbox_t *ob, const ota_fx_t *fx, const void *bytes,
                    size_t len) {
  if (!ob || !fx || (!bytes && len))
    return OTA_EINVAL;
  if (ob->n >= OTA_OUTBOX_MAX_FX || len > sizeof(ob->arena) - ob->used)
    return OTA_ENOBUFS;
  ota_fx_t *e = &ob->fx[ob->n++];
  *e = *fx;
  e->off = ob->used;
  e->len = len;
  if (len)
    memcpy(ob->arena + ob->used, bytes, len);
  ob->used += len;
  return 0;
}

int ota_outbox_push_bytes(ota_outbox_t *ob, ota_fx_kind_t k, uint16_t mid,
                          const void *bytes, size_t len) {
  ota_fx_t fx;
  memset(&fx, 0, sizeof(fx));
  fx.kind = k;
  fx.mid = mid;
  return ota_outbox_push(ob, &fx, bytes, len);
}

const uint8_t *ota_outbox_bytes(const ota_outbox_t *ob, const ota_fx_t *fx) {
  return fx->len ? ob->arena + fx->off : NULL;
}

int ota_outbox_msg(const ota_outbox_t *ob, const ota_fx_t *fx,
                   ota_coap_msg_t *m) {
  if (!ob || !fx || (fx->kind != OTA_FX_SEND && fx->kind != OTA_FX_DELIVER))
    return OTA_EINVAL;
  return ota_coap_decode(ota_outbox_bytes(ob, fx), fx->len, m);
}

size_t ota_outbox_count(const ota_outbox_t *ob, ota_fx_kind_t k) {
  size_t c = 0;
  for (size_t i = 0; i < ob->n; i++)
    c += ob->fx[i].kind == k;
  return c;
}
