/* Minimal HTTP/1.1 client (RFC 9112 subset): Content-Length and chunked
 * bodies, Connection: close. Enough for otalab-server's REST API. */
#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "otalab/err.h"

int cli_http_parse_url(const char *url, char *host, size_t hostcap, int *port,
                       char *base, size_t basecap) {
  const char *p = url;
  if (!strncmp(p, "http://", 7))
    p += 7;
  else if (strstr(p, "://"))
    return OTA_EINVAL; /* https and others: not spoken here */
  const char *slash = strchr(p, '/');
  const char *hend = slash ? slash : p + strlen(p);
  const char *colon = memchr(p, ':', (size_t)(hend - p));
  size_t hl = (size_t)((colon ? colon : hend) - p);
  if (hl == 0 || hl + 1 > hostcap)
    return OTA_EINVAL;
  memcpy(host, p, hl);
  host[hl] = 0;
  *port = 80;
  if (colon) {
    char *e;
    long v = strtol(colon + 1, &e, 10);
    if (e != hend || v <= 0 || v > 65535)
      return OTA_EINVAL;
    *port = (int)v;
  }
  const char *b = slash ? slash : "";
  size_t bl = strlen(b);
  while (bl && b[bl - 1] == '/')
    bl--;
  if (bl + 1 > basecap)
    return OTA_EINVAL;
  memcpy(base, b, bl);
  base[bl] = 0;
  return 0;
}

static int connect_to(const char *host, int port, int timeout_ms) {
  struct addrinfo hints = {0}, *res = NULL, *ai;
  char ps[16];
  int fd = -1;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(ps, sizeof ps, "%d", port);
  if (getaddrinfo(host, ps, &hints, &res) != 0)
    return OTA_EIO;
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
      continue;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
      break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd >= 0 ? fd : OTA_EIO;
}

static int send_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return OTA_EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int send_request(int fd, const char *host, int port, const char *method,
                        const char *path, const char *token, const char *extra,
                        const uint8_t *body, size_t blen, int has_body) {
  char hdr[4096];
  int n =
      snprintf(hdr, sizeof hdr,
               "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: otalab-cli\r\n"
               "Connection: close\r\n%s%s%s%s",
               method, path, host, port, token ? "Authorization: Bearer " : "",
               token ? token : "", token ? "\r\n" : "", extra ? extra : "");
  if (n < 0 || (size_t)n >= sizeof hdr - 64)
    return OTA_ENOBUFS;
  if (has_body)
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "Content-Length: %zu\r\n",
                  blen);
  n += snprintf(hdr + n, sizeof hdr - (size_t)n, "\r\n");
  int rc = send_all(fd, hdr, (size_t)n);
  if (!rc && blen)
    rc = send_all(fd, body, blen);
  return rc;
}

/* Decode a chunked body in place; returns the decoded length or -1. */
static long dechunk(char *b, size_t len) {
  size_t in = 0, out = 0;
  for (;;) {
    char *e;
    if (in >= len)
      return -1;
    unsigned long sz = strtoul(b + in, &e, 16);
    char *nl = memchr(b + in, '\n', len - in);
    if (!nl || e == b + in)
      return -1;
    in = (size_t)(nl - b) + 1;
    if (sz == 0)
      return (long)out;
    if (in + sz > len)
      return -1;
    memmove(b + out, b + in, sz);
    out += sz;
    in += sz;
    if (in < len && b[in] == '\r')
      in++;
    if (in < len && b[in] == '\n')
      in++;
  }
}

#define HOST_MAX 256
#define FULLPATH_MAX 2048
/* Connect to url's host and port; fullpath gets url's base path + path.
 * Returns the socket or a negative OTA_E*. */
static int open_url(const char *url, const char *path, int timeout_ms,
                    char host[HOST_MAX], int *port,
                    char fullpath[FULLPATH_MAX]) {
  char base[512];
  int rc = cli_http_parse_url(url, host, HOST_MAX, port, base, sizeof base);
  if (rc)
    return rc;
  snprintf(fullpath, FULLPATH_MAX, "%s%s", base, path);
  return connect_to(host, *port, timeout_ms);
}

