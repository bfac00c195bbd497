/*
 * fuzz_args.c -- libFuzzer target for call arguments as the example
 * classes compiled into `stead serve` parse them (JSON bodies, integers),
 * through the real runtime: the bytes reach the handler exactly as an
 * HTTP body reaches it through the gateway.
 *
 * Input: byte 0 picks (class, method), byte 1 the object id (one of 4),
 * the rest is the argument. Checks: a call never fails with a code that
 * means the runtime itself broke (storage, corruption, misuse, timeout);
 * a successful reply of a JSON-speaking class is valid JSON, and echo
 * replies its argument unchanged.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzrt.h"

typedef struct target {
  const char *cls, *method;
  int json_reply;
} target;

static const target T[] = {
    {"counter", "increment", 1}, {"counter", "get", 1},
    {"counter", "reset", 1},     {"echo", "echo", 0},
    {"echo", "fail", 0},         {"chatroom", "post", 1},
    {"chatroom", "history", 1},  {"ratelimiter", "check", 1},
    {"reminder", "schedule", 1}, {"reminder", "cancel", 1},
    {"reminder", "fired", 1},    {"account", "deposit", 1},
    {"account", "withdraw", 1},  {"account", "balance", 1},
    {"account", "history", 1},   {"counter", "no-such-method", 0},
};
#define NT (sizeof T / sizeof T[0])

static int allowed(int rc) {
  return rc == 0 || rc == STEAD_EINVAL || rc == STEAD_EHANDLER || rc == STEAD_ETOOBIG ||
         rc == STEAD_ENOMETHOD;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  stead_rt *rt = fuzzrt_get();
  const target *t = &T[data[0] % NT];
  static const char *const ids[] = {"a", "b", "room-1", "x.y"};
  const char *id = ids[data[1] % 4];
  void *reply = NULL;
  size_t len = 0;
  int rc = stead_call(rt, t->cls, id, t->method, data + 2, size - 2, 10000, &reply, &len);
  if (!allowed(rc))
    abort();
  if (rc == 0 && t->json_reply) {
    json_error_t err;
    json_t *j = json_loadb(reply, len, JSON_DECODE_ANY, &err);
    if (!j)
      abort();
    json_decref(j);
  }
  if (rc == 0 && strcmp(t->method, "echo") == 0 &&
      (len != size - 2 || (len && memcmp(reply, data + 2, len) != 0)))
    abort();
  stead_free(reply);
  return 0;
}
