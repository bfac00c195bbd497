/*
 * test_shard.c -- shard math: fixed vectors (cross-checked with Python's
 * hashlib.blake2b), uniformity, balance, minimal movement, host lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "stead.h"

static void test_key_vectors(void **state) {
  (void)state;
  assert_int_equal(stead_shard_for_key("counter", "a", 1024, NULL), 135);
  assert_int_equal(stead_shard_for_key("counter", "a", 1024, "s1"), 761);
  assert_int_equal(stead_shard_for_key("room", "lobby", 1024, ""), 619);
  assert_int_equal(stead_shard_for_key("room", "lobby", 16, "prod"), 8);
  assert_int_equal(stead_shard_for_key("account", "\xc3\xbc-42", 65536, "prod"), 3919);
  assert_int_equal(stead_shard_for_key("x", "y", 1, "z"), 0);
}

static void test_owner_vectors(void **state) {
  (void)state;
  const char *nodes[] = {"node-a", "node-b", "node-c"};
  assert_int_equal(stead_shard_owner(0, nodes, 3, NULL), 0);
  assert_int_equal(stead_shard_owner(1, nodes, 3, NULL), 0);
  assert_int_equal(stead_shard_owner(7, nodes, 3, NULL), 1);
  assert_int_equal(stead_shard_owner(1023, nodes, 3, NULL), 2);
  assert_int_equal(stead_shard_owner(0, nodes, 3, "prod"), 1);
  /* The order of the list must not matter. */
  const char *rev[] = {"node-c", "node-b", "node-a"};
  for (uint32_t s = 0; s < 256; s++) {
    int a = stead_shard_owner(s, nodes, 3, "prod");
    int b = stead_shard_owner(s, rev, 3, "prod");
    assert_true(a >= 0 && b >= 0);
    assert_string_equal(nodes[a], rev[b]);
  }
}

static void test_bad_args(void **state) {
  (void)state;
  assert_int_equal(stead_shard_for_key("counter", "a", 0, NULL), STEAD_EINVAL);
  assert_int_equal(stead_shard_for_key("counter", "a", STEAD_MAX_SHARDS + 1, NULL),
                   STEAD_EINVAL);
  assert_int_equal(stead_shard_for_key("bad/class", "a", 16, NULL), STEAD_EINVAL);
  assert_int_equal(stead_shard_for_key("counter", "", 16, NULL), STEAD_EINVAL);
  assert_int_equal(stead_shard_for_key("counter", NULL, 16, NULL), STEAD_EINVAL);
  assert_int_equal(stead_shard_for_key("counter", "\xff", 16, NULL), STEAD_EINVAL);
  char big[1100];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  assert_int_equal(stead_shard_for_key("counter", big, 16, NULL), STEAD_ETOOBIG);
  assert_non_null(strstr(stead_errmsg(), "1024"));
  big[1024] = 0;
  assert_true(stead_shard_for_key("counter", big, 16, NULL) >= 0);

  const char *nodes[] = {"a", "b c"};
  assert_int_equal(stead_shard_owner(0, nodes, 0, NULL), STEAD_EINVAL);
  assert_int_equal(stead_shard_owner(0, NULL, 2, NULL), STEAD_EINVAL);
  assert_int_equal(stead_shard_owner(0, nodes, 2, NULL), STEAD_EINVAL);
  assert_int_equal(stead_shards_for_node("a", nodes, 1, 0, NULL, NULL, 0), STEAD_EINVAL);
  assert_int_equal(stead_shards_for_node("a", nodes, 1, 16, NULL, NULL, 4), STEAD_EINVAL);
  assert_int_equal(stead_shards_for_node("", nodes, 1, 16, NULL, NULL, 0), STEAD_EINVAL);
}

/* 1 M keys into 1024 shards: the chi-square statistic has 1023 degrees of
 * freedom (mean 1023, sd ~45); a biased hash lands far above 1400. */
static void test_uniformity(void **state) {
  (void)state;
  enum { S = 1024, N = 1000000 };
  static uint32_t counts[S];
  memset(counts, 0, sizeof counts);
  char id[32];
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "user-%d", i);
    int s = stead_shard_for_key("counter", id, S, "uniform");
    assert_true(s >= 0 && s < S);
    counts[s]++;
  }
  double expect = (double)N / S, chi = 0;
  for (int s = 0; s < S; s++)
    chi += (counts[s] - expect) * (counts[s] - expect) / expect;
  printf("chi-square over %d shards: %.1f\n", S, chi);
  assert_true(chi > 800 && chi < 1300);
}

static int owners(const char *const *nodes, size_t n, const char *out[1024]) {
  for (uint32_t s = 0; s < 1024; s++) {
    int o = stead_shard_owner(s, nodes, n, "move");
    if (o < 0)
      return o;
    out[s] = nodes[o];
  }
  return 0;
}

