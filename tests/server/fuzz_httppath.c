/*
 * fuzz_httppath.c -- libFuzzer target for the gateway's router: the first
 * byte picks the HTTP method, the rest is the path. Checks the router's
 * promises, not just absence of crashes: a match yields validated,
 * NUL-free strings whose re-encoding routes back to the same values; a
 * miss yields a 4xx status and an empty route.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/route.h"
#include "util/util.h"

static const char *const METHODS[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH"};

static void check_roundtrip(const char *method, const stead__route *r) {
  if (r->kind != STEAD__R_CALL)
    return;
  char *c = stead__pct_encode(r->cls, strlen(r->cls));
  char *i = stead__pct_encode(r->id, strlen(r->id));
  char *m = stead__pct_encode(r->method, strlen(r->method));
  size_t cap = strlen(c) + strlen(i) + strlen(m) + 32;
  char *path = malloc(cap);
  if (!c || !i || !m || !path)
    abort();
  strcpy(path, "/v1/objects/");
  strcat(path, c);
  strcat(path, "/");
  strcat(path, i);
  strcat(path, "/");
  strcat(path, m);
  stead__route r2;
  int st;
  const char *allow;
  if (stead__route_match(method, path, &r2, &st, &allow) != 0)
    abort();
  if (strcmp(r2.cls, r->cls) || strcmp(r2.id, r->id) || strcmp(r2.method, r->method))
    abort();
  stead__route_free(&r2);
  free(c);
  free(i);
  free(m);
  free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const char *method = METHODS[data[0] % 6];
  char *path = malloc(size);
  if (!path)
    return 0;
  memcpy(path, data + 1, size - 1);
  path[size - 1] = '\0'; /* MHD hands the router a C string */
  stead__route r;
  int st = 0;
  const char *allow = NULL;
  int rc = stead__route_match(method, path, &r, &st, &allow);
  if (rc == 0) {
    if (r.kind == STEAD__R_NONE)
      abort();
    if (r.cls && stead__check_name("class", r.cls) != 0)
      abort();
    if (r.method && stead__check_name("method", r.method) != 0)
      abort();
    if (r.id && stead__check_utf8("id", r.id, STEAD__MAX_ID) != 0)
      abort();
    if (r.topic && stead__check_utf8("topic", r.topic, STEAD__MAX_ID) != 0)
      abort();
    check_roundtrip(method, &r);
    stead__route_free(&r);
  } else {
    if (r.kind != STEAD__R_NONE || r.mem_ || st < 400 || st > 500)
      abort();
    if ((st == 405) != (allow != NULL))
      abort();
  }
  free(path);
  return 0;
}
