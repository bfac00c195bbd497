/*
 * sqlite_backend.c -- the embedded backend: one SQLite database file in WAL
 * mode.
 *
 * Threads: commits run on one writer connection (guarded by a mutex; in the
 * runtime only the committer thread writes). Reads run on a small pool of
 * reader connections, so a turn's read never waits behind a commit's
 * fsync: WAL lets readers see the last committed snapshot while the writer
 * works. Each connection owns its prepared statements.
 *
 * Durability: synchronous=FULL syncs the WAL at every commit; NORMAL syncs
 * only at checkpoints, so a power loss may drop the last commits but a
 * process crash does not (the WAL is in the OS page cache).
 *
 * Schema: versioned in table stead_schema; migrations[] brings an older file
 * forward in one transaction; a newer file is refused (ENOTSUP). A file that
 * is not a database, or is damaged, is refused at open with ECORRUPT.
 */
#include "storage/backend.h"
#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const migrations[] = {
    /* v1 */
    "CREATE TABLE kv(cls TEXT NOT NULL, id TEXT NOT NULL, ns INTEGER NOT NULL,"
    " k BLOB NOT NULL, v BLOB NOT NULL, PRIMARY KEY(cls, id, ns, k)) WITHOUT ROWID;"
    "CREATE TABLE alarms(cls TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,"
    " at INTEGER NOT NULL, attempt INTEGER NOT NULL, meta BLOB NOT NULL,"
    " PRIMARY KEY(cls, id, name)) WITHOUT ROWID;"
    "CREATE INDEX alarms_by_time ON alarms(at, cls, id, name);",
    /* v2: bus subscriptions are read across all objects at open (scan_ns);
     * a partial index keeps that off a full scan without taxing writes to
     * the other namespaces. */
    "CREATE INDEX kv_subs ON kv(ns, cls, id, k) WHERE ns = 2;",
};
_Static_assert(STEAD__NS_SUB == 2, "the kv_subs index (schema v2) is for STEAD__NS_SUB");
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* List statement variants: lower bound (none, >=, >) x upper (none, <) x
 * direction. */
#define NLIST 12

enum {
  S_GET,
  S_ALARMS_LIST,
  S_ALARMS_SCAN_FIRST,
  S_ALARMS_SCAN_AFTER,
  S_PUT,
  S_DEL,
  S_DEL_NS,
  S_ALARM_PUT,
  S_ALARM_DEL,
  S_ALARM_CLEAR,
  S_BEGIN,
  S_COMMIT,
  S_ROLLBACK,
  NSTMT
};

static const char *const stmt_sql[NSTMT] = {
    [S_GET] = "SELECT v FROM kv WHERE cls=?1 AND id=?2 AND ns=?3 AND k=?4",
    [S_ALARMS_LIST] = "SELECT name, at, attempt, meta FROM alarms WHERE cls=?1 AND "
                      "id=?2 ORDER BY at, name",
    [S_ALARMS_SCAN_FIRST] = "SELECT cls, id, name, at, attempt, meta FROM alarms "
                            "WHERE at <= ?1 ORDER BY at, cls, id, name LIMIT ?2",
    [S_ALARMS_SCAN_AFTER] =
        "SELECT cls, id, name, at, attempt, meta FROM alarms WHERE at <= ?1 AND "
        "(at, cls, id, name) > (?3, ?4, ?5, ?6) ORDER BY at, cls, id, name LIMIT ?2",
    [S_PUT] = "INSERT OR REPLACE INTO kv(cls, id, ns, k, v) VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_DEL] = "DELETE FROM kv WHERE cls=?1 AND id=?2 AND ns=?3 AND k=?4",
    [S_DEL_NS] = "DELETE FROM kv WHERE cls=?1 AND id=?2 AND ns=?3",
    [S_ALARM_PUT] = "INSERT OR REPLACE INTO alarms(cls, id, name, at, attempt, meta) "
                    "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [S_ALARM_DEL] = "DELETE FROM alarms WHERE cls=?1 AND id=?2 AND name=?3",
    [S_ALARM_CLEAR] = "DELETE FROM alarms WHERE cls=?1 AND id=?2",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

typedef struct conn {
  sqlite3 *db;
  sqlite3_stmt *st[NSTMT];
  sqlite3_stmt *list[NLIST];
  struct conn *next; /* reader free list */
} conn;

#define POOL_KEEP 16

typedef struct sq {
  stead__backend base;
  char *path;
  stead__backend_opts opts;
  pthread_mutex_t wmu; /* writer */
  conn *writer;
  pthread_mutex_t pmu; /* reader pool */
  conn *free_readers;
  int nfree;
} sq;

static int sqerr(sqlite3 *db, int src, const char *what, const char *path) {
  int code = STEAD_ESTORAGE;
  int prim = src & 0xff;
  if (prim == SQLITE_NOTADB || prim == SQLITE_CORRUPT)
    code = STEAD_ECORRUPT;
  else if (prim == SQLITE_NOMEM)
    code = STEAD_ENOMEM;
  const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(src);
  return stead__err(code, "sqlite %s (%s): %s", what, path, msg);
}

static void conn_close(conn *c) {
  if (!c)
    return;
  for (int i = 0; i < NSTMT; i++)
    sqlite3_finalize(c->st[i]);
  for (int i = 0; i < NLIST; i++)
    sqlite3_finalize(c->list[i]);
  sqlite3_close(c->db);
  free(c);
}

static int exec(sq *s, sqlite3 *db, const char *sql, const char *what) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : sqerr(db, rc, what, s->path);
}

