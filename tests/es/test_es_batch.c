/*
 * Batch mode: the core seam (stead__ctx_take_batch) and event-sourced
 * classes with batch_max > 1.
 *
 * The seam is tested with a plain class whose "push" handler takes a
 * batch and logs what it applied: messages queued behind a blocked turn
 * (pushes, an event, a continuation, a different handler's method, a call
 * whose caller gave up) come out in mailbox order, batches stop at the
 * non-batchable ones, every call gets its own reply exactly once. The
 * event-sourced tests pipeline calls against a slow disk ("fail+memory"
 * with a commit delay) so they queue: batches form (fewer write sets than
 * messages), replies are per call and in order, a rejection fails only
 * its own call, and a failed batch commit fails every call of it and
 * journals none of them.
 */
#include "core/core.h"
#include "loop/es_object.h"
#include "storage/failbe.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- answers of pipelined calls ------------------------------------------ */

#define MAXN 512

typedef struct answers {
  atomic_int n;           /* callbacks run */
  atomic_int calls[MAXN]; /* callbacks per slot: exactly 1 */
  int status[MAXN];       /* written before calls[i] is bumped */
  long long value[MAXN];  /* the reply as a number */
} answers;

typedef struct slot {
  answers *a;
  int i;
} slot;

static slot g_slots[MAXN];

static void on_answer(const stead_result *res, void *udata) {
  slot *s = udata;
  char buf[64] = {0};
  if (res->status == 0 && res->len && res->len < sizeof buf)
    memcpy(buf, res->data, res->len);
  s->a->status[s->i] = res->status;
  s->a->value[s->i] = res->status == 0 ? atoll(buf) : -1;
  atomic_fetch_add(&s->a->calls[s->i], 1);
  atomic_fetch_add(&s->a->n, 1);
}

static void call_async(stead_rt *rt, const char *cls, const char *id, const char *m,
                       const char *arg, answers *a, int i, int timeout_ms) {
  g_slots[i] = (slot){a, i};
  assert_rc(stead_call_async(rt, cls, id, m, arg, arg ? strlen(arg) : 0, timeout_ms,
                             on_answer, &g_slots[i]),
            0);
}

static void wait_answers(answers *a, int n) {
  for (int t = 0; t < 20000 && atomic_load(&a->n) < n; t++)
    test_sleep_ms(1);
  assert_int_equal(atomic_load(&a->n), n);
  for (int i = 0; i < n; i++)
    assert_int_equal(atomic_load(&a->calls[i]), 1);
}

/* ---- the seam, with a plain class ------------------------------------------ */

/* A log of what the "log" object applied, one entry per message, with a
 * "|" after each turn (so batches are visible). */
static char g_log[4096];
static atomic_int g_blocked, g_go, g_echo_go;
/* Checks failed on worker threads (cmocka asserts only on the test's). */
static atomic_int g_bad;
#define CHECK(c)                                                                         \
  do {                                                                                   \
    if (!(c)) {                                                                          \
      fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #c,          \
              stead_errmsg());                                                           \
      atomic_fetch_add(&g_bad, 1);                                                       \
    }                                                                                    \
  } while (0)

static void log_add(const char *s) {
  size_t n = strlen(g_log);
  snprintf(g_log + n, sizeof g_log - n, "%s", s);
}

static int push_fn(stead_ctx *ctx, const void *arg, size_t len) {
  char s[64];
  snprintf(s, sizeof s, "%.*s ", (int)len, (const char *)arg);
  log_add(s);
  CHECK((stead_reply(ctx, arg, len)) == 0);
  const stead__batch_item *it;
  size_t n;
  CHECK((stead__ctx_take_batch(ctx, 100, SIZE_MAX, &it, &n)) == 0);
  const stead__batch_item *it2;
  size_t n2;
  CHECK((stead__ctx_take_batch(ctx, 100, SIZE_MAX, &it2, &n2)) == STEAD_EMISUSE);
  for (size_t i = 0; i < n; i++) {
    snprintf(s, sizeof s, "%.*s ", (int)it[i].len, (const char *)it[i].payload);
    log_add(s);
    if (it[i].len && ((const char *)it[i].payload)[0] == 'x')
      CHECK((stead__ctx_batch_fail(ctx, i, STEAD_EINVAL, "x is refused")) == 0);
    else if (it[i].is_call)
      CHECK((stead__ctx_batch_reply(ctx, i, it[i].payload, it[i].len)) == 0);
  }
  CHECK((stead__ctx_batch_reply(ctx, n, "", 0)) == STEAD_EINVAL);
  log_add("| ");
  return 0;
}

