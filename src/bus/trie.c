/*
 * trie.c -- the pattern trie: every subscribed pattern is a path of
 * segments from the root; a listener hangs on the node where its pattern
 * ends.
 *
 * Each node has a hash table of literal children plus at most one `*` and
 * one `**` child. Matching a topic simulates the trie as an automaton: the
 * state set starts at the root; each topic segment moves every state to its
 * matching literal child, its `*` child, and -- for a `**` node -- to itself
 * (the `**` swallows the segment); after each step every state's `**` child
 * joins the set (a `**` may match zero segments). The set is deduplicated
 * per step, which is the memoization that keeps patterns with several `**`
 * linear: a node is visited at most once per segment however many paths
 * reach it, so a listener reached by several paths runs once.
 *
 * Invariants: a non-root node has listeners or children (empty ones are
 * pruned on removal). The trie is not locked here: the bus holds a rwlock,
 * writers (add/remove) exclusive, matchers shared.
 */
#include "bus/bus_internal.h"

#include <stdlib.h>
#include <string.h>

enum { NODE_ROOT, NODE_LIT, NODE_STAR, NODE_DSTAR };

struct stead__trie_node {
  stead__trie_node *parent;
  int kind;
  uint32_t seg_len;
  uint64_t hash;
  /* Literal children: linear probing, capacity a power of two or 0. */
  stead__trie_node **kids;
  uint32_t kids_cap, kids_n;
  stead__trie_node *star, *dstar;
  stead__listener **ls;
  size_t ls_n, ls_cap;
  /* The literal segment (NODE_LIT), inline so a lookup touches one line. */
  char seg[];
};

static stead__trie_node *node_new(stead__trie_node *parent, int kind,
                                  const stead__seg *seg) {
  size_t seg_len = kind == NODE_LIT ? seg->len : 0;
  stead__trie_node *n = calloc(1, sizeof *n + seg_len + 1);
  if (!n)
    return NULL;
  n->parent = parent;
  n->kind = kind;
  if (kind == NODE_LIT) {
    memcpy(n->seg, seg->p, seg_len);
    n->seg_len = seg->len;
    n->hash = seg->hash;
  }
  return n;
}

static void node_free(stead__trie_node *n) {
  if (!n)
    return;
  for (uint32_t i = 0; i < n->kids_cap; i++)
    node_free(n->kids[i]);
  node_free(n->star);
  node_free(n->dstar);
  free(n->kids);
  free(n->ls);
  free(n);
}

int stead__trie_init(stead__trie *t) {
  t->root = node_new(NULL, NODE_ROOT, NULL);
  t->nodes = 1;
  return t->root ? 0 : STEAD_ENOMEM;
}

void stead__trie_free(stead__trie *t) {
  node_free(t->root);
  t->root = NULL;
  t->nodes = 0;
}

/* ---- literal child table --------------------------------------------- */

static stead__trie_node *kid_find(const stead__trie_node *n, const char *p, uint32_t len,
                                  uint64_t hash) {
  if (n->kids_n == 0)
    return NULL;
  uint32_t mask = n->kids_cap - 1;
  for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
    stead__trie_node *k = n->kids[i];
    if (!k)
      return NULL;
    if (k->hash == hash && k->seg_len == len && memcmp(k->seg, p, len) == 0)
      return k;
  }
}

static void kid_place(stead__trie_node **tab, uint32_t cap, stead__trie_node *k) {
  uint32_t mask = cap - 1;
  uint32_t i = (uint32_t)k->hash & mask;
  while (tab[i])
    i = (i + 1) & mask;
  tab[i] = k;
}

