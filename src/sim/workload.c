/*
 * workload.c -- what the simulation runs and what it checks.
 *
 * Classes (all state in raw storage, so every turn commits):
 *   ctr    "inc" OPID: v += 1 and op/OPID = 1 in one turn; replies v.
 *   relay  "inc" "CTR OPID": a call between objects -- defers its reply,
 *          calls ctr CTR "inc" and answers from the continuation.
 *   snd    "push" "RCV N": sends N numbered messages (some as calls) to rcv
 *          RCV; its next number is stored (seq/RCV).
 *   rcv    "recv" "SENDER SEQ INC": checks per-sender FIFO; stores the last.
 *   alm    "set" "UID DELAY": sets alarm nUID due DELAY ms from now;
 *          on_alarm checks it is not early, records the firing, and fails
 *          now and then (retries).
 *
 * Each client request is an operation with an outcome: acknowledged,
 * failed (definitely not applied: the commit failed, the mailbox was full),
 * or unknown (deadline passed, answer lost in a crash, or a relay's
 * failure, which may come after the inner call applied). Invariants:
 *   - every acknowledged increment is in storage (after a crash with
 *     durability normal, only those acknowledged before the last sync must
 *     be), no failed one is, and v equals the number of op keys (no
 *     increment applied twice);
 *   - per-sender FIFO: messages from one sender to one receiver are
 *     handled in increasing order (within an incarnation);
 *   - every acknowledged alarm fires at least once, never before due.
 */
#include "sim/sim.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCTR   4
#define NRELAY 2
#define NSND   3
#define NRCV   3
#define NALM   3
#define NPUB   2
#define NSUB   3
#define MAXOPS 65536

typedef enum op_state { OP_PENDING, OP_ACKED, OP_FAILED, OP_UNKNOWN } op_state;
typedef enum op_kind { K_INC, K_RELAY, K_PUSH, K_ALARM, K_SUB, K_EMIT } op_kind;

typedef struct op {
  stead__workload *w;
  uint64_t uid;
  op_kind kind;
  int obj; /* ctr index (K_INC, K_RELAY), alm index (K_ALARM) */
  op_state st;
  uint64_t ack_syncs; /* disk syncs when acknowledged */
  int fired;          /* K_ALARM: on_alarm ran for it */
  int ack_inc;        /* incarnation that acknowledged it */
  uint64_t issued_at; /* request number when issued */
  uint64_t acked_at;  /* request number when acknowledged */
  int topic;          /* K_EMIT: 0..3, see topic_of */
  uint8_t got[NSUB];  /* K_EMIT: delivered to subscriber i (count) */
} op;

struct stead__workload {
  stead__sim *s;
  op **ops;
  size_t nops, cap;
  /* per-sender FIFO: last number handled, [sender][receiver]; sender 0 is
   * the client, 1.. the snd objects. Reset per incarnation. */
  uint64_t last[1 + NSND][NRCV];
  uint64_t client_seq[NRCV];
  /* bus: last event number handled per [publisher][subscriber] */
  uint64_t last_ev[NPUB][NSUB];
  uint64_t nreq; /* requests issued */
};

static stead__workload *wl(stead_ctx *ctx) {
  stead__sim *s = stead__sim_of(ctx);
  return s ? stead__sim_workload(s) : NULL;
}

static op *op_find(stead__workload *w, uint64_t uid) {
  return uid >= 1 && uid <= w->nops ? w->ops[uid - 1] : NULL;
}

/* ---- storage helpers --------------------------------------------------- */

/* Shared with the cluster workload (sim.h). */
uint64_t stead__sim_get_u64(stead_ctx *ctx, const char *key, int *err) {
  void *v = NULL;
  size_t len = 0;
  int rc = stead_get(ctx, key, strlen(key), &v, &len);
  uint64_t x = 0;
  if (rc == 0)
    x = strtoull(v, NULL, 10);
  else if (rc != STEAD_ENOTFOUND)
    *err = rc;
  stead_free(v);
  return x;
}

int stead__sim_put_u64(stead_ctx *ctx, const char *key, uint64_t x) {
  char b[32];
  int n = snprintf(b, sizeof b, "%" PRIu64, x);
  return stead_put(ctx, key, strlen(key), b, (size_t)n);
}

