/*
 * nats.c -- request/reply, publish and serve over one nats.c connection.
 *
 * nats.c 3.4 has no asynchronous request, and a blocking natsConnection_
 * Request per call would cost a thread per request in flight. Instead:
 *   - one subscription on "<inbox>.*" receives every reply; each request
 *     publishes with reply subject "<inbox>.<token>";
 *   - pending requests live in a hash table keyed by token and a min-heap
 *     ordered by deadline, both under `mu`;
 *   - one timer thread sleeps until the earliest deadline and fails what
 *     expired with ETIMEDOUT.
 * Invariant: a pending request is in both structures or in neither, and
 * whoever removes it (reply, timer, close) is the only one to call its
 * callback, outside the lock. That is the exactly-once promise.
 *
 * Lifetime: the transport is reference-counted. The opener holds one
 * reference, each live subscription and each unanswered replier another,
 * so a late reply after close finds a closed connection (ECLOSED), never
 * freed memory.
 *
 * Threads: the caller's; nats.c's delivery threads (replies, served
 * messages); the timer thread.
 */
#include "cluster/nats.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct pending {
  uint64_t token;
  int64_t deadline_ns;
  size_t heap_idx;
  struct pending *next; /* hash chain */
  stead__nats_reply_fn cb;
  void *udata;
} pending;

struct stead__nats {
  atomic_int refs;
  natsConnection *nc;
  natsSubscription *inbox_sub;
  char inbox[64]; /* "<_INBOX.nuid>" without the trailing ".*" */
  pthread_t timer;
  pthread_mutex_t mu;
  pthread_cond_t timer_cv; /* timer: earliest deadline changed or stop */
  pthread_cond_t done_cv;  /* subscription completions */
  int closed;
  int inbox_cb_set; /* on_inbox_done will run once the inbox closes */
  int inbox_done;
  uint64_t next_token;
  size_t max_pending;
  /* Hash table of pending requests (power-of-two buckets). */
  pending **buckets;
  size_t nbuckets;
  size_t count;
  /* Min-heap by deadline. */
  pending **heap;
  size_t heap_cap;
};

struct stead__nats_sub {
  stead__nats *t;
  natsSubscription *ns;
  stead__nats_serve_fn fn;
  void *udata;
  int done; /* under t->mu: nats.c finished with the subscription */
};

struct stead__nats_replier {
  stead__nats *t;
  char subject[]; /* reply subject */
};

/* ---------------------------------------------------------------------
 * Errors, references.
 * ------------------------------------------------------------------- */

static int nats_err(int code, const char *what, natsStatus s) {
  const char *last = nats_GetLastError(NULL);
  return stead__err(code, "%s: %s%s%s", what, natsStatus_GetText(s), last ? ": " : "",
                    last ? last : "");
}

static void ref(stead__nats *t) {
  atomic_fetch_add(&t->refs, 1);
}

static void unref(stead__nats *t) {
  if (atomic_fetch_sub(&t->refs, 1) != 1)
    return;
  natsSubscription_Destroy(t->inbox_sub);
  natsConnection_Destroy(t->nc);
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->timer_cv);
  pthread_cond_destroy(&t->done_cv);
  free(t->buckets);
  free(t->heap);
  free(t);
}

/* ---------------------------------------------------------------------
 * Pending table: hash + heap, all under t->mu.
 * ------------------------------------------------------------------- */

static void heap_swap(stead__nats *t, size_t a, size_t b) {
  pending *x = t->heap[a];
  t->heap[a] = t->heap[b];
  t->heap[b] = x;
  t->heap[a]->heap_idx = a;
  t->heap[b]->heap_idx = b;
}

static void heap_up(stead__nats *t, size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (t->heap[p]->deadline_ns <= t->heap[i]->deadline_ns)
      break;
    heap_swap(t, i, p);
    i = p;
  }
}

static void heap_down(stead__nats *t, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->count && t->heap[l]->deadline_ns < t->heap[m]->deadline_ns)
      m = l;
    if (r < t->count && t->heap[r]->deadline_ns < t->heap[m]->deadline_ns)
      m = r;
    if (m == i)
      return;
    heap_swap(t, i, m);
    i = m;
  }
}

