/*
 * wsclient.h -- a small blocking WebSocket client on libwslay for the
 * server tests: handshake, masked frames, reassembly, close and ping.
 */
#ifndef STEAD_TEST_WSCLIENT_H
#define STEAD_TEST_WSCLIENT_H

#include <stddef.h>

typedef struct wsc wsc;

/* Opens a socket to 127.0.0.1:port and sends a handshake for `path`
 * (with `extra` headers appended, may be NULL). Returns the HTTP status
 * of the answer; on 101 *out is the client (else NULL). -1: no answer.
 * rcvbuf > 0 sets SO_RCVBUF before connecting. */
int wsc_open(int port, const char *path, int rcvbuf, wsc **out);

/* Sends a text (or, binary = 1, binary) message, or a ping. 0 or -1. */
int wsc_send(wsc *c, const void *data, size_t len, int binary);
int wsc_ping(wsc *c);
/* Writes raw bytes to the socket (malformed frames). */
int wsc_raw(wsc *c, const void *data, size_t len);
/* Sends a close frame with code. */
int wsc_close(wsc *c, int code);

/* The next message within timeout_ms: returns its opcode (1 text, 2
 * binary, 8 close -- then *len is the close code -- 10 pong), 0 on
 * timeout, -1 when the stream ended without a close. *data (may be
 * NULL) receives a malloc'd NUL-terminated copy. */
int wsc_recv(wsc *c, int timeout_ms, char **data, size_t *len);

int wsc_fd(wsc *c);
void wsc_free(wsc *c);

#endif
