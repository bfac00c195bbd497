/*
 * cluster_campaign.c -- the multi-node fault campaign of issue 11: real
 * `stead serve` processes in cluster mode (tests/cluster/procs.[ch]) over a
 * private nats-server and PostgreSQL, under HTTP load on a few hundred
 * counters, with faults injected in rounds. Usage:
 *
 *   faults_cluster [--seconds N] [--seed S] [--nodes N] [--objects N]
 *                  [--threads N] [--faults kill9,pause,nats,pgrestart,pgterm]
 *                  [--nats-down-min-ms MIN] [--nats-down-ms MAX]
 *
 * One round = one fault drawn from the seed, then "settle": every running
 * node agrees on membership and owns exactly its HRW share, every shard has
 * one owner (pc_wait_settled); then the checks below; then a little load
 * before the next round. Faults:
 *
 *   kill9      SIGKILL a node, restart it after 0.2-2 s;
 *   pause      SIGSTOP a node past its lease ttl, wait until the others
 *              have taken its shards and committed, SIGCONT;
 *   nats       stop nats-server (SIGKILL or SIGTERM), start it again on the
 *              same port after 0.3-3 s (MIN-MAX; the nodes' nats.c clients
 *              reconnect, however long the outage);
 *   pgrestart  stop PostgreSQL (fast or immediate), start it after 0.2-2 s;
 *   pgterm     pg_terminate_backend of every client backend.
 *
 * Checked after every round: no node died unless killed by the campaign;
 * the cluster settles within SETTLE_MS; no shard's epoch went backwards;
 * every counter reads back at least the increments acknowledged before the
 * read started (no lost write). At the end, for each counter: count in
 * [acked, acked + ambiguous] and the counts returned to acknowledged
 * increments distinct (two writers interleaving on one object would hand
 * out one count twice: a double-owner commit). Prints one line and exits 1
 * on any violation (77 when PostgreSQL is not installed: ctest skips).
 * Any answer outside the documented classes is a violation ("unexpected");
 * publish_eio, a 500 EIO when the entry node's NATS connection broke under
 * a forwarded call, is counted apart and is a violation too: the node now
 * answers such a call EUNKNOWN (504, ambiguous), since the request may have
 * reached the owner (docs/reliability.md).
 *
 * The random choices of the campaign (faults, victims, durations) and of the
 * load threads (node, object) come from the printed seed; the timing of
 * real processes does not, so a seed reproduces the fault schedule, not the
 * interleaving.
 *
 * Threads: the main thread injects faults and checks; the load driver's
 * threads (procs.c) send increments.
 */
#include "cluster/natsrv.h"
#include "cluster/procs.h"
#include "storage/pg_helper.h"

#include <curl/curl.h>
#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHARDS          64
#define SETTLE_MS       30000
#define CALL_TIMEOUT_MS 3000

enum { F_KILL9, F_PAUSE, F_NATS, F_PGRESTART, F_PGTERM, F_KINDS };
static const char *const fault_names[F_KINDS] = {"kill9", "pause", "nats", "pgrestart",
                                                 "pgterm"};

typedef struct campaign {
  unsigned seed; /* the campaign's rand_r state */
  int nodes, objects, threads, seconds;
  int nats_down_min_ms, nats_down_ms; /* nats-server outage range */
  int enabled[F_KINDS];
  long faults[F_KINDS];
  long rounds;
  natsrv nats;
  pcluster c;
  pload l;
  pclient *reader;
  unsigned long long epoch[SHARDS]; /* highest epoch seen per shard */
  long lost, dups, double_owner, crashed, not_settled, epoch_back, unreadable;
  long pg_killed; /* backends terminated */
} campaign;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int rnd(campaign *k, int lo, int hi) {
  return lo + (int)((unsigned)rand_r(&k->seed) % (unsigned)(hi - lo + 1));
}

static long violations(const campaign *k) {
  return k->lost + k->dups + k->double_owner + k->crashed + k->not_settled +
         k->epoch_back + k->unreadable + atomic_load(&k->l.bad) + atomic_load(&k->l.eio);
}

/* ---- nats-server on a fixed port ---- */

/* Starts nats-server again on the port natsrv_start chose, so the nodes'
 * configured URL stays valid. 0 or -1. */
