/*
 * loop_internal.h -- what the loop shares with event-sourced objects
 * (es_object.c): the command and dispatch lists behind the public opaque
 * stead_cmds / stead_dispatcher, so that a durable object can hand the
 * program the same handles the standalone loop does.
 */
#ifndef STEAD_LOOP_INTERNAL_H
#define STEAD_LOOP_INTERNAL_H

#include "stead.h"
#include "util/util.h"

/* A list of byte strings packed in one buffer, reused between uses. */
typedef struct stead__blobs {
  stead__buf bytes;
  size_t *span; /* offset, length pairs */
  size_t n, cap;
} stead__blobs;

int stead__blobs_add(stead__blobs *b, const void *data, size_t len);
stead_msg stead__blobs_at(const stead__blobs *b, size_t i);
void stead__blobs_clear(stead__blobs *b);
void stead__blobs_free(stead__blobs *b);

struct stead__es_io; /* es_object.c: the reply and rejection of one turn */

struct stead_cmds {
  stead__blobs b;
  struct stead__es_io *es; /* NULL in the standalone loop */
};

/* loop NULL: an event-sourced object's command turn, which may always
 * dispatch (to the object itself). */
struct stead_dispatcher {
  stead_loop *loop;
  stead__blobs b;
};

#endif
