/*
 * test_loop.c -- Run, Batch, Aggregate and Replay semantics of the loop on
 * one thread: ordering, NULL messages and commands, rollback on every kind
 * of failure, cancellation by flag and deadline, quiescence, version
 * conflicts, and argument errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "loop/prog.h"
#include "util/util.h"

#include <stdio.h>
#include <string.h>

typedef struct fx {
  stead_queue *q;
  stead_consumer in;
  stead_producer out;
  tctx t;
  tmodel m;
  stead_program p;
  stead_loop *l;
} fx;

static void fx_open(fx *f) {
  memset(f, 0, sizeof *f);
  assert_int_equal(stead_queue_new(&f->q), 0);
  stead_queue_consumer(f->q, &f->in);
  stead_queue_producer(f->q, &f->out);
  f->p = t_program(&f->t);
  assert_int_equal(stead_loop_new(&f->l, &f->p, &f->m, &f->in, &f->out), 0);
}

static void fx_close(fx *f) {
  stead_loop_free(f->l);
  stead_queue_free(f->q);
}

static void assert_log(const tmodel *m, const int32_t *want, int n) {
  assert_int_equal(m->nlog, n);
  for (int i = 0; i < n; i++)
    assert_int_equal(m->log[i], want[i]);
}

/* --- Run --------------------------------------------------------------- */

static void run_processes_in_order_until_closed(void **state) {
  fx f;
  fx_open(&f);
  for (int i = 1; i <= 5; i++)
    assert_int_equal(put_add(f.q, (int8_t)i), 0);
  stead_queue_close(f.q);
  assert_int_equal(stead_loop_run(f.l, NULL), 0);
  static const int32_t want[] = {1, 2, 3, 4, 5};
  assert_log(&f.m, want, 5);
  assert_int_equal(f.m.sum, 15);
  assert_int_equal(f.t.inits, 1);
  assert_int_equal(f.t.views, 6); /* init's tick, then one per message */
  stead_loop_stats st;
  stead_loop_get_stats(f.l, &st);
  assert_int_equal(st.ticks, 6);
  assert_int_equal(st.messages, 5);
  assert_int_equal(st.rollbacks, 0);
  assert_int_equal(stead_queue_len(f.q), 0);
  fx_close(&f);
}

static void null_messages_are_consumed_not_applied(void **state) {
  fx f;
  fx_open(&f);
  assert_int_equal(stead_queue_put(f.q, NULL, 0), 0);
  assert_int_equal(put_add(f.q, 7), 0);
  assert_int_equal(stead_queue_put(f.q, NULL, 0), 0);
  assert_int_equal(stead_queue_put(f.q, "", 0), 0); /* empty is a message */
  stead_queue_close(f.q);
  assert_int_equal(stead_loop_run(f.l, NULL), 0);
  assert_int_equal(f.t.updates, 2);
  assert_int_equal(f.t.views, 3); /* init, 'a', empty: not the NULL ones */
  static const int32_t want[] = {7};
  assert_log(&f.m, want, 1);
  stead_loop_stats st;
  stead_loop_get_stats(f.l, &st);
  assert_int_equal(st.messages, 4);
  fx_close(&f);
}

static void null_commands_are_dropped(void **state) {
  fx f;
  fx_open(&f);
  assert_int_equal(stead_queue_put(f.q, "n", 1), 0);
  stead_queue_close(f.q);
  assert_int_equal(stead_loop_run(f.l, NULL), 0);
  assert_int_equal(f.t.runs, 1); /* only "k" */
  stead_loop_stats st;
  stead_loop_get_stats(f.l, &st);
  assert_int_equal(st.commands, 1);
  fx_close(&f);
}

static void commands_dispatch_to_the_tail(void **state) {
  fx f;
  fx_open(&f);
  assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_queue_put(f.q, "ca\x07", 3), 0);
  assert_int_equal(put_add(f.q, 2), 0);
  /* Batch: the dispatched message is processed before quiescence. */
  assert_int_equal(stead_loop_batch(f.l, 1, NULL), 0);
  static const int32_t want[] = {1, 2, 7};
  assert_log(&f.m, want, 3);
  stead_loop_stats st;
  stead_loop_get_stats(f.l, &st);
  assert_int_equal(st.dispatched, 1);
  assert_int_equal(st.commands, 1);
  fx_close(&f);
}

