/*
 * sched.c -- the alarm scheduler: an in-memory window of due-soon alarms
 * over the backend's time index, one thread, bounded memory.
 *
 * What it owns: the entries of the window (one per (cls, id, name), found
 * through two hash tables: objects by (cls, id), entries by (object,
 * name)), a binary min-heap of the waiting ones ordered by (due, at, cls,
 * id, name), and the pager's cursor.
 *
 * The cursor is a position in the backend's (at, cls, id, name) order:
 * NONE (nothing loaded), KEY (everything up to and including that alarm)
 * or THROUGH (every alarm with at <= cur_at). Invariant, for owned shards:
 * every stored alarm at or before the cursor is in memory -- waiting in the
 * heap or in flight -- and an alarm after it is in memory only while in
 * flight. So a notification either updates memory (at or before the
 * cursor) or drops the entry and leaves the alarm to the pager (after it).
 *
 * Paging runs without the lock (the scan is I/O). Notifications that
 * arrive while a scan runs are applied at once AND logged; after the page
 * is merged under the lock the log is replayed against the new cursor.
 * Notifications come in commit order after the commit, and the scan's
 * snapshot is taken after `scanning` was set, so replaying leaves memory
 * equal to the newest committed state (a notification seen before the scan
 * began is already in the snapshot). One entry per name means a paged and a
 * notified copy of an alarm can never both be in memory.
 *
 * In flight: a fired entry leaves the heap and keeps its fields unchanged
 * (the fire callback reads them unlocked) until done; changes meanwhile are
 * recorded as its `next` state (set or deleted) and applied at done. So an
 * alarm is never fired twice at once.
 *
 * Memory bound: a page is loaded only while the heap holds fewer than
 * page_size/2 entries, and asks for at most page_size minus that, so paged
 * entries never exceed page_size, plus max_inflight in flight. Only
 * notifications of alarms due within the loaded window add more.
 *
 * Threads: the scheduler thread (unless manual); any thread calling
 * notify_*, done, own/disown, poke, run_due. One mutex guards everything;
 * callbacks (fire, shard_of, the backend scan) run without it.
 */
#include "alarm/sched.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CUR_NONE, CUR_KEY, CUR_THROUGH };
enum { NEXT_NONE, NEXT_SET, NEXT_DEL };
enum { LOG_SET, LOG_DEL, LOG_CLEAR };

#define FIRE_BATCH 64

typedef struct obj obj;

typedef struct entry {
  struct entry *hnext;         /* entries table chain */
  struct entry *oprev, *onext; /* the object's entries */
  obj *o;
  uint64_t hash;
  int64_t at, due;
  uint32_t attempt;
  void *meta;
  size_t meta_len;
  size_t hidx; /* 1-based heap slot; 0 when not in the heap */
  uint8_t inflight, firing, done_early, next;
  int64_t next_at;
  uint32_t next_attempt;
  void *next_meta;
  size_t next_len;
  char name[];
} entry;

struct obj {
  obj *hnext;
  uint64_t hash;
  uint32_t shard;
  entry *head;
  size_t n;
  int64_t refused_until; /* hold back its alarms after a refused fire */
  char *id;
  char cls[];
};

typedef struct row { /* a paged alarm, or a logged notification */
  struct row *next;
  int kind;
  uint32_t shard;
  int64_t at;
  uint32_t attempt;
  size_t meta_len;
  const char *cls, *id, *name;
  void *meta;
  char buf[];
} row;

typedef struct table {
  void **b;
  size_t nb, n;
} table;

struct stead__alarms {
  stead__alarms_opts o;
  stead__backend *be;
  pthread_mutex_t mu;
  pthread_cond_t wake, scan_done;
  pthread_t thread;
  int has_thread, stopping, signalled;

  table objs, ents;
  entry **heap;
  size_t heap_n, heap_cap, inflight;

  int cur_kind;
  int64_t cur_at;
  char *cur_cls, *cur_id, *cur_name;
  uint64_t gen; /* bumped when the cursor is reset; stale pages are dropped */
  int scanning;
  row *log, **log_tail;
  int64_t page_retry_at; /* after a failed scan */

  uint64_t *owned;
  size_t owned_words;

  stead__counter fired, refused, retried, dead, pages, rows, page_errors, replayed;
  uint64_t peak;
  stead__hist lateness;
};

/* ---- small helpers ---- */

static int64_t now_ms(stead__alarms *s) {
  return s->o.now_ms(s->o.clock_udata);
}

static int64_t wall_clock(void *u) {
  (void)u;
  return stead__wall_ms();
}

static uint64_t obj_hash(const char *cls, const char *id) {
  return stead__hash64(id, strlen(id), stead__hash64(cls, strlen(cls), 0x5eadu));
}

static uint64_t ent_hash(const obj *o, const char *name) {
  return stead__hash64(name, strlen(name), o->hash ^ (uint64_t)(uintptr_t)o);
}

static int owned(const stead__alarms *s, uint32_t shard) {
  size_t w = shard / 64;
  return w < s->owned_words && (s->owned[w] >> (shard % 64) & 1);
}

static uint32_t shard_of(stead__alarms *s, const char *cls, const char *id) {
  return s->o.shard_of ? s->o.shard_of(s->o.shard_udata, cls, id) : 0;
}

static void note_peak(stead__alarms *s) {
  uint64_t p = s->heap_n + s->inflight;
  if (p > s->peak)
    s->peak = p;
}

