/*
 * rtpath.c -- see rtpath.h. Four cluster nodes of one deployment: A and B
 * are runtimes in this process (each with its own NATS connection and
 * PostgreSQL backend, exactly as two processes would have), C and D are
 * forked child processes that exist only to be killed (C, SIGKILL) and
 * stopped (D, SIGTERM) for the settle times. The children are forked
 * before any thread exists, so they run a clean nats.c.
 *
 * The object class replies its argument without touching storage, so the
 * rows measure routing, the envelope, NATS and the turn: what forwarding
 * adds to a call, not PostgreSQL.
 */
#include "rtpath.h"

#include "stead.h"
#include "storage/pg_helper.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHARDS  256
#define TTL_MS  2000
#define BEAT_MS 200
#define NOBJ    1024
#define PAYLOAD "0123456789abcdef"
#define NODE_A  "bench-a"
#define NODE_B  "bench-b"
#define NODE_C  "bench-c"
#define NODE_D  "bench-d"

static const char *nats;
static char spec[400];
static pid_t child_c, child_d;
static stead_rt *rt_a, *rt_b;
static char ids[NOBJ][24]; /* objects owned by B */

static int64_t mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int echo(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_reply(ctx, arg, len);
}

static const stead_method methods[] = {{"echo", echo}, {NULL, NULL}};
static const stead_class becho = {.name = "becho", .methods = methods};

static int open_node(const char *id, stead_rt **out) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.storage = spec;
  cfg.cluster_nats = nats;
  cfg.cluster_node_id = id;
  cfg.cluster_deployment = "bench";
  cfg.cluster_shards = SHARDS;
  cfg.cluster_lease_ttl_ms = TTL_MS;
  cfg.cluster_heartbeat_ms = BEAT_MS;
  int rc = stead_open(&cfg, out);
  if (rc == 0)
    rc = stead_register(*out, &becho);
  if (rc < 0)
    fprintf(stderr, "node %s: %s: %s\n", id, stead_errname(rc), stead_errmsg());
  return rc;
}

/* A child node: runs until SIGTERM (then leaves cleanly) or SIGKILL. */
static pid_t fork_node(const char *id) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(1);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  stead_rt *rt;
  if (open_node(id, &rt) < 0)
    _exit(1);
  int sig;
  sigwait(&set, &sig);
  stead_close(rt);
  _exit(0); /* not exit(): the PostgreSQL helper's atexit belongs to the parent */
}

int rtpath_prepare(const char *nats_url) {
  nats = nats_url;
  int rc = pgh_start(0);
  if (rc != 0)
    return 1;
  pgh_spec(spec, sizeof spec, "bench", NULL);
  child_c = fork_node(NODE_C);
  child_d = fork_node(NODE_D);
  return 0;
}

/* 1 when `rt` owns exactly its HRW share among `nodes` and sees them all. */
static int settled(stead_rt *rt, const char *self, const char *const *nodes, size_t n) {
  stead_cluster_status *st = NULL;
  if (stead_cluster_status_get(rt, &st) != 0)
    return 0;
  int want = stead_shards_for_node(self, nodes, n, SHARDS, NULL, NULL, 0);
  int ok = st->nmembers == n && (int)st->nowned == want;
  for (size_t i = 0; ok && i < st->nowned; i++)
    ok = !st->owned[i].draining;
  stead_free(st);
  return ok;
}

static int wait_settled(const char *const *nodes, size_t n, int timeout_ms) {
  for (int64_t t0 = mono_ns(); (mono_ns() - t0) / 1000000 < timeout_ms;) {
    if (settled(rt_a, NODE_A, nodes, n) && settled(rt_b, NODE_B, nodes, n))
      return 0;
    usleep(2000);
  }
  return -1;
}

int rtpath_open(void) {
  if (open_node(NODE_A, &rt_a) < 0 || open_node(NODE_B, &rt_b) < 0)
    return -1;
  const char *all[] = {NODE_A, NODE_B, NODE_C, NODE_D};
  if (wait_settled(all, 4, 30000) != 0) {
    fprintf(stderr, "the four nodes did not settle\n");
    return -1;
  }
  /* Objects whose owner is B with all four nodes and with A and B only
   * (HRW: removing C and D moves none of B's shards). */
  int n = 0;
  for (int k = 0; n < NOBJ; k++) {
    char id[24];
    snprintf(id, sizeof id, "o%d", k);
    int s = stead_shard_for_key("becho", id, SHARDS, NULL);
    if (s >= 0 && stead_shard_owner((uint32_t)s, all, 4, NULL) == 1)
      memcpy(ids[n++], id, sizeof id);
  }
  for (int k = 0; k < NOBJ; k++) /* activate every object on B */
    if (stead_call(rt_a, "becho", ids[k], "echo", PAYLOAD, 16, 10000, NULL, NULL) != 0) {
      fprintf(stderr, "warm-up call: %s\n", stead_errmsg());
      return -1;
    }
  return 0;
}

void rtpath_seq(int64_t *lat, int seq) {
  for (int i = 0; i < seq; i++) {
    int64_t t0 = mono_ns();
    int rc =
        stead_call(rt_a, "becho", ids[i % NOBJ], "echo", PAYLOAD, 16, 5000, NULL, NULL);
    lat[i] = mono_ns() - t0;
    if (rc != 0) {
      fprintf(stderr, "call A -> B: %s: %s\n", stead_errname(rc), stead_errmsg());
      exit(1);
    }
  }
}

typedef struct window {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inflight;
  long done, failed;
} window;

static void on_reply(const stead_result *res, void *u) {
  window *w = u;
  pthread_mutex_lock(&w->mu);
  w->inflight--;
  w->done++;
  w->failed += res->status != 0;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

double rtpath_pipelined(long n, int inflight) {
  window w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
  int64_t t0 = mono_ns();
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&w.mu);
    while (w.inflight >= inflight)
      pthread_cond_wait(&w.cv, &w.mu);
    w.inflight++;
    pthread_mutex_unlock(&w.mu);
    int rc = stead_call_async(rt_a, "becho", ids[i % NOBJ], "echo", PAYLOAD, 16, 10000,
                              on_reply, &w);
    if (rc != 0) {
      fprintf(stderr, "call_async A -> B: %s: %s\n", stead_errname(rc), stead_errmsg());
      exit(1);
    }
  }
  pthread_mutex_lock(&w.mu);
  while (w.done < n)
    pthread_cond_wait(&w.cv, &w.mu);
  pthread_mutex_unlock(&w.mu);
  double rps = n / ((mono_ns() - t0) / 1e9);
  if (w.failed)
    fprintf(stderr, "%ld of %ld pipelined calls failed\n", w.failed, n);
  return rps;
}

void rtpath_settle(double *kill_ms, double *term_ms) {
  const char *abd[] = {NODE_A, NODE_B, NODE_D}, *ab[] = {NODE_A, NODE_B};
  int64_t t0 = mono_ns();
  kill(child_c, SIGKILL);
  waitpid(child_c, NULL, 0);
  *kill_ms = wait_settled(abd, 3, 30000) == 0 ? (mono_ns() - t0) / 1e6 : -1;
  t0 = mono_ns();
  kill(child_d, SIGTERM);
  *term_ms = wait_settled(ab, 2, 30000) == 0 ? (mono_ns() - t0) / 1e6 : -1;
  waitpid(child_d, NULL, 0);
}

int rtpath_lease_ttl_ms(void) {
  return TTL_MS;
}

int rtpath_heartbeat_ms(void) {
  return BEAT_MS;
}

void rtpath_close(void) {
  stead_close(rt_a);
  stead_close(rt_b);
}
