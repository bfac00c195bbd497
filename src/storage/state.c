/*
 * state.c -- state-struct schemas, defaults, encoding and decoding.
 *
 * The decoder treats its input as hostile (it may come from a damaged file
 * or a newer build): every length is checked against the bytes left before
 * it is used, counts are bounded by the input size, and nothing is written
 * to the caller's struct until the whole record decoded. It is fuzzed
 * (tests/storage/fuzz_state.c).
 */
#include "storage/state.h"

#include <stdlib.h>
#include <string.h>

static size_t field_size(stead_field_type t) {
  switch (t) {
  case STEAD_FT_INT64:
  case STEAD_FT_TIMESTAMP:
    return sizeof(int64_t);
  case STEAD_FT_DOUBLE:
    return sizeof(double);
  case STEAD_FT_BOOL:
    return sizeof(bool);
  case STEAD_FT_STRING:
    return sizeof(char *);
  case STEAD_FT_BYTES:
    return sizeof(stead_bytes);
  }
  return 0;
}

int stead_schema_check(const stead_schema *s) {
  if (!s || (!s->fields && s->nfields))
    return stead__err(STEAD_EINVAL, "schema is NULL");
  for (size_t i = 0; i < s->nfields; i++) {
    const stead_field *f = &s->fields[i];
    int rc = stead__check_name("state field name", f->name);
    if (rc)
      return rc;
    size_t sz = field_size(f->type);
    if (!sz)
      return stead__err(STEAD_EINVAL, "state field '%s' has unknown type %d", f->name,
                        (int)f->type);
    if (f->offset > s->size || s->size - f->offset < sz)
      return stead__err(STEAD_EINVAL, "state field '%s' lies outside the %zu-byte struct",
                        f->name, s->size);
    if (f->type == STEAD_FT_STRING && f->def_ptr && *f->def_ptr &&
        stead__check_utf8("default", f->def_ptr, SIZE_MAX) != 0)
      return stead__err(STEAD_EINVAL, "state field '%s' default is not UTF-8", f->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(s->fields[j].name, f->name) == 0)
        return stead__err(STEAD_EINVAL, "state field '%s' appears twice", f->name);
  }
  return 0;
}

#define AT(st, f) ((char *)(st) + (f)->offset)

void stead_state_release(const stead_schema *s, void *st) {
  if (!s || !st)
    return;
  for (size_t i = 0; i < s->nfields; i++) {
    const stead_field *f = &s->fields[i];
    if (f->type == STEAD_FT_STRING) {
      char **p = (char **)AT(st, f);
      free(*p);
      *p = NULL;
    } else if (f->type == STEAD_FT_BYTES) {
      stead_bytes *b = (stead_bytes *)AT(st, f);
      free(b->data);
      b->data = NULL;
      b->len = 0;
    }
  }
}

static int set_default(const stead_field *f, void *st) {
  char *p = AT(st, f);
  switch (f->type) {
  case STEAD_FT_INT64:
  case STEAD_FT_TIMESTAMP:
    memcpy(p, &f->def_int, sizeof(int64_t));
    return 0;
  case STEAD_FT_DOUBLE:
    memcpy(p, &f->def_double, sizeof(double));
    return 0;
  case STEAD_FT_BOOL:
    *(bool *)p = f->def_int != 0;
    return 0;
  case STEAD_FT_STRING:
    *(char **)p = NULL;
    return stead_state_set_string((char **)p, f->def_ptr);
  case STEAD_FT_BYTES:
    memset(p, 0, sizeof(stead_bytes));
    return stead_state_set_bytes((stead_bytes *)p, f->def_ptr, f->def_len);
  }
  return STEAD_EINVAL;
}