static int conn_open(sq *s, int writer, conn **out) {
  conn *c = calloc(1, sizeof *c);
  if (!c)
    return STEAD_ENOMEM;
  int flags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(s->path, &c->db, flags, NULL);
  if (rc != SQLITE_OK) {
    rc = sqerr(c->db, rc, "open", s->path);
    conn_close(c);
    return rc;
  }
  sqlite3_extended_result_codes(c->db, 1);
  sqlite3_busy_timeout(c->db, s->opts.busy_timeout_ms);
  *out = c;
  return 0;
}

static sqlite3_stmt *stmt(sq *s, conn *c, int i, int *rc) {
  if (!c->st[i]) {
    int r = sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &c->st[i], NULL);
    if (r != SQLITE_OK) {
      *rc = sqerr(c->db, r, "prepare", s->path);
      return NULL;
    }
  }
  return c->st[i];
}

static int finish(sq *s, conn *c, sqlite3_stmt *st, int r, const char *what) {
  int rc = (r == SQLITE_DONE || r == SQLITE_ROW || r == SQLITE_OK)
               ? 0
               : sqerr(c->db, r, what, s->path);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc;
}

/* sqlite3_bind_blob treats a NULL pointer as SQL NULL; keys and values of
 * length 0 must stay blobs. */
static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n) {
  return sqlite3_bind_blob64(st, i, n ? p : "", n, SQLITE_STATIC);
}

static void bind_obj(sqlite3_stmt *st, const char *cls, const char *id) {
  sqlite3_bind_text(st, 1, cls, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
}

/* ---- reader pool ---- */

static int reader_get(sq *s, conn **out) {
  pthread_mutex_lock(&s->pmu);
  conn *c = s->free_readers;
  if (c) {
    s->free_readers = c->next;
    s->nfree--;
  }
  pthread_mutex_unlock(&s->pmu);
  if (c) {
    *out = c;
    return 0;
  }
  return conn_open(s, 0, out);
}

static void reader_put(sq *s, conn *c) {
  pthread_mutex_lock(&s->pmu);
  if (s->nfree < POOL_KEEP) {
    c->next = s->free_readers;
    s->free_readers = c;
    s->nfree++;
    c = NULL;
  }
  pthread_mutex_unlock(&s->pmu);
  conn_close(c);
}

/* ---- reads ---- */

static int sq_get(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                  const void *key, size_t klen, void **val, size_t *vlen) {
  sq *s = (sq *)b;
  conn *c;
  int rc = reader_get(s, &c);
  if (rc)
    return rc;
  sqlite3_stmt *st = stmt(s, c, S_GET, &rc);
  if (st) {
    bind_obj(st, cls, id);
    sqlite3_bind_int(st, 3, ns);
    bind_blob(st, 4, key, klen);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
      size_t n = (size_t)sqlite3_column_bytes(st, 0);
      const void *p = sqlite3_column_blob(st, 0);
      *val = malloc(n + 1);
      if (*val) {
        if (n)
          memcpy(*val, p, n);
        ((char *)*val)[n] = 0;
        *vlen = n;
      }
      rc = *val ? 0 : STEAD_ENOMEM;
    } else if (r == SQLITE_DONE) {
      rc = STEAD_ENOTFOUND;
    }
    int frc = finish(s, c, st, r, "get");
    if (frc)
      rc = frc;
  }
  reader_put(s, c);
  return rc;
}

