/*
 * Storage inside turns, through the runtime: state structs that persist
 * across a restart (real SQLite files), atomic turns (a failed turn leaves
 * nothing), read-your-writes, the output gate (a failed commit releases
 * nothing, and a later turn that read the lost write fails too), and
 * corrupt records failing only their own object.
 */
#include "core/core.h"
#include "storage/failbe.h"
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct counter {
  int64_t count;
  int64_t last_at;
  char *note;
} counter;

static const stead_field counter_fields[] = {
    STEAD_FIELD_INT64(counter, count, 0),
    STEAD_FIELD_TIMESTAMP(counter, last_at, 0),
    STEAD_FIELD_STRING(counter, note, "new"),
};
static const stead_schema counter_schema = STEAD_SCHEMA(counter, counter_fields);

static int reply_count(stead_ctx *ctx) {
  char buf[64];
  int k =
      snprintf(buf, sizeof buf, "%lld", (long long)((counter *)stead_state(ctx))->count);
  return stead_reply(ctx, buf, (size_t)k);
}

/* incr: state struct and a raw key move together. */
static int incr(stead_ctx *ctx, const void *arg, size_t len) {
  counter *c = stead_state(ctx);
  c->count += len ? atoll(arg) : 1;
  c->last_at = stead_now_ms(ctx);
  char v[32];
  int k = snprintf(v, sizeof v, "%lld", (long long)c->count);
  int rc = stead_put(ctx, "count", 5, v, (size_t)k);
  return rc ? rc : reply_count(ctx);
}

static int get(stead_ctx *ctx, const void *arg, size_t len) {
  return reply_count(ctx);
}

/* get_key: replies the raw key "count" ("-" if absent). */
static int get_key(stead_ctx *ctx, const void *arg, size_t len) {
  void *v = NULL;
  size_t n = 0;
  int rc = stead_get(ctx, "count", 5, &v, &n);
  if (rc == STEAD_ENOTFOUND)
    return stead_reply(ctx, "-", 1);
  if (rc)
    return rc;
  rc = stead_reply(ctx, v, n);
  stead_free(v);
  return rc;
}

/* incr_then_fail: changes everything, then fails. */
static int incr_then_fail(stead_ctx *ctx, const void *arg, size_t len) {
  counter *c = stead_state(ctx);
  c->count += 1000;
  stead_state_set_string(&c->note, "changed");
  stead_put(ctx, "count", 5, "999", 3);
  stead_put(ctx, "other", 5, "x", 1);
  stead_ctx_send(ctx, "counter", "witness", "incr", NULL, 0);
  return stead_fail(ctx, "no");
}

static int note(stead_ctx *ctx, const void *arg, size_t len) {
  counter *c = stead_state(ctx);
  return stead_reply(ctx, c->note, strlen(c->note));
}

/* write_many: puts keys k0..k(n-1) then lists them back in the same turn. */
static int write_and_list(stead_ctx *ctx, const void *arg, size_t len) {
  int n = atoi(arg);
  for (int i = 0; i < n; i++) {
    char k[16];
    int kl = snprintf(k, sizeof k, "k%03d", i);
    int rc = stead_put(ctx, k, (size_t)kl, k, (size_t)kl);
    if (rc)
      return rc;
  }
  stead_list_opts o = {0};
  o.prefix = "k";
  o.prefix_len = 1;
  stead_kv *kv;
  size_t cnt;
  int rc = stead_list(ctx, &o, &kv, &cnt);
  if (rc)
    return rc;
  char buf[32];
  int k = snprintf(buf, sizeof buf, "%zu", cnt);
  stead_free(kv);
  return stead_reply(ctx, buf, (size_t)k);
}

/* put_and_send: writes and sends to the witness (gated by the commit). */
static int put_and_send(stead_ctx *ctx, const void *arg, size_t len) {
  counter *c = stead_state(ctx);
  c->count++;
  int rc = stead_ctx_send(ctx, "counter", "witness", "incr", NULL, 0);
  return rc ? rc : reply_count(ctx);
}

