/*
 * bench_nats.c -- request/reply over NATS: raw nats.c against stead's
 * transport (src/cluster/nats.c), same nats-server, same run.
 *
 *   sequential: one request at a time, p50/p99 latency
 *   pipelined:  256 requests in flight, replies per second
 *
 * The responder is a plain nats.c echo subscription on its own connection.
 * Then the runtime path (rtpath.c, needs PostgreSQL): stead_call from node
 * A to objects owned by node B, both cluster runtimes over the same
 * nats-server, with the same payload, and the time ownership takes to
 * settle after a node is killed or leaves. The targets of issue #9 are
 * printed beside the ratios: p50 <= 1.25x raw, throughput >= 0.7x raw.
 * Usage: bench_cluster_nats [N] (default 20000 requests per pipelined run).
 */
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "cluster/nats.h"
#include "cluster/natsrv.h"
#include "rtpath.h"

#define INFLIGHT 256
#define SEQ      5000

static natsrv server;

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void echo(natsConnection *nc, natsSubscription *s, natsMsg *m, void *u) {
  natsConnection_Publish(nc, natsMsg_GetReply(m), natsMsg_GetData(m),
                         natsMsg_GetDataLength(m));
  natsMsg_Destroy(m);
}

static natsConnection *raw_connect(void) {
  natsOptions *o;
  natsConnection *nc = NULL;
  natsOptions_Create(&o);
  natsOptions_SetURL(o, server.url);
  natsOptions_SetSendAsap(o, true);
  if (natsConnection_Connect(&nc, o) != NATS_OK) {
    fprintf(stderr, "connect failed\n");
    exit(1);
  }
  natsOptions_Destroy(o);
  return nc;
}

/* In-flight window shared by both pipelined runs. */
typedef struct window {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inflight;
  long done;
} window;

static void win_acquire(window *w) {
  pthread_mutex_lock(&w->mu);
  while (w->inflight >= INFLIGHT)
    pthread_cond_wait(&w->cv, &w->mu);
  w->inflight++;
  pthread_mutex_unlock(&w->mu);
}

