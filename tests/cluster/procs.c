/*
 * procs.c -- see procs.h. Nodes are the shipped `stead` binary, run the way
 * an operator runs it (flags, signals, exit codes), so the tests cover the
 * server's cluster flags and /v1/cluster as well as the core.
 */
#include "procs.h"

#include "stead.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *stead_binary(void) {
  return STEAD_EXE;
}

static void print_file(const char *path, const char *tag) {
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, f) && n++ < 60)
    fprintf(stderr, "  %s: %s", tag, line);
  fclose(f);
}

void pc_init(pcluster *c, const char *nats_url, const char *pg_uri, const char *name,
             int shards) {
  memset(c, 0, sizeof *c);
  c->nats_url = nats_url;
  /* No lock or idle-transaction options: the runtime derives them from
   * the lease ttl (a node paused mid-commit must not hold the others up). */
  snprintf(c->storage, sizeof c->storage, "%s?prefix=%s", pg_uri, name);
  snprintf(c->deployment, sizeof c->deployment, "%s", name);
  c->shards = shards;
  /* Short leases and beats so that takeovers take about a second; the
   * ttl stays well above scheduling stalls on a loaded 2-core machine. */
  c->lease_ttl_ms = 1500;
  c->heartbeat_ms = 200;
  for (int i = 0; i < PROCS_MAX_NODES; i++)
    snprintf(c->nodes[i].id, sizeof c->nodes[i].id, "node-%d", i);
}

static void rm_dir(const char *dir) {
  if (!dir[0])
    return;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) {
    /* best effort */
  }
}

int pc_start(pcluster *c, int i) {
  pnode *nd = &c->nodes[i];
  if (i >= c->n)
    c->n = i + 1;
  rm_dir(nd->dir);
  snprintf(nd->dir, sizeof nd->dir, "/tmp/stead-node-XXXXXX");
  if (!mkdtemp(nd->dir))
    return -1;
  char data[128], outp[128], errp[128], shards[16], ttl[16], hb[16];
  snprintf(data, sizeof data, "%s/data", nd->dir);
  snprintf(outp, sizeof outp, "%s/stdout.log", nd->dir);
  snprintf(errp, sizeof errp, "%s/stderr.log", nd->dir);
  snprintf(shards, sizeof shards, "%d", c->shards);
  snprintf(ttl, sizeof ttl, "%d", c->lease_ttl_ms);
  snprintf(hb, sizeof hb, "%d", c->heartbeat_ms);
  const char *argv[] = {stead_binary(),
                        "serve",
                        "--listen",
                        "127.0.0.1:0",
                        "--data",
                        data,
                        "--storage",
                        c->storage,
                        "--nats",
                        c->nats_url,
                        "--node-id",
                        nd->id,
                        "--deployment",
                        c->deployment,
                        "--shards",
                        shards,
                        "--lease-ttl-ms",
                        ttl,
                        "--heartbeat-ms",
                        hb,
                        "--log-level",
                        getenv("STEAD_PROCS_LOG") ? getenv("STEAD_PROCS_LOG") : "warn",
                        "--workers",
                        "2",
                        "--http-threads",
                        "4",
                        NULL};
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1);
    dup2(fe, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  nd->pid = pid;
  const char *key = "serving on http://127.0.0.1:";
  for (int waited = 0; waited < 20000; waited += 20) {
    char buf[4096];
    FILE *f = fopen(outp, "r");
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
      fclose(f);
    buf[got] = '\0';
    const char *m = strstr(buf, key);
    if (m && strchr(m, '\n')) {
      nd->port = atoi(m + strlen(key));
      snprintf(nd->url, sizeof nd->url, "http://127.0.0.1:%d", nd->port);
      atomic_store(&nd->up, 1);
      return 0;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      nd->pid = 0;
      break;
    }
    usleep(20000);
  }
  fprintf(stderr, "%s did not start:\n", nd->id);
  print_file(errp, nd->id);
  if (nd->pid > 0)
    pc_kill(c, i);
  return -1;
}

