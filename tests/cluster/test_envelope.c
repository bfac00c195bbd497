/*
 * test_envelope.c -- envelope round trips, limits, header rules, expiry,
 * and a table of malformed inputs that must fail with EPROTO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/envelope.h"

static const stead__env_header hdrs[] = {{"trace-id", "abc123"}, {"empty", ""}};

static stead__env sample(void) {
  stead__env e = {0};
  e.kind = STEAD__ENV_REQUEST;
  e.shard = 513;
  e.epoch = 0x0102030405060708ULL;
  e.corr = 42;
  e.created_ms = 1700000000000;
  e.deadline_ms = 1700000005000;
  e.ttl_ms = 3000;
  e.cls = "counter";
  e.id = "user-\xc3\xbc";
  e.method = "incr";
  e.headers = hdrs;
  e.nheaders = 2;
  e.payload = "hello";
  e.payload_len = 5;
  return e;
}

static void encode_ok(const stead__env *e, unsigned flags, stead__buf *b) {
  int rc = stead__env_encode(e, 0, flags, b);
  if (rc != 0)
    fail_msg("encode: %s: %s", stead_errname(rc), stead_errmsg());
}

static void test_round_trip(void **state) {
  (void)state;
  stead__env e = sample();
  stead__buf b = {0};
  encode_ok(&e, 0, &b);
  stead__env d;
  assert_int_equal(stead__env_decode(b.data, b.len, 0, 0, &d), 0);
  assert_int_equal(d.kind, STEAD__ENV_REQUEST);
  assert_int_equal(d.shard, 513);
  assert_true(d.epoch == e.epoch);
  assert_true(d.corr == 42);
  assert_true(d.created_ms == e.created_ms);
  assert_true(d.deadline_ms == e.deadline_ms);
  assert_int_equal(d.ttl_ms, 3000);
  assert_int_equal(d.status, 0);
  assert_string_equal(d.cls, "counter");
  assert_string_equal(d.id, e.id);
  assert_string_equal(d.method, "incr");
  assert_string_equal(d.message, "");
  assert_int_equal(d.nheaders, 2);
  assert_string_equal(stead__env_header_get(&d, "trace-id"), "abc123");
  assert_string_equal(stead__env_header_get(&d, "empty"), "");
  assert_null(stead__env_header_get(&d, "missing"));
  assert_int_equal(d.payload_len, 5);
  assert_memory_equal(d.payload, "hello", 5);
  /* Borrowed payload points into the buffer. */
  assert_true((const uint8_t *)d.payload >= b.data &&
              (const uint8_t *)d.payload < b.data + b.len);
  /* Canonical: re-encoding gives the same bytes. */
  stead__buf b2 = {0};
  encode_ok(&d, 0, &b2);
  assert_int_equal(b2.len, b.len);
  assert_memory_equal(b2.data, b.data, b.len);
  stead__env_free(&d);
  /* COPY_PAYLOAD makes the envelope independent of the buffer. */
  assert_int_equal(stead__env_decode(b.data, b.len, 0, STEAD__ENV_COPY_PAYLOAD, &d), 0);
  memset(b.data, 0xEE, b.len);
  assert_memory_equal(d.payload, "hello", 5);
  stead__env_free(&d);
  stead__buf_free(&b);
  stead__buf_free(&b2);
}

static void test_kinds(void **state) {
  (void)state;
  stead__buf b = {0};
  stead__env d;
  /* A reply may leave the address empty. */
  stead__env r = {.kind = STEAD__ENV_REPLY, .corr = 9, .payload = "ok", .payload_len = 2};
  encode_ok(&r, 0, &b);
  assert_int_equal(stead__env_decode(b.data, b.len, 0, 0, &d), 0);
  assert_int_equal(d.kind, STEAD__ENV_REPLY);
  assert_string_equal(d.cls, "");
  assert_null(d.headers);
  stead__env_free(&d);
  b.len = 0;
  /* An error reply carries a negative status and a message. */
  stead__env er = {
      .kind = STEAD__ENV_ERROR, .status = STEAD_ENOTOWNER, .message = "shard 5 moved"};
  encode_ok(&er, 0, &b);
  assert_int_equal(stead__env_decode(b.data, b.len, 0, 0, &d), 0);
  assert_int_equal(d.status, STEAD_ENOTOWNER);
  assert_string_equal(d.message, "shard 5 moved");
  assert_null(d.payload);
  stead__env_free(&d);
  b.len = 0;
  /* A one-way needs an address like a request. */
  stead__env ow = {.kind = STEAD__ENV_ONEWAY, .cls = "c", .id = "i", .method = "m"};
  encode_ok(&ow, 0, &b);
  stead__buf_free(&b);
}

static void expect_encode_error(stead__env e, unsigned flags, int code,
                                const char *part) {
  stead__buf b = {0};
  int rc = stead__env_encode(&e, 64, flags, &b);
  if (rc != code)
    fail_msg("encode gave %s (%s), wanted %s", stead_errname(rc), stead_errmsg(),
             stead_errname(code));
  if (part && !strstr(stead_errmsg(), part))
    fail_msg("message \"%s\" lacks \"%s\"", stead_errmsg(), part);
  assert_int_equal(b.len, 0);
  stead__buf_free(&b);
}

