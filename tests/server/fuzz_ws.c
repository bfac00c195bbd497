/*
 * fuzz_ws.c -- libFuzzer target for the gateway's WebSocket parsing: the
 * opening handshake's checks, and a framing session (wslay plus the UTF-8
 * and size checks of ws_proto.c) fed the input as the client's bytes.
 *
 * Input: first byte even -> handshake: the rest is split on NUL into
 * method, Upgrade, Connection, version and key (missing ones are absent
 * headers). Odd -> frames: the rest is what the client sent, delivered in
 * chunks whose sizes come from the first byte, with a small message limit
 * so that the 1009 path is reachable.
 */
#include "server/ws_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct feed {
  const uint8_t *p;
  size_t n, off, chunk;
  size_t got; /* bytes of messages delivered */
  int turn;
} feed;

static ssize_t f_recv(void *u, uint8_t *buf, size_t len) {
  feed *f = u;
  if (f->off == f->n)
    return -1;
  if (++f->turn % 3 == 0)
    return 0; /* would block now and then */
  size_t k = f->n - f->off;
  if (k > len)
    k = len;
  if (k > f->chunk)
    k = f->chunk;
  memcpy(buf, f->p + f->off, k);
  f->off += k;
  return (ssize_t)k;
}

static ssize_t f_send(void *u, const uint8_t *buf, size_t len) {
  return (ssize_t)len;
}

static void f_message(void *u, const uint8_t *data, size_t len, bool text) {
  feed *f = u;
  f->got += len;
  if (len)
    f->got += data[len - 1] & 1; /* touch the bytes: ASan checks them */
}

static int handshake(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  buf[size] = 0;
  const char *v[5] = {NULL, NULL, NULL, NULL, NULL};
  char *p = buf, *end = buf + size;
  for (int i = 0; i < 5 && p <= end; i++) {
    v[i] = p;
    p += strlen(p) + 1;
  }
  char accept[29];
  if (stead__ws_check_handshake(v[0], v[1], v[2], v[3], v[4], accept) == 0 &&
      strlen(accept) != 28)
    abort();
  free(buf);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  if ((data[0] & 1) == 0)
    return handshake(data + 1, size - 1);
  feed f = {data + 1, size - 1, 0, (size_t)(data[0] >> 1) + 1, 0, 0};
  stead__wsp_io io = {f_recv, f_send, f_message};
  stead__wsp *s = stead__wsp_new(&io, &f, 256);
  if (!s)
    return 0;
  for (int i = 0; i < 10000 && f.off < f.n; i++) {
    if (stead__wsp_read(s) != 0)
      break;
    if (stead__wsp_want_write(s) && stead__wsp_write(s) != 0)
      break;
    if (!stead__wsp_want_read(s))
      break;
  }
  stead__wsp_queue(s, "bye", 3, true);
  stead__wsp_close(s, 1000, "done");
  stead__wsp_write(s);
  stead__wsp_free(s);
  return 0;
}