static int table_grow(stead__nats *t) {
  if (t->count + 1 > t->heap_cap) {
    size_t cap = t->heap_cap ? t->heap_cap * 2 : 256;
    pending **h = realloc(t->heap, cap * sizeof *h);
    if (!h)
      return STEAD_ENOMEM;
    t->heap = h;
    t->heap_cap = cap;
  }
  if (t->count + 1 <= t->nbuckets)
    return 0;
  size_t nb = t->nbuckets ? t->nbuckets * 2 : 256;
  pending **b = calloc(nb, sizeof *b);
  if (!b)
    return STEAD_ENOMEM;
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (pending *p = t->buckets[i], *next; p; p = next) {
      next = p->next;
      p->next = b[p->token & (nb - 1)];
      b[p->token & (nb - 1)] = p;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
  return 0;
}

static void table_insert(stead__nats *t, pending *p) {
  pending **slot = &t->buckets[p->token & (t->nbuckets - 1)];
  p->next = *slot;
  *slot = p;
  p->heap_idx = t->count;
  t->heap[t->count++] = p;
  heap_up(t, p->heap_idx);
}

static void table_remove(stead__nats *t, pending *p) {
  pending **slot = &t->buckets[p->token & (t->nbuckets - 1)];
  while (*slot != p)
    slot = &(*slot)->next;
  *slot = p->next;
  size_t i = p->heap_idx, last = --t->count;
  if (i != last) {
    heap_swap(t, i, last);
    heap_down(t, i);
    heap_up(t, i);
  }
}

static pending *table_take(stead__nats *t, uint64_t token) {
  if (t->nbuckets == 0)
    return NULL;
  for (pending *p = t->buckets[token & (t->nbuckets - 1)]; p; p = p->next) {
    if (p->token == token) {
      table_remove(t, p);
      return p;
    }
  }
  return NULL;
}

static void fire(pending *p, int status, const void *data, size_t len) {
  p->cb(status, data, len, p->udata);
  free(p);
}

/* ---------------------------------------------------------------------
 * Timer thread and reply delivery.
 * ------------------------------------------------------------------- */

static void abs_deadline(struct timespec *ts, int64_t ns) {
  ts->tv_sec = (time_t)(ns / 1000000000);
  ts->tv_nsec = (long)(ns % 1000000000);
}

static void *timer_main(void *arg) {
  stead__nats *t = arg;
  pthread_mutex_lock(&t->mu);
  while (!t->closed) {
    if (t->count == 0) {
      pthread_cond_wait(&t->timer_cv, &t->mu);
      continue;
    }
    pending *top = t->heap[0];
    if (top->deadline_ns > stead__mono_ns()) {
      struct timespec ts;
      abs_deadline(&ts, top->deadline_ns);
      pthread_cond_timedwait(&t->timer_cv, &t->mu, &ts);
      continue;
    }
    table_remove(t, top);
    pthread_mutex_unlock(&t->mu);
    stead__err(STEAD_ETIMEDOUT, "no reply before the deadline");
    fire(top, STEAD_ETIMEDOUT, NULL, 0);
    pthread_mutex_lock(&t->mu);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *arg) {
  (void)nc;
  (void)sub;
  stead__nats *t = arg;
  const char *subj = natsMsg_GetSubject(msg);
  const char *dot = strrchr(subj, '.');
  char *end = NULL;
  uint64_t token = dot ? strtoull(dot + 1, &end, 10) : 0;
  pending *p = NULL;
  if (end && *end == 0) {
    pthread_mutex_lock(&t->mu);
    p = table_take(t, token);
    pthread_mutex_unlock(&t->mu);
  }
  if (p) {
    /* The server answers a request nobody subscribed to with an empty
     * "503 no responders" message: nothing was delivered. */
    if (natsMsg_IsNoResponders(msg)) {
      stead__err(STEAD_ENOTOWNER, "no subscriber on the request subject");
      fire(p, STEAD_ENOTOWNER, NULL, 0);
    } else {
      fire(p, 0, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    }
  }
  natsMsg_Destroy(msg);
}

static void on_inbox_done(void *arg) {
  stead__nats *t = arg;
  pthread_mutex_lock(&t->mu);
  t->inbox_done = 1;
  pthread_cond_broadcast(&t->done_cv);
  pthread_mutex_unlock(&t->mu);
}

/* ---------------------------------------------------------------------
 * Open and close.
 * ------------------------------------------------------------------- */

void stead__nats_opts_init(stead__nats_opts *o) {
  memset(o, 0, sizeof *o);
  o->connect_timeout_ms = 2000;
  o->max_reconnect = 60;
  o->reconnect_wait_ms = 250;
  o->max_pending = 65536;
}

static int make_options(const stead__nats_opts *o, natsOptions **out) {
  natsOptions *opts = NULL;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK)
    s = natsOptions_SetURL(opts, o->url);
  if (s == NATS_OK && o->name)
    s = natsOptions_SetName(opts, o->name);
  if (s == NATS_OK)
    s = natsOptions_SetTimeout(opts, o->connect_timeout_ms);
  if (s == NATS_OK)
    s = natsOptions_SetMaxReconnect(opts, o->max_reconnect);
  if (s == NATS_OK)
    s = natsOptions_SetReconnectWait(opts, o->reconnect_wait_ms);
  /* Latency over batching: a request leaves the socket when published
   * instead of waiting for nats.c's flusher. */
  if (s == NATS_OK)
    s = natsOptions_SetSendAsap(opts, true);
  if (s == NATS_OK && o->delivery_pool > 0) {
    s = nats_SetMessageDeliveryPoolSize(o->delivery_pool);
    if (s == NATS_OK)
      s = natsOptions_UseGlobalMessageDelivery(opts, true);
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(opts);
    return nats_err(STEAD_EINVAL, "bad NATS options", s);
  }
  *out = opts;
  return 0;
}

static int check_opts(const stead__nats_opts *o) {
  if (!o || !o->url || !o->url[0])
    return stead__err(STEAD_EINVAL, "the NATS url is missing");
  if (o->connect_timeout_ms <= 0 || o->reconnect_wait_ms < 0)
    return stead__err(STEAD_EINVAL, "connect_timeout_ms must be > 0 and "
                                    "reconnect_wait_ms >= 0");
  if (o->max_pending == 0)
    return stead__err(STEAD_EINVAL, "max_pending must be > 0");
  if (o->delivery_pool < 0)
    return stead__err(STEAD_EINVAL, "delivery_pool must be >= 0");
  return 0;
}

static int init_sync(stead__nats *t) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&t->timer_cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0)
    return stead__err(STEAD_EIO, "pthread_cond_init: %s", strerror(rc));
  pthread_cond_init(&t->done_cv, NULL);
  pthread_mutex_init(&t->mu, NULL);
  return 0;
}