static int other_fn(stead_ctx *ctx, const void *arg, size_t len) {
  char s[64];
  snprintf(s, sizeof s, "q%.*s | ", (int)len, (const char *)arg);
  log_add(s);
  return 0;
}

static int block_fn(stead_ctx *ctx, const void *arg, size_t len) {
  const stead__batch_item *it;
  size_t n;
  atomic_store(&g_blocked, 1);
  while (!atomic_load(&g_go))
    test_sleep_ms(1);
  log_add("block | ");
  /* "block" runs another handler: nothing queued behind it joins. */
  CHECK((stead__ctx_take_batch(ctx, 100, SIZE_MAX, &it, &n)) == 0);
  CHECK(n == 0);
  return 0;
}

static int cont_fn(stead_ctx *ctx, const stead_result *res, void *udata) {
  log_add("C | ");
  /* A continuation's turn cannot take a batch. */
  const stead__batch_item *it;
  size_t n;
  CHECK((stead__ctx_take_batch(ctx, 100, SIZE_MAX, &it, &n)) == STEAD_EMISUSE);
  return 0;
}

static int start_fn(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_ctx_call(ctx, "echo", "e", "echo", "hi", 2, 10000, cont_fn, NULL);
}

static int on_event(stead_ctx *ctx, const char *topic, const void *p, size_t len) {
  char s[64];
  snprintf(s, sizeof s, "E:%s | ", topic);
  log_add(s);
  return 0;
}

static int echo_fn(stead_ctx *ctx, const void *arg, size_t len) {
  while (!atomic_load(&g_echo_go))
    test_sleep_ms(1);
  return stead_reply(ctx, arg, len);
}

static const stead_method log_methods[] = {{"push", push_fn},   {"push2", push_fn},
                                           {"other", other_fn}, {"block", block_fn},
                                           {"start", start_fn}, {NULL, NULL}};
static const stead_class log_class = {
    .name = "log", .methods = log_methods, .on_event = on_event};
static const stead_method echo_methods[] = {{"echo", echo_fn}, {NULL, NULL}};
static const stead_class echo_class = {.name = "echo", .methods = echo_methods};

static answers g_a;

static void test_seam_order_and_stops(void **state) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 4;
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &log_class), 0);
  assert_rc(stead_register(rt, &echo_class), 0);
  memset(&g_a, 0, sizeof g_a);
  g_log[0] = 0;
  atomic_store(&g_blocked, 0);
  atomic_store(&g_go, 0);
  atomic_store(&g_echo_go, 0);

  /* the log object calls echo, which holds its reply back */
  assert_rc(stead_call(rt, "log", "l", "start", NULL, 0, 5000, NULL, NULL), 0);
  /* the log object blocks; everything below queues behind it */
  assert_rc(stead_send(rt, "log", "l", "block", NULL, 0), 0);
  while (!atomic_load(&g_blocked))
    test_sleep_ms(1);
  call_async(rt, "log", "l", "push", "p1", &g_a, 0, 10000);
  call_async(rt, "log", "l", "push2", "p2", &g_a, 1, 10000); /* same handler */
  uint64_t conts = stead__counter_get(&rt->m.conts);
  atomic_store(&g_echo_go, 1); /* echo answers: a continuation queues */
  while (stead__counter_get(&rt->m.conts) == conts)
    test_sleep_ms(1);
  test_sleep_ms(50); /* the continuation is enqueued right after the count */
  call_async(rt, "log", "l", "push", "p3", &g_a, 2, 10000);
  call_async(rt, "log", "l", "push", "dead", &g_a, 3, 1); /* gives up at once */
  call_async(rt, "log", "l", "push", "x4", &g_a, 4, 10000);
  assert_rc(stead_send(rt, "log", "l", "push", "s5", 2), 0);
  assert_rc(stead__deliver_event(rt, "log", "l", "t.e", NULL, 0), 0);
  call_async(rt, "log", "l", "push", "p6", &g_a, 5, 10000);
  call_async(rt, "log", "l", "other", "7", &g_a, 6, 10000);
  call_async(rt, "log", "l", "push", "p8", &g_a, 7, 10000);
  call_async(rt, "log", "l", "push", "p9", &g_a, 8, 10000);
  for (int t = 0; t < 5000 && atomic_load(&g_a.calls[3]) == 0; t++)
    test_sleep_ms(1);
  assert_int_equal(g_a.status[3], STEAD_ETIMEDOUT);
  atomic_store(&g_go, 1);
  wait_answers(&g_a, 9);
  assert_rc(stead_run_until_idle(rt), 0);
  assert_string_equal(g_log, "block | p1 p2 | C | p3 x4 s5 | E:t.e | p6 | q7 | p8 p9 | ");
  for (int i = 0; i < 9; i++) {
    if (i == 3)
      continue;
    if (i == 4)
      assert_int_equal(g_a.status[i], STEAD_EINVAL);
    else
      assert_int_equal(g_a.status[i], 0);
  }
  assert_int_equal(atomic_load(&g_bad), 0);
  stead_close(rt);
}

