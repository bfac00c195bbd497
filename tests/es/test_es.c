/*
 * Event-sourced objects through the runtime: replay equivalence for random
 * message sequences, snapshots every N and pruning (counted in the
 * backend), rejected messages not journaled, commands run only after the
 * commit (a failed commit runs none and rebuilds the model), corrupt
 * records failing only their object with ECORRUPT, restart and kill -9
 * with real SQLite files, registration errors, and the account example.
 */
#include "core/core.h"
#include "loop/es_object.h"
#include "storage/failbe.h"
#include "testutil.h"

#include "examples.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a test program: "ledger" ------------------------------------------
 * Model: a running value changed by add / mul / xor (so message order
 * matters), a count, and acks from commands. "sub" n is rejected when the
 * value would go below zero (after changing the model, to check that a
 * rejected update's changes are rolled back by a rebuild). "notify"
 * emits a command "ping"; run counts it and dispatches "ack". "dump"
 * (query) replies the encoded model. */

typedef struct ledger {
  int64_t value;
  uint64_t count;
  uint64_t acks;
} ledger;

static atomic_int g_runs; /* commands run, across the test */

static int l_update(void *model, const void *msg, size_t len, stead_cmds *cmds, void *u) {
  ledger *l = model;
  const char *m;
  const void *arg;
  size_t alen;
  if (stead_es_split(msg, len, &m, &arg, &alen))
    return stead_es_reject(cmds, "bad message");
  char buf[32] = {0};
  if (alen)
    memcpy(buf, arg, alen < 31 ? alen : 31);
  int64_t n = atoll(buf);
  if (strcmp(m, "dump") == 0)
    return stead_es_reply(cmds, l, sizeof *l);
  if (strcmp(m, "add") == 0)
    l->value += n;
  else if (strcmp(m, "mul") == 0)
    l->value = (l->value * n) % 1000003;
  else if (strcmp(m, "xor") == 0)
    l->value ^= n;
  else if (strcmp(m, "sub") == 0) {
    l->value -= n; /* changed first, rejected after: the rebuild undoes it */
    if (l->value < 0)
      return stead_es_reject(cmds, "below zero: %lld", (long long)l->value);
  } else if (strcmp(m, "notify") == 0) {
    int rc = stead_cmd(cmds, "ping", 4);
    if (rc)
      return rc;
  } else if (strcmp(m, "ack") == 0)
    l->acks++;
  else
    return stead_es_reject(cmds, "unknown method %s", m);
  l->count++;
  char out[32];
  int k = snprintf(out, sizeof out, "%lld", (long long)l->value);
  return stead_es_reply(cmds, out, (size_t)k);
}

static int l_run(const void *cmd, size_t len, stead_dispatcher *d, void *u) {
  atomic_fetch_add(&g_runs, 1);
  return stead_es_dispatch(d, "ack", NULL, 0);
}

static int l_encode(const void *model, void **data, size_t *len, void *u) {
  *data = malloc(sizeof(ledger));
  if (!*data)
    return STEAD_ENOMEM;
  memcpy(*data, model, sizeof(ledger));
  *len = sizeof(ledger);
  return 0;
}

static int l_decode(void *model, const void *data, size_t len, void *u) {
  if (len != sizeof(ledger))
    return -1;
  memcpy(model, data, len);
  return 0;
}

static int l_init(void *model, stead_cmds *cmds, void *u) {
  ((ledger *)model)->value = 1;
  return stead_cmd(cmds, "init-command-never-runs", 23);
}

static const char *const l_methods[] = {"add",    "mul", "xor", "sub",
                                        "notify", "ack", NULL};
static const char *const l_queries[] = {"dump", NULL};

static stead_es_class ledger_class(uint32_t every, uint32_t keep) {
  return (stead_es_class){
      .name = "ledger",
      .program = {.init = l_init,
                  .update = l_update,
                  .run = l_run,
                  .encode = l_encode,
                  .decode = l_decode},
      .methods = l_methods,
      .queries = l_queries,
      .model_size = sizeof(ledger),
      .model_version = 3,
      .snapshot_every = every,
      .keep_snapshots = keep,
  };
}

/* The class must outlive the runtime: one per test, static. */
static stead_es_class g_cls;

static stead_rt *open_rt(const char *storage, uint32_t every, uint32_t keep) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = storage;
  stead_rt *rt = NULL;
  assert_rc(stead_open(&cfg, &rt), 0);
  g_cls = ledger_class(every, keep);
  assert_rc(stead_register_program(rt, &g_cls), 0);
  assert_rc(stead_register_program(rt, &stead_example_account), 0);
  return rt;
}

