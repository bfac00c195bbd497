/*
 * test_conn.c -- in-process connections: accept and reject, ordered
 * messages both ways, close from either side with close listeners run
 * once, hibernation and reactivation with attachments and tags, the
 * bounded outgoing queue, a full mailbox, misuse, and stead_close with
 * connections open.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the object: class "room" ---- */

static atomic_int g_obj_closes;     /* on_conn_close runs */
static atomic_int g_obj_close_code; /* the last one's code */
static atomic_int g_activations;
static stead_conn *_Atomic g_obj_end; /* an object end, for misuse tests */

/* Blocks on_conn_message "block" until opened. */
static pthread_mutex_t g_gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_gate_cv = PTHREAD_COND_INITIALIZER;
static int g_gate_open = 1;

static void gate_set(int open) {
  pthread_mutex_lock(&g_gate_mu);
  g_gate_open = open;
  pthread_cond_broadcast(&g_gate_cv);
  pthread_mutex_unlock(&g_gate_mu);
}

static void gate_wait(void) {
  pthread_mutex_lock(&g_gate_mu);
  while (!g_gate_open)
    pthread_cond_wait(&g_gate_cv, &g_gate_mu);
  pthread_mutex_unlock(&g_gate_mu);
}

static int room_activate(stead_ctx *ctx) {
  atomic_fetch_add(&g_activations, 1);
  return 0;
}

static int room_connect(stead_ctx *ctx, stead_conn *conn, const void *meta, size_t len) {
  char who[64];
  snprintf(who, sizeof who, "%.*s", (int)len, (const char *)meta);
  if (strncmp(who, "reject:", 7) == 0)
    return stead_conn_reject(ctx, "%s", who + 7);
  if (strcmp(who, "fail") == 0)
    return stead_fail(ctx, "cannot accept now");
  atomic_store(&g_obj_end, conn);
  char tag[80];
  snprintf(tag, sizeof tag, "user:%s", who);
  int rc = stead_conn_set_attachment(ctx, conn, who, strlen(who));
  if (!rc)
    rc = stead_conn_tag(ctx, conn, tag);
  if (!rc)
    rc = stead_conn_tag(ctx, conn, "all");
  if (!rc)
    rc = stead_conn_send(conn, "welcome", 7, STEAD_CONN_TEXT);
  return rc;
}

/* Sends `text` to every connection with `tag`. */
static int send_tagged(stead_ctx *ctx, const char *tag, const char *text) {
  stead_conn **cs = NULL;
  size_t n = 0;
  int rc = stead_conn_list(ctx, tag, &cs, &n);
  for (size_t i = 0; !rc && i < n; i++)
    rc = stead_conn_send(cs[i], text, strlen(text), STEAD_CONN_TEXT);
  stead_free(cs);
  return rc;
}

