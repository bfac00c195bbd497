/*
 * conformance.c -- one behaviour suite for every storage backend.
 *
 * Each backend is a factory (open a fresh store; reopen the same store if
 * it is persistent). Adding a backend (e.g. PostgreSQL) means adding one
 * entry to `factories`; every test then runs against it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "helpers.h"
#include "pg_helper.h"

#include <sqlite3.h>

typedef struct factory {
  const char *name;
  int (*open)(const char *dir, stead__backend **out);
  int persistent; /* reopen sees the data */
} factory;

static int open_memory(const char *dir, stead__backend **out) {
  return stead__backend_open("memory", out);
}

static int open_sqlite(const char *dir, stead__backend **out) {
  char spec[600];
  snprintf(spec, sizeof spec, "sqlite:%s/sub/dir/data.db?durability=normal", dir);
  return stead__backend_open(spec, out);
}

/* Every test gets its own tables in the one shared server: the prefix is
 * derived from the test's temp dir, so a reopen finds the same tables. */
static int open_postgres(const char *dir, stead__backend **out) {
  char prefix[32], spec[512];
  snprintf(prefix, sizeof prefix, "t%016llx",
           (unsigned long long)stead__hash64(dir, strlen(dir), 7));
  pgh_spec(spec, sizeof spec, prefix, "&pool=2");
  return stead__backend_open(spec, out);
}

static const factory factories[] = {
    {"memory", open_memory, 0},
    {"sqlite", open_sqlite, 1},
    {"postgres", open_postgres, 1},
};

typedef struct fx {
  const factory *f;
  char dir[256];
  stead__backend *b;
} fx;

static int setup(void **state) {
  fx *x = calloc(1, sizeof *x);
  x->f = *state;
  th_tmpdir(x->dir, sizeof x->dir);
  if (x->f->open(x->dir, &x->b)) {
    fprintf(stderr, "open %s: %s\n", x->f->name, stead_errmsg());
    return -1;
  }
  *state = x;
  return 0;
}

static int teardown(void **state) {
  fx *x = *state;
  stead__backend_close(x->b);
  th_rmrf(x->dir);
  free(x);
  return 0;
}

#define B(state) (((fx *)*(state))->b)

static void test_get_put_delete(void **state) {
  stead__backend *b = B(state);
  void *v;
  size_t n;
  assert_int_equal(b->vt->get(b, "c", "o", 0, "k", 1, &v, &n), STEAD_ENOTFOUND);
  assert_int_equal(th_put(b, "c", "o", 0, "k", "v1"), 0);
  char *got = th_get(b, "c", "o", 0, "k");
  assert_string_equal(got, "v1");
  free(got);
  assert_int_equal(th_put(b, "c", "o", 0, "k", "v2"), 0);
  got = th_get(b, "c", "o", 0, "k");
  assert_string_equal(got, "v2");
  free(got);
  /* Empty value is a value, not a delete. */
  assert_int_equal(th_put(b, "c", "o", 0, "e", ""), 0);
  assert_int_equal(b->vt->get(b, "c", "o", 0, "e", 1, &v, &n), 0);
  assert_int_equal(n, 0);
  free(v);
  stead__wset *ws = stead__wset_new("c", "o");
  assert_int_equal(stead__wset_del(ws, 0, "k", 1), 0);
  assert_int_equal(stead__wset_del(ws, 0, "missing", 7), 0);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  assert_int_equal(b->vt->get(b, "c", "o", 0, "k", 1, &v, &n), STEAD_ENOTFOUND);
}

/* Records the first byte of each key: firsts[0] counts, firsts[1..] bytes. */
static int first_bytes_cb(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  uint8_t *f = u;
  if (f[0] < 3)
    f[1 + f[0]] = ((const uint8_t *)k)[0];
  f[0]++;
  return 0;
}

