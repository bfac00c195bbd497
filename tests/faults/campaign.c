/*
 * campaign.c -- single-node fault campaigns against real processes and
 * real storage (issue 11). Usage:
 *
 *   faults_campaign kill9|diskfull|pg|clock|all [--seconds N] [--threads N]
 *
 * kill9     `stead serve` on SQLite (durability full) under HTTP load from
 *           client threads; the node is killed with SIGKILL at random
 *           moments and restarted on the same port and data directory.
 * diskfull  `stead serve` on SQLite whose data directory is a small tmpfs
 *           (or, where mounting is not permitted, whose file size limit
 *           RLIMIT_FSIZE is lowered under it with SIGXFSZ ignored); cycles
 *           of "fill the disk while a writer grows the database, then free
 *           the space", under the same counter load. Also checks that the
 *           node never dies and serves again once space is back.
 * pg        the library in-process on PostgreSQL (served nodes on
 *           PostgreSQL: cluster_campaign.c), a private server
 *           started for the run; faults alternate between
 *           pg_terminate_backend of every stead connection and a
 *           PostgreSQL restart (fast or immediate stop).
 * clock     the library in-process on SQLite with the real alarm
 *           scheduler thread and an injected wall clock that runs 10x
 *           fast and jumps back and forth by up to 10 minutes; objects
 *           hold alarms spread over 20 minutes. Checks every alarm fires
 *           at least once and never before its due time by the runtime's
 *           clock, next to the counter load.
 *
 * Every campaign reports requests sent, acknowledged, failed with a
 * retryable error, with unknown outcome, lost acknowledged writes and
 * increments applied more often than possible (faults.h) and exits 1 on
 * any violation. Temporary directories live under /tmp and are removed.
 */
#include "faults.h"

#include "examples.h"
#include "stead.h"
#include "storage/pg_helper.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef STEAD_EXE
#define STEAD_EXE "build/release/src/server/stead"
#endif

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static unsigned rnd(unsigned *seed, unsigned n) {
  return n ? (unsigned)rand_r(seed) % n : 0;
}

static void rm_rf(const char *dir) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    /* best effort */
  }
}

/* ==== the stead serve process ========================================= */

typedef struct server {
  pid_t pid;
  int port;
  char dir[200];  /* temp dir */
  char data[260]; /* data directory */
  char log[260];
  int ignore_xfsz; /* start with SIGXFSZ ignored (RLIMIT_FSIZE mode) */
} server;

static int free_port(void) {
  return pgh_free_port();
}

static int http_get_status(int port, const char *path) {
  CURL *c = curl_easy_init();
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
  long st = 0;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  curl_easy_cleanup(c);
  return (int)st;
}

/* Starts (or restarts) the node on s->port and waits for /healthz. */
static int server_start(server *s) {
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
  for (int attempt = 0; attempt < 3; attempt++) {
    pid_t pid = fork();
    if (pid == 0) {
      int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(fd, 2);
      if (s->ignore_xfsz)
        signal(SIGXFSZ, SIG_IGN); /* kept across exec: EFBIG instead of death */
      execl(STEAD_EXE, STEAD_EXE, "serve", "--listen", listen, "--data", s->data,
            "--storage", "sqlite", "--durability", "full", "--log-level", "warn",
            (char *)NULL);
      _exit(127);
    }
    s->pid = pid;
    for (int waited = 0; waited < 15000; waited += 20) {
      if (http_get_status(s->port, "/healthz") == 200)
        return 0;
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        s->pid = 0;
        break;
      }
      sleep_ms(20);
    }
    if (s->pid > 0) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, NULL, 0);
      s->pid = 0;
    }
    sleep_ms(200); /* e.g. the port still held: try again */
  }
  fprintf(stderr, "faults: stead serve did not start, see %s\n", s->log);
  return -1;
}

