/*
 * fuzz_opts.c -- libFuzzer target for `stead serve` configuration: flags
 * and STEAD_* environment variables (server/opts.c).
 *
 * Input: byte 0 mod 8 is how many of the NUL-separated strings that follow
 * are environment entries ("NAME=VALUE"); the rest are argv. Checks the
 * parser's promises: 0, 1 (only when -h/--help is among the arguments) or
 * EINVAL; parsed options are within their documented ranges; parsing is
 * a pure function of its input (a second parse gives the same options).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/opts.h"
#include "util/util.h"

#define MAXV 48

typedef struct input {
  const char *env[8];
  int nenv;
  char *argv[MAXV];
  int argc;
} input;

static _Thread_local const input *cur;

static const char *fz_getenv(const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < cur->nenv; i++)
    if (strncmp(cur->env[i], name, n) == 0 && cur->env[i][n] == '=')
      return cur->env[i] + n + 1;
  return NULL;
}

static int has_help(const input *in) {
  for (int i = 0; i < in->argc; i++)
    if (strcmp(in->argv[i], "-h") == 0 || strcmp(in->argv[i], "--help") == 0)
      return 1;
  return 0;
}

static void check(const stead__serve_opts *o) {
  if (!o->listen || !o->data || !*o->data || !o->storage || !o->durability)
    abort();
  if (o->port < 0 || o->port > 65535 ||
      strnlen(o->host, sizeof o->host) == sizeof o->host)
    abort();
  if (o->shards < 1 || o->shards > 65536 || o->workers < 0 || o->workers > 1024)
    abort();
  if (o->http_threads < 1 || o->http_threads > 256 || o->max_body < 1 ||
      o->max_body > ((size_t)1 << 30))
    abort();
  if (strcmp(o->durability, "full") != 0 && strcmp(o->durability, "normal") != 0)
    abort();
  if (strcmp(o->storage, "memory") != 0 && strcmp(o->storage, "sqlite") != 0 &&
      strncmp(o->storage, "postgres://", 11) != 0 &&
      strncmp(o->storage, "postgresql://", 13) != 0)
    abort();
  if (o->nats && strncmp(o->nats, "nats://", 7) != 0)
    abort();
  if (o->node_id && stead__check_name("node id", o->node_id) != 0)
    abort();
  if (o->nloads < 0 || o->nloads > STEAD__MAX_LOADS)
    abort();
  for (int i = 0; i < o->nloads; i++)
    if (!o->loads[i] || !*o->loads[i])
      abort();
  if ((int)o->log_level < 0 || (int)o->log_level > 3)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  char *buf = malloc(size);
  if (!buf)
    return 0;
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  input in = {.nenv = 0, .argc = 0};
  int want_env = data[0] % 8;
  const char *p = buf, *end = buf + size - 1;
  while (p < end || (p == end && size > 1 && in.argc + in.nenv == 0)) {
    if (in.nenv < want_env)
      in.env[in.nenv++] = p;
    else if (in.argc < MAXV)
      in.argv[in.argc++] = (char *)p;
    else
      break;
    p += strlen(p) + 1;
  }
  cur = &in;
  stead__serve_opts a, b;
  int rc = stead__serve_opts_parse(&a, in.argc, in.argv, fz_getenv);
  if (rc == 1 && !has_help(&in))
    abort();
  if (rc != 0 && rc != 1 && rc != STEAD_EINVAL)
    abort();
  if (rc == STEAD_EINVAL && !*stead_errmsg())
    abort(); /* a refusal always says why */
  if (rc == 0) {
    check(&a);
    if (stead__serve_opts_parse(&b, in.argc, in.argv, fz_getenv) != 0 ||
        memcmp(&a, &b, sizeof a) != 0)
      abort();
    int crc = stead__serve_opts_check(&a);
    if (crc != 0 && (crc != STEAD_EINVAL || !*stead_errmsg()))
      abort(); /* the cross-flag check refuses with EINVAL and says why */
  }
  cur = NULL;
  free(buf);
  return 0;
}
