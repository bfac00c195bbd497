/*
 * test_objstore.c -- the activation store: read-your-writes, merged
 * listings over pending + in-flight + backend, rollback, failure
 * cancellation, limits, hibernation. Runs over the memory backend and the
 * sqlite backend (the merge must not depend on the backend).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "helpers.h"
#include "storage/objstore.h"

typedef struct fx {
  char dir[256];
  stead__backend *b;
  stead__objstore *os;
} fx;

static int setup_with(void **state, int sqlite) {
  fx *x = calloc(1, sizeof *x);
  th_tmpdir(x->dir, sizeof x->dir);
  char spec[400];
  snprintf(spec, sizeof spec, "sqlite:%s/o.db?durability=normal", x->dir);
  if (stead__backend_open(sqlite ? spec : "memory", &x->b))
    return -1;
  stead__objstore_opts o = {.max_key = 16, .max_value = 64, .max_wset = 1024};
  if (stead__objstore_new(x->b, "c", "o", &o, &x->os))
    return -1;
  *state = x;
  return 0;
}
static int setup_mem(void **state) {
  return setup_with(state, 0);
}
static int setup_sql(void **state) {
  return setup_with(state, 1);
}

static int teardown(void **state) {
  fx *x = *state;
  stead__objstore_free(x->os);
  stead__backend_close(x->b);
  th_rmrf(x->dir);
  free(x);
  return 0;
}

static int put(stead__objstore *os, const char *k, const char *v) {
  return stead__objstore_put(os, 0, k, strlen(k), v, strlen(v));
}
static int del(stead__objstore *os, const char *k) {
  return stead__objstore_del(os, 0, k, strlen(k));
}
static char *get(stead__objstore *os, const char *k) {
  void *v;
  size_t n;
  return stead__objstore_get(os, 0, k, strlen(k), &v, &n) ? NULL : v;
}
static void expect(stead__objstore *os, const char *k, const char *want) {
  char *g = get(os, k);
  if (!want) {
    assert_null(g);
    return;
  }
  assert_non_null(g);
  assert_string_equal(g, want);
  free(g);
}

/* Ends the turn and commits its set straight to the backend. */
static void commit_turn(fx *x) {
  stead__wset *ws;
  assert_int_equal(stead__objstore_turn_end(x->os, 1, &ws), 0);
  if (!ws)
    return;
  assert_int_equal(x->b->vt->commit(x->b, &ws, 1), 0);
  stead__objstore_on_durable(x->os, ws);
  stead__wset_unref(ws);
}

/* Ends the turn; leaves its set in flight (returned). */
static stead__wset *end_inflight(fx *x) {
  stead__wset *ws;
  assert_int_equal(stead__objstore_turn_end(x->os, 1, &ws), 0);
  return ws;
}

static char *list(stead__objstore *os, const stead__list_opts *o, th_collect *c) {
  c->out[0] = 0;
  assert_int_equal(stead__objstore_list(os, 0, o, th_collect_cb, c), 0);
  return c->out;
}

#define S(x) x, sizeof(x) - 1

static void test_read_your_writes(void **state) {
  fx *x = *state;
  stead__objstore_turn_begin(x->os);
  expect(x->os, "a", NULL);
  assert_int_equal(put(x->os, "a", "1"), 0);
  expect(x->os, "a", "1");
  assert_int_equal(del(x->os, "a"), 0);
  expect(x->os, "a", NULL);
  put(x->os, "a", "2");
  commit_turn(x);
  expect(x->os, "a", "2");
  /* Existence test without a value. */
  assert_int_equal(stead__objstore_get(x->os, 0, "a", 1, NULL, NULL), 0);
}