static int lcall(stead_rt *rt, const char *id, const char *m, const char *arg) {
  return stead_call(rt, "ledger", id, m, arg, arg ? strlen(arg) : 0, 10000, NULL, NULL);
}

static ledger dump(stead_rt *rt, const char *id) {
  void *r = NULL;
  size_t n = 0;
  assert_rc(stead_call(rt, "ledger", id, "dump", NULL, 0, 10000, &r, &n), 0);
  assert_int_equal(n, sizeof(ledger));
  ledger l;
  memcpy(&l, r, sizeof l);
  stead_free(r);
  return l;
}

static void assert_ledger_eq(ledger a, ledger b) {
  assert_int_equal(a.value, b.value);
  assert_int_equal(a.count, b.count);
  assert_int_equal(a.acks, b.acks);
}

/* Keys of one namespace of an object, straight from the backend. */
typedef struct keys {
  size_t n;
  uint64_t first, last;
} keys;

static int count_cb(void *u, const void *key, size_t klen, const void *val, size_t vlen) {
  keys *k = u;
  assert_int_equal(klen, 8);
  uint64_t s = stead__es_get64(key);
  if (k->n++ == 0)
    k->first = s;
  k->last = s;
  return 0;
}

static keys backend_keys(stead_rt *rt, const char *cls, const char *id, uint8_t ns) {
  assert_rc(stead_run_until_idle(rt), 0);
  stead__backend *b = stead__rt_backend(rt);
  stead__range r;
  memset(&r, 0, sizeof r);
  keys k = {0};
  assert_rc(b->vt->list(b, cls, id, ns, &r, count_cb, &k), 0);
  return k;
}

/* Writes one raw record into an object's storage (the object must not be
 * active, so no cache hides it). */
