/*
 * bench_storage.c -- durable write rate: raw SQLite baselines against the
 * group committer, in one program on one disk.
 *
 *   sqlite 1 row/txn     : INSERT + COMMIT per row (synchronous=FULL, WAL)
 *   sqlite 100 rows/txn  : the same, 100 rows per transaction
 *   committer full/normal: write sets (one 64-byte value each) for 1,000
 *                          objects, submitted from THREADS threads, each
 *                          keeping up to WINDOW sets in flight (objects
 *                          whose turns wait on the output gate while the
 *                          workers move on to other objects)
 *
 * Usage: bench_storage [DIR] [SECONDS] [THREADS]; env BENCH_MAX_BATCH sets
 * the committer's max_batch (default 256). Prints a markdown table.
 */
#include "storage/backend.h"
#include "storage/committer.h"
#include "util/util.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOBJ   1000
#define VLEN   64
#define WINDOW 256

static double now_s(void) {
  return (double)stead__mono_ns() / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "bench_storage: %s: %s\n", what, stead_errmsg());
  exit(1);
}

/* Raw SQLite: rows per second with `per_txn` rows per transaction. */
static double raw_sqlite(const char *dir, int per_txn, double secs) {
  char path[512];
  snprintf(path, sizeof path, "%s/raw-%d.db", dir, per_txn);
  unlink(path);
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    die("sqlite open");
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
               NULL, NULL, NULL);
  sqlite3_stmt *ins;
  sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv VALUES(?1, ?2)", -1, &ins, NULL);
  uint8_t val[VLEN];
  memset(val, 'v', sizeof val);
  long rows = 0;
  double t0 = now_s(), t;
  do {
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (int i = 0; i < per_txn; i++, rows++) {
      char k[32];
      int kl = snprintf(k, sizeof k, "obj%d/k", (int)(rows % NOBJ));
      sqlite3_bind_blob(ins, 1, k, kl, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 2, val, VLEN, SQLITE_STATIC);
      sqlite3_step(ins);
      sqlite3_reset(ins);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
      die("sqlite commit");
    t = now_s();
  } while (t - t0 < secs);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  return (double)rows / (t - t0);
}

typedef struct driver {
  stead__committer *c;
  int idx, nthreads;
  double until;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inflight;
  long done, failed;
} driver;

static void done_cb(void *u, stead__wset *ws, int rc) {
  driver *d = u;
  pthread_mutex_lock(&d->mu);
  d->inflight--;
  if (rc)
    d->failed++;
  else
    d->done++;
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->mu);
}

static void *drive(void *arg) {
  driver *d = arg;
  uint8_t val[VLEN];
  memset(val, 'v', sizeof val);
  long n = 0;
  while (now_s() < d->until) {
    pthread_mutex_lock(&d->mu);
    while (d->inflight >= WINDOW)
      pthread_cond_wait(&d->cv, &d->mu);
    d->inflight++;
    pthread_mutex_unlock(&d->mu);
    char id[32];
    /* Thread t owns objects t, t+T, t+2T, ... */
    snprintf(id, sizeof id, "obj%ld", (d->idx + n * d->nthreads) % NOBJ);
    n++;
    stead__wset *ws = stead__wset_new("bench", id);
    if (!ws || stead__wset_put(ws, 0, "k", 1, val, VLEN))
      die("wset");
    if (stead__committer_submit(d->c, ws, done_cb, d))
      die("submit");
    stead__wset_unref(ws);
  }
  pthread_mutex_lock(&d->mu);
  while (d->inflight > 0)
    pthread_cond_wait(&d->cv, &d->mu);
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

static double committer_rate(const char *dir, const char *durability, int nthreads,
                             double secs, double *avg_batch) {
  char spec[600];
  snprintf(spec, sizeof spec, "sqlite:%s/committer-%s.db?durability=%s", dir, durability,
           durability);
  char path[600];
  snprintf(path, sizeof path, "%s/committer-%s.db", dir, durability);
  unlink(path);
  stead__backend *b;
  stead__committer *c;
  if (stead__backend_open(spec, &b))
    die("open backend");
  stead__committer_opts co = {.max_batch = 256, .max_delay_us = 1000};
  if (getenv("BENCH_MAX_BATCH"))
    co.max_batch = (size_t)atoi(getenv("BENCH_MAX_BATCH"));
  if (stead__committer_start(b, &co, &c))
    die("start committer");
  driver d[8];
  pthread_t th[8];
  double t0 = now_s();
  for (int i = 0; i < nthreads; i++) {
    d[i] = (driver){.c = c, .idx = i, .nthreads = nthreads, .until = t0 + secs};
    pthread_mutex_init(&d[i].mu, NULL);
    pthread_cond_init(&d[i].cv, NULL);
    pthread_create(&th[i], NULL, drive, &d[i]);
  }
  long total = 0, failed = 0;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(th[i], NULL);
    total += d[i].done;
    failed += d[i].failed;
  }
  double t = now_s() - t0;
  stead__commit_stats st;
  stead__committer_stats(c, &st);
  *avg_batch = st.batches ? (double)st.batch_size_sum / (double)st.batches : 0;
  stead__committer_close(c);
  stead__backend_close(b);
  if (failed)
    fprintf(stderr, "bench_storage: %ld commits failed\n", failed);
  return (double)total / t;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "bench-storage-data";
  double secs = argc > 2 ? atof(argv[2]) : 3.0;
  int threads = argc > 3 ? atoi(argv[3]) : 4;
  if (threads < 1 || threads > 8)
    threads = 4;
  char mk[600];
  snprintf(mk, sizeof mk, "mkdir -p '%s'", dir);
  if (system(mk) != 0)
    die("mkdir");
  double one = raw_sqlite(dir, 1, secs);
  double hundred = raw_sqlite(dir, 100, secs);
  double bf, bn;
  double full = committer_rate(dir, "full", threads, secs, &bf);
  double normal = committer_rate(dir, "normal", threads, secs, &bn);
  printf(
      "| workload | durable writes/s | vs 1 row/txn | vs 100 rows/txn | avg batch |\n");
  printf("|---|---:|---:|---:|---:|\n");
  printf("| raw SQLite, 1 row per transaction (FULL, WAL) | %.0f | 1.0x | %.2fx | 1 |\n",
         one, one / hundred);
  printf("| raw SQLite, 100 rows per transaction (FULL, WAL) | %.0f | %.1fx | 1.00x | "
         "100 |\n",
         hundred, hundred / one);
  printf("| committer, durability=full, %d threads | %.0f | %.1fx | %.2fx | %.1f |\n",
         threads, full, full / one, full / hundred, bf);
  printf("| committer, durability=normal, %d threads | %.0f | %.1fx | %.2fx | %.1f |\n",
         threads, normal, normal / one, normal / hundred, bn);
  return 0;
}
