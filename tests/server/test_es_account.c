/*
 * test_es_account.c -- the event-sourced "account" example end to end
 * through the real `stead serve` binary with SQLite storage: deposit,
 * withdraw, balance and history over HTTP; the 500 with its message on an
 * overdraft (not journaled); a restart (SIGTERM, then a new server on the
 * same --data) keeps every balance; a kill -9 keeps every acknowledged
 * deposit.
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static char g_data[300]; /* the data directory every server of a test uses */

static void start(srv *s) {
  const char *extra[] = {"--storage", "sqlite", "--data", g_data, NULL};
  assert_int_equal(srv_start(s, extra), 0);
}

static long post(const srv *s, const char *id, const char *method, const char *body,
                 char *out, size_t outn) {
  char path[256];
  snprintf(path, sizeof path, "/v1/objects/account/%s/%s", id, method);
  resp r;
  long st =
      http(s, "POST", path, body, body ? strlen(body) : 0, "application/json", NULL, &r);
  if (out)
    snprintf(out, outn, "%s", r.body ? r.body : "");
  resp_free(&r);
  return st;
}

static void expect(const srv *s, const char *id, const char *method, const char *body,
                   long status, const char *want) {
  char out[4096];
  long st = post(s, id, method, body, out, sizeof out);
  if (st != status || (want && strstr(out, want) == NULL))
    fail_msg("%s %s(%s): status %ld body %s; want %ld with %s", id, method,
             body ? body : "", st, out, status, want ? want : "");
}

/* A fresh data directory for the servers of one test. */
static void new_data(void) {
  char dir[] = "/tmp/stead-es-srv-XXXXXX";
  assert_non_null(mkdtemp(dir));
  snprintf(g_data, sizeof g_data, "%s/data", dir);
}

static int setup(void **state) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  return 0;
}

static int teardown(void **state) {
  curl_global_cleanup();
  return 0;
}

static void test_account_over_http_with_restart(void **state) {
  srv s;
  new_data();
  start(&s);
  expect(&s, "alice", "balance", NULL, 200, "0");
  expect(&s, "alice", "deposit", "100", 200, "100");
  expect(&s, "alice", "withdraw", "30", 200, "70");
  expect(
      &s, "alice", "withdraw", "500", 500,
      "{\"error\":{\"code\":\"EHANDLER\",\"message\":\"insufficient funds: balance 70, "
      "withdraw 500\"");
  expect(&s, "alice", "deposit", "-1", 500, "amount must be > 0");
  expect(&s, "alice", "deposit", "abc", 400, "EINVAL"); /* the gateway checks JSON */
  expect(&s, "alice", "deposit", "\"7\"", 500, "expected a JSON integer");
  expect(&s, "alice", "transfer", "1", 404, "ENOMETHOD");
  expect(&s, "alice", "balance", NULL, 200, "70");
  expect(&s, "alice", "history", NULL, 200,
         "[{\"op\":\"deposit\",\"amount\":100,\"balance\":100},"
         "{\"op\":\"withdraw\",\"amount\":30,\"balance\":70}]");
  /* enough for a snapshot (every 100) on bob */
  for (int i = 1; i <= 120; i++) {
    char want[16];
    snprintf(want, sizeof want, "%d", i);
    expect(&s, "bob", "deposit", "1", 200, want);
  }
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);

  start(&s);
  expect(&s, "alice", "balance", NULL, 200, "70");
  expect(&s, "bob", "balance", NULL, 200, "120");
  /* the overdraft was never journaled: history has two entries */
  char out[4096];
  assert_int_equal(post(&s, "alice", "history", NULL, out, sizeof out), 200);
  int n = 0;
  for (char *p = out; (p = strstr(p, "\"op\"")) != NULL; p++)
    n++;
  assert_int_equal(n, 2);
  expect(&s, "alice", "withdraw", "70", 200, "0");
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

static void test_account_survives_kill9(void **state) {
  srv s;
  new_data();
  start(&s);
  int acked = 0;
  for (int i = 1; i <= 40; i++) {
    char want[16];
    snprintf(want, sizeof want, "%d", 5 * i);
    expect(&s, "carol", "deposit", "5", 200, want);
    acked = i;
  }
  srv_stop(&s, SIGKILL, 5000);
  start(&s);
  char want[16];
  snprintf(want, sizeof want, "%d", 5 * acked);
  expect(&s, "carol", "balance", NULL, 200, want);
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_account_over_http_with_restart),
      cmocka_unit_test(test_account_survives_kill9),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
