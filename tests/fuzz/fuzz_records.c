/*
 * fuzz_records.c -- libFuzzer target for the records the runtime reads
 * back from a SQLite data file: object keys and values of every
 * namespace (user data, state structs, bus subscriptions, journal,
 * snapshots) and alarm rows (name, due time, attempt, meta), as a damaged
 * or hostile file could hold them.
 *
 * Each input is written as rows into a fresh copy of an empty stead
 * database; then the real runtime opens it (restoring subscriptions,
 * paging alarms in), registers the example classes, fires every due
 * alarm, emits a few events and calls a read method of every object that
 * has rows. Checks: open succeeds or fails with ECORRUPT/ESTORAGE; no
 * call hangs (ETIMEDOUT), is refused as misuse or runs out of memory;
 * the runtime closes cleanly. Sanitizers catch the rest.
 *
 * Input: records. kv: [0][cls][idlen][id][ns][klen][key][vlen][val];
 * alarm: [1][cls][idlen][id][namelen][name][at: 8 LE][attempt: 4 LE]
 * [metalen][meta]. cls: index into the example classes (mod 8; 7 is a
 * class nobody registered). Lengths are one byte, cut at the input's end.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "examples.h"
#include "stead.h"

#define NOW_MS 2000000000000LL

static const char *const CLS[] = {"counter",  "echo",    "chatroom", "ratelimiter",
                                  "reminder", "account", "nosuch",   "counter"};
static const char *const READ[] = {"get",   "echo",    "history", "check",
                                   "fired", "balance", "get",     "get"};

static char tmpl[200], work[300];

static int64_t fixed_clock(void *u) {
  (void)u;
  return NOW_MS;
}

static void cleanup(void) {
  char p[340];
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/t.db%s", tmpl, suffix[i]);
    unlink(p);
    snprintf(p, sizeof p, "%s/w.db%s", tmpl, suffix[i]);
    unlink(p);
  }
  rmdir(tmpl);
}

static stead_config config(const char *file) {
  stead_config cfg;
  stead_config_init(&cfg);
  static char spec[400];
  snprintf(spec, sizeof spec, "sqlite:%s?durability=normal", file);
  cfg.storage = spec;
  cfg.workers = 2;
  cfg.alarm_manual = 1;
  cfg.clock = fixed_clock;
  cfg.default_timeout_ms = 10000;
  return cfg;
}

/* An empty database with stead's schema, made once. */
static void make_template(void) {
  if (tmpl[0])
    return;
  snprintf(tmpl, sizeof tmpl, "/tmp/stead-fuzz-records-XXXXXX");
  if (!mkdtemp(tmpl))
    abort();
  atexit(cleanup);
  snprintf(work, sizeof work, "%s/w.db", tmpl);
  char t[340];
  snprintf(t, sizeof t, "%s/t.db", tmpl);
  stead_config cfg = config(t);
  stead_rt *rt;
  if (stead_open(&cfg, &rt) != 0 || stead_close(rt) != 0)
    abort();
}

static void copy_template(void) {
  char t[340], p[340];
  snprintf(t, sizeof t, "%s/t.db", tmpl);
  const char *suffix[] = {"-wal", "-shm"};
  for (int i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "%s%s", work, suffix[i]);
    unlink(p);
  }
  FILE *in = fopen(t, "rb"), *out = fopen(work, "wb");
  if (!in || !out)
    abort();
  char buf[8192];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    if (fwrite(buf, 1, n, out) != n)
      abort();
  fclose(in);
  fclose(out);
}

typedef struct cur {
  const uint8_t *p;
  size_t n;
} cur;

static int byte(cur *c) {
  if (!c->n)
    return -1;
  c->n--;
  return *c->p++;
}

static const uint8_t *field(cur *c, size_t *len) {
  int l = byte(c);
  *len = l < 0 ? 0 : (size_t)l;
  if (*len > c->n)
    *len = c->n;
  const uint8_t *f = c->p;
  c->p += *len;
  c->n -= *len;
  return f;
}

static uint64_t le(cur *c, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) {
    int b = byte(c);
    v |= (uint64_t)(b < 0 ? 0 : b) << (8 * i);
  }
  return v;
}

/* Objects that got rows, to call afterwards. */
typedef struct obj {
  int cls;
  char id[256];
} obj;

