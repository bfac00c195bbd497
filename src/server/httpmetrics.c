/*
 * httpmetrics.c -- counters and a latency histogram for the HTTP gateway.
 *
 * Owns: one stead__httpm per gateway. Invariants: counters only grow; a
 * histogram is rendered from one read of each bucket, and its _count is
 * the sum of the buckets read, so a scrape is always self-consistent
 * (+Inf == _count) even while requests are being recorded. Threads: any.
 */
#include "server/httpmetrics.h"

#include <stdatomic.h>
#include <stdlib.h>

static const double BOUNDS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NB      (sizeof BOUNDS / sizeof BOUNDS[0])
#define NSTATUS 500 /* statuses 100..599 */

struct stead__httpm {
  atomic_uint_fast64_t req[STEAD__R_COUNT][NSTATUS];
  atomic_uint_fast64_t bucket[STEAD__R_COUNT][NB + 1]; /* last = over every bound */
  atomic_uint_fast64_t sum_ns[STEAD__R_COUNT];
  atomic_int_fast64_t inflight;
};

stead__httpm *stead__httpm_new(void) {
  return calloc(1, sizeof(stead__httpm));
}

void stead__httpm_free(stead__httpm *m) {
  free(m);
}

void stead__httpm_observe(stead__httpm *m, stead__route_kind route, int status,
                          int64_t duration_ns) {
  if ((unsigned)route >= STEAD__R_COUNT)
    route = STEAD__R_NONE;
  if (status < 100 || status > 599)
    status = 599;
  if (duration_ns < 0)
    duration_ns = 0;
  atomic_fetch_add_explicit(&m->req[route][status - 100], 1, memory_order_relaxed);
  double s = (double)duration_ns / 1e9;
  size_t b = 0;
  while (b < NB && s > BOUNDS[b])
    b++;
  atomic_fetch_add_explicit(&m->bucket[route][b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->sum_ns[route], (uint64_t)duration_ns,
                            memory_order_relaxed);
}

void stead__httpm_inflight(stead__httpm *m, int delta) {
  atomic_fetch_add_explicit(&m->inflight, delta, memory_order_relaxed);
}

int stead__httpm_text(stead__httpm *m, stead__buf *out) {
  int rc = stead__buf_printf(
      out, "# HELP stead_http_requests_total HTTP requests answered, by "
           "route and status.\n"
           "# TYPE stead_http_requests_total counter\n");
  for (int r = 0; r < STEAD__R_COUNT && rc == 0; r++) {
    for (int s = 0; s < NSTATUS && rc == 0; s++) {
      uint64_t v = atomic_load_explicit(&m->req[r][s], memory_order_relaxed);
      if (v)
        rc = stead__buf_printf(
            out, "stead_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
            stead__route_label((stead__route_kind)r), s + 100, (unsigned long long)v);
    }
  }
  if (rc == 0)
    rc = stead__buf_printf(out,
                           "# HELP stead_http_request_duration_seconds Time from request "
                           "headers to response sent, by route.\n"
                           "# TYPE stead_http_request_duration_seconds histogram\n");
  for (int r = 0; r < STEAD__R_COUNT && rc == 0; r++) {
    uint64_t b[NB + 1], cum = 0;
    for (size_t i = 0; i <= NB; i++)
      b[i] = atomic_load_explicit(&m->bucket[r][i], memory_order_relaxed);
    for (size_t i = 0; i <= NB; i++)
      cum += b[i];
    if (cum == 0)
      continue;
    const char *label = stead__route_label((stead__route_kind)r);
    cum = 0;
    for (size_t i = 0; i < NB && rc == 0; i++) {
      cum += b[i];
      rc = stead__buf_printf(
          out,
          "stead_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
          "%llu\n",
          label, BOUNDS[i], (unsigned long long)cum);
    }
    cum += b[NB];
    double sum = (double)atomic_load_explicit(&m->sum_ns[r], memory_order_relaxed) / 1e9;
    if (rc == 0)
      rc = stead__buf_printf(
          out,
          "stead_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
          "%llu\n"
          "stead_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n"
          "stead_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
          label, (unsigned long long)cum, label, sum, label, (unsigned long long)cum);
  }
  if (rc == 0)
    rc = stead__buf_printf(
        out,
        "# HELP stead_http_requests_in_flight HTTP requests being handled.\n"
        "# TYPE stead_http_requests_in_flight gauge\n"
        "stead_http_requests_in_flight %lld\n",
        (long long)atomic_load_explicit(&m->inflight, memory_order_relaxed));
  return rc < 0 ? STEAD_ENOMEM : 0;
}
