/*
 * turn.c -- running turns: one message handled by one activation.
 *
 * A worker owns a scheduled activation for one slice (at most
 * turns_per_slice messages), then requeues it behind the others if more
 * messages wait. Each turn gets a stead_ctx on the worker's stack. Nothing
 * a turn produces (reply, sends, outgoing calls, deferred answers) leaves
 * it until the handler has returned 0: those effects are collected in the
 * ctx's outbox and released together at the end, or dropped if the turn
 * failed (the output gate; with durable storage, release waits for the
 * commit).
 */
#include "core/core.h"
#include "core/seam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum out_kind { OUT_SEND, OUT_CALL, OUT_DEFERRED } out_kind;

typedef struct out_item {
  struct out_item *next;
  out_kind kind;
  const stead__class_rec *crec;
  const stead_method *method;
  stead_then_fn then;
  void *then_udata;
  int timeout_ms;
  stead_deferred *deferred;
  int fail_code; /* OUT_DEFERRED: 0 to reply */
  char *id;
  size_t id_len;
  void *data;
  size_t len;
} out_item;

struct stead_ctx {
  stead_rt *rt;
  stead__act *act;
  stead__msg *msg; /* NULL in lifecycle hooks */
  bool can_reply;  /* a CALL whose reply has not been deferred */
  bool failed;
  stead__buf reply;
  bool has_reply;
  char errmsg[1024];
  stead_deferred *deferring; /* taken by stead_defer_reply this turn */
  out_item *out_head, *out_tail;
};

/* ---- seam ----------------------------------------------------------- */

struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  return ctx && ctx->act ? ctx->act->store : NULL;
}

stead_rt *stead__ctx_rt(stead_ctx *ctx) {
  return ctx ? ctx->rt : NULL;
}

/* ---- ctx accessors -------------------------------------------------- */

const char *stead_class_name(stead_ctx *ctx) {
  return ctx ? ctx->act->crec->cls->name : NULL;
}

const char *stead_object_id(stead_ctx *ctx) {
  return ctx ? ctx->act->id : NULL;
}

void *stead_state(stead_ctx *ctx) {
  return ctx ? ctx->act->state : NULL;
}

int64_t stead_now_ms(stead_ctx *ctx) {
  return ctx ? stead__rt_now_ms(ctx->rt) : stead__wall_ms();
}

int stead_reply(stead_ctx *ctx, const void *data, size_t len) {
  if (!ctx)
    return stead__err(STEAD_EINVAL, "ctx is NULL");
  if (!ctx->can_reply)
    return stead__err(STEAD_EMISUSE, "this turn has no call to reply to");
  if (len > ctx->rt->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "reply is %zu bytes; the limit is %zu", len,
                      ctx->rt->cfg.max_payload);
  ctx->reply.len = 0;
  if (stead__buf_append(&ctx->reply, data, len) != 0)
    return stead__err(STEAD_ENOMEM, "out of memory copying the reply");
  ctx->has_reply = true;
  return 0;
}

int stead_fail(stead_ctx *ctx, const char *fmt, ...) {
  if (!ctx)
    return STEAD_EHANDLER;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt ? fmt : "handler failed", ap);
  va_end(ap);
  ctx->failed = true;
  return STEAD_EHANDLER;
}

/* ---- outbox --------------------------------------------------------- */

static void out_free(out_item *o) {
  if (o->kind == OUT_DEFERRED)
    free(o->data);
  free(o);
}

static void out_push(stead_ctx *ctx, out_item *o) {
  if (ctx->out_tail)
    ctx->out_tail->next = o;
  else
    ctx->out_head = o;
  ctx->out_tail = o;
}

/* Validates an outgoing message and resolves its class and method. */
static int resolve_target(stead_ctx *ctx, const char *cls, const char *id,
                          const char *method, size_t len, const stead__class_rec **crec,
                          const stead_method **m) {
  int rc;
  if ((rc = stead__check_name("class name", cls)) ||
      (rc = stead__check_utf8("id", id, STEAD__MAX_ID)) ||
      (rc = stead__check_name("method name", method)))
    return rc;
  if (len > ctx->rt->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "payload is %zu bytes; the limit is %zu", len,
                      ctx->rt->cfg.max_payload);
  if (!(*crec = stead__class_find(ctx->rt, cls)))
    return stead__err(STEAD_ENOCLASS, "no class \"%s\"", cls);
  if (!(*m = stead__method_find(*crec, method)))
    return stead__err(STEAD_ENOMETHOD, "class \"%s\" has no method \"%s\"", cls, method);
  return 0;
}