/* ---- ctr ---------------------------------------------------------------- */

static int ctr_inc(stead_ctx *ctx, const void *arg, size_t len) {
  char key[48];
  snprintf(key, sizeof key, "op/%.*s", (int)(len < 24 ? len : 24), (const char *)arg);
  int err = 0;
  uint64_t v = stead__sim_get_u64(ctx, "v", &err);
  if (err)
    return stead_fail_code(ctx, err, "reading v: %s", stead_errmsg());
  void *had = NULL;
  int rc = stead_get(ctx, key, strlen(key), &had, NULL);
  stead_free(had);
  if (rc == 0) /* already applied: the runtime delivered it twice */
    stead__sim_check(stead__sim_of(ctx), 0, "increment %s of %s applied twice", key,
                     stead_object_id(ctx));
  if ((rc = stead__sim_put_u64(ctx, "v", v + 1)) != 0 ||
      (rc = stead_put(ctx, key, strlen(key), "1", 1)))
    return stead_fail_code(ctx, rc, "writing: %s", stead_errmsg());
  char b[32];
  int n = snprintf(b, sizeof b, "%" PRIu64, v + 1);
  return stead_reply(ctx, b, (size_t)n);
}

static const stead_method ctr_methods[] = {{"inc", ctr_inc}, {NULL, NULL}};
static const stead_class ctr_class = {
    .name = "ctr", .methods = ctr_methods, .shutdown_after_ms = 3000};

/* ---- relay: calls between objects, deferred replies --------------------- */

static int relay_then(stead_ctx *ctx, const stead_result *res, void *udata) {
  stead_deferred *d = udata;
  return res->status == 0 ? stead_deferred_reply(ctx, d, res->data, res->len)
                          : stead_deferred_fail(ctx, d, res->status, res->message);
}

static int relay_inc(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[64], ctr[16];
  unsigned long long opid;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  if (sscanf(buf, "%15s %llu", ctr, &opid) != 2)
    return stead_fail(ctx, "bad relay payload");
  char p[32];
  int n = snprintf(p, sizeof p, "%llu", opid);
  stead_deferred *d = stead_defer_reply(ctx);
  if (!d)
    return stead_fail(ctx, "defer: %s", stead_errmsg());
  int rc = stead_ctx_call(ctx, "ctr", ctr, "inc", p, (size_t)n, 1500, relay_then, d);
  return rc ? stead_fail(ctx, "call: %s", stead_errmsg()) : 0;
}

static const stead_method relay_methods[] = {{"inc", relay_inc}, {NULL, NULL}};
static const stead_class relay_class = {.name = "relay", .methods = relay_methods};

/* ---- snd / rcv: per-sender FIFO ----------------------------------------- */

static int ignore_then(stead_ctx *ctx, const stead_result *res, void *udata) {
  return 0;
}

static int snd_push(stead_ctx *ctx, const void *arg, size_t len) {
  stead__workload *w = wl(ctx);
  stead__sim *s = stead__sim_of(ctx);
  char buf[64], rcv[16];
  unsigned n;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  if (!w || sscanf(buf, "%15s %u", rcv, &n) != 2)
    return stead_fail(ctx, "bad push payload");
  char key[32];
  snprintf(key, sizeof key, "seq/%s", rcv);
  int err = 0;
  uint64_t seq = stead__sim_get_u64(ctx, key, &err);
  if (err)
    return stead_fail_code(ctx, err, "reading %s: %s", key, stead_errmsg());
  for (unsigned i = 0; i < n; i++) {
    char m[64];
    int ml = snprintf(m, sizeof m, "%s %" PRIu64 " %d", stead_object_id(ctx), ++seq,
                      stead__sim_incarnation(s));
    int rc = stead__sim_rand(s, 4) == 0
                 ? stead_ctx_call(ctx, "rcv", rcv, "recv", m, (size_t)ml, 1000,
                                  ignore_then, NULL)
                 : stead_ctx_send(ctx, "rcv", rcv, "recv", m, (size_t)ml);
    if (rc)
      return stead_fail(ctx, "send: %s", stead_errmsg());
  }
  int rc = stead__sim_put_u64(ctx, key, seq);
  return rc ? stead_fail_code(ctx, rc, "writing: %s", stead_errmsg()) : 0;
}

