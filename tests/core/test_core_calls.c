/*
 * Calls: replies, handler failures, activation failures, deadlines,
 * continuations and deferred replies (A->B->A cycles), overload, and close
 * with calls in flight (every callback exactly once).
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct counter_state {
  int64_t n;
  int activations;
} counter_state;

static _Atomic int g_activate_fail; /* on_activate fails while set */
static _Atomic int g_deactivations;
static _Atomic int g_gate; /* "block" waits while 0 */

static int c_activate(stead_ctx *ctx) {
  if (atomic_load(&g_activate_fail))
    return stead_fail(ctx, "activation refused for %s", stead_object_id(ctx));
  ((counter_state *)stead_state(ctx))->activations++;
  return 0;
}

static int c_deactivate(stead_ctx *ctx) {
  atomic_fetch_add(&g_deactivations, 1);
  return 0;
}

static int c_incr(stead_ctx *ctx, const void *arg, size_t len) {
  counter_state *s = stead_state(ctx);
  s->n += len ? atoll(arg) : 1;
  char buf[32];
  int k = snprintf(buf, sizeof buf, "%lld", (long long)s->n);
  return stead_reply(ctx, buf, (size_t)k);
}

static int c_fail(stead_ctx *ctx, const void *arg, size_t len) {
  counter_state *s = stead_state(ctx);
  s->n += 1000; /* memory state is not transactional; storage is */
  return stead_fail(ctx, "refused: %.*s", (int)len, (const char *)arg);
}

static int c_fail_silent(stead_ctx *ctx, const void *arg, size_t len) {
  return -1;
}

static int c_sleep(stead_ctx *ctx, const void *arg, size_t len) {
  test_sleep_ms(atoi(arg));
  return stead_reply(ctx, "slept", 5);
}

static int c_block(stead_ctx *ctx, const void *arg, size_t len) {
  while (!atomic_load(&g_gate))
    test_sleep_ms(1);
  return 0;
}

static int c_blocking_call(stead_ctx *ctx, const void *arg, size_t len) {
  void *r;
  size_t n;
  int rc = stead_call(stead_state(ctx) ? NULL : NULL, "counter", "x", "incr", NULL, 0, 0,
                      &r, &n);
  char buf[64];
  int k = snprintf(buf, sizeof buf, "%d", rc);
  return stead_reply(ctx, buf, (size_t)k);
}

/* --- continuations: ping calls pong, pong calls back ping.echo --- */

static int got_reply(stead_ctx *ctx, const stead_result *res, void *udata) {
  stead_deferred *d = udata;
  if (res->status != 0)
    return stead_deferred_fail(ctx, d, res->status, res->message);
  char buf[256];
  int k = snprintf(buf, sizeof buf, "%s+%.*s", stead_object_id(ctx), (int)res->len,
                   (const char *)res->data);
  return stead_deferred_reply(ctx, d, buf, (size_t)k);
}

/* relay(target_class/target_id/method) -> calls it and answers with its reply. */
static int c_relay(stead_ctx *ctx, const void *arg, size_t len) {
  char spec[256];
  snprintf(spec, sizeof spec, "%.*s", (int)len, (const char *)arg);
  char *cls = strtok(spec, "/"), *id = strtok(NULL, "/"), *method = strtok(NULL, "/"),
       *rest = strtok(NULL, "");
  stead_deferred *d = stead_defer_reply(ctx);
  if (!d)
    return -1;
  return stead_ctx_call(ctx, cls, id, method, rest, rest ? strlen(rest) : 0, 2000,
                        got_reply, d);
}

static int c_id(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_reply(ctx, stead_object_id(ctx), strlen(stead_object_id(ctx)));
}

static int c_send_then_fail(stead_ctx *ctx, const void *arg, size_t len) {
  stead_ctx_send(ctx, "counter", "victim", "incr", "5", 1);
  return stead_fail(ctx, "changed my mind");
}

static const stead_method counter_methods[] = {
    {"incr", c_incr},   {"fail", c_fail},   {"fail_silent", c_fail_silent},
    {"sleep", c_sleep}, {"block", c_block}, {"blocking_call", c_blocking_call},
    {"relay", c_relay}, {"id", c_id},       {"send_then_fail", c_send_then_fail},
    {NULL, NULL}};

