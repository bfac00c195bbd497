/*
 * lease.h -- shard leases kept in the shared PostgreSQL database, and the
 * fencing that ties a node's writes to the lease it holds.
 *
 * A lease row is (shard, owner, epoch, expires). Every call is a single
 * compare-and-set statement, and expiry is computed with the database's
 * clock (clock_timestamp() + ttl), so nodes with skewed clocks still agree
 * on who holds a shard. The epoch grows by one every time the lease is
 * taken by a new tenure (another owner, or the same owner after the lease
 * expired or was released), so (shard, epoch) names one tenure: a write set
 * carrying it (stead__wset.shard/.epoch, epoch != 0) commits only while
 * that tenure lasts; otherwise its batch fails with STEAD_ENOTOWNER.
 *
 * A node that wants to know how long it may act without renewing should
 * measure from BEFORE it sent acquire/renew: the database's expiry is at
 * least that instant plus ttl_ms.
 *
 * All functions are thread-safe and run one short statement on a reader
 * connection. They work on PostgreSQL backends only (else ENOTSUP).
 * Errors common to all: EINVAL (NULL / empty owner / ttl out of 1..1e9),
 * ESTORAGE (the database failed; the server's message), ENOTSUP.
 */
#ifndef STEAD_STORAGE_LEASE_H
#define STEAD_STORAGE_LEASE_H

#include "storage/backend.h"

#include <stdint.h>

/* Takes the lease on `shard` for `owner` (any UTF-8 up to 256 bytes) for
 * ttl_ms, if it is free, expired, or already held by `owner`. Held and
 * unexpired by `owner`: extended, same epoch. Otherwise a new tenure: the
 * epoch is bumped. *epoch receives the tenure's epoch (>= 1). Errors:
 * ENOTOWNER (another owner holds it unexpired). */
int stead__lease_acquire(stead__backend *b, uint32_t shard, const char *owner,
                         int64_t ttl_ms, uint64_t *epoch);

/* Extends the tenure (shard, owner, epoch) to now + ttl_ms if it has not
 * expired. Errors: ENOTOWNER (expired, released or taken over). */
int stead__lease_renew(stead__backend *b, uint32_t shard, const char *owner,
                       uint64_t epoch, int64_t ttl_ms);

/* Ends the tenure at once, so another node can take the shard without
 * waiting for the expiry. Errors: ENOTOWNER (not this tenure any more;
 * nothing changed). */
int stead__lease_release(stead__backend *b, uint32_t shard, const char *owner,
                         uint64_t epoch);

/* One lease as stored; `owner` is valid during the callback only. */
typedef struct stead__lease {
  uint32_t shard;
  const char *owner; /* last owner; meaningful when held */
  uint64_t epoch;
  int held;             /* unexpired now, by the database's clock */
  int64_t remaining_ms; /* time left when held, else 0 */
} stead__lease;

/* Calls cb for every lease row, by shard. cb returns 0 to go on, 1 to
 * stop, or a negative code to stop and return it. */
int stead__lease_list(stead__backend *b, int (*cb)(void *u, const stead__lease *l),
                      void *u);

#endif
