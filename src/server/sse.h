/*
 * sse.h -- GET /v1/events?pattern=P: bus events streamed to HTTP clients
 * as Server-Sent Events.
 *
 * Each stream is a bus listener that formats events into a bounded
 * per-client queue and a libmicrohttpd response whose content reader
 * drains it, suspending the connection while the queue is empty. A client
 * that falls more than `max_queue` bytes behind is disconnected rather
 * than buffered without bound. close_all (at drain) removes every listener
 * and ends every stream, so the runtime may then be closed.
 */
#ifndef STEAD_SERVER_SSE_H
#define STEAD_SERVER_SSE_H

#include "stead.h"
#include "util/util.h"

#include <microhttpd.h>

typedef struct stead__sse stead__sse;

/* A registry of streams; max_queue: bytes one client may lag behind.
 * NULL on out of memory. */
stead__sse *stead__sse_new(size_t max_queue);
/* Frees the registry; call after close_all and after the HTTP daemon
 * stopped (no stream is left). NULL allowed. */
void stead__sse_free(stead__sse *s);

/* Starts a stream of the events of `bus` matching `pattern` and queues
 * the 200 response on `conn`. Errors (nothing queued; the caller answers):
 * EINVAL/ETOOBIG (bad pattern; the bus's message), EOVERLOAD (listener
 * limit), ECLOSED (closing), ENOMEM, EIO (MHD refused the response). */
int stead__sse_open(stead__sse *s, stead_bus *bus, struct MHD_Connection *conn,
                    const char *pattern);

/* Removes every stream's listener and ends the streams (clients see the
 * end of the response). Later opens get ECLOSED. Thread-safe. */
void stead__sse_close_all(stead__sse *s);

/* Appends the streams' metrics (Prometheus text). 0 or ENOMEM. */
int stead__sse_metrics(stead__sse *s, stead__buf *b);

#endif
