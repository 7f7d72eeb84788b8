#!/usr/bin/env bash
# Ably pub/sub fan-out beside the chat figure: one gateway with the shipped plugins.toml, 1,000
# subscribers attached to one Ably channel (JSON protocol, key auth) and one publisher sending
# 100-byte messages, then the same shape through the chat plugin, for each rate in RATES.
# Bounded: each load run is capped at 60 s, every process is killed on exit.
#
# Environment (all optional): CONNS=1000 RATES="1000 2000 3000" SECONDS_PER_RATE=5 SIZE=100
#   NO_BUILD=1 (skip cargo build)   CARGO_TARGET_DIR (where the binaries are, default target)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-1000}
RATES=${RATES:-"1000 2000 3000"}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-5}
SIZE=${SIZE:-100}
BIN=${CARGO_TARGET_DIR:-target}/release
export GATEWAY_JWT_SECRET=${GATEWAY_JWT_SECRET:-ably-bench-secret-0123456789abcdef}
export GATEWAY_ABLY_KEYS=${GATEWAY_ABLY_KEYS:-bench.key:ably-bench-secret}

if [[ -z "${NO_BUILD:-}" ]]; then
  scripts/build-plugins >&2
  cargo build --release -p gateway -p gateway-benches >&2
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; exit 1
}

port=$(free_port)
# The shipped config, on its own port and directories; the publisher may exceed the default
# per-connection inbound rate (100 msg/s), so the bench lifts it.
sed -e "s#^listen = .*#listen = [\"127.0.0.1:$port\"]#" \
    -e "s#^data_dir = .*#data_dir = \"$work/streams\"#" \
    -e "s#^path = \"data/storage\"#path = \"$work/storage\"#" \
    -e "s#^wasm = \"dist/#wasm = \"$PWD/dist/#" \
    -e "s#^cache_dir = .*#cache_dir = \"$PWD/.gateway-cache\"#" \
    -e "s#^max_inbound_rate = .*#max_inbound_rate = 0#" plugins.toml > "$work/gateway.toml"
RUST_LOG=warn "$BIN/gateway" serve --config "$work/gateway.toml" >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_port "$port"

run() { # label, load arguments...
  local label=$1; shift
  echo "== $label"
  timeout 70 "$BIN/load" fanout --conns "$CONNS" --size "$SIZE" --timeout 60 "$@" 2>/dev/null | grep '^fanout' || echo "(run failed)"
}

for rate in $RATES; do
  msgs=$((rate * SECONDS_PER_RATE))
  run "ably, $rate msg/s" --mode ably --url "ws://127.0.0.1:$port/?format=json&heartbeats=false&v=6" \
    --rate "$rate" --messages "$msgs"
  run "chat, $rate msg/s" --mode chat --url "ws://127.0.0.1:$port/ws" --rate "$rate" --messages "$msgs"
done
