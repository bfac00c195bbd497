/*
 * opts.c -- parsing and validation of `stead serve` flags and STEAD_*
 * environment variables.
 *
 * Owns: nothing global; thread-safe. Precedence: defaults, then the
 * environment, then flags, so a flag always wins over a variable. Every
 * value is validated here, before anything is opened, so a typo fails fast
 * with a message naming the flag (or variable) and the accepted values.
 */
#include "server/opts.h"

#include "util/util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* One option: its flag, its variable, and how to store it. */
typedef enum { K_STR, K_INT, K_SIZE, K_LEVEL, K_LOAD } kind;

typedef struct spec {
  const char *flag;
  const char *env;
  kind k;
  long min, max; /* K_INT / K_SIZE bounds */
  int cluster;   /* 1: meaningful only with --nats */
} spec;

static const spec SPECS[] = {
    {"--listen", "STEAD_LISTEN", K_STR, 0, 0, 0},
    {"--data", "STEAD_DATA", K_STR, 0, 0, 0},
    {"--storage", "STEAD_STORAGE", K_STR, 0, 0, 0},
    {"--nats", "STEAD_NATS", K_STR, 0, 0, 0},
    {"--node-id", "STEAD_NODE_ID", K_STR, 0, 0, 0},
    {"--shards", "STEAD_SHARDS", K_INT, 1, 65536, 0},
    {"--workers", "STEAD_WORKERS", K_INT, 0, 1024, 0},
    {"--durability", "STEAD_DURABILITY", K_STR, 0, 0, 0},
    {"--load", "STEAD_LOAD", K_LOAD, 0, 0, 0},
    {"--log-level", "STEAD_LOG_LEVEL", K_LEVEL, 0, 0, 0},
    {"--max-body", "STEAD_MAX_BODY", K_SIZE, 1, 1L << 30, 0},
    {"--http-threads", "STEAD_HTTP_THREADS", K_INT, 1, 256, 0},
    {"--deployment", "STEAD_DEPLOYMENT", K_STR, 0, 0, 1},
    {"--seed", "STEAD_SEED", K_STR, 0, 0, 1},
    {"--hosts", "STEAD_HOSTS", K_STR, 0, 0, 1},
    {"--lease-ttl-ms", "STEAD_LEASE_TTL_MS", K_INT, 100, 3600000, 1},
    {"--heartbeat-ms", "STEAD_HEARTBEAT_MS", K_INT, 10, 600000, 1},
};
#define NSPECS (sizeof SPECS / sizeof SPECS[0])

const char *stead__serve_usage(void) {
  return "usage: stead serve [flags]\n"
         "\n"
         "Runs a stead node: the built-in example classes plus any --load'ed\n"
         "modules, served over HTTP/JSON. Every flag also reads an environment\n"
         "variable (shown in brackets); the flag wins.\n"
         "\n"
         "  --listen HOST:PORT   address to serve on (127.0.0.1:8080) [STEAD_LISTEN]\n"
         "                       port 0 picks a free port; \":PORT\" = every interface\n"
         "  --data DIR           data directory, created if missing (./stead-data) "
         "[STEAD_DATA]\n"
         "  --storage KIND       memory | sqlite | postgres://... (sqlite; memory if "
         "this\n"
         "                       build has no sqlite backend yet) [STEAD_STORAGE]\n"
         "  --nats URL           run as a cluster node: nats://host:port; needs\n"
         "                       --storage postgres://... and --node-id [STEAD_NATS]\n"
         "  --node-id NAME       this node's name, unique in the deployment (the host\n"
         "                       name; required with --nats) [STEAD_NODE_ID]\n"
         "  --shards N           shards in the deployment, 1..65536 (1024) "
         "[STEAD_SHARDS]\n"
         "  --deployment NAME    cluster name, [A-Za-z0-9_-]{1,64}; prefixes NATS\n"
         "                       subjects (stead) [STEAD_DEPLOYMENT]\n"
         "  --seed STRING        shard hash seed, the same on every node (none)\n"
         "                       [STEAD_SEED]\n"
         "  --hosts LIST         static member list, e.g. node-{0..2}, instead of\n"
         "                       heartbeats (none) [STEAD_HOSTS]\n"
         "  --lease-ttl-ms N     shard lease length, 100..3600000 (10000)\n"
         "                       [STEAD_LEASE_TTL_MS]\n"
         "  --heartbeat-ms N     membership heartbeat; a node silent for 3 beats\n"
         "                       leaves, 10..600000 (1000) [STEAD_HEARTBEAT_MS]\n"
         "  --workers N          worker threads, 0 = one per CPU (0) [STEAD_WORKERS]\n"
         "  --durability MODE    full | normal: sync every commit batch, or let the OS\n"
         "                       flush (full) [STEAD_DURABILITY]\n"
         "  --load LIB.so        load a module exporting stead_module_init(stead_rt *);\n"
         "                       repeatable [STEAD_LOAD: one library]\n"
         "  --log-level LEVEL    error | warn | info | debug (info) [STEAD_LOG_LEVEL]\n"
         "  --max-body BYTES     largest request body and call payload (4194304)\n"
         "                       [STEAD_MAX_BODY]\n"
         "  --http-threads N     HTTP thread pool size, 1..256 (4) [STEAD_HTTP_THREADS]\n"
         "  -h, --help           this text\n";
}

