/*
 * promcheck.c -- strict Prometheus text-format 0.0.4 checker (tests only).
 */
#include "promcheck.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXF 256
#define MAXS 8192

typedef struct fam {
  char name[128];
  char type[16];
  int has_help, has_type, has_samples, closed;
} fam;

typedef struct sample {
  int fam;
  char name[128];
  char labels[512]; /* canonical, without le */
  double le;        /* histogram buckets */
  int is_bucket;
  double value;
  int line;
} sample;

typedef struct st {
  fam f[MAXF];
  int nf;
  sample *s;
  int ns;
  int cur; /* family of the previous sample line */
  char *err;
  size_t cap;
  int line;
} st;

static int bad(st *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(c->err, c->cap, "line %d: ", c->line);
  vsnprintf(c->err + n, c->cap - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

static int name_ok(const char *s, size_t n, int label) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    int alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                (!label && ch == ':');
    if (!alpha && !(i > 0 && ch >= '0' && ch <= '9'))
      return 0;
  }
  if (label && n >= 2 && s[0] == '_' && s[1] == '_')
    return 0;
  return 1;
}

static int parse_float(const char *s, double *v) {
  if (strcmp(s, "+Inf") == 0) {
    *v = INFINITY;
    return 0;
  }
  if (strcmp(s, "-Inf") == 0) {
    *v = -INFINITY;
    return 0;
  }
  if (strcmp(s, "NaN") == 0) {
    *v = NAN;
    return 0;
  }
  if (!*s)
    return -1;
  for (const char *p = s; *p; p++)
    if (!strchr("0123456789.eE+-", *p))
      return -1;
  char *end;
  *v = strtod(s, &end);
  return *end ? -1 : 0;
}

static int find_fam(st *c, const char *name, int create) {
  for (int i = 0; i < c->nf; i++)
    if (strcmp(c->f[i].name, name) == 0)
      return i;
  if (!create || c->nf == MAXF)
    return -1;
  snprintf(c->f[c->nf].name, sizeof c->f[0].name, "%s", name);
  return c->nf++;
}

/* The family a sample name belongs to: a histogram's _bucket/_sum/_count
 * belong to the histogram. */
static int family_of(st *c, const char *name) {
  static const char *sfx[] = {"_bucket", "_sum", "_count"};
  for (int k = 0; k < 3; k++) {
    size_t nl = strlen(name), sl = strlen(sfx[k]);
    if (nl > sl && strcmp(name + nl - sl, sfx[k]) == 0) {
      char base[128];
      snprintf(base, sizeof base, "%.*s", (int)(nl - sl), name);
      int f = find_fam(c, base, 0);
      if (f >= 0 && strcmp(c->f[f].type, "histogram") == 0)
        return f;
    }
  }
  return find_fam(c, name, 1);
}

static int meta_line(st *c, const char *l) {
  const char *kw = l + 2;
  int help = strncmp(kw, "HELP ", 5) == 0, type = strncmp(kw, "TYPE ", 5) == 0;
  if (!help && !type)
    return 0; /* plain comment */
  const char *name = kw + 5;
  const char *sp = strchr(name, ' ');
  size_t nl = sp ? (size_t)(sp - name) : strlen(name);
  if (!name_ok(name, nl, 0))
    return bad(c, "bad metric name in %s", help ? "HELP" : "TYPE");
  char nm[128];
  snprintf(nm, sizeof nm, "%.*s", (int)nl, name);
  int f = find_fam(c, nm, 1);
  if (f < 0)
    return bad(c, "too many families");
  fam *fm = &c->f[f];
  if (fm->has_samples)
    return bad(c, "%s for %s after its samples", help ? "HELP" : "TYPE", nm);
  if (help) {
    if (fm->has_help++)
      return bad(c, "second HELP for %s", nm);
    for (const char *p = sp ? sp + 1 : ""; *p; p++)
      if (*p == '\\' && p[1] != '\\' && p[1] != 'n')
        return bad(c, "bad escape in HELP of %s", nm);
    return 0;
  }
  if (fm->has_type++)
    return bad(c, "second TYPE for %s", nm);
  if (!sp)
    return bad(c, "TYPE without a type");
  const char *t = sp + 1;
  if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
      strcmp(t, "summary") && strcmp(t, "untyped"))
    return bad(c, "unknown type \"%s\"", t);
  snprintf(fm->type, sizeof fm->type, "%s", t);
  return 0;
}

