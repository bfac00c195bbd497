/*
 * envelope.c -- encoder and strict decoder of the cluster envelope (format
 * in envelope.h).
 *
 * The decoder parses in two steps. First it walks the buffer with a cursor
 * that checks every length against the bytes that remain and against the
 * documented limit, recording spans; nothing is allocated and nothing past
 * the end is read. Then it copies the spans into one allocation (strings
 * NUL-terminated) and validates their contents (names, UTF-8, duplicate
 * headers, kind-specific rules) with the same checks the encoder applies,
 * so "decodes" and "encodes" accept exactly the same envelopes.
 *
 * Threads: none; every function is reentrant.
 */
#include "cluster/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const uint8_t magic[2] = {'S', 'E'};

/* ---------------------------------------------------------------------
 * Field validation shared by encode and decode.
 * ------------------------------------------------------------------- */

static int is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.';
}

/* `what` must be a name (when non-empty, or always when `required`). */
static int check_name_field(const char *what, const char *s, int required, int code) {
  size_t len = s ? strlen(s) : 0;
  if (len == 0)
    return required ? stead__err(code, "%s is empty", what) : 0;
  if (len > STEAD__MAX_NAME)
    return stead__err(code == STEAD_EPROTO ? code : STEAD_ETOOBIG,
                      "%s is %zu bytes; the limit is %d", what, len, STEAD__MAX_NAME);
  for (size_t i = 0; i < len; i++)
    if (!is_name_char(s[i]))
      return stead__err(code, "%s has a character outside [A-Za-z0-9_.-] at byte %zu",
                        what, i);
  return 0;
}

/* UTF-8 text of 0..max bytes (1..max when required). */
static int check_text_field(const char *what, const char *s, size_t max, int required,
                            int code) {
  size_t len = s ? strlen(s) : 0;
  if (len == 0)
    return required ? stead__err(code, "%s is empty", what) : 0;
  if (len > max)
    return stead__err(code == STEAD_EPROTO ? code : STEAD_ETOOBIG,
                      "%s is %zu bytes; the limit is %zu", what, len, max);
  int rc = stead__check_utf8(what, s, max);
  if (rc != 0)
    return stead__err(code, "%s is not valid UTF-8", what);
  return 0;
}

static int check_headers(const stead__env_header *h, size_t n, unsigned flags, int code) {
  if (n > STEAD__ENV_MAX_HEADERS)
    return stead__err(code == STEAD_EPROTO ? code : STEAD_ETOOBIG,
                      "%zu headers; the limit is %d", n, STEAD__ENV_MAX_HEADERS);
  if (n > 0 && !h)
    return stead__err(code, "headers is NULL but the count is %zu", n);
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    int rc = check_name_field("header key", h[i].key, 1, code);
    if (rc == 0)
      rc = check_text_field("header value", h[i].value, STEAD__ENV_MAX_HEADER_VALUE, 0,
                            code);
    if (rc != 0) {
      char why[256];
      snprintf(why, sizeof why, "%s", stead_errmsg());
      return stead__err(rc, "header %zu: %s", i, why);
    }
    const char *reserved = STEAD__ENV_RESERVED_PREFIX;
    if (!(flags & STEAD__ENV_INTERNAL) &&
        strncasecmp(h[i].key, reserved, strlen(reserved)) == 0)
      return stead__err(code, "header \"%s\" uses the reserved prefix \"%s\"", h[i].key,
                        reserved);
    for (size_t j = 0; j < i; j++)
      if (strcmp(h[j].key, h[i].key) == 0)
        return stead__err(code, "header \"%s\" appears twice", h[i].key);
    total += strlen(h[i].key) + (h[i].value ? strlen(h[i].value) : 0);
  }
  if (total > STEAD__ENV_MAX_HEADER_BYTES)
    return stead__err(code == STEAD_EPROTO ? code : STEAD_ETOOBIG,
                      "headers hold %zu bytes; the limit is %d", total,
                      STEAD__ENV_MAX_HEADER_BYTES);
  return 0;
}

int stead__env_check_headers(const stead__env_header *h, size_t n, unsigned flags) {
  return check_headers(h, n, flags, STEAD_EINVAL);
}

/* Every rule of the format, with errors reported as `code` (EINVAL when
 * encoding what a caller built, EPROTO when decoding what a peer sent). */