/* A turn that fails fails every message it took; a send's batch is not
 * answered but is freed (run_until_idle returns: inflight is exact). */
static int failing_fn(stead_ctx *ctx, const void *arg, size_t len) {
  const stead__batch_item *it;
  size_t n;
  atomic_store(&g_blocked, 1);
  while (!atomic_load(&g_go))
    test_sleep_ms(1);
  if (len == 1 && *(const char *)arg == '0') {
    CHECK(stead__ctx_take_batch(ctx, 3, SIZE_MAX, &it, &n) == 0);
    CHECK(n == 3);
    CHECK(stead__ctx_batch_fail(ctx, 1, STEAD_EINVAL, "own") == 0);
    CHECK(stead__ctx_batch_reply(ctx, 2, "ok", 2) == 0);
  }
  return stead_fail(ctx, "whole turn fails");
}

static const stead_method fail_methods[] = {{"f", failing_fn}, {NULL, NULL}};
static const stead_class fail_class = {.name = "failing", .methods = fail_methods};

static void test_seam_turn_failure_fails_batch(void **state) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &fail_class), 0);
  memset(&g_a, 0, sizeof g_a);
  atomic_store(&g_blocked, 0);
  atomic_store(&g_go, 0);
  call_async(rt, "failing", "x", "f", "0", &g_a, 0, 10000);
  while (!atomic_load(&g_blocked))
    test_sleep_ms(1);
  for (int i = 1; i < 5; i++)
    call_async(rt, "failing", "x", "f", "n", &g_a, i, 10000);
  atomic_store(&g_go, 1);
  wait_answers(&g_a, 5);
  assert_int_equal(g_a.status[0], STEAD_EHANDLER);
  assert_int_equal(g_a.status[1], STEAD_EHANDLER);
  assert_int_equal(g_a.status[2], STEAD_EINVAL); /* its own failure stands */
  assert_int_equal(g_a.status[3], STEAD_EHANDLER);
  assert_int_equal(g_a.status[4], STEAD_EHANDLER); /* its own turn */
  assert_rc(stead_run_until_idle(rt), 0);
  assert_int_equal(atomic_load(&g_bad), 0);
  stead_close(rt);
}

/* ---- event-sourced: a small account ---------------------------------- */

typedef struct bank {
  int64_t balance;
  uint64_t count;
} bank;

static int b_update(void *model, const void *msg, size_t len, stead_cmds *cmds, void *u) {
  bank *b = model;
  const char *m;
  const void *arg;
  size_t alen;
  if (stead_es_split(msg, len, &m, &arg, &alen))
    return stead_es_reject(cmds, "bad message");
  char buf[32] = {0};
  if (alen)
    memcpy(buf, arg, alen < 31 ? alen : 31);
  int64_t n = atoll(buf);
  if (strcmp(m, "dep") == 0)
    b->balance += n;
  else if (strcmp(m, "wd") == 0) {
    b->balance -= n; /* changed first: the rebuild must undo it */
    if (b->balance < 0)
      return stead_es_reject(cmds, "insufficient funds");
  } else if (strcmp(m, "bal") != 0)
    return stead_es_reject(cmds, "unknown method %s", m);
  if (strcmp(m, "bal") != 0)
    b->count++;
  char out[32];
  int k = snprintf(out, sizeof out, "%lld", (long long)b->balance);
  return stead_es_reply(cmds, out, (size_t)k);
}

static int b_encode(const void *model, void **data, size_t *len, void *u) {
  *data = malloc(sizeof(bank));
  if (!*data)
    return STEAD_ENOMEM;
  memcpy(*data, model, sizeof(bank));
  *len = sizeof(bank);
  return 0;
}

static int b_decode(void *model, const void *data, size_t len, void *u) {
  if (len != sizeof(bank))
    return -1;
  memcpy(model, data, len);
  return 0;
}

static const char *const b_methods[] = {"dep", "wd", NULL};
static const char *const b_queries[] = {"bal", NULL};
static stead_es_class g_bank;

