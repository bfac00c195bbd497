/*
 * events.h -- internals of the runtime's event bus (events.c) that other
 * modules and tests use.
 */
#ifndef STEAD_CORE_EVENTS_H
#define STEAD_CORE_EVENTS_H

#include "stead.h"

/* A NATS subject for a pattern fits in this many bytes (with its NUL). */
#define STEAD__NATS_SUBJECT_MAX (STEAD_TOPIC_MAX_LEN + 2)

/* The one place that maps a bus pattern to NATS subjects (for the
 * cluster): `*` stays `*`; the first `**` and everything after it become
 * `>`; when the pattern ends in `**` segments only, the prefix itself is a
 * second subject (`a.**` matches `a`, NATS `a.>` does not). *n receives 1
 * or 2 subjects; *filter is 1 when the subjects are wider than the pattern
 * (a `**` not at the end, or several), so a receiver must check each
 * message with stead_topic_match. Errors: EINVAL, ETOOBIG (bad pattern). */
int stead__nats_subjects(const char *pattern, char subj[2][STEAD__NATS_SUBJECT_MAX],
                         int *n, int *filter);

#endif