static void init_commands_run_and_dispatch(void **state) {
  fx f;
  fx_open(&f);
  f.t.init_cmd = "da\x05";
  assert_int_equal(stead_loop_batch(f.l, 10, NULL), 0);
  static const int32_t want[] = {5};
  assert_log(&f.m, want, 1);
  assert_int_equal(f.t.inits, 1);
  /* Init runs once per loop, not per call. */
  assert_int_equal(stead_loop_batch(f.l, 10, NULL), 0);
  assert_int_equal(f.t.inits, 1);
  fx_close(&f);
}

static void update_failure_rolls_back_to_head(void **state) {
  fx f;
  fx_open(&f);
  assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_queue_put(f.q, "f", 1), 0);
  assert_int_equal(put_add(f.q, 2), 0);
  f.t.fail_left = 1;
  f.t.fail_code = 1;
  assert_int_equal(stead_loop_run(f.l, NULL), STEAD_EHANDLER);
  assert_non_null(strstr(stead_errmsg(), "update"));
  assert_int_equal(stead_queue_len(f.q), 2);
  stead_msg m;
  assert_int_equal(stead_queue_get(f.q, NULL, 0, &m), 0);
  assert_int_equal(m.len, 1);
  assert_memory_equal(m.data, "f", 1); /* the failed message is at the head */
  assert_int_equal(stead_queue_rollback(f.q), 0);
  stead_loop_stats st;
  stead_loop_get_stats(f.l, &st);
  assert_int_equal(st.rollbacks, 1);
  /* Delivered again on the next run, before what followed it. */
  stead_queue_close(f.q);
  assert_int_equal(stead_loop_run(f.l, NULL), 0);
  static const int32_t want[] = {1, 100, 2};
  assert_log(&f.m, want, 3);
  fx_close(&f);
}

static void callback_codes_pass_through(void **state) {
  fx f;
  fx_open(&f);
  assert_int_equal(stead_queue_put(f.q, "f", 1), 0);
  f.t.fail_left = 2;
  f.t.fail_code = STEAD_ESTORAGE;
  assert_int_equal(stead_loop_run(f.l, NULL), STEAD_ESTORAGE);
  f.t.fail_code = -9999; /* not a stead code */
  assert_int_equal(stead_loop_run(f.l, NULL), STEAD_EHANDLER);
  fx_close(&f);
}

static void run_failure_discards_the_ticks_dispatches(void **state) {
  fx f;
  fx_open(&f);
  f.t.run_code = 3;
  /* One tick whose first command dispatches and whose second fails. */
  assert_int_equal(stead_queue_put(f.q, "ca\x09", 3), 0);
  assert_int_equal(stead_queue_put(f.q, "x", 1), 0);
  assert_int_equal(stead_loop_batch(f.l, 2, NULL), STEAD_EHANDLER);
  assert_non_null(strstr(stead_errmsg(), "run"));
  assert_int_equal(stead_queue_len(f.q), 2); /* both back, nothing dispatched */
  stead_msg m;
  assert_int_equal(stead_queue_get(f.q, NULL, 0, &m), 0);
  assert_memory_equal(m.data, "ca\x09", 3);
  assert_int_equal(stead_queue_rollback(f.q), 0);
  fx_close(&f);
}

static void init_failure_is_reported(void **state) {
  fx f;
  fx_open(&f);
  f.t.init_cmd = "x";
  f.t.run_code = STEAD_EIO;
  assert_int_equal(stead_loop_run(f.l, NULL), STEAD_EIO);
  fx_close(&f);
}

static void producer_failure_rolls_back(void **state) {
  fx f;
  fx_open(&f);
  stead_queue *outq;
  assert_int_equal(stead_queue_new(&outq), 0);
  stead_producer out;
  stead_queue_producer(outq, &out);
  stead_loop_free(f.l);
  assert_int_equal(stead_loop_new(&f.l, &f.p, &f.m, &f.in, &out), 0);
  stead_queue_close(outq);
  assert_int_equal(stead_queue_put(f.q, "ca\x01", 3), 0);
  assert_int_equal(stead_loop_batch(f.l, 5, NULL), STEAD_ECLOSED);
  assert_int_equal(stead_queue_len(f.q), 1);
  stead_queue_free(outq);
  fx_close(&f);
}

