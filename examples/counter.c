/*
 * counter.c -- the "counter" example: a durable counter kept in a state
 * struct (the declarative path).
 *
 *   increment  body: a JSON integer n, or empty for 1. Replies the new
 *              count as a JSON integer. Overflow fails the call.
 *   get        replies the count.
 *   reset      sets the count to 0 and replies 0.
 *
 * A malformed body fails with STEAD_EINVAL (HTTP 400).
 *
 * The struct is saved in the turn's commit only when it changed, and the
 * reply waits for that commit, so an acknowledged increment survives a
 * crash of the process.
 */
#include "examples.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counter {
  int64_t count;
  int64_t last_incremented_at; /* ms since the epoch */
} counter;

static const stead_field counter_fields[] = {
    STEAD_FIELD_INT64(counter, count, 0),
    STEAD_FIELD_TIMESTAMP(counter, last_incremented_at, 0),
};
static const stead_schema counter_schema = STEAD_SCHEMA(counter, counter_fields);

/* Parses a whole body that is one JSON integer (surrounding white space
 * allowed). An empty body means 1. */
static int parse_amount(const char *p, size_t len, int64_t *out) {
  char buf[32];
  size_t a = 0, b = len;
  while (a < b && strchr(" \t\r\n", p[a]))
    a++;
  while (b > a && strchr(" \t\r\n", p[b - 1]))
    b--;
  if (a == b) {
    *out = 1;
    return 0;
  }
  if (b - a >= sizeof buf)
    return -1;
  memcpy(buf, p + a, b - a);
  buf[b - a] = 0;
  const char *s = buf[0] == '-' ? buf + 1 : buf;
  if (!*s || (s[0] == '0' && s[1]))
    return -1; /* JSON: no leading zeros */
  for (const char *q = s; *q; q++)
    if (*q < '0' || *q > '9')
      return -1;
  errno = 0;
  long long v = strtoll(buf, NULL, 10);
  if (errno == ERANGE)
    return -1;
  *out = v;
  return 0;
}

static int reply_int(stead_ctx *ctx, int64_t v) {
  char out[32];
  int k = snprintf(out, sizeof out, "%" PRId64, v);
  return stead_reply(ctx, out, (size_t)k);
}

static int increment(stead_ctx *ctx, const void *arg, size_t len) {
  counter *c = stead_state(ctx);
  int64_t n;
  if (parse_amount(arg, len, &n) != 0)
    return stead_fail_code(ctx, STEAD_EINVAL,
                           "increment takes a JSON integer (or an empty body for 1)");
  if ((n > 0 && c->count > INT64_MAX - n) || (n < 0 && c->count < INT64_MIN - n))
    return stead_fail(ctx, "count would overflow: %" PRId64 " + %" PRId64, c->count, n);
  c->count += n;
  c->last_incremented_at = stead_now_ms(ctx);
  return reply_int(ctx, c->count);
}

static int get(stead_ctx *ctx, const void *arg, size_t len) {
  return reply_int(ctx, ((counter *)stead_state(ctx))->count);
}

static int reset(stead_ctx *ctx, const void *arg, size_t len) {
  ((counter *)stead_state(ctx))->count = 0;
  return reply_int(ctx, 0);
}

static const stead_method counter_methods[] = {
    {"increment", increment}, {"get", get}, {"reset", reset}, {NULL, NULL}};

const stead_class stead_example_counter = {
    .name = "counter",
    .methods = counter_methods,
    .state_schema = &counter_schema,
    .hibernate_after_ms = 60 * 1000,
    .shutdown_after_ms = 10 * 60 * 1000,
};