int stead__parse_log_level(const char *s, stead_log_level *out) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (stead_log_level)i;
      return 0;
    }
  }
  return STEAD_EINVAL;
}

static int parse_long(const char *s, long min, long max, long *out) {
  if (!*s)
    return -1;
  errno = 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

/* Splits "host:port", "[v6]:port" or ":port" into o->host / o->port. */
static int parse_listen(stead__serve_opts *o, const char *s) {
  const char *colon;
  size_t hostlen;
  const char *host = s;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return -1;
    host = s + 1;
    hostlen = (size_t)(close - host);
    colon = close + 1;
    if (hostlen == 0)
      return -1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || memchr(s, ':', (size_t)(colon - s)))
      return -1; /* bare IPv6 addresses must be bracketed */
    hostlen = (size_t)(colon - s);
  }
  if (hostlen >= sizeof o->host)
    return -1;
  long port;
  if (parse_long(colon + 1, 0, 65535, &port) != 0)
    return -1;
  memcpy(o->host, host, hostlen);
  o->host[hostlen] = '\0';
  o->port = (int)port;
  return 0;
}

/* Deployment names prefix NATS subjects: no dots, no wildcards. */
static int deployment_ok(const char *v) {
  size_t n = strlen(v);
  if (n < 1 || n > 64)
    return 0;
  for (const char *p = v; *p; p++) {
    int ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
             (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
    if (!ok)
      return 0;
  }
  return 1;
}

/* Stores one value; `src` names its origin ("--shards" or "STEAD_SHARDS")
 * for the error message. */
static int store(stead__serve_opts *o, const spec *sp, const char *src, const char *v) {
  long n;
  if (sp->k == K_INT || sp->k == K_SIZE) {
    if (parse_long(v, sp->min, sp->max, &n) != 0)
      return stead__err(STEAD_EINVAL, "%s: \"%s\" is not an integer in %ld..%ld", src, v,
                        sp->min, sp->max);
  }
  if (strcmp(sp->flag, "--listen") == 0) {
    if (parse_listen(o, v) != 0)
      return stead__err(
          STEAD_EINVAL,
          "%s: \"%s\" is not HOST:PORT (port 0..65535, IPv6 as [addr]:port)", src, v);
    o->listen = v;
  } else if (strcmp(sp->flag, "--data") == 0) {
    if (!*v)
      return stead__err(STEAD_EINVAL, "%s: the data directory is empty", src);
    o->data = v;
  } else if (strcmp(sp->flag, "--storage") == 0) {
    if (strcmp(v, "memory") != 0 && strcmp(v, "sqlite") != 0 &&
        strncmp(v, "postgres://", 11) != 0 && strncmp(v, "postgresql://", 13) != 0)
      return stead__err(STEAD_EINVAL,
                        "%s: \"%s\" is not a storage (memory, sqlite or postgres://...)",
                        src, v);
    o->storage = v;
    o->storage_explicit = 1;
  } else if (strcmp(sp->flag, "--nats") == 0) {
    if (strncmp(v, "nats://", 7) != 0 || !v[7])
      return stead__err(STEAD_EINVAL, "%s: \"%s\" is not a nats://host:port URL", src, v);
    o->nats = v;
  } else if (strcmp(sp->flag, "--node-id") == 0) {
    if (stead__check_name("node id", v) != 0)
      return stead__err(STEAD_EINVAL,
                        "%s: \"%s\" is not a name (1..128 of [A-Za-z0-9_.-])", src, v);
    o->node_id = v;
  } else if (strcmp(sp->flag, "--deployment") == 0) {
    if (!deployment_ok(v))
      return stead__err(STEAD_EINVAL,
                        "%s: \"%s\" is not a deployment name (1..64 of "
                        "[A-Za-z0-9_-])",
                        src, v);
    o->deployment = v;
  } else if (strcmp(sp->flag, "--seed") == 0) {
    o->seed = v;
  } else if (strcmp(sp->flag, "--hosts") == 0) {
    if (!*v)
      return stead__err(STEAD_EINVAL, "%s: the host list is empty", src);
    o->hosts = v;
  } else if (strcmp(sp->flag, "--lease-ttl-ms") == 0) {
    o->lease_ttl_ms = (int)n;
  } else if (strcmp(sp->flag, "--heartbeat-ms") == 0) {
    o->heartbeat_ms = (int)n;
  } else if (strcmp(sp->flag, "--durability") == 0) {
    if (strcmp(v, "full") != 0 && strcmp(v, "normal") != 0)
      return stead__err(STEAD_EINVAL, "%s: \"%s\" is not full or normal", src, v);
    o->durability = v;
  } else if (sp->k == K_LEVEL) {
    if (stead__parse_log_level(v, &o->log_level) != 0)
      return stead__err(STEAD_EINVAL, "%s: \"%s\" is not error, warn, info or debug", src,
                        v);
  } else if (sp->k == K_LOAD) {
    if (!*v)
      return stead__err(STEAD_EINVAL, "%s: the library path is empty", src);
    if (o->nloads == STEAD__MAX_LOADS)
      return stead__err(STEAD_EINVAL, "%s: more than %d modules", src, STEAD__MAX_LOADS);
    o->loads[o->nloads++] = v;
  } else if (strcmp(sp->flag, "--shards") == 0) {
    o->shards = (int)n;
  } else if (strcmp(sp->flag, "--workers") == 0) {
    o->workers = (int)n;
  } else if (strcmp(sp->flag, "--max-body") == 0) {
    o->max_body = (size_t)n;
  } else if (strcmp(sp->flag, "--http-threads") == 0) {
    o->http_threads = (int)n;
  }
  if (sp->cluster && !o->cluster_only)
    o->cluster_only = src;
  return 0;
}

static void defaults(stead__serve_opts *o) {
  memset(o, 0, sizeof *o);
  o->listen = STEAD__DEFAULT_LISTEN;
  (void)parse_listen(o, STEAD__DEFAULT_LISTEN);
  o->data = STEAD__DEFAULT_DATA;
  o->storage = "sqlite";
  o->shards = STEAD__DEFAULT_SHARDS;
  o->durability = "full";
  o->log_level = STEAD_LOG_INFO;
  o->max_body = 4u << 20;
  o->http_threads = 4;
  o->deployment = "stead";
  o->lease_ttl_ms = 10000;
  o->heartbeat_ms = 1000;
}

int stead__serve_opts_parse(stead__serve_opts *o, int argc, char **argv,
                            stead__getenv_fn env) {
  defaults(o);
  if (env) {
    for (size_t i = 0; i < NSPECS; i++) {
      const char *v = env(SPECS[i].env);
      if (!v)
        continue;
      if (SPECS[i].k == K_LOAD) {
        /* Values are borrowed, not copied, so a list cannot be split in
         * place: the variable names one library; more need --load flags. */
        if (strchr(v, ':'))
          return stead__err(STEAD_EINVAL,
                            "STEAD_LOAD: give one library (several: repeat --load)");
      }
      int rc = store(o, &SPECS[i], SPECS[i].env, v);
      if (rc < 0)
        return rc;
    }
  }
  int flag_loads = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
      return 1;
    const spec *sp = NULL;
    const char *val = NULL;
    for (size_t k = 0; k < NSPECS && !sp; k++) {
      size_t fl = strlen(SPECS[k].flag);
      if (strncmp(a, SPECS[k].flag, fl) != 0)
        continue;
      if (a[fl] == '\0') {
        sp = &SPECS[k];
      } else if (a[fl] == '=') {
        sp = &SPECS[k];
        val = a + fl + 1;
      }
    }
    if (!sp)
      return stead__err(STEAD_EINVAL, "unknown flag \"%s\" (see stead serve --help)", a);
    if (!val) {
      if (i + 1 >= argc)
        return stead__err(STEAD_EINVAL, "%s needs a value", sp->flag);
      val = argv[++i];
    }
    if (sp->k == K_LOAD && flag_loads++ == 0)
      o->nloads = 0; /* --load replaces STEAD_LOAD rather than adding to it */
    int rc = store(o, sp, sp->flag, val);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* A static host list must expand (stead_hosts_expand's rules) and name
 * this node: a node outside the list would own no shard, which is always a
 * typo rather than a plan. */
static int check_hosts(const stead__serve_opts *o) {
  char **hosts = NULL;
  size_t n = 0;
  int rc = stead_hosts_expand(o->hosts, &hosts, &n);
  if (rc < 0)
    return stead__err(STEAD_EINVAL, "--hosts: \"%s\": %s", o->hosts, stead_errmsg());
  int found = 0;
  for (size_t i = 0; i < n && !found; i++)
    found = strcmp(hosts[i], o->node_id) == 0;
  stead_free(hosts);
  if (!found)
    return stead__err(STEAD_EINVAL, "--hosts: \"%s\" does not include this node (%s)",
                      o->hosts, o->node_id);
  return 0;
}

int stead__serve_opts_check(const stead__serve_opts *o) {
  if (!o->nats) {
    if (o->cluster_only)
      return stead__err(STEAD_EINVAL, "%s is for cluster mode: give --nats URL too",
                        o->cluster_only);
    return 0;
  }
  if (strncmp(o->storage, "postgres", 8) != 0)
    return stead__err(STEAD_EINVAL,
                      "--nats: cluster mode needs --storage postgres://... (the store "
                      "shared by every node, which holds the shard leases), not %s",
                      o->storage);
  if (!o->node_id)
    return stead__err(STEAD_EINVAL,
                      "--nats: cluster mode needs --node-id NAME, unique in the "
                      "deployment (two nodes with one id would share its leases)");
  if (o->hosts)
    return check_hosts(o);
  return 0;
}