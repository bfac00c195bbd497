/*
 * params.c -- parsing of an object call's query parameters and headers
 * (see params.h). Owns nothing; thread-safe.
 *
 * Values are strict: a query value is percent-decoded and must not hide a
 * NUL byte ("timeout_ms=5%00x" is refused, not read as 5), and numbers are
 * whole decimal strings.
 */
#include "server/params.h"

#include "server/route.h"
#include "stead.h"
#include "util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Decodes a raw query value into buf. 0, or -1 when it is too long, badly
 * escaped or contains NUL. */
static int decode(const char *raw, char buf[STEAD__PARAM_MAX + 1]) {
  size_t len = strlen(raw);
  if (len > STEAD__PARAM_MAX)
    return -1;
  long n = stead__pct_decode(raw, len, buf);
  if (n < 0 || memchr(buf, '\0', (size_t)n))
    return -1;
  return 0;
}

static int parse_timeout(const char *raw, int *out) {
  char buf[STEAD__PARAM_MAX + 1];
  if (decode(raw, buf) != 0 || !buf[0])
    return -1;
  for (const char *p = buf; *p; p++)
    if (*p < '0' || *p > '9')
      return -1;
  errno = 0;
  long v = strtol(buf, NULL, 10);
  if (errno || v < 1 || v > 3600000)
    return -1;
  *out = (int)v;
  return 0;
}

int stead__call_params_parse(const char *timeout_raw, const char *mode_raw,
                             const char *ctype, const char *content_length,
                             size_t max_body, int default_timeout_ms,
                             stead__call_params *out, int *http_status) {
  memset(out, 0, sizeof *out);
  out->timeout_ms = default_timeout_ms;
  *http_status = 400;
  if (timeout_raw && parse_timeout(timeout_raw, &out->timeout_ms) != 0)
    return stead__err(STEAD_EINVAL, "timeout_ms must be an integer in 1..3600000");
  if (mode_raw) {
    char buf[STEAD__PARAM_MAX + 1];
    if (decode(mode_raw, buf) != 0 ||
        (strcmp(buf, "send") != 0 && strcmp(buf, "call") != 0))
      return stead__err(STEAD_EINVAL, "mode must be call or send");
    out->mode_send = strcmp(buf, "send") == 0;
  }
  out->json_body = ctype && strncmp(ctype, "application/json", 16) == 0;
  /* Refuse a declared oversize body before it is uploaded. */
  if (content_length) {
    const char *p = content_length;
    int digits = *p != '\0';
    for (; *p; p++)
      digits &= *p >= '0' && *p <= '9';
    if (!digits)
      return stead__err(STEAD_EINVAL, "Content-Length \"%.40s\" is not a number",
                        content_length);
    errno = 0;
    unsigned long long n = strtoull(content_length, NULL, 10);
    if (errno || (unsigned long long)max_body < n) {
      *http_status = 413;
      return stead__err(STEAD_ETOOBIG, "request body is %.40s bytes; the limit is %zu",
                        content_length, max_body);
    }
  }
  *http_status = 200;
  return 0;
}