static const stead_method snd_methods[] = {{"push", snd_push}, {NULL, NULL}};
static const stead_class snd_class = {
    .name = "snd", .methods = snd_methods, .shutdown_after_ms = 5000};

static int sender_index(const char *name) {
  if (strcmp(name, "client") == 0)
    return 0;
  if (name[0] == 's' && name[1] >= '0' && name[1] < '0' + NSND && !name[2])
    return 1 + (name[1] - '0');
  return -1;
}

static int rcv_recv(stead_ctx *ctx, const void *arg, size_t len) {
  stead__workload *w = wl(ctx);
  stead__sim *s = stead__sim_of(ctx);
  char buf[64], sender[16];
  unsigned long long seq;
  int inc;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  const char *me = stead_object_id(ctx);
  int r = me[0] == 'q' && me[1] >= '0' && me[1] < '0' + NRCV && !me[2] ? me[1] - '0' : -1;
  if (!w || sscanf(buf, "%15s %llu %d", sender, &seq, &inc) != 3 || r < 0)
    return stead_fail(ctx, "bad recv payload");
  int si = sender_index(sender);
  stead__sim_check(s, si >= 0, "recv from unknown sender %s", sender);
  stead__sim_check(s, inc == stead__sim_incarnation(s),
                   "message of incarnation %d handled in incarnation %d", inc,
                   stead__sim_incarnation(s));
  if (si < 0)
    return 0;
  stead__sim_check(s, seq > w->last[si][r],
                   "per-sender FIFO: %s -> rcv/%s handled %llu after %llu", sender, me,
                   seq, (unsigned long long)w->last[si][r]);
  w->last[si][r] = seq;
  stead__sim_trace(s, "recv %s %s %llu", me, sender, seq);
  char key[32];
  snprintf(key, sizeof key, "last/%s", sender);
  int rc = stead__sim_put_u64(ctx, key, seq);
  return rc ? stead_fail_code(ctx, rc, "writing: %s", stead_errmsg()) : 0;
}

static const stead_method rcv_methods[] = {{"recv", rcv_recv}, {NULL, NULL}};
static const stead_class rcv_class = {.name = "rcv", .methods = rcv_methods};

/* ---- alm: alarms --------------------------------------------------------- */

static int alm_set(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[64];
  unsigned long long uid;
  long long delay;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  if (sscanf(buf, "%llu %lld", &uid, &delay) != 2)
    return stead_fail(ctx, "bad set payload");
  char name[32], meta[64];
  snprintf(name, sizeof name, "n%llu", uid);
  int64_t at = stead_now_ms(ctx) + delay;
  int ml = snprintf(meta, sizeof meta, "%llu %lld", uid, (long long)at);
  int rc = stead_alarm_set(ctx, name, at, meta, (size_t)ml);
  return rc ? stead_fail_code(ctx, rc, "alarm_set: %s", stead_errmsg()) : 0;
}

static int alm_on_alarm(stead_ctx *ctx, const char *name, const void *meta,
                        size_t meta_len, uint32_t attempt) {
  stead__workload *w = wl(ctx);
  stead__sim *s = stead__sim_of(ctx);
  char buf[64];
  unsigned long long uid;
  long long at;
  snprintf(buf, sizeof buf, "%.*s", (int)(meta_len < 63 ? meta_len : 63),
           (const char *)meta);
  if (!w || sscanf(buf, "%llu %lld", &uid, &at) != 2)
    return stead_fail(ctx, "bad alarm meta");
  int64_t now = stead_now_ms(ctx);
  stead__sim_check(s, now >= at, "alarm %s of alm/%s fired %lld ms early", name,
                   stead_object_id(ctx), (long long)(at - now));
  op *o = op_find(w, uid);
  stead__sim_check(s, o && o->kind == K_ALARM, "alarm %s was never set", name);
  if (o)
    o->fired = 1;
  stead__sim_trace(s, "alarm %s/%s attempt %u", stead_object_id(ctx), name, attempt);
  if (stead__sim_rand(s, 10) == 0) {
    stead__sim_report_of(s)->handler_failures++;
    return stead_fail(ctx, "simulated handler failure");
  }
  return 0;
}

