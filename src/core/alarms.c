/*
 * alarms.c -- the runtime's side of durable alarms: the in-turn API, the
 * alarm turn, retries with backoff, dead letters, and the test helpers.
 *
 * The scheduler (src/alarm/) decides when an alarm is due and calls
 * rt_fire, which queues an ALARM message to the object. The alarm turn
 * deletes the alarm in its own write set before calling on_alarm, so the
 * deletion commits atomically with whatever the handler did (and a handler
 * that sets the same name again simply wins). After every commit the
 * committer thread tells the scheduler what changed (stead__alarm_rt_
 * committed), in commit order, and then reports the fired alarm done.
 *
 * A failed alarm turn leaves the alarm in storage; the runtime then writes
 * the next attempt (attempt+1, due after the backoff) in a write set of its
 * own, or deletes the alarm and emits a dead letter when the attempts are
 * used up. A crash between the two re-fires the same attempt: at least
 * once.
 */
#include "alarm/sched.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rtalarms {
  stead__alarms *sched;
  stead__counter dead;
} rtalarms;

static rtalarms *get(stead_rt *rt) {
  return *stead__rt_slot(rt, STEAD__SLOT_ALARM);
}

static int64_t rt_clock(void *u) {
  return stead__rt_now_ms(u);
}

/* Scheduler callback: an alarm is due. Queue its turn; a full mailbox
 * refuses, and the scheduler tries again shortly. */
static int rt_fire(void *u, const char *cls, const char *id, const char *name, int64_t at,
                   uint32_t attempt, const void *meta, size_t meta_len) {
  stead_rt *rt = u;
  const stead__class_rec *crec = stead__class_find(rt, cls);
  if (!crec)
    return STEAD_ENOCLASS; /* registered later, or gone: retried */
  stead__msg *m = stead__msg_new(STEAD__MSG_ALARM, meta, meta_len);
  char *n = stead__strdup(name);
  if (!m || !n) {
    free(n);
    stead__msg_free(m);
    return STEAD_ENOMEM;
  }
  m->topic = n; /* the alarm's name */
  m->attempt = attempt;
  int rc = stead__enqueue(rt, crec, id, strlen(id), m, false);
  if (rc)
    stead__msg_free(m);
  return rc;
}

static uint32_t rt_shard_of(void *u, const char *cls, const char *id) {
  return stead__cluster_shard(u, cls, id);
}

void stead__alarm_rt_own(stead_rt *rt, uint32_t shard, bool own) {
  rtalarms *ra = get(rt);
  if (!ra)
    return;
  int rc =
      own ? stead__alarms_own(ra->sched, shard) : stead__alarms_disown(ra->sched, shard);
  if (rc)
    stead__log(rt, STEAD_LOG_ERROR, "alarms of shard %u: %s %s", shard,
               own ? "cannot take them:" : "cannot drop them:", stead_errmsg());
}

int stead__alarm_rt_open(stead_rt *rt) {
  rtalarms *ra = calloc(1, sizeof *ra);
  if (!ra)
    return stead__err(STEAD_ENOMEM, "out of memory");
  stead__alarms_opts o = {0};
  o.now_ms = rt_clock;
  o.clock_udata = rt;
  o.window_ms = rt->cfg.alarm_window_ms;
  o.max_inflight = rt->cfg.alarm_max_inflight;
  o.retry_base_ms = rt->cfg.alarm_retry_base_ms;
  o.retry_factor = rt->cfg.alarm_retry_factor;
  o.max_attempts = rt->cfg.alarm_max_attempts;
  o.manual = rt->cfg.alarm_manual;
  o.fire = rt_fire;
  o.fire_udata = rt;
  if (rt->cluster) {
    /* Only the owner of a shard fires its alarms (stead__alarm_rt_own). */
    o.shard_of = rt_shard_of;
    o.shard_udata = rt;
  }
  int rc = stead__alarms_start(rt->backend, &o, &ra->sched);
  if (rc) {
    free(ra);
    return rc;
  }
  *stead__rt_slot(rt, STEAD__SLOT_ALARM) = ra;
  return 0;
}

void stead__alarm_rt_stop(stead_rt *rt) {
  rtalarms *ra = get(rt);
  if (!ra)
    return;
  *stead__rt_slot(rt, STEAD__SLOT_ALARM) = NULL;
  stead__alarms_stop(ra->sched);
  free(ra);
}

