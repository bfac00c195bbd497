/*
 * test_sched.c -- the alarm scheduler in manual mode (no thread): order,
 * catch-up, far-future alarms, the window pager, notifications, in-flight
 * rules, retries, refusals, the in-flight bound, shards, errors. Each runs
 * over the memory backend and over a SQLite file.
 */
#include "helpers.h"

#include <inttypes.h>

typedef struct fx {
  char dir[128];
  char spec[256];
  stead__backend *b;
  stead__alarms *s;
  test_clock clk;
  ah_rec rec;
  stead__alarms_opts o;
} fx;

static int setup_mem(void **state) {
  fx *f = calloc(1, sizeof *f);
  snprintf(f->spec, sizeof f->spec, "memory");
  *state = f;
  return 0;
}

static int setup_sqlite(void **state) {
  fx *f = calloc(1, sizeof *f);
  ah_tmpdir(f->dir, sizeof f->dir);
  snprintf(f->spec, sizeof f->spec, "sqlite:%s/db?durability=normal", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  stead__alarms_stop(f->s);
  stead__backend_close(f->b);
  if (f->dir[0])
    ah_rmrf(f->dir);
  free(f);
  return 0;
}

/* Opens the backend (if not yet) and default manual-mode options. */
static void fx_backend(fx *f) {
  if (!f->b)
    assert_rc(stead__backend_open(f->spec, &f->b), 0);
  f->rec.b = f->b;
  memset(&f->o, 0, sizeof f->o);
  f->o.now_ms = test_clock_read;
  f->o.clock_udata = &f->clk;
  f->o.fire = ah_fire;
  f->o.fire_udata = &f->rec;
  f->o.manual = 1;
}

static void fx_start(fx *f) {
  assert_rc(stead__alarms_start(f->b, &f->o, &f->s), 0);
  f->rec.s = f->s;
}

static void at(fx *f, int64_t ms) {
  atomic_store(&f->clk.now_ms, ms);
}

static void clear_log(fx *f) {
  f->rec.log[0] = 0;
}

/* ---- order ---- */

static void test_order_one_object(void **state) {
  fx *f = *state;
  fx_backend(f);
  assert_rc(ah_store(f->b, "C", "o", "b", 100, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "o", "a", 100, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "o", "c", 50, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "o", "z", 500, 0, NULL), 0);
  at(f, 200);
  fx_start(f);
  f->rec.consume = 1;
  assert_int_equal(stead__alarms_run_due(f->s), 3);
  assert_string_equal(f->rec.log, "o/c@50#0 o/a@100#0 o/b@100#0 ");
  clear_log(f);
  at(f, 499);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  at(f, 500);
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  assert_string_equal(f->rec.log, "o/z@500#0 ");
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 0);
}

static void test_order_across_objects(void **state) {
  fx *f = *state;
  fx_backend(f);
  assert_rc(ah_store(f->b, "C", "y", "a", 20, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "x", "b", 20, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "x", "a", 30, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "y", "b", 10, 0, NULL), 0);
  assert_rc(ah_store(f->b, "B", "z", "q", 20, 0, NULL), 0);
  at(f, 1000);
  fx_start(f);
  f->rec.consume = 1;
  assert_int_equal(stead__alarms_run_due(f->s), 5);
  /* Time first, then class, id and name bytewise. */
  assert_string_equal(f->rec.log, "y/b@10#0 z/q@20#0 x/b@20#0 y/a@20#0 x/a@30#0 ");
}

/* ---- catch-up and far future ---- */

static void test_past_alarms_fire_at_once(void **state) {
  fx *f = *state;
  fx_backend(f);
  int64_t now = 1700000000000LL;
  assert_rc(ah_store(f->b, "C", "o", "ancient", 0, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "o", "recent", now - 1, 2, "m"), 0);
  at(f, now);
  fx_start(f);
  f->rec.consume = 1;
  assert_int_equal(stead__alarms_run_due(f->s), 2);
  char want[128];
  snprintf(want, sizeof want, "o/ancient@0#0 o/recent@%lld#2 ", (long long)(now - 1));
  assert_string_equal(f->rec.log, want);
  assert_string_equal(f->rec.last_meta, "m");
  /* Set in the past through a notification: fires on the next run. */
  clear_log(f);
  assert_rc(ah_set(f->b, f->s, "C", "p", "late", now - 5000, 0, NULL), 0);
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  stead__alarm_stats st;
  stead__alarms_stats(f->s, &st);
  assert_int_equal(st.fired, 3);
  assert_true(st.lateness->count == 3);
}

