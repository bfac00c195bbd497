/*
 * backend.c -- opening a backend from its spec string.
 *
 * "memory", "sqlite:PATH[?opt=val&...]" or a PostgreSQL URI
 * "postgres://..." / "postgresql://..." (options: pg_backend.h). Options
 * are parsed strictly: an unknown option or bad value is EINVAL naming it,
 * so a typo never silently falls back to a weaker durability.
 */
#include "storage/backend.h"
#include "storage/pg_backend.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

static int parse_opt(const char *kv, size_t n, stead__backend_opts *o) {
  const char *eq = memchr(kv, '=', n);
  if (!eq)
    return stead__err(STEAD_EINVAL, "storage option '%.*s' has no value", (int)n, kv);
  size_t kl = (size_t)(eq - kv), vl = n - kl - 1;
  const char *v = eq + 1;
  if (kl == 10 && memcmp(kv, "durability", 10) == 0) {
    if (vl == 4 && memcmp(v, "full", 4) == 0)
      o->durability = STEAD__DURABLE_FULL;
    else if (vl == 6 && memcmp(v, "normal", 6) == 0)
      o->durability = STEAD__DURABLE_NORMAL;
    else
      return stead__err(STEAD_EINVAL, "durability must be full or normal, not '%.*s'",
                        (int)vl, v);
    return 0;
  }
  if (kl == 15 && memcmp(kv, "busy_timeout_ms", 15) == 0) {
    char buf[16];
    if (vl == 0 || vl >= sizeof buf)
      return stead__err(STEAD_EINVAL, "busy_timeout_ms must be 1..1000000000");
    memcpy(buf, v, vl);
    buf[vl] = 0;
    char *end;
    long x = strtol(buf, &end, 10);
    if (*end || x < 1 || x > 1000000000)
      return stead__err(STEAD_EINVAL, "busy_timeout_ms must be 1..1000000000, not '%s'",
                        buf);
    o->busy_timeout_ms = (int)x;
    return 0;
  }
  return stead__err(STEAD_EINVAL, "unknown storage option '%.*s'", (int)kl, kv);
}

int stead__sqlite_spec_parse(const char *spec, char **path_out, stead__backend_opts *o) {
  *path_out = NULL;
  o->durability = STEAD__DURABLE_FULL;
  o->busy_timeout_ms = 5000;
  const char *q = strchr(spec, '?');
  if (q) {
    const char *p = q + 1;
    while (*p) {
      const char *amp = strchr(p, '&');
      size_t n = amp ? (size_t)(amp - p) : strlen(p);
      int rc = parse_opt(p, n, o);
      if (rc)
        return rc;
      p += n + (amp ? 1 : 0);
    }
  }
  size_t plen = q ? (size_t)(q - spec) : strlen(spec);
  if (plen == 0)
    return stead__err(STEAD_EINVAL, "storage spec 'sqlite:%s' has no file path", spec);
  char *path = stead__memdup(spec, plen + 1);
  if (!path)
    return stead__err(STEAD_ENOMEM, "out of memory");
  path[plen] = 0;
  *path_out = path;
  return 0;
}

int stead__backend_open(const char *spec, stead__backend **out) {
  if (!spec || !out)
    return stead__err(STEAD_EINVAL, "storage spec is NULL");
  if (strcmp(spec, "memory") == 0)
    return stead__mem_open(out);
  if (strncmp(spec, "sqlite:", 7) == 0) {
    char *path = NULL;
    stead__backend_opts o;
    int rc = stead__sqlite_spec_parse(spec + 7, &path, &o);
    if (rc)
      return rc;
    rc = stead__sqlite_open(path, &o, out);
    free(path);
    return rc;
  }
  if (strncmp(spec, "postgres://", 11) == 0 || strncmp(spec, "postgresql://", 13) == 0)
    return stead__pg_open(spec, out);
  return stead__err(STEAD_ENOTSUP,
                    "unknown storage backend '%s' (use memory, sqlite:PATH or "
                    "postgres://...)",
                    spec);
}

void stead__backend_close(stead__backend *b) {
  if (b)
    b->vt->close(b);
}
