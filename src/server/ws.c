/*
 * ws.c -- the gateway's WebSocket sessions (see ws.h).
 *
 * Owns: every session from its connect to its end, the socket thread
 * (one poll() loop over every upgraded socket plus an eventfd that other
 * threads use to wake it), and the session's pending queue.
 *
 * Threads and hand-offs:
 *   - the connection's delivery thread calls on_message / on_close: they
 *     only append to the session's pending list (under ws->mu) and wake
 *     the loop; a full list marks the session "slow" instead;
 *   - the loop thread owns the wslay session and the socket: it moves
 *     pending messages into wslay, reads and writes, and finishes
 *     sessions. It never holds ws->mu while calling the runtime
 *     (stead_conn_send, stead_conn_close), because stead_conn_close waits
 *     for a running on_message, which takes ws->mu.
 * A session is freed by the loop after stead_conn_close returned, so no
 * callback of its connection can run any more.
 */
#include "server/ws.h"

#include "server/ws_proto.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* Kernel send buffer of an upgraded socket: fixed, so that a client that
 * stops reading is noticed after a bounded amount of memory. */
#define SNDBUF (256 * 1024)
/* How long a closing session waits for its close frame to go out. */
#define CLOSE_GRACE_MS 1000

typedef struct pend {
  struct pend *next;
  size_t len;
  bool text;
  uint8_t data[];
} pend;

struct stead__ws_sess {
  stead__ws *ws;
  stead__ws_sess *next, *prev; /* ws->live (attached) */
  stead__ws_sess *dnext;       /* ws->dirty */
  /* Guarded by ws->mu: */
  pend *phead, *ptail;
  size_t pbytes;
  bool dirty;
  bool attached;   /* the loop owns it: only then may it be marked dirty */
  bool slow;       /* the client fell too far behind */
  bool obj_closed; /* the object (or runtime) closed the connection */
  int obj_code;
  char obj_reason[STEAD_MAX_CONN_REASON + 1];
  size_t wire; /* bytes queued in wslay, as the loop last saw */
  /* Loop thread only (and the gateway until attach): */
  stead_conn *conn;
  int fd;
  struct MHD_UpgradeResponseHandle *urh;
  stead__wsp *wsp;
  uint8_t *extra;
  size_t extra_len, extra_off;
  int64_t last_rx_ms, last_ping_ms;
  int64_t closing_since; /* 0: not closing */
  int peer_code;         /* the code to report to the object */
  char peer_reason[STEAD_MAX_CONN_REASON + 1];
  bool failed; /* the stream broke */
};

struct stead__ws {
  stead__ws_config cfg;
  pthread_mutex_t mu;
  int efd;
  pthread_t thread;
  bool stop, closing;
  stead__ws_sess *attach_head; /* handed over, not yet in the loop */
  stead__ws_sess *dirty;
  int nlive;
  /* counters (under mu) */
  uint64_t opened, closed, slow, msgs_in, msgs_out;
};

static void wake(stead__ws *ws) {
  uint64_t one = 1;
  ssize_t n = write(ws->efd, &one, sizeof one);
  (void)n; /* a full counter still wakes the loop */
}

/* Marks s for the loop (ws->mu held). Before the attach the loop does
 * not know s: what is pending then is taken when it attaches. */
static void mark_dirty(stead__ws *ws, stead__ws_sess *s) {
  if (s->dirty || !s->attached)
    return;
  s->dirty = true;
  s->dnext = ws->dirty;
  ws->dirty = s;
}

/* ---- connection callbacks (delivery thread) ---- */

static void on_message(stead_conn *c, const void *data, size_t len, unsigned flags,
                       void *udata) {
  stead__ws_sess *s = udata;
  stead__ws *ws = s->ws;
  pthread_mutex_lock(&ws->mu);
  if (s->slow || s->obj_closed) {
    pthread_mutex_unlock(&ws->mu);
    return;
  }
  if (s->pbytes + s->wire + len > ws->cfg.max_queue) {
    s->slow = true;
    ws->slow++;
  } else {
    pend *p = malloc(sizeof *p + len);
    if (!p) {
      s->slow = true; /* cannot keep up either way */
    } else {
      p->next = NULL;
      p->len = len;
      p->text = flags & STEAD_CONN_TEXT;
      memcpy(p->data, data, len);
      if (s->ptail)
        s->ptail->next = p;
      else
        s->phead = p;
      s->ptail = p;
      s->pbytes += len;
    }
  }
  mark_dirty(ws, s);
  pthread_mutex_unlock(&ws->mu);
  wake(ws);
}

