#!/usr/bin/env bash
# Baseline fan-out: starts bare-server, runs `load fanout --mode bare` with 1,000
# subscribers (one run per rate in RATES), then stops the server. Bounded: the
# server gets 5 s to come up, every load run is capped at 60 s (+10 s hard kill),
# and the server is killed on any exit.
#
# Environment (all optional):
#   LISTEN=127.0.0.1:9001  CONNS=1000  RATES="1000 2000 3000"  SECONDS_PER_RATE=5
#   NO_BUILD=1 (skip cargo build)   CARGO_TARGET_DIR (where the binaries are, default target)
# Extra arguments are passed to `load`, e.g. `benches/run-fanout.sh --size 200`.
set -euo pipefail
cd "$(dirname "$0")/.."

LISTEN=${LISTEN:-127.0.0.1:9001}
CONNS=${CONNS:-1000}
RATES=${RATES:-1000}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-5}
BIN=${CARGO_TARGET_DIR:-target}/release

if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -p gateway-benches >&2
fi

out=$(mktemp)
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  rm -f "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/bare-server" --listen "$LISTEN" >"$out" 2>&2 &
server_pid=$!
for _ in $(seq 1 50); do
  grep -q '^listening on' "$out" && break
  kill -0 "$server_pid" 2>/dev/null || { echo "bare-server exited" >&2; exit 1; }
  sleep 0.1
done
grep -q '^listening on' "$out" || { echo "bare-server did not start within 5 s" >&2; exit 1; }
echo "bare-server (pid $server_pid) $(head -1 "$out")" >&2

for rate in $RATES; do
  messages=$(( rate * SECONDS_PER_RATE ))
  [[ "$rate" == 0 ]] && messages=$(( 1000 * SECONDS_PER_RATE ))
  timeout -k 5 70 "$BIN/load" fanout --mode bare --url "ws://$LISTEN/ws" \
    --conns "$CONNS" --rate "$rate" --messages "$messages" --timeout 60 "$@"
done
