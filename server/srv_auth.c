/* otalab-server users and OAuth tokens: POST /oauth/token as particle-cli's
 * login sends it (PROTOCOL.md 9), bearer tokens checked on every other call. */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "otalab/err.h"
#include "otalab/log.h"
#include "srv_api.h"

#define MAX_OPTS 16

static int no_auth;
static const char *opt_users[MAX_OPTS], *opt_tokens[MAX_OPTS];
static size_t n_users, n_tokens;

int srv_auth_option(const char *a, const char *v) {
  if (!strcmp(a, "--no-auth")) {
    no_auth = 1;
    return 1;
  }
  int user = !strcmp(a, "--user");
  if (!user && strcmp(a, "--token"))
    return 0;
  if (!v || !*v || (user && (!strchr(v, ':') || v[0] == ':'))) {
    fprintf(stderr, "otalab-server: %s needs %s\n", a,
            user ? "NAME:PASSWORD" : "TOKEN");
    return -1;
  }
  size_t *n = user ? &n_users : &n_tokens;
  if (*n == MAX_OPTS) {
    fprintf(stderr, "otalab-server: too many %s options\n", a);
    return -1;
  }
  (user ? opt_users : opt_tokens)[(*n)++] = v;
  return 2;
}

int srv_auth_disabled(void) {
  return no_auth;
}

int srv_auth_random_hex(char *out, size_t nbytes) {
  unsigned char b[64];
  if (nbytes > sizeof b)
    return OTA_EINVAL;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return OTA_EIO;
  ssize_t n = read(fd, b, nbytes);
  close(fd);
  if (n != (ssize_t)nbytes)
    return OTA_EIO;
  for (size_t i = 0; i < nbytes; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
  out[2 * nbytes] = 0;
  return 0;
}

static void hash_password(const char *salt, const char *pw, char out[65]) {
  unsigned char md[32];
  unsigned int mdl = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) ||
      !EVP_DigestUpdate(c, salt, strlen(salt)) ||
      !EVP_DigestUpdate(c, pw, strlen(pw)) || !EVP_DigestFinal_ex(c, md, &mdl))
    mdl = 0;
  EVP_MD_CTX_free(c);
  for (unsigned i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", i < mdl ? md[i] : 0);
}

static int set_user(const char *name, const char *pw) {
  char salt[33], h[65];
  if (srv_auth_random_hex(salt, 16))
    return OTA_EIO;
  hash_password(salt, pw, h);
  json_object_set_new(srv_db.users, name,
                      json_pack("{s:s,s:s}", "salt", salt, "sha256", h));
  return srv_store_commit("users");
}

static int user_ok(const char *name, const char *pw) {
  json_t *u = json_object_get(srv_db.users, name);
  const char *salt = json_string_value(json_object_get(u, "salt"));
  const char *want = json_string_value(json_object_get(u, "sha256"));
  char h[65];
  if (!salt || !want)
    return 0;
  hash_password(salt, pw, h);
  return !strcmp(h, want);
}

static int add_token(const char *tok, const char *user, json_int_t expires) {
  json_object_set_new(srv_db.tokens, tok,
                      json_pack("{s:s,s:I}", "user", user, "expires", expires));
  return srv_store_commit("tokens");
}

int srv_auth_setup(void) {
  const char *env = getenv("OTALAB_NO_AUTH");
  if (env && *env && strcmp(env, "0")) {
    no_auth = 1;
    OTA_LOGW("auth: OFF (OTALAB_NO_AUTH=%s)", env);
  }
  for (size_t i = 0; i < n_users; i++) {
    char name[256];
    const char *c = strchr(opt_users[i], ':');
    snprintf(name, sizeof name, "%.*s", (int)(c - opt_users[i]), opt_users[i]);
    int err = set_user(name, c + 1);
    if (err)
      return err;
    OTA_LOGI("auth: user %s (from --user)", name);
  }
  if (!json_object_size(srv_db.users)) {
    char pw[25];
    int err = srv_auth_random_hex(pw, 12);
    if (!err)
      err = set_user("admin", pw);
    if (err)
      return err;
    OTA_LOGI("auth: created the default user: username admin password %s "
             "(stored hashed in %s/users.json)",
             pw, srv_db.dir);
  }
  for (size_t i = 0; i < n_tokens; i++) {
    /* a fixed token never expires: year 9999 */
    json_t *t = json_object_get(srv_db.tokens, opt_tokens[i]);
    if (!t && add_token(opt_tokens[i], "--token", 253402300799LL))
      return OTA_EIO;
  }
  OTA_LOGI("auth: %s, %zu users, %zu tokens", no_auth ? "OFF" : "on",
           json_object_size(srv_db.users), json_object_size(srv_db.tokens));
  return 0;
}