/* ---- hash tables (chained; the chain pointer is the first field) ---- */

static int table_grow(table *t, uint64_t (*hash_of)(void *)) {
  if (t->n < t->nb * 3 / 4 && t->nb)
    return 0;
  size_t nb = t->nb ? t->nb * 2 : 64;
  void **b = calloc(nb, sizeof *b);
  if (!b)
    return t->nb ? 0 : STEAD_ENOMEM; /* a full table still works, slower */
  for (size_t i = 0; i < t->nb; i++) {
    void *p = t->b[i];
    while (p) {
      void *nx = *(void **)p;
      size_t j = hash_of(p) & (nb - 1);
      *(void **)p = b[j];
      b[j] = p;
      p = nx;
    }
  }
  free(t->b);
  t->b = b;
  t->nb = nb;
  return 0;
}

static uint64_t obj_hash_of(void *p) {
  return ((obj *)p)->hash;
}
static uint64_t ent_hash_of(void *p) {
  return ((entry *)p)->hash;
}

static void table_unlink(table *t, void *p, uint64_t h) {
  void **pp = &t->b[h & (t->nb - 1)];
  while (*pp != p)
    pp = (void **)*pp;
  *pp = *(void **)p;
  t->n--;
}

static obj *obj_find(stead__alarms *s, const char *cls, const char *id, uint64_t h) {
  if (!s->objs.nb)
    return NULL;
  for (obj *o = s->objs.b[h & (s->objs.nb - 1)]; o; o = o->hnext)
    if (o->hash == h && !strcmp(o->cls, cls) && !strcmp(o->id, id))
      return o;
  return NULL;
}

static obj *obj_get(stead__alarms *s, const char *cls, const char *id, uint32_t shard) {
  uint64_t h = obj_hash(cls, id);
  obj *o = obj_find(s, cls, id, h);
  if (o)
    return o;
  if (table_grow(&s->objs, obj_hash_of))
    return NULL;
  size_t cl = strlen(cls) + 1, il = strlen(id) + 1;
  o = calloc(1, sizeof *o + cl + il);
  if (!o)
    return NULL;
  memcpy(o->cls, cls, cl);
  o->id = o->cls + cl;
  memcpy(o->id, id, il);
  o->hash = h;
  o->shard = shard;
  size_t j = h & (s->objs.nb - 1);
  o->hnext = s->objs.b[j];
  s->objs.b[j] = o;
  s->objs.n++;
  return o;
}

static entry *ent_find(stead__alarms *s, obj *o, const char *name) {
  if (!o || !s->ents.nb)
    return NULL;
  uint64_t h = ent_hash(o, name);
  for (entry *e = s->ents.b[h & (s->ents.nb - 1)]; e; e = e->hnext)
    if (e->hash == h && e->o == o && !strcmp(e->name, name))
      return e;
  return NULL;
}

/* ---- ordering ---- */

static int key_cmp(int64_t a_at, const char *a_cls, const char *a_id, const char *a_name,
                   int64_t b_at, const char *b_cls, const char *b_id,
                   const char *b_name) {
  if (a_at != b_at)
    return a_at < b_at ? -1 : 1;
  int c = strcmp(a_cls, b_cls);
  if (!c)
    c = strcmp(a_id, b_id);
  if (!c)
    c = strcmp(a_name, b_name);
  return c;
}

/* 1 if the alarm (at, cls, id, name) is at or before the cursor. */
static int loaded(const stead__alarms *s, int64_t at, const char *cls, const char *id,
                  const char *name) {
  switch (s->cur_kind) {
  case CUR_THROUGH:
    return at <= s->cur_at;
  case CUR_KEY:
    return key_cmp(at, cls, id, name, s->cur_at, s->cur_cls, s->cur_id, s->cur_name) <= 0;
  default:
    return 0;
  }
}

static int before(const entry *a, const entry *b) {
  if (a->due != b->due)
    return a->due < b->due;
  return key_cmp(a->at, a->o->cls, a->o->id, a->name, b->at, b->o->cls, b->o->id,
                 b->name) < 0;
}

/* ---- heap ---- */

static void heap_place(stead__alarms *s, size_t i, entry *e) {
  s->heap[i] = e;
  e->hidx = i + 1;
}

static void sift_up(stead__alarms *s, size_t i) {
  entry *e = s->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(e, s->heap[p]))
      break;
    heap_place(s, i, s->heap[p]);
    i = p;
  }
  heap_place(s, i, e);
}

static void sift_down(stead__alarms *s, size_t i) {
  entry *e = s->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, m = l;
    if (l >= s->heap_n)
      break;
    if (l + 1 < s->heap_n && before(s->heap[l + 1], s->heap[l]))
      m = l + 1;
    if (!before(s->heap[m], e))
      break;
    heap_place(s, i, s->heap[m]);
    i = m;
  }
  heap_place(s, i, e);
}

static int heap_push(stead__alarms *s, entry *e) {
  if (s->heap_n == s->heap_cap) {
    size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
    entry **h = realloc(s->heap, cap * sizeof *h);
    if (!h)
      return STEAD_ENOMEM;
    s->heap = h;
    s->heap_cap = cap;
  }
  s->heap[s->heap_n++] = e;
  sift_up(s, s->heap_n - 1);
  note_peak(s);
  return 0;
}

