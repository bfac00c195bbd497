/*
 * stead.h -- durable objects for C.
 *
 * This header is the whole public API and its manual. Every function says
 * what it does, who owns each pointer that crosses it, which error codes it
 * returns, and from which threads it may be called.
 *
 * Conventions (they hold unless a function says otherwise):
 *   - Functions return 0 on success or a negative STEAD_E* code. The
 *     calling thread's last error message (stead_errmsg()) then says in
 *     words what was wrong.
 *   - Strings passed in are borrowed for the duration of the call only;
 *     stead copies what it keeps.
 *   - Memory that stead hands to the caller is released with the matching
 *     stead_*_free function (or stead_free for plain buffers).
 *   - Everything named stead__ or declared outside this header is internal.
 *
 * Sections:
 *   1. Errors and buffers
 *   2. Runtime: configuration, open, close
 *   3. Classes
 *   4. Calls from outside a turn
 *   5. Inside a turn: the context
 *   6. Lifecycle control and test helpers
 *   7. Metrics
 */
#ifndef STEAD_H
#define STEAD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STEAD_VERSION_MAJOR 0
#define STEAD_VERSION_MINOR 1
#define STEAD_VERSION_PATCH 0
#define STEAD_VERSION_STRING "0.1.0"

/* ======================================================================
 * 1. Errors and buffers
 * ====================================================================== */

/* Error codes. All are negative; 0 is success. Codes marked "retryable"
 * describe a transient condition: the same request may succeed later. */
#define STEAD_OK 0
#define STEAD_EINVAL -1     /* bad argument: NULL, empty, malformed, bad UTF-8 */
#define STEAD_ENOMEM -2     /* out of memory */
#define STEAD_ENOCLASS -3   /* no class registered under that name */
#define STEAD_ENOMETHOD -4  /* the class has no such method */
#define STEAD_ETOOBIG -5    /* id, key, value, payload or write set over its limit */
#define STEAD_ETIMEDOUT -6  /* the deadline passed before the reply (retryable) */
#define STEAD_ECLOSED -7    /* the runtime is closing or closed */
#define STEAD_EOVERLOAD -8  /* a bounded queue is full (retryable) */
#define STEAD_EHANDLER -9   /* the handler failed; the message says why */
#define STEAD_EEXIST -10    /* already exists (e.g. a class registered twice) */
#define STEAD_ESTORAGE -11  /* the storage backend failed (retryable) */
#define STEAD_ECORRUPT -12  /* a stored record cannot be decoded */
#define STEAD_ENOTOWNER -13 /* this node does not own the shard (retryable) */
#define STEAD_ECONFLICT -14 /* a version check failed */
#define STEAD_ENOTFOUND -15 /* no such key, alarm, listener or object */
#define STEAD_EMISUSE -16   /* called from a context where it is not allowed */
#define STEAD_EPROTO -17    /* malformed message on the wire */
#define STEAD_EUNKNOWN -18  /* outcome unknown: it may or may not have happened */
#define STEAD_ENOTSUP -19   /* not supported by this configuration */
#define STEAD_EREJECTED -20 /* refused by the object (e.g. a connection) */
#define STEAD_EIO -21       /* an operating-system call failed */
#define STEAD_ECANCELED -22 /* canceled before it ran */

/* The code's symbolic name without the STEAD_ prefix ("ETIMEDOUT"), or
 * "EUNKNOWNCODE" for a code stead does not define. Static storage. */
const char *stead_errname(int code);

/* A one-line English description of the code. Static storage. */
const char *stead_strerror(int code);

/* The calling thread's last error message: set by every stead function that
 * fails, describing the failure in words ("id is 1500 bytes; the limit is
 * 1024"). Valid until the calling thread's next stead call. Never NULL. */
const char *stead_errmsg(void);

/* 1 if the code describes a transient condition worth retrying
 * (ETIMEDOUT, EOVERLOAD, ESTORAGE, ENOTOWNER), else 0. */
int stead_retryable(int code);

/* Releases memory that stead allocated for the caller (reply buffers).
 * NULL is allowed. Thread-safe. */
void stead_free(void *p);

/* ======================================================================
 * 2. Runtime
 * ====================================================================== */

typedef struct stead_rt stead_rt;
typedef struct stead_ctx stead_ctx;

