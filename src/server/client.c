/*
 * client.c -- the `stead call|send|get|emit` commands: a thin libcurl
 * client of the HTTP gateway.
 *
 * Owns: one curl easy handle per command. Output contract (docs/cli.md):
 * the reply body goes to stdout; a failure prints one line
 * "stead: CODE: message" to stderr and exits with the code's class, so a
 * script can branch on the outcome without parsing text.
 */
#include "server/route.h"
#include "server/serve.h"
#include "util/util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  X_OK = 0,
  X_USAGE = 1,
  X_UNREACHABLE = 2,
  X_BADREQ = 3,
  X_NOTFOUND = 4,
  X_HANDLER = 5,
  X_TIMEOUT = 6,
  X_UNAVAILABLE = 7,
  X_TOOBIG = 8,
  X_NOTSUP = 9,
  X_SERVER = 10
};

const char *stead__cli_usage(void) {
  return "usage: stead COMMAND [options] [args]\n"
         "\n"
         "commands:\n"
         "  serve                         run a node (stead serve --help)\n"
         "  call CLASS ID METHOD [ARG]    call a method, print its reply\n"
         "  send CLASS ID METHOD [ARG]    queue a one-way message\n"
         "  get CLASS ID                  show an object: active, state, alarms\n"
         "  emit TOPIC JSON               publish an event on the bus\n"
         "\n"
         "ARG is sent as the method's argument: JSON is sent as application/json,\n"
         "anything else as raw bytes; \"-\" reads it from stdin.\n"
         "\n"
         "options (client commands):\n"
         "  --url URL        server to use (http://127.0.0.1:8080) [STEAD_URL]\n"
         "  --timeout MS     call deadline in milliseconds (server default 30000)\n"
         "  -h, --help       this text\n"
         "\n"
         "exit status: 0 ok, 1 usage, 2 server unreachable, 3 bad request,\n"
         "4 unknown class/method/object, 5 handler failed, 6 deadline exceeded or\n"
         "outcome unknown (it may have run),\n"
         "7 unavailable or overloaded (retry), 8 too big, 9 not supported,\n"
         "10 other server error\n";
}

static int exit_for_code(const char *code, long http) {
  static const struct {
    const char *code;
    int exit;
  } map[] = {{"EINVAL", X_BADREQ},         {"EPROTO", X_BADREQ},
             {"ENOCLASS", X_NOTFOUND},     {"ENOMETHOD", X_NOTFOUND},
             {"ENOTFOUND", X_NOTFOUND},    {"EHANDLER", X_HANDLER},
             {"ETIMEDOUT", X_TIMEOUT},     {"EUNKNOWN", X_TIMEOUT},
             {"EOVERLOAD", X_UNAVAILABLE}, {"ECLOSED", X_UNAVAILABLE},
             {"ESTORAGE", X_UNAVAILABLE},  {"ENOTOWNER", X_UNAVAILABLE},
             {"ETOOBIG", X_TOOBIG},        {"ENOTSUP", X_NOTSUP}};
  for (size_t i = 0; code && i < sizeof map / sizeof map[0]; i++)
    if (strcmp(code, map[i].code) == 0)
      return map[i].exit;
  switch (http) {
  case 404:
    return X_NOTFOUND;
  case 413:
    return X_TOOBIG;
  case 429:
  case 503:
    return X_UNAVAILABLE;
  case 501:
    return X_NOTSUP;
  case 504:
    return X_TIMEOUT;
  default:
    return http >= 400 && http < 500 ? X_BADREQ : X_SERVER;
  }
}

static size_t on_body(char *p, size_t size, size_t n, void *udata) {
  stead__buf *b = udata;
  return stead__buf_append(b, p, size * n) == 0 ? size * n : 0;
}

/* Prints an error answer as "stead: CODE: message" and returns the exit. */
static int report_error(long http, const stead__buf *body) {
  json_error_t jerr;
  json_t *j =
      body->len ? json_loadb((const char *)body->data, body->len, 0, &jerr) : NULL;
  const char *code = NULL, *msg = NULL;
  if (j)
    json_unpack(j, "{s:{s?s,s?s}}", "error", "code", &code, "message", &msg);
  if (code)
    fprintf(stderr, "stead: %s: %s (HTTP %ld)\n", code, msg ? msg : "", http);
  else
    fprintf(stderr, "stead: HTTP %ld: %.*s\n", http,
            (int)(body->len > 500 ? 500 : body->len),
            body->len ? (const char *)body->data : "");
  int x = exit_for_code(code, http);
  json_decref(j);
  return x;
}