static int server_stop(server *s, int sig) {
  if (s->pid <= 0)
    return -1;
  kill(s->pid, sig);
  int st = 0;
  waitpid(s->pid, &st, 0);
  s->pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int server_alive(server *s) {
  return s->pid > 0 && waitpid(s->pid, NULL, WNOHANG) == 0;
}

/* ==== HTTP load ======================================================== */

typedef struct body {
  char buf[512];
  size_t len;
} body;

static size_t on_body(char *p, size_t sz, size_t n, void *u) {
  body *b = u;
  size_t len = sz * n, room = sizeof b->buf - 1 - b->len;
  memcpy(b->buf + b->len, p, len < room ? len : room);
  b->len += len < room ? len : room;
  b->buf[b->len] = 0;
  return len;
}

enum { R_ACK, R_FAILED, R_UNKNOWN };

/* POSTs one request; the outcome as the client can know it. */
static int post(CURL *c, int port, const char *path, const char *data, body *out) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  out->len = 0;
  out->buf[0] = 0;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 1000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  /* A fresh connection per request: on a reused one whose peer died,
   * libcurl silently resends the request on a new connection, so a
   * request the dead node had already committed could come back as
   * "could not connect" -- a client-side duplicate, not the server's. */
  curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
  CURLcode cc = curl_easy_perform(c);
  if (cc == CURLE_COULDNT_CONNECT)
    return R_FAILED; /* nothing was sent */
  if (cc != CURLE_OK)
    return R_UNKNOWN;
  long st = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  if (st == 200)
    return R_ACK;
  if (st == 504 || strstr(out->buf, "ETIMEDOUT") || strstr(out->buf, "EUNKNOWN"))
    return R_UNKNOWN;
  if (getenv("FX_DEBUG"))
    fprintf(stderr, "faults: %s -> %ld %s\n", path, st, out->buf);
  return R_FAILED;
}

typedef struct load {
  fx_ledger *l;
  atomic_int stop;
  int port;
  int nthreads, nids;
  /* diskfull: a writer that grows the database while `fill` is set */
  atomic_int fill;
  atomic_long fill_ok, fill_err;
  atomic_long acks_since; /* acks since the counter was last zeroed */
} load;

typedef struct worker {
  load *ld;
  int index;
  pthread_t th;
} worker;

static void account(fx_ledger *l, int id, int r) {
  if (r == R_ACK) {
    atomic_fetch_add(&l->acked, 1);
    atomic_fetch_add(&l->id_acked[id], 1);
  } else if (r == R_FAILED) {
    atomic_fetch_add(&l->failed, 1);
  } else {
    atomic_fetch_add(&l->unknown, 1);
    atomic_fetch_add(&l->id_unknown[id], 1);
  }
}

/* Each worker owns ids index, index + nthreads, ...: one request in flight
 * per object, so the ledger per id is exact. */
static void *http_worker(void *arg) {
  worker *w = arg;
  load *ld = w->ld;
  CURL *c = curl_easy_init();
  unsigned seed = (unsigned)w->index * 7919u + 1;
  body b;
  while (!atomic_load(&ld->stop)) {
    int per = (ld->nids - w->index + ld->nthreads - 1) / ld->nthreads;
    int id = w->index + ld->nthreads * (int)rnd(&seed, (unsigned)per);
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/counter/fx-%d/increment", id);
    atomic_fetch_add(&ld->l->sent, 1);
    int r = post(c, ld->port, path, "1", &b);
    account(ld->l, id, r);
    if (r == R_ACK)
      atomic_fetch_add(&ld->acks_since, 1);
    else
      sleep_ms(5); /* a down node: do not spin */
  }
  curl_easy_cleanup(c);
  return NULL;
}

/* diskfull: posts 3 KB messages to ever new chat rooms, so the database
 * must grow, while ld->fill is set. */
