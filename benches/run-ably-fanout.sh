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

# shellcheck source=benches/lib.sh
source benches/lib.sh

port=$(free_port)
# The shipped config, on its own port and directories; the publisher may exceed the default
# per-connection inbound rate (100 msg/s), so the bench lifts it.
shipped_config gateway "$port" -e "s#^max_inbound_rate = .*#max_inbound_rate = 0#" > "$work/gateway.toml"
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
