/*
 * backend.h -- the storage backend interface: write sets, key ranges,
 * alarm records and the backend vtable.
 *
 * A write set (stead__wset) is one turn's changes to ONE object
 * (class, id), kept in normalised form so that applying it is a pure
 * function of the set: per namespace an optional "delete all" that applies
 * first, then the final value (or a tombstone) of every key it touched, in
 * bytewise key order; the same for the object's alarms. Applying a set
 * twice gives the same result as applying it once, which the activation
 * store relies on when it overlays not-yet-durable sets on backend reads.
 *
 * Backends are called from many threads at once: get/list/alarms_* from
 * workers and the alarm scheduler, commit from the committer thread. Each
 * backend makes that safe on its own.
 */
#ifndef STEAD_STORAGE_BACKEND_H
#define STEAD_STORAGE_BACKEND_H

#include "storage/omap.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Namespaces of an object's key space. Only STEAD__NS_USER is visible to
 * handlers; the others hold runtime records. A namespace is one byte in
 * every backend's schema, so new ones need no migration. */
enum {
  STEAD__NS_USER = 0,     /* stead_get/stead_put */
  STEAD__NS_STATE = 1,    /* the state-struct record (key "") */
  STEAD__NS_SUB = 2,      /* bus subscriptions */
  STEAD__NS_JOURNAL = 3,  /* event-sourcing journal entries */
  STEAD__NS_SNAPSHOT = 4, /* event-sourcing snapshots */
  STEAD__NS_MAX = 64      /* namespaces are < 64 */
};

/* Limits (defaults; the activation store may be configured lower/higher). */
#define STEAD__MAX_KEY        (2u * 1024u)
#define STEAD__MAX_VALUE      (2u * 1024u * 1024u)
#define STEAD__MAX_WSET       (16u * 1024u * 1024u)
#define STEAD__MAX_ALARM_META (64u * 1024u)

/* Entry flag in a write set's maps: the key (or alarm) is deleted. */
#define STEAD__TOMB 1u

typedef struct stead__wset {
  atomic_int refs;
  atomic_int cancelled; /* set when an earlier set of the object failed */
  char *cls, *id;
  uint32_t shard; /* fencing token: ignored by memory and sqlite */
  uint64_t epoch;
  uint64_t gen;        /* the activation store's generation that built it */
  uint64_t clear_mask; /* bit ns: delete all keys of ns before the entries */
  stead__omap kv;      /* key = ns byte + key; TOMB flag for deletes */
  int alarms_clear;    /* delete all alarms of the object first */
  stead__omap alarms;  /* key = name; val = at(8) attempt(4) meta */
  size_t bytes;        /* accounted size, for the write-set limit */
} stead__wset;

/* A new empty write set for (cls, id), with one reference. NULL on OOM. */
stead__wset *stead__wset_new(const char *cls, const char *id);
void stead__wset_ref(stead__wset *ws);
/* Drops a reference; frees the set at zero. NULL allowed. */
void stead__wset_unref(stead__wset *ws);
/* Changes. Errors: ENOMEM (the set is unchanged). */
int stead__wset_put(stead__wset *ws, uint8_t ns, const void *key, size_t klen,
                    const void *val, size_t vlen);
int stead__wset_del(stead__wset *ws, uint8_t ns, const void *key, size_t klen);
void stead__wset_delete_all(stead__wset *ws, uint8_t ns);
int stead__wset_alarm_set(stead__wset *ws, const char *name, int64_t at_ms,
                          uint32_t attempt, const void *meta, size_t meta_len);
int stead__wset_alarm_del(stead__wset *ws, const char *name);
void stead__wset_alarms_clear(stead__wset *ws);
int stead__wset_empty(const stead__wset *ws);
/* Size a change would add, for limit checks before making it. */
size_t stead__wset_cost(size_t klen, size_t vlen);

/* An alarm as stored. Pointers valid during the callback only. */
typedef struct stead__alarm {
  const char *cls, *id, *name;
  int64_t at_ms;
  uint32_t attempt;
  const void *meta;
  size_t meta_len;
} stead__alarm;

/* Decodes an alarm value of a write set's alarm map into *a (name, cls and
 * id are left alone). */
void stead__wset_alarm_decode(const stead__onode *n, stead__alarm *a);

/* A key range, already normalised from the user's options (see
 * stead__range_make): keys k with lo <= k (lo < k when lo_excl) and k < hi.
 * lo NULL: from the first key; hi NULL: to the last. limit 0: no limit.
 * reverse: descending order; the limit then keeps the last keys. */
typedef struct stead__range {
  const uint8_t *lo;
  size_t lo_len;
  int lo_excl;
  const uint8_t *hi;
  size_t hi_len;
  int reverse;
  size_t limit;
  uint8_t *own; /* storage for a computed bound; freed by stead__range_free */
} stead__range;

/* User listing options, as in the public stead_list_opts. */
typedef struct stead__list_opts {
  const void *prefix;
  size_t prefix_len;
  const void *start;
  size_t start_len;
  const void *start_after;
  size_t start_after_len;
  const void *end;
  size_t end_len;
  int reverse;
  size_t limit;
} stead__list_opts;

