/* otalab-server internals: the device table, the CoAP/DTLS adapter (libcoap)
 * and the REST adapter (libwebsockets), sharing one lws-owned event loop. */
#ifndef OTALAB_SRV_H
#define OTALAB_SRV_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SRV_ID_HEX 24
#define SRV_ID_RAW 12
#define SRV_MAX_DEVICES 1024

/* One row per device seen in a Hello (or registered on disk and looked up).
 * Owned by the table; `session` is a borrowed coap_session_t* (NULL when
 * disconnected), `describe` a malloc'd JSON text owned by the row. */
typedef struct {
  char id[SRV_ID_HEX + 1]; /* lower-case hex */
  int connected;
  time_t last_heard; /* 0: never */
  char addr[64];     /* "ip:port" of the last session */
  char *describe;    /* last describe reply (JSON text), or NULL */
  void *session;
  unsigned hellos; /* Hellos accepted so far */
} srv_device_t;

typedef struct {
  const char *data_dir; /* keys in data_dir/devices/<id>.pub.pem */
  srv_device_t rows[SRV_MAX_DEVICES];
  size_t n;
} srv_devices_t;

/* Init the table (cannot fail); rows are empty. */
void srv_devices_init(srv_devices_t *t, const char *data_dir);
/* Free every row's describe text; safe twice. */
void srv_devices_free(srv_devices_t *t);
/* Find a row by lower-case hex id; NULL if absent. */
srv_device_t *srv_devices_find(srv_devices_t *t, const char *id);
/* Find or add; NULL when the table is full. */
srv_device_t *srv_devices_get(srv_devices_t *t, const char *id);
/* Row whose live session is `session`, or NULL. */
srv_device_t *srv_devices_by_session(srv_devices_t *t, const void *session);
/* Load the registered public key of `id` as DER SubjectPublicKeyInfo into
 * der[cap]; *len set. OTA_ENOENT when no key is registered, OTA_EPARSE when
 * the file is not a PEM public key. */
int srv_devices_key(const srv_devices_t *t, const char *id, uint8_t *der,
                    size_t cap, size_t *len);
/* Replace the row's describe text with a copy of json[len]. */
void srv_devices_set_describe(srv_device_t *d, const char *json, size_t len);

/* Server options from the command line. */
typedef struct {
  const char *bind;
  int coap_port, http_port;
  const char *keys_dir, *data_dir;
  int verbose;
} srv_opts_t;

struct lws_context;
struct lws_vhost;

/* CoAP side: create the libcoap context and DTLS endpoint; returns the fd to
 * adopt into the lws loop (a dup of libcoap's epoll fd), or -1. */
int srv_coap_setup(const srv_opts_t *o, srv_devices_t *devs);
/* Read everything pending on the CoAP fd and dispatch it. */
void srv_coap_io(void);
/* Run libcoap's timers; returns ms until they next need to run. */
unsigned srv_coap_timers(void);
/* Free the CoAP context; safe twice. */
void srv_coap_free(void);

/* The lws protocol list (HTTP first, then the raw CoAP fd protocol);
 * declared in srv_http.c, used by srv_main.c (needs <libwebsockets.h>). */
#ifdef LWS_PRE
extern const struct lws_protocols srv_protocols[];
#endif
/* Set by main for the HTTP side's lookups. */
extern srv_devices_t *srv_http_devices;
/* Ask the loop to run CoAP timers/greetings soon (from inside callbacks). */
void srv_loop_kick(void);

#endif
