/*
 * faults.h -- shared parts of the single-node fault campaigns
 * (tests/faults/campaign.c): the ledger of what clients sent and were
 * told, and the final reconciliation against what the store holds.
 *
 * Accounting of one counter object, incremented by 1 per request:
 *   acked     the server answered success: the increment is durable;
 *   failed    the server answered an error before or instead of running
 *             the turn (e.g. 503 ECLOSED, ESTORAGE): it did not apply;
 *   unknown   no answer (connection cut, kill -9, timeout): it may or may
 *             not have applied.
 * With C the count read back at the end, the invariants are
 *   acked <= C              else "lost" = acked - C acknowledged writes;
 *   C <= acked + unknown    else "duplicates" = C - acked - unknown
 *                           increments applied twice, or applied although
 *                           the client was told they failed.
 */
#ifndef STEAD_TESTS_FAULTS_H
#define STEAD_TESTS_FAULTS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define FX_IDS 32

typedef struct fx_ledger {
  atomic_long sent, acked, failed, unknown;
  atomic_long id_acked[FX_IDS], id_unknown[FX_IDS];
} fx_ledger;

typedef struct fx_result {
  const char *campaign;
  long rounds, faults;
  long sent, acked, failed, unknown;
  long lost, dups, other; /* other: a campaign-specific violation count */
  const char *other_name;
  const char *note;
} fx_result;

/* Reconciles one counter id: adds to r->lost / r->dups. */
static inline void fx_reconcile(const fx_ledger *l, int i, long count, fx_result *r) {
  long a = atomic_load(&l->id_acked[i]), u = atomic_load(&l->id_unknown[i]);
  if (count < a)
    r->lost += a - count;
  if (count > a + u)
    r->dups += count - a - u;
}

static inline void fx_fill(const fx_ledger *l, fx_result *r) {
  r->sent = atomic_load(&l->sent);
  r->acked = atomic_load(&l->acked);
  r->failed = atomic_load(&l->failed);
  r->unknown = atomic_load(&l->unknown);
}

/* One line per campaign, and 0 when every invariant held. */
static inline int fx_report(const fx_result *r) {
  int ok = r->lost == 0 && r->dups == 0 && r->other == 0;
  printf("%-10s rounds=%ld faults=%ld sent=%ld acked=%ld failed_retryable=%ld "
         "unknown=%ld lost=%ld duplicates=%ld",
         r->campaign, r->rounds, r->faults, r->sent, r->acked, r->failed, r->unknown,
         r->lost, r->dups);
  if (r->other_name)
    printf(" %s=%ld", r->other_name, r->other);
  printf(" %s%s%s\n", ok ? "OK" : "VIOLATION", r->note ? " -- " : "",
         r->note ? r->note : "");
  fflush(stdout);
  return ok ? 0 : 1;
}

#endif
