/*
 * test_topic.c -- the topic grammar and matching: a table of pattern/topic
 * cases checked against the pure matcher and against the bus's trie (every
 * pattern of the table registered at once, every topic emitted), the
 * validation errors, a randomized trie-vs-matcher cross-check, trie
 * pruning, and a pathological `**` pattern that must stay fast.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus/bus_internal.h"

typedef struct mcase {
  const char *pattern, *topic;
  int match;
} mcase;

static const mcase cases[] = {
    /* Soiree README examples */
    {"user.created", "user.created", 1},
    {"user.*", "user.signup", 1},
    {"user.*", "user.created", 1},
    {"invoice.**", "invoice.processed", 1},
    {"**.completed", "order.completed", 1},
    {"invoice.processed", "invoice.processed", 1},
    /* literals */
    {"user.created", "user.deleted", 0},
    {"user.created", "user", 0},
    {"user", "user.created", 0},
    {"user.created", "User.created", 0},
    {"a-b_c.d", "a-b_c.d", 1},
    {"\xc3\xa9t\xc3\xa9.*", "\xc3\xa9t\xc3\xa9.x", 1},
    /* * is exactly one segment */
    {"user.*", "user", 0},
    {"user.*", "user.a.b", 0},
    {"*", "user", 1},
    {"*", "user.created", 0},
    {"*.*", "a.b", 1},
    {"*.*", "a", 0},
    {"*.created", "user.created", 1},
    {"*.created", "user.deleted", 0},
    {"a.*.c", "a.b.c", 1},
    {"a.*.c", "a.c", 0},
    {"a.*.c", "a.b.b.c", 0},
    /* ** is zero or more segments */
    {"invoice.**", "invoice", 1},
    {"invoice.**", "invoice.a.b.c", 1},
    {"invoice.**", "invoices.a", 0},
    {"invoice.**", "order.invoice", 0},
    {"**.completed", "completed", 1},
    {"**.completed", "a.b.c.completed", 1},
    {"**.completed", "job.completed.not", 0},
    {"**.completed", "completedx", 0},
    {"**", "a", 1},
    {"**", "a.b.c", 1},
    {"a.**.z", "a.z", 1},
    {"a.**.z", "a.b.z", 1},
    {"a.**.z", "a.b.c.d.z", 1},
    {"a.**.z", "a.z.y", 0},
    {"a.**.z", "b.a.z", 0},
    {"a.**.z", "a.z.z", 1},
    {"a.**.z", "a", 0},
    /* several ** and mixes */
    {"**.a.**", "a", 1},
    {"**.a.**", "x.a.y", 1},
    {"**.a.**", "x.b.y", 0},
    {"**.**", "a", 1},
    {"a.**.**", "a", 1},
    {"a.**.**.b", "a.b", 1},
    {"**.*", "a", 1},
    {"**.*.*", "a", 0},
    {"*.**", "a", 1},
    {"*.**", "a.b.c", 1},
    {"**.b.**.d", "a.b.c.d", 1},
    {"**.b.**.d", "b.d", 1},
    {"**.b.**.d", "a.d.b", 0},
    {"a.**.b.**.c", "a.b.c", 1},
    {"a.**.b.**.c", "a.x.b.y.c", 1},
    {"a.**.b.**.c", "a.x.c.y.b", 0},
    {"a.**.b.**.c", "a.b.b.c.c", 1},
    {"x.**.x", "x", 0},
    {"x.**.x", "x.x", 1},
    {"invoice.*.**", "invoice", 0},
    {"invoice.*.**", "invoice.1", 1},
    {"invoice.*.**", "invoice.1.2.3", 1},
    {"**.x.*", "a.x.b", 1},
    {"**.x.*", "a.x", 0},
};
#define NCASES (sizeof cases / sizeof cases[0])

static void test_table_pure(void **state) {
  (void)state;
  assert_true(NCASES >= 50);
  for (size_t i = 0; i < NCASES; i++) {
    int got = stead_topic_match(cases[i].pattern, cases[i].topic);
    if (got != cases[i].match)
      fail_msg("case %zu: %s vs %s: got %d want %d", i, cases[i].pattern, cases[i].topic,
               got, cases[i].match);
  }
}

