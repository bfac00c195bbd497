/*
 * test_opts.c -- `stead serve` flags and environment, without a server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "server/opts.h"
#include "stead.h"

static const char *const *fake_env;

static const char *env_lookup(const char *name) {
  for (const char *const *e = fake_env; e && *e; e += 2)
    if (strcmp(e[0], name) == 0)
      return e[1];
  return NULL;
}

static int parse(stead__serve_opts *o, const char *const *env, int argc, ...) {
  char *argv[32];
  va_list ap;
  va_start(ap, argc);
  for (int i = 0; i < argc; i++)
    argv[i] = va_arg(ap, char *);
  va_end(ap);
  fake_env = env;
  return stead__serve_opts_parse(o, argc, argv, env_lookup);
}

static void test_defaults(void **state) {
  stead__serve_opts o;
  assert_int_equal(parse(&o, NULL, 0), 0);
  assert_string_equal(o.host, "127.0.0.1");
  assert_int_equal(o.port, 8080);
  assert_string_equal(o.data, "./stead-data");
  assert_string_equal(o.storage, "sqlite");
  assert_int_equal(o.storage_explicit, 0);
  assert_int_equal(o.shards, 1024);
  assert_int_equal(o.workers, 0);
  assert_int_equal(o.log_level, STEAD_LOG_INFO);
  assert_int_equal(o.nloads, 0);
  assert_int_equal(stead__serve_opts_check(&o), 0);
}

static void test_flags_and_env(void **state) {
  static const char *const env[] = {
      "STEAD_LISTEN", "0.0.0.0:9000", "STEAD_WORKERS", "3", "STEAD_LOG_LEVEL",
      "debug",        "STEAD_LOAD",   "/x/a.so",       NULL};
  stead__serve_opts o;
  assert_int_equal(parse(&o, env, 0), 0);
  assert_int_equal(o.port, 9000);
  assert_string_equal(o.host, "0.0.0.0");
  assert_int_equal(o.workers, 3);
  assert_int_equal(o.log_level, STEAD_LOG_DEBUG);
  assert_int_equal(o.nloads, 1);
  /* flags win over the environment; --load replaces STEAD_LOAD */
  assert_int_equal(parse(&o, env, 6, "--listen", "[::1]:0", "--workers=5", "--load",
                         "b.so", "--load=c.so"),
                   0);
  assert_string_equal(o.host, "::1");
  assert_int_equal(o.port, 0);
  assert_int_equal(o.workers, 5);
  assert_int_equal(o.nloads, 2);
  assert_string_equal(o.loads[0], "b.so");
  assert_string_equal(o.loads[1], "c.so");
  assert_int_equal(parse(&o, NULL, 4, "--storage", "memory", "--listen", ":81"), 0);
  assert_int_equal(o.storage_explicit, 1);
  assert_string_equal(o.host, "");
  assert_int_equal(o.port, 81);
  assert_int_equal(parse(&o, NULL, 1, "--help"), 1);
}

static void expect_bad(const char *const *env, const char *flag, const char *val,
                       const char *needle) {
  stead__serve_opts o;
  int rc = val ? parse(&o, env, 2, flag, val) : parse(&o, env, flag ? 1 : 0, flag);
  assert_int_equal(rc, STEAD_EINVAL);
  if (!strstr(stead_errmsg(), needle))
    fail_msg("message \"%s\" lacks \"%s\"", stead_errmsg(), needle);
}

static void test_bad(void **state) {
  expect_bad(NULL, "--listen", "nope", "--listen");
  expect_bad(NULL, "--listen", "1.2.3.4:70000", "--listen");
  expect_bad(NULL, "--listen", "::1:80", "--listen");
  expect_bad(NULL, "--listen", "[]:80", "--listen");
  expect_bad(NULL, "--workers", "-1", "--workers");
  expect_bad(NULL, "--workers", "two", "--workers");
  expect_bad(NULL, "--shards", "0", "--shards");
  expect_bad(NULL, "--durability", "maybe", "--durability");
  expect_bad(NULL, "--storage", "redis", "--storage");
  expect_bad(NULL, "--nats", "localhost", "--nats");
  expect_bad(NULL, "--node-id", "a b", "--node-id");
  expect_bad(NULL, "--log-level", "loud", "--log-level");
  expect_bad(NULL, "--max-body", "0", "--max-body");
  expect_bad(NULL, "--bogus", NULL, "unknown flag");
  expect_bad(NULL, "--listen", NULL, "needs a value");
  static const char *const env[] = {"STEAD_SHARDS", "x", NULL};
  expect_bad(env, NULL, NULL, "STEAD_SHARDS");
}

