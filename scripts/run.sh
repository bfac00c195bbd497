#!/usr/bin/env bash
# Body of `make run`: starts `stead serve` with its embedded defaults
# (127.0.0.1:8080, ./stead-data) from the given build directory, in the
# foreground. Ctrl-C (SIGINT) drains and stops it.
set -euo pipefail
build="${1:-build/release}"
exe="$build/src/server/stead"
if [ ! -x "$exe" ]; then
  echo "stead: $exe not found; build first (make build)" >&2
  exit 1
fi
cat <<MSG
stead: starting $exe serve (Ctrl-C to stop)
  in another terminal:
    curl -X POST 'http://127.0.0.1:8080/v1/objects/echo/hello/echo' -d '{"hi":1}'
    $exe call echo hello echo '{"hi":1}'
    curl http://127.0.0.1:8080/metrics
  settings: $exe serve --help   (flags or STEAD_* variables, e.g. STEAD_LISTEN=:9000)
MSG
exec "$exe" serve "${@:2}"
