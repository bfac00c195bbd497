/*
 * ctx_stub.c -- stands in for core's stead__ctx_store: the alarm tests link
 * only the alarm, storage and util object libraries, and storage's in-turn
 * API references it. No turn runs here. Declared here rather than through
 * core/seam.h so core's header can change without touching these tests.
 */
#include "stead.h"

struct stead__objstore;
struct stead__objstore *stead__ctx_store(stead_ctx *ctx);

struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  (void)ctx;
  return NULL;
}
