/*
 * fuzz_state.c -- libFuzzer target for the state-record decoder.
 *
 * Any input must either decode or fail with ECORRUPT (never crash, leak or
 * read out of bounds); a record that decodes must re-encode to bytes that
 * decode to the same struct (checked by re-encoding both and comparing).
 */
#include "core/seam.h"
#include "storage/state.h"

#include <stdlib.h>
#include <string.h>

typedef struct fz {
  int64_t i;
  double d;
  bool b;
  char *s;
  stead_bytes y;
  int64_t t;
} fz;

static const stead_field fz_fields[] = {
    STEAD_FIELD_INT64(fz, i, 1),      STEAD_FIELD_DOUBLE(fz, d, 2.0),
    STEAD_FIELD_BOOL(fz, b, false),   STEAD_FIELD_STRING(fz, s, "s"),
    STEAD_FIELD_BYTES(fz, y, "y", 1), STEAD_FIELD_TIMESTAMP(fz, t, 3),
};
static const stead_schema fz_schema = STEAD_SCHEMA(fz, fz_fields);

/* The target links only storage + util; ctx_api.c needs core's accessor. */
struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  (void)ctx;
  return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz a = {0};
  int rc = stead__state_decode(&fz_schema, data, size, &a);
  if (rc) {
    if (rc != STEAD_ECORRUPT)
      abort();
    return 0;
  }
  stead__buf e1 = {0}, e2 = {0};
  if (stead__state_encode(&fz_schema, &a, &e1))
    abort();
  fz b = {0};
  if (stead__state_decode(&fz_schema, e1.data, e1.len, &b))
    abort();
  if (stead__state_encode(&fz_schema, &b, &e2) || e1.len != e2.len ||
      memcmp(e1.data, e2.data, e1.len) != 0)
    abort();
  stead_state_release(&fz_schema, &a);
  stead_state_release(&fz_schema, &b);
  stead__buf_free(&e1);
  stead__buf_free(&e2);
  return 0;
}