static int connect_and_listen(stead__nats *t, const stead__nats_opts *o) {
  natsOptions *opts = NULL;
  int rc = make_options(o, &opts);
  if (rc != 0)
    return rc;
  natsStatus s = natsConnection_Connect(&t->nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK)
    return nats_err(STEAD_EIO, "cannot connect to NATS", s);
  natsInbox *inbox = NULL;
  s = natsInbox_Create(&inbox);
  if (s != NATS_OK)
    return nats_err(STEAD_ENOMEM, "cannot create an inbox", s);
  snprintf(t->inbox, sizeof t->inbox, "%s", (const char *)inbox);
  natsInbox_Destroy(inbox);
  char wildcard[sizeof t->inbox + 2];
  snprintf(wildcard, sizeof wildcard, "%s.*", t->inbox);
  s = natsConnection_Subscribe(&t->inbox_sub, t->nc, wildcard, on_reply, t);
  if (s == NATS_OK)
    s = natsSubscription_SetOnCompleteCB(t->inbox_sub, on_inbox_done, t);
  if (s == NATS_OK)
    t->inbox_cb_set = 1;
  /* Replies can arrive in bursts of max_pending; never drop them. */
  if (s == NATS_OK)
    s = natsSubscription_SetPendingLimits(t->inbox_sub, -1, -1);
  if (s == NATS_OK)
    s = natsConnection_Flush(t->nc);
  if (s != NATS_OK)
    return nats_err(STEAD_EIO, "cannot subscribe to the reply inbox", s);
  return 0;
}

