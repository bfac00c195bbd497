/*
 * test_ctx_api.c -- the public in-turn storage API over a stand-in for
 * core: this test defines stead_ctx and stead__ctx_store itself (core is
 * not linked), so the API is tested without the runtime.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "core/seam.h"
#include "helpers.h"
#include "storage/objstore.h"

struct stead_ctx {
  stead__objstore *os;
  int in_turn;
};

struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  return ctx->in_turn ? ctx->os : NULL;
}

typedef struct fx {
  stead__backend *b;
  stead_ctx ctx;
} fx;

static int setup(void **state) {
  fx *x = calloc(1, sizeof *x);
  if (stead__mem_open(&x->b) || stead__objstore_new(x->b, "c", "o", NULL, &x->ctx.os))
    return -1;
  stead__objstore_turn_begin(x->ctx.os);
  x->ctx.in_turn = 1;
  *state = x;
  return 0;
}

static int teardown(void **state) {
  fx *x = *state;
  stead__objstore_free(x->ctx.os);
  stead__backend_close(x->b);
  free(x);
  return 0;
}

static void next_turn(fx *x) {
  stead__wset *ws;
  assert_int_equal(stead__objstore_turn_end(x->ctx.os, 1, &ws), 0);
  if (ws) {
    assert_int_equal(x->b->vt->commit(x->b, &ws, 1), 0);
    stead__objstore_on_durable(x->ctx.os, ws);
    stead__wset_unref(ws);
  }
  stead__objstore_turn_begin(x->ctx.os);
}

static void test_get_put_delete(void **state) {
  fx *x = *state;
  stead_ctx *ctx = &x->ctx;
  void *v;
  size_t n;
  assert_int_equal(stead_get(ctx, "k", 1, &v, &n), STEAD_ENOTFOUND);
  assert_int_equal(stead_put(ctx, "k", 1, "hello", 5), 0);
  assert_int_equal(stead_get(ctx, "k", 1, &v, &n), 0);
  assert_int_equal(n, 5);
  assert_string_equal(v, "hello"); /* NUL-terminated for convenience */
  stead_free(v);
  next_turn(x);
  assert_int_equal(stead_get(ctx, "k", 1, NULL, NULL), 0);
  assert_int_equal(stead_delete(ctx, "k", 1), 0);
  assert_int_equal(stead_delete(ctx, "never", 5), 0);
  assert_int_equal(stead_get(ctx, "k", 1, &v, &n), STEAD_ENOTFOUND);
  /* empty value is a value */
  assert_int_equal(stead_put(ctx, "e", 1, NULL, 0), 0);
  assert_int_equal(stead_get(ctx, "e", 1, &v, &n), 0);
  assert_int_equal(n, 0);
  stead_free(v);
}

static void test_bad_args_and_misuse(void **state) {
  fx *x = *state;
  stead_ctx *ctx = &x->ctx;
  static char big[STEAD_MAX_KEY + 1];
  assert_int_equal(stead_put(ctx, "", 0, "v", 1), STEAD_EINVAL);
  assert_int_equal(stead_put(ctx, NULL, 3, "v", 1), STEAD_EINVAL);
  assert_int_equal(stead_put(ctx, "k", 1, NULL, 3), STEAD_EINVAL);
  assert_int_equal(stead_put(ctx, big, sizeof big, "v", 1), STEAD_ETOOBIG);
  assert_int_equal(stead_get(ctx, big, sizeof big, NULL, NULL), STEAD_ETOOBIG);
  assert_int_equal(stead_put(ctx, "k", 1, big, STEAD_MAX_VALUE + 1), STEAD_ETOOBIG);
  assert_non_null(strstr(stead_errmsg(), "value is"));
  stead_list_opts o = {
      .start = "a", .start_len = 1, .start_after = "b", .start_after_len = 1};
  stead_kv *out;
  size_t n;
  assert_int_equal(stead_list(ctx, &o, &out, &n), STEAD_EINVAL);
  /* outside a turn */
  ctx->in_turn = 0;
  assert_int_equal(stead_put(ctx, "k", 1, "v", 1), STEAD_EMISUSE);
  assert_int_equal(stead_get(ctx, "k", 1, NULL, NULL), STEAD_EMISUSE);
  assert_int_equal(stead_delete_all(ctx), STEAD_EMISUSE);
  assert_int_equal(stead_list(ctx, NULL, &out, &n), STEAD_EMISUSE);
  assert_int_equal(stead_get(NULL, "k", 1, NULL, NULL), STEAD_EMISUSE);
  ctx->in_turn = 1;
}

