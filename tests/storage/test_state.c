/*
 * test_state.c -- state structs: defaults, round trips, schema evolution
 * (added fields get defaults, removed fields are ignored), strict decoding
 * (future version, bad magic, truncation, type change), change detection,
 * schema validation, ownership helpers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/state.h"

#include <stdlib.h>
#include <string.h>

typedef struct acct {
  int64_t balance;
  double rate;
  bool frozen;
  char *owner;
  stead_bytes blob;
  int64_t opened;
} acct;

static const stead_field acct_fields[] = {
    STEAD_FIELD_INT64(acct, balance, 100),
    STEAD_FIELD_DOUBLE(acct, rate, 0.5),
    STEAD_FIELD_BOOL(acct, frozen, true),
    STEAD_FIELD_STRING(acct, owner, "nobody"),
    STEAD_FIELD_BYTES(acct, blob, "\x01\x02", 2),
    STEAD_FIELD_TIMESTAMP(acct, opened, -1),
};
static const stead_schema acct_schema = STEAD_SCHEMA(acct, acct_fields);

/* v1 of the same struct: fewer fields, one extra that v2 dropped. */
typedef struct acct_v1 {
  int64_t balance;
  char *legacy;
} acct_v1;
static const stead_field v1_fields[] = {
    STEAD_FIELD_INT64(acct_v1, balance, 0),
    STEAD_FIELD_STRING(acct_v1, legacy, "old"),
};
static const stead_schema v1_schema = STEAD_SCHEMA(acct_v1, v1_fields);

static void test_defaults_and_roundtrip(void **state) {
  acct a;
  assert_int_equal(stead_state_init(&acct_schema, &a), 0);
  assert_int_equal(a.balance, 100);
  assert_true(a.rate == 0.5);
  assert_true(a.frozen);
  assert_string_equal(a.owner, "nobody");
  assert_int_equal(a.blob.len, 2);
  assert_int_equal(a.opened, -1);
  a.balance = INT64_MIN;
  a.rate = -1e300;
  a.frozen = false;
  assert_int_equal(stead_state_set_string(&a.owner, "Zoë"), 0);
  assert_int_equal(stead_state_set_bytes(&a.blob, "\0\xff\0", 3), 0);
  stead__buf rec = {0};
  assert_int_equal(stead__state_encode(&acct_schema, &a, &rec), 0);
  acct b = {0};
  assert_int_equal(stead__state_decode(&acct_schema, rec.data, rec.len, &b), 0);
  assert_true(b.balance == INT64_MIN);
  assert_true(b.rate == -1e300);
  assert_false(b.frozen);
  assert_string_equal(b.owner, "Zoë");
  assert_int_equal(b.blob.len, 3);
  assert_memory_equal(b.blob.data, "\0\xff\0", 3);
  /* NULL string and empty bytes survive too. */
  stead_state_set_string(&a.owner, NULL);
  stead_state_set_bytes(&a.blob, NULL, 0);
  rec.len = 0;
  assert_int_equal(stead__state_encode(&acct_schema, &a, &rec), 0);
  assert_int_equal(stead__state_decode(&acct_schema, rec.data, rec.len, &b), 0);
  assert_true(b.owner == NULL || b.owner[0] == 0);
  assert_int_equal(b.blob.len, 0);
  stead_state_release(&acct_schema, &a);
  stead_state_release(&acct_schema, &b);
  assert_null(b.owner);
  stead__buf_free(&rec);
}

static void test_schema_evolution(void **state) {
  acct_v1 old;
  stead_state_init(&v1_schema, &old);
  old.balance = 42;
  stead__buf rec = {0};
  assert_int_equal(stead__state_encode(&v1_schema, &old, &rec), 0);
  /* New schema reads an old record: known field kept, new fields default,
   * the dropped "legacy" field ignored. */
  acct a = {0};
  assert_int_equal(stead__state_decode(&acct_schema, rec.data, rec.len, &a), 0);
  assert_int_equal(a.balance, 42);
  assert_string_equal(a.owner, "nobody");
  assert_true(a.frozen);
  /* And the old schema reads a new record. */
  rec.len = 0;
  a.balance = 7;
  stead__state_encode(&acct_schema, &a, &rec);
  acct_v1 back = {0};
  assert_int_equal(stead__state_decode(&v1_schema, rec.data, rec.len, &back), 0);
  assert_int_equal(back.balance, 7);
  assert_string_equal(back.legacy, "old");
  stead_state_release(&v1_schema, &old);
  stead_state_release(&v1_schema, &back);
  stead_state_release(&acct_schema, &a);
  stead__buf_free(&rec);
}

static void expect_corrupt(const void *data, size_t len, const char *msg_part) {
  acct a;
  stead_state_init(&acct_schema, &a);
  a.balance = 555;
  assert_int_equal(stead__state_decode(&acct_schema, data, len, &a), STEAD_ECORRUPT);
  if (msg_part)
    assert_non_null(strstr(stead_errmsg(), msg_part));
  /* Unchanged on failure. */
  assert_int_equal(a.balance, 555);
  assert_string_equal(a.owner, "nobody");
  stead_state_release(&acct_schema, &a);
}

