/*
 * test_spec.c -- storage spec strings: "sqlite:PATH?opts" and the
 * options of a postgres URI, parsed without opening anything.
 */
#include "testutil.h"

#include "storage/backend.h"
#include "storage/pg_backend.h"

#include <stdlib.h>

static void test_sqlite_spec(void **state) {
  char *path;
  stead__backend_opts o;
  assert_rc(stead__sqlite_spec_parse("/d/x.db", &path, &o), 0);
  assert_string_equal(path, "/d/x.db");
  assert_int_equal(o.durability, STEAD__DURABLE_FULL);
  assert_int_equal(o.busy_timeout_ms, 5000);
  free(path);
  assert_rc(
      stead__sqlite_spec_parse("x.db?durability=normal&busy_timeout_ms=7", &path, &o), 0);
  assert_string_equal(path, "x.db");
  assert_int_equal(o.durability, STEAD__DURABLE_NORMAL);
  assert_int_equal(o.busy_timeout_ms, 7);
  free(path);
  static const char *const bad[] = {"",
                                    "?durability=full",
                                    "x?durability",
                                    "x?durability=fast",
                                    "x?busy_timeout_ms=0",
                                    "x?busy_timeout_ms=1000000001",
                                    "x?busy_timeout_ms=12345678901234567",
                                    "x?sync=off"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    path = (char *)1;
    assert_rc(stead__sqlite_spec_parse(bad[i], &path, &o), STEAD_EINVAL);
    assert_null(path);
  }
}

static void test_pg_uri(void **state) {
  stead__pg_uri u;
  assert_rc(stead__pg_uri_parse("postgres://u@h:5/db", &u), 0);
  assert_string_equal(u.conninfo, "postgres://u@h:5/db?connect_timeout=5");
  assert_string_equal(u.prefix, "stead");
  assert_int_equal(u.pool, 4);
  free(u.conninfo);
  assert_rc(stead__pg_uri_parse("postgres://h/db?prefix=app_1&sslmode=disable&pool=9&"
                                "durability=normal&statement_timeout_ms=50&connect_"
                                "timeout=1",
                                &u),
            0);
  assert_string_equal(u.conninfo, "postgres://h/db?sslmode=disable&connect_timeout=1");
  assert_string_equal(u.prefix, "app_1");
  assert_int_equal(u.pool, 9);
  assert_int_equal(u.normal, 1);
  assert_int_equal(u.stmt_timeout_ms, 50);
  assert_int_equal(u.lock_timeout_ms, 0);
  assert_int_equal(u.idle_tx_ms, 10000); /* the default */
  free(u.conninfo);
  assert_rc(
      stead__pg_uri_parse("postgres://h/db?lock_timeout_ms=300&idle_tx_timeout_ms=0", &u),
      0);
  assert_int_equal(u.lock_timeout_ms, 300);
  assert_int_equal(u.idle_tx_ms, 0);
  free(u.conninfo);
  static const char *const bad[] = {
      "postgres://h/db?prefix=1a",
      "postgres://h/db?prefix=A",
      "postgres://h/db?pool=0",
      "postgres://h/db?pool=65",
      "postgres://h/db?pool",
      "postgres://h/db?durability=x",
      "postgres://h/db?bogus=1",
      "postgres://[::1/db",
      "postgres://h/db?lock_timeout_ms=0",
      "postgres://h/db?idle_tx_timeout_ms=-1",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_rc(stead__pg_uri_parse(bad[i], &u), STEAD_EINVAL);
    assert_null(u.conninfo);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sqlite_spec),
      cmocka_unit_test(test_pg_uri),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