static void heap_remove(stead__alarms *s, entry *e) {
  size_t i = e->hidx - 1;
  e->hidx = 0;
  entry *last = s->heap[--s->heap_n];
  if (i == s->heap_n)
    return;
  heap_place(s, i, last);
  if (i > 0 && before(last, s->heap[(i - 1) / 2]))
    sift_up(s, i);
  else
    sift_down(s, i);
}

static void heap_fix(stead__alarms *s, entry *e) {
  size_t i = e->hidx - 1;
  if (i > 0 && before(e, s->heap[(i - 1) / 2]))
    sift_up(s, i);
  else
    sift_down(s, i);
}

/* ---- entries ---- */

static void entry_free(stead__alarms *s, entry *e) {
  obj *o = e->o;
  if (e->hidx)
    heap_remove(s, e);
  if (e->inflight)
    s->inflight--;
  table_unlink(&s->ents, e, e->hash);
  if (e->oprev)
    e->oprev->onext = e->onext;
  else
    o->head = e->onext;
  if (e->onext)
    e->onext->oprev = e->oprev;
  free(e->meta);
  free(e->next_meta);
  free(e);
  if (--o->n == 0) {
    table_unlink(&s->objs, o, o->hash);
    free(o);
  }
}

static entry *entry_new(stead__alarms *s, obj *o, const char *name) {
  if (table_grow(&s->ents, ent_hash_of))
    return NULL;
  size_t nl = strlen(name) + 1;
  entry *e = calloc(1, sizeof *e + nl);
  if (!e)
    return NULL;
  memcpy(e->name, name, nl);
  e->o = o;
  e->hash = ent_hash(o, name);
  size_t j = e->hash & (s->ents.nb - 1);
  e->hnext = s->ents.b[j];
  s->ents.b[j] = e;
  s->ents.n++;
  e->onext = o->head;
  if (o->head)
    o->head->oprev = e;
  o->head = e;
  o->n++;
  return e;
}

/* Copies meta into a fresh allocation (*out NULL when empty). */
static int meta_dup(const void *meta, size_t len, void **out) {
  *out = NULL;
  if (!len)
    return 0;
  *out = stead__memdup(meta, len);
  return *out ? 0 : STEAD_ENOMEM;
}

/* Drops every waiting entry and rewinds the cursor, so the pager reloads
 * the window from the backend. In-flight entries stay (their `next` state
 * is still tracked by notifications). Used by own() and on out of memory. */
static void reset_window(stead__alarms *s) {
  while (s->heap_n) {
    entry *e = s->heap[s->heap_n - 1];
    entry_free(s, e);
  }
  s->cur_kind = CUR_NONE;
  free(s->cur_cls);
  s->cur_cls = s->cur_id = s->cur_name = NULL;
  s->gen++;
}

/* Applies "alarm is now (at, attempt, meta)" to memory. from_page: the
 * state comes from a scan, and an in-flight entry with the same at and
 * attempt is just the stored copy of what is being fired. */
static int apply_set(stead__alarms *s, uint32_t shard, const char *cls, const char *id,
                     const char *name, int64_t at, uint32_t attempt, const void *meta,
                     size_t meta_len, int from_page) {
  uint64_t oh = obj_hash(cls, id);
  obj *o = obj_find(s, cls, id, oh);
  entry *e = ent_find(s, o, name);
  if (e && e->inflight) {
    if (from_page && e->next == NEXT_NONE && e->at == at && e->attempt == attempt)
      return 0;
    void *m;
    if (meta_dup(meta, meta_len, &m))
      return STEAD_ENOMEM;
    free(e->next_meta);
    e->next = NEXT_SET;
    e->next_at = at;
    e->next_attempt = attempt;
    e->next_meta = m;
    e->next_len = meta_len;
    return 0;
  }
  if (!owned(s, shard) || !loaded(s, at, cls, id, name)) {
    if (e)
      entry_free(s, e); /* moved past the cursor: the pager brings it back */
    return 0;
  }
  void *m;
  if (meta_dup(meta, meta_len, &m))
    return STEAD_ENOMEM;
  if (e) {
    free(e->meta);
    e->meta = m;
    e->meta_len = meta_len;
    e->at = e->due = at;
    e->attempt = attempt;
    heap_fix(s, e);
    return 0;
  }
  if (!(o = obj_get(s, cls, id, shard)) || !(e = entry_new(s, o, name))) {
    free(m);
    if (o && !o->n) {
      table_unlink(&s->objs, o, o->hash);
      free(o);
    }
    return STEAD_ENOMEM;
  }
  e->meta = m;
  e->meta_len = meta_len;
  e->at = e->due = at;
  e->attempt = attempt;
  if (heap_push(s, e)) {
    entry_free(s, e);
    return STEAD_ENOMEM;
  }
  return 0;
}

static void apply_del(stead__alarms *s, entry *e) {
  if (e->inflight) {
    free(e->next_meta);
    e->next_meta = NULL;
    e->next = NEXT_DEL;
  } else {
    entry_free(s, e);
  }
}

static void apply_clear(stead__alarms *s, obj *o) {
  /* Every entry of o either stays (in flight, marked) or frees o with the
   * last one: walk carefully. */
  entry *e = o->head;
  while (e) {
    entry *nx = e->onext;
    int last = o->n == 1 && !e->inflight;
    apply_del(s, e);
    if (last)
      return;
    e = nx;
  }
}

/* ---- the notification log (only while a scan runs) ---- */

