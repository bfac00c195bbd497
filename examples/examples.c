/*
 * examples.c -- registers every example class. Add new examples to the
 * table below; each lives in its own file.
 */
#include "examples.h"

#include <stddef.h>

int stead_examples_register(stead_rt *rt) {
  static const stead_class *const all[] = {
      &stead_example_echo,
      &stead_example_counter,
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    int rc = stead_register(rt, all[i]);
    if (rc < 0)
      return rc;
  }
  return 0;
}
