/*
 * gateway.c -- HTTP/JSON front of the runtime, on libmicrohttpd.
 *
 * Owns: the MHD daemon (an internal epoll/poll thread pool), one `req` per
 * HTTP request, the server's HTTP metrics.
 *
 * Threads: MHD pool threads run access_cb / completed_cb; runtime threads
 * run call_done. A call never blocks an HTTP thread: the connection is
 * suspended while the object's turn runs and resumed from call_done, so a
 * few HTTP threads carry any number of concurrent calls. A suspended
 * connection has no MHD timeout; the call's own deadline (timeout_ms,
 * passed to stead_call_async) guarantees call_done fires.
 *
 * Invariants:
 *   - req->mu is held from stead_call_async until the connection is
 *     suspended, so call_done always sees `suspended` set and resumes
 *     exactly once (MHD forbids resuming a connection that is not
 *     suspended).
 *   - A req lives until MHD's completed callback; a suspended connection is
 *     never completed, so call_done never touches a freed req.
 *   - The runtime is touched only between gate_enter and gate_leave; once
 *     stead__gw_drain returned, no thread is inside or will enter, so the
 *     owner may close the runtime.
 */
#include "server/gateway.h"

#include "server/httpmetrics.h"
#include "server/params.h"
#include "server/render.h"
#include "server/route.h"
#include "server/sse.h"
#include "server/ws.h"
#include "server/ws_proto.h"
#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { GW_STARTING = 0, GW_READY = 1, GW_DRAINING = 2 };

/* Bytes an event stream's client may lag behind before it is cut off. */
#define SSE_MAX_QUEUE ((size_t)1 << 20)
/* WebSockets: bytes a client may lag behind, and the ping interval. */
#define WS_MAX_QUEUE ((size_t)1 << 20)
#define WS_PING_MS   30000
/* Open HTTP connections, WebSockets included (each holds one fd). */
#define GW_MAX_CONNECTIONS 16384

struct stead__gw {
  struct MHD_Daemon *mhd;
  int listen_fd;
  stead_rt *rt;
  atomic_int state;
  atomic_int users;  /* request threads inside a runtime call */
  atomic_int active; /* requests started and not yet completed */
  size_t max_body;
  int default_timeout_ms;
  int shards;
  int cluster; /* 1: the runtime is a cluster node (/v1/cluster asks it) */
  char *node_id, *url, *storage;
  const stead__logger *log;
  stead__httpm *metrics;
  stead__sse *sse; /* GET /v1/events streams */
  stead__ws *ws;   /* GET /v1/objects/{class}/{id}/connect sockets */
};

enum { P_BODY = 0, P_WAIT = 1, P_ANSWERED = 2 };

typedef struct req {
  stead__gw *gw;
  struct MHD_Connection *conn;
  stead__route route;
  int64_t t0;
  int phase;
  int http_status; /* what was answered, for metrics */
  int timeout_ms;
  int mode_send;
  int too_big;
  int json_body; /* the client said Content-Type: application/json */
  stead__buf body;
  /* Filled by call_done under mu. */
  pthread_mutex_t mu;
  int suspended;
  int done;
  int status;
  void *reply;
  size_t reply_len;
  char *message;
  /* A WebSocket connect: the session until the upgrade hands it the
   * socket (ws_attached), the accept key, and the object's answer. */
  stead__ws_sess *ws_sess;
  int ws_attached;
  stead_conn *ws_conn;
  char ws_accept[29];
} req;

/* ---- the runtime gate ---- */

static int gate_enter(stead__gw *gw) {
  atomic_fetch_add(&gw->users, 1);
  if (atomic_load(&gw->state) != GW_READY) {
    atomic_fetch_sub(&gw->users, 1);
    return 0;
  }
  return 1;
}

static void gate_leave(stead__gw *gw) {
  atomic_fetch_sub(&gw->users, 1);
}

/* ---- responses ---- */

