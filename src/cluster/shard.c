/*
 * shard.c -- shard math: key -> shard, shard -> node, static host lists.
 *
 * Everything here is a pure function of its arguments, so every node of a
 * deployment computes the same answers without talking to anyone.
 *
 * Hashing (the definition other implementations must match; fixed vectors
 * in tests/cluster/test_shard.c):
 *   - The seed is a string. NULL or "" means unkeyed BLAKE2b. Otherwise the
 *     BLAKE2b key is K = BLAKE2b-256(seed bytes) (unkeyed, 32 bytes): a seed
 *     of any length becomes a key of the size BLAKE2b accepts.
 *   - shard = LE64(BLAKE2b-64_K(class "/" id)) mod S.
 *   - HRW weight of node N for shard s = LE64(BLAKE2b-64_K(N 0x00 LE32(s))).
 *     The owner is the node with the highest weight; a tie (never seen in
 *     practice) goes to the node id that sorts first, so the answer does not
 *     depend on the order of the list.
 * LE64 reads the 8 output bytes as a little-endian integer.
 *
 * Threads: none; all functions are reentrant.
 */
#include "util/util.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct seed_key {
  int keyed;
  unsigned char k[crypto_generichash_KEYBYTES];
} seed_key;

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

/* sodium_init picks the fastest BLAKE2b code for this CPU. It is
 * idempotent, but takes a lock, so run it once per process. */
static void sodium_init_once(void) {
  /* On failure BLAKE2b still works: libsodium keeps its portable code. */
  if (sodium_init() < 0)
    return;
}

static void seed_key_init(seed_key *sk, const char *seed) {
  pthread_once(&sodium_once, sodium_init_once);
  sk->keyed = seed && seed[0];
  if (sk->keyed)
    crypto_generichash(sk->k, sizeof sk->k, (const unsigned char *)seed, strlen(seed),
                       NULL, 0);
}

static uint64_t le64(const unsigned char b[8]) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | b[i];
  return v;
}

/* BLAKE2b-64 over up to three byte ranges, without copying them together. */
static uint64_t hash3(const seed_key *sk, const void *a, size_t alen, const void *b,
                      size_t blen, const void *c, size_t clen) {
  crypto_generichash_state st;
  unsigned char out[8];
  crypto_generichash_init(&st, sk->keyed ? sk->k : NULL, sk->keyed ? sizeof sk->k : 0,
                          sizeof out);
  crypto_generichash_update(&st, a, alen);
  crypto_generichash_update(&st, b, blen);
  crypto_generichash_update(&st, c, clen);
  crypto_generichash_final(&st, out, sizeof out);
  return le64(out);
}

static int check_nshards(uint32_t nshards) {
  if (nshards == 0 || nshards > STEAD_MAX_SHARDS)
    return stead__err(STEAD_EINVAL, "shard count %u is outside 1..%d", nshards,
                      STEAD_MAX_SHARDS);
  return 0;
}

int stead_shard_for_key(const char *cls, const char *id, uint32_t nshards,
                        const char *seed) {
  int rc = check_nshards(nshards);
  if (rc == 0)
    rc = stead__check_name("class", cls);
  if (rc == 0)
    rc = stead__check_utf8("id", id, STEAD__MAX_ID);
  if (rc != 0)
    return rc;
  seed_key sk;
  seed_key_init(&sk, seed);
  uint64_t h = hash3(&sk, cls, strlen(cls), "/", 1, id, strlen(id));
  return (int)(h % nshards);
}

static uint64_t hrw_weight(const seed_key *sk, const char *node, uint32_t shard) {
  unsigned char tail[5] = {0, (unsigned char)shard, (unsigned char)(shard >> 8),
                           (unsigned char)(shard >> 16), (unsigned char)(shard >> 24)};
  return hash3(sk, node, strlen(node), tail, sizeof tail, "", 0);
}

