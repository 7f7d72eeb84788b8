#!/usr/bin/env bash
# Hot-reload benchmarks against a release gateway, on 127.0.0.1 only.
#   benches/reload.sh latency [SWAPS]   swap chat.wasm <-> chat-variant.wasm and print the
#                                       gateway's "file change -> new version serving" latencies
#                                       (the first swap compiles; the others hit the cache)
#   benches/reload.sh dip               fan-out 1 -> 1,000 at 1,000 msg/s for 12 s, without and
#                                       with a reload every second; compare the two summaries
# Needs: scripts/build-plugins and `cargo build --release -p gateway -p gateway-benches`.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
work="$(mktemp -d)"
gw_pid=""
cleanup() { [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cp "$repo/dist/plugins/chat.wasm" "$repo/dist/plugins/chat-variant.wasm" "$work/"
cp "$work/chat.wasm" "$work/live.wasm"
cat > "$work/gw.toml" <<TOML
[server]
listen = ["127.0.0.1:18090"]
cache_dir = "$work/cache"
[auth.default]
algorithms = ["HS256"]
secret_env = "GATEWAY_JWT_SECRET"
[plugins.chat]
wasm = "live.wasm"
[[routes]]
path = "/ws"
kind = "websocket"
plugin = "chat"
auth = "default"
TOML
export GATEWAY_JWT_SECRET=bench-secret
start() {
  "$bin/gateway" serve --config "$work/gw.toml" > "$work/out" 2> "$work/err" &
  gw_pid=$!
  for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && return; sleep 0.1; done
  echo "gateway did not start" >&2; exit 1
}
stop() { kill -TERM "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; gw_pid=""; }
swap() { # $1 = index
  local src=chat.wasm; [ $(( $1 % 2 )) = 1 ] && src=chat-variant.wasm
  cp "$work/$src" "$work/t.tmp" && mv "$work/t.tmp" "$work/live.wasm"
}
case "${1:-latency}" in
  latency)
    start
    for i in $(seq "${2:-10}"); do swap "$i"; sleep 0.4; done
    stop
    sed 's/\x1b\[[0-9;]*m//g' "$work/err" | grep -oE "latency_ms=[0-9.]+" | cut -d= -f2 \
      | awk '{ printf "swap %d: %.1f ms%s\n", NR, $1, (NR == 1 ? " (cold compile)" : " (cache hit)") }'
    ;;
  dip)
    for mode in none reload; do
      start
      if [ "$mode" = reload ]; then
        ( sleep 4; for i in $(seq 8); do swap "$i"; sleep 1; done ) & swapper=$!
      fi
      echo "$mode: $(timeout -k 5 90 "$bin/load" fanout --conns 1000 --rate 1000 --messages 12000 \
        --url ws://127.0.0.1:18090/ws 2>/dev/null | tail -1)"
      [ "$mode" = reload ] && wait "$swapper"
      stop
    done
    ;;
  *) echo "usage: $0 latency [SWAPS] | dip" >&2; exit 2 ;;
esac
