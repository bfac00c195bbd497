/*
 * sse.c -- Server-Sent Events streams of bus events (see sse.h).
 *
 * Owns: the registry of open streams and each stream's queue.
 *
 * Frame: one event per SSE message, `id: N` (per stream, from 1) and
 * `data: {"topic":T,"payload":P}` where P is the payload as JSON when it
 * parses as JSON, else a JSON string when it is UTF-8 text; other bytes
 * are sent as "payload_base64". The stream opens with a comment line
 * (": stream PATTERN") so a client knows it is subscribed.
 *
 * Threads: the listener runs on the runtime's bus worker; the content
 * reader and the free callback on MHD threads; close_all on the server's
 * main thread. Locks: registry `mu` -> client `mu`, never the reverse; the
 * listener takes only its client's mu, so stead_bus_off (which waits for a
 * running listener) may be called with the registry lock held.
 *
 * Invariants: a connection is suspended by the reader only while holding
 * the client's mu with `suspended` set, so whoever clears `suspended`
 * under that lock resumes it exactly once. A client is freed only by
 * MHD's free callback, after its listener was removed (by close_all or by
 * the callback itself).
 */
#include "server/sse.h"

#include "server/render.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct client {
  struct client *prev, *next; /* registry list (registry mu) */
  stead__sse *reg;
  stead_bus *bus;
  struct MHD_Connection *conn;
  int listening; /* registry mu: lid is a live listener */
  char lid[STEAD_BUS_ID_SIZE];
  pthread_mutex_t mu;
  stead__buf q;
  size_t qoff;
  int suspended, closing, overflow;
  uint64_t seq;
} client;

struct stead__sse {
  pthread_mutex_t mu;
  client *head;
  int closed;
  size_t max_queue;
  atomic_uint_fast64_t clients, opened, slow, sent;
};

stead__sse *stead__sse_new(size_t max_queue) {
  stead__sse *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  pthread_mutex_init(&s->mu, NULL);
  s->max_queue = max_queue;
  return s;
}

