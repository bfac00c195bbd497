/*
 * test_alarms_http.c -- the alarm-driven examples through the real
 * `stead serve` and the real clock: the ratelimiter's window reset by its
 * alarm (window_ms 300), the reminder's schedule/cancel/fired, GET of an
 * object (state struct and pending alarms, also through `stead get`), bad
 * bodies as 400/413, and a restart on the same SQLite --data that keeps a
 * counter's state and a pending reminder, which then fires.
 *
 * Alarms fire on the server's scheduler thread, so the tests poll (GET or
 * a read-only method) with a deadline instead of sleeping a fixed time.
 */
/* strcasestr: _GNU_SOURCE comes from the build flags */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define DEADLINE_MS 15000

static long post(const srv *s, const char *path, const char *body, char *out, size_t n) {
  resp r;
  long st =
      http(s, "POST", path, body, body ? strlen(body) : 0, "application/json", NULL, &r);
  snprintf(out, n, "%s", r.body ? r.body : "");
  resp_free(&r);
  return st;
}

static void expect_post(const srv *s, const char *path, const char *body, long status,
                        const char *want) {
  char out[8192];
  long st = post(s, path, body, out, sizeof out);
  if (st != status || (want && !strstr(out, want)))
    fail_msg("POST %s %s: %ld %s; want %ld with %s", path, body ? body : "", st, out,
             status, want ? want : "");
}

static long get(const srv *s, const char *path, char *out, size_t n) {
  resp r;
  long st = http(s, "GET", path, NULL, 0, NULL, NULL, &r);
  snprintf(out, n, "%s", r.body ? r.body : "");
  resp_free(&r);
  return st;
}

static void expect_get(const srv *s, const char *path, const char *want) {
  char out[8192];
  long st = get(s, path, out, sizeof out);
  if (st != 200 || !strstr(out, want))
    fail_msg("GET %s: %ld %s; want 200 with %s", path, st, out, want);
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls `method path` (GET, or POST with an empty JSON body) until its
 * 200 body contains every string of `want` (NULL-terminated), or fails
 * after DEADLINE_MS. Returns the elapsed ms. */
static int64_t poll_until(const srv *s, const char *method, const char *path,
                          const char *const *want) {
  int64_t t0 = mono_ms();
  char out[8192] = "";
  for (;;) {
    long st = strcmp(method, "GET") == 0 ? get(s, path, out, sizeof out)
                                         : post(s, path, NULL, out, sizeof out);
    int ok = st == 200;
    for (int i = 0; ok && want[i]; i++)
      ok = strstr(out, want[i]) != NULL;
    if (ok)
      return mono_ms() - t0;
    if (mono_ms() - t0 > DEADLINE_MS)
      fail_msg("%s %s: still %ld %s after %d ms", method, path, st, out, DEADLINE_MS);
    usleep(20 * 1000);
  }
}

static int setup(void **state) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  return 0;
}

static int teardown(void **state) {
  curl_global_cleanup();
  return 0;
}

#define RL      "/v1/objects/ratelimiter/api-key-1"
#define RL_BODY "{\"limit\":2,\"window_ms\":300}"

