/*
 * test_pg.c -- what only the PostgreSQL backend does: shard leases and
 * fencing, failures of the connection (terminated mid-commit, server
 * restart, server down), concurrent schema migration, spec options.
 *
 * One throwaway server serves the whole binary (pg_helper.h); every test
 * uses its own table prefix. Skips (exit 0 with a message) only when the
 * PostgreSQL binaries are absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "helpers.h"
#include "pg_helper.h"
#include "storage/committer.h"
#include "storage/failbe.h"
#include "storage/lease.h"
#include "storage/pg_backend.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

static stead__backend *open_pfx(const char *prefix, const char *extra) {
  char spec[600];
  pgh_spec(spec, sizeof spec, prefix, extra);
  stead__backend *b = NULL;
  int rc = stead__backend_open(spec, &b);
  if (rc)
    fprintf(stderr, "open %s: %s\n", spec, stead_errmsg());
  assert_int_equal(rc, 0);
  return b;
}

static void quiet_notice(void *arg, const char *msg) {}

/* A direct libpq session for checks and sabotage. */
static PGconn *admin(void) {
  PGconn *c = PQconnectdb(pgh_server.uri);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PQsetNoticeProcessor(c, quiet_notice, NULL);
  return c;
}

static void admin_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    fprintf(stderr, "%s: %s\n", sql, PQresultErrorMessage(r));
  assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
  PQclear(r);
}

static stead__wset *fenced_put(uint32_t shard, uint64_t epoch, const char *id,
                               const char *v) {
  stead__wset *ws = stead__wset_new("c", id);
  ws->shard = shard;
  ws->epoch = epoch;
  assert_int_equal(stead__wset_put(ws, 0, "k", 1, v, strlen(v)), 0);
  return ws;
}

/* ---- leases ---- */

typedef struct lease_rows {
  char s[512];
} lease_rows;

static int lease_cb(void *u, const stead__lease *l) {
  lease_rows *o = u;
  size_t n = strlen(o->s);
  snprintf(o->s + n, sizeof o->s - n, "%s%u:%s:%llu:%s", n ? "," : "", l->shard, l->owner,
           (unsigned long long)l->epoch, l->held ? "held" : "free");
  return 0;
}

static void test_lease_contenders(void **state) {
  stead__backend *b = open_pfx("leases", "");
  uint64_t ea = 0, eb = 0, e2 = 0;
  /* a takes shard 1; b is refused while a holds it. */
  assert_int_equal(stead__lease_acquire(b, 1, "node-a", 60000, &ea), 0);
  assert_int_equal(ea, 1);
  assert_int_equal(stead__lease_acquire(b, 1, "node-b", 60000, &eb), STEAD_ENOTOWNER);
  assert_non_null(strstr(stead_errmsg(), "shard 1"));
  /* Re-acquiring our own unexpired lease keeps the epoch. */
  assert_int_equal(stead__lease_acquire(b, 1, "node-a", 60000, &e2), 0);
  assert_int_equal(e2, 1);
  assert_int_equal(stead__lease_renew(b, 1, "node-a", 1, 60000), 0);
  /* b cannot renew or release what it does not hold. */
  assert_int_equal(stead__lease_renew(b, 1, "node-b", 1, 60000), STEAD_ENOTOWNER);
  assert_int_equal(stead__lease_release(b, 1, "node-b", 1), STEAD_ENOTOWNER);
  /* a releases: b takes it at once, with a new epoch. */
  assert_int_equal(stead__lease_release(b, 1, "node-a", 1), 0);
  assert_int_equal(stead__lease_release(b, 1, "node-a", 1), STEAD_ENOTOWNER);
  assert_int_equal(stead__lease_acquire(b, 1, "node-b", 60000, &eb), 0);
  assert_int_equal(eb, 2);
  assert_int_equal(stead__lease_renew(b, 1, "node-a", 1, 60000), STEAD_ENOTOWNER);
  /* a's old tenure stays dead even if a takes the shard back later. */
  assert_int_equal(stead__lease_release(b, 1, "node-b", 2), 0);
  assert_int_equal(stead__lease_acquire(b, 1, "node-a", 60000, &ea), 0);
  assert_int_equal(ea, 3);
  assert_int_equal(stead__lease_acquire(b, 2, "node-b", 60000, &e2), 0);
  lease_rows o = {.s = {0}};
  assert_int_equal(stead__lease_list(b, lease_cb, &o), 0);
  assert_string_equal(o.s, "1:node-a:3:held,2:node-b:1:held");
  stead__backend_close(b);
}