int cli_http_request(const char *url, const char *method, const char *path,
                     const char *token, const char *extra, const uint8_t *body,
                     size_t blen, int timeout_ms, cli_http_resp_t *resp) {
  char host[HOST_MAX], fullpath[FULLPATH_MAX];
  int port, rc;
  memset(resp, 0, sizeof *resp);
  int fd = open_url(url, path, timeout_ms, host, &port, fullpath);
  if (fd < 0)
    return fd;
  int has_body =
      body != NULL || !strcmp(method, "POST") || !strcmp(method, "PUT");
  rc = send_request(fd, host, port, method, fullpath, token, extra, body, blen,
                    has_body);
  if (rc) {
    close(fd);
    return rc;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return OTA_ENOMEM;
  }
  for (;;) {
    if (len + 1 >= cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        close(fd);
        return OTA_ENOMEM;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      free(buf);
      close(fd);
      return errno == EAGAIN ? OTA_ETIMEDOUT : OTA_EIO;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = 0;
  char *hend = strstr(buf, "\r\n\r\n");
  if (!hend || sscanf(buf, "HTTP/1.%*d %d", &resp->status) != 1) {
    free(buf);
    return OTA_EPROTO;
  }
  *hend = 0;
  int chunked = 0;
  for (char *l = strstr(buf, "\r\n"); l && l < hend;
       l = strstr(l + 2, "\r\n")) {
    char *line = l + 2;
    if (!strncasecmp(line, "Transfer-Encoding:", 18) && strstr(line, "chunked"))
      chunked = 1;
    if (!strncasecmp(line, "Content-Type:", 13)) {
      char *v = line + 13;
      while (*v == ' ')
        v++;
      size_t vl = strcspn(v, "\r\n");
      if (vl >= sizeof resp->content_type)
        vl = sizeof resp->content_type - 1;
      memcpy(resp->content_type, v, vl);
      resp->content_type[vl] = 0;
    }
  }
  char *b = hend + 4;
  size_t bl = len - (size_t)(b - buf);
  if (chunked) {
    long d = dechunk(b, bl);
    if (d < 0) {
      free(buf);
      return OTA_EPROTO;
    }
    bl = (size_t)d;
  }
  memmove(buf, b, bl);
  buf[bl] = 0;
  resp->body = buf;
  resp->body_len = bl;
  return 0;
}

int cli_http_stream(const char *url, const char *path, const char *token,
                    int timeout_ms, int *status) {
  char host[HOST_MAX], fullpath[FULLPATH_MAX], line[1024];
  int port, rc;
  int fd = open_url(url, path, timeout_ms, host, &port, fullpath);
  if (fd < 0)
    return fd;
  rc = send_request(fd, host, port, "GET", fullpath, token,
                    "Accept: text/event-stream\r\n", NULL, 0, 0);
  if (rc) {
    close(fd);
    return rc;
  }
  /* read the header block byte by byte so no body byte is consumed */
  size_t n = 0;
  int lines = 0;
  *status = 0;
  for (;;) {
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    if (r <= 0) {
      close(fd);
      return OTA_EIO;
    }
    if (c == '\n') {
      line[n] = 0;
      if (n && line[n - 1] == '\r')
        line[--n] = 0;
      if (lines++ == 0)
        sscanf(line, "HTTP/1.%*d %d", status);
      if (n == 0)
        break;
      n = 0;
    } else if (n + 1 < sizeof line) {
      line[n++] = c;
    }
  }
  struct timeval tv = {0, 0}; /* the stream may be quiet for a long time */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

void cli_http_free(cli_http_resp_t *resp) {
  free(resp->body);
  resp->body = NULL;
  resp->body_len = 0;
}

const char *cli_server_url(const char *opt) {
  const char *e = getenv("OTALAB_SERVER");
  return opt ? opt : (e && *e) ? e : "http://127.0.0.1:8080";
}

const char *cli_token(const char *opt) {
  const char *e = getenv("OTALAB_TOKEN");
  return opt ? opt : (e && *e) ? e : NULL;
}
