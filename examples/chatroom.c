/*
 * chatroom.c -- class "chatroom": a chat room per id, with a durable
 * history and a live feed on the event bus.
 *
 * Storage (the object's own key space): "seq" holds the last message id
 * as decimal text; each message is stored as its JSON under "m" followed
 * by its id zero-padded to 20 digits, so key order is id order and the
 * history is one reverse listing. Keys older than the last HISTORY are
 * deleted in the turn that posts, so a room's storage stays bounded.
 *
 * Malformed bodies and room ids that cannot be a topic segment fail with
 * STEAD_EINVAL (HTTP 400) and a message saying what is wrong.
 *
 * "post" emits chat.{room}.message through the transactional emit: the
 * event leaves only once the message is durably stored, and a failed post
 * publishes nothing. A room id therefore has to be one topic segment (no
 * '.', '*', spaces or control characters).
 *
 * Connections (WebSockets through the gateway): on_connect accepts anyone;
 * the connect's meta, if any, is the user name kept as the connection's
 * attachment (so it survives the room's hibernation). Every post -- by
 * HTTP or by a connection's message {"text":T} (or {"user":U,"text":T})
 * -- is sent to every connection of the room, after it is stored. A bad
 * message gets {"error":"..."} back on its own connection.
 */
#include "examples.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY  100
#define MAX_USER 128
#define MAX_TEXT 4096

static void msg_key(char out[22], unsigned long long seq) {
  snprintf(out, 22, "m%020llu", seq);
}

static int read_seq(stead_ctx *ctx, unsigned long long *seq) {
  void *v = NULL;
  size_t n = 0;
  int rc = stead_get(ctx, "seq", 3, &v, &n);
  *seq = 0;
  if (rc == STEAD_ENOTFOUND)
    return 0;
  if (rc)
    return rc;
  *seq = strtoull(v, NULL, 10);
  stead_free(v);
  return 0;
}

/* A string member of 1..max bytes, or NULL after stead_fail. */
static const char *field(stead_ctx *ctx, json_t *o, const char *name, size_t max) {
  json_t *v = json_object_get(o, name);
  if (!json_is_string(v)) {
    stead_fail_code(ctx, STEAD_EINVAL,
                    "post needs {\"user\":U,\"text\":T}: \"%s\" must be a string", name);
    return NULL;
  }
  size_t len = json_string_length(v);
  if (len == 0 || len > max) {
    stead_fail_code(ctx, STEAD_EINVAL, "\"%s\" must be 1..%zu bytes, got %zu", name, max,
                    len);
    return NULL;
  }
  return json_string_value(v);
}

/* The room's topic, or a failure of the turn when the id cannot be one. */
static int room_topic(stead_ctx *ctx, char topic[STEAD_TOPIC_MAX_LEN + 1]) {
  const char *room = stead_object_id(ctx);
  if (strchr(room, '.') ||
      snprintf(topic, STEAD_TOPIC_MAX_LEN + 1, "chat.%s.message", room) >
          STEAD_TOPIC_MAX_LEN ||
      stead_topic_validate(topic) != 0)
    return stead_fail_code(
        ctx, STEAD_EINVAL,
        "room id \"%s\" cannot be a topic segment (no '.', '*', spaces, "
        "control characters; at most %d bytes)",
        room, STEAD_TOPIC_MAX_LEN - 13);
  return 0;
}

/* Sends msg to every connection of the room (after the commit). */
static int broadcast(stead_ctx *ctx, const char *msg) {
  stead_conn **cs = NULL;
  size_t n = 0;
  int rc = stead_conn_list(ctx, NULL, &cs, &n);
  for (size_t i = 0; !rc && i < n; i++) {
    rc = stead_conn_send(cs[i], msg, strlen(msg), STEAD_CONN_TEXT);
    if (rc == STEAD_ECLOSED)
      rc = 0; /* it closed during this turn: it simply misses the post */
  }
  stead_free(cs);
  return rc;
}

/* Stores, emits and broadcasts one message; *seq receives its id. */
static int store_post(stead_ctx *ctx, const char *topic, const char *user,
                      const char *text, unsigned long long *seq_out) {
  unsigned long long seq;
  int rc = read_seq(ctx, &seq);
  char *msg = NULL;
  if (!rc) {
    seq++;
    json_t *m = json_pack("{s:I,s:s,s:s,s:I}", "id", (json_int_t)seq, "user", user,
                          "text", text, "at", (json_int_t)stead_now_ms(ctx));
    msg = m ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    if (!msg)
      rc = STEAD_ENOMEM;
  }
  char key[22], num[24];
  if (!rc) {
    msg_key(key, seq);
    rc = stead_put(ctx, key, strlen(key), msg, strlen(msg));
  }
  if (!rc && seq > HISTORY) {
    msg_key(key, seq - HISTORY);
    rc = stead_delete(ctx, key, strlen(key));
  }
  int nl = snprintf(num, sizeof num, "%llu", seq);
  if (!rc)
    rc = stead_put(ctx, "seq", 3, num, (size_t)nl);
  if (!rc)
    rc = stead_emit(ctx, topic, msg, strlen(msg));
  if (!rc)
    rc = broadcast(ctx, msg);
  free(msg);
  *seq_out = seq;
  return rc;
}