/* A consumer whose commit fails the first `fail_commits` times. */
typedef struct flaky {
  stead_queue *q;
  int fail_commits;
  int commits;
} flaky;

static int fl_get(void *self, stead_cancel *c, int wait, stead_msg *out) {
  return stead_queue_get(((flaky *)self)->q, c, wait, out);
}
static int fl_commit(void *self) {
  flaky *f = self;
  if (f->fail_commits > 0) {
    f->fail_commits--;
    return STEAD_ESTORAGE;
  }
  f->commits++;
  return stead_queue_commit(f->q);
}
static int fl_rollback(void *self) {
  return stead_queue_rollback(((flaky *)self)->q);
}

static void commit_failure_rolls_back(void **state) {
  fx f;
  fx_open(&f);
  flaky fl = {f.q, 1, 0};
  stead_consumer in = {fl_get, fl_commit, fl_rollback, &fl};
  stead_loop_free(f.l);
  assert_int_equal(stead_loop_new(&f.l, &f.p, &f.m, &in, &f.out), 0);
  assert_int_equal(put_add(f.q, 4), 0);
  assert_int_equal(stead_loop_batch(f.l, 5, NULL), STEAD_ESTORAGE);
  assert_int_equal(stead_queue_len(f.q), 1);
  fx_close(&f);
}

/* --- Cancellation -------------------------------------------------------- */

static void cancel_flag_is_obeyed_between_ticks(void **state) {
  fx f;
  fx_open(&f);
  assert_int_equal(stead_cancel_new(&f.t.cancel, 0), 0);
  f.t.cancel_after_views = 4; /* init + 3 messages */
  for (int i = 0; i < 10; i++)
    assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_loop_run(f.l, f.t.cancel), STEAD_ECANCELED);
  assert_int_equal(f.m.sum, 3);
  assert_int_equal(stead_queue_len(f.q), 7); /* the tick that canceled committed */
  assert_int_equal(stead_loop_batch(f.l, 4, f.t.cancel), STEAD_ECANCELED);
  assert_int_equal(stead_queue_len(f.q), 7);
  stead_cancel_free(f.t.cancel);
  fx_close(&f);
}

static void deadline_is_obeyed_while_blocked(void **state) {
  fx f;
  fx_open(&f);
  stead_cancel *c;
  assert_int_equal(stead_cancel_new(&c, 60), 0);
  assert_int_equal(put_add(f.q, 1), 0);
  int64_t t0 = stead__mono_ms();
  assert_int_equal(stead_loop_run(f.l, c), STEAD_ETIMEDOUT);
  int64_t took = stead__mono_ms() - t0;
  assert_true(took >= 55);
  assert_true(took < 5000);
  assert_int_equal(f.m.sum, 1); /* the waiting message ran before */
  assert_int_equal(stead_cancel_check(c), STEAD_ETIMEDOUT);
  stead_cancel_free(c);
  fx_close(&f);
}

static void cancel_token_basics(void **state) {
  stead_cancel *c;
  assert_int_equal(stead_cancel_new(NULL, 0), STEAD_EINVAL);
  assert_int_equal(stead_cancel_new(&c, -1), STEAD_EINVAL);
  assert_int_equal(stead_cancel_new(&c, 0), 0);
  assert_int_equal(stead_cancel_check(c), 0);
  assert_int_equal(stead_cancel_deadline_ns(c), INT64_MAX);
  assert_int_equal(stead_cancel_check(NULL), 0);
  stead_cancel_set(c);
  stead_cancel_set(c); /* idempotent */
  assert_int_equal(stead_cancel_check(c), STEAD_ECANCELED);
  uint64_t id;
  assert_int_equal(stead_cancel_watch(c, (void (*)(void *))abort, NULL, &id),
                   STEAD_ECANCELED);
  stead_cancel_free(c);
}

/* --- Batch --------------------------------------------------------------- */

static void batch_ticks_of_n_then_quiescence(void **state) {
  fx f;
  fx_open(&f);
  flaky fl = {f.q, 0, 0};
  stead_consumer in = {fl_get, fl_commit, fl_rollback, &fl};
  stead_loop_free(f.l);
  assert_int_equal(stead_loop_new(&f.l, &f.p, &f.m, &in, &f.out), 0);
  for (int i = 0; i < 250; i++)
    assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_loop_batch(f.l, 100, NULL), 0);
  assert_int_equal(f.m.sum, 250);
  assert_int_equal(fl.commits, 3); /* 100 + 100 + 50 */
  assert_int_equal(f.t.views, 4);  /* init + one per tick */
  stead_loop_stats st;
  stead_loop_get_stats(f.l, &st);
  assert_int_equal(st.ticks, 4);
  assert_int_equal(st.messages, 250);
  assert_int_equal(stead_loop_batch(f.l, 0, NULL), STEAD_EINVAL);
  fx_close(&f);
}