/* One request; prints the body on 2xx. */
static int request(const char *method, const char *url, const void *body, size_t len,
                   int quiet) {
  CURL *c = curl_easy_init();
  if (!c) {
    fprintf(stderr, "stead: cannot start the HTTP client\n");
    return X_USAGE;
  }
  stead__buf out = {0};
  struct curl_slist *hdr = NULL;
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (strcmp(method, "POST") == 0) {
    json_error_t jerr;
    json_t *j = len ? json_loadb(body, len, JSON_DECODE_ANY, &jerr) : NULL;
    hdr = curl_slist_append(hdr, j ? "Content-Type: application/json"
                                   : "Content-Type: application/octet-stream");
    json_decref(j);
    hdr = curl_slist_append(hdr, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, len ? body : "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  }
  CURLcode cc = curl_easy_perform(c);
  long http = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
  int x;
  if (cc != CURLE_OK) {
    fprintf(stderr, "stead: cannot reach %s: %s\n", url,
            errbuf[0] ? errbuf : curl_easy_strerror(cc));
    x = X_UNREACHABLE;
  } else if (http >= 200 && http < 300) {
    if (!quiet && out.len) {
      fwrite(out.data, 1, out.len, stdout);
      if (out.data[out.len - 1] != '\n')
        fputc('\n', stdout);
    }
    x = X_OK;
  } else {
    x = report_error(http, &out);
  }
  curl_slist_free_all(hdr);
  curl_easy_cleanup(c);
  stead__buf_free(&out);
  return x;
}

static int read_stdin(stead__buf *b) {
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
    if (stead__buf_append(b, chunk, n) < 0)
      return -1;
  return ferror(stdin) ? -1 : 0;
}

static int usage_error(const char *fmt, const char *arg) {
  fputs("stead: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs(" (see stead --help)\n", stderr);
  return X_USAGE;
}

/* Appends "/"+percent-encoded segment to b. */
static int add_seg(stead__buf *b, const char *s) {
  char *e = stead__pct_encode(s, strlen(s));
  if (!e)
    return -1;
  int rc = stead__buf_printf(b, "/%s", e);
  free(e);
  return rc;
}

int stead__cli_main(int argc, char **argv) {
  const char *cmd = argv[0];
  const char *base = getenv("STEAD_URL");
  if (!base || !*base)
    base = "http://127.0.0.1:8080";
  long timeout = 0;
  const char *pos[8];
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(stead__cli_usage(), stdout);
      return X_OK;
    } else if (strcmp(a, "--url") == 0 || strncmp(a, "--url=", 6) == 0) {
      if (a[5] == '=')
        base = a + 6;
      else if (i + 1 < argc)
        base = argv[++i];
      else
        return usage_error("%s needs a value", a);
    } else if (strcmp(a, "--timeout") == 0 || strncmp(a, "--timeout=", 10) == 0) {
      const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
      char *end;
      if (!v || !*v || (timeout = strtol(v, &end, 10), *end) || timeout < 1 ||
          timeout > 3600000)
        return usage_error("--timeout needs milliseconds in 1..3600000, got \"%s\"",
                           v ? v : "");
    } else if (a[0] == '-' && a[1] == '-') {
      return usage_error("unknown option \"%s\"", a);
    } else {
      if (npos == 8)
        return usage_error("too many arguments to %s", cmd);
      pos[npos++] = a;
    }
  }
  int is_call = strcmp(cmd, "call") == 0, is_send = strcmp(cmd, "send") == 0;
  int is_get = strcmp(cmd, "get") == 0, is_emit = strcmp(cmd, "emit") == 0;
  if ((is_call || is_send) && (npos < 3 || npos > 4))
    return usage_error("%s needs CLASS ID METHOD [ARG]", cmd);
  if (is_get && npos != 2)
    return usage_error("%s needs CLASS ID", cmd);
  if (is_emit && npos != 2)
    return usage_error("%s needs TOPIC JSON", cmd);
  if (!is_call && !is_send && !is_get && !is_emit)
    return usage_error("unknown command \"%s\"", cmd);

  stead__buf url = {0}, body = {0};
  int x = X_USAGE;
  size_t blen = strlen(base);
  while (blen && base[blen - 1] == '/')
    blen--;
  int rc = stead__buf_append(&url, base, blen);
  if (is_emit) {
    rc = rc ? rc : stead__buf_printf(&url, "/v1/events");
    rc = rc ? rc : add_seg(&url, pos[0]);
  } else {
    rc = rc ? rc : stead__buf_printf(&url, "/v1/objects");
    for (int i = 0; i < (is_get ? 2 : 3) && rc == 0; i++)
      rc = add_seg(&url, pos[i]);
  }
  if (rc == 0 && is_send)
    rc = stead__buf_printf(&url, "?mode=send");
  else if (rc == 0 && is_call && timeout)
    rc = stead__buf_printf(&url, "?timeout_ms=%ld", timeout);
  const char *arg = is_emit ? pos[1] : (npos == 4 ? pos[3] : NULL);
  if (rc == 0 && arg) {
    if (strcmp(arg, "-") == 0) {
      if (read_stdin(&body) < 0) {
        fprintf(stderr, "stead: cannot read the argument from stdin\n");
        goto out;
      }
    } else {
      rc = stead__buf_append(&body, arg, strlen(arg));
    }
  }
  if (rc == 0 && is_emit) {
    json_error_t jerr;
    json_t *j = json_loadb(body.len ? (const char *)body.data : "", body.len,
                           JSON_DECODE_ANY, &jerr);
    if (!j) {
      x = usage_error("the event is not valid JSON: %s", jerr.text);
      goto out;
    }
    json_decref(j);
  }
  if (rc < 0) {
    fprintf(stderr, "stead: out of memory\n");
    goto out;
  }
  x = request(is_get ? "GET" : "POST", (const char *)url.data, body.data, body.len,
              is_send);
out:
  stead__buf_free(&url);
  stead__buf_free(&body);
  return x;
}
