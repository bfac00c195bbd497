/*
 * members.c -- the live node set of a deployment, from heartbeats over NATS
 * or from a static host list.
 *
 * Every node publishes "stead1 H <node-id>" on "<deployment>.members" every
 * heartbeat_ms and "stead1 L <node-id>" when it leaves. Each membership
 * instance keeps the last time it heard from each peer; a peer silent for
 * expire_ms is dead. This node is always in its own live set.
 *
 * One membership thread sends the heartbeats, expires peers and calls
 * on_change; the subscription handler (a nats.c thread) only records what
 * it heard and wakes the thread. So on_change runs on one thread, one call
 * at a time, in order, and a new peer is reported without waiting for the
 * next tick. Everything shared is under `mu`.
 *
 * Malformed heartbeats are ignored: membership must not fail because some
 * other program publishes on the subject.
 */
#include "cluster/nats.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HB_PREFIX "stead1 "

typedef struct peer {
  char *id;
  int64_t seen_ns;
} peer;

struct stead__members {
  stead__nats *t;
  stead__nats_sub *sub;
  char subject[96];
  char *node_id;
  int64_t heartbeat_ns, expire_ns;
  stead__members_fn on_change;
  void *udata;
  pthread_t thread;
  int has_thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  int dirty;
  peer *peers; /* excludes this node */
  size_t npeers, cap;
  char **live; /* last reported set, sorted, one allocation (NULL-terminated) */
  size_t nlive;
  int reported; /* on_change has run at least once */
};

