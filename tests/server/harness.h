/*
 * harness.h -- runs the real `stead` binary for the server tests: start
 * `stead serve` on a free port, talk to it over HTTP (libcurl) or raw
 * sockets, run CLI commands, stop it with a signal.
 */
#ifndef STEAD_TEST_SERVER_HARNESS_H
#define STEAD_TEST_SERVER_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct srv {
  pid_t pid;
  int port;
  char url[64];
  char dir[256]; /* temp dir: data/, stderr.log */
  char log[300]; /* the server's stderr */
} srv;

/* Starts `stead serve --listen 127.0.0.1:0 --storage memory --data DIR/data`
 * plus `extra` (NULL-terminated, may be NULL) and waits for its "serving
 * on" line. Returns 0, or -1 (the server's stderr is printed). */
int srv_start(srv *s, const char *const *extra);

/* Sends `sig` and waits for exit; returns the exit status (128+signal if
 * killed), -1 if it did not exit within timeout_ms (it is then killed). */
int srv_stop(srv *s, int sig, int timeout_ms);

typedef struct resp {
  long status; /* 0 when the transport failed */
  char *body;  /* NUL-terminated, malloc'd */
  size_t len;
  char ctype[128];
  char extra[256]; /* value of the header asked for with `want_header` */
} resp;

/* One request with libcurl. `path` includes any query. `ctype` NULL sends
 * no Content-Type. `want_header` names a response header to capture
 * into r->extra (or NULL). Returns r->status. */
long http(const srv *s, const char *method, const char *path, const void *body,
          size_t len, const char *ctype, const char *want_header, resp *r);
void resp_free(resp *r);

/* Writes raw bytes on a new connection, half-closes if `shut`, and reads
 * the answer until the server closes or 5 s pass. Returns the HTTP status
 * of the first response line, 0 when there was none. */
int raw(const srv *s, const void *req, size_t len, int shut);

/* Runs the stead binary with argv (NULL-terminated, without argv[0]),
 * captures stdout and stderr (each malloc'd, NUL-terminated; may be NULL
 * to discard); returns the exit status. `stdin_data` is fed to stdin. */
int run_stead(const char *const *argv, const char *stdin_data, char **out, char **err);

/* Path of the stead binary under test. */
const char *stead_exe(void);

#endif
