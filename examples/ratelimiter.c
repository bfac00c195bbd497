/*
 * ratelimiter.c -- the "ratelimiter" example: a fixed-window rate limiter
 * per id, kept in a state struct and reset by a durable alarm.
 *
 *   check  body {"limit":N} or {"limit":N,"window_ms":M}. Replies the JSON
 *          string "allowed" while fewer than N checks were allowed in the
 *          current window (and counts this one), else "rate_limited".
 *
 * State: requests (checks allowed in the window), window_start (ms; 0 when
 * no window is open), window_ms (the open window's length), limit (the
 * last limit asked for, for inspection).
 *
 * Windows and the alarm "reset":
 *   - A check with no open window opens one at now and sets "reset" at
 *     now + window_ms, in the same commit.
 *   - When "reset" fires, the window ends. If the object was used in it
 *     (requests > 0), the next window opens at once and "reset" is set
 *     again one window later, so windows stay contiguous while the object
 *     is busy. If it was not used, no window is left open and no alarm is
 *     set: an idle object costs one trailing alarm after its last check,
 *     then nothing, and it may leave memory. Its next check opens a fresh
 *     window.
 *   - A check that arrives after its window's end but before the alarm's
 *     turn (alarms can run late under load or after a restart) does not
 *     count against the old window: it starts a new one itself and moves
 *     the alarm. Correctness never depends on alarm lateness.
 *     If the old alarm had already fired, its turn finds the window not
 *     yet over and sets the alarm again for the new window's end (an alarm
 *     turn that returns 0 would otherwise delete it).
 *   - A different window_ms applies from the next window on; a different
 *     limit applies at once (the limit is the caller's, per check).
 *
 * Bad bodies fail with STEAD_EINVAL (HTTP 400) and a message naming the
 * problem; nothing is counted.
 */
#include "examples.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_WINDOW_MS 60000
#define MIN_WINDOW_MS     10
#define MAX_WINDOW_MS     (INT64_C(7) * 24 * 3600 * 1000) /* a week */
#define MAX_LIMIT         (INT64_C(1) << 40)
#define ALARM             "reset"

typedef struct ratelimiter {
  int64_t requests;
  int64_t window_start; /* ms since the epoch; 0: no open window */
  int64_t window_ms;
  int64_t limit;
} ratelimiter;

static const stead_field rl_fields[] = {
    STEAD_FIELD_INT64(ratelimiter, requests, 0),
    STEAD_FIELD_TIMESTAMP(ratelimiter, window_start, 0),
    STEAD_FIELD_INT64(ratelimiter, window_ms, 0),
    STEAD_FIELD_INT64(ratelimiter, limit, 0),
};
static const stead_schema rl_schema = STEAD_SCHEMA(ratelimiter, rl_fields);

#define USAGE "check takes {\"limit\":N} or {\"limit\":N,\"window_ms\":M}"

/* Reads an integer member in [lo, hi]; absent leaves *out alone. Returns 0
 * or fails the turn with EINVAL. */
static int int_member(stead_ctx *ctx, json_t *o, const char *name, int64_t lo, int64_t hi,
                      int required, int64_t *out) {
  json_t *v = json_object_get(o, name);
  if (!v && !required)
    return 0;
  if (!json_is_integer(v))
    return stead_fail_code(ctx, STEAD_EINVAL, USAGE ": \"%s\" must be an integer", name);
  json_int_t x = json_integer_value(v);
  if (x < lo || x > hi)
    return stead_fail_code(ctx, STEAD_EINVAL,
                           "\"%s\" must be in %" PRId64 "..%" PRId64 ", got %" PRId64,
                           name, lo, hi, (int64_t)x);
  *out = x;
  return 0;
}

static int parse(stead_ctx *ctx, const void *arg, size_t len, int64_t *limit,
                 int64_t *window_ms) {
  json_error_t jerr;
  json_t *in = len ? json_loadb(arg, len, 0, &jerr) : NULL;
  if (!in)
    return stead_fail_code(ctx, STEAD_EINVAL, USAGE "; the body is %s",
                           len ? jerr.text : "empty");
  int rc = 0;
  const char *key;
  json_t *v;
  if (!json_is_object(in))
    rc = stead_fail_code(ctx, STEAD_EINVAL, USAGE "; the body is not a JSON object");
  json_object_foreach(in, key, v) {
    if (rc == 0 && strcmp(key, "limit") != 0 && strcmp(key, "window_ms") != 0)
      rc = stead_fail_code(ctx, STEAD_EINVAL, USAGE "; unknown member \"%s\"", key);
  }
  *window_ms = DEFAULT_WINDOW_MS;
  if (rc == 0)
    rc = int_member(ctx, in, "limit", 0, MAX_LIMIT, 1, limit);
  if (rc == 0)
    rc = int_member(ctx, in, "window_ms", MIN_WINDOW_MS, MAX_WINDOW_MS, 0, window_ms);
  json_decref(in);
  return rc;
}

/* Opens a window at `start`; the alarm (upsert by name) replaces any
 * earlier one. */
static int open_window(stead_ctx *ctx, ratelimiter *r, int64_t start, int64_t window_ms) {
  r->requests = 0;
  r->window_start = start;
  r->window_ms = window_ms;
  int rc = stead_alarm_set(ctx, ALARM, start + window_ms, NULL, 0);
  if (rc)
    return stead_fail(ctx, "cannot set the reset alarm: %s", stead_errmsg());
  return 0;
}

static int check(stead_ctx *ctx, const void *arg, size_t len) {
  ratelimiter *r = stead_state(ctx);
  int64_t limit, window_ms, now = stead_now_ms(ctx);
  int rc = parse(ctx, arg, len, &limit, &window_ms);
  if (rc)
    return rc;
  if (r->window_start == 0 || now >= r->window_start + r->window_ms)
    if ((rc = open_window(ctx, r, now, window_ms)) != 0)
      return rc;
  r->limit = limit;
  if (r->requests >= limit)
    return stead_reply(ctx, "\"rate_limited\"", 14);
  r->requests++;
  return stead_reply(ctx, "\"allowed\"", 9);
}

static int on_alarm(stead_ctx *ctx, const char *name, const void *meta, size_t meta_len,
                    uint32_t attempt) {
  ratelimiter *r = stead_state(ctx);
  if (strcmp(name, ALARM) != 0)
    return 0; /* not ours (none other is ever set): let it be deleted */
  if (r->window_start == 0)
    return 0; /* a duplicate delivery after the window already closed */
  int64_t end = r->window_start + r->window_ms;
  if (stead_now_ms(ctx) < end) /* fired for a window a late check replaced */
    return stead_alarm_set(ctx, ALARM, end, NULL, 0)
               ? stead_fail(ctx, "%s", stead_errmsg())
               : 0;
  if (r->requests > 0)
    return open_window(ctx, r, stead_now_ms(ctx), r->window_ms);
  r->window_start = 0; /* idle for a whole window: stop ticking */
  return 0;
}

static const stead_method rl_methods[] = {{"check", check}, {NULL, NULL}};

const stead_class stead_example_ratelimiter = {
    .name = "ratelimiter",
    .methods = rl_methods,
    .state_schema = &rl_schema,
    .on_alarm = on_alarm,
    .hibernate_after_ms = 60 * 1000,
    .shutdown_after_ms = 10 * 60 * 1000,
};
