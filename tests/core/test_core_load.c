/*
 * Exact counts under load: 1,000 objects x 1,000 increments sent from 4
 * threads (each thread owns a quarter of the increments of every object),
 * and per-sender FIFO checked with sequence numbers.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define OBJECTS    1000
#define PER_OBJECT 1000
#define THREADS    4

typedef struct obj {
  int64_t count;
  int64_t last_seq[THREADS]; /* last sequence number seen from each sender */
  int64_t fifo_violations;
} obj;

/* payload: "thread seq" */
static int add(stead_ctx *ctx, const void *arg, size_t len) {
  obj *o = stead_state(ctx);
  int t = 0;
  long long seq = 0;
  sscanf(arg, "%d %lld", &t, &seq);
  if (seq <= o->last_seq[t])
    o->fifo_violations++;
  o->last_seq[t] = seq;
  o->count++;
  return 0;
}

static int get(stead_ctx *ctx, const void *arg, size_t len) {
  obj *o = stead_state(ctx);
  char buf[64];
  int k = snprintf(buf, sizeof buf, "%lld %lld", (long long)o->count,
                   (long long)o->fifo_violations);
  return stead_reply(ctx, buf, (size_t)k);
}

static const stead_method methods[] = {{"add", add}, {"get", get}, {NULL, NULL}};
static const stead_class cls = {
    .name = "tally", .methods = methods, .state_size = sizeof(obj)};

typedef struct sender {
  stead_rt *rt;
  int t;
  long overloads;
} sender;

static void *send_main(void *p) {
  sender *s = p;
  char id[16], msg[32];
  for (int round = 1; round <= PER_OBJECT / THREADS; round++)
    for (int o = 0; o < OBJECTS; o++) {
      snprintf(id, sizeof id, "o%d", o);
      int k = snprintf(msg, sizeof msg, "%d %d", s->t, round);
      int rc;
      /* Overload is retryable: back off and resend the same message, which
       * keeps this sender's order. */
      while ((rc = stead_send(s->rt, "tally", id, "add", msg, (size_t)k)) ==
             STEAD_EOVERLOAD) {
        s->overloads++;
        test_sleep_ms(1);
      }
      if (rc != 0)
        return (void *)1;
    }
  return NULL;
}

static void test_exact_counts_and_fifo(void **state) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.mailbox_limit = 1000;
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &cls), 0);
  pthread_t th[THREADS];
  sender s[THREADS];
  for (int i = 0; i < THREADS; i++) {
    s[i] = (sender){rt, i, 0};
    pthread_create(&th[i], NULL, send_main, &s[i]);
  }
  for (int i = 0; i < THREADS; i++) {
    void *ret;
    pthread_join(th[i], &ret);
    assert_null(ret);
  }
  assert_rc(stead_run_until_idle(rt), 0);
  for (int o = 0; o < OBJECTS; o++) {
    char id[16];
    snprintf(id, sizeof id, "o%d", o);
    void *r;
    size_t n;
    assert_rc(stead_call(rt, "tally", id, "get", NULL, 0, 0, &r, &n), 0);
    long long count, bad;
    sscanf(r, "%lld %lld", &count, &bad);
    stead_free(r);
    if (count != PER_OBJECT || bad != 0)
      fail_msg("%s: count %lld (want %d), fifo violations %lld", id, count, PER_OBJECT,
               bad);
  }
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_exact_counts_and_fifo)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