static int room_message(stead_ctx *ctx, stead_conn *conn, const void *data, size_t len,
                        unsigned flags) {
  char m[256];
  snprintf(m, sizeof m, "%.*s", (int)len, (const char *)data);
  if (strncmp(m, "echo:", 5) == 0)
    return stead_conn_send(conn, m + 5, strlen(m + 5), flags);
  if (strncmp(m, "flood:", 6) == 0) {
    int n = atoi(m + 6);
    for (int i = 0; i < n; i++) {
      char b[32];
      int k = snprintf(b, sizeof b, "f%d", i);
      int rc = stead_conn_send(conn, b, (size_t)k, STEAD_CONN_TEXT);
      if (rc)
        return rc;
    }
    return 0;
  }
  if (strcmp(m, "close") == 0)
    return stead_conn_close(conn, 4000, "bye");
  if (strcmp(m, "block") == 0) {
    gate_wait();
    return 0;
  }
  if (strncmp(m, "failsend:", 9) == 0) {
    stead_conn_send(conn, m + 9, strlen(m + 9), 0);
    return stead_fail(ctx, "failing on purpose");
  }
  if (strncmp(m, "bcast:", 6) == 0)
    return send_tagged(ctx, "all", m + 6);
  if (strncmp(m, "to:", 3) == 0) { /* to:NAME:TEXT */
    char *sep = strchr(m + 3, ':');
    if (!sep)
      return stead_fail(ctx, "bad to:");
    *sep = 0;
    char tag[sizeof m + 8];
    snprintf(tag, sizeof tag, "user:%s", m + 3);
    return send_tagged(ctx, tag, sep + 1);
  }
  if (strcmp(m, "who") == 0) { /* the attachments of all, oldest first */
    stead_conn **cs = NULL;
    size_t n = 0;
    int rc = stead_conn_list(ctx, NULL, &cs, &n);
    char out[256] = "";
    for (size_t i = 0; !rc && i < n; i++) {
      const void *a;
      size_t al;
      rc = stead_conn_attachment(ctx, cs[i], &a, &al);
      if (!rc)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%.*s", i ? "," : "",
                 (int)al, (const char *)a);
    }
    stead_free(cs);
    return rc ? rc : stead_conn_send(conn, out, strlen(out), STEAD_CONN_TEXT);
  }
  return stead_fail(ctx, "unknown command %s", m);
}

static int room_close(stead_ctx *ctx, stead_conn *conn, int code, const char *reason) {
  atomic_fetch_add(&g_obj_closes, 1);
  atomic_store(&g_obj_close_code, code);
  return 0;
}

static int room_count(stead_ctx *ctx, const void *arg, size_t len) {
  stead_conn **cs = NULL;
  size_t n = 0;
  int rc = stead_conn_list(ctx, NULL, &cs, &n);
  stead_free(cs);
  char b[32];
  int k = snprintf(b, sizeof b, "%zu", n);
  return rc ? rc : stead_reply(ctx, b, (size_t)k);
}

static const stead_method room_methods[] = {{"count", room_count}, {NULL, NULL}};
static const stead_class room_class = {.name = "room",
                                       .methods = room_methods,
                                       .on_activate = room_activate,
                                       .on_connect = room_connect,
                                       .on_conn_message = room_message,
                                       .on_conn_close = room_close};
static const stead_class plain_class = {.name = "plain", .methods = room_methods};

/* ---- the client ---- */

typedef struct client {
  pthread_mutex_t mu;
  char msgs[256][32];
  int n;
  int closes;
  int close_code;
  char reason[128];
  int block_first; /* on_message waits for the gate on the first message */
} client;

static void on_msg(stead_conn *c, const void *data, size_t len, unsigned flags,
                   void *udata) {
  client *cl = udata;
  pthread_mutex_lock(&cl->mu);
  int first = cl->n == 0;
  if (cl->n < 256)
    snprintf(cl->msgs[cl->n], sizeof cl->msgs[0], "%.*s", (int)len, (const char *)data);
  cl->n++;
  pthread_mutex_unlock(&cl->mu);
  if (first && cl->block_first)
    gate_wait();
}

static void on_close(stead_conn *c, int code, const char *reason, void *udata) {
  client *cl = udata;
  pthread_mutex_lock(&cl->mu);
  cl->closes++;
  cl->close_code = code;
  snprintf(cl->reason, sizeof cl->reason, "%s", reason);
  pthread_mutex_unlock(&cl->mu);
}

static void client_init(client *cl) {
  memset(cl, 0, sizeof *cl);
  pthread_mutex_init(&cl->mu, NULL);
}

static int client_count(client *cl) {
  pthread_mutex_lock(&cl->mu);
  int n = cl->n;
  pthread_mutex_unlock(&cl->mu);
  return n;
}

static int client_closes(client *cl) {
  pthread_mutex_lock(&cl->mu);
  int n = cl->closes;
  pthread_mutex_unlock(&cl->mu);
  return n;
}

