/*
 * bench_loop.c -- messages per second through the standalone loop over the
 * in-memory queue. Each scenario is timed from the first tick to the last
 * (filling a pre-filled queue is not counted; with a live producer the
 * producer's time is the loop's time). Prints a Markdown table.
 *
 * The second table is the durable event-sourced object (runtime + SQLite
 * with durability=full in a temporary directory): messages per second
 * through stead_register_program's journal, and the time to activate an
 * object whose journal holds 10,000 entries, with and without snapshots.
 *
 * Usage: bench_loop [messages [es-messages]]   (defaults 1,000,000; 20,000)
 */
#include "stead.h"
#include "util/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct model {
  uint64_t count, sum;
} model;

static int b_init(void *m, stead_cmds *cmds, void *udata) {
  memset(m, 0, sizeof(model));
  return 0;
}

static int b_update(void *mp, const void *msg, size_t len, stead_cmds *cmds,
                    void *udata) {
  model *m = mp;
  uint64_t v;
  memcpy(&v, msg, sizeof v);
  m->count++;
  m->sum += v;
  if (udata) /* the "with a command" scenario */
    return stead_cmd(cmds, &v, sizeof v);
  return 0;
}

static int b_run(const void *cmd, size_t len, stead_dispatcher *d, void *udata) {
  return 0;
}

static int b_encode(const void *m, void **data, size_t *len, void *udata) {
  *data = stead__memdup(m, sizeof(model));
  *len = sizeof(model);
  return *data ? 0 : STEAD_ENOMEM;
}

static int b_decode(void *m, const void *data, size_t len, void *udata) {
  if (len != sizeof(model))
    return STEAD_ECORRUPT;
  memcpy(m, data, len);
  return 0;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_loop: %s: %s (%s)\n", what, stead_errname(rc), stead_errmsg());
  exit(1);
}

static void fill(stead_queue *q, uint64_t n) {
  uint8_t pad[16] = {0};
  for (uint64_t i = 0; i < n; i++) {
    memcpy(pad, &i, sizeof i);
    int rc = stead_queue_put(q, pad, sizeof pad);
    if (rc)
      die("put", rc);
  }
}

typedef struct live {
  stead_queue *q;
  uint64_t n;
} live;

static void *producer(void *arg) {
  live *l = arg;
  fill(l->q, l->n);
  stead_queue_close(l->q);
  return NULL;
}

enum mode { RUN, BATCH, AGGREGATE };

/* Returns seconds spent consuming n messages. */
static double scenario(enum mode mode, size_t per_tick, int with_cmd, int live_producer,
                       uint64_t n) {
  stead_queue *q;
  int rc = stead_queue_new(&q);
  if (rc)
    die("queue_new", rc);
  stead_consumer in;
  stead_producer out;
  stead_queue_consumer(q, &in);
  stead_queue_producer(q, &out);
  static int flag;
  stead_program p = {
      b_init, b_update, NULL, b_run, b_encode, b_decode, with_cmd ? &flag : NULL};
  model m;
  stead_loop *l;
  if ((rc = stead_loop_new(&l, &p, &m, &in, &out)) != 0)
    die("loop_new", rc);
  stead_snapstore store;
  if (mode == AGGREGATE && (rc = stead_memstore_open(&store)) != 0)
    die("memstore", rc);
  pthread_t th;
  live lv = {q, n};
  if (live_producer) {
    if (pthread_create(&th, NULL, producer, &lv) != 0)
      die("pthread_create", STEAD_EIO);
  } else {
    fill(q, n);
    stead_queue_close(q);
  }
  int64_t t0 = stead__mono_ns();
  if (mode == RUN) {
    rc = stead_loop_run(l, NULL);
  } else if (mode == BATCH) {
    rc = stead_loop_batch(l, per_tick, NULL);
  } else {
    /* One aggregate per per_tick messages: load, batch, save. */
    while (rc == 0 && stead_queue_len(q) > 0) {
      stead_queue *chunk;
      if ((rc = stead_queue_new(&chunk)) != 0)
        break;
      stead_msg msg;
      for (size_t i = 0; i < per_tick && stead_queue_get(q, NULL, 0, &msg) == 0; i++)
        stead_queue_put(chunk, msg.data, msg.len);
      stead_queue_commit(q);
      stead_consumer cin;
      stead_queue_consumer(chunk, &cin);
      stead_loop *al;
      if ((rc = stead_loop_new(&al, &p, &m, &cin, NULL)) == 0)
        rc = stead_loop_aggregate(al, &store, "bench", per_tick, NULL, NULL);
      stead_loop_free(al);
      stead_queue_free(chunk);
    }
  }
  double secs = (double)(stead__mono_ns() - t0) / 1e9;
  if (rc)
    die("loop", rc);
  if (live_producer)
    pthread_join(th, NULL);
  if (mode != AGGREGATE && m.count != n) {
    fprintf(stderr, "bench_loop: applied %llu of %llu\n", (unsigned long long)m.count,
            (unsigned long long)n);
    exit(1);
  }
  if (mode == AGGREGATE)
    stead_memstore_close(&store);
  stead_loop_free(l);
  stead_queue_free(q);
  return secs;
}

