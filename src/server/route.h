/*
 * route.h -- the HTTP gateway's request router: pure functions, no I/O, so
 * the fuzzer and unit tests exercise exactly what the server runs.
 *
 * A path is split on '/', each segment is percent-decoded on its own (so an
 * id may contain an encoded '/'), and names are validated: class and method
 * are names ([A-Za-z0-9_.-]), an id is 1..1024 bytes of UTF-8 without NUL,
 * a topic is 1..1024 bytes of UTF-8.
 */
#ifndef STEAD_SERVER_ROUTE_H
#define STEAD_SERVER_ROUTE_H

#include <stddef.h>

typedef enum stead__route_kind {
  STEAD__R_NONE = 0, /* no route matched: see http_status */
  STEAD__R_CALL,     /* POST /v1/objects/{class}/{id}/{method} */
  STEAD__R_OBJECT,   /* GET  /v1/objects/{class}/{id} */
  STEAD__R_EMIT,     /* POST /v1/events/{topic} */
  STEAD__R_METRICS,  /* GET  /metrics */
  STEAD__R_HEALTHZ,  /* GET  /healthz */
  STEAD__R_CLUSTER,  /* GET  /v1/cluster */
  STEAD__R_STREAM,   /* GET  /v1/events (Server-Sent Events) */
  STEAD__R_CONNECT,  /* GET  /v1/objects/{class}/{id}/connect (WebSocket) */
  STEAD__R_COUNT
} stead__route_kind;

/* A matched route. The strings are decoded copies owned by the struct
 * (one allocation); free with stead__route_free. Unused fields are NULL. */
typedef struct stead__route {
  stead__route_kind kind;
  char *cls;
  char *id;
  char *method;
  char *topic;
  char *mem_; /* backing store of the strings above */
} stead__route;

/* Matches `http_method` ("GET", "POST"...) and `path` (the URL path, still
 * percent-encoded, without the query string). On success returns 0 and
 * fills *out. On failure returns a negative STEAD_E* code, sets the
 * thread's error message, leaves *out empty, and sets *http_status:
 * 404 (unknown route), 405 (known route, wrong method; *allow receives the
 * allowed method, static storage), 400 (bad percent-encoding, NUL in a
 * segment, empty segment, bad name or bad UTF-8), 413 (id or topic over
 * 1024 bytes), 500 (out of memory). */
int stead__route_match(const char *http_method, const char *path, stead__route *out,
                       int *http_status, const char **allow);

void stead__route_free(stead__route *r);

/* The route's label for metrics ("call", "object"...); "unknown" for NONE. */
const char *stead__route_label(stead__route_kind kind);

/* Percent-decodes src[0..len) into dst (capacity at least len + 1; the
 * result is NUL-terminated). '+' is kept literally (paths are not form
 * data). Returns the decoded length, or -1 on a bad escape ('%' not
 * followed by two hex digits). A decoded NUL byte is returned as-is; the
 * caller decides whether it is allowed. */
long stead__pct_decode(const char *src, size_t len, char *dst);

/* Percent-encodes every byte outside the RFC 3986 unreserved set into a
 * malloc'd NUL-terminated string (caller frees); NULL on out of memory. */
char *stead__pct_encode(const char *src, size_t len);

/* The HTTP status for a stead error code (EINVAL -> 400, ENOCLASS -> 404,
 * ETIMEDOUT -> 504...). 0 maps to 200. */
int stead__http_status(int code);

#endif