static void test_binary_keys_values(void **state) {
  stead__backend *b = B(state);
  const uint8_t k1[] = {0x00, 0x01}, k2[] = {0xFF, 0x00, 0xFF}, val[] = {0, 1, 2, 0};
  stead__wset *ws = stead__wset_new("c", "o");
  assert_int_equal(stead__wset_put(ws, 0, k1, 2, val, 4), 0);
  assert_int_equal(stead__wset_put(ws, 0, k2, 3, val, 4), 0);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  void *v;
  size_t n;
  assert_int_equal(b->vt->get(b, "c", "o", 0, k2, 3, &v, &n), 0);
  assert_int_equal(n, 4);
  assert_memory_equal(v, val, 4);
  free(v);
  /* Bytewise order: 0x00.. before 0xFF.. (no collation, no sign). */
  stead__range r;
  stead__list_opts o = {0};
  assert_int_equal(stead__range_make(&o, &r), 0);
  uint8_t firsts[4] = {0};
  int count = 0;
  assert_int_equal(b->vt->list(b, "c", "o", 0, &r, first_bytes_cb, firsts), 0);
  assert_int_equal(firsts[0], 2);
  assert_int_equal(firsts[1], 0x00);
  assert_int_equal(firsts[2], 0xFF);
  (void)count;
  stead__range_free(&r);
}

static void test_batch_many_objects(void **state) {
  stead__backend *b = B(state);
  stead__wset *ws[3] = {stead__wset_new("a", "bc"), stead__wset_new("ab", "c"),
                        stead__wset_new("a", "bc")};
  stead__wset_put(ws[0], 0, "k", 1, "first", 5);
  stead__wset_put(ws[1], 0, "k", 1, "other", 5);
  stead__wset_put(ws[2], 0, "k", 1, "second", 6); /* later set wins */
  assert_int_equal(b->vt->commit(b, ws, 3), 0);
  for (int i = 0; i < 3; i++)
    stead__wset_unref(ws[i]);
  char *g = th_get(b, "a", "bc", 0, "k");
  assert_string_equal(g, "second");
  free(g);
  g = th_get(b, "ab", "c", 0, "k");
  assert_string_equal(g, "other");
  free(g);
  /* An empty batch and an empty set are fine. */
  assert_int_equal(b->vt->commit(b, NULL, 0), 0);
  stead__wset *e = stead__wset_new("x", "y");
  assert_int_equal(b->vt->commit(b, &e, 1), 0);
  stead__wset_unref(e);
}

static void fill(stead__backend *b, const char *const *keys) {
  stead__wset *ws = stead__wset_new("c", "o");
  for (int i = 0; keys[i]; i++)
    stead__wset_put(ws, 0, keys[i], strlen(keys[i]), "v", 1);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
}

/* Lists with options and returns "k1,k2,..." (keys only). */
static char *list_keys(stead__backend *b, const stead__list_opts *o, char *out) {
  stead__range r;
  assert_int_equal(stead__range_make(o, &r), 0);
  th_collect c = {.out = {0}};
  assert_int_equal(b->vt->list(b, "c", "o", 0, &r, th_collect_cb, &c), 0);
  stead__range_free(&r);
  /* strip "=v" */
  char *w = out;
  int skip = 0;
  for (char *p = c.out; *p; p++) {
    if (*p == '=')
      skip = 1;
    else if (*p == ',')
      skip = 0;
    if (!skip)
      *w++ = *p;
  }
  *w = 0;
  return out;
}

#define S(x) x, sizeof(x) - 1

