/*
 * log.c -- the server's stderr log sink.
 *
 * Owns: nothing global. Each line is formatted into a stack buffer and
 * written with a single write(2), so lines from concurrent threads stay
 * whole without a lock. Lines are cut at 4 KiB; newlines inside a message
 * are replaced by spaces to keep the one-line-per-event promise.
 */
#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *level_name(stead_log_level level) {
  switch (level) {
  case STEAD_LOG_ERROR:
    return "ERROR";
  case STEAD_LOG_WARN:
    return "WARN ";
  case STEAD_LOG_INFO:
    return "INFO ";
  default:
    return "DEBUG";
  }
}

void stead__log_sink(stead_log_level level, const char *line, void *udata) {
  const stead__logger *lg = udata;
  if (lg && level > lg->level)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[4096];
  int n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, level_name(level));
  size_t off = (size_t)n;
  for (const char *p = line; *p && off < sizeof buf - 1; p++)
    buf[off++] = (*p == '\n' || *p == '\r') ? ' ' : *p;
  buf[off++] = '\n';
  ssize_t w = write(STDERR_FILENO, buf, off);
  (void)w; /* nowhere left to report a failing stderr */
}

void stead__logf(const stead__logger *lg, stead_log_level level, const char *fmt, ...) {
  if (lg && level > lg->level)
    return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  stead__log_sink(level, line, (void *)lg);
}
