/*
 * ws.h -- WebSocket connections of the gateway: each upgraded socket is a
 * stead connection (stead_connect) to the object named in the URL.
 *
 * The gateway checks the handshake, creates a session, connects it to
 * the object, and answers 101 only if the object accepted; libmicrohttpd
 * then hands the socket over (stead__ws_attach) and one thread of this
 * module runs every socket from there on: reads frames (libwslay),
 * turns data messages into stead_conn_send, and writes what the object
 * sends. Limits: incoming messages over max_msg are refused with 1009;
 * a client that lets more than max_queue bytes wait to be written is
 * disconnected with 1008; a client silent for three ping intervals is
 * disconnected with 1001.
 */
#ifndef STEAD_SERVER_WS_H
#define STEAD_SERVER_WS_H

#include "server/log.h"
#include "stead.h"
#include "util/util.h"

#include <microhttpd.h>

typedef struct stead__ws stead__ws;
typedef struct stead__ws_sess stead__ws_sess;

typedef struct stead__ws_config {
  size_t max_msg;   /* largest incoming message */
  size_t max_queue; /* bytes waiting for a slow client */
  int ping_ms;      /* ping interval */
  const stead__logger *log;
} stead__ws_config;

/* Starts the socket thread. NULL with the error message set on failure. */
stead__ws *stead__ws_new(const stead__ws_config *cfg);
/* Closes every session (1001 "server shutting down"), including those
 * attached later, and waits up to 2 s for their close frames; their
 * connections are closed. Thread-safe. */
void stead__ws_close_all(stead__ws *ws);
/* Stops the thread and frees; after close_all. NULL allowed. */
void stead__ws_free(stead__ws *ws);
/* Appends the module's metrics. */
int stead__ws_metrics(stead__ws *ws, stead__buf *b);

/* A session for a connect in progress; NULL on out of memory. Its
 * connection options (callbacks, udata) go to stead_connect_async. */
stead__ws_sess *stead__ws_sess_new(stead__ws *ws, stead_conn_opts *opts);
/* The object accepted: the session owns `conn` from now on. */
void stead__ws_sess_set_conn(stead__ws_sess *s, stead_conn *conn);
/* The upgrade happened: the session takes the socket and runs it. */
void stead__ws_attach(stead__ws_sess *s, MHD_socket fd, const char *extra, size_t len,
                      struct MHD_UpgradeResponseHandle *urh);
/* The upgrade did not happen (rejected, or the client left first): closes
 * the connection if there is one and frees the session. */
void stead__ws_sess_abort(stead__ws_sess *s);

#endif