static sqlite3_stmt *list_stmt(sq *s, conn *c, const stead__range *r, int *rc) {
  int lo = !r->lo ? 0 : r->lo_excl ? 2 : 1;
  int hi = r->hi ? 1 : 0;
  int idx = (lo * 2 + hi) * 2 + (r->reverse ? 1 : 0);
  if (c->list[idx])
    return c->list[idx];
  static const char *const los[] = {"", " AND k >= ?4", " AND k > ?4"};
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT k, v FROM kv WHERE cls=?1 AND id=?2 AND ns=?3%s%s ORDER BY k %s "
           "LIMIT ?6",
           los[lo], hi ? " AND k < ?5" : "", r->reverse ? "DESC" : "ASC");
  int x =
      sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->list[idx], NULL);
  if (x != SQLITE_OK) {
    *rc = sqerr(c->db, x, "prepare", s->path);
    return NULL;
  }
  return c->list[idx];
}

static int sq_list(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                   const stead__range *r, stead__kv_cb cb, void *u) {
  sq *s = (sq *)b;
  if (stead__range_empty(r))
    return 0;
  conn *c;
  int rc = reader_get(s, &c);
  if (rc)
    return rc;
  sqlite3_stmt *st = list_stmt(s, c, r, &rc);
  if (st) {
    bind_obj(st, cls, id);
    sqlite3_bind_int(st, 3, ns);
    if (r->lo)
      bind_blob(st, 4, r->lo, r->lo_len);
    if (r->hi)
      bind_blob(st, 5, r->hi, r->hi_len);
    sqlite3_bind_int64(st, 6, r->limit ? (sqlite3_int64)r->limit : -1);
    int x;
    while ((x = sqlite3_step(st)) == SQLITE_ROW) {
      rc = cb(u, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
              sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1));
      if (rc)
        break;
    }
    int frc = finish(s, c, st, x, "list");
    if (!rc)
      rc = frc;
  }
  reader_put(s, c);
  return rc < 0 ? rc : 0;
}

static int sq_scan_ns(stead__backend *b, uint8_t ns, stead__ns_cb cb, void *u) {
  sq *s = (sq *)b;
  conn *c;
  int rc = reader_get(s, &c);
  if (rc)
    return rc;
  /* The namespace is a literal, not a parameter, so the planner can use a
   * partial index for it (kv_subs). Rare call: prepared each time. */
  char sql[128];
  snprintf(sql, sizeof sql,
           "SELECT cls, id, k, v FROM kv WHERE ns = %d ORDER BY cls, id, k", (int)ns);
  sqlite3_stmt *st;
  int x = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
  if (x != SQLITE_OK) {
    rc = sqerr(c->db, x, "prepare", s->path);
    reader_put(s, c);
    return rc;
  }
  while ((x = sqlite3_step(st)) == SQLITE_ROW) {
    const char *cls = (const char *)sqlite3_column_text(st, 0);
    const char *id = (const char *)sqlite3_column_text(st, 1);
    const void *k = sqlite3_column_blob(st, 2);
    size_t kl = (size_t)sqlite3_column_bytes(st, 2);
    const void *v = sqlite3_column_blob(st, 3);
    size_t vl = (size_t)sqlite3_column_bytes(st, 3);
    if (!cls || !id) {
      rc = stead__err(STEAD_ENOMEM, "sqlite scan (%s): out of memory", s->path);
      break;
    }
    rc = cb(u, cls, id, k, kl, v, vl);
    if (rc)
      break;
  }
  if (!rc && x != SQLITE_DONE)
    rc = sqerr(c->db, x, "scan namespace", s->path);
  sqlite3_finalize(st);
  reader_put(s, c);
  return rc < 0 ? rc : 0;
}