static const stead_method methods[] = {{"incr", incr},
                                       {"get", get},
                                       {"get_key", get_key},
                                       {"incr_then_fail", incr_then_fail},
                                       {"note", note},
                                       {"write_and_list", write_and_list},
                                       {"put_and_send", put_and_send},
                                       {NULL, NULL}};

static const stead_class counter_class = {
    .name = "counter", .methods = methods, .state_schema = &counter_schema};

static test_clock g_clock;
static char g_dir[256];

static stead_rt *open_rt(const char *storage) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = storage;
  cfg.clock = test_clock_read;
  cfg.clock_udata = &g_clock;
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &counter_class), 0);
  return rt;
}

static char *call_str(stead_rt *rt, const char *id, const char *method, const char *arg,
                      int want) {
  void *r = NULL;
  size_t n;
  int rc =
      stead_call(rt, "counter", id, method, arg, arg ? strlen(arg) : 0, 5000, &r, &n);
  if (rc != want)
    fail_msg("%s.%s: %s (%s), wanted %s", id, method, stead_errname(rc), stead_errmsg(),
             stead_errname(want));
  return r;
}

static long call_num(stead_rt *rt, const char *id, const char *method, const char *arg) {
  char *r = call_str(rt, id, method, arg, 0);
  long v = atol(r);
  stead_free(r);
  return v;
}

static int setup(void **state) {
  snprintf(g_dir, sizeof g_dir, "/tmp/stead-test-XXXXXX");
  assert_non_null(mkdtemp(g_dir));
  atomic_store(&g_clock.now_ms, 1700000000000);
  return 0;
}

static int teardown(void **state) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  return system(cmd);
}

static void spec_path(char *out, size_t n, const char *prefix) {
  snprintf(out, n, "%ssqlite:%s/data/stead.db", prefix, g_dir);
}

static void test_state_survives_restart(void **state) {
  char spec[400];
  spec_path(spec, sizeof spec, "");
  stead_rt *rt = open_rt(spec);
  for (int i = 0; i < 50; i++)
    call_num(rt, "a", "incr", NULL);
  assert_int_equal(call_num(rt, "a", "incr", "50"), 100);
  assert_int_equal(call_num(rt, "b", "incr", NULL), 1);
  stead_close(rt);
  rt = open_rt(spec);
  assert_int_equal(stead_is_active(rt, "counter", "a"), 0);
  assert_int_equal(call_num(rt, "a", "get", NULL), 100);
  assert_int_equal(call_num(rt, "a", "get_key", NULL), 100);
  assert_int_equal(call_num(rt, "b", "get", NULL), 1);
  char *n = call_str(rt, "never-seen", "note", NULL, 0);
  assert_string_equal(n, "new"); /* defaults for a new object */
  stead_free(n);
  stead_close(rt);
}

static void test_failed_turn_rolls_back(void **state) {
  char spec[400];
  spec_path(spec, sizeof spec, "");
  stead_rt *rt = open_rt(spec);
  assert_int_equal(call_num(rt, "f", "incr", NULL), 1);
  char *r = call_str(rt, "f", "incr_then_fail", NULL, STEAD_EHANDLER);
  assert_null(r);
  assert_string_equal(stead_errmsg(), "no");
  assert_int_equal(call_num(rt, "f", "get", NULL), 1); /* struct rolled back */
  char *n = call_str(rt, "f", "note", NULL, 0);
  assert_string_equal(n, "new");
  stead_free(n);
  assert_int_equal(call_num(rt, "f", "get_key", NULL), 1); /* key rolled back */
  stead_run_until_idle(rt);
  assert_int_equal(stead_is_active(rt, "counter", "witness"), 0); /* nothing sent */
  /* The same after deactivation: nothing of the failed turn was stored. */
  assert_rc(stead_deactivate(rt, "counter", "f"), 0);
  assert_int_equal(call_num(rt, "f", "get", NULL), 1);
  assert_int_equal(call_num(rt, "f", "get_key", NULL), 1);
  stead_close(rt);
}