/* Registers every distinct pattern of the table on one bus, emits every
 * distinct topic, and checks the set of patterns that ran against the pure
 * matcher for all pattern x topic pairs and against the table. */
typedef struct hits {
  int n_pat;
  const char *pats[NCASES];
  int ran[NCASES]; /* count per pattern index for the current topic */
} hits;

static int record(stead_event *ev, void *udata) {
  hits *h = udata;
  const char *p = stead_event_pattern(ev);
  for (int i = 0; i < h->n_pat; i++)
    if (strcmp(h->pats[i], p) == 0)
      h->ran[i]++;
  return 0;
}

static void test_table_trie(void **state) {
  (void)state;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 1;
  stead_bus *bus;
  assert_int_equal(stead_bus_new(&cfg, &bus), 0);
  hits h = {0};
  for (size_t i = 0; i < NCASES; i++) {
    int seen = 0;
    for (int k = 0; k < h.n_pat; k++)
      seen |= strcmp(h.pats[k], cases[i].pattern) == 0;
    if (!seen) {
      h.pats[h.n_pat++] = cases[i].pattern;
      assert_int_equal(stead_bus_on(bus, cases[i].pattern, record, &h, 0, NULL), 0);
    }
  }
  for (size_t t = 0; t < NCASES; t++) {
    memset(h.ran, 0, sizeof h.ran);
    assert_int_equal(stead_bus_emit_sync(bus, cases[t].topic, NULL, 0, NULL, 0, NULL), 0);
    for (int k = 0; k < h.n_pat; k++) {
      int want = stead_topic_match(h.pats[k], cases[t].topic);
      if (h.ran[k] != want)
        fail_msg("trie: %s vs %s ran %d times, matcher says %d", h.pats[k],
                 cases[t].topic, h.ran[k], want);
      if (strcmp(h.pats[k], cases[t].pattern) == 0)
        assert_int_equal(h.ran[k], cases[t].match);
    }
  }
  assert_int_equal(stead_bus_free(bus), 0);
}

typedef struct vcase {
  const char *s;
  int is_pattern, code;
} vcase;

static void test_validation(void **state) {
  (void)state;
  char long_topic[STEAD_TOPIC_MAX_LEN + 2];
  memset(long_topic, 'a', sizeof long_topic - 1);
  long_topic[sizeof long_topic - 1] = 0; /* 257 bytes */
  char max_topic[STEAD_TOPIC_MAX_LEN + 1];
  memset(max_topic, 'b', STEAD_TOPIC_MAX_LEN);
  max_topic[STEAD_TOPIC_MAX_LEN] = 0;
  char many[2 * (STEAD_TOPIC_MAX_SEGMENTS + 1)], most[2 * STEAD_TOPIC_MAX_SEGMENTS];
  for (int i = 0; i < STEAD_TOPIC_MAX_SEGMENTS + 1; i++) {
    many[2 * i] = 'x';
    many[2 * i + 1] = '.';
  }
  many[sizeof many - 1] = 0;
  memcpy(most, many, sizeof most);
  most[sizeof most - 1] = 0;
  const vcase v[] = {
      {"a", 0, 0},
      {"a.b.c", 0, 0},
      {max_topic, 0, 0},
      {most, 0, 0},
      {"", 0, STEAD_EINVAL},
      {".a", 0, STEAD_EINVAL},
      {"a.", 0, STEAD_EINVAL},
      {"a..b", 0, STEAD_EINVAL},
      {"a b", 0, STEAD_EINVAL},
      {"a\tb", 0, STEAD_EINVAL},
      {"a\x01", 0, STEAD_EINVAL},
      {"a\x7f", 0, STEAD_EINVAL},
      {"a.\n", 0, STEAD_EINVAL},
      {"a.*", 0, STEAD_EINVAL},
      {"**", 0, STEAD_EINVAL},
      {"\xff", 0, STEAD_EINVAL},
      {"a.\xc3", 0, STEAD_EINVAL},
      {long_topic, 0, STEAD_ETOOBIG},
      {many, 0, STEAD_ETOOBIG},
      {"a.*", 1, 0},
      {"**", 1, 0},
      {"*.**.x", 1, 0},
      {"a*", 1, STEAD_EINVAL},
      {"*a", 1, STEAD_EINVAL},
      {"***", 1, STEAD_EINVAL},
      {"a.**b", 1, STEAD_EINVAL},
      {"", 1, STEAD_EINVAL},
      {"a..*", 1, STEAD_EINVAL},
      {long_topic, 1, STEAD_ETOOBIG},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    int rc =
        v[i].is_pattern ? stead_pattern_validate(v[i].s) : stead_topic_validate(v[i].s);
    if (rc != v[i].code)
      fail_msg("validate case %zu (%s): got %d want %d", i,
               v[i].is_pattern ? "pattern" : "topic", rc, v[i].code);
    if (rc != 0)
      assert_true(strlen(stead_errmsg()) > 5);
  }
  assert_int_equal(stead_topic_validate(NULL), STEAD_EINVAL);
  assert_int_equal(stead_pattern_validate(NULL), STEAD_EINVAL);
  assert_int_equal(stead_topic_match("a.*", "a.*"), STEAD_EINVAL);
  assert_int_equal(stead_topic_match("a*", "a"), STEAD_EINVAL);
  stead_topic_validate("a..b");
  assert_non_null(strstr(stead_errmsg(), "empty segment"));
  stead_topic_validate("a\x01");
  assert_non_null(strstr(stead_errmsg(), "control character"));
}

