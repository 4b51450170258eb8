/* otalab-server Particle-shaped REST API: durable store, tokens and users,
 * device registry and products, the event bus (SSE + WebSocket), and the lws
 * protocol that routes requests (PROTOCOL.md 7, 9; docs/PROTOCOL.md "REST API
 * choices"). */
#ifndef OTALAB_SRV_API_H
#define OTALAB_SRV_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "otalab/rest.h"

/* ---- srv_store.c: jansson files under --data DIR, written with fsync and an
 * atomic rename; a corrupt file is reported, moved aside to NAME.corrupt and
 * not loaded. ---- */

typedef struct {
  const char *dir;  /* --data DIR (borrowed) */
  json_t *users;    /* users.json: name -> {"salt","sha256"} */
  json_t *tokens;   /* tokens.json: token -> {"user","expires"} */
  json_t *devices;  /* devices.json: id -> {"name","product_id","registered"} */
  json_t *products; /* products.json: "id" -> {"id","name","firmware":[..],
                       "released":N or null} */
} srv_db_t;

/* The one store of the process (owned; json objects freed by _free). */
extern srv_db_t srv_db;

/* Write buf[len] to path: create parent directories, write a temp file,
 * fsync, rename over path, fsync the directory. 0 or OTA_EIO. */
int srv_store_write(const char *path, const void *buf, size_t len);
/* Load DIR/users.json ... into srv_db; missing files give empty objects,
 * corrupt ones are logged and moved aside. Cannot fail except OTA_ENOMEM. */
int srv_store_open(const char *dir);
/* Save one collection ("users", "tokens", "devices", "products"). 0 or
 * OTA_EIO (logged). */
int srv_store_commit(const char *name);
/* Free the collections; safe twice. */
void srv_store_free(void);

/* ---- srv_auth.c: users, OAuth tokens (PROTOCOL.md 9, particle-cli login) */

#define SRV_TOKEN_TTL_S 7776000 /* 90 days, Particle's expires_in */

/* Command-line options of this module (--no-auth, --token T, --user N:P).
 * Returns how many argv entries it used (1 or 2), 0 when `a` is not ours,
 * -1 on a bad value (printed). `v` is the next argument or NULL. */
int srv_auth_option(const char *a, const char *v);
/* After srv_store_open(): add --user users and --token tokens; when no user
 * exists, create "admin" with a random password and log it. 0 or OTA_E*. */
int srv_auth_setup(void);
/* 1 when auth is off (--no-auth). */
int srv_auth_disabled(void);
/* 0 when `token` is a known, unexpired token; OTA_EAUTH otherwise. */
int srv_auth_check(const char *token);
/* POST /oauth/token: `body` a form body, `basic` the Authorization header
 * value (or NULL). Returns malloc'd JSON and sets *status (200, 400, 401). */
char *srv_auth_oauth(const char *body, size_t len, const char *basic,
                     unsigned *status);
/* nbytes random bytes from /dev/urandom as lower-case hex into
 * out[2*nbytes+1]. 0 or OTA_EIO. */
int srv_auth_random_hex(char *out, size_t nbytes);

/* ---- srv_products.c: the device registry and products ---- */

/* --product ID:NAME (returns as srv_auth_option). */
int srv_products_option(const char *a, const char *v);
/* Create the --product products. 0 or OTA_E*. */
int srv_products_setup(void);
/* Register (or update) a device: write its public key PEM to
 * DATA/devices/<id>.pub.pem (where the DTLS check reads it) and its row in
 * devices.json. `id` 24 hex, product 0 = developer device. 0, OTA_EINVAL
 * (message in msg), OTA_ENOENT (unknown product), OTA_EIO. */
int srv_products_register(const char *id, const char *pem, const char *name,
                          uint32_t product, char *msg, size_t cap);
