/*
 * test_nats.c -- NATS transport and membership against a real nats-server
 * started by the test (see natsrv.h).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cluster/nats.h"
#include "natsrv.h"

static natsrv server;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static stead__nats *open_transport(size_t max_pending) {
  stead__nats_opts o;
  stead__nats_opts_init(&o);
  o.url = server.url;
  if (max_pending)
    o.max_pending = max_pending;
  stead__nats *t = NULL;
  int rc = stead__nats_open(&o, &t);
  if (rc != 0)
    fail_msg("open: %s: %s", stead_errname(rc), stead_errmsg());
  return t;
}

/* Outcome of one request: written once by the callback. */
typedef struct outcome {
  atomic_int calls;
  int status;
  char data[64];
  size_t len;
  int64_t at_ms;
} outcome;

static void record(int status, const void *data, size_t len, void *udata) {
  outcome *o = udata;
  o->status = status;
  o->len = len < sizeof o->data ? len : sizeof o->data;
  if (data && o->len)
    memcpy(o->data, data, o->len);
  o->at_ms = stead__mono_ms();
  atomic_fetch_add(&o->calls, 1);
}

static int wait_calls(atomic_int *calls, int want, int ms) {
  for (int i = 0; i < ms && atomic_load(calls) < want; i++)
    sleep_ms(1);
  return atomic_load(calls);
}

/* Handlers. */
static void echo(stead__nats_replier *r, const void *data, size_t len, void *udata) {
  (void)udata;
  assert_int_equal(stead__nats_respond(r, data, len), 0);
}

static void ignore(stead__nats_replier *r, const void *data, size_t len, void *udata) {
  stead__nats_replier_drop(r);
}

/* Keeps repliers to answer later from another thread. */
typedef struct holder {
  pthread_mutex_t mu;
  stead__nats_replier *held[256];
  int n;
} holder;

static void hold(stead__nats_replier *r, const void *data, size_t len, void *udata) {
  holder *h = udata;
  pthread_mutex_lock(&h->mu);
  assert_true(h->n < 256);
  h->held[h->n++] = r;
  pthread_mutex_unlock(&h->mu);
}

static int group_setup(void **state) {
  (void)state;
  return natsrv_start(&server) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  natsrv_stop(&server);
  return 0;
}

static void test_request_reply(void **state) {
  (void)state;
  stead__nats *srv = open_transport(0), *cli = open_transport(0);
  stead__nats_sub *sub;
  assert_int_equal(stead__nats_serve(srv, "t1.shard.3", NULL, echo, NULL, &sub), 0);
  outcome o = {0};
  assert_int_equal(stead__nats_request(cli, "t1.shard.3", "ping", 4, 2000, record, &o),
                   0);
  assert_int_equal(wait_calls(&o.calls, 1, 3000), 1);
  assert_int_equal(o.status, 0);
  assert_int_equal(o.len, 4);
  assert_memory_equal(o.data, "ping", 4);
  /* Empty payloads work too. */
  outcome e = {0};
  assert_int_equal(stead__nats_request(cli, "t1.shard.3", NULL, 0, 2000, record, &e), 0);
  assert_int_equal(wait_calls(&e.calls, 1, 3000), 1);
  assert_int_equal(e.status, 0);
  assert_int_equal(e.len, 0);
  assert_int_equal(stead__nats_pending(cli), 0);
  stead__nats_unserve(sub);
  stead__nats_close(cli);
  stead__nats_close(srv);
}

static void test_deadline_and_no_responders(void **state) {
  (void)state;
  stead__nats *t = open_transport(0);
  stead__nats_sub *sub;
  assert_int_equal(stead__nats_serve(t, "t2.silent", NULL, ignore, NULL, &sub), 0);
  outcome o = {0};
  int64_t start = stead__mono_ms();
  assert_int_equal(stead__nats_request(t, "t2.silent", "x", 1, 150, record, &o), 0);
  assert_int_equal(wait_calls(&o.calls, 1, 3000), 1);
  assert_int_equal(o.status, STEAD_ETIMEDOUT);
  assert_true(o.at_ms - start >= 149);
  assert_true(o.at_ms - start < 1000);
  /* Nobody subscribed: the server says so at once. */
  outcome n = {0};
  assert_int_equal(stead__nats_request(t, "t2.nobody", "x", 1, 5000, record, &n), 0);
  assert_int_equal(wait_calls(&n.calls, 1, 3000), 1);
  assert_int_equal(n.status, STEAD_ENOTOWNER);
  /* Different deadlines expire in deadline order, not submission order. */
  outcome a = {0}, b = {0};
  assert_int_equal(stead__nats_request(t, "t2.silent", "a", 1, 400, record, &a), 0);
  assert_int_equal(stead__nats_request(t, "t2.silent", "b", 1, 100, record, &b), 0);
  assert_int_equal(wait_calls(&a.calls, 1, 3000), 1);
  assert_int_equal(atomic_load(&b.calls), 1);
  assert_true(b.at_ms < a.at_ms);
  stead__nats_unserve(sub);
  stead__nats_close(t);
}