static const stead_class counter_class = {.name = "counter",
                                          .methods = counter_methods,
                                          .on_activate = c_activate,
                                          .on_deactivate = c_deactivate,
                                          .state_size = sizeof(counter_state)};

static stead_rt *open_rt(int workers, size_t mailbox) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = workers;
  if (mailbox)
    cfg.mailbox_limit = mailbox;
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &counter_class), 0);
  atomic_store(&g_activate_fail, 0);
  atomic_store(&g_deactivations, 0);
  atomic_store(&g_gate, 0);
  return rt;
}

static int64_t call_num(stead_rt *rt, const char *id, const char *method,
                        const char *arg) {
  void *r = NULL;
  size_t n;
  int rc = stead_call(rt, "counter", id, method, arg, arg ? strlen(arg) : 0, 0, &r, &n);
  if (rc)
    fail_msg("call %s.%s: %s (%s)", id, method, stead_errname(rc), stead_errmsg());
  int64_t v = atoll(r);
  stead_free(r);
  return v;
}

static void test_reply_and_state(void **state) {
  stead_rt *rt = open_rt(2, 0);
  assert_int_equal(call_num(rt, "a", "incr", NULL), 1);
  assert_int_equal(call_num(rt, "a", "incr", "41"), 42);
  assert_int_equal(call_num(rt, "b", "incr", NULL), 1);
  assert_int_equal(stead_active_count(rt), 2);
  stead_close(rt);
  assert_int_equal(atomic_load(&g_deactivations), 2); /* close deactivates all */
}

static void test_handler_failure(void **state) {
  stead_rt *rt = open_rt(2, 0);
  void *r = (void *)1;
  size_t n;
  assert_rc(stead_call(rt, "counter", "a", "fail", "nope", 4, 0, &r, &n), STEAD_EHANDLER);
  assert_null(r);
  assert_string_equal(stead_errmsg(), "refused: nope");
  assert_rc(stead_call(rt, "counter", "a", "fail_silent", NULL, 0, 0, &r, &n),
            STEAD_EHANDLER);
  assert_non_null(strstr(stead_errmsg(), "handler"));
  /* A failed turn sends nothing. */
  assert_rc(stead_call(rt, "counter", "a", "send_then_fail", NULL, 0, 0, &r, &n),
            STEAD_EHANDLER);
  stead_run_until_idle(rt);
  assert_int_equal(stead_is_active(rt, "counter", "victim"), 0);
  stead_close(rt);
}

static void test_activate_failure(void **state) {
  stead_rt *rt = open_rt(2, 0);
  atomic_store(&g_activate_fail, 1);
  void *r;
  size_t n;
  assert_rc(stead_call(rt, "counter", "x", "incr", NULL, 0, 0, &r, &n), STEAD_EHANDLER);
  assert_non_null(strstr(stead_errmsg(), "activation refused for x"));
  stead_run_until_idle(rt);
  assert_int_equal(stead_is_active(rt, "counter", "x"), 0);
  assert_int_equal(stead_active_count(rt), 0);
  atomic_store(&g_activate_fail, 0);
  assert_int_equal(call_num(rt, "x", "incr", NULL), 1);
  assert_int_equal(stead_is_active(rt, "counter", "x"), 1);
  stead_close(rt);
  /* on_deactivate ran once: for the successful activation only. */
  assert_int_equal(atomic_load(&g_deactivations), 1);
}

static void test_deadline(void **state) {
  stead_rt *rt = open_rt(2, 0);
  void *r;
  size_t n;
  int64_t t0 = (int64_t)time(NULL);
  assert_rc(stead_call(rt, "counter", "s", "sleep", "300", 3, 50, &r, &n),
            STEAD_ETIMEDOUT);
  assert_true((int64_t)time(NULL) - t0 < 2);
  /* Queued behind the sleeper, with a deadline shorter than the wait: the
   * caller hears ETIMEDOUT and the turn does not run at all. */
  atomic_store(&g_gate, 0);
  assert_rc(stead_send(rt, "counter", "q", "block", NULL, 0), 0);
  assert_rc(stead_call(rt, "counter", "q", "incr", NULL, 0, 30, &r, &n), STEAD_ETIMEDOUT);
  atomic_store(&g_gate, 1);
  stead_run_until_idle(rt);
  assert_int_equal(call_num(rt, "q", "incr", NULL), 1); /* the timed-out incr never ran */
  stead_close(rt);
}