static void test_far_future_stays_on_disk(void **state) {
  fx *f = *state;
  fx_backend(f);
  int64_t now = 1700000000000LL, years = 20LL * 365 * 24 * 3600 * 1000;
  at(f, now);
  assert_rc(ah_store(f->b, "C", "o", "far", now + years, 0, NULL), 0);
  fx_start(f);
  assert_rc(ah_set(f->b, f->s, "C", "o", "far2", now + years + 1, 0, NULL), 0);
  assert_rc(stead__alarms_poke(f->s), 0);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 0);
  /* A day before, still not in memory; at the time, both fire. */
  at(f, now + years - 86400000LL);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 0);
  at(f, now + years + 1);
  f->rec.consume = 1;
  assert_int_equal(stead__alarms_run_due(f->s), 2);
}

/* ---- the pager ---- */

static void test_window_paging(void **state) {
  fx *f = *state;
  fx_backend(f);
  enum { N = 4000 };
  /* Spread over 40 s, written in batches of 100 objects per commit. */
  for (int i = 0; i < N; i += 100) {
    stead__wset *ws[100];
    for (int j = 0; j < 100; j++) {
      char id[32];
      snprintf(id, sizeof id, "o%05d", i + j);
      ws[j] = stead__wset_new("C", id);
      assert_rc(stead__wset_alarm_set(ws[j], "n", (int64_t)(i + j) * 10, 0, NULL, 0), 0);
    }
    assert_rc(f->b->vt->commit(f->b, ws, 100), 0);
    for (int j = 0; j < 100; j++)
      stead__wset_unref(ws[j]);
  }
  f->o.window_ms = 500;
  f->o.page_size = 32;
  f->o.max_inflight = 8;
  fx_start(f);
  f->rec.consume = 1;
  int fired = 0;
  for (int64_t t = 0; t <= N * 10; t += 37) {
    at(f, t);
    int n = stead__alarms_run_due(f->s);
    assert_true(n >= 0);
    fired += n;
    /* Never more than what is due: alarm i is due at 10*i. */
    assert_int_equal(fired, t / 10 + 1 > N ? N : t / 10 + 1);
    assert_true(stead__alarms_pending_in_memory(f->s) <= 32 + 8);
  }
  assert_int_equal(fired, N);
  stead__alarm_stats st;
  stead__alarms_stats(f->s, &st);
  assert_true(st.pages_loaded > N / 32);
  assert_int_equal(st.rows_loaded, N);
  assert_true(st.pending_peak <= 32 + 8);
  assert_int_equal(st.pending, 0);
}

/* ---- notifications ---- */

static void test_notify_inside_and_outside_window(void **state) {
  fx *f = *state;
  fx_backend(f);
  f->o.window_ms = 1000;
  at(f, 0);
  fx_start(f);
  f->rec.consume = 1;
  assert_rc(stead__alarms_poke(f->s), 0); /* loads through 1000 */
  assert_rc(ah_set(f->b, f->s, "C", "o", "in", 500, 0, NULL), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 1);
  assert_rc(ah_set(f->b, f->s, "C", "o", "out", 5000, 0, NULL), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 1);
  /* Moving "in" past the window drops it from memory. */
  assert_rc(ah_set(f->b, f->s, "C", "o", "in", 4000, 0, NULL), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 0);
  /* Moving "out" into the window (upsert) loads it, at its new time. */
  assert_rc(ah_set(f->b, f->s, "C", "o", "out", 800, 0, "v2"), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 1);
  /* Deleted and cleared alarms never fire. */
  assert_rc(ah_set(f->b, f->s, "C", "o", "gone", 600, 0, NULL), 0);
  assert_rc(ah_del(f->b, f->s, "C", "o", "gone"), 0);
  assert_rc(ah_set(f->b, f->s, "C", "p", "x", 700, 0, NULL), 0);
  assert_rc(ah_set(f->b, f->s, "C", "p", "y", 9000, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "p", "z", 100, 0, NULL), 0);
  stead__wset *ws = stead__wset_new("C", "p");
  stead__wset_alarms_clear(ws);
  assert_rc(f->b->vt->commit(f->b, &ws, 1), 0);
  stead__wset_unref(ws);
  assert_rc(stead__alarms_notify_clear(f->s, "C", "p"), 0);
  at(f, 1000);
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  assert_string_equal(f->rec.log, "o/out@800#0 ");
  assert_string_equal(f->rec.last_meta, "v2");
  at(f, 10000);
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  assert_string_equal(f->rec.log, "o/out@800#0 o/in@4000#0 ");
}