/* Waits up to 5 s for the client to have n messages. */
static int wait_msgs(client *cl, int n) {
  for (int i = 0; i < 5000 && client_count(cl) < n; i++)
    test_sleep_ms(1);
  return client_count(cl) >= n;
}

static int wait_closes(client *cl, int n) {
  for (int i = 0; i < 5000 && client_closes(cl) < n; i++)
    test_sleep_ms(1);
  return client_closes(cl) >= n;
}

static int wait_atomic(atomic_int *v, int n) {
  for (int i = 0; i < 5000 && atomic_load(v) < n; i++)
    test_sleep_ms(1);
  return atomic_load(v) >= n;
}

static stead_rt *open_rt(size_t mailbox_limit) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  if (mailbox_limit)
    cfg.mailbox_limit = mailbox_limit;
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &room_class), 0);
  assert_rc(stead_register(rt, &plain_class), 0);
  atomic_store(&g_obj_closes, 0);
  atomic_store(&g_activations, 0);
  gate_set(1);
  return rt;
}

static stead_conn *connect_as(stead_rt *rt, const char *id, const char *who, client *cl) {
  client_init(cl);
  stead_conn *c = NULL;
  assert_rc(stead_connect(rt, "room", id, who, strlen(who), on_msg, on_close, cl, &c), 0);
  assert_non_null(c);
  return c;
}

static void send_text(stead_conn *c, const char *s) {
  assert_rc(stead_conn_send(c, s, strlen(s), STEAD_CONN_TEXT), 0);
}

static long room_conns(stead_rt *rt, const char *id) {
  void *r = NULL;
  size_t n = 0;
  assert_rc(stead_run_until_idle(rt), 0);
  assert_rc(stead_call(rt, "room", id, "count", NULL, 0, 0, &r, &n), 0);
  long v = strtol(r, NULL, 10);
  stead_free(r);
  return v;
}

/* ---- tests ---- */

static void test_accept_and_order(void **state) {
  stead_rt *rt = open_rt(0);
  client cl;
  stead_conn *c = connect_as(rt, "r1", "ann", &cl);
  assert_true(stead_conn_id(c) > 0);
  for (int i = 0; i < 200; i++) {
    char b[32];
    snprintf(b, sizeof b, "echo:m%d", i);
    send_text(c, b);
  }
  assert_true(wait_msgs(&cl, 201));
  assert_string_equal(cl.msgs[0], "welcome");
  for (int i = 0; i < 200 && i + 1 < 256; i++) {
    char b[32];
    snprintf(b, sizeof b, "m%d", i);
    assert_string_equal(cl.msgs[i + 1], b);
  }
  assert_int_equal(room_conns(rt, "r1"), 1);
  stead_conn_stats st;
  assert_rc(stead_conn_get_stats(rt, &st), 0);
  assert_int_equal(st.open, 1);
  assert_int_equal(st.accepted, 1);
  assert_int_equal(st.msgs_in, 200);
  assert_rc(stead_conn_close(c, 0, NULL), 0);
  assert_int_equal(cl.closes, 1);
  assert_int_equal(cl.close_code, STEAD_CLOSE_NORMAL);
  assert_true(wait_atomic(&g_obj_closes, 1));
  assert_int_equal(room_conns(rt, "r1"), 0);
  assert_rc(stead_close(rt), 0);
}

