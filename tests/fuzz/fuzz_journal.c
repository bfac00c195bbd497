/*
 * fuzz_journal.c -- libFuzzer target for the journal and snapshot records
 * of event-sourced objects (src/loop/es_object.c) as read back from
 * storage, replayed through the real runtime and the "account" example
 * program compiled into `stead serve`.
 *
 * Input: a sequence of records, each [kind][seq][len][len bytes]: kind
 * even = journal entry, odd = snapshot; seq is its sequence number. They
 * replace the object's journal and snapshots in the backend, then the
 * object is activated. Checks: loading either works or fails with
 * ECORRUPT (never a crash, a hang or another code); a model that loads
 * answers its queries with JSON, and loading it a second time from the
 * same records gives the same balance (replay is deterministic).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "fuzzrt.h"
#include "loop/es_object.h"
#include "storage/backend.h"

static void load_records(stead_rt *rt, const uint8_t *data, size_t size) {
  stead__backend *b = stead__rt_backend(rt);
  stead__wset *ws = stead__wset_new("account", "f");
  if (!ws)
    abort();
  stead__wset_delete_all(ws, STEAD__NS_JOURNAL);
  stead__wset_delete_all(ws, STEAD__NS_SNAPSHOT);
  size_t i = 0;
  while (i + 3 <= size) {
    uint8_t ns = data[i] & 1 ? STEAD__NS_SNAPSHOT : STEAD__NS_JOURNAL;
    uint8_t key[8];
    stead__es_be64(key, data[i + 1]);
    size_t n = data[i + 2];
    i += 3;
    if (n > size - i)
      n = size - i;
    if (stead__wset_put(ws, ns, key, 8, data + i, n) != 0)
      abort();
    i += n;
  }
  if (b->vt->commit(b, &ws, 1) != 0)
    abort();
  stead__wset_unref(ws);
}

/* The balance, or the load's failure code. */
static int balance(stead_rt *rt, long long *out) {
  void *reply = NULL;
  size_t len = 0;
  int rc = stead_call(rt, "account", "f", "balance", NULL, 0, 10000, &reply, &len);
  if (rc == 0) {
    json_error_t err;
    json_t *j = json_loadb(reply, len, JSON_DECODE_ANY, &err);
    if (!j || !json_is_integer(j))
      abort();
    *out = json_integer_value(j);
    json_decref(j);
  }
  stead_free(reply);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  stead_rt *rt = fuzzrt_get();
  if (stead_deactivate(rt, "account", "f") != 0)
    abort();
  load_records(rt, data, size);
  long long b1 = 0, b2 = 0;
  int rc = balance(rt, &b1);
  if (rc != 0 && rc != STEAD_ECORRUPT)
    abort();
  if (rc == 0) {
    void *reply = NULL;
    size_t len = 0;
    if (stead_call(rt, "account", "f", "history", NULL, 0, 10000, &reply, &len) != 0)
      abort();
    json_error_t err;
    json_t *j = json_loadb(reply, len, 0, &err);
    if (!j || !json_is_array(j))
      abort();
    json_decref(j);
    stead_free(reply);
    if (stead_deactivate(rt, "account", "f") != 0 || balance(rt, &b2) != 0 || b1 != b2)
      abort();
  }
  if (stead_deactivate(rt, "account", "f") != 0)
    abort();
  return 0;
}