static row *row_new(int kind, uint32_t shard, const char *cls, const char *id,
                    const char *name, int64_t at, uint32_t attempt, const void *meta,
                    size_t meta_len) {
  size_t cl = strlen(cls) + 1, il = strlen(id) + 1, nl = name ? strlen(name) + 1 : 0;
  row *r = malloc(sizeof *r + cl + il + nl + meta_len);
  if (!r)
    return NULL;
  r->next = NULL;
  r->kind = kind;
  r->shard = shard;
  r->at = at;
  r->attempt = attempt;
  char *p = r->buf;
  memcpy(p, cls, cl);
  r->cls = p;
  memcpy(p += cl, id, il);
  r->id = p;
  r->name = NULL;
  if (name) {
    memcpy(p += il, name, nl);
    r->name = p;
  }
  r->meta = p + (name ? nl : il);
  r->meta_len = meta_len;
  if (meta_len)
    memcpy(r->meta, meta, meta_len);
  return r;
}

static void rows_free(row *r) {
  while (r) {
    row *nx = r->next;
    free(r);
    r = nx;
  }
}

static int apply_row(stead__alarms *s, const row *r, int from_page) {
  if (r->kind == LOG_SET)
    return apply_set(s, r->shard, r->cls, r->id, r->name, r->at, r->attempt, r->meta,
                     r->meta_len, from_page);
  obj *o = obj_find(s, r->cls, r->id, obj_hash(r->cls, r->id));
  if (!o)
    return 0;
  if (r->kind == LOG_CLEAR) {
    apply_clear(s, o);
  } else {
    entry *e = ent_find(s, o, r->name);
    if (e)
      apply_del(s, e);
  }
  return 0;
}

/* Logs a notification for replay after the running scan. On out of memory
 * the page in progress is abandoned instead (gen bump), which is safe: the
 * notification was applied against the old cursor already. */
static void log_note(stead__alarms *s, row *r) {
  if (!s->scanning) {
    free(r);
    return;
  }
  if (!r) {
    s->gen++;
    return;
  }
  *s->log_tail = r;
  s->log_tail = &r->next;
}

/* ---- paging ---- */

/* 1 if a page should be loaded now; sets *at_ms to when one will be wanted
 * (INT64_MAX: not before something else changes). */
static int page_wanted(stead__alarms *s, int64_t now, int64_t *at_ms) {
  *at_ms = INT64_MAX;
  if (s->scanning || s->heap_n >= s->o.page_size / 2 + (s->o.page_size < 2))
    return 0;
  if (now < s->page_retry_at) {
    *at_ms = s->page_retry_at;
    return 0;
  }
  int64_t until = now > INT64_MAX - s->o.window_ms ? INT64_MAX : now + s->o.window_ms;
  switch (s->cur_kind) {
  case CUR_NONE:
    return 1;
  case CUR_KEY:
    if (s->cur_at <= until)
      return 1;
    /* Only after the clock went back. */
    *at_ms = s->cur_at - s->o.window_ms;
    return 0;
  default:
    if (s->cur_at == INT64_MAX)
      return 0;
    /* Refill when half the window is used up: one scan per half window. */
    if (s->cur_at < until - s->o.window_ms / 2)
      return 1;
    *at_ms = s->cur_at - s->o.window_ms / 2;
    return 0;
  }
}

typedef struct collect {
  stead__alarms *s;
  row *head, **tail;
  size_t n;
  int rc;
} collect;

static int collect_cb(void *u, const stead__alarm *a) {
  collect *c = u;
  uint32_t shard = shard_of(c->s, a->cls, a->id);
  row *r = row_new(LOG_SET, shard, a->cls, a->id, a->name, a->at_ms, a->attempt, a->meta,
                   a->meta_len);
  if (!r)
    return c->rc = STEAD_ENOMEM;
  *c->tail = r;
  c->tail = &r->next;
  c->n++;
  return 0;
}

static int set_cursor_key(stead__alarms *s, const row *r) {
  size_t cl = strlen(r->cls) + 1, il = strlen(r->id) + 1, nl = strlen(r->name) + 1;
  char *p = malloc(cl + il + nl);
  if (!p)
    return STEAD_ENOMEM;
  free(s->cur_cls);
  memcpy(p, r->cls, cl);
  memcpy(p + cl, r->id, il);
  memcpy(p + cl + il, r->name, nl);
  s->cur_cls = p;
  s->cur_id = p + cl;
  s->cur_name = p + cl + il;
  s->cur_kind = CUR_KEY;
  s->cur_at = r->at;
  return 0;
}

/* Loads one page. Called and returns with the lock held; drops it during
 * the scan. */
