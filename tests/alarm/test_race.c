/*
 * test_race.c -- the scheduler thread against concurrent notifications
 * (label concurrency: also runs under TSan).
 *
 * Two writer threads set alarms through backend commits + notifications,
 * move some of them (often across the pager's cursor) and delete others,
 * while the scheduler thread pages a small window in small pages with the
 * real clock. A runtime thread consumes fires the way the real runtime
 * does (delete commit, notify, done). Every live alarm must fire exactly
 * once at its final time; a deleted one never.
 */
#include "helpers.h"

enum { WRITERS = 2, PER_WRITER = 2500, N = WRITERS * PER_WRITER, Q = 4096 };

typedef struct alarm_state {
  int64_t at; /* final time, or -1 once deleted */
  int fires;
  int64_t fired_at; /* at passed to fire */
} alarm_state;

typedef struct world {
  stead__backend *b;
  stead__alarms *s;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  alarm_state st[N];
  int q[Q];
  uint32_t qatt[Q];
  int qh, qt, stop;
  int live, fired_live;
  atomic_int bad;
} world;

static void ident(int i, char *id, char *name) {
  sprintf(id, "o%03d", i % 300);
  sprintf(name, "a%05d", i);
}

static int fire(void *u, const char *cls, const char *id, const char *name, int64_t at,
                uint32_t attempt, const void *meta, size_t meta_len) {
  world *w = u;
  (void)cls;
  (void)id;
  (void)meta;
  (void)meta_len;
  int i = atoi(name + 1);
  pthread_mutex_lock(&w->mu);
  if (i < 0 || i >= N || (w->qt + 1) % Q == w->qh) {
    pthread_mutex_unlock(&w->mu);
    return 1; /* a full "mailbox": refuse, the scheduler retries */
  }
  w->st[i].fires++;
  w->st[i].fired_at = at;
  if (w->st[i].at >= 0 && w->st[i].fires == 1)
    w->fired_live++;
  w->q[w->qt] = i;
  w->qatt[w->qt] = attempt;
  w->qt = (w->qt + 1) % Q;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

/* The runtime: consumes fired alarms (delete commit, notify, done). */
static void *runtime(void *arg) {
  world *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->qh == w->qt && !w->stop)
      pthread_cond_wait(&w->cv, &w->mu);
    if (w->qh == w->qt)
      break;
    int i = w->q[w->qh];
    uint32_t att = w->qatt[w->qh];
    w->qh = (w->qh + 1) % Q;
    pthread_mutex_unlock(&w->mu);
    char id[16], name[16];
    ident(i, id, name);
    if (ah_del(w->b, w->s, "C", id, name) || stead__alarms_done(w->s, "C", id, name, att))
      atomic_fetch_add(&w->bad, 1);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

typedef struct writer {
  world *w;
  int first;
  unsigned seed;
} writer;

static void *write_alarms(void *arg) {
  writer *wr = arg;
  world *w = wr->w;
  for (int k = 0; k < PER_WRITER; k++) {
    int i = wr->first + k;
    char id[16], name[16];
    ident(i, id, name);
    int64_t now = stead__wall_ms();
    int64_t at = now + 20 + rand_r(&wr->seed) % 1500;
    pthread_mutex_lock(&w->mu);
    w->st[i].at = at;
    pthread_mutex_unlock(&w->mu);
    if (ah_set(w->b, w->s, "C", id, name, at, 0, "m"))
      atomic_fetch_add(&w->bad, 1);
    /* Now and then move or delete an earlier alarm that is not due for a
     * while (so it cannot be firing), often across the cursor. */
    int r = rand_r(&wr->seed) % 10;
    if (r < 3 && k > 0) {
      int j = wr->first + rand_r(&wr->seed) % k;
      ident(j, id, name);
      now = stead__wall_ms();
      pthread_mutex_lock(&w->mu);
      int64_t old = w->st[j].at;
      int ok = old >= 0 && old - now > 400;
      int64_t nat = now + 20 + rand_r(&wr->seed) % 1000;
      if (ok)
        w->st[j].at = r == 0 ? -1 : nat;
      pthread_mutex_unlock(&w->mu);
      if (ok && (r == 0 ? ah_del(w->b, w->s, "C", id, name)
                        : ah_set(w->b, w->s, "C", id, name, nat, 0, "m")))
        atomic_fetch_add(&w->bad, 1);
    }
    if (k % 50 == 0)
      test_sleep_ms(1); /* spread the writes over the pages */
  }
  return NULL;
}

/* Slow scans (a busy disk) widen the window in which notifications race
 * a page: before the snapshot and between the snapshot and the merge. */
typedef struct slow {
  stead__backend base;
  stead__backend_vt vt;
  stead__backend *inner;
} slow;

static int slow_scan(stead__backend *b, const stead__alarm_cursor *after, int64_t until,
                     size_t limit, stead__alarm_cb cb, void *u) {
  slow *sl = (slow *)b;
  test_sleep_ms(1);
  int rc = sl->inner->vt->alarms_scan(sl->inner, after, until, limit, cb, u);
  test_sleep_ms(1);
  return rc;
}

static void run_race(const char *spec) {
  world *w = calloc(1, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  assert_rc(stead__backend_open(spec, &w->b), 0);
  stead__alarms_opts o = {.window_ms = 200,
                          .page_size = 16,
                          .max_inflight = 64,
                          .refire_delay_ms = 20,
                          .fire = fire,
                          .fire_udata = w};
  slow sl = {.inner = w->b};
  sl.vt = *w->b->vt;
  sl.vt.alarms_scan = slow_scan;
  sl.base.vt = &sl.vt;
  assert_rc(stead__alarms_start(&sl.base, &o, &w->s), 0);
  pthread_t rt, wt[WRITERS];
  writer wr[WRITERS];
  assert_int_equal(pthread_create(&rt, NULL, runtime, w), 0);
  for (int k = 0; k < WRITERS; k++) {
    wr[k] = (writer){w, k * PER_WRITER, 1234u + (unsigned)k};
    assert_int_equal(pthread_create(&wt[k], NULL, write_alarms, &wr[k]), 0);
  }
  for (int k = 0; k < WRITERS; k++)
    pthread_join(wt[k], NULL);
  pthread_mutex_lock(&w->mu);
  for (int i = 0; i < N; i++)
    w->live += w->st[i].at >= 0;
  pthread_mutex_unlock(&w->mu);
  /* Wait for every live alarm, then a while longer for any double fire. */
  int64_t deadline = stead__mono_ms() + 30000;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    int done = w->fired_live == w->live;
    pthread_mutex_unlock(&w->mu);
    if (done || stead__mono_ms() > deadline)
      break;
    test_sleep_ms(20);
  }
  test_sleep_ms(400);
  stead__alarm_stats st;
  stead__alarms_stats(w->s, &st);
  stead__alarms_stop(w->s);
  pthread_mutex_lock(&w->mu);
  w->stop = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(rt, NULL);

  int missing = 0, dup = 0, wrong_time = 0, deleted_fired = 0;
  for (int i = 0; i < N; i++) {
    alarm_state *a = &w->st[i];
    if (a->at < 0)
      deleted_fired += a->fires;
    else if (a->fires == 0)
      missing++;
    else if (a->fires > 1)
      dup++;
    else if (a->fired_at != a->at)
      wrong_time++;
  }
  assert_int_equal(atomic_load(&w->bad), 0);
  assert_int_equal(missing, 0);
  assert_int_equal(dup, 0);
  assert_int_equal(wrong_time, 0);
  assert_int_equal(deleted_fired, 0);
  assert_true(w->live > N / 2);
  assert_true(st.pages_loaded > 10);
  assert_true(st.pending_peak < N); /* the window, not everything */
  print_message("pages %llu, notifications raced with a scan %llu, refused %llu\n",
                (unsigned long long)st.pages_loaded, (unsigned long long)st.replayed,
                (unsigned long long)st.refused);
  stead__backend_close(w->b);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

static void test_race_memory(void **state) {
  (void)state;
  run_race("memory");
}

static void test_race_sqlite(void **state) {
  (void)state;
  char dir[128], spec[256];
  ah_tmpdir(dir, sizeof dir);
  snprintf(spec, sizeof spec, "sqlite:%s/db?durability=normal", dir);
  run_race(spec);
  ah_rmrf(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_race_memory),
      cmocka_unit_test(test_race_sqlite),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