void pc_kill(pcluster *c, int i) {
  pnode *nd = &c->nodes[i];
  atomic_store(&nd->up, 0);
  if (nd->pid > 0) {
    kill(nd->pid, SIGKILL);
    waitpid(nd->pid, NULL, 0);
    nd->pid = 0;
  }
}

int pc_term(pcluster *c, int i, int timeout_ms) {
  pnode *nd = &c->nodes[i];
  atomic_store(&nd->up, 0);
  if (nd->pid <= 0)
    return -1;
  kill(nd->pid, SIGTERM);
  int st = 0;
  for (int waited = 0;; waited += 10) {
    if (waitpid(nd->pid, &st, WNOHANG) == nd->pid)
      break;
    if (waited >= timeout_ms) {
      fprintf(stderr, "%s did not exit in %d ms after SIGTERM\n", nd->id, timeout_ms);
      pc_kill(c, i);
      return -1;
    }
    usleep(10000);
  }
  nd->pid = 0;
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (code != 0) {
    char errp[128];
    snprintf(errp, sizeof errp, "%s/stderr.log", nd->dir);
    fprintf(stderr, "%s exited %d:\n", nd->id, code);
    print_file(errp, nd->id);
  }
  return code;
}

void pc_dump(pcluster *c) {
  for (int i = 0; i < c->n; i++) {
    pnode *nd = &c->nodes[i];
    if (nd->pid <= 0)
      continue;
    json_t *st = pc_status(c, i);
    if (st) {
      json_object_del(st, "owned");
      char *s = json_dumps(st, JSON_COMPACT);
      fprintf(stderr, "  %s (%s): %s\n", nd->id, atomic_load(&nd->up) ? "up" : "down",
              s ? s : "?");
      free(s);
      json_decref(st);
    } else {
      fprintf(stderr, "  %s: %s\n", nd->id, c->last_status_error);
    }
    char errp[128];
    snprintf(errp, sizeof errp, "%s/stderr.log", nd->dir);
    print_file(errp, nd->id);
  }
}

void pc_stop_all(pcluster *c) {
  for (int i = 0; i < c->n; i++) {
    pc_kill(c, i);
    rm_dir(c->nodes[i].dir);
    c->nodes[i].dir[0] = '\0';
  }
}

/* ---- HTTP ---- */

struct pclient {
  CURL *h[PROCS_MAX_NODES];
};

pclient *pclient_new(void) {
  pclient *p = calloc(1, sizeof *p);
  for (int i = 0; i < PROCS_MAX_NODES; i++)
    p->h[i] = curl_easy_init();
  return p;
}

void pclient_free(pclient *p) {
  if (!p)
    return;
  for (int i = 0; i < PROCS_MAX_NODES; i++)
    curl_easy_cleanup(p->h[i]);
  free(p);
}

typedef struct body {
  char buf[1 << 16]; /* a /v1/cluster of 1024 owned shards fits */
  size_t len;
} body;

static size_t on_body(char *p, size_t size, size_t n, void *u) {
  body *b = u;
  size_t len = size * n, room = sizeof b->buf - 1 - b->len;
  memcpy(b->buf + b->len, p, len < room ? len : room);
  b->len += len < room ? len : room;
  b->buf[b->len] = '\0';
  return len;
}

/* One request on node i's keep-alive handle. Returns the curl code;
 * *status the HTTP status. */
static CURLcode do_http(CURL *c, const char *url, const char *post, long timeout_ms,
                        long *status, body *b) {
  b->len = 0;
  b->buf[0] = '\0';
  *status = 0;
  curl_easy_reset(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  if (post) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(post));
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  return rc;
}

