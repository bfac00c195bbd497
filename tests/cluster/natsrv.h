/*
 * natsrv.h -- starts a private nats-server for a test process.
 *
 * The server listens on loopback on a free port, runs in its own temp dir,
 * and dies with the test: natsrv_stop at the end, and PR_SET_PDEATHSIG in
 * case the test crashes first. If nats-server is not installed the test
 * fails with a message saying so.
 */
#ifndef STEAD_TESTS_NATSRV_H
#define STEAD_TESTS_NATSRV_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct natsrv {
  pid_t pid;
  int port;
  char url[64];
  char dir[64];
} natsrv;

static const char *natsrv_binary(void) {
  const char *env = getenv("STEAD_NATS_SERVER");
  if (env && env[0])
    return env;
  static const char *paths[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                                "/usr/local/bin/nats-server"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (access(paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

static int natsrv_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

static int natsrv_accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0)
    close(fd);
  return ok;
}

/* Returns 0 with the server accepting connections, or -1 with a message on
 * stderr. */
static int natsrv_start(natsrv *s) {
  memset(s, 0, sizeof *s);
  const char *bin = natsrv_binary();
  if (!bin) {
    fprintf(stderr, "natsrv: nats-server not found (install the nats-server package, "
                    "or set STEAD_NATS_SERVER)\n");
    return -1;
  }
  snprintf(s->dir, sizeof s->dir, "/tmp/stead-nats-XXXXXX");
  if (!mkdtemp(s->dir))
    return -1;
  for (int attempt = 0; attempt < 5; attempt++) {
    s->port = natsrv_free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent)
        _exit(1);
      if (chdir(s->dir) != 0)
        _exit(1);
      /* The server's banner would bury the test output. */
      if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
        _exit(1);
      execl(bin, bin, "-a", "127.0.0.1", "-p", port, (char *)NULL);
      _exit(127);
    }
    for (int i = 0; i < 200; i++) { /* up to 10 s */
      if (natsrv_accepts(s->port)) {
        snprintf(s->url, sizeof s->url, "nats://127.0.0.1:%d", s->port);
        return 0;
      }
      int st;
      if (waitpid(s->pid, &st, WNOHANG) == s->pid)
        break; /* exited: port taken, try another */
      struct timespec ts = {0, 50 * 1000000};
      nanosleep(&ts, NULL);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
  }
  fprintf(stderr, "natsrv: nats-server did not start\n");
  return -1;
}

static void natsrv_stop(natsrv *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
  }
  if (s->dir[0]) {
    rmdir(s->dir);
    s->dir[0] = 0;
  }
}

#endif
