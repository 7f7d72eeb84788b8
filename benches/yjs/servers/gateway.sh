#!/usr/bin/env bash
# Starts the gateway with the yjs-sync plugin on 127.0.0.1:PORT in the foreground.
#   servers/gateway.sh PORT embedded            in-process streams (no Redis)
#   servers/gateway.sh PORT redis REDIS_URL     y-redis compatible streams in Redis (redis://127.0.0.1:P)
# Clients: ws://127.0.0.1:PORT/yjs/<room> (anonymous route, write access).
# Writes its config, fs storage and stream data into $BENCH_TMP (the runner creates and removes it),
# else into a fresh mktemp dir that is left behind (its path is printed on stderr).
# exec, so the PID the runner sees is the gateway's.
# Binary: $GATEWAY_BIN, else ${CARGO_TARGET_DIR:-/work/target}/release/gateway;
# plugin: $YJS_WASM, else <repo>/dist/plugins/yjs_sync.wasm; the compaction worker's CPU priority:
# $YJS_WORKER_PRIORITY (low, idle or normal; default low).
set -euo pipefail
PORT="${1:?usage: $0 PORT embedded|redis [REDIS_URL]}"
MODE="${2:-embedded}"
REDIS_URL="${3:-}"
REPO="$(cd "$(dirname "$0")/../../.." && pwd)"
BIN="${GATEWAY_BIN:-${CARGO_TARGET_DIR:-/work/target}/release/gateway}"
WASM="${YJS_WASM:-$REPO/dist/plugins/yjs_sync.wasm}"
if [ ! -x "$BIN" ]; then
  echo "gateway binary not found at $BIN: build it with 'cargo build --release -p gateway'" >&2
  exit 1
fi
if [ ! -f "$WASM" ]; then
  echo "yjs-sync plugin not found at $WASM: build it with scripts/build-plugins" >&2
  exit 1
fi
case "$MODE" in
  embedded) ;;
  redis) [ -n "$REDIS_URL" ] || { echo "redis mode needs REDIS_URL (redis://127.0.0.1:PORT)" >&2; exit 1; } ;;
  *) echo "mode must be embedded or redis" >&2; exit 1 ;;
esac
TMP="${BENCH_TMP:-$(mktemp -d /tmp/gateway-bench.XXXXXX)}"
mkdir -p "$TMP/storage" "$TMP/streams"
CONF="$TMP/gateway.toml"
{
  cat <<TOML
[server]
listen = ["127.0.0.1:$PORT"]
cache_dir = "$REPO/.gateway-cache"

[storage]
kind = "fs"
path = "$TMP/storage"

[streams]
data_dir = "$TMP/streams"
TOML
  if [ "$MODE" = redis ]; then
    cat <<TOML

[redis]
url = "$REDIS_URL"
TOML
  fi
  cat <<TOML

[worker]
enabled = true
cpu_priority = "${YJS_WORKER_PRIORITY:-low}"

[plugins.yjs]
wasm = "$WASM"
memory_limit_mb = 512
call_timeout_ms = 10000
stream_prefixes = ["y:"]
storage_root = ""

[[routes]]
path = "/yjs/*"
kind = "websocket"
plugin = "yjs"
limits = { max_frame_bytes = 104857600, max_message_bytes = 104857600, queue_max_bytes = 67108864, queue_max_frames = 65536 }
TOML
} > "$CONF"
echo "gateway config: $CONF" >&2
export RUST_LOG="${RUST_LOG:-warn}"
exec "$BIN" serve --config "$CONF"