static void backend_put(stead_rt *rt, const char *cls, const char *id, uint8_t ns,
                        uint64_t seq, const void *val, size_t vlen) {
  stead__backend *b = stead__rt_backend(rt);
  stead__wset *ws = stead__wset_new(cls, id);
  uint8_t key[8];
  stead__es_be64(key, seq);
  assert_rc(stead__wset_put(ws, ns, key, 8, val, vlen), 0);
  assert_rc(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
}

/* ---- tests ------------------------------------------------------------ */

static void test_replay_equivalence_random(void **state) {
  static const uint32_t every[] = {1, 3, 7, 100000};
  static const char *const ops[] = {"add", "mul", "xor", "sub", "notify"};
  for (size_t e = 0; e < sizeof every / sizeof every[0]; e++) {
    stead_rt *rt = open_rt("memory", every[e], 2);
    srand(42 + (unsigned)e);
    for (int obj = 0; obj < 3; obj++) {
      char id[16];
      snprintf(id, sizeof id, "r%d", obj);
      for (int i = 0; i < 120; i++) {
        const char *op = ops[rand() % 5];
        char arg[16];
        snprintf(arg, sizeof arg, "%d", rand() % 50 + 1);
        int rc = lcall(rt, id, op, arg);
        assert_true(rc == 0 || (rc == STEAD_EHANDLER && strcmp(op, "sub") == 0));
        if (i % 40 == 39) { /* rebuild mid-sequence too */
          assert_rc(stead_run_until_idle(rt), 0);
          ledger live = dump(rt, id);
          assert_rc(stead_deactivate(rt, "ledger", id), 0);
          assert_int_equal(stead_is_active(rt, "ledger", id), 0);
          assert_ledger_eq(dump(rt, id), live);
        }
      }
      assert_rc(stead_run_until_idle(rt), 0);
      ledger live = dump(rt, id);
      assert_true(live.acks > 0);
      assert_rc(stead_deactivate(rt, "ledger", id), 0);
      assert_ledger_eq(dump(rt, id), live);
    }
    stead_es_stats st;
    assert_rc(stead_es_get_stats(rt, "ledger", &st), 0);
    assert_true(st.replayed > 0 || every[e] == 1);
    assert_true(st.commands_run > 0);
    assert_int_equal(st.commands_dropped, 0);
    stead_close(rt);
  }
}

static void test_snapshot_every_n_and_pruning(void **state) {
  stead_rt *rt = open_rt("memory", 10, 2);
  for (int i = 1; i <= 35; i++)
    assert_rc(lcall(rt, "p", "add", "1"), 0);
  /* snapshots at 10, 20, 30; keep 20 and 30; journal after 20 */
  keys s = backend_keys(rt, "ledger", "p", STEAD__NS_SNAPSHOT);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.first, 20);
  assert_int_equal(s.last, 30);
  keys j = backend_keys(rt, "ledger", "p", STEAD__NS_JOURNAL);
  assert_int_equal(j.n, 15);
  assert_int_equal(j.first, 21);
  assert_int_equal(j.last, 35);
  /* activation = snapshot 30 + 5 replayed */
  stead_es_stats st0, st1;
  assert_rc(stead_es_get_stats(rt, "ledger", &st0), 0);
  assert_int_equal(st0.snapshots, 3);
  assert_rc(stead_deactivate(rt, "ledger", "p"), 0);
  assert_int_equal(dump(rt, "p").value, 36);
  assert_rc(stead_es_get_stats(rt, "ledger", &st1), 0);
  assert_int_equal(st1.replayed - st0.replayed, 5);
  /* pruning continues from the reloaded state */
  for (int i = 0; i < 10; i++)
    assert_rc(lcall(rt, "p", "add", "1"), 0);
  s = backend_keys(rt, "ledger", "p", STEAD__NS_SNAPSHOT);
  assert_int_equal(s.first, 30);
  assert_int_equal(s.last, 40);
  j = backend_keys(rt, "ledger", "p", STEAD__NS_JOURNAL);
  assert_int_equal(j.first, 31);
  assert_int_equal(j.last, 45);
  stead_close(rt);
  /* keep 1: the journal holds only what follows the one snapshot */
  rt = open_rt("memory", 10, 1);
  for (int i = 1; i <= 25; i++)
    assert_rc(lcall(rt, "q", "add", "1"), 0);
  s = backend_keys(rt, "ledger", "q", STEAD__NS_SNAPSHOT);
  assert_int_equal(s.n, 1);
  assert_int_equal(s.first, 20);
  j = backend_keys(rt, "ledger", "q", STEAD__NS_JOURNAL);
  assert_int_equal(j.n, 5);
  assert_int_equal(j.first, 21);
  stead_close(rt);
}

static void test_rejected_not_journaled(void **state) {
  stead_rt *rt = open_rt("memory", 1000, 2);
  assert_rc(lcall(rt, "x", "add", "5"), 0); /* value 1 + 5 */
  assert_rc(lcall(rt, "x", "sub", "100"), STEAD_EHANDLER);
  assert_string_equal(stead_errmsg(), "below zero: -94");
  assert_rc(lcall(rt, "x", "nosuch", NULL), STEAD_ENOMETHOD);
  keys j = backend_keys(rt, "ledger", "x", STEAD__NS_JOURNAL);
  assert_int_equal(j.n, 1);
  /* the rejected update had changed the model: rebuilt before the next turn */
  ledger l = dump(rt, "x");
  assert_int_equal(l.value, 6);
  assert_int_equal(l.count, 1);
  stead_es_stats st;
  assert_rc(stead_es_get_stats(rt, "ledger", &st), 0);
  assert_int_equal(st.rejected, 1);
  assert_int_equal(st.rebuilds, 1);
  assert_int_equal(st.journaled, 1);
  /* init's command never ran */
  assert_int_equal(st.commands_run, 0);
  stead_close(rt);
}