static void test_ratelimiter_window_reset(void **state) {
  srv s;
  assert_int_equal(srv_start(&s, NULL), 0);
  expect_post(&s, RL "/check", RL_BODY, 200, "\"allowed\"");
  expect_post(&s, RL "/check", RL_BODY, 200, "\"allowed\"");
  expect_post(&s, RL "/check", RL_BODY, 200, "\"rate_limited\"");
  /* The window and its reset alarm are visible from outside. */
  char out[8192];
  assert_int_equal(get(&s, RL, out, sizeof out), 200);
  assert_non_null(strstr(out, "\"class\":\"ratelimiter\",\"id\":\"api-key-1\""));
  assert_non_null(strstr(out, "\"requests\":2"));
  assert_non_null(strstr(out, "\"window_ms\":300,\"limit\":2}"));
  assert_non_null(strstr(out, "\"alarms\":[{\"name\":\"reset\""));
  /* The alarm ends the window: the used window re-arms once, then the
   * idle window closes and no alarm is left (polled through GET, which
   * does not count as a check). */
  poll_until(
      &s, "GET", RL,
      (const char *[]){"\"requests\":0", "\"window_start\":0", "\"alarms\":[]", NULL});
  expect_post(&s, RL "/check", RL_BODY, 200, "\"allowed\"");
  expect_post(&s, RL "/check", RL_BODY, 200, "\"allowed\"");
  expect_post(&s, RL "/check", RL_BODY, 200, "\"rate_limited\"");
  /* Bad bodies are the caller's fault: 400 with the reason; nothing counted. */
  expect_post(&s, RL "/check", "{\"limit\":\"ten\"}", 400,
              "{\"error\":{\"code\":\"EINVAL\",\"message\":\"check takes");
  expect_post(&s, RL "/check", "{\"limit\":1,\"window_ms\":1}", 400,
              "\\\"window_ms\\\" must be in 10..604800000, got 1");
  expect_post(&s, RL "/check", NULL, 400, "the body is empty");
  expect_get(&s, RL, "\"requests\":2");
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

#define RM "/v1/objects/reminder/ann"

static void test_reminder_schedule_cancel_fired(void **state) {
  srv s;
  assert_int_equal(srv_start(&s, NULL), 0);
  expect_post(&s, RM "/fired", NULL, 200, "{}");
  expect_post(&s, RM "/schedule", "{\"name\":\"tea\",\"in_ms\":200,\"meta\":{\"cup\":2}}",
              200, "{\"name\":\"tea\",\"at_ms\":");
  expect_post(&s, RM "/schedule", "{\"name\":\"dentist\",\"in_ms\":600000}", 200, NULL);
  expect_post(&s, RM "/schedule", "{\"name\":\"gym\",\"in_ms\":300}", 200, NULL);
  /* Pending alarms in (time, name) order, metas as JSON. */
  char out[8192];
  assert_int_equal(get(&s, RM, out, sizeof out), 200);
  assert_non_null(strstr(out, "\"state\":null"));
  const char *tea = strstr(out, "{\"name\":\"tea\",\"at_ms\":");
  const char *gym = strstr(out, "{\"name\":\"gym\",\"at_ms\":");
  const char *den = strstr(out, "{\"name\":\"dentist\",\"at_ms\":");
  assert_true(tea && gym && den && tea < gym && gym < den);
  assert_non_null(strstr(tea, "\"attempt\":0,\"meta\":{\"cup\":2}}"));
  expect_post(&s, RM "/cancel", "{\"name\":\"gym\"}", 200, "\"canceled\":true");
  expect_post(&s, RM "/cancel", "{\"name\":\"gym\"}", 200, "\"canceled\":false");
  /* tea fires on the real clock; gym was canceled and never does. */
  poll_until(&s, "POST", RM "/fired", (const char *[]){"{\"tea\":1}", NULL});
  expect_post(&s, RM "/schedule", "{\"name\":\"tea\",\"in_ms\":0}", 200, NULL);
  poll_until(&s, "POST", RM "/fired", (const char *[]){"{\"tea\":2}", NULL});
  /* One object's alarms fire in time order: once a later marker fired,
   * gym would have fired before it had it not been canceled. */
  expect_post(&s, RM "/schedule", "{\"name\":\"marker\",\"in_ms\":400}", 200, NULL);
  poll_until(&s, "POST", RM "/fired", (const char *[]){"\"marker\":1", NULL});
  expect_post(&s, RM "/fired", NULL, 200, "{\"marker\":1,\"tea\":2}");
  assert_int_equal(get(&s, RM, out, sizeof out), 200);
  assert_non_null(strstr(out, "\"alarms\":[{\"name\":\"dentist\""));
  assert_null(strstr(out, "gym"));
  /* Bad bodies: 400 with the reason; an oversize meta is 413. */
  expect_post(&s, RM "/schedule", "{\"name\":\"x\"}", 400,
              "\\\"in_ms\\\" must be an integer");
  expect_post(&s, RM "/schedule", "{\"name\":\"x\",\"in_ms\":1,\"meta\":7}", 400,
              "\\\"meta\\\" must be an object");
  expect_post(&s, RM "/cancel", "[]", 400, "not a JSON object");
  size_t big_n = 70 * 1024;
  char *big = malloc(big_n + 64);
  int k = snprintf(big, 64, "{\"name\":\"x\",\"in_ms\":1,\"meta\":{\"p\":\"");
  memset(big + k, 'a', big_n);
  strcpy(big + k + big_n, "\"}}");
  expect_post(&s, RM "/schedule", big, 413, "ETOOBIG");
  free(big);
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

static void test_get_object(void **state) {
  srv s;
  assert_int_equal(srv_start(&s, NULL), 0);
  expect_get(&s, "/v1/objects/counter/fresh",
             "{\"class\":\"counter\",\"id\":\"fresh\",\"active\":false,\"state\":{"
             "\"count\":0,\"last_incremented_at\":0},\"alarms\":[]}");
  expect_post(&s, "/v1/objects/counter/c%2F1/increment", "5", 200, "5");
  char out[8192];
  assert_int_equal(get(&s, "/v1/objects/counter/c%2F1", out, sizeof out), 200);
  assert_non_null(
      strstr(out, "{\"class\":\"counter\",\"id\":\"c/1\",\"active\":true,\"state\":{"
                  "\"count\":5,\"last_incremented_at\":1"));
  /* `stead get` prints the same document. */
  char *cli_out = NULL;
  int x = run_stead((const char *[]){"get", "--url", s.url, "counter", "c/1", NULL}, NULL,
                    &cli_out, NULL);
  assert_int_equal(x, 0);
  assert_non_null(strstr(cli_out, "\"state\":{\"count\":5,"));
  free(cli_out);
  x = run_stead((const char *[]){"get", "--url", s.url, "nosuch", "c", NULL}, NULL, NULL,
                NULL);
  assert_int_equal(x, 4);
  /* Classes without a schema show state null; bad input is a 4xx. */
  expect_get(&s, "/v1/objects/chatroom/lobby", "\"state\":null,\"alarms\":[]");
  assert_int_equal(get(&s, "/v1/objects/nosuch/x", out, sizeof out), 404);
  assert_non_null(strstr(out, "ENOCLASS"));
  assert_int_equal(get(&s, "/v1/objects/counter/%ZZ", out, sizeof out), 400);
  /* Counter bad bodies are 400 too. */
  expect_post(&s, "/v1/objects/counter/c%2F1/increment", "\"five\"", 400,
              "increment takes a JSON integer");
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

static void test_restart_keeps_state_and_pending_alarms(void **state) {
  char dir[] = "/tmp/stead-alarms-srv-XXXXXX", data[300];
  assert_non_null(mkdtemp(dir));
  snprintf(data, sizeof data, "%s/data", dir);
  const char *extra[] = {"--storage", "sqlite", "--data", data, NULL};
  srv s;
  assert_int_equal(srv_start(&s, extra), 0);
  expect_post(&s, "/v1/objects/counter/kept/increment", "7", 200, "7");
  expect_post(&s, RM "/schedule",
              "{\"name\":\"after\",\"in_ms\":1500,\"meta\":{\"n\":1}}", 200, NULL);
  expect_post(&s, RL "/check", "{\"limit\":5,\"window_ms\":60000}", 200, "\"allowed\"");
  expect_get(&s, RM, "\"alarms\":[{\"name\":\"after\"");
  expect_post(&s, RM "/fired", NULL, 200, "{}");
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);

  assert_int_equal(srv_start(&s, extra), 0);
  expect_get(&s, "/v1/objects/counter/kept", "\"active\":false,\"state\":{\"count\":7,");
  expect_get(&s, RL, "\"requests\":1,");
  expect_get(&s, RL, "\"alarms\":[{\"name\":\"reset\"");
  /* The reminder was only on disk: it fires in the new process. */
  poll_until(&s, "POST", RM "/fired", (const char *[]){"{\"after\":1}", NULL});
  expect_get(&s, RM, "\"alarms\":[]");
  expect_post(&s, "/v1/objects/counter/kept/increment", NULL, 200, "8");
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

/* Reads one HTTP response (headers + Content-Length body) from fd. */
static int read_response(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got + 1 < n) {
    ssize_t k = recv(fd, buf + got, n - 1 - got, 0);
    if (k <= 0)
      return -1;
    got += (size_t)k;
    buf[got] = 0;
    const char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "content-length:");
    if (end && cl && got >= (size_t)(end + 4 - buf) + (size_t)atoi(cl + 15))
      return 0;
  }
  return -1;
}

/* GET routes keep the connection open: two requests on one socket, no
 * "Connection: close" (libmicrohttpd closes after an answer queued before
 * the request is complete, which made every GET a new TCP connection). */
static void test_get_keeps_connection_alive(void **state) {
  srv s;
  assert_int_equal(srv_start(&s, NULL), 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  const char *paths[] = {"/healthz", "/v1/objects/counter/k", "/metrics", "/healthz"};
  for (int i = 0; i < 4; i++) {
    char req[256], buf[1 << 16];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    assert_int_equal(read_response(fd, buf, sizeof buf), 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_null(strcasestr(buf, "connection: close"));
  }
  close(fd);
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ratelimiter_window_reset),
      cmocka_unit_test(test_reminder_schedule_cancel_fired),
      cmocka_unit_test(test_get_object),
      cmocka_unit_test(test_restart_keeps_state_and_pending_alarms),
      cmocka_unit_test(test_get_keeps_connection_alive),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