/* After the connection closed: nats.c may still be inside on_reply. */
static void wait_inbox(stead__nats *t) {
  pthread_mutex_lock(&t->mu);
  while (t->inbox_cb_set && !t->inbox_done)
    pthread_cond_wait(&t->done_cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
}

int stead__nats_open(const stead__nats_opts *o, stead__nats **out) {
  if (!out)
    return stead__err(STEAD_EINVAL, "out must not be NULL");
  *out = NULL;
  int rc = check_opts(o);
  if (rc != 0)
    return rc;
  stead__nats *t = calloc(1, sizeof *t);
  if (!t)
    return stead__err(STEAD_ENOMEM, "out of memory opening the NATS transport");
  atomic_init(&t->refs, 1);
  t->max_pending = o->max_pending;
  rc = init_sync(t);
  if (rc != 0) {
    free(t);
    return rc;
  }
  rc = connect_and_listen(t, o);
  if (rc == 0 && table_grow(t) != 0)
    rc = stead__err(STEAD_ENOMEM, "out of memory opening the NATS transport");
  if (rc == 0 && (rc = pthread_create(&t->timer, NULL, timer_main, t)) != 0)
    rc = stead__err(STEAD_EIO, "cannot start the timer thread: %s", strerror(rc));
  if (rc != 0) {
    if (t->nc)
      natsConnection_Close(t->nc);
    wait_inbox(t);
    unref(t);
    return rc;
  }
  *out = t;
  return 0;
}

void stead__nats_close(stead__nats *t) {
  if (!t)
    return;
  pthread_mutex_lock(&t->mu);
  t->closed = 1;
  pending *list = NULL;
  while (t->count > 0) {
    pending *p = t->heap[0];
    table_remove(t, p);
    p->next = list;
    list = p;
  }
  pthread_cond_broadcast(&t->timer_cv);
  pthread_mutex_unlock(&t->mu);
  pthread_join(t->timer, NULL);
  while (list) {
    pending *next = list->next;
    stead__err(STEAD_ECLOSED, "the transport closed before the reply");
    fire(list, STEAD_ECLOSED, NULL, 0);
    list = next;
  }
  /* Closing the connection closes every subscription; wait until nats.c
   * says each handler has returned, so nothing runs after close. */
  natsConnection_Close(t->nc);
  wait_inbox(t);
  unref(t);
}

size_t stead__nats_pending(stead__nats *t) {
  pthread_mutex_lock(&t->mu);
  size_t n = t->count;
  pthread_mutex_unlock(&t->mu);
  return n;
}

/* ---------------------------------------------------------------------
 * Requests and publish.
 * ------------------------------------------------------------------- */

static int check_subject(const char *subject) {
  if (!subject || !subject[0])
    return stead__err(STEAD_EINVAL, "the subject is empty");
  for (const char *c = subject; *c; c++)
    if (*c == ' ' || *c == '\t' || *c == '\r' || *c == '\n')
      return stead__err(STEAD_EINVAL, "subject \"%s\" contains whitespace", subject);
  return 0;
}

static int check_len(size_t len) {
  if (len > INT32_MAX)
    return stead__err(STEAD_ETOOBIG, "message of %zu bytes is too big for NATS", len);
  return 0;
}

/* Registers a pending request and returns its token (read under the lock:
 * once it is unlocked the timer may fire and free the entry), or 0 with
 * the error in *rc. */
static uint64_t add_pending(stead__nats *t, int timeout_ms, stead__nats_reply_fn cb,
                            void *udata, int *rc) {
  pending *p = calloc(1, sizeof *p);
  if (!p) {
    *rc = stead__err(STEAD_ENOMEM, "out of memory starting a request");
    return 0;
  }
  p->cb = cb;
  p->udata = udata;
  p->deadline_ns = stead__mono_ns() + (int64_t)timeout_ms * 1000000;
  pthread_mutex_lock(&t->mu);
  if (t->closed)
    *rc = stead__err(STEAD_ECLOSED, "the transport is closed");
  else if (t->count >= t->max_pending)
    *rc = stead__err(STEAD_EOVERLOAD, "%zu requests in flight; the limit is %zu",
                     t->count, t->max_pending);
  else if (table_grow(t) != 0)
    *rc = stead__err(STEAD_ENOMEM, "out of memory starting a request");
  else
    *rc = 0;
  uint64_t token = 0;
  if (*rc == 0) {
    p->token = token = ++t->next_token;
    table_insert(t, p);
    if (t->heap[0] == p)
      pthread_cond_signal(&t->timer_cv);
  }
  pthread_mutex_unlock(&t->mu);
  if (*rc != 0)
    free(p);
  return token;
}

int stead__nats_request(stead__nats *t, const char *subject, const void *data, size_t len,
                        int timeout_ms, stead__nats_reply_fn cb, void *udata) {
  if (!t || !cb)
    return stead__err(STEAD_EINVAL, "transport and callback must not be NULL");
  if (timeout_ms <= 0)
    return stead__err(STEAD_EINVAL, "timeout_ms must be > 0, not %d", timeout_ms);
  int rc = check_subject(subject);
  if (rc == 0)
    rc = check_len(len);
  if (rc != 0)
    return rc;
  uint64_t token = add_pending(t, timeout_ms, cb, udata, &rc);
  if (token == 0)
    return rc;
  char reply[96];
  snprintf(reply, sizeof reply, "%s.%llu", t->inbox, (unsigned long long)token);
  natsStatus s = natsConnection_PublishRequest(t->nc, subject, reply, data, (int)len);
  if (s == NATS_OK)
    return 0;
  pthread_mutex_lock(&t->mu);
  pending *p = table_take(t, token);
  pthread_mutex_unlock(&t->mu);
  if (!p) /* the timer or close already fired it: report as started */
    return 0;
  free(p);
  return nats_err(s == NATS_CONNECTION_CLOSED ? STEAD_ECLOSED : STEAD_EIO,
                  "cannot publish the request", s);
}

int stead__nats_publish(stead__nats *t, const char *subject, const void *data,
                        size_t len) {
  if (!t)
    return stead__err(STEAD_EINVAL, "transport must not be NULL");
  int rc = check_subject(subject);
  if (rc == 0)
    rc = check_len(len);
  if (rc != 0)
    return rc;
  natsStatus s = natsConnection_Publish(t->nc, subject, data, (int)len);
  if (s == NATS_OK)
    return 0;
  return nats_err(s == NATS_CONNECTION_CLOSED ? STEAD_ECLOSED : STEAD_EIO,
                  "cannot publish", s);
}

/* ---------------------------------------------------------------------
 * Serving.
 * ------------------------------------------------------------------- */

static void on_serve(natsConnection *nc, natsSubscription *ns, natsMsg *msg, void *arg) {
  (void)nc;
  (void)ns;
  stead__nats_sub *s = arg;
  const char *reply = natsMsg_GetReply(msg);
  stead__nats_replier *r = NULL;
  if (reply && reply[0]) {
    size_t n = strlen(reply) + 1;
    r = malloc(sizeof *r + n);
    if (!r) { /* the requester times out; better than a crash */
      natsMsg_Destroy(msg);
      return;
    }
    memcpy(r->subject, reply, n);
    r->t = s->t;
    ref(s->t);
  }
  s->fn(r, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), s->udata);
  natsMsg_Destroy(msg);
}