static void test_rollback(void **state) {
  fx *x = *state;
  stead__objstore_turn_begin(x->os);
  put(x->os, "keep", "1");
  commit_turn(x);
  stead__objstore_turn_begin(x->os);
  put(x->os, "keep", "changed");
  put(x->os, "new", "x");
  stead__objstore_delete_all(x->os, 0);
  stead__wset *ws;
  assert_int_equal(stead__objstore_turn_end(x->os, 0, &ws), 0);
  assert_null(ws);
  expect(x->os, "keep", "1");
  expect(x->os, "new", NULL);
  /* A turn that wrote nothing hands out no set. */
  stead__objstore_turn_begin(x->os);
  assert_int_equal(stead__objstore_turn_end(x->os, 1, &ws), 0);
  assert_null(ws);
}

static void test_list_merge_inflight(void **state) {
  fx *x = *state;
  th_collect c;
  /* durable: a b c d */
  stead__objstore_turn_begin(x->os);
  put(x->os, "a", "0"), put(x->os, "b", "0"), put(x->os, "c", "0"), put(x->os, "d", "0");
  commit_turn(x);
  /* in flight 1: delete b, change c, add e */
  stead__objstore_turn_begin(x->os);
  del(x->os, "b"), put(x->os, "c", "1"), put(x->os, "e", "1");
  stead__wset *w1 = end_inflight(x);
  /* in flight 2: delete e, add bb */
  stead__objstore_turn_begin(x->os);
  del(x->os, "e"), put(x->os, "bb", "2");
  stead__wset *w2 = end_inflight(x);
  assert_int_equal(stead__objstore_inflight(x->os), 2);
  /* pending: delete a, add f */
  stead__objstore_turn_begin(x->os);
  del(x->os, "a"), put(x->os, "f", "3");
  stead__list_opts o = {0};
  assert_string_equal(list(x->os, &o, &c), "bb=2,c=1,d=0,f=3");
  o = (stead__list_opts){.reverse = 1, .limit = 2};
  assert_string_equal(list(x->os, &o, &c), "f=3,d=0");
  o = (stead__list_opts){.limit = 1};
  assert_string_equal(list(x->os, &o, &c), "bb=2"); /* a hidden by a tombstone */
  o = (stead__list_opts){.prefix = S("b")};
  assert_string_equal(list(x->os, &o, &c), "bb=2");
  o = (stead__list_opts){.start_after = S("bb"), .end = S("f")};
  assert_string_equal(list(x->os, &o, &c), "c=1,d=0");
  o = (stead__list_opts){.start = S("f"), .end = S("a")};
  assert_string_equal(list(x->os, &o, &c), "");
  expect(x->os, "c", "1");
  expect(x->os, "e", NULL);
  expect(x->os, "b", NULL);
  /* Sets become durable in order: the view does not change. */
  x->b->vt->commit(x->b, &w1, 1);
  o = (stead__list_opts){0};
  assert_string_equal(list(x->os, &o, &c), "bb=2,c=1,d=0,f=3"); /* w1 in both */
  stead__objstore_on_durable(x->os, w1);
  x->b->vt->commit(x->b, &w2, 1);
  stead__objstore_on_durable(x->os, w2);
  assert_string_equal(list(x->os, &o, &c), "bb=2,c=1,d=0,f=3");
  stead__wset_unref(w1);
  stead__wset_unref(w2);
  commit_turn(x);
  assert_string_equal(list(x->os, &o, &c), "bb=2,c=1,d=0,f=3");
}

