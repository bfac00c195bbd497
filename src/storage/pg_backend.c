/*
 * pg_backend.c -- the shared backend: PostgreSQL through libpq, with the
 * shard leases that fence a cluster's writers (lease.h).
 *
 * Connections: one commit connection (guarded by wmu; in the runtime only
 * the committer thread writes) and a bounded pool of reader connections
 * (get/list/alarms/leases run in autocommit, one statement each). Each
 * connection prepares a statement the first time it runs it (the commit
 * connection: all write statements before its first batch), and connects
 * lazily: a broken one is dropped and reconnected on next use, with a
 * backoff (100 ms, doubling to 5 s) between failed attempts during which
 * calls fail fast with STEAD_ESTORAGE and the last server message. A read
 * that finds its connection broken reconnects and retries once (reads are
 * idempotent and callbacks run only after the whole result arrived).
 *
 * Commit: one transaction per batch. BEGIN, the fencing checks and every
 * statement of every set are pipelined (libpq pipeline mode, synced every
 * CHUNK statements so neither side's socket buffer can fill); COMMIT is then
 * sent on its own. So a failure before COMMIT is known not to have
 * committed (STEAD_ESTORAGE, and if only the connection broke the batch is
 * retried once on a new connection), while a connection lost after COMMIT
 * was sent and before its answer is STEAD_EUNKNOWN: it may have committed.
 *
 * Fencing: for each distinct (shard, epoch != 0) of the batch, the
 * transaction first reads the lease row FOR SHARE and requires that epoch,
 * unexpired by the database's clock. The share lock keeps a contender's
 * acquire waiting until this transaction ends, so no write of an old tenure
 * lands after a new tenure began. If any set's tenure is over, the WHOLE
 * batch fails with STEAD_ENOTOWNER (sets of other shards included).
 *
 * Schema: tables PREFIX_kv, PREFIX_alarms, PREFIX_leases and the version in
 * PREFIX_schema; migrations[] run in one transaction under an advisory lock
 * derived from the prefix, so nodes starting at once migrate once. Keys,
 * values and metas are bytea (bytewise order); class, id and alarm names
 * are text COLLATE "C" (bytewise order too).
 */
#include "storage/pg_backend.h"
#include "storage/lease.h"
#include "util/util.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* '@' stands for the table prefix. */
static const char *const migrations[] = {
    /* v1 */
    "CREATE TABLE @_kv(cls text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT "
    "NULL, ns smallint NOT NULL, k bytea NOT NULL, v bytea NOT NULL,"
    " PRIMARY KEY(cls, id, ns, k));"
    "CREATE TABLE @_alarms(cls text COLLATE \"C\" NOT NULL, id text COLLATE \"C\" NOT "
    "NULL, name text COLLATE \"C\" NOT NULL, at bigint NOT NULL, attempt bigint NOT "
    "NULL, meta bytea NOT NULL, PRIMARY KEY(cls, id, name));"
    "CREATE INDEX @_alarms_by_time ON @_alarms(at, cls, id, name);"
    "CREATE TABLE @_leases(shard bigint PRIMARY KEY, owner text NOT NULL,"
    " epoch bigint NOT NULL, expires timestamptz NOT NULL);"
    /* scan_ns reads bus subscriptions across all objects at open; a partial
     * index keeps that off a full scan and costs other namespaces nothing. */
    "CREATE INDEX @_kv_subs ON @_kv(cls, id, k) WHERE ns = 2;",
};
_Static_assert(STEAD__NS_SUB == 2, "the @_kv_subs index is for STEAD__NS_SUB");
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* Parameter types, one letter each: t text, b bytea, l int8, s int2. */
enum {
  S_GET,
  S_ALARMS_LIST,
  S_SCAN_FIRST,
  S_SCAN_AFTER,
  S_PUT,
  S_DEL,
  S_DEL_NS,
  S_ALARM_PUT,
  S_ALARM_DEL,
  S_ALARM_CLEAR,
  S_FENCE,
  S_LEASE_ACQ,
  S_LEASE_RENEW,
  S_LEASE_REL,
  S_LEASE_LIST,
  NSTMT
};

static const struct {
  const char *sql, *types;
} stmts[NSTMT] = {
    [S_GET] = {"SELECT v FROM @_kv WHERE cls=$1 AND id=$2 AND ns=$3 AND k=$4", "ttsb"},
    [S_ALARMS_LIST] = {"SELECT name, at, attempt, meta FROM @_alarms WHERE cls=$1 AND "
                       "id=$2 ORDER BY at, name",
                       "tt"},
    [S_SCAN_FIRST] = {"SELECT cls, id, name, at, attempt, meta FROM @_alarms WHERE at "
                      "<= $1 ORDER BY at, cls, id, name LIMIT $2",
                      "ll"},
    [S_SCAN_AFTER] = {"SELECT cls, id, name, at, attempt, meta FROM @_alarms WHERE at "
                      "<= $1 AND (at, cls, id, name) > ($3, $4 COLLATE \"C\", $5 "
                      "COLLATE \"C\", $6 COLLATE \"C\") ORDER BY at, cls, id, name "
                      "LIMIT $2",
                      "lllttt"},
    [S_PUT] = {"INSERT INTO @_kv(cls, id, ns, k, v) VALUES($1, $2, $3, $4, $5) ON "
               "CONFLICT (cls, id, ns, k) DO UPDATE SET v = EXCLUDED.v",
               "ttsbb"},
    [S_DEL] = {"DELETE FROM @_kv WHERE cls=$1 AND id=$2 AND ns=$3 AND k=$4", "ttsb"},
    [S_DEL_NS] = {"DELETE FROM @_kv WHERE cls=$1 AND id=$2 AND ns=$3", "tts"},
    [S_ALARM_PUT] = {"INSERT INTO @_alarms(cls, id, name, at, attempt, meta) "
                     "VALUES($1, $2, $3, $4, $5, $6) ON CONFLICT (cls, id, name) DO "
                     "UPDATE SET at = EXCLUDED.at, attempt = EXCLUDED.attempt, meta = "
                     "EXCLUDED.meta",
                     "tttllb"},
    [S_ALARM_DEL] = {"DELETE FROM @_alarms WHERE cls=$1 AND id=$2 AND name=$3", "ttt"},
    [S_ALARM_CLEAR] = {"DELETE FROM @_alarms WHERE cls=$1 AND id=$2", "tt"},
    [S_FENCE] = {"SELECT 1 FROM @_leases WHERE shard=$1 AND epoch=$2 AND expires > "
                 "clock_timestamp() FOR SHARE",
                 "ll"},
    /* A new tenure (epoch + 1) unless the row is ours and unexpired; the
     * WHERE refuses a row another owner holds unexpired (no row back). */
    [S_LEASE_ACQ] = {"INSERT INTO @_leases AS l(shard, owner, epoch, expires) "
                     "VALUES($1, $2, 1, clock_timestamp() + $3 * interval '1 ms') "
                     "ON CONFLICT (shard) DO UPDATE SET epoch = CASE WHEN l.owner = "
                     "EXCLUDED.owner AND l.expires > clock_timestamp() THEN l.epoch "
                     "ELSE l.epoch + 1 END, owner = EXCLUDED.owner, expires = "
                     "EXCLUDED.expires WHERE l.owner = EXCLUDED.owner OR l.expires <= "
                     "clock_timestamp() RETURNING l.epoch",
                     "ltl"},
    [S_LEASE_RENEW] = {"UPDATE @_leases SET expires = clock_timestamp() + $4 * "
                       "interval '1 ms' WHERE shard=$1 AND owner=$2 AND epoch=$3 AND "
                       "expires > clock_timestamp()",
                       "ltll"},
    [S_LEASE_REL] = {"UPDATE @_leases SET expires = '-infinity' WHERE shard=$1 AND "
                     "owner=$2 AND epoch=$3 AND expires > clock_timestamp()",
                     "ltl"},
    [S_LEASE_LIST] = {"SELECT shard, owner, epoch, CASE WHEN expires > "
                      "clock_timestamp() THEN greatest(1, ceil(extract(epoch FROM "
                      "expires - clock_timestamp()) * 1000))::bigint ELSE 0 END FROM "
                      "@_leases ORDER BY shard",
                      ""},
};

