/*
 * bench_bus.c -- event bus throughput: emits per second with 10 and with
 * 10,000 registered patterns (a mix of exact, `*` and `**`), through
 *   - the trie match alone (what an emit pays to find its listeners),
 *   - stead_bus_emit_sync on 1 and 2 threads (match + copy + run),
 *   - stead_bus_emit through the worker pool with 1 and 2 workers,
 *   - and, in the same run, a linear scan of every pattern per emit (the
 *     Soiree approach) so the ratio shows.
 * Every topic emitted matches at least one listener. Prints a table.
 * Usage: bench_bus [seconds per row, default 0.5]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_internal.h"

enum { NTOPICS = 4096 };

static const char *verbs[] = {"created", "updated", "deleted", "paid", "shipped"};

typedef struct setup {
  int npat;
  char (*pats)[64];
  stead__seg (*psegs)[8];
  int *pn;
  char topics[NTOPICS][64];
  stead__seg tsegs[NTOPICS][8];
  int tn[NTOPICS];
} setup;

static uint64_t rng = 88172645463325252ULL;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng % n);
}

/* Patterns: 50% exact "svcA.entB.verb", 30% "svcA.*.verb", 20% `**`
 * ("svcA.entB.**" or "**.entB.verb"). Services: npat/20, entities: 20. */
static void make_patterns(setup *s, int npat) {
  s->npat = npat;
  s->pats = calloc((size_t)npat, sizeof *s->pats);
  s->psegs = calloc((size_t)npat, sizeof *s->psegs);
  s->pn = calloc((size_t)npat, sizeof *s->pn);
  int svcs = npat / 20 > 0 ? npat / 20 : 1;
  for (int i = 0; i < npat; i++) {
    unsigned a = rnd((unsigned)svcs), b = rnd(20), v = rnd(5), kind = rnd(10);
    if (kind < 5)
      snprintf(s->pats[i], 64, "svc%u.ent%u.%s", a, b, verbs[v]);
    else if (kind < 8)
      snprintf(s->pats[i], 64, "svc%u.*.%s", a, verbs[v]);
    else if (kind < 9)
      snprintf(s->pats[i], 64, "svc%u.ent%u.**", a, b);
    else
      snprintf(s->pats[i], 64, "**.ent%u.%s", b + 20 * a, verbs[v]);
    s->pn[i] = stead__topic_split(s->pats[i], 1, 256, 8, s->psegs[i]);
  }
  /* Topics: derived from exact/star patterns so each matches something. */
  for (int t = 0; t < NTOPICS; t++) {
    for (;;) {
      const char *p = s->pats[rnd((unsigned)npat)];
      unsigned a, b;
      char verb[16];
      if (sscanf(p, "svc%u.ent%u.%15[a-z]", &a, &b, verb) == 3) {
        snprintf(s->topics[t], 64, "svc%u.ent%u.%s", a, b, verb);
        break;
      }
      if (sscanf(p, "svc%u.*.%15[a-z]", &a, verb) == 2) {
        snprintf(s->topics[t], 64, "svc%u.ent%u.%s", a, rnd(20), verb);
        break;
      }
    }
    s->tn[t] = stead__topic_split(s->topics[t], 0, 256, 8, s->tsegs[t]);
  }
}

static void free_patterns(setup *s) {
  free(s->pats);
  free(s->psegs);
  free(s->pn);
}

typedef struct counter {
  _Atomic uint64_t hits;
} counter;

static int count_listener(stead_event *ev, void *udata) {
  (void)ev;
  atomic_fetch_add_explicit(&((counter *)udata)->hits, 1, memory_order_relaxed);
  return 0;
}

static int visit_count(stead__listener *l, void *arg) {
  (void)l;
  (*(uint64_t *)arg)++;
  return 0;
}

static double secs(void) {
  return (double)stead__mono_ns() / 1e9;
}

static double budget = 0.5;

/* ---- runners ------------------------------------------------------------- */

typedef struct run_arg {
  setup *s;
  stead_bus *bus;
  uint64_t emits, hits;
  int offset;
} run_arg;

static void *sync_runner(void *p) {
  run_arg *a = p;
  double end = secs() + budget;
  uint64_t n = 0;
  int t = a->offset;
  while (secs() < end) {
    for (int k = 0; k < 1000; k++, t = (t + 1) % NTOPICS)
      if (stead_bus_emit_sync(a->bus, a->s->topics[t], "p", 1, NULL, 0, NULL) != 0)
        abort();
    n += 1000;
  }
  a->emits = n;
  return NULL;
}

static double run_sync(setup *s, stead_bus *bus, int threads) {
  pthread_t th[2];
  run_arg a[2];
  double t0 = secs();
  for (int i = 0; i < threads; i++) {
    a[i] = (run_arg){.s = s, .bus = bus, .offset = i * 977};
    pthread_create(&th[i], NULL, sync_runner, &a[i]);
  }
  uint64_t n = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    n += a[i].emits;
  }
  return (double)n / (secs() - t0);
}