/* Log levels, most severe first. */
typedef enum stead_log_level {
  STEAD_LOG_ERROR = 0,
  STEAD_LOG_WARN = 1,
  STEAD_LOG_INFO = 2,
  STEAD_LOG_DEBUG = 3
} stead_log_level;

/* A log sink. `line` is one line without a trailing newline, valid only
 * during the call. Called from any stead thread, possibly concurrently. */
typedef void (*stead_log_fn)(stead_log_level level, const char *line, void *udata);

/* A clock in milliseconds since the Unix epoch. Called from any thread. */
typedef int64_t (*stead_clock_fn)(void *udata);

/* Runtime configuration. Always start from stead_config_init(), which
 * fills the documented defaults, then change what you need. The struct is
 * read during stead_open and not kept; strings are copied. */
typedef struct stead_config {
  /* Worker threads that run turns. Default 0: one per online CPU. */
  int workers;
  /* Largest call payload and reply, bytes. Default 4 MiB. */
  size_t max_payload;
  /* Messages queued for one object before senders get STEAD_EOVERLOAD.
   * Default 10,000. */
  size_t mailbox_limit;
  /* Activations kept in memory; past it the least recently used idle ones
   * are deactivated. Default 0: no limit. */
  size_t max_activations;
  /* Turns one object runs before yielding its worker to others, so a busy
   * object cannot starve the rest. Default 32. */
  int turns_per_slice;
  /* A turn longer than this is logged at WARN and counted as slow. C cannot
   * preempt a running turn, so this only reports. Default 1000 ms. */
  int slow_turn_ms;
  /* Deadline of calls that do not give one. Default 30,000 ms. */
  int default_timeout_ms;
  /* Storage backend: "memory" (default) keeps data in this process only. */
  const char *storage;
  /* Log sink and the most verbose level passed to it. Default: no sink. */
  stead_log_fn log;
  void *log_udata;
  stead_log_level log_level;
  /* Wall clock for alarms and timestamps. Default NULL: the system clock.
   * Tests inject their own (see stead_test_clock). */
  stead_clock_fn clock;
  void *clock_udata;
} stead_config;

/* Fills `cfg` with the defaults above. */
void stead_config_init(stead_config *cfg);

/* Opens a runtime and starts its workers. On success *out owns the runtime
 * until stead_close. Errors: EINVAL (bad config; the message names the
 * field), ENOMEM, ENOTSUP (unknown storage), ESTORAGE, EIO (threads). */
int stead_open(const stead_config *cfg, stead_rt **out);

/* Closes the runtime: new calls from outside fail with STEAD_ECLOSED, the
 * turns already queued or running are drained (their calls complete, their
 * commits flush), every activation is deactivated (on_deactivate runs),
 * every outstanding async completion fires exactly once (with ECLOSED if it
 * could not run), then all memory is freed. Blocks until done. Must not be
 * called from a stead thread (a handler or callback): returns EMISUSE.
 * NULL is allowed (returns 0). */
int stead_close(stead_rt *rt);

/* ======================================================================
 * 3. Classes
 * ====================================================================== */

/* A method handler: runs as one turn of the object. `arg` and `len` are the
 * call's payload, owned by the runtime and valid until the handler returns.
 * Return 0 to commit the turn (the reply set with stead_reply, or an empty
 * reply); return non-zero (or call stead_fail) to fail it: the turn's
 * effects are discarded and the caller gets STEAD_EHANDLER with the
 * message. */
typedef int (*stead_method_fn)(stead_ctx *ctx, const void *arg, size_t len);

/* One entry of a class's method table. */
typedef struct stead_method {
  const char *name;
  stead_method_fn fn;
} stead_method;

/* Lifecycle hooks. on_activate runs before the first turn of an activation;
 * returning non-zero fails the message that woke the object and leaves no
 * activation. on_deactivate runs as the last turn before the activation
 * leaves memory; its return value is logged, not propagated. */
typedef int (*stead_lifecycle_fn)(stead_ctx *ctx);

/* A class. The struct and everything it points to (name, methods) must stay
 * valid and unchanged until the runtime is closed; a static definition is
 * the usual way. */
