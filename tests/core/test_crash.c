/*
 * Crash test: an acknowledged write survives kill -9.
 *
 * Each round forks a child that opens a SQLite-backed runtime (durability
 * full) and increments 64 objects from 4 threads as fast as it can. Every
 * acknowledged reply (object, new count) is written to a pipe before the
 * next increment. The parent SIGKILLs the child at a random moment,
 * reopens the same database and checks for every object that
 *   - the stored count is at least the last acknowledged one (nothing
 *     acknowledged was lost), and at most 4 more (only in-flight turns may
 *     have committed without their reply getting out);
 *   - the state struct and the raw key written in the same turn agree
 *     (nothing is torn).
 * Rounds: STEAD_CRASH_ROUNDS (default 50; `make crash-test` runs 500).
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define OBJECTS 64
#define THREADS 4

typedef struct cstate {
  int64_t count;
} cstate;

static const stead_field fields[] = {STEAD_FIELD_INT64(cstate, count, 0)};
static const stead_schema schema = STEAD_SCHEMA(cstate, fields);

static int incr(stead_ctx *ctx, const void *arg, size_t len) {
  cstate *c = stead_state(ctx);
  c->count++;
  char v[32];
  int k = snprintf(v, sizeof v, "%" PRId64, c->count);
  int rc = stead_put(ctx, "mirror", 6, v, (size_t)k);
  return rc ? rc : stead_reply(ctx, v, (size_t)k);
}

static int check(stead_ctx *ctx, const void *arg, size_t len) {
  cstate *c = stead_state(ctx);
  void *m = NULL;
  size_t n = 0;
  int rc = stead_get(ctx, "mirror", 6, &m, &n);
  int64_t mirror = rc == 0 ? atoll(m) : 0;
  stead_free(m);
  if (rc && rc != STEAD_ENOTFOUND)
    return rc;
  char out[64];
  int k = snprintf(out, sizeof out, "%" PRId64 " %" PRId64, c->count, mirror);
  return stead_reply(ctx, out, (size_t)k);
}

static const stead_method methods[] = {{"incr", incr}, {"check", check}, {NULL, NULL}};
static const stead_class cls = {.name = "c", .methods = methods, .state_schema = &schema};

typedef struct ack {
  int32_t obj;
  int32_t pad;
  int64_t count;
} ack;

typedef struct child_arg {
  stead_rt *rt;
  int fd, t;
} child_arg;

static void *child_thread(void *p) {
  child_arg *a = p;
  for (unsigned i = (unsigned)a->t;; i += THREADS) {
    ack rec = {.obj = (int32_t)(i % OBJECTS)};
    char id[16];
    snprintf(id, sizeof id, "o%d", rec.obj);
    void *r;
    size_t n;
    if (stead_call(a->rt, "c", id, "incr", NULL, 0, 10000, &r, &n) != 0)
      continue;
    rec.count = atoll(r);
    stead_free(r);
    /* One record per write, under PIPE_BUF: atomic among the threads. */
    if (write(a->fd, &rec, sizeof rec) != sizeof rec)
      _exit(3);
  }
  return NULL;
}

static void run_child(const char *spec, int fd) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = spec;
  stead_rt *rt;
  if (stead_open(&cfg, &rt) || stead_register(rt, &cls))
    _exit(2);
  pthread_t th[THREADS];
  child_arg args[THREADS];
  for (int t = 0; t < THREADS; t++) {
    args[t] = (child_arg){rt, fd, t};
    pthread_create(&th[t], NULL, child_thread, &args[t]);
  }
  for (;;)
    pause();
}

static void verify(const char *spec, const int64_t *acked, int round) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.storage = spec;
  stead_rt *rt;
  assert_rc(stead_open(&cfg, &rt), 0);
  assert_rc(stead_register(rt, &cls), 0);
  for (int o = 0; o < OBJECTS; o++) {
    char id[16];
    snprintf(id, sizeof id, "o%d", o);
    void *r;
    size_t n;
    assert_rc(stead_call(rt, "c", id, "check", NULL, 0, 10000, &r, &n), 0);
    long long count = 0, mirror = 0;
    sscanf(r, "%lld %lld", &count, &mirror);
    stead_free(r);
    if (count != mirror)
      fail_msg("round %d: %s torn: struct %lld, key %lld", round, id, count, mirror);
    if (count < acked[o])
      fail_msg("round %d: %s lost acknowledged writes: stored %lld < acked %lld", round,
               id, count, (long long)acked[o]);
    if (count > acked[o] + THREADS)
      fail_msg("round %d: %s has %lld, more than acked %lld + in flight", round, id,
               count, (long long)acked[o]);
  }
  stead_close(rt);
}

static void test_kill9_loses_no_ack(void **state) {
  char dir[] = "/tmp/stead-crash-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char spec[128];
  snprintf(spec, sizeof spec, "sqlite:%s/stead.db", dir);
  const char *env = getenv("STEAD_CRASH_ROUNDS");
  int rounds = env ? atoi(env) : 50;
  unsigned seed = (unsigned)time(NULL);
  printf("crash test: %d rounds, seed %u\n", rounds, seed);
  srand(seed);
  int64_t acked[OBJECTS] = {0};
  long total_acks = 0;
  for (int round = 0; round < rounds; round++) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      run_child(spec, fds[1]);
    }
    close(fds[1]);
    /* Let it open and get going, then kill it mid-stream. */
    test_sleep_ms(30 + rand() % 120);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    ack rec;
    ssize_t got;
    while ((got = read(fds[0], &rec, sizeof rec)) == sizeof rec) {
      assert_true(rec.obj >= 0 && rec.obj < OBJECTS);
      if (rec.count > acked[rec.obj])
        acked[rec.obj] = rec.count;
      total_acks++;
    }
    close(fds[0]);
    verify(spec, acked, round);
  }
  printf("crash test: %ld acknowledged increments checked over %d kills\n", total_acks,
         rounds);
  assert_true(total_acks > 0);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_kill9_loses_no_ack)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