static int sample_line(st *c, const char *l) {
  const char *p = l;
  while (*p && *p != '{' && *p != ' ')
    p++;
  if (!name_ok(l, (size_t)(p - l), 0))
    return bad(c, "bad metric name");
  if (c->ns == MAXS)
    return bad(c, "too many samples");
  sample *s = &c->s[c->ns];
  memset(s, 0, sizeof *s);
  s->line = c->line;
  snprintf(s->name, sizeof s->name, "%.*s", (int)(p - l), l);
  int has_le = 0;
  if (*p == '{') {
    p++;
    char seen[16][64];
    int nseen = 0;
    while (*p != '}') {
      const char *ln = p;
      while (*p && *p != '=')
        p++;
      if (!*p || !name_ok(ln, (size_t)(p - ln), 1))
        return bad(c, "bad label name");
      char lname[64];
      snprintf(lname, sizeof lname, "%.*s", (int)(p - ln), ln);
      for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i], lname) == 0)
          return bad(c, "label %s repeated", lname);
      if (nseen < 16)
        snprintf(seen[nseen++], 64, "%s", lname);
      p++;
      if (*p != '"')
        return bad(c, "label value not quoted");
      p++;
      char val[256];
      size_t vl = 0;
      while (*p && *p != '"') {
        if (*p == '\n')
          return bad(c, "raw newline in label value");
        if (*p == '\\') {
          p++;
          if (*p != '\\' && *p != '"' && *p != 'n')
            return bad(c, "bad escape in label value");
        }
        if (vl < sizeof val - 1)
          val[vl++] = *p;
        p++;
      }
      if (*p != '"')
        return bad(c, "unterminated label value");
      val[vl] = '\0';
      p++;
      if (strcmp(lname, "le") == 0) {
        has_le = 1;
        if (parse_float(val, &s->le) != 0)
          return bad(c, "le=\"%s\" is not a float", val);
      } else {
        size_t off = strlen(s->labels);
        snprintf(s->labels + off, sizeof s->labels - off, "%s=%s,", lname, val);
      }
      if (*p == ',')
        p++;
      else if (*p != '}')
        return bad(c, "expected , or } in labels");
    }
    p++;
  }
  if (*p != ' ')
    return bad(c, "expected a space before the value");
  p++;
  char v[64];
  const char *sp = strchr(p, ' ');
  snprintf(v, sizeof v, "%.*s", (int)(sp ? (size_t)(sp - p) : strlen(p)), p);
  if (parse_float(v, &s->value) != 0)
    return bad(c, "value \"%s\" is not a float", v);
  if (sp) {
    for (const char *q = sp + 1; *q; q++)
      if ((*q < '0' || *q > '9') && *q != '-')
        return bad(c, "bad timestamp");
  }
  int f = family_of(c, s->name);
  if (f < 0)
    return bad(c, "too many families");
  s->fam = f;
  fam *fm = &c->f[f];
  if (fm->closed || (c->cur >= 0 && c->cur != f && fm->has_samples))
    return bad(c, "samples of %s are not contiguous", fm->name);
  if (c->cur >= 0 && c->cur != f)
    c->f[c->cur].closed = 1;
  c->cur = f;
  fm->has_samples = 1;
  int hist = strcmp(fm->type, "histogram") == 0;
  if (hist) {
    size_t bl = strlen(fm->name);
    s->is_bucket = strcmp(s->name + bl, "_bucket") == 0;
    if (strcmp(s->name, fm->name) == 0)
      return bad(c, "histogram %s has a bare sample", fm->name);
    if (s->is_bucket != has_le)
      return bad(c, "%s: le label %s", s->name, has_le ? "outside _bucket" : "missing");
  } else if (has_le) {
    size_t off = strlen(s->labels);
    snprintf(s->labels + off, sizeof s->labels - off, "le=%g,", s->le);
  }
  if (strcmp(fm->type, "counter") == 0 && !(s->value >= 0))
    return bad(c, "counter %s is negative", s->name);
  for (int i = 0; i < c->ns; i++) {
    sample *o = &c->s[i];
    if (strcmp(o->name, s->name) == 0 && strcmp(o->labels, s->labels) == 0 &&
        (!s->is_bucket || o->le == s->le))
      return bad(c, "duplicate series %s{%s}", s->name, s->labels);
  }
  c->ns++;
  return 0;
}