static int load_page(stead__alarms *s, int64_t now) {
  int64_t until = now > INT64_MAX - s->o.window_ms ? INT64_MAX : now + s->o.window_ms;
  size_t limit = s->o.page_size - s->heap_n;
  stead__alarm_cursor after, *ap = NULL;
  char *ccopy = NULL;
  if (s->cur_kind == CUR_KEY) {
    size_t cl = strlen(s->cur_cls) + 1, il = strlen(s->cur_id) + 1,
           nl = strlen(s->cur_name) + 1;
    if (!(ccopy = malloc(cl + il + nl)))
      return STEAD_ENOMEM;
    memcpy(ccopy, s->cur_cls, cl + il + nl); /* one block, see set_cursor_key */
    after = (stead__alarm_cursor){s->cur_at, ccopy, ccopy + cl, ccopy + cl + il};
    ap = &after;
  } else if (s->cur_kind == CUR_THROUGH) {
    /* Every alarm with at > cur_at: names are never empty, so each sorts
     * after (cur_at + 1, "", "", ""). */
    after = (stead__alarm_cursor){s->cur_at + 1, "", "", ""};
    ap = &after;
  }
  uint64_t gen = s->gen;
  s->scanning = 1;
  s->log = NULL;
  s->log_tail = &s->log;
  pthread_mutex_unlock(&s->mu);

  collect c = {.s = s, .tail = &c.head};
  int rc = s->be->vt->alarms_scan(s->be, ap, until, limit, collect_cb, &c);
  if (!rc)
    rc = c.rc;
  free(ccopy);

  pthread_mutex_lock(&s->mu);
  s->scanning = 0;
  row *log = s->log;
  s->log = NULL;
  stead__counter_add(&s->pages, 1);
  if (rc) {
    stead__counter_add(&s->page_errors, 1);
    s->page_retry_at = now + 1000;
  } else if (gen == s->gen) {
    stead__counter_add(&s->rows, c.n);
    if (c.n == limit && c.n) {
      row *last = c.head;
      while (last->next)
        last = last->next;
      rc = set_cursor_key(s, last);
    } else if (s->cur_kind != CUR_THROUGH || s->cur_at < until) {
      s->cur_kind = CUR_THROUGH;
      s->cur_at = until;
    }
    for (row *r = c.head; r && !rc; r = r->next)
      rc = owned(s, r->shard) ? apply_row(s, r, 1) : 0;
    for (row *r = log; r && !rc; r = r->next) {
      rc = apply_row(s, r, 0);
      stead__counter_add(&s->replayed, 1);
    }
    if (rc)
      reset_window(s);
  }
  rows_free(c.head);
  rows_free(log);
  pthread_cond_broadcast(&s->scan_done);
  return rc;
}

/* Loads pages until none is wanted. Lock held. */
static int page_all(stead__alarms *s, int64_t now) {
  int64_t when;
  int rc = 0;
  while (!rc && !s->stopping && page_wanted(s, now, &when))
    rc = load_page(s, now);
  return rc;
}

/* ---- firing ---- */

/* An in-flight entry's turn is over (or its fire was refused): follow what
 * was notified meanwhile. `delay`: when nothing was, fire again then. */
static void finish(stead__alarms *s, entry *e, int64_t now, int64_t delay) {
  e->inflight = 0;
  e->done_early = 0;
  s->inflight--;
  int nx = e->next;
  e->next = NEXT_NONE;
  if (nx == NEXT_DEL || !owned(s, e->o->shard)) {
    entry_free(s, e);
    return;
  }
  if (nx == NEXT_SET) {
    if (e->next_attempt > e->attempt)
      stead__counter_add(&s->retried, 1);
    free(e->meta);
    e->meta = e->next_meta;
    e->meta_len = e->next_len;
    e->next_meta = NULL;
    e->at = e->due = e->next_at;
    e->attempt = e->next_attempt;
    if (!loaded(s, e->at, e->o->cls, e->o->id, e->name)) {
      entry_free(s, e);
      return;
    }
  } else {
    e->due = now + delay;
  }
  if (heap_push(s, e)) {
    /* Cannot keep it: forget the window, the pager reloads it. */
    entry_free(s, e);
    reset_window(s);
  }
}

/* Fires up to FIRE_BATCH due entries. Lock held; dropped during the
 * callbacks. Returns how many were accepted, or -1 if none was due. */
static int fire_batch(stead__alarms *s, int64_t now) {
  entry *batch[FIRE_BATCH];
  int n = 0;
  while (n < FIRE_BATCH && s->heap_n && s->inflight < s->o.max_inflight &&
         s->heap[0]->due <= now) {
    entry *e = s->heap[0];
    if (e->o->refused_until > now) {
      e->due = e->o->refused_until;
      heap_fix(s, e);
      continue;
    }
    heap_remove(s, e);
    e->inflight = e->firing = 1;
    s->inflight++;
    batch[n++] = e;
  }
  if (!n)
    return -1;
  pthread_mutex_unlock(&s->mu);
  int res[FIRE_BATCH], accepted = 0;
  for (int i = 0; i < n; i++) {
    entry *e = batch[i];
    res[i] = 1;
    for (int j = 0; j < i; j++)
      if (batch[j]->o == e->o && res[j]) /* keep the object's order */
        goto next;
    res[i] = s->o.fire(s->o.fire_udata, e->o->cls, e->o->id, e->name, e->at, e->attempt,
                       e->meta, e->meta_len);
    if (!res[i]) {
      accepted++;
      /* In double: an alarm may be due at any int64 (even INT64_MIN, from
       * the API or a data file), where now - at overflows. */
      double late = (double)now - (double)e->at;
      stead__hist_observe(&s->lateness, late > 0 ? late / 1e3 : 0);
    }
  next:;
  }
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < n; i++) {
    entry *e = batch[i];
    e->firing = 0;
    if (res[i]) {
      e->o->refused_until = now + s->o.refire_delay_ms;
      finish(s, e, now, s->o.refire_delay_ms);
    } else if (e->done_early) {
      finish(s, e, now, s->o.refire_delay_ms);
    }
  }
  stead__counter_add(&s->fired, (uint64_t)accepted);
  stead__counter_add(&s->refused, (uint64_t)(n - accepted));
  return accepted;
}

/* ---- the thread ---- */

