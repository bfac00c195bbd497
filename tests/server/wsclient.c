/*
 * wsclient.c -- see wsclient.h. One thread per client; not thread-safe.
 */
#include "wsclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wslay/wslay.h>

typedef struct item {
  struct item *next;
  int opcode;
  size_t len;
  char *data;
} item;

struct wsc {
  int fd;
  wslay_event_context_ptr ctx;
  item *head, *tail;
  int eof;
};

static ssize_t c_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                      void *ud) {
  wsc *c = ud;
  ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
  if (n > 0)
    return n;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
  } else {
    c->eof = 1;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
  }
  return -1;
}

static ssize_t c_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                      int flags, void *ud) {
  wsc *c = ud;
  ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n > 0)
    return n;
  wslay_event_set_error(ctx, n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                                 ? WSLAY_ERR_WOULDBLOCK
                                 : WSLAY_ERR_CALLBACK_FAILURE);
  return -1;
}

static int c_mask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud) {
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t)rand();
  return 0;
}

static void c_msg(wslay_event_context_ptr ctx,
                  const struct wslay_event_on_msg_recv_arg *a, void *ud) {
  wsc *c = ud;
  item *it = calloc(1, sizeof *it);
  it->opcode = a->opcode;
  it->len = a->opcode == WSLAY_CONNECTION_CLOSE ? a->status_code : a->msg_length;
  it->data = malloc(a->msg_length + 1);
  if (a->msg_length)
    memcpy(it->data, a->msg, a->msg_length);
  it->data[a->msg_length] = 0;
  if (c->tail)
    c->tail->next = it;
  else
    c->head = it;
  c->tail = it;
}

int wsc_open(int port, const char *path, int rcvbuf, wsc **out) {
  *out = NULL;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  if (rcvbuf > 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  char req[2048];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                   path);
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    close(fd);
    return -1;
  }
  /* Read the response head byte by byte: frames may follow it. */
  char head[4096];
  size_t hl = 0;
  struct pollfd pf = {fd, POLLIN, 0};
  while (hl < sizeof head - 1) {
    if (poll(&pf, 1, 5000) <= 0 || recv(fd, head + hl, 1, 0) != 1)
      break;
    hl++;
    if (hl >= 4 && memcmp(head + hl - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  head[hl] = 0;
  int status = -1;
  if (sscanf(head, "HTTP/1.1 %d", &status) != 1)
    status = -1;
  if (status != 101 || !strstr(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")) {
    close(fd);
    return status == 101 ? -1 : status;
  }
  wsc *c = calloc(1, sizeof *c);
  c->fd = fd;
  struct wslay_event_callbacks cbs = {c_recv, c_send, c_mask, NULL, NULL, NULL, c_msg};
  wslay_event_context_client_init(&c->ctx, &cbs, c);
  *out = c;
  return status;
}

static int flush(wsc *c) {
  for (int i = 0; i < 500 && wslay_event_want_write(c->ctx); i++) {
    if (wslay_event_send(c->ctx) != 0)
      return -1;
    if (wslay_event_want_write(c->ctx)) {
      struct pollfd pf = {c->fd, POLLOUT, 0};
      poll(&pf, 1, 10);
    }
  }
  return 0;
}

int wsc_send(wsc *c, const void *data, size_t len, int binary) {
  struct wslay_event_msg m = {binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME, data, len};
  if (wslay_event_queue_msg(c->ctx, &m) != 0)
    return -1;
  return flush(c);
}

int wsc_ping(wsc *c) {
  struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"p", 1};
  return wslay_event_queue_msg(c->ctx, &m) == 0 ? flush(c) : -1;
}

int wsc_close(wsc *c, int code) {
  return wslay_event_queue_close(c->ctx, (uint16_t)code, NULL, 0) == 0 ? flush(c) : -1;
}

int wsc_raw(wsc *c, const void *data, size_t len) {
  return send(c->fd, data, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

int wsc_recv(wsc *c, int timeout_ms, char **data, size_t *len) {
  if (data)
    *data = NULL;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (c->head) {
      item *it = c->head;
      c->head = it->next;
      if (!c->head)
        c->tail = NULL;
      int op = it->opcode;
      if (len)
        *len = it->len;
      if (data)
        *data = it->data;
      else
        free(it->data);
      free(it);
      flush(c); /* wslay's answers to pings and closes */
      return op;
    }
    if (c->eof)
      return -1;
    struct pollfd pf = {c->fd, POLLIN, 0};
    /* Elapsed time, not the sum of poll steps: a socket that is readable
     * without a whole frame would otherwise use up the budget at once. */
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long waited =
        (long)(t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    long step = timeout_ms - waited < 50 ? timeout_ms - waited : 50;
    if (step <= 0)
      return 0;
    int r = poll(&pf, 1, (int)step);
    if (r > 0 && wslay_event_recv(c->ctx) != 0 && !c->head)
      c->eof = 1;
  }
}

int wsc_fd(wsc *c) {
  return c->fd;
}

void wsc_free(wsc *c) {
  if (!c)
    return;
  while (c->head) {
    item *it = c->head;
    c->head = it->next;
    free(it->data);
    free(it);
  }
  wslay_event_context_free(c->ctx);
  close(c->fd);
  free(c);
}