static void test_read_your_writes(void **state) {
  stead_rt *rt = open_rt("memory");
  assert_int_equal(call_num(rt, "w", "write_and_list", "10"), 10);
  assert_int_equal(call_num(rt, "w", "write_and_list", "20"), 20);
  stead_close(rt);
}

static void test_commit_failure_fails_call_and_keeps_data(void **state) {
  stead_rt *rt = open_rt("fail+memory");
  stead__backend *be = stead__rt_backend(rt);
  assert_int_equal(call_num(rt, "c", "incr", NULL), 1);
  stead__failbe_fail_next(be, 1);
  char *r = call_str(rt, "c", "put_and_send", NULL, STEAD_ESTORAGE);
  assert_null(r);
  assert_non_null(strstr(stead_errmsg(), "commit failed"));
  stead_run_until_idle(rt);
  /* The gated message was never released; the struct was reloaded. */
  assert_int_equal(stead_is_active(rt, "counter", "witness"), 0);
  assert_int_equal(call_num(rt, "c", "get", NULL), 1);
  assert_int_equal(call_num(rt, "c", "incr", NULL), 2);
  stead_close(rt);
}

/* A commit whose outcome the database never confirmed (it did land here)
 * reaches the caller as EUNKNOWN, not as a definite failure; the object
 * then reads the truth from storage. */
static void test_unknown_commit_outcome_reaches_caller(void **state) {
  stead_rt *rt = open_rt("fail+memory");
  stead__backend *be = stead__rt_backend(rt);
  assert_int_equal(call_num(rt, "c", "incr", NULL), 1);
  stead__failbe_unknown_next(be, 1);
  assert_null(call_str(rt, "c", "incr", NULL, STEAD_EUNKNOWN));
  stead_run_until_idle(rt);
  assert_int_equal(call_num(rt, "c", "get", NULL), 2);
  assert_int_equal(call_num(rt, "c", "incr", NULL), 3);
  stead_close(rt);
}

static _Atomic int g_done;
static _Atomic int g_status[2];
static char g_reply[2][32];

static void cb0(const stead_result *r, void *u) {
  int i = (int)(intptr_t)u;
  atomic_store(&g_status[i], r->status);
  if (r->status == 0)
    snprintf(g_reply[i], sizeof g_reply[i], "%.*s", (int)r->len, (const char *)r->data);
  atomic_fetch_add(&g_done, 1);
}

static void test_output_gate_holds_dependent_reads(void **state) {
  /* Turn 1 writes; its commit is slow and will fail. Turn 2 only reads,
   * and runs before turn 1's commit finishes, so it saw turn 1's write:
   * its reply must not be released as if that write existed. */
  stead_rt *rt = open_rt("fail+memory");
  stead__backend *be = stead__rt_backend(rt);
  assert_int_equal(call_num(rt, "g", "incr", NULL), 1);
  stead__failbe_set_delay_us(be, 100000);
  stead__failbe_fail_next(be, 1);
  atomic_store(&g_done, 0);
  assert_rc(stead_call_async(rt, "counter", "g", "incr", NULL, 0, 5000, cb0, (void *)0),
            0);
  assert_rc(stead_call_async(rt, "counter", "g", "get", NULL, 0, 5000, cb0, (void *)1),
            0);
  while (atomic_load(&g_done) < 2)
    test_sleep_ms(1);
  assert_int_equal(atomic_load(&g_status[0]), STEAD_ESTORAGE);
  assert_int_equal(atomic_load(&g_status[1]), STEAD_ESTORAGE);
  stead__failbe_set_delay_us(be, 0);
  assert_int_equal(call_num(rt, "g", "get", NULL), 1);
  stead_close(rt);
}

