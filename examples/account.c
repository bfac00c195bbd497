/*
 * account.c -- class "account": an event-sourced bank account, the example
 * of a class given as a program (see "Event-sourced objects" in stead.h).
 *
 * Methods: "deposit" n and "withdraw" n (n a JSON integer > 0) reply the
 * new balance; a withdrawal below zero is rejected ("insufficient funds:
 * balance 30, withdraw 50") and never journaled. Queries: "balance"
 * replies the balance, "history" the last entries as a JSON array, oldest
 * first. Replies are JSON.
 *
 * The model is a plain struct (balance, message count, a ring of the last
 * ACCT_HISTORY entries); snapshots encode it in a fixed big-endian layout,
 * model version 1. update is deterministic: no clock, no randomness.
 */
#include "examples.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACCT_HISTORY 16

typedef struct acct_entry {
  int64_t amount; /* > 0 deposit, < 0 withdrawal */
  int64_t balance;
} acct_entry;

typedef struct acct {
  int64_t balance;
  uint64_t count;                /* accepted deposits and withdrawals */
  uint32_t nhist;                /* entries in hist, <= ACCT_HISTORY */
  acct_entry hist[ACCT_HISTORY]; /* oldest first */
} acct;

/* A JSON integer 1..INT64_MAX, surrounded by optional whitespace. */
static int parse_amount(const void *p, size_t len, int64_t *out, char *why, size_t wn) {
  char buf[40];
  if (len == 0 || len >= sizeof buf) {
    snprintf(why, wn, "expected a JSON integer > 0");
    return -1;
  }
  memcpy(buf, p, len);
  buf[len] = 0;
  const char *s = buf;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  bool neg = *s == '-';
  const char *d = neg ? s + 1 : s;
  if (*d < '0' || *d > '9' || (d[0] == '0' && d[1] >= '0' && d[1] <= '9')) {
    snprintf(why, wn, "expected a JSON integer > 0, got \"%s\"", buf);
    return -1;
  }
  int64_t v = 0;
  for (; *d >= '0' && *d <= '9'; d++) {
    if (v > (INT64_MAX - (*d - '0')) / 10) {
      snprintf(why, wn, "amount \"%s\" is too large", buf);
      return -1;
    }
    v = v * 10 + (*d - '0');
  }
  while (*d == ' ' || *d == '\t' || *d == '\n' || *d == '\r')
    d++;
  if (*d) {
    snprintf(why, wn, "expected a JSON integer > 0, got \"%s\"", buf);
    return -1;
  }
  if (neg || v == 0) {
    snprintf(why, wn, "amount must be > 0, got %s%lld", neg ? "-" : "", (long long)v);
    return -1;
  }
  *out = v;
  return 0;
}

static void remember(acct *a, int64_t amount) {
  if (a->nhist == ACCT_HISTORY) {
    memmove(a->hist, a->hist + 1, (ACCT_HISTORY - 1) * sizeof a->hist[0]);
    a->nhist--;
  }
  a->hist[a->nhist++] = (acct_entry){amount, a->balance};
  a->count++;
}

static int reply_int(stead_cmds *cmds, int64_t v) {
  char out[32];
  int n = snprintf(out, sizeof out, "%lld", (long long)v);
  return stead_es_reply(cmds, out, (size_t)n);
}

static int reply_history(stead_cmds *cmds, const acct *a) {
  char out[ACCT_HISTORY * 96 + 8];
  size_t n = 0;
  out[n++] = '[';
  for (uint32_t i = 0; i < a->nhist; i++) {
    const acct_entry *e = &a->hist[i];
    n += (size_t)snprintf(
        out + n, sizeof out - n, "%s{\"op\":\"%s\",\"amount\":%lld,\"balance\":%lld}",
        i ? "," : "", e->amount > 0 ? "deposit" : "withdraw",
        (long long)(e->amount > 0 ? e->amount : -e->amount), (long long)e->balance);
  }
  out[n++] = ']';
  return stead_es_reply(cmds, out, n);
}

static int acct_update(void *model, const void *msg, size_t len, stead_cmds *cmds,
                       void *udata) {
  acct *a = model;
  const char *method;
  const void *arg;
  size_t alen;
  if (stead_es_split(msg, len, &method, &arg, &alen) != 0)
    return stead_es_reject(cmds, "malformed message");
  if (strcmp(method, "balance") == 0)
    return reply_int(cmds, a->balance);
  if (strcmp(method, "history") == 0)
    return reply_history(cmds, a);
  bool dep = strcmp(method, "deposit") == 0;
  if (!dep && strcmp(method, "withdraw") != 0)
    return stead_es_reject(cmds, "unknown method \"%s\"", method);
  int64_t n;
  char why[128];
  if (parse_amount(arg, alen, &n, why, sizeof why) != 0)
    return stead_es_reject(cmds, "%s: %s", method, why);
  if (dep && a->balance > INT64_MAX - n)
    return stead_es_reject(cmds, "deposit of %lld would overflow the balance %lld",
                           (long long)n, (long long)a->balance);
  if (!dep && a->balance < n)
    return stead_es_reject(cmds, "insufficient funds: balance %lld, withdraw %lld",
                           (long long)a->balance, (long long)n);
  a->balance += dep ? n : -n;
  remember(a, dep ? n : -n);
  return reply_int(cmds, a->balance);
}

/* Snapshot layout (model version 1), big-endian:
 *   balance i64, count u64, nhist u32, nhist x (amount i64, balance i64). */
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static int acct_encode(const void *model, void **data, size_t *len, void *udata) {
  const acct *a = model;
  size_t n = 20 + (size_t)a->nhist * 16;
  uint8_t *p = malloc(n);
  if (!p)
    return STEAD_ENOMEM;
  put64(p, (uint64_t)a->balance);
  put64(p + 8, a->count);
  for (int i = 0; i < 4; i++)
    p[16 + i] = (uint8_t)(a->nhist >> (24 - 8 * i));
  for (uint32_t i = 0; i < a->nhist; i++) {
    put64(p + 20 + i * 16, (uint64_t)a->hist[i].amount);
    put64(p + 28 + i * 16, (uint64_t)a->hist[i].balance);
  }
  *data = p;
  *len = n;
  return 0;
}

static int acct_decode(void *model, const void *data, size_t len, void *udata) {
  acct *a = model;
  const uint8_t *p = data;
  if (len < 20)
    return STEAD_ECORRUPT;
  uint32_t nh =
      (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | (uint32_t)p[18] << 8 | p[19];
  if (nh > ACCT_HISTORY || len != 20 + (size_t)nh * 16)
    return STEAD_ECORRUPT;
  memset(a, 0, sizeof *a);
  a->balance = (int64_t)get64(p);
  a->count = get64(p + 8);
  a->nhist = nh;
  for (uint32_t i = 0; i < nh; i++) {
    a->hist[i].amount = (int64_t)get64(p + 20 + i * 16);
    a->hist[i].balance = (int64_t)get64(p + 28 + i * 16);
  }
  return 0;
}

static const char *const acct_methods[] = {"deposit", "withdraw", NULL};
static const char *const acct_queries[] = {"balance", "history", NULL};

const stead_es_class stead_example_account = {
    .name = "account",
    .program = {.update = acct_update, .encode = acct_encode, .decode = acct_decode},
    .methods = acct_methods,
    .queries = acct_queries,
    .model_size = sizeof(acct),
    .model_version = 1,
};