outcome pc_counter_call(pclient *h, pcluster *c, int i, const char *id,
                        const char *method, int timeout_ms, long long *value,
                        char *detail, size_t detail_len) {
  char url[512];
  snprintf(url, sizeof url, "%s/v1/objects/counter/%s/%s?timeout_ms=%d", c->nodes[i].url,
           id, method, timeout_ms);
  long status;
  body b;
  CURLcode rc = do_http(h->h[i], url, strcmp(method, "get") == 0 ? "" : "1",
                        timeout_ms + 5000L, &status, &b);
  if (detail)
    snprintf(detail, detail_len, "%s %s: curl %d (%s), HTTP %ld, %.300s", c->nodes[i].id,
             id, (int)rc, curl_easy_strerror(rc), status, b.buf);
  /* Even "could not connect" is ambiguous: libcurl resends a request whose
   * kept-alive connection died before an answer on a new connection, and
   * reports only the second failure, though the node may have run the
   * first (seen with kill -9). */
  if (rc != CURLE_OK)
    return OUT_MAYBE;
  if (status == 200) {
    char *end;
    errno = 0;
    long long v = strtoll(b.buf, &end, 10);
    if (errno || end == b.buf)
      return OUT_BAD;
    *value = v;
    return OUT_OK;
  }
  /* ESTORAGE means rolled back: a commit whose outcome is unknown is
   * EUNKNOWN (504), so the count must not include it. */
  if (status == 429 || (status == 503 && (strstr(b.buf, "\"ENOTOWNER\"") ||
                                          strstr(b.buf, "\"ESTORAGE\""))))
    return OUT_NOTRUN;
  if (status == 504 || /* ETIMEDOUT, EUNKNOWN */
      (status == 503 && strstr(b.buf, "\"ECLOSED\"")))
    return OUT_MAYBE;
  if (status == 500 && strstr(b.buf, "\"EIO\"") && strstr(b.buf, "cannot publish"))
    return OUT_EIO;
  return OUT_BAD;
}

int pc_pick(pcluster *c, unsigned *seed) {
  int ups[PROCS_MAX_NODES], n = 0;
  for (int i = 0; i < c->n; i++)
    if (atomic_load(&c->nodes[i].up))
      ups[n++] = i;
  return n ? ups[rand_r(seed) % n] : -1;
}

long long pc_read(pclient *h, pcluster *c, const char *id, int timeout_ms) {
  unsigned seed = (unsigned)time(NULL);
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    int i = pc_pick(c, &seed);
    long long v;
    char detail[512];
    if (i >= 0 &&
        pc_counter_call(h, c, i, id, "get", 5000, &v, detail, sizeof detail) == OUT_OK)
      return v;
    usleep(50000);
  }
  return -1;
}

/* ---- /v1/cluster ---- */

void *pc_status(pcluster *c, int i) {
  CURL *h = curl_easy_init();
  char url[128];
  snprintf(url, sizeof url, "%s/v1/cluster", c->nodes[i].url);
  long status;
  body b;
  CURLcode rc = do_http(h, url, NULL, 5000, &status, &b);
  curl_easy_cleanup(h);
  if (rc != CURLE_OK || status != 200) {
    snprintf(c->last_status_error, sizeof c->last_status_error,
             "%s: GET /v1/cluster: curl %d (%s), HTTP %ld, %.200s", c->nodes[i].id,
             (int)rc, curl_easy_strerror(rc), status, b.buf);
    return NULL;
  }
  json_t *j = json_loads(b.buf, 0, NULL);
  if (!j)
    snprintf(c->last_status_error, sizeof c->last_status_error,
             "%s: GET /v1/cluster: not JSON: %.200s", c->nodes[i].id, b.buf);
  return j;
}

void pc_json_free(void *j) {
  json_decref(j);
}

