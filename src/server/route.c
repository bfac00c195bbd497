/*
 * route.c -- matches HTTP method + path to a gateway route and decodes its
 * parameters.
 *
 * Owns: nothing global. Every function is pure and thread-safe.
 * Invariants: a returned route's strings are decoded, NUL-free, validated
 * (names by stead__check_name, ids and topics by stead__check_utf8), so
 * the gateway can hand them to the runtime as they are. The path is never
 * decoded as a whole before splitting: "%2F" inside an id stays part of the
 * id, which is the only way to address an object whose id contains '/'.
 */
#include "server/route.h"

#include "util/util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SEGS 6

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

long stead__pct_decode(const char *src, size_t len, char *dst) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] != '%') {
      dst[o++] = src[i];
      continue;
    }
    if (i + 2 >= len)
      return -1;
    int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
    if (hi < 0 || lo < 0)
      return -1;
    dst[o++] = (char)(hi * 16 + lo);
    i += 2;
  }
  dst[o] = '\0';
  return (long)o;
}

char *stead__pct_encode(const char *src, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  char *out = malloc(len * 3 + 1);
  if (!out)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)src[i];
    int unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                     c == '~';
    if (unreserved) {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  out[o] = '\0';
  return out;
}

int stead__http_status(int code) {
  switch (code) {
  case 0:
    return 200;
  case STEAD_EINVAL:
    return 400;
  case STEAD_EPROTO:
    return 400;
  case STEAD_ENOCLASS:
    return 404;
  case STEAD_ENOMETHOD:
    return 404;
  case STEAD_ENOTFOUND:
    return 404;
  case STEAD_EREJECTED:
    return 403;
  case STEAD_ECONFLICT:
    return 409;
  case STEAD_EEXIST:
    return 409;
  case STEAD_ETOOBIG:
    return 413;
  case STEAD_EOVERLOAD:
    return 429;
  case STEAD_EHANDLER:
    return 500;
  case STEAD_ENOTSUP:
    return 501;
  case STEAD_ECLOSED:
    return 503;
  case STEAD_ESTORAGE:
    return 503;
  case STEAD_ENOTOWNER:
    return 503;
  case STEAD_ENOMEM:
    return 503;
  case STEAD_ETIMEDOUT:
  case STEAD_EUNKNOWN: /* like a timeout: it may have happened */
    return 504;
  default:
    return 500;
  }
}

const char *stead__route_label(stead__route_kind kind) {
  switch (kind) {
  case STEAD__R_CALL:
    return "call";
  case STEAD__R_OBJECT:
    return "object";
  case STEAD__R_EMIT:
    return "events";
  case STEAD__R_METRICS:
    return "metrics";
  case STEAD__R_HEALTHZ:
    return "healthz";
  case STEAD__R_CLUSTER:
    return "cluster";
  case STEAD__R_CONNECT:
    return "connect";
  case STEAD__R_STREAM:
    return "event_stream";
  default:
    return "unknown";
  }
}

void stead__route_free(stead__route *r) {
  if (!r)
    return;
  free(r->mem_);
  memset(r, 0, sizeof *r);
}

typedef struct segs {
  int n;
  const char *p[MAX_SEGS];
  size_t len[MAX_SEGS];
} segs;

/* Splits "/a/b/c" into raw segments. Returns -1 when there are more than
 * MAX_SEGS (no route is that deep) or the path does not start with '/'. */
static int split(const char *path, segs *s) {
  s->n = 0;
  if (path[0] != '/')
    return -1;
  const char *p = path + 1;
  for (;;) {
    if (s->n == MAX_SEGS)
      return -1;
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    s->p[s->n] = p;
    s->len[s->n] = len;
    s->n++;
    if (!slash)
      return 0;
    p = slash + 1;
  }
}

static int seg_is(const segs *s, int i, const char *lit) {
  return s->len[i] == strlen(lit) && memcmp(s->p[i], lit, s->len[i]) == 0;
}

/* Decodes segment i into *dst (inside mem at *off) and validates it as
 * `what`; kind 'n' = name, 'u' = UTF-8 string. */
