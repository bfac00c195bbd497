/*
 * test_events_http.c -- the event routes and the chatroom end to end on the
 * real `stead serve` (SQLite under a fixed data directory): POST
 * /v1/events 202/400, an SSE stream that gets a matching event and not a
 * non-matching one, chatroom post/history across a restart with the same
 * --data, and chat.{room}.message on the stream; the CLI's `stead emit`.
 */
#include <curl/curl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static char g_data[256];

static void start(srv *s) {
  const char *const extra[] = {"--storage", "sqlite", "--data", g_data, NULL};
  assert_int_equal(srv_start(s, extra), 0);
}

/* ---- a raw SSE client (decodes the chunked body) ---- */

typedef struct sse {
  int fd;
  char raw[65536];
  size_t rlen;
  char body[65536]; /* de-chunked stream so far */
  size_t blen;
} sse;

static void sse_pump(sse *c, int ms) {
  struct pollfd pf = {c->fd, POLLIN, 0};
  if (poll(&pf, 1, ms) > 0) {
    ssize_t r = recv(c->fd, c->raw + c->rlen, sizeof c->raw - 1 - c->rlen, 0);
    if (r > 0)
      c->rlen += (size_t)r;
  }
  c->raw[c->rlen] = 0;
  /* Re-decode from scratch: header, then size CRLF data CRLF ... */
  char *p = strstr(c->raw, "\r\n\r\n");
  c->blen = 0;
  if (!p)
    return;
  p += 4;
  char *end = c->raw + c->rlen;
  while (p < end) {
    char *nl = strstr(p, "\r\n");
    if (!nl)
      break;
    size_t n = strtoul(p, NULL, 16);
    if (n == 0 || nl + 2 + n > end)
      break;
    memcpy(c->body + c->blen, nl + 2, n);
    c->blen += n;
    p = nl + 2 + n + 2;
  }
  c->body[c->blen] = 0;
}

/* Waits until the stream contains `want` (5 s). */
static int sse_wait(sse *c, const char *want) {
  for (int i = 0; i < 100; i++) {
    if (strstr(c->body, want))
      return 1;
    sse_pump(c, 50);
  }
  return strstr(c->body, want) != NULL;
}

static void sse_open(sse *c, const srv *s, const char *pattern) {
  memset(c, 0, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)s->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET /v1/events?pattern=%s HTTP/1.1\r\nHost: x\r\n\r\n", pattern);
  assert_int_equal(send(c->fd, req, (size_t)n, 0), n);
  /* The opening comment says the listener is registered. */
  assert_true(sse_wait(c, ": stream "));
  assert_non_null(strstr(c->raw, "text/event-stream"));
}

static long post(const srv *s, const char *path, const char *body, resp *r) {
  return http(s, "POST", path, body, body ? strlen(body) : 0, NULL, NULL, r);
}

/* ---- tests ---- */