static int sq_alarms_list(stead__backend *b, const char *cls, const char *id,
                          stead__alarm_cb cb, void *u) {
  sq *s = (sq *)b;
  conn *c;
  int rc = reader_get(s, &c);
  if (rc)
    return rc;
  sqlite3_stmt *st = stmt(s, c, S_ALARMS_LIST, &rc);
  if (st) {
    bind_obj(st, cls, id);
    int x;
    while ((x = sqlite3_step(st)) == SQLITE_ROW) {
      stead__alarm a = {
          .cls = cls,
          .id = id,
          .name = (const char *)sqlite3_column_text(st, 0),
          .at_ms = sqlite3_column_int64(st, 1),
          .attempt = (uint32_t)sqlite3_column_int64(st, 2),
          .meta = sqlite3_column_blob(st, 3),
          .meta_len = (size_t)sqlite3_column_bytes(st, 3),
      };
      rc = cb(u, &a);
      if (rc)
        break;
    }
    int frc = finish(s, c, st, x, "alarms_list");
    if (!rc)
      rc = frc;
  }
  reader_put(s, c);
  return rc < 0 ? rc : 0;
}

static int sq_alarms_scan(stead__backend *b, const stead__alarm_cursor *after,
                          int64_t until_ms, size_t limit, stead__alarm_cb cb, void *u) {
  sq *s = (sq *)b;
  conn *c;
  int rc = reader_get(s, &c);
  if (rc)
    return rc;
  sqlite3_stmt *st = stmt(s, c, after ? S_ALARMS_SCAN_AFTER : S_ALARMS_SCAN_FIRST, &rc);
  if (st) {
    sqlite3_bind_int64(st, 1, until_ms);
    sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
    if (after) {
      sqlite3_bind_int64(st, 3, after->at_ms);
      sqlite3_bind_text(st, 4, after->cls, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 5, after->id, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 6, after->name, -1, SQLITE_STATIC);
    }
    int x;
    while ((x = sqlite3_step(st)) == SQLITE_ROW) {
      stead__alarm a = {
          .cls = (const char *)sqlite3_column_text(st, 0),
          .id = (const char *)sqlite3_column_text(st, 1),
          .name = (const char *)sqlite3_column_text(st, 2),
          .at_ms = sqlite3_column_int64(st, 3),
          .attempt = (uint32_t)sqlite3_column_int64(st, 4),
          .meta = sqlite3_column_blob(st, 5),
          .meta_len = (size_t)sqlite3_column_bytes(st, 5),
      };
      rc = cb(u, &a);
      if (rc)
        break;
    }
    int frc = finish(s, c, st, x, "alarms_scan");
    if (!rc)
      rc = frc;
  }
  reader_put(s, c);
  return rc < 0 ? rc : 0;
}

/* ---- commit ---- */

static int run(sq *s, conn *c, int i, const char *what) {
  int rc = 0;
  sqlite3_stmt *st = stmt(s, c, i, &rc);
  if (!st)
    return rc;
  return finish(s, c, st, sqlite3_step(st), what);
}