static int out_message(stead_ctx *ctx, out_kind kind, const char *cls, const char *id,
                       const char *method, const void *arg, size_t len, out_item **out) {
  if (!ctx)
    return stead__err(STEAD_EINVAL, "ctx is NULL");
  const stead__class_rec *crec = NULL;
  const stead_method *m = NULL;
  int rc = resolve_target(ctx, cls, id, method, len, &crec, &m);
  if (rc)
    return rc;
  /* One allocation: the item, then the id, then the payload. */
  size_t id_len = strlen(id);
  out_item *o = malloc(sizeof *o + id_len + 1 + len);
  if (!o)
    return stead__err(STEAD_ENOMEM, "out of memory");
  memset(o, 0, sizeof *o);
  o->kind = kind;
  o->crec = crec;
  o->method = m;
  o->id_len = id_len;
  o->id = (char *)(o + 1);
  memcpy(o->id, id, id_len + 1);
  o->data = o->id + id_len + 1;
  if (len)
    memcpy(o->data, arg, len);
  o->len = len;
  out_push(ctx, o);
  *out = o;
  return 0;
}

int stead_ctx_send(stead_ctx *ctx, const char *cls, const char *id, const char *method,
                   const void *arg, size_t len) {
  out_item *o;
  return out_message(ctx, OUT_SEND, cls, id, method, arg, len, &o);
}

int stead_ctx_call(stead_ctx *ctx, const char *cls, const char *id, const char *method,
                   const void *arg, size_t len, int timeout_ms, stead_then_fn then,
                   void *udata) {
  if (!then)
    return stead__err(STEAD_EINVAL, "continuation is NULL");
  out_item *o;
  int rc = out_message(ctx, OUT_CALL, cls, id, method, arg, len, &o);
  if (rc)
    return rc;
  o->then = then;
  o->then_udata = udata;
  o->timeout_ms = timeout_ms > 0 ? timeout_ms : ctx->rt->cfg.default_timeout_ms;
  return 0;
}

stead_deferred *stead_defer_reply(stead_ctx *ctx) {
  if (!ctx || !ctx->can_reply) {
    stead__err(STEAD_EMISUSE, "this turn has no call to defer");
    return NULL;
  }
  stead_deferred *d = calloc(1, sizeof *d);
  if (!d) {
    stead__err(STEAD_ENOMEM, "out of memory");
    return NULL;
  }
  d->act = ctx->act;
  ctx->deferring = d;
  ctx->can_reply = false;
  ctx->has_reply = false;
  return d;
}