int stead_state_init(const stead_schema *s, void *st) {
  int rc = stead_schema_check(s);
  if (rc)
    return rc;
  if (!st)
    return stead__err(STEAD_EINVAL, "state struct is NULL");
  for (size_t i = 0; i < s->nfields; i++) {
    const stead_field *f = &s->fields[i];
    if (f->type == STEAD_FT_STRING)
      *(char **)AT(st, f) = NULL;
    else if (f->type == STEAD_FT_BYTES)
      memset(AT(st, f), 0, sizeof(stead_bytes));
  }
  for (size_t i = 0; i < s->nfields; i++)
    if ((rc = set_default(&s->fields[i], st))) {
      stead_state_release(s, st);
      return rc;
    }
  return 0;
}

int stead_state_set_string(char **field, const char *s) {
  char *c = NULL;
  if (s && !(c = stead__strdup(s)))
    return stead__err(STEAD_ENOMEM, "out of memory");
  free(*field);
  *field = c;
  return 0;
}

int stead_state_set_bytes(stead_bytes *field, const void *data, size_t len) {
  void *c = NULL;
  if (len && !(c = stead__memdup(data, len)))
    return stead__err(STEAD_ENOMEM, "out of memory");
  free(field->data);
  field->data = c;
  field->len = len;
  return 0;
}

/* ---- encoding ---- */

static int put_varint(stead__buf *b, uint64_t v) {
  uint8_t tmp[10];
  size_t n = 0;
  do {
    tmp[n] = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v)
      tmp[n] |= 0x80;
    n++;
  } while (v);
  return stead__buf_append(b, tmp, n);
}

static int put_u64(stead__buf *b, uint64_t v) {
  uint8_t tmp[8];
  for (int i = 0; i < 8; i++)
    tmp[i] = (uint8_t)(v >> (8 * i));
  return stead__buf_append(b, tmp, 8);
}

static int encode_field(const stead_field *f, const void *st, stead__buf *b) {
  const char *p = AT(st, f);
  size_t nl = strlen(f->name);
  uint8_t t = (uint8_t)f->type;
  if (put_varint(b, nl) || stead__buf_append(b, f->name, nl) ||
      stead__buf_append(b, &t, 1))
    return STEAD_ENOMEM;
  switch (f->type) {
  case STEAD_FT_INT64:
  case STEAD_FT_TIMESTAMP: {
    int64_t v;
    memcpy(&v, p, 8);
    return put_u64(b, (uint64_t)v) ? STEAD_ENOMEM : 0;
  }
  case STEAD_FT_DOUBLE: {
    uint64_t v;
    memcpy(&v, p, 8);
    return put_u64(b, v) ? STEAD_ENOMEM : 0;
  }
  case STEAD_FT_BOOL: {
    uint8_t v = *(const bool *)p ? 1 : 0;
    return stead__buf_append(b, &v, 1) ? STEAD_ENOMEM : 0;
  }
  case STEAD_FT_STRING: {
    const char *s = *(char *const *)p;
    size_t n = s ? strlen(s) : 0;
    if (n && stead__check_utf8("state string", s, SIZE_MAX))
      return stead__err(STEAD_EINVAL, "state field '%s' is not valid UTF-8", f->name);
    return put_varint(b, n) || (n && stead__buf_append(b, s, n)) ? STEAD_ENOMEM : 0;
  }
  case STEAD_FT_BYTES: {
    const stead_bytes *x = (const stead_bytes *)p;
    return put_varint(b, x->len) || (x->len && stead__buf_append(b, x->data, x->len))
               ? STEAD_ENOMEM
               : 0;
  }
  }
  return STEAD_EINVAL;
}

int stead__state_encode(const stead_schema *s, const void *st, stead__buf *out) {
  int rc = stead_schema_check(s);
  if (rc)
    return rc;
  uint8_t hdr[2] = {STEAD__STATE_MAGIC, STEAD__STATE_VERSION};
  if (stead__buf_append(out, hdr, 2) || put_varint(out, s->nfields))
    return stead__err(STEAD_ENOMEM, "out of memory");
  for (size_t i = 0; i < s->nfields; i++)
    if ((rc = encode_field(&s->fields[i], st, out)))
      return rc == STEAD_ENOMEM ? stead__err(rc, "out of memory") : rc;
  return 0;
}