static void on_close(stead_conn *c, int code, const char *reason, void *udata) {
  stead__ws_sess *s = udata;
  stead__ws *ws = s->ws;
  pthread_mutex_lock(&ws->mu);
  if (!s->obj_closed) {
    s->obj_closed = true;
    s->obj_code = code;
    snprintf(s->obj_reason, sizeof s->obj_reason, "%s", reason);
  }
  mark_dirty(ws, s);
  pthread_mutex_unlock(&ws->mu);
  wake(ws);
}

/* ---- sessions ---- */

stead__ws_sess *stead__ws_sess_new(stead__ws *ws, stead_conn_opts *opts) {
  stead__ws_sess *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->ws = ws;
  s->fd = -1;
  memset(opts, 0, sizeof *opts);
  opts->on_message = on_message;
  opts->on_close = on_close;
  opts->udata = s;
  return s;
}

void stead__ws_sess_set_conn(stead__ws_sess *s, stead_conn *conn) {
  s->conn = conn;
}

static void sess_free(stead__ws_sess *s) {
  while (s->phead) {
    pend *p = s->phead;
    s->phead = p->next;
    free(p);
  }
  stead__wsp_free(s->wsp);
  free(s->extra);
  free(s);
}

void stead__ws_sess_abort(stead__ws_sess *s) {
  if (!s)
    return;
  /* Never attached, so never on the loop's lists; once the close
   * returned no callback of the connection runs. */
  if (s->conn)
    stead_conn_close(s->conn, STEAD_CLOSE_NORMAL, "the WebSocket upgrade did not happen");
  sess_free(s);
}

static ssize_t io_recv(void *u, uint8_t *buf, size_t len) {
  stead__ws_sess *s = u;
  if (s->extra_off < s->extra_len) { /* bytes MHD read past the header */
    size_t n = s->extra_len - s->extra_off;
    if (n > len)
      n = len;
    memcpy(buf, s->extra + s->extra_off, n);
    s->extra_off += n;
    return (ssize_t)n;
  }
  ssize_t n = recv(s->fd, buf, len, 0);
  if (n > 0) {
    s->last_rx_ms = stead__mono_ms();
    return n;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  s->failed = true;
  return -1;
}

static ssize_t io_send(void *u, const uint8_t *buf, size_t len) {
  stead__ws_sess *s = u;
  ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
  if (n > 0)
    return n;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return 0;
  s->failed = true;
  return -1;
}

/* A data message from the client: to the object. */
static void io_message(void *u, const uint8_t *data, size_t len, bool text) {
  stead__ws_sess *s = u;
  int rc = stead_conn_send(s->conn, data, len, text ? STEAD_CONN_TEXT : 0);
  if (rc == 0) {
    pthread_mutex_lock(&s->ws->mu);
    s->ws->msgs_in++;
    pthread_mutex_unlock(&s->ws->mu);
    return;
  }
  if (s->closing_since)
    return;
  char why[124];
  int code = STEAD_CLOSE_INTERNAL;
  if (rc == STEAD_EOVERLOAD)
    code = STEAD_CLOSE_TRY_LATER;
  else if (rc == STEAD_ECLOSED)
    code = STEAD_CLOSE_GOING_AWAY;
  else if (rc == STEAD_ETOOBIG)
    code = STEAD_CLOSE_TOO_BIG;
  else if (rc == STEAD_EINVAL)
    code = STEAD_CLOSE_BAD_DATA;
  else if (rc == STEAD_ENOTOWNER)
    code = 1012; /* service restart: the object's shard moved; reconnect */
  snprintf(why, sizeof why, "%s", stead_errmsg());
  stead__wsp_close(s->wsp, code, why);
  s->closing_since = stead__mono_ms();
  s->peer_code = code;
  snprintf(s->peer_reason, sizeof s->peer_reason, "message refused: %s",
           stead_errname(rc));
}

void stead__ws_attach(stead__ws_sess *s, MHD_socket fd, const char *extra, size_t len,
                      struct MHD_UpgradeResponseHandle *urh) {
  stead__ws *ws = s->ws;
  s->fd = fd;
  s->urh = urh;
  int sb = SNDBUF, one = 1;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof sb);
  /* wslay writes a frame's header and payload separately: without this,
   * Nagle holds the payload for the peer's delayed ACK (~40 ms). */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  if (len) {
    s->extra = stead__memdup(extra, len);
    s->extra_len = s->extra ? len : 0;
  }
  stead__wsp_io io = {io_recv, io_send, io_message};
  s->wsp = stead__wsp_new(&io, s, ws->cfg.max_msg);
  s->last_rx_ms = s->last_ping_ms = stead__mono_ms();
  pthread_mutex_lock(&ws->mu);
  s->attached = true;
  s->next = ws->attach_head;
  ws->attach_head = s;
  ws->opened++;
  pthread_mutex_unlock(&ws->mu);
  wake(ws);
}