static void test_list_ranges(void **state) {
  stead__backend *b = B(state);
  static const char *const keys[] = {"a", "b", "ba", "bb", "c", "d", NULL};
  fill(b, keys);
  th_put(b, "c", "other", 0, "b0", "x"); /* another object: never listed */
  th_put(b, "c", "o", 1, "b1", "x");     /* another namespace: never listed */
  char out[512];
  stead__list_opts o = {0};
  assert_string_equal(list_keys(b, &o, out), "a,b,ba,bb,c,d");
  o = (stead__list_opts){.reverse = 1};
  assert_string_equal(list_keys(b, &o, out), "d,c,bb,ba,b,a");
  o = (stead__list_opts){.reverse = 1, .limit = 2};
  assert_string_equal(list_keys(b, &o, out), "d,c");
  o = (stead__list_opts){.limit = 2};
  assert_string_equal(list_keys(b, &o, out), "a,b");
  o = (stead__list_opts){.prefix = S("b")};
  assert_string_equal(list_keys(b, &o, out), "b,ba,bb");
  o = (stead__list_opts){.prefix = S("b"), .reverse = 1, .limit = 2};
  assert_string_equal(list_keys(b, &o, out), "bb,ba");
  o = (stead__list_opts){.start = S("b"), .end = S("c")};
  assert_string_equal(list_keys(b, &o, out), "b,ba,bb");
  o = (stead__list_opts){.start_after = S("b"), .end = S("c")};
  assert_string_equal(list_keys(b, &o, out), "ba,bb");
  o = (stead__list_opts){.start_after = S("b"), .reverse = 1, .limit = 1};
  assert_string_equal(list_keys(b, &o, out), "d");
  /* start_after the last key, start > end, start == end: empty. */
  o = (stead__list_opts){.start_after = S("d")};
  assert_string_equal(list_keys(b, &o, out), "");
  o = (stead__list_opts){.start = S("c"), .end = S("b")};
  assert_string_equal(list_keys(b, &o, out), "");
  o = (stead__list_opts){.start = S("c"), .end = S("c")};
  assert_string_equal(list_keys(b, &o, out), "");
  /* No key has the prefix. */
  o = (stead__list_opts){.prefix = S("zz")};
  assert_string_equal(list_keys(b, &o, out), "");
  /* start inside the prefix narrows it; start before it does not widen. */
  o = (stead__list_opts){.prefix = S("b"), .start = S("ba")};
  assert_string_equal(list_keys(b, &o, out), "ba,bb");
  o = (stead__list_opts){.prefix = S("b"), .start = S("a")};
  assert_string_equal(list_keys(b, &o, out), "b,ba,bb");
  o = (stead__list_opts){.prefix = S("b"), .end = S("bb")};
  assert_string_equal(list_keys(b, &o, out), "b,ba");
  /* start and start_after together are refused. */
  stead__range r;
  o = (stead__list_opts){.start = S("a"), .start_after = S("b")};
  assert_int_equal(stead__range_make(&o, &r), STEAD_EINVAL);
}

static void test_list_prefix_all_ff(void **state) {
  stead__backend *b = B(state);
  const uint8_t ff[] = {0xFF, 0xFF}, ff3[] = {0xFF, 0xFF, 0x01}, fe[] = {0xFE, 0xFF};
  stead__wset *ws = stead__wset_new("c", "o");
  stead__wset_put(ws, 0, ff, 2, "1", 1);
  stead__wset_put(ws, 0, ff3, 3, "2", 1);
  stead__wset_put(ws, 0, fe, 2, "3", 1);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  th_put(b, "c", "o", 1, "\xFF\xFF\xFF", "ns1"); /* next namespace: excluded */
  stead__list_opts o = {.prefix = ff, .prefix_len = 2};
  stead__range r;
  assert_int_equal(stead__range_make(&o, &r), 0);
  assert_null(r.hi);
  th_collect c = {.out = {0}};
  assert_int_equal(b->vt->list(b, "c", "o", 0, &r, th_collect_cb, &c), 0);
  assert_string_equal(c.out, "\xFF\xFF=1,\xFF\xFF\x01=2");
  stead__range_free(&r);
  o.reverse = 1;
  o.limit = 1;
  assert_int_equal(stead__range_make(&o, &r), 0);
  c.out[0] = 0;
  assert_int_equal(b->vt->list(b, "c", "o", 0, &r, th_collect_cb, &c), 0);
  assert_string_equal(c.out, "\xFF\xFF\x01=2");
  stead__range_free(&r);
}

static int stop_after_one(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  (*(int *)u)++;
  return 1;
}

static int fail_cb(void *u, const void *k, size_t kl, const void *v, size_t vl) {
  return STEAD_ECANCELED;
}

