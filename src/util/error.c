/*
 * error.c -- error codes, their names, and the per-thread last-error
 * message.
 *
 * The message lives in thread-local storage so that concurrent callers do
 * not see each other's errors (the nats.c model). It is the only mutable
 * state in stead that is not owned by a runtime object.
 */
#include "util/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRMSG_MAX 1024

static _Thread_local char tl_errmsg[ERRMSG_MAX] = "no error";

static const struct {
  int code;
  const char *name;
  const char *text;
} codes[] = {
    {STEAD_OK, "OK", "success"},
    {STEAD_EINVAL, "EINVAL", "invalid argument"},
    {STEAD_ENOMEM, "ENOMEM", "out of memory"},
    {STEAD_ENOCLASS, "ENOCLASS", "no such class"},
    {STEAD_ENOMETHOD, "ENOMETHOD", "no such method"},
    {STEAD_ETOOBIG, "ETOOBIG", "over the size limit"},
    {STEAD_ETIMEDOUT, "ETIMEDOUT", "deadline exceeded"},
    {STEAD_ECLOSED, "ECLOSED", "runtime closed"},
    {STEAD_EOVERLOAD, "EOVERLOAD", "overloaded; retry later"},
    {STEAD_EHANDLER, "EHANDLER", "handler failed"},
    {STEAD_EEXIST, "EEXIST", "already exists"},
    {STEAD_ESTORAGE, "ESTORAGE", "storage failure"},
    {STEAD_ECORRUPT, "ECORRUPT", "corrupt stored record"},
    {STEAD_ENOTOWNER, "ENOTOWNER", "not the owner of the shard"},
    {STEAD_ECONFLICT, "ECONFLICT", "version conflict"},
    {STEAD_ENOTFOUND, "ENOTFOUND", "not found"},
    {STEAD_EMISUSE, "EMISUSE", "not allowed in this context"},
    {STEAD_EPROTO, "EPROTO", "malformed message"},
    {STEAD_EUNKNOWN, "EUNKNOWN", "outcome unknown"},
    {STEAD_ENOTSUP, "ENOTSUP", "not supported"},
    {STEAD_EREJECTED, "EREJECTED", "rejected"},
    {STEAD_EIO, "EIO", "system call failed"},
    {STEAD_ECANCELED, "ECANCELED", "canceled"},
};

const char *stead_errname(int code) {
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (codes[i].code == code)
      return codes[i].name;
  return "EUNKNOWNCODE";
}

const char *stead_strerror(int code) {
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (codes[i].code == code)
      return codes[i].text;
  return "unknown error code";
}

const char *stead_errmsg(void) {
  return tl_errmsg;
}

int stead_retryable(int code) {
  return code == STEAD_ETIMEDOUT || code == STEAD_EOVERLOAD || code == STEAD_ESTORAGE ||
         code == STEAD_ENOTOWNER;
}

void stead_free(void *p) {
  free(p);
}

int stead__verr(int code, const char *fmt, va_list ap) {
  vsnprintf(tl_errmsg, sizeof tl_errmsg, fmt, ap);
  return code;
}

int stead__err(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  stead__verr(code, fmt, ap);
  va_end(ap);
  return code;
}

void stead__err_clear(void) {
  strcpy(tl_errmsg, "no error");
}
