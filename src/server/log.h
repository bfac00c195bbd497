/*
 * log.h -- the server's log sink: one timestamped, leveled line per event
 * on stderr. The runtime's log callback and the HTTP library's error log
 * are plugged into the same sink, so an operator reads one stream.
 */
#ifndef STEAD_SERVER_LOG_H
#define STEAD_SERVER_LOG_H

#include "stead.h"

typedef struct stead__logger {
  stead_log_level level; /* most verbose level written */
} stead__logger;

/* A stead_log_fn: `udata` is a stead__logger. Writes
 * "2024-05-01T12:00:00.123Z INFO  line\n" with one write(2), so concurrent
 * lines never interleave. Thread-safe. */
void stead__log_sink(stead_log_level level, const char *line, void *udata);

/* printf-style logging through the sink; dropped when `level` is more
 * verbose than lg->level. Thread-safe. */
void stead__logf(const stead__logger *lg, stead_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