/* ---- in flight, done, retries ---- */

static void test_inflight_not_refired(void **state) {
  fx *f = *state;
  fx_backend(f);
  at(f, 100);
  assert_rc(ah_store(f->b, "C", "o", "a", 50, 0, NULL), 0);
  fx_start(f);
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  at(f, 100000);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  assert_rc(stead__alarms_poke(f->s), 0);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  /* A notification that re-sets it while in flight waits for done. */
  assert_rc(ah_set(f->b, f->s, "C", "o", "a", 100000, 1, NULL), 0);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  assert_rc(stead__alarms_done(f->s, "C", "o", "a", 7), STEAD_ENOTFOUND);
  assert_rc(stead__alarms_done(f->s, "C", "o", "a", 0), 0);
  assert_rc(stead__alarms_done(f->s, "C", "o", "a", 0), STEAD_ENOTFOUND);
  f->rec.consume = 1;
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  assert_string_equal(f->rec.log, "o/a@50#0 o/a@100000#1 ");
}

static void test_done_deleted_and_unchanged(void **state) {
  fx *f = *state;
  fx_backend(f);
  f->o.refire_delay_ms = 250;
  at(f, 100);
  assert_rc(ah_store(f->b, "C", "o", "del", 10, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "o", "keep", 20, 0, NULL), 0);
  fx_start(f);
  assert_int_equal(stead__alarms_run_due(f->s), 2);
  assert_rc(ah_del(f->b, f->s, "C", "o", "del"), 0);
  assert_rc(stead__alarms_done(f->s, "C", "o", "del", 0), 0);
  /* Done without a change: still stored, so it fires again, later. */
  assert_rc(stead__alarms_done(f->s, "C", "o", "keep", 0), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 1);
  at(f, 349);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  at(f, 350);
  f->rec.consume = 1;
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  assert_string_equal(f->rec.log, "o/del@10#0 o/keep@20#0 o/keep@20#0 ");
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 0);
}

static void test_retry_with_backoff_then_dead_letter(void **state) {
  fx *f = *state;
  fx_backend(f);
  f->o.max_attempts = 3;
  at(f, 1000);
  assert_rc(ah_store(f->b, "C", "o", "job", 1000, 0, "m"), 0);
  fx_start(f);
  assert_int_equal(stead__alarms_backoff(f->s, 0), 1000);
  assert_int_equal(stead__alarms_backoff(f->s, 1), 2000);
  assert_int_equal(stead__alarms_backoff(f->s, 2), -1);
  /* The runtime's failure path: re-set with attempt+1 at the backoff, or
   * delete and dead-letter after the last attempt. */
  for (uint32_t att = 0;; att++) {
    assert_int_equal(stead__alarms_run_due(f->s), 1);
    int64_t now = test_clock_read(&f->clk), d = stead__alarms_backoff(f->s, att);
    if (d < 0) {
      assert_rc(ah_del(f->b, f->s, "C", "o", "job"), 0);
      stead__alarms_dead_letter(f->s);
    } else {
      assert_rc(ah_set(f->b, f->s, "C", "o", "job", now + d, att + 1, "m"), 0);
    }
    assert_rc(stead__alarms_done(f->s, "C", "o", "job", att), 0);
    if (d < 0)
      break;
    at(f, now + d - 1);
    assert_int_equal(stead__alarms_run_due(f->s), 0);
    at(f, now + d);
  }
  assert_string_equal(f->rec.log, "o/job@1000#0 o/job@2000#1 o/job@4000#2 ");
  stead__alarm_stats st;
  stead__alarms_stats(f->s, &st);
  assert_int_equal(st.retried, 2);
  assert_int_equal(st.dead_lettered, 1);
  assert_int_equal(st.pending, 0);
}

