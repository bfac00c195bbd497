/*
 * testutil.h -- small helpers shared by the cmocka tests.
 */
#ifndef STEAD_TESTUTIL_H
#define STEAD_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the includes above first. */
#include <cmocka.h>

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "stead.h"

/* Asserts that rc equals want, printing the last error message if not. */
#define assert_rc(rc, want)                                                              \
  do {                                                                                   \
    int rc_ = (rc);                                                                      \
    if (rc_ != (want))                                                                   \
      fail_msg("%s = %d (%s: %s), expected %d", #rc, rc_, stead_errname(rc_),            \
               stead_errmsg(), (want));                                                  \
  } while (0)

static inline void test_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A manual clock for tests: the runtime reads it through stead_config.clock. */
typedef struct test_clock {
  _Atomic int64_t now_ms;
} test_clock;

static inline int64_t test_clock_read(void *udata) {
  return atomic_load(&((test_clock *)udata)->now_ms);
}

#endif
