/* otalab-device's REST client: register simulated devices with otalab-server
 * (POST /v1/devices, docs/PROTOCOL.md "REST API"); plain HTTP/1.1. */
#ifndef OTALAB_SIM_REST_H
#define OTALAB_SIM_REST_H

/* POST {"id","public_key","product_id"} (product 0 = developer device) to
 * URL/v1/devices with `Authorization: Bearer token` (token may be NULL).
 * url: http://HOST:PORT[/]. Returns the HTTP status (200/201 ok) or a
 * negative OTA_E* (EADDR bad URL / resolve, EIO socket). */
int sim_rest_register(const char *url, const char *token, const char *id,
                      const char *pub_pem, int product);

#endif