static void on_serve_done(void *arg) {
  stead__nats_sub *s = arg;
  pthread_mutex_lock(&s->t->mu);
  s->done = 1;
  pthread_cond_broadcast(&s->t->done_cv);
  pthread_mutex_unlock(&s->t->mu);
}

int stead__nats_serve(stead__nats *t, const char *subject, const char *queue,
                      stead__nats_serve_fn fn, void *udata, stead__nats_sub **out) {
  if (!t || !fn || !out)
    return stead__err(STEAD_EINVAL, "transport, handler and out must not be NULL");
  *out = NULL;
  int rc = check_subject(subject);
  if (rc == 0 && queue)
    rc = check_subject(queue);
  if (rc != 0)
    return rc;
  stead__nats_sub *s = calloc(1, sizeof *s);
  if (!s)
    return stead__err(STEAD_ENOMEM, "out of memory subscribing");
  s->t = t;
  s->fn = fn;
  s->udata = udata;
  natsStatus st =
      queue ? natsConnection_QueueSubscribe(&s->ns, t->nc, subject, queue, on_serve, s)
            : natsConnection_Subscribe(&s->ns, t->nc, subject, on_serve, s);
  if (st == NATS_OK)
    st = natsSubscription_SetOnCompleteCB(s->ns, on_serve_done, s);
  if (st == NATS_OK)
    st = natsSubscription_SetPendingLimits(s->ns, -1, -1);
  /* The subscription is live on the server when serve returns, so a
   * request sent right after is not answered "no responders". */
  if (st == NATS_OK)
    st = natsConnection_Flush(t->nc);
  if (st != NATS_OK) {
    if (s->ns) {
      natsSubscription_Unsubscribe(s->ns);
      natsSubscription_Destroy(s->ns);
    }
    free(s);
    return nats_err(st == NATS_CONNECTION_CLOSED ? STEAD_ECLOSED : STEAD_EIO,
                    "cannot subscribe", st);
  }
  ref(t);
  *out = s;
  return 0;
}