static void wait_until(stead__alarms *s, int64_t now, int64_t when) {
  int64_t ms = when - now;
  if (ms > s->o.max_sleep_ms)
    ms = s->o.max_sleep_ms;
  if (ms <= 0)
    return;
  int64_t dl = stead__mono_ns() + ms * 1000000;
  struct timespec ts = {(time_t)(dl / 1000000000), (long)(dl % 1000000000)};
  while (!s->signalled && !s->stopping)
    if (pthread_cond_timedwait(&s->wake, &s->mu, &ts) == ETIMEDOUT)
      break;
}

static void *run(void *arg) {
  stead__alarms *s = arg;
  pthread_mutex_lock(&s->mu);
  while (!s->stopping) {
    s->signalled = 0;
    int64_t now = now_ms(s), when;
    if (page_wanted(s, now, &when)) {
      load_page(s, now); /* errors are counted; retried at page_retry_at */
      continue;
    }
    if (fire_batch(s, now) >= 0)
      continue;
    if (s->heap_n && s->inflight < s->o.max_inflight && s->heap[0]->due < when)
      when = s->heap[0]->due;
    wait_until(s, now, when);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static void wake(stead__alarms *s) {
  s->signalled = 1;
  pthread_cond_signal(&s->wake);
}

/* ---- API ---- */

static int check_opts(stead__alarms_opts *o) {
  if (!o->now_ms)
    o->now_ms = wall_clock;
  if (!o->window_ms)
    o->window_ms = 60000;
  if (!o->page_size)
    o->page_size = 1000;
  if (!o->max_inflight)
    o->max_inflight = 1000;
  if (!o->retry_base_ms)
    o->retry_base_ms = 1000;
  if (o->retry_factor == 0)
    o->retry_factor = 2.0;
  if (!o->max_attempts)
    o->max_attempts = 6;
  if (!o->refire_delay_ms)
    o->refire_delay_ms = 100;
  if (!o->max_sleep_ms)
    o->max_sleep_ms = 1000;
  const int64_t year = 366LL * 24 * 3600 * 1000;
  if (o->window_ms < 0 || o->window_ms > year)
    return stead__err(STEAD_EINVAL, "alarm window_ms %lld out of range (1..1 year)",
                      (long long)o->window_ms);
  if (o->page_size > 1000000 || o->max_inflight > 10000000)
    return stead__err(STEAD_EINVAL, "alarm page_size or max_inflight too large");
  if (o->retry_base_ms < 0 || o->retry_cap_ms < 0 || !(o->retry_factor >= 1.0) ||
      o->retry_factor > 1000)
    return stead__err(STEAD_EINVAL,
                      "alarm retry policy: base and cap must be >= 0, factor in 1..1000");
  if (o->refire_delay_ms < 0 || o->max_sleep_ms < 0)
    return stead__err(STEAD_EINVAL, "alarm refire_delay_ms/max_sleep_ms must be >= 0");
  return 0;
}

static int grow_owned(stead__alarms *s, uint32_t shard) {
  size_t w = shard / 64 + 1;
  if (w <= s->owned_words)
    return 0;
  uint64_t *b = realloc(s->owned, w * sizeof *b);
  if (!b)
    return stead__err(STEAD_ENOMEM, "out of memory for the shard set");
  memset(b + s->owned_words, 0, (w - s->owned_words) * sizeof *b);
  s->owned = b;
  s->owned_words = w;
  return 0;
}

int stead__alarms_start(stead__backend *b, const stead__alarms_opts *opts,
                        stead__alarms **out) {
  if (!out)
    return stead__err(STEAD_EINVAL, "out is NULL");
  *out = NULL;
  if (!b || !opts || !opts->fire)
    return stead__err(STEAD_EINVAL,
                      "alarm scheduler needs a backend and a fire callback");
  stead__alarms *s = calloc(1, sizeof *s);
  if (!s)
    return stead__err(STEAD_ENOMEM, "out of memory");
  s->o = *opts;
  int rc = check_opts(&s->o);
  if (rc) {
    free(s);
    return rc;
  }
  s->be = b;
  s->page_retry_at = INT64_MIN;
  stead__hist_init(&s->lateness, stead__latency_bounds, stead__latency_nbounds);
  if (!s->o.shard_of && (rc = grow_owned(s, 0)) == 0)
    s->owned[0] = 1;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->wake, &ca);
  pthread_cond_init(&s->scan_done, NULL);
  pthread_condattr_destroy(&ca);
  if (!rc && !s->o.manual) {
    if (pthread_create(&s->thread, NULL, run, s))
      rc = stead__err(STEAD_EIO, "cannot start the alarm scheduler thread");
    else
      s->has_thread = 1;
  }
  if (rc) {
    stead__alarms_stop(s);
    return rc;
  }
  *out = s;
  return 0;
}

void stead__alarms_stop(stead__alarms *s) {
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  wake(s);
  pthread_mutex_unlock(&s->mu);
  if (s->has_thread)
    pthread_join(s->thread, NULL);
  for (size_t i = 0; i < s->ents.nb; i++)
    for (entry *e = s->ents.b[i], *nx; e; e = nx) {
      nx = e->hnext;
      free(e->meta);
      free(e->next_meta);
      free(e);
    }
  for (size_t i = 0; i < s->objs.nb; i++)
    for (obj *o = s->objs.b[i], *nx; o; o = nx) {
      nx = o->hnext;
      free(o);
    }
  free(s->ents.b);
  free(s->objs.b);
  free(s->heap);
  free(s->cur_cls);
  free(s->owned);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->wake);
  pthread_cond_destroy(&s->scan_done);
  free(s);
}