static int deferred_answer(stead_ctx *ctx, stead_deferred *d, int code, const char *msg,
                           const void *data, size_t len) {
  if (!ctx || !d || d->act != ctx->act)
    return stead__err(STEAD_EINVAL, "deferred reply belongs to another object");
  if (len > ctx->rt->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "reply is %zu bytes; the limit is %zu", len,
                      ctx->rt->cfg.max_payload);
  for (out_item *o = ctx->out_head; o; o = o->next)
    if (o->kind == OUT_DEFERRED && o->deferred == d)
      return stead__err(STEAD_EINVAL, "deferred reply already answered in this turn");
  out_item *o = calloc(1, sizeof *o);
  if (!o)
    return stead__err(STEAD_ENOMEM, "out of memory");
  o->kind = OUT_DEFERRED;
  o->deferred = d;
  o->fail_code = code;
  o->data =
      code ? stead__strdup(msg ? msg : stead_strerror(code)) : stead__memdup(data, len);
  o->len = len;
  if (!o->data) {
    free(o);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  out_push(ctx, o);
  return 0;
}

int stead_deferred_reply(stead_ctx *ctx, stead_deferred *d, const void *data,
                         size_t len) {
  return deferred_answer(ctx, d, 0, NULL, data, len);
}

int stead_deferred_fail(stead_ctx *ctx, stead_deferred *d, int code,
                        const char *message) {
  if (code >= 0)
    code = STEAD_EHANDLER;
  return deferred_answer(ctx, d, code, message, NULL, 0);
}

/* ---- continuations -------------------------------------------------- */

typedef struct cont_rec {
  stead_rt *rt;
  stead__act *act;
  stead_then_fn then;
  void *udata;
} cont_rec;

/* Completion of a call made from a turn: becomes a CONT message of the
 * caller. The caller is pinned, so act is alive. */
static void cont_complete(const stead_result *res, void *udata) {
  cont_rec *cr = udata;
  stead__msg *m = stead__msg_new(STEAD__MSG_CONT, res->data, res->len);
  if (!m) {
    /* Nowhere to report to; the pin stays so the object is not freed
     * under a continuation that can never run. Logged loudly. */
    stead__log(cr->rt, STEAD_LOG_ERROR,
               "out of memory delivering a continuation to %s/%s",
               cr->act->crec->cls->name, cr->act->id);
    return;
  }
  m->then = cr->then;
  m->then_udata = cr->udata;
  m->status = res->status;
  m->errmsg = res->message ? stead__strdup(res->message) : NULL;
  stead__counter_add(&cr->rt->m.conts, 1);
  stead__enqueue_act(cr->rt, cr->act, m);
}

/* ---- release -------------------------------------------------------- */

static void release_send(stead_rt *rt, out_item *o) {
  stead__msg *m = stead__msg_new(STEAD__MSG_SEND, o->data, o->len);
  int rc =
      m ? stead__enqueue(rt, o->crec, o->id, o->id_len, (m->method = o->method, m), false)
        : STEAD_ENOMEM;
  stead__counter_add(&rt->m.sends, 1);
  if (rc) {
    stead__msg_free(m);
    stead__counter_add(&rt->m.sends_dropped, 1);
    stead__log(rt, STEAD_LOG_WARN, "send to %s/%s.%s dropped: %s", o->crec->cls->name,
               o->id, o->method->name, stead_errname(rc));
  }
}

static void release_call(stead_rt *rt, stead__act *self, out_item *o) {
  void *extra = NULL;
  stead__call *c = stead__call_new(rt, cont_complete, NULL, o->timeout_ms, true,
                                   sizeof(cont_rec), &extra);
  stead__msg *m = c ? stead__msg_new(STEAD__MSG_CALL, o->data, o->len) : NULL;
  if (c) {
    /* The continuation record lives inside the call: freed with it. */
    cont_rec *cr = extra;
    *cr = (cont_rec){rt, self, o->then, o->then_udata};
    c->udata = cr;
  }
  if (!m) {
    free(c);
    stead__log(rt, STEAD_LOG_ERROR, "out of memory starting a call from %s/%s",
               self->crec->cls->name, self->id);
    return;
  }
  atomic_fetch_add(&self->pins, 1);
  m->method = o->method;
  m->call = c;
  stead__call_arm(c);
  /* Overload or failure to deliver answers the continuation, not nobody. */
  int rc = stead__enqueue(rt, o->crec, o->id, o->id_len, m, false);
  if (rc) {
    char why[256];
    snprintf(why, sizeof why, "%s", stead_errmsg());
    stead__call_complete(c, rc, NULL, 0, why);
    stead__call_unref(c);
    stead__msg_free(m);
  }
}

static void release_deferred(stead_rt *rt, stead__act *self, out_item *o) {
  stead_deferred *d = o->deferred;
  /* Unlink from the activation's open list. */
  stead_deferred **pp = &self->deferred;
  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp)
    *pp = d->next;
  if (o->fail_code)
    stead__call_complete(d->call, o->fail_code, NULL, 0, o->data);
  else
    stead__call_complete(d->call, 0, o->data, o->len, NULL);
  stead__call_unref(d->call);
  atomic_fetch_sub(&self->pins, 1);
  free(d);
  (void)rt;
}

static void release_outbox(stead_ctx *ctx) {
  out_item *o = ctx->out_head;
  ctx->out_head = ctx->out_tail = NULL;
  while (o) {
    out_item *next = o->next;
    if (o->kind == OUT_SEND)
      release_send(ctx->rt, o);
    else if (o->kind == OUT_CALL)
      release_call(ctx->rt, ctx->act, o);
    else
      release_deferred(ctx->rt, ctx->act, o);
    out_free(o);
    o = next;
  }
}

static void drop_outbox(stead_ctx *ctx) {
  out_item *o = ctx->out_head;
  ctx->out_head = ctx->out_tail = NULL;
  while (o) {
    out_item *next = o->next;
    out_free(o);
    o = next;
  }
}

/* ---- running a turn ------------------------------------------------- */

static void ctx_init(stead_ctx *ctx, stead_rt *rt, stead__act *a, stead__msg *m) {
  memset(ctx, 0, sizeof *ctx);
  ctx->rt = rt;
  ctx->act = a;
  ctx->msg = m;
  ctx->can_reply = m && m->kind == STEAD__MSG_CALL;
}

