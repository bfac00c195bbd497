/*
 * test_procs.c -- stead cluster nodes as separate `stead serve` processes
 * over a private nats-server and PostgreSQL, driven over HTTP (issue #9's
 * multi-process tests).
 *
 *   exact:    3 nodes, 10,000 counters incremented through random nodes and
 *             read back: every count exact, ownership = HRW partition
 *   kill:     kill -9 a node under load: its shards move, no acknowledged
 *             increment lost, every answer is success or retryable
 *   pause:    SIGSTOP a node past its lease, takeover, SIGCONT: fencing
 *             (no acknowledged increment lost or handed out twice)
 *   roll:     a 4th node joins under load, then every node restarts
 *             (SIGTERM drains) under load
 *   garbage:  malformed envelopes and unknown subjects on the deployment's
 *             NATS subjects: the nodes keep serving and count them
 *   ws:       WebSockets to one chat room on two nodes: posts from either
 *             reach both sockets, in order
 *
 * Every test has its own deployment and table prefix on the shared servers.
 * Accounting: an increment answered 200 is acknowledged; 504, 503 ECLOSED
 * or ESTORAGE, or a connection lost mid-request are ambiguous (it may have
 * run); 429 and 503 ENOTOWNER mean it did not run. The final count of each
 * counter must lie in [acked, acked + ambiguous], and the counts handed out
 * by acknowledged increments must be distinct.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/envelope.h"
#include "cluster/nats.h"
#include "cluster/natsrv.h"
#include "procs.h"
#include "server/wsclient.h"
#include "stead.h"
#include "storage/pg_helper.h"
#include "util/util.h"

static natsrv nats;
static int have_servers;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int group_setup(void **state) {
  curl_global_init(CURL_GLOBAL_ALL);
  int rc = pgh_start(0);
  if (rc != 0)
    return rc < 0 ? -1 : 0; /* 1: no PostgreSQL here; tests skip */
  if (natsrv_start(&nats) != 0)
    return -1;
  printf("  servers: %s, %s\n", pgh_server.uri, nats.url);
  fflush(stdout);
  have_servers = 1;
  return 0;
}

static int group_teardown(void **state) {
  natsrv_stop(&nats);
  pgh_stop();
  curl_global_cleanup();
  return 0;
}

#define NEED_SERVERS()                                                                   \
  do {                                                                                   \
    if (!have_servers)                                                                   \
      skip();                                                                            \
  } while (0)

/* Starts nodes 0..n-1 and waits for them to agree. */
static void start_cluster(pcluster *c, const char *name, int shards, int n) {
  pc_init(c, nats.url, pgh_server.uri, name, shards);
  for (int i = 0; i < n; i++)
    assert_int_equal(pc_start(c, i), 0);
  char why[256] = "";
  if (pc_wait_settled(c, 20000, why, sizeof why) != 0) {
    pc_stop_all(c);
    fail_msg("%d nodes did not settle: %s", n, why);
  }
}

static void settle_or_fail(pcluster *c, pload *l, int timeout_ms, const char *when) {
  char why[256] = "";
  int64_t t0 = now_ms();
  if (pc_wait_settled(c, timeout_ms, why, sizeof why) != 0) {
    if (l)
      pl_stop(l);
    pc_dump(c);
    pc_stop_all(c);
    fail_msg("%s: not settled after %d ms: %s", when, timeout_ms, why);
  }
  printf("  %s: settled in %lld ms\n", when, (long long)(now_ms() - t0));
}

static void report_load(const pload *l, const char *what) {
  printf("  %s: %ld ok, %ld ambiguous, %ld not run, %ld bad\n", what, atomic_load(&l->ok),
         atomic_load(&l->maybe), atomic_load(&l->notrun), atomic_load(&l->bad));
}