static void test_strict_decoding(void **state) {
  expect_corrupt("", 0, "too short");
  expect_corrupt("X\x01\x00", 3, "magic");
  expect_corrupt("S\x02\x00", 3, "version 2");
  expect_corrupt("S\x01", 2, "truncated");
  expect_corrupt("S\x01\x00\x00", 4, "after the last field");
  /* balance stored as a string: a type change. */
  const uint8_t typechg[] = {'S', 1, 1, 7, 'b', 'a', 'l', 'a', 'n', 'c', 'e', 4, 1, 'x'};
  expect_corrupt(typechg, sizeof typechg, "stored as string");
  /* length past the end */
  const uint8_t past[] = {'S', 1, 1, 1, 'z', 5, 0x7f};
  expect_corrupt(past, sizeof past, "past the end");
  /* huge field count */
  const uint8_t many[] = {'S', 1, 0xff, 0xff, 0xff, 0xff, 0x0f};
  expect_corrupt(many, sizeof many, "field count");
  /* bool 2, string with NUL, bad UTF-8, duplicate field, unknown type */
  const uint8_t badbool[] = {'S', 1, 1, 6, 'f', 'r', 'o', 'z', 'e', 'n', 3, 2};
  expect_corrupt(badbool, sizeof badbool, "bool");
  const uint8_t nul[] = {'S', 1, 1, 5, 'o', 'w', 'n', 'e', 'r', 4, 2, 'a', 0};
  expect_corrupt(nul, sizeof nul, "UTF-8");
  const uint8_t badutf[] = {'S', 1, 1, 5, 'o', 'w', 'n', 'e', 'r', 4, 1, 0xff};
  expect_corrupt(badutf, sizeof badutf, "UTF-8");
  const uint8_t dup[] = {'S', 1, 2,   6,   'f', 'r', 'o', 'z', 'e', 'n', 3,
                         1,   6, 'f', 'r', 'o', 'z', 'e', 'n', 3,   0};
  expect_corrupt(dup, sizeof dup, "twice");
  const uint8_t unk[] = {'S', 1, 1, 1, 'q', 9, 0};
  expect_corrupt(unk, sizeof unk, "unknown field type");
  const uint8_t longv[] = {'S',  1,    1,    0x80, 0x80, 0x80, 0x80,
                           0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  expect_corrupt(longv, sizeof longv, NULL);
  /* An unknown field of a known type is skipped. */
  const uint8_t skip[] = {'S', 1, 1, 3, 'n', 'e', 'w', 1, 1, 2, 3, 4, 5, 6, 7, 8};
  acct a = {0};
  assert_int_equal(stead__state_decode(&acct_schema, skip, sizeof skip, &a), 0);
  assert_int_equal(a.balance, 100);
  stead_state_release(&acct_schema, &a);
}

static void test_change_detection(void **state) {
  acct a;
  stead_state_init(&acct_schema, &a);
  stead__buf last = {0};
  assert_int_equal(stead__state_changed(&acct_schema, &a, &last), 1);
  assert_int_equal(stead__state_changed(&acct_schema, &a, &last), 0);
  a.balance++;
  assert_int_equal(stead__state_changed(&acct_schema, &a, &last), 1);
  assert_int_equal(stead__state_changed(&acct_schema, &a, &last), 0);
  stead_state_set_string(&a.owner, "nobody"); /* same content, new pointer */
  assert_int_equal(stead__state_changed(&acct_schema, &a, &last), 0);
  stead_state_set_string(&a.owner, "x");
  assert_int_equal(stead__state_changed(&acct_schema, &a, &last), 1);
  stead_state_release(&acct_schema, &a);
  stead__buf_free(&last);
}

typedef struct small {
  int64_t a;
} small;

static void test_schema_check(void **state) {
  stead_field dup[] = {STEAD_FIELD_INT64(small, a, 0), STEAD_FIELD_INT64(small, a, 0)};
  stead_schema s = STEAD_SCHEMA(small, dup);
  assert_int_equal(stead_schema_check(&s), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "twice"));
  stead_field bad[] = {STEAD_FIELD_INT64(small, a, 0)};
  bad[0].offset = 4; /* runs past the 8-byte struct */
  stead_schema s2 = STEAD_SCHEMA(small, bad);
  assert_int_equal(stead_schema_check(&s2), STEAD_EINVAL);
  bad[0].offset = 0;
  bad[0].type = (stead_field_type)42;
  assert_int_equal(stead_schema_check(&s2), STEAD_EINVAL);
  bad[0].type = STEAD_FT_INT64;
  bad[0].name = "has space";
  assert_int_equal(stead_schema_check(&s2), STEAD_EINVAL);
  assert_int_equal(stead_schema_check(NULL), STEAD_EINVAL);
  /* Encoding refuses a non-UTF-8 string. */
  acct a;
  stead_state_init(&acct_schema, &a);
  stead_state_set_string(&a.owner, "\xff\xfe");
  stead__buf rec = {0};
  assert_int_equal(stead__state_encode(&acct_schema, &a, &rec), STEAD_EINVAL);
  stead__buf_free(&rec);
  stead_state_release(&acct_schema, &a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_and_roundtrip),
      cmocka_unit_test(test_schema_evolution),
      cmocka_unit_test(test_strict_decoding),
      cmocka_unit_test(test_change_detection),
      cmocka_unit_test(test_schema_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