static void test_batches(void **state) {
  fx *x = *state;
  stead_ctx *ctx = &x->ctx;
  stead_kv put[] = {{"a", 1, "1", 1}, {"b", 1, "22", 2}, {"a", 1, "3", 1}};
  assert_int_equal(stead_put_many(ctx, put, 3), 0);
  next_turn(x);
  stead_kv keys[] = {{"a", 1, NULL, 0}, {"zz", 2, NULL, 0}, {"b", 1, NULL, 0}};
  stead_kv *got;
  assert_int_equal(stead_get_many(ctx, keys, 3, &got), 0);
  assert_memory_equal(got[0].key, "a", 1);
  assert_string_equal(got[0].value, "3"); /* last value of a repeated key */
  assert_null(got[1].value);
  assert_memory_equal(got[1].key, "zz", 2);
  assert_int_equal(got[2].value_len, 2);
  assert_string_equal(got[2].value, "22");
  stead_free(got);
  /* A bad entry anywhere: nothing of the batch is written. */
  stead_kv bad[] = {{"c", 1, "x", 1}, {"", 0, "y", 1}};
  assert_int_equal(stead_put_many(ctx, bad, 2), STEAD_EINVAL);
  assert_int_equal(stead_get(ctx, "c", 1, NULL, NULL), STEAD_ENOTFOUND);
  assert_int_equal(stead_delete_many(ctx, keys, 3), 0);
  assert_int_equal(stead_get(ctx, "a", 1, NULL, NULL), STEAD_ENOTFOUND);
  assert_int_equal(stead_get_many(ctx, NULL, 0, &got), 0);
  assert_null(got);
}

static void test_batch_over_write_set_limit(void **state) {
  fx *x = *state;
  stead_ctx *ctx = &x->ctx;
  /* 9 values of 2 MiB exceed the 16 MiB write set: refused as a whole. */
  char *v = calloc(1, STEAD_MAX_VALUE);
  stead_kv e[9];
  char keys[9][4];
  for (int i = 0; i < 9; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    e[i] = (stead_kv){keys[i], strlen(keys[i]), v, STEAD_MAX_VALUE};
  }
  assert_int_equal(stead_put_many(ctx, e, 9), STEAD_ETOOBIG);
  assert_int_equal(stead_get(ctx, "k0", 2, NULL, NULL), STEAD_ENOTFOUND);
  assert_int_equal(stead_put_many(ctx, e, 7), 0);
  /* 7 x (2 MiB + overhead) fit; an 8th full value does not, a small one does. */
  assert_int_equal(stead_put(ctx, "k8", 2, v, STEAD_MAX_VALUE), STEAD_ETOOBIG);
  assert_non_null(strstr(stead_errmsg(), "limit"));
  assert_int_equal(stead_put(ctx, "k9", 2, v, 1000), 0);
  free(v);
}

static void test_list_and_delete_all(void **state) {
  fx *x = *state;
  stead_ctx *ctx = &x->ctx;
  stead_kv put[] = {{"a1", 2, "x", 1}, {"a2", 2, "", 0}, {"b1", 2, "y", 1}};
  stead_put_many(ctx, put, 3);
  next_turn(x);
  stead_put(ctx, "a3", 2, "z", 1);
  stead_kv *out;
  size_t n;
  assert_int_equal(stead_list(ctx, NULL, &out, &n), 0);
  assert_int_equal(n, 4);
  assert_memory_equal(out[3].key, "b1", 2);
  assert_non_null(out[1].value); /* empty but present */
  assert_int_equal(out[1].value_len, 0);
  stead_free(out);
  stead_list_opts o = {.prefix = "a", .prefix_len = 1, .reverse = 1, .limit = 2};
  assert_int_equal(stead_list(ctx, &o, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(out[0].key, "a3");
  assert_string_equal(out[1].key, "a2");
  stead_free(out);
  assert_int_equal(stead_delete_all(ctx), 0);
  stead_put(ctx, "new", 3, "1", 1);
  assert_int_equal(stead_list(ctx, NULL, &out, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(out[0].key, "new");
  stead_free(out);
  next_turn(x);
  o = (stead_list_opts){.prefix = "zzz", .prefix_len = 3};
  assert_int_equal(stead_list(ctx, &o, &out, &n), 0);
  assert_int_equal(n, 0);
  assert_null(out);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_get_put_delete),
      T(test_bad_args_and_misuse),
      T(test_batches),
      T(test_batch_over_write_set_limit),
      T(test_list_and_delete_all),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