static void *fill_worker(void *arg) {
  load *ld = arg;
  CURL *c = curl_easy_init();
  static char msg[3300];
  int n = snprintf(msg, sizeof msg, "{\"user\":\"filler\",\"text\":\"");
  memset(msg + n, 'x', 3000);
  snprintf(msg + n + 3000, sizeof msg - (size_t)n - 3000, "\"}");
  body b;
  for (long room = 0; !atomic_load(&ld->stop); room++) {
    if (!atomic_load(&ld->fill)) {
      sleep_ms(10);
      continue;
    }
    char path[128];
    snprintf(path, sizeof path, "/v1/objects/chatroom/fill%ld/post", room);
    if (post(c, ld->port, path, msg, &b) == R_ACK)
      atomic_fetch_add(&ld->fill_ok, 1);
    else
      atomic_fetch_add(&ld->fill_err, 1);
  }
  curl_easy_cleanup(c);
  return NULL;
}

static void load_start(load *ld, worker *ws) {
  for (int i = 0; i < ld->nthreads; i++) {
    ws[i] = (worker){.ld = ld, .index = i};
    pthread_create(&ws[i].th, NULL, http_worker, &ws[i]);
  }
}

static void load_stop(load *ld, worker *ws) {
  atomic_store(&ld->stop, 1);
  for (int i = 0; i < ld->nthreads; i++)
    pthread_join(ws[i].th, NULL);
}

/* The counter's value through the node, retried while it is unavailable. */
static long http_count(int port, int id) {
  CURL *c = curl_easy_init();
  char path[128];
  snprintf(path, sizeof path, "/v1/objects/counter/fx-%d/get", id);
  body b;
  long v = -1;
  for (int i = 0; i < 50 && v < 0; i++) {
    if (post(c, port, path, "", &b) == R_ACK)
      v = atol(b.buf);
    else
      sleep_ms(100);
  }
  curl_easy_cleanup(c);
  return v;
}

static int reconcile_http(load *ld, fx_result *r) {
  for (int i = 0; i < ld->nids; i++) {
    long v = http_count(ld->port, i);
    if (v < 0) {
      fprintf(stderr, "faults: cannot read counter fx-%d\n", i);
      r->other++;
      continue;
    }
    fx_reconcile(ld->l, i, v, r);
  }
  return 0;
}

static int new_server(server *s, const char *name) {
  memset(s, 0, sizeof *s);
  snprintf(s->dir, sizeof s->dir, "/tmp/stead-faults-%s-XXXXXX", name);
  if (!mkdtemp(s->dir))
    return -1;
  snprintf(s->data, sizeof s->data, "%s/data", s->dir);
  snprintf(s->log, sizeof s->log, "%s/stderr.log", s->dir);
  mkdir(s->data, 0755);
  s->port = free_port();
  return 0;
}

/* ==== kill -9 ========================================================= */

static int campaign_kill9(int seconds, int threads) {
  fx_ledger l = {0};
  fx_result r = {.campaign = "kill9", .other_name = "unreadable"};
  server s;
  if (new_server(&s, "kill9") || server_start(&s))
    return 2;
  load ld = {.l = &l, .port = s.port, .nthreads = threads, .nids = threads * 4};
  worker ws[64];
  load_start(&ld, ws);
  unsigned seed = (unsigned)time(NULL);
  int64_t end = mono_ms() + seconds * 1000LL;
  while (mono_ms() < end) {
    sleep_ms(200 + (int)rnd(&seed, 800));
    server_stop(&s, SIGKILL);
    r.faults++;
    if (server_start(&s) != 0) {
      r.other++;
      break;
    }
    r.rounds++;
  }
  load_stop(&ld, ws);
  fx_fill(&l, &r);
  reconcile_http(&ld, &r);
  if (server_stop(&s, SIGTERM) != 0)
    r.other++;
  r.note = "stead serve, SQLite durability=full, SIGKILL + restart";
  rm_rf(s.dir);
  return fx_report(&r);
}

/* ==== disk full ======================================================= */

typedef struct disk {
  int tmpfs; /* 1: a tmpfs data dir + ballast file; 0: RLIMIT_FSIZE */
  char ballast[300];
} disk;