static void test_commands_only_after_commit(void **state) {
  atomic_store(&g_runs, 0);
  stead_rt *rt = open_rt("fail+memory", 1000, 2);
  stead__backend *be = stead__rt_backend(rt);
  assert_rc(lcall(rt, "c", "add", "1"), 0);
  stead__failbe_fail_next(be, 1);
  assert_rc(lcall(rt, "c", "notify", NULL), STEAD_ESTORAGE);
  assert_rc(stead_run_until_idle(rt), 0);
  assert_int_equal(atomic_load(&g_runs), 0);
  ledger l = dump(rt, "c");
  assert_int_equal(l.count, 1); /* the failed notify is gone from the model */
  assert_int_equal(l.acks, 0);
  keys j = backend_keys(rt, "ledger", "c", STEAD__NS_JOURNAL);
  assert_int_equal(j.n, 1);
  /* the same message with a working disk: command, then its ack message */
  assert_rc(lcall(rt, "c", "notify", NULL), 0);
  assert_rc(stead_run_until_idle(rt), 0);
  assert_int_equal(atomic_load(&g_runs), 1);
  l = dump(rt, "c");
  assert_int_equal(l.acks, 1);
  assert_int_equal(l.count, 3);
  j = backend_keys(rt, "ledger", "c", STEAD__NS_JOURNAL);
  assert_int_equal(j.n, 3); /* add, notify, ack */
  /* replay does not run the command again */
  assert_rc(stead_deactivate(rt, "ledger", "c"), 0);
  assert_ledger_eq(dump(rt, "c"), l);
  assert_rc(stead_run_until_idle(rt), 0);
  assert_int_equal(atomic_load(&g_runs), 1);
  stead_close(rt);
}

static void test_corrupt_records_fail_only_their_object(void **state) {
  stead_rt *rt = open_rt("memory", 5, 2);
  for (int i = 0; i < 7; i++) {
    assert_rc(lcall(rt, "bad", "add", "1"), 0);
    assert_rc(lcall(rt, "good", "add", "1"), 0);
    assert_rc(lcall(rt, "j", "add", "1"), 0);
    assert_rc(lcall(rt, "v", "add", "1"), 0);
  }
  assert_rc(stead_run_until_idle(rt), 0);
  assert_rc(stead_deactivate(rt, "ledger", "bad"), 0);
  assert_rc(stead_deactivate(rt, "ledger", "j"), 0);
  assert_rc(stead_deactivate(rt, "ledger", "v"), 0);
  /* a snapshot decode refuses */
  const uint8_t junk[] = {STEAD__ES_REC_SNAPSHOT, 0, 0, 0, 3, 'x'};
  backend_put(rt, "ledger", "bad", STEAD__NS_SNAPSHOT, 5, junk, sizeof junk);
  assert_rc(lcall(rt, "bad", "add", "1"), STEAD_ECORRUPT);
  assert_non_null(strstr(stead_errmsg(), "snapshot 5"));
  assert_rc(stead_run_until_idle(rt), 0);
  assert_int_equal(stead_is_active(rt, "ledger", "bad"), 0);
  /* a journal record of an unknown format */
  const uint8_t rec[] = {9, 'a', 'd', 'd', 0, '1'};
  backend_put(rt, "ledger", "j", STEAD__NS_JOURNAL, 6, rec, sizeof rec);
  assert_rc(lcall(rt, "j", "dump", NULL), STEAD_ECORRUPT);
  assert_non_null(strstr(stead_errmsg(), "journal entry 6"));
  /* a snapshot from a newer model version */
  uint8_t newer[5 + sizeof(ledger)] = {STEAD__ES_REC_SNAPSHOT, 0, 0, 0, 4};
  backend_put(rt, "ledger", "v", STEAD__NS_SNAPSHOT, 5, newer, sizeof newer);
  assert_rc(lcall(rt, "v", "dump", NULL), STEAD_ECORRUPT);
  assert_non_null(strstr(stead_errmsg(), "model version 4"));
  /* the others are fine */
  assert_int_equal(dump(rt, "good").value, 8);
  assert_rc(lcall(rt, "good", "add", "1"), 0);
  /* repairing the record makes the object whole again */
  const uint8_t ok[] = {STEAD__ES_REC_JOURNAL, 'a', 'd', 'd', 0, '1'};
  backend_put(rt, "ledger", "j", STEAD__NS_JOURNAL, 6, ok, sizeof ok);
  assert_int_equal(dump(rt, "j").value, 8);
  stead_close(rt);
}