static void test_encode_rejects(void **state) {
  (void)state;
  stead__env e = sample();
  e.kind = 0;
  expect_encode_error(e, 0, STEAD_EINVAL, "kind");
  e = sample();
  e.cls = NULL;
  expect_encode_error(e, 0, STEAD_EINVAL, "class is empty");
  e = sample();
  e.method = "bad method";
  expect_encode_error(e, 0, STEAD_EINVAL, "method");
  e = sample();
  e.id = "\xc0\x80";
  expect_encode_error(e, 0, STEAD_EINVAL, "UTF-8");
  char id[1030];
  memset(id, 'a', 1025);
  id[1025] = 0;
  e = sample();
  e.id = id;
  expect_encode_error(e, 0, STEAD_ETOOBIG, "1024");
  e = sample();
  e.shard = STEAD_MAX_SHARDS;
  expect_encode_error(e, 0, STEAD_EINVAL, "shard");
  e = sample();
  e.status = -3;
  expect_encode_error(e, 0, STEAD_EINVAL, "status");
  e = sample();
  e.message = "why";
  expect_encode_error(e, 0, STEAD_EINVAL, "message");
  e = (stead__env){.kind = STEAD__ENV_ERROR, .status = 0};
  expect_encode_error(e, 0, STEAD_EINVAL, "negative status");
  e = sample();
  e.payload_len = 65; /* limit 64 in expect_encode_error */
  e.payload = id;
  expect_encode_error(e, 0, STEAD_ETOOBIG, "payload");
  e = sample();
  e.payload = NULL;
  expect_encode_error(e, 0, STEAD_EINVAL, "NULL");
  e = sample();
  e.created_ms = -1;
  expect_encode_error(e, 0, STEAD_EINVAL, "negative");
}

static void test_headers(void **state) {
  (void)state;
  stead__env_header h[STEAD__ENV_MAX_HEADERS + 1];
  char keys[STEAD__ENV_MAX_HEADERS + 1][8];
  for (int i = 0; i <= STEAD__ENV_MAX_HEADERS; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    h[i].key = keys[i];
    h[i].value = "v";
  }
  assert_int_equal(stead__env_check_headers(h, STEAD__ENV_MAX_HEADERS, 0), 0);
  assert_int_equal(stead__env_check_headers(h, STEAD__ENV_MAX_HEADERS + 1, 0),
                   STEAD_ETOOBIG);
  stead__env_header reserved[] = {{"X-Stead-Epoch", "5"}};
  assert_int_equal(stead__env_check_headers(reserved, 1, 0), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "reserved"));
  assert_int_equal(stead__env_check_headers(reserved, 1, STEAD__ENV_INTERNAL), 0);
  stead__env_header dup[] = {{"a", "1"}, {"a", "2"}};
  assert_int_equal(stead__env_check_headers(dup, 2, 0), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "twice"));
  stead__env_header badkey[] = {{"a b", "1"}};
  assert_int_equal(stead__env_check_headers(badkey, 1, 0), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "header 0"));
  stead__env_header nokey[] = {{"", "1"}};
  assert_int_equal(stead__env_check_headers(nokey, 1, 0), STEAD_EINVAL);
  char big[STEAD__ENV_MAX_HEADER_VALUE + 2];
  memset(big, 'v', sizeof big - 1);
  big[sizeof big - 1] = 0;
  stead__env_header bigval[] = {{"a", big}};
  assert_int_equal(stead__env_check_headers(bigval, 1, 0), STEAD_ETOOBIG);
  /* Total header bytes: 9 values of 1000 bytes each exceed 8 KiB. */
  big[1000] = 0;
  for (int i = 0; i < 9; i++)
    h[i].value = big;
  assert_int_equal(stead__env_check_headers(h, 9, 0), STEAD_ETOOBIG);
  assert_non_null(strstr(stead_errmsg(), "8192"));
  /* Internal headers encode with the flag and decode always. */
  stead__env e = sample();
  e.headers = reserved;
  e.nheaders = 1;
  stead__buf b = {0};
  assert_int_equal(stead__env_encode(&e, 0, 0, &b), STEAD_EINVAL);
  encode_ok(&e, STEAD__ENV_INTERNAL, &b);
  stead__env d;
  assert_int_equal(stead__env_decode(b.data, b.len, 0, 0, &d), 0);
  assert_string_equal(stead__env_header_get(&d, "X-Stead-Epoch"), "5");
  stead__env_free(&d);
  stead__buf_free(&b);
}

