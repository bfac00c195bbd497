/*
 * queue.h -- internal extras of the in-memory queue for the loop.
 */
#ifndef STEAD_LOOP_QUEUE_H
#define STEAD_LOOP_QUEUE_H

#include "stead.h"

/* Takes the next message without waiting: 1 and *out if there was one,
 * 0 if none. Unlike stead_queue_get it sets no error message, so a loop
 * can poll its private queue before every input message for free. */
int stead__queue_tryget(stead_queue *q, stead_msg *out);

#endif