static void test_late_answer(void **state) {
  (void)state;
  stead__nats *srv = open_transport(0), *cli = open_transport(0);
  holder h = {.mu = PTHREAD_MUTEX_INITIALIZER};
  stead__nats_sub *sub;
  assert_int_equal(stead__nats_serve(srv, "t3.late", NULL, hold, &h, &sub), 0);
  outcome o = {0};
  assert_int_equal(stead__nats_request(cli, "t3.late", "x", 1, 100, record, &o), 0);
  assert_int_equal(wait_calls(&o.calls, 1, 3000), 1);
  assert_int_equal(o.status, STEAD_ETIMEDOUT);
  /* The server answers after the deadline: the reply is dropped. */
  pthread_mutex_lock(&h.mu);
  assert_int_equal(h.n, 1);
  assert_int_equal(stead__nats_respond(h.held[0], "late", 4), 0);
  pthread_mutex_unlock(&h.mu);
  /* An answer in time from another thread arrives. */
  outcome ok = {0};
  assert_int_equal(stead__nats_request(cli, "t3.late", "y", 1, 3000, record, &ok), 0);
  for (int i = 0; i < 3000; i++) {
    pthread_mutex_lock(&h.mu);
    int n = h.n;
    pthread_mutex_unlock(&h.mu);
    if (n == 2)
      break;
    sleep_ms(1);
  }
  pthread_mutex_lock(&h.mu);
  assert_int_equal(h.n, 2);
  assert_int_equal(stead__nats_respond(h.held[1], "in time", 7), 0);
  pthread_mutex_unlock(&h.mu);
  assert_int_equal(wait_calls(&ok.calls, 1, 3000), 1);
  assert_int_equal(ok.status, 0);
  assert_memory_equal(ok.data, "in time", 7);
  sleep_ms(50);
  assert_int_equal(atomic_load(&o.calls), 1);
  stead__nats_unserve(sub);
  stead__nats_close(cli);
  stead__nats_close(srv);
}

/* Many threads, many requests, answered from a separate responder thread. */
enum { THREADS = 4, PER_THREAD = 500 };

typedef struct load {
  stead__nats *cli;
  outcome out[THREADS * PER_THREAD];
  int base;
} load;

typedef struct queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  stead__nats_replier *r[THREADS * PER_THREAD];
  char payload[THREADS * PER_THREAD][16];
  size_t len[THREADS * PER_THREAD];
  int head, tail, stop;
} queue;

