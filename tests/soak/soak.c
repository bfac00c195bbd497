/*
 * soak.c -- one `stead serve` node on SQLite under mixed load for a long
 * time, watched from outside (issue 11). Usage:
 *
 *   soak_driver STEAD_EXE SECONDS [--rss-bound-mib N] [--every N]
 *
 * Load, over HTTP with keep-alive connections, all at once:
 *   2 threads  counter increments over 1,000 objects (state-struct writes)
 *   1 thread   chat posts over 100 rooms (storage writes + deletes; each
 *              post also emits a bus event)
 *   1 thread   reminder schedules over 20 objects x 50 names, due in
 *              0.1..2 s, so alarms fire all the time
 *   1 thread   bus emits (POST /v1/events/soak.tick)
 *   1 stream   an SSE subscriber on "**" reading every event
 * Every second it samples the node's RSS (/proc/PID/status VmRSS), its
 * open file descriptors (/proc/PID/fd) and the latency of every request
 * of that second. It prints a row every --every seconds (default 10),
 * then the growth after warm-up: the RSS slope (least squares, KiB/min),
 * RSS and fds at the start and end of the measured part, and p99 over
 * time. Warm-up is the first fifth of the run (at least 10 s): caches,
 * the SQLite page cache and the set of activations fill up there.
 *
 * Fails (exit 1) when, after warm-up, the median RSS of the last quarter
 * exceeds that of the first quarter by more than the bound (default
 * 16 MiB), when open fds grow by more than 16, when any request failed
 * with a non-retryable error, or when the node dies.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LAT 200000 /* latencies kept per second */

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef struct soak {
  int port;
  pid_t pid;
  atomic_int stop;
  pthread_mutex_t mu;
  int64_t *lat; /* this second's latencies, us */
  size_t nlat;
  atomic_long ok, retryable, bad, sse_bytes;
} soak;

static soak S;

static size_t discard(char *p, size_t sz, size_t n, void *u) {
  (void)p;
  (void)u;
  return sz * n;
}

static void record(int64_t us, long status) {
  if (status == 200 || status == 202)
    atomic_fetch_add(&S.ok, 1);
  else if (status == 0 || status == 429 || status == 503 || status == 504)
    atomic_fetch_add(&S.retryable, 1);
  else
    atomic_fetch_add(&S.bad, 1);
  pthread_mutex_lock(&S.mu);
  if (S.nlat < MAX_LAT)
    S.lat[S.nlat++] = us;
  pthread_mutex_unlock(&S.mu);
}

static void post(CURL *c, const char *path, const char *body) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", S.port, path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  int64_t t0 = mono_us();
  long st = 0;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  record(mono_us() - t0, st);
}

typedef enum { W_COUNTER, W_CHAT, W_REMINDER, W_EMIT } wkind;

static void *worker(void *arg) {
  wkind k = (wkind)(intptr_t)arg;
  CURL *c = curl_easy_init();
  unsigned seed = (unsigned)k * 31 + 7;
  char path[160], body[256];
  while (!atomic_load(&S.stop)) {
    switch (k) {
    case W_COUNTER:
      snprintf(path, sizeof path, "/v1/objects/counter/c%d/increment",
               rand_r(&seed) % 1000);
      post(c, path, "1");
      break;
    case W_CHAT:
      snprintf(path, sizeof path, "/v1/objects/chatroom/r%d/post", rand_r(&seed) % 100);
      snprintf(body, sizeof body, "{\"user\":\"soak\",\"text\":\"message %d\"}",
               rand_r(&seed));
      post(c, path, body);
      break;
    case W_REMINDER:
      snprintf(path, sizeof path, "/v1/objects/reminder/m%d/schedule",
               rand_r(&seed) % 20);
      snprintf(body, sizeof body, "{\"name\":\"n%d\",\"in_ms\":%d}", rand_r(&seed) % 50,
               100 + rand_r(&seed) % 1900);
      post(c, path, body);
      sleep_ms(2); /* alarms at a steady rate, not as fast as possible */
      break;
    case W_EMIT:
      post(c, "/v1/events/soak.tick", "{\"t\":1}");
      break;
    }
  }
  curl_easy_cleanup(c);
  return NULL;
}

