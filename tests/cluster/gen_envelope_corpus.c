/*
 * gen_envelope_corpus.c -- writes the seed corpus of the envelope fuzzer:
 * valid envelopes of every kind, plus truncations and one-byte corruptions
 * of them. Usage: gen_envelope_corpus DIR. Not a test; run by hand when the
 * format changes (see docs/cluster.md).
 */
#include <stdio.h>
#include <string.h>

#include "cluster/envelope.h"

static int n_written;

static void write_file(const char *dir, const char *name, const void *p, size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%02d-%s", dir, n_written++, name);
  FILE *f = fopen(path, "wb");
  if (!f)
    return;
  fwrite(p, 1, len, f);
  fclose(f);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  stead__env_header h[] = {{"trace-id", "abc"}, {"x-stead-epoch", "7"}, {"e", ""}};
  stead__env envs[] = {
      {.kind = STEAD__ENV_REQUEST,
       .shard = 7,
       .epoch = 3,
       .corr = 1,
       .created_ms = 1000,
       .deadline_ms = 5000,
       .ttl_ms = 100,
       .cls = "counter",
       .id = "a",
       .method = "incr",
       .headers = h,
       .nheaders = 3,
       .payload = "{\"n\":1}",
       .payload_len = 7},
      {.kind = STEAD__ENV_REQUEST,
       .shard = 65535,
       .cls = "c",
       .id = "\xe2\x82\xac",
       .method = "m"},
      {.kind = STEAD__ENV_ONEWAY,
       .cls = "room",
       .id = "lobby",
       .method = "post",
       .payload = "hi",
       .payload_len = 2},
      {.kind = STEAD__ENV_REPLY, .corr = 99, .payload = "ok", .payload_len = 2},
      {.kind = STEAD__ENV_REPLY},
      {.kind = STEAD__ENV_ERROR, .corr = 5, .status = -13, .message = "not owner"},
      {.kind = STEAD__ENV_ERROR,
       .status = -9,
       .message = "handler \xc3\xa9",
       .headers = h,
       .nheaders = 1},
  };
  const char *names[] = {"request",     "request-min", "oneway",   "reply",
                         "reply-empty", "error",       "error-hdr"};
  for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
    stead__buf b = {0};
    if (stead__env_encode(&envs[i], 0, STEAD__ENV_INTERNAL, &b) != 0) {
      fprintf(stderr, "%s: %s\n", names[i], stead_errmsg());
      return 1;
    }
    write_file(dir, names[i], b.data, b.len);
    if (i < 3) {
      write_file(dir, "trunc-fixed", b.data, 20);
      write_file(dir, "trunc-mid", b.data, b.len / 2 + 5);
      write_file(dir, "trunc-last", b.data, b.len - 1);
      b.data[b.len / 2] ^= 0x80;
      write_file(dir, "flip", b.data, b.len);
    }
    stead__buf_free(&b);
  }
  printf("wrote %d files\n", n_written);
  return 0;
}