static void batch_runs_until_commands_stop(void **state) {
  fx f;
  fx_open(&f);
  /* A chain: each message dispatches the next through a command. */
  assert_int_equal(stead_queue_put(f.q, "cccca\x02", 6), 0);
  assert_int_equal(stead_loop_batch(f.l, 100, NULL), 0);
  static const int32_t want[] = {2};
  assert_log(&f.m, want, 1);
  assert_int_equal(f.t.runs, 4);
  assert_int_equal(stead_queue_len(f.q), 0);
  fx_close(&f);
}

static void batch_failure_rolls_back_only_its_tick(void **state) {
  fx f;
  fx_open(&f);
  assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(put_add(f.q, 2), 0);
  assert_int_equal(put_add(f.q, 3), 0);
  assert_int_equal(stead_queue_put(f.q, "f", 1), 0);
  assert_int_equal(put_add(f.q, 5), 0);
  f.t.fail_left = 1;
  f.t.fail_code = 1;
  assert_int_equal(stead_loop_batch(f.l, 2, NULL), STEAD_EHANDLER);
  assert_int_equal(stead_queue_len(f.q), 3); /* a3, f, a5: the failed tick */
  stead_msg m;
  assert_int_equal(stead_queue_get(f.q, NULL, 0, &m), 0);
  assert_memory_equal(m.data, "a\x03", 2);
  assert_int_equal(stead_queue_rollback(f.q), 0);
  fx_close(&f);
}

/* --- Replay -------------------------------------------------------------- */

static void replay_skips_commands_only(void **state) {
  fx f;
  fx_open(&f);
  f.t.init_cmd = "da\x05";
  stead_loop_set_replay(f.l, 1);
  assert_int_equal(stead_queue_put(f.q, "ca\x07", 3), 0);
  assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_loop_batch(f.l, 1, NULL), 0);
  assert_int_equal(f.t.runs, 0);
  assert_int_equal(f.t.updates, 2);
  assert_int_equal(f.t.views, 3);
  assert_int_equal(f.m.sum, 1);
  stead_loop_set_replay(f.l, 0);
  assert_int_equal(stead_queue_put(f.q, "ca\x07", 3), 0);
  assert_int_equal(stead_loop_batch(f.l, 1, NULL), 0);
  assert_int_equal(f.t.runs, 1);
  assert_int_equal(f.m.sum, 8);
  fx_close(&f);
}

static void hydrate_skips_init(void **state) {
  fx f;
  fx_open(&f);
  tmodel snap = {.sum = 40, .nlog = 0};
  assert_int_equal(stead_loop_hydrate(f.l, &snap, sizeof snap), 0);
  assert_int_equal(put_add(f.q, 2), 0);
  assert_int_equal(stead_loop_batch(f.l, 3, NULL), 0);
  assert_int_equal(f.t.inits, 0);
  assert_int_equal(f.m.sum, 42);
  assert_int_equal(stead_loop_hydrate(f.l, "xx", 2), STEAD_ECORRUPT);
  assert_int_equal(stead_loop_hydrate(NULL, "xx", 2), STEAD_EINVAL);
  fx_close(&f);
}

/* --- Aggregate ----------------------------------------------------------- */

static int64_t stored_sum(stead_snapstore *s, const char *key, uint64_t *ver) {
  void *data;
  size_t len;
  assert_int_equal(s->get(s->self, key, &data, &len, ver), 0);
  assert_int_equal(len, sizeof(tmodel));
  int64_t sum = ((tmodel *)data)->sum;
  stead_free(data);
  return sum;
}