static const stead_method alm_methods[] = {{"set", alm_set}, {NULL, NULL}};
static const stead_class alm_class = {.name = "alm",
                                      .methods = alm_methods,
                                      .on_alarm = alm_on_alarm,
                                      .shutdown_after_ms = 4000};

/* ---- pub / sub: transactional emits to object subscribers ---------------- */

/* Topics t.p<k>.x / t.p<k>.y; subscriber patterns chosen to overlap. */
static const char *const sub_pattern[NSUB] = {"t.**", "t.p0.*", "t.*.x"};

static void topic_of(int pub, int t, char *out, size_t n) {
  snprintf(out, n, "t.p%d.%c", pub, t ? 'y' : 'x');
}

static int pattern_matches(int sub, int pub, int t) {
  switch (sub) {
  case 0:
    return 1;
  case 1:
    return pub == 0;
  default:
    return t == 0;
  }
}

static int pub_emit(stead_ctx *ctx, const void *arg, size_t len) {
  stead__sim *s = stead__sim_of(ctx);
  char buf[64];
  unsigned long long uid;
  int t;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)arg);
  const char *me = stead_object_id(ctx);
  if (sscanf(buf, "%llu %d", &uid, &t) != 2 || me[0] != 'p')
    return stead_fail(ctx, "bad emit payload");
  int err = 0;
  uint64_t seq = stead__sim_get_u64(ctx, "seq", &err) + 1;
  if (err)
    return stead_fail_code(ctx, err, "reading seq: %s", stead_errmsg());
  char topic[32], ev[64];
  topic_of(me[1] - '0', t, topic, sizeof topic);
  int n = snprintf(ev, sizeof ev, "%s %" PRIu64 " %llu %d", me, seq, uid,
                   stead__sim_incarnation(s));
  int rc = stead_emit(ctx, topic, ev, (size_t)n);
  if (rc == 0)
    rc = stead__sim_put_u64(ctx, "seq", seq);
  return rc ? stead_fail_code(ctx, rc, "emit: %s", stead_errmsg()) : 0;
}

static const stead_method pub_methods[] = {{"emit", pub_emit}, {NULL, NULL}};
static const stead_class pub_class = {.name = "pub", .methods = pub_methods};

static int sub_index(const char *id) {
  return id[0] == 'b' && id[1] >= '0' && id[1] < '0' + NSUB && !id[2] ? id[1] - '0' : -1;
}

static int sub_subscribe(stead_ctx *ctx, const void *arg, size_t len) {
  int i = sub_index(stead_object_id(ctx));
  if (i < 0)
    return stead_fail(ctx, "no such subscriber");
  int rc = stead_subscribe(ctx, sub_pattern[i]);
  return rc ? stead_fail_code(ctx, rc, "subscribe: %s", stead_errmsg()) : 0;
}

static int sub_on_event(stead_ctx *ctx, const char *topic, const void *payload,
                        size_t len) {
  stead__workload *w = wl(ctx);
  stead__sim *s = stead__sim_of(ctx);
  char buf[64], pubid[16];
  unsigned long long seq, uid;
  int inc;
  snprintf(buf, sizeof buf, "%.*s", (int)(len < 63 ? len : 63), (const char *)payload);
  int si = sub_index(stead_object_id(ctx));
  if (!w || si < 0 || sscanf(buf, "%15s %llu %llu %d", pubid, &seq, &uid, &inc) != 4 ||
      pubid[0] != 'p' || pubid[1] < '0' || pubid[1] >= '0' + NPUB)
    return stead_fail(ctx, "bad event");
  int p = pubid[1] - '0';
  stead__sim_report_of(s)->deliveries++;
  op *o = op_find(w, uid);
  stead__sim_check(s, o && o->kind == K_EMIT, "event %s for an emit never made", buf);
  if (!o)
    return 0;
  stead__sim_check(s, pattern_matches(si, p, o->topic),
                   "event %s reached sub/%s whose pattern %s does not match", topic,
                   stead_object_id(ctx), sub_pattern[si]);
  stead__sim_check(s, o->got[si] == 0, "event %s delivered twice to sub/%s", buf,
                   stead_object_id(ctx));
  if (o->got[si] < 255)
    o->got[si]++;
  if (inc == stead__sim_incarnation(s)) {
    stead__sim_check(s, seq > w->last_ev[p][si],
                     "bus FIFO: %s -> sub/%s event %llu after %llu", pubid,
                     stead_object_id(ctx), seq, (unsigned long long)w->last_ev[p][si]);
    w->last_ev[p][si] = seq;
  }
  stead__sim_trace(s, "event %s at sub/%s", buf, stead_object_id(ctx));
  return stead__sim_put_u64(ctx, pubid, seq);
}

