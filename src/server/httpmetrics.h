/*
 * httpmetrics.h -- the gateway's own metrics: requests by route and status
 * (counter), request latency by route (histogram), requests in flight
 * (gauge). Lock-free: recording is a few relaxed atomic adds.
 */
#ifndef STEAD_SERVER_HTTPMETRICS_H
#define STEAD_SERVER_HTTPMETRICS_H

#include "server/route.h"
#include "util/util.h"

#include <stdint.h>

typedef struct stead__httpm stead__httpm;

/* A zeroed metrics set; NULL on out of memory. Free with stead__httpm_free. */
stead__httpm *stead__httpm_new(void);
void stead__httpm_free(stead__httpm *m);

/* Counts one finished request. Status outside 100..599 counts as 599.
 * Thread-safe. */
void stead__httpm_observe(stead__httpm *m, stead__route_kind route, int status,
                          int64_t duration_ns);

/* In-flight gauge: +1 when a request starts, -1 when it finishes. */
void stead__httpm_inflight(stead__httpm *m, int delta);

/* Appends the metrics in Prometheus text format 0.0.4. 0 or STEAD_ENOMEM. */
int stead__httpm_text(stead__httpm *m, stead__buf *out);

#endif
