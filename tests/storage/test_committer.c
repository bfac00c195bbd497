/*
 * test_committer.c -- group commit: batching under a slow backend,
 * callback order, flush, close with pending sets, failure injection
 * failing exactly one batch, cancellation of later sets after a failure,
 * counters. Labelled "concurrency" (several submitting threads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "helpers.h"
#include "storage/committer.h"
#include "storage/failbe.h"
#include "storage/objstore.h"

#include <pthread.h>

typedef struct rec {
  pthread_mutex_t mu;
  int order[4096];
  int rcs[4096];
  int n;
} rec;

typedef struct tag {
  rec *r;
  int seq;
} tag;

static void record_cb(void *u, stead__wset *ws, int rc) {
  tag *t = u;
  pthread_mutex_lock(&t->r->mu);
  t->r->order[t->r->n] = t->seq;
  t->r->rcs[t->seq] = rc;
  t->r->n++;
  pthread_mutex_unlock(&t->r->mu);
}

static stead__wset *mkset(const char *cls, int i) {
  char id[32], k[32];
  snprintf(id, sizeof id, "o%d", i);
  snprintf(k, sizeof k, "k%d", i);
  stead__wset *ws = stead__wset_new(cls, id);
  stead__wset_put(ws, 0, k, strlen(k), "v", 1);
  return ws;
}

static stead__backend *failbe(int delay_us) {
  stead__backend *m, *f;
  assert_int_equal(stead__mem_open(&m), 0);
  assert_int_equal(stead__failbe_wrap(m, &f), 0);
  stead__failbe_set_delay_us(f, delay_us);
  return f;
}

static void test_order_and_flush(void **state) {
  stead__backend *b = failbe(0);
  stead__committer *c;
  assert_int_equal(stead__committer_start(b, NULL, &c), 0);
  static rec r = {.mu = PTHREAD_MUTEX_INITIALIZER};
  static tag tags[300];
  for (int i = 0; i < 300; i++) {
    tags[i] = (tag){&r, i};
    stead__wset *ws = mkset("c", i);
    assert_int_equal(stead__committer_submit(c, ws, record_cb, &tags[i]), 0);
    stead__wset_unref(ws); /* the committer holds its own reference */
  }
  assert_int_equal(stead__committer_flush(c), 0);
  assert_int_equal(r.n, 300);
  for (int i = 0; i < 300; i++) {
    assert_int_equal(r.order[i], i);
    assert_int_equal(r.rcs[i], 0);
  }
  char *g = th_get(b, "c", "o299", 0, "k299");
  assert_string_equal(g, "v");
  free(g);
  stead__commit_stats st;
  stead__committer_stats(c, &st);
  assert_int_equal(st.sets_committed, 300);
  assert_int_equal(st.queued, 0);
  uint64_t hist = 0;
  for (int i = 0; i < STEAD__BATCH_BUCKETS; i++)
    hist += st.batch_size[i];
  assert_int_equal(hist, st.batches);
  assert_int_equal(st.batch_size_sum, 300);
  stead__committer_close(c);
  stead__backend_close(b);
}

typedef struct submitter {
  stead__committer *c;
  int base, n;
  rec *r;
  tag *tags;
} submitter;

static void *submit_thread(void *arg) {
  submitter *s = arg;
  for (int i = 0; i < s->n; i++) {
    s->tags[i] = (tag){s->r, s->base + i};
    stead__wset *ws = mkset("c", s->base + i);
    if (stead__committer_submit(s->c, ws, record_cb, &s->tags[i]) != 0)
      abort();
    stead__wset_unref(ws);
  }
  return NULL;
}