int stead__alarm_rt_metrics(stead_rt *rt, stead__buf *b) {
  rtalarms *ra = get(rt);
  return ra ? stead__alarms_metrics_text(ra->sched, b) : 0;
}

/* After a durable commit: tell the scheduler what the set changed. */
void stead__alarm_rt_committed(stead_rt *rt, const stead__wset *ws) {
  rtalarms *ra = get(rt);
  if (!ra)
    return;
  if (ws->alarms_clear)
    stead__alarms_notify_clear(ra->sched, ws->cls, ws->id);
  for (stead__onode *e = stead__omap_seek(&ws->alarms, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->alarms, e->key, e->klen, STEAD__SEEK_GT)) {
    char name[STEAD__MAX_NAME + 1];
    size_t nl = e->klen < STEAD__MAX_NAME ? e->klen : STEAD__MAX_NAME;
    memcpy(name, e->key, nl);
    name[nl] = 0;
    if (e->flags & STEAD__TOMB) {
      stead__alarms_notify_del(ra->sched, ws->cls, ws->id, name);
    } else {
      stead__alarm a;
      stead__wset_alarm_decode(e, &a);
      stead__alarms_notify_set(ra->sched, ws->cls, ws->id, name, a.at_ms, a.attempt,
                               a.meta, a.meta_len);
    }
  }
}

void stead__alarm_rt_done(stead_rt *rt, const char *cls, const char *id, const char *name,
                          uint32_t attempt) {
  rtalarms *ra = get(rt);
  if (ra)
    stead__alarms_done(ra->sched, cls, id, name, attempt);
}

/* ---- retries -------------------------------------------------------- */

typedef struct retry {
  stead_rt *rt;
  char *cls, *id, *name;
  uint32_t attempt;
  bool dead;
} retry;

static void dead_letter_event(stead_rt *rt, const retry *r) {
  stead_bus *bus = stead_rt_bus(rt);
  if (!bus)
    return;
  stead__buf b = {0};
  /* Names are [A-Za-z0-9_.-]; ids and alarm names are UTF-8 that may need
   * escaping: keep the JSON valid by escaping quotes and backslashes. */
  stead__buf_printf(&b, "{\"class\":\"%s\",\"id\":\"", r->cls);
  for (const char *p = r->id; *p; p++)
    (*p == '"' || *p == '\\')  ? stead__buf_printf(&b, "\\%c", *p)
    : (unsigned char)*p < 0x20 ? stead__buf_printf(&b, "\\u%04x", (unsigned char)*p)
                               : stead__buf_append(&b, p, 1);
  stead__buf_printf(&b, "\",\"alarm\":\"");
  for (const char *p = r->name; *p; p++)
    (*p == '"' || *p == '\\')  ? stead__buf_printf(&b, "\\%c", *p)
    : (unsigned char)*p < 0x20 ? stead__buf_printf(&b, "\\u%04x", (unsigned char)*p)
                               : stead__buf_append(&b, p, 1);
  stead__buf_printf(&b, "\",\"attempts\":%u}", r->attempt + 1);
  if (b.data)
    stead_bus_emit(bus, STEAD_ALARM_DEAD_LETTER_TOPIC, b.data, b.len, NULL, 0, NULL,
                   NULL);
  stead__buf_free(&b);
}

static void retry_done(void *u, stead__wset *ws, int rc) {
  retry *r = u;
  stead_rt *rt = r->rt;
  rtalarms *ra = get(rt);
  if (rc == 0) {
    stead__alarm_rt_committed(rt, ws);
    if (r->dead) {
      if (ra) {
        stead__alarms_dead_letter(ra->sched);
        stead__counter_add(&ra->dead, 1);
      }
      stead__log(rt, STEAD_LOG_WARN, "alarm %s of %s/%s dead-lettered after %u attempts",
                 r->name, r->cls, r->id, r->attempt + 1);
      dead_letter_event(rt, r);
    }
  }
  stead__alarm_rt_done(rt, r->cls, r->id, r->name, r->attempt);
  free(r->cls);
  free(r->id);
  free(r->name);
  free(r);
  stead__inflight_done(rt);
}

/* The alarm turn failed (handler, activation or commit): write the next
 * attempt, or delete the alarm when the attempts are used up. `meta` is
 * the alarm's. */