/* ---- the loop ---- */

typedef struct loop {
  stead__ws_sess *live;
  int n;
  struct pollfd *pfd;
  stead__ws_sess **ps;
  size_t cap;
} loop;

static void live_add(loop *l, stead__ws_sess *s) {
  s->prev = NULL;
  s->next = l->live;
  if (l->live)
    l->live->prev = s;
  l->live = s;
  l->n++;
}

static void live_del(loop *l, stead__ws_sess *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    l->live = s->next;
  if (s->next)
    s->next->prev = s->prev;
  l->n--;
}

/* Starts closing s with code/reason (if it is not closing already). */
static void begin_close(stead__ws_sess *s, int code, const char *reason, int peer_code,
                        const char *peer_reason) {
  if (s->closing_since)
    return;
  s->closing_since = stead__mono_ms();
  stead__wsp_close(s->wsp, code, reason);
  s->peer_code = peer_code;
  snprintf(s->peer_reason, sizeof s->peer_reason, "%s", peer_reason);
}

/* Ends s: socket back to MHD, connection closed, memory freed. */
static void finish(stead__ws *ws, loop *l, stead__ws_sess *s) {
  live_del(l, s);
  shutdown(s->fd, SHUT_RDWR);
  MHD_upgrade_action(s->urh, MHD_UPGRADE_ACTION_CLOSE);
  int code = s->peer_code ? s->peer_code : STEAD_CLOSE_ABNORMAL;
  const char *why = s->peer_reason[0] ? s->peer_reason : "socket closed";
  if (ws->cfg.log->level >= STEAD_LOG_DEBUG)
    stead__logf(ws->cfg.log, STEAD_LOG_DEBUG, "websocket %llu closed: %d %s",
                (unsigned long long)stead_conn_id(s->conn), code, why);
  /* Cannot fail: the client's end takes any code 1000..4999. */
  stead_conn_close(s->conn, code, why);
  pthread_mutex_lock(&ws->mu);
  for (stead__ws_sess **pp = &ws->dirty; *pp; pp = &(*pp)->dnext)
    if (*pp == s) {
      *pp = s->dnext;
      break;
    }
  ws->closed++;
  pthread_mutex_unlock(&ws->mu);
  sess_free(s);
}

/* Moves what other threads left for s into wslay. */
static void take_pending(stead__ws *ws, stead__ws_sess *s) {
  pthread_mutex_lock(&ws->mu);
  pend *p = s->phead;
  s->phead = s->ptail = NULL;
  s->pbytes = 0;
  bool slow = s->slow, objc = s->obj_closed;
  int ocode = s->obj_code;
  char oreason[sizeof s->obj_reason];
  memcpy(oreason, s->obj_reason, sizeof oreason);
  pthread_mutex_unlock(&ws->mu);
  uint64_t sent = 0;
  while (p) {
    pend *next = p->next;
    if (!slow && !s->closing_since &&
        stead__wsp_queue(s->wsp, p->data, p->len, p->text) == 0)
      sent++;
    free(p);
    p = next;
  }
  if (slow) {
    char why[124];
    snprintf(why, sizeof why, "client too slow: over %zu bytes waiting",
             ws->cfg.max_queue);
    begin_close(s, STEAD_CLOSE_SLOW, why, STEAD_CLOSE_SLOW, why);
    s->closing_since -= CLOSE_GRACE_MS; /* it does not read: do not wait */
  } else if (objc) {
    /* The object's close: the handle is released in finish(). */
    begin_close(s, ocode == STEAD_CLOSE_ABNORMAL ? STEAD_CLOSE_GOING_AWAY : ocode,
                oreason, ocode, oreason);
  }
  pthread_mutex_lock(&ws->mu);
  ws->msgs_out += sent;
  s->wire = stead__wsp_queued(s->wsp);
  pthread_mutex_unlock(&ws->mu);
}

