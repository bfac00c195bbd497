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

typedef enum out_kind { OUT_SEND, OUT_CALL, OUT_DEFERRED, OUT_EFFECT } out_kind;

typedef struct out_item {
  struct out_item *next;
  out_kind kind;
  const stead__class_rec *crec;
  const stead_method *method;
  stead_then_fn then;
  void *then_udata;
  int timeout_ms;
  stead_deferred *deferred;
  void (*release)(void *arg); /* OUT_EFFECT */
  void (*drop)(void *arg);
  void *arg;
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
  int fail_code; /* stead__ctx_fail_code; 0: STEAD_EHANDLER */
  stead__buf reply;
  bool has_reply;
  char errmsg[1024];
  stead_deferred *deferring; /* taken by stead_defer_reply this turn */
  out_item *out_head, *out_tail;
  struct batch *batch; /* messages taken by stead__ctx_take_batch */
};

/* ---- seam ----------------------------------------------------------- */

/* The turn running on this thread: connections (conn.c) let the object's
 * end be used with stead_conn_send, which takes no ctx. */
static _Thread_local stead_ctx *tl_ctx;

stead_ctx *stead__ctx_current(void) {
  return tl_ctx;
}

struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  return ctx && ctx->act ? ctx->act->store : NULL;
}

stead__act *stead__ctx_act(stead_ctx *ctx) {
  return ctx ? ctx->act : NULL;
}

stead_rt *stead__ctx_rt(stead_ctx *ctx) {
  return ctx ? ctx->rt : NULL;
}

/* ---- ctx accessors -------------------------------------------------- */

const char *stead_class_name(stead_ctx *ctx) {
  return ctx ? ctx->act->crec->cls->name : NULL;
}

const char *stead_method_name(stead_ctx *ctx) {
  return ctx && ctx->msg && ctx->msg->method &&
                 (ctx->msg->kind == STEAD__MSG_CALL || ctx->msg->kind == STEAD__MSG_SEND)
             ? ctx->msg->method->name
             : NULL;
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

/* Marks the turn failed with a message; code 0 means STEAD_EHANDLER (the
 * caller sees the handler's failure), a negative code is passed on. */
static int vfail(stead_ctx *ctx, int code, const char *fmt, va_list ap) {
  if (!ctx)
    return code ? code : STEAD_EHANDLER;
  vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt ? fmt : "handler failed", ap);
  ctx->failed = true;
  ctx->fail_code = code;
  return code ? code : STEAD_EHANDLER;
}

int stead_fail(stead_ctx *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vfail(ctx, 0, fmt, ap);
  va_end(ap);
  return rc;
}

/* The public stead_fail_code and the modules' stead__ctx_fail_code behave
 * the same; both names exist so the internal seam and the API are
 * documented (and can change) independently. */
int stead__ctx_fail_code(stead_ctx *ctx, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vfail(ctx, code < 0 ? code : STEAD_EHANDLER, fmt, ap);
  va_end(ap);
  return rc;
}