static void test_blocking_call_in_handler_is_misuse(void **state) {
  stead_rt *rt = open_rt(1, 0);
  void *r;
  size_t n;
  assert_rc(stead_call(rt, "counter", "h", "blocking_call", NULL, 0, 0, &r, &n), 0);
  char want[16];
  snprintf(want, sizeof want, "%d", STEAD_EMISUSE);
  assert_string_equal(r, want);
  stead_free(r);
  stead_close(rt);
}

static void test_continuations_and_cycles(void **state) {
  /* One worker: if any turn waited for another object, this would hang. */
  stead_rt *rt = open_rt(1, 0);
  void *r;
  size_t n;
  /* a -> b.id */
  assert_rc(stead_call(rt, "counter", "a", "relay", "counter/b/id", 12, 0, &r, &n), 0);
  assert_string_equal(r, "a+b");
  stead_free(r);
  /* a -> b -> a.id: a cycle back into the caller. */
  const char *spec = "counter/b/relay/counter/a/id";
  assert_rc(stead_call(rt, "counter", "a", "relay", spec, strlen(spec), 0, &r, &n), 0);
  assert_string_equal(r, "a+b+a");
  stead_free(r);
  /* Errors travel back through continuations. */
  spec = "counter/b/fail/deep";
  assert_rc(stead_call(rt, "counter", "a", "relay", spec, strlen(spec), 0, &r, &n),
            STEAD_EHANDLER);
  assert_string_equal(stead_errmsg(), "refused: deep");
  stead_close(rt);
}

static void flag_cb(const stead_result *res, void *udata) {
  atomic_store((_Atomic int *)udata, res->status == 0 ? 1 : -1);
}

static void test_deactivate_refused_while_pinned(void **state) {
  stead_rt *rt = open_rt(2, 0);
  atomic_store(&g_gate, 0);
  /* a relays to b.block: a is pinned until b answers. */
  const char *spec = "counter/b/block";
  void *r;
  size_t n;
  _Atomic int done = 0;
  assert_rc(stead_call_async(rt, "counter", "a", "relay", spec, strlen(spec), 10000,
                             flag_cb, &done),
            0);
  while (stead_is_active(rt, "counter", "b") != 1)
    test_sleep_ms(1);
  assert_rc(stead_deactivate(rt, "counter", "a"), STEAD_ECANCELED);
  atomic_store(&g_gate, 1);
  stead_run_until_idle(rt);
  assert_int_equal(atomic_load(&done), 1);
  assert_rc(stead_deactivate(rt, "counter", "a"), 0);
  assert_int_equal(stead_is_active(rt, "counter", "a"), 0);
  assert_rc(stead_call(rt, "counter", "a", "incr", NULL, 0, 0, &r, &n), 0);
  stead_free(r);
  stead_close(rt);
}

static void test_overload(void **state) {
  stead_rt *rt = open_rt(2, 8);
  atomic_store(&g_gate, 0);
  assert_rc(stead_send(rt, "counter", "o", "block", NULL, 0), 0);
  while (stead_is_active(rt, "counter", "o") != 1)
    test_sleep_ms(1);
  test_sleep_ms(20); /* let the worker take the blocking message */
  int ok = 0, over = 0;
  for (int i = 0; i < 20; i++) {
    int rc = stead_send(rt, "counter", "o", "incr", NULL, 0);
    if (rc == 0)
      ok++;
    else if (rc == STEAD_EOVERLOAD)
      over++;
  }
  assert_int_equal(ok, 8);
  assert_int_equal(over, 12);
  assert_non_null(strstr(stead_errmsg(), "full"));
  /* Other objects are not affected. */
  assert_int_equal(call_num(rt, "other", "incr", NULL), 1);
  atomic_store(&g_gate, 1);
  stead_run_until_idle(rt);
  assert_int_equal(call_num(rt, "o", "incr", NULL), 9);
  stead_close(rt);
}

typedef struct tally {
  _Atomic int calls;
  _Atomic int ok, closed, timedout, other;
} tally;

