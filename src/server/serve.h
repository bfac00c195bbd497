/*
 * serve.h -- `stead serve` and the client commands, as functions main()
 * dispatches to. Each returns the process exit status.
 */
#ifndef STEAD_SERVER_SERVE_H
#define STEAD_SERVER_SERVE_H

/* `stead serve [flags]` (argv after "serve"). 0 after a clean drain on
 * SIGTERM/SIGINT; 2 on bad flags or unsupported settings; 1 when the node
 * cannot start (data directory, port, runtime, module). */
int stead__serve_main(int argc, char **argv);

/* `stead call|send|get|emit ...` (argv[0] is the command). Exit codes are
 * documented in docs/cli.md and stead__cli_usage(). */
int stead__cli_main(int argc, char **argv);

/* The top-level usage text. Static storage. */
const char *stead__cli_usage(void);

#endif