static stead_rt *open_bank(uint32_t batch_max, uint32_t every) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = "fail+memory";
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  g_bank = (stead_es_class){
      .name = "bank",
      .program = {.update = b_update, .encode = b_encode, .decode = b_decode},
      .methods = b_methods,
      .queries = b_queries,
      .model_size = sizeof(bank),
      .model_version = 1,
      .snapshot_every = every,
      .batch_max = batch_max,
  };
  assert_rc(stead_register_program(rt, &g_bank), 0);
  return rt;
}

static long long balance(stead_rt *rt, const char *id) {
  void *r = NULL;
  size_t n = 0;
  assert_rc(stead_call(rt, "bank", id, "bal", NULL, 0, 10000, &r, &n), 0);
  long long v = atoll(r);
  stead_free(r);
  return v;
}

/* Journal entries of an object, counted in the backend. */
static int count_cb(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  (*(int *)u)++;
  return 0;
}

static int journal_len(stead_rt *rt, const char *id) {
  stead__backend *b = stead__rt_backend(rt);
  stead__range r;
  memset(&r, 0, sizeof r);
  int n = 0;
  assert_rc(stead_run_until_idle(rt), 0);
  assert_rc(b->vt->list(b, "bank", id, STEAD__NS_JOURNAL, &r, count_cb, &n), 0);
  return n;
}

static void test_es_batch_groups_and_orders(void **state) {
  stead_rt *rt = open_bank(64, 1000);
  stead__backend *be = stead__rt_backend(rt);
  memset(&g_a, 0, sizeof g_a);
  assert_int_equal(balance(rt, "a"), 0); /* activated */
  stead__failbe_set_delay_us(be, 3000);
  uint64_t sets0 = stead__failbe_sets(be);
  int n = 200;
  for (int i = 0; i < n; i++)
    call_async(rt, "bank", "a", "dep", "1", &g_a, i, 20000);
  wait_answers(&g_a, n);
  for (int i = 0; i < n; i++) {
    assert_int_equal(g_a.status[i], 0);
    assert_int_equal(g_a.value[i], i + 1); /* its own reply, in order */
  }
  uint64_t sets = stead__failbe_sets(be) - sets0;
  assert_true(sets < (uint64_t)n / 4); /* batched: far fewer write sets */
  assert_true(sets >= (uint64_t)n / 64);
  stead_es_stats st;
  assert_rc(stead_es_get_stats(rt, "bank", &st), 0);
  assert_int_equal(st.journaled, n);
  assert_int_equal(journal_len(rt, "a"), n);
  stead__failbe_set_delay_us(be, 0);
  assert_rc(stead_deactivate(rt, "bank", "a"), 0);
  assert_int_equal(balance(rt, "a"), n); /* replayed */
  stead_close(rt);
}

/* Off (batch_max 1): one write set per message. */
static void test_es_batch_off(void **state) {
  stead_rt *rt = open_bank(0, 1000);
  stead__backend *be = stead__rt_backend(rt);
  memset(&g_a, 0, sizeof g_a);
  assert_int_equal(balance(rt, "a"), 0);
  stead__failbe_set_delay_us(be, 2000);
  uint64_t sets0 = stead__failbe_sets(be);
  for (int i = 0; i < 50; i++)
    call_async(rt, "bank", "a", "dep", "1", &g_a, i, 20000);
  wait_answers(&g_a, 50);
  assert_int_equal(stead__failbe_sets(be) - sets0, 50);
  stead_close(rt);
}

/* Deposits and withdrawals, some of which must be rejected, pipelined so
 * that they batch; a query in the middle sees exactly what came before. */
