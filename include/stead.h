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

#define STEAD_VERSION_MAJOR  0
#define STEAD_VERSION_MINOR  1
#define STEAD_VERSION_PATCH  0
#define STEAD_VERSION_STRING "0.1.0"

/* ======================================================================
 * 1. Errors and buffers
 * ====================================================================== */

/* Error codes. All are negative; 0 is success. Codes marked "retryable"
 * describe a transient condition: the same request may succeed later. */
#define STEAD_OK        0
#define STEAD_EINVAL    -1  /* bad argument: NULL, empty, malformed, bad UTF-8 */
#define STEAD_ENOMEM    -2  /* out of memory */
#define STEAD_ENOCLASS  -3  /* no class registered under that name */
#define STEAD_ENOMETHOD -4  /* the class has no such method */
#define STEAD_ETOOBIG   -5  /* id, key, value, payload or write set over its limit */
#define STEAD_ETIMEDOUT -6  /* the deadline passed before the reply (retryable) */
#define STEAD_ECLOSED   -7  /* the runtime is closing or closed */
#define STEAD_EOVERLOAD -8  /* a bounded queue is full (retryable) */
#define STEAD_EHANDLER  -9  /* the handler failed; the message says why */
#define STEAD_EEXIST    -10 /* already exists (e.g. a class registered twice) */
#define STEAD_ESTORAGE  -11 /* the storage backend failed (retryable) */
#define STEAD_ECORRUPT  -12 /* a stored record cannot be decoded */
#define STEAD_ENOTOWNER -13 /* this node does not own the shard (retryable) */
#define STEAD_ECONFLICT -14 /* a version check failed */
#define STEAD_ENOTFOUND -15 /* no such key, alarm, listener or object */
#define STEAD_EMISUSE   -16 /* called from a context where it is not allowed */
#define STEAD_EPROTO    -17 /* malformed message on the wire */
#define STEAD_EUNKNOWN  -18 /* outcome unknown: it may or may not have happened */
#define STEAD_ENOTSUP   -19 /* not supported by this configuration */
#define STEAD_EREJECTED -20 /* refused by the object (e.g. a connection) */
#define STEAD_EIO       -21 /* an operating-system call failed */
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
/* One end of a duplex connection to an object (see "Connections"). */
typedef struct stead_conn stead_conn;

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

#define STEAD_DURABILITY_FULL   0
#define STEAD_DURABILITY_NORMAL 1

/* A storage telemetry event (the Elixir library's storage events).
 * op: "load" (a read of one object), "save" (one object's write set in a
 * commit), "delete" (a write set that only removes). phase: "start",
 * "stop" or "error". Strings are static or valid during the callback. */
typedef struct stead_telemetry_event {
  const char *op;
  const char *phase;
  const char *cls, *id;
  int64_t duration_ns; /* 0 for start */
  int error;           /* the STEAD_E* code for "error", else 0 */
} stead_telemetry_event;

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
  /* Storage backend:
   *   "memory"          (default) data lives in this process only (tests);
   *   "sqlite:PATH"     one SQLite database file (WAL); its directory is
   *                     created. Options may follow: "sqlite:PATH?
   *                     durability=normal&busy_timeout_ms=N".
   * Opening a file that is not a stead database fails with ECORRUPT. */
  const char *storage;
  /* STEAD_DURABILITY_FULL (default): a turn's reply waits until its commit
   * is synced to disk. STEAD_DURABILITY_NORMAL: synced in the background;
   * a process crash loses nothing, a power loss can lose the last batches.
   * An option in the storage spec wins over this field. */
  int durability;
  /* Limits of storage inside a turn (0 = the default): key 2 KiB, value
   * 2 MiB, one turn's write set 16 MiB. Over them: STEAD_ETOOBIG. */
  size_t max_key, max_value, max_write_set;
  /* Group commit: most write sets per backend transaction (default 1024)
   * and how long a batch may wait to fill under load (default 1000 us). */
  int commit_max_batch;
  int commit_max_delay_us;
  /* Alarms: how far ahead the scheduler keeps alarms in memory (default
   * 60,000 ms; later ones stay on disk), how many fired alarm turns may be
   * in flight at once (default 1,000: bounds the burst after a restart),
   * and the retry policy of failing alarm turns: the n-th retry waits
   * base * factor^n ms; after max_attempts tries in all the alarm is
   * dead-lettered. Defaults 1,000 ms, 2.0, 6. 0 means the default. */
  int64_t alarm_window_ms;
  size_t alarm_max_inflight;
  int64_t alarm_retry_base_ms;
  double alarm_retry_factor;
  uint32_t alarm_max_attempts;
  /* 1: no scheduler thread; alarms fire only inside stead_alarms_fire_due,
   * so tests with an injected clock are deterministic. Default 0. */
  int alarm_manual;
  /* Storage telemetry (load/save/delete start/stop/error with durations).
   * Called on worker and committer threads; must be quick. Default none. */
  void (*telemetry)(const struct stead_telemetry_event *ev, void *udata);
  void *telemetry_udata;
  /* Log sink and the most verbose level passed to it. Default: no sink. */
  stead_log_fn log;
  void *log_udata;
  stead_log_level log_level;
  /* Wall clock for alarms and timestamps. Default NULL: the system clock.
   * Tests inject their own (see stead_test_clock). */
  stead_clock_fn clock;
  void *clock_udata;
  /* Cluster mode (docs/cluster.md). cluster_nats NULL (default): one node
   * with the in-process transport. Set to a "nats://host:port" URL: this
   * runtime joins deployment `cluster_deployment` as node `cluster_node_id`;
   * `storage` must then be a postgres:// spec (the shared store that holds
   * the shard leases and fences commits). Every object of the deployment
   * then lives on exactly one node; calls, sends and events to objects
   * owned elsewhere are forwarded to their owner transparently. */
  const char *cluster_nats;
  const char *cluster_node_id;    /* unique in the deployment; required */
  const char *cluster_deployment; /* [A-Za-z0-9_-]{1,64}; default "stead" */
  uint32_t cluster_shards;        /* 1..STEAD_MAX_SHARDS; default 1024 */
  const char *cluster_seed;       /* shard hashing seed; default none */
  /* A fixed member list ("host-{0..2}", stead_hosts_expand) instead of
   * NATS heartbeats; NULL (default) = heartbeats. */
  const char *cluster_hosts;
  int cluster_lease_ttl_ms; /* shard lease tenure; default 10,000 (>= 100) */
  int cluster_heartbeat_ms; /* default 1,000; a member expires after 3 */
} stead_config;

/* Fills `cfg` with the defaults above. */
void stead_config_init(stead_config *cfg);

/* Opens a runtime and starts its workers. On success *out owns the runtime
 * until stead_close. Errors: EINVAL (bad config; the message names the
 * field), ENOMEM, ENOTSUP (unknown storage, or a database written by a
 * newer stead), ESTORAGE (cannot open or create the database), ECORRUPT
 * (the file is not a stead database or is damaged), EIO (threads). */
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
  const char *name;                 /* unique, 1..128 bytes of [A-Za-z0-9_.-] */
  const stead_method *methods;      /* terminated by an entry whose name is NULL */
  stead_lifecycle_fn on_activate;   /* optional */
  stead_lifecycle_fn on_deactivate; /* optional */
  /* Bytes of per-activation memory, zeroed at activation and handed to
   * every turn through stead_state(). Lost when the object leaves memory:
   * durable data belongs in storage or in a state struct. 0 for none. */
  size_t state_size;
  /* Optional durable state struct (see "State structs"): loaded at
   * activation, handed to turns by stead_state(), saved in the turn's
   * commit when it changed, rolled back when the turn fails. When set,
   * state_size must be 0 or schema->size. */
  const struct stead_schema *state_schema;
  /* Optional: a durable alarm of the object is due (see "Alarms"). Runs
   * as a turn; the alarm is deleted in this turn's commit unless the
   * handler sets the same name again. Returning non-zero (or stead_fail)
   * keeps the alarm and retries it later with backoff. `name` and `meta`
   * are valid during the call; `attempt` counts earlier failed tries. */
  int (*on_alarm)(stead_ctx *ctx, const char *name, const void *meta, size_t meta_len,
                  uint32_t attempt);
  /* Optional: an event from the bus matching one of the object's
   * subscriptions (stead_subscribe), run as a turn. `topic` and `payload`
   * are valid during the call. */
  int (*on_event)(stead_ctx *ctx, const char *topic, const void *payload, size_t len);
  /* Drop the activation's caches after this long idle. 0: never. */
  int64_t hibernate_after_ms;
  /* Deactivate after this long idle. 0: never (only LRU or close). */
  int64_t shutdown_after_ms;
  /* Connections (see "Connections"). All optional; a class without
   * on_connect rejects every connect with STEAD_ENOTSUP. Each runs as a
   * turn of the object, activating it if needed. `conn` is the object's
   * end of the connection, valid during the turn.
   *   on_connect: accept (return 0) or reject (stead_conn_reject, or any
   *     failure: its message is the reason the client receives). `meta`
   *     is the connect's bytes (valid during the call).
   *   on_conn_message: one message from the client, in the order sent.
   *     A failure is logged and counted; the message is not redelivered.
   *   on_conn_close: the client closed the connection, the runtime did
   *     (slow client, shutdown), or the connect timed out after the
   *     object accepted it -- not when the object closed it itself. Runs
   *     once per accepted connection at most. `reason` is valid during
   *     the call. */
  int (*on_connect)(stead_ctx *ctx, stead_conn *conn, const void *meta, size_t len);
  int (*on_conn_message)(stead_ctx *ctx, stead_conn *conn, const void *data, size_t len,
                         unsigned flags);
  int (*on_conn_close)(stead_ctx *ctx, stead_conn *conn, int code, const char *reason);
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
  int status;       /* 0 or a STEAD_E* code */
  const void *data; /* the reply (status 0); may be NULL when len is 0 */
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
int stead_call_async(stead_rt *rt, const char *cls, const char *id, const char *method,
                     const void *arg, size_t len, int timeout_ms, stead_call_cb cb,
                     void *udata);

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

/* The name of the method this turn runs; NULL in lifecycle hooks,
 * continuations and events. Owned by the class; valid during the turn. */
const char *stead_method_name(stead_ctx *ctx);

/* The activation's state struct (state_schema) or its state_size bytes of
 * memory; NULL if the class has neither. */
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
 * turn commits. The target class and method are checked now. Errors
 * (immediate): EINVAL, ETOOBIG, ENOCLASS, ENOMETHOD, ENOMEM. If the target's
 * mailbox is full when the turn commits, the message is dropped, counted
 * (stead_sends_dropped_total) and logged at WARN: use stead_ctx_call when
 * the sender must know. */
int stead_ctx_send(stead_ctx *ctx, const char *cls, const char *id, const char *method,
                   const void *arg, size_t len);

/* The continuation of a call made inside a turn: runs as a later turn of
 * the calling object (never on the callee's turn, never blocking a worker),
 * with the outcome in `res` (valid during the continuation). Its return
 * value and stead_fail behave as in a method handler, but there is no
 * caller to receive them: a failure is counted and logged. */
