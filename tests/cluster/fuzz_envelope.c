/*
 * fuzz_envelope.c -- libFuzzer target for the envelope decoder.
 *
 * Any input must decode or fail cleanly. A successful decode must re-encode
 * (the encoder accepts everything the decoder does) to the very same bytes
 * (the format is canonical), and that decodes again to equal fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/envelope.h"

static void same_env(const stead__env *a, const stead__env *b) {
  if (a->kind != b->kind || a->shard != b->shard || a->epoch != b->epoch ||
      a->corr != b->corr || a->created_ms != b->created_ms ||
      a->deadline_ms != b->deadline_ms || a->ttl_ms != b->ttl_ms ||
      a->status != b->status || strcmp(a->cls, b->cls) || strcmp(a->id, b->id) ||
      strcmp(a->method, b->method) || strcmp(a->message, b->message) ||
      a->nheaders != b->nheaders || a->payload_len != b->payload_len ||
      (a->payload_len && memcmp(a->payload, b->payload, a->payload_len)))
    abort();
  for (size_t i = 0; i < a->nheaders; i++)
    if (strcmp(a->headers[i].key, b->headers[i].key) ||
        strcmp(a->headers[i].value, b->headers[i].value))
      abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  stead__env e;
  /* A small payload limit lets the fuzzer reach the ETOOBIG path too. */
  if (stead__env_decode(data, size, 1 << 16, 0, &e) != 0)
    return 0;
  stead__buf b = {0};
  if (stead__env_encode(&e, 1 << 16, STEAD__ENV_INTERNAL, &b) != 0)
    abort();
  if (b.len != size || memcmp(b.data, data, size) != 0)
    abort();
  stead__env e2;
  if (stead__env_decode(b.data, b.len, 1 << 16, STEAD__ENV_COPY_PAYLOAD, &e2) != 0)
    abort();
  same_env(&e, &e2);
  (void)stead__env_expired(&e, 0);
  stead__env_free(&e2);
  stead__env_free(&e);
  stead__buf_free(&b);
  return 0;
}
