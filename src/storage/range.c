/*
 * range.c -- turns listing options (prefix, start, start_after, end) into
 * one half-open key interval shared by every backend and the activation
 * store, so that all of them agree on edge cases: a prefix of all 0xFF
 * bytes has no upper bound, start > end is empty, start_after excludes.
 */
#include "storage/backend.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

int stead__range_make(const stead__list_opts *o, stead__range *r) {
  memset(r, 0, sizeof *r);
  int has_start = o->start && o->start_len;
  int has_after = o->start_after && o->start_after_len;
  if (has_start && has_after)
    return stead__err(STEAD_EINVAL, "list options give both start and start_after");
  r->reverse = o->reverse;
  r->limit = o->limit;
  if (has_start) {
    r->lo = o->start;
    r->lo_len = o->start_len;
  } else if (has_after) {
    r->lo = o->start_after;
    r->lo_len = o->start_after_len;
    r->lo_excl = 1;
  }
  if (o->end && o->end_len) {
    r->hi = o->end;
    r->hi_len = o->end_len;
  }
  if (o->prefix && o->prefix_len) {
    const uint8_t *p = o->prefix;
    /* The prefix is a lower bound unless the given lower bound is higher. */
    if (!r->lo || stead__keycmp(p, o->prefix_len, r->lo, r->lo_len) > 0) {
      r->lo = p;
      r->lo_len = o->prefix_len;
      r->lo_excl = 0;
    }
    /* Upper bound: the prefix with its last non-0xFF byte incremented and
     * the 0xFF tail cut; none if the prefix is all 0xFF. */
    size_t n = o->prefix_len;
    while (n > 0 && p[n - 1] == 0xFF)
      n--;
    if (n > 0) {
      r->own = malloc(n);
      if (!r->own)
        return STEAD_ENOMEM;
      memcpy(r->own, p, n);
      r->own[n - 1]++;
      if (!r->hi || stead__keycmp(r->own, n, r->hi, r->hi_len) < 0) {
        r->hi = r->own;
        r->hi_len = n;
      }
    }
  }
  return 0;
}

void stead__range_free(stead__range *r) {
  free(r->own);
  r->own = NULL;
}

int stead__range_empty(const stead__range *r) {
  if (!r->lo || !r->hi)
    return 0;
  return stead__keycmp(r->lo, r->lo_len, r->hi, r->hi_len) >= 0;
}

int stead__range_has(const stead__range *r, const void *key, size_t klen) {
  if (r->lo) {
    int c = stead__keycmp(key, klen, r->lo, r->lo_len);
    if (c < 0 || (c == 0 && r->lo_excl))
      return 0;
  }
  if (r->hi && stead__keycmp(key, klen, r->hi, r->hi_len) >= 0)
    return 0;
  return 1;
}