static void test_expiry(void **state) {
  (void)state;
  stead__env e = {.created_ms = 1000};
  assert_int_equal(stead__env_deadline(&e), 0);
  assert_int_equal(stead__env_expired(&e, INT64_MAX), 0);
  e.ttl_ms = 500;
  assert_int_equal(stead__env_deadline(&e), 1500);
  assert_int_equal(stead__env_expired(&e, 1499), 0);
  assert_int_equal(stead__env_expired(&e, 1500), 1);
  e.deadline_ms = 1200; /* the earlier of the two wins */
  assert_int_equal(stead__env_deadline(&e), 1200);
  e.deadline_ms = 9000;
  assert_int_equal(stead__env_deadline(&e), 1500);
  e.ttl_ms = 0;
  assert_int_equal(stead__env_deadline(&e), 9000);
  e.created_ms = INT64_MAX - 1;
  e.ttl_ms = 100;
  e.deadline_ms = 0;
  assert_true(stead__env_deadline(&e) == INT64_MAX);
}

/* ------------------------------------------------------------------ */

typedef struct mutation {
  const char *name;
  size_t off; /* byte to change (from the start) */
  int value;  /* new value; -1 = truncate at off */
  int code;
  const char *part;
} mutation;

static void test_malformed(void **state) {
  (void)state;
  stead__env e = sample();
  stead__buf good = {0};
  encode_ok(&e, 0, &good);
  /* Offsets in the sample: class len at 49, class "counter" 50..56, id len
   * 57..58, id 59..65 ("user-" + 2 bytes), method len 66, "incr" 67..70,
   * header count 71..72, first key len 73. */
  size_t n = good.len;
  const mutation table[] = {
      {"empty", 0, -1, STEAD_EPROTO, "truncated"},
      {"one byte", 1, -1, STEAD_EPROTO, "truncated"},
      {"bad magic", 0, 'X', STEAD_EPROTO, "magic"},
      {"version 2", 2, 2, STEAD_EPROTO, "version 2"},
      {"version 0", 2, 0, STEAD_EPROTO, "version"},
      {"kind 0", 3, 0, STEAD_EPROTO, "kind"},
      {"kind 5", 3, 5, STEAD_EPROTO, "kind"},
      {"flags", 4, 1, STEAD_EPROTO, "flags"},
      {"shard too big", 8, 0x7f, STEAD_EPROTO, "shard"},
      {"negative created", 32, 0x80, STEAD_EPROTO, "negative"},
      {"status in request", 45, 1, STEAD_EPROTO, "status"},
      {"truncated fixed", 30, -1, STEAD_EPROTO, "fixed header"},
      {"class too long", 49, 200, STEAD_EPROTO, "class is 200"},
      {"class past end", 49, 127, STEAD_EPROTO, "truncated"},
      {"class bad char", 50, '/', STEAD_EPROTO, "class"},
      {"class NUL", 51, 0, STEAD_EPROTO, "NUL"},
      {"empty class", 49, 0, STEAD_EPROTO, NULL},
      {"id too long", 58, 0x05, STEAD_EPROTO, "1024"},
      {"id bad utf8", 64, 0xff, STEAD_EPROTO, "UTF-8"},
      {"method bad", 67, ' ', STEAD_EPROTO, "method"},
      {"too many headers", 71, 33, STEAD_EPROTO, "headers"},
      {"header count past end", 71, 30, STEAD_EPROTO, NULL},
      {"header key empty", 73, 0, STEAD_EPROTO, "header"},
      {"header key bad", 74, '!', STEAD_EPROTO, "header"},
      {"trailing byte", n, 0, STEAD_EPROTO, "after the payload"},
      {"truncated payload", n - 1, -1, STEAD_EPROTO, "payload"},
      {"payload length over limit", n - 6, 0x7f, STEAD_ETOOBIG, "payload"},
      {"payload length past end", n - 9, 9, STEAD_EPROTO, "truncated"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    const mutation *m = &table[i];
    uint8_t *buf = malloc(n + 1);
    memcpy(buf, good.data, n);
    size_t len = n;
    if (m->value < 0)
      len = m->off;
    else if (m->off == n)
      buf[len++] = (uint8_t)m->value;
    else
      buf[m->off] = (uint8_t)m->value;
    stead__env d;
    int rc = stead__env_decode(buf, len, 0, 0, &d);
    if (rc != m->code)
      fail_msg("%s: decode gave %s (%s)", m->name, stead_errname(rc), stead_errmsg());
    if (m->part && !strstr(stead_errmsg(), m->part))
      fail_msg("%s: message \"%s\" lacks \"%s\"", m->name, stead_errmsg(), m->part);
    assert_null(d.owned_);
    free(buf);
  }
  /* Every truncation of a valid envelope fails cleanly. */
  for (size_t len = 0; len < n; len++) {
    stead__env d;
    assert_int_equal(stead__env_decode(good.data, len, 0, 0, &d), STEAD_EPROTO);
  }
  /* A small configured payload limit is enforced on decode. */
  stead__env d;
  assert_int_equal(stead__env_decode(good.data, n, 4, 0, &d), STEAD_ETOOBIG);
  assert_int_equal(stead__env_decode(good.data, n, 5, 0, &d), 0);
  stead__env_free(&d);
  assert_int_equal(stead__env_decode(NULL, 3, 0, 0, &d), STEAD_EINVAL);
  stead__buf_free(&good);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_kinds),
      cmocka_unit_test(test_encode_rejects), cmocka_unit_test(test_headers),
      cmocka_unit_test(test_expiry),         cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
