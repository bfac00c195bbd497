/*
 * metrics.h -- lock-free counters and histograms, and their Prometheus text
 * exposition (format 0.0.4).
 *
 * Every module keeps its metrics in plain structs of these types inside the
 * object it owns (no global registry), and whoever exposes metrics walks
 * them. Updates are relaxed atomic adds: cheap on hot paths, exact totals.
 */
#ifndef STEAD_UTIL_METRICS_H
#define STEAD_UTIL_METRICS_H

#include "util/util.h"

#include <stdatomic.h>
#include <stdint.h>

typedef struct stead__counter {
  atomic_uint_least64_t v;
} stead__counter;

static inline void stead__counter_add(stead__counter *c, uint64_t n) {
  atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}
static inline uint64_t stead__counter_get(const stead__counter *c) {
  return atomic_load_explicit(&((stead__counter *)c)->v, memory_order_relaxed);
}

/* Buckets are upper bounds in the histogram's base unit (seconds for
 * latencies, items for sizes); the last implicit bucket is +Inf. */
#define STEAD__HIST_MAX_BUCKETS 20

typedef struct stead__hist {
  const double *bounds;
  int nbounds;
  atomic_uint_least64_t counts[STEAD__HIST_MAX_BUCKETS + 1];
  atomic_uint_least64_t count;
  /* Sum kept in millionths of the base unit: exact integer adds. */
  atomic_uint_least64_t sum_micro;
} stead__hist;

extern const double stead__latency_bounds[]; /* seconds, 100us .. 10s */
extern const int stead__latency_nbounds;
extern const double stead__size_bounds[]; /* 1 .. 4096 */
extern const int stead__size_nbounds;

void stead__hist_init(stead__hist *h, const double *bounds, int nbounds);
void stead__hist_observe(stead__hist *h, double v);
/* Observes a duration given in nanoseconds into a seconds histogram. */
void stead__hist_observe_ns(stead__hist *h, int64_t ns);

/* Exposition. `labels` is NULL or a pre-rendered label list without braces
 * (`route="call",status="200"`). HELP and TYPE lines are written by
 * stead__metric_header once per metric family. */
int stead__metric_header(stead__buf *b, const char *name, const char *type,
                         const char *help);
int stead__metric_value(stead__buf *b, const char *name, const char *labels, double v);
int stead__metric_hist(stead__buf *b, const char *name, const char *labels,
                       const stead__hist *h);

#endif
