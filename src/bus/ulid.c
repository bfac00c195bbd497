/*
 * ulid.c -- the default listener id generator: ULIDs.
 *
 * A ULID is 128 bits: a 48-bit millisecond timestamp then 80 random bits,
 * written as 26 characters of Crockford base32 (0-9 A-Z without I L O U),
 * so ids sort by creation time. Monotonic mode: within one millisecond, or
 * when the wall clock steps back, the next id reuses the last timestamp and
 * adds 1 to the random part, so ids are strictly increasing per generator.
 * Randomness only has to make ids unique, not secret: a xorshift128+ seeded
 * once from getrandom() is enough. State is per generator (per bus); the
 * caller serializes access.
 */
#include "bus/bus_internal.h"

#include <string.h>
#include <sys/random.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static uint64_t rng_next(uint64_t s[2]) {
  uint64_t x = s[0], y = s[1];
  s[0] = y;
  x ^= x << 23;
  s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
  return s[1] + y;
}

void stead__ulid_init(stead__ulid_state *st) {
  memset(st, 0, sizeof *st);
  st->last_ms = -1;
  if (getrandom(st->rng, sizeof st->rng, GRND_NONBLOCK) != (ssize_t)sizeof st->rng) {
    st->rng[0] = (uint64_t)stead__mono_ns() ^ 0x9E3779B97F4A7C15ULL;
    st->rng[1] = (uint64_t)(uintptr_t)st ^ (uint64_t)stead__wall_ms();
  }
  if (st->rng[0] == 0 && st->rng[1] == 0)
    st->rng[1] = 1;
}

/* Adds 1 to the 80-bit big-endian number; false on overflow. */
static bool incr80(uint8_t r[10]) {
  for (int i = 9; i >= 0; i--)
    if (++r[i] != 0)
      return true;
  return false;
}

int stead__ulid_next(stead__ulid_state *st, int64_t now_ms, char out[27]) {
  if (now_ms < 0 || now_ms >= ((int64_t)1 << 48))
    return stead__err(STEAD_EINVAL, "time %lld ms is outside the ULID range",
                      (long long)now_ms);
  if (now_ms <= st->last_ms) {
    uint8_t r[10];
    memcpy(r, st->last_rand, 10);
    if (!incr80(r))
      return stead__err(STEAD_EOVERLOAD, "ULID random part overflowed within one ms");
    memcpy(st->last_rand, r, 10);
  } else {
    uint64_t a = rng_next(st->rng), b = rng_next(st->rng);
    memcpy(st->last_rand, &a, 8);
    memcpy(st->last_rand + 8, &b, 2);
    st->last_ms = now_ms;
  }
  uint8_t bytes[16];
  uint64_t ms = (uint64_t)st->last_ms;
  for (int i = 0; i < 6; i++)
    bytes[i] = (uint8_t)(ms >> (8 * (5 - i)));
  memcpy(bytes + 6, st->last_rand, 10);
  /* 128 bits as 26 base32 digits: the first digit carries the top 3 bits. */
  int bit = -2; /* 130 bits of output minus 128 of input: 2 leading zeros */
  for (int c = 0; c < 26; c++) {
    unsigned v = 0;
    for (int k = 0; k < 5; k++, bit++) {
      unsigned b = 0;
      if (bit >= 0)
        b = (bytes[bit / 8] >> (7 - bit % 8)) & 1;
      v = (v << 1) | b;
    }
    out[c] = crockford[v];
  }
  out[26] = 0;
  return 0;
}
