/*
 * test_ws.c -- WebSockets against the real `stead serve`, with a C client
 * on libwslay: the chatroom over sockets (broadcast of posts made by a
 * socket and by HTTP, a bad message answered on its own socket), ping,
 * closes both ways, bad upgrade requests and malformed frames (each
 * refused with the right status or close code while the server keeps
 * serving), a client that stops reading (disconnected, others unharmed),
 * and 1,000 sockets on one room.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "wsclient.h"

static srv g_srv;

static int setup(void **state) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max; /* 1,000 sockets and then some */
  setrlimit(RLIMIT_NOFILE, &rl);
  return srv_start(&g_srv, NULL);
}

static int teardown(void **state) {
  return srv_stop(&g_srv, 15 /* SIGTERM */, 15000) == 0 ? 0 : -1;
}

static wsc *open_ok(const char *path) {
  wsc *c = NULL;
  int st = wsc_open(g_srv.port, path, 0, &c);
  if (st != 101)
    fail_msg("connect %s: status %d", path, st);
  return c;
}

/* The next text message, which must contain `want`. */
static void expect_text(wsc *c, const char *want) {
  char *m = NULL;
  size_t len = 0;
  int op;
  while ((op = wsc_recv(c, 5000, &m, &len)) == 9) /* the server's keepalive */
    free(m);
  if (op != 1 || !strstr(m, want))
    fail_msg("expected text with %s, got opcode %d: %s", want, op, m ? m : "");
  free(m);
}

static void expect_close(wsc *c, int code) {
  size_t got = 0;
  int op;
  while ((op = wsc_recv(c, 5000, NULL, &got)) == 1 || op == 2 || op == 9 || op == 10)
    ;
  if (op != 8 || (int)got != code)
    fail_msg("expected close %d, got opcode %d code %zu", code, op, got);
}

static void server_serves(void) {
  resp r = {0};
  assert_int_equal(http(&g_srv, "GET", "/healthz", NULL, 0, NULL, NULL, &r), 200);
  resp_free(&r);
  wsc *c = open_ok("/v1/objects/chatroom/alive/connect");
  wsc_close(c, 1000);
  expect_close(c, 1000);
  wsc_free(c);
}

static void test_chat(void **state) {
  wsc *ann = open_ok("/v1/objects/chatroom/lobby/connect?meta=ann");
  wsc *bob = open_ok("/v1/objects/chatroom/lobby/connect?meta=bob");
  const char *m = "{\"text\":\"hello\"}";
  assert_int_equal(wsc_send(ann, m, strlen(m), 0), 0);
  expect_text(ann, "\"user\":\"ann\",\"text\":\"hello\"");
  expect_text(bob, "\"user\":\"ann\",\"text\":\"hello\"");
  /* A post by HTTP reaches the sockets too, and the methods still work. */
  resp r = {0};
  const char *p = "{\"user\":\"web\",\"text\":\"from http\"}";
  assert_int_equal(http(&g_srv, "POST", "/v1/objects/chatroom/lobby/post", p, strlen(p),
                        "application/json", NULL, &r),
                   200);
  assert_string_equal(r.body, "2");
  resp_free(&r);
  expect_text(ann, "from http");
  expect_text(bob, "from http");
  assert_int_equal(
      http(&g_srv, "POST", "/v1/objects/chatroom/lobby/history", NULL, 0, NULL, NULL, &r),
      200);
  assert_non_null(strstr(r.body, "from http"));
  resp_free(&r);
  /* A bad message is answered on its own socket only. */
  assert_int_equal(wsc_send(bob, "nope", 4, 0), 0);
  expect_text(bob, "\"error\"");
  assert_int_equal(wsc_send(bob, "{\"text\":\"x\"}", 12, 1), 0); /* binary is fine */
  expect_text(ann, "\"user\":\"bob\",\"text\":\"x\"");
  expect_text(bob, "\"text\":\"x\"");
  /* Ping gets a pong. */
  assert_int_equal(wsc_ping(ann), 0);
  size_t len;
  assert_int_equal(wsc_recv(ann, 5000, NULL, &len), 10);
  /* The client closes: the server answers the close. */
  assert_int_equal(wsc_close(ann, 1000), 0);
  expect_close(ann, 1000);
  wsc_free(ann);
  assert_int_equal(wsc_close(bob, 4001), 0);
  expect_close(bob, 4001);
  wsc_free(bob);
}

static void test_bad_upgrades(void **state) {
  static const struct {
    const char *req;
    int status;
  } cases[] = {
      /* no Upgrade header: not a WebSocket */
      {"GET /v1/objects/chatroom/r/connect HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /v1/objects/chatroom/r/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
       426},
      {"GET /v1/objects/chatroom/r/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
       "Sec-WebSocket-Key: short\r\n\r\n",
       400},
      {"GET /v1/objects/chatroom/r/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
       "Connection: keep-alive\r\nSec-WebSocket-Version: 13\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
       400},
      {"PUT /v1/objects/chatroom/r/connect HTTP/1.1\r\nHost: x\r\n\r\n", 405},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int st = raw(&g_srv, cases[i].req, strlen(cases[i].req), 1);
    if (st != cases[i].status)
      fail_msg("case %zu: status %d, expected %d", i, st, cases[i].status);
  }
  wsc *c = NULL;
  /* The object refuses: a room id that cannot be a topic -> 403. */
  assert_int_equal(wsc_open(g_srv.port, "/v1/objects/chatroom/a.b/connect", 0, &c), 403);
  assert_int_equal(wsc_open(g_srv.port, "/v1/objects/counter/x/connect", 0, &c), 501);
  assert_int_equal(wsc_open(g_srv.port, "/v1/objects/nope/x/connect", 0, &c), 404);
  assert_int_equal(wsc_open(g_srv.port, "/v1/objects/chatroom/x/connect?meta=%zz", 0, &c),
                   400);
  assert_null(c);
  server_serves();
}

