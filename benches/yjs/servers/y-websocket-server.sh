#!/usr/bin/env bash
# Starts @y/websocket-server (its own bin: in-memory docs, no persistence) on 127.0.0.1:PORT in the
# foreground. exec, so the PID the runner sees is node's. Rooms: ws://127.0.0.1:PORT/<room>
set -euo pipefail
PORT="${1:?usage: $0 PORT}"
cd "$(dirname "$0")/.."
BIN=node_modules/@y/websocket-server/src/server.js
[ -f "$BIN" ] || { echo "missing $BIN: run 'npm ci' in benches/yjs" >&2; exit 1; }
unset YPERSISTENCE CALLBACK_URL
export HOST=127.0.0.1 PORT
exec node "$BIN"