static void test_gate_releases_in_order(void **state) {
  /* With slow commits, a read-only turn behind a write turn is answered
   * after it, with the written value. */
  stead_rt *rt = open_rt("fail+memory");
  stead__failbe_set_delay_us(stead__rt_backend(rt), 50000);
  atomic_store(&g_done, 0);
  assert_rc(stead_call_async(rt, "counter", "o", "incr", "7", 1, 5000, cb0, (void *)0),
            0);
  assert_rc(stead_call_async(rt, "counter", "o", "get", NULL, 0, 5000, cb0, (void *)1),
            0);
  while (atomic_load(&g_done) < 2)
    test_sleep_ms(1);
  assert_int_equal(atomic_load(&g_status[0]), 0);
  assert_int_equal(atomic_load(&g_status[1]), 0);
  assert_string_equal(g_reply[0], "7");
  assert_string_equal(g_reply[1], "7");
  stead_close(rt);
}

static void test_corrupt_state_fails_only_that_object(void **state) {
  char spec[400], path[400];
  spec_path(spec, sizeof spec, "");
  snprintf(path, sizeof path, "%s/data/stead.db", g_dir);
  stead_rt *rt = open_rt(spec);
  call_num(rt, "bad", "incr", NULL);
  call_num(rt, "good", "incr", NULL);
  stead_close(rt);
  /* A record from "a future version": bad magic. */
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                                "UPDATE kv SET v = x'5309' WHERE id = 'bad' AND ns = 1",
                                NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_changes(db), 1);
  sqlite3_close(db);
  rt = open_rt(spec);
  char *r = call_str(rt, "bad", "get", NULL, STEAD_ECORRUPT);
  assert_null(r);
  assert_non_null(strstr(stead_errmsg(), "bad"));
  assert_int_equal(stead_is_active(rt, "counter", "bad"), 0);
  assert_int_equal(call_num(rt, "good", "get", NULL), 1);
  stead_close(rt);
}

static void test_bad_storage_specs(void **state) {
  stead_config cfg;
  stead_config_init(&cfg);
  stead_rt *rt = NULL;
  cfg.storage = "carrier-pigeon";
  assert_true(stead_open(&cfg, &rt) < 0);
  assert_null(rt);
  cfg.storage = "sqlite:";
  assert_rc(stead_open(&cfg, &rt), STEAD_EINVAL);
  /* A file that is not a database. */
  char path[400], spec[420];
  snprintf(path, sizeof path, "%s/garbage.db", g_dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (int i = 0; i < 4096; i++)
    fputc(i * 7 & 0xff, f);
  fclose(f);
  snprintf(spec, sizeof spec, "sqlite:%s", path);
  cfg.storage = spec;
  assert_rc(stead_open(&cfg, &rt), STEAD_ECORRUPT);
  assert_non_null(strstr(stead_errmsg(), "garbage.db"));
  cfg.storage = "memory";
  cfg.durability = 7;
  assert_rc(stead_open(&cfg, &rt), STEAD_EINVAL);
}

static void test_schema_registration_checks(void **state) {
  stead_rt *rt = open_rt("memory");
  stead_class c = counter_class;
  c.name = "mismatch";
  c.state_size = 3;
  assert_rc(stead_register(rt, &c), STEAD_EINVAL);
  static const stead_field dup[] = {STEAD_FIELD_INT64(counter, count, 0),
                                    STEAD_FIELD_INT64(counter, count, 0)};
  static const stead_schema dup_schema = STEAD_SCHEMA(counter, dup);
  c.state_size = 0;
  c.state_schema = &dup_schema;
  assert_rc(stead_register(rt, &c), STEAD_EINVAL);
  stead_close(rt);
}

static int g_tel_save_stop, g_tel_load_start;
static pthread_mutex_t g_tel_mu = PTHREAD_MUTEX_INITIALIZER;

static void tel(const stead_telemetry_event *ev, void *u) {
  pthread_mutex_lock(&g_tel_mu);
  if (!strcmp(ev->op, "save") && !strcmp(ev->phase, "stop"))
    g_tel_save_stop++;
  if (!strcmp(ev->op, "load") && !strcmp(ev->phase, "start"))
    g_tel_load_start++;
  pthread_mutex_unlock(&g_tel_mu);
}

static void test_telemetry_events(void **state) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.telemetry = tel;
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &counter_class), 0);
  call_num(rt, "t", "incr", NULL);
  call_num(rt, "t", "incr", NULL);
  stead_close(rt);
  assert_int_equal(g_tel_save_stop, 2);
  assert_true(g_tel_load_start >= 1); /* the state record at activation */
}

