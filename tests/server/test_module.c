/*
 * test_module.c -- a module for `stead serve --load`: registers class
 * "greeter" whose method "hello" replies "hello, <arg>".
 */
#include "stead.h"

#include <stdio.h>

static int hello(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "hello, %.*s", (int)(len > 200 ? 200 : len),
                   (const char *)arg);
  return stead_reply(ctx, buf, (size_t)n);
}

static const stead_method methods[] = {{"hello", hello}, {NULL, NULL}};
static const stead_class greeter = {.name = "greeter", .methods = methods};

int stead_module_init(stead_rt *rt);
int stead_module_init(stead_rt *rt) {
  return stead_register(rt, &greeter);
}