static int check_nodes(const char *const *nodes, size_t n) {
  if (!nodes || n == 0)
    return stead__err(STEAD_EINVAL, "the node list is empty");
  if (n > STEAD_MAX_HOSTS)
    return stead__err(STEAD_ETOOBIG, "%zu nodes; the limit is %d", n, STEAD_MAX_HOSTS);
  for (size_t i = 0; i < n; i++) {
    int rc = stead__check_name("node id", nodes[i]);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Index of the owner among nodes, arguments already checked. */
static size_t owner_of(const seed_key *sk, uint32_t shard, const char *const *nodes,
                       size_t n) {
  size_t best = 0;
  uint64_t best_w = hrw_weight(sk, nodes[0], shard);
  for (size_t i = 1; i < n; i++) {
    uint64_t w = hrw_weight(sk, nodes[i], shard);
    if (w > best_w || (w == best_w && strcmp(nodes[i], nodes[best]) < 0)) {
      best = i;
      best_w = w;
    }
  }
  return best;
}

int stead_shard_owner(uint32_t shard, const char *const *nodes, size_t n,
                      const char *seed) {
  int rc = check_nodes(nodes, n);
  if (rc != 0)
    return rc;
  seed_key sk;
  seed_key_init(&sk, seed);
  return (int)owner_of(&sk, shard, nodes, n);
}

int stead_shards_for_node(const char *node, const char *const *nodes, size_t n,
                          uint32_t nshards, const char *seed, uint32_t *out, size_t cap) {
  int rc = check_nshards(nshards);
  if (rc == 0)
    rc = stead__check_name("node id", node);
  if (rc == 0)
    rc = check_nodes(nodes, n);
  if (rc != 0)
    return rc;
  if (cap > 0 && !out)
    return stead__err(STEAD_EINVAL, "out is NULL but cap is %zu", cap);
  seed_key sk;
  seed_key_init(&sk, seed);
  size_t count = 0;
  for (uint32_t s = 0; s < nshards; s++) {
    size_t o = owner_of(&sk, s, nodes, n);
    if (strcmp(nodes[o], node) != 0)
      continue;
    if (count < cap)
      out[count] = s;
    count++;
  }
  return (int)count;
}

/* ---------------------------------------------------------------------
 * Static host lists: "a,b,host-{0..3}".
 * ------------------------------------------------------------------- */

/* Parses a decimal run of at most 9 digits at *p; advances *p. */
static int parse_bound(const char **p, long *v, int *digits) {
  const char *s = *p;
  long x = 0;
  int d = 0;
  while (*s >= '0' && *s <= '9') {
    if (++d > 9)
      return -1;
    x = x * 10 + (*s - '0');
    s++;
  }
  if (d == 0)
    return -1;
  *p = s;
  *v = x;
  *digits = d;
  return 0;
}

/* One item of the list (no commas): its prefix, optional {lo..hi}, suffix. */
typedef struct host_item {
  const char *start;
  size_t prefix_len;
  const char *suffix;
  size_t suffix_len;
  long lo, hi;
  int width; /* zero-padding width, 0 for none */
  int ranged;
} host_item;

static int parse_item(const char *start, size_t len, host_item *it) {
  memset(it, 0, sizeof *it);
  it->start = start;
  const char *open = memchr(start, '{', len);
  const char *close = memchr(start, '}', len);
  if (!open && !close) {
    it->prefix_len = len;
    it->lo = it->hi = 0;
    return 0;
  }
  if (!open || !close || close < open)
    return stead__err(STEAD_EINVAL, "host item \"%.*s\" has unbalanced braces", (int)len,
                      start);
  const char *end = start + len;
  if (memchr(close + 1, '{', (size_t)(end - close - 1)) ||
      memchr(close + 1, '}', (size_t)(end - close - 1)) ||
      memchr(open + 1, '{', (size_t)(close - open - 1)))
    return stead__err(STEAD_EINVAL, "host item \"%.*s\" has more than one {a..b} range",
                      (int)len, start);
  const char *p = open + 1;
  int dlo, dhi;
  if (parse_bound(&p, &it->lo, &dlo) != 0 || p[0] != '.' || p[1] != '.')
    return stead__err(STEAD_EINVAL,
                      "host item \"%.*s\": a range is {LO..HI} with decimal bounds of at "
                      "most 9 digits",
                      (int)len, start);
  p += 2;
  if (parse_bound(&p, &it->hi, &dhi) != 0 || p != close)
    return stead__err(STEAD_EINVAL,
                      "host item \"%.*s\": a range is {LO..HI} with decimal bounds of at "
                      "most 9 digits",
                      (int)len, start);
  if (it->lo > it->hi)
    return stead__err(STEAD_EINVAL,
                      "host item \"%.*s\": range start %ld is past its end %ld", (int)len,
                      start, it->lo, it->hi);
  it->ranged = 1;
  it->width = (dlo > 1 && open[1] == '0') ? dlo : 0;
  it->prefix_len = (size_t)(open - start);
  it->suffix = close + 1;
  it->suffix_len = (size_t)(end - close - 1);
  return 0;
}

static int has_dup(char **names, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], s) == 0)
      return 1;
  return 0;
}

/* Appends the names of one item to the growing list. */
static int expand_item(const host_item *it, char ***names, size_t *n) {
  for (long v = it->lo; v <= it->hi; v++) {
    if (*n >= STEAD_MAX_HOSTS)
      return stead__err(STEAD_ETOOBIG, "the host list expands past %d hosts",
                        STEAD_MAX_HOSTS);
    char num[16] = "";
    if (it->ranged)
      snprintf(num, sizeof num, "%0*ld", it->width, v);
    size_t len = it->prefix_len + strlen(num) + it->suffix_len;
    char *s = malloc(len + 1);
    if (!s)
      return stead__err(STEAD_ENOMEM, "out of memory expanding the host list");
    memcpy(s, it->start, it->prefix_len);
    memcpy(s + it->prefix_len, num, strlen(num));
    if (it->suffix_len)
      memcpy(s + it->prefix_len + strlen(num), it->suffix, it->suffix_len);
    s[len] = 0;
    int rc = stead__check_name("host name", s);
    if (rc == 0 && has_dup(*names, *n, s))
      rc = stead__err(STEAD_EINVAL, "host \"%s\" appears twice in the list", s);
    if (rc != 0) {
      free(s);
      return rc;
    }
    (*names)[(*n)++] = s;
  }
  return 0;
}

int stead_hosts_expand(const char *spec, char ***out, size_t *count) {
  if (!out || !count)
    return stead__err(STEAD_EINVAL, "out and count must not be NULL");
  *out = NULL;
  *count = 0;
  if (!spec || !spec[0])
    return stead__err(STEAD_EINVAL, "the host list is empty");
  char **names = calloc(STEAD_MAX_HOSTS, sizeof *names);
  if (!names)
    return stead__err(STEAD_ENOMEM, "out of memory expanding the host list");
  size_t n = 0;
  int rc = 0;
  for (const char *p = spec; rc == 0;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    host_item it;
    if (len == 0)
      rc = stead__err(STEAD_EINVAL, "the host list \"%s\" has an empty item", spec);
    if (rc == 0)
      rc = parse_item(p, len, &it);
    if (rc == 0)
      rc = expand_item(&it, &names, &n);
    if (!comma)
      break;
    p = comma + 1;
  }
  if (rc == 0) {
    *out = stead__strv_pack(names, n);
    if (!*out)
      rc = stead__err(STEAD_ENOMEM, "out of memory expanding the host list");
    else
      *count = n;
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}