static void tmp_db(char *path, size_t n) {
  char dir[] = "/tmp/stead-es-XXXXXX";
  assert_non_null(mkdtemp(dir));
  snprintf(path, n, "sqlite:%s/db.sqlite", dir);
}

static void test_sqlite_restart(void **state) {
  char spec[300];
  tmp_db(spec, sizeof spec);
  stead_rt *rt = open_rt(spec, 4, 2);
  srand(7);
  ledger before[4];
  for (int obj = 0; obj < 4; obj++) {
    char id[8];
    snprintf(id, sizeof id, "s%d", obj);
    for (int i = 0; i < 30 + obj; i++) {
      char arg[8];
      snprintf(arg, sizeof arg, "%d", rand() % 9 + 1);
      assert_rc(lcall(rt, id, (i % 3) ? "add" : "mul", arg), 0);
    }
    assert_rc(lcall(rt, id, "notify", NULL), 0);
  }
  assert_rc(lcall(rt, "acct", "add", "1"), 0);
  assert_rc(stead_run_until_idle(rt), 0);
  for (int obj = 0; obj < 4; obj++) {
    char id[8];
    snprintf(id, sizeof id, "s%d", obj);
    before[obj] = dump(rt, id);
  }
  stead_close(rt);
  rt = open_rt(spec, 4, 2);
  for (int obj = 0; obj < 4; obj++) {
    char id[8];
    snprintf(id, sizeof id, "s%d", obj);
    assert_ledger_eq(dump(rt, id), before[obj]);
  }
  stead_close(rt);
}

/* kill -9 in the middle of a stream of messages: after restart the object
 * holds a prefix of the stream that includes every acknowledged message
 * (and at most the one in flight), never half a turn. */
static void test_sqlite_kill9(void **state) {
  char spec[300];
  tmp_db(spec, sizeof spec);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    stead_config cfg;
    stead_config_init(&cfg);
    cfg.workers = 2;
    cfg.storage = spec;
    stead_rt *rt = NULL;
    stead_es_class c = ledger_class(7, 2);
    if (stead_open(&cfg, &rt) || stead_register_program(rt, &c))
      _exit(2);
    for (uint32_t i = 1;; i++) {
      char arg[16];
      snprintf(arg, sizeof arg, "%u", i);
      if (stead_call(rt, "ledger", "k", "add", arg, strlen(arg), 10000, NULL, NULL))
        _exit(3);
      if (write(fds[1], &i, sizeof i) != sizeof i)
        _exit(4);
    }
  }
  close(fds[1]);
  uint32_t acked = 0, v;
  while (acked < 60 && read(fds[0], &v, sizeof v) == sizeof v)
    acked = v;
  kill(pid, SIGKILL);
  while (read(fds[0], &v, sizeof v) == sizeof v)
    acked = v;
  int status;
  waitpid(pid, &status, 0);
  close(fds[0]);
  assert_true(WIFSIGNALED(status));
  assert_true(acked >= 60);
  stead_rt *rt = open_rt(spec, 7, 2);
  ledger l = dump(rt, "k");
  /* value = 1 + 1 + 2 + ... + count */
  assert_true(l.count == acked || l.count == acked + 1);
  assert_int_equal(l.value, 1 + (int64_t)(l.count * (l.count + 1) / 2));
  stead_close(rt);
}