static void test_list_callback_stop(void **state) {
  stead__backend *b = B(state);
  static const char *const keys[] = {"a", "b", "c", NULL};
  fill(b, keys);
  stead__list_opts o = {0};
  stead__range r;
  stead__range_make(&o, &r);
  int n = 0;
  assert_int_equal(b->vt->list(b, "c", "o", 0, &r, stop_after_one, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(b->vt->list(b, "c", "o", 0, &r, fail_cb, NULL), STEAD_ECANCELED);
  stead__range_free(&r);
}

static void test_delete_all_then_put(void **state) {
  stead__backend *b = B(state);
  static const char *const keys[] = {"a", "b", "c", NULL};
  fill(b, keys);
  th_put(b, "c", "o", STEAD__NS_STATE, "", "state");
  stead__wset *ws = stead__wset_new("c", "o");
  stead__wset_put(ws, 0, "a", 1, "old", 3);
  stead__wset_delete_all(ws, 0);
  stead__wset_put(ws, 0, "z", 1, "new", 3);
  assert_int_equal(ws->kv.count, 1);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  char out[256];
  stead__list_opts o = {0};
  assert_string_equal(list_keys(b, &o, out), "z");
  /* Other namespaces survive a delete_all of the user namespace. */
  char *g = th_get(b, "c", "o", STEAD__NS_STATE, "");
  assert_non_null(g);
  assert_string_equal(g, "state");
  free(g);
}

static void test_namespaces_and_objects_isolated(void **state) {
  stead__backend *b = B(state);
  th_put(b, "c", "o", 0, "k", "user");
  th_put(b, "c", "o", STEAD__NS_JOURNAL, "k", "journal");
  th_put(b, "c", "o2", 0, "k", "o2");
  th_put(b, "c2", "o", 0, "k", "c2");
  char *g = th_get(b, "c", "o", 0, "k");
  assert_string_equal(g, "user");
  free(g);
  g = th_get(b, "c", "o", STEAD__NS_JOURNAL, "k");
  assert_string_equal(g, "journal");
  free(g);
  stead__wset *ws = stead__wset_new("c", "o");
  stead__wset_delete_all(ws, 0);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  assert_null(th_get(b, "c", "o", 0, "k"));
  g = th_get(b, "c", "o2", 0, "k");
  assert_string_equal(g, "o2");
  free(g);
  g = th_get(b, "c2", "o", 0, "k");
  assert_string_equal(g, "c2");
  free(g);
  g = th_get(b, "c", "o", STEAD__NS_JOURNAL, "k");
  assert_string_equal(g, "journal");
  free(g);
}

typedef struct scan_out {
  char s[1024];
  int n, stop_after, fail_at;
} scan_out;

static int scan_cb(void *u, const char *cls, const char *id, const void *k, size_t kl,
                   const void *v, size_t vl) {
  scan_out *o = u;
  size_t len = strlen(o->s);
  snprintf(o->s + len, sizeof o->s - len, "%s%s/%s/", len ? "," : "", cls, id);
  len = strlen(o->s);
  for (size_t i = 0; i < kl && len + 4 < sizeof o->s; i++) {
    unsigned char c = ((const unsigned char *)k)[i];
    if (c >= 32 && c < 127)
      o->s[len++] = (char)c;
    else
      len += (size_t)snprintf(o->s + len, sizeof o->s - len, "\\%02x", c);
    o->s[len] = 0;
  }
  snprintf(o->s + len, sizeof o->s - len, "=%.*s", (int)vl, (const char *)v);
  o->n++;
  if (o->fail_at && o->n == o->fail_at)
    return STEAD_EIO;
  return o->stop_after && o->n == o->stop_after ? 1 : 0;
}

/* scan_ns: one namespace across every object, ordered by (cls, id, key);
 * other namespaces, deleted keys and cleared namespaces are not seen. */
static void test_scan_ns(void **state) {
  stead__backend *b = B(state);
  scan_out o = {.n = 0};
  assert_int_equal(b->vt->scan_ns(b, STEAD__NS_SUB, scan_cb, &o), 0);
  assert_int_equal(o.n, 0);
  th_put(b, "c2", "o", STEAD__NS_SUB, "p", "2");
  th_put(b, "c", "ob", STEAD__NS_SUB, "x", "3");
  th_put(b, "c", "o", STEAD__NS_SUB, "b.*", "1");
  th_put(b, "c", "o", STEAD__NS_SUB, "a.**", "0");
  th_put(b, "c", "o", 0, "a.user", "no");
  th_put(b, "c", "o", STEAD__NS_JOURNAL, "j", "no");
  th_put(b, "c", "gone", STEAD__NS_SUB, "k", "no");
  th_put(b, "c", "cleared", STEAD__NS_SUB, "k", "no");
  stead__wset *ws = stead__wset_new("c", "gone");
  assert_int_equal(stead__wset_del(ws, STEAD__NS_SUB, "k", 1), 0);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  ws = stead__wset_new("c", "cleared");
  stead__wset_delete_all(ws, STEAD__NS_SUB);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  /* A binary key with an embedded NUL and a high byte. */
  ws = stead__wset_new("a", "z");
  assert_int_equal(stead__wset_put(ws, STEAD__NS_SUB, "k\0\xff", 3, "", 0), 0);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  o = (scan_out){.n = 0};
  assert_int_equal(b->vt->scan_ns(b, STEAD__NS_SUB, scan_cb, &o), 0);
  assert_string_equal(o.s, "a/z/k\\00\\ff=,c/o/a.**=0,c/o/b.*=1,c/ob/x=3,c2/o/p=2");
  o = (scan_out){.n = 0};
  assert_int_equal(b->vt->scan_ns(b, STEAD__NS_JOURNAL, scan_cb, &o), 0);
  assert_string_equal(o.s, "c/o/j=no");
  /* 1 stops quietly; a negative code stops and is returned. */
  o = (scan_out){.stop_after = 2};
  assert_int_equal(b->vt->scan_ns(b, STEAD__NS_SUB, scan_cb, &o), 0);
  assert_int_equal(o.n, 2);
  o = (scan_out){.fail_at = 3};
  assert_int_equal(b->vt->scan_ns(b, STEAD__NS_SUB, scan_cb, &o), STEAD_EIO);
  assert_int_equal(o.n, 3);
}

typedef struct alarms_out {
  char s[2048];
  stead__alarm_cursor last;
  char cls[64], id[64], name[64];
  int n;
} alarms_out;

static int alarm_cb(void *u, const stead__alarm *a) {
  alarms_out *o = u;
  size_t len = strlen(o->s);
  snprintf(o->s + len, sizeof o->s - len, "%s%s/%s/%s@%lld#%u:%.*s", len ? "," : "",
           a->cls, a->id, a->name, (long long)a->at_ms, a->attempt, (int)a->meta_len,
           (const char *)a->meta);
  snprintf(o->cls, sizeof o->cls, "%s", a->cls);
  snprintf(o->id, sizeof o->id, "%s", a->id);
  snprintf(o->name, sizeof o->name, "%s", a->name);
  o->last = (stead__alarm_cursor){a->at_ms, o->cls, o->id, o->name};
  o->n++;
  return 0;
}

static void set_alarm(stead__backend *b, const char *cls, const char *id,
                      const char *name, int64_t at, const char *meta) {
  stead__wset *ws = stead__wset_new(cls, id);
  assert_int_equal(stead__wset_alarm_set(ws, name, at, 0, meta, strlen(meta)), 0);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
}

static void test_alarms_order_and_paging(void **state) {
  stead__backend *b = B(state);
  set_alarm(b, "c", "o", "b", 100, "m1");
  set_alarm(b, "c", "o", "a", 100, "m2");
  set_alarm(b, "c", "o", "z", -5, "");
  set_alarm(b, "c", "p", "a", 50, "p");
  set_alarm(b, "c", "o", "late", 1000, "l");
  alarms_out o = {.n = 0};
  assert_int_equal(b->vt->alarms_list(b, "c", "o", alarm_cb, &o), 0);
  assert_string_equal(o.s, "c/o/z@-5#0:,c/o/a@100#0:m2,c/o/b@100#0:m1,c/o/late@1000#0:l");
  /* Upsert moves an alarm and keeps one record per name. */
  stead__wset *ws = stead__wset_new("c", "o");
  stead__wset_alarm_set(ws, "b", 10, 3, "moved", 5);
  stead__wset_alarm_del(ws, "late");
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  o = (alarms_out){.n = 0};
  b->vt->alarms_list(b, "c", "o", alarm_cb, &o);
  assert_string_equal(o.s, "c/o/z@-5#0:,c/o/b@10#3:moved,c/o/a@100#0:m2");
  /* Global scan, paged two at a time, up to t=100. */
  o = (alarms_out){.n = 0};
  assert_int_equal(b->vt->alarms_scan(b, NULL, 100, 2, alarm_cb, &o), 0);
  assert_string_equal(o.s, "c/o/z@-5#0:,c/o/b@10#3:moved");
  stead__alarm_cursor cur = o.last;
  char cc[64], ci[64], cn[64];
  strcpy(cc, o.cls), strcpy(ci, o.id), strcpy(cn, o.name);
  cur.cls = cc, cur.id = ci, cur.name = cn;
  o = (alarms_out){.n = 0};
  assert_int_equal(b->vt->alarms_scan(b, &cur, 100, 2, alarm_cb, &o), 0);
  assert_string_equal(o.s, "c/p/a@50#0:p,c/o/a@100#0:m2");
  strcpy(cc, o.cls), strcpy(ci, o.id), strcpy(cn, o.name);
  cur = (stead__alarm_cursor){o.last.at_ms, cc, ci, cn};
  o = (alarms_out){.n = 0};
  assert_int_equal(b->vt->alarms_scan(b, &cur, 100, 2, alarm_cb, &o), 0);
  assert_int_equal(o.n, 0);
  /* until excludes later alarms. */
  o = (alarms_out){.n = 0};
  assert_int_equal(b->vt->alarms_scan(b, NULL, 9, 0, alarm_cb, &o), 0);
  assert_string_equal(o.s, "c/o/z@-5#0:");
  /* Clear all of one object's alarms, then set one in the same set. */
  ws = stead__wset_new("c", "o");
  stead__wset_alarms_clear(ws);
  stead__wset_alarm_set(ws, "n", 7, 0, "", 0);
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  o = (alarms_out){.n = 0};
  assert_int_equal(b->vt->alarms_scan(b, NULL, INT64_MAX, 0, alarm_cb, &o), 0);
  assert_string_equal(o.s, "c/o/n@7#0:,c/p/a@50#0:p");
}

static void test_reopen(void **state) {
  fx *x = *state;
  if (!x->f->persistent)
    skip();
  th_put(x->b, "c", "o", 0, "k", "durable");
  set_alarm(x->b, "c", "o", "al", 42, "m");
  stead__backend_close(x->b);
  x->b = NULL;
  assert_int_equal(x->f->open(x->dir, &x->b), 0);
  char *g = th_get(x->b, "c", "o", 0, "k");
  assert_non_null(g);
  assert_string_equal(g, "durable");
  free(g);
  alarms_out o = {.n = 0};
  x->b->vt->alarms_list(x->b, "c", "o", alarm_cb, &o);
  assert_string_equal(o.s, "c/o/al@42#0:m");
  /* And again, after more writes: the reopen path is repeatable. */
  th_put(x->b, "c", "o", 0, "k2", "v");
  stead__backend_close(x->b);
  assert_int_equal(x->f->open(x->dir, &x->b), 0);
  g = th_get(x->b, "c", "o", 0, "k2");
  assert_string_equal(g, "v");
  free(g);
}

/* ---- sqlite-specific ---- */

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void test_sqlite_corrupt_file(void **state) {
  char dir[256], spec[400], path[300];
  th_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/garbage.db", dir);
  char junk[8192];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (char)(i * 7 + 3);
  write_file(path, junk, sizeof junk);
  snprintf(spec, sizeof spec, "sqlite:%s", path);
  stead__backend *b = NULL;
  assert_int_equal(stead__backend_open(spec, &b), STEAD_ECORRUPT);
  assert_null(b);
  assert_non_null(strstr(stead_errmsg(), "garbage.db"));
  /* A real database whose header is later damaged. */
  snprintf(path, sizeof path, "%s/ok.db", dir);
  snprintf(spec, sizeof spec, "sqlite:%s", path);
  assert_int_equal(stead__backend_open(spec, &b), 0);
  th_put(b, "c", "o", 0, "k", "v");
  stead__backend_close(b);
  b = NULL;
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fwrite("NOT A SQLITE FILE", 1, 16, f);
  fclose(f);
  int rc = stead__backend_open(spec, &b);
  assert_true(rc == STEAD_ECORRUPT);
  th_rmrf(dir);
}

static void test_sqlite_newer_schema_refused(void **state) {
  char dir[256], spec[400];
  th_tmpdir(dir, sizeof dir);
  snprintf(spec, sizeof spec, "sqlite:%s/x.db", dir);
  stead__backend *b;
  assert_int_equal(stead__backend_open(spec, &b), 0);
  stead__backend_close(b);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "%s/x.db", dir);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(cmd, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "UPDATE stead_schema SET version=99", 0, 0, 0), 0);
  sqlite3_close(db);
  assert_int_equal(stead__backend_open(spec, &b), STEAD_ENOTSUP);
  assert_non_null(strstr(stead_errmsg(), "99"));
  th_rmrf(dir);
}