static void row(const char *name, enum mode mode, size_t per_tick, int with_cmd,
                int live_producer, uint64_t n) {
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    double s = scenario(mode, per_tick, with_cmd, live_producer, n);
    if (s < best)
      best = s;
  }
  printf("| %-44s | %9llu | %8.3f | %12.0f | %7.1f |\n", name, (unsigned long long)n,
         best, (double)n / best, best * 1e9 / (double)n);
}

/* ---- durable event-sourced objects ----------------------------------- */

static int e_update(void *mp, const void *msg, size_t len, stead_cmds *cmds, void *u) {
  model *m = mp;
  m->count++;
  m->sum += len;
  return 0;
}

static const char *const e_methods[] = {"add", NULL};
static const char *const e_queries[] = {"get", NULL};

/* A window of asynchronous calls: at most `cap` in flight. */
typedef struct window {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inflight, failed;
  char why[256];
} window;

static void w_done(const stead_result *r, void *u) {
  window *w = u;
  pthread_mutex_lock(&w->mu);
  w->inflight--;
  if (r->status && w->failed++ == 0)
    snprintf(w->why, sizeof w->why, "%s: %s", stead_errname(r->status),
             r->message ? r->message : "");
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

/* n calls of "add" spread over `objects` ids, `cap` in flight; seconds. */
static double es_pump(stead_rt *rt, const char *cls, uint64_t n, int objects, int cap) {
  window w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, ""};
  int64_t t0 = stead__mono_ns();
  for (uint64_t i = 0; i < n; i++) {
    char id[32];
    snprintf(id, sizeof id, "o%d", (int)(i % (uint64_t)objects));
    pthread_mutex_lock(&w.mu);
    while (w.inflight >= cap)
      pthread_cond_wait(&w.cv, &w.mu);
    w.inflight++;
    pthread_mutex_unlock(&w.mu);
    int rc =
        stead_call_async(rt, cls, id, "add", "0123456789abcdef", 16, 60000, w_done, &w);
    if (rc)
      die("call_async", rc);
  }
  pthread_mutex_lock(&w.mu);
  while (w.inflight > 0)
    pthread_cond_wait(&w.cv, &w.mu);
  pthread_mutex_unlock(&w.mu);
  if (w.failed) {
    fprintf(stderr, "bench_loop: %d adds failed; the first: %s\n", w.failed, w.why);
    exit(1);
  }
  return (double)(stead__mono_ns() - t0) / 1e9;
}

static void es_row(const char *name, uint64_t n, double secs) {
  printf("| %-52s | %9llu | %8.3f | %12.0f | %9.1f |\n", name, (unsigned long long)n,
         secs, (double)n / secs, secs * 1e6 / (double)n);
}

/* Best-of-5 time of the first call after a deactivation: activation
 * (snapshot + replay) plus one query. */
static double es_activation(stead_rt *rt, const char *cls, const char *id) {
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    int rc = stead_deactivate(rt, cls, id);
    if (rc)
      die("deactivate", rc);
    int64_t t0 = stead__mono_ns();
    if ((rc = stead_call(rt, cls, id, "get", NULL, 0, 60000, NULL, NULL)) != 0)
      die("get", rc);
    double s = (double)(stead__mono_ns() - t0) / 1e9;
    if (s < best)
      best = s;
  }
  return best;
}