/* Stops the load, checks there was no unexpected answer and every count. */
static void finish_load(pcluster *c, pload *l, const char *what) {
  pl_stop(l);
  report_load(l, what);
  pclient *h = pclient_new();
  int violations = pl_verify(l, h);
  pclient_free(h);
  char first_bad[512];
  snprintf(first_bad, sizeof first_bad, "%s",
           l->first_bad[0] ? l->first_bad : l->first_eio);
  /* no nats-server restarts here: a publish failure is unexpected too */
  long bad = atomic_load(&l->bad) + atomic_load(&l->eio), ok = atomic_load(&l->ok);
  pl_free(l);
  if (bad || violations || ok == 0) {
    pc_stop_all(c);
    fail_msg("%s: %ld unexpected answers (first: %s), %d count violations, %ld ok", what,
             bad, first_bad, violations, ok);
  }
}

/* ---- (a) exact counts through random nodes ---- */

#define EXACT_OBJECTS 10000
#define EXACT_THREADS 8

typedef struct exact_arg {
  pcluster *c;
  int from, to;
  const char *method;
  long failures;
  char first[600];
} exact_arg;

static void *exact_worker(void *p) {
  exact_arg *a = p;
  pclient *h = pclient_new();
  unsigned seed = (unsigned)a->from + 17;
  for (int k = a->from; k < a->to; k++) {
    char id[32], detail[400];
    snprintf(id, sizeof id, "x-%d", k);
    long long v = -1;
    int i = pc_pick(a->c, &seed);
    outcome o =
        pc_counter_call(h, a->c, i, id, a->method, 10000, &v, detail, sizeof detail);
    /* each counter is incremented once, so both calls answer 1 */
    if (o != OUT_OK || v != 1) {
      if (!a->failures++)
        snprintf(a->first, sizeof a->first, "%s (value %lld)", detail, v);
    }
  }
  pclient_free(h);
  return NULL;
}

static void run_exact(pcluster *c, const char *method) {
  pthread_t th[EXACT_THREADS];
  exact_arg args[EXACT_THREADS];
  int64_t t0 = now_ms();
  for (int t = 0; t < EXACT_THREADS; t++) {
    args[t] = (exact_arg){c,
                          EXACT_OBJECTS * t / EXACT_THREADS,
                          EXACT_OBJECTS * (t + 1) / EXACT_THREADS,
                          method,
                          0,
                          ""};
    pthread_create(&th[t], NULL, exact_worker, &args[t]);
  }
  long failures = 0;
  const char *first = NULL;
  for (int t = 0; t < EXACT_THREADS; t++) {
    pthread_join(th[t], NULL);
    failures += args[t].failures;
    if (args[t].failures && !first)
      first = args[t].first;
  }
  printf("  %d x %s through random nodes: %lld ms\n", EXACT_OBJECTS, method,
         (long long)(now_ms() - t0));
  if (failures) {
    pc_stop_all(c);
    fail_msg("%ld of %d %s calls failed or answered != 1; first: %s", failures,
             EXACT_OBJECTS, method, first);
  }
}

static void test_exact(void **state) {
  NEED_SERVERS();
  pcluster c;
  start_cluster(&c, "t_exact", 64, 3);
  run_exact(&c, "increment");
  run_exact(&c, "get");
  /* two thirds of the calls entered at a node that does not own the
   * object: every node forwarded some */
  for (int i = 0; i < 3; i++) {
    void *st = pc_status(&c, i);
    assert_non_null(st);
    long long fwd = pc_counter(st, "forwarded");
    printf("  %s: forwarded %lld\n", c.nodes[i].id, fwd);
    pc_json_free(st);
    assert_true(fwd > 0);
  }
  /* ownership did not move during the run */
  settle_or_fail(&c, NULL, 1000, "after the run");
  pc_stop_all(&c);
}

/* ---- (b) kill -9 under load ---- */