static void test_lease_expiry_and_renewal(void **state) {
  stead__backend *b = open_pfx("expiry", "");
  uint64_t ea, eb;
  assert_int_equal(stead__lease_acquire(b, 7, "a", 300, &ea), 0);
  /* Renewal keeps it alive past the first ttl. */
  for (int i = 0; i < 4; i++) {
    usleep(150 * 1000);
    assert_int_equal(stead__lease_renew(b, 7, "a", ea, 300), 0);
    assert_int_equal(stead__lease_acquire(b, 7, "b", 300, &eb), STEAD_ENOTOWNER);
  }
  /* Without renewal it expires (by the database's clock) and b takes it. */
  usleep(400 * 1000);
  lease_rows o = {.s = {0}};
  assert_int_equal(stead__lease_list(b, lease_cb, &o), 0);
  assert_string_equal(o.s, "7:a:1:free");
  assert_int_equal(stead__lease_renew(b, 7, "a", ea, 300), STEAD_ENOTOWNER);
  assert_int_equal(stead__lease_acquire(b, 7, "b", 60000, &eb), 0);
  assert_int_equal(eb, ea + 1);
  /* The same owner after its own expiry: a new tenure too. */
  assert_int_equal(stead__lease_acquire(b, 8, "a", 100, &ea), 0);
  usleep(200 * 1000);
  uint64_t again;
  assert_int_equal(stead__lease_acquire(b, 8, "a", 100, &again), 0);
  assert_int_equal(again, ea + 1);
  stead__backend_close(b);
}

static void test_lease_bad_args(void **state) {
  stead__backend *b = open_pfx("leaseargs", ""), *m;
  uint64_t e;
  assert_int_equal(stead__lease_acquire(b, 1, "", 1000, &e), STEAD_EINVAL);
  assert_int_equal(stead__lease_acquire(b, 1, NULL, 1000, &e), STEAD_EINVAL);
  assert_int_equal(stead__lease_acquire(b, 1, "a", 0, &e), STEAD_EINVAL);
  assert_int_equal(stead__lease_acquire(b, 1, "a", 1000, NULL), STEAD_EINVAL);
  assert_int_equal(stead__lease_renew(b, 1, "a", 1, -5), STEAD_EINVAL);
  assert_int_equal(stead__lease_list(b, NULL, NULL), STEAD_EINVAL);
  assert_int_equal(stead__backend_open("memory", &m), 0);
  assert_int_equal(stead__lease_acquire(m, 1, "a", 1000, &e), STEAD_ENOTSUP);
  assert_int_equal(stead__lease_list(m, lease_cb, NULL), STEAD_ENOTSUP);
  stead__backend_close(m);
  stead__backend_close(b);
}

/* A stale tenure's commit is refused, whole batch; the current one works;
 * epoch 0 is never fenced. */
