/*
 * loop.c -- the Elm-style loop: Run, Batch, Aggregate and Replay.
 *
 * Everything is one function, tick(): take up to `max` messages, update the
 * model with each, view it, run the commands, hand the dispatched messages
 * on, commit. The modes differ only in how they call it:
 *   Run        max 1, waits for input, commits each tick
 *   Batch      max N, never waits, commits each tick, stops when empty
 *   Aggregate  max N, never waits, never commits: the caller commits the
 *              whole span once the snapshot is saved, so a version
 *              conflict can roll every message back. Dispatched messages go
 *              to a private queue (`local`) read before the input, so they
 *              are part of the same all-or-nothing span.
 *
 * Invariants: between ticks nothing is taken from the input and not
 * committed (except inside Aggregate, whose span is committed or rolled
 * back before it returns); the command and dispatch lists are empty.
 * A failed tick is rolled back, counted, and ends the mode with its error.
 *
 * Commands and dispatched messages are copied into per-loop arenas
 * (`blobs`) that are reused tick after tick, so a steady loop does not
 * allocate except inside the queue.
 *
 * Threads: a loop belongs to the thread running it; only the cancellation
 * token and the queues are shared.
 */
#include "loop/loop_internal.h"
#include "loop/queue.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TICK_DONE = 1, TICK_EMPTY = 2, TICK_CLOSED = 3 };

struct stead_loop {
  stead_program prog;
  void *model;
  stead_consumer in;
  stead_producer out;
  int has_out;
  int replay;
  int initialised;
  stead_cmds cmds;
  stead_dispatcher disp;
  stead_msg *flush; /* scratch for handing dispatched messages to put */
  size_t flushcap;
  stead_queue *local; /* Aggregate's own pending messages, else NULL */
  stead_loop_stats st;
};

int stead__blobs_add(stead__blobs *b, const void *data, size_t len) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    size_t *s = realloc(b->span, cap * 2 * sizeof *s);
    if (!s)
      return stead__err(STEAD_ENOMEM, "out of memory");
    b->span = s;
    b->cap = cap;
  }
  size_t off = b->bytes.len;
  if (stead__buf_append(&b->bytes, data, len))
    return stead__err(STEAD_ENOMEM, "out of memory for a %zu-byte item", len);
  b->span[2 * b->n] = off;
  b->span[2 * b->n + 1] = len;
  b->n++;
  return 0;
}

stead_msg stead__blobs_at(const stead__blobs *b, size_t i) {
  return (stead_msg){b->bytes.data + b->span[2 * i], b->span[2 * i + 1]};
}

void stead__blobs_clear(stead__blobs *b) {
  b->n = 0;
  b->bytes.len = 0;
}

void stead__blobs_free(stead__blobs *b) {
  stead__buf_free(&b->bytes);
  free(b->span);
}

int stead_cmd(stead_cmds *cmds, const void *data, size_t len) {
  if (!cmds || (!data && len))
    return stead__err(STEAD_EINVAL, "stead_cmd: NULL cmds, or NULL data with length");
  if (!data)
    return 0;
  return stead__blobs_add(&cmds->b, data, len);
}

int stead_dispatch(stead_dispatcher *d, const void *data, size_t len) {
  if (!d || (!data && len))
    return stead__err(STEAD_EINVAL, "stead_dispatch: NULL d, or NULL data with length");
  if (!data)
    return 0;
  if (d->loop && !d->loop->has_out && !d->loop->local)
    return stead__err(STEAD_EMISUSE, "stead_dispatch: the loop has no producer");
  return stead__blobs_add(&d->b, data, len);
}

/* The error of a failed callback: its own STEAD_E* code, or EHANDLER. */
static int cb_err(int rc, const char *what) {
  if (rc < 0 && strcmp(stead_errname(rc), "EUNKNOWNCODE") != 0)
    return stead__err(rc, "%s failed: %s", what, stead_strerror(rc));
  return stead__err(STEAD_EHANDLER, "%s failed (returned %d)", what, rc);
}

int stead_loop_new(stead_loop **out, const stead_program *prog, void *model,
                   const stead_consumer *in, const stead_producer *outq) {
  if (!out)
    return stead__err(STEAD_EINVAL, "loop_new: out is NULL");
  *out = NULL;
  if (!prog || !prog->update)
    return stead__err(STEAD_EINVAL, "loop_new: the program has no update");
  if (!model)
    return stead__err(STEAD_EINVAL, "loop_new: model is NULL");
  if (!in || !in->get || !in->commit || !in->rollback)
    return stead__err(STEAD_EINVAL,
                      "loop_new: the consumer lacks get, commit or rollback");
  if (outq && !outq->put)
    return stead__err(STEAD_EINVAL, "loop_new: the producer has no put");
  stead_loop *l = calloc(1, sizeof *l);
  if (!l)
    return stead__err(STEAD_ENOMEM, "loop_new: out of memory");
  l->prog = *prog;
  l->model = model;
  l->in = *in;
  if (outq) {
    l->out = *outq;
    l->has_out = 1;
  }
  l->disp.loop = l;
  *out = l;
  return 0;
}