/* Takes all free space (tmpfs) or forbids any file growth (rlimit). */
static void disk_fill(disk *d, server *s) {
  if (d->tmpfs) {
    int fd = open(d->ballast, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    static char block[65536];
    while (fd >= 0 && write(fd, block, sizeof block) > 0) {
    }
    while (fd >= 0 && write(fd, block, 512) > 0) {
    }
    if (fd >= 0)
      close(fd);
    return;
  }
  /* The largest data file's size: any growth past it fails with EFBIG. */
  off_t max = 0;
  const char *names[] = {"stead.db", "stead.db-wal"};
  for (int i = 0; i < 2; i++) {
    char p[400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", s->data, names[i]);
    if (stat(p, &st) == 0 && st.st_size > max)
      max = st.st_size;
  }
  struct rlimit rl = {.rlim_cur = (rlim_t)max, .rlim_max = RLIM_INFINITY};
  prlimit(s->pid, RLIMIT_FSIZE, &rl, NULL);
}

static void disk_free(disk *d, server *s) {
  if (d->tmpfs) {
    unlink(d->ballast);
    return;
  }
  struct rlimit rl = {.rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY};
  prlimit(s->pid, RLIMIT_FSIZE, &rl, NULL);
}

static int campaign_diskfull(int seconds, int threads) {
  fx_ledger l = {0};
  fx_result r = {.campaign = "diskfull", .other_name = "crashed_or_not_recovered"};
  server s;
  disk d = {0};
  if (new_server(&s, "disk"))
    return 2;
  /* FX_NO_MOUNT=1 exercises the fallback where mounting is permitted. */
  d.tmpfs = !getenv("FX_NO_MOUNT") && mount("tmpfs", s.data, "tmpfs", 0, "size=48m") == 0;
  snprintf(d.ballast, sizeof d.ballast, "%s/ballast", s.data);
  s.ignore_xfsz = !d.tmpfs;
  if (server_start(&s))
    return 2;
  load ld = {.l = &l, .port = s.port, .nthreads = threads, .nids = threads * 4};
  worker ws[64];
  pthread_t filler;
  pthread_create(&filler, NULL, fill_worker, &ld);
  load_start(&ld, ws);
  long full_errors = 0;
  int64_t end = mono_ms() + seconds * 1000LL;
  do {
    /* Full: fill the disk, then let the writer hit it. */
    disk_fill(&d, &s);
    atomic_store(&ld.fill_err, 0);
    atomic_store(&ld.fill, 1);
    for (int i = 0; i < 60 && atomic_load(&ld.fill_err) < 20; i++)
      sleep_ms(50);
    sleep_ms(500);
    atomic_store(&ld.fill, 0);
    full_errors += atomic_load(&ld.fill_err);
    r.faults++;
    /* Free: the node must serve writes again. */
    disk_free(&d, &s);
    atomic_store(&ld.acks_since, 0);
    for (int i = 0; i < 100 && atomic_load(&ld.acks_since) < 20; i++)
      sleep_ms(50);
    if (atomic_load(&ld.acks_since) == 0 || !server_alive(&s)) {
      fprintf(stderr, "faults: node %s after the disk was freed\n",
              server_alive(&s) ? "serves no writes" : "died");
      r.other++;
      break;
    }
    r.rounds++;
  } while (mono_ms() < end);
  load_stop(&ld, ws);
  pthread_join(filler, NULL);
  fx_fill(&l, &r);
  if (server_alive(&s))
    reconcile_http(&ld, &r);
  /* After a clean restart everything acknowledged is still there. */
  if (server_stop(&s, SIGTERM) != 0 || server_start(&s) != 0)
    r.other++;
  else {
    fx_result again = r;
    again.lost = again.dups = 0;
    reconcile_http(&ld, &again);
    r.lost += again.lost;
    r.dups += again.dups;
    server_stop(&s, SIGTERM);
  }
  static char note[200];
  snprintf(note, sizeof note, "%s; writer errors while full: %ld",
           d.tmpfs ? "tmpfs 48 MiB filled by a ballast file"
                   : "RLIMIT_FSIZE lowered under the node (no tmpfs: mount not permitted "
                     "or FX_NO_MOUNT)",
           full_errors);
  r.note = note;
  if (full_errors == 0) {
    fprintf(stderr, "faults: the disk never filled up: nothing was tested\n");
    r.other++;
  }
  if (d.tmpfs)
    umount2(s.data, MNT_DETACH);
  rm_rf(s.dir);
  return fx_report(&r);
}

/* ==== in-process load (pg, clock) ===================================== */

typedef struct lib_load {
  fx_ledger *l;
  stead_rt *rt;
  atomic_int stop;
  int nthreads, nids;
} lib_load;

typedef struct lib_worker {
  lib_load *ld;
  int index;
  pthread_t th;
} lib_worker;

static void *lib_worker_fn(void *arg) {
  lib_worker *w = arg;
  lib_load *ld = w->ld;
  unsigned seed = (unsigned)w->index * 104729u + 3;
  while (!atomic_load(&ld->stop)) {
    int per = (ld->nids - w->index + ld->nthreads - 1) / ld->nthreads;
    int id = w->index + ld->nthreads * (int)rnd(&seed, (unsigned)per);
    char name[32];
    snprintf(name, sizeof name, "fx-%d", id);
    atomic_fetch_add(&ld->l->sent, 1);
    int rc = stead_call(ld->rt, "counter", name, "increment", "1", 1, 5000, NULL, NULL);
    int r = rc == 0                                         ? R_ACK
            : rc == STEAD_ETIMEDOUT || rc == STEAD_EUNKNOWN ? R_UNKNOWN
                                                            : R_FAILED;
    account(ld->l, id, r);
    if (r != R_ACK)
      sleep_ms(5);
  }
  return NULL;
}

static void lib_start(lib_load *ld, lib_worker *ws) {
  for (int i = 0; i < ld->nthreads; i++) {
    ws[i] = (lib_worker){.ld = ld, .index = i};
    pthread_create(&ws[i].th, NULL, lib_worker_fn, &ws[i]);
  }
}

static void lib_stop(lib_load *ld, lib_worker *ws) {
  atomic_store(&ld->stop, 1);
  for (int i = 0; i < ld->nthreads; i++)
    pthread_join(ws[i].th, NULL);
}

/* Reads every counter from a fresh runtime on the same storage. */
static void lib_reconcile(const char *spec, lib_load *ld, fx_result *r) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.storage = spec;
  stead_rt *rt;
  if (stead_open(&cfg, &rt) != 0 || stead_examples_register(rt) != 0) {
    fprintf(stderr, "faults: reopen failed: %s\n", stead_errmsg());
    r->other++;
    return;
  }
  for (int i = 0; i < ld->nids; i++) {
    char name[32];
    snprintf(name, sizeof name, "fx-%d", i);
    void *rep = NULL;
    size_t len = 0;
    int rc = stead_call(rt, "counter", name, "get", "", 0, 10000, &rep, &len);
    if (rc != 0) {
      fprintf(stderr, "faults: reading %s: %s\n", name, stead_errmsg());
      r->other++;
    } else {
      fx_reconcile(ld->l, i, atol(rep), r);
    }
    stead_free(rep);
  }
  stead_close(rt);
}

/* ==== PostgreSQL ====================================================== */

static int pg_terminate(const char *uri) {
  PGconn *c = PQconnectdb(uri);
  int n = 0;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult *res = PQexec(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE pid <> pg_backend_pid() AND backend_type = 'client "
                              "backend'");
    n = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
    PQclear(res);
  }
  PQfinish(c);
  return n;
}