static void test_fencing(void **state) {
  stead__backend *b = open_pfx("fencing", "");
  uint64_t ea, eb;
  assert_int_equal(stead__lease_acquire(b, 3, "a", 60000, &ea), 0);
  stead__wset *ws = fenced_put(3, ea, "o1", "by-a");
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  /* b takes over after a's release. */
  assert_int_equal(stead__lease_release(b, 3, "a", ea), 0);
  assert_int_equal(stead__lease_acquire(b, 3, "b", 60000, &eb), 0);
  /* a's late write: refused, and nothing of its batch lands, including an
   * unfenced set and a set of a shard a never held. */
  stead__wset *batch[3] = {stead__wset_new("c", "free"), fenced_put(3, ea, "o1", "stale"),
                           fenced_put(3, eb, "o2", "mixed")};
  assert_int_equal(stead__wset_put(batch[0], 0, "k", 1, "x", 1), 0);
  assert_int_equal(b->vt->commit(b, batch, 3), STEAD_ENOTOWNER);
  assert_non_null(strstr(stead_errmsg(), "shard 3"));
  for (int i = 0; i < 3; i++)
    stead__wset_unref(batch[i]);
  char *g = th_get(b, "c", "o1", 0, "k");
  assert_string_equal(g, "by-a");
  free(g);
  assert_null(th_get(b, "c", "free", 0, "k"));
  assert_null(th_get(b, "c", "o2", 0, "k"));
  /* b's current tenure writes; the connection is fine after the refusal. */
  ws = fenced_put(3, eb, "o1", "by-b");
  assert_int_equal(b->vt->commit(b, &ws, 1), 0);
  stead__wset_unref(ws);
  g = th_get(b, "c", "o1", 0, "k");
  assert_string_equal(g, "by-b");
  free(g);
  /* An expired tenure is refused too, even with nobody else holding it. */
  uint64_t ec;
  assert_int_equal(stead__lease_acquire(b, 4, "c", 100, &ec), 0);
  usleep(200 * 1000);
  ws = fenced_put(4, ec, "o3", "late");
  assert_int_equal(b->vt->commit(b, &ws, 1), STEAD_ENOTOWNER);
  stead__wset_unref(ws);
  /* A shard that never had a lease. */
  ws = fenced_put(99, 1, "o4", "x");
  assert_int_equal(b->vt->commit(b, &ws, 1), STEAD_ENOTOWNER);
  stead__wset_unref(ws);
  stead__backend_close(b);
}

/* An acquire waits for a commit that holds the lease row: the old tenure's
 * transaction ends before the new tenure starts. */
typedef struct takeover {
  stead__backend *b;
  uint64_t epoch;
  int rc;
  atomic_int done;
} takeover;

static void *take(void *arg) {
  takeover *t = arg;
  t->rc = stead__lease_acquire(t->b, 5, "b", 60000, &t->epoch);
  atomic_store(&t->done, 1);
  return NULL;
}

static void test_takeover_waits_for_commit(void **state) {
  stead__backend *b = open_pfx("takeover", "");
  uint64_t ea;
  assert_int_equal(stead__lease_acquire(b, 5, "a", 300, &ea), 0);
  /* Hold the lease row FOR SHARE in an open transaction, as a commit does. */
  PGconn *c = admin();
  admin_exec(c, "BEGIN");
  admin_exec(c, "SELECT 1 FROM takeover_leases WHERE shard=5 FOR SHARE");
  usleep(400 * 1000); /* a's lease is now expired */
  takeover t = {.b = b};
  pthread_t th;
  pthread_create(&th, NULL, take, &t);
  usleep(200 * 1000);
  assert_int_equal(atomic_load(&t.done), 0);
  admin_exec(c, "COMMIT");
  pthread_join(th, NULL);
  assert_int_equal(t.rc, 0);
  assert_int_equal(t.epoch, ea + 1);
  PQfinish(c);
  stead__backend_close(b);
}

/* ---- failures ---- */

/* Each batch writes, in every one of its sets, a marker key named after the
 * batch (never overwritten) and two shared keys; concurrently another
 * session terminates the commit connection again and again. Afterwards:
 * every acknowledged batch has all its markers, every batch that failed
 * with ESTORAGE has none, and every batch (EUNKNOWN ones included) has all
 * or none. */
#define KILL_BATCHES 200
#define KILL_SETS    8

typedef struct killer {
  atomic_int stop;
  int kills;
} killer;

static void *kill_loop(void *arg) {
  killer *k = arg;
  PGconn *c = admin();
  while (!atomic_load(&k->stop)) {
    PGresult *r = PQexec(c, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                            "FROM pg_stat_activity WHERE application_name = 'stead-kill' "
                            "AND backend_xid IS NOT NULL");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
      k->kills += atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    usleep(15000);
  }
  PQfinish(c);
  return NULL;
}