/* Builds a range. Errors: EINVAL (start and start_after both given), ENOMEM. */
int stead__range_make(const stead__list_opts *o, stead__range *r);
void stead__range_free(stead__range *r);
/* 1 if no key can be in the range. */
int stead__range_empty(const stead__range *r);
/* 1 if key is inside the bounds (ignores reverse and limit). */
int stead__range_has(const stead__range *r, const void *key, size_t klen);

/* Called for each key of a listing, in order. Return 0 to go on, 1 to stop,
 * or a negative code to stop and make the listing return it. key/val are
 * valid during the call only. */
typedef int (*stead__kv_cb)(void *u, const void *key, size_t klen, const void *val,
                            size_t vlen);
typedef int (*stead__alarm_cb)(void *u, const stead__alarm *a);
/* Called for each key of one namespace across all objects (scan_ns), in
 * (cls, id, key) order (cls and id compared bytewise, as strings). Same
 * return protocol as stead__kv_cb; all pointers valid during the call. */
typedef int (*stead__ns_cb)(void *u, const char *cls, const char *id, const void *key,
                            size_t klen, const void *val, size_t vlen);

/* Position after which alarms_scan resumes: the last alarm seen. */
typedef struct stead__alarm_cursor {
  int64_t at_ms;
  const char *cls, *id, *name;
} stead__alarm_cursor;

typedef struct stead__backend stead__backend;

typedef struct stead__backend_vt {
  const char *name;
  /* Value of one key into a malloc'd buffer (*val, NUL-terminated past
   * vlen) the caller frees. STEAD_ENOTFOUND if absent. */
  int (*get)(stead__backend *b, const char *cls, const char *id, uint8_t ns,
             const void *key, size_t klen, void **val, size_t *vlen);
  /* Keys of (cls, id, ns) in the range, in order, honouring limit. */
  int (*list)(stead__backend *b, const char *cls, const char *id, uint8_t ns,
              const stead__range *r, stead__kv_cb cb, void *u);
  /* Applies all sets in one transaction, durably per the durability mode;
   * all or nothing. Sets are applied in array order. */
  int (*commit)(stead__backend *b, stead__wset *const *sets, size_t n);
  /* The object's alarms ordered by (at, name). */
  int (*alarms_list)(stead__backend *b, const char *cls, const char *id,
                     stead__alarm_cb cb, void *u);
  /* Alarms with at <= until_ms, ordered by (at, cls, id, name), strictly
   * after `after` (NULL: from the start), at most `limit` (0: no limit). */
  int (*alarms_scan)(stead__backend *b, const stead__alarm_cursor *after,
                     int64_t until_ms, size_t limit, stead__alarm_cb cb, void *u);
  /* Every key of namespace `ns` of every object, ordered by (cls, id, key),
   * from the last committed state. For rare whole-store reads such as
   * re-registering bus subscriptions (STEAD__NS_SUB) at open; it need not
   * be fast for big namespaces. The callback must not call the backend
   * (a backend may hold a lock or a read transaction while it runs).
   * Returns 0, the callback's negative code, or the backend's error. */
  int (*scan_ns)(stead__backend *b, uint8_t ns, stead__ns_cb cb, void *u);
  void (*close)(stead__backend *b);
} stead__backend_vt;

struct stead__backend {
  const stead__backend_vt *vt;
};

/* Durability of a commit. */
typedef enum stead__durability {
  STEAD__DURABLE_FULL = 0,   /* synced before the commit reports success */
  STEAD__DURABLE_NORMAL = 1, /* survives a process crash; power loss may lose
                                the last commits */
} stead__durability;

typedef struct stead__backend_opts {
  stead__durability durability;
  int busy_timeout_ms; /* sqlite: wait this long on a locked file; default 5000 */
} stead__backend_opts;

/* Opens a backend from a spec string:
 *   "memory"
 *   "sqlite:PATH[?durability=full|normal&busy_timeout_ms=N]"
 *   "postgres://..." or "postgresql://..." (options: storage/pg_backend.h)
 * The parent directory of PATH is created if missing. Errors: EINVAL (bad
 * spec or option), ENOTSUP (unknown backend), ESTORAGE / EIO (cannot open),
 * ECORRUPT (not a database, or a damaged one), ENOMEM. */
int stead__backend_open(const char *spec, stead__backend **out);
int stead__mem_open(stead__backend **out);
/* Parses what follows "sqlite:" (no I/O): *path gets a malloc'd copy of
 * PATH (caller frees), *o the options with their defaults (durability
 * full, busy_timeout_ms 5000). Errors: EINVAL (no path, an option without
 * a value, an unknown option or a bad value; the message names it),
 * ENOMEM. On error *path is NULL. */
int stead__sqlite_spec_parse(const char *spec, char **path, stead__backend_opts *o);
int stead__sqlite_open(const char *path, const stead__backend_opts *o,
                       stead__backend **out);
/* Closes a backend; NULL allowed. The caller guarantees no call runs. */
void stead__backend_close(stead__backend *b);

#endif