/* One session after poll: read, write, decide whether it is over. */
static bool service(stead__ws *ws, stead__ws_sess *s, short rev, int64_t now) {
  if (((rev & (POLLIN | POLLHUP | POLLERR)) || s->extra_off < s->extra_len) &&
      stead__wsp_read(s->wsp) != 0 && !s->failed) {
    /* Not the socket: wslay refused a frame without answering it. */
    /* wslay may have queued its own close already (then ours fails). */
    if (s->closing_since ||
        (stead__wsp_close(s->wsp, STEAD_CLOSE_PROTOCOL, "protocol error") != 0 &&
         !stead__wsp_want_write(s->wsp)))
      s->failed = true;
    else {
      s->closing_since = now;
      s->peer_code = STEAD_CLOSE_PROTOCOL;
      snprintf(s->peer_reason, sizeof s->peer_reason, "protocol error");
    }
  }
  int pc;
  if (!s->closing_since && stead__wsp_close_received(s->wsp, &pc)) {
    /* wslay answered the close; report the client's code. */
    s->closing_since = now;
    s->peer_code = pc == 1005 || pc == 1006 || pc == 0 ? STEAD_CLOSE_NORMAL : pc;
    snprintf(s->peer_reason, sizeof s->peer_reason, "closed by the client");
  }
  if (!s->closing_since && stead__wsp_close_sent(s->wsp)) {
    /* wslay closed by itself: a protocol error, a bad message, too big. */
    s->closing_since = now;
    s->peer_code = stead__wsp_code_sent(s->wsp);
    snprintf(s->peer_reason, sizeof s->peer_reason, "protocol: close %d sent",
             s->peer_code);
  }
  if (!s->failed && stead__wsp_want_write(s->wsp) && stead__wsp_write(s->wsp) != 0)
    s->failed = true;
  if (!s->closing_since && ws->cfg.ping_ms > 0) {
    if (now - s->last_rx_ms > 3 * (int64_t)ws->cfg.ping_ms)
      begin_close(s, STEAD_CLOSE_GOING_AWAY, "no answer to pings", STEAD_CLOSE_ABNORMAL,
                  "no answer to pings");
    else if (now - s->last_ping_ms >= ws->cfg.ping_ms) {
      stead__wsp_ping(s->wsp);
      s->last_ping_ms = now;
    }
  }
  if (s->failed) {
    if (!s->peer_code) {
      s->peer_code = STEAD_CLOSE_ABNORMAL;
      snprintf(s->peer_reason, sizeof s->peer_reason, "connection lost");
    }
    return true;
  }
  if (s->closing_since) {
    bool flushed = !stead__wsp_want_write(s->wsp) || stead__wsp_close_sent(s->wsp);
    int dummy;
    bool both =
        stead__wsp_close_sent(s->wsp) && stead__wsp_close_received(s->wsp, &dummy);
    if (both ||
        (flushed && stead__wsp_close_sent(s->wsp) &&
         now - s->closing_since > CLOSE_GRACE_MS) ||
        now - s->closing_since > 2 * CLOSE_GRACE_MS)
      return true;
  }
  return false;
}

static int grow(loop *l) {
  size_t need = (size_t)l->n + 1;
  if (need <= l->cap)
    return 0;
  size_t cap = need * 2;
  struct pollfd *p = realloc(l->pfd, cap * sizeof *p);
  if (!p)
    return -1;
  l->pfd = p;
  stead__ws_sess **q = realloc(l->ps, cap * sizeof *q);
  if (!q)
    return -1;
  l->ps = q;
  l->cap = cap;
  return 0;
}

