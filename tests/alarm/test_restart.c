/*
 * test_restart.c -- catch-up after downtime: 100,000 alarms written to a
 * SQLite file through backend commits, the file reopened, and a scheduler
 * started with the clock past all of them. Every alarm fires exactly once,
 * oldest first, and the scheduler never holds more than page_size +
 * max_inflight alarms in memory. The "runtime" here consumes fired alarms
 * the way the real one does: a batched delete commit, notify, done.
 */
#include "helpers.h"

enum { OBJS = 10000, PER_OBJ = 10, N = OBJS * PER_OBJ, PAGE = 1000, INFLIGHT = 500 };

typedef struct fired {
  int idx;
  uint32_t attempt;
} fired;

typedef struct rt {
  uint8_t seen[N];
  int dups, bad, total;
  int64_t last_at;
  int out_of_order;
  fired batch[INFLIGHT];
  int nbatch;
} rt;

static int64_t alarm_at(int i) {
  /* Spread over a day, with many equal times. */
  return 1600000000000LL + (int64_t)((uint32_t)i * 2654435761u % 86400u) * 1000;
}

static int fire(void *u, const char *cls, const char *id, const char *name, int64_t at,
                uint32_t attempt, const void *meta, size_t meta_len) {
  rt *r = u;
  int o = atoi(id + 1), k = atoi(name + 1), i = o * PER_OBJ + k;
  if (strcmp(cls, "C") || o < 0 || o >= OBJS || k < 0 || k >= PER_OBJ ||
      at != alarm_at(i) || meta_len != 4 || memcmp(meta, id + 1, 4)) {
    r->bad++;
    return 0;
  }
  if (r->seen[i]++)
    r->dups++;
  if (at < r->last_at)
    r->out_of_order++;
  r->last_at = at;
  r->total++;
  if (r->nbatch < INFLIGHT)
    r->batch[r->nbatch++] = (fired){i, attempt};
  else
    r->bad++;
  return 0;
}

static void names(int i, char *id, char *name) {
  sprintf(id, "o%05d", i / PER_OBJ);
  sprintf(name, "n%d", i % PER_OBJ);
}

/* Commits deletes of the fired batch in one transaction, then notifies. */
static void consume(stead__backend *b, stead__alarms *s, rt *r) {
  stead__wset *ws[INFLIGHT];
  char id[16], name[16];
  for (int j = 0; j < r->nbatch; j++) {
    names(r->batch[j].idx, id, name);
    ws[j] = stead__wset_new("C", id);
    assert_non_null(ws[j]);
    assert_rc(stead__wset_alarm_del(ws[j], name), 0);
  }
  if (r->nbatch)
    assert_rc(b->vt->commit(b, ws, (size_t)r->nbatch), 0);
  for (int j = 0; j < r->nbatch; j++) {
    stead__wset_unref(ws[j]);
    names(r->batch[j].idx, id, name);
    assert_rc(stead__alarms_notify_del(s, "C", id, name), 0);
    assert_rc(stead__alarms_done(s, "C", id, name, r->batch[j].attempt), 0);
  }
  r->nbatch = 0;
}

static void test_restart_100k(void **state) {
  (void)state;
  char dir[128], spec[256];
  ah_tmpdir(dir, sizeof dir);
  snprintf(spec, sizeof spec, "sqlite:%s/db?durability=normal", dir);
  stead__backend *b;
  assert_rc(stead__backend_open(spec, &b), 0);
  enum { BATCH = 500 };
  for (int o = 0; o < OBJS; o += BATCH) {
    stead__wset *ws[BATCH];
    for (int j = 0; j < BATCH; j++) {
      char id[16], name[16];
      sprintf(id, "o%05d", o + j);
      ws[j] = stead__wset_new("C", id);
      assert_non_null(ws[j]);
      for (int k = 0; k < PER_OBJ; k++) {
        sprintf(name, "n%d", k);
        assert_rc(stead__wset_alarm_set(ws[j], name, alarm_at((o + j) * PER_OBJ + k), 0,
                                        id + 1, 4),
                  0);
      }
    }
    assert_rc(b->vt->commit(b, ws, BATCH), 0);
    for (int j = 0; j < BATCH; j++)
      stead__wset_unref(ws[j]);
  }
  stead__backend_close(b);

  /* The restart. */
  assert_rc(stead__backend_open(spec, &b), 0);
  rt *r = calloc(1, sizeof *r);
  test_clock clk;
  atomic_store(&clk.now_ms, alarm_at(0) + 2LL * 86400 * 1000);
  stead__alarms_opts o = {.now_ms = test_clock_read,
                          .clock_udata = &clk,
                          .page_size = PAGE,
                          .max_inflight = INFLIGHT,
                          .fire = fire,
                          .fire_udata = r,
                          .manual = 1};
  stead__alarms *s;
  assert_rc(stead__alarms_start(b, &o, &s), 0);
  assert_int_equal(stead__alarms_pending_in_memory(s), 0); /* nothing read yet */
  for (;;) {
    int n = stead__alarms_run_due(s);
    assert_true(n >= 0);
    assert_true(stead__alarms_pending_in_memory(s) <= PAGE + INFLIGHT);
    assert_true(n <= INFLIGHT);
    if (!n)
      break;
    consume(b, s, r);
  }
  assert_int_equal(r->bad, 0);
  assert_int_equal(r->dups, 0);
  assert_int_equal(r->total, N);
  assert_int_equal(r->out_of_order, 0);
  stead__alarm_stats st;
  stead__alarms_stats(s, &st);
  assert_true(st.pending_peak <= PAGE + INFLIGHT);
  assert_int_equal(st.pending, 0);
  assert_int_equal(st.fired, N);
  assert_int_equal(st.rows_loaded, N);
  assert_true(st.pages_loaded >= N / PAGE);
  stead__alarms_stop(s);
  stead__backend_close(b);
  free(r);
  ah_rmrf(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_restart_100k),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