long long pc_counter(void *status, const char *name) {
  json_t *v = json_object_get(json_object_get(status, "counters"), name);
  return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

unsigned long long pc_epoch(void *status, unsigned shard) {
  json_t *owned = json_object_get(status, "owned");
  size_t k;
  json_t *e;
  json_array_foreach(owned, k, e) {
    if (json_integer_value(json_object_get(e, "shard")) == (json_int_t)shard)
      return (unsigned long long)json_integer_value(json_object_get(e, "epoch"));
  }
  return 0;
}

/* One node's view against the expected live set; 0 or -1 with `why`. */
static int check_node(pcluster *c, int i, const char *const *ids, size_t nids,
                      unsigned char *owner_count, char *why, size_t why_len) {
  json_t *st = pc_status(c, i);
  if (!st) {
    snprintf(why, why_len, "%s", c->last_status_error);
    return -1;
  }
  int rc = -1;
  json_t *members = json_object_get(st, "members");
  json_t *owned = json_object_get(st, "owned");
  if (!json_is_array(members) || !json_is_array(owned)) {
    snprintf(why, why_len, "%s: /v1/cluster lacks members or owned", c->nodes[i].id);
    goto out;
  }
  if (json_array_size(members) != nids) {
    snprintf(why, why_len, "%s sees %zu members, want %zu", c->nodes[i].id,
             json_array_size(members), nids);
    goto out;
  }
  for (size_t k = 0; k < nids; k++) {
    const char *m =
        json_string_value(json_object_get(json_array_get(members, k), "node_id"));
    int found = 0;
    for (size_t x = 0; x < nids && !found; x++)
      found = m && strcmp(m, ids[x]) == 0;
    if (!found) {
      snprintf(why, why_len, "%s lists member %s", c->nodes[i].id, m ? m : "?");
      goto out;
    }
  }
  uint32_t want[4096];
  int nwant = stead_shards_for_node(c->nodes[i].id, ids, nids, (uint32_t)c->shards, NULL,
                                    want, 4096);
  if ((size_t)nwant != json_array_size(owned)) {
    snprintf(why, why_len, "%s owns %zu shards, HRW gives it %d", c->nodes[i].id,
             json_array_size(owned), nwant);
    goto out;
  }
  size_t k;
  json_t *e;
  json_array_foreach(owned, k, e) {
    json_int_t s = json_integer_value(json_object_get(e, "shard"));
    if (s < 0 || s >= c->shards || (uint32_t)s != want[k]) {
      snprintf(why, why_len, "%s owns shard %lld, not its HRW share", c->nodes[i].id,
               (long long)s);
      goto out;
    }
    if (json_is_true(json_object_get(e, "draining"))) {
      snprintf(why, why_len, "%s still drains shard %lld", c->nodes[i].id, (long long)s);
      goto out;
    }
    if (json_integer_value(json_object_get(e, "epoch")) < 1) {
      snprintf(why, why_len, "%s owns shard %lld with epoch < 1", c->nodes[i].id,
               (long long)s);
      goto out;
    }
    owner_count[s]++;
  }
  rc = 0;
out:
  json_decref(st);
  return rc;
}

int pc_wait_settled(pcluster *c, int timeout_ms, char *why, size_t why_len) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    const char *ids[PROCS_MAX_NODES];
    int up[PROCS_MAX_NODES];
    size_t nids = 0;
    for (int i = 0; i < c->n; i++)
      if (atomic_load(&c->nodes[i].up)) {
        up[nids] = i;
        ids[nids++] = c->nodes[i].id;
      }
    unsigned char count[65536];
    memset(count, 0, (size_t)c->shards);
    int ok = nids > 0;
    for (size_t k = 0; k < nids && ok; k++)
      ok = check_node(c, up[k], ids, nids, count, why, why_len) == 0;
    for (int s = 0; s < c->shards && ok; s++)
      if (count[s] != 1) {
        snprintf(why, why_len, "shard %d has %d owners", s, count[s]);
        ok = 0;
      }
    if (ok)
      return 0;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    if (ms > timeout_ms)
      return -1;
    usleep(50000);
  }
}

/* ---- load ---- */

typedef struct worker_arg {
  pload *l;
  unsigned seed;
} worker_arg;

static void record(pload *l, int k, outcome o, long long v, const char *detail) {
  pobj *ob = &l->objs[k];
  pthread_mutex_lock(&ob->mu);
  switch (o) {
  case OUT_OK:
    ob->acked++;
    if (ob->nvals == ob->cap) {
      ob->cap = ob->cap ? ob->cap * 2 : 16;
      ob->vals = realloc(ob->vals, ob->cap * sizeof *ob->vals);
    }
    ob->vals[ob->nvals++] = v;
    break;
  case OUT_MAYBE:
  case OUT_EIO:
    ob->maybe++;
    break;
  case OUT_NOTRUN:
    ob->notrun++;
    snprintf(ob->last_notrun, sizeof ob->last_notrun, "%.150s", detail);
    break;
  case OUT_BAD:
    break;
  }
  pthread_mutex_unlock(&ob->mu);
  atomic_long *ctr = o == OUT_OK       ? &l->ok
                     : o == OUT_MAYBE  ? &l->maybe
                     : o == OUT_NOTRUN ? &l->notrun
                     : o == OUT_EIO    ? &l->eio
                                       : &l->bad;
  atomic_fetch_add(ctr, 1);
  if (o == OUT_BAD || o == OUT_EIO) {
    char *first = o == OUT_BAD ? l->first_bad : l->first_eio;
    pthread_mutex_lock(&l->mu);
    if (!first[0])
      snprintf(first, sizeof l->first_bad, "%s", detail);
    pthread_mutex_unlock(&l->mu);
  }
}

