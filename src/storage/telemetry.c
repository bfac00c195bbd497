/*
 * telemetry.c -- the telemetry wrapper (see telemetry.h). Stateless apart
 * from the copied callback; thread-safety is the callback's.
 */
#include "storage/telemetry.h"
#include "util/util.h"

#include <stdlib.h>

typedef struct telbe {
  stead__backend base;
  stead__backend *in;
  stead__telemetry t;
} telbe;

static void emit(telbe *t, stead__tel_op op, stead__tel_phase ph, const char *cls,
                 const char *id, int64_t dur, int rc) {
  stead__tel_event ev = {op, ph, cls, id, dur, rc};
  t->t.event(t->t.udata, &ev);
}

static void done(telbe *t, stead__tel_op op, const char *cls, const char *id, int64_t t0,
                 int rc) {
  int ok = rc == 0 || rc == STEAD_ENOTFOUND;
  emit(t, op, ok ? STEAD__TEL_STOP : STEAD__TEL_ERROR, cls, id, stead__mono_ns() - t0,
       ok ? 0 : rc);
}

static int t_get(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                 const void *key, size_t klen, void **val, size_t *vlen) {
  telbe *t = (telbe *)b;
  emit(t, STEAD__TEL_LOAD, STEAD__TEL_START, cls, id, 0, 0);
  int64_t t0 = stead__mono_ns();
  int rc = t->in->vt->get(t->in, cls, id, ns, key, klen, val, vlen);
  done(t, STEAD__TEL_LOAD, cls, id, t0, rc);
  return rc;
}

static int t_list(stead__backend *b, const char *cls, const char *id, uint8_t ns,
                  const stead__range *r, stead__kv_cb cb, void *u) {
  telbe *t = (telbe *)b;
  emit(t, STEAD__TEL_LOAD, STEAD__TEL_START, cls, id, 0, 0);
  int64_t t0 = stead__mono_ns();
  int rc = t->in->vt->list(t->in, cls, id, ns, r, cb, u);
  done(t, STEAD__TEL_LOAD, cls, id, t0, rc);
  return rc;
}

static int t_alarms_list(stead__backend *b, const char *cls, const char *id,
                         stead__alarm_cb cb, void *u) {
  stead__backend *in = ((telbe *)b)->in;
  return in->vt->alarms_list(in, cls, id, cb, u);
}

static int t_alarms_scan(stead__backend *b, const stead__alarm_cursor *after,
                         int64_t until_ms, size_t limit, stead__alarm_cb cb, void *u) {
  stead__backend *in = ((telbe *)b)->in;
  return in->vt->alarms_scan(in, after, until_ms, limit, cb, u);
}

static int t_scan_ns(stead__backend *b, uint8_t ns, stead__ns_cb cb, void *u) {
  stead__backend *in = ((telbe *)b)->in;
  return in->vt->scan_ns(in, ns, cb, u);
}

/* A set that only removes things is a delete, not a save. */
static stead__tel_op set_op(const stead__wset *ws) {
  for (stead__onode *e = stead__omap_seek(&ws->kv, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->kv, e->key, e->klen, STEAD__SEEK_GT))
    if (!(e->flags & STEAD__TOMB))
      return STEAD__TEL_SAVE;
  for (stead__onode *e = stead__omap_seek(&ws->alarms, NULL, 0, STEAD__SEEK_GE); e;
       e = stead__omap_seek(&ws->alarms, e->key, e->klen, STEAD__SEEK_GT))
    if (!(e->flags & STEAD__TOMB))
      return STEAD__TEL_SAVE;
  return (ws->clear_mask || ws->alarms_clear || ws->kv.count || ws->alarms.count)
             ? STEAD__TEL_DELETE
             : STEAD__TEL_SAVE;
}

static int t_commit(stead__backend *b, stead__wset *const *sets, size_t n) {
  telbe *t = (telbe *)b;
  for (size_t i = 0; i < n; i++)
    emit(t, set_op(sets[i]), STEAD__TEL_START, sets[i]->cls, sets[i]->id, 0, 0);
  int64_t t0 = stead__mono_ns();
  int rc = t->in->vt->commit(t->in, sets, n);
  int64_t d = stead__mono_ns() - t0;
  for (size_t i = 0; i < n; i++)
    emit(t, set_op(sets[i]), rc ? STEAD__TEL_ERROR : STEAD__TEL_STOP, sets[i]->cls,
         sets[i]->id, d, rc);
  return rc;
}

static void t_close(stead__backend *b) {
  telbe *t = (telbe *)b;
  stead__backend_close(t->in);
  free(t);
}

static const stead__backend_vt tel_vt = {
    .name = "telemetry",
    .get = t_get,
    .list = t_list,
    .commit = t_commit,
    .alarms_list = t_alarms_list,
    .alarms_scan = t_alarms_scan,
    .scan_ns = t_scan_ns,
    .close = t_close,
};

int stead__telbe_wrap(stead__backend *inner, const stead__telemetry *tel,
                      stead__backend **out) {
  if (!tel || !tel->event)
    return stead__err(STEAD_EINVAL, "telemetry needs an event callback");
  telbe *t = calloc(1, sizeof *t);
  if (!t)
    return stead__err(STEAD_ENOMEM, "out of memory");
  t->base.vt = &tel_vt;
  t->in = inner;
  t->t = *tel;
  *out = &t->base;
  return 0;
}