static void test_backoff_cap(void **state) {
  fx *f = *state;
  fx_backend(f);
  f->o.retry_base_ms = 100;
  f->o.retry_factor = 10;
  f->o.retry_cap_ms = 5000;
  f->o.max_attempts = 100;
  fx_start(f);
  assert_int_equal(stead__alarms_backoff(f->s, 0), 100);
  assert_int_equal(stead__alarms_backoff(f->s, 1), 1000);
  assert_int_equal(stead__alarms_backoff(f->s, 2), 5000);
  assert_int_equal(stead__alarms_backoff(f->s, 90), 5000);
  assert_int_equal(stead__alarms_backoff(f->s, 99), -1);
}

static void test_refused_fire_retried_in_object_order(void **state) {
  fx *f = *state;
  fx_backend(f);
  f->o.refire_delay_ms = 100;
  at(f, 1000);
  assert_rc(ah_store(f->b, "C", "o", "a", 10, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "o", "b", 20, 0, NULL), 0);
  assert_rc(ah_store(f->b, "C", "p", "c", 30, 0, NULL), 0);
  fx_start(f);
  f->rec.consume = 1;
  f->rec.refuse = 1; /* o's first alarm is refused: o's second must wait */
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  assert_string_equal(f->rec.log, "p/c@30#0 ");
  at(f, 1099);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  at(f, 1100);
  assert_int_equal(stead__alarms_run_due(f->s), 2);
  assert_string_equal(f->rec.log, "p/c@30#0 o/a@10#0 o/b@20#0 ");
  stead__alarm_stats st;
  stead__alarms_stats(f->s, &st);
  assert_true(st.refused >= 1);
}

static void test_max_inflight(void **state) {
  fx *f = *state;
  fx_backend(f);
  f->o.max_inflight = 10;
  at(f, 1000);
  for (int i = 0; i < 50; i++) {
    char name[16];
    snprintf(name, sizeof name, "n%02d", i);
    assert_rc(ah_store(f->b, "C", "o", name, i, 0, NULL), 0);
  }
  fx_start(f);
  assert_int_equal(stead__alarms_run_due(f->s), 10);
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  stead__alarm_stats st;
  stead__alarms_stats(f->s, &st);
  assert_int_equal(st.inflight, 10);
  for (int i = 0; i < 4; i++) {
    char name[16];
    snprintf(name, sizeof name, "n%02d", i);
    assert_rc(ah_del(f->b, f->s, "C", "o", name), 0);
    assert_rc(stead__alarms_done(f->s, "C", "o", name, 0), 0);
  }
  assert_int_equal(stead__alarms_run_due(f->s), 4);
  f->rec.consume = 1;
  for (int i = 4; i < 14; i++) {
    char name[16];
    snprintf(name, sizeof name, "n%02d", i);
    assert_rc(ah_del(f->b, f->s, "C", "o", name), 0);
    assert_rc(stead__alarms_done(f->s, "C", "o", name, 0), 0);
  }
  assert_int_equal(stead__alarms_run_due(f->s), 36);
  assert_int_equal(f->rec.fired, 50);
}

/* ---- shards ---- */

static uint32_t shard_by_id(void *u, const char *cls, const char *id) {
  (void)u;
  (void)cls;
  return (uint32_t)(id[strlen(id) - 1] - '0'); /* "o3" -> shard 3 */
}

