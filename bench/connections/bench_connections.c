/*
 * bench_connections.c -- connections: broadcast throughput through one
 * room with 1,000 connections, and memory per idle connection whose
 * object is hibernated (deactivated).
 *
 * Baseline, in the same process: the same broadcast over in-process
 * connections (no sockets), so the WebSocket row shows what the gateway
 * adds. The WebSocket rows run `stead serve` (argv[1]) with the chatroom
 * example; "delivered/s" counts messages that reached a client (posts x
 * sockets). Memory: RSS growth divided by the connections opened.
 *
 * Usage: bench_connections PATH_TO_STEAD [N=1000] [POSTS=200]
 */
#include "stead.h"
#include "wsclient.h"

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kb) == 1)
      break;
  if (f)
    fclose(f);
  return kb;
}

/* ---- in process ---- */

static int hub_connect(stead_ctx *ctx, stead_conn *c, const void *m, size_t n) {
  return stead_conn_set_attachment(ctx, c, "user-name-xyz", 13);
}

static int hub_message(stead_ctx *ctx, stead_conn *c, const void *d, size_t n,
                       unsigned f) {
  stead_conn **cs = NULL;
  size_t k = 0;
  int rc = stead_conn_list(ctx, NULL, &cs, &k);
  for (size_t i = 0; !rc && i < k; i++)
    rc = stead_conn_send(cs[i], d, n, f);
  stead_free(cs);
  return rc;
}

static const stead_method no_methods[] = {{NULL, NULL}};
static const stead_class hub = {.name = "hub",
                                .methods = no_methods,
                                .on_connect = hub_connect,
                                .on_conn_message = hub_message};

static atomic_long g_delivered;

static void count_msg(stead_conn *c, const void *d, size_t n, unsigned f, void *u) {
  atomic_fetch_add(&g_delivered, 1);
}

static double inproc_broadcast(int n, int posts) {
  stead_config cfg;
  stead_config_init(&cfg);
  stead_rt *rt;
  if (stead_open(&cfg, &rt) || stead_register(rt, &hub))
    return -1;
  stead_conn **cs = calloc((size_t)n, sizeof *cs);
  for (int i = 0; i < n; i++)
    if (stead_connect(rt, "hub", "room", NULL, 0, count_msg, NULL, NULL, &cs[i]))
      return -1;
  atomic_store(&g_delivered, 0);
  const char *msg =
      "{\"id\":1,\"user\":\"ann\",\"text\":\"hello, everyone in the room\"}";
  double t0 = now_s();
  for (int p = 0; p < posts; p++)
    stead_conn_send(cs[0], msg, strlen(msg), STEAD_CONN_TEXT);
  while (atomic_load(&g_delivered) < (long)n * posts && now_s() - t0 < 60)
    usleep(200);
  double dt = now_s() - t0;
  for (int i = 0; i < n; i++)
    stead_conn_close(cs[i], 0, NULL);
  free(cs);
  stead_close(rt);
  return (double)n * posts / dt;
}

/* Bytes of RSS per connection whose room is deactivated. */
static double inproc_idle_bytes(int n) {
  stead_config cfg;
  stead_config_init(&cfg);
  stead_rt *rt;
  if (stead_open(&cfg, &rt) || stead_register(rt, &hub))
    return -1;
  stead_conn **cs = calloc((size_t)n, sizeof *cs);
  long before = rss_kb(getpid());
  char id[32];
  for (int i = 0; i < n; i++) {
    snprintf(id, sizeof id, "room-%d", i % 100);
    if (stead_connect(rt, "hub", id, NULL, 0, count_msg, NULL, NULL, &cs[i]))
      return -1;
  }
  for (int r = 0; r < 100; r++) {
    snprintf(id, sizeof id, "room-%d", r);
    stead_deactivate(rt, "hub", id);
  }
  long after = rss_kb(getpid());
  for (int i = 0; i < n; i++)
    stead_conn_close(cs[i], 0, NULL);
  free(cs);
  stead_close(rt);
  return (double)(after - before) * 1024 / n;
}

/* ---- over WebSockets ---- */

static pid_t start_server(const char *exe, int *port) {
  int pfd[2];
  if (pipe(pfd))
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pfd[1], 2);
    if (!freopen("/dev/null", "w", stdout))
      _exit(127);
    close(pfd[0]);
    execl(exe, exe, "serve", "--listen", "127.0.0.1:0", "--storage", "memory", "--data",
          "/tmp/stead-bench-conn", (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  FILE *f = fdopen(pfd[0], "r");
  char line[512];
  *port = 0;
  while (fgets(line, sizeof line, f)) {
    char *p = strstr(line, "listening on http://127.0.0.1:");
    if (p) {
      *port = atoi(p + strlen("listening on http://127.0.0.1:"));
      break;
    }
  }
  return *port ? pid : -1;
}

static int ws_run(const char *exe, int n, int posts, double *rate, double *idle_bytes) {
  int port;
  pid_t pid = start_server(exe, &port);
  if (pid < 0)
    return -1;
  usleep(200000);
  long before = rss_kb(pid);
  wsc **cs = calloc((size_t)n, sizeof *cs);
  for (int i = 0; i < n; i++)
    if (wsc_open(port, "/v1/objects/chatroom/bench/connect?meta=u", 0, &cs[i]) != 101)
      return -1;
  usleep(200000);
  *idle_bytes = (double)(rss_kb(pid) - before) * 1024 / n;
  const char *msg = "{\"text\":\"hello, everyone in the room\"}";
  double t0 = now_s();
  long got = 0;
  for (int p = 0; p < posts; p++)
    wsc_send(cs[0], msg, strlen(msg), 0);
  for (int i = 0; i < n; i++)
    for (int p = 0; p < posts; p++)
      if (wsc_recv(cs[i], 10000, NULL, NULL) == 1)
        got++;
  *rate = (double)got / (now_s() - t0);
  for (int i = 0; i < n; i++)
    wsc_free(cs[i]);
  free(cs);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  return got == (long)n * posts ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PATH_TO_STEAD [N] [POSTS]\n", argv[0]);
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 1000;
  int posts = argc > 3 ? atoi(argv[3]) : 200;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  signal(SIGPIPE, SIG_IGN);
  double in_rate = inproc_broadcast(n, posts);
  double in_idle = inproc_idle_bytes(10000);
  double ws_rate = 0, ws_idle = 0;
  int ws_ok = ws_run(argv[1], n, posts, &ws_rate, &ws_idle);
  printf("%-44s %14s\n", "connections", "value");
  printf("%-44s %14.0f\n", "in-process broadcast, delivered msgs/s", in_rate);
  printf("%-44s %14.0f%s\n", "WebSocket broadcast, delivered msgs/s", ws_rate,
         ws_ok ? " (incomplete)" : "");
  printf("  (%d connections on one room, %d posts)\n", n, posts);
  printf("%-44s %14.0f\n", "in-process idle, object hibernated, B/conn", in_idle);
  printf("%-44s %14.0f\n", "WebSocket idle, server RSS B/conn", ws_idle);
  return 0;
}