static void *worker(void *arg) {
  worker_arg *wa = arg;
  pload *l = wa->l;
  pclient *h = pclient_new();
  while (!atomic_load(&l->stop)) {
    int i = pc_pick(l->c, &wa->seed);
    if (i < 0) {
      usleep(10000);
      continue;
    }
    int k = rand_r(&wa->seed) % l->nobj;
    char id[64], detail[512];
    snprintf(id, sizeof id, "%s-%d", l->prefix, k);
    long long v = 0;
    outcome o = pc_counter_call(h, l->c, i, id, "increment", l->timeout_ms, &v, detail,
                                sizeof detail);
    record(l, k, o, v, detail);
  }
  pclient_free(h);
  free(wa);
  return NULL;
}

void pl_start(pload *l, pcluster *c, const char *prefix, int nobj, int nthreads,
              int timeout_ms) {
  pl_start_seeded(l, c, prefix, nobj, nthreads, timeout_ms, 0);
}

void pl_start_seeded(pload *l, pcluster *c, const char *prefix, int nobj, int nthreads,
                     int timeout_ms, unsigned seed) {
  memset(l, 0, sizeof *l);
  l->c = c;
  l->prefix = prefix;
  l->nobj = nobj;
  l->objs = calloc((size_t)nobj, sizeof *l->objs);
  for (int k = 0; k < nobj; k++)
    pthread_mutex_init(&l->objs[k].mu, NULL);
  pthread_mutex_init(&l->mu, NULL);
  l->timeout_ms = timeout_ms;
  l->nthreads = nthreads;
  for (int t = 0; t < nthreads; t++) {
    worker_arg *wa = malloc(sizeof *wa);
    wa->l = l;
    wa->seed = (unsigned)(t * 7919 + 1) + seed * 104729u;
    pthread_create(&l->th[t], NULL, worker, wa);
  }
}

void pl_stop(pload *l) {
  atomic_store(&l->stop, 1);
  for (int t = 0; t < l->nthreads; t++)
    pthread_join(l->th[t], NULL);
  l->nthreads = 0;
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

int pl_verify(pload *l, pclient *h) {
  int bad = 0;
  for (int k = 0; k < l->nobj; k++) {
    pobj *ob = &l->objs[k];
    char id[64];
    snprintf(id, sizeof id, "%s-%d", l->prefix, k);
    long long count = pc_read(h, l->c, id, 20000);
    if (count < 0) {
      fprintf(stderr, "%s: cannot read it back\n", id);
      bad++;
      continue;
    }
    if (count < ob->acked || count > ob->acked + ob->maybe) {
      fprintf(stderr,
              "%s: count %lld, acked %ld, ambiguous %ld, not run %ld (last: %s)\n", id,
              count, ob->acked, ob->maybe, ob->notrun, ob->last_notrun);
      bad++;
    }
    qsort(ob->vals, ob->nvals, sizeof *ob->vals, cmp_ll);
    for (size_t x = 0; x < ob->nvals; x++) {
      if ((x > 0 && ob->vals[x] == ob->vals[x - 1]) || ob->vals[x] > count ||
          ob->vals[x] < 1) {
        fprintf(stderr, "%s: acknowledged count %lld twice or out of 1..%lld\n", id,
                ob->vals[x], count);
        bad++;
        break;
      }
    }
  }
  return bad;
}

void pl_free(pload *l) {
  for (int k = 0; k < l->nobj; k++) {
    free(l->objs[k].vals);
    pthread_mutex_destroy(&l->objs[k].mu);
  }
  free(l->objs);
  pthread_mutex_destroy(&l->mu);
}
