/*
 * prog.h -- a small test program for the loop tests: one opcode byte per
 * message, a model that logs what it applied, and counters of every
 * callback so tests can assert which ones ran.
 *
 *   'a' v   add (int8) v to sum, log v
 *   'f'     fail update while t->fail_left > 0 (with t->fail_code), else log 100
 *   'c' m   command "d"+m, which run turns into dispatching m
 *   'x'     command "x", which run fails with t->run_code
 *   'n'     a NULL command and a no-op command "k"
 *   'h'     call t->hook (used to interleave a second loop)
 */
#ifndef TEST_LOOP_PROG_H
#define TEST_LOOP_PROG_H

#include "stead.h"

#include <stdlib.h>
#include <string.h>

typedef struct tmodel {
  int64_t sum;
  int32_t nlog;
  int32_t log[256];
} tmodel;

typedef struct tctx {
  int inits, updates, views, runs;
  int fail_left, fail_code, run_code;
  const char *init_cmd; /* a command init adds, e.g. "da\x01" */
  stead_cancel *cancel;
  int cancel_after_views; /* view sets cancel once views reaches it (0: never) */
  void (*hook)(struct tctx *t);
  void *hook_arg;
} tctx;

static inline void tlog(tmodel *m, int32_t v) {
  if (m->nlog < 256)
    m->log[m->nlog++] = v;
}

static inline int t_init(void *model, stead_cmds *cmds, void *udata) {
  tctx *t = udata;
  tmodel *m = model;
  memset(m, 0, sizeof *m);
  t->inits++;
  if (t->init_cmd)
    return stead_cmd(cmds, t->init_cmd, strlen(t->init_cmd));
  return 0;
}

static inline int t_update(void *model, const void *msg, size_t len, stead_cmds *cmds,
                           void *udata) {
  tctx *t = udata;
  tmodel *m = model;
  const uint8_t *p = msg;
  t->updates++;
  if (len == 0)
    return 0;
  switch (p[0]) {
  case 'a':
    m->sum += len > 1 ? (int8_t)p[1] : 0;
    tlog(m, len > 1 ? (int8_t)p[1] : 0);
    return 0;
  case 'f':
    if (t->fail_left > 0) {
      t->fail_left--;
      return t->fail_code;
    }
    tlog(m, 100);
    return 0;
  case 'c': {
    uint8_t buf[64];
    if (len > sizeof buf)
      return -1;
    buf[0] = 'd';
    memcpy(buf + 1, p + 1, len - 1);
    return stead_cmd(cmds, buf, len);
  }
  case 'x':
    return stead_cmd(cmds, "x", 1);
  case 'n': {
    int rc = stead_cmd(cmds, NULL, 0);
    return rc ? rc : stead_cmd(cmds, "k", 1);
  }
  case 'h':
    if (t->hook)
      t->hook(t);
    return 0;
  }
  return 0;
}

static inline void t_view(const void *model, void *udata) {
  tctx *t = udata;
  (void)model;
  t->views++;
  if (t->cancel_after_views && t->views == t->cancel_after_views)
    stead_cancel_set(t->cancel);
}

static inline int t_run(const void *cmd, size_t len, stead_dispatcher *d, void *udata) {
  tctx *t = udata;
  const uint8_t *p = cmd;
  t->runs++;
  if (p[0] == 'd')
    return stead_dispatch(d, p + 1, len - 1);
  if (p[0] == 'x')
    return t->run_code;
  return 0;
}

static inline int t_encode(const void *model, void **data, size_t *len, void *udata) {
  (void)udata;
  *data = malloc(sizeof(tmodel));
  if (!*data)
    return STEAD_ENOMEM;
  memcpy(*data, model, sizeof(tmodel));
  *len = sizeof(tmodel);
  return 0;
}

static inline int t_decode(void *model, const void *data, size_t len, void *udata) {
  (void)udata;
  if (len != sizeof(tmodel))
    return STEAD_ECORRUPT;
  memcpy(model, data, len);
  return 0;
}

static inline stead_program t_program(tctx *t) {
  stead_program p = {t_init, t_update, t_view, t_run, t_encode, t_decode, t};
  return p;
}

/* Queues a message "a"+v. */
static inline int put_add(stead_queue *q, int8_t v) {
  uint8_t m[2] = {'a', (uint8_t)v};
  return stead_queue_put(q, m, 2);
}

#endif
