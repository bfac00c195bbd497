/*
 * opts.h -- `stead serve` configuration from flags and STEAD_* environment
 * variables (flags win). Pure parsing and validation, no I/O, so every
 * rejected input is unit-tested.
 */
#ifndef STEAD_SERVER_OPTS_H
#define STEAD_SERVER_OPTS_H

#include "stead.h"

#include <stddef.h>

#define STEAD__DEFAULT_LISTEN "127.0.0.1:8080"
#define STEAD__DEFAULT_DATA   "./stead-data"
#define STEAD__DEFAULT_SHARDS 1024
#define STEAD__MAX_LOADS      64

typedef struct stead__serve_opts {
  /* Strings are borrowed from argv or the environment (never freed). */
  const char *listen;   /* as given */
  char host[256];       /* parsed from listen; "" means every interface */
  int port;             /* 0..65535; 0 picks a free port */
  const char *data;     /* data directory */
  const char *storage;  /* "memory", "sqlite" or a postgres:// URL */
  int storage_explicit; /* 1 if set by flag or environment */
  const char *nats;     /* NATS URL or NULL (single node) */
  const char *node_id;  /* NULL: the host name (required with --nats) */
  int shards;           /* 1..65536 */
  /* Cluster mode only (--nats); each defaults when not given. */
  const char *deployment;   /* [A-Za-z0-9_-]{1,64}; default "stead" */
  const char *seed;         /* shard hash seed; NULL = none */
  const char *hosts;        /* static host list "host-{0..2}"; NULL = heartbeats */
  int lease_ttl_ms;         /* shard lease length */
  int heartbeat_ms;         /* membership heartbeat period */
  const char *cluster_only; /* the first cluster-only flag given, for errors */
  int workers;              /* 0 = one per CPU */
  const char *durability;   /* "full" or "normal" */
  const char *loads[STEAD__MAX_LOADS];
  int nloads;
  stead_log_level log_level;
  size_t max_body;  /* largest request body and call payload */
  int http_threads; /* HTTP thread pool size */
} stead__serve_opts;

/* Looks up an environment variable; returns NULL when unset. */
typedef const char *(*stead__getenv_fn)(const char *name);

/* Parses argv[0..argc) (the arguments after "serve") over the defaults and
 * the environment read through `env` (NULL: no environment). Returns 0, 1
 * when --help was asked, or STEAD_EINVAL with a one-line message naming the
 * flag or variable and what is wrong. */
int stead__serve_opts_parse(stead__serve_opts *o, int argc, char **argv,
                            stead__getenv_fn env);

/* Checks the options against each other once parsing is done: cluster
 * mode (--nats) needs a postgres:// storage and an explicit --node-id;
 * cluster-only flags need --nats; a static host list must expand and hold
 * this node. Returns 0 or STEAD_EINVAL with a one-line message naming the
 * flags. */
int stead__serve_opts_check(const stead__serve_opts *o);

/* Parses "error|warn|info|debug". 0 or STEAD_EINVAL. */
int stead__parse_log_level(const char *s, stead_log_level *out);

/* The usage text of `stead serve`. Static storage. */
const char *stead__serve_usage(void);

#endif