static int apply(sq *s, conn *c, const stead__wset *ws) {
  int rc = 0;
  sqlite3_stmt *st;
  for (int ns = 0; ns < STEAD__NS_MAX; ns++) {
    if (!(ws->clear_mask & (1ull << ns)))
      continue;
    if (!(st = stmt(s, c, S_DEL_NS, &rc)))
      return rc;
    bind_obj(st, ws->cls, ws->id);
    sqlite3_bind_int(st, 3, ns);
    if ((rc = finish(s, c, st, sqlite3_step(st), "delete_all")))
      return rc;
  }
  for (stead__onode *e = stead__omap_seek(&ws->kv, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->kv, e->key, e->klen, STEAD__SEEK_GT)) {
    int tomb = e->flags & STEAD__TOMB;
    if (!(st = stmt(s, c, tomb ? S_DEL : S_PUT, &rc)))
      return rc;
    bind_obj(st, ws->cls, ws->id);
    sqlite3_bind_int(st, 3, e->key[0]);
    bind_blob(st, 4, e->key + 1, e->klen - 1);
    if (!tomb)
      bind_blob(st, 5, e->val, e->vlen);
    if ((rc = finish(s, c, st, sqlite3_step(st), tomb ? "delete" : "put")))
      return rc;
  }
  if (ws->alarms_clear) {
    if (!(st = stmt(s, c, S_ALARM_CLEAR, &rc)))
      return rc;
    bind_obj(st, ws->cls, ws->id);
    if ((rc = finish(s, c, st, sqlite3_step(st), "alarms_clear")))
      return rc;
  }
  for (stead__onode *e = stead__omap_seek(&ws->alarms, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->alarms, e->key, e->klen, STEAD__SEEK_GT)) {
    int tomb = e->flags & STEAD__TOMB;
    if (!(st = stmt(s, c, tomb ? S_ALARM_DEL : S_ALARM_PUT, &rc)))
      return rc;
    bind_obj(st, ws->cls, ws->id);
    sqlite3_bind_text64(st, 3, (const char *)e->key, e->klen, SQLITE_STATIC, SQLITE_UTF8);
    if (!tomb) {
      stead__alarm a;
      stead__wset_alarm_decode(e, &a);
      sqlite3_bind_int64(st, 4, a.at_ms);
      sqlite3_bind_int64(st, 5, a.attempt);
      bind_blob(st, 6, a.meta, a.meta_len);
    }
    if ((rc = finish(s, c, st, sqlite3_step(st), tomb ? "alarm delete" : "alarm put")))
      return rc;
  }
  return 0;
}

static int sq_commit(stead__backend *b, stead__wset *const *sets, size_t n) {
  sq *s = (sq *)b;
  pthread_mutex_lock(&s->wmu);
  conn *c = s->writer;
  int rc = run(s, c, S_BEGIN, "begin");
  if (!rc) {
    for (size_t i = 0; i < n && !rc; i++)
      rc = apply(s, c, sets[i]);
    if (!rc)
      rc = run(s, c, S_COMMIT, "commit");
    if (rc) {
      /* Keep the first error's message: rollback may overwrite it. */
      char msg[512];
      snprintf(msg, sizeof msg, "%s", stead_errmsg());
      if (!sqlite3_get_autocommit(c->db))
        run(s, c, S_ROLLBACK, "rollback");
      stead__err(rc, "%s", msg);
    }
  }
  pthread_mutex_unlock(&s->wmu);
  return rc;
}

static void sq_close(stead__backend *b) {
  sq *s = (sq *)b;
  conn *c = s->free_readers;
  while (c) {
    conn *nx = c->next;
    conn_close(c);
    c = nx;
  }
  conn_close(s->writer);
  pthread_mutex_destroy(&s->wmu);
  pthread_mutex_destroy(&s->pmu);
  free(s->path);
  free(s);
}

static const stead__backend_vt sq_vt = {
    .name = "sqlite",
    .get = sq_get,
    .list = sq_list,
    .commit = sq_commit,
    .alarms_list = sq_alarms_list,
    .alarms_scan = sq_alarms_scan,
    .scan_ns = sq_scan_ns,
    .close = sq_close,
};

/* ---- open ---- */

static int mkdir_parents(const char *path) {
  char *p = stead__strdup(path);
  if (!p)
    return STEAD_ENOMEM;
  for (char *q = p + 1; *q; q++) {
    if (*q != '/')
      continue;
    *q = 0;
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      int e = errno;
      int rc = stead__err(STEAD_EIO, "cannot create directory %s: %s", p, strerror(e));
      free(p);
      return rc;
    }
    *q = '/';
  }
  free(p);
  return 0;
}

