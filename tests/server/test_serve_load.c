/*
 * test_serve_load.c -- the gateway under concurrent load, and SIGTERM in
 * the middle of it: every acknowledged call (a 200) carried the right
 * body, the server drains and exits 0.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define THREADS 16
#define CALLS   200

typedef struct worker {
  const srv *s;
  int id;
  int calls;
  atomic_int *stop;
  int ok, wrong, refused, other;
} worker;

static size_t on_body(char *p, size_t size, size_t n, void *udata) {
  char *b = udata;
  size_t have = strlen(b), add = size * n;
  if (have + add >= 256)
    return 0;
  memcpy(b + have, p, add);
  b[have + add] = '\0';
  return add;
}

/* Calls echo on objects of its own, reusing one connection (keep-alive),
 * and checks each 200 body against what it sent. */
static void *run(void *arg) {
  worker *w = arg;
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, "Expect:");
  for (int i = 0; i < w->calls && !(w->stop && atomic_load(w->stop)); i++) {
    char url[256], body[128], got[256] = "";
    snprintf(url, sizeof url, "%s/v1/objects/echo/w%d-%d/echo", w->s->url, w->id, i % 7);
    snprintf(body, sizeof body, "{\"w\":%d,\"i\":%d}", w->id, i);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, got);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    CURLcode cc = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    if (cc != CURLE_OK) {
      w->refused++;
      if (!w->stop)
        break;
      usleep(1000);
    } else if (st == 200) {
      if (strcmp(got, body) == 0)
        w->ok++;
      else
        w->wrong++;
    } else if (st == 503) {
      w->refused++; /* draining: not acknowledged, a client would retry */
    } else {
      w->other++;
    }
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return NULL;
}

static void test_load(void **state) {
  srv s;
  assert_int_equal(srv_start(&s, NULL), 0);
  pthread_t t[THREADS];
  worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){.s = &s, .id = i, .calls = CALLS};
    pthread_create(&t[i], NULL, run, &w[i]);
  }
  int ok = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].wrong, 0);
    assert_int_equal(w[i].other, 0);
    assert_int_equal(w[i].refused, 0);
    ok += w[i].ok;
  }
  assert_int_equal(ok, THREADS * CALLS);
  assert_int_equal(srv_stop(&s, SIGTERM, 15000), 0);
}

static void test_sigterm_under_load(void **state) {
  srv s;
  assert_int_equal(srv_start(&s, NULL), 0);
  atomic_int stop = 0;
  pthread_t t[THREADS];
  worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){.s = &s, .id = i, .calls = 1000000, .stop = &stop};
    pthread_create(&t[i], NULL, run, &w[i]);
  }
  usleep(300000);
  int code = srv_stop(&s, SIGTERM, 15000);
  atomic_store(&stop, 1);
  int ok = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(w[i].wrong, 0);
    assert_int_equal(w[i].other, 0);
    ok += w[i].ok;
  }
  assert_int_equal(code, 0);
  assert_true(ok > 0); /* the load really ran before the signal */
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load),
      cmocka_unit_test(test_sigterm_under_load),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