typedef struct pipe_state {
  stead_rt *rt;
  _Atomic int started, done, failed;
  int total;
} pipe_state;

/* Each completion starts the next call until `total` were started. */
static void pipe_cb(const stead_result *r, void *u) {
  pipe_state *p = u;
  if (r->status)
    atomic_fetch_add(&p->failed, 1);
  if (atomic_fetch_add(&p->started, 1) < p->total)
    stead_call_async(p->rt, "counter", "hot", "incr", NULL, 0, 30000, pipe_cb, p);
  atomic_fetch_add(&p->done, 1);
}

static void test_pipelined_writes_to_one_object(void **state) {
  /* Many gated turns of one object finishing while earlier ones are being
   * released: every call must be answered (a lost wakeup once stranded
   * replies here). */
  char spec[400];
  spec_path(spec, sizeof spec, "");
  stead_rt *rt = open_rt(spec);
  enum { WINDOW = 256 };
  pipe_state p = {.rt = rt, .total = 20000};
  atomic_store(&p.started, WINDOW);
  for (int i = 0; i < WINDOW; i++)
    assert_rc(stead_call_async(rt, "counter", "hot", "incr", NULL, 0, 30000, pipe_cb, &p),
              0);
  for (int i = 0; i < 60000 && atomic_load(&p.done) < p.total; i++)
    test_sleep_ms(1);
  assert_int_equal(atomic_load(&p.done), p.total);
  assert_int_equal(atomic_load(&p.failed), 0);
  stead_run_until_idle(rt);
  assert_int_equal(call_num(rt, "hot", "get", NULL), p.total);
  stead_close(rt);
}

static int noop(stead_ctx *ctx, const void *arg, size_t len) {
  return 0;
}

static void test_object_state_from_outside(void **state) {
  stead_rt *rt = open_rt("memory");
  static const stead_method nm[] = {{"noop", noop}, {NULL, NULL}};
  static const stead_class plain = {.name = "plain", .methods = nm};
  assert_rc(stead_register(rt, &plain), 0);
  call_num(rt, "s", "incr", "41");
  call_num(rt, "s", "incr", NULL);
  void *st = NULL;
  assert_rc(stead_object_state(rt, "counter", "s", &st), 0);
  assert_int_equal(((counter *)st)->count, 42);
  assert_int_equal(((counter *)st)->last_at, atomic_load(&g_clock.now_ms));
  stead_object_state_free(rt, "counter", st);
  assert_rc(stead_object_state(rt, "counter", "never", &st), 0); /* defaults */
  assert_int_equal(((counter *)st)->count, 0);
  assert_string_equal(((counter *)st)->note, "new");
  stead_object_state_free(rt, "counter", st);
  assert_rc(stead_object_state(rt, "nope", "s", &st), STEAD_ENOCLASS);
  assert_rc(stead_object_state(rt, "plain", "s", &st), STEAD_ENOTSUP);
  assert_null(stead_class_schema(rt, "plain"));
  assert_ptr_equal(stead_class_schema(rt, "counter"), &counter_schema);
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_state_survives_restart, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_turn_rolls_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_your_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_commit_failure_fails_call_and_keeps_data,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_output_gate_holds_dependent_reads, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_gate_releases_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_commit_outcome_reaches_caller, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_state_fails_only_that_object, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_bad_storage_specs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_schema_registration_checks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_telemetry_events, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pipelined_writes_to_one_object, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_object_state_from_outside, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
