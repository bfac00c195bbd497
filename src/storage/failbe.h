/*
 * failbe.h -- a failure-injection backend wrapper for tests: makes commits
 * fail (the next N, or those a predicate picks) with ESTORAGE, report an
 * unknown outcome (EUNKNOWN after actually committing), or run slowly.
 * Reads pass through. Thread-safe: settings are atomics.
 */
#ifndef STEAD_STORAGE_FAILBE_H
#define STEAD_STORAGE_FAILBE_H

#include "storage/backend.h"

/* Returns 1 to fail this commit. Called on the committing thread. */
typedef int (*stead__fail_pred)(void *u, stead__wset *const *sets, size_t n);

/* Wraps `inner`, which the wrapper then owns (closing it closes inner). */
int stead__failbe_wrap(stead__backend *inner, stead__backend **out);
/* The next n commits fail with ESTORAGE and change nothing. */
void stead__failbe_fail_next(stead__backend *b, int n);
/* Commits for which pred returns 1 fail with ESTORAGE. NULL clears it. */
void stead__failbe_set_pred(stead__backend *b, stead__fail_pred pred, void *u);
/* The next n commits are applied, then reported as STEAD_EUNKNOWN. */
void stead__failbe_unknown_next(stead__backend *b, int n);
/* Every commit sleeps this long first (a slow disk). */
void stead__failbe_set_delay_us(stead__backend *b, int us);
/* Commit calls seen so far, and how many sets they carried in total. */
uint64_t stead__failbe_commits(stead__backend *b);
uint64_t stead__failbe_sets(stead__backend *b);

#endif
