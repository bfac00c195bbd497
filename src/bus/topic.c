/*
 * topic.c -- topic and pattern grammar: validation, splitting into
 * segments, and the pure single-pattern matcher.
 *
 * Grammar: a topic is 1..N segments joined by '.'; a segment is 1+ bytes of
 * UTF-8 without '.', '*', spaces or ASCII control characters (spaces are
 * out so that topics map one-to-one onto NATS subjects later). A pattern is
 * the same except that a segment may be exactly `*` (one segment) or `**`
 * (zero or more). Everything here is pure: no state, thread-safe.
 *
 * Matching one pattern against one topic is a dynamic program over the two
 * segment lists (O(p*t) time, O(t) space), so several `**` cannot make it
 * exponential. The bus itself matches with the trie in trie.c; this
 * function is for other modules and for the linear-scan baseline.
 */
#include "bus/bus_internal.h"

#include <string.h>

static int check_segment(const char *what, const char *s, size_t start, size_t end,
                         int is_pattern) {
  if (end == start)
    return stead__err(STEAD_EINVAL, "%s has an empty segment at byte %zu", what, start);
  size_t len = end - start;
  const char *seg = s + start;
  bool has_star = memchr(seg, '*', len) != NULL;
  if (has_star) {
    if (!is_pattern)
      return stead__err(STEAD_EINVAL,
                        "%s has '*' at byte %zu; wildcards are for patterns only", what,
                        start);
    if (len == 1 || (len == 2 && seg[0] == '*' && seg[1] == '*'))
      return 0;
    return stead__err(STEAD_EINVAL,
                      "%s segment at byte %zu mixes '*' with other characters; "
                      "a wildcard must be a whole segment (* or **)",
                      what, start);
  }
  return 0;
}

int stead__topic_split(const char *s, int is_pattern, size_t max_len, size_t max_segs,
                       stead__seg *segs) {
  const char *what = is_pattern ? "pattern" : "topic";
  if (!s)
    return stead__err(STEAD_EINVAL, "%s is NULL", what);
  const unsigned char *u = (const unsigned char *)s;
  size_t start = 0, i = 0;
  int n = 0;
  for (;;) {
    unsigned c = u[i];
    if (c == '.' || c == 0) {
      if (i == 0 && c == 0)
        return stead__err(STEAD_EINVAL, "%s is empty", what);
      int rc = check_segment(what, s, start, i, is_pattern);
      if (rc)
        return rc;
      if ((size_t)n == max_segs)
        return stead__err(STEAD_ETOOBIG, "%s has more than %zu segments", what, max_segs);
      segs[n].p = s + start;
      segs[n].len = (uint32_t)(i - start);
      segs[n].hash = stead__hash64(s + start, i - start, 0);
      n++;
      if (c == 0)
        return n;
      start = ++i;
      continue;
    }
    if (i >= max_len)
      return stead__err(STEAD_ETOOBIG, "%s is longer than %zu bytes", what, max_len);
    if (c < 0x20 || c == 0x7f)
      return stead__err(STEAD_EINVAL, "%s has control character 0x%02x at byte %zu", what,
                        c, i);
    if (c == ' ')
      return stead__err(STEAD_EINVAL, "%s has a space at byte %zu", what, i);
    size_t k = stead__utf8_seq(u + i, strnlen(s + i, 4));
    if (k == 0)
      return stead__err(STEAD_EINVAL, "%s is not valid UTF-8 at byte %zu", what, i);
    if (i + k > max_len)
      return stead__err(STEAD_ETOOBIG, "%s is longer than %zu bytes", what, max_len);
    i += k;
  }
}

static bool seg_eq(const stead__seg *a, const stead__seg *b) {
  return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

bool stead__segs_match(const stead__seg *pat, int np, const stead__seg *top, int nt) {
  /* row[j]: pattern prefix of length i matches topic prefix of length j. */
  bool row[STEAD__TOPIC_SEG_CAP + 1], prev[STEAD__TOPIC_SEG_CAP + 1];
  row[0] = true;
  for (int j = 1; j <= nt; j++)
    row[j] = false;
  for (int i = 1; i <= np; i++) {
    memcpy(prev, row, sizeof(bool) * (size_t)(nt + 1));
    const stead__seg *p = &pat[i - 1];
    if (stead__seg_is_dstar(p)) {
      /* zero segments (prev[j]) or one more than before (row[j-1]). */
      row[0] = prev[0];
      for (int j = 1; j <= nt; j++)
        row[j] = prev[j] || row[j - 1];
    } else {
      bool star = stead__seg_is_star(p);
      row[0] = false;
      for (int j = 1; j <= nt; j++)
        row[j] = prev[j - 1] && (star || seg_eq(p, &top[j - 1]));
    }
  }
  return row[nt];
}

int stead_topic_validate(const char *topic) {
  stead__seg segs[STEAD_TOPIC_MAX_SEGMENTS];
  int n =
      stead__topic_split(topic, 0, STEAD_TOPIC_MAX_LEN, STEAD_TOPIC_MAX_SEGMENTS, segs);
  return n < 0 ? n : 0;
}

int stead_pattern_validate(const char *pattern) {
  stead__seg segs[STEAD_TOPIC_MAX_SEGMENTS];
  int n =
      stead__topic_split(pattern, 1, STEAD_TOPIC_MAX_LEN, STEAD_TOPIC_MAX_SEGMENTS, segs);
  return n < 0 ? n : 0;
}

int stead_topic_match(const char *pattern, const char *topic) {
  stead__seg ps[STEAD_TOPIC_MAX_SEGMENTS], ts[STEAD_TOPIC_MAX_SEGMENTS];
  int np =
      stead__topic_split(pattern, 1, STEAD_TOPIC_MAX_LEN, STEAD_TOPIC_MAX_SEGMENTS, ps);
  if (np < 0)
    return np;
  int nt =
      stead__topic_split(topic, 0, STEAD_TOPIC_MAX_LEN, STEAD_TOPIC_MAX_SEGMENTS, ts);
  if (nt < 0)
    return nt;
  return stead__segs_match(ps, np, ts, nt) ? 1 : 0;
}
