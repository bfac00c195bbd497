/*
 * util.h -- small internal helpers shared by every module: error setting,
 * clocks, validation of names and ids, hashing, growable buffers.
 *
 * Nothing here keeps global mutable state except the per-thread last-error
 * message, which the public API promises (stead_errmsg).
 */
#ifndef STEAD_UTIL_H
#define STEAD_UTIL_H

#include "stead.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sets the calling thread's last error message and returns `code`, so that
 * failure paths read `return stead__err(STEAD_EINVAL, "id is empty");`. */
int stead__err(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int stead__verr(int code, const char *fmt, va_list ap);

/* Clears the last-error message (to "no error"). */
void stead__err_clear(void);

/* Monotonic time (never jumps) and wall time. */
int64_t stead__mono_ns(void);
int64_t stead__mono_ms(void);
int64_t stead__wall_ms(void);
/* Cheap clocks with a few ms of resolution (no syscall even on VMs whose
 * clock source makes precise reads slow): for idle times and slow-turn
 * detection, never for deadlines or latencies. */
int64_t stead__coarse_mono_ms(void);
int64_t stead__coarse_wall_ms(void);

/* Limits every module agrees on. */
#define STEAD__MAX_ID   1024
#define STEAD__MAX_NAME 128

/* 0 if `s` is valid UTF-8 of 1..max_len bytes (no NUL inside by
 * construction); else STEAD_EINVAL or STEAD_ETOOBIG with a message that
 * names `what` ("id", "method"). */
int stead__check_utf8(const char *what, const char *s, size_t max_len);

/* Length (1..4) of the valid UTF-8 sequence at s, given `avail` bytes,
 * or 0 if malformed (overlong forms, surrogates and code points past
 * U+10FFFF included). */
size_t stead__utf8_seq(const unsigned char *s, size_t avail);

/* Copies n strings into one allocation: a NULL-terminated pointer array
 * followed by the strings. Freed with one free(). NULL on OOM. */
char **stead__strv_pack(char *const *strs, size_t n);

/* 0 if `s` is a name: 1..STEAD__MAX_NAME bytes of [A-Za-z0-9_.-]. */
int stead__check_name(const char *what, const char *s);

/* 64-bit hash of bytes (not cryptographic; for hash tables). */
uint64_t stead__hash64(const void *data, size_t len, uint64_t seed);

/* malloc that copies; NULL on out of memory. */
void *stead__memdup(const void *p, size_t len);
char *stead__strdup(const char *s);

/* A growable byte buffer. Zero-initialise; free with stead__buf_free. */
typedef struct stead__buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} stead__buf;

int stead__buf_reserve(stead__buf *b, size_t extra);
int stead__buf_append(stead__buf *b, const void *p, size_t len);
int stead__buf_printf(stead__buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void stead__buf_free(stead__buf *b);

#endif