static int campaign_pg(int seconds, int threads) {
  fx_ledger l = {0};
  fx_result r = {.campaign = "pg", .other_name = "unreadable"};
  int prc = pgh_start(0);
  if (prc == 1) {
    printf("pg         SKIPPED (no PostgreSQL binaries)\n");
    return 0;
  }
  if (prc != 0)
    return 2;
  char spec[512];
  pgh_spec(spec, sizeof spec, "faults", NULL);
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.storage = spec;
  cfg.default_timeout_ms = 5000;
  stead_rt *rt;
  if (stead_open(&cfg, &rt) != 0 || stead_examples_register(rt) != 0) {
    fprintf(stderr, "faults: open on postgres: %s\n", stead_errmsg());
    return 2;
  }
  lib_load ld = {.l = &l, .rt = rt, .nthreads = threads, .nids = threads * 4};
  lib_worker ws[64];
  lib_start(&ld, ws);
  unsigned seed = (unsigned)time(NULL);
  long killed = 0, restarts = 0;
  int64_t end = mono_ms() + seconds * 1000LL;
  while (mono_ms() < end) {
    sleep_ms(300 + (int)rnd(&seed, 700));
    if (r.faults % 2 == 0) {
      killed += pg_terminate(pgh_server.uri);
    } else {
      pgh_pg_stop(rnd(&seed, 2) ? "fast" : "immediate");
      sleep_ms(100 + (int)rnd(&seed, 400));
      if (pgh_pg_start() != 0) {
        r.other++;
        break;
      }
      restarts++;
    }
    r.faults++;
    r.rounds++;
  }
  /* Let the backend reconnect so the last calls finish cleanly. */
  sleep_ms(500);
  lib_stop(&ld, ws);
  stead_close(rt);
  fx_fill(&l, &r);
  lib_reconcile(spec, &ld, &r);
  static char note[160];
  snprintf(note, sizeof note,
           "library on PostgreSQL; %ld backends terminated, %ld server restarts", killed,
           restarts);
  r.note = note;
  return fx_report(&r);
}

