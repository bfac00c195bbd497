/*
 * bench_alarms.c -- the alarm scheduler at scale over SQLite.
 *
 *   1. schedule: 1,000,000 alarms across 100,000 objects, written through
 *      backend commits of 256 objects each (what the group committer
 *      does) and notified to a running scheduler; 1% of them already due.
 *   2. restart: close everything, reopen the file, start a scheduler;
 *      time to the first fire, and to the end of the catch-up of the due
 *      ones (each consumed like the runtime does: delete commit, notify,
 *      done).
 *   3. steady: 10,000 alarms/s become due for ~10 s (set ~0.5 s ahead,
 *      through commits and notifications), with the other ~990,000 still
 *      pending on disk; lateness = fire callback time - due time.
 * Peak RSS (getrusage) after each phase. Options: --objects N --per-obj K
 * --rate R --secs S --dir D.
 */
#include "alarm/sched.h"
#include "storage/backend.h"
#include "util/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long rss_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us) {
  if (us <= 0)
    return;
  struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
  nanosleep(&ts, NULL);
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_alarms: %s: %s (%s)\n", what, stead_errname(rc), stead_errmsg());
  exit(1);
}

/* ---- the "runtime": fired alarms queue up and are consumed in batches
 * (one delete commit per batch, then notify and done for each) ---- */

typedef struct fired {
  char id[24], name[24];
  uint32_t attempt;
} fired;

typedef struct rt {
  stead__backend *b;
  stead__alarms *s;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  fired *q;
  size_t qcap, qh, qn;
  int stop;
  int64_t first_fire_us;
  uint64_t nfired;
  int64_t *late_us; /* steady phase lateness samples */
  size_t nlate, late_cap;
  int record_late;
} rt;