/* List variants: lower bound (none, >=, >) x upper (none, <) x direction. */
#define NLIST 12
#define CHUNK 256 /* pipelined statements between syncs */
_Static_assert(NSTMT + NLIST <= 32, "pconn.prepared is a 32-bit mask");

typedef struct pconn {
  PGconn *pg;
  int64_t next_try_ns; /* no reconnect before this (backoff) */
  int backoff_ms;
  uint32_t prepared; /* bit i: statement i (list variants after NSTMT) */
  char lasterr[256];
  struct pconn *next; /* reader free list */
} pconn;

typedef struct pgb {
  stead__backend base;
  char *conninfo;
  char prefix[48];
  char *sql[NSTMT];
  char *list_sql[NLIST];
  int normal; /* durability=normal */
  int pool;
  int stmt_timeout_ms;
  int lock_timeout_ms;
  int idle_tx_ms;
  pthread_mutex_t wmu;
  pconn writer;
  pthread_mutex_t pmu;
  pthread_cond_t pcv;
  pconn *readers; /* pool of them */
  pconn *free_readers;
} pgb;

static const stead__backend_vt pg_vt;

/* ---- helpers ---- */

/* The message of a failed call, without libpq's trailing newline. */
static int pgerr(int code, PGconn *pg, const PGresult *r, const char *what) {
  const char *m = r ? PQresultErrorMessage(r) : NULL;
  if (!m || !*m)
    m = pg ? PQerrorMessage(pg) : "no connection";
  size_t n = strlen(m);
  while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
    n--;
  return stead__err(code, "postgres %s: %.*s", what, (int)n, m);
}

/* Replaces every '@' with the prefix. */
static char *expand(const char *tmpl, const char *prefix) {
  stead__buf b = {0};
  for (const char *p = tmpl; *p; p++) {
    int rc = *p == '@' ? stead__buf_append(&b, prefix, strlen(prefix))
                       : stead__buf_append(&b, p, 1);
    if (rc) {
      stead__buf_free(&b);
      return NULL;
    }
  }
  if (stead__buf_append(&b, "", 1)) {
    stead__buf_free(&b);
    return NULL;
  }
  return (char *)b.data;
}

/* Binary parameters of one statement. */
typedef struct params {
  const char *v[8];
  int len[8];
  int fmt[8];
  unsigned char num[8][8];
  int n;
} params;

static void p_bytes(params *p, const void *d, size_t n) {
  p->v[p->n] = n ? d : "";
  p->len[p->n] = (int)n;
  p->fmt[p->n++] = 1;
}

static void p_text(params *p, const char *s) {
  p_bytes(p, s, strlen(s));
}

static void p_int(params *p, int64_t x, int size) {
  unsigned char *o = p->num[p->n];
  for (int i = 0; i < size; i++)
    o[i] = (unsigned char)((uint64_t)x >> (8 * (size - 1 - i)));
  p->v[p->n] = (const char *)o;
  p->len[p->n] = size;
  p->fmt[p->n++] = 1;
}

static void p_null(params *p) {
  p->v[p->n] = NULL;
  p->len[p->n] = 0;
  p->fmt[p->n++] = 1;
}

static int64_t r_int(const PGresult *r, int row, int col) {
  const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
  int n = PQgetlength(r, row, col);
  uint64_t x = (n > 0 && (v[0] & 0x80)) ? ~0ull : 0;
  for (int i = 0; i < n; i++)
    x = (x << 8) | v[i];
  return (int64_t)x;
}

/* ---- connections ---- */

static Oid type_oid(char t) {
  switch (t) {
  case 't':
    return 25; /* text */
  case 'b':
    return 17; /* bytea */
  case 's':
    return 21; /* int2 */
  default:
    return 20; /* int8 */
  }
}

static void stmt_name(int i, char name[16]) {
  if (i < NSTMT)
    snprintf(name, 16, "s%d", i);
  else
    snprintf(name, 16, "l%d", i - NSTMT);
}

