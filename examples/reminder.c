/*
 * reminder.c -- the "reminder" example: named one-shot reminders on
 * durable alarms, with a durable count of how often each fired.
 *
 *   schedule  {"name":S,"in_ms":N,"meta":{...}}: sets the alarm S to fire
 *             N ms from now (0 = at once) with the meta object (optional,
 *             default {}) as its meta bytes, compact JSON. Scheduling a
 *             name again replaces its time and meta. Replies
 *             {"name":S,"at_ms":T}.
 *   cancel    {"name":S}: cancels S if pending. Replies
 *             {"name":S,"canceled":true|false} (false: nothing pending).
 *   fired     replies {"S":times_fired,...} for every name that fired at
 *             least once, in name order.
 *
 * Storage: "f/"+S holds the decimal count of S's firings. on_alarm adds
 * one in the alarm's own turn, so the count and the alarm's deletion
 * commit together: a reminder is counted once per delivery that commits
 * (a crash before the commit re-delivers it, and it is counted then).
 *
 * Limits: a name is 1..128 bytes of UTF-8 (the alarm name limit); in_ms
 * 0..10 years; the meta's JSON at most 64 KiB (STEAD_MAX_ALARM_META).
 * Bad bodies fail with STEAD_EINVAL (HTTP 400), an over-size meta with
 * STEAD_ETOOBIG (413), each with a message naming the problem.
 */
#include "examples.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAME   128
#define MAX_IN_MS  (INT64_C(10) * 365 * 24 * 3600 * 1000)
#define KEY_PREFIX "f/"

/* Parses the body as a JSON object whose members are all in `allowed`
 * (NULL-terminated). NULL after failing the turn with EINVAL. */
static json_t *parse_object(stead_ctx *ctx, const void *arg, size_t len,
                            const char *usage, const char *const *allowed) {
  json_error_t jerr;
  json_t *in = len ? json_loadb(arg, len, 0, &jerr) : NULL;
  if (!in) {
    stead_fail_code(ctx, STEAD_EINVAL, "%s; the body is %s", usage,
                    len ? jerr.text : "empty");
    return NULL;
  }
  if (!json_is_object(in)) {
    json_decref(in);
    stead_fail_code(ctx, STEAD_EINVAL, "%s; the body is not a JSON object", usage);
    return NULL;
  }
  const char *key;
  json_t *v;
  json_object_foreach(in, key, v) {
    size_t i = 0;
    while (allowed[i] && strcmp(allowed[i], key) != 0)
      i++;
    if (!allowed[i]) {
      stead_fail_code(ctx, STEAD_EINVAL, "%s; unknown member \"%s\"", usage, key);
      json_decref(in);
      return NULL;
    }
  }
  return in;
}

/* The "name" member: a string of 1..MAX_NAME bytes without NUL. NULL after
 * failing the turn. */
static const char *name_member(stead_ctx *ctx, json_t *in, const char *usage) {
  json_t *v = json_object_get(in, "name");
  if (!json_is_string(v)) {
    stead_fail_code(ctx, STEAD_EINVAL, "%s; \"name\" must be a string", usage);
    return NULL;
  }
  size_t n = json_string_length(v);
  if (n == 0 || n > MAX_NAME || strlen(json_string_value(v)) != n) {
    stead_fail_code(ctx, STEAD_EINVAL,
                    "\"name\" must be 1..%d bytes without NUL, got %zu bytes", MAX_NAME,
                    n);
    return NULL;
  }
  return json_string_value(v);
}

static int reply_json(stead_ctx *ctx, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s)
    return stead_fail(ctx, "out of memory building the reply");
  int rc = stead_reply(ctx, s, strlen(s));
  free(s);
  return rc;
}

#define SCHEDULE_USAGE "schedule takes {\"name\":S,\"in_ms\":N,\"meta\":{...}}"

static int schedule(stead_ctx *ctx, const void *arg, size_t len) {
  static const char *const allowed[] = {"name", "in_ms", "meta", NULL};
  json_t *in = parse_object(ctx, arg, len, SCHEDULE_USAGE, allowed);
  if (!in)
    return STEAD_EINVAL;
  int rc = 0;
  char *meta = NULL;
  const char *name = name_member(ctx, in, SCHEDULE_USAGE);
  json_t *in_ms = json_object_get(in, "in_ms"), *m = json_object_get(in, "meta");
  if (!name)
    rc = STEAD_EINVAL;
  else if (!json_is_integer(in_ms) || json_integer_value(in_ms) < 0 ||
           json_integer_value(in_ms) > MAX_IN_MS)
    rc = stead_fail_code(ctx, STEAD_EINVAL,
                         SCHEDULE_USAGE "; \"in_ms\" must be an integer in 0..%" PRId64,
                         MAX_IN_MS);
  else if (m && !json_is_object(m))
    rc =
        stead_fail_code(ctx, STEAD_EINVAL, SCHEDULE_USAGE "; \"meta\" must be an object");
  else if (!(meta = m ? json_dumps(m, JSON_COMPACT) : strdup("{}")))
    rc = stead_fail(ctx, "out of memory encoding the meta");
  else if (strlen(meta) > STEAD_MAX_ALARM_META)
    rc = stead_fail_code(ctx, STEAD_ETOOBIG,
                         "\"meta\" is %zu bytes of JSON; the limit is %d", strlen(meta),
                         STEAD_MAX_ALARM_META);
  if (rc == 0) {
    int64_t at = stead_now_ms(ctx) + json_integer_value(in_ms);
    if (stead_alarm_set(ctx, name, at, meta, strlen(meta)) != 0)
      rc = stead_fail(ctx, "cannot set the alarm: %s", stead_errmsg());
    else
      rc = reply_json(ctx, json_pack("{s:s,s:I}", "name", name, "at_ms", (json_int_t)at));
  }
  free(meta);
  json_decref(in);
  return rc;
}