/* ==== clock jumps ===================================================== */

#define CLK_ALARMS 200
#define CLK_OBJS   20

typedef struct clk_state {
  _Atomic int64_t now;
  atomic_long fired[CLK_ALARMS];
  atomic_long early;
} clk_state;

static clk_state clk;

static int64_t clk_read(void *u) {
  (void)u;
  return atomic_load(&clk.now);
}

/* "arm": arg "INDEX AT_MS"; the alarm's meta holds its due time. */
static int clk_arm(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[64];
  if (len >= sizeof buf)
    return stead_fail(ctx, "bad arg");
  memcpy(buf, arg, len);
  buf[len] = 0;
  int idx;
  long long at;
  if (sscanf(buf, "%d %lld", &idx, &at) != 2)
    return stead_fail(ctx, "bad arg");
  char name[32];
  snprintf(name, sizeof name, "a%d", idx);
  int64_t at64 = at;
  return stead_alarm_set(ctx, name, at64, &at64, sizeof at64);
}

static int clk_alarm(stead_ctx *ctx, const char *name, const void *meta, size_t len,
                     uint32_t attempt) {
  int64_t at;
  if (len != sizeof at)
    return 0;
  memcpy(&at, meta, sizeof at);
  if (stead_now_ms(ctx) < at)
    atomic_fetch_add(&clk.early, 1);
  int idx = atoi(name + 1);
  if (idx >= 0 && idx < CLK_ALARMS)
    atomic_fetch_add(&clk.fired[idx], 1);
  return 0;
}

static const stead_method clk_methods[] = {{"arm", clk_arm}, {NULL, NULL}};
static const stead_class clk_class = {
    .name = "alarmer", .methods = clk_methods, .on_alarm = clk_alarm};

