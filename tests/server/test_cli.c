/*
 * test_cli.c -- the `stead` program as a user runs it: client commands and
 * their exit codes, `serve` flag errors, busy ports, bad data
 * directories, unsupported settings, and --load'ed modules.
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
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static srv S;

static int setup(void **state) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  static const char *const extra[] = {"--load", STEAD_TEST_MODULE, NULL};
  return srv_start(&S, extra);
}

static int teardown(void **state) {
  int code = srv_stop(&S, SIGINT, 10000);
  curl_global_cleanup();
  return code == 0 ? 0 : -1;
}

/* Runs a client command against S; checks exit code and a stdout/stderr
 * substring (NULL: not checked). */
static void cli(const char *const *args, int want_exit, const char *out_has,
                const char *err_has) {
  const char *av[32];
  int n = 0;
  for (; args[n]; n++)
    av[n] = args[n];
  av[n++] = "--url";
  av[n++] = S.url;
  av[n] = NULL;
  char *out, *err;
  int x = run_stead(av, "{\"from\":\"stdin\"}", &out, &err);
  if (x != want_exit)
    fail_msg("stead %s %s: exit %d, want %d; stdout: %s stderr: %s", args[0],
             args[1] ? args[1] : "", x, want_exit, out, err);
  if (out_has && !strstr(out, out_has))
    fail_msg("stdout \"%s\" lacks \"%s\"", out, out_has);
  if (err_has && !strstr(err, err_has))
    fail_msg("stderr \"%s\" lacks \"%s\"", err, err_has);
  free(out);
  free(err);
}

static void test_call(void **state) {
  cli((const char *[]){"call", "echo", "a b/c", "echo", "{\"x\":1}", NULL}, 0,
      "{\"x\":1}\n", NULL);
  cli((const char *[]){"call", "echo", "x", "echo", "-", NULL}, 0, "{\"from\":\"stdin\"}",
      NULL);
  cli((const char *[]){"call", "echo", "x", "echo", NULL}, 0, NULL, NULL);
  cli((const char *[]){"call", "--timeout", "5000", "greeter", "x", "hello", "bob", NULL},
      0, "hello, bob", NULL);
  cli((const char *[]){"send", "echo", "x", "echo", "1", NULL}, 0, NULL, NULL);
  cli((const char *[]){"get", "echo", "a b/c", NULL}, 0, "\"active\":true", NULL);
}

static void test_exit_codes(void **state) {
  cli((const char *[]){"call", "nosuch", "x", "m", NULL}, 4, NULL, "ENOCLASS");
  cli((const char *[]){"call", "echo", "x", "nosuch", NULL}, 4, NULL, "ENOMETHOD");
  cli((const char *[]){"call", "echo", "x", "fail", "boom", NULL}, 5, NULL,
      "EHANDLER: boom");
  cli((const char *[]){"call", "--timeout", "50", "echo", "x", "sleep", "1000", NULL}, 6,
      NULL, "ETIMEDOUT");
  cli((const char *[]){"call", "bad class", "x", "m", NULL}, 3, NULL, "EINVAL");
  cli((const char *[]){"emit", "a.b", "{\"k\":1}", NULL}, 0, "accepted", NULL);
  cli((const char *[]){"emit", "a..b", "{\"k\":1}", NULL}, 3, NULL, "EINVAL");
  cli((const char *[]){"emit", "a.b", "{nope", NULL}, 1, NULL, "not valid JSON");
  cli((const char *[]){"call", "echo", "x", NULL}, 1, NULL, "CLASS ID METHOD");
  cli((const char *[]){"call", "--bogus", "echo", "x", "m", NULL}, 1, NULL,
      "unknown option");
  cli((const char *[]){"frobnicate", NULL}, 1, NULL, "unknown command");
  /* nothing listens there */
  char *err;
  int x = run_stead(
      (const char *[]){"call", "--url", "http://127.0.0.1:1", "echo", "x", "echo", NULL},
      NULL, NULL, &err);
  assert_int_equal(x, 2);
  assert_non_null(strstr(err, "cannot reach"));
  free(err);
}

static void test_help(void **state) {
  char *out;
  assert_int_equal(run_stead((const char *[]){"--help", NULL}, NULL, &out, NULL), 0);
  assert_non_null(strstr(out, "call CLASS ID METHOD"));
  free(out);
  assert_int_equal(run_stead((const char *[]){"call", "--help", NULL}, NULL, &out, NULL),
                   0);
  assert_non_null(strstr(out, "exit status"));
  free(out);
  assert_int_equal(run_stead((const char *[]){"serve", "--help", NULL}, NULL, &out, NULL),
                   0);
  assert_non_null(strstr(out, "--listen"));
  free(out);
}