typedef int (*stead_then_fn)(stead_ctx *ctx, const stead_result *res, void *udata);

/* Calls another object from inside a turn. The request leaves when this
 * turn commits; the reply (or failure, or ETIMEDOUT at the deadline, or
 * EOVERLOAD if the target's mailbox is full) runs `then` as a turn of this
 * object, exactly once. A->B->A call cycles complete because no turn
 * waits. The object stays in memory until all its continuations ran.
 * timeout_ms <= 0 uses the configured default. `udata` is passed through
 * untouched. Errors (immediate): EINVAL, ETOOBIG, ENOCLASS, ENOMETHOD,
 * ENOMEM; if the turn fails, `then` never runs. */
int stead_ctx_call(stead_ctx *ctx, const char *cls, const char *id, const char *method,
                   const void *arg, size_t len, int timeout_ms, stead_then_fn then,
                   void *udata);

/* A reply promised for later. Owned by the runtime. */
typedef struct stead_deferred stead_deferred;

/* Takes the reply of the current call out of this turn, so that a later
 * turn of the same object (typically a continuation) answers it with
 * stead_deferred_reply or stead_deferred_fail. Until then the object stays
 * in memory; if the runtime closes first the caller gets ECLOSED, and the
 * caller's deadline still applies. If this turn fails, the deferral is
 * undone: the caller gets the turn's EHANDLER and the returned pointer is
 * invalid. Returns NULL (EMISUSE) when the turn has no call to answer (a
 * one-way message, a continuation) or already deferred it. */
stead_deferred *stead_defer_reply(stead_ctx *ctx);

/* Answers a deferred call from a turn of the same object; the answer is
 * released when that turn commits (if the turn fails, the deferred call
 * stays open). `d` must not be used again. Errors: EINVAL (NULL or
 * foreign), ETOOBIG, ENOMEM. */
int stead_deferred_reply(stead_ctx *ctx, stead_deferred *d, const void *data, size_t len);
int stead_deferred_fail(stead_ctx *ctx, stead_deferred *d, int code, const char *message);

/* ======================================================================
 * 6. Lifecycle control and test helpers
 * ====================================================================== */

/* Deactivates the object now if it is in memory: queues a deactivation
 * behind its pending messages, waits for it (on_deactivate runs, commits
 * flush) and returns. 0 also when the object was not active. A message
 * arriving meanwhile reactivates it. ECANCELED (and the object stays) when
 * it waits for continuations or owes deferred replies. EMISUSE from a
 * stead thread; EINVAL, ENOCLASS for bad names; ECLOSED. */
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
 * Alarms
 *
 * An object sets any number of named alarms, each with a due time (ms
 * since the epoch, by the runtime's clock) and opaque meta bytes. Alarm
 * changes are part of the turn's commit: a failed turn sets or cancels
 * nothing. When an alarm is due, the class's on_alarm hook runs as a turn
 * of the object (activating it if needed); one object's alarms fire in
 * (time, name) order. The alarm is deleted in that turn's commit; a
 * handler may set the same name again (recurring alarms). Delivery is at
 * least once: if the turn fails or the process dies, the alarm fires again,
 * after base * factor^attempt ms for failures (stead_config.alarm_retry_*);
 * after the last attempt it is deleted, counted, and an event is emitted on
 * the runtime's bus under STEAD_ALARM_DEAD_LETTER_TOPIC with the JSON
 * payload {"class":..,"id":..,"alarm":..,"attempts":N}. Alarms due in the
 * past fire at once; far-future ones stay on disk until their window.
 * See docs/alarms.md.
 * ====================================================================== */

#define STEAD_MAX_ALARM_META          (64 * 1024)
#define STEAD_ALARM_DEAD_LETTER_TOPIC "stead.alarm.dead"

/* One alarm, as listed. */
typedef struct stead_alarm_info {
  const char *name;
  int64_t at_ms;
  uint32_t attempt; /* failed tries so far */
  const void *meta;
  size_t meta_len;
} stead_alarm_info;

/* Sets (or replaces: upsert by name) an alarm of this turn's object.
 * name: 1..128 bytes of UTF-8; meta: up to 64 KiB (copied; NULL with 0).
 * Takes effect when the turn commits. Errors: EINVAL, ETOOBIG, ENOMEM,
 * EMISUSE (outside a turn). */
int stead_alarm_set(stead_ctx *ctx, const char *name, int64_t at_ms, const void *meta,
                    size_t meta_len);

/* Cancels one alarm (no error if there is none) or all of the object's
 * alarms, when the turn commits. Errors: EINVAL, EMISUSE. */
int stead_alarm_cancel(stead_ctx *ctx, const char *name);
int stead_alarm_cancel_all(stead_ctx *ctx);

/* Lists the object's alarms as this turn sees them (its own changes
 * included), in (time, name) order. On 0, *out is an array of *n entries
 * in one allocation freed with stead_free (NULL when *n is 0); names and
 * metas point inside it. Errors: EINVAL, ESTORAGE, ENOMEM, EMISUSE. */
int stead_alarm_list(stead_ctx *ctx, stead_alarm_info **out, size_t *n);

/* From outside a turn: sets (upsert) or cancels an alarm of (cls, id). It
 * runs as a turn of the object (activating it if needed), ordered with its
 * other messages, and returns once that turn committed. Arguments and
 * limits as stead_alarm_set. Errors: those of stead_alarm_set, plus
 * ENOCLASS, EOVERLOAD, ETIMEDOUT, ESTORAGE, ECLOSED, and EMISUSE from a
 * stead thread (inside a turn, use stead_alarm_set). Thread-safe. */
int stead_alarm_set_for(stead_rt *rt, const char *cls, const char *id, const char *name,
                        int64_t at_ms, const void *meta, size_t meta_len);
int stead_alarm_cancel_for(stead_rt *rt, const char *cls, const char *id,
                           const char *name);

/* From outside a turn: the object's committed alarms in (time, name)
 * order, as stead_alarm_list returns them (a snapshot). Thread-safe.
 * Errors: EINVAL, ETOOBIG, ESTORAGE, ENOMEM. */
int stead_alarms_pending(stead_rt *rt, const char *cls, const char *id,
                         stead_alarm_info **out, size_t *n);

/* Test helper: fires every alarm due now by the runtime's clock (inject
 * one with stead_config.clock and move it), waits until their turns and
 * commits finished, and repeats while that made more alarms due. Returns
 * how many alarm turns it fired, or a negative error. With alarm_manual
 * set, this is the only way alarms fire, so the count is exact; otherwise
 * the scheduler thread may fire some first. Not from a stead thread
 * (EMISUSE). No sleeps needed in tests. */
int stead_alarms_fire_due(stead_rt *rt);

/* ======================================================================
 * Timers (in memory)
 *
 * Beside durable alarms, an activation can run cheap timers: `fn` runs as a
 * turn of the object after delay_ms (stead_timer_after) or every period_ms
 * (stead_timer_every). A timer starts when the turn that created it
 * commits (a failed turn starts none), never overlaps the object's other
 * turns, and dies with the activation: when the object is deactivated
 * (idle, LRU, close) its timers stop and are not restored. Ticks count as
 * activity, so an object with a periodic timer is not deactivated for
 * being idle. A tick that meets a full mailbox is lost (counted in
 * stead_timer_ticks_dropped_total); a periodic timer keeps its period.
 * Use alarms for anything that must happen; use timers for work that only
 * makes sense while the object is in memory (flushing a buffer, polling).
 * With stead_config.alarm_manual set, timers fire only in
 * stead_timers_fire_due, by the runtime's (injectable) clock.
 * ====================================================================== */

#define STEAD_MAX_TIMER_MS ((int64_t)366 * 24 * 3600 * 1000)

/* A timer callback: runs as a turn, with the ctx of that turn. Its return
 * value and stead_fail work as in a handler (a failed tick is logged; a
 * periodic timer keeps running). */
typedef int (*stead_timer_fn)(stead_ctx *ctx, void *udata);

/* Starts a one-shot or periodic timer on this turn's object. `udata` is
 * passed through untouched (the caller owns it; it must stay valid while
 * the timer can fire: typically it points into stead_state()). On 0, *id
 * (may be NULL) receives the timer's id for stead_timer_cancel. Errors:
 * EINVAL (NULL fn, delay or period out of 0..STEAD_MAX_TIMER_MS, period
 * 0 for stead_timer_every), ENOMEM, EMISUSE (outside a turn). */
int stead_timer_after(stead_ctx *ctx, int64_t delay_ms, stead_timer_fn fn, void *udata,
                      uint64_t *id);
int stead_timer_every(stead_ctx *ctx, int64_t period_ms, stead_timer_fn fn, void *udata,
                      uint64_t *id);

/* Stops a timer of this turn's object at once (a tick already queued does
 * not run). Errors: ENOTFOUND, EMISUSE. */
int stead_timer_cancel(stead_ctx *ctx, uint64_t id);

/* Test helper (alarm_manual only, else EMISUSE): runs every timer due by
 * the runtime's clock, waits for the turns, repeats while more fell due.
 * Returns the number of ticks fired. Not from a stead thread. */
int stead_timers_fire_due(stead_rt *rt);

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
#define STEAD_MAX_SHARDS     65536
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
                          uint32_t nshards, const char *seed, uint32_t *out, size_t cap);

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

/* One shard this node holds the lease of. */
typedef struct stead_cluster_shard {
  uint32_t shard;
  uint64_t epoch;        /* the lease tenure; every commit carries it */
  int draining;          /* being handed over: no new turns start */
  int64_t lease_left_ms; /* by this node's conservative local bound */
} stead_cluster_shard;

/* A snapshot of a cluster node (clstr-go's GetNodeInfo). */
typedef struct stead_cluster_status {
  const char *node_id;
  const char *deployment;
  uint32_t nshards;
  stead_cluster_shard *owned; /* ascending shard */
  size_t nowned;
  const char *const *members; /* the live member set, sorted */
  size_t nmembers;
  /* Counters since the node joined: shard leases taken, released after a
   * drain, lost (expired or taken over), failed acquire attempts;
   * envelopes refused as malformed, as expired, as "not owner"; calls
   * forwarded to another node, and retries of them after "not owner". */
  uint64_t acquired, released, lost, acquire_failures;
  uint64_t malformed, expired, not_owner, calls, call_retries;
} stead_cluster_status;

/* The cluster status of `rt`: one allocation owned by the caller (every
 * pointer inside points into it), freed with stead_free. Errors: EINVAL
 * (NULL argument), ENOTSUP (rt is not in cluster mode), ENOMEM.
 * Thread-safe. */
int stead_cluster_status_get(stead_rt *rt, stead_cluster_status **out);