static double run_async(setup *s, stead_bus *bus) {
  double t0 = secs(), end = t0 + budget;
  uint64_t n = 0;
  int t = 0;
  while (secs() < end) {
    for (int k = 0; k < 1000; k++, t = (t + 1) % NTOPICS)
      if (stead_bus_emit(bus, s->topics[t], "p", 1, NULL, 0, NULL, NULL) != 0)
        abort();
    n += 1000;
  }
  return (double)n / (secs() - t0); /* accepted/s; free below drains */
}

static double run_trie(setup *s, stead_bus *bus, const stead__trie *trie, double *per) {
  (void)bus;
  double t0 = secs(), end = t0 + budget;
  uint64_t n = 0, hits = 0;
  int t = 0;
  while (secs() < end) {
    for (int k = 0; k < 1000; k++, t = (t + 1) % NTOPICS)
      stead__trie_match(trie, s->tsegs[t], s->tn[t], visit_count, &hits);
    n += 1000;
  }
  *per = (double)hits / (double)n;
  return (double)n / (secs() - t0);
}

static double run_linear(setup *s, double *per) {
  double t0 = secs(), end = t0 + budget;
  uint64_t n = 0, hits = 0;
  int t = 0;
  while (secs() < end) {
    for (int k = 0; k < 10; k++, t = (t + 1) % NTOPICS)
      for (int i = 0; i < s->npat; i++)
        hits += stead__segs_match(s->psegs[i], s->pn[i], s->tsegs[t], s->tn[t]);
    n += 10;
  }
  *per = (double)hits / (double)n;
  return (double)n / (secs() - t0);
}

static stead_bus *make_bus(setup *s, int workers, counter *c) {
  stead_bus_config cfg;
  stead_bus_config_init(&cfg);
  cfg.workers = workers;
  cfg.queue_capacity = 4096;
  cfg.wait_when_full = 1;
  stead_bus *b;
  if (stead_bus_new(&cfg, &b) != 0)
    abort();
  for (int i = 0; i < s->npat; i++)
    if (stead_bus_on(b, s->pats[i], count_listener, c, (int)rnd(3), NULL) != 0)
      abort();
  return b;
}

static void row(int npat, const char *mode, int threads, double rate, double per,
                double base) {
  char ratio[32] = "";
  if (base > 0)
    snprintf(ratio, sizeof ratio, "%.0fx", rate / base);
  printf("| %6d | %-34s | %7d | %12.0f | %8.2f | %8s |\n", npat, mode, threads, rate, per,
         ratio);
}

static void bench(int npat) {
  static setup s;
  make_patterns(&s, npat);
  counter c = {0};
  double per_trie = 0, per_lin = 0;
  double lin = run_linear(&s, &per_lin);

  /* The trie alone, built with the same patterns. */
  stead__trie trie;
  stead__trie_init(&trie);
  stead__listener *ls = calloc((size_t)npat, sizeof *ls);
  for (int i = 0; i < npat; i++)
    stead__trie_add(&trie, s.psegs[i], s.pn[i], &ls[i]);
  /* Both matchers must agree topic by topic before anything is timed. */
  for (int t = 0; t < NTOPICS; t++) {
    uint64_t want = 0, got = 0;
    for (int i = 0; i < npat; i++)
      want += stead__segs_match(s.psegs[i], s.pn[i], s.tsegs[t], s.tn[t]);
    stead__trie_match(&trie, s.tsegs[t], s.tn[t], visit_count, &got);
    if (want != got || want == 0) {
      fprintf(stderr, "%s: trie %llu, linear scan %llu\n", s.topics[t],
              (unsigned long long)got, (unsigned long long)want);
      exit(1);
    }
  }
  double tr = run_trie(&s, NULL, &trie, &per_trie);
  stead__trie_free(&trie);
  free(ls);

  row(npat, "linear scan match (Soiree approach)", 1, lin, per_lin, 0);
  row(npat, "trie match only", 1, tr, per_trie, lin);
  stead_bus *b = make_bus(&s, 1, &c);
  row(npat, "emit_sync (match+copy+run)", 1, run_sync(&s, b, 1), per_trie, lin);
  row(npat, "emit_sync (match+copy+run)", 2, run_sync(&s, b, 2), per_trie, lin);
  stead_bus_free(b);
  for (int w = 1; w <= 2; w++) {
    b = make_bus(&s, w, &c);
    double t0 = secs();
    double accepted = run_async(&s, b) * budget;
    stead_bus_free(b); /* drains, so every accepted event has run */
    double rate = accepted / (secs() - t0);
    char mode[64];
    snprintf(mode, sizeof mode, "emit via pool, %d worker%s", w, w > 1 ? "s" : "");
    row(npat, mode, w, rate, per_trie, lin);
  }
  free_patterns(&s);
}

int main(int argc, char **argv) {
  if (argc > 1)
    budget = atof(argv[1]);
  printf("| patterns | mode | threads | emits/s | listeners/emit | vs linear |\n");
  printf("|---:|---|---:|---:|---:|---:|\n");
  fflush(stdout);
  bench(10);
  bench(10000);
  return 0;
}