static void test_balance_and_movement(void **state) {
  (void)state;
  const char *four[] = {"n1", "n2", "n3", "n4"};
  const char *five[] = {"n1", "n2", "n3", "n4", "n5"};
  const char *three[] = {"n1", "n3", "n4"};
  static const char *o4[1024], *o5[1024], *o3[1024];
  assert_int_equal(owners(four, 4, o4), 0);
  assert_int_equal(owners(five, 5, o5), 0);
  assert_int_equal(owners(three, 3, o3), 0);

  /* Balance: each of 4 nodes near 256. */
  for (int i = 0; i < 4; i++) {
    uint32_t mine[1024];
    int c = stead_shards_for_node(four[i], four, 4, 1024, "move", mine, 1024);
    assert_true(c > 196 && c < 316);
    for (int k = 1; k < c; k++)
      assert_true(mine[k] > mine[k - 1]);
  }
  /* Adding a fifth node moves ~1/5 of the shards, all to the new node. */
  int moved = 0;
  for (int s = 0; s < 1024; s++) {
    if (strcmp(o4[s], o5[s]) != 0) {
      moved++;
      assert_string_equal(o5[s], "n5");
    }
  }
  printf("adding n5 moved %d of 1024 shards\n", moved);
  assert_true(moved > 150 && moved < 260);
  /* Removing n2 moves exactly n2's shards. */
  int n2 = 0;
  for (int s = 0; s < 1024; s++) {
    if (strcmp(o4[s], "n2") == 0)
      n2++;
    else
      assert_string_equal(o4[s], o3[s]);
  }
  assert_int_equal(stead_shards_for_node("n2", four, 4, 1024, "move", NULL, 0), n2);
  assert_int_equal(stead_shards_for_node("n2", three, 3, 1024, "move", NULL, 0), 0);
  /* Truncated output still reports the full count. */
  uint32_t few[3];
  assert_int_equal(stead_shards_for_node("n2", four, 4, 1024, "move", few, 3), n2);
}

static void expect_hosts(const char *spec, size_t n, const char *const *want) {
  char **out = NULL;
  size_t count = 0;
  assert_int_equal(stead_hosts_expand(spec, &out, &count), 0);
  assert_int_equal(count, n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(out[i], want[i]);
  assert_null(out[n]);
  stead_free(out);
}

static void test_hosts(void **state) {
  (void)state;
  expect_hosts("host-{0..3}", 4,
               (const char *const[]){"host-0", "host-1", "host-2", "host-3"});
  expect_hosts("a,b{1..2}.x", 3, (const char *const[]){"a", "b1.x", "b2.x"});
  expect_hosts("db{08..10}", 3, (const char *const[]){"db08", "db09", "db10"});
  expect_hosts("{5..5}", 1, (const char *const[]){"5"});
  expect_hosts("solo", 1, (const char *const[]){"solo"});
}

static void expect_bad_hosts(const char *spec, int code, const char *msg_part) {
  char **out = (char **)1;
  size_t count = 99;
  assert_int_equal(stead_hosts_expand(spec, &out, &count), code);
  assert_null(out);
  assert_int_equal(count, 0);
  if (msg_part && !strstr(stead_errmsg(), msg_part))
    fail_msg("message \"%s\" lacks \"%s\"", stead_errmsg(), msg_part);
}

static void test_bad_hosts(void **state) {
  (void)state;
  expect_bad_hosts(NULL, STEAD_EINVAL, "empty");
  expect_bad_hosts("", STEAD_EINVAL, "empty");
  expect_bad_hosts("a,,b", STEAD_EINVAL, "empty item");
  expect_bad_hosts("a,", STEAD_EINVAL, "empty item");
  expect_bad_hosts("host-{0..3", STEAD_EINVAL, "unbalanced");
  expect_bad_hosts("host-0..3}", STEAD_EINVAL, "unbalanced");
  expect_bad_hosts("h}{", STEAD_EINVAL, "unbalanced");
  expect_bad_hosts("h{0..1}{0..1}", STEAD_EINVAL, "more than one");
  expect_bad_hosts("h{{0..1}}", STEAD_EINVAL, "more than one");
  expect_bad_hosts("h{0.1}", STEAD_EINVAL, "LO..HI");
  expect_bad_hosts("h{a..b}", STEAD_EINVAL, "LO..HI");
  expect_bad_hosts("h{0..}", STEAD_EINVAL, "LO..HI");
  expect_bad_hosts("h{-1..2}", STEAD_EINVAL, "LO..HI");
  expect_bad_hosts("h{0..1234567890}", STEAD_EINVAL, "9 digits");
  expect_bad_hosts("h{3..1}", STEAD_EINVAL, "past its end");
  expect_bad_hosts("h{0..4096}", STEAD_ETOOBIG, "4096");
  expect_bad_hosts("a b", STEAD_EINVAL, "outside");
  expect_bad_hosts("a,a", STEAD_EINVAL, "twice");
  expect_bad_hosts("h{1..2},h2", STEAD_EINVAL, "twice");
  char longname[200];
  memset(longname, 'x', 150);
  strcpy(longname + 150, "{1..2}");
  expect_bad_hosts(longname, STEAD_ETOOBIG, "128");
  assert_int_equal(stead_hosts_expand("a", NULL, NULL), STEAD_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_key_vectors),
      cmocka_unit_test(test_owner_vectors),
      cmocka_unit_test(test_bad_args),
      cmocka_unit_test(test_uniformity),
      cmocka_unit_test(test_balance_and_movement),
      cmocka_unit_test(test_hosts),
      cmocka_unit_test(test_bad_hosts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
