/*
 * test_module_bad.c -- a module whose init fails (registers "echo", which
 * the server already has), for the --load error path.
 */
#include "stead.h"

static int nop(stead_ctx *ctx, const void *arg, size_t len) {
  return 0;
}

static const stead_method methods[] = {{"nop", nop}, {NULL, NULL}};
static const stead_class dup = {.name = "echo", .methods = methods};

int stead_module_init(stead_rt *rt);
int stead_module_init(stead_rt *rt) {
  return stead_register(rt, &dup);
}
