/*
 * store.c -- the runtime's side of storage: opening the backend and the
 * group committer, an activation's store and state struct, and storage
 * metrics.
 *
 * Each activation owns one stead__objstore (cache + pending writes). The
 * state struct of a class with a schema is decoded from the object's
 * NS_STATE record at activation; `state_saved` keeps the encoded bytes of
 * the last good turn, which serves both change detection (save only when
 * the bytes differ) and rollback (a failed turn decodes them back).
 */
#include "core/core.h"
#include "storage/failbe.h"
#include "storage/state.h"
#include "storage/telemetry.h"

#include <stdlib.h>
#include <string.h>

static const char *tel_ops[] = {"load", "save", "delete"};
static const char *tel_phases[] = {"start", "stop", "error"};

static void tel_adapt(void *udata, const stead__tel_event *ev) {
  stead_rt *rt = udata;
  stead_telemetry_event pub = {tel_ops[ev->op], tel_phases[ev->phase], ev->cls,
                               ev->id,          ev->duration_ns,       ev->rc};
  rt->cfg.telemetry(&pub, rt->cfg.telemetry_udata);
}

/* The spec with the configured durability appended unless it names one. */
static char *spec_with_durability(const stead_config *c) {
  const char *spec = c->storage ? c->storage : "memory";
  const char *base = strncmp(spec, "fail+", 5) == 0 ? spec + 5 : spec;
  if (strncmp(base, "sqlite:", 7) != 0 || strstr(spec, "durability="))
    return stead__strdup(spec);
  stead__buf b = {0};
  if (stead__buf_printf(&b, "%s%cdurability=%s", spec, strchr(spec, '?') ? '&' : '?',
                        c->durability == STEAD_DURABILITY_NORMAL ? "normal" : "full"))
    return NULL;
  return (char *)b.data;
}

/* "fail+SPEC" wraps SPEC's backend in the failure injector, which tests
 * (and chaos experiments) drive through stead__rt_backend(). */
static int open_backend(stead_rt *rt, const char *spec) {
  if (strncmp(spec, "fail+", 5) != 0)
    return stead__backend_open(spec, &rt->backend);
  stead__backend *inner;
  int rc = stead__backend_open(spec + 5, &inner);
  if (rc)
    return rc;
  if ((rc = stead__failbe_wrap(inner, &rt->backend)) != 0)
    inner->vt->close(inner);
  return rc;
}

stead__backend *stead__rt_backend(stead_rt *rt) {
  return rt->backend;
}

int stead__store_open(stead_rt *rt) {
  int rc;
  if (rt->manual && rt->manual->backend) {
    rt->backend = rt->manual->backend; /* a simulation's own backend */
    rt->manual->backend = NULL;
  } else {
    char *spec = spec_with_durability(&rt->cfg);
    if (!spec)
      return stead__err(STEAD_ENOMEM, "out of memory");
    rc = open_backend(rt, spec);
    free(spec);
    if (rc)
      return rc;
  }
  if (rt->cfg.telemetry) {
    stead__telemetry t = {tel_adapt, rt};
    stead__backend *wrapped;
    if ((rc = stead__telbe_wrap(rt->backend, &t, &wrapped)) != 0) {
      rt->backend->vt->close(rt->backend);
      rt->backend = NULL;
      return rc;
    }
    rt->backend = wrapped;
  }
  stead__committer_opts co = {(size_t)rt->cfg.commit_max_batch,
                              rt->cfg.commit_max_delay_us, rt->manual != NULL};
  if ((rc = stead__committer_start(rt->backend, &co, &rt->committer)) != 0) {
    rt->backend->vt->close(rt->backend);
    rt->backend = NULL;
    return rc;
  }
  rt->store_opts = (stead__objstore_opts){rt->cfg.max_key, rt->cfg.max_value,
                                          rt->cfg.max_write_set, 0};
  return 0;
}

void stead__store_close(stead_rt *rt) {
  stead__committer_close(rt->committer);
  rt->committer = NULL;
  if (rt->backend)
    rt->backend->vt->close(rt->backend);
  rt->backend = NULL;
}

static const stead_schema *schema_of(const stead__act *a) {
  return a->crec->cls->state_schema;
}