static int get_version(sq *s, sqlite3 *db, int *ver) {
  sqlite3_stmt *st;
  int r = sqlite3_prepare_v2(db, "SELECT max(version) FROM stead_schema", -1, &st, NULL);
  if (r != SQLITE_OK)
    return sqerr(db, r, "read schema version", s->path);
  r = sqlite3_step(st);
  *ver = r == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  int rc = (r == SQLITE_ROW || r == SQLITE_DONE)
               ? 0
               : sqerr(db, r, "read schema version", s->path);
  sqlite3_finalize(st);
  return rc;
}

static int migrate(sq *s, sqlite3 *db) {
  int rc = exec(s, db, "BEGIN IMMEDIATE", "begin migration");
  if (rc)
    return rc;
  rc = exec(s, db, "CREATE TABLE IF NOT EXISTS stead_schema(version INTEGER NOT NULL)",
            "create schema table");
  int ver = 0;
  if (!rc)
    rc = get_version(s, db, &ver);
  if (!rc && ver > SCHEMA_VERSION)
    rc = stead__err(STEAD_ENOTSUP,
                    "sqlite (%s): database schema version %d is newer than this "
                    "build supports (%d)",
                    s->path, ver, SCHEMA_VERSION);
  for (int v = ver; !rc && v < SCHEMA_VERSION; v++) {
    rc = exec(s, db, migrations[v], "migrate");
    if (!rc) {
      char sql[96];
      snprintf(sql, sizeof sql,
               "DELETE FROM stead_schema; INSERT INTO stead_schema "
               "VALUES(%d)",
               v + 1);
      rc = exec(s, db, sql, "record schema version");
    }
  }
  if (!rc)
    return exec(s, db, "COMMIT", "commit migration");
  char msg[512];
  snprintf(msg, sizeof msg, "%s", stead_errmsg());
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return stead__err(rc, "%s", msg);
}

static int setup_writer(sq *s) {
  int rc = conn_open(s, 1, &s->writer);
  if (rc)
    return rc;
  sqlite3 *db = s->writer->db;
  /* journal_mode reads the file header: garbage fails here with NOTADB. */
  sqlite3_stmt *st;
  int r = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
  if (r == SQLITE_OK) {
    r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
      const char *mode = (const char *)sqlite3_column_text(st, 0);
      if (!mode || strcmp(mode, "wal") != 0) {
        sqlite3_finalize(st);
        return stead__err(STEAD_ESTORAGE, "sqlite (%s): cannot enable WAL mode (got %s)",
                          s->path, mode ? mode : "nothing");
      }
      r = SQLITE_OK;
    }
    sqlite3_finalize(st);
  }
  if (r != SQLITE_OK)
    return sqerr(db, r, "open", s->path);
  rc = exec(s, db,
            s->opts.durability == STEAD__DURABLE_FULL ? "PRAGMA synchronous=FULL"
                                                      : "PRAGMA synchronous=NORMAL",
            "set synchronous");
  if (!rc)
    rc = migrate(s, db);
  /* A damaged page elsewhere in the file shows up on first use; check the
   * tables we own can be read so open, not the first turn, reports it. */
  if (!rc)
    rc = exec(s, db,
              "SELECT count(*) FROM (SELECT 1 FROM kv LIMIT 1);"
              "SELECT count(*) FROM (SELECT 1 FROM alarms LIMIT 1)",
              "check tables");
  return rc;
}

int stead__sqlite_open(const char *path, const stead__backend_opts *o,
                       stead__backend **out) {
  if (!path || !*path)
    return stead__err(STEAD_EINVAL, "sqlite backend needs a file path");
  int rc = mkdir_parents(path);
  if (rc)
    return rc;
  sq *s = calloc(1, sizeof *s);
  if (!s || !(s->path = stead__strdup(path))) {
    free(s);
    return stead__err(STEAD_ENOMEM, "out of memory opening sqlite backend");
  }
  s->base.vt = &sq_vt;
  if (o)
    s->opts = *o;
  if (s->opts.busy_timeout_ms <= 0)
    s->opts.busy_timeout_ms = 5000;
  pthread_mutex_init(&s->wmu, NULL);
  pthread_mutex_init(&s->pmu, NULL);
  rc = setup_writer(s);
  if (rc) {
    sq_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}
