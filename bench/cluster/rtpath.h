/*
 * rtpath.h -- the runtime path of bench_cluster_nats: calls from one
 * runtime (node A) to objects owned by another (node B), both cluster
 * nodes over the same nats-server as the raw baseline, plus the time
 * ownership takes to settle after a node is killed or leaves.
 */
#ifndef STEAD_BENCH_CLUSTER_RTPATH_H
#define STEAD_BENCH_CLUSTER_RTPATH_H

#include <stdint.h>

/* Starts PostgreSQL and forks the two extra nodes (killed later) while the
 * process has no threads yet. Returns 0, or 1 when PostgreSQL is not
 * available (the runtime rows are skipped). */
int rtpath_prepare(const char *nats_url);

/* Opens nodes A and B and waits until the four nodes agree. 0 or -1. */
int rtpath_open(void);

/* `seq` sequential calls A -> B objects: latencies (ns) into lat. */
void rtpath_seq(int64_t *lat, int seq);

/* `n` calls with `inflight` in flight: calls per second. */
double rtpath_pipelined(long n, int inflight);

/* Kills one extra node with SIGKILL, then stops the other with SIGTERM,
 * and measures (ms) until A and B own every shard between them. */
void rtpath_settle(double *kill_ms, double *term_ms);

/* Lease ttl and heartbeat the nodes run with, for the table. */
int rtpath_lease_ttl_ms(void);
int rtpath_heartbeat_ms(void);

void rtpath_close(void);

#endif