/* The product of a registered device; 0 for developer or unknown devices. */
uint32_t srv_products_of_device(const char *id);
/* The registry row of a device (borrowed), or NULL. */
json_t *srv_products_device(const char *id);
/* Create a product. 0, OTA_EEXIST, OTA_EINVAL. */
int srv_products_create(uint32_t id, const char *name);
/* The product object (borrowed), or NULL. */
json_t *srv_products_get(uint32_t id);
/* Store firmware `version` of product `id` (a user part for platform 10,
 * validated; file DATA/firmware/<id>/<version>.bin). 0, OTA_ENOENT (no
 * product), OTA_EEXIST (version taken), OTA_EINVAL/OTA_EPARSE (reason in
 * msg), OTA_EIO. */
int srv_products_upload(uint32_t id, unsigned version, const char *title,
                        const uint8_t *bin, size_t len, char *msg, size_t cap);
/* Release an uploaded version to the product. 0, OTA_ENOENT. */
int srv_products_release(uint32_t id, unsigned version);
/* For the OTA/healer side: the released firmware of product `id`, its file
 * path into path[cap] and its version. 0, OTA_ENOENT (no product or nothing
 * released), OTA_ENOBUFS. */
int srv_products_released_app(uint32_t id, char *path, size_t cap,
                              unsigned *version);

/* ---- srv_events.c: the in-process event bus ---- */

#define SRV_EVENTS_QUEUE                                                       \
  4096 /* per-subscriber queue, oldest dropped: a 1,000-device heal bursts     \
          thousands */
#define SRV_EVENTS_KEEPALIVE_S                                                 \
  9u /* comment line / ping at least this often                                \
      */
#define SRV_EVENTS_DEFAULT_TTL 60

struct lws;
struct lws_context;
typedef struct srv_sub srv_sub_t;

/* Publish to every matching subscriber. device_id "" or NULL: cloud-wide
 * (coreid "particle-internal"); the product is the device's. Never blocks:
 * a full subscriber queue drops its oldest record. */
void srv_events_publish(const char *name, const char *data,
                        const char *device_id, unsigned ttl);
/* A cloud event for the streams of one product. */
void srv_events_publish_product(const char *name, const char *data,
                                uint32_t product, unsigned ttl);
/* Add a subscriber on wsi (SSE: headers then ":ok"; websocket: JSON text
 * messages). NULL on OTA_ENOMEM. Owned by the bus until unsubscribe. */
srv_sub_t *srv_events_subscribe(struct lws *wsi, const ota_evfilter_t *f,
                                int websocket);
/* Remove and free; NULL is fine. */
void srv_events_unsubscribe(srv_sub_t *s);
/* In the wsi's WRITEABLE callback: write the next record. 0, or -1 to close
 * the connection. */
int srv_events_writeable(srv_sub_t *s);
/* Start the keep-alive timer on ctx; stop (and drop subscribers) on exit. */
void srv_events_start(struct lws_context *ctx);
void srv_events_stop(void);
/* Counters for logs and tests. */
size_t srv_events_subscribers(void);
uint64_t srv_events_dropped(void);

/* ---- srv_rest.c: routing, as the first lws protocol ---- */

/* Every REST option (auth, products); same result as srv_auth_option. */
int srv_api_option(const char *a, const char *v);
/* Usage lines for the options above. */
void srv_api_usage(FILE *f);
/* Open the store under data_dir and run the modules' setup. 0 or OTA_E*. */
int srv_api_setup(const char *data_dir);
/* The protocol list to give lws: the API protocol (HTTP + WebSocket,
 * forwarding other routes to inner[0] with its own session data), an
 * "events" WebSocket protocol, then inner[1..]. Static storage. */
struct lws_protocols;
const struct lws_protocols *
srv_api_protocols(const struct lws_protocols *inner);
/* Free everything; safe twice. */
void srv_api_free(void);

/* Grow *buf (malloc'd, capacity *cap) to hold at least `need` bytes: doubling
 * from `first` (or the current capacity). Contents kept. 0 or OTA_ENOMEM (the
 * old buffer is then left as it was). */
int srv_buf_reserve(uint8_t **buf, size_t *cap, size_t need, size_t first);

/* A decimal id 1..2^32-1 in s[0..n) (no sign, no spaces): 0 or -1. */
int srv_parse_u32(const char *s, size_t n, uint32_t *out);

#endif