static int kid_insert(stead__trie_node *n, stead__trie_node *k) {
  if ((n->kids_n + 1) * 2 > n->kids_cap) {
    uint32_t cap = n->kids_cap ? n->kids_cap * 2 : 4;
    stead__trie_node **tab = calloc(cap, sizeof *tab);
    if (!tab)
      return STEAD_ENOMEM;
    for (uint32_t i = 0; i < n->kids_cap; i++)
      if (n->kids[i])
        kid_place(tab, cap, n->kids[i]);
    free(n->kids);
    n->kids = tab;
    n->kids_cap = cap;
  }
  kid_place(n->kids, n->kids_cap, k);
  n->kids_n++;
  return 0;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void kid_delete(stead__trie_node *n, stead__trie_node *k) {
  uint32_t mask = n->kids_cap - 1;
  uint32_t i = (uint32_t)k->hash & mask;
  while (n->kids[i] != k)
    i = (i + 1) & mask;
  n->kids[i] = NULL;
  n->kids_n--;
  for (uint32_t j = (i + 1) & mask; n->kids[j]; j = (j + 1) & mask) {
    stead__trie_node *m = n->kids[j];
    uint32_t home = (uint32_t)m->hash & mask;
    /* m may move into the hole i unless its home lies cyclically in (i, j]. */
    bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      n->kids[i] = m;
      n->kids[j] = NULL;
      i = j;
    }
  }
}

/* ---- add / remove ------------------------------------------------------ */

static stead__trie_node *child_get_or_add(stead__trie *t, stead__trie_node *n,
                                          const stead__seg *s) {
  stead__trie_node **slot = NULL;
  int kind = NODE_LIT;
  if (stead__seg_is_dstar(s)) {
    slot = &n->dstar;
    kind = NODE_DSTAR;
  } else if (stead__seg_is_star(s)) {
    slot = &n->star;
    kind = NODE_STAR;
  }
  if (slot) {
    if (!*slot) {
      *slot = node_new(n, kind, s);
      if (*slot)
        t->nodes++;
    }
    return *slot;
  }
  stead__trie_node *k = kid_find(n, s->p, s->len, s->hash);
  if (k)
    return k;
  k = node_new(n, NODE_LIT, s);
  if (!k)
    return NULL;
  if (kid_insert(n, k) != 0) {
    node_free(k);
    return NULL;
  }
  t->nodes++;
  return k;
}

static bool node_empty(const stead__trie_node *n) {
  return n->ls_n == 0 && n->kids_n == 0 && !n->star && !n->dstar;
}

static void prune(stead__trie *t, stead__trie_node *n) {
  while (n->kind != NODE_ROOT && node_empty(n)) {
    stead__trie_node *p = n->parent;
    if (n->kind == NODE_STAR)
      p->star = NULL;
    else if (n->kind == NODE_DSTAR)
      p->dstar = NULL;
    else
      kid_delete(p, n);
    node_free(n);
    t->nodes--;
    n = p;
  }
}

int stead__trie_add(stead__trie *t, const stead__seg *segs, int n, stead__listener *l) {
  stead__trie_node *node = t->root;
  for (int i = 0; i < n; i++) {
    stead__trie_node *next = child_get_or_add(t, node, &segs[i]);
    if (!next) {
      prune(t, node);
      return STEAD_ENOMEM;
    }
    node = next;
  }
  if (node->ls_n == node->ls_cap) {
    size_t cap = node->ls_cap ? node->ls_cap * 2 : 2;
    stead__listener **ls = realloc(node->ls, cap * sizeof *ls);
    if (!ls) {
      prune(t, node);
      return STEAD_ENOMEM;
    }
    node->ls = ls;
    node->ls_cap = cap;
  }
  l->node = node;
  l->node_index = node->ls_n;
  node->ls[node->ls_n++] = l;
  return 0;
}

void stead__trie_remove(stead__trie *t, stead__listener *l) {
  stead__trie_node *node = l->node;
  size_t i = l->node_index;
  node->ls[i] = node->ls[--node->ls_n];
  node->ls[i]->node_index = i;
  l->node = NULL;
  prune(t, node);
}

/* ---- match ------------------------------------------------------------ */

/* A set of trie states for one step. Small sets live on the stack. */
typedef struct nodeset {
  stead__trie_node **v;
  size_t n, cap;
  stead__trie_node *inl[32];
} nodeset;

typedef struct seen_table {
  stead__trie_node **v;
  size_t cap;
  stead__trie_node *inl[64];
} seen_table;

static size_t ptr_hash(const stead__trie_node *p, size_t mask) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x & mask;
}