static int nats_restart(natsrv *s) {
  const char *bin = natsrv_binary();
  char port[16];
  snprintf(port, sizeof port, "%d", s->port);
  /* The old listener may linger for a moment: retry the bind. */
  for (int attempt = 0; attempt < 20; attempt++) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent || chdir(s->dir) != 0)
        _exit(1);
      if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
        _exit(1);
      execl(bin, bin, "-a", "127.0.0.1", "-p", port, (char *)NULL);
      _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 100; i++) {
      if (natsrv_accepts(s->port))
        return 0;
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        s->pid = 0;
        break;
      }
      sleep_ms(50);
    }
    if (s->pid > 0) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, NULL, 0);
      s->pid = 0;
    }
    sleep_ms(250);
  }
  return -1;
}

/* ---- PostgreSQL ---- */

static int pg_terminate_all(void) {
  PGconn *c = PQconnectdb(pgh_server.uri);
  int n = 0;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult *res = PQexec(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE pid <> pg_backend_pid() AND backend_type = 'client "
                              "backend'");
    n = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
    PQclear(res);
  }
  PQfinish(c);
  return n;
}

/* ---- faults ---- */

/* A running node other than one the campaign holds down, or -1. */
static int victim(campaign *k) {
  return pc_pick(&k->c, &k->seed);
}

static int fault_kill9(campaign *k, char *what, size_t len) {
  int i = victim(k);
  if (i < 0)
    return -1;
  int down = rnd(k, 200, 2000);
  pc_kill(&k->c, i);
  sleep_ms(down);
  snprintf(what, len, "kill -9 %s, restarted after %d ms", k->c.nodes[i].id, down);
  return pc_start(&k->c, i);
}

static int fault_pause(campaign *k, char *what, size_t len) {
  int i = victim(k);
  if (i < 0)
    return -1;
  pnode *nd = &k->c.nodes[i];
  atomic_store(&nd->up, 0); /* requests already sent to it stay in flight */
  kill(nd->pid, SIGSTOP);
  int64_t t0 = mono_ms();
  sleep_ms(k->c.lease_ttl_ms + rnd(k, 100, 1000));
  /* The others take its shards and commit while it sleeps. */
  char why[256] = "";
  int rc = pc_wait_settled(&k->c, SETTLE_MS, why, sizeof why);
  sleep_ms(rnd(k, 200, 1000));
  kill(nd->pid, SIGCONT);
  atomic_store(&nd->up, 1);
  snprintf(what, len, "SIGSTOP %s for %lld ms%s%s", nd->id, (long long)(mono_ms() - t0),
           rc ? "; others did not settle meanwhile: " : "", rc ? why : "");
  if (rc) {
    k->not_settled++;
    fprintf(stderr, "violation: %s\n", what);
  }
  return 0;
}

static int fault_nats(campaign *k, char *what, size_t len) {
  int sig = rnd(k, 0, 1) ? SIGKILL : SIGTERM;
  int down = rnd(k, k->nats_down_min_ms, k->nats_down_ms);
  kill(k->nats.pid, sig);
  waitpid(k->nats.pid, NULL, 0);
  k->nats.pid = 0;
  sleep_ms(down);
  snprintf(what, len, "nats-server %s, restarted after %d ms",
           sig == SIGKILL ? "SIGKILL" : "SIGTERM", down);
  return nats_restart(&k->nats);
}

static int fault_pgrestart(campaign *k, char *what, size_t len) {
  const char *mode = rnd(k, 0, 1) ? "immediate" : "fast";
  int down = rnd(k, 200, 2000);
  pgh_pg_stop(mode);
  sleep_ms(down);
  snprintf(what, len, "PostgreSQL stop -m %s, started after %d ms", mode, down);
  return pgh_pg_start() == 0 ? 0 : -1;
}

static int fault_pgterm(campaign *k, char *what, size_t len) {
  int n = pg_terminate_all();
  k->pg_killed += n;
  snprintf(what, len, "pg_terminate_backend: %d backends", n);
  return 0;
}

static int inject(campaign *k, int kind, char *what, size_t len) {
  switch (kind) {
  case F_KILL9:
    return fault_kill9(k, what, len);
  case F_PAUSE:
    return fault_pause(k, what, len);
  case F_NATS:
    return fault_nats(k, what, len);
  case F_PGRESTART:
    return fault_pgrestart(k, what, len);
  default:
    return fault_pgterm(k, what, len);
  }
}