static int check_histograms(st *c) {
  for (int i = 0; i < c->ns; i++) {
    sample *s = &c->s[i];
    fam *fm = &c->f[s->fam];
    if (strcmp(fm->type, "histogram") != 0 || !s->is_bucket)
      continue;
    /* first bucket of its series? */
    int first = 1;
    for (int j = 0; j < i && first; j++)
      if (c->s[j].fam == s->fam && c->s[j].is_bucket &&
          strcmp(c->s[j].labels, s->labels) == 0)
        first = 0;
    if (!first)
      continue;
    double prev_le = -INFINITY, prev_v = 0, inf_v = -1;
    for (int j = i; j < c->ns; j++) {
      sample *b = &c->s[j];
      if (b->fam != s->fam || !b->is_bucket || strcmp(b->labels, s->labels) != 0)
        continue;
      c->line = b->line;
      if (!(b->le > prev_le))
        return bad(c, "%s{%s} le not ascending", b->name, b->labels);
      if (b->value < prev_v)
        return bad(c, "%s{%s} bucket counts decrease", b->name, b->labels);
      prev_le = b->le;
      prev_v = b->value;
      if (isinf(b->le))
        inf_v = b->value;
    }
    if (inf_v < 0)
      return bad(c, "%s{%s} has no +Inf bucket", fm->name, s->labels);
    int has_sum = 0, has_count = 0;
    for (int j = 0; j < c->ns; j++) {
      sample *o = &c->s[j];
      if (o->fam != s->fam || strcmp(o->labels, s->labels) != 0)
        continue;
      size_t bl = strlen(fm->name);
      if (strcmp(o->name + bl, "_sum") == 0)
        has_sum = 1;
      if (strcmp(o->name + bl, "_count") == 0) {
        has_count = 1;
        if (o->value != inf_v)
          return bad(c, "%s_count{%s} != +Inf bucket", fm->name, s->labels);
      }
    }
    if (!has_sum || !has_count)
      return bad(c, "%s{%s} lacks _sum or _count", fm->name, s->labels);
  }
  return 0;
}

int promcheck(const char *text, char *err, size_t errcap) {
  st *c = calloc(1, sizeof *c);
  c->s = calloc(MAXS, sizeof(sample));
  c->err = err;
  c->cap = errcap;
  c->cur = -1;
  err[0] = '\0';
  int rc = 0;
  size_t len = strlen(text);
  if (len && text[len - 1] != '\n') {
    rc = bad(c, "text does not end with a newline");
    goto out;
  }
  const char *p = text;
  while (*p && rc == 0) {
    c->line++;
    const char *nl = strchr(p, '\n');
    char l[2048];
    size_t ll = (size_t)(nl - p);
    if (ll >= sizeof l) {
      rc = bad(c, "line too long");
      break;
    }
    memcpy(l, p, ll);
    l[ll] = '\0';
    p = nl + 1;
    if (ll == 0)
      continue;
    if (l[0] == '#')
      rc = ll >= 2 && l[1] == ' ' ? meta_line(c, l) : 0;
    else
      rc = sample_line(c, l);
  }
  if (rc == 0)
    rc = check_histograms(c);
out:
  free(c->s);
  free(c);
  return rc;
}