static void test_list_delete_all_merge(void **state) {
  fx *x = *state;
  th_collect c;
  stead__objstore_turn_begin(x->os);
  put(x->os, "a", "0"), put(x->os, "b", "0");
  commit_turn(x);
  stead__objstore_turn_begin(x->os);
  stead__objstore_delete_all(x->os, 0);
  put(x->os, "z", "1");
  stead__wset *w1 = end_inflight(x);
  stead__objstore_turn_begin(x->os);
  stead__list_opts o = {0};
  assert_string_equal(list(x->os, &o, &c), "z=1");
  expect(x->os, "a", NULL);
  put(x->os, "c", "2");
  assert_string_equal(list(x->os, &o, &c), "c=2,z=1");
  /* Other namespaces are untouched by a user delete_all. */
  stead__objstore_put(x->os, STEAD__NS_STATE, "", 0, "s", 1);
  commit_turn(x);
  void *v;
  size_t n;
  assert_int_equal(stead__objstore_get(x->os, STEAD__NS_STATE, "", 0, &v, &n), 0);
  free(v);
  stead__objstore_on_durable(x->os, w1); /* out of band: still consistent */
  stead__wset_unref(w1);
}

static void test_on_failed_drops_later(void **state) {
  fx *x = *state;
  stead__objstore_turn_begin(x->os);
  put(x->os, "base", "0");
  commit_turn(x);
  expect(x->os, "base", "0"); /* cached now */
  stead__objstore_turn_begin(x->os);
  put(x->os, "k", "1");
  stead__wset *w1 = end_inflight(x);
  stead__objstore_turn_begin(x->os);
  put(x->os, "k", "2");
  stead__wset *w2 = end_inflight(x);
  stead__objstore_turn_begin(x->os);
  put(x->os, "k", "3");
  expect(x->os, "k", "3");
  uint64_t g0 = stead__objstore_gen(x->os);
  /* w1's commit fails: w2 is cancelled, the open turn is doomed. */
  assert_int_equal(stead__objstore_on_failed(x->os, w1), 1);
  assert_int_equal(atomic_load(&w2->cancelled), 1);
  assert_int_equal(stead__objstore_gen(x->os), g0 + 1);
  assert_int_equal(stead__objstore_inflight(x->os), 0);
  assert_int_equal(stead__objstore_cache_bytes(x->os), 0);
  stead__wset *w3;
  assert_int_equal(stead__objstore_turn_end(x->os, 1, &w3), STEAD_ECANCELED);
  assert_null(w3);
  /* The failed set's later report is ignored. */
  assert_int_equal(stead__objstore_on_failed(x->os, w2), 0);
  stead__objstore_on_durable(x->os, w2);
  expect(x->os, "k", NULL);
  expect(x->os, "base", "0");
  stead__wset_unref(w1);
  stead__wset_unref(w2);
  /* The next turn works again. */
  stead__objstore_turn_begin(x->os);
  put(x->os, "k", "4");
  commit_turn(x);
  expect(x->os, "k", "4");
}

static void test_limits(void **state) {
  fx *x = *state;
  char big[2048];
  memset(big, 'x', sizeof big);
  /* Writes outside a turn are misuse. */
  assert_int_equal(put(x->os, "a", "b"), STEAD_EMISUSE);
  assert_int_equal(stead__objstore_delete_all(x->os, 0), STEAD_EMISUSE);
  stead__wset *ws;
  assert_int_equal(stead__objstore_turn_end(x->os, 1, &ws), STEAD_EMISUSE);
  stead__objstore_turn_begin(x->os);
  assert_int_equal(stead__objstore_turn_begin(x->os), STEAD_EMISUSE);
  assert_int_equal(stead__objstore_put(x->os, 0, big, 17, "v", 1), STEAD_ETOOBIG);
  assert_non_null(strstr(stead_errmsg(), "key is 17 bytes"));
  assert_int_equal(stead__objstore_put(x->os, 0, big, 16, big, 64), 0);
  assert_int_equal(stead__objstore_put(x->os, 0, "k", 1, big, 65), STEAD_ETOOBIG);
  assert_int_equal(stead__objstore_get(x->os, 0, big, 17, NULL, NULL), STEAD_ETOOBIG);
  /* Write-set limit (1024): keys of 16 + values of 64 + overhead. */
  int rc = 0, i;
  for (i = 0; i < 100 && !rc; i++) {
    char k[16];
    snprintf(k, sizeof k, "key%03d", i);
    rc = stead__objstore_put(x->os, 0, k, strlen(k), big, 64);
  }
  assert_int_equal(rc, STEAD_ETOOBIG);
  assert_non_null(strstr(stead_errmsg(), "limit is 1024"));
  /* Overwriting an entry does not count it twice. */
  assert_int_equal(stead__objstore_put(x->os, 0, "key000", 6, big, 64), 0);
  assert_int_equal(stead__objstore_alarm_set(x->os, "a", 1, 0, big, 70000),
                   STEAD_ETOOBIG);
  assert_int_equal(stead__objstore_alarm_set(x->os, "", 1, 0, NULL, 0), STEAD_EINVAL);
  assert_int_equal(stead__objstore_put(x->os, 200, "k", 1, "v", 1), STEAD_EINVAL);
  stead__objstore_turn_end(x->os, 0, &ws);
}