int srv_auth_check(const char *token) {
  if (no_auth)
    return 0;
  json_t *t = token && *token ? json_object_get(srv_db.tokens, token) : NULL;
  if (!t)
    return OTA_EAUTH;
  json_int_t exp = json_integer_value(json_object_get(t, "expires"));
  return exp > (json_int_t)time(NULL) ? 0 : OTA_EAUTH;
}

static char *oauth_err(unsigned *status, unsigned code, const char *err,
                       const char *desc) {
  *status = code;
  OTA_LOGW("http: POST /oauth/token refused (%u): %s", code, desc);
  json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 0, "error", err,
                        "error_description", desc);
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}

/* "Basic base64(id:secret)" -> id and secret; 0 or -1. */
static int basic_creds(const char *hdr, char *id, size_t idcap, char *sec,
                       size_t seccap) {
  unsigned char dec[512];
  if (!hdr || strncasecmp(hdr, "Basic ", 6))
    return -1;
  const char *b = hdr + 6;
  size_t bl = strlen(b);
  if (bl == 0 || bl % 4 || bl / 4 * 3 >= sizeof dec)
    return -1;
  int n = EVP_DecodeBlock(dec, (const unsigned char *)b, (int)bl);
  if (n < 0)
    return -1;
  while (bl && b[bl - 1] == '=')
    bl--, n--;
  dec[n] = 0;
  char *c = strchr((char *)dec, ':');
  if (!c || (size_t)(c - (char *)dec) >= idcap || strlen(c + 1) >= seccap)
    return -1;
  *c = 0;
  snprintf(id, idcap, "%s", (char *)dec);
  snprintf(sec, seccap, "%s", c + 1);
  return 0;
}

char *srv_auth_oauth(const char *body, size_t len, const char *basic,
                     unsigned *status) {
  char grant[64], cid[256] = "", csec[256] = "", user[256], pw[256];
  if (ota_form_check(body, len) ||
      ota_form_get(body, len, "grant_type", grant, sizeof grant))
    return oauth_err(status, 400, "invalid_request",
                     "Form body with grant_type required.");
  if (basic_creds(basic, cid, sizeof cid, csec, sizeof csec)) {
    if (ota_form_get(body, len, "client_id", cid, sizeof cid) ||
        ota_form_get(body, len, "client_secret", csec, sizeof csec))
      cid[0] = csec[0] = 0;
  }
  if (!strcmp(grant, "password")) {
    /* Public clients: particle-cli 1.x sends particle:particle, 3.x sends
     * CLI2 with its own secret; the user's password is what authenticates. */
    if (strcmp(cid, "particle") && strcmp(cid, "CLI2"))
      return oauth_err(status, 401, "invalid_client",
                       "Client authentication failed (use particle:particle).");
    if (ota_form_get(body, len, "username", user, sizeof user) ||
        ota_form_get(body, len, "password", pw, sizeof pw))
      return oauth_err(status, 400, "invalid_request",
                       "username and password required.");
  } else if (!strcmp(grant, "client_credentials")) {
    /* an OAuth client here is a user: client_id = name, secret = password */
    snprintf(user, sizeof user, "%s", cid);
    snprintf(pw, sizeof pw, "%s", csec);
  } else {
    return oauth_err(status, 400, "unsupported_grant_type",
                     "Only password and client_credentials grants.");
  }
  if (!user_ok(user, pw))
    return oauth_err(status, 401, "invalid_grant",
                     "User credentials are invalid.");
  char tok[41], ref[41];
  if (srv_auth_random_hex(tok, 20) || srv_auth_random_hex(ref, 20))
    return oauth_err(status, 500, "server_error", "No randomness.");
  if (add_token(tok, user, (json_int_t)time(NULL) + SRV_TOKEN_TTL_S))
    return oauth_err(status, 500, "server_error", "Cannot store the token.");
  OTA_LOGI("auth: token issued to %s (%s grant)", user, grant);
  *status = 200;
  json_t *o =
      json_pack("{s:s,s:s,s:i,s:s}", "token_type", "bearer", "access_token",
                tok, "expires_in", SRV_TOKEN_TTL_S, "refresh_token", ref);
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}