static int check_env(const stead__env *e, size_t max_payload, unsigned flags, int code) {
  if (e->kind < STEAD__ENV_REQUEST || e->kind > STEAD__ENV_ERROR)
    return stead__err(code, "kind %d is not request, reply, one-way or error", e->kind);
  if (e->shard >= STEAD_MAX_SHARDS)
    return stead__err(code, "shard %u is not below %d", e->shard, STEAD_MAX_SHARDS);
  if (e->created_ms < 0 || e->deadline_ms < 0)
    return stead__err(code, "created-at and deadline must not be negative");
  int addressed = e->kind == STEAD__ENV_REQUEST || e->kind == STEAD__ENV_ONEWAY;
  int rc = check_name_field("class", e->cls, addressed, code);
  if (rc == 0)
    rc = check_text_field("id", e->id, STEAD__MAX_ID, addressed, code);
  if (rc == 0)
    rc = check_name_field("method", e->method, addressed, code);
  if (rc == 0)
    rc = check_headers(e->headers, e->nheaders, flags, code);
  if (rc == 0)
    rc = check_text_field("message", e->message, STEAD__ENV_MAX_MESSAGE, 0, code);
  if (rc != 0)
    return rc;
  if (e->kind == STEAD__ENV_ERROR && e->status >= 0)
    return stead__err(code, "an error reply needs a negative status, not %d", e->status);
  if (e->kind != STEAD__ENV_ERROR && e->status != 0)
    return stead__err(code, "status %d is allowed only in an error reply", e->status);
  if (e->kind != STEAD__ENV_ERROR && e->message && e->message[0])
    return stead__err(code, "a message is allowed only in an error reply");
  if (e->payload_len > 0 && !e->payload)
    return stead__err(code, "payload is NULL but its length is %zu", e->payload_len);
  if (e->payload_len > max_payload)
    return stead__err(STEAD_ETOOBIG, "payload is %zu bytes; the limit is %zu",
                      e->payload_len, max_payload);
  return 0;
}

/* ---------------------------------------------------------------------
 * Encoding.
 * ------------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static int put_int(stead__buf *b, uint64_t v, int n) {
  uint8_t tmp[8];
  put_le(tmp, v, n);
  return stead__buf_append(b, tmp, (size_t)n);
}

/* A string with an n-byte length prefix (limits already checked). */
static int put_str(stead__buf *b, const char *s, int n) {
  size_t len = s ? strlen(s) : 0;
  int rc = put_int(b, len, n);
  return rc ? rc : stead__buf_append(b, s, len);
}

static int encode_body(const stead__env *e, stead__buf *b) {
  uint8_t fixed[STEAD__ENV_FIXED];
  fixed[0] = magic[0];
  fixed[1] = magic[1];
  fixed[2] = STEAD__ENV_VERSION;
  fixed[3] = (uint8_t)e->kind;
  fixed[4] = 0;
  put_le(fixed + 5, e->shard, 4);
  put_le(fixed + 9, e->epoch, 8);
  put_le(fixed + 17, e->corr, 8);
  put_le(fixed + 25, (uint64_t)e->created_ms, 8);
  put_le(fixed + 33, (uint64_t)e->deadline_ms, 8);
  put_le(fixed + 41, e->ttl_ms, 4);
  put_le(fixed + 45, (uint32_t)e->status, 4);
  int rc = stead__buf_append(b, fixed, sizeof fixed);
  if (rc == 0)
    rc = put_str(b, e->cls, 1);
  if (rc == 0)
    rc = put_str(b, e->id, 2);
  if (rc == 0)
    rc = put_str(b, e->method, 1);
  if (rc == 0)
    rc = put_int(b, e->nheaders, 2);
  for (size_t i = 0; rc == 0 && i < e->nheaders; i++) {
    rc = put_str(b, e->headers[i].key, 1);
    if (rc == 0)
      rc = put_str(b, e->headers[i].value, 2);
  }
  if (rc == 0)
    rc = put_str(b, e->message, 2);
  if (rc == 0)
    rc = put_int(b, e->payload_len, 4);
  if (rc == 0)
    rc = stead__buf_append(b, e->payload, e->payload_len);
  return rc;
}

int stead__env_encode(const stead__env *e, size_t max_payload, unsigned flags,
                      stead__buf *out) {
  if (!e || !out)
    return stead__err(STEAD_EINVAL, "envelope and output buffer must not be NULL");
  if (max_payload == 0)
    max_payload = STEAD__ENV_DEFAULT_MAX_PAYLOAD;
  if (max_payload > UINT32_MAX)
    max_payload = UINT32_MAX;
  int rc = check_env(e, max_payload, flags, STEAD_EINVAL);
  if (rc != 0)
    return rc;
  size_t start = out->len;
  rc = encode_body(e, out);
  if (rc != 0) {
    out->len = start;
    return stead__err(STEAD_ENOMEM, "out of memory encoding an envelope");
  }
  return 0;
}

/* ---------------------------------------------------------------------
 * Decoding.
 * ------------------------------------------------------------------- */