static void test_kill(void **state) {
  NEED_SERVERS();
  pcluster c;
  start_cluster(&c, "t_kill", 64, 3);
  pload l;
  pl_start(&l, &c, "k", 200, 6, 3000);
  sleep_ms(1500);
  long before = atomic_load(&l.ok);
  pc_kill(&c, 2);
  int64_t t0 = now_ms();
  settle_or_fail(&c, &l, 15000, "2 survivors own every shard");
  printf("  ownership settled %lld ms after kill -9\n", (long long)(now_ms() - t0));
  long at_settle = atomic_load(&l.ok);
  sleep_ms(1500);
  long after = atomic_load(&l.ok);
  assert_true(before > 0);
  assert_true(after > at_settle); /* the survivors serve every object again */
  finish_load(&c, &l, "kill");
  pc_stop_all(&c);
}

/* ---- (c) SIGSTOP past the lease, takeover, SIGCONT ---- */

static void test_pause(void **state) {
  NEED_SERVERS();
  pcluster c;
  start_cluster(&c, "t_pause", 64, 3);
  void *st = pc_status(&c, 1);
  assert_non_null(st);
  unsigned long long old_epoch[64] = {0};
  for (unsigned s = 0; s < 64; s++)
    old_epoch[s] = pc_epoch(st, s);
  pc_json_free(st);

  pload l;
  pl_start(&l, &c, "p", 200, 6, 2000);
  sleep_ms(1000);
  atomic_store(&c.nodes[1].up, 0); /* the driver stops sending to it */
  kill(c.nodes[1].pid, SIGSTOP);
  settle_or_fail(&c, &l, 15000, "paused node's shards taken over");
  /* every shard the paused node held has a new tenure elsewhere */
  for (int i = 0; i < 3; i += 2) {
    void *s2 = pc_status(&c, i);
    assert_non_null(s2);
    for (unsigned s = 0; s < 64; s++)
      if (old_epoch[s] && pc_epoch(s2, s))
        assert_true(pc_epoch(s2, s) > old_epoch[s]);
    pc_json_free(s2);
  }
  sleep_ms(1000); /* the new owners commit while the old one sleeps */
  kill(c.nodes[1].pid, SIGCONT);
  atomic_store(&c.nodes[1].up, 1);
  settle_or_fail(&c, &l, 15000, "resumed node rejoined");
  st = pc_status(&c, 1);
  assert_non_null(st);
  long long lost = pc_counter(st, "lost");
  printf("  resumed node: lost %lld leases\n", lost);
  assert_true(lost > 0);
  for (unsigned s = 0; s < 64; s++)
    if (pc_epoch(st, s))
      assert_true(pc_epoch(st, s) > old_epoch[s]);
  pc_json_free(st);
  sleep_ms(1000);
  finish_load(&c, &l, "pause");
  pc_stop_all(&c);
}

/* ---- (d) join a 4th node, then a rolling restart, under load ---- */

static void test_roll(void **state) {
  NEED_SERVERS();
  pcluster c;
  start_cluster(&c, "t_roll", 64, 3);
  pload l;
  pl_start(&l, &c, "r", 200, 6, 3000);
  sleep_ms(800);
  if (pc_start(&c, 3) != 0) {
    pl_stop(&l);
    pc_stop_all(&c);
    fail_msg("the 4th node did not start");
  }
  settle_or_fail(&c, &l, 15000, "4th node joined");
  sleep_ms(500);
  for (int i = 0; i < 4; i++) {
    int code = pc_term(&c, i, 15000);
    if (code != 0) {
      pl_stop(&l);
      pc_stop_all(&c);
      fail_msg("node-%d exited %d after SIGTERM", i, code);
    }
    settle_or_fail(&c, &l, 15000, "node stopped");
    if (pc_start(&c, i) != 0) {
      pl_stop(&l);
      pc_stop_all(&c);
      fail_msg("node-%d did not restart", i);
    }
    settle_or_fail(&c, &l, 15000, "node restarted");
  }
  sleep_ms(500);
  finish_load(&c, &l, "roll");
  pc_stop_all(&c);
}

