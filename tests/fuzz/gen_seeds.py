#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets added for issue 11
(request, opts, storagespec, args, journal, records) into
tests/fuzz/corpus/<name>/seed-NN. Inputs found by fuzzing are added next
to them by hand (see scripts/fuzz.sh). Run from the repository root."""
import os, struct

def write(name, seeds):
    d = os.path.join("tests/fuzz/corpus", name)
    os.makedirs(d, exist_ok=True)
    for i, s in enumerate(seeds):
        with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
            f.write(s)

# request: mask byte, then timeout\0mode\0ctype\0clen
def req(mask, *vals):
    return bytes([mask]) + b"\0".join(v.encode() for v in vals)
write("request", [
    req(0),
    req(1, "250"), req(1, "0"), req(1, "3600001"), req(1, "%35%30"), req(1, "5%00x"),
    req(1, "-1"), req(1, "1e3"), req(1, "%zz"), req(1, "9" * 70),
    req(2, "", "send"), req(2, "", "call"), req(2, "", "se%6Ed"), req(2, "", "SEND"),
    req(4, "", "", "application/json; charset=utf-8"), req(4, "", "", "text/plain"),
    req(8, "", "", "", "4096"), req(8, "", "", "", "4097"), req(8, "", "", "", "abc"),
    req(8, "", "", "", "99999999999999999999999"), req(8, "", "", "", ""),
    req(15, "30000", "send", "application/json", "12"),
])

# opts: count of env entries, then NUL-separated strings
def opts(nenv, *args):
    return bytes([nenv]) + b"\0".join(a.encode() for a in args)
write("opts", [
    opts(0), opts(0, "--help"), opts(0, "--listen", "127.0.0.1:0"),
    opts(0, "--listen=[::1]:8080"), opts(0, "--listen", ":9000"), opts(0, "--listen", "::1:80"),
    opts(0, "--listen", "host:65536"), opts(0, "--shards", "0"), opts(0, "--shards=65536"),
    opts(0, "--workers", "-1"), opts(0, "--storage", "postgres://u@h/db"),
    opts(0, "--storage", "sqlite"), opts(0, "--storage", "mysql"), opts(0, "--nats", "nats://"),
    opts(0, "--node-id", "node-1"), opts(0, "--node-id", "bad id"),
    opts(0, "--durability", "normal"), opts(0, "--log-level", "trace"),
    opts(0, "--max-body", "1073741825"), opts(0, "--http-threads", "8"),
    opts(0, "--load", "a.so", "--load", "b.so"), opts(0, "--load"), opts(0, "--bogus"),
    opts(1, "STEAD_SHARDS=12", "--shards", "13"), opts(1, "STEAD_LOAD=a.so:b.so"),
    opts(2, "STEAD_LISTEN=:0", "STEAD_DATA=", "--data", "d"),
    opts(1, "STEAD_LOG_LEVEL=debug"), opts(1, "STEAD_MAX_BODY=x"),
])

# storagespec: 0 + sqlite spec / 1 + postgres uri
def sq(s): return b"\0" + s.encode()
def pg(s): return b"\1" + s.encode()
write("storagespec", [
    sq("/tmp/a.db"), sq("a.db?durability=normal"), sq("a.db?durability=full&busy_timeout_ms=10"),
    sq("?durability=full"), sq("a.db?"), sq("a.db?durability"), sq("a.db?busy_timeout_ms=0"),
    sq("a.db?busy_timeout_ms=1000000001"), sq("a.db?x=y"), sq("a.db?&&"), sq("a.db?durability=nor"),
    pg("postgres://stead@127.0.0.1:5432/postgres"), pg("postgresql://h/db?prefix=app1&pool=8"),
    pg("postgres://h/db?prefix=1bad"), pg("postgres://h/db?pool=65"),
    pg("postgres://h/db?statement_timeout_ms=500&durability=normal"),
    pg("postgres://h/db?sslmode=disable&connect_timeout=2"), pg("postgres://h/db?bogus=1"),
    pg("postgres://h:notaport/db"), pg("postgres://[::1]:5432/db?prefix=p"), pg("h/db?pool"),
    pg("postgres://h/db?prefix=" + "a" * 40),
])

# args: method index, id index, argument (indices follow fuzz_args.c's table)
def arg(m, body, i=0): return bytes([m, i]) + body.encode()
write("args", [
    arg(0, ""), arg(0, "5"), arg(0, " -3 \n"), arg(0, "9223372036854775807"), arg(0, "007"),
    arg(0, "1.5"), arg(1, ""), arg(2, ""), arg(3, '{"hi":1}'), arg(4, "boom"),
    arg(5, '{"user":"ann","text":"hi"}', 2), arg(5, '{"user":"","text":"hi"}', 2),
    arg(5, '{"user":"ann","text":"hi"}', 3), arg(5, "[1,2]", 2), arg(6, "", 2),
    arg(7, '{"limit":2}'), arg(7, '{"limit":2,"window_ms":5}'), arg(7, '{"limit":-1}'),
    arg(7, '{"limit":1,"window_ms":10,"x":1}'),
    arg(8, '{"name":"r1","in_ms":1000}'), arg(8, '{"name":"r1","in_ms":10,"meta":{"a":1}}'),
    arg(8, '{"name":"","in_ms":1}'), arg(8, '{"in_ms":1}'), arg(9, '{"name":"r1"}'),
    arg(10, ""), arg(11, "10"), arg(11, "0"), arg(12, "3"), arg(12, "999999"), arg(13, ""),
    arg(14, ""), arg(15, "x"),
])

# journal: records [kind][seq][len][bytes]
def jr(seq, method, payload):
    body = b"\x01" + method.encode() + b"\0" + payload.encode()
    return bytes([0, seq, len(body)]) + body
def snap(seq, balance, count, hist=()):
    body = b"\x01" + struct.pack(">I", 1) + struct.pack(">qQI", balance, count, len(hist))
    for a, b in hist:
        body += struct.pack(">qq", a, b)
    return bytes([1, seq, len(body)]) + body
write("journal", [
    b"", jr(1, "deposit", "5"), jr(1, "deposit", "5") + jr(2, "withdraw", "3"),
    jr(1, "deposit", "5") + jr(3, "deposit", "1"), jr(2, "deposit", "5"),
    jr(1, "withdraw", "5"), jr(1, "deposit", "x"), jr(1, "nosuch", "1"),
    bytes([0, 1, 3]) + b"\x02ab", bytes([0, 1, 8]) + b"\x01deposit",
    snap(2, 10, 2) + jr(3, "deposit", "1"), snap(2, 10, 2, [(5, 5), (5, 10)]),
    snap(1, 9223372036854775807, 1) + jr(2, "deposit", "1"),
    snap(3, 0, 0) + jr(1, "deposit", "1") + jr(2, "deposit", "1") + jr(3, "deposit", "1")
    + jr(4, "deposit", "2"),
    bytes([1, 2, 5]) + b"\x01\0\0\0\x02", bytes([1, 2, 4]) + b"\x01\0\0\0",
    snap(2, 1, 1)[:-3], jr(1, "deposit", "1") + snap(1, 1, 1) + snap(3, 2, 2),
])

# records: kv [0][cls][idlen][id][ns][klen][key][vlen][val];
# alarm [1][cls][idlen][id][namelen][name][at 8 LE][attempt 4 LE][metalen][meta]
def f(b): return bytes([len(b)]) + b
def kv(cls, id, ns, k, v): return bytes([0, cls]) + f(id) + bytes([ns]) + f(k) + f(v)
def al(cls, id, name, at, attempt, meta):
    return bytes([1, cls]) + f(id) + f(name) + struct.pack("<qi", at, attempt) + f(meta)
counter_state = bytes.fromhex("00")  # not a valid state record: decoder must refuse
write("records", [
    b"", kv(0, b"a", 0, b"k", b"v"), kv(0, b"a", 1, b"", counter_state),
    kv(0, b"a", 1, b"", b""), kv(2, b"r", 0, b"\xff\xff", b"junk"),
    kv(0, b"a", 2, b"chat.*.message", b""), kv(0, b"a", 2, b"bad..pattern", b""),
    kv(0, b"a", 2, b"a\0b", b""), kv(0, b"\xff\xfe", 2, b"**", b""),
    kv(6, b"z", 2, b"x.**", b""), kv(5, b"acct", 3, b"\0" * 7 + b"\x01", b"\x01deposit\x005"),
    kv(5, b"acct", 4, b"\0" * 7 + b"\x01", b"\x01\0\0\0\x01" + b"\0" * 10),
    al(4, b"rem", b"r1", 0, 0, b"{}"), al(4, b"rem", b"r2", 2, 3, b"not json"),
    al(3, b"lim", b"reset", 4, 0, b""), al(0, b"a", b"x", 6, -5, b""),
    al(6, b"z", b"x", 8, 0, b""), al(4, b"rem", b"\xff", 10, 0, b""),
    al(4, b"", b"", 12, 0, b""), al(4, b"rem", b"far", 9223372036854775807, 0, b""),
    al(4, b"rem", b"past", -9223372036854775807, 0, b""),
    kv(1, b"e", 0, b"k" * 200, b"v" * 200) + al(1, b"e", b"n", 14, 2147483647, b"m"),
])
