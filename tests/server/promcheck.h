/*
 * promcheck.h -- a strict checker of the Prometheus text exposition format
 * 0.0.4, for testing GET /metrics.
 */
#ifndef STEAD_TEST_PROMCHECK_H
#define STEAD_TEST_PROMCHECK_H

#include <stddef.h>

/* 0 if `text` is valid; else -1 with the first problem (and its line) in
 * err. Checks: line syntax (HELP/TYPE/comments/samples), metric and label
 * names, label value escapes, float values, one TYPE/HELP per family and
 * before its samples, families contiguous, no duplicate series, counters
 * >= 0, histograms: per series le ascending, cumulative counts monotone,
 * a final +Inf bucket equal to _count, and _sum present. */
int promcheck(const char *text, char *err, size_t errcap);

#endif
