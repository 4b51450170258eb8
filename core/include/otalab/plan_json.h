/* The planner's result as JSON: the one shape of `otalab plan --json` and of
 * the server's GET /v1/plan and GET /v1/devices/:id/plan (core/planner).
 * Source: core/planner.h (ota_plan_t); docs/PROTOCOL.md "Dashboard choices". */
#ifndef OTALAB_PLAN_JSON_H
#define OTALAB_PLAN_JSON_H

#include <stddef.h>

#include "otalab/catalog.h"
#include "otalab/planner.h"

/* The plan p (made against cat) as JSON text:
 *   ok (p->result 0): {"from","to","steps":[{"release","modules":[{"function",
 *     "index","version","file","bytes"}],"payload_bytes","wire_bytes"}],
 *     "payload_bytes","wire_bytes","wire_bytes_particle","udp_ip_bytes",
 *     "seconds":{"2g","3g","lte-m","lte"}}
 *   refused: {"from","to","error":"OTA_E...","reason"}
 * `to` names the goal in a refusal (NULL: p->to). `flags` are jansson's
 * json_dumps flags (JSON_PRESERVE_ORDER is always added). Returns a malloc'd
 * string the caller frees, or NULL when out of memory. */
char *ota_plan_to_json(const ota_catalog_t *cat, const ota_plan_t *p,
                       const char *to, size_t flags);

#endif
