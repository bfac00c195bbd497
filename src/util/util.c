/*
 * util.c -- clocks, validation, hashing and growable buffers.
 */
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t stead__mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t stead__mono_ms(void) {
  return stead__mono_ns() / 1000000;
}

int64_t stead__wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t stead__coarse_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t stead__coarse_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t stead__utf8_seq(const unsigned char *s, size_t avail) {
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned cp;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (avail < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  static const unsigned min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

int stead__check_utf8(const char *what, const char *s, size_t max_len) {
  if (!s)
    return stead__err(STEAD_EINVAL, "%s is NULL", what);
  size_t len = strlen(s);
  if (len == 0)
    return stead__err(STEAD_EINVAL, "%s is empty", what);
  if (len > max_len)
    return stead__err(STEAD_ETOOBIG, "%s is %zu bytes; the limit is %zu", what, len,
                      max_len);
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = stead__utf8_seq(p + i, len - i);
    if (n == 0)
      return stead__err(STEAD_EINVAL, "%s is not valid UTF-8 (byte %zu)", what, i);
    i += n;
  }
  return 0;
}

int stead__check_name(const char *what, const char *s) {
  if (!s)
    return stead__err(STEAD_EINVAL, "%s is NULL", what);
  size_t len = strlen(s);
  if (len == 0)
    return stead__err(STEAD_EINVAL, "%s is empty", what);
  if (len > STEAD__MAX_NAME)
    return stead__err(STEAD_ETOOBIG, "%s is %zu bytes; the limit is %d", what, len,
                      STEAD__MAX_NAME);
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-' || c == '.';
    if (!ok)
      return stead__err(STEAD_EINVAL, "%s \"%s\" has a character outside [A-Za-z0-9_.-]",
                        what, s);
  }
  return 0;
}

/* FNV-1a folded through a final avalanche (splitmix64): short keys, fast,
 * good enough spread for open hash tables. */
uint64_t stead__hash64(const void *data, size_t len, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

void *stead__memdup(const void *p, size_t len) {
  void *q = malloc(len ? len : 1);
  if (q && len)
    memcpy(q, p, len);
  return q;
}

char *stead__strdup(const char *s) {
  return stead__memdup(s, strlen(s) + 1);
}

int stead__buf_reserve(stead__buf *b, size_t extra) {
  if (b->len + extra <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra)
    cap *= 2;
  uint8_t *d = realloc(b->data, cap);
  if (!d)
    return STEAD_ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

int stead__buf_append(stead__buf *b, const void *p, size_t len) {
  if (stead__buf_reserve(b, len + 1) != 0)
    return STEAD_ENOMEM;
  if (len)
    memcpy(b->data + b->len, p, len);
  b->len += len;
  b->data[b->len] = 0;
  return 0;
}

int stead__buf_printf(stead__buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return STEAD_EINVAL;
  if (stead__buf_reserve(b, (size_t)n + 1) != 0)
    return STEAD_ENOMEM;
  va_start(ap, fmt);
  vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void stead__buf_free(stead__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char **stead__strv_pack(char *const *strs, size_t n) {
  size_t total = (n + 1) * sizeof(char *);
  for (size_t i = 0; i < n; i++)
    total += strlen(strs[i]) + 1;
  char **block = malloc(total);
  if (!block)
    return NULL;
  char *w = (char *)(block + n + 1);
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(strs[i]) + 1;
    memcpy(w, strs[i], l);
    block[i] = w;
    w += l;
  }
  block[n] = NULL;
  return block;
}
