/*
 * bench/turns -- durable turns per second through the whole runtime.
 *
 * Each turn writes one 64-byte value to its own object and replies after
 * its commit is durable (the output gate). 1,000 objects, each with one
 * call in flight at a time (the next call starts from the previous one's
 * completion), 2 workers, SQLite with durability full and normal. Beside
 * it, in the same run and on the same disk: raw SQLite inserting one row
 * per transaction, and 100 rows per transaction (synchronous=FULL, WAL).
 *
 * Usage: bench_turns [DIR] [SECONDS] [--only-turns]  (the last for profiling)
 */
#include "stead.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOBJ 1000
#define VLEN 64

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench_turns: %s: %s\n", what, why);
  exit(1);
}

/* Raw SQLite: rows/s for `per_txn` rows per transaction, synchronous=FULL. */
static double raw_sqlite(const char *dir, int per_txn, double secs) {
  char path[512];
  snprintf(path, sizeof path, "%s/raw-%d.db", dir, per_txn);
  remove(path);
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    die("sqlite3_open", sqlite3_errmsg(db));
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE kv(k INTEGER PRIMARY KEY, v BLOB)",
               NULL, NULL, NULL);
  sqlite3_stmt *ins;
  sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv(k, v) VALUES(?1, ?2)", -1, &ins,
                     NULL);
  char v[VLEN];
  memset(v, 'v', sizeof v);
  long rows = 0;
  double t0 = now_s(), t;
  do {
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (int i = 0; i < per_txn; i++, rows++) {
      sqlite3_bind_int64(ins, 1, rows % NOBJ);
      sqlite3_bind_blob(ins, 2, v, VLEN, SQLITE_STATIC);
      sqlite3_step(ins);
      sqlite3_reset(ins);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
      die("commit", sqlite3_errmsg(db));
  } while ((t = now_s()) - t0 < secs);
  sqlite3_finalize(ins);
  sqlite3_close(db);
  return (double)rows / (t - t0);
}

static int put(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_put(ctx, "v", 1, arg, len);
}

static const stead_method methods[] = {{"put", put}, {NULL, NULL}};
static const stead_class cls = {.name = "w", .methods = methods};

typedef struct run {
  stead_rt *rt;
  atomic_long done;
  atomic_int stop, outstanding;
  char ids[NOBJ][16];
  char val[VLEN];
} run;

typedef struct slot {
  run *r;
  int i;
} slot;

static void issue(slot *s);

static void completed(const stead_result *res, void *udata) {
  slot *s = udata;
  if (res->status != 0)
    die("call", res->message);
  atomic_fetch_add(&s->r->done, 1);
  if (atomic_load(&s->r->stop))
    atomic_fetch_sub(&s->r->outstanding, 1);
  else
    issue(s);
}

static void issue(slot *s) {
  run *r = s->r;
  if (stead_call_async(r->rt, "w", r->ids[s->i], "put", r->val, VLEN, 60000, completed,
                       s))
    die("call_async", stead_errmsg());
}

static double turns_rate(const char *dir, int durability, double secs) {
  char spec[600];
  snprintf(spec, sizeof spec, "sqlite:%s/turns-%d.db", dir, durability);
  remove(spec + 7);
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = spec;
  cfg.durability = durability;
  run *r = calloc(1, sizeof *r);
  memset(r->val, 'v', VLEN);
  if (stead_open(&cfg, &r->rt) || stead_register(r->rt, &cls))
    die("open", stead_errmsg());
  slot *slots = calloc(NOBJ, sizeof *slots);
  atomic_store(&r->outstanding, NOBJ);
  double t0 = now_s();
  for (int i = 0; i < NOBJ; i++) {
    snprintf(r->ids[i], sizeof r->ids[i], "o%d", i);
    slots[i] = (slot){r, i};
    issue(&slots[i]);
  }
  struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
  nanosleep(&ts, NULL);
  long n = atomic_load(&r->done);
  double t = now_s();
  atomic_store(&r->stop, 1);
  stead_close(r->rt); /* drains the last calls */
  free(slots);
  free(r);
  return (double)n / (t - t0);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/tmp/stead-bench-turns";
  double secs = argc > 2 ? atof(argv[2]) : 3.0;
  char mk[600];
  snprintf(mk, sizeof mk, "mkdir -p '%s'", dir);
  if (system(mk) != 0)
    die("mkdir", dir);
  int only = argc > 3 && strcmp(argv[3], "--only-turns") == 0;
  double one = only ? 1 : raw_sqlite(dir, 1, secs);
  double hundred = only ? 1 : raw_sqlite(dir, 100, secs);
  double full = turns_rate(dir, STEAD_DURABILITY_FULL, secs);
  double normal = turns_rate(dir, STEAD_DURABILITY_NORMAL, secs);
  printf("bench/turns: durable turns (one 64-byte put each, reply after commit), "
         "1,000 objects, 2 workers\n\n");
  printf("| workload | per second | vs 1 row/txn | vs 100 rows/txn |\n");
  printf("|---|---:|---:|---:|\n");
  printf("| raw SQLite, 1 row per transaction (FULL, WAL) | %.0f | 1.0x | %.2fx |\n", one,
         one / hundred);
  printf("| raw SQLite, 100 rows per transaction (FULL, WAL) | %.0f | %.1fx | 1.00x |\n",
         hundred, hundred / one);
  printf("| stead turns, durability full | %.0f | %.1fx | %.2fx |\n", full, full / one,
         full / hundred);
  printf("| stead turns, durability normal | %.0f | %.1fx | %.2fx |\n", normal,
         normal / one, normal / hundred);
  return 0;
}