typedef struct cursor {
  const uint8_t *p;
  size_t left;
} cursor;

typedef struct span {
  const uint8_t *p;
  size_t len;
} span;

static int take(cursor *c, size_t n, const char *what, const uint8_t **out) {
  if (n > c->left)
    return stead__err(STEAD_EPROTO, "envelope truncated in %s: needs %zu bytes, %zu left",
                      what, n, c->left);
  *out = c->p;
  c->p += n;
  c->left -= n;
  return 0;
}

static int take_int(cursor *c, int n, const char *what, uint64_t *v) {
  const uint8_t *p = NULL;
  int rc = take(c, (size_t)n, what, &p);
  if (rc != 0)
    return rc;
  *v = 0;
  for (int i = n - 1; i >= 0; i--)
    *v = (*v << 8) | p[i];
  return 0;
}

/* A length-prefixed field whose length must be <= max. */
static int take_span(cursor *c, int prefix, size_t max, const char *what, span *s) {
  uint64_t len;
  int rc = take_int(c, prefix, what, &len);
  if (rc != 0)
    return rc;
  if (len > max)
    return stead__err(STEAD_EPROTO, "%s is %llu bytes; the limit is %zu", what,
                      (unsigned long long)len, max);
  s->len = (size_t)len;
  return take(c, s->len, what, &s->p);
}

typedef struct spans {
  span cls, id, method, message, payload;
  span hkey[STEAD__ENV_MAX_HEADERS], hval[STEAD__ENV_MAX_HEADERS];
  size_t nheaders;
} spans;

static int parse_fixed(cursor *c, stead__env *e) {
  const uint8_t *f = NULL;
  if (c->left >= 2 && memcmp(c->p, magic, 2) != 0)
    return stead__err(STEAD_EPROTO, "not an envelope (bad magic)");
  int rc = take(c, STEAD__ENV_FIXED, "the fixed header", &f);
  if (rc != 0)
    return rc;
  if (f[2] != STEAD__ENV_VERSION)
    return stead__err(STEAD_EPROTO,
                      "unsupported envelope version %u (this node speaks %d)", f[2],
                      STEAD__ENV_VERSION);
  if (f[4] != 0)
    return stead__err(STEAD_EPROTO, "unknown envelope flags 0x%02x", f[4]);
  cursor fc = {f + 3, STEAD__ENV_FIXED - 3};
  uint64_t v[9];
  static const int width[9] = {1, 1, 4, 8, 8, 8, 8, 4, 4};
  for (int i = 0; i < 9; i++)
    (void)take_int(&fc, width[i], "the fixed header", &v[i]);
  e->kind = (stead__env_kind)v[0];
  e->shard = (uint32_t)v[2];
  e->epoch = v[3];
  e->corr = v[4];
  e->created_ms = (int64_t)v[5];
  e->deadline_ms = (int64_t)v[6];
  e->ttl_ms = (uint32_t)v[7];
  e->status = (int32_t)(uint32_t)v[8];
  return 0;
}

static int parse_spans(cursor *c, size_t max_payload, spans *s) {
  int rc = take_span(c, 1, STEAD__MAX_NAME, "class", &s->cls);
  if (rc == 0)
    rc = take_span(c, 2, STEAD__MAX_ID, "id", &s->id);
  if (rc == 0)
    rc = take_span(c, 1, STEAD__MAX_NAME, "method", &s->method);
  uint64_t nh = 0;
  if (rc == 0)
    rc = take_int(c, 2, "the header count", &nh);
  if (rc == 0 && nh > STEAD__ENV_MAX_HEADERS)
    rc = stead__err(STEAD_EPROTO, "%llu headers; the limit is %d", (unsigned long long)nh,
                    STEAD__ENV_MAX_HEADERS);
  for (size_t i = 0; rc == 0 && i < nh; i++) {
    rc = take_span(c, 1, STEAD__ENV_MAX_HEADER_KEY, "a header key", &s->hkey[i]);
    if (rc == 0)
      rc = take_span(c, 2, STEAD__ENV_MAX_HEADER_VALUE, "a header value", &s->hval[i]);
  }
  s->nheaders = (size_t)nh;
  if (rc == 0)
    rc = take_span(c, 2, STEAD__ENV_MAX_MESSAGE, "message", &s->message);
  uint64_t plen = 0;
  if (rc == 0)
    rc = take_int(c, 4, "the payload length", &plen);
  if (rc == 0 && plen > max_payload)
    return stead__err(STEAD_ETOOBIG, "payload is %llu bytes; the limit is %zu",
                      (unsigned long long)plen, max_payload);
  if (rc == 0)
    rc = take(c, (size_t)plen, "the payload", &s->payload.p);
  s->payload.len = (size_t)plen;
  if (rc == 0 && c->left != 0)
    rc = stead__err(STEAD_EPROTO, "%zu bytes after the payload", c->left);
  return rc;
}

