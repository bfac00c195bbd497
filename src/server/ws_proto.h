/*
 * ws_proto.h -- the WebSocket protocol parts of the gateway that need no
 * sockets and no runtime: the opening handshake's checks and accept key
 * (RFC 6455, 4.2), and a framing session over libwslay that validates
 * what wslay leaves to the application (UTF-8 of text messages). The
 * server (ws.c) drives a session over a socket; the fuzzer drives the
 * same code over memory.
 */
#ifndef STEAD_SERVER_WS_PROTO_H
#define STEAD_SERVER_WS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* SHA-1 (FIPS 180-4) of data: only for the handshake's accept key. */
void stead__sha1(const void *data, size_t len, uint8_t out[20]);

/* Checks an opening handshake (values NULL when the header is absent):
 * GET, "Upgrade: websocket", a Connection header listing "upgrade",
 * "Sec-WebSocket-Version: 13" and a Sec-WebSocket-Key that is the base64
 * of 16 bytes. On success returns 0 and writes the Sec-WebSocket-Accept
 * value (28 characters and a NUL) to accept. Else returns the HTTP status
 * to answer (400, or 426 for a version other than 13, with
 * "Sec-WebSocket-Version: 13") and sets the thread's error message. */
int stead__ws_check_handshake(const char *method, const char *upgrade,
                              const char *connection, const char *version,
                              const char *key, char accept[29]);

/* A framing session: one WebSocket server endpoint. */
typedef struct stead__wsp stead__wsp;

typedef struct stead__wsp_io {
  /* Reads up to len bytes: >0 bytes read, 0 would block, -1 end of
   * stream or error. */
  ssize_t (*recv)(void *u, uint8_t *buf, size_t len);
  /* Writes up to len bytes: >0 written, 0 would block, -1 error. */
  ssize_t (*send)(void *u, const uint8_t *buf, size_t len);
  /* A complete data message (text already checked for UTF-8). */
  void (*message)(void *u, const uint8_t *data, size_t len, bool text);
} stead__wsp_io;

/* A session whose incoming messages are at most max_msg bytes (bigger:
 * closed with 1009). NULL on out of memory. */
stead__wsp *stead__wsp_new(const stead__wsp_io *io, void *u, size_t max_msg);
void stead__wsp_free(stead__wsp *s);

/* Reads and handles what the peer sent (replies to pings, answers a
 * close). 0, or -1 when the stream failed (the session is over). */
int stead__wsp_read(stead__wsp *s);
/* Writes what is queued. 0, or -1 when the stream failed. */
int stead__wsp_write(stead__wsp *s);
/* Queues a data message, a ping, or a close (code, reason <= 123 bytes).
 * 0, or -1 when nothing more can be queued (a close was queued). */
int stead__wsp_queue(stead__wsp *s, const void *data, size_t len, bool text);
int stead__wsp_ping(stead__wsp *s);
int stead__wsp_close(stead__wsp *s, int code, const char *reason);

bool stead__wsp_want_read(stead__wsp *s);
bool stead__wsp_want_write(stead__wsp *s);
/* Bytes of data messages queued and not yet written. */
size_t stead__wsp_queued(stead__wsp *s);
/* The peer's close: 1 and its code (1005 when it gave none), else 0. */
int stead__wsp_close_received(stead__wsp *s, int *code);
/* 1 once a close frame was sent. */
int stead__wsp_close_sent(stead__wsp *s);
/* The close code this side sent (0 if none). */
int stead__wsp_code_sent(stead__wsp *s);

#endif
