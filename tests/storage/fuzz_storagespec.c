/*
 * fuzz_storagespec.c -- libFuzzer target for storage spec strings: the
 * "sqlite:PATH?opts" parser (storage/backend.c) and the PostgreSQL URI
 * options parser (storage/pg_backend.c). No file is opened and no
 * connection made: both parsers are pure.
 *
 * Input: byte 0 even -> the rest is what follows "sqlite:"; odd -> the
 * rest is a postgres URI ("postgres://" is prepended unless present).
 * Checks: the result is 0 or EINVAL with a message; an accepted sqlite
 * spec has a non-empty path that is the spec's text before '?', and
 * options within their documented ranges; an accepted URI keeps its base,
 * holds connect_timeout, and none of stead's own options reaches libpq.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/seam.h"
#include "storage/backend.h"
#include "storage/pg_backend.h"

/* The target links only storage + util; ctx_api.c needs core's accessor. */
struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  (void)ctx;
  return NULL;
}

static void check_sqlite(const char *spec) {
  char *path = NULL;
  stead__backend_opts o;
  int rc = stead__sqlite_spec_parse(spec, &path, &o);
  if (rc) {
    if (rc != STEAD_EINVAL || path || !*stead_errmsg())
      abort();
    return;
  }
  const char *q = strchr(spec, '?');
  size_t plen = q ? (size_t)(q - spec) : strlen(spec);
  if (!path || !*path || strlen(path) != plen || memcmp(path, spec, plen) != 0)
    abort();
  if (o.durability != STEAD__DURABLE_FULL && o.durability != STEAD__DURABLE_NORMAL)
    abort();
  if (o.busy_timeout_ms < 1 || o.busy_timeout_ms > 1000000000)
    abort();
  free(path);
}

static int ours(const char *kv, size_t n) {
  static const char *const keys[] = {
      "prefix=", "pool=", "statement_timeout_ms=", "durability="};
  for (size_t i = 0; i < 4; i++) {
    size_t kl = strlen(keys[i]);
    if (n >= kl && memcmp(kv, keys[i], kl) == 0)
      return 1;
  }
  return 0;
}

static void check_pg(const char *uri) {
  stead__pg_uri u;
  int rc = stead__pg_uri_parse(uri, &u);
  if (rc) {
    if (rc != STEAD_EINVAL || u.conninfo || !*stead_errmsg())
      abort();
    return;
  }
  const char *q = strchr(uri, '?');
  size_t base = q ? (size_t)(q - uri) : strlen(uri);
  if (!u.conninfo || strncmp(u.conninfo, uri, base) != 0 || u.conninfo[base] != '?')
    abort();
  if (!strstr(u.conninfo + base, "connect_timeout="))
    abort();
  for (const char *s = u.conninfo + base + 1; *s;) {
    const char *amp = strchr(s, '&');
    size_t n = amp ? (size_t)(amp - s) : strlen(s);
    if (ours(s, n))
      abort();
    s += n + (amp ? 1 : 0);
  }
  size_t pl = strlen(u.prefix);
  if (pl < 1 || pl > 39 || u.prefix[0] < 'a' || u.prefix[0] > 'z')
    abort();
  if (u.pool < 1 || u.pool > 64 || u.stmt_timeout_ms < 0 ||
      u.stmt_timeout_ms > 1000000000)
    abort();
  free(u.conninfo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  char *s = malloc(size + 16);
  if (!s)
    return 0;
  size_t off = 0;
  int pg = data[0] & 1;
  if (pg && !(size - 1 >= 11 && memcmp(data + 1, "postgres://", 11) == 0) &&
      !(size - 1 >= 13 && memcmp(data + 1, "postgresql://", 13) == 0)) {
    memcpy(s, "postgres://", 11);
    off = 11;
  }
  memcpy(s + off, data + 1, size - 1);
  s[off + size - 1] = '\0';
  if (pg)
    check_pg(s);
  else
    check_sqlite(s);
  free(s);
  return 0;
}