static const stead_method sub_methods[] = {{"subscribe", sub_subscribe}, {NULL, NULL}};
static const stead_class sub_class = {
    .name = "sub", .methods = sub_methods, .on_event = sub_on_event};

/* ---- client side --------------------------------------------------------- */

static op *op_new(stead__workload *w, op_kind kind, int obj) {
  if (w->nops >= MAXOPS)
    return NULL;
  if (w->nops == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 256;
    op **v = realloc(w->ops, cap * sizeof *v);
    if (!v)
      return NULL;
    w->ops = v;
    w->cap = cap;
  }
  op *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->w = w;
  o->uid = w->nops + 1;
  o->kind = kind;
  o->obj = obj;
  o->issued_at = w->nreq;
  w->ops[w->nops++] = o;
  return o;
}

/* Is a failure with this code definite (nothing was applied)? */
static int definite(const op *o, int status) {
  if (o->kind == K_RELAY)
    return 0; /* the inner call may have applied before the relay failed */
  return status == STEAD_ESTORAGE || status == STEAD_EHANDLER ||
         status == STEAD_EOVERLOAD;
}

static void op_done(const stead_result *res, void *udata) {
  op *o = udata;
  stead__workload *w = o->w;
  stead__sim_report *r = stead__sim_report_of(w->s);
  if (stead__sim_crashing(w->s)) {
    o->st = OP_UNKNOWN; /* nobody hears an answer after a crash */
  } else if (res->status == 0) {
    o->st = OP_ACKED;
    o->ack_syncs = stead__sim_syncs(w->s);
    o->ack_inc = stead__sim_incarnation(w->s);
    o->acked_at = w->nreq;
  } else {
    o->st = definite(o, res->status) ? OP_FAILED : OP_UNKNOWN;
  }
  r->acked += o->st == OP_ACKED;
  r->failed += o->st == OP_FAILED;
  r->unknown += o->st == OP_UNKNOWN;
  stead__sim_trace(w->s, "done op %" PRIu64 " status %d", o->uid, res->status);
}

static void submit(stead__workload *w, op *o, const char *cls, const char *id,
                   const char *method, const char *payload) {
  /* Mostly generous deadlines; a few short ones time out under slow
   * commits and clock jumps (outcome unknown). */
  int tmo = stead__sim_rand(w->s, 10) == 0 ? 50 + (int)stead__sim_rand(w->s, 500)
                                           : 2000 + (int)stead__sim_rand(w->s, 8000);
  int rc = stead_call_async(stead__sim_rt(w->s), cls, id, method, payload,
                            strlen(payload), tmo, op_done, o);
  stead__sim_trace(w->s, "call op %" PRIu64 " %s/%s.%s(%s) -> %d", o->uid, cls, id,
                   method, payload, rc);
  if (rc) {
    o->st = OP_FAILED;
    stead__sim_report_of(w->s)->failed++;
  }
}