static void test_batching_groups(void **state) {
  /* Each commit takes 3 ms: 4 threads x 100 sets must share transactions. */
  stead__backend *b = failbe(3000);
  stead__committer *c;
  stead__committer_opts o = {.max_batch = 64, .max_delay_us = 0};
  assert_int_equal(stead__committer_start(b, &o, &c), 0);
  rec *r = calloc(1, sizeof *r);
  pthread_mutex_init(&r->mu, NULL);
  pthread_t th[4];
  submitter s[4];
  tag *tags = calloc(400, sizeof *tags);
  for (int i = 0; i < 4; i++) {
    s[i] = (submitter){c, i * 100, 100, r, tags + i * 100};
    pthread_create(&th[i], NULL, submit_thread, &s[i]);
  }
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  stead__committer_flush(c);
  assert_int_equal(r->n, 400);
  assert_int_equal(stead__failbe_sets(b), 400);
  uint64_t commits = stead__failbe_commits(b);
  assert_true(commits >= 400 / 64);
  assert_true(commits <= 40); /* one per set would be 400 */
  /* Per-thread submission order is kept. */
  int last[4] = {-1, -1, -1, -1};
  for (int i = 0; i < 400; i++) {
    int seq = r->order[i];
    assert_true(seq > last[seq / 100]);
    last[seq / 100] = seq;
    assert_int_equal(r->rcs[seq], 0);
  }
  stead__commit_stats st;
  stead__committer_stats(c, &st);
  assert_int_equal(st.batches, commits);
  assert_true(st.latency_sum_us >= commits * 2000);
  stead__committer_close(c);
  stead__backend_close(b);
  pthread_mutex_destroy(&r->mu);
  free(r);
  free(tags);
}

static void test_close_with_pending(void **state) {
  stead__backend *b = failbe(2000);
  stead__committer *c;
  assert_int_equal(stead__committer_start(b, NULL, &c), 0);
  static rec r = {.mu = PTHREAD_MUTEX_INITIALIZER};
  static tag tags[50];
  for (int i = 0; i < 50; i++) {
    tags[i] = (tag){&r, i};
    stead__wset *ws = mkset("c", i);
    stead__committer_submit(c, ws, record_cb, &tags[i]);
    stead__wset_unref(ws);
  }
  stead__committer_close(c); /* commits everything first */
  assert_int_equal(r.n, 50);
  for (int i = 0; i < 50; i++)
    assert_int_equal(r.rcs[i], 0);
  char *g = th_get(b, "c", "o49", 0, "k49");
  assert_non_null(g);
  free(g);
  stead__backend_close(b);
}

static int has_bad(void *u, stead__wset *const *sets, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(sets[i]->cls, "bad") == 0)
      return 1;
  return 0;
}

static void test_failure_fails_whole_batch_only(void **state) {
  stead__backend *b = failbe(0);
  stead__failbe_set_pred(b, has_bad, NULL);
  stead__committer *c;
  stead__committer_opts o = {.max_batch = 256, .max_delay_us = 0};
  assert_int_equal(stead__committer_start(b, &o, &c), 0);
  static rec r = {.mu = PTHREAD_MUTEX_INITIALIZER};
  static tag tags[5];
  for (int i = 0; i < 5; i++)
    tags[i] = (tag){&r, i};
  /* Set 0 keeps the committer busy (100 ms) while 1..3 queue into one
   * batch with the bad set; set 4 goes after the failure. Waiting until
   * set 0's commit has begun (not a fixed sleep) keeps it alone in its
   * batch on a loaded machine. */
  stead__failbe_set_delay_us(b, 100000);
  stead__wset *w0 = mkset("c", 0);
  stead__committer_submit(c, w0, record_cb, &tags[0]);
  while (stead__failbe_commits(b) < 1)
    usleep(100);
  stead__wset *w1 = mkset("c", 1), *w2 = mkset("bad", 2), *w3 = mkset("c", 3);
  stead__committer_submit(c, w1, record_cb, &tags[1]);
  stead__committer_submit(c, w2, record_cb, &tags[2]);
  stead__committer_submit(c, w3, record_cb, &tags[3]);
  stead__committer_flush(c);
  stead__failbe_set_delay_us(b, 0);
  stead__wset *w4 = mkset("c", 4);
  stead__committer_submit(c, w4, record_cb, &tags[4]);
  stead__committer_flush(c);
  assert_int_equal(r.rcs[0], 0);
  assert_int_equal(r.rcs[1], STEAD_ESTORAGE);
  assert_int_equal(r.rcs[2], STEAD_ESTORAGE);
  assert_int_equal(r.rcs[3], STEAD_ESTORAGE);
  assert_int_equal(r.rcs[4], 0);
  char *g = th_get(b, "c", "o1", 0, "k1");
  assert_null(g); /* nothing of the failed batch was written */
  g = th_get(b, "c", "o4", 0, "k4");
  assert_non_null(g);
  free(g);
  stead__commit_stats st;
  stead__committer_stats(c, &st);
  assert_int_equal(st.batches_failed, 1);
  assert_int_equal(st.sets_failed, 3);
  stead__wset *all[] = {w0, w1, w2, w3, w4};
  for (int i = 0; i < 5; i++)
    stead__wset_unref(all[i]);
  stead__committer_close(c);
  stead__backend_close(b);
}

