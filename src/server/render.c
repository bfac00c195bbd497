/*
 * render.c -- JSON renderings for the HTTP API (see render.h for the
 * conventions). Owns nothing; every function is pure and thread-safe.
 *
 * Why one convention for bytes: event payloads (SSE) and alarm metas (GET
 * of an object) are both opaque bytes that are usually JSON. Embedding
 * them as JSON when they are, and saying so by the member's name when they
 * are not (`_base64`), lets a client read either without guessing.
 */
#include "server/render.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *stead__base64(const void *src, size_t n) {
  const unsigned char *p = src;
  char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
  if (!out)
    return NULL;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    *o++ = b64[v >> 18 & 63];
    *o++ = b64[v >> 12 & 63];
    *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
    *o++ = i + 2 < n ? b64[v & 63] : '=';
  }
  *o = 0;
  return out;
}

/* obj[key + "_base64"] = base64(p). */
static int set_base64(json_t *obj, const char *key, const void *p, size_t len) {
  char name[160];
  char *enc = stead__base64(p, len);
  size_t kl = strlen(key);
  if (!enc || kl + 8 > sizeof name) {
    free(enc);
    return -1;
  }
  memcpy(name, key, kl);
  memcpy(name + kl, "_base64", 8);
  int rc = json_object_set_new(obj, name, json_string(enc));
  free(enc);
  return rc;
}

int stead__json_set_bytes(json_t *obj, const char *key, const void *p, size_t len) {
  if (len == 0)
    return json_object_set_new(obj, key, json_null());
  json_t *v = json_loadb(p, len, JSON_DECODE_ANY, NULL);
  if (!v)
    v = json_stringn(p, len); /* NULL unless UTF-8 */
  if (v)
    return json_object_set_new(obj, key, v);
  return set_base64(obj, key, p, len);
}

static int set_field(json_t *o, const stead_field *f, const char *base) {
  const void *at = base + f->offset;
  switch (f->type) {
  case STEAD_FT_INT64:
  case STEAD_FT_TIMESTAMP: {
    int64_t v;
    memcpy(&v, at, sizeof v);
    return json_object_set_new(o, f->name, json_integer((json_int_t)v));
  }
  case STEAD_FT_DOUBLE: {
    double v;
    memcpy(&v, at, sizeof v);
    return json_object_set_new(o, f->name, isfinite(v) ? json_real(v) : json_null());
  }
  case STEAD_FT_BOOL: {
    bool v;
    memcpy(&v, at, sizeof v);
    return json_object_set_new(o, f->name, json_boolean(v));
  }
  case STEAD_FT_STRING: {
    const char *s;
    memcpy(&s, at, sizeof s);
    if (!s)
      return json_object_set_new(o, f->name, json_null());
    json_t *v = json_string(s);
    return v ? json_object_set_new(o, f->name, v) : set_base64(o, f->name, s, strlen(s));
  }
  case STEAD_FT_BYTES: {
    stead_bytes b;
    memcpy(&b, at, sizeof b);
    char *enc = stead__base64(b.data, b.len);
    int rc = enc ? json_object_set_new(o, f->name, json_string(enc)) : -1;
    free(enc);
    return rc;
  }
  }
  return json_object_set_new(o, f->name, json_null()); /* a type from a newer stead */
}

json_t *stead__state_json(const stead_schema *schema, const void *st) {
  json_t *o = json_object();
  for (size_t i = 0; o && i < schema->nfields; i++)
    if (set_field(o, &schema->fields[i], st) != 0) {
      json_decref(o);
      o = NULL;
    }
  return o;
}

json_t *stead__alarms_json(const stead_alarm_info *al, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++) {
    json_t *e = json_pack("{s:s,s:I,s:I}", "name", al[i].name, "at_ms",
                          (json_int_t)al[i].at_ms, "attempt", (json_int_t)al[i].attempt);
    if (!e || stead__json_set_bytes(e, "meta", al[i].meta, al[i].meta_len) != 0) {
      json_decref(e);
      json_decref(a);
      a = NULL;
    } else if (json_array_append_new(a, e) != 0) { /* e is released */
      json_decref(a);
      a = NULL;
    }
  }
  return a;
}

json_t *stead__cluster_json(const stead_cluster_status *st, const char *storage,
                            const char *url) {
  json_t *members = json_array(), *owned = json_array();
  json_t *j = json_pack(
      "{s:s,s:s,s:s,s:i,s:i,s:s,s:s,s:o,s:o,"
      "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}",
      "mode", "cluster", "node_id", st->node_id, "deployment", st->deployment, "shards",
      (int)st->nshards, "shards_owned", (int)st->nowned, "storage", storage, "url", url,
      "members", members, "owned", owned, "counters", "acquired",
      (json_int_t)st->acquired, "released", (json_int_t)st->released, "lost",
      (json_int_t)st->lost, "acquire_failures", (json_int_t)st->acquire_failures,
      "malformed", (json_int_t)st->malformed, "expired", (json_int_t)st->expired,
      "not_owner", (json_int_t)st->not_owner, "forwarded", (json_int_t)st->calls,
      "forward_retries", (json_int_t)st->call_retries);
  if (!j)
    return NULL; /* json_pack released members and owned ("o") */
  int rc = 0;
  for (size_t i = 0; i < st->nmembers && rc == 0; i++)
    rc = json_array_append_new(members,
                               json_pack("{s:s,s:b}", "node_id", st->members[i], "self",
                                         strcmp(st->members[i], st->node_id) == 0));
  for (size_t i = 0; i < st->nowned && rc == 0; i++) {
    const stead_cluster_shard *sh = &st->owned[i];
    rc = json_array_append_new(
        owned, json_pack("{s:i,s:I,s:b,s:I}", "shard", (int)sh->shard, "epoch",
                         (json_int_t)sh->epoch, "draining", sh->draining != 0,
                         "lease_left_ms", (json_int_t)sh->lease_left_ms));
  }
  if (rc != 0) {
    json_decref(j);
    return NULL;
  }
  return j;
}