static void test_reject_and_bad_connects(void **state) {
  stead_rt *rt = open_rt(0);
  client cl;
  client_init(&cl);
  stead_conn *c = (stead_conn *)1;
  const char *m = "reject:room is full";
  assert_rc(stead_connect(rt, "room", "r", m, strlen(m), on_msg, on_close, &cl, &c),
            STEAD_EREJECTED);
  assert_null(c);
  assert_string_equal(stead_errmsg(), "room is full");
  assert_rc(stead_connect(rt, "room", "r", "fail", 4, on_msg, on_close, &cl, &c),
            STEAD_EREJECTED);
  assert_non_null(strstr(stead_errmsg(), "cannot accept now"));
  assert_rc(stead_connect(rt, "plain", "r", NULL, 0, on_msg, on_close, &cl, &c),
            STEAD_ENOTSUP);
  assert_rc(stead_connect(rt, "nope", "r", NULL, 0, on_msg, on_close, &cl, &c),
            STEAD_ENOCLASS);
  assert_rc(stead_connect(rt, "room", "", NULL, 0, on_msg, on_close, &cl, &c),
            STEAD_EINVAL);
  assert_rc(stead_connect(rt, "room", "r", NULL, 0, NULL, on_close, &cl, &c),
            STEAD_EINVAL);
  static char big[STEAD_MAX_CONN_META + 1];
  assert_rc(stead_connect(rt, "room", "r", big, sizeof big, on_msg, on_close, &cl, &c),
            STEAD_ETOOBIG);
  /* Nothing was opened; no close listener ran. */
  assert_int_equal(cl.closes, 0);
  stead_conn_stats st;
  assert_rc(stead_conn_get_stats(rt, &st), 0);
  assert_int_equal(st.rejected, 2);
  assert_int_equal(st.open, 0);
  assert_int_equal(room_conns(rt, "r"), 0);
  assert_rc(stead_close(rt), 0);
}

static void test_close_from_object(void **state) {
  stead_rt *rt = open_rt(0);
  client cl;
  stead_conn *c = connect_as(rt, "r2", "ann", &cl);
  send_text(c, "echo:before");
  send_text(c, "close");
  assert_true(wait_closes(&cl, 1));
  /* Messages sent before the close arrive before on_close. */
  assert_int_equal(client_count(&cl), 2);
  assert_string_equal(cl.msgs[1], "before");
  assert_int_equal(cl.close_code, 4000);
  assert_string_equal(cl.reason, "bye");
  assert_rc(stead_conn_send(c, "x", 1, 0), STEAD_ECLOSED);
  assert_rc(stead_conn_close(c, 0, NULL), 0);
  assert_int_equal(cl.closes, 1); /* once */
  assert_int_equal(room_conns(rt, "r2"), 0);
  assert_int_equal(atomic_load(&g_obj_closes), 0); /* the object closed it itself */
  assert_rc(stead_close(rt), 0);
}

static void test_failed_turn_sends_nothing(void **state) {
  stead_rt *rt = open_rt(0);
  client cl;
  stead_conn *c = connect_as(rt, "r3", "ann", &cl);
  send_text(c, "failsend:lost");
  send_text(c, "echo:kept");
  assert_true(wait_msgs(&cl, 2));
  assert_rc(stead_run_until_idle(rt), 0);
  test_sleep_ms(20);
  assert_int_equal(client_count(&cl), 2);
  assert_string_equal(cl.msgs[1], "kept");
  /* Bad client sends. */
  assert_rc(stead_conn_send(c, "\xff", 1, STEAD_CONN_TEXT), STEAD_EINVAL);
  assert_rc(stead_conn_send(c, "x", 1, 0x80), STEAD_EINVAL);
  assert_rc(stead_conn_send(c, NULL, 3, 0), STEAD_EINVAL);
  assert_rc(stead_conn_close(c, 999, NULL), STEAD_EINVAL);
  assert_rc(stead_conn_close(c, 5000, NULL), STEAD_EINVAL);
  /* The object's end outside a turn of its object. */
  stead_conn *oe = atomic_load(&g_obj_end);
  assert_rc(stead_conn_send(oe, "x", 1, 0), STEAD_EMISUSE);
  assert_rc(stead_conn_close(oe, 0, NULL), STEAD_EMISUSE);
  assert_rc(stead_conn_close(oe, STEAD_CLOSE_ABNORMAL, NULL), STEAD_EINVAL);
  assert_rc(stead_conn_close(c, 3001, "done"), 0);
  assert_true(wait_atomic(&g_obj_closes, 1));
  assert_int_equal(atomic_load(&g_obj_close_code), 3001);
  assert_rc(stead_close(rt), 0);
}