void stead__alarm_rt_failed(stead_rt *rt, const char *cls, const char *id,
                            const char *name, uint32_t attempt, const void *meta,
                            size_t meta_len) {
  rtalarms *ra = get(rt);
  retry *r = calloc(1, sizeof *r);
  stead__wset *ws = stead__wset_new(cls, id);
  if (r) {
    r->rt = rt;
    r->cls = stead__strdup(cls);
    r->id = stead__strdup(id);
    r->name = stead__strdup(name);
    r->attempt = attempt;
  }
  int rc = STEAD_ENOMEM;
  /* In a cluster the retry is written under the shard's lease, like any
   * commit of the object; a node that lost it leaves the alarm alone. */
  if (ws && stead__cluster_tenure(rt, cls, id, &ws->shard, &ws->epoch) != 0)
    rc = STEAD_ENOTOWNER;
  else if (ra && r && ws && r->cls && r->id && r->name) {
    int64_t delay = stead__alarms_backoff(ra->sched, attempt);
    r->dead = delay < 0;
    rc = r->dead ? stead__wset_alarm_del(ws, name)
                 : stead__wset_alarm_set(ws, name, stead__rt_now_ms(rt) + delay,
                                         attempt + 1, meta, meta_len);
  }
  if (rc == 0) {
    stead__inflight_add(rt);
    rc = stead__committer_submit(rt->committer, ws, retry_done, r);
    if (rc)
      stead__inflight_done(rt);
  }
  stead__wset_unref(ws);
  if (rc) {
    /* Could not record the attempt: the scheduler fires it again soon. */
    stead__alarm_rt_done(rt, cls, id, name, attempt);
    if (r) {
      free(r->cls);
      free(r->id);
      free(r->name);
      free(r);
    }
  }
}

/* ---- in-turn API ---------------------------------------------------- */

static int check_turn(stead_ctx *ctx) {
  if (!ctx || !stead__ctx_store(ctx))
    return stead__err(STEAD_EMISUSE, "alarms can only be changed inside a turn");
  return 0;
}

int stead_alarm_set(stead_ctx *ctx, const char *name, int64_t at_ms, const void *meta,
                    size_t meta_len) {
  int rc = check_turn(ctx);
  if (rc)
    return rc;
  if (meta_len && !meta)
    return stead__err(STEAD_EINVAL, "alarm meta is NULL but its length is %zu", meta_len);
  if (meta_len > STEAD_MAX_ALARM_META)
    return stead__err(STEAD_ETOOBIG, "alarm meta is %zu bytes; the limit is %d", meta_len,
                      STEAD_MAX_ALARM_META);
  return stead__objstore_alarm_set(stead__ctx_store(ctx), name, at_ms, 0, meta, meta_len);
}

int stead_alarm_cancel(stead_ctx *ctx, const char *name) {
  int rc = check_turn(ctx);
  return rc ? rc : stead__objstore_alarm_del(stead__ctx_store(ctx), name);
}

int stead_alarm_cancel_all(stead_ctx *ctx) {
  int rc = check_turn(ctx);
  return rc ? rc : stead__objstore_alarms_clear(stead__ctx_store(ctx));
}

/* Packs alarms into one allocation: the array, then names and metas. */
typedef struct packer {
  stead__buf names; /* name\0meta... appended; fixed up at the end */
  stead_alarm_info *items;
  size_t n, cap;
} packer;

static int pack_cb(void *u, const stead__alarm *a) {
  packer *p = u;
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    stead_alarm_info *it = realloc(p->items, cap * sizeof *it);
    if (!it)
      return STEAD_ENOMEM;
    p->items = it;
    p->cap = cap;
  }
  stead_alarm_info *i = &p->items[p->n++];
  /* Offsets for now; pointers once the block is final. */
  i->name = (const char *)(uintptr_t)p->names.len;
  if (stead__buf_append(&p->names, a->name, strlen(a->name) + 1))
    return STEAD_ENOMEM;
  i->meta = (const void *)(uintptr_t)p->names.len;
  i->meta_len = a->meta_len;
  if (stead__buf_append(&p->names, a->meta, a->meta_len))
    return STEAD_ENOMEM;
  i->at_ms = a->at_ms;
  i->attempt = a->attempt;
  return 0;
}

