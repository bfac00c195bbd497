/*
 * bench/calls -- in-process request/reply throughput and latency.
 *
 * Workloads (the issue's): 1,000 objects x 1,000 sequential requests each,
 * and 1 object x 200,000, on 2 workers. "Sequential" means each client
 * sends its next request when the previous reply arrives, so 1,000
 * requests are in flight in the first workload and 1 in the second.
 *
 * Two kinds of client are measured:
 *   external  -- stead_call_async; the completion callback (on a stead
 *                thread) sends the next request.
 *   object    -- a client object calls the server object with
 *                stead_ctx_call; the reply runs as its continuation turn,
 *                which sends the next request (actor-to-actor, like CAF).
 * The same workload runs on CAF (bench/baselines/caf_calls.cpp) in the same
 * run, and the table prints stead / CAF.
 *
 * Usage: bench_calls [--quick]
 */
#include "stead.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* ---- the server class: replies its argument ------------------------ */

static int srv_echo(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_reply(ctx, arg, len);
}

static const stead_method srv_methods[] = {{"echo", srv_echo}, {NULL, NULL}};
static const stead_class srv_class = {.name = "srv", .methods = srv_methods};

/* ---- shared run state ---------------------------------------------- */

typedef struct run {
  stead_rt *rt;
  int objects, per;
  int64_t *lat; /* objects * per latencies, ns */
  _Atomic int clients_left;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} run;

typedef struct client {
  run *r;
  int idx, done;
  int64_t t0;
  char id[16];
} client;

static void client_finished(run *r) {
  if (atomic_fetch_sub(&r->clients_left, 1) == 1) {
    pthread_mutex_lock(&r->mu);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
  }
}

/* ---- external clients ---------------------------------------------- */

static void ext_next(client *c);

static void ext_done(const stead_result *res, void *udata) {
  client *c = udata;
  if (res->status != 0) {
    fprintf(stderr, "call failed: %s\n", res->message);
    exit(1);
  }
  c->r->lat[(size_t)c->idx * c->r->per + c->done] = now_ns() - c->t0;
  if (++c->done == c->r->per)
    client_finished(c->r);
  else
    ext_next(c);
}

static void ext_next(client *c) {
  c->t0 = now_ns();
  int rc = stead_call_async(c->r->rt, "srv", c->id, "echo", "x", 1, 60000, ext_done, c);
  if (rc != 0) {
    fprintf(stderr, "call_async: %s\n", stead_errmsg());
    exit(1);
  }
}

/* ---- object clients ------------------------------------------------- */

/* The client object's turn state lives in a client record named by the
 * client id; the continuation carries it as udata. */
static int obj_then(stead_ctx *ctx, const stead_result *res, void *udata);

static int obj_issue(stead_ctx *ctx, client *c) {
  c->t0 = now_ns();
  return stead_ctx_call(ctx, "srv", c->id, "echo", "x", 1, 60000, obj_then, c);
}

static int obj_then(stead_ctx *ctx, const stead_result *res, void *udata) {
  client *c = udata;
  if (res->status != 0) {
    fprintf(stderr, "ctx call failed: %s\n", res->message);
    exit(1);
  }
  c->r->lat[(size_t)c->idx * c->r->per + c->done] = now_ns() - c->t0;
  if (++c->done == c->r->per) {
    client_finished(c->r);
    return 0;
  }
  return obj_issue(ctx, c);
}

static int cli_start(stead_ctx *ctx, const void *arg, size_t len) {
  client *c;
  memcpy(&c, arg, sizeof c);
  return obj_issue(ctx, c);
}

static const stead_method cli_methods[] = {{"start", cli_start}, {NULL, NULL}};
static const stead_class cli_class = {.name = "cli", .methods = cli_methods};

/* ---- driver --------------------------------------------------------- */

typedef struct result {
  double secs, p50_us, p99_us;
} result;

static result run_stead(int objects, int per, int object_clients) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  run r = {.objects = objects, .per = per};
  r.lat = malloc(sizeof(int64_t) * (size_t)objects * (size_t)per);
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  atomic_store(&r.clients_left, objects);
  if (stead_open(&cfg, &r.rt) || stead_register(r.rt, &srv_class) ||
      stead_register(r.rt, &cli_class)) {
    fprintf(stderr, "open: %s\n", stead_errmsg());
    exit(1);
  }
  client *cs = calloc((size_t)objects, sizeof *cs);
  for (int i = 0; i < objects; i++) {
    cs[i] = (client){.r = &r, .idx = i};
    snprintf(cs[i].id, sizeof cs[i].id, "o%d", i);
  }
  int64_t t0 = now_ns();
  for (int i = 0; i < objects; i++) {
    if (object_clients) {
      client *p = &cs[i];
      stead_send(r.rt, "cli", cs[i].id, "start", &p, sizeof p);
    } else {
      ext_next(&cs[i]);
    }
  }
  pthread_mutex_lock(&r.mu);
  while (atomic_load(&r.clients_left) > 0)
    pthread_cond_wait(&r.cv, &r.mu);
  pthread_mutex_unlock(&r.mu);
  result res = {.secs = (double)(now_ns() - t0) / 1e9};
  stead_close(r.rt);
  size_t n = (size_t)objects * (size_t)per;
  qsort(r.lat, n, sizeof(int64_t), cmp_i64);
  res.p50_us = (double)r.lat[n / 2] / 1000.0;
  res.p99_us = (double)r.lat[n * 99 / 100] / 1000.0;
  free(r.lat);
  free(cs);
  return res;
}

static int run_caf(int objects, int per, result *out) {
  const char *bin = STEAD_CAF_BASELINE;
  if (!bin[0])
    return -1;
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s %d %d", bin, objects, per);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  int o, q;
  int n =
      fscanf(p, "caf %d %d %lf %lf %lf", &o, &q, &out->secs, &out->p50_us, &out->p99_us);
  pclose(p);
  return n == 5 ? 0 : -1;
}

static void row(const char *workload, const char *sys, long total, result r,
                double base) {
  double rate = (double)total / r.secs;
  printf("| %-18s | %-15s | %11.0f | %8.1f | %8.1f | ", workload, sys, rate, r.p50_us,
         r.p99_us);
  if (base > 0)
    printf("%5.2fx |\n", rate / base);
  else
    printf("  --   |\n");
}

int main(int argc, char **argv) {
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  struct {
    const char *name;
    int objects, per;
  } w[] = {{"1000 obj x 1000", 1000, quick ? 100 : 1000},
           {"1 obj x 200000", 1, quick ? 20000 : 200000}};
  printf("bench/calls: in-process request/reply, 2 workers%s\n\n",
         quick ? " (quick)" : "");
  printf("| workload           | system          |       req/s |  p50 us  |  p99 us  | "
         "vs CAF |\n");
  printf("|--------------------|-----------------|-------------|----------|----------|"
         "--------|\n");
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    long total = (long)w[i].objects * w[i].per;
    result caf;
    double base = 0;
    if (run_caf(w[i].objects, w[i].per, &caf) == 0) {
      base = (double)total / caf.secs;
      row(w[i].name, "CAF 0.17", total, caf, 0);
    }
    row(w[i].name, "stead external", total, run_stead(w[i].objects, w[i].per, 0), base);
    row(w[i].name, "stead object", total, run_stead(w[i].objects, w[i].per, 1), base);
  }
  return 0;
}