/* ======================================================================
 * Event bus
 *
 * An in-process publish/subscribe bus, usable on its own (no runtime
 * needed). Topics are dot-separated segments ("invoice.42.paid");
 * listeners subscribe with patterns where `*` matches exactly one segment
 * and `**` zero or more segments, anywhere ("**.completed", "invoice.**",
 * "a.**.z"; "a.**" also matches "a"). See docs/bus.md for the grammar.
 *
 * One event's listeners run one after another on one thread, ordered by
 * priority (higher first; equal priorities in subscription order) across
 * all the patterns that matched; a listener may abort the event so that
 * the rest do not run. Different events run concurrently on the bus's
 * bounded worker pool: there is no ordering between events unless the bus
 * has one worker.
 *
 * A listener reports failure by returning non-zero (best with
 * stead_event_fail, which records a message). C has no panics to recover
 * from: a listener must not crash the process or longjmp out of the bus;
 * the error return is the only way to report a problem. Errors go to the
 * configured error handler, which may swallow them; the rest are reported
 * to the emitter, and a failing listener does not stop the later ones
 * (only stead_event_abort does).
 * ====================================================================== */

typedef struct stead_bus stead_bus;
typedef struct stead_event stead_event;

/* Bytes of a buffer that holds any listener id, including its NUL. */
#define STEAD_BUS_ID_SIZE 64

/* Default limits (see stead_bus_config). The stead_topic_* helpers below
 * always use these defaults. */
#define STEAD_TOPIC_MAX_LEN      256
#define STEAD_TOPIC_MAX_SEGMENTS 32

/* Conventional priorities; any int is allowed. */
#define STEAD_PRIORITY_LOW    (-10)
#define STEAD_PRIORITY_NORMAL 0
#define STEAD_PRIORITY_HIGH   10

/* A listener. `ev` is valid only during the call. Return 0 for success;
 * non-zero is an error (a negative STEAD_E* code is kept as is, any other
 * value becomes STEAD_EHANDLER). Runs on a bus worker (stead_bus_emit) or
 * on the emitting thread (stead_bus_emit_sync), possibly concurrently with
 * itself for different events. It may call stead_bus_on, stead_bus_off and
 * stead_bus_emit*, but not stead_bus_free. */
typedef int (*stead_listener_fn)(stead_event *ev, void *udata);

/* The error handler: called on the listener's thread right after a
 * listener failed, before the next listener runs, with the listener's id,
 * its error code and message (valid during the call). Return 0 to swallow
 * the error (the emitter never sees it) or non-zero to report it to the
 * emitter. It may call stead_event_abort(ev). */
typedef int (*stead_bus_error_fn)(stead_event *ev, const char *listener_id, int code,
                                  const char *message, void *udata);

/* A listener id generator: writes a NUL-terminated id of 1..size-1 bytes
 * into `out` (size is STEAD_BUS_ID_SIZE) and returns 0, or returns a
 * negative STEAD_E* code. Ids must be unique among the bus's listeners (a
 * duplicate makes stead_bus_on fail with EEXIST). Called from the thread
 * that calls stead_bus_on, possibly concurrently, with no bus lock held. */
typedef int (*stead_bus_id_fn)(char *out, size_t size, void *udata);

/* Bus configuration. Start from stead_bus_config_init(); the struct is
 * read by stead_bus_new and not kept. */
typedef struct stead_bus_config {
  /* Worker threads that run emitted events. Default 0: one per online
   * CPU. At most 1024. */
  int workers;
  /* Events queued for the workers before stead_bus_emit answers
   * STEAD_EOVERLOAD (or waits, see wait_when_full). Default 1024. */
  size_t queue_capacity;
  /* 0 (default): a full queue makes stead_bus_emit return EOVERLOAD at
   * once. 1: stead_bus_emit waits for room -- except when called from a
   * listener or done callback of this bus, which gets EOVERLOAD rather
   * than risk waiting on itself. */
  int wait_when_full;
  /* Longest topic or pattern in bytes (default STEAD_TOPIC_MAX_LEN, at
   * most 4096) and most segments (default STEAD_TOPIC_MAX_SEGMENTS, at
   * most 128). Longer ones get STEAD_ETOOBIG. */
  size_t max_topic_len;
  size_t max_segments;
  /* Most listeners registered at once; past it stead_bus_on returns
   * STEAD_EOVERLOAD. Default 100,000. */
  size_t max_listeners;
  /* Largest payload of an emit or a replacement payload, bytes
   * (STEAD_ETOOBIG past it). Default 4 MiB. */
  size_t max_payload;
  /* Most properties per emit (STEAD_ETOOBIG past it). Default 64. */
  size_t max_properties;
  /* Error handler; default NULL: every listener error is reported. */
  stead_bus_error_fn on_error;
  void *error_udata;
  /* Listener id generator; default NULL: ULIDs (26 characters of
   * Crockford base32, time-ordered, monotonic within a millisecond). */
  stead_bus_id_fn id_gen;
  void *id_udata;
} stead_bus_config;

/* Fills `cfg` with the defaults above. */
void stead_bus_config_init(stead_bus_config *cfg);

/* Creates a bus and starts its workers. `cfg` may be NULL for the
 * defaults. On success *out owns the bus until stead_bus_free.
 * Errors: EINVAL (a bad field; the message names it), ENOMEM, EIO
 * (threads). Thread-safe. */
int stead_bus_new(const stead_bus_config *cfg, stead_bus **out);

/* Frees the bus: new emits fail with ECLOSED, the events already accepted
 * still run (queued ones included) and every pending done callback fires
 * exactly once; then the workers stop and all listeners and memory are
 * released. Blocks until done. Emits made by listeners during the drain
 * get ECLOSED. Returns EMISUSE (and does nothing) when called from a
 * listener or done callback of this bus. NULL is allowed (returns 0). */
int stead_bus_free(stead_bus *bus);

/* Subscribes `fn` to the topics matching `pattern` (copied) with the
 * given priority. `udata` is passed to every call of fn; the caller keeps
 * ownership and must keep it valid until stead_bus_off of this listener
 * returned (from outside a listener) or the bus is freed. If `id_out` is
 * not NULL it receives the listener's id (STEAD_BUS_ID_SIZE bytes).
 * The listener sees events emitted after this returns, not earlier ones.
 * Errors: EINVAL (NULL bus/fn, malformed pattern: the message says why),
 * ETOOBIG (pattern over the limits), EOVERLOAD (max_listeners reached),
 * EEXIST (the id generator produced a live id), ECLOSED, ENOMEM, or the
 * generator's error. Thread-safe; allowed inside listeners. */
int stead_bus_on(stead_bus *bus, const char *pattern, stead_listener_fn fn, void *udata,
                 int priority, char *id_out);

/* Unsubscribes the listener with this id. After it returns the listener
 * is never started again, even for events emitted earlier whose other
 * listeners are still running. Called from outside any listener of this
 * bus, it also waits until every running invocation of the listener has
 * returned, so the caller may then free its udata. Called from inside a
 * listener (of this bus) it does not wait -- waiting could deadlock two
 * listeners removing each other, or a listener removing itself -- so
 * other threads may still be finishing an invocation when it returns.
 * Errors: EINVAL (NULL), ENOTFOUND (no live listener has this id).
 * Thread-safe. */
int stead_bus_off(stead_bus *bus, const char *id);

/* A key/value property attached to an emitted event (e.g. a trace id).
 * Both strings are copied by the emit. */
typedef struct stead_event_prop {
  const char *key;
  const char *value;
} stead_event_prop;

/* A listener error reported to the emitter. */
typedef struct stead_event_error {
  const char *listener_id;
  const char *pattern; /* the listener's pattern */
  int code;            /* negative STEAD_E* code */
  const char *message; /* never NULL */
} stead_event_error;

/* What happened to an event. Every pointer in it is owned by the bus:
 * valid during the done callback, or until stead_emit_result_free for
 * stead_bus_emit_sync. */
typedef struct stead_emit_result {
  int status; /* 0, STEAD_EHANDLER if n_errors > 0 */
  const char *topic;
  size_t matched;                  /* listeners that matched when it was emitted */
  size_t ran;                      /* listeners that were invoked */
  int aborted;                     /* 1 if a listener called stead_event_abort */
  const stead_event_error *errors; /* reported errors, in invocation order */
  size_t n_errors;
  const void *payload; /* the final payload (after replacements) */
  size_t len;
} stead_emit_result;

/* Completion of stead_bus_emit: called exactly once, on a bus worker,
 * after the event's last listener (never inside stead_bus_emit). */
typedef void (*stead_emit_cb)(const stead_emit_result *res, void *udata);

/* Emits an event asynchronously. The topic is validated, the listeners
 * matching it are snapshotted (later stead_bus_on calls do not affect
 * this event; stead_bus_off still prevents a listener from starting),
 * topic, payload and properties are copied, and the event is queued for a
 * worker. If it returns 0, `done` (may be NULL) is called exactly once; if
 * it returns an error, `done` is never called. `payload` may be NULL when
 * len is 0. Errors: EINVAL (bad topic, NULL property key/value), ETOOBIG
 * (topic, payload or properties over the limits), EOVERLOAD (queue full,
 * see wait_when_full; retryable), ECLOSED (being freed), ENOMEM.
 * Thread-safe; allowed inside listeners and done callbacks. */
int stead_bus_emit(stead_bus *bus, const char *topic, const void *payload, size_t len,
                   const stead_event_prop *props, size_t n_props, stead_emit_cb done,
                   void *udata);

/* Emits an event and runs its listeners on the calling thread before
 * returning (the worker pool is not used). Returns 0 when no error was
 * reported, STEAD_EHANDLER when listeners reported errors (the message is
 * the first one's), or the errors of stead_bus_emit (except EOVERLOAD).
 * If `out` is not NULL it receives the result, errors in invocation order,
 * which the caller frees with stead_emit_result_free (also on
 * STEAD_EHANDLER; on other errors *out is set to NULL). Thread-safe;
 * allowed inside listeners (nested events). */
int stead_bus_emit_sync(stead_bus *bus, const char *topic, const void *payload,
                        size_t len, const stead_event_prop *props, size_t n_props,
                        stead_emit_result **out);

/* Frees a result of stead_bus_emit_sync. NULL is allowed. */
void stead_emit_result_free(stead_emit_result *res);

/* Counters of the bus and its worker pool; a snapshot. */
typedef struct stead_bus_stats {
  uint64_t workers;         /* pool size */
  uint64_t running;         /* workers running an event now */
  uint64_t idle;            /* workers waiting for work */
  uint64_t waiting;         /* events queued, not started */
  uint64_t submitted;       /* events accepted by stead_bus_emit */
  uint64_t succeeded;       /* finished with no reported error */
  uint64_t failed;          /* finished with at least one reported error */
  uint64_t rejected;        /* stead_bus_emit calls refused with EOVERLOAD */
  uint64_t sync_emits;      /* stead_bus_emit_sync calls that ran */
  uint64_t listeners;       /* listeners registered now */
  uint64_t listener_errors; /* listener failures, swallowed ones included */
} stead_bus_stats;

/* Fills *out. Errors: EINVAL (NULL). Thread-safe. */
int stead_bus_get_stats(stead_bus *bus, stead_bus_stats *out);

