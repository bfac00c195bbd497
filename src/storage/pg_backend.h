/*
 * pg_backend.h -- the PostgreSQL backend: opening it from a parsed URI.
 *
 * The spec is a libpq URI, "postgres://..." or "postgresql://...", whose
 * query string may carry stead's own options besides libpq's:
 *   prefix=NAME           table name prefix, [a-z][a-z0-9_]{0,39}; default
 *                         "stead" (tables NAME_kv, NAME_alarms, ...)
 *   pool=N                reader connections, 1..64; default 4
 *   durability=full|normal  normal sets synchronous_commit=off
 *   statement_timeout_ms=N  server-side statement timeout; default none
 *   lock_timeout_ms=N     how long a statement waits for a row lock before it
 *                         fails (ESTORAGE); default none
 *   idle_tx_timeout_ms=N  the server aborts a transaction of ours left open
 *                         this long (the process stalled mid-commit), so its
 *                         locks cannot hold other nodes up; default 10000,
 *                         0 = none
 * Every other option is passed to libpq unchanged (sslmode, options, ...).
 * connect_timeout defaults to 5 s when the URI does not set it.
 */
#ifndef STEAD_STORAGE_PG_BACKEND_H
#define STEAD_STORAGE_PG_BACKEND_H

#include "storage/backend.h"

/* A URI with stead's options taken out. */
typedef struct stead__pg_uri {
  char *conninfo; /* malloc'd: what libpq gets (libpq's options kept) */
  char prefix[48];
  int pool;            /* 1..64 */
  int stmt_timeout_ms; /* 0: none */
  int lock_timeout_ms; /* 0: none */
  int idle_tx_ms;      /* 0: none */
  int normal;          /* durability=normal */
} stead__pg_uri;

/* Parses `uri` (no I/O): stead's options into *out, the rest kept for
 * libpq, connect_timeout=5 added when absent, and the result checked by
 * libpq's own parser. On success the caller frees out->conninfo. Errors:
 * EINVAL (bad option or URI; message names it), ENOMEM. */
int stead__pg_uri_parse(const char *uri, stead__pg_uri *out);

/* Opens the backend: connects, creates or migrates the schema under the
 * prefix (an advisory lock serialises nodes starting at once). Errors:
 * EINVAL (bad option), ESTORAGE (cannot connect; the server's message),
 * ENOTSUP (schema written by a newer stead), ENOMEM. */
int stead__pg_open(const char *uri, stead__backend **out);

/* 1 if `b` is a PostgreSQL backend. */
int stead__pg_is(const stead__backend *b);

#endif
