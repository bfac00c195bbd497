/*
 * Deactivation racing the output gate: an object deactivated while a turn
 * that called another object is still committing. Deactivation waits for
 * the commit and releases the turn's outputs -- the call among them pins
 * the object -- so the object must stay until the continuation ran.
 * Regression test for a use-after-free the deterministic simulation found
 * (docs/simulation.md).
 */
#include "core/core.h"
#include "storage/failbe.h"
#include "testutil.h"

static _Atomic int g_cont_ran;
static _Atomic int g_cont_status;

static int pong(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_reply(ctx, "pong", 4);
}

static int after(stead_ctx *ctx, const stead_result *res, void *udata) {
  atomic_store(&g_cont_status, res->status);
  atomic_fetch_add(&g_cont_ran, 1);
  return stead_put(ctx, "cont", 4, "1", 1);
}

/* Writes (so the turn commits) and calls callee/x from the same turn. */
static int go(stead_ctx *ctx, const void *arg, size_t len) {
  int rc = stead_put(ctx, "k", 1, "v", 1);
  return rc ? rc : stead_ctx_call(ctx, "callee", "x", "pong", NULL, 0, 5000, after, NULL);
}

static int has_cont(stead_ctx *ctx, const void *arg, size_t len) {
  void *v = NULL;
  int rc = stead_get(ctx, "cont", 4, &v, NULL);
  stead_free(v);
  return stead_reply(ctx, rc == 0 ? "yes" : "no", rc == 0 ? 3 : 2);
}

static const stead_method caller_methods[] = {
    {"go", go}, {"has_cont", has_cont}, {NULL, NULL}};
static const stead_class caller_class = {.name = "caller", .methods = caller_methods};
static const stead_method callee_methods[] = {{"pong", pong}, {NULL, NULL}};
static const stead_class callee_class = {.name = "callee", .methods = callee_methods};

static void test_deactivate_while_call_commits(void **state) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.storage = "fail+memory";
  cfg.workers = 2;
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &caller_class), 0);
  assert_rc(stead_register(rt, &callee_class), 0);
  stead__backend *be = stead__rt_backend(rt);
  for (int round = 0; round < 3; round++) {
    atomic_store(&g_cont_ran, 0);
    /* The commit of "go" takes 100 ms, so the deactivation, queued
     * behind it, runs while the call is still held by the output gate. */
    stead__failbe_set_delay_us(be, 100000);
    assert_rc(stead_send(rt, "caller", "a", "go", NULL, 0), 0);
    assert_rc(stead_deactivate(rt, "caller", "a"), 0);
    stead__failbe_set_delay_us(be, 0);
    assert_rc(stead_run_until_idle(rt), 0);
    assert_int_equal(atomic_load(&g_cont_ran), 1);
    assert_int_equal(atomic_load(&g_cont_status), 0);
    void *r = NULL;
    size_t n = 0;
    assert_rc(stead_call(rt, "caller", "a", "has_cont", NULL, 0, 5000, &r, &n), 0);
    assert_memory_equal(r, "yes", 3);
    stead_free(r);
  }
  assert_rc(stead_close(rt), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deactivate_while_call_commits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