static void test_killed_mid_commit(void **state) {
  stead__backend *b = open_pfx("killed", "&application_name=stead-kill");
  killer k = {.kills = 0};
  pthread_t th;
  pthread_create(&th, NULL, kill_loop, &k);
  static int rcs[KILL_BATCHES];
  int ok = 0, failed = 0, unknown = 0;
  for (int i = 0; i < KILL_BATCHES; i++) {
    stead__wset *sets[KILL_SETS];
    char v[16], m[16];
    snprintf(v, sizeof v, "%d", i);
    snprintf(m, sizeof m, "m%d", i);
    for (int j = 0; j < KILL_SETS; j++) {
      char id[32];
      snprintf(id, sizeof id, "o%d", j);
      sets[j] = stead__wset_new("c", id);
      stead__wset_put(sets[j], 0, "p0", 2, v, strlen(v));
      stead__wset_put(sets[j], 0, m, strlen(m), "x", 1);
      stead__wset_put(sets[j], 0, "p1", 2, v, strlen(v));
      /* Filler, so a batch spans a pipeline sync (and takes a while). */
      for (int f = 0; f < 30; f++) {
        char fk[8];
        snprintf(fk, sizeof fk, "f%02d", f);
        stead__wset_put(sets[j], 0, fk, strlen(fk), v, strlen(v));
      }
    }
    rcs[i] = b->vt->commit(b, sets, KILL_SETS);
    for (int j = 0; j < KILL_SETS; j++)
      stead__wset_unref(sets[j]);
    if (rcs[i] == 0)
      ok++;
    else if (rcs[i] == STEAD_EUNKNOWN)
      unknown++;
    else {
      if (failed < 3)
        fprintf(stderr, "batch %d: %s\n", i, stead_errmsg());
      assert_int_equal(rcs[i], STEAD_ESTORAGE);
      failed++;
    }
  }
  atomic_store(&k.stop, 1);
  pthread_join(th, NULL);
  static int markers[KILL_BATCHES];
  PGconn *c = admin();
  PGresult *r = PQexec(c, "SELECT substr(convert_from(k, 'UTF8'), 2)::int, count(*) FROM "
                          "killed_kv WHERE get_byte(k, 0) = 109 GROUP BY k");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  for (int i = 0; i < PQntuples(r); i++)
    markers[atoi(PQgetvalue(r, i, 0))] = atoi(PQgetvalue(r, i, 1));
  PQclear(r);
  int last = -1;
  for (int i = 0; i < KILL_BATCHES; i++) {
    assert_true(markers[i] == 0 || markers[i] == KILL_SETS);
    if (rcs[i] == 0)
      assert_int_equal(markers[i], KILL_SETS);
    if (rcs[i] == STEAD_ESTORAGE)
      assert_int_equal(markers[i], 0);
    if (markers[i])
      last = i;
  }
  /* The shared keys hold the last batch that committed, in every set. */
  r = PQexec(c, "SELECT DISTINCT convert_from(v, 'UTF8') FROM killed_kv WHERE k IN "
                "('p0', 'p1')");
  assert_int_equal(PQntuples(r), 1);
  assert_int_equal(atoi(PQgetvalue(r, 0, 0)), last);
  PQclear(r);
  PQfinish(c);
  fprintf(stderr, "killed mid-commit: %d terminations, %d ok, %d ESTORAGE, %d EUNKNOWN\n",
          k.kills, ok, failed, unknown);
  assert_true(k.kills > 0);
  assert_true(ok > 0);
  /* The backend is healthy afterwards (once any backoff has passed). */
  int rc = -1;
  for (int i = 0; i < 100 && rc; i++)
    if ((rc = th_put(b, "c", "after", 0, "k", "v")))
      usleep(50 * 1000);
  assert_int_equal(rc, 0);
  stead__backend_close(b);
}

/* COMMIT sent, connection lost before its answer: STEAD_EUNKNOWN. A
 * deferred trigger makes COMMIT itself slow, so the session can be
 * terminated exactly while COMMIT runs. */
typedef struct commit_killer {
  atomic_int stop;
  int kills;
} commit_killer;