static enum MHD_Result send_buf(req *r, int status, const char *ctype, void *data,
                                size_t len, enum MHD_ResponseMemoryMode mode) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, mode);
  if (!resp) {
    if (mode == MHD_RESPMEM_MUST_FREE)
      free(data);
    return MHD_NO;
  }
  if (ctype)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  if (status == 429 || status == 503)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  if (atomic_load(&r->gw->state) == GW_DRAINING)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  r->phase = P_ANSWERED;
  r->http_status = status;
  return ret;
}

static enum MHD_Result send_json(req *r, int status, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s)
    return send_buf(r, 500, "text/plain", "out of memory\n", 14, MHD_RESPMEM_PERSISTENT);
  size_t len = strlen(s);
  /* json_dumps memory comes from malloc (jansson's default allocator). */
  return send_buf(r, status, "application/json", s, len, MHD_RESPMEM_MUST_FREE);
}

/* {"error":{"code":"ENOMETHOD","message":"..."}} with the status for the
 * code, or `status` when non-zero. */
static enum MHD_Result send_error(req *r, int status, int code, const char *message) {
  if (!status)
    status = stead__http_status(code);
  json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", stead_errname(code), "message",
                        message && *message ? message : stead_strerror(code));
  if (!j) /* message was not UTF-8 (a handler's bytes): keep the code */
    j = json_pack("{s:{s:s,s:s}}", "error", "code", stead_errname(code), "message",
                  stead_strerror(code));
  return send_json(r, status, j);
}

static enum MHD_Result send_405(req *r, const char *allow, const char *message) {
  json_t *j = json_pack("{s:{s:s,s:s}}", "error", "code", "EINVAL", "message", message);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (!s)
    return MHD_NO;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(s);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result ret = MHD_queue_response(r->conn, 405, resp);
  MHD_destroy_response(resp);
  r->phase = P_ANSWERED;
  r->http_status = 405;
  return ret;
}

/* ---- routes that do not call objects ---- */

