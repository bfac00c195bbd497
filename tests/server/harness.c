/*
 * harness.c -- see harness.h. Tests run the shipped binary, not a library
 * build of the server, so flags, signals and exit codes are tested as an
 * operator meets them.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *stead_exe(void) {
  return STEAD_EXE;
}

static void print_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  char line[1024];
  while (fgets(line, sizeof line, f))
    fprintf(stderr, "  server: %s", line);
  fclose(f);
}

int srv_start(srv *s, const char *const *extra) {
  memset(s, 0, sizeof *s);
  snprintf(s->dir, sizeof s->dir, "/tmp/stead-test-XXXXXX");
  if (!mkdtemp(s->dir))
    return -1;
  snprintf(s->log, sizeof s->log, "%s/stderr.log", s->dir);
  char data[300];
  snprintf(data, sizeof data, "%s/data", s->dir);
  const char *argv[64] = {stead_exe(), "serve",  "--listen", "127.0.0.1:0",
                          "--storage", "memory", "--data",   data};
  int n = 8;
  for (int i = 0; extra && extra[i] && n < 62; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  char outp[300];
  snprintf(outp, sizeof outp, "%s/stdout.log", s->dir);
  pid_t pid = fork();
  if (pid == 0) {
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1);
    dup2(fe, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  s->pid = pid;
  /* stdout goes to a file (never a pipe the server could block on); poll
   * it for the startup line. */
  const char *key = "serving on http://127.0.0.1:";
  for (int waited = 0; waited < 15000; waited += 20) {
    char buf[4096];
    FILE *f = fopen(outp, "r");
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
      fclose(f);
    buf[got] = '\0';
    const char *m = strstr(buf, key);
    if (m && strchr(m, '\n')) {
      s->port = atoi(m + strlen(key));
      snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
      return 0;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      s->pid = 0;
      break;
    }
    usleep(20000);
  }
  fprintf(stderr, "server did not start:\n");
  print_file(s->log);
  if (s->pid > 0)
    srv_stop(s, SIGKILL, 2000);
  return -1;
}

int srv_stop(srv *s, int sig, int timeout_ms) {
  if (s->pid <= 0)
    return -1;
  kill(s->pid, sig);
  int st = 0;
  for (int waited = 0;; waited += 10) {
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid)
      break;
    if (waited >= timeout_ms) {
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &st, 0);
      s->pid = 0;
      fprintf(stderr, "server did not exit in %d ms:\n", timeout_ms);
      print_file(s->log);
      return -1;
    }
    usleep(10000);
  }
  s->pid = 0;
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (code != 0) {
    fprintf(stderr, "server exited %d:\n", code);
    print_file(s->log);
  }
  return code;
}

typedef struct hdr_ctx {
  resp *r;
  const char *want;
} hdr_ctx;

static size_t on_body(char *p, size_t size, size_t n, void *udata) {
  resp *r = udata;
  char *nb = realloc(r->body, r->len + size * n + 1);
  if (!nb)
    return 0;
  r->body = nb;
  memcpy(r->body + r->len, p, size * n);
  r->len += size * n;
  r->body[r->len] = '\0';
  return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *udata) {
  hdr_ctx *h = udata;
  size_t len = size * n;
  if (h->want) {
    size_t wl = strlen(h->want);
    if (len > wl + 1 && strncasecmp(p, h->want, wl) == 0 && p[wl] == ':') {
      size_t off = wl + 1;
      while (off < len && p[off] == ' ')
        off++;
      size_t vl = len - off;
      while (vl && (p[off + vl - 1] == '\r' || p[off + vl - 1] == '\n'))
        vl--;
      if (vl >= sizeof h->r->extra)
        vl = sizeof h->r->extra - 1;
      memcpy(h->r->extra, p + off, vl);
      h->r->extra[vl] = '\0';
    }
  }
  return len;
}

long http(const srv *s, const char *method, const char *path, const void *body,
          size_t len, const char *ctype, const char *want_header, resp *r) {
  memset(r, 0, sizeof *r);
  r->body = calloc(1, 1);
  CURL *c = curl_easy_init();
  char url[8192];
  snprintf(url, sizeof url, "%s%s", s->url, path);
  struct curl_slist *h = NULL;
  char ct[160];
  if (ctype) {
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    h = curl_slist_append(h, ct);
  }
  h = curl_slist_append(h, "Expect:");
  hdr_ctx hc = {r, want_header};
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &hc);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
  if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  } else if (strcmp(method, "GET") != 0) {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  }
  if (curl_easy_perform(c) == CURLE_OK) {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ctv = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctv);
    if (ctv)
      snprintf(r->ctype, sizeof r->ctype, "%s", ctv);
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return r->status;
}

void resp_free(resp *r) {
  free(r->body);
  r->body = NULL;
}

int raw(const srv *s, const void *req, size_t len, int shut) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)s->port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  const char *p = req;
  size_t off = 0;
  while (off < len) {
    ssize_t w = send(fd, p + off, len - off, MSG_NOSIGNAL);
    if (w <= 0)
      break; /* the server may answer and close before reading it all */
    off += (size_t)w;
  }
  if (shut)
    shutdown(fd, SHUT_WR);
  char buf[8192];
  size_t got = 0;
  for (int waited = 0; waited < 5000 && got < sizeof buf - 1;) {
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, 100) <= 0) {
      waited += 100;
      continue;
    }
    ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  buf[got] = '\0';
  close(fd);
  int status = 0;
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
    return 0;
  return status;
}

static char *slurp(int fd) {
  size_t cap = 4096, len = 0;
  char *b = malloc(cap);
  ssize_t r;
  while ((r = read(fd, b + len, cap - len - 1)) > 0) {
    len += (size_t)r;
    if (cap - len < 1024)
      b = realloc(b, cap *= 2);
  }
  b[len] = '\0';
  return b;
}

int run_stead(const char *const *argv, const char *stdin_data, char **out, char **err) {
  const char *av[64] = {stead_exe()};
  int n = 1;
  for (int i = 0; argv[i] && n < 63; i++)
    av[n++] = argv[i];
  av[n] = NULL;
  char tmpl_o[] = "/tmp/stead-cli-out-XXXXXX", tmpl_e[] = "/tmp/stead-cli-err-XXXXXX";
  int fo = mkstemp(tmpl_o), fe = mkstemp(tmpl_e);
  int in[2];
  if (pipe(in) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(fo, 1);
    dup2(fe, 2);
    close(in[1]);
    execv(av[0], (char *const *)av);
    _exit(127);
  }
  close(in[0]);
  if (stdin_data) {
    ssize_t w = write(in[1], stdin_data, strlen(stdin_data));
    (void)w;
  }
  close(in[1]);
  int st = 0;
  waitpid(pid, &st, 0);
  lseek(fo, 0, SEEK_SET);
  lseek(fe, 0, SEEK_SET);
  char *o = slurp(fo), *e = slurp(fe);
  close(fo);
  close(fe);
  unlink(tmpl_o);
  unlink(tmpl_e);
  if (out)
    *out = o;
  else
    free(o);
  if (err)
    *err = e;
  else
    free(e);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
