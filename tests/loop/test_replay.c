/*
 * test_replay.c -- replay equivalence: a model rebuilt by replaying the log
 * of the messages a live loop applied equals the live model, for random
 * message sequences (fixed seeds), from scratch and from a mid-way
 * snapshot. The live program's commands dispatch follow-up messages, which
 * are in the log too: replaying without skipping commands would apply them
 * twice, and the test checks that it indeed diverges.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "stead.h"

#include <stdlib.h>
#include <string.h>

/* An account. 'D' n deposits (every 5th earns a bonus command), 'W' n
 * withdraws or is rejected (an audit command), 'B' n is the bonus, 'A' the
 * audit. `hash` folds in every applied message, so order matters. */
typedef struct account {
  int64_t balance;
  uint32_t deposits, withdrawals, rejected, bonuses, audits;
  uint64_t hash;
} account;

typedef struct journal {
  uint8_t (*msgs)[3];
  size_t n, cap;
  int record;
} journal;

static int acc_init(void *model, stead_cmds *cmds, void *udata) {
  memset(model, 0, sizeof(account));
  ((account *)model)->hash = 1469598103934665603ULL;
  return 0;
}

static int acc_update(void *model, const void *msg, size_t len, stead_cmds *cmds,
                      void *udata) {
  account *a = model;
  journal *j = udata;
  if (len != 3)
    return STEAD_ECORRUPT;
  const uint8_t *p = msg;
  if (j->record) {
    if (j->n == j->cap) {
      j->cap = j->cap ? j->cap * 2 : 256;
      j->msgs = realloc(j->msgs, j->cap * sizeof *j->msgs);
      if (!j->msgs)
        return STEAD_ENOMEM;
    }
    memcpy(j->msgs[j->n++], p, 3);
  }
  for (int i = 0; i < 3; i++)
    a->hash = (a->hash ^ p[i]) * 1099511628211ULL;
  int amount = p[1] | p[2] << 8;
  uint8_t out[3];
  switch (p[0]) {
  case 'D':
    a->balance += amount;
    if (++a->deposits % 5 == 0) {
      out[0] = 'B';
      out[1] = (uint8_t)(amount / 10);
      out[2] = 0;
      return stead_cmd(cmds, out, 3);
    }
    return 0;
  case 'W':
    if (a->balance < amount) {
      a->rejected++;
      return stead_cmd(cmds, "A\0\0", 3);
    }
    a->balance -= amount;
    a->withdrawals++;
    return 0;
  case 'B':
    a->balance += amount;
    a->bonuses++;
    return 0;
  case 'A':
    a->audits++;
    return 0;
  }
  return STEAD_ECORRUPT;
}

/* Commands are ready-made messages: dispatch them as they are. */
static int acc_run(const void *cmd, size_t len, stead_dispatcher *d, void *udata) {
  return stead_dispatch(d, cmd, len);
}

static int acc_encode(const void *model, void **data, size_t *len, void *udata) {
  *data = malloc(sizeof(account));
  if (!*data)
    return STEAD_ENOMEM;
  memcpy(*data, model, sizeof(account));
  *len = sizeof(account);
  return 0;
}

static int acc_decode(void *model, const void *data, size_t len, void *udata) {
  if (len != sizeof(account))
    return STEAD_ECORRUPT;
  memcpy(model, data, len);
  return 0;
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

typedef struct rig {
  stead_queue *q;
  stead_loop *l;
  stead_program p;
} rig;

static void rig_open(rig *r, account *model, journal *j) {
  assert_int_equal(stead_queue_new(&r->q), 0);
  stead_consumer in;
  stead_producer out;
  stead_queue_consumer(r->q, &in);
  stead_queue_producer(r->q, &out);
  r->p = (stead_program){acc_init, acc_update, NULL, acc_run, acc_encode, acc_decode, j};
  assert_int_equal(stead_loop_new(&r->l, &r->p, model, &in, &out), 0);
}

static void rig_close(rig *r) {
  stead_loop_free(r->l);
  stead_queue_free(r->q);
}

/* Feeds journal[from..] to a fresh loop and returns the rebuilt model. */
static account rebuild(const journal *live, size_t from, const account *snapshot,
                       int replay) {
  account m;
  journal none = {0};
  rig r;
  rig_open(&r, &m, &none);
  if (snapshot)
    assert_int_equal(stead_loop_hydrate(r.l, snapshot, sizeof *snapshot), 0);
  stead_loop_set_replay(r.l, replay);
  for (size_t i = from; i < live->n; i++)
    assert_int_equal(stead_queue_put(r.q, live->msgs[i], 3), 0);
  assert_int_equal(stead_loop_batch(r.l, 7, NULL), 0);
  rig_close(&r);
  return m;
}

static void one_seed(uint64_t seed) {
  account live;
  journal j = {.record = 1};
  rig r;
  rig_open(&r, &live, &j);
  uint64_t s = seed;
  account snap;
  size_t snap_at = 0;
  int have_snap = 0;
  for (int chunk = 0; chunk < 40; chunk++) {
    int n = 1 + (int)(rnd(&s) % 20);
    for (int i = 0; i < n; i++) {
      uint64_t x = rnd(&s);
      if (x % 17 == 0) {
        assert_int_equal(stead_queue_put(r.q, NULL, 0), 0); /* ignored */
        continue;
      }
      uint16_t amount = (uint16_t)((x >> 8) % (x % 3 ? 500 : 1500));
      uint8_t m[3] = {x % 3 ? 'D' : 'W', (uint8_t)amount, (uint8_t)(amount >> 8)};
      assert_int_equal(stead_queue_put(r.q, m, 3), 0);
    }
    assert_int_equal(stead_loop_batch(r.l, 1 + rnd(&s) % 16, NULL), 0);
    if (chunk == 20) {
      snap = live; /* between ticks, the journal holds exactly what it saw */
      snap_at = j.n;
      have_snap = 1;
    }
  }
  rig_close(&r);
  assert_true(have_snap);
  assert_true(live.bonuses > 0 && live.audits > 0); /* commands did happen */

  account full = rebuild(&j, 0, NULL, 1);
  assert_memory_equal(&full, &live, sizeof live);
  account tail = rebuild(&j, snap_at, &snap, 1);
  assert_memory_equal(&tail, &live, sizeof live);
  /* Without replay the commands fire again and the model diverges. */
  account wrong = rebuild(&j, 0, NULL, 0);
  assert_true(wrong.bonuses > live.bonuses);
  assert_true(memcmp(&wrong, &live, sizeof live) != 0);
  free(j.msgs);
}

static void replay_rebuilds_the_live_model(void **state) {
  for (uint64_t seed = 1; seed <= 20; seed++)
    one_seed(seed * 0x9E3779B97F4A7C15ULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(replay_rebuilds_the_live_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