static size_t write_rows(const uint8_t *data, size_t size, obj *objs, size_t max) {
  sqlite3 *db;
  if (sqlite3_open(work, &db) != SQLITE_OK)
    abort();
  sqlite3_stmt *kv, *al;
  if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO kv VALUES(?1,?2,?3,?4,?5)", -1, &kv,
                         NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO alarms VALUES(?1,?2,?3,?4,?5,?6)",
                         -1, &al, NULL) != SQLITE_OK)
    abort();
  sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  cur c = {data, size};
  size_t nobj = 0;
  while (c.n) {
    int table = byte(&c) & 1, ci = byte(&c);
    ci = ci < 0 ? 0 : ci % 8;
    size_t idl;
    const uint8_t *id = field(&c, &idl);
    sqlite3_stmt *st = table ? al : kv;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, CLS[ci], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, (const char *)id, (int)idl, SQLITE_TRANSIENT);
    if (table == 0) {
      int ns = byte(&c);
      size_t kl, vl;
      const uint8_t *k = field(&c, &kl);
      const uint8_t *v = field(&c, &vl);
      sqlite3_bind_int(st, 3, ns < 0 ? 0 : ns % 8);
      sqlite3_bind_blob(st, 4, kl ? (const void *)k : "", (int)kl, SQLITE_TRANSIENT);
      sqlite3_bind_blob(st, 5, vl ? (const void *)v : "", (int)vl, SQLITE_TRANSIENT);
    } else {
      size_t nl, ml;
      const uint8_t *name = field(&c, &nl);
      int64_t at = (int64_t)le(&c, 8);
      int64_t attempt = (int32_t)le(&c, 4);
      const uint8_t *meta = field(&c, &ml);
      sqlite3_bind_text(st, 3, (const char *)name, (int)nl, SQLITE_TRANSIENT);
      /* Due times near "now" so that many fire, some far off. */
      sqlite3_bind_int64(st, 4, (at & 1) ? at : NOW_MS - 100000 + (at % 200000));
      sqlite3_bind_int64(st, 5, attempt);
      sqlite3_bind_blob(st, 6, ml ? (const void *)meta : "", (int)ml, SQLITE_TRANSIENT);
    }
    sqlite3_step(st);
    if (nobj < max && idl < sizeof objs[0].id) {
      objs[nobj].cls = ci;
      memcpy(objs[nobj].id, id, idl);
      objs[nobj].id[idl] = '\0';
      nobj++;
    }
  }
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  sqlite3_finalize(kv);
  sqlite3_finalize(al);
  sqlite3_close(db);
  return nobj;
}

static int bad(int rc) {
  return rc == STEAD_ETIMEDOUT || rc == STEAD_EMISUSE || rc == STEAD_ENOMEM;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  make_template();
  copy_template();
  obj objs[16];
  size_t nobj = write_rows(data, size, objs, 16);
  stead_config cfg = config(work);
  stead_rt *rt;
  int rc = stead_open(&cfg, &rt);
  if (rc) {
    if (rc != STEAD_ECORRUPT && rc != STEAD_ESTORAGE)
      abort();
    return 0;
  }
  if (stead_examples_register(rt) != 0)
    abort();
  if (bad(stead_alarms_fire_due(rt)))
    abort();
  static const char *const topics[] = {"chat.a.message", "a", "x.y.z"};
  for (int i = 0; i < 3; i++)
    (void)stead_emit_rt(rt, topics[i], "{}", 2);
  for (size_t i = 0; i < nobj; i++) {
    void *reply = NULL;
    size_t len = 0;
    const char *arg = objs[i].cls == 3 ? "{\"limit\":5}" : "";
    rc = stead_call(rt, CLS[objs[i].cls], objs[i].id, READ[objs[i].cls], arg, strlen(arg),
                    10000, &reply, &len);
    stead_free(reply);
    if (bad(rc))
      abort();
    stead_alarm_info *al = NULL;
    size_t n = 0;
    if (bad(stead_alarms_pending(rt, CLS[objs[i].cls], objs[i].id, &al, &n)))
      abort();
    stead_free(al);
  }
  if (bad(stead_run_until_idle(rt)) || stead_close(rt) != 0)
    abort();
  return 0;
}