static void aggregate_loads_runs_and_saves(void **state) {
  fx f;
  fx_open(&f);
  stead_snapstore s;
  assert_int_equal(stead_memstore_open(&s), 0);
  assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(put_add(f.q, 2), 0);
  uint64_t v = 0, sv;
  assert_int_equal(stead_loop_aggregate(f.l, &s, "acct", 10, NULL, &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(f.t.inits, 1);
  assert_int_equal(stored_sum(&s, "acct", &sv), 3);
  assert_int_equal(sv, 1);
  assert_int_equal(stead_queue_len(f.q), 0);
  /* Second run: loaded, not initialised; an outside change to the model
   * is overwritten by the load. */
  f.m.sum = 1000;
  assert_int_equal(put_add(f.q, 4), 0);
  assert_int_equal(stead_loop_aggregate(f.l, &s, "acct", 10, NULL, &v), 0);
  assert_int_equal(v, 2);
  assert_int_equal(f.t.inits, 1);
  assert_int_equal(stored_sum(&s, "acct", &sv), 7);
  /* Nothing queued: saved anyway (a new version). */
  assert_int_equal(stead_loop_aggregate(f.l, &s, "acct", 10, NULL, &v), 0);
  assert_int_equal(v, 3);
  stead_memstore_close(&s);
  fx_close(&f);
}

static void aggregate_keeps_dispatches_inside(void **state) {
  fx f;
  fx_open(&f);
  stead_snapstore s;
  assert_int_equal(stead_memstore_open(&s), 0);
  stead_loop_free(f.l); /* no producer at all */
  assert_int_equal(stead_loop_new(&f.l, &f.p, &f.m, &f.in, NULL), 0);
  assert_int_equal(stead_queue_put(f.q, "cca\x03", 5), 0);
  assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_loop_aggregate(f.l, &s, "k", 1, NULL, NULL), 0);
  /* A dispatched message goes before the input that follows. */
  static const int32_t want[] = {3, 1};
  assert_log(&f.m, want, 2);
  assert_int_equal(stead_queue_len(f.q), 0);
  /* Outside Aggregate the same program cannot dispatch without producer. */
  assert_int_equal(stead_queue_put(f.q, "ca\x03", 4), 0);
  assert_int_equal(stead_loop_batch(f.l, 1, NULL), STEAD_EMISUSE);
  assert_int_equal(stead_queue_len(f.q), 1);
  stead_memstore_close(&s);
  fx_close(&f);
}

static void aggregate_failure_saves_nothing(void **state) {
  fx f;
  fx_open(&f);
  stead_snapstore s;
  assert_int_equal(stead_memstore_open(&s), 0);
  assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_loop_aggregate(f.l, &s, "k", 10, NULL, NULL), 0);
  assert_int_equal(put_add(f.q, 2), 0);
  assert_int_equal(put_add(f.q, 3), 0);
  assert_int_equal(stead_queue_put(f.q, "f", 1), 0);
  f.t.fail_left = 1;
  f.t.fail_code = 1;
  /* One message per tick: the ticks before the failure are rolled back too. */
  assert_int_equal(stead_loop_aggregate(f.l, &s, "k", 1, NULL, NULL), STEAD_EHANDLER);
  assert_int_equal(stead_queue_len(f.q), 3);
  uint64_t v;
  assert_int_equal(stored_sum(&s, "k", &v), 1);
  assert_int_equal(v, 1);
  assert_int_equal(stead_loop_aggregate(f.l, &s, "k", 1, NULL, &v), 0);
  assert_int_equal(v, 2);
  assert_int_equal(stored_sum(&s, "k", &v), 6);
  stead_memstore_close(&s);
  fx_close(&f);
}

/* The conflict test: loop A is in the middle of its aggregate when loop B
 * runs a whole aggregate of the same key (from A's 'h' message). */
typedef struct pair {
  fx *b;
  stead_snapstore *s;
  int rc;
} pair;

static void run_b(tctx *t) {
  pair *p = t->hook_arg;
  p->rc = stead_loop_aggregate(p->b->l, p->s, "shared", 10, NULL, NULL);
  t->hook = NULL; /* once */
}