static int reg_bad(stead_rt *rt, stead_es_class c) {
  static stead_es_class keep[8];
  static int n;
  keep[n % 8] = c;
  return stead_register_program(rt, &keep[n++ % 8]);
}

static int plain_x(stead_ctx *ctx, const void *arg, size_t len) {
  return 0;
}

static void test_registration_errors(void **state) {
  stead_rt *rt = open_rt("memory", 0, 0);
  stead_es_class c = ledger_class(0, 0);
  assert_rc(stead_register_program(rt, NULL), STEAD_EINVAL);
  assert_rc(stead_register_program(NULL, &c), STEAD_EINVAL);
  assert_rc(reg_bad(rt, c), STEAD_EEXIST); /* "ledger" is taken */
  c.name = "bad name";
  assert_rc(reg_bad(rt, c), STEAD_EINVAL);
  c = ledger_class(0, 0);
  c.name = "l2";
  c.program.encode = NULL;
  assert_rc(reg_bad(rt, c), STEAD_EINVAL);
  c = ledger_class(0, 0);
  c.name = "l3";
  c.model_size = 0;
  assert_rc(reg_bad(rt, c), STEAD_EINVAL);
  static const char *const none[] = {NULL};
  c = ledger_class(0, 0);
  c.name = "l4";
  c.methods = none;
  assert_rc(reg_bad(rt, c), STEAD_EINVAL);
  static const char *const dup[] = {"a", "a", NULL};
  c = ledger_class(0, 0);
  c.name = "l5";
  c.methods = dup;
  assert_rc(reg_bad(rt, c), STEAD_EINVAL);
  assert_int_equal(stead_is_active(rt, "l5", "x"), STEAD_ENOCLASS);
  /* a plain class holds the name */
  static const stead_method m[] = {{"x", plain_x}, {NULL, NULL}};
  static const stead_class plain = {.name = "plain", .methods = m};
  assert_rc(stead_register(rt, &plain), 0);
  c = ledger_class(0, 0);
  c.name = "plain";
  assert_rc(reg_bad(rt, c), STEAD_EEXIST);
  stead_es_stats st;
  assert_rc(stead_es_get_stats(rt, "plain", &st), STEAD_ENOCLASS);
  /* defaults: N = 100 */
  for (int i = 0; i < 100; i++)
    assert_rc(lcall(rt, "d", "add", "1"), 0);
  assert_int_equal(backend_keys(rt, "ledger", "d", STEAD__NS_SNAPSHOT).n, 1);
  stead_close(rt);
}

static void test_helpers_outside(void **state) {
  const char *m;
  const void *p;
  size_t n;
  assert_rc(stead_es_split("abc", 3, &m, &p, &n), STEAD_EINVAL);
  assert_rc(stead_es_split("ab\0cd", 5, &m, &p, &n), 0);
  assert_string_equal(m, "ab");
  assert_int_equal(n, 2);
  assert_memory_equal(p, "cd", 2);
  assert_rc(stead_es_split("ab", 3, &m, &p, &n), 0);
  assert_null(p);
  assert_int_equal(n, 0);
  assert_rc(stead_es_reply(NULL, "x", 1), STEAD_EINVAL);
  assert_rc(stead_es_reject(NULL, "x"), STEAD_EHANDLER);
  assert_rc(stead_es_dispatch(NULL, "m", NULL, 0), STEAD_EINVAL);
}

/* ---- the account example ------------------------------------------------ */