static void test_malformed_frames(void **state) {
  static const struct {
    const char *what;
    unsigned char frame[16];
    size_t len;
    int code; /* 0: a close frame without a code (wslay's own answer) */
  } cases[] = {
      {"unmasked text frame", {0x81, 0x02, 'h', 'i'}, 4, 1002},
      {"reserved opcode 3", {0x83, 0x80, 1, 2, 3, 4}, 6, 1002},
      {"RSV1 without an extension", {0xC1, 0x80, 1, 2, 3, 4}, 6, 1002},
      {"text that is not UTF-8", {0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28}, 8, 1007},
      {"a 2^40-byte message",
       {0x82, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4, 'a', 'b'},
       16,
       1009},
      {"continuation with nothing to continue", {0x80, 0x80, 1, 2, 3, 4}, 6, 1002},
      {"fragmented ping", {0x09, 0x80, 1, 2, 3, 4}, 6, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    wsc *c = open_ok("/v1/objects/chatroom/mal/connect");
    assert_int_equal(wsc_raw(c, cases[i].frame, cases[i].len), 0);
    size_t got = 0;
    int op = wsc_recv(c, 5000, NULL, &got);
    if (op != 8 || (int)got != cases[i].code)
      fail_msg("%s: opcode %d code %zu, expected close %d", cases[i].what, op, got,
               cases[i].code);
    wsc_free(c);
  }
  /* A fragmented, masked message is reassembled. */
  wsc *c = open_ok("/v1/objects/chatroom/frag/connect?meta=f");
  const char *a = "{\"text\":", *b = "\"frag\"}";
  unsigned char f[64];
  size_t n = 0;
  f[n++] = 0x01; /* text, not final */
  f[n++] = 0x80 | (unsigned char)strlen(a);
  memset(f + n, 0, 4); /* zero mask: payload as is */
  n += 4;
  memcpy(f + n, a, strlen(a));
  n += strlen(a);
  f[n++] = 0x80; /* continuation, final */
  f[n++] = 0x80 | (unsigned char)strlen(b);
  memset(f + n, 0, 4);
  n += 4;
  memcpy(f + n, b, strlen(b));
  n += strlen(b);
  assert_int_equal(wsc_raw(c, f, n), 0);
  expect_text(c, "\"user\":\"f\",\"text\":\"frag\"");
  wsc_free(c);
  server_serves();
}

static void test_slow_client(void **state) {
  /* `slow` never reads; `fast` posts 4 KiB messages and reads them. */
  wsc *slow = NULL;
  assert_int_equal(
      wsc_open(g_srv.port, "/v1/objects/chatroom/flood/connect", 4096, &slow), 101);
  wsc *fast = open_ok("/v1/objects/chatroom/flood/connect?meta=fast");
  char text[4000];
  memset(text, 'x', sizeof text);
  char msg[4100];
  int n = snprintf(msg, sizeof msg, "{\"text\":\"%.*s\"}", (int)sizeof text, text);
  for (int i = 0; i < 800; i++) {
    assert_int_equal(wsc_send(fast, msg, (size_t)n, 0), 0);
    expect_text(fast, "xxxx");
  }
  /* The slow one was cut off: draining what reached it ends in a close
   * (1008) or, if even that frame could not be written, the end. */
  int op;
  size_t got = 0;
  while ((op = wsc_recv(slow, 5000, NULL, &got)) == 1)
    ;
  if (!(op == -1 || (op == 8 && got == 1008)))
    fail_msg("slow client: opcode %d code %zu", op, got);
  wsc_free(slow);
  resp r = {0};
  assert_int_equal(http(&g_srv, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 200);
  assert_non_null(strstr(r.body, "stead_ws_slow_total 1"));
  resp_free(&r);
  wsc_close(fast, 1000);
  expect_close(fast, 1000);
  wsc_free(fast);
}

static void test_thousand_sockets(void **state) {
  enum { N = 1000 };
  wsc **cs = calloc(N, sizeof *cs);
  for (int i = 0; i < N; i++)
    cs[i] = open_ok("/v1/objects/chatroom/big/connect");
  const char *m = "{\"user\":\"host\",\"text\":\"to all\"}";
  assert_int_equal(wsc_send(cs[0], m, strlen(m), 0), 0);
  for (int i = 0; i < N; i++)
    expect_text(cs[i], "to all");
  resp r = {0};
  assert_int_equal(http(&g_srv, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 200);
  const char *o = strstr(r.body, "\nstead_connections_open ");
  assert_non_null(o);
  assert_true(atol(o + 24) >= N);
  resp_free(&r);
  for (int i = 0; i < N; i++)
    wsc_free(cs[i]); /* abrupt: no close frame */
  free(cs);
  /* The server notices every lost socket and closes its connection. */
  int ok = 0;
  for (int t = 0; t < 100 && !ok; t++) {
    assert_int_equal(http(&g_srv, "GET", "/metrics", NULL, 0, NULL, NULL, &r), 200);
    ok = strstr(r.body, "stead_connections_open 0") != NULL;
    resp_free(&r);
    if (!ok)
      usleep(50000);
  }
  assert_true(ok);
  server_serves();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chat),
      cmocka_unit_test(test_bad_upgrades),
      cmocka_unit_test(test_malformed_frames),
      cmocka_unit_test(test_slow_client),
      cmocka_unit_test(test_thousand_sockets),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
