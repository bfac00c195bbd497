/*
 * fuzz_request.c -- libFuzzer target for the call parameters the gateway
 * takes from a request's query string and headers (server/params.c).
 *
 * Input: byte 0 is a mask of which of the four values are present
 * (timeout_ms, mode, Content-Type, Content-Length); the rest is split on
 * NUL bytes into those values. Checks the parser's promises: an accepted
 * request has a timeout in 1..3600000 equal to the decoded value, a mode
 * of exactly call or send, and a declared length within max_body; a
 * refused one has status 400 (EINVAL) or 413 (ETOOBIG, declared length
 * over the limit). Encoding the decoded values again must not change the
 * outcome.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/params.h"
#include "server/route.h"
#include "stead.h"

#define MAX_BODY 4096

static void check(const char *f[4], int rc, const stead__call_params *p, int st) {
  if (rc == 0) {
    if (st != 200 || p->timeout_ms < 1 || p->timeout_ms > 3600000)
      abort();
    if (!f[0] && p->timeout_ms != 1234)
      abort();
    if (f[3] && strtoull(f[3], NULL, 10) > MAX_BODY)
      abort();
    if (!f[1] && p->mode_send)
      abort();
    return;
  }
  if (!((rc == STEAD_EINVAL && st == 400) || (rc == STEAD_ETOOBIG && st == 413)))
    abort();
}

/* The decoded form of a raw query value, re-encoded: must parse the same. */
static char *reencode(const char *raw) {
  size_t len = strlen(raw);
  char *d = malloc(len + 1);
  if (!d)
    abort();
  long n = stead__pct_decode(raw, len, d);
  char *e = n < 0 ? NULL : stead__pct_encode(d, (size_t)n);
  free(d);
  return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  char *buf = malloc(size + 1);
  if (!buf)
    return 0;
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  const char *f[4] = {NULL, NULL, NULL, NULL};
  const char *p = buf, *end = buf + size - 1;
  for (int i = 0; i < 4; i++) {
    if (data[0] & (1u << i))
      f[i] = p;
    if (p < end)
      p += strlen(p) + 1;
    if (p > end)
      p = end; /* further values are empty strings, never past the buffer */
  }
  stead__call_params cp;
  int st = 0;
  int rc = stead__call_params_parse(f[0], f[1], f[2], f[3], MAX_BODY, 1234, &cp, &st);
  check(f, rc, &cp, st);
  if (rc == 0 && f[0]) {
    char d[STEAD__PARAM_MAX + 1];
    if (stead__pct_decode(f[0], strlen(f[0]), d) < 0 ||
        strtol(d, NULL, 10) != cp.timeout_ms)
      abort();
  }
  if (rc == 0 && f[1]) {
    char d[STEAD__PARAM_MAX + 1];
    if (stead__pct_decode(f[1], strlen(f[1]), d) < 0 ||
        strcmp(d, cp.mode_send ? "send" : "call") != 0)
      abort();
  }
  /* Re-encoding the query values keeps an accepted request accepted with
   * the same values (encodings longer than the limit may be refused). */
  char *t2 = f[0] ? reencode(f[0]) : NULL, *m2 = f[1] ? reencode(f[1]) : NULL;
  if (rc == 0 && (!f[0] || t2) && (!f[1] || m2)) {
    stead__call_params cp2;
    int st2 = 0;
    int rc2 = stead__call_params_parse(t2, m2, f[2], f[3], MAX_BODY, 1234, &cp2, &st2);
    int too_long =
        (t2 && strlen(t2) > STEAD__PARAM_MAX) || (m2 && strlen(m2) > STEAD__PARAM_MAX);
    if (!too_long && (rc2 != 0 || cp2.timeout_ms != cp.timeout_ms ||
                      cp2.mode_send != cp.mode_send || cp2.json_body != cp.json_body))
      abort();
  }
  free(t2);
  free(m2);
  free(buf);
  return 0;
}