static int chat_post(stead_ctx *ctx, const void *arg, size_t len) {
  char topic[STEAD_TOPIC_MAX_LEN + 1];
  int rc = room_topic(ctx, topic);
  if (rc)
    return rc;
  json_error_t jerr;
  json_t *in = json_loadb(arg, len, 0, &jerr);
  if (!in)
    return stead_fail_code(ctx, STEAD_EINVAL,
                           "post body is not valid JSON: %s (at byte %d)", jerr.text,
                           jerr.position);
  if (!json_is_object(in)) {
    json_decref(in);
    return stead_fail_code(ctx, STEAD_EINVAL,
                           "post needs a JSON object {\"user\":U,\"text\":T}");
  }
  const char *user = field(ctx, in, "user", MAX_USER);
  const char *text = user ? field(ctx, in, "text", MAX_TEXT) : NULL;
  if (!text) {
    json_decref(in);
    return STEAD_EINVAL;
  }
  unsigned long long seq = 0;
  rc = store_post(ctx, topic, user, text, &seq);
  json_decref(in);
  if (rc)
    return stead_fail(ctx, "post failed: %s", stead_errmsg());
  char num[24];
  int nl = snprintf(num, sizeof num, "%llu", seq);
  return stead_reply(ctx, num, (size_t)nl);
}

/* ---- connections ---- */

static int chat_connect(stead_ctx *ctx, stead_conn *conn, const void *meta, size_t len) {
  char topic[STEAD_TOPIC_MAX_LEN + 1];
  int rc = room_topic(ctx, topic);
  if (rc)
    return stead_conn_reject(ctx, "room id \"%s\" cannot be a room (see post)",
                             stead_object_id(ctx));
  if (len > MAX_USER)
    return stead_conn_reject(ctx, "user name is over %d bytes", MAX_USER);
  if (len)
    return stead_conn_set_attachment(ctx, conn, meta, len);
  return 0;
}

/* Answers a bad message on its own connection; the turn still commits. */
static int reply_error(stead_conn *conn, const char *why) {
  json_t *j = json_pack("{s:s}", "error", why);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  int rc = s ? stead_conn_send(conn, s, strlen(s), STEAD_CONN_TEXT) : STEAD_ENOMEM;
  free(s);
  return rc == STEAD_ECLOSED ? 0 : rc;
}

static int chat_conn_message(stead_ctx *ctx, stead_conn *conn, const void *data,
                             size_t len, unsigned flags) {
  char topic[STEAD_TOPIC_MAX_LEN + 1];
  int rc = room_topic(ctx, topic);
  if (rc)
    return rc;
  json_error_t jerr;
  json_t *in = json_loadb(data, len, 0, &jerr);
  json_t *t = json_is_object(in) ? json_object_get(in, "text") : NULL;
  json_t *u = json_is_object(in) ? json_object_get(in, "user") : NULL;
  if (!json_is_string(t) || json_string_length(t) == 0 ||
      json_string_length(t) > MAX_TEXT || (u && !json_is_string(u))) {
    json_decref(in);
    return reply_error(conn, "send {\"text\":T} (1..4096 bytes), optionally with "
                             "\"user\":U");
  }
  char user[MAX_USER + 1] = "anonymous";
  const void *att = NULL;
  size_t al = 0;
  if (u && json_string_length(u) > 0 && json_string_length(u) <= MAX_USER)
    snprintf(user, sizeof user, "%s", json_string_value(u));
  else if (stead_conn_attachment(ctx, conn, &att, &al) == 0 && al)
    snprintf(user, sizeof user, "%.*s", (int)al, (const char *)att);
  unsigned long long seq;
  rc = store_post(ctx, topic, user, json_string_value(t), &seq);
  json_decref(in);
  if (rc)
    return stead_fail(ctx, "post failed: %s", stead_errmsg());
  return 0;
}

static int chat_history(stead_ctx *ctx, const void *arg, size_t len) {
  stead_list_opts o = {0};
  o.prefix = "m";
  o.prefix_len = 1;
  o.reverse = 1; /* with a limit: the last HISTORY keys */
  o.limit = HISTORY;
  stead_kv *kv = NULL;
  size_t n = 0;
  int rc = stead_list(ctx, &o, &kv, &n);
  if (rc)
    return rc;
  /* Values are JSON already; join them oldest first. */
  size_t total = 2 + n;
  for (size_t i = 0; i < n; i++)
    total += kv[i].value_len;
  char *out = malloc(total), *p = out;
  if (!out) {
    stead_free(kv);
    return stead_fail(ctx, "out of memory");
  }
  *p++ = '[';
  for (size_t i = n; i-- > 0;) {
    memcpy(p, kv[i].value, kv[i].value_len);
    p += kv[i].value_len;
    if (i)
      *p++ = ',';
  }
  *p++ = ']';
  stead_free(kv);
  rc = stead_reply(ctx, out, (size_t)(p - out));
  free(out);
  return rc;
}

static const stead_method chat_methods[] = {
    {"post", chat_post}, {"history", chat_history}, {NULL, NULL}};

const stead_class stead_example_chatroom = {
    .name = "chatroom",
    .methods = chat_methods,
    .on_connect = chat_connect,
    .on_conn_message = chat_conn_message,
};