static void es_bench(uint64_t n) {
  char dir[] = "/tmp/stead-bench-es-XXXXXX";
  if (!mkdtemp(dir))
    die("mkdtemp", STEAD_EIO);
  char spec[300];
  snprintf(spec, sizeof spec, "sqlite:%s/db.sqlite?durability=full", dir);
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.storage = spec;
  stead_rt *rt;
  int rc = stead_open(&cfg, &rt);
  if (rc)
    die("open", rc);
  static stead_es_class snap = {
      .name = "es_snap",
      .program = {.update = e_update, .encode = b_encode, .decode = b_decode},
      .methods = e_methods,
      .queries = e_queries,
      .model_size = sizeof(model),
      .model_version = 1,
  };
  static stead_es_class nosnap, snap2, batch;
  batch = snap;
  batch.name = "es_batch";
  batch.batch_max = 64;
  snap2 = snap;
  snap2.name = "es_snap2";
  nosnap = snap;
  nosnap.name = "es_nosnap";
  nosnap.snapshot_every = UINT32_MAX;
  if ((rc = stead_register_program(rt, &snap)) ||
      (rc = stead_register_program(rt, &nosnap)) ||
      (rc = stead_register_program(rt, &snap2)) ||
      (rc = stead_register_program(rt, &batch)))
    die("register", rc);
  printf("\n| %-52s | %9s | %8s | %12s | %9s |\n",
         "event-sourced object, SQLite durability=full", "messages", "seconds",
         "messages/s", "us/msg");
  printf("|%s|%s|%s|%s|%s|\n", "------------------------------------------------------",
         "-----------", "----------", "--------------", "-----------");
  es_row("1 object, 1 call at a time (a sync per message)", n / 100,
         es_pump(rt, "es_snap", n / 100, 1, 1));
  es_row("1 object, 256 calls in flight", n, es_pump(rt, "es_snap", n, 1, 256));
  es_row("64 objects, 1024 calls in flight", n, es_pump(rt, "es_snap", n, 64, 1024));
  es_row("batch_max 64: 1 object, 256 calls in flight", n,
         es_pump(rt, "es_batch", n, 1, 256));
  es_row("batch_max 64: 64 objects, 1024 calls in flight", n,
         es_pump(rt, "es_batch", n, 64, 1024));
  /* activation: 10,000 messages journaled on one object of each class */
  es_pump(rt, "es_nosnap", 10000, 1, 256);
  es_pump(rt, "es_snap2", 10000, 1, 256);
  double t_nosnap = es_activation(rt, "es_nosnap", "o0");
  double t_snap = es_activation(rt, "es_snap2", "o0");
  printf("\n| %-52s | %12s |\n", "activation, journal of 10,000 entries",
         "ms (best of 5)");
  printf("|%s|%s|\n", "------------------------------------------------------",
         "--------------");
  printf("| %-52s | %12.2f |\n", "no snapshots: replay 10,000", t_nosnap * 1e3);
  printf("| %-52s | %12.2f |\n", "snapshot every 100: decode + replay <= 100",
         t_snap * 1e3);
  stead_close(rt);
}

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  if (n == 0)
    n = 1000000;
  printf("| %-44s | %9s | %8s | %12s | %7s |\n", "scenario (16-byte messages)",
         "messages", "seconds", "messages/s", "ns/msg");
  printf("|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
         "-----------", "----------", "--------------", "---------");
  row("Run (1 per tick), pre-filled queue", RUN, 1, 0, 0, n);
  row("Run, 1 command per message", RUN, 1, 1, 0, n);
  row("Run, live producer thread", RUN, 1, 0, 1, n);
  row("Batch of 100, pre-filled queue", BATCH, 100, 0, 0, n);
  row("Batch of 100, 1 command per message", BATCH, 100, 1, 0, n);
  row("Aggregate of 100 (load+batch+save, memstore)", AGGREGATE, 100, 0, 0, n / 10);
  uint64_t es_n = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000;
  es_bench(es_n ? es_n : 20000);
  return 0;
}
