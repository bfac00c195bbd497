/*
 * envelope.h -- the versioned binary envelope that carries calls between
 * nodes (internal API).
 *
 * Wire format, version 1. Integers little-endian; lengths count bytes.
 *
 *   off  size  field
 *     0     2  magic "SE"
 *     2     1  version (1)
 *     3     1  kind: 1 request, 2 reply, 3 one-way, 4 error reply
 *     4     1  flags (0 in version 1; anything else is rejected)
 *     5     4  shard (u32, < STEAD_MAX_SHARDS)
 *     9     8  fencing epoch (u64)
 *    17     8  correlation id (u64)
 *    25     8  created-at, ms since the Unix epoch (i64, >= 0)
 *    33     8  deadline, absolute ms since the epoch (i64, 0 = none, >= 0)
 *    41     4  TTL ms, relative to created-at (u32, 0 = none)
 *    45     4  status (i32): 0, or a negative STEAD_E* code in an error reply
 *    49        class   u8 len + bytes   (name, <= 128)
 *              id      u16 len + bytes  (UTF-8, <= 1024)
 *              method  u8 len + bytes   (name, <= 128)
 *              headers u16 count, then per header:
 *                        u8 key len + key (name, 1..128),
 *                        u16 value len + value (UTF-8, <= 1024)
 *              message u16 len + bytes  (UTF-8, <= 1024; error replies only)
 *              payload u32 len + bytes  (<= max_payload), ending the buffer
 *
 * The encoding is canonical: a buffer that decodes re-encodes to the same
 * bytes. Trailing bytes are an error.
 *
 * Threads: none; functions are reentrant.
 */
#ifndef STEAD_CLUSTER_ENVELOPE_H
#define STEAD_CLUSTER_ENVELOPE_H

#include "util/util.h"

#include <stdint.h>

#define STEAD__ENV_VERSION 1
#define STEAD__ENV_FIXED   49 /* bytes before the class length */

/* Documented limits. */
#define STEAD__ENV_MAX_HEADERS         32
#define STEAD__ENV_MAX_HEADER_KEY      128
#define STEAD__ENV_MAX_HEADER_VALUE    1024
#define STEAD__ENV_MAX_HEADER_BYTES    8192 /* sum of keys and values */
#define STEAD__ENV_MAX_MESSAGE         1024
#define STEAD__ENV_DEFAULT_MAX_PAYLOAD ((size_t)4 << 20)
#define STEAD__ENV_RESERVED_PREFIX     "x-stead-" /* matched case-insensitively */

typedef enum stead__env_kind {
  STEAD__ENV_REQUEST = 1,
  STEAD__ENV_REPLY = 2,
  STEAD__ENV_ONEWAY = 3,
  STEAD__ENV_ERROR = 4,
} stead__env_kind;

typedef struct stead__env_header {
  const char *key;   /* a name: [A-Za-z0-9_.-], 1..128 bytes */
  const char *value; /* UTF-8, 0..1024 bytes */
} stead__env_header;

/* An envelope. To encode, fill the fields (pointers are borrowed for the
 * call); NULL strings mean empty. A decoded envelope owns its strings and
 * header array (release with stead__env_free); its payload points into the
 * decoded buffer unless STEAD__ENV_COPY_PAYLOAD was given. */
typedef struct stead__env {
  stead__env_kind kind;
  uint32_t shard;
  uint64_t epoch;      /* fencing epoch of the sender's shard lease */
  uint64_t corr;       /* correlation id, echoed in replies */
  int64_t created_ms;  /* wall ms when the sender built it */
  int64_t deadline_ms; /* absolute wall ms; 0 = none */
  uint32_t ttl_ms;     /* relative to created_ms; 0 = none */
  int32_t status;      /* 0, or < 0 in an error reply */
  const char *cls;     /* requests and one-ways: required */
  const char *id;      /* requests and one-ways: required */
  const char *method;  /* requests and one-ways: required */
  const stead__env_header *headers;
  size_t nheaders;
  const char *message; /* error replies only */
  const void *payload;
  size_t payload_len;
  void *owned_; /* decode's allocation; NULL for caller-built envelopes */
} stead__env;

/* Flags. */
#define STEAD__ENV_INTERNAL     1u /* encode/check: allow x-stead- headers */
#define STEAD__ENV_COPY_PAYLOAD 2u /* decode: copy the payload too */

/* Checks user-supplied headers: count, sizes, names, UTF-8, duplicates and,
 * unless STEAD__ENV_INTERNAL, the reserved x-stead- prefix. Errors: EINVAL
 * (the message names the header), ETOOBIG. */
int stead__env_check_headers(const stead__env_header *h, size_t n, unsigned flags);

/* Appends the encoding of `e` to `out`. Validates every field first, so a
 * successful encode always decodes. max_payload 0 means the default.
 * Errors: EINVAL (bad kind, name, id, header, status for the kind),
 * ETOOBIG (a field over its limit), ENOMEM. `out` is unchanged on error. */
int stead__env_encode(const stead__env *e, size_t max_payload, unsigned flags,
                      stead__buf *out);

/* Decodes `len` bytes at `data` into *out. Never reads outside
 * [data, data+len). On success the caller releases *out with
 * stead__env_free; `data` must outlive *out unless STEAD__ENV_COPY_PAYLOAD.
 * Errors: EPROTO (malformed; the message says which field and why),
 * ETOOBIG (well-formed, but the payload is over max_payload), ENOMEM.
 * On error *out is zeroed and owns nothing. */
int stead__env_decode(const void *data, size_t len, size_t max_payload, unsigned flags,
                      stead__env *out);

/* Releases what decode allocated; safe on a zeroed or caller-built
 * envelope (it frees only owned_). */
void stead__env_free(stead__env *e);

/* The effective absolute deadline: the earlier of deadline_ms and
 * created_ms + ttl_ms, or 0 when neither is set. */
int64_t stead__env_deadline(const stead__env *e);

/* 1 if the envelope's deadline is at or before now_ms, else 0. */
int stead__env_expired(const stead__env *e, int64_t now_ms);

/* The value of header `key` (exact match), or NULL. */
const char *stead__env_header_get(const stead__env *e, const char *key);

#endif