/* Inserts p into seen; false if it was there already. */
static bool seen_add(seen_table *s, stead__trie_node *p) {
  size_t mask = s->cap - 1;
  for (size_t i = ptr_hash(p, mask);; i = (i + 1) & mask) {
    if (s->v[i] == p)
      return false;
    if (!s->v[i]) {
      s->v[i] = p;
      return true;
    }
  }
}

/* Empties the table by clearing exactly the slots of set's members. */
static void seen_clear(seen_table *s, const nodeset *set) {
  size_t mask = s->cap - 1;
  for (size_t k = 0; k < set->n; k++)
    for (size_t i = ptr_hash(set->v[k], mask);; i = (i + 1) & mask)
      if (s->v[i] == set->v[k]) {
        s->v[i] = NULL;
        break;
      }
}

static int seen_grow(seen_table *s, const nodeset *set) {
  size_t cap = s->cap * 2;
  stead__trie_node **v = calloc(cap, sizeof *v);
  if (!v)
    return STEAD_ENOMEM;
  if (s->v != s->inl)
    free(s->v);
  s->v = v;
  s->cap = cap;
  for (size_t k = 0; k < set->n; k++)
    seen_add(s, set->v[k]);
  return 0;
}

/* Adds p to set unless present. */
static int set_add(nodeset *set, seen_table *seen, stead__trie_node *p) {
  if ((set->n + 1) * 2 > seen->cap && seen_grow(seen, set) != 0)
    return STEAD_ENOMEM;
  if (!seen_add(seen, p))
    return 0;
  if (set->n == set->cap) {
    size_t cap = set->cap * 2;
    stead__trie_node **v = malloc(cap * sizeof *v);
    if (!v)
      return STEAD_ENOMEM;
    memcpy(v, set->v, set->n * sizeof *v);
    if (set->v != set->inl)
      free(set->v);
    set->v = v;
    set->cap = cap;
  }
  set->v[set->n++] = p;
  return 0;
}

/* Adds the `**` children of every member, transitively (a `**.**` chain). */
static int set_close(nodeset *set, seen_table *seen) {
  for (size_t k = 0; k < set->n; k++)
    if (set->v[k]->dstar) {
      int rc = set_add(set, seen, set->v[k]->dstar);
      if (rc)
        return rc;
    }
  return 0;
}

static int step(const nodeset *cur, nodeset *next, seen_table *seen,
                const stead__seg *s) {
  for (size_t k = 0; k < cur->n; k++) {
    stead__trie_node *n = cur->v[k];
    int rc = 0;
    if (n->kind == NODE_DSTAR)
      rc = set_add(next, seen, n);
    stead__trie_node *lit = kid_find(n, s->p, s->len, s->hash);
    if (!rc && lit)
      rc = set_add(next, seen, lit);
    if (!rc && n->star)
      rc = set_add(next, seen, n->star);
    if (rc)
      return rc;
  }
  return set_close(next, seen);
}

int stead__trie_match(const stead__trie *t, const stead__seg *segs, int n,
                      int (*visit)(stead__listener *l, void *arg), void *arg) {
  nodeset a = {.n = 0, .cap = 32}, b = {.n = 0, .cap = 32};
  a.v = a.inl;
  b.v = b.inl;
  seen_table seen = {.cap = 64};
  seen.v = seen.inl;
  memset(seen.inl, 0, sizeof seen.inl);
  nodeset *cur = &a, *next = &b;
  int rc = set_add(cur, &seen, t->root);
  if (!rc)
    rc = set_close(cur, &seen);
  seen_clear(&seen, cur);
  for (int i = 0; i < n && !rc && cur->n > 0; i++) {
    next->n = 0;
    rc = step(cur, next, &seen, &segs[i]);
    seen_clear(&seen, next);
    nodeset *tmp = cur;
    cur = next;
    next = tmp;
  }
  for (size_t k = 0; k < cur->n && !rc; k++)
    for (size_t j = 0; j < cur->v[k]->ls_n && !rc; j++)
      rc = visit(cur->v[k]->ls[j], arg);
  if (a.v != a.inl)
    free(a.v);
  if (b.v != b.inl)
    free(b.v);
  if (seen.v != seen.inl)
    free(seen.v);
  return rc;
}
