/*
 * examples.h -- the example classes compiled into `stead serve` and used by
 * tests. Each example lives in its own file (echo.c, ...) and exposes its
 * stead_class; stead_examples_register registers all of them.
 */
#ifndef STEAD_EXAMPLES_H
#define STEAD_EXAMPLES_H

#include "stead.h"

/* Class "echo": method "echo" replies its argument; "fail" fails the turn
 * with the argument as the message; "sleep" blocks its worker for the
 * argument's number of milliseconds (0..60000, as decimal text or a JSON
 * number) then replies "slept" -- for deadline tests. Static storage. */
extern const stead_class stead_example_echo;

/* Class "counter": a durable counter in a state struct (count,
 * last_incremented_at). "increment" takes a JSON integer n (empty body: 1)
 * and replies the new count; "get" replies the count; "reset" sets it to 0
 * and replies 0. Replies are JSON integers. */
extern const stead_class stead_example_counter;

/* Class "account": an event-sourced bank account (account.c). "deposit" n
 * and "withdraw" n (JSON integer > 0) reply the new balance; a withdrawal
 * below zero fails with "insufficient funds: balance B, withdraw N" and is
 * not journaled. Queries: "balance" (JSON integer), "history" (JSON array
 * of the last 16 {"op","amount","balance"}, oldest first). Registered with
 * stead_register_program. */
extern const stead_es_class stead_example_account;

/* Class "chatroom" (chatroom.c), one room per id: "post" takes
 * {"user":U,"text":T} (strings of 1..128 and 1..4096 bytes), stores the
 * message, emits chat.{room}.message with the message JSON
 * {"id","user","text","at"} after the commit, and replies the message id
 * (a JSON integer increasing per room from 1). "history" replies a JSON
 * array of the last 100 messages, oldest first; older ones are deleted.
 * Bad JSON or fields fail the turn with a message saying what is wrong; a
 * room id containing '.' (or anything else not allowed in a topic segment)
 * cannot post. Connections (GET /v1/objects/chatroom/{room}/connect, a
 * WebSocket): every stored message is also sent to every connection of
 * the room as its JSON text; a connection posts by sending {"text":T}
 * (user: "user" in the message, else the connect's meta, else
 * "anonymous"); a bad message is answered {"error":"..."} on that
 * connection only. */
extern const stead_class stead_example_chatroom;

/* Class "ratelimiter" (ratelimiter.c): a fixed-window limiter per id in a
 * state struct (requests, window_start, window_ms, limit). "check" takes
 * {"limit":N} (0..2^40) or {"limit":N,"window_ms":M} (10..604800000,
 * default 60000) and replies the JSON string "allowed" (counted) or
 * "rate_limited". The first check of a window sets the alarm "reset" at
 * its end; the alarm's turn starts the next window and re-arms only if the
 * window just ended had checks, so idle objects stop ticking. Bad bodies
 * fail with STEAD_EINVAL. */
extern const stead_class stead_example_ratelimiter;

/* Class "reminder" (reminder.c): named one-shot alarms. "schedule" takes
 * {"name":S,"in_ms":N,"meta":{...}} (meta optional) and replies
 * {"name":S,"at_ms":T}; "cancel" takes {"name":S} and replies
 * {"name":S,"canceled":bool}; "fired" replies {"S":times_fired,...},
 * counted in storage by the alarm's own turn. Bad bodies fail with
 * STEAD_EINVAL (meta over 64 KiB: STEAD_ETOOBIG). */
extern const stead_class stead_example_reminder;

/* Registers every example class on `rt`. 0, or the first failing
 * stead_register's error (EEXIST if one was already registered). */
int stead_examples_register(stead_rt *rt);

#endif