void stead_loop_free(stead_loop *l) {
  if (!l)
    return;
  stead__blobs_free(&l->cmds.b);
  stead__blobs_free(&l->disp.b);
  free(l->flush);
  stead_queue_free(l->local);
  free(l);
}

void stead_loop_set_replay(stead_loop *l, int on) {
  if (l)
    l->replay = on != 0;
}

void stead_loop_get_stats(const stead_loop *l, stead_loop_stats *st) {
  if (l && st)
    *st = l->st;
}

int stead_loop_hydrate(stead_loop *l, const void *data, size_t len) {
  if (!l || !l->prog.decode || (!data && len))
    return stead__err(STEAD_EINVAL, "loop_hydrate: NULL loop or data, or no decode");
  int rc = l->prog.decode(l->model, data, len, l->prog.udata);
  if (rc)
    return cb_err(rc, "decode");
  l->initialised = 1;
  return 0;
}

/* Undoes a failed tick: the input goes back, the lists are emptied. The
 * failure's message survives the rollback call. */
static int fail(stead_loop *l, int rc) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s", stead_errmsg());
  l->in.rollback(l->in.self);
  stead__blobs_clear(&l->cmds.b);
  stead__blobs_clear(&l->disp.b);
  l->st.rollbacks++;
  return stead__err(rc, "%s", msg);
}

/* Local (Aggregate) messages come before the input. */
static int take(stead_loop *l, int wait, stead_cancel *cancel, stead_msg *m) {
  if (l->local && stead__queue_tryget(l->local, m))
    return 0;
  return l->in.get(l->in.self, cancel, wait, m);
}

/* Runs the tick's commands (unless replaying), then empties the list. */
static int run_cmds(stead_loop *l) {
  stead__blobs *b = &l->cmds.b;
  if (!l->replay && l->prog.run) {
    for (size_t i = 0; i < b->n; i++) {
      stead_msg c = stead__blobs_at(b, i);
      int rc = l->prog.run(c.data, c.len, &l->disp, l->prog.udata);
      if (rc)
        return cb_err(rc, "run");
      l->st.commands++;
    }
  }
  stead__blobs_clear(b);
  return 0;
}

/* Hands the tick's dispatched messages to the producer (or to local). */
static int flush(stead_loop *l) {
  stead__blobs *b = &l->disp.b;
  if (b->n == 0)
    return 0;
  if (b->n > l->flushcap) {
    stead_msg *f = realloc(l->flush, b->n * sizeof *f);
    if (!f)
      return stead__err(STEAD_ENOMEM, "out of memory");
    l->flush = f;
    l->flushcap = b->n;
  }
  for (size_t i = 0; i < b->n; i++)
    l->flush[i] = stead__blobs_at(b, i);
  int rc = l->local ? stead_queue_put_many(l->local, l->flush, b->n)
                    : l->out.put(l->out.self, l->flush, b->n);
  if (rc)
    return rc;
  l->st.dispatched += b->n;
  stead__blobs_clear(b);
  return 0;
}

/* Takes up to max messages and applies them; init instead on the first
 * tick. Returns the number applied, or a negative error (nothing rolled
 * back yet). *end receives ENOTFOUND/ECLOSED if the input ran dry. */
static int apply(stead_loop *l, size_t max, int wait, stead_cancel *cancel, size_t *taken,
                 int *end) {
  if (!l->initialised) {
    if (l->prog.init) {
      int rc = l->prog.init(l->model, &l->cmds, l->prog.udata);
      if (rc)
        return cb_err(rc, "init");
    }
    l->initialised = 1;
    return 1;
  }
  int applied = 0;
  while (*taken < max) {
    stead_msg m;
    int rc = take(l, wait && *taken == 0, cancel, &m);
    if (rc == STEAD_ENOTFOUND || rc == STEAD_ECLOSED) {
      *end = rc;
      break;
    }
    if (rc)
      return rc;
    (*taken)++;
    if (!m.data)
      continue;
    rc = l->prog.update(l->model, m.data, m.len, &l->cmds, l->prog.udata);
    if (rc)
      return cb_err(rc, "update");
    applied++;
  }
  return applied;
}