int stead_fail_code(stead_ctx *ctx, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vfail(ctx, code < 0 ? code : STEAD_EHANDLER, fmt, ap);
  va_end(ap);
  return rc;
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

int stead__ctx_effect(stead_ctx *ctx, void (*release)(void *arg), void (*drop)(void *arg),
                      void *arg) {
  if (!ctx || !release || !drop)
    return stead__err(STEAD_EINVAL, "effect needs a turn, release and drop");
  out_item *o = calloc(1, sizeof *o);
  if (!o)
    return stead__err(STEAD_ENOMEM, "out of memory");
  o->kind = OUT_EFFECT;
  o->release = release;
  o->drop = drop;
  o->arg = arg;
  out_push(ctx, o);
  return 0;
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

/* ---- batch mode ----------------------------------------------------- */

/* Messages a turn took from its mailbox beyond its own, with their
 * answers. Each still counts in rt->inflight until batch_settle answers
 * and frees it; the batch moves with the turn's outputs into the gate. */
typedef struct batch_ent {
  stead__msg *m;
  int code;       /* 0: reply with out; else fail with out as the message */
  stead__buf out; /* reply bytes, or the failure message (NUL-terminated) */
} batch_ent;

typedef struct batch {
  size_t n;
  batch_ent *ents;
  stead__batch_item *items;
} batch;

/* Answers every taken message -- each with its own answer if `code` is
 * 0, else with `code`/`why` unless it failed on its own -- and frees the
 * batch. */
static void batch_settle(stead_rt *rt, batch *b, int code, const char *why) {
  if (!b)
    return;
  for (size_t i = 0; i < b->n; i++) {
    batch_ent *e = &b->ents[i];
    stead__msg *m = e->m;
    if (m->kind == STEAD__MSG_CALL && m->call) {
      if (e->code)
        stead__call_complete(m->call, e->code, NULL, 0, (const char *)e->out.data);
      else if (code)
        stead__call_complete(m->call, code, NULL, 0, why);
      else
        stead__call_complete(m->call, 0, e->out.data, e->out.len, NULL);
    }
    stead__buf_free(&e->out);
    stead__msg_free(m);
    stead__inflight_done(rt);
  }
  free(b->ents);
  free(b->items);
  free(b);
}

/* May m join a batch started by a turn running `fn`? */
static bool batchable(const stead__msg *m, stead_method_fn fn) {
  return (m->kind == STEAD__MSG_CALL || m->kind == STEAD__MSG_SEND) && m->method &&
         m->method->fn == fn;
}

int stead__ctx_take_batch(stead_ctx *ctx, size_t max, size_t max_bytes,
                          const stead__batch_item **items, size_t *n) {
  if (!ctx || !items || !n)
    return stead__err(STEAD_EINVAL, "take_batch: NULL argument");
  *items = NULL;
  *n = 0;
  stead__msg *self = ctx->msg;
  if (!self || (self->kind != STEAD__MSG_CALL && self->kind != STEAD__MSG_SEND) ||
      !self->method)
    return stead__err(STEAD_EMISUSE, "a batch is taken only by a method's turn");
  if (ctx->batch)
    return stead__err(STEAD_EMISUSE, "this turn already took its batch");
  batch *b = calloc(1, sizeof *b);
  b->ents = b && max ? calloc(max, sizeof *b->ents) : NULL;
  b->items = b && max ? calloc(max, sizeof *b->items) : NULL;
  if (!b || (max && (!b->ents || !b->items))) {
    if (b) {
      free(b->ents);
      free(b->items);
    }
    free(b);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  ctx->batch = b;
  stead__act *a = ctx->act;
  stead__stripe *s = &ctx->rt->stripes[a->stripe];
  stead__msg *dead = NULL; /* calls nobody waits for any more */
  size_t bytes = 0;
  pthread_mutex_lock(&s->mu);
  while (b->n < max && a->head && batchable(a->head, self->method->fn)) {
    stead__msg *m = a->head;
    bool gone = m->kind == STEAD__MSG_CALL && m->call && atomic_load(&m->call->done);
    if (!gone && bytes + m->len > max_bytes)
      break;
    a->head = m->next;
    if (!a->head)
      a->tail = NULL;
    a->queued--;
    m->next = NULL;
    if (gone) {
      m->next = dead;
      dead = m;
      continue;
    }
    bytes += m->len;
    b->ents[b->n].m = m;
    b->items[b->n] = (stead__batch_item){m->method->name, m->payload, m->len,
                                         m->kind == STEAD__MSG_CALL};
    b->n++;
  }
  pthread_mutex_unlock(&s->mu);
  while (dead) {
    stead__msg *next = dead->next;
    stead__msg_free(dead);
    stead__inflight_done(ctx->rt);
    dead = next;
  }
  *items = b->items;
  *n = b->n;
  return 0;
}

static batch_ent *batch_ent_at(stead_ctx *ctx, size_t i) {
  if (!ctx || !ctx->batch || i >= ctx->batch->n) {
    stead__err(STEAD_EINVAL, "no batch item %zu in this turn", i);
    return NULL;
  }
  return &ctx->batch->ents[i];
}

int stead__ctx_batch_reply(stead_ctx *ctx, size_t i, const void *data, size_t len) {
  batch_ent *e = batch_ent_at(ctx, i);
  if (!e)
    return STEAD_EINVAL;
  if (!data && len)
    return stead__err(STEAD_EINVAL, "NULL reply with a length");
  if (len > ctx->rt->cfg.max_payload)
    return stead__err(STEAD_ETOOBIG, "reply is %zu bytes; the limit is %zu", len,
                      ctx->rt->cfg.max_payload);
  e->out.len = 0;
  if (len && stead__buf_append(&e->out, data, len))
    return stead__err(STEAD_ENOMEM, "out of memory copying the reply");
  e->code = 0;
  return 0;
}

int stead__ctx_batch_fail(stead_ctx *ctx, size_t i, int code, const char *message) {
  batch_ent *e = batch_ent_at(ctx, i);
  if (!e)
    return STEAD_EINVAL;
  if (code >= 0)
    code = STEAD_EHANDLER;
  if (!message)
    message = stead_strerror(code);
  e->out.len = 0;
  if (stead__buf_append(&e->out, message, strlen(message) + 1))
    return stead__err(STEAD_ENOMEM, "out of memory copying the message");
  e->code = code;
  return 0;
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
    m->call = NULL; /* answered and released above: msg_free must not again */
    stead__msg_free(m);
  }
}

static void deferred_unlink(stead_rt *rt, stead__act *self, stead_deferred *d) {
  stead__stripe *s = &rt->stripes[self->stripe];
  pthread_mutex_lock(&s->mu);
  stead_deferred **pp = &self->deferred;
  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp)
    *pp = d->next;
  pthread_mutex_unlock(&s->mu);
}

static void deferred_finish(stead_rt *rt, stead__act *self, stead_deferred *d, int code,
                            const void *data, size_t len) {
  deferred_unlink(rt, self, d);
  if (code)
    stead__call_complete(d->call, code, NULL, 0, data);
  else
    stead__call_complete(d->call, 0, data, len, NULL);
  stead__call_unref(d->call);
  atomic_fetch_sub(&self->pins, 1);
  free(d);
}

/* Releases a turn's outbox in order. Runs on the worker (no commit) or on
 * the committer thread (after the commit). */
static void release_list(stead_rt *rt, stead__act *self, out_item *o) {
  while (o) {
    out_item *next = o->next;
    if (o->kind == OUT_SEND)
      release_send(rt, o);
    else if (o->kind == OUT_CALL)
      release_call(rt, self, o);
    else if (o->kind == OUT_EFFECT)
      o->release(o->arg);
    else
      deferred_finish(rt, self, o->deferred, o->fail_code, o->data, o->len);
    out_free(o);
    o = next;
  }
}

static void drop_list(out_item *o) {
  while (o) {
    out_item *next = o->next;
    if (o->kind == OUT_EFFECT)
      o->drop(o->arg);
    out_free(o);
    o = next;
  }
}

/* ---- running a turn ------------------------------------------------- */

/* Messages whose caller waits for an answer: method calls, and runtime
 * functions run as turns. */
static bool answers(const stead__msg *m) {
  return m->kind == STEAD__MSG_CALL || m->kind == STEAD__MSG_FN ||
         (m->kind == STEAD__MSG_CONN && m->call);
}

static void ctx_init(stead_ctx *ctx, stead_rt *rt, stead__act *a, stead__msg *m) {
  memset(ctx, 0, sizeof *ctx);
  ctx->rt = rt;
  ctx->act = a;
  ctx->msg = m;
  ctx->can_reply = m && answers(m);
}

static void ctx_done(stead_ctx *ctx) {
  drop_list(ctx->out_head);
  ctx->out_head = ctx->out_tail = NULL;
  stead__buf_free(&ctx->reply);
}

/* Completes a CALL message's call with the turn's outcome. */
static void answer(stead__msg *m, int status, const void *data, size_t len,
                   const char *why) {
  if (m && answers(m) && m->call)
    stead__call_complete(m->call, status, data, len, why);
}

/* A turn whose outputs wait for a commit (the output gate). */
struct stead__gated {
  stead__gated *next;
  stead_rt *rt;
  stead__act *act;
  stead__call *call;        /* the caller to answer, or NULL */
  stead_deferred *deferred; /* a deferral this turn took, undone on failure */
  out_item *outbox;
  stead__buf reply;
  uint64_t gen;
  char *alarm;         /* an alarm turn: the alarm's name (owned), else NULL */
  uint32_t attempt;    /* and the attempt it ran */
  struct batch *batch; /* messages the turn took beyond its own, or NULL */
  int rc;              /* commit outcome, set by the committer's callback */
  char why[600];       /* its message when rc != 0 */
};

/* Commit outcome, on the committer thread, in submission order. Only the
 * store bookkeeping happens here (the committer's contract needs it in the
 * callback); the outputs are released by the object's own worker slice
 * (stead__release_gated), which keeps the committer free for the next
 * batch and releases one object's turns in commit order. */
static void gate_done(void *udata, stead__wset *ws, int rc) {
  stead__gated *g = udata;
  stead__act *a = g->act;
  /* A barrier (write-less turn) the store does not know: it is stale if a
   * failure bumped the generation since the turn ran. */
  if (rc == 0 && stead__objstore_gen(a->store) != g->gen)
    rc = STEAD_ECANCELED;
  if (rc == 0) {
    stead__objstore_on_durable(a->store, ws);
    if (ws->alarms_clear || ws->alarms.count)
      stead__alarm_rt_committed(g->rt, ws);
  } else {
    if (rc == STEAD_ECANCELED)
      snprintf(g->why, sizeof g->why,
               "an earlier commit of %s/%s failed and this turn depended on it",
               a->crec->cls->name, a->id);
    else
      snprintf(g->why, sizeof g->why, "commit failed: %s", stead_errmsg());
    if (rc != STEAD_ECANCELED)
      stead__objstore_on_failed(a->store, ws);
    atomic_store(&a->state_stale, true);
    if (rc == STEAD_ENOTOWNER)
      stead__cluster_note_fenced(g->rt, a);
  }
  g->rc = rc;
  /* A fired alarm is done once its commit was notified; a failed commit
   * leaves it stored, and the scheduler fires it again. */
  if (g->alarm)
    stead__alarm_rt_done(g->rt, a->crec->cls->name, a->id, g->alarm, g->attempt);
  stead__act_post_released(g->rt, a, g);
}

/* Releases (or drops) one gated turn's outputs; on the object's worker. */
void stead__release_gated(stead__gated *g) {
  stead_rt *rt = g->rt;
  stead__act *a = g->act;
  if (g->rc == 0) {
    release_list(rt, a, g->outbox);
    if (g->call)
      stead__call_complete(g->call, 0, g->reply.data, g->reply.len, NULL);
    batch_settle(rt, g->batch, 0, NULL);
  } else {
    /* A fenced commit (the lease moved: nothing was written) is worth
     * retrying elsewhere; a commit whose outcome the database never
     * confirmed may have landed, and the caller must be told so; other
     * failures are storage failures (nothing was written). */
    int code = STEAD_ESTORAGE;
    if (g->rc == STEAD_ENOTOWNER || atomic_load(&a->fenced))
      code = STEAD_ENOTOWNER;
    else if (g->rc == STEAD_EUNKNOWN)
      code = STEAD_EUNKNOWN;
    drop_list(g->outbox);
    if (g->deferred)
      deferred_finish(rt, a, g->deferred, code, g->why, 0);
    if (g->call)
      stead__call_complete(g->call, code, NULL, 0, g->why);
    batch_settle(rt, g->batch, code, g->why);
    stead__counter_add(&rt->m.commit_failures, 1);
    stead__log(rt, STEAD_LOG_WARN, "turn of %s/%s failed: %s", a->crec->cls->name, a->id,
               g->why);
  }
  stead__call_unref(g->call);
  stead__buf_free(&g->reply);
  free(g->alarm);
  free(g);
  atomic_fetch_sub(&a->commits_pending, 1);
  stead__inflight_done(rt);
}

/* Hands a successful turn's outputs to the committer with its write set
 * (or an empty barrier set when only earlier commits are pending). */
static int gate(stead_ctx *ctx, stead__msg *m, stead__wset *ws) {
  stead__act *a = ctx->act;
  stead__gated *g = calloc(1, sizeof *g);
  if (!ws)
    ws = stead__wset_new(a->crec->cls->name, a->id);
  else
    stead__wset_ref(ws);
  if (!g || !ws) {
    free(g);
    stead__wset_unref(ws);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  if (ctx->rt->cluster) {
    /* The database commits the set only while this tenure lasts. */
    ws->shard = a->shard;
    ws->epoch = atomic_load(&a->epoch);
  }
  g->rt = ctx->rt;
  g->act = a;
  g->gen = stead__objstore_gen(a->store);
  g->outbox = ctx->out_head;
  g->reply = ctx->reply;
  g->deferred = ctx->deferring;
  g->batch = ctx->batch;
  if (m && m->kind == STEAD__MSG_ALARM) {
    g->alarm = stead__strdup(m->topic);
    g->attempt = m->attempt;
  }
  if (m && answers(m) && ctx->can_reply) {
    g->call = m->call;
    m->call = NULL;
  }
  atomic_fetch_add(&a->commits_pending, 1);
  stead__inflight_add(ctx->rt);
  int rc = stead__committer_submit(ctx->rt->committer, ws, gate_done, g);
  stead__wset_unref(ws);
  if (rc) {
    atomic_fetch_sub(&a->commits_pending, 1);
    stead__inflight_done(ctx->rt);
    if (g->call) {
      m->call = g->call; /* back to the message: it gets answered */
    }
    free(g->alarm);
    free(g);
    return rc;
  }
  ctx->out_head = ctx->out_tail = NULL;
  memset(&ctx->reply, 0, sizeof ctx->reply);
  ctx->batch = NULL; /* answered when the gate releases the turn */
  return 0;
}

/* Registers a deferral taken by a successful turn with the activation;
 * it takes over the message's reference to the call. */
static void register_deferral(stead_ctx *ctx, stead__msg *m) {
  stead_deferred *d = ctx->deferring;
  stead__act *a = ctx->act;
  stead__stripe *s = &ctx->rt->stripes[a->stripe];
  d->call = m->call;
  m->call = NULL;
  pthread_mutex_lock(&s->mu);
  d->next = a->deferred;
  a->deferred = d;
  pthread_mutex_unlock(&s->mu);
  atomic_fetch_add(&a->pins, 1);
}

typedef int (*turn_body)(stead_ctx *ctx, stead__msg *m);

/* Runs `body` as one turn of `a`: storage turn, handler, state struct,
 * then release, gate or rollback. `m` is the message (NULL for lifecycle
 * hooks). Returns 0 if the turn succeeded (its outputs released or gated),
 * else the failure code; the caller has been answered either way. The
 * failure message is left in `why`. */
static int run_body(stead_rt *rt, stead__act *a, stead__msg *m, turn_body body, char *why,
                    size_t why_len) {
  stead_ctx ctx;
  ctx_init(&ctx, rt, a, m);
  int rc = stead__objstore_turn_begin(a->store);
  if (rc) {
    snprintf(why, why_len, "%s", stead_errmsg());
    answer(m, rc, NULL, 0, why);
    return rc;
  }
  /* Coarse clock: slow-turn detection needs milliseconds, and a precise
   * read per turn is measurable on virtual machines. */
  int64_t t0 = stead__coarse_mono_ms();
  stead_ctx *outer = tl_ctx;
  tl_ctx = &ctx;
  int hrc = body(&ctx, m);
  tl_ctx = outer;
  int64_t dt = stead__coarse_mono_ms() - t0;
  stead__counter_add(&rt->m.turns, 1);
  if (dt > (int64_t)rt->cfg.slow_turn_ms) {
    stead__counter_add(&rt->m.turns_slow, 1);
    stead__log(rt, STEAD_LOG_WARN, "slow turn: %s/%s took %lld ms", a->crec->cls->name,
               a->id, (long long)dt);
  }
  int code = 0;
  if (hrc != 0 || ctx.failed) {
    code = ctx.fail_code ? ctx.fail_code : STEAD_EHANDLER;
    snprintf(why, why_len, "%s", ctx.failed ? ctx.errmsg : "handler returned an error");
  } else if (rt->cluster && (rc = stead__cluster_fence(rt, a)) != 0) {
    code = rc;
    snprintf(why, why_len, "%s", stead_errmsg());
  } else if ((rc = stead__store_state_end(rt, a, true)) != 0) {
    code = rc;
    snprintf(why, why_len, "saving the state struct: %s", stead_errmsg());
  }
  if (code)
    stead__store_state_end(rt, a, false);
  stead__wset *ws = NULL;
  rc = stead__objstore_turn_end(a->store, code == 0, &ws);
  if (code == 0 && rc != 0) {
    code = rc == STEAD_ECANCELED ? STEAD_ESTORAGE : rc;
    snprintf(why, why_len, "%s",
             rc == STEAD_ECANCELED
                 ? "an earlier commit of this object failed during the turn"
                 : stead_errmsg());
    atomic_store(&a->state_stale, true);
  }
  if (code == 0 && ctx.deferring)
    register_deferral(&ctx, m);
  else if (code)
    free(ctx.deferring);
  if (code == 0 && (ws || atomic_load(&a->commits_pending) > 0)) {
    rc = gate(&ctx, m, ws);
    if (rc) {
      code = rc;
      snprintf(why, why_len, "%s", stead_errmsg());
      if (ctx.deferring) /* registered above; the turn failed after all */
        deferred_finish(rt, a, ctx.deferring, rc, why, 0);
    }
  } else if (code == 0) {
    release_list(rt, a, ctx.out_head);
    ctx.out_head = ctx.out_tail = NULL;
    if (ctx.can_reply)
      answer(m, 0, ctx.reply.data, ctx.reply.len, NULL);
    batch_settle(rt, ctx.batch, 0, NULL);
    ctx.batch = NULL;
  }
  stead__wset_unref(ws);
  if (code) {
    stead__counter_add(&rt->m.turns_failed, 1);
    if (!m || !answers(m))
      stead__log(rt, STEAD_LOG_WARN, "turn of %s/%s failed: %s", a->crec->cls->name,
                 a->id, why);
    answer(m, code, NULL, 0, why);
    batch_settle(rt, ctx.batch, code, why);
    ctx.batch = NULL;
  }
  ctx_done(&ctx);
  return code;
}

static int body_method(stead_ctx *ctx, stead__msg *m) {
  if (m->kind == STEAD__MSG_EVENT)
    return ctx->act->crec->cls->on_event(ctx, m->topic, m->payload, m->len);
  if (m->kind == STEAD__MSG_CONT) {
    stead_result res = {m->status, m->status == 0 ? m->payload : NULL,
                        m->status == 0 ? m->len : 0, m->errmsg};
    return m->then(ctx, &res, m->then_udata);
  }
  return m->method->fn(ctx, m->payload, m->len);
}

/* The alarm is deleted in the turn's own write set first, so it goes
 * atomically with what the handler does (which may set it again). */
static int body_alarm(stead_ctx *ctx, stead__msg *m) {
  const stead_class *cls = ctx->act->crec->cls;
  if (!cls->on_alarm)
    return stead_fail(ctx, "class \"%s\" has no on_alarm hook", cls->name);
  int rc = stead__objstore_alarm_del(ctx->act->store, m->topic);
  if (rc)
    return stead_fail(ctx, "cannot consume alarm %s: %s", m->topic, stead_errmsg());
  return cls->on_alarm(ctx, m->topic, m->payload, m->len, m->attempt);
}

static int body_fn(stead_ctx *ctx, stead__msg *m) {
  return m->fn(ctx, m->fn_arg);
}

static int body_timer(stead_ctx *ctx, stead__msg *m) {
  void *rec = stead__timer_lookup(ctx->act, m->timer_id);
  return rec ? stead__timer_run(ctx, rec) : 0;
}

static int body_activate(stead_ctx *ctx, stead__msg *m) {
  return ctx->act->crec->cls->on_activate(ctx);
}

static int body_deactivate(stead_ctx *ctx, stead__msg *m) {
  return ctx->act->crec->cls->on_deactivate(ctx);
}

static int activate(stead_rt *rt, stead__act *a, stead__msg *m) {
  const stead_class *cls = a->crec->cls;
  char why[1200];
  int rc = stead__cluster_activate(rt, a);
  if (rc) {
    snprintf(why, sizeof why, "%s", stead_errmsg());
    answer(m, rc, NULL, 0, why);
    return rc;
  }
  rc = stead__store_activate(rt, a);
  if (rc) {
    snprintf(why, sizeof why, "cannot activate %s/%s: %s", cls->name, a->id,
             stead_errmsg());
    stead__store_deactivate(rt, a);
    stead__counter_add(&rt->m.activate_failed, 1);
    stead__log(rt, STEAD_LOG_WARN, "%s", why);
    answer(m, rc, NULL, 0, why);
    return rc;
  }
  if (cls->on_activate) {
    /* The hook's failure answers the waking message, not the hook. */
    char hwhy[1024];
    rc = run_body(rt, a, NULL, body_activate, hwhy, sizeof hwhy);
    if (rc) {
      snprintf(why, sizeof why, "on_activate of %s/%s failed: %s", cls->name, a->id,
               hwhy);
      stead__store_deactivate(rt, a);
      stead__counter_add(&rt->m.activate_failed, 1);
      answer(m, rc, NULL, 0, why);
      return rc;
    }
  }
  atomic_store(&a->activated, true);
  atomic_fetch_add(&rt->nactive, 1);
  a->hibernated = false;
  stead__counter_add(&rt->m.activations_total, 1);
  return 0;
}

static void run_user_turn(stead_rt *rt, stead__act *a, stead__msg *m) {
  char why[1024];
  if (atomic_load(&a->state_stale) && stead__store_reload_state(rt, a) != 0) {
    snprintf(why, sizeof why, "reloading the state of %s/%s: %s", a->crec->cls->name,
             a->id, stead_errmsg());
    atomic_store(&a->state_stale, true);
    answer(m, STEAD_ESTORAGE, NULL, 0, why);
    if (m->kind == STEAD__MSG_ALARM)
      stead__alarm_rt_failed(rt, a->crec->cls->name, a->id, m->topic, m->attempt,
                             m->payload, m->len);
    return;
  }
  if (m->kind == STEAD__MSG_FN) {
    run_body(rt, a, m, body_fn, why, sizeof why);
    return;
  }
  if (m->kind == STEAD__MSG_CONN) {
    run_body(rt, a, m, stead__conn_turn, why, sizeof why);
    return;
  }
  if (m->kind == STEAD__MSG_TIMER) {
    run_body(rt, a, m, body_timer, why, sizeof why);
    stead__timer_after_tick(a, m->timer_id);
    return;
  }
  if (m->kind != STEAD__MSG_ALARM) {
    run_body(rt, a, m, body_method, why, sizeof why);
    return;
  }
  if (run_body(rt, a, m, body_alarm, why, sizeof why) != 0)
    stead__alarm_rt_failed(rt, a->crec->cls->name, a->id, m->topic, m->attempt,
                           m->payload, m->len);
}

/* Runs on_deactivate, waits for the object's commits, and drops its
 * memory. */
static void deactivate(stead_rt *rt, stead__act *a) {
  const stead_class *cls = a->crec->cls;
  if (cls->on_deactivate) {
    char why[1024];
    run_body(rt, a, NULL, body_deactivate, why, sizeof why);
  }
  stead__timers_act_end(a);
  /* Every commit of the object must be finished and released before its
   * store goes: wait for the committer, then release here. */
  if (atomic_load(&a->commits_pending) > 0) {
    stead__committer_flush(rt->committer);
    stead__drain_released(rt, a);
  }
  stead__store_deactivate(rt, a);
  atomic_store(&a->activated, false);
  atomic_fetch_sub(&rt->nactive, 1);
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
      if (a->store)
        stead__objstore_hibernate(a->store);
      stead__counter_add(&rt->m.hibernations_total, 1);
    }
    return false;
  }
  if (atomic_load(&a->activated))
    deactivate(rt, a);
  pthread_mutex_lock(&s->mu);
  /* deactivate() released the object's last committed turns, and a call
   * among their outputs pins the object for its continuation: then the
   * record stays (inactive) and the continuation reactivates it. Freeing
   * it here left the continuation pointing at freed memory (found by the
   * deterministic simulation, seed 7). */
  bool freed = atomic_load(&a->pins) == 0 && stead__table_remove_if_empty(rt, a);
  pthread_mutex_unlock(&s->mu);
  waiter_signal(m->waiter, 0);
  return freed;
}