static enum MHD_Result do_healthz(req *r) {
  int st = atomic_load(&r->gw->state);
  if (st == GW_READY)
    return send_buf(r, 200, "text/plain", "ok\n", 3, MHD_RESPMEM_PERSISTENT);
  if (st == GW_STARTING)
    return send_buf(r, 503, "text/plain", "starting\n", 9, MHD_RESPMEM_PERSISTENT);
  return send_buf(r, 503, "text/plain", "draining\n", 9, MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result do_metrics(req *r) {
  stead__buf b = {0};
  int rc = 0;
  if (gate_enter(r->gw)) {
    char *text = NULL;
    size_t len = 0;
    rc = stead_metrics_text(r->gw->rt, &text, &len);
    gate_leave(r->gw);
    if (rc == 0)
      rc = stead__buf_append(&b, text, len);
    stead_free(text);
  }
  if (rc == 0)
    rc = stead__httpm_text(r->gw->metrics, &b);
  if (rc == 0)
    rc = stead__sse_metrics(r->gw->sse, &b);
  if (rc == 0)
    rc = stead__ws_metrics(r->gw->ws, &b);
  if (rc < 0) {
    stead__buf_free(&b);
    return send_error(r, 0, rc, "cannot render metrics");
  }
  return send_buf(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len,
                  MHD_RESPMEM_MUST_FREE);
}

static enum MHD_Result do_cluster(req *r) {
  stead__gw *gw = r->gw;
  int ready = atomic_load(&gw->state) == GW_READY;
  if (gw->cluster) {
    stead_cluster_status *st = NULL;
    int rc = STEAD_ECLOSED;
    if (gate_enter(gw)) {
      rc = stead_cluster_status_get(gw->rt, &st);
      gate_leave(gw);
    }
    if (rc < 0)
      return send_error(r, rc == STEAD_ECLOSED ? 503 : 0, rc,
                        rc == STEAD_ECLOSED ? "the node is not serving" : stead_errmsg());
    json_t *j = stead__cluster_json(st, gw->storage, gw->url);
    stead_free(st);
    return send_json(r, 200, j);
  }
  const char *state = ready ? "ready" : "not-ready";
  json_t *j =
      json_pack("{s:s,s:s,s:i,s:i,s:s,s:[{s:s,s:s,s:s,s:b,s:i}]}", "node_id", gw->node_id,
                "mode", "single", "shards", gw->shards, "shards_owned", gw->shards,
                "storage", gw->storage, "members", "node_id", gw->node_id, "url", gw->url,
                "status", state, "self", 1, "shards_owned", gw->shards);
  return send_json(r, 200, j);
}

/* The "state" member of GET object: the committed state struct rendered
 * by its schema, or null when the class declares none. 0 or a STEAD_E*
 * code with the message in msg. */
static int object_state(stead_rt *rt, const char *cls, const char *id, json_t **out,
                        char *msg, size_t msg_len) {
  *out = NULL;
  const stead_schema *schema = stead_class_schema(rt, cls);
  if (!schema) { /* ENOTFOUND: no schema (ENOCLASS was ruled out before) */
    *out = json_null();
    return 0;
  }
  void *st = NULL;
  int rc = stead_object_state(rt, cls, id, &st);
  if (rc < 0) {
    snprintf(msg, msg_len, "reading the state of %s/%s: %s", cls, id, stead_errmsg());
    return rc;
  }
  *out = stead__state_json(schema, st);
  stead_object_state_free(rt, cls, st);
  return *out ? 0 : STEAD_ENOMEM;
}

/* The "alarms" member: the object's committed alarms in (time, name)
 * order. */
static int object_alarms(stead_rt *rt, const char *cls, const char *id, json_t **out,
                         char *msg, size_t msg_len) {
  stead_alarm_info *al = NULL;
  size_t n = 0;
  *out = NULL;
  int rc = stead_alarms_pending(rt, cls, id, &al, &n);
  if (rc < 0) {
    snprintf(msg, msg_len, "reading the alarms of %s/%s: %s", cls, id, stead_errmsg());
    return rc;
  }
  *out = stead__alarms_json(al, n);
  stead_free(al);
  return *out ? 0 : STEAD_ENOMEM;
}

/* GET /v1/objects/{class}/{id}: what the object has durably, read from
 * storage without activating it (so looking at an object never wakes it
 * or delays its turns). A snapshot: turns still committing are not in it. */
static enum MHD_Result do_object(req *r) {
  stead_rt *rt = r->gw->rt;
  const char *cls = r->route.cls, *id = r->route.id;
  if (!gate_enter(r->gw))
    return send_error(r, 503, STEAD_ECLOSED,
                      "the server is not serving objects (starting or "
                      "shutting down)");
  char msg[1600] = "out of memory rendering the object";
  json_t *state = NULL, *alarms = NULL;
  int active = stead_is_active(rt, cls, id);
  int rc = active < 0 ? active : 0;
  if (rc < 0)
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
  if (rc == 0)
    rc = object_state(rt, cls, id, &state, msg, sizeof msg);
  if (rc == 0)
    rc = object_alarms(rt, cls, id, &alarms, msg, sizeof msg);
  gate_leave(r->gw);
  if (rc < 0) {
    json_decref(state);
    json_decref(alarms);
    return send_error(r, 0, rc, msg);
  }
  json_t *j = json_pack("{s:s,s:s,s:b,s:o,s:o}", "class", cls, "id", id, "active",
                        active == 1, "state", state, "alarms", alarms);
  return send_json(r, 200, j);
}

static const char *query(req *r, const char *key, char *buf, size_t cap, int *bad);

/* GET /v1/events?pattern=P (default "**"): a Server-Sent Events stream. */
static enum MHD_Result do_stream(req *r) {
  char pat[1100];
  int bad = 0;
  const char *p = query(r, "pattern", pat, sizeof pat, &bad);
  if (bad)
    return send_error(r, 400, STEAD_EINVAL,
                      "pattern is badly percent-encoded or too long");
  if (!p)
    p = "**";
  if (!gate_enter(r->gw))
    return send_error(r, 503, STEAD_ECLOSED,
                      "the server is not serving events (starting or shutting down)");
  int rc = stead__sse_open(r->gw->sse, stead_rt_bus(r->gw->rt), r->conn, p);
  char msg[sizeof pat + 600]; /* the pattern and the bus's reason, untruncated */
  snprintf(msg, sizeof msg, "pattern \"%s\": %s", p, stead_errmsg());
  gate_leave(r->gw);
  if (rc < 0)
    return send_error(r, rc == STEAD_ECLOSED ? 503 : 0, rc, msg);
  r->phase = P_ANSWERED;
  r->http_status = 200;
  return MHD_YES;
}

/* POST /v1/events/{topic}: the body is the payload. */
static enum MHD_Result do_emit(req *r) {
  stead__gw *gw = r->gw;
  if (!gate_enter(gw))
    return send_error(r, 503, STEAD_ECLOSED,
                      "the server is not serving events (starting or shutting down)");
  int rc = stead_emit_rt(gw->rt, r->route.topic, r->body.data, r->body.len);
  char msg[600];
  snprintf(msg, sizeof msg, "topic \"%s\": %s", r->route.topic, stead_errmsg());
  gate_leave(gw);
  if (rc < 0)
    return send_error(r, 0, rc, msg);
  return send_json(r, 202, json_pack("{s:s}", "status", "accepted"));
}

/* ---- WebSocket connects ---- */

static void ws_connected(stead_conn *conn, int status, const char *reason, void *udata) {
  req *r = udata;
  pthread_mutex_lock(&r->mu);
  r->status = status;
  r->ws_conn = conn;
  if (status && reason)
    r->message = stead__strdup(reason);
  r->done = 1;
  struct MHD_Connection *c = r->conn;
  int resume = r->suspended;
  r->suspended = 0;
  pthread_mutex_unlock(&r->mu);
  if (resume)
    MHD_resume_connection(c);
}

static void ws_upgraded(void *cls, struct MHD_Connection *connection, void *con_cls,
                        const char *extra, size_t extra_len, MHD_socket sock,
                        struct MHD_UpgradeResponseHandle *urh) {
  req *r = con_cls;
  r->ws_attached = 1;
  stead__ws_attach(r->ws_sess, sock, extra, extra_len, urh);
}

static const char *header(req *r, const char *name) {
  return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* GET /v1/objects/{class}/{id}/connect[?meta=M]: checks the handshake,
 * asks the object, and upgrades only once it accepted. */
static enum MHD_Result do_connect(req *r) {
  stead__gw *gw = r->gw;
  int st = stead__ws_check_handshake(
      "GET", header(r, MHD_HTTP_HEADER_UPGRADE), header(r, MHD_HTTP_HEADER_CONNECTION),
      header(r, "Sec-WebSocket-Version"), header(r, "Sec-WebSocket-Key"), r->ws_accept);
  if (st == 426) {
    json_t *j =
        json_pack("{s:{s:s,s:s}}", "error", "code", "EINVAL", "message", stead_errmsg());
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE)
             : NULL;
    if (!resp) {
      free(body);
      return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, "Sec-WebSocket-Version", "13");
    enum MHD_Result ret = MHD_queue_response(r->conn, 426, resp);
    MHD_destroy_response(resp);
    r->phase = P_ANSWERED;
    r->http_status = 426;
    return ret;
  }
  if (st)
    return send_error(r, st, STEAD_EINVAL, stead_errmsg());
  char meta[STEAD_MAX_CONN_META + 1];
  int bad = 0;
  const char *m = query(r, "meta", meta, sizeof meta, &bad);
  if (bad)
    return send_error(r, 400, STEAD_EINVAL,
                      "meta is badly percent-encoded or over 64 KiB");
  if (!gate_enter(gw))
    return send_error(r, 503, STEAD_ECLOSED,
                      "the server is not serving objects (starting or shutting down)");
  stead_conn_opts opts;
  r->ws_sess = stead__ws_sess_new(gw->ws, &opts);
  if (!r->ws_sess) {
    gate_leave(gw);
    return send_error(r, 503, STEAD_ENOMEM, "out of memory");
  }
  opts.timeout_ms = r->gw->default_timeout_ms;
  pthread_mutex_lock(&r->mu);
  int rc = stead_connect_async(gw->rt, r->route.cls, r->route.id, m, m ? strlen(m) : 0,
                               &opts, ws_connected, r);
  if (rc < 0) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    pthread_mutex_unlock(&r->mu);
    gate_leave(gw);
    stead__ws_sess_abort(r->ws_sess);
    r->ws_sess = NULL;
    return send_error(r, 0, rc, msg);
  }
  r->phase = P_WAIT;
  r->suspended = 1;
  MHD_suspend_connection(r->conn);
  pthread_mutex_unlock(&r->mu);
  gate_leave(gw);
  return MHD_YES;
}

/* The object answered the connect: 101 and the socket to ws.c, or the
 * refusal as an HTTP error (403 with the object's reason). */
static enum MHD_Result answer_connect(req *r) {
  if (r->status != 0) {
    stead__ws_sess_abort(r->ws_sess);
    r->ws_sess = NULL;
    return send_error(r, 0, r->status, r->message);
  }
  stead__ws_sess_set_conn(r->ws_sess, r->ws_conn);
  struct MHD_Response *resp = MHD_create_response_for_upgrade(ws_upgraded, r->gw);
  if (!resp)
    return MHD_NO; /* completed_cb aborts the session */
  MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, "websocket");
  MHD_add_response_header(resp, "Sec-WebSocket-Accept", r->ws_accept);
  enum MHD_Result ret = MHD_queue_response(r->conn, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
  MHD_destroy_response(resp);
  r->phase = P_ANSWERED;
  r->http_status = 101;
  return ret;
}

/* ---- object calls ---- */

static void call_done(const stead_result *res, void *udata) {
  req *r = udata;
  pthread_mutex_lock(&r->mu);
  r->status = res->status;
  if (res->status == 0 && res->len) {
    r->reply = stead__memdup(res->data, res->len);
    r->reply_len = r->reply ? res->len : 0;
    if (!r->reply)
      r->status = STEAD_ENOMEM;
  }
  if (res->status != 0 && res->message)
    r->message = stead__strdup(res->message);
  r->done = 1;
  /* suspended is always set here: the request thread held mu across
   * stead_call_async and MHD_suspend_connection. */
  struct MHD_Connection *conn = r->conn;
  int resume = r->suspended;
  r->suspended = 0;
  pthread_mutex_unlock(&r->mu);
  if (resume)
    MHD_resume_connection(conn);
}

static int looks_like_json(const void *data, size_t len) {
  if (len == 0)
    return 0;
  json_error_t err;
  json_t *j = json_loadb(data, len, JSON_DECODE_ANY, &err);
  if (!j)
    return 0;
  json_decref(j);
  return 1;
}

static enum MHD_Result answer_call(req *r) {
  if (r->status != 0)
    return send_error(r, 0, r->status, r->message);
  void *data = r->reply;
  size_t len = r->reply_len;
  r->reply = NULL;
  const char *ctype =
      looks_like_json(data, len) ? "application/json" : "application/octet-stream";
  if (!data)
    return send_buf(r, 200, ctype, "", 0, MHD_RESPMEM_PERSISTENT);
  /* stead__memdup uses malloc, as MUST_FREE requires. */
  return send_buf(r, 200, ctype, data, len, MHD_RESPMEM_MUST_FREE);
}

/* The request is complete: answer a GET route. */
static enum MHD_Result answer_get(req *r) {
  switch (r->route.kind) {
  case STEAD__R_HEALTHZ:
    return do_healthz(r);
  case STEAD__R_METRICS:
    return do_metrics(r);
  case STEAD__R_CLUSTER:
    return do_cluster(r);
  case STEAD__R_OBJECT:
    return do_object(r);
  case STEAD__R_CONNECT:
    return do_connect(r);
  default:
    return do_stream(r);
  }
}

static enum MHD_Result start_call(req *r) {
  stead__gw *gw = r->gw;
  if (r->route.kind != STEAD__R_CALL && r->route.kind != STEAD__R_EMIT)
    return answer_get(r);
  if (r->too_big)
    return send_error(r, 413, STEAD_ETOOBIG, "request body is over the server's limit");
  if (r->json_body && r->body.len && !looks_like_json(r->body.data, r->body.len))
    return send_error(r, 400, STEAD_EINVAL,
                      "body is not valid JSON (Content-Type says JSON)");
  if (r->route.kind == STEAD__R_EMIT)
    return do_emit(r);
  if (!gate_enter(gw))
    return send_error(r, 503, STEAD_ECLOSED,
                      "the server is not serving objects (starting or shutting down)");
  const void *arg = r->body.data ? (const void *)r->body.data : (const void *)"";
  int rc;
  char msg[1024];
  if (r->mode_send) {
    rc = stead_send(gw->rt, r->route.cls, r->route.id, r->route.method, arg, r->body.len);
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    gate_leave(gw);
    if (rc < 0)
      return send_error(r, 0, rc, msg);
    return send_json(r, 202, json_pack("{s:s}", "status", "queued"));
  }
  pthread_mutex_lock(&r->mu);
  rc = stead_call_async(gw->rt, r->route.cls, r->route.id, r->route.method, arg,
                        r->body.len, r->timeout_ms, call_done, r);
  if (rc < 0) {
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    pthread_mutex_unlock(&r->mu);
    gate_leave(gw);
    return send_error(r, 0, rc, msg);
  }
  r->phase = P_WAIT;
  r->suspended = 1;
  MHD_suspend_connection(r->conn);
  pthread_mutex_unlock(&r->mu);
  gate_leave(gw);
  return MHD_YES;
}

/* ---- request parsing ---- */

/* A query parameter, percent-decoded into buf; NULL when absent. MHD hands
 * the values raw because the gateway disables its unescaping. */
static const char *query(req *r, const char *key, char *buf, size_t cap, int *bad) {
  const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
  if (!v)
    return NULL;
  size_t len = strlen(v);
  long n = len < cap ? stead__pct_decode(v, len, buf) : -1;
  if (n < 0 || memchr(buf, '\0', (size_t)n)) { /* "a%00b" is not "a" */
    *bad = 1;
    return NULL;
  }
  return buf;
}

/* First call of a request: route it and answer whatever needs no body. */
static enum MHD_Result begin(req *r, const char *method, const char *url) {
  int status = 0;
  const char *allow = NULL;
  int rc = stead__route_match(method, url, &r->route, &status, &allow);
  if (rc < 0) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s %s: %s", method, url, stead_errmsg());
    if (status == 405)
      return send_405(r, allow, msg);
    return send_error(r, status, rc, msg);
  }
  /* GET routes are answered in the request's last callback, like calls:
   * libmicrohttpd closes the connection after a response queued in the
   * first callback (the request might still have a body to read), and a
   * new TCP connection per GET cost 10x their throughput under load. */
  if (r->route.kind != STEAD__R_CALL && r->route.kind != STEAD__R_EMIT)
    return MHD_YES;
  const char *ct =
      MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  stead__call_params cp;
  if (stead__call_params_parse(
          MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "timeout_ms"),
          MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "mode"), ct, cl,
          r->gw->max_body, r->gw->default_timeout_ms, &cp, &status) < 0)
    return send_error(r, status, status == 413 ? STEAD_ETOOBIG : STEAD_EINVAL,
                      stead_errmsg());
  r->timeout_ms = cp.timeout_ms;
  r->mode_send = cp.mode_send;
  r->json_body = cp.json_body;
  return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
  stead__gw *gw = cls;
  req *r = *con_cls;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r)
      return MHD_NO;
    r->gw = gw;
    r->conn = conn;
    r->t0 = stead__mono_ns();
    pthread_mutex_init(&r->mu, NULL);
    *con_cls = r;
    atomic_fetch_add(&gw->active, 1);
    stead__httpm_inflight(gw->metrics, 1);
    return begin(r, method, url);
  }
  if (r->phase == P_ANSWERED) {
    *upload_data_size = 0; /* discard the rest of a refused upload */
    return MHD_YES;
  }
  if (r->phase == P_BODY && *upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (r->too_big || r->body.len + n > gw->max_body) {
      r->too_big = 1; /* chunked upload past the limit: drop, answer 413 at the end */
      stead__buf_free(&r->body);
      return MHD_YES;
    }
    if (stead__buf_append(&r->body, upload_data, n) < 0)
      return MHD_NO;
    return MHD_YES;
  }
  if (r->phase == P_BODY)
    return start_call(r);
  /* P_WAIT: resumed by call_done. */
  pthread_mutex_lock(&r->mu);
  int done = r->done;
  pthread_mutex_unlock(&r->mu);
  if (!done)
    return MHD_YES;
  if (r->route.kind == STEAD__R_CONNECT)
    return answer_connect(r);
  return answer_call(r);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  stead__gw *gw = cls;
  req *r = *con_cls;
  if (!r)
    return;
  *con_cls = NULL;
  int64_t dt = stead__mono_ns() - r->t0;
  int status = r->phase == P_ANSWERED ? r->http_status : 499; /* client went away */
  stead__httpm_observe(gw->metrics, r->route.kind, status, dt);
  stead__httpm_inflight(gw->metrics, -1);
  if (gw->log->level >= STEAD_LOG_DEBUG)
    stead__logf(gw->log, STEAD_LOG_DEBUG, "http %s %d %.3fms%s",
                stead__route_label(r->route.kind), status, (double)dt / 1e6,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ""
                                                           : " (connection ended early)");
  if (r->ws_sess && !r->ws_attached)
    stead__ws_sess_abort(r->ws_sess); /* accepted, but the upgrade never came */
  stead__route_free(&r->route);
  stead__buf_free(&r->body);
  free(r->reply);
  free(r->message);
  pthread_mutex_destroy(&r->mu);
  free(r);
  atomic_fetch_sub(&gw->active, 1);
}

