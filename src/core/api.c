/*
 * api.c -- calls from outside a turn: stead_call, stead_call_async,
 * stead_send, and explicit lifecycle control.
 *
 * Every entry point validates its arguments completely before anything is
 * queued, so bad input is answered with a code and a message and never
 * reaches an object. Entry points hold an api reference while they
 * enqueue so that stead_close, once it has seen the count drop to zero,
 * knows no late message can slip in.
 */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int api_enter(stead_rt *rt) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  atomic_fetch_add(&rt->api_refs, 1);
  if (atomic_load(&rt->closing)) {
    atomic_fetch_sub(&rt->api_refs, 1);
    return stead__err(STEAD_ECLOSED, "runtime is closing");
  }
  return 0;
}

static void api_leave(stead_rt *rt) {
  atomic_fetch_sub(&rt->api_refs, 1);
}

/* Validates a target and resolves class and method. Lifecycle calls pass
 * m = NULL: they name an object, not a method. */
static int resolve(stead_rt *rt, const char *cls, const char *id, const char *method,
                   size_t len, const void *arg, const stead__class_rec **crec,
                   const stead_method **m) {
  int rc;
  if ((rc = stead__check_name("class name", cls)) ||
      (rc = stead__check_utf8("id", id, STEAD__MAX_ID)))
    return rc;
  if (m && (rc = stead__check_name("method name", method)))
    return rc;
  if (len && !arg)
    return stead__err(STEAD_EINVAL, "payload is NULL but its length is %zu", len);
  if (len > rt->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "payload is %zu bytes; the limit is %zu", len,
                      rt->cfg.max_payload);
  if (!(*crec = stead__class_find(rt, cls)))
    return stead__err(STEAD_ENOCLASS, "no class \"%s\"", cls);
  if (m && !(*m = stead__method_find(*crec, method)))
    return stead__err(STEAD_ENOMETHOD, "class \"%s\" has no method \"%s\"", cls, method);
  return 0;
}

/* Queues `msg`, which carries its call (one reference): arms the call's
 * deadline first, because once queued the turn may answer and free it at
 * any moment. On error the call's callback never runs (the API promises
 * it) and msg and call are freed. */
static int submit_call(stead_rt *rt, const stead__class_rec *crec, const char *id,
                       stead__msg *msg) {
  stead__call *c = msg->call;
  int rc = stead__call_arm(c);
  if (rc)
    rc = stead__err(STEAD_ENOMEM, "out of memory arming the deadline");
  else if ((rc = stead__enqueue(rt, crec, id, strlen(id), msg, false)) == 0)
    return 0;
  atomic_store(&c->done, 1); /* claim it: msg_free must not answer it */
  if (stead__timer_cancel(&rt->timers, &c->timer))
    stead__call_unref(c);
  stead__msg_free(msg);
  return rc;
}

int stead_call_async(stead_rt *rt, const char *cls, const char *id, const char *method,
                     const void *arg, size_t len, int timeout_ms, stead_call_cb cb,
                     void *udata) {
  int rc = api_enter(rt);
  if (rc)
    return rc;
  const stead__class_rec *crec = NULL;
  const stead_method *m = NULL;
  if (!cb) {
    rc = stead__err(STEAD_EINVAL, "callback is NULL");
    goto out;
  }
  if ((rc = resolve(rt, cls, id, method, len, arg, &crec, &m)) != 0)
    goto out;
  int tmo = timeout_ms > 0 ? timeout_ms : rt->cfg.default_timeout_ms;
  stead__call *c = stead__call_new(rt, cb, udata, tmo, false, 0, NULL);
  stead__msg *msg = c ? stead__msg_new(STEAD__MSG_CALL, arg, len) : NULL;
  if (!msg) {
    free(c);
    rc = stead__err(STEAD_ENOMEM, "out of memory");
    goto out;
  }
  msg->method = m;
  msg->call = c; /* the message's reference */
  rc = submit_call(rt, crec, id, msg);
out:
  api_leave(rt);
  return rc;
}

int stead_send(stead_rt *rt, const char *cls, const char *id, const char *method,
               const void *arg, size_t len) {
  int rc = api_enter(rt);
  if (rc)
    return rc;
  const stead__class_rec *crec = NULL;
  const stead_method *m = NULL;
  if ((rc = resolve(rt, cls, id, method, len, arg, &crec, &m)) != 0)
    goto out;
  stead__msg *msg = stead__msg_new(STEAD__MSG_SEND, arg, len);
  if (!msg) {
    rc = stead__err(STEAD_ENOMEM, "out of memory");
    goto out;
  }
  msg->method = m;
  if ((rc = stead__enqueue(rt, crec, id, strlen(id), msg, false)) != 0)
    stead__msg_free(msg);
  else
    stead__counter_add(&rt->m.sends, 1);
out:
  api_leave(rt);
  return rc;
}

/* The blocking call waits on a waiter on its own stack; the completion
 * fills it under the waiter's mutex, so the stack frame outlives every
 * touch of it. */
typedef struct sync_call {
  stead__waiter w;
  void *reply;
  size_t len;
  char msg[1024];
} sync_call;

static void sync_done(const stead_result *res, void *udata) {
  sync_call *sc = udata;
  void *copy = NULL;
  if (res->status == 0) {
    copy = malloc(res->len + 1);
    if (copy) {
      if (res->len)
        memcpy(copy, res->data, res->len);
      ((char *)copy)[res->len] = 0;
    }
  }
  pthread_mutex_lock(&sc->w.mu);
  if (res->status == 0 && !copy) {
    sc->w.rc = STEAD_ENOMEM;
    snprintf(sc->msg, sizeof sc->msg, "out of memory copying the reply");
  } else {
    sc->w.rc = res->status;
    sc->reply = copy;
    sc->len = res->len;
    if (res->message)
      snprintf(sc->msg, sizeof sc->msg, "%s", res->message);
  }
  sc->w.done = true;
  pthread_cond_signal(&sc->w.cv);
  pthread_mutex_unlock(&sc->w.mu);
}