/* The runtime's part, in miniature: report outcomes to the objstore from
 * the commit callback. */
typedef struct rt {
  stead__objstore *os;
  int rcs[8];
  int n;
} rt;

static void rt_cb(void *u, stead__wset *ws, int rc) {
  rt *r = u;
  if (rc == 0)
    stead__objstore_on_durable(r->os, ws);
  else
    stead__objstore_on_failed(r->os, ws);
  r->rcs[r->n++] = rc;
}

static void test_failure_cancels_later_sets(void **state) {
  stead__backend *b = failbe(0);
  stead__committer *c;
  stead__committer_opts o = {.max_batch = 1, .max_delay_us = 0};
  assert_int_equal(stead__committer_start(b, &o, &c), 0);
  rt r = {0};
  assert_int_equal(stead__objstore_new(b, "c", "o", NULL, &r.os), 0);
  stead__failbe_fail_next(b, 1);
  stead__failbe_set_delay_us(b, 10000); /* keep both queued */
  stead__wset *ws[2];
  for (int i = 0; i < 2; i++) {
    stead__objstore_turn_begin(r.os);
    stead__objstore_put(r.os, 0, "k", 1, i ? "2" : "1", 1);
    assert_int_equal(stead__objstore_turn_end(r.os, 1, &ws[i]), 0);
    assert_int_equal(stead__committer_submit(c, ws[i], rt_cb, &r), 0);
  }
  stead__committer_flush(c);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.rcs[0], STEAD_ESTORAGE);
  assert_int_equal(r.rcs[1], STEAD_ECANCELED);
  assert_null(th_get(b, "c", "o", 0, "k"));
  void *v;
  size_t n;
  assert_int_equal(stead__objstore_get(r.os, 0, "k", 1, &v, &n), STEAD_ENOTFOUND);
  stead__commit_stats st;
  stead__committer_stats(c, &st);
  assert_int_equal(st.sets_canceled, 1);
  stead__wset_unref(ws[0]);
  stead__wset_unref(ws[1]);
  stead__committer_close(c);
  stead__objstore_free(r.os);
  stead__backend_close(b);
}

static void flush_in_cb(void *u, stead__wset *ws, int rc) {
  *(int *)u = stead__committer_flush(*(stead__committer **)((int *)u + 2));
}

static void test_flush_from_callback_is_misuse(void **state) {
  stead__backend *b = failbe(0);
  struct {
    int rc;
    int pad;
    stead__committer *c;
  } u = {1, 0, NULL};
  assert_int_equal(stead__committer_start(b, NULL, &u.c), 0);
  stead__wset *ws = mkset("c", 1);
  stead__committer_submit(u.c, ws, flush_in_cb, &u);
  stead__wset_unref(ws);
  stead__committer_flush(u.c);
  assert_int_equal(u.rc, STEAD_EMISUSE);
  stead__committer_close(u.c);
  stead__backend_close(b);
  stead__committer_opts o = {.max_delay_us = -1};
  stead__committer *c;
  assert_int_equal(stead__committer_start(b, &o, &c), STEAD_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_and_flush),
      cmocka_unit_test(test_batching_groups),
      cmocka_unit_test(test_close_with_pending),
      cmocka_unit_test(test_failure_fails_whole_batch_only),
      cmocka_unit_test(test_failure_cancels_later_sets),
      cmocka_unit_test(test_flush_from_callback_is_misuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