static void test_cluster(void **state) {
  stead__serve_opts o;
  /* defaults: single node, the cluster fields preset for --nats */
  assert_int_equal(parse(&o, NULL, 0), 0);
  assert_null(o.nats);
  assert_string_equal(o.deployment, "stead");
  assert_int_equal(o.lease_ttl_ms, 10000);
  assert_int_equal(o.heartbeat_ms, 1000);
  assert_null(o.seed);
  assert_null(o.hosts);
  /* a whole cluster node from flags */
  assert_int_equal(parse(&o, NULL, 15, "--nats", "nats://127.0.0.1:4222", "--storage",
                         "postgres://db/x", "--node-id", "n1", "--deployment", "prod-eu",
                         "--seed", "s3", "--lease-ttl-ms", "1500", "--heartbeat-ms=200",
                         "--shards", "64"),
                   0);
  assert_string_equal(o.nats, "nats://127.0.0.1:4222");
  assert_string_equal(o.node_id, "n1");
  assert_string_equal(o.deployment, "prod-eu");
  assert_string_equal(o.seed, "s3");
  assert_int_equal(o.lease_ttl_ms, 1500);
  assert_int_equal(o.heartbeat_ms, 200);
  assert_int_equal(o.shards, 64);
  assert_int_equal(stead__serve_opts_check(&o), 0);
  /* the same from the environment; a flag still wins */
  static const char *const env[] = {"STEAD_NATS",
                                    "nats://h:1",
                                    "STEAD_STORAGE",
                                    "postgresql://db/y",
                                    "STEAD_NODE_ID",
                                    "node-1",
                                    "STEAD_HOSTS",
                                    "node-{0..2}",
                                    "STEAD_DEPLOYMENT",
                                    "d",
                                    "STEAD_LEASE_TTL_MS",
                                    "2000",
                                    "STEAD_HEARTBEAT_MS",
                                    "300",
                                    NULL};
  assert_int_equal(parse(&o, env, 2, "--lease-ttl-ms", "3000"), 0);
  assert_string_equal(o.hosts, "node-{0..2}");
  assert_string_equal(o.deployment, "d");
  assert_int_equal(o.lease_ttl_ms, 3000);
  assert_int_equal(o.heartbeat_ms, 300);
  assert_int_equal(stead__serve_opts_check(&o), 0);
}

/* Parses argv (NULL-terminated) and expects the parse to pass and the
 * cross-flag check to fail with `needle` in the message. */
static void expect_check_fails(const char *const *argv, const char *needle) {
  char *args[32];
  int n = 0;
  while (argv[n]) {
    args[n] = (char *)argv[n];
    n++;
  }
  stead__serve_opts o;
  fake_env = NULL;
  assert_int_equal(stead__serve_opts_parse(&o, n, args, env_lookup), 0);
  assert_int_equal(stead__serve_opts_check(&o), STEAD_EINVAL);
  if (!strstr(stead_errmsg(), needle))
    fail_msg("message \"%s\" lacks \"%s\"", stead_errmsg(), needle);
}

static void test_cluster_bad(void **state) {
  expect_bad(NULL, "--deployment", "a.b", "--deployment");
  expect_bad(NULL, "--deployment", "", "--deployment");
  expect_bad(NULL, "--deployment",
             "x12345678901234567890123456789012345678901234567890123456789012345",
             "--deployment");
  expect_bad(NULL, "--lease-ttl-ms", "99", "--lease-ttl-ms");
  expect_bad(NULL, "--heartbeat-ms", "5", "--heartbeat-ms");
  expect_bad(NULL, "--hosts", "", "--hosts");
  static const char *const env[] = {"STEAD_LEASE_TTL_MS", "soon", NULL};
  expect_bad(env, NULL, NULL, "STEAD_LEASE_TTL_MS");
  /* cluster mode needs a shared store and a node id */
  expect_check_fails(
      (const char *const[]){"--nats", "nats://h:1", "--node-id", "a", NULL},
      "needs --storage postgres://");
  expect_check_fails((const char *const[]){"--nats", "nats://h:1", "--storage", "sqlite",
                                           "--node-id", "a", NULL},
                     "not sqlite");
  expect_check_fails(
      (const char *const[]){"--nats", "nats://h:1", "--storage", "postgres://db", NULL},
      "needs --node-id");
  /* cluster-only flags without --nats */
  expect_check_fails((const char *const[]){"--deployment", "x", NULL},
                     "--deployment is for cluster mode");
  expect_check_fails((const char *const[]){"--lease-ttl-ms", "500", NULL},
                     "--lease-ttl-ms is for cluster mode");
  /* host lists: malformed, or without this node */
  expect_check_fails((const char *const[]){"--nats", "nats://h:1", "--storage",
                                           "postgres://db", "--node-id", "a", "--hosts",
                                           "n{3..1}", NULL},
                     "--hosts");
  expect_check_fails((const char *const[]){"--nats", "nats://h:1", "--storage",
                                           "postgres://db", "--node-id", "a", "--hosts",
                                           "n-{0..2}", NULL},
                     "does not include this node (a)");
  /* postgres storage alone is a single node on a shared database: fine */
  stead__serve_opts o;
  assert_int_equal(parse(&o, NULL, 2, "--storage", "postgres://db/x"), 0);
  assert_int_equal(stead__serve_opts_check(&o), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),    cmocka_unit_test(test_flags_and_env),
      cmocka_unit_test(test_bad),         cmocka_unit_test(test_cluster),
      cmocka_unit_test(test_cluster_bad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
