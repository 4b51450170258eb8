/* Registers simulated devices with otalab-server's REST API (POST
 * /v1/devices, docs/PROTOCOL.md "REST API"): one short HTTP/1.1 request each.
 */
#include "sim_rest.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "otalab/err.h"

int sim_rest_register(const char *url, const char *token, const char *id,
                      const char *pub_pem, int product) {
  char host[256], port[8] = "80";
  if (strncmp(url, "http://", 7))
    return OTA_EADDR;
  const char *h = url + 7, *e = h + strcspn(h, ":/");
  if ((size_t)(e - h) >= sizeof host || e == h)
    return OTA_EADDR;
  memcpy(host, h, (size_t)(e - h));
  host[e - h] = 0;
  if (*e == ':')
    snprintf(port, sizeof port, "%.*s", (int)strcspn(e + 1, "/"), e + 1);
  json_t *body = json_pack("{s:s,s:s,s:i}", "id", id, "public_key", pub_pem,
                           "product_id", product);
  char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!js)
    return OTA_ENOMEM;
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
  struct addrinfo *ai = NULL;
  int rc = OTA_EADDR, fd = -1;
  if (getaddrinfo(host, port, &hints, &ai) || !ai)
    goto out;
  rc = OTA_EIO;
  fd = socket(ai->ai_family, ai->ai_socktype, 0);
  if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen))
    goto out;
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t bl = strlen(js);
  char *req = malloc(bl + 512);
  if (!req)
    goto out;
  int n = snprintf(req, bl + 512,
                   "POST /v1/devices HTTP/1.1\r\nHost: %s:%s\r\n"
                   "%s%s%sContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   host, port, token ? "Authorization: Bearer " : "",
                   token ? token : "", token ? "\r\n" : "", bl, js);
  ssize_t w = write(fd, req, (size_t)n);
  free(req);
  if (w != n)
    goto out;
  char resp[512];
  size_t got = 0;
  ssize_t r;
  while (got < sizeof resp - 1 &&
         (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) {
    got += (size_t)r;
    resp[got] = 0;
    if (strstr(resp, "\r\n")) /* the status line is all we need */
      break;
  }
  resp[got] = 0;
  int status;
  if (sscanf(resp, "HTTP/1.%*d %d", &status) == 1)
    rc = status;
out:
  if (fd >= 0)
    close(fd);
  if (ai)
    freeaddrinfo(ai);
  free(js);
  return rc;
}