/* MHD would percent-decode the whole path before routing, which makes an
 * encoded '/' inside an id indistinguishable from a separator; the router
 * decodes each segment itself instead. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s) {
  return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  const stead__logger *lg = cls;
  char line[1024];
  vsnprintf(line, sizeof line, fmt, ap);
  stead__log_sink(STEAD_LOG_WARN, line, (void *)lg);
}

static void gw_free(stead__gw *gw) {
  stead__ws_free(gw->ws);
  stead__httpm_free(gw->metrics);
  stead__sse_free(gw->sse);
  free(gw->node_id);
  free(gw->url);
  free(gw->storage);
  free(gw);
}

int stead__gw_start(const stead__gw_config *cfg, stead__gw **out) {
  *out = NULL;
  stead__gw *gw = calloc(1, sizeof *gw);
  if (gw) {
    gw->metrics = stead__httpm_new();
    gw->sse = stead__sse_new(SSE_MAX_QUEUE);
    gw->node_id = stead__strdup(cfg->node_id);
    gw->url = stead__strdup(cfg->url);
    gw->storage = stead__strdup(cfg->storage);
    stead__ws_config wc = {cfg->max_body, WS_MAX_QUEUE, WS_PING_MS, cfg->log};
    gw->ws = stead__ws_new(&wc);
  }
  if (!gw || !gw->metrics || !gw->sse || !gw->node_id || !gw->url || !gw->storage ||
      !gw->ws) {
    if (gw)
      gw_free(gw);
    close(cfg->listen_fd);
    return stead__err(STEAD_ENOMEM, "out of memory starting the HTTP server");
  }
  gw->listen_fd = cfg->listen_fd;
  gw->max_body = cfg->max_body;
  gw->default_timeout_ms = cfg->default_timeout_ms;
  gw->shards = cfg->shards;
  gw->cluster = cfg->cluster;
  gw->log = cfg->log;
  atomic_init(&gw->state, GW_STARTING);
  /* poll(), not epoll: libmicrohttpd 0.9.75's MHD_quiesce_daemon races its
   * epoll workers over removing the listen socket and can abort the
   * process (MHD_PANIC "Failed to remove listen FD from epoll set") --
   * seen here at shutdown under ASan. Graceful drain needs quiesce, so
   * the gateway uses poll(); docs/http.md records the trade-off. */
  unsigned flags = MHD_USE_POLL | MHD_USE_INTERNAL_POLLING_THREAD |
                   MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
  /* The logger goes first so MHD reports option errors through it. */
  gw->mhd = MHD_start_daemon(
      flags, 0, NULL, NULL, access_cb, gw, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
      (void *)cfg->log, MHD_OPTION_LISTEN_SOCKET, cfg->listen_fd,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_NOTIFY_COMPLETED,
      completed_cb, gw, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, gw,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
      /* The default (FD_SETSIZE - 4, split across the pool) would refuse
       * connections long before poll() needs to: WebSockets stay open. */
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)GW_MAX_CONNECTIONS,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_END);
  if (!gw->mhd) {
    gw_free(gw);
    close(cfg->listen_fd);
    return stead__err(STEAD_EIO, "the HTTP server (libmicrohttpd) failed to start");
  }
  *out = gw;
  return 0;
}