static void test_hibernation(void **state) {
  stead_rt *rt = open_rt(0);
  client a, b, c;
  stead_conn *ca = connect_as(rt, "hub", "ann", &a);
  stead_conn *cb = connect_as(rt, "hub", "bob", &b);
  stead_conn *cc = connect_as(rt, "hub", "cy", &c);
  assert_true(wait_msgs(&a, 1) && wait_msgs(&b, 1) && wait_msgs(&c, 1));
  assert_int_equal(atomic_load(&g_activations), 1);
  assert_rc(stead_deactivate(rt, "room", "hub"), 0);
  assert_int_equal(stead_is_active(rt, "room", "hub"), 0);
  /* Still open while the object is out of memory. */
  stead_conn_stats st;
  assert_rc(stead_conn_get_stats(rt, &st), 0);
  assert_int_equal(st.open, 3);
  /* The next message reactivates it; attachments and tags survived. */
  send_text(cb, "who");
  assert_true(wait_msgs(&b, 2));
  assert_string_equal(b.msgs[1], "ann,bob,cy");
  assert_int_equal(atomic_load(&g_activations), 2);
  assert_int_equal(stead_is_active(rt, "room", "hub"), 1);
  assert_rc(stead_deactivate(rt, "room", "hub"), 0);
  send_text(ca, "to:cy:psst");
  assert_true(wait_msgs(&c, 2));
  assert_string_equal(c.msgs[1], "psst");
  assert_rc(stead_deactivate(rt, "room", "hub"), 0);
  send_text(cc, "bcast:hi");
  assert_true(wait_msgs(&a, 2) && wait_msgs(&b, 3) && wait_msgs(&c, 3));
  assert_string_equal(a.msgs[1], "hi");
  assert_string_equal(b.msgs[2], "hi");
  assert_string_equal(c.msgs[2], "hi");
  assert_int_equal(client_count(&a), 2); /* psst went to cy only */
  /* A close while hibernated reactivates it for on_conn_close. */
  assert_rc(stead_deactivate(rt, "room", "hub"), 0);
  assert_rc(stead_conn_close(ca, 0, NULL), 0);
  assert_true(wait_atomic(&g_obj_closes, 1));
  assert_int_equal(room_conns(rt, "hub"), 2);
  assert_rc(stead_conn_close(cb, 0, NULL), 0);
  assert_rc(stead_conn_close(cc, 0, NULL), 0);
  assert_rc(stead_close(rt), 0);
}

static void slow_cb(stead_conn *c, int status, const char *reason, void *udata) {
  if (status == 0)
    atomic_store((stead_conn * _Atomic *)udata, c);
}

static void test_slow_client(void **state) {
  stead_rt *rt = open_rt(0);
  client cl;
  client_init(&cl);
  cl.block_first = 1;
  gate_set(0);
  stead_conn_opts o = {0};
  o.on_message = on_msg;
  o.on_close = on_close;
  o.udata = &cl;
  o.max_queue_msgs = 8;
  assert_rc(stead_connect_async(rt, "room", "slow", "ann", 3, &o, NULL, NULL),
            STEAD_EINVAL);
  stead_conn *_Atomic c = NULL;
  /* The sync API has no options: use the async one and wait. */
  assert_rc(stead_connect_async(rt, "room", "slow", "ann", 3, &o, slow_cb, (void *)&c),
            0);
  for (int i = 0; i < 5000 && !atomic_load(&c); i++)
    test_sleep_ms(1);
  assert_non_null(atomic_load(&c));
  /* "welcome" blocks the client's on_message; 50 more overflow 8. */
  send_text(c, "flood:50");
  assert_true(wait_atomic(&g_obj_closes, 1));
  assert_int_equal(atomic_load(&g_obj_close_code), STEAD_CLOSE_SLOW);
  stead_conn_stats st;
  assert_rc(stead_conn_get_stats(rt, &st), 0);
  assert_int_equal(st.closed_slow, 1);
  assert_rc(stead_conn_send(c, "x", 1, 0), STEAD_ECLOSED);
  gate_set(1);
  assert_true(wait_closes(&cl, 1));
  assert_int_equal(cl.close_code, STEAD_CLOSE_SLOW);
  assert_non_null(strstr(cl.reason, "too slow"));
  assert_true(client_count(&cl) <= 9); /* welcome + at most the queue */
  assert_rc(stead_conn_close(c, 0, NULL), 0);
  assert_int_equal(cl.closes, 1);
  assert_rc(stead_close(rt), 0);
}