void stead__members_opts_init(stead__members_opts *o) {
  memset(o, 0, sizeof *o);
  o->heartbeat_ms = 1000;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---------------------------------------------------------------------
 * Heartbeats in.
 * ------------------------------------------------------------------- */

/* Parses "stead1 H id" / "stead1 L id" into kind and id (NUL-terminated
 * copy in `id`). Returns 0 when well-formed. */
static int parse_hb(const void *data, size_t len, char *kind,
                    char id[STEAD__MAX_NAME + 1]) {
  size_t pl = strlen(HB_PREFIX);
  const char *s = data;
  if (len < pl + 3 || memcmp(s, HB_PREFIX, pl) != 0 || s[pl + 1] != ' ')
    return -1;
  *kind = s[pl];
  if (*kind != 'H' && *kind != 'L')
    return -1;
  size_t idlen = len - pl - 2;
  if (idlen > STEAD__MAX_NAME || memchr(s + pl + 2, 0, idlen))
    return -1;
  memcpy(id, s + pl + 2, idlen);
  id[idlen] = 0;
  /* check_name sets the thread's error message; this is a nats.c thread
   * whose message nobody reads. */
  return stead__check_name("node id", id) == 0 ? 0 : -1;
}

static peer *find_peer(stead__members *m, const char *id) {
  for (size_t i = 0; i < m->npeers; i++)
    if (strcmp(m->peers[i].id, id) == 0)
      return &m->peers[i];
  return NULL;
}

static void remove_peer(stead__members *m, peer *p) {
  free(p->id);
  *p = m->peers[--m->npeers];
}

static void add_peer(stead__members *m, const char *id, int64_t now) {
  if (m->npeers >= STEAD_MAX_HOSTS)
    return;
  if (m->npeers == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 8;
    peer *p = realloc(m->peers, cap * sizeof *p);
    if (!p)
      return;
    m->peers = p;
    m->cap = cap;
  }
  char *copy = stead__strdup(id);
  if (!copy)
    return;
  m->peers[m->npeers++] = (peer){copy, now};
  m->dirty = 1;
}

static void on_heartbeat(stead__nats_replier *r, const void *data, size_t len,
                         void *udata) {
  stead__members *m = udata;
  stead__nats_replier_drop(r);
  char kind, id[STEAD__MAX_NAME + 1];
  if (parse_hb(data, len, &kind, id) != 0 || strcmp(id, m->node_id) == 0)
    return;
  int64_t now = stead__mono_ns();
  pthread_mutex_lock(&m->mu);
  peer *p = find_peer(m, id);
  if (kind == 'H' && p)
    p->seen_ns = now;
  else if (kind == 'H')
    add_peer(m, id, now);
  else if (p) {
    remove_peer(m, p);
    m->dirty = 1;
  }
  if (m->dirty)
    pthread_cond_signal(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

/* ---------------------------------------------------------------------
 * The membership thread.
 * ------------------------------------------------------------------- */

static void send_hb(stead__members *m, char kind) {
  char msg[STEAD__MAX_NAME + 16];
  int n = snprintf(msg, sizeof msg, HB_PREFIX "%c %s", kind, m->node_id);
  /* A lost heartbeat is covered by the next one; expire_ms spans several. */
  (void)stead__nats_publish(m->t, m->subject, msg, (size_t)n);
}

/* Drops peers not heard from within expire_ns; returns the earliest time
 * a remaining peer would expire (INT64_MAX if none). */
static int64_t expire_peers(stead__members *m, int64_t now) {
  int64_t next = INT64_MAX;
  for (size_t i = 0; i < m->npeers;) {
    int64_t until = m->peers[i].seen_ns + m->expire_ns;
    if (until <= now) {
      remove_peer(m, &m->peers[i]);
      m->dirty = 1;
      continue;
    }
    if (until < next)
      next = until;
    i++;
  }
  return next;
}

/* Builds the sorted live set; returns it (one allocation) if it differs
 * from the last reported one, else NULL. Under mu. */
static char **changed_set(stead__members *m, size_t *n) {
  char **names = malloc((m->npeers + 1) * sizeof *names);
  if (!names)
    return NULL;
  names[0] = m->node_id;
  for (size_t i = 0; i < m->npeers; i++)
    names[i + 1] = m->peers[i].id;
  *n = m->npeers + 1;
  qsort(names, *n, sizeof *names, cmp_str);
  int same = m->reported && m->nlive == *n;
  for (size_t i = 0; same && i < *n; i++)
    same = strcmp(names[i], m->live[i]) == 0;
  char **set = same ? NULL : stead__strv_pack(names, *n);
  free(names);
  return set;
}

static void report_if_changed(stead__members *m) {
  size_t n;
  char **set = changed_set(m, &n);
  if (!set)
    return;
  char **old = m->live;
  m->live = set;
  m->nlive = n;
  m->reported = 1;
  pthread_mutex_unlock(&m->mu);
  free(old);
  /* `set` stays alive during the call: only this thread replaces it. */
  if (m->on_change)
    m->on_change((const char *const *)set, n, m->udata);
  pthread_mutex_lock(&m->mu);
}

static void *members_main(void *arg) {
  stead__members *m = arg;
  int64_t next_hb = 0;
  pthread_mutex_lock(&m->mu);
  m->dirty = 1;
  while (!m->stop) {
    int64_t now = stead__mono_ns();
    if (now >= next_hb) {
      pthread_mutex_unlock(&m->mu);
      send_hb(m, 'H');
      pthread_mutex_lock(&m->mu);
      next_hb = now + m->heartbeat_ns;
    }
    int64_t wake = expire_peers(m, now);
    if (m->dirty) {
      m->dirty = 0;
      report_if_changed(m);
      continue; /* state may have moved while unlocked */
    }
    if (next_hb < wake)
      wake = next_hb;
    struct timespec ts = {(time_t)(wake / 1000000000), (long)(wake % 1000000000)};
    pthread_cond_timedwait(&m->cv, &m->mu, &ts);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

/* ---------------------------------------------------------------------
 * Open, snapshot, close.
 * ------------------------------------------------------------------- */

static int check_members_opts(stead__nats *t, const stead__members_opts *o) {
  if (!o)
    return stead__err(STEAD_EINVAL, "options must not be NULL");
  int rc = stead__nats_check_deployment(o->deployment);
  if (rc != 0 || o->static_hosts)
    return rc;
  if (!t)
    return stead__err(STEAD_EINVAL, "heartbeat membership needs a NATS transport");
  rc = stead__check_name("node_id", o->node_id);
  if (rc != 0)
    return rc;
  if (o->heartbeat_ms <= 0)
    return stead__err(STEAD_EINVAL, "heartbeat_ms must be > 0, not %d", o->heartbeat_ms);
  if (o->expire_ms != 0 && o->expire_ms <= o->heartbeat_ms)
    return stead__err(STEAD_EINVAL,
                      "expire_ms (%d) must exceed heartbeat_ms (%d), or a live node "
                      "would flap",
                      o->expire_ms, o->heartbeat_ms);
  return 0;
}

static int open_static(const stead__members_opts *o, stead__members *m) {
  size_t n;
  int rc = stead_hosts_expand(o->static_hosts, &m->live, &n);
  if (rc != 0)
    return rc;
  qsort(m->live, n, sizeof *m->live, cmp_str);
  m->nlive = n;
  if (m->on_change)
    m->on_change((const char *const *)m->live, n, m->udata);
  return 0;
}

static int init_sync(stead__members *m) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&m->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0)
    return stead__err(STEAD_EIO, "pthread_cond_init failed");
  pthread_mutex_init(&m->mu, NULL);
  return 0;
}

static int open_heartbeat(stead__nats *t, const stead__members_opts *o,
                          stead__members *m) {
  m->t = t;
  m->heartbeat_ns = (int64_t)o->heartbeat_ms * 1000000;
  m->expire_ns = (int64_t)(o->expire_ms ? o->expire_ms : 3 * o->heartbeat_ms) * 1000000;
  int rc = stead__nats_members_subject(m->subject, sizeof m->subject, o->deployment);
  /* Snapshots before the first report already see this node. */
  m->live = stead__strv_pack(&m->node_id, 1);
  m->nlive = 1;
  if (rc == 0 && !m->live)
    rc = stead__err(STEAD_ENOMEM, "out of memory opening membership");
  if (rc == 0)
    rc = stead__nats_serve(t, m->subject, NULL, on_heartbeat, m, &m->sub);
  if (rc != 0)
    return rc;
  rc = pthread_create(&m->thread, NULL, members_main, m);
  if (rc != 0) {
    stead__nats_unserve(m->sub);
    m->sub = NULL;
    return stead__err(STEAD_EIO, "cannot start the membership thread");
  }
  m->has_thread = 1;
  return 0;
}

static void members_free(stead__members *m) {
  for (size_t i = 0; i < m->npeers; i++)
    free(m->peers[i].id);
  free(m->peers);
  free(m->live);
  free(m->node_id);
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
  free(m);
}

int stead__members_open(stead__nats *t, const stead__members_opts *o,
                        stead__members **out) {
  if (!out)
    return stead__err(STEAD_EINVAL, "out must not be NULL");
  *out = NULL;
  int rc = check_members_opts(t, o);
  if (rc != 0)
    return rc;
  stead__members *m = calloc(1, sizeof *m);
  if (!m)
    return stead__err(STEAD_ENOMEM, "out of memory opening membership");
  m->on_change = o->on_change;
  m->udata = o->udata;
  if (init_sync(m) != 0) {
    free(m);
    return STEAD_EIO;
  }
  m->node_id = stead__strdup(o->node_id ? o->node_id : "");
  if (!m->node_id)
    rc = stead__err(STEAD_ENOMEM, "out of memory opening membership");
  else if (o->static_hosts)
    rc = open_static(o, m);
  else
    rc = open_heartbeat(t, o, m);
  if (rc != 0) {
    members_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

int stead__members_snapshot(stead__members *m, char ***nodes, size_t *n) {
  if (!m || !nodes || !n)
    return stead__err(STEAD_EINVAL, "arguments must not be NULL");
  pthread_mutex_lock(&m->mu);
  size_t count = m->nlive;
  char **copy = stead__strv_pack(m->live, count);
  pthread_mutex_unlock(&m->mu);
  if (!copy)
    return stead__err(STEAD_ENOMEM, "out of memory copying the live set");
  *nodes = copy;
  *n = count;
  return 0;
}

void stead__members_close(stead__members *m) {
  if (!m)
    return;
  if (m->has_thread) {
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    stead__nats_unserve(m->sub);
    send_hb(m, 'L');
  }
  members_free(m);
}