/* Runs one message. Returns true if the activation was freed. */
static bool run_turn(stead_rt *rt, stead__act *a, stead__msg *m) {
  if (m->kind == STEAD__MSG_HIBERNATE || m->kind == STEAD__MSG_DEACTIVATE)
    return run_system(rt, a, m);
  if (answers(m) && m->call && atomic_load(&m->call->done))
    return false; /* the caller gave up (deadline); do not run it */
  /* A tick never activates: its timer died with an earlier activation. */
  if (m->kind == STEAD__MSG_TIMER &&
      (!atomic_load(&a->activated) || !stead__timer_lookup(a, m->timer_id)))
    return false;
  if (atomic_load(&a->activated) || activate(rt, a, m) == 0)
    run_user_turn(rt, a, m);
  else if (m->kind == STEAD__MSG_ALARM) /* could not activate: a failed try */
    stead__alarm_rt_failed(rt, a->crec->cls->name, a->id, m->topic, m->attempt,
                           m->payload, m->len);
  if (m->kind == STEAD__MSG_CONT)
    atomic_fetch_sub(&a->pins, 1);
  return false;
}

void stead__act_post_released(stead_rt *rt, stead__act *a, stead__gated *g) {
  stead__stripe *s = &rt->stripes[a->stripe];
  g->next = NULL;
  pthread_mutex_lock(&s->mu);
  if (a->rel_tail)
    a->rel_tail->next = g;
  else
    a->rel_head = g;
  a->rel_tail = g;
  if (!a->sched) {
    a->sched = true;
    stead__rq_push(rt, a);
  }
  pthread_mutex_unlock(&s->mu);
}

