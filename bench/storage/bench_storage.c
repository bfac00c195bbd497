/*
 * bench_storage.c -- durable write rate: raw SQLite and raw libpq
 * baselines against the group committer on each backend, in one program on
 * one disk.
 *
 *   sqlite 1 row/txn     : INSERT + COMMIT per row (synchronous=FULL, WAL)
 *   sqlite 100 rows/txn  : the same, 100 rows per transaction
 *   committer full/normal: write sets (one 64-byte value each) for 1,000
 *                          objects, submitted from THREADS threads, each
 *                          keeping up to WINDOW sets in flight (objects
 *                          whose turns wait on the output gate while the
 *                          workers move on to other objects)
 *   PostgreSQL column      : the same on a PostgreSQL 15 this program starts
 *                          (fsync and synchronous_commit on) with the tests'
 *                          helper (tests/storage/pg_helper.h): raw libpq with
 *                          one INSERT round trip per row, then the committer
 *                          through the PostgreSQL backend
 *
 * Usage: bench_storage [DIR] [SECONDS] [THREADS]; env BENCH_MAX_BATCH sets
 * the committer's max_batch (default 256). Prints a markdown table.
 */
#include "storage/backend.h"
#include "storage/committer.h"
#include "util/util.h"

#include "storage/pg_helper.h" /* tests/storage/ */

#include <libpq-fe.h>
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

static void pg_ok(PGconn *c, PGresult *r, const char *what) {
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    fprintf(stderr, "bench_storage: %s: %s", what, PQerrorMessage(c));
    exit(1);
  }
  PQclear(r);
}

/* Raw libpq: rows per second with `per_txn` rows per transaction, one
 * prepared INSERT round trip per row. */
static double raw_pg(const char *uri, int per_txn, double secs) {
  PGconn *c = PQconnectdb(uri);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "bench_storage: %s", PQerrorMessage(c));
    exit(1);
  }
  pg_ok(c,
        PQexec(c, "SET client_min_messages = warning; DROP TABLE IF EXISTS raw_kv; "
                  "CREATE TABLE raw_kv(k bytea PRIMARY KEY, "
                  "v bytea NOT NULL)"),
        "create");
  pg_ok(c,
        PQprepare(c, "ins",
                  "INSERT INTO raw_kv VALUES($1, $2) ON CONFLICT (k) DO UPDATE SET v = "
                  "EXCLUDED.v",
                  2, NULL),
        "prepare");
  char val[VLEN];
  memset(val, 'v', sizeof val);
  long rows = 0;
  double t0 = now_s(), t;
  do {
    if (per_txn > 1)
      pg_ok(c, PQexec(c, "BEGIN"), "begin");
    for (int i = 0; i < per_txn; i++, rows++) {
      char k[32];
      int kl = snprintf(k, sizeof k, "obj%d/k", (int)(rows % NOBJ));
      const char *v[2] = {k, val};
      int len[2] = {kl, VLEN}, fmt[2] = {1, 1};
      pg_ok(c, PQexecPrepared(c, "ins", 2, v, len, fmt, 0), "insert");
    }
    if (per_txn > 1)
      pg_ok(c, PQexec(c, "COMMIT"), "commit");
    t = now_s();
  } while (t - t0 < secs);
  PQfinish(c);
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

static double committer_rate(const char *spec, int nthreads, double secs,
                             double *avg_batch) {
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

static double sqlite_committer(const char *dir, const char *durability, int nthreads,
                               double secs, double *avg_batch) {
  char spec[600], path[600];
  snprintf(spec, sizeof spec, "sqlite:%s/committer-%s.db?durability=%s", dir, durability,
           durability);
  snprintf(path, sizeof path, "%s/committer-%s.db", dir, durability);
  unlink(path);
  return committer_rate(spec, nthreads, secs, avg_batch);
}

static double pg_committer(const char *durability, int nthreads, double secs,
                           double *avg_batch) {
  char spec[600], prefix[32];
  snprintf(prefix, sizeof prefix, "bench_%s", durability);
  snprintf(spec, sizeof spec, "%s?prefix=%s&durability=%s", pgh_server.uri, prefix,
           durability);
  /* A fresh table for each run. */
  PGconn *c = PQconnectdb(pgh_server.uri);
  char sql[400];
  snprintf(sql, sizeof sql,
           "SET client_min_messages = warning; DROP TABLE IF EXISTS %s_kv, %s_alarms, "
           "%s_leases, %s_schema",
           prefix, prefix, prefix, prefix);
  PQclear(PQexec(c, sql));
  PQfinish(c);
  return committer_rate(spec, nthreads, secs, avg_batch);
}

typedef struct row {
  const char *what;
  double sq, pg, sq_batch, pg_batch;
} row;

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
  int pg = pgh_start(1);
  if (pg < 0)
    die("start postgres");
  row rows[4] = {
      {"raw, 1 row per transaction", raw_sqlite(dir, 1, secs), 0, 1, 1},
      {"raw, 100 rows per transaction", raw_sqlite(dir, 100, secs), 0, 100, 100},
      {"committer, durability=full", 0, 0, 0, 0},
      {"committer, durability=normal", 0, 0, 0, 0},
  };
  rows[2].sq = sqlite_committer(dir, "full", threads, secs, &rows[2].sq_batch);
  rows[3].sq = sqlite_committer(dir, "normal", threads, secs, &rows[3].sq_batch);
  if (pg == 0) {
    rows[0].pg = raw_pg(pgh_server.uri, 1, secs);
    rows[1].pg = raw_pg(pgh_server.uri, 100, secs);
    rows[2].pg = pg_committer("full", threads, secs, &rows[2].pg_batch);
    rows[3].pg = pg_committer("normal", threads, secs, &rows[3].pg_batch);
  }
  printf("%d submitting threads; raw SQLite: WAL, synchronous=FULL; raw PostgreSQL: "
         "libpq, one round trip per row, fsync and synchronous_commit on\n\n",
         threads);
  printf(
      "| workload | SQLite writes/s | vs 1 row/txn | avg batch | PostgreSQL writes/s | "
      "vs 1 row/txn | avg batch |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < 4; i++) {
    printf("| %s | %.0f | %.1fx | %.1f |", rows[i].what, rows[i].sq,
           rows[i].sq / rows[0].sq, rows[i].sq_batch);
    if (pg == 0)
      printf(" %.0f | %.1fx | %.1f |\n", rows[i].pg, rows[i].pg / rows[0].pg,
             rows[i].pg_batch);
    else
      printf(" skipped | | |\n");
  }
  pgh_stop();
  return 0;
}