/* ---- (e) garbage on the deployment's subjects ---- */

/* Requests `data` on `subject` and returns the decoded status of the
 * answer (an error envelope), or 1 when there was none. */
static int garbage_request(natsConnection *nc, const char *subject, const void *data,
                           int len) {
  natsMsg *reply = NULL;
  if (natsConnection_Request(&reply, nc, subject, data, len, 2000) != NATS_OK)
    return 1;
  stead__env e;
  int rc = stead__env_decode(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply),
                             0, 0, &e);
  int status = rc < 0 ? rc : e.kind == STEAD__ENV_ERROR ? e.status : 0;
  if (rc == 0)
    stead__env_free(&e);
  natsMsg_Destroy(reply);
  return status;
}

static void test_garbage(void **state) {
  NEED_SERVERS();
  pcluster c;
  start_cluster(&c, "t_garbage", 16, 2);
  natsConnection *nc = NULL;
  assert_int_equal(natsConnection_ConnectTo(&nc, nats.url), NATS_OK);

  /* A valid envelope to mangle. */
  int shard = stead_shard_for_key("counter", "g", 16, NULL);
  assert_true(shard >= 0);
  stead__env e = {.kind = STEAD__ENV_REQUEST,
                  .shard = (uint32_t)shard,
                  .created_ms = stead__wall_ms(),
                  .cls = "counter",
                  .id = "g",
                  .method = "increment",
                  .payload = "1",
                  .payload_len = 1};
  stead__buf good = {0};
  assert_int_equal(stead__env_encode(&e, 0, 0, &good), 0);
  char subj[128];
  int sent = 0;
  unsigned seed = 7;
  for (int s = 0; s < 16; s++) {
    assert_int_equal(
        stead__nats_shard_subject(subj, sizeof subj, c.deployment, (uint32_t)s), 0);
    char junk[200];
    for (size_t k = 0; k < sizeof junk; k++)
      junk[k] = (char)rand_r(&seed);
    /* answered with EPROTO, and counted */
    assert_int_equal(garbage_request(nc, subj, junk, (int)sizeof junk), STEAD_EPROTO);
    assert_int_equal(garbage_request(nc, subj, good.data, (int)good.len / 2),
                     STEAD_EPROTO);
    assert_int_equal(garbage_request(nc, subj, "", 0), STEAD_EPROTO);
    natsConnection_Publish(nc, subj, junk, 17); /* one-way garbage: no reply */
    sent += 4;
  }
  /* an expired request is answered ETIMEDOUT and counted as expired */
  e.created_ms = stead__wall_ms() - 60000;
  e.ttl_ms = 1;
  stead__buf old = {0};
  assert_int_equal(stead__env_encode(&e, 0, 0, &old), 0);
  assert_int_equal(
      stead__nats_shard_subject(subj, sizeof subj, c.deployment, (uint32_t)shard), 0);
  assert_int_equal(garbage_request(nc, subj, old.data, (int)old.len), STEAD_ETIMEDOUT);
  stead__buf_free(&old);
  stead__buf_free(&good);

  /* Subjects no node serves, and junk where nodes listen for other things. */
  const char *other[] = {"shard.99999", "shard.x",     "shard",       "unknown.subject",
                         "members",     "node.node-0", "node.nobody", ">"};
  for (size_t k = 0; k < sizeof other / sizeof other[0]; k++) {
    snprintf(subj, sizeof subj, "%s.%s", c.deployment, other[k]);
    if (strcmp(other[k], ">") == 0)
      continue; /* not a publishable subject */
    natsConnection_PublishString(nc, subj, "stead1 H \xff\xfe garbage");
    natsConnection_PublishString(nc, subj, "stead1 L");
    natsConnection_Publish(nc, subj, "\0\0\0", 3);
  }
  natsConnection_Flush(nc);
  natsConnection_Destroy(nc);
  sleep_ms(300);

  long long malformed = 0;
  for (int i = 0; i < 2; i++) {
    void *st = pc_status(&c, i);
    assert_non_null(st);
    malformed += pc_counter(st, "malformed");
    pc_json_free(st);
  }
  printf("  malformed counted: %lld of %d sent to shard subjects\n", malformed, sent);
  assert_true(malformed >= sent);
  /* membership unchanged, and both nodes still serve */
  settle_or_fail(&c, NULL, 2000, "after garbage");
  pclient *h = pclient_new();
  for (int i = 0; i < 2; i++) {
    long long v = 0;
    char detail[512];
    outcome o =
        pc_counter_call(h, &c, i, "g", "increment", 5000, &v, detail, sizeof detail);
    if (o != OUT_OK)
      fail_msg("after garbage: %s", detail);
    assert_int_equal(v, i + 1);
  }
  pclient_free(h);
  pc_stop_all(&c);
}