static int campaign_clock(int seconds, int threads) {
  fx_ledger l = {0};
  fx_result r = {.campaign = "clock", .other_name = "alarms_early_or_missed"};
  char dir[] = "/tmp/stead-faults-clock-XXXXXX";
  if (!mkdtemp(dir))
    return 2;
  char spec[300];
  snprintf(spec, sizeof spec, "sqlite:%s/stead.db", dir);
  int64_t t0 = 1700000000000LL;
  atomic_store(&clk.now, t0);
  for (int i = 0; i < CLK_ALARMS; i++)
    atomic_store(&clk.fired[i], 0);
  atomic_store(&clk.early, 0);
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.storage = spec;
  cfg.clock = clk_read;
  stead_rt *rt;
  if (stead_open(&cfg, &rt) != 0 || stead_examples_register(rt) != 0 ||
      stead_register(rt, &clk_class) != 0) {
    fprintf(stderr, "faults: open: %s\n", stead_errmsg());
    return 2;
  }
  unsigned seed = (unsigned)time(NULL);
  int64_t max_at = t0;
  for (int i = 0; i < CLK_ALARMS; i++) {
    int64_t at = t0 + 1000 + (int64_t)rnd(&seed, 20 * 60 * 1000);
    max_at = at > max_at ? at : max_at;
    char obj[16], arg[64];
    snprintf(obj, sizeof obj, "o%d", i % CLK_OBJS);
    int n = snprintf(arg, sizeof arg, "%d %lld", i, (long long)at);
    if (stead_call(rt, "alarmer", obj, "arm", arg, (size_t)n, 5000, NULL, NULL) != 0) {
      fprintf(stderr, "faults: arm: %s\n", stead_errmsg());
      return 2;
    }
  }
  lib_load ld = {.l = &l, .rt = rt, .nthreads = threads, .nids = threads * 4};
  lib_worker ws[64];
  lib_start(&ld, ws);
  /* The clock runs 10x fast and jumps by up to 10 minutes either way about
   * every 200 ms. */
  int64_t end = mono_ms() + seconds * 1000LL, next_jump = mono_ms() + 200;
  while (mono_ms() < end) {
    sleep_ms(2);
    atomic_fetch_add(&clk.now, 20);
    if (mono_ms() >= next_jump) {
      int64_t d = (int64_t)rnd(&seed, 10 * 60 * 1000);
      atomic_fetch_add(&clk.now, rnd(&seed, 2) ? d : -d);
      r.faults++;
      next_jump = mono_ms() + 100 + (int64_t)rnd(&seed, 200);
    }
    r.rounds = r.faults;
  }
  /* Past every due time: all must fire (at least once) within 20 s. */
  atomic_store(&clk.now, max_at + 60000);
  r.faults++;
  long missed = CLK_ALARMS;
  for (int waited = 0; waited < 20000 && missed; waited += 50) {
    missed = 0;
    for (int i = 0; i < CLK_ALARMS; i++)
      missed += atomic_load(&clk.fired[i]) == 0;
    if (missed)
      sleep_ms(50);
  }
  lib_stop(&ld, ws);
  stead_close(rt);
  fx_fill(&l, &r);
  lib_reconcile(spec, &ld, &r);
  long fires = 0;
  for (int i = 0; i < CLK_ALARMS; i++)
    fires += atomic_load(&clk.fired[i]);
  r.other += missed + atomic_load(&clk.early);
  static char note[200];
  snprintf(
      note, sizeof note,
      "library on SQLite, real scheduler; %d alarms, %ld fires, %ld missed, %ld early",
      CLK_ALARMS, fires, missed, atomic_load(&clk.early));
  r.note = note;
  rm_rf(dir);
  return fx_report(&r);
}

/* ==== main ============================================================ */

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s kill9|diskfull|pg|clock|all [--seconds N] [--threads N]\n",
            argv[0]);
    return 2;
  }
  int seconds = 5, threads = 4;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--seconds") == 0)
      seconds = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--threads") == 0)
      threads = atoi(argv[i + 1]);
  }
  if (threads < 1 || threads > 16 || seconds < 1) {
    fprintf(stderr, "--threads 1..16, --seconds >= 1\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);
  const char *c = argv[1];
  int all = strcmp(c, "all") == 0, rc = 0, ran = 0;
  if (all || strcmp(c, "kill9") == 0)
    rc |= campaign_kill9(seconds, threads), ran++;
  if (all || strcmp(c, "diskfull") == 0)
    rc |= campaign_diskfull(seconds, threads), ran++;
  if (all || strcmp(c, "pg") == 0)
    rc |= campaign_pg(seconds, threads), ran++;
  if (all || strcmp(c, "clock") == 0)
    rc |= campaign_clock(seconds, threads), ran++;
  curl_global_cleanup();
  if (!ran) {
    fprintf(stderr, "unknown campaign %s\n", c);
    return 2;
  }
  return rc ? 1 : 0;
}