static void test_spec_parsing(void **state) {
  stead__backend *b;
  assert_int_equal(stead__backend_open("nope", &b), STEAD_ENOTSUP);
  assert_int_equal(stead__backend_open("sqlite:", &b), STEAD_EINVAL);
  assert_int_equal(stead__backend_open("sqlite:/tmp/x.db?durability=maybe", &b),
                   STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "maybe"));
  assert_int_equal(stead__backend_open("sqlite:/tmp/x.db?colour=red", &b), STEAD_EINVAL);
  assert_int_equal(stead__backend_open("sqlite:/tmp/x.db?busy_timeout_ms=-3", &b),
                   STEAD_EINVAL);
  assert_int_equal(stead__backend_open("sqlite:/tmp/x.db?durability", &b), STEAD_EINVAL);
  char dir[256], spec[400];
  th_tmpdir(dir, sizeof dir);
  snprintf(spec, sizeof spec, "sqlite:%s/a.db?durability=full&busy_timeout_ms=100", dir);
  assert_int_equal(stead__backend_open(spec, &b), 0);
  stead__backend_close(b);
  /* The parent is a file: cannot create the directory. */
  snprintf(spec, sizeof spec, "sqlite:%s/a.db/sub/b.db", dir);
  assert_int_equal(stead__backend_open(spec, &b), STEAD_EIO);
  th_rmrf(dir);
}