/* `stead serve` with these args must fail with `want_exit` and print one
 * line to stderr containing `needle`. */
static void serve_fails(const char *const *args, int want_exit, const char *needle) {
  char *err;
  int x = run_stead(args, NULL, NULL, &err);
  if (x != want_exit || !strstr(err, needle))
    fail_msg("exit %d (want %d), stderr: %s (want \"%s\")", x, want_exit, err, needle);
  size_t lines = 0;
  for (char *p = err; *p; p++)
    lines += *p == '\n';
  if (lines != 1)
    fail_msg("want one line on stderr, got: %s", err);
  free(err);
}

static void test_serve_errors(void **state) {
  char dir[64] = "/tmp/stead-cli-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char data[128], port[64], file[128];
  snprintf(data, sizeof data, "%s/d", dir);
  snprintf(port, sizeof port, "127.0.0.1:%d", S.port);
  snprintf(file, sizeof file, "%s/file", dir);
  FILE *f = fopen(file, "w");
  fclose(f);
  char under_file[160];
  snprintf(under_file, sizeof under_file, "%s/sub", file);
  serve_fails((const char *[]){"serve", "--bogus", NULL}, 2, "unknown flag");
  serve_fails((const char *[]){"serve", "--workers", "x", NULL}, 2, "--workers");
  serve_fails((const char *[]){"serve", "--listen", "nowhere", NULL}, 2, "--listen");
  serve_fails((const char *[]){"serve", "--nats", "nats://127.0.0.1:4222", NULL}, 2,
              "cluster mode needs --storage postgres://");
  serve_fails((const char *[]){"serve", "--nats", "nats://127.0.0.1:4222", "--storage",
                               "postgres://127.0.0.1:1/y", NULL},
              2, "needs --node-id");
  serve_fails((const char *[]){"serve", "--deployment", "d", NULL}, 2,
              "--deployment is for cluster mode");
  /* postgres storage is accepted; nothing listens on port 1 */
  serve_fails((const char *[]){"serve", "--storage", "postgres://127.0.0.1:1/y", NULL}, 1,
              "cannot start the runtime on postgres storage");
  serve_fails(
      (const char *[]){"serve", "--data", under_file, "--storage", "memory", NULL}, 1,
      "cannot use data directory");
  serve_fails((const char *[]){"serve", "--data", data, "--storage", "memory", "--listen",
                               port, NULL},
              1, "Address already in use");
  serve_fails((const char *[]){"serve", "--data", data, "--storage", "memory", "--listen",
                               "127.0.0.1:0", "--load", "/nonexistent/mod.so", NULL},
              1, "--load /nonexistent/mod.so");
  serve_fails((const char *[]){"serve", "--data", data, "--storage", "memory", "--listen",
                               "127.0.0.1:0", "--load", STEAD_TEST_MODULE_BAD, NULL},
              1, "stead_module_init failed: EEXIST");
  /* a data directory in use by the running server */
  char busy[300];
  snprintf(busy, sizeof busy, "%s/data", S.dir);
  serve_fails((const char *[]){"serve", "--data", busy, "--storage", "memory", "--listen",
                               "127.0.0.1:0", NULL},
              1, "in use by another stead process");
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_env(void **state) {
  /* STEAD_URL picks the server; the --url flag would win over it */
  setenv("STEAD_URL", S.url, 1);
  char *out;
  int x = run_stead((const char *[]){"call", "echo", "e", "echo", "\"env\"", NULL}, NULL,
                    &out, NULL);
  unsetenv("STEAD_URL");
  assert_int_equal(x, 0);
  assert_string_equal(out, "\"env\"\n");
  free(out);
  /* STEAD_* for serve: a bad value is named by its variable */
  setenv("STEAD_SHARDS", "zero", 1);
  char *err;
  x = run_stead((const char *[]){"serve", NULL}, NULL, NULL, &err);
  unsetenv("STEAD_SHARDS");
  assert_int_equal(x, 2);
  assert_non_null(strstr(err, "STEAD_SHARDS"));
  free(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_call), cmocka_unit_test(test_exit_codes),
      cmocka_unit_test(test_help), cmocka_unit_test(test_serve_errors),
      cmocka_unit_test(test_env),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
