/*
 * test_queue.c -- the in-memory queue and cancel tokens under threads:
 * producers racing a running loop (per-producer order, no loss, no
 * duplicates, also across failed ticks), atomic put_many, and waking a
 * blocked loop by cancel, deadline and close. Labelled "concurrency": it
 * runs under TSan in CI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stead.h"
#include "util/util.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

enum { PRODUCERS = 4, PER_PRODUCER = 20000 };

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

typedef struct tagged {
  uint32_t producer;
  uint32_t seq;
} tagged;

/* --- Single-threaded queue semantics ------------------------------------ */

static void rollback_redelivers_from_head(void **state) {
  stead_queue *q;
  assert_int_equal(stead_queue_new(&q), 0);
  for (uint32_t i = 0; i < 5; i++)
    assert_int_equal(stead_queue_put(q, &i, sizeof i), 0);
  stead_msg m;
  for (uint32_t i = 0; i < 3; i++)
    assert_int_equal(stead_queue_get(q, NULL, 0, &m), 0);
  assert_int_equal(stead_queue_rollback(q), 0);
  assert_int_equal(stead_queue_len(q), 5);
  for (uint32_t i = 0; i < 2; i++) {
    assert_int_equal(stead_queue_get(q, NULL, 0, &m), 0);
    assert_int_equal(*(const uint32_t *)m.data, i);
  }
  assert_int_equal(stead_queue_commit(q), 0);
  assert_int_equal(stead_queue_len(q), 3);
  assert_int_equal(stead_queue_rollback(q), 0); /* nothing taken: no-op */
  for (uint32_t i = 2; i < 5; i++) {
    assert_int_equal(stead_queue_get(q, NULL, 0, &m), 0);
    assert_int_equal(*(const uint32_t *)m.data, i);
  }
  assert_int_equal(stead_queue_get(q, NULL, 0, &m), STEAD_ENOTFOUND);
  stead_queue_free(q); /* frees taken, uncommitted messages too */
}

static void taken_bytes_survive_growth(void **state) {
  stead_queue *q;
  assert_int_equal(stead_queue_new(&q), 0);
  assert_int_equal(stead_queue_put(q, "first", 5), 0);
  stead_msg first;
  assert_int_equal(stead_queue_get(q, NULL, 0, &first), 0);
  for (int i = 0; i < 5000; i++) /* forces the ring to grow many times */
    assert_int_equal(stead_queue_put(q, &i, sizeof i), 0);
  assert_memory_equal(first.data, "first", 5);
  stead_msg m;
  for (int i = 0; i < 5000; i++) {
    assert_int_equal(stead_queue_get(q, NULL, 0, &m), 0);
    assert_int_equal(*(const int *)m.data, i);
    if (i % 7 == 0)
      assert_int_equal(stead_queue_commit(q), 0);
  }
  assert_int_equal(stead_queue_commit(q), 0);
  assert_int_equal(stead_queue_len(q), 0);
  stead_queue_free(q);
}

/* --- Producers racing a loop -------------------------------------------- */

typedef struct race {
  stead_queue *q;
  uint32_t next[PRODUCERS]; /* the model: next expected seq per producer */
  uint64_t applied;
  uint64_t fail_every; /* fail the update of every Nth applied message once */
  uint64_t failed_at;
  int out_of_order;
  int put_errors;
} race;

typedef struct producer_arg {
  race *r;
  uint32_t id;
} producer_arg;