#define T(fn, f)                                                                         \
  cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, (void *)(f))
#define SUITE(f)                                                                         \
  T(test_get_put_delete, f), T(test_binary_keys_values, f),                              \
      T(test_batch_many_objects, f), T(test_list_ranges, f),                             \
      T(test_list_prefix_all_ff, f), T(test_list_callback_stop, f),                      \
      T(test_delete_all_then_put, f), T(test_namespaces_and_objects_isolated, f),        \
      T(test_alarms_order_and_paging, f), T(test_scan_ns, f), T(test_reopen, f)

int main(void) {
  int fails = 0;
  int pg = pgh_start(0);
  if (pg < 0)
    return 1;
  for (size_t i = 0; i < sizeof factories / sizeof factories[0]; i++) {
    const factory *f = &factories[i];
    if (f->open == open_postgres && pg != 0)
      continue; /* pgh_start said why */
    const struct CMUnitTest tests[] = {SUITE(f)};
    char name[64];
    snprintf(name, sizeof name, "conformance/%s", f->name);
    fails +=
        _cmocka_run_group_tests(name, tests, sizeof tests / sizeof tests[0], NULL, NULL);
  }
  const struct CMUnitTest sqlite_tests[] = {
      cmocka_unit_test(test_sqlite_corrupt_file),
      cmocka_unit_test(test_sqlite_newer_schema_refused),
      cmocka_unit_test(test_spec_parsing),
  };
  fails += cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);
  return fails ? 1 : 0;
}