static void sync_init(sync_call *sc) {
  memset(sc, 0, sizeof *sc);
  pthread_mutex_init(&sc->w.mu, NULL);
  pthread_cond_init(&sc->w.cv, NULL);
}

/* Waits for the completion; sets the thread's error message on failure. */
static int sync_wait(sync_call *sc) {
  pthread_mutex_lock(&sc->w.mu);
  while (!sc->w.done)
    pthread_cond_wait(&sc->w.cv, &sc->w.mu);
  pthread_mutex_unlock(&sc->w.mu);
  int rc = sc->w.rc;
  if (rc)
    stead__err(rc, "%s", sc->msg[0] ? sc->msg : stead_strerror(rc));
  return rc;
}

static void sync_destroy(sync_call *sc) {
  pthread_mutex_destroy(&sc->w.mu);
  pthread_cond_destroy(&sc->w.cv);
}

int stead_call(stead_rt *rt, const char *cls, const char *id, const char *method,
               const void *arg, size_t len, int timeout_ms, void **reply,
               size_t *reply_len) {
  if (reply)
    *reply = NULL;
  if (reply_len)
    *reply_len = 0;
  if (stead__current_rt())
    return stead__err(STEAD_EMISUSE,
                      "stead_call would block a stead thread; use stead_ctx_call in a "
                      "handler or stead_call_async in a callback");
  sync_call sc;
  sync_init(&sc);
  int rc = stead_call_async(rt, cls, id, method, arg, len, timeout_ms, sync_done, &sc);
  if (rc == 0 && (rc = sync_wait(&sc)) == 0) {
    if (reply)
      *reply = sc.reply;
    else
      free(sc.reply);
    if (reply_len)
      *reply_len = sc.len;
  }
  sync_destroy(&sc);
  return rc;
}

int stead_is_active(stead_rt *rt, const char *cls, const char *id) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  const stead__class_rec *crec = NULL;
  int rc = resolve(rt, cls, id, NULL, 0, NULL, &crec, NULL);
  if (rc)
    return rc;
  return stead__act_lookup_active(rt, crec, id);
}

int stead_deactivate(stead_rt *rt, const char *cls, const char *id) {
  if (stead__current_rt())
    return stead__err(STEAD_EMISUSE, "stead_deactivate would block a stead thread");
  int rc = api_enter(rt);
  if (rc)
    return rc;
  const stead__class_rec *crec = NULL;
  if ((rc = resolve(rt, cls, id, NULL, 0, NULL, &crec, NULL)) != 0)
    goto out;
  stead__waiter w;
  memset(&w, 0, sizeof w);
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  rc = stead__queue_deactivate(rt, crec, id, &w);
  if (rc == 1) {
    pthread_mutex_lock(&w.mu);
    while (!w.done)
      pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    rc = w.rc;
    if (rc == STEAD_ECANCELED)
      stead__err(rc,
                 "%s/%s waits for continuations or owes deferred replies; "
                 "not deactivated",
                 cls, id);
  }
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
out:
  api_leave(rt);
  return rc;
}

int stead__deliver_event(stead_rt *rt, const char *cls, const char *id, const char *topic,
                         const void *payload, size_t len) {
  int rc = api_enter(rt);
  if (rc)
    return rc;
  const stead__class_rec *crec = NULL;
  if ((rc = resolve(rt, cls, id, NULL, len, payload, &crec, NULL)) != 0)
    goto out;
  if (!crec->cls->on_event) {
    rc = stead__err(STEAD_ENOTSUP, "class \"%s\" has no on_event hook", cls);
    goto out;
  }
  stead__msg *m = stead__msg_new(STEAD__MSG_EVENT, payload, len);
  char *t = topic ? stead__strdup(topic) : NULL;
  if (!m || !t) {
    free(t);
    stead__msg_free(m);
    rc = stead__err(STEAD_ENOMEM, "out of memory");
    goto out;
  }
  m->topic = t;
  if ((rc = stead__enqueue(rt, crec, id, strlen(id), m, false)) != 0)
    stead__msg_free(m);
out:
  api_leave(rt);
  return rc;
}

int stead__run_as_turn(stead_rt *rt, const char *cls, const char *id,
                       int (*fn)(stead_ctx *ctx, void *arg), void *arg, int timeout_ms) {
  if (stead__current_rt())
    return stead__err(STEAD_EMISUSE, "would block a stead thread");
  int rc = api_enter(rt);
  if (rc)
    return rc;
  const stead__class_rec *crec = NULL;
  if ((rc = resolve(rt, cls, id, NULL, 0, NULL, &crec, NULL)) != 0) {
    api_leave(rt);
    return rc;
  }
  sync_call sc;
  sync_init(&sc);
  int tmo = timeout_ms > 0 ? timeout_ms : rt->cfg.default_timeout_ms;
  stead__call *c = stead__call_new(rt, sync_done, &sc, tmo, false, 0, NULL);
  stead__msg *m = c ? stead__msg_new(STEAD__MSG_FN, NULL, 0) : NULL;
  if (!m) {
    free(c);
    rc = stead__err(STEAD_ENOMEM, "out of memory");
  } else {
    m->fn = fn;
    m->fn_arg = arg;
    m->call = c;
    rc = submit_call(rt, crec, id, m);
  }
  api_leave(rt);
  if (rc == 0)
    rc = sync_wait(&sc);
  free(sc.reply);
  sync_destroy(&sc);
  return rc;
}