/* One tick; see the file comment. Returns TICK_* or a negative error. */
static int tick(stead_loop *l, size_t max, int wait, int commit, stead_cancel *cancel) {
  int rc = stead_cancel_check(cancel);
  if (rc)
    return rc;
  size_t taken = 0;
  int end = 0;
  int applied = apply(l, max, wait, cancel, &taken, &end);
  if (applied < 0)
    return fail(l, applied);
  if (applied == 0 && taken == 0)
    return end == STEAD_ECLOSED ? TICK_CLOSED : TICK_EMPTY;
  if (applied > 0 && l->prog.view)
    l->prog.view(l->model, l->prog.udata);
  if ((rc = run_cmds(l)) != 0 || (rc = flush(l)) != 0)
    return fail(l, rc);
  if (commit && taken > 0 && (rc = l->in.commit(l->in.self)) != 0)
    return fail(l, rc);
  if (l->local)
    stead_queue_commit(l->local);
  l->st.ticks++;
  l->st.messages += taken;
  return TICK_DONE;
}

int stead_loop_run(stead_loop *l, stead_cancel *cancel) {
  if (!l)
    return stead__err(STEAD_EINVAL, "loop_run: loop is NULL");
  for (;;) {
    int rc = tick(l, 1, 1, 1, cancel);
    if (rc == TICK_CLOSED)
      return 0;
    if (rc < 0)
      return rc;
  }
}

int stead_loop_batch(stead_loop *l, size_t max_per_tick, stead_cancel *cancel) {
  if (!l || max_per_tick == 0)
    return stead__err(STEAD_EINVAL, "loop_batch: NULL loop or max_per_tick 0");
  for (;;) {
    int rc = tick(l, max_per_tick, 0, 1, cancel);
    if (rc == TICK_EMPTY || rc == TICK_CLOSED)
      return 0;
    if (rc < 0)
      return rc;
  }
}

/* Loads the key's model: decode, or mark it for init when absent. */
static int load(stead_loop *l, const stead_snapstore *store, const char *key,
                uint64_t *ver) {
  void *data = NULL;
  size_t len = 0;
  int rc = store->get(store->self, key, &data, &len, ver);
  if (rc == STEAD_ENOTFOUND) {
    *ver = 0;
    l->initialised = 0;
    return 0;
  }
  if (rc)
    return rc;
  rc = stead_loop_hydrate(l, data, len);
  free(data);
  return rc;
}

/* Encodes the model and saves it expecting version `ver`. */
static int save(stead_loop *l, const stead_snapstore *store, const char *key,
                uint64_t ver, uint64_t *out) {
  void *data = NULL;
  size_t len = 0;
  int rc = l->prog.encode(l->model, &data, &len, l->prog.udata);
  if (rc)
    return cb_err(rc, "encode");
  if (!data && len)
    return stead__err(STEAD_EHANDLER, "encode returned NULL data with length %zu", len);
  rc = store->put(store->self, key, data, len, ver, out);
  free(data);
  return rc;
}

static int aggregate(stead_loop *l, const stead_snapstore *store, const char *key,
                     size_t max, stead_cancel *cancel, uint64_t *version) {
  uint64_t ver = 0, saved = 0;
  int rc = load(l, store, key, &ver);
  if (rc)
    return rc;
  do {
    rc = tick(l, max, 0, 0, cancel);
  } while (rc == TICK_DONE);
  if (rc < 0)
    return rc;
  if ((rc = save(l, store, key, ver, &saved)) != 0)
    return rc;
  if ((rc = l->in.commit(l->in.self)) != 0)
    return rc;
  if (version)
    *version = saved;
  return 0;
}

int stead_loop_aggregate(stead_loop *l, const stead_snapstore *store, const char *key,
                         size_t max_per_tick, stead_cancel *cancel, uint64_t *version) {
  if (!l || !store || !store->get || !store->put || !key || max_per_tick == 0)
    return stead__err(STEAD_EINVAL,
                      "loop_aggregate: NULL loop, store or key, or max_per_tick 0");
  if (!l->prog.encode || !l->prog.decode)
    return stead__err(STEAD_EINVAL, "loop_aggregate: the program lacks encode or decode");
  if (l->local)
    return stead__err(STEAD_EMISUSE, "loop_aggregate: already running on this loop");
  int rc = stead_queue_new(&l->local);
  if (rc)
    return rc;
  rc = aggregate(l, store, key, max_per_tick, cancel, version);
  if (rc) {
    /* Whatever was taken goes back; the model is now suspect, so the next
     * Aggregate reloads it anyway. */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", stead_errmsg());
    l->in.rollback(l->in.self);
    stead__err(rc, "%s", msg);
  }
  stead_queue_free(l->local);
  l->local = NULL;
  return rc;
}