/* Prepares statement i on `c` unless it already is. */
static int prepare(pgb *p, pconn *c, int idx) {
  if (c->prepared & (1u << idx))
    return 0;
  char name[16];
  stmt_name(idx, name);
  const char *sql = idx < NSTMT ? p->sql[idx] : p->list_sql[idx - NSTMT];
  const char *types = idx < NSTMT ? stmts[idx].types : "ttsbbl";
  Oid oids[8];
  int n = (int)strlen(types);
  for (int i = 0; i < n; i++)
    oids[i] = type_oid(types[i]);
  PGresult *r = PQprepare(c->pg, name, sql, n, oids);
  int rc =
      PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pgerr(STEAD_ESTORAGE, c->pg, r, name);
  PQclear(r);
  if (!rc)
    c->prepared |= 1u << idx;
  return rc;
}

static int exec_simple(pconn *c, const char *sql, const char *what) {
  PGresult *r = PQexec(c->pg, sql);
  ExecStatusType st = PQresultStatus(r);
  int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
               ? 0
               : pgerr(STEAD_ESTORAGE, c->pg, r, what);
  PQclear(r);
  return rc;
}

static void conn_drop(pconn *c) {
  if (c->pg)
    PQfinish(c->pg);
  c->pg = NULL;
  c->prepared = 0;
}

/* Session settings of a fresh connection. */
static int conn_setup(pgb *p, pconn *c, int writer) {
  int rc = 0;
  if (writer && p->normal)
    rc = exec_simple(c, "SET synchronous_commit = off", "session setup");
  char sql[96];
  if (!rc && p->stmt_timeout_ms) {
    snprintf(sql, sizeof sql, "SET statement_timeout = %d", p->stmt_timeout_ms);
    rc = exec_simple(c, sql, "session setup");
  }
  if (!rc && p->lock_timeout_ms) {
    snprintf(sql, sizeof sql, "SET lock_timeout = %d", p->lock_timeout_ms);
    rc = exec_simple(c, sql, "session setup");
  }
  if (!rc && p->idle_tx_ms) {
    snprintf(sql, sizeof sql, "SET idle_in_transaction_session_timeout = %d",
             p->idle_tx_ms);
    rc = exec_simple(c, sql, "session setup");
  }
  return rc;
}

/* Server notices are never printed (the library prints nothing). */
static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* Makes `c` usable: keeps a healthy connection, else reconnects unless the
 * backoff after a failed attempt still runs. */
static int conn_ensure(pgb *p, pconn *c, int writer) {
  if (c->pg) {
    /* Reads what the server sent while we were idle, e.g. the notice of a
     * terminated session, so a dead connection is noticed before use. */
    PQconsumeInput(c->pg);
    if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) == PQTRANS_IDLE)
      return 0;
    conn_drop(c);
  }
  int64_t now = stead__mono_ns();
  if (now < c->next_try_ns)
    return stead__err(STEAD_ESTORAGE,
                      "postgres unreachable, next reconnect in %lld ms; last error: %s",
                      (long long)((c->next_try_ns - now) / 1000000), c->lasterr);
  c->pg = PQconnectdb(p->conninfo);
  if (c->pg)
    PQsetNoticeProcessor(c->pg, quiet, NULL);
  int rc = 0;
  if (!c->pg)
    rc = stead__err(STEAD_ENOMEM, "postgres connect: out of memory");
  else if (PQstatus(c->pg) != CONNECTION_OK)
    rc = pgerr(STEAD_ESTORAGE, c->pg, NULL, "connect");
  else if (PQsetClientEncoding(c->pg, "UTF8") != 0)
    rc = pgerr(STEAD_ESTORAGE, c->pg, NULL, "set client encoding");
  else
    rc = conn_setup(p, c, writer);
  if (rc) {
    snprintf(c->lasterr, sizeof c->lasterr, "%s", stead_errmsg());
    conn_drop(c);
    c->backoff_ms =
        c->backoff_ms ? (c->backoff_ms * 2 > 5000 ? 5000 : c->backoff_ms * 2) : 100;
    c->next_try_ns = now + (int64_t)c->backoff_ms * 1000000;
    return rc;
  }
  c->backoff_ms = 0;
  c->next_try_ns = 0;
  return 0;
}

static int conn_broken(pconn *c) {
  return !c->pg || PQstatus(c->pg) != CONNECTION_OK;
}

/* ---- reader pool ---- */

static pconn *reader_get(pgb *p) {
  pthread_mutex_lock(&p->pmu);
  while (!p->free_readers)
    pthread_cond_wait(&p->pcv, &p->pmu);
  pconn *c = p->free_readers;
  p->free_readers = c->next;
  pthread_mutex_unlock(&p->pmu);
  return c;
}

static void reader_put(pgb *p, pconn *c) {
  pthread_mutex_lock(&p->pmu);
  c->next = p->free_readers;
  p->free_readers = c;
  pthread_cond_signal(&p->pcv);
  pthread_mutex_unlock(&p->pmu);
}

/* Runs one prepared read statement and returns its result (*out, which the
 * caller clears), retrying once on a fresh connection if the connection
 * broke. The pooled connection is returned before any callback runs, so a
 * callback may call the backend again. */
static int read_stmt(pgb *p, int i, const params *pa, const char *what, PGresult **out) {
  char name[16];
  stmt_name(i, name);
  pconn *c = reader_get(p);
  int rc = 0;
  *out = NULL;
  for (int attempt = 0; attempt < 2; attempt++) {
    if ((rc = conn_ensure(p, c, 0)) || (rc = prepare(p, c, i)))
      break;
    PGresult *r = PQexecPrepared(c->pg, name, pa->n, pa->v, pa->len, pa->fmt, 1);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      *out = r;
      rc = 0;
      break;
    }
    rc = pgerr(STEAD_ESTORAGE, c->pg, r, what);
    PQclear(r);
    if (!conn_broken(c))
      break;
  }
  reader_put(p, c);
  return rc;
}

/* ---- reads ---- */

static int pg_get(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                  const void *key, size_t klen, void **val, size_t *vlen) {
  pgb *p = (pgb *)b;
  params pa = {.n = 0};
  p_text(&pa, cls);
  p_text(&pa, id);
  p_int(&pa, ns, 2);
  p_bytes(&pa, key, klen);
  PGresult *r;
  int rc = read_stmt(p, S_GET, &pa, "get", &r);
  if (rc)
    return rc;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return STEAD_ENOTFOUND;
  }
  size_t n = (size_t)PQgetlength(r, 0, 0);
  char *v = malloc(n + 1);
  if (!v) {
    PQclear(r);
    return stead__err(STEAD_ENOMEM, "out of memory reading a value");
  }
  memcpy(v, PQgetvalue(r, 0, 0), n);
  v[n] = 0;
  PQclear(r);
  *val = v;
  *vlen = n;
  return 0;
}