static void *producer(void *arg) {
  producer_arg *a = arg;
  for (uint32_t s = 0; s < PER_PRODUCER; s++) {
    tagged t = {a->id, s};
    if (stead_queue_put(a->r->q, &t, sizeof t) != 0)
      __atomic_add_fetch(&a->r->put_errors, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

typedef struct closer_arg {
  pthread_t *threads;
  stead_queue *q;
} closer_arg;

static void *closer(void *arg) {
  closer_arg *c = arg;
  for (int i = 0; i < PRODUCERS; i++)
    pthread_join(c->threads[i], NULL);
  stead_queue_close(c->q);
  return NULL;
}

static int race_update(void *model, const void *msg, size_t len, stead_cmds *cmds,
                       void *udata) {
  race *r = model;
  tagged t;
  if (len != sizeof t)
    return STEAD_ECORRUPT;
  memcpy(&t, msg, sizeof t);
  if (r->fail_every && r->applied % r->fail_every == r->fail_every - 1 &&
      r->failed_at != r->applied) {
    r->failed_at = r->applied; /* fail before touching the model */
    return 1;
  }
  if (t.producer >= PRODUCERS || t.seq != r->next[t.producer])
    r->out_of_order++;
  else
    r->next[t.producer]++;
  r->applied++;
  return 0;
}

static void run_race(uint64_t fail_every) {
  race r = {0};
  r.fail_every = fail_every;
  assert_int_equal(stead_queue_new(&r.q), 0);
  stead_consumer in;
  stead_queue_consumer(r.q, &in);
  stead_program p = {.update = race_update};
  stead_loop *l;
  assert_int_equal(stead_loop_new(&l, &p, &r, &in, NULL), 0);
  pthread_t th[PRODUCERS], ct;
  producer_arg pa[PRODUCERS];
  for (uint32_t i = 0; i < PRODUCERS; i++) {
    pa[i] = (producer_arg){&r, i};
    assert_int_equal(pthread_create(&th[i], NULL, producer, &pa[i]), 0);
  }
  closer_arg ca = {th, r.q};
  assert_int_equal(pthread_create(&ct, NULL, closer, &ca), 0);
  int failures = 0, rc;
  /* A failed tick ends the run; start again, as an owner would. */
  while ((rc = stead_loop_run(l, NULL)) == STEAD_EHANDLER)
    failures++;
  assert_int_equal(rc, 0);
  pthread_join(ct, NULL);
  assert_int_equal(r.put_errors, 0);
  assert_int_equal(r.out_of_order, 0);
  assert_int_equal(r.applied, (uint64_t)PRODUCERS * PER_PRODUCER);
  for (int i = 0; i < PRODUCERS; i++)
    assert_int_equal(r.next[i], PER_PRODUCER);
  if (fail_every)
    assert_int_equal(failures, (int)(r.applied / fail_every));
  stead_loop_stats st;
  stead_loop_get_stats(l, &st);
  assert_int_equal(st.messages, (uint64_t)PRODUCERS * PER_PRODUCER);
  assert_int_equal(st.rollbacks, (uint64_t)failures);
  assert_int_equal(stead_queue_len(r.q), 0);
  stead_loop_free(l);
  stead_queue_free(r.q);
}

static void producers_race_a_running_loop(void **state) {
  run_race(0);
}

static void producers_race_a_failing_loop(void **state) {
  run_race(997);
}

/* put_many from several threads: each group stays contiguous. */
enum { GROUP = 10, GROUPS = 2000 };

static void *group_producer(void *arg) {
  producer_arg *a = arg;
  tagged t[GROUP];
  stead_msg m[GROUP];
  for (uint32_t g = 0; g < GROUPS; g++) {
    for (uint32_t i = 0; i < GROUP; i++) {
      t[i] = (tagged){a->id, g * GROUP + i};
      m[i] = (stead_msg){&t[i], sizeof t[i]};
    }
    if (stead_queue_put_many(a->r->q, m, GROUP) != 0)
      __atomic_add_fetch(&a->r->put_errors, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

static void put_many_is_atomic(void **state) {
  race r = {0};
  assert_int_equal(stead_queue_new(&r.q), 0);
  pthread_t th[PRODUCERS];
  producer_arg pa[PRODUCERS];
  for (uint32_t i = 0; i < PRODUCERS; i++) {
    pa[i] = (producer_arg){&r, i};
    assert_int_equal(pthread_create(&th[i], NULL, group_producer, &pa[i]), 0);
  }
  size_t got = 0;
  while (got < (size_t)PRODUCERS * GROUPS * GROUP) {
    stead_msg m;
    assert_int_equal(stead_queue_get(r.q, NULL, 1, &m), 0);
    tagged first;
    memcpy(&first, m.data, sizeof first);
    assert_int_equal(first.seq % GROUP, 0);
    for (uint32_t i = 1; i < GROUP; i++) {
      assert_int_equal(stead_queue_get(r.q, NULL, 1, &m), 0);
      tagged t;
      memcpy(&t, m.data, sizeof t);
      assert_int_equal(t.producer, first.producer);
      assert_int_equal(t.seq, first.seq + i);
    }
    assert_int_equal(stead_queue_commit(r.q), 0);
    got += GROUP;
  }
  for (int i = 0; i < PRODUCERS; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(r.put_errors, 0);
  stead_queue_free(r.q);
}

/* --- Waking a blocked loop ----------------------------------------------- */

static int nop_update(void *model, const void *msg, size_t len, stead_cmds *cmds,
                      void *udata) {
  (*(int *)model)++;
  return 0;
}

static void *cancel_later(void *arg) {
  sleep_ms(50);
  stead_cancel_set(arg);
  return NULL;
}

static void *close_later(void *arg) {
  sleep_ms(50);
  stead_queue_close(arg);
  return NULL;
}

static void *put_later(void *arg) {
  sleep_ms(30);
  stead_queue_put(arg, "m", 1);
  return NULL;
}

typedef struct blocked {
  stead_queue *q;
  stead_loop *l;
  int model;
} blocked;

static void blocked_open(blocked *b) {
  memset(b, 0, sizeof *b);
  assert_int_equal(stead_queue_new(&b->q), 0);
  stead_consumer in;
  stead_queue_consumer(b->q, &in);
  stead_program p = {.update = nop_update};
  assert_int_equal(stead_loop_new(&b->l, &p, &b->model, &in, NULL), 0);
}

static void blocked_close(blocked *b) {
  stead_loop_free(b->l);
  stead_queue_free(b->q);
}

static void cancel_wakes_a_blocked_loop(void **state) {
  blocked b;
  blocked_open(&b);
  stead_cancel *c;
  assert_int_equal(stead_cancel_new(&c, 0), 0);
  pthread_t t1, t2;
  /* Before the threads start: the cancel comes >= 50 ms after this, however
   * late the main thread runs again. */
  int64_t t0 = stead__mono_ms();
  assert_int_equal(pthread_create(&t1, NULL, put_later, b.q), 0);
  assert_int_equal(pthread_create(&t2, NULL, cancel_later, c), 0);
  assert_int_equal(stead_loop_run(b.l, c), STEAD_ECANCELED);
  int64_t took = stead__mono_ms() - t0;
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  assert_true(took >= 45);
  assert_true(took < 5000);
  assert_int_equal(b.model, 1); /* the message that came while waiting ran */
  stead_cancel_free(c);
  blocked_close(&b);
}

static void close_ends_a_blocked_run(void **state) {
  blocked b;
  blocked_open(&b);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, close_later, b.q), 0);
  assert_int_equal(stead_loop_run(b.l, NULL), 0);
  pthread_join(t, NULL);
  blocked_close(&b);
}

/* One token wakes every get waiting on it, each on its own queue. */
typedef struct waiter {
  stead_queue *q;
  stead_cancel *c;
  int rc;
} waiter;

static void *wait_get(void *arg) {
  waiter *w = arg;
  stead_msg m;
  w->rc = stead_queue_get(w->q, w->c, 1, &m);
  return NULL;
}

static void one_token_wakes_many_waiters(void **state) {
  stead_cancel *c;
  assert_int_equal(stead_cancel_new(&c, 0), 0);
  waiter w[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (waiter){NULL, c, 1};
    assert_int_equal(stead_queue_new(&w[i].q), 0);
    assert_int_equal(pthread_create(&th[i], NULL, wait_get, &w[i]), 0);
  }
  sleep_ms(30);
  stead_cancel_set(c);
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(w[i].rc, STEAD_ECANCELED);
    stead_queue_free(w[i].q);
  }
  stead_cancel_free(c);
}

static void deadline_wakes_many_waiters(void **state) {
  stead_cancel *c;
  assert_int_equal(stead_cancel_new(&c, 40), 0);
  waiter w[3];
  pthread_t th[3];
  for (int i = 0; i < 3; i++) {
    w[i] = (waiter){NULL, c, 1};
    assert_int_equal(stead_queue_new(&w[i].q), 0);
    assert_int_equal(pthread_create(&th[i], NULL, wait_get, &w[i]), 0);
  }
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(w[i].rc, STEAD_ETIMEDOUT);
    stead_queue_free(w[i].q);
  }
  stead_cancel_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rollback_redelivers_from_head),
      cmocka_unit_test(taken_bytes_survive_growth),
      cmocka_unit_test(producers_race_a_running_loop),
      cmocka_unit_test(producers_race_a_failing_loop),
      cmocka_unit_test(put_many_is_atomic),
      cmocka_unit_test(cancel_wakes_a_blocked_loop),
      cmocka_unit_test(close_ends_a_blocked_run),
      cmocka_unit_test(one_token_wakes_many_waiters),
      cmocka_unit_test(deadline_wakes_many_waiters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