void stead__workload_request(stead__workload *w) {
  stead__sim *s = w->s;
  char id[16], p[64];
  uint64_t k = stead__sim_rand(s, 115);
  w->nreq++;
  if (k >= 100) {
    /* bus: mostly emits, now and then a (re)subscription */
    int sub = stead__sim_rand(s, 5) == 0;
    op *o = op_new(w, sub ? K_SUB : K_EMIT, (int)stead__sim_rand(s, sub ? NSUB : NPUB));
    if (!o)
      return;
    if (sub) {
      snprintf(id, sizeof id, "b%d", o->obj);
      submit(w, o, "sub", id, "subscribe", "");
    } else {
      o->topic = (int)stead__sim_rand(s, 2);
      snprintf(id, sizeof id, "p%d", o->obj);
      snprintf(p, sizeof p, "%" PRIu64 " %d", o->uid, o->topic);
      submit(w, o, "pub", id, "emit", p);
    }
  } else if (k < 35) {
    op *o = op_new(w, K_INC, (int)stead__sim_rand(s, NCTR));
    if (!o)
      return;
    snprintf(id, sizeof id, "c%d", o->obj);
    snprintf(p, sizeof p, "%" PRIu64, o->uid);
    submit(w, o, "ctr", id, "inc", p);
  } else if (k < 50) {
    op *o = op_new(w, K_RELAY, (int)stead__sim_rand(s, NCTR));
    if (!o)
      return;
    snprintf(id, sizeof id, "r%d", (int)stead__sim_rand(s, NRELAY));
    snprintf(p, sizeof p, "c%d %" PRIu64, o->obj, o->uid);
    submit(w, o, "relay", id, "inc", p);
  } else if (k < 70) {
    op *o = op_new(w, K_PUSH, 0);
    if (!o)
      return;
    snprintf(id, sizeof id, "s%d", (int)stead__sim_rand(s, NSND));
    snprintf(p, sizeof p, "q%d %d", (int)stead__sim_rand(s, NRCV),
             1 + (int)stead__sim_rand(s, 4));
    submit(w, o, "snd", id, "push", p);
  } else if (k < 85) {
    /* The client is a sender too: one thread, one receiver, in order. */
    int r = (int)stead__sim_rand(s, NRCV);
    snprintf(id, sizeof id, "q%d", r);
    int n = snprintf(p, sizeof p, "client %" PRIu64 " %d", ++w->client_seq[r],
                     stead__sim_incarnation(s));
    int rc = stead_send(stead__sim_rt(s), "rcv", id, "recv", p, (size_t)n);
    stead__sim_trace(s, "send rcv/%s %s -> %d", id, p, rc);
  } else {
    op *o = op_new(w, K_ALARM, (int)stead__sim_rand(s, NALM));
    if (!o)
      return;
    snprintf(id, sizeof id, "a%d", o->obj);
    snprintf(p, sizeof p, "%" PRIu64 " %d", o->uid, (int)stead__sim_rand(s, 3000));
    submit(w, o, "alm", id, "set", p);
  }
}

void stead__workload_pick_object(stead__workload *w, const char **cls, const char **id) {
  static const char *const objs[][2] = {
      {"ctr", "c0"}, {"ctr", "c1"}, {"ctr", "c2"},   {"ctr", "c3"}, {"relay", "r0"},
      {"snd", "s0"}, {"snd", "s1"}, {"rcv", "q0"},   {"rcv", "q1"}, {"alm", "a0"},
      {"alm", "a1"}, {"alm", "a2"}, {"relay", "r1"}, {"snd", "s2"}, {"rcv", "q2"},
      {"pub", "p0"}, {"pub", "p1"}, {"sub", "b0"},   {"sub", "b1"}, {"sub", "b2"},
  };
  size_t k = (size_t)stead__sim_rand(w->s, sizeof objs / sizeof objs[0]);
  *cls = objs[k][0];
  *id = objs[k][1];
}

void stead__workload_crashed(stead__workload *w, uint64_t syncs_at_crash) {
  int normal = stead__sim_normal(w->s);
  for (size_t i = 0; i < w->nops; i++) {
    op *o = w->ops[i];
    if (o->st == OP_PENDING)
      o->st = OP_UNKNOWN;
    /* With normal durability an acknowledged write is durable only if a
     * sync came after it; otherwise the crash may have taken it. */
    else if (o->st == OP_ACKED && normal && o->ack_syncs >= syncs_at_crash)
      o->st = OP_UNKNOWN;
  }
}

void stead__workload_reopened(stead__workload *w) {
  memset(w->last, 0, sizeof w->last);
  memset(w->last_ev, 0, sizeof w->last_ev);
}

int stead__workload_alarms_owed(stead__workload *w) {
  for (size_t i = 0; i < w->nops; i++)
    if (w->ops[i]->kind == K_ALARM && w->ops[i]->st == OP_ACKED && !w->ops[i]->fired)
      return 1;
  return 0;
}

static int has_key(stead__backend *b, const char *cls, const char *id, const char *key,
                   uint64_t *val) {
  void *v = NULL;
  size_t len = 0;
  int rc = b->vt->get(b, cls, id, STEAD__NS_USER, key, strlen(key), &v, &len);
  if (rc == 0 && val)
    *val = strtoull(v, NULL, 10);
  free(v);
  return rc == 0;
}