/* ---- checks ---- */

/* A node the campaign did not stop has exited: a crash. Counted, its
 * stderr shown, and restarted so the campaign goes on. */
static void check_alive(campaign *k) {
  for (int i = 0; i < k->c.n; i++) {
    pnode *nd = &k->c.nodes[i];
    int st;
    if (nd->pid <= 0 || waitpid(nd->pid, &st, WNOHANG) != nd->pid)
      continue;
    nd->pid = 0;
    k->crashed++;
    fprintf(stderr, "violation: %s exited by itself (%s %d)\n", nd->id,
            WIFSIGNALED(st) ? "signal" : "status",
            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    char cmd[200];
    snprintf(cmd, sizeof cmd, "tail -n 20 '%s/stderr.log' >&2", nd->dir);
    if (system(cmd) != 0) {
      /* best effort */
    }
    atomic_store(&nd->up, 0);
    if (pc_start(&k->c, i) != 0)
      fprintf(stderr, "%s does not start again\n", nd->id);
  }
}

/* Lease epochs only grow: a shard owned with an epoch below one seen
 * before would mean two tenures with one fence. */
static void check_epochs(campaign *k) {
  for (int i = 0; i < k->c.n; i++) {
    if (!atomic_load(&k->c.nodes[i].up))
      continue;
    void *st = pc_status(&k->c, i);
    if (!st)
      continue;
    for (unsigned s = 0; s < SHARDS; s++) {
      unsigned long long e = pc_epoch(st, s);
      if (e && e < k->epoch[s]) {
        k->epoch_back++;
        fprintf(stderr, "violation: %s owns shard %u at epoch %llu, %llu seen before\n",
                k->c.nodes[i].id, s, e, k->epoch[s]);
      }
      if (e > k->epoch[s])
        k->epoch[s] = e;
    }
    pc_json_free(st);
  }
}

/* Every counter holds at least what was acknowledged before reading it. */
static void check_no_lost(campaign *k) {
  for (int o = 0; o < k->objects; o++) {
    pobj *ob = &k->l.objs[o];
    pthread_mutex_lock(&ob->mu);
    long acked = ob->acked;
    pthread_mutex_unlock(&ob->mu);
    char id[64];
    snprintf(id, sizeof id, "%s-%d", k->l.prefix, o);
    long long count = pc_read(k->reader, &k->c, id, 20000);
    if (count < 0) {
      k->unreadable++;
      fprintf(stderr, "violation: %s unreadable for 20 s after settling\n", id);
    } else if (count < acked) {
      k->lost += acked - count;
      fprintf(stderr, "violation: %s reads %lld, %ld acknowledged before the read\n", id,
              count, acked);
    }
  }
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

/* After the load stopped: count in [acked, acked + ambiguous], distinct
 * acknowledged counts within 1..count. */
static void check_final(campaign *k) {
  for (int o = 0; o < k->objects; o++) {
    pobj *ob = &k->l.objs[o];
    char id[64];
    snprintf(id, sizeof id, "%s-%d", k->l.prefix, o);
    long long count = pc_read(k->reader, &k->c, id, 20000);
    if (count < 0) {
      k->unreadable++;
      fprintf(stderr, "violation: %s unreadable at the end\n", id);
      continue;
    }
    if (count < ob->acked) {
      k->lost += ob->acked - count;
      fprintf(stderr, "violation: %s count %lld < acked %ld\n", id, count, ob->acked);
    }
    if (count > ob->acked + ob->maybe) {
      k->dups += count - ob->acked - ob->maybe;
      fprintf(stderr,
              "violation: %s count %lld > acked %ld + ambiguous %ld (last not run: %s)\n",
              id, count, ob->acked, ob->maybe, ob->last_notrun);
    }
    qsort(ob->vals, ob->nvals, sizeof *ob->vals, cmp_ll);
    for (size_t x = 0; x < ob->nvals; x++) {
      if ((x > 0 && ob->vals[x] == ob->vals[x - 1]) || ob->vals[x] < 1 ||
          ob->vals[x] > count) {
        k->double_owner++;
        fprintf(stderr,
                "violation: %s: acknowledged count %lld twice or outside 1..%lld\n", id,
                ob->vals[x], count);
      }
    }
  }
}

/* Settles and checks after a round; returns 0 to go on. */
static int after_round(campaign *k, const char *what) {
  check_alive(k);
  char why[256] = "";
  int64_t t0 = mono_ms();
  if (pc_wait_settled(&k->c, SETTLE_MS, why, sizeof why) != 0) {
    k->not_settled++;
    fprintf(stderr, "violation: round %ld (%s): not settled after %d ms: %s\n", k->rounds,
            what, SETTLE_MS, why);
    pc_dump(&k->c);
    return -1; /* the cluster is stuck: further rounds would only repeat it */
  }
  int64_t settled = mono_ms() - t0;
  check_epochs(k);
  check_no_lost(k);
  if (getenv("FAULT_VERBOSE"))
    printf("  round %ld: %s; settled in %lld ms; ok=%ld ambiguous=%ld not_run=%ld\n",
           k->rounds, what, (long long)settled, atomic_load(&k->l.ok),
           atomic_load(&k->l.maybe), atomic_load(&k->l.notrun));
  return 0;
}

/* ---- the campaign ---- */

static int pick_kind(campaign *k) {
  int kinds[F_KINDS], n = 0;
  for (int f = 0; f < F_KINDS; f++)
    if (k->enabled[f])
      kinds[n++] = f;
  return kinds[rnd(k, 0, n - 1)];
}

static void report(campaign *k, unsigned seed0) {
  long sent = atomic_load(&k->l.ok) + atomic_load(&k->l.maybe) +
              atomic_load(&k->l.notrun) + atomic_load(&k->l.bad) + atomic_load(&k->l.eio);
  long faults = 0;
  char by[200] = "";
  size_t used = 0;
  for (int f = 0; f < F_KINDS; f++) {
    faults += k->faults[f];
    used += (size_t)snprintf(by + used, sizeof by - used, "%s%s=%ld", used ? "," : "",
                             fault_names[f], k->faults[f]);
  }
  printf("cluster    rounds=%ld faults=%ld (%s) sent=%ld acked=%ld failed_retryable=%ld "
         "unknown=%ld lost=%ld duplicates=%ld double_owner=%ld unexpected=%ld "
         "publish_eio=%ld crashed=%ld "
         "not_settled=%ld epoch_back=%ld unreadable=%ld %s -- seed %u, %d nodes, %d "
         "shards, %d counters, %ld backends terminated\n",
         k->rounds, faults, by, sent, atomic_load(&k->l.ok), atomic_load(&k->l.notrun),
         atomic_load(&k->l.maybe), k->lost, k->dups, k->double_owner,
         atomic_load(&k->l.bad), atomic_load(&k->l.eio), k->crashed, k->not_settled,
         k->epoch_back, k->unreadable, violations(k) ? "VIOLATION" : "OK", seed0,
         k->nodes, SHARDS, k->objects, k->pg_killed);
  if (atomic_load(&k->l.bad))
    printf("  first unexpected answer: %s\n", k->l.first_bad);
  if (atomic_load(&k->l.eio))
    printf("  first 500 EIO on a forwarded call (must be EUNKNOWN now): %s\n",
           k->l.first_eio);
  if (violations(k))
    printf("  reproduce the fault schedule: faults_cluster --seed %u --seconds %d\n",
           seed0, k->seconds);
  fflush(stdout);
}

static int run(campaign *k) {
  unsigned seed0 = k->seed;
  pc_init(&k->c, k->nats.url, pgh_server.uri, "cfault", SHARDS);
  for (int i = 0; i < k->nodes; i++)
    if (pc_start(&k->c, i) != 0) {
      pc_stop_all(&k->c);
      return -1;
    }
  char why[256] = "";
  if (pc_wait_settled(&k->c, SETTLE_MS, why, sizeof why) != 0) {
    fprintf(stderr, "the cluster did not settle at start: %s\n", why);
    pc_stop_all(&k->c);
    return -1;
  }
  k->reader = pclient_new();
  pl_start_seeded(&k->l, &k->c, "c", k->objects, k->threads, CALL_TIMEOUT_MS, seed0);
  int64_t end = mono_ms() + (int64_t)k->seconds * 1000;
  sleep_ms(500);
  while (mono_ms() < end) {
    int kind = pick_kind(k);
    char what[400] = "";
    int rc = inject(k, kind, what, sizeof what);
    k->rounds++;
    k->faults[kind]++;
    if (rc != 0) {
      fprintf(stderr, "campaign error: round %ld: %s failed\n", k->rounds, what);
      k->not_settled++;
      break;
    }
    if (after_round(k, what) != 0)
      break;
    sleep_ms(rnd(k, 200, 1000));
  }
  pl_stop(&k->l);
  check_alive(k);
  if (!k->not_settled && pc_wait_settled(&k->c, SETTLE_MS, why, sizeof why) != 0) {
    k->not_settled++;
    fprintf(stderr, "violation: not settled at the end: %s\n", why);
  }
  check_final(k);
  report(k, seed0);
  pclient_free(k->reader);
  pl_free(&k->l);
  pc_stop_all(&k->c);
  return violations(k) ? 1 : 0;
}

static int parse_faults(campaign *k, const char *list) {
  memset(k->enabled, 0, sizeof k->enabled);
  char buf[200];
  snprintf(buf, sizeof buf, "%s", list);
  int n = 0;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
       t = strtok_r(NULL, ",", &save)) {
    int f = 0;
    while (f < F_KINDS && strcmp(t, fault_names[f]) != 0)
      f++;
    if (f == F_KINDS)
      return -1;
    k->enabled[f] = 1;
    n++;
  }
  return n ? 0 : -1;
}

static int usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--seconds N] [--seed S] [--nodes 2..%d] [--objects N] "
          "[--threads 1..32] [--faults kill9,pause,nats,pgrestart,pgterm] "
          "[--nats-down-min-ms MIN] [--nats-down-ms MAX]\n",
          argv0, PROCS_MAX_NODES);
  return 2;
}