static void enqueue(stead__nats_replier *r, const void *data, size_t len, void *udata) {
  queue *q = udata;
  pthread_mutex_lock(&q->mu);
  q->r[q->tail] = r;
  memcpy(q->payload[q->tail], data, len < 16 ? len : 16);
  q->len[q->tail] = len < 16 ? len : 16;
  q->tail++;
  pthread_cond_signal(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

static void *responder(void *arg) {
  queue *q = arg;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    while (q->head == q->tail && !q->stop)
      pthread_cond_wait(&q->cv, &q->mu);
    if (q->head == q->tail)
      break;
    int i = q->head++;
    pthread_mutex_unlock(&q->mu);
    stead__nats_respond(q->r[i], q->payload[i], q->len[i]);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

typedef struct worker_arg {
  load *l;
  int index;
} worker_arg;

static void *requester(void *arg) {
  worker_arg *w = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    int k = w->index * PER_THREAD + i;
    char msg[16];
    int n = snprintf(msg, sizeof msg, "m%d", k);
    int rc;
    while ((rc = stead__nats_request(w->l->cli, "t4.shard.0", msg, (size_t)n, 10000,
                                     record, &w->l->out[k])) == STEAD_EOVERLOAD)
      sleep_ms(1);
    if (rc != 0)
      return (void *)1;
  }
  return NULL;
}

static void test_concurrent(void **state) {
  (void)state;
  static load l;
  static queue q;
  memset(&l, 0, sizeof l);
  memset(&q, 0, sizeof q);
  pthread_mutex_init(&q.mu, NULL);
  pthread_cond_init(&q.cv, NULL);
  stead__nats *srv = open_transport(0);
  l.cli = open_transport(256);
  stead__nats_sub *sub;
  assert_int_equal(stead__nats_serve(srv, "t4.shard.0", "workers", enqueue, &q, &sub), 0);
  pthread_t resp, th[THREADS];
  worker_arg args[THREADS];
  pthread_create(&resp, NULL, responder, &q);
  for (int i = 0; i < THREADS; i++) {
    args[i] = (worker_arg){&l, i};
    pthread_create(&th[i], NULL, requester, &args[i]);
  }
  for (int i = 0; i < THREADS; i++) {
    void *ret;
    pthread_join(th[i], &ret);
    assert_null(ret);
  }
  for (int k = 0; k < THREADS * PER_THREAD; k++) {
    assert_int_equal(wait_calls(&l.out[k].calls, 1, 10000), 1);
    char want[16];
    int n = snprintf(want, sizeof want, "m%d", k);
    assert_int_equal(l.out[k].status, 0);
    assert_int_equal(l.out[k].len, (size_t)n);
    assert_memory_equal(l.out[k].data, want, (size_t)n);
  }
  assert_int_equal(stead__nats_pending(l.cli), 0);
  pthread_mutex_lock(&q.mu);
  q.stop = 1;
  pthread_cond_signal(&q.cv);
  pthread_mutex_unlock(&q.mu);
  pthread_join(resp, NULL);
  stead__nats_unserve(sub);
  stead__nats_close(l.cli);
  stead__nats_close(srv);
}

static void test_close_in_flight(void **state) {
  (void)state;
  stead__nats *srv = open_transport(0), *cli = open_transport(0);
  static holder h;
  memset(&h, 0, sizeof h);
  pthread_mutex_init(&h.mu, NULL);
  stead__nats_sub *sub;
  assert_int_equal(stead__nats_serve(srv, "t5.hold", NULL, hold, &h, &sub), 0);
  enum { N = 100 };
  static outcome o[N];
  memset(o, 0, sizeof o);
  for (int i = 0; i < N; i++)
    assert_int_equal(stead__nats_request(cli, "t5.hold", "x", 1, 10000, record, &o[i]),
                     0);
  for (int i = 0; i < 3000; i++) {
    pthread_mutex_lock(&h.mu);
    int n = h.n;
    pthread_mutex_unlock(&h.mu);
    if (n == N)
      break;
    sleep_ms(1);
  }
  assert_int_equal(stead__nats_pending(cli), N);
  stead__nats_close(cli);
  /* Every callback ran exactly once, with ECLOSED, before close returned. */
  for (int i = 0; i < N; i++) {
    assert_int_equal(atomic_load(&o[i].calls), 1);
    assert_int_equal(o[i].status, STEAD_ECLOSED);
  }
  /* The server side closes with repliers outstanding; answering them then
   * fails cleanly, and the memory goes with the last one. */
  stead__nats_unserve(sub);
  stead__nats_close(srv);
  pthread_mutex_lock(&h.mu);
  assert_int_equal(h.n, N);
  for (int i = 0; i < h.n; i++)
    assert_int_equal(stead__nats_respond(h.held[i], "late", 4), STEAD_ECLOSED);
  pthread_mutex_unlock(&h.mu);
  for (int i = 0; i < N; i++)
    assert_int_equal(atomic_load(&o[i].calls), 1);
}

static void test_limits_and_errors(void **state) {
  (void)state;
  stead__nats *t = open_transport(4);
  stead__nats_sub *sub;
  assert_int_equal(stead__nats_serve(t, "t6.silent", NULL, ignore, NULL, &sub), 0);
  outcome o[5];
  memset(o, 0, sizeof o);
  for (int i = 0; i < 4; i++)
    assert_int_equal(stead__nats_request(t, "t6.silent", "x", 1, 5000, record, &o[i]), 0);
  assert_int_equal(stead__nats_request(t, "t6.silent", "x", 1, 5000, record, &o[4]),
                   STEAD_EOVERLOAD);
  assert_non_null(strstr(stead_errmsg(), "limit is 4"));
  assert_int_equal(stead__nats_request(t, "t6.silent", "x", 1, 0, record, &o[4]),
                   STEAD_EINVAL);
  assert_int_equal(stead__nats_request(t, "", "x", 1, 10, record, &o[4]), STEAD_EINVAL);
  assert_int_equal(stead__nats_request(t, "a b", "x", 1, 10, record, &o[4]),
                   STEAD_EINVAL);
  assert_int_equal(stead__nats_request(t, "a", "x", 1, 10, NULL, NULL), STEAD_EINVAL);
  assert_int_equal(stead__nats_publish(t, NULL, "x", 1), STEAD_EINVAL);
  assert_int_equal(stead__nats_publish(t, "t6.any", "x", 1), 0);
  stead__nats_unserve(sub);
  stead__nats_close(t);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(atomic_load(&o[i].calls), 1);
    assert_int_equal(o[i].status, STEAD_ECLOSED);
  }
  assert_int_equal(atomic_load(&o[4].calls), 0);

  /* Options and connection failures. */
  stead__nats_opts opts;
  stead__nats_opts_init(&opts);
  stead__nats *bad = (stead__nats *)1;
  assert_int_equal(stead__nats_open(&opts, &bad), STEAD_EINVAL);
  assert_null(bad);
  opts.url = "nats://127.0.0.1:1";
  opts.connect_timeout_ms = 200;
  assert_int_equal(stead__nats_open(&opts, &bad), STEAD_EIO);
  assert_non_null(strstr(stead_errmsg(), "cannot connect"));
  opts.url = server.url;
  opts.max_pending = 0;
  assert_int_equal(stead__nats_open(&opts, &bad), STEAD_EINVAL);

  /* Subjects and deployment names. */
  char buf[64];
  assert_int_equal(stead__nats_shard_subject(buf, sizeof buf, "prod", 17), 0);
  assert_string_equal(buf, "prod.shard.17");
  assert_int_equal(stead__nats_members_subject(buf, sizeof buf, "prod-eu_1"), 0);
  assert_string_equal(buf, "prod-eu_1.members");
  assert_int_equal(stead__nats_shard_subject(buf, 8, "prod", 17), STEAD_ETOOBIG);
  assert_int_equal(stead__nats_check_deployment("a.b"), STEAD_EINVAL);
  assert_int_equal(stead__nats_check_deployment("a*"), STEAD_EINVAL);
  assert_int_equal(stead__nats_check_deployment(""), STEAD_EINVAL);
  assert_int_equal(stead__nats_check_deployment(NULL), STEAD_EINVAL);
  char longname[80];
  memset(longname, 'd', 65);
  longname[65] = 0;
  assert_int_equal(stead__nats_check_deployment(longname), STEAD_ETOOBIG);
}

/* ---------------------------------------------------------------------
 * Membership.
 * ------------------------------------------------------------------- */

typedef struct watch {
  pthread_mutex_t mu;
  char set[256];
  int changes;
} watch;

static void on_change(const char *const *nodes, size_t n, void *udata) {
  watch *w = udata;
  pthread_mutex_lock(&w->mu);
  w->set[0] = 0;
  for (size_t i = 0; i < n; i++) {
    strcat(w->set, nodes[i]);
    strcat(w->set, i + 1 < n ? "," : "");
  }
  w->changes++;
  pthread_mutex_unlock(&w->mu);
}

static int wait_set(watch *w, const char *want, int ms) {
  for (int i = 0; i < ms; i++) {
    pthread_mutex_lock(&w->mu);
    int ok = strcmp(w->set, want) == 0;
    pthread_mutex_unlock(&w->mu);
    if (ok)
      return 1;
    sleep_ms(1);
  }
  pthread_mutex_lock(&w->mu);
  fprintf(stderr, "set is \"%s\", wanted \"%s\"\n", w->set, want);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

static stead__members *open_member(stead__nats *t, const char *id, watch *w) {
  stead__members_opts o;
  stead__members_opts_init(&o);
  o.deployment = "mtest";
  o.node_id = id;
  o.heartbeat_ms = 50;
  o.expire_ms = 250;
  o.on_change = on_change;
  o.udata = w;
  stead__members *m = NULL;
  int rc = stead__members_open(t, &o, &m);
  if (rc != 0)
    fail_msg("members_open: %s", stead_errmsg());
  return m;
}

static void test_membership(void **state) {
  (void)state;
  stead__nats *t[3];
  static watch w[3];
  const char *ids[3] = {"node-b", "node-a", "node-c"};
  stead__members *m[3];
  for (int i = 0; i < 3; i++) {
    memset(&w[i], 0, sizeof w[i]);
    pthread_mutex_init(&w[i].mu, NULL);
    t[i] = open_transport(0);
    m[i] = open_member(t[i], ids[i], &w[i]);
  }
  for (int i = 0; i < 3; i++)
    assert_true(wait_set(&w[i], "node-a,node-b,node-c", 3000));
  char **snap;
  size_t n;
  assert_int_equal(stead__members_snapshot(m[0], &snap, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(snap[0], "node-a");
  assert_null(snap[3]);
  stead_free(snap);

  /* A peer that goes silent expires; one that leaves goes at once. */
  char ghost[] = "stead1 H ghost";
  assert_int_equal(stead__nats_publish(t[0], "mtest.members", ghost, strlen(ghost)), 0);
  assert_true(wait_set(&w[1], "ghost,node-a,node-b,node-c", 3000));
  int64_t seen = stead__mono_ms();
  assert_true(wait_set(&w[1], "node-a,node-b,node-c", 3000));
  assert_true(stead__mono_ms() - seen >= 150);
  /* Garbage on the subject is ignored. */
  assert_int_equal(stead__nats_publish(t[0], "mtest.members", "junk", 4), 0);
  assert_int_equal(stead__nats_publish(t[0], "mtest.members", "stead1 H bad id", 15), 0);
  sleep_ms(100);
  assert_true(wait_set(&w[1], "node-a,node-b,node-c", 10));

  int64_t left = stead__mono_ms();
  stead__members_close(m[2]);
  assert_true(wait_set(&w[0], "node-a,node-b", 3000));
  assert_true(wait_set(&w[1], "node-a,node-b", 3000));
  assert_true(stead__mono_ms() - left < 200); /* well before expire */
  for (int i = 0; i < 2; i++)
    stead__members_close(m[i]);
  for (int i = 0; i < 3; i++)
    stead__nats_close(t[i]);
}

static void test_membership_static_and_errors(void **state) {
  (void)state;
  watch w = {.mu = PTHREAD_MUTEX_INITIALIZER};
  stead__members_opts o;
  stead__members_opts_init(&o);
  o.deployment = "static";
  o.static_hosts = "host-{2..0},x";
  o.on_change = on_change;
  o.udata = &w;
  stead__members *m = NULL;
  assert_int_equal(stead__members_open(NULL, &o, &m), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "past its end"));
  o.static_hosts = "x,host-{0..2}";
  assert_int_equal(stead__members_open(NULL, &o, &m), 0);
  assert_int_equal(w.changes, 1);
  assert_string_equal(w.set, "host-0,host-1,host-2,x");
  char **snap;
  size_t n;
  assert_int_equal(stead__members_snapshot(m, &snap, &n), 0);
  assert_int_equal(n, 4);
  assert_string_equal(snap[3], "x");
  stead_free(snap);
  stead__members_close(m);

  o.static_hosts = NULL;
  assert_int_equal(stead__members_open(NULL, &o, &m), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "transport"));
  stead__nats *t = open_transport(0);
  assert_int_equal(stead__members_open(t, &o, &m), STEAD_EINVAL); /* no node id */
  o.node_id = "n1";
  o.expire_ms = o.heartbeat_ms;
  assert_int_equal(stead__members_open(t, &o, &m), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "expire_ms"));
  o.expire_ms = 0;
  o.deployment = "bad.name";
  assert_int_equal(stead__members_open(t, &o, &m), STEAD_EINVAL);
  assert_null(m);
  stead__nats_close(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_reply),
      cmocka_unit_test(test_deadline_and_no_responders),
      cmocka_unit_test(test_late_answer),
      cmocka_unit_test(test_concurrent),
      cmocka_unit_test(test_close_in_flight),
      cmocka_unit_test(test_limits_and_errors),
      cmocka_unit_test(test_membership),
      cmocka_unit_test(test_membership_static_and_errors),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