static void ctx_done(stead_ctx *ctx) {
  drop_outbox(ctx);
  stead__buf_free(&ctx->reply);
}

/* Completes a CALL message's call with the turn's outcome. */
static void answer(stead__msg *m, int status, const void *data, size_t len,
                   const char *why) {
  if (m->kind == STEAD__MSG_CALL && m->call)
    stead__call_complete(m->call, status, data, len, why);
}

static int activate(stead_rt *rt, stead__act *a, stead__msg *m) {
  const stead_class *cls = a->crec->cls;
  if (cls->state_size && !(a->state = calloc(1, cls->state_size))) {
    answer(m, STEAD_ENOMEM, NULL, 0, "out of memory allocating object state");
    return STEAD_ENOMEM;
  }
  if (cls->on_activate) {
    stead_ctx ctx;
    ctx_init(&ctx, rt, a, NULL);
    int rc = cls->on_activate(&ctx);
    if (rc != 0 || ctx.failed) {
      char why[1100];
      snprintf(why, sizeof why, "on_activate of %s/%s failed: %s", cls->name, a->id,
               ctx.failed ? ctx.errmsg : "returned non-zero");
      ctx_done(&ctx);
      free(a->state);
      a->state = NULL;
      stead__counter_add(&rt->m.activate_failed, 1);
      stead__log(rt, STEAD_LOG_WARN, "%s", why);
      answer(m, STEAD_EHANDLER, NULL, 0, why);
      return STEAD_EHANDLER;
    }
    release_outbox(&ctx);
    ctx_done(&ctx);
  }
  atomic_store(&a->activated, true);
  a->hibernated = false;
  stead__counter_add(&rt->m.activations_total, 1);
  return 0;
}

static void run_user_turn(stead_rt *rt, stead__act *a, stead__msg *m) {
  stead_ctx ctx;
  ctx_init(&ctx, rt, a, m);
  /* Coarse clock: slow-turn detection needs milliseconds, and a precise
   * read per turn is measurable on virtual machines. */
  int64_t t0 = stead__coarse_mono_ms();
  int rc;
  if (m->kind == STEAD__MSG_CONT) {
    stead_result res = {m->status, m->status == 0 ? m->payload : NULL,
                        m->status == 0 ? m->len : 0, m->errmsg};
    rc = m->then(&ctx, &res, m->then_udata);
  } else {
    rc = m->method->fn(&ctx, m->payload, m->len);
  }
  int64_t dt = stead__coarse_mono_ms() - t0;
  stead__counter_add(&rt->m.turns, 1);
  if (dt > (int64_t)rt->cfg.slow_turn_ms) {
    stead__counter_add(&rt->m.turns_slow, 1);
    stead__log(rt, STEAD_LOG_WARN, "slow turn: %s/%s took %lld ms", a->crec->cls->name,
               a->id, (long long)dt);
  }
  if (rc != 0 || ctx.failed) {
    stead__counter_add(&rt->m.turns_failed, 1);
    const char *why = ctx.failed ? ctx.errmsg : "handler returned an error";
    if (m->kind != STEAD__MSG_CALL)
      stead__log(rt, STEAD_LOG_WARN, "turn of %s/%s failed: %s", a->crec->cls->name,
                 a->id, why);
    /* A deferral taken in a failed turn is undone: the call fails. */
    free(ctx.deferring);
    answer(m, STEAD_EHANDLER, NULL, 0, why);
    ctx_done(&ctx);
    return;
  }
  /* A deferral that survived the turn joins the activation's open list
   * and takes over the message's reference to the call. */
  if (ctx.deferring) {
    stead_deferred *d = ctx.deferring;
    d->call = m->call;
    m->call = NULL;
    d->next = a->deferred;
    a->deferred = d;
    atomic_fetch_add(&a->pins, 1);
  }
  release_outbox(&ctx);
  if (ctx.can_reply)
    answer(m, 0, ctx.reply.data, ctx.reply.len, NULL);
  ctx_done(&ctx);
}

/* Runs on_deactivate and drops the activation's memory. */
static void deactivate(stead_rt *rt, stead__act *a) {
  const stead_class *cls = a->crec->cls;
  if (cls->on_deactivate) {
    stead_ctx ctx;
    ctx_init(&ctx, rt, a, NULL);
    int rc = cls->on_deactivate(&ctx);
    if (rc != 0 || ctx.failed)
      stead__log(rt, STEAD_LOG_WARN, "on_deactivate of %s/%s failed: %s", cls->name,
                 a->id, ctx.failed ? ctx.errmsg : "returned non-zero");
    else
      release_outbox(&ctx);
    ctx_done(&ctx);
  }
  free(a->state);
  a->state = NULL;
  atomic_store(&a->activated, false);
  stead__counter_add(&rt->m.deactivations_total, 1);
}