static void test_emit_and_stream(void **state) {
  srv s;
  start(&s);
  sse c;
  sse_open(&c, &s, "orders.*.paid");
  resp r;
  assert_int_equal(post(&s, "/v1/events/orders.1.shipped", "{\"n\":1}", &r), 202);
  resp_free(&r);
  assert_int_equal(post(&s, "/v1/events/orders.7.paid", "{\"n\":7}", &r), 202);
  assert_string_equal(r.body, "{\"status\":\"accepted\"}");
  resp_free(&r);
  assert_true(sse_wait(&c, "data: {\"topic\":\"orders.7.paid\",\"payload\":{\"n\":7}}"));
  /* The earlier, non-matching event never showed up (one bus worker:
   * it was dispatched before the matching one). */
  assert_null(strstr(c.body, "shipped"));
  assert_non_null(strstr(c.body, "id: 1\n"));
  /* Bad topics: 400 with the bus's message. */
  assert_int_equal(post(&s, "/v1/events/orders.*.paid", "{}", &r), 400);
  assert_non_null(strstr(r.body, "wildcard"));
  resp_free(&r);
  assert_int_equal(post(&s, "/v1/events/a%20b", "{}", &r), 400);
  resp_free(&r);
  /* Bad pattern on the stream: 400. */
  assert_int_equal(http(&s, "GET", "/v1/events?pattern=ab*", NULL, 0, NULL, NULL, &r),
                   400);
  assert_non_null(strstr(r.body, "EINVAL"));
  resp_free(&r);
  /* The CLI emits too. */
  char url[80];
  snprintf(url, sizeof url, "%s", s.url);
  const char *const argv[] = {"emit",          "--url",          url,
                              "orders.9.paid", "{\"cli\":true}", NULL};
  assert_int_equal(run_stead(argv, NULL, NULL, NULL), 0);
  assert_true(sse_wait(&c, "{\"cli\":true}"));
  /* Metrics know the stream. */
  assert_int_equal(http(&s, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 200);
  assert_non_null(strstr(r.body, "stead_http_event_streams 1\n"));
  assert_non_null(strstr(r.body, "stead_bus_emits_total{outcome=\"succeeded\"}"));
  resp_free(&r);
  /* SIGTERM ends the stream cleanly and the server exits 0. */
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
  for (int i = 0; i < 40 && !strstr(c.raw, "\r\n0\r\n\r\n"); i++)
    sse_pump(&c, 50);
  assert_non_null(strstr(c.raw, "\r\n0\r\n\r\n")); /* the last chunk */
  close(c.fd);
}

static void test_chatroom_across_restart(void **state) {
  srv s;
  start(&s);
  sse c;
  sse_open(&c, &s, "chat.*.message");
  resp r;
  for (int i = 1; i <= 3; i++) {
    char b[64], want[8];
    snprintf(b, sizeof b, "{\"user\":\"ann\",\"text\":\"m%d\"}", i);
    snprintf(want, sizeof want, "%d", i);
    assert_int_equal(post(&s, "/v1/objects/chatroom/lobby/post", b, &r), 200);
    assert_string_equal(r.body, want);
    resp_free(&r);
  }
  assert_true(sse_wait(&c, "\"topic\":\"chat.lobby.message\""));
  assert_true(sse_wait(&c, "\"text\":\"m3\""));
  /* Bad bodies are the caller's fault (400) with a message; nothing is posted. */
  assert_int_equal(post(&s, "/v1/objects/chatroom/lobby/post", "{\"user\":\"a\"", &r),
                   400);
  assert_non_null(strstr(r.body, "not valid JSON"));
  resp_free(&r);
  assert_int_equal(post(&s, "/v1/objects/chatroom/lobby/post", "{\"user\":\"a\"}", &r),
                   400);
  assert_non_null(strstr(r.body, "\\\"text\\\" must be a string"));
  resp_free(&r);
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
  close(c.fd);

  start(&s);
  assert_int_equal(post(&s, "/v1/objects/chatroom/lobby/history", NULL, &r), 200);
  assert_non_null(strstr(r.body, "\"text\":\"m1\""));
  const char *p1 = strstr(r.body, "m1"), *p3 = strstr(r.body, "m3");
  assert_true(p1 && p3 && p1 < p3);
  assert_int_equal(r.body[0], '[');
  resp_free(&r);
  assert_int_equal(post(&s, "/v1/objects/chatroom/lobby/post",
                        "{\"user\":\"bo\",\"text\":\"m4\"}", &r),
                   200);
  assert_string_equal(r.body, "4");
  resp_free(&r);
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

static void test_chatroom_history_keeps_last_100(void **state) {
  srv s;
  start(&s);
  resp r;
  for (int i = 1; i <= 105; i++) {
    char b[64];
    snprintf(b, sizeof b, "{\"user\":\"u\",\"text\":\"t%d\"}", i);
    assert_int_equal(post(&s, "/v1/objects/chatroom/big/post", b, &r), 200);
    resp_free(&r);
  }
  assert_int_equal(post(&s, "/v1/objects/chatroom/big/history", NULL, &r), 200);
  assert_null(strstr(r.body, "\"t5\""));
  assert_non_null(strstr(r.body, "{\"id\":6,"));
  assert_non_null(strstr(r.body, "\"t105\""));
  int n = 0;
  for (const char *p = r.body; (p = strstr(p, "\"id\":")); p++)
    n++;
  assert_int_equal(n, 100);
  resp_free(&r);
  assert_int_equal(srv_stop(&s, SIGTERM, 10000), 0);
}

static int setup(void **state) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(g_data, sizeof g_data, "/tmp/stead-evhttp-XXXXXX");
  return mkdtemp(g_data) ? 0 : -1;
}

static int teardown(void **state) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_data);
  curl_global_cleanup();
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_emit_and_stream),
      cmocka_unit_test(test_chatroom_across_restart),
      cmocka_unit_test(test_chatroom_history_keeps_last_100),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