static void test_shards(void **state) {
  fx *f = *state;
  fx_backend(f);
  f->o.shard_of = shard_by_id;
  at(f, 1000);
  for (int sh = 0; sh < 4; sh++) {
    char id[8];
    snprintf(id, sizeof id, "o%d", sh);
    assert_rc(ah_store(f->b, "C", id, "a", 10 + sh, 0, NULL), 0);
    assert_rc(ah_store(f->b, "C", id, "b", 500, 0, NULL), 0);
  }
  fx_start(f);
  f->rec.consume = 1;
  assert_int_equal(stead__alarms_run_due(f->s), 0); /* nothing owned yet */
  assert_rc(stead__alarms_own(f->s, 1), 0);
  assert_rc(stead__alarms_own(f->s, 3), 0);
  assert_true(stead__alarms_owns(f->s, 3));
  assert_false(stead__alarms_owns(f->s, 2));
  assert_int_equal(stead__alarms_run_due(f->s), 4);
  assert_string_equal(f->rec.log, "o1/a@11#0 o3/a@13#0 o1/b@500#0 o3/b@500#0 ");
  /* Notifications of unowned shards are ignored. */
  assert_rc(ah_set(f->b, f->s, "C", "o2", "c", 900, 0, NULL), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 0);
  /* A disowned shard's in-flight alarm is forgotten at done. */
  clear_log(f);
  f->rec.consume = 0;
  assert_rc(ah_set(f->b, f->s, "C", "o1", "d", 900, 0, NULL), 0);
  assert_rc(ah_set(f->b, f->s, "C", "o3", "e", 950, 0, NULL), 0);
  assert_int_equal(stead__alarms_run_due(f->s), 2);
  assert_rc(stead__alarms_disown(f->s, 1), 0);
  assert_rc(stead__alarms_done(f->s, "C", "o1", "d", 0), 0);
  assert_rc(stead__alarms_done(f->s, "C", "o3", "e", 0), 0);
  assert_int_equal(stead__alarms_pending_in_memory(f->s), 1); /* o3/e refires */
  /* Owning shards 0 and 2 loads their alarms from storage. */
  f->rec.consume = 1;
  assert_rc(stead__alarms_own(f->s, 0), 0);
  assert_rc(stead__alarms_own(f->s, 2), 0);
  at(f, 2000);
  assert_int_equal(stead__alarms_run_due(f->s), 6);
  assert_string_equal(f->rec.log, "o1/d@900#0 o3/e@950#0 o0/a@10#0 o2/a@12#0 "
                                  "o0/b@500#0 o2/b@500#0 o2/c@900#0 o3/e@950#0 ");
  /* o1/d stays stored for whoever owns shard 1 now. */
  assert_rc(stead__alarms_own(f->s, STEAD__ALARM_MAX_SHARDS), STEAD_EINVAL);
  assert_rc(stead__alarms_disown(f->s, STEAD__ALARM_MAX_SHARDS), STEAD_EINVAL);
}

/* ---- errors ---- */

/* A backend whose scans fail while `fail` is set; the rest is the memory
 * backend. */
typedef struct flaky {
  stead__backend base;
  stead__backend *inner;
  int fail;
} flaky;

static int flaky_scan(stead__backend *b, const stead__alarm_cursor *after, int64_t until,
                      size_t limit, stead__alarm_cb cb, void *u) {
  flaky *fl = (flaky *)b;
  if (fl->fail)
    return stead__err(STEAD_ESTORAGE, "injected scan failure");
  return fl->inner->vt->alarms_scan(fl->inner, after, until, limit, cb, u);
}

static void test_page_error_retried(void **state) {
  fx *f = *state;
  fx_backend(f);
  assert_rc(ah_store(f->b, "C", "o", "a", 10, 0, NULL), 0);
  static stead__backend_vt vt;
  vt = *f->b->vt;
  vt.alarms_scan = flaky_scan;
  flaky fl = {.base = {.vt = &vt}, .inner = f->b, .fail = 1};
  at(f, 100);
  assert_rc(stead__alarms_start(&fl.base, &f->o, &f->s), 0);
  f->rec.s = f->s;
  f->rec.consume = 1;
  assert_rc(stead__alarms_run_due(f->s), STEAD_ESTORAGE);
  fl.fail = 0;
  /* Retried a second later, not at once. */
  assert_int_equal(stead__alarms_run_due(f->s), 0);
  at(f, 1100);
  assert_int_equal(stead__alarms_run_due(f->s), 1);
  stead__alarm_stats st;
  stead__alarms_stats(f->s, &st);
  assert_int_equal(st.page_errors, 1);
  stead__alarms_stop(f->s);
  f->s = NULL;
}