/* ---- (f) WebSockets across nodes ---- */

static void ws_expect_text(wsc *c, const char *want) {
  char *m = NULL;
  size_t len = 0;
  int op;
  while ((op = wsc_recv(c, 10000, &m, &len)) == 9) /* the server's keepalive */
    free(m);
  if (op != 1 || !strstr(m, want))
    fail_msg("expected text with %s, got opcode %d: %s", want, op, m ? m : "");
  free(m);
}

static wsc *ws_open(pcluster *c, int node, const char *room, const char *user) {
  char path[256];
  snprintf(path, sizeof path, "/v1/objects/chatroom/%s/connect?meta=%s", room, user);
  wsc *w = NULL;
  int st = wsc_open(c->nodes[node].port, path, 0, &w);
  if (st != 101)
    fail_msg("WebSocket connect to %s on %s: HTTP %d", room, c->nodes[node].id, st);
  return w;
}

/* A chat room owned by node-0, one socket on each node: posts from either
 * reach both, in order (node-1's socket through node-0). */
static void test_ws(void **state) {
  NEED_SERVERS();
  pcluster c;
  start_cluster(&c, "t_ws", 64, 2);
  const char *ids[] = {"node-0", "node-1"};
  char room[32];
  for (int i = 0;; i++) {
    snprintf(room, sizeof room, "lobby%d", i);
    int s = stead_shard_for_key("chatroom", room, 64, NULL);
    if (stead_shard_owner((uint32_t)s, ids, 2, NULL) == 0)
      break;
  }
  wsc *ann = ws_open(&c, 0, room, "ann");
  wsc *bob = ws_open(&c, 1, room, "bob");
  const char *m = "{\"text\":\"hello\"}";
  assert_int_equal(wsc_send(ann, m, strlen(m), 0), 0);
  ws_expect_text(ann, "\"user\":\"ann\",\"text\":\"hello\"");
  ws_expect_text(bob, "\"user\":\"ann\",\"text\":\"hello\"");
  for (int i = 0; i < 50; i++) {
    char b[64];
    int n = snprintf(b, sizeof b, "{\"text\":\"b%d\"}", i);
    assert_int_equal(wsc_send(bob, b, (size_t)n, 0), 0);
  }
  for (int i = 0; i < 50; i++) {
    char want[32];
    snprintf(want, sizeof want, "\"text\":\"b%d\"", i);
    ws_expect_text(bob, want);
    ws_expect_text(ann, want);
  }
  wsc_free(bob);
  wsc_free(ann);
  pc_stop_all(&c);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const char *only = getenv("STEAD_TEST_FILTER"); /* e.g. test_kill, by hand */
  if (only && *only)
    cmocka_set_test_filter(only);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact),   cmocka_unit_test(test_kill),
      cmocka_unit_test(test_pause),   cmocka_unit_test(test_roll),
      cmocka_unit_test(test_garbage), cmocka_unit_test(test_ws),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