int stead__state_changed(const stead_schema *s, const void *st, stead__buf *last) {
  stead__buf now = {0};
  int rc = stead__state_encode(s, st, &now);
  if (rc) {
    stead__buf_free(&now);
    return rc;
  }
  if (last->len == now.len && last->data && memcmp(last->data, now.data, now.len) == 0) {
    stead__buf_free(&now);
    return 0;
  }
  stead__buf_free(last);
  *last = now;
  return 1;
}

/* ---- decoding ---- */

typedef struct rd {
  const uint8_t *p;
  size_t left;
} rd;

static int corrupt(const char *what) {
  return stead__err(STEAD_ECORRUPT, "state record is corrupt: %s", what);
}

static int get_varint(rd *r, uint64_t *v) {
  uint64_t x = 0;
  for (int i = 0; i < 10; i++) {
    if (!r->left)
      return corrupt("truncated number");
    uint8_t c = *r->p++;
    r->left--;
    if (i == 9 && c > 1)
      return corrupt("number overflows 64 bits");
    x |= (uint64_t)(c & 0x7f) << (7 * i);
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return corrupt("number too long");
}

static int get_bytes(rd *r, size_t n, const uint8_t **out) {
  if (n > r->left)
    return corrupt("length runs past the end");
  *out = r->p;
  r->p += n;
  r->left -= n;
  return 0;
}

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static const stead_field *find_field(const stead_schema *s, const uint8_t *name,
                                     size_t nl, size_t *idx) {
  for (size_t i = 0; i < s->nfields; i++)
    if (strlen(s->fields[i].name) == nl && memcmp(s->fields[i].name, name, nl) == 0) {
      *idx = i;
      return &s->fields[i];
    }
  return NULL;
}

static int compatible(stead_field_type stored, stead_field_type want) {
  if (stored == want)
    return 1;
  return (stored == STEAD_FT_INT64 || stored == STEAD_FT_TIMESTAMP) &&
         (want == STEAD_FT_INT64 || want == STEAD_FT_TIMESTAMP);
}

static const char *type_name(int t) {
  static const char *const names[] = {"?",      "int64", "double",   "bool",
                                      "string", "bytes", "timestamp"};
  return t >= 1 && t <= 6 ? names[t] : "unknown";
}

/* Reads one value of type t; stores it into `st` at f when f is not NULL. */
static int read_value(rd *r, int t, const stead_field *f, void *st) {
  const uint8_t *b = NULL;
  uint64_t n = 0;
  int rc;
  switch (t) {
  case STEAD_FT_INT64:
  case STEAD_FT_TIMESTAMP:
  case STEAD_FT_DOUBLE:
    if ((rc = get_bytes(r, 8, &b)))
      return rc;
    if (f) {
      uint64_t v = le64(b);
      memcpy(AT(st, f), &v, 8);
    }
    return 0;
  case STEAD_FT_BOOL:
    if ((rc = get_bytes(r, 1, &b)))
      return rc;
    if (*b > 1)
      return corrupt("bool is neither 0 nor 1");
    if (f)
      *(bool *)AT(st, f) = *b == 1;
    return 0;
  case STEAD_FT_STRING:
  case STEAD_FT_BYTES:
    if ((rc = get_varint(r, &n)) || (rc = get_bytes(r, (size_t)n, &b)))
      return rc;
    if (t == STEAD_FT_STRING) {
      char *s = malloc((size_t)n + 1);
      if (!s)
        return stead__err(STEAD_ENOMEM, "out of memory");
      memcpy(s, b, (size_t)n);
      s[n] = 0;
      if (strlen(s) != n || (n && stead__check_utf8("state string", s, SIZE_MAX))) {
        free(s);
        return corrupt("string is not valid UTF-8 text");
      }
      if (f)
        *(char **)AT(st, f) = s;
      else
        free(s);
      return 0;
    }
    if (f && n) {
      stead_bytes *x = (stead_bytes *)AT(st, f);
      if (!(x->data = stead__memdup(b, (size_t)n)))
        return stead__err(STEAD_ENOMEM, "out of memory");
      x->len = (size_t)n;
    }
    return 0;
  }
  return stead__err(STEAD_ECORRUPT, "state record is corrupt: unknown field type %d", t);
}

static int decode_into(const stead_schema *s, rd *r, void *tmp, uint8_t *seen) {
  uint64_t nf;
  int rc = get_varint(r, &nf);
  if (rc)
    return rc;
  if (nf > r->left / 3 + 1) /* each field takes at least 3 bytes */
    return corrupt("field count exceeds the record size");
  for (uint64_t i = 0; i < nf; i++) {
    uint64_t nl;
    const uint8_t *name = NULL, *tb = NULL;
    if ((rc = get_varint(r, &nl)))
      return rc;
    if (nl < 1 || nl > STEAD__MAX_NAME)
      return corrupt("field name length out of range");
    if ((rc = get_bytes(r, (size_t)nl, &name)) || (rc = get_bytes(r, 1, &tb)))
      return rc;
    size_t idx = 0;
    const stead_field *f = find_field(s, name, (size_t)nl, &idx);
    if (f) {
      if (seen[idx])
        return stead__err(STEAD_ECORRUPT, "state record is corrupt: field '%s' twice",
                          f->name);
      if (!compatible((stead_field_type)*tb, f->type))
        return stead__err(STEAD_ECORRUPT,
                          "state field '%s' is stored as %s but the schema says %s",
                          f->name, type_name(*tb), type_name(f->type));
      /* Replace the default set earlier. */
      if (f->type == STEAD_FT_STRING || f->type == STEAD_FT_BYTES) {
        if (f->type == STEAD_FT_STRING) {
          free(*(char **)AT(tmp, f));
          *(char **)AT(tmp, f) = NULL;
        } else {
          stead_bytes *x = (stead_bytes *)AT(tmp, f);
          free(x->data);
          x->data = NULL;
          x->len = 0;
        }
      }
      seen[idx] = 1;
    }
    if ((rc = read_value(r, *tb, f, tmp)))
      return rc;
  }
  if (r->left)
    return corrupt("bytes after the last field");
  return 0;
}

int stead__state_decode(const stead_schema *s, const void *data, size_t len, void *st) {
  int rc = stead_schema_check(s);
  if (rc)
    return rc;
  rd r = {data, len};
  if (len < 2 || !data)
    return corrupt("too short");
  if (r.p[0] != STEAD__STATE_MAGIC)
    return corrupt("not a state record (bad magic byte)");
  if (r.p[1] != STEAD__STATE_VERSION)
    return stead__err(STEAD_ECORRUPT,
                      "state record format version %u is not supported by this build "
                      "(it reads version %d)",
                      r.p[1], STEAD__STATE_VERSION);
  r.p += 2;
  r.left -= 2;
  void *tmp = calloc(1, s->size ? s->size : 1);
  uint8_t *seen = calloc(s->nfields + 1, 1);
  if (!tmp || !seen) {
    free(tmp);
    free(seen);
    return stead__err(STEAD_ENOMEM, "out of memory");
  }
  /* Non-field bytes (padding, members outside the schema) keep the
   * caller's values. */
  memcpy(tmp, st, s->size);
  rc = stead_state_init(s, tmp);
  if (!rc) {
    rc = decode_into(s, &r, tmp, seen);
    if (rc) {
      stead_state_release(s, tmp);
    } else {
      stead_state_release(s, st);
      memcpy(st, tmp, s->size);
    }
  }
  free(seen);
  free(tmp);
  return rc;
}
