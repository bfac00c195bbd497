/*
 * serve.c -- `stead serve`: one node = runtime + example classes + loaded
 * modules + HTTP gateway, until SIGTERM/SIGINT.
 *
 * Owns: the process's signal mask (SIGTERM/SIGINT are blocked in every
 * thread and taken by sigwait in the main thread, so no async signal
 * handler touches the runtime), the data-directory lock, the listening
 * socket until the gateway takes it, the dlopen handles.
 *
 * Startup order matters: everything that can fail on a bad setting (flags,
 * data directory, port) is checked before the runtime starts, each with a
 * one-line error naming the problem. Shutdown order: gateway drain (no new
 * work, /healthz 503), stead_close (every queued turn runs, every pending
 * call completes, commits flush), then the gateway sends the last answers
 * and stops.
 */
#include "server/serve.h"

#include "examples.h"
#include "server/gateway.h"
#include "server/log.h"
#include "server/opts.h"
#include "util/util.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The symbol a --load module exports. */
typedef int (*module_init_fn)(stead_rt *rt);

static const char *env_get(const char *name) {
  return getenv(name);
}

static int fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* One line on stderr: messages from libraries (libpq's end in "\n\tIs
 * the server running ...") are folded onto it. */
static int fail(int code, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t o = 0;
  for (size_t i = 0; msg[i]; i++) {
    char ch = msg[i] == '\n' || msg[i] == '\t' || msg[i] == '\r' ? ' ' : msg[i];
    if (ch == ' ' && (o == 0 || msg[o - 1] == ' '))
      continue;
    msg[o++] = ch;
  }
  while (o > 0 && msg[o - 1] == ' ')
    o--;
  msg[o] = '\0';
  fprintf(stderr, "stead serve: %s\n", msg);
  return code;
}

/* mkdir -p */
static int make_dirs(const char *path) {
  char buf[4096];
  size_t len = strlen(path);
  if (len >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return -1;
    buf[i] = c;
  }
  struct stat st;
  if (stat(path, &st) != 0)
    return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

/* Creates the data directory and takes its lock, so two nodes never share
 * one directory. Returns the lock fd (kept open for the process's life). */
static int open_data_dir(const char *dir) {
  if (make_dirs(dir) != 0)
    return fail(-1, "cannot use data directory %s: %s", dir, strerror(errno));
  char path[4200];
  snprintf(path, sizeof path, "%s/stead.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return fail(-1, "cannot use data directory %s: %s", dir, strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return fail(-1, "data directory %s is in use by another stead process", dir);
    return fail(-1, "cannot lock data directory %s: %s", dir, strerror(e));
  }
  return fd;
}

/* Binds and listens; *port receives the bound port (for port 0). */
static int open_listener(const stead__serve_opts *o, int *port) {
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", o->port);
  int gai = getaddrinfo(o->host[0] ? o->host : NULL, portstr, &hints, &res);
  if (gai != 0)
    return fail(-1, "cannot listen on %s: %s", o->listen, gai_strerror(gai));
  int fd = -1, err = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
      break;
    err = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0)
    return fail(-1, "cannot listen on %s: %s", o->listen, strerror(err));
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  *port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

static void default_node_id(char *buf, size_t cap) {
  if (gethostname(buf, cap) != 0 || !buf[0])
    snprintf(buf, cap, "node");
  buf[cap - 1] = '\0';
  for (char *p = buf; *p; p++) {
    int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
             (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.';
    if (!ok)
      *p = '-';
  }
  if (strlen(buf) > STEAD__MAX_NAME)
    buf[STEAD__MAX_NAME] = '\0';
}

/* Opens the runtime on the storage the options ask for: "sqlite" (the
 * default) is one database file in the data directory. */
static int open_runtime(const stead__serve_opts *o, stead__logger *lg, stead_rt **rt,
                        const char **storage_used) {
  stead_config cfg;
  stead_config_init(&cfg);
  cfg.workers = o->workers;
  cfg.max_payload = o->max_body;
  cfg.log = stead__log_sink;
  cfg.log_udata = lg;
  cfg.log_level = o->log_level;
  cfg.durability = strcmp(o->durability, "normal") == 0 ? STEAD_DURABILITY_NORMAL
                                                        : STEAD_DURABILITY_FULL;
  char sqlite[4200];
  snprintf(sqlite, sizeof sqlite, "sqlite:%s/stead.db", o->data);
  int is_sqlite = strcmp(o->storage, "sqlite") == 0;
  int is_pg = strncmp(o->storage, "postgres", 8) == 0;
  cfg.storage = is_sqlite ? sqlite : is_pg ? o->storage : "memory";
  /* The URL may hold a password: logs and /v1/cluster say only the kind. */
  const char *kind = is_sqlite ? "sqlite" : is_pg ? "postgres" : "memory";
  if (o->nats) {
    cfg.cluster_nats = o->nats;
    cfg.cluster_node_id = o->node_id;
    cfg.cluster_deployment = o->deployment;
    cfg.cluster_shards = (uint32_t)o->shards;
    cfg.cluster_seed = o->seed;
    cfg.cluster_hosts = o->hosts;
    cfg.cluster_lease_ttl_ms = o->lease_ttl_ms;
    cfg.cluster_heartbeat_ms = o->heartbeat_ms;
  }
  int rc = stead_open(&cfg, rt);
  if (rc < 0 && o->nats)
    return fail(-1, "cannot join deployment %s at %s as node %s: %s: %s", o->deployment,
                o->nats, o->node_id, stead_errname(rc), stead_errmsg());
  if (rc < 0)
    return fail(-1, "cannot start the runtime on %s storage: %s: %s", kind,
                stead_errname(rc), stead_errmsg());
  *storage_used = kind;
  return 0;
}

static int load_modules(const stead__serve_opts *o, stead_rt *rt, void **handles,
                        stead__logger *lg) {
  for (int i = 0; i < o->nloads; i++) {
    void *h = dlopen(o->loads[i], RTLD_NOW | RTLD_LOCAL);
    if (!h)
      return fail(-1, "--load %s: cannot load: %s", o->loads[i], dlerror());
    handles[i] = h;
    module_init_fn init;
    *(void **)&init = dlsym(h, "stead_module_init");
    if (!init)
      return fail(-1,
                  "--load %s: the library has no stead_module_init(stead_rt *) function",
                  o->loads[i]);
    int rc = init(rt);
    if (rc != 0)
      return fail(-1, "--load %s: stead_module_init failed: %s: %s", o->loads[i],
                  stead_errname(rc), stead_errmsg());
    stead__logf(lg, STEAD_LOG_INFO, "loaded module %s", o->loads[i]);
  }
  return 0;
}

static int wait_for_signal(stead__logger *lg) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  stead__logf(lg, STEAD_LOG_INFO, "received %s; draining",
              sig == SIGTERM ? "SIGTERM" : "SIGINT");
  return sig;
}

int stead__serve_main(int argc, char **argv) {
  stead__serve_opts o;
  int rc = stead__serve_opts_parse(&o, argc, argv, env_get);
  if (rc == 1) {
    fputs(stead__serve_usage(), stdout);
    return 0;
  }
  if (rc < 0)
    return fail(2, "%s", stead_errmsg());
  if (stead__serve_opts_check(&o) < 0)
    return fail(2, "%s", stead_errmsg());
  stead__logger lg = {o.log_level};
  char node_id[256];
  if (o.node_id)
    snprintf(node_id, sizeof node_id, "%s", o.node_id);
  else
    default_node_id(node_id, sizeof node_id);

  /* Block the stop signals before any thread exists, so every thread
   * inherits the mask and only sigwait below receives them. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);

  int lock_fd = open_data_dir(o.data);
  if (lock_fd < 0)
    return 1;
  int port = 0;
  int listen_fd = open_listener(&o, &port);
  if (listen_fd < 0) {
    close(lock_fd);
    return 1;
  }
  const char *host =
      o.host[0] && strcmp(o.host, "0.0.0.0") != 0 && strcmp(o.host, "::") != 0
          ? o.host
          : "127.0.0.1";
  char url[400];
  snprintf(url, sizeof url, strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host,
           port);

  stead_rt *rt = NULL;
  const char *storage = NULL;
  if (open_runtime(&o, &lg, &rt, &storage) < 0) {
    close(listen_fd);
    close(lock_fd);
    return 1;
  }
  stead__gw_config gc = {.listen_fd = listen_fd,
                         .threads = o.http_threads,
                         .max_body = o.max_body,
                         .default_timeout_ms = 30000,
                         .node_id = node_id,
                         .url = url,
                         .storage = storage,
                         .shards = o.shards,
                         .cluster = o.nats != NULL,
                         .log = &lg};
  stead__gw *gw = NULL;
  void *handles[STEAD__MAX_LOADS] = {0};
  int status = 1;
  if (stead__gw_start(&gc, &gw) < 0) {
    fail(1, "cannot start the HTTP server on %s: %s", o.listen, stead_errmsg());
    goto out;
  }
  rc = stead_examples_register(rt);
  if (rc < 0) {
    fail(1, "cannot register the example classes: %s: %s", stead_errname(rc),
         stead_errmsg());
    goto out;
  }
  if (load_modules(&o, rt, handles, &lg) < 0)
    goto out;
  stead__gw_set_ready(gw, rt);
  stead__logf(
      &lg, STEAD_LOG_INFO,
      "listening on %s (node %s, storage %s, durability %s, %d shards, %d module(s))",
      url, node_id, storage, o.durability, o.shards, o.nloads);
  if (o.nats)
    stead__logf(&lg, STEAD_LOG_INFO,
                "cluster node %s of deployment %s over %s (%s, lease ttl %d ms)", node_id,
                o.deployment, o.nats, o.hosts ? o.hosts : "heartbeats", o.lease_ttl_ms);
  printf("stead: serving on %s\n"
         "try:   curl -X POST '%s/v1/objects/echo/hello/echo' -d '{\"hi\":1}'\n"
         "       stead call --url %s echo hello echo '{\"hi\":1}'\n",
         url, url, url);
  fflush(stdout);

  wait_for_signal(&lg);
  status = 0;
out:
  if (gw)
    stead__gw_drain(gw);
  rc = stead_close(rt);
  if (rc < 0) {
    stead__logf(&lg, STEAD_LOG_ERROR, "closing the runtime failed: %s: %s",
                stead_errname(rc), stead_errmsg());
    status = 1;
  }
  stead__gw_stop(gw, 5000);
  for (int i = 0; i < o.nloads; i++)
    if (handles[i])
      dlclose(handles[i]);
  close(lock_fd);
  if (status == 0)
    stead__logf(&lg, STEAD_LOG_INFO, "stopped cleanly");
  return status;
}
