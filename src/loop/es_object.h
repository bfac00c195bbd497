/*
 * es_object.h -- internals of event-sourced objects shared with tests:
 * the storage layout of journals and snapshots.
 *
 * Per object, in its own key space:
 *   STEAD__NS_JOURNAL  key = big-endian u64 sequence number (1, 2, ...),
 *                      value = STEAD__ES_REC_JOURNAL, then the message
 *                      (method NUL payload)
 *   STEAD__NS_SNAPSHOT key = big-endian u64 sequence number of the last
 *                      message the snapshot includes,
 *                      value = STEAD__ES_REC_SNAPSHOT, big-endian u32
 *                      model_version, then the program's encoding
 * Big-endian keys sort numerically, so "the newest snapshot" and "the
 * journal after it" are plain range listings.
 */
#ifndef STEAD_LOOP_ES_OBJECT_H
#define STEAD_LOOP_ES_OBJECT_H

#include "stead.h"

#include <stdint.h>

#define STEAD__ES_REC_JOURNAL  1 /* record format of journal values */
#define STEAD__ES_REC_SNAPSHOT 1 /* record format of snapshot values */
/* Topic of the internal events that carry a command to its object. */
#define STEAD__ES_CMD_TOPIC "stead.es.command"
#define STEAD__ES_MAX_MODEL (64u * 1024u * 1024u)
/* Largest batch_max of a class. */
#define STEAD__ES_MAX_BATCH 1024u
/* Write-set bytes a batch reserves per message beyond its payload: the
 * journal key, format byte and method name (<= 128 bytes + NUL). */
#define STEAD__ES_BATCH_SLACK 256u

static inline void stead__es_be64(uint8_t out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    out[i] = (uint8_t)v;
}

static inline uint64_t stead__es_get64(const uint8_t in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | in[i];
  return v;
}

#endif
