/*
 * metrics.c -- histogram bookkeeping and Prometheus text rendering.
 */
#include "util/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const double stead__latency_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                        0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                        1,      2.5,     5,      10};
const int stead__latency_nbounds = sizeof stead__latency_bounds / sizeof(double);
const double stead__size_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
const int stead__size_nbounds = sizeof stead__size_bounds / sizeof(double);

void stead__hist_init(stead__hist *h, const double *bounds, int nbounds) {
  memset(h, 0, sizeof *h);
  h->bounds = bounds;
  h->nbounds = nbounds > STEAD__HIST_MAX_BUCKETS ? STEAD__HIST_MAX_BUCKETS : nbounds;
}

void stead__hist_observe(stead__hist *h, double v) {
  int i = 0;
  while (i < h->nbounds && v > h->bounds[i])
    i++;
  atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
  if (v > 0)
    atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)llround(v * 1e6),
                              memory_order_relaxed);
}

void stead__hist_observe_ns(stead__hist *h, int64_t ns) {
  stead__hist_observe(h, (double)ns / 1e9);
}

int stead__metric_header(stead__buf *b, const char *name, const char *type,
                         const char *help) {
  return stead__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int print_num(stead__buf *b, double v) {
  if (isinf(v))
    return stead__buf_printf(b, v > 0 ? "+Inf" : "-Inf");
  if (v == (double)(int64_t)v && fabs(v) < 9e15)
    return stead__buf_printf(b, "%lld", (long long)v);
  return stead__buf_printf(b, "%.9g", v);
}

int stead__metric_value(stead__buf *b, const char *name, const char *labels, double v) {
  int rc = labels && *labels ? stead__buf_printf(b, "%s{%s} ", name, labels)
                             : stead__buf_printf(b, "%s ", name);
  rc |= print_num(b, v);
  rc |= stead__buf_printf(b, "\n");
  return rc ? STEAD_ENOMEM : 0;
}

int stead__metric_hist(stead__buf *b, const char *name, const char *labels,
                       const stead__hist *h) {
  const char *sep = labels && *labels ? "," : "";
  const char *lab = labels ? labels : "";
  uint64_t cum = 0;
  int rc = 0;
  stead__hist *hh = (stead__hist *)h;
  for (int i = 0; i <= h->nbounds; i++) {
    cum += atomic_load_explicit(&hh->counts[i], memory_order_relaxed);
    rc |= stead__buf_printf(b, "%s_bucket{%s%sle=\"", name, lab, sep);
    rc |= print_num(b, i < h->nbounds ? h->bounds[i] : INFINITY);
    rc |= stead__buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
  }
  /* _count equals the +Inf bucket even while observations race in: use the
   * cumulative sum just computed, not the separate counter. */
  double sum = (double)atomic_load_explicit(&hh->sum_micro, memory_order_relaxed) / 1e6;
  rc |= labels && *labels ? stead__buf_printf(b, "%s_sum{%s} ", name, labels)
                          : stead__buf_printf(b, "%s_sum ", name);
  rc |= print_num(b, sum);
  rc |= stead__buf_printf(b, "\n");
  rc |= labels && *labels
            ? stead__buf_printf(b, "%s_count{%s} %llu\n", name, labels,
                                (unsigned long long)cum)
            : stead__buf_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
  return rc ? STEAD_ENOMEM : 0;
}
