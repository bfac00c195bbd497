/*
 * params.h -- the per-request parameters of an object call, parsed from
 * the query string and headers the way the gateway sees them. Pure: no
 * I/O, no libmicrohttpd, so the fuzzer (tests/server/fuzz_request.c) and
 * the unit tests run exactly what the server runs.
 */
#ifndef STEAD_SERVER_PARAMS_H
#define STEAD_SERVER_PARAMS_H

#include <stddef.h>

typedef struct stead__call_params {
  int timeout_ms; /* 1..3600000 */
  int mode_send;  /* ?mode=send: fire-and-forget */
  int json_body;  /* Content-Type: application/json... */
} stead__call_params;

/* The longest raw (percent-encoded) query value the gateway accepts for
 * timeout_ms and mode. */
#define STEAD__PARAM_MAX 63

/* Parses a call's parameters. Each argument is the raw value as received,
 * or NULL when absent: `timeout_raw` and `mode_raw` are still
 * percent-encoded query values; `ctype` and `content_length` are header
 * values. Returns 0 and fills *out, or a negative code with the thread's
 * message set and *http_status set: EINVAL/400 (timeout_ms not an integer
 * in 1..3600000, mode not call or send, a bad percent-escape or a NUL
 * byte in a value, a value over STEAD__PARAM_MAX bytes, or a
 * Content-Length that is not a decimal number), ETOOBIG/413
 * (Content-Length over max_body). */
int stead__call_params_parse(const char *timeout_raw, const char *mode_raw,
                             const char *ctype, const char *content_length,
                             size_t max_body, int default_timeout_ms,
                             stead__call_params *out, int *http_status);

#endif