static void count_cb(const stead_result *res, void *udata) {
  tally *t = udata;
  atomic_fetch_add(&t->calls, 1);
  if (res->status == 0)
    atomic_fetch_add(&t->ok, 1);
  else if (res->status == STEAD_ETIMEDOUT)
    atomic_fetch_add(&t->timedout, 1);
  else
    atomic_fetch_add(&t->other, 1);
}

static void test_close_with_calls_in_flight(void **state) {
  stead_rt *rt = open_rt(2, 100000);
  tally t = {0};
  int issued = 0;
  for (int i = 0; i < 2000; i++) {
    char id[16];
    snprintf(id, sizeof id, "o%d", i % 50);
    if (stead_call_async(rt, "counter", id, "incr", NULL, 0, 10000, count_cb, &t) == 0)
      issued++;
  }
  /* Some calls with very short deadlines against slow objects. */
  for (int i = 0; i < 4; i++)
    if (stead_call_async(rt, "counter", "slow", "sleep", "50", 2, 5, count_cb, &t) == 0)
      issued++;
  stead_close(rt);
  assert_int_equal(atomic_load(&t.calls), issued);
  assert_int_equal(atomic_load(&t.ok) + atomic_load(&t.timedout) + atomic_load(&t.other),
                   issued);
  assert_true(atomic_load(&t.timedout) >= 3);
}

typedef struct chain {
  stead_rt *rt;
  tally second;
  _Atomic int accepted, refused;
} chain;

/* Completion of a first-round call: starts a second call from the callback
 * thread, possibly while the runtime is closing. */
static void chain_cb(const stead_result *res, void *udata) {
  chain *c = udata;
  int rc = stead_call_async(c->rt, "counter", "z", "incr", NULL, 0, 5000, count_cb,
                            &c->second);
  if (rc == 0)
    atomic_fetch_add(&c->accepted, 1);
  else if (rc == STEAD_ECLOSED)
    atomic_fetch_add(&c->refused, 1);
}

static void test_calls_racing_close(void **state) {
  /* Calls started while close drains are either accepted (and then
   * answered) or refused with ECLOSED; every accepted one completes. */
  stead_rt *rt = open_rt(2, 100000);
  chain c = {.rt = rt};
  int issued = 0;
  for (int i = 0; i < 3000; i++) {
    char id[16];
    snprintf(id, sizeof id, "r%d", i % 100);
    if (stead_call_async(rt, "counter", id, "incr", NULL, 0, 5000, chain_cb, &c) == 0)
      issued++;
  }
  stead_close(rt);
  assert_int_equal(atomic_load(&c.accepted) + atomic_load(&c.refused), issued);
  assert_int_equal(atomic_load(&c.second.calls), atomic_load(&c.accepted));
}

static void test_fairness(void **state) {
  /* A hot object with a deep mailbox does not starve another object on a
   * single worker: the other's call completes long before the backlog. */
  stead_rt *rt = open_rt(1, 100000);
  for (int i = 0; i < 2000; i++)
    assert_rc(stead_send(rt, "counter", "hot", "sleep", "0", 1), 0);
  void *r;
  size_t n;
  assert_rc(stead_call(rt, "counter", "cold", "incr", NULL, 0, 0, &r, &n), 0);
  stead_free(r);
  /* If the cold call had waited for all 2,000 hot turns, there would be no
   * backlog left; with slices, most of it is still queued. */
  char *text;
  assert_rc(stead_metrics_text(rt, &text, NULL), 0);
  char *p = strstr(text, "\nstead_turns_total ");
  assert_non_null(p);
  long turns = atol(p + strlen("\nstead_turns_total "));
  stead_free(text);
  assert_true(turns < 2000);
  stead_run_until_idle(rt);
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reply_and_state),
      cmocka_unit_test(test_handler_failure),
      cmocka_unit_test(test_activate_failure),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_blocking_call_in_handler_is_misuse),
      cmocka_unit_test(test_continuations_and_cycles),
      cmocka_unit_test(test_deactivate_refused_while_pinned),
      cmocka_unit_test(test_overload),
      cmocka_unit_test(test_close_with_calls_in_flight),
      cmocka_unit_test(test_calls_racing_close),
      cmocka_unit_test(test_fairness),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
