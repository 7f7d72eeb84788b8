#!/usr/bin/env bash
# Cluster fan-out: one gateway alone beside two gateways on one Redis, same machine, same load.
# Starts redis-server on a free port, gateway A and B with plugins.toml plus [redis], and a lone
# gateway S without it; then for each rate in RATES runs `load fanout` with 1,000 subscribers
#   single:  publisher and subscribers on S
#   split:   publisher on A, subscribers alternating A and B
# and a latency run at LATENCY_RATE publishes/s with every subscriber on B and the publisher on
# A (cross-instance only). Bounded: each load run is capped at 60 s, every process is killed on
# exit.
#
# Environment (all optional): CONNS=1000 RATES="1000 2000" SECONDS_PER_RATE=5 LATENCY_RATE=100
#   NO_BUILD=1 (skip cargo build)   CARGO_TARGET_DIR (where the binaries are, default target)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-1000}
RATES=${RATES:-"1000 2000"}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-5}
LATENCY_RATE=${LATENCY_RATE:-100}
BIN=${CARGO_TARGET_DIR:-target}/release
export GATEWAY_JWT_SECRET=${GATEWAY_JWT_SECRET:-cluster-bench-secret-0123456789abcdef}

if [[ -z "${NO_BUILD:-}" ]]; then
  scripts/build-plugins >&2
  cargo build --release -p gateway -p gateway-benches >&2
fi
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install -y redis-server)" >&2; exit 1; }

# shellcheck source=benches/lib.sh
source benches/lib.sh

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" >/dev/null &
pids+=($!)
wait_port "$redis_port"

start_gateway() { # name port with_redis
  local cfg="$work/$1.toml"
  shipped_config "$1" "$2" > "$cfg"
  if [[ "$3" == 1 ]]; then printf '\n[redis]\nurl = "redis://127.0.0.1:%s"\n' "$redis_port" >> "$cfg"; fi
  RUST_LOG=warn "$BIN/gateway" serve --config "$cfg" >"$work/$1.log" 2>&1 &
  pids+=($!)
  wait_port "$2"
}

pa=$(free_port); pb=$(free_port); ps=$(free_port)
start_gateway a "$pa" 1
start_gateway b "$pb" 1
start_gateway s "$ps" 0

run() { # label, load arguments...
  local label=$1; shift
  echo "== $label"
  timeout 70 "$BIN/load" fanout --conns "$CONNS" --timeout 60 "$@" 2>/dev/null | grep '^fanout' || echo "(run failed)"
}

for rate in $RATES; do
  msgs=$((rate * SECONDS_PER_RATE))
  run "single gateway, $rate msg/s" --url "ws://127.0.0.1:$ps/ws" --rate "$rate" --messages "$msgs"
  run "two gateways (publisher on A, subscribers split A/B), $rate msg/s" \
    --url "ws://127.0.0.1:$pa/ws" --url2 "ws://127.0.0.1:$pb/ws" --rate "$rate" --messages "$msgs"
done
msgs=$((LATENCY_RATE * 10))
run "cross-instance latency (publisher on A, all subscribers on B), $LATENCY_RATE msg/s" \
  --url "ws://127.0.0.1:$pb/ws" --publisher-url "ws://127.0.0.1:$pa/ws" --rate "$LATENCY_RATE" --messages "$msgs"
run "same-instance latency (all on S), $LATENCY_RATE msg/s" \
  --url "ws://127.0.0.1:$ps/ws" --rate "$LATENCY_RATE" --messages "$msgs"