/* --- inside a listener: the event ------------------------------------
 * A stead_event is valid only during the listener (or error handler) it
 * was passed to. Strings and buffers it returns are owned by the bus. */

/* The event's topic. */
const char *stead_event_topic(const stead_event *ev);

/* The current payload and its length (*len may be NULL). Valid until it
 * is replaced or the listener returns. NULL when the length is 0. */
const void *stead_event_payload(const stead_event *ev, size_t *len);

/* Replaces the payload (copied) for the listeners after this one and for
 * the emit result. Errors: EINVAL, ETOOBIG (over max_payload), ENOMEM. */
int stead_event_set_payload(stead_event *ev, const void *data, size_t len);

/* The value of property `key`, or NULL if the emit did not give it. */
const char *stead_event_property(const stead_event *ev, const char *key);

/* Number of properties, and the i-th one (0-based, in emit order);
 * stead_event_property_at returns ENOTFOUND when i is out of range. */
size_t stead_event_property_count(const stead_event *ev);
int stead_event_property_at(const stead_event *ev, size_t i, const char **key,
                            const char **value);

/* Stops the event: no listener after the current one runs. Idempotent. */
void stead_event_abort(stead_event *ev);

/* 1 if the event was aborted. */
int stead_event_aborted(const stead_event *ev);

/* The id and pattern of the listener being invoked (for an error handler:
 * of the one that failed). */
const char *stead_event_listener_id(const stead_event *ev);
const char *stead_event_pattern(const stead_event *ev);

/* The bus the event belongs to, e.g. to call stead_bus_off from inside. */
stead_bus *stead_event_bus(const stead_event *ev);

/* Records a printf-style failure message (at most 1 KiB kept) for the
 * current listener and returns STEAD_EHANDLER, for
 * `return stead_event_fail(ev, "...")`. */