typedef struct stead_class {
  const char *name;              /* unique, 1..128 bytes of [A-Za-z0-9_.-] */
  const stead_method *methods;   /* terminated by an entry whose name is NULL */
  stead_lifecycle_fn on_activate;   /* optional */
  stead_lifecycle_fn on_deactivate; /* optional */
  /* Bytes of per-activation memory, zeroed at activation and handed to
   * every turn through stead_state(). Lost when the object leaves memory:
   * durable data belongs in storage. 0 for none. */
  size_t state_size;
  /* Drop the activation's caches after this long idle. 0: never. */
  int64_t hibernate_after_ms;
  /* Deactivate after this long idle. 0: never (only LRU or close). */
  int64_t shutdown_after_ms;
} stead_class;

/* Registers a class. Errors: EINVAL (bad name, NULL methods, duplicate or
 * bad method name), EEXIST (a class of that name is registered), ECLOSED.
 * Thread-safe; usually called right after stead_open. */
int stead_register(stead_rt *rt, const stead_class *cls);

/* ======================================================================
 * 4. Calls from outside a turn
 *
 * Objects are named by class and id. An id is any valid UTF-8 string of
 * 1..1024 bytes. A call activates the object if it is not in memory.
 * Messages from one sender thread to one object are handled in the order
 * they were sent.
 * ====================================================================== */

/* The outcome of a call, handed to completion callbacks. Every pointer in
 * it is owned by the runtime and valid only during the callback: copy what
 * you keep. */
typedef struct stead_result {
  int status;          /* 0 or a STEAD_E* code */
  const void *data;    /* the reply (status 0); may be NULL when len is 0 */
  size_t len;
  const char *message; /* why it failed (status != 0), else NULL */
} stead_result;

typedef void (*stead_call_cb)(const stead_result *res, void *udata);

/* Calls a method and blocks until the reply or the deadline.
 * timeout_ms <= 0 uses the configured default. On success *reply (may be
 * NULL if the caller does not want it) receives a buffer the caller frees
 * with stead_free, and *reply_len its length; the buffer is NUL-terminated
 * one past len for convenience. Errors: EINVAL, ETOOBIG, ENOCLASS,
 * ENOMETHOD, EOVERLOAD, ETIMEDOUT (the turn may still run later), ECLOSED,
 * EHANDLER (message from the handler), ESTORAGE, ENOMEM, and EMISUSE when
 * called from a stead worker (inside a handler use stead_ctx_call). */
int stead_call(stead_rt *rt, const char *cls, const char *id, const char *method,
               const void *arg, size_t len, int timeout_ms, void **reply,
               size_t *reply_len);

/* Starts a call and returns at once. If it returns 0, `cb` is called
 * exactly once -- with the reply, a failure, ETIMEDOUT at the deadline, or
 * ECLOSED when the runtime closes first -- on a stead thread (a worker or
 * the timer thread), never inside this function. If it returns an error,
 * `cb` is never called. The callback must not block; it may start other
 * calls. Errors returned: EINVAL, ETOOBIG, ENOCLASS, ENOMETHOD, EOVERLOAD,
 * ECLOSED, ENOMEM. Thread-safe. */
int stead_call_async(stead_rt *rt, const char *cls, const char *id,
                     const char *method, const void *arg, size_t len,
                     int timeout_ms, stead_call_cb cb, void *udata);

/* Sends a one-way message: queued and forgotten. A failure of the turn is
 * counted and logged, not reported. Errors: as stead_call_async. */
int stead_send(stead_rt *rt, const char *cls, const char *id, const char *method,
               const void *arg, size_t len);

/* ======================================================================
 * 5. Inside a turn
 *
 * A stead_ctx is valid only during the handler (or hook, or continuation)
 * it was passed to, on that thread. Nothing a turn sends leaves the object
 * until the turn has finished successfully (and, with durable storage, its
 * writes are committed): a failed turn sends nothing.
 * ====================================================================== */

/* The object's class name and id. Owned by the runtime; valid during the
 * turn. */
const char *stead_class_name(stead_ctx *ctx);
const char *stead_object_id(stead_ctx *ctx);

/* The activation's state_size bytes of memory (NULL if state_size is 0). */
void *stead_state(stead_ctx *ctx);

/* The current time from the runtime's clock, ms since the epoch. */
int64_t stead_now_ms(stead_ctx *ctx);

