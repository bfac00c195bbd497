/*
 * ctx_stub.c -- stands in for core's stead__ctx_store: the alarm tests link
 * only the alarm, storage and util object libraries, and storage's in-turn
 * API references it. No turn runs here.
 */
#include "core/seam.h"

struct stead__objstore *stead__ctx_store(stead_ctx *ctx) {
  (void)ctx;
  return NULL;
}
