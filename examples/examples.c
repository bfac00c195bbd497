/*
 * examples.c -- registers every example class. Add new examples to the
 * table below; each lives in its own file.
 */
#include "examples.h"

#include <stddef.h>

int stead_examples_register(stead_rt *rt) {
  static const stead_class *const all[] = {
      &stead_example_echo,        &stead_example_counter,  &stead_example_chatroom,
      &stead_example_ratelimiter, &stead_example_reminder,
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    int rc = stead_register(rt, all[i]);
    if (rc < 0)
      return rc;
  }
  /* Event-sourced classes (stead_register_program). */
  static const stead_es_class *const programs[] = {&stead_example_account};
  for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
    int rc = stead_register_program(rt, programs[i]);
    if (rc < 0)
      return rc;
  }
  return 0;
}