static int list_idx(const stead__range *r) {
  int lo = !r->lo ? 0 : r->lo_excl ? 2 : 1;
  return (lo * 2 + (r->hi ? 1 : 0)) * 2 + (r->reverse ? 1 : 0);
}

static int pg_list(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                   const stead__range *rg, stead__kv_cb cb, void *u) {
  pgb *p = (pgb *)b;
  if (stead__range_empty(rg))
    return 0;
  params pa = {.n = 0};
  p_text(&pa, cls);
  p_text(&pa, id);
  p_int(&pa, ns, 2);
  if (rg->lo)
    p_bytes(&pa, rg->lo, rg->lo_len);
  else
    p_null(&pa);
  if (rg->hi)
    p_bytes(&pa, rg->hi, rg->hi_len);
  else
    p_null(&pa);
  if (rg->limit)
    p_int(&pa, (int64_t)rg->limit, 8);
  else
    p_null(&pa); /* LIMIT NULL: all */
  PGresult *r;
  int rc = read_stmt(p, NSTMT + list_idx(rg), &pa, "list", &r);
  if (rc)
    return rc;
  int n = PQntuples(r);
  for (int i = 0; i < n && !rc; i++)
    rc = cb(u, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0), PQgetvalue(r, i, 1),
            (size_t)PQgetlength(r, i, 1));
  PQclear(r);
  return rc < 0 ? rc : 0;
}

static int pg_alarms_list(stead__backend *b, const char *cls, const char *id,
                          stead__alarm_cb cb, void *u) {
  pgb *p = (pgb *)b;
  params pa = {.n = 0};
  p_text(&pa, cls);
  p_text(&pa, id);
  PGresult *r;
  int rc = read_stmt(p, S_ALARMS_LIST, &pa, "alarms_list", &r);
  if (rc)
    return rc;
  int n = PQntuples(r);
  for (int i = 0; i < n && !rc; i++) {
    stead__alarm a = {
        .cls = cls,
        .id = id,
        .name = PQgetvalue(r, i, 0), /* libpq NUL-terminates binary values too */
        .at_ms = r_int(r, i, 1),
        .attempt = (uint32_t)r_int(r, i, 2),
        .meta = PQgetvalue(r, i, 3),
        .meta_len = (size_t)PQgetlength(r, i, 3),
    };
    rc = cb(u, &a);
  }
  PQclear(r);
  return rc < 0 ? rc : 0;
}

static int pg_alarms_scan(stead__backend *b, const stead__alarm_cursor *after,
                          int64_t until_ms, size_t limit, stead__alarm_cb cb, void *u) {
  pgb *p = (pgb *)b;
  params pa = {.n = 0};
  p_int(&pa, until_ms, 8);
  if (limit)
    p_int(&pa, (int64_t)limit, 8);
  else
    p_null(&pa);
  if (after) {
    p_int(&pa, after->at_ms, 8);
    p_text(&pa, after->cls);
    p_text(&pa, after->id);
    p_text(&pa, after->name);
  }
  PGresult *r;
  int rc = read_stmt(p, after ? S_SCAN_AFTER : S_SCAN_FIRST, &pa, "alarms_scan", &r);
  if (rc)
    return rc;
  int n = PQntuples(r);
  for (int i = 0; i < n && !rc; i++) {
    stead__alarm a = {
        .cls = PQgetvalue(r, i, 0),
        .id = PQgetvalue(r, i, 1),
        .name = PQgetvalue(r, i, 2),
        .at_ms = r_int(r, i, 3),
        .attempt = (uint32_t)r_int(r, i, 4),
        .meta = PQgetvalue(r, i, 5),
        .meta_len = (size_t)PQgetlength(r, i, 5),
    };
    rc = cb(u, &a);
  }
  PQclear(r);
  return rc < 0 ? rc : 0;
}

static int pg_scan_ns(stead__backend *b, uint8_t ns, stead__ns_cb cb, void *u) {
  pgb *p = (pgb *)b;
  /* The namespace is a literal so the planner can pick the partial index;
   * a rare call, so it is not prepared. */
  char *sql = NULL, tmpl[128];
  snprintf(tmpl, sizeof tmpl,
           "SELECT cls, id, k, v FROM @_kv WHERE ns = %d ORDER BY cls, id, k", (int)ns);
  if (!(sql = expand(tmpl, p->prefix)))
    return stead__err(STEAD_ENOMEM, "out of memory");
  pconn *c = reader_get(p);
  PGresult *r = NULL;
  int rc = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    if ((rc = conn_ensure(p, c, 0)))
      break;
    r = PQexecParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      rc = 0;
      break;
    }
    rc = pgerr(STEAD_ESTORAGE, c->pg, r, "scan namespace");
    PQclear(r);
    r = NULL;
    if (!conn_broken(c))
      break;
  }
  reader_put(p, c);
  free(sql);
  if (rc)
    return rc;
  int n = PQntuples(r);
  for (int i = 0; i < n && !rc; i++)
    rc = cb(u, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
            (size_t)PQgetlength(r, i, 2), PQgetvalue(r, i, 3),
            (size_t)PQgetlength(r, i, 3));
  PQclear(r);
  return rc < 0 ? rc : 0;
}

/* ---- commit ---- */

/* State of one pipelined batch. */
typedef struct batch {
  pgb *p;
  pconn *c;
  int sent, recv;   /* statements queued / results read */
  int nfence;       /* results 1..nfence are fencing checks */
  int fenced;       /* a check found no row */
  uint32_t f_shard; /* the first such check */
  uint64_t f_epoch;
  uint64_t *fences; /* shard, epoch pairs sent, for the message */
  int failed;       /* an error result was read */
  char err[512];
} batch;

static int drain(batch *bt);

