/*
 * ws_proto.c -- WebSocket handshake checks and a framing session over
 * libwslay (see ws_proto.h).
 *
 * wslay does the framing: masking (a server session refuses unmasked
 * client frames with 1002), fragmentation and reassembly, control frames
 * (it answers pings and closes by itself), the message size limit
 * (1009). This file adds what RFC 6455 leaves to the application: the
 * handshake, and UTF-8 validation of text messages (1007). No threads: a
 * session belongs to whoever drives it.
 */
#include "server/ws_proto.h"

#include "util/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

/* ---- SHA-1 ------------------------------------------------------------ */

static uint32_t rol(uint32_t x, int n) {
  return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rol(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

void stead__sha1(const void *data, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  const uint8_t *p = data;
  size_t n = len;
  for (; n >= 64; n -= 64, p += 64)
    sha1_block(h, p);
  uint8_t tail[128] = {0};
  memcpy(tail, p, n);
  tail[n] = 0x80;
  size_t tl = n + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++)
    tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
  sha1_block(h, tail);
  if (tl == 128)
    sha1_block(h, tail + 64);
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 4; j++)
      out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

/* ---- handshake -------------------------------------------------------- */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const uint8_t *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n)
      v |= in[i + 2];
    out[o++] = B64[(v >> 18) & 63];
    out[o++] = B64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? B64[v & 63] : '=';
  }
  out[o] = 0;
}

/* A key is 16 bytes in base64: 22 characters of the alphabet and "==". */
static bool key_ok(const char *k) {
  if (strlen(k) != 24 || k[22] != '=' || k[23] != '=')
    return false;
  for (int i = 0; i < 22; i++)
    if (!strchr(B64, k[i]) || !k[i])
      return false;
  /* The last character carries 2 bits: the other 4 must be zero. */
  return (strchr(B64, k[21]) - B64) % 16 == 0;
}

/* Whether a comma-separated header value lists `token` (any case). */
static bool lists_token(const char *v, const char *token) {
  size_t tl = strlen(token);
  while (*v) {
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    const char *s = v;
    while (*v && *v != ',')
      v++;
    const char *e = v;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
      return true;
  }
  return false;
}

