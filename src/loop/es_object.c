/*
 * es_object.c -- event-sourced object classes: a stead_program run as a
 * durable object.
 *
 * stead_register_program turns a program into an ordinary stead_class
 * whose hooks and handlers live here:
 *   on_activate  newest snapshot (decode) or init, then replay of the
 *                journal after it with commands skipped;
 *   methods      one handler for every journaled method (es_call) and one
 *                for queries (es_query); both hand "method NUL payload"
 *                to update. es_call appends the accepted message to the
 *                journal -- and every N messages a snapshot, pruning what
 *                the K-th newest snapshot makes unnecessary -- in the
 *                turn's writes, so they commit atomically with the turn;
 *   commands     leave through the output gate as one effect per turn:
 *                after the commit each becomes an internal event to the
 *                object itself (es_event), a later turn that runs
 *                program.run on a worker and sends what it dispatches to
 *                the object as ordinary messages;
 *   on_deactivate frees the model.
 *
 * Invariants: between turns the in-memory model equals the model rebuilt
 * from storage (snapshot + journal), unless `stale` is set. Every path on
 * which they may differ sets it -- update rejected after changing the
 * model, a write of the turn failed, or the turn's commit failed (the
 * effect's drop) -- and the next turn rebuilds before doing anything.
 * es->seq is the sequence number of the last journaled message, snaps[]
 * the sequence numbers of the stored snapshots (ascending), jfloor the
 * highest journal sequence number known deleted (entries <= jfloor are
 * gone).
 *
 * Threads: hooks and handlers run on the worker running the object's turn,
 * one at a time. The effect's release/drop may run on the committer
 * thread while a later turn of the object runs: they touch only the
 * atomic `stale` flag and the registration's atomic counters. The
 * registry of classes (runtime slot STEAD__SLOT_ES) is guarded by its
 * mutex; registrations are freed by stead__es_rt_close after the last
 * turn.
 */
#include "loop/es_object.h"

#include "core/seam.h"
#include "loop/loop_internal.h"
#include "storage/objstore.h"
#include "util/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- registry ------------------------------------------------------- */

typedef struct es_reg {
  struct es_reg *next;
  stead_es_class c; /* the user's class, with defaults filled in */
  stead_class cls;  /* what the core runs */
  stead_method *methods;
  size_t model_off; /* the model's offset in the activation's memory */
  atomic_uint_fast64_t journaled, rejected, snapshots, replayed, rebuilds;
  atomic_uint_fast64_t commands_run, commands_failed, commands_dropped;
} es_reg;

typedef struct es_rt {
  pthread_mutex_t mu;
  es_reg *head;
} es_rt;

static es_rt *registry(stead_rt *rt, bool create) {
  void **slot = stead__rt_slot(rt, STEAD__SLOT_ES);
  es_rt *r = __atomic_load_n((es_rt **)slot, __ATOMIC_ACQUIRE);
  if (r || !create)
    return r;
  es_rt *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  pthread_mutex_init(&n->mu, NULL);
  es_rt *expected = NULL;
  if (__atomic_compare_exchange_n((es_rt **)slot, &expected, n, false, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE))
    return n;
  pthread_mutex_destroy(&n->mu);
  free(n);
  return expected;
}

static es_reg *reg_find_locked(es_rt *r, const char *name) {
  for (es_reg *g = r->head; g; g = g->next)
    if (strcmp(g->c.name, name) == 0)
      return g;
  return NULL;
}

static es_reg *reg_find(stead_rt *rt, const char *name) {
  es_rt *r = registry(rt, false);
  if (!r || !name)
    return NULL;
  pthread_mutex_lock(&r->mu);
  es_reg *g = reg_find_locked(r, name);
  pthread_mutex_unlock(&r->mu);
  return g;
}

static void reg_free(es_reg *g) {
  if (g) {
    free(g->methods);
    free(g);
  }
}

