/*
 * pg_helper.h -- starts a throwaway PostgreSQL 15 for one test (or bench)
 * process: initdb + pg_ctl in a temp directory, listening on 127.0.0.1 on a
 * free port, trust auth, superuser "stead". As root, the server runs as the
 * `postgres` system user (it refuses to run as root).
 *
 * Cleanup: pgh_stop() (registered with atexit) stops it; a forked watchdog
 * blocked on a pipe stops it too when this process dies any other way, so a
 * crashed or killed test leaves no server behind.
 *
 * STEAD_TEST_PG_URI, if set, names an existing server instead (nothing is
 * started). pgh_start() returns 1 when no server is available (binaries
 * absent), after printing why, so callers can skip.
 */
#ifndef STEAD_TESTS_STORAGE_PG_HELPER_H
#define STEAD_TESTS_STORAGE_PG_HELPER_H

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PGH_BIN
#define PGH_BIN "/usr/lib/postgresql/15/bin"
#endif

typedef struct pgh {
  char dir[256];
  char uri[320]; /* postgres://stead@127.0.0.1:PORT/postgres */
  int port;
  int started;
  int fsync; /* 1: durable server (benchmarks); 0: fsync=off (tests) */
} pgh;

static pgh pgh_server;

/* Runs a shell command, as `postgres` when we are root. */
static inline int pgh_sh(const char *cmd) {
  char full[2048];
  if (geteuid() == 0)
    snprintf(full, sizeof full, "runuser -u postgres -- sh -c '%s'", cmd);
  else
    snprintf(full, sizeof full, "sh -c '%s'", cmd);
  int rc = system(full);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static inline int pgh_free_port(void) {
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

/* pg_ctl start (or restart after pgh_pg_stop). 0 on success. */
static inline int pgh_pg_start(void) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           PGH_BIN "/pg_ctl -D %s/data -l %s/log -w -t 30 -o \"-p %d -k %s -c "
                   "listen_addresses=127.0.0.1 -c fsync=%s -c max_connections=200\" "
                   "start >/dev/null",
           pgh_server.dir, pgh_server.dir, pgh_server.port, pgh_server.dir,
           pgh_server.fsync ? "on" : "off");
  return pgh_sh(cmd);
}

static inline int pgh_pg_stop(const char *mode) {
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           PGH_BIN "/pg_ctl -D %s/data -m %s -w -t 30 stop >/dev/null 2>&1",
           pgh_server.dir, mode);
  return pgh_sh(cmd);
}

static inline void pgh_stop(void) {
  if (!pgh_server.started)
    return;
  pgh_server.started = 0;
  pgh_pg_stop("immediate");
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", pgh_server.dir);
  if (system(cmd) != 0) {
    /* best effort */
  }
}

/* The watchdog: waits for the parent's end of a pipe to close, then stops
 * the server and removes its directory. */
static inline void pgh_watchdog(void) {
  int fds[2];
  if (pipe(fds) != 0)
    return;
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[1]);
    /* Let go of the test's stdout/stderr: ctest waits for them to close. */
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    for (int fd = 3; fd < 1024; fd++)
      if (fd != fds[0])
        close(fd);
    signal(SIGINT, SIG_IGN);
    char c;
    while (read(fds[0], &c, 1) > 0) {
    }
    pgh_server.started = 1;
    pgh_stop();
    _exit(0);
  }
  close(fds[0]);
  /* The write end stays open (not inherited by exec'd children) until this
   * process exits. */
  if (pid > 0) {
    int fl = fcntl(fds[1], F_GETFD);
    fcntl(fds[1], F_SETFD, fl | FD_CLOEXEC);
  }
}

/* 0: a server is running and pgh_server.uri names it. 1: none available
 * (message printed). -1: it failed to start (message printed). */
static inline int pgh_start(int fsync_on) {
  const char *env = getenv("STEAD_TEST_PG_URI");
  if (env && *env) {
    snprintf(pgh_server.uri, sizeof pgh_server.uri, "%s", env);
    return 0;
  }
  if (access(PGH_BIN "/initdb", X_OK) != 0 || access(PGH_BIN "/pg_ctl", X_OK) != 0) {
    fprintf(stderr, "SKIP: PostgreSQL 15 binaries not found in " PGH_BIN
                    " (install postgresql-15, see scripts/deps.sh)\n");
    return 1;
  }
  pgh_server.fsync = fsync_on;
  snprintf(pgh_server.dir, sizeof pgh_server.dir, "/tmp/stead-pg-XXXXXX");
  if (!mkdtemp(pgh_server.dir))
    return -1;
  chmod(pgh_server.dir, 0755);
  if (geteuid() == 0) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "chown postgres: '%s'", pgh_server.dir);
    if (system(cmd) != 0) {
      fprintf(stderr, "pg_helper: cannot chown %s to postgres\n", pgh_server.dir);
      return -1;
    }
  }
  pgh_server.started = 1;
  pgh_watchdog();
  atexit(pgh_stop);
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           PGH_BIN "/initdb -D %s/data -U stead --auth=trust -E UTF8 --locale=C "
                   "--no-sync >%s/initdb.log 2>&1",
           pgh_server.dir, pgh_server.dir);
  if (pgh_sh(cmd) != 0) {
    fprintf(stderr, "pg_helper: initdb failed, see %s/initdb.log\n", pgh_server.dir);
    return -1;
  }
  for (int attempt = 0; attempt < 5; attempt++) {
    pgh_server.port = pgh_free_port();
    if (pgh_pg_start() == 0) {
      snprintf(pgh_server.uri, sizeof pgh_server.uri,
               "postgres://stead@127.0.0.1:%d/postgres", pgh_server.port);
      return 0;
    }
  }
  fprintf(stderr, "pg_helper: pg_ctl start failed, see %s/log\n", pgh_server.dir);
  return -1;
}

/* A spec for the running server with a table prefix and extra options
 * ("" or "&a=b"). */
static inline void pgh_spec(char *out, size_t n, const char *prefix, const char *extra) {
  snprintf(out, n, "%s?prefix=%s%s", pgh_server.uri, prefix, extra ? extra : "");
}

#endif