static void two_loops_on_one_key_conflict(void **state) {
  fx a, b;
  fx_open(&a);
  fx_open(&b);
  stead_snapstore s;
  assert_int_equal(stead_memstore_open(&s), 0);
  pair p = {&b, &s, -1};
  a.t.hook = run_b;
  a.t.hook_arg = &p;
  assert_int_equal(put_add(a.q, 10), 0);
  assert_int_equal(stead_queue_put(a.q, "h", 1), 0);
  assert_int_equal(put_add(b.q, 20), 0);
  assert_int_equal(stead_loop_aggregate(a.l, &s, "shared", 10, NULL, NULL),
                   STEAD_ECONFLICT);
  assert_non_null(strstr(stead_errmsg(), "version"));
  assert_int_equal(p.rc, 0);
  uint64_t v;
  assert_int_equal(stored_sum(&s, "shared", &v), 20); /* B's save survived */
  assert_int_equal(v, 1);
  assert_int_equal(stead_queue_len(a.q), 2); /* A's input is back */
  /* A retries: reloads B's model and applies its own messages on top. */
  assert_int_equal(stead_loop_aggregate(a.l, &s, "shared", 10, NULL, &v), 0);
  assert_int_equal(v, 2);
  assert_int_equal(stored_sum(&s, "shared", &v), 30);
  stead_memstore_close(&s);
  fx_close(&a);
  fx_close(&b);
}

static void aggregate_cancel_rolls_back(void **state) {
  fx f;
  fx_open(&f);
  stead_snapstore s;
  assert_int_equal(stead_memstore_open(&s), 0);
  assert_int_equal(stead_cancel_new(&f.t.cancel, 0), 0);
  f.t.cancel_after_views = 2; /* init's tick, then one message */
  for (int i = 0; i < 3; i++)
    assert_int_equal(put_add(f.q, 1), 0);
  assert_int_equal(stead_loop_aggregate(f.l, &s, "k", 1, f.t.cancel, NULL),
                   STEAD_ECANCELED);
  assert_int_equal(stead_queue_len(f.q), 3);
  void *d;
  size_t n;
  uint64_t v;
  assert_int_equal(s.get(s.self, "k", &d, &n, &v), STEAD_ENOTFOUND);
  stead_cancel_free(f.t.cancel);
  stead_memstore_close(&s);
  fx_close(&f);
}

static void memstore_versions(void **state) {
  stead_snapstore s;
  assert_int_equal(stead_memstore_open(&s), 0);
  uint64_t v = 99;
  void *d;
  size_t n;
  assert_int_equal(s.get(s.self, "a", &d, &n, &v), STEAD_ENOTFOUND);
  assert_int_equal(s.put(s.self, "a", "x", 1, 1, &v), STEAD_ECONFLICT);
  assert_int_equal(s.put(s.self, "a", "x", 1, 0, &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(s.put(s.self, "a", "yy", 2, 0, &v), STEAD_ECONFLICT);
  assert_int_equal(s.put(s.self, "a", "yy", 2, 1, &v), 0);
  assert_int_equal(v, 2);
  assert_int_equal(s.put(s.self, "empty", NULL, 0, 0, &v), 0);
  assert_int_equal(s.get(s.self, "empty", &d, &n, &v), 0);
  assert_int_equal(n, 0);
  stead_free(d);
  assert_int_equal(s.get(s.self, "a", &d, &n, &v), 0);
  assert_int_equal(n, 2);
  assert_memory_equal(d, "yy", 2);
  assert_int_equal(v, 2);
  stead_free(d);
  /* Many keys: the table grows and keeps them apart. */
  char key[32];
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(s.put(s.self, key, &i, sizeof i, 0, &v), 0);
  }
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(s.get(s.self, key, &d, &n, &v), 0);
    assert_int_equal(*(int *)d, i);
    stead_free(d);
  }
  assert_int_equal(s.put(s.self, "", "x", 1, 0, &v), STEAD_EINVAL);
  assert_int_equal(s.put(s.self, "\xff", "x", 1, 0, &v), STEAD_EINVAL);
  assert_int_equal(s.put(s.self, "a", NULL, 3, 2, &v), STEAD_EINVAL);
  char big[1100];
  memset(big, 'k', sizeof big - 1);
  big[sizeof big - 1] = 0;
  assert_int_equal(s.get(s.self, big, &d, &n, &v), STEAD_ETOOBIG);
  stead_memstore_close(&s);
}

/* --- Bad arguments ------------------------------------------------------- */

