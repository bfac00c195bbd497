/*
 * echo.c -- class "echo": the smallest useful object, for trying the HTTP
 * gateway and for testing every status it can answer (a reply, a handler
 * failure, a deadline). Stateless: any id works and none keeps data.
 */
#include "examples.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int echo_echo(stead_ctx *ctx, const void *arg, size_t len) {
  return stead_reply(ctx, arg, len);
}

static int echo_fail(stead_ctx *ctx, const void *arg, size_t len) {
  if (len == 0)
    return stead_fail(ctx, "failed on request");
  return stead_fail(ctx, "%.*s", (int)(len > 1024 ? 1024 : len), (const char *)arg);
}

static int echo_sleep(stead_ctx *ctx, const void *arg, size_t len) {
  char buf[32];
  if (len == 0 || len >= sizeof buf)
    return stead_fail(ctx, "sleep needs a number of milliseconds (0..60000)");
  memcpy(buf, arg, len);
  buf[len] = '\0';
  char *end;
  long ms = strtol(buf, &end, 10);
  if (end == buf || *end || ms < 0 || ms > 60000)
    return stead_fail(ctx, "sleep needs a number of milliseconds (0..60000), got \"%s\"",
                      buf);
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
  return stead_reply(ctx, "\"slept\"", 7);
}

static const stead_method echo_methods[] = {
    {"echo", echo_echo}, {"fail", echo_fail}, {"sleep", echo_sleep}, {NULL, NULL}};

const stead_class stead_example_echo = {.name = "echo", .methods = echo_methods};
