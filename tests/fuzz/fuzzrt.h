/*
 * fuzzrt.h -- one in-process runtime shared by the inputs of a fuzz
 * target that drives the real runtime (memory storage, the example
 * classes, alarms fired only on demand). Created on the first input,
 * closed at exit, so libFuzzer and the corpus replay driver see the same
 * thing and leak checkers find nothing outstanding.
 */
#ifndef STEAD_TESTS_FUZZ_FUZZRT_H
#define STEAD_TESTS_FUZZ_FUZZRT_H

#include "examples.h"
#include "stead.h"

#include <stdio.h>
#include <stdlib.h>

static stead_rt *fuzzrt_rt;

static void fuzzrt_close(void) {
  if (fuzzrt_rt)
    stead_close(fuzzrt_rt);
  fuzzrt_rt = NULL;
}

static stead_rt *fuzzrt_get(void) {
  if (fuzzrt_rt)
    return fuzzrt_rt;
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = 2;
  cfg.storage = "memory";
  cfg.alarm_manual = 1;
  cfg.max_activations = 64; /* bounded memory across millions of inputs */
  if (stead_open(&cfg, &fuzzrt_rt) != 0 || stead_examples_register(fuzzrt_rt) != 0) {
    fprintf(stderr, "fuzzrt: cannot open the runtime: %s\n", stead_errmsg());
    abort();
  }
  atexit(fuzzrt_close);
  return fuzzrt_rt;
}

#endif