static void test_es_batch_rejections(void **state) {
  stead_rt *rt = open_bank(16, 7); /* snapshots inside batches too */
  stead__backend *be = stead__rt_backend(rt);
  memset(&g_a, 0, sizeof g_a);
  assert_int_equal(balance(rt, "r"), 0);
  stead__failbe_set_delay_us(be, 3000);
  uint64_t sets0 = stead__failbe_sets(be);
  int n = 300, q = 150;
  long long bal = 0, want[MAXN];
  int accepted = 0;
  uint32_t seed = 7;
  for (int i = 0; i < n; i++) {
    char arg[16];
    if (i == q) {
      call_async(rt, "bank", "r", "bal", NULL, &g_a, i, 20000);
      want[i] = bal;
      continue;
    }
    /* xorshift: withdrawals as often as deposits */
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    int amt = (int)(seed % 10) + 1;
    bool wd = (seed >> 4) % 2 == 0;
    if (wd)
      amt *= 2; /* withdrawals outweigh deposits: the balance stays low */
    snprintf(arg, sizeof arg, "%d", amt);
    call_async(rt, "bank", "r", wd ? "wd" : "dep", arg, &g_a, i, 20000);
    if (wd && bal - amt < 0) {
      want[i] = -1; /* rejected */
    } else {
      bal += wd ? -amt : amt;
      want[i] = bal;
      accepted++;
    }
  }
  wait_answers(&g_a, n);
  int rejected = 0;
  for (int i = 0; i < n; i++) {
    if (want[i] < 0) {
      assert_int_equal(g_a.status[i], STEAD_EHANDLER);
      rejected++;
    } else {
      assert_int_equal(g_a.status[i], 0);
      assert_int_equal(g_a.value[i], want[i]);
    }
  }
  assert_true(rejected > 20);
  assert_true(accepted > 100);
  assert_true(stead__failbe_sets(be) - sets0 < (uint64_t)n / 2);
  stead__failbe_set_delay_us(be, 0);
  assert_int_equal(balance(rt, "r"), bal);
  stead_es_stats st;
  assert_rc(stead_es_get_stats(rt, "bank", &st), 0);
  assert_int_equal(st.journaled, accepted);
  assert_int_equal(st.rejected, rejected);
  assert_rc(stead_deactivate(rt, "bank", "r"), 0);
  assert_int_equal(balance(rt, "r"), bal); /* snapshot + replay agree */
  stead_close(rt);
}

/* Fails the first commit that carries a set of object "f" with more than
 * one journal entry: a batch. Records how many entries it had. */
static atomic_int g_failed_batch;

static int fail_batch(void *u, stead__wset *const *sets, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(sets[i]->id, "f") == 0 && sets[i]->kv.count > 1) {
      int zero = 0;
      if (atomic_compare_exchange_strong(&g_failed_batch, &zero, (int)sets[i]->kv.count))
        return 1;
    }
  return 0;
}

static void test_es_batch_commit_failure(void **state) {
  stead_rt *rt = open_bank(32, 1000);
  stead__backend *be = stead__rt_backend(rt);
  memset(&g_a, 0, sizeof g_a);
  atomic_store(&g_failed_batch, 0);
  assert_int_equal(balance(rt, "f"), 0);
  stead__failbe_set_delay_us(be, 3000);
  stead__failbe_set_pred(be, fail_batch, NULL);
  int n = 100;
  for (int i = 0; i < n; i++)
    call_async(rt, "bank", "f", "dep", "1", &g_a, i, 20000);
  wait_answers(&g_a, n);
  stead__failbe_set_pred(be, NULL, NULL);
  stead__failbe_set_delay_us(be, 0);
  int k = atomic_load(&g_failed_batch);
  assert_true(k > 1);
  int ok = 0, failed = 0;
  for (int i = 0; i < n; i++) {
    if (g_a.status[i] == 0)
      ok++;
    else {
      assert_int_equal(g_a.status[i], STEAD_ESTORAGE);
      failed++;
    }
  }
  assert_true(failed >= k); /* the whole batch, and any turn built on it */
  assert_int_equal(ok + failed, n);
  assert_int_equal(journal_len(rt, "f"), ok);
  assert_int_equal(balance(rt, "f"), ok);
  assert_rc(stead_deactivate(rt, "bank", "f"), 0);
  assert_int_equal(balance(rt, "f"), ok); /* replay: none of the failed */
  /* and it keeps working */
  assert_rc(stead_call(rt, "bank", "f", "dep", "5", 1, 10000, NULL, NULL), 0);
  assert_int_equal(balance(rt, "f"), ok + 5);
  stead_close(rt);
}

static void test_es_batch_max_limit(void **state) {
  stead_config cfg;
  stead_config_init(&cfg);
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  stead_es_class c = {
      .name = "toobig",
      .program = {.update = b_update, .encode = b_encode, .decode = b_decode},
      .methods = b_methods,
      .model_size = sizeof(bank),
      .batch_max = STEAD__ES_MAX_BATCH + 1,
  };
  assert_rc(stead_register_program(rt, &c), STEAD_EINVAL);
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seam_order_and_stops),
      cmocka_unit_test(test_seam_turn_failure_fails_batch),
      cmocka_unit_test(test_es_batch_groups_and_orders),
      cmocka_unit_test(test_es_batch_off),
      cmocka_unit_test(test_es_batch_rejections),
      cmocka_unit_test(test_es_batch_commit_failure),
      cmocka_unit_test(test_es_batch_max_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