/* Loads the state struct from storage (or defaults) into a->state. */
static int load_state(stead_rt *rt, stead__act *a) {
  const stead_schema *sc = schema_of(a);
  void *rec = NULL;
  size_t len = 0;
  int rc = stead__objstore_get(a->store, STEAD__NS_STATE, "", 0, &rec, &len);
  if (rc == STEAD_ENOTFOUND) {
    stead_state_release(sc, a->state);
    memset(a->state, 0, sc->size);
    rc = stead_state_init(sc, a->state);
  } else if (rc == 0) {
    rc = stead__state_decode(sc, rec, len, a->state);
    if (rc == STEAD_ECORRUPT)
      rc = stead__err(rc, "state of %s/%s cannot be decoded: %s", a->crec->cls->name,
                      a->id, stead_errmsg());
  }
  free(rec);
  if (rc)
    return rc;
  /* Remember the bytes as they are now, for change detection. */
  a->state_saved.len = 0;
  rc = stead__state_changed(sc, a->state, &a->state_saved);
  return rc < 0 ? rc : 0;
}

int stead__store_activate(stead_rt *rt, stead__act *a) {
  const stead_class *cls = a->crec->cls;
  int rc;
  if (!a->store && (rc = stead__objstore_new(rt->backend, cls->name, a->id,
                                             &rt->store_opts, &a->store)) != 0)
    return rc;
  size_t size = cls->state_schema ? cls->state_schema->size : cls->state_size;
  if (size && !(a->state = calloc(1, size)))
    return stead__err(STEAD_ENOMEM, "out of memory allocating object state");
  atomic_store(&a->state_stale, false);
  if (cls->state_schema && (rc = load_state(rt, a)) != 0) {
    stead_state_release(cls->state_schema, a->state);
    free(a->state);
    a->state = NULL;
    return rc;
  }
  return 0;
}

int stead__store_reload_state(stead_rt *rt, stead__act *a) {
  if (!atomic_exchange(&a->state_stale, false) || !schema_of(a))
    return 0;
  return load_state(rt, a);
}

int stead__store_state_end(stead_rt *rt, stead__act *a, bool ok) {
  const stead_schema *sc = schema_of(a);
  if (!sc)
    return 0;
  if (!ok) {
    /* Roll back: the last good bytes always decode (we encoded them). */
    return stead__state_decode(sc, a->state_saved.data, a->state_saved.len, a->state);
  }
  stead__buf prev = a->state_saved;
  stead__buf next = {0};
  if (stead__buf_append(&next, prev.data, prev.len) != 0)
    return stead__err(STEAD_ENOMEM, "out of memory");
  int changed = stead__state_changed(sc, a->state, &next);
  int rc = changed < 0 ? changed : 0;
  if (changed == 1)
    rc = stead__objstore_put(a->store, STEAD__NS_STATE, "", 0, next.data, next.len);
  if (rc) {
    stead__buf_free(&next);
    stead__state_decode(sc, prev.data, prev.len, a->state);
    return rc;
  }
  stead__buf_free(&a->state_saved);
  a->state_saved = next;
  return 0;
}

void stead__store_deactivate(stead_rt *rt, stead__act *a) {
  /* The store must outlive every commit callback that refers to it. */
  if (atomic_load(&a->commits_pending) > 0)
    stead__committer_flush(rt->committer);
  if (schema_of(a) && a->state)
    stead_state_release(schema_of(a), a->state);
  free(a->state);
  a->state = NULL;
  stead__buf_free(&a->state_saved);
  stead__objstore_free(a->store);
  a->store = NULL;
}