static int acall(stead_rt *rt, const char *id, const char *m, const char *arg,
                 char **reply) {
  size_t n;
  return stead_call(rt, "account", id, m, arg, arg ? strlen(arg) : 0, 10000,
                    (void **)reply, &n);
}

static void expect_reply(stead_rt *rt, const char *id, const char *m, const char *arg,
                         const char *want) {
  char *r = NULL;
  assert_rc(acall(rt, id, m, arg, &r), 0);
  assert_string_equal(r, want);
  stead_free(r);
}

static void test_account(void **state) {
  char spec[300];
  tmp_db(spec, sizeof spec);
  stead_rt *rt = open_rt(spec, 0, 0);
  expect_reply(rt, "alice", "balance", NULL, "0");
  expect_reply(rt, "alice", "deposit", "50", "50");
  expect_reply(rt, "alice", "withdraw", " 20 ", "30");
  assert_rc(acall(rt, "alice", "withdraw", "50", NULL), STEAD_EHANDLER);
  assert_string_equal(stead_errmsg(), "insufficient funds: balance 30, withdraw 50");
  assert_rc(acall(rt, "alice", "deposit", "0", NULL), STEAD_EHANDLER);
  assert_rc(acall(rt, "alice", "deposit", "-5", NULL), STEAD_EHANDLER);
  assert_rc(acall(rt, "alice", "deposit", "1.5", NULL), STEAD_EHANDLER);
  assert_rc(acall(rt, "alice", "deposit", "\"7\"", NULL), STEAD_EHANDLER);
  assert_rc(acall(rt, "alice", "deposit", NULL, NULL), STEAD_EHANDLER);
  assert_rc(acall(rt, "alice", "deposit", "99999999999999999999", NULL), STEAD_EHANDLER);
  assert_rc(acall(rt, "alice", "deposit", "9223372036854775807", NULL), STEAD_EHANDLER);
  assert_non_null(strstr(stead_errmsg(), "overflow"));
  expect_reply(rt, "alice", "balance", NULL, "30");
  expect_reply(rt, "alice", "history", NULL,
               "[{\"op\":\"deposit\",\"amount\":50,\"balance\":50},"
               "{\"op\":\"withdraw\",\"amount\":20,\"balance\":30}]");
  keys j = backend_keys(rt, "account", "alice", STEAD__NS_JOURNAL);
  assert_int_equal(j.n, 2);
  /* 150 more: snapshots at 100; history keeps the last 16 */
  for (int i = 1; i <= 150; i++) {
    char want[16];
    snprintf(want, sizeof want, "%d", 2 * i);
    expect_reply(rt, "bob", "deposit", "2", want);
  }
  stead_close(rt);
  rt = open_rt(spec, 0, 0);
  expect_reply(rt, "alice", "balance", NULL, "30");
  expect_reply(rt, "bob", "balance", NULL, "300");
  char *h = NULL;
  assert_rc(acall(rt, "bob", "history", NULL, &h), 0);
  int entries = 0;
  for (char *p = h; (p = strstr(p, "\"op\"")) != NULL; p++)
    entries++;
  assert_int_equal(entries, 16);
  assert_non_null(strstr(h, "\"balance\":300}]"));
  stead_free(h);
  assert_int_equal(backend_keys(rt, "account", "bob", STEAD__NS_SNAPSHOT).n, 1);
  stead_close(rt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_replay_equivalence_random),
      cmocka_unit_test(test_snapshot_every_n_and_pruning),
      cmocka_unit_test(test_rejected_not_journaled),
      cmocka_unit_test(test_commands_only_after_commit),
      cmocka_unit_test(test_corrupt_records_fail_only_their_object),
      cmocka_unit_test(test_sqlite_restart),
      cmocka_unit_test(test_sqlite_kill9),
      cmocka_unit_test(test_registration_errors),
      cmocka_unit_test(test_helpers_outside),
      cmocka_unit_test(test_account),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