void stead__nats_unserve(stead__nats_sub *s) {
  if (!s)
    return;
  stead__nats *t = s->t;
  /* Fails harmlessly if the connection already closed the subscription. */
  natsSubscription_Unsubscribe(s->ns);
  pthread_mutex_lock(&t->mu);
  while (!s->done)
    pthread_cond_wait(&t->done_cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  natsSubscription_Destroy(s->ns);
  free(s);
  unref(t);
}

int stead__nats_respond(stead__nats_replier *r, const void *data, size_t len) {
  if (!r)
    return stead__err(STEAD_EINVAL, "replier must not be NULL");
  int rc = check_len(len);
  if (rc == 0) {
    natsStatus s = natsConnection_Publish(r->t->nc, r->subject, data, (int)len);
    if (s != NATS_OK)
      rc = nats_err(s == NATS_CONNECTION_CLOSED ? STEAD_ECLOSED : STEAD_EIO,
                    "cannot send the reply", s);
  }
  stead__nats_replier_drop(r);
  return rc;
}

void stead__nats_replier_drop(stead__nats_replier *r) {
  if (!r)
    return;
  stead__nats *t = r->t;
  free(r);
  unref(t);
}

/* ---------------------------------------------------------------------
 * Subjects.
 * ------------------------------------------------------------------- */

int stead__nats_check_deployment(const char *d) {
  if (!d || !d[0])
    return stead__err(STEAD_EINVAL, "the deployment name is empty");
  size_t len = strlen(d);
  if (len > 64)
    return stead__err(STEAD_ETOOBIG, "deployment name is %zu bytes; the limit is 64",
                      len);
  for (size_t i = 0; i < len; i++) {
    char c = d[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-'))
      return stead__err(STEAD_EINVAL,
                        "deployment \"%s\" has a character outside [A-Za-z0-9_-]", d);
  }
  return 0;
}

static int subject_printf(char *buf, size_t cap, const char *d, const char *suffix) {
  int rc = stead__nats_check_deployment(d);
  if (rc != 0)
    return rc;
  int w = snprintf(buf, cap, "%s.%s", d, suffix);
  if (w < 0 || (size_t)w >= cap)
    return stead__err(STEAD_ETOOBIG, "subject buffer of %zu bytes is too small", cap);
  return 0;
}

int stead__nats_shard_subject(char *buf, size_t cap, const char *d, uint32_t shard) {
  char suffix[32];
  snprintf(suffix, sizeof suffix, "shard.%u", shard);
  return subject_printf(buf, cap, d, suffix);
}

int stead__nats_members_subject(char *buf, size_t cap, const char *d) {
  return subject_printf(buf, cap, d, "members");
}