static int pack_finish(packer *p, int rc, stead_alarm_info **out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (rc == 0 && p->n) {
    size_t head = p->n * sizeof(stead_alarm_info);
    uint8_t *blk = malloc(head + p->names.len);
    if (!blk) {
      rc = stead__err(STEAD_ENOMEM, "out of memory");
    } else {
      memcpy(blk + head, p->names.data, p->names.len);
      stead_alarm_info *it = (stead_alarm_info *)blk;
      for (size_t k = 0; k < p->n; k++) {
        it[k] = p->items[k];
        it[k].name = (const char *)(blk + head + (uintptr_t)p->items[k].name);
        it[k].meta = blk + head + (uintptr_t)p->items[k].meta;
      }
      *out = it;
      *n = p->n;
    }
  }
  free(p->items);
  stead__buf_free(&p->names);
  return rc;
}

int stead_alarm_list(stead_ctx *ctx, stead_alarm_info **out, size_t *n) {
  if (!out || !n)
    return stead__err(STEAD_EINVAL, "out or n is NULL");
  int rc = check_turn(ctx);
  if (rc)
    return rc;
  packer p = {0};
  rc = stead__objstore_alarms_list(stead__ctx_store(ctx), pack_cb, &p);
  return pack_finish(&p, rc, out, n);
}

/* ---- from outside a turn -------------------------------------------- */

static int list_cb(void *u, const stead__alarm *a) {
  return pack_cb(u, a);
}

int stead_alarms_pending(stead_rt *rt, const char *cls, const char *id,
                         stead_alarm_info **out, size_t *n) {
  if (!rt || !out || !n)
    return stead__err(STEAD_EINVAL, "runtime, out or n is NULL");
  int rc;
  if ((rc = stead__check_name("class name", cls)) ||
      (rc = stead__check_utf8("id", id, STEAD__MAX_ID)))
    return rc;
  packer p = {0};
  rc = rt->backend->vt->alarms_list(rt->backend, cls, id, list_cb, &p);
  return pack_finish(&p, rc, out, n);
}

int stead_alarms_fire_due(stead_rt *rt) {
  if (!rt)
    return stead__err(STEAD_EINVAL, "runtime is NULL");
  if (stead__current_rt())
    return stead__err(STEAD_EMISUSE, "stead_alarms_fire_due would block a stead thread");
  rtalarms *ra = get(rt);
  if (!ra)
    return stead__err(STEAD_ECLOSED, "runtime is closing");
  int total = 0;
  /* Alarms set by the fired turns may be due already: repeat, bounded. */
  for (int round = 0; round < 1000; round++) {
    stead__alarms_poke(ra->sched);
    int n = stead__alarms_run_due(ra->sched);
    stead_run_until_idle(rt);
    if (n < 0)
      return n;
    if (n == 0)
      break;
    total += n;
  }
  return total;
}

int stead__alarm_rt_run_due(stead_rt *rt) {
  rtalarms *ra = get(rt);
  if (!ra)
    return 0;
  int rc = stead__alarms_poke(ra->sched);
  if (rc < 0)
    return rc;
  return stead__alarms_run_due(ra->sched);
}

/* ---- from outside a turn: a turn of the object ----------------------- */

typedef struct outside_set {
  const char *name;
  int64_t at_ms;
  const void *meta;
  size_t meta_len;
  bool cancel;
} outside_set;

static int outside_body(stead_ctx *ctx, void *arg) {
  outside_set *o = arg;
  int rc = o->cancel ? stead_alarm_cancel(ctx, o->name)
                     : stead_alarm_set(ctx, o->name, o->at_ms, o->meta, o->meta_len);
  return rc ? stead__ctx_fail_code(ctx, rc, "%s", stead_errmsg()) : 0;
}

int stead_alarm_set_for(stead_rt *rt, const char *cls, const char *id, const char *name,
                        int64_t at_ms, const void *meta, size_t meta_len) {
  if (!name)
    return stead__err(STEAD_EINVAL, "alarm name is NULL");
  outside_set o = {name, at_ms, meta, meta_len, false};
  return stead__run_as_turn(rt, cls, id, outside_body, &o, 0);
}

int stead_alarm_cancel_for(stead_rt *rt, const char *cls, const char *id,
                           const char *name) {
  if (!name)
    return stead__err(STEAD_EINVAL, "alarm name is NULL");
  outside_set o = {name, 0, NULL, 0, true};
  return stead__run_as_turn(rt, cls, id, outside_body, &o, 0);
}