/* An object that writes new keys and deletes old ones (a bounded history)
 * keeps a bounded cache: durable deletes leave no tombstones behind. */
static void test_deleted_keys_leave_cache(void **state) {
  fx *x = *state;
  char k[16], old[16];
  size_t after_warmup = 0;
  for (int i = 0; i < 400; i++) {
    stead__objstore_turn_begin(x->os);
    snprintf(k, sizeof k, "m%05d", i);
    assert_int_equal(put(x->os, k, "text"), 0);
    if (i >= 10) {
      snprintf(old, sizeof old, "m%05d", i - 10);
      assert_int_equal(del(x->os, old), 0);
    }
    commit_turn(x);
    if (i == 50)
      after_warmup = stead__objstore_cache_bytes(x->os);
  }
  assert_true(after_warmup > 0);
  assert_int_equal(stead__objstore_cache_bytes(x->os), after_warmup);
  expect(x->os, "m00389", NULL); /* deleted: read from the backend */
  expect(x->os, "m00399", "text");
}

static void test_hibernate(void **state) {
  fx *x = *state;
  stead__objstore_turn_begin(x->os);
  put(x->os, "a", "1");
  commit_turn(x);
  expect(x->os, "a", "1");
  assert_true(stead__objstore_cache_bytes(x->os) > 0);
  stead__objstore_turn_begin(x->os);
  put(x->os, "b", "2");
  stead__wset *w = end_inflight(x);
  assert_int_equal(stead__objstore_hibernate(x->os), 0); /* set in flight */
  x->b->vt->commit(x->b, &w, 1);
  stead__objstore_on_durable(x->os, w);
  stead__wset_unref(w);
  assert_int_equal(stead__objstore_hibernate(x->os), 1);
  assert_int_equal(stead__objstore_cache_bytes(x->os), 0);
  expect(x->os, "a", "1"); /* from the backend again */
  expect(x->os, "b", "2");
}

static void test_alarms_in_set(void **state) {
  fx *x = *state;
  stead__objstore_turn_begin(x->os);
  assert_int_equal(stead__objstore_alarm_set(x->os, "t", 50, 1, "m", 1), 0);
  assert_int_equal(stead__objstore_alarm_del(x->os, "gone"), 0);
  stead__wset *w = end_inflight(x);
  assert_non_null(w);
  assert_int_equal(w->alarms.count, 2);
  x->b->vt->commit(x->b, &w, 1);
  stead__objstore_on_durable(x->os, w);
  stead__wset_unref(w);
}

#define T(fn)                                                                            \
  cmocka_unit_test_setup_teardown(fn, setup_mem, teardown),                              \
      cmocka_unit_test_setup_teardown(fn, setup_sql, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_read_your_writes),
      T(test_rollback),
      T(test_list_merge_inflight),
      T(test_list_delete_all_merge),
      T(test_on_failed_drops_later),
      T(test_limits),
      T(test_deleted_keys_leave_cache),
      T(test_hibernate),
      T(test_alarms_in_set),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