static void bad_arguments(void **state) {
  fx f;
  fx_open(&f);
  stead_loop *l;
  stead_program none = {0};
  assert_int_equal(stead_loop_new(NULL, &f.p, &f.m, &f.in, NULL), STEAD_EINVAL);
  assert_int_equal(stead_loop_new(&l, &none, &f.m, &f.in, NULL), STEAD_EINVAL);
  assert_int_equal(stead_loop_new(&l, &f.p, NULL, &f.in, NULL), STEAD_EINVAL);
  assert_int_equal(stead_loop_new(&l, &f.p, &f.m, NULL, NULL), STEAD_EINVAL);
  stead_consumer half = {f.in.get, NULL, NULL, f.q};
  assert_int_equal(stead_loop_new(&l, &f.p, &f.m, &half, NULL), STEAD_EINVAL);
  stead_producer noput = {NULL, f.q};
  assert_int_equal(stead_loop_new(&l, &f.p, &f.m, &f.in, &noput), STEAD_EINVAL);
  assert_int_equal(stead_loop_run(NULL, NULL), STEAD_EINVAL);
  stead_snapstore s;
  assert_int_equal(stead_memstore_open(&s), 0);
  assert_int_equal(stead_loop_aggregate(f.l, &s, NULL, 1, NULL, NULL), STEAD_EINVAL);
  assert_int_equal(stead_loop_aggregate(f.l, &s, "k", 0, NULL, NULL), STEAD_EINVAL);
  stead_program noenc = f.p;
  noenc.encode = NULL;
  assert_int_equal(stead_loop_new(&l, &noenc, &f.m, &f.in, NULL), 0);
  assert_int_equal(stead_loop_aggregate(l, &s, "k", 1, NULL, NULL), STEAD_EINVAL);
  stead_loop_free(l);
  assert_int_equal(stead_loop_aggregate(f.l, &s, "", 1, NULL, NULL), STEAD_EINVAL);
  assert_int_equal(stead_cmd(NULL, "x", 1), STEAD_EINVAL);
  assert_int_equal(stead_dispatch(NULL, "x", 1), STEAD_EINVAL);
  assert_int_equal(stead_queue_put(f.q, NULL, 3), STEAD_EINVAL);
  stead_msg bad[2] = {{"a\x01", 2}, {NULL, 1}};
  assert_int_equal(stead_queue_put_many(f.q, bad, 2), STEAD_EINVAL);
  assert_int_equal(stead_queue_len(f.q), 0); /* all or nothing */
  stead_queue_close(f.q);
  assert_int_equal(put_add(f.q, 1), STEAD_ECLOSED);
  stead_msg m;
  assert_int_equal(stead_queue_get(f.q, NULL, 1, &m), STEAD_ECLOSED);
  assert_int_equal(stead_queue_new(NULL), STEAD_EINVAL);
  stead_memstore_close(&s);
  stead_loop_free(NULL);
  stead_queue_free(NULL);
  stead_cancel_free(NULL);
  fx_close(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(run_processes_in_order_until_closed),
      cmocka_unit_test(null_messages_are_consumed_not_applied),
      cmocka_unit_test(null_commands_are_dropped),
      cmocka_unit_test(commands_dispatch_to_the_tail),
      cmocka_unit_test(init_commands_run_and_dispatch),
      cmocka_unit_test(update_failure_rolls_back_to_head),
      cmocka_unit_test(callback_codes_pass_through),
      cmocka_unit_test(run_failure_discards_the_ticks_dispatches),
      cmocka_unit_test(init_failure_is_reported),
      cmocka_unit_test(producer_failure_rolls_back),
      cmocka_unit_test(commit_failure_rolls_back),
      cmocka_unit_test(cancel_flag_is_obeyed_between_ticks),
      cmocka_unit_test(deadline_is_obeyed_while_blocked),
      cmocka_unit_test(cancel_token_basics),
      cmocka_unit_test(batch_ticks_of_n_then_quiescence),
      cmocka_unit_test(batch_runs_until_commands_stop),
      cmocka_unit_test(batch_failure_rolls_back_only_its_tick),
      cmocka_unit_test(replay_skips_commands_only),
      cmocka_unit_test(hydrate_skips_init),
      cmocka_unit_test(aggregate_loads_runs_and_saves),
      cmocka_unit_test(aggregate_keeps_dispatches_inside),
      cmocka_unit_test(aggregate_failure_saves_nothing),
      cmocka_unit_test(two_loops_on_one_key_conflict),
      cmocka_unit_test(aggregate_cancel_rolls_back),
      cmocka_unit_test(memstore_versions),
      cmocka_unit_test(bad_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