static int check_obj(const char *cls, const char *id) {
  if (!cls || !*cls || !id || !*id)
    return stead__err(STEAD_EINVAL, "alarm class and id must be non-empty");
  return 0;
}

static int check_name(const char *name) {
  if (!name || !*name)
    return stead__err(STEAD_EINVAL, "alarm name must be non-empty");
  if (strlen(name) > STEAD__MAX_NAME)
    return stead__err(STEAD_ETOOBIG, "alarm name longer than %u bytes",
                      (unsigned)STEAD__MAX_NAME);
  return 0;
}

/* Runs one notification: applies it and, during a scan, logs it for
 * replay after the page. */
static int notify(stead__alarms *s, const row *r) {
  pthread_mutex_lock(&s->mu);
  entry *top = s->heap_n ? s->heap[0] : NULL;
  int64_t top_due = top ? top->due : 0;
  int rc = apply_row(s, r, 0);
  if (rc)
    reset_window(s); /* memory is stale: reload it, nothing is lost */
  if (s->scanning)
    log_note(s, row_new(r->kind, r->shard, r->cls, r->id, r->name, r->at, r->attempt,
                        r->meta, r->meta_len));
  if (rc || (s->heap_n && (s->heap[0] != top || s->heap[0]->due != top_due)))
    wake(s);
  pthread_mutex_unlock(&s->mu);
  return rc ? stead__err(rc, "out of memory in the alarm scheduler") : 0;
}

int stead__alarms_notify_set(stead__alarms *s, const char *cls, const char *id,
                             const char *name, int64_t at_ms, uint32_t attempt,
                             const void *meta, size_t meta_len) {
  int rc;
  if (!s)
    return stead__err(STEAD_EINVAL, "scheduler is NULL");
  if ((rc = check_obj(cls, id)) || (rc = check_name(name)))
    return rc;
  if (meta_len > STEAD__MAX_ALARM_META)
    return stead__err(STEAD_ETOOBIG, "alarm meta of %zu bytes over the %u-byte limit",
                      meta_len, (unsigned)STEAD__MAX_ALARM_META);
  if (meta_len && !meta)
    return stead__err(STEAD_EINVAL, "alarm meta is NULL");
  row r = {.kind = LOG_SET,
           .shard = shard_of(s, cls, id),
           .cls = cls,
           .id = id,
           .name = name,
           .at = at_ms,
           .attempt = attempt,
           .meta = (void *)meta,
           .meta_len = meta_len};
  return notify(s, &r);
}

int stead__alarms_notify_del(stead__alarms *s, const char *cls, const char *id,
                             const char *name) {
  int rc;
  if (!s)
    return stead__err(STEAD_EINVAL, "scheduler is NULL");
  if ((rc = check_obj(cls, id)) || (rc = check_name(name)))
    return rc;
  row r = {.kind = LOG_DEL, .cls = cls, .id = id, .name = name};
  return notify(s, &r);
}

int stead__alarms_notify_clear(stead__alarms *s, const char *cls, const char *id) {
  int rc;
  if (!s)
    return stead__err(STEAD_EINVAL, "scheduler is NULL");
  if ((rc = check_obj(cls, id)))
    return rc;
  row r = {.kind = LOG_CLEAR, .cls = cls, .id = id};
  return notify(s, &r);
}

int stead__alarms_done(stead__alarms *s, const char *cls, const char *id,
                       const char *name, uint32_t attempt) {
  int rc;
  if (!s)
    return stead__err(STEAD_EINVAL, "scheduler is NULL");
  if ((rc = check_obj(cls, id)) || (rc = check_name(name)))
    return rc;
  int64_t now = now_ms(s);
  pthread_mutex_lock(&s->mu);
  entry *e = ent_find(s, obj_find(s, cls, id, obj_hash(cls, id)), name);
  if (!e || !e->inflight || e->attempt != attempt) {
    pthread_mutex_unlock(&s->mu);
    return stead__err(STEAD_ENOTFOUND, "alarm %s of %s/%s (attempt %u) is not in flight",
                      name, cls, id, attempt);
  }
  if (e->firing) {
    e->done_early = 1; /* the firing thread finishes it after fire returns */
  } else {
    finish(s, e, now, s->o.refire_delay_ms);
    wake(s);
  }
  pthread_mutex_unlock(&s->mu);
  return 0;
}

int64_t stead__alarms_backoff(const stead__alarms *s, uint32_t attempt) {
  if (!s || (uint64_t)attempt + 1 >= s->o.max_attempts)
    return -1;
  const double year = 366.0 * 24 * 3600 * 1000;
  double d = (double)s->o.retry_base_ms * pow(s->o.retry_factor, (double)attempt);
  if (s->o.retry_cap_ms && d > (double)s->o.retry_cap_ms)
    d = (double)s->o.retry_cap_ms;
  return d > year ? (int64_t)year : (int64_t)d;
}

void stead__alarms_dead_letter(stead__alarms *s) {
  if (s)
    stead__counter_add(&s->dead, 1);
}