static int send_stmt(batch *bt, int i, const params *pa) {
  char name[8];
  snprintf(name, sizeof name, "s%d", i);
  if (!PQsendQueryPrepared(bt->c->pg, name, pa->n, pa->v, pa->len, pa->fmt, 1))
    return pgerr(STEAD_ESTORAGE, bt->c->pg, NULL, "commit");
  bt->sent++;
  if (bt->sent % CHUNK == 0)
    return drain(bt);
  return 0;
}

/* Syncs and reads every result up to the sync. Error results are recorded
 * (the server skips the rest of the pipeline up to the sync). */
static int drain(batch *bt) {
  PGconn *pg = bt->c->pg;
  if (!PQpipelineSync(pg))
    return pgerr(STEAD_ESTORAGE, pg, NULL, "commit");
  for (;;) {
    PGresult *r = PQgetResult(pg);
    if (!r) {
      if (conn_broken(bt->c))
        return pgerr(STEAD_ESTORAGE, pg, NULL, "commit");
      continue; /* end of one statement's results */
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      return 0;
    }
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR ||
        st == PGRES_BAD_RESPONSE) {
      if (!bt->failed) {
        pgerr(STEAD_ESTORAGE, pg, r, "commit");
        snprintf(bt->err, sizeof bt->err, "%s", stead_errmsg());
      }
      bt->failed = 1;
    } else if (st == PGRES_TUPLES_OK && bt->recv >= 1 && bt->recv <= bt->nfence &&
               PQntuples(r) == 0 && !bt->fenced) {
      bt->fenced = 1;
      bt->f_shard = (uint32_t)bt->fences[2 * (bt->recv - 1)];
      bt->f_epoch = bt->fences[2 * (bt->recv - 1) + 1];
    }
    bt->recv++;
    PQclear(r);
    if (conn_broken(bt->c))
      return pgerr(STEAD_ESTORAGE, pg, NULL, "commit");
  }
}

static void obj_params(params *pa, const stead__wset *ws) {
  pa->n = 0;
  p_text(pa, ws->cls);
  p_text(pa, ws->id);
}

static int send_set(batch *bt, const stead__wset *ws) {
  params pa;
  int rc;
  for (int ns = 0; ns < STEAD__NS_MAX; ns++) {
    if (!(ws->clear_mask & (1ull << ns)))
      continue;
    obj_params(&pa, ws);
    p_int(&pa, ns, 2);
    if ((rc = send_stmt(bt, S_DEL_NS, &pa)))
      return rc;
  }
  for (stead__onode *e = stead__omap_seek(&ws->kv, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->kv, e->key, e->klen, STEAD__SEEK_GT)) {
    int tomb = e->flags & STEAD__TOMB;
    obj_params(&pa, ws);
    p_int(&pa, e->key[0], 2);
    p_bytes(&pa, e->key + 1, e->klen - 1);
    if (!tomb)
      p_bytes(&pa, e->val, e->vlen);
    if ((rc = send_stmt(bt, tomb ? S_DEL : S_PUT, &pa)))
      return rc;
  }
  if (ws->alarms_clear) {
    obj_params(&pa, ws);
    if ((rc = send_stmt(bt, S_ALARM_CLEAR, &pa)))
      return rc;
  }
  for (stead__onode *e = stead__omap_seek(&ws->alarms, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->alarms, e->key, e->klen, STEAD__SEEK_GT)) {
    int tomb = e->flags & STEAD__TOMB;
    obj_params(&pa, ws);
    p_bytes(&pa, e->key, e->klen);
    if (!tomb) {
      stead__alarm a;
      stead__wset_alarm_decode(e, &a);
      p_int(&pa, a.at_ms, 8);
      p_int(&pa, a.attempt, 8);
      p_bytes(&pa, a.meta, a.meta_len);
    }
    if ((rc = send_stmt(bt, tomb ? S_ALARM_DEL : S_ALARM_PUT, &pa)))
      return rc;
  }
  return 0;
}

/* Distinct (shard, epoch) pairs with epoch != 0, in first-seen order, into
 * out[2*i], out[2*i+1]. Batches are small (max_batch sets), so quadratic
 * dedup is fine. */
static int collect_fences(stead__wset *const *sets, size_t n, uint64_t *out) {
  int k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!sets[i]->epoch)
      continue;
    int seen = 0;
    for (int j = 0; j < k && !seen; j++)
      seen = out[2 * j] == sets[i]->shard && out[2 * j + 1] == sets[i]->epoch;
    if (!seen) {
      out[2 * k] = sets[i]->shard;
      out[2 * k + 1] = sets[i]->epoch;
      k++;
    }
  }
  return k;
}

/* Everything before COMMIT: BEGIN, fencing checks, the sets. 0, or an error
 * after which nothing was committed. */
static int send_batch(batch *bt, stead__wset *const *sets, size_t n) {
  PGconn *pg = bt->c->pg;
  if (!PQenterPipelineMode(pg))
    return pgerr(STEAD_ESTORAGE, pg, NULL, "commit");
  int rc = 0;
  if (!PQsendQueryParams(pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 1))
    rc = pgerr(STEAD_ESTORAGE, pg, NULL, "commit");
  else
    bt->sent++;
  params pa;
  for (int i = 0; i < bt->nfence && !rc; i++) {
    pa.n = 0;
    p_int(&pa, (int64_t)bt->fences[2 * i], 8);
    p_int(&pa, (int64_t)bt->fences[2 * i + 1], 8);
    rc = send_stmt(bt, S_FENCE, &pa);
  }
  for (size_t i = 0; i < n && !rc && !bt->failed && !bt->fenced; i++)
    rc = send_set(bt, sets[i]);
  if (!rc)
    rc = drain(bt);
  if (!conn_broken(bt->c))
    PQexitPipelineMode(pg);
  return rc;
}