int main(int argc, char **argv) {
  static campaign k; /* large: the load's per-object ledgers hang off it */
  k.seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
  k.nodes = 3;
  k.objects = 300;
  k.threads = 6;
  k.seconds = 30;
  k.nats_down_min_ms = 300;
  k.nats_down_ms = 3000;
  for (int f = 0; f < F_KINDS; f++)
    k.enabled[f] = 1;
  for (int i = 1; i < argc; i += 2) { /* --name value */
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int ok = v != NULL;
    if (ok && strcmp(argv[i], "--seconds") == 0)
      k.seconds = atoi(v);
    else if (ok && strcmp(argv[i], "--seed") == 0)
      k.seed = (unsigned)strtoul(v, NULL, 10);
    else if (ok && strcmp(argv[i], "--nodes") == 0)
      k.nodes = atoi(v);
    else if (ok && strcmp(argv[i], "--objects") == 0)
      k.objects = atoi(v);
    else if (ok && strcmp(argv[i], "--threads") == 0)
      k.threads = atoi(v);
    else if (ok && strcmp(argv[i], "--nats-down-min-ms") == 0)
      k.nats_down_min_ms = atoi(v);
    else if (ok && strcmp(argv[i], "--nats-down-ms") == 0)
      k.nats_down_ms = atoi(v);
    else if (ok && strcmp(argv[i], "--faults") == 0)
      ok = parse_faults(&k, v) == 0;
    else
      ok = 0;
    if (!ok)
      return usage(argv[0]);
  }
  if (k.seconds < 1 || k.nodes < 2 || k.nodes > PROCS_MAX_NODES || k.objects < 1 ||
      k.threads < 1 || k.threads > 32 || k.nats_down_min_ms < 0 ||
      k.nats_down_ms < k.nats_down_min_ms)
    return usage(argv[0]);
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  curl_global_init(CURL_GLOBAL_ALL);
  int rc = pgh_start(0);
  if (rc != 0)
    return rc > 0 ? 77 : 1; /* 77: no PostgreSQL here, ctest skips */
  if (natsrv_start(&k.nats) != 0)
    return 1;
  printf("faults_cluster: seed %u, %d s, %d nodes, %d counters, %d threads\n", k.seed,
         k.seconds, k.nodes, k.objects, k.threads);
  rc = run(&k);
  natsrv_stop(&k.nats);
  pgh_stop();
  curl_global_cleanup();
  return rc < 0 ? 1 : rc;
}
