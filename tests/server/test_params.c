/*
 * test_params.c -- a call's query parameters and headers
 * (server/params.c), without a server.
 */
#include "testutil.h"

#include "server/params.h"

static int parse(const char *t, const char *m, const char *ct, const char *cl,
                 stead__call_params *p, int *st) {
  return stead__call_params_parse(t, m, ct, cl, 100, 777, p, st);
}

static void test_defaults_and_values(void **state) {
  stead__call_params p;
  int st;
  assert_rc(parse(NULL, NULL, NULL, NULL, &p, &st), 0);
  assert_int_equal(p.timeout_ms, 777);
  assert_false(p.mode_send);
  assert_false(p.json_body);
  assert_rc(parse("%32%35", "se%6Ed", "application/json; charset=utf-8", "100", &p, &st),
            0);
  assert_int_equal(p.timeout_ms, 25);
  assert_true(p.mode_send);
  assert_true(p.json_body);
  assert_rc(parse("3600000", "call", "text/plain", "0", &p, &st), 0);
  assert_int_equal(p.timeout_ms, 3600000);
  assert_false(p.mode_send);
}

static void test_bad_timeout(void **state) {
  static const char *const bad[] = {
      "", "0", "3600001", "-5", "+5", " 5", "5%00", "%zz", "1e3", "99999999999999999999"};
  stead__call_params p;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int st = 0;
    assert_rc(parse(bad[i], NULL, NULL, NULL, &p, &st), STEAD_EINVAL);
    assert_int_equal(st, 400);
    assert_non_null(strstr(stead_errmsg(), "timeout_ms"));
  }
}

/* Found by fuzz_request's re-encoding check: a decoded NUL used to end
 * the value early, so "send%00junk" was taken as "send". */
static void test_nul_in_value_refused(void **state) {
  stead__call_params p;
  int st;
  assert_rc(parse(NULL, "send%00junk", NULL, NULL, &p, &st), STEAD_EINVAL);
  assert_int_equal(st, 400);
  assert_rc(parse("50%00", NULL, NULL, NULL, &p, &st), STEAD_EINVAL);
}

static void test_bad_mode_and_length(void **state) {
  stead__call_params p;
  int st;
  assert_rc(parse(NULL, "SEND", NULL, NULL, &p, &st), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "mode"));
  char longv[STEAD__PARAM_MAX + 2];
  memset(longv, '1', sizeof longv - 1);
  longv[sizeof longv - 1] = 0;
  assert_rc(parse(longv, NULL, NULL, NULL, &p, &st), STEAD_EINVAL);
  assert_rc(parse(NULL, NULL, NULL, "101", &p, &st), STEAD_ETOOBIG);
  assert_int_equal(st, 413);
  assert_non_null(strstr(stead_errmsg(), "limit is 100"));
  assert_rc(parse(NULL, NULL, NULL, "99999999999999999999999", &p, &st), STEAD_ETOOBIG);
  assert_rc(parse(NULL, NULL, NULL, "12abc", &p, &st), STEAD_EINVAL);
  assert_int_equal(st, 400);
  assert_rc(parse(NULL, NULL, NULL, "", &p, &st), STEAD_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_values),
      cmocka_unit_test(test_bad_timeout),
      cmocka_unit_test(test_nul_in_value_refused),
      cmocka_unit_test(test_bad_mode_and_length),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
