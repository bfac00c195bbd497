/*
 * state.h -- encoding of state structs (public types in stead.h, "State
 * structs") to self-describing records, and change detection.
 *
 * Record format, version 1 (all integers little-endian):
 *   u8 magic 0x53 ('S'), u8 version (1), varint field count, then per field:
 *   varint name length (1..128), name bytes, u8 type (stead_field_type),
 *   value: INT64/TIMESTAMP 8 bytes two's complement; DOUBLE 8 bytes IEEE-754
 *   bits; BOOL 1 byte (0 or 1); STRING/BYTES varint length + bytes.
 * varint is unsigned LEB128, at most 10 bytes. Nothing may follow the last
 * field.
 */
#ifndef STEAD_STORAGE_STATE_H
#define STEAD_STORAGE_STATE_H

#include "stead.h"
#include "util/util.h"

#define STEAD__STATE_MAGIC   0x53
#define STEAD__STATE_VERSION 1

/* Appends the record of `st` to `out`. Errors: EINVAL (bad schema or a
 * STRING field that is not valid UTF-8), ENOMEM. */
int stead__state_encode(const stead_schema *s, const void *st, stead__buf *out);

/* Decodes a record into `st`: fields absent from the record get their
 * defaults, stored fields unknown to the schema are skipped. On success the
 * previous STRING/BYTES contents of `st` are released and replaced; on
 * failure `st` is unchanged. `st` must be initialised or zeroed. Errors:
 * ECORRUPT (malformed, future version, type changed; the message says
 * which), EINVAL (bad schema), ENOMEM. */
int stead__state_decode(const stead_schema *s, const void *data, size_t len, void *st);

/* Change detection: encodes `st`; if the bytes differ from *last (or last
 * is empty), replaces *last with them and returns 1; else returns 0.
 * Negative code on error. */
int stead__state_changed(const stead_schema *s, const void *st, stead__buf *last);

#endif