int stead__ws_check_handshake(const char *method, const char *upgrade,
                              const char *connection, const char *version,
                              const char *key, char accept[29]) {
  accept[0] = 0;
  if (!method || strcmp(method, "GET") != 0)
    return stead__err(STEAD_EINVAL, "a WebSocket handshake is a GET"), 400;
  if (!upgrade || !lists_token(upgrade, "websocket"))
    return stead__err(STEAD_EINVAL, "missing \"Upgrade: websocket\""), 400;
  if (!connection || !lists_token(connection, "upgrade"))
    return stead__err(STEAD_EINVAL, "missing \"Connection: Upgrade\""), 400;
  if (!version || strcmp(version, "13") != 0)
    return stead__err(STEAD_EINVAL, "Sec-WebSocket-Version must be 13"), 426;
  if (!key || !key_ok(key))
    return stead__err(STEAD_EINVAL, "Sec-WebSocket-Key must be 16 bytes in base64"), 400;
  char buf[24 + 36 + 1];
  snprintf(buf, sizeof buf, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  uint8_t d[20];
  stead__sha1(buf, strlen(buf), d);
  b64_encode(d, 20, accept);
  return 0;
}

/* ---- framing session -------------------------------------------------- */

struct stead__wsp {
  wslay_event_context_ptr ctx;
  stead__wsp_io io;
  void *u;
  size_t max_msg;
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud) {
  stead__wsp *s = ud;
  ssize_t n = s->io.recv(s->u, buf, len);
  if (n > 0)
    return n;
  wslay_event_set_error(ctx, n == 0 ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
  return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *ud) {
  stead__wsp *s = ud;
  ssize_t n = s->io.send(s->u, data, len);
  if (n > 0)
    return n;
  wslay_event_set_error(ctx, n == 0 ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
  return -1;
}

static bool utf8_ok(const uint8_t *p, size_t len) {
  for (size_t i = 0; i < len;) {
    size_t k = stead__utf8_seq(p + i, len - i);
    if (!k)
      return false;
    i += k;
  }
  return true;
}

static void msg_cb(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *a, void *ud) {
  stead__wsp *s = ud;
  if (a->opcode != WSLAY_TEXT_FRAME && a->opcode != WSLAY_BINARY_FRAME)
    return; /* control frames: wslay answers pings and closes */
  bool text = a->opcode == WSLAY_TEXT_FRAME;
  if (text && !utf8_ok(a->msg, a->msg_length)) {
    const char *why = "text message is not UTF-8";
    wslay_event_queue_close(ctx, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA,
                            (const uint8_t *)why, strlen(why));
    wslay_event_shutdown_read(ctx);
    return;
  }
  s->io.message(s->u, a->msg, a->msg_length, text);
}

/* wslay enforces the message limit as payload arrives; a frame whose
 * header already announces more is refused at once. */
static void frame_start_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *a,
                           void *ud) {
  stead__wsp *s = ud;
  if (a->payload_length > s->max_msg && !wslay_event_get_close_sent(ctx)) {
    const char *why = "message too big";
    wslay_event_queue_close(ctx, WSLAY_CODE_MESSAGE_TOO_BIG, (const uint8_t *)why,
                            strlen(why));
    wslay_event_shutdown_read(ctx);
  }
}

stead__wsp *stead__wsp_new(const stead__wsp_io *io, void *u, size_t max_msg) {
  stead__wsp *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->io = *io;
  s->u = u;
  s->max_msg = max_msg;
  struct wslay_event_callbacks cbs = {recv_cb, send_cb, NULL,  frame_start_cb,
                                      NULL,    NULL,    msg_cb};
  if (wslay_event_context_server_init(&s->ctx, &cbs, s) != 0) {
    free(s);
    return NULL;
  }
  wslay_event_config_set_max_recv_msg_length(s->ctx, max_msg);
  return s;
}

void stead__wsp_free(stead__wsp *s) {
  if (!s)
    return;
  wslay_event_context_free(s->ctx);
  free(s);
}

int stead__wsp_read(stead__wsp *s) {
  return wslay_event_recv(s->ctx) == 0 ? 0 : -1;
}

int stead__wsp_write(stead__wsp *s) {
  return wslay_event_send(s->ctx) == 0 ? 0 : -1;
}

int stead__wsp_queue(stead__wsp *s, const void *data, size_t len, bool text) {
  struct wslay_event_msg m = {text ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME, data, len};
  return wslay_event_queue_msg(s->ctx, &m) == 0 ? 0 : -1;
}

int stead__wsp_ping(stead__wsp *s) {
  struct wslay_event_msg m = {WSLAY_PING, (const uint8_t *)"", 0};
  return wslay_event_queue_msg(s->ctx, &m) == 0 ? 0 : -1;
}

int stead__wsp_close(stead__wsp *s, int code, const char *reason) {
  size_t n = reason ? strlen(reason) : 0;
  if (n > 123)
    n = 123;
  return wslay_event_queue_close(s->ctx, (uint16_t)code, (const uint8_t *)reason, n) == 0
             ? 0
             : -1;
}

bool stead__wsp_want_read(stead__wsp *s) {
  return wslay_event_want_read(s->ctx);
}

bool stead__wsp_want_write(stead__wsp *s) {
  return wslay_event_want_write(s->ctx);
}

size_t stead__wsp_queued(stead__wsp *s) {
  return wslay_event_get_queued_msg_length(s->ctx);
}

int stead__wsp_close_received(stead__wsp *s, int *code) {
  if (!wslay_event_get_close_received(s->ctx))
    return 0;
  *code = wslay_event_get_status_code_received(s->ctx);
  return 1;
}

int stead__wsp_close_sent(stead__wsp *s) {
  return wslay_event_get_close_sent(s->ctx);
}

int stead__wsp_code_sent(stead__wsp *s) {
  return wslay_event_get_close_sent(s->ctx) ? wslay_event_get_status_code_sent(s->ctx)
                                            : 0;
}
