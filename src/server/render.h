/*
 * render.h -- JSON renderings shared by the gateway's routes: bytes that
 * may or may not be JSON (event payloads, alarm metas), a state struct by
 * its schema, and an object's pending alarms.
 *
 * One convention for bytes everywhere in the HTTP API: bytes that parse as
 * JSON are embedded as that JSON value under `key`; other UTF-8 text as a
 * JSON string under `key`; anything else base64 (RFC 4648, padded) under
 * `key`_base64; empty bytes as null under `key`.
 */
#ifndef STEAD_SERVER_RENDER_H
#define STEAD_SERVER_RENDER_H

#include "stead.h"

#include <jansson.h>
#include <stddef.h>

/* Base64 (standard alphabet, padded) of n bytes, NUL-terminated, malloc'd;
 * NULL on out of memory. */
char *stead__base64(const void *p, size_t n);

/* Sets obj[key] (or obj[key + "_base64"]) to `len` bytes at `p` by the
 * convention above. Returns 0, or -1 on out of memory. */
int stead__json_set_bytes(json_t *obj, const char *key, const void *p, size_t len);

/* A JSON object with one member per schema field, in schema order:
 * INT64 and TIMESTAMP as integers, DOUBLE as a number (null when NaN or
 * infinite, which JSON cannot carry), BOOL as true/false, STRING as a
 * string (null when NULL; base64 under name_base64 if not UTF-8), BYTES
 * as a base64 string. New reference, or NULL on out of memory. */
json_t *stead__state_json(const stead_schema *schema, const void *st);

/* A JSON array of alarms in the given order: {"name","at_ms","attempt",
 * "meta"} with meta by the bytes convention. New reference or NULL. */
json_t *stead__alarms_json(const stead_alarm_info *al, size_t n);

/* GET /v1/cluster of a cluster node (docs/http.md): mode "cluster", the
 * node id, deployment, shard count, `storage` (the kind, never the URL),
 * the live members (self marked), the owned shards with their lease
 * epochs, and the node's counters. New reference or NULL. */
json_t *stead__cluster_json(const stead_cluster_status *st, const char *storage,
                            const char *url);

#endif