void stead__es_rt_close(stead_rt *rt) {
  es_rt *r = registry(rt, false);
  if (!r)
    return;
  *stead__rt_slot(rt, STEAD__SLOT_ES) = NULL;
  while (r->head) {
    es_reg *g = r->head;
    r->head = g->next;
    reg_free(g);
  }
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* ---- per-activation state ------------------------------------------- */

/* The reply and rejection of the update running now. */
struct stead__es_io {
  bool replay; /* replies and rejections are not wanted */
  bool has_reply;
  stead__buf reply;
  char why[1024];
};

typedef struct es_act {
  es_reg *reg;
  atomic_bool stale;
  bool have_model; /* the model holds what model_release must free */
  uint64_t seq, jfloor;
  uint64_t *snaps; /* ascending */
  size_t nsnaps, capsnaps;
  stead__buf msg; /* "method NUL payload" of the current call */
  stead_cmds cmds;
  struct stead__es_io io;
} es_act;

static void *model_of(es_act *es) {
  return (char *)es + es->reg->model_off;
}

static void model_drop(es_act *es) {
  const stead_es_class *c = &es->reg->c;
  if (es->have_model && c->model_release)
    c->model_release(model_of(es), c->program.udata);
  memset(model_of(es), 0, c->model_size);
  es->have_model = false;
}

static void es_free(es_act *es) {
  if (!es->reg)
    return;
  model_drop(es);
  stead__buf_free(&es->msg);
  stead__buf_free(&es->io.reply);
  stead__blobs_free(&es->cmds.b);
  free(es->snaps);
  es->snaps = NULL;
  es->nsnaps = es->capsnaps = 0;
}

static int snaps_push(es_act *es, uint64_t seq) {
  if (es->nsnaps == es->capsnaps) {
    size_t cap = es->capsnaps ? es->capsnaps * 2 : 4;
    uint64_t *s = realloc(es->snaps, cap * sizeof *s);
    if (!s)
      return stead__err(STEAD_ENOMEM, "out of memory");
    es->snaps = s;
    es->capsnaps = cap;
  }
  es->snaps[es->nsnaps++] = seq;
  return 0;
}

/* Prepares the io and command list for one update. */
static void io_reset(es_act *es, bool replay) {
  es->io.replay = replay;
  es->io.has_reply = false;
  es->io.reply.len = 0;
  es->io.why[0] = 0;
  stead__blobs_clear(&es->cmds.b);
  es->cmds.es = &es->io;
}

/* ---- public helpers ------------------------------------------------- */

int stead_es_reply(stead_cmds *cmds, const void *data, size_t len) {
  if (!cmds || (!data && len))
    return stead__err(STEAD_EINVAL,
                      "stead_es_reply: NULL cmds, or NULL data with length");
  if (!cmds->es)
    return stead__err(STEAD_EMISUSE,
                      "stead_es_reply: not inside an event-sourced object's update");
  if (cmds->es->replay)
    return 0;
  cmds->es->reply.len = 0;
  if (len && stead__buf_append(&cmds->es->reply, data, len))
    return stead__err(STEAD_ENOMEM, "out of memory copying the reply");
  cmds->es->has_reply = true;
  return 0;
}

int stead_es_reject(stead_cmds *cmds, const char *fmt, ...) {
  if (cmds && cmds->es && fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmds->es->why, sizeof cmds->es->why, fmt, ap);
    va_end(ap);
  }
  return STEAD_EHANDLER;
}

int stead_es_split(const void *msg, size_t len, const char **method, const void **payload,
                   size_t *plen) {
  const char *nul = msg ? memchr(msg, 0, len) : NULL;
  if (!nul || !method || !payload || !plen)
    return stead__err(STEAD_EINVAL, "stead_es_split: NULL argument, or no NUL after the "
                                    "method name");
  *method = msg;
  size_t off = (size_t)(nul - (const char *)msg) + 1;
  *plen = len - off;
  *payload = *plen ? nul + 1 : NULL;
  return 0;
}