void stead__sse_free(stead__sse *s) {
  if (!s)
    return;
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* The event as one compact JSON line (malloc'd), or NULL on OOM. */
static char *event_json(const char *topic, const void *p, size_t len) {
  json_t *j = json_object();
  char *s = NULL;
  if (j && json_object_set_new(j, "topic", json_string(topic)) == 0 &&
      stead__json_set_bytes(j, "payload", p, len) == 0)
    s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

static int on_event(stead_event *ev, void *udata) {
  client *c = udata;
  size_t len;
  const void *p = stead_event_payload(ev, &len);
  char *js = event_json(stead_event_topic(ev), p, len);
  if (!js)
    return STEAD_ENOMEM;
  int resume = 0;
  pthread_mutex_lock(&c->mu);
  if (!c->closing) {
    size_t pending = c->q.len - c->qoff;
    size_t add = strlen(js) + 40;
    if (pending + add > c->reg->max_queue) {
      /* Too slow: cut it off rather than buffer without bound. */
      c->overflow = c->closing = 1;
      c->q.len = c->qoff = 0;
      atomic_fetch_add(&c->reg->slow, 1);
    } else if (stead__buf_printf(&c->q, "id: %llu\ndata: %s\n\n",
                                 (unsigned long long)++c->seq, js) == 0) {
      atomic_fetch_add(&c->reg->sent, 1);
    }
    resume = c->suspended;
    c->suspended = 0;
  }
  struct MHD_Connection *conn = c->conn;
  pthread_mutex_unlock(&c->mu);
  free(js);
  if (resume)
    MHD_resume_connection(conn);
  return 0;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  client *c = cls;
  pthread_mutex_lock(&c->mu);
  size_t avail = c->q.len - c->qoff;
  if (avail) {
    size_t n = avail < max ? avail : max;
    memcpy(buf, c->q.data + c->qoff, n);
    c->qoff += n;
    if (c->qoff == c->q.len)
      c->q.len = c->qoff = 0;
    pthread_mutex_unlock(&c->mu);
    return (ssize_t)n;
  }
  if (c->closing) {
    int err = c->overflow;
    pthread_mutex_unlock(&c->mu);
    return err ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
  }
  /* Nothing to send: park the connection until an event or close_all
   * resumes it (returning 0 without suspending would busy-loop). */
  c->suspended = 1;
  MHD_suspend_connection(c->conn);
  pthread_mutex_unlock(&c->mu);
  return 0;
}

static void unlink_client(stead__sse *s, client *c) {
  if (c->prev)
    c->prev->next = c->next;
  else if (s->head == c)
    s->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

/* MHD's free callback of the response: the stream is over. */
static void client_free(void *cls) {
  client *c = cls;
  stead__sse *s = c->reg;
  pthread_mutex_lock(&s->mu);
  unlink_client(s, c);
  if (c->listening)
    stead_bus_off(c->bus, c->lid); /* waits for a running on_event */
  c->listening = 0;
  pthread_mutex_unlock(&s->mu);
  atomic_fetch_sub(&s->clients, 1);
  stead__buf_free(&c->q);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

int stead__sse_open(stead__sse *s, stead_bus *bus, struct MHD_Connection *conn,
                    const char *pattern) {
  client *c = calloc(1, sizeof *c);
  if (!c)
    return stead__err(STEAD_ENOMEM, "out of memory");
  c->reg = s;
  c->bus = bus;
  c->conn = conn;
  pthread_mutex_init(&c->mu, NULL);
  if (stead__buf_printf(&c->q, ": stream %s\nretry: 3000\n\n", pattern) != 0) {
    pthread_mutex_destroy(&c->mu);
    free(c);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  atomic_fetch_add(&s->clients, 1);
  pthread_mutex_lock(&s->mu);
  int rc = s->closed ? stead__err(STEAD_ECLOSED, "the server is shutting down")
                     : stead_bus_on(bus, pattern, on_event, c, 0, c->lid);
  if (rc == 0) {
    c->listening = 1;
    c->next = s->head;
    if (s->head)
      s->head->prev = c;
    s->head = c;
  }
  pthread_mutex_unlock(&s->mu);
  if (rc) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    c->reg = s;
    client_free(c);
    return stead__err(rc, "%s", msg);
  }
  struct MHD_Response *resp =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, c, client_free);
  if (!resp) {
    client_free(c);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  enum MHD_Result ok = MHD_queue_response(conn, 200, resp);
  MHD_destroy_response(resp); /* the stream is freed with the connection */
  atomic_fetch_add(&s->opened, 1);
  return ok == MHD_YES ? 0 : stead__err(STEAD_EIO, "cannot queue the event stream");
}

void stead__sse_close_all(stead__sse *s) {
  pthread_mutex_lock(&s->mu);
  s->closed = 1;
  for (client *c = s->head; c; c = c->next) {
    if (c->listening)
      stead_bus_off(c->bus, c->lid);
    c->listening = 0;
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    int resume = c->suspended;
    c->suspended = 0;
    pthread_mutex_unlock(&c->mu);
    if (resume)
      MHD_resume_connection(c->conn);
  }
  pthread_mutex_unlock(&s->mu);
}

int stead__sse_metrics(stead__sse *s, stead__buf *b) {
  int rc = 0;
  rc |= stead__buf_printf(b,
                          "# HELP stead_http_event_streams Open GET /v1/events "
                          "streams.\n# TYPE stead_http_event_streams gauge\n"
                          "stead_http_event_streams %llu\n",
                          (unsigned long long)atomic_load(&s->clients));
  rc |= stead__buf_printf(b,
                          "# HELP stead_http_event_streams_total Event streams "
                          "opened.\n# TYPE stead_http_event_streams_total counter\n"
                          "stead_http_event_streams_total %llu\n",
                          (unsigned long long)atomic_load(&s->opened));
  rc |= stead__buf_printf(
      b,
      "# HELP stead_http_event_streams_slow_total Streams cut off because the "
      "client fell too far behind.\n# TYPE stead_http_event_streams_slow_total "
      "counter\nstead_http_event_streams_slow_total %llu\n",
      (unsigned long long)atomic_load(&s->slow));
  rc |= stead__buf_printf(b,
                          "# HELP stead_http_events_streamed_total Events queued to "
                          "stream clients.\n# TYPE stead_http_events_streamed_total "
                          "counter\nstead_http_events_streamed_total %llu\n",
                          (unsigned long long)atomic_load(&s->sent));
  return rc ? STEAD_ENOMEM : 0;
}