static void waiter_signal(stead__waiter *w, int rc) {
  if (!w)
    return;
  pthread_mutex_lock(&w->mu);
  w->rc = rc;
  w->done = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

/* Handles a system message. Returns true if the activation was freed. */
static bool run_system(stead_rt *rt, stead__act *a, stead__msg *m) {
  stead__stripe *s = &rt->stripes[a->stripe];
  pthread_mutex_lock(&s->mu);
  a->sys_pending = false;
  pthread_mutex_unlock(&s->mu);
  if (atomic_load(&a->pins) > 0) {
    /* Waiting for continuations or owing deferred replies: must stay. */
    waiter_signal(m->waiter, STEAD_ECANCELED);
    return false;
  }
  if (m->kind == STEAD__MSG_HIBERNATE) {
    if (atomic_load(&a->activated) && !a->hibernated) {
      a->hibernated = true;
      stead__counter_add(&rt->m.hibernations_total, 1);
    }
    return false;
  }
  if (atomic_load(&a->activated))
    deactivate(rt, a);
  pthread_mutex_lock(&s->mu);
  bool freed = stead__table_remove_if_empty(rt, a);
  pthread_mutex_unlock(&s->mu);
  waiter_signal(m->waiter, 0);
  return freed;
}

/* Runs one message. Returns true if the activation was freed. */
static bool run_turn(stead_rt *rt, stead__act *a, stead__msg *m) {
  if (m->kind == STEAD__MSG_HIBERNATE || m->kind == STEAD__MSG_DEACTIVATE)
    return run_system(rt, a, m);
  if (m->kind == STEAD__MSG_CALL && m->call && atomic_load(&m->call->done))
    return false; /* the caller gave up (deadline); do not run it */
  if (!atomic_load(&a->activated) && activate(rt, a, m) != 0)
    return false;
  run_user_turn(rt, a, m);
  if (m->kind == STEAD__MSG_CONT)
    atomic_fetch_sub(&a->pins, 1);
  return false;
}

void stead__run_slice(stead_rt *rt, stead__act *a) {
  stead__stripe *s = &rt->stripes[a->stripe];
  for (int i = 0; i < rt->cfg.turns_per_slice; i++) {
    pthread_mutex_lock(&s->mu);
    stead__msg *m = a->head;
    if (!m) {
      /* Out of work. An activation whose on_activate failed is only a
       * mailbox: drop it so that it leaves no trace. */
      bool freed = false;
      if (!atomic_load(&a->activated) && atomic_load(&a->pins) == 0)
        freed = stead__table_remove_if_empty(rt, a);
      else
        stead__lru_touch(rt, a);
      a->sched = false;
      pthread_mutex_unlock(&s->mu);
      if (freed)
        stead__act_free(a);
      return;
    }
    a->head = m->next;
    if (!a->head)
      a->tail = NULL;
    a->queued--;
    pthread_mutex_unlock(&s->mu);
    bool freed = run_turn(rt, a, m);
    stead__msg_free(m);
    stead__inflight_done(rt);
    if (freed) {
      stead__act_free(a);
      return;
    }
  }
  /* Slice used up: to the back of the queue, behind other objects. */
  pthread_mutex_lock(&s->mu);
  if (a->head) {
    stead__rq_push(rt, a);
  } else {
    stead__lru_touch(rt, a);
    a->sched = false;
  }
  pthread_mutex_unlock(&s->mu);
}

/* ---- messages ------------------------------------------------------- */

stead__msg *stead__msg_new(stead__msg_kind kind, const void *payload, size_t len) {
  stead__msg *m = malloc(sizeof *m + len + 1);
  if (!m)
    return NULL;
  memset(m, 0, sizeof *m);
  m->kind = kind;
  m->len = len;
  m->payload = (uint8_t *)(m + 1);
  if (len)
    memcpy(m->payload, payload, len);
  m->payload[len] = 0;
  return m;
}

void stead__msg_free(stead__msg *m) {
  if (!m)
    return;
  if (m->call) {
    /* A call that no turn answered (its object was freed, or the runtime
     * closed) still owes its caller an answer. */
    stead__call_complete(m->call, STEAD_ECLOSED, NULL, 0, "runtime closed");
    stead__call_unref(m->call);
  }
  free(m->errmsg);
  free(m);
}