static void rollback(pconn *c) {
  if (!conn_broken(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
    PGresult *r = PQexec(c->pg, "ROLLBACK");
    PQclear(r);
  }
  if (!conn_broken(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
    conn_drop(c);
}

/* One attempt. *may_retry is set when nothing was committed and only the
 * connection failed, so a retry on a new connection is safe. */
static int commit_once(pgb *p, stead__wset *const *sets, size_t n, uint64_t *fences,
                       int nfence, int *may_retry) {
  pconn *c = &p->writer;
  *may_retry = 0;
  int rc = conn_ensure(p, c, 1);
  for (int i = S_PUT; !rc && i <= S_FENCE; i++)
    rc = prepare(p, c, i);
  if (rc) {
    *may_retry = conn_broken(c);
    return rc;
  }
  batch bt = {.p = p, .c = c, .nfence = nfence, .fences = fences};
  rc = send_batch(&bt, sets, n);
  if (rc || bt.failed || bt.fenced) {
    if (conn_broken(c)) {
      *may_retry = 1;
      if (!rc)
        rc = bt.err[0] ? stead__err(STEAD_ESTORAGE, "%s", bt.err)
                       : pgerr(STEAD_ESTORAGE, c->pg, NULL, "commit");
      conn_drop(c);
      return rc;
    }
    rollback(c);
    if (bt.fenced)
      return stead__err(STEAD_ENOTOWNER,
                        "postgres commit: shard %u lease epoch %llu is no longer held "
                        "(expired, released or taken over); the batch was not written",
                        bt.f_shard, (unsigned long long)bt.f_epoch);
    return rc ? rc : stead__err(STEAD_ESTORAGE, "%s", bt.err);
  }
  /* COMMIT alone: from here a lost connection leaves the outcome unknown. */
  PGresult *r = PQexec(c->pg, "COMMIT");
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0) {
    PQclear(r);
    return 0;
  }
  if (conn_broken(c) || !r) {
    rc = pgerr(STEAD_EUNKNOWN, c->pg, r,
               "commit (connection lost while committing; "
               "the batch may or may not be written)");
    PQclear(r);
    conn_drop(c);
    return rc;
  }
  rc =
      st == PGRES_COMMAND_OK
          ? stead__err(STEAD_ESTORAGE, "postgres commit: the transaction was rolled back")
          : pgerr(STEAD_ESTORAGE, c->pg, r, "commit");
  PQclear(r);
  rollback(c);
  return rc;
}

static int pg_commit(stead__backend *b, stead__wset *const *sets, size_t n) {
  pgb *p = (pgb *)b;
  if (n == 0)
    return 0;
  uint64_t small[32], *fences = n <= 16 ? small : malloc(2 * n * sizeof *fences);
  if (!fences)
    return stead__err(STEAD_ENOMEM, "out of memory committing");
  int nfence = collect_fences(sets, n, fences);
  pthread_mutex_lock(&p->wmu);
  int retry, rc = commit_once(p, sets, n, fences, nfence, &retry);
  if (rc && retry) {
    /* Nothing was written: a new connection may just work (a restarted or
     * failed-over server). The backoff keeps this from spinning. */
    char first[512];
    snprintf(first, sizeof first, "%s", stead_errmsg());
    rc = commit_once(p, sets, n, fences, nfence, &retry);
    if (rc && rc != STEAD_EUNKNOWN && rc != STEAD_ENOTOWNER) {
      char second[512];
      snprintf(second, sizeof second, "%s", stead_errmsg());
      stead__err(rc, "%s (retried after: %s)", second, first);
    }
  }
  pthread_mutex_unlock(&p->wmu);
  if (fences != small)
    free(fences);
  return rc;
}

/* ---- leases ---- */

static int lease_args(stead__backend *b, const char *owner, int64_t ttl_ms, int ttl) {
  if (!b || !stead__pg_is(b))
    return stead__err(b ? STEAD_ENOTSUP : STEAD_EINVAL,
                      "shard leases need a postgres backend");
  if (!owner || !*owner || strlen(owner) > 256)
    return stead__err(STEAD_EINVAL, "lease owner must be 1..256 bytes");
  if (ttl && (ttl_ms < 1 || ttl_ms > 1000000000))
    return stead__err(STEAD_EINVAL, "lease ttl_ms must be 1..1000000000, not %lld",
                      (long long)ttl_ms);
  return 0;
}

int stead__lease_acquire(stead__backend *b, uint32_t shard, const char *owner,
                         int64_t ttl_ms, uint64_t *epoch) {
  int rc = lease_args(b, owner, ttl_ms, 1);
  if (rc)
    return rc;
  if (!epoch)
    return stead__err(STEAD_EINVAL, "lease acquire needs an epoch out-parameter");
  params pa = {.n = 0};
  p_int(&pa, shard, 8);
  p_text(&pa, owner);
  p_int(&pa, ttl_ms, 8);
  PGresult *r;
  if ((rc = read_stmt((pgb *)b, S_LEASE_ACQ, &pa, "lease acquire", &r)))
    return rc;
  if (PQntuples(r) == 0)
    rc = stead__err(STEAD_ENOTOWNER, "shard %u is leased to another owner", shard);
  else
    *epoch = (uint64_t)r_int(r, 0, 0);
  PQclear(r);
  return rc;
}

static int lease_update(stead__backend *b, int stmt, uint32_t shard, const char *owner,
                        uint64_t epoch, int64_t ttl_ms, const char *what) {
  params pa = {.n = 0};
  p_int(&pa, shard, 8);
  p_text(&pa, owner);
  p_int(&pa, (int64_t)epoch, 8);
  if (stmt == S_LEASE_RENEW)
    p_int(&pa, ttl_ms, 8);
  PGresult *r;
  int rc = read_stmt((pgb *)b, stmt, &pa, what, &r);
  if (rc)
    return rc;
  if (strcmp(PQcmdTuples(r), "1") != 0)
    rc = stead__err(STEAD_ENOTOWNER,
                    "%s: shard %u epoch %llu is not held by '%s' (expired, released "
                    "or taken over)",
                    what, shard, (unsigned long long)epoch, owner);
  PQclear(r);
  return rc;
}

int stead__lease_renew(stead__backend *b, uint32_t shard, const char *owner,
                       uint64_t epoch, int64_t ttl_ms) {
  int rc = lease_args(b, owner, ttl_ms, 1);
  return rc ? rc
            : lease_update(b, S_LEASE_RENEW, shard, owner, epoch, ttl_ms, "lease renew");
}

int stead__lease_release(stead__backend *b, uint32_t shard, const char *owner,
                         uint64_t epoch) {
  int rc = lease_args(b, owner, 0, 0);
  return rc ? rc : lease_update(b, S_LEASE_REL, shard, owner, epoch, 0, "lease release");
}

int stead__lease_list(stead__backend *b, int (*cb)(void *u, const stead__lease *l),
                      void *u) {
  if (!b || !cb)
    return stead__err(STEAD_EINVAL, "lease list needs a backend and a callback");
  if (!stead__pg_is(b))
    return stead__err(STEAD_ENOTSUP, "shard leases need a postgres backend");
  params pa = {.n = 0};
  PGresult *r;
  int rc = read_stmt((pgb *)b, S_LEASE_LIST, &pa, "lease list", &r);
  if (rc)
    return rc;
  int n = PQntuples(r);
  for (int i = 0; i < n && !rc; i++) {
    int64_t rem = r_int(r, i, 3);
    stead__lease l = {
        .shard = (uint32_t)r_int(r, i, 0),
        .owner = PQgetvalue(r, i, 1),
        .epoch = (uint64_t)r_int(r, i, 2),
        .held = rem > 0,
        .remaining_ms = rem,
    };
    rc = cb(u, &l);
  }
  PQclear(r);
  return rc < 0 ? rc : 0;
}

/* ---- open / close ---- */

static void pg_close(stead__backend *b) {
  pgb *p = (pgb *)b;
  conn_drop(&p->writer);
  for (int i = 0; p->readers && i < p->pool; i++)
    conn_drop(&p->readers[i]);
  free(p->readers);
  for (int i = 0; i < NSTMT; i++)
    free(p->sql[i]);
  for (int i = 0; i < NLIST; i++)
    free(p->list_sql[i]);
  pthread_mutex_destroy(&p->wmu);
  pthread_mutex_destroy(&p->pmu);
  pthread_cond_destroy(&p->pcv);
  free(p->conninfo);
  free(p);
}

static const stead__backend_vt pg_vt = {
    .name = "postgres",
    .get = pg_get,
    .list = pg_list,
    .commit = pg_commit,
    .alarms_list = pg_alarms_list,
    .alarms_scan = pg_alarms_scan,
    .scan_ns = pg_scan_ns,
    .close = pg_close,
};

int stead__pg_is(const stead__backend *b) {
  return b && b->vt == &pg_vt;
}

static int build_sql(pgb *p) {
  for (int i = 0; i < NSTMT; i++)
    if (!(p->sql[i] = expand(stmts[i].sql, p->prefix)))
      return STEAD_ENOMEM;
  static const char *const los[] = {"", " AND k >= $4", " AND k > $4"};
  for (int i = 0; i < NLIST; i++) {
    int lo = i / 4, hi = (i / 2) % 2, rev = i % 2;
    char tmpl[320];
    /* Every variant takes all six parameters so one type list fits; an
     * unused bound is compared with NULL IS NULL, which the planner folds. */
    snprintf(tmpl, sizeof tmpl,
             "SELECT k, v FROM @_kv WHERE cls=$1 AND id=$2 AND ns=$3%s%s%s%s ORDER BY "
             "k %s LIMIT $6",
             los[lo], lo ? "" : " AND $4::bytea IS NULL", hi ? " AND k < $5" : "",
             hi ? "" : " AND $5::bytea IS NULL", rev ? "DESC" : "ASC");
    if (!(p->list_sql[i] = expand(tmpl, p->prefix)))
      return STEAD_ENOMEM;
  }
  return 0;
}

static int migrate(pgb *p) {
  pconn *c = &p->writer;
  char sql[256];
  int rc = exec_simple(c, "BEGIN", "migration");
  /* Nodes starting at once serialise here; the loser then finds the schema
   * current. The key is derived from the prefix so deployments sharing a
   * database do not wait for each other. */
  int64_t key = (int64_t)stead__hash64(p->prefix, strlen(p->prefix), 0x73746561646dull);
  snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%lld)", (long long)key);
  if (!rc)
    rc = exec_simple(c, sql, "migration lock");
  snprintf(sql, sizeof sql, "CREATE TABLE IF NOT EXISTS %s_schema(version int NOT NULL)",
           p->prefix);
  if (!rc)
    rc = exec_simple(c, sql, "migration");
  int ver = 0;
  if (!rc) {
    snprintf(sql, sizeof sql, "SELECT coalesce(max(version), 0) FROM %s_schema",
             p->prefix);
    PGresult *r = PQexec(c->pg, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
      ver = atoi(PQgetvalue(r, 0, 0));
    else
      rc = pgerr(STEAD_ESTORAGE, c->pg, r, "read schema version");
    PQclear(r);
  }
  if (!rc && ver > SCHEMA_VERSION)
    rc = stead__err(STEAD_ENOTSUP,
                    "postgres: schema '%s' has version %d, newer than this build "
                    "supports (%d)",
                    p->prefix, ver, SCHEMA_VERSION);
  for (int v = ver; !rc && v < SCHEMA_VERSION; v++) {
    char *m = expand(migrations[v], p->prefix);
    rc = m ? exec_simple(c, m, "migration") : STEAD_ENOMEM;
    free(m);
    snprintf(sql, sizeof sql, "DELETE FROM %s_schema; INSERT INTO %s_schema VALUES(%d)",
             p->prefix, p->prefix, v + 1);
    if (!rc)
      rc = exec_simple(c, sql, "record schema version");
  }
  if (!rc)
    return exec_simple(c, "COMMIT", "migration commit");
  char msg[512];
  snprintf(msg, sizeof msg, "%s", stead_errmsg());
  rollback(c);
  return stead__err(rc, "%s", msg);
}

static int parse_int(const char *what, const char *v, size_t vl, long lo, long hi,
                     int *out) {
  char buf[16];
  if (vl == 0 || vl >= sizeof buf)
    return stead__err(STEAD_EINVAL, "%s must be %ld..%ld", what, lo, hi);
  memcpy(buf, v, vl);
  buf[vl] = 0;
  char *end;
  long x = strtol(buf, &end, 10);
  if (*end || x < lo || x > hi)
    return stead__err(STEAD_EINVAL, "%s must be %ld..%ld, not '%s'", what, lo, hi, buf);
  *out = (int)x;
  return 0;
}

/* One "k=v" of the URI's query: ours is consumed, libpq's appended to
 * `keep`. */
static int parse_opt(stead__pg_uri *p, const char *kv, size_t n, stead__buf *keep,
                     int *has_ct) {
  const char *eq = memchr(kv, '=', n);
  if (!eq)
    return stead__err(STEAD_EINVAL, "storage option '%.*s' has no value", (int)n, kv);
  size_t kl = (size_t)(eq - kv), vl = n - kl - 1;
  const char *v = eq + 1;
#define IS(s) (kl == sizeof(s) - 1 && memcmp(kv, s, kl) == 0)
  if (IS("prefix")) {
    int ok = vl >= 1 && vl < 40 && v[0] >= 'a' && v[0] <= 'z';
    for (size_t i = 0; ok && i < vl; i++)
      ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '_';
    if (!ok)
      return stead__err(STEAD_EINVAL,
                        "prefix must be 1..39 of [a-z0-9_] starting with a letter, not "
                        "'%.*s'",
                        (int)vl, v);
    memcpy(p->prefix, v, vl);
    p->prefix[vl] = 0;
    return 0;
  }
  if (IS("pool"))
    return parse_int("pool", v, vl, 1, 64, &p->pool);
  if (IS("statement_timeout_ms"))
    return parse_int("statement_timeout_ms", v, vl, 1, 1000000000, &p->stmt_timeout_ms);
  if (IS("lock_timeout_ms"))
    return parse_int("lock_timeout_ms", v, vl, 1, 1000000000, &p->lock_timeout_ms);
  if (IS("idle_tx_timeout_ms"))
    return parse_int("idle_tx_timeout_ms", v, vl, 0, 1000000000, &p->idle_tx_ms);
  if (IS("durability")) {
    if (vl == 4 && memcmp(v, "full", 4) == 0)
      p->normal = 0;
    else if (vl == 6 && memcmp(v, "normal", 6) == 0)
      p->normal = 1;
    else
      return stead__err(STEAD_EINVAL, "durability must be full or normal, not '%.*s'",
                        (int)vl, v);
    return 0;
  }
#undef IS
  if (kl == 15 && memcmp(kv, "connect_timeout", 15) == 0)
    *has_ct = 1;
  if ((keep->len && stead__buf_append(keep, "&", 1)) || stead__buf_append(keep, kv, n))
    return STEAD_ENOMEM;
  return 0;
}

int stead__pg_uri_parse(const char *uri, stead__pg_uri *p) {
  memset(p, 0, sizeof *p);
  snprintf(p->prefix, sizeof p->prefix, "stead");
  p->pool = 4;
  p->idle_tx_ms = 10000;
  if (!uri)
    return stead__err(STEAD_EINVAL, "postgres URI is NULL");
  const char *q = strchr(uri, '?');
  size_t base = q ? (size_t)(q - uri) : strlen(uri);
  stead__buf keep = {0}, out = {0};
  int has_ct = 0, rc = 0;
  for (const char *s = q ? q + 1 : ""; *s && !rc;) {
    const char *amp = strchr(s, '&');
    size_t n = amp ? (size_t)(amp - s) : strlen(s);
    if (n)
      rc = parse_opt(p, s, n, &keep, &has_ct);
    s += n + (amp ? 1 : 0);
  }
  if (!rc && !has_ct)
    rc = (keep.len && stead__buf_append(&keep, "&", 1)) ||
                 stead__buf_append(&keep, "connect_timeout=5", 17)
             ? STEAD_ENOMEM
             : 0;
  if (!rc &&
      (stead__buf_append(&out, uri, base) || stead__buf_append(&out, "?", 1) ||
       stead__buf_append(&out, keep.data, keep.len) || stead__buf_append(&out, "", 1)))
    rc = STEAD_ENOMEM;
  stead__buf_free(&keep);
  if (rc) {
    stead__buf_free(&out);
    return rc == STEAD_ENOMEM ? stead__err(rc, "out of memory") : rc;
  }
  p->conninfo = (char *)out.data;
  /* libpq's own parse, so a malformed URI is EINVAL here, not a vague
   * connection failure later. */
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(p->conninfo, &perr);
  if (!opts) {
    rc = stead__err(STEAD_EINVAL, "bad postgres URI: %s", perr ? perr : "out of memory");
    PQfreemem(perr);
    free(p->conninfo);
    p->conninfo = NULL;
    return rc;
  }
  PQconninfoFree(opts);
  return 0;
}

static int parse_uri(pgb *p, const char *uri) {
  stead__pg_uri u;
  int rc = stead__pg_uri_parse(uri, &u);
  if (rc)
    return rc;
  p->conninfo = u.conninfo;
  memcpy(p->prefix, u.prefix, sizeof p->prefix);
  p->pool = u.pool;
  p->stmt_timeout_ms = u.stmt_timeout_ms;
  p->lock_timeout_ms = u.lock_timeout_ms;
  p->idle_tx_ms = u.idle_tx_ms;
  p->normal = u.normal;
  return 0;
}

int stead__pg_open(const char *uri, stead__backend **out) {
  if (!uri || !out)
    return stead__err(STEAD_EINVAL, "postgres URI is NULL");
  pgb *p = calloc(1, sizeof *p);
  if (!p)
    return stead__err(STEAD_ENOMEM, "out of memory opening postgres backend");
  p->base.vt = &pg_vt;
  pthread_mutex_init(&p->wmu, NULL);
  pthread_mutex_init(&p->pmu, NULL);
  pthread_cond_init(&p->pcv, NULL);
  int rc = parse_uri(p, uri);
  if (!rc && !(p->readers = calloc((size_t)p->pool, sizeof *p->readers)))
    rc = stead__err(STEAD_ENOMEM, "out of memory");
  if (!rc && build_sql(p))
    rc = stead__err(STEAD_ENOMEM, "out of memory");
  for (int i = 0; !rc && i < p->pool; i++) {
    p->readers[i].next = p->free_readers;
    p->free_readers = &p->readers[i];
  }
  if (!rc)
    rc = conn_ensure(p, &p->writer, 1);
  if (!rc)
    rc = migrate(p);
  if (rc) {
    pg_close(&p->base);
    return rc;
  }
  *out = &p->base;
  return 0;
}