static void *loop_main(void *arg) {
  stead__ws *ws = arg;
  loop l = {0};
  for (;;) {
    pthread_mutex_lock(&ws->mu);
    bool stop = ws->stop, closing = ws->closing;
    stead__ws_sess *att = ws->attach_head;
    ws->attach_head = NULL;
    stead__ws_sess *dirty = ws->dirty;
    for (stead__ws_sess *d = dirty; d; d = d->dnext)
      d->dirty = false;
    ws->dirty = NULL;
    ws->nlive = l.n;
    pthread_mutex_unlock(&ws->mu);
    while (att) {
      stead__ws_sess *next = att->next;
      live_add(&l, att);
      if (!att->wsp)
        att->failed = true;
      else
        take_pending(ws, att); /* what arrived before the upgrade */
      att = next;
    }
    for (stead__ws_sess *d = dirty, *next; d; d = next) {
      next = d->dnext;
      if (d->wsp)
        take_pending(ws, d);
    }
    if (closing)
      for (stead__ws_sess *s = l.live; s; s = s->next)
        begin_close(s, STEAD_CLOSE_GOING_AWAY, "server shutting down",
                    STEAD_CLOSE_GOING_AWAY, "server shutting down");
    if (stop && !l.live)
      break;
    if (grow(&l) != 0) {
      usleep(10000);
      continue;
    }
    l.pfd[0] = (struct pollfd){ws->efd, POLLIN, 0};
    int n = 1;
    for (stead__ws_sess *s = l.live; s; s = s->next) {
      short ev = 0;
      if (s->wsp && stead__wsp_want_read(s->wsp))
        ev |= POLLIN;
      if (s->wsp && stead__wsp_want_write(s->wsp))
        ev |= POLLOUT;
      l.pfd[n] = (struct pollfd){s->fd, ev, 0};
      l.ps[n++] = s;
    }
    int tmo = ws->cfg.ping_ms > 0 ? ws->cfg.ping_ms : 1000;
    if (tmo > 250)
      tmo = 250; /* closing sessions are checked at least this often */
    poll(l.pfd, (nfds_t)n, tmo);
    if (l.pfd[0].revents & POLLIN) {
      uint64_t v;
      ssize_t r = read(ws->efd, &v, sizeof v);
      (void)r;
    }
    int64_t now = stead__mono_ms();
    for (int i = 1; i < n; i++) {
      stead__ws_sess *s = l.ps[i];
      if (service(ws, s, l.pfd[i].revents, now))
        finish(ws, &l, s);
      else {
        pthread_mutex_lock(&ws->mu);
        s->wire = stead__wsp_queued(s->wsp);
        pthread_mutex_unlock(&ws->mu);
      }
    }
  }
  free(l.pfd);
  free(l.ps);
  return NULL;
}

stead__ws *stead__ws_new(const stead__ws_config *cfg) {
  stead__ws *ws = calloc(1, sizeof *ws);
  if (!ws) {
    stead__err(STEAD_ENOMEM, "out of memory");
    return NULL;
  }
  ws->cfg = *cfg;
  pthread_mutex_init(&ws->mu, NULL);
  ws->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ws->efd < 0 || pthread_create(&ws->thread, NULL, loop_main, ws) != 0) {
    if (ws->efd >= 0)
      close(ws->efd);
    pthread_mutex_destroy(&ws->mu);
    free(ws);
    stead__err(STEAD_EIO, "cannot start the WebSocket thread");
    return NULL;
  }
  return ws;
}

void stead__ws_close_all(stead__ws *ws) {
  if (!ws)
    return;
  pthread_mutex_lock(&ws->mu);
  ws->closing = true;
  pthread_mutex_unlock(&ws->mu);
  wake(ws);
  int64_t end = stead__mono_ms() + 2 * CLOSE_GRACE_MS + 500;
  for (;;) {
    pthread_mutex_lock(&ws->mu);
    bool done = ws->nlive == 0 && !ws->attach_head;
    pthread_mutex_unlock(&ws->mu);
    if (done || stead__mono_ms() > end)
      break;
    usleep(5000);
    wake(ws);
  }
}

void stead__ws_free(stead__ws *ws) {
  if (!ws)
    return;
  pthread_mutex_lock(&ws->mu);
  ws->stop = true;
  ws->closing = true;
  pthread_mutex_unlock(&ws->mu);
  wake(ws);
  pthread_join(ws->thread, NULL);
  close(ws->efd);
  pthread_mutex_destroy(&ws->mu);
  free(ws);
}

int stead__ws_metrics(stead__ws *ws, stead__buf *b) {
  pthread_mutex_lock(&ws->mu);
  uint64_t opened = ws->opened, closed = ws->closed, slow = ws->slow, in = ws->msgs_in,
           out = ws->msgs_out;
  pthread_mutex_unlock(&ws->mu);
  int rc = stead__buf_printf(
      b,
      "# HELP stead_ws_open WebSocket connections open.\n# TYPE stead_ws_open gauge\n"
      "stead_ws_open %llu\n"
      "# HELP stead_ws_connections_total WebSocket connections upgraded.\n"
      "# TYPE stead_ws_connections_total counter\nstead_ws_connections_total %llu\n"
      "# HELP stead_ws_slow_total WebSocket clients disconnected for not reading.\n"
      "# TYPE stead_ws_slow_total counter\nstead_ws_slow_total %llu\n"
      "# HELP stead_ws_messages_total WebSocket data messages, by direction.\n"
      "# TYPE stead_ws_messages_total counter\n"
      "stead_ws_messages_total{direction=\"in\"} %llu\n"
      "stead_ws_messages_total{direction=\"out\"} %llu\n",
      (unsigned long long)(opened - closed), (unsigned long long)opened,
      (unsigned long long)slow, (unsigned long long)in, (unsigned long long)out);
  return rc ? STEAD_ENOMEM : 0;
}