static void test_bad_input(void **state) {
  fx *f = *state;
  fx_backend(f);
  stead__alarms *s = (void *)1;
  assert_rc(stead__alarms_start(NULL, &f->o, &s), STEAD_EINVAL);
  assert_null(s);
  stead__alarms_opts o = f->o;
  o.fire = NULL;
  assert_rc(stead__alarms_start(f->b, &o, &s), STEAD_EINVAL);
  o = f->o;
  o.window_ms = -1;
  assert_rc(stead__alarms_start(f->b, &o, &s), STEAD_EINVAL);
  o = f->o;
  o.retry_factor = 0.5;
  assert_rc(stead__alarms_start(f->b, &o, &s), STEAD_EINVAL);
  fx_start(f);
  char longname[STEAD__MAX_NAME + 2];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  assert_rc(stead__alarms_notify_set(f->s, "C", "o", longname, 1, 0, NULL, 0),
            STEAD_ETOOBIG);
  longname[STEAD__MAX_NAME] = 0;
  assert_rc(stead__alarms_notify_set(f->s, "C", "o", longname, 1, 0, NULL, 0), 0);
  assert_rc(stead__alarms_notify_set(f->s, "C", "o", "", 1, 0, NULL, 0), STEAD_EINVAL);
  assert_rc(stead__alarms_notify_set(f->s, "", "o", "n", 1, 0, NULL, 0), STEAD_EINVAL);
  assert_rc(stead__alarms_notify_set(f->s, "C", NULL, "n", 1, 0, NULL, 0), STEAD_EINVAL);
  assert_rc(stead__alarms_notify_set(f->s, "C", "o", "n", 1, 0, NULL, 3), STEAD_EINVAL);
  static char big[STEAD__MAX_ALARM_META + 1];
  assert_rc(stead__alarms_notify_set(f->s, "C", "o", "n", 1, 0, big, sizeof big),
            STEAD_ETOOBIG);
  assert_rc(stead__alarms_notify_set(f->s, "C", "o", "n", 1, 0, big, sizeof big - 1), 0);
  assert_rc(stead__alarms_notify_del(f->s, "C", "o", NULL), STEAD_EINVAL);
  assert_rc(stead__alarms_notify_clear(f->s, NULL, "o"), STEAD_EINVAL);
  assert_rc(stead__alarms_done(f->s, "C", "o", "nope", 0), STEAD_ENOTFOUND);
  assert_rc(stead__alarms_done(NULL, "C", "o", "n", 0), STEAD_EINVAL);
  assert_rc(stead__alarms_run_due(NULL), STEAD_EINVAL);
  stead__buf b = {0};
  assert_rc(stead__alarms_metrics_text(f->s, &b), 0);
  assert_non_null(strstr((char *)b.data, "stead_alarms_fired_total 0\n"));
  assert_non_null(strstr((char *)b.data, "stead_alarm_lateness_seconds_count 0\n"));
  stead__buf_free(&b);
}

#define BOTH(fn)                                                                         \
  cmocka_unit_test_setup_teardown(fn, setup_mem, teardown),                              \
      cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      BOTH(test_order_one_object),
      BOTH(test_order_across_objects),
      BOTH(test_past_alarms_fire_at_once),
      BOTH(test_far_future_stays_on_disk),
      BOTH(test_window_paging),
      BOTH(test_notify_inside_and_outside_window),
      BOTH(test_inflight_not_refired),
      BOTH(test_done_deleted_and_unchanged),
      BOTH(test_retry_with_backoff_then_dead_letter),
      cmocka_unit_test_setup_teardown(test_backoff_cap, setup_mem, teardown),
      BOTH(test_refused_fire_retried_in_object_order),
      BOTH(test_max_inflight),
      BOTH(test_shards),
      cmocka_unit_test_setup_teardown(test_page_error_retried, setup_mem, teardown),
      cmocka_unit_test_setup_teardown(test_bad_input, setup_mem, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