#define CANCEL_USAGE "cancel takes {\"name\":S}"

static int cancel(stead_ctx *ctx, const void *arg, size_t len) {
  static const char *const allowed[] = {"name", NULL};
  json_t *in = parse_object(ctx, arg, len, CANCEL_USAGE, allowed);
  if (!in)
    return STEAD_EINVAL;
  const char *name = name_member(ctx, in, CANCEL_USAGE);
  int rc = name ? 0 : STEAD_EINVAL, pending = 0;
  stead_alarm_info *al = NULL;
  size_t n = 0;
  if (rc == 0 && stead_alarm_list(ctx, &al, &n) != 0)
    rc = stead_fail(ctx, "cannot list alarms: %s", stead_errmsg());
  for (size_t i = 0; rc == 0 && i < n; i++)
    pending |= strcmp(al[i].name, name) == 0;
  stead_free(al);
  if (rc == 0 && pending && stead_alarm_cancel(ctx, name) != 0)
    rc = stead_fail(ctx, "cannot cancel: %s", stead_errmsg());
  if (rc == 0)
    rc = reply_json(ctx, json_pack("{s:s,s:b}", "name", name, "canceled", pending));
  json_decref(in);
  return rc;
}

static int fired(stead_ctx *ctx, const void *arg, size_t len) {
  stead_list_opts o = {0};
  o.prefix = KEY_PREFIX;
  o.prefix_len = strlen(KEY_PREFIX);
  stead_kv *kv = NULL;
  size_t n = 0;
  if (stead_list(ctx, &o, &kv, &n) != 0)
    return stead_fail(ctx, "cannot list counts: %s", stead_errmsg());
  json_t *out = json_object();
  for (size_t i = 0; out && i < n; i++) {
    /* Keys come from alarm names, which are UTF-8; values are decimal
     * text, not NUL-terminated inside the listing. */
    char num[24] = "";
    if (kv[i].value_len < sizeof num)
      memcpy(num, kv[i].value, kv[i].value_len);
    json_t *v = json_integer(strtoll(num, NULL, 10));
    const char *name = (const char *)kv[i].key + o.prefix_len;
    if (json_object_setn_new(out, name, kv[i].key_len - o.prefix_len, v) != 0) {
      json_decref(out);
      out = NULL;
    }
  }
  stead_free(kv);
  return reply_json(ctx, out);
}

static int on_alarm(stead_ctx *ctx, const char *name, const void *meta, size_t meta_len,
                    uint32_t attempt) {
  char key[sizeof KEY_PREFIX + MAX_NAME + 8];
  int kl = snprintf(key, sizeof key, KEY_PREFIX "%s", name);
  if (kl < 0 || (size_t)kl >= sizeof key)
    return 0; /* not a reminder's name (longer than schedule allows): drop it */
  void *v = NULL;
  size_t vl = 0;
  long long count = 0;
  int rc = stead_get(ctx, key, (size_t)kl, &v, &vl);
  if (rc == 0)
    count = strtoll(v, NULL, 10);
  else if (rc != STEAD_ENOTFOUND)
    return stead_fail(ctx, "reading the count of %s: %s", name, stead_errmsg());
  stead_free(v);
  char num[24];
  int nl = snprintf(num, sizeof num, "%lld", count + 1);
  if (stead_put(ctx, key, (size_t)kl, num, (size_t)nl) != 0)
    return stead_fail(ctx, "storing the count of %s: %s", name, stead_errmsg());
  return 0;
}

static const stead_method reminder_methods[] = {
    {"schedule", schedule}, {"cancel", cancel}, {"fired", fired}, {NULL, NULL}};

const stead_class stead_example_reminder = {
    .name = "reminder",
    .methods = reminder_methods,
    .on_alarm = on_alarm,
    .hibernate_after_ms = 60 * 1000,
    .shutdown_after_ms = 10 * 60 * 1000,
};