static void test_mailbox_full(void **state) {
  stead_rt *rt = open_rt(4);
  client cl;
  stead_conn *c = connect_as(rt, "busy", "ann", &cl);
  gate_set(0);
  send_text(c, "block");
  int rc = 0, sent = 0;
  for (int i = 0; i < 100 && rc == 0; i++)
    if ((rc = stead_conn_send(c, "echo:x", 6, STEAD_CONN_TEXT)) == 0)
      sent++;
  assert_rc(rc, STEAD_EOVERLOAD);
  assert_true(sent <= 4);
  gate_set(1);
  assert_true(wait_msgs(&cl, 1 + sent));
  assert_rc(stead_conn_close(c, 0, NULL), 0);
  assert_rc(stead_close(rt), 0);
}

static void test_runtime_close(void **state) {
  stead_rt *rt = open_rt(0);
  client a, b;
  stead_conn *ca = connect_as(rt, "x", "ann", &a);
  stead_conn *cb = connect_as(rt, "y", "bob", &b);
  assert_rc(stead_close(rt), 0);
  assert_int_equal(a.closes, 1);
  assert_int_equal(a.close_code, STEAD_CLOSE_GOING_AWAY);
  assert_int_equal(b.closes, 1);
  assert_int_equal(atomic_load(&g_obj_closes), 2);
  /* Handles are still closed (released) by their owner afterwards. */
  assert_rc(stead_conn_send(ca, "x", 1, 0), STEAD_ECLOSED);
  assert_rc(stead_conn_close(ca, 0, NULL), 0);
  assert_rc(stead_conn_close(cb, 0, NULL), 0);
  assert_int_equal(a.closes, 1);
}

/* Client and object close the same connection at once, many times:
 * each side's listener runs at most once, the client's exactly once. */
static void test_close_race(void **state) {
  stead_rt *rt = open_rt(0);
  for (int i = 0; i < 200; i++) {
    client cl;
    stead_conn *c = connect_as(rt, "race", "ann", &cl);
    send_text(c, "close");
    if (i % 2)
      test_sleep_ms(0);
    assert_rc(stead_conn_close(c, 0, NULL), 0);
    assert_int_equal(cl.closes, 1);
  }
  assert_rc(stead_run_until_idle(rt), 0);
  assert_true(atomic_load(&g_obj_closes) <= 200);
  assert_int_equal(room_conns(rt, "race"), 0);
  stead_conn_stats st;
  assert_rc(stead_conn_get_stats(rt, &st), 0);
  assert_int_equal(st.open, 0);
  assert_int_equal(st.closed, 200);
  assert_rc(stead_close(rt), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_and_order),
      cmocka_unit_test(test_reject_and_bad_connects),
      cmocka_unit_test(test_close_from_object),
      cmocka_unit_test(test_failed_turn_sends_nothing),
      cmocka_unit_test(test_hibernation),
      cmocka_unit_test(test_slow_client),
      cmocka_unit_test(test_mailbox_full),
      cmocka_unit_test(test_runtime_close),
      cmocka_unit_test(test_close_race),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