void stead__gw_set_ready(stead__gw *gw, stead_rt *rt) {
  gw->rt = rt;
  atomic_store(&gw->state, GW_READY);
}

void stead__gw_drain(stead__gw *gw) {
  atomic_store(&gw->state, GW_DRAINING);
  MHD_socket fd = MHD_quiesce_daemon(gw->mhd);
  if (fd != MHD_INVALID_SOCKET && fd == gw->listen_fd) {
    close(fd);
    gw->listen_fd = -1;
  }
  /* Event streams hold bus listeners: remove them and end the streams so
   * the runtime can close and the streams' requests complete. */
  stead__sse_close_all(gw->sse);
  while (atomic_load(&gw->users) > 0)
    usleep(1000);
  /* WebSockets close with 1001 before the runtime closes their objects'
   * connections; connects still in flight are closed when they attach. */
  stead__ws_close_all(gw->ws);
}

void stead__gw_stop(stead__gw *gw, int grace_ms) {
  if (!gw)
    return;
  int64_t end = stead__mono_ms() + grace_ms;
  /* `active` drops when a request's answer has been sent in full (or its
   * client left), so reaching 0 means every acknowledged call reached its
   * client; idle keep-alive connections hold nothing and are cut. */
  while (atomic_load(&gw->active) > 0 && stead__mono_ms() < end)
    usleep(2000);
  /* Upgraded sockets go back to MHD before it stops. */
  stead__ws_free(gw->ws);
  gw->ws = NULL;
  MHD_stop_daemon(gw->mhd);
  if (gw->listen_fd >= 0)
    close(gw->listen_fd);
  gw_free(gw);
}
