/*
 * fuzz_topic.c -- libFuzzer target for the topic/pattern parser and the
 * matchers.
 *
 * Input: a pattern, a NUL byte, a topic (both taken as C strings). Both go
 * through the validators (must never crash, whatever the bytes); when both
 * are valid, three matchers must agree: the public DP matcher
 * (stead_topic_match), the trie (pattern inserted into a fresh trie, topic
 * walked through it), and a simple recursive reference matcher written here
 * on raw strings (memoized on failed (pattern, topic) positions so that
 * many `**` stay cheap). Any disagreement aborts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"

#define MAXS STEAD_TOPIC_MAX_SEGMENTS

typedef struct ref {
  const char *p[MAXS], *t[MAXS];
  size_t pl[MAXS], tl[MAXS];
  int np, nt;
  bool failed[MAXS + 1][MAXS + 1];
} ref;

static int cut(const char *s, const char **v, size_t *l) {
  int n = 0;
  const char *start = s;
  for (const char *c = s;; c++) {
    if (*c == '.' || *c == 0) {
      if (n == MAXS)
        abort(); /* validated strings cannot have more */
      v[n] = start;
      l[n++] = (size_t)(c - start);
      if (!*c)
        return n;
      start = c + 1;
    }
  }
}

static bool is(const char *s, size_t l, const char *w) {
  return l == strlen(w) && memcmp(s, w, l) == 0;
}

static bool ref_match(ref *r, int i, int j) {
  if (r->failed[i][j])
    return false;
  bool ok;
  if (i == r->np) {
    ok = j == r->nt;
  } else if (is(r->p[i], r->pl[i], "**")) {
    ok = ref_match(r, i + 1, j) || (j < r->nt && ref_match(r, i, j + 1));
  } else if (j == r->nt) {
    ok = false;
  } else if (is(r->p[i], r->pl[i], "*")) {
    ok = ref_match(r, i + 1, j + 1);
  } else {
    ok = r->pl[i] == r->tl[j] && memcmp(r->p[i], r->t[j], r->pl[i]) == 0 &&
         ref_match(r, i + 1, j + 1);
  }
  if (!ok)
    r->failed[i][j] = true;
  return ok;
}

static int count(stead__listener *l, void *arg) {
  (void)l;
  (*(int *)arg)++;
  return 0;
}

static int trie_match(const char *pattern, const char *topic) {
  stead__seg ps[MAXS], ts[MAXS];
  int np = stead__topic_split(pattern, 1, STEAD_TOPIC_MAX_LEN, MAXS, ps);
  int nt = stead__topic_split(topic, 0, STEAD_TOPIC_MAX_LEN, MAXS, ts);
  if (np < 0 || nt < 0)
    abort();
  stead__trie t;
  stead__listener l = {0};
  int hits = 0;
  if (stead__trie_init(&t) != 0 || stead__trie_add(&t, ps, np, &l) != 0 ||
      stead__trie_match(&t, ts, nt, count, &hits) != 0)
    abort();
  stead__trie_remove(&t, &l);
  if (t.nodes != 1)
    abort(); /* removal must prune everything it added */
  stead__trie_free(&t);
  return hits;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0;
  char *buf = malloc(size + 2);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  buf[size] = 0;
  buf[size + 1] = 0;
  const char *pattern = buf;
  const char *topic = buf + strlen(buf) + (strlen(buf) < size ? 1 : 0);
  if (topic > buf + size)
    topic = buf + size;

  int pv = stead_pattern_validate(pattern);
  int tv = stead_topic_validate(topic);
  /* Every valid topic is also a valid pattern (a literal one). */
  if (tv == 0 && stead_pattern_validate(topic) != 0)
    abort();
  int m = stead_topic_match(pattern, topic);
  if ((pv == 0 && tv == 0) != (m >= 0))
    abort();
  if (m >= 0) {
    static ref r;
    memset(&r, 0, sizeof r);
    r.np = cut(pattern, r.p, r.pl);
    r.nt = cut(topic, r.t, r.tl);
    int want = ref_match(&r, 0, 0);
    if (m != want || trie_match(pattern, topic) != want)
      abort();
    /* A topic always matches itself as a literal pattern. */
    if (stead_topic_match(topic, topic) != 1)
      abort();
  }
  free(buf);
  return 0;
}