static int on_fire(void *u, const char *cls, const char *id, const char *name, int64_t at,
                   uint32_t attempt, const void *meta, size_t meta_len) {
  rt *r = u;
  int64_t t = wall_us();
  (void)cls;
  (void)meta;
  (void)meta_len;
  pthread_mutex_lock(&r->mu);
  if (r->qn == r->qcap) {
    pthread_mutex_unlock(&r->mu);
    return 1;
  }
  if (!r->first_fire_us)
    r->first_fire_us = t;
  r->nfired++;
  if (r->record_late && r->nlate < r->late_cap)
    r->late_us[r->nlate++] = t - at * 1000;
  fired *f = &r->q[(r->qh + r->qn++) % r->qcap];
  snprintf(f->id, sizeof f->id, "%s", id);
  snprintf(f->name, sizeof f->name, "%s", name);
  f->attempt = attempt;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

static void *consumer(void *arg) {
  rt *r = arg;
  enum { MAXB = 256 };
  fired batch[MAXB];
  stead__wset *ws[MAXB];
  for (;;) {
    pthread_mutex_lock(&r->mu);
    while (!r->qn && !r->stop)
      pthread_cond_wait(&r->cv, &r->mu);
    if (!r->qn) {
      pthread_mutex_unlock(&r->mu);
      return NULL;
    }
    size_t n = r->qn < MAXB ? r->qn : MAXB;
    for (size_t i = 0; i < n; i++)
      batch[i] = r->q[(r->qh + i) % r->qcap];
    r->qh = (r->qh + n) % r->qcap;
    r->qn -= n;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < n; i++) {
      ws[i] = stead__wset_new("Bench", batch[i].id);
      if (!ws[i] || stead__wset_alarm_del(ws[i], batch[i].name))
        die("wset", STEAD_ENOMEM);
    }
    int rc = r->b->vt->commit(r->b, ws, n);
    if (rc)
      die("delete commit", rc);
    for (size_t i = 0; i < n; i++) {
      stead__wset_unref(ws[i]);
      stead__alarms_notify_del(r->s, "Bench", batch[i].id, batch[i].name);
      stead__alarms_done(r->s, "Bench", batch[i].id, batch[i].name, batch[i].attempt);
    }
  }
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static stead__alarms *start(stead__backend *b, rt *r) {
  stead__alarms_opts o = {.fire = on_fire, .fire_udata = r};
  stead__alarms *s;
  int rc = stead__alarms_start(b, &o, &s);
  if (rc)
    die("scheduler start", rc);
  return s;
}

int main(int argc, char **argv) {
  long objects = 100000, per_obj = 10, rate = 10000, secs = 10;
  const char *dir = NULL;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--objects"))
      objects = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--per-obj"))
      per_obj = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--rate"))
      rate = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--secs"))
      secs = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--dir"))
      dir = argv[i + 1];
  }
  char tmp[128], spec[256];
  if (!dir) {
    snprintf(tmp, sizeof tmp, "/tmp/stead-bench-alarms-XXXXXX");
    if (!mkdtemp(tmp))
      die("mkdtemp", STEAD_EIO);
    dir = tmp;
  }
  snprintf(spec, sizeof spec, "sqlite:%s/alarms.db?durability=normal", dir);
  long total = objects * per_obj, due_now = total / 100;

  rt r = {.qcap = 8192};
  r.q = calloc(r.qcap, sizeof *r.q);
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);

  /* ---- 1. schedule ---- */
  stead__backend *b;
  int rc = stead__backend_open(spec, &b);
  if (rc)
    die("open", rc);
  r.b = b;
  stead__alarms_opts mo = {.fire = on_fire, .fire_udata = &r, .manual = 1};
  stead__alarms *s;
  if ((rc = stead__alarms_start(b, &mo, &s)))
    die("scheduler start", rc);
  stead__alarms_poke(s); /* load the (empty) window, as a running runtime has */
  int64_t now = stead__wall_ms(), t0 = stead__mono_ns();
  enum { BATCH = 256 };
  stead__wset *ws[BATCH];
  long k = 0;
  unsigned seed = 42;
  for (long o = 0; o < objects; o += BATCH) {
    size_t n = (size_t)(objects - o < BATCH ? objects - o : BATCH);
    for (size_t j = 0; j < n; j++) {
      char id[24];
      snprintf(id, sizeof id, "obj%07ld", o + (long)j);
      ws[j] = stead__wset_new("Bench", id);
      for (long a = 0; a < per_obj; a++, k++) {
        char name[24];
        snprintf(name, sizeof name, "a%ld", a);
        /* 1% overdue (spread over the last hour), the rest 1 h .. 31 days
         * ahead. */
        int64_t at = k % 100 == 0 ? now - 1 - rand_r(&seed) % 3600000
                                  : now + 3600000 + (int64_t)rand_r(&seed) % 2592000000LL;
        if ((rc = stead__wset_alarm_set(ws[j], name, at, 0, "m", 1)))
          die("wset", rc);
      }
    }
    if ((rc = b->vt->commit(b, ws, n)))
      die("commit", rc);
    for (size_t j = 0; j < n; j++) {
      /* What the runtime does after each durable commit. */
      for (const stead__onode *e =
               stead__omap_seek(&ws[j]->alarms, NULL, 0, STEAD__SEEK_GE);
           e; e = stead__omap_seek(&ws[j]->alarms, e->key, e->klen, STEAD__SEEK_GT)) {
        stead__alarm a;
        stead__wset_alarm_decode(e, &a);
        char name[24];
        snprintf(name, sizeof name, "%.*s", (int)e->klen, (const char *)e->key);
        stead__alarms_notify_set(s, ws[j]->cls, ws[j]->id, name, a.at_ms, a.attempt,
                                 a.meta, a.meta_len);
      }
      stead__wset_unref(ws[j]);
    }
  }
  double sched_s = (double)(stead__mono_ns() - t0) / 1e9;
  stead__alarm_stats st;
  stead__alarms_stats(s, &st);
  long rss_sched = rss_mb();
  uint64_t mem_sched = st.pending;
  stead__alarms_stop(s);
  stead__backend_close(b);

  /* ---- 2. restart and catch-up ---- */
  int64_t t_restart = wall_us();
  if ((rc = stead__backend_open(spec, &b)))
    die("reopen", rc);
  r.b = b;
  s = start(b, &r);
  r.s = s;
  pthread_t ct;
  pthread_create(&ct, NULL, consumer, &r);
  int64_t catchup_end = 0;
  for (;;) {
    pthread_mutex_lock(&r.mu);
    uint64_t nf = r.nfired;
    pthread_mutex_unlock(&r.mu);
    if ((long)nf >= due_now) {
      catchup_end = wall_us();
      break;
    }
    if (wall_us() - t_restart > 120000000)
      die("catch-up timed out", STEAD_ETIMEDOUT);
    sleep_us(200);
  }
  double first_ms = (double)(r.first_fire_us - t_restart) / 1e3;
  double catchup_s = (double)(catchup_end - t_restart) / 1e6;
  stead__alarms_stats(s, &st);
  uint64_t peak_catchup = st.pending_peak;
  long rss_restart = rss_mb();

  /* ---- 3. steady rate ---- */
  long steady = rate * secs;
  r.late_cap = (size_t)steady;
  r.late_us = calloc((size_t)steady, sizeof *r.late_us);
  pthread_mutex_lock(&r.mu);
  r.record_late = 1;
  pthread_mutex_unlock(&r.mu);
  int64_t start_us = wall_us();
  long tick_per = rate / 100; /* one commit every 10 ms */
  for (long t = 0, made = 0; made < steady; t++) {
    sleep_us(start_us + t * 10000 - wall_us());
    size_t n = (size_t)(tick_per < BATCH ? tick_per : BATCH);
    int64_t base = stead__wall_ms() + 500;
    for (size_t j = 0; j < n; j++, made++) {
      char id[24];
      snprintf(id, sizeof id, "steady%07ld", made);
      ws[j] = stead__wset_new("Bench", id);
      stead__wset_alarm_set(ws[j], "tick", base + (int64_t)(j * 10 / n), 0, NULL, 0);
    }
    if ((rc = b->vt->commit(b, ws, n)))
      die("steady commit", rc);
    for (size_t j = 0; j < n; j++) {
      stead__alarms_notify_set(s, "Bench", ws[j]->id, "tick",
                               base + (int64_t)(j * 10 / n), 0, NULL, 0);
      stead__wset_unref(ws[j]);
    }
  }
  /* Let the last ones fire. */
  for (int64_t end = wall_us() + 3000000; wall_us() < end;) {
    pthread_mutex_lock(&r.mu);
    size_t nl = r.nlate;
    pthread_mutex_unlock(&r.mu);
    if ((long)nl >= steady)
      break;
    sleep_us(10000);
  }
  stead__alarms_stats(s, &st);
  long rss_end = rss_mb();
  stead__alarms_stop(s);
  pthread_mutex_lock(&r.mu);
  r.stop = 1;
  pthread_cond_signal(&r.cv);
  pthread_mutex_unlock(&r.mu);
  pthread_join(ct, NULL);
  stead__backend_close(b);

  size_t nl = r.nlate;
  qsort(r.late_us, nl, sizeof *r.late_us, cmp_i64);
  double p50 = nl ? (double)r.late_us[nl / 2] / 1e3 : -1;
  double p99 = nl ? (double)r.late_us[nl * 99 / 100] / 1e3 : -1;
  double mx = nl ? (double)r.late_us[nl - 1] / 1e3 : -1;

  printf(
      "alarm scheduler benchmark (SQLite, durability=normal, %ld objects x %ld alarms)\n",
      objects, per_obj);
  printf("| metric | value | target |\n|---|---|---|\n");
  printf("| schedule %ld alarms (commits of %d objects + notify) | %.2f s (%.0f "
         "alarms/s) | |\n",
         total, BATCH, sched_s, (double)total / sched_s);
  printf("| peak RSS after scheduling (%ld pending) | %ld MB | <= 200 MB |\n", total,
         rss_sched);
  printf("| alarms in scheduler memory after scheduling | %llu | |\n",
         (unsigned long long)mem_sched);
  printf("| restart to first fire | %.1f ms | |\n", first_ms);
  printf("| catch-up of %ld overdue alarms (fire + delete commit + done) | %.2f s | |\n",
         due_now, catchup_s);
  printf("| peak alarms in memory during catch-up | %llu | <= page + inflight = 2000 |\n",
         (unsigned long long)peak_catchup);
  printf("| steady %ld alarms/s for %ld s: fired | %zu of %ld | |\n", rate, secs, nl,
         steady);
  printf("| lateness p50 / p99 / max | %.2f / %.2f / %.2f ms | p99 <= 10 ms |\n", p50,
         p99, mx);
  printf("| peak RSS after restart / at end | %ld / %ld MB | <= 200 MB |\n", rss_restart,
         rss_end);
  printf("| pages loaded / rows loaded / refused fires | %llu / %llu / %llu | |\n",
         (unsigned long long)st.pages_loaded, (unsigned long long)st.rows_loaded,
         (unsigned long long)st.refused);
  if (dir == tmp) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) {
      /* best effort */
    }
  }
  free(r.late_us);
  free(r.q);
  return 0;
}