/* Takes the released list (stripe lock held). */
static stead__gated *take_released(stead__act *a) {
  stead__gated *g = a->rel_head;
  a->rel_head = a->rel_tail = NULL;
  return g;
}

static void release_all(stead__gated *g) {
  while (g) {
    stead__gated *next = g->next;
    stead__release_gated(g);
    g = next;
  }
}

void stead__drain_released(stead_rt *rt, stead__act *a) {
  stead__stripe *s = &rt->stripes[a->stripe];
  pthread_mutex_lock(&s->mu);
  stead__gated *g = take_released(a);
  pthread_mutex_unlock(&s->mu);
  release_all(g);
}

/* A finished message is reported done (stead__inflight_done) only once
 * the object's scheduling state is settled -- the next message taken, or
 * sched cleared -- so that stead_run_until_idle never returns while the
 * object still looks busy to an idle sweep. */
void stead__run_slice(stead_rt *rt, stead__act *a) {
  stead__stripe *s = &rt->stripes[a->stripe];
  bool owed = false; /* the previous message's inflight_done */
  for (int i = 0; i < rt->cfg.turns_per_slice; i++) {
    pthread_mutex_lock(&s->mu);
    /* Finished commits first: their replies are the oldest outputs. More
     * may be posted while we release (post_released sees sched set and
     * does not requeue us), so loop until the list is empty under the
     * lock: only then may the checks below clear sched. */
    while (a->rel_head) {
      stead__gated *g = take_released(a);
      pthread_mutex_unlock(&s->mu);
      release_all(g);
      pthread_mutex_lock(&s->mu);
    }
    stead__msg *m = a->head;
    if (!m) {
      /* Out of work. An activation whose on_activate failed is only a
       * mailbox: drop it so that it leaves no trace. */
      bool freed = false;
      if (!atomic_load(&a->activated) && atomic_load(&a->pins) == 0 &&
          atomic_load(&a->commits_pending) == 0)
        freed = stead__table_remove_if_empty(rt, a);
      else
        stead__lru_touch(rt, a);
      a->sched = false;
      pthread_mutex_unlock(&s->mu);
      if (freed)
        stead__act_free(a);
      if (owed)
        stead__inflight_done(rt);
      return;
    }
    a->head = m->next;
    if (!a->head)
      a->tail = NULL;
    a->queued--;
    pthread_mutex_unlock(&s->mu);
    if (owed) /* m keeps the count above zero */
      stead__inflight_done(rt);
    bool freed = run_turn(rt, a, m);
    stead__msg_free(m);
    owed = true;
    if (freed) {
      stead__act_free(a);
      stead__inflight_done(rt);
      return;
    }
  }
  /* Slice used up: to the back of the queue, behind other objects. */
  pthread_mutex_lock(&s->mu);
  if (a->head || a->rel_head) {
    stead__rq_push(rt, a);
  } else {
    stead__lru_touch(rt, a);
    a->sched = false;
  }
  pthread_mutex_unlock(&s->mu);
  if (owed)
    stead__inflight_done(rt);
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
  if (m->conn)
    stead__conn_msg_release(m);
  free(m->errmsg);
  free(m->topic);
  free(m);
}
