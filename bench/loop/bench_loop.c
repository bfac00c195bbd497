/*
 * bench_loop.c -- messages per second through the standalone loop over the
 * in-memory queue. Each scenario is timed from the first tick to the last
 * (filling a pre-filled queue is not counted; with a live producer the
 * producer's time is the loop's time). Prints a Markdown table.
 *
 * Usage: bench_loop [messages]   (default 1,000,000)
 */
#include "stead.h"
#include "util/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  return 0;
}