int stead_event_fail(stead_event *ev, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* --- topic helpers (pure, thread-safe, for any module) ---------------- */

/* 0 if `topic` is a valid topic: 1..STEAD_TOPIC_MAX_LEN bytes of UTF-8,
 * 1..STEAD_TOPIC_MAX_SEGMENTS non-empty segments separated by '.', no
 * ASCII control characters, spaces or '*'. Else EINVAL or ETOOBIG with a
 * message saying what is wrong and where. */
int stead_topic_validate(const char *topic);

/* 0 if `pattern` is a valid pattern: a topic whose segments may also be
 * `*` or `**` (a wildcard must be a whole segment: "ab*" is EINVAL). */
int stead_pattern_validate(const char *pattern);

/* 1 if `pattern` matches `topic`, 0 if not, or a negative code (EINVAL,
 * ETOOBIG) if either is invalid. */
int stead_topic_match(const char *pattern, const char *topic);

/* ======================================================================
 * Loop: the Elm-style message loop (standalone, go-state's model)
 *
 * A program is four callbacks over a model that the caller owns:
 *   init(model) -> commands          (once, before the first message)
 *   update(model, msg) -> commands   (once per message)
 *   view(model)                      (after each tick that changed it)
 *   run(command, dispatch)           (side effects; may dispatch messages)
 * Messages and commands are byte strings. Messages come from a FIFO
 * consumer (get / commit / rollback); messages that commands dispatch go to
 * a producer (put). stead ships an unbounded in-memory queue that is both,
 * and an in-memory snapshot store for Aggregate; any other queue or store
 * plugs in through the same small structs of function pointers.
 *
 * Modes:
 *   Run        one message per tick, waits for input, runs until canceled,
 *              past its deadline, or the input is closed.
 *   Batch      up to N messages per tick, one commit per tick; returns when
 *              the queue is empty (quiescence: commands dispatch back into
 *              the queue before the commit, so an empty queue after a tick
 *              means nothing more is coming from the program itself).
 *   Aggregate  loads the model from a snapshot store, runs a Batch, saves
 *              the model back under a version check; the input is committed
 *              only once the snapshot is saved.
 *   Replay     a flag on any mode: commands are skipped (update and view
 *              still run), so feeding a journal of past messages rebuilds
 *              the model without repeating side effects.
 *
 * One tick: take message(s); update each; view; run the commands (unless
 * replaying) collecting dispatched messages; put those to the producer;
 * commit. A failure at any step before the commit rolls the tick's
 * messages back to the head of the queue and ends the loop with the error:
 * the in-memory model may then hold part of the failed tick, so rebuild it
 * (from a snapshot and/or by replay) before running again -- Aggregate
 * does this by itself, since a failed Aggregate saves nothing.
 * A message with NULL data is consumed but not given to update; a NULL
 * command or NULL dispatched message is dropped.
 * ====================================================================== */

/* A message or command: a byte string. `data` NULL means "no message". */
typedef struct stead_msg {
  const void *data;
  size_t len;
} stead_msg;

/* --- Cancellation ----------------------------------------------------- */

/* A cancellation token: canceled when stead_cancel_set is called or when
 * its deadline passes, whichever is first. Loops check it between ticks
 * and queues obey it while a get waits for input. */
typedef struct stead_cancel stead_cancel;

/* Creates a token; timeout_ms > 0 sets a deadline that many milliseconds
 * from now (monotonic clock), 0 means none. The caller owns *out and frees
 * it with stead_cancel_free once nothing uses it. Errors: EINVAL (NULL out,
 * negative timeout), ENOMEM. */
int stead_cancel_new(stead_cancel **out, int64_t timeout_ms);

/* Frees a token. It must not be in use by a loop or a waiting get. NULL is
 * allowed. */
void stead_cancel_free(stead_cancel *c);

/* Cancels: every current and future check returns STEAD_ECANCELED and every
 * watcher runs once. Idempotent. Thread-safe: any thread, including loop callbacks (not
 * from a signal handler: it takes a lock). */
void stead_cancel_set(stead_cancel *c);

/* 0 while live; STEAD_ECANCELED once set; STEAD_ETIMEDOUT once the deadline
 * passed (a set takes precedence). NULL is a token that never cancels.
 * Thread-safe. Sets the last-error message when non-zero. */
int stead_cancel_check(stead_cancel *c);

/* The deadline in CLOCK_MONOTONIC nanoseconds, or INT64_MAX if none (and
 * for NULL). For queue implementations that wait with a timeout. */
int64_t stead_cancel_deadline_ns(const stead_cancel *c);

/* For queue implementations: runs fn(arg) once when the token is set, so a
 * blocked get can wake up. On success *id names the registration for
 * stead_cancel_unwatch. fn runs on the thread that calls stead_cancel_set,
 * with the token's lock held: it must be short and must not call stead_
 * cancel functions. Errors: ECANCELED (already set: fn will not run; the
 * caller should not wait), EINVAL, ENOMEM. Thread-safe. */
int stead_cancel_watch(stead_cancel *c, void (*fn)(void *arg), void *arg, uint64_t *id);

/* Removes a registration. When it returns, fn is not running and will not
 * run for it. Unknown ids are ignored. Thread-safe. */
void stead_cancel_unwatch(stead_cancel *c, uint64_t id);

/* --- Queue interfaces ---------------------------------------------- */

/* The consumer side of a FIFO queue, read by one loop at a time (the three
 * functions are called from the loop's thread only).
 *   get: takes the next message after the ones already taken and not yet
 *     committed. On 0, *out is the message; its bytes belong to the queue
 *     and stay valid until the next commit or rollback. `wait` 0: return
 *     STEAD_ENOTFOUND at once if none is available; `wait` 1: block until
 *     one is, returning STEAD_ECANCELED / STEAD_ETIMEDOUT when `cancel`
 *     (may be NULL) fires first. STEAD_ECLOSED: the queue is closed and
 *     nothing is left. Other negative codes are failures.
 *   commit: the messages taken since the last commit/rollback are done;
 *     they will not be delivered again.
 *   rollback: the messages taken since the last commit/rollback go back to
 *     the head of the queue, in their order, and are delivered again. */
typedef struct stead_consumer {
  int (*get)(void *self, stead_cancel *cancel, int wait, stead_msg *out);
  int (*commit)(void *self);
  int (*rollback)(void *self);
  void *self;
} stead_consumer;

/* The producer side: put appends n messages (copied) at the tail, all or
 * none, in order. It must not block indefinitely (the loop calls it from
 * inside a tick). Any thread. */
typedef struct stead_producer {
  int (*put)(void *self, const stead_msg *msgs, size_t n);
  void *self;
} stead_producer;

/* --- The in-memory queue --------------------------------------------- */

/* An unbounded FIFO of byte messages in memory, with one consumer cursor:
 * messages taken by get stay in the queue until commit, and rollback
 * re-delivers them from the head. put and close are thread-safe and may
 * be called from any number of threads; get, commit and rollback belong
 * to one consumer at a time (one loop). */
typedef struct stead_queue stead_queue;

/* Creates an empty queue, owned by the caller until stead_queue_free.
 * Errors: EINVAL, ENOMEM. */
int stead_queue_new(stead_queue **out);

/* Frees the queue and every message in it. Nothing may use the queue
 * (no get waiting, no put running). NULL is allowed. */
void stead_queue_free(stead_queue *q);

/* Appends one message (data copied; data NULL with len 0 queues a "no
 * message" that loops skip). Wakes a waiting get. Errors: EINVAL (NULL
 * data with len > 0), ECLOSED (after stead_queue_close), ENOMEM.
 * Thread-safe. */
int stead_queue_put(stead_queue *q, const void *data, size_t len);

/* Appends n messages atomically (no other put interleaves). Errors as
 * stead_queue_put; on error nothing was appended. Thread-safe. */
int stead_queue_put_many(stead_queue *q, const stead_msg *msgs, size_t n);

/* Closes the input: later puts fail with ECLOSED; gets drain what is
 * queued, then return ECLOSED (a waiting get wakes up). Thread-safe. */
void stead_queue_close(stead_queue *q);

/* The consumer operations of stead_consumer, usable directly. */
int stead_queue_get(stead_queue *q, stead_cancel *cancel, int wait, stead_msg *out);
int stead_queue_commit(stead_queue *q);
int stead_queue_rollback(stead_queue *q);

/* Messages in the queue not yet committed (taken or not). Thread-safe. */
size_t stead_queue_len(stead_queue *q);

/* Fill *c / *p with this queue's consumer / producer. They borrow q: it
 * must outlive every use of them. */
void stead_queue_consumer(stead_queue *q, stead_consumer *c);
void stead_queue_producer(stead_queue *q, stead_producer *p);

/* --- Snapshot store (for Aggregate) ------------------------------------ */

/* A key-value store of versioned snapshots. Versions start at 1 and grow
 * by one per successful put; 0 means "absent".
 *   get: on 0, *data is a copy of the value allocated with malloc (the
 *     caller frees it with stead_free; may be NULL when *len is 0), *len
 *     its length and *version its version. STEAD_ENOTFOUND if the key is
 *     absent. Other negative codes are failures.
 *   put: stores the value if the key's current version is
 *     `expected_version` (0: the key must be absent), then *new_version
 *     receives the new version. STEAD_ECONFLICT if the version differs:
 *     someone else saved in between and nothing was written.
 * Both may be called from any thread. Keys are NUL-terminated strings. */
typedef struct stead_snapstore {
  int (*get)(void *self, const char *key, void **data, size_t *len, uint64_t *version);
  int (*put)(void *self, const char *key, const void *data, size_t len,
             uint64_t expected_version, uint64_t *new_version);
  void *self;
} stead_snapstore;

/* Fills *store with a new thread-safe in-memory snapshot store, owned by
 * the caller until stead_memstore_close(store). Keys are valid UTF-8 of
 * 1..1024 bytes (EINVAL / ETOOBIG otherwise). Errors: EINVAL, ENOMEM. */
int stead_memstore_open(stead_snapstore *store);
void stead_memstore_close(stead_snapstore *store);

/* --- Programs ----------------------------------------------------------- */

/* Where init and update put their commands, and where run puts the
 * messages it dispatches. Owned by the loop; valid only during the
 * callback that received it. */
typedef struct stead_cmds stead_cmds;
typedef struct stead_dispatcher stead_dispatcher;

/* Adds a command (bytes copied) to the current tick. data NULL is a NULL
 * command and is dropped. Errors: EINVAL (NULL cmds, or NULL data with
 * len > 0), ENOMEM. */
int stead_cmd(stead_cmds *cmds, const void *data, size_t len);

/* Dispatches a new message (bytes copied) from a command. It reaches the
 * producer (or, in Aggregate, the loop's own pending messages) after all
 * of the tick's commands ran and before the commit. data NULL is dropped.
 * For messages produced later, on other threads, put them to the queue
 * directly. Errors: EINVAL, ENOMEM, EMISUSE (the loop has no producer). */
int stead_dispatch(stead_dispatcher *d, const void *data, size_t len);

/* A program. Callbacks run on the thread that runs the loop, one at a
 * time, with the program's udata. A callback fails by returning non-zero:
 * a negative STEAD_E* code is passed through, anything else becomes
 * STEAD_EHANDLER; the tick is then rolled back (see above).
 *   init    optional. Sets up a fresh model (every field: the memory's
 *           content is unspecified) and may add commands. Runs as the
 *           loop's first tick unless the model was hydrated.
 *   update  required. Applies one message (borrowed: valid during the
 *           call) to the model and may add commands.
 *   view    optional. Observes the model after a tick that updated it.
 *   run     optional (NULL: commands are dropped). Performs one command
 *           (borrowed bytes) and may dispatch messages.
 *   encode  needed by Aggregate. Serialises the model: *data allocated
 *           with malloc (the loop frees it), *len its length.
 *   decode  needed by Aggregate and stead_loop_hydrate. Replaces the
 *           model's whole content with the decoded bytes (borrowed). */
typedef struct stead_program {
  int (*init)(void *model, stead_cmds *cmds, void *udata);
  int (*update)(void *model, const void *msg, size_t len, stead_cmds *cmds, void *udata);
  void (*view)(const void *model, void *udata);
  int (*run)(const void *cmd, size_t len, stead_dispatcher *d, void *udata);
  int (*encode)(const void *model, void **data, size_t *len, void *udata);
  int (*decode)(void *model, const void *data, size_t len, void *udata);
  void *udata;
} stead_program;

/* --- The loop --------------------------------------------------------- */

typedef struct stead_loop stead_loop;

/* Counters of a loop since stead_loop_new. */
typedef struct stead_loop_stats {
  uint64_t ticks;      /* ticks that completed (init's included) */
  uint64_t messages;   /* messages taken by completed ticks (NULL ones too) */
  uint64_t commands;   /* commands run (skipped ones in replay not counted) */
  uint64_t dispatched; /* messages dispatched by commands */
  uint64_t rollbacks;  /* ticks rolled back after a failure */
} stead_loop_stats;

/* Creates a loop of `prog` over `model` reading from `in`, dispatching to
 * `outq` (NULL: commands may not dispatch, except in Aggregate). The loop
 * copies *prog, *in and *outq (the structs, not what they point to): the
 * model, the udata and the queue behind in/out are borrowed and must
 * outlive the loop. Errors: EINVAL (NULL out/prog/model/in, no update,
 * consumer without get/commit/rollback, producer without put), ENOMEM. */
int stead_loop_new(stead_loop **out, const stead_program *prog, void *model,
                   const stead_consumer *in, const stead_producer *outq);

/* Frees the loop (not the model, not the queues). NULL is allowed. */
void stead_loop_free(stead_loop *loop);

/* Replay on (1) or off (0): while on, commands are skipped; update and view
 * run as usual. Takes effect at the next tick. */
void stead_loop_set_replay(stead_loop *loop, int on);

/* Marks the model as already initialised from a snapshot: decodes `data`
 * into the model with prog->decode, and init will not run. Used to resume
 * from a snapshot before replaying the messages journaled after it.
 * Errors: EINVAL (no decode), the decode's failure. */
int stead_loop_hydrate(stead_loop *loop, const void *data, size_t len);

/* Run mode: ticks of one message, waiting for each. Returns 0 when the
 * consumer reports the input closed (STEAD_ECLOSED) and drained;
 * STEAD_ECANCELED / STEAD_ETIMEDOUT when `cancel` (may be NULL) fires --
 * between ticks or while waiting, never in the middle of a tick; or the
 * first failure (the failed tick rolled back). Not thread-safe: one call
 * on a loop at a time; stop it from another thread with stead_cancel_set
 * or by closing its queue. */
int stead_loop_run(stead_loop *loop, stead_cancel *cancel);

/* Batch mode: ticks of up to max_per_tick (>= 1) messages taken without
 * waiting, one commit per tick, until a tick finds the queue empty (or
 * closed): then returns 0. Cancellation and failures as stead_loop_run.
 * Errors also: EINVAL (max_per_tick 0). */
int stead_loop_batch(stead_loop *loop, size_t max_per_tick, stead_cancel *cancel);

/* Aggregate mode: the model of `key` in `store`. Loads it (decode; if the
 * key is absent, init runs instead), runs a Batch of up to max_per_tick
 * per tick to quiescence, then saves the model (encode) with put expecting
 * the version it loaded; only then commits the input. Messages dispatched
 * by commands stay inside this aggregate run (processed before further
 * input) rather than going to the producer. On any failure, or
 * STEAD_ECONFLICT when another loop saved the key meanwhile, every message
 * taken is rolled back and nothing is saved: call it again to reload and
 * retry (commands of the failed attempt will run again: side effects are
 * at-least-once). The snapshot is saved even when no message came.
 * On 0, *version (may be NULL) receives the saved version. Errors: EINVAL
 * (NULL store/key, max_per_tick 0, no encode/decode), ECONFLICT,
 * ECANCELED, ETIMEDOUT, the store's, the callbacks' and the queue's. */
int stead_loop_aggregate(stead_loop *loop, const stead_snapstore *store, const char *key,
                         size_t max_per_tick, stead_cancel *cancel, uint64_t *version);

/* Copies the loop's counters into *st. */
void stead_loop_get_stats(const stead_loop *loop, stead_loop_stats *st);

/* ======================================================================
 * State structs
 *
 * A class may keep its durable state in a plain C struct described by a
 * field schema. The runtime loads the struct when the object activates
 * (fields missing from storage get their defaults), hands it to every
 * turn, and after a successful turn saves it -- only if it changed -- in
 * the same atomic commit as the turn's other writes. A failed turn's
 * changes to the struct are rolled back.
 *
 * Field C types: INT64 int64_t, DOUBLE double, BOOL bool, STRING char *
 * (NUL-terminated UTF-8, or NULL), BYTES stead_bytes, TIMESTAMP int64_t
 * (ms since the epoch). The stored record is self-describing (field names
 * and types), so fields may be added to a schema later (they read as their
 * default) and fields removed from it are ignored when read. Changing a
 * field's type (other than INT64 <-> TIMESTAMP) makes old records
 * unreadable (STEAD_ECORRUPT): add a new field instead.
 *
 * Ownership: STRING and BYTES fields point to memory from malloc owned by
 * the struct. The runtime frees them (with free) when it releases or
 * replaces the struct. A handler that changes such a field frees the old
 * value -- simplest with stead_state_set_string / stead_state_set_bytes.
 *
 * Example:
 *
 *   typedef struct account { int64_t balance; char *owner; bool frozen; } account;
 *   static const stead_field account_fields[] = {
 *     STEAD_FIELD_INT64(account, balance, 0),
 *     STEAD_FIELD_STRING(account, owner, "nobody"),
 *     STEAD_FIELD_BOOL(account, frozen, false),
 *   };
 *   static const stead_schema account_schema = STEAD_SCHEMA(account, account_fields);
 * ====================================================================== */

#include <stdbool.h>

typedef enum stead_field_type {
  STEAD_FT_INT64 = 1,
  STEAD_FT_DOUBLE = 2,
  STEAD_FT_BOOL = 3,
  STEAD_FT_STRING = 4,
  STEAD_FT_BYTES = 5,
  STEAD_FT_TIMESTAMP = 6
} stead_field_type;

/* A BYTES field: `len` bytes at `data` (malloc'd, owned by the struct;
 * NULL when len is 0). */
typedef struct stead_bytes {
  void *data;
  size_t len;
} stead_bytes;

/* One field. Use the STEAD_FIELD_* macros rather than filling it by hand.
 * Names are 1..128 bytes of [A-Za-z0-9_.-] and unique in a schema. */
typedef struct stead_field {
  const char *name;
  stead_field_type type;
  size_t offset;       /* offsetof(struct, member) */
  int64_t def_int;     /* default of INT64, TIMESTAMP, BOOL */
  double def_double;   /* default of DOUBLE */
  const char *def_ptr; /* default of STRING (NUL-terminated, NULL for NULL)
                          and BYTES (def_len bytes) */
  size_t def_len;
} stead_field;

/* A struct's schema. It and the fields it points to must stay valid while
 * the runtime uses them (a static definition). */
typedef struct stead_schema {
  size_t size; /* sizeof the struct */
  const stead_field *fields;
  size_t nfields;
} stead_schema;

/* The member must have the C type of the field: a mismatch is a compile
 * error (comparison of distinct pointer types). */
#define STEAD__FIELD_CHECK(T, m, ctype) (0 * sizeof(&((T *)0)->m == (ctype *)0))
#define STEAD_FIELD_INT64(T, m, def)                                                     \
  {                                                                                      \
#m, STEAD_FT_INT64, offsetof(T, m) + STEAD__FIELD_CHECK(T, m, int64_t), (def), 0.0,  \
        NULL, 0                                                                          \
  }
#define STEAD_FIELD_TIMESTAMP(T, m, def)                                                 \
  {                                                                                      \
#m, STEAD_FT_TIMESTAMP, offsetof(T, m) + STEAD__FIELD_CHECK(T, m, int64_t), (def),   \
        0.0, NULL, 0                                                                     \
  }
#define STEAD_FIELD_DOUBLE(T, m, def)                                                    \
  {                                                                                      \
#m, STEAD_FT_DOUBLE, offsetof(T, m) + STEAD__FIELD_CHECK(T, m, double), 0, (def),    \
        NULL, 0                                                                          \
  }
#define STEAD_FIELD_BOOL(T, m, def)                                                      \
  {                                                                                      \
#m, STEAD_FT_BOOL, offsetof(T, m) + STEAD__FIELD_CHECK(T, m, bool), ((def) ? 1 : 0), \
        0.0, NULL, 0                                                                     \
  }
#define STEAD_FIELD_STRING(T, m, def)                                                    \
  {                                                                                      \
#m, STEAD_FT_STRING, offsetof(T, m) + STEAD__FIELD_CHECK(T, m, char *), 0, 0.0,      \
        (def), 0                                                                         \
  }
#define STEAD_FIELD_BYTES(T, m, def, def_len)                                            \
  {                                                                                      \
#m, STEAD_FT_BYTES, offsetof(T, m) + STEAD__FIELD_CHECK(T, m, stead_bytes), 0, 0.0,  \
        (const char *)(def), (def_len)                                                   \
  }
#define STEAD_SCHEMA(T, fields_array)                                                    \
  { sizeof(T), (fields_array), sizeof(fields_array) / sizeof((fields_array)[0]) }

/* Checks a schema: names valid and unique, known types, each field inside
 * the struct. Errors: EINVAL naming the bad field. Thread-safe. */
int stead_schema_check(const stead_schema *schema);

/* Sets every field of `st` (schema->size bytes) to its default, allocating
 * STRING and BYTES defaults. Does not free what `st` held: call it on fresh
 * memory, or after stead_state_release. Errors: EINVAL, ENOMEM (then `st`
 * holds no allocations). */
int stead_state_init(const stead_schema *schema, void *st);

/* Frees the STRING and BYTES fields of `st` and sets them to NULL / 0.
 * Other fields are left alone. Safe on zeroed memory. */
void stead_state_release(const stead_schema *schema, void *st);

/* Replaces a STRING field: frees *field, stores a copy of `s` (NULL stores
 * NULL). Errors: ENOMEM (the field is unchanged). */
int stead_state_set_string(char **field, const char *s);

/* Replaces a BYTES field with a copy of `len` bytes at `data`. Errors:
 * ENOMEM (the field is unchanged). */
int stead_state_set_bytes(stead_bytes *field, const void *data, size_t len);

/* The schema of a registered class, or NULL (ENOCLASS; ENOTFOUND when the
 * class has none). Owned by the class. Thread-safe. */
const stead_schema *stead_class_schema(stead_rt *rt, const char *cls);

/* From outside a turn: the object's committed state struct (defaults if it
 * never stored one), in a struct the caller frees with
 * stead_object_state_free. A snapshot: turns still committing are not in
 * it. For inspection (the server's GET of an object); change state only
 * through turns. Errors: EINVAL, ETOOBIG, ENOCLASS, ENOTSUP (the class has
 * no schema), ECORRUPT, ESTORAGE, ENOMEM. Thread-safe. */
int stead_object_state(stead_rt *rt, const char *cls, const char *id, void **out);
void stead_object_state_free(stead_rt *rt, const char *cls, void *st);

/* ======================================================================
 * Storage inside a turn
 *
 * Each object has its own ordered key-value space: keys are 1..2048 bytes
 * compared bytewise, values 0..2 MiB. Reads see the turn's own writes (and
 * earlier turns', durable or not). The turn's writes -- with its alarm
 * changes and its state struct -- commit atomically after the handler
 * returns 0; the turn's reply and messages are released only when that
 * commit is durable. A failed turn's writes are discarded. A turn may
 * write at most 16 MiB (keys + values + 32 bytes per entry).
 *
 * Every function here must be called on the thread running the turn, with
 * its ctx; outside a turn they return STEAD_EMISUSE.
 * ====================================================================== */

#define STEAD_MAX_KEY       2048
#define STEAD_MAX_VALUE     (2 * 1024 * 1024)
#define STEAD_MAX_WRITE_SET (16 * 1024 * 1024)

/* A key, or a key and its value. */
typedef struct stead_kv {
  const void *key;
  size_t key_len;
  const void *value; /* NULL: absent (in stead_get_many's result) */
  size_t value_len;
} stead_kv;

/* Reads one key. On 0, *value (if value is not NULL) receives a copy the
 * caller frees with stead_free -- NUL-terminated one past *value_len for
 * convenience -- and *value_len its length (value_len may be NULL).
 * Errors: ENOTFOUND (no such key), EINVAL (NULL or empty key), ETOOBIG
 * (key), ESTORAGE, ENOMEM, EMISUSE. */
int stead_get(stead_ctx *ctx, const void *key, size_t key_len, void **value,
              size_t *value_len);

/* Writes one key (the value is copied). Errors: EINVAL (empty key, NULL
 * value with len > 0), ETOOBIG (key, value, or the turn's write set; the
 * turn's writes so far stay), ENOMEM, EMISUSE. */
int stead_put(stead_ctx *ctx, const void *key, size_t key_len, const void *value,
              size_t value_len);

/* Deletes one key. Deleting a missing key is not an error. Errors: EINVAL,
 * ETOOBIG, ENOMEM, EMISUSE. */
int stead_delete(stead_ctx *ctx, const void *key, size_t key_len);

/* Reads n keys (keys[i].key / key_len; values ignored). On 0, *out is an
 * array of n entries in the same order, in one allocation the caller frees
 * with stead_free: out[i].key points to the key, out[i].value to the value
 * or NULL when the key is absent (a present empty value is non-NULL with
 * value_len 0). Errors: as stead_get except ENOTFOUND; n == 0 gives *out
 * NULL. */
int stead_get_many(stead_ctx *ctx, const stead_kv *keys, size_t n, stead_kv **out);

/* Writes n entries, all or none: every key and value is checked first.
 * A key given twice keeps the last value. Errors: as stead_put. */
int stead_put_many(stead_ctx *ctx, const stead_kv *entries, size_t n);

/* Deletes n keys (values ignored), all or none. Errors: as stead_delete. */
int stead_delete_many(stead_ctx *ctx, const stead_kv *keys, size_t n);

/* Deletes every key of the object (not its alarms or state struct). Later
 * puts in the same turn survive. Errors: ENOMEM, EMISUSE. */
int stead_delete_all(stead_ctx *ctx);

/* Options of stead_list. Zero-initialise: all zero lists every key in
 * ascending order. Pointers are borrowed during the call; a NULL pointer
 * or a zero length means "not set". */
typedef struct stead_list_opts {
  const void *prefix; /* only keys starting with these bytes */
  size_t prefix_len;
  const void *start; /* keys >= start ... */
  size_t start_len;
  const void *start_after; /* ... or keys > start_after (not both) */
  size_t start_after_len;
  const void *end; /* keys < end */
  size_t end_len;
  int reverse;  /* descending order; with limit: the last keys */
  size_t limit; /* at most this many; 0: no limit */
} stead_list_opts;

/* Lists keys and values in key order (merged with the turn's writes). On
 * 0, *out is an array of *n entries in one allocation the caller frees
 * with stead_free (NULL when *n is 0); keys and values point inside it.
 * opts NULL lists everything. Errors: EINVAL (start and start_after both
 * set), ESTORAGE, ENOMEM, EMISUSE. */
int stead_list(stead_ctx *ctx, const stead_list_opts *opts, stead_kv **out, size_t *n);

/* ======================================================================
 * Event-sourced objects
 *
 * A class given as a stead_program (see "Loop") instead of handlers. The
 * runtime keeps one model per activation and, for each call:
 *   - builds the message: the method name, a NUL byte, then the payload
 *     ("deposit\0" "50"); stead_es_split takes it apart;
 *   - passes it to update, which changes the model and may reply with
 *     stead_es_reply, add commands with stead_cmd, or reject the message
 *     (return non-zero, best with stead_es_reject): the call then fails
 *     with STEAD_EHANDLER and the rejection's message, and nothing is
 *     journaled;
 *   - appends an accepted message to the object's journal in the turn's
 *     commit (and every `snapshot_every` messages a snapshot of the model,
 *     encoded by the program, pruning what the oldest kept snapshot makes
 *     unnecessary). The reply is released once that commit is durable;
 *   - after the commit, runs each command as a later turn of the object
 *     (program.run, on a worker); messages it dispatches (same format:
 *     method NUL payload) are sent to the object itself when that turn
 *     ends, and become messages like any call's.
 * Activation loads the newest snapshot (decode) or runs init, then
 * replays the journal after it with commands skipped. Methods listed as
 * `queries` also go through update, but are never journaled: they must
 * not change the model.
 *
 * Contract of the program: update is deterministic (same model, same
 * message -> same model), since replay must rebuild what the live object
 * had. A model changed by a message that then failed (rejected, or its
 * commit failed) is rebuilt from storage before the object's next turn,
 * so update may reject after changing the model. init's commands, and
 * commands met during replay, never run. Commands run at most once: a
 * crash or stead_close between the commit and the command's turn loses
 * it (stead_es_stats counts those dropped).
 *
 * A snapshot the program cannot decode, a journal record that is
 * damaged, or one that update rejects on replay, fails the activation of
 * that object (only) with STEAD_ECORRUPT and a message naming the record.
 * See docs/event-sourcing.md.
 * ====================================================================== */

/* An event-sourced class. The struct and everything it points to must
 * stay valid and unchanged until the runtime is closed (a static
 * definition is the usual way). */
typedef struct stead_es_class {
  const char *name; /* unique class name, 1..128 bytes of [A-Za-z0-9_.-] */
  /* The program. update, encode and decode are required; init (NULL: the
   * model starts zeroed), run (NULL: commands are dropped) and view
   * (called after each update) are optional. Its udata is passed to every
   * callback. */
  stead_program program;
  /* Methods whose messages are journaled: NULL-terminated, non-empty. */
  const char *const *methods;
  /* Read-only methods (optional, NULL-terminated): update runs, the reply
   * is returned, nothing is journaled. */
  const char *const *queries;
  /* Bytes of the model (1..64 MiB), zeroed before init or decode; the
   * runtime owns this memory. */
  size_t model_size;
  /* Optional: frees what the model points to (before the memory is
   * dropped or rebuilt). */
  void (*model_release)(void *model, void *udata);
  /* Version of the program's snapshot encoding, stored with each
   * snapshot. A snapshot of an older version is given to decode_old (if
   * NULL: ECORRUPT); of a newer version: ECORRUPT. */
  uint32_t model_version;
  int (*decode_old)(void *model, uint32_t version, const void *data, size_t len,
                    void *udata);
  /* Snapshot after this many journaled messages. 0: 100. */
  uint32_t snapshot_every;
  /* Snapshots kept; journal entries up to the oldest kept one are deleted
   * (so the journal holds (keep-1)*N .. keep*N entries). 0: 2. */
  uint32_t keep_snapshots;
  /* As in stead_class: hibernate / deactivate after this long idle. */
  int64_t hibernate_after_ms;
  int64_t shutdown_after_ms;
  /* Batch mode: a turn whose message (of a journaled method) is accepted
   * also takes up to batch_max - 1 further messages of journaled methods
   * queued right behind it, applies them in order, and commits them all
   * in one write set; every caller still gets its own reply, released
   * after that commit. It stops at anything else queued (a query, a
   * command's turn, ...), which keeps everything in order. A rejected
   * message in a batch fails only its own call and is not journaled; the
   * model is rebuilt (as this turn sees storage) and the batch goes on.
   * If the turn's commit fails, every call of the batch fails. 0 or 1:
   * off (one message per turn); at most 1024. */
  uint32_t batch_max;
} stead_es_class;

/* Registers an event-sourced class: an ordinary class of that name whose
 * methods are `methods` and `queries`. Errors: EINVAL (bad name, NULL
 * program callbacks, no methods, bad or duplicate method name, bad
 * model_size), EEXIST (a class of that name exists), ECLOSED, ENOMEM.
 * Thread-safe. */
int stead_register_program(stead_rt *rt, const stead_es_class *c);

/* Inside update of an event-sourced object: sets the call's reply (bytes
 * copied; calling again replaces it). Ignored during replay. Errors:
 * EMISUSE (cmds does not belong to an event-sourced object's update --
 * e.g. the standalone loop), EINVAL, ENOMEM. */
int stead_es_reply(stead_cmds *cmds, const void *data, size_t len);

/* Inside update: records why the message is rejected (printf-style, at
 * most 1 KiB kept) and returns STEAD_EHANDLER, for
 * `return stead_es_reject(cmds, "insufficient funds: ...")`. The caller
 * receives STEAD_EHANDLER with this message. In the standalone loop it
 * only returns STEAD_EHANDLER. */
int stead_es_reject(stead_cmds *cmds, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Splits a message (method NUL payload). On 0, *method points to the
 * NUL-terminated method name inside msg, *payload / *plen to the rest
 * (payload may be NULL when plen is 0). Errors: EINVAL (NULL, or no NUL
 * byte). Pure. */
int stead_es_split(const void *msg, size_t len, const char **method, const void **payload,
                   size_t *plen);

/* Inside run: dispatches `method` with `payload` to the object itself
 * (builds the message and calls stead_dispatch). Errors: as
 * stead_dispatch, EINVAL (bad method). */
int stead_es_dispatch(stead_dispatcher *d, const char *method, const void *payload,
                      size_t len);

/* Counters of an event-sourced class since registration. */
typedef struct stead_es_stats {
  uint64_t journaled;        /* messages appended to journals */
  uint64_t rejected;         /* messages update rejected */
  uint64_t snapshots;        /* snapshots written */
  uint64_t replayed;         /* journal entries replayed at activation */
  uint64_t rebuilds;         /* models rebuilt after a failed turn */
  uint64_t commands_run;     /* commands whose run returned 0 */
  uint64_t commands_failed;  /* commands whose run failed */
  uint64_t commands_dropped; /* commands lost (runtime closing, full mailbox) */
} stead_es_stats;

/* Copies the counters of event-sourced class `cls` into *out. Errors:
 * EINVAL, ENOCLASS (no event-sourced class of that name). Thread-safe. */
int stead_es_get_stats(stead_rt *rt, const char *cls, stead_es_stats *out);

/* ======================================================================
 * Events in the runtime
 *
 * Every runtime owns an event bus (the "Event bus" section): one worker,
 * so events run in the order they were accepted, and a queue of 65,536
 * events. Turns publish on it transactionally, objects subscribe to it,
 * and code outside the runtime may listen and emit (the server's SSE
 * stream and POST /v1/events do).
 *
 * Transactional emit: stead_emit inside a turn only records the event. It
 * is published after the turn's commit is durable (the output gate), in
 * commit order, or not at all if the handler fails or the commit does.
 * Events emitted by one object therefore reach each listener in emit
 * order.
 *
 * Object subscriptions: stead_subscribe stores the pattern with the object
 * (committed with the turn) and, once committed, registers a listener
 * that turns each matching event into a turn of the object calling its
 * class's on_event hook, activating the object if needed. Stored
 * subscriptions are registered again by stead_open, so they survive
 * restarts; classes should be registered right after stead_open (events
 * for a class not yet registered are dropped and counted).
 *
 * Delivery to an object is at most once per subscription per process: an
 * event finding the object's mailbox full (mailbox_limit) is dropped,
 * counted in the metric stead_bus_object_events_total{outcome=
 * "dropped_full"} and logged (a warning at most once a second, with the
 * number dropped since the last one); events still queued when the
 * runtime closes or the process dies are lost. An object subscribed by
 * two patterns that both match an event gets it twice. See docs/bus.md.
 * ====================================================================== */

/* Most subscriptions one object may hold. */
#define STEAD_MAX_SUBSCRIPTIONS 1024

/* The runtime's bus, owned by the runtime and valid until stead_close
 * starts (which frees it after draining its events); NULL if rt is NULL.
 * Use it to listen (stead_bus_on) from outside objects; listeners must
 * return quickly -- there is one bus worker, and a slow listener delays
 * every event, object deliveries included. Do not stead_bus_free it.
 * Thread-safe. */
stead_bus *stead_rt_bus(stead_rt *rt);

/* Inside a turn: publishes an event on the runtime's bus if and after the
 * turn commits. topic and payload are copied (payload may be NULL when
 * len is 0). Errors, checked at once: EMISUSE (ctx is not in a turn),
 * EINVAL (NULL or malformed topic: the message says why), ETOOBIG (topic
 * or payload over the bus limits, 256 bytes / 32 segments / 4 MiB),
 * ENOMEM. A committed event that cannot be queued because the bus stays
 * full for a second is dropped and counted as stead_bus_tx_emits_total{
 * outcome="lost"} with an error log line. Worker thread only. */
int stead_emit(stead_ctx *ctx, const char *topic, const void *payload, size_t len);

/* From outside a turn: publishes an event on the runtime's bus now (not
 * transactional). topic and payload are copied. Errors: EINVAL (NULL rt
 * or topic, malformed topic), ETOOBIG, EOVERLOAD (the bus queue is full;
 * retryable), ECLOSED (the runtime is closing), ENOMEM. Thread-safe. */
int stead_emit_rt(stead_rt *rt, const char *topic, const void *payload, size_t len);

/* Inside a turn: subscribes this object to `pattern` (copied), durably.
 * The subscription commits with the turn; matching events emitted after
 * the commit become on_event turns of the object. Subscribing again to a
 * pattern the object already has does nothing and returns 0. Errors:
 * EMISUSE (not in a turn), EINVAL (NULL or malformed pattern: the message
 * says why), ETOOBIG (pattern over the limits, or the object already has
 * STEAD_MAX_SUBSCRIPTIONS), ENOTSUP (the class has no on_event), ESTORAGE,
 * ENOMEM. If the listener cannot be registered after the commit (e.g. the
 * bus's 100,000 listener limit), the subscription stays stored, an error
 * is logged, and it becomes active at the next stead_open. Worker thread
 * only. */
int stead_subscribe(stead_ctx *ctx, const char *pattern);

/* Inside a turn: removes the object's subscription to exactly `pattern`
 * (as given to stead_subscribe; patterns are not compared by meaning).
 * After the turn commits no new event is delivered for it (an event
 * already queued in the object's mailbox still runs). Errors: EMISUSE,
 * EINVAL, ETOOBIG, ENOTFOUND (not subscribed), ESTORAGE, ENOMEM. */
int stead_unsubscribe(stead_ctx *ctx, const char *pattern);

/* Inside a turn: the object's subscriptions in bytewise order, including
 * changes made earlier in this turn. On 0, *out is an array of *n
 * NUL-terminated patterns in one allocation the caller frees with
 * stead_free (NULL when *n is 0). Errors: EINVAL (NULL out or n),
 * EMISUSE, ESTORAGE, ENOMEM. */
int stead_subscriptions(stead_ctx *ctx, char ***out, size_t *n);

/* ======================================================================
 * Failing a turn with a code
 *
 * stead_fail always reports STEAD_EHANDLER ("the handler failed"). A
 * handler that rejects its argument -- a malformed body, a value out of
 * range -- is not failing: the caller is at fault, and should be told so
 * with a code it can act on. The HTTP gateway maps the code as for any
 * other error (EINVAL -> 400, ENOTFOUND -> 404, ETOOBIG -> 413...).
 * ====================================================================== */

/* Fails the current turn like stead_fail, but the caller receives `code`
 * (a negative STEAD_E* code) instead of STEAD_EHANDLER, with the
 * printf-style message (at most 1 KiB kept). A code >= 0 means
 * STEAD_EHANDLER. Use EINVAL for a malformed argument, ETOOBIG for one
 * over a limit, ENOTFOUND, ECONFLICT or EREJECTED as they fit; avoid the
 * retryable codes (ETIMEDOUT, EOVERLOAD, ESTORAGE, ENOTOWNER), which tell
 * the caller to try the same request again. Effects are discarded as with
 * stead_fail; in on_alarm the alarm is retried whatever the code. Returns
 * the code reported (for `return stead_fail_code(ctx, STEAD_EINVAL,
 * "...")`). ctx NULL: returns the code and does nothing. Worker thread
 * only (inside the turn that ctx belongs to). */
int stead_fail_code(stead_ctx *ctx, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ======================================================================
 * Connections
 *
 * A client opens a duplex connection to an object with stead_connect; the
 * object's class accepts or rejects it in on_connect (a turn). Then both
 * sides send messages with stead_conn_send until either side closes with
 * stead_conn_close. Each connection has two ends, both stead_conn
 * pointers: the client's (returned by stead_connect) and the object's
 * (handed to the class's hooks and returned by stead_conn_list).
 *
 * Ordering: messages from the client become turns of the object
 * (on_conn_message), in the order stead_conn_send was called on that
 * connection. Messages from the object are sent like a turn's other
 * outputs: only if the turn succeeds, after its commit is durable, and
 * they reach the client's on_message in the order sent, one at a time
 * (never concurrently for one connection).
 *
 * Close listeners: the client's on_close runs exactly once for every
 * accepted connection, whoever closed it -- the object, the client itself
 * (from inside stead_conn_close), the runtime (a slow client, stead_close).
 * No on_message runs after it. The object's on_conn_close runs once when
 * anyone but the object closed it.
 *
 * Hibernation: the runtime, not the activation, keeps the connections. An
 * object with open connections deactivates like any other (idle
 * shutdown_after_ms, the LRU limit, stead_deactivate) and its connections
 * stay open; the next message on any of them reactivates it. What the
 * object needs to know about a connection after that goes in its
 * attachment (small bytes kept by the runtime) and its tags, and
 * stead_conn_list finds the connections again.
 *
 * Back-pressure: messages to a client wait in a bounded queue of that
 * connection (stead_conn_opts) until on_message took them. A client whose
 * queue is full is disconnected with STEAD_CLOSE_SLOW and a reason; the
 * object's send never blocks and never grows memory without bound. The
 * client's messages go through the object's mailbox: when it is full,
 * stead_conn_send returns STEAD_EOVERLOAD.
 *
 * Cluster: a client may connect from any node. When another node owns
 * the object's shard, the connection is carried between the two nodes
 * (the client's end stays here, the object's end lives on the owner):
 * same ordering, limits and hooks, and no gap -- a message lost between
 * the nodes closes the connection (STEAD_CLOSE_INTERNAL) instead of
 * skipping. A client's message that the owner cannot take (mailbox full,
 * object gone) closes the connection asynchronously instead of failing
 * stead_conn_send. When the object's shard moves to another node, or the
 * node at the other end leaves or dies, the connection closes with
 * STEAD_CLOSE_MOVED (client side) or STEAD_CLOSE_ABNORMAL (the object's
 * on_conn_close); the client reconnects, and the connect finds the new
 * owner. See docs/connections.md.
 * ====================================================================== */

/* Message flag: the bytes are UTF-8 text (a WebSocket text frame). Without
 * it they are binary. stead_conn_send checks text for valid UTF-8. */
#define STEAD_CONN_TEXT 1u

/* Close codes: WebSocket's (RFC 6455, 7.4.1), so that the gateway passes
 * them through; applications use 3000..4999. */
#define STEAD_CLOSE_NORMAL     1000 /* done */
#define STEAD_CLOSE_GOING_AWAY 1001 /* runtime or server shutting down */
#define STEAD_CLOSE_PROTOCOL   1002 /* malformed WebSocket frames */
#define STEAD_CLOSE_BAD_DATA   1007 /* a text message that is not UTF-8 */
#define STEAD_CLOSE_SLOW       1008 /* outgoing queue full: client too slow */
#define STEAD_CLOSE_TOO_BIG    1009 /* message over the size limit */
#define STEAD_CLOSE_INTERNAL   1011 /* the server failed */
#define STEAD_CLOSE_MOVED      1012 /* the object moved to another node: reconnect */
#define STEAD_CLOSE_TRY_LATER  1013 /* the object's mailbox is full */
#define STEAD_CLOSE_ABNORMAL   1006 /* connect timed out; socket lost */

/* Limits. A close reason is at most 123 bytes (a WebSocket close frame's
 * room); longer reasons are cut at a character boundary. */
#define STEAD_MAX_CONN_META       (64 * 1024)
#define STEAD_MAX_CONN_ATTACHMENT 2048
#define STEAD_MAX_CONN_TAGS       10
#define STEAD_MAX_CONN_TAG        256
#define STEAD_MAX_CONN_REASON     123
#define STEAD_MAX_CONNS_PER_OBJ   32768

/* A message from the object: `data` (valid during the call) with flags
 * (STEAD_CONN_TEXT or 0). Runs on a runtime thread (the runtime's one
 * delivery thread); it must return quickly -- copy the bytes and hand
 * them on. It may call stead_conn_send and stead_conn_close on `conn`. */
typedef void (*stead_conn_message_fn)(stead_conn *conn, const void *data, size_t len,
                                      unsigned flags, void *udata);
/* The connection is closed (see "Close listeners" above). `reason` is
 * valid during the call. Runs on the delivery thread, or inside
 * stead_conn_close when the client closed. The handle stays valid until
 * the client calls stead_conn_close (which it must, once). */
typedef void (*stead_conn_close_fn)(stead_conn *conn, int code, const char *reason,
                                    void *udata);

/* Options of a connect. Zero-initialise, then set what you need. */
typedef struct stead_conn_opts {
  stead_conn_message_fn on_message; /* required */
  stead_conn_close_fn on_close;     /* optional */
  void *udata;                      /* passed to both */
  /* The outgoing queue: messages waiting for on_message. Over either
   * bound the client is disconnected (STEAD_CLOSE_SLOW). 0: 1024
   * messages, 4 MiB. */
  size_t max_queue_msgs;
  size_t max_queue_bytes;
  /* Deadline of the accept/reject answer. <= 0: default_timeout_ms. */
  int timeout_ms;
} stead_conn_opts;

/* The outcome of stead_connect_async: status 0 and the client's end
 * (owned by the caller until stead_conn_close), or a STEAD_E* code with
 * conn NULL and `reason` saying why (valid during the call). */
typedef void (*stead_connect_cb)(stead_conn *conn, int status, const char *reason,
                                 void *udata);

/* Opens a connection to object (cls, id) and blocks until it accepts or
 * rejects it. `meta` (may be NULL when meta_len is 0; copied) goes to
 * on_connect. On 0, *out is the client's end, owned by the caller until
 * stead_conn_close. Errors: EINVAL (bad name or id, NULL on_message or
 * out), ETOOBIG (meta over STEAD_MAX_CONN_META, or the object already
 * has STEAD_MAX_CONNS_PER_OBJ open), ENOCLASS, ENOTSUP (the class has no
 * on_connect), EREJECTED (the object refused; stead_errmsg() is its
 * reason), EOVERLOAD (mailbox full), ETIMEDOUT, ESTORAGE and ECORRUPT (the
 * object could not activate), ENOTOWNER (cluster mode: another node owns
 * the object; connections are not forwarded), ECLOSED, ENOMEM, EMISUSE
 * (from a stead thread). */
int stead_connect(stead_rt *rt, const char *cls, const char *id, const void *meta,
                  size_t meta_len, stead_conn_message_fn on_message,
                  stead_conn_close_fn on_close, void *udata, stead_conn **out);

/* The same without blocking: on 0, `cb` runs exactly once (on a stead
 * thread, never inside this call) with the outcome; on an error return it
 * never runs. opts is read during the call. Errors returned: as
 * stead_connect before the object is asked. Thread-safe. */
int stead_connect_async(stead_rt *rt, const char *cls, const char *id, const void *meta,
                        size_t meta_len, const stead_conn_opts *opts, stead_connect_cb cb,
                        void *cb_udata);

/* Sends a message to the other end; `data` is copied.
 * Client's end: queued now as a turn of the object (on_conn_message).
 * Errors: EINVAL, ETOOBIG (over max_payload), ECLOSED (the connection or
 * the runtime is closed), EOVERLOAD (the object's mailbox is full;
 * retryable), ENOMEM. Thread-safe; one thread at a time per connection
 * keeps the order.
 * Object's end: only inside a turn of that object (else EMISUSE); sent
 * when the turn commits (dropped if it fails). Errors: EINVAL, ETOOBIG,
 * ECLOSED (already closed), ENOMEM. If the client's queue overflows when
 * it is released, the client is disconnected (STEAD_CLOSE_SLOW) and the
 * object gets on_conn_close.
 * STEAD_CONN_TEXT data must be UTF-8 (EINVAL). */
int stead_conn_send(stead_conn *conn, const void *data, size_t len, unsigned flags);

/* Closes the connection with `code` (0 means 1000; the client's end may
 * pass any code 1000..4999, as a WebSocket peer reports it; the object's
 * end only codes a close frame may carry: 1000..1003, 1007..1014,
 * 3000..4999)
 * and `reason` (may be NULL; copied, cut to STEAD_MAX_CONN_REASON).
 * Client's end: closes it if still open (the object's on_conn_close
 * runs as a turn, after the messages already sent), runs the client's
 * on_close if it has not run (waiting for a running on_message of this
 * connection on another thread to return), and releases the handle: it
 * must not be used again. Call it exactly once per connection, also
 * after the object or the runtime closed it, also after stead_close.
 * Object's end: only inside a turn of the object (EMISUSE); the close
 * happens when the turn commits, after the messages it sent; the client's
 * on_close gets code and reason. Closing a closed connection from the
 * object returns 0. Errors: EINVAL (bad code). */
int stead_conn_close(stead_conn *conn, int code, const char *reason);

/* A number naming the connection, unique within the runtime and the same
 * at both ends and across hibernation. 0 for NULL. Thread-safe. */
uint64_t stead_conn_id(const stead_conn *conn);

/* Inside on_connect: rejects the connection with a printf-style reason
 * (cut to STEAD_MAX_CONN_REASON bytes) that the client receives with
 * STEAD_EREJECTED. Returns STEAD_EREJECTED for
 * `return stead_conn_reject(ctx, "room is full")`. */
int stead_conn_reject(stead_ctx *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Inside a turn of the connection's object: sets its attachment (bytes
 * copied; len 0 clears it). Kept by the runtime while the connection is
 * open, across hibernation; takes effect at once (it is not rolled back
 * with a failed turn). Errors: EINVAL, ETOOBIG (over
 * STEAD_MAX_CONN_ATTACHMENT), EMISUSE (not the object's end, or not in a
 * turn of its object), ENOMEM. */
int stead_conn_set_attachment(stead_ctx *ctx, stead_conn *conn, const void *data,
                              size_t len);

/* Inside a turn of the connection's object: its attachment. *data points
 * to runtime memory valid until the end of the turn or the next
 * stead_conn_set_attachment (NULL with *len 0 when there is none).
 * Errors: EINVAL, EMISUSE. */
int stead_conn_attachment(stead_ctx *ctx, stead_conn *conn, const void **data,
                          size_t *len);

/* Inside a turn of the connection's object: adds a tag (1..256 bytes of
 * UTF-8, copied) for stead_conn_list; adding a tag it has is a no-op. At
 * once, like attachments. Errors: EINVAL, ETOOBIG (tag too long or
 * STEAD_MAX_CONN_TAGS already), EMISUSE, ENOMEM. */
int stead_conn_tag(stead_ctx *ctx, stead_conn *conn, const char *tag);

/* Inside a turn: the object's open connections (its ends), oldest first;
 * only those with tag `tag` unless it is NULL. On 0, *out is an array of
 * *n pointers the caller frees with stead_free (NULL when *n is 0); the
 * connections it points to stay valid until the end of the turn, even if
 * they close meanwhile. Errors: EINVAL, EMISUSE (not in a turn), ENOMEM. */
int stead_conn_list(stead_ctx *ctx, const char *tag, stead_conn ***out, size_t *n);

/* Counters of the runtime's connections (also in stead_metrics_text). */
typedef struct stead_conn_stats {
  uint64_t open;           /* open now (the object accepted, not closed) */
  uint64_t accepted;       /* connects accepted since open */
  uint64_t rejected;       /* connects refused (or failed) */
  uint64_t closed;         /* closes, all causes */
  uint64_t closed_slow;    /* clients disconnected for a full queue */
  uint64_t msgs_in;        /* client -> object messages queued */
  uint64_t msgs_out;       /* object -> client messages delivered */
  uint64_t msgs_discarded; /* object -> client messages for a closed end */
} stead_conn_stats;

/* Copies the counters into *out. Errors: EINVAL. Thread-safe. */
int stead_conn_get_stats(stead_rt *rt, stead_conn_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* STEAD_H */
