/*
 * ctx_stub.c -- stands in for core's stead__ctx_store in storage tests that
 * link only the storage and util object libraries (ctx_api.c references
 * it). No turn is ever running here, so it returns NULL.
 */
#include "core/seam.h"

struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  (void)ctx;
  return NULL;
}