int stead__store_metrics(stead_rt *rt, stead__buf *b) {
  stead__commit_stats st;
  stead__committer_stats(rt->committer, &st);
  int rc = 0;
  rc |= stead__metric_header(b, "stead_storage_commits_total", "counter",
                             "Backend transactions (group commits), by outcome.");
  rc |= stead__metric_value(b, "stead_storage_commits_total", "outcome=\"ok\"",
                            (double)(st.batches - st.batches_failed));
  rc |= stead__metric_value(b, "stead_storage_commits_total", "outcome=\"error\"",
                            (double)st.batches_failed);
  rc |= stead__metric_header(b, "stead_storage_write_sets_total", "counter",
                             "Turn write sets submitted to the committer, by outcome.");
  rc |= stead__metric_value(b, "stead_storage_write_sets_total", "outcome=\"committed\"",
                            (double)st.sets_committed);
  rc |= stead__metric_value(b, "stead_storage_write_sets_total", "outcome=\"failed\"",
                            (double)st.sets_failed);
  rc |= stead__metric_value(b, "stead_storage_write_sets_total", "outcome=\"canceled\"",
                            (double)st.sets_canceled);
  rc |= stead__metric_header(b, "stead_storage_commit_queue", "gauge",
                             "Write sets submitted and not yet committed.");
  rc |= stead__metric_value(b, "stead_storage_commit_queue", NULL, (double)st.queued);
  /* Histograms: the committer keeps per-bucket counts. */
  rc |= stead__metric_header(b, "stead_storage_batch_size", "histogram",
                             "Write sets per backend transaction.");
  uint64_t cum = 0;
  for (int i = 0; i < STEAD__BATCH_BUCKETS; i++) {
    cum += st.batch_size[i];
    if (i < STEAD__BATCH_BUCKETS - 1)
      rc |= stead__buf_printf(b, "stead_storage_batch_size_bucket{le=\"%g\"} %llu\n",
                              stead__batch_le[i], (unsigned long long)cum);
    else
      rc |= stead__buf_printf(b, "stead_storage_batch_size_bucket{le=\"+Inf\"} %llu\n",
                              (unsigned long long)cum);
  }
  rc |= stead__buf_printf(b, "stead_storage_batch_size_sum %llu\n",
                          (unsigned long long)st.batch_size_sum);
  rc |= stead__buf_printf(b, "stead_storage_batch_size_count %llu\n",
                          (unsigned long long)cum);
  rc |= stead__metric_header(b, "stead_storage_commit_duration_seconds", "histogram",
                             "Backend commit time per batch (including the sync).");
  cum = 0;
  for (int i = 0; i < STEAD__LAT_BUCKETS; i++) {
    cum += st.latency[i];
    if (i < STEAD__LAT_BUCKETS - 1)
      rc |= stead__buf_printf(
          b, "stead_storage_commit_duration_seconds_bucket{le=\"%g\"} %llu\n",
          stead__lat_le_us[i] / 1e6, (unsigned long long)cum);
    else
      rc |= stead__buf_printf(
          b, "stead_storage_commit_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
          (unsigned long long)cum);
  }
  rc |= stead__buf_printf(b, "stead_storage_commit_duration_seconds_sum %g\n",
                          (double)st.latency_sum_us / 1e6);
  rc |= stead__buf_printf(b, "stead_storage_commit_duration_seconds_count %llu\n",
                          (unsigned long long)cum);
  return rc ? STEAD_ENOMEM : 0;
}

const stead_schema *stead_class_schema(stead_rt *rt, const char *cls) {
  const stead__class_rec *c = rt && cls ? stead__class_find(rt, cls) : NULL;
  if (!c) {
    stead__err(STEAD_ENOCLASS, "no class \"%s\"", cls ? cls : "(null)");
    return NULL;
  }
  if (!c->cls->state_schema)
    stead__err(STEAD_ENOTFOUND, "class \"%s\" has no state schema", cls);
  return c->cls->state_schema;
}

int stead_object_state(stead_rt *rt, const char *cls, const char *id, void **out) {
  if (!rt || !out)
    return stead__err(STEAD_EINVAL, "runtime or out is NULL");
  *out = NULL;
  int rc;
  if ((rc = stead__check_name("class name", cls)) ||
      (rc = stead__check_utf8("id", id, STEAD__MAX_ID)))
    return rc;
  const stead_schema *sc = stead_class_schema(rt, cls);
  if (!sc)
    return stead__class_find(rt, cls) ? STEAD_ENOTSUP : STEAD_ENOCLASS;
  void *st = calloc(1, sc->size);
  if (!st)
    return stead__err(STEAD_ENOMEM, "out of memory");
  void *rec = NULL;
  size_t len = 0;
  rc = rt->backend->vt->get(rt->backend, cls, id, STEAD__NS_STATE, "", 0, &rec, &len);
  if (rc == STEAD_ENOTFOUND)
    rc = stead_state_init(sc, st);
  else if (rc == 0)
    rc = stead__state_decode(sc, rec, len, st);
  free(rec);
  if (rc) {
    stead_state_release(sc, st);
    free(st);
    return rc;
  }
  *out = st;
  return 0;
}

void stead_object_state_free(stead_rt *rt, const char *cls, void *st) {
  if (!st)
    return;
  const stead__class_rec *c = rt && cls ? stead__class_find(rt, cls) : NULL;
  if (c && c->cls->state_schema)
    stead_state_release(c->cls->state_schema, st);
  free(st);
}