static size_t sse_cb(char *p, size_t sz, size_t n, void *u) {
  (void)p;
  (void)u;
  atomic_fetch_add(&S.sse_bytes, (long)(sz * n));
  return atomic_load(&S.stop) ? 0 : sz * n; /* 0 ends the transfer */
}

static void *sse(void *arg) {
  (void)arg;
  while (!atomic_load(&S.stop)) {
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/events?pattern=**", S.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_cb);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (!atomic_load(&S.stop))
      sleep_ms(100);
  }
  return NULL;
}

/* ---- the node -------------------------------------------------------- */

static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  int port = -1;
  if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(s, (struct sockaddr *)&a, &l) == 0)
    port = ntohs(a.sin_port);
  if (s >= 0)
    close(s);
  return port;
}

static int healthy(void) {
  CURL *c = curl_easy_init();
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", S.port);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
  long st = 0;
  if (curl_easy_perform(c) == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
  curl_easy_cleanup(c);
  return st == 200;
}

static int start_node(const char *exe, const char *dir) {
  char listen[64], data[300], log[300];
  S.port = free_port();
  snprintf(listen, sizeof listen, "127.0.0.1:%d", S.port);
  snprintf(data, sizeof data, "%s/data", dir);
  snprintf(log, sizeof log, "%s/stderr.log", dir);
  S.pid = fork();
  if (S.pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(fd, 2);
    execl(exe, exe, "serve", "--listen", listen, "--data", data, "--storage", "sqlite",
          "--log-level", "warn", (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 750; i++) {
    if (healthy())
      return 0;
    sleep_ms(20);
  }
  return -1;
}

static long rss_kib(void) {
  char p[64], line[256];
  snprintf(p, sizeof p, "/proc/%d/status", (int)S.pid);
  FILE *f = fopen(p, "r");
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      v = atol(line + 6);
  if (f)
    fclose(f);
  return v;
}

static int fds(void) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/fd", (int)S.pid);
  DIR *d = opendir(p);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    n += e->d_name[0] != '.';
  if (d)
    closedir(d);
  return d ? n : -1;
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int cmpl(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

static long median(const long *v, int n) {
  long *c = malloc(sizeof *c * (size_t)n);
  memcpy(c, v, sizeof *c * (size_t)n);
  qsort(c, (size_t)n, sizeof *c, cmpl);
  long m = c[n / 2];
  free(c);
  return m;
}

typedef struct sample {
  long rss;
  int fds;
  long reqs;
  int64_t p50, p99;
} sample;

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s STEAD_EXE SECONDS [--rss-bound-mib N] [--every N]\n",
            argv[0]);
    return 2;
  }
  const char *exe = argv[1];
  int secs = atoi(argv[2]), every = 10;
  long bound_mib = 16;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--rss-bound-mib") == 0)
      bound_mib = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--every") == 0)
      every = atoi(argv[i + 1]);
  }
  if (secs < 20 || every < 1) {
    fprintf(stderr, "soak: SECONDS must be >= 20\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_ALL);
  char dir[] = "/tmp/stead-soak-XXXXXX";
  if (!mkdtemp(dir) || start_node(exe, dir) != 0) {
    fprintf(stderr, "soak: the node did not start (see %s/stderr.log)\n", dir);
    return 2;
  }
  pthread_mutex_init(&S.mu, NULL);
  S.lat = malloc(sizeof *S.lat * MAX_LAT);
  int64_t *snap = malloc(sizeof *snap * MAX_LAT);
  sample *smp = calloc((size_t)secs + 1, sizeof *smp);
  pthread_t th[6];
  wkind kinds[5] = {W_COUNTER, W_COUNTER, W_CHAT, W_REMINDER, W_EMIT};
  for (int i = 0; i < 5; i++)
    pthread_create(&th[i], NULL, worker, (void *)(intptr_t)kinds[i]);
  pthread_create(&th[5], NULL, sse, NULL);
  printf("soak: stead serve (SQLite) pid %d, %d s, node stderr in %s\n", (int)S.pid, secs,
         dir);
  printf("%6s %10s %5s %8s %9s %9s\n", "t(s)", "rss(KiB)", "fds", "req/s", "p50(ms)",
         "p99(ms)");
  int died = 0, n = 0;
  int64_t next = mono_us() + 1000000;
  for (int t = 1; t <= secs; t++) {
    int64_t wait = next - mono_us();
    if (wait > 0)
      sleep_ms((int)(wait / 1000));
    next += 1000000;
    pthread_mutex_lock(&S.mu);
    size_t k = S.nlat;
    memcpy(snap, S.lat, sizeof *snap * k);
    S.nlat = 0;
    pthread_mutex_unlock(&S.mu);
    qsort(snap, k, sizeof *snap, cmp64);
    sample *s = &smp[n++];
    s->rss = rss_kib();
    s->fds = fds();
    s->reqs = (long)k;
    s->p50 = k ? snap[k / 2] : 0;
    s->p99 = k ? snap[(k * 99) / 100] : 0;
    if (s->rss < 0 || waitpid(S.pid, NULL, WNOHANG) == S.pid) {
      died = 1;
      n--;
      break;
    }
    if (t % every == 0 || t == secs)
      printf("%6d %10ld %5d %8ld %9.2f %9.2f\n", t, s->rss, s->fds, s->reqs,
             (double)s->p50 / 1000.0, (double)s->p99 / 1000.0);
    fflush(stdout);
  }
  atomic_store(&S.stop, 1);
  for (int i = 0; i < 6; i++)
    pthread_join(th[i], NULL);
  int term = 0;
  if (!died) {
    kill(S.pid, SIGTERM);
    int st;
    waitpid(S.pid, &st, 0);
    term = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  /* Growth after warm-up. */
  int w = n / 5 > 10 ? n / 5 : 10;
  int m = n - w, q = m / 4 > 1 ? m / 4 : 1;
  int fail = died || term != 0 || atomic_load(&S.bad) > 0;
  if (m >= 8) {
    long *rss = malloc(sizeof *rss * (size_t)m), *fd = malloc(sizeof *fd * (size_t)m);
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < m; i++) {
      rss[i] = smp[w + i].rss;
      fd[i] = smp[w + i].fds;
      sx += i;
      sy += (double)rss[i];
      sxx += (double)i * i;
      sxy += (double)i * (double)rss[i];
    }
    double slope = (m * sxy - sx * sy) / (m * sxx - sx * sx) * 60.0; /* KiB/min */
    long r0 = median(rss, q), r1 = median(rss + m - q, q);
    long f0 = median(fd, q), f1 = median(fd + m - q, q);
    printf(
        "after warm-up (%d s): rss %ld -> %ld KiB (%+ld KiB, bound %ld MiB), slope %+.1f "
        "KiB/min; fds %ld -> %ld\n",
        w, r0, r1, r1 - r0, bound_mib, slope, f0, f1);
    if (r1 - r0 > bound_mib * 1024 || f1 - f0 > 16)
      fail = 1;
    /* p99 over time: per tenth of the run, the worst second's p99. */
    printf("p99 over time (ms, worst second of each tenth):");
    for (int d = 0; d < 10; d++) {
      int64_t worst = 0;
      for (int i = d * n / 10; i < (d + 1) * n / 10; i++)
        worst = smp[i].p99 > worst ? smp[i].p99 : worst;
      printf(" %.1f", (double)worst / 1000.0);
    }
    printf("\n");
    free(rss);
    free(fd);
  }
  long total = atomic_load(&S.ok) + atomic_load(&S.retryable) + atomic_load(&S.bad);
  printf(
      "requests %ld: ok %ld, retryable failures %ld, other failures %ld; SSE bytes read "
      "%ld; node %s (exit %d)\n",
      total, atomic_load(&S.ok), atomic_load(&S.retryable), atomic_load(&S.bad),
      atomic_load(&S.sse_bytes), died ? "DIED" : "stopped with SIGTERM", term);
  printf("soak: %s\n", fail ? "FAIL" : "OK");
  if (!fail) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
      /* best effort */
    }
  }
  curl_global_cleanup();
  free(S.lat);
  free(snap);
  free(smp);
  return fail;
}