int stead__alarms_own(stead__alarms *s, uint32_t shard) {
  if (!s || shard >= STEAD__ALARM_MAX_SHARDS)
    return stead__err(STEAD_EINVAL, "shard %u out of range", shard);
  pthread_mutex_lock(&s->mu);
  int rc = grow_owned(s, shard);
  if (!rc && !owned(s, shard)) {
    s->owned[shard / 64] |= 1ull << (shard % 64);
    /* The scan is global, so the new shard's alarms come from re-reading
     * the window; dropping the waiting entries keeps paging in order and
     * memory within its bound. */
    reset_window(s);
    wake(s);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int stead__alarms_disown(stead__alarms *s, uint32_t shard) {
  if (!s || shard >= STEAD__ALARM_MAX_SHARDS)
    return stead__err(STEAD_EINVAL, "shard %u out of range", shard);
  pthread_mutex_lock(&s->mu);
  if (owned(s, shard)) {
    s->owned[shard / 64] &= ~(1ull << (shard % 64));
    for (size_t i = 0; i < s->objs.nb; i++)
      for (obj *o = s->objs.b[i], *nx; o; o = nx) {
        nx = o->hnext;
        if (o->shard == shard)
          apply_clear(s, o); /* in-flight ones are dropped at done */
      }
  }
  pthread_mutex_unlock(&s->mu);
  return 0;
}

int stead__alarms_owns(stead__alarms *s, uint32_t shard) {
  if (!s)
    return 0;
  pthread_mutex_lock(&s->mu);
  int r = owned(s, shard);
  pthread_mutex_unlock(&s->mu);
  return r;
}

int stead__alarms_poke(stead__alarms *s) {
  if (!s)
    return stead__err(STEAD_EINVAL, "scheduler is NULL");
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  if (s->has_thread) {
    wake(s);
  } else {
    while (s->scanning)
      pthread_cond_wait(&s->scan_done, &s->mu);
    rc = page_all(s, now_ms(s));
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int stead__alarms_run_due(stead__alarms *s) {
  if (!s)
    return stead__err(STEAD_EINVAL, "scheduler is NULL");
  int total = 0, rc = 0;
  int64_t when;
  pthread_mutex_lock(&s->mu);
  while (!s->stopping) {
    while (s->scanning)
      pthread_cond_wait(&s->scan_done, &s->mu);
    int64_t now = now_ms(s);
    if ((rc = page_all(s, now)))
      break;
    int n = fire_batch(s, now);
    if (n >= 0)
      total += n;
    else if (!page_wanted(s, now, &when))
      break;
  }
  pthread_mutex_unlock(&s->mu);
  return rc ? rc : total;
}

size_t stead__alarms_pending_in_memory(stead__alarms *s) {
  if (!s)
    return 0;
  pthread_mutex_lock(&s->mu);
  size_t n = s->heap_n + s->inflight;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void stead__alarms_stats(stead__alarms *s, stead__alarm_stats *out) {
  memset(out, 0, sizeof *out);
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  out->pending = s->heap_n + s->inflight;
  out->pending_peak = s->peak;
  out->inflight = s->inflight;
  pthread_mutex_unlock(&s->mu);
  out->fired = stead__counter_get(&s->fired);
  out->refused = stead__counter_get(&s->refused);
  out->retried = stead__counter_get(&s->retried);
  out->dead_lettered = stead__counter_get(&s->dead);
  out->pages_loaded = stead__counter_get(&s->pages);
  out->rows_loaded = stead__counter_get(&s->rows);
  out->page_errors = stead__counter_get(&s->page_errors);
  out->replayed = stead__counter_get(&s->replayed);
  out->lateness = &s->lateness;
}

static int metric(stead__buf *b, const char *name, const char *type, const char *help,
                  uint64_t v) {
  return stead__metric_header(b, name, type, help) |
         stead__metric_value(b, name, NULL, (double)v);
}

int stead__alarms_metrics_text(stead__alarms *s, stead__buf *b) {
  if (!s || !b)
    return stead__err(STEAD_EINVAL, "scheduler or buffer is NULL");
  stead__alarm_stats st;
  stead__alarms_stats(s, &st);
  int rc = 0;
  rc |=
      metric(b, "stead_alarms_pending", "gauge",
             "Alarms held in memory (due within the window, or in flight).", st.pending);
  rc |= metric(b, "stead_alarms_inflight", "gauge", "Alarms fired and not yet done.",
               st.inflight);
  rc |= metric(b, "stead_alarms_fired_total", "counter", "Alarms fired (turn accepted).",
               st.fired);
  rc |= metric(b, "stead_alarms_refused_total", "counter",
               "Alarm fires refused by the runtime (fired again shortly).", st.refused);
  rc |= metric(b, "stead_alarms_retried_total", "counter",
               "Alarms re-set for a retry after a failed attempt.", st.retried);
  rc |= metric(b, "stead_alarms_dead_lettered_total", "counter",
               "Alarms dropped after their last attempt failed.", st.dead_lettered);
  rc |= metric(b, "stead_alarms_pages_loaded_total", "counter",
               "Pages of alarms read from storage.", st.pages_loaded);
  rc |= metric(b, "stead_alarms_rows_loaded_total", "counter",
               "Alarms read from storage by the pager.", st.rows_loaded);
  rc |= metric(b, "stead_alarms_page_errors_total", "counter",
               "Failed reads of alarm pages (retried).", st.page_errors);
  rc |= stead__metric_header(b, "stead_alarm_lateness_seconds", "histogram",
                             "Time from an alarm's due time to its fire.");
  rc |= stead__metric_hist(b, "stead_alarm_lateness_seconds", NULL, &s->lateness);
  return rc ? stead__err(STEAD_ENOMEM, "out of memory rendering alarm metrics") : 0;
}
