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

/* ---- alarms: SIGKILL while alarms fire ------------------------------- */

#define AOBJ 16

/* set: "name delay_ms": an alarm on this object. */
static int aset(stead_ctx *ctx, const void *arg, size_t len) {
  char name[64];
  long long delay = 0;
  if (sscanf(arg, "%63s %lld", name, &delay) != 2)
    return stead_fail(ctx, "bad set");
  return stead_alarm_set(ctx, name, stead_now_ms(ctx) + delay, NULL, 0);
}

/* fired: "name" -> how many times its alarm turn committed. */
static int afired(stead_ctx *ctx, const void *arg, size_t len) {
  char key[80];
  int k = snprintf(key, sizeof key, "f:%.*s", (int)len, (const char *)arg);
  void *v = NULL;
  size_t n;
  int rc = stead_get(ctx, key, (size_t)k, &v, &n);
  if (rc == STEAD_ENOTFOUND)
    return stead_reply(ctx, "0", 1);
  rc = rc ? rc : stead_reply(ctx, v, n);
  stead_free(v);
  return rc;
}

static int aon_alarm(stead_ctx *ctx, const char *name, const void *meta, size_t len,
                     uint32_t attempt) {
  char key[80];
  int k = snprintf(key, sizeof key, "f:%s", name);
  void *v = NULL;
  size_t n;
  long c = stead_get(ctx, key, (size_t)k, &v, &n) == 0 ? atol(v) : 0;
  stead_free(v);
  char out[32];
  int o = snprintf(out, sizeof out, "%ld", c + 1);
  return stead_put(ctx, key, (size_t)k, out, (size_t)o);
}

static const stead_method amethods[] = {{"set", aset}, {"fired", afired}, {NULL, NULL}};
static const stead_class acls = {
    .name = "al", .methods = amethods, .on_alarm = aon_alarm};

static void run_alarm_child(const char *spec, int fd, int round) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = spec;
  stead_rt *rt;
  if (stead_open(&cfg, &rt) || stead_register(rt, &acls))
    _exit(2);
  for (int32_t i = 0;; i++) {
    char id[16], arg[64];
    snprintf(id, sizeof id, "o%d", i % AOBJ);
    snprintf(arg, sizeof arg, "r%d-%d %d", round, i, i % 40);
    void *r;
    size_t n;
    if (stead_call(rt, "al", id, "set", arg, strlen(arg), 10000, &r, &n) != 0)
      continue;
    stead_free(r);
    if (write(fd, &i, sizeof i) != sizeof i)
      _exit(3);
  }
}

static void test_kill9_during_alarms_loses_none(void **state) {
  char dir[] = "/tmp/stead-crash-alarm-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char spec[128];
  snprintf(spec, sizeof spec, "sqlite:%s/stead.db", dir);
  const char *env = getenv("STEAD_CRASH_ROUNDS");
  int rounds = env ? atoi(env) / 5 : 10;
  if (rounds < 2)
    rounds = 2;
  long checked = 0;
  for (int round = 0; round < rounds; round++) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      run_alarm_child(spec, fds[1], round);
    }
    close(fds[1]);
    test_sleep_ms(40 + rand() % 80); /* alarms are setting and firing */
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    int32_t i, acked = -1;
    while (read(fds[0], &i, sizeof i) == sizeof i)
      acked = i > acked ? i : acked;
    close(fds[0]);
    /* Restart; every acknowledged alarm must fire (again, if it was mid
     * flight): all are due within 40 ms of being set. */
    stead_config cfg;
    stead_config_init(&cfg);
    cfg.storage = spec;
    cfg.alarm_manual = 1;
    stead_rt *rt;
    assert_rc(stead_open(&cfg, &rt), 0);
    assert_rc(stead_register(rt, &acls), 0);
    test_sleep_ms(50);
    assert_true(stead_alarms_fire_due(rt) >= 0);
    for (int32_t k = 0; k <= acked; k++) {
      char id[16], name[64];
      snprintf(id, sizeof id, "o%d", k % AOBJ);
      snprintf(name, sizeof name, "r%d-%d", round, k);
      void *r;
      size_t n;
      assert_rc(stead_call(rt, "al", id, "fired", name, strlen(name), 10000, &r, &n), 0);
      if (atol(r) < 1)
        fail_msg("round %d: acknowledged alarm %s of %s never fired", round, name, id);
      stead_free(r);
      checked++;
    }
    for (int o = 0; o < AOBJ; o++) {
      char id[16];
      snprintf(id, sizeof id, "o%d", o);
      stead_alarm_info *p;
      size_t n;
      assert_rc(stead_alarms_pending(rt, "al", id, &p, &n), 0);
      if (n)
        fail_msg("round %d: %s still has %zu alarms pending", round, id, n);
      stead_free(p);
    }
    stead_close(rt);
  }
  printf("alarm crash test: %ld acknowledged alarms fired after %d kills\n", checked,
         rounds);
  assert_true(checked > 0);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kill9_loses_no_ack),
      cmocka_unit_test(test_kill9_during_alarms_loses_none)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