static void *kill_commit(void *arg) {
  commit_killer *k = arg;
  PGconn *c = admin();
  while (!atomic_load(&k->stop) && !k->kills) {
    PGresult *r = PQexec(c, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                            "FROM pg_stat_activity WHERE application_name = "
                            "'stead-unknown' AND state = 'active' AND query = 'COMMIT'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
      k->kills += atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    usleep(10000);
  }
  PQfinish(c);
  return NULL;
}

static void test_unknown_outcome(void **state) {
  stead__backend *b = open_pfx("unknown", "&application_name=stead-unknown");
  PGconn *c = admin();
  admin_exec(c, "CREATE FUNCTION unknown_slow() RETURNS trigger AS $$ BEGIN PERFORM "
                "pg_sleep(0.5); RETURN NULL; END $$ LANGUAGE plpgsql");
  admin_exec(c, "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON unknown_kv DEFERRABLE "
                "INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION unknown_slow()");
  commit_killer k = {.kills = 0};
  pthread_t th;
  pthread_create(&th, NULL, kill_commit, &k);
  assert_int_equal(th_put(b, "c", "o", 0, "k", "v"), STEAD_EUNKNOWN);
  assert_non_null(strstr(stead_errmsg(), "may or may not"));
  atomic_store(&k.stop, 1);
  pthread_join(th, NULL);
  assert_int_equal(k.kills, 1);
  admin_exec(c, "DROP TRIGGER slow ON unknown_kv");
  /* Here the server aborted it; the caller could not have known. */
  assert_null(th_get(b, "c", "o", 0, "k"));
  /* The backend reconnects for the next commit. */
  assert_int_equal(th_put(b, "c", "o", 0, "k", "v2"), 0);
  char *g = th_get(b, "c", "o", 0, "k");
  assert_string_equal(g, "v2");
  free(g);
  PQfinish(c);
  stead__backend_close(b);
}

/* Server restart: the first use after it may fail (ESTORAGE), then the
 * backend reconnects on its own; reads retry transparently. While the
 * server is down calls fail fast with ESTORAGE and the server's message. */
static void test_restart_and_down(void **state) {
  if (!pgh_server.started)
    skip(); /* an external server (STEAD_TEST_PG_URI) is not ours to stop */
  stead__backend *b = open_pfx("restart", "&pool=1&connect_timeout=2");
  assert_int_equal(th_put(b, "c", "o", 0, "k", "before"), 0);
  char *g = th_get(b, "c", "o", 0, "k");
  assert_string_equal(g, "before");
  free(g);
  assert_int_equal(pgh_pg_stop("fast"), 0);
  assert_int_equal(pgh_pg_start(), 0);
  /* The read retries on a new connection: no error at all. */
  g = th_get(b, "c", "o", 0, "k");
  assert_non_null(g);
  assert_string_equal(g, "before");
  free(g);
  /* The commit connection was cut before anything was sent: it retries. */
  assert_int_equal(th_put(b, "c", "o", 0, "k", "after"), 0);
  g = th_get(b, "c", "o", 0, "k");
  assert_string_equal(g, "after");
  free(g);
  /* Down: ESTORAGE, with what the server or libpq said. */
  assert_int_equal(pgh_pg_stop("fast"), 0);
  assert_int_equal(th_put(b, "c", "o", 0, "k", "down"), STEAD_ESTORAGE);
  assert_non_null(strstr(stead_errmsg(), "postgres"));
  void *v;
  size_t n;
  assert_int_equal(b->vt->get(b, "c", "o", 0, "k", 1, &v, &n), STEAD_ESTORAGE);
  /* Within the backoff, calls fail fast and say so. */
  int64_t t0 = stead__mono_ms();
  assert_int_equal(b->vt->get(b, "c", "o", 0, "k", 1, &v, &n), STEAD_ESTORAGE);
  assert_true(stead__mono_ms() - t0 < 1000);
  assert_non_null(strstr(stead_errmsg(), "reconnect"));
  assert_int_equal(pgh_pg_start(), 0);
  /* Back: after the backoff (at most 5 s) everything works again. */
  int rc = -1;
  for (int i = 0; i < 100 && rc; i++) {
    rc = th_put(b, "c", "o", 0, "k", "back");
    if (rc)
      usleep(100 * 1000);
  }
  assert_int_equal(rc, 0);
  g = NULL;
  for (int i = 0; i < 100 && !g; i++) {
    g = th_get(b, "c", "o", 0, "k");
    if (!g)
      usleep(100 * 1000);
  }
  assert_non_null(g);
  assert_string_equal(g, "back");
  free(g);
  stead__backend_close(b);
}

/* An unreachable server at open: ESTORAGE with libpq's message. */
static void test_open_unreachable(void **state) {
  stead__backend *b = NULL;
  char spec[400];
  snprintf(spec, sizeof spec, "postgres://stead@127.0.0.1:%d/postgres?connect_timeout=2",
           pgh_free_port());
  assert_int_equal(stead__backend_open(spec, &b), STEAD_ESTORAGE);
  assert_null(b);
  assert_non_null(strstr(stead_errmsg(), "connect"));
  /* Wrong database name: the server's own message. */
  snprintf(spec, sizeof spec, "%s", pgh_server.uri);
  char *slash = strrchr(spec, '/');
  snprintf(slash, sizeof spec - (size_t)(slash - spec), "/no_such_db");
  assert_int_equal(stead__backend_open(spec, &b), STEAD_ESTORAGE);
  assert_non_null(strstr(stead_errmsg(), "no_such_db"));
}

/* A statement over statement_timeout_ms is ESTORAGE with the server's
 * message, and the connection stays usable. */
static void test_statement_timeout(void **state) {
  stead__backend *b = open_pfx("timeout", "&statement_timeout_ms=200");
  PGconn *c = admin();
  admin_exec(c, "BEGIN");
  admin_exec(c, "LOCK TABLE timeout_kv IN ACCESS EXCLUSIVE MODE");
  assert_int_equal(th_put(b, "c", "o", 0, "k", "v"), STEAD_ESTORAGE);
  assert_non_null(strstr(stead_errmsg(), "timeout"));
  admin_exec(c, "ROLLBACK");
  assert_int_equal(th_put(b, "c", "o", 0, "k", "v"), 0);
  PQfinish(c);
  stead__backend_close(b);
}

/* Several nodes opening one fresh prefix at once migrate it once. */
static void *open_one(void *arg) {
  char spec[600];
  pgh_spec(spec, sizeof spec, "race", "");
  stead__backend *b = NULL;
  intptr_t rc = stead__backend_open(spec, &b);
  if (!rc) {
    rc = th_put(b, "c", "o", 0, "k", "v");
    stead__backend_close(b);
  }
  return (void *)rc;
}

static void test_concurrent_migration(void **state) {
  pthread_t th[8];
  for (int i = 0; i < 8; i++)
    pthread_create(&th[i], NULL, open_one, NULL);
  for (int i = 0; i < 8; i++) {
    void *rc;
    pthread_join(th[i], &rc);
    assert_int_equal((intptr_t)rc, 0);
  }
  PGconn *c = admin();
  PGresult *r = PQexec(c, "SELECT count(*), max(version) FROM race_schema");
  assert_string_equal(PQgetvalue(r, 0, 0), "1");
  assert_string_equal(PQgetvalue(r, 0, 1), "1");
  PQclear(r);
  PQfinish(c);
}

static void test_newer_schema_refused(void **state) {
  stead__backend *b = open_pfx("newer", "");
  stead__backend_close(b);
  PGconn *c = admin();
  admin_exec(c, "UPDATE newer_schema SET version = 99");
  PQfinish(c);
  char spec[600];
  pgh_spec(spec, sizeof spec, "newer", "");
  assert_int_equal(stead__backend_open(spec, &b), STEAD_ENOTSUP);
  assert_non_null(strstr(stead_errmsg(), "99"));
}

/* Two prefixes in one database do not see each other. */
static void test_prefixes_isolated(void **state) {
  stead__backend *a = open_pfx("iso_a", ""), *b = open_pfx("iso_b", "");
  assert_int_equal(th_put(a, "c", "o", 0, "k", "a"), 0);
  assert_null(th_get(b, "c", "o", 0, "k"));
  uint64_t e;
  assert_int_equal(stead__lease_acquire(a, 1, "x", 60000, &e), 0);
  assert_int_equal(stead__lease_acquire(b, 1, "y", 60000, &e), 0);
  stead__backend_close(a);
  stead__backend_close(b);
}

static void test_spec_options(void **state) {
  stead__backend *b = NULL;
  char spec[600];
  static const char *const bad[] = {
      "prefix=",     "prefix=Upper",
      "prefix=1abc", "prefix=a-b",
      "pool=0",      "pool=65",
      "pool=x",      "durability=maybe",
      "prefix",      "statement_timeout_ms=0",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(spec, sizeof spec, "%s?%s", pgh_server.uri, bad[i]);
    assert_int_equal(stead__backend_open(spec, &b), STEAD_EINVAL);
    assert_null(b);
  }
  /* libpq's own options pass through; a bad one is refused by libpq. */
  snprintf(spec, sizeof spec, "%s?no_such_libpq_option=1", pgh_server.uri);
  assert_int_equal(stead__backend_open(spec, &b), STEAD_EINVAL);
  assert_non_null(strstr(stead_errmsg(), "no_such_libpq_option"));
  pgh_spec(spec, sizeof spec, "opts",
           "&durability=normal&pool=1&application_name=stead-test&sslmode=disable");
  assert_int_equal(stead__backend_open(spec, &b), 0);
  assert_int_equal(th_put(b, "c", "o", 0, "k", "v"), 0);
  stead__backend_close(b);
  /* Both URI schemes. */
  snprintf(spec, sizeof spec, "postgresql%s?prefix=opts", strchr(pgh_server.uri, ':'));
  assert_int_equal(stead__backend_open(spec, &b), 0);
  char *g = th_get(b, "c", "o", 0, "k");
  assert_string_equal(g, "v");
  free(g);
  stead__backend_close(b);
}

/* Through the group committer: a big batch crosses several pipeline
 * chunks and commits as one transaction; a write set too big for the
 * index fails the batch cleanly. */
static void done_cb(void *u, stead__wset *ws, int rc) {
  atomic_int *n = u;
  if (rc == 0)
    atomic_fetch_add(n, 1);
}

static void rc_cb(void *u, stead__wset *ws, int rc) {
  (void)ws;
  atomic_store((atomic_int *)u, rc == 0 ? 1 : rc);
}

/* The backend refuses a whole batch for one stale tenure; the committer
 * then commits the other tenures' sets again, so only the stale one
 * fails (a node losing one shard does not fail the rest). */
static void test_committer_stale_tenure_fails_alone(void **state) {
  (void)state;
  stead__backend *b = open_pfx("refence", "");
  uint64_t e1, e2, old;
  assert_int_equal(stead__lease_acquire(b, 1, "a", 60000, &old), 0);
  assert_int_equal(stead__lease_release(b, 1, "a", old), 0);
  assert_int_equal(stead__lease_acquire(b, 1, "b", 60000, &e1), 0); /* old is stale */
  assert_int_equal(stead__lease_acquire(b, 2, "a", 60000, &e2), 0);
  /* The four sets must form one batch: a first, slow commit (through the
   * failure injector's delay) keeps the committer busy while they queue.
   * The wrapper owns b from here on. */
  stead__backend *fb;
  assert_int_equal(stead__failbe_wrap(b, &fb), 0);
  stead__failbe_set_delay_us(fb, 100000);
  stead__committer *c;
  stead__committer_opts co = {.max_batch = 16, .max_delay_us = 0};
  assert_int_equal(stead__committer_start(fb, &co, &c), 0);
  atomic_int warm;
  atomic_init(&warm, 0);
  stead__wset *w = stead__wset_new("c", "warm");
  assert_int_equal(stead__wset_put(w, 0, "k", 1, "w", 1), 0);
  assert_int_equal(stead__committer_submit(c, w, rc_cb, &warm), 0);
  stead__wset_unref(w);
  while (stead__failbe_commits(fb) < 1)
    usleep(100);
  atomic_int rcs[4];
  for (int i = 0; i < 4; i++)
    atomic_init(&rcs[i], 0);
  stead__wset *sets[4] = {fenced_put(2, e2, "x1", "ok1"),
                          fenced_put(1, old, "s1", "stale"), stead__wset_new("c", "free"),
                          fenced_put(2, e2, "x1", "ok2")};
  assert_int_equal(stead__wset_put(sets[2], 0, "k", 1, "f", 1), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(stead__committer_submit(c, sets[i], rc_cb, &rcs[i]), 0);
    stead__wset_unref(sets[i]);
  }
  assert_int_equal(stead__committer_flush(c), 0);
  stead__commit_stats st;
  stead__committer_stats(c, &st);
  assert_int_equal(st.batches, 2); /* the slow one, then the four together */
  stead__committer_close(c);
  assert_int_equal(atomic_load(&warm), 1);
  assert_int_equal(atomic_load(&rcs[0]), 1);
  assert_int_equal(atomic_load(&rcs[1]), STEAD_ENOTOWNER);
  assert_int_equal(atomic_load(&rcs[2]), 1);
  assert_int_equal(atomic_load(&rcs[3]), 1);
  char *g = th_get(b, "c", "x1", 0, "k");
  assert_string_equal(g, "ok2"); /* in order */
  free(g);
  assert_null(th_get(b, "c", "s1", 0, "k"));
  g = th_get(b, "c", "free", 0, "k");
  assert_string_equal(g, "f");
  free(g);
  stead__backend_close(fb);
}

static void test_committer_big_batches(void **state) {
  stead__backend *b = open_pfx("bigbatch", "");
  stead__committer *c;
  stead__committer_opts co = {.max_batch = 1024, .max_delay_us = 2000};
  assert_int_equal(stead__committer_start(b, &co, &c), 0);
  atomic_int ok = 0;
  for (int i = 0; i < 2000; i++) {
    char id[16];
    snprintf(id, sizeof id, "o%d", i);
    stead__wset *ws = stead__wset_new("c", id);
    stead__wset_put(ws, 0, "k", 1, id, strlen(id));
    assert_int_equal(stead__committer_submit(c, ws, done_cb, &ok), 0);
    stead__wset_unref(ws);
  }
  assert_int_equal(stead__committer_flush(c), 0);
  assert_int_equal(atomic_load(&ok), 2000);
  stead__commit_stats st;
  stead__committer_stats(c, &st);
  assert_true(st.batches < 2000); /* grouped */
  stead__committer_close(c);
  char *g = th_get(b, "c", "o1999", 0, "k");
  assert_string_equal(g, "o1999");
  free(g);
  /* One set with 1,000 keys (four pipeline chunks) whose last key is too
   * big for a btree entry: the server refuses it, nothing of it lands. */
  stead__wset *ws = stead__wset_new("c", "huge");
  for (int i = 0; i < 1000; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%04d", i);
    stead__wset_put(ws, 0, k, strlen(k), "v", 1);
  }
  static uint8_t bigkey[2048];
  uint64_t x = 88172645463325252ull; /* xorshift: incompressible bytes */
  for (size_t i = 0; i < sizeof bigkey; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    bigkey[i] = (uint8_t)x;
  }
  bigkey[0] = 'z';
  /* cls+id+key near 3 KB of random bytes exceeds PostgreSQL's btree limit. */
  char bigid[1000];
  for (size_t i = 0; i + 1 < sizeof bigid; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    bigid[i] = (char)('a' + x % 26);
  }
  bigid[sizeof bigid - 1] = 0;
  stead__wset *ws2 = stead__wset_new("c", bigid);
  stead__wset_put(ws2, 0, bigkey, sizeof bigkey, "v", 1);
  stead__wset *pair[2] = {ws, ws2};
  int rc = b->vt->commit(b, pair, 2);
  assert_int_equal(rc, STEAD_ESTORAGE);
  assert_non_null(strstr(stead_errmsg(), "index row"));
  assert_null(th_get(b, "c", "huge", 0, "k0000"));
  stead__wset_unref(ws);
  stead__wset_unref(ws2);
  /* And the connection is usable afterwards. */
  assert_int_equal(th_put(b, "c", "huge", 0, "k0000", "v"), 0);
  stead__backend_close(b);
}

int main(void) {
  int rc = pgh_start(0);
  if (rc)
    return rc < 0 ? 1 : 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lease_contenders),
      cmocka_unit_test(test_lease_expiry_and_renewal),
      cmocka_unit_test(test_lease_bad_args),
      cmocka_unit_test(test_fencing),
      cmocka_unit_test(test_takeover_waits_for_commit),
      cmocka_unit_test(test_killed_mid_commit),
      cmocka_unit_test(test_unknown_outcome),
      cmocka_unit_test(test_open_unreachable),
      cmocka_unit_test(test_statement_timeout),
      cmocka_unit_test(test_concurrent_migration),
      cmocka_unit_test(test_newer_schema_refused),
      cmocka_unit_test(test_prefixes_isolated),
      cmocka_unit_test(test_spec_options),
      cmocka_unit_test(test_committer_big_batches),
      cmocka_unit_test(test_committer_stale_tenure_fails_alone),
      cmocka_unit_test(test_restart_and_down),
  };
  return cmocka_run_group_tests_name("postgres", tests, NULL, NULL);
}