/* Sets the reply of the current call (copied). Calling it again replaces
 * the reply. For one-way messages and continuations it is ignored.
 * Errors: ETOOBIG, ENOMEM, EMISUSE (no call to reply to in this turn). */
int stead_reply(stead_ctx *ctx, const void *data, size_t len);

/* Fails the current turn with a printf-style message (at most 1 KiB kept):
 * the turn's effects are discarded and the caller receives STEAD_EHANDLER
 * with the message. The handler should return non-zero afterwards; if it
 * returns 0 the turn fails anyway. Returns STEAD_EHANDLER for convenience:
 * `return stead_fail(ctx, "...")`. */
int stead_fail(stead_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A one-way message to another object (or to itself), released when the
 * turn commits. Errors (immediate): EINVAL, ETOOBIG, ENOMEM. Delivery
 * errors (ENOCLASS, EOVERLOAD...) after the turn are counted and logged. */
int stead_ctx_send(stead_ctx *ctx, const char *cls, const char *id,
                   const char *method, const void *arg, size_t len);

/* The continuation of a call made inside a turn: runs as a later turn of
 * the calling object (never on the callee's turn, never blocking a worker),
 * with the outcome in `res` (valid during the continuation). Its return
 * value and stead_fail behave as in a method handler, but there is no
 * caller to receive them: a failure is counted and logged. */
typedef int (*stead_then_fn)(stead_ctx *ctx, const stead_result *res, void *udata);

/* Calls another object from inside a turn. The request leaves when this
 * turn commits; the reply (or failure, or ETIMEDOUT at the deadline) runs
 * `then` as a turn of this object. A->B->A call cycles complete because no
 * turn waits. The object stays in memory until all its continuations ran.
 * `udata` is passed through untouched. Errors (immediate): EINVAL, ETOOBIG,
 * ENOMEM; if the turn fails, `then` never runs. */
int stead_ctx_call(stead_ctx *ctx, const char *cls, const char *id,
                   const char *method, const void *arg, size_t len,
                   int timeout_ms, stead_then_fn then, void *udata);

/* A reply promised for later. Owned by the runtime. */
typedef struct stead_deferred stead_deferred;

/* Takes the reply of the current call out of this turn, so that a later
 * turn of the same object (typically a continuation) answers it with
 * stead_deferred_reply or stead_deferred_fail. Until then the object stays
 * in memory; if the runtime closes first the caller gets ECLOSED, and the
 * caller's deadline still applies. Returns NULL (EMISUSE) when the turn has
 * no call to answer or already deferred it. */
stead_deferred *stead_defer_reply(stead_ctx *ctx);

/* Answers a deferred call from a turn of the same object; the answer is
 * released when that turn commits (if the turn fails, the deferred call
 * stays open). `d` must not be used again. Errors: EINVAL (NULL or
 * foreign), ETOOBIG, ENOMEM. */
int stead_deferred_reply(stead_ctx *ctx, stead_deferred *d, const void *data,
                         size_t len);
int stead_deferred_fail(stead_ctx *ctx, stead_deferred *d, int code,
                        const char *message);

/* ======================================================================
 * 6. Lifecycle control and test helpers
 * ====================================================================== */

/* Deactivates the object now if it is in memory: queues a deactivation
 * behind its pending messages, waits for it (on_deactivate runs, commits
 * flush) and returns. 0 also when the object was not active. A message
 * arriving meanwhile reactivates it. EMISUSE from a stead thread. */
int stead_deactivate(stead_rt *rt, const char *cls, const char *id);

/* 1 if the object has an activation in memory, 0 if not; negative on bad
 * arguments. A snapshot: it may change right after. Thread-safe. */
int stead_is_active(stead_rt *rt, const char *cls, const char *id);

/* Number of activations in memory. */
size_t stead_active_count(stead_rt *rt);

/* Blocks until no message is queued and no turn or commit is running.
 * Timers and future alarms do not count. For tests: no sleeps needed.
 * EMISUSE from a stead thread. */
int stead_run_until_idle(stead_rt *rt);

/* Runs the idle sweep now as if `now_ms` were the time: objects idle past
 * hibernate_after_ms hibernate, past shutdown_after_ms deactivate.
 * The runtime also does this on its own about every 100 ms of real time.
 * Returns the number of activations deactivated. */
int stead_sweep(stead_rt *rt, int64_t now_ms);

/* ======================================================================
 * 7. Metrics
 * ====================================================================== */

/* Writes every metric of the runtime in Prometheus text exposition format
 * 0.0.4 into a buffer the caller frees with stead_free. Thread-safe.
 * Errors: ENOMEM. */
int stead_metrics_text(stead_rt *rt, char **out, size_t *out_len);

/* ======================================================================
 * Cluster: shard math and static host lists
 *
 * Pure functions: every node computes the same answers from the same
 * inputs, with no coordinator. All are reentrant and thread-safe.
 *
 * Hashing is BLAKE2b (libsodium). The seed is a string; NULL or "" means
 * unkeyed, otherwise the BLAKE2b key is BLAKE2b-256(seed). Then
 *   shard  = LE64(BLAKE2b-64(class "/" id)) mod nshards
 *   weight = LE64(BLAKE2b-64(node 0x00 LE32(shard)))
 * and a shard belongs to the live node of highest weight (rendezvous / HRW
 * hashing): adding a node moves about 1/n of the shards, all to the new
 * node; removing a node moves only the shards it owned. Every node of a
 * deployment must use the same seed and shard count. docs/cluster.md has
 * fixed test vectors.
 * ====================================================================== */

/* Shard counts are 1..STEAD_MAX_SHARDS; the usual default is 1024. */
#define STEAD_DEFAULT_SHARDS 1024
#define STEAD_MAX_SHARDS 65536
/* Node lists (live sets, static host lists) hold at most this many ids. */
#define STEAD_MAX_HOSTS 4096

/* The shard (0..nshards-1) of object `id` of class `cls`. `cls` is a class
 * name (1..128 bytes of [A-Za-z0-9_.-]), `id` valid UTF-8 of 1..1024 bytes.
 * Returns the shard, or EINVAL (bad name, id or nshards), ETOOBIG (id or
 * name too long). */
int stead_shard_for_key(const char *cls, const char *id, uint32_t nshards,
                        const char *seed);

/* The owner of `shard` among `nodes[0..n-1]`: returns its index into
 * `nodes`. Node ids are names (1..128 bytes of [A-Za-z0-9_.-]); the order
 * of the list does not change the answer; a duplicated id is harmless.
 * Errors: EINVAL (empty list, NULL or bad id), ETOOBIG (n over
 * STEAD_MAX_HOSTS). */
int stead_shard_owner(uint32_t shard, const char *const *nodes, size_t n,
                      const char *seed);

/* The shards (ascending) that `node` owns among `nodes[0..n-1]` when the
 * deployment has `nshards` shards. Writes at most `cap` shard numbers to
 * `out` (caller-owned; may be NULL when cap is 0) and returns how many the
 * node owns, which may exceed cap (call again with a bigger array; nshards
 * entries always suffice). A node absent from the list owns 0 shards.
 * Errors: as stead_shard_owner, and EINVAL for bad nshards or node. */
int stead_shards_for_node(const char *node, const char *const *nodes, size_t n,
                          uint32_t nshards, const char *seed, uint32_t *out,
                          size_t cap);

/* Expands a static host list: comma-separated items, each a host name that
 * may hold one decimal range {LO..HI} (LO <= HI, at most 9 digits each):
 * "host-{0..3}" gives host-0 .. host-3, "db{08..10}.x" gives db08, db09,
 * db10 (a leading zero in LO pads to LO's width), "a,b{1..2}" gives a, b1,
 * b2. No spaces. Each result must be a valid name (1..128 bytes of
 * [A-Za-z0-9_.-]), unique, and there are at most STEAD_MAX_HOSTS.
 * On success *out is a NULL-terminated array of *count strings in one
 * allocation, freed with stead_free(*out). On error *out is NULL and the
 * message says which item is wrong. Errors: EINVAL (empty list or item,
 * unbalanced braces, two ranges, bad bounds, LO > HI, bad or duplicate
 * name), ETOOBIG (too many hosts or too long a name), ENOMEM. */
int stead_hosts_expand(const char *spec, char ***out, size_t *count);

#ifdef __cplusplus
}
#endif
#endif /* STEAD_H */