int stead_es_dispatch(stead_dispatcher *d, const char *method, const void *payload,
                      size_t len) {
  int rc;
  if (!d || (!payload && len))
    return stead__err(STEAD_EINVAL,
                      "stead_es_dispatch: NULL d, or NULL payload with length");
  if ((rc = stead__check_name("method name", method)) != 0)
    return rc;
  size_t mlen = strlen(method);
  stead__buf b = {0};
  if (stead__buf_append(&b, method, mlen + 1) ||
      (len && stead__buf_append(&b, payload, len))) {
    stead__buf_free(&b);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  rc = stead_dispatch(d, b.data, b.len);
  stead__buf_free(&b);
  return rc;
}

int stead_es_get_stats(stead_rt *rt, const char *cls, stead_es_stats *out) {
  if (!rt || !cls || !out)
    return stead__err(STEAD_EINVAL, "stead_es_get_stats: NULL argument");
  es_reg *g = reg_find(rt, cls);
  if (!g)
    return stead__err(STEAD_ENOCLASS, "no event-sourced class \"%s\"", cls);
  out->journaled = atomic_load(&g->journaled);
  out->rejected = atomic_load(&g->rejected);
  out->snapshots = atomic_load(&g->snapshots);
  out->replayed = atomic_load(&g->replayed);
  out->rebuilds = atomic_load(&g->rebuilds);
  out->commands_run = atomic_load(&g->commands_run);
  out->commands_failed = atomic_load(&g->commands_failed);
  out->commands_dropped = atomic_load(&g->commands_dropped);
  return 0;
}

/* ---- loading: snapshot + replay -------------------------------------- */

typedef struct load_state {
  es_act *es;
  stead_ctx *ctx;
  stead__buf snap; /* the newest snapshot's value */
  int code;        /* the callback's failure */
} load_state;

/* The failure of a callback, with the thread's message kept for the
 * caller (the listing returns the code). */
static int corrupt(load_state *ls, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int corrupt(load_state *ls, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  stead__verr(STEAD_ECORRUPT, fmt, ap);
  va_end(ap);
  ls->code = STEAD_ECORRUPT;
  return STEAD_ECORRUPT;
}

static int snap_cb(void *u, const void *key, size_t klen, const void *val, size_t vlen) {
  load_state *ls = u;
  if (klen != 8)
    return corrupt(ls, "snapshot key of %zu bytes (want 8)", klen);
  int rc = snaps_push(ls->es, stead__es_get64(key));
  if (rc)
    return rc;
  ls->snap.len = 0; /* keep only the newest (the last listed) */
  if (stead__buf_append(&ls->snap, val, vlen))
    return stead__err(STEAD_ENOMEM, "out of memory reading a snapshot");
  return 0;
}

static int first_journal_cb(void *u, const void *key, size_t klen, const void *val,
                            size_t vlen) {
  uint64_t *first = u;
  *first = klen == 8 ? stead__es_get64(key) : 0;
  return 1;
}

static int decode_snapshot(load_state *ls, uint64_t seq) {
  es_act *es = ls->es;
  const stead_es_class *c = &es->reg->c;
  const uint8_t *v = ls->snap.data;
  size_t n = ls->snap.len;
  if (n < 5 || v[0] != STEAD__ES_REC_SNAPSHOT)
    return corrupt(ls, "snapshot %llu: unknown record format (%zu bytes, first byte %d)",
                   (unsigned long long)seq, n, n ? v[0] : -1);
  uint32_t ver = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
  int rc;
  es->have_model = true;
  if (ver == c->model_version)
    rc = c->program.decode(model_of(es), v + 5, n - 5, c->program.udata);
  else if (ver < c->model_version && c->decode_old)
    rc = c->decode_old(model_of(es), ver, v + 5, n - 5, c->program.udata);
  else
    return corrupt(ls, "snapshot %llu has model version %u; the class has version %u%s",
                   (unsigned long long)seq, ver, c->model_version,
                   ver < c->model_version ? " and no decode_old" : "");
  if (rc)
    return corrupt(ls,
                   "snapshot %llu (model version %u) cannot be decoded (decode "
                   "returned %d)",
                   (unsigned long long)seq, ver, rc);
  return 0;
}

/* Applies one journal record in replay mode. */
static int replay_cb(void *u, const void *key, size_t klen, const void *val,
                     size_t vlen) {
  load_state *ls = u;
  es_act *es = ls->es;
  const stead_program *p = &es->reg->c.program;
  if (klen != 8)
    return corrupt(ls, "journal key of %zu bytes (want 8)", klen);
  uint64_t seq = stead__es_get64(key);
  if (seq != es->seq + 1)
    return corrupt(ls, "journal entry %llu follows %llu: entries are missing",
                   (unsigned long long)seq, (unsigned long long)es->seq);
  const uint8_t *v = val;
  const char *method;
  const void *pl;
  size_t plen;
  if (vlen < 1 || v[0] != STEAD__ES_REC_JOURNAL ||
      stead_es_split(v + 1, vlen - 1, &method, &pl, &plen) != 0)
    return corrupt(ls, "journal entry %llu is not a valid record",
                   (unsigned long long)seq);
  io_reset(es, true);
  int rc = p->update(model_of(es), v + 1, vlen - 1, &es->cmds, p->udata);
  if (rc)
    return corrupt(ls, "journal entry %llu (%s) failed on replay: %s",
                   (unsigned long long)seq, method,
                   es->io.why[0] ? es->io.why : "update returned an error");
  if (p->view)
    p->view(model_of(es), p->udata);
  es->seq = seq;
  atomic_fetch_add(&es->reg->replayed, 1);
  return 0;
}

/* Rebuilds the model from storage. On failure the model is dropped and
 * the thread's message says why (ECORRUPT, ESTORAGE, ENOMEM, EHANDLER). */
static int es_load(stead_ctx *ctx, es_act *es) {
  const stead_es_class *c = &es->reg->c;
  struct stead__objstore *os = stead__ctx_store(ctx);
  load_state ls = {.es = es, .ctx = ctx};
  model_drop(es);
  es->seq = es->jfloor = 0;
  es->nsnaps = 0;
  stead__list_opts all = {0};
  int rc = stead__objstore_list(os, STEAD__NS_SNAPSHOT, &all, snap_cb, &ls);
  if (rc == 0 && es->nsnaps > 0) {
    es->seq = es->snaps[es->nsnaps - 1];
    rc = decode_snapshot(&ls, es->seq);
  } else if (rc == 0) {
    es->have_model = true;
    if (c->program.init) {
      io_reset(es, true);
      int irc = c->program.init(model_of(es), &es->cmds, c->program.udata);
      if (irc)
        rc = stead__err(STEAD_EHANDLER, "init failed (returned %d)", irc);
    }
  }
  stead__buf_free(&ls.snap);
  uint64_t first = 0;
  stead__list_opts one = {.limit = 1};
  if (rc == 0)
    rc = stead__objstore_list(os, STEAD__NS_JOURNAL, &one, first_journal_cb, &first);
  if (rc == 0) {
    es->jfloor = first ? first - 1 : es->seq;
    if (first > es->seq + 1)
      rc = stead__err(STEAD_ECORRUPT,
                      "the journal starts at entry %llu but the %s ends at %llu",
                      (unsigned long long)first, es->nsnaps ? "newest snapshot" : "model",
                      (unsigned long long)es->seq);
  }
  if (rc == 0) {
    uint8_t after[8];
    stead__es_be64(after, es->seq);
    stead__list_opts o = {0};
    if (es->seq) {
      o.start_after = after;
      o.start_after_len = 8;
    }
    rc = stead__objstore_list(os, STEAD__NS_JOURNAL, &o, replay_cb, &ls);
  }
  stead__blobs_clear(&es->cmds.b);
  if (rc) {
    model_drop(es);
    return rc;
  }
  return 0;
}

/* ---- hooks ---------------------------------------------------------- */

static int es_activate(stead_ctx *ctx) {
  es_act *es = stead_state(ctx);
  es_reg *g = reg_find(stead__ctx_rt(ctx), stead_class_name(ctx));
  if (!es || !g)
    return stead__ctx_fail_code(ctx, STEAD_ENOCLASS, "no event-sourced class \"%s\"",
                                stead_class_name(ctx));
  es->reg = g;
  int rc = es_load(ctx, es);
  if (rc) {
    char why[700];
    snprintf(why, sizeof why, "%s", stead_errmsg());
    es_free(es);
    return stead__ctx_fail_code(ctx, rc, "loading the model: %s", why);
  }
  return 0;
}

static int es_deactivate(stead_ctx *ctx) {
  es_act *es = stead_state(ctx);
  if (es)
    es_free(es);
  return 0;
}

/* Before a turn: rebuild the model if the last turns may have left it
 * ahead of storage. */
static int ensure_fresh(stead_ctx *ctx, es_act *es) {
  if (!atomic_exchange(&es->stale, false))
    return 0;
  atomic_fetch_add(&es->reg->rebuilds, 1);
  int rc = es_load(ctx, es);
  if (rc) {
    atomic_store(&es->stale, true);
    return stead__ctx_fail_code(ctx, rc, "rebuilding the model: %s", stead_errmsg());
  }
  return 0;
}

/* ---- the output gate: commands after the commit ------------------------ */

typedef struct es_effect {
  stead_rt *rt;
  es_reg *reg;
  es_act *es; /* NULL for queries: their failure leaves the model intact */
  char *id;
  stead__blobs cmds;
} es_effect;

static void effect_free(es_effect *e) {
  stead__blobs_free(&e->cmds);
  free(e->id);
  free(e);
}

/* After the commit: each command becomes a turn of the object. */
static void effect_release(void *arg) {
  es_effect *e = arg;
  for (size_t i = 0; i < e->cmds.n; i++) {
    stead_msg m = stead__blobs_at(&e->cmds, i);
    if (stead__deliver_event(e->rt, e->reg->c.name, e->id, STEAD__ES_CMD_TOPIC, m.data,
                             m.len) != 0)
      atomic_fetch_add(&e->reg->commands_dropped, 1);
  }
  effect_free(e);
}

/* The turn or its commit failed: the model is ahead of storage. */
static void effect_drop(void *arg) {
  es_effect *e = arg;
  if (e->es)
    atomic_store(&e->es->stale, true);
  effect_free(e);
}

/* Registers the turn's effect, moving the command list into it. */
static int add_effect(stead_ctx *ctx, es_act *es, bool journaled) {
  if (!journaled && (es->cmds.b.n == 0 || !es->reg->c.program.run))
    return 0;
  es_effect *e = calloc(1, sizeof *e);
  char *id = e ? stead__strdup(stead_object_id(ctx)) : NULL;
  if (!id) {
    free(e);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  e->rt = stead__ctx_rt(ctx);
  e->reg = es->reg;
  e->es = journaled ? es : NULL;
  e->id = id;
  if (es->reg->c.program.run) {
    e->cmds = es->cmds.b;
    memset(&es->cmds.b, 0, sizeof es->cmds.b);
  }
  int rc = stead__ctx_effect(ctx, effect_release, effect_drop, e);
  if (rc) {
    effect_free(e);
    return rc;
  }
  return 0;
}

/* ---- turns ---------------------------------------------------------- */

/* Builds "method NUL payload" and runs update on it. Returns 0,
 * STEAD_ENOMEM (message set), or STEAD_EHANDLER when update rejected the
 * message (es->io.why says why). Leaves the turn alone. */
static int update_msg(es_act *es, const char *method, const void *arg, size_t len) {
  const stead_program *p = &es->reg->c.program;
  es->msg.len = 0;
  if (stead__buf_append(&es->msg, method, strlen(method) + 1) ||
      (len && stead__buf_append(&es->msg, arg, len)))
    return stead__err(STEAD_ENOMEM, "out of memory building the message");
  io_reset(es, false);
  int rc = p->update(model_of(es), es->msg.data, es->msg.len, &es->cmds, p->udata);
  if (rc) {
    atomic_fetch_add(&es->reg->rejected, 1);
    if (!es->io.why[0])
      snprintf(es->io.why, sizeof es->io.why, "%s rejected by update (returned %d)",
               method, rc);
    return STEAD_EHANDLER;
  }
  if (p->view)
    p->view(model_of(es), p->udata);
  return 0;
}

/* update_msg for the turn's own message: a rejection fails the turn. */
static int apply(stead_ctx *ctx, es_act *es, const void *arg, size_t len) {
  int rc = update_msg(es, stead_method_name(ctx), arg, len);
  if (rc == STEAD_EHANDLER)
    return stead_fail(ctx, "%s", es->io.why);
  if (rc)
    return stead__ctx_fail_code(ctx, rc, "%s", stead_errmsg());
  return 0;
}

static int put_seq(stead_ctx *ctx, uint8_t ns, uint64_t seq, const void *val,
                   size_t vlen) {
  uint8_t key[8];
  stead__es_be64(key, seq);
  return stead__objstore_put(stead__ctx_store(ctx), ns, key, 8, val, vlen);
}

static int del_seq(stead_ctx *ctx, uint8_t ns, uint64_t seq) {
  uint8_t key[8];
  stead__es_be64(key, seq);
  return stead__objstore_del(stead__ctx_store(ctx), ns, key, 8);
}

/* Writes a snapshot at `seq` and prunes: snapshots beyond the newest K,
 * and journal entries up to the oldest kept snapshot. */
static int snapshot(stead_ctx *ctx, es_act *es, uint64_t seq) {
  const stead_es_class *c = &es->reg->c;
  void *data = NULL;
  size_t len = 0;
  int rc = c->program.encode(model_of(es), &data, &len, c->program.udata);
  if (rc || (!data && len)) {
    free(data);
    return stead__err(STEAD_EHANDLER, "encode failed (returned %d)", rc);
  }
  stead__buf v = {0};
  uint8_t hdr[5] = {STEAD__ES_REC_SNAPSHOT, (uint8_t)(c->model_version >> 24),
                    (uint8_t)(c->model_version >> 16), (uint8_t)(c->model_version >> 8),
                    (uint8_t)c->model_version};
  if (stead__buf_append(&v, hdr, 5) || (len && stead__buf_append(&v, data, len)))
    rc = stead__err(STEAD_ENOMEM, "out of memory encoding the snapshot");
  free(data);
  if (rc == 0)
    rc = put_seq(ctx, STEAD__NS_SNAPSHOT, seq, v.data, v.len);
  stead__buf_free(&v);
  if (rc == 0)
    rc = snaps_push(es, seq);
  if (rc)
    return rc;
  atomic_fetch_add(&es->reg->snapshots, 1);
  size_t k = c->keep_snapshots;
  if (es->nsnaps < k)
    return 0;
  size_t drop = es->nsnaps - k;
  for (size_t i = 0; i < drop; i++)
    if ((rc = del_seq(ctx, STEAD__NS_SNAPSHOT, es->snaps[i])) != 0)
      return rc;
  memmove(es->snaps, es->snaps + drop, k * sizeof *es->snaps);
  es->nsnaps = k;
  uint64_t floor = es->snaps[0];
  for (uint64_t s = es->jfloor + 1; s <= floor; s++)
    if ((rc = del_seq(ctx, STEAD__NS_JOURNAL, s)) != 0)
      return rc;
  es->jfloor = floor > es->jfloor ? floor : es->jfloor;
  return 0;
}

/* Journals the applied message (and maybe a snapshot) into the turn. */
static int journal(stead_ctx *ctx, es_act *es) {
  uint64_t seq = es->seq + 1;
  stead__buf v = {0};
  uint8_t fmt = STEAD__ES_REC_JOURNAL;
  int rc = 0;
  if (stead__buf_append(&v, &fmt, 1) || stead__buf_append(&v, es->msg.data, es->msg.len))
    rc = stead__err(STEAD_ENOMEM, "out of memory journaling the message");
  if (rc == 0)
    rc = put_seq(ctx, STEAD__NS_JOURNAL, seq, v.data, v.len);
  stead__buf_free(&v);
  if (rc)
    return rc;
  uint64_t last = es->nsnaps ? es->snaps[es->nsnaps - 1] : 0;
  if (seq - last >= es->reg->c.snapshot_every && (rc = snapshot(ctx, es, seq)) != 0)
    return rc;
  es->seq = seq;
  return 0;
}

static int reply(stead_ctx *ctx, es_act *es) {
  if (!es->io.has_reply)
    return 0;
  int rc = stead_reply(ctx, es->io.reply.data, es->io.reply.len);
  return rc == STEAD_EMISUSE ? 0 : rc; /* a one-way message: no caller */
}

/* Payload bytes a batch may take: half of what the turn's write set
 * still holds, less a per-message allowance for keys and method names, so
 * journal entries and a snapshot fit. */
static size_t batch_bytes(stead_ctx *ctx, size_t max) {
  size_t half = stead__objstore_room(stead__ctx_store(ctx)) / 2;
  size_t slack = max * (STEAD__ES_BATCH_SLACK);
  return half > slack ? half - slack : 0;
}

/* Batch mode, after the turn's own message was accepted: takes up to
 * batch_max - 1 more queued messages of the journaled methods and applies
 * each as es_call would, in this turn. A rejected one fails only its own
 * call: it is not journaled, and the model is rebuilt from storage as
 * this turn sees it (the journal including the batch's earlier accepted
 * messages) before the next one is applied. Any other failure fails the
 * whole turn, and with it every message of the batch. */
static int es_batch(stead_ctx *ctx, es_act *es) {
  const stead__batch_item *it;
  size_t n, max = es->reg->c.batch_max - 1;
  int rc = stead__ctx_take_batch(ctx, max, batch_bytes(ctx, max), &it, &n);
  if (rc)
    return stead__ctx_fail_code(ctx, rc, "%s", stead_errmsg());
  for (size_t i = 0; i < n; i++) {
    rc = update_msg(es, it[i].method, it[i].payload, it[i].len);
    if (rc == STEAD_EHANDLER) {
      atomic_fetch_add(&es->reg->rebuilds, 1);
      if ((rc = stead__ctx_batch_fail(ctx, i, STEAD_EHANDLER, es->io.why)) != 0 ||
          (rc = es_load(ctx, es)) != 0)
        break;
      continue;
    }
    if (rc || (rc = journal(ctx, es)) != 0 || (rc = add_effect(ctx, es, true)) != 0 ||
        (it[i].is_call && es->io.has_reply &&
         (rc = stead__ctx_batch_reply(ctx, i, es->io.reply.data, es->io.reply.len)) != 0))
      break;
    atomic_fetch_add(&es->reg->journaled, 1);
  }
  if (rc) {
    atomic_store(&es->stale, true);
    return stead__ctx_fail_code(ctx, rc, "in a batch: %s", stead_errmsg());
  }
  return 0;
}

/* A journaled method. */
static int es_call(stead_ctx *ctx, const void *arg, size_t len) {
  es_act *es = stead_state(ctx);
  int rc = ensure_fresh(ctx, es);
  if (rc)
    return rc;
  if ((rc = apply(ctx, es, arg, len)) != 0) {
    atomic_store(&es->stale, true); /* update may have changed the model */
    return rc;
  }
  if ((rc = journal(ctx, es)) != 0 || (rc = add_effect(ctx, es, true)) != 0 ||
      (rc = reply(ctx, es)) != 0) {
    atomic_store(&es->stale, true);
    return stead__ctx_fail_code(ctx, rc, "%s", stead_errmsg());
  }
  atomic_fetch_add(&es->reg->journaled, 1);
  return es->reg->c.batch_max > 1 ? es_batch(ctx, es) : 0;
}

/* A query: update runs, nothing is journaled. */
static int es_query(stead_ctx *ctx, const void *arg, size_t len) {
  es_act *es = stead_state(ctx);
  int rc = ensure_fresh(ctx, es);
  if (rc || (rc = apply(ctx, es, arg, len)) != 0)
    return rc;
  if ((rc = add_effect(ctx, es, false)) != 0 || (rc = reply(ctx, es)) != 0)
    return stead__ctx_fail_code(ctx, rc, "%s", stead_errmsg());
  return 0;
}

/* A command's turn: run it, send what it dispatched to the object. */
static int es_event(stead_ctx *ctx, const char *topic, const void *payload, size_t len) {
  es_act *es = stead_state(ctx);
  const stead_program *p = &es->reg->c.program;
  if (!topic || strcmp(topic, STEAD__ES_CMD_TOPIC) != 0 || !p->run)
    return stead_fail(ctx, "unexpected event \"%s\" for an event-sourced object",
                      topic ? topic : "");
  struct stead_dispatcher d;
  memset(&d, 0, sizeof d);
  int rc = p->run(payload, len, &d, p->udata);
  if (rc) {
    atomic_fetch_add(&es->reg->commands_failed, 1);
    stead__blobs_free(&d.b);
    return stead_fail(ctx, "command of %s/%s failed (run returned %d)",
                      stead_class_name(ctx), stead_object_id(ctx), rc);
  }
  for (size_t i = 0; i < d.b.n && rc == 0; i++) {
    stead_msg m = stead__blobs_at(&d.b, i);
    const char *method;
    const void *pl;
    size_t plen;
    rc = stead_es_split(m.data, m.len, &method, &pl, &plen);
    if (rc == 0)
      rc = stead_ctx_send(ctx, stead_class_name(ctx), stead_object_id(ctx), method, pl,
                          plen);
  }
  stead__blobs_free(&d.b);
  if (rc) {
    atomic_fetch_add(&es->reg->commands_failed, 1);
    return stead__ctx_fail_code(ctx, rc, "dispatching a command's message: %s",
                                stead_errmsg());
  }
  atomic_fetch_add(&es->reg->commands_run, 1);
  return 0;
}

/* ---- registration --------------------------------------------------- */

static size_t count_names(const char *const *v) {
  size_t n = 0;
  while (v && v[n])
    n++;
  return n;
}

static int check_class(const stead_es_class *c) {
  int rc;
  if (!c)
    return stead__err(STEAD_EINVAL, "event-sourced class is NULL");
  if ((rc = stead__check_name("class name", c->name)) != 0)
    return rc;
  if (!c->program.update || !c->program.encode || !c->program.decode)
    return stead__err(STEAD_EINVAL,
                      "class \"%s\": the program needs update, encode and "
                      "decode",
                      c->name);
  if (count_names(c->methods) == 0)
    return stead__err(STEAD_EINVAL, "class \"%s\": no methods", c->name);
  if (c->model_size == 0 || c->model_size > STEAD__ES_MAX_MODEL)
    return stead__err(STEAD_EINVAL, "class \"%s\": model_size is %zu; expected 1..%u",
                      c->name, c->model_size, STEAD__ES_MAX_MODEL);
  if (c->hibernate_after_ms < 0 || c->shutdown_after_ms < 0)
    return stead__err(STEAD_EINVAL, "class \"%s\": negative idle timeout", c->name);
  if (c->batch_max > STEAD__ES_MAX_BATCH)
    return stead__err(STEAD_EINVAL, "class \"%s\": batch_max is %u; at most %u", c->name,
                      c->batch_max, STEAD__ES_MAX_BATCH);
  return 0;
}

static es_reg *reg_build(const stead_es_class *c) {
  size_t nm = count_names(c->methods), nq = count_names(c->queries);
  es_reg *g = calloc(1, sizeof *g);
  stead_method *m = g ? calloc(nm + nq + 1, sizeof *m) : NULL;
  if (!m) {
    free(g);
    return NULL;
  }
  g->c = *c;
  if (!g->c.snapshot_every)
    g->c.snapshot_every = 100;
  if (!g->c.keep_snapshots)
    g->c.keep_snapshots = 2;
  if (!g->c.batch_max)
    g->c.batch_max = 1;
  for (size_t i = 0; i < nm; i++)
    m[i] = (stead_method){c->methods[i], es_call};
  for (size_t i = 0; i < nq; i++)
    m[nm + i] = (stead_method){c->queries[i], es_query};
  g->methods = m;
  g->model_off = (sizeof(es_act) + 15) & ~(size_t)15;
  g->cls = (stead_class){
      .name = c->name,
      .methods = m,
      .on_activate = es_activate,
      .on_deactivate = es_deactivate,
      .state_size = g->model_off + c->model_size,
      .on_event = c->program.run ? es_event : NULL,
      .hibernate_after_ms = c->hibernate_after_ms,
      .shutdown_after_ms = c->shutdown_after_ms,
  };
  return g;
}

int stead_register_program(stead_rt *rt, const stead_es_class *c) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  int rc = check_class(c);
  if (rc)
    return rc;
  es_rt *r = registry(rt, true);
  es_reg *g = r ? reg_build(c) : NULL;
  if (!g)
    return stead__err(STEAD_ENOMEM, "out of memory");
  /* In the registry before the core knows the class, so its first
   * activation finds it; a name taken by another event-sourced class is
   * refused here, one taken by a plain class by stead_register. */
  pthread_mutex_lock(&r->mu);
  if (reg_find_locked(r, c->name)) {
    pthread_mutex_unlock(&r->mu);
    reg_free(g);
    return stead__err(STEAD_EEXIST, "class \"%s\" is already registered", c->name);
  }
  g->next = r->head;
  r->head = g;
  pthread_mutex_unlock(&r->mu);
  rc = stead_register(rt, &g->cls);
  if (rc) {
    char why[512];
    snprintf(why, sizeof why, "%s", stead_errmsg());
    pthread_mutex_lock(&r->mu);
    es_reg **pp = &r->head;
    while (*pp != g)
      pp = &(*pp)->next;
    *pp = g->next;
    pthread_mutex_unlock(&r->mu);
    reg_free(g);
    return stead__err(rc, "%s", why);
  }
  return 0;
}