/* The subscription of subscriber i acknowledged in incarnation inc before
 * request number `before`, if any. */
static int subscribed(stead__workload *w, int i, int inc, uint64_t before) {
  for (size_t k = 0; k < w->nops; k++) {
    op *o = w->ops[k];
    if (o->kind == K_SUB && o->obj == i && o->st == OP_ACKED && o->ack_inc == inc &&
        o->acked_at < before)
      return 1;
  }
  return 0;
}

/* Bus: no event from a failed turn reached anyone; an acknowledged emit of
 * the last incarnation reached every subscriber whose subscription was
 * acknowledged, in that incarnation, before the emit was requested (an
 * event in flight at a crash may be lost: delivery is at most once per
 * process). */
static void final_bus(stead__workload *w) {
  stead__sim *s = w->s;
  int inc = stead__sim_incarnation(s);
  for (size_t k = 0; k < w->nops; k++) {
    op *o = w->ops[k];
    if (o->kind != K_EMIT)
      continue;
    for (int i = 0; i < NSUB; i++) {
      stead__sim_check(s, o->st != OP_FAILED || !o->got[i],
                       "event of failed emit %" PRIu64 " reached sub/b%d", o->uid, i);
      if (o->st == OP_ACKED && o->ack_inc == inc &&
          pattern_matches(i, o->obj, o->topic) && subscribed(w, i, inc, o->issued_at))
        stead__sim_check(s, o->got[i],
                         "acknowledged emit %" PRIu64 " never reached sub/b%d", o->uid,
                         i);
    }
  }
}

void stead__workload_final(stead__workload *w) {
  stead__sim *s = w->s;
  stead__backend *b = stead__sim_rt(s)->backend;
  uint64_t present[NCTR] = {0};
  final_bus(w);
  for (size_t i = 0; i < w->nops; i++) {
    op *o = w->ops[i];
    if (o->kind == K_ALARM) {
      if (o->st == OP_ACKED)
        stead__sim_check(s, o->fired, "alarm n%" PRIu64 " of alm/a%d never fired", o->uid,
                         o->obj);
      continue;
    }
    if (o->kind != K_INC && o->kind != K_RELAY)
      continue;
    char id[16], key[32];
    snprintf(id, sizeof id, "c%d", o->obj);
    snprintf(key, sizeof key, "op/%" PRIu64, o->uid);
    int there = has_key(b, "ctr", id, key, NULL);
    present[o->obj] += (uint64_t)there;
    stead__sim_check(s, o->st != OP_ACKED || there,
                     "acknowledged increment %" PRIu64 " of ctr/%s lost", o->uid, id);
    stead__sim_check(s, o->st != OP_FAILED || !there,
                     "failed increment %" PRIu64 " of ctr/%s was applied", o->uid, id);
    stead__sim_check(s, o->st != OP_PENDING, "increment %" PRIu64 " never answered",
                     o->uid);
  }
  for (int c = 0; c < NCTR; c++) {
    char id[16];
    snprintf(id, sizeof id, "c%d", c);
    uint64_t v = 0;
    has_key(b, "ctr", id, "v", &v);
    stead__sim_check(s, v == present[c],
                     "ctr/%s: v is %" PRIu64 " but %" PRIu64 " increments are stored", id,
                     v, present[c]);
    stead__sim_trace(s, "final ctr/%s v=%" PRIu64, id, v);
  }
}

int stead__workload_new(stead__sim *s, stead__workload **out) {
  stead__workload *w = calloc(1, sizeof *w);
  if (!w)
    return stead__err(STEAD_ENOMEM, "out of memory");
  w->s = s;
  *out = w;
  return 0;
}

void stead__workload_free(stead__workload *w) {
  if (!w)
    return;
  for (size_t i = 0; i < w->nops; i++)
    free(w->ops[i]);
  free(w->ops);
  free(w);
}

int stead__workload_register(stead__workload *w, stead_rt *rt) {
  static const stead_class *const classes[] = {&ctr_class, &relay_class, &snd_class,
                                               &rcv_class, &alm_class,   &pub_class,
                                               &sub_class};
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
    int rc = stead_register(rt, classes[i]);
    if (rc)
      return rc;
  }
  return 0;
}
