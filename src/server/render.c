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
