/*
 * gateway.h -- the HTTP/JSON gateway of `stead serve` (libmicrohttpd).
 *
 * Lifecycle: start (serving /healthz as 503 "starting"), set_ready (object
 * routes go to the runtime), drain (healthz 503, no new connections, and no
 * request touches the runtime any more once it returns: the caller may then
 * stead_close, which completes every pending call), stop (waits for the
 * answers to be sent, then frees).
 */
#ifndef STEAD_SERVER_GATEWAY_H
#define STEAD_SERVER_GATEWAY_H

#include "server/log.h"
#include "stead.h"

#include <stddef.h>

typedef struct stead__gw stead__gw;

typedef struct stead__gw_config {
  int listen_fd;          /* bound, listening socket; the gateway owns it */
  int threads;            /* HTTP thread pool size */
  size_t max_body;        /* largest request body */
  int default_timeout_ms; /* calls without ?timeout_ms= */
  const char *node_id;    /* for /v1/cluster (copied) */
  const char *url;        /* this node's base URL (copied) */
  const char *storage;    /* storage in use, for /v1/cluster (copied) */
  int shards;
  int cluster;              /* 1: cluster node; /v1/cluster from the runtime */
  const stead__logger *log; /* borrowed; must outlive the gateway */
} stead__gw_config;

/* Starts serving on cfg->listen_fd. Errors: EIO (the HTTP library could
 * not start; message says why), ENOMEM. On error the fd is closed. */
int stead__gw_start(const stead__gw_config *cfg, stead__gw **out);

/* Routes object requests to `rt` from now on; /healthz turns 200. */
void stead__gw_set_ready(stead__gw *gw, stead_rt *rt);

/* Stops accepting connections, turns /healthz to 503, answers new object
 * requests 503 ECLOSED, and waits until no request thread is inside a
 * runtime call. After it returns the gateway never calls the runtime. */
void stead__gw_drain(stead__gw *gw);

/* Waits up to grace_ms for every started request to be answered and its
 * connection closed, then stops the HTTP threads and frees everything.
 * Every call the gateway started must have completed (stead_close does
 * that), or this waits the whole grace period. NULL is allowed. */
void stead__gw_stop(stead__gw *gw, int grace_ms);

#endif