/* ---- randomized cross-check of the trie against the matcher ---------- */

typedef struct rnd_hits {
  char (*pats)[64];
  int n;
  int *ran;
} rnd_hits;

static int rnd_record(stead_event *ev, void *udata) {
  rnd_hits *h = udata;
  const char *id = stead_event_listener_id(ev);
  int idx = atoi(id); /* ids are the pattern index, see rnd_id */
  h->ran[idx]++;
  return 0;
}

static int rnd_id(char *out, size_t size, void *udata) {
  int *next = udata;
  snprintf(out, size, "%d", (*next)++);
  return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

static void gen(char *out, int pattern) {
  static const char *psegs[] = {"a", "b", "*", "**"};
  int n = 1 + (int)rnd(pattern ? 5 : 7);
  out[0] = 0;
  for (int i = 0; i < n; i++) {
    if (i)
      strcat(out, ".");
    strcat(out, psegs[rnd(pattern ? 4 : 2)]);
  }
}

static void test_random_cross_check(void **state) {
  (void)state;
  enum { NP = 300, NT = 300 };
  static char pats[NP][64];
  int ran[NP];
  int next_id = 0;
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = 1;
  cfg.id_gen = rnd_id;
  cfg.id_udata = &next_id;
  stead_bus *bus;
  assert_int_equal(stead_bus_new(&cfg, &bus), 0);
  rnd_hits h = {pats, NP, ran};
  for (int i = 0; i < NP; i++) {
    gen(pats[i], 1);
    assert_int_equal(stead_bus_on(bus, pats[i], rnd_record, &h, 0, NULL), 0);
  }
  for (int t = 0; t < NT; t++) {
    char topic[64];
    gen(topic, 0);
    memset(ran, 0, sizeof ran);
    assert_int_equal(stead_bus_emit_sync(bus, topic, NULL, 0, NULL, 0, NULL), 0);
    for (int i = 0; i < NP; i++)
      if (ran[i] != stead_topic_match(pats[i], topic))
        fail_msg("%s vs %s: trie ran %d", pats[i], topic, ran[i]);
  }
  /* Remove every other listener; the rest must still match exactly. */
  for (int i = 0; i < NP; i += 2) {
    char id[16];
    snprintf(id, sizeof id, "%d", i);
    assert_int_equal(stead_bus_off(bus, id), 0);
  }
  for (int t = 0; t < NT; t++) {
    char topic[64];
    gen(topic, 0);
    memset(ran, 0, sizeof ran);
    assert_int_equal(stead_bus_emit_sync(bus, topic, NULL, 0, NULL, 0, NULL), 0);
    for (int i = 0; i < NP; i++)
      assert_int_equal(ran[i], i % 2 ? stead_topic_match(pats[i], topic) : 0);
  }
  assert_int_equal(stead_bus_free(bus), 0);
}

/* ---- trie internals --------------------------------------------------- */

static int count_visit(stead__listener *l, void *arg) {
  (void)l;
  (*(int *)arg)++;
  return 0;
}

static int split(const char *s, int pat, stead__seg *segs) {
  return stead__topic_split(s, pat, STEAD__TOPIC_LEN_CAP, STEAD__TOPIC_SEG_CAP, segs);
}

/* Many literal siblings exercise the child table's growth and its
 * backward-shift deletion; removing everything must prune back to the
 * root. */
static void test_trie_prune(void **state) {
  (void)state;
  enum { N = 2000 };
  stead__trie t;
  assert_int_equal(stead__trie_init(&t), 0);
  static stead__listener ls[N];
  stead__seg segs[8];
  char buf[64];
  for (int i = 0; i < N; i++) {
    snprintf(buf, sizeof buf, "k%d.%s", i % 997, i % 3 ? "x" : "**");
    int n = split(buf, 1, segs);
    assert_true(n > 0);
    assert_int_equal(stead__trie_add(&t, segs, n, &ls[i]), 0);
  }
  for (int i = 0; i < N; i += 2)
    stead__trie_remove(&t, &ls[i]);
  for (int i = 0; i < 997; i++) {
    snprintf(buf, sizeof buf, "k%d.x", i);
    int n = split(buf, 0, segs);
    int cnt = 0;
    assert_int_equal(stead__trie_match(&t, segs, n, count_visit, &cnt), 0);
    int want = 0;
    for (int j = 1; j < N; j += 2)
      want += j % 997 == i;
    assert_int_equal(cnt, want); /* both "k.x" and "k.**" match "k.x" */
  }
  for (int i = 1; i < N; i += 2)
    stead__trie_remove(&t, &ls[i]);
  assert_int_equal(t.nodes, 1);
  stead__trie_free(&t);
}

/* Without memoization, "**.**.**..." against a long topic explores an
 * exponential number of paths; with it this is instant. */
static void test_trie_many_dstar(void **state) {
  (void)state;
  stead__trie t;
  assert_int_equal(stead__trie_init(&t), 0);
  char pat[512] = "", topic[512] = "";
  for (int i = 0; i < 60; i++)
    strcat(pat, i ? ".**" : "**");
  strcat(pat, ".zz");
  for (int i = 0; i < 120; i++)
    strcat(topic, i ? ".a" : "a");
  stead__seg ps[STEAD__TOPIC_SEG_CAP], ts[STEAD__TOPIC_SEG_CAP];
  int np = split(pat, 1, ps), nt = split(topic, 0, ts);
  stead__listener l = {0};
  assert_int_equal(stead__trie_add(&t, ps, np, &l), 0);
  int64_t t0 = stead__mono_ns();
  int cnt = 0;
  assert_int_equal(stead__trie_match(&t, ts, nt, count_visit, &cnt), 0);
  assert_int_equal(cnt, 0);
  assert_false(stead__segs_match(ps, np, ts, nt));
  strcat(topic, ".zz");
  nt = split(topic, 0, ts);
  assert_int_equal(stead__trie_match(&t, ts, nt, count_visit, &cnt), 0);
  assert_int_equal(cnt, 1); /* reached by many paths, visited once */
  assert_true(stead__segs_match(ps, np, ts, nt));
  assert_true(stead__mono_ns() - t0 < 500 * 1000000LL);
  stead__trie_remove(&t, &l);
  stead__trie_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_pure), cmocka_unit_test(test_table_trie),
      cmocka_unit_test(test_validation), cmocka_unit_test(test_random_cross_check),
      cmocka_unit_test(test_trie_prune), cmocka_unit_test(test_trie_many_dstar),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