static int take(const segs *s, int i, char *mem, size_t *off, char **dst,
                const char *what, char kind, int *status) {
  if (s->len[i] == 0) {
    *status = 400;
    return stead__err(STEAD_EINVAL, "%s is empty in the path", what);
  }
  char *d = mem + *off;
  long n = stead__pct_decode(s->p[i], s->len[i], d);
  if (n < 0) {
    *status = 400;
    return stead__err(STEAD_EINVAL,
                      "%s has a bad percent-encoding (%% must be followed by "
                      "two hex digits)",
                      what);
  }
  if (memchr(d, '\0', (size_t)n)) {
    *status = 400;
    return stead__err(STEAD_EINVAL, "%s contains a NUL byte", what);
  }
  int rc = kind == 'n' ? stead__check_name(what, d)
                       : stead__check_utf8(what, d, STEAD__MAX_ID);
  if (rc < 0) {
    *status = rc == STEAD_ETOOBIG && kind == 'u' ? 413 : 400;
    return rc;
  }
  *dst = d;
  *off += (size_t)n + 1;
  return 0;
}

static int wrong_method(const char *want, int *status, const char **allow,
                        const char *m) {
  *status = 405;
  *allow = want;
  return stead__err(STEAD_EINVAL, "method %s is not allowed here; use %s", m, want);
}

int stead__route_match(const char *http_method, const char *path, stead__route *out,
                       int *http_status, const char **allow) {
  memset(out, 0, sizeof *out);
  *allow = NULL;
  segs s;
  if (!http_method || !path || split(path, &s) != 0) {
    *http_status = 404;
    return stead__err(STEAD_ENOTFOUND, "no such route");
  }
  int get = strcmp(http_method, "GET") == 0 || strcmp(http_method, "HEAD") == 0;
  int post = strcmp(http_method, "POST") == 0;

  stead__route_kind kind = STEAD__R_NONE;
  if (s.n == 1 && seg_is(&s, 0, "metrics"))
    kind = STEAD__R_METRICS;
  else if (s.n == 1 && seg_is(&s, 0, "healthz"))
    kind = STEAD__R_HEALTHZ;
  else if (s.n == 2 && seg_is(&s, 0, "v1") && seg_is(&s, 1, "cluster"))
    kind = STEAD__R_CLUSTER;
  else if (s.n == 2 && seg_is(&s, 0, "v1") && seg_is(&s, 1, "events"))
    kind = STEAD__R_STREAM;
  else if (s.n == 3 && seg_is(&s, 0, "v1") && seg_is(&s, 1, "events"))
    kind = STEAD__R_EMIT;
  else if (s.n == 4 && seg_is(&s, 0, "v1") && seg_is(&s, 1, "objects"))
    kind = STEAD__R_OBJECT;
  else if (s.n == 5 && seg_is(&s, 0, "v1") && seg_is(&s, 1, "objects"))
    /* GET .../connect is the WebSocket route; POST .../connect stays a
     * call of a method named "connect". */
    kind = get && seg_is(&s, 4, "connect") ? STEAD__R_CONNECT : STEAD__R_CALL;
  if (kind == STEAD__R_NONE) {
    *http_status = 404;
    return stead__err(STEAD_ENOTFOUND, "no such route");
  }
  int want_post = kind == STEAD__R_CALL || kind == STEAD__R_EMIT;
  if (want_post && !post)
    return wrong_method("POST", http_status, allow, http_method);
  if (!want_post && !get)
    return wrong_method("GET", http_status, allow, http_method);

  out->kind = kind;
  if (kind == STEAD__R_METRICS || kind == STEAD__R_HEALTHZ || kind == STEAD__R_CLUSTER ||
      kind == STEAD__R_STREAM)
    return 0;

  size_t total = 0;
  for (int i = 2; i < s.n; i++)
    total += s.len[i] + 1;
  char *mem = malloc(total);
  if (!mem) {
    out->kind = STEAD__R_NONE;
    *http_status = 500;
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  out->mem_ = mem;
  size_t off = 0;
  int rc = 0;
  if (kind == STEAD__R_EMIT) {
    rc = take(&s, 2, mem, &off, &out->topic, "topic", 'u', http_status);
  } else {
    rc = take(&s, 2, mem, &off, &out->cls, "class", 'n', http_status);
    if (rc == 0)
      rc = take(&s, 3, mem, &off, &out->id, "id", 'u', http_status);
    if (rc == 0 && (kind == STEAD__R_CALL || kind == STEAD__R_CONNECT))
      rc = take(&s, 4, mem, &off, &out->method, "method", 'n', http_status);
  }
  if (rc < 0) {
    stead__route_free(out);
    return rc;
  }
  return 0;
}
