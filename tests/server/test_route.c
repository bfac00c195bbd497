/*
 * test_route.c -- the HTTP router and percent-coding, without a server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/route.h"
#include "stead.h"

static int match(const char *m, const char *path, stead__route *r, int *status,
                 const char **allow) {
  return stead__route_match(m, path, r, status, allow);
}

static void test_call_route(void **state) {
  stead__route r;
  int st = 0;
  const char *allow;
  assert_int_equal(match("POST", "/v1/objects/echo/a%2Fb%20c/echo", &r, &st, &allow), 0);
  assert_int_equal(r.kind, STEAD__R_CALL);
  assert_string_equal(r.cls, "echo");
  assert_string_equal(r.id, "a/b c");
  assert_string_equal(r.method, "echo");
  stead__route_free(&r);
  /* '+' is literal in paths; UTF-8 ids pass */
  assert_int_equal(match("POST", "/v1/objects/echo/a+b%C3%A9/echo", &r, &st, &allow), 0);
  assert_string_equal(r.id, "a+b\xC3\xA9");
  stead__route_free(&r);
}

static void test_other_routes(void **state) {
  stead__route r;
  int st = 0;
  const char *allow;
  assert_int_equal(match("GET", "/metrics", &r, &st, &allow), 0);
  assert_int_equal(r.kind, STEAD__R_METRICS);
  assert_int_equal(match("GET", "/healthz", &r, &st, &allow), 0);
  assert_int_equal(r.kind, STEAD__R_HEALTHZ);
  assert_int_equal(match("HEAD", "/v1/cluster", &r, &st, &allow), 0);
  assert_int_equal(r.kind, STEAD__R_CLUSTER);
  assert_int_equal(match("GET", "/v1/objects/echo/x", &r, &st, &allow), 0);
  assert_int_equal(r.kind, STEAD__R_OBJECT);
  assert_string_equal(r.id, "x");
  assert_null(r.method);
  stead__route_free(&r);
  assert_int_equal(match("POST", "/v1/events/a.b.c", &r, &st, &allow), 0);
  assert_int_equal(r.kind, STEAD__R_EMIT);
  assert_string_equal(r.topic, "a.b.c");
  stead__route_free(&r);
  assert_int_equal(match("GET", "/v1/events", &r, &st, &allow), 0);
  assert_int_equal(r.kind, STEAD__R_STREAM);
  stead__route_free(&r);
  assert_int_equal(match("POST", "/v1/events", &r, &st, &allow), STEAD_EINVAL);
  assert_int_equal(st, 405);
  assert_string_equal(allow, "GET");
  assert_int_equal(match("GET", "/v1/events/a.b", &r, &st, &allow), STEAD_EINVAL);
  assert_int_equal(st, 405);
  assert_string_equal(allow, "POST");
}

static void expect_fail(const char *m, const char *path, int want_status) {
  stead__route r;
  int st = 0;
  const char *allow = NULL;
  int rc = match(m, path, &r, &st, &allow);
  assert_true(rc < 0);
  assert_int_equal(st, want_status);
  assert_int_equal(r.kind, STEAD__R_NONE);
  assert_null(r.mem_);
  if (want_status == 405)
    assert_non_null(allow);
}

static void test_errors(void **state) {
  expect_fail("GET", "/", 404);
  expect_fail("GET", "", 404);
  expect_fail("GET", "metrics", 404);
  expect_fail("GET", "/nope", 404);
  expect_fail("GET", "/v1/objects", 404);
  expect_fail("POST", "/v1/objects/a/b/c/d", 404);
  expect_fail("POST", "/a/b/c/d/e/f/g/h", 404);
  expect_fail("POST", "/v1/objects/echo/x/echo/", 404);
  expect_fail("GET", "/v1/objects/echo/x/echo", 405);
  expect_fail("DELETE", "/v1/objects/echo/x/echo", 405);
  expect_fail("POST", "/metrics", 405);
  expect_fail("PUT", "/v1/objects/echo/x", 405);
  /* bad encodings */
  expect_fail("POST", "/v1/objects/echo/%zz/echo", 400);
  expect_fail("POST", "/v1/objects/echo/abc%/echo", 400);
  expect_fail("POST", "/v1/objects/echo/abc%4/echo", 400);
  expect_fail("POST", "/v1/objects/echo/%00/echo", 400);
  expect_fail("POST", "/v1/objects/echo/%FF/echo", 400);
  expect_fail("POST", "/v1/objects/echo/%C3/echo", 400);
  expect_fail("POST", "/v1/objects/echo/%ED%A0%80/echo", 400); /* surrogate */
  expect_fail("POST", "/v1/objects/echo//echo", 400);
  expect_fail("POST", "/v1/objects/ech%20o/x/echo", 400);
  expect_fail("POST", "/v1/objects/echo/x/ec!ho", 400);
  expect_fail("POST", "/v1/events/", 400);
}

static void test_id_limit(void **state) {
  char path[4000];
  char id[1100];
  memset(id, 'a', sizeof id);
  id[1024] = '\0';
  snprintf(path, sizeof path, "/v1/objects/echo/%s/echo", id);
  stead__route r;
  int st = 0;
  const char *allow;
  assert_int_equal(match("POST", path, &r, &st, &allow), 0);
  assert_int_equal(strlen(r.id), 1024);
  stead__route_free(&r);
  id[1025] = '\0';
  id[1024] = 'a';
  snprintf(path, sizeof path, "/v1/objects/echo/%s/echo", id);
  expect_fail("POST", path, 413);
}

static void test_pct(void **state) {
  char out[64];
  assert_int_equal(stead__pct_decode("a%41%6a", 7, out), 3);
  assert_string_equal(out, "aAj");
  assert_int_equal(stead__pct_decode("%4", 2, out), -1);
  assert_int_equal(stead__pct_decode("%", 1, out), -1);
  assert_int_equal(stead__pct_decode("%g0", 3, out), -1);
  assert_int_equal(stead__pct_decode("%00x", 4, out), 2);
  assert_int_equal(out[0], '\0');
  const char raw[] = "a/b c\xC3\xA9~_.-";
  char *enc = stead__pct_encode(raw, strlen(raw));
  assert_string_equal(enc, "a%2Fb%20c%C3%A9~_.-");
  long n = stead__pct_decode(enc, strlen(enc), out);
  assert_int_equal(n, (long)strlen(raw));
  assert_string_equal(out, raw);
  free(enc);
}

static void test_status_map(void **state) {
  assert_int_equal(stead__http_status(0), 200);
  assert_int_equal(stead__http_status(STEAD_EINVAL), 400);
  assert_int_equal(stead__http_status(STEAD_ENOCLASS), 404);
  assert_int_equal(stead__http_status(STEAD_ENOMETHOD), 404);
  assert_int_equal(stead__http_status(STEAD_ETOOBIG), 413);
  assert_int_equal(stead__http_status(STEAD_EOVERLOAD), 429);
  assert_int_equal(stead__http_status(STEAD_EHANDLER), 500);
  assert_int_equal(stead__http_status(STEAD_ESTORAGE), 503);
  assert_int_equal(stead__http_status(STEAD_ECLOSED), 503);
  assert_int_equal(stead__http_status(STEAD_ETIMEDOUT), 504);
  assert_int_equal(stead__http_status(STEAD_EUNKNOWN), 504);
  assert_int_equal(stead__http_status(STEAD_ENOTSUP), 501);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_call_route), cmocka_unit_test(test_other_routes),
      cmocka_unit_test(test_errors),     cmocka_unit_test(test_id_limit),
      cmocka_unit_test(test_pct),        cmocka_unit_test(test_status_map),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