static void win_release(window *w) {
  pthread_mutex_lock(&w->mu);
  w->inflight--;
  w->done++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void win_drain(window *w, long n) {
  pthread_mutex_lock(&w->mu);
  while (w->done < n)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

/* ---- raw nats.c ---- */

static void raw_seq(natsConnection *nc, int64_t *lat) {
  for (int i = 0; i < SEQ; i++) {
    natsMsg *reply = NULL;
    int64_t t0 = stead__mono_ns();
    if (natsConnection_Request(&reply, nc, "bench.echo", "0123456789abcdef", 16, 5000) !=
        NATS_OK) {
      fprintf(stderr, "raw request failed\n");
      exit(1);
    }
    lat[i] = stead__mono_ns() - t0;
    natsMsg_Destroy(reply);
  }
}

static void raw_reply(natsConnection *nc, natsSubscription *s, natsMsg *m, void *u) {
  natsMsg_Destroy(m);
  win_release(u);
}

static double raw_pipelined(natsConnection *nc, long n) {
  window w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
  natsSubscription *sub;
  natsConnection_Subscribe(&sub, nc, "bench.rawinbox", raw_reply, &w);
  natsSubscription_SetPendingLimits(sub, -1, -1);
  natsConnection_Flush(nc);
  int64_t t0 = stead__mono_ns();
  for (long i = 0; i < n; i++) {
    win_acquire(&w);
    natsConnection_PublishRequest(nc, "bench.echo", "bench.rawinbox", "0123456789abcdef",
                                  16);
  }
  win_drain(&w, n);
  double secs = (stead__mono_ns() - t0) / 1e9;
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return n / secs;
}

/* ---- stead transport ---- */

typedef struct one {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done, status;
} one;

static void one_cb(int status, const void *d, size_t l, void *u) {
  one *o = u;
  pthread_mutex_lock(&o->mu);
  o->done = 1;
  o->status = status;
  pthread_cond_signal(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

static void stead_seq(stead__nats *t, int64_t *lat) {
  one o = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
  for (int i = 0; i < SEQ; i++) {
    o.done = 0;
    int64_t t0 = stead__mono_ns();
    if (stead__nats_request(t, "bench.echo", "0123456789abcdef", 16, 5000, one_cb, &o)) {
      fprintf(stderr, "stead request: %s\n", stead_errmsg());
      exit(1);
    }
    pthread_mutex_lock(&o.mu);
    while (!o.done)
      pthread_cond_wait(&o.cv, &o.mu);
    pthread_mutex_unlock(&o.mu);
    lat[i] = stead__mono_ns() - t0;
    if (o.status != 0) {
      fprintf(stderr, "stead reply status %d\n", o.status);
      exit(1);
    }
  }
}

static void win_cb(int status, const void *d, size_t l, void *u) {
  win_release(u);
}

static double stead_pipelined(stead__nats *t, long n) {
  window w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
  int64_t t0 = stead__mono_ns();
  for (long i = 0; i < n; i++) {
    win_acquire(&w);
    if (stead__nats_request(t, "bench.echo", "0123456789abcdef", 16, 10000, win_cb, &w)) {
      fprintf(stderr, "stead request: %s\n", stead_errmsg());
      exit(1);
    }
  }
  win_drain(&w, n);
  return n / ((stead__mono_ns() - t0) / 1e9);
}

static void row(const char *name, int64_t *lat, double rps) {
  qsort(lat, SEQ, sizeof *lat, cmp_i64);
  printf("| %-26s | %8.1f | %8.1f | %11.0f |\n", name, lat[SEQ / 2] / 1e3,
         lat[SEQ * 99 / 100] / 1e3, rps);
}

/* The runtime rows: returns 0, or -1 when they could not run. */
static int runtime_rows(long n, int64_t *lat_raw, double raw_rps) {
  static int64_t lat_rt[SEQ];
  if (rtpath_open() != 0)
    return -1;
  rtpath_seq(lat_rt, SEQ); /* warm-up */
  rtpath_seq(lat_rt, SEQ);
  double rt_rps = rtpath_pipelined(n, INFLIGHT);
  row("stead runtime call A -> B", lat_rt, rt_rps);
  double p50_ratio = (double)lat_rt[SEQ / 2] / (double)lat_raw[SEQ / 2];
  double rps_ratio = rt_rps / raw_rps;
  printf("\nruntime / raw: p50 %.2fx (target <= 1.25x: %s), throughput %.2fx "
         "(target >= 0.7x: %s)\n",
         p50_ratio, p50_ratio <= 1.25 ? "met" : "MISSED", rps_ratio,
         rps_ratio >= 0.7 ? "met" : "MISSED");
  double kill_ms, term_ms;
  rtpath_settle(&kill_ms, &term_ms);
  printf("\nownership settle (4 nodes, %d shards, lease ttl %d ms, heartbeat %d ms):\n",
         256, rtpath_lease_ttl_ms(), rtpath_heartbeat_ms());
  printf("  kill -9 of a node:   %.0f ms until the survivors own every shard\n", kill_ms);
  printf("  SIGTERM (drain):     %.0f ms\n", term_ms);
  rtpath_close();
  return 0;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 20000;
  if (natsrv_start(&server) != 0)
    return 1;
  /* Before any thread exists: the nodes to kill are forked processes. */
  int have_pg = rtpath_prepare(server.url) == 0;
  natsConnection *responder = raw_connect();
  natsSubscription *sub;
  natsConnection_Subscribe(&sub, responder, "bench.echo", echo, NULL);
  natsSubscription_SetPendingLimits(sub, -1, -1);
  natsConnection_Flush(responder);

  static int64_t lat_raw[SEQ], lat_stead[SEQ];
  natsConnection *nc = raw_connect();
  stead__nats_opts o;
  stead__nats_opts_init(&o);
  o.url = server.url;
  stead__nats *t;
  if (stead__nats_open(&o, &t) != 0) {
    fprintf(stderr, "open: %s\n", stead_errmsg());
    return 1;
  }
  raw_seq(nc, lat_raw); /* warm-up of both paths */
  stead_seq(t, lat_stead);
  raw_seq(nc, lat_raw);
  double raw_rps = raw_pipelined(nc, n);
  stead_seq(t, lat_stead);
  double stead_rps = stead_pipelined(t, n);

  printf("request/reply, 16-byte payload, echo responder, loopback nats-server\n");
  printf("sequential: %d requests; pipelined: %ld requests, %d in flight\n\n", SEQ, n,
         INFLIGHT);
  printf("| %-26s | %8s | %8s | %11s |\n", "client", "p50 us", "p99 us", "pipelined/s");
  printf("|%s|%s|%s|%s|\n", "----------------------------", "----------", "----------",
         "-------------");
  row("raw nats.c", lat_raw, raw_rps); /* sorts lat_raw: runtime_rows reads its p50 */
  row("stead transport", lat_stead, stead_rps);
  if (!have_pg)
    printf("\n(runtime rows skipped: no PostgreSQL)\n");
  else if (runtime_rows(n, lat_raw, raw_rps) != 0)
    printf("\n(runtime rows failed)\n");

  stead__nats_close(t);
  natsConnection_Destroy(nc);
  natsSubscription_Destroy(sub);
  natsConnection_Destroy(responder);
  natsrv_stop(&server);
  return 0;
}