/* Copies a span into the block as a NUL-terminated string. An embedded NUL
 * would silently shorten the string, so it is an error. */
static int copy_str(char **w, span s, const char *what, const char **out) {
  if (s.len && memchr(s.p, 0, s.len))
    return stead__err(STEAD_EPROTO, "%s contains a NUL byte", what);
  char *dst = *w;
  if (s.len)
    memcpy(dst, s.p, s.len);
  dst[s.len] = 0;
  *w += s.len + 1;
  *out = dst;
  return 0;
}

static int materialize(const spans *s, unsigned flags, stead__env *e) {
  size_t strings = s->cls.len + s->id.len + s->method.len + s->message.len + 4;
  for (size_t i = 0; i < s->nheaders; i++)
    strings += s->hkey[i].len + s->hval[i].len + 2;
  size_t hdr_bytes = s->nheaders * sizeof(stead__env_header);
  size_t copy = (flags & STEAD__ENV_COPY_PAYLOAD) ? s->payload.len : 0;
  uint8_t *block = malloc(hdr_bytes + copy + strings);
  if (!block)
    return stead__err(STEAD_ENOMEM, "out of memory decoding an envelope");
  e->owned_ = block;
  stead__env_header *h = (stead__env_header *)block;
  uint8_t *pay = block + hdr_bytes;
  char *w = (char *)(pay + copy);
  int rc = copy_str(&w, s->cls, "class", &e->cls);
  if (rc == 0)
    rc = copy_str(&w, s->id, "id", &e->id);
  if (rc == 0)
    rc = copy_str(&w, s->method, "method", &e->method);
  if (rc == 0)
    rc = copy_str(&w, s->message, "message", &e->message);
  for (size_t i = 0; rc == 0 && i < s->nheaders; i++) {
    rc = copy_str(&w, s->hkey[i], "a header key", &h[i].key);
    if (rc == 0)
      rc = copy_str(&w, s->hval[i], "a header value", &h[i].value);
  }
  e->headers = s->nheaders ? h : NULL;
  e->nheaders = s->nheaders;
  if (copy) {
    memcpy(pay, s->payload.p, copy);
    e->payload = pay;
  } else {
    e->payload = s->payload.len ? s->payload.p : NULL;
  }
  e->payload_len = s->payload.len;
  return rc;
}

int stead__env_decode(const void *data, size_t len, size_t max_payload, unsigned flags,
                      stead__env *out) {
  if (!out)
    return stead__err(STEAD_EINVAL, "out must not be NULL");
  memset(out, 0, sizeof *out);
  if (!data && len > 0)
    return stead__err(STEAD_EINVAL, "data is NULL but len is %zu", len);
  if (max_payload == 0)
    max_payload = STEAD__ENV_DEFAULT_MAX_PAYLOAD;
  if (max_payload > UINT32_MAX)
    max_payload = UINT32_MAX;
  cursor c = {data, len};
  spans s;
  int rc = parse_fixed(&c, out);
  if (rc == 0)
    rc = parse_spans(&c, max_payload, &s);
  if (rc == 0)
    rc = materialize(&s, flags, out);
  /* Headers from peers may be internal ones; the user-facing rule is
   * enforced where users hand headers in, not on the wire. */
  if (rc == 0)
    rc = check_env(out, max_payload, STEAD__ENV_INTERNAL, STEAD_EPROTO);
  if (rc != 0) {
    stead__env_free(out);
    memset(out, 0, sizeof *out);
  }
  return rc;
}

void stead__env_free(stead__env *e) {
  if (!e)
    return;
  free(e->owned_);
  e->owned_ = NULL;
}

int64_t stead__env_deadline(const stead__env *e) {
  int64_t d = e->deadline_ms;
  if (e->ttl_ms) {
    /* Saturate: a peer may send created-at near INT64_MAX. */
    int64_t t = e->created_ms > INT64_MAX - (int64_t)e->ttl_ms
                    ? INT64_MAX
                    : e->created_ms + (int64_t)e->ttl_ms;
    if (d == 0 || t < d)
      d = t;
  }
  return d;
}

int stead__env_expired(const stead__env *e, int64_t now_ms) {
  int64_t d = stead__env_deadline(e);
  return d != 0 && now_ms >= d;
}

const char *stead__env_header_get(const stead__env *e, const char *key) {
  for (size_t i = 0; key && i < e->nheaders; i++)
    if (strcmp(e->headers[i].key, key) == 0)
      return e->headers[i].value ? e->headers[i].value : "";
  return NULL;
}
